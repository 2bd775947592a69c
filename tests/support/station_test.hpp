// tests/support/station_test.hpp — station fixtures the station suites share:
// a new results store at a path, and a valid serial of the default scheme
// (plant 01, line A) for a lot, production date and sequence number.
// Errors: StoreError / UsageError from the station library, as in production.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::test {

inline station::Store create_store(const std::filesystem::path& p) {
    station::OpenOptions o;
    o.create = true;
    return station::Store::open(p, o);
}

inline std::string make_serial(const std::string& lot, station::Date date, std::uint64_t seq) {
    station::SerialSpec s;
    s.plant = "01";
    s.line = "A";
    s.lot = lot;
    s.date = date;
    s.sequence = seq;
    return station::SerialScheme::default_scheme().make(s);
}

}  // namespace eol::test
