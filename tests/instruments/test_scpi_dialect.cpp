// Dialect tables: the shipped files load, and a broken table is refused with
// file:line and the key. Plus the pure SCPI reply parsers.
#include <doctest/doctest.h>

#include <string>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/errors.hpp"
#include "eol/instruments/scpi.hpp"
#include "instruments/test_scpi_support.hpp"

using namespace eol;
using instruments::Cmd;

namespace {

// A minimal valid dialect; each test breaks one thing.
const std::string kBase = R"([dialect]
name = "mini"
channels = 1
channel_style = "none"
identity = '^ACME,'

[commands]
mode_cc = "FUNC CURR"
level_cc = "CURR {value}"
input_on = "INP ON"
input_off = "INP OFF"
measure_voltage = "MEAS:VOLT?"
measure_current = "MEAS:CURR?"
protection_query = "STAT:QUES:COND?"

[pulse]
levels = "LIST:CURR {levels}"
durations = "LIST:DWEL {durations}"
logger_interval = "SENS:SWE:TINT {interval}"
logger_points = "SENS:SWE:POIN {points}"
arm = ["INIT:TRAN"]
trigger = "*TRG"
status = "STAT:OPER:COND?"
busy_mask = 64
fetch_voltage = "FETC:ARR:VOLT?"
fetch_current = "FETC:ARR:CURR?"

[simulator]
idn = "ACME,L1,1,1.0"
)";

std::string with(std::string text, const std::string& from, const std::string& to) {
    const auto at = text.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    text.replace(at, from.size(), to);
    return text;
}

