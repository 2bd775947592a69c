#include "eol/instruments/dialect.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <regex>
#include <set>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/toml_file.hpp"

namespace eol::instruments {
namespace {

using PH = std::vector<std::string_view>;

const std::vector<CommandInfo>& table() {
    static const std::vector<CommandInfo> t = {
        {Cmd::identify, "commands", "identify", true, true, {}},
        {Cmd::reset, "commands", "reset", true, false, {}},
        {Cmd::clear_status, "commands", "clear_status", true, false, {}},
        {Cmd::error_query, "commands", "error_query", true, true, {}},
        {Cmd::opc_query, "commands", "opc_query", true, true, {}},
        {Cmd::mode_cc, "commands", "mode_cc", false, false, {}},
        {Cmd::mode_cv, "commands", "mode_cv", false, false, {}},
        {Cmd::mode_cr, "commands", "mode_cr", false, false, {}},
        {Cmd::mode_cp, "commands", "mode_cp", false, false, {}},
        {Cmd::level_cc, "commands", "level_cc", false, false, PH{"value"}},
        {Cmd::level_cv, "commands", "level_cv", false, false, PH{"value"}},
        {Cmd::level_cr, "commands", "level_cr", false, false, PH{"value"}},
        {Cmd::level_cp, "commands", "level_cp", false, false, PH{"value"}},
        {Cmd::input_on, "commands", "input_on", false, false, {}},
        {Cmd::input_off, "commands", "input_off", false, false, {}},
        {Cmd::measure_voltage, "commands", "measure_voltage", false, true, {}},
        {Cmd::measure_current, "commands", "measure_current", false, true, {}},
        {Cmd::measure_power, "commands", "measure_power", false, true, {}},
        {Cmd::protection_query, "commands", "protection_query", false, true, {}},
        {Cmd::protection_clear, "commands", "protection_clear", false, false, {}},
        {Cmd::list_levels, "pulse", "levels", false, false, PH{"levels"}},
        {Cmd::list_durations, "pulse", "durations", false, false, PH{"durations"}},
        {Cmd::list_step_count, "pulse", "step_count", false, false, PH{"count"}},
        {Cmd::list_step_level, "pulse", "step_level", false, false, PH{"step", "value"}},
        {Cmd::list_step_duration, "pulse", "step_duration", false, false, PH{"step", "value"}},
        {Cmd::logger_interval, "pulse", "logger_interval", false, false, PH{"interval"}},
        {Cmd::logger_points, "pulse", "logger_points", false, false, PH{"points"}},
        {Cmd::trigger, "pulse", "trigger", true, false, {}},
        {Cmd::pulse_status, "pulse", "status", false, true, {}},
        {Cmd::fetch_voltage, "pulse", "fetch_voltage", false, true, {}},
        {Cmd::fetch_current, "pulse", "fetch_current", false, true, {}},
        {Cmd::pulse_abort, "pulse", "abort", false, false, {}},
    };
    static const bool ordered = [] {
        for (std::size_t k = 0; k < t.size(); ++k)
            if (static_cast<std::size_t>(t[k].cmd) != k) return false;
        return t.size() == kCmdCount;
    }();
    if (!ordered) throw std::logic_error("dialect command table out of order");
    return t;
}

std::string line_of(const toml::node* n) {
    if (!n) return "";
    const auto& s = n->source();
    return std::to_string(s.begin.line);
}

class Reader {
public:
    explicit Reader(std::string source) : src_(std::move(source)) {}

    [[noreturn]] void fail(const toml::node* at, std::string_view key, const std::string& msg) const {
        std::string where = src_;
        const std::string line = line_of(at);
        if (!line.empty() && line != "0") where += ":" + line;
        throw DefinitionError(where + ": " + std::string(key) + ": " + msg);
    }

    const toml::table* table(const toml::table& root, std::string_view name, bool required) const {
        const toml::node* n = root.get(name);
        if (!n) {
            if (required) fail(&root, name, "missing required table [" + std::string(name) + "]");
            return nullptr;
        }
        if (!n->is_table()) fail(n, name, "must be a table");
        return n->as_table();
    }

    void known_keys(const toml::table& t, std::string_view tname,
                    const std::vector<std::string_view>& known) const {
        for (const auto& [k, v] : t) {
            if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
            std::string list;
            for (auto kk : known) list += (list.empty() ? "" : ", ") + std::string(kk);
            fail(&v, key(tname, k.str()), "unknown key (known: " + list + ")");
        }
    }

