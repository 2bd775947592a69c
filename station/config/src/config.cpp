#include "eol/station/config.hpp"
#include "eol/station/feature_catalog.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/text.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/dialect.hpp"
#include "eol/instruments/toml_file.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <utility>

namespace eol::station {

// ---------------------------------------------------------------- Diagnostic / ConfigError

std::string Diagnostic::to_string() const {
    std::string s = file;
    if (line > 0) {
        s += fmt::format(":{}", line);
        if (column > 0) s += fmt::format(":{}", column);
    }
    s += ": ";
    if (!key_path.empty()) s += key_path + ": ";
    s += message;
    return s;
}

namespace {
std::string join_diagnostics(const std::vector<Diagnostic>& ds) {
    std::string s;
    for (const auto& d : ds) {
        if (!s.empty()) s += '\n';
        s += d.to_string();
    }
    return s;
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : UsageError(join_diagnostics(diagnostics)), diagnostics_(std::move(diagnostics)) {}

// ---------------------------------------------------------------- limits and their sources

std::string LimitSource::to_string() const {
    if (file.empty()) return {};
    return line > 0 ? fmt::format("{}:{}", file, line) : file;
}

std::string MeasurementSpec::describe_limits() const {
    auto side = [](std::string_view what, const std::optional<double>& v, const LimitSource& from) {
        if (!v) return fmt::format("{} none", what);
        if (!from.known()) return fmt::format("{} {}", what, *v);
        return fmt::format("{} {} from {}", what, *v, from.to_string());
    };
    return fmt::format("{} {}; {}", name, side("low", low, low_from), side("high", high, high_from));
}

// ---------------------------------------------------------------- small names

std::string_view to_string(StepKind kind) {
    switch (kind) {
        case StepKind::rest: return "rest";
        case StepKind::ocv: return "ocv";
        case StepKind::dcir: return "dcir";
        case StepKind::pulse: return "pulse";
        case StepKind::heat: return "heat";
    }
    return "?";
}

std::string_view to_string(InstrumentConfig::Driver driver) {
    switch (driver) {
        case InstrumentConfig::Driver::scpi_load: return "scpi_load";
        case InstrumentConfig::Driver::modbus_load: return "modbus_load";
        case InstrumentConfig::Driver::modbus_thermo: return "modbus_thermo";
    }
    return "?";
}

const std::vector<Quantity>& step_quantities(StepKind kind) {
    static const std::vector<Quantity> rest{};
    static const std::vector<Quantity> ocv{{"ocv_v", "V"}};
    static const std::vector<Quantity> dcir{{"dcir_ohm", "ohm"}};
    static const std::vector<Quantity> pulse{{"r0_ohm", "ohm"},      {"r1_ohm", "ohm"},
                                             {"tau1_s", "s"},        {"r2_ohm", "ohm"},
                                             {"tau2_s", "s"},        {"fit_rmse_v", "V"},
                                             {"pulse_v_min_v", "V"}};
    static const std::vector<Quantity> heat{{"temp_rise_k", "K"},
                                            {"c_th_j_per_k", "J/K"},
                                            {"r_th_k_per_w", "K/W"},
                                            {"p_x_w", "W"}};
    switch (kind) {
        case StepKind::rest: return rest;
        case StepKind::ocv: return ocv;
        case StepKind::dcir: return dcir;
        case StepKind::pulse: return pulse;
        case StepKind::heat: return heat;
    }
    return rest;
}

std::size_t PulseParams::points() const {
    if (sample_interval_s <= 0) return 0;
    const double total = pre_s + duration_s + relaxation_s;
    // Tolerate floating-point noise in total/interval (e.g. 71/0.01).
    return static_cast<std::size_t>(std::ceil(total / sample_interval_s - 1e-9));
}

namespace {
double interp_on(const std::vector<double>& x, const std::vector<double>& y, double at) {
    if (x.empty()) return std::nan("");
    if (at <= x.front()) return y.front();
    if (at >= x.back()) return y.back();
    const auto k = static_cast<std::size_t>(std::upper_bound(x.begin(), x.end(), at) - x.begin());
    const double f = (at - x[k - 1]) / (x[k] - x[k - 1]);
    return y[k - 1] + f * (y[k] - y[k - 1]);
}
}  // namespace

double CellEntropy::soc_at(double ocv) const { return interp_on(ocv_v, soc, ocv); }
double CellEntropy::du_dt_at(double s) const { return interp_on(soc, du_dt_v_per_k, s); }

CellEntropy::Reversible CellEntropy::reversible(double ocv, double t_cell_c, double charge_ah, double capacity_ah) const {
    const double t_k = t_cell_c + 273.15;
    Reversible r;
    r.soc = soc_at(ocv);
    r.k_v = -t_k * du_dt_at(r.soc);
    const double soc_end = capacity_ah > 0 ? r.soc - charge_ah / capacity_ah : r.soc;
    r.k_v_per_ah = charge_ah > 0 ? (-t_k * du_dt_at(soc_end) - r.k_v) / charge_ah : 0.0;
    return r;
}

double RecipeStep::duration_s() const {
    return std::visit(
        [](const auto& p) -> double {
            using T = std::decay_t<decltype(p)>;
            if constexpr (std::is_same_v<T, RestParams>) return p.duration_s;
            else if constexpr (std::is_same_v<T, OcvParams>)
                return p.samples > 1 ? (p.samples - 1) * p.interval_s : 0.0;
            else if constexpr (std::is_same_v<T, DcirParams>) return p.low_s + p.high_s;
            else if constexpr (std::is_same_v<T, PulseParams>)
                return p.pre_s + p.duration_s + p.relaxation_s;
            else return p.duration_s + p.cooling_s;
        },
        params);
}

double RecipeStep::default_timeout_s() const {
    const double d = duration_s();
    return d + std::max(30.0, 0.5 * d);
}

std::vector<const MeasurementSpec*> Recipe::measurements() const {
    std::vector<const MeasurementSpec*> out;
    for (const auto& s : steps)
        for (const auto& m : s.measurements) out.push_back(&m);
    return out;
}

const MeasurementSpec* Recipe::find_measurement(std::string_view n) const {
    for (const auto& s : steps)
        for (const auto& m : s.measurements)
            if (m.name == n) return &m;
    return nullptr;
}

double Recipe::duration_s() const {
    double t = 0;
    for (const auto& s : steps) t += s.duration_s();
    return t;
}

const std::vector<RecallTextKey>& recall_text_keys() {
    static const std::vector<RecallTextKey> keys{
        {"affected_action", ""},   {"affected_headline", ""},     {"check_button", ""},
        {"check_failed", ""},      {"contact", ""},               {"counter", "{0}{1}"},
        {"disposal", ""},          {"intro", ""},                 {"language", ""},
        {"no_suggestion", ""},     {"not_affected_action", ""},   {"not_affected_headline", ""},
        {"rate_limited", "{0}"},   {"refused_character", "{0}"},  {"serial_label", ""},
        {"suggestions", ""},       {"title", ""},                 {"unavailable", ""},
    };
    return keys;
}

const InstrumentConfig* StationConfig::find_instrument(std::string_view n) const {
    for (const auto& i : instruments)
        if (i.name == n) return &i;
    return nullptr;
}

const ChannelConfig* StationConfig::find_position(int position) const {
    for (const auto& c : channels)
        if (c.position == position) return &c;
    return nullptr;
}

std::optional<ThermoRef> StationConfig::ambient_for(const ChannelConfig& ch) const {
    if (const InstrumentConfig* ic = find_instrument(ch.thermo); ic && ic->ambient_channel)
        return ThermoRef{ic->name, *ic->ambient_channel};
    return ambient;
}

bool StationConfig::is_ambient_input(std::string_view thermo, int channel) const {
    if (ambient && ambient->thermo == thermo && ambient->channel == channel) return true;
    const InstrumentConfig* ic = find_instrument(thermo);
    return ic && ic->ambient_channel == channel;
}

// ---------------------------------------------------------------- reading machinery

namespace {
namespace fs = std::filesystem;

std::string type_name(toml::node_type t) {
    switch (t) {
        case toml::node_type::none: return "nothing";
        case toml::node_type::table: return "table";
        case toml::node_type::array: return "array";
        case toml::node_type::string: return "string";
        case toml::node_type::integer: return "integer";
        case toml::node_type::floating_point: return "float";
        case toml::node_type::boolean: return "boolean";
        case toml::node_type::date: return "date";
        case toml::node_type::time: return "time";
        case toml::node_type::date_time: return "date-time";
    }
    return "?";
}

std::string fmt_num(double v) { return fmt::format("{}", v); }

/// An interval a number must lie in; open ends exclude the bound.
struct Range {
    double lo;
    double hi;
    bool lo_open = false;
    bool hi_open = false;

    bool contains(double v) const {
        if (!std::isfinite(v)) return false;
        if (lo_open ? v <= lo : v < lo) return false;
        if (hi_open ? v >= hi : v > hi) return false;
        return true;
    }
    std::string describe() const {
        return fmt::format("must be {} {} and {} {}", lo_open ? ">" : "≥", fmt_num(lo),
                           hi_open ? "<" : "≤", fmt_num(hi));
    }
};
Range positive(double hi) { return {0.0, hi, true, false}; }
Range non_negative(double hi) { return {0.0, hi, false, false}; }

/// Collects diagnostics for one file.
class Sink {
public:
    explicit Sink(std::string file) : file_(std::move(file)) {}

    void error(const toml::source_region& where, std::string key_path, std::string message) {
        add(static_cast<int>(where.begin.line), static_cast<int>(where.begin.column),
            std::move(key_path), std::move(message));
    }
    void add(int line, int column, std::string key_path, std::string message) {
        diags_.push_back({file_, line, column, std::move(key_path), std::move(message)});
    }
    const std::string& file() const { return file_; }
    std::size_t count() const { return diags_.size(); }
    std::vector<Diagnostic> take() { return std::move(diags_); }

private:
    std::string file_;
    std::vector<Diagnostic> diags_;
};

std::string child_path(const std::string& parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

/// Reads the keys of one table: typed getters that report missing keys,
/// wrong types and out-of-range values, then finish() reports keys that no
/// getter asked for (unknown keys, with a did-you-mean).
class Tbl {
public:
    Tbl(Sink& sink, const toml::table& t, std::string path)
        : sink_(sink), t_(t), path_(std::move(path)) {}

    const std::string& path() const { return path_; }
    const toml::table& table() const { return t_; }
    Sink& sink() { return sink_; }
    std::string key_path(std::string_view key) const { return child_path(path_, key); }

    /// The node under `key` (or null); marks the key as known.
    const toml::node* node(std::string_view key) {
        known_.emplace_back(key);
        return t_.get(key);
    }
    void allow(std::string_view key) { known_.emplace_back(key); }

    void missing(std::string_view key) {
        sink_.error(t_.source(), key_path(key),
                    path_.empty()         ? fmt::format("missing required key '{}' at top level", key)
                    : path_.back() == ']' ? fmt::format("missing required key '{}' in {}", key, path_)
                                          : fmt::format("missing required key '{}' in [{}]", key, path_));
    }
    void wrong_type(std::string_view key, const toml::node& n, std::string_view expected) {
        sink_.error(n.source(), key_path(key),
                    fmt::format("expected {}, got {}", expected, type_name(n.type())));
    }
    void bad(std::string_view key, const toml::node& n, std::string message) {
        sink_.error(n.source(), key_path(key), std::move(message));
    }
    void bad(std::string_view key, std::string message) {
        if (const toml::node* n = t_.get(key)) bad(key, *n, std::move(message));
        else sink_.error(t_.source(), key_path(key), std::move(message));
    }

    std::optional<std::string> string(std::string_view key, bool required) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return std::nullopt;
        }
        if (const auto* s = n->as_string()) return s->get();
        wrong_type(key, *n, "string");
        return std::nullopt;
    }

    /// A non-empty string (empty is reported).
    std::optional<std::string> text(std::string_view key, bool required) {
        auto s = string(key, required);
        if (s && s->empty()) {
            bad(key, "must not be empty");
            return std::nullopt;
        }
        return s;
    }

    std::optional<double> number(std::string_view key, bool required, Range r) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return std::nullopt;
        }
        double v = 0;
        if (const auto* f = n->as_floating_point()) v = f->get();
        else if (const auto* i = n->as_integer()) v = static_cast<double>(i->get());
        else {
            wrong_type(key, *n, "number");
            return std::nullopt;
        }
        if (!r.contains(v)) {
            bad(key, *n, fmt::format("out of range: {} ({})", fmt_num(v), r.describe()));
            return std::nullopt;
        }
        return v;
    }

