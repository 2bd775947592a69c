// PlcServer (plc.hpp): the Modbus TCP server on the station's executor and
// the handshake per fixture position. Everything below runs on one strand
// except the two blocking station calls (start, fault_reset), which run on
// the server's worker threads and post their answers back.
//
// Framing: Asio reads the 7-byte MBAP header, checks it (protocol 0, length
// 2..254), reads exactly the rest, checks the PDU's length against its
// function code (so libmodbus never reads past the frame), and only then
// hands the whole ADU to libmodbus: modbus_reply() against the register image
// (a modbus_mapping_t) or modbus_reply_exception(), on a per-connection
// modbus_t whose socket is the accepted one (modbus_set_socket). The reply is
// one send() of at most 260 bytes on the non-blocking socket; a client whose
// socket buffer is full (it does not read its replies) is disconnected.
#include <fmt/format.h>
#include <modbus/modbus.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "eol/station/errors.hpp"
#include "eol/station/log.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/text.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace eol::station::plc {

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);  // station heartbeat and heartbeat watch

spdlog::logger& log() { return station_log("plc"); }

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

/// A client address allowed by one allow-list entry.
struct AllowEntry {
    std::optional<asio::ip::network_v4> v4;
    std::optional<asio::ip::network_v6> v6;
    bool contains(const asio::ip::address& a) const {
        if (v4 && a.is_v4()) {
            const auto net = v4->canonical();
            return asio::ip::network_v4(a.to_v4(), net.prefix_length()).canonical() == net;
        }
        if (v4 && a.is_v6() && a.to_v6().is_v4_mapped()) {
            const auto net = v4->canonical();
            return asio::ip::network_v4(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()), net.prefix_length())
                       .canonical() == net;
        }
        if (v6 && a.is_v6()) {
            const auto net = v6->canonical();
            return asio::ip::network_v6(a.to_v6(), net.prefix_length()).canonical() == net;
        }
        return false;
    }
};

AllowEntry parse_allow(const std::string& text) {
    AllowEntry e;
    const auto slash = text.find('/');
    const auto addr = asio::ip::make_address(text.substr(0, slash));
    if (addr.is_v4()) {
        const unsigned short prefix =
            slash == std::string::npos ? 32 : static_cast<unsigned short>(std::stoi(text.substr(slash + 1)));
        e.v4 = asio::ip::network_v4(addr.to_v4(), prefix);
    } else {
        const unsigned short prefix =
            slash == std::string::npos ? 128 : static_cast<unsigned short>(std::stoi(text.substr(slash + 1)));
        e.v6 = asio::ip::network_v6(addr.to_v6(), prefix);
    }
    return e;
}

/// The PDU length a request of function `fc` must have (nullopt: a function
/// this server does not serve). `pdu` holds `len` bytes, len >= 1.
enum class PduCheck { ok, bad_length, unknown_function };
PduCheck check_pdu(const std::uint8_t* pdu, std::size_t len) {
    switch (pdu[0]) {
        case 0x01: case 0x02: case 0x03: case 0x04:  // reads
        case 0x05: case 0x06:                        // single writes
            return len == 5 ? PduCheck::ok : PduCheck::bad_length;
        case 0x0F: case 0x10:  // multiple writes: fc addr(2) qty(2) count(1) data(count)
            return len >= 6 && len == 6u + pdu[5] ? PduCheck::ok : PduCheck::bad_length;
        case 0x16:  // mask write: fc addr and(2) or(2)
            return len == 7 ? PduCheck::ok : PduCheck::bad_length;
        case 0x17:  // read/write: fc raddr rqty waddr wqty count data
            return len >= 10 && len == 10u + pdu[9] ? PduCheck::ok : PduCheck::bad_length;
        default: return PduCheck::unknown_function;
    }
}

