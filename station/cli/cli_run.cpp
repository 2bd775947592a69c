// eolstation run   --config FILE --serial S [--channel N] [--json] [--time-scale X]
// eolstation serve --config FILE [--time-scale X]
//
// Both drive the station through the controller (eol/station/controller.hpp)
// and write to the store the station file names (created when missing).
//
// run: one cell on one fixture position (default 1); prints its record (with
// --json one JSON object: serial, channel, verdict, reason, steps,
// measurements, fits, load_off_confirmed, held_hazardous). Exit 0 pass;
// 1 fail, hold, abort, error or an invalid serial; 2 usage or configuration.
// SIGTERM/SIGINT during the test abort it (load off, aborted record stored).
//
// serve: connects every instrument, then runs until SIGTERM or SIGINT. Work
// comes from standard input, one line per request:
//   CHANNEL SERIAL     test a cell on fixture position CHANNEL
//   abort CHANNEL      operator abort of the cell under test (load off, record stored)
//   reset CHANNEL      reset a faulted channel (its load input confirmed off)
//   status             one line per channel
//   # …                a comment; empty lines are ignored
// Replies, one line each, on standard output:
//   started channel N serial S
//   result channel N serial S verdict V[ reason R]
//   aborting channel N   (its result line follows: verdict abort)
//   reset channel N ok
//   status channel N STATE[ serial S verdict V]
//   error: line K: WHAT
// A bad line is an error line naming its number and never ends the server.
// Shutdown (SIGTERM/SIGINT): cells under test are aborted (their aborted
// records stored), every load channel switched off, the store closed; exit 0
// ("serve: stopped" on stderr), or 1 when a load could not be confirmed off.
//
// --time-scale: station seconds per wall second — 1 on a line (the default);
// the simulators' [sim] time_scale when driving `eolstation sim`.
#include <fmt/core.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "commands.hpp"
#include "eol/station/config.hpp"
#include "eol/station/controller.hpp"
#include "eol/station/plc.hpp"
#include "eol/station/text.hpp"

namespace asio = boost::asio;

