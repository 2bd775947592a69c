// eol/station/shift.hpp — production shifts: when the shift a moment falls in
// began and when the next one begins (the panel's yield counters count one
// shift; the golden cell check is due at each shift start).
#pragma once

#include <utility>
#include <vector>

namespace eol::station {

/// The start of the shift `t_unix_s` falls in and the start of the next one
/// (unix s), for shift starts in minutes after local midnight (the host's
/// time zone, daylight saving included). std::invalid_argument when
/// `shift_start_min` is empty.
std::pair<double, double> shift_bounds(double t_unix_s, const std::vector<int>& shift_start_min);

}  // namespace eol::station
