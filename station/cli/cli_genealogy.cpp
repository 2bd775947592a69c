// eolstation genealogy link | import | unlink | show — devices built from
// cells (station/genealogy): the assembly interlock, rework, and what is
// inside a device (or which device a cell is inside). Also how devices are
// printed for lookup and ship (cli_lookup.hpp).
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_auth.hpp"
#include "cli_lookup.hpp"
#include "commands.hpp"
#include "eol/station/csv.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/output.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"
#include "eol/station/text.hpp"

namespace eol::cli {

using namespace eol::station;
using nlohmann::json;

// ---------------------------------------------------------------- printing

json device_json(const DeviceLookup& d) {
    json j{{"kind", "device"}, {"input", d.input}, {"status", d.status()}, {"may_ship", d.may_ship}};
    if (d.error) {
        j["error"] = {{"message", d.error->message}, {"position", d.error->position}};
        return j;
    }
    j["serial"] = d.serial;
    j["known"] = d.known;
    if (!d.known) return j;
    j["model"] = d.model;
    j["assembled"] = utc_text(d.assembled_unix_s);
    j["station"] = d.station_id;
    j["state"] = to_string(d.state());
    j["own_state"] = to_string(d.own_state);
    json because = json::array();
    for (const auto& e : d.own_because) because.push_back(event_json(e));
    j["because"] = because;
    if (!d.may_ship) j["why_not"] = d.why_not();
    json cells = json::array();
    for (const auto& c : d.cells) cells.push_back(lookup_json(c, "device " + d.serial));
    j["cells"] = cells;
    return j;
}

std::string device_line(const DeviceLookup& d) {
    if (d.error) return fmt::format("{}: error: {}", printable(d.input), d.error->message);
    if (!d.known) return fmt::format("{}  unknown device  may NOT ship", d.serial);
    std::string s = fmt::format("{}  device {} ({} cell{})  {}", d.serial, d.model, d.cells.size(),
                                d.cells.size() == 1 ? "" : "s", d.status());
    if (!d.may_ship) s += "  because " + d.why_not();
    s += d.may_ship ? "  may ship" : "  may NOT ship";
    return s;
}

json unit_json(const UnitLookup& u, const std::string& where) {
    return u.is_device ? device_json(u.device) : lookup_json(u.cell, where);
}

std::string unit_line(const UnitLookup& u, const std::string& where) {
    return u.is_device ? device_line(u.device) : lookup_line(u.cell, where);
}

namespace {

Store open_db(const std::string& db, bool write) {
    OpenOptions o;
    o.read_only = !write;
    return Store::open(db, o);
}

SerialScheme load_or(const std::string& file, const SerialScheme& fallback) {
    return file.empty() ? fallback : SerialScheme::load(file);
}

// "C1,C2, C3" → the cells (empty items are an error naming their place).
std::vector<std::string> split_cells(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0, item = 1;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        std::string c = text.substr(start, end - start);
        const auto b = c.find_first_not_of(" \t");
        if (b == std::string::npos)
            throw UsageError(fmt::format("--cells: item {} is empty (give C1,C2,…)", item));
        c = c.substr(b, c.find_last_not_of(" \t") - b + 1);
        out.push_back(std::move(c));
        start = end + 1;
        ++item;
    }
    return out;
}

json refusal_json(const LinkRefusal& r) {
    return {{"input", r.input}, {"serial", r.serial}, {"kind", to_string(r.kind)}, {"reason", r.reason}};
}

json link_json(const LinkResult& r) {
    json refused = json::array();
    for (const auto& x : r.refused) refused.push_back(refusal_json(x));
    return {{"device", r.device}, {"linked", r.linked}, {"cells", r.cells}, {"refused", refused}};
}

struct Schemes {
    std::string cell;
    std::string device;
};

void add_scheme_options(CLI::App* c, Schemes& s) {
    c->add_option("--scheme", s.cell, "Cell serial scheme TOML file (default: the built-in scheme)");
    c->add_option("--device-scheme", s.device,
                  "Device serial scheme TOML file (default: the built-in one, as config/device-serial-scheme.toml)");
}

// ---------------------------------------------------------------- link

struct LinkOptions {
    std::string db;
    std::string device;
    std::string model;
    std::string cells;
    std::string station = "ASSY-01";
    std::string actor;
    Schemes schemes;
    bool json = false;
};

void run_link(const LinkOptions& o) {
    const SerialScheme cs = load_or(o.schemes.cell, SerialScheme::default_scheme());
    const SerialScheme ds = load_or(o.schemes.device, device_serial_scheme());
    LinkRequest req;
    req.device = o.device;
    req.model = o.model;
    req.cells = split_cells(o.cells);
    req.station_id = o.station;
    req.actor = o.actor;
    Store store = open_db(o.db, true);
    Genealogy g(store, cs, ds);
    const LinkResult r = g.link(req);
    std::string out;
    if (o.json) {
        out = link_json(r).dump(2) + "\n";
    } else if (r.linked) {
        out = fmt::format("linked device {} ({}): {} cell{}: ", r.device, o.model, r.cells.size(),
                          r.cells.size() == 1 ? "" : "s");
        for (std::size_t i = 0; i < r.cells.size(); ++i) out += (i ? ", " : "") + r.cells[i];
        out += "\n";
    } else {
        for (const auto& x : r.refused) out += fmt::format("refused: {}\n", x.reason);
        out += fmt::format("NOT linked: device {}: {} refusal{}; nothing written\n",
                           r.device.empty() ? printable(o.device) : r.device, r.refused.size(),
                           r.refused.size() == 1 ? "" : "s");
    }
    write_stdout(out);
    if (!r.linked) set_exit(ExitCode::domain_no);
}

// ---------------------------------------------------------------- import

struct ImportOptions {
    std::string db;
    std::string csv;
    std::string station = "ASSY-01";
    std::string actor;
    std::string report;
    Schemes schemes;
    bool json = false;
};

double assembled_at(const std::string& text, const std::string& where) {
    if (text.empty()) return 0.0;
    // "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" (UTC) or unix seconds.
    if (const auto d = Date::parse_iso(text.substr(0, 10)); d && (text.size() == 10 || text.size() == 20)) {
        int hh = 0, mm = 0, ss = 0;
        if (text.size() == 20) {
            if (text[10] != 'T' || text[13] != ':' || text[16] != ':' || text[19] != 'Z' ||
                std::sscanf(text.c_str() + 11, "%2d:%2d:%2d", &hh, &mm, &ss) != 3 || hh > 23 || mm > 59 || ss > 60)
                throw UsageError(fmt::format("{}: column 'assembled_at': '{}' is not YYYY-MM-DDTHH:MM:SSZ", where, text));
        }
        std::tm tm{};
        tm.tm_year = d->year - 1900;
        tm.tm_mon = d->month - 1;
        tm.tm_mday = d->day;
        tm.tm_hour = hh;
        tm.tm_min = mm;
        tm.tm_sec = ss;
        return static_cast<double>(timegm(&tm));
    }
    try {
        std::size_t used = 0;
        const double v = std::stod(text, &used);
        if (used == text.size() && std::isfinite(v) && v > 0) return v;
    } catch (const std::exception&) {
    }
    throw UsageError(fmt::format("{}: column 'assembled_at': '{}' is not a date (YYYY-MM-DD, "
                                 "YYYY-MM-DDTHH:MM:SSZ or unix seconds)",
                                 where, printable(text)));
}

void run_import(const ImportOptions& o) {
    const SerialScheme cs = load_or(o.schemes.cell, SerialScheme::default_scheme());
    const SerialScheme ds = load_or(o.schemes.device, device_serial_scheme());
    const CsvTable t = CsvTable::read_file(o.csv);
    const std::size_t c_dev = t.index("device_serial"), c_model = t.index("model"), c_cell = t.index("cell_serial");
    const bool has_time = t.has("assembled_at");
    const std::size_t c_time = has_time ? t.index("assembled_at") : 0;
    // Rows grouped by device (as written, in order of first appearance); a
    // device's rows must agree on model and time.
    struct Group {
        LinkRequest req;
        std::string where;  // file:line of its first row
        std::vector<std::size_t> rows;
    };
    std::vector<Group> groups;
    std::map<std::string, std::size_t> by_device;
    for (std::size_t i = 0; i < t.rows(); ++i) {
        const std::string& dev = t.cell(i, c_dev);
        const std::string where = t.where(i);
        if (dev.empty()) throw UsageError(fmt::format("{}: column 'device_serial' is empty", where));
        if (t.cell(i, c_cell).empty()) throw UsageError(fmt::format("{}: column 'cell_serial' is empty", where));
        const double at = has_time ? assembled_at(t.cell(i, c_time), where) : 0.0;
        std::string key = dev;
        if (NormalizeResult n = ds.normalize(dev)) key = n.serial;
        auto [it, fresh] = by_device.emplace(key, groups.size());
        if (fresh) {
            Group g;
            g.req.device = dev;
            g.req.model = t.cell(i, c_model);
            g.req.station_id = o.station;
            g.req.actor = o.actor;
            g.req.time_unix_s = at;
            g.where = where;
            groups.push_back(std::move(g));
        }
        Group& g = groups[it->second];
        if (t.cell(i, c_model) != g.req.model)
            throw UsageError(fmt::format("{}: device {} is model '{}' here but '{}' at {}", where, printable(dev),
                                         printable(t.cell(i, c_model)), printable(g.req.model), g.where));
        if (at != g.req.time_unix_s)
            throw UsageError(fmt::format("{}: device {}: assembled_at differs from {}", where, printable(dev), g.where));
        g.req.cells.push_back(t.cell(i, c_cell));
        g.rows.push_back(i);
    }
    Store store = open_db(o.db, true);
    Genealogy gen(store, cs, ds);
    std::size_t linked = 0, cells = 0, refused = 0;
    json report = json::array();
    std::string text;
    for (const Group& g : groups) {
        const LinkResult r = gen.link(g.req);  // one transaction per device
        if (r.linked) {
            ++linked;
            cells += r.cells.size();
        } else {
            ++refused;
            for (const auto& x : r.refused) text += fmt::format("{}: device {}: refused: {}\n", g.where,
                                                                r.device.empty() ? printable(g.req.device) : r.device,
                                                                x.reason);
        }
        if (o.json || !o.report.empty()) {
            json j = link_json(r);
            j["source"] = g.where;
            report.push_back(std::move(j));
        }
    }
    const std::string summary = fmt::format("{}: {} device{} linked ({} cells), {} refused (nothing written for them)\n",
                                            o.csv, linked, linked == 1 ? "" : "s", cells, refused);
    if (!o.report.empty())
        write_file_atomically(o.report, json{{"file", o.csv}, {"linked", linked}, {"refused", refused}, {"devices", report}}
                                            .dump(1) + "\n");
    if (o.json)
        write_stdout(json{{"file", o.csv}, {"linked", linked}, {"cells", cells}, {"refused", refused}, {"devices", report}}
                         .dump(1) + "\n");
    else
        write_stdout(text + summary);
    if (refused > 0) set_exit(ExitCode::domain_no);
}

// ---------------------------------------------------------------- unlink

struct UnlinkOptions {
    std::string db;
    std::string device;
    std::string cell;
    std::string reason;
    std::string user;   // --user: log in with a password prompt (else EOL_TOKEN)
    std::string actor;  // --actor / --role: refused, they no longer grant anything
    std::string role;
    std::string station = "REWORK-01";
    Schemes schemes;
};

void run_unlink(const UnlinkOptions& o) {
    const SerialScheme cs = load_or(o.schemes.cell, SerialScheme::default_scheme());
    const SerialScheme ds = load_or(o.schemes.device, device_serial_scheme());
    if (!o.role.empty())
        throw UsageError("genealogy unlink: --role no longer grants anything: the role is the logged-in user's "
                         "(--user NAME or EOL_TOKEN; docs/users.md)");
    if (!o.actor.empty())
        throw UsageError("genealogy unlink: --actor: who unlinks is the logged-in user now (--user NAME or EOL_TOKEN)");
    Store store = open_db(o.db, true);
    Genealogy g(store, cs, ds);
    // Rework is a quality decision: the logged-in user's role (quality or admin) is checked by the genealogy.
    const AuthUser who = authenticate(store, o.user, "genealogy unlink");
    try {
        const std::int64_t id =
            g.unlink(o.device, o.cell, o.reason, Actor{who.name, std::string(to_string(who.role))}, o.station);
        write_stdout(fmt::format("unlinked cell {} from device {} (event #{})\n", cs.normalize(o.cell).serial,
                                 ds.normalize(o.device).serial, id));
    } catch (const QuarantineRefused& e) {
        fmt::print(stderr, "eolstation: refused: {}\n", e.what());
        set_exit(ExitCode::domain_no);
    }
}

// ---------------------------------------------------------------- show

struct ShowOptions {
    std::string db;
    std::string serial;
    Schemes schemes;
    bool json = false;
};

json link_event_json(const DeviceLinkEvent& e) {
    json j{{"id", e.id},           {"time", utc_text(e.time_unix_s)}, {"action", to_string(e.action)},
           {"device", e.device_serial}, {"cell", e.cell_serial},   {"station", e.station_id}};
    if (!e.reason.empty()) j["reason"] = e.reason;
    if (!e.actor.empty()) j["actor"] = e.actor;
    if (!e.role.empty()) j["role"] = e.role;
    return j;
}

std::string link_event_line(const DeviceLinkEvent& e) {
    std::string s = fmt::format("#{:<5} {}  {:<6} cell {} {} device {} at {}", e.id, utc_text(e.time_unix_s),
                                to_string(e.action), e.cell_serial, e.action == LinkAction::link ? "into" : "from",
                                e.device_serial, e.station_id);
    if (!e.actor.empty()) s += fmt::format(" by {}", e.actor);
    if (!e.role.empty()) s += fmt::format(" ({})", e.role);
    if (!e.reason.empty()) s += fmt::format(": {}", e.reason);
    return s;
}

void run_show(const ShowOptions& o) {
    const SerialScheme cs = load_or(o.schemes.cell, SerialScheme::default_scheme());
    const SerialScheme ds = load_or(o.schemes.device, device_serial_scheme());
    Store store = open_db(o.db, false);
    Genealogy g(store, cs, ds);
    const std::vector<UnitLookup> u = g.lookup_units(std::span(&o.serial, 1));
    const UnitLookup& x = u.front();
    std::string out;
    if (x.is_device) {
        const auto history = store.device_history(x.device.serial);
        if (o.json) {
            json j = device_json(x.device);
            json h = json::array();
            for (const auto& e : history) h.push_back(link_event_json(e));
            j["history"] = h;
            out = j.dump(2) + "\n";
        } else {
            out = device_line(x.device) + "\n";
            out += fmt::format("  assembled {} at {}\n", utc_text(x.device.assembled_unix_s), x.device.station_id);
            for (const auto& c : x.device.cells) out += "  " + lookup_line(c, "cell") + "\n";
            out += "  history:\n";
            for (const auto& e : history) out += "    " + link_event_line(e) + "\n";
        }
    } else {
        const LookupResult& c = x.cell;
        if (c.error) throw UsageError(fmt::format("{}: {}", printable(o.serial), c.error->message));
        const auto inside = store.device_of_cell(c.serial);
        const auto history = store.cell_link_history(c.serial);
        std::optional<DeviceRecord> dev;
        if (inside) dev = store.device(*inside);
        if (o.json) {
            json j = lookup_json(c, "argument");
            j["device"] = dev ? json{{"serial", dev->device.serial}, {"model", dev->device.model}} : json();
            json h = json::array();
            for (const auto& e : history) h.push_back(link_event_json(e));
            j["history"] = h;
            out = j.dump(2) + "\n";
        } else {
            out = lookup_line(c, "argument") + "\n";
            out += dev ? fmt::format("  inside device {} ({})\n", dev->device.serial, dev->device.model)
                       : std::string("  inside no device\n");
            if (!history.empty()) out += "  history:\n";
            for (const auto& e : history) out += "    " + link_event_line(e) + "\n";
        }
        if (!c.known && history.empty()) set_exit(ExitCode::domain_no);
    }
    if (x.is_device && !x.device.known) set_exit(ExitCode::domain_no);
    write_stdout(out);
}

}  // namespace

