#include "eol/instruments/modbus_load.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "eol/instruments/errors.hpp"
#include "eol/instruments/modbus_client.hpp"

namespace eol::instruments {
namespace {

using Clock = std::chrono::steady_clock;

class ModbusLoad final : public ElectronicLoad {
public:
    ModbusLoad(std::string name, const Address& address, RegisterMap map, double timeout_s)
        : name_(std::move(name)), map_(std::move(map)), client_(name_, address, timeout_s) {
        if (map_.kind != RegisterMap::Kind::load)
            throw DefinitionError(map_.source + ": not a load map (device.kind = \"thermocouple\")");
    }

    const std::string& name() const override { return name_; }
    int channels() const override { return 1; }
    LoadCapabilities capabilities() const override {
        return {1, m().max_current_a, m().max_voltage_v, m().max_power_w, false};
    }

    void connect() override {
        client_.connect();
        if (m().remote_coil) client_.write_coil(*m().remote_coil, true);
    }
    void close() override { client_.close(); }

    Identity identify() override {
        Identity id{map_.manufacturer, map_.model, "", ""};
        if (m().model_register)
            id.model += fmt::format(" (model code {})",
                                    client_.read_registers(RegTable::holding, *m().model_register, 1)[0]);
        if (m().firmware_register)
            id.firmware = std::to_string(
                client_.read_registers(RegTable::holding, *m().firmware_register, 1)[0]);
        if (!m().model_register && !m().firmware_register)
            client_.read_bits(RegTable::coils, m().input_state_coil, 1);  // is it there?
        return id;
    }

    void reset() override {
        pulse_ = {};
        command(m().cmd_input_off);
        write_float(m().set_current, 0.0);
        command(m().cmd_cc);
    }

    void set_mode(int channel, LoadMode mode, double level) override {
        check(channel);
        if (!(level >= 0) || !std::isfinite(level))
            throw std::invalid_argument(fmt::format("{}: level {} must be ≥ 0 (discharge positive)",
                                                    name_, level));
        switch (mode) {
        case LoadMode::cc:
            write_float(m().set_current, level);
            command(m().cmd_cc);
            break;
        case LoadMode::cv:
            write_float(m().set_voltage, level);
            command(m().cmd_cv);
            break;
        case LoadMode::cr:
            write_float(m().set_resistance, level);
            command(m().cmd_cr);
            break;
        case LoadMode::cp:
            write_float(m().set_power, level);
            command(m().cmd_cp);
            break;
        }
    }

    void set_input(int channel, bool on) override {
        check(channel);
        if (!on) pulse_.running = false;
        command(on ? m().cmd_input_on : m().cmd_input_off);
    }

    LoadReading measure(int channel) override {
        check(channel);
        const int lo = std::min({m().read_voltage, m().read_current,
                                 m().read_power.value_or(m().read_voltage)});
        const int hi = std::max({m().read_voltage, m().read_current,
                                 m().read_power.value_or(m().read_voltage)}) + 2;
        LoadReading r;
        if (hi - lo <= 125) {
            const auto w = client_.read_registers(m().readings_table, lo, hi - lo);
            auto at = [&](int a) {
                const auto k = static_cast<std::size_t>(a - lo);
                return static_cast<double>(words_to_float(w[k], w[k + 1], m().word_order));
            };
            r.v_v = at(m().read_voltage);
            r.i_a = at(m().read_current);
            if (m().read_power) r.p_w = at(*m().read_power);
        } else {
            r.v_v = read_float(m().read_voltage);
            r.i_a = read_float(m().read_current);
            if (m().read_power) r.p_w = read_float(*m().read_power);
        }
        if (m().current_reported_negative) r.i_a = -r.i_a;
        if (!m().read_power) r.p_w = r.v_v * r.i_a;
        return r;
    }

    Protection protection(int channel) override {
        check(channel);
        Protection p;
        const std::optional<int>* coils[] = {&m().over_voltage_coil, &m().over_current_coil,
                                             &m().over_power_coil, &m().over_temperature_coil,
                                             &m().reverse_voltage_coil};
        bool* flags[] = {&p.over_voltage, &p.over_current, &p.over_power, &p.over_temperature,
                         &p.reverse_voltage};
        int lo = 65536, hi = -1;
        for (const auto* c : coils)
            if (*c) {
                lo = std::min(lo, **c);
                hi = std::max(hi, **c);
            }
        if (hi < 0) return p;  // the map knows no protection flags
        const auto bits = client_.read_bits(RegTable::coils, lo, hi - lo + 1);
        for (std::size_t k = 0; k < 5; ++k)
            if (*coils[k]) *flags[k] = bits[static_cast<std::size_t>(**coils[k] - lo)];
        return p;
    }

    // ---- software-timed pulse (see the header) ----

