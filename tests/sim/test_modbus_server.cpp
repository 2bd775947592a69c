// The simulated Modbus servers seen from clients we did not write: a bare
// libmodbus master and mbpoll (a third-party command-line master).
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <thread>

#include <modbus/modbus.h>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/sim/modbus_load_server.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "support/cli_test.hpp"

using namespace eol;
using instruments::RegisterMap;
using sim::TcChannel;

namespace {

RegisterMap map(const std::string& file) {
    return instruments::load_register_map(std::string(EOL_CONFIG_DIR) + "/maps/" + file);
}

std::shared_ptr<sim::Fixture> fixture(std::size_t n = 2) {
    auto f = std::make_shared<sim::Fixture>(n, std::make_shared<sim::SimClock>(1.0), 25.0, 3);
    for (std::size_t k = 0; k < n; ++k) f->load_cell(k, "C" + std::to_string(k), {});
    return f;
}

/// A bare libmodbus master (no eolstation code).
struct Bare {
    modbus_t* ctx;
    explicit Bare(std::uint16_t port) : ctx(modbus_new_tcp("127.0.0.1", port)) {
        REQUIRE(ctx != nullptr);
        modbus_set_response_timeout(ctx, 1, 0);
        REQUIRE(modbus_connect(ctx) == 0);
    }
    ~Bare() {
        modbus_close(ctx);
        modbus_free(ctx);
    }
};

using eol::test::run_command;

/// mbpoll's "[ref]: \tvalue" lines.
std::map<int, long> mbpoll_values(const std::string& out) {
    std::map<int, long> v;
    const std::regex line(R"(\[(\d+)\]:\s+(-?\d+))");
    for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it)
        v[std::stoi((*it)[1])] = std::stol((*it)[2]);
    return v;
}

}  // namespace

