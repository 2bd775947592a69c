// The real `eolstation` binary (issue 11, items 6, 12, 13): `instruments
// probe` fails on a queued SCPI error and on a thermocouple channel the
// station uses that reads open; `sim` refuses fault commands its
// instruments cannot have; `sim` holding more than FD_SETSIZE descriptors
// refuses a Modbus client instead of aborting; numeric options outside
// their range are usage errors. Loopback only; every wait is bounded.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "eol/sim/scpi_load_server.hpp"
#include "support/station_text.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"

using namespace eol;
namespace fs = std::filesystem;
using nlohmann::json;
using test::ProcessResult;
using test::TempDir;

namespace {

const std::string kConfig = EOL_CONFIG_DIR;
const std::string kKeysight = kConfig + "/dialects/keysight-el30000.toml";
const std::string kEt7018 = kConfig + "/maps/icpdas-et7018z.toml";

/// A station with one 2-channel SCPI load (load1) and one 8-channel
/// thermocouple module (tc1): positions 1 and 2 on tc1 channels 0 and 1,
/// the ambient on channel 7.
std::string station_text(std::uint16_t load_port, std::uint16_t tc_port) {
    return "[station]\n"
           "id = \"HOSTILE\"\n"
           "recipe = \"" + kConfig + "/recipes/eol-18650.toml\"\n"
           "serial_scheme = \"" + kConfig + "/serial-scheme.toml\"\n"
           "store = \"test.db\"\n"
           "ambient = { thermo = \"tc1\", channel = 7 }\n\n"
           "[instruments.load1]\n"
           "driver = \"scpi_load\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(load_port) + "\"\n"
           "dialect = \"" + kKeysight + "\"\n"
           "channels = 2\ntimeout_s = 2.0\nconnect_timeout_s = 2.0\n\n"
           "[instruments.tc1]\n"
           "driver = \"modbus_thermo\"\n"
           "address = \"tcp://127.0.0.1:" + std::to_string(tc_port) + "\"\n"
           "map = \"" + kEt7018 + "\"\n"
           "channels = 8\ntimeout_s = 2.0\nconnect_timeout_s = 2.0\n\n"
           "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n\n"
           "[[channels]]\nposition = 2\nload = \"load1\"\nload_channel = 2\nthermo = \"tc1\"\nthermo_channel = 1\n\n" +
           eol::test::station_tail_toml();
}

/// The load and the module simulated in this process, on ephemeral ports.
struct ProbeRig {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ScpiLoadServer> load;
    std::unique_ptr<sim::ModbusThermoServer> tc;
    TempDir tmp;
    fs::path config;

    ProbeRig() {
        fixture = std::make_shared<sim::Fixture>(2, std::make_shared<sim::SimClock>(1.0), 25.0, 3);
        fixture->load_cell(0, "C0", {});
        fixture->load_cell(1, "C1", {});
        sim::ScpiLoadServerOptions o;
        o.positions = {0, 1};
        load = std::make_unique<sim::ScpiLoadServer>(instruments::load_dialect(kKeysight), fixture, o);
        load->start();
        std::vector<sim::TcChannel> chans(10);
        chans[0] = sim::TcChannel::cell(0);
        chans[1] = sim::TcChannel::cell(1);
        chans[5] = sim::TcChannel::cell(0);  // wired, but no position uses it
        chans[7] = sim::TcChannel::ambient();
        tc = std::make_unique<sim::ModbusThermoServer>(fixture, instruments::load_register_map(kEt7018),
                                                       "127.0.0.1", 0, chans);
        tc->start();
        config = tmp.write("station.toml", station_text(load->port(), tc->port()));
    }
    ProcessResult probe(bool json_out = false) const {
        std::vector<std::string> args{EOL_CLI, "instruments", "probe", "--config", config.string()};
        if (json_out) args.push_back("--json");
        return test::run_process(args, 60);
    }
    void burnout(std::set<int> chans) {
        tc->faults().update([&](sim::FaultSettings& s) { s.burnout_channels = chans; });
    }
};

}  // namespace

TEST_CASE("hostile: probe cli: a queued SCPI error on a load fails the probe (exit 1, named)") {
    ProbeRig rig;
    ProcessResult r = rig.probe();
    REQUIRE_MESSAGE(r.exit == 0, r.out << r.err);

    rig.load->faults().update([](sim::FaultSettings& s) { s.scpi_error = "-222,\"Data out of range\""; });
    r = rig.probe(true);
    CAPTURE(r.out);
    CAPTURE(r.err);
    CHECK(r.exit == 1);
    CHECK(r.err.find("1 of 2 instruments failed") != std::string::npos);
    CHECK(r.err.find("load1 (load1: SYST:ERR?: instrument reported -222,\"Data out of range\")") !=
          std::string::npos);
    const json j = json::parse(r.out);
    CHECK(j["instruments"][0]["ok"] == false);
    CHECK(j["instruments"][0]["error"]["command"] == "SYST:ERR?");
    CHECK(j["instruments"][0]["identity"]["model"] == "EL34243A");  // what it read is still shown
    CHECK(j["instruments"][1]["ok"] == true);
    // The probe read the queue empty: the next probe passes.
    r = rig.probe();
    CHECK_MESSAGE(r.exit == 0, r.err);
}

