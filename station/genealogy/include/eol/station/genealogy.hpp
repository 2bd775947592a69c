// eol/station/genealogy.hpp — devices built from cells: the assembly
// interlock, device lookups and the device-level ship gate, and the device
// recall list.
//
// Model (store.hpp, migration 3). A device (a power bank such as A1112, a
// speaker such as A3102) has a serial per the device serial scheme
// (config/device-serial-scheme.toml, device_serial_scheme()), a model, and
// where and when it was assembled; the cells inside it are an append-only
// history of link and unlink events (unlink needs a reason, an actor and the
// role "quality": rework). Nothing is ever changed or deleted.
//
// The assembly interlock (Genealogy::link). A link request names one device
// and its cells. It is refused — with a reason per cell, and NOTHING written
// for that device — when the device serial is invalid, the model is empty or
// contradicts the stored device, the device is scrapped, no cell is given,
// or any cell is:
//   invalid (per the cell scheme) · repeated in the request · unknown (never
//   tested here) · untested (no completed test) · failed (latest completed
//   test not a pass) · held (by its serial, its lot or a production window)
//   · scrapped · already inside another device (or already in this one).
// The cell checks are the ship gate's own (LookupSession, quarantine.hpp:
// the one quarantine_state() rule of store.hpp) and the check and the write
// are ONE write transaction (Store::write_transaction): a hold or a
// competing link committed by anyone else cannot slip between them.
//
// Holds propagate by computation, never by copying. A device may ship only
// when it is known, its own state (quarantine events on its serial, judged
// by the same rule) is clear or released, it contains at least one cell, and
// every cell inside it now may ship (LookupSession). So holding a lot or a
// window holds every device containing such a cell at the moment of the
// question — also devices assembled before the hold — and releasing it
// frees them again.
//
// Lookups answer for any serial: a serial the store knows as a device is
// answered as a device, any other as a cell (lookup_units). In bulk, devices
// are read in key order and judged one by one into a reused buffer
// (for_each_device); check_devices keeps only status and may-ship of each
// (DeviceCheck), lookup_devices a DeviceLookup each — the same answers. ship_units() is
// the ship gate over both kinds: the decision and the shipment record are one
// write transaction, recorded as ship() records (station event "shipment",
// every unit's serial), so shipped_serials() sees devices too.
//
// Errors: UsageError (bad input: an actor missing, a bad window),
// QuarantineRefused (policy: unlink without the quality role, a cell that is
// not inside the device), StoreError (the database). Link refusals are
// results, not exceptions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "eol/station/quarantine.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::station {

/// The default device serial scheme: 16 characters over 0-9 A-Z without I
/// and O, plant (1-2), line (3), sequence (4-15, base 34), Luhn check (16) —
/// the same as the shipped config/device-serial-scheme.toml.
const SerialScheme& device_serial_scheme();

enum class LinkRefusalKind {
    device_invalid,   // the device serial does not pass the device scheme
    device_model,     // model missing, or the stored device is another model
    device_scrapped,  // the device itself is scrapped
    no_cells,         // nothing to link
    invalid,          // a cell serial does not pass the cell scheme
    repeated,         // the same cell twice in one request
    unknown,          // never tested here
    untested,         // known, but no completed test
    failed,           // latest completed test not a pass
    held,             // held by serial, lot or window
    scrapped,
    in_other_device,  // inside another device now
    already_linked,   // inside this device already
};
std::string_view to_string(LinkRefusalKind kind);

struct LinkRefusal {
    std::string input;   // the cell (or, for device refusals, the device) as given
    std::string serial;  // normalized ("" when invalid)
    LinkRefusalKind kind = LinkRefusalKind::unknown;
    std::string reason;  // complete and printable
};

struct LinkRequest {
    std::string device;              // as typed or scanned
    std::string model;
    std::vector<std::string> cells;  // as typed or scanned
    std::string station_id = "ASSY-01";
    std::string actor;               // optional for links
    double time_unix_s = 0.0;        // 0 = now
};

struct LinkResult {
    bool linked = false;
    std::string device;               // normalized ("" when invalid)
    std::vector<std::string> cells;   // normalized, as linked
    std::vector<LinkRefusal> refused; // empty when linked
};

struct DeviceLookup {
    std::string input;                       // as given
    std::string serial;                      // normalized ("" when invalid)
    std::shared_ptr<const SerialError> error;
    bool known = false;
    std::string model;
    double assembled_unix_s = 0.0;
    std::string station_id;
    CellState own_state = CellState::clear;  // events on the device's own serial
    std::vector<QuarantineEvent> own_because;
    std::vector<LookupResult> cells;         // inside it now, each through the ship gate
    bool may_ship = false;

