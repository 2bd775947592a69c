// tests/support/http_client.hpp — a deliberately small HTTP/1.1 client over
// POSIX sockets for the panel tests: raw requests (so that malformed ones can
// be sent as they are), replies read to the end (the requests say
// Connection: close), and a Server-Sent Events reader.
//
// Lifecycle: every call opens its own connection to 127.0.0.1:PORT and closes
// it; EventReader keeps one open until destroyed.
// Errors: doctest REQUIRE failures when a socket cannot be made or connected;
// a reply that does not come within the timeout has status 0.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace eol::test {

/// A connected socket to 127.0.0.1:port (REQUIRE on failure).
inline int connect_loopback(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE_MESSAGE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "cannot connect to port " << port);
    return fd;
}

/// Writes all of `data` (false when the peer closed).
inline bool send_all(int fd, const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
        const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += static_cast<std::size_t>(n);
    }
    return true;
}

struct HttpReply {
    int status = 0;        // 0: no (complete) status line within the timeout
    std::string head;      // status line and headers
    std::string body;
    /// The value of a header (case-insensitive name), "" when absent.
    std::string header(const std::string& name) const {
        std::string lower_head, lower_name;
        for (char c : head) lower_head += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (char c : name) lower_name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto p = lower_head.find("\r\n" + lower_name + ":");
        if (p == std::string::npos) return {};
        const auto start = p + 3 + name.size();
        const auto end = head.find("\r\n", start);
        std::string v = head.substr(start, end - start);
        while (!v.empty() && v.front() == ' ') v.erase(0, 1);
        return v;
    }
};

/// Reads from `fd` until the peer closes or `timeout_s` passes.
inline std::string read_to_end(int fd, double timeout_s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        char buf[8192];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

inline HttpReply parse_reply(const std::string& raw) {
    HttpReply r;
    const auto end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos || raw.size() < 12) return r;
    r.status = std::stoi(raw.substr(9, 3));
    r.head = raw.substr(0, end);
    r.body = raw.substr(end + 4);
    return r;
}

/// Sends `request` as it is and reads the reply to the end.
inline HttpReply http_raw(std::uint16_t port, const std::string& request, double timeout_s = 20) {
    const int fd = connect_loopback(port);
    send_all(fd, request);
    const std::string raw = read_to_end(fd, timeout_s);
    ::close(fd);
    return parse_reply(raw);
}

/// A well-formed request (Connection: close); a body is sent as JSON.
inline HttpReply http(std::uint16_t port, const std::string& method, const std::string& target,
                      const std::string& body = {}, const std::string& extra_headers = {}, double timeout_s = 30) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
    if (method == "POST") req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    return http_raw(port, req, timeout_s);
}

/// The "name=value" of a Set-Cookie header, for a Cookie header.
inline std::string cookie_of(const HttpReply& r) {
    const std::string c = r.header("Set-Cookie");
    return c.substr(0, c.find(';'));
}

/// A Server-Sent Events client of GET `target`.
class EventReader {
public:
    EventReader(std::uint16_t port, const std::string& target = "/api/events") : fd_(connect_loopback(port)) {
        REQUIRE(send_all(fd_, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"));
    }
    ~EventReader() { ::close(fd_); }
    EventReader(const EventReader&) = delete;
    EventReader& operator=(const EventReader&) = delete;

    /// The response head (after the first next()).
    const std::string& head() const { return head_; }

    /// The next event (name, data), waiting at most `timeout_s`; comments skipped.
    std::optional<std::pair<std::string, std::string>> next(double timeout_s) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
            if (head_.empty()) {
                const auto e = buf_.find("\r\n\r\n");
                if (e != std::string::npos) {
                    head_ = buf_.substr(0, e);
                    buf_.erase(0, e + 4);
                }
            }
            if (!head_.empty()) {
                const auto e = buf_.find("\n\n");
                if (e != std::string::npos) {
                    const std::string block = buf_.substr(0, e);
                    buf_.erase(0, e + 2);
                    std::string name = "message", data;
                    std::size_t pos = 0;
                    bool any = false;
                    while (pos <= block.size()) {
                        const auto nl = block.find('\n', pos);
                        const std::string line = block.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
                        if (line.rfind("event: ", 0) == 0) name = line.substr(7), any = true;
                        else if (line.rfind("data: ", 0) == 0) data += line.substr(6), any = true;
                        if (nl == std::string::npos) break;
                        pos = nl + 1;
                    }
                    if (any && !data.empty()) return std::make_pair(name, data);
                    continue;  // a comment, retry:
                }
            }
            if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            char b[16384];
            const ssize_t n = ::recv(fd_, b, sizeof b, 0);
            if (n <= 0) return std::nullopt;
            buf_.append(b, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
    std::string buf_, head_;
};

}  // namespace eol::test
