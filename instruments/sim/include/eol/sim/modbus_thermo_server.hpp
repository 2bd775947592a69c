// eol/sim/modbus_thermo_server.hpp — a simulated Modbus thermocouple module
// serving ANY thermocouple register map (config/maps/*.toml, kind =
// "thermocouple"): channel values encoded as the map says (type-range
// counts, fixed point, float32 …), the per-channel type-code registers, the
// status registers / bits and sentinel raw values.
//
// Channel k reads the fixture position `channels[k]` maps it to
// (Fixture::measure_temp_c), the fixture's ambient sensor, or nothing
// (unconnected: reads open circuit, like a module input with no thermocouple).
// Channels beyond `channels.size()` are unconnected. Type codes start as the
// map's default type (or the first type it knows) and can be rewritten by
// clients (FC06/FC16 on the type registers), which changes the scaling.
//
// Faults: faults().burnout_channels read open circuit (the map's status rule
// and/or open sentinel); temperatures beyond the channel type's range read
// over / under range; set_stale() marks channels "not refreshed" where the
// map can say so (else their values simply freeze). Everything else as
// ModbusServer.
#pragma once

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "eol/instruments/register_map.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/sim/modbus_server.hpp"

namespace eol::sim {

struct TcChannel {
    enum class Kind { unconnected, cell, ambient } kind = Kind::unconnected;
    std::size_t position = 0;  // kind == cell
    static TcChannel cell(std::size_t pos) { return {Kind::cell, pos}; }
    static TcChannel ambient() { return {Kind::ambient, 0}; }
    static TcChannel unconnected() { return {}; }
};

class ModbusThermoServer : public ModbusServer {
public:
    /// TCP on host:port (0 = ephemeral). Throws DefinitionError when `map` is
    /// not a thermocouple map.
    ModbusThermoServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                       std::string host, std::uint16_t port, std::vector<TcChannel> channels,
                       ModbusServerOptions opt = {});
    /// TCP or RTU (rtu:///dev/pts/N?baud=…&unit=…) as `listen` says.
    ModbusThermoServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                       const instruments::Address& listen, std::vector<TcChannel> channels,
                       ModbusServerOptions opt = {});
    ~ModbusThermoServer() override;

    const instruments::RegisterMap& map() const { return map_; }
    /// Sets the type code of a channel as a client would (must be a type the map knows).
    void set_type_code(int channel, int code);
    /// Channels whose value stops being refreshed (see above).
    void set_stale(std::set<int> channels);

protected:
    void refresh(modbus_mapping_t& m) override;
    void apply_writes(modbus_mapping_t& m, int function, int address, int count) override;

private:
    double temperature(int channel);

    std::shared_ptr<Fixture> fixture_;
    instruments::RegisterMap map_;
    std::vector<TcChannel> channels_;
    std::vector<int> type_codes_;
    std::set<int> stale_;
};

}  // namespace eol::sim
