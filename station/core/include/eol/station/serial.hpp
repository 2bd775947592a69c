// eol/station/serial.hpp — cell serial numbers: a configurable scheme,
// normalization of what people and scanners type, decoding of the fields
// (production date, lot, sequence) and making valid serials.
//
// A SerialScheme is a fixed length over an alphabet, with named fields at
// fixed 1-based positions and an optional check character (Luhn mod N over
// the alphabet, always the last character). It is loaded from TOML
// (config/serial-scheme.toml documents every key) or taken from
// SerialScheme::default_scheme():
//
//   16 characters over 0-9 A-Z without I and O (34 symbols)
//   pos  1-2  plant     text, e.g. "01"
//   pos  3    line      text, e.g. "A"
//   pos  4    year      number, 2020 + symbol index (2020…2053)
//   pos  5    month     number 1…12 (1…9, A, B, C)
//   pos  6    day       number 1…31 (1…9, A…X without I and O)
//   pos  7-10 lot       text, the lot id used for grouping, e.g. "0042"
//   pos 11-15 sequence  number, base 34 big-endian (0…45,435,423)
//   pos 16    check     Luhn mod 34 over positions 1-15
//   e.g. 01A33E004200001C: plant 01, line A, 2023-03-14, lot 0042, sequence 1
//
// "text" fields are kept as their characters; "number" fields are base-N
// big-endian over the alphabet (symbol index = digit value).
//
// Input normalization (normalize): upper-case; drop spaces and dashes (the
// scheme's `ignore` characters); read O as 0 and I as 1 (the scheme's
// `aliases`); any other character outside the alphabet is an error naming its
// 1-based position in the input as typed (counted in characters, UTF-8
// aware); then the length must match; then the check character must verify —
// if it does not, the error lists the valid serials that swapping one
// confusable pair (1/L, 2/Z, 5/S, 8/B, either direction, at any single
// position) produces.
//
// Errors are returned, not thrown (normalize/decode run over millions of
// serials): results carry an optional SerialError whose `message` is
// complete and printable. Loading a scheme throws UsageError naming
// file:line and key; make() throws std::invalid_argument naming the field.
// A SerialScheme is an immutable value: share it freely between threads.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eol::station {

/// A calendar date (proleptic Gregorian).
struct Date {
    int year = 1970;
    int month = 1;
    int day = 1;

    /// True when month is 1…12 and day exists in that month of that year.
    bool valid() const;
    /// "YYYY-MM-DD".
    std::string iso() const;
    /// Parses exactly "YYYY-MM-DD" and checks validity; nullopt otherwise.
    static std::optional<Date> parse_iso(std::string_view text);

    auto operator<=>(const Date&) const = default;
};

enum class SerialFieldKind { plant, line, year, month, day, lot, sequence, text, number };

/// "plant", "line", … as written in the scheme file.
std::string_view to_string(SerialFieldKind kind);

struct SerialField {
    std::string name;
    SerialFieldKind kind = SerialFieldKind::text;
    std::size_t position = 1;  // 1-based index of the first character
    std::size_t length = 1;
    int base_year = 2020;      // year fields only: year = base_year + value

    /// Number-valued kinds (year, month, day, sequence, number).
    bool numeric() const;
    bool operator==(const SerialField&) const = default;
};

enum class SerialErrorKind { bad_character, wrong_length, bad_check, bad_field };

struct SerialError {
    SerialErrorKind kind = SerialErrorKind::bad_character;
    /// 1-based. bad_character: position in the input as typed; bad_check: the
    /// check character's position; bad_field: the field's first position.
    std::size_t position = 0;
    std::string character;                 // bad_character: as typed (UTF-8)
    std::size_t expected_length = 0;       // wrong_length
    std::size_t got_length = 0;            // wrong_length (after dropping ignored characters)
    std::string field;                     // bad_field: the field's name
    std::vector<std::string> candidates;   // bad_check: valid serials one confusable swap away
    std::string message;                   // complete, printable
};

struct NormalizeResult {
    std::string serial;                // normalized (valid when !error)
    std::optional<SerialError> error;
    bool ok() const { return !error.has_value(); }
    explicit operator bool() const { return ok(); }
};

struct FieldValue {
    std::string name;
    SerialFieldKind kind = SerialFieldKind::text;
    std::string text;                    // the characters in the serial
    std::optional<std::int64_t> number;  // numeric kinds: the value (a year field: the year)
};