TEST_CASE("hostile: probe cli: a thermocouple channel the station uses that reads open fails the probe") {
    ProbeRig rig;
    // Channel 5 is not used by any position nor the ambient: open is fine there.
    rig.burnout({5});
    ProcessResult r = rig.probe();
    CHECK_MESSAGE(r.exit == 0, r.err);
    CHECK(r.out.find("ch5 open") != std::string::npos);

    // Position 2's channel.
    rig.burnout({1});
    r = rig.probe();
    CHECK(r.exit == 1);
    CHECK(r.out.find("FAIL  tc1") != std::string::npos);
    CHECK(r.err.find("tc1 (tc1: read channels: channel 1 (position 2) reads open)") != std::string::npos);

    // The ambient channel, and a position's at once.
    rig.burnout({0, 7});
    r = rig.probe(true);
    CHECK(r.exit == 1);
    CHECK(r.err.find("channel 0 (position 1) reads open; channel 7 (ambient) reads open") != std::string::npos);
    const json j = json::parse(r.out);
    CHECK(j["instruments"][1]["ok"] == false);
    CHECK(j["instruments"][1]["reading"]["channels"][7]["status"] == "open");

    rig.burnout({});
    r = rig.probe();
    CHECK_MESSAGE(r.exit == 0, r.err);
}

TEST_CASE("hostile: sim cli: fault commands the instrument cannot have are refused, nothing changes") {
    const std::uint16_t lp = test::free_port(), tp = test::free_port();
    TempDir tmp;
    const fs::path config = tmp.write("station.toml", station_text(lp, tp));
    test::Process::Options o;
    o.pipe_stdin = true;
    o.stop_signal = SIGKILL;
    test::Process sim({EOL_CLI, "sim", "--config", config.string()}, o);
    REQUIRE_FALSE(sim.read_line().empty());
    REQUIRE_FALSE(sim.read_line().empty());

    const std::vector<std::pair<std::string, std::string>> refused{
        {"fault tc1 burnout 8", "error: burnout: channel 8 is out of range: tc1 has channels 0..7 (stdin line 1)"},
        {"fault tc1 burnout 1,-1", "error: burnout: channel -1 is out of range: tc1 has channels 0..7 (stdin line 2)"},
        {"fault tc1 scpi-error -222,\"x\"",
         "error: scpi-error: tc1 is a modbus-thermo simulator; scpi-error applies to scpi-load only (stdin line 3)"},
        {"fault load1 modbus-exception 2",
         "error: modbus-exception: load1 is a scpi-load simulator; modbus-exception applies to modbus-load, "
         "modbus-thermo only (stdin line 4)"},
        {"fault load1 burnout 0",
         "error: burnout: load1 is a scpi-load simulator; burnout applies to modbus-thermo only (stdin line 5)"},
        {"fault tc1 modbus-exception 12", "error: modbus-exception: a code 1..11 (stdin line 6)"},
        {"fault tc1 latency nan", "error: latency: 'nan' is not a number (stdin line 7)"},
        {"fault tc1 latency -1", "error: latency: 0..60 s (stdin line 8)"},
    };
    for (const auto& [line, reply] : refused) {
        CAPTURE(line);
        sim.send_line(line);
        CHECK(sim.read_line(10) == reply);
    }
    // A line without end (here 200 KiB) is cut off, not grown without bound.
    sim.send_line("fault tc1 latency " + std::string(200 * 1024, '9'));
    CHECK(sim.read_line(10) == "error: line longer than 4096 bytes, ignored (stdin line 9)");
    sim.send_line("faults");
    CHECK(sim.read_line(10) == "ok load1 none; tc1 none");
    // What the protocols do have is accepted.
    sim.send_line("fault tc1 burnout 0,7");
    CHECK(sim.read_line(10) == "ok tc1 burnout 0,7");
    sim.send_line("fault tc1 modbus-exception 2");
    CHECK(sim.read_line(10) == "ok tc1 modbus-exception 2 burnout 0,7");
    sim.send_line("fault load1 scpi-error -222,\"x\"");
    CHECK(sim.read_line(10) == "ok load1 scpi-error -222,\"x\"");
    CHECK(sim.terminate() == 0);
}

