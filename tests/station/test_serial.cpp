// Serial numbers: scheme loading, normalization, check character, decoding,
// making, and the `eolstation serial` commands.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "eol/station/errors.hpp"
#include "eol/station/serial.hpp"
#include "support/cli_test.hpp"

using eol::station::Date;
using eol::station::SerialErrorKind;
using eol::station::SerialFieldKind;
using eol::station::SerialScheme;
using eol::station::SerialSpec;

namespace {

const SerialScheme& S() { return SerialScheme::default_scheme(); }

SerialSpec spec(std::string lot, Date d, std::uint64_t seq, std::string plant = "01", std::string line = "A") {
    SerialSpec s;
    s.lot = std::move(lot);
    s.date = d;
    s.sequence = seq;
    s.plant = std::move(plant);
    s.line = std::move(line);
    return s;
}

// The serial with `pos` (0-based) replaced by `c` and, when `fix_check`, the
// check character recomputed.
std::string with(const std::string& s, std::size_t pos, char c, bool fix_check = false) {
    std::string t = s;
    t[pos] = c;
    if (fix_check) t.back() = S().check_char(std::string_view(t).substr(0, t.size() - 1));
    return t;
}

std::string parse_error(std::string_view toml) {
    try {
        (void)SerialScheme::parse(toml, "scheme.toml");
    } catch (const eol::station::UsageError& e) {
        return e.what();
    }
    return "";
}

using eol::test::Run;
using eol::test::run_cli;

}  // namespace

TEST_CASE("serial: the shipped config/serial-scheme.toml is the built-in default scheme") {
    const SerialScheme loaded = SerialScheme::load(std::string(EOL_CONFIG_DIR) + "/serial-scheme.toml");
    CHECK(loaded == S());
    CHECK(S().length() == 16);
    CHECK(S().alphabet() == "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ");
    CHECK(S().has_check());
    REQUIRE(S().field(SerialFieldKind::lot) != nullptr);
    CHECK(S().field(SerialFieldKind::lot)->position == 7);
}

TEST_CASE("serial: make builds the documented layout and decode reads it back") {
    const std::string s = S().make(spec("42", {2023, 3, 14}, 1));
    CHECK(s == "01A33E004200001C");  // the example in the header and the scheme file
    const auto d = S().decode(s);
    REQUIRE(d.ok());
    CHECK(d.value.plant == "01");
    CHECK(d.value.line == "A");
    CHECK(d.value.lot == "0042");
    REQUIRE(d.value.production_date);
    CHECK(d.value.production_date->iso() == "2023-03-14");
    CHECK(d.value.sequence == 1u);
    REQUIRE(d.value.fields.size() == 7);
    CHECK(d.value.fields[2].name == "year");
    CHECK(d.value.fields[2].number == 2023);
}

TEST_CASE("serial: normalization upper-cases, drops spaces and dashes, reads O as 0 and I as 1") {
    const std::string valid = S().make(spec("A010", {2024, 11, 30}, 1001, "P1", "1"));
    REQUIRE(S().check_ok(valid));
    // lower-case, grouped with dashes and spaces, O for 0 and I for 1 wherever 0/1 occur
    std::string typed;
    for (std::size_t i = 0; i < valid.size(); ++i) {
        if (i == 4) typed += "- ";
        if (i == 10) typed += ' ';
        char c = valid[i];
        if (c == '0') c = 'o';
        else if (c == '1') c = 'I';
        else if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        typed += c;
    }
    const auto r = S().normalize(typed);
    REQUIRE_MESSAGE(r.ok(), r.error->message);
    CHECK(r.serial == valid);
    std::string fast;
    CHECK(S().normalize_into(typed, fast));
    CHECK(fast == valid);
}

TEST_CASE("serial: a character outside the alphabet is named with its position as typed") {
    const std::string valid = S().make(spec("0042", {2023, 3, 14}, 7));
    auto r = S().normalize(valid.substr(0, 4) + "#" + valid.substr(4));
    REQUIRE(r.error);
    CHECK(r.error->kind == SerialErrorKind::bad_character);
    CHECK(r.error->position == 5);
    CHECK(r.error->character == "#");
    CHECK(r.error->message.find("position 5") != std::string::npos);

    // positions count what was typed, dashes and spaces included, in characters not bytes
    r = S().normalize("01-A3 é3E004200001C");
    REQUIRE(r.error);
    CHECK(r.error->kind == SerialErrorKind::bad_character);
    CHECK(r.error->position == 7);
    CHECK(r.error->character == "é");

    r = S().normalize(std::string("01A3\t3E", 7));
    REQUIRE(r.error);
    CHECK(r.error->position == 5);
    CHECK(r.error->message.find("\\x09") != std::string::npos);

    std::string fast;
    CHECK_FALSE(S().normalize_into("01A3#3E004200001C", fast));
}

