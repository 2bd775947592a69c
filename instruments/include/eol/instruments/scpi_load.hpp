// eol/instruments/scpi_load.hpp — the ElectronicLoad role for any SCPI load
// described by a dialect table (dialect.hpp): Keysight-, ITECH-, Siglent-style
// and whatever a new file describes.
//
// Lifecycle: ScpiLoad(name, dialect, transport) does no I/O; connect() opens
// the transport and clears the status (*CLS); every later call reconnects if
// the connection was lost. close() (or the destructor) closes it.
//
// Behaviour: configuration commands are followed by SYST:ERR? and any
// queued error becomes a DeviceError naming the command (set_mode's mode and
// level, and arm_pulse's set-up, are written together and checked once,
// naming all of them — always before the input goes on). measure() sends its
// queries as one compound message (one round trip); measure_voltage_v() only
// the voltage query. Readings are
// converted to discharge-positive current (dialect current_sign). The pulse
// is hardware timed: arm_pulse() programs the load's list (CC levels and
// dwell times) and data logger (interval, points) and arms both with the
// input on at 0 A; trigger() starts them; pulse_done() polls the status
// register; fetch_pulse() reads the V and I arrays (t = k·interval).
// Any error in arm/trigger/done/fetch switches the channel's input off (best
// effort) before it propagates.
//
// Errors: eol/instruments/errors.hpp, each naming this load and the command.
// Channel numbers outside 1..channels() throw std::out_of_range; a pulse
// spec the load cannot run throws std::invalid_argument.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "eol/instruments/dialect.hpp"
#include "eol/instruments/roles.hpp"
#include "eol/instruments/scpi.hpp"
#include "eol/instruments/transport.hpp"

namespace eol::instruments {

class ScpiLoad final : public ElectronicLoad {
public:
    ScpiLoad(std::string name, Dialect dialect, std::unique_ptr<LineTransport> transport,
             double timeout_s = 2.0);

    const std::string& name() const override { return client_.name(); }
    void connect() override;
    void close() override;
    int channels() const override { return dialect_.channels; }
    LoadCapabilities capabilities() const override {
        return {dialect_.channels, dialect_.max_current_a, dialect_.max_voltage_v, dialect_.max_power_w,
                dialect_.hardware_pulse};
    }

    Identity identify() override;
    void reset() override;
    void set_mode(int channel, LoadMode mode, double level) override;
    void set_input(int channel, bool on) override;
    LoadReading measure(int channel) override;
    double measure_voltage_v(int channel) override;
    Protection protection(int channel) override;
    void check_error_queue() override;

    void prepare_pulse(int channel, const PulseSpec& spec) override;
    void arm_pulse(int channel, const PulseSpec& spec) override;
    void trigger(int channel) override;
    bool pulse_done(int channel) override;
    PulseData fetch_pulse(int channel) override;

    /// Clears latched protection (DefinitionError if the dialect has no protection_clear).
    void clear_protection(int channel);
    const Dialect& dialect() const { return dialect_; }
    ScpiClient& client() { return client_; }

private:
    void check_channel(int channel) const;
    std::string cmd(Cmd c, int channel, const Dialect::Args& args = {}) const;
    void input_off_best_effort(int channel) noexcept;
    /// Writes every command, then drains the error queue once: DeviceError
    /// naming all of them if the instrument queued any error.
    void command_batch(const std::vector<std::string>& commands);
    template <class F>
    auto pulse_guard(int channel, F&& f);

    Dialect dialect_;
    ScpiClient client_;
    void check_pulse_spec(const PulseSpec& spec) const;
    void program_pulse(int channel, const PulseSpec& spec);

    std::vector<PulseSpec> armed_;     // per channel (index channel-1)
    std::vector<PulseSpec> prepared_;  // programmed by prepare_pulse(), not armed
};

/// Reads `dialect_file`, parses `address` and builds the load (no I/O).
std::unique_ptr<ScpiLoad> make_scpi_load(const std::string& name, const std::string& dialect_file,
                                         const std::string& address,
                                         const TransportOptions& options = {});

}  // namespace eol::instruments
