#include "eol/station/quarantine.hpp"

#include "eol/station/parallel.hpp"

#include "eol/models/calendar.hpp"
#include "eol/station/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <exception>
#include <memory>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <numeric>
#include <thread>

namespace eol::station {

// ================================================================ scopes and windows

Scope Scope::serial(std::string s) {
    Scope sc;
    sc.kind = QuarantineScope::serial;
    sc.target = std::move(s);
    return sc;
}

Scope Scope::lot(std::string l) {
    Scope sc;
    sc.kind = QuarantineScope::lot;
    sc.target = std::move(l);
    return sc;
}

Scope Scope::window(Date from, Date to) {
    Scope sc;
    sc.kind = QuarantineScope::window;
    sc.from = from;
    sc.to = to;
    sc.target = from.iso() + ".." + to.iso();
    return sc;
}

std::string Scope::describe() const { return fmt::format("{} {}", to_string(kind), target); }

namespace {

// "YYYY-MM" or "YYYY-MM-DD" → [first, last] day it names.
std::optional<std::pair<Date, Date>> parse_window_end(std::string_view t) {
    if (auto d = Date::parse_iso(t)) return std::pair{*d, *d};
    if (t.size() != 7 || t[4] != '-') return std::nullopt;
    for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u})
        if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
    const int y = std::stoi(std::string(t.substr(0, 4)));
    const int m = std::stoi(std::string(t.substr(5, 2)));
    if (m < 1 || m > 12) return std::nullopt;
    return std::pair{Date{y, m, 1}, Date{y, m, models::days_in_month(y, m)}};
}

std::string trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return std::string(s);
}

}  // namespace

std::pair<Date, Date> parse_window(std::string_view text) {
    const std::string t = trim(text);
    const auto dots = t.find("..");
    const std::string a = dots == std::string::npos ? t : t.substr(0, dots);
    const std::string b = dots == std::string::npos ? t : t.substr(dots + 2);
    const auto from = parse_window_end(a);
    if (!from)
        throw UsageError(fmt::format("window '{}': '{}' is not a month (YYYY-MM) or a date (YYYY-MM-DD)", text,
                                     a));
    const auto to = parse_window_end(b);
    if (!to)
        throw UsageError(fmt::format("window '{}': '{}' is not a month (YYYY-MM) or a date (YYYY-MM-DD)", text,
                                     b));
    if (to->second < from->first)
        throw UsageError(fmt::format("window '{}': ends ({}) before it starts ({})", text, to->second.iso(),
                                     from->first.iso()));
    return {from->first, to->second};
}

// ================================================================ state

// ================================================================ Quarantine

Quarantine::Quarantine(Store& store, const SerialScheme& scheme) : store_(store), scheme_(scheme) {}

Scope Quarantine::normalize(Scope scope) const {
    switch (scope.kind) {
        case QuarantineScope::serial: {
            const NormalizeResult r = scheme_.normalize(scope.target);
            if (!r) throw UsageError(fmt::format("serial '{}': {}", scope.target, r.error->message));
            scope.target = r.serial;
            break;
        }
        case QuarantineScope::lot: {
            std::string lot = trim(scope.target);
            if (lot.empty()) throw UsageError("lot: empty lot id");
            for (std::size_t i = 0; i < lot.size(); ++i) {
                lot[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(lot[i])));
                if (scheme_.alphabet().find(lot[i]) == std::string::npos)
                    throw UsageError(fmt::format("lot '{}': character '{}' at position {} is not in the serial "
                                                 "alphabet ({})",
                                                 scope.target, scope.target[i], i + 1, scheme_.alphabet()));
            }
            if (const SerialField* f = scheme_.field(SerialFieldKind::lot)) {
                if (lot.size() > f->length)
                    throw UsageError(fmt::format("lot '{}': longer than the scheme's lot field ({} characters)",
                                                 scope.target, f->length));
                lot.insert(0, f->length - lot.size(), scheme_.alphabet().front());
            }
            scope.target = lot;
            break;
        }
        case QuarantineScope::window:
            if (!scope.from.valid() || !scope.to.valid() || scope.to < scope.from)
                throw UsageError(fmt::format("window {}..{}: needs valid dates, from ≤ to", scope.from.iso(),
                                             scope.to.iso()));
            scope.target = scope.from.iso() + ".." + scope.to.iso();
            break;
    }
    return scope;
}

