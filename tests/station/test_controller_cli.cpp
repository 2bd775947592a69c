// The station controller end to end through the real binary: `eolstation
// sim` serves the simulated instruments of a temporary station file on free
// loopback ports, and `eolstation run` / `eolstation serve` test cells on
// them with the real drivers — pass, fail on limits, a held serial answered
// without touching an instrument, several channels at once, SIGTERM in the
// middle of a test, safety causes injected through the simulator's faults.
// After every abort the test reads the load back itself (`eolstation
// instruments load … measure`): the input must be off.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/http_client.hpp"
#include "support/process.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using eol::test::free_port;
using eol::test::Process;
using eol::test::TempDir;
using Result = eol::test::ProcessResult;

Result run(const std::vector<std::string>& args, double timeout_s = 60) {
    return eol::test::run_process(args, timeout_s);
}

struct Ports {
    std::uint16_t keysight = free_port(), siglent = free_port(), itech = free_port(), m97 = free_port(),
                  tc = free_port();
};

struct StationFile {
    double time_scale = 400;
    std::string recipe = std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650.toml";
    double temp_abort_c = 60.0;
    std::string limits_extra;  // more [limits] lines
    std::string extra_toml;    // more tables, appended
    std::string channel1_extra;  // more keys of position 1's [[channels]] table
};

// The example station's instruments on `p` (load1: two-channel Keysight,
// load2: Siglent, load3: ITECH, load4: Maynuo Modbus, tc1: ET-7018Z).
std::string config_text(const Ports& p, const StationFile& s) {
    const std::string c = EOL_CONFIG_DIR;
    auto port = [](std::uint16_t n) { return std::to_string(n); };
    return "[station]\nid = \"CTL-TEST\"\nrecipe = \"" + s.recipe + "\"\nserial_scheme = \"" + c +
           "/serial-scheme.toml\"\nstore = \"test.db\"\nambient = { thermo = \"tc1\", channel = 7 }\n\n"
           "[instruments.load1]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.keysight) +
           "\"\ndialect = \"" + c + "/dialects/keysight-el30000.toml\"\nchannels = 2\n\n"
           "[instruments.load2]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.siglent) +
           "\"\ndialect = \"" + c + "/dialects/siglent-sdl1000x.toml\"\n\n"
           "[instruments.load3]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.itech) +
           "\"\ndialect = \"" + c + "/dialects/itech-it8500.toml\"\n\n"
           "[instruments.load4]\ndriver = \"modbus_load\"\naddress = \"tcp://127.0.0.1:" + port(p.m97) +
           "\"\nmap = \"" + c + "/maps/maynuo-m97.toml\"\n\n"
           "[instruments.tc1]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:" + port(p.tc) +
           "\"\nmap = \"" + c + "/maps/icpdas-et7018z.toml\"\nchannels = 8\n\n"
           "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n" +
           s.channel1_extra + "\n"
           "[[channels]]\nposition = 2\nload = \"load1\"\nload_channel = 2\nthermo = \"tc1\"\nthermo_channel = 1\n\n"
           "[[channels]]\nposition = 3\nload = \"load2\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 2\n\n"
           "[[channels]]\nposition = 4\nload = \"load3\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 3\n\n"
           "[[channels]]\nposition = 5\nload = \"load4\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 4\n\n"
           "[limits]\ntemp_abort_c = " + std::to_string(s.temp_abort_c) + "\nv_min_v = 2.5\ni_max_a = 10.0\n" + s.limits_extra + "\n"
           "[screening]\nfeatures = [\"ocv_v\"]\n\n"
           "[sim]\ntime_scale = " + std::to_string(s.time_scale) +
           "\nseed = 7\nambient_c = 25.0\nlot = \"0042\"\nproduction_date = 2023-03-14\ncells = 20\n\n" + s.extra_toml;
}

// Each stored cell's latest completed run with its features, by serial.
std::map<std::string, eol::station::CellFeatures> latest_by_serial(const fs::path& db) {
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(db, o);
    std::map<std::string, eol::station::CellFeatures> out;
    store.for_each_latest(eol::station::CellFilter{}, [&](const eol::station::CellFeatures& c) { out[c.cell.serial] = c; });
    return out;
}

// A temporary station: its file, and `eolstation sim` serving it (stdin piped
// for faults; killed at the end).
struct SimStation {
    TempDir tmp;
    Ports ports;
    StationFile file;
    fs::path config;
    std::unique_ptr<Process> sim;

    explicit SimStation(StationFile f = {}) : file(std::move(f)) {
        config = tmp.write("station.toml", config_text(ports, file));
        Process::Options o;
        o.pipe_stdin = true;
        o.stop_signal = SIGKILL;
        sim = std::make_unique<Process>(std::vector<std::string>{EOL_CLI, "sim", "--config", config.string()}, o);
        for (int k = 0; k < 5; ++k) REQUIRE_MESSAGE(!sim->read_line(30).empty(), "sim did not start");
    }
    fs::path db() const { return tmp.dir / "test.db"; }
    std::string scale() const { return std::to_string(file.time_scale); }
    void fault(const std::string& line) {
        sim->send_line(line);
        const std::string reply = sim->read_line(10);
        REQUIRE_MESSAGE(reply.rfind("ok ", 0) == 0, line << " -> " << reply);
    }
    /// The load current of a load channel, read by the real binary.
    double load_current_a(const std::string& dialect, std::uint16_t port, int channel) {
        const Result m = run({EOL_CLI, "instruments", "load", "--dialect",
                              std::string(EOL_CONFIG_DIR) + "/dialects/" + dialect, "--address",
                              "tcp://127.0.0.1:" + std::to_string(port), "--channel", std::to_string(channel),
                              "--json", "measure"});
        REQUIRE_MESSAGE(m.exit == 0, m.err);
        return json::parse(m.out)["i_a"].get<double>();
    }
    Result run_cell(const std::string& s, int channel, double timeout_s = 60) {
        return run({EOL_CLI, "run", "--config", config.string(), "--serial", s, "--channel", std::to_string(channel),
                    "--json", "--time-scale", scale()},
                   timeout_s);
    }
};

// The runs of a serial in the store.
std::vector<eol::station::RunInfo> runs_of(const fs::path& db, const std::string& s) {
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(db, o);
    return store.runs_for(s);
}

// `eolstation serve` with stdin piped.
struct Serve {
    Process proc;
    std::vector<std::string> seen;
    explicit Serve(const SimStation& st)
        : proc({EOL_CLI, "serve", "--config", st.config.string(), "--time-scale", st.scale()}, options()) {}
    static Process::Options options() {
        Process::Options o;
        o.pipe_stdin = true;
        o.stop_signal = SIGKILL;
        return o;
    }
    void send(const std::string& l) { proc.send_line(l); }
    /// The next stdout line that starts with `prefix` (others kept in `seen`).
    std::string wait_for(const std::string& prefix, double timeout_s = 50) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string l = proc.read_line(1);
            if (l.empty()) continue;
            seen.push_back(l);
            if (l.rfind(prefix, 0) == 0) return l;
        }
        return {};
    }
};

