#include "eol/station/serial.hpp"

#include <fmt/core.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <set>
#include <stdexcept>
#include <toml++/toml.h>

#include "eol/instruments/toml_file.hpp"
#include "eol/models/calendar.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/text.hpp"

namespace eol::station {

// ---------------------------------------------------------------- Date

bool Date::valid() const {
    return year >= 0 && year <= 9999 && month >= 1 && month <= 12 && day >= 1 &&
           day <= models::days_in_month(year, month);
}

std::string Date::iso() const { return fmt::format("{:04d}-{:02d}-{:02d}", year, month, day); }

std::optional<Date> Date::parse_iso(std::string_view t) {
    if (t.size() != 10 || t[4] != '-' || t[7] != '-') return std::nullopt;
    auto num = [&](std::size_t from, std::size_t n, int& out) {
        out = 0;
        for (std::size_t i = from; i < from + n; ++i) {
            if (t[i] < '0' || t[i] > '9') return false;
            out = out * 10 + (t[i] - '0');
        }
        return true;
    };
    Date d;
    if (!num(0, 4, d.year) || !num(5, 2, d.month) || !num(8, 2, d.day) || !d.valid())
        return std::nullopt;
    return d;
}

// ---------------------------------------------------------------- kinds

namespace {
constexpr std::array<std::pair<std::string_view, SerialFieldKind>, 9> kKinds{{
    {"plant", SerialFieldKind::plant},
    {"line", SerialFieldKind::line},
    {"year", SerialFieldKind::year},
    {"month", SerialFieldKind::month},
    {"day", SerialFieldKind::day},
    {"lot", SerialFieldKind::lot},
    {"sequence", SerialFieldKind::sequence},
    {"text", SerialFieldKind::text},
    {"number", SerialFieldKind::number},
}};

constexpr std::string_view kDefaultAlphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

// How a character is shown in a message (text.hpp): never raw when it is
// invisible, a control or not UTF-8.
std::string shown(std::string_view ch) { return printable(ch); }
}  // namespace

std::string_view to_string(SerialFieldKind kind) {
    for (const auto& [name, k] : kKinds)
        if (k == kind) return name;
    return "?";
}

bool SerialField::numeric() const {
    switch (kind) {
        case SerialFieldKind::year:
        case SerialFieldKind::month:
        case SerialFieldKind::day:
        case SerialFieldKind::sequence:
        case SerialFieldKind::number: return true;
        default: return false;
    }
}

// ---------------------------------------------------------------- scheme basics

void SerialScheme::build_tables() {
    index_.fill(-1);
    for (std::size_t i = 0; i < alphabet_.size(); ++i)
        index_[static_cast<unsigned char>(alphabet_[i])] = static_cast<std::int16_t>(i);
    for (int c = 0; c < 256; ++c) {
        const char ch = static_cast<char>(c);
        char up = ch;
        if (ch >= 'a' && ch <= 'z') up = static_cast<char>(ch - 'a' + 'A');
        std::int16_t v = -1;
        if (ignore_.find(ch) != std::string::npos && ch != '\0') {
            v = -2;
        } else if (index_[static_cast<unsigned char>(up)] >= 0) {
            v = index_[static_cast<unsigned char>(up)];
        } else {
            for (const auto& [from, to] : aliases_)
                if (from == up) v = index_[static_cast<unsigned char>(to)];
        }
        input_[static_cast<std::size_t>(c)] = v;
    }
}

const SerialScheme& SerialScheme::default_scheme() {
    static const SerialScheme scheme = [] {
        SerialScheme s;
        s.length_ = 16;
        s.alphabet_ = std::string(kDefaultAlphabet);
        s.check_ = true;
        s.ignore_ = " -";
        s.aliases_ = {{'I', '1'}, {'O', '0'}};
        s.confusable_ = {{'1', 'L'}, {'2', 'Z'}, {'5', 'S'}, {'8', 'B'}};
        s.fields_ = {
            {"plant", SerialFieldKind::plant, 1, 2, 2020},
            {"line", SerialFieldKind::line, 3, 1, 2020},
            {"year", SerialFieldKind::year, 4, 1, 2020},
            {"month", SerialFieldKind::month, 5, 1, 2020},
            {"day", SerialFieldKind::day, 6, 1, 2020},
            {"lot", SerialFieldKind::lot, 7, 4, 2020},
            {"sequence", SerialFieldKind::sequence, 11, 5, 2020},
        };
        s.build_tables();
        return s;
    }();
    return scheme;
}

bool SerialScheme::operator==(const SerialScheme& o) const {
    return length_ == o.length_ && alphabet_ == o.alphabet_ && check_ == o.check_ &&
           ignore_ == o.ignore_ && aliases_ == o.aliases_ && confusable_ == o.confusable_ &&
           fields_ == o.fields_;
}

const SerialField* SerialScheme::field(SerialFieldKind kind) const {
    for (const auto& f : fields_)
        if (f.kind == kind) return &f;
    return nullptr;
}

std::uint64_t SerialScheme::capacity(const SerialField& f) const {
    std::uint64_t cap = 1;
    for (std::size_t i = 0; i < f.length; ++i) cap *= alphabet_.size();
    return cap;
}

// ---------------------------------------------------------------- loading

namespace {

std::string_view type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a float";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        default: return "nothing";
    }
}