std::pair<std::string, std::string> Quarantine::lot_and_date(std::string_view serial) {
    if (const auto c = store_.cell(serial)) return {c->lot, c->production_date};
    const DecodeResult d = scheme_.decode(serial);
    if (!d) return {"", ""};
    return {d.value.lot, d.value.production_date ? d.value.production_date->iso() : std::string()};
}

std::optional<QuarantineEvent> Quarantine::latest_of_target(const Scope& scope) {
    std::vector<QuarantineEvent> evs;
    switch (scope.kind) {
        case QuarantineScope::serial: evs = store_.quarantine_events_for(scope.target, "", ""); break;
        case QuarantineScope::lot: evs = store_.quarantine_events_for("", scope.target, ""); break;
        case QuarantineScope::window: evs = store_.quarantine_events_for("", "", scope.from.iso()); break;
    }
    std::optional<QuarantineEvent> latest;
    for (auto& e : evs)
        if (e.scope == scope.kind && e.target == scope.target && (!latest || e.id > latest->id)) latest = e;
    return latest;
}

std::int64_t Quarantine::decide(const Scope& scope, QuarantineAction action, std::string_view reason,
                                const Actor& actor, double time_unix_s, const std::function<void()>& check) {
    QuarantineEvent e;
    e.time_unix_s = time_unix_s;
    e.action = action;
    e.scope = scope.kind;
    e.target = scope.target;
    if (scope.kind == QuarantineScope::window) {
        e.window_from = scope.from.iso();
        e.window_to = scope.to.iso();
    }
    e.reason = std::string(reason);
    e.actor = actor.name;
    e.role = actor.role;
    // The check and the event in one write transaction: two decisions on
    // the same target cannot both pass the check.
    std::int64_t id = 0;
    store_.write_transaction([&] {
        check();  // throws QuarantineRefused
        id = store_.append_quarantine(e);
        return true;
    });
    return id;
}

namespace {
void require_basics(std::string_view what, std::string_view reason, const Actor& actor) {
    if (trim(reason).empty()) throw UsageError(fmt::format("{}: a reason is required (--reason)", what));
    if (trim(actor.name).empty()) throw UsageError(fmt::format("{}: an actor is required (--actor)", what));
}
void require_quality(std::string_view what, const Actor& actor) {
    if (actor.role != kQualityRole && actor.role != kAdminRole)
        throw QuarantineRefused(fmt::format("{} needs the role '{}' or '{}' (actor '{}' has role '{}')", what,
                                            kQualityRole, kAdminRole, actor.name, actor.role));
}
std::string since(const QuarantineEvent& e) {
    return fmt::format("event #{} by {} ({})", e.id, e.actor, e.reason);
}
}  // namespace

std::int64_t Quarantine::hold(const Scope& raw, std::string_view reason, const Actor& actor, double time_unix_s) {
    require_basics("hold", reason, actor);
    const Scope scope = normalize(raw);
    return decide(scope, QuarantineAction::hold, reason, actor, time_unix_s, [&] {
        if (scope.kind == QuarantineScope::serial) {
            const auto [lot, date] = lot_and_date(scope.target);
            const CellStatus st = store_.status(scope.target, lot, date);
            if (st.state == CellState::scrapped)
                throw QuarantineRefused(fmt::format("hold {}: the unit is scrapped ({})", scope.describe(),
                                                    since(st.because.front())));
        }
        if (const auto latest = latest_of_target(scope); latest && latest->action == QuarantineAction::hold)
            throw QuarantineRefused(fmt::format("hold {}: already held ({})", scope.describe(), since(*latest)));
    });
}

