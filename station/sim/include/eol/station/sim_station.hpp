// eol/station/sim_station.hpp — the simulated instruments of a whole
// station, assembled from its configuration: one virtual fixture (a
// position per configured channel, the [sim] clock scale, seed and ambient),
// a virtual lot of cells (serials from the station's serial scheme, cell
// parameters drawn from a population with the [sim] short fraction and R0
// shift), and one simulator per configured instrument on its configured
// address — SCPI loads speaking their dialect file, Modbus loads and
// thermocouple modules serving their register map. Every server shares the
// fixture, so a load's current heats the cell its thermocouple reads.
//
// Mapping: fixture index = configured position − 1. A load channel (or
// thermocouple channel) no position uses gets an empty fixture slot (reads
// 0 V / open circuit); the station's ambient thermocouple reads the
// fixture's ambient.
//
// Lifecycle: construct (reads dialects and maps, fills the fixture; no
// sockets) → start() (binds every server; throws std::runtime_error naming
// the instrument and address when one cannot listen, after stopping the
// ones already started) → stop() (or destroy).
//
// Errors at construction: UsageError naming the instrument key path when the
// configuration cannot be simulated (a SCPI load on a serial address, more
// channels than the dialect has, the wrong kind of map);
// instruments::DefinitionError for unusable dialect or map files.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "eol/sim/cell.hpp"
#include "eol/sim/faults.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/station/config.hpp"

namespace eol::station {

struct SimServerInfo {
    std::string kind;   // "scpi-load", "modbus-load" or "modbus-thermo"
    std::string name;   // the instrument's name in the configuration
    std::string address;  // "host:port" (TCP) or the serial device (RTU)
    std::filesystem::path definition;  // dialect or register-map file
};

class SimStation {
public:
    /// `clock`: the fixture's clock; nullptr = a scaled wall clock at
    /// [sim] time_scale (a manual SimClock for a run in virtual time).
    explicit SimStation(const StationConfig& cfg, std::shared_ptr<sim::SimClock> clock = nullptr);
    ~SimStation();
    SimStation(const SimStation&) = delete;
    SimStation& operator=(const SimStation&) = delete;

    void start();
    void stop();

    /// One entry per configured instrument, in configuration order
    /// (addresses are the bound ones after start()).
    std::vector<SimServerInfo> servers() const;
    /// Fault injection for the named instrument's simulator (std::out_of_range if none).
    sim::Faults& faults(const std::string& instrument);

    std::shared_ptr<sim::Fixture> fixture() const;
    std::shared_ptr<sim::SimClock> clock() const;

    /// The virtual lot: every cell's serial and parameters, in production order.
    const std::vector<std::string>& lot_serials() const;
    const sim::CellParams& lot_params(std::size_t index) const;
    /// Loads the next cells of the lot into every configured position
    /// (wrapping around); returns the serials by position (index = position − 1,
    /// empty for slots no position uses). The constructor loads the first ones.
    std::vector<std::string> load_next_cells();
    /// The serial in a configured (1-based) position, empty if none.
    std::string serial_at(int position) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace eol::station
