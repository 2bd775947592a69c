// The PLC interface end to end: `eolstation sim` serves the simulated
// instruments of a temporary station file on free loopback ports,
// `eolstation serve` runs the real controller with its [plc] Modbus server,
// and PLCs we did not write drive it: pymodbus (tests/plc/plc_line.py, full
// cycles on four positions at once) and mbpoll (tests/plc/plc_mbpoll.sh).
// Heartbeat loss and ABORT mid-test are driven with libmodbus and asserted on
// the simulator's load (read back by the real binary: `eolstation instruments
// load … measure`) and on the store.
#include <doctest/doctest.h>
#include <modbus/modbus.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/plc.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"
#include "support/process.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
namespace plc = eol::station::plc;
using nlohmann::json;

namespace {

using eol::test::free_port;
using eol::test::Process;
using eol::test::TempDir;
using Result = eol::test::ProcessResult;

struct Ports {
    std::uint16_t keysight = free_port(), siglent = free_port(), itech = free_port(), tc = free_port(),
                  plc = free_port();
};

// Four positions: load1 (two-channel Keysight) 1 and 2, load2 (Siglent) 3,
// load3 (ITECH) 4; every thermocouple on one ET-7018Z; the PLC server on
// loopback with a 1 s heartbeat timeout.
std::string config_text(const Ports& p, double time_scale, bool plc_enabled = true) {
    const std::string c = EOL_CONFIG_DIR;
    auto port = [](std::uint16_t n) { return std::to_string(n); };
    return "[station]\nid = \"PLC-TEST\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" + c +
           "/serial-scheme.toml\"\nstore = \"test.db\"\nambient = { thermo = \"tc1\", channel = 7 }\n\n"
           "[instruments.load1]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.keysight) +
           "\"\ndialect = \"" + c + "/dialects/keysight-el30000.toml\"\nchannels = 2\n\n"
           "[instruments.load2]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.siglent) +
           "\"\ndialect = \"" + c + "/dialects/siglent-sdl1000x.toml\"\n\n"
           "[instruments.load3]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:" + port(p.itech) +
           "\"\ndialect = \"" + c + "/dialects/itech-it8500.toml\"\n\n"
           "[instruments.tc1]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:" + port(p.tc) +
           "\"\nmap = \"" + c + "/maps/icpdas-et7018z.toml\"\nchannels = 8\n\n"
           "[[channels]]\nposition = 1\nload = \"load1\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 0\n\n"
           "[[channels]]\nposition = 2\nload = \"load1\"\nload_channel = 2\nthermo = \"tc1\"\nthermo_channel = 1\n\n"
           "[[channels]]\nposition = 3\nload = \"load2\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 2\n\n"
           "[[channels]]\nposition = 4\nload = \"load3\"\nload_channel = 1\nthermo = \"tc1\"\nthermo_channel = 3\n\n"
           "[limits]\ntemp_abort_c = 60\nv_min_v = 2.5\ni_max_a = 10.0\n\n"
           "[screening]\nfeatures = [\"ocv_v\"]\n\n"
           "[plc]\nenabled = " + (plc_enabled ? "true" : "false") + "\nbind = \"127.0.0.1\"\nport = " + port(p.plc) +
           "\nunit = 1\nheartbeat_timeout_s = 1.0\nallow = [\"127.0.0.1\"]\nrecipe_id = 1\n\n"
           "[sim]\ntime_scale = " + std::to_string(time_scale) +
           "\nseed = 7\nambient_c = 25.0\nlot = \"0042\"\nproduction_date = 2023-03-14\ncells = 20\n";
}

/// `eolstation sim` and `eolstation serve` (with [plc]) on one temporary station.
struct PlcStation {
    TempDir tmp;
    Ports ports;
    double time_scale;
    fs::path config;
    std::unique_ptr<Process> sim, serve;

