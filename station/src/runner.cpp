#include "eol/station/runner.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "eol/instruments/errors.hpp"
#include "eol/models/ecm.hpp"
#include "eol/models/thermal.hpp"

namespace eol::station {
namespace {

using Clock = std::chrono::steady_clock;

double unix_now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Ends the run early with verdict abort (safety) — caught in run_recipe().
struct Abort {
    std::string reason;
};

class Run {
public:
    Run(const Recipe& r, const Limits& l, const ChannelIo& io, const RunContext& ctx)
        : recipe_(r), limits_(l), io_(io), ctx_(ctx), t0_(Clock::now()) {}

    double now_s() const {
        return std::chrono::duration<double>(Clock::now() - t0_).count() * ctx_.time_scale;
    }
    void sleep_s(double station_s) const {
        if (station_s > 0)
            std::this_thread::sleep_for(std::chrono::duration<double>(station_s / ctx_.time_scale));
    }
    void sleep_until_s(double station_t) const { sleep_s(station_t - now_s()); }

    template <class F>
    auto with_load(F&& f) const {
        std::lock_guard lk(*io_.load_mutex);
        return f(*io_.load);
    }
    template <class F>
    auto with_thermo(F&& f) const {
        std::lock_guard lk(*io_.thermo_mutex);
        return f(*io_.thermo);
    }

    void input_off() const {
        with_load([&](instruments::ElectronicLoad& l) { l.set_input(io_.load_channel, false); });
    }
    void draw(double current_a) const {
        with_load([&](instruments::ElectronicLoad& l) {
            l.set_mode(io_.load_channel, instruments::LoadMode::cc, current_a);
            l.set_input(io_.load_channel, true);
        });
    }
    instruments::LoadReading measure() const {
        return with_load([&](instruments::ElectronicLoad& l) { return l.measure(io_.load_channel); });
    }

    /// Cell and ambient temperature; throws InstrumentError for a channel that
    /// does not read ok (an open thermocouple must not pass as a temperature).
    std::pair<double, double> temperatures() const {
        const auto all = with_thermo([&](instruments::TemperatureReader& t) { return t.read_all(); });
        auto pick = [&](int ch) {
            if (ch < 0 || static_cast<std::size_t>(ch) >= all.size())
                throw instruments::InstrumentError(io_.thermo->name(), "read channel " + std::to_string(ch),
                                                   "no such channel");
            const auto& r = all[static_cast<std::size_t>(ch)];
            if (r.status != instruments::TcStatus::ok)
                throw instruments::InstrumentError(io_.thermo->name(), "read channel " + std::to_string(ch),
                                                   std::string("thermocouple ") + to_string(r.status));
            return r.temp_c;
        };
        const double cell = pick(io_.thermo_channel);
        const double amb = io_.ambient_channel ? pick(*io_.ambient_channel) : std::nan("");
        return {cell, amb};
    }

    void check_safety(double v_v, double temp_c, bool loaded) const {
        if (temp_c > limits_.temp_abort_c)
            throw Abort{fmt::format("cell temperature {:.1f} °C above the abort limit {:.1f} °C", temp_c,
                                    limits_.temp_abort_c)};
        if (loaded && v_v < limits_.v_min_v)
            throw Abort{fmt::format("terminal voltage {:.3f} V under load below {:.3f} V", v_v,
                                    limits_.v_min_v)};
    }

    void check_current(double current_a, const std::string& step) const {
        if (current_a > limits_.i_max_a)
            throw std::invalid_argument(fmt::format("recipe step '{}' asks {} A, more than limits.i_max_a = {} A",
                                                    step, current_a, limits_.i_max_a));
    }

