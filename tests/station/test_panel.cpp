// The operator panel (eol/station/panel.hpp) over real loopback sockets
// against a real Controller driving the example station's simulated
// instruments (station/sim on free ports, the real drivers): the page and
// its JSON, the login gate (abort and start refused without a logged-in
// operator, carried out with one), the event stream delivering a channel's
// banner when its cell finishes (and keeping it), the cell, lookup and unit
// endpoints, the translation table, and hostile input — malformed,
// oversized and unknown requests, floods of clients, slow and stalled
// clients — each answered 4xx while the server keeps serving.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "eol/station/controller.hpp"
#include "eol/station/panel.hpp"
#include "eol/station/sim_station.hpp"
#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/http_client.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
namespace web = eol::station::web;
using nlohmann::json;
using eol::test::EventReader;
using eol::test::http;
using eol::test::http_raw;
using eol::test::HttpReply;

namespace {

/// The example station's simulated instruments (free ports) driven by a real
/// Controller (its store in a temporary directory, with the test users), and
/// the panel on the controller's loop (a free port).
struct PanelRig {
    eol::test::TempDir tmp;
    eol::station::StationConfig cfg;
    std::unique_ptr<eol::station::SimStation> sim;
    std::unique_ptr<eol::station::Controller> controller;
    std::unique_ptr<web::PanelServer> panel;
    eol::test::TestLogins logins;

    explicit PanelRig(double time_scale = 400, web::PanelOptions options = {}) {
        cfg = eol::station::load_station_config(std::string(EOL_CONFIG_DIR) + "/station.example.toml");
        cfg.sim.time_scale = time_scale;
        cfg.sim.short_fraction = 0.0;
        for (auto& inst : cfg.instruments) {
            inst.endpoint.port = 0;
            inst.address = inst.endpoint.to_string();
        }
        sim = std::make_unique<eol::station::SimStation>(cfg);
        sim->start();
        for (const auto& srv : sim->servers())
            for (auto& inst : cfg.instruments)
                if (inst.name == srv.name) {
                    inst.address = "tcp://" + srv.address;
                    inst.endpoint = eol::instruments::parse_address(inst.address);
                }
        const fs::path db = tmp / "panel.db";
        logins = eol::test::add_test_users(db);
        eol::station::ControllerOptions co;
        co.time_scale = time_scale;
        co.store = db;
        controller = std::make_unique<eol::station::Controller>(cfg, co);
        controller->connect_all();
        options.bind = "127.0.0.1";
        options.port = 0;
        options.auth.max_failures = 3;
        panel = std::make_unique<web::PanelServer>(controller->executor(), *controller, options);
    }
    ~PanelRig() {
        panel->stop();
        panel.reset();
        controller->shutdown("test finished");
        controller.reset();
        sim.reset();
    }
    std::uint16_t port() const { return panel->port(); }

    /// A session cookie of the operator "ana".
    std::string operator_cookie() {
        const HttpReply r = http(port(), "POST", "/api/login",
                                 json{{"user", "ana"}, {"password", eol::test::kTestPassword}}.dump());
        REQUIRE_MESSAGE(r.status == 200, r.head << "\n" << r.body);
        return "Cookie: " + eol::test::cookie_of(r) + "\r\n";
    }

    eol::station::ChannelSnapshot channel(int position) const {
        for (const auto& s : controller->snapshot())
            if (s.position == position) return s;
        FAIL("no position " << position);
        return {};
    }

    /// Waits until `position` is not testing (at most `timeout_s`).
    bool wait_done(int position, double timeout_s = 60) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        while (std::chrono::steady_clock::now() < end) {
            if (channel(position).state != eol::station::ChannelState::testing) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }
};

json status_of(std::uint16_t port) {
    const HttpReply r = http(port, "GET", "/api/status");
    REQUIRE_MESSAGE(r.status == 200, r.head);
    return json::parse(r.body);
}

const json& channel_in(const json& status, int position) {
    for (const auto& c : status["channels"])
        if (c["position"] == position) return c;
    FAIL("no channel " << position << " in " << status.dump());
    static const json none;
    return none;
}

}  // namespace

