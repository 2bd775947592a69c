#include "eol/station/steps.hpp"

#include <fmt/core.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <exception>
#include <map>
#include <stdexcept>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "eol/instruments/errors.hpp"

namespace eol::station {

namespace asio = boost::asio;
using asio::awaitable;

// ================================================================ clocks

namespace {
double steady_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double system_unix_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

ScaledWallClock::ScaledWallClock(double time_scale) : time_scale_(time_scale), t0_steady_s_(steady_s()) {
    if (!(time_scale > 0) || !std::isfinite(time_scale))
        throw std::invalid_argument(fmt::format("time scale {} is not a positive number", time_scale));
}
double ScaledWallClock::now_s() const { return (steady_s() - t0_steady_s_) * time_scale_; }
double ScaledWallClock::unix_now_s() const { return system_unix_s(); }
awaitable<void> ScaledWallClock::sleep_s(double station_s) {
    if (!(station_s > 0)) co_return;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(station_s / time_scale_)));
    co_await timer.async_wait(asio::use_awaitable);
}

awaitable<void> StepClock::sleep_until_s(double station_t) { co_await sleep_s(station_t - now_s()); }

StepFits StepFits::standard() {
    StepFits f;
    f.ecm = [](const models::Series& s, const models::EcmOptions& o) { return models::fit_ecm(s, o); };
    f.thermal = [](const models::Series& s, const models::ThermalOptions& o) { return models::fit_thermal(s, o); };
    return f;
}

namespace {

/// How an over-temperature abort's step message begins
/// (aborted_for_over_temperature() looks for it).
constexpr std::string_view kOverTemperature = "cell temperature";

/// The least margin, in wall seconds, of a step's default timeout over its
/// duration on a clock that follows the wall clock (docs/controller.md).
constexpr double kDefaultTimeoutWallS = 5.0;

using Quantities = std::map<std::string, double, std::less<>>;

/// Ends the run early: a safety limit (outcome aborted) or a step that
/// cannot run (outcome error).
struct StepStop {
    StepOutcome outcome;
    std::string reason;
};

ModelFit fit_record(const char* kind, bool converged, double rmse) {
    ModelFit m;
    m.kind = kind;
    m.converged = converged;
    m.rmse = rmse;
    return m;
}
void put(ModelFit& m, const std::string& name, const models::Estimate& e) {
    m.parameters[name] = e.value;
    m.ci95[name] = Interval{e.value - e.ci95, e.value + e.ci95};
}

class Run {
public:
    Run(const Recipe& r, const Limits& l, const ChannelIo& io, const RunContext& ctx, const StepFits& fits)
        : recipe_(r), limits_(l), io_(io), ctx_(ctx), clock_(*ctx.clock), fits_(fits) {}

    awaitable<TestRecord> run(const CellIdentity& cell);

private:
    /// A pulse's circuit fit still running, and its place among the record's
    /// fits (a placeholder until the fit is done).
    struct PendingFit {
        Deferred<models::EcmFit> fit;
        std::size_t slot = 0;
    };

    template <class F>
    auto with_load(F f) const {
        check_deadline();
        return on_lane(io_.load_lane, [this, f]() mutable { return f(*io_.load); });
    }
    template <class F>
    auto with_thermo(F f) const {
        check_deadline();
        return on_lane(io_.thermo_lane, [this, f]() mutable { return f(*io_.thermo); });
    }

    /// The wall time one call to an instrument takes from here (its lane's
    /// queue included), a running mean of the last ones: what a read has to
    /// start early by to complete at the end of its window.
    struct CallTime {
        double wall_s = 0;
        void add(double s) { wall_s = wall_s > 0 ? 0.7 * wall_s + 0.3 * s : s; }
    };
    static double wall_now_s() { return steady_s(); }
    /// Whether the pulse's last temperatures are read beside the logger's
    /// fetch (both(), once a cell): on a clock that follows the wall clock; on virtual
    /// or simulated time one after the other, as the records of a seed were
    /// made (which reads happen must not follow the threads' timing).
    bool reads_beside() const { return clock_.station_per_wall_s() > 0 && io_.thermo_lane != io_.load_lane; }
    /// Station seconds to start `calls` early so that they complete by the
    /// end of a window of `window_s`: their measured wall time on a clock
    /// that follows the wall clock, at most a tenth of the window (the
    /// reading stays at the window's end); 0 on simulated or virtual time
    /// (no wall time to plan for, and the records stay the same for a seed).
    double lead_s(double calls_wall_s, double window_s) const {
        const double scale = clock_.station_per_wall_s();
        if (!(scale > 0)) return 0.0;
        return std::clamp(calls_wall_s * scale, 0.0, 0.1 * window_s);
    }

    double now_s() const { return clock_.now_s(); }

    // RunContext::on_phase: the wall time since the last mark.
    double phase_mark_s_ = 0.0;
    void mark() { phase_mark_s_ = wall_now_s(); }
    void phase(const char* name) {
        const double t = wall_now_s();
        if (ctx_.on_phase) ctx_.on_phase(name, 1e3 * (t - phase_mark_s_));
        phase_mark_s_ = t;
    }
    // A window's end past its nominal end (station time → wall ms).
    void late(const char* name, double end_s) {
        const double scale = clock_.station_per_wall_s();
        if (ctx_.on_phase && scale > 0) ctx_.on_phase(name, 1e3 * std::max(0.0, now_s() - end_s) / scale);
        mark();
    }

    /// The running step's timeout_s: checked before every command and at
    /// every wait (a wait ends at the deadline), outcome timeout.
    void check_deadline() const {
        if (now_s() > deadline_s_)
            throw StepStop{StepOutcome::timeout,
                           fmt::format("ran past its timeout_s = {} s (station time)", step_timeout_s_)};
    }
    awaitable<void> sleep_s(double station_s) {
        check_deadline();
        co_await clock_.sleep_s(std::min(station_s, deadline_s_ - now_s() + 1e-3));
        check_deadline();
    }
    awaitable<void> sleep_until_s(double station_t) { co_await sleep_s(station_t - now_s()); }

