// tests/support/pty_pair.hpp — two linked pseudo-terminals for the
// serial-line tests, made by socat (`socat pty,raw,echo=0,link=A
// pty,raw,echo=0,link=B`): what is written to one end is read at the other.
//
// Lifecycle: the constructor starts socat and waits (at most 5 s) until both
// links `a` and `b` exist, in a fresh temporary directory; the destructor
// stops socat (SIGTERM, reaped) and removes the directory.
// Errors: doctest REQUIRE failures when socat cannot be started, exits early
// or makes no ptys within 5 s (tools/setup installs socat).
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "support/cli_test.hpp"
#include "support/process.hpp"

namespace eol::test {

struct PtyPair {
    TempDir tmp;
    std::filesystem::path a = tmp / "a", b = tmp / "b";  // the two ends

    PtyPair() : socat_({"socat", "pty,raw,echo=0,link=" + a.string(), "pty,raw,echo=0,link=" + b.string()},
                       inherit_stdio()) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!(std::filesystem::exists(a) && std::filesystem::exists(b))) {
            REQUIRE_MESSAGE(socat_.running(), "socat exited (is socat installed? tools/setup installs it)");
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "socat made no ptys in 5 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

private:
    static Process::Options inherit_stdio() {
        Process::Options o;
        o.out = o.err = Process::Stream::inherit;
        return o;
    }
    Process socat_;  // declared after tmp: stopped before the directory goes
};

}  // namespace eol::test
