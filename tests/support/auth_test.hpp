// tests/support/auth_test.hpp — logged-in users for the tests that hold,
// release and scrap through the CLI (station/auth, docs/users.md).
//
// add_test_users(db) adds an admin, a quality engineer and an operator to
// the store (creating it when missing) and returns a session token of each;
// run_cli_as(token, args) runs `eolstation ARGS 2>&1` with EOL_TOKEN set to
// it. The passwords are test constants (never used outside a temporary store).
// Errors: doctest REQUIRE failures; AuthError/StoreError propagate.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "eol/station/auth.hpp"
#include "eol/station/store.hpp"
#include "support/cli_test.hpp"

namespace eol::test {

struct TestLogins {
    std::string admin;     // token of "root" (admin)
    std::string quality;   // token of "lee" (quality)
    std::string operator_; // token of "ana" (operator)
};

inline constexpr const char* kTestPassword = "correct horse battery";

inline TestLogins add_test_users(const std::filesystem::path& db) {
    station::OpenOptions o;
    o.create = true;
    station::Store store = station::Store::open(db, o);
    station::Auth auth(store);
    TestLogins t;
    if (auth.bootstrap_open()) auth.add_user("root", station::Role::admin, kTestPassword, nullptr);
    const station::AuthUser root = auth.login("root", kTestPassword);
    if (!store.user("lee")) auth.add_user("lee", station::Role::quality, kTestPassword, &root);
    if (!store.user("ana")) auth.add_user("ana", station::Role::operator_, kTestPassword, &root);
    t.admin = auth.issue_token(root);
    t.quality = auth.issue_token(auth.login("lee", kTestPassword));
    t.operator_ = auth.issue_token(auth.login("ana", kTestPassword));
    return t;
}

/// A shell command run to completion: its exit code and stdout.
inline Run run_command_out(const std::string& cmd) {
    Run r;
    r.out = run_command(cmd, r.code);
    return r;
}

/// `eolstation ARGS 2>&1` as the user of `token` (EOL_TOKEN).
inline Run run_cli_as(const std::string& token, const std::string& args) {
    Run r;
    r.out = run_command("EOL_TOKEN=" + token + " " + std::string(EOL_CLI) + " " + args + " 2>&1", r.code);
    return r;
}

}  // namespace eol::test