TEST_CASE("panel: the page, its assets, config and status over loopback against a real controller over the simulators") {
    PanelRig rig;
    const HttpReply page = http(rig.port(), "GET", "/");
    REQUIRE(page.status == 200);
    CHECK(page.header("Content-Type").rfind("text/html", 0) == 0);
    CHECK(page.body.find("/panel.js") != std::string::npos);
    CHECK(page.header("Content-Security-Policy").find("default-src 'self'") != std::string::npos);
    CHECK(page.body.find("http://") == std::string::npos);   // nothing from the internet
    CHECK(page.body.find("https://") == std::string::npos);
    const HttpReply js = http(rig.port(), "GET", "/panel.js");
    CHECK(js.status == 200);
    CHECK(js.header("Content-Type").rfind("text/javascript", 0) == 0);
    CHECK(js.body.find("EventSource") != std::string::npos);
    CHECK(js.body.find("http") == std::string::npos);
    CHECK(http(rig.port(), "GET", "/panel.css").status == 200);

    // The chart library: served from the Debian package when it is installed.
    const bool have_chart = fs::exists("/usr/share/javascript/chart.js/chart.min.js");
    CHECK(rig.panel->charts_available() == have_chart);
    CHECK(http(rig.port(), "GET", "/chart.js").status == (have_chart ? 200 : 404));

    const json cfg = json::parse(http(rig.port(), "GET", "/api/config").body);
    CHECK(cfg["station_id"] == rig.cfg.station_id);
    CHECK(cfg["language"] == "en");
    CHECK(cfg["positions"].size() == rig.cfg.channels.size());
    CHECK(cfg["texts"]["banner_pass"] == "PASS");
    CHECK(cfg["charts"] == have_chart);

    const json st = status_of(rig.port());
    CHECK(st["station"]["id"] == rig.cfg.station_id);
    CHECK(st["station"]["state"] == "idle");
    CHECK(st["alarms"].empty());
    REQUIRE(st["channels"].size() == rig.cfg.channels.size());
    for (const auto& c : st["channels"]) {
        CHECK(c["state"] == "idle");
        CHECK(c["banner"].is_null());
    }
    CHECK(st["counters"]["tested"] == 0);
    CHECK(st["cells"].empty());
    CHECK(st["instruments"].size() == rig.cfg.instruments.size());

    const json me = json::parse(http(rig.port(), "GET", "/api/me").body);
    CHECK(me["user"].is_null());
}

