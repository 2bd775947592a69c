// tests/support/process.hpp — child processes for the tests that drive other
// programs (the real `eolstation`, a pymodbus server, socat): a free loopback
// port for a child to listen on, a child started with posix_spawnp whose
// stdin / stdout / stderr may be pipes, and a run to completion that collects
// stdout and stderr apart.
//
// Lifecycle: Process starts the child in its constructor. terminate() signals
// it and waits (bounded) for its exit code; wait() waits without bound. The
// destructor sends the stop signal (SIGTERM unless Options say otherwise) to a
// child still running, reaps it and closes the pipes. run_process() blocks
// until the child ends, or kills it (SIGKILL) at its deadline.
// Errors: doctest REQUIRE failures (no socket, no pipe, the program cannot be
// started, a write to the child's stdin fails). Exit codes follow the shell:
// 0–255 from exit(), 128 + N when killed by signal N (signaled() tells the
// two apart); terminate() gives -1 when the child did not end in time.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace eol::test {

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
/// released), for a child process to listen on.
inline std::uint16_t free_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(s >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ::close(s);
    return ntohs(a.sin_port);
}

/// A child process (argv[0] is looked up in PATH unless it has a slash).
class Process {
public:
    /// What becomes of the child's stdout / stderr.
    enum class Stream { inherit, pipe, discard };
    struct Options {
        bool pipe_stdin = false;          // write to it with send_line()
        Stream out = Stream::pipe;        // read it with read_line() or out_fd()
        Stream err = Stream::pipe;        // read it with err_fd()
        int stop_signal = SIGTERM;        // what the destructor sends a running child
    };

    explicit Process(const std::vector<std::string>& argv) : Process(argv, Options{}) {}
    Process(const std::vector<std::string>& argv, const Options& opt) : stop_signal_(opt.stop_signal) {
        REQUIRE(!argv.empty());
        int pi[2] = {-1, -1}, po[2] = {-1, -1}, pe[2] = {-1, -1};
        // O_CLOEXEC: only the dup2'ed copies reach this child, none reaches another.
        if (opt.pipe_stdin) REQUIRE(::pipe2(pi, O_CLOEXEC) == 0);
        if (opt.out == Stream::pipe) REQUIRE(::pipe2(po, O_CLOEXEC) == 0);
        if (opt.err == Stream::pipe) REQUIRE(::pipe2(pe, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        if (opt.pipe_stdin) posix_spawn_file_actions_adddup2(&fa, pi[0], 0);
        redirect(fa, opt.out, po[1], 1);
        redirect(fa, opt.err, pe[1], 2);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        const int rc = ::posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        for (const int fd : {pi[0], po[1], pe[1]})
            if (fd >= 0) ::close(fd);
        in_ = pi[1];
        out_ = po[0];
        err_ = pe[0];
        if (rc != 0) pid_ = -1;
        REQUIRE_MESSAGE(rc == 0, "cannot run " << argv[0]);
    }
    ~Process() {
        if (pid_ > 0) {
            ::kill(pid_, stop_signal_);
            ::waitpid(pid_, nullptr, 0);
        }
        for (const int fd : {in_, out_, err_})
            if (fd >= 0) ::close(fd);
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    int out_fd() const { return out_; }  // -1 unless stdout is a pipe
    int err_fd() const { return err_; }  // -1 unless stderr is a pipe

    /// Whether the child has not ended yet (reaps it when it has).
    bool running() {
        if (pid_ <= 0) return false;
        if (::waitpid(pid_, &status_, WNOHANG) == 0) return true;
        pid_ = -1;
        return false;
    }

    /// Writes `text` and a newline to the child's stdin (Options::pipe_stdin).
    void send_line(const std::string& text) {
        REQUIRE(in_ >= 0);
        const std::string l = text + "\n";
        REQUIRE(::write(in_, l.data(), l.size()) == static_cast<ssize_t>(l.size()));
    }

    /// The next line of the child's stdout without its newline, waiting at
    /// most `timeout_s`; empty when none came (or stdout ended).
    std::string read_line(double timeout_s = 30) {
        REQUIRE(out_ >= 0);
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
        while (buf_.find('\n') == std::string::npos) {
            if (std::chrono::steady_clock::now() > deadline) return {};
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char b[1024];
            const ssize_t n = ::read(out_, b, sizeof b);
            if (n <= 0) return {};
            buf_.append(b, static_cast<std::size_t>(n));
        }
        const auto nl = buf_.find('\n');
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
    }

    /// Sends `sig`, then waits at most `timeout_s` for the exit code; -1 when
    /// the child is still running then (the destructor stops it).
    int terminate(int sig = SIGTERM, double timeout_s = 20) {
        if (pid_ <= 0) return exit_code();
        ::kill(pid_, sig);
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
        while (::waitpid(pid_, &status_, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) return -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        pid_ = -1;
        return exit_code();
    }

    /// Waits for the child to end; its exit code.
    int wait() {
        if (pid_ > 0) {
            ::waitpid(pid_, &status_, 0);
            pid_ = -1;
        }
        return exit_code();
    }

    /// After the child ended: whether a signal killed it.
    bool signaled() const { return WIFSIGNALED(status_); }

private:
    static void redirect(posix_spawn_file_actions_t& fa, Stream s, int pipe_end, int fd) {
        if (s == Stream::pipe) posix_spawn_file_actions_adddup2(&fa, pipe_end, fd);
        if (s == Stream::discard) posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_WRONLY, 0);
    }
    int exit_code() const { return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_); }

    pid_t pid_ = -1;
    int status_ = 0;
    int stop_signal_ = SIGTERM;
    int in_ = -1, out_ = -1, err_ = -1;
    std::string buf_;  // stdout read past the last line returned
};

struct ProcessResult {
    int exit = -1;          // exit code, 128 + N when killed by signal N
    bool signaled = false;  // killed by a signal (also at the deadline)
    std::string out, err;
};

/// Runs `argv` to completion (killed after `timeout_s`) and collects stdout
/// and stderr.
inline ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s = 120) {
    Process c(argv);
    ProcessResult r;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
    pollfd p[2] = {{c.out_fd(), POLLIN, 0}, {c.err_fd(), POLLIN, 0}};
    std::string* into[2] = {&r.out, &r.err};
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        ::poll(p, 2, 200);
        char buf[4096];
        for (int k = 0; k < 2; ++k) {
            if (p[k].fd < 0 || !(p[k].revents & (POLLIN | POLLHUP))) continue;
            const ssize_t n = ::read(p[k].fd, buf, sizeof buf);
            if (n <= 0) p[k].fd = -1;  // poll skips it from now on
            else into[k]->append(buf, static_cast<std::size_t>(n));
        }
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(c.pid(), SIGKILL);
            break;
        }
    }
    r.exit = c.wait();
    r.signaled = c.signaled();
    return r;
}

}  // namespace eol::test