std::int64_t Quarantine::release(const Scope& raw, std::string_view reason, const Actor& actor,
                                 double time_unix_s) {
    require_basics("release", reason, actor);
    require_quality("release", actor);
    const Scope scope = normalize(raw);
    return decide(scope, QuarantineAction::release, reason, actor, time_unix_s, [&] {
        if (scope.kind == QuarantineScope::serial) {
            const auto [lot, date] = lot_and_date(scope.target);
            const CellStatus st = store_.status(scope.target, lot, date);
            if (st.state != CellState::held)
                throw QuarantineRefused(fmt::format("release {}: the unit is {}, not held: nothing to release",
                                                    scope.describe(), to_string(st.state)));
        } else {
            const auto latest = latest_of_target(scope);
            if (!latest || latest->action != QuarantineAction::hold) {
                std::string what = latest ? fmt::format("its latest event is a {} ({})", to_string(latest->action),
                                                        since(*latest))
                                          : std::string("it was never held");
                throw QuarantineRefused(fmt::format(
                    "release {}: no hold of this {} is in force ({}); a unit held by another scope is released "
                    "through that scope or individually by serial",
                    scope.describe(), to_string(scope.kind), what));
            }
        }
    });
}

std::int64_t Quarantine::scrap(const Scope& raw, std::string_view reason, const Actor& actor, double time_unix_s) {
    require_basics("scrap", reason, actor);
    require_quality("scrap", actor);
    const Scope scope = normalize(raw);
    return decide(scope, QuarantineAction::scrap, reason, actor, time_unix_s, [&] {
        if (scope.kind == QuarantineScope::serial) {
            const auto [lot, date] = lot_and_date(scope.target);
            const CellStatus st = store_.status(scope.target, lot, date);
            if (st.state == CellState::scrapped)
                throw QuarantineRefused(fmt::format("scrap {}: already scrapped ({})", scope.describe(),
                                                    since(st.because.front())));
        } else if (const auto latest = latest_of_target(scope); latest && latest->action == QuarantineAction::scrap) {
            throw QuarantineRefused(fmt::format("scrap {}: already scrapped ({})", scope.describe(), since(*latest)));
        }
    });
}

std::vector<QuarantineEvent> Quarantine::history_of_serial(std::string_view serial) {
    const Scope s = normalize(Scope::serial(std::string(serial)));
    const auto [lot, date] = lot_and_date(s.target);
    return store_.quarantine_events_for(s.target, lot, date);
}

std::vector<QuarantineEvent> Quarantine::history_of_lot(std::string_view lot) {
    const Scope s = normalize(Scope::lot(std::string(lot)));
    std::vector<QuarantineEvent> out;
    for (auto& e : store_.quarantine_events_for("", s.target, ""))
        if (e.scope == QuarantineScope::lot) out.push_back(std::move(e));
    return out;
}

std::vector<ActiveHold> Quarantine::active_holds() {
    std::map<std::pair<QuarantineScope, std::string>, QuarantineEvent> latest;
    for (auto& e : store_.quarantine_events()) latest[{e.scope, e.target}] = std::move(e);
    std::vector<ActiveHold> out;
    for (auto& [key, e] : latest) {
        if (e.action != QuarantineAction::hold) continue;
        ActiveHold h;
        h.event = e;
        CellFilter f;
        switch (e.scope) {
            case QuarantineScope::serial: h.cells_covered = store_.cell(e.target) ? 1 : 0; break;
            case QuarantineScope::lot:
                f.lot = e.target;
                store_.for_each_cell(f, [&](const CellInfo&) { ++h.cells_covered; });
                break;
            case QuarantineScope::window:
                f.date_from = e.window_from;
                f.date_to = e.window_to;
                store_.for_each_cell(f, [&](const CellInfo&) { ++h.cells_covered; });
                break;
        }
        out.push_back(std::move(h));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.event.id < b.event.id; });
    return out;
}

// ================================================================ lookups

std::string_view LookupResult::status() const {
    if (error) return "invalid";
    if (!known) return "unknown";
    return to_string(state);
}

