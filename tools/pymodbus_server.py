#!/usr/bin/python3
"""A Modbus TCP server we did not write (pymodbus), holding a fixed register
image, for testing eolstation's drivers against a third-party peer.

    pymodbus_server.py --port N --image FILE.json

The image is JSON: {"unit": 1, "coils": {"129": 1}, "discrete_inputs": {},
"holding": {"427": 15}, "input": {"0": "0x0255"}} -- protocol (0-based) addresses
as keys, 16-bit register values (numbers or "0x…" strings) or 0/1 bits as
values; everything else reads 0.
Runs until killed. Needs only python3-pymodbus: the serial modules pymodbus
imports unconditionally are stubbed when absent (this server is TCP only).
"""
import argparse
import json
import logging
import sys
import types


def stub_serial_modules():
    for name in ("serial", "serial_asyncio"):
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            sys.modules[name] = mod
    serial = sys.modules["serial"]
    if not hasattr(serial, "Serial"):
        serial.Serial = object
        serial.SerialException = type("SerialException", (Exception,), {})
    sa = sys.modules["serial_asyncio"]
    if not hasattr(sa, "create_serial_connection"):
        sa.create_serial_connection = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--image", required=True)
    args = ap.parse_args()

    stub_serial_modules()
    from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                    ModbusSlaveContext)
    from pymodbus.server import StartTcpServer

    with open(args.image, encoding="utf-8") as f:
        image = json.load(f)

    def block(key):
        values = [0] * 65536
        for addr, value in image.get(key, {}).items():
            values[int(addr, 0)] = int(value, 0) if isinstance(value, str) else int(value)
        return ModbusSequentialDataBlock(0, values)

    slave = ModbusSlaveContext(co=block("coils"), di=block("discrete_inputs"),
                               hr=block("holding"), ir=block("input"), zero_mode=True)
    context = ModbusServerContext(slaves={int(image.get("unit", 1)): slave}, single=False)
    logging.basicConfig(level=logging.WARNING)
    # pymodbus logs every client disconnect as an error: keep test output readable.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    StartTcpServer(context=context, address=(args.host, args.port))


if __name__ == "__main__":
    main()
