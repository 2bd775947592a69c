// eol/station/quarantine.hpp — quarantine decisions, the ship gate and serial
// lookups over the results store.
//
// A unit (a serial) is clear → held → released or scrapped. A decision names
// a scope: one serial, a lot, or a production window [from, to] (inclusive
// production dates, e.g. "2023-03..2023-04" = 2023-03-01..2023-04-30). Every
// decision is one append-only quarantine event in the store (action, scope,
// reason, actor, role, time); nothing is ever changed or deleted.
//
// State of a unit (the store's rule, see store.hpp; LookupSession applies the
// same rule from its cache). Applicable events are those whose scope is the
// serial, its lot, or a window containing its production date. Each target
// (the serial, the lot, each window) has its own latest event. Then
//   1. any applicable scrap                          → scrapped (terminal);
//   2. a target whose latest event is a hold         → held,
//      except that a serial-scope release overrides lot/window holds made
//      before it (quality released that unit individually, e.g. after a
//      retest); a lot/window hold made after it holds the unit again;
//   3. else any applicable release                   → released;
//   4. else                                          → clear.
// So a release undoes the hold of the same target: releasing a lot does not
// release a unit that a window hold (or its own serial hold) still covers.
//
// Policy (Quarantine):
//   - every decision needs a non-empty reason and actor (UsageError);
//   - release and scrap need the role "quality" or "admin" (QuarantineRefused);
//   - release needs something to release: a serial must be held; a lot or a
//     window must have a hold as its latest event (QuarantineRefused, naming
//     what does hold it instead);
//   - hold of an already-held target, and any decision on a scrapped serial,
//     is refused (QuarantineRefused).
// Serial targets are normalized per the serial scheme (UsageError with the
// position of a bad character); lot targets are upper-cased and left-padded
// like SerialScheme::make does.
//
// Ship gate: a unit may ship when it is known to the store, its latest
// completed test passed, and its state is clear or released. Shipping is
// recorded as one station event per shipment (kind "shipment", station id =
// the gate, detail JSON {"serials": […], "actor", "reference"}), so re-
// screening can list units that would now be held but already left.
//
// LookupSession answers "may this unit ship?" for one or millions of serials:
// it caches every quarantine event once (they are few next to the cells) and
// fetches only the events appended since on each call, then needs one
// primary-key read per serial (the cell row holds its latest verdict:
// Store::gate_cell). Bulk lookups read through Store::for_each_gate_cell: 256
// serials or more (a store on a file, outside a write transaction) on the
// store's parallel read-only connections, one key range and one statement
// each; fewer, or inside a write transaction, in one statement on the
// store's own connection. The session itself is one thread's (like its
// Store); it holds no SQL of its own.
//
// Errors: UsageError (bad input: serial, lot, window, missing reason/actor),
// QuarantineRefused (policy), StoreError (the database).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "eol/station/errors.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// A decision the policy does not allow (wrong role, nothing to release, …).
/// The CLI maps it to exit code 1 (a domain "no").
class QuarantineRefused : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The roles that may release and scrap (users' roles: station/auth).
inline constexpr std::string_view kQualityRole = "quality";
inline constexpr std::string_view kAdminRole = "admin";

/// Who decides.
struct Actor {
    std::string name;
    std::string role;  // e.g. "operator", "quality", "screening"
};

/// What a decision applies to.
struct Scope {
    QuarantineScope kind = QuarantineScope::serial;
    std::string target;  // serial, lot id, or "FROM..TO" for a window
    Date from{};         // window only
    Date to{};

    static Scope serial(std::string s);
    static Scope lot(std::string l);
    static Scope window(Date from, Date to);
    /// "serial 01A33E004200001C", "lot 0042", "window 2023-03-01..2023-04-30".
    std::string describe() const;
};

/// Parses a production window: "2023-03..2023-04" (whole months),
/// "2023-03-01..2023-04-15", "2023-03" (one month) or "2023-03-14" (one day);
/// the ends may mix forms. Throws UsageError naming the text and the part.
std::pair<Date, Date> parse_window(std::string_view text);

/// A target whose latest event is a hold (what `quarantine list` shows).
struct ActiveHold {
    QuarantineEvent event;           // the hold in force
    std::size_t cells_covered = 0;   // stored cells it covers
};

class Quarantine {
public:
    Quarantine(Store& store, const SerialScheme& scheme = SerialScheme::default_scheme());

    /// Normalizes a scope's target (serial per the scheme, lot padded). Throws UsageError.
    Scope normalize(Scope scope) const;

    /// Each returns the new event's id. `time_unix_s` 0 = now.
    std::int64_t hold(const Scope& scope, std::string_view reason, const Actor& actor,
                      double time_unix_s = 0.0);
    std::int64_t release(const Scope& scope, std::string_view reason, const Actor& actor,
                         double time_unix_s = 0.0);
    std::int64_t scrap(const Scope& scope, std::string_view reason, const Actor& actor,
                       double time_unix_s = 0.0);

    /// Events of a serial (serial, its lot, windows over its date), oldest first.
    std::vector<QuarantineEvent> history_of_serial(std::string_view serial);
    /// Events whose target is exactly this lot, oldest first.
    std::vector<QuarantineEvent> history_of_lot(std::string_view lot);
    /// Targets whose latest event is a hold, oldest first.
    std::vector<ActiveHold> active_holds();

    /// Lot and production date of a serial: from the store when known, else
    /// decoded from the serial (empty when the scheme has no such field).
    std::pair<std::string, std::string> lot_and_date(std::string_view normalized_serial);

private:
    /// Runs `check` (throws QuarantineRefused) and appends the event in ONE
    /// write transaction.
    std::int64_t decide(const Scope& scope, QuarantineAction action, std::string_view reason, const Actor& actor,
                        double time_unix_s, const std::function<void()>& check);
    std::optional<QuarantineEvent> latest_of_target(const Scope& scope);

    Store& store_;
    const SerialScheme& scheme_;
};

/// The answer for one looked-up serial.
struct LookupResult {
    std::string input;                  // as given
    std::string serial;                 // normalized ("" when invalid)
    // Invalid serial (position etc. inside). Behind a pointer: a bulk lookup
    // holds a million results and almost none is invalid.
    std::shared_ptr<const SerialError> error;
    bool known = false;                 // tested at this store
    std::string lot;
    std::string production_date;
    CellState state = CellState::clear;
    std::optional<Verdict> verdict;     // latest completed test (pass/fail)
    std::vector<QuarantineEvent> because;  // see CellStatus::because
    bool may_ship = false;

    /// "invalid", "unknown", or the state ("clear", "held", "released", "scrapped").
    std::string_view status() const;
};

class LookupSession {
public:
    LookupSession(Store& store, const SerialScheme& scheme = SerialScheme::default_scheme());

    /// One serial as typed or scanned.
    LookupResult lookup(std::string_view input);
    /// Many serials (same order). Normalizes all, refreshes the event cache
    /// once, then reads the cells in key order.
    std::vector<LookupResult> lookup_many(std::span<const std::string> inputs);
    /// The ship gate for one serial.
    bool may_ship(std::string_view input) { return lookup(input).may_ship; }

    /// Fetches events appended since the last call (done by lookup()).
    void refresh();

    /// Judges a cell whose stored fields the caller has read itself (e.g.
    /// with the device holding it, Store::for_each_device_cells): from
    /// r.serial, r.known, r.lot, r.production_date and r.verdict it sets
    /// r.state, r.because and r.may_ship by the events cached at the last
    /// refresh() — exactly as lookup() judges a stored cell. Reads nothing
    /// and changes nothing: may be called from several threads at once.
    void judge_stored(LookupResult& r) const;
    /// The state of a serial by its serial-scope events alone (e.g. a
    /// device's own holds), by the cached events, as judge_stored(); fills
    /// `because` (optional) as CellStatus::because says.
    CellState serial_state(const std::string& serial, std::vector<QuarantineEvent>* because = nullptr) const;

private:
    void judge(LookupResult& r);
    std::vector<const QuarantineEvent*> applicable(const std::string& serial, const std::string& lot,
                                                   const std::string& date) const;
    // The events of a serial and of a lot (either may be null) plus the
    // windows containing `date`.
    std::vector<const QuarantineEvent*> gather(const std::vector<std::size_t>* serial_events,
                                               const std::vector<std::size_t>* lot_events,
                                               std::string_view date) const;

    Store& store_;
    const SerialScheme& scheme_;
    std::int64_t last_event_id_ = 0;
    std::vector<QuarantineEvent> events_;  // all, by id
    std::unordered_map<std::string, std::vector<std::size_t>> by_serial_;  // indices into events_
    std::unordered_map<std::string, std::vector<std::size_t>> by_lot_;
    std::vector<std::size_t> windows_;
    // One bit per hash of each key of by_serial_ / by_lot_: a serial whose
    // bit is clear has no events (most have none) and is judged without a
    // search of the maps.
    std::vector<std::uint64_t> serial_bits_, lot_bits_;
};

// ---------------------------------------------------------------- shipping

struct ShipmentResult {
    bool shipped = false;                   // recorded (all units may ship)
    std::int64_t event_id = 0;              // the station event, when shipped
    std::size_t units = 0;                  // distinct units (each recorded once)
    std::size_t repeats = 0;                // inputs that named a unit already in the list
    std::vector<LookupResult> refused;      // the units that may not ship (each once)
};

/// Ship gate: records one shipment of `serials` from gate `gate_id` when
/// every one may ship; otherwise records nothing and returns the refusals.
/// A unit named several times (as typed or normalized) counts and is
/// recorded once; `repeats` says how many inputs were repeats. The decision
/// and the write are ONE write transaction (Store::write_transaction): a
/// hold committed by anyone before the shipment is recorded is seen by the
/// decision, and none can be committed between the decision and the write.
ShipmentResult ship(Store& store, LookupSession& session, std::span<const std::string> serials,
                    std::string_view gate_id, const Actor& actor, std::string_view reference);

/// Every serial recorded as shipped, with the time of its (first) shipment.
std::unordered_map<std::string, double> shipped_serials(Store& store);

}  // namespace eol::station
