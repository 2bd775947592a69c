// eol/instruments/roles.hpp — the two instrument roles the station drives:
// ElectronicLoad and TemperatureReader. Small abstract interfaces; drivers
// implement them per protocol family with vendor differences in tables
// (config/dialects/*.toml, config/maps/*.toml); the simulators in eol::sim
// serve the same protocols, so tests run the real drivers over loopback.
//
// Lifecycle: construct (no I/O) → connect() → use → close() (or destroy).
// connect() may be called again after a ConnectionError to reconnect.
//
// Threading: one driver object talks over one connection and is used from
// one thread or strand at a time (a modbus_t is not thread-safe). The
// station gives each instrument its own strand; many channels of one
// multi-channel load share that strand, which is why the pulse is split into
// arm / trigger / done / fetch: a sequencer arms and triggers every channel,
// then polls, instead of blocking one channel's whole pulse.
//
// Units and signs: volts, amperes, watts, seconds, °C; discharge current is
// positive everywhere — drivers convert vendor conventions at the edge.
//
// Errors: eol/instruments/errors.hpp. Any error during a pulse switches the
// channel's input off (best effort) before it propagates.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace eol::instruments {

struct Identity {
    std::string manufacturer, model, serial, firmware;
};

enum class LoadMode { cc, cv, cr, cp };

struct LoadReading {
    double v_v = 0, i_a = 0, p_w = 0;
};

struct Protection {
    bool over_voltage = false, over_current = false, over_power = false,
         over_temperature = false, reverse_voltage = false;
    bool any() const {
        return over_voltage || over_current || over_power || over_temperature || reverse_voltage;
    }
};

struct PulseStep {
    double current_a;   // discharge positive
    double duration_s;
};

/// A hardware-timed current profile and the data logger that records it:
/// `points` samples every `sample_interval_s` from the trigger.
struct PulseSpec {
    std::vector<PulseStep> steps;
    double sample_interval_s = 0.01;
    std::size_t points = 0;
    double total_s() const {
        double t = 0;
        for (const auto& s : steps) t += s.duration_s;
        return t;
    }
};

struct PulseData {
    std::vector<double> t_s, v_v, i_a;  // t relative to the trigger
};

/// What a load can do, read from its dialect or register-map file
/// ([capabilities]), never inferred from the driver type. Ratings are per
/// channel; NaN = not stated in the file (no check against it).
struct LoadCapabilities {
    int channels = 1;
    double max_current_a = std::numeric_limits<double>::quiet_NaN();
    double max_voltage_v = std::numeric_limits<double>::quiet_NaN();
    double max_power_w = std::numeric_limits<double>::quiet_NaN();
    /// A list/transient mode with a data logger: the pulse is timed by the
    /// instrument. false: the driver times it in software (coarser edges,
    /// and its samples depend on the host's timing).
    bool hardware_pulse = false;
};

class ElectronicLoad {
public:
    virtual ~ElectronicLoad() = default;
    virtual const std::string& name() const = 0;
    virtual void connect() = 0;
    virtual void close() = 0;
    virtual int channels() const = 0;  // channels are 1-based
    /// From the definition file; the default states nothing but the channels.
    virtual LoadCapabilities capabilities() const {
        LoadCapabilities c;
        c.channels = channels();
        return c;
    }

    virtual Identity identify() = 0;
    virtual void reset() = 0;
    virtual void set_mode(int channel, LoadMode mode, double level) = 0;
    virtual void set_input(int channel, bool on) = 0;
    /// Voltage, current and power of `channel` (one reading of each).
    virtual LoadReading measure(int channel) = 0;
    /// The terminal voltage alone, in V: what an open-circuit reading needs
    /// (SCPI: the dialect's measure_voltage query, one round trip instead of
    /// measure()'s). The default takes it from measure().
    virtual double measure_voltage_v(int channel) { return measure(channel).v_v; }
    virtual Protection protection(int channel) = 0;
    /// Reads (and so clears) the device's error queue — SCPI: the dialect's
    /// error query (SYST:ERR?) until "0,No error" — and throws DeviceError
    /// naming the query and every entry when there was any. A load without
    /// an error queue (Modbus) has nothing to report: the default does nothing.
    virtual void check_error_queue() {}

    /// Optional first half of arm_pulse(): what can be programmed while the
    /// cell still rests with the input off (the list, the data logger), so
    /// that arm_pulse() with the same spec afterwards sends only the rest
    /// (input on, arm). Nothing is armed and the input is not touched: a
    /// trigger shared by the load's channels (*TRG) cannot start it. Any
    /// set_mode() or reset() on the channel forgets it. Default: nothing
    /// (arm_pulse() does it all).
    virtual void prepare_pulse(int channel, const PulseSpec& spec) {
        (void)channel;
        (void)spec;
    }
    virtual void arm_pulse(int channel, const PulseSpec& spec) = 0;
    virtual void trigger(int channel) = 0;
    virtual bool pulse_done(int channel) = 0;
    virtual PulseData fetch_pulse(int channel) = 0;

    /// arm → trigger → poll until done (timeout: the profile plus
    /// `margin_s`) → fetch. Input off on any error.
    PulseData run_pulse(int channel, const PulseSpec& spec, double margin_s = 5.0);
};

enum class TcStatus { ok, open, over_range, under_range, stale };
const char* to_string(TcStatus s);

struct TcReading {
    double temp_c = 0;  // meaningful only when status == ok
    TcStatus status = TcStatus::ok;
};

class TemperatureReader {
public:
    virtual ~TemperatureReader() = default;
    virtual const std::string& name() const = 0;
    virtual void connect() = 0;
    virtual void close() = 0;
    virtual int channels() const = 0;  // channels are 0-based, as on the modules
    virtual Identity identify() = 0;
    /// Reads every channel once.
    virtual std::vector<TcReading> read_all() = 0;
};

}  // namespace eol::instruments
