// The operator panel's HTTP server (panel.hpp): Boost.Beast over C++20
// coroutines on a strand of the controller's loop; blocking work on two
// worker threads. See the header for the endpoints, limits and lifecycle.
#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)

#include "eol/station/panel.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "eol/station/errors.hpp"
#include "eol/station/log.hpp"
#include "eol/station/quarantine.hpp"
#include "eol/station/recall_page.hpp"
#include "eol/station/report.hpp"
#include "eol/station/store.hpp"
#include "eol/station/text.hpp"
#include "panel_assets.hpp"

namespace eol::station::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;
using Request = http::request<http::string_body>;

namespace {

constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::size_t kMaxBodyBytes = 8 * 1024;
constexpr int kMaxConnections = 128;
constexpr std::size_t kMaxEventStreams = 32;
constexpr std::size_t kEventQueue = 8;
constexpr int kMaxPendingJobs = 32;
constexpr std::size_t kRecentCells = 50;
constexpr auto kRequestTimeout = std::chrono::seconds(15);
constexpr auto kWriteTimeout = std::chrono::seconds(10);
constexpr auto kPingPeriod = std::chrono::seconds(15);

spdlog::logger& log() { return station_log("panel"); }

double unix_now_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

/// What a handler answers; the session turns it into a response.
struct Reply {
    unsigned status = 200;
    std::string content_type = "application/json; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra (Set-Cookie, Allow)
    bool event_stream = false;  // hand the connection to the event stream
    bool cache = false;         // static assets may be cached briefly
};

Reply json_reply(unsigned status, const json& j) {
    Reply r;
    r.status = status;
    r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
    return r;
}

Reply error_reply(unsigned status, const std::string& message) { return json_reply(status, json{{"error", message}}); }

/// %XX decoded; nullopt for a bad escape or a NUL.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
    std::string out;
    out.reserve(s.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            const int a = hex(s[i + 1]), b = hex(s[i + 2]);
            if (a < 0 || b < 0) return std::nullopt;
            const char c = static_cast<char>(a * 16 + b);
            if (c == '\0') return std::nullopt;
            out += c;
            i += 2;
        } else if (plus_is_space && s[i] == '+') {
            out += ' ';
        } else {
            out += s[i];
        }
    }
    return out;
}

/// The value of `key` in a query string ("a=1&b=2"), decoded.
std::optional<std::string> query_value(std::string_view query, std::string_view key) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == key) return percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

/// The session token from the Cookie header ("" when none).
std::string session_token(const Request& req) {
    const auto it = req.find(http::field::cookie);
    if (it == req.end()) return {};
    std::string_view c(it->value().data(), it->value().size());
    while (!c.empty()) {
        const auto semi = c.find(';');
        std::string_view part = c.substr(0, semi);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        if (part.substr(0, 12) == "eol_session=") return std::string(part.substr(12));
        if (semi == std::string_view::npos) break;
        c.remove_prefix(semi + 1);
    }
    return {};
}

/// A fixture position from a path segment: 1..9999.
std::optional<int> position_of(std::string_view s) {
    if (s.empty() || s.size() > 4) return std::nullopt;
    int v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') return std::nullopt;
        v = v * 10 + (ch - '0');
    }
    return v == 0 ? std::nullopt : std::optional<int>(v);
}

std::string banner_key(const std::string& verdict) {
    if (verdict == "pass" || verdict == "fail" || verdict == "hold" || verdict == "abort" || verdict == "error")
        return "banner_" + verdict;
    return "banner_error";
}

struct Banner {
    std::string verdict, reason, serial;
    double time_unix_s = 0;
};

struct FinishedCell {
    int position = 0;
    std::string serial, verdict, reason;
    double time_unix_s = 0;
};

struct Counters {
    std::size_t tested = 0, pass = 0, fail = 0, hold = 0, abort = 0, error = 0;
};

/// One event-stream client: its queue (bounded) and the timer that wakes its writer.
struct EventClient {
    struct Message {
        bool status = false;  // a status snapshot: the first to drop when the queue is full
        std::string text;
    };
    explicit EventClient(const asio::any_io_executor& ex) : wake(ex) {}
    std::deque<Message> queue;
    asio::steady_timer wake;
    std::size_t dropped = 0;
};

class Busy : public std::runtime_error {
public:
    Busy() : std::runtime_error("busy") {}
};

}  // namespace

PanelOptions panel_options(const StationConfig& cfg) {
    PanelOptions o;
    o.bind = cfg.panel.bind;
    o.port = cfg.panel.port;
    o.language = cfg.panel.language;
    o.shift_start_min = cfg.panel.shift_start_min;
    o.recall = cfg.recall;
    return o;
}

struct PanelServer::Core : std::enable_shared_from_this<PanelServer::Core> {
    Core(asio::any_io_executor ex, Controller& c, PanelOptions o)
        : controller(c),
          opt(std::move(o)),
          lane(asio::make_strand(ex)),
          strand(lane),
          acceptor(strand),
          ticker(strand),
          store_lane(pool.get_executor()) {}

    Controller& controller;
    PanelOptions opt;
    asio::strand<asio::any_io_executor> lane;
    asio::any_io_executor strand;  // the lane, as the executor every I/O object and coroutine uses
    tcp::acceptor acceptor;
    asio::steady_timer ticker;
    std::uint16_t bound_port = 0;
    std::string chart_js;
    bool charts = false;