    static std::string key(std::string_view t, std::string_view k) {
        return t.empty() ? std::string(k) : std::string(t) + "." + std::string(k);
    }

    std::optional<std::string> str(const toml::table* t, std::string_view tname, std::string_view k,
                                   bool required) const {
        const toml::node* n = t ? t->get(k) : nullptr;
        if (!n) {
            if (required) fail(t, key(tname, k), "missing required key");
            return std::nullopt;
        }
        if (!n->is_string()) fail(n, key(tname, k), "must be a string");
        return std::string(*n->value<std::string_view>());
    }

    std::optional<std::int64_t> integer(const toml::table* t, std::string_view tname,
                                        std::string_view k, std::int64_t lo, std::int64_t hi) const {
        const toml::node* n = t ? t->get(k) : nullptr;
        if (!n) return std::nullopt;
        if (!n->is_integer()) fail(n, key(tname, k), "must be an integer");
        const auto v = *n->value<std::int64_t>();
        if (v < lo || v > hi)
            fail(n, key(tname, k),
                 "must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                     std::to_string(v));
        return v;
    }

    std::optional<double> number(const toml::table* t, std::string_view tname, std::string_view k,
                                 double lo_exclusive) const {
        const toml::node* n = t ? t->get(k) : nullptr;
        if (!n) return std::nullopt;
        if (!n->is_number()) fail(n, key(tname, k), "must be a number");
        const double v = *n->value<double>();
        if (!(v > lo_exclusive))
            fail(n, key(tname, k), "must be > " + format_number(lo_exclusive));
        return v;
    }

    std::vector<std::string> strings(const toml::table* t, std::string_view tname,
                                     std::string_view k) const {
        std::vector<std::string> out;
        const toml::node* n = t ? t->get(k) : nullptr;
        if (!n) return out;
        if (!n->is_array()) fail(n, key(tname, k), "must be an array of strings");
        std::size_t i = 0;
        for (const auto& e : *n->as_array()) {
            if (!e.is_string())
                fail(&e, key(tname, k) + "[" + std::to_string(i) + "]", "must be a string");
            out.emplace_back(*e.value<std::string_view>());
            ++i;
        }
        return out;
    }

    const toml::node* node(const toml::table* t, std::string_view k) const {
        return t ? t->get(k) : nullptr;
    }

private:
    std::string src_;
};

// Placeholders in a template, in order.
std::vector<std::string> placeholders(std::string_view t) {
    std::vector<std::string> out;
    for (std::size_t k = 0; k < t.size(); ++k) {
        if (t[k] != '{') continue;
        const std::size_t e = t.find('}', k);
        if (e == std::string_view::npos) {
            out.emplace_back(t.substr(k));  // unterminated: reported as unknown
            break;
        }
        out.emplace_back(t.substr(k + 1, e - k - 1));
        k = e;
    }
    return out;
}

void check_placeholders(const Reader& r, const toml::node* at, const std::string& key,
                        std::string_view tmpl, const std::vector<std::string_view>& wanted) {
    const auto got = placeholders(tmpl);
    for (const auto& p : got)
        if (std::find(wanted.begin(), wanted.end(), p) == wanted.end()) {
            std::string list;
            for (auto w : wanted) list += (list.empty() ? "{" : ", {") + std::string(w) + "}";
            r.fail(at, key,
                   "template '" + std::string(tmpl) + "' uses {" + p + "}" +
                       (wanted.empty() ? " but this command takes no placeholder"
                                       : "; this command takes " + list));
        }
    for (auto w : wanted) {
        const auto n = std::count(got.begin(), got.end(), std::string(w));
        if (n != 1)
            r.fail(at, key,
                   "template '" + std::string(tmpl) + "' must contain {" + std::string(w) +
                       "} exactly once");
    }
}

}  // namespace

const CommandInfo& command_info(Cmd c) { return table().at(static_cast<std::size_t>(c)); }

Protection ProtectionBits::decode(std::uint64_t s) const {
    auto bit = [s](int b) { return b >= 0 && ((s >> b) & 1u) != 0; };
    Protection p;
    p.over_voltage = bit(over_voltage);
    p.over_current = bit(over_current);
    p.over_power = bit(over_power);
    p.over_temperature = bit(over_temperature);
    p.reverse_voltage = bit(reverse_voltage);
    return p;
}

std::uint64_t ProtectionBits::encode(const Protection& p) const {
    std::uint64_t s = 0;
    auto set = [&s](bool on, int b) {
        if (on && b >= 0) s |= std::uint64_t{1} << b;
    };
    set(p.over_voltage, over_voltage);
    set(p.over_current, over_current);
    set(p.over_power, over_power);
    set(p.over_temperature, over_temperature);
    set(p.reverse_voltage, reverse_voltage);
    return s;
}

const std::string& Dialect::text(Cmd c) const {
    const auto& t = templates_[static_cast<std::size_t>(c)];
    if (!t)
        throw DefinitionError(file.string() + ": dialect '" + name + "' has no " +
                              std::string(command_info(c).table) + "." +
                              std::string(command_info(c).key) + " command");
    return *t;
}

std::string fill_template(std::string_view tmpl, const Dialect::Args& args) {
    std::string out;
    out.reserve(tmpl.size() + 16);
    for (std::size_t k = 0; k < tmpl.size(); ++k) {
        if (tmpl[k] == '{') {
            const std::size_t e = tmpl.find('}', k);
            if (e != std::string_view::npos) {
                const std::string_view name = tmpl.substr(k + 1, e - k - 1);
                const auto it = std::find_if(args.begin(), args.end(),
                                             [&](const auto& a) { return a.first == name; });
                if (it != args.end()) {
                    out += it->second;
                    k = e;
                    continue;
                }
            }
        }
        out += tmpl[k];
    }
    return out;
}

std::string Dialect::address(std::string_view body, int channel) const {
    const Args ch{{"ch", std::to_string(channel)}};
    switch (channel_style) {
    case ChannelStyle::none: return std::string(body);
    case ChannelStyle::prefix: return fill_template(prefix, ch) + std::string(body);
    case ChannelStyle::suffix:
        return std::string(body) +
               fill_template(body.find(' ') == std::string_view::npos ? bare_suffix : suffix, ch);
    }
    return std::string(body);
}

std::string Dialect::render(Cmd c, int channel, const Args& args) const {
    const std::string body = fill_template(text(c), args);
    return command_info(c).global ? body : address(body, channel);
}

bool Dialect::identity_matches(std::string_view idn) const {
    if (identity.empty()) return true;
    const std::regex re(identity);
    return std::regex_search(idn.begin(), idn.end(), re);
}

Dialect parse_dialect(std::string_view text, const std::string& source) {
    Reader r(source);
    const toml::table root = parse_toml_text(text, source);
    r.known_keys(root, "", {"dialect", "commands", "pulse", "protection", "simulator", "capabilities"});

    Dialect d;
    d.file = source;

    // [dialect]
    const toml::table* td = r.table(root, "dialect", true);
    r.known_keys(*td, "dialect",
                 {"name", "description", "channels", "channel_style", "prefix", "suffix",
                  "bare_suffix", "current_sign", "identity", "array_format", "max_list_steps",
                  "max_logger_points"});
    d.name = *r.str(td, "dialect", "name", true);
    d.description = r.str(td, "dialect", "description", false).value_or("");
    d.channels = static_cast<int>(r.integer(td, "dialect", "channels", 1, 64).value_or(1));
    if (auto s = r.str(td, "dialect", "channel_style", true)) {
        if (*s == "none") d.channel_style = ChannelStyle::none;
        else if (*s == "prefix") d.channel_style = ChannelStyle::prefix;
        else if (*s == "suffix") d.channel_style = ChannelStyle::suffix;
        else
            r.fail(r.node(td, "channel_style"), "dialect.channel_style",
                   "'" + *s + "' is not one of none, prefix, suffix");
    }
    if (d.channel_style == ChannelStyle::none && d.channels != 1)
        r.fail(r.node(td, "channels"), "dialect.channels",
               "a dialect with channel_style = \"none\" addresses one channel; got " +
                   std::to_string(d.channels));
    for (auto [k, target] : {std::pair{"prefix", &d.prefix}, std::pair{"suffix", &d.suffix},
                             std::pair{"bare_suffix", &d.bare_suffix}}) {
        if (auto s = r.str(td, "dialect", k, false)) *target = *s;
        check_placeholders(r, r.node(td, k) ? r.node(td, k) : td, std::string("dialect.") + k,
                           *target, {"ch"});
    }
    if (d.channel_style == ChannelStyle::prefix) {
        const std::string& p = d.prefix;
        if (!(p.ends_with(";") || p.ends_with(";:")))
            r.fail(r.node(td, "prefix") ? r.node(td, "prefix") : td, "dialect.prefix",
                   "a channel prefix must end with ';' or ';:' (it is a command of its own), got '" +
                       p + "'");
    }
    if (auto s = r.str(td, "dialect", "current_sign", false)) {
        if (*s == "positive") d.current_sign = 1.0;
        else if (*s == "negative") d.current_sign = -1.0;
        else
            r.fail(r.node(td, "current_sign"), "dialect.current_sign",
                   "'" + *s + "' is not one of positive, negative");
    }
    d.identity = r.str(td, "dialect", "identity", false).value_or("");
    if (!d.identity.empty()) {
        try {
            std::regex test(d.identity);
        } catch (const std::regex_error& e) {
            r.fail(r.node(td, "identity"), "dialect.identity",
                   "not a valid regular expression: " + std::string(e.what()));
        }
    }
    if (auto s = r.str(td, "dialect", "array_format", false)) {
        try {
            d.array_format = parse_array_format(*s);
        } catch (const std::invalid_argument& e) {
            r.fail(r.node(td, "array_format"), "dialect.array_format", e.what());
        }
    }
    if (auto v = r.integer(td, "dialect", "max_list_steps", 1, 100000))
        d.max_list_steps = static_cast<std::size_t>(*v);
    if (auto v = r.integer(td, "dialect", "max_logger_points", 1, 100000000))
        d.max_logger_points = static_cast<std::size_t>(*v);

    // [commands] and [pulse]
    const toml::table* tc = r.table(root, "commands", true);
    const toml::table* tp = r.table(root, "pulse", true);
    {
        std::vector<std::string_view> ck, pk{"setup_global", "setup", "arm", "busy_mask"};
        for (const auto& info : table()) (info.table == "commands" ? ck : pk).push_back(info.key);
        r.known_keys(*tc, "commands", ck);
        r.known_keys(*tp, "pulse", pk);
    }
    // IEEE 488.2 defaults.
    d.set(Cmd::identify, "*IDN?");
    d.set(Cmd::reset, "*RST");
    d.set(Cmd::clear_status, "*CLS");
    d.set(Cmd::error_query, "SYST:ERR?");
    d.set(Cmd::opc_query, "*OPC?");
    for (const auto& info : table()) {
        const toml::table* t = info.table == "commands" ? tc : tp;
        const auto s = r.str(t, info.table, info.key, false);
        if (!s) continue;
        const std::string key = std::string(info.table) + "." + std::string(info.key);
        const toml::node* at = r.node(t, info.key);
        if (s->empty()) r.fail(at, key, "empty command");
        check_placeholders(r, at, key, *s, info.placeholders);
        const bool is_query = s->find('?') != std::string::npos;
        if (info.query && !is_query)
            r.fail(at, key, "'" + *s + "' must be a query (contain '?'): the instrument answers it");
        if (!info.query && is_query)
            r.fail(at, key, "'" + *s + "' must not be a query: the instrument does not answer it");
        if (s->find(';') != std::string::npos || s->find('\n') != std::string::npos)
            r.fail(at, key, "one command per template: ';' and newlines are not allowed");
        d.set(info.cmd, *s);
    }
    auto require = [&](Cmd c) {
        const auto& info = command_info(c);
        if (!d.has(c))
            r.fail(info.table == "commands" ? tc : tp,
                   std::string(info.table) + "." + std::string(info.key), "missing required key");
    };
    for (Cmd c : {Cmd::mode_cc, Cmd::level_cc, Cmd::input_on, Cmd::input_off, Cmd::measure_voltage,
                  Cmd::measure_current, Cmd::protection_query, Cmd::logger_interval,
                  Cmd::logger_points, Cmd::trigger, Cmd::pulse_status, Cmd::fetch_voltage,
                  Cmd::fetch_current})
        require(c);
    for (auto [m, l] : {std::pair{Cmd::mode_cv, Cmd::level_cv}, std::pair{Cmd::mode_cr, Cmd::level_cr},
                        std::pair{Cmd::mode_cp, Cmd::level_cp}})
        if (d.has(m) != d.has(l)) require(d.has(m) ? l : m);
    const bool whole = d.has(Cmd::list_levels) || d.has(Cmd::list_durations);
    const bool steps = d.has(Cmd::list_step_count) || d.has(Cmd::list_step_level) ||
                       d.has(Cmd::list_step_duration);
    if (whole && steps)
        r.fail(tp, "pulse",
               "give either levels + durations (whole lists) or step_count + step_level + "
               "step_duration (one step per command), not both");
    if (whole) {
        require(Cmd::list_levels);
        require(Cmd::list_durations);
    } else if (steps) {
        require(Cmd::list_step_count);
        require(Cmd::list_step_level);
        require(Cmd::list_step_duration);
    } else {
        r.fail(tp, "pulse",
               "missing the list programming: levels + durations, or step_count + step_level + "
               "step_duration");
    }
    d.pulse_setup_global = r.strings(tp, "pulse", "setup_global");
    d.pulse_setup = r.strings(tp, "pulse", "setup");
    d.pulse_arm = r.strings(tp, "pulse", "arm");
    for (auto [k, list] : {std::pair{"setup_global", &d.pulse_setup_global},
                           std::pair{"setup", &d.pulse_setup}, std::pair{"arm", &d.pulse_arm}})
        for (std::size_t i = 0; i < list->size(); ++i) {
            const std::string& s = (*list)[i];
            const std::string key = std::string("pulse.") + k + "[" + std::to_string(i) + "]";
            if (s.empty() || s.find('?') != std::string::npos || s.find(';') != std::string::npos ||
                s.find('{') != std::string::npos)
                r.fail(r.node(tp, k), key,
                       "'" + s + "' must be one fixed command (no query, ';' or placeholder)");
        }
    if (d.pulse_arm.empty())
        r.fail(tp, "pulse.arm", "missing required key (the commands that arm list and logger)");
    if (auto v = r.integer(tp, "pulse", "busy_mask", 1, std::int64_t{1} << 40))
        d.busy_mask = static_cast<std::uint64_t>(*v);
    else
        r.fail(tp, "pulse.busy_mask", "missing required key");

    // [protection]
    if (const toml::table* tr = r.table(root, "protection", false)) {
        r.known_keys(*tr, "protection",
                     {"over_voltage", "over_current", "over_power", "over_temperature",
                      "reverse_voltage"});
        auto bit = [&](const char* k, int& target) {
            if (auto v = r.integer(tr, "protection", k, 0, 63)) target = static_cast<int>(*v);
        };
        bit("over_voltage", d.protection.over_voltage);
        bit("over_current", d.protection.over_current);
        bit("over_power", d.protection.over_power);
        bit("over_temperature", d.protection.over_temperature);
        bit("reverse_voltage", d.protection.reverse_voltage);
    }

    // [capabilities]
    if (const toml::table* caps = r.table(root, "capabilities", false)) {
        r.known_keys(*caps, "capabilities", {"max_current_a", "max_voltage_v", "max_power_w", "hardware_pulse"});
        if (auto v = r.number(caps, "capabilities", "max_current_a", 0)) d.max_current_a = *v;
        if (auto v = r.number(caps, "capabilities", "max_voltage_v", 0)) d.max_voltage_v = *v;
        if (auto v = r.number(caps, "capabilities", "max_power_w", 0)) d.max_power_w = *v;
        if (const toml::node* n = caps->get("hardware_pulse")) {
            if (!n->is_boolean()) r.fail(n, "capabilities.hardware_pulse", "must be true or false");
            d.hardware_pulse = *n->value<bool>();
        }
    }

    // [simulator]
    if (const toml::table* ts = r.table(root, "simulator", false)) {
        r.known_keys(*ts, "simulator", {"idn", "max_current_a", "max_voltage_v", "max_power_w"});
        if (auto s = r.str(ts, "simulator", "idn", false)) {
            try {
                (void)parse_identity(*s);
            } catch (const std::invalid_argument& e) {
                r.fail(r.node(ts, "idn"), "simulator.idn", e.what());
            }
            d.simulator.idn = *s;
        }
        if (auto v = r.number(ts, "simulator", "max_current_a", 0)) d.simulator.max_current_a = *v;
        if (auto v = r.number(ts, "simulator", "max_voltage_v", 0)) d.simulator.max_voltage_v = *v;
        if (auto v = r.number(ts, "simulator", "max_power_w", 0)) d.simulator.max_power_w = *v;
        if (r.node(ts, "idn") && !d.identity_matches(d.simulator.idn))
            r.fail(r.node(ts, "idn"), "simulator.idn",
                   "'" + d.simulator.idn + "' does not match dialect.identity '" + d.identity + "'");
    }
    return d;
}

Dialect load_dialect(const std::filesystem::path& file) {
    Dialect d = parse_dialect(read_toml_file(file), file.string());
    d.file = file;
    return d;
}

}  // namespace eol::instruments
