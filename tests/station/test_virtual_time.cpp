// VirtualTime: participants take turns, time jumps to the earliest wake-up,
// and a run whose participants do work on other threads (driver lanes)
// repeats exactly.
#include <doctest/doctest.h>

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/steps.hpp"
#include "eol/station/virtual_time.hpp"

namespace asio = boost::asio;
using eol::station::VirtualTime;
using eol::station::VirtualTurn;

namespace {

struct Log {
    std::vector<std::string> lines;
    void add(const std::string& who, double t) { lines.push_back(who + "@" + std::to_string(t)); }
};

asio::awaitable<void> sleeper(VirtualTime& vt, VirtualTurn turn, std::string name, std::vector<double> sleeps,
                              Log& log) {
    co_await vt.turn(turn.ticket());
    log.add(name + " start", vt.now_s());
    for (double s : sleeps) {
        co_await vt.sleep_s(turn.ticket(), s);
        log.add(name, vt.now_s());
    }
}

}  // namespace

TEST_CASE("virtual time: the earliest wake-up runs next, ties in order of arrival, time jumps") {
    asio::io_context io;
    std::vector<std::pair<double, double>> advances;
    VirtualTime vt(1000.0, 0.0, [&](double now, double old) { advances.emplace_back(old, now); });
    Log log;
    vt.pause();
    asio::co_spawn(io, sleeper(vt, VirtualTurn(&vt, vt.join()), "a", {5, 5}, log), asio::detached);
    asio::co_spawn(io, sleeper(vt, VirtualTurn(&vt, vt.join()), "b", {3, 7}, log), asio::detached);
    asio::co_spawn(io, sleeper(vt, VirtualTurn(&vt, vt.join()), "c", {10}, log), asio::detached);
    CHECK(vt.participants() == 3);
    vt.resume();
    io.run();
    const std::vector<std::string> want = {"a start@0.000000", "b start@0.000000", "c start@0.000000",
                                           "b@3.000000",       "a@5.000000",
                                           // due at 10: in the order they went to sleep (c at 0, b at 3, a at 5)
                                           "c@10.000000",      "b@10.000000",      "a@10.000000"};
    CHECK(log.lines == want);
    CHECK(vt.participants() == 0);
    CHECK(vt.now_s() == 10.0);
    CHECK(vt.unix_now_s() == 1010.0);
    CHECK(advances == std::vector<std::pair<double, double>>{{0, 3}, {3, 5}, {5, 10}});
}

TEST_CASE("virtual time: paused, nobody runs and time stands still, wake brings a sleeper to now") {
    asio::io_context io;
    VirtualTime vt(0.0);
    Log log;
    auto ta = vt.join();  // not paused: the baton is a's at once
    auto tb = vt.join();
    asio::co_spawn(io, sleeper(vt, VirtualTurn(&vt, ta), "a", {100}, log), asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            VirtualTurn turn(&vt, tb);
            co_await vt.turn(tb);
            log.add("b start", vt.now_s());
            co_await vt.sleep_s(tb, 1);  // a sleeps until 100: b runs at 1
            log.add("b", vt.now_s());
            vt.wake(ta);                 // a's turn comes at 1, after b sleeps again
            co_await vt.sleep_s(tb, 0);
            log.add("b again", vt.now_s());
        },
        asio::detached);
    io.run();
    CHECK(log.lines == std::vector<std::string>{"a start@0.000000", "b start@0.000000", "b@1.000000", "a@1.000000",
                                                "b again@1.000000"});
    // A participant that sleeps without holding the baton is a programming error.
    auto tc = vt.join();
    auto td = vt.join();
    asio::io_context io2;
    bool refused = false;
    asio::co_spawn(
        io2,
        [&]() -> asio::awaitable<void> {
            try {
                co_await vt.sleep_s(td, 1);
            } catch (const std::logic_error&) {
                refused = true;
            }
        },
        asio::detached);
    io2.run();
    CHECK(refused);
    vt.leave(tc);
    vt.leave(td);
    CHECK(vt.participants() == 0);
    // Paused: a joined participant does not get the baton until resumed.
    vt.pause();
    auto te = vt.join();
    asio::io_context io3;
    bool ran = false;
    asio::co_spawn(
        io3,
        [&]() -> asio::awaitable<void> {
            VirtualTurn turn(&vt, te);
            co_await vt.turn(te);
            ran = true;
        },
        asio::detached);
    io3.run_for(std::chrono::milliseconds(50));
    CHECK_FALSE(ran);
    vt.resume();
    io3.restart();
    io3.run();
    CHECK(ran);
}

TEST_CASE("virtual time: participants doing work on a driver pool repeat their order and times exactly") {
    // Eight participants, each a chain of "commands" on two shared lanes (a
    // pool of 3 threads, random work durations) and sleeps; the log of who
    // ran at which station time must be the same in every run.
    auto run_once = [](unsigned work_seed) {
        asio::io_context io;
        asio::thread_pool pool(3);
        eol::station::Lane lane_a = asio::make_strand(pool.get_executor());
        eol::station::Lane lane_b = asio::make_strand(pool.get_executor());
        VirtualTime vt(0.0);
        Log log;
        std::mt19937 jitter(work_seed);  // wall-clock jitter differs per run, the schedule must not
        std::vector<int> work_us(64);
        for (auto& w : work_us) w = static_cast<int>(jitter() % 400);
        vt.pause();
        for (int p = 0; p < 8; ++p)
            asio::co_spawn(
                io,
                [&, p, turn = VirtualTurn(&vt, vt.join())]() -> asio::awaitable<void> {
                    co_await vt.turn(turn.ticket());
                    for (int k = 0; k < 6; ++k) {
                        const int us = work_us[static_cast<std::size_t>((p * 7 + k) % 64)];
                        const eol::station::Lane* lane = (p + k) % 2 ? &lane_a : &lane_b;
                        co_await eol::station::on_lane(
                            lane, [us] { std::this_thread::sleep_for(std::chrono::microseconds(us)); });
                        log.add("p" + std::to_string(p), vt.now_s());
                        co_await vt.sleep_s(turn.ticket(), 0.1 * ((p + k) % 3));
                    }
                },
                asio::detached);
        vt.resume();
        io.run();
        pool.join();
        return log.lines;
    };
    const auto first = run_once(1);
    CHECK(first.size() == 48);
    CHECK(run_once(2) == first);
    CHECK(run_once(3) == first);
}
