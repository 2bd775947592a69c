// End to end through the real `eolstation` binary: `sim` runs the simulated
// instruments of a temporary station file on free loopback ports, then
// `instruments probe` and `instruments load … pulse` talk to them like they
// would to real hardware; SIGTERM stops the simulator with exit code 0.
#include <doctest/doctest.h>

#include <signal.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/sim_station.hpp"
#include "support/station_text.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using eol::test::free_port;
using eol::test::Process;
using eol::test::TempDir;
using Result = eol::test::ProcessResult;

// Runs to completion (at most 120 s) and collects both streams.
Result run(const std::vector<std::string>& args) { return eol::test::run_process(args, 120); }

// `eolstation sim` in the background; reads its server lines.
class SimProcess {
public:
    explicit SimProcess(const fs::path& config, bool with_stdin = false)
        : proc_({EOL_CLI, "sim", "--config", config.string()}, options(with_stdin)) {}
    /// Writes one line to the simulator's stdin (its fault control).
    void send(const std::string& text) { proc_.send_line(text); }
    /// The next stdout line (at most `timeout_s`); empty when none came.
    std::string line(double timeout_s = 30) { return proc_.read_line(timeout_s); }
    /// SIGTERM, then the exit code (at most 20 s).
    int terminate() { return proc_.terminate(SIGTERM, 20); }

private:
    static Process::Options options(bool with_stdin) {
        Process::Options o;
        o.pipe_stdin = with_stdin;
        o.stop_signal = SIGKILL;
        return o;
    }
    Process proc_;
};

struct Ports {
    std::uint16_t keysight = free_port(), siglent = free_port(), itech = free_port(),
                  m97 = free_port(), tc = free_port();
};

std::string config_text(const Ports& p, const std::string& extra = "") {
    const std::string c = EOL_CONFIG_DIR;
    return "[station]\n"
           "id = \"SIM-TEST\"\n"
           "recipe = \"" + c + "/recipes/eol-18650.toml\"\n"
           "serial_scheme = \"" + c + "/serial-scheme.toml\"\n"
           "store = \"test.db\"\n"
           "ambient = { thermo = \"tc1\", channel = 7 }\n\n"
           "[instruments.load1]\n"
           "driver = \"scpi_load\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(p.keysight) + "\"\n"
           "dialect = \"" + c + "/dialects/keysight-el30000.toml\"\n"
           "channels = 2\n\n"
           "[instruments.load2]\n"
           "driver = \"scpi_load\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(p.siglent) + "\"\n"
           "dialect = \"" + c + "/dialects/siglent-sdl1000x.toml\"\n\n"
           "[instruments.load3]\n"
           "driver = \"scpi_load\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(p.itech) + "\"\n"
           "dialect = \"" + c + "/dialects/itech-it8500.toml\"\n\n"
           "[instruments.load4]\n"
           "driver = \"modbus_load\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(p.m97) + "\"\n"
           "map = \"" + c + "/maps/maynuo-m97.toml\"\n\n"
           "[instruments.tc1]\n"
           "driver = \"modbus_thermo\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(p.tc) + "\"\n"
           "map = \"" + c + "/maps/icpdas-et7018z.toml\"\n"
           "channels = 8\n\n" +
           extra +
           "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n\n"
           "[[channels]]\nposition = 2\nload = \"load1\"\nload_channel = 2\nthermo = \"tc1\"\nthermo_channel = 1\n\n"
           "[[channels]]\nposition = 3\nload = \"load2\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 2\n\n"
           "[[channels]]\nposition = 4\nload = \"load3\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 3\n\n"
           "[[channels]]\nposition = 5\nload = \"load4\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 4\n\n" +
           eol::test::station_tail_toml();
}

}  // namespace