bool contains(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("controller cli: run passes a good cell, prints its record and stores it") {
    SimStation st;
    const std::string s = eol::test::lot0042_serial(101);
    const auto t0 = std::chrono::steady_clock::now();
    const Result r = st.run_cell(s, 1);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("one cell at 400x: " << wall_s << " s wall");
    REQUIRE_MESSAGE(r.exit == 0, r.out << r.err);
    const json j = json::parse(r.out);
    CHECK(j["serial"] == s);
    CHECK(j["channel"] == 1);
    CHECK(j["verdict"] == "pass");
    CHECK(j["reason"] == "");
    CHECK(j["steps"].size() == 6);
    for (const auto& step : j["steps"]) CHECK(step["outcome"] == "pass");
    CHECK(j["measurements"].size() >= 10);
    for (const auto& m : j["measurements"]) CHECK(m["outcome"] == "pass");
    REQUIRE(j["fits"].size() == 2);
    CHECK(j["fits"][0]["kind"] == "ecm2");
    CHECK(j["fits"][1]["kind"] == "thermal");
    CHECK(j["fits"][0]["parameters"]["r0_ohm"].get<double>() > 0.01);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::pass);
    CHECK(runs[0].channel == 1);
    CHECK(runs[0].station_id == "CTL-TEST");

    // The text form of the same command; an input as typed (lower case, dashes).
    std::string typed = eol::test::lot0042_serial(102);
    for (auto& ch : typed) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    typed.insert(8, "-");
    const Result t = run({EOL_CLI, "run", "--config", st.config.string(), "--serial", typed, "--channel", "2",
                          "--time-scale", st.scale()});
    CHECK_MESSAGE(t.exit == 0, t.out << t.err);
    CHECK(contains(t.out, "serial " + eol::test::lot0042_serial(102) + "  channel 2  verdict pass"));
    CHECK(contains(t.out, "ocv_v"));

    // The controller's event log on standard error (spdlog, key=value).
    CHECK(contains(r.err, "info controller cell start channel=1 serial=" + s + " lot=0042"));
    CHECK(contains(r.err, "info controller instrument load1 connected"));
    CHECK(contains(r.err, "info controller step channel=1 serial=" + s + " step=heat index=6/6"));
    CHECK(contains(r.err, "info controller cell done channel=1 serial=" + s + " verdict=pass wall_s="));
    CHECK_FALSE(contains(r.err, "debug "));
    // At debug: each step's station time against its nominal one, and the record's store time.
    const std::string s3 = eol::test::lot0042_serial(103);
    const Result d = run({"/usr/bin/env", "EOL_LOG_LEVEL=debug", EOL_CLI, "run", "--config", st.config.string(),
                          "--serial", s3, "--channel", "1", "--time-scale", st.scale()});
    CHECK_MESSAGE(d.exit == 0, d.err);
    CHECK(contains(d.err, "debug controller step done channel=1 serial=" + s3 + " step=settle outcome=pass station_s="));
    CHECK(contains(d.err, "nominal_s=5.0000 over_s=+"));
    CHECK(contains(d.err, "debug controller record channel=1 serial=" + s3 + " stored=true batch=1 screen_ms="));
    // A level that is none is said, and info is used.
    const Result u = run({"/usr/bin/env", "EOL_LOG_LEVEL=loud", EOL_CLI, "run", "--config", st.config.string(),
                          "--serial", eol::test::lot0042_serial(104), "--channel", "2", "--time-scale", st.scale()});
    CHECK(contains(u.err, "EOL_LOG_LEVEL=loud: not a level"));
    CHECK(contains(u.err, "info controller cell done channel=2"));
}

TEST_CASE("controller cli: the two-minute example recipe runs every step kind at the example's 20x") {
    StationFile f;
    f.time_scale = 20;  // config/station.example.toml's [sim] time_scale
    f.recipe = std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650-quick.toml";
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(111);
    const auto t0 = std::chrono::steady_clock::now();
    const Result r = st.run_cell(s, 1);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("the quick recipe, one cell at 20x: " << wall_s << " s wall (the process included)");
    REQUIRE_MESSAGE(r.exit == 0, r.out << r.err);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "pass");
    std::set<std::string> kinds;
    double station_s = 0;
    for (const auto& step : j["steps"]) {
        CHECK(step["outcome"] == "pass");
        kinds.insert(step["kind"].get<std::string>());
        station_s += step["duration_s"].get<double>();
    }
    CHECK(kinds == std::set<std::string>{"rest", "ocv", "dcir", "pulse", "heat"});
    MESSAGE("instrument time " << station_s << " s");
    CHECK(station_s > 100);
    CHECK(station_s < 160);  // "about two minutes"
}

TEST_CASE("hostile: controller a step past its declared timeout ends with outcome timeout and the load off") {
    // The heat step's timeout is its own duration: the commands and the fit
    // after the last sample push it past, so the step must time out.
    TempDir rtmp;
    std::ifstream in(std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650-quick.toml");
    std::stringstream text;
    text << in.rdbuf();
    std::string recipe = text.str();
    const auto at = recipe.find("cooling_s = 30");
    REQUIRE(at != std::string::npos);
    recipe.insert(at, "timeout_s = 60\n");
    StationFile f;
    f.time_scale = 20;
    f.recipe = rtmp.write("slow.toml", recipe).string();
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(112);
    const Result r = st.run_cell(s, 1);
    CHECK(r.exit != 0);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "error");
    CHECK(contains(j["reason"].get<std::string>(), "step 'heat': ran past its timeout_s = 60 s"));
    REQUIRE(j["steps"].size() == 6);
    CHECK(j["steps"][5]["outcome"] == "timeout");
    CHECK(j["steps"][4]["outcome"] == "pass");
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) < 0.05);
    // A timeout shorter than the step itself is refused where it is written.
    recipe.replace(recipe.find("timeout_s = 60"), 14, "timeout_s = 59");
    const auto bad = rtmp.write("short.toml", recipe);
    const Result c = run({EOL_CLI, "config", "check", "--recipe", bad.string()});
    CHECK(c.exit != 0);
    CHECK(contains(c.out + c.err, "timeout_s"));
    CHECK(contains(c.out + c.err, "shorter than the step itself (60 s)"));
}

TEST_CASE("controller cli: run fails a cell on its limits and names them") {
    TempDir rtmp;
    std::ifstream in(std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650.toml");
    std::stringstream text;
    text << in.rdbuf();
    std::string recipe = text.str();
    const auto at = recipe.find("high = 4.20");
    REQUIRE(at != std::string::npos);
    recipe.replace(at, 11, "high = 3.50");  // a charged cell reads about 4.0 V: out of limits
    StationFile f;
    f.recipe = rtmp.write("tight.toml", recipe).string();
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(201);
    const Result r = st.run_cell(s, 4);
    CHECK_MESSAGE(r.exit == 1, r.err);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "fail");
    CHECK(contains(j["reason"].get<std::string>(), "ocv_v"));
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::fail);
    // Usage: an unknown position and a missing serial are exit 2.
    CHECK(run({EOL_CLI, "run", "--config", st.config.string(), "--serial", s, "--channel", "9"}).exit == 2);
    CHECK(run({EOL_CLI, "run", "--config", st.config.string()}).exit == 2);
    // An invalid serial is a domain "no" naming the character's position.
    const Result bad = run({EOL_CLI, "run", "--config", st.config.string(), "--serial", "01A33E00420#001C"});
    CHECK(bad.exit == 1);
    CHECK(contains(bad.err, "position 12"));
}