    void record(const MeasurementSpec& spec, double value) {
        Measurement m;
        m.name = spec.name;
        m.value = value;
        m.unit = spec.unit;
        m.low = spec.low;
        m.high = spec.high;
        m.pass = std::isfinite(value) && (!spec.low || value >= *spec.low) && (!spec.high || value <= *spec.high);
        out_.measurements.push_back(std::move(m));
    }
    void record_step(const RecipeStep& step, const std::map<std::string, double>& values) {
        for (const auto& spec : step.measurements) {
            const std::string& q = spec.quantity.empty() ? spec.name : spec.quantity;
            const auto it = values.find(q);
            record(spec, it == values.end() ? std::nan("") : it->second);
        }
    }

    void append_sample(double t_s, double i_a, double v_v, double temp_c, double amb_c) {
        auto& tr = out_.trace;
        if (!tr.t_s.empty() && t_s <= tr.t_s.back()) t_s = std::nextafter(tr.t_s.back(), INFINITY);
        tr.t_s.push_back(t_s);
        tr.i_a.push_back(i_a);
        tr.v_v.push_back(v_v);
        tr.t_cell_c.push_back(temp_c);
        tr.t_amb_c.push_back(std::isfinite(amb_c) ? amb_c : temp_c);
    }

    void rest(const RestParams& p) {
        input_off();
        sleep_s(p.duration_s);
    }

    double ocv(const OcvParams& p) {
        input_off();
        double sum = 0;
        for (int k = 0; k < p.samples; ++k) {
            if (k > 0) sleep_s(p.interval_s);
            sum += measure().v_v;
        }
        const double v = sum / p.samples;
        const auto [tc, ta] = temperatures();
        check_safety(v, tc, false);
        append_sample(now_s(), 0.0, v, tc, ta);
        return v;
    }

    double dcir(const DcirParams& p, const std::string& name) {
        check_current(p.high_a, name);
        draw(p.low_a);
        sleep_s(p.low_s);
        const auto r1 = measure();
        draw(p.high_a);
        sleep_s(p.high_s);
        const auto r2 = measure();
        input_off();
        const auto [tc, ta] = temperatures();
        check_safety(std::min(r1.v_v, r2.v_v), tc, true);
        if (!(r2.i_a - r1.i_a > 1e-3))
            throw instruments::InstrumentError(io_.load->name(), "dcir",
                                               fmt::format("the two current levels did not differ ({} A, {} A)",
                                                           r1.i_a, r2.i_a));
        return (r1.v_v - r2.v_v) / (r2.i_a - r1.i_a);
    }

