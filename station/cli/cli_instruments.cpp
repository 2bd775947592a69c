// eolstation instruments probe | load (| thermo, in cli_instruments_modbus.cpp)
//
// Commissioning commands that work without a station run:
//   probe --config FILE [--json]      every configured instrument: identity
//                                     and one reading; exit 1 naming each
//                                     instrument that failed and why — no
//                                     answer, a load with entries in its
//                                     error queue (SYST:ERR? per dialect),
//                                     or a thermocouple channel the station
//                                     uses (a fixture position's or the
//                                     ambient) that does not read ok (open,
//                                     over/under range, stale)
//   load --dialect FILE --address ADDR [--channel N] [--timeout S] [--json]
//        identify | measure | set-current A | input on|off
//        | pulse --profile "A:s,A:s,…" --interval S [--points N]
//                                     drives one SCPI load directly; exit 1
//                                     when the load fails (typed error)
// Usage and configuration errors (bad flags, files, dialects) exit 2; so do
// numbers outside their range, naming it: --timeout in (0, 60] s,
// --interval in (0, 3600] s, --points in 1..100000000 (NaN and ∞ never pass).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.hpp"
#include "eol/instruments/dialect.hpp"
#include "eol/instruments/errors.hpp"
#include "eol/instruments/scpi_load.hpp"
#include "eol/station/config.hpp"
#include "eol/station/instrument_factory.hpp"

