// The PLC server (eol/station/plc.hpp) in process, over loopback, against a
// fake station: the register map and its write protection, the handshake
// (START, BUSY, RESULT_VALID, RESULT_ACK), the refusals and their fault
// codes, heartbeat loss, ABORT, fault reset, the allow list, idle and surplus
// connections, and a bounded fuzz of random and truncated frames. The client
// is libmodbus (a master we did not write for this server). The end-to-end
// tests with the real controller, the simulators, pymodbus and mbpoll are in
// test_plc_cli.cpp.
#include <doctest/doctest.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/serial.hpp"
#include "support/station_test.hpp"

namespace asio = boost::asio;
namespace plc = eol::station::plc;
using eol::station::CellResult;
using eol::station::ChannelSnapshot;
using eol::station::ChannelState;
using eol::station::ControllerRefused;
using eol::station::PlcConfig;

namespace {

/// A station that records what the server asks and finishes cells when the
/// test says so. Thread-safe (the server calls it from its workers and strand).
class FakeStation : public plc::PlcStation {
public:
    FakeStation() : cfg_(eol::station::load_station_config(std::string(EOL_CONFIG_DIR) + "/station.example.toml")) {}

    const eol::station::SerialScheme& scheme() const override { return eol::station::SerialScheme::default_scheme(); }
    const eol::station::StationConfig& config() const override { return cfg_; }
    void start(int position, const std::string& serial, std::function<void(const CellResult&)> done) override {
        std::unique_lock lk(m_);
        if (states_[position] == ChannelState::testing) throw ControllerRefused("busy");
        if (states_[position] == ChannelState::faulted) throw ControllerRefused("faulted");
        if (golden_due_) throw eol::station::GoldenCheckRequired("golden check due: test a golden cell first");
        starts_.push_back({position, serial});
        if (held_.count(serial)) {
            CellResult r;
            r.position = position;
            r.serial = serial;
            r.verdict = "hold";
            r.reason = "held: test";
            lk.unlock();
            done(r);  // from the caller's thread, like the controller
            return;
        }
        states_[position] = ChannelState::testing;
        running_[position] = {serial, std::move(done)};
    }
    bool abort(int position, const std::string& reason) override {
        std::function<void(const CellResult&)> done;
        CellResult r;
        {
            std::lock_guard lk(m_);
            auto it = running_.find(position);
            if (it == running_.end()) return false;
            aborts_.push_back({position, reason});
            r.position = position;
            r.serial = it->second.first;
            r.verdict = "abort";
            r.reason = reason;
            r.record.emplace();
            done = std::move(it->second.second);
            running_.erase(it);
            states_[position] = ChannelState::aborted;
        }
        // The controller answers from the channel's worker: another thread.
        std::thread([done, r] { done(r); }).detach();
        return true;
    }
    void fault_reset(int position) override {
        std::lock_guard lk(m_);
        ++resets_;
        if (!reset_ok_) throw ControllerRefused("load input cannot be confirmed off");
        states_[position] = ChannelState::idle;
        out_of_service_.erase(position);
    }
    std::vector<ChannelSnapshot> snapshot() const override {
        std::lock_guard lk(m_);
        std::vector<ChannelSnapshot> out;
        for (const auto& c : cfg_.channels) {
            ChannelSnapshot s;
            s.position = c.position;
            auto it = states_.find(c.position);
            s.state = it == states_.end() ? ChannelState::idle : it->second;
            s.out_of_service = out_of_service_.count(c.position) > 0;
            out.push_back(s);
        }
        return out;
    }