/// The holding registers a request writes: [first, first + count), or count 0.
std::pair<std::uint32_t, std::uint32_t> written_range(const std::uint8_t* pdu) {
    switch (pdu[0]) {
        case 0x06: case 0x16: return {be16(pdu + 1), 1};
        case 0x10: return {be16(pdu + 1), be16(pdu + 3)};
        case 0x17: return {be16(pdu + 5), be16(pdu + 7)};
        default: return {0, 0};
    }
}

std::int32_t scaled(double value, double scale) {
    if (!std::isfinite(value)) return kNotMeasured;
    const double v = std::round(value * scale);
    constexpr double lo = static_cast<double>(std::numeric_limits<std::int32_t>::min()) + 1;
    constexpr double hi = static_cast<double>(std::numeric_limits<std::int32_t>::max());
    return static_cast<std::int32_t>(std::clamp(v, lo, hi));
}

}  // namespace

// ---------------------------------------------------------------- Core

struct PlcServer::Core : std::enable_shared_from_this<PlcServer::Core> {
    // One fixture position's handshake.
    enum class Phase {
        idle,       // READY (when the station and the heartbeat allow)
        starting,   // START latched; station.start() in flight on a worker
        testing,    // the station tests the cell
        aborting,   // an abort was asked; waiting for the result
        result,     // RESULT_VALID until RESULT_ACK
        stopped,    // the station faulted the channel: FAULT_RESET
        resetting,  // station.fault_reset() in flight on a worker
    };
    struct Channel {
        int position = 0;
        std::uint16_t base = 0;
        Phase phase = Phase::idle;
        std::uint16_t last_command = 0;
        std::uint64_t generation = 0;  // of the cycle the answers in flight belong to
        std::uint16_t cycle = 0;
        std::string serial;
        bool abort_pending = false;  // asked while starting: sent once started
        std::string abort_reason;
        FaultCode abort_fault = FaultCode::none;
        FaultCode fault = FaultCode::none;
        ResultCode result = ResultCode::none;
        std::uint16_t result_bits = 0;  // PASS / FAIL / HOLD while RESULT_VALID
        ChannelState station_state = ChannelState::idle;
        bool out_of_service = false;  // faulted by fixture health (the controller's snapshot)
    };
    struct Session {
        std::uint64_t id = 0;
        tcp::socket socket;
        modbus_t* ctx = nullptr;
        std::string peer;
        std::array<std::uint8_t, MODBUS_MAX_ADU_LENGTH> frame{};
        Clock::time_point last_activity = Clock::now();
        asio::steady_timer idle;
        bool closed = false;
        Session(tcp::socket s, asio::any_io_executor ex) : socket(std::move(s)), idle(ex) {}
        ~Session() {
            if (ctx) modbus_free(ctx);  // does not close the socket (Asio owns it)
        }
    };

    PlcStation& station;
    PlcConfig cfg;
    asio::strand<asio::any_io_executor> strand;
    tcp::acceptor acceptor;
    asio::steady_timer ticker;
    asio::thread_pool workers{2};
    modbus_mapping_t* map = nullptr;
    std::vector<AllowEntry> allow;
    std::map<int, Channel> channels;
    std::map<std::uint64_t, std::shared_ptr<Session>> sessions;
    std::uint64_t next_session = 1;
    std::uint16_t bound_port = 0;
    bool stopped = false;
    bool heartbeat_seen = false;
    Clock::time_point heartbeat_changed{};
    bool heartbeat_was_stale = true;
    std::atomic<bool> heartbeat_stale_now{true};  // heartbeat_was_stale for other threads (heartbeat_stale())
    // Answers posted from other threads reach the strand only while the
    // server is alive. The `done` callbacks the station keeps hold only this
    // (not a strand: a strand must not outlive its io_context).
    struct Inbox {
        std::mutex mutex;
        std::optional<asio::strand<asio::any_io_executor>> strand;  // reset by stop()
        template <class F>
        void post(F f) {
            std::lock_guard lk(mutex);
            if (strand) asio::post(*strand, std::move(f));
        }
    };
    std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();

