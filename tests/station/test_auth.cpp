// Users, roles and sessions (station/auth): bootstrap, wrong passwords,
// expired and ended sessions, disabled users, the login rate limit, and the
// CLI's quarantine decisions by the logged-in user.
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "eol/station/auth.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/store.hpp"
#include "support/auth_test.hpp"
#include "support/cli_test.hpp"
#include "support/station_test.hpp"

namespace fs = std::filesystem;
using namespace eol::station;
using namespace eol::test;

namespace {

struct FakeClock {
    double t = 1.7e9;
    UnixClock fn() {
        return [this] { return t; };
    }
};

Store fresh(const fs::path& db) {
    OpenOptions o;
    o.create = true;
    return Store::open(db, o);
}

std::int64_t events(Store& s, const char* user, const char* kind) { return s.count_auth_events(user, kind, 0.0); }

}  // namespace

TEST_CASE("auth: the first user of a store bootstraps without a login and must be an admin, later users need an admin") {
    TempDir tmp;
    Store store = fresh(tmp / "a.db");
    Auth auth(store);
    CHECK(auth.bootstrap_open());
    CHECK_THROWS_AS(auth.add_user("ana", Role::operator_, "password-1", nullptr), AuthError);
    CHECK(store.user_count() == 0);
    auth.add_user("root", Role::admin, "password-1", nullptr);
    CHECK_FALSE(auth.bootstrap_open());
    CHECK_THROWS_AS(auth.add_user("mallory", Role::admin, "password-1", nullptr), AuthError);
    const AuthUser root = auth.login("root", "password-1");
    CHECK(root.role == Role::admin);
    auth.add_user("ana", Role::operator_, "password-2", &root);
    const AuthUser ana = auth.login("ana", "password-2");
    CHECK_THROWS_WITH_AS(auth.add_user("eve", Role::admin, "password-3", &ana), doctest::Contains("admin"), AuthError);
    CHECK_THROWS_AS(auth.add_user("ana", Role::quality, "password-3", &root), StoreError);  // taken
    CHECK_THROWS_AS(auth.add_user("bad name", Role::quality, "password-3", &root), UsageError);
    CHECK_THROWS_AS(auth.add_user("short", Role::quality, "1234567", &root), UsageError);
    // Only the Argon2id string is stored, never the password.
    const auto u = store.user("ana");
    REQUIRE(u);
    CHECK(u->password_hash.rfind("$argon2id$", 0) == 0);
    CHECK(u->password_hash.find("password-2") == std::string::npos);
    CHECK(events(store, "ana", "user_added") == 1);
}

TEST_CASE("auth: a wrong password or an unknown name is refused and logged, the right one logs in") {
    TempDir tmp;
    Store store = fresh(tmp / "a.db");
    Auth auth(store);
    auth.add_user("root", Role::admin, "right-password", nullptr);
    CHECK_THROWS_WITH_AS(auth.login("root", "wrong-password"), doctest::Contains("wrong user name or password"),
                         AuthError);
    CHECK_THROWS_AS(auth.login("nobody", "right-password"), AuthError);
    CHECK_THROWS_AS(auth.login("root", ""), AuthError);
    CHECK(events(store, "root", "login_failed") == 2);
    CHECK(events(store, "nobody", "login_failed") == 1);
    CHECK(auth.login("root", "right-password").name == "root");
    CHECK(events(store, "root", "login_ok") == 1);
}

