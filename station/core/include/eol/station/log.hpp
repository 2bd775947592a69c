// eol/station/log.hpp — the station's event log (spdlog).
//
// One logger per part of the station ("controller", "plc", "panel"), all
// writing to standard error — `serve`'s standard output is its result
// protocol — one line per event, fields as key=value so that a line can be
// grepped and parsed:
//
//   2026-12-06T07:42:01.877 info controller cell done channel=1 serial=… verdict=pass wall_s=6.6
//
// Level: the environment variable EOL_LOG_LEVEL, read once when the first
// logger is made: trace, debug, info (default), warn, error, critical, off.
// An unknown value is reported once on standard error and info is used.
// Loggers live until the process ends; they are safe to use from any thread.
#pragma once

#include <spdlog/logger.h>

#include <string>

namespace eol::station {

/// The logger of one part of the station (made on first use, then shared).
spdlog::logger& station_log(const std::string& component);

}  // namespace eol::station