LookupSession::LookupSession(Store& store, const SerialScheme& scheme) : store_(store), scheme_(scheme) {
    refresh();
}

namespace {
// A bit per key hash (bits.size() is a power of two, in words).
std::size_t bit_of(const std::vector<std::uint64_t>& bits, std::string_view key) {
    return std::hash<std::string_view>{}(key) & (bits.size() * 64 - 1);
}
void set_bit(std::vector<std::uint64_t>& bits, std::string_view key) {
    const std::size_t b = bit_of(bits, key);
    bits[b / 64] |= std::uint64_t{1} << (b % 64);
}
// False: `key` is certainly not a key of the map the bits were set for.
bool maybe_key(const std::vector<std::uint64_t>& bits, std::string_view key) {
    const std::size_t b = bit_of(bits, key);
    return (bits[b / 64] >> (b % 64)) & 1u;
}
}  // namespace

void LookupSession::refresh() {
    std::vector<QuarantineEvent> fresh = store_.quarantine_events(last_event_id_);
    if (serial_bits_.empty()) {
        serial_bits_.assign(std::size_t{1} << 14, 0);  // 2^20 bits: ~2 % false positives at 20,000 serials
        lot_bits_.assign(std::size_t{1} << 8, 0);
    }
    for (auto& e : fresh) {
        const std::size_t idx = events_.size();
        last_event_id_ = std::max(last_event_id_, e.id);
        switch (e.scope) {
            case QuarantineScope::serial:
                by_serial_[e.target].push_back(idx);
                set_bit(serial_bits_, e.target);
                break;
            case QuarantineScope::lot:
                by_lot_[e.target].push_back(idx);
                set_bit(lot_bits_, e.target);
                break;
            case QuarantineScope::window: windows_.push_back(idx); break;
        }
        events_.push_back(std::move(e));
    }
}

std::vector<const QuarantineEvent*> LookupSession::applicable(const std::string& serial, const std::string& lot,
                                                              const std::string& date) const {
    const auto s = maybe_key(serial_bits_, serial) ? by_serial_.find(serial) : by_serial_.end();
    const auto l = lot.empty() || !maybe_key(lot_bits_, lot) ? by_lot_.end() : by_lot_.find(lot);
    return gather(s == by_serial_.end() ? nullptr : &s->second, l == by_lot_.end() ? nullptr : &l->second, date);
}

std::vector<const QuarantineEvent*> LookupSession::gather(const std::vector<std::size_t>* serial_events,
                                                          const std::vector<std::size_t>* lot_events,
                                                          std::string_view date) const {
    std::vector<const QuarantineEvent*> out;
    if (serial_events)
        for (std::size_t i : *serial_events) out.push_back(&events_[i]);
    if (lot_events)
        for (std::size_t i : *lot_events) out.push_back(&events_[i]);
    if (!date.empty())
        for (std::size_t i : windows_)
            if (events_[i].window_from <= date && date <= events_[i].window_to) out.push_back(&events_[i]);
    return out;
}

namespace {
// The ship gate's rule: tested here, last test passed, not held or scrapped.
bool ship_allowed(bool known, std::optional<Verdict> verdict, CellState state) {
    return known && verdict == Verdict::pass && (state == CellState::clear || state == CellState::released);
}
}  // namespace

void LookupSession::judge(LookupResult& r) {
    if (auto c = store_.gate_cell(r.serial)) {  // one search (schema 5)
        r.known = true;
        r.lot = std::move(c->lot);
        r.production_date = std::move(c->production_date);
        r.verdict = c->verdict;
    }
    const auto ev = applicable(r.serial, r.lot, r.production_date);
    r.state = ev.empty() ? CellState::clear : quarantine_state(r.serial, ev, &r.because);
    r.may_ship = ship_allowed(r.known, r.verdict, r.state);
}

CellState LookupSession::serial_state(const std::string& serial, std::vector<QuarantineEvent>* because) const {
    const auto it = maybe_key(serial_bits_, serial) ? by_serial_.find(serial) : by_serial_.end();
    if (it == by_serial_.end()) {
        if (because) because->clear();
        return CellState::clear;
    }
    return quarantine_state(serial, gather(&it->second, nullptr, {}), because);
}