namespace eol::cli {
namespace {

using nlohmann::json;

json identity_json(const instruments::Identity& id) {
    return {{"manufacturer", id.manufacturer}, {"model", id.model}, {"serial", id.serial},
            {"firmware", id.firmware}};
}

std::string identity_text(const instruments::Identity& id) {
    return fmt::format("{} {} (serial {}, firmware {})", id.manufacturer, id.model, id.serial,
                       id.firmware);
}

/// Longest --timeout of the commissioning commands, as for timeout_s in a station file.
constexpr double kMaxCliTimeout_s = 60.0;

/// A duration option (--timeout, --interval) in (0, max_s] s, else a usage
/// error naming the option, the value and the allowed range (exit 2).
void check_seconds_option(const char* option, double value_s, double max_s) {
    try {
        instruments::check_duration_s(value_s, option, max_s);
    } catch (const std::invalid_argument& e) {
        throw station::UsageError(e.what());
    }
}

json error_json(const instruments::InstrumentError& e) {
    return {{"instrument", e.instrument()}, {"command", e.command()}, {"detail", e.detail()},
            {"message", e.what()}};
}

// ------------------------------------------------------------------ probe

/// What the station uses channel `ch` of thermocouple module `thermo` for:
/// "position 3", "ambient" (several joined); empty when nothing.
std::string channel_use(const station::StationConfig& cfg, const std::string& thermo, int ch) {
    std::string use;
    for (const auto& c : cfg.channels)
        if (c.thermo == thermo && c.thermo_channel == ch)
            use += fmt::format("{}position {}", use.empty() ? "" : ", ", c.position);
    if (cfg.is_ambient_input(thermo, ch))
        use += std::string(use.empty() ? "" : ", ") + "ambient";
    return use;
}

struct ProbeOptions {
    std::string config;
    bool json = false;
};

void run_probe(const ProbeOptions& o) {
    const station::StationConfig cfg = station::load_station_config(o.config);
    // Build every driver first: definition problems are configuration errors (exit 2).
    station::StationInstruments all = station::make_instruments(cfg);

    json out = json::array();
    std::vector<std::string> failed;
    for (const auto& ic : cfg.instruments) {
        json j{{"name", ic.name},
               {"driver", std::string(station::to_string(ic.driver))},
               {"address", ic.address}};
        std::string text;
        try {
            if (ic.is_load()) {
                auto& load = *all.loads.at(ic.name);
                load.connect();
                const auto id = load.identify();
                const auto r = load.measure(1);
                j["identity"] = identity_json(id);
                j["reading"] = {{"channel", 1}, {"v_v", r.v_v}, {"i_a", r.i_a}, {"p_w", r.p_w}};
                text = fmt::format("{}  ch1 {:.4f} V {:.4f} A {:.3f} W", identity_text(id), r.v_v, r.i_a, r.p_w);
                // An error queued on the load (during the probe or before) is a failure.
                load.check_error_queue();
                load.close();
            } else {
                auto& tc = *all.thermos.at(ic.name);
                tc.connect();
                const auto id = tc.identify();
                const auto readings = tc.read_all();
                tc.close();
                j["identity"] = identity_json(id);
                json chans = json::array();
                std::string list;
                for (std::size_t k = 0; k < readings.size() && static_cast<int>(k) < ic.channels; ++k) {
                    const auto& r = readings[k];
                    const bool ok = r.status == instruments::TcStatus::ok;
                    chans.push_back({{"channel", k},
                                     {"status", instruments::to_string(r.status)},
                                     {"temp_c", ok ? json(r.temp_c) : json()}});
                    list += fmt::format("{}ch{} {}", list.empty() ? "" : ", ", k,
                                        ok ? fmt::format("{:.2f} °C", r.temp_c)
                                           : std::string(instruments::to_string(r.status)));
                }
                j["reading"] = {{"channels", chans}};
                text = identity_text(id) + "  " + list;
                // Every channel the station uses must read a temperature.
                std::vector<std::string> bad;
                for (int ch = 0; ch < ic.channels; ++ch) {
                    const std::string use = channel_use(cfg, ic.name, ch);
                    if (use.empty()) continue;
                    const auto k = static_cast<std::size_t>(ch);
                    if (k >= readings.size())
                        bad.push_back(fmt::format("channel {} ({}) was not read", ch, use));
                    else if (readings[k].status != instruments::TcStatus::ok)
                        bad.push_back(fmt::format("channel {} ({}) reads {}", ch, use,
                                                  instruments::to_string(readings[k].status)));
                }
                if (!bad.empty()) {
                    std::string detail;
                    for (const auto& b : bad) detail += (detail.empty() ? "" : "; ") + b;
                    throw instruments::DeviceError(ic.name, "read channels", detail);
                }
            }
            j["ok"] = true;
        } catch (const instruments::InstrumentError& e) {
            j["ok"] = false;
            j["error"] = error_json(e);
            text = e.what();
            failed.push_back(ic.name + " (" + e.what() + ")");
        }
        out.push_back(j);
        if (!o.json)
            fmt::print("{:<5} {:<10} {:<14} {:<24} {}\n", j["ok"].get<bool>() ? "ok" : "FAIL", ic.name,
                       station::to_string(ic.driver), ic.address, text);
    }
    if (o.json) std::cout << json{{"instruments", out}}.dump(2) << "\n";
    std::fflush(stdout);
    if (!failed.empty()) {
        std::string names;
        for (const auto& f : failed) names += "\n  " + f;
        fmt::print(stderr, "eolstation: instruments probe: {} of {} instruments failed:{}\n",
                   failed.size(), cfg.instruments.size(), names);
        set_exit(station::ExitCode::domain_no);
    }
}

// ------------------------------------------------------------------ load

struct LoadOptions {
    std::string dialect;
    std::string address;
    int channel = 1;
    double timeout_s = 2.0;
    bool json = false;
    // actions
    double current_a = 0;
    std::string input;
    std::string profile;
    double interval_s = 0;
    std::int64_t points = 0;  // 0: the whole profile
};

std::vector<instruments::PulseStep> parse_profile(const std::string& text) {
    std::vector<instruments::PulseStep> steps;
    std::size_t start = 0;
    auto number = [&](std::string_view s, std::size_t at, const char* what) {
        double v = 0;
        const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc{} || p != s.data() + s.size() || s.empty() || !std::isfinite(v))
            throw station::UsageError(fmt::format(
                "--profile: step {} at character {}: {} '{}' is not a number", steps.size() + 1,
                at + 1, what, s));
        return v;
    };
    while (start <= text.size()) {
        std::size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        const std::string_view item(text.data() + start, end - start);
        const std::size_t colon = item.find(':');
        if (colon == std::string_view::npos)
            throw station::UsageError(fmt::format(
                "--profile: step {} at character {}: expected CURRENT_A:DURATION_S, got '{}'",
                steps.size() + 1, start + 1, item));
        const double a = number(item.substr(0, colon), start, "current");
        const double s = number(item.substr(colon + 1), start + colon + 1, "duration");
        if (a < 0)
            throw station::UsageError(fmt::format(
                "--profile: step {}: current {} A must be ≥ 0 (discharge positive)", steps.size() + 1, a));
        if (s <= 0)
            throw station::UsageError(
                fmt::format("--profile: step {}: duration {} s must be > 0", steps.size() + 1, s));
        steps.push_back({a, s});
        start = end + 1;
    }
    return steps;
}

std::unique_ptr<instruments::ScpiLoad> open_load(const LoadOptions& o) {
    check_seconds_option("--timeout", o.timeout_s, kMaxCliTimeout_s);
    instruments::Dialect d;
    instruments::Address a;
    try {
        d = instruments::load_dialect(o.dialect);
        a = instruments::parse_address(o.address);
    } catch (const std::exception& e) {
        throw station::UsageError(e.what());
    }
    if (a.kind == instruments::Address::Kind::rtu)
        throw station::UsageError("--address " + o.address +
                                  ": a SCPI load needs tcp://HOST:PORT or serial:///dev/ttyX?baud=N");
    if (o.channel < 1 || o.channel > d.channels)
        throw station::UsageError(fmt::format("--channel {}: dialect '{}' has channels 1..{}", o.channel,
                                              d.name, d.channels));
    instruments::TransportOptions t;
    t.io_timeout_s = o.timeout_s;
    t.connect_timeout_s = std::max(1.0, o.timeout_s);
    t.connect_attempts = 2;
    auto load = std::make_unique<instruments::ScpiLoad>(a.to_string(), std::move(d),
                                                        instruments::make_line_transport(a, t), o.timeout_s);
    load->connect();
    return load;
}

// Runs `action` on a connected load; a load failure is a domain "no" (exit 1).
template <class F>
void with_load(const LoadOptions& o, F&& action) {
    try {
        auto load = open_load(o);
        action(*load);
    } catch (const instruments::InstrumentError& e) {
        if (o.json) std::cout << json{{"ok", false}, {"error", error_json(e)}}.dump(2) << "\n";
        fmt::print(stderr, "eolstation: instruments load: {}\n", e.what());
        set_exit(station::ExitCode::domain_no);
    }
}

void print(const LoadOptions& o, const json& j, const std::string& text) {
    if (o.json) std::cout << j.dump(2) << "\n";
    else fmt::print("{}\n", text);
}

void add_load_commands(CLI::App& inst) {
    auto o = std::make_shared<LoadOptions>();
    auto* load = inst.add_subcommand(
        "load", "Drive one SCPI electronic load directly (dialect file + address; no station file)");
    load->add_option("--dialect", o->dialect, "Dialect table (config/dialects/*.toml)")->required();
    load->add_option("--address", o->address, "tcp://HOST:PORT or serial:///dev/ttyX?baud=N")->required();
    load->add_option("--channel", o->channel, "Load channel, 1-based")->capture_default_str();
    load->add_option("--timeout", o->timeout_s, "Reply timeout, seconds, in (0, 60]")->capture_default_str();
    load->add_flag("--json", o->json, "Print JSON");
    load->require_subcommand(1);
    load->fallthrough();

    load->add_subcommand("identify", "*IDN?: manufacturer, model, serial, firmware")->callback([o] {
        with_load(*o, [&](instruments::ScpiLoad& l) {
            const auto id = l.identify();
            print(*o, identity_json(id), identity_text(id));
        });
    });
    load->add_subcommand("measure", "Voltage, current (discharge positive) and power of the channel")
        ->callback([o] {
            with_load(*o, [&](instruments::ScpiLoad& l) {
                const auto r = l.measure(o->channel);
                print(*o, {{"channel", o->channel}, {"v_v", r.v_v}, {"i_a", r.i_a}, {"p_w", r.p_w}},
                      fmt::format("channel {}: {:.4f} V  {:.4f} A  {:.3f} W", o->channel, r.v_v, r.i_a, r.p_w));
            });
        });
    auto* set = load->add_subcommand("set-current", "Constant-current mode at A amperes (input unchanged)");
    set->add_option("current_a", o->current_a, "Current, A (discharge positive)")->required();
    set->callback([o] {
        if (!(o->current_a >= 0) || !std::isfinite(o->current_a))
            throw station::UsageError(fmt::format("set-current {}: must be ≥ 0 A", o->current_a));
        with_load(*o, [&](instruments::ScpiLoad& l) {
            l.set_mode(o->channel, instruments::LoadMode::cc, o->current_a);
            print(*o, {{"channel", o->channel}, {"mode", "cc"}, {"level_a", o->current_a}},
                  fmt::format("channel {}: constant current {} A", o->channel, o->current_a));
        });
    });
    auto* input = load->add_subcommand("input", "Switch the channel's input on or off");
    input->add_option("state", o->input, "on or off")->required()->check(CLI::IsMember({"on", "off"}));
    input->callback([o] {
        with_load(*o, [&](instruments::ScpiLoad& l) {
            l.set_input(o->channel, o->input == "on");
            print(*o, {{"channel", o->channel}, {"input", o->input}},
                  fmt::format("channel {}: input {}", o->channel, o->input));
        });
    });
    auto* pulse = load->add_subcommand(
        "pulse", "Hardware-timed current profile with the load's data logger; prints t, V, I");
    pulse->add_option("--profile", o->profile, "Steps \"A:s,A:s,…\" (current A, duration s)")->required();
    pulse->add_option("--interval", o->interval_s, "Logger sample interval, seconds")->required();
    pulse->add_option("--points", o->points, "Logger points, 1..100000000 (default: the whole profile)");
    pulse->callback([o] {
        instruments::PulseSpec spec;
        spec.steps = parse_profile(o->profile);
        check_seconds_option("--timeout", o->timeout_s, kMaxCliTimeout_s);
        check_seconds_option("--interval", o->interval_s, instruments::kMaxTimeout_s);
        spec.sample_interval_s = o->interval_s;
        // The most any dialect may allow (dialect.max_logger_points); the load's own limit is checked by the driver.
        constexpr std::int64_t kMaxPoints = 100000000;
        if (o->points != 0 && (o->points < 1 || o->points > kMaxPoints))
            throw station::UsageError(
                fmt::format("--points {}: outside the allowed range 1..{}", o->points, kMaxPoints));
        const double whole = std::max(1.0, std::ceil(spec.total_s() / o->interval_s - 1e-9));
        if (o->points == 0 && whole > static_cast<double>(kMaxPoints))
            throw station::UsageError(fmt::format(
                "--profile / --interval: {} s every {} s is {:.0f} logger points, more than the {} allowed; "
                "give a longer --interval or --points",
                spec.total_s(), o->interval_s, whole, kMaxPoints));
        spec.points = o->points > 0 ? static_cast<std::size_t>(o->points) : static_cast<std::size_t>(whole);
        with_load(*o, [&](instruments::ScpiLoad& l) {
            const auto d = l.run_pulse(o->channel, spec);
            l.set_input(o->channel, false);
            if (o->json) {
                std::cout << json{{"channel", o->channel},
                                  {"interval_s", spec.sample_interval_s},
                                  {"points", spec.points},
                                  {"t_s", d.t_s},
                                  {"v_v", d.v_v},
                                  {"i_a", d.i_a}}
                                 .dump()
                          << "\n";
            } else {
                fmt::print("# channel {}: {} samples every {} s\n# t_s v_v i_a\n", o->channel, spec.points,
                           spec.sample_interval_s);
                for (std::size_t k = 0; k < d.t_s.size(); ++k)
                    fmt::print("{:.6f} {:.5f} {:.5f}\n", d.t_s[k], d.v_v[k], d.i_a[k]);
            }
        });
    });
}

}  // namespace

void add_instruments_commands(CLI::App& app) {
    auto* inst = app.add_subcommand("instruments", "Commissioning: talk to the instruments directly");
    inst->require_subcommand(1);

    auto po = std::make_shared<ProbeOptions>();
    auto* probe = inst->add_subcommand(
        "probe", "Connect to every configured instrument, print its identity and one reading; "
                 "exit 1 naming each instrument that failed");
    probe->add_option("--config", po->config, "Station configuration file")->required();
    probe->add_flag("--json", po->json, "Print JSON");
    probe->callback([po] { run_probe(*po); });

    add_load_commands(*inst);
    add_instruments_modbus_commands(*inst);
}

}  // namespace eol::cli
