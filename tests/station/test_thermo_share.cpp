// ThermoShare: a thermocouple module's reading shared by the positions and
// monitors that read it — a request is answered by a read begun after it
// was made (never older), so requests queued behind one another on a busy
// module's lane take one bus transaction; a read that throws is not kept.
#include <doctest/doctest.h>

#include <utility>  // before Asio (Boost 1.74 uses std::exchange without it)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/steps.hpp"

namespace {

using eol::instruments::TcReading;
using eol::station::ThermoShare;

/// A module whose every read returns a new temperature (read n: 20 + n °C)
/// and counts its reads; `fail_next` makes the next read throw.
struct CountingModule final : eol::instruments::TemperatureReader {
    std::string n = "tc-test";
    std::atomic<int> reads{0};
    bool fail_next = false;
    const std::string& name() const override { return n; }
    void connect() override {}
    void close() override {}
    int channels() const override { return 2; }
    eol::instruments::Identity identify() override { return {}; }
    std::vector<TcReading> read_all() override {
        if (fail_next) {
            fail_next = false;
            throw std::runtime_error("bus error");
        }
        const int k = ++reads;
        return {TcReading{20.0 + k}, TcReading{25.0}};
    }
};

}  // namespace

TEST_CASE("thermo share: a request is answered by a read begun after it, never an older one") {
    CountingModule m;
    ThermoShare share;
    const double before_first = ThermoShare::steady_now_s();
    CHECK(share.read(m, before_first)[0].temp_c == 21.0);  // read 1
    // A request made before read 1 began: answered by it.
    CHECK(share.read(m, before_first)[0].temp_c == 21.0);
    CHECK(m.reads == 1);
    CHECK(share.shared() == 1);
    // A request made after read 1 began: a new read.
    CHECK(share.read(m, ThermoShare::steady_now_s())[0].temp_c == 22.0);
    CHECK(m.reads == 2);
    CHECK(share.reads() == 2);
    // A read that throws is not kept: the error goes to its requester, the
    // next request after it reads again (read 3), not the failed one.
    m.fail_next = true;
    CHECK_THROWS_WITH_AS(share.read(m, ThermoShare::steady_now_s()), "bus error", std::runtime_error);
    CHECK(share.read(m, ThermoShare::steady_now_s())[0].temp_c == 23.0);
    CHECK(m.reads == 3);
}

TEST_CASE("thermo share: eight requests queued on a busy module's lane take one read") {
    CountingModule m;
    ThermoShare share;
    boost::asio::thread_pool pool(2);
    const eol::station::Lane lane = boost::asio::make_strand(pool.get_executor());
    // The lane is busy (another command) until released.
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    boost::asio::post(lane, [released] { released.wait(); });
    std::mutex mu;
    std::condition_variable cv;
    std::vector<double> seen;
    for (int k = 0; k < 8; ++k) {
        const double requested_s = ThermoShare::steady_now_s();
        boost::asio::co_spawn(
            pool,
            [&, requested_s]() -> boost::asio::awaitable<void> {
                const auto r = co_await eol::station::on_lane(&lane, [&] { return share.read(m, requested_s); });
                std::lock_guard lk(mu);
                seen.push_back(r[0].temp_c);
                cv.notify_all();
            },
            boost::asio::detached);
    }
    // Every request is queued on the lane before the busy command ends.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    release.set_value();
    {
        std::unique_lock lk(mu);
        REQUIRE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return seen.size() == 8; }));
    }
    pool.join();
    CHECK(m.reads == 1);
    CHECK(share.shared() == 7);
    for (double t : seen) CHECK(t == 21.0);
}