struct Loader {
    std::string source;
    std::vector<std::string> errors;

    std::string at(const toml::source_region& r) const {
        return fmt::format("{}:{}", source, r.begin.line);
    }
    void error(const toml::source_region& r, std::string_view key, std::string_view what) {
        errors.push_back(fmt::format("{}: {}: {}", at(r), key, what));
    }
    void unknown_keys(const toml::table& t, const std::vector<std::string>& known,
                      std::string_view prefix) {
        for (const auto& [k, v] : t) {
            if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
            const std::string hint = did_you_mean(k.str(), known);
            errors.push_back(fmt::format("{}: {}{}: unknown key{}", at(k.source()), prefix, k.str(),
                                         hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)));
        }
    }
    std::optional<std::int64_t> integer(const toml::table& t, std::string_view key,
                                        std::string_view path, std::int64_t lo, std::int64_t hi) {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        const auto v = n->value<std::int64_t>();
        if (!n->is_integer() || !v) {
            error(n->source(), path, fmt::format("expected an integer, got {}", type_name(*n)));
            return std::nullopt;
        }
        if (*v < lo || *v > hi) {
            error(n->source(), path, fmt::format("{} is out of range {}…{}", *v, lo, hi));
            return std::nullopt;
        }
        return v;
    }
    std::optional<std::string> string(const toml::table& t, std::string_view key,
                                      std::string_view path) {
        const toml::node* n = t.get(key);
        if (!n) return std::nullopt;
        if (!n->is_string()) {
            error(n->source(), path, fmt::format("expected a string, got {}", type_name(*n)));
            return std::nullopt;
        }
        return std::string(*n->value<std::string_view>());
    }
};

}  // namespace

