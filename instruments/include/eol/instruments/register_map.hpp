// eol/instruments/register_map.hpp — Modbus register maps (config/maps/*.toml):
// where a thermocouple module keeps its channel values, how they are scaled
// and how it reports open / out-of-range channels; where a Modbus electronic
// load keeps its coils, command register, setpoints and readings. Vendors
// differ only in these files; the drivers (modbus_thermo.hpp,
// modbus_load.hpp) and the simulators (eol/sim/modbus_*_server.hpp) are
// table driven.
//
// File format: see the commented maps shipped in config/maps/. Top level:
//   [device]  kind = "thermocouple" | "load", manufacturer, model, unit, …
//   [values] / [types] / [[status]] / [[sentinels]]     (thermocouple)
//   [coils] / [command] / [setpoints] / [readings] …    (load)
//
// Errors: load_register_map() / parse_register_map() throw DefinitionError
// naming `file:line` and the key path (`values.scaling`) of what is wrong —
// unknown keys are errors too, so a typo does not silently fall back to a
// default.
//
// The codec at the end (decode_channel / encode_channel) turns a channel's
// raw words into °C + status and back; the driver decodes, the simulator
// encodes. (The peer test against pymodbus checks the decoder against
// register images computed by hand from the vendors' formulas.)
#pragma once

#include <cstdint>
#include <optional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "eol/instruments/roles.hpp"

namespace eol::instruments {

/// The four Modbus data tables. Reads: FC01, FC02, FC03, FC04.
enum class RegTable { coils, discrete_inputs, holding, input };
const char* to_string(RegTable t);  // "coil", "discrete input", "holding register", "input register"
int read_function_code(RegTable t);
inline bool is_bit_table(RegTable t) { return t == RegTable::coils || t == RegTable::discrete_inputs; }

/// For 32-bit values: big = high word at the lower address (Modbus "ABCD"),
/// little = low word first ("CDAB"). Bytes inside a word are always big endian.
enum class WordOrder { big, little };

enum class ValueFormat { int16, uint16, int32, uint32, float32 };
int words_of(ValueFormat f);

enum class Scaling {
    /// int16 two's complement spanning ±full scale of the channel's type:
    /// T = raw / 32767 · max(|min|, |max|)  (ICP DAS "2's complement" data format).
    type_range,
    /// uint16 counts over the channel's type range:
    /// T = raw / 65535 · (max − min) + min  (Advantech ADAM-6000).
    counts_range,
    /// T = raw · scale + offset_c  (e.g. Moxa 0.1 °C: scale = 0.1).
    fixed_point,
    /// The value is °C already (float32), T = value · scale + offset_c.
    float32,
};

/// A thermocouple type a module knows: its code in the type register and the range.
struct TcType {
    int code = 0;
    std::string name;  // "K"
    double min_c = 0, max_c = 0;
};

/// A run of registers (or bits) with one item per channel.
struct ChannelBlock {
    RegTable table = RegTable::input;
    int start = 0;               // protocol (0-based) address of channel 0
    int words_per_channel = 1;   // for bit tables: bits per channel (always 1)
};

/// One way a module reports a channel's condition. `word` layout: the
/// channel's status word (at start + channel·words_per_channel + word_offset)
/// matches when (word & mask) == value (bit flags: mask = value = the bit;
/// enumerations: mask = 0xFFFF). `bit` layout: one
/// bit per channel (coils / discrete inputs, or register words packed
/// 16 channels per word, LSB = lowest channel) — the channel matches when
/// its bit is 1.
struct StatusRule {
    enum class Layout { word, bit } layout = Layout::word;
    TcStatus status = TcStatus::open;
    ChannelBlock block;
    int word_offset = 0;
    std::uint16_t mask = 0xFFFF;
    std::uint16_t value = 0;
    int line = 0;  // where it was defined (for messages)
};

/// A raw value (16- or 32-bit, as read, unsigned) that means a status instead of a temperature.
struct Sentinel {
    std::uint32_t raw = 0;
    TcStatus status = TcStatus::open;
};

struct ThermoMap {
    int channels = 0;
    ChannelBlock values;
    ValueFormat format = ValueFormat::int16;
    WordOrder word_order = WordOrder::big;
    Scaling scaling = Scaling::fixed_point;
    double scale = 1.0;
    double offset_c = 0.0;
    /// Decoded temperatures outside [valid_min_c, valid_max_c] are reported
    /// over_range / under_range. For type-based scalings the type's range
    /// applies (widened by `range_tolerance_c`).
    std::optional<double> valid_min_c, valid_max_c;
    double range_tolerance_c = 0.0;

