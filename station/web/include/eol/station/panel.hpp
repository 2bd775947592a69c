// eol/station/panel.hpp — the operator panel: an HTTP server (Boost.Beast)
// on the controller's event loop that serves the line operators' page and
// its API (docs/panel.md):
//
//   GET  /                       the page (embedded in the binary: index.html, panel.js, panel.css)
//   GET  /chart.js               the Debian package libjs-chart.js, read from its installed
//                                path at start (404 when missing: the page then says plots
//                                are unavailable and works without them)
//   GET  /api/config             station id, positions, language and its translation table
//   GET  /api/status             channels (state, serial, step, progress, V/I/T, the banner
//                                of the last result), station state, alarms, yield counters,
//                                the last 50 cells
//   GET  /api/events             Server-Sent Events: `status` about 4× a second while anything
//                                changes (and at once after a panel action), `cells` when the
//                                last-cells list changes, a comment every 15 s otherwise
//   GET  /api/cells/{serial}     its stored runs (measurements, fits), state and holds
//   GET  /api/lookup?serial=S    the ship gate's answer (read only)
//   GET  /unit/{serial}          the unit page (station/report's build_unit_report)
//   GET  /recall, /api/recall/config, /api/recall?serial=S
//                                the public recall lookup by device serial, when the
//                                station file has an enabled [recall] (recall_page.hpp):
//                                no login, rate limited per client address (429)
//   GET  /api/me                 the logged-in user ({"user": null} without a login)
//   POST /api/login              {"user","password"} → a session cookie (station/auth)
//   POST /api/logout             clears the cookie
//   POST /api/channels/{n}/start {"serial"}  — these three need a logged-in
//   POST /api/channels/{n}/abort             operator (or higher); quarantine
//   POST /api/channels/{n}/reset             release is never on the panel
//
// The banner of a channel (PASS / FAIL / HOLD / ABORTED / ERROR and the
// reason) is the panel's memory of that channel's last finished cell: it
// stays until the next cell STARTS on the channel (a fault reset does not
// clear it). Finished cells are seen by polling Controller::snapshot()
// every 250 ms, so they are counted whether the panel, standard input or
// the PLC started them (two holds answered on one channel within 250 ms
// count as one: docs/panel.md).
//
// Lifecycle: PanelServer binds and listens in its constructor (port 0 takes
// a free one, see port()) and from then on runs on a strand of the executor
// it is given (serve gives Controller::executor()): accepting, reading
// requests and writing answers are asynchronous (C++20 coroutines), so a
// slow or stalled client never holds up the loop. What may block — the
// store (logins with their Argon2id verify, sessions, lookups, unit pages)
// and the controller calls start() and fault_reset() — runs on the
// server's two worker threads; their answers come back to the strand.
// stop() (and the destructor) closes the listener and every connection (on
// the strand: from another thread it waits for that, at most 2 s) and joins
// the workers. Call it while the loop still runs — before
// Controller::shutdown(), which ends the loop.
//
// Limits (bad input never crashes the server; each gets a 4xx and is
// logged): request line and headers ≤ 8 KiB (431), body ≤ 8 KiB (413), a
// request must arrive within 15 s of the last (slow or idle clients are
// closed), ≤ 128 connections at once (more get 503), ≤ 32 event streams,
// each with a queue of 8 messages — a client that does not keep up loses
// the oldest snapshots (each is complete) and is closed when one write
// takes over 10 s; ≤ 32 requests waiting for the workers (503 beyond).
//
// Security: the session is the store's auth token in a cookie `eol_session`
// (HttpOnly, SameSite=Strict, Path=/, Max-Age = the token's lifetime, the
// auth policy's session_ttl_s). POSTs must carry Content-Type
// application/json (a cross-site form cannot). Failed logins are rate
// limited and logged by station/auth (429 when limited).
//
// Errors: the constructor throws UsageError when the address cannot be
// bound (naming it) and StoreError when the store cannot be opened.
#pragma once

#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/shift.hpp"
#include "eol/station/auth.hpp"
#include "eol/station/controller.hpp"

namespace eol::station::web {

// ---------------------------------------------------------------- translation

/// One operator-facing text in every shipped language. "{0}", "{1}" are
/// replaced by arguments.
struct PanelText {
    std::string_view key;
    std::string_view en;
    std::string_view zh_cn;  // Simplified Chinese
};
/// The one translation table (sorted by key).
const std::vector<PanelText>& panel_texts();
/// "en" or "zh-CN" (what [panel] language accepts).
bool known_language(std::string_view language);
/// The text of `key` in `language` (anything but "zh-CN" is English);
/// std::out_of_range for an unknown key.
std::string_view panel_text(std::string_view key, std::string_view language);
/// The same with "{0}".. replaced by `args`.
std::string panel_text(std::string_view key, std::string_view language, std::initializer_list<std::string_view> args);

// ---------------------------------------------------------------- the server

struct PanelOptions {
    std::string bind = "127.0.0.1";
    int port = 8080;          // 0: a free port (tests)
    std::string language = "en";
    /// The chart library (Debian libjs-chart.js), served as /chart.js.
    std::filesystem::path chart_js = "/usr/share/javascript/chart.js/chart.min.js";
    AuthPolicy auth;          // sessions and the login rate limit
    double status_period_s = 0.25;  // snapshot poll and event-stream period
    /// Whether the line PLC's heartbeat is stale now (an alarm); empty: no PLC.
    std::function<bool()> plc_heartbeat_stale;
    /// Shift starts, minutes after local midnight, increasing ([panel]
    /// shifts): the yield counters count the current shift — at start, what
    /// the store holds of it (Store::station_counts_since); at each shift
    /// start they begin again.
    std::vector<int> shift_start_min = {6 * 60, 14 * 60, 22 * 60};
    /// The public recall lookup page (recall_page.hpp): served when active().
    RecallConfig recall;
};

/// shift.hpp (the station's shifts; the golden check uses them too).
using eol::station::shift_bounds;

/// PanelOptions from the station file's [panel] (and the defaults).
PanelOptions panel_options(const StationConfig& cfg);

class PanelServer {
public:
    /// Binds options.bind:port and starts serving on `executor` (a strand of
    /// it). `controller` must outlive the server. Opens its own connection
    /// to the controller's store. Throws UsageError, StoreError.
    PanelServer(boost::asio::any_io_executor executor, Controller& controller, PanelOptions options);
    ~PanelServer();
    PanelServer(const PanelServer&) = delete;
    PanelServer& operator=(const PanelServer&) = delete;

    /// The port listened on (the bound one when the port was 0).
    std::uint16_t port() const;
    /// Whether the chart library was found (else /chart.js is 404).
    bool charts_available() const;
    /// Closes the listener and every connection, joins the workers.
    /// Idempotent; waits at most 2 s for the loop (see the top of this header).
    void stop();

private:
    struct Core;
    std::shared_ptr<Core> core_;
};

/// What `serve` calls: a PanelServer over `controller` on `executor` when
/// the station file has an enabled [panel] table, else nullptr. Logs the
/// URL it serves.
std::unique_ptr<PanelServer> start_panel_if_configured(boost::asio::any_io_executor executor, Controller& controller,
                                                       std::function<bool()> plc_heartbeat_stale = {});

}  // namespace eol::station::web
