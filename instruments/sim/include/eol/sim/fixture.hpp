// eol/sim/fixture.hpp — a virtual test fixture: N cell positions on a shared
// scaled clock, each with a load setting, an optional hardware-timed current
// profile with a data logger, and noisy, quantized measurements.
//
// Lifecycle: make a SimClock, a Fixture over it, load cells by serial, then
// hand the Fixture (shared_ptr) to the simulated servers. Every server reads
// and drives the same physics, so the load's current heats the cell the
// thermocouple reads.
//
// Time: SimClock::now_s() is simulated seconds = wall seconds × scale plus
// whatever skip() added. The fixture integrates lazily: each call first
// brings the physics up to now, exactly for piecewise-constant current
// (profile steps and logger sample instants are break points).
//
// Thread-safety: all Fixture members are safe to call from any thread (one
// mutex). Errors: std::out_of_range for a position that does not exist.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "eol/sim/cell.hpp"

namespace eol::sim {

class SimClock {
public:
    explicit SimClock(double scale = 1.0);
    /// A clock that moves only by skip(): no wall-clock component, so runs
    /// over it are bit-for-bit repeatable (in-process simulated production).
    static std::shared_ptr<SimClock> manual();
    double now_s() const;
    double scale() const { return scale_; }
    /// Wall-clock duration for `sim_s` simulated seconds.
    std::chrono::nanoseconds wall(double sim_s) const;
    /// Jumps simulated time forward (tests; the physics integrates across it).
    void skip(double sim_s);

private:
    std::chrono::steady_clock::time_point t0_;
    double scale_;
    bool manual_ = false;
    mutable std::mutex m_;
    double offset_s_ = 0.0;
};

enum class LoadMode { cc, cv, cr, cp };

struct LoadSetting {
    LoadMode mode = LoadMode::cc;
    double level = 0.0;  // A (cc), V (cv), Ω (cr), W (cp)
    bool input_on = false;
};

struct ProfileStep {
    double current_a;   // discharge positive
    double duration_s;
};

struct LoggedSamples {
    std::vector<double> t_s;  // relative to the trigger
    std::vector<double> v_v;
    std::vector<double> i_a;
};

struct MeasurementNoise {
    double v_sd_v = 0.0003, v_res_v = 0.0001;
    double i_sd_a = 0.001, i_res_a = 0.0001;
    double t_sd_c = 0.02, t_res_c = 0.01;
    // Per-channel thermocouple offsets (type K: ±0.5 K is ordinary): every
    // position's cell thermocouple and the ambient one read a constant offset
    // drawn uniformly in ±t_offset_c from the fixture's seed (deterministic).
    // 0 (the default) = ideal sensors.
    double t_offset_c = 0.0;
};

class Fixture {
public:
    Fixture(std::size_t positions, std::shared_ptr<SimClock> clock, double ambient_c = 25.0,
            std::uint64_t seed = 1, MeasurementNoise noise = {});

    std::size_t size() const { return pos_.size(); }
    std::shared_ptr<SimClock> clock() const { return clock_; }

    void load_cell(std::size_t pos, const std::string& serial, const CellParams& p);
    /// The parameters of the cell in `pos` (nullopt: empty position).
    std::optional<CellParams> cell_params(std::size_t pos) const;
    /// A fault of the position's load channel: it cannot sink more than
    /// `cap_a` (the current read back stays below the setpoint);
    /// infinity = none (the default).
    void set_current_cap(std::size_t pos, double cap_a);
    /// The resistance of the position's contacts (pogo pins) in the path
    /// the voltage is sensed through, Ω (0, the default: ideal 4-wire
    /// sensing): every voltage reading and logged sample of the position is
    /// V_terminal − I·R_contact, so the cell looks R_contact worse. The cell
    /// itself does not heat in it. Throws std::invalid_argument when < 0.
    void set_contact_resistance(std::size_t pos, double ohm);
    double contact_resistance(std::size_t pos) const;
    /// Replaces the position's thermocouple offset (a drifting sensor).
    void set_thermocouple_offset(std::size_t pos, double offset_c);
    void unload(std::size_t pos);
    std::optional<std::string> serial(std::size_t pos) const;

    void set_load(std::size_t pos, const LoadSetting& s);
    LoadSetting load(std::size_t pos) const;

    /// Starts a hardware-timed current profile now; the logger takes `points`
    /// samples every `interval_s` from the trigger. After the last step the
    /// static load setting applies again.
    void start_profile(std::size_t pos, std::vector<ProfileStep> steps, double interval_s,
                       std::size_t points);
    /// True when both the profile and the logger have finished.
    bool profile_done(std::size_t pos);
    /// Samples logged so far by the last profile.
    LoggedSamples fetch_log(std::size_t pos);
    void abort_profile(std::size_t pos);

    /// Noisy, quantized readings as an instrument would give them.
    double measure_voltage_v(std::size_t pos);
    double measure_current_a(std::size_t pos);  // discharge positive
    double measure_temp_c(std::size_t pos);
    double measure_ambient_c();

    /// Noise-free state for tests.
    CellState truth(std::size_t pos);
    double ambient_c() const { return ambient_c_; }
    /// The constant offsets the thermocouples read (truth for tests).
    double thermocouple_offset_c(std::size_t pos) const;
    double ambient_offset_c() const { return amb_offset_c_; }

private:
    struct Position {
        std::optional<Cell> cell;
        std::string serial;
        LoadSetting setting;
        double t_s = 0.0;  // physics is integrated up to here
        // profile
        std::vector<ProfileStep> steps;
        double trigger_s = -1.0;
        double interval_s = 0.0;
        std::size_t points = 0;
        LoggedSamples log;
        std::mt19937_64 rng;
        double t_offset_c = 0.0;  // this position's thermocouple offset
        double contact_ohm = 0.0; // in the voltage sense path
        double current_cap_a = std::numeric_limits<double>::infinity();
    };

    void sync(Position& p, double now);
    double current_at(const Position& p, double t) const;
    double quantize_noise(std::mt19937_64& rng, double x, double sd, double res) const;
    Position& at(std::size_t pos);

    std::shared_ptr<SimClock> clock_;
    double ambient_c_;
    MeasurementNoise noise_;
    std::vector<Position> pos_;
    std::mt19937_64 amb_rng_;
    double amb_offset_c_ = 0.0;
    mutable std::mutex m_;
};

}  // namespace eol::sim
