// eolstation config check — validates a station file (and the recipe it
// names) or a recipe file alone, and prints a summary. Every diagnostic goes
// to stderr as file:line:col: key.path: message; exit 2 when there are any.
#include <fmt/core.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "commands.hpp"
#include "eol/station/config.hpp"

namespace eol::cli {
namespace {

using station::Recipe;
using station::StationConfig;
using nlohmann::json;

std::string limits_text(const station::MeasurementSpec& m) {
    if (m.low && m.high) return fmt::format("[{:g}, {:g}] {}", *m.low, *m.high, m.unit);
    if (m.low) return fmt::format(">= {:g} {}", *m.low, m.unit);
    if (m.high) return fmt::format("<= {:g} {}", *m.high, m.unit);
    return fmt::format("({}, no limits)", m.unit);
}

std::string step_text(const station::RecipeStep& s) {
    using namespace station;
    return std::visit(
        [](const auto& p) -> std::string {
            using T = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<T, RestParams>) return fmt::format("{} s", p.duration_s);
            else if constexpr (std::is_same_v<T, OcvParams>)
                return fmt::format("{} readings, {} s apart", p.samples, p.interval_s);
            else if constexpr (std::is_same_v<T, DcirParams>)
                return fmt::format("{:g} A for {:g} s, then {:g} A for {:g} s", p.low_a, p.low_s, p.high_a,
                                   p.high_s);
            else if constexpr (std::is_same_v<T, PulseParams>)
                return fmt::format("{} A for {} s, {} s relaxation, logged every {} s ({} points)",
                                   p.current_a, p.duration_s, p.relaxation_s, p.sample_interval_s,
                                   p.points());
            else
                return fmt::format("{} A for {} s, {} s cooling, sampled every {} s{}", p.current_a,
                                   p.duration_s, p.cooling_s, p.sample_interval_s,
                                   p.entropic_v ? fmt::format(", reversible heat k = {:g} mV{} given",
                                                              1e3 * *p.entropic_v,
                                                              p.entropic_v_per_ah
                                                                  ? fmt::format(" {:+g} mV/Ah drawn",
                                                                                1e3 * *p.entropic_v_per_ah)
                                                                  : std::string())
                                                : std::string());
        },
        s.params);
}

json step_json(const station::RecipeStep& s) {
    using namespace station;
    json j{{"name", s.name}, {"kind", std::string(to_string(s.kind()))}, {"duration_s", s.duration_s()}, {"timeout_s", s.timeout_s > 0 ? s.timeout_s : s.default_timeout_s()},
           {"timeout_declared", s.timeout_s > 0}};
    std::visit(
        [&j](const auto& p) {
            using T = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<T, RestParams>) {
            } else if constexpr (std::is_same_v<T, OcvParams>) {
                j["samples"] = p.samples;
                j["interval_s"] = p.interval_s;
            } else if constexpr (std::is_same_v<T, DcirParams>) {
                j["low_a"] = p.low_a;
                j["low_s"] = p.low_s;
                j["high_a"] = p.high_a;
                j["high_s"] = p.high_s;
            } else if constexpr (std::is_same_v<T, PulseParams>) {
                j["current_a"] = p.current_a;
                j["pulse_s"] = p.duration_s;
                j["pre_s"] = p.pre_s;
                j["relaxation_s"] = p.relaxation_s;
                j["sample_interval_s"] = p.sample_interval_s;
                j["points"] = p.points();
            } else {
                j["current_a"] = p.current_a;
                j["heating_s"] = p.duration_s;
                j["cooling_s"] = p.cooling_s;
                j["sample_interval_s"] = p.sample_interval_s;
                if (p.entropic_v) j["entropic_v"] = *p.entropic_v;
                if (p.entropic_v_per_ah) j["entropic_v_per_ah"] = *p.entropic_v_per_ah;
            }
        },
        s.params);
    json ms = json::array();
    for (const auto& m : s.measurements) {
        json mj{{"name", m.name}, {"quantity", m.quantity}, {"unit", m.unit}};
        mj["low"] = m.low ? json(*m.low) : json(nullptr);
        mj["high"] = m.high ? json(*m.high) : json(nullptr);
        mj["low_from"] = m.low_from.known() ? json(m.low_from.to_string()) : json(nullptr);
        mj["high_from"] = m.high_from.known() ? json(m.high_from.to_string()) : json(nullptr);
        ms.push_back(mj);
    }
    j["measurements"] = ms;
    return j;
}