void LookupSession::judge_stored(LookupResult& r) const {
    const auto ev = applicable(r.serial, r.lot, r.production_date);
    r.state = ev.empty() ? CellState::clear : quarantine_state(r.serial, ev, &r.because);
    r.may_ship = ship_allowed(r.known, r.verdict, r.state);
}

namespace {
// Normalizes and decodes; on success fills serial (and lot/date from the
// serial, replaced by the stored ones for known cells).
void prepare(const SerialScheme& scheme, LookupResult& r) {
    DecodeResult d = scheme.decode(r.input);
    if (!d) {
        r.error = std::make_shared<const SerialError>(std::move(*d.error));
        return;
    }
    r.serial = std::move(d.value.serial);
    r.lot = std::move(d.value.lot);
    if (d.value.production_date) r.production_date = d.value.production_date->iso();
}
}  // namespace

LookupResult LookupSession::lookup(std::string_view input) {
    LookupResult r;
    r.input = std::string(input);
    prepare(scheme_, r);
    if (r.error) return r;
    refresh();
    judge(r);
    return r;
}

namespace {

// Valid results in key order: a fixed-width key (serials of the scheme are
// short; longer ones compare by their first 24 characters, then in full) and
// the result's index.
struct Key {
    std::array<char, 24> k;
    std::uint32_t i;
};

struct KeyLess {
    const std::vector<LookupResult>& out;
    // The key's bytes as three big-endian words: the same order as memcmp,
    // without a call per comparison (sorting a million keys is 20 million).
    static std::uint64_t word(const Key& key, std::size_t w) {
        std::uint64_t x;
        std::memcpy(&x, key.k.data() + 8 * w, 8);
        if constexpr (std::endian::native == std::endian::little) x = __builtin_bswap64(x);
        return x;
    }
    bool operator()(const Key& a, const Key& b) const {
        for (std::size_t w = 0; w < 3; ++w) {
            const std::uint64_t x = word(a, w), y = word(b, w);
            if (x != y) return x < y;
        }
        return out[a.i].serial < out[b.i].serial;
    }
};

// The valid results among out[from, to) in key order.
std::vector<Key> key_order(const std::vector<LookupResult>& out, std::size_t from, std::size_t to) {
    std::vector<Key> keys;
    keys.reserve(to - from);
    for (std::size_t i = from; i < to; ++i) {
        if (out[i].error) continue;
        Key key{};
        std::copy_n(out[i].serial.data(), std::min<std::size_t>(24, out[i].serial.size()), key.k.data());
        key.i = static_cast<std::uint32_t>(i);
        keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end(), KeyLess{out});
    return keys;
}

}  // namespace