SerialScheme SerialScheme::parse(std::string_view toml_text, std::string_view source) {
    toml::table root;
    try {
        root = instruments::parse_toml_text(toml_text, source);  // bounded: toml_file.hpp
    } catch (const instruments::TomlError& e) {
        throw UsageError(e.what());
    }
    Loader L{std::string(source), {}};
    const toml::source_region whole = root.source();
    L.unknown_keys(root, {"length", "alphabet", "check", "ignore", "aliases", "confusable", "field"},
                   "");

    SerialScheme s;
    const auto length = L.integer(root, "length", "length", 1, 64);
    if (!root.contains("length")) L.error(whole, "length", "missing required key");
    s.length_ = static_cast<std::size_t>(length.value_or(16));

    s.alphabet_ = L.string(root, "alphabet", "alphabet").value_or(std::string(kDefaultAlphabet));
    {
        const toml::source_region r = root.get("alphabet") ? root.get("alphabet")->source() : whole;
        std::set<char> seen;
        for (char c : s.alphabet_) {
            if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
                L.error(r, "alphabet", fmt::format("'{}' is not a digit or upper-case letter",
                                                   shown(std::string_view(&c, 1))));
            else if (!seen.insert(c).second)
                L.error(r, "alphabet", fmt::format("'{}' appears twice", c));
        }
        if (s.alphabet_.size() < 2) L.error(r, "alphabet", "needs at least 2 symbols");
    }
    auto in_alphabet = [&](char c) { return s.alphabet_.find(c) != std::string::npos; };

    if (auto check = L.string(root, "check", "check")) {
        if (*check == "luhn") s.check_ = true;
        else if (*check == "none") s.check_ = false;
        else L.error(root.get("check")->source(), "check",
                     fmt::format("'{}' is not one of \"luhn\", \"none\"", *check));
    } else if (!root.get("check")) {
        s.check_ = true;
    }

    s.ignore_ = L.string(root, "ignore", "ignore").value_or(" -");
    for (char c : s.ignore_)
        if (in_alphabet(c))
            L.error(root.get("ignore")->source(), "ignore",
                    fmt::format("'{}' is in the alphabet and cannot be ignored", c));

    if (const toml::node* n = root.get("aliases")) {
        if (const toml::table* t = n->as_table()) {
            for (const auto& [k, v] : *t) {
                const std::string path = fmt::format("aliases.{}", k.str());
                const auto* sv = v.as_string();
                if (k.str().size() == 1 && k.str()[0] >= 'a' && k.str()[0] <= 'z') {
                    L.error(k.source(), path, "input is upper-cased before aliases apply: use the upper-case letter");
                    continue;
                }
                if (k.str().size() != 1 || in_alphabet(k.str()[0]) || !sv || sv->get().size() != 1 ||
                    !in_alphabet(sv->get()[0])) {
                    L.error(k.source(), path,
                            "an alias maps one character outside the alphabet to one symbol of it, "
                            "e.g. O = \"0\"");
                    continue;
                }
                s.aliases_.emplace_back(k.str()[0], sv->get()[0]);
            }
        } else {
            L.error(n->source(), "aliases", fmt::format("expected a table, got {}", type_name(*n)));
        }
    } else {
        for (auto [from, to] : {std::pair{'I', '1'}, std::pair{'O', '0'}})
            if (!in_alphabet(from) && in_alphabet(to)) s.aliases_.emplace_back(from, to);
    }
    std::sort(s.aliases_.begin(), s.aliases_.end());

    if (const toml::node* n = root.get("confusable")) {
        if (const toml::array* a = n->as_array()) {
            for (std::size_t i = 0; i < a->size(); ++i) {
                const toml::node& e = (*a)[i];
                const auto* sv = e.as_string();
                if (!sv || sv->get().size() != 2 || !in_alphabet(sv->get()[0]) ||
                    !in_alphabet(sv->get()[1]) || sv->get()[0] == sv->get()[1]) {
                    L.error(e.source(), fmt::format("confusable[{}]", i),
                            "expected two different symbols of the alphabet, e.g. \"1L\"");
                    continue;
                }
                s.confusable_.emplace_back(sv->get()[0], sv->get()[1]);
            }
        } else {
            L.error(n->source(), "confusable", fmt::format("expected an array, got {}", type_name(*n)));
        }
    } else {
        for (auto [a, b] : {std::pair{'1', 'L'}, std::pair{'2', 'Z'}, std::pair{'5', 'S'},
                            std::pair{'8', 'B'}})
            if (in_alphabet(a) && in_alphabet(b)) s.confusable_.emplace_back(a, b);
    }

    const std::size_t payload = s.length_ - (s.check_ ? 1 : 0);
    if (const toml::node* n = root.get("field")) {
        const toml::array* arr = n->as_array();
        if (!arr || !arr->is_array_of_tables()) {
            L.error(n->source(), "field", "expected an array of tables ([[field]])");
        } else {
            std::vector<int> owner(s.length_ + 1, -1);
            for (std::size_t i = 0; i < arr->size(); ++i) {
                const toml::table& t = *(*arr)[i].as_table();
                const std::string p = fmt::format("field[{}]", i);
                L.unknown_keys(t, {"name", "kind", "position", "length", "base_year"}, p + ".");
                SerialField f;
                const auto name = L.string(t, "name", p + ".name");
                if (!t.contains("name")) L.error(t.source(), p + ".name", "missing required key");
                f.name = name.value_or("");
                if (name && name->empty()) L.error(t.get("name")->source(), p + ".name", "is empty");
                const std::string fp = f.name.empty() ? p : fmt::format("field '{}'", f.name);
                if (auto kind = L.string(t, "kind", fp + ".kind")) {
                    bool found = false;
                    std::vector<std::string> names;
                    for (const auto& [kn, kk] : kKinds) {
                        names.emplace_back(kn);
                        if (kn == *kind) {
                            f.kind = kk;
                            found = true;
                        }
                    }
                    if (!found) {
                        const std::string hint = did_you_mean(*kind, names);
                        L.error(t.get("kind")->source(), fp + ".kind",
                                fmt::format("'{}' is not a field kind ({}){}", *kind,
                                            fmt::join(names, ", "),
                                            hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
                        continue;
                    }
                } else {
                    if (!t.contains("kind")) L.error(t.source(), fp + ".kind", "missing required key");
                    continue;
                }
                const auto pos = L.integer(t, "position", fp + ".position", 1, 64);
                const auto len = L.integer(t, "length", fp + ".length", 1, 64);
                if (!t.contains("position")) L.error(t.source(), fp + ".position", "missing required key");
                if (!t.contains("length")) L.error(t.source(), fp + ".length", "missing required key");
                if (!pos || !len) continue;
                f.position = static_cast<std::size_t>(*pos);
                f.length = static_cast<std::size_t>(*len);
                if (t.contains("base_year")) {
                    if (f.kind != SerialFieldKind::year)
                        L.error(t.get("base_year")->source(), fp + ".base_year",
                                "only a year field has a base_year");
                    else if (auto by = L.integer(t, "base_year", fp + ".base_year", 0, 9999))
                        f.base_year = static_cast<int>(*by);
                }
                const toml::source_region r = t.get("position")->source();
                if (f.position + f.length - 1 > payload) {
                    L.error(r, fp + ".position",
                            fmt::format("characters {}…{} are beyond the serial's {} {}characters",
                                        f.position, f.position + f.length - 1, payload,
                                        s.check_ ? "non-check " : ""));
                    continue;
                }
                bool overlap = false;
                for (std::size_t c = f.position; c < f.position + f.length; ++c) {
                    if (owner[c] >= 0 && !overlap) {
                        L.error(r, fp + ".position",
                                fmt::format("character {} is also in field '{}'", c,
                                            s.fields_[static_cast<std::size_t>(owner[c])].name));
                        overlap = true;
                    }
                    owner[c] = static_cast<int>(s.fields_.size());
                }
                if (f.numeric()) {
                    double bits = static_cast<double>(f.length) *
                                  std::log2(static_cast<double>(std::max<std::size_t>(2, s.alphabet_.size())));
                    if (bits > 62)
                        L.error(t.get("length")->source(), fp + ".length", "too long for a number");
                    else if (f.kind == SerialFieldKind::month && s.capacity(f) <= 12)
                        L.error(t.get("length")->source(), fp + ".length", "too short to hold 1…12");
                    else if (f.kind == SerialFieldKind::day && s.capacity(f) <= 31)
                        L.error(t.get("length")->source(), fp + ".length", "too short to hold 1…31");
                }
                for (const auto& g : s.fields_) {
                    if (g.name == f.name)
                        L.error(t.source(), fp + ".name", "a field of that name already exists");
                    else if (g.kind == f.kind && f.kind != SerialFieldKind::text &&
                             f.kind != SerialFieldKind::number)
                        L.error(t.source(), fp + ".kind",
                                fmt::format("a second '{}' field (first: '{}')", to_string(f.kind), g.name));
                }
                s.fields_.push_back(std::move(f));
            }
            const int date_parts = (s.field(SerialFieldKind::year) ? 1 : 0) +
                                   (s.field(SerialFieldKind::month) ? 1 : 0) +
                                   (s.field(SerialFieldKind::day) ? 1 : 0);
            if (date_parts != 0 && date_parts != 3)
                L.error(n->source(), "field", "a production date needs all of year, month and day fields");
        }
    }

    if (!L.errors.empty()) throw UsageError(fmt::format("{}", fmt::join(L.errors, "\n")));
    s.build_tables();
    return s;
}

SerialScheme SerialScheme::load(const std::filesystem::path& file) {
    std::string text;
    try {
        text = instruments::read_toml_file(file);  // regular files only, bounded, never blocks on a FIFO
    } catch (const instruments::TomlError& e) {
        throw UsageError(e.what());
    }
    return parse(text, file.string());
}

// ---------------------------------------------------------------- check character

char SerialScheme::check_char(std::string_view payload) const {
    const int n = static_cast<int>(alphabet_.size());
    int factor = 2;
    int sum = 0;
    for (std::size_t i = payload.size(); i-- > 0;) {
        int addend = factor * index_of(payload[i]);
        factor = 3 - factor;
        sum += addend / n + addend % n;
    }
    return alphabet_[static_cast<std::size_t>((n - sum % n) % n)];
}

bool SerialScheme::check_ok(std::string_view s) const {
    if (!check_) return true;
    const int n = static_cast<int>(alphabet_.size());
    int factor = 1;
    int sum = 0;
    for (std::size_t i = s.size(); i-- > 0;) {
        int addend = factor * index_of(s[i]);
        factor = 3 - factor;
        sum += addend / n + addend % n;
    }
    return sum % n == 0;
}

// ---------------------------------------------------------------- normalize

bool SerialScheme::normalize_into(std::string_view input, std::string& out) const {
    out.clear();
    for (char c : input) {
        const std::int16_t v = input_[static_cast<unsigned char>(c)];
        if (v >= 0) {
            if (out.size() == length_) return false;
            out.push_back(alphabet_[static_cast<std::size_t>(v)]);
        } else if (v == -1) {
            return false;
        }
    }
    return out.size() == length_ && check_ok(out);
}

NormalizeResult SerialScheme::normalize(std::string_view input) const {
    NormalizeResult r;
    r.serial.reserve(length_);
    std::size_t chars = 0;  // 1-based character position as typed
    bool dropped = false;
    for (std::size_t i = 0; i < input.size(); ++i) {
        const auto b = static_cast<unsigned char>(input[i]);
        if ((b & 0xC0) != 0x80) ++chars;
        const std::int16_t v = input_[b];
        if (v >= 0) {
            r.serial.push_back(alphabet_[static_cast<std::size_t>(v)]);
        } else if (v == -2) {
            dropped = true;
        } else {
            std::size_t end = i + 1;
            if (b >= 0xC0)
                while (end < input.size() && (static_cast<unsigned char>(input[end]) & 0xC0) == 0x80) ++end;
            SerialError e;
            e.kind = SerialErrorKind::bad_character;
            e.position = chars;
            e.character = std::string(input.substr(i, end - i));
            e.message = fmt::format("character '{}' at position {} is not allowed in a serial (allowed: {}{})",
                                    shown(e.character), chars, alphabet_,
                                    ignore_.empty() ? "" : "; spaces and dashes are ignored");
            r.error = std::move(e);
            return r;
        }
    }
    if (r.serial.size() != length_) {
        SerialError e;
        e.kind = SerialErrorKind::wrong_length;
        e.expected_length = length_;
        e.got_length = r.serial.size();
        e.message = fmt::format("wrong length: expected {} characters, got {}{}", length_,
                                r.serial.size(), dropped ? " (after dropping spaces and dashes)" : "");
        r.error = std::move(e);
        return r;
    }
    if (!check_ok(r.serial)) {
        SerialError e;
        e.kind = SerialErrorKind::bad_check;
        e.position = length_;
        std::string trial = r.serial;
        for (std::size_t i = 0; i < trial.size(); ++i) {
            const char orig = trial[i];
            for (const auto& [a, b] : confusable_) {
                const char other = orig == a ? b : orig == b ? a : '\0';
                if (other == '\0') continue;
                trial[i] = other;
                if (check_ok(trial)) e.candidates.push_back(trial);
                trial[i] = orig;
            }
        }
        std::vector<std::string> pairs;
        for (const auto& [a, b] : confusable_) pairs.push_back(fmt::format("{}/{}", a, b));
        const std::string_view payload = std::string_view(r.serial).substr(0, length_ - 1);
        e.message = fmt::format(
            "check character '{}' (position {}) does not match the rest (which gives '{}'): "
            "a character was misread or mistyped; {}",
            r.serial.back(), length_, check_char(payload),
            e.candidates.empty()
                ? fmt::format("no single confusable swap ({}) makes it valid", fmt::join(pairs, ", "))
                : fmt::format("did you mean {}?", fmt::join(e.candidates, " or ")));
        r.error = std::move(e);
    }
    return r;
}

// ---------------------------------------------------------------- decode

DecodeResult SerialScheme::decode(std::string_view input) const {
    DecodeResult r;
    NormalizeResult n = normalize(input);
    if (!n) {
        r.error = std::move(n.error);
        return r;
    }
    DecodedSerial& d = r.value;
    d.serial = std::move(n.serial);
    Date date;
    const SerialField* bad_date = nullptr;
    for (const auto& f : fields_) {
        FieldValue v;
        v.name = f.name;
        v.kind = f.kind;
        v.text = d.serial.substr(f.position - 1, f.length);
        if (f.numeric()) v.number = field_number(f, v.text);
        switch (f.kind) {
            case SerialFieldKind::plant: d.plant = v.text; break;
            case SerialFieldKind::line: d.line = v.text; break;
            case SerialFieldKind::lot: d.lot = v.text; break;
            case SerialFieldKind::sequence: d.sequence = static_cast<std::uint64_t>(*v.number); break;
            case SerialFieldKind::year: date.year = static_cast<int>(*v.number); break;
            case SerialFieldKind::month:
                date.month = static_cast<int>(*v.number);
                if (date.month < 1 || date.month > 12) bad_date = &f;
                break;
            case SerialFieldKind::day: date.day = static_cast<int>(*v.number); break;
            default: break;
        }
        d.fields.push_back(std::move(v));
    }
    if (field(SerialFieldKind::year)) {
        if (!bad_date && !date.valid()) bad_date = field(SerialFieldKind::day);
        if (bad_date) {
            SerialError e;
            e.kind = SerialErrorKind::bad_field;
            e.position = bad_date->position;
            e.field = bad_date->name;
            const std::string text = d.serial.substr(bad_date->position - 1, bad_date->length);
            e.message = bad_date->kind == SerialFieldKind::month
                            ? fmt::format("{} '{}' (position {}) encodes month {}, not 1…12", e.field,
                                          text, e.position, date.month)
                            : fmt::format("{} '{}' (position {}) encodes day {}, which {}-{:02d} does not have",
                                          e.field, text, e.position, date.day, date.year, date.month);
            r.error = std::move(e);
            return r;
        }
        d.production_date = date;
    }
    return r;
}

bool SerialScheme::decode_key(std::string_view input, std::string& serial, std::string& lot,
                              std::string& date_iso) const {
    lot.clear();
    date_iso.clear();
    if (!normalize_into(input, serial)) return false;
    Date date;
    bool dated = false;
    for (const auto& f : fields_) {
        const std::string_view text = std::string_view(serial).substr(f.position - 1, f.length);
        switch (f.kind) {
            case SerialFieldKind::lot: lot.assign(text); break;
            case SerialFieldKind::year:
                date.year = static_cast<int>(field_number(f, text));
                dated = true;
                break;
            case SerialFieldKind::month: date.month = static_cast<int>(field_number(f, text)); break;
            case SerialFieldKind::day: date.day = static_cast<int>(field_number(f, text)); break;
            default: break;
        }
    }
    if (!dated) return true;
    if (!date.valid()) return false;
    fmt::format_to(std::back_inserter(date_iso), "{:04d}-{:02d}-{:02d}", date.year, date.month, date.day);  // as Date::iso()
    return true;
}

std::int64_t SerialScheme::field_number(const SerialField& f, std::string_view text) const {
    std::int64_t x = 0;
    for (char c : text) x = x * static_cast<std::int64_t>(alphabet_.size()) + index_of(c);
    return f.kind == SerialFieldKind::year ? x + f.base_year : x;
}

// ---------------------------------------------------------------- make

std::string SerialScheme::make(const SerialSpec& spec) const {
    const std::size_t payload = length_ - (check_ ? 1 : 0);
    std::string s(payload, alphabet_[0]);
    for (const auto& [name, value] : spec.other) {
        const auto it = std::find_if(fields_.begin(), fields_.end(), [&](const SerialField& f) {
            return f.name == name &&
                   (f.kind == SerialFieldKind::text || f.kind == SerialFieldKind::number);
        });
        if (it == fields_.end())
            throw std::invalid_argument(fmt::format("the serial scheme has no text or number field '{}'", name));
    }
    if (field(SerialFieldKind::year) && !spec.date.valid())
        throw std::invalid_argument(fmt::format("date {} is not a valid date", spec.date.iso()));
    auto put_number = [&](const SerialField& f, std::uint64_t v, std::string_view what) {
        if (v >= capacity(f))
            throw std::invalid_argument(fmt::format("{} {} does not fit the {}-character field '{}' (max {})",
                                                    what, v, f.length, f.name, capacity(f) - 1));
        for (std::size_t i = f.length; i-- > 0;) {
            s[f.position - 1 + i] = alphabet_[v % alphabet_.size()];
            v /= alphabet_.size();
        }
    };
    for (const auto& f : fields_) {
        std::string_view text;
        switch (f.kind) {
            case SerialFieldKind::plant: text = spec.plant; break;
            case SerialFieldKind::line: text = spec.line; break;
            case SerialFieldKind::lot: text = spec.lot; break;
            case SerialFieldKind::text:
            case SerialFieldKind::number: {
                const auto it = spec.other.find(f.name);
                if (it != spec.other.end()) text = it->second;
                break;
            }
            case SerialFieldKind::year:
                if (spec.date.year < f.base_year)
                    throw std::invalid_argument(fmt::format("year {} is before the scheme's base year {}",
                                                            spec.date.year, f.base_year));
                put_number(f, static_cast<std::uint64_t>(spec.date.year - f.base_year), "year offset");
                continue;
            case SerialFieldKind::month: put_number(f, static_cast<std::uint64_t>(spec.date.month), "month"); continue;
            case SerialFieldKind::day: put_number(f, static_cast<std::uint64_t>(spec.date.day), "day"); continue;
            case SerialFieldKind::sequence: put_number(f, spec.sequence, "sequence"); continue;
        }
        if (f.kind == SerialFieldKind::number) {
            std::uint64_t v = 0;
            const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
            if (!text.empty() && (ec != std::errc{} || p != text.data() + text.size()))
                throw std::invalid_argument(fmt::format("field '{}': '{}' is not a whole number", f.name, text));
            put_number(f, v, "value");
            continue;
        }
        std::string mapped;
        for (char c : text) {
            const std::int16_t v = input_[static_cast<unsigned char>(c)];
            if (v == -2) continue;
            if (v < 0)
                throw std::invalid_argument(fmt::format("field '{}': character '{}' of '{}' is not in the alphabet {}",
                                                        f.name, shown(std::string_view(&c, 1)), text, alphabet_));
            mapped.push_back(alphabet_[static_cast<std::size_t>(v)]);
        }
        if (mapped.size() > f.length)
            throw std::invalid_argument(fmt::format("field '{}': '{}' is longer than its {} characters",
                                                    f.name, text, f.length));
        mapped.insert(0, f.length - mapped.size(), alphabet_[0]);
        s.replace(f.position - 1, f.length, mapped);
    }
    if (check_) s.push_back(check_char(s));
    return s;
}

std::vector<std::string> SerialScheme::make_range(const SerialSpec& spec, std::size_t count) const {
    std::vector<std::string> out;
    out.reserve(count);
    SerialSpec sp = spec;
    if (const SerialField* f = field(SerialFieldKind::sequence); f && count > 0) {
        if (spec.sequence + (count - 1) < spec.sequence)  // would wrap past 2^64
            throw std::invalid_argument(fmt::format(
                "{} sequences from {} do not fit the {}-character field '{}' (max {})", count, spec.sequence,
                f->length, f->name, capacity(*f) - 1));
        if (spec.sequence + (count - 1) >= capacity(*f))
            throw std::invalid_argument(fmt::format(
                "sequences {}…{} do not fit the {}-character field '{}' (max {})", spec.sequence,
                spec.sequence + (count - 1), f->length, f->name, capacity(*f) - 1));
    } else if (count > 1) {
        throw std::invalid_argument("the serial scheme has no sequence field to count with");
    }
    for (std::size_t i = 0; i < count; ++i) {
        sp.sequence = spec.sequence + i;
        out.push_back(make(sp));
    }
    return out;
}

}  // namespace eol::station
