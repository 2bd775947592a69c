// real_record.hpp — the Samsung 30Q HPPC record (../shared/data/real, ARTS-Lab,
// CC BY-SA 4.0, read in place) as the thermal tools and tests cut it: the
// LabVIEW file read with discharge positive, the time column stitched
// (eol::models::stitch_time) and each 3 A step with the ~90 min rest after
// it as one window, starting 10 samples before the step (the windows of
// tests/models/test_real_data.cpp). Header-only; throws std::runtime_error.
#pragma once

#include <cstddef>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "eol/models/series.hpp"

namespace eol::realdata {

/// max_gap_factor: passed to stitch_time. The default (5) also repairs the
/// logger's forward jumps (13, 183 and 376 s between samples ~1 s apart);
/// a huge value repairs only restarts and backward jumps — the time base the
/// issue's "before" figures were computed on.
inline models::Series read_labview(const std::string& path, double max_gap_factor = 5.0) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open the real data file " + path);
    std::string line;
    bool header = true;
    models::Series s;
    while (std::getline(in, line)) {
        if (header) {
            if (line.rfind("***End_of_Header***", 0) == 0) header = false;
            continue;
        }
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        std::istringstream ls(line);
        double t, i, v, p, tc, ta;
        if (!(ls >> t >> i >> v >> p >> tc >> ta)) throw std::runtime_error(path + ": a row is not 6 numbers");
        s.t_s.push_back(t);
        s.i_a.push_back(-i);  // the file has discharge negative
        s.v_v.push_back(v);
        s.t_cell_c.push_back(tc);
        s.t_amb_c.push_back(ta);
    }
    if (header) throw std::runtime_error(path + ": no ***End_of_Header***");
    s.t_s = models::stitch_time(s.t_s, max_gap_factor).t_s;
    return s;
}

struct Window {
    std::size_t first, last;  // samples [first, last)
};

/// Current level of a sample: 6 (pulse), 3 (SoC step), -1 (charge), 0 (rest).
inline int level(double i) {
    if (i > 4.5) return 6;
    if (i > 1.5) return 3;
    if (i < -1.5) return -1;
    return 0;
}

/// Windows that start 10 samples before a segment at `lvl` and end with the
/// rest segment that follows it.
inline std::vector<Window> windows(const models::Series& s, int lvl) {
    std::vector<Window> out;
    std::size_t k = 0;
    const std::size_t n = s.size();
    while (k < n) {
        std::size_t e = k;
        while (e < n && level(s.i_a[e]) == level(s.i_a[k])) ++e;
        if (level(s.i_a[k]) == lvl && e < n && level(s.i_a[e]) == 0) {
            std::size_t r = e;
            while (r < n && level(s.i_a[r]) == 0) ++r;
            out.push_back({k >= 10 ? k - 10 : 0, r});
        }
        k = e;
    }
    return out;
}

}  // namespace eol::realdata
