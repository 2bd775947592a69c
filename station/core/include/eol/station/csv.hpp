// eol/station/csv.hpp — a small reader for CSV tables with a header row.
//
// CsvTable::read_file / parse load the whole table into memory as strings:
// the first non-blank line names the columns, every further non-blank line is
// one row. Fields are separated by `delimiter` (',' by default); a field may be
// double-quoted ("a, b", "say ""hi""") and surrounding spaces are trimmed. CRLF
// line ends and a UTF-8 byte-order mark are accepted; blank lines are skipped.
//
// Columns are selected by name (exact match after trimming). numbers() parses
// a column with std::from_chars (a leading '+' is allowed, not "nan"/"inf"
// unless allow_nonfinite), strings() returns it as text.
//
// Errors: CsvError (a UsageError, so the CLI exits 2) naming the file and line
// and, for a cell, the column: "data.csv:17: column 'voltage': 'abc' is not a
// number"; a missing column lists the columns present and suggests the closest.
// A row with a different number of fields than the header is an error at read
// time. Line numbers are 1-based physical lines of the file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "eol/station/errors.hpp"

namespace eol::station {

class CsvError : public UsageError {
public:
    using UsageError::UsageError;
};

class CsvTable {
public:
    /// Reads and parses a file. Throws CsvError (also when it cannot be opened).
    static CsvTable read_file(const std::string& path, char delimiter = ',');
    /// Parses text; `source` names it in errors (e.g. the file name).
    static CsvTable parse(std::string_view text, std::string source, char delimiter = ',');

    const std::string& source() const { return source_; }
    const std::vector<std::string>& columns() const { return columns_; }
    std::size_t rows() const { return cells_.empty() ? 0 : cells_.front().size(); }

    bool has(std::string_view column) const;
    /// Index of a column; throws CsvError naming the columns present.
    std::size_t index(std::string_view column) const;

    /// The column as numbers; throws CsvError "file:line: column 'x': ..." for
    /// an empty cell or text that is not a number.
    std::vector<double> numbers(std::string_view column, bool allow_nonfinite = false) const;
    /// The column as text.
    const std::vector<std::string>& strings(std::string_view column) const;
    const std::string& cell(std::size_t row, std::size_t column) const { return cells_[column][row]; }

    /// 1-based file line of a data row (for error messages).
    std::size_t line_of(std::size_t row) const { return lines_[row]; }
    /// "file:line" of a data row.
    std::string where(std::size_t row) const;

private:
    std::string source_;
    std::vector<std::string> columns_;
    std::vector<std::vector<std::string>> cells_;  // [column][row]
    std::vector<std::size_t> lines_;               // [row]
};

}  // namespace eol::station
