// Private to eol::instruments: newline-framed reads and writes with a
// deadline on any Asio stream (tcp::socket, serial_port), shared by the TCP
// and serial transports. Each call runs the transport's own io_context until
// the operation or its timer completes, or — on a shared io_context that
// another thread runs (TransportOptions::io_context) — starts the operation
// and its timer there and waits; the timer cancels the operation. On a
// shared io_context a socket's reads wait on the calling thread instead
// (LineIo::wait_here) and a short write is sent from it.
#pragma once

// <utility> first: Boost 1.74 asio/awaitable.hpp uses std::exchange without it.
#include <utility>

// Asio 1.74 trips -Wnull-dereference at -O3 inside its own scheduler code
// (a middle-end warning the system-header rule does not catch).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio.hpp>
#pragma GCC diagnostic pop
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "eol/instruments/errors.hpp"

namespace eol::instruments::detail {

namespace asio = boost::asio;
using boost::system::error_code;

inline std::chrono::steady_clock::duration seconds(double s) {
    if (!(s > 0)) s = 0.001;
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(s));
}

/// Printable, quoted, shortened view of bytes for error messages.
inline std::string preview(std::string_view s, std::size_t max = 60) {
    std::string out = "'";
    for (std::size_t k = 0; k < s.size() && k < max; ++k) {
        const auto c = static_cast<unsigned char>(s[k]);
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c < 0x20 || c >= 0x7f) {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += static_cast<char>(c);
    }
    out += "'";
    if (s.size() > max) out += "… (" + std::to_string(s.size()) + " bytes)";
    return out;
}

/// Runs one asynchronous operation with a deadline. `start(done)` must start
/// the operation and call done(ec, bytes) on completion; `cancel()` aborts it.
/// Returns {ec, bytes, timed_out}.
struct Outcome {
    error_code ec;
    std::size_t bytes = 0;
    bool timed_out = false;
};

/// The io_context a transport's I/O runs on: its own (run inside each call)
/// or a shared one another thread runs.
struct IoHome {
    explicit IoHome(asio::io_context* shared_io)
        : own(shared_io ? nullptr : std::make_unique<asio::io_context>()), io(shared_io ? *shared_io : *own) {}
    bool shared() const { return !own; }
    /// Before any I/O: a shared io_context's own thread must not call (it
    /// would wait on itself; a command sent before the refusal would leave
    /// its reply for the next question).
    void check_caller() const {
        if (shared() && io.get_executor().running_in_this_thread())
            throw std::logic_error("an instrument transport on a shared io_context was called from that "
                                   "io_context's own thread: it would wait on itself");
    }
    std::unique_ptr<asio::io_context> own;
    asio::io_context& io;
};

/// On a shared io_context: the operation and its timer start on the
/// io_context's thread (so that they and the cancel never race), this thread
/// waits until both handlers have run. The handlers share `State` with the
/// caller, so a caller that gives up on a stopped io_context leaves them
/// nothing dangling.
template <class Start, class Cancel>
Outcome run_shared_with_deadline(asio::io_context& io, asio::steady_timer& timer, double timeout_s,
                                 Start&& start, Cancel&& cancel) {
    struct State {
        std::mutex m;
        std::condition_variable cv;
        Outcome out;
        bool finished = false;
        int pending = 3;  // the start, the operation's handler and the timer's
        int running = 0;  // handlers on the io_context's thread right now
    };
    auto st = std::make_shared<State>();
    // Every handler runs between enter() and leave(): the caller gives up on
    // a stopped io_context only while none runs (they use its lambdas).
    auto enter = [st] {
        std::lock_guard lk(st->m);
        ++st->running;
    };
    auto leave = [st] {
        std::lock_guard lk(st->m);
        --st->running;
        --st->pending;
        st->cv.notify_all();
    };
    asio::post(io, [&timer, &start, &cancel, timeout_s, st, enter, leave] {
        enter();
        timer.expires_after(seconds(timeout_s));
        timer.async_wait([st, enter, leave, &cancel](const error_code& ec) {
            enter();
            if (!ec && !st->finished) {
                st->out.timed_out = true;
                cancel();
            }
            leave();
        });
        start([st, enter, leave, &timer](const error_code& ec, std::size_t n) {
            enter();
            st->finished = true;
            st->out.ec = ec;
            st->out.bytes = n;
            timer.cancel();
            leave();
        });
        leave();
    });
    std::unique_lock lk(st->m);
    while (!st->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return st->pending == 0; })) {
        if (io.stopped() && st->running == 0) {
            Outcome gone;
            gone.ec = asio::error::shut_down;
            return gone;
        }
    }
    return st->out;
}

template <class Start, class Cancel>
Outcome run_with_deadline(IoHome& home, asio::steady_timer& timer, double timeout_s, Start&& start,
                          Cancel&& cancel) {
    if (home.shared()) {
        home.check_caller();
        return run_shared_with_deadline(home.io, timer, timeout_s, start, cancel);
    }
    asio::io_context& io = home.io;
    Outcome out;
    bool finished = false;
    timer.expires_after(seconds(timeout_s));
    timer.async_wait([&](const error_code& ec) {
        if (!ec && !finished) {
            out.timed_out = true;
            cancel();
        }
    });
    start([&](const error_code& ec, std::size_t n) {
        finished = true;
        out.ec = ec;
        out.bytes = n;
        timer.cancel();
    });
    io.restart();
    io.run();
    return out;
}

