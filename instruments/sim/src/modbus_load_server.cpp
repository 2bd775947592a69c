#include "eol/sim/modbus_load_server.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "eol/instruments/errors.hpp"

namespace eol::sim {

using instruments::RegTable;

namespace {

instruments::Address tcp_address(std::string host, std::uint16_t port) {
    instruments::Address a;
    a.kind = instruments::Address::Kind::tcp;
    a.host = std::move(host);
    a.port = port;
    return a;
}

constexpr std::uint16_t kModelCode = 9712;
constexpr std::uint16_t kFirmware = 100;

}  // namespace

ModbusLoadServer::ModbusLoadServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                                   std::string host, std::uint16_t port, std::size_t position,
                                   ModbusLoadLimits limits, ModbusServerOptions opt)
    : ModbusLoadServer(std::move(fixture), std::move(map), tcp_address(std::move(host), port),
                       position, limits, opt) {}

ModbusLoadServer::ModbusLoadServer(std::shared_ptr<Fixture> fixture, instruments::RegisterMap map,
                                   const instruments::Address& listen, std::size_t position,
                                   ModbusLoadLimits limits, ModbusServerOptions opt)
    : ModbusServer(map.model + " (simulated)", listen, opt), fixture_(std::move(fixture)),
      map_(std::move(map)), position_(position), limits_(limits) {
    if (map_.kind != instruments::RegisterMap::Kind::load)
        throw instruments::DefinitionError(map_.source + ": not a load map");
    if (position_ >= fixture_->size())
        throw std::out_of_range(fmt::format("load position {} does not exist ({} positions)",
                                            position_, fixture_->size()));
    const auto& m = map_.load;
    int coils = m.input_state_coil + 1;
    for (const auto& c : {m.remote_coil, m.over_voltage_coil, m.over_current_coil,
                          m.over_power_coil, m.over_temperature_coil, m.reverse_voltage_coil})
        if (c) coils = std::max(coils, *c + 1);
    int holding = std::max({m.command_register + 1, m.set_current + 2, m.set_voltage + 2,
                            m.set_power + 2, m.set_resistance + 2});
    int input = 0;
    int& readings = m.readings_table == RegTable::holding ? holding : input;
    readings = std::max({readings, m.read_voltage + 2, m.read_current + 2,
                         m.read_power.value_or(0) + 2});
    if (m.model_register) holding = std::max(holding, *m.model_register + 1);
    if (m.firmware_register) holding = std::max(holding, *m.firmware_register + 1);
    allocate(coils, 0, holding, input);
}

ModbusLoadServer::~ModbusLoadServer() { stop(); }

void ModbusLoadServer::set_protection(const instruments::Protection& p) {
    std::lock_guard lk(image_mutex());
    trips_ = p;
    if (p.any()) set_input(false);
}

void ModbusLoadServer::set_input(bool on) {
    LoadSetting s = fixture_->load(position_);
    s.input_on = on;
    fixture_->set_load(position_, s);
}

void ModbusLoadServer::check_limits() {
    const LoadSetting s = fixture_->load(position_);
    if (!s.input_on) return;
    if (s.mode == LoadMode::cc && s.level > limits_.max_current_a) trips_.over_current = true;
    if (s.mode == LoadMode::cp && s.level > limits_.max_power_w) trips_.over_power = true;
    if (trips_.any()) set_input(false);
}

void ModbusLoadServer::command(std::uint16_t code, const modbus_mapping_t& mm) {
    const auto& m = map_.load;
    auto setpoint = [&](int a) {
        return static_cast<double>(instruments::words_to_float(
            mm.tab_registers[a], mm.tab_registers[a + 1], m.word_order));
    };
    LoadSetting s = fixture_->load(position_);
    if (code == m.cmd_input_on) {
        if (trips_.any()) return;  // latched protection: the input stays off
        s.input_on = true;
    } else if (code == m.cmd_input_off) {
        s.input_on = false;
        trips_ = {};
    } else if (code == m.cmd_cc) {
        s.mode = LoadMode::cc;
        s.level = setpoint(m.set_current);
    } else if (code == m.cmd_cv) {
        s.mode = LoadMode::cv;
        s.level = setpoint(m.set_voltage);
    } else if (code == m.cmd_cr) {
        s.mode = LoadMode::cr;
        s.level = setpoint(m.set_resistance);
    } else if (code == m.cmd_cp) {
        s.mode = LoadMode::cp;
        s.level = setpoint(m.set_power);
    } else {
        return;  // other M97 commands (battery test, dynamic, …) are not simulated
    }
    if (!std::isfinite(s.level) || s.level < 0) s.level = 0;
    fixture_->set_load(position_, s);
    check_limits();
}

void ModbusLoadServer::refresh(modbus_mapping_t& mm) {
    const auto& m = map_.load;
    const double v = fixture_->measure_voltage_v(position_);
    double i = fixture_->measure_current_a(position_);
    if (m.current_reported_negative) i = -i;
    if (fixture_->load(position_).input_on && std::abs(v * i) > limits_.max_power_w) {
        trips_.over_power = true;
        set_input(false);
    }
    std::uint16_t* reg =
        m.readings_table == RegTable::holding ? mm.tab_registers : mm.tab_input_registers;
    auto put = [&](int a, double x) {
        instruments::float_to_words(static_cast<float>(x), m.word_order, reg[a], reg[a + 1]);
    };
    put(m.read_voltage, v);
    put(m.read_current, i);
    if (m.read_power) put(*m.read_power, v * std::abs(i));
    if (m.model_register) mm.tab_registers[*m.model_register] = kModelCode;
    if (m.firmware_register) mm.tab_registers[*m.firmware_register] = kFirmware;
    mm.tab_bits[m.input_state_coil] = fixture_->load(position_).input_on ? 1 : 0;
    auto coil = [&](const std::optional<int>& c, bool on) {
        if (c) mm.tab_bits[*c] = on ? 1 : 0;
    };
    coil(m.over_voltage_coil, trips_.over_voltage);
    coil(m.over_current_coil, trips_.over_current);
    coil(m.over_power_coil, trips_.over_power);
    coil(m.over_temperature_coil, trips_.over_temperature);
    coil(m.reverse_voltage_coil, trips_.reverse_voltage);
}

void ModbusLoadServer::apply_writes(modbus_mapping_t& mm, int function, int address, int count) {
    const auto& m = map_.load;
    if (function == MODBUS_FC_WRITE_SINGLE_COIL || function == MODBUS_FC_WRITE_MULTIPLE_COILS) {
        if (m.input_state_coil >= address && m.input_state_coil < address + count) {
            const bool on = mm.tab_bits[m.input_state_coil] != 0;
            command(on ? m.cmd_input_on : m.cmd_input_off, mm);
        }
        return;
    }
    if (m.command_register >= address && m.command_register < address + count)
        command(mm.tab_registers[m.command_register], mm);
}

}  // namespace eol::sim