    /// The device as a whole: scrapped (itself or a cell), held (itself or a
    /// cell), released (itself or a cell, nothing held), else clear.
    CellState state() const;
    /// "invalid", "unknown", "empty" (no cell inside), or state().
    std::string_view status() const;
    /// Why it may not ship, one short line ("" when it may).
    std::string why_not() const;
};

/// The compact answer of a bulk device check (Genealogy::check_devices): a
/// device's status and whether it may ship, exactly as its DeviceLookup
/// says (status(), may_ship), without the details (two bytes a device).
struct DeviceCheck {
    enum class Status : std::uint8_t { invalid, unknown, empty, clear, held, released, scrapped };
    Status status = Status::invalid;
    bool may_ship = false;

    static DeviceCheck of(const DeviceLookup& d);
    /// As DeviceLookup::status(): "invalid", "unknown", "empty", "clear", "held", …
    std::string_view status_text() const;
};

/// One looked-up serial of either kind.
struct UnitLookup {
    bool is_device = false;
    LookupResult cell;    // when !is_device
    DeviceLookup device;  // when is_device
    bool may_ship() const { return is_device ? device.may_ship : cell.may_ship; }
    const std::string& serial() const { return is_device ? device.serial : cell.serial; }
    const std::string& input() const { return is_device ? device.input : cell.input; }
};

class Genealogy {
public:
    explicit Genealogy(Store& store, const SerialScheme& cell_scheme = SerialScheme::default_scheme(),
                       const SerialScheme& device_scheme = device_serial_scheme());

    /// The interlock and the links of one device, in ONE write transaction
    /// (joins an open one: then a refusal writes nothing either).
    LinkResult link(const LinkRequest& request);
    /// Unlinks a cell from a device (rework). Needs a reason, an actor and
    /// the role "quality" or "admin" (QuarantineRefused otherwise, and when the cell is
    /// not inside that device now). Returns the event id.
    std::int64_t unlink(std::string_view device, std::string_view cell, std::string_view reason, const Actor& actor,
                        std::string_view station_id = "REWORK-01", double time_unix_s = 0.0);

    DeviceLookup lookup_device(std::string_view input);
    /// Many device serials (same order), in bulk: for_each_device() kept.
    std::vector<DeviceLookup> lookup_devices(std::span<const std::string> inputs);
    /// The bulk check: each device judged as for_each_device() judges it,
    /// reduced to DeviceCheck (same order), straight from the store's read
    /// (Store::for_each_device_cells): no DeviceLookup per device (only for
    /// the rare device left to the full lookup) — the way to decide a million.
    std::vector<DeviceCheck> check_devices(std::span<const std::string> inputs);
    /// Many device serials as typed or scanned (repeats, unknown and invalid
    /// ones allowed), each judged as lookup_device() judges it and handed to
    /// visit(i, d) once, i its place in `inputs`, in no particular order:
    /// `d` is valid during the call only (a buffer reused from device to
    /// device; copy what is kept). The event caches are refreshed once, then
    /// the devices are read in key order by Store::for_each_device_cells —
    /// on its bulk readers (≥ 256 valid serials, outside a write
    /// transaction) `visit` is called from several threads at once, for
    /// distinct i, and must guard shared state and not use this Genealogy or
    /// its Store. Invalid inputs are visited first (on the calling thread),
    /// unknown devices and the rare device with a cell the store cannot
    /// judge alone (not a stored cell of this cell scheme: looked up in full
    /// afterwards) last, on the calling thread. Exceptions from `visit` stop
    /// the check and are rethrown; StoreError on a database error.
    void for_each_device(std::span<const std::string> inputs,
                         const std::function<void(std::size_t, const DeviceLookup&)>& visit);
    /// Serials of either kind (same order): known devices as devices, the
    /// rest as cells. for_each_unit() kept.
    std::vector<UnitLookup> lookup_units(std::span<const std::string> inputs);
    /// Serials of either kind as typed or scanned, each handed once to
    /// visit(i, device, cell), i its place in `inputs`, in no particular
    /// order: a serial of the device scheme that is a device the store knows
    /// as `device` (cell null), judged as for_each_device() judges it; every
    /// other one as `cell` (device null), judged as LookupSession::lookup_many
    /// judges it. Both are valid during the call only. Devices are visited
    /// as for_each_device() visits them — from several threads at once in a
    /// large batch (distinct i: guard shared state, do not use this
    /// Genealogy or its Store) — then the cells on the calling thread. A
    /// store without devices answers every serial as a cell (no device
    /// probe). What `eolstation lookup` prints, without a copy of each
    /// answer: the way to answer a million.
    void for_each_unit(std::span<const std::string> inputs,
                       const std::function<void(std::size_t, const DeviceLookup*, const LookupResult*)>& visit);

