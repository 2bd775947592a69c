// PLC register read latency (issue 14): a libmodbus client polls a position's
// status block (B+20..B+32, one FC03 of 13 registers) at 1 kHz while eight
// positions test cells, started through the PLC handshake, on the simulated
// instruments; beside it, in the same run and at the same time, a second
// client polls a bare libmodbus server (modbus_receive / modbus_reply on a
// thread of its own, the reference) the same way. Prints p50 / p99 / max of
// each and the target (p99 under 2 ms on loopback).
//
//   bench_plc [--seconds S] [--time-scale X]
//
// Everything in process: the station's simulators (SimStation), the real
// Controller with its store in a temporary directory, the PlcServer on an
// io_context of its own thread. Release build only (tools/bench).
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/controller.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/sim_station.hpp"

namespace fs = std::filesystem;
namespace plc = eol::station::plc;
using Clock = std::chrono::steady_clock;

namespace {

/// config/ of the source tree ($EOL_CONFIG_DIR overrides), absolute: the
/// station file written to a temporary directory names its files by it.
std::string config_dir() {
    if (const char* e = std::getenv("EOL_CONFIG_DIR")) return fs::absolute(e).string();
    return EOL_BENCH_CONFIG_DIR;
}

std::uint16_t free_port() {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(s);
    return ntohs(a.sin_port);
}

/// Eight positions on four two-channel Keysight loads, one ET-7018Z (its channel 8 the ambient).
std::string station_text(double time_scale) {
    const std::string c = config_dir();
    std::string t = "[station]\nid = \"BENCH-PLC\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" +
                    c + "/serial-scheme.toml\"\nstore = \"bench.db\"\n\n";
    for (int l = 1; l <= 4; ++l)
        t += fmt::format("[instruments.load{}]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:{}\"\n"
                         "dialect = \"{}/dialects/keysight-el30000.toml\"\nchannels = 2\n\n",
                         l, free_port(), c);
    t += fmt::format("[instruments.tc1]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:{}\"\n"
                     "map = \"{}/maps/icpdas-et7018z.toml\"\nchannels = 10\nambient_channel = 8\n\n",
                     free_port(), c);
    for (int p = 1; p <= 8; ++p)
        t += fmt::format("[[channels]]\nposition = {}\nload = \"load{}\"\nload_channel = {}\nthermo = \"tc1\"\n"
                         "thermo_channel = {}\n\n",
                         p, (p + 1) / 2, 2 - p % 2, p - 1);
    t += "[limits]\ntemp_abort_c = 60\nv_min_v = 2.5\ni_max_a = 10.0\n\n[screening]\nfeatures = [\"ocv_v\"]\n\n";
    t += fmt::format("[plc]\nbind = \"127.0.0.1\"\nport = {}\nheartbeat_timeout_s = 5\n\n", free_port());
    t += fmt::format("[sim]\ntime_scale = {}\nseed = 3\nlot = \"0042\"\nproduction_date = 2023-03-14\ncells = 16\n",
                     time_scale);
    return t;
}

modbus_t* connect(std::uint16_t port) {
    modbus_t* ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_set_response_timeout(ctx, 1, 0);
    if (!ctx || modbus_connect(ctx) != 0) {
        std::fprintf(stderr, "bench_plc: cannot connect to port %u: %s\n", port, modbus_strerror(errno));
        std::exit(1);
    }
    return ctx;
}

struct Latencies {
    std::vector<double> ms;
    long errors = 0;
    double pct(double q) const {
        if (ms.empty()) return 0;
        std::vector<double> v = ms;
        const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
        std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
        return v[k];
    }
    double max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
};

/// Polls 13 registers from `first` at 1 kHz until `stop`.
void poll(std::uint16_t port, int first, const std::atomic<bool>& stop, Latencies& out) {
    modbus_t* ctx = connect(port);
    std::uint16_t regs[13];
    auto next = Clock::now();
    while (!stop) {
        next += std::chrono::milliseconds(1);
        const auto t0 = Clock::now();
        const int rc = modbus_read_registers(ctx, first, 13, regs);
        const auto t1 = Clock::now();
        if (rc == 13) out.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        else ++out.errors;
        std::this_thread::sleep_until(next);
    }
    modbus_close(ctx);
    modbus_free(ctx);
}

/// The reference: a bare libmodbus TCP server (one client) on its own thread.
struct BareServer {
    modbus_mapping_t* map = modbus_mapping_new(0, 0, 1000, 0);
    modbus_t* ctx = nullptr;
    int listen_fd = -1;
    std::uint16_t port = free_port();
    std::atomic<bool> stop{false};
    std::thread thread;
    BareServer() {
        ctx = modbus_new_tcp("127.0.0.1", port);
        listen_fd = modbus_tcp_listen(ctx, 1);
        if (listen_fd < 0) {
            std::fprintf(stderr, "bench_plc: bare server cannot listen: %s\n", modbus_strerror(errno));
            std::exit(1);
        }
        thread = std::thread([this] {
            int fd = modbus_tcp_accept(ctx, &listen_fd);
            if (fd < 0) return;
            std::uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
            while (!stop) {
                const int n = modbus_receive(ctx, req);
                if (n > 0) modbus_reply(ctx, req, n, map);
                else if (n < 0) break;
            }
            ::close(fd);
        });
    }
    ~BareServer() {
        stop = true;
        thread.join();
        ::close(listen_fd);
        modbus_free(ctx);
        modbus_mapping_free(map);
    }
};

}  // namespace

