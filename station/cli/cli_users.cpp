// eolstation user add|list|passwd|disable|enable|login — users and roles in
// the results store (station/auth, docs/users.md), and authenticate() for the
// commands that need to know who runs them (cli_auth.hpp).
#include <fcntl.h>
#include <fmt/format.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_auth.hpp"
#include "eol/station/text.hpp"
#include "commands.hpp"
#include "eol/station/output.hpp"

namespace eol::cli {

using namespace eol::station;

namespace {

// Asks on the controlling terminal with echo off; restores the terminal.
std::string prompt_tty(const std::string& prompt) {
    const int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        throw UsageError(fmt::format(
            "no terminal to ask the password on ({}); for scripts set {} to a token from "
            "`eolstation user login --password-stdin` (docs/users.md)",
            std::strerror(errno), kTokenEnv));
    struct Closer {
        int fd;
        termios saved{};
        bool restore = false;
        ~Closer() {
            if (restore) ::tcsetattr(fd, TCSAFLUSH, &saved);
            ::close(fd);
        }
    } c{fd};
    if (::tcgetattr(fd, &c.saved) == 0) {
        termios quiet = c.saved;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        if (::tcsetattr(fd, TCSAFLUSH, &quiet) == 0) c.restore = true;
    }
    if (::write(fd, prompt.data(), prompt.size()) < 0) throw UsageError("cannot write the password prompt");
    std::string line;
    char ch = 0;
    for (;;) {
        const ssize_t n = ::read(fd, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || ch == '\n') break;
        if (line.size() > 4096) throw UsageError("password: too long");
        line += ch;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

}  // namespace

std::string read_password(const std::string& prompt, bool from_stdin) {
    if (!from_stdin) return prompt_tty(prompt);
    std::string line;
    bool too_long = false;
    if (!read_bounded_line(std::cin, line, too_long)) throw UsageError("--password-stdin: standard input is empty");
    if (too_long) throw UsageError("--password-stdin: the line is too long");
    return line;
}

AuthUser authenticate(Store& store, const std::string& user, std::string_view what) {
    Auth auth(store);
    if (!user.empty()) return auth.login(user, read_password(fmt::format("password for {}: ", user), false));
    const char* token = std::getenv(kTokenEnv);
    if (token != nullptr && *token != '\0') return auth.verify_token(token);
    throw UsageError(fmt::format(
        "{} needs a login: --user NAME (asks the password on the terminal) or {} set to a token from "
        "`eolstation user login` (docs/users.md)",
        what, kTokenEnv));
}

namespace {

Store open_users_store(const std::string& db, bool create = false) {
    OpenOptions o;
    o.create = create;
    return Store::open(db, o);
}

Role parse_role(const std::string& text) {
    const auto r = role_from_string(text);
    if (!r) throw UsageError(fmt::format("--role: '{}' is not a role (operator, quality, admin)", text));
    return *r;
}

std::string new_password(bool from_stdin, const std::string& name) {
    if (from_stdin) return read_password("", true);
    const std::string a = read_password(fmt::format("new password for {}: ", name), false);
    const std::string b = read_password("again: ", false);
    if (a != b) throw UsageError("the two passwords differ; nothing changed");
    return a;
}

struct UserOptions {
    std::string db;
    std::string name;
    std::string role;
    std::string user;  // who authenticates
    bool password_stdin = false;
    double ttl_s = 0.0;
    bool json = false;
};

void run_add(const UserOptions& o) {
    check_user_name(o.name);
    const Role role = parse_role(o.role);
    // A missing file becomes a new store (a station's users may come before
    // its first test); an existing file must already be one (an empty file
    // is refused, as for every command that does not make stores).
    Store store = open_users_store(o.db, !std::filesystem::exists(o.db));
    Auth auth(store);
    if (auth.bootstrap_open()) {
        // The first user of an empty store: nobody to log in as yet.
        auth.add_user(o.name, role, new_password(o.password_stdin, o.name), nullptr);
        write_stdout(fmt::format("added {} ({}) as the first user of {} (bootstrap)\n", o.name, to_string(role), o.db));
        return;
    }
    const AuthUser by = authenticate(store, o.user, "user add");
    auth.add_user(o.name, role, new_password(o.password_stdin, o.name), &by);
    write_stdout(fmt::format("added {} ({}) by {}\n", o.name, to_string(role), by.name));
}

void run_list(const UserOptions& o) {
    OpenOptions oo;
    oo.read_only = true;
    Store store = Store::open(o.db, oo);
    if (store.schema_version() < 4) {
        write_stdout(o.json ? "[]\n" : "no users (the store predates users: any write command migrates it)\n");
        return;
    }
    const auto users = store.users();
    if (o.json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& u : users)
            arr.push_back({{"name", u.name},
                           {"role", u.role},
                           {"disabled", u.disabled},
                           {"created", utc_text(u.created_unix_s)},
                           {"changed", utc_text(u.changed_unix_s)}});
        write_stdout(arr.dump(2) + "\n");
        return;
    }
    std::string out;
    for (const auto& u : users)
        out += fmt::format("{:<24} {:<9} {:<9} created {}  changed {}\n", u.name, u.role,
                           u.disabled ? "disabled" : "active", utc_text(u.created_unix_s), utc_text(u.changed_unix_s));
    out += fmt::format("{} user{}\n", users.size(), users.size() == 1 ? "" : "s");
    write_stdout(out);
}

void run_passwd(const UserOptions& o) {
    check_user_name(o.name);
    Store store = open_users_store(o.db);
    Auth auth(store);
    const AuthUser by = authenticate(store, o.user.empty() && !std::getenv(kTokenEnv) ? o.name : o.user, "user passwd");
    auth.set_password(o.name, new_password(o.password_stdin, o.name), by);
    write_stdout(fmt::format("password of {} changed by {}; its sessions have ended\n", o.name, by.name));
}

void run_disable(const UserOptions& o, bool disabled) {
    check_user_name(o.name);
    Store store = open_users_store(o.db);
    Auth auth(store);
    const AuthUser by = authenticate(store, o.user, disabled ? "user disable" : "user enable");
    auth.set_disabled(o.name, disabled, by);
    write_stdout(fmt::format("{} {} by {}\n", o.name, disabled ? "disabled (its sessions have ended)" : "enabled",
                             by.name));
}

void run_login(const UserOptions& o) {
    if (o.user.empty()) throw UsageError("user login: --user NAME is required");
    check_user_name(o.user);
    Store store = open_users_store(o.db);
    Auth auth(store);
    const std::string password =
        read_password(fmt::format("password for {}: ", o.user), o.password_stdin);
    const AuthUser who = auth.login(o.user, password);
    const std::string token = auth.issue_token(who, o.ttl_s);
    write_stdout(token + "\n");
    fmt::print(stderr, "logged in as {} ({}); export {}=<the line above> for scripts\n", who.name,
               to_string(who.role), kTokenEnv);
}

void run_logout(const UserOptions& o) {
    const char* token = std::getenv(kTokenEnv);
    if (!token || !*token) throw UsageError(fmt::format("user logout: no session token in {}", kTokenEnv));
    Store store = open_users_store(o.db);
    const AuthUser who = Auth(store).logout(token);
    write_stdout(fmt::format("logged out {}: the session token in {} is refused from now on\n", who.name, kTokenEnv));
}

}  // namespace

void add_user_commands(CLI::App& app) {
    CLI::App* u = app.add_subcommand(
        "user",
        "Users and roles (operator, quality, admin) in the results store: Argon2id passwords, expiring session "
        "tokens, rate-limited and logged logins (docs/users.md)");
    u->require_subcommand(1);
    auto common = [](CLI::App* c, UserOptions& o) {
        c->add_option("--db", o.db, "Results store (SQLite)")->required();
    };
    auto auth_opt = [](CLI::App* c, UserOptions& o) {
        c->add_option("--user", o.user,
                      "Log in as this user (password asked on the terminal); else the token in EOL_TOKEN");
    };

    auto ao = std::make_shared<UserOptions>();
    CLI::App* add = u->add_subcommand(
        "add", "Add a user (needs an admin; the first user of a store without users needs no login and must be an "
               "admin)");
    add->add_option("name", ao->name, "The new user's name (letters, digits, . _ - @)")->required();
    add->add_option("--role", ao->role, "operator, quality or admin")->required();
    common(add, *ao);
    auth_opt(add, *ao);
    add->add_flag("--password-stdin", ao->password_stdin, "Read the new password from one line of standard input");
    add->callback([ao] { run_add(*ao); });

    auto lo = std::make_shared<UserOptions>();
    CLI::App* list = u->add_subcommand("list", "The users, their roles and whether they are disabled");
    common(list, *lo);
    list->add_flag("--json", lo->json, "Print JSON");
    list->callback([lo] { run_list(*lo); });

    auto po = std::make_shared<UserOptions>();
    CLI::App* pw = u->add_subcommand("passwd", "Set a password (one's own, or anyone's as an admin); ends the "
                                               "user's sessions");
    pw->add_option("name", po->name, "Whose password")->required();
    common(pw, *po);
    auth_opt(pw, *po);
    pw->add_flag("--password-stdin", po->password_stdin, "Read the new password from one line of standard input");
    pw->callback([po] { run_passwd(*po); });

    auto dis = std::make_shared<UserOptions>();
    CLI::App* d = u->add_subcommand("disable", "Disable a user (admin): no more logins, its sessions end");
    d->add_option("name", dis->name, "Whom")->required();
    common(d, *dis);
    auth_opt(d, *dis);
    d->callback([dis] { run_disable(*dis, true); });

    auto en = std::make_shared<UserOptions>();
    CLI::App* e = u->add_subcommand("enable", "Enable a disabled user again (admin)");
    e->add_option("name", en->name, "Whom")->required();
    common(e, *en);
    auth_opt(e, *en);
    e->callback([en] { run_disable(*en, false); });

    auto li = std::make_shared<UserOptions>();
    CLI::App* login = u->add_subcommand(
        "login", "Check a password and print a session token for EOL_TOKEN (expires; default 8 h)");
    login->add_option("--user", li->user, "Who logs in")->required();
    common(login, *li);
    login->add_flag("--password-stdin", li->password_stdin, "Read the password from one line of standard input");
    login->add_option("--ttl-s", li->ttl_s, "Session lifetime in seconds (default 28800 = 8 h, at most 7 days)")
        ->check(finite_range(1e-3, 7.0 * 24 * 3600));
    login->callback([li] { run_login(*li); });

    auto out = std::make_shared<UserOptions>();
    CLI::App* logout = u->add_subcommand("logout", "End the session whose token is in EOL_TOKEN (it is refused from then on)");
    common(logout, *out);
    logout->callback([out] { run_logout(*out); });
}

}  // namespace eol::cli
