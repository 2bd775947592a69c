// eolstation quarantine list|show|hold|release|scrap, lookup, ship, recall
// export — and the sim-production command (cli_production.cpp) registered
// from here.
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_auth.hpp"
#include "cli_lookup.hpp"
#include "commands.hpp"
#include "eol/station/output.hpp"
#include "eol/station/text.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {

void add_production_commands(CLI::App& app);  // cli_production.cpp

namespace {

using namespace eol::station;
using nlohmann::json;

SerialScheme scheme_from(const std::string& file) {
    return file.empty() ? SerialScheme::default_scheme() : SerialScheme::load(file);
}

Store open_store(const std::string& db, bool write) {
    OpenOptions o;
    o.read_only = !write;
    return Store::open(db, o);
}

}  // namespace


json event_json(const QuarantineEvent& e) {
    json j{{"id", e.id},          {"time", utc_text(e.time_unix_s)}, {"time_unix_s", e.time_unix_s},
           {"action", to_string(e.action)}, {"scope", to_string(e.scope)}, {"target", e.target},
           {"reason", e.reason},  {"actor", e.actor},           {"role", e.role}};
    if (e.scope == QuarantineScope::window) {
        j["window_from"] = e.window_from;
        j["window_to"] = e.window_to;
    }
    return j;
}

std::string event_line(const QuarantineEvent& e) {
    return fmt::format("#{:<5} {}  {:<7} {:<6} {:<22} by {} ({}): {}", e.id, utc_text(e.time_unix_s), to_string(e.action),
                       to_string(e.scope), e.target, e.actor, e.role.empty() ? "-" : e.role, e.reason);
}

json lookup_json(const LookupResult& r, const std::string& where) {
    json j{{"kind", "cell"}, {"input", r.input}, {"status", r.status()}, {"may_ship", r.may_ship}};
    if (r.error) {
        j["source"] = where;
        j["error"] = {{"message", r.error->message}, {"position", r.error->position}};
        return j;
    }
    j["serial"] = r.serial;
    j["known"] = r.known;
    j["state"] = to_string(r.state);
    j["lot"] = r.lot;
    j["production_date"] = r.production_date;
    j["verdict"] = r.verdict ? json(to_string(*r.verdict)) : json();
    json because = json::array();
    for (const auto& e : r.because) because.push_back(event_json(e));
    j["because"] = because;
    return j;
}

std::string lookup_line(const LookupResult& r, const std::string& where) {
    if (r.error) return fmt::format("{}: {}: error: {}", where, printable(r.input), r.error->message);
    std::string s = fmt::format("{}  {}", r.serial, r.status());
    if (r.known && r.state != CellState::clear) s += fmt::format(" ({})", to_string(r.state));
    if (r.status() == "unknown" && r.state != CellState::clear) s += fmt::format(" (and {})", to_string(r.state));
    if (!r.because.empty()) {
        const auto& e = r.state == CellState::held ? r.because.back() : r.because.front();
        s += fmt::format("  since {} by {} {}: {}", utc_text(e.time_unix_s), to_string(e.scope), e.target, e.reason);
        if (r.because.size() > 1) s += fmt::format(" (+{} more)", r.because.size() - 1);
    }
    if (r.verdict && *r.verdict != Verdict::pass) s += fmt::format("  last test: {}", to_string(*r.verdict));
    s += r.may_ship ? "  may ship" : "  may NOT ship";
    return s;
}