namespace eol::cli {
namespace {

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json to_json(const station::CellResult& r) {
    nlohmann::json j;
    j["serial"] = r.serial;
    j["channel"] = r.position;
    j["verdict"] = r.verdict;
    j["reason"] = r.reason;
    j["load_off_confirmed"] = r.load_off_confirmed;
    j["held_hazardous"] = r.held_hazardous;
    j["stored"] = r.stored;
    j["steps"] = nlohmann::json::array();
    j["measurements"] = nlohmann::json::array();
    j["fits"] = nlohmann::json::array();
    if (!r.record) return j;
    const station::TestRecord& rec = *r.record;
    j["station_id"] = rec.station_id;
    j["recipe"] = rec.recipe_name;
    j["lot"] = rec.lot;
    j["production_date"] = rec.production_date;
    j["start_unix_s"] = rec.start_unix_s;
    j["end_unix_s"] = rec.end_unix_s;
    for (const auto& s : rec.steps)
        j["steps"].push_back({{"name", s.name},
                              {"kind", s.kind},
                              {"outcome", station::to_string(s.outcome)},
                              {"message", s.message},
                              {"duration_s", s.end_unix_s - s.start_unix_s}});
    for (const auto& m : rec.measurements)
        j["measurements"].push_back({{"name", m.name},
                                     {"value", number_or_null(m.value)},
                                     {"unit", m.unit},
                                     {"low", m.low ? number_or_null(*m.low) : nlohmann::json(nullptr)},
                                     {"high", m.high ? number_or_null(*m.high) : nlohmann::json(nullptr)},
                                     {"outcome", station::to_string(m.outcome)}});
    for (const auto& f : rec.fits) {
        nlohmann::json p = nlohmann::json::object();
        for (const auto& [k, v] : f.parameters) p[k] = number_or_null(v);
        j["fits"].push_back(
            {{"kind", f.kind}, {"converged", f.converged}, {"rmse", number_or_null(f.rmse)}, {"parameters", p}});
    }
    return j;
}

std::string limits_text(const station::Measurement& m) {
    if (m.low && m.high) return fmt::format("[{:g}, {:g}]", *m.low, *m.high);
    if (m.low) return fmt::format(">= {:g}", *m.low);
    if (m.high) return fmt::format("<= {:g}", *m.high);
    return "no limits";
}

std::string to_text(const station::CellResult& r) {
    std::string out = fmt::format("serial {}  channel {}  verdict {}\n", r.serial, r.position, r.verdict);
    if (!r.reason.empty()) out += fmt::format("reason {}\n", station::printable(r.reason));
    if (r.record) {
        const station::TestRecord& rec = *r.record;
        out += fmt::format("recipe {}  station {}  lot {}  produced {}\n", rec.recipe_name, rec.station_id,
                           rec.lot.empty() ? "-" : rec.lot, rec.production_date.empty() ? "-" : rec.production_date);
        for (const auto& s : rec.steps)
            out += fmt::format("  step {:<18} {:<5} {:<8} {:7.1f} s{}\n", s.name, s.kind, station::to_string(s.outcome),
                               s.end_unix_s - s.start_unix_s,
                               s.message.empty() ? "" : "  " + station::printable(s.message));
        for (const auto& m : rec.measurements)
            out += fmt::format("  {:<16} {:>12.6g} {:<4} {:<16} {}\n", m.name, m.value, m.unit, limits_text(m),
                               station::to_string(m.outcome));
        for (const auto& f : rec.fits) {
            out += fmt::format("  fit {} ({}converged, rmse {:.3g})", f.kind, f.converged ? "" : "NOT ", f.rmse);
            for (const auto& [k, v] : f.parameters) out += fmt::format(" {}={:.4g}", k, v);
            out += "\n";
        }
    }
    if (!r.load_off_confirmed) out += "WARNING: the load input could not be confirmed off\n";
    if (r.held_hazardous) out += "held in quarantine as hazardous (over-temperature)\n";
    return out;
}

/// One line at a time to stdout, flushed, from any thread.
class LineOut {
public:
    void line(const std::string& text) {
        std::lock_guard lk(m_);
        std::fputs(text.c_str(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
    }

private:
    std::mutex m_;
};

station::StationConfig load_config(const std::string& file) { return station::load_station_config(file); }

station::ControllerOptions controller_options(double time_scale) {
    if (!(time_scale > 0) || !std::isfinite(time_scale))
        throw station::UsageError(fmt::format("--time-scale {}: must be a positive number", time_scale));
    station::ControllerOptions o;
    o.time_scale = time_scale;
    return o;
}

// ------------------------------------------------------------------ run

struct RunOptions {
    std::string config;
    std::string serial;
    int channel = 1;
    bool json = false;
    double time_scale = 1.0;
};

void run_one(const RunOptions& o) {
    station::Controller controller(load_config(o.config), controller_options(o.time_scale));
    bool known = false;
    for (const auto& s : controller.snapshot()) known = known || s.position == o.channel;
    if (!known) throw station::UsageError(fmt::format("--channel {}: no such fixture position in {}", o.channel, o.config));

    // SIGTERM / SIGINT abort the cell (an event loop of its own, beside the test).
    // A shutdown, not just an abort: a signal that comes before the cell has
    // started makes start() refuse, instead of being lost.
    asio::io_context io;
    asio::signal_set signals(io, SIGTERM, SIGINT);
    std::vector<std::string> signal_problems;
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (!ec) signal_problems = controller.shutdown(fmt::format("station shutdown ({})", sig == SIGINT ? "SIGINT" : "SIGTERM"));
    });
    std::thread loop([&] { io.run(); });
    station::CellResult r;
    try {
        r = controller.test(o.channel, o.serial);
    } catch (const station::ControllerRefused& e) {
        io.stop();
        loop.join();
        fmt::print(stderr, "eolstation run: {}\n", e.what());
        set_exit(station::ExitCode::domain_no);
        return;
    } catch (...) {
        io.stop();
        loop.join();
        throw;
    }
    auto problems = controller.shutdown("run finished");  // {} when a signal's shutdown ran first
    io.stop();
    loop.join();  // a signal's shutdown, if any, has finished
    problems.insert(problems.end(), signal_problems.begin(), signal_problems.end());
    if (o.json) std::cout << to_json(r).dump() << std::endl;
    else std::fputs(to_text(r).c_str(), stdout);
    for (const auto& p : problems) fmt::print(stderr, "eolstation run: {}\n", p);
    if (r.verdict != "pass" || !problems.empty()) set_exit(station::ExitCode::domain_no);
}

// ------------------------------------------------------------------ serve

struct ServeOptions {
    std::string config;
    double time_scale = 1.0;
};

std::string result_line(const station::CellResult& r) {
    std::string l = fmt::format("result channel {} serial {} verdict {}", r.position, r.serial, r.verdict);
    if (!r.reason.empty()) l += " reason " + station::printable(r.reason);
    return l;
}

/// A whole decimal number in 1..9999, else nullopt.
std::optional<int> position_number(const std::string& text) {
    if (text.empty() || text.size() > 4) return std::nullopt;
    int v = 0;
    for (char ch : text) {
        if (ch < '0' || ch > '9') return std::nullopt;
        v = v * 10 + (ch - '0');
    }
    return v;
}

void handle_line(asio::io_context& io, station::Controller& controller, LineOut& out, const std::string& line, long n) {
    std::istringstream in(line);
    std::string first;
    in >> first;
    if (first.empty() || first[0] == '#') return;
    std::vector<std::string> rest;
    for (std::string w; in >> w;) rest.push_back(w);
    auto error = [&](const std::string& what) { out.line(fmt::format("error: line {}: {}", n, what)); };
    try {
        if (first == "status") {
            if (!rest.empty()) return error("status takes no arguments");
            for (const auto& s : controller.snapshot()) {
                std::string l = fmt::format("status channel {} {}", s.position, station::to_string(s.state));
                if (!s.serial.empty()) l += fmt::format(" serial {}", s.serial);
                if (!s.verdict.empty()) l += fmt::format(" verdict {}", s.verdict);
                out.line(l);
            }
            return;
        }
        if (first == "abort") {
            if (rest.size() != 1) return error("abort takes one channel number: abort CHANNEL");
            const auto pos = position_number(rest[0]);
            if (!pos) return error(fmt::format("channel '{}' is not a number", station::printable(rest[0])));
            if (!controller.abort(*pos, fmt::format("operator abort (stdin line {})", n)))
                return error(fmt::format("channel {} is not testing", *pos));
            out.line(fmt::format("aborting channel {}", *pos));
            return;
        }
        if (first == "reset") {
            if (rest.size() != 1) return error("reset takes one channel number: reset CHANNEL");
            const auto pos = position_number(rest[0]);
            if (!pos) return error(fmt::format("channel '{}' is not a number", station::printable(rest[0])));
            controller.fault_reset(*pos);
            out.line(fmt::format("reset channel {} ok", *pos));
            return;
        }
        const auto pos = position_number(first);
        if (!pos)
            return error(fmt::format("'{}' is neither a channel number nor a command (CHANNEL SERIAL, abort CHANNEL, reset CHANNEL, status)",
                                     station::printable(first)));
        if (rest.empty()) return error(fmt::format("channel {}: no serial (CHANNEL SERIAL)", *pos));
        // A serial may be typed with spaces (the scheme drops them).
        std::string serial;
        for (const auto& w : rest) serial += (serial.empty() ? "" : " ") + w;
        // The result line is posted to the event loop, so it always comes
        // after this request's own line ("started …"), which is printed here.
        auto finished = std::make_shared<std::atomic<bool>>(false);
        controller.start(*pos, serial, [&io, &out, finished](const station::CellResult& r) {
            finished->store(true);
            asio::post(io, [&out, line = result_line(r)] { out.line(line); });
        });
        if (!finished->load()) {
            for (const auto& s : controller.snapshot())
                if (s.position == *pos) out.line(fmt::format("started channel {} serial {}", *pos, s.serial));
        }
    } catch (const std::exception& e) {
        error(station::printable(e.what()));
    }
}

void serve(const ServeOptions& o) {
    station::Controller controller(load_config(o.config), controller_options(o.time_scale));
    LineOut out;
    asio::io_context io;
    asio::signal_set signals(io, SIGTERM, SIGINT);
    controller.connect_all();
    const auto plc = station::plc::start_plc_if_configured(io, controller);  // [plc]: docs/plc.md
    fmt::print(stderr, "serve: station {}; {} positions; store {}; time scale {}x; lines 'CHANNEL SERIAL' on stdin; "
               "stop with SIGTERM or Ctrl-C\n",
               controller.config().station_id, controller.snapshot().size(), controller.store_path().string(),
               o.time_scale);

    // stdin is read by a thread of its own (a file or a terminal cannot be
    // waited on by the event loop portably); each line is handed to the loop,
    // which runs every request in order. It stops posting once stopped.
    struct Shared {
        std::mutex mutex;
        bool stopped = false;
    };
    auto shared = std::make_shared<Shared>();
    std::thread([&io, &controller, &out, shared] {
        std::string line;
        bool too_long = false;
        for (long n = 1; read_bounded_line(std::cin, line, too_long); ++n) {
            std::lock_guard lk(shared->mutex);
            if (shared->stopped) return;
            if (too_long) {
                out.line(fmt::format("error: line {}: longer than {} bytes, ignored", n, kMaxInputLineBytes));
                continue;
            }
            asio::post(io, [&io, &controller, &out, line, n] { handle_line(io, controller, out, line, n); });
        }
    }).detach();

    int got = 0;
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (!ec) got = sig;
        io.stop();
    });
    io.run();
    {
        std::lock_guard lk(shared->mutex);
        shared->stopped = true;
    }
    const std::string why = fmt::format("station shutdown ({})", got == SIGINT ? "SIGINT" : "SIGTERM");
    fmt::print(stderr, "serve: {}: aborting cells under test, loads off\n", why);
    const auto problems = controller.shutdown(why);
    // The results of the cells aborted just now (posted by their workers).
    io.restart();
    io.poll();
    for (const auto& p : problems) fmt::print(stderr, "serve: {}\n", p);
    fmt::print(stderr, "serve: stopped\n");
    if (!problems.empty()) set_exit(station::ExitCode::domain_no);
}

}  // namespace