TEST_CASE("panel: abort needs a logged-in operator - refused without a login or with a forged cookie, carried out with one") {
    PanelRig rig(100);  // slow enough to abort mid-test
    const std::string serial = eol::test::lot0042_serial(71);
    rig.controller->start(1, serial, nullptr);
    REQUIRE(rig.channel(1).state == eol::station::ChannelState::testing);

    // No login: refused, the cell goes on.
    HttpReply r = http(rig.port(), "POST", "/api/channels/1/abort", "{}");
    CHECK(r.status == 401);
    CHECK(json::parse(r.body)["error"] == "Log in as an operator first");
    // A forged or expired token: refused the same way.
    r = http(rig.port(), "POST", "/api/channels/1/abort", "{}", "Cookie: eol_session=eol1_" + std::string(64, 'a') + "\r\n");
    CHECK(r.status == 401);
    // Starting a cell from the panel needs a login too; so does a fault reset.
    CHECK(http(rig.port(), "POST", "/api/channels/2/start", json{{"serial", eol::test::lot0042_serial(72)}}.dump()).status == 401);
    CHECK(http(rig.port(), "POST", "/api/channels/2/reset", "{}").status == 401);
    CHECK(rig.channel(2).state == eol::station::ChannelState::idle);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(rig.channel(1).state == eol::station::ChannelState::testing);

    // A wrong password: 401, no cookie.
    r = http(rig.port(), "POST", "/api/login", json{{"user", "ana"}, {"password", "wrong password"}}.dump());
    CHECK(r.status == 401);
    CHECK(r.header("Set-Cookie").empty());
    CHECK(json::parse(r.body)["error"] == "Wrong user name or password");

    // Logged in: the cookie is HttpOnly, SameSite=Strict, expires.
    r = http(rig.port(), "POST", "/api/login", json{{"user", "ana"}, {"password", eol::test::kTestPassword}}.dump());
    REQUIRE(r.status == 200);
    const std::string set_cookie = r.header("Set-Cookie");
    CHECK(set_cookie.find("eol_session=eol1_") == 0);
    CHECK(set_cookie.find("HttpOnly") != std::string::npos);
    CHECK(set_cookie.find("SameSite=Strict") != std::string::npos);
    CHECK(set_cookie.find("Max-Age=28800") != std::string::npos);  // a shift (the auth policy's session_ttl_s)
    const std::string cookie = "Cookie: " + eol::test::cookie_of(r) + "\r\n";
    CHECK(json::parse(http(rig.port(), "GET", "/api/me", {}, cookie).body)["user"] == "ana");

    const auto t0 = std::chrono::steady_clock::now();
    r = http(rig.port(), "POST", "/api/channels/1/abort", "{}", cookie);
    CHECK(r.status == 200);
    REQUIRE(rig.wait_done(1, 20));
    const double abort_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto snap = rig.channel(1);
    CHECK(snap.state == eol::station::ChannelState::aborted);
    CHECK(snap.verdict == "abort");
    CHECK(snap.reason.find("operator abort by ana (panel)") != std::string::npos);
    // Nothing to abort any more: 409.
    CHECK(http(rig.port(), "POST", "/api/channels/1/abort", "{}", cookie).status == 409);
    // The banner says ABORTED with the reason (the status is polled every 250 ms).
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    const json c1 = channel_in(status_of(rig.port()), 1);
    REQUIRE(c1["banner"].is_object());
    CHECK(c1["banner"]["verdict"] == "abort");
    CHECK(c1["banner"]["text"] == "ABORTED");
    CHECK(c1["banner"]["reason"].get<std::string>().find("operator abort by ana") != std::string::npos);
    CHECK(c1["banner"]["serial"] == serial);
    // Logged out: the session ends in the store, so even a copy of the old cookie is refused.
    r = http(rig.port(), "POST", "/api/logout", "{}", cookie);
    CHECK(r.status == 200);
    CHECK(r.header("Set-Cookie").find("Max-Age=0") != std::string::npos);
    CHECK(json::parse(http(rig.port(), "GET", "/api/me", {}, cookie).body)["user"].is_null());
    CHECK(http(rig.port(), "POST", "/api/channels/2/reset", "{}", cookie).status == 401);
    MESSAGE("abort answered and the channel stopped " << abort_s << " s after the request");
}

