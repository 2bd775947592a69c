#include "eol/station/store.hpp"

#include "eol/station/parallel.hpp"
#include "eol/station/text.hpp"

#include <fmt/core.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "eol/station/serial.hpp"

namespace eol::station {

// ================================================================ enums

std::string_view to_string(QuarantineAction a) {
    switch (a) {
        case QuarantineAction::hold: return "hold";
        case QuarantineAction::release: return "release";
        case QuarantineAction::scrap: return "scrap";
    }
    return "hold";
}

std::string_view to_string(QuarantineScope s) {
    switch (s) {
        case QuarantineScope::serial: return "serial";
        case QuarantineScope::lot: return "lot";
        case QuarantineScope::window: return "window";
    }
    return "serial";
}

std::string_view to_string(CellState s) {
    switch (s) {
        case CellState::clear: return "clear";
        case CellState::held: return "held";
        case CellState::released: return "released";
        case CellState::scrapped: return "scrapped";
    }
    return "clear";
}

std::string_view to_string(LinkAction a) { return a == LinkAction::link ? "link" : "unlink"; }

std::optional<QuarantineAction> quarantine_action_from_string(std::string_view t) {
    for (auto a : {QuarantineAction::hold, QuarantineAction::release, QuarantineAction::scrap})
        if (to_string(a) == t) return a;
    return std::nullopt;
}

std::optional<QuarantineScope> quarantine_scope_from_string(std::string_view t) {
    for (auto s : {QuarantineScope::serial, QuarantineScope::lot, QuarantineScope::window})
        if (to_string(s) == t) return s;
    return std::nullopt;
}

std::optional<double> CellFeatures::get(std::string_view name) const {
    for (const auto& [n, v] : features)
        if (n == name) return v;
    return std::nullopt;
}

namespace {

// ================================================================ schema

constexpr std::int32_t kApplicationId = 0x454F4C53;  // "EOLS"

struct Migration {
    int version;
    const char* sql;
};

// Append-only: never edit a migration that has shipped; add the next version.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE cells (
    serial          TEXT PRIMARY KEY NOT NULL,
    cell_model      TEXT NOT NULL DEFAULT '',
    lot             TEXT NOT NULL DEFAULT '',
    production_date TEXT NOT NULL DEFAULT '',
    latest_run_id   INTEGER REFERENCES test_runs(id)
) WITHOUT ROWID;
CREATE INDEX cells_lot ON cells(lot);
CREATE INDEX cells_production_date ON cells(production_date);

CREATE TABLE test_runs (
    id             INTEGER PRIMARY KEY,
    serial         TEXT NOT NULL REFERENCES cells(serial),
    station_id     TEXT NOT NULL,
    channel        INTEGER NOT NULL,
    recipe_name    TEXT NOT NULL,
    recipe_version TEXT NOT NULL,
    start_unix_s   REAL NOT NULL,
    end_unix_s     REAL NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('pass', 'fail', 'abort', 'error')),
    abort_reason   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX test_runs_serial ON test_runs(serial, start_unix_s);

CREATE TABLE measurements (
    run_id INTEGER NOT NULL REFERENCES test_runs(id),
    seq    INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    unit   TEXT NOT NULL,
    low    REAL,
    high   REAL,
    pass   INTEGER NOT NULL CHECK (pass IN (0, 1)),
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE traces (
    run_id    INTEGER PRIMARY KEY REFERENCES test_runs(id),
    n_samples INTEGER NOT NULL,
    t_s       BLOB NOT NULL,
    i_a       BLOB,
    v_v       BLOB,
    t_cell_c  BLOB,
    t_amb_c   BLOB
);

CREATE TABLE model_fits (
    id        INTEGER PRIMARY KEY,
    run_id    INTEGER NOT NULL REFERENCES test_runs(id),
    kind      TEXT NOT NULL,
    rmse      REAL,
    converged INTEGER NOT NULL CHECK (converged IN (0, 1))
);
CREATE INDEX model_fits_run ON model_fits(run_id);

CREATE TABLE fit_parameters (
    fit_id    INTEGER NOT NULL REFERENCES model_fits(id),
    name      TEXT NOT NULL,
    value     REAL,
    ci95_low  REAL,
    ci95_high REAL,
    PRIMARY KEY (fit_id, name)
) WITHOUT ROWID;

CREATE TABLE quarantine_events (
    id          INTEGER PRIMARY KEY,
    time_unix_s REAL NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('hold', 'release', 'scrap')),
    scope       TEXT NOT NULL CHECK (scope IN ('serial', 'lot', 'window')),
    target      TEXT NOT NULL CHECK (length(target) > 0),
    window_from TEXT,
    window_to   TEXT,
    reason      TEXT NOT NULL CHECK (length(reason) > 0),
    actor       TEXT NOT NULL CHECK (length(actor) > 0),
    role        TEXT NOT NULL DEFAULT '',
    CHECK ((scope = 'window') = (window_from IS NOT NULL AND window_to IS NOT NULL)),
    CHECK (scope <> 'window' OR window_from <= window_to)
);
CREATE INDEX quarantine_target ON quarantine_events(scope, target);
CREATE INDEX quarantine_window ON quarantine_events(window_from, window_to) WHERE scope = 'window';

CREATE TABLE station_events (
    id          INTEGER PRIMARY KEY,
    time_unix_s REAL NOT NULL,
    station_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX station_events_time ON station_events(time_unix_s);
)sql"},
    // 2: the step records of a run (StepRecord): timing, outcome, and the
    // ranges of the run's measurements and trace samples each step made.
    {2, R"sql(
CREATE TABLE run_steps (
    run_id            INTEGER NOT NULL REFERENCES test_runs(id),
    seq               INTEGER NOT NULL,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    start_unix_s      REAL NOT NULL,
    end_unix_s        REAL NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'aborted', 'timeout', 'error', 'skipped')),
    message           TEXT NOT NULL DEFAULT '',
    first_measurement INTEGER NOT NULL,
    measurement_count INTEGER NOT NULL,
    first_sample      INTEGER NOT NULL,
    sample_count      INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TRIGGER run_steps_no_update BEFORE UPDATE ON run_steps BEGIN
    SELECT RAISE(ABORT, 'run_steps is append-only: UPDATE rejected'); END;
CREATE TRIGGER run_steps_no_delete BEFORE DELETE ON run_steps BEGIN
    SELECT RAISE(ABORT, 'run_steps is append-only: DELETE rejected'); END;
CREATE TRIGGER run_steps_no_replace BEFORE INSERT ON run_steps
    WHEN EXISTS (SELECT 1 FROM run_steps WHERE run_id = NEW.run_id AND seq = NEW.seq) BEGIN
    SELECT RAISE(ABORT, 'run_steps is append-only: key already used'); END;
)sql"},
    // 3: genealogy — devices and the append-only history of the cells linked
    // into them (and unlinked, with a reason, for rework).
    {3, R"sql(
CREATE TABLE devices (
    serial           TEXT PRIMARY KEY NOT NULL CHECK (length(serial) > 0),
    model            TEXT NOT NULL CHECK (length(model) > 0),
    assembled_unix_s REAL NOT NULL,
    station_id       TEXT NOT NULL CHECK (length(station_id) > 0)
) WITHOUT ROWID;
CREATE TRIGGER devices_no_update BEFORE UPDATE ON devices BEGIN
    SELECT RAISE(ABORT, 'devices is append-only: UPDATE rejected'); END;
CREATE TRIGGER devices_no_delete BEFORE DELETE ON devices BEGIN
    SELECT RAISE(ABORT, 'devices is append-only: DELETE rejected'); END;
CREATE TRIGGER devices_no_replace BEFORE INSERT ON devices
    WHEN EXISTS (SELECT 1 FROM devices WHERE serial = NEW.serial) BEGIN
    SELECT RAISE(ABORT, 'devices is append-only: serial already used'); END;

CREATE TABLE device_links (
    id            INTEGER PRIMARY KEY,
    time_unix_s   REAL NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('link', 'unlink')),
    device_serial TEXT NOT NULL REFERENCES devices(serial),
    cell_serial   TEXT NOT NULL CHECK (length(cell_serial) > 0),
    station_id    TEXT NOT NULL CHECK (length(station_id) > 0),
    reason        TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT '',
    CHECK (action = 'link' OR (length(reason) > 0 AND length(actor) > 0))
);
-- Covering: a device's cells, and a cell's device, are read from the index alone.
CREATE INDEX device_links_device ON device_links(device_serial, id, action, cell_serial);
CREATE INDEX device_links_cell ON device_links(cell_serial, id, action, device_serial);
CREATE TRIGGER device_links_no_update BEFORE UPDATE ON device_links BEGIN
    SELECT RAISE(ABORT, 'device_links is append-only: UPDATE rejected'); END;
CREATE TRIGGER device_links_no_delete BEFORE DELETE ON device_links BEGIN
    SELECT RAISE(ABORT, 'device_links is append-only: DELETE rejected'); END;
CREATE TRIGGER device_links_no_replace BEFORE INSERT ON device_links
    WHEN EXISTS (SELECT 1 FROM device_links WHERE id = NEW.id) BEGIN
    SELECT RAISE(ABORT, 'device_links is append-only: id already used'); END;
)sql"},
    // 4: users, their sessions and the authentication audit trail
    // (station/auth decides; only hashes are stored: Argon2id strings for
    // passwords, BLAKE2b hex of session tokens).
    {4, R"sql(
CREATE TABLE users (
    name           TEXT PRIMARY KEY NOT NULL CHECK (length(name) > 0),
    role           TEXT NOT NULL CHECK (role IN ('operator', 'quality', 'admin')),
    password_hash  TEXT NOT NULL CHECK (length(password_hash) > 0),
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_unix_s REAL NOT NULL,
    changed_unix_s REAL NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER users_no_delete BEFORE DELETE ON users BEGIN
    SELECT RAISE(ABORT, 'users are disabled, never deleted'); END;
CREATE TRIGGER users_no_rename BEFORE UPDATE OF name ON users BEGIN
    SELECT RAISE(ABORT, 'users cannot be renamed'); END;

CREATE TABLE sessions (
    token_hash     TEXT PRIMARY KEY NOT NULL CHECK (length(token_hash) = 64),
    user_name      TEXT NOT NULL REFERENCES users(name),
    created_unix_s REAL NOT NULL,
    expires_unix_s REAL NOT NULL CHECK (expires_unix_s > created_unix_s)
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions(user_name);

CREATE TABLE auth_events (
    id          INTEGER PRIMARY KEY,
    time_unix_s REAL NOT NULL,
    user_name   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (length(kind) > 0),
    detail      TEXT NOT NULL DEFAULT '',
    by_user     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_events_user_kind ON auth_events(user_name, kind, time_unix_s);
CREATE TRIGGER auth_events_no_update BEFORE UPDATE ON auth_events BEGIN
    SELECT RAISE(ABORT, 'auth_events is append-only: UPDATE rejected'); END;
CREATE TRIGGER auth_events_no_delete BEFORE DELETE ON auth_events BEGIN
    SELECT RAISE(ABORT, 'auth_events is append-only: DELETE rejected'); END;
CREATE TRIGGER auth_events_no_replace BEFORE INSERT ON auth_events
    WHEN EXISTS (SELECT 1 FROM auth_events WHERE id = NEW.id) BEGIN
    SELECT RAISE(ABORT, 'auth_events is append-only: id already used'); END;
)sql"},
    // 5: a cell's latest verdict on its row, beside latest_run_id (the ship
    // gate's one search per cell instead of two). Filled from the runs here;
    // afterwards written by the statement that advances latest_run_id, in the
    // transaction of the run's insert. The triggers refuse any write — by
    // whoever runs the SQL — that would make the two disagree.
    {5, R"sql(
ALTER TABLE cells ADD COLUMN latest_verdict TEXT CHECK (latest_verdict IN ('pass', 'fail', 'abort', 'error'));
UPDATE cells SET latest_verdict = (SELECT verdict FROM test_runs WHERE id = cells.latest_run_id)
    WHERE latest_run_id IS NOT NULL;
CREATE TRIGGER cells_latest_verdict_update BEFORE UPDATE OF latest_run_id, latest_verdict ON cells
    WHEN NEW.latest_verdict IS NOT (SELECT verdict FROM test_runs WHERE id = NEW.latest_run_id) BEGIN
    SELECT RAISE(ABORT, 'cells.latest_verdict must be the verdict of the run cells.latest_run_id'); END;
CREATE TRIGGER cells_latest_verdict_insert BEFORE INSERT ON cells
    WHEN NEW.latest_verdict IS NOT (SELECT verdict FROM test_runs WHERE id = NEW.latest_run_id) BEGIN
    SELECT RAISE(ABORT, 'cells.latest_verdict must be the verdict of the run cells.latest_run_id'); END;
)sql"},
    // 6: the device gate — the cells inside each device now, one row a cell
    // keyed by (device, cell), with the fields the ship gate reads (lot,
    // production date, latest verdict): a device's cells in ONE search
    // instead of a search of its link events and one per cell. Derived, never
    // a source: filled here from device_links (a cell is inside while its
    // latest unlink, if any, is followed by a link — as Genealogy folds the
    // events) and cells; afterwards kept by the triggers below, in the
    // transaction of every write that changes what it mirrors, whoever runs
    // the SQL; the guards refuse any other write. Holds are not in it: they
    // are computed when asked. link_id:
    // the event that put the cell in (a device's cells come in that order);
    // lot NULL: the cell is not stored.
    {6, R"sql(
CREATE TABLE device_gate (
    device_serial   TEXT NOT NULL,
    cell_serial     TEXT NOT NULL,
    link_id         INTEGER NOT NULL,
    lot             TEXT,
    production_date TEXT,
    latest_verdict  TEXT,
    PRIMARY KEY (device_serial, cell_serial)
) WITHOUT ROWID;
INSERT INTO device_gate (device_serial, cell_serial, link_id, lot, production_date, latest_verdict)
SELECT g.device_serial, g.cell_serial, g.link_id, c.lot, c.production_date, c.latest_verdict
FROM (SELECT l.device_serial, l.cell_serial, min(l.id) AS link_id FROM device_links l
      WHERE l.action = 'link' AND l.id > coalesce((SELECT max(u.id) FROM device_links u
          WHERE u.device_serial = l.device_serial AND u.cell_serial = l.cell_serial AND u.action = 'unlink'), 0)
      GROUP BY l.device_serial, l.cell_serial) g
LEFT JOIN cells c ON c.serial = g.cell_serial
ORDER BY g.device_serial, g.cell_serial;
CREATE TRIGGER device_gate_link AFTER INSERT ON device_links WHEN NEW.action = 'link' AND NOT EXISTS
    (SELECT 1 FROM device_gate WHERE device_serial = NEW.device_serial AND cell_serial = NEW.cell_serial) BEGIN
    INSERT INTO device_gate (device_serial, cell_serial, link_id, lot, production_date, latest_verdict)
    SELECT NEW.device_serial, NEW.cell_serial, NEW.id, c.lot, c.production_date, c.latest_verdict
    FROM (SELECT 1) LEFT JOIN cells c ON c.serial = NEW.cell_serial; END;
CREATE TRIGGER device_gate_unlink AFTER INSERT ON device_links WHEN NEW.action = 'unlink' BEGIN
    DELETE FROM device_gate WHERE device_serial = NEW.device_serial AND cell_serial = NEW.cell_serial; END;
CREATE TRIGGER device_gate_cell_insert AFTER INSERT ON cells BEGIN
    UPDATE device_gate SET lot = NEW.lot, production_date = NEW.production_date, latest_verdict = NEW.latest_verdict
    WHERE cell_serial = NEW.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = NEW.serial); END;
CREATE TRIGGER device_gate_cell_update AFTER UPDATE OF serial, lot, production_date, latest_verdict ON cells BEGIN
    UPDATE device_gate SET lot = NULL, production_date = NULL, latest_verdict = NULL
    WHERE OLD.serial IS NOT NEW.serial AND cell_serial = OLD.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = OLD.serial);
    UPDATE device_gate SET lot = NEW.lot, production_date = NEW.production_date, latest_verdict = NEW.latest_verdict
    WHERE cell_serial = NEW.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = NEW.serial); END;
CREATE TRIGGER device_gate_cell_delete AFTER DELETE ON cells BEGIN
    UPDATE device_gate SET lot = NULL, production_date = NULL, latest_verdict = NULL
    WHERE cell_serial = OLD.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = OLD.serial); END;
