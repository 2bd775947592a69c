#include "eol/sim/modbus_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "eol/instruments/select_fd.hpp"

namespace eol::sim {
namespace {

using Clock = std::chrono::steady_clock;

/// A TCP client that sent part of a request and nothing more for this long is dropped.
constexpr auto kStalledRequest = std::chrono::milliseconds(500);

std::uint16_t crc16(const std::uint8_t* p, std::size_t n) {
    std::uint16_t crc = 0xFFFF;
    for (std::size_t i = 0; i < n; ++i) {
        crc = static_cast<std::uint16_t>(crc ^ p[i]);
        for (int b = 0; b < 8; ++b)
            crc = (crc & 1u) ? static_cast<std::uint16_t>((crc >> 1) ^ 0xA001u)
                             : static_cast<std::uint16_t>(crc >> 1);
    }
    return crc;
}

void write_all(int fd, const std::uint8_t* p, std::size_t n) {
    bool socket = true;
    while (n > 0) {
        // send(MSG_NOSIGNAL): a client that has gone must not SIGPIPE the process.
        ssize_t w = socket ? ::send(fd, p, n, MSG_NOSIGNAL) : ::write(fd, p, n);
        if (w < 0 && socket && errno == ENOTSOCK) {  // an RTU line (tty, pty)
            socket = false;
            continue;
        }
        if (w < 0) {
            if (errno == EINTR) continue;
            return;  // the client is gone; its next poll says so
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

/// Modbus TCP: whether a whole request (MBAP header and the length it
/// announces) is buffered on `fd`, so modbus_receive() will not wait for the
/// rest. True as well for what modbus_receive() rejects at once (end of
/// stream, a length beyond any ADU) and when the socket cannot be asked.
bool tcp_request_buffered(int fd) {
    int avail = 0;
    if (::ioctl(fd, FIONREAD, &avail) != 0 || avail <= 0) return true;
    std::uint8_t h[7];
    const ssize_t n = ::recv(fd, h, sizeof h, MSG_PEEK | MSG_DONTWAIT);
    if (n < static_cast<ssize_t>(sizeof h)) return n <= 0;
    const int length = (h[4] << 8) | h[5];  // unit id + PDU
    if (length < 2 || 6 + length > MODBUS_TCP_MAX_ADU_LENGTH) return true;
    return avail >= 6 + length;
}

}  // namespace

struct ModbusServer::Impl {
    /// A request received and held back by a latency fault.
    struct Pending {
        std::vector<std::uint8_t> query;
        int rc = 0;
        FaultSettings faults;  // taken when it arrived (one-shot faults included)
        Clock::time_point since;
    };
    struct Client {
        int fd;
        Clock::time_point last;
        std::optional<Pending> pending;
        std::optional<Clock::time_point> partial_since;  // part of a request buffered since
    };
    modbus_t* ctx = nullptr;
    bool rtu = false;
    int listen_fd = -1;  // tcp
    int line_fd = -1;    // rtu
    int wake[2] = {-1, -1};
    int capture[2] = {-1, -1};  // replies built here when they must not go out at once
    std::vector<Client> clients;
    Clock::time_point accept_paused_until{};
    Clock::time_point refused_logged_at{};
    std::uint64_t refused_unlogged = 0;

    ~Impl() {
        for (auto& c : clients) ::close(c.fd);
        if (listen_fd >= 0) ::close(listen_fd);
        if (ctx) {
            if (rtu) modbus_close(ctx);
            modbus_free(ctx);
        }
        for (int fd : {wake[0], wake[1], capture[0], capture[1]})
            if (fd >= 0) ::close(fd);
    }
};

ModbusServer::ModbusServer(std::string name, instruments::Address listen, ModbusServerOptions opt)
    : name_(std::move(name)), listen_(std::move(listen)), opt_(opt) {
    if (listen_.kind == instruments::Address::Kind::serial)
        throw std::invalid_argument(name_ + ": a Modbus server listens on tcp:// or rtu://");
}

ModbusServer::~ModbusServer() {
    stop();
    if (map_) modbus_mapping_free(map_);
}

void ModbusServer::allocate(int coils, int discrete_inputs, int holding, int input) {
    if (map_) modbus_mapping_free(map_);
    map_ = modbus_mapping_new(coils, discrete_inputs, holding, input);
    if (!map_) throw std::runtime_error(name_ + ": cannot allocate the register image");
}

std::string ModbusServer::address() const {
    if (listen_.kind == instruments::Address::Kind::tcp)
        return fmt::format("tcp://{}:{}", listen_.host, port_);
    return listen_.to_string();
}

void ModbusServer::start() {
    if (running_) return;
    if (!map_) throw std::logic_error(name_ + ": no register image");
    auto impl = std::make_unique<Impl>();
    if (::pipe2(impl->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        throw std::runtime_error(name_ + ": pipe: " + std::strerror(errno));
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, impl->capture) != 0)
        throw std::runtime_error(name_ + ": socketpair: " + std::strerror(errno));
    if (listen_.kind == instruments::Address::Kind::tcp) {
        const std::string port = std::to_string(listen_.port);
        impl->ctx = modbus_new_tcp_pi(listen_.host.c_str(), port.c_str());
        if (!impl->ctx) throw std::runtime_error(name_ + ": cannot create a Modbus TCP context");
        impl->listen_fd = modbus_tcp_pi_listen(impl->ctx, opt_.max_clients);
        if (impl->listen_fd < 0)
            throw std::runtime_error(fmt::format("{}: cannot listen on {}:{}: {}", name_,
                                                 listen_.host, listen_.port,
                                                 modbus_strerror(errno)));
        sockaddr_storage sa{};
        socklen_t len = sizeof sa;
        if (::getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
            throw std::runtime_error(name_ + ": getsockname: " + std::strerror(errno));
        port_ = sa.ss_family == AF_INET6
                    ? ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port)
                    : ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
    } else {
        impl->rtu = true;
        impl->ctx = modbus_new_rtu(listen_.device.c_str(), static_cast<int>(listen_.baud),
                                   listen_.parity, listen_.data_bits, listen_.stop_bits);
        if (!impl->ctx) throw std::runtime_error(name_ + ": cannot create a Modbus RTU context");
        modbus_set_slave(impl->ctx, opt_.unit);
        if (modbus_connect(impl->ctx) != 0)
            throw std::runtime_error(fmt::format("{}: cannot open {}: {}", name_, listen_.device,
                                                 modbus_strerror(errno)));
        impl->line_fd = modbus_get_socket(impl->ctx);
        if (impl->line_fd >= FD_SETSIZE) {
            // libmodbus waits for the line with select(): move it below FD_SETSIZE or give up.
            const int low = instruments::fd_below_setsize(impl->line_fd);
            if (low < 0)
                throw std::runtime_error(fmt::format(
                    "{}: cannot serve {}: its descriptor {} is not below FD_SETSIZE ({}) and no lower one "
                    "is free (libmodbus waits with select())",
                    name_, listen_.device, impl->line_fd, FD_SETSIZE));
            modbus_set_socket(impl->ctx, low);
            impl->line_fd = low;
        }
    }
    // Never wait without a bound, even if poll() said "readable" for a reason
    // libmodbus does not expect.
    modbus_set_indication_timeout(impl->ctx, 0, 500000);
    modbus_set_byte_timeout(impl->ctx, 0, 500000);
    modbus_set_error_recovery(impl->ctx, MODBUS_ERROR_RECOVERY_NONE);
    impl_ = std::move(impl);
    stop_ = false;
    running_ = true;
    thread_ = std::thread([this] { run(); });
}

void ModbusServer::stop() {
    if (!running_) return;
    stop_ = true;
    const char b = 1;
    [[maybe_unused]] const ssize_t w = ::write(impl_->wake[1], &b, 1);
    if (thread_.joinable()) thread_.join();
    impl_.reset();
    running_ = false;
}

void ModbusServer::run() {
    Impl& I = *impl_;
    const int header = modbus_get_header_length(I.ctx);
    using Pending = Impl::Pending;

    auto drop = [&](std::size_t k) {
        ::close(I.clients[k].fd);
        I.clients.erase(I.clients.begin() + static_cast<std::ptrdiff_t>(k));
    };

    enum class Got { request, nothing, gone };
    // Reads one request from `fd` (< FD_SETSIZE: modbus_receive() uses select()).
    auto receive = [&](int fd, Pending& p) -> Got {
        p.query.resize(MODBUS_TCP_MAX_ADU_LENGTH);
        modbus_set_socket(I.ctx, fd);
        const int rc = modbus_receive(I.ctx, p.query.data());
        if (rc == 0) return Got::nothing;  // RTU: addressed to another unit
        if (rc < 0) {
            if (I.rtu) {
                modbus_flush(I.ctx);
                return Got::nothing;
            }
            return Got::gone;  // TCP: closed by the peer, garbage or stalled mid-request
        }
        ++requests_;
        p.rc = rc;
        p.faults = faults_.take();
        p.since = Clock::now();
        if (p.faults.no_reply) return Got::nothing;
        return Got::request;
    };

    // When a request held back by a latency fault is due: the latency in
    // force NOW counts, so clearing (or shortening) the fault releases every
    // held request at once.
    auto due = [&](const Pending& p) {
        const double latency_s = std::min(faults_.get().latency_s, p.faults.latency_s);
        return p.since + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(std::max(0.0, latency_s)));
    };

    // Answers a received request on `fd`; false when the client is to be dropped.
    auto answer = [&](int fd, const Pending& p) -> bool {
        const FaultSettings& f = p.faults;
        const std::uint8_t* query = p.query.data();
        if (f.drop_connection) return I.rtu;  // RTU has no connection: no reply
        modbus_set_socket(I.ctx, fd);
        if (f.modbus_exception != 0) {
            modbus_reply_exception(I.ctx, query, static_cast<unsigned>(f.modbus_exception));
            return true;
        }
        if (f.garbage_reply) {
            // A frame of the right shape that does not answer the request: an
            // unknown function code (TCP), or a bad CRC (RTU).
            std::vector<std::uint8_t> g;
            if (I.rtu) {
                g = {query[0], 0x55, 0xAA};
                const std::uint16_t crc = static_cast<std::uint16_t>(crc16(g.data(), g.size()) ^ 0x5A5A);
                g.push_back(static_cast<std::uint8_t>(crc & 0xFF));
                g.push_back(static_cast<std::uint8_t>(crc >> 8));
            } else {
                g = {query[0], query[1], 0, 0, 0, 3, query[6], 0x55, 0xAA};
            }
            write_all(fd, g.data(), g.size());
            return true;
        }
        std::lock_guard lk(image_m_);
        refresh(*map_);
        const int fc = query[static_cast<std::size_t>(header)];
        auto u16 = [&](int off) {
            const auto k = static_cast<std::size_t>(header + off);
            return (query[k] << 8) | query[k + 1];
        };
        int w_addr = -1, w_count = 0;
        switch (fc) {
        case MODBUS_FC_WRITE_SINGLE_COIL:
        case MODBUS_FC_WRITE_SINGLE_REGISTER: w_addr = u16(1); w_count = 1; break;
        case MODBUS_FC_WRITE_MULTIPLE_COILS:
        case MODBUS_FC_WRITE_MULTIPLE_REGISTERS: w_addr = u16(1); w_count = u16(3); break;
        case MODBUS_FC_WRITE_AND_READ_REGISTERS: w_addr = u16(5); w_count = u16(7); break;
        default: break;
        }
        if (w_addr < 0 && !f.truncated_reply) {
            modbus_reply(I.ctx, query, p.rc, map_);
            return true;
        }
        // Let libmodbus build the reply into a socket pair: a write must act
        // on the simulation before the client hears it is done, and a
        // truncated reply is half of the real one.
        modbus_set_socket(I.ctx, I.capture[0]);
        modbus_reply(I.ctx, query, p.rc, map_);
        modbus_set_socket(I.ctx, fd);
        std::uint8_t buf[MODBUS_TCP_MAX_ADU_LENGTH + 8];
        const ssize_t n = ::recv(I.capture[1], buf, sizeof buf, MSG_DONTWAIT);
        const bool refused = n > header && (buf[header] & 0x80) != 0;  // exception reply
        if (w_addr >= 0 && !refused) apply_writes(*map_, fc, w_addr, w_count);
        if (n > 0) {
            const auto len = static_cast<std::size_t>(n);
            write_all(fd, buf, f.truncated_reply ? len / 2 : len);
        }
        return true;
    };

    // A received request: answered now, or held until its latency is over.
    auto handle = [&](int fd, std::optional<Pending>& slot, Pending&& p) -> bool {
        if (p.faults.latency_s > 0 && Clock::now() < due(p)) {
            slot = std::move(p);
            return true;
        }
        return answer(fd, p);
    };

    // Refusals are logged at most once a second (a flood must not flood stderr).
    auto refuse = [&](int fd, const std::string& why) {
        ::close(fd);
        ++refused_;
        const auto now = Clock::now();
        ++I.refused_unlogged;
        if (now - I.refused_logged_at >= std::chrono::seconds(1)) {
            std::fprintf(stderr, "sim: %s at %s: refused %llu client connection(s): %s\n", name_.c_str(),
                         address().c_str(), static_cast<unsigned long long>(I.refused_unlogged), why.c_str());
            std::fflush(stderr);
            I.refused_unlogged = 0;
            I.refused_logged_at = now;
        }
    };

    auto accept_one = [&] {
        const int c = ::accept4(I.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
            // Out of descriptors (EMFILE/ENFILE): the listening socket stays
            // readable; wait a little instead of spinning on it.
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                I.accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
            return;
        }
        if (static_cast<int>(I.clients.size()) >= opt_.max_clients) {
            refuse(c, fmt::format("{} clients connected, the limit of this server", I.clients.size()));
            return;
        }
        const int low = instruments::fd_below_setsize(c);
        if (low < 0) {
            refuse(c, fmt::format("no descriptor below FD_SETSIZE ({}) is free for it "
                                  "(libmodbus waits with select())",
                                  FD_SETSIZE));
            return;
        }
        const int one = 1;
        ::setsockopt(low, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        I.clients.push_back({low, Clock::now(), std::nullopt, std::nullopt});
        ++accepted_;
    };

    std::vector<pollfd> fds;
    std::optional<Pending> line_pending;  // RTU
    while (!stop_) {
        // Wake up for the first held reply that falls due (or every 100 ms).
        auto now = Clock::now();
        auto wake_at = now + std::chrono::milliseconds(100);
        auto consider = [&](const std::optional<Pending>& p) {
            if (p) wake_at = std::min(wake_at, due(*p));
        };
        consider(line_pending);
        for (const auto& c : I.clients) {
            consider(c.pending);
            // Half a request: look again shortly (poll() would report it readable at once).
            if (c.partial_since) wake_at = std::min(wake_at, now + std::chrono::milliseconds(10));
        }
        const auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(
            std::max(Clock::duration::zero(), wake_at - now));

        fds.clear();
        fds.push_back({I.wake[0], POLLIN, 0});
        const bool listen_paused = !I.rtu && now < I.accept_paused_until;
        fds.push_back({I.rtu ? I.line_fd : I.listen_fd,
                       static_cast<short>((I.rtu && line_pending) || listen_paused ? 0 : POLLIN), 0});
        // A client with a held request is not read until it is answered; one
        // with half a request is looked at on the 10 ms tick.
        for (const auto& c : I.clients)
            fds.push_back({c.fd, static_cast<short>(c.pending || c.partial_since ? 0 : POLLIN), 0});
        const int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait_ms.count()));
        if (n < 0 && errno != EINTR) break;
        if (stop_ || (fds[0].revents & POLLIN)) break;

        if (I.rtu) {
            if (line_pending && Clock::now() >= due(*line_pending)) {
                answer(I.line_fd, *line_pending);
                line_pending.reset();
            } else if (!line_pending && (fds[1].revents & POLLIN)) {
                Pending p;
                if (receive(I.line_fd, p) == Got::request) handle(I.line_fd, line_pending, std::move(p));
            }
            continue;
        }
        // Clients first (indices shift when one is dropped: walk backwards).
        now = Clock::now();
        for (std::size_t k = I.clients.size(); k-- > 0;) {
            auto& c = I.clients[k];
            const short ev = fds[k + 2].revents;
            if (c.pending) {
                if (ev & (POLLHUP | POLLERR)) {
                    drop(k);
                } else if (now >= due(*c.pending)) {
                    const Pending p = std::move(*c.pending);
                    c.pending.reset();
                    c.last = Clock::now();
                    if (!answer(c.fd, p)) drop(k);
                }
                continue;
            }
            if (c.partial_since || (ev & (POLLIN | POLLHUP | POLLERR))) {
                // TCP: read only whole requests, so that a client sending half
                // a request cannot hold up the others (modbus_receive() would
                // wait for the rest); one that stalls mid-request is dropped
                // after kStalledRequest.
                if (!(ev & (POLLHUP | POLLERR)) && !tcp_request_buffered(c.fd)) {
                    if (!c.partial_since) c.partial_since = now;
                    if (now - *c.partial_since > kStalledRequest) drop(k);
                    continue;
                }
                c.partial_since.reset();
                c.last = Clock::now();
                Pending p;
                const Got got = receive(c.fd, p);
                if (got == Got::gone || (got == Got::request && !handle(c.fd, c.pending, std::move(p))))
                    drop(k);
            }
        }
        if (fds[1].revents & POLLIN) accept_one();
        // The indication timeout: idle clients are dropped.
        now = Clock::now();
        for (std::size_t k = I.clients.size(); k-- > 0;)
            if (!I.clients[k].pending &&
                std::chrono::duration<double>(now - I.clients[k].last).count() > opt_.idle_timeout_s)
                drop(k);
    }
}

}  // namespace eol::sim
