// eol/station/store.hpp — the results store: one SQLite database file holding
// every cell, test run, measurement, trace, model fit, quarantine event and
// station event.
//
// Lifecycle. Store::open(path, options) opens (or, with create, makes) the
// file and migrates it to the newest schema this binary knows (PRAGMA
// user_version; the migration list is in store.cpp, append-only). A database
// whose version is newer than the binary's is refused with SchemaTooNewError
// naming both versions — never downgraded or written. A read_only open never
// migrates (an older database is readable only as far as its tables go: use it
// for inspect()). A Store is one connection: use it from one thread at a time;
// open one Store per thread or process (WAL: many readers, one writer at a
// time; other writers wait up to busy_timeout_ms).
//
// Durability. journal_mode=WAL, foreign_keys=ON, synchronous=FULL on every
// connection: every write this store makes is verdict-bearing (a test result
// or a quarantine decision), so each commit is fsynced before the call
// returns — a committed record survives a process crash and a power loss.
// (NORMAL would only risk the last commits on power loss, but a lost verdict
// or hold is exactly what must not happen; batches amortize the fsync.)
// Each write call is ONE transaction: it is wholly there or wholly absent.
//
// Security. All SQL uses bound parameters through cached prepared
// statements; strings (including quotes and NUL bytes) are stored verbatim.
//
// Storage notes.
//   - Times: UTC unix seconds as REAL; production dates as "YYYY-MM-DD" TEXT
//     (sorts and range-compares correctly).
//   - NaN measurement/fit values are stored as NULL and read back as NaN;
//     absent limits are NULL.
//   - Traces: one row per run, one BLOB per column. A column is stored as
//     fixed-point integers at 1e-6 of its unit (1 µs, 1 µA, 1 µV, 1 µ°C),
//     delta-encoded (first or second order, whichever is smaller), zig-zag
//     LEB128 varints — typically 1–3 bytes a sample instead of 8. Values that
//     are the nearest double of a 6-decimal number read back bit-identical;
//     others read back within 5e-7. A column with a non-finite or huge
//     (|x| ≥ 2^52·1e-6) value is stored as raw little-endian float64.
//   - Model fits: a model_fits row (kind, rmse, converged) plus one
//     fit_parameters row per parameter (value, ci95 low/high).
//   - Results (test_runs, measurements, traces, model_fits, fit_parameters)
//     and events (quarantine_events, station_events) are append-only:
//     triggers reject UPDATE, DELETE and re-use of a key (INSERT OR
//     REPLACE), whoever runs the SQL. Only a cell row changes: empty fields
//     are completed, and latest_run_id advances together with
//     latest_verdict (migration 5: the verdict of that run, written by the
//     same statement, in the same transaction as the run's insert; a store
//     migrated to 5 has it filled from its runs) — so the ship gate reads a
//     cell's latest verdict with one search instead of two.
//   - Indexes: cells by serial (primary key, WITHOUT ROWID), lot and
//     production date; test_runs by (serial, start); quarantine_events by
//     (scope, target) and, for windows, (from, to).
//
// Quarantine state of a serial (status()). Applicable events are those whose
// scope is the serial itself, its lot, or a production window [from, to]
// containing its production date. Each distinct target (the serial, the lot,
// each window "from..to") has its own latest event. Then:
//   - any applicable scrap            → scrapped (terminal);
//   - else a target whose latest event is hold makes the cell held, except
//     that a serial-scope release overrides lot/window holds made before it
//     (a unit released individually after retest);
//   - else any release                → released;
//   - else                            → clear.
// A single status() is one primary-key read of cells and one indexed read
// of quarantine_events.
//
// Errors: StoreError (SQLite failures name the operation and SQLite's
// message; invalid records name the field), SchemaTooNewError.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eol/station/record.hpp"