int main(int argc, char** argv) {
    double max_seconds = 60, time_scale = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--seconds") max_seconds = std::stod(argv[i + 1]);
        else if (a == "--time-scale") time_scale = std::stod(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_plc [--seconds S] [--time-scale X]\n");
            return 2;
        }
    }
    const fs::path dir = fs::temp_directory_path() / fmt::format("bench_plc_{}", ::getpid());
    fs::create_directories(dir);
    const auto cfg = eol::station::parse_station_config(station_text(time_scale), dir / "station.toml");

    eol::station::SimStation sim(cfg);
    sim.start();
    eol::station::ControllerOptions opts;
    opts.time_scale = time_scale;
    eol::station::Controller controller(cfg, opts);
    controller.connect_all();
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);
    plc::PlcServer server(io.get_executor(), plc::controller_station(controller), cfg.plc);
    std::thread loop([&] { io.run(); });
    BareServer bare;

    // The PLC: a heartbeat every 200 ms, eight cycles started through the handshake.
    std::atomic<bool> stop_beat{false};
    std::thread beat([&] {
        modbus_t* ctx = connect(server.port());
        for (std::uint16_t n = 1; !stop_beat; ++n) {
            modbus_write_register(ctx, plc::kPlcHeartbeat, n);
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        modbus_close(ctx);
        modbus_free(ctx);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    modbus_t* plc_ctx = connect(server.port());
    for (int p = 1; p <= 8; ++p) {
        std::uint16_t w[10] = {1, static_cast<std::uint16_t>(p)};
        plc::serial_to_registers(sim.serial_at(p), w + 2, eol::station::PlcConfig::ByteOrder::high_first);
        modbus_write_registers(plc_ctx, plc::block(p) + plc::reg::recipe_id, 10, w);
        modbus_write_register(plc_ctx, plc::block(p), plc::command::start);
    }

    std::atomic<bool> stop_poll{false};
    Latencies ours, ref;
    std::thread p1([&] { poll(server.port(), plc::block(1) + plc::reg::packml, stop_poll, ours); });
    std::thread p2([&] { poll(bare.port, 120, stop_poll, ref); });

    // Until every position has its answer (RESULT_VALID) or the time is up.
    const auto t0 = Clock::now();
    int done = 0, busy_seen = 0;
    std::vector<bool> was_busy(9, false);
    while (Clock::now() - t0 < std::chrono::duration<double>(max_seconds)) {
        done = 0;
        for (int p = 1; p <= 8; ++p) {
            std::uint16_t st = 0;
            if (modbus_read_registers(plc_ctx, plc::block(p) + plc::reg::status, 1, &st) == 1) {
                if (st & plc::status::busy) was_busy[static_cast<std::size_t>(p)] = true;
                if (st & plc::status::result_valid) ++done;
            }
        }
        if (done == 8) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    for (int p = 1; p <= 8; ++p) busy_seen += was_busy[static_cast<std::size_t>(p)] ? 1 : 0;
    stop_poll = true;
    p1.join();
    p2.join();
    std::vector<std::string> results;
    for (int p = 1; p <= 8; ++p) {
        std::uint16_t r = 0;
        modbus_read_registers(plc_ctx, plc::block(p) + plc::reg::result, 1, &r);
        results.push_back(std::to_string(r));
    }
    modbus_close(plc_ctx);
    modbus_free(plc_ctx);
    stop_beat = true;
    beat.join();
    server.stop();
    work.reset();
    io.stop();
    loop.join();
    controller.shutdown("bench finished");
    sim.stop();
    std::error_code ec;
    fs::remove_all(dir, ec);

    std::printf("PLC register read latency: FC03 of 13 registers at 1 kHz, %.1f s, while 8 positions tested "
                "(%d seen BUSY, %d answered; result codes %s) at %gx\n",
                wall_s, busy_seen, done, fmt::format("{}", fmt::join(results, " ")).c_str(), time_scale);
    std::printf("%-28s %9s %9s %9s %8s %7s\n", "server", "p50 ms", "p99 ms", "max ms", "reads", "errors");
    std::printf("%-28s %9.3f %9.3f %9.3f %8zu %7ld\n", "eolstation PlcServer", ours.pct(0.5), ours.pct(0.99),
                ours.max(), ours.ms.size(), ours.errors);
    std::printf("%-28s %9.3f %9.3f %9.3f %8zu %7ld\n", "bare libmodbus (reference)", ref.pct(0.5), ref.pct(0.99),
                ref.max(), ref.ms.size(), ref.errors);
    const bool ok = ours.pct(0.99) < 2.0 && ours.errors == 0 && done == 8;
    std::printf("target p99 < 2 ms with every position answered: %s\n", ok ? "met" : "NOT met");
    return ok ? 0 : 1;
}
