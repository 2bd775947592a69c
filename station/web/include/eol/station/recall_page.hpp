// eol/station/recall_page.hpp — the public recall lookup (docs/genealogy.md,
// "The recall lookup page"): what the panel's server answers at
//
//   GET /recall                  the page (embedded: recall.html, recall.js, recall.css)
//   GET /api/recall/config       the device serial scheme as JSON (length, alphabet, check
//                                rule, ignored characters, aliases, confusable pairs) and the
//                                page's texts — the page hard-codes none of them
//   GET /api/recall?serial=S     {"serial", "affected", "status", "headline", "action",
//                                "disposal", "contact"} — the same keys for every valid
//                                serial, known or not; 400 {"error", "position",
//                                "candidates"} for malformed input; 429 + Retry-After
//
// when the station file has an enabled [recall] table (RecallConfig) and the
// panel runs. The rule: a device is AFFECTED when the genealogy knows it and
// at least one cell inside it now may not ship by the cells' ship gate
// (held by serial, lot or production window, failed, scrapped) — the
// DeviceLookup of Genealogy::lookup_device, no rule of its own. Everything
// else is "not affected": an unknown serial, a device without cells, and a
// device that is only held itself (its own serial) while its cells may ship —
// such a hold is the factory's stock decision, not the cell recall this page
// answers. The answer carries no cell data (no cell serial, lot, date,
// measurement, model, hold reason): only the normalized serial, the verdict
// and texts from the configuration.
//
// Lifecycle: a RecallDesk lives on the panel's store worker (it uses the
// panel's store connection; not thread-safe); RateLimiter and the timing pad
// live on the panel's strand. Errors: the constructor throws UsageError for a
// device scheme file that does not load; answer() lets StoreError through.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "eol/station/config.hpp"
#include "eol/station/genealogy.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::station::web {

/// The largest serial input /api/recall accepts (bytes, as received).
inline constexpr std::size_t kMaxRecallInputBytes = 64;

/// The device serial scheme of `cfg` (its file, or the built-in one).
/// Throws UsageError (file:line) when the file does not load.
std::shared_ptr<const SerialScheme> recall_device_scheme(const RecallConfig& cfg);

/// What a page needs to filter keystrokes and check what is typed, derived
/// from `scheme` through its own normalize() (so the page and the server
/// agree by construction): {"length", "alphabet", "check": "luhn"|"none",
/// "ignore": the characters dropped, "aliases": {typed: symbol} for every
/// printable ASCII character accepted as another symbol (o, O → 0; lower
/// case → upper), "confusable": [["1","L"], …]}. A JSON text.
std::string recall_scheme_json(const SerialScheme& scheme);

/// One answer of /api/recall: the HTTP status and the JSON body.
struct RecallAnswer {
    unsigned status = 200;
    bool affected = false;   // 200 only
    std::string body;
};

/// The lookups of /api/recall over one store connection.
class RecallDesk {
public:
    /// `store` and `cell_scheme` must outlive the desk. Throws UsageError.
    RecallDesk(Store& store, const SerialScheme& cell_scheme, const RecallConfig& cfg);
    RecallDesk(const RecallDesk&) = delete;
    RecallDesk& operator=(const RecallDesk&) = delete;

    /// The 400 answer for input that is empty, over kMaxRecallInputBytes or
    /// not a valid serial of the device scheme (the scheme's message, the
    /// position, the confusable corrections); nullopt for a valid serial.
    /// Reads only immutable state: safe from any thread.
    std::optional<RecallAnswer> reject(std::string_view input) const;
    /// The answer for `input` as typed: reject()'s, or the device's verdict.
    RecallAnswer answer(std::string_view input);
    /// The body of /api/recall/config.
    const std::string& page_config() const { return page_config_; }
    const SerialScheme& device_scheme() const { return *device_scheme_; }

private:
    RecallConfig cfg_;
    std::shared_ptr<const SerialScheme> device_scheme_;
    Genealogy genealogy_;
    std::string page_config_;
};

/// "{0}".. of a text replaced by `args`.
std::string fill_text(std::string_view text, std::initializer_list<std::string_view> args);

/// Per-client token buckets: each client may make `burst` requests in a row,
/// after which its allowance refills at `per_s` a second. At most
/// `max_clients` buckets are kept: when full, buckets that have refilled
/// completely are forgotten (they hold no information), then the least
/// recently used one. Not thread-safe (the panel's strand).
class RateLimiter {
public:
    RateLimiter(double burst, double per_s, std::size_t max_clients = 16384);
    /// Takes a token for `client` at `now_s` (any monotonic clock): 0 when
    /// allowed, else the seconds until the next token (> 0).
    double take(const std::string& client, double now_s);
    std::size_t clients() const { return buckets_.size(); }

private:
    struct Bucket {
        double tokens = 0;
        double last_s = 0;
    };
    void make_room(double now_s);

    double burst_;
    double per_s_;
    std::size_t max_clients_;
    std::unordered_map<std::string, Bucket> buckets_;
};

/// The rate-limit key of a client address: an IPv4 address as it is, an
/// IPv6 address by its /64 network (one subscriber's prefix), an IPv4-mapped
/// IPv6 address as IPv4. The text itself when it is not an address.
std::string recall_client_key(std::string_view address);

}  // namespace eol::station::web
