// eol/sim/modbus_load_server.hpp — a simulated Maynuo M97-style Modbus
// electronic load serving a load register map (config/maps/maynuo-m97.toml)
// and driving one fixture position's LoadSetting.
//
// Writes to the command register select the mode (CC/CV/CR/CP, level from the
// matching float32 setpoint register) and switch the input on/off; writing
// the input-state coil switches it too. Readings (V, I, P float32) come from
// Fixture::measure_*; the input-state coil mirrors the setting. Protection
// coils are read-only flags: the over-current flag trips (and the input goes
// off) when a CC setpoint above `max_current_a` is applied with the input on,
// the over-power flag likewise above `max_power_w`; set_protection() sets
// them from a test. The input-off command clears the trip flags.
//
// Everything else (lifecycle, faults, threading) as ModbusServer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "eol/instruments/register_map.hpp"
#include "eol/instruments/roles.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/modbus_server.hpp"

namespace eol::sim {

struct ModbusLoadLimits {
    double max_current_a = 30.0;
    double max_power_w = 150.0;
};

class ModbusLoadServer : public ModbusServer {
public:
    /// TCP on host:port (0 = ephemeral). Throws DefinitionError when `map` is
    /// not a load map.
    ModbusLoadServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                     std::string host, std::uint16_t port, std::size_t position,
                     ModbusLoadLimits limits = {}, ModbusServerOptions opt = {});
    /// TCP or RTU as `listen` says.
    ModbusLoadServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                     const instruments::Address& listen, std::size_t position,
                     ModbusLoadLimits limits = {}, ModbusServerOptions opt = {});
    ~ModbusLoadServer() override;

    const instruments::RegisterMap& map() const { return map_; }
    /// Sets protection flags (tests); a set flag switches the input off.
    void set_protection(const instruments::Protection& p);

protected:
    void refresh(modbus_mapping_t& m) override;
    void apply_writes(modbus_mapping_t& m, int function, int address, int count) override;

private:
    void command(std::uint16_t code, const modbus_mapping_t& m);
    void set_input(bool on);
    void check_limits();

    std::shared_ptr<Fixture> fixture_;
    instruments::RegisterMap map_;
    std::size_t position_;
    ModbusLoadLimits limits_;
    instruments::Protection trips_{};  // latched until the input-off command
};

}  // namespace eol::sim
