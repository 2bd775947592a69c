// eol/models/series.hpp — the sampled record every fit reads: time, current
// (discharge positive), terminal voltage and, for thermal fits, cell and
// ambient temperature.
//
// A Series is a plain value. validate() checks what every fit needs (equal
// column lengths, finite values, strictly increasing time) and throws
// InputError naming the column and the 0-based sample index at fault; callers
// that read files map that index back to a file line (InputError::sample()).
//
// stitch_time() repairs a logger time column that restarts or jumps at step
// changes (see ../shared/data/real/README.md) into one monotonic time base.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace eol::models {

/// Input that no fit can use: names what is wrong and where (its own type —
/// not std::invalid_argument, which means a programming error). column() and
/// sample() are set when the fault is one sample of one column.
class InputError : public std::runtime_error {
public:
    explicit InputError(const std::string& what, std::string column = {},
                        std::optional<std::size_t> sample = std::nullopt)
        : std::runtime_error(what), column_(std::move(column)), sample_(sample) {}
    const std::string& column() const noexcept { return column_; }
    std::optional<std::size_t> sample() const noexcept { return sample_; }

private:
    std::string column_;
    std::optional<std::size_t> sample_;
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

    /// Samples [first, last) as a new Series (all non-empty columns).
    Series slice(std::size_t first, std::size_t last) const;
};

/// Result of stitch_time: the repaired time base and where it was repaired.
struct StitchedTime {
    std::vector<double> t_s;             // strictly increasing, t_s[0] = input[0]
    std::vector<std::size_t> repaired;   // sample indices k whose interval t[k]-t[k-1] was replaced
    double nominal_dt_s = 0.0;           // the interval used for repaired gaps (median interval)
};

/// One monotonic time base from a logger time column whose clock restarts or
/// jumps at step changes. Every interval that is not positive, or longer than
/// `max_gap_factor` × the median positive interval, is taken as a clock
/// artefact and replaced by the median interval; all others are kept as
/// recorded. Throws InputError for fewer than 2 samples, non-finite times or
/// no positive interval at all.
StitchedTime stitch_time(const std::vector<double>& t_s, double max_gap_factor = 5.0);

}  // namespace eol::models