/// Framed I/O over `Stream`. Throws ConnectionError / TimeoutError /
/// ProtocolError with instrument() = where, command() = operation.
template <class Stream>
class LineIo {
public:
    LineIo(IoHome& home, Stream& stream, std::size_t max_line)
        : home_(home), stream_(stream), timer_(home.io), buf_(max_line) {}

    void clear() { buf_.consume(buf_.size()); }

    void write(const std::string& where, std::string_view data, double timeout_s) {
        home_.check_caller();  // before the fast path's send (reads check in run_with_deadline)
        // Fast path for sockets: a short command almost always fits the
        // kernel's send buffer, so try it without blocking first; only what
        // does not fit goes through the asynchronous write with its deadline.
        if constexpr (requires(Stream& s, error_code& ec) { s.non_blocking(true, ec); }) {
            error_code ec;
            if (!stream_.non_blocking()) stream_.non_blocking(true, ec);
            while (!ec && !data.empty()) {
                const std::size_t n = stream_.write_some(asio::buffer(data.data(), data.size()), ec);
                data.remove_prefix(n);
            }
            if (data.empty()) return;
            if (ec != asio::error::would_block && ec != asio::error::try_again)
                throw ConnectionError(where, "write", ec.message());
        }
        const Outcome o = run_with_deadline(
            home_, timer_, timeout_s,
            [&](auto done) {
                asio::async_write(stream_, asio::buffer(data.data(), data.size()),
                                  [done](const error_code& ec, std::size_t n) { done(ec, n); });
            },
            [&] { cancel(); });
        if (o.timed_out)
            throw TimeoutError(where, "write",
                               "could not send within " + fmt_s(timeout_s) + " s");
        if (o.ec) throw ConnectionError(where, "write", o.ec.message());
    }

    std::string read_line(const std::string& where, double timeout_s) {
        const Outcome o = home_.shared() && kPollable
            ? wait_here(timeout_s, [this] { return line_end(); })
            : run_with_deadline(
                  home_, timer_, timeout_s,
                  [&](auto done) {
                      asio::async_read_until(stream_, buf_, '\n',
                                             [done](const error_code& ec, std::size_t n) { done(ec, n); });
                  },
                  [&] { cancel(); });
        if (o.timed_out) {
            const std::string partial = peek();
            throw TimeoutError(where, "read",
                               partial.empty()
                                   ? "no reply within " + fmt_s(timeout_s) + " s"
                                   : "no line terminator within " + fmt_s(timeout_s) +
                                         " s; got " + preview(partial));
        }
        if (o.ec == asio::error::not_found)
            throw ProtocolError(where, "read",
                                "reply line longer than " + std::to_string(buf_.max_size()) +
                                    " bytes");
        if (o.ec == asio::error::eof)
            throw ConnectionError(where, "read", "connection closed by the peer" + partial_note());
        if (o.ec) throw ConnectionError(where, "read", o.ec.message() + partial_note());
        std::string line(asio::buffers_begin(buf_.data()),
                         asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(o.bytes));
        buf_.consume(o.bytes);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        return line;
    }

    std::string read_exact(const std::string& where, std::size_t n, double timeout_s) {
        if (buf_.size() < n) {
            const std::size_t need = n - buf_.size();
            if (n > buf_.max_size())
                throw ProtocolError(where, "read",
                                    "block of " + std::to_string(n) + " bytes exceeds the limit");
            const Outcome o = home_.shared() && kPollable
                ? wait_here(timeout_s, [this, n] { return buf_.size() >= n ? n : std::size_t{0}; })
                : run_with_deadline(
                      home_, timer_, timeout_s,
                      [&](auto done) {
                          // At least what is missing, and whatever else has come (the
                          // rest of a block and its newline): a reply read in pieces
                          // of 1, 1, n digits, the block and the end would cost a
                          // round trip through the I/O loop each.
                          asio::async_read(stream_, buf_, asio::transfer_at_least(need),
                                           [done](const error_code& ec, std::size_t k) { done(ec, k); });
                      },
                      [&] { cancel(); });
            if (o.timed_out)
                throw TimeoutError(where, "read",
                                   "expected " + std::to_string(n) + " bytes within " +
                                       fmt_s(timeout_s) + " s; got " +
                                       std::to_string(buf_.size()));
            if (o.ec == asio::error::eof)
                throw ConnectionError(where, "read",
                                      "connection closed by the peer after " +
                                          std::to_string(buf_.size()) + " of " +
                                          std::to_string(n) + " bytes");
            if (o.ec) throw ConnectionError(where, "read", o.ec.message());
        }
        std::string out(asio::buffers_begin(buf_.data()),
                        asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n));
        buf_.consume(n);
        return out;
    }