namespace eol::station {

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The database was written by a newer eolstation than this one.
class SchemaTooNewError : public StoreError {
public:
    SchemaTooNewError(const std::string& what, int db_version, int known_version)
        : StoreError(what), db_version_(db_version), known_version_(known_version) {}
    int db_version() const { return db_version_; }
    int known_version() const { return known_version_; }

private:
    int db_version_;
    int known_version_;
};

struct OpenOptions {
    bool create = false;        // create the file when missing (else: StoreError)
    bool read_only = false;     // no writes, no migrations
    int busy_timeout_ms = 30000; // wait for another writer's lock this long (30 s: dozens of writers
                                 // on a loaded 2-core host queue for seconds; failing then loses a hold)
    /// The page cache of each bulk reader (Store::bulk_readers), in bytes:
    /// held while the Store is open, grown only as pages are read. Besides
    /// it each reader maps up to the library's mmap limit of the file.
    std::int64_t bulk_reader_cache_bytes = std::int64_t{64} << 20;
    /// The page size a store is created with, in bytes (a power of two from
    /// 512 to 65536, else StoreError). Used only when the file is new or an
    /// empty SQLite database; an existing store keeps the size it was made
    /// with (`eolstation db info` shows it). 16 KiB: a device lookup reads
    /// fewer pages and the bulk check of 10 M devices stays under 5 s, where
    /// 4 KiB pages (SQLite's default) need a system call per 4 KiB beyond the
    /// library's 2 GiB mapping (docs/genealogy.md, "Figures").
    int page_size_bytes = 16384;
};

struct CellInfo {
    std::string serial;
    std::string cell_model;
    std::string lot;
    std::string production_date;
    std::optional<std::int64_t> latest_run_id;  // latest completed (pass/fail) run by start time
};

struct RunInfo {
    std::int64_t id = 0;
    std::string serial;
    std::string station_id;
    int channel = 0;
    std::string recipe_name;
    std::string recipe_version;
    double start_unix_s = 0.0;
    double end_unix_s = 0.0;
    Verdict verdict = Verdict::error;
    std::string abort_reason;
};

/// Which cells to visit: all, one lot, or production dates in [from, to]
/// (inclusive "YYYY-MM-DD"; either end may be empty = open); with
/// cell_model, only cells of that model (combined with the others).
struct CellFilter {
    std::optional<std::string> lot;
    std::string date_from;
    std::string date_to;
    std::optional<std::string> cell_model;  // last: aggregate initializers of the first three keep their meaning
};

/// A cell with the features of its latest completed run, for screening:
/// every measurement by name, and for each converged fit "<kind>.<param>"
/// and "<kind>.rmse". NaN values are left out.
struct CellFeatures {
    CellInfo cell;
    RunInfo run;
    std::vector<std::pair<std::string, double>> features;  // in storage order
    std::optional<double> get(std::string_view name) const;
};

enum class QuarantineAction { hold, release, scrap };
enum class QuarantineScope { serial, lot, window };
std::string_view to_string(QuarantineAction a);
std::string_view to_string(QuarantineScope s);
std::optional<QuarantineAction> quarantine_action_from_string(std::string_view text);
std::optional<QuarantineScope> quarantine_scope_from_string(std::string_view text);

struct QuarantineEvent {
    std::int64_t id = 0;        // assigned by the store (increasing)
    double time_unix_s = 0.0;
    QuarantineAction action = QuarantineAction::hold;
    QuarantineScope scope = QuarantineScope::serial;
    /// serial scope: the serial; lot scope: the lot id; window scope:
    /// "FROM..TO" (filled from window_from/to when empty).
    std::string target;
    std::string window_from;    // window scope only: inclusive production dates
    std::string window_to;
    std::string reason;         // required
    std::string actor;          // required: who
    std::string role;           // e.g. "operator", "quality" (policy is the caller's)
};

enum class CellState { clear, held, released, scrapped };
std::string_view to_string(CellState s);

struct CellStatus {
    std::string serial;
    bool known = false;             // the serial is in cells
    std::string lot;                // from cells (or the caller) — empty when unknown
    std::string production_date;
    CellState state = CellState::clear;
    /// held: the holds in force (oldest first); released: the deciding
    /// release; scrapped: the first scrap; clear: empty.
    std::vector<QuarantineEvent> because;
};

/// THE quarantine state rule (the one the top of this header describes),
/// over the events applicable to `serial` (its own, its lot's, the windows
/// containing its production date; any order). Every caller — status(),
/// status_many(), the quality module's lookups and ship gate — decides with
/// this function. `because` (optional) receives what CellStatus::because says.
CellState quarantine_state(std::string_view serial, std::span<const QuarantineEvent* const> events,
                           std::vector<QuarantineEvent>* because = nullptr);

// ---- genealogy: devices built from cells (migration 3)
//
// A device (a power bank, a speaker) has a serial, a model, and where and
// when it was assembled (its first link). Which cells are inside it is an
// append-only history of link / unlink events (device_links): the cells a
// device contains now are those whose latest event for that device is a
// link; the device a cell is inside now is the one of the cell's latest
// event, when that is a link. Devices and their events are never changed or
// deleted (triggers, as for results). The interlock that decides whether a
// link may be written lives in station/genealogy (genealogy.hpp).
//
// The device gate (migration 6, table device_gate): the cells inside each
// device now, one row a cell keyed by (device, cell), with the cell's lot,
// production date and latest verdict — what the ship gate reads, so a
// device's cells come from ONE B-tree search instead of a search of its link
// events and one per cell. It is derived, never a source: migration 6 fills
// it by folding the link events (as above), and triggers keep it in the
// transaction of every write that changes what it mirrors (a link or unlink
// event; a cell's row inserted, changed or deleted), whoever runs the SQL;
// guard triggers refuse any other write to it (a row must be a cell its link
// event put in, not unlinked since, with the cell's fields; it goes only
// after an unlink). Migration 7 re-creates the triggers so that a cell
// without link events (a cell at its EOL test) costs the gate nothing on
// write. Holds are not in it: they are computed when asked. A store migrated to 6
// reads devices through it; an older store opened read-only through the
// events. Migrating 10 M devices (30 M links) takes about 2 minutes.

struct DeviceInfo {
    std::string serial;
    std::string model;
    double assembled_unix_s = 0.0;  // the time of its first link
    std::string station_id;         // where it was assembled
};

enum class LinkAction { link, unlink };
std::string_view to_string(LinkAction a);

struct DeviceLinkEvent {
    std::int64_t id = 0;            // assigned by the store (increasing)
    double time_unix_s = 0.0;       // 0 = now
    LinkAction action = LinkAction::link;
    std::string device_serial;
    std::string cell_serial;
    std::string station_id;         // required
    std::string reason;             // unlink: required
    std::string actor;              // unlink: required
    std::string role;
};

/// A device and the cells inside it now (in the order they were linked).
struct DeviceRecord {
    DeviceInfo device;
    std::vector<std::string> cells;
};

/// A cell with the stored fields the ship gate judges it by: a cell inside
/// a device (Store::for_each_device_cells), or any cell (Store::gate_cell,
/// Store::for_each_gate_cell).
struct DeviceCell {
    std::string serial;
    bool known = false;                // it has a row in cells
    std::string lot;                   // stored; empty when unknown
    std::string production_date;       // stored "YYYY-MM-DD"; empty when unknown
    std::optional<Verdict> verdict;    // of its latest completed run; none when untested or unknown
};

/// A device and the cells inside it now (in the order they were linked),
/// each with its stored fields.
struct DeviceCells {
    DeviceInfo device;
    std::vector<DeviceCell> cells;
};

// ---- users, sessions and the authentication audit (migration 4)
//
// Only hashes are stored: an Argon2id string per password, the BLAKE2b hex of
// each session token. A user is never deleted or renamed (disabled instead);
// auth_events is append-only. Who may do what is decided in station/auth.

struct UserRecord {
    std::string name;
    std::string role;              // "operator", "quality" or "admin" (the schema checks)
    std::string password_hash;     // crypto_pwhash_str output
    bool disabled = false;
    double created_unix_s = 0.0;   // 0 = now
    double changed_unix_s = 0.0;   // last password / disabled change; 0 = created
};

struct SessionRecord {
    std::string token_hash;        // 64 hex characters
    std::string user_name;
    double created_unix_s = 0.0;
    double expires_unix_s = 0.0;
};

struct AuthEvent {
    std::int64_t id = 0;           // assigned by the store
    double time_unix_s = 0.0;      // 0 = now
    std::string user_name;         // as given (may name no user)
    std::string kind;              // e.g. "login_ok", "login_failed", "login_rate_limited", "user_added"
    std::string detail;
    std::string by_user;           // who did it, for administration events
};

struct StationEvent {
    std::int64_t id = 0;        // assigned by the store
    double time_unix_s = 0.0;
    std::string station_id;
    std::string kind;           // e.g. "start", "estop", "instrument_fault"
    std::string message;
    std::string detail_json = "{}";
};

struct DbInfo {
    std::filesystem::path path;
    int schema_version = 0;         // the file's
    int known_version = 0;          // this binary's newest
    std::string journal_mode;
    std::uintmax_t file_size_bytes = 0;   // the main file
    std::uintmax_t wal_size_bytes = 0;    // the -wal file, 0 when none
    std::int64_t page_size = 0;
    std::int64_t page_count = 0;
    std::vector<std::pair<std::string, std::int64_t>> table_counts;  // user tables, by name
};

class Store {
public:
    /// Opens (see the top of this header). Throws StoreError, SchemaTooNewError.
    static Store open(const std::filesystem::path& path, const OpenOptions& options = {});
    /// Opens read-only without migrating and describes the file.
    static DbInfo inspect(const std::filesystem::path& path, bool count_rows = true);
    /// The newest schema version this binary knows.
    static int latest_schema_version();

