// tests/support/station_test.hpp — station fixtures the station suites share:
// a shipped recipe, a new results store at a path, a valid serial of the default scheme
// (plant 01, line A) for a lot, production date and sequence number, a test
// record for a serial, and the six-lot production the screening tests screen.
// Errors: StoreError / UsageError from the station library, as in production;
// doctest REQUIRE failures for a serial the default scheme does not decode.
#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "eol/station/config.hpp"
#include "eol/station/record.hpp"
#include "eol/station/serial.hpp"
#include "eol/station/store.hpp"

namespace eol::test {

/// A valid serial (default scheme) of lot 0042 made 2023-03-14 at plant 01,
/// line A: the lot the test stations' [sim] tables make.
inline std::string lot0042_serial(std::uint64_t sequence) {
    station::SerialSpec s;
    s.plant = "01";
    s.line = "A";
    s.lot = "0042";
    s.date = {2023, 3, 14};
    s.sequence = sequence;
    return station::SerialScheme::default_scheme().make(s);
}

/// A recipe shipped in config/recipes/ ("eol-18650", "formation").
inline station::Recipe shipped_recipe(const std::string& name) {
    return station::load_recipe(std::filesystem::path(EOL_CONFIG_DIR) / "recipes" / (name + ".toml"));
}

/// The shipped EOL recipe without its heat step and with a coarser pulse log
/// (0.25 s): the same pipeline at a fraction of the fitting work, for suites
/// that run under sanitizers (tools/screen_accuracy runs the full recipe).
inline station::Recipe light_eol_recipe() {
    station::Recipe r = shipped_recipe("eol-18650");
    std::vector<station::RecipeStep> steps;
    for (auto& s : r.steps) {
        if (s.kind() == station::StepKind::heat) continue;
        if (auto* p = std::get_if<station::PulseParams>(&s.params)) p->sample_interval_s = 0.25;
        steps.push_back(s);
    }
    r.steps = steps;
    return r;
}

/// SQL that takes a store back to what a schema-5 binary left (no device
/// gate, migration 6): for the migration tests, run before their own
/// downgrade to older schemas (its triggers read columns those drop).
inline constexpr const char* kUndoSchema6 =
    "DROP TRIGGER device_gate_link; DROP TRIGGER device_gate_unlink; DROP TRIGGER device_gate_cell_insert; "
    "DROP TRIGGER device_gate_cell_update; DROP TRIGGER device_gate_cell_delete; DROP TABLE device_gate; "
    "PRAGMA user_version = 5; ";

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

/// A passing record of an INR18650-30Q cell: lot and production date decoded
/// from `serial`, run on `station_id` with recipe `recipe_name` version 1 from
/// `start_unix_s` for `duration_s`, one measurement per entry of `values` (in
/// name order), all in `unit`.
inline station::TestRecord make_record(const std::string& serial, const std::string& station_id,
                                       const std::string& recipe_name, double start_unix_s, double duration_s,
                                       const std::map<std::string, double>& values, const std::string& unit = "-") {
    const station::DecodeResult d = station::SerialScheme::default_scheme().decode(serial);
    REQUIRE(d.ok());
    station::TestRecord r;
    r.serial = serial;
    r.cell_model = "INR18650-30Q";
    r.lot = d.value.lot;
    r.production_date = d.value.production_date->iso();
    r.station_id = station_id;
    r.recipe_name = recipe_name;
    r.recipe_version = "1";
    r.start_unix_s = start_unix_s;
    r.end_unix_s = start_unix_s + duration_s;
    r.verdict = station::Verdict::pass;
    for (const auto& [name, v] : values) {
        station::Measurement m;
        m.name = name;
        m.value = v;
        m.unit = unit;
        m.outcome = station::judge(v, std::nullopt, std::nullopt);
        r.measurements.push_back(m);
    }
    return r;
}

/// Writes six lots of 50 cells (lots 0001…0006 made 2023-01-10 … 2023-03-01,
/// tested on EOL-01 from 2023-01-03 on, ten days per lot) with ocv_v, r0_ohm
/// and p_x_w ~ normal (seed 11): two p_x outliers in lot 0002 (its first two
/// cells) and a bad lot 0006 (its first 10 cells with a high p_x). Returns the
/// serials in lot order.
inline std::vector<std::string> fill_lots(station::Store& store) {
    std::mt19937_64 rng(11);
    std::normal_distribution<double> n01(0.0, 1.0);
    const std::vector<station::Date> dates{{2023, 1, 10}, {2023, 1, 20}, {2023, 2, 1},
                                           {2023, 2, 10}, {2023, 2, 20}, {2023, 3, 1}};
    constexpr double kDay = 86400.0;
    constexpr double kT0 = 1.6725e9;  // 2023-01-03
    std::vector<station::TestRecord> recs;
    std::vector<std::string> serials;
    for (std::size_t lot = 0; lot < dates.size(); ++lot) {
        for (std::uint64_t k = 1; k <= 50; ++k) {
            const std::string s = make_serial(fmt::format("{:04d}", lot + 1), dates[lot], k);
            double px = 0.002 * n01(rng);
            if (lot == 1 && k <= 2) px = 0.05;
            if (lot == 5 && k <= 10) px = 0.04;
            recs.push_back(make_record(s, "EOL-01", "eol-18650",
                                       kT0 + static_cast<double>(lot) * 10 * kDay + static_cast<double>(k), 100,
                                       {{"ocv_v", 4.0 + 0.002 * n01(rng)},
                                        {"r0_ohm", 0.033 + 0.001 * n01(rng)},
                                        {"p_x_w", px}}));
            serials.push_back(s);
        }
    }
    store.write_batch(recs);
    return serials;
}

}  // namespace eol::test
