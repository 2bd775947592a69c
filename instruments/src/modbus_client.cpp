#include "eol/instruments/modbus_client.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <modbus/modbus.h>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/select_fd.hpp"
#include "eol/instruments/transport.hpp"

namespace eol::instruments {

std::string modbus_exception_name(int code) {
    switch (code) {
    case MODBUS_EXCEPTION_ILLEGAL_FUNCTION: return "illegal function";
    case MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS: return "illegal data address";
    case MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE: return "illegal data value";
    case MODBUS_EXCEPTION_SLAVE_OR_SERVER_FAILURE: return "server device failure";
    case MODBUS_EXCEPTION_ACKNOWLEDGE: return "acknowledge";
    case MODBUS_EXCEPTION_SLAVE_OR_SERVER_BUSY: return "server device busy";
    case MODBUS_EXCEPTION_NEGATIVE_ACKNOWLEDGE: return "negative acknowledge";
    case MODBUS_EXCEPTION_MEMORY_PARITY: return "memory parity error";
    case MODBUS_EXCEPTION_GATEWAY_PATH: return "gateway path unavailable";
    case MODBUS_EXCEPTION_GATEWAY_TARGET: return "gateway target device failed to respond";
    default: return fmt::format("exception {}", code);
    }
}

struct ModbusClient::Ctx {
    modbus_t* mb = nullptr;
    bool connected = false;
    ~Ctx() {
        if (mb) {
            if (connected) modbus_close(mb);
            modbus_free(mb);
        }
    }
};

ModbusClient::ModbusClient(std::string instrument, Address address, double timeout_s)
    : instrument_(std::move(instrument)), address_(std::move(address)), timeout_s_(timeout_s),
      ctx_(std::make_unique<Ctx>()) {
    if (address_.kind == Address::Kind::serial)
        throw ConnectionError(instrument_, "connect",
                              "address " + address_.to_string() +
                                  " is a SCPI serial line; Modbus needs tcp:// or rtu://");
    check_duration_s(timeout_s_, instrument_ + ": Modbus reply timeout");
}

ModbusClient::~ModbusClient() = default;

void ModbusClient::set_unit(int unit) {
    address_.unit = unit;
    if (ctx_->mb) modbus_set_slave(ctx_->mb, unit);
}

bool ModbusClient::connected() const { return ctx_->connected; }

namespace {
void split_timeout(double s, std::uint32_t& sec, std::uint32_t& usec) {
    const double whole = std::floor(s);
    sec = static_cast<std::uint32_t>(whole);
    usec = static_cast<std::uint32_t>(std::lround((s - whole) * 1e6));
    if (usec >= 1000000) {
        ++sec;
        usec -= 1000000;
    }
}
std::string fd_setsize_detail(int fd) {
    return fmt::format("descriptor {} is not below FD_SETSIZE ({}) and no lower one is free: this process "
                       "holds too many descriptors (libmodbus waits with select())",
                       fd, FD_SETSIZE);
}

// Connects a TCP socket to the address within timeout_s, waiting with
// poll() (libmodbus' own connect waits with select(), which aborts the
// process on a descriptor ≥ FD_SETSIZE); the socket is moved below
// FD_SETSIZE for libmodbus' receive path, non-blocking as libmodbus leaves
// its own, with TCP_NODELAY. Throws ConnectionError.
int tcp_connect(const std::string& instrument, const Address& a, double timeout_s) {
    const std::string what = "connect " + a.to_string();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(a.port);
    if (const int rc = ::getaddrinfo(a.host.c_str(), port.c_str(), &hints, &found); rc != 0)
        throw ConnectionError(instrument, what, "cannot resolve '" + a.host + "': " + ::gai_strerror(rc));
    const std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(found, ::freeaddrinfo);
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_s));
    std::string last = "no address";
    for (const addrinfo* ai = found; ai; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = std::strerror(errno);
            continue;
        }
        int err = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        while (err == EINPROGRESS || err == EINTR) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
            pollfd p{fd, POLLOUT, 0};
            const int n = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                err = ETIMEDOUT;
                break;
            }
            socklen_t len = sizeof err;
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
        if (err != 0) {
            ::close(fd);
            last = err == ETIMEDOUT ? fmt::format("no connection within {:.3f} s", timeout_s)
                                    : std::string(std::strerror(err));
            continue;
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        const int low = fd_below_setsize(fd);
        if (low < 0) {
            ::close(fd);
            throw ConnectionError(instrument, what, fd_setsize_detail(fd));
        }
        return low;
    }
    throw ConnectionError(instrument, what, last);
}

}  // namespace

