#!/usr/bin/python3
"""A line PLC we did not write the Modbus stack of (pymodbus): runs one full
handshake cycle (docs/plc.md) on each of several fixture positions at once
against `eolstation serve`'s PLC server, with its heartbeat on a connection of
its own, and prints one JSON object per position.

    plc_line.py --port N --cells 1=SERIAL,2=SERIAL,... [--timeout-s 90]

Per position, on its own connection: wait for READY; write recipe id 1,
cycle id and the serial (B+1..B+10) in one request, then START; wait for BUSY
(or RESULT_VALID) with the cycle echoed, clear START; wait for RESULT_VALID
with the cycle echoed; read the answer; RESULT_ACK; wait for RESULT_VALID to
clear; clear RESULT_ACK. Exit 0 when every position completed its cycle,
1 on a timeout or a protocol violation (printed).
"""
import argparse
import json
import sys
import threading
import time
import types


def stub_serial_modules():
    # pymodbus imports the serial modules unconditionally; this client is TCP only.
    for name in ("serial", "serial_asyncio"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    serial = sys.modules["serial"]
    if not hasattr(serial, "Serial"):
        serial.Serial = object
    sa = sys.modules["serial_asyncio"]
    if not hasattr(sa, "create_serial_connection"):
        sa.create_serial_connection = None


stub_serial_modules()
from pymodbus.client import ModbusTcpClient  # noqa: E402

START, RESULT_ACK = 1, 2
READY, BUSY, RESULT_VALID = 1, 2, 4


class Violation(Exception):
    pass


def client(port):
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    if not c.connect():
        raise Violation(f"cannot connect to port {port}")
    return c


def read(c, address, count):
    r = c.read_holding_registers(address, count, slave=1)
    if r.isError():
        raise Violation(f"read {address}+{count}: {r}")
    return r.registers


def write(c, address, values):
    r = c.write_registers(address, values, slave=1)
    if r.isError():
        raise Violation(f"write {address}: {r}")


def int32(hi, lo):
    v = hi << 16 | lo
    return v - (1 << 32) if v & 0x80000000 else v


def wait(c, base, pred, what, deadline):
    while time.monotonic() < deadline:
        block = read(c, base + 20, 13)
        if pred(block):
            return block
        time.sleep(0.02)
    raise Violation(f"timeout waiting for {what} (block {block})")


def serial_words(s):
    b = s.encode("ascii").ljust(16, b"\0")
    return [b[i] << 8 | b[i + 1] for i in range(0, 16, 2)]


def words_serial(ws):
    return bytes(b for w in ws for b in (w >> 8, w & 0xFF)).rstrip(b"\0").decode("ascii", "replace")


def cycle(port, pos, serial, deadline, out):
    base = 100 * pos
    cyc = 1000 + pos
    rec = {"channel": pos, "cycle": cyc, "serial": serial, "packml_seen": []}
    try:
        c = client(port)
        wait(c, base, lambda b: b[1] & READY, "READY", deadline)
        write(c, base + 1, [1, cyc] + serial_words(serial))
        write(c, base, [START])
        b = wait(c, base, lambda b: (b[1] & (BUSY | RESULT_VALID)) and b[2] == cyc, "BUSY", deadline)
        rec["saw_busy"] = bool(b[1] & BUSY)
        write(c, base, [0])
        while True:
            b = wait(c, base, lambda b: True, "state", deadline)
            if b[0] not in rec["packml_seen"]:
                rec["packml_seen"].append(b[0])
            if b[1] & RESULT_VALID and b[2] == cyc:
                break
            time.sleep(0.05)
        rec["packml"] = b[0]
        rec["status"] = b[1]
        rec["cycle_echo"] = b[2]
        rec["result"] = b[3]
        rec["fault"] = b[4]
        rec["serial_echo"] = words_serial(b[5:13])
        m = read(c, base + 40, 6)
        rec["ocv_0p1mv"] = int32(m[0], m[1])
        rec["r0_uohm"] = int32(m[2], m[3])
        rec["temp_rise_mk"] = int32(m[4], m[5])
        write(c, base, [RESULT_ACK])
        b = wait(c, base, lambda b: not b[1] & RESULT_VALID, "RESULT_VALID cleared", deadline)
        rec["packml_after_ack"] = b[0]
        write(c, base, [0])
        rec["ok"] = True
        c.close()
    except Exception as e:  # a protocol violation or a timeout: reported, exit 1
        rec["ok"] = False
        rec["error"] = str(e)
    out.append(rec)


def heartbeat(port, stop):
    c = client(port)
    n = 0
    while not stop.is_set():
        n = (n + 1) & 0xFFFF
        write(c, 0, [n])
        time.sleep(0.2)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cells", required=True, help="POSITION=SERIAL,...")
    ap.add_argument("--timeout-s", type=float, default=90)
    a = ap.parse_args()
    cells = [(int(p), s) for p, s in (x.split("=") for x in a.cells.split(","))]
    stop = threading.Event()
    hb = threading.Thread(target=heartbeat, args=(a.port, stop), daemon=True)
    hb.start()
    time.sleep(0.3)
    deadline = time.monotonic() + a.timeout_s
    out = []
    threads = [threading.Thread(target=cycle, args=(a.port, p, s, deadline, out)) for p, s in cells]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    hb.join(2)
    for rec in sorted(out, key=lambda r: r["channel"]):
        print(json.dumps(rec), flush=True)
    return 0 if all(r["ok"] for r in out) else 1


if __name__ == "__main__":
    sys.exit(main())