    /// Finishes the cell on `position` with `verdict` (and measurements).
    void finish(int position, const std::string& verdict, const std::optional<std::string>& fixture_alarm = {}) {
        std::function<void(const CellResult&)> done;
        CellResult r;
        {
            std::lock_guard lk(m_);
            auto it = running_.find(position);
            REQUIRE(it != running_.end());
            r.position = position;
            r.serial = it->second.first;
            r.verdict = verdict;
            r.record.emplace();
            r.record->measurements.push_back(eol::station::Measurement::judged("ocv_v", 4.01234, "V", 3.4, 4.2));
            r.record->measurements.push_back(eol::station::Measurement::judged("r0_ohm", 0.033123, "ohm", {}, 0.045));
            r.record->measurements.push_back(eol::station::Measurement::judged("temp_rise_k", -0.25, "K", {}, 3.0));
            done = std::move(it->second.second);
            running_.erase(it);
            states_[position] = verdict == "error" ? ChannelState::faulted : ChannelState::complete;
            if (fixture_alarm) {
                r.fixture_alarm = fixture_alarm;
                states_[position] = ChannelState::faulted;
                out_of_service_.insert(position);
            }
        }
        done(r);
    }
    void hold(const std::string& serial) {
        std::lock_guard lk(m_);
        held_.insert(serial);
    }
    void set_golden_due(bool due) {
        std::lock_guard lk(m_);
        golden_due_ = due;
    }
    void set_reset_ok(bool ok) {
        std::lock_guard lk(m_);
        reset_ok_ = ok;
    }
    std::size_t starts() const {
        std::lock_guard lk(m_);
        return starts_.size();
    }
    std::string last_start_serial() const {
        std::lock_guard lk(m_);
        return starts_.empty() ? "" : starts_.back().second;
    }
    std::vector<std::pair<int, std::string>> aborts() const {
        std::lock_guard lk(m_);
        return aborts_;
    }
    bool running(int position) const {
        std::lock_guard lk(m_);
        return running_.count(position) > 0;
    }
    int resets() const {
        std::lock_guard lk(m_);
        return resets_;
    }

    eol::station::StationConfig cfg_;

private:
    mutable std::mutex m_;
    std::map<int, ChannelState> states_;
    std::map<int, std::pair<std::string, std::function<void(const CellResult&)>>> running_;
    std::vector<std::pair<int, std::string>> starts_;
    std::vector<std::pair<int, std::string>> aborts_;
    std::set<std::string> held_;
    bool reset_ok_ = true;
    int resets_ = 0;
    std::set<int> out_of_service_;
    bool golden_due_ = false;
};

PlcConfig test_plc_config() {
    PlcConfig c;
    c.present = true;
    c.bind = "127.0.0.1";
    c.port = 0;
    c.heartbeat_timeout_s = 0.6;
    c.idle_timeout_s = 30;
    return c;
}

/// The server on an io_context run by a thread of its own.
struct Rig {
    FakeStation station;
    asio::io_context io;
    std::unique_ptr<plc::PlcServer> server;
    std::thread loop;
    explicit Rig(PlcConfig cfg = test_plc_config()) {
        server = std::make_unique<plc::PlcServer>(io.get_executor(), station, cfg);
        loop = std::thread([this] { io.run(); });
    }
    ~Rig() {
        server->stop();
        server.reset();
        io.stop();
        loop.join();
    }
    std::uint16_t port() const { return server->port(); }
};

/// A libmodbus master.
struct Client {
    modbus_t* ctx = nullptr;
    explicit Client(std::uint16_t port, int unit = 1) {
        ctx = modbus_new_tcp("127.0.0.1", port);
        REQUIRE(ctx);
        modbus_set_slave(ctx, unit);
        modbus_set_response_timeout(ctx, 2, 0);
        REQUIRE_MESSAGE(modbus_connect(ctx) == 0, modbus_strerror(errno));
    }
    ~Client() {
        modbus_close(ctx);
        modbus_free(ctx);
    }
    std::uint16_t read(int address) {
        std::uint16_t v = 0;
        REQUIRE_MESSAGE(modbus_read_registers(ctx, address, 1, &v) == 1, "read " << address << ": " << modbus_strerror(errno));
        return v;
    }
    std::vector<std::uint16_t> read(int address, int n) {
        std::vector<std::uint16_t> v(static_cast<std::size_t>(n));
        REQUIRE(modbus_read_registers(ctx, address, n, v.data()) == n);
        return v;
    }
    void write(int address, std::uint16_t v) {
        REQUIRE_MESSAGE(modbus_write_register(ctx, address, v) == 1, "write " << address << ": " << modbus_strerror(errno));
    }
    /// errno of a write that must fail (an exception's EMBX… code).
    int write_error(int address, std::uint16_t v) {
        const int rc = modbus_write_register(ctx, address, v);
        return rc == -1 ? errno : 0;
    }
    void write_serial(int position, const std::string& s) {
        std::uint16_t words[8];
        plc::serial_to_registers(s, words, PlcConfig::ByteOrder::high_first);
        REQUIRE(modbus_write_registers(ctx, plc::block(position) + plc::reg::serial, 8, words) == 8);
    }
    std::string read_echo(int position) {
        const auto w = read(plc::block(position) + plc::reg::serial_echo, 8);
        return plc::serial_from_registers(w.data(), PlcConfig::ByteOrder::high_first);
    }
    std::uint16_t beat = 0;
    void heartbeat() { write(plc::kPlcHeartbeat, ++beat); }
    std::int32_t read_i32(int address) {
        const auto w = read(address, 2);
        return static_cast<std::int32_t>(static_cast<std::uint32_t>(w[0]) << 16 | w[1]);
    }
};

bool eventually(const std::function<bool()>& f, double timeout_s = 5) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < end) {
        if (f()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return f();
}

std::uint16_t status(Client& c, int pos) { return c.read(plc::block(pos) + plc::reg::status); }
std::uint16_t packml(Client& c, int pos) { return c.read(plc::block(pos) + plc::reg::packml); }
std::uint16_t fault(Client& c, int pos) { return c.read(plc::block(pos) + plc::reg::fault); }
std::uint16_t result(Client& c, int pos) { return c.read(plc::block(pos) + plc::reg::result); }

/// Serial, recipe 1, cycle id, then START.
void start_cycle(Client& c, int pos, const std::string& serial, std::uint16_t cycle, std::uint16_t recipe = 1) {
    c.write_serial(pos, serial);
    c.write(plc::block(pos) + plc::reg::recipe_id, recipe);
    c.write(plc::block(pos) + plc::reg::cycle_id, cycle);
    c.write(plc::block(pos) + plc::reg::command, plc::command::start);
}

}  // namespace