    Core(asio::any_io_executor ex, PlcStation& st, PlcConfig config_in)
        : station(st), cfg(std::move(config_in)), strand(asio::make_strand(ex)), acceptor(strand), ticker(strand) {
        inbox->strand = strand;
        for (const auto& a : cfg.allow) allow.push_back(parse_allow(a));
        int max_position = 0;
        for (const auto& ch : station.config().channels) {
            if (ch.position < 1 || ch.position > kMaxPosition)
                throw UsageError(fmt::format("[plc]: fixture position {} does not fit the register map (1..{})",
                                             ch.position, kMaxPosition));
            Channel c;
            c.position = ch.position;
            c.base = block(ch.position);
            channels.emplace(ch.position, c);
            max_position = std::max(max_position, ch.position);
        }
        map = modbus_mapping_new_start_address(0, 0, 0, 0, 0, static_cast<unsigned>(kBlockStride * (max_position + 1)), 0,
                                               0);
        if (!map) throw std::runtime_error("cannot allocate the register image");
        for (auto& [p, c] : channels) publish(c);

        boost::system::error_code ec;
        const auto address = asio::ip::make_address(cfg.bind, ec);
        if (ec) throw UsageError(fmt::format("[plc] bind '{}': not an IP address", cfg.bind));
        const tcp::endpoint ep(address, static_cast<unsigned short>(cfg.port));
        acceptor.open(ep.protocol(), ec);
        if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) acceptor.bind(ep, ec);
        if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
        if (ec)
            throw UsageError(fmt::format("[plc] cannot listen on {}:{}: {}", cfg.bind, cfg.port, ec.message()));
        bound_port = acceptor.local_endpoint().port();
    }

    ~Core() {
        if (map) modbus_mapping_free(map);
    }

    void begin() {
        accept();
        tick();
    }

    std::uint16_t& at(std::uint32_t address) { return map->tab_registers[address]; }

    // ------------------------------------------------------------ connections

    void accept() {
        acceptor.async_accept(asio::bind_executor(
            strand, [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket s) {
                if (self->stopped) return;
                if (!ec) self->on_accept(std::move(s));
                else if (ec != asio::error::operation_aborted)
                    log().warn("accept: {}", ec.message());
                if (ec != asio::error::operation_aborted) self->accept();
            }));
    }

    void on_accept(tcp::socket s) {
        boost::system::error_code ec;
        const auto remote = s.remote_endpoint(ec);
        if (ec) return;  // already gone
        const std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
        if (std::none_of(allow.begin(), allow.end(), [&](const AllowEntry& a) { return a.contains(remote.address()); })) {
            log().warn("refused {}: not on the [plc] allow list", peer);
            s.close(ec);
            return;
        }
        if (sessions.size() >= static_cast<std::size_t>(cfg.max_clients)) {
            auto oldest = std::min_element(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
                return a.second->last_activity < b.second->last_activity;
            });
            log().warn("{} clients already: closing the longest idle, {}, for {}", sessions.size(),
                         oldest->second->peer, peer);
            close(*oldest->second, "evicted for a new client");
        }
        s.set_option(tcp::no_delay(true), ec);
        s.native_non_blocking(true, ec);  // libmodbus send()s the reply on it
        auto session = std::make_shared<Session>(std::move(s), strand);
        session->id = next_session++;
        session->peer = peer;
        session->ctx = modbus_new_tcp("127.0.0.1", 502);  // only a framing context: never connected
        if (!session->ctx) {
            log().error("{}: cannot create a libmodbus context", peer);
            return;
        }
        modbus_set_socket(session->ctx, session->socket.native_handle());
        modbus_set_error_recovery(session->ctx, MODBUS_ERROR_RECOVERY_NONE);
        sessions.emplace(session->id, session);
        log().info("client {} connected ({} now)", peer, sessions.size());
        arm_idle(session);
        read_header(session);
    }

    void close(Session& s, std::string_view why) {
        if (s.closed) return;
        s.closed = true;
        boost::system::error_code ec;
        s.idle.cancel();
        s.socket.shutdown(tcp::socket::shutdown_both, ec);
        s.socket.close(ec);
        log().info("client {} closed: {}", s.peer, why);
        sessions.erase(s.id);  // the handlers in flight keep the session alive until they return
    }

    void arm_idle(const std::shared_ptr<Session>& s) {
        s->idle.expires_after(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(cfg.idle_timeout_s)));
        s->idle.async_wait(asio::bind_executor(strand, [self = shared_from_this(), s](const boost::system::error_code& ec) {
            if (ec || s->closed) return;
            self->close(*s, fmt::format("idle for {} s", self->cfg.idle_timeout_s));
        }));
    }

    void read_header(const std::shared_ptr<Session>& s) {
        asio::async_read(s->socket, asio::buffer(s->frame.data(), 7),
                         asio::bind_executor(strand, [self = shared_from_this(), s](const boost::system::error_code& ec,
                                                                                   std::size_t) {
                             if (s->closed) return;
                             if (ec) return self->close(*s, ec == asio::error::eof ? "by the client" : ec.message());
                             self->on_header(s);
                         }));
    }

    void on_header(const std::shared_ptr<Session>& s) {
        const std::uint16_t protocol = be16(&s->frame[2]);
        const std::uint16_t length = be16(&s->frame[4]);  // unit id + PDU
        if (protocol != 0 || length < 2 || length > MODBUS_MAX_PDU_LENGTH + 1)
            return close(*s, fmt::format("bad MBAP header (protocol {}, length {}): framing lost", protocol, length));
        asio::async_read(s->socket, asio::buffer(s->frame.data() + 7, length - 1u),
                         asio::bind_executor(strand, [self = shared_from_this(), s, length](
                                                         const boost::system::error_code& ec, std::size_t) {
                             if (s->closed) return;
                             if (ec) return self->close(*s, ec == asio::error::eof ? "by the client (mid-frame)" : ec.message());
                             self->on_frame(s, 6u + length);
                             if (!s->closed) {
                                 self->arm_idle(s);
                                 self->read_header(s);
                             }
                         }));
    }

    bool writable(std::uint32_t address) const {
        if (address == kPlcHeartbeat) return true;
        const auto pos = static_cast<int>(address / kBlockStride);
        return channels.count(pos) && address % kBlockStride <= reg::last_plc_written;
    }

    void on_frame(const std::shared_ptr<Session>& s, std::size_t size) {
        s->last_activity = Clock::now();
        const std::uint8_t* req = s->frame.data();
        const std::uint8_t unit = req[6];
        const std::uint8_t* pdu = req + 7;
        const std::size_t pdu_len = size - 7;
        int rc = 0;
        if (unit != cfg.unit && unit != MODBUS_TCP_SLAVE) {  // 0xFF: "unit id not used" (Modbus TCP guide)
            rc = modbus_reply_exception(s->ctx, req, MODBUS_EXCEPTION_GATEWAY_TARGET);
        } else {
            switch (check_pdu(pdu, pdu_len)) {
                case PduCheck::unknown_function:
                    rc = modbus_reply_exception(s->ctx, req, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
                    break;
                case PduCheck::bad_length:
                    rc = modbus_reply_exception(s->ctx, req, MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE);
                    break;
                case PduCheck::ok: {
                    const auto [first, count] = written_range(pdu);
                    bool ok = true;
                    for (std::uint32_t a = first; a < first + count && ok; ++a) ok = writable(a);
                    if (!ok) {
                        log().debug("{}: write to read-only registers {}..{} refused", s->peer, first,
                                      first + count - 1);
                        rc = modbus_reply_exception(s->ctx, req, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
                        break;
                    }
                    rc = modbus_reply(s->ctx, req, static_cast<int>(size), map);
                    if (count > 0) after_write(first, count);
                    break;
                }
            }
        }
        if (rc < 0) close(*s, fmt::format("reply not sent: {}", modbus_strerror(errno)));
    }

    // ------------------------------------------------------------ handshake

    bool heartbeat_fresh() const {
        return heartbeat_seen &&
               Clock::now() - heartbeat_changed <
                   std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.heartbeat_timeout_s));
    }

    std::uint16_t heartbeat_value = 0;

    void after_write(std::uint32_t first, std::uint32_t count) {
        const std::uint32_t last = first + count - 1;
        if (first == kPlcHeartbeat) {
            const std::uint16_t v = at(kPlcHeartbeat);
            if (!heartbeat_seen || v != heartbeat_value) {
                heartbeat_seen = true;
                heartbeat_value = v;
                heartbeat_changed = Clock::now();
                if (heartbeat_was_stale) {
                    heartbeat_was_stale = false;
                    heartbeat_stale_now = false;
                    log().info("PLC heartbeat present");
                    for (auto& [p, c] : channels) publish(c);
                }
            }
        }
        for (auto& [p, c] : channels)
            if (c.base <= last && first <= static_cast<std::uint32_t>(c.base + reg::last_plc_written))
                on_command(c, at(c.base + reg::command));
    }

    void on_command(Channel& c, std::uint16_t word) {
        const std::uint16_t rising = static_cast<std::uint16_t>(word & ~c.last_command);
        c.last_command = word;
        if (rising & command::abort) do_abort(c, "PLC abort", FaultCode::plc_abort);
        if (rising & command::fault_reset) do_fault_reset(c);
        if (rising & command::result_ack) do_ack(c);
        if (rising & command::start) {
            if (rising & command::abort) c.fault = FaultCode::start_with_abort;
            else do_start(c);
        }
        publish(c);
    }

    void refuse(Channel& c, FaultCode f) {
        log().info("position {}: {}", c.position, describe(f));
        c.fault = f;
    }

    void do_start(Channel& c) {
        switch (c.phase) {
            case Phase::result: return refuse(c, FaultCode::result_not_acknowledged);
            case Phase::starting: case Phase::testing: case Phase::aborting: case Phase::resetting:
                return refuse(c, FaultCode::channel_busy);
            case Phase::stopped:
                return refuse(c, c.out_of_service ? FaultCode::position_out_of_service : FaultCode::channel_faulted);
            case Phase::idle: break;
        }
        if (c.station_state == ChannelState::faulted)
            return refuse(c, c.out_of_service ? FaultCode::position_out_of_service : FaultCode::channel_faulted);
        if (!heartbeat_fresh()) return refuse(c, FaultCode::heartbeat_missing);
        if (at(c.base + reg::recipe_id) != cfg.recipe_id) return refuse(c, FaultCode::unknown_recipe);

        // Latch the cycle: its id, serial; clear the last answer.
        ++c.generation;
        c.cycle = at(c.base + reg::cycle_id);
        const std::string typed = serial_from_registers(&at(c.base + reg::serial), cfg.serial_byte_order);
        c.fault = FaultCode::none;
        c.result = ResultCode::none;
        c.result_bits = 0;
        c.abort_pending = false;
        for (const auto& slot : measurement_slots()) write_i32(c.base + slot.offset, kNotMeasured);
        const DecodeResult dec = station.scheme().decode(typed);
        if (!dec) {
            log().info("position {} cycle {}: serial '{}' invalid: {}", c.position, c.cycle, printable(typed),
                         dec.error->message);
            c.serial = typed;
            c.result = ResultCode::invalid_serial;
            c.phase = Phase::result;
            return;
        }
        c.serial = dec.value.serial;
        c.phase = Phase::starting;
        log().info("position {} cycle {}: start {}", c.position, c.cycle, c.serial);
        const std::uint64_t gen = c.generation;
        const int pos = c.position;
        asio::post(workers, [self = shared_from_this(), pos, gen, serial = c.serial] {
            auto done = [inbox = self->inbox, weak = std::weak_ptr<Core>(self), pos, gen](const CellResult& r) {
                inbox->post([weak, pos, gen, r] {
                    if (auto core = weak.lock()) core->on_result(pos, gen, r);
                });
            };
            std::optional<std::string> refused;
            bool golden = false;
            try {
                self->station.start(pos, serial, std::move(done));
            } catch (const GoldenCheckRequired& e) {
                refused = e.what();
                golden = true;
            } catch (const std::exception& e) {
                refused = e.what();
            }
            self->to_strand([pos, gen, refused, golden](Core& core) { core.on_started(pos, gen, refused, golden); });
        });
    }

    /// Runs `f` on the strand while the server is alive.
    template <class F>
    void to_strand(F f) {
        inbox->post([weak = weak_from_this(), f = std::move(f)] {
            if (auto core = weak.lock()) f(*core);
        });
    }

    void on_started(int pos, std::uint64_t gen, const std::optional<std::string>& refused, bool golden) {
        Channel& c = channels.at(pos);
        if (c.generation != gen) return;
        if (refused) {
            log().warn("position {} cycle {}: the station refused: {}", pos, c.cycle, printable(*refused));
            if (c.phase == Phase::starting) {
                c.phase = Phase::idle;
                c.fault = golden ? FaultCode::golden_check : FaultCode::start_refused;
            }
        } else if (c.phase == Phase::starting) {
            c.phase = Phase::testing;
            if (c.abort_pending) send_abort(c);
        }
        publish(c);
    }

    void send_abort(Channel& c) {
        c.abort_pending = false;
        c.phase = Phase::aborting;
        const std::string why = fmt::format("{} (cycle {})", c.abort_reason, c.cycle);
        if (!station.abort(c.position, why))
            log().info("position {}: abort: nothing under test (the result is on its way)", c.position);
    }

    void do_abort(Channel& c, const std::string& reason, FaultCode f) {
        if (c.phase != Phase::starting && c.phase != Phase::testing) return;  // nothing to abort: already safe
        log().warn("position {} cycle {}: {}", c.position, c.cycle, reason);
        c.abort_reason = reason;
        c.abort_fault = f;
        if (c.phase == Phase::starting) c.abort_pending = true;
        else send_abort(c);
    }

    void do_ack(Channel& c) {
        if (c.phase != Phase::result) return refuse(c, FaultCode::ack_without_result);
        c.result_bits = 0;
        c.phase = c.station_state == ChannelState::faulted ? Phase::stopped : Phase::idle;
    }

    void do_fault_reset(Channel& c) {
        if (c.phase == Phase::starting || c.phase == Phase::testing || c.phase == Phase::aborting ||
            c.phase == Phase::resetting)
            return refuse(c, FaultCode::channel_busy);
        if (c.station_state != ChannelState::faulted) {
            c.fault = FaultCode::none;  // a refusal acknowledged
            if (c.phase == Phase::stopped) c.phase = Phase::idle;
            return;
        }
        const Phase back = c.phase;
        c.phase = Phase::resetting;
        const int pos = c.position;
        asio::post(workers, [self = shared_from_this(), pos, back] {
            std::optional<std::string> failed;
            try {
                self->station.fault_reset(pos);
            } catch (const std::exception& e) {
                failed = e.what();
            }
            self->to_strand([pos, back, failed](Core& core) {
                Channel& ch = core.channels.at(pos);
                if (failed) {
                    log().warn("position {}: fault reset failed: {}", pos, printable(*failed));
                    ch.fault = FaultCode::reset_failed;
                    ch.phase = back == Phase::result ? Phase::result : Phase::stopped;
                } else {
                    log().info("position {}: fault reset", pos);
                    ch.fault = FaultCode::none;
                    ch.station_state = ChannelState::idle;
                    ch.out_of_service = false;
                    ch.phase = back == Phase::result ? Phase::result : Phase::idle;
                }
                core.publish(ch);
            });
        });
    }

    void on_result(int pos, std::uint64_t gen, const CellResult& r) {
        Channel& c = channels.at(pos);
        if (c.generation != gen || (c.phase != Phase::starting && c.phase != Phase::testing && c.phase != Phase::aborting))
            return;
        c.result_bits = 0;
        c.fault = FaultCode::none;
        if (r.verdict == "pass") {
            c.result = ResultCode::pass;
            c.result_bits = status::pass;
        } else if (r.verdict == "fail") {
            c.result = ResultCode::fail;
            c.result_bits = status::fail;
        } else if (r.verdict == "hold") {
            c.result = r.record ? ResultCode::hold : ResultCode::serial_held;
            c.result_bits = status::hold;
        } else {
            c.result = ResultCode::aborted;
            if (r.verdict == "error") c.fault = FaultCode::instrument_error;
            else if (c.abort_fault != FaultCode::none && c.phase == Phase::aborting) c.fault = c.abort_fault;
            else c.fault = FaultCode::station_abort;
            if (r.held_hazardous) c.result_bits = status::hold;
        }
        if (!r.load_off_confirmed) c.fault = FaultCode::load_not_off;
        if (r.fixture_alarm && c.fault == FaultCode::none) c.fault = FaultCode::position_out_of_service;
        c.abort_fault = FaultCode::none;
        c.abort_pending = false;
        c.serial = r.serial;
        if (r.record)
            for (const auto& slot : measurement_slots()) {
                const MeasurementSpec* spec = nullptr;
                for (const auto* m : station.config().recipe.measurements())
                    if (m->quantity == slot.quantity) spec = m;
                if (!spec) continue;
                for (const auto& m : r.record->measurements)
                    if (m.name == spec->name) write_i32(c.base + slot.offset, scaled(m.value, slot.scale));
            }
        // The controller's state as of this result (its snapshot may lag a tick).
        if (r.verdict == "error" || !r.load_off_confirmed) c.station_state = ChannelState::faulted;
        else c.station_state = r.verdict == "abort" ? ChannelState::aborted : ChannelState::complete;
        if (r.fixture_alarm) {
            c.station_state = ChannelState::faulted;
            c.out_of_service = true;
        }
        c.phase = Phase::result;
        log().info("position {} cycle {}: result {} ({}){}", pos, c.cycle, static_cast<int>(c.result), r.verdict,
                     r.reason.empty() ? "" : ": " + printable(r.reason));
        publish(c);
    }

    void write_i32(std::uint32_t address, std::int32_t v) {
        const auto u = static_cast<std::uint32_t>(v);
        at(address) = static_cast<std::uint16_t>(u >> 16);
        at(address + 1) = static_cast<std::uint16_t>(u & 0xffff);
    }

    /// The station → PLC registers of `c` from its state.
    void publish(Channel& c) {
        const bool station_faulted = c.station_state == ChannelState::faulted;
        PackMl state = PackMl::idle;
        std::uint16_t bits = 0;
        switch (c.phase) {
            case Phase::idle:
                if (station_faulted) state = PackMl::stopped;
                else if (c.station_state == ChannelState::testing) {
                    state = PackMl::execute;  // a cell started at the station itself
                    bits |= status::busy;
                } else if (heartbeat_fresh() && !stopped) bits |= status::ready;
                break;
            case Phase::starting: case Phase::testing:
                state = PackMl::execute;
                bits |= status::busy;
                break;
            case Phase::aborting:
                state = PackMl::aborting;
                bits |= status::busy;
                break;
            case Phase::result:
                state = c.result == ResultCode::aborted ? PackMl::aborted : PackMl::completed;
                bits |= status::result_valid | c.result_bits;
                break;
            case Phase::stopped: case Phase::resetting:
                state = PackMl::stopped;
                break;
        }
        FaultCode fault = c.fault;
        if (fault == FaultCode::none && station_faulted && c.phase != Phase::result)
            fault = c.out_of_service ? FaultCode::position_out_of_service : FaultCode::channel_faulted;
        if (fault != FaultCode::none) bits |= status::fault;
        at(c.base + reg::packml) = static_cast<std::uint16_t>(state);
        at(c.base + reg::status) = bits;
        at(c.base + reg::cycle_echo) = c.cycle;
        at(c.base + reg::result) = static_cast<std::uint16_t>(c.result);
        at(c.base + reg::fault) = static_cast<std::uint16_t>(fault);
        serial_to_registers(c.serial, &at(c.base + reg::serial_echo), cfg.serial_byte_order);
    }

    // ------------------------------------------------------------ heartbeats

    void tick() {
        ticker.expires_after(kTick);
        ticker.async_wait(asio::bind_executor(strand, [self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec || self->stopped) return;
            self->on_tick();
            self->tick();
        }));
    }

    void on_tick() {
        ++at(kStationHeartbeat);  // wraps at 65535
        const bool fresh = heartbeat_fresh();
        if (!fresh && !heartbeat_was_stale) {
            heartbeat_was_stale = true;
            heartbeat_stale_now = true;
            log().warn("PLC heartbeat stale (unchanged for {} s)", cfg.heartbeat_timeout_s);
        }
        std::map<int, std::pair<ChannelState, bool>> states;
        for (const auto& s : station.snapshot()) states[s.position] = {s.state, s.out_of_service};
        for (auto& [p, c] : channels) {
            if (auto it = states.find(p); it != states.end() && c.phase != Phase::resetting) {
                // The station's own view; our result keeps a faulted state even
                // before the controller's snapshot shows it.
                if (!(c.station_state == ChannelState::faulted && it->second.first != ChannelState::idle)) {
                    c.station_state = it->second.first;
                    c.out_of_service = it->second.second;
                } else if (it->second.second) {
                    c.out_of_service = true;
                }
            }
            if (!fresh) do_abort(c, "stale PLC heartbeat", FaultCode::heartbeat_abort);
            if (c.phase == Phase::stopped && c.station_state != ChannelState::faulted) c.phase = Phase::idle;
            publish(c);
        }
    }

    void stop() {
        {
            std::lock_guard lk(inbox->mutex);
            inbox->strand.reset();
        }
        asio::post(strand, [self = shared_from_this()] {
            self->stopped = true;
            boost::system::error_code ec;
            self->acceptor.close(ec);
            self->ticker.cancel();
            while (!self->sessions.empty()) self->close(*self->sessions.begin()->second, "server stopped");
        });
    }
};

