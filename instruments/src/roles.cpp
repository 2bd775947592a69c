#include "eol/instruments/roles.hpp"

#include <chrono>
#include <thread>

#include "eol/instruments/errors.hpp"

namespace eol::instruments {

const char* to_string(TcStatus s) {
    switch (s) {
    case TcStatus::ok: return "ok";
    case TcStatus::open: return "open";
    case TcStatus::over_range: return "over_range";
    case TcStatus::under_range: return "under_range";
    case TcStatus::stale: return "stale";
    }
    return "?";
}

PulseData ElectronicLoad::run_pulse(int channel, const PulseSpec& spec, double margin_s) {
    try {
        arm_pulse(channel, spec);
        trigger(channel);
        const double logger_s = spec.sample_interval_s * static_cast<double>(spec.points);
        const double budget_s = std::max(spec.total_s(), logger_s) + margin_s;
        const auto deadline = std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(budget_s));
        while (!pulse_done(channel)) {
            if (std::chrono::steady_clock::now() > deadline)
                throw TimeoutError(name(), "pulse", "not complete after " +
                                                        std::to_string(budget_s) + " s");
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return fetch_pulse(channel);
    } catch (...) {
        try {
            set_input(channel, false);
        } catch (...) {
            // The original error is the one to report.
        }
        throw;
    }
}

}  // namespace eol::instruments
