// tests/support/cli_test.hpp — helpers the test suites share: a temporary
// directory removed at scope exit, and a run of the real `eolstation`
// binary (EOL_CLI) with its exit code and combined output.
//
// Lifecycle: TempDir creates a fresh, empty directory under the system's
// temporary directory (unique per process and instance) and removes it with
// everything in it when destroyed. run_cli() blocks until the command ends.
// Errors: doctest REQUIRE failures (cannot start the command); a command
// killed by a signal reports code -1.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

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
};

struct Run {
    int code = -1;    // exit status; -1 when killed by a signal
    std::string out;  // stdout and stderr together
};

/// Runs `eolstation ARGS 2>&1` through the shell.
inline Run run_cli(const std::string& args) {
    const std::string cmd = std::string(EOL_CLI) + " " + args + " 2>&1";
    std::FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    Run r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace eol::test