TEST_CASE("serial: wrong length says expected and got") {
    const std::string valid = S().make(spec("0042", {2023, 3, 14}, 7));
    auto r = S().normalize(valid.substr(0, 15));
    REQUIRE(r.error);
    CHECK(r.error->kind == SerialErrorKind::wrong_length);
    CHECK(r.error->expected_length == 16);
    CHECK(r.error->got_length == 15);
    CHECK(r.error->message.find("expected 16") != std::string::npos);
    CHECK(r.error->message.find("got 15") != std::string::npos);

    r = S().normalize(valid + "0");
    REQUIRE(r.error);
    CHECK(r.error->got_length == 17);

    r = S().normalize("0-1 A");
    REQUIRE(r.error);
    CHECK(r.error->got_length == 3);
    CHECK(r.error->message.find("after dropping spaces and dashes") != std::string::npos);

    std::string fast;
    CHECK_FALSE(S().normalize_into(valid + "0", fast));
    CHECK_FALSE(S().normalize_into(valid.substr(1), fast));
}

TEST_CASE("serial: a failed check lists the confusable-swap corrections (1/L, 2/Z, 5/S, 8/B)") {
    // Serials over many lots and sequences hold every confusable symbol at
    // some position; misreading one must be caught and the original suggested.
    std::vector<std::string> pool;
    for (const char* lot : {"L25S", "8BZ1", "S5L2", "Z8B1"})
        for (auto& s : S().make_range(spec(lot, {2021, 5, 18}, 1180), 40)) pool.push_back(s);
    const std::vector<std::pair<char, char>> pairs{{'1', 'L'}, {'2', 'Z'}, {'5', 'S'}, {'8', 'B'}};
    int tried = 0;
    for (const auto& [a, b] : pairs) {
        for (const auto& [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
            int for_this_direction = 0;
            for (const auto& s : pool) {
                for (std::size_t i = 0; i < s.size(); ++i) {
                    if (s[i] != from) continue;
                    const std::string misread = with(s, i, to);
                    const auto r = S().normalize(misread);
                    REQUIRE(r.error);
                    CHECK(r.error->kind == SerialErrorKind::bad_check);
                    CHECK(r.error->position == 16);
                    const auto& c = r.error->candidates;
                    CHECK_MESSAGE(std::find(c.begin(), c.end(), s) != c.end(), misread, " should suggest ", s);
                    CHECK(r.error->message.find(s) != std::string::npos);
                    for (const auto& cand : c) {
                        CHECK(S().check_ok(cand));
                        int diffs = 0;
                        for (std::size_t k = 0; k < cand.size(); ++k) diffs += cand[k] != misread[k];
                        CHECK(diffs == 1);
                    }
                    ++for_this_direction;
                }
            }
            CHECK_MESSAGE(for_this_direction > 0, "no serial held '", from, "'");
            tried += for_this_direction;
        }
    }
    CHECK(tried > 100);

    // An L read as I is normalized to 1 (I cannot be meant) and 1/L then finds it.
    const std::string with_l = S().make(spec("0L00", {2023, 3, 14}, 5));
    const auto r = S().normalize(with(with_l, 7, 'I'));
    REQUIRE(r.error);
    CHECK(std::find(r.error->candidates.begin(), r.error->candidates.end(), with_l) !=
          r.error->candidates.end());

    // A substitution that is no confusable pair gets no suggestion.
    const std::string plain = S().make(spec("0000", {2023, 3, 14}, 0, "00", "0"));
    const auto q = S().normalize(with(plain, 3, 'K'));
    REQUIRE(q.error);
    CHECK(q.error->kind == SerialErrorKind::bad_check);
    CHECK(q.error->message.find("no single confusable swap") != std::string::npos);
}

TEST_CASE("serial: Luhn mod 34 detects every single-character substitution (exhaustive)") {
    std::mt19937_64 rng(12345);
    std::vector<std::string> serials{S().make(spec("0000", {2020, 1, 1}, 0, "00", "0")),
                                     S().make(spec("ZZZZ", {2053, 12, 31}, 45435423, "ZZ", "Z"))};
    for (int k = 0; k < 6; ++k) {
        SerialSpec sp = spec("", {2020 + static_cast<int>(rng() % 34), 1 + static_cast<int>(rng() % 12),
                                  1 + static_cast<int>(rng() % 28)},
                             rng() % 45435424);
        for (char& c : sp.lot = "0000") c = S().alphabet()[rng() % 34];
        serials.push_back(S().make(sp));
    }
    std::size_t checked = 0;
    for (const auto& s : serials) {
        REQUIRE(S().check_ok(s));
        for (std::size_t i = 0; i < s.size(); ++i) {
            for (char c : S().alphabet()) {
                if (c == s[i]) continue;
                CHECK_FALSE_MESSAGE(S().check_ok(with(s, i, c)), s, " pos ", i + 1, " -> ", c);
                ++checked;
            }
        }
    }
    CHECK(checked == serials.size() * 16 * 33);
}

TEST_CASE("serial: decode rejects impossible dates and accepts leap days") {
    const std::string base = S().make(spec("0042", {2023, 3, 14}, 1));
    auto r = S().decode(with(base, 4, '0', true));  // month 0
    REQUIRE(r.error);
    CHECK(r.error->kind == SerialErrorKind::bad_field);
    CHECK(r.error->field == "month");
    CHECK(r.error->position == 5);
    r = S().decode(with(base, 4, 'D', true));  // month 13
    REQUIRE(r.error);
    CHECK(r.error->field == "month");

    std::string feb = with(base, 4, '2', true);
    r = S().decode(with(feb, 5, 'U', true));  // 2023-02-28 ok (U = 28)
    REQUIRE(r.ok());
    CHECK(r.value.production_date->iso() == "2023-02-28");
    r = S().decode(with(feb, 5, 'V', true));  // 2023-02-29 does not exist
    REQUIRE(r.error);
    CHECK(r.error->field == "day");
    CHECK(r.error->position == 6);
    r = S().decode(with(with(feb, 3, '4', true), 5, 'V', true));  // 2024-02-29 does
    REQUIRE(r.ok());
    CHECK(r.value.production_date->iso() == "2024-02-29");
    r = S().decode(with(base, 5, '0', true));  // day 0
    REQUIRE(r.error);
    CHECK(r.error->field == "day");
}

TEST_CASE("serial: make -> check round trip over random fields") {
    std::mt19937_64 rng(7);
    for (int k = 0; k < 2000; ++k) {
        Date d{2020 + static_cast<int>(rng() % 34), 1 + static_cast<int>(rng() % 12), 1};
        d.day = 1 + static_cast<int>(rng() % 31);
        while (!d.valid()) --d.day;
        SerialSpec sp = spec("", d, rng() % 45435424, "", "");
        for (auto* f : {&sp.lot, &sp.plant, &sp.line}) {
            const std::size_t n = f == &sp.lot ? 4 : f == &sp.plant ? 2 : 1;
            for (std::size_t i = 0; i < n; ++i) *f += S().alphabet()[rng() % 34];
        }
        const std::string s = S().make(sp);
        const auto r = S().decode(s);
        REQUIRE_MESSAGE(r.ok(), s);
        CHECK(r.value.serial == s);
        CHECK(r.value.lot == sp.lot);
        CHECK(r.value.plant == sp.plant);
        CHECK(r.value.line == sp.line);
        CHECK(*r.value.production_date == d);
        CHECK(*r.value.sequence == sp.sequence);
    }
    const auto range = S().make_range(spec("7", {2023, 6, 1}, 45435420), 4);
    REQUIRE(range.size() == 4);
    CHECK(std::set<std::string>(range.begin(), range.end()).size() == 4);
    CHECK(S().decode(range[3]).value.sequence == 45435423u);
}

TEST_CASE("serial: make names the field that does not fit") {
    auto msg = [](const SerialSpec& sp, std::size_t count = 1) {
        try {
            (void)S().make_range(sp, count);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    CHECK(msg(spec("12345", {2023, 1, 1}, 1)).find("'lot'") != std::string::npos);
    CHECK(msg(spec("00#1", {2023, 1, 1}, 1)).find("'#'") != std::string::npos);
    CHECK(msg(spec("0001", {2019, 1, 1}, 1)).find("base year 2020") != std::string::npos);
    CHECK(msg(spec("0001", {2054, 1, 1}, 1)).find("'year'") != std::string::npos);
    CHECK(msg(spec("0001", {2023, 2, 30}, 1)).find("2023-02-30") != std::string::npos);
    CHECK(msg(spec("0001", {2023, 1, 1}, 45435424)).find("'sequence'") != std::string::npos);
    CHECK(msg(spec("0001", {2023, 1, 1}, 45435423), 2).find("'sequence'") != std::string::npos);
    SerialSpec other = spec("0001", {2023, 1, 1}, 1);
    other.other["colour"] = "R";
    CHECK(msg(other).find("'colour'") != std::string::npos);
}

TEST_CASE("serial: a custom scheme from TOML (no check, text and number fields)") {
    const SerialScheme s = SerialScheme::parse(R"(
length = 8
alphabet = "0123456789"
check = "none"
[[field]]
name = "site"
kind = "text"
position = 1
length = 2
[[field]]
name = "serial_no"
kind = "number"
position = 3
length = 6
)",
                                               "custom.toml");
    CHECK(s.length() == 8);
    CHECK_FALSE(s.has_check());
    const auto d = s.decode("12-000 345");
    REQUIRE(d.ok());
    CHECK(d.value.serial == "12000345");
    CHECK(d.value.fields[1].number == 345);
    CHECK_FALSE(d.value.production_date);
    CHECK(d.value.lot.empty());
    SerialSpec sp;
    sp.other["site"] = "7";
    sp.other["serial_no"] = "99";
    CHECK(s.make(sp) == "07000099");
    // O is aliased only because 0 is in the alphabet; letters are not symbols here
    CHECK(s.normalize("12OOO345").serial == "12000345");
    const auto bad = s.normalize("12A00345");
    REQUIRE(bad.error);
    CHECK(bad.error->position == 3);
}

TEST_CASE("serial: scheme errors name file:line and key, several at once") {
    std::string e = parse_error("lenght = 16\n");
    CHECK(e.find("scheme.toml:1: lenght: unknown key (did you mean 'length'?)") != std::string::npos);
    CHECK(e.find("length: missing required key") != std::string::npos);

    e = parse_error("length = \"16\"\nalphabet = \"01a\"\n");
    CHECK(e.find("scheme.toml:1: length: expected an integer, got a string") != std::string::npos);
    CHECK(e.find("scheme.toml:2: alphabet: 'a' is not a digit or upper-case letter") != std::string::npos);

    e = parse_error(R"(length = 16
[[field]]
name = "lot"
kind = "lot"
position = 7
length = 4
[[field]]
name = "seq"
kind = "sequense"
position = 9
length = 5
[[field]]
name = "x"
kind = "text"
position = 9
length = 2
[[field]]
name = "y"
kind = "text"
position = 15
length = 2
)");
    CHECK(e.find("scheme.toml:9: field 'seq'.kind: 'sequense' is not a field kind") != std::string::npos);
    CHECK(e.find("did you mean 'sequence'?") != std::string::npos);
    CHECK(e.find("scheme.toml:15: field 'x'.position: character 9 is also in field 'lot'") != std::string::npos);
    CHECK(e.find("scheme.toml:20: field 'y'.position: characters 15…16 are beyond") != std::string::npos);

    e = parse_error("length = 16\ncheck = \"crc\"\naliases = { o = \"0\" }\n[[field]]\nname = \"y\"\nkind = \"year\"\n"
                    "position = 1\nlength = 1\n");
    CHECK(e.find("scheme.toml:2: check: 'crc' is not one of") != std::string::npos);
    CHECK(e.find("scheme.toml:3: aliases.o") != std::string::npos);
    CHECK(e.find("needs all of year, month and day") != std::string::npos);

    e = parse_error("length = [\n");
    CHECK(e.find("scheme.toml:") != std::string::npos);

    CHECK_THROWS_WITH_AS(SerialScheme::load("/nonexistent/scheme.toml"),
                         doctest::Contains("cannot open"), eol::station::UsageError);
}

TEST_CASE("serial: normalize_into agrees with normalize") {
    std::mt19937_64 rng(99);
    const std::string chars = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZOIoilz -#";
    const auto valid = S().make_range(spec("A1B2", {2022, 8, 8}, 100), 50);
    std::string out;
    for (int k = 0; k < 3000; ++k) {
        std::string in = valid[rng() % valid.size()];
        const int edits = static_cast<int>(rng() % 3);
        for (int e = 0; e < edits; ++e) in[rng() % in.size()] = chars[rng() % chars.size()];
        const auto full = S().normalize(in);
        CHECK(S().normalize_into(in, out) == full.ok());
        if (full.ok()) CHECK(out == full.serial);
    }
}

TEST_CASE("serial: decode_key agrees with decode (valid, mistyped, impossible dates, custom schemes)") {
    std::mt19937_64 rng(7);
    const std::string chars = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZOIoilz -#";
    auto agree = [](const SerialScheme& sc, const std::string& in) {
        CAPTURE(in);
        std::string serial = "stale", lot = "stale", date = "stale";
        const auto full = sc.decode(in);
        REQUIRE(sc.decode_key(in, serial, lot, date) == full.ok());
        if (!full.ok()) return;
        CHECK(serial == full.value.serial);
        CHECK(lot == full.value.lot);
        CHECK(date == (full.value.production_date ? full.value.production_date->iso() : std::string()));
    };
    std::vector<std::string> valid;
    for (const Date d : {Date{2020, 1, 1}, Date{2023, 2, 28}, Date{2024, 2, 29}, Date{2031, 12, 31}}) {
        const auto r = S().make_range(spec("A1B2", d, 100), 20);
        valid.insert(valid.end(), r.begin(), r.end());
    }
    std::size_t ok = 0;
    for (int k = 0; k < 4000; ++k) {
        std::string in = valid[rng() % valid.size()];
        const int edits = static_cast<int>(rng() % 3);
        for (int e = 0; e < edits; ++e) in[rng() % in.size()] = chars[rng() % chars.size()];
        agree(S(), in);
        ok += S().decode(in).ok();
    }
    CHECK(ok > 1000);  // both outcomes exercised
    // Impossible dates with a correct check character: month 0 and 13, 2023-02-29.
    const std::string base = S().make(spec("0042", {2023, 3, 14}, 1));
    for (const std::string& in : {with(base, 4, '0', true), with(base, 4, 'D', true),
                                  with(with(base, 4, '2', true), 5, 'V', true), with(base, 5, '0', true)})
        agree(S(), in);
    // A scheme without a date or a lot.
    const SerialScheme plain = SerialScheme::parse(R"(
length = 8
alphabet = "0123456789"
check = "none"
[[field]]
name = "serial_no"
kind = "number"
position = 1
length = 8
)",
                                                   "plain.toml");
    for (const char* in : {"12345678", "1234-5678", "1234567", "12A45678"}) agree(plain, in);
}

TEST_CASE("serial: `eolstation serial check|make` exit codes and output") {
    Run r = run_cli("serial make --lot 0042 --date 2023-03-14 --count 3 --start 9 --plant 01 --line A");
    CHECK(r.code == 0);
    CHECK(r.out == "01A33E004200009W\n01A33E00420000AU\n01A33E00420000BS\n");
    for (const auto& s : S().make_range(spec("0042", {2023, 3, 14}, 9), 3))
        CHECK(r.out.find(s) != std::string::npos);

    r = run_cli("serial check 01A33E004200001C \"01a3-3e00 42oo oo1c\"");
    CHECK(r.code == 0);
    CHECK(r.out.find("01A33E004200001C  production_date=2023-03-14  lot=0042") != std::string::npos);

    r = run_cli("serial check 01A33E004200001C 0LA33E004200001C");
    CHECK(r.code == 1);
    CHECK(r.out.find("did you mean 01A33E004200001C?") != std::string::npos);

    r = run_cli("serial check --json 01A3#3E004200001C");
    CHECK(r.code == 1);
    CHECK(r.out.find("\"position\": 5") != std::string::npos);
    CHECK(r.out.find("\"valid\": false") != std::string::npos);

    CHECK(run_cli("serial make --lot 0042 --date 2023-02-30").code == 2);
    CHECK(run_cli("serial make --lot 00421 --date 2023-02-01").code == 2);
    CHECK(run_cli("serial check --scheme /nonexistent.toml 01A33E004200001C").code == 2);
    CHECK(run_cli("serial check").code == 2);
    r = run_cli(std::string("serial check --scheme ") + EOL_CONFIG_DIR + "/serial-scheme.toml 01A33E004200001C");
    CHECK(r.code == 0);
}

TEST_CASE("hostile: serial make with a start near 2^64 is refused, never wrapped") {
    const eol::test::Run r = eol::test::run_cli("serial make --lot 0001 --date 2023-03-14 --start 18446744073709551615 --count 2");
    CHECK(r.code == 2);
    CHECK(r.out.find("do not fit") != std::string::npos);
    const eol::test::Run r2 = eol::test::run_cli("serial make --lot 0001 --date 2023-03-14 --start 18446744073709551616");
    CHECK(r2.code == 2);
}
