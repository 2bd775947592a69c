// eol/instruments/modbus_thermo.hpp — TemperatureReader for any Modbus
// thermocouple module described by a register map (register_map.hpp); no
// per-vendor code.
//
// read_all() scans every channel: the value block, the per-channel type codes
// (if the map has them) and the status blocks, each table read in as few
// requests as the addresses allow (one request per table for the shipped
// maps). Type codes are re-read on every scan, so a module reconfigured
// behind the station's back is never scaled with a stale range.
//
// Per channel: °C with status ok, or a non-ok status with temp_c = NaN:
//   open         the module flags burn-out (status rule or sentinel raw value)
//   over_range   flagged, an over-range sentinel, or above the valid range
//   under_range  flagged, an under-range sentinel, or below the valid range
//   stale        the module says the value was not refreshed (a "no new
//                data" status rule, or a NaN float). The driver itself never
//                reuses a previous value: when a request fails, read_all()
//                throws (a typed error from errors.hpp) and keeps nothing.
// An open or out-of-range channel is never reported as a temperature.
//
// Lifecycle and threading: as ModbusClient (one thread / strand). connect()
// connects; after an error the next read_all() reconnects once.
// identify(): manufacturer and model from the map; the call reads the first
// value register so that it fails when the module does not answer.
#pragma once

#include <memory>
#include <string>

#include "eol/instruments/address.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/roles.hpp"

namespace eol::instruments {

/// `map.kind` must be thermocouple (else DefinitionError). The unit id is the
/// address's (`?unit=N`, default 1).
std::unique_ptr<TemperatureReader> make_modbus_thermo(std::string name, const Address& address,
                                                      RegisterMap map, double timeout_s = 1.0);

}  // namespace eol::instruments
