// station/cli/cli_auth.hpp — how a command of `eolstation` learns who runs it
// (docs/users.md):
//   --user NAME      the password is asked on the terminal (/dev/tty, no echo);
//   EOL_TOKEN=…      a session token from `eolstation user login` (scripts);
// one of the two is needed. What a typed --role or --actor said no longer
// counts: the role is the authenticated user's.
// Errors: UsageError (neither given, no terminal to ask on), AuthError
// (wrong password, expired token, …; exit 1).
#pragma once

#include <string>
#include <string_view>

#include "eol/station/auth.hpp"
#include "eol/station/store.hpp"

namespace eol::cli {

/// The environment variable holding a session token.
inline constexpr const char* kTokenEnv = "EOL_TOKEN";

/// Who runs `what` (e.g. "quarantine release"): --user NAME with a password
/// prompt, else the token in EOL_TOKEN.
station::AuthUser authenticate(station::Store& store, const std::string& user, std::string_view what);

/// A password: one line of standard input (from_stdin), else asked on the
/// terminal without echo. UsageError when there is neither.
std::string read_password(const std::string& prompt, bool from_stdin);

}  // namespace eol::cli
