#include "eol/sim/fixture.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace eol::sim {

SimClock::SimClock(double scale) : t0_(std::chrono::steady_clock::now()), scale_(scale) {
    if (!(scale > 0)) throw std::invalid_argument("SimClock scale must be > 0");
}

std::shared_ptr<SimClock> SimClock::manual() {
    auto c = std::make_shared<SimClock>(1.0);
    c->manual_ = true;
    return c;
}

double SimClock::now_s() const {
    const double wall =
        manual_ ? 0.0 : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::lock_guard lk(m_);
    return wall * scale_ + offset_s_;
}

std::chrono::nanoseconds SimClock::wall(double sim_s) const {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(std::max(0.0, sim_s) / scale_ * 1e9));
}

void SimClock::skip(double sim_s) {
    std::lock_guard lk(m_);
    offset_s_ += std::max(0.0, sim_s);
}

Fixture::Fixture(std::size_t positions, std::shared_ptr<SimClock> clock, double ambient_c,
                 std::uint64_t seed, MeasurementNoise noise)
    : clock_(std::move(clock)), ambient_c_(ambient_c), noise_(noise), pos_(positions),
      amb_rng_(seed ^ 0x9e3779b97f4a7c15ULL) {
    const double now = clock_->now_s();
    for (std::size_t k = 0; k < pos_.size(); ++k) {
        pos_[k].rng.seed(seed * 1000003ULL + k);
        pos_[k].t_s = now;
    }
    // Thermocouple offsets from their own stream, so that they do not move
    // the noise sequences of a fixture with t_offset_c = 0.
    std::mt19937_64 off_rng(seed ^ 0x3c6ef372fe94f82bULL);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    amb_offset_c_ = noise_.t_offset_c * u(off_rng);
    for (auto& P : pos_) P.t_offset_c = noise_.t_offset_c * u(off_rng);
}

Fixture::Position& Fixture::at(std::size_t pos) {
    if (pos >= pos_.size())
        throw std::out_of_range("fixture position " + std::to_string(pos) + " does not exist (" +
                                std::to_string(pos_.size()) + " positions)");
    return pos_[pos];
}

void Fixture::load_cell(std::size_t pos, const std::string& serial, const CellParams& p) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    P.cell.emplace(p, ambient_c_);
    P.serial = serial;
    P.t_s = clock_->now_s();
    P.trigger_s = -1.0;
    P.log = {};
}

std::optional<CellParams> Fixture::cell_params(std::size_t pos) const {
    std::lock_guard lk(m_);
    if (pos >= pos_.size()) throw std::out_of_range("fixture position does not exist");
    const auto& P = pos_[pos];
    if (!P.cell) return std::nullopt;
    return P.cell->params();
}

void Fixture::set_current_cap(std::size_t pos, double cap_a) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());  // the past at the old cap
    P.current_cap_a = cap_a;
}

void Fixture::set_contact_resistance(std::size_t pos, double ohm) {
    if (!(ohm >= 0) || !std::isfinite(ohm)) throw std::invalid_argument("contact resistance must be finite and >= 0");
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    P.contact_ohm = ohm;
}

double Fixture::contact_resistance(std::size_t pos) const {
    std::lock_guard lk(m_);
    if (pos >= pos_.size()) throw std::out_of_range("fixture position " + std::to_string(pos));
    return pos_[pos].contact_ohm;
}

void Fixture::set_thermocouple_offset(std::size_t pos, double offset_c) {
    if (!std::isfinite(offset_c)) throw std::invalid_argument("thermocouple offset must be finite");
    std::lock_guard lk(m_);
    at(pos).t_offset_c = offset_c;
}

void Fixture::unload(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    P.cell.reset();
    P.serial.clear();
}

std::optional<std::string> Fixture::serial(std::size_t pos) const {
    std::lock_guard lk(m_);
    if (pos >= pos_.size() || !pos_[pos].cell) return std::nullopt;
    return pos_[pos].serial;
}

void Fixture::set_load(std::size_t pos, const LoadSetting& s) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    P.setting = s;
}

LoadSetting Fixture::load(std::size_t pos) const {
    std::lock_guard lk(m_);
    if (pos >= pos_.size()) throw std::out_of_range("fixture position does not exist");
    return pos_[pos].setting;
}

double Fixture::current_at(const Position& p, double t) const {
    if (!p.cell) return 0.0;
    if (p.trigger_s >= 0 && t >= p.trigger_s) {
        double edge = p.trigger_s;
        for (const auto& s : p.steps) {
            edge += s.duration_s;
            // Step edges and logger instants are sums of doubles that round
            // differently; an instant within 1 ns of an edge belongs to the next step.
            if (t < edge - 1e-9) return std::min(p.current_cap_a, std::max(0.0, s.current_a));
        }
    }
    const auto& s = p.setting;
    if (!s.input_on) return 0.0;
    const Cell& c = *p.cell;
    const double e = c.ocv_v() - c.state().v1_v - c.state().v2_v;  // source behind R0
    const double r0 = c.params().r0_ohm;
    double i = 0.0;
    switch (s.mode) {
    case LoadMode::cc: i = s.level; break;
    case LoadMode::cr: i = s.level > 0 ? e / (s.level + r0) : 0.0; break;
    case LoadMode::cv: i = (e - s.level) / r0; break;
    case LoadMode::cp: {
        // P = I·(e − I·r0)  →  r0·I² − e·I + P = 0, the smaller root.
        const double disc = e * e - 4 * r0 * s.level;
        i = disc >= 0 ? (e - std::sqrt(disc)) / (2 * r0) : e / (2 * r0);
        break;
    }
    }
    return std::min(p.current_cap_a, std::max(0.0, i));
}