std::string error_of(const std::string& text) {
    try {
        (void)instruments::parse_dialect(text, "mini.toml");
    } catch (const instruments::DefinitionError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("scpi dialect: every shipped dialect loads and is self-consistent") {
    for (const char* name : {"keysight-el30000", "itech-it8500", "siglent-sdl1000x"}) {
        CAPTURE(name);
        const auto d = instruments::load_dialect(test::dialect_path(name));
        CHECK(d.name == name);
        CHECK(d.identity_matches(d.simulator.idn));
        CHECK_FALSE(d.identity_matches("Other Corp,XYZ,1,1"));
        CHECK(d.has(Cmd::trigger));
        CHECK(d.busy_mask != 0);
    }
    const auto k = instruments::load_dialect(test::dialect_path("keysight-el30000"));
    CHECK(k.render(Cmd::level_cc, 2, {{"value", "1.5"}}) == "CURR 1.5,(@2)");
    CHECK(k.render(Cmd::measure_voltage, 2) == "MEAS:VOLT? (@2)");
    CHECK(k.render(Cmd::trigger, 2) == "*TRG");  // global
    CHECK(k.array_format == instruments::ArrayFormat::real32_be);
    const auto s = instruments::load_dialect(test::dialect_path("siglent-sdl1000x"));
    CHECK(s.render(Cmd::level_cc, 1, {{"value", "2"}}) == ":CURR:LEV:IMM 2");
    CHECK_FALSE(s.list_form_whole());
    CHECK(s.render(Cmd::list_step_level, 1, {{"step", "3"}, {"value", "0.5"}}) ==
          ":SOUR:LIST:LEV 3,0.5");
}

TEST_CASE("scpi dialect: the minimal base parses") {
    const auto d = instruments::parse_dialect(kBase, "mini.toml");
    CHECK(d.text(Cmd::identify) == "*IDN?");  // IEEE 488.2 default
    CHECK_FALSE(d.has(Cmd::mode_cv));
}

TEST_CASE("scpi dialect: errors name file:line and the key") {
    // Unknown key, on its own line.
    CHECK(error_of(with(kBase, "input_off = \"INP OFF\"", "input_off = \"INP OFF\"\ninput_of = \"X\"")) ==
          "mini.toml:12: commands.input_of: unknown key (known: identify, reset, clear_status, "
          "error_query, opc_query, mode_cc, mode_cv, mode_cr, mode_cp, level_cc, level_cv, "
          "level_cr, level_cp, input_on, input_off, measure_voltage, measure_current, "
          "measure_power, protection_query, protection_clear)");
    // Missing required key: the table's line.
    CHECK(error_of(with(kBase, "input_on = \"INP ON\"\n", "")) ==
          "mini.toml:7: commands.input_on: missing required key");
    // Template without its placeholder.
    CHECK(error_of(with(kBase, "level_cc = \"CURR {value}\"", "level_cc = \"CURR\"")) ==
          "mini.toml:9: commands.level_cc: template 'CURR' must contain {value} exactly once");
    // Unknown placeholder.
    CHECK(error_of(with(kBase, "level_cc = \"CURR {value}\"", "level_cc = \"CURR {level}\"")) ==
          "mini.toml:9: commands.level_cc: template 'CURR {level}' uses {level}; this command "
          "takes {value}");
    // A query that is not one.
    CHECK(error_of(with(kBase, "measure_voltage = \"MEAS:VOLT?\"", "measure_voltage = \"MEAS:VOLT\"")) ==
          "mini.toml:12: commands.measure_voltage: 'MEAS:VOLT' must be a query (contain '?'): the "
          "instrument answers it");
    // Wrong type.
    CHECK(error_of(with(kBase, "channels = 1", "channels = \"one\"")) ==
          "mini.toml:3: dialect.channels: must be an integer");
    // Out of range / inconsistent.
    CHECK(error_of(with(kBase, "channels = 1", "channels = 2")) ==
          "mini.toml:3: dialect.channels: a dialect with channel_style = \"none\" addresses one "
          "channel; got 2");
    CHECK(error_of(with(kBase, "channel_style = \"none\"", "channel_style = \"postfix\"")) ==
          "mini.toml:4: dialect.channel_style: 'postfix' is not one of none, prefix, suffix");
    // Bad regular expression.
    CHECK(error_of(with(kBase, "identity = '^ACME,'", "identity = '^ACME,('"))
              .starts_with("mini.toml:5: dialect.identity: not a valid regular expression"));
    // The simulator's identity must match the pattern.
    CHECK(error_of(with(kBase, "idn = \"ACME,L1,1,1.0\"", "idn = \"OTHER,L1,1,1.0\"")) ==
          "mini.toml:29: simulator.idn: 'OTHER,L1,1,1.0' does not match dialect.identity '^ACME,'");
    // Both list forms at once.
    CHECK(error_of(with(kBase, "arm = ", "step_count = \"LIST:STEP {count}\"\narm = "))
              .starts_with("mini.toml:16: pulse: give either levels + durations"));
    // Array format.
    CHECK(error_of(with(kBase, "channels = 1", "channels = 1\narray_format = \"real16\"")) ==
          "mini.toml:4: dialect.array_format: unknown array format 'real16' (expected ascii, "
          "ascii-block, real32-be, real32-le, real64-be or real64-le)");
    // TOML syntax: line and column.
    CHECK(error_of(with(kBase, "busy_mask = 64", "busy_mask = = 64"))
              .starts_with("mini.toml:24:13: TOML syntax:"));
    // Fixed commands must be fixed.
    CHECK(error_of(with(kBase, "arm = [\"INIT:TRAN\"]", "arm = [\"INIT:TRAN\", \"STAT?\"]")) ==
          "mini.toml:21: pulse.arm[1]: 'STAT?' must be one fixed command (no query, ';' or "
          "placeholder)");
    // A missing file.
    try {
        (void)instruments::load_dialect("/nonexistent/dialect.toml");
        FAIL("expected a DefinitionError");
    } catch (const instruments::DefinitionError& e) {
        CHECK(std::string(e.what()) == "/nonexistent/dialect.toml: cannot open: No such file or directory");
    }
}

TEST_CASE("scpi parse: identity, error entries, numbers and lists") {
    const auto id = instruments::parse_identity("Keysight Technologies,EL34243A,MY123, A.01.02");
    CHECK(id.manufacturer == "Keysight Technologies");
    CHECK(id.firmware == "A.01.02");
    CHECK_THROWS_WITH_AS(instruments::parse_identity("ACME,L1"),
                         "expected manufacturer,model,serial,firmware (4 fields), got 2",
                         std::invalid_argument);
    const auto e = instruments::parse_error_entry("-222,\"Data out of range\"");
    CHECK(e.code == -222);
    CHECK(e.message == "Data out of range");
    CHECK(instruments::parse_error_entry("+0,\"No error\"").code == 0);
    CHECK_THROWS_AS(instruments::parse_error_entry("oops"), std::invalid_argument);
    CHECK(instruments::parse_number("+3.91230E+00") == doctest::Approx(3.9123));
    CHECK(instruments::parse_number_list("1,2.5, -3e-3") == std::vector<double>{1, 2.5, -0.003});
    CHECK_THROWS_WITH_AS(instruments::parse_number_list("1,2,x3,4"),
                         "item 3 at character 5 is not a number: 'x3'", std::invalid_argument);
}

TEST_CASE("scpi parse: definite-length binary blocks round-trip in every format") {
    const std::vector<double> v{3.9123, -2.5, 0.0, 1e-3};
    using F = instruments::ArrayFormat;
    for (F f : {F::real32_be, F::real32_le, F::real64_be, F::real64_le, F::ascii_block}) {
        CAPTURE(instruments::to_string(f));
        const std::string payload = instruments::encode_binary_block(v, f);
        const auto back = instruments::decode_binary_block(payload, f);
        REQUIRE(back.size() == v.size());
        for (std::size_t k = 0; k < v.size(); ++k) CHECK(back[k] == doctest::Approx(v[k]).epsilon(1e-6));
    }
    // Big-endian float32 of 1.0 is 3f 80 00 00.
    CHECK(instruments::encode_binary_block({1.0}, F::real32_be) == std::string("\x3f\x80\x00\x00", 4));
    CHECK(instruments::definite_length_block("abcdefghijkl") == "#212abcdefghijkl");
    CHECK_THROWS_AS(instruments::decode_binary_block("abc", F::real32_le), std::invalid_argument);
}
