#include "eol/station/sim_roles.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace eol::station {

InProcessLoad::InProcessLoad(std::string name, std::shared_ptr<sim::Fixture> fixture)
    : name_(std::move(name)), fx_(std::move(fixture)) {}

int InProcessLoad::channels() const { return static_cast<int>(fx_->size()); }

std::size_t InProcessLoad::pos(int channel) const {
    if (channel < 1 || channel > channels())
        throw std::out_of_range(fmt::format("{}: no load channel {} (1..{})", name_, channel, channels()));
    return static_cast<std::size_t>(channel - 1);
}

instruments::Identity InProcessLoad::identify() { return {"eolstation", "in-process load", name_, "sim"}; }

void InProcessLoad::reset() {
    for (int c = 1; c <= channels(); ++c) fx_->set_load(pos(c), {});
}

void InProcessLoad::set_mode(int channel, instruments::LoadMode mode, double level) {
    sim::LoadSetting s = fx_->load(pos(channel));
    s.mode = static_cast<sim::LoadMode>(mode);  // the same four modes, in the same order
    s.level = level;
    fx_->set_load(pos(channel), s);
}

void InProcessLoad::set_input(int channel, bool on) {
    sim::LoadSetting s = fx_->load(pos(channel));
    s.input_on = on;
    fx_->set_load(pos(channel), s);
}

instruments::LoadReading InProcessLoad::measure(int channel) {
    const std::size_t p = pos(channel);
    instruments::LoadReading r;
    r.v_v = fx_->measure_voltage_v(p);
    r.i_a = fx_->measure_current_a(p);
    r.p_w = r.v_v * r.i_a;
    return r;
}

void InProcessLoad::arm_pulse(int channel, const instruments::PulseSpec& spec) { armed_[static_cast<int>(pos(channel))] = spec; }

void InProcessLoad::trigger(int channel) {
    const std::size_t p = pos(channel);
    const auto it = armed_.find(static_cast<int>(p));
    if (it == armed_.end()) throw std::logic_error(fmt::format("{}: trigger on channel {} without an armed pulse", name_, channel));
    std::vector<sim::ProfileStep> steps;
    for (const auto& s : it->second.steps) steps.push_back({s.current_a, s.duration_s});
    fx_->start_profile(p, std::move(steps), it->second.sample_interval_s, it->second.points);
}

bool InProcessLoad::pulse_done(int channel) { return fx_->profile_done(pos(channel)); }

instruments::PulseData InProcessLoad::fetch_pulse(int channel) {
    sim::LoggedSamples s = fx_->fetch_log(pos(channel));
    instruments::PulseData d;
    d.t_s = std::move(s.t_s);
    d.v_v = std::move(s.v_v);
    d.i_a = std::move(s.i_a);
    return d;
}

InProcessThermo::InProcessThermo(std::string name, std::shared_ptr<sim::Fixture> fixture)
    : name_(std::move(name)), fx_(std::move(fixture)) {}

int InProcessThermo::channels() const { return static_cast<int>(fx_->size()) + 1; }

instruments::Identity InProcessThermo::identify() { return {"eolstation", "in-process thermocouples", name_, "sim"}; }

std::vector<instruments::TcReading> InProcessThermo::read_all() {
    std::vector<instruments::TcReading> out;
    out.reserve(fx_->size() + 1);
    for (std::size_t p = 0; p < fx_->size(); ++p) out.push_back({fx_->measure_temp_c(p), instruments::TcStatus::ok});
    out.push_back({fx_->measure_ambient_c(), instruments::TcStatus::ok});
    return out;
}

SkipClock::SkipClock(std::shared_ptr<sim::SimClock> clock, double unix_epoch_s)
    : clock_(std::move(clock)), t0_s_(clock_->now_s()), epoch_s_(unix_epoch_s) {}
double SkipClock::now_s() const { return clock_->now_s() - t0_s_; }
double SkipClock::unix_now_s() const { return epoch_s_ + now_s(); }
boost::asio::awaitable<void> SkipClock::sleep_s(double station_s) {
    if (station_s > 0) clock_->skip(station_s);
    co_return;
}

TestRecord run_in_process(const Recipe& recipe, const Limits& limits, const sim::CellParams& cell,
                          const CellIdentity& identity, const InProcessRun& how) {
    auto clock = sim::SimClock::manual();
    auto fx = std::make_shared<sim::Fixture>(1, clock, how.ambient_c, how.noise_seed);
    fx->load_cell(0, identity.serial, cell);
    if (how.contact_ohm > 0) fx->set_contact_resistance(0, how.contact_ohm);
    if (how.tc_offset_c != 0) fx->set_thermocouple_offset(0, how.tc_offset_c);
    clock->skip(how.wait_s);
    InProcessLoad load("sim-load", fx);
    InProcessThermo thermo("sim-tc", fx);
    ChannelIo io;
    io.load = &load;
    io.thermo = &thermo;
    io.thermo_channel = 0;
    io.ambient_channel = 1;
    io.thermo_offset_k = how.thermo_offset_k;
    SkipClock step_clock(clock, how.unix_start_s);
    RunContext ctx;
    ctx.station_id = how.station_id;
    ctx.position = how.position;
    ctx.clock = &step_clock;
    ctx.trace = how.trace;
    ctx.fits = how.fits;
    return run_recipe(recipe, limits, io, identity, ctx);
}

double storage_soc(const sim::CellParams& cell, double soc, double leak_a, double hours) {
    if (!(hours > 0)) return soc;
    const auto steps = static_cast<int>(std::ceil(hours));
    const double h = hours / steps;
    for (int k = 0; k < steps; ++k) {
        double i_a = leak_a;
        if (std::isfinite(cell.r_isc_ohm)) i_a += (sim::ocv_nmc_v(soc) + cell.ocv_offset_v) / cell.r_isc_ohm;
        soc = std::clamp(soc - i_a * h / cell.capacity_ah, 0.0, 1.0);
    }
    return soc;
}

}  // namespace eol::station