    /// While it lives, station time does not count against the step's
    /// timeout: computing (a fit) is not the instrument's time, and a
    /// compressed clock multiplies it. Moves the deadline on when it ends,
    /// whether the computation returned or threw.
    class ComputingTime {
    public:
        explicit ComputingTime(Run& r) : r_(r), t0_(r.now_s()) {}
        ~ComputingTime() { r_.deadline_s_ += r_.now_s() - t0_; }
        ComputingTime(const ComputingTime&) = delete;
        ComputingTime& operator=(const ComputingTime&) = delete;

    private:
        Run& r_;
        double t0_;
    };

    void tell(bool on, double current_a, bool profile) const {
        if (ctx_.on_demand) ctx_.on_demand(LoadDemand{on, current_a, profile});
    }

    // The input's state as this run last set it: `off` only after a
    // confirmed input_off() (a rest's), so that the next step need not send
    // it again. Making safe never relies on it (safe_off always sends).
    enum class Input { unknown, off, on };

    awaitable<void> input_off() {
        const int ch = io_.load_channel;
        input_ = Input::unknown;
        co_await timed_load([ch](instruments::ElectronicLoad& l) { l.set_input(ch, false); });
        input_ = Input::off;
        tell(false, 0, false);
    }
    /// input_off() unless this run switched it off already (the step before).
    awaitable<void> ensure_off() {
        if (input_ != Input::off) co_await input_off();
    }
    awaitable<void> safe_off() {
        try {
            co_await input_off();
        } catch (...) {
            // The instrument itself failed; the step's reason already says so.
        }
    }
    /// CC at `current_a` with the input on; with the input already on (a
    /// DCIR's second level) the level alone.
    awaitable<void> draw(double current_a) {
        tell(true, current_a, false);
        const int ch = io_.load_channel;
        const bool on = input_ == Input::on;
        input_ = Input::unknown;
        co_await timed_load([ch, current_a, on](instruments::ElectronicLoad& l) {
            l.set_mode(ch, instruments::LoadMode::cc, current_a);
            if (!on) l.set_input(ch, true);
        });
        input_ = Input::on;
    }
    template <class F>
    auto timed_load(F f) -> awaitable<std::invoke_result_t<F&, instruments::ElectronicLoad&>> {
        const double t0 = wall_now_s();
        if constexpr (std::is_void_v<std::invoke_result_t<F&, instruments::ElectronicLoad&>>) {
            co_await with_load(std::move(f));
            load_call_.add(wall_now_s() - t0);
        } else {
            auto r = co_await with_load(std::move(f));
            load_call_.add(wall_now_s() - t0);
            co_return r;
        }
    }
    awaitable<instruments::LoadReading> measure() {
        const int ch = io_.load_channel;
        co_return co_await timed_load([ch](instruments::ElectronicLoad& l) { return l.measure(ch); });
    }
    awaitable<double> measure_voltage_v() {
        const int ch = io_.load_channel;
        co_return co_await timed_load([ch](instruments::ElectronicLoad& l) { return l.measure_voltage_v(ch); });
    }

    /// Cell and ambient temperature; throws InstrumentError for a channel that
    /// does not read ok (an open thermocouple must not pass as a temperature).
    awaitable<std::pair<double, double>> temperatures() {
        const double t0 = wall_now_s();
        const double requested_s = steady_s();
        ThermoShare* share = io_.thermo_share;
        const auto all = co_await with_thermo(
            [share, requested_s](instruments::TemperatureReader& t) { return read_module(t, share, requested_s); });
        auto pick = [](const instruments::TemperatureReader& reader, const auto& readings, int ch) {
            if (ch < 0 || static_cast<std::size_t>(ch) >= readings.size())
                throw instruments::InstrumentError(reader.name(), "read channel " + std::to_string(ch),
                                                   "no such channel");
            const auto& r = readings[static_cast<std::size_t>(ch)];
            if (r.status != instruments::TcStatus::ok)
                throw instruments::InstrumentError(reader.name(), "read channel " + std::to_string(ch),
                                                   std::string("thermocouple ") + to_string(r.status));
            return r.temp_c;
        };
        const double cell = pick(*io_.thermo, all, io_.thermo_channel);
        double amb = std::nan("");
        if (io_.ambient_channel && io_.ambient_thermo && io_.ambient_thermo != io_.thermo) {
            // The station's ambient on another module, through that module's lane.
            check_deadline();
            instruments::TemperatureReader* reader = io_.ambient_thermo;
            ThermoShare* other_share = io_.ambient_share;
            const double other_requested_s = steady_s();
            const auto other = co_await on_lane(io_.ambient_lane, [reader, other_share, other_requested_s] {
                return read_module(*reader, other_share, other_requested_s);
            });
            amb = pick(*reader, other, *io_.ambient_channel);
        } else if (io_.ambient_channel) {
            amb = pick(*io_.thermo, all, *io_.ambient_channel);
        }
        thermo_call_.add(wall_now_s() - t0);
        co_return std::pair<double, double>{cell, amb};
    }

    void check_safety(double v_v, double temp_c, bool loaded) const {
        if (temp_c > limits_.temp_abort_c)
            throw StepStop{StepOutcome::aborted, fmt::format("{} {:.1f} °C above the abort limit {:.1f} °C",
                                                             kOverTemperature, temp_c, limits_.temp_abort_c)};
        if (loaded && v_v < limits_.v_min_v)
            throw StepStop{StepOutcome::aborted, fmt::format("terminal voltage {:.3f} V under load below {:.3f} V",
                                                             v_v, limits_.v_min_v)};
    }

    void check_current(double current_a) const {
        if (current_a > limits_.i_max_a)
            throw StepStop{StepOutcome::error,
                           fmt::format("asks {} A, more than limits.i_max_a = {} A", current_a, limits_.i_max_a)};
    }

