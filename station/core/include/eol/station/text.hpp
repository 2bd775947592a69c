// eol/station/text.hpp — text typed or scanned by people, made safe to show
// in line-based output and messages: nothing invisible or line-breaking is
// ever printed raw.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace eol::station {

/// `text` as it may be shown on one line: printable ASCII and ordinary
/// UTF-8 as is; control bytes (NUL, CR, LF, ESC, …) and bytes that are not
/// valid UTF-8 as \xNN; invisible and direction-changing characters
/// (zero-width spaces and joiners, bidirectional controls, the BOM, soft
/// hyphen) named by code point, e.g. <U+200B>.
std::string printable(std::string_view text);

/// Lines of a serial list: a leading UTF-8 BOM is dropped; LF, CRLF and a
/// lone CR each end a line; blank lines and lines whose first non-blank
/// character is '#' (comments) are skipped. Each kept line with its 1-based
/// line number.
struct ListLine {
    std::size_t number = 0;
    std::string text;
};
std::vector<ListLine> list_lines(std::string_view content);

/// A unix time (seconds) as UTC text in a strftime format; the default is
/// ISO 8601, "2023-03-14T08:00:00Z".
std::string utc_text(double unix_s, const char* strftime_format = "%Y-%m-%dT%H:%M:%SZ");

/// Appends `s` to `json` as a JSON string literal ('"' and '\' escaped,
/// control characters as \u00XX): for building json_each() arguments of
/// bulk reads without a JSON library's allocations.
void append_json_string(std::string& json, std::string_view s);

}  // namespace eol::station