    // Workers: the store (and auth, lookups, unit pages) on one lane; the
    // controller's blocking calls on the pool.
    asio::thread_pool pool{2};
    asio::strand<asio::thread_pool::executor_type> store_lane;
    std::optional<Store> store;
    std::optional<Auth> auth;
    std::optional<LookupSession> lookup;
    std::optional<RecallDesk> recall_desk;  // the store lane's; set when [recall] is active
    std::optional<RateLimiter> recall_limit;  // strand-only
    double recall_slow_logged_s = -1e9;       // strand-only: when a slow answer was last logged
    std::atomic<int> pending_jobs{0};
    std::atomic<bool> stopped{false};

    // Strand-only state.
    std::map<int, ChannelSnapshot> previous;
    std::map<int, Banner> banners;
    std::deque<FinishedCell> recent;
    Counters counters;
    double since_unix_s = 0.0;       // the current shift's start
    double next_shift_unix_s = 0.0;  // when the counters begin again
    std::string status_text = "{}";
    std::string cells_text = "[]";
    std::set<std::shared_ptr<EventClient>> event_clients;
    std::map<std::uint64_t, beast::tcp_stream*> connections;
    std::uint64_t next_connection = 0;

    std::string t(std::string_view key) const { return std::string(panel_text(key, opt.language)); }
    std::string t(std::string_view key, std::initializer_list<std::string_view> args) const {
        return panel_text(key, opt.language, args);
    }

    // ------------------------------------------------------------ workers

