// eol/station/runner.hpp — runs one recipe on one fixture position through
// the instrument roles and returns the finished, immutable TestRecord.
//
// This is the synchronous, one-position building block: the demo runs one
// per position on its own thread; the asynchronous multi-channel sequencer
// (a later issue) is meant to replace the threads, not these steps.
//
// Lifecycle: build a ChannelIo over connected drivers (shared instruments
// come with the mutex that serializes their use), call run_recipe(). Steps
// never touch SQL: the caller hands the record to its sinks (the store).
//
// Safety: after every reading while current flows, a cell temperature above
// limits.temp_abort_c or a terminal voltage below limits.v_min_v ends the
// run with verdict abort; any instrument or fit error ends it with verdict
// error. In every case the channel's input is switched off before
// run_recipe() returns (best effort when the instrument itself failed), and
// the reason is in abort_reason. run_recipe() itself does not throw for
// instrument faults; it throws std::invalid_argument for a recipe step
// that asks more current than limits.i_max_a.
//
// Timing: recipe durations are station seconds; `time_scale` station seconds
// pass per wall second (1 on a real line; the simulators' clock scale when
// driving them, so a 20-minute recipe runs in seconds).
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "eol/instruments/roles.hpp"
#include "eol/station/config.hpp"
#include "eol/station/record.hpp"

namespace eol::station {

struct ChannelIo {
    instruments::ElectronicLoad* load = nullptr;
    int load_channel = 1;
    std::mutex* load_mutex = nullptr;
    instruments::TemperatureReader* thermo = nullptr;
    int thermo_channel = 0;
    std::mutex* thermo_mutex = nullptr;
    std::optional<int> ambient_channel;  // on the same reader
};

struct CellIdentity {
    std::string serial;  // normalized
    std::string cell_model;
    std::string lot;
    std::string production_date;  // YYYY-MM-DD or ""
};

struct RunContext {
    std::string station_id;
    int position = 0;
    double time_scale = 1.0;
};

TestRecord run_recipe(const Recipe& recipe, const Limits& limits, const ChannelIo& io,
                      const CellIdentity& cell, const RunContext& ctx);

}  // namespace eol::station