TEST_CASE("hostile: controller a held serial is answered hold without touching any instrument") {
    // No simulator at all: the configured instrument ports are dead. A held
    // serial must be answered from the store before anything is connected;
    // an unheld one shows what touching the instruments would have given.
    TempDir tmp;
    const Ports dead;
    const fs::path config = tmp.write("station.toml", config_text(dead, StationFile{}));
    const std::string held = eol::test::lot0042_serial(301), clear = eol::test::lot0042_serial(302);
    {
        eol::station::OpenOptions o;
        o.create = true;
        auto store = eol::station::Store::open(tmp.dir / "test.db", o);
        eol::station::Quarantine q(store);
        q.hold(eol::station::Scope::serial(held), "suspect weld", {"qa-anna", "operator"});
    }
    const Result r = run({EOL_CLI, "run", "--config", config.string(), "--serial", held, "--json"});
    CHECK(r.exit == 1);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "hold");
    CHECK(contains(j["reason"].get<std::string>(), "suspect weld"));
    CHECK(j["steps"].empty());
    CHECK(j["stored"] == false);
    CHECK(runs_of(tmp.dir / "test.db", held).empty());  // nothing tested, no run

    const Result c = run({EOL_CLI, "run", "--config", config.string(), "--serial", clear, "--json"});
    CHECK(c.exit == 1);
    const json cj = json::parse(c.out);
    CHECK(cj["verdict"] == "error");
    CHECK(contains(cj["reason"].get<std::string>(), "load1"));
}

TEST_CASE("controller cli: serve tests four channels at once, each record attributed to its serial") {
    StationFile f;
    f.time_scale = 200;
    SimStation st(f);
    Serve srv(st);
    std::map<int, std::string> cells{{1, eol::test::lot0042_serial(401)}, {2, eol::test::lot0042_serial(402)}, {3, eol::test::lot0042_serial(403)}, {4, eol::test::lot0042_serial(404)}};
    for (const auto& [pos, s] : cells) srv.send(std::to_string(pos) + " " + s);
    // Bad lines in between: each an error naming its line, the server goes on.
    srv.send("banana");
    srv.send("9 " + eol::test::lot0042_serial(405));
    srv.send("1 " + eol::test::lot0042_serial(406));  // position 1 is busy
    srv.send("2");
    srv.send("5 01A33E00420#001C");
    for (int k = 0; k < 4; ++k) {
        const std::string l = srv.wait_for("started ");
        REQUIRE_MESSAGE(!l.empty(), "seen: " << json(srv.seen).dump());
    }
    std::map<int, std::string> results;
    for (int k = 0; k < 4; ++k) {
        const std::string l = srv.wait_for("result ", 55);
        REQUIRE_MESSAGE(!l.empty(), "seen: " << json(srv.seen).dump());
        std::istringstream in(l);
        std::string w1, w2, w3, w4, s, w5, verdict;
        int pos = 0;
        in >> w1 >> w2 >> pos >> w3 >> s >> w5 >> verdict;
        CAPTURE(l);
        CHECK(s == cells[pos]);
        CHECK(verdict == "pass");
        results[pos] = s;
    }
    CHECK(results.size() == 4);
    std::string errors;
    for (const auto& l : srv.seen)
        if (l.rfind("error: ", 0) == 0) errors += l + "\n";
    CAPTURE(errors);
    CHECK(contains(errors, "error: line 5: 'banana' is neither a channel number nor a command (CHANNEL SERIAL, abort CHANNEL"));
    CHECK(contains(errors, "error: line 6: no fixture position 9"));
    CHECK(contains(errors, "error: line 7: position 1 is testing " + cells[1]));
    CHECK(contains(errors, "error: line 8: channel 2: no serial"));
    CHECK(contains(errors, "error: line 9: serial '01A33E00420#001C'"));
    srv.send("status");
    CHECK(srv.wait_for("status channel 1 complete serial " + cells[1] + " verdict pass", 10) != "");
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    for (const auto& [pos, s] : cells) {
        const auto runs = runs_of(st.db(), s);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].channel == pos);
        CHECK(runs[0].verdict == eol::station::Verdict::pass);
    }
}

TEST_CASE("hostile: controller serve SIGTERM in the middle of a test: load off, aborted record stored") {
    StationFile f;
    f.time_scale = 100;  // the heat step draws 3 A for 6 s of wall time
    SimStation st(f);
    Serve srv(st);
    const std::string s = eol::test::lot0042_serial(501);
    srv.send("2 " + s);
    REQUIRE(srv.wait_for("started channel 2") != "");
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // inside the heat step
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 2)) > 1.0);  // drawing
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    MESSAGE("serve stopped " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                             << " s after SIGTERM");
    const std::string l = srv.wait_for("result ", 5);
    CHECK(contains(l, "result channel 2 serial " + s + " verdict abort reason step 'heat': station shutdown (SIGTERM)"));
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 2)) < 0.05);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::abort);
    CHECK(contains(runs[0].abort_reason, "SIGTERM"));
}

TEST_CASE("hostile: controller serve thermocouple burn-out mid-test: error, load off, faulted until reset") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    Serve srv(st);
    const std::string s = eol::test::lot0042_serial(601);
    srv.send("1 " + s);
    REQUIRE(srv.wait_for("started channel 1") != "");
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    st.fault("fault tc1 burnout 0");
    const std::string l = srv.wait_for("result ", 30);
    CHECK(contains(l, "result channel 1 serial " + s + " verdict error"));
    CHECK(contains(l, "thermocouple open"));
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) < 0.05);
    // Faulted: refused until a fault reset; then it tests again.
    srv.send("1 " + eol::test::lot0042_serial(602));
    CHECK(contains(srv.wait_for("error: ", 10), "position 1 is faulted"));
    st.fault("fault tc1 clear");
    srv.send("reset 1");
    CHECK(srv.wait_for("reset channel 1", 10) == "reset channel 1 ok");
    srv.send("1 " + eol::test::lot0042_serial(602));
    CHECK(srv.wait_for("started channel 1", 10) != "");
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::error);
}

TEST_CASE("hostile: controller run with a load gone silent mid-test: error, load confirmed off once it answers") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(701);
    Result r;
    std::thread t([&] { r = st.run_cell(s, 3, 50); });
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // inside the heat step: 3 A flowing
    st.fault("fault load2 silence on");
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // the run times out, cannot switch off
    st.fault("fault load2 silence off");                          // its make-safe retries get through
    t.join();
    CHECK(r.exit == 1);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "error");
    CHECK(j["load_off_confirmed"] == true);
    CHECK(std::abs(st.load_current_a("siglent-sdl1000x.toml", st.ports.siglent, 1)) < 0.05);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::error);
}

TEST_CASE("hostile: controller over-temperature abort holds the cell as hazardous, a retest is answered hold") {
    StationFile f;
    f.time_scale = 100;
    f.temp_abort_c = 25.3;  // ambient 25 °C: the cell warms past it under the DCIR / heating current
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(801);
    const Result r = st.run_cell(s, 4);
    CHECK(r.exit == 1);
    const json j = json::parse(r.out);
    CHECK(j["verdict"] == "abort");
    CHECK(contains(j["reason"].get<std::string>(), "cell temperature"));
    CHECK(j["held_hazardous"] == true);
    CHECK(j["load_off_confirmed"] == true);
    CHECK(std::abs(st.load_current_a("itech-it8500.toml", st.ports.itech, 1)) < 0.05);
    {
        eol::station::OpenOptions o;
        o.read_only = true;
        auto store = eol::station::Store::open(st.db(), o);
        const auto status = store.status(s);
        CHECK(status.state == eol::station::CellState::held);
        REQUIRE(!status.because.empty());
        CHECK(contains(status.because[0].reason, "hazardous"));
    }
    const Result again = st.run_cell(s, 4);
    CHECK(again.exit == 1);
    CHECK(json::parse(again.out)["verdict"] == "hold");
}