    void append_sample(double t_s, double i_a, double v_v, double temp_c, double amb_c, bool pulse) {
        if (ctx_.trace == RunContext::Trace::none || (ctx_.trace == RunContext::Trace::pulse_only && !pulse)) return;
        auto& tr = out_.trace;
        if (!tr.t_s.empty() && t_s <= tr.t_s.back()) t_s = std::nextafter(tr.t_s.back(), INFINITY);
        tr.t_s.push_back(t_s);
        tr.i_a.push_back(i_a);
        tr.v_v.push_back(v_v);
        tr.t_cell_c.push_back(temp_c);
        tr.t_amb_c.push_back(std::isfinite(amb_c) ? amb_c : temp_c);
    }

    // ---- the steps ----

    // Timed from the step's start, so that the commands' own time is not
    // added to the step's (it was ~1 % of every rest on a compressed clock).
    //
    // A rest right before a pulse programs the pulse's list and data logger
    // (ElectronicLoad::prepare_pulse: the input stays off, nothing is armed)
    // in its last part, so that the pulse starts with the input on, the
    // arming and the trigger only: from half the rest, or `kArmBeforeWallS`
    // of wall time before its end, whichever is later (1 station second on
    // simulated or virtual time).
    static constexpr double kArmBeforeWallS = 0.2;
    awaitable<void> rest(const RestParams& p, const PulseParams* next_pulse) {
        const double t0 = now_s();
        co_await input_off();
        // Not a pulse asking more than the limits allow: its own step says so.
        if (next_pulse && next_pulse->current_a <= limits_.i_max_a) {
            const double scale = clock_.station_per_wall_s();
            const double before_s = std::min(0.5 * p.duration_s, scale > 0 ? kArmBeforeWallS * scale : 1.0);
            co_await sleep_until_s(t0 + p.duration_s - before_s);
            const instruments::PulseSpec spec = pulse_spec(*next_pulse);
            const int ch = io_.load_channel;
            try {
                co_await timed_load([ch, &spec](instruments::ElectronicLoad& l) { l.prepare_pulse(ch, spec); });
            } catch (const instruments::InstrumentError&) {
                // The pulse programs it again and reports a failure in its own step.
            }
        }
        co_await sleep_until_s(t0 + p.duration_s);
    }

    // Samples on a grid from the first one; the last one timed to complete
    // at the grid's end. The input is already off after a rest. The
    // temperatures (for the record and the safety check) are read right
    // after the first sample, inside the step's time, not after the last.
    awaitable<double> ocv(const OcvParams& p) {
        co_await ensure_off();
        double sum = 0;
        const int n = std::max(1, p.samples);
        double t0 = 0;
        std::pair<double, double> temps;
        for (int k = 0; k < n; ++k) {
            if (k == 0) t0 = now_s();
            else if (k == n - 1) co_await sleep_until_s(t0 + k * p.interval_s - lead_s(load_call_.wall_s, k * p.interval_s));
            else co_await sleep_until_s(t0 + k * p.interval_s);
            sum += co_await measure_voltage_v();
            if (k == 0) temps = co_await temperatures();
        }
        const double v = sum / n;
        check_safety(v, temps.first, false);
        append_sample(now_s(), 0.0, v, temps.first, temps.second, false);
        co_return v;
    }

    // IEC 61960: U and I at the end of the low level, then of the high
    // level. Each reading is timed to complete at its level's end (the high
    // level's command with it), the temperatures are read during the low
    // level, the second level sets the current alone (the input is on).
    awaitable<double> dcir(const DcirParams& p) {
        check_current(p.high_a);
        co_await draw(p.low_a);
        const double t_low = now_s();
        const auto temps = co_await temperatures();
        co_await sleep_until_s(t_low + p.low_s - lead_s(2 * load_call_.wall_s, p.low_s));
        const auto r1 = co_await measure();
        co_await draw(p.high_a);
        const double t_high = std::min(now_s(), t_low + p.low_s);
        co_await sleep_until_s(t_high + p.high_s - lead_s(load_call_.wall_s, p.high_s));
        const auto r2 = co_await measure();
        co_await input_off();
        check_safety(std::min(r1.v_v, r2.v_v), temps.first, true);
        if (!(r2.i_a - r1.i_a > 1e-3))
            throw instruments::InstrumentError(io_.load->name(), "dcir",
                                               fmt::format("the two current levels did not differ ({} A, {} A)",
                                                           r1.i_a, r2.i_a));
        co_return (r1.v_v - r2.v_v) / (r2.i_a - r1.i_a);
    }