TEST_CASE("plc: serial registers round trip in both byte orders, NUL and space padding dropped") {
    std::uint16_t w[8];
    plc::serial_to_registers("01A33E004200001C", w, PlcConfig::ByteOrder::high_first);
    CHECK(w[0] == ('0' << 8 | '1'));
    CHECK(plc::serial_from_registers(w, PlcConfig::ByteOrder::high_first) == "01A33E004200001C");
    plc::serial_to_registers("01A33E004200001C", w, PlcConfig::ByteOrder::low_first);
    CHECK(w[0] == ('1' << 8 | '0'));
    CHECK(plc::serial_from_registers(w, PlcConfig::ByteOrder::low_first) == "01A33E004200001C");
    CHECK(plc::serial_from_registers(w, PlcConfig::ByteOrder::high_first) == "103AE300240000C1");
    plc::serial_to_registers("AB C", w, PlcConfig::ByteOrder::high_first);
    CHECK(w[2] == 0);
    CHECK(plc::serial_from_registers(w, PlcConfig::ByteOrder::high_first) == "AB C");
    // The measurement table: the three the issue fixes, then the others, no overlaps.
    const auto& slots = plc::measurement_slots();
    REQUIRE(slots.size() >= 3);
    CHECK(slots[0].quantity == "ocv_v");
    CHECK(slots[0].offset == 40);
    CHECK(slots[1].quantity == "r0_ohm");
    CHECK(slots[2].quantity == "temp_rise_k");
    for (std::size_t i = 1; i < slots.size(); ++i) CHECK(slots[i].offset == slots[i - 1].offset + 2);
    CHECK(slots.back().offset + 1 < plc::kBlockStride);
}