TEST_CASE("hostile: controller serve operator abort mid-test: abort, load off, the channel tests again") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    Serve srv(st);
    const std::string s = eol::test::lot0042_serial(901);
    srv.send("abort 4");  // line 1: nothing under test
    CHECK(srv.wait_for("error: ", 10) == "error: line 1: channel 4 is not testing");
    srv.send("4 " + s);
    REQUIRE(srv.wait_for("started channel 4") != "");
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // 3 A flowing in the heat step
    CHECK(std::abs(st.load_current_a("itech-it8500.toml", st.ports.itech, 1)) > 1.0);
    const auto t0 = std::chrono::steady_clock::now();
    srv.send("abort 4");  // line 3
    CHECK(srv.wait_for("aborting ", 10) == "aborting channel 4");
    const std::string l = srv.wait_for("result ", 10);
    const double latency_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("operator abort to result line (load read back off): " << latency_s << " s");
    CHECK(contains(l, "result channel 4 serial " + s + " verdict abort reason step 'heat': operator abort (stdin line 3)"));
    CHECK(latency_s < 2.0);
    CHECK(std::abs(st.load_current_a("itech-it8500.toml", st.ports.itech, 1)) < 0.05);
    srv.send("status");
    CHECK(srv.wait_for("status channel 4", 10) == "status channel 4 aborted serial " + s + " verdict abort");
    srv.send("4 " + eol::test::lot0042_serial(902));  // aborted (not faulted): no reset needed
    CHECK(srv.wait_for("started channel 4", 10) != "");
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::abort);
    // The second cell was interrupted by the shutdown: stored as aborted too.
    const auto second = runs_of(st.db(), eol::test::lot0042_serial(902));
    REQUIRE(second.size() == 1);
    CHECK(second[0].verdict == eol::station::Verdict::abort);
    CHECK(contains(second[0].abort_reason, "SIGTERM"));
}

TEST_CASE("hostile: controller run SIGTERM in the middle of a test: exit 1, aborted record, load off") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    const std::string s = eol::test::lot0042_serial(1001);
    Process r({EOL_CLI, "run", "--config", st.config.string(), "--serial", s, "--channel", "1", "--json",
               "--time-scale", st.scale()});
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // inside the heat step
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) > 1.0);
    CHECK(r.terminate(SIGTERM, 20) == 1);
    const json j = json::parse(r.read_line(5));
    CHECK(j["verdict"] == "abort");
    CHECK(contains(j["reason"].get<std::string>(), "station shutdown (SIGTERM)"));
    CHECK(j["load_off_confirmed"] == true);
    CHECK(j["stored"] == true);
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) < 0.05);
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::abort);
}

TEST_CASE("hostile: controller serve answers a held serial hold while its load is silent (never touched)") {
    SimStation st;
    Serve srv(st);
    const std::string held = eol::test::lot0042_serial(1101);
    srv.send("status");
    REQUIRE(srv.wait_for("status channel 5", 20) != "");  // connected and serving
    {
        // Held by quality while the server runs: the lookup sees new events.
        eol::station::OpenOptions o;
        auto store = eol::station::Store::open(st.db(), o);
        eol::station::Quarantine q(store);
        q.hold(eol::station::Scope::lot("0042"), "lot under investigation", {"qa-ben", "operator"});
    }
    st.fault("fault load1 silence on");  // any command to load1 would now time out
    const auto t0 = std::chrono::steady_clock::now();
    srv.send("1 " + held);
    const std::string l = srv.wait_for("result ", 10);
    const double answer_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(l);
    CHECK(contains(l, "result channel 1 serial " + held + " verdict hold reason held: hold lot 0042 by qa-ben (lot under investigation)"));
    CHECK(answer_s < 1.0);  // a load1 command would have taken its 1 s timeout
    srv.send("status");
    CHECK(srv.wait_for("status channel 1", 10) == "status channel 1 complete serial " + held + " verdict hold");
    st.fault("fault load1 clear");
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    CHECK(runs_of(st.db(), held).empty());
}

TEST_CASE("hostile: controller serve sixteen channels at once, every record whole and attributed to its serial") {
    // 16 positions: eight two-channel Keysight loads, two thermocouple
    // modules (each shared by 8 positions), at 100x. The ambient sensor is on
    // tc1 (its `ambient_channel`, also the station's ambient): positions 9–16
    // read it across modules, through tc1, and must measure P_x like 1–8 (the
    // recipe judges p_x_w; they once all failed "not measured: p_x_w").
    TempDir tmp;
    const std::string c = EOL_CONFIG_DIR;
    std::string text = "[station]\nid = \"CTL-16\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" +
                       c + "/serial-scheme.toml\"\nstore = \"test.db\"\nambient = { thermo = \"tc1\", channel = 8 }\n\n";
    for (int k = 1; k <= 8; ++k)
        text += "[instruments.load" + std::to_string(k) + "]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" +
                std::to_string(free_port()) + "\"\ndialect = \"" + c + "/dialects/keysight-el30000.toml\"\nchannels = 2\n\n";
    for (int k = 1; k <= 2; ++k)
        text += "[instruments.tc" + std::to_string(k) + "]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:" +
                std::to_string(free_port()) + "\"\nmap = \"" + c + "/maps/icpdas-et7018z.toml\"\n" +
                (k == 1 ? "channels = 10\nambient_channel = 8\n\n" : "channels = 8\n\n");
    for (int p = 1; p <= 16; ++p)
        text += "[[channels]]\nposition = " + std::to_string(p) + "\nload = \"load" + std::to_string((p + 1) / 2) +
                "\"\nload_channel = " + std::to_string(2 - p % 2) + "\nthermo = \"tc" + std::to_string(p <= 8 ? 1 : 2) +
                "\"\nthermo_channel = " + std::to_string((p - 1) % 8) + "\n\n";
    text += "[limits]\ntemp_abort_c = 60.0\nv_min_v = 2.5\ni_max_a = 10.0\n\n[screening]\nfeatures = [\"ocv_v\"]\n\n"
            "[sim]\ntime_scale = 100.0\nseed = 11\nambient_c = 25.0\nlot = \"0042\"\nproduction_date = 2023-03-14\ncells = 40\n";
    const fs::path config = tmp.write("station.toml", text);
    Process::Options so;
    so.stop_signal = SIGKILL;
    Process sim({EOL_CLI, "sim", "--config", config.string()}, so);
    for (int k = 0; k < 10; ++k) REQUIRE_MESSAGE(!sim.read_line(30).empty(), "sim did not start");
    Process srv({EOL_CLI, "serve", "--config", config.string(), "--time-scale", "100"}, Serve::options());
    std::map<int, std::string> cells;
    for (int p = 1; p <= 16; ++p) {
        cells[p] = eol::test::lot0042_serial(2000 + static_cast<std::uint64_t>(p));
        srv.send_line(std::to_string(p) + " " + cells[p]);
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::map<int, std::string> verdicts;
    std::vector<std::string> seen;
    while (verdicts.size() < 16 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(55)) {
        const std::string l = srv.read_line(1);
        if (l.empty()) continue;
        seen.push_back(l);
        if (l.rfind("result ", 0) != 0) continue;
        std::istringstream in(l);
        std::string w1, w2, w3, s, w5, verdict;
        int pos = 0;
        in >> w1 >> w2 >> pos >> w3 >> s >> w5 >> verdict;
        CAPTURE(l);
        CHECK(s == cells[pos]);
        verdicts[pos] = verdict;
    }
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("16 cells at 100x: " << wall_s << " s wall");
    CAPTURE(json(seen).dump());
    REQUIRE(verdicts.size() == 16);
    for (const auto& [pos, v] : verdicts) {
        CAPTURE(pos);
        CHECK(v == "pass");
    }
    CHECK(srv.terminate(SIGTERM, 20) == 0);
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(tmp.dir / "test.db", o);
    for (const auto& [pos, s] : cells) {
        const auto runs = store.runs_for(s);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].channel == pos);
        const auto rec = store.read_record(runs[0].id);
        REQUIRE(rec);
        CHECK(rec->serial == s);
        CHECK(rec->steps.size() == 6);
        CHECK(rec->fits.size() == 2);
        CHECK(rec->measurements.size() == 13);
        bool p_x = false;
        for (const auto& m : rec->measurements)
            if (m.name == "p_x_w") {
                p_x = true;
                CHECK(std::isfinite(m.value));  // measured on both modules
                CHECK(m.outcome == eol::station::Outcome::pass);
            }
        CHECK(p_x);
    }
}

