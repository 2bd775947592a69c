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
      armed_(static_cast<std::size_t>(dialect_.channels)) {
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
}

void ScpiLoad::set_mode(int channel, LoadMode mode, double level) {
    check_channel(channel);
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
    client_.command(cmd(m, channel));
    client_.command(cmd(l, channel, {{"value", format_number(level)}}));
}

void ScpiLoad::set_input(int channel, bool on) {
    check_channel(channel);
    client_.command(cmd(on ? Cmd::input_on : Cmd::input_off, channel));
}

LoadReading ScpiLoad::measure(int channel) {
    check_channel(channel);
    LoadReading r;
    r.v_v = client_.query_number(cmd(Cmd::measure_voltage, channel));
    r.i_a = dialect_.current_sign * client_.query_number(cmd(Cmd::measure_current, channel));
    if (dialect_.has(Cmd::measure_power))
        r.p_w = std::abs(client_.query_number(cmd(Cmd::measure_power, channel)));
    else
        r.p_w = r.v_v * r.i_a;
    return r;
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

void ScpiLoad::arm_pulse(int channel, const PulseSpec& spec) {
    check_channel(channel);
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

    pulse_guard(channel, [&] {
        const auto idx = static_cast<std::size_t>(channel - 1);
        armed_[idx] = {};
        // Static level 0 A: before the trigger and after the list the cell rests.
        client_.command(cmd(Cmd::mode_cc, channel));
        client_.command(cmd(Cmd::level_cc, channel, {{"value", "0"}}));
        for (const auto& c : dialect_.pulse_setup_global) client_.command(c);
        for (const auto& c : dialect_.pulse_setup) client_.command(dialect_.address(c, channel));
        if (dialect_.list_form_whole()) {
            std::vector<double> levels, durations;
            for (const auto& s : spec.steps) {
                levels.push_back(s.current_a);
                durations.push_back(s.duration_s);
            }
            client_.command(cmd(Cmd::list_levels, channel, {{"levels", join_numbers(levels)}}));
            client_.command(
                cmd(Cmd::list_durations, channel, {{"durations", join_numbers(durations)}}));
        } else {
            client_.command(cmd(Cmd::list_step_count, channel,
                                {{"count", std::to_string(spec.steps.size())}}));
            for (std::size_t k = 0; k < spec.steps.size(); ++k) {
                const std::string step = std::to_string(k + 1);
                client_.command(cmd(Cmd::list_step_level, channel,
                                    {{"step", step}, {"value", format_number(spec.steps[k].current_a)}}));
                client_.command(cmd(Cmd::list_step_duration, channel,
                                    {{"step", step}, {"value", format_number(spec.steps[k].duration_s)}}));
            }
        }
        client_.command(cmd(Cmd::logger_interval, channel,
                            {{"interval", format_number(spec.sample_interval_s)}}));
        client_.command(
            cmd(Cmd::logger_points, channel, {{"points", std::to_string(spec.points)}}));
        client_.command(cmd(Cmd::input_on, channel));
        for (const auto& c : dialect_.pulse_arm) client_.command(dialect_.address(c, channel));
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