TEST_CASE("sim cli: sim + instruments probe + instruments load pulse through the real binary") {
    TempDir tmp;
    const Ports ports;
    const fs::path config = tmp.write("station.toml", config_text(ports));

    SimProcess sim(config);
    std::vector<std::string> lines;
    for (int k = 0; k < 5; ++k) lines.push_back(sim.line());
    const std::string c = EOL_CONFIG_DIR;
    CHECK(lines[0] == "scpi-load load1 127.0.0.1:" + std::to_string(ports.keysight) + " " + c +
                          "/dialects/keysight-el30000.toml");
    CHECK(lines[1] == "scpi-load load2 127.0.0.1:" + std::to_string(ports.siglent) + " " + c +
                          "/dialects/siglent-sdl1000x.toml");
    CHECK(lines[2] == "scpi-load load3 127.0.0.1:" + std::to_string(ports.itech) + " " + c +
                          "/dialects/itech-it8500.toml");
    CHECK(lines[3] == "modbus-load load4 127.0.0.1:" + std::to_string(ports.m97) + " " + c +
                          "/maps/maynuo-m97.toml");
    CHECK(lines[4] == "modbus-thermo tc1 127.0.0.1:" + std::to_string(ports.tc) + " " + c +
                          "/maps/icpdas-et7018z.toml");

    // probe: every instrument answers with its identity and a reading.
    const Result probe = run({EOL_CLI, "instruments", "probe", "--config", config.string(), "--json"});
    CHECK_MESSAGE(probe.exit == 0, probe.err);
    const json pj = json::parse(probe.out);
    REQUIRE(pj["instruments"].size() == 5);
    for (const auto& i : pj["instruments"]) {
        CAPTURE(i.dump());
        CHECK(i["ok"] == true);
    }
    CHECK(pj["instruments"][0]["identity"]["model"] == "EL34243A");
    CHECK(pj["instruments"][1]["identity"]["manufacturer"] == "Siglent Technologies");
    CHECK(pj["instruments"][2]["identity"]["model"] == "IT8512B+");
    const double ocv = pj["instruments"][0]["reading"]["v_v"].get<double>();
    CHECK(ocv > 3.9);
    CHECK(ocv < 4.15);
    // The thermocouple module reads the cells and, on channel 7, the ambient.
    const auto& tc = pj["instruments"][4]["reading"]["channels"];
    REQUIRE(tc.size() == 8);
    CHECK(tc[0]["status"] == "ok");
    CHECK(tc[0]["temp_c"].get<double>() == doctest::Approx(25.0).epsilon(0.02));
    CHECK(tc[5]["status"] == "open");  // nothing taped to channel 5
    CHECK(tc[7]["status"] == "ok");

    // load pulse on load1 channel 2 = position 2: ΔV/ΔI is that cell's R0.
    const std::string kd = c + "/dialects/keysight-el30000.toml";
    const std::string ka = "tcp://127.0.0.1:" + std::to_string(ports.keysight);
    const Result pulse = run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "--channel",
                              "2", "--json", "pulse", "--profile", "0:0.505,2.5:0.5,0:0.3", "--interval",
                              "0.01"});
    REQUIRE_MESSAGE(pulse.exit == 0, pulse.err);
    const json d = json::parse(pulse.out);
    const auto v = d["v_v"].get<std::vector<double>>();
    const auto i = d["i_a"].get<std::vector<double>>();
    REQUIRE(v.size() == 131);
    REQUIRE(i.size() == 131);
    CHECK(std::abs(i[40]) < 0.01);
    CHECK(i[51] == doctest::Approx(2.5).epsilon(0.01));
    CHECK(std::abs(i[110]) < 0.01);
    double v0 = 0, i0 = 0;
    for (int k = 46; k < 51; ++k) {
        v0 += v[static_cast<std::size_t>(k)] / 5;
        i0 += i[static_cast<std::size_t>(k)] / 5;
    }
    const double r0 = (v0 - v[51]) / (i[51] - i0);
    // The same configuration builds the same lot in-process: position 2 holds
    // the lot's second cell.
    const eol::station::StationConfig cfg = eol::station::load_station_config(config);
    eol::station::SimStation twin(cfg);
    CHECK(twin.serial_at(2) == twin.lot_serials()[1]);
    CHECK(r0 == doctest::Approx(twin.lot_params(1).r0_ohm).epsilon(0.03));

    // Other load actions: measure under a set current, then off.
    CHECK(run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "set-current", "1"}).exit == 0);
    CHECK(run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "input", "on"}).exit == 0);
    const Result m = run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "--json", "measure"});
    REQUIRE(m.exit == 0);
    CHECK(json::parse(m.out)["i_a"].get<double>() == doctest::Approx(1.0).epsilon(0.01));
    CHECK(run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "input", "off"}).exit == 0);
    const Result id = run({EOL_CLI, "instruments", "load", "--dialect", c + "/dialects/itech-it8500.toml",
                           "--address", "tcp://127.0.0.1:" + std::to_string(ports.itech), "identify"});
    CHECK(id.exit == 0);
    CHECK(id.out == "ITECH Ltd. IT8512B+ (serial SIM800001, firmware 1.35-1.31)\n");

    // An instrument nobody simulates: probe exits 1 and names it and why,
    // while the others still report.
    const std::uint16_t dead = free_port();
    const fs::path with_ghost = tmp.write(
        "ghost.toml", config_text(ports, "[instruments.ghost]\ndriver = \"scpi_load\"\naddress = "
                                         "\"tcp://127.0.0.1:" + std::to_string(dead) + "\"\ndialect = \"" +
                                         kd + "\"\ntimeout_s = 0.5\nconnect_timeout_s = 0.5\n\n"));
    const Result gp = run({EOL_CLI, "instruments", "probe", "--config", with_ghost.string()});
    CHECK(gp.exit == 1);
    CHECK(gp.out.find("FAIL  ghost") != std::string::npos);
    CHECK(gp.out.find("ok    load1") != std::string::npos);
    CHECK(gp.err.find("1 of 6 instruments failed") != std::string::npos);
    CHECK(gp.err.find("ghost (ghost: connect") != std::string::npos);
    CHECK(gp.err.find("Connection refused") != std::string::npos);

    CHECK(sim.terminate() == 0);
}