    Store(Store&&) noexcept;
    Store& operator=(Store&&) noexcept;
    ~Store();

    int schema_version() const;
    const std::filesystem::path& path() const;

    // ---- decisions: check and write in one transaction ----
    /// Runs `body` as ONE write transaction (BEGIN IMMEDIATE … COMMIT): the
    /// database's write lock is held from the start, so what `body` reads
    /// is what it writes against — a decision (may this unit ship? is it
    /// already held?) and the write it justifies cannot be raced by another
    /// writer, process or connection. Commits when `body` returns true;
    /// rolls back when it returns false or throws (the exception goes on).
    /// The store's own writes inside `body` join the transaction, and so do
    /// nested write_transaction calls. Readers on other connections that
    /// start after it began see the same committed state (no one else can
    /// commit meanwhile). StoreError on a read-only store or when the lock
    /// is not had within busy_timeout_ms.
    bool write_transaction(const std::function<bool()>& body);

    // ---- writing test records (one transaction per call) ----
    /// Writes the cell (inserted, or completed where the stored fields are
    /// empty), the run, its measurements, trace and fits. Returns the run id.
    /// StoreError when the record is invalid (names the field) or its cell
    /// model/lot/production date contradict the stored cell.
    std::int64_t write(const TestRecord& record);
    /// All records in one transaction; returns their run ids in order.
    std::vector<std::int64_t> write_batch(std::span<const TestRecord> records);

