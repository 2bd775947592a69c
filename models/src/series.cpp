#include "eol/models/series.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace eol::models {
namespace {

std::string num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return buf;
}

void check_column(const std::vector<double>& col, const char* name, std::size_t n) {
    if (col.size() != n)
        throw InputError(std::string("column '") + name + "' has " + std::to_string(col.size()) +
                             " samples, time has " + std::to_string(n),
                         name);
    for (std::size_t k = 0; k < n; ++k)
        if (!std::isfinite(col[k]))
            throw InputError(std::string("column '") + name + "' sample " + std::to_string(k) +
                                 " is not finite (" + num(col[k]) + ")",
                             name, k);
}

std::vector<double> cut(const std::vector<double>& v, std::size_t first, std::size_t last) {
    if (v.empty()) return {};
    return {v.begin() + static_cast<std::ptrdiff_t>(first), v.begin() + static_cast<std::ptrdiff_t>(last)};
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
        if (t_cell_c.empty()) throw InputError("column 'cell_temp' is missing", "cell_temp");
        check_column(t_cell_c, "cell_temp", n);
    }
    if (!t_amb_c.empty()) check_column(t_amb_c, "ambient_temp", n);
    for (std::size_t k = 1; k < n; ++k)
        if (!(t_s[k] > t_s[k - 1]))
            throw InputError("time is not increasing at sample " + std::to_string(k) + " (" +
                                 num(t_s[k - 1]) + " s then " + num(t_s[k]) + " s)",
                             "time", k);
}

Series Series::slice(std::size_t first, std::size_t last) const {
    last = std::min(last, size());
    first = std::min(first, last);
    Series s;
    s.t_s = cut(t_s, first, last);
    s.i_a = cut(i_a, first, last);
    s.v_v = cut(v_v, first, last);
    s.t_cell_c = cut(t_cell_c, first, last);
    s.t_amb_c = cut(t_amb_c, first, last);
    return s;
}

StitchedTime stitch_time(const std::vector<double>& t_s, double max_gap_factor) {
    const std::size_t n = t_s.size();
    if (n < 2) throw InputError("stitch: need at least 2 time samples, got " + std::to_string(n), "time");
    for (std::size_t k = 0; k < n; ++k)
        if (!std::isfinite(t_s[k]))
            throw InputError("stitch: time sample " + std::to_string(k) + " is not finite", "time", k);
    std::vector<double> pos;
    pos.reserve(n - 1);
    for (std::size_t k = 1; k < n; ++k)
        if (t_s[k] > t_s[k - 1]) pos.push_back(t_s[k] - t_s[k - 1]);
    if (pos.empty()) throw InputError("stitch: time never increases", "time");
    auto mid = pos.begin() + static_cast<std::ptrdiff_t>(pos.size() / 2);
    std::nth_element(pos.begin(), mid, pos.end());
    StitchedTime out;
    out.nominal_dt_s = *mid;
    out.t_s.resize(n);
    out.t_s[0] = t_s[0];
    const double max_gap = max_gap_factor * out.nominal_dt_s;
    for (std::size_t k = 1; k < n; ++k) {
        double dt = t_s[k] - t_s[k - 1];
        if (!(dt > 0.0) || dt > max_gap) {
            dt = out.nominal_dt_s;
            out.repaired.push_back(k);
        }
        out.t_s[k] = out.t_s[k - 1] + dt;
    }
    return out;
}

}  // namespace eol::models
