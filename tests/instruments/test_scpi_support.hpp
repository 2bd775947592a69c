// Shared by the SCPI driver tests: a simulated load (fixture + server on an
// ephemeral loopback port), a real ScpiLoad driver connected to it, and an
// io_context run by a thread of its own (a transport's shared loop).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>
#include <thread>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/scpi_load.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/scpi_load_server.hpp"

namespace eol::test {

/// An io_context run by its own thread, as the station controller runs its
/// loop (TransportOptions::io_context). stop() ends it early; the destructor
/// stops it otherwise.
struct LoopThread {
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
    std::thread thread{[this] { io.run(); }};
    ~LoopThread() { stop(); }
    void stop() {
        work.reset();
        io.stop();
        if (thread.joinable()) thread.join();
    }
};

inline std::string dialect_path(const std::string& name) {
    return std::string(EOL_CONFIG_DIR) + "/dialects/" + name + ".toml";
}

/// Two known cells: position 0 the nominal 18650 (R0 33 mΩ, SoC 0.8),
/// position 1 a worse one (R0 50 mΩ, SoC 0.5).
inline sim::CellParams cell_a() { return sim::CellParams{}; }
inline sim::CellParams cell_b() {
    sim::CellParams p;
    p.r0_ohm = 0.050;
    p.soc0 = 0.5;
    return p;
}

struct SimLoad {
    std::shared_ptr<sim::SimClock> clock;
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ScpiLoadServer> server;

    explicit SimLoad(instruments::Dialect d, double scale = 100.0) {
        clock = std::make_shared<sim::SimClock>(scale);
        fixture = std::make_shared<sim::Fixture>(2, clock, 25.0, 7);
        fixture->load_cell(0, "TESTCELLA0000001", cell_a());
        fixture->load_cell(1, "TESTCELLB0000002", cell_b());
        sim::ScpiLoadServerOptions o;
        o.name = "sim-" + d.name;
        if (d.channels == 1) o.positions = {0};
        server = std::make_unique<sim::ScpiLoadServer>(std::move(d), fixture, o);
        server->start();
    }
    ~SimLoad() { server->stop(); }

    std::unique_ptr<instruments::ScpiLoad> driver(double timeout_s = 1.0,
                                                  const std::string& name = "load1") const {
        instruments::TransportOptions t;
        t.io_timeout_s = timeout_s;
        t.connect_timeout_s = 1.0;
        t.connect_attempts = 2;
        t.backoff_initial_s = 0.02;
        auto tr = std::make_unique<instruments::TcpTransport>("127.0.0.1", server->port(), t);
        return std::make_unique<instruments::ScpiLoad>(name, server->dialect(), std::move(tr),
                                                       timeout_s);
    }
};

}  // namespace eol::test