namespace {

// Where each gathered serial came from, named when a message needs it:
// "argument N" or "FILE:LINE".
struct Sources {
    std::size_t arguments = 0;       // serials 0..arguments-1
    std::string file;                // "stdin" for "-"
    std::vector<std::size_t> lines;  // the line of each serial after the arguments
    std::string at(std::size_t i) const {
        return i < arguments ? fmt::format("argument {}", i + 1) : fmt::format("{}:{}", file, lines[i - arguments]);
    }
};

// Serials from the command line and/or a file (one per line; blank lines
// skipped; "-" is standard input), and where each came from.
void gather(const std::vector<std::string>& args, const std::string& file, std::vector<std::string>& serials,
            Sources& where) {
    serials = args;
    where.arguments = args.size();
    if (!file.empty()) {
        std::ifstream opened;
        if (file != "-") {
            opened.open(file, std::ios::binary);
            if (!opened) throw UsageError(fmt::format("{}: cannot open", file));
        }
        std::istream& in = file == "-" ? std::cin : opened;
        where.file = file == "-" ? "stdin" : file;
        std::string content;  // read in blocks (a million serials: 17 MB)
        std::array<char, 1 << 16> block;
        while (in.read(block.data(), block.size()) || in.gcount() > 0)
            content.append(block.data(), static_cast<std::size_t>(in.gcount()));
        if (in.bad()) throw UsageError(fmt::format("{}: read error", where.file));
        // BOM dropped; LF, CRLF or a lone CR end a line; blank and '#' lines skipped.
        std::vector<ListLine> lines = list_lines(content);
        serials.reserve(serials.size() + lines.size());
        where.lines.reserve(lines.size());
        for (auto& l : lines) {
            serials.push_back(std::move(l.text));
            where.lines.push_back(l.number);
        }
    }
    if (serials.empty()) throw UsageError("no serials given (arguments or --file)");
}

// ---------------------------------------------------------------- lookup

struct LookupOptions {
    std::vector<std::string> serials;
    std::string file;
    std::string db;
    std::string scheme;
    std::string device_scheme;
    bool json = false;
    bool quiet = false;
};

void run_lookup(const LookupOptions& o) {
    const SerialScheme scheme = scheme_from(o.scheme);
    const SerialScheme dscheme = o.device_scheme.empty() ? device_serial_scheme() : SerialScheme::load(o.device_scheme);
    std::vector<std::string> serials;
    Sources where;
    gather(o.serials, o.file, serials, where);
    Store store = open_store(o.db, false);
    // Devices the store knows are answered as devices (their cells through
    // the same ship gate), every other serial as a cell. Each answer is made
    // into its line where it is judged (devices on the store's reader
    // threads): a million answers are never copied.
    Genealogy genealogy(store, scheme, dscheme);
    std::vector<std::string> lines(serials.size());  // by input: distinct i, no race
    std::vector<char> may_ship(serials.size(), 0);
    genealogy.for_each_unit(serials, [&](std::size_t i, const DeviceLookup* d, const LookupResult* c) {
        const bool ok = d ? d->may_ship : c->may_ship;
        may_ship[i] = ok ? 1 : 0;
        if (o.json) lines[i] = (d ? device_json(*d) : lookup_json(*c, where.at(i))).dump();
        else if (!o.quiet || !ok) lines[i] = d ? device_line(*d) : lookup_line(*c, where.at(i));
    });
    std::size_t blocked = 0;
    for (const char ok : may_ship) blocked += ok ? 0u : 1u;
    if (o.json) {
        // One result per line, written as it is made: a bulk check of a
        // million serials would otherwise build and indent one huge tree.
        std::string out = json{{"checked", lines.size()}, {"may_not_ship", blocked}}.dump();
        out.pop_back();
        out += ",\"results\":[\n";
        for (std::size_t i = 0; i < lines.size(); ++i) {
            out += lines[i];
            out += i + 1 < lines.size() ? ",\n" : "\n";
        }
        out += "]}\n";
        write_stdout(out);
    } else {
        std::string out;
        for (std::size_t i = 0; i < lines.size(); ++i) {
            if (o.quiet && may_ship[i]) continue;
            out += lines[i];
            out += '\n';
        }
        if (lines.size() > 1 || o.quiet)
            out += fmt::format("{} checked, {} may ship, {} may not\n", lines.size(), lines.size() - blocked, blocked);
        write_stdout(out);
    }
    if (blocked > 0) set_exit(ExitCode::domain_no);
}

// ---------------------------------------------------------------- quarantine

struct DecideOptions {
    std::vector<std::string> serials;
    std::string lot;
    std::string window;
    std::string reason;
    std::string user;   // --user: log in with a password prompt (else EOL_TOKEN)
    std::string actor;  // --actor / --role: refused, they no longer grant anything
    std::string role;
    std::string db;
    std::string scheme;
    bool json = false;
};

std::vector<Scope> scopes_of(const DecideOptions& o) {
    const int given = (o.serials.empty() ? 0 : 1) + (o.lot.empty() ? 0 : 1) + (o.window.empty() ? 0 : 1);
    if (given != 1) throw UsageError("give exactly one scope: --serial (repeatable), --lot or --window");
    std::vector<Scope> out;
    for (const auto& s : o.serials) out.push_back(Scope::serial(s));
    if (!o.lot.empty()) out.push_back(Scope::lot(o.lot));
    if (!o.window.empty()) {
        const auto [from, to] = parse_window(o.window);
        out.push_back(Scope::window(from, to));
    }
    return out;
}

void run_decide(QuarantineAction action, const DecideOptions& o) {
    if (!o.role.empty())
        throw UsageError("--role no longer grants anything: the role is the logged-in user's (--user NAME or "
                         "EOL_TOKEN; docs/users.md)");
    if (!o.actor.empty())
        throw UsageError("--actor: the actor is the logged-in user now (--user NAME or EOL_TOKEN; docs/users.md)");
    const SerialScheme scheme = scheme_from(o.scheme);
    const std::vector<Scope> scopes = scopes_of(o);
    Store store = open_store(o.db, true);
    Quarantine q(store, scheme);
    // Who decides is who logged in; the audit trail records that user and role.
    const AuthUser who = authenticate(store, o.user, fmt::format("quarantine {}", to_string(action)));
    const Actor actor{who.name, std::string(to_string(who.role))};
    json arr = json::array();
    for (const Scope& raw : scopes) {
        try {
            std::int64_t id = 0;
            switch (action) {
                case QuarantineAction::hold: id = q.hold(raw, o.reason, actor); break;
                case QuarantineAction::release: id = q.release(raw, o.reason, actor); break;
                case QuarantineAction::scrap: id = q.scrap(raw, o.reason, actor); break;
            }
            const Scope s = q.normalize(raw);
            if (o.json) arr.push_back({{"scope", to_string(s.kind)}, {"target", s.target}, {"event_id", id}});
            else fmt::print("{} {}: event #{}\n", to_string(action), s.describe(), id);
        } catch (const QuarantineRefused& e) {
            if (o.json) arr.push_back({{"scope", to_string(raw.kind)}, {"target", raw.target}, {"refused", e.what()}});
            else fmt::print(stderr, "eolstation: refused: {}\n", e.what());
            set_exit(ExitCode::domain_no);
        }
    }
    if (o.json) fmt::print("{}\n", arr.dump(2));
}

struct ListOptions {
    std::string db;
    bool json = false;
};

void run_list(const ListOptions& o) {
    Store store = open_store(o.db, false);
    Quarantine q(store);
    const auto holds = q.active_holds();
    if (o.json) {
        json arr = json::array();
        for (const auto& h : holds) {
            json j = event_json(h.event);
            j["cells_covered"] = h.cells_covered;
            arr.push_back(std::move(j));
        }
        fmt::print("{}\n", arr.dump(2));
        return;
    }
    if (holds.empty()) {
        fmt::print("no holds in force\n");
        return;
    }
    for (const auto& h : holds)
        fmt::print("{}  [{} stored cell{}]\n", event_line(h.event), h.cells_covered, h.cells_covered == 1 ? "" : "s");
    fmt::print("{} hold{} in force\n", holds.size(), holds.size() == 1 ? "" : "s");
}

struct ShowOptions {
    std::string serial;
    std::string lot;
    std::string db;
    std::string scheme;
    bool json = false;
};

void run_show(const ShowOptions& o) {
    if (o.serial.empty() == o.lot.empty()) throw UsageError("give a SERIAL or --lot L");
    const SerialScheme scheme = scheme_from(o.scheme);
    Store store = open_store(o.db, false);
    Quarantine q(store, scheme);
    std::vector<QuarantineEvent> evs;
    json head;
    if (!o.serial.empty()) {
        LookupSession session(store, scheme);
        const LookupResult r = session.lookup(o.serial);
        if (r.error) throw UsageError(fmt::format("{}: {}", o.serial, r.error->message));
        evs = q.history_of_serial(r.serial);
        head = lookup_json(r, "argument");
        if (!o.json) fmt::print("{}\n", lookup_line(r, "argument"));
    } else {
        const Scope s = q.normalize(Scope::lot(o.lot));
        evs = q.history_of_lot(s.target);
        head = {{"lot", s.target}};
        if (!o.json) fmt::print("lot {}\n", s.target);
    }
    if (o.json) {
        json arr = json::array();
        for (const auto& e : evs) arr.push_back(event_json(e));
        head["events"] = arr;
        fmt::print("{}\n", head.dump(2));
        return;
    }
    if (evs.empty()) fmt::print("  no quarantine events\n");
    for (const auto& e : evs) fmt::print("  {}\n", event_line(e));
}

// ---------------------------------------------------------------- ship

struct ShipOptions {
    std::vector<std::string> serials;
    std::string file;
    std::string db;
    std::string gate = "SHIP-01";
    std::string actor;
    std::string role = "logistics";
    std::string reference;
    std::string scheme;
    std::string device_scheme;
    bool json = false;
};

void run_ship(const ShipOptions& o) {
    const SerialScheme scheme = scheme_from(o.scheme);
    const SerialScheme dscheme = o.device_scheme.empty() ? device_serial_scheme() : SerialScheme::load(o.device_scheme);
    std::vector<std::string> serials;
    Sources where;
    gather(o.serials, o.file, serials, where);
    Store store = open_store(o.db, true);
    Genealogy genealogy(store, scheme, dscheme);
    const UnitShipment res = ship_units(store, genealogy, serials, o.gate, Actor{o.actor, o.role}, o.reference);
    if (o.json) {
        json refused = json::array();
        for (const auto& r : res.refused) refused.push_back(unit_json(r, ""));
        write_stdout(json{{"shipped", res.shipped}, {"units", res.units}, {"devices", res.devices},
                          {"repeats", res.repeats}, {"event_id", res.event_id}, {"refused", refused}}
                         .dump(2) +
                     "\n");
    } else {
        const std::string repeats =
            res.repeats ? fmt::format(" ({} repeated input{} counted once)", res.repeats, res.repeats == 1 ? "" : "s")
                        : std::string();
        std::string out;
        if (res.shipped) {
            out = fmt::format("shipped {} unit{}{} through {} (event #{}){}\n", res.units, res.units == 1 ? "" : "s",
                              res.devices ? fmt::format(" ({} device{})", res.devices, res.devices == 1 ? "" : "s")
                                          : std::string(),
                              o.gate, res.event_id, repeats);
        } else {
            for (const auto& r : res.refused) out += unit_line(r, "input") + "\n";
            out += fmt::format("NOT shipped: {} of {} unit{} may not ship; nothing recorded{}\n", res.refused.size(),
                               res.units, res.units == 1 ? "" : "s", repeats);
        }
        write_stdout(out);
    }
    if (!res.shipped) set_exit(ExitCode::domain_no);
}

// ---------------------------------------------------------------- recall

struct RecallOptions {
    std::string db;
    std::string window;
    std::string lot;
    std::string out;
    bool devices = false;
    std::string model;
    bool json = false;
};

std::string csv_field(std::string_view s) {
    if (s.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(s);
    std::string q = "\"";
    for (char c : s) {
        if (c == '"') q += '"';
        q += c;
    }
    return q + "\"";
}

void run_recall_devices(const RecallOptions& o, Store& store, const CellFilter& f) {
    const DeviceRecall rec = recall_devices(store, f, o.model.empty() ? std::nullopt : std::optional(o.model));
    const std::string scope = (o.window.empty() ? std::string() : "window " + o.window) +
                              (!o.window.empty() && !o.lot.empty() ? ", " : "") +
                              (o.lot.empty() ? std::string() : "lot " + *f.lot);
    std::string text;
    if (o.json) {
        json devices = json::array();
        for (const auto& d : rec.devices) {
            json cells = json::array();
            for (const auto& c : d.affected_cells)
                cells.push_back({{"serial", c.serial}, {"lot", c.lot}, {"production_date", c.production_date}});
            devices.push_back({{"device_serial", d.device.serial},
                               {"model", d.device.model},
                               {"assembled", utc_text(d.device.assembled_unix_s)},
                               {"station", d.device.station_id},
                               {"shipped", d.shipped_unix_s.has_value()},
                               {"shipped_utc", d.shipped_unix_s ? json(utc_text(*d.shipped_unix_s)) : json()},
                               {"affected_cells", cells}});
        }
        json models = json::object();
        for (const auto& [m, c] : rec.models)
            models[m] = {{"devices", c.devices}, {"shipped", c.shipped}, {"in_stock", c.in_stock},
                         {"affected_cells", c.affected_cells}};
        text = json{{"scope", scope}, {"model", o.model.empty() ? json() : json(o.model)},
                    {"devices", rec.devices.size()}, {"models", models}, {"list", devices}}
                   .dump(1) +
               "\n";
    } else {
        text = "device_serial,model,assembled_utc,station,affected_cells,lots,shipped,shipped_utc\n";
        for (const auto& d : rec.devices) {
            std::string cells, lots;
            for (const auto& c : d.affected_cells) {
                cells += (cells.empty() ? "" : ";") + c.serial;
                if (lots.find(c.lot) == std::string::npos) lots += (lots.empty() ? "" : ";") + c.lot;
            }
            text += fmt::format("{},{},{},{},{},{},{},{}\n", csv_field(d.device.serial), csv_field(d.device.model),
                                utc_text(d.device.assembled_unix_s), csv_field(d.device.station_id), csv_field(cells),
                                csv_field(lots), d.shipped_unix_s ? "yes" : "no",
                                d.shipped_unix_s ? utc_text(*d.shipped_unix_s) : "");
        }
    }
    // Counts per model: part of the JSON; beside the CSV on stderr.
    std::string counts;
    if (!o.json) {
        for (const auto& [m, c] : rec.models)
            counts += fmt::format("model {}: {} devices ({} shipped, {} in stock), {} affected cells inside\n", m,
                                  c.devices, c.shipped, c.in_stock, c.affected_cells);
        counts += fmt::format("{} devices contain affected cells of {}\n", rec.devices.size(), scope);
    }
    if (o.out.empty() || o.out == "-") {
        write_stdout(text);
    } else {
        write_file_atomically(o.out, text);
        counts += fmt::format("written to {}\n", o.out);
    }
    if (!counts.empty()) fmt::print(stderr, "{}", counts);
}

void run_recall(const RecallOptions& o) {
    if (o.window.empty() && o.lot.empty()) throw UsageError("give --window W and/or --lot L");
    if (!o.devices && !o.model.empty()) throw UsageError("--model needs --devices");
    Store store = open_store(o.db, false);
    CellFilter f;
    if (!o.window.empty()) {
        const auto [from, to] = parse_window(o.window);
        f.date_from = from.iso();
        f.date_to = to.iso();
    }
    if (!o.lot.empty()) f.lot = Quarantine(store).normalize(Scope::lot(o.lot)).target;
    if (o.devices) {
        run_recall_devices(o, store, f);
        return;
    }
    if (o.json) throw UsageError("--json is for --devices (the cell list is CSV)");
    std::vector<std::string> serials;
    store.for_each_cell(f, [&](const CellInfo& c) { serials.push_back(c.serial); });
    LookupSession session(store);
    const auto rs = session.lookup_many(serials);
    const auto shipped = shipped_serials(store);
    std::string text = "serial,lot,production_date,state,shipped,shipped_utc\n";
    for (const auto& r : rs) {
        const auto it = shipped.find(r.serial);
        text += fmt::format("{},{},{},{},{},{}\n", csv_field(r.serial), csv_field(r.lot), csv_field(r.production_date),
                            to_string(r.state), it != shipped.end() ? "yes" : "no",
                            it != shipped.end() ? utc_text(it->second) : "");
    }
    if (o.out.empty() || o.out == "-") {
        write_stdout(text);
        return;
    }
    write_file_atomically(o.out, text);
    fmt::print(stderr, "{} affected serials written to {}\n", rs.size(), o.out);
}

void add_decide(CLI::App* parent, const char* name, QuarantineAction action, const char* help) {
    auto o = std::make_shared<DecideOptions>();
    CLI::App* c = parent->add_subcommand(name, help);
    c->add_option("--serial", o->serials, "Serial(s) to decide on (repeatable; each is its own event)");
    c->add_option("--lot", o->lot, "A lot id (all its units, tested or not)");
    c->add_option("--window", o->window,
                  "A production window: 2023-03..2023-04, 2023-03-01..2023-04-15, 2023-03 or one date");
    c->add_option("--reason", o->reason, "Why (required; kept in the event history)")->required();
    c->add_option("--user", o->user,
                  "Log in as this user (password asked on the terminal, no echo); else the session token in "
                  "EOL_TOKEN (eolstation user login). Hold: any role; release, scrap: quality or admin");
    // Kept only to refuse them with a clear message (old scripts).
    c->add_option("--actor", o->actor, "No longer accepted: the actor is the logged-in user")->group("");
    c->add_option("--role", o->role, "No longer accepted: the role is the logged-in user's")->group("");
    c->add_option("--db", o->db, "Results store (SQLite)")->required();
    c->add_option("--scheme", o->scheme, "Serial scheme TOML file (default: the built-in scheme)");
    c->add_flag("--json", o->json, "Print the events written (or refused) as JSON");
    c->callback([o, action] { run_decide(action, *o); });
}

}  // namespace

void add_quarantine_commands(CLI::App& app) {
    // ---- quarantine
    CLI::App* q = app.add_subcommand(
        "quarantine",
        "Hold, release and scrap units by serial, lot or production window; list holds; show histories. "
        "Every decision is an append-only event. Exit 1 when a decision is refused by policy.");
    q->require_subcommand(1);

    auto lo = std::make_shared<ListOptions>();
    CLI::App* list = q->add_subcommand("list", "The holds in force (targets whose latest event is a hold)");
    list->add_option("--db", lo->db, "Results store (SQLite)")->required();
    list->add_flag("--json", lo->json, "Print JSON");
    list->callback([lo] { run_list(*lo); });

    auto so = std::make_shared<ShowOptions>();
    CLI::App* show = q->add_subcommand("show", "A serial's status and event history (or a lot's events with --lot)");
    show->add_option("serial", so->serial, "Serial as typed or scanned");
    show->add_option("--lot", so->lot, "A lot id instead of a serial");
    show->add_option("--db", so->db, "Results store (SQLite)")->required();
    show->add_option("--scheme", so->scheme, "Serial scheme TOML file (default: the built-in scheme)");
    show->add_flag("--json", so->json, "Print JSON");
    show->callback([so] { run_show(*so); });

    add_decide(q, "hold", QuarantineAction::hold, "Hold units: they may not pass the station or the ship gate");
    add_decide(q, "release", QuarantineAction::release,
               "Release held units (a logged-in quality or admin user and a reason required; releases the hold of the same scope, "
               "or one serial out of a held lot/window)");
    add_decide(q, "scrap", QuarantineAction::scrap, "Scrap units (a logged-in quality or admin user; terminal)");

    // ---- lookup
    auto lk = std::make_shared<LookupOptions>();
    CLI::App* lookup = app.add_subcommand(
        "lookup",
        "May these units ship? A device serial the store knows is answered as a device (it may ship only if it "
        "is not held itself and every cell inside may ship); any other serial as a cell: normalized per the scheme (errors name the position), then reported "
        "as unknown / clear / held (reason, since) / released / scrapped. Exit 0 only if all may ship, else 1: "
        "usable as a ship gate.");
    lookup->add_option("serials", lk->serials, "Serials as typed or scanned");
    lookup->add_option("--file", lk->file, "More serials, one per line (- reads standard input)");
    lookup->add_option("--db", lk->db, "Results store (SQLite)")->required();
    lookup->add_option("--scheme", lk->scheme, "Serial scheme TOML file (default: the built-in scheme)");
    lookup->add_option("--device-scheme", lk->device_scheme,
                       "Device serial scheme TOML file (default: the built-in one, as config/device-serial-scheme.toml)");
    lookup->add_flag("--json", lk->json, "Print JSON");
    lookup->add_flag("--quiet,-q", lk->quiet, "Print only the units that may not ship, and a summary");
    lookup->callback([lk] { run_lookup(*lk); });

    // ---- ship
    auto sh = std::make_shared<ShipOptions>();
    CLI::App* shp = app.add_subcommand(
        "ship",
        "Ship gate: record a shipment of units when every one may ship; otherwise record nothing, list the "
        "refused units and exit 1");
    shp->add_option("serials", sh->serials, "Serials as typed or scanned");
    shp->add_option("--file", sh->file, "More serials, one per line (- reads standard input)");
    shp->add_option("--db", sh->db, "Results store (SQLite)")->required();
    shp->add_option("--gate", sh->gate, "Ship gate id (recorded as the station)")->capture_default_str();
    shp->add_option("--actor", sh->actor, "Who ships (required)")->required();
    shp->add_option("--role", sh->role, "The actor's role")->capture_default_str();
    shp->add_option("--reference", sh->reference, "Shipment reference (order, pallet, …)");
    shp->add_option("--scheme", sh->scheme, "Serial scheme TOML file (default: the built-in scheme)");
    shp->add_option("--device-scheme", sh->device_scheme,
                    "Device serial scheme TOML file (default: the built-in one, as config/device-serial-scheme.toml)");
    shp->add_flag("--json", sh->json, "Print JSON");
    shp->callback([sh] { run_ship(*sh); });

    // ---- recall
    CLI::App* recall = app.add_subcommand("recall", "Recall support");
    recall->require_subcommand(1);
    auto ro = std::make_shared<RecallOptions>();
    CLI::App* exp = recall->add_subcommand(
        "export",
        "The affected serials of a production window and/or a lot as CSV: serial, lot, production_date, state, "
        "shipped, shipped_utc — or, with --devices, the devices containing them — what a recall lookup page serves");
    exp->add_option("--db", ro->db, "Results store (SQLite)")->required();
    exp->add_option("--window", ro->window, "Production window, e.g. 2023-03..2023-04");
    exp->add_option("--lot", ro->lot, "A lot id instead of a window");
    exp->add_option("--out", ro->out, "Output file (default: standard output)");
    exp->add_flag("--devices", ro->devices,
                  "List the devices containing an affected cell instead (shipped or in stock), with counts per model "
                  "(on stderr beside the CSV; in the JSON)");
    exp->add_option("--model", ro->model, "With --devices: only devices of this model");
    exp->add_flag("--json", ro->json, "With --devices: print JSON");
    exp->callback([ro] { run_recall(*ro); });

    add_production_commands(app);
}

}  // namespace eol::cli