// ---------------------------------------------------------------- the safety monitor
// Each cause injected through the simulator (cell parameters, load faults);
// each asserts on the simulator that the load input is off, and how long the
// monitor took from the tripping reading to the input read back off
// (control period 0.1 s).

namespace {
json run_json(const Result& r) {
    INFO(r.err);
    REQUIRE(!r.out.empty());
    return json::parse(r.out);
}
}  // namespace

TEST_CASE("hostile: controller monitor trips on a cell warming too fast: abort, load off within one period, held") {
    StationFile f;
    f.time_scale = 100;
    f.limits_extra = "temp_rate_max_k_per_s = 0.05\n";  // a 1 Ω internal short warms it ~0.09 K/s
    SimStation st(f);
    st.fault("cell 1 r_isc_ohm 1.0");
    const std::string s = eol::test::lot0042_serial(1201);
    const Result r = st.run_cell(s, 1);
    CHECK(r.exit == 1);
    const json j = run_json(r);
    INFO(j.dump());
    CHECK(j["verdict"] == "abort");
    CHECK(j["trip"]["cause"] == "temperature rise");
    CHECK(contains(j["reason"].get<std::string>(), "faster than 0.05 K/s (safety monitor)"));
    REQUIRE(j["trip"]["to_off_s"].is_number());
    MESSAGE("fast rise: tripping reading to load input read back off " << j["trip"]["to_off_s"].get<double>() * 1e3 << " ms");
    CHECK(j["trip"]["to_off_s"].get<double>() < 0.1);
    CHECK(j["held_hazardous"] == true);
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) < 0.05);
}

TEST_CASE("hostile: controller monitor trips on a terminal voltage over its window: abort, load off") {
    StationFile f;
    f.time_scale = 100;
    f.limits_extra = "v_max_v = 4.15\n";
    SimStation st(f);
    st.fault("cell 3 soc0 1.0");  // a full cell: about 4.2 V at rest
    const Result r = st.run_cell(eol::test::lot0042_serial(1301), 3);
    CHECK(r.exit == 1);
    const json j = run_json(r);
    INFO(j.dump());
    CHECK(j["verdict"] == "abort");
    CHECK(j["trip"]["cause"] == "voltage");
    CHECK(contains(j["reason"].get<std::string>(), "above 4.150 V (safety monitor)"));
    CHECK(j["held_hazardous"] == false);
    REQUIRE(j["trip"]["to_off_s"].is_number());
    CHECK(j["trip"]["to_off_s"].get<double>() < 0.1);
    CHECK(std::abs(st.load_current_a("siglent-sdl1000x.toml", st.ports.siglent, 1)) < 0.05);
}

TEST_CASE("hostile: controller aborts a cell whose terminal voltage sags under load below its limit") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    st.fault("cell 4 r0_ohm 0.3");  // 6 A pulse: about 1.8 V of drop
    const Result r = st.run_cell(eol::test::lot0042_serial(1401), 4);
    CHECK(r.exit == 1);
    const json j = run_json(r);
    INFO(j.dump());
    CHECK(j["verdict"] == "abort");
    CHECK(contains(j["reason"].get<std::string>(), "terminal voltage"));
    CHECK(contains(j["reason"].get<std::string>(), "below 2.500 V"));
    CHECK(j["load_off_confirmed"] == true);
    CHECK(std::abs(st.load_current_a("itech-it8500.toml", st.ports.itech, 1)) < 0.05);
}

TEST_CASE("hostile: controller monitor trips when the measured current does not follow: error, faulted, reset") {
    StationFile f;
    f.time_scale = 100;
    SimStation st(f);
    Serve srv(st);
    st.fault("cell 2 current_cap_a 1.0");  // the load channel sinks at most 1 A: the 3 A heat step cannot
    const std::string s = eol::test::lot0042_serial(1501);
    srv.send("2 " + s);
    REQUIRE(srv.wait_for("started channel 2") != "");
    const std::string l = srv.wait_for("result ", 40);
    CHECK(contains(l, "result channel 2 serial " + s + " verdict error"));
    CHECK(contains(l, "does not follow the setpoint 3.000 A (safety monitor)"));
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 2)) < 0.05);
    srv.send("2 " + eol::test::lot0042_serial(1502));
    CHECK(contains(srv.wait_for("error: ", 10), "position 2 is faulted"));
    st.fault("cell 2 current_cap_a inf");
    srv.send("reset 2");
    CHECK(srv.wait_for("reset channel 2", 10) == "reset channel 2 ok");
    srv.send("2 " + eol::test::lot0042_serial(1502));
    CHECK(srv.wait_for("started channel 2", 10) != "");
    const std::string l2 = srv.wait_for("result ", 40);
    CHECK(contains(l2, "serial " + eol::test::lot0042_serial(1502) + " verdict pass"));
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
}

TEST_CASE("hostile: controller a load disconnected in the middle of a pulse is reconnected and used again after a reset") {
    StationFile f;
    f.time_scale = 20;  // the 71 s pulse takes 3.5 s of wall time
    SimStation st(f);
    Serve srv(st);
    const std::string s = eol::test::lot0042_serial(1601);
    srv.send("1 " + s);
    REQUIRE(srv.wait_for("started channel 1") != "");
    // Wait until the pulse step runs, then drop the load's connection.
    bool in_pulse = false;
    for (int k = 0; k < 400 && !in_pulse; ++k) {
        srv.send("status");
        const std::string st1 = srv.wait_for("status channel 1", 5);
        in_pulse = contains(st1, "step pulse");
        if (!in_pulse) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    REQUIRE(in_pulse);
    st.fault("fault load1 drop");
    const std::string l = srv.wait_for("result channel 1", 40);
    CHECK(contains(l, "verdict error"));
    CHECK(std::abs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 1)) < 0.05);
    // The instrument is reconnected (backoff from 0.5 s); the channel stays faulted until reset.
    std::string inst;
    for (int k = 0; k < 100; ++k) {
        srv.send("status");
        inst = srv.wait_for("status instrument load1", 5);
        if (contains(inst, "load1 ready") || contains(inst, "load1 safe")) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(contains(inst, "load1 ready"));
    CHECK(contains(inst, "reconnects 1"));
    srv.send("1 " + eol::test::lot0042_serial(1602));
    CHECK(contains(srv.wait_for("error: ", 10), "position 1 is faulted"));
    srv.send("reset 1");
    CHECK(srv.wait_for("reset channel 1", 10) == "reset channel 1 ok");
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::error);
    CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
}

