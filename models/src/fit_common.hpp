// Internal: input preparation shared by the circuit and thermal fits.
#pragma once

#include <cstddef>
#include <vector>

#include <Eigen/Dense>

#include "eol/models/series.hpp"

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace eol::models::detail {

// The O(N) passes are the whole cost of a fit. Their kernels are compiled
// twice, for the baseline target and for AVX2+FMA, and picked at run time.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define EOL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define EOL_ALWAYS_INLINE __attribute__((always_inline)) inline
#define EOL_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
inline bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has;
}
#else
#define EOL_TARGET_AVX2
#define EOL_ALWAYS_INLINE inline
#define EOL_ALWAYS_INLINE_LAMBDA
inline bool cpu_has_avx2() { return false; }
#endif

/// Gram matrix Σ z zᵀ of a Q-vector. Samples are buffered in blocks and the
/// block is folded in with 4-wide vector operations (GCC vector extension,
/// compiled to AVX2 in the AVX2 kernels, to SSE2 pairs otherwise), four rows of
/// the upper triangle at a time, so that accumulators stay in registers and
/// no load waits on a just-written store.
template <int Q, int NVAR = Q>
struct GramAcc {
    typedef double v4d __attribute__((vector_size(32)));
    static constexpr std::size_t kQ = static_cast<std::size_t>(Q);
    static constexpr std::size_t P = (kQ + 3) / 4 * 4;  // padded row length
    static constexpr std::size_t NV = P / 4;
    static constexpr std::size_t B = 32;                 // samples per block

    alignas(64) double acc[P][P] = {};
    alignas(64) double buf[B][P + 4] = {};  // rows of z; slack for 4-lane stores past the last column

    /// Folds buf[0..fill) into acc. Callers fill buf rows (padding stays
    /// zero or is ignored) and flush at most every B rows. Only rows below
    /// NVAR are accumulated: columns from NVAR on are data whose mutual
    /// products the caller knows already.

    /// Rows [I, I+4) of the upper triangle: columns [I, P), i.e. NV − I/4
    /// vectors per row, 4·(NV − I/4) accumulators held in registers.
    template <std::size_t I>
    EOL_ALWAYS_INLINE void flush_rows(std::size_t fill) {
        constexpr std::size_t V0 = I / 4, NR = NV - V0;
        v4d r0[NR], r1[NR], r2[NR], r3[NR];
        for (std::size_t v = 0; v < NR; ++v) {
            __builtin_memcpy(&r0[v], &acc[I + 0][4 * (V0 + v)], sizeof(v4d));
            __builtin_memcpy(&r1[v], &acc[I + 1][4 * (V0 + v)], sizeof(v4d));
            __builtin_memcpy(&r2[v], &acc[I + 2][4 * (V0 + v)], sizeof(v4d));
            __builtin_memcpy(&r3[v], &acc[I + 3][4 * (V0 + v)], sizeof(v4d));
        }
        for (std::size_t s = 0; s < fill; ++s) {
            const double* row = buf[s];
            const double c0 = row[I], c1 = row[I + 1], c2 = row[I + 2], c3 = row[I + 3];
            for (std::size_t v = 0; v < NR; ++v) {
                v4d zz;
                __builtin_memcpy(&zz, row + 4 * (V0 + v), sizeof zz);
                r0[v] += c0 * zz;
                r1[v] += c1 * zz;
                r2[v] += c2 * zz;
                r3[v] += c3 * zz;
            }
        }
        for (std::size_t v = 0; v < NR; ++v) {
            __builtin_memcpy(&acc[I + 0][4 * (V0 + v)], &r0[v], sizeof(v4d));
            __builtin_memcpy(&acc[I + 1][4 * (V0 + v)], &r1[v], sizeof(v4d));
            __builtin_memcpy(&acc[I + 2][4 * (V0 + v)], &r2[v], sizeof(v4d));
            __builtin_memcpy(&acc[I + 3][4 * (V0 + v)], &r3[v], sizeof(v4d));
        }
        if constexpr (I + 4 < P && I + 4 < static_cast<std::size_t>(NVAR)) flush_rows<I + 4>(fill);
    }

    EOL_ALWAYS_INLINE void flush(std::size_t fill) { flush_rows<0>(fill); }

    template <class M>
    void unpack(M& m) const {
        m.resize(Q, Q);
        for (std::size_t i = 0; i < kQ; ++i)
            for (std::size_t j = i; j < kQ; ++j)
                m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) =
                    m(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) = acc[i][j];
    }
};

/// Flushes subnormal numbers to zero on this thread while alive. Decaying
/// exponentials (e^{−t/τ} for a short τ over a long window) otherwise run
/// into subnormals, which cost ~100 cycles per operation on x86.
class FlushDenormals {
public:
#if defined(__SSE2__)
    FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
    ~FlushDenormals() { _mm_setcsr(saved_); }

private:
    unsigned saved_;
#endif
public:
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;
};

/// A validated window ready for the O(N) passes. t, i and v point into the
/// Series given to prepare(), which must outlive this.
struct Prepared {
    std::size_t n = 0;
    const double* t = nullptr;
    const double* i = nullptr;
    const double* v = nullptr;
    const double* ih = nullptr;  // current held over (t[s−1], t[s]], stored at s−1 (= i for raw data)
    std::vector<double> dt;      // dt[0] = 0, see snap_intervals
    double v_ref = 0.0;      // mean voltage (centres the target)
    double v_ss = 0.0;       // Σ (v − v_ref)²
    double sum_i = 0.0, sum_i2 = 0.0, sum_iy = 0.0;  // Σ I, Σ I², Σ I·(v − v_ref) (raw records)
    double dt_med = 0.0;     // median interval
    double span = 0.0;       // t[n−1] − t[0]
    double i_span = 0.0;     // max I − min I
    double i_max_abs = 0.0;  // max |I|
    double i_noise = 0.0;    // robust per-sample current noise (from successive differences)
};

/// Intervals t[k] − t[k−1] (index 0 is 0); an interval equal to the previous
/// one within 1e-9 relative is made exactly equal, so that timestamps like
/// k·0.001 (which differ in the last bits) form one uniform stretch and the
/// exponentials are computed once per stretch.
std::vector<double> snap_intervals(const double* t, std::size_t n);

/// Validates (Series::validate) and prepares. Throws InputError.
Prepared prepare(const Series& s, std::size_t min_samples, bool need_cell_temp);

/// Throws InputError when the current never changes beyond its noise.
void require_current_change(const Prepared& p);

/// Rows used to pick a start: all rows for short windows; otherwise every row
/// shortly after a current change and log-spaced rows later, each weighted
/// by the number of rows it stands for.
struct Row {
    std::size_t index;
    double sqrt_weight;
};
std::vector<Row> select_rows(const Prepared& p, std::size_t every_sample_up_to);

/// The record reduced to the selected rows, for finding a start: each row
/// keeps its time, current and voltage; the current held up to it is the
/// time-weighted mean of the original held currents (exact where the current
/// was constant, and the rows are dense after every change). `rows` are all
/// samples of the reduced record with the weights of the original selection.
/// Holds pointers into itself: not copyable.
struct Compressed {
    Prepared p;
    std::vector<double> t, i, ih, v;
    std::vector<Row> rows;
    Compressed() = default;
    Compressed(const Compressed&) = delete;
    Compressed& operator=(const Compressed&) = delete;
};
void compress(const Prepared& full, const std::vector<Row>& rows, Compressed& out);

}  // namespace eol::models::detail
