// The register map's fixed parts (plc.hpp): fault code texts, the
// measurement slots, the serial codec; and the PlcStation adapter over the
// real Controller.
#include <string>

#include "eol/station/plc.hpp"

namespace eol::station::plc {

std::string_view describe(FaultCode f) {
    switch (f) {
        case FaultCode::none: return "none";
        case FaultCode::result_not_acknowledged: return "START refused: the last result is not acknowledged";
        case FaultCode::channel_busy: return "refused: a cycle runs on the channel";
        case FaultCode::unknown_recipe: return "START refused: unknown recipe id";
        case FaultCode::heartbeat_missing: return "START refused: the PLC heartbeat is stale";
        case FaultCode::channel_faulted: return "the channel is faulted: FAULT_RESET first";
        case FaultCode::start_refused: return "START refused by the station";
        case FaultCode::ack_without_result: return "RESULT_ACK without RESULT_VALID";
        case FaultCode::heartbeat_abort: return "test aborted: stale PLC heartbeat";
        case FaultCode::plc_abort: return "test aborted by the PLC";
        case FaultCode::station_abort: return "test aborted by the station (safety limit, operator, shutdown)";
        case FaultCode::instrument_error: return "test ended in error: the channel is faulted";
        case FaultCode::load_not_off: return "the load input could not be confirmed off";
        case FaultCode::reset_failed: return "FAULT_RESET failed: the load input could not be confirmed off";
        case FaultCode::start_with_abort: return "START ignored: ABORT in the same write";
        case FaultCode::golden_check:
            return "START refused: a golden cell check is due (test a golden cell first) or failed (station blocked "
                   "until FAULT_RESET of that position)";
        case FaultCode::position_out_of_service:
            return "position out of service (fixture health: contact resistance or thermocouple drift): service it, "
                   "then FAULT_RESET";
    }
    return "?";
}

const std::vector<MeasurementSlot>& measurement_slots() {
    static const std::vector<MeasurementSlot> slots{
        {"ocv_v", 40, 1e4, "0.1 mV"},
        {"r0_ohm", 42, 1e6, "uOhm"},
        {"temp_rise_k", 44, 1e3, "mK"},
        {"dcir_ohm", 46, 1e6, "uOhm"},
        {"r1_ohm", 48, 1e6, "uOhm"},
        {"tau1_s", 50, 1e3, "ms"},
        {"r2_ohm", 52, 1e6, "uOhm"},
        {"tau2_s", 54, 1e3, "ms"},
        {"fit_rmse_v", 56, 1e6, "uV"},
        {"pulse_v_min_v", 58, 1e4, "0.1 mV"},
        {"c_th_j_per_k", 60, 1e3, "mJ/K"},
        {"r_th_k_per_w", 62, 1e3, "mK/W"},
        {"p_x_w", 64, 1e3, "mW"},
    };
    return slots;
}

std::string serial_from_registers(const std::uint16_t* words, PlcConfig::ByteOrder order) {
    std::string s;
    s.reserve(2u * reg::serial_words);
    for (std::size_t i = 0; i < reg::serial_words; ++i) {
        const auto hi = static_cast<char>(words[i] >> 8);
        const auto lo = static_cast<char>(words[i] & 0xff);
        if (order == PlcConfig::ByteOrder::high_first) {
            s += hi;
            s += lo;
        } else {
            s += lo;
            s += hi;
        }
    }
    while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
    return s;
}

void serial_to_registers(std::string_view serial, std::uint16_t* words, PlcConfig::ByteOrder order) {
    for (std::size_t i = 0; i < reg::serial_words; ++i) {
        const auto at = [&](std::size_t k) -> std::uint16_t {
            return k < serial.size() ? static_cast<std::uint8_t>(serial[k]) : 0;
        };
        const std::uint16_t first = at(2 * i), second = at(2 * i + 1);
        words[i] = order == PlcConfig::ByteOrder::high_first ? static_cast<std::uint16_t>(first << 8 | second)
                                                             : static_cast<std::uint16_t>(second << 8 | first);
    }
}

namespace {

class ControllerStation final : public PlcStation {
public:
    explicit ControllerStation(Controller& c) : c_(c) {}
    const SerialScheme& scheme() const override { return c_.scheme(); }
    const StationConfig& config() const override { return c_.config(); }
    void start(int position, const std::string& serial, std::function<void(const CellResult&)> done) override {
        c_.start(position, serial, std::move(done));
    }
    bool abort(int position, const std::string& reason) override { return c_.abort(position, reason); }
    void fault_reset(int position) override { c_.fault_reset(position); }
    std::vector<ChannelSnapshot> snapshot() const override { return c_.snapshot(); }

private:
    Controller& c_;
};

}  // namespace

std::unique_ptr<PlcStation> controller_station(Controller& controller) {
    return std::make_unique<ControllerStation>(controller);
}

}  // namespace eol::station::plc