TEST_CASE("plc: a full cycle: START latches, BUSY, results and echoes, RESULT_VALID until RESULT_ACK") {
    Rig rig;
    Client c(rig.port());
    const int pos = 2;
    const auto B = plc::block(pos);
    CHECK(packml(c, pos) == 4);
    CHECK((status(c, pos) & plc::status::ready) == 0);  // no PLC heartbeat yet
    c.heartbeat();
    CHECK(eventually([&] { return (status(c, pos) & plc::status::ready) != 0; }));

    // Typed lower case with a dash: normalized by the station's scheme.
    std::string typed = eol::test::lot0042_serial(11);
    const std::string normalized = typed;
    for (auto& ch : typed) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    start_cycle(c, pos, typed, 4711);
    CHECK(eventually([&] { return rig.station.running(pos); }));
    CHECK(rig.station.last_start_serial() == normalized);
    CHECK(eventually([&] { return status(c, pos) == plc::status::busy; }));
    CHECK(packml(c, pos) == 6);
    CHECK(c.read(B + plc::reg::cycle_echo) == 4711);
    CHECK(c.read_echo(pos) == normalized);
    c.write(B + plc::reg::command, 0);  // the PLC clears START
    // A START held high does nothing more; a new rising edge on a busy channel is refused.
    c.write(B + plc::reg::command, plc::command::start);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::channel_busy));
    CHECK((status(c, pos) & plc::status::fault) != 0);
    CHECK(rig.station.starts() == 1);
    c.write(B + plc::reg::command, 0);

    c.heartbeat();
    rig.station.finish(pos, "pass");
    CHECK(eventually([&] { return (status(c, pos) & plc::status::result_valid) != 0; }));
    CHECK(status(c, pos) == (plc::status::result_valid | plc::status::pass));  // fault code cleared by the result
    CHECK(packml(c, pos) == 17);
    CHECK(result(c, pos) == 1);
    CHECK(c.read(B + plc::reg::cycle_echo) == 4711);
    CHECK(c.read_i32(B + 40) == 40123);    // 4.01234 V in 0.1 mV
    CHECK(c.read_i32(B + 42) == 33123);    // 0.033123 ohm in µΩ
    CHECK(c.read_i32(B + 44) == -250);     // -0.25 K in mK (signed)
    CHECK(c.read_i32(B + 46) == plc::kNotMeasured);  // dcir_ohm not in this record

    // A new START before the acknowledgement: refused, the result stays valid.
    c.write(B + plc::reg::command, plc::command::start);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::result_not_acknowledged));
    CHECK((status(c, pos) & plc::status::result_valid) != 0);
    CHECK(rig.station.starts() == 1);
    c.write(B + plc::reg::command, 0);

    c.write(B + plc::reg::command, plc::command::result_ack);
    CHECK((status(c, pos) & plc::status::result_valid) == 0);
    CHECK(packml(c, pos) == 4);
    CHECK(result(c, pos) == 1);  // kept readable until the next START
    c.write(B + plc::reg::command, 0);
    // RESULT_ACK without RESULT_VALID: fault 7, nothing else changes.
    c.write(B + plc::reg::command, plc::command::result_ack);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::ack_without_result));
    CHECK(packml(c, pos) == 4);
    c.write(B + plc::reg::command, 0);
    c.heartbeat();
    CHECK((status(c, pos) & plc::status::ready) != 0);
    // The station heartbeat moves at least every 250 ms.
    const std::uint16_t h0 = c.read(plc::kStationHeartbeat);
    std::this_thread::sleep_for(std::chrono::milliseconds(260));
    CHECK(c.read(plc::kStationHeartbeat) != h0);
}