    static instruments::PulseSpec pulse_spec(const PulseParams& p) {
        instruments::PulseSpec spec;
        spec.steps = {{0.0, p.pre_s}, {p.current_a, p.duration_s}, {0.0, p.relaxation_s}};
        spec.sample_interval_s = p.sample_interval_s;
        spec.points = p.points();
        return spec;
    }
    awaitable<Quantities> pulse(const PulseParams& p) {
        check_current(p.current_a);
        const instruments::PulseSpec spec = pulse_spec(p);
        const int ch = io_.load_channel;
        mark();
        tell(true, p.current_a, true);
        input_ = Input::unknown;
        // Armed and triggered in one call to the load's lane: a trigger the
        // load's channels share (*TRG) finds no other channel armed.
        co_await timed_load([ch, &spec](instruments::ElectronicLoad& l) {
            l.arm_pulse(ch, spec);
            l.trigger(ch);
        });
        const double t_trigger = now_s();
        phase("pulse.arm");
        // The temperatures around the pulse: the first during its leading
        // rest, the last timed to complete at the end of its relaxation.
        const auto temps0 = co_await temperatures();
        const double tc0 = temps0.first, ta0 = temps0.second;
        // The last ones beside the logger's first fetch where the two are read
        // at once; else timed to complete at the end of the relaxation.
        const bool beside = reads_beside();
        std::pair<double, double> temps1;
        if (!beside) {
            co_await sleep_until_s(t_trigger + spec.total_s() - lead_s(thermo_call_.wall_s, p.relaxation_s));
            temps1 = co_await temperatures();
            late("pulse.temps_late", t_trigger + spec.total_s());
        }
        const double budget_s = std::max(spec.total_s(), p.sample_interval_s * static_cast<double>(spec.points));
        // Station time for the logger, plus 10 s of wall time for the instrument.
        const auto wall_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        const double deadline_s = t_trigger + budget_s;
        // The logger cannot be done before its profile is: wait that long,
        // then ask every 2 ms of wall time (a station's poll would add up to
        // its period to every cell), at most every 0.5 station seconds.
        co_await sleep_until_s(t_trigger + spec.total_s());
        mark();
        const double scale = clock_.station_per_wall_s();
        const double poll_s = scale > 0 ? std::min(0.5, 0.002 * scale) : std::min(0.5, budget_s / 20);
        std::optional<instruments::PulseData> fetched;
        if (beside) std::tie(fetched, temps1) = co_await both(fetch_pulse_once(ch), temperatures());
        else fetched = co_await fetch_pulse_once(ch);
        const double tc1 = temps1.first, ta1 = temps1.second;
        for (;;) {
            if (fetched) break;
            if (now_s() > deadline_s && std::chrono::steady_clock::now() > wall_deadline)
                throw instruments::TimeoutError(io_.load->name(), "pulse", "logger not complete in time");
            co_await sleep_s(poll_s);
            fetched = co_await fetch_pulse_once(ch);
        }
        phase("pulse.fetch");
        input_ = Input::off;
        tell(false, 0, false);
        const instruments::PulseData& data = *fetched;
        if (data.t_s.size() < 10)
            throw instruments::ProtocolError(io_.load->name(), "pulse",
                                             fmt::format("logger returned {} samples", data.t_s.size()));
        models::Series s;
        s.t_s = data.t_s;
        s.i_a = data.i_a;
        s.v_v = data.v_v;
        double v_min = INFINITY;
        for (double v : data.v_v) v_min = std::min(v_min, v);
        Quantities q{{"pulse_v_min_v", v_min}};
        check_safety(v_min, std::max(tc0, tc1), true);
        const double span = data.t_s.back() > 0 ? data.t_s.back() : 1.0;
        for (std::size_t k = 0; k < data.t_s.size(); ++k) {
            const double f = data.t_s[k] / span;  // temperatures interpolated between the reads around the pulse
            append_sample(t_trigger + data.t_s[k], data.i_a[k], data.v_v[k], tc0 + f * (tc1 - tc0),
                          ta0 + f * (ta1 - ta0), true);
        }
        // The circuit fit runs on the compute lane while the next step drives
        // the instruments; the step is judged once it is done (Run::run,
        // finish_pulse_fit), with its place among the record's fits kept.
        models::EcmOptions opt;
        opt.rc_pairs = 2;
        pending_ecm_.fit = co_await Deferred<models::EcmFit>::start(
            fit_ecm_on(ctx_.compute, &fits_, std::make_shared<const models::Series>(std::move(s)), opt));
        pending_ecm_.slot = out_.fits.size();
        out_.fits.push_back(fit_record("ecm2", false, std::nan("")));
        co_return q;
    }

    /// The circuit fit on `lane`, as an awaitable that owns its data: it runs
    /// after the expression that made it has ended (a Deferred), so the data
    /// are this coroutine's parameters: a closure handed to on_lane there
    /// did not outlive that expression here (GCC 12; ASan found the series
    /// freed under the fit).
    static awaitable<models::EcmFit> fit_ecm_on(const Lane* lane, const StepFits* fits,
                                                std::shared_ptr<const models::Series> series, models::EcmOptions opt) {
        co_return co_await on_lane(lane, [fits, &series, &opt] { return fits->ecm(*series, opt); });
    }

    /// A pulse's circuit fit (started by pulse()) into its place among the
    /// record's fits and into `q`; rethrows the fit's exception.
    awaitable<void> finish_pulse_fit(PendingFit& pending, Quantities& q) {
        std::optional<models::EcmFit> fit_result;
        {
            const ComputingTime not_counted(*this);  // also when the fit throws
            mark();
            fit_result = co_await pending.fit.get();
            phase("pulse.fit");  // what judging the step waited for the fit
        }
        const models::EcmFit& fit = *fit_result;
        ModelFit mf = fit_record("ecm2", fit.converged, fit.rmse_v);
        put(mf, "ocv_v", fit.ocv_v);
        put(mf, "r0_ohm", fit.r0_ohm);
        q["r0_ohm"] = fit.r0_ohm.value;
        q["fit_rmse_v"] = fit.rmse_v;
        for (std::size_t k = 0; k < fit.rc.size(); ++k) {
            const auto n = std::to_string(k + 1);
            put(mf, "r" + n + "_ohm", fit.rc[k].r_ohm);
            put(mf, "tau" + n + "_s", fit.rc[k].tau_s);
            put(mf, "c" + n + "_f", fit.rc[k].c_f);
            q["r" + n + "_ohm"] = fit.rc[k].r_ohm.value;
            q["tau" + n + "_s"] = fit.rc[k].tau_s.value;
        }
        out_.fits[pending.slot] = std::move(mf);
    }

    /// Done, fetched and the input off in one call to the load's lane;
    /// nullopt while the logger is not done (the input stays as it is).
    awaitable<std::optional<instruments::PulseData>> fetch_pulse_once(int ch) {
        co_return co_await with_load([ch](instruments::ElectronicLoad& l) -> std::optional<instruments::PulseData> {
            if (!l.pulse_done(ch)) return std::nullopt;
            auto d = l.fetch_pulse(ch);
            l.set_input(ch, false);
            return d;
        });
    }

