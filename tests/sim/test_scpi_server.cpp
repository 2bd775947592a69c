// The simulated SCPI load server on its own: ports, parsing against the
// dialect's templates, the error queue, several clients at once, the list
// and data logger driving the fixture.
#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/errors.hpp"
#include "eol/instruments/scpi.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/scpi_load_server.hpp"

using namespace eol;

namespace {

instruments::Dialect dialect(const std::string& name) {
    return instruments::load_dialect(std::string(EOL_CONFIG_DIR) + "/dialects/" + name + ".toml");
}

struct Rig {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ScpiLoadServer> server;
    explicit Rig(const std::string& name, double scale = 100.0) {
        fixture = std::make_shared<sim::Fixture>(2, std::make_shared<sim::SimClock>(scale), 25.0, 3);
        fixture->load_cell(0, "CELL0", sim::CellParams{});
        fixture->load_cell(1, "CELL1", sim::CellParams{});
        auto d = dialect(name);
        sim::ScpiLoadServerOptions o;
        if (d.channels == 1) o.positions = {1};  // a single-channel load on position 2
        server = std::make_unique<sim::ScpiLoadServer>(std::move(d), fixture, o);
        server->start();
    }
    instruments::ScpiClient client(double timeout_s = 1.0) const {
        return instruments::ScpiClient(
            "raw", std::make_unique<instruments::TcpTransport>("127.0.0.1", server->port()), timeout_s);
    }
};

}  // namespace

TEST_CASE("scpi server: port 0 binds an ephemeral port, two servers get two ports") {
    Rig a("keysight-el30000"), b("keysight-el30000");
    CHECK(a.server->port() != 0);
    CHECK(b.server->port() != 0);
    CHECK(a.server->port() != b.server->port());
    CHECK(a.server->endpoint() == "127.0.0.1:" + std::to_string(a.server->port()));
    CHECK(a.server->running());
    a.server->stop();
    CHECK_FALSE(a.server->running());
    auto c = a.client(0.3);
    CHECK_THROWS_AS(c.open(), instruments::ConnectionError);
}

TEST_CASE("scpi server: listening on a port in use is an error naming it") {
    Rig a("itech-it8500");
    auto d = dialect("itech-it8500");
    sim::ScpiLoadServerOptions o;
    o.port = a.server->port();
    o.name = "second";
    o.positions = {0};
    sim::ScpiLoadServer second(std::move(d), a.fixture, o);
    try {
        second.start();
        FAIL("expected a runtime_error");
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        CHECK(what.find("'second'") != std::string::npos);
        CHECK(what.find("127.0.0.1:" + std::to_string(a.server->port())) != std::string::npos);
    }
}

TEST_CASE("scpi server: commands are matched against the dialect, case- and blank-tolerant") {
    Rig rig("keysight-el30000");
    auto c = rig.client();
    c.write("func curr, (@2)");
    c.write("  :Curr   1.25 ,(@2)");
    c.write("inp on,(@2)");
    CHECK(c.query("SYST:ERR?") == "+0,\"No error\"");
    const auto s = rig.fixture->load(1);
    CHECK(s.input_on);
    CHECK(s.level == doctest::Approx(1.25));
    CHECK_FALSE(rig.fixture->load(0).input_on);
    // Without a channel list the command goes to channel 1.
    c.write("CURR 0.5");
    c.write("INP ON");
    c.sync();  // *OPC?: everything before it has been executed
    CHECK(rig.fixture->load(0).input_on);
    CHECK(rig.fixture->load(0).level == doctest::Approx(0.5));
    // Several commands on one line: the replies come back on one line.
    const std::string both = c.query("*IDN?;MEAS:CURR? (@2)");
    CHECK(both.starts_with("Keysight Technologies,EL34243A,"));
    const auto semi = both.rfind(';');
    REQUIRE(semi != std::string::npos);
    CHECK(instruments::parse_number(both.substr(semi + 1)) == doctest::Approx(1.25).epsilon(0.01));
    // A channel that does not exist.
    c.write("INP ON,(@3)");
    CHECK(c.query("SYST:ERR?").starts_with("-222,"));
}

TEST_CASE("scpi server: unknown commands queue -113, *CLS clears, the queue overflows at 20") {
    Rig rig("siglent-sdl1000x");
    auto c = rig.client();
    c.write(":FROB 1");
    const auto e = instruments::parse_error_entry(c.query(":SYST:ERR?"));
    CHECK(e.code == -113);
    CHECK(e.message.find("FROB 1") != std::string::npos);
    CHECK(instruments::parse_error_entry(c.query(":SYST:ERR?")).code == 0);
    for (int k = 0; k < 25; ++k) c.write("NOPE");
    c.sync();
    const auto q = rig.server->error_queue();
    CHECK(q.size() == 20);
    CHECK(q.back() == "-350,\"Queue overflow\"");
    c.write("*CLS");
    CHECK(c.drain_errors().empty());
    // An out-of-range level is refused and not applied.
    c.write(":CURR:LEV:IMM 45");
    CHECK(c.query("SYST:ERR?").starts_with("-222,"));
    CHECK(rig.fixture->load(1).level == 0.0);
    // Trigger with nothing armed.
    c.write("*TRG");
    CHECK(instruments::parse_error_entry(c.query("SYST:ERR?")).code == -211);
}