-- Any other write is refused, whoever runs the SQL: a row must be a cell
-- put in by that link event and not unlinked since, with the fields its
-- cell has now; it goes only after an unlink.
CREATE TRIGGER device_gate_guard_insert BEFORE INSERT ON device_gate
    WHEN NOT EXISTS (SELECT 1 FROM device_links WHERE id = NEW.link_id AND action = 'link'
                     AND device_serial = NEW.device_serial AND cell_serial = NEW.cell_serial)
      OR EXISTS (SELECT 1 FROM device_links WHERE device_serial = NEW.device_serial AND id > NEW.link_id
                 AND action = 'unlink' AND cell_serial = NEW.cell_serial)
      OR NEW.lot IS NOT (SELECT lot FROM cells WHERE serial = NEW.cell_serial)
      OR NEW.production_date IS NOT (SELECT production_date FROM cells WHERE serial = NEW.cell_serial)
      OR NEW.latest_verdict IS NOT (SELECT latest_verdict FROM cells WHERE serial = NEW.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row must be a cell its link event put in, with the cell''s fields'); END;
CREATE TRIGGER device_gate_guard_update BEFORE UPDATE ON device_gate
    WHEN NEW.device_serial IS NOT OLD.device_serial OR NEW.cell_serial IS NOT OLD.cell_serial
      OR NEW.link_id IS NOT OLD.link_id
      OR NEW.lot IS NOT (SELECT lot FROM cells WHERE serial = NEW.cell_serial)
      OR NEW.production_date IS NOT (SELECT production_date FROM cells WHERE serial = NEW.cell_serial)
      OR NEW.latest_verdict IS NOT (SELECT latest_verdict FROM cells WHERE serial = NEW.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row follows its cell''s fields'); END;
CREATE TRIGGER device_gate_guard_delete BEFORE DELETE ON device_gate
    WHEN NOT EXISTS (SELECT 1 FROM device_links WHERE device_serial = OLD.device_serial AND id > OLD.link_id
                     AND action = 'unlink' AND cell_serial = OLD.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row goes only when its cell is unlinked'); END;
)sql"},
    // 7: the device gate's triggers, cheaper where the station writes. A
    // cell's insert or update now touches the gate only when the cell has
    // link events (one search of device_links_cell); before, every record's
    // cell insert and latest-verdict update ran the gate's UPDATE, whose
    // IN (subquery) SQLite builds in a temporary B-tree, opened and closed per
    // statement: about half of Store::write (2.3-3.1 ms a record against
    // 1.2-1.6 ms). The guards read the cell's row once, as one row value,
    // instead of three times. The same rows and refusals as migration 6.
    // IF EXISTS: a store migrated to 6 by a build of session 15 made before
    // the guards were added to migration 6 has none; it gets all three here.
    {7, R"sql(
DROP TRIGGER IF EXISTS device_gate_cell_insert;
DROP TRIGGER IF EXISTS device_gate_cell_update;
DROP TRIGGER IF EXISTS device_gate_cell_delete;
DROP TRIGGER IF EXISTS device_gate_guard_insert;
DROP TRIGGER IF EXISTS device_gate_guard_update;
DROP TRIGGER IF EXISTS device_gate_guard_delete;
CREATE TRIGGER device_gate_cell_insert AFTER INSERT ON cells
    WHEN EXISTS (SELECT 1 FROM device_links WHERE cell_serial = NEW.serial) BEGIN
    UPDATE device_gate SET lot = NEW.lot, production_date = NEW.production_date, latest_verdict = NEW.latest_verdict
    WHERE cell_serial = NEW.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = NEW.serial); END;
CREATE TRIGGER device_gate_cell_update AFTER UPDATE OF serial, lot, production_date, latest_verdict ON cells
    WHEN EXISTS (SELECT 1 FROM device_links WHERE cell_serial = OLD.serial)
      OR EXISTS (SELECT 1 FROM device_links WHERE cell_serial = NEW.serial) BEGIN
    UPDATE device_gate SET lot = NULL, production_date = NULL, latest_verdict = NULL
    WHERE OLD.serial IS NOT NEW.serial AND cell_serial = OLD.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = OLD.serial);
    UPDATE device_gate SET lot = NEW.lot, production_date = NEW.production_date, latest_verdict = NEW.latest_verdict
    WHERE cell_serial = NEW.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = NEW.serial); END;
CREATE TRIGGER device_gate_cell_delete AFTER DELETE ON cells
    WHEN EXISTS (SELECT 1 FROM device_links WHERE cell_serial = OLD.serial) BEGIN
    UPDATE device_gate SET lot = NULL, production_date = NULL, latest_verdict = NULL
    WHERE cell_serial = OLD.serial
      AND device_serial IN (SELECT device_serial FROM device_links WHERE cell_serial = OLD.serial); END;
CREATE TRIGGER device_gate_guard_insert BEFORE INSERT ON device_gate
    WHEN NOT EXISTS (SELECT 1 FROM device_links WHERE id = NEW.link_id AND action = 'link'
                     AND device_serial = NEW.device_serial AND cell_serial = NEW.cell_serial)
      OR EXISTS (SELECT 1 FROM device_links WHERE device_serial = NEW.device_serial AND id > NEW.link_id
                 AND action = 'unlink' AND cell_serial = NEW.cell_serial)
      OR (NEW.lot, NEW.production_date, NEW.latest_verdict)
         IS NOT (SELECT lot, production_date, latest_verdict FROM cells WHERE serial = NEW.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row must be a cell its link event put in, with the cell''s fields'); END;
CREATE TRIGGER device_gate_guard_update BEFORE UPDATE ON device_gate
    WHEN NEW.device_serial IS NOT OLD.device_serial OR NEW.cell_serial IS NOT OLD.cell_serial
      OR NEW.link_id IS NOT OLD.link_id
      OR (NEW.lot, NEW.production_date, NEW.latest_verdict)
         IS NOT (SELECT lot, production_date, latest_verdict FROM cells WHERE serial = NEW.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row follows its cell''s fields'); END;
CREATE TRIGGER device_gate_guard_delete BEFORE DELETE ON device_gate
    WHEN NOT EXISTS (SELECT 1 FROM device_links WHERE device_serial = OLD.device_serial AND id > OLD.link_id
                     AND action = 'unlink' AND cell_serial = OLD.cell_serial) BEGIN
    SELECT RAISE(ABORT, 'device_gate is kept by the store: a row goes only when its cell is unlinked'); END;
)sql"},
};

// Appended to migration 1: results and events are records of fact.
constexpr const char* kImmutableTables[] = {"test_runs", "measurements", "traces", "model_fits",
                                            "fit_parameters", "quarantine_events", "station_events"};

std::string immutability_triggers() {
    std::string sql;
    for (const char* t : kImmutableTables) {
        sql += fmt::format(
            "CREATE TRIGGER {0}_no_update BEFORE UPDATE ON {0} BEGIN "
            "SELECT RAISE(ABORT, '{0} is append-only: UPDATE rejected'); END;\n"
            "CREATE TRIGGER {0}_no_delete BEFORE DELETE ON {0} BEGIN "
            "SELECT RAISE(ABORT, '{0} is append-only: DELETE rejected'); END;\n",
            t);
    }
    // INSERT OR REPLACE on an existing id would delete the old row without
    // firing the delete trigger (recursive_triggers is off): refuse re-use.
    for (auto [t, key] : {std::pair{"quarantine_events", "id"}, std::pair{"station_events", "id"},
                          std::pair{"test_runs", "id"}, std::pair{"traces", "run_id"},
                          std::pair{"model_fits", "id"}}) {
        sql += fmt::format(
            "CREATE TRIGGER {0}_no_replace BEFORE INSERT ON {0} "
            "WHEN EXISTS (SELECT 1 FROM {0} WHERE {1} = NEW.{1}) BEGIN "
            "SELECT RAISE(ABORT, '{0} is append-only: {1} already used'); END;\n",
            t, key);
    }
    for (auto [t, k1, k2] : {std::tuple{"measurements", "run_id", "seq"},
                             std::tuple{"fit_parameters", "fit_id", "name"}}) {
        sql += fmt::format(
            "CREATE TRIGGER {0}_no_replace BEFORE INSERT ON {0} "
            "WHEN EXISTS (SELECT 1 FROM {0} WHERE {1} = NEW.{1} AND {2} = NEW.{2}) BEGIN "
            "SELECT RAISE(ABORT, '{0} is append-only: key already used'); END;\n",
            t, k1, k2);
    }
    return sql;
}

constexpr int kLatestVersion = kMigrations[std::size(kMigrations) - 1].version;

constexpr const char* kTables[] = {"cells",          "test_runs",         "measurements",
                                   "traces",         "model_fits",        "fit_parameters",
                                   "quarantine_events", "station_events", "run_steps",
                                   "devices",        "device_links",      "users",
                                   "sessions",       "auth_events",       "device_gate"};

// ================================================================ trace codec
//
// Column BLOB: byte 0 = format, then
//   0: n × float64 little-endian
//   1, 2: byte 1 = decimal exponent k (values are integers q = round(x·10^k)),
//         then n zig-zag LEB128 varints of the order-1 (q[i]−q[i−1]) or
//         order-2 (second difference) deltas, with q[−1] = q[−2] = 0.

constexpr int kFixedExponent = 6;
constexpr double kFixedScale = 1e6;
constexpr double kFixedLimit = 4503599627370496.0;  // 2^52

void put_varint(std::vector<unsigned char>& out, std::int64_t v) {
    auto u = (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
    while (u >= 0x80) {
        out.push_back(static_cast<unsigned char>(u | 0x80));
        u >>= 7;
    }
    out.push_back(static_cast<unsigned char>(u));
}

void put_f64(std::vector<unsigned char>& out, double x) {
    auto u = std::bit_cast<std::uint64_t>(x);
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<unsigned char>(u >> (8 * b)));
}

std::vector<unsigned char> encode_column(const std::vector<double>& v) {
    const bool fixed = std::all_of(v.begin(), v.end(), [](double x) {
        return std::isfinite(x) && std::fabs(x * kFixedScale) < kFixedLimit;
    });
    std::vector<unsigned char> out;
    if (!fixed) {
        out.reserve(1 + 8 * v.size());
        out.push_back(0);
        for (double x : v) put_f64(out, x);
        return out;
    }
    std::vector<std::int64_t> q(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) q[i] = std::llround(v[i] * kFixedScale);
    std::vector<unsigned char> o1{1, kFixedExponent}, o2{2, kFixedExponent};
    o1.reserve(2 + 3 * v.size());
    o2.reserve(2 + 3 * v.size());
    std::int64_t prev = 0, prev_d = 0;
    for (std::int64_t x : q) {
        const std::int64_t d = x - prev;
        put_varint(o1, d);
        put_varint(o2, d - prev_d);
        prev = x;
        prev_d = d;
    }
    return o1.size() <= o2.size() ? o1 : o2;
}

std::vector<double> decode_column(const unsigned char* p, std::size_t size, std::size_t n,
                                  std::string_view what) {
    auto corrupt = [&](std::string_view why) {
        return StoreError(fmt::format("trace column {} is corrupt: {}", what, why));
    };
    if (size == 0) throw corrupt("empty");
    std::vector<double> out;
    out.reserve(n);
    const unsigned char fmt_byte = p[0];
    if (fmt_byte == 0) {
        if (size != 1 + 8 * n) throw corrupt(fmt::format("{} bytes for {} float64 samples", size, n));
        for (std::size_t i = 0; i < n; ++i) {
            std::uint64_t u = 0;
            for (int b = 0; b < 8; ++b) u |= static_cast<std::uint64_t>(p[1 + 8 * i + static_cast<std::size_t>(b)]) << (8 * b);
            out.push_back(std::bit_cast<double>(u));
        }
        return out;
    }
    if ((fmt_byte != 1 && fmt_byte != 2) || size < 2) throw corrupt(fmt::format("unknown format {}", fmt_byte));
    const double scale = std::pow(10.0, static_cast<double>(p[1]));
    std::size_t pos = 2;
    std::int64_t prev = 0, prev_d = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t u = 0;
        int shift = 0;
        for (;;) {
            if (pos >= size || shift > 63) throw corrupt(fmt::format("truncated at sample {}", i));
            const unsigned char b = p[pos++];
            u |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80)) break;
            shift += 7;
        }
        const auto z = static_cast<std::int64_t>(u >> 1) ^ -static_cast<std::int64_t>(u & 1);
        const std::int64_t d = fmt_byte == 1 ? z : prev_d + z;
        const std::int64_t x = prev + d;
        out.push_back(static_cast<double>(x) / scale);
        prev = x;
        prev_d = d;
    }
    if (pos != size) throw corrupt(fmt::format("{} bytes after the last sample", size - pos));
    return out;
}

// ================================================================ sqlite RAII

struct DbClose {
    void operator()(sqlite3* d) const { sqlite3_close_v2(d); }
};
struct StmtFinalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbClose>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

double now_unix_s() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

// ================================================================ connection

namespace {
struct Conn {
    std::filesystem::path path;
    DbPtr db;
    int version = 0;
    bool read_only = false;
    int tx_depth = 0;  // open transactions (ReadTx/Tx) on this connection
    std::unordered_map<std::string_view, StmtPtr> cache;

    /// SQLite's message, with the operating system's reason when there is
    /// one: "disk I/O error" alone does not say the disk is full.
    std::string reason() const {
        std::string msg = sqlite3_errmsg(db.get());
        const int code = sqlite3_extended_errcode(db.get());
        const int os = sqlite3_system_errno(db.get());
        if (os == ENOSPC || code == SQLITE_FULL) return "disk full (" + msg + ")";
        if ((code & 0xff) == SQLITE_IOERR && os != 0) msg += fmt::format(" ({})", std::strerror(os));
        // "unable to open database file" / "readonly database" do not say why.
        if (!read_only && ((code & 0xff) == SQLITE_CANTOPEN || (code & 0xff) == SQLITE_READONLY) &&
            ::access(path.c_str(), W_OK) != 0)
            msg += fmt::format(" ({}: this command writes to the store)", std::strerror(errno));
        return msg;
    }

    [[noreturn]] void fail(std::string_view what) const {
        throw StoreError(fmt::format("{}: {}: {}", path.string(), what, reason()));
    }

    void exec(const char* sql) {
        char* err = nullptr;
        if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
            sqlite3_free(err);
            throw StoreError(fmt::format("{}: {}", path.string(), reason()));
        }
    }

    std::int64_t pragma_int(const char* sql) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db.get(), sql, -1, &raw, nullptr) != SQLITE_OK) fail(sql);
        StmtPtr s(raw);
        if (sqlite3_step(s.get()) != SQLITE_ROW) fail(sql);
        return sqlite3_column_int64(s.get(), 0);
    }

    std::string pragma_text(const char* sql) {
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db.get(), sql, -1, &raw, nullptr) != SQLITE_OK) fail(sql);
        StmtPtr s(raw);
        if (sqlite3_step(s.get()) != SQLITE_ROW) fail(sql);
        const auto* t = sqlite3_column_text(s.get(), 0);
        return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    }
};

// A statement in use: the cached one for `sql` (a string literal: the cache
// keeps the view), or a
// private one when the cached one is already stepping (a callback re-entered
// the store). Reset and unbound when it goes out of scope.
class Q {
public:
    Q(Conn& impl, std::string_view sql) : impl_(impl) {
        auto it = impl.cache.find(sql);
        if (it != impl.cache.end() && !sqlite3_stmt_busy(it->second.get())) {
            s_ = it->second.get();
            return;
        }
        sqlite3_stmt* raw = nullptr;
        const unsigned flags = it == impl.cache.end() ? SQLITE_PREPARE_PERSISTENT : 0;
        if (sqlite3_prepare_v3(impl.db.get(), sql.data(), static_cast<int>(sql.size()), flags, &raw,
                               nullptr) != SQLITE_OK)
            impl.fail(fmt::format("preparing {}", sql.substr(0, 60)));
        if (it == impl.cache.end()) {
            impl.cache.emplace(sql, StmtPtr(raw));
            s_ = raw;
        } else {
            own_.reset(raw);
            s_ = raw;
        }
    }
    ~Q() { reset(); }
    /// Ready to bind and step again.
    void reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    Q(const Q&) = delete;
    Q& operator=(const Q&) = delete;

