#include "eol/station/genealogy.hpp"
#include "eol/station/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "eol/station/errors.hpp"

namespace eol::station {

namespace {

// The same as config/device-serial-scheme.toml (a test compares them).
constexpr std::string_view kDeviceSchemeToml = R"toml(
length = 16
alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
check = "luhn"
ignore = " -"
aliases = { O = "0", I = "1" }
confusable = ["1L", "2Z", "5S", "8B"]

[[field]]
name = "plant"
kind = "plant"
position = 1
length = 2

[[field]]
name = "line"
kind = "line"
position = 3
length = 1

[[field]]
name = "sequence"
kind = "sequence"
position = 4
length = 12
)toml";

std::string trimmed(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
}

// "lot 0042: lot outlier rate 12 % (by screening)" — the hold in force that
// came last, or the deciding event.
std::string describe_because(const std::vector<QuarantineEvent>& because) {
    if (because.empty()) return {};
    const QuarantineEvent& e = because.back();
    std::string s = fmt::format("{} {} since {}: {}", to_string(e.scope), e.target, utc_text(e.time_unix_s, "%Y-%m-%d"), e.reason);
    if (because.size() > 1) s += fmt::format(" (+{} more)", because.size() - 1);
    return s;
}

LinkRefusal refusal(std::string input, std::string serial, LinkRefusalKind kind, std::string reason) {
    return LinkRefusal{std::move(input), std::move(serial), kind, std::move(reason)};
}

}  // namespace

const SerialScheme& device_serial_scheme() {
    static const SerialScheme scheme = SerialScheme::parse(kDeviceSchemeToml, "built-in device serial scheme");
    return scheme;
}

std::string_view to_string(LinkRefusalKind kind) {
    switch (kind) {
        case LinkRefusalKind::device_invalid: return "device_invalid";
        case LinkRefusalKind::device_model: return "device_model";
        case LinkRefusalKind::device_scrapped: return "device_scrapped";
        case LinkRefusalKind::no_cells: return "no_cells";
        case LinkRefusalKind::invalid: return "invalid";
        case LinkRefusalKind::repeated: return "repeated";
        case LinkRefusalKind::unknown: return "unknown";
        case LinkRefusalKind::untested: return "untested";
        case LinkRefusalKind::failed: return "failed";
        case LinkRefusalKind::held: return "held";
        case LinkRefusalKind::scrapped: return "scrapped";
        case LinkRefusalKind::in_other_device: return "in_other_device";
        case LinkRefusalKind::already_linked: return "already_linked";
    }
    return "?";
}

// ================================================================ DeviceLookup

CellState DeviceLookup::state() const {
    bool held = own_state == CellState::held, released = own_state == CellState::released;
    if (own_state == CellState::scrapped) return CellState::scrapped;
    for (const auto& c : cells) {
        if (c.state == CellState::scrapped) return CellState::scrapped;
        held = held || c.state == CellState::held;
        released = released || c.state == CellState::released;
    }
    return held ? CellState::held : released ? CellState::released : CellState::clear;
}

std::string_view DeviceLookup::status() const {
    if (error) return "invalid";
    if (!known) return "unknown";
    if (cells.empty() && own_state != CellState::scrapped && own_state != CellState::held) return "empty";
    return to_string(state());
}

std::string DeviceLookup::why_not() const {
    if (may_ship) return {};
    if (error) return error->message;
    if (!known) return "not a device of this store";
    if (own_state == CellState::held || own_state == CellState::scrapped)
        return fmt::format("device {}: {}", to_string(own_state), describe_because(own_because));
    if (cells.empty()) return "no cell inside";
    for (const auto& c : cells) {
        if (c.may_ship) continue;
        if (!c.known) return fmt::format("cell {} unknown", c.serial);
        if (c.state == CellState::held || c.state == CellState::scrapped)
            return fmt::format("cell {} {}: {}", c.serial, to_string(c.state), describe_because(c.because));
        return fmt::format("cell {}: last test {}", c.serial, c.verdict ? to_string(*c.verdict) : "none");
    }
    return "may not ship";
}

