#include "eol/instruments/scpi_load.hpp"

#include <cmath>
#include <stdexcept>

#include "eol/instruments/address.hpp"
#include "eol/instruments/errors.hpp"

namespace eol::instruments {
namespace {

std::string join_numbers(const std::vector<double>& v) {
    std::string s;
    for (std::size_t k = 0; k < v.size(); ++k) {
        if (k) s += ',';
        s += format_number(v[k]);
    }
    return s;
}

}  // namespace

ScpiLoad::ScpiLoad(std::string name, Dialect dialect, std::unique_ptr<LineTransport> transport,
                   double timeout_s)
    : dialect_(std::move(dialect)), client_(std::move(name), std::move(transport), timeout_s),
      armed_(static_cast<std::size_t>(dialect_.channels)), prepared_(static_cast<std::size_t>(dialect_.channels)) {
    client_.set_error_query(dialect_.text(Cmd::error_query));
    client_.set_opc_query(dialect_.text(Cmd::opc_query));
}

void ScpiLoad::check_channel(int channel) const {
    if (channel < 1 || channel > dialect_.channels)
        throw std::out_of_range(name() + ": channel " + std::to_string(channel) +
                                " does not exist (dialect '" + dialect_.name + "' has " +
                                std::to_string(dialect_.channels) + ")");
}

std::string ScpiLoad::cmd(Cmd c, int channel, const Dialect::Args& args) const {
    return dialect_.render(c, channel, args);
}

void ScpiLoad::connect() {
    client_.open();
    // A clean error queue, so later errors belong to our commands.
    client_.write(dialect_.text(Cmd::clear_status));
    client_.sync();
}

void ScpiLoad::close() { client_.close(); }

Identity ScpiLoad::identify() {
    const std::string q = dialect_.text(Cmd::identify);
    const std::string reply = client_.query(q);
    Identity id;
    try {
        id = parse_identity(reply);
    } catch (const std::invalid_argument& e) {
        throw ProtocolError(name(), q, std::string(e.what()) + "; got '" + reply + "'");
    }
    if (!dialect_.identity_matches(reply))
        throw ProtocolError(name(), q,
                            "identity '" + reply + "' does not match dialect '" + dialect_.name +
                                "' (pattern '" + dialect_.identity + "'): wrong dialect file or wrong address?");
    return id;
}

void ScpiLoad::reset() {
    client_.command(dialect_.text(Cmd::reset));
    client_.sync();
    for (auto& a : armed_) a = {};
    for (auto& a : prepared_) a = {};
}

void ScpiLoad::set_mode(int channel, LoadMode mode, double level) {
    check_channel(channel);
    prepared_[static_cast<std::size_t>(channel - 1)] = {};
    if (!std::isfinite(level) || level < 0)
        throw std::invalid_argument(name() + ": level must be a finite number ≥ 0, got " +
                                    format_number(level));
    Cmd m = Cmd::mode_cc, l = Cmd::level_cc;
    switch (mode) {
    case LoadMode::cc: break;
    case LoadMode::cv: m = Cmd::mode_cv; l = Cmd::level_cv; break;
    case LoadMode::cr: m = Cmd::mode_cr; l = Cmd::level_cr; break;
    case LoadMode::cp: m = Cmd::mode_cp; l = Cmd::level_cp; break;
    }
    if (!dialect_.has(m))
        throw DeviceError(name(), std::string(command_info(m).key),
                          "dialect '" + dialect_.name + "' has no such mode");
    // Both, then one look at the error queue (one round trip, not two):
    // an error in either is reported before anything switches the input on.
    const std::string mode_cmd = cmd(m, channel);
    const std::string level_cmd = cmd(l, channel, {{"value", format_number(level)}});
    client_.write(mode_cmd);
    client_.write(level_cmd);
    client_.check_errors(mode_cmd + "; " + level_cmd);
}

void ScpiLoad::set_input(int channel, bool on) {
    check_channel(channel);
    client_.command(cmd(on ? Cmd::input_on : Cmd::input_off, channel));
}

// The three queries as one compound message: one round trip, not three.
LoadReading ScpiLoad::measure(int channel) {
    check_channel(channel);
    std::vector<std::string> q{cmd(Cmd::measure_voltage, channel), cmd(Cmd::measure_current, channel)};
    const bool power = dialect_.has(Cmd::measure_power);
    if (power) q.push_back(cmd(Cmd::measure_power, channel));
    const std::vector<double> v = client_.query_numbers(q);
    LoadReading r;
    r.v_v = v[0];
    r.i_a = dialect_.current_sign * v[1];
    r.p_w = power ? std::abs(v[2]) : r.v_v * r.i_a;
    return r;
}

double ScpiLoad::measure_voltage_v(int channel) {
    check_channel(channel);
    return client_.query_number(cmd(Cmd::measure_voltage, channel));
}

Protection ScpiLoad::protection(int channel) {
    check_channel(channel);
    const std::int64_t s = client_.query_integer(cmd(Cmd::protection_query, channel));
    if (s < 0)
        throw ProtocolError(name(), cmd(Cmd::protection_query, channel),
                            "negative status register value " + std::to_string(s));
    return dialect_.protection.decode(static_cast<std::uint64_t>(s));
}

void ScpiLoad::check_error_queue() { client_.check_errors(dialect_.text(Cmd::error_query)); }

void ScpiLoad::clear_protection(int channel) {
    check_channel(channel);
    client_.command(cmd(Cmd::protection_clear, channel));
}

void ScpiLoad::command_batch(const std::vector<std::string>& commands) {
    std::string all;
    for (const std::string& c : commands) {
        client_.write(c);
        if (!all.empty()) all += "; ";
        all += c;
    }
    client_.check_errors(all);
}

void ScpiLoad::input_off_best_effort(int channel) noexcept {
    try {
        client_.write(cmd(Cmd::input_off, channel));
        client_.drain_errors();
    } catch (...) {
        // The error being propagated is the one to report.
    }
}

template <class F>
auto ScpiLoad::pulse_guard(int channel, F&& f) {
    try {
        return f();
    } catch (...) {
        input_off_best_effort(channel);
        throw;
    }
}

void ScpiLoad::check_pulse_spec(const PulseSpec& spec) const {
    auto bad = [&](const std::string& what) {
        throw std::invalid_argument(name() + ": pulse: " + what);
    };
    if (spec.steps.empty()) bad("no steps");
    if (spec.steps.size() > dialect_.max_list_steps)
        bad(std::to_string(spec.steps.size()) + " steps; dialect '" + dialect_.name +
            "' allows " + std::to_string(dialect_.max_list_steps));
    for (std::size_t k = 0; k < spec.steps.size(); ++k) {
        const auto& s = spec.steps[k];
        if (!std::isfinite(s.current_a) || s.current_a < 0)
            bad("step " + std::to_string(k + 1) + ": current must be ≥ 0 A (discharge positive)");
        if (!std::isfinite(s.duration_s) || s.duration_s <= 0)
            bad("step " + std::to_string(k + 1) + ": duration must be > 0 s");
    }
    if (!std::isfinite(spec.sample_interval_s) || spec.sample_interval_s <= 0)
        bad("sample interval must be > 0 s");
    if (spec.points == 0) bad("the data logger needs at least 1 point");
    if (spec.points > dialect_.max_logger_points)
        bad(std::to_string(spec.points) + " logger points; dialect '" + dialect_.name +
            "' allows " + std::to_string(dialect_.max_logger_points));
}

// The list and the logger, written as one batch and checked once (one
// round trip instead of one per command). The input is not touched.
void ScpiLoad::program_pulse(int channel, const PulseSpec& spec) {
    std::vector<std::string> setup;
    // Static level 0 A: before the trigger and after the list the cell rests.
    setup.push_back(cmd(Cmd::mode_cc, channel));
    setup.push_back(cmd(Cmd::level_cc, channel, {{"value", "0"}}));
    for (const auto& c : dialect_.pulse_setup_global) setup.push_back(c);
    for (const auto& c : dialect_.pulse_setup) setup.push_back(dialect_.address(c, channel));
    if (dialect_.list_form_whole()) {
        std::vector<double> levels, durations;
        for (const auto& s : spec.steps) {
            levels.push_back(s.current_a);
            durations.push_back(s.duration_s);
        }
        setup.push_back(cmd(Cmd::list_levels, channel, {{"levels", join_numbers(levels)}}));
        setup.push_back(cmd(Cmd::list_durations, channel, {{"durations", join_numbers(durations)}}));
    } else {
        setup.push_back(cmd(Cmd::list_step_count, channel, {{"count", std::to_string(spec.steps.size())}}));
        for (std::size_t k = 0; k < spec.steps.size(); ++k) {
            const std::string step = std::to_string(k + 1);
            setup.push_back(cmd(Cmd::list_step_level, channel,
                                {{"step", step}, {"value", format_number(spec.steps[k].current_a)}}));
            setup.push_back(cmd(Cmd::list_step_duration, channel,
                                {{"step", step}, {"value", format_number(spec.steps[k].duration_s)}}));
        }
    }
    setup.push_back(cmd(Cmd::logger_interval, channel, {{"interval", format_number(spec.sample_interval_s)}}));
    setup.push_back(cmd(Cmd::logger_points, channel, {{"points", std::to_string(spec.points)}}));
    command_batch(setup);
}

namespace {
bool same_spec(const PulseSpec& a, const PulseSpec& b) {
    if (a.steps.size() != b.steps.size() || a.sample_interval_s != b.sample_interval_s || a.points != b.points)
        return false;
    for (std::size_t k = 0; k < a.steps.size(); ++k)
        if (a.steps[k].current_a != b.steps[k].current_a || a.steps[k].duration_s != b.steps[k].duration_s)
            return false;
    return !a.steps.empty();
}
}  // namespace

void ScpiLoad::prepare_pulse(int channel, const PulseSpec& spec) {
    check_channel(channel);
    check_pulse_spec(spec);
    const auto idx = static_cast<std::size_t>(channel - 1);
    prepared_[idx] = {};
    pulse_guard(channel, [&] { program_pulse(channel, spec); });
    prepared_[idx] = spec;
}

void ScpiLoad::arm_pulse(int channel, const PulseSpec& spec) {
    check_channel(channel);
    check_pulse_spec(spec);
    pulse_guard(channel, [&] {
        const auto idx = static_cast<std::size_t>(channel - 1);
        armed_[idx] = {};
        // Programmed by prepare_pulse() with this spec: only the input and the arming are left.
        const bool ready = same_spec(prepared_[idx], spec);
        prepared_[idx] = {};
        if (!ready) program_pulse(channel, spec);
        // Then the input on and the arming, checked once more: an error in
        // the set-up stopped before the input.
        std::vector<std::string> arm{cmd(Cmd::input_on, channel)};
        for (const auto& c : dialect_.pulse_arm) arm.push_back(dialect_.address(c, channel));
        command_batch(arm);
        armed_[idx] = spec;
    });
}

void ScpiLoad::trigger(int channel) {
    check_channel(channel);
    pulse_guard(channel, [&] {
        if (armed_[static_cast<std::size_t>(channel - 1)].steps.empty())
            throw std::logic_error(name() + ": trigger on channel " + std::to_string(channel) +
                                   " without arm_pulse()");
        client_.command(cmd(Cmd::trigger, channel));
    });
}

bool ScpiLoad::pulse_done(int channel) {
    check_channel(channel);
    return pulse_guard(channel, [&] {
        const std::int64_t s = client_.query_integer(cmd(Cmd::pulse_status, channel));
        return (static_cast<std::uint64_t>(s) & dialect_.busy_mask) == 0;
    });
}

PulseData ScpiLoad::fetch_pulse(int channel) {
    check_channel(channel);
    return pulse_guard(channel, [&] {
        const PulseSpec& spec = armed_[static_cast<std::size_t>(channel - 1)];
        if (spec.steps.empty())
            throw std::logic_error(name() + ": fetch on channel " + std::to_string(channel) +
                                   " without arm_pulse()");
        const std::string qv = cmd(Cmd::fetch_voltage, channel);
        const std::string qi = cmd(Cmd::fetch_current, channel);
        PulseData d;
        d.v_v = client_.query_array(qv, dialect_.array_format);
        d.i_a = client_.query_array(qi, dialect_.array_format);
        if (d.v_v.size() != spec.points)
            throw ProtocolError(name(), qv,
                                "expected " + std::to_string(spec.points) + " samples, got " +
                                    std::to_string(d.v_v.size()));
        if (d.i_a.size() != spec.points)
            throw ProtocolError(name(), qi,
                                "expected " + std::to_string(spec.points) + " samples, got " +
                                    std::to_string(d.i_a.size()));
        for (double& i : d.i_a) i *= dialect_.current_sign;
        d.t_s.resize(spec.points);
        for (std::size_t k = 0; k < spec.points; ++k)
            d.t_s[k] = static_cast<double>(k) * spec.sample_interval_s;
        return d;
    });
}

std::unique_ptr<ScpiLoad> make_scpi_load(const std::string& name, const std::string& dialect_file,
                                         const std::string& address,
                                         const TransportOptions& options) {
    Dialect d = load_dialect(dialect_file);
    const Address a = parse_address(address);
    return std::make_unique<ScpiLoad>(name, std::move(d), make_line_transport(a, options),
                                      options.io_timeout_s);
}

}  // namespace eol::instruments