TEST_CASE("sim cli: faults switched at run time on stdin reach the real drivers") {
    TempDir tmp;
    const Ports ports;
    const fs::path config = tmp.write("station.toml", config_text(ports));
    SimProcess sim(config, true);
    for (int k = 0; k < 5; ++k) REQUIRE_FALSE(sim.line().empty());
    const std::string c = EOL_CONFIG_DIR;
    const std::string map = c + "/maps/icpdas-et7018z.toml";
    const std::string tca = "tcp://127.0.0.1:" + std::to_string(ports.tc);
    const std::string kd = c + "/dialects/keysight-el30000.toml";
    const std::string ka = "tcp://127.0.0.1:" + std::to_string(ports.keysight);

    auto thermo = [&] {
        const Result r = run({EOL_CLI, "instruments", "thermo", "--map", map, "--address", tca, "--json"});
        REQUIRE_MESSAGE(r.exit == 0, r.err);
        return json::parse(r.out);
    };
    auto status_of = [](const json& j, std::size_t ch) { return j["channels"][ch]["status"].get<std::string>(); };
    CHECK(status_of(thermo(), 3) == "ok");

    // Thermocouple burn-out on channels 1 and 3, then cleared.
    sim.send("fault tc1 burnout 1,3");
    CHECK(sim.line() == "ok tc1 burnout 1,3");
    json j = thermo();
    CHECK(status_of(j, 0) == "ok");
    CHECK(status_of(j, 1) == "open");
    CHECK(status_of(j, 3) == "open");
    sim.send("fault tc1 clear");
    CHECK(sim.line() == "ok tc1 none");
    CHECK(status_of(thermo(), 3) == "ok");

    // A Modbus exception on the next request: the driver names it; the one after is fine.
    sim.send("fault tc1 modbus-exception 4");
    CHECK(sim.line() == "ok tc1 modbus-exception 4");
    const Result ex = run({EOL_CLI, "instruments", "thermo", "--map", map, "--address", tca});
    CHECK(ex.exit != 0);
    CHECK(ex.err.find("xception") != std::string::npos);
    CHECK(status_of(thermo(), 0) == "ok");

    // A queued SCPI error is drained and reported after a configuration command.
    sim.send("fault load1 scpi-error -222,\"Data out of range\"");
    CHECK(sim.line() == "ok load1 scpi-error -222,\"Data out of range\"");
    const Result se = run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "set-current", "1"});
    CHECK(se.exit != 0);
    CHECK(se.err.find("-222") != std::string::npos);

    // Silence: the driver times out naming the instrument's command; then back.
    sim.send("fault load1 silence on");
    CHECK(sim.line() == "ok load1 silence");
    const Result to = run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "--timeout", "0.5",
                           "identify"});
    CHECK(to.exit != 0);
    CHECK(to.err.find("no reply within 0.5 s") != std::string::npos);
    sim.send("fault load1 silence off");
    CHECK(sim.line() == "ok load1 none");
    CHECK(run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", ka, "identify"}).exit == 0);

    // Bad control lines are answered with an error naming the line; nothing changes.
    sim.send("fault nosuch latency 1");
    std::string l = sim.line();
    CHECK(l.find("error: no simulated instrument 'nosuch'") == 0);
    CHECK(l.find("(stdin line 7)") != std::string::npos);
    sim.send("fault tc1 latency abc");
    CHECK(sim.line().find("error: latency: 'abc' is not a number") == 0);
    sim.send("faults");
    l = sim.line();
    CHECK(l.find("ok load1 none") == 0);
    CHECK(l.find("tc1 none") != std::string::npos);

    CHECK(sim.terminate() == 0);
}