TEST_CASE("modbus server: ephemeral port, bare libmodbus reads, request count") {
    auto fx = fixture();
    sim::ModbusThermoServer server(fx, map("icpdas-et7018z.toml"), "127.0.0.1", 0,
                                   {TcChannel::cell(0), TcChannel::cell(1)});
    CHECK(server.port() == 0);
    server.start();
    REQUIRE(server.running());
    REQUIRE(server.port() != 0);
    CHECK(server.address() == "tcp://127.0.0.1:" + std::to_string(server.port()));
    Bare c(server.port());
    std::uint16_t regs[10] = {};
    REQUIRE(modbus_read_input_registers(c.ctx, 0, 10, regs) == 10);
    // 25 °C on type K: 25/1372·32767 ≈ 597 counts (noise: a few counts).
    CHECK(std::abs(static_cast<std::int16_t>(regs[0]) - 597) < 5);
    CHECK(regs[2] == 0x7FFF);  // unconnected input: upscale burn-out
    std::uint8_t bits[10] = {};
    REQUIRE(modbus_read_bits(c.ctx, 129, 10, bits) == 10);
    CHECK(bits[0] == 0);
    CHECK(bits[2] == 1);
    // Outside the image: an exception, as a module would answer.
    CHECK(modbus_read_input_registers(c.ctx, 5000, 1, regs) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(server.requests() == 3);
}

TEST_CASE("modbus server: mbpoll, a third-party master, reads and writes the simulated module") {
    auto fx = fixture();
    sim::ModbusThermoServer server(fx, map("icpdas-et7018z.toml"), "127.0.0.1", 0,
                                   {TcChannel::cell(0), TcChannel::cell(1)});
    server.start();
    const std::string base = "mbpoll -m tcp -a 1 -1 -p " + std::to_string(server.port());
    int rc = -1;
    // Input registers 30001… (mbpoll references are 1-based): channel values.
    std::string out = run_command(base + " -t 3 -r 1 -c 10 127.0.0.1 2>&1", rc);
    CAPTURE(out);
    REQUIRE(rc == 0);
    auto v = mbpoll_values(out);
    REQUIRE(v.size() == 10);
    CHECK(std::abs(v[1] - 597) < 5);
    CHECK(v[3] == 32767);
    // Write channel 0's type code (holding register 427 = reference 428) to J.
    out = run_command(base + " -t 4 -r 428 127.0.0.1 14 2>&1", rc);
    REQUIRE(rc == 0);
    out = run_command(base + " -t 4 -r 428 -c 2 127.0.0.1 2>&1", rc);
    v = mbpoll_values(out);
    CHECK(v[428] == 14);
    CHECK(v[429] == 15);
    // The new type's full scale (J: 760 °C) is used from now on: 25/760·32767 ≈ 1078.
    out = run_command(base + " -t 3 -r 1 -c 1 127.0.0.1 2>&1", rc);
    v = mbpoll_values(out);
    CHECK(std::abs(v[1] - 1078) < 8);
}

TEST_CASE("modbus server: mbpoll reads the simulated M97 load's float registers") {
    auto fx = fixture(1);
    sim::ModbusLoadServer server(fx, map("maynuo-m97.toml"), "127.0.0.1", 0, 0);
    server.start();
    const std::string base = "mbpoll -m tcp -a 1 -1 -p " + std::to_string(server.port());
    int rc = -1;
    // U at 0x0B00 (reference 2817) as a big-endian float: the cell's OCV.
    const std::string out = run_command(base + " -t 4:float -B -r 2817 -c 1 127.0.0.1 2>&1", rc);
    CAPTURE(out);
    REQUIRE(rc == 0);
    const std::regex line(R"(\[2817\]:\s+([0-9.]+))");
    std::smatch m;
    REQUIRE(std::regex_search(out, m, line));
    CHECK(std::stod(m[1]) == doctest::Approx(sim::ocv_nmc_v(0.8)).epsilon(0.002));
}

TEST_CASE("modbus server: the load follows commands written with FC06 and coils too") {
    auto fx = fixture(1);
    sim::ModbusLoadServer server(fx, map("maynuo-m97.toml"), "127.0.0.1", 0, 0);
    server.start();
    Bare c(server.port());
    std::uint16_t w[2];
    instruments::float_to_words(1.25f, instruments::WordOrder::big, w[0], w[1]);
    REQUIRE(modbus_write_registers(c.ctx, 0x0A01, 2, w) == 2);
    REQUIRE(modbus_write_register(c.ctx, 0x0A00, 1) == 1);  // CC
    REQUIRE(modbus_write_bit(c.ctx, 0x0510, 1) == 1);       // input on via the coil
    CHECK(fx->load(0).input_on);
    CHECK(fx->load(0).level == doctest::Approx(1.25));
    std::uint16_t r[4];
    REQUIRE(modbus_read_registers(c.ctx, 0x0B00, 4, r) == 4);
    CHECK(instruments::words_to_float(r[2], r[3], instruments::WordOrder::big) ==
          doctest::Approx(1.25).epsilon(0.01));
    std::uint8_t on = 0;
    REQUIRE(modbus_read_bits(c.ctx, 0x0510, 1, &on) == 1);
    CHECK(on == 1);
    REQUIRE(modbus_write_register(c.ctx, 0x0A00, 43) == 1);  // input off
    CHECK_FALSE(fx->load(0).input_on);
}

TEST_CASE("modbus server: clients beyond max_clients are refused, the others served") {
    auto fx = fixture();
    sim::ModbusServerOptions opt;
    opt.max_clients = 2;
    sim::ModbusThermoServer server(fx, map("advantech-adam6018.toml"), "127.0.0.1", 0,
                                   {TcChannel::cell(0)}, opt);
    server.start();
    std::uint16_t regs[8];
    Bare a(server.port()), b(server.port());
    REQUIRE(modbus_read_registers(a.ctx, 0, 8, regs) == 8);
    REQUIRE(modbus_read_registers(b.ctx, 0, 8, regs) == 8);
    Bare third(server.port());  // the TCP handshake completes; the server closes it
    CHECK(modbus_read_registers(third.ctx, 0, 8, regs) == -1);
    CHECK(modbus_read_registers(a.ctx, 0, 8, regs) == 8);
}

TEST_CASE("modbus server: stop() returns promptly with clients connected and a request pending") {
    auto fx = fixture();
    auto server = std::make_unique<sim::ModbusThermoServer>(
        fx, map("moxa-iologik-e1262.toml"), "127.0.0.1", 0, std::vector<TcChannel>{});
    server->start();
    Bare c(server->port());
    server->faults().update([](sim::FaultSettings& s) { s.latency_s = 30.0; });
    std::thread t([&] {
        std::uint16_t regs[2];
        modbus_read_input_registers(c.ctx, 2048, 2, regs);  // waits for the slow reply
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto t0 = std::chrono::steady_clock::now();
    server->stop();
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    t.join();
    CHECK_FALSE(server->running());
    CHECK(took < 2.0);  // far below the 30 s of injected latency
}

TEST_CASE("modbus server: wrong map kinds and positions are refused at construction") {
    auto fx = fixture(2);
    CHECK_THROWS_AS(sim::ModbusThermoServer(fx, map("maynuo-m97.toml"), "127.0.0.1", 0, {}),
                    instruments::DefinitionError);
    CHECK_THROWS_AS(sim::ModbusLoadServer(fx, map("icpdas-et7018z.toml"), "127.0.0.1", 0, 0),
                    instruments::DefinitionError);
    CHECK_THROWS_AS(sim::ModbusThermoServer(fx, map("icpdas-et7018z.toml"), "127.0.0.1", 0,
                                            {TcChannel::cell(5)}),
                    std::out_of_range);
    CHECK_THROWS_AS(sim::ModbusLoadServer(fx, map("maynuo-m97.toml"), "127.0.0.1", 0, 2),
                    std::out_of_range);
    sim::ModbusThermoServer busy(fx, map("icpdas-et7018z.toml"), "127.0.0.1", 0, {});
    busy.start();
    sim::ModbusThermoServer clash(fx, map("icpdas-et7018z.toml"), "127.0.0.1", busy.port(), {});
    CHECK_THROWS_AS(clash.start(), std::runtime_error);
}