private:
    /// A socket (not a serial port) can be waited on here with poll().
    static constexpr bool kPollable =
        requires(Stream& s, error_code& ec) { s.non_blocking(true, ec); s.native_handle(); };

    /// The length of the first line in the buffer, its newline included; 0
    /// when no newline has come.
    std::size_t line_end() const {
        const auto b = asio::buffers_begin(buf_.data()), e = asio::buffers_end(buf_.data());
        const auto nl = std::find(b, e, '\n');
        return nl == e ? 0 : static_cast<std::size_t>(nl - b) + 1;
    }

    /// On a shared io_context, a reply is awaited on the calling thread (a
    /// driver lane): non-blocking reads of the socket and poll() on its
    /// descriptor until `ready()` says how many bytes make the reply, the
    /// deadline passes or the peer fails. Going through the io_context's
    /// thread instead hands each read to that thread and its completion back,
    /// two thread wake-ups a reply, which cost more than the exchange itself
    /// on a VM (docs/controller.md, session 19). One transport's operations
    /// never overlap (its instrument's lane), so no asynchronous operation is
    /// pending on the socket meanwhile; connect, name resolution and a write
    /// that does not fit the send buffer still run on the io_context. A
    /// stopped io_context (the station stopping) ends the wait within 0.1 s,
    /// as it ends a call waiting there. Outcome as run_with_deadline's:
    /// not_found when the buffer is full without a reply.
    template <class Ready>
    Outcome wait_here(double timeout_s, Ready&& ready) {
        if constexpr (!kPollable) {
            throw std::logic_error("LineIo::wait_here on a stream without poll()");
        } else {
            return wait_here_pollable(timeout_s, ready);
        }
    }
    template <class Ready>
    Outcome wait_here_pollable(double timeout_s, Ready& ready) {
        home_.check_caller();
        Outcome out;
        const auto deadline = std::chrono::steady_clock::now() + seconds(timeout_s);
        error_code ec;
        if (!stream_.non_blocking()) stream_.non_blocking(true, ec);
        if (ec) {
            out.ec = ec;
            return out;
        }
        for (;;) {
            if (const std::size_t n = ready()) {
                out.bytes = n;
                return out;
            }
            if (buf_.size() >= buf_.max_size()) {
                out.ec = asio::error::not_found;
                return out;
            }
            const std::size_t room = std::min<std::size_t>(65536, buf_.max_size() - buf_.size());
            const std::size_t k = stream_.read_some(buf_.prepare(room), ec);
            if (!ec) {
                buf_.commit(k);
                continue;
            }
            if (ec != asio::error::would_block && ec != asio::error::try_again) {
                out.ec = ec;
                return out;
            }
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) {
                out.timed_out = true;
                return out;
            }
            if (home_.io.stopped()) {
                out.ec = asio::error::shut_down;
                return out;
            }
            const auto left_ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
            pollfd p{stream_.native_handle(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::clamp<long long>(left_ms, 1, 100))) < 0 && errno != EINTR) {
                out.ec = error_code(errno, boost::system::system_category());
                return out;
            }
        }
    }

    void cancel() {
        error_code ignored;
        stream_.cancel(ignored);
    }
    std::string peek() const {
        return std::string(asio::buffers_begin(buf_.data()), asio::buffers_end(buf_.data()));
    }
    std::string partial_note() const {
        const std::string p = peek();
        return p.empty() ? std::string() : "; got " + preview(p) + " before that";
    }
    static std::string fmt_s(double s) {
        std::string t = std::to_string(s);
        while (t.size() > 1 && t.back() == '0') t.pop_back();
        if (!t.empty() && t.back() == '.') t.pop_back();
        return t;
    }

    IoHome& home_;
    Stream& stream_;
    asio::steady_timer timer_;
    asio::streambuf buf_;
};

// The LineTransport operations over a transport's Impl, the same for TCP and
// serial. Impl has: open() (reopens as needed), close(), bool connected,
// where(), and lines (a LineIo). Any failure leaves the stream in an unknown
// state: it is closed, so that the next operation starts on a fresh one.
template <class Impl, class F>
auto guarded(Impl& impl, F&& f) {
    try {
        return f();
    } catch (const InstrumentError&) {
        impl.close();
        throw;
    }
}

template <class Impl>
void write_line(Impl& impl, std::string_view text, double timeout_s) {
    impl.open();
    std::string data;
    data.reserve(text.size() + 1);
    data.append(text);
    data.push_back('\n');
    guarded(impl, [&] { impl.lines.write(impl.where(), data, timeout_s); });
}

template <class Impl>
std::string read_line(Impl& impl, double timeout_s) {
    if (!impl.connected) throw ConnectionError(impl.where(), "read", "not connected");
    return guarded(impl, [&] { return impl.lines.read_line(impl.where(), timeout_s); });
}

template <class Impl>
std::string read_exact(Impl& impl, std::size_t n, double timeout_s) {
    if (!impl.connected) throw ConnectionError(impl.where(), "read", "not connected");
    return guarded(impl, [&] { return impl.lines.read_exact(impl.where(), n, timeout_s); });
}

}  // namespace eol::instruments::detail
