// Register maps: the shipped files load, bad ones are reported with
// file:line and key, and the codec follows the vendors' formulas.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/register_map.hpp"
#include "instruments/test_modbus_util.hpp"

using namespace eol::instruments;

namespace {

std::string error_of(const std::string& text) {
    try {
        parse_register_map(text, "maps/bad.toml");
    } catch (const DefinitionError& e) {
        return e.what();
    }
    return "(no error)";
}

const char* kGood = R"([device]
kind = "thermocouple"
manufacturer = "X"
model = "Y"
channels = 4
[values]
table = "input"
start = 0
format = "int16"
scaling = "fixed_point"
scale = 0.1
)";

ChannelRaw raw1(std::uint16_t w, int type = -1) {
    ChannelRaw r;
    r.words = {w};
    r.type_code = type;
    return r;
}

}  // namespace

TEST_CASE("modbus map: the shipped maps load with the documented layout") {
    const auto et = load_register_map(eol::test::map_path("icpdas-et7018z.toml"));
    CHECK(et.kind == RegisterMap::Kind::thermocouple);
    CHECK(et.thermo.channels == 10);
    CHECK(et.thermo.values.table == RegTable::input);
    CHECK(et.thermo.values.start == 0);
    REQUIRE(et.thermo.type_block);
    CHECK(et.thermo.type_block->start == 427);
    REQUIRE(et.thermo.type(15));
    CHECK(et.thermo.type(15)->name == "K");
    CHECK(et.thermo.type(21)->name == "N");

    const auto moxa = load_register_map(eol::test::map_path("moxa-iologik-e1262.toml"));
    CHECK(moxa.thermo.values.start == 2048);
    CHECK(moxa.thermo.scaling == Scaling::fixed_point);
    CHECK(moxa.thermo.scale == doctest::Approx(0.1));

    const auto adam = load_register_map(eol::test::map_path("advantech-adam6018.toml"));
    CHECK(adam.thermo.values.table == RegTable::holding);
    CHECK(adam.thermo.scaling == Scaling::counts_range);
    CHECK(adam.thermo.status.size() == 4);

    const auto m97 = load_register_map(eol::test::map_path("maynuo-m97.toml"));
    CHECK(m97.kind == RegisterMap::Kind::load);
    CHECK(m97.load.command_register == 0x0A00);
    CHECK(m97.load.input_state_coil == 0x0510);
    CHECK(m97.load.set_current == 0x0A01);
    CHECK(m97.load.read_voltage == 0x0B00);
    CHECK(m97.load.cmd_input_on == 42);
    CHECK_FALSE(m97.load.read_power);
}

TEST_CASE("modbus map: errors name file:line and the key") {
    CHECK(parse_register_map(kGood, "ok").thermo.channels == 4);

    // Unknown key (a typo must not fall back to a default), on its own line.
    CHECK(error_of(std::string(kGood) + "word_ordr = \"big\"\n") ==
          "maps/bad.toml:12: values.word_ordr: unknown key");
    // A bad choice names the options.
    std::string t = kGood;
    t.replace(t.find("\"input\""), 7, "\"inputs\"");
    CHECK(error_of(t) ==
          "maps/bad.toml:7: values.table: 'inputs' is not one of: input, holding");
    // Missing required key: reported at the table's header line.
    t = kGood;
    t.erase(t.find("start = 0\n"), 10);
    CHECK(error_of(t) == "maps/bad.toml:6: values.start: required key is missing");
    // Out-of-range address.
    t = kGood;
    t.replace(t.find("start = 0"), 9, "start = 70000");
    CHECK(error_of(t) == "maps/bad.toml:8: values.start: 70000 is out of range (0..65535)");
    // Wrong type.
    t = kGood;
    t.replace(t.find("channels = 4"), 12, "channels = \"4\"");
    CHECK(error_of(t) == "maps/bad.toml:5: device.channels: expected an integer");
    // Inconsistent scaling / format.
    t = kGood;
    t.replace(t.find("\"fixed_point\""), 13, "\"counts_range\"");
    CHECK(error_of(t) ==
          "maps/bad.toml:9: values.format: scaling 'counts_range' needs format 'uint16'");
    // Status rules: unknown status, value outside its mask.
    CHECK(error_of(std::string(kGood) + "[[status]]\nstatus = \"broken\"\ntable = \"input\"\nstart = 9\nvalue = 1\n") ==
          "maps/bad.toml:13: status[0].status: 'broken' is not one of: open, over_range, under_range, stale");
    CHECK(error_of(std::string(kGood) + "[[status]]\nstatus = \"open\"\ntable = \"input\"\nstart = 9\nmask = 1\nvalue = 2\n") ==
          "maps/bad.toml:17: status[0].value: has bits outside the mask, so it can never match");
    // Type-based scaling without types; duplicate type codes.
    t = kGood;
    t.replace(t.find("\"fixed_point\""), 13, "\"type_range\"");
    CHECK(error_of(t) == "maps/bad.toml:1: types: scaling by thermocouple type needs a [types] table");
    CHECK(error_of(t + "[types]\ndefault = 1\nknown = [{code = 1, name = \"K\", min_c = 0.0, max_c = 10.0},\n"
                       "  {code = 1, name = \"J\", min_c = 0.0, max_c = 10.0}]\n")
              .find("maps/bad.toml:15: types.known[1].code: type code 1 is defined twice") == 0);
    // TOML syntax errors carry line and column.
    CHECK(error_of("[device\nkind = 1\n").rfind("maps/bad.toml:1:", 0) == 0);
    // A load map with its own errors.
    CHECK(error_of("[device]\nkind = \"load\"\nmanufacturer = \"M\"\nmodel = \"L\"\nchannels = 2\n")
              .find("maps/bad.toml:1: device: Modbus loads are single-channel") == 0);
    // A file that is not there.
    try {
        load_register_map("/nonexistent/dir/none.toml");
        FAIL("no error");
    } catch (const DefinitionError& e) {
        CHECK(std::string(e.what()).rfind("/nonexistent/dir/none.toml", 0) == 0);
    }
}

