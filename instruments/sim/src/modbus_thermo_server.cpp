#include "eol/sim/modbus_thermo_server.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "eol/instruments/errors.hpp"

namespace eol::sim {

using instruments::RegTable;
using instruments::StatusRule;
using instruments::TcStatus;

namespace {

instruments::Address tcp_address(std::string host, std::uint16_t port) {
    instruments::Address a;
    a.kind = instruments::Address::Kind::tcp;
    a.host = std::move(host);
    a.port = port;
    return a;
}

struct Extent {
    int coils = 0, discrete = 0, holding = 0, input = 0;
    void need(RegTable t, int end) {
        int* v = t == RegTable::coils             ? &coils
                 : t == RegTable::discrete_inputs ? &discrete
                 : t == RegTable::holding         ? &holding
                                                  : &input;
        *v = std::max(*v, end);
    }
};

}  // namespace

ModbusThermoServer::ModbusThermoServer(std::shared_ptr<Fixture> fixture,
                                       instruments::RegisterMap map, std::string host,
                                       std::uint16_t port, std::vector<TcChannel> channels,
                                       ModbusServerOptions opt)
    : ModbusThermoServer(std::move(fixture), std::move(map), tcp_address(std::move(host), port),
                         std::move(channels), opt) {}

ModbusThermoServer::ModbusThermoServer(std::shared_ptr<Fixture> fixture,
                                       instruments::RegisterMap map,
                                       const instruments::Address& listen,
                                       std::vector<TcChannel> channels, ModbusServerOptions opt)
    : ModbusServer(map.model + " (simulated)", listen, opt), fixture_(std::move(fixture)),
      map_(std::move(map)), channels_(std::move(channels)) {
    if (map_.kind != instruments::RegisterMap::Kind::thermocouple)
        throw instruments::DefinitionError(map_.source + ": not a thermocouple map");
    const auto& m = map_.thermo;
    for (std::size_t k = 0; k < channels_.size(); ++k)
        if (channels_[k].kind == TcChannel::Kind::cell && channels_[k].position >= fixture_->size())
            throw std::out_of_range(fmt::format("thermocouple channel {} maps to fixture position "
                                                "{}, the fixture has {}",
                                                k, channels_[k].position, fixture_->size()));
    Extent e;
    e.need(m.values.table, m.values.start + m.channels * m.values.words_per_channel);
    if (m.type_block) e.need(m.type_block->table, m.type_block->start + m.channels);
    for (const auto& r : m.status) {
        if (r.layout == StatusRule::Layout::word)
            e.need(r.block.table, r.block.start + m.channels * r.block.words_per_channel);
        else if (instruments::is_bit_table(r.block.table))
            e.need(r.block.table, r.block.start + m.channels);
        else
            e.need(r.block.table, r.block.start + (m.channels + 15) / 16);
    }
    allocate(e.coils, e.discrete, e.holding, e.input);
    const int initial = m.default_type_code >= 0 ? m.default_type_code
                        : m.types.empty()        ? -1
                                                 : m.types.front().code;
    type_codes_.assign(static_cast<std::size_t>(m.channels), initial);
}

ModbusThermoServer::~ModbusThermoServer() { stop(); }

void ModbusThermoServer::set_type_code(int channel, int code) {
    if (!map_.thermo.type(code))
        throw std::invalid_argument(fmt::format("type code {} is not in {}", code, map_.source));
    std::lock_guard lk(image_mutex());
    type_codes_.at(static_cast<std::size_t>(channel)) = code;
}

void ModbusThermoServer::set_stale(std::set<int> channels) {
    std::lock_guard lk(image_mutex());
    stale_ = std::move(channels);
}

double ModbusThermoServer::temperature(int channel) {
    const TcChannel& c = channels_[static_cast<std::size_t>(channel)];
    return c.kind == TcChannel::Kind::ambient ? fixture_->measure_ambient_c()
                                              : fixture_->measure_temp_c(c.position);
}

void ModbusThermoServer::refresh(modbus_mapping_t& mm) {
    const auto& m = map_.thermo;
    const auto burnout = faults().get().burnout_channels;
    auto reg = [&](RegTable t, int a) -> std::uint16_t& {
        return t == RegTable::holding ? mm.tab_registers[a] : mm.tab_input_registers[a];
    };
    auto bit = [&](RegTable t, int a) -> std::uint8_t& {
        return t == RegTable::coils ? mm.tab_bits[a] : mm.tab_input_bits[a];
    };
    auto flag = [&](const StatusRule& r, int ch, bool on) {
        if (r.layout == StatusRule::Layout::word) {
            std::uint16_t& w =
                reg(r.block.table, r.block.start + ch * r.block.words_per_channel + r.word_offset);
            w = static_cast<std::uint16_t>((w & ~r.mask) | (on ? r.value : 0));
        } else if (instruments::is_bit_table(r.block.table)) {
            bit(r.block.table, r.block.start + ch) = on ? 1 : 0;
        } else {
            std::uint16_t& w = reg(r.block.table, r.block.start + ch / 16);
            const auto b = static_cast<std::uint16_t>(1u << static_cast<unsigned>(ch % 16));
            w = static_cast<std::uint16_t>(on ? (w | b) : (w & ~b));
        }
    };

    for (int ch = 0; ch < m.channels; ++ch) {
        const auto chz = static_cast<std::size_t>(ch);
        const int code = type_codes_[chz];
        if (m.type_block) reg(m.type_block->table, m.type_block->start + ch) =
            static_cast<std::uint16_t>(code);

        const bool stale = stale_.count(ch) > 0;
        bool has_stale_rule = false;
        for (const auto& r : m.status) has_stale_rule = has_stale_rule || r.status == TcStatus::stale;
        if (stale && !has_stale_rule) continue;  // the value simply freezes

        TcStatus status = TcStatus::ok;
        double t = 0;
        const bool connected =
            chz < channels_.size() && channels_[chz].kind != TcChannel::Kind::unconnected;
        if (stale) {
            status = TcStatus::stale;
        } else if (!connected || burnout.count(ch)) {
            status = TcStatus::open;
        } else {
            t = temperature(ch);
            double lo = -1e300, hi = 1e300;
            const instruments::TcType* ty = m.type(code);
            if (ty && (m.scaling == instruments::Scaling::type_range ||
                       m.scaling == instruments::Scaling::counts_range)) {
                lo = ty->min_c;
                hi = ty->max_c;
            } else {
                lo = m.valid_min_c.value_or(lo);
                hi = m.valid_max_c.value_or(hi);
            }
            if (t > hi) status = TcStatus::over_range;
            if (t < lo) status = TcStatus::under_range;
        }

        // Value words (a stale channel keeps its last value).
        if (status != TcStatus::stale) {
            std::vector<std::uint16_t> w;
            if (status == TcStatus::ok) {
                w = instruments::encode_channel(m, code, t);
            } else {
                w = instruments::sentinel_words(m, status);
                if (w.empty() && status == TcStatus::open)  // upscale burn-out
                    w = instruments::sentinel_words(m, TcStatus::over_range);
                if (w.empty())
                    w = instruments::encode_channel(m, code, status == TcStatus::open ? 1e6 : t);
            }
            const int base = m.values.start + ch * m.values.words_per_channel;
            for (std::size_t k = 0; k < w.size(); ++k)
                reg(m.values.table, base + static_cast<int>(k)) = w[k];
        }
        // Status: clear every rule, then set the one that applies.
        for (const auto& r : m.status) flag(r, ch, false);
        for (const auto& r : m.status)
            if (r.status == status) flag(r, ch, true);
    }
}

void ModbusThermoServer::apply_writes(modbus_mapping_t& mm, int function, int address,
                                      int count) {
    const auto& m = map_.thermo;
    if (function == MODBUS_FC_WRITE_SINGLE_COIL || function == MODBUS_FC_WRITE_MULTIPLE_COILS) return;
    if (!m.type_block || m.type_block->table != RegTable::holding) return;
    for (int a = address; a < address + count; ++a) {
        const int ch = a - m.type_block->start;
        if (ch >= 0 && ch < m.channels) type_codes_[static_cast<std::size_t>(ch)] = mm.tab_registers[a];
    }
}

}  // namespace eol::sim
