// eol/station/sim_roles.hpp — simulated instruments in-process: the
// ElectronicLoad and TemperatureReader roles implemented directly over an
// eol::sim::Fixture (the same cell physics the socket simulators serve), and
// a StepClock that skips simulated time instead of sleeping. The way
// ros2_control's mock hardware is a real library behind the same
// interfaces: the step engine cannot tell them from drivers, so the
// simulated production runs the station's own steps, thousands of cells a
// minute, with no sockets.
//
// Mapping: load channel c (1-based) drives fixture position c − 1;
// thermocouple channel k (0-based) reads position k, and channel
// fixture.size() reads the fixture's ambient.
//
// Lifecycle: construct over a fixture (no I/O); connect()/close() do
// nothing. Not thread-safe beyond what Fixture guarantees: one step engine
// per fixture.
//
// Errors: std::out_of_range for a channel the fixture does not have.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <cstdint>
#include <string>

#include "eol/instruments/roles.hpp"
#include "eol/sim/fixture.hpp"
#include "eol/station/steps.hpp"

namespace eol::station {

class InProcessLoad final : public instruments::ElectronicLoad {
public:
    InProcessLoad(std::string name, std::shared_ptr<sim::Fixture> fixture);
    const std::string& name() const override { return name_; }
    void connect() override {}
    void close() override {}
    int channels() const override;
    instruments::Identity identify() override;
    void reset() override;
    void set_mode(int channel, instruments::LoadMode mode, double level) override;
    void set_input(int channel, bool on) override;
    instruments::LoadReading measure(int channel) override;
    instruments::Protection protection(int /*channel*/) override { return {}; }
    void arm_pulse(int channel, const instruments::PulseSpec& spec) override;
    void trigger(int channel) override;
    bool pulse_done(int channel) override;
    instruments::PulseData fetch_pulse(int channel) override;

private:
    std::size_t pos(int channel) const;
    std::string name_;
    std::shared_ptr<sim::Fixture> fx_;
    std::map<int, instruments::PulseSpec> armed_;
};

class InProcessThermo final : public instruments::TemperatureReader {
public:
    InProcessThermo(std::string name, std::shared_ptr<sim::Fixture> fixture);
    const std::string& name() const override { return name_; }
    void connect() override {}
    void close() override {}
    int channels() const override;
    instruments::Identity identify() override;
    std::vector<instruments::TcReading> read_all() override;

private:
    std::string name_;
    std::shared_ptr<sim::Fixture> fx_;
};

/// Simulated time: sleep_s() skips the fixture's clock; unix time is
/// `unix_epoch_s` plus the simulated seconds since construction.
class SkipClock final : public StepClock {
public:
    SkipClock(std::shared_ptr<sim::SimClock> clock, double unix_epoch_s);
    double now_s() const override;
    double unix_now_s() const override;
    boost::asio::awaitable<void> sleep_s(double station_s) override;

private:
    std::shared_ptr<sim::SimClock> clock_;
    double t0_s_;
    double epoch_s_;
};

/// One cell through a recipe in a one-position in-process fixture: the cell
/// placed, `wait_s` simulated seconds in the fixture, then run_recipe() with
/// load channel 1, thermocouple 0 and the ambient on 1.
struct InProcessRun {
    std::string station_id;
    double ambient_c = 25.0;
    std::uint64_t noise_seed = 1;    // the fixture's measurement noise
    double wait_s = 0.0;
    double unix_start_s = 0.0;       // the record's start time
    RunContext::Trace trace = RunContext::Trace::none;
    std::shared_ptr<const StepFits> fits;  // nullptr: the standard fits
    int position = 1;                // the fixture position the record names
    double contact_ohm = 0.0;        // the position's contact resistance (sim::Fixture)
    double tc_offset_c = 0.0;        // its thermocouple's offset
    std::optional<double> thermo_offset_k;  // the station's calibration of it (ChannelIo::thermo_offset_k)
};
TestRecord run_in_process(const Recipe& recipe, const Limits& limits, const sim::CellParams& cell,
                          const CellIdentity& identity, const InProcessRun& how);

/// The state of charge after `hours` of storage at open circuit: drained by
/// a leakage current and, with an internal short, OCV/R_isc (1-hour steps).
double storage_soc(const sim::CellParams& cell, double soc, double leak_a, double hours);

}  // namespace eol::station