json recipe_json(const Recipe& r) {
    json steps = json::array();
    for (const auto& s : r.steps) steps.push_back(step_json(s));
    json layers = json::array();
    for (const auto& l : r.limit_layers)
        layers.push_back({{"file", l.file.lexically_normal().string()}, {"present", l.present}, {"overrides", l.overrides}, {"not_measured", l.not_measured}});
    return {{"file", r.file.string()},   {"name", r.name},
            {"cell_model", r.cell_model}, {"capacity_ah", r.capacity_ah},
            {"duration_s", r.duration_s()}, {"steps", steps}, {"limit_layers", layers},
            {"entropy", r.entropy ? json{{"soc", r.entropy->soc},
                                         {"ocv_v", r.entropy->ocv_v},
                                         {"du_dt_v_per_k", r.entropy->du_dt_v_per_k}}
                                  : json(nullptr)}};
}

json station_json(const StationConfig& c) {
    json inst = json::array();
    for (const auto& i : c.instruments)
        inst.push_back({{"name", i.name},
                        {"driver", std::string(to_string(i.driver))},
                        {"address", i.address},
                        {"definition", i.definition.string()},
                        {"channels", i.channels},
                        {"timeout_s", i.timeout_s},
                        {"connect_timeout_s", i.connect_timeout_s},
                        {"unit", i.unit}});
    json chans = json::array();
    for (const auto& ch : c.channels) {
        const auto amb = c.ambient_for(ch);
        chans.push_back({{"position", ch.position},
                         {"load", ch.load},
                         {"load_channel", ch.load_channel},
                         {"thermo", ch.thermo},
                         {"thermo_channel", ch.thermo_channel},
                         {"ambient", amb ? json{{"thermo", amb->thermo}, {"channel", amb->channel}} : json(nullptr)},
                         {"p_x_identifiable", amb.has_value()},
                         {"thermo_offset_k", ch.thermo_offset_k ? json(*ch.thermo_offset_k) : json(nullptr)}});
    }
    json j{{"valid", true},
           {"file", c.file.string()},
           {"station_id", c.station_id},
           {"instruments", inst},
           {"channels", chans},
           {"recipe", recipe_json(c.recipe)},
           {"serial_scheme", c.serial_scheme.string()},
           {"spec_limits", c.limits_file.empty() ? json(nullptr) : json(c.limits_file.string())},
           {"store", c.store.string()},
           {"plc", {{"enabled", c.plc.active()},
                    {"bind", c.plc.bind},
                    {"port", c.plc.port},
                    {"unit", c.plc.unit},
                    {"heartbeat_timeout_s", c.plc.heartbeat_timeout_s},
                    {"allow", c.plc.allow},
                    {"recipe_id", c.plc.recipe_id}}},
           {"panel", {{"enabled", c.panel.active()}, {"bind", c.panel.bind}, {"port", c.panel.port},
                      {"language", c.panel.language}}},
           {"screening", {{"features", c.screening.features}}}};
    j["ambient"] = c.ambient ? json{{"thermo", c.ambient->thermo}, {"channel", c.ambient->channel}}
                             : json(nullptr);
    return j;
}

