#include "eol/station/sim_station.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/register_map.hpp"
#include "eol/sim/modbus_load_server.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "eol/sim/scpi_load_server.hpp"
#include "eol/station/errors.hpp"
#include "eol/station/serial.hpp"

namespace eol::station {

namespace {

std::string key(const InstrumentConfig& cfg, const std::string& k) {
    return "instruments." + cfg.name + "." + k;
}

instruments::Address modbus_listen(const InstrumentConfig& cfg) {
    instruments::Address a = cfg.endpoint;
    if (cfg.unit != 1) a.unit = cfg.unit;
    return a;
}

}  // namespace

struct SimStation::Impl {
    struct Server {
        SimServerInfo info;
        std::unique_ptr<sim::ScpiLoadServer> scpi;
        std::unique_ptr<sim::ModbusServer> modbus;
        void start() {
            if (scpi) scpi->start();
            else modbus->start();
        }
        void stop() {
            if (scpi) scpi->stop();
            else if (modbus) modbus->stop();
        }
        sim::Faults& faults() { return scpi ? scpi->faults() : modbus->faults(); }
    };

    std::shared_ptr<sim::SimClock> clock;
    std::shared_ptr<sim::Fixture> fixture;
    std::vector<int> positions;  // configured positions (1-based)
    std::size_t slots = 0;       // fixture size (positions + empty slots)
    std::vector<std::string> serials;
    std::vector<sim::CellParams> params;
    std::size_t next_cell = 0;
    std::vector<Server> servers;

    void make_lot(const StationConfig& cfg) {
        const SerialScheme scheme = SerialScheme::load(cfg.serial_scheme);
        SerialSpec spec;
        spec.plant = "01";
        spec.line = "A";
        spec.lot = cfg.sim.lot;
        const auto date = Date::parse_iso(cfg.sim.production_date);
        if (!date) throw UsageError("sim.production_date: '" + cfg.sim.production_date + "' is not a date");
        spec.date = *date;
        spec.sequence = 1;
        try {
            serials = scheme.make_range(spec, static_cast<std::size_t>(std::max(1, cfg.sim.cells)));
        } catch (const std::invalid_argument& e) {
            throw UsageError(std::string("sim: cannot make the lot's serials: ") + e.what());
        }
        sim::PopulationSpec pop;
        pop.short_fraction = cfg.sim.short_fraction;
        pop.r0_shift_rel = cfg.sim.r0_shift_rel;
        pop.nominal.entropic_scale = cfg.sim.entropic_scale;
        std::mt19937_64 rng(cfg.sim.seed);
        for (std::size_t k = 0; k < serials.size(); ++k) params.push_back(sim::draw_cell(pop, rng));
    }

    std::vector<std::string> load_next() {
        std::vector<std::string> by_slot(slots);
        for (int p : positions) {
            const std::size_t k = next_cell++ % serials.size();
            fixture->load_cell(static_cast<std::size_t>(p - 1), serials[k], params[k]);
            by_slot[static_cast<std::size_t>(p - 1)] = serials[k];
        }
        return by_slot;
    }