    std::optional<std::int64_t> integer(std::string_view key, bool required, std::int64_t lo,
                                        std::int64_t hi) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return std::nullopt;
        }
        const auto* i = n->as_integer();
        if (!i) {
            wrong_type(key, *n, "integer");
            return std::nullopt;
        }
        const std::int64_t v = i->get();
        if (v < lo || v > hi) {
            bad(key, *n, fmt::format("out of range: {} (must be {}..{})", v, lo, hi));
            return std::nullopt;
        }
        return v;
    }

    const toml::table* table(std::string_view key, bool required) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return nullptr;
        }
        if (const auto* t = n->as_table()) return t;
        wrong_type(key, *n, "table");
        return nullptr;
    }

    const toml::array* array(std::string_view key, bool required) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return nullptr;
        }
        if (const auto* a = n->as_array()) return a;
        wrong_type(key, *n, "array");
        return nullptr;
    }

    // Setters: assign when present and valid.
    void read(std::string_view key, double& out, bool required, Range r) {
        if (auto v = number(key, required, r)) out = *v;
    }
    void read(std::string_view key, int& out, bool required, std::int64_t lo, std::int64_t hi) {
        if (auto v = integer(key, required, lo, hi)) out = static_cast<int>(*v);
    }
    void read(std::string_view key, std::string& out, bool required) {
        if (auto v = text(key, required)) out = *v;
    }
    void read(std::string_view key, bool& out, bool required) {
        const toml::node* n = node(key);
        if (!n) {
            if (required) missing(key);
            return;
        }
        if (const auto* b = n->as_boolean()) out = b->get();
        else wrong_type(key, *n, "boolean (true or false)");
    }

    /// Reports every key no getter asked for.
    void finish() {
        for (auto&& [k, v] : t_) {
            const std::string name(k.str());
            if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
            const std::string guess = did_you_mean(name, known_);
            std::string msg = fmt::format("unknown key '{}'", name);
            if (!guess.empty()) {
                msg += fmt::format(" (did you mean '{}'?)", guess);
            } else {
                std::vector<std::string> sorted = known_;
                std::sort(sorted.begin(), sorted.end());
                sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
                msg += fmt::format("; expected one of: {}", fmt::join(sorted, ", "));
            }
            const auto& where = k.source().begin.line > 0 ? k.source() : v.source();
            sink_.error(where, key_path(name), msg);
        }
    }

private:
    Sink& sink_;
    const toml::table& t_;
    std::string path_;
    std::vector<std::string> known_;
};

/// Reads `key` as one of `choices` (with a did-you-mean when it is none).
std::optional<std::size_t> choice(Tbl& t, std::string_view key, bool required,
                                  const std::vector<std::string>& choices) {
    const toml::node* n = t.table().get(key);
    auto s = t.string(key, required);
    if (!s) return std::nullopt;
    for (std::size_t i = 0; i < choices.size(); ++i)
        if (choices[i] == *s) return i;
    const std::string guess = did_you_mean(*s, choices);
    std::string msg = fmt::format("unknown value '{}'", *s);
    if (!guess.empty()) msg += fmt::format(" (did you mean '{}'?)", guess);
    msg += fmt::format("; expected one of: {}", fmt::join(choices, ", "));
    t.bad(key, *n, msg);
    return std::nullopt;
}

bool is_name(std::string_view s, bool allow_upper) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                        (allow_upper && c >= 'A' && c <= 'Z');
        if (!ok) return false;
    }
    return true;
}

fs::path resolve(const fs::path& dir, const fs::path& p) {
    if (p.is_absolute() || dir.empty()) return p.lexically_normal();
    return (dir / p).lexically_normal();
}

/// Resolves a file key and reports it when the file does not exist.
std::optional<fs::path> existing_file(Tbl& t, std::string_view key, bool required,
                                      const fs::path& dir, std::string_view what) {
    const toml::node* n = t.table().get(key);
    auto s = t.text(key, required);
    if (!s) return std::nullopt;
    const fs::path p = resolve(dir, *s);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
        const bool exists = fs::exists(p, ec);
        std::string msg = fmt::format("{} '{}' {}", what, *s,
                                      exists ? "is not a regular file" : "does not exist");
        if (p.string() != *s) msg += fmt::format(" (looked for {})", p.string());
        t.bad(key, *n, msg);
        return p;  // keep the path: the rest of the file still validates
    }
    return p;
}

/// A referenced file that exists must also load: its own errors (with their
/// file:line) become a diagnostic at the key that names it.
template <class Load>
void usable_file(Tbl& t, std::string_view key, const fs::path& p, std::string_view what, Load&& load) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return;  // existing_file() said so already
    try {
        load(p);
    } catch (const std::exception& e) {
        t.bad(key, *t.table().get(key), fmt::format("{} is not usable: {}", what, e.what()));
    }
}

bool is_ip_literal(const std::string& s) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool is_wildcard(const std::string& s) { return s == "0.0.0.0" || s == "::"; }

bool is_loopback_host(const std::string& h) {
    return h == "localhost" || h == "::1" || h.rfind("127.", 0) == 0;
}

/// Parses the document through the project's one bounded TOML reader
/// (instruments/toml_file.hpp: size and nesting bounded before toml++); a
/// syntax error or a bound exceeded becomes one diagnostic at its place.
std::optional<toml::table> parse_toml(Sink& sink, std::string_view text, const std::string& name) {
    try {
        return instruments::parse_toml_text(text, name);
    } catch (const instruments::TomlError& e) {
        sink.add(static_cast<int>(e.line()), static_cast<int>(e.column()), "", e.message());
        return std::nullopt;
    }
}

std::optional<std::string> read_text_file(Sink& sink, const fs::path& file, std::string_view what) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
        sink.add(0, 0, "",
                 fs::exists(file, ec) ? fmt::format("{} is not a regular file", what)
                                      : fmt::format("{} does not exist", what));
        return std::nullopt;
    }
    try {
        return instruments::read_toml_file(file);  // bounded size; never blocks
    } catch (const instruments::TomlError& e) {
        sink.add(0, 0, "", fmt::format("{}: {}", what, e.message()));
        return std::nullopt;
    }
}

/// Sorts by file (in order of first appearance), then line and column.
void sort_diagnostics(std::vector<Diagnostic>& ds) {
    std::map<std::string, std::size_t> rank;
    for (const auto& d : ds) rank.emplace(d.file, rank.size());
    std::stable_sort(ds.begin(), ds.end(), [&](const Diagnostic& a, const Diagnostic& b) {
        const std::size_t ra = rank[a.file], rb = rank[b.file];
        if (ra != rb) return ra < rb;
        if (a.line != b.line) return a.line < b.line;
        return a.column < b.column;
    });
}

// ---------------------------------------------------------------- recipe

struct StepReader {
    Tbl& t;
    StepKind kind;

    double req(std::string_view key, Range r, double def = 0) {
        double v = def;
        t.read(key, v, true, r);
        return v;
    }
    double opt(std::string_view key, Range r, double def) {
        double v = def;
        t.read(key, v, false, r);
        return v;
    }
};

