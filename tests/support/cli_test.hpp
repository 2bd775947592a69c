// tests/support/cli_test.hpp — helpers the test suites share: a temporary
// directory removed at scope exit, a shell command run to completion with its
// exit code and output, and such a run of the real `eolstation` binary
// (EOL_CLI) with stdout and stderr together. (Children that run in the
// background, or whose stderr is wanted apart: support/process.hpp.)
//
// Lifecycle: TempDir creates a fresh, empty directory under the system's
// temporary directory (unique per process and instance) and removes it with
// everything in it when destroyed. run_command() and run_cli() block until
// the command ends.
// Errors: doctest REQUIRE failures (cannot start the command); a command
// killed by a signal reports code -1.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>

namespace eol::test {

struct TempDir {
    std::filesystem::path dir;
    TempDir() {
        static std::atomic<int> n{0};
        dir = std::filesystem::temp_directory_path() /
              ("eol_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path operator/(const char* name) const { return dir / name; }
    /// Writes `text` to the file `name` in the directory; its path.
    std::filesystem::path write(const std::string& name, const std::string& text) const {
        std::ofstream(dir / name) << text;
        return dir / name;
    }
};

struct Run {
    int code = -1;    // exit status; -1 when killed by a signal
    std::string out;  // stdout and stderr together
};

/// Runs the shell command CMD; returns what it writes to stdout (and stderr
/// where CMD redirects it there) and sets `exit_code`.
inline std::string run_command(const std::string& cmd, int& exit_code) {
    std::FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int st = ::pclose(p);
    exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/// Runs `eolstation ARGS 2>&1` through the shell.
inline Run run_cli(const std::string& args) {
    Run r;
    r.out = run_command(std::string(EOL_CLI) + " " + args + " 2>&1", r.code);
    return r;
}

/// The same run; its exit code, with the output in `out`.
inline int run_cli(const std::string& args, std::string& out) {
    Run r = run_cli(args);
    out = std::move(r.out);
    return r.code;
}

}  // namespace eol::test
