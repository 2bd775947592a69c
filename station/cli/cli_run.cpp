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

#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <optional>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
#include "eol/station/log.hpp"
#include "eol/station/panel.hpp"
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
    if (r.fixture_alarm) j["fixture_alarm"] = *r.fixture_alarm;
    if (r.golden_passed) j["golden_check"] = {{"passed", *r.golden_passed}, {"reason", r.golden_reason}};
    j["stored"] = r.stored;
    if (!r.trip_cause.empty())
        j["trip"] = {{"cause", r.trip_cause}, {"to_off_s", r.trip_to_off_s >= 0 ? nlohmann::json(r.trip_to_off_s) : nlohmann::json(nullptr)}};
    if (r.screening) {
        const station::TestTimeVerdict& v = *r.screening;
        nlohmann::json s{{"kind", station::to_string(v.kind)},
                         {"reason", v.reason},
                         {"cell_model", v.cell_model},
                         {"history_cells", v.history_cells},
                         {"history_lots", v.history_lots},
                         {"distance_sq", number_or_null(v.distance_sq)},
                         {"cutoff_sq", number_or_null(v.cutoff_sq)},
                         {"notes", v.notes}};
        nlohmann::json features = nlohmann::json::object();
        for (std::size_t k = 0; k < v.features.size() && k < v.values.size(); ++k)
            features[v.features[k]] = number_or_null(v.values[k]);
        s["features"] = features;
        s["pat"] = nlohmann::json::array();
        for (const auto& p : v.pat)
            s["pat"].push_back({{"feature", p.feature}, {"value", number_or_null(p.value)},
                                {"low", number_or_null(p.low)}, {"high", number_or_null(p.high)}});
        s["top"] = nlohmann::json::array();
        for (const auto& t : v.top) s["top"].push_back({{"feature", t.feature}, {"share", t.share}, {"z", t.z}});
        j["screening"] = s;
    }
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
    if (!r.trip_cause.empty())
        out += r.trip_to_off_s >= 0
                   ? fmt::format("safety monitor tripped ({}): load input off {:.1f} ms after the reading\n",
                                 r.trip_cause, r.trip_to_off_s * 1e3)
                   : fmt::format("safety monitor tripped ({}): load input NOT confirmed off by the monitor\n",
                                 r.trip_cause);
    if (r.screening) out += fmt::format("screening at test: {}: {}\n", station::to_string(r.screening->kind),
                                        station::printable(r.screening->reason));
    if (!r.load_off_confirmed) out += "WARNING: the load input could not be confirmed off\n";
    if (r.held_hazardous) out += "held in quarantine as hazardous (over-temperature)\n";
    if (r.fixture_alarm) out += "position out of service (fixture health): " + *r.fixture_alarm + "\n";
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

/// Waits for one cell's result; on a terminal (stderr a tty) prints the
/// channel's progress — step, elapsed station time, live V/I/T — every
/// 0.5 s on one line, and the controller's log shows warnings only (unless
/// EOL_LOG_LEVEL says otherwise); elsewhere the controller's log (one line
/// per step and per cell, docs/controller.md) is the progress.
class Progress {
public:
    Progress(station::Controller& c, int position) : c_(c), position_(position), tty_(isatty(fileno(stderr)) != 0) {
        if (!tty_) return;
        if (!std::getenv("EOL_LOG_LEVEL")) station::station_log("controller").set_level(spdlog::level::warn);
        ticker_ = std::thread([this] { tick(); });
    }
    ~Progress() { stop(); }
    void done(const station::CellResult& r) {
        std::lock_guard lk(m_);
        result_ = r;
        cv_.notify_all();
    }
    station::CellResult wait() {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return result_.has_value(); });
        lk.unlock();
        stop();
        return *result_;
    }
    void stop() {
        {
            std::lock_guard lk(m_);
            stopping_ = true;
            cv_.notify_all();
        }
        if (ticker_.joinable()) ticker_.join();
    }