    Q& text(int i, std::string_view v) {
        check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
        return *this;
    }
    // No copy: the bytes must stay alive until the statement is reset.
    Q& text_ref(int i, std::string_view v) {
        check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
        return *this;
    }
    Q& real(int i, double v) {
        check(sqlite3_bind_double(s_, i, v));
        return *this;
    }
    Q& real(int i, const std::optional<double>& v) {
        check(v ? sqlite3_bind_double(s_, i, *v) : sqlite3_bind_null(s_, i));
        return *this;
    }
    Q& int64(int i, std::int64_t v) {
        check(sqlite3_bind_int64(s_, i, v));
        return *this;
    }
    Q& null(int i) {
        check(sqlite3_bind_null(s_, i));
        return *this;
    }
    // The bytes must stay alive until the statement is reset.
    Q& blob(int i, const std::vector<unsigned char>& v) {
        check(sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_STATIC));
        return *this;
    }

    /// True when a row is ready; false when done.
    bool step() {
        const int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        impl_.fail(fmt::format("{}", std::string_view(sqlite3_sql(s_)).substr(0, 60)));
    }
    void run() {
        if (step()) impl_.fail("statement returned a row unexpectedly");
    }

    bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
    sqlite3_stmt* raw() const { return s_; }
    std::string col_text(int c) const {
        const auto* p = sqlite3_column_text(s_, c);
        const int n = sqlite3_column_bytes(s_, c);
        return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
    }
    double col_real(int c) const {
        return is_null(c) ? std::numeric_limits<double>::quiet_NaN() : sqlite3_column_double(s_, c);
    }
    std::optional<double> col_opt(int c) const {
        return is_null(c) ? std::nullopt : std::optional<double>(sqlite3_column_double(s_, c));
    }
    std::int64_t col_int(int c) const { return sqlite3_column_int64(s_, c); }
    std::pair<const unsigned char*, std::size_t> col_blob(int c) const {
        const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(s_, c));
        const int n = sqlite3_column_bytes(s_, c);
        return {p, static_cast<std::size_t>(n)};
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) impl_.fail("binding a parameter");
    }
    Conn& impl_;
    sqlite3_stmt* s_ = nullptr;
    StmtPtr own_;
};