std::vector<LookupResult> LookupSession::lookup_many(std::span<const std::string> inputs) {
    if (inputs.size() > std::numeric_limits<std::uint32_t>::max())
        throw UsageError(fmt::format("lookup: {} serials in one batch, at most {}", inputs.size(),
                                     std::numeric_limits<std::uint32_t>::max()));
    std::vector<LookupResult> out(inputs.size());
    refresh();
    // The store reads the cells in as many slices as it has bulk readers for
    // this batch (one thread and read-only connection each; none: one slice
    // on its own connection — small batches, inside a write transaction).
    // Every step below runs in as many parts, each on its own thread. The
    // event cache is only read.
    const std::size_t parts = std::max<std::size_t>(1, store_.bulk_readers(inputs.size()));
    // Part t of n items: [first, second).
    auto part = [&](std::size_t n, std::size_t t) { return std::pair{t * n / parts, (t + 1) * n / parts}; };
    // Normalize each part and put it in key order; then one merge, so that
    // each slice of the store's read is a contiguous range of keys (half the
    // B-tree each, at twice the density, instead of all of it).
    std::vector<std::vector<Key>> runs(parts);
    in_parallel(parts, [&](std::size_t t) {
        const auto [from, to] = part(out.size(), t);
        for (std::size_t i = from; i < to; ++i) {
            LookupResult& r = out[i];
            r.input = inputs[i];
            if (!scheme_.decode_key(r.input, r.serial, r.lot, r.production_date)) {
                r.serial.clear();
                prepare(scheme_, r);  // the full decode, for the diagnostics
            }
        }
        runs[t] = key_order(out, from, to);
    });
    std::vector<Key> order = std::move(runs[0]), merged;
    for (std::size_t t = 1; t < runs.size(); ++t) {
        merged.resize(order.size() + runs[t].size());
        std::merge(order.begin(), order.end(), runs[t].begin(), runs[t].end(), merged.begin(), KeyLess{out});
        std::swap(order, merged);
        runs[t] = {};
    }
    std::vector<std::uint32_t> pos(out.size());  // result index → place in key order
    for (std::size_t j = 0; j < order.size(); ++j) pos[order[j].i] = static_cast<std::uint32_t>(j);
    // The serial of place j: the key itself unless it may be cut short.
    std::vector<std::string_view> keys(order.size());
    for (std::size_t j = 0; j < order.size(); ++j) {
        const auto& k = order[j].k;
        const auto n = static_cast<std::size_t>(std::find(k.begin(), k.end(), '\0') - k.begin());
        keys[j] = n < k.size() ? std::string_view(k.data(), n) : std::string_view(out[order[j].i].serial);
    }
    // Serials with events of their own, in key order: each slice walks them
    // alongside its own key-ordered serials instead of hashing every serial.
    std::vector<std::pair<std::string_view, const std::vector<std::size_t>*>> serial_events;
    serial_events.reserve(by_serial_.size());
    for (const auto& [serial, ev] : by_serial_) serial_events.emplace_back(serial, &ev);
    std::sort(serial_events.begin(), serial_events.end());

    // Read and decide in key order into compact outcomes (the results
    // themselves are 1 M scattered structures: they are written afterwards,
    // in their own order). Stored lot and date go to a per-slice arena.
    struct Decided {
        std::uint32_t slice = 0, text = 0, lot_size = 0, date_size = 0;  // lot then date at arenas[slice][text]
        std::uint32_t because = 0;  // 1 + index into becauses[slice]; 0: none
        bool known = false, may_ship = false;
        CellState state = CellState::clear;
        std::optional<Verdict> verdict;
    };
    std::vector<Decided> outcome(order.size());
    struct Slice {
        std::string arena;
        std::vector<std::vector<QuarantineEvent>> becauses;
        std::size_t next_event = 0;  // into serial_events
        std::string lot;             // the lot of the last serial (consecutive serials share it) …
        const std::vector<std::size_t>* lot_events = nullptr;  // … and its events
        std::vector<QuarantineEvent> because;
    };
    // The store reads keys.size() ≤ inputs.size() serials: in at most `parts` slices.
    std::vector<Slice> slices(parts);
    store_.for_each_gate_cell(keys, [&](std::size_t t, std::size_t j, const DeviceCell* cell) {
        Slice& sl = slices[t];
        Decided& o = outcome[j];
        o.slice = static_cast<std::uint32_t>(t);
        std::string_view cell_lot, date;
        if (cell) {
            o.known = true;
            o.verdict = cell->verdict;
            o.text = static_cast<std::uint32_t>(sl.arena.size());
            o.lot_size = static_cast<std::uint32_t>(cell->lot.size());
            o.date_size = static_cast<std::uint32_t>(cell->production_date.size());
            sl.arena.append(cell->lot);
            sl.arena.append(cell->production_date);
            cell_lot = cell->lot;
            date = cell->production_date;
        } else {  // unknown: the lot and date the serial encodes
            const LookupResult& r = out[order[j].i];
            cell_lot = r.lot;
            date = r.production_date;
        }
        const std::string_view serial = keys[j];
        while (sl.next_event < serial_events.size() && serial_events[sl.next_event].first < serial) ++sl.next_event;
        const std::vector<std::size_t>* own =
            sl.next_event < serial_events.size() && serial_events[sl.next_event].first == serial
                ? serial_events[sl.next_event].second
                : nullptr;
        if (cell_lot != sl.lot) {
            sl.lot.assign(cell_lot);
            const auto it = sl.lot.empty() ? by_lot_.end() : by_lot_.find(sl.lot);
            sl.lot_events = it == by_lot_.end() ? nullptr : &it->second;
        }
        const auto ev = gather(own, sl.lot_events, date);
        if (!ev.empty()) {
            o.state = quarantine_state(serial, ev, &sl.because);
            if (!sl.because.empty()) {
                sl.becauses.push_back(std::move(sl.because));
                sl.because = {};
                o.because = static_cast<std::uint32_t>(sl.becauses.size());
            }
        }
        o.may_ship = ship_allowed(o.known, o.verdict, o.state);
    });
    in_parallel(parts, [&](std::size_t t) {
        const auto [from, to] = part(out.size(), t);
        for (std::size_t i = from; i < to; ++i) {
            LookupResult& r = out[i];
            if (r.error) continue;
            const Decided& o = outcome[pos[i]];
            if (o.known) {
                const std::string_view text = std::string_view(slices[o.slice].arena).substr(o.text);
                r.known = true;
                r.lot.assign(text.substr(0, o.lot_size));
                r.production_date.assign(text.substr(o.lot_size, o.date_size));
                r.verdict = o.verdict;
            }
            r.state = o.state;
            r.may_ship = o.may_ship;
            if (o.because) r.because = slices[o.slice].becauses[o.because - 1];  // copies: a serial may repeat
        }
    });
    return out;
}

