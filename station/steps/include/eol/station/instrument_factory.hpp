// eol/station/instrument_factory.hpp — real instrument drivers from the
// station configuration: a ScpiLoad (dialect file) or Modbus load (register
// map) per load instrument, a Modbus thermocouple reader per thermo.
//
// Lifecycle: the make_* functions read the dialect / map file and build the
// driver; they do no I/O (call connect() on the result).
//
// Errors: eol::instruments::DefinitionError for a dialect or map that cannot
// be used (file:line: key: what); UsageError naming the instrument's key
// path when the configuration and the definition disagree (more channels
// than the dialect has, a map of the wrong kind, the wrong driver for the
// role). Both end the `eolstation` command with exit code 2.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "eol/instruments/roles.hpp"
#include "eol/instruments/transport.hpp"
#include "eol/station/config.hpp"
#include "eol/station/steps.hpp"

namespace eol::station {

/// Connect/read timeouts and reconnect policy for one instrument; its I/O on
/// `io` when given (see TransportOptions::io_context).
instruments::TransportOptions transport_options(const InstrumentConfig& cfg, boost::asio::io_context* io = nullptr);

/// A load driver (driver scpi_load or modbus_load). `io`: where a SCPI
/// load's socket runs (the station controller's loop; it must outlive the
/// driver, and the driver must not be called from its thread), or nullptr
/// for a private io_context. A Modbus load's I/O is libmodbus's own,
/// blocking, in the calling thread.
std::unique_ptr<instruments::ElectronicLoad> make_load(const InstrumentConfig& cfg,
                                                       boost::asio::io_context* io = nullptr);
/// A thermocouple reader (driver modbus_thermo).
std::unique_ptr<instruments::TemperatureReader> make_thermo(const InstrumentConfig& cfg);

/// Every configured instrument, by name.
struct StationInstruments {
    std::map<std::string, std::unique_ptr<instruments::ElectronicLoad>> loads;
    std::map<std::string, std::unique_ptr<instruments::TemperatureReader>> thermos;
};
StationInstruments make_instruments(const StationConfig& cfg);

/// Fixture `position`'s instruments out of `instruments` (as
/// make_instruments made them; connected or not): its load and load channel,
/// its thermocouple reader and channel, and the station's ambient channel
/// (on another module: that module's reader). No lanes and no shared module
/// readings: driver calls inline unless the caller sets them. Throws
/// UsageError naming the station file for a position it does not have, or
/// an instrument of the position that `instruments` lacks.
ChannelIo channel_io(const StationConfig& cfg, int position, const StationInstruments& instruments);

}  // namespace eol::station
