// The table-driven thermocouple reader against the simulated module, over
// loopback, for every shipped register map.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_client.hpp"
#include "instruments/test_modbus_util.hpp"

using namespace eol;
using instruments::RegisterMap;
using instruments::TcStatus;
using sim::TcChannel;

namespace {

/// Heats positions 1 and 2 by discharging them, then switches the loads off,
/// so that the channels read clearly different temperatures.
std::shared_ptr<sim::Fixture> heated_fixture() {
    auto f = test::make_fixture(3);
    f->set_load(1, {sim::LoadMode::cc, 5.0, true});
    f->set_load(2, {sim::LoadMode::cc, 12.0, true});
    f->clock()->skip(600);
    f->set_load(1, {});
    f->set_load(2, {});
    return f;
}

std::vector<TcChannel> three_cells_and_ambient() {
    return {TcChannel::cell(0), TcChannel::cell(1), TcChannel::cell(2), TcChannel::ambient()};
}

}  // namespace

TEST_CASE("modbus thermo: every shipped map reads the fixture's temperatures and open inputs") {
    const auto maps = test::shipped_maps(RegisterMap::Kind::thermocouple);
    REQUIRE(maps.size() >= 3);
    for (const auto& path : maps) {
        CAPTURE(path);
        const RegisterMap map = instruments::load_register_map(path);
        test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient());
        REQUIRE(rig.reader->channels() == map.thermo.channels);
        const auto id = rig.reader->identify();
        CHECK(id.model == map.model);

        const auto r = rig.reader->read_all();
        REQUIRE(r.size() == static_cast<std::size_t>(map.thermo.channels));
        const double t1 = rig.fixture->truth(1).temp_c;
        const double t2 = rig.fixture->truth(2).temp_c;
        REQUIRE(t1 > 27.0);      // the heating worked: the channels differ
        REQUIRE(t2 > t1 + 5.0);
        for (std::size_t pos = 0; pos < 3; ++pos) {
            CAPTURE(pos);
            REQUIRE(r[pos].status == TcStatus::ok);
            // noise sd 0.02 °C + the module's resolution (0.1 °C at worst)
            CHECK(std::abs(r[pos].temp_c - rig.fixture->truth(pos).temp_c) < 0.15);
        }
        CHECK(r[3].status == TcStatus::ok);
        CHECK(std::abs(r[3].temp_c - 25.0) < 0.15);
        for (std::size_t ch = 4; ch < r.size(); ++ch) {
            CAPTURE(ch);
            CHECK(r[ch].status == TcStatus::open);  // no thermocouple connected
            CHECK(std::isnan(r[ch].temp_c));
        }
    }
}

TEST_CASE("modbus thermo: burn-out fault reads open on every shipped map, and recovers") {
    for (const auto& path : test::shipped_maps(RegisterMap::Kind::thermocouple)) {
        CAPTURE(path);
        test::ThermoRig rig(instruments::load_register_map(path), heated_fixture(),
                            three_cells_and_ambient());
        rig.server->faults().update([](sim::FaultSettings& s) { s.burnout_channels = {1, 3}; });
        auto r = rig.reader->read_all();
        CHECK(r[0].status == TcStatus::ok);
        CHECK(r[1].status == TcStatus::open);
        CHECK(std::isnan(r[1].temp_c));
        CHECK(r[2].status == TcStatus::ok);
        CHECK(r[3].status == TcStatus::open);
        rig.server->faults().update([](sim::FaultSettings& s) { s.burnout_channels.clear(); });
        r = rig.reader->read_all();
        CHECK(r[1].status == TcStatus::ok);
        CHECK(std::abs(r[1].temp_c - rig.fixture->truth(1).temp_c) < 0.15);
    }
}

TEST_CASE("modbus thermo: over and under range are never reported as temperatures") {
    for (const auto& path : test::shipped_maps(RegisterMap::Kind::thermocouple)) {
        CAPTURE(path);
        const RegisterMap map = instruments::load_register_map(path);
        // Type K on every shipped map: a cell at 1500 °C is above its range,
        // one at −300 °C below it.
        {
            test::ThermoRig rig(map, test::make_fixture(1, 1500.0), {TcChannel::cell(0)});
            const auto r = rig.reader->read_all();
            CHECK(r[0].status == TcStatus::over_range);
            CHECK(std::isnan(r[0].temp_c));
        }
        {
            test::ThermoRig rig(map, test::make_fixture(1, -300.0), {TcChannel::cell(0)});
            const auto r = rig.reader->read_all();
            CHECK(r[0].status == TcStatus::under_range);
            CHECK(std::isnan(r[0].temp_c));
        }
        {   // Just inside the range still reads as a temperature.
            test::ThermoRig rig(map, test::make_fixture(1, 700.0), {TcChannel::cell(0)});
            const auto r = rig.reader->read_all();
            CHECK(r[0].status == TcStatus::ok);
            CHECK(std::abs(r[0].temp_c - 700.0) < 0.2);
        }
    }
}