// ================================================================ shipping

namespace {
constexpr std::string_view kShipmentKind = "shipment";
}

ShipmentResult ship(Store& store, LookupSession& session, std::span<const std::string> serials,
                    std::string_view gate_id, const Actor& actor, std::string_view reference) {
    if (trim(gate_id).empty()) throw UsageError("ship: a gate id is required");
    if (trim(actor.name).empty()) throw UsageError("ship: an actor is required");
    if (serials.empty()) throw UsageError("ship: no serials");
    ShipmentResult res;
    store.write_transaction([&] {
        res = ShipmentResult{};
        // Decided under the write lock: the session re-reads the events.
        std::vector<LookupResult> looked = session.lookup_many(serials);
        std::unordered_set<std::string> seen;
        nlohmann::json list = nlohmann::json::array();
        for (auto& r : looked) {
            const std::string key = r.serial.empty() ? r.input : r.serial;
            if (!seen.insert(key).second) {
                ++res.repeats;
                continue;
            }
            ++res.units;
            if (!r.may_ship) res.refused.push_back(std::move(r));
            else list.push_back(r.serial);
        }
        if (!res.refused.empty()) return false;
        StationEvent ev;
        ev.station_id = std::string(gate_id);
        ev.kind = std::string(kShipmentKind);
        ev.message = fmt::format("shipment {}: {} units", reference, list.size());
        ev.detail_json = nlohmann::json{{"serials", list}, {"actor", actor.name}, {"role", actor.role},
                                        {"reference", reference}}
                             .dump();
        res.event_id = store.append_station_event(ev);
        res.shipped = true;
        return true;
    });
    return res;
}

std::unordered_map<std::string, double> shipped_serials(Store& store) {
    std::unordered_map<std::string, double> out;
    for (const StationEvent& e : store.station_events(std::numeric_limits<std::size_t>::max())) {
        if (e.kind != kShipmentKind) continue;
        const auto j = nlohmann::json::parse(e.detail_json, nullptr, false);
        if (j.is_discarded() || !j.contains("serials") || !j["serials"].is_array()) continue;
        for (const auto& s : j["serials"]) {
            if (!s.is_string()) continue;
            auto [it, fresh] = out.emplace(s.get<std::string>(), e.time_unix_s);
            if (!fresh) it->second = std::min(it->second, e.time_unix_s);
        }
    }
    return out;
}

}  // namespace eol::station