    std::size_t extra_slot() { return slots++; }
};

SimStation::SimStation(const StationConfig& cfg, std::shared_ptr<sim::SimClock> clock) : impl_(std::make_unique<Impl>()) {
    auto& I = *impl_;
    int max_pos = 0;
    for (const auto& c : cfg.channels) {
        I.positions.push_back(c.position);
        max_pos = std::max(max_pos, c.position);
    }
    I.slots = static_cast<std::size_t>(max_pos);

    // Which fixture slot each instrument channel reaches; unmapped ones get an empty slot.
    struct Plan {
        const InstrumentConfig* cfg;
        std::vector<std::size_t> load_slots;   // channel k+1 → slot
        std::vector<sim::TcChannel> tc;        // channel k → what it reads
    };
    std::vector<Plan> plans;
    for (const auto& ic : cfg.instruments) {
        Plan plan{&ic, {}, {}};
        if (ic.is_load()) {
            for (int ch = 1; ch <= ic.channels; ++ch) {
                const auto it = std::find_if(cfg.channels.begin(), cfg.channels.end(), [&](const ChannelConfig& c) {
                    return c.load == ic.name && c.load_channel == ch;
                });
                plan.load_slots.push_back(it != cfg.channels.end()
                                              ? static_cast<std::size_t>(it->position - 1)
                                              : I.extra_slot());
            }
        } else {
            for (int ch = 0; ch < ic.channels; ++ch) {
                if (cfg.is_ambient_input(ic.name, ch)) {
                    plan.tc.push_back(sim::TcChannel::ambient());
                    continue;
                }
                const auto it = std::find_if(cfg.channels.begin(), cfg.channels.end(), [&](const ChannelConfig& c) {
                    return c.thermo == ic.name && c.thermo_channel == ch;
                });
                plan.tc.push_back(it != cfg.channels.end()
                                      ? sim::TcChannel::cell(static_cast<std::size_t>(it->position - 1))
                                      : sim::TcChannel::unconnected());
            }
        }
        plans.push_back(std::move(plan));
    }

    I.clock = clock ? std::move(clock) : std::make_shared<sim::SimClock>(cfg.sim.time_scale);
    I.fixture = std::make_shared<sim::Fixture>(std::max<std::size_t>(1, I.slots), I.clock,
                                               cfg.sim.ambient_c, cfg.sim.seed);
    I.make_lot(cfg);
    I.load_next();

    for (const auto& plan : plans) {
        const InstrumentConfig& ic = *plan.cfg;
        Impl::Server s;
        s.info.name = ic.name;
        s.info.definition = ic.definition;
        switch (ic.driver) {
        case InstrumentConfig::Driver::scpi_load: {
            if (ic.endpoint.kind != instruments::Address::Kind::tcp)
                throw UsageError(key(ic, "address") + ": '" + ic.address +
                                 "': the SCPI load simulator listens on tcp:// addresses only");
            instruments::Dialect d = instruments::load_dialect(ic.definition);
            if (ic.channels > d.channels)
                throw UsageError(key(ic, "channels") + ": " + std::to_string(ic.channels) +
                                 " channels, but dialect '" + d.name + "' (" + ic.definition.string() +
                                 ") addresses " + std::to_string(d.channels));
            sim::ScpiLoadServerOptions o;
            o.name = ic.name;
            o.host = ic.endpoint.host;
            o.port = ic.endpoint.port;
            o.positions = plan.load_slots;
            s.info.kind = "scpi-load";
            s.scpi = std::make_unique<sim::ScpiLoadServer>(std::move(d), I.fixture, o);
            break;
        }
        case InstrumentConfig::Driver::modbus_load: {
            instruments::RegisterMap map = instruments::load_register_map(ic.definition.string());
            if (map.kind != instruments::RegisterMap::Kind::load)
                throw UsageError(key(ic, "map") + ": " + ic.definition.string() + " is not a load register map");
            if (plan.load_slots.size() != 1)
                throw UsageError(key(ic, "channels") + ": the Modbus load simulator has 1 channel, got " +
                                 std::to_string(plan.load_slots.size()));
            sim::ModbusServerOptions o;
            o.unit = modbus_listen(ic).unit;
            s.info.kind = "modbus-load";
            s.modbus = std::make_unique<sim::ModbusLoadServer>(I.fixture, std::move(map), modbus_listen(ic),
                                                               plan.load_slots[0], sim::ModbusLoadLimits{}, o);
            break;
        }
        case InstrumentConfig::Driver::modbus_thermo: {
            instruments::RegisterMap map = instruments::load_register_map(ic.definition.string());
            if (map.kind != instruments::RegisterMap::Kind::thermocouple)
                throw UsageError(key(ic, "map") + ": " + ic.definition.string() +
                                 " is not a thermocouple register map");
            if (ic.channels > map.thermo.channels)
                throw UsageError(key(ic, "channels") + ": " + std::to_string(ic.channels) +
                                 " channels, but map " + ic.definition.string() + " has " +
                                 std::to_string(map.thermo.channels));
            sim::ModbusServerOptions o;
            o.unit = modbus_listen(ic).unit;
            s.info.kind = "modbus-thermo";
            s.modbus = std::make_unique<sim::ModbusThermoServer>(I.fixture, std::move(map), modbus_listen(ic),
                                                                 plan.tc, o);
            break;
        }
        }
        I.servers.push_back(std::move(s));
    }
}

SimStation::~SimStation() { stop(); }

void SimStation::start() {
    auto& I = *impl_;
    for (std::size_t k = 0; k < I.servers.size(); ++k) {
        try {
            I.servers[k].start();
        } catch (const std::exception& e) {
            for (std::size_t j = 0; j < k; ++j) I.servers[j].stop();
            throw std::runtime_error("sim: instrument '" + I.servers[k].info.name + "': " + e.what());
        }
    }
}

void SimStation::stop() {
    for (auto& s : impl_->servers) s.stop();
}

std::vector<SimServerInfo> SimStation::servers() const {
    std::vector<SimServerInfo> out;
    for (const auto& s : impl_->servers) {
        SimServerInfo i = s.info;
        if (s.scpi) i.address = s.scpi->host() + ":" + std::to_string(s.scpi->port());
        else if (s.modbus->port() != 0) i.address = s.modbus->host() + ":" + std::to_string(s.modbus->port());
        else i.address = s.modbus->address();
        out.push_back(std::move(i));
    }
    return out;
}

sim::Faults& SimStation::faults(const std::string& instrument) {
    for (auto& s : impl_->servers)
        if (s.info.name == instrument) return s.faults();
    throw std::out_of_range("sim: no simulated instrument named '" + instrument + "'");
}

std::shared_ptr<sim::Fixture> SimStation::fixture() const { return impl_->fixture; }
std::shared_ptr<sim::SimClock> SimStation::clock() const { return impl_->clock; }
const std::vector<std::string>& SimStation::lot_serials() const { return impl_->serials; }
const sim::CellParams& SimStation::lot_params(std::size_t index) const { return impl_->params.at(index); }
std::vector<std::string> SimStation::load_next_cells() { return impl_->load_next(); }

std::string SimStation::serial_at(int position) const {
    if (position < 1) return {};
    return impl_->fixture->serial(static_cast<std::size_t>(position - 1)).value_or("");
}

}  // namespace eol::station
