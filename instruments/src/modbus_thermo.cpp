#include "eol/instruments/modbus_thermo.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <modbus/modbus.h>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_client.hpp"

namespace eol::instruments {
namespace {

struct Span {
    RegTable table;
    int start;
    int count;
    int end() const { return start + count; }
};

/// The requests that cover every block the map needs, merged where the map allows.
std::vector<Span> plan_reads(const ThermoMap& m) {
    std::vector<Span> need;
    const int n = m.channels;
    need.push_back({m.values.table, m.values.start, n * m.values.words_per_channel});
    if (m.type_block) need.push_back({m.type_block->table, m.type_block->start, n});
    for (const auto& r : m.status) {
        if (r.layout == StatusRule::Layout::word) {
            need.push_back({r.block.table, r.block.start + r.word_offset,
                            (n - 1) * r.block.words_per_channel + 1});
        } else if (is_bit_table(r.block.table)) {
            need.push_back({r.block.table, r.block.start, n});
        } else {
            need.push_back({r.block.table, r.block.start, (n + 15) / 16});
        }
    }
    std::sort(need.begin(), need.end(), [](const Span& a, const Span& b) {
        return a.table != b.table ? a.table < b.table : a.start < b.start;
    });
    std::vector<Span> out;
    for (const Span& s : need) {
        if (!out.empty()) {
            Span& cur = out.back();
            const int limit = is_bit_table(s.table) ? MODBUS_MAX_READ_BITS : MODBUS_MAX_READ_REGISTERS;
            if (cur.table == s.table && s.start <= cur.end() + m.merge_gap &&
                std::max(cur.end(), s.end()) - cur.start <= limit) {
                const int end = std::max(cur.end(), s.end());
                cur.count = end - cur.start;
                continue;
            }
        }
        out.push_back(s);
    }
    // The value block first: it is what a scan is for, and what errors name.
    std::stable_partition(out.begin(), out.end(), [&](const Span& s) {
        return s.table == m.values.table && m.values.start >= s.start && m.values.start < s.end();
    });
    return out;
}

class ModbusThermo final : public TemperatureReader {
public:
    ModbusThermo(std::string name, const Address& address, RegisterMap map, double timeout_s)
        : name_(std::move(name)), map_(std::move(map)),
          client_(name_, address, timeout_s), plan_(plan_reads(map_.thermo)) {
        if (map_.kind != RegisterMap::Kind::thermocouple)
            throw DefinitionError(map_.source + ": not a thermocouple map (device.kind = \"load\")");
    }

    const std::string& name() const override { return name_; }
    void connect() override { client_.connect(); }
    void close() override { client_.close(); }
    int channels() const override { return map_.thermo.channels; }

    Identity identify() override {
        const auto& v = map_.thermo.values;
        client_.read_registers(v.table, v.start, 1);  // fails when the module does not answer
        return {map_.manufacturer, map_.model, "", ""};
    }

    std::vector<TcReading> read_all() override {
        const ThermoMap& m = map_.thermo;
        data_.assign(plan_.size(), {});
        for (std::size_t i = 0; i < plan_.size(); ++i) {
            const Span& s = plan_[i];
            if (is_bit_table(s.table)) {
                const auto bits = client_.read_bits(s.table, s.start, s.count);
                data_[i].assign(bits.begin(), bits.end());
            } else {
                data_[i] = client_.read_registers(s.table, s.start, s.count);
            }
        }
        std::vector<TcReading> out(static_cast<std::size_t>(m.channels));
        for (int ch = 0; ch < m.channels; ++ch) {
            ChannelRaw raw;
            const int base = m.values.start + ch * m.values.words_per_channel;
            for (int k = 0; k < words_of(m.format); ++k)
                raw.words.push_back(word(m.values.table, base + k));
            raw.type_code = m.type_block ? word(m.type_block->table, m.type_block->start + ch)
                                         : m.default_type_code;
            raw.flagged = flagged(ch);
            try {
                out[static_cast<std::size_t>(ch)] = decode_channel(m, ch, raw);
            } catch (const DefinitionError& e) {
                const std::string where =
                    m.type_block ? fmt::format("{} {} (type code of channel {})",
                                               to_string(m.type_block->table),
                                               m.type_block->start + ch, ch)
                                 : fmt::format("channel {}", ch);
                throw DeviceError(name_, where, e.what());
            }
        }
        return out;
    }

private:
    std::uint16_t word(RegTable t, int address) const {
        for (std::size_t i = 0; i < plan_.size(); ++i) {
            const Span& s = plan_[i];
            if (s.table == t && address >= s.start && address < s.end())
                return data_[i][static_cast<std::size_t>(address - s.start)];
        }
        throw std::logic_error("register outside the read plan");  // plan_reads covers all
    }

    bool matches(const StatusRule& r, int ch) const {
        if (r.layout == StatusRule::Layout::word) {
            const std::uint16_t w =
                word(r.block.table, r.block.start + ch * r.block.words_per_channel + r.word_offset);
            return (w & r.mask) == r.value;
        }
        if (is_bit_table(r.block.table)) return word(r.block.table, r.block.start + ch) != 0;
        const unsigned bit = static_cast<unsigned>(ch % 16);
        return ((static_cast<unsigned>(word(r.block.table, r.block.start + ch / 16)) >> bit) & 1u) != 0;
    }

    std::optional<TcStatus> flagged(int ch) const {
        for (TcStatus s : {TcStatus::open, TcStatus::over_range, TcStatus::under_range,
                           TcStatus::stale}) {
            for (const auto& r : map_.thermo.status)
                if (r.status == s && matches(r, ch)) return s;
        }
        return std::nullopt;
    }

    std::string name_;
    RegisterMap map_;
    ModbusClient client_;
    std::vector<Span> plan_;
    std::vector<std::vector<std::uint16_t>> data_;
};

}  // namespace

std::unique_ptr<TemperatureReader> make_modbus_thermo(std::string name, const Address& address,
                                                      RegisterMap map, double timeout_s) {
    return std::make_unique<ModbusThermo>(std::move(name), address, std::move(map), timeout_s);
}

}  // namespace eol::instruments