    // ---- reading results ----
    std::optional<CellInfo> cell(std::string_view serial);
    /// The serial's runs, oldest start first.
    std::vector<RunInfo> runs_for(std::string_view serial);
    std::optional<RunInfo> run(std::int64_t run_id);
    std::vector<Measurement> measurements(std::int64_t run_id);
    std::vector<StepRecord> steps(std::int64_t run_id);  // in run order; empty for records made without steps
    models::Series trace(std::int64_t run_id);       // empty when none stored
    std::vector<ModelFit> fits(std::int64_t run_id);
    /// The whole record of a run, as written (trace within the codec's
    /// resolution).
    std::optional<TestRecord> read_record(std::int64_t run_id);
    /// Visits the cells matching `filter` (ordered by serial).
    void for_each_cell(const CellFilter& filter, const std::function<void(const CellInfo&)>& visit);
    /// Visits the cells matching `filter` that have a completed run, with the
    /// features of their latest one (ordered by serial). The callback may use
    /// the store (re-entrant statements are prepared afresh).
    void for_each_latest(const CellFilter& filter, const std::function<void(const CellFeatures&)>& visit);

    // ---- quarantine ----
    /// Appends an event (validated: target, reason, actor non-empty; window
    /// dates valid and ordered). Returns its id.
    std::int64_t append_quarantine(const QuarantineEvent& event);
    std::vector<std::int64_t> append_quarantine_batch(std::span<const QuarantineEvent> events);
    /// All events, oldest first, with id > after_id.
    std::vector<QuarantineEvent> quarantine_events(std::int64_t after_id = 0);
    /// The events applicable to a serial with this lot and production date.
    std::vector<QuarantineEvent> quarantine_events_for(std::string_view serial, std::string_view lot,
                                                       std::string_view production_date);
    /// State of a stored serial (lot and date from cells; an unknown serial
    /// is judged by serial-scope events only).
    CellStatus status(std::string_view serial);
    /// State of a serial with the given lot and production date (e.g. decoded
    /// from the serial when it was never tested here).
    CellStatus status(std::string_view serial, std::string_view lot, std::string_view production_date);
    /// status() of many serials (same order): loads lot/window events once
    /// and reads cells in key order.
    std::vector<CellStatus> status_many(std::span<const std::string> serials);