void add_run_commands(CLI::App& app) {
    auto r = std::make_shared<RunOptions>();
    auto* run = app.add_subcommand("run", "Test one cell on one fixture position and print its record "
                                          "(exit 0 pass, 1 fail/hold/abort/error)");
    run->add_option("--config", r->config, "Station configuration file")->required();
    run->add_option("--serial", r->serial, "The cell's serial as typed or scanned")->required();
    run->add_option("--channel", r->channel, "Fixture position (1-based)")->capture_default_str();
    run->add_flag("--json", r->json, "Print the record as one JSON object");
    run->add_option("--time-scale", r->time_scale,
                    "Station seconds per wall second (1 on a line; the simulators' [sim] time_scale)")
        ->capture_default_str();
    run->callback([r] { run_one(*r); });

    auto s = std::make_shared<ServeOptions>();
    auto* serve_cmd = app.add_subcommand("serve", "Run the station until SIGTERM: 'CHANNEL SERIAL' lines on stdin, "
                                                  "one result line per cell on stdout");
    serve_cmd->add_option("--config", s->config, "Station configuration file")->required();
    serve_cmd->add_option("--time-scale", s->time_scale,
                          "Station seconds per wall second (1 on a line; the simulators' [sim] time_scale)")
        ->capture_default_str();
    serve_cmd->callback([s] { serve(*s); });
}

}  // namespace eol::cli