void read_measurements(Tbl& st, StepKind kind, RecipeStep& step,
                       std::map<std::string, int>& seen_names) {
    const toml::array* arr = st.array("measurements", false);
    if (!arr) return;
    const auto& quantities = step_quantities(kind);
    std::vector<std::string> qnames;
    for (const auto& q : quantities) qnames.emplace_back(q.name);
    if (kind == StepKind::rest && !arr->empty()) {
        st.bad("measurements", "a rest step measures nothing");
        return;
    }
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const std::string path = fmt::format("{}[{}]", st.key_path("measurements"), i);
        const toml::node& n = *arr->get(i);
        const toml::table* mt = n.as_table();
        if (!mt) {
            st.sink().error(n.source(), path,
                            fmt::format("expected table, got {}", type_name(n.type())));
            continue;
        }
        Tbl m(st.sink(), *mt, path);
        MeasurementSpec spec;
        bool ok = true;
        if (auto name = m.text("name", true)) {
            if (!is_name(*name, false)) {
                m.bad("name", fmt::format("'{}' is not a valid measurement name (use a-z, 0-9, _)",
                                          *name));
                ok = false;
            } else if (auto it = seen_names.find(*name); it != seen_names.end()) {
                m.bad("name", fmt::format("duplicate measurement name '{}' (first at line {})",
                                          *name, it->second));
                ok = false;
            } else {
                seen_names.emplace(*name, static_cast<int>(mt->source().begin.line));
            }
            spec.name = *name;
        } else {
            ok = false;
        }
        // quantity defaults to the name
        const toml::node* qn = mt->get("quantity");
        if (auto q = m.text("quantity", false)) spec.quantity = *q;
        else spec.quantity = spec.name;
        const Quantity* found = nullptr;
        for (const auto& q : quantities)
            if (q.name == spec.quantity) found = &q;
        if (!found && !spec.quantity.empty()) {
            const std::string guess = did_you_mean(spec.quantity, qnames);
            std::string msg = fmt::format("a {} step cannot measure '{}'", to_string(kind),
                                          spec.quantity);
            if (!guess.empty()) msg += fmt::format(" (did you mean '{}'?)", guess);
            if (!qnames.empty()) msg += fmt::format("; it measures: {}", fmt::join(qnames, ", "));
            if (qn) m.bad("quantity", *qn, msg);
            else m.bad("name", msg + " (set 'quantity' to name what it is)");
            ok = false;
        }
        if (found) {
            spec.unit = std::string(found->unit);
            if (auto u = m.text("unit", false); u && *u != found->unit)
                m.bad("unit", fmt::format("unit of {} is '{}', not '{}'", found->name, found->unit,
                                          *u));
        } else {
            m.allow("unit");
        }
        spec.low = m.number("low", false, {-1e12, 1e12});
        spec.high = m.number("high", false, {-1e12, 1e12});
        if (spec.low) spec.low_from = {st.sink().file(), static_cast<int>(mt->get("low")->source().begin.line)};
        if (spec.high) spec.high_from = {st.sink().file(), static_cast<int>(mt->get("high")->source().begin.line)};
        if (spec.low && spec.high && *spec.low > *spec.high)
            m.bad("low", fmt::format("low {} is above high {}", fmt_num(*spec.low),
                                     fmt_num(*spec.high)));
        m.read("description", spec.description, false);
        m.finish();
        if (ok) step.measurements.push_back(std::move(spec));
    }
}

// [cell.entropy]: three arrays of numbers on one grid.
std::optional<CellEntropy> read_entropy(Sink& sink, const toml::table& et) {
    Tbl e(sink, et, "cell.entropy");
    CellEntropy ce;
    ce.line = static_cast<int>(et.source().begin.line);
    bool ok = true;
    auto numbers = [&](const char* key, std::vector<double>& out, Range r) {
        const toml::array* a = e.array(key, true);
        if (!a) {
            ok = false;
            return;
        }
        for (std::size_t i = 0; i < a->size(); ++i) {
            const toml::node& n = *a->get(i);
            double v = std::nan("");
            if (const auto* f = n.as_floating_point()) v = f->get();
            else if (const auto* k = n.as_integer()) v = static_cast<double>(k->get());
            const std::string where = fmt::format("{}[{}]", e.key_path(key), i);
            if (std::isnan(v)) {
                sink.error(n.source(), where, fmt::format("expected number, got {}", type_name(n.type())));
                ok = false;
            } else if (!r.contains(v)) {
                sink.error(n.source(), where, fmt::format("out of range: {} ({})", fmt_num(v), r.describe()));
                ok = false;
            } else if (!out.empty() && key != std::string_view("du_dt_v_per_k") && !(v > out.back())) {
                sink.error(n.source(), where,
                           fmt::format("{} must increase strictly ({} after {})", key, fmt_num(v), fmt_num(out.back())));
                ok = false;
            }
            out.push_back(v);
        }
    };
    numbers("soc", ce.soc, {0.0, 1.0});
    numbers("ocv_v", ce.ocv_v, {0.5, 6.0});
    numbers("du_dt_v_per_k", ce.du_dt_v_per_k, {-0.005, 0.005});
    if (ok && ce.soc.size() < 2) {
        e.bad("soc", "needs at least two points");
        ok = false;
    }
    if (ok && (ce.ocv_v.size() != ce.soc.size() || ce.du_dt_v_per_k.size() != ce.soc.size())) {
        e.bad(ce.ocv_v.size() != ce.soc.size() ? "ocv_v" : "du_dt_v_per_k",
              fmt::format("soc, ocv_v and du_dt_v_per_k need one value per point (soc has {}, ocv_v {}, "
                          "du_dt_v_per_k {})",
                          ce.soc.size(), ce.ocv_v.size(), ce.du_dt_v_per_k.size()));
        ok = false;
    }
    e.finish();
    if (!ok) return std::nullopt;
    return ce;
}

Recipe read_recipe(Sink& sink, const toml::table& root, const fs::path& file) {
    Recipe r;
    r.file = file;
    Tbl t(sink, root, "");
    t.read("name", r.name, true);
    t.read("description", r.description, false);
    if (const toml::table* ct = t.table("cell", true)) {
        Tbl c(sink, *ct, "cell");
        c.read("model", r.cell_model, true);
        c.read("capacity_ah", r.capacity_ah, true, positive(1000));
        if (const toml::table* et = c.table("entropy", false)) r.entropy = read_entropy(sink, *et);
        c.finish();
    }
    const toml::array* steps = t.array("steps", true);
    if (steps && steps->empty()) t.bad("steps", "a recipe needs at least one step");
    std::map<std::string, int> step_names;
    std::map<std::string, int> measurement_names;
    const std::vector<std::string> kinds{"rest", "ocv", "dcir", "pulse", "heat"};
    bool ocv_before = false;  // an OCV step precedes: a heat step can read its state of charge
    for (std::size_t i = 0; steps && i < steps->size(); ++i) {
        const std::string path = fmt::format("steps[{}]", i);
        const toml::node& n = *steps->get(i);
        const toml::table* stt = n.as_table();
        if (!stt) {
            sink.error(n.source(), path, fmt::format("expected table, got {}", type_name(n.type())));
            continue;
        }
        Tbl st(sink, *stt, path);
        RecipeStep step;
        step.line = static_cast<int>(stt->source().begin.line);
        if (auto name = st.text("name", true)) {
            if (!is_name(*name, false))
                st.bad("name", fmt::format("'{}' is not a valid step name (use a-z, 0-9, _, -)",
                                           *name));
            else if (auto it = step_names.find(*name); it != step_names.end())
                st.bad("name",
                       fmt::format("duplicate step name '{}' (first at line {})", *name, it->second));
            else step_names.emplace(*name, step.line);
            step.name = *name;
        }
        const auto k = choice(st, "kind", true, kinds);
        if (!k) {
            // Unknown kind: accept any step key so only the kind is reported.
            for (const char* key : {"duration_s", "samples", "interval_s", "low_c", "low_s",
                                    "high_c", "high_s", "current_a", "pre_s", "relaxation_s",
                                    "sample_interval_s", "cooling_s", "entropic_v", "entropic_v_per_ah", "measurements", "timeout_s"})
                st.allow(key);
            st.finish();
            continue;
        }
        const auto kind = static_cast<StepKind>(*k);
        StepReader sr{st, kind};
        switch (kind) {
            case StepKind::rest: {
                RestParams p;
                p.duration_s = sr.req("duration_s", positive(86400));
                step.params = p;
                break;
            }
            case StepKind::ocv: {
                ocv_before = true;
                OcvParams p;
                p.samples = 10;
                st.read("samples", p.samples, false, 1, 10000);
                p.interval_s = sr.opt("interval_s", positive(60), 0.1);
                step.params = p;
                break;
            }
            case StepKind::dcir: {
                DcirParams p;
                p.low_c = sr.opt("low_c", positive(10), 0.2);
                p.low_s = sr.opt("low_s", positive(600), 10.0);
                p.high_c = sr.opt("high_c", positive(50), 1.0);
                p.high_s = sr.opt("high_s", positive(600), 1.0);
                if (p.high_c <= p.low_c)
                    st.bad("high_c", fmt::format("high_c ({}) must be above low_c ({})",
                                                 fmt_num(p.high_c), fmt_num(p.low_c)));
                p.low_a = p.low_c * r.capacity_ah;
                p.high_a = p.high_c * r.capacity_ah;
                step.params = p;
                break;
            }
            case StepKind::pulse: {
                PulseParams p;
                p.current_a = sr.req("current_a", positive(1000));
                p.duration_s = sr.req("duration_s", positive(3600));
                p.pre_s = sr.opt("pre_s", non_negative(600), 1.0);
                p.relaxation_s = sr.req("relaxation_s", non_negative(86400));
                p.sample_interval_s = sr.req("sample_interval_s", {1e-4, 10.0});
                if (p.sample_interval_s > 0 && p.duration_s > 0) {
                    if (p.sample_interval_s > p.duration_s)
                        st.bad("sample_interval_s",
                               fmt::format("sample interval {} s is longer than the pulse ({} s)",
                                           fmt_num(p.sample_interval_s), fmt_num(p.duration_s)));
                    else if (p.points() > 1'000'000)
                        st.bad("sample_interval_s",
                               fmt::format("the profile needs {} logger points (at most 1000000)",
                                           p.points()));
                }
                step.params = p;
                break;
            }
            case StepKind::heat: {
                HeatParams p;
                p.current_a = sr.req("current_a", positive(1000));
                p.duration_s = sr.req("duration_s", positive(86400));
                p.cooling_s = sr.req("cooling_s", non_negative(86400));
                p.sample_interval_s = sr.opt("sample_interval_s", positive(60), 1.0);
                // k = −T·dU/dT: Li-ion cells' dU/dT is within about ±1 mV/K.
                p.entropic_v = st.number("entropic_v", false, Range{-1.0, 1.0, false, false});
                p.entropic_v_per_ah = st.number("entropic_v_per_ah", false, Range{-10.0, 10.0, false, false});
                if (p.entropic_v_per_ah && !p.entropic_v)
                    st.bad("entropic_v_per_ah", "entropic_v_per_ah needs entropic_v (k when the current starts)");
                if (r.entropy && !p.entropic_v && !ocv_before)
                    sink.error(n.source(), path,
                               fmt::format("heat step '{}': [cell.entropy] (line {}) needs an ocv step before it "
                                           "(the state of charge its reversible heat is read at), or declare "
                                           "entropic_v",
                                           step.name, r.entropy->line));
                if (p.duration_s > 0 && p.sample_interval_s > p.duration_s)
                    st.bad("sample_interval_s",
                           fmt::format("sample interval {} s is longer than the heating ({} s)",
                                       fmt_num(p.sample_interval_s), fmt_num(p.duration_s)));
                step.params = p;
                break;
            }
        }
        // Not declared: 0, the default (default_timeout_s(), with a least
        // margin in wall time that the step engine applies).
        step.timeout_s = 0;
        if (const auto to = st.number("timeout_s", false, positive(7 * 86400))) {
            step.timeout_s = *to;
            if (step.timeout_s < step.duration_s())
                st.bad("timeout_s", fmt::format("timeout {} s is shorter than the step itself ({} s)",
                                                fmt_num(step.timeout_s), fmt_num(step.duration_s())));
        }
        read_measurements(st, kind, step, measurement_names);
        st.finish();
        r.steps.push_back(std::move(step));
    }
    t.finish();
    return r;
}