    // ---- the ship gate's reads of stored cells ----
    /// A cell's stored lot, production date and the verdict of its latest
    /// completed run (one primary-key search from schema 5 on); nullopt when
    /// the serial is not a stored cell.
    std::optional<DeviceCell> gate_cell(std::string_view serial);
    /// How many read-only connections a bulk read of n serials uses in
    /// parallel (for_each_gate_cell, for_each_device_cells): 0 when it reads
    /// on this connection — fewer than 256 serials, inside a transaction, or
    /// a file that cannot be opened a second time (in-memory, read-only
    /// media). Opens them on first use; they stay open (with their page
    /// cache and mapped pages) until the Store is closed, but hold no
    /// snapshot between calls.
    std::size_t bulk_readers(std::size_t n);
    /// gate_cell() of many serials. `serials` must be in ascending byte order
    /// (repeats allowed). With P = bulk_readers(n) > 0 they are read as P
    /// slices, slice t = [t·n/P, (t+1)·n/P), each on its own thread and
    /// read-only connection with one statement (its own WAL snapshot: a read
    /// never blocks the writer); else as one slice 0 on this connection, in
    /// one snapshot. visit(slice, i, cell) is called for every i, in
    /// ascending i within a slice, with cell = nullptr when serials[i] is not
    /// a stored cell (`cell` is valid during the call only; its serial field
    /// is left empty). Slices are visited from several threads at once:
    /// `visit` must not use this Store and must guard shared state (state
    /// per slice needs none). Exceptions from `visit` stop the reading and
    /// are rethrown; StoreError on a database error.
    void for_each_gate_cell(std::span<const std::string_view> serials,
                            const std::function<void(std::size_t, std::size_t, const DeviceCell*)>& visit);

