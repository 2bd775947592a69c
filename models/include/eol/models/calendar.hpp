// eol/models/calendar.hpp — the proleptic Gregorian calendar facts every
// date in eolstation is checked with (production dates, windows, lots):
// the one owner of leap years and month lengths.
#pragma once

namespace eol::models {

bool is_leap_year(int year);

/// Days in `month` (1–12) of `year`; 0 for a month outside 1–12.
int days_in_month(int year, int month);

}  // namespace eol::models
