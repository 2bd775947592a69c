// SCPI query round trips per second against the simulated SCPI load on
// loopback: our driver stack next to a bare blocking POSIX-socket client
// asking the same thing of the same server (the reference), printed side by
// side at the end.
//
//   bare socket        write "MEAS:VOLT? (@1)\n", read to "\n", strtod
//   ScpiClient         query_number("MEAS:VOLT? (@1)"): Asio transport with
//                      deadlines + reply parsing
//   ScpiLoad measure   V, I and P of a channel (3 queries; items = queries)
//   checked command    "CURR 1,(@1)" + SYST:ERR? (the driver's configuration
//                      path) vs the same two lines on the bare socket
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/scpi.hpp"
#include "eol/instruments/scpi_load.hpp"
#include "eol/instruments/tcp_transport.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/scpi_load_server.hpp"
#include "rate_table.hpp"

using namespace eol;

namespace {

/// config/ of the source tree ($EOL_CONFIG_DIR overrides).
std::string config_dir() {
    if (const char* e = std::getenv("EOL_CONFIG_DIR")) return e;
    return EOL_BENCH_CONFIG_DIR;  // absolute, from CMake (__FILE__ is relative to the build folder)
}

struct Server {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ScpiLoadServer> load;
    instruments::Dialect dialect;
    Server() {
        fixture = std::make_shared<sim::Fixture>(2, std::make_shared<sim::SimClock>(1.0), 25.0, 1);
        fixture->load_cell(0, "BENCH0", {});
        fixture->load_cell(1, "BENCH1", {});
        dialect = instruments::load_dialect(config_dir() + "/dialects/keysight-el30000.toml");
        load = std::make_unique<sim::ScpiLoadServer>(dialect, fixture);
        load->start();
    }
};

Server& server() {
    static Server s;
    return s;
}

// The reference: a minimal blocking client, no timeouts, no error handling
// beyond giving up.
class BareClient {
public:
    explicit BareClient(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::abort();
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~BareClient() { ::close(fd_); }
    void send(const std::string& line) {
        if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
    }
    std::string read_line() {
        for (;;) {
            const auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return l;
            }
            char b[512];
            const ssize_t n = ::read(fd_, b, sizeof b);
            if (n <= 0) std::abort();
            buf_.append(b, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_ = -1;
    std::string buf_;
};

instruments::ScpiClient make_client() {
    return instruments::ScpiClient(
        "bench", std::make_unique<instruments::TcpTransport>("127.0.0.1", server().load->port()), 2.0);
}

void BM_bare_socket_query(benchmark::State& state) {
    BareClient c(server().load->port());
    double sum = 0;
    for (auto _ : state) {
        c.send("MEAS:VOLT? (@1)\n");
        sum += std::strtod(c.read_line().c_str(), nullptr);
    }
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_bare_socket_query)->UseRealTime();

void BM_scpi_client_query(benchmark::State& state) {
    auto c = make_client();
    c.open();
    double sum = 0;
    for (auto _ : state) sum += c.query_number("MEAS:VOLT? (@1)");
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_scpi_client_query)->UseRealTime();

void BM_scpi_load_measure(benchmark::State& state) {
    instruments::ScpiLoad load("bench", server().dialect,
                               std::make_unique<instruments::TcpTransport>("127.0.0.1", server().load->port()));
    load.connect();
    double sum = 0;
    for (auto _ : state) sum += load.measure(1).v_v;
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(3 * state.iterations());
}
BENCHMARK(BM_scpi_load_measure)->UseRealTime();

void BM_bare_socket_checked_command(benchmark::State& state) {
    BareClient c(server().load->port());
    for (auto _ : state) {
        c.send("CURR 1,(@1)\n");
        c.send("SYST:ERR?\n");
        benchmark::DoNotOptimize(c.read_line());
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_bare_socket_checked_command)->UseRealTime();

void BM_scpi_client_checked_command(benchmark::State& state) {
    auto c = make_client();
    c.open();
    for (auto _ : state) c.command("CURR 1,(@1)");
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_scpi_client_checked_command)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    server();  // start before timing
    eol::bench::RateCollector rates;
    benchmark::RunSpecifiedBenchmarks(&rates);
    using eol::bench::print_rate_row;
    eol::bench::print_rate_header(
        ("SCPI round trips per second on loopback (simulated " + server().dialect.name + " load)").c_str(),
        "bare socket");
    print_rate_row("query MEAS:VOLT? (ScpiClient)", rates.rate("BM_scpi_client_query"), rates.rate("BM_bare_socket_query"));
    print_rate_row("queries in ScpiLoad::measure (V, I, P)", rates.rate("BM_scpi_load_measure"),
                   rates.rate("BM_bare_socket_query"));
    print_rate_row("command + SYST:ERR? check", rates.rate("BM_scpi_client_checked_command"),
                   rates.rate("BM_bare_socket_checked_command"));
    server().load->stop();
    return 0;
}
