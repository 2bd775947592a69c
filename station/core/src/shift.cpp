#include "eol/station/shift.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <stdexcept>

namespace eol::station {

std::pair<double, double> shift_bounds(double t_unix_s, const std::vector<int>& starts) {
    if (starts.empty()) throw std::invalid_argument("shift_bounds: no shift start");
    const auto now = static_cast<std::time_t>(std::floor(t_unix_s));
    std::tm today{};
    localtime_r(&now, &today);
    double begin = -INFINITY, end = INFINITY;
    for (int d = -1; d <= 1; ++d)
        for (const int m : starts) {
            std::tm x = today;
            x.tm_mday += d;
            x.tm_hour = m / 60;
            x.tm_min = m % 60;
            x.tm_sec = 0;
            x.tm_isdst = -1;  // whatever holds on that day
            const auto b = static_cast<double>(std::mktime(&x));
            if (b <= t_unix_s) begin = std::max(begin, b);
            else end = std::min(end, b);
        }
    return {begin, end};
}

}  // namespace eol::station