    explicit PlcStation(double scale, bool plc_enabled = true) : time_scale(scale) {
        config = tmp.write("station.toml", config_text(ports, time_scale, plc_enabled));
        Process::Options o;
        o.pipe_stdin = true;
        o.stop_signal = SIGKILL;
        sim = std::make_unique<Process>(std::vector<std::string>{EOL_CLI, "sim", "--config", config.string()}, o);
        for (int k = 0; k < 4; ++k) REQUIRE_MESSAGE(!sim->read_line(30).empty(), "sim did not start");
        Process::Options so;
        so.pipe_stdin = true;
        so.err = Process::Stream::inherit;  // the server's log, shown by ctest on a failure
        serve = std::make_unique<Process>(std::vector<std::string>{EOL_CLI, "serve", "--config", config.string(),
                                                                   "--time-scale", std::to_string(time_scale)},
                                          so);
        if (!plc_enabled) return;
        // Listening once a Modbus client gets an answer.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        bool up = false;
        while (!up && std::chrono::steady_clock::now() < deadline) {
            modbus_t* ctx = modbus_new_tcp("127.0.0.1", ports.plc);
            std::uint16_t v = 0;
            up = modbus_connect(ctx) == 0 && modbus_read_registers(ctx, 1, 1, &v) == 1;
            modbus_close(ctx);
            modbus_free(ctx);
            if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        REQUIRE_MESSAGE(up, "serve's PLC server did not answer on port " << ports.plc);
    }
    fs::path db() const { return tmp.dir / "test.db"; }
    double load_current_a(const std::string& dialect, std::uint16_t port, int channel) {
        const Result m = eol::test::run_process(
            {EOL_CLI, "instruments", "load", "--dialect", std::string(EOL_CONFIG_DIR) + "/dialects/" + dialect,
             "--address", "tcp://127.0.0.1:" + std::to_string(port), "--channel", std::to_string(channel), "--json",
             "measure"},
            30);
        REQUIRE_MESSAGE(m.exit == 0, m.err);
        return json::parse(m.out)["i_a"].get<double>();
    }
};

std::vector<eol::station::RunInfo> runs_of(const fs::path& db, const std::string& s) {
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(db, o);
    return store.runs_for(s);
}

std::optional<double> stored_measurement(const fs::path& db, std::int64_t run, const std::string& name) {
    eol::station::OpenOptions o;
    o.read_only = true;
    auto store = eol::station::Store::open(db, o);
    const auto rec = store.read_record(run);
    if (!rec) return std::nullopt;
    for (const auto& m : rec->measurements)
        if (m.name == name) return m.value;
    return std::nullopt;
}

/// A libmodbus PLC with a heartbeat thread of its own (its own connection).
struct LibmodbusPlc {
    std::uint16_t port;
    modbus_t* ctx;
    std::atomic<bool> beating{true}, quit{false};
    std::thread beat;
    explicit LibmodbusPlc(std::uint16_t p) : port(p), ctx(connect(p)) {
        beat = std::thread([this] {
            modbus_t* hb = connect(port);
            for (std::uint16_t n = 1; !quit; ++n) {
                if (beating) modbus_write_register(hb, plc::kPlcHeartbeat, n);
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            modbus_close(hb);
            modbus_free(hb);
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    ~LibmodbusPlc() {
        quit = true;
        beat.join();
        modbus_close(ctx);
        modbus_free(ctx);
    }
    static modbus_t* connect(std::uint16_t p) {
        modbus_t* c = modbus_new_tcp("127.0.0.1", p);
        REQUIRE(c);
        modbus_set_response_timeout(c, 2, 0);
        REQUIRE(modbus_connect(c) == 0);
        return c;
    }
    std::vector<std::uint16_t> read(int address, int n) {
        std::vector<std::uint16_t> v(static_cast<std::size_t>(n));
        REQUIRE(modbus_read_registers(ctx, address, n, v.data()) == n);
        return v;
    }
    std::uint16_t read(int address) { return read(address, 1)[0]; }
    void write(int address, std::uint16_t v) { REQUIRE(modbus_write_register(ctx, address, v) == 1); }
    void start(int pos, const std::string& s, std::uint16_t cycle) {
        std::vector<std::uint16_t> w{1, cycle, 0, 0, 0, 0, 0, 0, 0, 0};
        plc::serial_to_registers(s, w.data() + 2, eol::station::PlcConfig::ByteOrder::high_first);
        REQUIRE(modbus_write_registers(ctx, plc::block(pos) + plc::reg::recipe_id, 10, w.data()) == 10);
        write(plc::block(pos), plc::command::start);
    }
    bool wait_for(const std::function<bool()>& f, double timeout_s) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (std::chrono::steady_clock::now() < end) {
            if (f()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }
};

}  // namespace

TEST_CASE("plc cli: pymodbus runs full cycles on four positions at once, each answer is the stored record's") {
    PlcStation st(200);
    std::map<int, std::string> cells{{1, eol::test::lot0042_serial(701)}, {2, eol::test::lot0042_serial(702)}, {3, eol::test::lot0042_serial(703)}, {4, eol::test::lot0042_serial(704)}};
    std::string arg;
    for (const auto& [pos, s] : cells) arg += (arg.empty() ? "" : ",") + std::to_string(pos) + "=" + s;
    const auto t0 = std::chrono::steady_clock::now();
    const Result r = eol::test::run_process(
        {"/usr/bin/python3", std::string(EOL_SOURCE_DIR) + "/tests/plc/plc_line.py", "--port",
         std::to_string(st.ports.plc), "--cells", arg, "--timeout-s", "100"},
        150);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("four cycles through pymodbus at 200x: " << wall_s << " s wall");
    REQUIRE_MESSAGE(r.exit == 0, r.out << r.err);
    std::istringstream lines(r.out);
    int seen = 0;
    for (std::string l; std::getline(lines, l);) {
        const json j = json::parse(l);
        CAPTURE(l);
        const int pos = j["channel"].get<int>();
        const std::string s = cells.at(pos);
        ++seen;
        CHECK(j["ok"] == true);
        CHECK(j["saw_busy"] == true);
        CHECK(j["result"] == 1);
        CHECK(j["packml"] == 17);
        CHECK(j["status"] == (plc::status::result_valid | plc::status::pass));
        CHECK(j["fault"] == 0);
        CHECK(j["cycle_echo"] == 1000 + pos);
        CHECK(j["serial_echo"] == s);
        CHECK(j["packml_after_ack"] == 4);
        const auto runs = runs_of(st.db(), s);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].channel == pos);
        CHECK(runs[0].verdict == eol::station::Verdict::pass);
        // The registers carry the stored record's values in their units.
        const auto ocv = stored_measurement(st.db(), runs[0].id, "ocv_v");
        const auto r0 = stored_measurement(st.db(), runs[0].id, "r0_ohm");
        const auto rise = stored_measurement(st.db(), runs[0].id, "temp_rise_k");
        REQUIRE((ocv && r0 && rise));
        CHECK(j["ocv_0p1mv"].get<long>() == std::lround(*ocv * 1e4));
        CHECK(j["r0_uohm"].get<long>() == std::lround(*r0 * 1e6));
        CHECK(j["temp_rise_mk"].get<long>() == std::lround(*rise * 1e3));
    }
    CHECK(seen == 4);
    CHECK(st.serve->terminate(SIGTERM, 20) == 0);
}

TEST_CASE("plc cli: mbpoll writes and reads the map from a shell script through a full cycle") {
    PlcStation st(200);
    const std::string s = eol::test::lot0042_serial(801);
    const Result r = eol::test::run_process(
        {"/bin/sh", std::string(EOL_SOURCE_DIR) + "/tests/plc/plc_mbpoll.sh", std::to_string(st.ports.plc), "3", s, "42"},
        150);
    CAPTURE(r.out);
    CAPTURE(r.err);
    REQUIRE(r.exit == 0);
    CHECK(r.out.find("readonly refused") != std::string::npos);
    CHECK(r.out.find("busy packml 6") != std::string::npos);
    CHECK(r.out.find("packml 17\n") != std::string::npos);
    CHECK(r.out.find("status 12\n") != std::string::npos);  // RESULT_VALID | PASS
    CHECK(r.out.find("cycle 42\n") != std::string::npos);
    CHECK(r.out.find("result 1\n") != std::string::npos);
    CHECK(r.out.find("after_ack packml 4 status 1") != std::string::npos);  // READY again
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].channel == 3);
    const auto ocv = stored_measurement(st.db(), runs[0].id, "ocv_v");
    REQUIRE(ocv);
    CHECK(r.out.find("ocv_0p1mv " + std::to_string(std::lround(*ocv * 1e4)) + "\n") != std::string::npos);
    CHECK(st.serve->terminate(SIGTERM, 20) == 0);
}

TEST_CASE("hostile: plc cli heartbeat loss mid-test: aborted through the controller, load read back off, Aborted") {
    PlcStation st(100);  // the heat step draws 3 A for 6 s of wall time
    LibmodbusPlc p(st.ports.plc);
    const std::string s = eol::test::lot0042_serial(901);
    p.start(2, s, 77);
    REQUIRE(p.wait_for([&] { return (p.read(plc::block(2) + plc::reg::status) & plc::status::busy) != 0; }, 10));
    p.write(plc::block(2), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // inside the heat step
    CHECK(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 2) > 1.0);
    p.beating = false;  // the PLC stops (its connection stays open)
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(p.wait_for([&] { return p.read(plc::block(2) + plc::reg::packml) == 9; }, 10));
    const double after_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("heartbeat stopped -> Aborted after " << after_s << " s (timeout 1 s)");
    CHECK(after_s < 2.5);
    CHECK(std::fabs(st.load_current_a("keysight-el30000.toml", st.ports.keysight, 2)) < 0.05);
    const auto b = p.read(plc::block(2) + plc::reg::packml, 5);
    CHECK(b[1] == (plc::status::result_valid | plc::status::fault));
    CHECK(b[2] == 77);
    CHECK(b[3] == static_cast<std::uint16_t>(plc::ResultCode::aborted));
    CHECK(b[4] == static_cast<std::uint16_t>(plc::FaultCode::heartbeat_abort));
    // Stale: position 1 refuses a START (fault 4) and never energizes.
    p.start(1, eol::test::lot0042_serial(902), 78);
    CHECK(p.read(plc::block(1) + plc::reg::fault) == static_cast<std::uint16_t>(plc::FaultCode::heartbeat_missing));
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::abort);
    CHECK(runs[0].abort_reason.find("stale PLC heartbeat") != std::string::npos);
    CHECK(runs_of(st.db(), eol::test::lot0042_serial(902)).empty());
    CHECK(st.serve->terminate(SIGTERM, 20) == 0);
}

TEST_CASE("hostile: plc cli ABORT mid-test: load read back off, result 4, the position tests again after RESULT_ACK") {
    PlcStation st(100);
    LibmodbusPlc p(st.ports.plc);
    const std::string s = eol::test::lot0042_serial(951);
    p.start(4, s, 5);
    REQUIRE(p.wait_for([&] { return (p.read(plc::block(4) + plc::reg::status) & plc::status::busy) != 0; }, 10));
    p.write(plc::block(4), 0);
    // START again while busy: refused (2), the test goes on.
    p.write(plc::block(4), plc::command::start);
    CHECK(p.read(plc::block(4) + plc::reg::fault) == static_cast<std::uint16_t>(plc::FaultCode::channel_busy));
    p.write(plc::block(4), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    CHECK(st.load_current_a("itech-it8500.toml", st.ports.itech, 1) > 1.0);
    const auto t0 = std::chrono::steady_clock::now();
    p.write(plc::block(4), plc::command::abort);
    REQUIRE(p.wait_for([&] { return p.read(plc::block(4) + plc::reg::packml) == 9; }, 10));
    const double after_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("ABORT -> Aborted after " << after_s << " s");
    CHECK(after_s < 2.0);
    CHECK(std::fabs(st.load_current_a("itech-it8500.toml", st.ports.itech, 1)) < 0.05);
    CHECK(p.read(plc::block(4) + plc::reg::result) == static_cast<std::uint16_t>(plc::ResultCode::aborted));
    CHECK(p.read(plc::block(4) + plc::reg::fault) == static_cast<std::uint16_t>(plc::FaultCode::plc_abort));
    const auto runs = runs_of(st.db(), s);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].verdict == eol::station::Verdict::abort);
    CHECK(runs[0].abort_reason.find("PLC abort (cycle 5)") != std::string::npos);
    p.write(plc::block(4), plc::command::result_ack);
    CHECK(p.read(plc::block(4) + plc::reg::packml) == 4);
    p.write(plc::block(4), 0);
    p.start(4, eol::test::lot0042_serial(952), 6);
    CHECK(p.wait_for([&] { return (p.read(plc::block(4) + plc::reg::status) & plc::status::busy) != 0; }, 10));
    CHECK(st.serve->terminate(SIGTERM, 20) == 0);
}

TEST_CASE("plc cli: with [plc] enabled = false serve listens on no PLC port and works from standard input") {
    PlcStation st(200, false);
    st.serve->send_line("status");
    std::string l;
    for (int k = 0; k < 30 && l.rfind("status channel 1 ", 0) != 0; ++k) l = st.serve->read_line(1);
    CHECK(l == "status channel 1 idle");  // serve is up (instruments connected)
    modbus_t* ctx = modbus_new_tcp("127.0.0.1", st.ports.plc);
    CHECK(modbus_connect(ctx) == -1);
    modbus_free(ctx);
    CHECK(st.serve->terminate(SIGTERM, 20) == 0);
}