void print_recipe(const Recipe& r) {
    fmt::print("recipe       {} ({}), cell {} {} Ah, {} steps, {:.0f} s at the cell\n", r.name,
               r.file.string(), r.cell_model, r.capacity_ah, r.steps.size(), r.duration_s());
    if (r.entropy) {
        const auto& e = *r.entropy;
        const auto [lo, hi] = std::minmax_element(e.du_dt_v_per_k.begin(), e.du_dt_v_per_k.end());
        fmt::print("entropy      dU/dT {:+.2f} … {:+.2f} mV/K over SoC {:g}–{:g} (OCV {:.3f}–{:.3f} V, {} points): "
                   "heat steps without entropic_v take k = −T·dU/dT at each cell's measured OCV\n",
                   1e3 * *lo, 1e3 * *hi, e.soc.front(), e.soc.back(), e.ocv_v.front(), e.ocv_v.back(), e.soc.size());
    }
    std::size_t w = 0;
    for (const auto& s : r.steps) w = std::max(w, s.name.size());
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
        const auto& s = r.steps[i];
        fmt::print("  {:>2} {:<{}}  {:<5}  {}\n", i + 1, s.name, w, to_string(s.kind()),
                   step_text(s));
        for (const auto& m : s.measurements)
            fmt::print("     {:<{}}  measures {} {}\n", "", w, m.name, limits_text(m));
    }
    if (r.limit_layers.empty()) return;
    // The resolved spec limits and where each came from (docs/limits.md).
    std::vector<std::string> layers{r.file.string()};
    for (const auto& l : r.limit_layers)
        layers.push_back(l.present ? l.file.lexically_normal().string()
                                   : fmt::format("({} absent)", l.file.lexically_normal().string()));
    fmt::print("spec limits  {}\n", fmt::join(layers, " < "));
    std::size_t mw = 0;
    for (const auto* m : r.measurements()) mw = std::max(mw, m->name.size());
    auto side = [](const std::optional<double>& v, const station::LimitSource& from) {
        if (!v) return std::string("-");
        return fmt::format("{:g} ({})", *v, from.known() ? from.to_string() : "?");
    };
    for (const auto* m : r.measurements())
        fmt::print("  {:<{}}  low {}  high {}\n", m->name, mw, side(m->low, m->low_from), side(m->high, m->high_from));
    for (const auto& l : r.limit_layers)
        if (!l.not_measured.empty())
            fmt::print("  not measured by this recipe, skipped: {} ({})\n", fmt::join(l.not_measured, ", "),
                       l.file.lexically_normal().string());
}

/// Whether the station's recipe or screening uses P_x (p_x_w).
std::string p_x_users(const StationConfig& c) {
    std::vector<std::string> users;
    for (const auto* m : c.recipe.measurements())
        if (m->quantity == "p_x_w") users.push_back(fmt::format("recipe measurement {}", m->name));
    for (const auto& f : c.screening.features)
        if (f == "p_x_w" || f == "p_x_mw" || f == "thermal.p_extra_w") users.push_back(fmt::format("screening feature {}", f));
    return fmt::format("{}", fmt::join(users, ", "));
}

void print_station(const StationConfig& c) {
    fmt::print("{}: valid\n", c.file.string());
    fmt::print("station      {}\n", c.station_id);
    fmt::print("instruments\n");
    for (const auto& i : c.instruments)
        fmt::print("  {:<8} {:<13} {:<24} {} ch  {}{}\n", i.name, to_string(i.driver), i.address,
                   i.channels, i.definition.string(),
                   i.is_load() && i.driver == station::InstrumentConfig::Driver::scpi_load
                       ? ""
                       : fmt::format("  unit {}", i.unit));
    fmt::print("channels     position  load       thermocouple  ambient  (thermocouple offset: commissioned, else learned)\n");
    std::vector<int> blind;  // positions that cannot measure P_x
    for (const auto& ch : c.channels) {
        const auto amb = c.ambient_for(ch);
        if (!amb) blind.push_back(ch.position);
        fmt::print("             {:>8}  {:<9}  {:<12}  {}{}\n", ch.position, fmt::format("{}/{}", ch.load, ch.load_channel),
                   fmt::format("{}/{}", ch.thermo, ch.thermo_channel),
                   !amb                      ? std::string("none")
                   : amb->thermo == ch.thermo ? fmt::format("{}/{}", amb->thermo, amb->channel)
                                              : fmt::format("{}/{} (read through {})", amb->thermo, amb->channel, amb->thermo),
                   !ch.thermo_offset_k ? std::string()
                   : amb               ? fmt::format("  offset {:+.3f} K commissioned", *ch.thermo_offset_k)
                                       : fmt::format("  offset {:+.3f} K commissioned (unused: no ambient sensor)",
                                                     *ch.thermo_offset_k));
    }
    if (c.ambient) fmt::print("ambient      {}/{}\n", c.ambient->thermo, c.ambient->channel);
    // P_x (the heat step's unexplained heat, p_x_w) needs an ambient sensor:
    // the positions without one record it missing, and screening skips it there.
    const std::string users = p_x_users(c);
    if (blind.empty())
        fmt::print("p_x_w        measurable at every position{}\n", users.empty() ? "" : " (" + users + ")");
    else
        fmt::print("p_x_w        NOT identifiable at position{} {} (no ambient thermocouple reachable): recorded as "
                   "missing, screening skips it there{}\n",
                   blind.size() == 1 ? "" : "s", fmt::join(blind, ", "),
                   users.empty() ? "" : "; used by " + users);
    if (!blind.empty() && !users.empty())
        fmt::print(stderr, "{}: warning: P_x is not identifiable at position{} {} (no ambient thermocouple): {} "
                           "will be missing for their cells\n",
                   c.file.string(), blind.size() == 1 ? "" : "s", fmt::join(blind, ", "), users);
    print_recipe(c.recipe);
    fmt::print("screening    {}\n", fmt::join(c.screening.features, ", "));
    fmt::print("serial       {}\n", c.serial_scheme.string());
    fmt::print("store        {}\n", c.store.string());
    if (c.plc.active())
        fmt::print("plc          {}:{} (unit {}, allow {}, recipe id {})\n", c.plc.bind, c.plc.port, c.plc.unit,
                   fmt::join(c.plc.allow, " "), c.plc.recipe_id);
    else
        fmt::print("plc          off\n");
    if (c.panel.active()) fmt::print("panel        {}:{} ({})\n", c.panel.bind, c.panel.port, c.panel.language);
    else fmt::print("panel        off\n");
    if (c.recall.active())
        fmt::print("recall       /recall on the panel{}: device scheme {}, texts {}, {} lookups then {}/min per client, "
                   "answers after {} s\n",
                   c.panel.active() ? "" : " (NOT served: no active [panel])",
                   c.recall.device_scheme.empty() ? "built-in" : c.recall.device_scheme.string(),
                   c.recall.texts_file.empty() ? "inline" : c.recall.texts_file.string(), c.recall.rate_burst,
                   c.recall.rate_per_minute, c.recall.min_answer_s);
    else fmt::print("recall       off\n");
}

