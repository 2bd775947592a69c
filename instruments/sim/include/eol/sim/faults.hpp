// eol/sim/faults.hpp — fault injection for the simulated servers, switchable
// at run time from any thread (tests, `eolstation sim`).
//
// Each server owns one Faults object; it consults it on every request.
// One-shot faults (drop_next, garbage_next, …) clear themselves when used.
#pragma once

#include <mutex>
#include <set>
#include <string>

namespace eol::sim {

struct FaultSettings {
    double latency_s = 0.0;          // added before every reply (wall seconds)
    bool drop_connection = false;    // close the client's connection instead of replying (one-shot)
    bool garbage_reply = false;      // reply with bytes that do not parse (one-shot)
    bool truncated_reply = false;    // reply with only part of the answer, no terminator (one-shot)
    bool no_reply = false;           // swallow requests while set (timeouts)
    std::string scpi_error;          // queued on the next command, e.g. `-222,"Data out of range"` (one-shot)
    int modbus_exception = 0;        // exception code for the next request, e.g. 2 or 4 (one-shot)
    std::set<int> burnout_channels;  // thermocouple channels reading open circuit (while set)
};

class Faults {
public:
    FaultSettings get() const {
        std::lock_guard lk(m_);
        return s_;
    }
    void set(const FaultSettings& s) {
        std::lock_guard lk(m_);
        s_ = s;
    }
    /// Returns the current settings and clears the one-shot ones.
    FaultSettings take() {
        std::lock_guard lk(m_);
        FaultSettings now = s_;
        s_.drop_connection = s_.garbage_reply = s_.truncated_reply = false;
        s_.scpi_error.clear();
        s_.modbus_exception = 0;
        return now;
    }
    template <class F>
    void update(F&& f) {
        std::lock_guard lk(m_);
        f(s_);
    }

private:
    mutable std::mutex m_;
    FaultSettings s_;
};

}  // namespace eol::sim
