// tests/support/genealogy_test.hpp — genealogy fixtures the station suites
// share: device serials of the default device scheme, cells of a lot written
// to a store with a chosen verdict, and a link request.
// Errors: StoreError from the store, as in production.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eol/station/genealogy.hpp"
#include "eol/station/record.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"
#include "support/station_test.hpp"

namespace eol::test {

/// A valid device serial of the default device scheme (plant P1, line A).
inline std::string device_serial(std::uint64_t sequence) {
    station::SerialSpec s;
    s.plant = "P1";
    s.line = "A";
    s.sequence = sequence;
    return station::device_serial_scheme().make(s);
}

/// Writes `n` cells of `lot` made on `date` (sequence from `first`), each with
/// one EOL record of `verdict`; their serials.
inline std::vector<std::string> write_cells(station::Store& store, const std::string& lot, station::Date date,
                                            std::uint64_t n, station::Verdict verdict = station::Verdict::pass,
                                            std::uint64_t first = 1) {
    std::vector<std::string> serials;
    std::vector<station::TestRecord> recs;
    for (std::uint64_t k = first; k < first + n; ++k) {
        serials.push_back(make_serial(lot, date, k));
        station::TestRecord r = make_record(serials.back(), "EOL-01", "eol-18650", 1.68e9 + static_cast<double>(k),
                                            60.0, {{"ocv_v", 3.6}}, "V");
        r.verdict = verdict;
        recs.push_back(std::move(r));
    }
    store.write_batch(recs);
    return serials;
}

inline station::LinkRequest link_request(const std::string& device, const std::string& model,
                                         std::vector<std::string> cells) {
    station::LinkRequest r;
    r.device = device;
    r.model = model;
    r.cells = std::move(cells);
    r.station_id = "ASSY-01";
    r.actor = "line-1";
    return r;
}

}  // namespace eol::test
