// both(): two awaitables at once, as the steps read a load and a
// thermocouple module at once — each on its own lane, both complete before
// it returns, also when one throws.
#include <doctest/doctest.h>

#include <utility>  // before Asio (Boost 1.74 uses std::exchange without it)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "eol/station/steps.hpp"

namespace {

namespace asio = boost::asio;
using eol::station::both;
using eol::station::Lane;
using eol::station::on_lane;

/// Two lanes (two instruments) and a loop thread that runs the coroutine, as
/// in the controller.
struct Rig {
    asio::thread_pool pool{2};
    Lane first{asio::make_strand(pool.get_executor())};
    Lane second{asio::make_strand(pool.get_executor())};
    asio::io_context loop;

    template <class T>
    T run(asio::awaitable<T> a) {
        std::promise<T> done;
        asio::co_spawn(loop, std::move(a), [&done](std::exception_ptr e, T v) {
            if (e) done.set_exception(e);
            else done.set_value(std::move(v));
        });
        auto f = done.get_future();
        loop.run();
        loop.restart();
        return f.get();
    }
    ~Rig() { pool.join(); }
};

/// Waits until `flag` is set or 5 s pass (so a test that fails cannot hang).
bool wait_for(const std::atomic<bool>& flag) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!flag.load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    return flag.load();
}

}  // namespace

TEST_CASE("steps: both() runs two lane calls at once and returns both results") {
    Rig rig;
    std::atomic<bool> first_started{false}, second_started{false};
    // Each call waits until the other has started: only calls that run at the
    // same time both see it (one after the other, the first would wait 5 s
    // and report false).
    auto a = on_lane(&rig.first, [&] {
        first_started = true;
        return wait_for(second_started) ? 1 : -1;
    });
    auto b = on_lane(&rig.second, [&] {
        second_started = true;
        return wait_for(first_started) ? std::string("two") : std::string("alone");
    });
    const auto [x, y] = rig.run(both(std::move(a), std::move(b)));
    CHECK(x == 1);
    CHECK(y == "two");
}

TEST_CASE("steps: both() waits for the call beside it when one throws, and rethrows") {
    SUBCASE("the awaited call throws while the other still runs") {
        Rig rig;
        std::atomic<bool> thrown{false}, beside_done{false};
        auto a = on_lane(&rig.first, [&]() -> int {
            thrown = true;
            throw std::runtime_error("load gone");
        });
        auto b = on_lane(&rig.second, [&] {
            wait_for(thrown);
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // still running when a has thrown
            beside_done = true;
            return 2.0;
        });
        CHECK_THROWS_WITH(rig.run(both(std::move(a), std::move(b))), "load gone");
        CHECK(beside_done.load());  // it had completed before both() returned
    }
    SUBCASE("the call beside throws") {
        Rig rig;
        auto a = on_lane(&rig.first, [] { return 1; });
        auto b = on_lane(&rig.second, []() -> double { throw std::runtime_error("thermocouple open"); });
        CHECK_THROWS_WITH(rig.run(both(std::move(a), std::move(b))), "thermocouple open");
    }
    SUBCASE("both throw: the awaited call's exception is the one rethrown") {
        Rig rig;
        auto a = on_lane(&rig.first, []() -> int { throw std::runtime_error("first"); });
        auto b = on_lane(&rig.second, []() -> int { throw std::runtime_error("second"); });
        CHECK_THROWS_WITH(rig.run(both(std::move(a), std::move(b))), "first");
    }
}