void add_genealogy_commands(CLI::App& app) {
    CLI::App* gen = app.add_subcommand(
        "genealogy",
        "Devices built from cells: link cells into a device through the assembly interlock (unknown, untested, "
        "failed, held, scrapped or already-used cells are refused and nothing is written for that device), import "
        "an assembly CSV, unlink for rework, show what is inside a device or which device holds a cell");
    gen->require_subcommand(1);

    auto lo = std::make_shared<LinkOptions>();
    CLI::App* link = gen->add_subcommand("link", "Link cells into a device (exit 0 linked, 1 refused with reasons)");
    link->add_option("--db", lo->db, "Results store (SQLite)")->required();
    link->add_option("--device", lo->device, "Device serial (device serial scheme)")->required();
    link->add_option("--model", lo->model, "Device model, e.g. A1112")->required();
    link->add_option("--cells", lo->cells, "Cell serials, comma-separated: C1,C2,…")->required();
    link->add_option("--station", lo->station, "Assembly station id")->capture_default_str();
    link->add_option("--actor", lo->actor, "Who assembles (optional)");
    add_scheme_options(link, lo->schemes);
    link->add_flag("--json", lo->json, "Print JSON");
    link->callback([lo] { run_link(*lo); });

    auto io = std::make_shared<ImportOptions>();
    CLI::App* imp = gen->add_subcommand(
        "import",
        "Link devices from a CSV (columns device_serial, model, cell_serial[, assembled_at]; one row per cell): "
        "one transaction per device; prints what was refused and why (exit 1 if any device was refused)");
    imp->add_option("--db", io->db, "Results store (SQLite)")->required();
    imp->add_option("--csv", io->csv, "The assembly CSV")->required();
    imp->add_option("--station", io->station, "Assembly station id")->capture_default_str();
    imp->add_option("--actor", io->actor, "Who assembled (optional)");
    imp->add_option("--report", io->report, "Also write the report as JSON to this file");
    add_scheme_options(imp, io->schemes);
    imp->add_flag("--json", io->json, "Print the report as JSON");
    imp->callback([io] { run_import(*io); });

    auto uo = std::make_shared<UnlinkOptions>();
    CLI::App* un = gen->add_subcommand(
        "unlink", "Take a cell out of a device for rework (a logged-in quality or admin user and a reason required; "
                  "the history stays)");
    un->add_option("--db", uo->db, "Results store (SQLite)")->required();
    un->add_option("--device", uo->device, "Device serial")->required();
    un->add_option("--cell", uo->cell, "Cell serial")->required();
    un->add_option("--reason", uo->reason, "Why (required)")->required();
    un->add_option("--user", uo->user,
                   "Log in as this user (password asked on the terminal, no echo); else the session token in EOL_TOKEN "
                   "(eolstation user login); role quality or admin");
    un->add_option("--actor", uo->actor, "No longer accepted: who unlinks is the logged-in user")->group("");
    un->add_option("--role", uo->role, "No longer accepted: the role is the logged-in user's")->group("");
    un->add_option("--station", uo->station, "Rework station id")->capture_default_str();
    add_scheme_options(un, uo->schemes);
    un->callback([uo] { run_unlink(*uo); });

    auto so = std::make_shared<ShowOptions>();
    CLI::App* show = gen->add_subcommand(
        "show", "A device's cells with their status and its link history, or a cell's device (exit 1 when unknown)");
    show->add_option("serial", so->serial, "Device or cell serial")->required();
    show->add_option("--db", so->db, "Results store (SQLite)")->required();
    add_scheme_options(show, so->schemes);
    show->add_flag("--json", so->json, "Print JSON");
    show->callback([so] { run_show(*so); });
}

}  // namespace eol::cli
