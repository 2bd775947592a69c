// channel_io(): a fixture position's instruments out of make_instruments(),
// as the station file places them — load and channel, thermocouple and
// channel, the ambient on the same module or on another — and clear errors
// for a position or an instrument that is not there. No I/O (the drivers are
// made, not connected).
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "eol/station/config.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/instrument_factory.hpp"

using namespace eol;

namespace {

station::StationConfig example() {
    return station::load_station_config(std::string(EOL_CONFIG_DIR) + "/station.example.toml");
}

std::string usage_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const station::UsageError& e) {
        return e.what();
    }
    return "no UsageError";
}

}  // namespace

TEST_CASE("instrument factory: channel_io places a position's load, thermocouple and ambient as the station file says") {
    station::StationConfig cfg = example();
    const station::StationInstruments made = station::make_instruments(cfg);

    const station::ChannelIo two = station::channel_io(cfg, 2, made);
    CHECK(two.load == made.loads.at("load1").get());
    CHECK(two.load_channel == 2);
    CHECK(two.thermo == made.thermos.at("tc1").get());
    CHECK(two.thermo_channel == 1);
    REQUIRE(two.ambient_channel.has_value());
    CHECK(*two.ambient_channel == 7);       // [station] ambient = tc1 channel 7: the same module
    CHECK(two.ambient_thermo == nullptr);   // read with the cell's thermocouple
    CHECK(two.load_lane == nullptr);        // no lanes: inline unless the caller sets them
    CHECK(two.thermo_share == nullptr);

    const station::ChannelIo five = station::channel_io(cfg, 5, made);
    CHECK(five.load == made.loads.at("load2").get());
    CHECK(five.load_channel == 1);
    CHECK(five.thermo_channel == 4);

    // The station's ambient on another module: that module's reader.
    station::InstrumentConfig other = *cfg.find_instrument("tc1");
    other.name = "tc9";
    cfg.instruments.push_back(other);
    cfg.ambient = station::ThermoRef{"tc9", 3};
    const station::StationInstruments made2 = station::make_instruments(cfg);
    const station::ChannelIo apart = station::channel_io(cfg, 1, made2);
    REQUIRE(apart.ambient_channel.has_value());
    CHECK(*apart.ambient_channel == 3);
    CHECK(apart.ambient_thermo == made2.thermos.at("tc9").get());
    CHECK(apart.thermo == made2.thermos.at("tc1").get());

    // No ambient anywhere: none (the position cannot measure P_x).
    cfg.ambient.reset();
    CHECK_FALSE(station::channel_io(cfg, 1, made2).ambient_channel.has_value());
}

TEST_CASE("instrument factory: channel_io names the station file for a position or an instrument that is not there") {
    const station::StationConfig cfg = example();
    const station::StationInstruments made = station::make_instruments(cfg);
    const std::string file = cfg.file.string();

    std::string why = usage_error([&] { (void)station::channel_io(cfg, 99, made); });
    INFO(why);
    CHECK(why.find(file) != std::string::npos);
    CHECK(why.find("no fixture position 99") != std::string::npos);

    station::StationInstruments partial;  // the thermocouple readers only
    for (const auto& [name, t] : made.thermos) partial.thermos[name] = nullptr;
    why = usage_error([&] { (void)station::channel_io(cfg, 3, partial); });
    INFO(why);
    CHECK(why.find("position 3: instrument 'load3' was not made") != std::string::npos);
}