TEST_CASE("plc: read-only registers, out-of-map addresses, bad lengths, other functions and unit ids answer exceptions") {
    Rig rig;
    Client c(rig.port());
    // Writes: only register 0 and B+0..B+10 of a configured position.
    CHECK(c.write_error(plc::kPlcHeartbeat, 1) == 0);
    CHECK(c.write_error(plc::kStationHeartbeat, 1) == EMBXILADD);
    CHECK(c.write_error(plc::block(1) + plc::reg::packml, 9) == EMBXILADD);
    CHECK(c.write_error(plc::block(1) + plc::reg::status, 1) == EMBXILADD);
    CHECK(c.write_error(plc::block(1) + 11, 1) == EMBXILADD);
    CHECK(c.write_error(plc::block(1) + 40, 1) == EMBXILADD);
    CHECK(c.write_error(50, 1) == EMBXILADD);             // between the heartbeats and block 1
    CHECK(c.write_error(plc::block(9) + 0, 1) == EMBXILADD);  // no position 9
    CHECK(c.write_error(plc::block(1) + 10, 7) == 0);
    CHECK(c.read(plc::block(1) + plc::reg::packml) == 4);  // unchanged
    // A multiple write that spills from B+10 into B+11 is refused whole.
    const std::uint16_t two[2] = {1, 2};
    CHECK(modbus_write_registers(c.ctx, plc::block(1) + 9, 2, two) == 2);  // B+9, B+10: fine
    CHECK(modbus_write_registers(c.ctx, plc::block(1) + 10, 2, two) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(c.read(plc::block(1) + 10) == 2);  // unchanged by the refused write
    // Read/write (FC23) and mask write (FC22) obey the same rule.
    std::uint16_t out[2];
    CHECK(modbus_write_and_read_registers(c.ctx, plc::block(1) + 20, 1, two, plc::block(1), 2, out) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(modbus_mask_write_register(c.ctx, plc::block(1) + 21, 0, 0xff) == -1);
    CHECK(errno == EMBXILADD);
    // Reads beyond the map (5 positions: registers 0..599).
    std::uint16_t v[4];
    CHECK(modbus_read_registers(c.ctx, 599, 1, v) == 1);
    CHECK(modbus_read_registers(c.ctx, 599, 2, v) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(modbus_read_registers(c.ctx, 65535, 1, v) == -1);
    CHECK(errno == EMBXILADD);
    // No coils, discrete inputs or input registers.
    std::uint8_t bits[8];
    CHECK(modbus_read_bits(c.ctx, 0, 1, bits) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(modbus_read_input_registers(c.ctx, 0, 1, v) == -1);
    CHECK(errno == EMBXILADD);
    CHECK(modbus_write_bit(c.ctx, 0, 1) == -1);
    CHECK(errno == EMBXILADD);
    // A function this server does not serve (report slave id).
    std::uint8_t id[64];
    CHECK(modbus_report_slave_id(c.ctx, sizeof id, id) == -1);
    CHECK(errno == EMBXILFUN);
    // A request with a declared length that does not match its function: raw.
    const std::uint8_t fc3_long[] = {0, 9, 0, 0, 0, 8, 1, 3, 0, 0, 0, 1, 0xAA};
    std::uint8_t rsp[MODBUS_TCP_MAX_ADU_LENGTH];
    REQUIRE(modbus_send_raw_request(c.ctx, fc3_long + 6, sizeof fc3_long - 6) > 0);
    REQUIRE(modbus_receive_confirmation(c.ctx, rsp) == 9);
    CHECK(rsp[7] == 0x83);  // exception to FC03
    CHECK(rsp[8] == MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
    CHECK(c.read(plc::kPlcHeartbeat) == 1);  // the connection survived
    // 0xFF ("not used", libmodbus's default) is this server too; another unit id: GATEWAY TARGET (0x0B).
    Client any(rig.port(), MODBUS_TCP_SLAVE);
    CHECK(any.read(plc::kPlcHeartbeat) == 1);
    Client other(rig.port(), 7);
    std::uint16_t r = 0;
    CHECK(modbus_read_registers(other.ctx, 0, 1, &r) == -1);
    CHECK(errno == EMBXGTAR);
}

TEST_CASE("plc: START refusals name their cause, an invalid serial answers 5, a held serial 6, neither tests") {
    Rig rig;
    Client c(rig.port());
    const int pos = 1;
    const auto B = plc::block(pos);
    // No heartbeat: refused with 4.
    start_cycle(c, pos, eol::test::lot0042_serial(21), 1);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::heartbeat_missing));
    CHECK(packml(c, pos) == 4);
    c.write(B + plc::reg::command, 0);
    // Unknown recipe id: 3.
    c.heartbeat();
    start_cycle(c, pos, eol::test::lot0042_serial(21), 2, 9);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::unknown_recipe));
    c.write(B + plc::reg::command, 0);
    // START and ABORT in one write: START ignored (14).
    c.write(B + plc::reg::recipe_id, 1);
    c.write(B + plc::reg::command, plc::command::start | plc::command::abort);
    CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::start_with_abort));
    c.write(B + plc::reg::command, 0);
    CHECK(rig.station.starts() == 0);

    // Empty serial, a bad character, a bad check character: result 5 at once.
    std::string bad_check = eol::test::lot0042_serial(22);
    bad_check.back() = bad_check.back() == 'Z' ? 'Y' : 'Z';
    for (const std::string& bad : {std::string(), std::string("01A33E00420#001C"), bad_check}) {
        CAPTURE(bad);
        c.heartbeat();
        start_cycle(c, pos, bad, 30);
        CHECK(status(c, pos) == plc::status::result_valid);
        CHECK(result(c, pos) == 5);
        CHECK(packml(c, pos) == 17);
        CHECK(c.read(B + plc::reg::cycle_echo) == 30);
        c.write(B + plc::reg::command, plc::command::result_ack);
        CHECK(packml(c, pos) == 4);
        c.write(B + plc::reg::command, 0);
    }
    CHECK(rig.station.starts() == 0);

    // A held serial: result 6, HOLD, the channel never started.
    const std::string held = eol::test::lot0042_serial(23);
    rig.station.hold(held);
    c.heartbeat();
    start_cycle(c, pos, held, 31);
    CHECK(eventually([&] { return (status(c, pos) & plc::status::result_valid) != 0; }));
    CHECK(result(c, pos) == 6);
    CHECK((status(c, pos) & plc::status::hold) != 0);
    CHECK(!rig.station.running(pos));
    c.write(B + plc::reg::command, plc::command::result_ack);
    c.write(B + plc::reg::command, 0);
}