    void arm_pulse(int channel, const PulseSpec& spec) override {
        check(channel);
        if (spec.steps.empty()) throw std::invalid_argument(name_ + ": pulse profile has no steps");
        for (const auto& s : spec.steps)
            if (!(s.current_a >= 0) || !(s.duration_s > 0))
                throw std::invalid_argument(fmt::format(
                    "{}: pulse step {} A for {} s: current must be ≥ 0 and duration > 0", name_,
                    s.current_a, s.duration_s));
        if (spec.points > 0 && !(spec.sample_interval_s > 0))
            throw std::invalid_argument(name_ + ": sample interval must be > 0");
        pulse_ = {};
        pulse_.spec = spec;
        command(m().cmd_input_off);
        write_float(m().set_current, spec.steps.front().current_a);
        command(m().cmd_cc);
        pulse_.armed = true;
    }

    void trigger(int channel) override {
        check(channel);
        if (!pulse_.armed) throw std::logic_error(name_ + ": trigger() without arm_pulse()");
        pulse_.armed = false;
        command(m().cmd_input_on);
        pulse_.t0 = Clock::now();
        pulse_.running = true;
        pulse_.step = 0;
        pulse_.next_sample = 0;
        guarded([&] { poll(); });
    }

    bool pulse_done(int channel) override {
        check(channel);
        if (!pulse_.running) return true;
        guarded([&] { poll(); });
        return !pulse_.running;
    }

    PulseData fetch_pulse(int channel) override {
        check(channel);
        return pulse_.data;
    }

private:
    struct Pulse {
        PulseSpec spec;
        bool armed = false, running = false;
        Clock::time_point t0;
        std::size_t step = 0;
        std::size_t next_sample = 0;
        PulseData data;
    };

    const LoadMap& m() const { return map_.load; }

    void check(int channel) const {
        if (channel != 1)
            throw std::invalid_argument(
                fmt::format("{}: channel {} does not exist (single-channel load)", name_, channel));
    }

    void command(std::uint16_t code) { client_.write_registers(m().command_register, {code}); }

    void write_float(int address, double v) {
        std::uint16_t a = 0, b = 0;
        float_to_words(static_cast<float>(v), m().word_order, a, b);
        client_.write_registers(address, {a, b});
    }

    double read_float(int address) {
        const auto w = client_.read_registers(m().readings_table, address, 2);
        return static_cast<double>(words_to_float(w[0], w[1], m().word_order));
    }

    /// Any error during a pulse switches the input off (best effort) first.
    template <class F>
    void guarded(F&& f) {
        try {
            f();
        } catch (...) {
            pulse_.running = false;
            try {
                command(m().cmd_input_off);
            } catch (...) {
            }
            throw;
        }
    }

    double elapsed_s() const {
        return std::chrono::duration<double>(Clock::now() - pulse_.t0).count();
    }

    /// Applies the steps and takes the samples that are due.
    void poll() {
        Pulse& p = pulse_;
        const auto& steps = p.spec.steps;
        double t = elapsed_s();
        // Steps: find the step active now.
        double edge = 0;
        std::size_t active = steps.size();
        for (std::size_t k = 0; k < steps.size(); ++k) {
            edge += steps[k].duration_s;
            if (t < edge) {
                active = k;
                break;
            }
        }
        if (active != p.step) {
            p.step = active;
            if (active < steps.size()) {
                write_float(m().set_current, steps[active].current_a);
                command(m().cmd_cc);
            } else {
                command(m().cmd_input_off);
            }
        }
        // Samples: at most one per poll, at the actual time; slots missed are skipped.
        const double interval = p.spec.sample_interval_s;
        if (p.next_sample < p.spec.points &&
            t >= static_cast<double>(p.next_sample) * interval) {
            const LoadReading r = measure(1);
            t = elapsed_s();
            p.data.t_s.push_back(t);
            p.data.v_v.push_back(r.v_v);
            p.data.i_a.push_back(r.i_a);
            p.next_sample = static_cast<std::size_t>(std::floor(t / interval)) + 1;
        }
        const double logger_end =
            p.spec.points > 0 ? static_cast<double>(p.spec.points - 1) * interval : 0.0;
        if (p.step >= steps.size() &&
            (p.next_sample >= p.spec.points || elapsed_s() > logger_end + interval)) {
            p.running = false;
        }
    }

    std::string name_;
    RegisterMap map_;
    ModbusClient client_;
    Pulse pulse_;
};

}  // namespace

std::unique_ptr<ElectronicLoad> make_modbus_load(std::string name, const Address& address,
                                                 RegisterMap map, double timeout_s) {
    return std::make_unique<ModbusLoad>(std::move(name), address, std::move(map), timeout_s);
}

}  // namespace eol::instruments