TEST_CASE("sim cli: usage and configuration errors exit 2 with a message") {
    TempDir tmp;
    const Ports ports;
    const std::string kd = std::string(EOL_CONFIG_DIR) + "/dialects/keysight-el30000.toml";
    // No action for `instruments load`.
    CHECK(run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", "tcp://127.0.0.1:1"}).exit == 2);
    // A profile that does not parse names the step and the character.
    const Result bad = run({EOL_CLI, "instruments", "load", "--dialect", kd, "--address", "tcp://127.0.0.1:1",
                            "pulse", "--profile", "0:1,2:x", "--interval", "0.01"});
    CHECK(bad.exit == 2);
    CHECK(bad.err.find("--profile: step 2 at character 7: duration 'x' is not a number") != std::string::npos);
    // A broken dialect file names file:line and the key.
    const fs::path broken = tmp.write("broken.toml", "[dialect]\nname = \"x\"\nchannel_style = \"sideways\"\n");
    const Result bd = run({EOL_CLI, "instruments", "load", "--dialect", broken.string(), "--address",
                           "tcp://127.0.0.1:1", "identify"});
    CHECK(bd.exit == 2);
    CHECK(bd.err.find(broken.string() + ":3: dialect.channel_style: 'sideways' is not one of none, prefix, suffix") !=
          std::string::npos);
    // More channels than the dialect has: the simulator refuses the configuration.
    std::string text = config_text(ports);
    const auto at = text.find("channels = 2");
    REQUIRE(at != std::string::npos);
    text.replace(at, 12, "channels = 4");
    const fs::path four = tmp.write("four.toml", text);
    const Result s4 = run({EOL_CLI, "sim", "--config", four.string()});
    CHECK(s4.exit == 2);
    CHECK(s4.err.find("instruments.load1.channels: 4 channels, but dialect 'keysight-el30000'") != std::string::npos);
    // A port already in use: sim exits 2 naming the instrument and the address.
    const fs::path config = tmp.write("station.toml", config_text(ports));
    SimProcess first(config);
    REQUIRE_FALSE(first.line().empty());
    const Result second = run({EOL_CLI, "sim", "--config", config.string()});
    CHECK(second.exit == 2);
    CHECK(second.err.find("sim: instrument 'load1'") != std::string::npos);
    CHECK(second.err.find("127.0.0.1:" + std::to_string(ports.keysight)) != std::string::npos);
    CHECK(first.terminate() == 0);
}
