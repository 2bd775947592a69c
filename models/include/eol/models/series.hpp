// eol/models/series.hpp — the sampled record every fit reads: time, current
// (discharge positive), terminal voltage and, for thermal fits, cell and
// ambient temperature.
//
// A Series is a plain value. validate() checks what every fit needs (equal
// column lengths, finite values, strictly increasing time) and throws
// InputError naming the column and the 0-based sample index at fault.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace eol::models {

/// Input that no fit can use: names what is wrong and where.
class InputError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

struct Series {
    std::vector<double> t_s;
    std::vector<double> i_a;        // discharge positive
    std::vector<double> v_v;
    std::vector<double> t_cell_c;   // optional (thermal fits)
    std::vector<double> t_amb_c;    // optional

    std::size_t size() const { return t_s.size(); }

    /// Throws InputError unless t, I and V (and T columns when `need_cell_temp`)
    /// have equal lengths ≥ `min_samples`, are finite, and t strictly increases.
    void validate(std::size_t min_samples, bool need_cell_temp = false) const;
};

}  // namespace eol::models