TEST_CASE("hostile: sim cli: holding more than FD_SETSIZE descriptors, sim refuses a Modbus client and keeps serving") {
    const std::uint16_t lp = test::free_port(), tp = test::free_port();
    TempDir tmp;
    const fs::path config = tmp.write("station.toml", station_text(lp, tp));
    test::Process::Options o;
    o.pipe_stdin = true;
    o.stop_signal = SIGKILL;
    std::unique_ptr<test::Process> sim;
    {
        // Descriptors 3 … FD_SETSIZE + 64 open without O_CLOEXEC: the simulator
        // inherits them, so every socket it opens is numbered above FD_SETSIZE.
        rlimit r{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &r) == 0);
        const rlim_t want = FD_SETSIZE + 512;
        if (r.rlim_cur < want) {
            REQUIRE(r.rlim_max >= want);
            r.rlim_cur = want;
            REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
        }
        std::vector<int> held;
        for (int fd = 0; fd < FD_SETSIZE + 64;) {
            fd = ::open("/dev/null", O_RDONLY);
            REQUIRE(fd >= 0);
            held.push_back(fd);
        }
        sim = std::make_unique<test::Process>(std::vector<std::string>{EOL_CLI, "sim", "--config", config.string()}, o);
        for (int fd : held) ::close(fd);
    }
    REQUIRE_FALSE(sim->read_line().empty());
    REQUIRE_FALSE(sim->read_line().empty());

    // The Modbus client is refused (connection closed), the simulator does not abort.
    const ProcessResult th = test::run_process(
        {EOL_CLI, "instruments", "thermo", "--map", kEt7018, "--address", "tcp://127.0.0.1:" + std::to_string(tp),
         "--timeout", "1"},
        60);
    CHECK(th.exit == 1);
    CHECK(sim->running());
    // The SCPI load (no select() there) still answers, and so does the control channel.
    const ProcessResult id = test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight, "--address",
                                                "tcp://127.0.0.1:" + std::to_string(lp), "identify"},
                                               60);
    CHECK_MESSAGE(id.exit == 0, id.err);
    sim->send_line("faults");
    CHECK(sim->read_line(10) == "ok load1 none; tc1 none");
    CHECK(sim->running());
    CHECK(sim->terminate() == 0);
    // Its log names the refusal and why.
    std::string err;
    char buf[4096];
    for (;;) {
        pollfd p{sim->err_fd(), POLLIN, 0};
        if (::poll(&p, 1, 1000) <= 0) break;
        const ssize_t n = ::read(sim->err_fd(), buf, sizeof buf);
        if (n <= 0) break;
        err.append(buf, static_cast<std::size_t>(n));
    }
    CAPTURE(err);
    CHECK(err.find("sim: ET-7018Z (simulated) at tcp://127.0.0.1:" + std::to_string(tp) +
                   ": refused 1 client connection(s): no descriptor below FD_SETSIZE (1024) is free") !=
          std::string::npos);
    CHECK(err.find("bit out of range") == std::string::npos);
}

TEST_CASE("hostile: instruments cli: --timeout, --interval and --points outside their range are usage errors naming it") {
    for (const std::string v : {"nan", "-1", "0", "inf", "1e9"}) {
        CAPTURE(v);
        const ProcessResult load = test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight,
                                                      "--address", "tcp://127.0.0.1:1", "--timeout=" + v, "identify"},
                                                     60);
        CHECK(load.exit == 2);
        CHECK(load.err.find("--timeout: ") != std::string::npos);
        CHECK(load.err.find(" s is outside the allowed range (0, 60] s") != std::string::npos);
        const ProcessResult th = test::run_process(
            {EOL_CLI, "instruments", "thermo", "--map", kEt7018, "--address", "tcp://127.0.0.1:1", "--timeout", v},
            60);
        CHECK(th.exit == 2);
        CHECK(th.err.find(" s is outside the allowed range (0, 60] s") != std::string::npos);
    }
    const ProcessResult nan_ = test::run_process({EOL_CLI, "instruments", "thermo", "--map", kEt7018, "--address",
                                                  "tcp://127.0.0.1:1", "--timeout", "nan"},
                                                 60);
    CHECK(nan_.err.find("--timeout: nan s is outside the allowed range (0, 60] s") != std::string::npos);
    const ProcessResult pulse =
        test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight, "--address", "tcp://127.0.0.1:1",
                           "pulse", "--profile", "1:1", "--interval", "inf"},
                          60);
    CHECK(pulse.exit == 2);
    CHECK(pulse.err.find("--interval: inf s is outside the allowed range (0, 3600] s") != std::string::npos);
    for (const std::string v : {"-1", "0x", "100000001"}) {
        CAPTURE(v);
        const ProcessResult points =
            test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight, "--address",
                               "tcp://127.0.0.1:1", "pulse", "--profile", "1:1", "--interval", "0.1", "--points=" + v},
                              60);
        CHECK(points.exit == 2);
    }
    const ProcessResult minus = test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight, "--address",
                                                   "tcp://127.0.0.1:1", "pulse", "--profile", "1:1", "--interval",
                                                   "0.1", "--points=-1"},
                                                  60);
    CHECK(minus.err.find("--points -1: outside the allowed range 1..100000000") != std::string::npos);
    const ProcessResult many = test::run_process({EOL_CLI, "instruments", "load", "--dialect", kKeysight, "--address",
                                                  "tcp://127.0.0.1:1", "pulse", "--profile", "1:1000000", "--interval",
                                                  "1e-6"},
                                                 60);
    CHECK(many.exit == 2);
    CHECK(many.err.find("1000000000000 logger points, more than the 100000000 allowed") != std::string::npos);
}
