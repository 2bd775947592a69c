// The station controller's cost: the example recipe on 1, 8 and 16 fixture
// positions at once, against `eolstation sim` running in a child process
// (so this process's CPU is the controller's alone, the child's the bare
// simulator's), printed side by side:
//
//   wall per cell      start() to the result, per cell
//   bare instrument    the recipe's instrument time at the simulators' scale
//                      (what the cell costs with zero software)
//   overhead per cell  wall − bare; target < 5 ms
//   round ms/cell      a round's wall (first start to last result) − bare,
//                      over its cells: the station's time lost per cell
//                      (its throughput), not each cell's wait
//   CPU / channel-h    this process's user+sys CPU per hour of testing on one
//                      channel (station time), next to the simulator's
//   peak RSS           this process, after the 16-channel rounds
//
// Deterministic for a given seed (--seed; the simulator's lot). Usage:
//   bench_controller [--scale X] [--rounds N] [--warmup N] [--seed S] [--channels 1,8,16]
//                    [--path controller|lanes|inline] [--stagger yes|no]
//                    [--share-module-reads yes|no] [--fresh-cells yes|no]
//                    [--page-size BYTES]   (the store's pages; default the store's own, 16384)
// --warmup N (default 0): rounds run first at each size and left out of every
// figure but "1st round ms" (their mean overhead per cell). A station runs
// all shift on one store and its connections; its first cells pay for what
// is done once (a new store's first pages and WAL growth, the first
// screening model, first touches of memory), which is not the overhead per
// cell of a running line. --warmup 0 gives the figures of sessions 5-15.
// --path (default controller): lanes or inline measure the step engine alone
// (measure_steps below: no controller, safety monitor or store), the floor
// under the controller's overhead on this machine and simulator
// (--warmup, --share-module-reads and --page-size apply to the controller).
// --stagger yes (controller only; default no): within a round the positions
// start one after another, a recipe's time over the channel count apart (as
// cells arrive on a line), not all at the same moment; "round ms/cell" then
// leaves the offsets out.
// --fresh-cells yes (the default): before each round every position gets a
// fresh cell of the lot at 80 % charge and ambient temperature (the
// simulator's `cell P soc0 0.8`), so that any number of rounds tests the same
// cells; with no, each position's cell is tested again as it was left (as
// sessions 5-16 did: after about four rounds of the example recipe the cells
// are drained and stop passing).
#include <fmt/core.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/controller.hpp"
#include "eol/station/log.hpp"
#include "eol/station/instrument_factory.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/steps.hpp"
#include "eol/station/store.hpp"

namespace fs = std::filesystem;
using namespace eol;