    LookupSession& cell_session() { return cells_; }
    const SerialScheme& device_scheme() const { return device_scheme_; }
    const SerialScheme& cell_scheme() const { return cell_scheme_; }

private:
    /// A batch's valid serials, normalized, and their places in `inputs`
    /// (appended); `invalid(i)` for each input the device scheme refuses.
    /// UsageError over 2^32 inputs.
    void normalize_batch(std::span<const std::string> inputs, std::vector<std::string>& serials,
                         std::vector<std::uint32_t>& place, const std::function<void(std::size_t)>& invalid) const;
    /// for_each_device() after normalize_batch(): the valid serials and
    /// their places (the invalid inputs are the caller's).
    void read_devices(std::span<const std::string> inputs, std::span<const std::string> serials,
                      std::span<const std::uint32_t> place,
                      const std::function<void(std::size_t, const DeviceLookup&)>& visit);
    /// Fills a known device's lookup from what the store read and judges it
    /// (every field but input, serial and error: `d` may be reused).
    /// False when a cell inside needs the full cell lookup (unknown here, or
    /// not a serial of the cell scheme as stored): that cell is left for it
    /// (its serial empty).
    bool judge_read(DeviceLookup& d, const DeviceCells& read) const;
    /// The same judgement reduced to a DeviceCheck (check_devices): no
    /// DeviceLookup built, no string kept. False when judge_read() would be
    /// incomplete (`out` then untouched). Thread-safe as judge_read().
    bool check_read(const std::string& serial, const DeviceCells& read, DeviceCheck& out) const;
    /// One stored cell of a device judged into `r` (serial, known, lot,
    /// date, verdict, then the cell session's judgement); false, `r`
    /// untouched, when the full cell lookup must decide (unknown, or not a
    /// serial of the cell scheme as stored). decoded/lot/date: scratch.
    bool judge_stored_cell(const DeviceCell& c, LookupResult& r, std::string& decoded, std::string& lot,
                           std::string& date) const;
    /// A device's own state (its serial-scope events, by quarantine_state(),
    /// from the cell session's event cache: one refresh serves both).
    CellState own_state(const std::string& serial, std::vector<QuarantineEvent>* because) const {
        return cells_.serial_state(serial, because);
    }

    Store& store_;
    const SerialScheme& cell_scheme_;
    const SerialScheme& device_scheme_;
    LookupSession cells_;  // the cells' ship gate
};

struct UnitShipment {
    bool shipped = false;
    std::int64_t event_id = 0;
    std::size_t units = 0;     // distinct units
    std::size_t devices = 0;   // of which devices
    std::size_t repeats = 0;
    std::vector<UnitLookup> refused;
};

/// The ship gate over cells and devices: records one shipment when every
/// unit may ship, otherwise nothing; decision and record in ONE write
/// transaction (as ship() in quarantine.hpp).
UnitShipment ship_units(Store& store, Genealogy& genealogy, std::span<const std::string> serials,
                        std::string_view gate_id, const Actor& actor, std::string_view reference);

/// A device containing at least one affected cell.
struct RecallDevice {
    DeviceInfo device;
    std::vector<CellInfo> affected_cells;      // the cells of the recall scope inside it
    std::optional<double> shipped_unix_s;      // first shipment, when it left
};

struct ModelCount {
    std::size_t devices = 0;
    std::size_t shipped = 0;
    std::size_t in_stock = 0;
    std::size_t affected_cells = 0;
};

struct DeviceRecall {
    std::vector<RecallDevice> devices;          // by device serial
    std::map<std::string, ModelCount> models;   // by model
    std::size_t affected_cells_in_devices = 0;
};

/// Every device containing (now) a cell of `filter` (a lot and/or a window
/// of production dates), shipped or in stock, optionally of one model only.
DeviceRecall recall_devices(Store& store, const CellFilter& filter, const std::optional<std::string>& model = {});

}  // namespace eol::station
