// eol/station/errors.hpp — the error kinds the station reports to people and
// the exit codes the `eolstation` command maps them to.
//
//   exit 0  ok
//   exit 1  a domain "no": an invalid serial, a failed check, a held unit
//   exit 2  usage or configuration error (bad flags, bad files, bad input)
//
// Errors carry a message that names what and where (file:line, key path,
// column, character position); callers print it as is.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace eol::station {

enum class ExitCode : int { ok = 0, domain_no = 1, usage = 2 };

/// Bad command-line use or bad input files: exit code 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Levenshtein edit distance (used for did-you-mean suggestions).
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` when it is close enough to be a likely
/// typo (distance ≤ max(1, len/3)); empty when none is.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace eol::station