    // One sample, stamped at the middle of its two reads: on a loaded host
    // (or a compressed clock) the reads take a noticeable share of a sample
    // interval, and a stamp taken before them made the temperature look
    // early, which the thermal fit read as extra heat.
    awaitable<void> heat_sample(models::Series& s, bool loaded) {
        const double t_before = now_s();
        // One after the other: both() here (1,200 samples a cell) cost more
        // than it saved — a coroutine, a timer and a dispatch per sample;
        // session 17 A/B, docs/controller.md.
        const instruments::LoadReading r = co_await measure();
        const std::pair<double, double> temps = co_await temperatures();
        const double t_s = 0.5 * (t_before + now_s());
        const double tc = temps.first, ta = temps.second;
        check_safety(r.v_v, tc, loaded);
        s.t_s.push_back(t_s);
        s.i_a.push_back(r.i_a);
        s.v_v.push_back(r.v_v);
        s.t_cell_c.push_back(tc);
        s.t_amb_c.push_back(std::isfinite(ta) ? ta : tc);
        append_sample(t_s, r.i_a, r.v_v, tc, ta, false);
    }

    // Sample on the interval grid until the step's time is up. The step ends
    // on time even when sampling is slower than the interval (a loaded host,
    // a fast simulated clock): late grid points are skipped, never appended
    // to the step.
    awaitable<void> heat_sample_until(models::Series& s, const HeatParams& p, double t0, double duration_s,
                                      bool loaded) {
        const double end = t0 + duration_s;
        double next = t0 + p.sample_interval_s;
        while (next <= end + 1e-9) {
            // The window's last sample timed to complete at its end.
            const double lead = next >= end - 1e-9
                                    ? lead_s(load_call_.wall_s + thermo_call_.wall_s, p.sample_interval_s)
                                    : 0.0;
            co_await sleep_until_s(next - lead);
            co_await heat_sample(s, loaded);
            const double t = now_s();
            if (t >= end) break;
            next += p.sample_interval_s;
            if (next < t) next += std::ceil((t - next) / p.sample_interval_s) * p.sample_interval_s;
            if (next > end) next = end;
        }
    }

    static constexpr double kReversibleMinCooling_s = 1800.0;

    awaitable<Quantities> heat(const HeatParams& p) {
        check_current(p.current_a);
        models::Series s;
        mark();
        co_await heat_sample(s, false);
        phase("heat.first_sample");
        co_await draw(p.current_a);
        phase("heat.on");
        const double t_on = now_s();
        co_await heat_sample_until(s, p, t_on, p.duration_s, true);
        late("heat.heating_late", t_on + p.duration_s);
        const std::size_t n_on = s.size();
        co_await input_off();
        phase("heat.off");
        const double t_off = now_s();
        co_await heat_sample_until(s, p, t_off, p.cooling_s, false);
        late("heat.cooling_late", t_off + p.cooling_s);
        double t_max = -INFINITY;
        for (double t : s.t_cell_c) t_max = std::max(t_max, t);
        Quantities q{{"temp_rise_k", t_max - s.t_cell_c.front()}};

        // Heating from a circuit fitted to the same window (heat_fit_options).
        if (!io_.ambient_channel) s.t_amb_c.clear();
        // The position's calibrated sensor offset o (fixture health) and
        // which model it is for. The reversible heat k·I has almost the shape
        // of the Joule heat; only a cooling rest of about τ (~1900 s here)
        // tells them and the steady offset apart: with it the extended fit
        // (k·I, the offset given); with the production recipe's 600 s the
        // fit with k free swings the steady offset by ~1 K between runs of
        // one cell (tools/thermal_sim_roc --cooling-s 600; docs/models.md),
        // so the plain fit, read against o. The calibration is learned from
        // the steady offset c of the same model (recorded below), or the two
        // would disagree by what their start-of-window treatment differs in
        // (~0.8 K on a cell not yet cooled from its previous test).
        std::optional<HeatFitOptions> options = heat_fit_options(p, recipe_, last_ocv_v_, s.t_cell_c.front());
        if (!options)
            throw StepStop{StepOutcome::error, "[cell.entropy] needs the cell's OCV, and no OCV step measured it"};
        models::ThermalOptions& opt = options->thermal;
        const std::optional<double> entropy_soc = options->entropy_soc;
        const bool reversible = !opt.entropic_v && p.cooling_s >= kReversibleMinCooling_s && io_.ambient_channel.has_value();
        const std::optional<double> offset = io_.ambient_channel ? io_.thermo_offset_k : std::nullopt;
        if (offset && reversible) {
            opt.sensor_offset_c = *offset;
            opt.reversible_heat = true;
        }
        std::optional<models::ThermalFit> fit_result, calibration_fit;
        {
            const ComputingTime not_counted(*this);  // also when the fit throws
            fit_result = co_await on_lane(ctx_.compute, [this, &s, &opt] { return fits_.thermal(s, opt); });
            if (reversible && !offset) {
                // Not calibrated yet: the extended fit's c, for the calibration.
                models::ThermalOptions ext = opt;
                ext.reversible_heat = true;
                try {
                    calibration_fit = co_await on_lane(ctx_.compute, [this, &s, &ext] { return fits_.thermal(s, ext); });
                } catch (const std::exception&) {
                    calibration_fit.reset();  // no c this time: the plain result stands
                }
            }
            phase("heat.fit");  // both fits
        }
        models::ThermalFit& fit = *fit_result;
        double steady_offset_k = std::nan("");  // c = o + R_th·P_x of the model the calibration is for
        if (fit.extended) {
            steady_offset_k = fit.steady_offset_k.value;
        } else if (calibration_fit) {
            steady_offset_k = calibration_fit->steady_offset_k.value;
        } else if (std::isfinite(fit.p_extra_w.value) && std::isfinite(fit.r_th_k_per_w.value)) {
            // The plain fit assumes no sensor offset: its c is R_th·P_x.
            steady_offset_k = fit.r_th_k_per_w.value * fit.p_extra_w.value;
        }
        if (offset && !fit.extended && std::isfinite(fit.p_extra_w.value) && fit.r_th_k_per_w.value > 0) {
            // P_x read against the calibration: (c − o)/R_th.
            fit.p_extra_w.value -= *offset / fit.r_th_k_per_w.value;
            fit.p_extra_identifiable = true;
        }
        double i_on = 0;  // mean current while loaded (samples 1 .. n_on-1)
        for (std::size_t k = 1; k < n_on; ++k) i_on += s.i_a[k];
        if (n_on > 1) i_on /= static_cast<double>(n_on - 1);
        ModelFit mf = fit_record("thermal", fit.converged, fit.rmse_k);
        put(mf, "c_th_j_per_k", fit.c_th_j_per_k);
        put(mf, "r_th_k_per_w", fit.r_th_k_per_w);
        put(mf, "tau_s", fit.tau_s);
        put(mf, "heating_ohm", fit.heating_ohm);
        put(mf, "p_extra_w", fit.p_extra_w);
        if ((fit.extended || opt.entropic_v) && std::isfinite(fit.entropic_v.value)) put(mf, "entropic_v", fit.entropic_v);
        if (opt.entropic_v) mf.parameters["entropic_given"] = 1.0;  // k above is the recipe's, not fitted
        if (opt.entropic_v_per_ah) mf.parameters["entropic_v_per_ah"] = *opt.entropic_v_per_ah;
        if (entropy_soc) mf.parameters["entropic_soc"] = *entropy_soc;  // where [cell.entropy] was read
        if (std::isfinite(steady_offset_k)) mf.parameters["steady_offset_k"] = steady_offset_k;
        if (offset) mf.parameters["sensor_offset_c"] = *offset;  // P_x above is read against it
        mf.parameters["p_heat_w"] = i_on * i_on * fit.heating_ohm.value;  // I²R of the step
        // The cell's thermocouple against the ambient one before the current
        // (fixture health learns each position's sensor offset from it).
        if (!s.t_amb_c.empty()) mf.parameters["rest_delta_k"] = s.t_cell_c.front() - s.t_amb_c.front();
        out_.fits.push_back(std::move(mf));
        q["c_th_j_per_k"] = fit.c_th_j_per_k.value;
        q["r_th_k_per_w"] = fit.r_th_k_per_w.value;
        // P_x the window does not determine (no ambient sensor: the fitted
        // ambient absorbs it, the fit reports NaN; a heating-only window) is
        // missing, not a value: NaN reaches the limit check as "not measured"
        // and screening as a missing feature, never as 0. A wide interval
        // alone (a 10 ohm short: 1.5 ± 0.8 W) is still a measurement.
        const bool px_determined = std::isfinite(fit.p_extra_w.value) && !fit.heating_only;
        q["p_x_w"] = px_determined ? fit.p_extra_w.value : std::nan("");
        co_return q;
    }