    /// An awaitable that runs `fn` on `worker` and resumes the caller on the
    /// strand with its value (or its exception). Busy when too many jobs
    /// wait. Not a coroutine, and to be called in a statement of its own
    /// (`auto op = offload…; v = co_await std::move(op);`): GCC 12 destroys
    /// class-type temporaries made inside a co_await expression twice.
    template <class T, class Worker>
    asio::awaitable<T> offload(Worker worker, std::function<T()> fn) {
        if (pending_jobs.fetch_add(1) >= kMaxPendingJobs) {
            pending_jobs.fetch_sub(1);
            throw Busy();
        }
        auto job = std::make_shared<std::function<T()>>(std::move(fn));
        return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, T)>(
            [worker, home = strand, self = shared_from_this(), job](auto handler) mutable {
                asio::post(worker, [home, self, job, handler = std::move(handler)]() mutable {
                    std::exception_ptr e;
                    T value{};
                    try {
                        value = (*job)();
                    } catch (...) {
                        e = std::current_exception();
                    }
                    self->pending_jobs.fetch_sub(1);
                    asio::post(home, [handler = std::move(handler), e, value = std::move(value)]() mutable {
                        handler(e, std::move(value));
                    });
                });
            },
            asio::use_awaitable);
    }

    /// The logged-in user of the request, if any (the token checked by auth).
    asio::awaitable<std::optional<AuthUser>> user_of(const Request& req) {
        std::string token = session_token(req);
        if (token.empty() || token.size() > 256) co_return std::nullopt;
        auto op = offload<std::optional<AuthUser>>(store_lane, [this, token]() -> std::optional<AuthUser> {
            try {
                return auth->verify_token(token);
            } catch (const AuthError&) {
                return std::nullopt;
            }
        });
        co_return co_await std::move(op);
    }

    /// Wakes the ticker now (a panel action, a cell finished).
    void poke() {
        asio::post(strand, [w = weak_from_this()] {
            if (auto s = w.lock()) s->ticker.cancel();
        });
    }

    // ------------------------------------------------------------ status

    json channel_json(const ChannelSnapshot& s) const {
        json c{{"position", s.position},
               {"state", std::string(to_string(s.state))},
               {"state_text", t("state_" + std::string(to_string(s.state)))},
               {"serial", s.serial},
               {"reason", s.reason},
               {"out_of_service", s.out_of_service},
               {"since_unix_s", s.since_unix_s}};
        if (s.state == ChannelState::testing) {
            c["step"] = s.step;
            c["step_index"] = s.step_index;
            c["step_count"] = s.step_count;
            c["progress"] = s.step_count > 0 ? static_cast<double>(s.step_index) / static_cast<double>(s.step_count) : 0.0;
            c["elapsed_s"] = s.elapsed_s;
            c["v_v"] = number_or_null(s.v_v);
            c["i_a"] = number_or_null(s.i_a);
            c["temp_c"] = number_or_null(s.temp_c);
        }
        const auto b = banners.find(s.position);
        if (s.state != ChannelState::testing && b != banners.end()) {
            c["banner"] = {{"verdict", b->second.verdict},
                           {"text", t(banner_key(b->second.verdict))},
                           {"reason", b->second.reason},
                           {"serial", b->second.serial},
                           {"time_unix_s", b->second.time_unix_s}};
        } else {
            c["banner"] = nullptr;
        }
        return c;
    }

    /// Reads the controller, updates banners, the last cells and the
    /// counters, sends what changed to the event streams.
    void tick() {
        if (const double now = unix_now_s(); now >= next_shift_unix_s) {  // a new shift: count from zero
            std::tie(since_unix_s, next_shift_unix_s) = shift_bounds(now, opt.shift_start_min);
            counters = Counters{};
        }
        const auto snaps = controller.snapshot();
        const auto insts = controller.instruments();
        bool cells_changed = false;
        for (const auto& s : snaps) {
            const auto p = previous.find(s.position);
            const ChannelSnapshot* before = p == previous.end() ? nullptr : &p->second;
            if (s.state == ChannelState::testing) {
                banners.erase(s.position);  // the next cell started: the last result goes
            } else if (!s.verdict.empty() && (!before || before->since_unix_s != s.since_unix_s)) {
                // A cell finished — unless the channel only faulted while idle
                // (an instrument lost: the same serial and verdict as before).
                const bool idle_fault = before && before->state != ChannelState::testing &&
                                        s.state == ChannelState::faulted && before->serial == s.serial &&
                                        before->verdict == s.verdict;
                if (!idle_fault) {
                    FinishedCell f{s.position, s.serial, s.verdict, s.reason, s.since_unix_s};
                    banners[s.position] = Banner{s.verdict, s.reason, s.serial, s.since_unix_s};
                    recent.push_front(f);
                    if (recent.size() > kRecentCells) recent.pop_back();
                    cells_changed = true;
                }
                // Counted live from the second look on: what had finished
                // before this panel started is in the counts read from the store.
                if (!idle_fault && before) {
                    ++counters.tested;
                    if (s.verdict == "pass") ++counters.pass;
                    else if (s.verdict == "fail") ++counters.fail;
                    else if (s.verdict == "hold") ++counters.hold;
                    else if (s.verdict == "abort") ++counters.abort;
                    else ++counters.error;
                }
            }
            previous[s.position] = s;
        }

        json alarms = json::array();
        for (const auto& i : insts)
            if (i.state == InstrumentState::error)
                alarms.push_back({{"kind", "instrument"},
                                  {"text", t("instrument_down", {i.name, i.last_error.empty() ? "-" : i.last_error})}});
        bool testing = false;
        json channels = json::array();
        for (const auto& s : snaps) {
            testing = testing || s.state == ChannelState::testing;
            if (s.state == ChannelState::faulted)
                alarms.push_back({{"kind", s.out_of_service ? "fixture" : "channel"},
                                  {"position", s.position},
                                  {"text", t("channel_faulted", {std::to_string(s.position), s.reason})}});
            channels.push_back(channel_json(s));
        }
        if (const GoldenStatus g = controller.golden(); g.configured) {
            if (!g.blocked.empty())
                alarms.push_back({{"kind", "golden"}, {"position", g.blocked_position}, {"text", g.blocked}});
            else if (g.due)
                alarms.push_back({{"kind", "golden_due"},
                                  {"text", fmt::format("golden check due: test a golden cell ({}) first",
                                                       fmt::join(g.serials, ", "))}});
        }
        if (opt.plc_heartbeat_stale && opt.plc_heartbeat_stale())
            alarms.push_back({{"kind", "plc"}, {"text", t("plc_stale")}});
        const std::string state = !alarms.empty() ? "fault" : testing ? "running" : "idle";
        json instruments = json::array();
        for (const auto& i : insts)
            instruments.push_back({{"name", i.name}, {"role", i.role}, {"state", std::string(to_string(i.state))},
                                   {"last_error", i.last_error}});
        const double yield = counters.tested ? static_cast<double>(counters.pass) / static_cast<double>(counters.tested) : 0.0;
        json j{{"station", {{"id", controller.config().station_id},
                            {"state", state},
                            {"state_text", t("station_" + state)}}},
               {"channels", channels},
               {"instruments", instruments},
               {"alarms", alarms},
               {"counters", {{"tested", counters.tested},
                             {"pass", counters.pass},
                             {"fail", counters.fail},
                             {"hold", counters.hold},
                             {"abort", counters.abort},
                             {"error", counters.error},
                             {"yield", counters.tested ? json(yield) : json(nullptr)},
                             {"since_unix_s", since_unix_s}}}};
        std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
        if (text != status_text) {
            status_text = std::move(text);
            broadcast("status", status_text, true);
        }
        if (cells_changed) {
            json cells = json::array();
            for (const auto& f : recent)
                cells.push_back({{"position", f.position},
                                 {"serial", f.serial},
                                 {"verdict", f.verdict},
                                 {"text", t(banner_key(f.verdict))},
                                 {"reason", f.reason},
                                 {"time_unix_s", f.time_unix_s}});
            cells_text = cells.dump(-1, ' ', false, json::error_handler_t::replace);
            broadcast("cells", cells_text, false);
        }
    }

    /// `self` keeps the server alive for as long as the coroutine runs
    /// (parameters are copied into the frame when it is made).
    asio::awaitable<void> ticker_loop([[maybe_unused]] std::shared_ptr<Core> self) {
        while (!stopped) {
            try {
                tick();
            } catch (const std::exception& e) {
                log().error("status: {}", e.what());
            }
            ticker.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(opt.status_period_s)));
            beast::error_code ec;
            co_await ticker.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    // ------------------------------------------------------------ event streams

    void broadcast(std::string_view event, const std::string& data, bool is_status) {
        const std::string msg = "event: " + std::string(event) + "\ndata: " + data + "\n\n";
        for (const auto& c : event_clients) {
            if (c->queue.size() >= kEventQueue) {
                auto it = std::find_if(c->queue.begin(), c->queue.end(), [](const auto& m) { return m.status; });
                c->queue.erase(it != c->queue.end() ? it : c->queue.begin());
                ++c->dropped;
            }
            c->queue.push_back({is_status, msg});
            c->wake.cancel();
        }
    }

    asio::awaitable<void> event_stream(beast::tcp_stream& stream) {
        auto c = std::make_shared<EventClient>(strand);
        event_clients.insert(c);
        struct Leave {
            Core* core;
            std::shared_ptr<EventClient> c;
            ~Leave() { core->event_clients.erase(c); }
        } leave{this, c};
        c->queue.push_back({false,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\nretry: 2000\n\n"});
        c->queue.push_back({true, "event: status\ndata: " + status_text + "\n\n"});
        c->queue.push_back({false, "event: cells\ndata: " + cells_text + "\n\n"});
        while (!stopped) {
            if (c->queue.empty()) {
                c->wake.expires_after(kPingPeriod);
                beast::error_code ec;
                co_await c->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (stopped) break;
                if (!ec && c->queue.empty()) c->queue.push_back({false, ": ping\n\n"});
                continue;
            }
            const std::string msg = std::move(c->queue.front().text);
            c->queue.pop_front();
            stream.expires_after(kWriteTimeout);
            beast::error_code ec;
            co_await asio::async_write(stream, asio::buffer(msg), asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (ec == beast::error::timeout) log().warn("event stream: a client did not read for {} s: closed",
                                                            std::chrono::duration_cast<std::chrono::seconds>(kWriteTimeout).count());
                break;
            }
        }
        if (c->dropped) log().info("event stream closed; {} snapshots dropped for a slow client", c->dropped);
    }

    // ------------------------------------------------------------ handlers

    Reply asset(const Asset& a) const {
        Reply r;
        r.content_type = std::string(a.content_type);
        r.body = std::string(a.body);
        return r;
    }

    json config_json() const {
        json texts = json::object();
        for (const auto& e : panel_texts()) texts[std::string(e.key)] = std::string(panel_text(e.key, opt.language));
        json positions = json::array();
        for (const auto& ch : controller.config().channels) positions.push_back(ch.position);
        return {{"station_id", controller.config().station_id},
                {"language", opt.language},
                {"positions", positions},
                {"charts", charts},
                {"texts", texts}};
    }

    asio::awaitable<Reply> login(const Request& req) {
        const json body = json::parse(req.body(), nullptr, false);
        if (body.is_discarded() || !body.is_object() || !body.contains("user") || !body.contains("password") ||
            !body["user"].is_string() || !body["password"].is_string())
            co_return error_reply(400, t("bad_request") + ": {\"user\": …, \"password\": …}");
        const std::string user = body["user"].get<std::string>(), password = body["password"].get<std::string>();
        struct Outcome {
            unsigned status = 0;
            std::string token, name, role;
        };
        auto o_op = offload<Outcome>(store_lane, [this, user, password]() -> Outcome {
            try {
                const AuthUser u = auth->login(user, password);
                return {200, auth->issue_token(u), u.name, std::string(to_string(u.role))};
            } catch (const AuthRateLimited&) {
                return {429, {}, {}, {}};
            } catch (const AuthError&) {
                return {401, {}, {}, {}};
            } catch (const UsageError&) {  // a name or password of an impossible shape
                return {401, {}, {}, {}};
            }
        });
        const Outcome o = co_await std::move(o_op);
        if (o.status == 429) co_return error_reply(429, t("login_rate_limited"));
        if (o.status != 200) co_return error_reply(401, t("login_failed"));
        Reply r = json_reply(200, json{{"user", o.name}, {"role", o.role}});
        r.headers.emplace_back("Set-Cookie", "eol_session=" + o.token +
                                                 "; HttpOnly; SameSite=Strict; Path=/; Max-Age=" +
                                                 std::to_string(static_cast<long>(opt.auth.session_ttl_s)));
        co_return r;
    }

    asio::awaitable<Reply> channel_action(const Request& req, int position, std::string_view action) {
        const auto user = co_await user_of(req);
        if (!user || !user->at_least(Role::operator_)) co_return error_reply(401, t("login_required"));
        const std::string pos = std::to_string(position);
        if (action == "abort") {
            try {
                if (!controller.abort(position, fmt::format("operator abort by {} (panel)", user->name)))
                    co_return error_reply(409, t("not_testing", {pos}));
            } catch (const UsageError& e) {
                co_return error_reply(404, printable(e.what()));
            }
            log().info("{} aborted channel {}", user->name, position);
            poke();
            co_return json_reply(200, json{{"position", position}, {"aborting", true}});
        }
        struct Outcome {
            unsigned status = 200;
            json body;
        };
        if (action == "reset") {
            auto o_op = offload<Outcome>(pool.get_executor(), [this, position]() -> Outcome {
                try {
                    controller.fault_reset(position);
                    return {200, json{{"position", position}, {"reset", true}}};
                } catch (const ControllerRefused& e) {
                    return {409, json{{"error", printable(e.what())}}};
                } catch (const UsageError& e) {
                    return {404, json{{"error", printable(e.what())}}};
                }
            });
            const Outcome o = co_await std::move(o_op);
            log().info("{} fault reset of channel {}: {}", user->name, position, o.status == 200 ? "ok" : o.body.dump());
            poke();
            co_return json_reply(o.status, o.body);
        }
        // start
        const json body = json::parse(req.body(), nullptr, false);
        if (body.is_discarded() || !body.is_object() || !body.contains("serial") || !body["serial"].is_string() ||
            body["serial"].get<std::string>().size() > 64)
            co_return error_reply(400, t("bad_request") + ": {\"serial\": …}");
        const std::string serial = body["serial"].get<std::string>();
        auto w = weak_from_this();
        auto o_op = offload<Outcome>(pool.get_executor(), [this, position, serial, w]() -> Outcome {
            auto answered = std::make_shared<std::optional<CellResult>>();
            auto m = std::make_shared<std::mutex>();
            try {
                controller.start(position, serial, [w, answered, m](const CellResult& r) {
                    {
                        std::lock_guard lk(*m);
                        *answered = r;
                    }
                    if (auto s = w.lock()) s->poke();
                });
            } catch (const ControllerRefused& e) {
                return {409, json{{"error", printable(e.what())}}};
            } catch (const UsageError& e) {
                return {404, json{{"error", printable(e.what())}}};
            }
            std::lock_guard lk(*m);
            json j{{"position", position}};
            if (*answered && (*answered)->verdict == "hold") {  // answered at once, not tested
                j["serial"] = (*answered)->serial;
                j["verdict"] = "hold";
                j["reason"] = (*answered)->reason;
                j["started"] = false;
            } else {
                for (const auto& s : controller.snapshot())
                    if (s.position == position) j["serial"] = s.serial;
                j["started"] = true;
            }
            return {200, j};
        });
        const Outcome o = co_await std::move(o_op);
        log().info("{} start channel {} serial '{}': {}", user->name, position, printable(serial),
                   o.body.dump(-1, ' ', false, json::error_handler_t::replace));
        poke();
        co_return json_reply(o.status, o.body);
    }

    json cell_json(const std::string& serial) {
        json runs = json::array();
        for (const RunInfo& r : store->runs_for(serial)) {
            json ms = json::array();
            for (const Measurement& m : store->measurements(r.id))
                ms.push_back({{"name", m.name},
                              {"value", number_or_null(m.value)},
                              {"unit", m.unit},
                              {"low", m.low ? number_or_null(*m.low) : json(nullptr)},
                              {"high", m.high ? number_or_null(*m.high) : json(nullptr)},
                              {"outcome", std::string(to_string(m.outcome))}});
            json fits = json::array();
            for (const ModelFit& f : store->fits(r.id)) {
                json p = json::object(), ci = json::object();
                for (const auto& [k, v] : f.parameters) p[k] = number_or_null(v);
                for (const auto& [k, v] : f.ci95) ci[k] = json::array({number_or_null(v.low), number_or_null(v.high)});
                fits.push_back({{"kind", f.kind},
                                {"converged", f.converged},
                                {"rmse", number_or_null(f.rmse)},
                                {"parameters", p},
                                {"ci95", ci}});
            }
            runs.push_back({{"run_id", r.id},
                            {"station_id", r.station_id},
                            {"channel", r.channel},
                            {"recipe", r.recipe_name},
                            {"recipe_version", r.recipe_version},
                            {"start_unix_s", r.start_unix_s},
                            {"end_unix_s", r.end_unix_s},
                            {"verdict", std::string(to_string(r.verdict))},
                            {"reason", r.abort_reason},
                            {"measurements", ms},
                            {"fits", fits}});
        }
        const CellStatus st = store->status(serial);
        json holds = json::array();
        for (const QuarantineEvent& e : store->quarantine_events_for(serial, st.lot, st.production_date))
            holds.push_back({{"id", e.id},
                             {"time_unix_s", e.time_unix_s},
                             {"action", std::string(to_string(e.action))},
                             {"scope", std::string(to_string(e.scope))},
                             {"target", e.target},
                             {"reason", e.reason},
                             {"actor", e.actor},
                             {"role", e.role}});
        return {{"serial", serial},
                {"known", st.known},
                {"lot", st.lot},
                {"production_date", st.production_date},
                {"state", std::string(to_string(st.state))},
                {"runs", runs},
                {"quarantine_events", holds}};
    }

    json lookup_json(const LookupResult& r) const {
        json j{{"input", r.input}, {"status", std::string(r.status())}, {"may_ship", r.may_ship}};
        if (r.error) {
            j["error"] = {{"message", r.error->message}, {"position", r.error->position}};
            return j;
        }
        j["serial"] = r.serial;
        j["known"] = r.known;
        j["state"] = std::string(to_string(r.state));
        j["lot"] = r.lot;
        j["production_date"] = r.production_date;
        j["verdict"] = r.verdict ? json(std::string(to_string(*r.verdict))) : json(nullptr);
        json because = json::array();
        for (const auto& e : r.because)
            because.push_back({{"action", std::string(to_string(e.action))},
                               {"scope", std::string(to_string(e.scope))},
                               {"target", e.target},
                               {"reason", e.reason},
                               {"actor", e.actor},
                               {"time_unix_s", e.time_unix_s}});
        j["because"] = because;
        return j;
    }

    Reply not_found_page(const std::string& what) const {
        Reply r;
        r.status = 404;
        r.content_type = "text/html; charset=utf-8";
        r.body = "<!doctype html><meta charset=\"utf-8\"><title>" + html_escape(t("not_found")) + "</title><h1>" +
                 html_escape(t("not_found")) + "</h1><p>" + html_escape(what) + "</p>";
        return r;
    }

    /// Routes one request of `client` (recall_client_key of the peer's
    /// address). Exceptions other than Busy become 500.
    asio::awaitable<Reply> route(const Request& req, const std::string& client) {
        const std::string_view target(req.target().data(), req.target().size());
        if (target.empty() || target.front() != '/') co_return error_reply(400, t("bad_request"));
        const auto qpos = target.find('?');
        const auto path_opt = percent_decode(target.substr(0, qpos), false);
        if (!path_opt) co_return error_reply(400, t("bad_request"));
        const std::string& path = *path_opt;
        const std::string_view query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
        const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
        const bool post = req.method() == http::verb::post;
        auto allow = [&](const char* methods) {
            Reply r = error_reply(405, t("method_not_allowed"));
            r.headers.emplace_back("Allow", methods);
            return r;
        };
        if (post) {
            const auto ct = req.find(http::field::content_type);
            const bool is_json = ct != req.end() && beast::iequals(ct->value().substr(0, 16), "application/json");
            if (!is_json) co_return error_reply(415, t("bad_request") + ": Content-Type application/json");
        }

        // The page and its assets.
        for (const Asset& a : panel_assets()) {
            if (!recall_desk && a.path.rfind("/recall", 0) == 0) continue;  // no [recall]: no page
            if (path == a.path || (path == "/" && a.path == "/index.html") || (path == "/recall" && a.path == "/recall.html")) {
                if (!get) co_return allow("GET");
                co_return asset(a);
            }
        }
        if (path == "/chart.js") {
            if (!get) co_return allow("GET");
            if (!charts) co_return error_reply(404, t("plots_unavailable"));
            Reply r;
            r.content_type = "text/javascript; charset=utf-8";
            r.body = chart_js;
            r.cache = true;
            co_return r;
        }
        if (path == "/favicon.ico") co_return Reply{204, "image/x-icon", {}, {}, false, true};
        if (path == "/api/config") {
            if (!get) co_return allow("GET");
            co_return json_reply(200, config_json());
        }
        if (path == "/api/status") {
            if (!get) co_return allow("GET");
            json j = json::parse(status_text);
            j["cells"] = json::parse(cells_text);
            co_return json_reply(200, j);
        }
        if (path == "/api/events") {
            if (!get) co_return allow("GET");
            if (event_clients.size() >= kMaxEventStreams) co_return error_reply(503, t("server_busy"));
            Reply r;
            r.event_stream = true;
            co_return r;
        }
        if (path == "/api/me") {
            if (!get) co_return allow("GET");
            // 200 either way: the page asks at every load, and a 401 would be a console error.
            const auto user = co_await user_of(req);
            if (!user) co_return json_reply(200, json{{"user", nullptr}});
            co_return json_reply(200, json{{"user", user->name}, {"role", std::string(to_string(user->role))}});
        }
        if (path == "/api/login") {
            if (!post) co_return allow("POST");
            co_return co_await login(req);
        }
        if (path == "/api/logout") {
            if (!post) co_return allow("POST");
            // The session ends in the store, not only in this browser: a copied
            // cookie is refused from now on.
            if (std::string token = session_token(req); !token.empty() && token.size() <= 256) {
                auto op = offload<bool>(store_lane, [this, token]() {
                    try {
                        auth->logout(token);
                    } catch (const AuthError&) {  // already ended or unknown: logged out either way
                    }
                    return true;
                });
                co_await std::move(op);
            }
            Reply r = json_reply(200, json{{"logged_out", true}});
            r.headers.emplace_back("Set-Cookie", "eol_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
            co_return r;
        }
        if (path.rfind("/api/channels/", 0) == 0) {
            const std::string rest = path.substr(14);
            const auto slash = rest.find('/');
            const auto pos = position_of(std::string_view(rest).substr(0, slash));
            const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
            if (!pos || (action != "start" && action != "abort" && action != "reset"))
                co_return error_reply(404, t("not_found"));
            if (!post) co_return allow("POST");
            co_return co_await channel_action(req, *pos, action);
        }
        if (path.rfind("/api/cells/", 0) == 0 || path.rfind("/unit/", 0) == 0) {
            const bool unit = path.rfind("/unit/", 0) == 0;
            if (!get) co_return allow("GET");
            const std::string input = path.substr(unit ? 6 : 11);
            const DecodeResult d = controller.scheme().decode(input);
            if (!d) {
                if (unit) {
                    Reply r = not_found_page(printable(input) + ": " + d.error->message);
                    r.status = 400;
                    co_return r;
                }
                co_return json_reply(400, json{{"error", d.error->message}, {"position", d.error->position}});
            }
            const std::string serial = d.value.serial;
            if (unit) {
                struct Page {
                    bool found = false;
                    std::string html, error;
                };
                auto p_op = offload<Page>(store_lane, [this, serial]() -> Page {
                    try {
                        return {true, build_unit_report(*store, serial, controller.scheme(), "eolstation panel").html, {}};
                    } catch (const UsageError& e) {
                        return {false, {}, e.what()};
                    }
                });
                const Page p = co_await std::move(p_op);
                if (!p.found) co_return not_found_page(t("unknown_serial") + ": " + serial + " (" + printable(p.error) + ")");
                Reply r;
                r.content_type = "text/html; charset=utf-8";
                r.body = p.html;
                co_return r;
            }
            auto j_op = offload<json>(store_lane, [this, serial] { return cell_json(serial); });
            const json j = co_await std::move(j_op);
            if (!j["known"].get<bool>() && j["runs"].empty())
                co_return json_reply(404, json{{"error", t("unknown_serial")}, {"serial", serial},
                                               {"state", j["state"]}, {"quarantine_events", j["quarantine_events"]}});
            co_return json_reply(200, j);
        }
        if (path == "/api/lookup") {
            if (!get) co_return allow("GET");
            const auto serial = query_value(query, "serial");
            if (!serial || serial->empty() || serial->size() > 64)
                co_return error_reply(400, t("bad_request") + ": /api/lookup?serial=SERIAL");
            const std::string s = *serial;
            auto j_op = offload<json>(store_lane, [this, s] { return lookup_json(lookup->lookup(s)); });
            const json j = co_await std::move(j_op);
            co_return json_reply(j.contains("error") ? 400 : 200, j);
        }
        if (recall_desk && (path == "/api/recall" || path == "/api/recall/config")) {
            if (!get) co_return allow("GET");
            co_return co_await recall_lookup(path, query, client);
        }
        co_return error_reply(404, t("not_found"));
    }

    /// /api/recall and its page's configuration (recall_page.hpp): rate
    /// limited per client; every lookup that reached the store is answered
    /// no sooner than min_answer_s after it arrived, known serial or not.
    asio::awaitable<Reply> recall_lookup(const std::string& path, std::string_view query, const std::string& client) {
        if (path == "/api/recall/config") {
            Reply r;
            r.body = recall_desk->page_config();
            co_return r;
        }
        const auto arrived = std::chrono::steady_clock::now();
        const double wait_s =
            recall_limit->take(client, std::chrono::duration<double>(arrived.time_since_epoch()).count());
        if (wait_s > 0) {
            const long retry_s = std::max(1L, static_cast<long>(std::ceil(wait_s)));
            Reply r = json_reply(429, json{{"error", fill_text(opt.recall.texts.at("rate_limited"), {std::to_string(retry_s)})},
                                           {"retry_after_s", retry_s}});
            r.headers.emplace_back("Retry-After", std::to_string(retry_s));
            co_return r;
        }
        const auto serial = query_value(query, "serial");
        if (!serial)
            co_return json_reply(400, json{{"error", "no serial, or a bad %-escape in it: /api/recall?serial=SERIAL"},
                                           {"position", 0},
                                           {"candidates", json::array()}});
        // Malformed input is answered here, at once: it depends on the input only.
        if (auto rejected = recall_desk->reject(*serial)) {
            Reply r;
            r.status = rejected->status;
            r.body = rejected->body;
            co_return r;
        }
        const std::string s = *serial;
        auto op = offload<RecallAnswer>(store_lane, [this, s] { return recall_desk->answer(s); });
        const RecallAnswer a = co_await std::move(op);
        // The pad: an unknown serial costs the store one read, a known one a
        // few more; both leave here at arrived + min_answer_s.
        const auto due = arrived + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                       std::chrono::duration<double>(opt.recall.min_answer_s));
        const auto now = std::chrono::steady_clock::now();
        if (now < due) {
            asio::steady_timer pad(strand, due);
            beast::error_code ec;
            co_await pad.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        } else {
            const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
            if (now_s - recall_slow_logged_s > 60) {  // at most once a minute
                recall_slow_logged_s = now_s;
                log().warn("recall: a lookup took {:.3f} s, over [recall] min_answer_s = {} s: "
                           "its timing was not padded (raise min_answer_s)",
                           std::chrono::duration<double>(now - arrived).count(), opt.recall.min_answer_s);
            }
        }
        Reply r;
        r.status = a.status;
        r.body = a.body;
        co_return r;
    }

    // ------------------------------------------------------------ connections

    http::response<http::string_body> response_of(const Reply& r, unsigned version, bool keep_alive, bool head) const {
        http::response<http::string_body> res{static_cast<http::status>(r.status), version};
        res.set(http::field::server, "eolstation");
        res.set(http::field::content_type, r.content_type);
        res.set(http::field::cache_control, r.cache ? "max-age=300" : "no-store");
        res.set("X-Content-Type-Options", "nosniff");
        res.set("Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
        for (const auto& [k, v] : r.headers) res.insert(k, v);
        res.body() = head ? std::string() : r.body;
        res.keep_alive(keep_alive);
        res.prepare_payload();
        if (head) res.content_length(r.body.size());
        return res;
    }

    /// After an error answer: no more sending, and what the client still
    /// sends (the rest of an oversized body) is read and dropped for a
    /// moment, so that closing does not reset the connection before the
    /// client has read the answer (at most 1 MiB or 2 s).
    static asio::awaitable<void> linger(beast::tcp_stream& stream) {
        beast::error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream.expires_after(std::chrono::seconds(2));
        std::array<char, 4096> scratch{};
        std::size_t total = 0;
        while (!ec && total < (1u << 20))
            total += co_await stream.async_read_some(asio::buffer(scratch), asio::redirect_error(asio::use_awaitable, ec));
    }

    asio::awaitable<void> session([[maybe_unused]] std::shared_ptr<Core> self, tcp::socket socket) {
        beast::tcp_stream stream(std::move(socket));
        const std::uint64_t id = next_connection++;
        connections[id] = &stream;
        struct Leave {
            Core* core;
            std::uint64_t id;
            ~Leave() { core->connections.erase(id); }
        } leave{this, id};
        std::string peer = "?";
        std::string client = "?";
        {
            beast::error_code ec;
            const auto ep = stream.socket().remote_endpoint(ec);
            if (!ec) peer = fmt::format("{}:{}", ep.address().to_string(), ep.port());
            if (!ec) client = recall_client_key(ep.address().to_string());
        }
        if (static_cast<int>(connections.size()) > kMaxConnections) {
            const Reply r = error_reply(503, t("server_busy"));
            auto res = response_of(r, 11, false, false);
            stream.expires_after(kWriteTimeout);
            beast::error_code ec;
            co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
            log().warn("{} refused: {} connections already", peer, kMaxConnections);
            co_return;
        }
        beast::flat_buffer buffer(kMaxHeaderBytes + kMaxBodyBytes + 4096);
        while (!stopped) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(kMaxHeaderBytes);
            parser.body_limit(kMaxBodyBytes);
            stream.expires_after(kRequestTimeout);
            beast::error_code ec;
            co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
                    ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
                    ec == http::error::partial_message)
                    break;
                unsigned status = 400;
                std::string what = t("bad_request");
                if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
                    status = 431;
                    what = t("too_large");
                } else if (ec == http::error::body_limit) {
                    status = 413;
                    what = t("too_large");
                }
                log().warn("{}: {}: answered {}", peer, ec.message(), status);
                auto res = response_of(error_reply(status, what + " (" + ec.message() + ")"), 11, false, false);
                stream.expires_after(kWriteTimeout);
                co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
                co_await linger(stream);
                break;
            }
            const Request req = parser.release();
            Reply reply;
            try {
                reply = co_await route(req, client);
            } catch (const Busy&) {
                reply = error_reply(503, t("server_busy"));
            } catch (const std::exception& e) {
                log().error("{} {}: {}", std::string(req.method_string().data(), req.method_string().size()),
                            printable(std::string_view(req.target().data(), req.target().size())), e.what());
                reply = error_reply(500, printable(e.what()));
            }
            if (reply.event_stream) {
                co_await event_stream(stream);
                break;
            }
            auto res = response_of(reply, req.version(), req.keep_alive(), req.method() == http::verb::head);
            stream.expires_after(kWriteTimeout);
            co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
            if (ec || !res.keep_alive()) break;
        }
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    asio::awaitable<void> accept_loop(std::shared_ptr<Core> self) {
        while (!stopped) {
            beast::error_code ec;
            tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (stopped) break;
            if (ec) {
                log().warn("accept: {}", ec.message());
                if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
                    asio::steady_timer pause(strand, std::chrono::milliseconds(100));
                    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                }
                continue;
            }
            asio::co_spawn(strand, session(self, std::move(socket)), asio::detached);
        }
    }

    void close_all() {
        beast::error_code ec;
        acceptor.close(ec);
        ticker.cancel();
        for (const auto& c : event_clients) c->wake.cancel();
        for (const auto& [id, s] : connections) s->socket().close(ec);
    }
};