TEST_CASE("modbus map: ICP DAS two's complement over the type's full scale") {
    const auto m = load_register_map(eol::test::map_path("icpdas-et7018z.toml")).thermo;
    // The vendor's table: type K (code 15) −270 °C = 0xE6D0, +1372 °C = 0x7FFF
    // (which is also the over-range reading); type J (14) −210 °C = 0xDCA2.
    CHECK(decode_channel(m, 0, raw1(0xE6D0, 15)).temp_c == doctest::Approx(-270.0).epsilon(1e-4));
    CHECK(decode_channel(m, 0, raw1(0xDCA2, 14)).temp_c == doctest::Approx(-210.0).epsilon(1e-4));
    CHECK(decode_channel(m, 0, raw1(0x7FFE, 14)).temp_c == doctest::Approx(759.98).epsilon(1e-4));
    CHECK(decode_channel(m, 0, raw1(0x7FFF, 15)).status == TcStatus::over_range);
    CHECK(decode_channel(m, 0, raw1(0x8000, 15)).status == TcStatus::under_range);
    // Below the type's minimum but not the sentinel: under range by value.
    CHECK(decode_channel(m, 0, raw1(0xDC00, 14)).status == TcStatus::under_range);
    // 25 °C on K: round(25/1372·32767) = 597 = 0x0255.
    CHECK(encode_channel(m, 15, 25.0) == std::vector<std::uint16_t>{0x0255});
    CHECK(decode_channel(m, 0, raw1(0x0255, 15)).temp_c == doctest::Approx(24.997).epsilon(1e-4));
    // A status rule wins over the value.
    ChannelRaw r = raw1(0x0255, 15);
    r.flagged = TcStatus::open;
    CHECK(decode_channel(m, 0, r).status == TcStatus::open);
    CHECK(std::isnan(decode_channel(m, 0, r).temp_c));
    // Unknown type code.
    CHECK_THROWS_AS(decode_channel(m, 3, raw1(0x0255, 8)), DefinitionError);
}

TEST_CASE("modbus map: Advantech counts over the type range, sentinels at both ends") {
    const auto m = load_register_map(eol::test::map_path("advantech-adam6018.toml")).thermo;
    // K (0x0F) is 0…1370 °C: raw 32768 → 685.01 °C.
    CHECK(decode_channel(m, 0, raw1(32768, 0x0F)).temp_c ==
          doctest::Approx(32768.0 / 65535.0 * 1370.0));
    CHECK(decode_channel(m, 0, raw1(0xFFFF, 0x0F)).status == TcStatus::over_range);
    CHECK(decode_channel(m, 0, raw1(0x0000, 0x0F)).status == TcStatus::under_range);
    // T (0x10) is −100…400 °C: raw 6554 → −50.0 °C.
    CHECK(decode_channel(m, 0, raw1(6554, 0x10)).temp_c == doctest::Approx(-49.99).epsilon(1e-3));
    // An in-range temperature never encodes as a sentinel.
    CHECK(encode_channel(m, 0x0F, 1370.0) == std::vector<std::uint16_t>{0xFFFE});
    CHECK(encode_channel(m, 0x0F, 0.0) == std::vector<std::uint16_t>{0x0001});
}

TEST_CASE("modbus map: 32-bit values and word order") {
    std::uint16_t a = 0, b = 0;
    float_to_words(25.5f, WordOrder::big, a, b);  // 0x41CC0000
    CHECK(a == 0x41CC);
    CHECK(b == 0x0000);
    float_to_words(25.5f, WordOrder::little, a, b);
    CHECK(a == 0x0000);
    CHECK(b == 0x41CC);
    CHECK(words_to_float(0x0000, 0x41CC, WordOrder::little) == 25.5f);
    CHECK(join_words(0x1234, 0x5678, WordOrder::big) == 0x12345678u);
    CHECK(join_words(0x1234, 0x5678, WordOrder::little) == 0x56781234u);

    const auto moxa = load_register_map(eol::test::map_path("moxa-iologik-e1262.toml")).thermo;
    // int32 in 0.1 °C, high word first: −12.3 °C = −123 = 0xFFFFFF85.
    ChannelRaw r;
    r.words = {0xFFFF, 0xFF85};
    CHECK(decode_channel(moxa, 0, r).temp_c == doctest::Approx(-12.3));
    CHECK(encode_channel(moxa, -1, -12.3) == std::vector<std::uint16_t>{0xFFFF, 0xFF85});
    r.words = {0x0000, 0x3A98};  // 1500.0 °C: above the K range the map declares
    CHECK(decode_channel(moxa, 0, r).status == TcStatus::over_range);

    // A NaN float is "no valid value": stale.
    auto fm = parse_register_map(R"([device]
kind = "thermocouple"
manufacturer = "X"
model = "F"
channels = 1
[values]
table = "input"
start = 0
format = "float32"
scaling = "float32"
)",
                                 "<f>")
                  .thermo;
    r.words = {0x7FC0, 0x0000};
    CHECK(decode_channel(fm, 0, r).status == TcStatus::stale);
    r.words = {0x7F80, 0x0000};  // +inf
    CHECK(decode_channel(fm, 0, r).status == TcStatus::over_range);
}