    std::vector<TcType> types;               // known types (type-based scalings)
    std::optional<ChannelBlock> type_block;  // per-channel type code registers, read each scan
    int default_type_code = -1;              // every channel's type without a type_block;
                                             // the simulator's power-on type otherwise
    int merge_gap = 0;  // registers/bits of gap a single request may span to merge two blocks
    std::vector<StatusRule> status;          // priority: open, over_range, under_range, stale
    std::vector<Sentinel> sentinels;

    const TcType* type(int code) const;
};

/// Maynuo M97-style Modbus electronic load. Addresses are protocol addresses;
/// 32-bit values use `word_order`. Optional items are absent when the map
/// leaves them out (a coil the load does not have reads as "not tripped").
struct LoadMap {
    int channels = 1;
    // [capabilities] (optional): ratings; a Modbus load's pulse is timed by
    // the driver in software (hardware_pulse may only be false).
    double max_current_a = std::numeric_limits<double>::quiet_NaN();
    double max_voltage_v = std::numeric_limits<double>::quiet_NaN();
    double max_power_w = std::numeric_limits<double>::quiet_NaN();
    WordOrder word_order = WordOrder::big;
    bool current_reported_negative = false;  // device reports discharge current < 0

    std::optional<int> remote_coil;      // written 1 on connect (take remote control)
    int input_state_coil = 0;            // 1 while the input is on
    std::optional<int> over_voltage_coil, over_current_coil, over_power_coil,
        over_temperature_coil, reverse_voltage_coil;

    int command_register = 0;  // holding; written with FC16, as the M97 tools do
    std::uint16_t cmd_cc = 0, cmd_cv = 0, cmd_cr = 0, cmd_cp = 0, cmd_input_on = 0,
                  cmd_input_off = 0;

    int set_current = 0, set_voltage = 0, set_resistance = 0, set_power = 0;  // float32, holding
    RegTable readings_table = RegTable::holding;
    int read_voltage = 0, read_current = 0;  // float32
    std::optional<int> read_power;           // float32; else P = V·I

    std::optional<int> model_register;     // uint16, shown as the model number
    std::optional<int> firmware_register;  // uint16, shown as the firmware version
};

struct RegisterMap {
    enum class Kind { thermocouple, load };
    std::string source;  // the file it came from
    Kind kind = Kind::thermocouple;
    std::string manufacturer, model;
    ThermoMap thermo;      // kind == thermocouple
    LoadMap load;          // kind == load
};

RegisterMap load_register_map(const std::string& path);
/// `source` names the text in messages (a path, or e.g. "<test>").
RegisterMap parse_register_map(std::string_view toml_text, const std::string& source);

// ---- codec (shared by the driver and the simulator) ----

/// Everything decode_channel needs about one channel besides its value words.
struct ChannelRaw {
    std::vector<std::uint16_t> words;  // words_of(format) words, in register order
    int type_code = -1;                // from the type block, or the default
    std::optional<TcStatus> flagged;   // highest-priority status rule that matched
};

/// °C and status for one channel. Non-ok readings carry temp_c = NaN (never a
/// temperature). Throws DefinitionError when the channel's type code is not in
/// the map (e.g. a channel configured for a voltage range).
TcReading decode_channel(const ThermoMap& m, int channel, const ChannelRaw& raw);

/// The raw words a module would hold for `temp_c` on a channel of `type_code`
/// (clamped to the raw range). Used by the simulator.
std::vector<std::uint16_t> encode_channel(const ThermoMap& m, int type_code, double temp_c);

/// The value words a module would hold for `status` (open / over / under),
/// from the map's sentinels; empty when the map has no sentinel for it (the
/// status is then reported through status registers only).
std::vector<std::uint16_t> sentinel_words(const ThermoMap& m, TcStatus status);

std::uint32_t join_words(std::uint16_t first, std::uint16_t second, WordOrder order);
void split_words(std::uint32_t v, WordOrder order, std::uint16_t& first, std::uint16_t& second);
float words_to_float(std::uint16_t first, std::uint16_t second, WordOrder order);
void float_to_words(float f, WordOrder order, std::uint16_t& first, std::uint16_t& second);

}  // namespace eol::instruments