TEST_CASE("panel: the event stream delivers a channel's banner when its test finishes, and the banner stays") {
    PanelRig rig(400);
    const std::string cookie = rig.operator_cookie();
    EventReader events(rig.port());
    auto first = events.next(10);
    REQUIRE(first);
    CHECK(events.head().find("text/event-stream") != std::string::npos);

    const std::string serial = eol::test::lot0042_serial(81);
    const auto t0 = std::chrono::steady_clock::now();
    // Typed as a scanner might (lower case, dashes): the station normalizes it.
    std::string typed = serial.substr(0, 8) + "-" + serial.substr(8);
    for (auto& ch : typed) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const HttpReply r = http(rig.port(), "POST", "/api/channels/2/start", json{{"serial", typed}}.dump(), cookie);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(json::parse(r.body)["started"] == true);
    CHECK(json::parse(r.body)["serial"] == serial);

    bool saw_testing = false, saw_progress = false;
    json banner;
    std::size_t statuses = 0;
    std::string cells;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(90)) {
        auto ev = events.next(5);
        REQUIRE_MESSAGE(ev, "the event stream went silent");
        if (ev->first == "cells") {
            cells = ev->second;
            continue;
        }
        REQUIRE(ev->first == "status");
        ++statuses;
        const json c = channel_in(json::parse(ev->second), 2);
        if (c["state"] == "testing") {
            saw_testing = true;
            CHECK(c["banner"].is_null());
            CHECK(c["serial"] == serial);
            if (c["step_index"].get<int>() > 0 && c["v_v"].is_number()) saw_progress = true;
        } else if (saw_testing && c["banner"].is_object()) {
            banner = c["banner"];
            break;
        }
    }
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(saw_testing);
    CHECK(saw_progress);
    REQUIRE(banner.is_object());
    CHECK(banner["serial"] == serial);
    CHECK(banner["verdict"] == "pass");
    CHECK(banner["text"] == "PASS");
    // The last cells list comes with it.
    for (int k = 0; k < 5 && cells.find(serial) == std::string::npos; ++k) {
        auto ev = events.next(2);
        if (ev && ev->first == "cells") cells = ev->second;
    }
    CHECK(cells.find(serial) != std::string::npos);
    const double rate = static_cast<double>(statuses) / wall_s;
    MESSAGE(statuses << " status events in " << wall_s << " s (" << rate << "/s) until the banner");
    CHECK(rate > 2.0);  // about 4 a second while a cell runs
    CHECK(rate < 6.0);

    // The banner stays: seconds later it is still there; counters counted it.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    json st = status_of(rig.port());
    CHECK(channel_in(st, 2)["banner"]["verdict"] == "pass");
    CHECK(st["counters"]["tested"] == 1);
    CHECK(st["counters"]["pass"] == 1);
    CHECK(st["counters"]["yield"] == 1.0);
    REQUIRE(st["cells"].size() == 1);
    CHECK(st["cells"][0]["serial"] == serial);
    CHECK(st["cells"][0]["position"] == 2);

    // What the store knows of it.
    HttpReply cell = http(rig.port(), "GET", "/api/cells/" + serial);
    REQUIRE_MESSAGE(cell.status == 200, cell.body);
    const json cj = json::parse(cell.body);
    REQUIRE(cj["runs"].size() == 1);
    CHECK(cj["runs"][0]["verdict"] == "pass");
    CHECK(cj["runs"][0]["channel"] == 2);
    CHECK(cj["runs"][0]["measurements"].size() >= 5);
    CHECK(cj["runs"][0]["fits"].size() >= 1);
    CHECK(cj["state"] == "clear");
    const json look = json::parse(http(rig.port(), "GET", "/api/lookup?serial=" + serial).body);
    CHECK(look["may_ship"] == true);
    CHECK(look["verdict"] == "pass");
    const HttpReply unit = http(rig.port(), "GET", "/unit/" + serial);
    CHECK(unit.status == 200);
    CHECK(unit.body.find(serial) != std::string::npos);
    CHECK(unit.body.find("<svg") != std::string::npos);

    // The next cell on the channel clears the banner while it runs.
    REQUIRE(http(rig.port(), "POST", "/api/channels/2/start", json{{"serial", eol::test::lot0042_serial(82)}}.dump(), cookie).status == 200);
    bool cleared = false;
    for (int k = 0; k < 20 && !cleared; ++k) {
        auto ev = events.next(5);
        REQUIRE(ev);
        if (ev->first != "status") continue;
        const json c = channel_in(json::parse(ev->second), 2);
        cleared = c["state"] == "testing" && c["banner"].is_null();
    }
    CHECK(cleared);
    CHECK(rig.wait_done(2, 60));
}

TEST_CASE("panel: a held serial is answered HOLD at once and its banner says why") {
    PanelRig rig(400);
    const std::string cookie = rig.operator_cookie();
    const std::string serial = eol::test::lot0042_serial(91);
    {
        eol::station::Store store = eol::station::Store::open(rig.tmp / "panel.db");
        eol::station::QuarantineEvent e;
        e.time_unix_s = 1.7e9;
        e.target = serial;
        e.reason = "suspected burr (test)";
        e.actor = "lee";
        e.role = "quality";
        store.append_quarantine(e);
    }
    const HttpReply r = http(rig.port(), "POST", "/api/channels/3/start", json{{"serial", serial}}.dump(), cookie);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    const json j = json::parse(r.body);
    CHECK(j["started"] == false);
    CHECK(j["verdict"] == "hold");
    CHECK(j["reason"].get<std::string>().find("suspected burr") != std::string::npos);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    const json st = status_of(rig.port());
    const json c = channel_in(st, 3);
    REQUIRE(c["banner"].is_object());
    CHECK(c["banner"]["text"] == "HOLD");
    CHECK(st["counters"]["hold"] == 1);
    const json look = json::parse(http(rig.port(), "GET", "/api/lookup?serial=" + serial).body);
    CHECK(look["may_ship"] == false);
    CHECK(look["state"] == "held");
    // A panel started again within the shift (serve restarted) reads the shift's counters back from the store.
    web::PanelOptions o2;
    o2.bind = "127.0.0.1";
    o2.port = 0;
    web::PanelServer again(rig.controller->executor(), *rig.controller, o2);
    const json st2 = status_of(again.port());
    CHECK(st2["counters"]["tested"] == 1);
    CHECK(st2["counters"]["hold"] == 1);
    CHECK(st2["counters"]["since_unix_s"] == st["counters"]["since_unix_s"]);
    again.stop();
}