    awaitable<Quantities> run_step(const RecipeStep& step, const PulseParams* next_pulse) {
        Quantities q;
        if (const auto* rp = std::get_if<RestParams>(&step.params)) {
            co_await rest(*rp, next_pulse);
        } else if (const auto* op = std::get_if<OcvParams>(&step.params)) {
            q["ocv_v"] = co_await ocv(*op);
            last_ocv_v_ = q["ocv_v"];
        } else if (const auto* dp = std::get_if<DcirParams>(&step.params)) {
            q["dcir_ohm"] = co_await dcir(*dp);
        } else if (const auto* pp = std::get_if<PulseParams>(&step.params)) {
            q = co_await pulse(*pp);
        } else {
            q = co_await heat(std::get<HeatParams>(step.params));
        }
        co_return q;
    }

    const Recipe& recipe_;
    const Limits& limits_;
    const ChannelIo& io_;
    const RunContext& ctx_;
    StepClock& clock_;
    const StepFits& fits_;
    TestRecord out_;
    double deadline_s_ = INFINITY;  // station time the running step must end by
    Input input_ = Input::unknown;
    double last_ocv_v_ = std::nan("");  // the latest OCV step's reading (a heat step's state of charge)
    CallTime load_call_, thermo_call_;
    double step_timeout_s_ = 0;
    PendingFit pending_ecm_;  // the last pulse's fit, until its step is judged
};

awaitable<TestRecord> Run::run(const CellIdentity& cell) {
    out_.serial = cell.serial;
    out_.cell_model = cell.cell_model.empty() ? recipe_.cell_model : cell.cell_model;
    out_.lot = cell.lot;
    out_.production_date = cell.production_date;
    out_.station_id = ctx_.station_id;
    out_.channel = ctx_.position;
    out_.recipe_name = recipe_.name;
    out_.recipe_version = recipe_.file.filename().string();
    out_.start_unix_s = clock_.unix_now_s();
    out_.verdict = Verdict::pass;  // until a step says otherwise; decided below
    const double t0 = now_s();
    bool stopped = false;
    // A step that ended, judged once its fit is done.
    struct Ended {
        const RecipeStep* step = nullptr;
        StepRecord sr;
        Quantities q;
        std::optional<StepStop> stop;
        PendingFit fit;  // a pulse's circuit fit, still running
    };
    // Its declared measurements judged once (not measured when a stop came
    // first: unset) and its record appended; a stop ends the run (the steps
    // after it are skipped). A stop when the run stopped already (a pulse's
    // fit failed while the next step ran, and that step stopped too) adds
    // its reason; an abort outweighs an error.
    auto judge = [this, &stopped](Ended& e) {
        StepRecord& sr = e.sr;
        sr.first_measurement = out_.measurements.size();
        for (const MeasurementSpec& spec : e.step->measurements) {
            const auto it = e.q.find(spec.quantity.empty() ? spec.name : spec.quantity);
            out_.measurements.push_back(Measurement::judged(spec.name, it == e.q.end() ? std::nan("") : it->second,
                                                            spec.unit, spec.low, spec.high));
        }
        sr.measurement_count = out_.measurements.size() - sr.first_measurement;
        if (e.stop) {
            sr.outcome = e.stop->outcome;
            sr.message = e.stop->reason;
            const std::string why = fmt::format("step '{}': {}", e.step->name, e.stop->reason);
            const Verdict v = e.stop->outcome == StepOutcome::aborted ? Verdict::abort : Verdict::error;
            if (!stopped) {
                out_.verdict = v;
                out_.abort_reason = why;
            } else {
                if (v == Verdict::abort) out_.verdict = v;
                out_.abort_reason += "; " + why;
            }
            stopped = true;
        } else {
            sr.outcome = StepOutcome::pass;
            for (std::size_t k = sr.first_measurement; k < out_.measurements.size(); ++k) {
                const Measurement& m = out_.measurements[k];
                if (m.outcome == Outcome::pass) continue;
                sr.outcome = StepOutcome::fail;
                sr.message += fmt::format("{}{} {}", sr.message.empty() ? "" : ", ", m.name,
                                          m.outcome == Outcome::fail ? "out of limits" : "not measured");
            }
        }
        out_.steps.push_back(std::move(sr));
    };
    // The step whose fit ran beside the next step: its fit's result (or
    // failure: outcome error, the fit dropped from the record), then judged.
    std::optional<Ended> waiting;
    auto judge_waiting = [this, &waiting, &judge]() -> awaitable<void> {
        if (!waiting) co_return;
        Ended e = std::move(*waiting);
        waiting.reset();
        try {
            co_await finish_pulse_fit(e.fit, e.q);
        } catch (const std::exception& ex) {
            out_.fits.erase(out_.fits.begin() + static_cast<std::ptrdiff_t>(e.fit.slot));
            e.stop = StepStop{StepOutcome::error, fmt::format("circuit fit: {}", ex.what())};
        } catch (...) {
            out_.fits.erase(out_.fits.begin() + static_cast<std::ptrdiff_t>(e.fit.slot));
            e.stop = StepStop{StepOutcome::error, "circuit fit: unknown exception"};
        }
        judge(e);
    };
    for (const RecipeStep& step : recipe_.steps) {
        const std::size_t at = static_cast<std::size_t>(&step - recipe_.steps.data());
        if (!stopped && ctx_.on_step) ctx_.on_step(at, step.name);
        Ended e;
        e.step = &step;
        StepRecord& sr = e.sr;
        sr.name = step.name;
        sr.kind = std::string(to_string(step.kind()));
        sr.start_unix_s = out_.start_unix_s + (now_s() - t0);
        sr.first_measurement = out_.measurements.size();
        sr.first_sample = out_.trace.size();
        if (stopped) {
            co_await judge_waiting();
            sr.outcome = StepOutcome::skipped;
            sr.end_unix_s = sr.start_unix_s;
            sr.first_measurement = out_.measurements.size();
            out_.steps.push_back(std::move(sr));
            continue;
        }
        // A declared timeout is the recipe's; the default margin is at least
        // kDefaultTimeoutWallS of wall time, so that a compressed clock (30 s
        // of margin at 400x is 75 ms) does not time out a step on a loaded host.
        step_timeout_s_ = step.timeout_s > 0
                              ? step.timeout_s
                              : std::max(step.default_timeout_s(),
                                         step.duration_s() + kDefaultTimeoutWallS * clock_.station_per_wall_s());
        deadline_s_ = now_s() + step_timeout_s_;
        try {
            const PulseParams* next_pulse =
                at + 1 < recipe_.steps.size() ? std::get_if<PulseParams>(&recipe_.steps[at + 1].params) : nullptr;
            e.q = co_await run_step(step, next_pulse);
        } catch (const StepStop& st) {
            e.stop = st;
        } catch (const RunAborted& ex) {
            e.stop = StepStop{StepOutcome::aborted, ex.what()};
        } catch (const instruments::TimeoutError& ex) {
            e.stop = StepStop{StepOutcome::timeout, ex.what()};
        } catch (const std::exception& ex) {
            e.stop = StepStop{StepOutcome::error, ex.what()};
        } catch (...) {
            e.stop = StepStop{StepOutcome::error, "unknown exception"};
        }
        deadline_s_ = INFINITY;  // making safe is never late
        if (e.stop) co_await safe_off();
        sr.sample_count = out_.trace.size() - sr.first_sample;
        sr.end_unix_s = out_.start_unix_s + (now_s() - t0);
        e.fit = std::exchange(pending_ecm_, PendingFit{});  // a pulse's fit (it ended without a stop)
        co_await judge_waiting();
        if (e.fit.fit.pending()) waiting = std::move(e);
        else judge(e);
    }
    co_await judge_waiting();
    if (!stopped) decide_verdict(out_);
    out_.end_unix_s = out_.start_unix_s + (now_s() - t0);
    co_return std::move(out_);
}

}  // namespace

