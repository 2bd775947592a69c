#include "eol/instruments/register_map.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/toml_file.hpp"

namespace eol::instruments {

const char* to_string(RegTable t) {
    switch (t) {
    case RegTable::coils: return "coil";
    case RegTable::discrete_inputs: return "discrete input";
    case RegTable::holding: return "holding register";
    case RegTable::input: return "input register";
    }
    return "?";
}

int read_function_code(RegTable t) {
    switch (t) {
    case RegTable::coils: return 1;
    case RegTable::discrete_inputs: return 2;
    case RegTable::holding: return 3;
    case RegTable::input: return 4;
    }
    return 0;
}

int words_of(ValueFormat f) {
    return f == ValueFormat::int16 || f == ValueFormat::uint16 ? 1 : 2;
}

const TcType* ThermoMap::type(int code) const {
    for (const auto& t : types)
        if (t.code == code) return &t;
    return nullptr;
}

// ---------------------------------------------------------------- parsing ----
namespace {

/// A TOML table being read: remembers which keys were used so that unknown
/// ones can be reported with their line.
class Tab {
public:
    Tab(const toml::table& t, std::string path, const std::string& file)
        : t_(t), path_(std::move(path)), file_(file) {}

    [[noreturn]] void fail_at(const toml::source_region& r, const std::string& key,
                              const std::string& msg) const {
        throw DefinitionError(fmt::format("{}:{}: {}: {}", file_, r.begin.line, key, msg));
    }
    [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
        const toml::node* n = t_.get(key);
        fail_at(n ? n->source() : t_.source(), full(key), msg);
    }
    std::string full(const std::string& key) const {
        return path_.empty() ? key : path_ + "." + key;
    }
    bool has(const std::string& key) const { return t_.contains(key); }
    int line() const { return static_cast<int>(t_.source().begin.line); }
    const std::string& path() const { return path_; }

    const toml::node* node(const std::string& key) {
        used_.insert(key);
        return t_.get(key);
    }
    [[noreturn]] void missing(const std::string& key) const {
        fail_at(t_.source(), full(key), "required key is missing");
    }

