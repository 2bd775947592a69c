// Users, roles and sessions (auth.hpp).
#include "eol/station/auth.hpp"
#include "eol/station/text.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <array>
#include <chrono>
#include <cmath>
#include <ctime>

#include "eol/station/errors.hpp"

namespace eol::station {

namespace {

constexpr std::string_view kTokenPrefix = "eol1_";
constexpr std::size_t kTokenBytes = 32;

void init_sodium() {
    if (sodium_init() < 0) throw AuthError("libsodium could not be initialised");
}

std::string hex(const unsigned char* p, std::size_t n) {
    std::string out(2 * n + 1, '\0');
    sodium_bin2hex(out.data(), out.size(), p, n);
    out.pop_back();
    return out;
}

std::string token_hash(std::string_view token) {
    std::array<unsigned char, 32> h{};
    crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                       nullptr, 0);
    return hex(h.data(), h.size());
}

std::string hash_password(std::string_view password) {
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(out, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        throw AuthError("hashing the password failed (out of memory?)");
    return out;
}

bool verify_password(const std::string& hash, std::string_view password) {
    return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

// A hash to verify against when the name is unknown, so that an unknown name
// costs the same time as a wrong password.
const std::string& dummy_hash() {
    static const std::string h = hash_password("not a password of anyone");
    return h;
}

}  // namespace

std::string_view to_string(Role r) {
    switch (r) {
        case Role::operator_: return "operator";
        case Role::quality: return "quality";
        case Role::admin: return "admin";
    }
    return "operator";
}

std::optional<Role> role_from_string(std::string_view t) {
    for (Role r : {Role::operator_, Role::quality, Role::admin})
        if (to_string(r) == t) return r;
    return std::nullopt;
}

void check_user_name(std::string_view name) {
    if (name.empty()) throw UsageError("user name: empty");
    if (name.size() > 64) throw UsageError(fmt::format("user name: {} characters, at most 64", name.size()));
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-' || c == '@';
        if (!ok)
            throw UsageError(fmt::format(
                "user name: character {} (byte 0x{:02X}) is not allowed (letters, digits and . _ - @ only)", i + 1,
                static_cast<unsigned char>(c)));
    }
}

void check_password_shape(std::string_view password) {
    if (password.size() < 8) throw UsageError("password: at least 8 characters");
    if (password.size() > 1024) throw UsageError("password: at most 1024 bytes");
}

Auth::Auth(Store& store, AuthPolicy policy, UnixClock clock)
    : store_(store), policy_(policy), clock_(std::move(clock)) {
    init_sodium();
}

double Auth::now() const {
    if (clock_) return clock_();
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

void Auth::log(std::string_view user, std::string_view kind, std::string_view detail, std::string_view by) {
    AuthEvent e;
    e.time_unix_s = now();
    e.user_name = std::string(user.substr(0, 256));  // a hostile name is not stored at any length
    e.kind = std::string(kind);
    e.detail = std::string(detail);
    e.by_user = std::string(by);
    store_.append_auth_event(e);
}

bool Auth::bootstrap_open() { return store_.user_count() == 0; }

void Auth::add_user(std::string_view name, Role role, std::string_view password, const AuthUser* by) {
    check_user_name(name);
    check_password_shape(password);
    const std::string hash = hash_password(password);  // slow: outside the write lock
    std::string refused;
    store_.write_transaction([&] {
        if (by == nullptr) {
            if (store_.user_count() != 0) {
                refused = "adding a user needs an admin's login (the store has users already)";
                return false;
            }
            if (role != Role::admin) {
                refused = "the first user of a store must be an admin (--role admin)";
                return false;
            }
        } else if (!by->at_least(Role::admin)) {
            refused = fmt::format("adding a user needs the role admin ('{}' is {})", by->name, to_string(by->role));
            return false;
        }
        UserRecord u;
        u.name = std::string(name);
        u.role = std::string(to_string(role));
        u.password_hash = hash;
        u.created_unix_s = now();
        store_.add_user(u);
        log(name, "user_added", fmt::format("role {}{}", to_string(role), by ? "" : " (bootstrap: first user)"),
            by ? by->name : std::string_view());
        return true;
    });
    if (!refused.empty()) throw AuthError(refused);
}

void Auth::set_password(std::string_view name, std::string_view password, const AuthUser& by) {
    check_password_shape(password);
    if (by.name != name && !by.at_least(Role::admin))
        throw AuthError(fmt::format("only an admin may set another user's password ('{}' is {})", by.name,
                                    to_string(by.role)));
    const std::string hash = hash_password(password);
    store_.write_transaction([&] {
        if (!store_.user(name)) throw AuthError(fmt::format("no user '{}'", name));
        store_.update_user(name, hash, std::nullopt, now());
        log(name, "password_changed", "", by.name);
        return true;
    });
}

void Auth::set_disabled(std::string_view name, bool disabled, const AuthUser& by) {
    if (!by.at_least(Role::admin))
        throw AuthError(fmt::format("disabling a user needs the role admin ('{}' is {})", by.name, to_string(by.role)));
    if (by.name == name && disabled) throw AuthError("an admin cannot disable themself");
    store_.write_transaction([&] {
        if (!store_.user(name)) throw AuthError(fmt::format("no user '{}'", name));
        store_.update_user(name, std::nullopt, disabled, now());
        log(name, disabled ? "user_disabled" : "user_enabled", "", by.name);
        return true;
    });
}

std::vector<UserRecord> Auth::users() { return store_.users(); }

AuthUser Auth::login(std::string_view name, std::string_view password) {
    // The rate limit is decided with the write it leads to in one write
    // transaction, twice: before the (slow, memory-hard) password check, so
    // a limited name costs no Argon2 at all, and again after it, so that
    // parallel attempts that all passed the first check cannot get more
    // answers than the limit allows: an attempt that finds the limit reached
    // then is refused even with the right password. The Argon2 check itself
    // runs outside the write lock (a login flood does not stall the
    // station's writers).
    enum class LoginOutcome { ok, failed, limited, disabled } outcome = LoginOutcome::failed;
    int failures = 0;
    auto limited = [&] {
        failures = static_cast<int>(
            store_.count_auth_events(name, "login_failed", now() - policy_.failure_window_s));
        if (failures < policy_.max_failures) return false;
        log(name, "login_rate_limited",
            fmt::format("{} failed logins within {:.0f} s", failures, policy_.failure_window_s));
        return true;
    };
    auto refuse_limited = [&] {
        return AuthRateLimited(fmt::format(
            "login of '{}' refused: {} failed attempts within {:.0f} s; try again later (logged)", name, failures,
            policy_.failure_window_s));
    };
    bool was_limited = false;
    store_.write_transaction([&] {
        was_limited = limited();
        return true;
    });
    if (was_limited) throw refuse_limited();

    const auto u = store_.user(name);
    const bool match = verify_password(u ? u->password_hash : dummy_hash(), password) && u.has_value();

    AuthUser who;
    store_.write_transaction([&] {
        if (limited()) {
            outcome = LoginOutcome::limited;
            return true;
        }
        const auto now_u = store_.user(name);  // as of now (a disable meanwhile counts)
        if (!match || !now_u || now_u->password_hash != u->password_hash) {
            outcome = LoginOutcome::failed;
            log(name, "login_failed", u ? "wrong password" : "no such user");
            return true;
        }
        if (now_u->disabled) {
            outcome = LoginOutcome::disabled;
            log(name, "login_failed", "user disabled");
            return true;
        }
        const auto role = role_from_string(now_u->role);
        if (!role) throw AuthError(fmt::format("user '{}' has an unknown role '{}'", name, now_u->role));
        who = AuthUser{now_u->name, *role};
        outcome = LoginOutcome::ok;
        log(name, "login_ok");
        return true;
    });
    switch (outcome) {
        case LoginOutcome::ok: return who;
        case LoginOutcome::limited: throw refuse_limited();
        case LoginOutcome::disabled: throw AuthError(fmt::format("user '{}' is disabled", name));
        case LoginOutcome::failed: break;
    }
    throw AuthError(fmt::format("login of '{}' failed: wrong user name or password (logged)", name));
}

std::string Auth::issue_token(const AuthUser& user, double ttl_s) {
    if (ttl_s == 0.0) ttl_s = policy_.session_ttl_s;
    if (!(ttl_s > 0.0) || ttl_s > policy_.max_session_ttl_s)
        throw UsageError(fmt::format("session lifetime {} s: must be > 0 and at most {:.0f} s", ttl_s,
                                     policy_.max_session_ttl_s));
    std::array<unsigned char, kTokenBytes> raw{};
    randombytes_buf(raw.data(), raw.size());
    const std::string token = std::string(kTokenPrefix) + hex(raw.data(), raw.size());
    sodium_memzero(raw.data(), raw.size());
    store_.write_transaction([&] {
        SessionRecord s;
        s.token_hash = token_hash(token);
        s.user_name = user.name;
        s.created_unix_s = now();
        s.expires_unix_s = s.created_unix_s + ttl_s;
        store_.add_session(s);
        log(user.name, "session_issued", fmt::format("expires {}", utc_text(s.expires_unix_s)));
        return true;
    });
    return token;
}

AuthUser Auth::logout(std::string_view token) {
    const AuthUser who = verify_token(token);
    store_.write_transaction([&] {
        if (!store_.end_session(token_hash(token), now()))
            throw AuthError(fmt::format("the session of '{}' had already ended", who.name));
        log(who.name, "logout");
        return true;
    });
    return who;
}

AuthUser Auth::verify_token(std::string_view token) {
    std::string refused;
    AuthUser who;
    const bool shaped = token.size() == kTokenPrefix.size() + 2 * kTokenBytes && token.starts_with(kTokenPrefix) &&
                        token.substr(kTokenPrefix.size()).find_first_not_of("0123456789abcdef") == std::string_view::npos;
    // Reads only: a valid token writes nothing (many processes verify at
    // once — a screen, holds, a ship gate — and must not queue for the write
    // lock); a refusal is logged in its own transaction.
    std::string log_user;
    [&] {
        const double t = now();
        if (!shaped) {
            refused = "not an eolstation session token (eolstation user login prints one)";
            return;
        }
        const auto s = store_.session(token_hash(token));
        if (!s) {
            refused = "unknown session token";
            return;
        }
        const auto u = store_.user(s->user_name);
        if (!u) throw StoreError(fmt::format("session of unknown user '{}'", s->user_name));
        log_user = u->name;
        if (t >= s->expires_unix_s) {
            refused = fmt::format("the session of '{}' expired at {}; log in again", u->name, utc_text(s->expires_unix_s));
        } else if (u->disabled) {
            refused = fmt::format("user '{}' is disabled", u->name);
        } else if (u->changed_unix_s > s->created_unix_s) {
            refused = fmt::format("the session of '{}' ended: the password or account changed after it began", u->name);
        }
        if (!refused.empty()) return;
        const auto role = role_from_string(u->role);
        if (!role) throw AuthError(fmt::format("user '{}' has an unknown role '{}'", u->name, u->role));
        who = AuthUser{u->name, *role};
    }();
    if (!refused.empty()) log(log_user, "token_rejected", refused);
    if (!refused.empty()) throw AuthError(refused);
    return who;
}

}  // namespace eol::station