DeviceCheck DeviceCheck::of(const DeviceLookup& d) {
    DeviceCheck c;
    c.may_ship = d.may_ship;
    if (d.error) c.status = Status::invalid;
    else if (!d.known) c.status = Status::unknown;
    else if (d.status() == "empty") c.status = Status::empty;
    else switch (d.state()) {
            case CellState::clear: c.status = Status::clear; break;
            case CellState::held: c.status = Status::held; break;
            case CellState::released: c.status = Status::released; break;
            case CellState::scrapped: c.status = Status::scrapped; break;
        }
    return c;
}

std::string_view DeviceCheck::status_text() const {
    switch (status) {
        case Status::invalid: return "invalid";
        case Status::unknown: return "unknown";
        case Status::empty: return "empty";
        case Status::clear: return to_string(CellState::clear);
        case Status::held: return to_string(CellState::held);
        case Status::released: return to_string(CellState::released);
        case Status::scrapped: return to_string(CellState::scrapped);
    }
    return "?";
}

// ================================================================ Genealogy

Genealogy::Genealogy(Store& store, const SerialScheme& cell_scheme, const SerialScheme& device_scheme)
    : store_(store),
      cell_scheme_(cell_scheme),
      device_scheme_(device_scheme),
      cells_(store, cell_scheme) {}

LinkResult Genealogy::link(const LinkRequest& req) {
    LinkResult res;
    const NormalizeResult dn = device_scheme_.normalize(req.device);
    if (!dn) {
        res.refused.push_back(refusal(req.device, "", LinkRefusalKind::device_invalid,
                                      fmt::format("device serial: {}", dn.error->message)));
        return res;
    }
    res.device = dn.serial;
    const std::string model = trimmed(req.model);
    if (model.empty()) {
        res.refused.push_back(refusal(req.device, res.device, LinkRefusalKind::device_model, "a model is required"));
        return res;
    }
    if (req.cells.empty()) {
        res.refused.push_back(refusal(req.device, res.device, LinkRefusalKind::no_cells, "no cells to link"));
        return res;
    }
    if (trimmed(req.station_id).empty()) throw UsageError("link: a station id is required");

    store_.write_transaction([&] {
        // Decided under the write lock: the reads below see every commit
        // made before it, and none can come between them and the write.
        res.refused.clear();
        res.cells.clear();
        const std::optional<DeviceRecord> existing = store_.device(res.device);
        if (existing && existing->device.model != model)
            res.refused.push_back(refusal(req.device, res.device, LinkRefusalKind::device_model,
                                          fmt::format("device {} is a {}, not a {}", res.device,
                                                      existing->device.model, model)));
        cells_.refresh();
        std::vector<QuarantineEvent> own_because;
        if (own_state(res.device, &own_because) == CellState::scrapped)
            res.refused.push_back(refusal(req.device, res.device, LinkRefusalKind::device_scrapped,
                                          fmt::format("device {} is scrapped: {}", res.device,
                                                      describe_because(own_because))));
        std::unordered_set<std::string> seen;
        for (const std::string& input : req.cells) {
            const LookupResult c = cells_.lookup(input);
            if (c.error) {
                res.refused.push_back(refusal(input, "", LinkRefusalKind::invalid,
                                              fmt::format("cell '{}': {}", input, c.error->message)));
                continue;
            }
            const std::string& s = c.serial;
            auto no = [&](LinkRefusalKind kind, std::string why) {
                res.refused.push_back(refusal(input, s, kind, fmt::format("cell {}: {}", s, why)));
            };
            if (!seen.insert(s).second) {
                no(LinkRefusalKind::repeated, "named twice in this request");
                continue;
            }
            if (!c.known) {
                no(LinkRefusalKind::unknown, "unknown: never tested at this store");
                continue;
            }
            if (c.state == CellState::scrapped) {
                no(LinkRefusalKind::scrapped, "scrapped: " + describe_because(c.because));
                continue;
            }
            if (c.state == CellState::held) {
                no(LinkRefusalKind::held, "held by " + describe_because(c.because));
                continue;
            }
            if (!c.verdict) {
                no(LinkRefusalKind::untested, "untested: no completed test");
                continue;
            }
            if (*c.verdict != Verdict::pass) {
                no(LinkRefusalKind::failed, fmt::format("failed: its latest test is {}", to_string(*c.verdict)));
                continue;
            }
            if (const auto in = store_.device_of_cell(s)) {
                if (*in == res.device) no(LinkRefusalKind::already_linked, "already inside this device");
                else no(LinkRefusalKind::in_other_device, fmt::format("already inside device {}", *in));
                continue;
            }
            res.cells.push_back(s);
        }
        if (!res.refused.empty()) {
            res.cells.clear();
            return false;  // nothing written for this device
        }
        DeviceInfo info;
        info.serial = res.device;
        info.model = model;
        info.assembled_unix_s = req.time_unix_s;
        info.station_id = trimmed(req.station_id);
        std::vector<DeviceLinkEvent> events;
        for (const auto& s : res.cells) {
            DeviceLinkEvent e;
            e.time_unix_s = req.time_unix_s;
            e.action = LinkAction::link;
            e.device_serial = res.device;
            e.cell_serial = s;
            e.station_id = info.station_id;
            e.actor = req.actor;
            events.push_back(std::move(e));
        }
        store_.append_device_links(info, events);
        res.linked = true;
        return true;
    });
    return res;
}

