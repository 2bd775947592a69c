// eol/instruments/toml_file.hpp — the one way this project reads TOML.
//
// Every TOML reader goes through parse_toml_file() / parse_toml_text():
// the instrument definitions here (dialects, register maps) and, in
// eol::station, the station configuration, the recipes and the serial
// scheme. toml++ parses recursively; hostile text (a table header of 100,000
// dotted segments, 100,000 nested inline tables or arrays) overflows the
// stack with SIGSEGV. So the text is bounded BEFORE toml++ sees it:
//
//   size   at most TomlLimits::max_bytes (default kTomlMaxBytes = 1 MiB);
//   depth  at most TomlLimits::max_depth (default kTomlMaxDepth = 32) levels
//          of nesting, counted by a cheap linear pre-scan that skips strings
//          and comments: the dotted segments of the current [table] /
//          [[array]] header (+1 for an array of tables), plus those of the
//          key being assigned, plus one per open '[' or '{' in the value and
//          the dotted segments of keys inside inline tables.
//          (`[instruments.load1]` is depth 2; `ambient = { thermo = "tc1" }`
//          at the top level is 3.)
//   empty  a text with no key or table (nothing but whitespace and comments)
//          is refused unless TomlLimits::allow_empty: no reader of this
//          project has a meaningful empty file, and "missing key x" would
//          hide that the file is empty (or the wrong file).
//
// Files: parse_toml_file() refuses anything that is not a regular file (a
// FIFO, a directory, a device) before reading — it opens without blocking,
// so a FIFO never hangs it — and reads at most max_bytes + 1 bytes.
//
// Errors: everything is a TomlError (a DefinitionError, so the existing
// catch sites of dialect / map errors keep working) whose what() is
// "SOURCE:LINE:COL: message" — the one place that format is made
// (format_toml_location). LINE/COL are 1-based; a problem with the whole file
// (cannot open, not a regular file, too large) has no position and reads
// "SOURCE: message". toml++ syntax errors become "SOURCE:LINE:COL: TOML
// syntax: <toml++ description>".
//
// Thread-safety: stateless, reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "eol/instruments/errors.hpp"

namespace eol::instruments {

/// Largest TOML text accepted: 1 MiB (the shipped files are a few KiB).
inline constexpr std::size_t kTomlMaxBytes = std::size_t{1} << 20;
/// Deepest nesting accepted (the shipped files use at most 4).
inline constexpr int kTomlMaxDepth = 32;

struct TomlLimits {
    std::size_t max_bytes = kTomlMaxBytes;
    int max_depth = kTomlMaxDepth;
    bool allow_empty = false;
};

/// A TOML text that cannot be read: "SOURCE:LINE:COL: message" (or
/// "SOURCE: message" without a position).
class TomlError : public DefinitionError {
public:
    TomlError(std::string source, std::uint32_t line, std::uint32_t column, std::string message);
    const std::string& source() const { return source_; }
    /// 1-based; 0 when the error is about the whole file.
    std::uint32_t line() const { return line_; }
    std::uint32_t column() const { return column_; }
    /// The message without the location.
    const std::string& message() const { return message_; }

private:
    std::string source_;
    std::uint32_t line_, column_;
    std::string message_;
};

/// "SOURCE:LINE:COL" ("SOURCE:LINE" when column is 0, "SOURCE" when line is 0).
std::string format_toml_location(std::string_view source, std::uint32_t line, std::uint32_t column);

/// Checks size, emptiness and nesting depth of `text` without parsing it;
/// throws TomlError naming `source` and the line:column of the problem.
void check_toml_text(std::string_view text, std::string_view source, const TomlLimits& limits = {});

/// check_toml_text(), then toml::parse; syntax errors become TomlError.
toml::table parse_toml_text(std::string_view text, std::string_view source,
                            const TomlLimits& limits = {});

/// Reads `file` (a regular file of at most limits.max_bytes) and parses it
/// as parse_toml_text(text, file.string(), limits) does.
toml::table parse_toml_file(const std::filesystem::path& file, const TomlLimits& limits = {});

/// Reads `file` as parse_toml_file() does, without parsing: its text.
std::string read_toml_file(const std::filesystem::path& file, const TomlLimits& limits = {});

}  // namespace eol::instruments