TEST_CASE("panel: shifts start at the configured local times, across midnight and daylight saving") {
    struct Tz {
        std::string old;
        bool had = false;
        explicit Tz(const char* zone) {
            if (const char* o = std::getenv("TZ")) old = o, had = true;
            setenv("TZ", zone, 1);
            tzset();
        }
        ~Tz() {
            if (had) setenv("TZ", old.c_str(), 1);
            else unsetenv("TZ");
            tzset();
        }
    };
    const std::vector<int> three = {6 * 60, 14 * 60, 22 * 60};
    {
        Tz tz("UTC");
        const double t = 1796531400.0;  // 2026-12-06 04:30 UTC
        const auto [from, to] = web::shift_bounds(t, three);
        CHECK(from == 1796508000.0);  // 2026-12-05 22:00
        CHECK(to == 1796536800.0);    // 2026-12-06 06:00
        CHECK(web::shift_bounds(1796536800.0, three).first == 1796536800.0);  // a shift starts on its first second
        const auto [f1, t1] = web::shift_bounds(t, {0});                  // one shift a day, from midnight
        CHECK(f1 == 1796515200.0);
        CHECK(t1 - f1 == 86400.0);
    }
    {
        Tz tz("Asia/Shanghai");  // UTC+8: 04:30 UTC is 12:30 there, in the 06:00 shift
        const auto [from, to] = web::shift_bounds(1796531400.0, three);
        CHECK(from == 1796508000.0);  // 06:00 +08:00 = 22:00 UTC the day before
        CHECK(to == 1796536800.0);
    }
    {
        Tz tz("Europe/Berlin");  // 2023-03-26: clocks go from 02:00 to 03:00
        const double t = 1679792400.0;  // 2023-03-26 01:00 UTC = 03:00 CEST
        const auto [from, to] = web::shift_bounds(t, three);
        CHECK(from == 1679778000.0);  // 2023-03-25 22:00 CET = 21:00 UTC
        CHECK(to == 1679803200.0);    // 2023-03-26 06:00 CEST = 04:00 UTC: a 7-hour night shift
        CHECK(to - from == 7 * 3600.0);
    }
    CHECK_THROWS(web::shift_bounds(0.0, {}));
}

TEST_CASE("panel: every text is in English and Simplified Chinese, and zh-CN is served when configured") {
    std::set<std::string_view> keys;
    std::string_view previous;
    for (const auto& e : web::panel_texts()) {
        CHECK_MESSAGE(!e.en.empty(), e.key);
        CHECK_MESSAGE(!e.zh_cn.empty(), e.key);
        CHECK_MESSAGE(e.key > previous, "keys must be unique: " << e.key);  // panel_texts() is sorted
        previous = e.key;
        // The same placeholders in both.
        for (const char* ph : {"{0}", "{1}"})
            CHECK_MESSAGE((e.en.find(ph) == std::string_view::npos) == (e.zh_cn.find(ph) == std::string_view::npos), e.key);
    }
    CHECK(web::panel_text("banner_pass", "zh-CN") == "合格");
    CHECK(web::panel_text("channel_faulted", "en", {"3", "thermocouple open"}) == "Channel 3 faulted: thermocouple open");
    CHECK_THROWS_AS(web::panel_text("no such key", "en"), std::out_of_range);

    web::PanelOptions o;
    o.language = "zh-CN";
    PanelRig rig(400, o);
    const json cfg = json::parse(http(rig.port(), "GET", "/api/config").body);
    CHECK(cfg["language"] == "zh-CN");
    CHECK(cfg["texts"]["banner_fail"] == "不合格");
    CHECK(cfg["texts"].size() == web::panel_texts().size());
    const json st = status_of(rig.port());
    CHECK(st["station"]["state_text"] == "空闲");
    CHECK(channel_in(st, 1)["state_text"] == "空闲");
    // The server's own answers too.
    CHECK(json::parse(http(rig.port(), "POST", "/api/channels/1/abort", "{}").body)["error"] == "请先以操作员身份登录");
}

