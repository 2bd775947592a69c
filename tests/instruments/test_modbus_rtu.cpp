// Modbus RTU end to end: the simulated module serves one end of a socat pty
// pair, the real driver (and the real CLI) talk to the other end.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eol/instruments/errors.hpp"
#include "instruments/test_modbus_util.hpp"
#include "support/pty_pair.hpp"

using namespace eol;
using instruments::TcStatus;
using sim::TcChannel;

namespace {

struct RtuRig {
    test::PtyPair pty;
    std::shared_ptr<sim::Fixture> fixture = test::make_fixture(2);
    std::unique_ptr<sim::ModbusThermoServer> server;
    instruments::RegisterMap map;

    explicit RtuRig(const std::string& map_file, int unit = 5) {
        map = instruments::load_register_map(test::map_path(map_file));
        fixture->set_load(1, {sim::LoadMode::cc, 10.0, true});
        fixture->clock()->skip(300);
        fixture->set_load(1, {});
        sim::ModbusServerOptions opt;
        opt.unit = unit;
        server = std::make_unique<sim::ModbusThermoServer>(
            fixture, map, instruments::parse_address("rtu://" + pty.a.string() + "?baud=38400"),
            std::vector<TcChannel>{TcChannel::cell(0), TcChannel::cell(1)}, opt);
        server->start();
    }
    std::string client_address(int unit) const {
        return "rtu://" + pty.b.string() + "?baud=38400&parity=N&unit=" + std::to_string(unit);
    }
};

}  // namespace

TEST_CASE("modbus rtu: the driver reads the simulated module over a pty pair") {
    RtuRig rig("icpdas-et7018z.toml");
    auto reader = instruments::make_modbus_thermo(
        "tc-rtu", instruments::parse_address(rig.client_address(5)), rig.map, 0.5);
    reader->connect();
    for (int scan = 0; scan < 3; ++scan) {
        const auto r = reader->read_all();
        REQUIRE(r.size() == 10);
        for (std::size_t pos = 0; pos < 2; ++pos) {
            REQUIRE(r[pos].status == TcStatus::ok);
            CHECK(std::abs(r[pos].temp_c - rig.fixture->truth(pos).temp_c) < 0.15);
        }
        CHECK(r[2].status == TcStatus::open);
    }
    CHECK(rig.fixture->truth(1).temp_c > rig.fixture->truth(0).temp_c + 2.0);

    // RTU faults: a bad CRC is a ProtocolError; an exception a DeviceError.
    rig.server->faults().update([](sim::FaultSettings& s) { s.garbage_reply = true; });
    CHECK_THROWS_AS(reader->read_all(), instruments::ProtocolError);
    rig.server->faults().update([](sim::FaultSettings& s) { s.modbus_exception = 6; });
    try {
        reader->read_all();
        FAIL("no error");
    } catch (const instruments::DeviceError& e) {
        CHECK(e.detail() == "Modbus exception 6 (server device busy)");
    }
    CHECK(reader->read_all()[0].status == TcStatus::ok);
}

TEST_CASE("modbus rtu: a request for another unit is not answered") {
    RtuRig rig("advantech-adam6018.toml", 5);
    auto reader = instruments::make_modbus_thermo(
        "tc-rtu", instruments::parse_address(rig.client_address(6)), rig.map, 0.3);
    reader->connect();
    try {
        reader->read_all();
        FAIL("unit 6 answered");
    } catch (const instruments::TimeoutError& e) {
        CHECK(e.command() == "FC03 holding register 0 ×8");
    }
}

TEST_CASE("modbus rtu: eolstation instruments thermo reads an RTU module") {
    RtuRig rig("moxa-iologik-e1262.toml", 3);
    int status = -1;
    const std::string out =
        test::run_command(std::string(EOL_CLI) + " instruments thermo --map " +
                test::map_path("moxa-iologik-e1262.toml") + " --address '" +
                rig.client_address(1) + "' --unit 3 --json",
            status);
    CAPTURE(out);
    REQUIRE(status == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j["unit"] == 3);
    CHECK(j["model"] == "ioLogik E1262");
    REQUIRE(j["channels"].size() == 8);
    CHECK(j["channels"][0]["status"] == "ok");
    CHECK(std::abs(j["channels"][1]["temp_c"].get<double>() - rig.fixture->truth(1).temp_c) < 0.15);
    CHECK(j["channels"][5]["status"] == "open");
    CHECK(j["channels"][5]["temp_c"].is_null());
}