TEST_CASE("modbus thermo: per-channel type codes are re-read each scan (ET-7018Z)") {
    const RegisterMap map = instruments::load_register_map(test::map_path("icpdas-et7018z.toml"));
    test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient());
    // Channel 2 switched to type J (−210…760 °C, a different full scale), and
    // channel 1 to type T by a client write, as an integrator would do.
    rig.server->set_type_code(2, 14);
    instruments::ModbusClient other("setup", test::loopback(rig.server->port()));
    other.connect();
    other.write_register(427 + 1, 16);
    const auto r = rig.reader->read_all();
    CHECK(r[1].status == TcStatus::ok);
    CHECK(std::abs(r[1].temp_c - rig.fixture->truth(1).temp_c) < 0.15);
    CHECK(r[2].status == TcStatus::ok);
    CHECK(std::abs(r[2].temp_c - rig.fixture->truth(2).temp_c) < 0.15);

    // A channel configured for something the map does not know (0x08: ±10 V).
    other.write_register(427 + 3, 0x08);
    try {
        rig.reader->read_all();
        FAIL("expected a DeviceError");
    } catch (const instruments::DeviceError& e) {
        CHECK(e.instrument() == "tc1");
        CHECK(e.command().find("holding register 430") != std::string::npos);
        CHECK(std::string(e.what()).find("type code 8") != std::string::npos);
    }
}

TEST_CASE("modbus thermo: a value the module did not refresh reads stale (ADAM-6018)") {
    const RegisterMap map =
        instruments::load_register_map(test::map_path("advantech-adam6018.toml"));
    test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient());
    rig.server->set_stale({2});
    auto r = rig.reader->read_all();
    CHECK(r[0].status == TcStatus::ok);
    CHECK(r[2].status == TcStatus::stale);
    CHECK(std::isnan(r[2].temp_c));
    rig.server->set_stale({});
    r = rig.reader->read_all();
    CHECK(r[2].status == TcStatus::ok);
}

TEST_CASE("modbus thermo: float32 values in either word order") {
    for (const char* order : {"big", "little"}) {
        CAPTURE(order);
        const std::string text = std::string(R"(
[device]
kind = "thermocouple"
manufacturer = "Test"
model = "float module"
channels = 4
[values]
table = "input"
start = 2064
format = "float32"
word_order = ")") + order + R"("
scaling = "float32"
valid_min_c = -270.0
valid_max_c = 1372.0
[[status]]
status = "open"
layout = "bit"
table = "discrete_inputs"
start = 16
)";
        const RegisterMap map = instruments::parse_register_map(text, "<float map>");
        test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient());
        rig.server->faults().update([](sim::FaultSettings& s) { s.burnout_channels = {0}; });
        const auto r = rig.reader->read_all();
        CHECK(r[0].status == TcStatus::open);
        for (std::size_t pos = 1; pos < 3; ++pos) {
            REQUIRE(r[pos].status == TcStatus::ok);
            CHECK(std::abs(r[pos].temp_c - rig.fixture->truth(pos).temp_c) < 0.1);
        }
        // The reader really depends on the word order: read with the other one.
        RegisterMap swapped = map;
        swapped.thermo.word_order = std::string(order) == "big" ? instruments::WordOrder::little
                                                                : instruments::WordOrder::big;
        auto wrong = instruments::make_modbus_thermo("tc2", test::loopback(rig.server->port()), swapped);
        wrong->connect();
        const auto w = wrong->read_all();
        CHECK_FALSE((w[1].status == TcStatus::ok && std::abs(w[1].temp_c - r[1].temp_c) < 1.0));
    }
}

TEST_CASE("modbus thermo: several clients are served at once") {
    const RegisterMap map =
        instruments::load_register_map(test::map_path("moxa-iologik-e1262.toml"));
    test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient());
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k) {
        threads.emplace_back([&, k] {
            auto reader = instruments::make_modbus_thermo("tc" + std::to_string(k),
                                                          test::loopback(rig.server->port()), map);
            reader->connect();
            for (int i = 0; i < 20; ++i)
                if (reader->read_all()[1].status == TcStatus::ok) ++ok;
        });
    }
    for (auto& t : threads) t.join();
    CHECK(ok == 80);
    CHECK(rig.server->requests() >= 80 * 2);  // values + status block each scan
}

TEST_CASE("modbus thermo: an idle client is dropped by the server and the driver reconnects") {
    const RegisterMap map = instruments::load_register_map(test::map_path("icpdas-et7018z.toml"));
    sim::ModbusServerOptions opt;
    opt.idle_timeout_s = 0.2;
    test::ThermoRig rig(map, heated_fixture(), three_cells_and_ambient(), 1.0, opt);
    CHECK(rig.reader->read_all()[0].status == TcStatus::ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    // The server closed the idle connection: the first request finds it
    // closed, reconnects once and is answered.
    const auto before = rig.server->connections_accepted();
    CHECK(rig.reader->read_all()[0].status == TcStatus::ok);
    CHECK(rig.server->connections_accepted() == before + 1);
    CHECK(rig.reader->read_all()[0].status == TcStatus::ok);
}