PanelServer::PanelServer(asio::any_io_executor executor, Controller& controller, PanelOptions options) {
    if (!known_language(options.language))
        throw UsageError(fmt::format("panel language '{}': expected en or zh-CN", options.language));
    core_ = std::make_shared<Core>(executor, controller, std::move(options));
    Core& c = *core_;
    // The store: a connection of the panel's own (auth writes its events).
    c.store.emplace(Store::open(controller.store_path()));
    c.auth.emplace(*c.store, c.opt.auth);
    c.lookup.emplace(*c.store, controller.scheme());
    // The shift's counters so far: a restarted serve goes on counting it.
    std::tie(c.since_unix_s, c.next_shift_unix_s) = shift_bounds(unix_now_s(), c.opt.shift_start_min);
    {
        const auto n = c.store->station_counts_since(controller.config().station_id, c.since_unix_s);
        const auto z = [](std::int64_t v) { return static_cast<std::size_t>(std::max<std::int64_t>(0, v)); };
        c.counters = Counters{z(n.tested), z(n.pass), z(n.fail), z(n.hold), z(n.abort), z(n.error)};
    }
    if (c.opt.recall.active()) {
        c.recall_desk.emplace(*c.store, controller.scheme(), c.opt.recall);
        c.recall_limit.emplace(c.opt.recall.rate_burst, c.opt.recall.rate_per_minute / 60.0);
    }
    // The chart library, read once.
    {
        std::ifstream in(c.opt.chart_js, std::ios::binary);
        if (in) {
            std::ostringstream ss;
            ss << in.rdbuf();
            c.chart_js = ss.str();
            c.charts = !c.chart_js.empty();
        }
        if (!c.charts)
            log().warn("{} not found (Debian package libjs-chart.js): the panel works without live plots",
                       c.opt.chart_js.string());
    }
    const std::string where = fmt::format("{}:{}", c.opt.bind, c.opt.port);
    try {
        const auto addr = asio::ip::make_address(c.opt.bind);
        if (c.opt.port < 0 || c.opt.port > 65535) throw UsageError("port out of range");
        const tcp::endpoint ep(addr, static_cast<std::uint16_t>(c.opt.port));
        c.acceptor.open(ep.protocol());
        c.acceptor.set_option(asio::socket_base::reuse_address(true));
        c.acceptor.bind(ep);
        c.acceptor.listen(asio::socket_base::max_listen_connections);
        c.bound_port = c.acceptor.local_endpoint().port();
    } catch (const std::exception& e) {
        c.pool.join();
        throw UsageError(fmt::format("cannot listen on {}: {}", where, e.what()));
    }
    asio::co_spawn(c.strand, c.accept_loop(core_), asio::detached);
    asio::co_spawn(c.strand, c.ticker_loop(core_), asio::detached);
    log().info("http://{}:{}/ (language {}{})", c.opt.bind, c.bound_port, c.opt.language,
               c.charts ? "" : "; no live plots");
    if (c.recall_desk)
        log().info("recall lookup http://{}:{}/recall ({} lookups in a row per client, then {}/min)", c.opt.bind,
                   c.bound_port, c.opt.recall.rate_burst, c.opt.recall.rate_per_minute);
}