TEST_CASE("plc: a stale PLC heartbeat aborts the PLC's tests: Aborted, result 4, fault 8, no START until it moves") {
    Rig rig;
    Client c(rig.port());
    c.heartbeat();
    start_cycle(c, 1, eol::test::lot0042_serial(31), 5);
    start_cycle(c, 3, eol::test::lot0042_serial(32), 6);
    CHECK(eventually([&] { return rig.station.running(1) && rig.station.running(3); }));
    c.write(plc::block(1), 0);
    c.write(plc::block(3), 0);
    const auto t0 = std::chrono::steady_clock::now();
    // The heartbeat stops (0.6 s timeout).
    CHECK(eventually([&] { return !rig.station.running(1) && !rig.station.running(3); }, 3));
    const double after_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(after_s > 0.4);
    CHECK(after_s < 1.5);
    const auto aborts = rig.station.aborts();
    REQUIRE(aborts.size() == 2);
    CHECK(aborts[0].second.find("stale PLC heartbeat") != std::string::npos);
    for (const int pos : {1, 3}) {
        CHECK(eventually([&] { return packml(c, pos) == 9; }));
        CHECK(result(c, pos) == 4);
        CHECK(fault(c, pos) == static_cast<std::uint16_t>(plc::FaultCode::heartbeat_abort));
        CHECK((status(c, pos) & (plc::status::result_valid | plc::status::fault)) ==
              (plc::status::result_valid | plc::status::fault));
        c.write(plc::block(pos), plc::command::result_ack);
        c.write(plc::block(pos), 0);
        CHECK(packml(c, pos) == 4);
    }
    // Still stale: START refused (4); the heartbeat moves: accepted.
    start_cycle(c, 1, eol::test::lot0042_serial(33), 7);
    CHECK(fault(c, 1) == static_cast<std::uint16_t>(plc::FaultCode::heartbeat_missing));
    c.write(plc::block(1), 0);
    c.heartbeat();
    start_cycle(c, 1, eol::test::lot0042_serial(33), 8);
    CHECK(eventually([&] { return rig.station.running(1); }));
    CHECK(fault(c, 1) == 0);
    c.heartbeat();
    rig.station.finish(1, "fail");
    CHECK(eventually([&] { return result(c, 1) == 2; }));
    CHECK(status(c, 1) == (plc::status::result_valid | plc::status::fail));
}

TEST_CASE("plc: ABORT mid-test aborts through the station, ABORT when nothing runs changes nothing") {
    Rig rig;
    Client c(rig.port());
    c.heartbeat();
    const auto B = plc::block(4);
    c.write(B, plc::command::abort);  // idle: no effect, no fault
    CHECK(fault(c, 4) == 0);
    CHECK(packml(c, 4) == 4);
    c.write(B, 0);
    start_cycle(c, 4, eol::test::lot0042_serial(41), 9);
    CHECK(eventually([&] { return rig.station.running(4); }));
    c.write(B, 0);
    c.write(B, plc::command::abort);
    CHECK(eventually([&] { return packml(c, 4) == 9; }));
    const auto aborts = rig.station.aborts();
    REQUIRE(aborts.size() == 1);
    CHECK(aborts[0].second == "PLC abort (cycle 9)");
    CHECK(result(c, 4) == 4);
    CHECK(fault(c, 4) == static_cast<std::uint16_t>(plc::FaultCode::plc_abort));
    c.write(B, 0);
    c.write(B, plc::command::abort);  // after the end: nothing
    CHECK(rig.station.aborts().size() == 1);
    CHECK(packml(c, 4) == 9);
    c.write(B, plc::command::result_ack);
    CHECK(packml(c, 4) == 4);
}

TEST_CASE("plc: a test ending in error leaves the channel Stopped until FAULT_RESET, a failed reset says so") {
    Rig rig;
    Client c(rig.port());
    c.heartbeat();
    const auto B = plc::block(5);
    start_cycle(c, 5, eol::test::lot0042_serial(51), 10);
    CHECK(eventually([&] { return rig.station.running(5); }));
    c.write(B, 0);
    rig.station.finish(5, "error");
    CHECK(eventually([&] { return packml(c, 5) == 9; }));
    CHECK(result(c, 5) == 4);
    CHECK(fault(c, 5) == static_cast<std::uint16_t>(plc::FaultCode::instrument_error));
    c.write(B, plc::command::result_ack);
    c.write(B, 0);
    CHECK(packml(c, 5) == 2);
    CHECK((status(c, 5) & plc::status::ready) == 0);
    c.heartbeat();
    start_cycle(c, 5, eol::test::lot0042_serial(52), 11);
    CHECK(fault(c, 5) == static_cast<std::uint16_t>(plc::FaultCode::channel_faulted));
    c.write(B, 0);
    rig.station.set_reset_ok(false);
    c.write(B, plc::command::fault_reset);
    CHECK(eventually([&] { return fault(c, 5) == static_cast<std::uint16_t>(plc::FaultCode::reset_failed); }));
    CHECK(packml(c, 5) == 2);
    c.write(B, 0);
    rig.station.set_reset_ok(true);
    c.write(B, plc::command::fault_reset);
    CHECK(eventually([&] { return packml(c, 5) == 4 && fault(c, 5) == 0; }));
    CHECK(rig.station.resets() == 2);
    c.heartbeat();
    CHECK((status(c, 5) & plc::status::ready) != 0);
}

