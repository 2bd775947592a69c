// tests/support/sim_rig.hpp — the shipped example station's simulated
// instruments on ephemeral loopback ports (SCPI and Modbus servers over the
// cell physics) with the real drivers connected to them, and a ChannelJob
// per fixture position whose load does hardware-timed pulses (SCPI): what
// the demo and the controller drive, for tests of the step engine.
// Errors: REQUIRE failures when the example configuration lacks what the
// rig needs; driver and simulator errors propagate.
#pragma once

#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/sim_station.hpp"
#include "eol/station/steps.hpp"

namespace eol::test {

class SimRig {
public:
    /// `time_scale` simulated seconds per wall second; no shorted cells.
    explicit SimRig(double time_scale) {
        cfg = station::load_station_config(std::string(EOL_CONFIG_DIR) + "/station.example.toml");
        cfg.sim.time_scale = time_scale;
        cfg.sim.short_fraction = 0.0;
        for (auto& inst : cfg.instruments) {
            inst.endpoint.port = 0;
            inst.address = inst.endpoint.to_string();
        }
        sim = std::make_unique<station::SimStation>(cfg);
        sim->start();
        for (const auto& srv : sim->servers())
            for (auto& inst : cfg.instruments)
                if (inst.name == srv.name) {
                    inst.address = "tcp://" + srv.address;
                    inst.endpoint = instruments::parse_address(inst.address);
                }
        for (const auto& inst : cfg.instruments) {
            if (inst.driver == station::InstrumentConfig::Driver::scpi_load) {
                drivers.loads[inst.name] = station::make_load(inst);
                drivers.loads[inst.name]->connect();
            } else if (inst.is_thermo()) {
                drivers.thermos[inst.name] = station::make_thermo(inst);
                drivers.thermos[inst.name]->connect();
            }
        }
    }

    /// The job of fixture `position` (its SCPI load and thermocouple), with
    /// `serial` placed in it as a cell with parameters `cell`.
    station::ChannelJob job(int position, const std::string& serial, const sim::CellParams& cell) {
        station::ChannelJob j;
        j.position = position;
        j.cell = {serial, cfg.recipe.cell_model, "", ""};
        j.io = station::channel_io(cfg, position, drivers);
        sim->fixture()->load_cell(static_cast<std::size_t>(position - 1), serial, cell);
        return j;
    }

    /// Whether the simulated load input of `position` is on (what the
    /// instrument itself says, not the driver).
    bool input_on(int position) const {
        return sim->fixture()->load(static_cast<std::size_t>(position - 1)).input_on;
    }

    /// One cell through `recipe` at the job's position, on the wall clock at
    /// the rig's time scale.
    station::TestRecord run(const station::Recipe& recipe, const station::Limits& limits,
                            const station::ChannelJob& job, const std::string& station_id = "T-1") const {
        station::ScaledWallClock clock(cfg.sim.time_scale);
        station::RunContext ctx;
        ctx.station_id = station_id;
        ctx.position = job.position;
        ctx.clock = &clock;
        return station::run_recipe(recipe, limits, job.io, job.cell, ctx);
    }

    /// The example recipe with only the steps of the given kinds.
    station::Recipe recipe_of(std::initializer_list<station::StepKind> kinds) const {
        station::Recipe r = cfg.recipe;
        r.steps.clear();
        for (const auto& st : cfg.recipe.steps)
            for (auto k : kinds)
                if (st.kind() == k) r.steps.push_back(st);
        return r;
    }

    station::StationConfig cfg;
    std::unique_ptr<station::SimStation> sim;
    station::StationInstruments drivers;  // the SCPI loads and the thermocouple readers, connected
};

}  // namespace eol::test