std::int64_t Genealogy::unlink(std::string_view device, std::string_view cell, std::string_view reason,
                               const Actor& actor, std::string_view station_id, double time_unix_s) {
    if (trimmed(reason).empty()) throw UsageError("unlink: a reason is required");
    if (trimmed(actor.name).empty()) throw UsageError("unlink: an actor is required");
    if (actor.role != kQualityRole && actor.role != kAdminRole)  // each role includes the ones below it
        throw QuarantineRefused(fmt::format("unlink: role '{}' may not unlink cells; it needs the role '{}' (or admin)",
                                            actor.role, kQualityRole));
    const NormalizeResult dn = device_scheme_.normalize(device);
    if (!dn) throw UsageError(fmt::format("--device '{}': {}", device, dn.error->message));
    const NormalizeResult cn = cell_scheme_.normalize(cell);
    if (!cn) throw UsageError(fmt::format("--cell '{}': {}", cell, cn.error->message));
    std::int64_t id = 0;
    store_.write_transaction([&] {
        const auto rec = store_.device(dn.serial);
        if (!rec) throw QuarantineRefused(fmt::format("unlink: no device {} in this store", dn.serial));
        if (std::find(rec->cells.begin(), rec->cells.end(), cn.serial) == rec->cells.end())
            throw QuarantineRefused(fmt::format("unlink: cell {} is not inside device {}", cn.serial, dn.serial));
        DeviceLinkEvent e;
        e.time_unix_s = time_unix_s;
        e.action = LinkAction::unlink;
        e.device_serial = dn.serial;
        e.cell_serial = cn.serial;
        e.station_id = std::string(station_id);
        e.reason = trimmed(reason);
        e.actor = trimmed(actor.name);
        e.role = actor.role;
        id = store_.append_device_links(rec->device, std::span(&e, 1)).front();
        return true;
    });
    return id;
}

bool Genealogy::judge_read(DeviceLookup& d, const DeviceCells& read) const {
    d.known = true;
    d.model.assign(read.device.model);
    d.assembled_unix_s = read.device.assembled_unix_s;
    d.station_id.assign(read.device.station_id);
    d.own_state = own_state(d.serial, &d.own_because);
    d.cells.resize(read.cells.size());
    bool complete = true;
    // As LookupSession::lookup_many judges the cell serial: decoded by the
    // cell scheme, then the stored fields and the cached events.
    thread_local std::string serial, lot, date;
    for (std::size_t j = 0; j < read.cells.size(); ++j) {
        const DeviceCell& c = read.cells[j];
        LookupResult& r = d.cells[j];
        // `d` may be a reused buffer: every field set, strings keep their capacity.
        r.input.assign(c.serial);
        r.serial.clear();
        r.error.reset();
        r.known = false;
        r.lot.clear();
        r.production_date.clear();
        r.state = CellState::clear;
        r.verdict.reset();
        r.because.clear();
        r.may_ship = false;
        // Else the full lookup: diagnostics, the serial's own lot and date.
        if (!judge_stored_cell(c, r, serial, lot, date)) complete = false;
    }
    bool ok = !d.cells.empty() && (d.own_state == CellState::clear || d.own_state == CellState::released);
    for (const auto& cell : d.cells) ok = ok && cell.may_ship;
    d.may_ship = ok;
    return complete;
}