TEST_CASE("plc: fixture health and the golden check: fault 15 with the result and on START until FAULT_RESET, 16 while a golden check is due") {
    Rig rig;
    Client c(rig.port());
    c.heartbeat();
    const auto B = plc::block(3);
    start_cycle(c, 3, eol::test::lot0042_serial(61), 20);
    CHECK(eventually([&] { return rig.station.running(3); }));
    c.write(B, 0);
    // The cell passes; its reading takes the position out of service.
    rig.station.finish(3, "pass", std::string("position 3: contact resistance +2.41 mOhm against the other positions"));
    CHECK(eventually([&] { return packml(c, 3) == 17; }));
    CHECK(result(c, 3) == 1);  // the cell's verdict stands
    CHECK(fault(c, 3) == static_cast<std::uint16_t>(plc::FaultCode::position_out_of_service));
    CHECK((status(c, 3) & plc::status::fault) != 0);
    CHECK((status(c, 3) & plc::status::pass) != 0);
    c.write(B, plc::command::result_ack);
    c.write(B, 0);
    CHECK(packml(c, 3) == 2);  // Stopped
    c.heartbeat();
    start_cycle(c, 3, eol::test::lot0042_serial(62), 21);
    CHECK(fault(c, 3) == static_cast<std::uint16_t>(plc::FaultCode::position_out_of_service));
    CHECK(packml(c, 3) == 2);
    c.write(B, 0);
    c.write(B, plc::command::fault_reset);  // serviced
    CHECK(eventually([&] { return packml(c, 3) == 4 && fault(c, 3) == 0; }));
    c.write(B, 0);

    // A golden check due: START refused with 16, nothing started.
    const std::size_t before = rig.station.starts();
    rig.station.set_golden_due(true);
    const auto B4 = plc::block(4);
    c.heartbeat();
    start_cycle(c, 4, eol::test::lot0042_serial(63), 22);
    CHECK(eventually([&] { return fault(c, 4) == static_cast<std::uint16_t>(plc::FaultCode::golden_check); }));
    CHECK(packml(c, 4) == 4);
    CHECK(rig.station.starts() == before);
    CHECK(plc::describe(plc::FaultCode::golden_check).find("golden cell") != std::string_view::npos);
    c.write(B4, 0);
}

TEST_CASE("hostile: plc clients not on the allow list are refused, surplus and idle clients are closed") {
    {
        PlcConfig cfg = test_plc_config();
        cfg.allow = {"10.0.0.0/8", "::1"};
        Rig rig(cfg);
        modbus_t* ctx = modbus_new_tcp("127.0.0.1", rig.port());
        modbus_set_response_timeout(ctx, 1, 0);
        REQUIRE(modbus_connect(ctx) == 0);  // accepted by the kernel, closed by the server
        std::uint16_t v = 0;
        CHECK(modbus_read_registers(ctx, 0, 1, &v) == -1);
        modbus_close(ctx);
        modbus_free(ctx);
    }
    PlcConfig cfg = test_plc_config();
    cfg.max_clients = 3;
    cfg.idle_timeout_s = 0.5;
    Rig rig(cfg);
    // Many connections opened and left idle (one mid-frame).
    std::vector<int> idle;
    for (int k = 0; k < 20; ++k) {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(rig.port());
        REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        if (k == 0) {
            const std::uint8_t half[] = {0, 1, 0, 0, 0, 6, 1};  // a header, no PDU
            REQUIRE(::write(s, half, sizeof half) == sizeof half);
        }
        idle.push_back(s);
    }
    // The newest client is served at once (the longest idle ones were closed).
    Client c(rig.port());
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(c.read(plc::kStationHeartbeat) < 65535);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200));
    // The idle connections end: read() sees EOF within the idle timeout.
    int closed = 0;
    for (const int s : idle) {
        timeval tv{2, 0};
        ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char b;
        if (::read(s, &b, 1) == 0) ++closed;
        ::close(s);
    }
    CHECK(closed == 20);
    // Silent for longer than idle_timeout_s: this client is closed too.
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    std::uint16_t v = 0;
    CHECK(modbus_read_registers(c.ctx, 0, 1, &v) == -1);
}

