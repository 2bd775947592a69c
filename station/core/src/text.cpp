#include "eol/station/text.hpp"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include <cstdint>

namespace eol::station {
namespace {

// Code points that change nothing visible or reorder what follows.
bool invisible(char32_t c) {
    return c == 0x00AD || c == 0x061C || c == 0x180E || (c >= 0x200B && c <= 0x200F) ||
           (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || (c >= 0x80 && c < 0xA0);
}

// Length of the valid UTF-8 sequence at s[i] (and its code point), 0 if invalid.
std::size_t utf8_at(std::string_view s, std::size_t i, char32_t& cp) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t n = b0 >= 0xF0 && b0 <= 0xF4 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 && b0 < 0xE0 ? 2 : 0;
    if (n == 0 || i + n > s.size()) return 0;
    cp = b0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b & 0x3F);
    }
    const char32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;  // overlong, surrogate
    return n;
}

}  // namespace

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b < 0x80) {
            if (b < 0x20 || b == 0x7F) out += fmt::format("\\x{:02X}", b);
            else out += static_cast<char>(b);
            ++i;
            continue;
        }
        char32_t cp = 0;
        const std::size_t n = utf8_at(text, i, cp);
        if (n == 0) {
            out += fmt::format("\\x{:02X}", b);
            ++i;
        } else if (invisible(cp)) {
            out += fmt::format("<U+{:04X}>", static_cast<std::uint32_t>(cp));
            i += n;
        } else {
            out.append(text.substr(i, n));
            i += n;
        }
    }
    return out;
}

std::vector<ListLine> list_lines(std::string_view content) {
    if (content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3);
    std::vector<ListLine> out;
    out.reserve(static_cast<std::size_t>(std::count(content.begin(), content.end(), '\n')) + 1);
    std::size_t number = 0;
    std::size_t i = 0;
    while (i < content.size()) {
        std::size_t end = content.find_first_of("\r\n", i);
        if (end == std::string_view::npos) end = content.size();
        ++number;
        const std::string_view line = content.substr(i, end - i);
        i = end;
        if (i < content.size()) i += content.substr(i, 2) == "\r\n" ? 2u : 1u;
        const std::size_t first = line.find_first_not_of(" \t");
        if (first == std::string_view::npos || line[first] == '#') continue;
        out.push_back({number, std::string(line)});
    }
    return out;
}

void append_json_string(std::string& json, std::string_view s) {
    json.push_back('"');
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            json.push_back('\\');
            json.push_back(c);
        } else if (u < 0x20) {
            json += fmt::format("\\u{:04x}", u);
        } else {
            json.push_back(c);
        }
    }
    json.push_back('"');
}

std::string utc_text(double unix_s, const char* strftime_format) {
    const auto t = static_cast<std::time_t>(unix_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    const std::size_t n = std::strftime(buf, sizeof buf, strftime_format, &tm);
    return std::string(buf, n);
}

}  // namespace eol::station