private:
    void tick() {
        std::unique_lock lk(m_);
        while (!stopping_ && !result_) {
            cv_.wait_for(lk, std::chrono::milliseconds(500));
            if (stopping_ || result_) break;
            lk.unlock();
            for (const auto& s : c_.snapshot()) {
                if (s.position != position_ || s.state != station::ChannelState::testing) continue;
                fmt::print(stderr, "\r\033[Kchannel {} {} step {}/{} {:<12} {:7.1f} s  V {:.3f}  I {:.3f} A  T {:.1f} °C",
                           s.position, s.serial, s.step_index + 1, s.step_count, s.step, s.elapsed_s, s.v_v, s.i_a,
                           s.temp_c);
            }
            lk.lock();
        }
        fmt::print(stderr, "\r\033[K");
    }

    station::Controller& c_;
    int position_;
    bool tty_;
    std::mutex m_;
    std::condition_variable cv_;
    std::optional<station::CellResult> result_;
    bool stopping_ = false;
    std::thread ticker_;
};

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

    // SIGTERM / SIGINT abort the cell: the signal set is on the controller's
    // loop; the abort reaches the run at once (its next wait) and test()
    // returns the aborted result. A signal before the cell has started is
    // kept and refuses it.
    auto signalled = std::make_shared<std::atomic<int>>(0);
    asio::signal_set signals(controller.executor(), SIGTERM, SIGINT);
    signals.async_wait([&controller, signalled](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        signalled->store(sig);
        controller.abort_all(fmt::format("station shutdown ({})", sig == SIGINT ? "SIGINT" : "SIGTERM"));
    });
    Progress progress(controller, o.channel);
    station::CellResult r;
    try {
        if (signalled->load() != 0) throw station::ControllerRefused("station shutdown before the cell started");
        controller.start(o.channel, o.serial, [&progress](const station::CellResult& res) { progress.done(res); });
        if (const int sig = signalled->load(); sig != 0)  // came between the check and start()
            controller.abort_all(fmt::format("station shutdown ({})", sig == SIGINT ? "SIGINT" : "SIGTERM"));
        r = progress.wait();
    } catch (const station::ControllerRefused& e) {
        progress.stop();
        signals.cancel();
        fmt::print(stderr, "eolstation run: {}\n", e.what());
        set_exit(station::ExitCode::domain_no);
        return;
    }
    signals.cancel();
    auto problems = controller.shutdown("run finished");
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
    if (r.fixture_alarm) l += "; position out of service: " + station::printable(*r.fixture_alarm);
    if (r.golden_passed)
        l += std::string("; golden check ") + (*r.golden_passed ? "passed: " : "FAILED: ") + station::printable(r.golden_reason);
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

/// One request's reply lines in order: "started …" before its result, even
/// when the result comes first (a hold, a cell refused at once).
struct Reply {
    std::mutex m;
    bool started_printed = false;
    std::optional<std::string> result;
};

void handle_line(station::Controller& controller, LineOut& out, const std::string& line, long n) {
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
                if (s.state == station::ChannelState::testing && !s.step.empty())
                    l += fmt::format(" step {} elapsed_s {:.1f}", s.step, s.elapsed_s);
                out.line(l);
            }
            for (const auto& i : controller.instruments())
                out.line(fmt::format("status instrument {} {} commands {} errors {} reconnects {}{}", i.name,
                                     station::to_string(i.state), i.commands, i.errors, i.reconnects,
                                     std::isfinite(i.command_p99_s)
                                         ? fmt::format(" p50_ms {:.2f} p99_ms {:.2f}", i.command_p50_s * 1e3,
                                                       i.command_p99_s * 1e3)
                                         : std::string()));
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
        auto reply = std::make_shared<Reply>();
        controller.start(*pos, serial, [&out, reply](const station::CellResult& r) {
            std::lock_guard lk(reply->m);
            if (reply->started_printed) out.line(result_line(r));
            else reply->result = result_line(r);
        });
        std::lock_guard lk(reply->m);
        if (!reply->result) {  // not answered at once (a hold is): it is testing
            for (const auto& s : controller.snapshot())
                if (s.position == *pos) out.line(fmt::format("started channel {} serial {}", *pos, s.serial));
        }
        reply->started_printed = true;
        if (reply->result) out.line(*reply->result);
    } catch (const std::exception& e) {
        error(station::printable(e.what()));
    }
}