std::string display_name(const fs::path& p) { return p.lexically_normal().string(); }

// ---------------------------------------------------------------- limits files

MeasurementSpec* find_measurement_mut(Recipe& r, std::string_view name) {
    for (auto& st : r.steps)
        for (auto& m : st.measurements)
            if (m.name == name) return &m;
    return nullptr;
}

int line_of(const toml::table& t, std::string_view key) {
    const toml::node* n = t.get(key);
    return n ? static_cast<int>(n->source().begin.line) : 0;
}

/// One limits file over the recipe: every [measurements.NAME] low/high
/// overrides the value so far and records where it came from.
void apply_limits_file(const std::string& text, LimitLayer& layer, Recipe& r, std::vector<Diagnostic>& out) {
    Sink sink(display_name(layer.file));
    if (auto root = parse_toml(sink, text, sink.file())) {
        Tbl t(sink, *root, "");
        if (const toml::node* sn = root->get("safety")) {
            t.allow("safety");
            sink.error(sn->source(), "safety",
                       "a limits file holds spec limits only; safety limits are the station file's [limits] "
                       "(temp_abort_c, v_min_v, i_max_a)");
        }
        if (const toml::table* ms = t.table("measurements", false)) {
            std::vector<std::string> known;
            for (const auto* m : r.measurements()) known.push_back(m->name);
            for (auto&& [k, node] : *ms) {
                const std::string name(k.str());
                const std::string path = "measurements." + name;
                const auto& where = k.source().begin.line > 0 ? k.source() : node.source();
                MeasurementSpec* m = find_measurement_mut(r, name);
                bool is_quantity = false;  // what some step kind measures: another recipe of the model does
                for (int kind = 0; kind <= static_cast<int>(StepKind::heat); ++kind)
                    for (const auto& q : step_quantities(static_cast<StepKind>(kind))) is_quantity |= q.name == name;
                if (!m && is_quantity) {
                    layer.not_measured.push_back(name);
                    continue;
                }
                if (!m) {
                    std::string msg = fmt::format("unknown measurement '{}': recipe {} ({}) has no such measurement",
                                                  name, r.name, display_name(r.file));
                    if (const std::string guess = did_you_mean(name, known); !guess.empty())
                        msg += fmt::format(" (did you mean '{}'?)", guess);
                    else if (!known.empty())
                        msg += fmt::format("; it measures: {}", fmt::join(known, ", "));
                    sink.error(where, path, msg);
                    continue;
                }
                const toml::table* mt = node.as_table();
                if (!mt) {
                    sink.error(node.source(), path, fmt::format("expected table, got {}", type_name(node.type())));
                    continue;
                }
                Tbl mtb(sink, *mt, path);
                const auto low = mtb.number("low", false, {-1e12, 1e12});
                const auto high = mtb.number("high", false, {-1e12, 1e12});
                bool ok = true;
                if (auto u = mtb.text("unit", false); u && *u != m->unit) {
                    mtb.bad("unit", fmt::format("unit of {} is '{}', not '{}'", name, m->unit, *u));
                    ok = false;
                }
                if (mt->get("low") && !low) ok = false;
                if (mt->get("high") && !high) ok = false;
                mtb.finish();
                if (!ok) continue;
                const std::optional<double> new_low = low ? low : m->low;
                const std::optional<double> new_high = high ? high : m->high;
                if (new_low && new_high && *new_low > *new_high) {
                    const LimitSource lo_src = low ? LimitSource{sink.file(), line_of(*mt, "low")} : m->low_from;
                    const LimitSource hi_src = high ? LimitSource{sink.file(), line_of(*mt, "high")} : m->high_from;
                    mtb.bad(low ? "low" : "high",
                            fmt::format("low {} (from {}) is above high {} (from {})", fmt_num(*new_low),
                                        lo_src.known() ? lo_src.to_string() : "?", fmt_num(*new_high),
                                        hi_src.known() ? hi_src.to_string() : "?"));
                    continue;
                }
                if (low) {
                    m->low = low;
                    m->low_from = {sink.file(), line_of(*mt, "low")};
                    ++layer.overrides;
                }
                if (high) {
                    m->high = high;
                    m->high_from = {sink.file(), line_of(*mt, "high")};
                    ++layer.overrides;
                }
            }
        }
        t.finish();
    }
    auto ds = sink.take();
    out.insert(out.end(), std::make_move_iterator(ds.begin()), std::make_move_iterator(ds.end()));
}