    std::int64_t integer(const std::string& key, std::int64_t lo, std::int64_t hi) {
        const toml::node* n = node(key);
        if (!n) missing(key);
        return integer_of(*n, key, lo, hi);
    }
    std::optional<std::int64_t> opt_integer(const std::string& key, std::int64_t lo,
                                            std::int64_t hi) {
        const toml::node* n = node(key);
        if (!n) return std::nullopt;
        return integer_of(*n, key, lo, hi);
    }
    std::int64_t integer_of(const toml::node& n, const std::string& key, std::int64_t lo,
                            std::int64_t hi) const {
        auto v = n.value_exact<std::int64_t>();
        if (!v) fail_at(n.source(), full(key), "expected an integer");
        if (*v < lo || *v > hi)
            fail_at(n.source(), full(key),
                    fmt::format("{} is out of range ({}..{})", *v, lo, hi));
        return *v;
    }
    double number(const std::string& key) {
        const toml::node* n = node(key);
        if (!n) missing(key);
        return number_of(*n, key);
    }
    std::optional<double> opt_number(const std::string& key) {
        const toml::node* n = node(key);
        if (!n) return std::nullopt;
        return number_of(*n, key);
    }
    double number_of(const toml::node& n, const std::string& key) const {
        if (auto i = n.value_exact<std::int64_t>()) return static_cast<double>(*i);
        auto d = n.value_exact<double>();
        if (!d || !std::isfinite(*d)) fail_at(n.source(), full(key), "expected a finite number");
        return *d;
    }
    std::string string(const std::string& key) {
        const toml::node* n = node(key);
        if (!n) missing(key);
        auto s = n->value_exact<std::string>();
        if (!s) fail_at(n->source(), full(key), "expected a string");
        return *s;
    }
    std::optional<std::string> opt_string(const std::string& key) {
        if (!t_.contains(key)) {
            used_.insert(key);
            return std::nullopt;
        }
        return string(key);
    }
    bool boolean(const std::string& key, bool def) {
        const toml::node* n = node(key);
        if (!n) return def;
        auto b = n->value_exact<bool>();
        if (!b) fail_at(n->source(), full(key), "expected true or false");
        return *b;
    }
    template <class E>
    E choice(const std::string& key, const std::vector<std::pair<const char*, E>>& options,
             std::optional<E> def = std::nullopt) {
        if (!t_.contains(key)) {
            used_.insert(key);
            if (def) return *def;
            missing(key);
        }
        const std::string s = string(key);
        std::string known;
        for (const auto& [name, e] : options) {
            if (s == name) return e;
            known += (known.empty() ? "" : ", ") + std::string(name);
        }
        fail(key, fmt::format("'{}' is not one of: {}", s, known));
    }
    Tab table(const std::string& key) {
        const toml::node* n = node(key);
        if (!n) missing(key);
        if (!n->is_table()) fail(key, "expected a table");
        return Tab(*n->as_table(), full(key), file_);
    }
    std::optional<Tab> opt_table(const std::string& key) {
        if (!t_.contains(key)) {
            used_.insert(key);
            return std::nullopt;
        }
        return table(key);
    }
    /// Array of tables ([[key]] or key = [{…}, …]).
    std::vector<Tab> tables(const std::string& key) {
        std::vector<Tab> out;
        const toml::node* n = node(key);
        if (!n) return out;
        const toml::array* a = n->as_array();
        if (!a) fail(key, "expected an array of tables");
        std::size_t i = 0;
        for (const auto& el : *a) {
            if (!el.is_table())
                fail_at(el.source(), fmt::format("{}[{}]", full(key), i), "expected a table");
            out.emplace_back(*el.as_table(), fmt::format("{}[{}]", full(key), i), file_);
            ++i;
        }
        return out;
    }
    /// Every key must have been read.
    void finish() const {
        for (const auto& [k, v] : t_) {
            const std::string key(k.str());
            if (!used_.count(key)) fail_at(k.source(), full(key), "unknown key");
        }
    }

private:
    const toml::table& t_;
    std::string path_;
    const std::string& file_;
    std::set<std::string> used_;
};

RegTable parse_table(Tab& t, const std::string& key, std::optional<RegTable> def,
                     bool bits_allowed, bool registers_allowed = true) {
    std::vector<std::pair<const char*, RegTable>> opts;
    if (registers_allowed) {
        opts.emplace_back("input", RegTable::input);
        opts.emplace_back("holding", RegTable::holding);
    }
    if (bits_allowed) {
        opts.emplace_back("coils", RegTable::coils);
        opts.emplace_back("discrete_inputs", RegTable::discrete_inputs);
    }
    return t.choice(key, opts, def);
}

int parse_address_key(Tab& t, const std::string& key) {
    return static_cast<int>(t.integer(key, 0, 65535));
}
std::optional<int> opt_address_key(Tab& t, const std::string& key) {
    auto v = t.opt_integer(key, 0, 65535);
    if (!v) return std::nullopt;
    return static_cast<int>(*v);
}

const std::vector<std::pair<const char*, TcStatus>> kStatusNames = {
    {"open", TcStatus::open},
    {"over_range", TcStatus::over_range},
    {"under_range", TcStatus::under_range},
    {"stale", TcStatus::stale},
};

void parse_thermo(Tab& root, ThermoMap& m, int channels) {
    m.channels = channels;
    {
        Tab v = root.table("values");
        m.values.table = parse_table(v, "table", std::nullopt, false);
        m.values.start = parse_address_key(v, "start");
        m.format = v.choice<ValueFormat>("format", {{"int16", ValueFormat::int16},
                                                    {"uint16", ValueFormat::uint16},
                                                    {"int32", ValueFormat::int32},
                                                    {"uint32", ValueFormat::uint32},
                                                    {"float32", ValueFormat::float32}});
        m.values.words_per_channel = static_cast<int>(
            v.opt_integer("words_per_channel", 1, 16).value_or(words_of(m.format)));
        if (m.values.words_per_channel < words_of(m.format))
            v.fail("words_per_channel", fmt::format("a {}-word format needs at least {} words",
                                                    words_of(m.format), words_of(m.format)));
        m.word_order = v.choice<WordOrder>("word_order", {{"big", WordOrder::big},
                                                         {"little", WordOrder::little}},
                                           WordOrder::big);
        m.scaling = v.choice<Scaling>("scaling", {{"type_range", Scaling::type_range},
                                                 {"counts_range", Scaling::counts_range},
                                                 {"fixed_point", Scaling::fixed_point},
                                                 {"float32", Scaling::float32}});
        m.scale = v.opt_number("scale").value_or(1.0);
        if (m.scale == 0.0) v.fail("scale", "must not be 0");
        m.offset_c = v.opt_number("offset_c").value_or(0.0);
        m.valid_min_c = v.opt_number("valid_min_c");
        m.valid_max_c = v.opt_number("valid_max_c");
        m.range_tolerance_c = v.opt_number("range_tolerance_c").value_or(0.0);
        if (m.valid_min_c && m.valid_max_c && *m.valid_min_c >= *m.valid_max_c)
            v.fail("valid_max_c", "must be above valid_min_c");
        if (m.scaling == Scaling::type_range && m.format != ValueFormat::int16)
            v.fail("format", "scaling 'type_range' needs format 'int16'");
        if (m.scaling == Scaling::counts_range && m.format != ValueFormat::uint16)
            v.fail("format", "scaling 'counts_range' needs format 'uint16'");
        if (m.scaling == Scaling::float32 && m.format != ValueFormat::float32)
            v.fail("format", "scaling 'float32' needs format 'float32'");
        if (m.scaling == Scaling::fixed_point && m.format == ValueFormat::float32)
            v.fail("format", "scaling 'fixed_point' needs an integer format");
        const std::int64_t end = m.values.start +
                                 static_cast<std::int64_t>(m.values.words_per_channel) * channels;
        if (end > 65536) v.fail("start", "the channel block runs past register 65535");
        v.finish();
    }
    const bool type_based =
        m.scaling == Scaling::type_range || m.scaling == Scaling::counts_range;
    if (auto t = root.opt_table("types")) {
        if (t->has("table") || t->has("start")) {
            ChannelBlock b;
            b.table = parse_table(*t, "table", RegTable::holding, false);
            b.start = parse_address_key(*t, "start");
            b.words_per_channel = 1;
            m.type_block = b;
        }
        m.default_type_code = static_cast<int>(t->opt_integer("default", 0, 65535).value_or(-1));
        std::size_t i = 0;
        for (Tab& k : t->tables("known")) {
            TcType ty;
            ty.code = static_cast<int>(k.integer("code", 0, 65535));
            ty.name = k.string("name");
            ty.min_c = k.number("min_c");
            ty.max_c = k.number("max_c");
            if (ty.min_c >= ty.max_c) k.fail("max_c", "must be above min_c");
            if (m.type(ty.code))
                k.fail("code", fmt::format("type code {} is defined twice", ty.code));
            m.types.push_back(ty);
            k.finish();
            ++i;
        }
        if (m.types.empty()) t->fail("known", "at least one thermocouple type is needed");
        if (m.default_type_code >= 0 && !m.type(m.default_type_code))
            t->fail("default", fmt::format("type code {} is not among types.known",
                                           m.default_type_code));
        if (!m.type_block && m.default_type_code < 0)
            t->fail("default", "without a type register block, a default type is required");
        t->finish();
    } else if (type_based) {
        root.fail("types", "scaling by thermocouple type needs a [types] table");
    }
    for (Tab& s : root.tables("status")) {
        StatusRule r;
        r.line = s.line();
        r.status = s.choice<TcStatus>("status", kStatusNames);
        r.layout = s.choice<StatusRule::Layout>(
            "layout", {{"word", StatusRule::Layout::word}, {"bit", StatusRule::Layout::bit}},
            StatusRule::Layout::word);
        const bool bit = r.layout == StatusRule::Layout::bit;
        r.block.table = parse_table(s, "table", std::nullopt, bit);
        r.block.start = parse_address_key(s, "start");
        if (bit) {
            r.block.words_per_channel = 1;
        } else {
            r.block.words_per_channel =
                static_cast<int>(s.opt_integer("words_per_channel", 1, 16).value_or(1));
            r.word_offset = static_cast<int>(
                s.opt_integer("word_offset", 0, r.block.words_per_channel - 1).value_or(0));
            r.mask = static_cast<std::uint16_t>(s.opt_integer("mask", 1, 0xFFFF).value_or(0xFFFF));
            r.value = static_cast<std::uint16_t>(s.integer("value", 0, 0xFFFF));
            if ((r.value & ~r.mask) != 0)
                s.fail("value", "has bits outside the mask, so it can never match");
            if (r.value == 0)
                s.fail("value", "0 would flag every channel whose status word is clear");
        }
        s.finish();
        m.status.push_back(r);
    }
    for (Tab& s : root.tables("sentinels")) {
        Sentinel se;
        const std::int64_t maxraw = words_of(m.format) == 1 ? 0xFFFF : 0xFFFFFFFFLL;
        se.raw = static_cast<std::uint32_t>(s.integer("raw", 0, maxraw));
        se.status = s.choice<TcStatus>("status", kStatusNames);
        s.finish();
        m.sentinels.push_back(se);
    }
}

void parse_load(Tab& root, LoadMap& m, int channels) {
    m.channels = channels;
    if (channels != 1) root.fail("device", "Modbus loads are single-channel (device.channels = 1)");
    if (auto c = root.opt_table("capabilities")) {
        if (auto v = c->opt_number("max_current_a")) m.max_current_a = *v;
        if (auto v = c->opt_number("max_voltage_v")) m.max_voltage_v = *v;
        if (auto v = c->opt_number("max_power_w")) m.max_power_w = *v;
        if (c->boolean("hardware_pulse", false))
            c->fail("hardware_pulse", "a Modbus load's pulse is timed by the driver in software: hardware_pulse = false");
        c->finish();
    }
    {
        Tab l = root.table("load");
        m.word_order = l.choice<WordOrder>("word_order", {{"big", WordOrder::big},
                                                         {"little", WordOrder::little}},
                                           WordOrder::big);
        m.current_reported_negative = l.boolean("current_reported_negative", false);
        l.finish();
    }
    {
        Tab c = root.table("coils");
        m.remote_coil = opt_address_key(c, "remote");
        m.input_state_coil = parse_address_key(c, "input_state");
        m.over_current_coil = opt_address_key(c, "over_current");
        m.over_voltage_coil = opt_address_key(c, "over_voltage");
        m.over_power_coil = opt_address_key(c, "over_power");
        m.over_temperature_coil = opt_address_key(c, "over_temperature");
        m.reverse_voltage_coil = opt_address_key(c, "reverse_voltage");
        c.finish();
    }
    {
        Tab c = root.table("command");
        m.command_register = parse_address_key(c, "register");
        auto code = [&](const char* k) { return static_cast<std::uint16_t>(c.integer(k, 0, 0xFFFF)); };
        m.cmd_cc = code("cc");
        m.cmd_cv = code("cv");
        m.cmd_cp = code("cp");
        m.cmd_cr = code("cr");
        m.cmd_input_on = code("input_on");
        m.cmd_input_off = code("input_off");
        c.finish();
    }
    {
        Tab s = root.table("setpoints");
        m.set_current = parse_address_key(s, "current");
        m.set_voltage = parse_address_key(s, "voltage");
        m.set_power = parse_address_key(s, "power");
        m.set_resistance = parse_address_key(s, "resistance");
        s.finish();
    }
    {
        Tab r = root.table("readings");
        m.readings_table = parse_table(r, "table", RegTable::holding, false);
        m.read_voltage = parse_address_key(r, "voltage");
        m.read_current = parse_address_key(r, "current");
        m.read_power = opt_address_key(r, "power");
        r.finish();
    }
    if (auto id = root.opt_table("identity")) {
        m.model_register = opt_address_key(*id, "model_register");
        m.firmware_register = opt_address_key(*id, "firmware_register");
        id->finish();
    }
}

RegisterMap parse_root(const toml::table& tbl, const std::string& source) {
    RegisterMap rm;
    rm.source = source;
    Tab root(tbl, "", source);
    int channels = 0;
    {
        Tab d = root.table("device");
        rm.kind = d.choice<RegisterMap::Kind>("kind", {{"thermocouple", RegisterMap::Kind::thermocouple},
                                                       {"load", RegisterMap::Kind::load}});
        rm.manufacturer = d.string("manufacturer");
        rm.model = d.string("model");
        channels = static_cast<int>(d.integer("channels", 1, 64));
        if (rm.kind == RegisterMap::Kind::thermocouple) {
            rm.thermo.merge_gap = static_cast<int>(d.opt_integer("merge_gap", 0, 100).value_or(0));
        }
        d.finish();
    }
    if (rm.kind == RegisterMap::Kind::thermocouple) {
        parse_thermo(root, rm.thermo, channels);
    } else {
        parse_load(root, rm.load, channels);
    }
    root.finish();
    return rm;
}

}  // namespace

RegisterMap parse_register_map(std::string_view toml_text, const std::string& source) {
    return parse_root(parse_toml_text(toml_text, source), source);
}

RegisterMap load_register_map(const std::string& path) {
    return parse_root(parse_toml_file(path), path);
}

// ------------------------------------------------------------------ codec ----

std::uint32_t join_words(std::uint16_t first, std::uint16_t second, WordOrder order) {
    const std::uint32_t hi = order == WordOrder::big ? first : second;
    const std::uint32_t lo = order == WordOrder::big ? second : first;
    return (hi << 16) | lo;
}

void split_words(std::uint32_t v, WordOrder order, std::uint16_t& first, std::uint16_t& second) {
    const auto hi = static_cast<std::uint16_t>(v >> 16);
    const auto lo = static_cast<std::uint16_t>(v & 0xFFFF);
    first = order == WordOrder::big ? hi : lo;
    second = order == WordOrder::big ? lo : hi;
}

float words_to_float(std::uint16_t first, std::uint16_t second, WordOrder order) {
    return std::bit_cast<float>(join_words(first, second, order));
}

void float_to_words(float f, WordOrder order, std::uint16_t& first, std::uint16_t& second) {
    split_words(std::bit_cast<std::uint32_t>(f), order, first, second);
}

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::uint32_t raw_of(const ThermoMap& m, const std::vector<std::uint16_t>& w) {
    if (words_of(m.format) == 1) return w.at(0);
    return join_words(w.at(0), w.at(1), m.word_order);
}

/// The range a decoded temperature must lie in, if any.
std::optional<std::pair<double, double>> valid_range(const ThermoMap& m, const TcType* t) {
    if (t && (m.scaling == Scaling::type_range || m.scaling == Scaling::counts_range))
        return std::pair{t->min_c - m.range_tolerance_c, t->max_c + m.range_tolerance_c};
    if (m.valid_min_c || m.valid_max_c)
        return std::pair{m.valid_min_c.value_or(-std::numeric_limits<double>::infinity()),
                         m.valid_max_c.value_or(std::numeric_limits<double>::infinity())};
    return std::nullopt;
}

const TcType& type_for(const ThermoMap& m, int channel, int code) {
    const TcType* t = m.type(code);
    if (!t) {
        std::string known;
        for (const auto& k : m.types) known += fmt::format("{}{}={}", known.empty() ? "" : ", ", k.code, k.name);
        throw DefinitionError(fmt::format(
            "channel {}: type code {} (0x{:04X}) is not a thermocouple type of this map ({})",
            channel, code, code, known));
    }
    return *t;
}

double full_scale(const TcType& t) { return std::max(std::abs(t.min_c), std::abs(t.max_c)); }

}  // namespace