TEST_CASE("controller cli: a recipe step above a load's rated current (its dialect's [capabilities]) is refused before any I/O") {
    TempDir tmp;
    // The Keysight dialect with a 5 A rating: the recipe's 6 A pulse exceeds it.
    std::ifstream in(std::string(EOL_CONFIG_DIR) + "/dialects/keysight-el30000.toml");
    std::stringstream text;
    text << in.rdbuf();
    std::string d = text.str();
    const auto at = d.find("max_current_a = 60.0");
    REQUIRE(at != std::string::npos);
    d.replace(at, std::string("max_current_a = 60.0").size(), "max_current_a = 5.0");
    const fs::path dialect = tmp.write("small-load.toml", d);
    const std::string c = EOL_CONFIG_DIR;
    const fs::path cfg = tmp.write(
        "station.toml",
        "[station]\nid = \"CAP\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" + c +
            "/serial-scheme.toml\"\nstore = \"test.db\"\n\n[instruments.load1]\ndriver = \"scpi_load\"\naddress = "
            "\"tcp://127.0.0.1:" + std::to_string(free_port()) + "\"\ndialect = \"" + dialect.string() +
            "\"\nchannels = 2\n\n[instruments.tc1]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:" +
            std::to_string(free_port()) + "\"\nmap = \"" + c + "/maps/icpdas-et7018z.toml\"\nchannels = 8\n"
            "ambient_channel = 7\n\n"  // the recipe measures p_x_w: the position needs an ambient
            "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n\n"
            "[limits]\ntemp_abort_c = 60.0\nv_min_v = 2.5\ni_max_a = 10.0\n\n[screening]\nfeatures = [\"ocv_v\"]\n");
    const Result r = run({EOL_CLI, "run", "--config", cfg.string(), "--serial", eol::test::lot0042_serial(1701), "--json"});
    INFO(r.err);
    CHECK(r.exit == 2);
    CHECK(contains(r.err, "position 1: step 'pulse' draws 6 A, above load1's rating of 5 A per channel"));
    CHECK(contains(r.err, "small-load.toml"));
}

TEST_CASE("controller cli: screening at test time holds an outlier of its model's earlier lots, a good cell passes") {
    StationFile f;
    f.time_scale = 400;
    SimStation st(f);
    // History: 300 cells of the same cell model in earlier lots (in-process simulated production).
    const Result prod = run({EOL_CLI, "sim-production", "--db", st.db().string(), "--cells", "300", "--from",
                             "2023-01-02", "--to", "2023-01-27", "--assemble", "none", "--quiet", "--seed", "3"},
                            300);
    INFO(prod.err);
    REQUIRE(prod.exit == 0);

    const Result good = st.run_cell(eol::test::lot0042_serial(1801), 1);
    const json g = json::parse(good.out);
    INFO(g.dump());
    CHECK(g["screening"]["kind"] == "not_outlier");
    CHECK(g["screening"]["history_cells"].get<int>() >= 200);
    CHECK(g["verdict"] == "pass");
    CHECK(good.exit == 0);

    st.fault("cell 2 soc0 0.45");  // within the OCV spec (3.4–4.2 V), far below its model's history
    const Result odd = st.run_cell(eol::test::lot0042_serial(1802), 2);
    const json o = json::parse(odd.out);
    INFO(o.dump());
    CHECK(odd.exit == 1);
    CHECK(o["verdict"] == "hold");
    CHECK(o["screening"]["kind"] == "outlier");
    CHECK(contains(o["reason"].get<std::string>(), "outlier at test"));
    CHECK(contains(o["reason"].get<std::string>(), "ocv_v"));
    REQUIRE(o["screening"]["pat"].size() >= 1);
    CHECK(o["screening"]["pat"][0]["feature"] == "ocv_v");
    // Measured and stored as passing its limits, and held by serial in the same store.
    {
        eol::station::OpenOptions oo;
        oo.read_only = true;
        auto store = eol::station::Store::open(st.db(), oo);
        const auto runs = store.runs_for(eol::test::lot0042_serial(1802));
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].verdict == eol::station::Verdict::pass);
        const auto status = store.status(eol::test::lot0042_serial(1802));
        CHECK(status.state == eol::station::CellState::held);
    }
    // A retest is answered hold without touching the instruments.
    const Result again = st.run_cell(eol::test::lot0042_serial(1802), 2);
    CHECK(json::parse(again.out)["verdict"] == "hold");
}