/// A cell model usable as a file name ("INR18650-30Q"): no separators, no
/// leading dot.
bool model_file_name_ok(std::string_view model) {
    if (model.empty() || model.front() == '.') return false;
    return std::all_of(model.begin(), model.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

/// Where a missing generic limits file is reported (the key that names it).
struct LimitsKey {
    std::string file;
    int line = 0, column = 0;
    std::string key_path;
    std::string as_written;
};

/// The generic file, then "<its dir>/<cell model>.toml" when there is one.
void apply_limit_layers(Recipe& r, const fs::path& generic_file, const LimitsKey& key, const ConfigFileReader& read,
                        std::vector<Diagnostic>& out) {
    r.limit_layers.clear();
    auto read_layer = [&](const fs::path& p) -> std::optional<std::string> {
        try {
            if (read) return read(p);
            std::error_code ec;
            if (!fs::is_regular_file(p, ec)) return std::nullopt;
            return instruments::read_toml_file(p);
        } catch (const std::exception& e) {
            out.push_back({display_name(p), 0, 0, "", fmt::format("limits file: {}", e.what())});
            return std::string();
        }
    };
    LimitLayer generic{generic_file, true, 0, {}};
    const auto text = read_layer(generic.file);
    if (!text) {
        out.push_back({key.file, key.line, key.column, key.key_path,
                       fmt::format("limits file '{}' does not exist (looked for {})", key.as_written,
                                   display_name(generic.file))});
        return;
    }
    apply_limits_file(*text, generic, r, out);
    r.limit_layers.push_back(generic);
    if (!model_file_name_ok(r.cell_model)) return;
    LimitLayer model{generic.file.parent_path() / (r.cell_model + ".toml"), true, 0, {}};
    if (const auto mt = read_layer(model.file)) apply_limits_file(*mt, model, r, out);
    else model.present = false;
    r.limit_layers.push_back(model);
}

/// Loads a recipe file into `r`, adding diagnostics to `out`. False when it
/// could not be read or parsed at all.
bool load_recipe_into(const fs::path& file, Recipe& r, std::vector<Diagnostic>& out,
                      std::optional<std::string> text = std::nullopt) {
    Sink sink(display_name(file));
    bool parsed = false;
    if (!text) text = read_text_file(sink, file, "recipe file");
    if (text) {
        if (auto root = parse_toml(sink, *text, sink.file())) {
            r = read_recipe(sink, *root, file);
            parsed = true;
        }
    }
    auto ds = sink.take();
    out.insert(out.end(), std::make_move_iterator(ds.begin()), std::make_move_iterator(ds.end()));
    return parsed;
}

// ---------------------------------------------------------------- station

void read_instruments(Tbl& root, const fs::path& dir, StationConfig& cfg) {
    const toml::table* it = root.table("instruments", true);
    if (!it) return;
    if (it->empty()) root.bad("instruments", "no instruments defined");
    const std::vector<std::string> drivers{"scpi_load", "modbus_load", "modbus_thermo"};
    for (auto&& [key, node] : *it) {
        const std::string name(key.str());
        const std::string path = "instruments." + name;
        const toml::table* t = node.as_table();
        if (!t) {
            root.sink().error(node.source(), path,
                              fmt::format("expected table, got {}", type_name(node.type())));
            continue;
        }
        Tbl in(root.sink(), *t, path);
        InstrumentConfig ic;
        ic.name = name;
        if (!is_name(name, true))
            root.sink().error(key.source(), path,
                              "instrument names use letters, digits, '_' and '-'");
        const auto d = choice(in, "driver", true, drivers);
        if (d) ic.driver = static_cast<InstrumentConfig::Driver>(*d);

        if (auto a = in.text("address", true)) {
            ic.address = *a;
            try {
                ic.endpoint = instruments::parse_address(*a);
                using K = instruments::Address::Kind;
                if (d && ic.driver == InstrumentConfig::Driver::scpi_load &&
                    ic.endpoint.kind == K::rtu)
                    in.bad("address", "scpi_load needs a tcp:// or serial:// address, not rtu://");
                if (d && ic.driver != InstrumentConfig::Driver::scpi_load &&
                    ic.endpoint.kind == K::serial)
                    in.bad("address", fmt::format("{} needs a tcp:// or rtu:// address, not serial://",
                                                  to_string(ic.driver)));
            } catch (const std::exception& e) {
                in.bad("address", fmt::format("invalid address: {}", e.what()));
            }
        }

        // The definition file: 'dialect' for SCPI, 'map' for Modbus.
        const bool scpi = d && ic.driver == InstrumentConfig::Driver::scpi_load;
        const bool modbus = d && !scpi;
        const bool has_dialect = t->contains("dialect");
        const bool has_map = t->contains("map");
        if (scpi && has_map && !has_dialect) {
            in.allow("map");
            in.allow("dialect");
            in.bad("map", "scpi_load takes a 'dialect' file, not a 'map'");
        } else if (modbus && has_dialect && !has_map) {
            in.allow("map");
            in.allow("dialect");
            in.bad("dialect", fmt::format("{} takes a register 'map' file, not a 'dialect'",
                                          to_string(ic.driver)));
        } else if (scpi) {
            if (auto p = existing_file(in, "dialect", true, dir, "dialect file")) {
                ic.definition = *p;
                usable_file(in, "dialect", *p, "dialect file", [](const fs::path& f) { (void)instruments::load_dialect(f); });
            }
        } else if (modbus) {
            if (auto p = existing_file(in, "map", true, dir, "register map")) {
                ic.definition = *p;
                usable_file(in, "map", *p, "register map",
                            [](const fs::path& f) { (void)instruments::load_register_map(f.string()); });
            }
        } else {
            in.allow("dialect");
            in.allow("map");
        }

        in.read("channels", ic.channels, false, 1, 256);
        in.read("timeout_s", ic.timeout_s, false, positive(60));
        in.read("connect_timeout_s", ic.connect_timeout_s, false, positive(60));
        if (scpi && t->contains("unit")) {
            in.allow("unit");
            in.bad("unit", "'unit' applies to Modbus drivers only");
        } else {
            in.read("unit", ic.unit, false, 0, 247);
        }
        if (d && ic.is_load() && t->contains("ambient_channel")) {
            in.allow("ambient_channel");
            in.bad("ambient_channel", fmt::format("'ambient_channel' applies to thermocouple modules (modbus_thermo), "
                                                  "not to a {}", to_string(ic.driver)));
        } else if (auto amb = in.integer("ambient_channel", false, 0, 255)) {
            if (*amb >= ic.channels)
                in.bad("ambient_channel", fmt::format("out of range: {} ('{}' has {} channel{}: 0..{})", *amb, name,
                                                      ic.channels, ic.channels == 1 ? "" : "s", ic.channels - 1));
            else
                ic.ambient_channel = static_cast<int>(*amb);
        }
        in.finish();
        cfg.instruments.push_back(std::move(ic));
    }
}

/// Checks that `name` names an instrument of the right role; reports it on `t.key`.
const InstrumentConfig* lookup(Tbl& t, std::string_view key, const std::string& name,
                               const StationConfig& cfg, bool want_load) {
    std::vector<std::string> names;
    for (const auto& i : cfg.instruments)
        if (i.is_load() == want_load) names.push_back(i.name);
    const InstrumentConfig* ic = cfg.find_instrument(name);
    if (!ic) {
        std::string msg = fmt::format("no instrument named '{}'", name);
        std::vector<std::string> all;
        for (const auto& i : cfg.instruments) all.push_back(i.name);
        const std::string guess = did_you_mean(name, all);
        if (!guess.empty()) msg += fmt::format(" (did you mean '{}'?)", guess);
        else if (!names.empty())
            msg += fmt::format("; {} instruments: {}", want_load ? "load" : "thermocouple",
                               fmt::join(names, ", "));
        t.bad(key, msg);
        return nullptr;
    }
    if (ic->is_load() != want_load) {
        t.bad(key, fmt::format("'{}' is a {}, not a {}", name, to_string(ic->driver),
                               want_load ? "load (scpi_load or modbus_load)"
                                         : "thermocouple reader (modbus_thermo)"));
        return nullptr;
    }
    return ic;
}

void read_channels(Tbl& root, StationConfig& cfg) {
    const toml::array* arr = root.array("channels", true);
    if (!arr) return;
    if (arr->empty()) root.bad("channels", "no fixture positions defined");
    std::map<int, int> positions;                           // position -> line
    std::map<std::pair<std::string, int>, int> load_used;   // (load, ch) -> position
    std::map<std::pair<std::string, int>, int> thermo_used;  // (thermo, ch) -> position
    for (std::size_t i = 0; i < arr->size(); ++i) {
        const std::string path = fmt::format("channels[{}]", i);
        const toml::node& n = *arr->get(i);
        const toml::table* t = n.as_table();
        if (!t) {
            root.sink().error(n.source(), path,
                              fmt::format("expected table, got {}", type_name(n.type())));
            continue;
        }
        Tbl c(root.sink(), *t, path);
        ChannelConfig ch;
        bool ok = true;
        const int line = static_cast<int>(t->source().begin.line);
        ch.line = line;
        if (auto p = c.integer("position", true, 1, 256)) {
            ch.position = static_cast<int>(*p);
            if (auto it = positions.find(ch.position); it != positions.end()) {
                c.bad("position", fmt::format("duplicate position {} (first at line {})",
                                              ch.position, it->second));
                ok = false;
            } else {
                positions.emplace(ch.position, line);
            }
        } else {
            ok = false;
        }

        auto load = c.text("load", true);
        auto load_ch = c.integer("load_channel", true, 1, 256);
        auto thermo = c.text("thermo", true);
        auto thermo_ch = c.integer("thermo_channel", true, 0, 255);
        ch.thermo_offset_k = c.number("thermo_offset_k", false, Range{-5.0, 5.0});
        c.finish();

        if (load) {
            ch.load = *load;
            if (const InstrumentConfig* ic = lookup(c, "load", *load, cfg, true); ic && load_ch) {
                ch.load_channel = static_cast<int>(*load_ch);
                if (ch.load_channel > ic->channels) {
                    c.bad("load_channel",
                          fmt::format("out of range: {} ('{}' has {} channel{}: 1..{})",
                                      ch.load_channel, ic->name, ic->channels,
                                      ic->channels == 1 ? "" : "s", ic->channels));
                    ok = false;
                } else if (auto [it, fresh] = load_used.emplace(std::pair{ch.load, ch.load_channel},
                                                                ch.position);
                           !fresh) {
                    c.bad("load_channel", fmt::format("{} channel {} is already used by position {}",
                                                      ch.load, ch.load_channel, it->second));
                    ok = false;
                }
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        if (thermo) {
            ch.thermo = *thermo;
            if (const InstrumentConfig* ic = lookup(c, "thermo", *thermo, cfg, false);
                ic && thermo_ch) {
                ch.thermo_channel = static_cast<int>(*thermo_ch);
                if (ch.thermo_channel >= ic->channels) {
                    c.bad("thermo_channel",
                          fmt::format("out of range: {} ('{}' has {} channel{}: 0..{})",
                                      ch.thermo_channel, ic->name, ic->channels,
                                      ic->channels == 1 ? "" : "s", ic->channels - 1));
                    ok = false;
                } else if (auto [it, fresh] = thermo_used.emplace(
                               std::pair{ch.thermo, ch.thermo_channel}, ch.position);
                           !fresh) {
                    c.bad("thermo_channel",
                          fmt::format("{} channel {} is already used by position {}", ch.thermo,
                                      ch.thermo_channel, it->second));
                    ok = false;
                } else if (cfg.is_ambient_input(ch.thermo, ch.thermo_channel)) {
                    // The ambient sensor must not also be a cell's sensor.
                    c.bad("thermo_channel",
                          fmt::format("{} channel {} is the ambient sensor ({}); a cell's thermocouple needs "
                                      "another channel",
                                      ch.thermo, ch.thermo_channel,
                                      ic->ambient_channel == ch.thermo_channel
                                          ? fmt::format("instruments.{}.ambient_channel", ch.thermo)
                                          : std::string("station.ambient")));
                    ok = false;
                }
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        if (ok) cfg.channels.push_back(std::move(ch));
    }
    std::sort(cfg.channels.begin(), cfg.channels.end(),
              [](const ChannelConfig& a, const ChannelConfig& b) { return a.position < b.position; });

}

void read_station_table(Tbl& root, const fs::path& dir, StationConfig& cfg, bool& recipe_ok) {
    const toml::table* st = root.table("station", true);
    if (!st) return;
    Tbl s(root.sink(), *st, "station");
    if (auto id = s.text("id", true)) {
        constexpr std::size_t kMaxStationId = 64;  // it is printed, stored with every record, sent to the PLC
        if (id->size() > kMaxStationId)
            s.bad("id", fmt::format("the station id is {} characters long; at most {}", id->size(), kMaxStationId));
        else if (!is_name(*id, true))
            s.bad("id", fmt::format("'{}' is not a valid station id (letters, digits, '_', '-')",
                                    printable(*id)));
        cfg.station_id = *id;
    }
    if (auto p = existing_file(s, "recipe", true, dir, "recipe file")) {
        cfg.recipe_file = *p;
        std::error_code ec;
        recipe_ok = fs::is_regular_file(*p, ec);
    }
    if (auto p = existing_file(s, "spec_limits", false, dir, "spec limits file")) cfg.limits_file = *p;
    if (auto p = existing_file(s, "serial_scheme", true, dir, "serial scheme")) {
        cfg.serial_scheme = *p;
        usable_file(s, "serial_scheme", *p, "serial scheme", [](const fs::path& f) { (void)SerialScheme::load(f); });
    }
    if (auto store = s.text("store", true)) {
        cfg.store = resolve(dir, *store);
        const fs::path parent = cfg.store.parent_path();
        std::error_code ec;
        if (!parent.empty() && !fs::is_directory(parent, ec))
            s.bad("store", fmt::format("directory of the store '{}' does not exist",
                                       parent.string()));
        else if (fs::exists(cfg.store, ec) && !fs::is_regular_file(cfg.store, ec))
            s.bad("store", fmt::format("the store '{}' exists and is not a regular file ({})", cfg.store.string(),
                                       fs::is_directory(cfg.store, ec) ? "a directory" : "a special file"));
    }
    if (const toml::table* at = s.table("ambient", false)) {
        Tbl a(root.sink(), *at, "station.ambient");
        ThermoRef ref;
        auto thermo = a.text("thermo", true);
        auto ch = a.integer("channel", true, 0, 255);
        a.finish();
        if (thermo && ch) {
            if (const InstrumentConfig* ic = lookup(a, "thermo", *thermo, cfg, false)) {
                ref.thermo = *thermo;
                ref.channel = static_cast<int>(*ch);
                if (ref.channel >= ic->channels)
                    a.bad("channel", fmt::format("out of range: {} ('{}' has {} channels: 0..{})",
                                                 ref.channel, ic->name, ic->channels,
                                                 ic->channels - 1));
                else cfg.ambient = ref;
            }
        }
    }
    s.finish();
}

void read_limits(Tbl& root, Limits& l) {
    const toml::table* lt = root.table("limits", true);
    if (!lt) return;
    Tbl t(root.sink(), *lt, "limits");
    // Spec limits belong to the recipe's measurements (judged once, per cell);
    // [limits] holds the safety limits only.
    for (const char* spec : {"ocv_min_v", "ocv_max_v", "r0_max_ohm", "dcir_max_ohm", "temp_rise_max_k",
                             "k_max_mv_per_day"})
        if (lt->contains(spec)) {
            t.allow(spec);
            t.bad(spec, fmt::format("'{}' is a spec limit: declare it as low/high of the measurement in the recipe "
                                    "([[steps.measurements]]); [limits] holds the safety limits only "
                                    "(temp_abort_c, v_min_v, i_max_a)",
                                    spec));
        }
    t.read("temp_abort_c", l.temp_abort_c, true, {0, 200, true, false});
    t.read("v_min_v", l.v_min_v, true, positive(10));
    t.read("i_max_a", l.i_max_a, true, positive(1000));
    t.read("v_max_v", l.v_max_v, false, positive(10));
    t.read("temp_rate_max_k_per_s", l.temp_rate_max_k_per_s, false, positive(100));
    t.read("i_follow_tol_a", l.i_follow_tol_a, false, positive(100));
    t.read("control_period_s", l.control_period_s, false, {0.01, 1.0, false, false});
    if (l.v_max_v <= l.v_min_v)
        t.bad("v_max_v", fmt::format("v_max_v = {} V must be above v_min_v = {} V", l.v_max_v, l.v_min_v));
    t.finish();
}

void read_screening(Tbl& root, ScreeningConfig& s, const Recipe* recipe) {
    const toml::table* stt = root.table("screening", true);
    if (!stt) return;
    Tbl t(root.sink(), *stt, "screening");
    if (const toml::array* fa = t.array("features", true)) {
        if (fa->empty()) t.bad("features", "at least one feature is needed");
        std::vector<std::string> known;
        if (recipe)
            for (const auto* m : recipe->measurements()) known.push_back(m->name);
        // Derived features (features.hpp) are known too; a fit value
        // "<kind>.<param>" cannot be checked before a fit exists.
        if (recipe)
            for (const auto& d : derived_features()) known.emplace_back(d.name);
        for (std::size_t i = 0; i < fa->size(); ++i) {
            const toml::node& n = *fa->get(i);
            const std::string path = fmt::format("screening.features[{}]", i);
            const auto* sv = n.as_string();
            if (!sv) {
                root.sink().error(n.source(), path,
                                  fmt::format("expected string, got {}", type_name(n.type())));
                continue;
            }
            const std::string f = sv->get();
            if (std::find(s.features.begin(), s.features.end(), f) != s.features.end()) {
                root.sink().error(n.source(), path, fmt::format("feature '{}' listed twice", f));
                continue;
            }
            if (recipe && f.find('.') == std::string::npos &&
                std::find(known.begin(), known.end(), f) == known.end()) {
                std::string msg = fmt::format("'{}' is not a measurement of recipe '{}'", f,
                                              recipe->name);
                const std::string guess = did_you_mean(f, known);
                if (!guess.empty()) msg += fmt::format(" (did you mean '{}'?)", guess);
                else msg += fmt::format("; it measures: {}", fmt::join(known, ", "));
                root.sink().error(n.source(), path, msg);
                continue;
            }
            s.features.push_back(f);
        }
    }
    if (auto m = choice(t, "pat_mode", false, {"dynamic", "static"}))
        s.pat_mode = *m == 0 ? PatMode::dynamic : PatMode::static_;
    t.read("pat_k", s.pat_k, false, positive(20));
    t.read("pat_min_count", s.pat_min_count, false, 5, 1'000'000);
    t.read("static_pat_min_lots", s.static_pat_min_lots, false, 1, 10'000);
    t.read("static_pat_min_parts", s.static_pat_min_parts, false, 1, 1'000'000);
    t.read("mcd_quantile", s.mcd_quantile, false, {0.5, 1, false, true});
    t.read("mcd_support_fraction", s.mcd_support_fraction, false, {0.5, 1});
    t.read("lot_alpha", s.lot_alpha, false, {0, 0.5, true, false});
    t.read("lot_baseline_rate", s.lot_baseline_rate, false, {0, 1, true, true});
    t.read("lot_min_count", s.lot_min_count, false, 1, 1'000'000);
    if (const toml::array* nr = t.array("nelson_rules", false)) {
        std::vector<int> rules;
        for (std::size_t i = 0; i < nr->size(); ++i) {
            const toml::node& n = *nr->get(i);
            const std::string path = fmt::format("screening.nelson_rules[{}]", i);
            const auto* iv = n.as_integer();
            if (!iv) {
                root.sink().error(n.source(), path,
                                  fmt::format("expected integer, got {}", type_name(n.type())));
            } else if (iv->get() < 1 || iv->get() > 8) {
                root.sink().error(n.source(), path,
                                  fmt::format("out of range: {} (Nelson rules are 1..8)", iv->get()));
            } else if (std::find(rules.begin(), rules.end(), iv->get()) != rules.end()) {
                root.sink().error(n.source(), path, fmt::format("rule {} listed twice", iv->get()));
            } else {
                rules.push_back(static_cast<int>(iv->get()));
            }
        }
        std::sort(rules.begin(), rules.end());
        s.nelson_rules = rules;
    }
    if (auto m = choice(t, "drift_window", false, {"estimate", "credible", "off"}))
        s.drift_window = *m == 0 ? DriftHold::estimate : *m == 1 ? DriftHold::credible : DriftHold::off;
    t.read("drift_alpha", s.drift_alpha, false, {0, 0.5, true, false});
    t.read("drift_permutations", s.drift_permutations, false, 19, 1'000'000);
    t.read("drift_max_windows", s.drift_max_windows, false, 1, 100);
    t.read("drift_min_shift_sigma", s.drift_min_shift_sigma, false, {0, 5});
    t.finish();
}

void read_fixture_health(Tbl& root, FixtureHealthConfig& f, const Recipe* recipe) {
    const toml::table* ft = root.table("fixture_health", false);
    if (!ft) return;
    Tbl t(root.sink(), *ft, "fixture_health");
    f.enabled = true;
    t.read("enabled", f.enabled, false);
    std::vector<std::string> known;
    if (recipe)
        for (const auto* m : recipe->measurements()) known.push_back(m->name);
    auto check_name = [&](const std::string& key, const std::string& name) {
        if (recipe && std::find(known.begin(), known.end(), name) == known.end())
            t.bad(key, fmt::format("'{}' is not a measurement of recipe '{}' (it measures: {})", name, recipe->name,
                                   fmt::join(known, ", ")));
    };
    if (auto r = t.text("resistance", false)) {
        f.resistance = *r;
        check_name("resistance", f.resistance);
    }
    if (const toml::array* ca = t.array("correct", false)) {
        f.correct.clear();
        for (std::size_t i = 0; i < ca->size(); ++i) {
            const toml::node& n = *ca->get(i);
            const auto* sv = n.as_string();
            if (!sv) {
                root.sink().error(n.source(), fmt::format("fixture_health.correct[{}]", i),
                                  fmt::format("expected string, got {}", type_name(n.type())));
                continue;
            }
            f.correct.push_back(sv->get());
        }
    }
    t.read("window_cells", f.window_cells, false, 3, 10'000);
    t.read("reference_cells", f.reference_cells, false, 8, 100'000);
    t.read("contact_limit_ohm", f.contact_limit_ohm, false, positive(1));
    t.read("tc_drift_limit_k", f.tc_drift_limit_k, false, positive(50));
    t.read("calibrate_thermocouples", f.calibrate_thermocouples, false);
    t.read("calibration_cells", f.calibration_cells, false, 3, 10'000);
    auto strings = [&](const char* key, auto&& each) {
        const toml::array* a = t.array(key, false);
        if (!a) return;
        for (std::size_t i = 0; i < a->size(); ++i) {
            const toml::node& n = *a->get(i);
            const std::string path = fmt::format("fixture_health.{}[{}]", key, i);
            const auto* sv = n.as_string();
            if (!sv) {
                root.sink().error(n.source(), path, fmt::format("expected string, got {}", type_name(n.type())));
                continue;
            }
            each(n, path, sv->get());
        }
    };
    strings("golden_serials", [&](const toml::node& n, const std::string& path, const std::string& v) {
        if (v.empty()) root.sink().error(n.source(), path, "a golden serial must not be empty");
        else f.golden_serials.push_back(v);
    });
    t.read("golden_history", f.golden_history, false, 1, 1000);
    t.read("golden_resistance_tol_ohm", f.golden_resistance_tol_ohm, false, positive(1));
    t.read("golden_ocv_tol_v", f.golden_ocv_tol_v, false, positive(1));
    t.finish();
}

void read_bind(Tbl& t, std::string& out) {
    if (auto b = t.text("bind", false)) {
        if (!is_ip_literal(*b))
            t.bad("bind", fmt::format("expected an IPv4 or IPv6 address, got '{}'", *b));
        else out = *b;
    }
}

/// An IP literal, or a network "ADDRESS/PREFIX" (prefix 0..32 for IPv4, 0..128 for IPv6).
bool is_ip_network(const std::string& s) {
    const auto slash = s.find('/');
    const std::string addr = s.substr(0, slash);
    unsigned char buf[sizeof(struct in6_addr)];
    const bool v4 = inet_pton(AF_INET, addr.c_str(), buf) == 1;
    if (!v4 && inet_pton(AF_INET6, addr.c_str(), buf) != 1) return false;
    if (slash == std::string::npos) return true;
    const std::string prefix = s.substr(slash + 1);
    if (prefix.empty() || prefix.size() > 3 ||
        !std::all_of(prefix.begin(), prefix.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    return std::stoi(prefix) <= (v4 ? 32 : 128);
}

void read_allow(Tbl& t, std::vector<std::string>& out) {
    const toml::array* a = t.array("allow", false);
    if (!a) return;
    std::vector<std::string> allow;
    for (std::size_t i = 0; i < a->size(); ++i) {
        const toml::node& n = *a->get(i);
        const std::string path = fmt::format("{}[{}]", t.key_path("allow"), i);
        const auto* sv = n.as_string();
        if (!sv) {
            t.sink().error(n.source(), path, fmt::format("expected string, got {}", type_name(n.type())));
            continue;
        }
        if (!is_ip_network(sv->get())) {
            t.sink().error(n.source(), path,
                           fmt::format("expected an IP address or network (\"10.1.2.0/24\"), got '{}'", sv->get()));
            continue;
        }
        allow.push_back(sv->get());
    }
    if (a->empty()) t.bad("allow", "empty: no client could connect; leave the key out for loopback only");
    out = allow;
}

void read_servers(Tbl& root, StationConfig& cfg) {
    if (const toml::table* pt = root.table("plc", false)) {
        Tbl t(root.sink(), *pt, "plc");
        cfg.plc.present = true;
        t.read("enabled", cfg.plc.enabled, false);
        read_bind(t, cfg.plc.bind);
        t.read("port", cfg.plc.port, false, 1, 65535);
        t.read("unit", cfg.plc.unit, false, 1, 247);
        t.read("heartbeat_timeout_s", cfg.plc.heartbeat_timeout_s, false, positive(600));
        read_allow(t, cfg.plc.allow);
        if (auto o = choice(t, "serial_byte_order", false, {"high_first", "low_first"}))
            cfg.plc.serial_byte_order = *o == 0 ? PlcConfig::ByteOrder::high_first : PlcConfig::ByteOrder::low_first;
        t.read("recipe_id", cfg.plc.recipe_id, false, 1, 65535);
        t.read("max_clients", cfg.plc.max_clients, false, 1, 64);
        t.read("idle_timeout_s", cfg.plc.idle_timeout_s, false, positive(86400));
        t.finish();
    }
    if (const toml::table* pt = root.table("panel", false)) {
        Tbl t(root.sink(), *pt, "panel");
        cfg.panel.present = true;
        t.read("enabled", cfg.panel.enabled, false);
        read_bind(t, cfg.panel.bind);
        t.read("port", cfg.panel.port, false, 1, 65535);
        if (auto o = choice(t, "language", false, {"en", "zh-CN"})) cfg.panel.language = *o == 0 ? "en" : "zh-CN";
        if (const toml::array* sa = t.array("shifts", false)) {
            std::vector<int> starts;
            for (std::size_t i = 0; i < sa->size(); ++i) {
                const toml::node& n = *sa->get(i);
                const std::string path = fmt::format("panel.shifts[{}]", i);
                const auto* sv = n.as_string();
                const std::string text = sv ? sv->get() : "";
                int h = -1, m = -1;
                if (text.size() == 5 && text[2] == ':' && std::isdigit(static_cast<unsigned char>(text[0])) &&
                    std::isdigit(static_cast<unsigned char>(text[1])) && std::isdigit(static_cast<unsigned char>(text[3])) &&
                    std::isdigit(static_cast<unsigned char>(text[4]))) {
                    h = (text[0] - '0') * 10 + (text[1] - '0');
                    m = (text[3] - '0') * 10 + (text[4] - '0');
                }
                if (h < 0 || h > 23 || m > 59) {
                    root.sink().error(n.source(), path,
                                      sv ? fmt::format("'{}' is not a time of day HH:MM (00:00 … 23:59)", text)
                                         : fmt::format("expected a string \"HH:MM\", got {}", type_name(n.type())));
                    continue;
                }
                if (!starts.empty() && h * 60 + m <= starts.back()) {
                    root.sink().error(n.source(), path, fmt::format("'{}' is not after the shift before it", text));
                    continue;
                }
                starts.push_back(h * 60 + m);
            }
            if (sa->empty()) t.bad("shifts", "at least one shift start is needed (e.g. [\"06:00\", \"18:00\"])");
            else if (starts.size() == sa->size()) cfg.panel.shift_start_min = std::move(starts);
        }
        t.finish();
    }
    const auto overlap = [](const std::string& a, const std::string& b) {
        return a == b || is_wildcard(a) || is_wildcard(b);
    };
    if (cfg.plc.port == cfg.panel.port && overlap(cfg.plc.bind, cfg.panel.bind)) {
        const toml::node* n = root.table().at_path("panel.port").node();
        const toml::source_region where = n ? n->source() : toml::source_region{};
        root.sink().error(where, "panel.port",
                          fmt::format("port {} is also plc.port", cfg.panel.port));
    }
    // Simulated instruments listen on loopback: their ports must not collide
    // with the station's own servers, nor with each other.
    std::map<std::pair<std::string, int>, std::string> taken;
    for (const auto& ic : cfg.instruments) {
        if (ic.address.empty() || ic.endpoint.kind != instruments::Address::Kind::tcp) continue;
        const toml::node* n = root.table().at_path("instruments." + ic.name + ".address").node();
        const toml::source_region where = n ? n->source() : toml::source_region{};
        const std::string kp = "instruments." + ic.name + ".address";
        if (is_loopback_host(ic.endpoint.host)) {
            if (ic.endpoint.port == cfg.plc.port)
                root.sink().error(where, kp, fmt::format("port {} is also plc.port", cfg.plc.port));
            if (ic.endpoint.port == cfg.panel.port)
                root.sink().error(where, kp,
                                  fmt::format("port {} is also panel.port", cfg.panel.port));
        }
        const bool scpi = ic.driver == InstrumentConfig::Driver::scpi_load;
        const auto key = std::pair{ic.endpoint.host + ":" + std::to_string(ic.endpoint.port),
                                   scpi ? -1 : ic.unit};
        if (auto [it, fresh] = taken.emplace(key, ic.name); !fresh)
            root.sink().error(where, kp,
                              fmt::format("{} is also the address of '{}'{}", key.first, it->second,
                                          scpi ? "" : " with the same unit id"));
    }
}

/// The texts of the recall page from one table (a file's top level or an
/// inline [recall.texts]): every key required, no other key, each value
/// non-empty, at most kMaxRecallText bytes, with its placeholders.
void read_recall_texts(Tbl& t, std::map<std::string, std::string, std::less<>>& out) {
    constexpr std::size_t kMaxRecallText = 4000;
    for (const RecallTextKey& k : recall_text_keys()) {
        auto v = t.text(k.key, true);
        if (!v) continue;
        if (v->size() > kMaxRecallText) {
            t.bad(k.key, fmt::format("{} bytes; at most {}", v->size(), kMaxRecallText));
            continue;
        }
        bool ok = true;
        for (std::size_t i = 0; i + 3 <= k.placeholders.size(); i += 3) {
            const std::string_view ph = k.placeholders.substr(i, 3);  // "{0}", "{1}"
            if (v->find(ph) == std::string::npos) {
                t.bad(k.key, fmt::format("must contain the placeholder {} (the page puts a value there)", ph));
                ok = false;
            }
        }
        if (k.key == "language" &&
            (v->size() > 35 || !std::all_of(v->begin(), v->end(), [](char c) {
                 return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
             }))) {
            t.bad(k.key, fmt::format("'{}' is not a language tag such as \"en\" or \"zh-CN\"", printable(*v)));
            ok = false;
        }
        if (ok) out[std::string(k.key)] = *v;
    }
    t.finish();
}

/// [recall]: the public recall lookup page. Diagnostics of a texts file go
/// to `other` (they name that file).
void read_recall(Tbl& root, const fs::path& dir, RecallConfig& r, std::vector<Diagnostic>& other) {
    const toml::table* rt = root.table("recall", false);
    if (!rt) return;
    Tbl t(root.sink(), *rt, "recall");
    r.present = true;
    t.read("enabled", r.enabled, false);
    if (auto p = existing_file(t, "device_scheme", false, dir, "device serial scheme")) {
        r.device_scheme = *p;
        usable_file(t, "device_scheme", *p, "device serial scheme", [](const fs::path& f) { (void)SerialScheme::load(f); });
    }
    t.read("rate_burst", r.rate_burst, false, 1, 100'000);
    t.read("rate_per_minute", r.rate_per_minute, false, positive(1'000'000));
    t.read("min_answer_s", r.min_answer_s, false, non_negative(10));
    const toml::node* n = t.table().get("texts");
    if (!n) {
        t.node("texts");
        t.missing("texts");
    } else if (n->is_table()) {
        Tbl tt(root.sink(), *t.table("texts", true), "recall.texts");
        read_recall_texts(tt, r.texts);
    } else if (n->is_string()) {
        const auto p = existing_file(t, "texts", true, dir, "recall texts file");
        std::error_code ec;
        if (p && fs::is_regular_file(*p, ec)) {
            r.texts_file = *p;
            Sink fsink(display_name(*p));
            if (auto text = read_text_file(fsink, *p, "recall texts file"))
                if (auto froot = parse_toml(fsink, *text, fsink.file())) {
                    Tbl ft(fsink, *froot, "");
                    read_recall_texts(ft, r.texts);
                }
            for (auto& d : fsink.take()) other.push_back(std::move(d));
        }
    } else {
        t.node("texts");
        t.wrong_type("texts", *n, "string (a texts file) or table ([recall.texts])");
    }
    t.finish();
}

bool valid_date(int y, int m, int d) {
    using namespace std::chrono;
    return year_month_day{year{y}, month{static_cast<unsigned>(m)}, day{static_cast<unsigned>(d)}}
        .ok();
}

void read_sim(Tbl& root, SimConfig& s) {
    const toml::table* st = root.table("sim", false);
    if (!st) return;
    Tbl t(root.sink(), *st, "sim");
    t.read("time_scale", s.time_scale, false, positive(10000));
    if (auto seed = t.integer("seed", false, 0, std::numeric_limits<std::int64_t>::max()))
        s.seed = static_cast<std::uint64_t>(*seed);
    t.read("ambient_c", s.ambient_c, false, {-40, 80});
    if (auto lot = t.text("lot", false)) {
        const bool ok = std::all_of(lot->begin(), lot->end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z' && c != 'I' && c != 'O');
        });
        if (!ok) t.bad("lot", fmt::format("lot '{}' must use 0-9 and A-Z without I and O", *lot));
        else s.lot = *lot;
    }
    if (const toml::node* n = t.node("production_date")) {
        int y = 0, m = 0, d = 0;
        bool ok = false;
        if (const auto* dv = n->as_date()) {
            y = dv->get().year;
            m = dv->get().month;
            d = dv->get().day;
            ok = true;
        } else if (const auto* sv = n->as_string()) {
            const std::string& txt = sv->get();
            char tail = 0;
            ok = txt.size() == 10 &&
                 std::sscanf(txt.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3;
            if (!ok) t.bad("production_date", *n,
                           fmt::format("expected a date YYYY-MM-DD, got '{}'", txt));
        } else {
            t.wrong_type("production_date", *n, "date");
        }
        if (ok) {
            if (!valid_date(y, m, d)) t.bad("production_date", *n, "not a calendar date");
            else s.production_date = fmt::format("{:04}-{:02}-{:02}", y, m, d);
        }
    }
    t.read("short_fraction", s.short_fraction, false, {0, 1});
    t.read("r0_shift_rel", s.r0_shift_rel, false, {-0.5, 5});
    t.read("cells", s.cells, false, 1, 10'000'000);
    t.read("entropic_scale", s.entropic_scale, false, {0, 3});
    t.finish();
}

/// Steps must stay within the station's safety current.
void check_recipe_against_limits(const Recipe& r, const Limits& l, const std::string& station_file,
                                 std::vector<Diagnostic>& out) {
    if (l.i_max_a <= 0) return;
    const std::string file = display_name(r.file);
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
        const auto& s = r.steps[i];
        double i_a = 0;
        std::string key;
        if (const auto* p = std::get_if<PulseParams>(&s.params)) i_a = p->current_a, key = "current_a";
        else if (const auto* h = std::get_if<HeatParams>(&s.params)) i_a = h->current_a, key = "current_a";
        else if (const auto* d = std::get_if<DcirParams>(&s.params)) i_a = d->high_a, key = "high_c";
        if (i_a > l.i_max_a)
            out.push_back({file, s.line, 0, fmt::format("steps[{}].{}", i, key),
                           fmt::format("step '{}' draws {} A, above limits.i_max_a = {} A in {}",
                                       s.name, fmt_num(i_a), fmt_num(l.i_max_a), station_file)});
    }
}

/// A recipe that measures p_x_w (eol-18650's spec limit on the heat step's
/// P_x: the internal-short screen) needs an ambient thermocouple at every
/// position: without one the fit cannot determine P_x, and every cell there
/// would end "not measured" (a declared measurement is required; retested
/// for ever) — or, were it skipped, ship without the short screen. Refused
/// before the first cell instead, at the position. (A screening feature on
/// P_x tolerates a missing value: `config check` lists those positions and
/// warns, no error.)
void check_p_x_reachable(const StationConfig& cfg, const std::string& station_file, std::vector<Diagnostic>& out) {
    const MeasurementSpec* judged = nullptr;
    for (const MeasurementSpec* m : cfg.recipe.measurements())
        if (m->quantity == "p_x_w") judged = m;
    if (!judged) return;
    for (std::size_t i = 0; i < cfg.channels.size(); ++i) {
        const ChannelConfig& ch = cfg.channels[i];
        if (cfg.ambient_for(ch)) continue;
        std::string limits;
        if (judged->low) limits += fmt::format(">= {} W", fmt_num(*judged->low));
        if (judged->high) limits += fmt::format("{}<= {} W", judged->low ? ", " : "", fmt_num(*judged->high));
        out.push_back({station_file, ch.line, 0, "channels",
                       fmt::format("position {} cannot measure P_x: no ambient thermocouple reachable ('{}' has no "
                                   "ambient_channel and [station] ambient is not set), but recipe {} measures {}{} "
                                   "and every cell there would end 'not measured'; give instruments.{} an "
                                   "ambient_channel or set [station] ambient",
                                   ch.position, ch.thermo, display_name(cfg.recipe.file), judged->name,
                                   limits.empty() ? "" : " (" + limits + ")", ch.thermo)});
    }
}

StationConfig parse_station(std::string_view text, const fs::path& as_file, Sink& sink,
                            std::vector<Diagnostic>& recipe_diags) {
    StationConfig cfg;
    cfg.file = as_file;
    cfg.dir = as_file.parent_path();
    auto root_opt = parse_toml(sink, text, sink.file());
    if (!root_opt) return cfg;
    const toml::table& root = *root_opt;
    Tbl t(sink, root, "");

    read_instruments(t, cfg.dir, cfg);
    bool recipe_exists = false;
    read_station_table(t, cfg.dir, cfg, recipe_exists);
    read_channels(t, cfg);
    read_limits(t, cfg.limits);

    bool recipe_ok = false;
    if (recipe_exists) {
        const std::size_t before = recipe_diags.size();
        recipe_ok = load_recipe_into(cfg.recipe_file, cfg.recipe, recipe_diags) &&
                    recipe_diags.size() == before;
        // Spec limits layered over the recipe's own (docs/limits.md). A
        // missing generic file was reported at [station] spec_limits already.
        std::error_code ec;
        if (recipe_ok && !cfg.limits_file.empty() && fs::is_regular_file(cfg.limits_file, ec)) {
            const toml::node* st = root.get("station");
            const toml::node* lk = st && st->as_table() ? st->as_table()->get("spec_limits") : nullptr;
            LimitsKey key{sink.file(), lk ? static_cast<int>(lk->source().begin.line) : 0,
                          lk ? static_cast<int>(lk->source().begin.column) : 0, "station.spec_limits",
                          cfg.limits_file.string()};
            apply_limit_layers(cfg.recipe, cfg.limits_file, key, {}, recipe_diags);
            recipe_ok = recipe_diags.size() == before;
        }
        if (recipe_ok) check_recipe_against_limits(cfg.recipe, cfg.limits, sink.file(), recipe_diags);
        if (recipe_ok) check_p_x_reachable(cfg, sink.file(), recipe_diags);
    }
    read_screening(t, cfg.screening, recipe_ok ? &cfg.recipe : nullptr);
    read_fixture_health(t, cfg.fixture_health, recipe_ok ? &cfg.recipe : nullptr);
    read_servers(t, cfg);
    read_recall(t, cfg.dir, cfg.recall, recipe_diags);
    read_sim(t, cfg.sim);
    t.finish();
    return cfg;
}

StationConfig load_station(std::optional<std::string> text, const fs::path& file) {
    Sink sink(display_name(file));
    std::vector<Diagnostic> recipe_diags;
    StationConfig cfg;
    if (!text) text = read_text_file(sink, file, "station file");
    if (text) cfg = parse_station(*text, file, sink, recipe_diags);
    auto ds = sink.take();
    ds.insert(ds.end(), std::make_move_iterator(recipe_diags.begin()),
              std::make_move_iterator(recipe_diags.end()));
    if (!ds.empty()) {
        sort_diagnostics(ds);
        throw ConfigError(std::move(ds));
    }
    return cfg;
}

}  // namespace

Recipe load_recipe(const std::filesystem::path& file) { return parse_recipe(std::nullopt, file); }

void apply_limits(Recipe& recipe, const std::filesystem::path& generic_file, const ConfigFileReader& read) {
    std::vector<Diagnostic> ds;
    LimitsKey key{display_name(generic_file), 0, 0, "", generic_file.string()};
    apply_limit_layers(recipe, generic_file, key, read, ds);
    if (!ds.empty()) {
        sort_diagnostics(ds);
        throw ConfigError(std::move(ds));
    }
}

Recipe parse_recipe(std::optional<std::string_view> toml_text, const std::filesystem::path& as_file) {
    Recipe r;
    std::vector<Diagnostic> ds;
    load_recipe_into(as_file, r, ds, toml_text ? std::optional<std::string>(*toml_text) : std::nullopt);
    if (!ds.empty()) {
        sort_diagnostics(ds);
        throw ConfigError(std::move(ds));
    }
    return r;
}

StationConfig load_station_config(const std::filesystem::path& file) {
    return load_station(std::nullopt, file);
}

StationConfig parse_station_config(std::string_view toml_text, const std::filesystem::path& as_file) {
    return load_station(std::string(toml_text), as_file);
}

}  // namespace eol::station