void ModbusClient::connect() {
    close();
    if (!ctx_->mb) {
        if (address_.kind == Address::Kind::tcp) {
            const std::string port = std::to_string(address_.port);
            ctx_->mb = modbus_new_tcp_pi(address_.host.c_str(), port.c_str());
        } else {
            ctx_->mb = modbus_new_rtu(address_.device.c_str(), static_cast<int>(address_.baud),
                                      address_.parity, address_.data_bits, address_.stop_bits);
        }
        if (!ctx_->mb)
            throw ConnectionError(instrument_, "connect " + address_.to_string(),
                                  std::string("cannot create a Modbus context: ") +
                                      modbus_strerror(errno));
        modbus_set_error_recovery(ctx_->mb, MODBUS_ERROR_RECOVERY_NONE);
        std::uint32_t sec = 0, usec = 0;
        split_timeout(timeout_s_, sec, usec);
        modbus_set_response_timeout(ctx_->mb, sec, usec);
        split_timeout(std::min(timeout_s_, 0.5), sec, usec);
        modbus_set_byte_timeout(ctx_->mb, sec, usec);
    }
    modbus_set_slave(ctx_->mb, address_.unit);
    if (address_.kind == Address::Kind::tcp) {
        modbus_set_socket(ctx_->mb, tcp_connect(instrument_, address_, timeout_s_));
    } else {
        if (modbus_connect(ctx_->mb) == -1)
            throw ConnectionError(instrument_, "connect " + address_.to_string(), modbus_strerror(errno));
        const int fd = modbus_get_socket(ctx_->mb);
        const int low = fd_below_setsize(fd);
        if (low < 0) {
            modbus_close(ctx_->mb);
            throw ConnectionError(instrument_, "connect " + address_.to_string(), fd_setsize_detail(fd));
        }
        modbus_set_socket(ctx_->mb, low);
    }
    ctx_->connected = true;
}

void ModbusClient::close() {
    if (ctx_->mb && ctx_->connected) modbus_close(ctx_->mb);
    ctx_->connected = false;
}

template <class F>
void ModbusClient::transact(const std::string& what, F&& f) {
    bool fresh = false;  // connected for this request
    if (!ctx_->connected) {
        try {
            connect();
        } catch (const ConnectionError& e) {
            throw ConnectionError(instrument_, what, "(re)connect failed: " + e.detail());
        }
        fresh = true;
    }
    for (;;) {
        errno = 0;
        ++requests_;
        const int rc = f(ctx_->mb);
        if (rc != -1) return;
        const int err = errno;
        const std::string text = modbus_strerror(err);
        if (err > MODBUS_ENOBASE && err <= EMBXGTAR) {
            // An exception response: the device is there and said no.
            const int code = err - MODBUS_ENOBASE;
            throw DeviceError(instrument_, what,
                              fmt::format("Modbus exception {} ({})", code, modbus_exception_name(code)));
        }
        // Anything else leaves the line in an unknown state: a late or partial
        // reply must not be read as the answer to the next request.
        close();
        if (err == ETIMEDOUT)
            throw TimeoutError(instrument_, what,
                               fmt::format("no complete reply within {:.3f} s ({})", timeout_s_, text));
        if (err == EMBBADCRC || err == EMBBADDATA || err == EMBBADEXC || err == EMBUNKEXC ||
            err == EMBMDATA || err == EMBBADSLAVE)
            throw ProtocolError(instrument_, what, "malformed reply: " + text);
        if (fresh)
            throw ConnectionError(instrument_, what, fmt::format("connection lost: {}", text));
        // The peer closed or reset a connection opened before this request
        // (a device or gateway that drops idle clients): reconnect and send
        // it once more. Safe to repeat: reads, and writes of absolute values.
        try {
            connect();
        } catch (const ConnectionError& e) {
            throw ConnectionError(instrument_, what,
                                  fmt::format("connection lost ({}); reconnect failed: {}", text, e.detail()));
        }
        fresh = true;
    }
}