void Genealogy::normalize_batch(std::span<const std::string> inputs, std::vector<std::string>& serials,
                                std::vector<std::uint32_t>& place,
                                const std::function<void(std::size_t)>& invalid) const {
    if (inputs.size() > std::numeric_limits<std::uint32_t>::max())
        throw UsageError(fmt::format("lookup: {} serials in one batch, at most {}", inputs.size(),
                                     std::numeric_limits<std::uint32_t>::max()));
    serials.reserve(inputs.size());
    place.reserve(inputs.size());
    std::string norm;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (device_scheme_.normalize_into(inputs[i], norm)) {
            serials.push_back(norm);
            place.push_back(static_cast<std::uint32_t>(i));
        } else {
            invalid(i);
        }
    }
}

void Genealogy::for_each_device(std::span<const std::string> inputs,
                                const std::function<void(std::size_t, const DeviceLookup&)>& visit) {
    // The valid serials (normalized) and their places in `inputs`; the
    // invalid ones are answered now.
    std::vector<std::string> serials;
    std::vector<std::uint32_t> place;
    normalize_batch(inputs, serials, place, [&](std::size_t i) {
        DeviceLookup bad;
        bad.input = inputs[i];
        bad.error = std::make_shared<const SerialError>(std::move(*device_scheme_.normalize(inputs[i]).error));
        visit(i, bad);
    });
    read_devices(inputs, serials, place, visit);
}