struct DecodedSerial {
    std::string serial;                        // normalized
    std::vector<FieldValue> fields;            // in scheme order
    std::string plant;                         // empty when the scheme has no such field
    std::string line;
    std::string lot;                           // the lot id used for grouping
    std::optional<Date> production_date;       // when the scheme has year, month and day
    std::optional<std::uint64_t> sequence;
};

struct DecodeResult {
    DecodedSerial value;
    std::optional<SerialError> error;
    bool ok() const { return !error.has_value(); }
    explicit operator bool() const { return ok(); }
};

/// What make() builds a serial from. Text fields shorter than the field are
/// left-padded with the alphabet's first symbol (so lot "42" is "0042");
/// empty means all first-symbol. Values are normalized like input.
struct SerialSpec {
    std::string plant;
    std::string line;
    std::string lot;
    Date date{2020, 1, 1};
    std::uint64_t sequence = 0;
    /// Values of the scheme's other (kind text/number) fields, by field name.
    std::map<std::string, std::string, std::less<>> other;
};

class SerialScheme {
public:
    /// The default scheme described at the top of this header (the same as
    /// the shipped config/serial-scheme.toml).
    static const SerialScheme& default_scheme();
    /// Loads a scheme file; throws UsageError naming file:line and key path
    /// (all problems found, one per line).
    static SerialScheme load(const std::filesystem::path& file);
    /// Same from TOML text; `source` names it in errors.
    static SerialScheme parse(std::string_view toml_text, std::string_view source);

    std::size_t length() const { return length_; }
    const std::string& alphabet() const { return alphabet_; }
    bool has_check() const { return check_; }
    const std::vector<SerialField>& fields() const { return fields_; }
    /// The first field of this kind, or nullptr.
    const SerialField* field(SerialFieldKind kind) const;
    /// Upper bound (exclusive) of a numeric field's raw value: N^length.
    std::uint64_t capacity(const SerialField& f) const;

    /// Normalizes typed or scanned input, with full diagnostics.
    NormalizeResult normalize(std::string_view input) const;
    /// Fast path for bulk use: writes the normalized serial into `out` (no
    /// allocation once `out` has capacity) and returns true when valid; no
    /// diagnostics (call normalize() for those).
    bool normalize_into(std::string_view input, std::string& out) const;
    /// normalize() then decode fields; an impossible date is a bad_field error.
    DecodeResult decode(std::string_view input) const;
    /// Fast path for bulk use: what decode() gives for the serial, the lot and
    /// the production date (ISO "YYYY-MM-DD", "" when the scheme has no date),
    /// without the field list; returns false when decode() would fail (call it
    /// for the diagnostics). No allocation once the strings have capacity.
    bool decode_key(std::string_view input, std::string& serial, std::string& lot, std::string& date_iso) const;

    /// A valid serial from `spec` (check character computed). Throws
    /// std::invalid_argument naming the field when a value does not fit.
    std::string make(const SerialSpec& spec) const;
    /// `count` serials with sequences spec.sequence, spec.sequence+1, …
    std::vector<std::string> make_range(const SerialSpec& spec, std::size_t count) const;

    /// Luhn mod N check character for `payload` (length()-1 symbols of the
    /// alphabet). Requires has_check().
    char check_char(std::string_view payload) const;
    /// True when `normalized` (length() symbols of the alphabet) carries a
    /// correct check character (always true without a check character).
    bool check_ok(std::string_view normalized) const;

    bool operator==(const SerialScheme& o) const;

private:
    SerialScheme() = default;
    void build_tables();
    int index_of(char c) const { return index_[static_cast<unsigned char>(c)]; }
    // The value of a numeric field's text (digits of the alphabet, most
    // significant first), a year field's base_year added.
    std::int64_t field_number(const SerialField& f, std::string_view text) const;

    std::size_t length_ = 0;
    std::string alphabet_;
    bool check_ = false;
    std::string ignore_;
    std::vector<std::pair<char, char>> aliases_;     // typed → symbol
    std::vector<std::pair<char, char>> confusable_;  // unordered pairs
    std::vector<SerialField> fields_;

    std::array<std::int16_t, 256> index_{};   // symbol → index, -1 otherwise
    std::array<std::int16_t, 256> input_{};   // typed byte → symbol index, -1 bad, -2 drop
};

}  // namespace eol::station