struct CheckOptions {
    std::string file;
    std::string limits;  // with --recipe: a generic spec limits file layered over it
    bool recipe = false;
    bool json = false;
};

void run_check(const CheckOptions& o) {
    if (!o.recipe && !o.limits.empty())
        throw station::UsageError("config check: --limits goes with --recipe (a station file names its own: "
                                  "[station] spec_limits)");
    try {
        if (o.recipe) {
            Recipe r = station::load_recipe(o.file);
            if (!o.limits.empty()) station::apply_limits(r, o.limits);
            if (o.json) {
                json j = recipe_json(r);
                j["valid"] = true;
                fmt::print("{}\n", j.dump(2));
            } else {
                fmt::print("{}: valid\n", o.file);
                print_recipe(r);
            }
        } else {
            const StationConfig c = station::load_station_config(o.file);
            if (o.json) fmt::print("{}\n", station_json(c).dump(2));
            else print_station(c);
        }
    } catch (const station::ConfigError& e) {
        for (const auto& d : e.diagnostics()) fmt::print(stderr, "{}\n", d.to_string());
        const std::size_t n = e.diagnostics().size();
        fmt::print(stderr, "{}: {} error{}\n", o.file, n, n == 1 ? "" : "s");
        if (o.json) {
            json errs = json::array();
            for (const auto& d : e.diagnostics())
                errs.push_back({{"file", d.file},
                                {"line", d.line},
                                {"column", d.column},
                                {"key", d.key_path},
                                {"message", d.message}});
            fmt::print("{}\n", json{{"valid", false}, {"file", o.file}, {"errors", errs}}.dump(2));
        }
        set_exit(station::ExitCode::usage);
    }
}

}  // namespace

void add_config_commands(CLI::App& app) {
    auto* config = app.add_subcommand("config", "Station configuration");
    config->require_subcommand(1);

    auto opts = std::make_shared<CheckOptions>();
    auto* check = config->add_subcommand(
        "check",
        "Validate a station file (and the recipe it names) and print a summary.\n"
        "Every error is listed as FILE:LINE:COL: key.path: message; exit 2 if any.");
    check->add_option("FILE", opts->file, "Station TOML file (or a recipe with --recipe)")
        ->required();
    check->add_flag("--recipe", opts->recipe, "FILE is a recipe, not a station file");
    check->add_option("--limits", opts->limits,
                      "With --recipe: a generic spec limits file layered over the recipe's limits, then\n"
                      "<its directory>/<cell model>.toml (docs/limits.md)");
    check->add_flag("--json", opts->json, "Print the summary (or the errors) as JSON");
    check->callback([opts] { run_check(*opts); });
}

}  // namespace eol::cli
