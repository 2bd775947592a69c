#include "eol/station/instrument_factory.hpp"

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/modbus_load.hpp"
#include "eol/instruments/modbus_thermo.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/instruments/scpi_load.hpp"
#include "eol/station/errors.hpp"

namespace eol::station {

namespace {

std::string key(const InstrumentConfig& cfg, const std::string& k) {
    return "instruments." + cfg.name + "." + k;
}

// The Modbus unit: the `unit` key when set to something else than its
// default 1, else the address's own `?unit=N` (default 1 as well).
instruments::Address modbus_address(const InstrumentConfig& cfg) {
    instruments::Address a = cfg.endpoint;
    if (cfg.unit != 1) a.unit = cfg.unit;
    return a;
}

}  // namespace

instruments::TransportOptions transport_options(const InstrumentConfig& cfg, boost::asio::io_context* io) {
    instruments::TransportOptions t;
    t.io_context = io;
    t.io_timeout_s = cfg.timeout_s;
    t.connect_timeout_s = cfg.connect_timeout_s;
    t.connect_attempts = 3;
    t.backoff_initial_s = 0.05;
    t.backoff_max_s = 1.0;
    return t;
}

std::unique_ptr<instruments::ElectronicLoad> make_load(const InstrumentConfig& cfg, boost::asio::io_context* io) {
    switch (cfg.driver) {
    case InstrumentConfig::Driver::scpi_load: {
        instruments::Dialect d = instruments::load_dialect(cfg.definition);
        if (cfg.channels > d.channels)
            throw UsageError(key(cfg, "channels") + ": " + std::to_string(cfg.channels) +
                             " channels, but dialect '" + d.name + "' (" + cfg.definition.string() +
                             ") addresses " + std::to_string(d.channels));
        return std::make_unique<instruments::ScpiLoad>(
            cfg.name, std::move(d), instruments::make_line_transport(cfg.endpoint, transport_options(cfg, io)),
            cfg.timeout_s);
    }
    case InstrumentConfig::Driver::modbus_load: {
        instruments::RegisterMap map = instruments::load_register_map(cfg.definition.string());
        if (map.kind != instruments::RegisterMap::Kind::load)
            throw UsageError(key(cfg, "map") + ": " + cfg.definition.string() +
                             " is not a load register map");
        return instruments::make_modbus_load(cfg.name, modbus_address(cfg), std::move(map),
                                             cfg.timeout_s);
    }
    case InstrumentConfig::Driver::modbus_thermo: break;
    }
    throw UsageError(key(cfg, "driver") + ": '" + std::string(to_string(cfg.driver)) +
                     "' is not a load driver");
}

std::unique_ptr<instruments::TemperatureReader> make_thermo(const InstrumentConfig& cfg) {
    if (cfg.driver != InstrumentConfig::Driver::modbus_thermo)
        throw UsageError(key(cfg, "driver") + ": '" + std::string(to_string(cfg.driver)) +
                         "' is not a thermocouple reader driver");
    instruments::RegisterMap map = instruments::load_register_map(cfg.definition.string());
    if (map.kind != instruments::RegisterMap::Kind::thermocouple)
        throw UsageError(key(cfg, "map") + ": " + cfg.definition.string() +
                         " is not a thermocouple register map");
    if (cfg.channels > map.thermo.channels)
        throw UsageError(key(cfg, "channels") + ": " + std::to_string(cfg.channels) +
                         " channels, but map " + cfg.definition.string() + " has " +
                         std::to_string(map.thermo.channels));
    return instruments::make_modbus_thermo(cfg.name, modbus_address(cfg), std::move(map),
                                           cfg.timeout_s);
}

StationInstruments make_instruments(const StationConfig& cfg) {
    StationInstruments out;
    for (const auto& i : cfg.instruments) {
        if (i.is_thermo()) out.thermos[i.name] = make_thermo(i);
        else out.loads[i.name] = make_load(i);
    }
    return out;
}

ChannelIo channel_io(const StationConfig& cfg, int position, const StationInstruments& instruments) {
    const ChannelConfig* ch = cfg.find_position(position);
    if (!ch) throw UsageError(cfg.file.string() + ": no fixture position " + std::to_string(position));
    auto find = [&](const auto& made, const std::string& name) {
        const auto it = made.find(name);
        if (it == made.end())
            throw UsageError(cfg.file.string() + ": position " + std::to_string(position) + ": instrument '" + name +
                             "' was not made");
        return it->second.get();
    };
    ChannelIo io;
    io.load = find(instruments.loads, ch->load);
    io.load_channel = ch->load_channel;
    io.thermo = find(instruments.thermos, ch->thermo);
    io.thermo_channel = ch->thermo_channel;
    if (const std::optional<ThermoRef> amb = cfg.ambient_for(*ch)) {
        io.ambient_channel = amb->channel;
        if (amb->thermo != ch->thermo) io.ambient_thermo = find(instruments.thermos, amb->thermo);
    }
    return io;
}

}  // namespace eol::station