TEST_CASE("scpi server: *RST switches inputs off and clears the settings") {
    Rig rig("itech-it8500");
    auto c = rig.client();
    c.write("CURR 2");
    c.write("INP ON");
    c.sync();
    CHECK(rig.fixture->load(1).input_on);
    c.write("*RST");
    c.sync();
    CHECK_FALSE(rig.fixture->load(1).input_on);
    CHECK(rig.fixture->load(1).level == 0.0);
}

TEST_CASE("scpi server: several clients at once") {
    Rig rig("keysight-el30000");
    constexpr int kClients = 4, kQueries = 40;
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < kClients; ++k)
        threads.emplace_back([&, k] {
            auto c = rig.client(2.0);
            const std::string ch = std::to_string(k % 2 + 1);
            for (int q = 0; q < kQueries; ++q) {
                const double v = c.query_number("MEAS:VOLT? (@" + ch + ")");
                if (v > 3.5 && v < 4.3) ++ok;
            }
        });
    // Meanwhile one more client holds its connection open without asking anything.
    auto idle = rig.client();
    idle.open();
    for (auto& t : threads) t.join();
    CHECK(ok == kClients * kQueries);
    CHECK(rig.server->commands() >= static_cast<std::uint64_t>(kClients * kQueries));
    CHECK(idle.identify().model == "EL34243A");
}

TEST_CASE("scpi server: list and data logger drive the fixture's profile (per-step dialect)") {
    Rig rig("itech-it8500");
    auto c = rig.client();
    for (const char* cmd : {"FUNC CURR", "CURR 0", "FUNC:MODE LIST", "LIST:STEP 2", "LIST:LEV 1,0",
                            "LIST:WID 1,0.2", "LIST:LEV 2,3", "LIST:WID 2,0.2",
                            "SENS:DLOG:TINT 0.02", "SENS:DLOG:POIN 20", "INP ON", "INIT"})
        c.command(cmd);
    c.command("*TRG");
    int polls = 0;
    while (c.query_integer("STAT:OPER:COND?") != 0) {
        ++polls;
        REQUIRE(polls < 10000);
    }
    const auto v = c.query_array("FETC:ARR:VOLT?", instruments::ArrayFormat::ascii);
    const auto i = c.query_array("FETC:ARR:CURR?", instruments::ArrayFormat::ascii);
    REQUIRE(v.size() == 20);
    REQUIRE(i.size() == 20);
    CHECK(std::abs(i[5]) < 0.01);                         // t = 0.10 s: step 1, 0 A
    CHECK(i[15] == doctest::Approx(3.0).epsilon(0.01));   // t = 0.30 s: step 2, 3 A
    CHECK(v[5] - v[15] > 3.0 * 0.033 * 0.97);             // at least I·R0 lower under load
    // The fixture's own log is what came back.
    const auto log = rig.fixture->fetch_log(1);
    REQUIRE(log.v_v.size() == 20);
    CHECK(log.t_s[19] == doctest::Approx(0.38));
    CHECK(log.v_v[15] == doctest::Approx(v[15]).epsilon(1e-6));
    // Step numbers are checked against the programmed count.
    c.write("LIST:LEV 3,1");
    CHECK(c.query("SYST:ERR?").starts_with("-222,\"Data out of range; step 3 of 2"));
}

TEST_CASE("scpi server: binary block arrays in the Keysight dialect") {
    Rig rig("keysight-el30000");
    auto c = rig.client();
    for (const char* cmd : {"FORM REAL", "CURR:MODE LIST,(@1)", "LIST:CURR 0,2,(@1)",
                            "LIST:DWEL 0.1,0.1,(@1)", "SENS:SWE:TINT 0.01,(@1)",
                            "SENS:SWE:POIN 20,(@1)", "INP ON,(@1)", "INIT:TRAN (@1)"})
        c.command(cmd);
    c.command("*TRG");
    while ((c.query_integer("STAT:OPER:COND? (@1)") & 80) != 0) {
    }
    const auto i = c.query_array("FETC:ARR:CURR? (@1)", instruments::ArrayFormat::real32_be);
    REQUIRE(i.size() == 20);
    CHECK(std::abs(i[3]) < 0.01);
    CHECK(i[15] == doctest::Approx(2.0).epsilon(0.01));
}