void Genealogy::read_devices(std::span<const std::string> inputs, std::span<const std::string> serials,
                             std::span<const std::uint32_t> place,
                             const std::function<void(std::size_t, const DeviceLookup&)>& visit) {
    if (serials.empty()) return;
    cells_.refresh();  // the cells' events and the devices' own
    // One reused lookup per slice of the store's read (a slice is one
    // thread's, one device after the other).
    std::vector<DeviceLookup> buffer(std::max<std::size_t>(1, store_.bulk_readers(serials.size())));
    std::vector<char> known(serials.size(), 0);  // by k: distinct k, no race
    // Devices with a cell the fast judgement leaves to the full lookup (rare:
    // a cell linked without the interlock, or a changed cell scheme).
    std::mutex incomplete_mutex;
    std::vector<std::pair<std::size_t, DeviceLookup>> incomplete;
    store_.for_each_device_cells(serials, [&](std::size_t slice, std::size_t k, const DeviceCells& read) {
        known[k] = 1;
        DeviceLookup& d = buffer.at(slice);
        d.input.assign(inputs[place[k]]);
        d.serial.assign(serials[k]);
        if (judge_read(d, read)) {
            visit(place[k], d);
            return;
        }
        const std::lock_guard lock(incomplete_mutex);
        incomplete.emplace_back(k, d);
    });
    // Unknown devices: nothing but the input and the serial.
    {
        DeviceLookup unknown;
        for (std::size_t k = 0; k < serials.size(); ++k) {
            if (known[k]) continue;
            unknown.input = inputs[place[k]];
            unknown.serial = serials[k];
            visit(place[k], unknown);
        }
    }
    if (incomplete.empty()) return;
    std::sort(incomplete.begin(), incomplete.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::string> rest;
    for (const auto& [k, d] : incomplete)
        for (const auto& c : d.cells)
            if (c.serial.empty()) rest.push_back(c.input);
    const std::vector<LookupResult> looked = cells_.lookup_many(rest);
    std::size_t n = 0;
    for (auto& [k, d] : incomplete) {
        for (auto& c : d.cells)
            if (c.serial.empty()) c = looked[n++];
        bool ok = !d.cells.empty() && (d.own_state == CellState::clear || d.own_state == CellState::released);
        for (const auto& cell : d.cells) ok = ok && cell.may_ship;
        d.may_ship = ok;
        visit(place[k], d);
    }
}

DeviceLookup Genealogy::lookup_device(std::string_view input) {
    const std::string in(input);
    DeviceLookup out;
    for_each_device(std::span(&in, 1), [&](std::size_t, const DeviceLookup& d) { out = d; });
    return out;
}

std::vector<DeviceLookup> Genealogy::lookup_devices(std::span<const std::string> inputs) {
    std::vector<DeviceLookup> out(inputs.size());
    for_each_device(inputs, [&](std::size_t i, const DeviceLookup& d) { out[i] = d; });
    return out;
}

bool Genealogy::judge_stored_cell(const DeviceCell& c, LookupResult& r, std::string& decoded, std::string& lot,
                                  std::string& date) const {
    if (!c.known || !cell_scheme_.decode_key(c.serial, decoded, lot, date) || decoded != c.serial) return false;
    r.serial.assign(c.serial);
    r.known = true;
    r.lot.assign(c.lot);
    r.production_date.assign(c.production_date);
    r.verdict = c.verdict;
    cells_.judge_stored(r);
    return true;
}

bool Genealogy::check_read(const std::string& serial, const DeviceCells& read, DeviceCheck& out) const {
    // As judge_read() and DeviceCheck::of(), without a DeviceLookup: one
    // reused scratch cell per thread, no strings kept.
    thread_local LookupResult r;
    thread_local std::string decoded, lot, date;
    const CellState own = own_state(serial, nullptr);
    bool held = own == CellState::held, released = own == CellState::released, scrapped = own == CellState::scrapped;
    bool ok = !read.cells.empty() && (own == CellState::clear || own == CellState::released);
    for (const DeviceCell& c : read.cells) {
        if (!judge_stored_cell(c, r, decoded, lot, date)) return false;  // the full lookup decides
        scrapped = scrapped || r.state == CellState::scrapped;
        held = held || r.state == CellState::held;
        released = released || r.state == CellState::released;
        ok = ok && r.may_ship;
    }
    out.may_ship = ok;
    using S = DeviceCheck::Status;
    if (read.cells.empty() && own != CellState::scrapped && own != CellState::held) out.status = S::empty;
    else out.status = scrapped ? S::scrapped : held ? S::held : released ? S::released : S::clear;
    return true;
}

std::vector<DeviceCheck> Genealogy::check_devices(std::span<const std::string> inputs) {
    std::vector<std::string> serials;
    std::vector<std::uint32_t> place;
    normalize_batch(inputs, serials, place, [](std::size_t) {});
    std::vector<DeviceCheck> out(inputs.size());  // invalid, may not ship
    if (serials.empty()) return out;
    cells_.refresh();  // the cells' events and the devices' own
    std::vector<char> known(serials.size(), 0);  // by k: distinct k, no race
    std::mutex incomplete_mutex;
    std::vector<std::uint32_t> incomplete;  // k: a cell the fast judgement leaves to the full lookup
    store_.for_each_device_cells(serials, [&](std::size_t, std::size_t k, const DeviceCells& read) {
        known[k] = 1;
        if (check_read(serials[k], read, out[place[k]])) return;
        const std::lock_guard lock(incomplete_mutex);
        incomplete.push_back(static_cast<std::uint32_t>(k));
    }, /*device_fields=*/false);  // the check needs the cells only
    for (std::size_t k = 0; k < serials.size(); ++k)
        if (!known[k]) out[place[k]] = DeviceCheck{DeviceCheck::Status::unknown, false};
    if (incomplete.empty()) return out;
    std::vector<std::string> rest;
    rest.reserve(incomplete.size());
    for (const std::uint32_t k : incomplete) rest.push_back(serials[k]);
    for_each_device(rest, [&](std::size_t j, const DeviceLookup& d) { out[place[incomplete[j]]] = DeviceCheck::of(d); });
    return out;
}

std::vector<UnitLookup> Genealogy::lookup_units(std::span<const std::string> inputs) {
    std::vector<UnitLookup> out(inputs.size());
    for_each_unit(inputs, [&](std::size_t i, const DeviceLookup* d, const LookupResult* c) {
        UnitLookup& u = out[i];  // distinct i: no race
        if (d) {
            u.is_device = true;
            u.device = *d;
        } else {
            u.cell = *c;
        }
    });
    return out;
}

void Genealogy::for_each_unit(std::span<const std::string> inputs,
                              const std::function<void(std::size_t, const DeviceLookup*, const LookupResult*)>& visit) {
    auto cells = [&](std::span<const std::string> asked, auto&& place_of) {
        if (asked.size() == 1) {
            const LookupResult r = cells_.lookup(asked[0]);
            visit(place_of(0), nullptr, &r);
        } else if (!asked.empty()) {
            const std::vector<LookupResult> looked = cells_.lookup_many(asked);
            for (std::size_t k = 0; k < looked.size(); ++k) visit(place_of(k), nullptr, &looked[k]);
        }
    };
    // A store without devices (a cell plant, a station): every input is a
    // cell, and the bulk cell path keeps its speed (no device probe per serial).
    if (!store_.any_devices()) {
        cells(inputs, [](std::size_t k) { return k; });
        return;
    }
    // Which inputs are devices the store knows (only serials the device
    // scheme takes are asked: no diagnostics are built for the rest). Known
    // devices are answered as devices (their input as given), the rest as cells.
    std::vector<std::string> serials;
    std::vector<std::uint32_t> place;
    normalize_batch(inputs, serials, place, [](std::size_t) {});
    std::vector<char> is_device(inputs.size(), 0);  // distinct i: no race
    read_devices(inputs, serials, place, [&](std::size_t i, const DeviceLookup& d) {
        if (!d.known) return;
        is_device[i] = 1;
        visit(i, &d, nullptr);
    });
    std::vector<std::string> rest;
    std::vector<std::size_t> rest_of;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (is_device[i]) continue;
        rest.push_back(inputs[i]);
        rest_of.push_back(i);
    }
    cells(rest, [&](std::size_t k) { return rest_of[k]; });
}

