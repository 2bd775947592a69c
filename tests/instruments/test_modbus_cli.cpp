// `eolstation instruments thermo` (the real binary) against the simulated
// module over Modbus TCP: output, JSON, and exit codes for each failure.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "instruments/test_modbus_util.hpp"

using namespace eol;
using sim::TcChannel;

namespace {

struct CliRig : test::ThermoRig {
    CliRig()
        : test::ThermoRig(instruments::load_register_map(test::map_path("icpdas-et7018z.toml")),
                          test::make_fixture(2), {TcChannel::cell(0), TcChannel::ambient()}) {}
    std::string address() const { return "tcp://127.0.0.1:" + std::to_string(server->port()); }
};

std::string thermo(const std::string& args, int& status) {
    return test::run_command(std::string(EOL_CLI) + " instruments thermo " + args, status);
}

}  // namespace

TEST_CASE("modbus cli: thermo prints °C and status per channel") {
    CliRig rig;
    rig.server->faults().update([](sim::FaultSettings& s) { s.burnout_channels = {0}; });
    int status = -1;
    const std::string out =
        thermo("--map " + test::map_path("icpdas-et7018z.toml") + " --address " + rig.address(),
               status);
    CAPTURE(out);
    CHECK(status == 0);
    CHECK(out.find("ICP DAS ET-7018Z at " + rig.address() + " (unit 1)") == 0);
    CHECK(out.find("  0  open") != std::string::npos);
    CHECK(out.find("  1  ok") != std::string::npos);
    CHECK(out.find(" 25.0") != std::string::npos);  // the ambient channel
    CHECK(out.find("  9  open") != std::string::npos);
}

TEST_CASE("modbus cli: thermo --json") {
    CliRig rig;
    int status = -1;
    const std::string out = thermo("--map " + test::map_path("icpdas-et7018z.toml") +
                                       " --address " + rig.address() + " --json",
                                   status);
    CAPTURE(out);
    REQUIRE(status == 0);
    const auto j = nlohmann::json::parse(out);
    CHECK(j["manufacturer"] == "ICP DAS");
    REQUIRE(j["channels"].size() == 10);
    CHECK(j["channels"][0]["status"] == "ok");
    CHECK(std::abs(j["channels"][0]["temp_c"].get<double>() - rig.fixture->truth(0).temp_c) < 0.15);
    CHECK(j["channels"][2]["status"] == "open");
    CHECK(j["channels"][2]["temp_c"].is_null());
}

TEST_CASE("modbus cli: thermo exit codes — module silent 1, bad input 2") {
    CliRig rig;
    const std::string map = test::map_path("icpdas-et7018z.toml");
    int status = -1;

    rig.server->faults().update([](sim::FaultSettings& s) { s.no_reply = true; });
    std::string out =
        thermo("--map " + map + " --address " + rig.address() + " --timeout 0.2 2>&1", status);
    CHECK(status == 1);
    CHECK(out.find("error: ET-7018Z: FC04 input register 0 ×10: no complete reply within 0.200 s") !=
          std::string::npos);
    rig.server->faults().update([](sim::FaultSettings& s) { s.no_reply = false; });

    // A broken map: file:line and key.
    const auto bad = std::filesystem::temp_directory_path() / "eol-cli-bad-map.toml";
    {
        std::ofstream f(bad);
        f << "[device]\nkind = \"thermocouple\"\nmanufacturer = \"X\"\nmodel = \"Y\"\nchannels = 2\n"
             "[values]\ntable = \"input\"\nstart = 0\nformat = \"int16\"\nscaling = \"fixed\"\n";
    }
    out = thermo("--map " + bad.string() + " --address " + rig.address() + " 2>&1", status);
    CHECK(status == 2);
    CHECK(out.find(bad.string() + ":10: values.scaling: 'fixed' is not one of") != std::string::npos);
    std::filesystem::remove(bad);

    // A load map is not a thermocouple map.
    out = thermo("--map " + test::map_path("maynuo-m97.toml") + " --address " + rig.address() +
                     " 2>&1",
                 status);
    CHECK(status == 2);
    CHECK(out.find("not a thermocouple map") != std::string::npos);

    // A malformed address names the character position.
    out = thermo("--map " + map + " --address tcp://127.0.0.1:x 2>&1", status);
    CHECK(status == 2);
    CHECK(out.find("at character 17") != std::string::npos);

    // Missing required option: usage error.
    out = thermo("--map " + map + " 2>&1", status);
    CHECK(status == 2);
    CHECK(out.find("--address") != std::string::npos);
}