namespace {

std::string config_dir() {
    if (const char* e = std::getenv("EOL_CONFIG_DIR")) return e;
    return EOL_SOURCE_CONFIG_DIR;  // absolute, from CMake (__FILE__ may be relative)
}

std::uint16_t free_port() {
    // Ports from a range the OS does not hand out as ephemeral ones, offset by pid.
    static int next = 0;
    return static_cast<std::uint16_t>(21000 + (getpid() % 500) * 20 + next++);
}

double cpu_s(int who) {
    rusage u{};
    getrusage(who, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

/// A station of `n` positions: ⌈n/2⌉ two-channel Keysight loads, ⌈n/8⌉
/// thermocouple modules of 8 positions each, every module reading the
/// ambient on its channel 8 (the recipe judges p_x_w: every position needs one).
std::string station_text(int n, double scale, std::uint64_t seed, const fs::path& store) {
    const std::string c = config_dir();
    std::string t = "[station]\nid = \"BENCH\"\nrecipe = \"" + c + "/recipes/eol-18650.toml\"\nserial_scheme = \"" + c +
                    "/serial-scheme.toml\"\nstore = \"" + store.string() + "\"\n\n";
    for (int k = 1; k <= (n + 1) / 2; ++k)
        t += fmt::format("[instruments.load{}]\ndriver = \"scpi_load\"\naddress = \"tcp://127.0.0.1:{}\"\ndialect = "
                         "\"{}/dialects/keysight-el30000.toml\"\nchannels = 2\n\n",
                         k, free_port(), c);
    for (int k = 1; k <= (n + 7) / 8; ++k)
        t += fmt::format("[instruments.tc{}]\ndriver = \"modbus_thermo\"\naddress = \"tcp://127.0.0.1:{}\"\nmap = "
                         "\"{}/maps/icpdas-et7018z.toml\"\nchannels = 10\nambient_channel = 8\n\n",
                         k, free_port(), c);
    for (int p = 1; p <= n; ++p)
        t += fmt::format("[[channels]]\nposition = {}\nload = \"load{}\"\nload_channel = {}\nthermo = \"tc{}\"\n"
                         "thermo_channel = {}\n\n",
                         p, (p + 1) / 2, (p - 1) % 2 + 1, (p + 7) / 8, (p - 1) % 8);
    t += "[limits]\ntemp_abort_c = 60.0\nv_min_v = 2.5\ni_max_a = 10.0\n\n[screening]\nfeatures = [\"ocv_v\"]\n\n";
    t += fmt::format("[sim]\ntime_scale = {}\nseed = {}\nambient_c = 25.0\nlot = \"0042\"\nproduction_date = "
                     "2023-03-14\ncells = {}\n",
                     scale, seed, n);
    return t;
}

/// `eolstation sim` in a child; waits until it prints one line per server.
struct SimChild {
    pid_t pid = -1;
    SimChild(const fs::path& cli, const fs::path& config, int servers) {
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe");
        int in_fds[2];
        if (pipe(in_fds) != 0) throw std::runtime_error("pipe");
        pid = fork();
        if (pid == 0) {
            dup2(fds[1], 1);
            dup2(in_fds[0], 0);
            close(fds[0]);
            close(in_fds[1]);
            execl(cli.c_str(), cli.c_str(), "sim", "--config", config.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        close(fds[1]);
        close(in_fds[0]);
        stdin_fd_ = in_fds[1];  // kept open: the sim keeps serving while its stdin is open
        FILE* out = fdopen(fds[0], "r");
        char line[512];
        for (int k = 0; k < servers; ++k)
            if (!std::fgets(line, sizeof line, out)) throw std::runtime_error("eolstation sim did not start");
        out_ = out;
    }
    ~SimChild() {
        if (pid > 0) {
            kill(pid, SIGTERM);
            int st = 0;
            waitpid(pid, &st, 0);
        }
        if (out_) std::fclose(out_);
        if (stdin_fd_ >= 0) close(stdin_fd_);
    }
    /// One control line (`eolstation sim` reads them on its standard input)
    /// and its reply; std::runtime_error unless the reply is "ok …".
    void control(const std::string& line) {
        const std::string text = line + "\n";
        if (write(stdin_fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
            throw std::runtime_error("eolstation sim: cannot write '" + line + "'");
        char reply[512];
        if (!std::fgets(reply, sizeof reply, out_)) throw std::runtime_error("eolstation sim: no reply to '" + line + "'");
        if (std::string(reply).rfind("ok", 0) != 0)
            throw std::runtime_error("eolstation sim: '" + line + "' answered " + reply);
    }
    int stdin_fd_ = -1;
    FILE* out_ = nullptr;
};

struct Row {
    Row(int n, double bare) : channels(n), bare_s(bare) {}
    int channels = 0;
    std::size_t cells = 0;
    double wall_per_cell_s = 0, bare_s = 0, overhead_mean_s = 0, overhead_max_s = 0;
    double overhead_median_s = 0;
    /// A round's wall time (its first start to its last result) beyond the
    /// bare instrument time, over its cells, averaged over the rounds: the
    /// station's time lost per cell tested when every position runs at once
    /// (its throughput), beside each cell's own overhead above.
    double round_overhead_per_cell_s = 0;
    double cpu_per_channel_h_s = 0;
    double sim_cpu_per_channel_h_s = 0;
    std::size_t not_pass = 0;
    double first_overhead_mean_s = std::nan("");  // the warm-up rounds' mean (cold start)
    /// Where the overhead goes: per step, the mean wall ms beyond its
    /// nominal duration (its commands, waits for shared instruments, fits);
    /// "after the steps": from the last step's end to the result (the
    /// record's store write, the result's way back).
    std::map<std::string, double> over_ms;
    std::vector<std::string> step_order;
    /// Within the steps and the store (ControllerOptions::on_phase): total
    /// wall ms per phase over all cells.
    std::map<std::string, double> phase_ms;
    /// Bus transactions on the thermocouple modules (the steps' readings, the
    /// safety monitors', keep-alives), per cell.
    double tc_reads_per_cell = 0;
};

/// The cells' serials, in sequence, of one lot of the station's scheme.
struct Serials {
    station::SerialScheme scheme;
    station::SerialSpec spec;
    explicit Serials(const fs::path& scheme_file) : scheme(station::SerialScheme::load(scheme_file)) {
        spec.plant = "01";
        spec.line = "A";
        spec.lot = "0042";
        spec.date = {2023, 3, 14};
        spec.sequence = 0;
    }
    std::string next() {
        ++spec.sequence;
        return scheme.make(spec);
    }
};

/// The station file of `n` positions written to `cfg_file` (its store `db`), loaded.
station::StationConfig write_station(const fs::path& cfg_file, const fs::path& db, int n, double scale,
                                     std::uint64_t seed) {
    std::ofstream(cfg_file) << station_text(n, scale, seed, db);
    return station::load_station_config(cfg_file);
}

/// Mean, median (of an even count, the two middles' mean) and max of each
/// cell's overhead, and the mean wall time per cell (bare + mean overhead).
void set_overheads(Row& row, std::vector<double> overheads) {
    if (overheads.empty()) return;
    std::sort(overheads.begin(), overheads.end());
    row.overhead_mean_s = std::accumulate(overheads.begin(), overheads.end(), 0.0) / static_cast<double>(overheads.size());
    row.wall_per_cell_s = row.bare_s + row.overhead_mean_s;
    row.overhead_max_s = overheads.back();
    const std::size_t h = overheads.size() / 2;
    row.overhead_median_s = overheads.size() % 2 ? overheads[h] : 0.5 * (overheads[h - 1] + overheads[h]);
}

/// Each step of `rec` beyond its nominal duration, added to row.over_ms (wall
/// ms); returns the wall ms the steps took in all.
double add_step_overruns(Row& row, const station::TestRecord& rec, const station::Recipe& recipe, double scale) {
    double in_steps_ms = 0;
    for (std::size_t k = 0; k < rec.steps.size() && k < recipe.steps.size(); ++k) {
        const auto& st = rec.steps[k];
        if (!row.over_ms.count(st.name)) row.step_order.push_back(st.name);
        row.over_ms[st.name] += (st.end_unix_s - st.start_unix_s - recipe.steps[k].duration_s()) / scale * 1e3;
        in_steps_ms += (st.end_unix_s - st.start_unix_s) / scale * 1e3;
    }
    return in_steps_ms;
}

Row measure(const fs::path& cli, int n, double scale, int rounds, int warmup, std::uint64_t seed, const fs::path& dir,
            bool share, int page_size, bool fresh_cells, bool stagger) {
    const fs::path cfg_file = dir / fmt::format("station{}.toml", n);
    const fs::path db = dir / fmt::format("bench{}.db", n);
    station::Store::open(db, station::OpenOptions{.create = true, .page_size_bytes = page_size});
    const auto cfg = write_station(cfg_file, db, n, scale, seed);
    const double bare_s = cfg.recipe.duration_s() / scale;
    const double child_cpu0 = cpu_s(RUSAGE_CHILDREN);
    Row row(n, bare_s);
    {
        SimChild sim(cli, cfg_file, (n + 1) / 2 + (n + 7) / 8);
        station::ControllerOptions opt;
        opt.time_scale = scale;
        opt.share_module_reads = share;
        std::mutex phase_mutex;
        bool measuring = warmup == 0;  // under phase_mutex
        opt.on_phase = [&](int, const char* phase, double wall_ms) {
            const std::lock_guard lk(phase_mutex);
            if (measuring) row.phase_ms[phase] += wall_ms;
        };
        station::Controller controller(cfg, opt);
        controller.connect_all();
        Serials serials(cfg.serial_scheme);
        double cpu0 = cpu_s(RUSAGE_SELF);
        double sum_first = 0, sum_round = 0;
        std::vector<double> overheads;  // each measured cell's wall − bare
        std::uint64_t tc_reads0 = 0;
        for (int r = 0; r < warmup + rounds; ++r) {
            const bool warm = r >= warmup;
            if (r == warmup && warmup > 0) {  // the warm-up is over: measure from here
                {
                    const std::lock_guard lk(phase_mutex);
                    measuring = true;
                }
                cpu0 = cpu_s(RUSAGE_SELF);
                for (const auto& i : controller.instruments())
                    if (i.role == "thermo") tc_reads0 += i.commands;
            }
            if (fresh_cells)
                for (int p = 1; p <= n; ++p) sim.control(fmt::format("cell {} soc0 0.8", p));
            std::mutex mu;
            std::condition_variable cv;
            int done = 0;
            std::vector<double> started(static_cast<std::size_t>(n) + 1), took(static_cast<std::size_t>(n) + 1);
            const double gap_s = stagger ? bare_s / n : 0.0;
            for (int p = 1; p <= n; ++p) {
                if (p > 1 && gap_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(gap_s));
                const std::string serial = serials.next();
                started[static_cast<std::size_t>(p)] =
                    std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
                controller.start(p, serial, [&, p](const station::CellResult& res) {
                    const double now =
                        std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
                    std::lock_guard lk(mu);
                    took[static_cast<std::size_t>(p)] = now - started[static_cast<std::size_t>(p)];
                    if (warm) row.not_pass += res.verdict != "pass";
                    if (warm && res.record) {
                        const double in_steps_ms = add_step_overruns(row, *res.record, cfg.recipe, scale);
                        const std::string after = "after the steps";
                        if (!row.over_ms.count(after)) row.step_order.push_back(after);
                        row.over_ms[after] += (now - started[static_cast<std::size_t>(p)]) * 1e3 - in_steps_ms;
                    }
                    ++done;
                    cv.notify_all();
                });
            }
            std::unique_lock lk(mu);
            cv.wait(lk, [&] { return done == n; });
            if (!warm) {
                for (int p = 1; p <= n; ++p) sum_first += took[static_cast<std::size_t>(p)] - bare_s;
                continue;
            }
            double round_start = INFINITY, round_end = -INFINITY;
            for (int p = 1; p <= n; ++p) {
                const auto k = static_cast<std::size_t>(p);
                overheads.push_back(took[k] - bare_s);
                round_start = std::min(round_start, started[k]);
                round_end = std::max(round_end, started[k] + took[k]);
            }
            // With --stagger the offsets the starts were given are not the station's cost.
            const double offsets_s = gap_s > 0 ? started[static_cast<std::size_t>(n)] - started[1] : 0.0;
            sum_round += (round_end - round_start - bare_s - offsets_s) / n;
            row.cells += static_cast<std::size_t>(n);
        }
        const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
        if (warmup > 0) row.first_overhead_mean_s = sum_first / static_cast<double>(warmup * n);
        std::uint64_t tc_reads = 0;
        for (const auto& i : controller.instruments())
            if (i.role == "thermo") tc_reads += i.commands;
        tc_reads -= tc_reads0;
        const double channel_hours = static_cast<double>(row.cells) * cfg.recipe.duration_s() / 3600.0;
        row.cpu_per_channel_h_s = cpu / channel_hours;
        row.round_overhead_per_cell_s = sum_round / rounds;
        set_overheads(row, std::move(overheads));
        row.tc_reads_per_cell = static_cast<double>(tc_reads) / static_cast<double>(row.cells);
        controller.shutdown("bench done");
        // SimChild's destructor reaps the simulator: its CPU shows in RUSAGE_CHILDREN.
    }
    const double sim_cpu = cpu_s(RUSAGE_CHILDREN) - child_cpu0;
    // The simulator's CPU is had when it exits: over every cell it served, warm-up included.
    row.sim_cpu_per_channel_h_s =
        sim_cpu / (static_cast<double>(row.cells + static_cast<std::size_t>(warmup * n)) * cfg.recipe.duration_s() / 3600.0);
    return row;
}

/// --path lanes | inline: the same recipe, cells and simulator child, driven by
/// the step engine alone — no controller: no safety monitor, no store write
/// or screening, no keep-alive. "lanes": run_channels (the positions as
/// coroutines on one loop, each instrument's calls on its own lane thread;
/// each SCPI load's socket on a private io_context, driven by its lane).
/// "inline" (one channel): run_recipe on this one thread, every driver call
/// made by the thread that runs the steps — no hand-over at all. What is left
/// is the steps' own instrument calls, fits and waits on this machine and
/// simulator: the floor under the controller's figure. A cell's wall time is
/// its record's (end − start) / scale.
Row measure_steps(const fs::path& cli, int n, double scale, int rounds, std::uint64_t seed, const fs::path& dir,
                  bool inline_calls, bool fresh_cells) {
    const fs::path cfg_file = dir / fmt::format("steps{}.toml", n);
    const auto cfg = write_station(cfg_file, dir / fmt::format("steps{}.db", n), n, scale, seed);
    const double bare_s = cfg.recipe.duration_s() / scale;
    const double child_cpu0 = cpu_s(RUSAGE_CHILDREN);
    Row row(n, bare_s);
    {
        SimChild sim(cli, cfg_file, (n + 1) / 2 + (n + 7) / 8);
        station::StationInstruments inst = station::make_instruments(cfg);
        for (auto& [name, l] : inst.loads) l->connect();
        for (auto& [name, t] : inst.thermos) t->connect();
        std::vector<station::ChannelJob> jobs;
        for (int p = 1; p <= n; ++p) {
            station::ChannelJob j;
            j.position = p;
            j.io = station::channel_io(cfg, p, inst);
            jobs.push_back(std::move(j));
        }
        Serials serials(cfg.serial_scheme);
        station::ScaledWallClock clock(scale);
        station::RunContext ctx;
        ctx.station_id = "BENCH";
        ctx.position = 1;
        ctx.clock = &clock;
        ctx.on_phase = [&row](const char* phase, double wall_ms) { row.phase_ms[phase] += wall_ms; };  // one thread
        std::vector<double> overheads;
        double sum_round = 0;
        const double cpu0 = cpu_s(RUSAGE_SELF);
        for (int r = 0; r < rounds; ++r) {
            if (fresh_cells)
                for (int p = 1; p <= n; ++p) sim.control(fmt::format("cell {} soc0 0.8", p));
            for (auto& j : jobs) j.cell = {serials.next(), cfg.recipe.cell_model, "0042", "2023-03-14"};
            std::vector<station::TestRecord> records;
            if (inline_calls) records.push_back(station::run_recipe(cfg.recipe, cfg.limits, jobs[0].io, jobs[0].cell, ctx));
            else records = station::run_channels(cfg.recipe, cfg.limits, jobs, ctx);
            double round_start = INFINITY, round_end = -INFINITY;
            for (const station::TestRecord& rec : records) {
                overheads.push_back((rec.end_unix_s - rec.start_unix_s) / scale - bare_s);
                round_start = std::min(round_start, rec.start_unix_s / scale);
                round_end = std::max(round_end, rec.end_unix_s / scale);
                row.not_pass += rec.verdict != station::Verdict::pass;
                add_step_overruns(row, rec, cfg.recipe, scale);
            }
            sum_round += (round_end - round_start - bare_s) / n;
            row.cells += records.size();
        }
        const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
        row.cpu_per_channel_h_s = cpu / (static_cast<double>(row.cells) * cfg.recipe.duration_s() / 3600.0);
        row.round_overhead_per_cell_s = sum_round / rounds;
        set_overheads(row, std::move(overheads));
    }
    row.sim_cpu_per_channel_h_s =
        (cpu_s(RUSAGE_CHILDREN) - child_cpu0) / (static_cast<double>(row.cells) * cfg.recipe.duration_s() / 3600.0);
    return row;
}

}  // namespace

int main(int argc, char** argv) {
    double scale = 200;
    int rounds = 3;
    int warmup = 0;
    std::uint64_t seed = 7;
    std::vector<int> sizes{1, 8, 16};
    bool share = true;
    bool fresh_cells = true;
    std::string path = "controller";
    bool stagger = false;
    int page_size = station::OpenOptions{}.page_size_bytes;
    for (int k = 1; k + 1 < argc; k += 2) {
        const std::string a = argv[k];
        if (a == "--share-module-reads" || a == "--fresh-cells" || a == "--stagger") {
            const std::string v = argv[k + 1];
            if (v != "yes" && v != "no") {
                fmt::print(stderr, "bench_controller: {}: expected yes or no, got '{}'\n", a, v);
                return 2;
            }
            (a == "--fresh-cells" ? fresh_cells : a == "--stagger" ? stagger : share) = v == "yes";
            continue;
        }
        if (a == "--scale") scale = std::atof(argv[k + 1]);
        else if (a == "--rounds") rounds = std::atoi(argv[k + 1]);
        else if (a == "--warmup") warmup = std::max(0, std::atoi(argv[k + 1]));
        else if (a == "--page-size") page_size = std::atoi(argv[k + 1]);
        else if (a == "--path") path = argv[k + 1];
        else if (a == "--seed") seed = static_cast<std::uint64_t>(std::atoll(argv[k + 1]));
        else if (a == "--channels") {
            sizes.clear();
            std::string list = argv[k + 1];
            for (std::size_t at = 0; at <= list.size();) {
                const std::size_t comma = std::min(list.find(',', at), list.size());
                const int n = std::atoi(list.substr(at, comma - at).c_str());
                if (n < 1 || n > 64) {
                    fmt::print(stderr, "bench_controller: --channels: '{}' is not a count of 1..64\n", list);
                    return 2;
                }
                sizes.push_back(n);
                at = comma + 1;
            }
        } else {
            fmt::print(stderr, "bench_controller: unknown option '{}'\n", a);
            return 2;
        }
    }
    if (path != "controller" && path != "lanes" && path != "inline") {
        fmt::print(stderr, "bench_controller: --path: expected controller, lanes or inline, got '{}'\n", path);
        return 2;
    }
    if (path == "inline" && (sizes.size() != 1 || sizes.front() != 1)) {
        fmt::print(stderr, "bench_controller: --path inline runs one channel: give --channels 1\n");
        return 2;
    }
    if (rounds < 1) {
        fmt::print(stderr, "bench_controller: --rounds must be at least 1\n");
        return 2;
    }
    // The controller's per-cell events are not what is measured here.
    if (!std::getenv("EOL_LOG_LEVEL")) station::station_log("controller").set_level(spdlog::level::warn);
    const fs::path cli = EOL_CLI;
    const fs::path dir = fs::temp_directory_path() / fmt::format("bench_controller.{}", getpid());
    fs::create_directories(dir);
    fmt::print("bench_controller: recipe eol-18650 at {}x, {} rounds per size after {} warm-up round(s) (left out of "
               "every figure but \"1st round ms\"), `eolstation sim` in a child process, module reads {}, store pages {} "
               "bytes, {}; {}\n\n",
               scale, rounds, warmup, share ? "shared" : "one per request", page_size,
               fresh_cells ? "a fresh cell at each position for each round" : "each position's cell tested again",
               path == "controller" ? "the station controller"
               : path == "lanes"    ? "the step engine alone, instrument calls on lanes (no controller, monitor or store)"
                                    : "the step engine alone on one thread, driver calls inline (no controller, monitor "
                                      "or store)");
    fmt::print("{:>8} {:>6} {:>14} {:>16} {:>18} {:>10} {:>16} {:>15} {:>13} {:>18} {:>20} {:>8} {:>13}\n", "channels",
               "cells", "wall/cell ms", "bare instr. ms", "overhead/cell ms", "median ms", "overhead max ms",
               "round ms/cell", "1st round ms", "ctrl CPU s/ch-h", "bare sim CPU s/ch-h", "!pass", "tc reads/cell");
    std::vector<Row> rows;
    for (int n : sizes) {
        const Row r = path == "controller"
                          ? measure(cli, n, scale, rounds, warmup, seed, dir, share, page_size, fresh_cells, stagger)
                          : measure_steps(cli, n, scale, rounds, seed, dir, path == "inline", fresh_cells);
        const std::string first = warmup > 0 ? fmt::format("{:.2f}", r.first_overhead_mean_s * 1e3) : "-";
        fmt::print("{:>8} {:>6} {:>14.1f} {:>16.1f} {:>18.2f} {:>10.2f} {:>16.2f} {:>15.2f} {:>13} {:>18.2f} {:>20.2f} {:>8} "
                   "{:>13.1f}\n",
                   r.channels, r.cells, r.wall_per_cell_s * 1e3, r.bare_s * 1e3, r.overhead_mean_s * 1e3,
                   r.overhead_median_s * 1e3, r.overhead_max_s * 1e3, r.round_overhead_per_cell_s * 1e3, first,
                   r.cpu_per_channel_h_s,
                   r.sim_cpu_per_channel_h_s, r.not_pass, r.tc_reads_per_cell);
        rows.push_back(r);
    }
    fmt::print("\nwhere the overhead goes: mean wall ms per cell beyond each step's nominal duration\n{:>18}", "step");
    for (const Row& r : rows) fmt::print(" {:>10}", fmt::format("{} ch", r.channels));
    fmt::print("\n");
    for (const std::string& name : rows.front().step_order) {
        fmt::print("{:>18}", name);
        for (const Row& r : rows) {
            const auto it = r.over_ms.find(name);
            fmt::print(" {:>10.2f}", it == r.over_ms.end() ? 0.0 : it->second / static_cast<double>(r.cells));
        }
        fmt::print("\n");
    }
    fmt::print("\nwithin the steps and the store: mean wall ms per cell (instrument calls and fits outside the "
               "timed waits; \"late\": a window or reading ending past its nominal time)\n{:>18}", "phase");
    for (const Row& r : rows) fmt::print(" {:>10}", fmt::format("{} ch", r.channels));
    fmt::print("\n");
    for (const auto& [name, total] : rows.front().phase_ms) {
        fmt::print("{:>18}", name);
        for (const Row& r : rows) {
            const auto it = r.phase_ms.find(name);
            fmt::print(" {:>10.2f}", it == r.phase_ms.end() ? 0.0 : it->second / static_cast<double>(r.cells));
        }
        fmt::print("\n");
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    fmt::print("\npeak RSS of the controller process (after {} channels): {:.1f} MiB\n", sizes.back(),
               static_cast<double>(u.ru_maxrss) / 1024.0);
    fmt::print("target: overhead < 5 ms per cell (mean)\n");
    std::error_code ec;
    fs::remove_all(dir, ec);
    return 0;
}