// Fixture health through the real binaries: position 2's contacts add 7 mΩ
// (`cell 2 contact_ohm 0.007` on the simulator: every voltage reading there
// is I·7 mΩ low). After enough cells at every position the station takes
// position 2 out of service with the reason, stores the flag, refuses it
// (also after a restart), `eolstation fixture` names it; the contacts
// "serviced" and a fault reset put it back, learning its baseline again.
TEST_CASE("hostile: controller fixture health takes a position with worn contacts out of service until serviced") {
    StationFile f;
    f.time_scale = 50;  // the two-minute recipe (a test draws ~0.05 Ah: the simulator's cells stay charged)
    f.recipe = std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650-quick.toml";
    // The simulator keeps one cell per position (a line tests a new cell
    // each time): their own R0 spread (1 mΩ) is part of each position's
    // offset here, so the limit is 4 mΩ and the window 5 cells.
    const std::uint16_t panel = free_port();
    f.extra_toml = "[fixture_health]\nwindow_cells = 5\ncontact_limit_ohm = 0.004\n\n[panel]\nbind = \"127.0.0.1\"\nport = " +
                   std::to_string(panel) + "\n";
    SimStation st(f);
    st.fault("cell 2 contact_ohm 0.007");
    std::string flagged_line;
    {
        Serve srv(st);
        int seq = 1000;
        for (int round = 0; round < 16 && flagged_line.empty(); ++round) {
            // The SCPI positions (the Modbus load's software-timed pulse is for slower clocks).
            for (int pos = 1; pos <= 4; ++pos) srv.send(std::to_string(pos) + " " + eol::test::lot0042_serial(static_cast<std::uint64_t>(++seq)));
            for (int k = 0; k < 4; ++k) {
                const std::string l = srv.wait_for("result ", 60);
                REQUIRE_MESSAGE(!l.empty(), "seen: " << json(srv.seen).dump());
                CHECK_MESSAGE((contains(l, "verdict pass") || contains(l, "verdict fail")), l);  // a completed test
                if (contains(l, "position out of service")) {
                    CHECK(flagged_line.empty());
                    flagged_line = l;
                    MESSAGE("round " << round + 1 << ": " << l);
                }
            }
        }
        REQUIRE_MESSAGE(!flagged_line.empty(), "never flagged; seen: " << json(srv.seen).dump());
        CHECK(contains(flagged_line, "result channel 2 "));
        CHECK(contains(flagged_line, "position 2: contact resistance +"));
        CHECK(contains(flagged_line, "(limit 4.00 mOhm, median of its last 5 cells)"));
        srv.send("2 " + eol::test::lot0042_serial(1900));
        const std::string refused = srv.wait_for("error: ", 10);
        CHECK(contains(refused, "position 2 is faulted (fixture health: position 2: contact resistance"));
        // The operator panel's alarm (its status is refreshed every 0.25 s).
        json js;
        bool alarm = false;
        for (int k = 0; k < 40 && !alarm; ++k) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            const auto status = eol::test::http(panel, "GET", "/api/status");
            REQUIRE(status.status == 200);
            js = json::parse(status.body);
            for (const auto& a : js["alarms"])
                alarm = alarm || (a["kind"] == "fixture" && a["position"] == 2 &&
                                  contains(a["text"].get<std::string>(), "contact resistance"));
        }
        CHECK_MESSAGE(alarm, js["alarms"].dump());
        for (const auto& c : js["channels"]) CHECK(c["out_of_service"] == (c["position"] == 2));
        srv.send("1 " + eol::test::lot0042_serial(1901));  // the other positions go on
        CHECK(contains(srv.wait_for("result ", 30), "result channel 1 serial " + eol::test::lot0042_serial(1901) + " verdict pass"));
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    {
        // The flag is in the store: `eolstation fixture` says so (exit 1),
        // replaying in the order the station stored (and learned) its runs …
        const Result fx = run({EOL_CLI, "fixture", "--db", st.db().string(), "--config", st.config.string(), "--json"});
        CHECK_MESSAGE(fx.exit == 1, fx.out << fx.err);
        const json j = json::parse(fx.out);
        REQUIRE(j["flags"].size() == 1);
        CHECK(j["flags"][0]["position"] == 2);
        CHECK(j["flags"][0]["quantity"] == "contact_resistance");
        CHECK(j["flags"][0]["value"].get<double>() > 0.004);
        for (const auto& p : j["stations"][0]["positions"]) CHECK(p["in_service"] == (p["position"] != 2));
        eol::station::OpenOptions o;
        o.read_only = true;
        auto store = eol::station::Store::open(st.db(), o);
        CHECK(store.station_events_of("CTL-TEST", "fixture_flag").size() == 1);
    }
    {
        // … and a restarted station keeps the position out of service until it is serviced.
        Serve srv(st);
        srv.send("status");
        CHECK(contains(srv.wait_for("status channel 2 ", 10), "status channel 2 faulted"));
        srv.send("2 " + eol::test::lot0042_serial(1902));
        CHECK(contains(srv.wait_for("error: ", 10), "position 2 is faulted (fixture health:"));
        st.fault("cell 2 contact_ohm 0");  // new pins
        srv.send("reset 2");
        CHECK(srv.wait_for("reset channel 2", 10) == "reset channel 2 ok");
        srv.send("2 " + eol::test::lot0042_serial(1903));
        const std::string l = srv.wait_for("result ", 30);
        CHECK(contains(l, "result channel 2 serial " + eol::test::lot0042_serial(1903) + " verdict pass"));
        CHECK_FALSE(contains(l, "out of service"));
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    // Serviced: in service, learning again from its one cell since. The
    // restarted station's scaled clock stamps that cell earlier than the
    // first session's last ones; the replay learns in stored order (run
    // ids), not by the clocks, so this holds on any interleaving.
    const Result fx = run({EOL_CLI, "fixture", "--db", st.db().string(), "--config", st.config.string(), "--json"});
    CHECK_MESSAGE(fx.exit == 0, fx.out << fx.err);
    const json jf = json::parse(fx.out);
    CHECK(jf["flags"].size() == 1);  // the first session's, not raised again by a replay out of order
    for (const auto& p : jf["stations"][0]["positions"]) {
        CHECK_MESSAGE(p["in_service"] == true, p.dump());
        if (p["position"] == 2) CHECK_MESSAGE(p["cells"] == 1, p.dump());
    }
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(st.db(), o);
    CHECK(store.station_events_of("CTL-TEST", "fixture_service").size() == 1);
    CHECK(store.station_events_of("CTL-TEST", "fixture_flag").size() == 1);
}

// Thermocouple calibration: position 1's thermocouple reads 0.5 K high. Its
// first `calibration_cells` (3) cells are fitted with the plain model (no
// sensor offset known: the offset reads as ~+45 mW of P_x); from the 4th on
// the heat step fits with the position's learned calibration — the median of
// those cells' steady offsets — and P_x is read against it.
TEST_CASE("controller fixture health: the heat step fits with its position's learned thermocouple calibration") {
    StationFile f;  // the example recipe (600 s at 3 A, 600 s cooling) at 400x
    f.extra_toml = "[fixture_health]\ncalibration_cells = 3\n";
    SimStation st(f);
    st.fault("cell 1 tc_offset_c 0.5");
    std::vector<std::string> serials;
    {
        Serve srv(st);
        for (int k = 0; k < 4; ++k) {
            serials.push_back(eol::test::lot0042_serial(static_cast<std::uint64_t>(2100 + k)));
            srv.send("1 " + serials.back());
            const std::string l = srv.wait_for("result ", 60);
            REQUIRE_MESSAGE(!l.empty(), "seen: " << json(srv.seen).dump());
            MESSAGE(l);
        }
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    const auto by_serial = latest_by_serial(st.db());
    std::vector<double> steady, px_plain;
    for (int k = 0; k < 3; ++k) {
        const auto& c = by_serial.at(serials[static_cast<std::size_t>(k)]);
        CAPTURE(k);
        CHECK_FALSE(c.get("thermal.sensor_offset_c").has_value());  // not calibrated yet
        REQUIRE(c.get("thermal.steady_offset_k").has_value());
        steady.push_back(*c.get("thermal.steady_offset_k"));
        REQUIRE(c.get("p_x_w").has_value());
        px_plain.push_back(*c.get("p_x_w"));
    }
    std::sort(steady.begin(), steady.end());
    const auto& fourth = by_serial.at(serials[3]);
    REQUIRE(fourth.get("thermal.sensor_offset_c").has_value());
    CHECK(*fourth.get("thermal.sensor_offset_c") == doctest::Approx(steady[1]).epsilon(1e-9));
    REQUIRE(fourth.get("p_x_w").has_value());
    const double px4 = *fourth.get("p_x_w");
    MESSAGE("steady offsets of the first three: " << steady[0] << " " << steady[1] << " " << steady[2]
            << " K; their P_x " << px_plain[0] * 1e3 << " " << px_plain[1] * 1e3 << " " << px_plain[2] * 1e3
            << " mW; the 4th, fitted against the calibration: " << px4 * 1e3 << " mW");
    CHECK(steady[1] > 0.3);                  // the +0.5 K offset, seen as steady offset
    for (double p : px_plain) CHECK(p > 0.02);  // and as P_x without a calibration
    // The 4th: the plain fit's c read against the calibration, (c − o)/R_th.
    // (Not ~0 here: the simulator keeps one cell per position, tested back
    // to back at 400x without cooling down, so c creeps up from test to test.)
    REQUIRE(fourth.get("thermal.steady_offset_k").has_value());
    REQUIRE(fourth.get("r_th_k_per_w").has_value());
    const double c4 = *fourth.get("thermal.steady_offset_k"), r_th4 = *fourth.get("r_th_k_per_w");
    CHECK(px4 == doctest::Approx((c4 - steady[1]) / r_th4).epsilon(1e-6));
    CHECK(px4 < c4 / r_th4 - 0.02);           // the offset's ~45 mW taken out
    const Result fx = run({EOL_CLI, "fixture", "--db", st.db().string(), "--config", st.config.string(), "--json"});
    CHECK_MESSAGE(fx.exit == 0, fx.out << fx.err);
    bool seen = false;
    const json fj = json::parse(fx.out);
    for (const auto& p : fj["stations"][0]["positions"])
        if (p["position"] == 1) {
            seen = true;
            CHECK(p["tc_calibration_k"].get<double>() > 0.3);
        }
    CHECK(seen);
}

// A commissioned thermocouple offset ([[channels]] thermo_offset_k): position
// 1's thermocouple reads 0.5 K high and was measured so at commissioning.
// Its FIRST cell's heat step fits with that offset (P_x read against it),
// while position 2 (no commissioned offset, nothing learned yet) fits plain;
// `config check` shows it.
TEST_CASE("controller fixture health: a commissioned thermocouple offset is used from a position's first cell") {
    StationFile f;  // the example recipe (600 s at 3 A, 600 s cooling) at 400x
    f.channel1_extra = "thermo_offset_k = 0.5\n";
    f.extra_toml = "[fixture_health]\n";
    SimStation st(f);
    st.fault("cell 1 tc_offset_c 0.5");
    const Result chk = run({EOL_CLI, "config", "check", st.config.string()});
    CHECK_MESSAGE(chk.exit == 0, chk.out << chk.err);
    CHECK(contains(chk.out, "offset +0.500 K commissioned"));
    const Result chj = run({EOL_CLI, "config", "check", st.config.string(), "--json"});
    REQUIRE(chj.exit == 0);
    const json cj = json::parse(chj.out);
    for (const auto& c : cj["channels"])
        CHECK(c["thermo_offset_k"] == (c["position"] == 1 ? json(0.5) : json(nullptr)));
    const std::string s1 = eol::test::lot0042_serial(2201), s2 = eol::test::lot0042_serial(2202);
    {
        Serve srv(st);
        srv.send("1 " + s1);
        srv.send("2 " + s2);
        for (int k = 0; k < 2; ++k) REQUIRE_MESSAGE(!srv.wait_for("result ", 60).empty(), "seen: " << json(srv.seen).dump());
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    const auto by_serial = latest_by_serial(st.db());
    const auto& one = by_serial.at(s1);
    REQUIRE(one.get("thermal.sensor_offset_c").has_value());
    CHECK(*one.get("thermal.sensor_offset_c") == doctest::Approx(0.5));
    REQUIRE(one.get("thermal.steady_offset_k").has_value());
    REQUIRE(one.get("r_th_k_per_w").has_value());
    REQUIRE(one.get("p_x_w").has_value());
    const double c1 = *one.get("thermal.steady_offset_k"), r_th1 = *one.get("r_th_k_per_w");
    MESSAGE("position 1, first cell: c " << c1 << " K, R_th " << r_th1 << " K/W, P_x " << *one.get("p_x_w") * 1e3
            << " mW against the commissioned 0.5 K (plain it would read " << c1 / r_th1 * 1e3 << " mW)");
    CHECK(c1 > 0.3);  // the thermocouple's +0.5 K, seen as the steady offset
    CHECK(*one.get("p_x_w") == doctest::Approx((c1 - 0.5) / r_th1).epsilon(1e-6));
    // The offset's 0.5 K/R_th (~47 mW) is not read as heat. (Not asserted near
    // 0: on a loaded host at 400x the fit's c of one cell wanders by ±0.2 K —
    // 1.4 mW alone, 26 mW in a parallel test run.)
    CHECK(*one.get("p_x_w") < c1 / r_th1 - 0.04);
    const auto& two = by_serial.at(s2);
    CHECK_FALSE(two.get("thermal.sensor_offset_c").has_value());  // plain: nothing learned, nothing commissioned
}

// The golden cell: due at the station's start (other serials refused), the
// first run starts its history; after a restart the golden cell tested with
// a changed R0 (+7 mΩ) fails its check: the station is blocked until the
// fault reset of that position, then due again; a good golden run lifts it.
TEST_CASE("hostile: controller golden cell check: due at start, a failed check blocks the station until reset") {
    StationFile f;
    f.time_scale = 50;  // the two-minute recipe
    f.recipe = std::string(EOL_CONFIG_DIR) + "/recipes/eol-18650-quick.toml";
    const std::string golden = eol::test::lot0042_serial(777);
    const std::uint16_t panel = free_port();
    f.extra_toml = "[fixture_health]\ngolden_serials = [\"" + golden + "\"]\ngolden_resistance_tol_ohm = 0.004\n\n"
                   "[panel]\nbind = \"127.0.0.1\"\nport = " + std::to_string(panel) + "\n";
    SimStation st(f);
    // The panel's alarm kinds once they are `want` (its status is refreshed every 0.25 s), else the last seen.
    auto alarm_kinds = [&](const std::string& want) {
        std::string kinds;
        for (int k = 0; k < 40; ++k) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            const auto r = eol::test::http(panel, "GET", "/api/status");
            if (r.status != 200) continue;
            const json j = json::parse(r.body);
            kinds.clear();
            for (const auto& a : j["alarms"]) kinds += a["kind"].get<std::string>() + ";";
            if (kinds == want) break;
        }
        return kinds;
    };
    const std::string a = eol::test::lot0042_serial(701), b = eol::test::lot0042_serial(702);
    {
        Serve srv(st);
        srv.send("1 " + a);
        CHECK(contains(srv.wait_for("error: ", 10), "golden check due: test a golden cell (" + golden + ") first"));
        CHECK(alarm_kinds("golden_due;") == "golden_due;");
        srv.send("1 " + golden);
        const std::string g = srv.wait_for("result ", 30);
        CHECK(contains(g, "result channel 1 serial " + golden + " verdict pass"));
        CHECK(contains(g, "golden check passed: first golden run at this station"));
        srv.send("2 " + a);
        CHECK(contains(srv.wait_for("result ", 30), "result channel 2 serial " + a + " verdict pass"));
        CHECK(alarm_kinds("").empty());
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    // The golden cell's R0 as measured, to put the cell back later.
    double golden_r0_ohm = 0;
    {
        eol::station::OpenOptions o;
        o.read_only = true;
        auto store = eol::station::Store::open(st.db(), o);
        for (const auto& m : store.measurements(store.runs_for(golden).at(0).id))
            if (m.name == "r0_ohm") golden_r0_ohm = m.value;
    }
    REQUIRE(golden_r0_ohm > 0.02);
    st.fault("cell 1 r0_ohm " + std::to_string(golden_r0_ohm + 0.007));  // the golden cell now reads 7 mΩ more
    {
        Serve srv(st);
        srv.send("3 " + b);
        CHECK(contains(srv.wait_for("error: ", 10), "golden check due"));  // a new start: due again
        srv.send("1 " + golden);
        const std::string g = srv.wait_for("result ", 30);
        CHECK(contains(g, "golden check FAILED: r0_ohm "));
        srv.send("3 " + b);
        CHECK(contains(srv.wait_for("error: ", 10), "station blocked: golden check failed at position 1"));
        srv.send("status");
        CHECK(contains(srv.wait_for("status channel 1 ", 10), "status channel 1 faulted"));
        const std::string kinds = alarm_kinds("channel;golden;");
        CHECK(kinds == "channel;golden;");  // position 1 faulted, the station blocked
        srv.send("reset 1");
        CHECK(srv.wait_for("reset channel 1", 10) == "reset channel 1 ok");
        srv.send("3 " + b);
        CHECK(contains(srv.wait_for("error: ", 10), "golden check due"));  // reset lifts the block, not the check
        st.fault("cell 1 r0_ohm " + std::to_string(golden_r0_ohm));  // the station checked, the cell as it was
        srv.send("1 " + golden);
        const std::string g2 = srv.wait_for("result ", 30);
        CHECK_MESSAGE(contains(g2, "result channel 1 serial " + golden), g2);
        CHECK_MESSAGE(contains(g2, "golden check passed: r0_ohm "), g2);
        srv.send("3 " + b);
        CHECK(contains(srv.wait_for("result ", 30), "result channel 3 serial " + b + " verdict pass"));
        CHECK(srv.proc.terminate(SIGTERM, 20) == 0);
    }
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(st.db(), o);
    const auto events = store.station_events_of("CTL-TEST", "golden_check");
    REQUIRE(events.size() == 3);
    CHECK(contains(events[0].detail_json, "\"passed\": true"));
    CHECK(contains(events[1].detail_json, "\"passed\": false"));
    CHECK(contains(events[2].detail_json, "\"passed\": true"));
    // The golden cell was never screened nor held.
    CHECK(store.status(golden).state == eol::station::CellState::clear);
}