// ================================================================ shipping

UnitShipment ship_units(Store& store, Genealogy& genealogy, std::span<const std::string> serials,
                        std::string_view gate_id, const Actor& actor, std::string_view reference) {
    if (trimmed(gate_id).empty()) throw UsageError("ship: a gate id is required");
    if (trimmed(actor.name).empty()) throw UsageError("ship: an actor is required");
    if (serials.empty()) throw UsageError("ship: no serials");
    UnitShipment res;
    store.write_transaction([&] {
        res = UnitShipment{};
        std::vector<UnitLookup> looked = genealogy.lookup_units(serials);
        std::unordered_set<std::string> seen;
        nlohmann::json list = nlohmann::json::array();
        nlohmann::json devices = nlohmann::json::array();
        for (auto& u : looked) {
            const std::string key = u.serial().empty() ? u.input() : u.serial();
            if (!seen.insert(key).second) {
                ++res.repeats;
                continue;
            }
            ++res.units;
            if (u.is_device) ++res.devices;
            if (!u.may_ship()) {
                res.refused.push_back(std::move(u));
                continue;
            }
            list.push_back(u.serial());
            if (u.is_device) {
                nlohmann::json cells = nlohmann::json::array();
                for (const auto& c : u.device.cells) cells.push_back(c.serial);
                devices.push_back({{"serial", u.serial()}, {"model", u.device.model}, {"cells", cells}});
            }
        }
        if (!res.refused.empty()) return false;
        StationEvent ev;
        ev.station_id = std::string(gate_id);
        ev.kind = "shipment";
        ev.message = fmt::format("shipment {}: {} units", reference, list.size());
        nlohmann::json detail{{"serials", list}, {"actor", actor.name}, {"role", actor.role},
                              {"reference", reference}};
        if (!devices.empty()) detail["devices"] = devices;
        ev.detail_json = detail.dump();
        res.event_id = store.append_station_event(ev);
        res.shipped = true;
        return true;
    });
    return res;
}

// ================================================================ recall

DeviceRecall recall_devices(Store& store, const CellFilter& filter, const std::optional<std::string>& model) {
    DeviceRecall out;
    std::unordered_map<std::string, std::size_t> index;  // device serial → out.devices
    store.for_each_linked_cell(filter, [&](const CellInfo& c, const DeviceInfo& d) {
        if (model && d.model != *model) return;
        auto [it, fresh] = index.emplace(d.serial, out.devices.size());
        if (fresh) out.devices.push_back(RecallDevice{d, {}, std::nullopt});
        out.devices[it->second].affected_cells.push_back(c);
        ++out.affected_cells_in_devices;
    });
    std::sort(out.devices.begin(), out.devices.end(),
              [](const RecallDevice& a, const RecallDevice& b) { return a.device.serial < b.device.serial; });
    const auto shipped = shipped_serials(store);
    for (auto& d : out.devices) {
        if (const auto it = shipped.find(d.device.serial); it != shipped.end()) d.shipped_unix_s = it->second;
        std::sort(d.affected_cells.begin(), d.affected_cells.end(),
                  [](const CellInfo& a, const CellInfo& b) { return a.serial < b.serial; });
        ModelCount& m = out.models[d.device.model];
        ++m.devices;
        if (d.shipped_unix_s) ++m.shipped;
        else ++m.in_stock;
        m.affected_cells += d.affected_cells.size();
    }
    return out;
}

}  // namespace eol::station
