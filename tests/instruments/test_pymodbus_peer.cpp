// A peer we did not write: the thermocouple driver against a pymodbus server
// (tools/pymodbus_server.py, /usr/bin/python3 + python3-pymodbus) holding
// register images computed here by hand from the vendors' formulas. The test
// fails, not skips, when python3-pymodbus is missing.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_client.hpp"
#include "instruments/test_modbus_util.hpp"
#include "support/process.hpp"

using namespace eol;
using instruments::TcStatus;

namespace {

/// tools/pymodbus_server.py serving `image` on a free loopback port.
class PymodbusServer {
public:
    explicit PymodbusServer(const nlohmann::json& image) {
        REQUIRE_MESSAGE(std::system("/usr/bin/python3 -c 'import pymodbus' 2>/dev/null") == 0,
                        "python3-pymodbus is missing for /usr/bin/python3 (tools/setup installs it)");
        port_ = test::free_port();
        image_ = std::filesystem::temp_directory_path() /
                 ("eol-pymodbus-" + std::to_string(::getpid()) + "-" + std::to_string(port_) + ".json");
        std::ofstream(image_) << image.dump();
        test::Process::Options inherit;
        inherit.out = inherit.err = test::Process::Stream::inherit;
        server_.emplace(std::vector<std::string>{"/usr/bin/python3",
                                                 std::string(EOL_SOURCE_DIR) + "/tools/pymodbus_server.py",
                                                 "--port", std::to_string(port_), "--image", image_.string()},
                        inherit);
        // Wait until it accepts connections (or died).
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        for (;;) {
            REQUIRE_MESSAGE(server_->running(), "tools/pymodbus_server.py exited before listening");
            instruments::ModbusClient probe("probe", test::loopback(port_), 0.5);
            try {
                probe.connect();
                break;
            } catch (const instruments::ConnectionError&) {
            }
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                            "tools/pymodbus_server.py did not listen within 20 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    ~PymodbusServer() {
        server_.reset();  // SIGTERM, reaped
        std::error_code ec;
        std::filesystem::remove(image_, ec);
    }
    std::uint16_t port() const { return port_; }

private:
    std::uint16_t port_ = 0;
    std::filesystem::path image_;
    std::optional<test::Process> server_;
};

std::vector<instruments::TcReading> read_from_peer(const std::string& map_file,
                                                   const nlohmann::json& image) {
    PymodbusServer peer(image);
    auto reader = instruments::make_modbus_thermo(
        "peer", test::loopback(peer.port()),
        instruments::load_register_map(test::map_path(map_file)), 2.0);
    reader->connect();
    return reader->read_all();
}

void check_ok(const instruments::TcReading& r, double expected_c) {
    CHECK(r.status == TcStatus::ok);
    CHECK(r.temp_c == doctest::Approx(expected_c).epsilon(1e-6));
}
void check_status(const instruments::TcReading& r, TcStatus s) {
    CHECK(r.status == s);
    CHECK(std::isnan(r.temp_c));
}

}  // namespace

TEST_CASE("pymodbus peer: ICP DAS ET-7018Z image") {
    // Type codes: 14 J, 15 K, 16 T, 18 R, 21 N. Values: ICP DAS two's
    // complement over max(|min|, |max|) of the type.
    const nlohmann::json image = {
        {"unit", 1},
        {"input",
         {{"0", 597},       // K:  597/32767·1372
          {"1", "0xEF29"},  // J: −4311/32767·760
          {"2", "0x7FFF"},  // over range
          {"3", "0x8000"},  // under range
          {"4", 597},       // burn-out coil set: open wins
          {"5", 28671},     // T:  28671/32767·400
          {"6", 18533},     // R:  18533/32767·1768
          {"7", "0xF8C3"},  // R: −1853 → below 0 °C, the type's minimum
          {"8", 32515},     // N:  32515/32767·1300
          {"9", 0}}},
        {"holding",
         {{"427", 15}, {"428", 14}, {"429", 15}, {"430", 15}, {"431", 15},
          {"432", 16}, {"433", 18}, {"434", 18}, {"435", 21}, {"436", 15}}},
        {"coils", {{"133", 1}}},
    };
    const auto r = read_from_peer("icpdas-et7018z.toml", image);
    REQUIRE(r.size() == 10);
    check_ok(r[0], 597.0 / 32767.0 * 1372.0);
    check_ok(r[1], -4311.0 / 32767.0 * 760.0);
    check_status(r[2], TcStatus::over_range);
    check_status(r[3], TcStatus::under_range);
    check_status(r[4], TcStatus::open);
    check_ok(r[5], 28671.0 / 32767.0 * 400.0);
    check_ok(r[6], 18533.0 / 32767.0 * 1768.0);
    check_status(r[7], TcStatus::under_range);
    check_ok(r[8], 32515.0 / 32767.0 * 1300.0);
    check_ok(r[9], 0.0);
}

TEST_CASE("pymodbus peer: Advantech ADAM-6018+ image") {
    // Counts over the type range; status flags in the first of two words per
    // channel from 100: bit 0 stale, 1 over, 2 under, 3 open.
    const nlohmann::json image = {
        {"unit", 1},
        {"holding",
         {{"0", 1196}, {"1", 32768}, {"2", 6554}, {"3", "0xFFFF"}, {"4", 4660}, {"5", 4660},
          {"6", 4660}, {"7", "0xFFFF"},
          {"106", 8}, {"107", 0}, {"108", 2}, {"109", "0x8000"}, {"110", 4}, {"112", 1},
          {"200", 15}, {"201", 14}, {"202", 16}, {"203", 15}, {"204", 15}, {"205", 15},
          {"206", 15}, {"207", 15}}},
    };
    const auto r = read_from_peer("advantech-adam6018.toml", image);
    REQUIRE(r.size() == 8);
    check_ok(r[0], 1196.0 / 65535.0 * 1370.0);                 // K 0…1370
    check_ok(r[1], 32768.0 / 65535.0 * 760.0);                  // J 0…760
    check_ok(r[2], 6554.0 / 65535.0 * 500.0 - 100.0);           // T −100…400
    check_status(r[3], TcStatus::open);                         // status 0x0008
    check_status(r[4], TcStatus::over_range);                   // status 0x0002
    check_status(r[5], TcStatus::under_range);                  // status 0x0004
    check_status(r[6], TcStatus::stale);                        // status 0x0001
    check_status(r[7], TcStatus::over_range);                   // 0xFFFF, no flag
}

TEST_CASE("pymodbus peer: Moxa ioLogik E1262 image") {
    // int32 in 0.1 °C, high word first, from 2048; status enum from 2144.
    const nlohmann::json image = {
        {"unit", 1},
        {"input",
         {{"2048", 0}, {"2049", 253},             // 25.3
          {"2050", "0xFFFF"}, {"2051", "0xFF85"}, // −12.3
          {"2052", 0}, {"2053", 13715},           // 1371.5
          {"2054", 0}, {"2055", 250},             // status says burn-out
          {"2056", 0}, {"2057", 250},             // status says over range
          {"2058", 0}, {"2059", 250},             // status says under range
          {"2060", 0}, {"2061", 15000},           // 1500.0: above type K's range
          {"2062", 0}, {"2063", 0},
          {"2147", 1}, {"2148", 2}, {"2149", 3}}},
    };
    const auto r = read_from_peer("moxa-iologik-e1262.toml", image);
    REQUIRE(r.size() == 8);
    check_ok(r[0], 25.3);
    check_ok(r[1], -12.3);
    check_ok(r[2], 1371.5);
    check_status(r[3], TcStatus::open);
    check_status(r[4], TcStatus::over_range);
    check_status(r[5], TcStatus::under_range);
    check_status(r[6], TcStatus::over_range);
    check_ok(r[7], 0.0);
}