// ---------------------------------------------------------------- PlcServer

PlcServer::PlcServer(asio::any_io_executor executor, PlcStation& station, PlcConfig cfg)
    : core_(std::make_shared<Core>(std::move(executor), station, std::move(cfg))) {
    core_->begin();
    log().info("Modbus TCP server on {}:{} (unit {})", core_->cfg.bind, port(), core_->cfg.unit);
}

PlcServer::PlcServer(asio::any_io_executor executor, std::unique_ptr<PlcStation> station, PlcConfig cfg)
    : owned_(std::move(station)), core_(std::make_shared<Core>(std::move(executor), *owned_, std::move(cfg))) {
    core_->begin();
    log().info("Modbus TCP server on {}:{} (unit {})", core_->cfg.bind, port(), core_->cfg.unit);
}

PlcServer::~PlcServer() { stop(); }

std::uint16_t PlcServer::port() const { return core_->bound_port; }

bool PlcServer::heartbeat_stale() const { return core_->heartbeat_stale_now.load(); }

void PlcServer::stop() {
    if (!core_) return;
    core_->stop();
    core_->workers.join();
}

std::unique_ptr<PlcServer> start_plc_if_configured(asio::any_io_executor executor, Controller& controller) {
    const PlcConfig& cfg = controller.config().plc;
    if (!cfg.active()) return nullptr;
    return std::make_unique<PlcServer>(executor, controller_station(controller), cfg);
}

}  // namespace eol::station::plc