TEST_CASE("auth: a session token works until it expires, and is stored only as a hash") {
    TempDir tmp;
    Store store = fresh(tmp / "a.db");
    FakeClock clock;
    Auth auth(store, AuthPolicy{}, clock.fn());
    auth.add_user("root", Role::admin, "password-1", nullptr);
    const std::string token = auth.issue_token(auth.login("root", "password-1"), 60.0);
    CHECK(token.rfind("eol1_", 0) == 0);
    CHECK(token.size() == 5 + 64);
    CHECK(store.count("sessions") == 1);
    CHECK(store.session(token.substr(5)) == std::nullopt);  // not stored in the clear
    clock.t += 59.0;
    CHECK(auth.verify_token(token).name == "root");
    clock.t += 1.0;
    CHECK_THROWS_WITH_AS(auth.verify_token(token), doctest::Contains("expired"), AuthError);
    CHECK(events(store, "root", "token_rejected") == 1);
    // Tokens that were never issued, or are not tokens at all.
    std::string forged = token;
    forged.back() = forged.back() == '0' ? '1' : '0';
    CHECK_THROWS_WITH_AS(auth.verify_token(forged), doctest::Contains("unknown"), AuthError);
    CHECK_THROWS_WITH_AS(auth.verify_token("root"), doctest::Contains("not an eolstation session token"), AuthError);
    CHECK_THROWS_AS(auth.issue_token(AuthUser{"root", Role::admin}, 8.0 * 24 * 3600), UsageError);  // > 7 days
}

TEST_CASE("auth: disabling a user refuses its logins and ends its sessions, a password change ends sessions too") {
    TempDir tmp;
    Store store = fresh(tmp / "a.db");
    FakeClock clock;
    Auth auth(store, AuthPolicy{}, clock.fn());
    auth.add_user("root", Role::admin, "password-1", nullptr);
    const AuthUser root = auth.login("root", "password-1");
    auth.add_user("lee", Role::quality, "password-2", &root);
    const std::string t1 = auth.issue_token(auth.login("lee", "password-2"));
    clock.t += 1.0;
    CHECK_THROWS_AS(auth.set_disabled("lee", true, AuthUser{"lee", Role::quality}), AuthError);  // not an admin
    CHECK_THROWS_AS(auth.set_disabled("root", true, root), AuthError);                         // not oneself
    auth.set_disabled("lee", true, root);
    CHECK_THROWS_WITH_AS(auth.login("lee", "password-2"), doctest::Contains("disabled"), AuthError);
    CHECK_THROWS_WITH_AS(auth.verify_token(t1), doctest::Contains("disabled"), AuthError);
    clock.t += 1.0;
    auth.set_disabled("lee", false, root);
    CHECK_THROWS_AS(auth.verify_token(t1), AuthError);  // a session from before the disable stays ended
    const std::string t2 = auth.issue_token(auth.login("lee", "password-2"));
    CHECK(auth.verify_token(t2).role == Role::quality);
    clock.t += 1.0;
    CHECK_THROWS_AS(auth.set_password("root", "new-password", AuthUser{"lee", Role::quality}), AuthError);
    auth.set_password("lee", "password-3", AuthUser{"lee", Role::quality});  // one's own
    CHECK_THROWS_WITH_AS(auth.verify_token(t2), doctest::Contains("changed"), AuthError);
    CHECK_THROWS_AS(auth.login("lee", "password-2"), AuthError);
    CHECK(auth.login("lee", "password-3").name == "lee");
    CHECK(events(store, "lee", "user_disabled") == 1);
    CHECK(events(store, "lee", "password_changed") == 1);
}

TEST_CASE("hostile: a login flood gets max_failures guesses per window, then even the right password is refused until the window moves on") {
    TempDir tmp;
    Store store = fresh(tmp / "a.db");
    FakeClock clock;
    AuthPolicy policy;
    policy.max_failures = 5;
    policy.failure_window_s = 300.0;
    Auth auth(store, policy, clock.fn());
    auth.add_user("root", Role::admin, "right-password", nullptr);
    for (int k = 0; k < 5; ++k) {
        clock.t += 1.0;
        CHECK_THROWS_AS(auth.login("root", "guess-" + std::to_string(k)), AuthError);
    }
    for (int k = 0; k < 20; ++k) {
        clock.t += 1.0;
        CHECK_THROWS_AS(auth.login("root", "guess-x"), AuthRateLimited);
    }
    CHECK_THROWS_AS(auth.login("root", "right-password"), AuthRateLimited);
    CHECK(events(store, "root", "login_failed") == 5);
    CHECK(events(store, "root", "login_rate_limited") == 21);
    // Another name is not locked by this one's failures; an unknown name is limited too.
    for (int k = 0; k < 5; ++k) CHECK_THROWS_AS(auth.login("ghost", "x-password"), AuthError);
    CHECK_THROWS_AS(auth.login("ghost", "x-password"), AuthRateLimited);
    // The window moves past the first failure: one more guess, then the right one works.
    clock.t += 300.0;
    CHECK(auth.login("root", "right-password").name == "root");
}