TEST_CASE("hostile: plc fuzz: random and truncated frames get an answer or a close, never a crash") {
    Rig rig;
    std::mt19937 rng(20261205);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    int frames = 0, answered = 0, closed = 0;
    auto connect = [&] {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(rig.port());
        REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        timeval tv{0, 100'000};
        ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        return s;
    };
    int s = connect();
    for (; frames < 2000 && std::chrono::steady_clock::now() < deadline; ++frames) {
        std::vector<std::uint8_t> f;
        const int kind = static_cast<int>(rng() % 4);
        if (kind == 0) {  // pure noise
            f.resize(1 + rng() % 300);
            for (auto& b : f) b = static_cast<std::uint8_t>(rng());
        } else {  // a plausible header, a random PDU, its length right or wrong
            const std::uint8_t fcs[] = {1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 22, 23, 43, 0x80, 0};
            std::vector<std::uint8_t> pdu(1 + rng() % 20);
            for (auto& b : pdu) b = static_cast<std::uint8_t>(rng());
            pdu[0] = fcs[rng() % sizeof fcs];
            if (pdu.size() > 2 && rng() % 2) pdu[1] = static_cast<std::uint8_t>(rng() % 3);  // addresses in the map
            std::size_t len = pdu.size() + 1;
            if (kind == 2) len = rng() % 300;  // a lying length
            f = {static_cast<std::uint8_t>(rng()), static_cast<std::uint8_t>(rng()), 0, 0,
                 static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len), static_cast<std::uint8_t>(1 + rng() % 2)};
            f.insert(f.end(), pdu.begin(), pdu.end());
            if (kind == 3 && f.size() > 1) f.resize(1 + rng() % (f.size() - 1));  // truncated
        }
        if (::send(s, f.data(), f.size(), MSG_NOSIGNAL) < 0) {
            ::close(s);
            s = connect();
            ++closed;
            continue;
        }
        if (kind == 3) ::shutdown(s, SHUT_WR);  // the client leaves mid-frame
        std::uint8_t rsp[512];
        const ssize_t n = ::recv(s, rsp, sizeof rsp, 0);
        if (n > 0) ++answered;
        else if (n == 0) {
            ::close(s);
            s = connect();
            ++closed;
        } else if (kind == 3 || kind == 2) {  // the server waits for bytes that never come: start over
            ::close(s);
            s = connect();
        }
    }
    ::close(s);
    MESSAGE("fuzz: " << frames << " frames, " << answered << " answered, " << closed << " connections closed by the server");
    CHECK(frames >= 300);
    CHECK(answered > 0);
    CHECK(closed > 0);
    // The server still serves, and nothing was started by the noise (no heartbeat ever went stale→fresh
    // with a valid serial and recipe 1 in one go).
    Client c(rig.port());
    CHECK(c.read(plc::block(1) + plc::reg::packml) >= 2);
    const auto B = plc::block(2);
    c.write(B, 0);
    c.write(B, plc::command::result_ack);  // whatever the noise left pending
    c.write(B, plc::command::fault_reset);
    c.write(B, 0);
    c.heartbeat();
    start_cycle(c, 2, eol::test::lot0042_serial(61), 1);
    CHECK(eventually([&] { return rig.station.running(2); }));
}

TEST_CASE("hostile: plc a client that disconnects mid-cycle: the test goes on, its answer waits for the next connection") {
    Rig rig;
    std::uint16_t beat = 0;
    {
        Client a(rig.port());
        a.heartbeat();
        beat = a.beat;
        start_cycle(a, 3, eol::test::lot0042_serial(71), 300);
        CHECK(eventually([&] { return rig.station.running(3); }));
    }  // gone, START still set, mid-cycle
    CHECK(rig.station.aborts().empty());
    Client b(rig.port());
    b.beat = beat;
    b.heartbeat();  // back within the heartbeat timeout
    rig.station.finish(3, "pass");
    CHECK(eventually([&] { return (status(b, 3) & plc::status::result_valid) != 0; }));
    CHECK(b.read(plc::block(3) + plc::reg::cycle_echo) == 300);
    CHECK(result(b, 3) == 1);
    b.write(plc::block(3), 0);
    b.write(plc::block(3), plc::command::result_ack);
    CHECK(packml(b, 3) == 4);
    CHECK(rig.station.aborts().empty());
}
