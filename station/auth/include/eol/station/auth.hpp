// eol/station/auth.hpp — users, roles and sessions over the results store:
// who may hold, release and scrap (and, in the panel, abort and reset).
//
// Users. A user has a name, a role and an Argon2id password hash
// (libsodium's crypto_pwhash_str at the "interactive" limits: 64 MiB,
// a few tenths of a second a hash). Roles, each including the one before:
//   operator  hold units;
//   quality   also release and scrap them;
//   admin     also add users, disable them, set anyone's password.
// Users are never deleted or renamed (disabled instead) so the audit trail
// keeps naming people that exist. Names: 1–64 characters from a–z, A–Z, 0–9
// and . _ - @ (they are printed in reports and pages). Passwords: 8–1024 bytes.
//
// Bootstrapping. The first user of a store without users may be added
// without authentication (by = nullptr) and must be an admin; afterwards
// add/disable need an authenticated admin.
//
// Sessions. login() checks a password; issue_token() then makes a random
// 256-bit token (libsodium randombytes), returned once as 64 hex characters
// with the prefix "eol1_"; the store keeps only its BLAKE2b-256 hash, the user
// and the expiry. verify_token() accepts a token while it has not expired,
// its user is not disabled and its user's password/disabled state did not
// change after it was issued (a password change or a disable ends every
// session of that user). logout() ends one session (the panel's "Log out",
// `eolstation user logout`): its token is refused from then on.
//
// Rate limit and audit. Every login attempt is an auth event in the store
// (login_ok, login_failed, login_rate_limited, token_rejected, user_added,
// password_changed, user_disabled, user_enabled). When a name has had
// `max_failures` failed logins within `failure_window_s`, further attempts on
// that name are refused without checking the password (AuthRateLimited, also
// logged) until the window has moved past them — brute force gets a handful
// of guesses per window whatever the attacker's speed. Unknown names are
// limited and logged the same way (and cost the same Argon2 verify, so a
// timing difference does not reveal which names exist). The limit is checked
// before the Argon2 verify and again, with the outcome's write, after it (one
// write transaction each; the verify runs outside the write lock): parallel
// attempts beyond the limit are refused even with the right password.
//
// Every decision and the write it justifies share one store transaction
// (Store::write_transaction).
//
// Errors: AuthError (wrong password, unknown user, disabled, expired or
// unknown token, not allowed: the message says which, never the password),
// AuthRateLimited (an AuthError), UsageError (a bad name, role or password
// shape), StoreError.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/store.hpp"

namespace eol::station {

class AuthError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class AuthRateLimited : public AuthError {
public:
    using AuthError::AuthError;
};

enum class Role { operator_, quality, admin };
std::string_view to_string(Role r);
std::optional<Role> role_from_string(std::string_view text);

/// Someone who has proven who they are.
struct AuthUser {
    std::string name;
    Role role = Role::operator_;
    bool at_least(Role r) const { return static_cast<int>(role) >= static_cast<int>(r); }
};

struct AuthPolicy {
    int max_failures = 5;                  // failed logins per name per window before refusing
    double failure_window_s = 300.0;       // the rate-limit window
    double session_ttl_s = 8.0 * 3600.0;   // default token lifetime (a shift)
    double max_session_ttl_s = 7.0 * 24 * 3600.0;
};

/// The clock auth uses (tests move it).
using UnixClock = std::function<double()>;

class Auth {
public:
    explicit Auth(Store& store, AuthPolicy policy = {}, UnixClock clock = {});

    /// True while the store has no users: the first add_user needs no login.
    bool bootstrap_open();

    /// Adds a user. `by` must be an admin, or null on a store without users
    /// (then the role must be admin). AuthError when not allowed; UsageError
    /// for a bad name/password; StoreError when the name is taken.
    void add_user(std::string_view name, Role role, std::string_view password, const AuthUser* by);
    /// Sets a password: one's own, or anyone's by an admin.
    void set_password(std::string_view name, std::string_view password, const AuthUser& by);
    /// Disables (or enables) a user: an admin, not on themself.
    void set_disabled(std::string_view name, bool disabled, const AuthUser& by);
    std::vector<UserRecord> users();

    /// Checks a name and password (rate-limited, logged). AuthRateLimited,
    /// AuthError.
    AuthUser login(std::string_view name, std::string_view password);
    /// A new session token for a logged-in user; ttl_s 0 = the policy's.
    std::string issue_token(const AuthUser& user, double ttl_s = 0.0);
    /// The user of a valid token; AuthError (logged) otherwise.
    AuthUser verify_token(std::string_view token);
    /// Ends the session of `token` now (logout): later verify_token() refuses
    /// it. Returns its user; AuthError when it is not a live session.
    AuthUser logout(std::string_view token);

    const AuthPolicy& policy() const { return policy_; }

private:
    double now() const;
    void log(std::string_view user, std::string_view kind, std::string_view detail = {}, std::string_view by = {});

    Store& store_;
    AuthPolicy policy_;
    UnixClock clock_;
};

/// UsageError unless `name` is a valid user name (names the position of a bad character).
void check_user_name(std::string_view name);
/// UsageError unless a password has an acceptable length.
void check_password_shape(std::string_view password);

}  // namespace eol::station