PanelServer::~PanelServer() { stop(); }

std::uint16_t PanelServer::port() const { return core_->bound_port; }
bool PanelServer::charts_available() const { return core_->charts; }

void PanelServer::stop() {
    if (!core_ || core_->stopped.exchange(true)) return;
    // Closing runs on the strand. From another thread, wait (bounded: the
    // loop may already be gone) so that no status poll — which calls the
    // PLC hook — is still running when the caller goes on to destroy things.
    auto closed = std::make_shared<std::promise<void>>();
    auto done = closed->get_future();
    asio::post(core_->strand, [c = core_, closed] {
        c->close_all();
        closed->set_value();
    });
    if (!core_->lane.running_in_this_thread()) done.wait_for(std::chrono::seconds(2));
    core_->pool.join();
}

std::unique_ptr<PanelServer> start_panel_if_configured(asio::any_io_executor executor, Controller& controller,
                                                       std::function<bool()> plc_heartbeat_stale) {
    const StationConfig& cfg = controller.config();
    if (!cfg.panel.active()) return nullptr;
    PanelOptions o = panel_options(cfg);
    o.plc_heartbeat_stale = std::move(plc_heartbeat_stale);
    return std::make_unique<PanelServer>(std::move(executor), controller, std::move(o));
}

}  // namespace eol::station::web
