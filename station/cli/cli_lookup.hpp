// station/cli/cli_lookup.hpp — how lookups, quarantine events and devices are
// printed, shared by cli_quarantine.cpp (lookup, ship, quarantine, recall)
// and cli_genealogy.cpp (genealogy). Text lines for people, JSON objects for
// programs; every lookup's JSON says its "kind": "cell" or "device".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "eol/station/genealogy.hpp"
#include "eol/station/quarantine.hpp"

namespace eol::cli {

nlohmann::json event_json(const station::QuarantineEvent& e);
std::string event_line(const station::QuarantineEvent& e);
nlohmann::json lookup_json(const station::LookupResult& r, const std::string& where);
std::string lookup_line(const station::LookupResult& r, const std::string& where);

// cli_genealogy.cpp
nlohmann::json device_json(const station::DeviceLookup& d);
std::string device_line(const station::DeviceLookup& d);
nlohmann::json unit_json(const station::UnitLookup& u, const std::string& where);
std::string unit_line(const station::UnitLookup& u, const std::string& where);

}  // namespace eol::cli
