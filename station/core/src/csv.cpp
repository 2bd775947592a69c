#include "eol/station/csv.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

namespace eol::station {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::string at(const std::string& source, std::size_t line) { return source + ":" + std::to_string(line); }

struct Record {
    std::vector<std::string> fields;
    std::size_t line = 0;
    bool blank = false;
};

/// Splits the text into records (RFC 4180 quoting, quoted fields may span lines).
std::vector<Record> split(std::string_view text, const std::string& source, char delim) {
    std::vector<Record> out;
    std::size_t pos = 0, line = 1;
    const auto is_space = [&](char c) { return (c == ' ' || c == '\t') && c != delim; };
    while (pos < text.size()) {
        Record rec;
        rec.line = line;
        bool any_quoted = false;
        while (true) {
            std::string field;
            while (pos < text.size() && is_space(text[pos])) ++pos;
            if (pos < text.size() && text[pos] == '"') {
                any_quoted = true;
                const std::size_t open_line = line;
                ++pos;
                while (true) {
                    if (pos >= text.size())
                        throw CsvError(at(source, open_line) + ": unterminated quoted field");
                    const char c = text[pos];
                    if (c == '"') {
                        if (pos + 1 < text.size() && text[pos + 1] == '"') {
                            field += '"';
                            pos += 2;
                            continue;
                        }
                        ++pos;
                        break;
                    }
                    if (c == '\n') ++line;
                    field += c;
                    ++pos;
                }
                while (pos < text.size() && is_space(text[pos])) ++pos;
                if (pos < text.size() && text[pos] != delim && text[pos] != '\r' && text[pos] != '\n')
                    throw CsvError(at(source, line) + ": text after a closing quote (field " +
                                   std::to_string(rec.fields.size() + 1) + ")");
            } else {
                const std::size_t start = pos;
                while (pos < text.size() && text[pos] != delim && text[pos] != '\n' && text[pos] != '\r') ++pos;
                field = std::string(trim(text.substr(start, pos - start)));
            }
            rec.fields.push_back(std::move(field));
            if (pos < text.size() && text[pos] == delim) {
                ++pos;
                continue;
            }
            if (pos < text.size() && text[pos] == '\r') ++pos;
            if (pos < text.size() && text[pos] == '\n') {
                ++pos;
                ++line;
            }
            break;
        }
        rec.blank = !any_quoted && rec.fields.size() == 1 && rec.fields[0].empty();
        out.push_back(std::move(rec));
    }
    return out;
}

}  // namespace

CsvTable CsvTable::read_file(const std::string& path, char delimiter) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CsvError(path + ": cannot open the file");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw CsvError(path + ": read error");
    return parse(ss.str(), path, delimiter);
}

CsvTable CsvTable::parse(std::string_view text, std::string source, char delimiter) {
    if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    CsvTable t;
    t.source_ = std::move(source);
    bool have_header = false;
    for (auto& rec : split(text, t.source_, delimiter)) {
        if (rec.blank) continue;
        if (!have_header) {
            for (std::size_t c = 0; c < rec.fields.size(); ++c) {
                for (std::size_t d = 0; d < c; ++d)
                    if (rec.fields[d] == rec.fields[c])
                        throw CsvError(at(t.source_, rec.line) + ": column '" + rec.fields[c] +
                                       "' appears twice in the header");
            }
            t.columns_ = std::move(rec.fields);
            t.cells_.assign(t.columns_.size(), {});
            have_header = true;
            continue;
        }
        if (rec.fields.size() != t.columns_.size())
            throw CsvError(at(t.source_, rec.line) + ": " + std::to_string(rec.fields.size()) + " fields, the header has " +
                           std::to_string(t.columns_.size()));
        for (std::size_t c = 0; c < rec.fields.size(); ++c) t.cells_[c].push_back(std::move(rec.fields[c]));
        t.lines_.push_back(rec.line);
    }
    if (!have_header) throw CsvError(t.source_ + ": empty file (no header row)");
    return t;
}

bool CsvTable::has(std::string_view column) const {
    for (const auto& c : columns_)
        if (c == column) return true;
    return false;
}

std::size_t CsvTable::index(std::string_view column) const {
    for (std::size_t k = 0; k < columns_.size(); ++k)
        if (columns_[k] == column) return k;
    std::string msg = source_ + ": no column '" + std::string(column) + "' (columns:";
    for (std::size_t k = 0; k < columns_.size(); ++k) msg += (k ? ", " : " ") + columns_[k];
    msg += ")";
    const std::string guess = did_you_mean(column, columns_);
    if (!guess.empty()) msg += "; did you mean '" + guess + "'?";
    throw CsvError(msg);
}

std::string CsvTable::where(std::size_t row) const { return at(source_, lines_[row]); }

std::vector<double> CsvTable::numbers(std::string_view column, bool allow_nonfinite) const {
    const std::size_t c = index(column);
    const auto& col = cells_[c];
    std::vector<double> out(col.size());
    for (std::size_t r = 0; r < col.size(); ++r) {
        std::string_view s = trim(col[r]);
        const auto fail = [&](const std::string& why) {
            throw CsvError(where(r) + ": column '" + columns_[c] + "': " + why);
        };
        if (s.empty()) fail("empty cell, a number is needed");
        std::string_view body = s;
        if (body.front() == '+') {
            body.remove_prefix(1);
            if (!body.empty() && (body.front() == '-' || body.front() == '+')) fail("'" + std::string(s) + "' is not a number");
        }
        double x = 0.0;
        const auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), x);
        if (ec == std::errc::result_out_of_range) fail("'" + std::string(s) + "' is out of range");
        if (ec != std::errc() || ptr != body.data() + body.size() || body.empty())
            fail("'" + std::string(s) + "' is not a number");
        if (!allow_nonfinite && !std::isfinite(x)) fail("'" + std::string(s) + "' is not finite");
        out[r] = x;
    }
    return out;
}

const std::vector<std::string>& CsvTable::strings(std::string_view column) const { return cells_[index(column)]; }

}  // namespace eol::station