double ThermoShare::steady_now_s() { return steady_s(); }

std::vector<instruments::TcReading> ThermoShare::read(instruments::TemperatureReader& reader, double requested_s) {
    if (started_s_ >= requested_s) {
        ++shared_;
        return readings_;
    }
    const double started = steady_now_s();
    readings_ = reader.read_all();
    started_s_ = started;
    ++reads_;
    return readings_;
}

std::vector<instruments::TcReading> read_module(instruments::TemperatureReader& reader, ThermoShare* share,
                                                double requested_s) {
    return share ? share->read(reader, requested_s) : reader.read_all();
}

std::optional<HeatFitOptions> heat_fit_options(const HeatParams& p, const Recipe& recipe, double ocv_v,
                                               double t_start_c) {
    HeatFitOptions out;
    // Three RC pairs: over a 10-minute step the open-circuit voltage falls
    // with the charge drawn, and one pair (slower than the window, taken as
    // that state-of-charge change, no heat) goes to it; the other two carry
    // the polarisation heat that lags the current. With two pairs the heat
    // came too early and too large after the current stopped, and the fit
    // showed it as a P_x of about −20 to −70 mW on good cells.
    out.thermal.heating_rc_pairs = 3;
    // A recipe that declares the cell model's entropic coefficient (k =
    // −T·dU/dT, entropic_v) has the reversible heat k·I added to the heat as
    // known, in whichever model runs; k is then never fitted, so the
    // calibration's c and the later cells' fits are of the same model (the
    // plain one with the known heat) at any cooling.
    out.thermal.entropic_v = p.entropic_v;
    out.thermal.entropic_v_per_ah = p.entropic_v_per_ah;
    // Or the cell model's dU/dT table ([cell.entropy]) at the state of
    // charge this cell's OCV says, and its secant over the step's charge.
    if (!p.entropic_v && recipe.entropy) {
        if (!std::isfinite(ocv_v)) return std::nullopt;
        const CellEntropy::Reversible rev =
            recipe.entropy->reversible(ocv_v, t_start_c, p.current_a * p.duration_s / 3600.0, recipe.capacity_ah);
        out.thermal.entropic_v = rev.k_v;
        out.thermal.entropic_v_per_ah = rev.k_v_per_ah;
        out.entropy_soc = rev.soc;
    }
    return out;
}