namespace {
std::string describe(int fc, RegTable t, int start, int count) {
    return fmt::format("FC{:02d} {} {} ×{}", fc, to_string(t), start, count);
}
}  // namespace

std::vector<std::uint16_t> ModbusClient::read_registers(RegTable table, int start, int count) {
    if (is_bit_table(table)) throw std::invalid_argument("read_registers needs a register table");
    if (count < 1 || count > MODBUS_MAX_READ_REGISTERS || start < 0 || start + count > 65536)
        throw std::invalid_argument(fmt::format("bad register range {} ×{}", start, count));
    const std::string what = describe(read_function_code(table), table, start, count);
    std::vector<std::uint16_t> out(static_cast<std::size_t>(count));
    int got = 0;
    transact(what, [&](modbus_t* mb) {
        got = table == RegTable::holding ? modbus_read_registers(mb, start, count, out.data())
                                         : modbus_read_input_registers(mb, start, count, out.data());
        return got;
    });
    if (got != count) {
        close();
        throw ProtocolError(instrument_, what, fmt::format("{} registers in the reply", got));
    }
    return out;
}

std::vector<bool> ModbusClient::read_bits(RegTable table, int start, int count) {
    if (!is_bit_table(table)) throw std::invalid_argument("read_bits needs a bit table");
    if (count < 1 || count > MODBUS_MAX_READ_BITS || start < 0 || start + count > 65536)
        throw std::invalid_argument(fmt::format("bad bit range {} ×{}", start, count));
    const std::string what = describe(read_function_code(table), table, start, count);
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(count));
    int got = 0;
    transact(what, [&](modbus_t* mb) {
        got = table == RegTable::coils ? modbus_read_bits(mb, start, count, raw.data())
                                       : modbus_read_input_bits(mb, start, count, raw.data());
        return got;
    });
    if (got != count) {
        close();
        throw ProtocolError(instrument_, what, fmt::format("{} bits in the reply", got));
    }
    return std::vector<bool>(raw.begin(), raw.end());
}

void ModbusClient::write_register(int address, std::uint16_t value) {
    const std::string what = fmt::format("FC06 holding register {} = {}", address, value);
    transact(what, [&](modbus_t* mb) { return modbus_write_register(mb, address, value); });
}

void ModbusClient::write_registers(int start, const std::vector<std::uint16_t>& v) {
    if (v.empty() || v.size() > MODBUS_MAX_WRITE_REGISTERS)
        throw std::invalid_argument("write_registers: 1..123 registers");
    const std::string what = fmt::format("FC16 holding register {} ×{}", start, v.size());
    transact(what, [&](modbus_t* mb) {
        const int rc = modbus_write_registers(mb, start, static_cast<int>(v.size()), v.data());
        return rc;
    });
}

void ModbusClient::write_coil(int address, bool on) {
    const std::string what = fmt::format("FC05 coil {} = {}", address, on ? 1 : 0);
    transact(what, [&](modbus_t* mb) { return modbus_write_bit(mb, address, on ? 1 : 0); });
}

}  // namespace eol::instruments
