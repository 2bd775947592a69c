// eol/instruments/dialect.hpp — a SCPI electronic-load dialect: the table
// that maps each abstract load command to one vendor's command string, read
// from a TOML file in config/dialects/. A new vendor is a new file, not new
// code: the driver (scpi_load.hpp) and the simulator (eol::sim
// ScpiLoadServer) both work from this table.
//
// File layout (config/dialects/*.toml document every key in their header):
//   [dialect]    name, description, channels, channel_style ("none" | "prefix"
//                | "suffix"), optional prefix / suffix / bare_suffix templates
//                with {ch}, current_sign ("positive" | "negative": the load
//                reports discharge current negative), identity (a regular
//                expression the *IDN? reply must match), array_format,
//                max_list_steps, max_logger_points
//   [commands]   identify reset clear_status error_query opc_query
//                mode_cc mode_cv mode_cr mode_cp level_cc level_cv level_cr level_cp
//                input_on input_off measure_voltage measure_current measure_power
//                protection_query protection_clear
//   [pulse]      setup_global = [..] (fixed commands sent as written, e.g. the
//                data format), setup = [..] (fixed channel commands), either levels + durations
//                (whole lists) or step_count + step_level + step_duration (one
//                step per command), logger_interval logger_points, arm = [..],
//                trigger, status, busy_mask, fetch_voltage fetch_current, abort
//   [protection] bit numbers in the protection_query reply: over_voltage,
//                over_current, over_power, over_temperature, reverse_voltage
//   [simulator]  idn, max_current_a, max_voltage_v, max_power_w — how the
//                simulated instrument presents itself and its ratings
// Templates use placeholders: {value} (a level), {levels} and {durations}
// (comma-separated lists), {step} (1-based), {count}, {interval}, {points};
// which ones a key takes is fixed (command_info()).
//
// Channel addressing: global commands (IEEE 488.2 common commands, the error
// queue, the trigger) are sent as written; every other command is addressed
// to a channel: style "prefix" prepends `CHAN {ch};:`, "suffix" appends
// `,(@{ch})` to commands with parameters and ` (@{ch})` to those without,
// "none" sends it as written (single-channel loads).
//
// Errors: load_dialect()/parse_dialect() throw DefinitionError naming
// file:line and the key (e.g. "keysight.toml:41: commands.level_cc: template
// 'CURR' must contain {value}"), for TOML syntax errors, unknown or missing
// keys, wrong types and out-of-range values, bad templates and regexes.
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eol/instruments/roles.hpp"
#include "eol/instruments/scpi.hpp"

namespace eol::instruments {

enum class Cmd {
    identify, reset, clear_status, error_query, opc_query,
    mode_cc, mode_cv, mode_cr, mode_cp,
    level_cc, level_cv, level_cr, level_cp,
    input_on, input_off,
    measure_voltage, measure_current, measure_power,
    protection_query, protection_clear,
    list_levels, list_durations, list_step_count, list_step_level, list_step_duration,
    logger_interval, logger_points, trigger, pulse_status, fetch_voltage, fetch_current,
    pulse_abort,
    count_
};
inline constexpr std::size_t kCmdCount = static_cast<std::size_t>(Cmd::count_);

struct CommandInfo {
    Cmd cmd;
    std::string_view table;  // "commands" or "pulse"
    std::string_view key;
    bool global;             // never channel-addressed
    bool query;              // the instrument replies
    std::vector<std::string_view> placeholders;  // each required exactly once
};
const CommandInfo& command_info(Cmd c);

enum class ChannelStyle { none, prefix, suffix };

struct ProtectionBits {
    int over_voltage = -1, over_current = -1, over_power = -1, over_temperature = -1,
        reverse_voltage = -1;  // -1: not reported
    Protection decode(std::uint64_t status) const;
    std::uint64_t encode(const Protection& p) const;
};

/// How the simulated instrument presents itself.
struct SimulatorInfo {
    std::string idn = "EOL,SIM-LOAD,0,1.0";
    double max_current_a = 30.0;
    double max_voltage_v = 150.0;
    double max_power_w = 300.0;
};

class Dialect {
public:
    std::filesystem::path file;  // where it was read from (may be a name for text sources)
    std::string name;
    std::string description;
    int channels = 1;
    ChannelStyle channel_style = ChannelStyle::none;
    std::string prefix = "CHAN {ch};:";
    std::string suffix = ",(@{ch})";
    std::string bare_suffix = " (@{ch})";
    double current_sign = 1.0;  // -1: the load reports discharge current negative
    std::string identity;       // ECMAScript regex searched in the *IDN? reply
    ArrayFormat array_format = ArrayFormat::ascii;
    /// [capabilities]: ratings per channel and whether the list/logger
    /// pulse is hardware-timed (default true: this driver's pulse is the
    /// dialect's list + logger).
    double max_current_a = std::numeric_limits<double>::quiet_NaN();
    double max_voltage_v = std::numeric_limits<double>::quiet_NaN();
    double max_power_w = std::numeric_limits<double>::quiet_NaN();
    bool hardware_pulse = true;
    std::size_t max_list_steps = 100;
    std::size_t max_logger_points = 100000;
    std::vector<std::string> pulse_setup_global;  // fixed commands, not addressed
    std::vector<std::string> pulse_setup;  // channel-addressed fixed commands
    std::vector<std::string> pulse_arm;    // channel-addressed fixed commands
    std::uint64_t busy_mask = 1;           // pulse status: busy while (status & mask) != 0
    ProtectionBits protection;
    SimulatorInfo simulator;

    bool has(Cmd c) const { return templates_[static_cast<std::size_t>(c)].has_value(); }
    /// The template; DefinitionError if the dialect lacks it.
    const std::string& text(Cmd c) const;
    void set(Cmd c, std::string text) { templates_[static_cast<std::size_t>(c)] = std::move(text); }
    /// Whole lists (levels + durations) rather than one command per step.
    bool list_form_whole() const { return has(Cmd::list_levels); }

    using Args = std::vector<std::pair<std::string_view, std::string>>;
    /// The command for `channel` (1-based) with placeholders filled in.
    std::string render(Cmd c, int channel, const Args& args = {}) const;
    /// `body` addressed to `channel` per the channel style.
    std::string address(std::string_view body, int channel) const;
    /// True if the *IDN? reply matches `identity`.
    bool identity_matches(std::string_view idn) const;

private:
    std::array<std::optional<std::string>, kCmdCount> templates_{};
};

/// Reads and validates a dialect file. Throws DefinitionError (file:line: key: what).
Dialect load_dialect(const std::filesystem::path& file);
/// Same from text; `source` names it in messages.
Dialect parse_dialect(std::string_view toml_text, const std::string& source);

/// Fills {name} placeholders of `tmpl` (unknown names are left as they are).
std::string fill_template(std::string_view tmpl, const Dialect::Args& args);

}  // namespace eol::instruments