TEST_CASE("hostile: parallel login floods from many processes are held to the limit and logged") {
    TempDir tmp;
    const fs::path db = tmp / "flood.db";
    add_test_users(db);
    std::string script;
    for (int k = 0; k < 16; ++k)
        script += "echo wrong-password-" + std::to_string(k) + " | " + std::string(EOL_CLI) + " user login --db " +
                  db.string() + " --user lee --password-stdin >/dev/null 2>&1 &\n";
    script += "wait\n";
    int code = -1;
    run_command("sh " + tmp.write("flood.sh", script).string(), code);
    CHECK(code == 0);
    Store store = Store::open(db);
    CHECK(store.count_auth_events("lee", "login_failed", 0.0) <= 5);
    CHECK(store.count_auth_events("lee", "login_failed", 0.0) + store.count_auth_events("lee", "login_rate_limited", 0.0) == 16);
    CHECK(store.count_auth_events("lee", "login_ok", 0.0) == 1);  // add_test_users' own login
    Run r = run_command_out("echo '" + std::string(kTestPassword) + "' | " + std::string(EOL_CLI) + " user login --db " +
                            db.string() + " --user lee --password-stdin 2>&1");
    CHECK(r.code == 1);
    CHECK(r.out.find("refused") != std::string::npos);
}

TEST_CASE("auth CLI: hold by an operator, release refused to the operator and to a typed --role, done by quality, the audit names the users") {
    TempDir tmp;
    const fs::path db = tmp / "q.db";
    const std::string s = make_serial("0042", {2023, 3, 14}, 1);
    {
        Store store = create_store(db);
        store.write(make_record(s, "EOL-01", "eol-18650", 1.68e9, 1500, {{"ocv_v", 3.95}}, "V"));
    }
    const TestLogins who = add_test_users(db);
    const std::string D = " --db " + db.string();
    Run r = run_cli("quarantine hold --serial " + s + " --reason x" + D);  // nobody logged in
    CHECK(r.code == 2);
    CHECK(r.out.find("needs a login") != std::string::npos);
    r = run_cli_as(who.operator_, "quarantine hold --serial " + s + " --reason 'K high'" + D);
    CHECK(r.code == 0);
    r = run_cli_as(who.operator_, "quarantine release --serial " + s + " --reason ok" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("'operator'") != std::string::npos);
    r = run_cli_as(who.operator_, "quarantine release --serial " + s + " --reason ok --role quality" + D);
    CHECK(r.code == 2);
    CHECK(r.out.find("--role no longer grants anything") != std::string::npos);
    r = run_cli_as(who.operator_, "quarantine scrap --serial " + s + " --reason bad" + D);
    CHECK(r.code == 1);
    r = run_cli_as("eol1_" + std::string(64, '0'), "quarantine release --serial " + s + " --reason ok" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("unknown session token") != std::string::npos);
    r = run_cli_as(who.quality, "quarantine release --serial " + s + " --reason retested" + D);
    CHECK(r.code == 0);
    r = run_cli("quarantine show --json " + s + D);
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["events"].size() == 2);
    CHECK(j["events"][0]["actor"] == "ana");
    CHECK(j["events"][0]["role"] == "operator");
    CHECK(j["events"][1]["actor"] == "lee");
    CHECK(j["events"][1]["role"] == "quality");
    // No terminal to ask the password on (a new session without one): a clear error, no decision.
    r = run_command_out("setsid -w " + std::string(EOL_CLI) + " quarantine scrap --serial " + s +
                        " --reason bad --user lee" + D + " </dev/null 2>&1");
    CHECK(r.code == 2);
    CHECK(r.out.find("no terminal") != std::string::npos);
}