TcReading decode_channel(const ThermoMap& m, int channel, const ChannelRaw& raw) {
    if (raw.flagged) return {kNaN, *raw.flagged};
    if (static_cast<int>(raw.words.size()) < words_of(m.format))
        throw DefinitionError(fmt::format("channel {}: {} value words, need {}", channel,
                                          raw.words.size(), words_of(m.format)));
    const std::uint32_t r = raw_of(m, raw.words);
    for (const auto& s : m.sentinels)
        if (s.raw == r) return {kNaN, s.status};

    double v = 0;
    switch (m.format) {
    case ValueFormat::int16: v = static_cast<std::int16_t>(static_cast<std::uint16_t>(r)); break;
    case ValueFormat::uint16: v = static_cast<double>(r); break;
    case ValueFormat::int32: v = static_cast<std::int32_t>(r); break;
    case ValueFormat::uint32: v = static_cast<double>(r); break;
    case ValueFormat::float32: v = static_cast<double>(std::bit_cast<float>(r)); break;
    }
    if (std::isnan(v)) return {kNaN, TcStatus::stale};
    if (std::isinf(v)) return {kNaN, v > 0 ? TcStatus::over_range : TcStatus::under_range};

    const TcType* type = nullptr;
    double t = 0;
    switch (m.scaling) {
    case Scaling::type_range: {
        const TcType& ty = type_for(m, channel, raw.type_code);
        type = &ty;
        t = v / 32767.0 * full_scale(ty);
        break;
    }
    case Scaling::counts_range: {
        const TcType& ty = type_for(m, channel, raw.type_code);
        type = &ty;
        t = v / 65535.0 * (ty.max_c - ty.min_c) + ty.min_c;
        break;
    }
    case Scaling::fixed_point:
    case Scaling::float32: t = v * m.scale + m.offset_c; break;
    }
    if (auto range = valid_range(m, type)) {
        if (t > range->second) return {kNaN, TcStatus::over_range};
        if (t < range->first) return {kNaN, TcStatus::under_range};
    }
    return {t, TcStatus::ok};
}