TEST_CASE("panel: without the chart library the panel starts, says plots are unavailable and serves no /chart.js") {
    web::PanelOptions o;
    o.chart_js = "/nonexistent/chart.js/chart.min.js";
    PanelRig rig(400, o);
    CHECK(!rig.panel->charts_available());
    const json cfg = json::parse(http(rig.port(), "GET", "/api/config").body);
    CHECK(cfg["charts"] == false);
    CHECK(cfg["texts"]["plots_unavailable"].get<std::string>().find("libjs-chart.js") != std::string::npos);
    const HttpReply js = http(rig.port(), "GET", "/chart.js");
    CHECK(js.status == 404);
    CHECK(json::parse(js.body)["error"].get<std::string>().find("Live plots unavailable") == 0);
    CHECK(http(rig.port(), "GET", "/").status == 200);
    CHECK(status_of(rig.port())["channels"].size() == rig.cfg.channels.size());
}

TEST_CASE("hostile: panel malformed, oversized and unknown requests get 4xx and the server keeps serving") {
    PanelRig rig(400);
    const auto p = rig.port();
    struct Case {
        const char* what;
        std::string request;
        int status;
    };
    const std::vector<Case> cases{
        {"garbage", "\x16\x03\x01\x02 hello\r\n\r\n", 400},
        {"no version", "GET /\r\n\r\n", 400},
        {"absolute target", "GET http://example.com/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
        {"bad escape", "GET /unit/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
        {"NUL escape", "GET /api/cells/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
        {"unknown path", "GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        {"dot dot", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        {"unknown channel action", "POST /api/channels/1/explode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 404},
        {"channel 0", "POST /api/channels/0/abort HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 404},
        {"wrong method", "DELETE /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
        {"GET a POST endpoint", "GET /api/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405},
        {"form post", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\nuser=ab", 415},
        {"bad JSON", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{\"us\"", 400},
        {"JSON of the wrong shape", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"user\":[1,2]}", 400},
        {"header too large", "GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 431},
        {"body too large", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, '{'), 413},
        {"chunked body too large", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n" + std::string(0x4000, 'x') + "\r\n0\r\n\r\n", 413},
        {"bad Content-Length", "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n", 400},
        {"invalid serial", "GET /api/cells/NOT-A-SERIAL!! HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
        {"unknown serial", "GET /api/cells/" + eol::test::lot0042_serial(999) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        {"unknown unit page", "GET /unit/" + eol::test::lot0042_serial(998) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404},
        {"lookup without serial", "GET /api/lookup?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
        {"lookup of an invalid serial", "GET /api/lookup?serial=%3Cscript%3E HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400},
    };
    for (const auto& c : cases) {
        const HttpReply r = http_raw(p, c.request, 20);
        CHECK_MESSAGE(r.status == c.status, c.what << ": got " << r.status << "\n" << r.head << "\n" << r.body.substr(0, 300));
        CHECK_MESSAGE(http(p, "GET", "/api/status").status == 200, "after " << c.what);
    }
    // Invalid serials are never echoed unescaped into a page.
    const HttpReply unit = http(p, "GET", "/unit/%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    CHECK(unit.status == 400);
    CHECK(unit.body.find("<script>") == std::string::npos);

    // Many clients at once: 100 connections, each two requests (keep-alive).
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int k = 0; k < 100; ++k)
        clients.emplace_back([&] {
            const HttpReply r = http_raw(p, "GET /api/status HTTP/1.1\r\nHost: x\r\n\r\nGET /api/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 30);
            // Both answers: the status, then (pipelined on the same connection) the config.
            if (r.status == 200 && r.body.find("HTTP/1.1 200 OK") != std::string::npos &&
                r.body.find("\"texts\"") != std::string::npos)
                ++ok;
        });
    for (auto& t : clients) t.join();
    CHECK(ok == 100);

    // A slow client (half a request line, then nothing) and an event-stream
    // client that never reads hold up nobody.
    const int slow = eol::test::connect_loopback(p);
    REQUIRE(eol::test::send_all(slow, "GET /api/sta"));
    const int deaf = eol::test::connect_loopback(p);
    REQUIRE(eol::test::send_all(deaf, "GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"));
    rig.controller->start(1, eol::test::lot0042_serial(93), nullptr);  // status events flow to the deaf client
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 20; ++k) REQUIRE(http(p, "GET", "/api/status").status == 200);
    const double per_request_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 20;
    CHECK(per_request_ms < 200);
    MESSAGE("with a stalled and a deaf client: " << per_request_ms << " ms per status request");
    ::close(slow);
    ::close(deaf);
    CHECK(rig.wait_done(1, 60));
    CHECK(http(p, "GET", "/").status == 200);
}

TEST_CASE("hostile: panel failed logins are rate limited (429, even with the right password) and never set a cookie") {
    PanelRig rig(400);  // max_failures = 3
    for (int k = 0; k < 3; ++k) {
        const HttpReply r = http(rig.port(), "POST", "/api/login", json{{"user", "ana"}, {"password", "guess " + std::to_string(k)}}.dump());
        CHECK(r.status == 401);
        CHECK(r.header("Set-Cookie").empty());
    }
    const HttpReply limited =
        http(rig.port(), "POST", "/api/login", json{{"user", "ana"}, {"password", eol::test::kTestPassword}}.dump());
    CHECK(limited.status == 429);
    CHECK(limited.header("Set-Cookie").empty());
    CHECK(json::parse(limited.body)["error"].get<std::string>().find("Too many failed logins") != std::string::npos);
    // Names of impossible shapes are plain failures, not errors.
    CHECK(http(rig.port(), "POST", "/api/login", json{{"user", std::string(500, 'x')}, {"password", "x"}}.dump()).status == 401);
    CHECK(http(rig.port(), "POST", "/api/login", json{{"user", "<b>"}, {"password", ""}}.dump()).status == 401);
    // Another user is not limited by ana's failures.
    CHECK(http(rig.port(), "POST", "/api/login", json{{"user", "lee"}, {"password", eol::test::kTestPassword}}.dump()).status == 200);
}

TEST_CASE("hostile: panel beyond 32 event streams and 128 connections answers 503, keeps the others, and recovers") {
    PanelRig rig(400);
    const auto p = rig.port();
    std::vector<std::unique_ptr<EventReader>> streams;
    for (int k = 0; k < 32; ++k) {
        streams.push_back(std::make_unique<EventReader>(p));
        REQUIRE_MESSAGE(streams.back()->next(10), "event stream " << k);
    }
    const HttpReply refused = http(p, "GET", "/api/events");
    CHECK(refused.status == 503);
    CHECK(http(p, "GET", "/api/status").status == 200);

    // 32 streams + 96 idle connections = 128; one more is refused.
    std::vector<int> idle;
    for (int k = 0; k < 96; ++k) idle.push_back(eol::test::connect_loopback(p));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // all accepted
    const HttpReply over = http(p, "GET", "/api/status");
    CHECK(over.status == 503);
    CHECK(json::parse(over.body)["error"] == "The station is busy; try again");
    // The streams still get their events.
    rig.controller->start(1, eol::test::lot0042_serial(94), nullptr);
    for (auto& s : streams) CHECK(s->next(10));
    // Idle clients leave: served again.
    for (int fd : idle) ::close(fd);
    bool served = false;
    for (int k = 0; k < 50 && !served; ++k) {
        served = http(p, "GET", "/api/status").status == 200;
        if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(served);
    CHECK(rig.wait_done(1, 60));
}