TEST_CASE("auth CLI: user logout ends that session only - its token is refused from then on, the others still work") {
    TempDir tmp;
    const fs::path db = tmp / "lo.db";
    const std::string s = make_serial("0042", {2023, 3, 14}, 1);
    {
        Store store = create_store(db);
        store.write(make_record(s, "EOL-01", "eol-18650", 1.68e9, 1500, {{"ocv_v", 3.95}}, "V"));
    }
    const TestLogins who = add_test_users(db);
    const std::string D = " --db " + db.string();
    // A second session of the same user, issued before the logout.
    std::string other;
    {
        Store store = Store::open(db, {});
        Auth auth(store);
        other = auth.issue_token(auth.login("ana", eol::test::kTestPassword));
    }
    Run r = run_cli_as(who.operator_, "user logout" + D);
    CHECK(r.code == 0);
    CHECK(r.out.find("logged out ana") != std::string::npos);
    r = run_cli_as(who.operator_, "quarantine hold --serial " + s + " --reason x" + D);
    CHECK(r.code == 1);
    CHECK(r.out.find("not authenticated") != std::string::npos);
    r = run_cli_as(who.operator_, "user logout" + D);  // twice: refused, nothing to end
    CHECK(r.code == 1);
    r = run_cli("user logout" + D);  // no token at all
    CHECK(r.code == 2);
    CHECK(r.out.find("EOL_TOKEN") != std::string::npos);
    r = run_cli_as(other, "quarantine hold --serial " + s + " --reason 'K high'" + D);
    CHECK(r.code == 0);
    Store store = Store::open(db, {});
    CHECK(store.count_auth_events("ana", "logout", 0.0) == 1);
    CHECK(store.quarantine_events().size() == 1);
}

TEST_CASE("auth CLI: user add bootstraps the first admin, then needs an admin's token, list, disable and login") {
    TempDir tmp;
    const fs::path db = tmp / "u.db";
    const std::string D = " --db " + db.string();
    const std::string cli = std::string(EOL_CLI);
    Run r = run_command_out("echo admin-pass-1 | " + cli + " user add root --role admin --password-stdin" + D + " 2>&1");
    CHECK(r.code == 0);
    CHECK(r.out.find("bootstrap") != std::string::npos);
    r = run_command_out("echo other-pass-1 | " + cli + " user add eve --role admin --password-stdin" + D + " 2>&1");
    CHECK(r.code == 2);  // no login given
    r = run_command_out("echo admin-pass-1 | " + cli + " user login --user root --password-stdin" + D + " 2>/dev/null");
    REQUIRE(r.code == 0);
    const std::string admin = r.out.substr(0, r.out.find('\n'));
    r = run_command_out("echo op-pass-123 | EOL_TOKEN=" + admin + " " + cli +
                        " user add ana --role operator --password-stdin" + D + " 2>&1");
    CHECK(r.code == 0);
    r = run_command_out("echo op-pass-123 | " + cli + " user login --user ana --password-stdin --ttl-s 1" + D +
                        " 2>/dev/null");
    REQUIRE(r.code == 0);
    const std::string ana = r.out.substr(0, r.out.find('\n'));
    r = run_command_out("echo x-pass-1234 | EOL_TOKEN=" + ana + " " + cli + " user add bob --role quality --password-stdin" +
                        D + " 2>&1");
    CHECK(r.code == 1);  // an operator adds nobody
    r = run_cli_as(admin, "user disable ana" + D);
    CHECK(r.code == 0);
    r = run_cli("user list --json" + D);
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    REQUIRE(j.size() == 2);
    CHECK(j[0]["name"] == "ana");
    CHECK(j[0]["disabled"] == true);
    CHECK(r.out.find("argon2") == std::string::npos);  // hashes are not listed
    r = run_command_out("echo op-pass-123 | " + cli + " user login --user ana --password-stdin" + D + " 2>&1");
    CHECK(r.code == 1);
    CHECK(r.out.find("disabled") != std::string::npos);
}