    // ---- genealogy (devices and the cells inside them) ----
    /// Appends link/unlink events of ONE device, adding the device row first
    /// when it is new (model, station and time from `device`; its time 0 =
    /// the first event's time). One transaction (it joins an open
    /// write_transaction). StoreError when the device exists with another
    /// model, an event names another device, or a field is missing (names it).
    /// No rule is checked here beyond the fields: the interlock is the
    /// caller's (station/genealogy), inside one write_transaction.
    std::vector<std::int64_t> append_device_links(const DeviceInfo& device, std::span<const DeviceLinkEvent> events);
    /// A device and its cells now; nullopt when unknown. One indexed read.
    std::optional<DeviceRecord> device(std::string_view serial);
    /// device() of many serials (same order), in one read snapshot, in key order.
    std::vector<std::optional<DeviceRecord>> devices_many(std::span<const std::string> serials);
    /// The devices among `serials` with the cells inside them now and each
    /// cell's stored fields (lot, production date, verdict of its latest
    /// completed run): a device, its link events, its cells and their runs
    /// (from schema 6: a device and its rows of the device gate) are read by
    /// ONE statement, so many devices are judged in one pass —
    /// or, on the bulk readers of a schema-5 store when the batch is a large
    /// share of the devices (at most 8 link events of the table a distinct
    /// serial), by a merge walk: devices, their link events and then their
    /// cells, each read forward in key order beside the sorted serials by
    /// three statements in ONE read transaction per slice (one snapshot).
    ///
    /// visit(slice, i, device) is called once for each i whose serials[i] is
    /// a known device, never for unknown ones, in no particular order;
    /// `device` is valid during the call only. The serials are read in key
    /// order (sorted here; the caller's order and repeats are kept in i).
    /// With P = bulk_readers(n) > 0 (batches of 256 serials or more, outside
    /// a write transaction) they are read as P key-ordered slices, slice
    /// t < P, each on its own thread and read-only connection (kept open
    /// between calls; its own WAL snapshot: a read never blocks the writer)
    /// with one statement per slice — so `visit` is then called from several
    /// threads at once (for distinct i; within one slice always from the same
    /// thread, one call after the other: state kept per slice needs no
    /// guard) and must neither use this Store nor touch shared state
    /// unguarded. Else (smaller batches, batches inside a write transaction —
    /// they must see its own writes and its snapshot — and files that cannot
    /// be opened a second time: in-memory, read-only media) as one slice 0
    /// on this connection, in one snapshot. Exceptions from `visit` stop the
    /// reading and are rethrown; StoreError on a database error (devices
    /// visited up to then stay visited).
    ///
    /// With `device_fields` false the caller needs only the cells: `device`
    /// then carries its serial and cells, not its model, assembly time or
    /// station (empty), and on the per-device search path a device's link
    /// events are searched without its `devices` row — a device with events
    /// exists (each event references it); only the serials without events
    /// (unknown, or known and empty) are then looked up in `devices` (4
    /// B-tree searches a device of 3 cells instead of 5: the bulk check).
    /// From schema 6 its rows of the device gate are searched instead (one
    /// search a device, at any share: no merge walk), and the serials
    /// without a cell inside go to `devices`.
    void for_each_device_cells(std::span<const std::string> serials,
                               const std::function<void(std::size_t, std::size_t, const DeviceCells&)>& visit,
                               bool device_fields = true);
    /// Whether the store knows any device (one indexed probe).
    bool any_devices();
    /// The device a cell is inside now (its latest link event, if not undone).
    std::optional<std::string> device_of_cell(std::string_view cell_serial);
    /// Link events of a device, or of a cell, oldest first.
    std::vector<DeviceLinkEvent> device_history(std::string_view device_serial);
    std::vector<DeviceLinkEvent> cell_link_history(std::string_view cell_serial);
    /// Visits every cell matching `filter` (its lot and production dates;
    /// cell_model is not applied) that is inside a device now, with that
    /// device (unordered), on the calling thread. The cells of the filter
    /// are listed in one snapshot; when they are 256 or more (and outside a
    /// transaction) their devices are then read in key-ordered slices on the
    /// bulk readers in parallel (each slice in its own snapshot, as
    /// for_each_gate_cell), else on this connection in the same snapshot.
    /// The callback must not write to the store.
    void for_each_linked_cell(const CellFilter& filter,
                              const std::function<void(const CellInfo&, const DeviceInfo&)>& visit);