models::Series step_window(const models::Series& trace, std::size_t first, std::size_t count) {
    if (first > trace.size() || count > trace.size() - first)
        throw std::out_of_range(fmt::format("a step's samples {}..{} are past the trace's {} samples", first,
                                            first + count, trace.size()));
    models::Series s = trace.slice(first, first + count);
    if (std::any_of(s.t_amb_c.begin(), s.t_amb_c.end(), [](double x) { return !std::isfinite(x); })) s.t_amb_c.clear();
    return s;
}

bool aborted_for_over_temperature(const TestRecord& record) {
    if (record.verdict != Verdict::abort) return false;
    for (const StepRecord& s : record.steps)
        if (s.outcome == StepOutcome::aborted && s.message.starts_with(kOverTemperature)) return true;
    return false;
}

namespace {

const StepFits& standard_fits() {
    static const StepFits standard = StepFits::standard();
    return standard;
}

void check_run_args(const ChannelIo& io, const RunContext& ctx) {
    if (!io.load || !io.thermo) throw std::logic_error("run_recipe: the channel needs a load and a thermocouple reader");
    if (!ctx.clock) throw std::logic_error("run_recipe: the run context has no clock");
}

}  // namespace

bool fill_identity(TestRecord& rec, const Recipe& recipe, const CellIdentity& cell, const std::string& station_id,
                   int position) {
    if (!rec.serial.empty()) return false;
    rec.serial = cell.serial;
    rec.cell_model = cell.cell_model;
    rec.lot = cell.lot;
    rec.production_date = cell.production_date;
    rec.station_id = station_id;
    rec.channel = position;
    rec.recipe_name = recipe.name;
    rec.recipe_version = recipe.file.filename().string();
    return true;
}

awaitable<TestRecord> run_recipe_async(const Recipe& recipe, const Limits& limits, const ChannelIo& io,
                                       const CellIdentity& cell, const RunContext& ctx) {
    check_run_args(io, ctx);
    Run run(recipe, limits, io, ctx, ctx.fits ? *ctx.fits : standard_fits());
    co_return co_await run.run(cell);
}

TestRecord run_recipe(const Recipe& recipe, const Limits& limits, const ChannelIo& io, const CellIdentity& cell,
                      const RunContext& ctx) {
    check_run_args(io, ctx);
    asio::io_context loop;
    std::optional<TestRecord> out;
    std::exception_ptr error;
    asio::co_spawn(loop, run_recipe_async(recipe, limits, io, cell, ctx),
                   [&](std::exception_ptr e, TestRecord r) {
                       if (e) error = e;
                       else out = std::move(r);
                   });
    loop.run();
    if (error) std::rethrow_exception(error);
    return std::move(*out);
}

std::vector<TestRecord> run_channels(const Recipe& recipe, const Limits& limits, std::span<const ChannelJob> jobs,
                                     const RunContext& ctx, std::span<RecordSink* const> sinks) {
    std::vector<TestRecord> done(jobs.size());
    std::exception_ptr sink_error;
    // One lane per instrument the jobs use, on a pool with a thread per
    // instrument (at most 8): commands to one instrument never interleave,
    // different instruments work at once.
    std::set<const void*> instruments_used;
    for (const ChannelJob& j : jobs) {
        instruments_used.insert(j.io.load);
        instruments_used.insert(j.io.thermo);
        if (j.io.ambient_thermo) instruments_used.insert(j.io.ambient_thermo);
    }
    asio::thread_pool pool(std::clamp<std::size_t>(instruments_used.size(), 1, 8));
    std::map<const void*, Lane> lanes;
    for (const void* inst : instruments_used) lanes.emplace(inst, asio::make_strand(pool.get_executor()));
    std::vector<ChannelIo> ios(jobs.size());
    std::vector<RunContext> ctxs(jobs.size(), ctx);
    asio::io_context loop;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
        const ChannelJob& job = jobs[k];
        ios[k] = job.io;
        ios[k].load_lane = job.io.load ? &lanes.at(job.io.load) : nullptr;
        ios[k].thermo_lane = job.io.thermo ? &lanes.at(job.io.thermo) : nullptr;
        ios[k].ambient_lane = job.io.ambient_thermo ? &lanes.at(job.io.ambient_thermo) : nullptr;
        ctxs[k].position = job.position;
        if (job.fits) ctxs[k].fits = job.fits;
        auto finish = [&, k](TestRecord rec) {
            fill_identity(rec, recipe, jobs[k].cell, ctx.station_id, jobs[k].position);
            // One record at a time: every completion runs on `loop`'s one thread.
            for (RecordSink* sink : sinks) {
                try {
                    sink->consume(rec);
                } catch (...) {
                    if (!sink_error) sink_error = std::current_exception();
                }
            }
            done[k] = std::move(rec);
        };
        asio::co_spawn(loop,
                       [&, k]() -> awaitable<TestRecord> {
                           co_return co_await run_recipe_async(recipe, limits, ios[k], jobs[k].cell, ctxs[k]);
                       },
                       [finish](std::exception_ptr e, TestRecord rec) mutable {
                           if (e) {
                               rec = TestRecord{};
                               rec.verdict = Verdict::error;
                               try {
                                   std::rethrow_exception(e);
                               } catch (const std::exception& x) {
                                   rec.abort_reason = x.what();
                               } catch (...) {
                                   rec.abort_reason = "unknown exception";
                               }
                           }
                           finish(std::move(rec));
                       });
    }
    loop.run();
    pool.join();
    if (sink_error) std::rethrow_exception(sink_error);
    return done;
}

}  // namespace eol::station
