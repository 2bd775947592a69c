// Shared set-up for the Modbus driver tests: a fixture on a real clock, a
// simulated server on an ephemeral loopback port, and the real driver.
// (Shell commands: run_command() from support/cli_test.hpp.)
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "eol/instruments/address.hpp"
#include "eol/instruments/modbus_load.hpp"
#include "eol/instruments/modbus_thermo.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/modbus_load_server.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "support/cli_test.hpp"

namespace eol::test {

inline instruments::Address loopback(std::uint16_t port) {
    return instruments::parse_address("tcp://127.0.0.1:" + std::to_string(port));
}

/// Every shipped map of the given kind (config/maps/*.toml).
inline std::vector<std::string> shipped_maps(instruments::RegisterMap::Kind kind) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(std::string(EOL_CONFIG_DIR) + "/maps")) {
        if (e.path().extension() != ".toml") continue;
        if (instruments::load_register_map(e.path().string()).kind == kind)
            out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

inline std::string map_path(const std::string& file) {
    return std::string(EOL_CONFIG_DIR) + "/maps/" + file;
}

/// A fixture with `cells` cells loaded at `ambient_c`.
inline std::shared_ptr<sim::Fixture> make_fixture(std::size_t cells, double ambient_c = 25.0) {
    auto clock = std::make_shared<sim::SimClock>(1.0);
    auto f = std::make_shared<sim::Fixture>(cells, clock, ambient_c, 7);
    for (std::size_t k = 0; k < cells; ++k) f->load_cell(k, "SN" + std::to_string(k), {});
    return f;
}

struct ThermoRig {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ModbusThermoServer> server;
    std::unique_ptr<instruments::TemperatureReader> reader;

    ThermoRig(const instruments::RegisterMap& map, std::shared_ptr<sim::Fixture> fx,
              std::vector<sim::TcChannel> channels, double timeout_s = 1.0,
              sim::ModbusServerOptions opt = {})
        : fixture(std::move(fx)) {
        server = std::make_unique<sim::ModbusThermoServer>(fixture, map, "127.0.0.1", 0,
                                                           std::move(channels), opt);
        server->start();
        reader = instruments::make_modbus_thermo("tc1", loopback(server->port()), map, timeout_s);
        reader->connect();
    }
};

struct LoadRig {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ModbusLoadServer> server;
    std::unique_ptr<instruments::ElectronicLoad> load;

    explicit LoadRig(const instruments::RegisterMap& map, double timeout_s = 1.0,
                     sim::ModbusLoadLimits limits = {})
        : fixture(make_fixture(1)) {
        server = std::make_unique<sim::ModbusLoadServer>(fixture, map, "127.0.0.1", 0, 0, limits);
        server->start();
        load = instruments::make_modbus_load("load1", loopback(server->port()), map, timeout_s);
        load->connect();
    }
};

}  // namespace eol::test