void Fixture::sync(Position& p, double now) {
    if (!p.cell) {
        p.t_s = now;
        return;
    }
    // Break points: profile step edges and logger sample instants.
    while (p.t_s < now) {
        double next = now;
        if (p.trigger_s >= 0) {
            double edge = p.trigger_s;
            for (const auto& s : p.steps) {
                edge += s.duration_s;
                if (edge > p.t_s + 1e-12) {
                    next = std::min(next, edge);
                    break;
                }
            }
            if (p.log.t_s.size() < p.points) {
                const double ts = p.trigger_s + static_cast<double>(p.log.t_s.size()) * p.interval_s;
                if (ts <= p.t_s + 1e-12) {
                    // Sample now (current on the step that is active at this instant).
                    const double i = current_at(p, p.t_s);
                    p.log.t_s.push_back(ts - p.trigger_s);
                    p.log.v_v.push_back(
                        quantize_noise(p.rng, p.cell->terminal_v(i) - i * p.contact_ohm, noise_.v_sd_v, noise_.v_res_v));
                    p.log.i_a.push_back(quantize_noise(p.rng, i, noise_.i_sd_a, noise_.i_res_a));
                    continue;
                }
                next = std::min(next, ts);
            }
        }
        // Non-CC modes depend on the state: keep their steps short.
        if (p.setting.input_on && p.setting.mode != LoadMode::cc) next = std::min(next, p.t_s + 0.05);
        const double i = current_at(p, p.t_s);
        p.cell->advance(next - p.t_s, i, ambient_c_);
        p.t_s = next;
    }
    // A sample due exactly now.
    if (p.trigger_s >= 0 && p.log.t_s.size() < p.points) {
        const double ts = p.trigger_s + static_cast<double>(p.log.t_s.size()) * p.interval_s;
        if (ts <= p.t_s + 1e-12) {
            const double i = current_at(p, p.t_s);
            p.log.t_s.push_back(ts - p.trigger_s);
            p.log.v_v.push_back(
                quantize_noise(p.rng, p.cell->terminal_v(i) - i * p.contact_ohm, noise_.v_sd_v, noise_.v_res_v));
            p.log.i_a.push_back(quantize_noise(p.rng, i, noise_.i_sd_a, noise_.i_res_a));
        }
    }
}

void Fixture::start_profile(std::size_t pos, std::vector<ProfileStep> steps, double interval_s,
                            std::size_t points) {
    if (!(interval_s > 0) && points > 0)
        throw std::invalid_argument("logger interval must be > 0");
    std::lock_guard lk(m_);
    auto& P = at(pos);
    const double now = clock_->now_s();
    sync(P, now);
    P.steps = std::move(steps);
    P.trigger_s = now;
    P.interval_s = interval_s;
    P.points = points;
    P.log = {};
    sync(P, now);  // the sample at the trigger instant
}

bool Fixture::profile_done(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    if (P.trigger_s < 0) return true;
    double end = P.trigger_s;
    for (const auto& s : P.steps) end += s.duration_s;
    return P.t_s >= end && P.log.t_s.size() >= P.points;
}

LoggedSamples Fixture::fetch_log(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    return P.log;
}

void Fixture::abort_profile(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    P.trigger_s = -1.0;
    P.steps.clear();
    P.points = P.log.t_s.size();
}

double Fixture::quantize_noise(std::mt19937_64& rng, double x, double sd, double res) const {
    std::normal_distribution<double> n(0.0, sd);
    const double y = x + (sd > 0 ? n(rng) : 0.0);
    return res > 0 ? std::round(y / res) * res : y;
}

double Fixture::measure_voltage_v(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    if (!P.cell) return 0.0;
    const double i = current_at(P, P.t_s);
    return quantize_noise(P.rng, P.cell->terminal_v(i) - i * P.contact_ohm, noise_.v_sd_v, noise_.v_res_v);
}

double Fixture::measure_current_a(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    return quantize_noise(P.rng, current_at(P, P.t_s), noise_.i_sd_a, noise_.i_res_a);
}

double Fixture::measure_temp_c(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    const double t = P.cell ? P.cell->state().temp_c : ambient_c_;
    return quantize_noise(P.rng, t + P.t_offset_c, noise_.t_sd_c, noise_.t_res_c);
}

double Fixture::measure_ambient_c() {
    std::lock_guard lk(m_);
    return quantize_noise(amb_rng_, ambient_c_ + amb_offset_c_, noise_.t_sd_c, noise_.t_res_c);
}

double Fixture::thermocouple_offset_c(std::size_t pos) const {
    std::lock_guard lk(m_);
    if (pos >= pos_.size()) throw std::out_of_range("fixture position " + std::to_string(pos));
    return pos_[pos].t_offset_c;
}

CellState Fixture::truth(std::size_t pos) {
    std::lock_guard lk(m_);
    auto& P = at(pos);
    sync(P, clock_->now_s());
    return P.cell ? P.cell->state() : CellState{};
}

}  // namespace eol::sim
