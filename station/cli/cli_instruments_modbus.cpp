// eolstation instruments thermo --map FILE --address ADDR [--unit N] [--timeout S] [--json]
//
// Commissioning: reads every channel of a Modbus thermocouple module once and
// prints °C and the status per channel. Exit 0 when the module answered
// (whatever the channels say), 1 when it did not (the error names the
// instrument, the request and what came back), 2 for a bad map or address,
// or a --timeout outside (0, 60] s (NaN and ∞ included).
#include <cmath>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_thermo.hpp"
#include "eol/instruments/transport.hpp"

namespace eol::cli {
namespace {

struct ThermoOptions {
    std::string map;
    std::string address;
    int unit = -1;
    double timeout_s = 1.0;
    bool json = false;
};

/// Longest --timeout, as for timeout_s in a station file.
constexpr double kMaxCliTimeout_s = 60.0;

void run_thermo(const ThermoOptions& o) {
    try {
        instruments::check_duration_s(o.timeout_s, "--timeout", kMaxCliTimeout_s);
    } catch (const std::invalid_argument& e) {
        throw station::UsageError(e.what());
    }
    instruments::RegisterMap map;
    instruments::Address address;
    try {
        map = instruments::load_register_map(o.map);
        address = instruments::parse_address(o.address);
    } catch (const std::exception& e) {
        throw station::UsageError(e.what());
    }
    if (map.kind != instruments::RegisterMap::Kind::thermocouple)
        throw station::UsageError(o.map + ": not a thermocouple map (device.kind = \"load\")");
    if (address.kind == instruments::Address::Kind::serial)
        throw station::UsageError("--address " + o.address +
                                  ": Modbus needs tcp://HOST:PORT or rtu:///dev/ttyX?…");
    if (o.unit >= 0) address.unit = o.unit;

    const std::string name = map.model;
    std::vector<instruments::TcReading> readings;
    try {
        auto reader = instruments::make_modbus_thermo(name, address, map, o.timeout_s);
        reader->connect();
        readings = reader->read_all();
        reader->close();
    } catch (const instruments::InstrumentError& e) {
        if (o.json) {
            nlohmann::json j{{"map", o.map},
                             {"address", address.to_string()},
                             {"unit", address.unit},
                             {"error", {{"instrument", e.instrument()},
                                        {"request", e.command()},
                                        {"detail", e.detail()}}}};
            std::cout << j.dump(2) << "\n";
        }
        std::cerr << "error: " << e.what() << "\n";
        set_exit(station::ExitCode::domain_no);
        return;
    }

    if (o.json) {
        nlohmann::json channels = nlohmann::json::array();
        for (std::size_t ch = 0; ch < readings.size(); ++ch) {
            const auto& r = readings[ch];
            channels.push_back({{"channel", ch},
                                {"status", instruments::to_string(r.status)},
                                {"temp_c", r.status == instruments::TcStatus::ok
                                               ? nlohmann::json(r.temp_c)
                                               : nlohmann::json(nullptr)}});
        }
        nlohmann::json j{{"manufacturer", map.manufacturer},
                         {"model", map.model},
                         {"map", o.map},
                         {"address", address.to_string()},
                         {"unit", address.unit},
                         {"channels", channels}};
        std::cout << j.dump(2) << "\n";
        return;
    }
    std::cout << fmt::format("{} {} at {} (unit {})\n", map.manufacturer, map.model,
                             address.to_string(), address.unit);
    std::cout << fmt::format("{:>3}  {:<11}  {:>9}\n", "ch", "status", "°C");
    for (std::size_t ch = 0; ch < readings.size(); ++ch) {
        const auto& r = readings[ch];
        const std::string t = r.status == instruments::TcStatus::ok
                                  ? fmt::format("{:.2f}", r.temp_c)
                                  : std::string("-");
        std::cout << fmt::format("{:>3}  {:<11}  {:>9}\n", ch, instruments::to_string(r.status), t);
    }
}

}  // namespace

void add_instruments_modbus_commands(CLI::App& instruments) {
    auto o = std::make_shared<ThermoOptions>();
    CLI::App* cmd = instruments.add_subcommand(
        "thermo",
        "Read every channel of a Modbus thermocouple module once: °C and status per channel "
        "(ok, open, over_range, under_range, stale). Exit 0 when the module answered, 1 when "
        "it did not, 2 for a bad map or address.");
    cmd->add_option("--map", o->map, "register map of the module (config/maps/*.toml)")
        ->required();
    cmd->add_option("--address", o->address,
                    "tcp://HOST:PORT or rtu:///dev/ttyX?baud=9600&parity=N&unit=1")
        ->required();
    cmd->add_option("--unit", o->unit, "Modbus unit id (overrides the address's unit)")
        ->check(CLI::Range(0, 247));
    cmd->add_option("--timeout", o->timeout_s, "response timeout in seconds, in (0, 60] (default 1)");
    cmd->add_flag("--json", o->json, "print the readings as JSON");
    cmd->callback([o] { run_thermo(*o); });
}

}  // namespace eol::cli