    std::map<std::string, double> pulse(const PulseParams& p, const std::string& name) {
        check_current(p.current_a, name);
        instruments::PulseSpec spec;
        spec.steps = {{0.0, p.pre_s}, {p.current_a, p.duration_s}, {0.0, p.relaxation_s}};
        spec.sample_interval_s = p.sample_interval_s;
        spec.points = p.points();
        const auto [tc0, ta0] = temperatures();
        const double t_trigger = now_s();
        with_load([&](instruments::ElectronicLoad& l) {
            l.arm_pulse(io_.load_channel, spec);
            l.trigger(io_.load_channel);
            return 0;
        });
        const double budget = std::max(spec.total_s(), p.sample_interval_s * static_cast<double>(spec.points));
        const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(budget / ctx_.time_scale + 10.0));
        for (;;) {
            const bool done = with_load([&](instruments::ElectronicLoad& l) { return l.pulse_done(io_.load_channel); });
            if (done) break;
            if (Clock::now() > deadline)
                throw instruments::TimeoutError(io_.load->name(), "pulse", "logger not complete in time");
            sleep_s(std::min(0.5, budget / 20));
        }
        const auto data = with_load([&](instruments::ElectronicLoad& l) { return l.fetch_pulse(io_.load_channel); });
        input_off();
        const auto [tc1, ta1] = temperatures();
        if (data.t_s.size() < 10)
            throw instruments::ProtocolError(io_.load->name(), "pulse",
                                             fmt::format("logger returned {} samples", data.t_s.size()));
        models::Series s;
        s.t_s = data.t_s;
        s.i_a = data.i_a;
        s.v_v = data.v_v;
        double v_min = INFINITY;
        for (double v : data.v_v) v_min = std::min(v_min, v);
        check_safety(v_min, std::max(tc0, tc1), true);
        const double span = data.t_s.back() > 0 ? data.t_s.back() : 1.0;
        for (std::size_t k = 0; k < data.t_s.size(); ++k) {
            const double f = data.t_s[k] / span;  // temperatures interpolated between the reads around the pulse
            append_sample(t_trigger + data.t_s[k], data.i_a[k], data.v_v[k], tc0 + f * (tc1 - tc0),
                          ta0 + f * (ta1 - ta0));
        }
        models::EcmOptions opt;
        opt.rc_pairs = 2;
        const auto fit = models::fit_ecm(s, opt);
        ModelFit mf;
        mf.kind = "ecm2";
        mf.converged = fit.converged;
        mf.rmse = fit.rmse_v;
        auto put = [&](const std::string& k, const models::Estimate& e) {
            mf.parameters[k] = e.value;
            mf.ci95[k] = Interval{e.value - e.ci95, e.value + e.ci95};
        };
        put("ocv_v", fit.ocv_v);
        put("r0_ohm", fit.r0_ohm);
        for (std::size_t k = 0; k < fit.rc.size(); ++k) {
            const auto n = std::to_string(k + 1);
            put("r" + n + "_ohm", fit.rc[k].r_ohm);
            put("tau" + n + "_s", fit.rc[k].tau_s);
            put("c" + n + "_f", fit.rc[k].c_f);
        }
        out_.fits.push_back(mf);
        std::map<std::string, double> q{{"r0_ohm", fit.r0_ohm.value}, {"fit_rmse_v", fit.rmse_v},
                                        {"pulse_v_min_v", v_min}};
        for (std::size_t k = 0; k < fit.rc.size(); ++k) {
            q["r" + std::to_string(k + 1) + "_ohm"] = fit.rc[k].r_ohm.value;
            q["tau" + std::to_string(k + 1) + "_s"] = fit.rc[k].tau_s.value;
        }
        return q;
    }

    std::map<std::string, double> heat(const HeatParams& p, const std::string& name) {
        check_current(p.current_a, name);
        models::Series s;
        auto sample = [&](double t_s, bool loaded) {
            const auto r = measure();
            const auto [tc, ta] = temperatures();
            check_safety(r.v_v, tc, loaded);
            s.t_s.push_back(t_s);
            s.i_a.push_back(r.i_a);
            s.v_v.push_back(r.v_v);
            s.t_cell_c.push_back(tc);
            s.t_amb_c.push_back(std::isfinite(ta) ? ta : tc);
            append_sample(t_s, r.i_a, r.v_v, tc, ta);
        };
        const double t_start = now_s();
        sample(t_start, false);
        draw(p.current_a);
        const double t_on = now_s();
        // Sample on the interval grid until the step's time is up. The step
        // ends on time even when sampling is slower than the interval (a
        // loaded host, a fast simulated clock): late grid points are skipped,
        // never appended to the step.
        auto sample_until = [&](double t0, double duration_s, bool loaded) {
            const double end = t0 + duration_s;
            double next = t0 + p.sample_interval_s;
            while (next <= end + 1e-9) {
                sleep_until_s(next);
                sample(now_s(), loaded);
                const double t = now_s();
                if (t >= end) break;
                next += p.sample_interval_s;
                if (next < t) next += std::ceil((t - next) / p.sample_interval_s) * p.sample_interval_s;
                if (next > end) next = end;
            }
        };
        sample_until(t_on, p.duration_s, true);
        input_off();
        const double t_off = now_s();
        sample_until(t_off, p.cooling_s, false);
        double t_max = -INFINITY;
        for (double t : s.t_cell_c) t_max = std::max(t_max, t);
        const double rise = t_max - s.t_cell_c.front();

        // Heating from a circuit fitted to the same window, with three RC
        // pairs: over a 10-minute step the open-circuit voltage falls with
        // the charge drawn, and one pair (slower than the window, taken as
        // that state-of-charge change, no heat) goes to it; the other two
        // carry the polarisation heat that lags the current. With two pairs
        // the heat came too early and too large after the current stopped,
        // and the fit showed it as a P_x of about −20 to −70 mW on good cells.
        models::ThermalOptions opt;
        opt.heating_rc_pairs = 3;
        if (!io_.ambient_channel) s.t_amb_c.clear();
        const auto fit = models::fit_thermal(s, opt);
        ModelFit mf;
        mf.kind = "thermal";
        mf.converged = fit.converged;
        mf.rmse = fit.rmse_k;
        auto put = [&](const std::string& k, const models::Estimate& e) {
            mf.parameters[k] = e.value;
            mf.ci95[k] = Interval{e.value - e.ci95, e.value + e.ci95};
        };
        put("c_th_j_per_k", fit.c_th_j_per_k);
        put("r_th_k_per_w", fit.r_th_k_per_w);
        put("heating_ohm", fit.heating_ohm);
        put("p_extra_w", fit.p_extra_w);
        out_.fits.push_back(mf);
        return {{"temp_rise_k", rise},
                {"c_th_j_per_k", fit.c_th_j_per_k.value},
                {"r_th_k_per_w", fit.r_th_k_per_w.value},
                {"p_x_w", fit.p_extra_w.value}};
    }