void serve(const ServeOptions& o) {
    station::Controller controller(load_config(o.config), controller_options(o.time_scale));
    LineOut out;
    controller.connect_all();
    // The PLC server on the controller's loop ([plc]: docs/plc.md).
    const auto plc = station::plc::start_plc_if_configured(controller.executor(), controller);
    // The operator panel on the same loop ([panel]: docs/panel.md); a stale
    // PLC heartbeat is one of its alarms.
    std::function<bool()> plc_stale;
    if (plc) plc_stale = [p = plc.get()] { return p->heartbeat_stale(); };
    const auto panel = station::web::start_panel_if_configured(controller.executor(), controller, plc_stale);
    fmt::print(stderr, "serve: station {}; {} positions; store {}; time scale {}x; lines 'CHANNEL SERIAL' on stdin; "
               "stop with SIGTERM or Ctrl-C\n",
               controller.config().station_id, controller.snapshot().size(), controller.store_path().string(),
               o.time_scale);

    // Signals on the controller's loop; this thread waits for one.
    std::promise<int> signal_promise;
    auto got_signal = signal_promise.get_future();
    asio::signal_set signals(controller.executor(), SIGTERM, SIGINT);
    signals.async_wait([&signal_promise](const boost::system::error_code& ec, int sig) {
        signal_promise.set_value(ec ? 0 : sig);
    });

    // stdin is read by a thread of its own (a file or a terminal cannot be
    // waited on by the event loop portably), which handles each request in
    // order through the controller's thread-safe calls; it stops handling
    // once the station stops.
    struct Shared {
        std::mutex mutex;
        bool stopped = false;
    };
    auto shared = std::make_shared<Shared>();
    std::thread([&controller, &out, shared] {
        std::string line;
        bool too_long = false;
        for (long n = 1; read_bounded_line(std::cin, line, too_long); ++n) {
            std::lock_guard lk(shared->mutex);
            if (shared->stopped) return;
            if (too_long) {
                out.line(fmt::format("error: line {}: longer than {} bytes, ignored", n, kMaxInputLineBytes));
                continue;
            }
            handle_line(controller, out, line, n);
        }
    }).detach();

    const int got = got_signal.get();
    {
        std::lock_guard lk(shared->mutex);  // waits for a request being handled
        shared->stopped = true;
    }
    const std::string why = fmt::format("station shutdown ({})", got == SIGINT ? "SIGINT" : "SIGTERM");
    fmt::print(stderr, "serve: {}: aborting cells under test, loads off\n", why);
    // The results of the cells aborted now are printed by their callbacks
    // before shutdown() returns.
    // The panel first: shutdown() ends the loop the panel's closing runs on.
    if (panel) panel->stop();
    const auto problems = controller.shutdown(why);
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
    run->footer("Events (cell, steps, instruments, safety trips) go to stderr as log lines; EOL_LOG_LEVEL=debug also "
                "says where each step's time went (docs/controller.md, \"The event log\").");
    run->callback([r] { run_one(*r); });

    auto s = std::make_shared<ServeOptions>();
    auto* serve_cmd = app.add_subcommand("serve", "Run the station until SIGTERM: 'CHANNEL SERIAL' lines on stdin, "
                                                  "one result line per cell on stdout");
    serve_cmd->add_option("--config", s->config, "Station configuration file")->required();
    serve_cmd->add_option("--time-scale", s->time_scale,
                          "Station seconds per wall second (1 on a line; the simulators' [sim] time_scale)")
        ->capture_default_str();
    serve_cmd->footer("Events (cells, steps, instruments, safety trips, PLC, panel) go to stderr as log lines; "
                      "EOL_LOG_LEVEL = trace, debug, info (default), warn, error, critical or off.");
    serve_cmd->callback([s] { serve(*s); });
}

}  // namespace eol::cli