    // ---- users and sessions (migration 4; policy in station/auth) ----
    std::int64_t user_count();
    std::optional<UserRecord> user(std::string_view name);
    std::vector<UserRecord> users();  // by name
    /// StoreError when the name is taken or a field is missing.
    void add_user(const UserRecord& user);
    /// Sets what is given (password hash, disabled) and changed_unix_s (0 =
    /// now). StoreError when there is no such user.
    void update_user(std::string_view name, const std::optional<std::string>& password_hash,
                     std::optional<bool> disabled, double time_unix_s = 0.0);
    void add_session(const SessionRecord& session);
    std::optional<SessionRecord> session(std::string_view token_hash);
    /// Ends a session at `at_unix_s` (its expiry moved there, never later than
    /// it was). False when there is no such session or it had already ended.
    bool end_session(std::string_view token_hash, double at_unix_s);
    std::int64_t append_auth_event(const AuthEvent& event);
    /// Events of `kind` for `user_name` at or after since_unix_s (indexed).
    std::int64_t count_auth_events(std::string_view user_name, std::string_view kind, double since_unix_s);
    /// The most recent `limit` events, newest first.
    std::vector<AuthEvent> auth_events(std::size_t limit = 100);

    // ---- station events ----
    std::int64_t append_station_event(const StationEvent& event);
    /// The most recent `limit` events, newest first.
    std::vector<StationEvent> station_events(std::size_t limit = 100);
    /// Every event of `kind` at station `station_id`, oldest first (a scan:
    /// meant for a controller's start, e.g. the fixture's service history).
    std::vector<StationEvent> station_events_of(std::string_view station_id, std::string_view kind);

    /// What station `station_id` finished since `since_unix_s`, counted as
    /// its operator panel counts cells (a shift's yield): each test run by its
    /// verdict, except that a pass or fail whose serial the station then held
    /// at test time (a serial hold by role "station", not a hazard hold)
    /// counts as a hold; each held cell answered without a test (station
    /// event "hold_at_test") counts as tested and held. Scans the runs (there
    /// is no index by station and time: meant for a panel's start).
    struct StationCounts {
        std::int64_t tested = 0, pass = 0, fail = 0, hold = 0, abort = 0, error = 0;
    };
    StationCounts station_counts_since(std::string_view station_id, double since_unix_s);

    // ---- information ----
    /// `count_rows` false: table_counts left empty (counting 100 M rows takes minutes).
    DbInfo info(bool count_rows = true);
    /// Writes a consistent copy of the store (one read snapshot: commits made
    /// meanwhile are not in it) to `out` with pages of `page_size_bytes` (a
    /// power of two from 512 to 65536), in WAL mode like any store: SQLite's
    /// VACUUM INTO to a temporary file beside `out`, fsynced, then linked to
    /// `out` only when whole, and the folder fsynced. The copy is compacted
    /// (each table's pages together); every table's row count must equal
    /// the store's as counted just before. Read-only stores can be copied.
    /// StoreError (nothing at `out`, no temporary left) when `out` exists
    /// (this store's own file too), the copy fails (disk full: its reason)
    /// or its counts differ (the store was written to meanwhile). The copy's
    /// file mode is the store's. Returns every table's rows (in both).
    std::vector<std::pair<std::string, std::int64_t>> copy_to(const std::filesystem::path& out, int page_size_bytes);
    std::int64_t count(std::string_view table);  // one of the store's tables, else StoreError

private:
    struct Impl;
    explicit Store(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// The store as a RecordSink (record.hpp): each record consumed is written
/// in its own transaction (Store::write); a failure throws StoreError.
class StoreSink : public RecordSink {
public:
    explicit StoreSink(Store& store) : store_(store) {}
    void consume(const TestRecord& record) override { store_.write(record); }

private:
    Store& store_;
};

}  // namespace eol::station
