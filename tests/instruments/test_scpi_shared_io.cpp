// A SCPI transport whose I/O runs on a shared io_context (the station
// controller's loop, TransportOptions::io_context): the same answers as with
// its own io_context, timeouts still apply, a call from the loop's own
// thread is refused instead of waiting on itself, and a stopped loop ends a
// waiting call instead of hanging it.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "instruments/test_scpi_support.hpp"

using namespace eol;

namespace {

std::unique_ptr<instruments::ScpiLoad> shared_driver(const test::SimLoad& sim, boost::asio::io_context& io,
                                                     double timeout_s = 1.0) {
    instruments::TransportOptions t;
    t.io_timeout_s = timeout_s;
    t.connect_timeout_s = 1.0;
    t.connect_attempts = 2;
    t.backoff_initial_s = 0.02;
    t.io_context = &io;
    auto tr = std::make_unique<instruments::TcpTransport>("127.0.0.1", sim.server->port(), t);
    return std::make_unique<instruments::ScpiLoad>("load1", sim.server->dialect(), std::move(tr), timeout_s);
}

instruments::Dialect keysight() { return instruments::load_dialect(test::dialect_path("keysight-el30000")); }

}  // namespace

TEST_CASE("scpi transport on a shared io_context: the same answers, a pulse, timeouts, from two threads at once") {
    test::SimLoad sim(keysight());
    test::LoopThread loop;
    auto load = shared_driver(sim, loop.io, 0.3);
    load->connect();
    CHECK(!load->identify().model.empty());
    const auto r = load->measure(1);
    CHECK(r.v_v > 3.0);
    CHECK(std::abs(r.i_a) < 0.05);
    load->set_mode(1, instruments::LoadMode::cc, 1.0);
    load->set_input(1, true);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(load->measure(1).i_a == doctest::Approx(1.0).epsilon(0.05));
    load->set_input(1, false);
    // A second driver on the same loop, used from another thread at the same time.
    auto other = shared_driver(sim, loop.io);
    other->connect();
    auto f = std::async(std::launch::async, [&] {
        double v = 0;
        for (int k = 0; k < 50; ++k) v += other->measure(2).v_v;
        return v / 50;
    });
    double v1 = 0;
    for (int k = 0; k < 50; ++k) v1 += load->measure(1).v_v;
    CHECK(v1 / 50 > 3.0);
    CHECK(f.get() > 3.0);
    // Timeouts still apply: a reply later than the timeout.
    sim.server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0.6; });
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS((void)load->measure(1), instruments::TimeoutError);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(took < 0.6);
    sim.server->faults().update([](sim::FaultSettings& s) { s.latency_s = 0; });
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    CHECK(load->measure(1).v_v > 3.0);  // reconnected
    CHECK(std::abs(load->measure(1).i_a) < 0.05);
}

TEST_CASE("hostile: scpi transport on a shared io_context refuses a call from the loop's own thread, and a stopped loop ends a waiting call") {
    test::SimLoad sim(keysight());
    auto loop = std::make_unique<test::LoopThread>();
    auto load = shared_driver(sim, loop->io, 5.0);
    load->connect();
    std::promise<std::string> refused;
    boost::asio::post(loop->io, [&] {
        try {
            (void)load->measure(1);
            refused.set_value("no error");
        } catch (const std::logic_error& e) {
            refused.set_value(e.what());
        } catch (const std::exception& e) {
            refused.set_value(std::string("other error: ") + e.what());
        }
    });
    const std::string why = refused.get_future().get();
    CHECK(why.find("would wait on itself") != std::string::npos);
    // A silent instrument (5 s timeout) and the loop stopped meanwhile: the
    // call ends with a ConnectionError well before its timeout.
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = true; });
    auto waiting = std::async(std::launch::async, [&] {
        const auto t0 = std::chrono::steady_clock::now();
        std::string what = "no error";
        try {
            (void)load->identify();
        } catch (const instruments::ConnectionError& e) {
            what = e.what();
        } catch (const std::exception& e) {
            what = std::string("other error: ") + e.what();
        }
        return std::make_pair(what, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    loop->stop();
    const auto [what, took] = waiting.get();
    INFO(what);
    CHECK(what != "no error");
    CHECK(what.find("other error") == std::string::npos);
    CHECK(took < 2.0);
    sim.server->faults().update([](sim::FaultSettings& s) { s.no_reply = false; });
}