    TestRecord run(const CellIdentity& cell) {
        out_.serial = cell.serial;
        out_.cell_model = cell.cell_model.empty() ? recipe_.cell_model : cell.cell_model;
        out_.lot = cell.lot;
        out_.production_date = cell.production_date;
        out_.station_id = ctx_.station_id;
        out_.channel = ctx_.position;
        out_.recipe_name = recipe_.name;
        out_.recipe_version = recipe_.file.filename().string();
        out_.start_unix_s = unix_now_s();
        try {
            for (const auto& step : recipe_.steps) {
                std::map<std::string, double> q;
                std::visit(
                    [&](const auto& p) {
                        using P = std::decay_t<decltype(p)>;
                        if constexpr (std::is_same_v<P, RestParams>) rest(p);
                        else if constexpr (std::is_same_v<P, OcvParams>) q["ocv_v"] = ocv(p);
                        else if constexpr (std::is_same_v<P, DcirParams>) q["dcir_ohm"] = dcir(p, step.name);
                        else if constexpr (std::is_same_v<P, PulseParams>) q = pulse(p, step.name);
                        else q = heat(p, step.name);
                    },
                    step.params);
                record_step(step, q);
            }
            bool pass = true;
            for (const auto& m : out_.measurements) pass = pass && m.pass;
            out_.verdict = pass ? Verdict::pass : Verdict::fail;
        } catch (const Abort& a) {
            safe_off();
            out_.verdict = Verdict::abort;
            out_.abort_reason = a.reason;
        } catch (const std::invalid_argument&) {
            safe_off();
            throw;
        } catch (const std::exception& e) {
            safe_off();
            out_.verdict = Verdict::error;
            out_.abort_reason = e.what();
        }
        out_.end_unix_s = unix_now_s();
        return std::move(out_);
    }

private:
    void safe_off() const {
        try {
            input_off();
        } catch (...) {
            // The instrument itself failed; the reason already says so.
        }
    }

    const Recipe& recipe_;
    const Limits& limits_;
    const ChannelIo& io_;
    const RunContext& ctx_;
    Clock::time_point t0_;
    TestRecord out_;
};

}  // namespace

TestRecord run_recipe(const Recipe& recipe, const Limits& limits, const ChannelIo& io,
                      const CellIdentity& cell, const RunContext& ctx) {
    if (!io.load || !io.load_mutex || !io.thermo || !io.thermo_mutex)
        throw std::invalid_argument("run_recipe: the channel needs a load and a thermocouple reader");
    if (!(ctx.time_scale > 0)) throw std::invalid_argument("run_recipe: time_scale must be > 0");
    Run run(recipe, limits, io, ctx);
    return run.run(cell);
}

}  // namespace eol::station