std::vector<std::uint16_t> encode_channel(const ThermoMap& m, int type_code, double temp_c) {
    double raw = 0;
    const TcType* type = m.type(type_code);
    switch (m.scaling) {
    case Scaling::type_range:
        raw = type ? std::round(temp_c / full_scale(*type) * 32767.0) : 0;
        break;
    case Scaling::counts_range:
        raw = type ? std::round((temp_c - type->min_c) / (type->max_c - type->min_c) * 65535.0) : 0;
        break;
    case Scaling::fixed_point: raw = std::round((temp_c - m.offset_c) / m.scale); break;
    case Scaling::float32: raw = (temp_c - m.offset_c) / m.scale; break;
    }
    std::uint32_t bits = 0;
    auto clamp_int = [&](double lo, double hi) { return std::clamp(raw, lo, hi); };
    switch (m.format) {
    case ValueFormat::int16:
        bits = static_cast<std::uint16_t>(static_cast<std::int16_t>(clamp_int(-32768, 32767)));
        break;
    case ValueFormat::uint16: bits = static_cast<std::uint32_t>(clamp_int(0, 65535)); break;
    case ValueFormat::int32:
        bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(clamp_int(-2147483648.0, 2147483647.0)));
        break;
    case ValueFormat::uint32: bits = static_cast<std::uint32_t>(clamp_int(0, 4294967295.0)); break;
    case ValueFormat::float32: bits = std::bit_cast<std::uint32_t>(static_cast<float>(raw)); break;
    }
    // An in-range temperature must not read as a sentinel: step one count inwards.
    if (m.format != ValueFormat::float32) {
        for (int guard = 0; guard < 4; ++guard) {
            bool hit = false;
            for (const auto& s : m.sentinels) hit = hit || s.raw == bits;
            if (!hit) break;
            const bool is_signed = m.format == ValueFormat::int16 || m.format == ValueFormat::int32;
            const double value = is_signed ? (m.format == ValueFormat::int16
                                                  ? static_cast<double>(static_cast<std::int16_t>(bits))
                                                  : static_cast<double>(static_cast<std::int32_t>(bits)))
                                           : static_cast<double>(bits);
            const double mid = m.format == ValueFormat::uint16 ? 32767.5
                               : m.format == ValueFormat::uint32 ? 2147483647.5 : 0.0;
            const std::uint32_t mask = words_of(m.format) == 1 ? 0xFFFFu : 0xFFFFFFFFu;
            bits = (value > mid ? bits - 1 : bits + 1) & mask;
        }
    }
    std::vector<std::uint16_t> out(static_cast<std::size_t>(m.values.words_per_channel), 0);
    if (words_of(m.format) == 1) {
        out[0] = static_cast<std::uint16_t>(bits);
    } else {
        split_words(bits, m.word_order, out[0], out[1]);
    }
    return out;
}

std::vector<std::uint16_t> sentinel_words(const ThermoMap& m, TcStatus status) {
    for (const auto& s : m.sentinels) {
        if (s.status != status) continue;
        std::vector<std::uint16_t> out(static_cast<std::size_t>(m.values.words_per_channel), 0);
        if (words_of(m.format) == 1) {
            out[0] = static_cast<std::uint16_t>(s.raw);
        } else {
            split_words(s.raw, m.word_order, out[0], out[1]);
        }
        return out;
    }
    return {};
}

}  // namespace eol::instruments
