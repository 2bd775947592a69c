// eol/instruments/modbus_load.hpp — ElectronicLoad over Modbus for Maynuo
// M97-style loads described by a register map (config/maps/maynuo-m97.toml):
// coils for the input state and protection flags, a command register for the
// mode and input on/off, float32 holding registers for the setpoints and
// float32 registers for the readings.
//
// Pulses are SOFTWARE-TIMED on this family: the M97 register interface has no
// list/transient program with a data logger that can be read back over
// Modbus, so arm_pulse() only checks and stores the profile, trigger() sets
// the first step's current and switches the input on, and every
// pulse_done() poll applies the steps whose start time has passed and takes
// the V/I samples that are due (one FC03 read each). fetch_pulse() returns
// the samples with the times they were actually taken (relative to the
// trigger), not nominal ones: step edges and samples jitter by the polling
// interval plus a Modbus round trip (milliseconds). When the profile ends the
// input is switched off. Stations that need hardware timing use a SCPI load.
//
// Channels: 1 (single-channel loads). Current is discharge-positive at this
// edge whatever the device reports (map: current_reported_negative).
// Lifecycle/threading as ModbusClient: connect() takes remote control (the
// map's remote coil) and needs no other I/O; one thread / strand.
// Errors: errors.hpp; a protection trip is not an error of set/measure —
// read it with protection().
#pragma once

#include <memory>
#include <string>

#include "eol/instruments/address.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/roles.hpp"

namespace eol::instruments {

/// `map.kind` must be load (else DefinitionError). Unit id from the address.
std::unique_ptr<ElectronicLoad> make_modbus_load(std::string name, const Address& address,
                                                 RegisterMap map, double timeout_s = 1.0);

}  // namespace eol::instruments
