#include "eol/models/series.hpp"

#include <cmath>
#include <string>

namespace eol::models {
namespace {

void check_column(const std::vector<double>& col, const char* name, std::size_t n) {
    if (col.size() != n)
        throw InputError(std::string("column '") + name + "' has " + std::to_string(col.size()) +
                         " samples, time has " + std::to_string(n));
    for (std::size_t k = 0; k < n; ++k)
        if (!std::isfinite(col[k]))
            throw InputError(std::string("column '") + name + "' sample " + std::to_string(k) +
                             " is not finite");
}

}  // namespace

void Series::validate(std::size_t min_samples, bool need_cell_temp) const {
    const std::size_t n = t_s.size();
    if (n == 0) throw InputError("empty window: no samples");
    if (n < min_samples)
        throw InputError("window too short: " + std::to_string(n) + " samples, need at least " +
                         std::to_string(min_samples));
    check_column(t_s, "time", n);
    check_column(i_a, "current", n);
    check_column(v_v, "voltage", n);
    if (need_cell_temp) {
        if (t_cell_c.empty()) throw InputError("column 'cell_temp' is missing");
        check_column(t_cell_c, "cell_temp", n);
    }
    if (!t_amb_c.empty()) check_column(t_amb_c, "ambient_temp", n);
    for (std::size_t k = 1; k < n; ++k)
        if (!(t_s[k] > t_s[k - 1]))
            throw InputError("time is not increasing at sample " + std::to_string(k) + " (" +
                             std::to_string(t_s[k - 1]) + " s then " + std::to_string(t_s[k]) +
                             " s)");
}

}  // namespace eol::models
