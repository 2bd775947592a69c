// eol/instruments/errors.hpp — typed instrument errors.
//
// Every malformed reply, timeout, disconnect and device-reported error
// becomes one of these, naming the instrument, the command or register, and
// what came back. Drivers never wait without a timeout.
#pragma once

#include <stdexcept>
#include <string>

namespace eol::instruments {

class InstrumentError : public std::runtime_error {
public:
    InstrumentError(std::string instrument, std::string command, std::string detail)
        : std::runtime_error(instrument + ": " + command + ": " + detail),
          instrument_(std::move(instrument)), command_(std::move(command)),
          detail_(std::move(detail)) {}
    const std::string& instrument() const { return instrument_; }
    /// The SCPI command, or the register / coil ("input register 2048"), at fault.
    const std::string& command() const { return command_; }
    const std::string& detail() const { return detail_; }

private:
    std::string instrument_, command_, detail_;
};

/// No (complete) reply within the timeout.
class TimeoutError : public InstrumentError {
public:
    using InstrumentError::InstrumentError;
};
/// Could not connect, or the peer closed / reset the connection.
class ConnectionError : public InstrumentError {
public:
    using InstrumentError::InstrumentError;
};
/// A reply that does not parse as what was asked (garbage, truncated, wrong count).
class ProtocolError : public InstrumentError {
public:
    using InstrumentError::InstrumentError;
};
/// The device said no: a SCPI error-queue entry, a Modbus exception response,
/// a protection trip.
class DeviceError : public InstrumentError {
public:
    using InstrumentError::InstrumentError;
};
/// A dialect table or register map that cannot be used (file:line, key).
class DefinitionError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace eol::instruments