// A read transaction: one snapshot (and one WAL read-lock round) for many
// statements instead of one per statement. Inside a write transaction it
// joins it (the snapshot is the writer's).
class ReadTx {
public:
    explicit ReadTx(Conn& impl) : impl_(impl), outer_(impl.tx_depth == 0) {
        if (outer_) Q(impl_, "BEGIN").run();
        ++impl_.tx_depth;
    }
    ~ReadTx() {
        --impl_.tx_depth;
        if (outer_ && sqlite3_exec(impl_.db.get(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
            sqlite3_exec(impl_.db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    ReadTx(const ReadTx&) = delete;
    ReadTx& operator=(const ReadTx&) = delete;

private:
    Conn& impl_;
    bool outer_;
};

// A write transaction: BEGIN IMMEDIATE takes the write lock at once (a
// writer waits busy_timeout_ms for it, never upgrades a read snapshot
// later). Nested in another write transaction it joins it: the outermost
// commits, and an exception unwinding through any level rolls all back.
class Tx {
public:
    explicit Tx(Conn& impl) : impl_(impl), outer_(impl.tx_depth == 0) {
        if (outer_) Q(impl_, "BEGIN IMMEDIATE").run();
        ++impl_.tx_depth;
    }
    void commit() {
        if (outer_) Q(impl_, "COMMIT").run();
        done_ = true;
    }
    ~Tx() {
        --impl_.tx_depth;
        if (!done_ && outer_) sqlite3_exec(impl_.db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    Tx(const Tx&) = delete;
    Tx& operator=(const Tx&) = delete;

private:
    Conn& impl_;
    bool outer_;
    bool done_ = false;
};

// ---------------------------------------------------------------- row readers

constexpr const char* kRunColumns =
    "id, serial, station_id, channel, recipe_name, recipe_version, start_unix_s, end_unix_s, verdict, "
    "abort_reason";

RunInfo read_run_row(const Q& q, int c0 = 0) {
    RunInfo r;
    r.id = q.col_int(c0);
    r.serial = q.col_text(c0 + 1);
    r.station_id = q.col_text(c0 + 2);
    r.channel = static_cast<int>(q.col_int(c0 + 3));
    r.recipe_name = q.col_text(c0 + 4);
    r.recipe_version = q.col_text(c0 + 5);
    r.start_unix_s = q.col_real(c0 + 6);
    r.end_unix_s = q.col_real(c0 + 7);
    r.verdict = verdict_from_string(q.col_text(c0 + 8)).value_or(Verdict::error);
    r.abort_reason = q.col_text(c0 + 9);
    return r;
}

CellInfo read_cell_row(const Q& q, int c0 = 0) {
    CellInfo c;
    c.serial = q.col_text(c0);
    c.cell_model = q.col_text(c0 + 1);
    c.lot = q.col_text(c0 + 2);
    c.production_date = q.col_text(c0 + 3);
    if (!q.is_null(c0 + 4)) c.latest_run_id = q.col_int(c0 + 4);
    return c;
}

constexpr const char* kEventColumns =
    "id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role";

QuarantineEvent read_event_row(const Q& q) {
    QuarantineEvent e;
    e.id = q.col_int(0);
    e.time_unix_s = q.col_real(1);
    e.action = quarantine_action_from_string(q.col_text(2)).value_or(QuarantineAction::hold);
    e.scope = quarantine_scope_from_string(q.col_text(3)).value_or(QuarantineScope::serial);
    e.target = q.col_text(4);
    e.window_from = q.col_text(5);
    e.window_to = q.col_text(6);
    e.reason = q.col_text(7);
    e.actor = q.col_text(8);
    e.role = q.col_text(9);
    return e;
}

// ---------------------------------------------------------------- validation

void validate(const TestRecord& r) {
    const std::string who = r.serial.empty() ? std::string("record") : fmt::format("record for {}", r.serial);
    if (r.serial.empty()) throw StoreError("record: serial is empty");
    if (!r.production_date.empty() && !Date::parse_iso(r.production_date))
        throw StoreError(fmt::format("{}: production_date '{}' is not a valid YYYY-MM-DD date", who,
                                     r.production_date));
    if (!std::isfinite(r.start_unix_s) || !std::isfinite(r.end_unix_s))
        throw StoreError(fmt::format("{}: start_unix_s and end_unix_s must be finite", who));
    const std::size_t n = r.trace.t_s.size();
    for (auto [col, name] : {std::pair{&r.trace.i_a, "i_a"}, std::pair{&r.trace.v_v, "v_v"},
                             std::pair{&r.trace.t_cell_c, "t_cell_c"}, std::pair{&r.trace.t_amb_c, "t_amb_c"}}) {
        if (!col->empty() && col->size() != n)
            throw StoreError(fmt::format("{}: trace column {} has {} samples, t_s has {}", who, name,
                                         col->size(), n));
    }
    for (std::size_t i = 0; i < r.measurements.size(); ++i)
        if (r.measurements[i].name.empty())
            throw StoreError(fmt::format("{}: measurements[{}] has no name", who, i));
    for (std::size_t i = 0; i < r.fits.size(); ++i) {
        const ModelFit& f = r.fits[i];
        if (f.kind.empty()) throw StoreError(fmt::format("{}: fits[{}] has no kind", who, i));
        for (const auto& [name, ci] : f.ci95)
            if (!f.parameters.count(name))
                throw StoreError(fmt::format("{}: fits[{}] ({}): ci95 for '{}', which is not a parameter", who,
                                             i, f.kind, name));
    }
}

std::int64_t write_one(Conn& impl, const TestRecord& r) {
    validate(r);
    sqlite3* db = impl.db.get();
    {
        Q sel(impl, "SELECT cell_model, lot, production_date FROM cells WHERE serial = ?1");
        sel.text(1, r.serial);
        if (sel.step()) {
            const std::string stored[3] = {sel.col_text(0), sel.col_text(1), sel.col_text(2)};
            const std::string_view given[3] = {r.cell_model, r.lot, r.production_date};
            const char* names[3] = {"cell model", "lot", "production date"};
            bool fill = false;
            for (int k = 0; k < 3; ++k) {
                if (!stored[k].empty() && !given[k].empty() && stored[k] != given[k])
                    throw StoreError(fmt::format("record for {}: {} '{}' contradicts the stored cell's '{}'",
                                                 r.serial, names[k], given[k], stored[k]));
                fill = fill || (stored[k].empty() && !given[k].empty());
            }
            if (fill) {
                Q up(impl,
                     "UPDATE cells SET cell_model = CASE WHEN cell_model = '' THEN ?2 ELSE cell_model END, "
                     "lot = CASE WHEN lot = '' THEN ?3 ELSE lot END, "
                     "production_date = CASE WHEN production_date = '' THEN ?4 ELSE production_date END "
                     "WHERE serial = ?1");
                up.text(1, r.serial).text(2, r.cell_model).text(3, r.lot).text(4, r.production_date).run();
            }
        } else {
            Q ins(impl, "INSERT INTO cells (serial, cell_model, lot, production_date) VALUES (?1, ?2, ?3, ?4)");
            ins.text(1, r.serial).text(2, r.cell_model).text(3, r.lot).text(4, r.production_date).run();
        }
    }
    std::int64_t run_id = 0;
    {
        Q ins(impl,
              "INSERT INTO test_runs (serial, station_id, channel, recipe_name, recipe_version, start_unix_s, "
              "end_unix_s, verdict, abort_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        ins.text(1, r.serial)
            .text(2, r.station_id)
            .int64(3, r.channel)
            .text(4, r.recipe_name)
            .text(5, r.recipe_version)
            .real(6, r.start_unix_s)
            .real(7, r.end_unix_s)
            .text(8, to_string(r.verdict))
            .text(9, r.abort_reason)
            .run();
        run_id = sqlite3_last_insert_rowid(db);
    }
    for (std::size_t i = 0; i < r.measurements.size(); ++i) {
        const Measurement& m = r.measurements[i];
        Q ins(impl,
              "INSERT INTO measurements (run_id, seq, name, value, unit, low, high, pass) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
        ins.int64(1, run_id)
            .int64(2, static_cast<std::int64_t>(i))
            .text(3, m.name)
            .real(4, m.value)
            .text(5, m.unit)
            .real(6, m.low)
            .real(7, m.high)
            .int64(8, m.outcome == Outcome::pass ? 1 : 0)
            .run();
    }
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
        const StepRecord& st = r.steps[i];
        Q ins(impl,
              "INSERT INTO run_steps (run_id, seq, name, kind, start_unix_s, end_unix_s, outcome, message, "
              "first_measurement, measurement_count, first_sample, sample_count) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
        ins.int64(1, run_id)
            .int64(2, static_cast<std::int64_t>(i))
            .text(3, st.name)
            .text(4, st.kind)
            .real(5, st.start_unix_s)
            .real(6, st.end_unix_s)
            .text(7, to_string(st.outcome))
            .text(8, st.message)
            .int64(9, static_cast<std::int64_t>(st.first_measurement))
            .int64(10, static_cast<std::int64_t>(st.measurement_count))
            .int64(11, static_cast<std::int64_t>(st.first_sample))
            .int64(12, static_cast<std::int64_t>(st.sample_count))
            .run();
    }
    if (!r.trace.t_s.empty()) {
        const auto t = encode_column(r.trace.t_s);
        std::vector<unsigned char> cols[4];
        const std::vector<double>* src[4] = {&r.trace.i_a, &r.trace.v_v, &r.trace.t_cell_c, &r.trace.t_amb_c};
        Q ins(impl,
              "INSERT INTO traces (run_id, n_samples, t_s, i_a, v_v, t_cell_c, t_amb_c) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        ins.int64(1, run_id).int64(2, static_cast<std::int64_t>(r.trace.t_s.size())).blob(3, t);
        for (int k = 0; k < 4; ++k) {
            if (src[k]->empty()) {
                ins.null(4 + k);
            } else {
                cols[k] = encode_column(*src[k]);
                ins.blob(4 + k, cols[k]);
            }
        }
        ins.run();
    }
    for (const ModelFit& f : r.fits) {
        std::int64_t fit_id = 0;
        {
            Q ins(impl, "INSERT INTO model_fits (run_id, kind, rmse, converged) VALUES (?1, ?2, ?3, ?4)");
            ins.int64(1, run_id).text(2, f.kind).real(3, f.rmse).int64(4, f.converged ? 1 : 0).run();
            fit_id = sqlite3_last_insert_rowid(db);
        }
        for (const auto& [name, value] : f.parameters) {
            Q ins(impl,
                  "INSERT INTO fit_parameters (fit_id, name, value, ci95_low, ci95_high) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)");
            ins.int64(1, fit_id).text(2, name).real(3, value);
            if (const auto it = f.ci95.find(name); it != f.ci95.end())
                ins.real(4, it->second.low).real(5, it->second.high);
            ins.run();
        }
    }
    if (r.verdict == Verdict::pass || r.verdict == Verdict::fail) {
        // latest_verdict with latest_run_id, in one statement (schema 5).
        Q up(impl,
             "UPDATE cells SET latest_run_id = ?1, latest_verdict = ?4 WHERE serial = ?2 AND (latest_run_id IS NULL OR "
             "(SELECT start_unix_s FROM test_runs WHERE id = cells.latest_run_id) <= ?3)");
        up.int64(1, run_id).text(2, r.serial).real(3, r.start_unix_s).text(4, to_string(r.verdict)).run();
    }
    return run_id;
}

// ---------------------------------------------------------------- quarantine state

std::string window_target(std::string_view from, std::string_view to) { return fmt::format("{}..{}", from, to); }

void decide(CellStatus& st, std::vector<const QuarantineEvent*>& events) {
    st.state = quarantine_state(st.serial, events, &st.because);
}

void validate_event(QuarantineEvent& e) {
    if (e.target.empty() && e.scope != QuarantineScope::window)
        throw StoreError(fmt::format("quarantine event: {} scope needs a target", to_string(e.scope)));
    if (e.reason.empty()) throw StoreError("quarantine event: reason is required");
    if (e.actor.empty()) throw StoreError("quarantine event: actor is required");
    if (!std::isfinite(e.time_unix_s)) throw StoreError("quarantine event: time_unix_s must be finite");
    if (e.time_unix_s == 0.0) e.time_unix_s = now_unix_s();
    if (e.scope == QuarantineScope::window) {
        const auto from = Date::parse_iso(e.window_from);
        const auto to = Date::parse_iso(e.window_to);
        if (!from || !to)
            throw StoreError(fmt::format("quarantine event: window needs valid YYYY-MM-DD dates, got '{}'..'{}'",
                                         e.window_from, e.window_to));
        if (*to < *from)
            throw StoreError(fmt::format("quarantine event: window {}..{} ends before it starts", e.window_from,
                                         e.window_to));
        const std::string t = window_target(e.window_from, e.window_to);
        if (!e.target.empty() && e.target != t)
            throw StoreError(fmt::format("quarantine event: window target '{}' is not '{}'", e.target, t));
        e.target = t;
    } else if (!e.window_from.empty() || !e.window_to.empty()) {
        throw StoreError(fmt::format("quarantine event: window dates on a {} scope", to_string(e.scope)));
    }
}

std::int64_t append_event(Conn& impl, QuarantineEvent e) {
    validate_event(e);
    Q ins(impl,
          "INSERT INTO quarantine_events (time_unix_s, action, scope, target, window_from, window_to, reason, "
          "actor, role) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    ins.real(1, e.time_unix_s).text(2, to_string(e.action)).text(3, to_string(e.scope)).text(4, e.target);
    if (e.scope == QuarantineScope::window) ins.text(5, e.window_from).text(6, e.window_to);
    ins.text(7, e.reason).text(8, e.actor).text(9, e.role).run();
    return sqlite3_last_insert_rowid(impl.db.get());
}

}  // namespace

// ================================================================ Store

namespace {
// A read-only connection of its own to the store's file, for one slice of a
// bulk read on its own thread (Store::bulk_readers). Kept open from bulk read
// to bulk read — its page cache and mapped pages stay — but holds no
// snapshot between them: each slice is one statement, reset when done.
// ok() is false when the file cannot be read that way (the caller then
// reads on the store's connection).
class Reader {
public:
    Reader(const std::filesystem::path& path, std::int64_t cache_bytes) : path_(path) {
        if (path.empty() || path == ":memory:" || !std::filesystem::exists(path)) return;
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
        db_.reset(raw);
        if (rc != SQLITE_OK) return;
        sqlite3_busy_timeout(raw, 5000);
        // Map the file (as far as the library's SQLITE_MAX_MMAP_SIZE allows)
        // instead of copying its pages through pread; the rest goes through
        // the page cache.
        const std::string pragmas = fmt::format("PRAGMA mmap_size = 17179869184; PRAGMA cache_size = -{}",
                                                std::max<std::int64_t>(cache_bytes >> 10, 1));
        if (sqlite3_exec(raw, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return;
        // Reads the schema: fails when this file cannot be read a second
        // way (a WAL store on read-only media, read as immutable).
        ok_ = sqlite3_exec(raw, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    bool ok() const { return ok_; }
    /// The statement for `sql` (a string literal: prepared on first use).
    sqlite3_stmt* statement(const char* sql) {
        if (const auto it = cache_.find(sql); it != cache_.end()) return it->second.get();
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v3(db_.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr) != SQLITE_OK)
            fail("preparing a bulk read");
        cache_.emplace(sql, StmtPtr(raw));
        return raw;
    }
    [[noreturn]] void fail(std::string_view what) const {
        throw StoreError(fmt::format("{}: {}: {}", path_.string(), what, sqlite3_errmsg(db_.get())));
    }
    /// A read transaction: the statements until end() read one snapshot.
    void begin() {
        if (!sqlite3_get_autocommit(db_.get())) end();  // never left open, but never nested either
        if (sqlite3_exec(db_.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) fail("beginning a read");
    }
    /// Ends it (also after an error: nothing was written).
    void end() { sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr); }

private:
    std::filesystem::path path_;
    DbPtr db_;
    std::unordered_map<const char*, StmtPtr> cache_;  // finalized before db_ closes
    bool ok_ = false;
};
}  // namespace

struct Store::Impl : Conn {
    std::int64_t reader_cache_bytes = std::int64_t{64} << 20;
    std::vector<std::unique_ptr<Reader>> readers;  // bulk_readers(); closed before the connection
    bool no_readers = false;                       // the file cannot be opened a second time
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

CellState quarantine_state(std::string_view serial, std::span<const QuarantineEvent* const> events,
                           std::vector<QuarantineEvent>* because) {
    std::vector<const QuarantineEvent*> ev(events.begin(), events.end());
    std::sort(ev.begin(), ev.end(), [](const auto* a, const auto* b) { return a->id < b->id; });
    if (because) because->clear();
    for (const auto* e : ev) {
        if (e->action == QuarantineAction::scrap) {
            if (because) because->push_back(*e);
            return CellState::scrapped;
        }
    }
    // Latest event per target (events are few per unit: a flat scan is fastest).
    std::vector<const QuarantineEvent*> latest;
    for (const auto* e : ev) {
        auto it = std::find_if(latest.begin(), latest.end(), [&](const QuarantineEvent* l) {
            return l->scope == e->scope && l->target == e->target;
        });
        if (it == latest.end()) latest.push_back(e);
        else *it = e;  // ids ascend
    }
    std::int64_t serial_release = 0;
    for (const auto* e : latest)
        if (e->scope == QuarantineScope::serial && e->target == serial && e->action == QuarantineAction::release)
            serial_release = e->id;
    const QuarantineEvent* last_release = nullptr;
    bool held = false;
    for (const auto* e : latest) {
        if (e->action == QuarantineAction::hold) {
            if (e->scope != QuarantineScope::serial && e->id < serial_release) continue;
            held = true;
            if (because) because->push_back(*e);
        } else if (e->action == QuarantineAction::release && (!last_release || e->id > last_release->id)) {
            last_release = e;
        }
    }
    if (held) {
        if (because)
            std::sort(because->begin(), because->end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        return CellState::held;
    }
    if (last_release) {
        if (because) because->push_back(*last_release);
        return CellState::released;
    }
    return CellState::clear;
}

bool Store::write_transaction(const std::function<bool()>& body) {
    if (impl_->read_only) throw StoreError(fmt::format("{}: opened read-only: no write transaction", impl_->path.string()));
    Tx tx(*impl_);
    if (!body()) return false;  // ~Tx rolls back (when outermost)
    tx.commit();
    return true;
}

int Store::latest_schema_version() { return kLatestVersion; }
int Store::schema_version() const { return impl_->version; }
const std::filesystem::path& Store::path() const { return impl_->path; }

namespace {

// A page size SQLite accepts (OpenOptions::page_size_bytes, Store::copy_to).
void check_page_size(const std::filesystem::path& path, int ps) {
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0)
        throw StoreError(
            fmt::format("{}: page size {} bytes: not a power of two from 512 to 65536", path.string(), ps));
}

// "SELECT count(*) FROM <table>" with the name quoted as an SQL identifier.
std::string count_rows_sql(std::string_view table) {
    std::string quoted;
    for (char c : table) {
        quoted += c;
        if (c == '"') quoted += '"';
    }
    return fmt::format("SELECT count(*) FROM \"{}\"", quoted);
}

}  // namespace

Store Store::open(const std::filesystem::path& path, const OpenOptions& options) {
    // No global allocation statistics (nothing here reads them): with them,
    // every SQLite allocation takes one process-wide mutex, which serialises
    // connections read in parallel (bulk lookups). Only possible before the
    // library initialises; a no-op (SQLITE_MISUSE) if someone else came first.
    [[maybe_unused]] static const int memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->read_only = options.read_only;
    impl->reader_cache_bytes = options.bulk_reader_cache_bytes;
    const int ps = options.page_size_bytes;
    check_page_size(path, ps);
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(st) && (!options.create || options.read_only))
        throw StoreError(fmt::format("{}: no such database", path.string()));
    // A FIFO, a device or a folder would block or confuse SQLite's open().
    if (std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
        throw StoreError(fmt::format("{}: not an eolstation store: not a regular file ({})", path.string(),
                                     std::filesystem::is_directory(st) ? "a directory"
                                     : std::filesystem::is_fifo(st)    ? "a FIFO"
                                                                       : "a special file"));
    const bool existed = std::filesystem::exists(st);
    auto open_db = [&](const std::string& name, int extra) {
        int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | extra;
        flags |= options.read_only ? SQLITE_OPEN_READONLY
                                   : (SQLITE_OPEN_READWRITE | (options.create ? SQLITE_OPEN_CREATE : 0));
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
        impl->db.reset(raw);
        if (rc != SQLITE_OK) {
            const std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
            throw StoreError(fmt::format("{}: cannot open: {}", path.string(), msg));
        }
        sqlite3_busy_timeout(raw, options.busy_timeout_ms);
        sqlite3_extended_result_codes(raw, 1);
    };
    open_db(path.string(), 0);
    if (options.read_only &&
        sqlite3_exec(impl->db.get(), "PRAGMA user_version", nullptr, nullptr, nullptr) == SQLITE_CANTOPEN) {
        // A WAL database on read-only media (or a folder this user cannot
        // write): its -shm cannot be made. Read it as immutable — nobody can
        // write it there either — so a ship gate still answers. Not when its
        // -wal holds commits the main file lacks: immutable reads ignore the
        // -wal, and a hold in it would be missed.
        const std::filesystem::path wal = path.string() + "-wal";
        std::error_code wal_ec;
        if (const auto n = std::filesystem::file_size(wal, wal_ec); !wal_ec && n > 0)
            throw StoreError(fmt::format(
                "{}: cannot be read here: the folder is read-only and its write-ahead log ({}, {} bytes) holds "
                "commits not yet in the database file, which SQLite reads only by writing a -shm beside it; copy "
                "the store with its -wal to a writable folder",
                path.string(), wal.string(), n));
        std::string uri = "file:";
        for (const char c : std::filesystem::absolute(path).string()) {
            if (c == '?' || c == '#' || c == '%') uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
            else uri += c;
        }
        open_db(uri + "?immutable=1", SQLITE_OPEN_URI);
    }
    impl->exec("PRAGMA foreign_keys = ON");
    impl->exec("PRAGMA cache_size = -32768");

    auto check_file = [&](Impl& i) {
        const auto version = static_cast<int>(i.pragma_int("PRAGMA user_version"));
        if (version > kLatestVersion)
            throw SchemaTooNewError(
                fmt::format("{}: the database has schema version {}, newer than this eolstation knows ({}); "
                            "use a newer eolstation — it will not be downgraded",
                            path.string(), version, kLatestVersion),
                version, kLatestVersion);
        const auto app = static_cast<std::int32_t>(i.pragma_int("PRAGMA application_id"));
        const auto tables = i.pragma_int("SELECT count(*) FROM sqlite_schema");
        if ((app != 0 && app != kApplicationId) || (app == 0 && tables > 0))
            throw StoreError(fmt::format("{}: not an eolstation store (another SQLite database)", path.string()));
        // An empty file (or an empty SQLite database) becomes a store only
        // when the caller creates stores (sim-production, demo, the station).
        if (app == 0 && tables == 0 && existed && !options.create)
            throw StoreError(fmt::format("{}: not an eolstation store (an empty file)", path.string()));
        return version;
    };
    impl->version = check_file(*impl);
    if (options.read_only) return Store(std::move(impl));

    // The page size takes effect only before the first table (and before WAL
    // mode is set on the file); a store that has tables keeps its own.
    if (impl->version == 0 && impl->pragma_int("SELECT count(*) FROM sqlite_schema") == 0)
        impl->exec(fmt::format("PRAGMA page_size = {}", ps).c_str());
    if (impl->pragma_text("PRAGMA journal_mode = WAL") != "wal")
        throw StoreError(fmt::format("{}: cannot switch to WAL journal mode", path.string()));
    impl->exec("PRAGMA synchronous = FULL");

    for (const Migration& m : kMigrations) {
        if (m.version <= impl->version) continue;
        impl->exec("BEGIN IMMEDIATE");
        try {
            impl->version = check_file(*impl);  // another process may have migrated meanwhile
            if (m.version > impl->version) {
                impl->exec(m.sql);
                if (m.version == 1) {
                    impl->exec(immutability_triggers().c_str());
                    impl->exec(fmt::format("PRAGMA application_id = {}", kApplicationId).c_str());
                }
                impl->exec(fmt::format("PRAGMA user_version = {}", m.version).c_str());
                impl->version = m.version;
            }
            impl->exec("COMMIT");
        } catch (...) {
            sqlite3_exec(impl->db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }
    return Store(std::move(impl));
}

DbInfo Store::inspect(const std::filesystem::path& path, bool count_rows) {
    OpenOptions o;
    o.read_only = true;
    return open(path, o).info(count_rows);
}

// ---------------------------------------------------------------- writing

std::int64_t Store::write(const TestRecord& record) {
    Tx tx(*impl_);
    const std::int64_t id = write_one(*impl_, record);
    tx.commit();
    return id;
}

std::vector<std::int64_t> Store::write_batch(std::span<const TestRecord> records) {
    std::vector<std::int64_t> ids;
    ids.reserve(records.size());
    Tx tx(*impl_);
    for (const auto& r : records) ids.push_back(write_one(*impl_, r));
    tx.commit();
    return ids;
}

// ---------------------------------------------------------------- reading

std::optional<CellInfo> Store::cell(std::string_view serial) {
    Q q(*impl_, "SELECT serial, cell_model, lot, production_date, latest_run_id FROM cells WHERE serial = ?1");
    q.text(1, serial);
    if (!q.step()) return std::nullopt;
    return read_cell_row(q);
}

std::vector<RunInfo> Store::runs_for(std::string_view serial) {
    Q q(*impl_,
        "SELECT id, serial, station_id, channel, recipe_name, recipe_version, start_unix_s, end_unix_s, verdict, "
        "abort_reason FROM test_runs WHERE serial = ?1 ORDER BY start_unix_s, id");
    q.text(1, serial);
    std::vector<RunInfo> out;
    while (q.step()) out.push_back(read_run_row(q));
    return out;
}

std::optional<RunInfo> Store::run(std::int64_t run_id) {
    Q q(*impl_,
        "SELECT id, serial, station_id, channel, recipe_name, recipe_version, start_unix_s, end_unix_s, verdict, "
        "abort_reason FROM test_runs WHERE id = ?1");
    q.int64(1, run_id);
    if (!q.step()) return std::nullopt;
    return read_run_row(q);
}

std::vector<Measurement> Store::measurements(std::int64_t run_id) {
    Q q(*impl_, "SELECT name, value, unit, low, high, pass FROM measurements WHERE run_id = ?1 ORDER BY seq");
    q.int64(1, run_id);
    std::vector<Measurement> out;
    while (q.step()) {
        Measurement m;
        m.name = q.col_text(0);
        m.value = q.col_real(1);
        m.unit = q.col_text(2);
        m.low = q.col_opt(3);
        m.high = q.col_opt(4);
        // Stored as pass 0/1; a NULL value was not measured (unset).
        m.outcome = !std::isfinite(m.value) ? Outcome::unset : q.col_int(5) != 0 ? Outcome::pass : Outcome::fail;
        out.push_back(std::move(m));
    }
    return out;
}

models::Series Store::trace(std::int64_t run_id) {
    Q q(*impl_, "SELECT n_samples, t_s, i_a, v_v, t_cell_c, t_amb_c FROM traces WHERE run_id = ?1");
    q.int64(1, run_id);
    models::Series s;
    if (!q.step()) return s;
    const auto n = static_cast<std::size_t>(q.col_int(0));
    std::vector<double>* dst[5] = {&s.t_s, &s.i_a, &s.v_v, &s.t_cell_c, &s.t_amb_c};
    const char* names[5] = {"t_s", "i_a", "v_v", "t_cell_c", "t_amb_c"};
    for (int k = 0; k < 5; ++k) {
        if (q.is_null(1 + k)) continue;
        const auto [p, size] = q.col_blob(1 + k);
        *dst[k] = decode_column(p, size, n, fmt::format("{} of run {}", names[k], run_id));
    }
    return s;
}

std::vector<StepRecord> Store::steps(std::int64_t run_id) {
    std::vector<StepRecord> out;
    if (impl_->version < 2) return out;  // a read-only open of an older store
    Q q(*impl_,
        "SELECT name, kind, start_unix_s, end_unix_s, outcome, message, first_measurement, measurement_count, "
        "first_sample, sample_count FROM run_steps WHERE run_id = ?1 ORDER BY seq");
    q.int64(1, run_id);
    while (q.step()) {
        StepRecord st;
        st.name = q.col_text(0);
        st.kind = q.col_text(1);
        st.start_unix_s = q.col_real(2);
        st.end_unix_s = q.col_real(3);
        st.outcome = step_outcome_from_string(q.col_text(4)).value_or(StepOutcome::error);
        st.message = q.col_text(5);
        st.first_measurement = static_cast<std::size_t>(q.col_int(6));
        st.measurement_count = static_cast<std::size_t>(q.col_int(7));
        st.first_sample = static_cast<std::size_t>(q.col_int(8));
        st.sample_count = static_cast<std::size_t>(q.col_int(9));
        out.push_back(std::move(st));
    }
    return out;
}

std::vector<ModelFit> Store::fits(std::int64_t run_id) {
    Q q(*impl_,
        "SELECT f.id, f.kind, f.rmse, f.converged, p.name, p.value, p.ci95_low, p.ci95_high "
        "FROM model_fits f LEFT JOIN fit_parameters p ON p.fit_id = f.id WHERE f.run_id = ?1 "
        "ORDER BY f.id, p.name");
    q.int64(1, run_id);
    std::vector<ModelFit> out;
    std::int64_t current = -1;
    while (q.step()) {
        if (q.col_int(0) != current) {
            current = q.col_int(0);
            ModelFit f;
            f.kind = q.col_text(1);
            f.rmse = q.col_real(2);
            f.converged = q.col_int(3) != 0;
            out.push_back(std::move(f));
        }
        if (q.is_null(4)) continue;
        const std::string name = q.col_text(4);
        out.back().parameters[name] = q.col_real(5);
        if (!q.is_null(6) || !q.is_null(7)) out.back().ci95[name] = Interval{q.col_real(6), q.col_real(7)};
    }
    return out;
}

std::optional<TestRecord> Store::read_record(std::int64_t run_id) {
    const auto r = run(run_id);
    if (!r) return std::nullopt;
    TestRecord t;
    t.serial = r->serial;
    if (const auto c = cell(r->serial)) {
        t.cell_model = c->cell_model;
        t.lot = c->lot;
        t.production_date = c->production_date;
    }
    t.station_id = r->station_id;
    t.channel = r->channel;
    t.recipe_name = r->recipe_name;
    t.recipe_version = r->recipe_version;
    t.start_unix_s = r->start_unix_s;
    t.end_unix_s = r->end_unix_s;
    t.verdict = r->verdict;
    t.abort_reason = r->abort_reason;
    t.measurements = measurements(run_id);
    t.steps = steps(run_id);
    t.trace = trace(run_id);
    t.fits = fits(run_id);
    return t;
}

namespace {
// Binds the filter of for_each_cell / for_each_latest to one of three
// statements (all / lot / dates) given by the caller.
struct FilterBounds {
    bool all = false;
    std::string from;
    std::string to;
};
FilterBounds bounds(const CellFilter& f) {
    FilterBounds b;
    if (f.date_from.empty() && f.date_to.empty()) {
        b.all = true;
        b.from = "";
        b.to = "\x7f";
    } else {
        b.from = f.date_from.empty() ? "0000-00-00" : f.date_from;
        b.to = f.date_to.empty() ? "9999-99-99" : f.date_to;
    }
    return b;
}
}  // namespace

void Store::for_each_cell(const CellFilter& filter, const std::function<void(const CellInfo&)>& visit) {
    const FilterBounds b = bounds(filter);
    auto loop = [&](Q& q) {
        while (q.step()) {
            CellInfo c = read_cell_row(q);
            if (filter.cell_model && c.cell_model != *filter.cell_model) continue;
            visit(c);
        }
    };
    if (filter.lot) {
        Q q(*impl_,
            "SELECT serial, cell_model, lot, production_date, latest_run_id FROM cells "
            "WHERE lot = ?1 AND production_date BETWEEN ?2 AND ?3 ORDER BY serial");
        q.text(1, *filter.lot).text(2, b.from).text(3, b.to);
        loop(q);
    } else if (b.all) {
        Q q(*impl_, "SELECT serial, cell_model, lot, production_date, latest_run_id FROM cells ORDER BY serial");
        loop(q);
    } else {
        Q q(*impl_,
            "SELECT serial, cell_model, lot, production_date, latest_run_id FROM cells "
            "WHERE production_date BETWEEN ?1 AND ?2 ORDER BY serial");
        q.text(1, b.from).text(2, b.to);
        loop(q);
    }
}

void Store::for_each_latest(const CellFilter& filter, const std::function<void(const CellFeatures&)>& visit) {
    const FilterBounds b = bounds(filter);
#define EOL_LATEST_SELECT                                                                                    \
    "SELECT c.serial, c.cell_model, c.lot, c.production_date, c.latest_run_id, r.id, r.serial, r.station_id, " \
    "r.channel, r.recipe_name, r.recipe_version, r.start_unix_s, r.end_unix_s, r.verdict, r.abort_reason "     \
    "FROM cells c JOIN test_runs r ON r.id = c.latest_run_id "
    auto loop = [&](Q& q) {
        CellFeatures cf;
        while (q.step()) {
            cf.cell = read_cell_row(q, 0);
            cf.run = read_run_row(q, 5);
            cf.features.clear();
            {
                Q m(*impl_, "SELECT name, value FROM measurements WHERE run_id = ?1 ORDER BY seq");
                m.int64(1, cf.run.id);
                while (m.step())
                    if (!m.is_null(1)) cf.features.emplace_back(m.col_text(0), m.col_real(1));
            }
            {
                Q f(*impl_,
                    "SELECT f.id, f.kind, f.rmse, p.name, p.value FROM model_fits f "
                    "LEFT JOIN fit_parameters p ON p.fit_id = f.id "
                    "WHERE f.run_id = ?1 AND f.converged = 1 ORDER BY f.id, p.name");
                f.int64(1, cf.run.id);
                std::int64_t current = -1;
                while (f.step()) {
                    const std::string kind = f.col_text(1);
                    if (f.col_int(0) != current) {
                        current = f.col_int(0);
                        if (!f.is_null(2)) cf.features.emplace_back(kind + ".rmse", f.col_real(2));
                    }
                    if (!f.is_null(3) && !f.is_null(4)) cf.features.emplace_back(kind + "." + f.col_text(3), f.col_real(4));
                }
            }
            visit(cf);
        }
    };
    if (filter.cell_model) {
        // One cell model (test-time screening's reference), optionally one
        // lot and a date range: one statement, the lot test switched by ?2.
        Q q(*impl_, EOL_LATEST_SELECT
            "WHERE c.cell_model = ?1 AND (?2 = 0 OR c.lot = ?3) AND c.production_date BETWEEN ?4 AND ?5 "
            "ORDER BY c.serial");
        q.text(1, *filter.cell_model).int64(2, filter.lot ? 1 : 0).text(3, filter.lot ? *filter.lot : std::string());
        q.text(4, b.from).text(5, b.to);
        loop(q);
    } else if (filter.lot) {
        Q q(*impl_, EOL_LATEST_SELECT "WHERE c.lot = ?1 AND c.production_date BETWEEN ?2 AND ?3 ORDER BY c.serial");
        q.text(1, *filter.lot).text(2, b.from).text(3, b.to);
        loop(q);
    } else if (b.all) {
        Q q(*impl_, EOL_LATEST_SELECT "ORDER BY c.serial");
        loop(q);
    } else {
        Q q(*impl_, EOL_LATEST_SELECT "WHERE c.production_date BETWEEN ?1 AND ?2 ORDER BY c.serial");
        q.text(1, b.from).text(2, b.to);
        loop(q);
    }
#undef EOL_LATEST_SELECT
}

// ---------------------------------------------------------------- quarantine

std::int64_t Store::append_quarantine(const QuarantineEvent& event) {
    Tx tx(*impl_);
    const std::int64_t id = append_event(*impl_, event);
    tx.commit();
    return id;
}

std::vector<std::int64_t> Store::append_quarantine_batch(std::span<const QuarantineEvent> events) {
    std::vector<std::int64_t> ids;
    ids.reserve(events.size());
    Tx tx(*impl_);
    for (const auto& e : events) ids.push_back(append_event(*impl_, e));
    tx.commit();
    return ids;
}

std::vector<QuarantineEvent> Store::quarantine_events(std::int64_t after_id) {
    Q q(*impl_,
        "SELECT id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role "
        "FROM quarantine_events WHERE id > ?1 ORDER BY id");
    q.int64(1, after_id);
    std::vector<QuarantineEvent> out;
    while (q.step()) out.push_back(read_event_row(q));
    return out;
}

std::vector<QuarantineEvent> Store::quarantine_events_for(std::string_view serial, std::string_view lot,
                                                          std::string_view production_date) {
    Q q(*impl_,
        "SELECT id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role "
        "FROM quarantine_events WHERE (scope = 'serial' AND target = ?1) OR (scope = 'lot' AND target = ?2) "
        "OR (scope = 'window' AND window_from <= ?3 AND window_to >= ?3) ORDER BY id");
    q.text(1, serial);
    if (lot.empty()) q.null(2);
    else q.text(2, lot);
    if (production_date.empty()) q.null(3);
    else q.text(3, production_date);
    std::vector<QuarantineEvent> out;
    while (q.step()) out.push_back(read_event_row(q));
    return out;
}

namespace {
CellStatus decide_owned(std::string_view serial, std::string_view lot, std::string_view date, bool known,
                        const std::vector<QuarantineEvent>& events) {
    CellStatus st;
    st.serial = std::string(serial);
    st.known = known;
    st.lot = std::string(lot);
    st.production_date = std::string(date);
    std::vector<const QuarantineEvent*> ptrs;
    ptrs.reserve(events.size());
    for (const auto& e : events) ptrs.push_back(&e);
    decide(st, ptrs);
    return st;
}
}  // namespace

CellStatus Store::status(std::string_view serial) {
    std::string lot, date;
    bool known = false;
    {
        Q q(*impl_, "SELECT lot, production_date FROM cells WHERE serial = ?1");
        q.text(1, serial);
        if ((known = q.step())) {
            lot = q.col_text(0);
            date = q.col_text(1);
        }
    }
    return decide_owned(serial, lot, date, known, quarantine_events_for(serial, lot, date));
}

CellStatus Store::status(std::string_view serial, std::string_view lot, std::string_view production_date) {
    bool known = false;
    {
        Q q(*impl_, "SELECT 1 FROM cells WHERE serial = ?1");
        q.text(1, serial);
        known = q.step();
    }
    return decide_owned(serial, lot, production_date, known, quarantine_events_for(serial, lot, production_date));
}

std::vector<CellStatus> Store::status_many(std::span<const std::string> serials) {
    const ReadTx snapshot(*impl_);
    // Lot and window events are few: load them once.
    std::unordered_map<std::string, std::vector<QuarantineEvent>> by_lot;
    std::vector<QuarantineEvent> windows;
    {
        Q q(*impl_,
            "SELECT id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role "
            "FROM quarantine_events WHERE scope IN ('lot', 'window') ORDER BY id");
        while (q.step()) {
            QuarantineEvent e = read_event_row(q);
            if (e.scope == QuarantineScope::lot) by_lot[e.target].push_back(std::move(e));
            else windows.push_back(std::move(e));
        }
    }
    // Serial-scope events: when they are fewer than the serials asked, load
    // them all, sorted by target, and merge-walk them with the sorted query.
    std::int64_t n_serial_events = 0;
    {
        Q q(*impl_, "SELECT count(*) FROM quarantine_events WHERE scope = 'serial'");
        if (q.step()) n_serial_events = q.col_int(0);
    }
    const bool preload = static_cast<std::size_t>(n_serial_events) <= serials.size();
    std::vector<QuarantineEvent> serial_events;
    if (preload && n_serial_events > 0) {
        Q q(*impl_,
            "SELECT id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role "
            "FROM quarantine_events WHERE scope = 'serial' ORDER BY target, id");
        while (q.step()) serial_events.push_back(read_event_row(q));
    }
    std::size_t next_event = 0;

    // Visit in key order (B-tree locality, merge with serial_events). Sort
    // packed keys: the first 16 bytes big-endian, then the length; only
    // longer strings with equal first 16 bytes compare in full.
    struct Key {
        std::uint64_t hi = 0, lo = 0;
        std::size_t len = 0;
        std::size_t idx = 0;
    };
    std::vector<Key> keys(serials.size());
    for (std::size_t i = 0; i < serials.size(); ++i) {
        const std::string& x = serials[i];
        Key& k = keys[i];
        for (std::size_t b = 0; b < 16; ++b) {
            const std::uint64_t byte = b < x.size() ? static_cast<unsigned char>(x[b]) : 0u;
            (b < 8 ? k.hi : k.lo) |= byte << (8 * (7 - (b % 8)));
        }
        k.len = x.size();
        k.idx = i;
    }
    std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
        if (a.hi != b.hi) return a.hi < b.hi;
        if (a.lo != b.lo) return a.lo < b.lo;
        if (a.len > 16 && b.len > 16) return serials[a.idx] < serials[b.idx];
        return a.len < b.len;
    });
    std::vector<CellStatus> out(serials.size());
    std::vector<const QuarantineEvent*> events;
    std::vector<QuarantineEvent> fetched;  // serial events read one by one
    Q cq(*impl_, "SELECT lot, production_date FROM cells WHERE serial = ?1");
    for (const Key& key : keys) {
        const std::string& s = serials[key.idx];
        CellStatus& st = out[key.idx];
        st.serial = s;
        cq.text_ref(1, s);
        st.known = cq.step();
        if (st.known) {
            st.lot = cq.col_text(0);
            st.production_date = cq.col_text(1);
        }
        cq.reset();
        events.clear();
        if (preload) {
            while (next_event < serial_events.size() && serial_events[next_event].target < s) ++next_event;
            for (std::size_t k = next_event; k < serial_events.size() && serial_events[k].target == s; ++k)
                events.push_back(&serial_events[k]);
        } else {
            fetched.clear();
            Q q(*impl_,
                "SELECT id, time_unix_s, action, scope, target, window_from, window_to, reason, actor, role "
                "FROM quarantine_events WHERE scope = 'serial' AND target = ?1");
            q.text(1, s);
            while (q.step()) fetched.push_back(read_event_row(q));
            for (const auto& e : fetched) events.push_back(&e);
        }
        if (!by_lot.empty() && !st.lot.empty())
            if (const auto it = by_lot.find(st.lot); it != by_lot.end())
                for (const auto& e : it->second) events.push_back(&e);
        if (!st.production_date.empty())
            for (const auto& w : windows)
                if (w.window_from <= st.production_date && st.production_date <= w.window_to) events.push_back(&w);
        decide(st, events);
    }
    return out;
}

// ---------------------------------------------------------------- genealogy

namespace {
DeviceLinkEvent read_link_row(const Q& q) {
    DeviceLinkEvent e;
    e.id = q.col_int(0);
    e.time_unix_s = q.col_real(1);
    e.action = q.col_text(2) == "unlink" ? LinkAction::unlink : LinkAction::link;
    e.device_serial = q.col_text(3);
    e.cell_serial = q.col_text(4);
    e.station_id = q.col_text(5);
    e.reason = q.col_text(6);
    e.actor = q.col_text(7);
    e.role = q.col_text(8);
    return e;
}

// Folds a device's events (oldest first) into the cells inside it now.
void apply_link(std::vector<std::string>& cells, LinkAction action, std::string cell) {
    const auto it = std::find(cells.begin(), cells.end(), cell);
    if (action == LinkAction::link) {
        if (it == cells.end()) cells.push_back(std::move(cell));
    } else if (it != cells.end()) {
        cells.erase(it);
    }
}

// One device and its events in one statement (a device has a few).
std::optional<DeviceRecord> read_device(Conn& impl, std::string_view serial, bool ref) {
    Q q(impl,
        "SELECT d.serial, d.model, d.assembled_unix_s, d.station_id, l.action, l.cell_serial FROM devices d "
        "LEFT JOIN device_links l ON l.device_serial = d.serial WHERE d.serial = ?1 ORDER BY l.id");
    if (ref) q.text_ref(1, serial);
    else q.text(1, serial);
    std::optional<DeviceRecord> out;
    while (q.step()) {
        if (!out) {
            out.emplace();
            out->device.serial = q.col_text(0);
            out->device.model = q.col_text(1);
            out->device.assembled_unix_s = q.col_real(2);
            out->device.station_id = q.col_text(3);
        }
        if (q.is_null(4)) continue;
        apply_link(out->cells, q.col_text(4) == "unlink" ? LinkAction::unlink : LinkAction::link, q.col_text(5));
    }
    return out;
}
}  // namespace

std::vector<std::int64_t> Store::append_device_links(const DeviceInfo& device,
                                                     std::span<const DeviceLinkEvent> events) {
    if (device.serial.empty()) throw StoreError("device: serial is required");
    if (device.model.empty()) throw StoreError(fmt::format("device {}: model is required", device.serial));
    const double now = now_unix_s();
    for (const auto& e : events) {
        if (e.device_serial != device.serial)
            throw StoreError(fmt::format("device {}: a link event names device '{}'", device.serial, e.device_serial));
        if (e.cell_serial.empty()) throw StoreError(fmt::format("device {}: link event without a cell serial", device.serial));
        if (e.station_id.empty()) throw StoreError(fmt::format("device {}: link event without a station id", device.serial));
        if (!std::isfinite(e.time_unix_s)) throw StoreError(fmt::format("device {}: link time must be finite", device.serial));
        if (e.action == LinkAction::unlink && (e.reason.empty() || e.actor.empty()))
            throw StoreError(fmt::format("device {}: unlinking cell {} needs a reason and an actor", device.serial,
                                         e.cell_serial));
    }
    Tx tx(*impl_);
    {
        Q q(*impl_, "SELECT model FROM devices WHERE serial = ?1");
        q.text(1, device.serial);
        if (q.step()) {
            if (q.col_text(0) != device.model)
                throw StoreError(fmt::format("device {}: is a {}, not a {}", device.serial, q.col_text(0), device.model));
        } else {
            if (device.station_id.empty()) throw StoreError(fmt::format("device {}: station id is required", device.serial));
            double t = device.assembled_unix_s;
            if (t == 0.0) t = events.empty() || events.front().time_unix_s == 0.0 ? now : events.front().time_unix_s;
            if (!std::isfinite(t)) throw StoreError(fmt::format("device {}: assembly time must be finite", device.serial));
            q.reset();
            Q ins(*impl_, "INSERT INTO devices (serial, model, assembled_unix_s, station_id) VALUES (?1, ?2, ?3, ?4)");
            ins.text(1, device.serial).text(2, device.model).real(3, t).text(4, device.station_id).run();
        }
    }
    std::vector<std::int64_t> ids;
    ids.reserve(events.size());
    Q ins(*impl_,
          "INSERT INTO device_links (time_unix_s, action, device_serial, cell_serial, station_id, reason, actor, role) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    for (const auto& e : events) {
        ins.real(1, e.time_unix_s == 0.0 ? now : e.time_unix_s)
            .text(2, to_string(e.action))
            .text(3, e.device_serial)
            .text(4, e.cell_serial)
            .text(5, e.station_id)
            .text(6, e.reason)
            .text(7, e.actor)
            .text(8, e.role)
            .run();
        ins.reset();
        ids.push_back(sqlite3_last_insert_rowid(impl_->db.get()));
    }
    tx.commit();
    return ids;
}

std::optional<DeviceRecord> Store::device(std::string_view serial) { return read_device(*impl_, serial, false); }

bool Store::any_devices() {
    if (impl_->version < 3) return false;  // a read-only open of an older store
    Q q(*impl_, "SELECT EXISTS (SELECT 1 FROM devices)");
    return q.step() && q.col_int(0) != 0;
}

std::vector<std::optional<DeviceRecord>> Store::devices_many(std::span<const std::string> serials) {
    const ReadTx snapshot(*impl_);
    std::vector<std::size_t> order(serials.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return serials[a] < serials[b]; });
    std::vector<std::optional<DeviceRecord>> out(serials.size());
    for (const std::size_t i : order) out[i] = read_device(*impl_, serials[i], true);
    return out;
}

namespace {

// Statements in two forms: from schema 5 a cell's latest verdict is on its
// row; a read-only open of an older store (never migrated) joins the run.
struct Sql {
    const char* v5;
    const char* old;
    const char* v6 = nullptr;  // from schema 6 (the device gate), when it differs
    const char* at(int version) const { return version >= 6 && v6 ? v6 : version >= 5 ? v5 : old; }
};

// A device, its link events, each linked cell and that cell's latest verdict
// in one statement: rows come device by device (the serials' order), the
// events of a device by the index device_links_device (covering).
#define EOL_DEVICE_CELLS_COLUMNS(VERDICT)                                                                       \
    " d.model, d.assembled_unix_s, d.station_id, l.id, l.action, l.cell_serial, c.serial IS NOT NULL, c.lot, " \
    "c.production_date, " VERDICT " "
#define EOL_DEVICE_CELLS_JOINS \
    " LEFT JOIN device_links l ON l.device_serial = d.serial LEFT JOIN cells c ON c.serial = l.cell_serial"
#define EOL_RUN_JOIN(C) " LEFT JOIN test_runs r ON r.id = " C ".latest_run_id"
// Schema 6: the same columns from the device gate — each cell inside now as
// the event that put it in (the fold keeps it), with its stored fields.
#define EOL_DEVICE_GATE_COLUMNS(D)                                                                         \
    D " g.link_id, 'link', g.cell_serial, g.lot IS NOT NULL, g.lot, g.production_date, g.latest_verdict "
#define EOL_DEVICE_GATE_JOIN " LEFT JOIN device_gate g ON g.device_serial = d.serial"
// Many serials: a JSON array of them (json_each keeps them the outer loop;
// k.key is the place in the array).
constexpr Sql kDeviceCellsMany{
    "SELECT k.key," EOL_DEVICE_CELLS_COLUMNS("c.latest_verdict") "FROM json_each(?1) k CROSS JOIN devices d "
    "ON d.serial = k.value" EOL_DEVICE_CELLS_JOINS,
    "SELECT k.key," EOL_DEVICE_CELLS_COLUMNS("r.verdict") "FROM json_each(?1) k CROSS JOIN devices d "
    "ON d.serial = k.value" EOL_DEVICE_CELLS_JOINS EOL_RUN_JOIN("c"),
    "SELECT k.key," EOL_DEVICE_GATE_COLUMNS(" d.model, d.assembled_unix_s, d.station_id,")
    "FROM json_each(?1) k CROSS JOIN devices d ON d.serial = k.value" EOL_DEVICE_GATE_JOIN};
// The cells of many devices without their devices rows (from schema 5: the
// bulk check): the same columns, the device's own NULL; a device without
// link events (schema 6: without cells inside now) gives no row here.
constexpr const char* kDeviceEventCellsManyV5 =
    "SELECT k.key, NULL, NULL, NULL, l.id, l.action, l.cell_serial, c.serial IS NOT NULL, c.lot, "
    "c.production_date, c.latest_verdict FROM json_each(?1) k CROSS JOIN device_links l "
    "ON l.device_serial = k.value LEFT JOIN cells c ON c.serial = l.cell_serial";
constexpr Sql kDeviceEventCellsMany{
    kDeviceEventCellsManyV5, kDeviceEventCellsManyV5,
    "SELECT k.key," EOL_DEVICE_GATE_COLUMNS(" NULL, NULL, NULL,")
    "FROM json_each(?1) k CROSS JOIN device_gate g ON g.device_serial = k.value"};
constexpr Sql kDeviceCellsOne{
    "SELECT 0," EOL_DEVICE_CELLS_COLUMNS("c.latest_verdict") "FROM devices d" EOL_DEVICE_CELLS_JOINS
    " WHERE d.serial = ?1",
    "SELECT 0," EOL_DEVICE_CELLS_COLUMNS("r.verdict") "FROM devices d" EOL_DEVICE_CELLS_JOINS EOL_RUN_JOIN("c")
    " WHERE d.serial = ?1",
    "SELECT 0," EOL_DEVICE_GATE_COLUMNS(" d.model, d.assembled_unix_s, d.station_id,")
    "FROM devices d" EOL_DEVICE_GATE_JOIN " WHERE d.serial = ?1"};
// The ship gate's fields of cells (Store::gate_cell, for_each_gate_cell).
constexpr Sql kGateCellOne{
    "SELECT lot, production_date, latest_verdict FROM cells WHERE serial = ?1",
    "SELECT c.lot, c.production_date, r.verdict FROM cells c" EOL_RUN_JOIN("c") " WHERE c.serial = ?1"};
constexpr Sql kGateCellsMany{
    "SELECT k.key, c.lot, c.production_date, c.latest_verdict FROM json_each(?1) k CROSS JOIN cells c "
    "ON c.serial = k.value",
    "SELECT k.key, c.lot, c.production_date, r.verdict FROM json_each(?1) k CROSS JOIN cells c "
    "ON c.serial = k.value" EOL_RUN_JOIN("c")};
#undef EOL_DEVICE_CELLS_COLUMNS
#undef EOL_DEVICE_CELLS_JOINS
#undef EOL_DEVICE_GATE_COLUMNS
#undef EOL_DEVICE_GATE_JOIN
#undef EOL_RUN_JOIN
// A cell and the device it is inside now (its latest link event, if not
// undone): the recall list's rows (for_each_linked_cell).
#define EOL_LINKED_SELECT                                                                                      \
    "SELECT c.serial, c.cell_model, c.lot, c.production_date, c.latest_run_id, d.serial, d.model, "           \
    "d.assembled_unix_s, d.station_id FROM "
#define EOL_LINKED_JOINS                                                                                        \
    " JOIN device_links l ON l.id = (SELECT max(x.id) FROM device_links x WHERE x.cell_serial = c.serial) "   \
    "JOIN devices d ON d.serial = l.device_serial WHERE l.action = 'link' "
constexpr const char* kLinkedMany =
    EOL_LINKED_SELECT "json_each(?1) k CROSS JOIN cells c ON c.serial = k.value" EOL_LINKED_JOINS;
#undef EOL_LINKED_SELECT
#undef EOL_LINKED_JOINS

std::string_view column_view(sqlite3_stmt* s, int c) {
    const auto* p = sqlite3_column_text(s, c);
    return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(s, c)))
             : std::string_view();
}

std::optional<Verdict> column_verdict(sqlite3_stmt* s, int c) {
    return sqlite3_column_type(s, c) == SQLITE_NULL ? std::nullopt : verdict_from_string(column_view(s, c));
}

// A JSON array of get(j) for j in [from, to): a bulk statement's ?1.
template <typename Get>
std::string json_array(std::size_t from, std::size_t to, Get&& get) {
    std::string json = "[";
    json.reserve((to - from) * 19 + 2);
    for (std::size_t j = from; j < to; ++j) {
        if (j > from) json.push_back(',');
        append_json_string(json, get(j));
    }
    json.push_back(']');
    return json;
}

// Resets and unbinds a statement when the scope ends (it then holds no
// snapshot), also when a visitor throws.
struct ResetGuard {
    sqlite3_stmt* s;
    ~ResetGuard() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
};

// The places of `serials` in ascending byte order: sorted on the first 16
// bytes as two big-endian words (memcmp's order, without a call per
// comparison), ties on the whole serial.
std::vector<std::uint32_t> key_order(std::span<const std::string> serials, const std::filesystem::path& path) {
    if (serials.size() > std::numeric_limits<std::uint32_t>::max())
        throw StoreError(fmt::format("{}: {} serials in one read, at most {}", path.string(), serials.size(),
                                     std::numeric_limits<std::uint32_t>::max()));
    struct Key {
        std::uint64_t hi, lo;
        std::uint32_t i;
    };
    std::vector<Key> keys(serials.size());
    for (std::size_t i = 0; i < serials.size(); ++i) {
        std::array<char, 16> k{};
        std::memcpy(k.data(), serials[i].data(), std::min<std::size_t>(16, serials[i].size()));
        std::uint64_t hi, lo;
        std::memcpy(&hi, k.data(), 8);
        std::memcpy(&lo, k.data() + 8, 8);
        if constexpr (std::endian::native == std::endian::little) {
            hi = __builtin_bswap64(hi);
            lo = __builtin_bswap64(lo);
        }
        keys[i] = Key{hi, lo, static_cast<std::uint32_t>(i)};
    }
    std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
        if (a.hi != b.hi) return a.hi < b.hi;
        if (a.lo != b.lo) return a.lo < b.lo;
        return serials[a.i] < serials[b.i];
    });
    std::vector<std::uint32_t> order(serials.size());
    for (std::size_t j = 0; j < keys.size(); ++j) order[j] = keys[j].i;
    return order;
}

// Folds the rows of kDeviceCells* (device after device) into DeviceCells and
// hands each finished device to `visit` with its place in the statement's
// input. Reuses its buffers from device to device.
class DeviceCellsFolder {
public:
    explicit DeviceCellsFolder(const std::function<void(std::size_t, const DeviceCells&)>& visit) : visit_(visit) {}

    void row(sqlite3_stmt* s) {
        const auto key = static_cast<std::size_t>(sqlite3_column_int64(s, 0));
        if (key != key_) {
            flush();
            key_ = key;
            open_ = true;
            cur_.device.model.assign(column_view(s, 1));
            cur_.device.assembled_unix_s = sqlite3_column_double(s, 2);
            cur_.device.station_id.assign(column_view(s, 3));
            events_.clear();
        }
        if (sqlite3_column_type(s, 4) == SQLITE_NULL) return;  // a device without events
        if (events_.size() == pool_.size()) pool_.emplace_back();
        Event& e = events_.emplace_back();
        e.id = sqlite3_column_int64(s, 4);
        e.link = column_view(s, 5) != "unlink";
        e.cell = events_.size() - 1;
        DeviceCell& c = pool_[e.cell];
        c.serial.assign(column_view(s, 6));
        c.known = sqlite3_column_int(s, 7) != 0;
        c.lot.assign(column_view(s, 8));
        c.production_date.assign(column_view(s, 9));
        c.verdict = column_verdict(s, 10);
    }
    /// The last device (call when the statement is done).
    void flush() {
        if (!open_) return;
        open_ = false;
        // Events oldest first (the index gives them so; not relied upon).
        if (!std::is_sorted(events_.begin(), events_.end(), [](const Event& a, const Event& b) { return a.id < b.id; }))
            std::sort(events_.begin(), events_.end(), [](const Event& a, const Event& b) { return a.id < b.id; });
        // As apply_link: a link adds a cell not yet inside, an unlink removes
        // it (folded on indices; the cells inside are then swapped into the
        // reused buffer: no copy, and every string keeps a capacity).
        now_.clear();
        for (const Event& e : events_) {
            const auto it = std::find_if(now_.begin(), now_.end(),
                                         [&](std::size_t x) { return pool_[x].serial == pool_[e.cell].serial; });
            if (e.link) {
                if (it == now_.end()) now_.push_back(e.cell);
            } else if (it != now_.end()) {
                now_.erase(it);
            }
        }
        cur_.cells.resize(now_.size());
        for (std::size_t j = 0; j < now_.size(); ++j) std::swap(cur_.cells[j], pool_[now_[j]]);  // distinct indices
        visit_(key_, cur_);
    }
    /// The serial of the device being folded is the caller's: set before visit.
    DeviceCells& current() { return cur_; }

private:
    struct Event {
        std::int64_t id = 0;
        bool link = true;
        std::size_t cell = 0;  // into pool_
    };
    const std::function<void(std::size_t, const DeviceCells&)>& visit_;
    DeviceCells cur_;
    std::vector<Event> events_;
    std::vector<DeviceCell> pool_;     // the cells of events_, by Event::cell
    std::vector<std::size_t> now_;     // into pool_: the cells inside now
    std::size_t key_ = static_cast<std::size_t>(-1);
    bool open_ = false;
};

// ---- the merge walk (for_each_device_cells on the bulk readers, schema 5)
//
// Instead of one statement joining each device to its links and cells (5
// B-tree searches a device), three statements read in key order and are
// walked forward beside the sorted serials: devices, the device_links_device
// index, then the cells of the devices (sorted). Near keys are reached by
// stepping (the next rows of the same leaf pages), far ones by a new search.

// A statement `... WHERE key >= ?1 ORDER BY key ...` (column 0 the key, as
// text) walked forward: to(t) leaves it on the first row whose key is >= t —
// by stepping when t is at most kMaxSteps rows ahead, else by a new search
// (reset, bind, step), also when t is behind.
class KeyWalk {
public:
    static constexpr int kMaxSteps = 24;  // about what a new search costs

    KeyWalk(sqlite3_stmt* s, const std::function<void()>& fail) : s_(s), fail_(fail) {}
    KeyWalk(const KeyWalk&) = delete;
    KeyWalk& operator=(const KeyWalk&) = delete;
    ~KeyWalk() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    /// True when it is now on a row whose key is t.
    bool to(std::string_view t) {
        if (!started_ || (!done_ && key_ > t)) return seek(t);
        for (int n = 0; !done_ && key_ < t; ++n) {
            if (n == kMaxSteps) return seek(t);
            step();
        }
        return !done_ && key_ == t;
    }
    bool on(std::string_view t) const { return started_ && !done_ && key_ == t; }
    void next() { step(); }
    sqlite3_stmt* row() const { return s_; }

private:
    bool seek(std::string_view t) {
        sqlite3_reset(s_);
        if (sqlite3_bind_text64(s_, 1, t.data(), t.size(), SQLITE_TRANSIENT, SQLITE_UTF8) != SQLITE_OK) fail_();
        started_ = true;
        step();
        return !done_ && key_ == t;
    }
    void step() {
        const int rc = sqlite3_step(s_);
        if (rc == SQLITE_ROW) {
            key_ = column_view(s_, 0);
            return;
        }
        if (rc != SQLITE_DONE) fail_();
        done_ = true;
        key_ = {};
    }
    sqlite3_stmt* s_;
    const std::function<void()>& fail_;
    std::string_view key_;  // valid until the next step
    bool started_ = false, done_ = false;
};

// The share of the table from which the walk is used (Store::for_each_device_cells).
constexpr std::int64_t kWalkRowsPerDevice = 8;

constexpr const char* kWalkDevices =
    "SELECT serial, model, assembled_unix_s, station_id FROM devices WHERE serial >= ?1 ORDER BY serial";
constexpr const char* kWalkLinks =
    "SELECT device_serial, id, action, cell_serial FROM device_links INDEXED BY device_links_device "
    "WHERE device_serial >= ?1 ORDER BY device_serial, id";
constexpr const char* kWalkCells =
    "SELECT serial, lot, production_date, latest_verdict FROM cells WHERE serial >= ?1 ORDER BY serial";

// The walk of one slice: `keys` (sorted; repeats adjacent) in chunks, each
// device handed to visit(j, device) with j its place in `keys`. The
// statements must be read in one snapshot (the caller's transaction).
class DeviceWalk {
public:
    DeviceWalk(sqlite3_stmt* devices, sqlite3_stmt* links, sqlite3_stmt* cells, const std::function<void()>& fail)
        : devices_(devices, fail), links_(links, fail), cells_(cells, fail) {}

    template <typename Key, typename Visit>
    void run(std::size_t n, Key&& key, Visit&& visit) {
        constexpr std::size_t kChunk = 4096;  // distinct devices read before their cells
        std::size_t j = 0;
        while (j < n) {
            // Phase 1: the chunk's distinct devices and the cells inside them now.
            used_ = 0;
            first_.clear();
            refs_.clear();
            const std::size_t begin = j;
            for (; j < n; ++j) {
                const std::string& serial = key(j);
                if (j > begin && key(j - 1) == serial) continue;  // a repeat: visited with the first
                if (used_ >= kChunk) break;                       // a chunk ends between two serials
                if (!devices_.to(serial)) continue;  // unknown: never visited
                if (used_ == buf_.size()) buf_.emplace_back();
                DeviceCells& d = buf_[used_++];
                first_.push_back(j);
                d.device.serial.assign(serial);
                d.device.model.assign(column_view(devices_.row(), 1));
                d.device.assembled_unix_s = sqlite3_column_double(devices_.row(), 2);
                d.device.station_id.assign(column_view(devices_.row(), 3));
                fold_links(serial, d);
            }
            // Phase 2: the cells, in key order.
            std::sort(refs_.begin(), refs_.end(), [&](const Ref& a, const Ref& b) { return cell(a).serial < cell(b).serial; });
            for (const Ref& r : refs_) {
                DeviceCell& c = cell(r);
                c.known = cells_.to(c.serial);
                if (!c.known) {
                    c.lot.clear();
                    c.production_date.clear();
                    c.verdict.reset();
                    continue;
                }
                c.lot.assign(column_view(cells_.row(), 1));
                c.production_date.assign(column_view(cells_.row(), 2));
                c.verdict = column_verdict(cells_.row(), 3);
            }
            // Phase 3: each device, to each of its places.
            for (std::size_t u = 0; u < used_; ++u) {
                const std::string& serial = key(first_[u]);
                for (std::size_t i = first_[u]; i < j && key(i) == serial; ++i) visit(i, buf_[u]);
            }
        }
    }

private:
    struct Ref {
        std::uint32_t device, cell;  // into buf_, its cells
    };
    struct Event {
        std::int64_t id = 0;
        bool link = true;
        std::string cell;
    };
    DeviceCell& cell(const Ref& r) { return buf_[r.device].cells[r.cell]; }

    // A device's link events (oldest first: the index's order) folded into
    // the cells inside it now, as apply_link / DeviceCellsFolder fold them.
    void fold_links(const std::string& serial, DeviceCells& d) {
        std::size_t n = 0;
        for (bool on = links_.to(serial); on; on = (links_.next(), links_.on(serial))) {
            if (n == events_.size()) events_.emplace_back();
            Event& e = events_[n++];
            e.id = sqlite3_column_int64(links_.row(), 1);
            e.link = column_view(links_.row(), 2) != "unlink";
            e.cell.assign(column_view(links_.row(), 3));
        }
        if (!std::is_sorted(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(n),
                            [](const Event& a, const Event& b) { return a.id < b.id; }))
            std::sort(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(n),
                      [](const Event& a, const Event& b) { return a.id < b.id; });
        now_.clear();
        for (std::size_t k = 0; k < n; ++k) {
            const Event& e = events_[k];
            const auto it = std::find_if(now_.begin(), now_.end(), [&](std::size_t x) { return events_[x].cell == e.cell; });
            if (e.link) {
                if (it == now_.end()) now_.push_back(k);
            } else if (it != now_.end()) {
                now_.erase(it);
            }
        }
        d.cells.resize(now_.size());
        for (std::size_t c = 0; c < now_.size(); ++c) {
            d.cells[c].serial.assign(events_[now_[c]].cell);
            refs_.push_back(Ref{static_cast<std::uint32_t>(used_ - 1), static_cast<std::uint32_t>(c)});
        }
    }

    KeyWalk devices_, links_, cells_;
    std::vector<DeviceCells> buf_;        // the chunk's devices (reused: strings keep their capacity)
    std::size_t used_ = 0;                // of buf_
    std::vector<std::size_t> first_;      // the first place in `keys` of each device of the chunk
    std::vector<Ref> refs_;               // the chunk's cells
    std::vector<Event> events_;           // one device's events (reused)
    std::vector<std::size_t> now_;        // into events_: the cells inside now
};

constexpr std::size_t kBulkThreshold = 256;  // fewer serials: the store's own connection

}  // namespace

std::size_t Store::bulk_readers(std::size_t n) {
    if (n < kBulkThreshold || impl_->no_readers || impl_->tx_depth > 0 || !sqlite3_get_autocommit(impl_->db.get()))
        return 0;
    const std::size_t hw = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t parts = std::clamp<std::size_t>(n / kBulkThreshold, 1, std::min<std::size_t>(hw, 4));
    while (impl_->readers.size() < parts) {
        auto r = std::make_unique<Reader>(impl_->path, impl_->reader_cache_bytes);
        if (!r->ok()) {
            impl_->no_readers = true;
            impl_->readers.clear();
            return 0;
        }
        impl_->readers.push_back(std::move(r));
    }
    return parts;
}

std::optional<DeviceCell> Store::gate_cell(std::string_view serial) {
    Q q(*impl_, kGateCellOne.at(impl_->version));
    q.text_ref(1, serial);
    if (!q.step()) return std::nullopt;
    DeviceCell c;
    c.serial = std::string(serial);
    c.known = true;
    c.lot = q.col_text(0);
    c.production_date = q.col_text(1);
    c.verdict = column_verdict(q.raw(), 2);
    return c;
}

void Store::for_each_gate_cell(std::span<const std::string_view> serials,
                               const std::function<void(std::size_t, std::size_t, const DeviceCell*)>& visit) {
    if (serials.empty()) return;
    const char* sql = kGateCellsMany.at(impl_->version);
    // Slice [from, to) through `s`: every place visited in order, the ones
    // without a row (no such cell) with nullptr.
    auto read_slice = [&](std::size_t slice, sqlite3_stmt* s, std::size_t from, std::size_t to, auto&& fail) {
        const std::string json = json_array(from, to, [&](std::size_t j) { return serials[j]; });
        if (sqlite3_bind_text64(s, 1, json.data(), json.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK) fail();
        DeviceCell cell;
        cell.known = true;
        std::size_t next = from;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const std::size_t j = from + static_cast<std::size_t>(sqlite3_column_int64(s, 0));
            for (; next < j; ++next) visit(slice, next, nullptr);
            cell.lot.assign(column_view(s, 1));
            cell.production_date.assign(column_view(s, 2));
            cell.verdict = column_verdict(s, 3);
            visit(slice, next++, &cell);
        }
        if (rc != SQLITE_DONE) fail();
        for (; next < to; ++next) visit(slice, next, nullptr);
    };
    const std::size_t parts = bulk_readers(serials.size());
    if (parts == 0) {  // one statement: one snapshot
        Q q(*impl_, sql);
        read_slice(0, q.raw(), 0, serials.size(), [&] { impl_->fail("reading cells"); });
        return;
    }
    in_parallel(parts, [&](std::size_t t) {
        Reader& r = *impl_->readers[t];
        sqlite3_stmt* s = r.statement(sql);
        const ResetGuard reset{s};
        read_slice(t, s, t * serials.size() / parts, (t + 1) * serials.size() / parts,
                   [&] { r.fail("reading cells"); });
    });
}

void Store::for_each_device_cells(std::span<const std::string> serials,
                                  const std::function<void(std::size_t, std::size_t, const DeviceCells&)>& visit,
                                  bool device_fields) {
    if (serials.empty() || impl_->version < 3) return;
    // One statement is one snapshot: no read transaction around it.
    if (serials.size() == 1) {  // the single lookup: no JSON, the cached statement
        Q q(*impl_, kDeviceCellsOne.at(impl_->version));
        q.text_ref(1, serials[0]);
        const std::function<void(std::size_t, const DeviceCells&)> to_caller = [&](std::size_t k,
                                                                                   const DeviceCells& d) {
            visit(0, k, d);
        };
        DeviceCellsFolder fold(to_caller);
        fold.current().device.serial = serials[0];
        while (q.step()) fold.row(q.raw());
        fold.flush();
        return;
    }
    // Key order: neighbouring devices share pages; each slice is a contiguous
    // range of keys.
    const std::vector<std::uint32_t> order = key_order(serials, impl_->path);
    const char* sql = kDeviceCellsMany.at(impl_->version);

    // Slice [from, to) of `order` through `s` (a kDeviceCellsMany or
    // kDeviceEventCellsMany statement); `seen` (optional) marks each caller's
    // index visited.
    auto read_slice = [&](std::size_t slice, sqlite3_stmt* s, std::size_t from, std::size_t to, auto&& fail,
                          std::vector<char>* seen = nullptr) {
        const std::string json = json_array(from, to, [&](std::size_t j) -> const std::string& { return serials[order[j]]; });
        // The visitor is told the caller's index, and sees the serial as given.
        const std::function<void(std::size_t, const DeviceCells&)> to_caller = [&](std::size_t k,
                                                                                   const DeviceCells& d) {
            if (seen) (*seen)[order[from + k]] = 1;
            visit(slice, order[from + k], d);
        };
        DeviceCellsFolder fold(to_caller);
        if (sqlite3_bind_text64(s, 1, json.data(), json.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK) fail();
        int rc;
        std::size_t last = static_cast<std::size_t>(-1);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const auto k = static_cast<std::size_t>(sqlite3_column_int64(s, 0));
            if (k != last) {
                fold.flush();  // before the serial changes
                fold.current().device.serial = serials[order[from + k]];
                last = k;
            }
            fold.row(s);
        }
        if (rc != SQLITE_DONE) fail();
        fold.flush();
    };

    const std::size_t parts = bulk_readers(serials.size());
    if (parts == 0) {
        Q q(*impl_, sql);
        read_slice(0, q.raw(), 0, order.size(), [&] { impl_->fail("reading devices and their cells"); });
        return;
    }
    // The merge walk when the batch is a large share of the devices: at most
    // kWalkRowsPerDevice link events (of the whole table) a distinct serial,
    // so that the walk steps through near rows instead of searching; else
    // (a smaller share: the rows between two serials are more than a search
    // costs) one search each. Schema 5: the cell's verdict is on its row.
    // Schema 6, cells only: never — one search of the device gate gives a
    // device's cells with their fields (as fast as the walk at 1 M devices,
    // and it reads one narrow table instead of three).
    const bool cells_only = !device_fields && impl_->version >= 5;
    std::size_t distinct = order.empty() ? 0 : 1;
    for (std::size_t j = 1; j < order.size(); ++j) distinct += serials[order[j]] != serials[order[j - 1]];
    const auto link_events = [&] {
        Q q(*impl_, "SELECT max(id) FROM device_links");  // ≥ the rows: one search
        return q.step() ? q.col_int(0) : 0;
    };
    if (impl_->version >= 5 && !(cells_only && impl_->version >= 6) &&
        static_cast<std::int64_t>(distinct) * kWalkRowsPerDevice >= link_events()) {
        // One read transaction per slice (one snapshot).
        in_parallel(parts, [&](std::size_t t) {
            Reader& r = *impl_->readers[t];
            const std::function<void()> fail = [&] { r.fail("reading devices and their cells"); };
            const std::size_t from = t * order.size() / parts, to = (t + 1) * order.size() / parts;
            r.begin();
            try {
                DeviceWalk walk(r.statement(kWalkDevices), r.statement(kWalkLinks), r.statement(kWalkCells), fail);
                walk.run(
                    to - from, [&](std::size_t j) -> const std::string& { return serials[order[from + j]]; },
                    [&](std::size_t j, const DeviceCells& d) { visit(t, order[from + j], d); });
            } catch (...) {
                r.end();
                throw;
            }
            r.end();
        });
        return;
    }
    // Cells only (from schema 5): the link events and cells of each serial
    // (a device with events exists; schema 6: its rows of the device gate,
    // a device with a cell inside exists), then the serials without any
    // through the full statement (unknown ones stay unvisited; known empty
    // ones are visited).
    std::vector<char> seen(cells_only ? serials.size() : 0, 0);  // by the caller's index: distinct, no race
    in_parallel(parts, [&](std::size_t t) {
        Reader& r = *impl_->readers[t];
        sqlite3_stmt* s = r.statement(cells_only ? kDeviceEventCellsMany.at(impl_->version) : sql);
        const ResetGuard reset{s};
        read_slice(t, s, t * order.size() / parts, (t + 1) * order.size() / parts,
                   [&] { r.fail("reading devices and their cells"); }, cells_only ? &seen : nullptr);
    });
    if (!cells_only) return;
    // Unknown serials and known devices without events (few): the full read.
    std::vector<std::string> rest;
    std::vector<std::size_t> rest_index;
    for (std::size_t i = 0; i < serials.size(); ++i)
        if (!seen[i]) {
            rest.push_back(serials[i]);
            rest_index.push_back(i);
        }
    if (rest.empty()) return;
    for_each_device_cells(
        rest, [&](std::size_t slice, std::size_t j, const DeviceCells& d) { visit(slice, rest_index[j], d); }, true);
}

std::optional<std::string> Store::device_of_cell(std::string_view cell_serial) {
    Q q(*impl_, "SELECT action, device_serial FROM device_links WHERE cell_serial = ?1 ORDER BY id DESC LIMIT 1");
    q.text(1, cell_serial);
    if (!q.step() || q.col_text(0) != "link") return std::nullopt;
    return q.col_text(1);
}

std::vector<DeviceLinkEvent> Store::device_history(std::string_view device_serial) {
    Q q(*impl_, "SELECT id, time_unix_s, action, device_serial, cell_serial, station_id, reason, actor, role "
                "FROM device_links WHERE device_serial = ?1 ORDER BY id");
    q.text(1, device_serial);
    std::vector<DeviceLinkEvent> out;
    while (q.step()) out.push_back(read_link_row(q));
    return out;
}

std::vector<DeviceLinkEvent> Store::cell_link_history(std::string_view cell_serial) {
    Q q(*impl_, "SELECT id, time_unix_s, action, device_serial, cell_serial, station_id, reason, actor, role "
                "FROM device_links WHERE cell_serial = ?1 ORDER BY id");
    q.text(1, cell_serial);
    std::vector<DeviceLinkEvent> out;
    while (q.step()) out.push_back(read_link_row(q));
    return out;
}

void Store::for_each_linked_cell(const CellFilter& filter,
                                 const std::function<void(const CellInfo&, const DeviceInfo&)>& visit) {
    const FilterBounds b = bounds(filter);
    // The cells of the filter: their serials from an index (lot or
    // production date), kept end to end in one buffer.
    std::string arena;
    std::vector<std::size_t> ends;
    auto serial_at = [&](std::size_t j) {
        const std::size_t from = j == 0 ? 0 : ends[j - 1];
        return std::string_view(arena).substr(from, ends[j] - from);
    };
    // The rows of a slice [from, to) through `s` (kLinkedMany).
    auto read_slice = [&](sqlite3_stmt* s, std::size_t from, std::size_t to, auto&& fail, auto&& deliver) {
        const std::string json = json_array(from, to, serial_at);
        if (sqlite3_bind_text64(s, 1, json.data(), json.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK) fail();
        CellInfo c;
        DeviceInfo d;
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            c.serial.assign(column_view(s, 0));
            c.cell_model.assign(column_view(s, 1));
            c.lot.assign(column_view(s, 2));
            c.production_date.assign(column_view(s, 3));
            c.latest_run_id = sqlite3_column_type(s, 4) == SQLITE_NULL
                                  ? std::nullopt
                                  : std::optional<std::int64_t>(sqlite3_column_int64(s, 4));
            d.serial.assign(column_view(s, 5));
            d.model.assign(column_view(s, 6));
            d.assembled_unix_s = sqlite3_column_double(s, 7);
            d.station_id.assign(column_view(s, 8));
            deliver(c, d);
        }
        if (rc != SQLITE_DONE) fail();
    };
    auto list = [&] {
        auto collect = [&](Q& q) {
            while (q.step()) {
                const auto* p = sqlite3_column_text(q.raw(), 0);
                arena.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(q.raw(), 0)));
                ends.push_back(arena.size());
            }
        };
        if (filter.lot) {
            Q q(*impl_, "SELECT serial FROM cells WHERE lot = ?1 AND production_date BETWEEN ?2 AND ?3");
            q.text(1, *filter.lot).text(2, b.from).text(3, b.to);
            collect(q);
        } else if (b.all) {
            Q q(*impl_, "SELECT serial FROM cells");
            collect(q);
        } else {
            Q q(*impl_, "SELECT serial FROM cells WHERE production_date BETWEEN ?1 AND ?2");
            q.text(1, b.from).text(2, b.to);
            collect(q);
        }
    };
    const bool in_tx = impl_->tx_depth > 0 || !sqlite3_get_autocommit(impl_->db.get());
    {
        const ReadTx snapshot(*impl_);
        list();
        if (in_tx || ends.size() < kBulkThreshold) {  // this connection, the same snapshot
            Q q(*impl_, kLinkedMany);
            read_slice(q.raw(), 0, ends.size(), [&] { impl_->fail("reading the devices of cells"); }, visit);
            return;
        }
    }
    // In parallel, key range by key range (the serials come in production
    // date order, which the serial schemes follow), each slice in its own
    // snapshot; a cell's lot and production date, once set, never change.
    // The visitor is called by one thread at a time.
    const std::size_t parts = bulk_readers(ends.size());
    if (parts == 0) {  // no second connection to this file: this one, in a snapshot of its own
        Q q(*impl_, kLinkedMany);
        read_slice(q.raw(), 0, ends.size(), [&] { impl_->fail("reading the devices of cells"); }, visit);
        return;
    }
    // Each thread hands its rows over in batches (one lock per batch; the
    // batch's strings are reused).
    std::mutex one_at_a_time;
    in_parallel(parts, [&](std::size_t t) {
        Reader& r = *impl_->readers[t];
        sqlite3_stmt* s = r.statement(kLinkedMany);
        const ResetGuard reset{s};
        std::vector<std::pair<CellInfo, DeviceInfo>> batch(1024);
        std::size_t n = 0;
        auto hand_over = [&] {
            const std::lock_guard lock(one_at_a_time);
            for (std::size_t k = 0; k < n; ++k) visit(batch[k].first, batch[k].second);
            n = 0;
        };
        read_slice(s, t * ends.size() / parts, (t + 1) * ends.size() / parts,
                   [&] { r.fail("reading the devices of cells"); },
                   [&](const CellInfo& c, const DeviceInfo& d) {
                       auto& [bc, bd] = batch[n++];
                       bc.serial.assign(c.serial);
                       bc.cell_model.assign(c.cell_model);
                       bc.lot.assign(c.lot);
                       bc.production_date.assign(c.production_date);
                       bc.latest_run_id = c.latest_run_id;
                       bd.serial.assign(d.serial);
                       bd.model.assign(d.model);
                       bd.assembled_unix_s = d.assembled_unix_s;
                       bd.station_id.assign(d.station_id);
                       if (n == batch.size()) hand_over();
                   });
        hand_over();
    });
}

// ---------------------------------------------------------------- station events

std::int64_t Store::append_station_event(const StationEvent& event) {
    Tx tx(*impl_);
    Q ins(*impl_,
          "INSERT INTO station_events (time_unix_s, station_id, kind, message, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
    ins.real(1, event.time_unix_s == 0.0 ? now_unix_s() : event.time_unix_s)
        .text(2, event.station_id)
        .text(3, event.kind)
        .text(4, event.message)
        .text(5, event.detail_json.empty() ? std::string_view("{}") : std::string_view(event.detail_json))
        .run();
    const std::int64_t id = sqlite3_last_insert_rowid(impl_->db.get());
    tx.commit();
    return id;
}

Store::StationCounts Store::station_counts_since(std::string_view station_id, double since_unix_s) {
    StationCounts c;
    Q q(*impl_,
        "SELECT CASE WHEN r.verdict IN ('pass', 'fail') AND EXISTS (SELECT 1 FROM quarantine_events e "
        "  WHERE e.scope = 'serial' AND e.target = r.serial AND e.action = 'hold' AND e.role = 'station' "
        "  AND e.reason NOT LIKE 'hazardous:%' AND e.time_unix_s >= r.start_unix_s) THEN 'hold' ELSE r.verdict END, "
        "count(*) FROM test_runs r WHERE r.station_id = ?1 AND r.end_unix_s >= ?2 GROUP BY 1");
    q.text(1, station_id).real(2, since_unix_s);
    while (q.step()) {
        const std::string v = q.col_text(0);
        const std::int64_t n = q.col_int(1);
        c.tested += n;
        if (v == "pass") c.pass += n;
        else if (v == "fail") c.fail += n;
        else if (v == "hold") c.hold += n;
        else if (v == "abort") c.abort += n;
        else c.error += n;
    }
    Q h(*impl_, "SELECT count(*) FROM station_events WHERE station_id = ?1 AND kind = 'hold_at_test' AND time_unix_s >= ?2");
    h.text(1, station_id).real(2, since_unix_s);
    if (h.step()) {
        c.tested += h.col_int(0);
        c.hold += h.col_int(0);
    }
    return c;
}

namespace {
// The rows of a SELECT id, time_unix_s, station_id, kind, message, detail.
std::vector<StationEvent> station_event_rows(Q& q) {
    std::vector<StationEvent> out;
    while (q.step()) {
        StationEvent e;
        e.id = q.col_int(0);
        e.time_unix_s = q.col_real(1);
        e.station_id = q.col_text(2);
        e.kind = q.col_text(3);
        e.message = q.col_text(4);
        e.detail_json = q.col_text(5);
        out.push_back(std::move(e));
    }
    return out;
}
}  // namespace

std::vector<StationEvent> Store::station_events(std::size_t limit) {
    Q q(*impl_,
        "SELECT id, time_unix_s, station_id, kind, message, detail FROM station_events ORDER BY id DESC LIMIT ?1");
    q.int64(1, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
    return station_event_rows(q);
}

std::vector<StationEvent> Store::station_events_of(std::string_view station_id, std::string_view kind) {
    Q q(*impl_,
        "SELECT id, time_unix_s, station_id, kind, message, detail FROM station_events "
        "WHERE station_id = ?1 AND kind = ?2 ORDER BY id");
    q.text(1, station_id);
    q.text(2, kind);
    return station_event_rows(q);
}

// ---------------------------------------------------------------- users (migration 4)

namespace {
UserRecord user_row(const Q& q) {
    UserRecord u;
    u.name = q.col_text(0);
    u.role = q.col_text(1);
    u.password_hash = q.col_text(2);
    u.disabled = q.col_int(3) != 0;
    u.created_unix_s = q.col_real(4);
    u.changed_unix_s = q.col_real(5);
    return u;
}
}  // namespace

std::int64_t Store::user_count() { return impl_->pragma_int("SELECT count(*) FROM users"); }

std::optional<UserRecord> Store::user(std::string_view name) {
    Q q(*impl_, "SELECT name, role, password_hash, disabled, created_unix_s, changed_unix_s FROM users WHERE name = ?1");
    q.text(1, name);
    if (!q.step()) return std::nullopt;
    return user_row(q);
}

std::vector<UserRecord> Store::users() {
    Q q(*impl_, "SELECT name, role, password_hash, disabled, created_unix_s, changed_unix_s FROM users ORDER BY name");
    std::vector<UserRecord> out;
    while (q.step()) out.push_back(user_row(q));
    return out;
}

void Store::add_user(const UserRecord& u) {
    if (u.name.empty() || u.role.empty() || u.password_hash.empty())
        throw StoreError("add_user: name, role and password hash are required");
    Tx tx(*impl_);
    {
        Q probe(*impl_, "SELECT 1 FROM users WHERE name = ?1");
        probe.text(1, u.name);
        if (probe.step()) throw StoreError(fmt::format("add_user: user '{}' already exists", u.name));
    }
    const double t = u.created_unix_s == 0.0 ? now_unix_s() : u.created_unix_s;
    Q ins(*impl_,
          "INSERT INTO users (name, role, password_hash, disabled, created_unix_s, changed_unix_s) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    ins.text(1, u.name).text(2, u.role).text(3, u.password_hash).int64(4, u.disabled ? 1 : 0).real(5, t).real(
        6, u.changed_unix_s == 0.0 ? t : u.changed_unix_s);
    ins.run();
    tx.commit();
}

void Store::update_user(std::string_view name, const std::optional<std::string>& password_hash,
                        std::optional<bool> disabled, double time_unix_s) {
    Tx tx(*impl_);
    const double t = time_unix_s == 0.0 ? now_unix_s() : time_unix_s;
    Q up(*impl_,
         "UPDATE users SET password_hash = coalesce(?2, password_hash), disabled = coalesce(?3, disabled), "
         "changed_unix_s = ?4 WHERE name = ?1");
    up.text(1, name);
    if (password_hash) up.text(2, *password_hash);
    else up.null(2);
    if (disabled) up.int64(3, *disabled ? 1 : 0);
    else up.null(3);
    up.real(4, t).run();
    if (sqlite3_changes(impl_->db.get()) != 1) throw StoreError(fmt::format("update_user: no user '{}'", name));
    tx.commit();
}

void Store::add_session(const SessionRecord& s) {
    Tx tx(*impl_);
    Q ins(*impl_,
          "INSERT INTO sessions (token_hash, user_name, created_unix_s, expires_unix_s) VALUES (?1, ?2, ?3, ?4)");
    ins.text(1, s.token_hash).text(2, s.user_name).real(3, s.created_unix_s).real(4, s.expires_unix_s).run();
    tx.commit();
}

std::optional<SessionRecord> Store::session(std::string_view token_hash) {
    Q q(*impl_, "SELECT token_hash, user_name, created_unix_s, expires_unix_s FROM sessions WHERE token_hash = ?1");
    q.text(1, token_hash);
    if (!q.step()) return std::nullopt;
    return SessionRecord{q.col_text(0), q.col_text(1), q.col_real(2), q.col_real(3)};
}

bool Store::end_session(std::string_view token_hash, double at_unix_s) {
    Tx tx(*impl_);
    // The schema demands expires > created: a session ended in the instant
    // it began ends a microsecond after it.
    Q up(*impl_,
         "UPDATE sessions SET expires_unix_s = max(created_unix_s + 1e-6, ?2) "
         "WHERE token_hash = ?1 AND expires_unix_s > ?2");
    up.text(1, token_hash).real(2, at_unix_s).run();
    const bool ended = sqlite3_changes(impl_->db.get()) == 1;
    tx.commit();
    return ended;
}

std::int64_t Store::append_auth_event(const AuthEvent& e) {
    if (e.kind.empty()) throw StoreError("append_auth_event: kind is required");
    Tx tx(*impl_);
    Q ins(*impl_,
          "INSERT INTO auth_events (time_unix_s, user_name, kind, detail, by_user) VALUES (?1, ?2, ?3, ?4, ?5)");
    ins.real(1, e.time_unix_s == 0.0 ? now_unix_s() : e.time_unix_s)
        .text(2, e.user_name)
        .text(3, e.kind)
        .text(4, e.detail)
        .text(5, e.by_user)
        .run();
    const std::int64_t id = sqlite3_last_insert_rowid(impl_->db.get());
    tx.commit();
    return id;
}

std::int64_t Store::count_auth_events(std::string_view user_name, std::string_view kind, double since_unix_s) {
    Q q(*impl_, "SELECT count(*) FROM auth_events WHERE user_name = ?1 AND kind = ?2 AND time_unix_s >= ?3");
    q.text(1, user_name).text(2, kind).real(3, since_unix_s);
    if (!q.step()) return 0;
    return q.col_int(0);
}

std::vector<AuthEvent> Store::auth_events(std::size_t limit) {
    Q q(*impl_,
        "SELECT id, time_unix_s, user_name, kind, detail, by_user FROM auth_events ORDER BY id DESC LIMIT ?1");
    q.int64(1, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
    std::vector<AuthEvent> out;
    while (q.step())
        out.push_back(AuthEvent{q.col_int(0), q.col_real(1), q.col_text(2), q.col_text(3), q.col_text(4), q.col_text(5)});
    return out;
}

// ---------------------------------------------------------------- information

std::int64_t Store::count(std::string_view table) {
    for (const char* t : kTables) {
        if (table != t) continue;
        // The name comes from our own list, never from the caller.
        const std::string sql = fmt::format("SELECT count(*) FROM \"{}\"", t);
        return impl_->pragma_int(sql.c_str());
    }
    throw StoreError(fmt::format("count: '{}' is not a table of the store", table));
}

std::vector<std::pair<std::string, std::int64_t>> Store::copy_to(const std::filesystem::path& out,
                                                                  int page_size_bytes) {
    const int ps = page_size_bytes;
    check_page_size(out, ps);
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::symlink_status(out, ec)))
        throw StoreError(fmt::format("{}: exists; a copy is never written over a file (nothing written)", out.string()));
    const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    // An empty file VACUUM INTO may write into; hidden, beside the target.
    std::string tmp = (dir / ("." + out.filename().string() + ".tmp-XXXXXX")).string();
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) throw StoreError(fmt::format("{}: cannot write: {} (nothing written)", out.string(), std::strerror(errno)));
    struct stat src_st {};
    if (::stat(impl_->path.c_str(), &src_st) == 0) ::fchmod(fd, src_st.st_mode & 0777);
    ::close(fd);
    auto remove_tmp = [&] {
        for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((tmp + suffix).c_str());
    };
    auto fail = [&](const std::string& why) {
        remove_tmp();
        throw StoreError(fmt::format("{}: {} (nothing written)", out.string(), why));
    };
    // Each table's rows now, to compare with the copy's: a store written to
    // while it was copied (a running station) gives a copy that is refused.
    const auto counts = info().table_counts;
    // VACUUM INTO on a read-write connection: SQLite 3.40 fills the copy's
    // pages fuller there than on a read-only one (a 1 M-device store: 71,242
    // against 78,054 pages of 16 KiB). It only reads the source. A store on
    // read-only media is copied through this store's own connection.
    sqlite3* rw = nullptr;
    if (impl_->read_only &&
        sqlite3_open_v2(impl_->path.c_str(), &rw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        sqlite3_close(rw);
        rw = nullptr;
    }
    sqlite3* via = rw ? rw : impl_->db.get();
    std::string why;
    const std::string page_pragma = fmt::format("PRAGMA page_size = {}", ps);
    sqlite3_stmt* vacuum = nullptr;
    if (rw) sqlite3_busy_timeout(rw, 30000);
    if (sqlite3_exec(via, page_pragma.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(via, "VACUUM INTO ?1", -1, &vacuum, nullptr) != SQLITE_OK ||
        sqlite3_bind_text(vacuum, 1, tmp.c_str(), -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_step(vacuum) != SQLITE_DONE)
        why = fmt::format("copying failed: {}", sqlite3_errmsg(via));
    sqlite3_finalize(vacuum);
    sqlite3_close(rw);
    if (!why.empty()) fail(why);
    // WAL as every store is; closing the connection checkpoints and removes the -wal.
    {
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(tmp.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_EXRESCODE, nullptr);
        auto one = [&](const std::string& sql) -> std::optional<std::string> {
            sqlite3_stmt* st = nullptr;
            std::optional<std::string> v;
            if (sqlite3_prepare_v2(raw, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
            sqlite3_finalize(st);
            return v;
        };
        std::string problem;
        if (rc != SQLITE_OK) {
            problem = fmt::format("cannot open the copy: {}", raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
        } else if (one("PRAGMA journal_mode = WAL").value_or("") != "wal") {
            problem = fmt::format("cannot set WAL mode on the copy: {}", sqlite3_errmsg(raw));
        } else {
            for (const auto& [table, n] : counts) {
                const auto got = one(count_rows_sql(table));
                if (got != std::to_string(n)) {
                    problem = fmt::format("table {}: {} rows in the store, {} in the copy: the store changed while "
                                          "it was copied (stop the station first) or the copy failed",
                                          table, n, got.value_or("none"));
                    break;
                }
            }
        }
        sqlite3_close(raw);
        if (!problem.empty()) fail(problem);
    }
    const int tfd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (tfd < 0 || ::fsync(tfd) != 0) {
        const int err = errno;
        if (tfd >= 0) ::close(tfd);
        fail(fmt::format("write failed: {}", std::strerror(err)));
    }
    ::close(tfd);
    // link() never replaces: a file that appeared at `out` meanwhile stays.
    if (::link(tmp.c_str(), out.c_str()) != 0) {
        const int err = errno;
        fail(err == EEXIST ? std::string("exists; a copy is never written over a file")
                           : fmt::format("cannot write: {}", std::strerror(err)));
    }
    ::unlink(tmp.c_str());
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return counts;
}

DbInfo Store::info(bool count_rows) {
    DbInfo i;
    i.path = impl_->path;
    i.schema_version = impl_->version;
    i.known_version = kLatestVersion;
    i.journal_mode = impl_->pragma_text("PRAGMA journal_mode");
    i.page_size = impl_->pragma_int("PRAGMA page_size");
    i.page_count = impl_->pragma_int("PRAGMA page_count");
    std::error_code ec;
    i.file_size_bytes = std::filesystem::file_size(impl_->path, ec);
    if (ec) i.file_size_bytes = 0;
    std::filesystem::path wal = impl_->path;
    wal += "-wal";
    i.wal_size_bytes = std::filesystem::exists(wal, ec) ? std::filesystem::file_size(wal, ec) : 0;
    if (ec) i.wal_size_bytes = 0;
    if (!count_rows) return i;
    std::vector<std::string> names;
    {
        Q q(*impl_, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
        while (q.step()) names.push_back(q.col_text(0));
    }
    for (const auto& n : names) {
        const std::string sql = count_rows_sql(n);
        i.table_counts.emplace_back(n, impl_->pragma_int(sql.c_str()));
    }
    return i;
}

}  // namespace eol::station
