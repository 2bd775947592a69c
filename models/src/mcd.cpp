// FAST-MCD as scikit-learn 1.2 computes it (sklearn/covariance/_robust_covariance.py:
// c_step, select_candidates, fast_mcd, MinCovDet.fit/correct_covariance/
// reweight_covariance), reorganised for speed:
//  - the data stay an n×p column-major matrix; every pass over all rows runs in
//    fixed blocks of kBlock rows, on several threads, with per-block partial
//    sums reduced in block order (same result for any thread count);
//  - distances use a whitening matrix W (Cholesky L⁻¹, or the pseudo-inverse
//    square root when the scatter is singular, like sklearn's pinvh):
//    d² = |W(x - μ)|²;
//  - the h smallest distances are found by selection, not by sorting;
//  - support statistics are accumulated around a nearby centre (one pass, no
//    cancellation); on large n they are updated with the rows that enter and
//    leave the support instead of recomputed at each C-step;
//  - a candidate's final distance vector is computed only for the winner;
//  - identical starting estimates are iterated once.
// The random subsets come from an exact re-implementation of numpy's legacy
// RandomState.permutation, so the same seed gives sklearn's subsets.
#include "eol/models/mcd.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "eol/models/pat.hpp"
#include "eol/models/series.hpp"
#include "common.hpp"

namespace eol::models {
namespace {

using detail::cat;
using detail::parallel_for;
using detail::resolve_threads;

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
using ConstRef = Eigen::Ref<const Eigen::MatrixXd>;

constexpr std::size_t kBlock = 4096;          // rows per block of a data pass
constexpr std::size_t kParallelRows = 32768;  // below this a pass runs on one thread
constexpr double kInf = std::numeric_limits<double>::infinity();

// numpy.random.RandomState(seed): MT19937 seeded with init_genrand(seed);
// permutation(n) shuffles arange(n) by Fisher–Yates from the top, drawing
// j ∈ [0, i] by masked rejection on 32-bit outputs (random_interval).
class NumpyRandomState {
public:
    explicit NumpyRandomState(std::uint32_t seed) : mt_(seed) {}
    std::uint32_t interval(std::uint32_t max) {
        if (max == 0) return 0;
        std::uint32_t mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        std::uint32_t v;
        while ((v = static_cast<std::uint32_t>(mt_()) & mask) > max) {
        }
        return v;
    }
    void permutation(std::size_t n, std::vector<std::uint32_t>& out) {
        out.resize(n);
        std::iota(out.begin(), out.end(), 0u);
        for (std::size_t i = n; i-- > 1;) {
            const std::uint32_t j = interval(static_cast<std::uint32_t>(i));
            std::swap(out[i], out[j]);
        }
    }

private:
    std::mt19937 mt_;
};

// d² = |W z|²; W from the Cholesky factor (L⁻¹) or, when the matrix is not
// positive definite, from its eigen-decomposition with scipy.pinvh's cutoff.
struct Whitening {
    Mat w;
    double logdet = -kInf;  // log det Σ; -inf when not positive definite
};

Whitening whiten(const Mat& cov) {
    const auto p = cov.rows();
    Whitening r;
    Eigen::LLT<Mat> llt(cov);
    if (llt.info() == Eigen::Success) {
        const Mat L = llt.matrixL();
        bool ok = true;
        double ld = 0.0;
        for (Eigen::Index i = 0; i < p; ++i) {
            if (!(L(i, i) > 0.0) || !std::isfinite(L(i, i))) ok = false;
            ld += std::log(L(i, i));
        }
        if (ok) {
            r.w = L.triangularView<Eigen::Lower>().solve(Mat::Identity(p, p));
            r.logdet = 2.0 * ld;
            return r;
        }
    }
    Eigen::SelfAdjointEigenSolver<Mat> es(cov);
    const Vec& lam = es.eigenvalues();
    const double cutoff = static_cast<double>(p) * std::numeric_limits<double>::epsilon() *
                          lam.cwiseAbs().maxCoeff();
    Vec s(p);
    for (Eigen::Index i = 0; i < p; ++i) s(i) = std::fabs(lam(i)) > cutoff ? 1.0 / std::sqrt(std::fabs(lam(i))) : 0.0;
    r.w = s.asDiagonal() * es.eigenvectors().transpose();
    r.logdet = -kInf;
    return r;
}

// ---- Data passes ----------------------------------------------------------
// Kernels work on tiles of kTile rows with the p columns as separate arrays,
// so every inner loop runs over contiguous rows and vectorizes.

constexpr std::size_t kTile = 256;

// Generic kernels (any p), used above kMaxFixedKernelP features.
void dist_rows(const double* const* cols, std::size_t r0, std::size_t m, const double* loc, const double* w,
               bool lower, int p, double* __restrict zbuf, double* __restrict d) {
    alignas(64) double acc[kTile];
    for (std::size_t i0 = 0; i0 < m; i0 += kTile) {
        const std::size_t mb = std::min(kTile, m - i0);
        for (int j = 0; j < p; ++j) {
            const double* __restrict c = cols[j] + r0 + i0;
            const double l = loc[j];
            double* __restrict z = zbuf + static_cast<std::size_t>(j) * kTile;
            for (std::size_t i = 0; i < mb; ++i) z[i] = c[i] - l;
        }
        double* __restrict out = d + r0 + i0;
        for (std::size_t i = 0; i < mb; ++i) out[i] = 0.0;
        for (int j = 0; j < p; ++j) {
            const int kend = lower ? j + 1 : p;
            const double* wj = w + static_cast<std::size_t>(j) * static_cast<std::size_t>(p);
            {
                const double a = wj[0];
                const double* __restrict z = zbuf;
                for (std::size_t i = 0; i < mb; ++i) acc[i] = a * z[i];
            }
            for (int k = 1; k < kend; ++k) {
                const double a = wj[k];
                const double* __restrict z = zbuf + static_cast<std::size_t>(k) * kTile;
                for (std::size_t i = 0; i < mb; ++i) acc[i] += a * z[i];
            }
            for (std::size_t i = 0; i < mb; ++i) out[i] += acc[i] * acc[i];
        }
    }
}

// Sum and dot product with four independent partial sums (vectorizable
// without reassociation flags; fixed order, so deterministic).
inline double sum4(const double* __restrict a, std::size_t k) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t q = 0;
    for (; q + 4 <= k; q += 4) {
        s0 += a[q];
        s1 += a[q + 1];
        s2 += a[q + 2];
        s3 += a[q + 3];
    }
    for (; q < k; ++q) s0 += a[q];
    return (s0 + s1) + (s2 + s3);
}
inline double dot4(const double* __restrict a, const double* __restrict b, std::size_t k) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t q = 0;
    for (; q + 4 <= k; q += 4) {
        s0 += a[q] * b[q];
        s1 += a[q + 1] * b[q + 1];
        s2 += a[q + 2] * b[q + 2];
        s3 += a[q + 3] * b[q + 3];
    }
    for (; q < k; ++q) s0 += a[q] * b[q];
    return (s0 + s1) + (s2 + s3);
}

// s1 += Σ z, s2 (lower, row-major p×p) += Σ z zᵀ over the rows of [r0, r0+m)
// with mask ≠ 0, z = x - center. Returns the number of such rows.
std::size_t stats_rows(const double* const* cols, std::size_t r0, std::size_t m, const std::uint8_t* mask,
                       const double* center, int p, double* __restrict zbuf, std::uint32_t* __restrict sel,
                       double* __restrict s1, double* __restrict s2) {
    const auto pp = static_cast<std::size_t>(p);
    std::size_t count = 0;
    for (std::size_t i0 = 0; i0 < m; i0 += kTile) {
        const std::size_t mb = std::min(kTile, m - i0);
        std::size_t k = 0;
        for (std::size_t i = 0; i < mb; ++i) {  // branch-free compaction
            sel[k] = static_cast<std::uint32_t>(i);
            k += mask[r0 + i0 + i] != 0 ? 1u : 0u;
        }
        if (k == 0) continue;
        count += k;
        for (int j = 0; j < p; ++j) {
            const double* __restrict c = cols[j] + r0 + i0;
            const double cj = center[j];
            double* __restrict z = zbuf + static_cast<std::size_t>(j) * kTile;
            for (std::size_t q = 0; q < k; ++q) z[q] = c[sel[q]] - cj;
        }
        for (std::size_t j = 0; j < pp; ++j) {
            const double* zj = zbuf + j * kTile;
            s1[j] += sum4(zj, k);
            for (std::size_t l = 0; l <= j; ++l) s2[j * pp + l] += dot4(zj, zbuf + l * kTile, k);
        }
    }
    return count;
}

// Fixed-p kernels. For p ≤ kMaxFixedKernelP the loops over features unroll
// completely and the loop over rows vectorizes; they are compiled twice, for
// the baseline ISA and (x86-64) for AVX2+FMA, chosen at run time. FMA
// contraction makes the two differ in the last bits, not more.
//   dist_fixed: d[i] = |W (x_i - loc)|², W row-major (lower-triangular when
//               Lower); stats_fixed: like stats_rows, masked rows as weight 0.
#define EOL_MCD_FIXED_KERNELS                                                                            \
    using v4d = double __attribute__((vector_size(32)));                                                  \
    template <std::size_t P, bool Lower>                                                                         \
    void dist_fixed(const double* const* cols, std::size_t r0, std::size_t m, const double* loc,         \
                    const double* w, double* __restrict d) {                                             \
        double W[P][P];                                                                                  \
        double L[P];                                                                                     \
        const double* c[P];                                                                              \
        for (std::size_t j = 0; j < P; ++j) {                                                                    \
            L[j] = loc[j];                                                                               \
            c[j] = cols[j] + r0;                                                                         \
            for (std::size_t k = 0; k < P; ++k) W[j][k] = w[j * P + k];                                          \
        }                                                                                                \
        for (std::size_t i = 0; i < m; ++i) {                                                            \
            double z[P];                                                                                 \
            _Pragma("GCC unroll 16") for (std::size_t k = 0; k < P; ++k) z[k] = c[k][i] - L[k];                 \
            double s = 0.0;                                                                              \
            _Pragma("GCC unroll 16") for (std::size_t j = 0; j < P; ++j) {                                      \
                double a = 0.0;                                                                          \
                _Pragma("GCC unroll 16") for (std::size_t k = 0; k < (Lower ? j + 1 : P); ++k) a += W[j][k] * z[k]; \
                s += a * a;                                                                              \
            }                                                                                            \
            d[r0 + i] = s;                                                                               \
        }                                                                                                \
    }                                                                                                    \
    template <std::size_t P>                                                                                     \
    std::size_t stats_fixed(const double* const* cols, std::size_t r0, std::size_t m,                    \
                            const std::uint8_t* mask, const double* center, double* __restrict s1,       \
                            double* __restrict s2) {                                                     \
        alignas(64) double zt[P][kTile];                                                                 \
        double C[P];                                                                                     \
        const double* c[P];                                                                              \
        for (std::size_t j = 0; j < P; ++j) {                                                            \
            C[j] = center[j];                                                                            \
            c[j] = cols[j] + r0;                                                                         \
        }                                                                                                \
        std::size_t count = 0;                                                                           \
        for (std::size_t i0 = 0; i0 < m; i0 += kTile) {                                                  \
            const std::size_t mb = std::min(kTile, m - i0);                                              \
            const std::uint8_t* mt = mask + r0 + i0;                                                     \
            std::size_t cnt = 0;                                                                         \
            for (std::size_t i = 0; i < mb; ++i) cnt += mt[i];                                           \
            if (cnt == 0) continue;                                                                      \
            count += cnt;                                                                                \
            /* all P columns in one sweep: P sequential streams, like dist_fixed */                      \
            for (std::size_t i = 0; i < mb; ++i) {                                                       \
                const double w = mt[i] != 0 ? 1.0 : 0.0;                                                 \
                _Pragma("GCC unroll 16") for (std::size_t j = 0; j < P; ++j) zt[j][i] = (c[j][i0 + i] - C[j]) * w; \
            }                                                                                            \
            /* row j of Z'Z at once (all P columns, branch-free; only l <= j is kept): */               \
            /* z_j loaded once, P+1 independent accumulators; the rows beyond a          */              \
            /* multiple of 4 are added one by one.                                       */              \
            const std::size_t m4 = mb & ~std::size_t{3};                                                 \
            for (std::size_t j = 0; j < P; ++j) {                                                        \
                v4d acc[P + 1];                                                                          \
                _Pragma("GCC unroll 16") for (std::size_t l = 0; l <= P; ++l) acc[l] = v4d{0, 0, 0, 0};  \
                for (std::size_t q = 0; q < m4; q += 4) {                                                \
                    v4d va;                                                                              \
                    std::memcpy(&va, zt[j] + q, sizeof va);                                              \
                    acc[P] += va;                                                                        \
                    _Pragma("GCC unroll 16") for (std::size_t l = 0; l < P; ++l) {                       \
                        v4d vb;                                                                          \
                        std::memcpy(&vb, zt[l] + q, sizeof vb);                                          \
                        acc[l] += va * vb;                                                               \
                    }                                                                                    \
                }                                                                                        \
                double tail_s = 0.0;                                                                     \
                for (std::size_t q = m4; q < mb; ++q) tail_s += zt[j][q];                                \
                s1[j] += ((acc[P][0] + acc[P][1]) + (acc[P][2] + acc[P][3])) + tail_s;                   \
                for (std::size_t l = 0; l <= j; ++l) {                                                   \
                    double tail = 0.0;                                                                   \
                    for (std::size_t q = m4; q < mb; ++q) tail += zt[j][q] * zt[l][q];                   \
                    s2[j * P + l] += ((acc[l][0] + acc[l][1]) + (acc[l][2] + acc[l][3])) + tail;         \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
        return count;                                                                                    \
    }

constexpr std::size_t kMaxFixedKernelP = 10;
using DistFixedFn = void (*)(const double* const*, std::size_t, std::size_t, const double*, const double*,
                             double*);
using StatsFixedFn = std::size_t (*)(const double* const*, std::size_t, std::size_t, const std::uint8_t*,
                                     const double*, double*, double*);

#define EOL_MCD_KERNEL_TABLES                                                                         \
    template <std::size_t... I>                                                                       \
    constexpr std::array<DistFixedFn, sizeof...(I)> dist_table(std::index_sequence<I...>) {           \
        return {&dist_fixed<I + 1, true>...};                                       \
    }                                                                                                 \
    template <std::size_t... I>                                                                       \
    constexpr std::array<StatsFixedFn, sizeof...(I)> stats_table(std::index_sequence<I...>) {         \
        return {&stats_fixed<I + 1>...};                                            \
    }                                                                                                 \
    const auto kDistLower = dist_table(std::make_index_sequence<kMaxFixedKernelP>{});                 \
    const auto kStats = stats_table(std::make_index_sequence<kMaxFixedKernelP>{});

namespace base {
EOL_MCD_FIXED_KERNELS
EOL_MCD_KERNEL_TABLES
}  // namespace base
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
EOL_MCD_FIXED_KERNELS
EOL_MCD_KERNEL_TABLES
}  // namespace avx2
#pragma GCC pop_options
bool use_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#else
namespace avx2 = base;
bool use_avx2() { return false; }
#endif
#undef EOL_MCD_FIXED_KERNELS
#undef EOL_MCD_KERNEL_TABLES

DistFixedFn dist_fixed_fn(Eigen::Index p, bool lower) {
    if (p < 1 || static_cast<std::size_t>(p) > kMaxFixedKernelP) return nullptr;
    const auto i = static_cast<std::size_t>(p - 1);
    if (!lower) return nullptr;  // pseudo-inverse whitening (singular scatter): generic kernel
    return use_avx2() ? avx2::kDistLower[i] : base::kDistLower[i];
}
StatsFixedFn stats_fixed_fn(Eigen::Index p) {
    if (p < 1 || static_cast<std::size_t>(p) > kMaxFixedKernelP) return nullptr;
    const auto i = static_cast<std::size_t>(p - 1);
    return use_avx2() ? avx2::kStats[i] : base::kStats[i];
}

// Per-thread tile buffers and per-block partial sums, reused across passes.
struct Workspace {
    unsigned threads = 1;
    Eigen::Index p = 0;
    std::vector<std::vector<double>> zbuf;        // per thread p×kTile
    std::vector<std::vector<std::uint32_t>> sel;  // per thread kTile
    std::vector<double> s1, s2;                   // per block partials
    std::vector<std::size_t> cnt;
    std::vector<double> scratch;                  // selection
    std::vector<double> sample;
    std::vector<std::size_t> band_count, band_below;
    std::vector<std::vector<std::uint32_t>> add_b, rem_b;  // per block: rows entering / leaving

    Workspace(Eigen::Index features, unsigned t) : threads(t), p(features) {
        zbuf.assign(t, std::vector<double>(static_cast<std::size_t>(features) * kTile));
        sel.assign(t, std::vector<std::uint32_t>(kTile));
    }
    unsigned threads_for(std::size_t n) const { return n >= kParallelRows ? threads : 1u; }
};

std::size_t block_count(std::size_t n) { return (n + kBlock - 1) / kBlock; }

std::vector<const double*> column_pointers(const ConstRef& x) {
    std::vector<const double*> cols(static_cast<std::size_t>(x.cols()));
    for (Eigen::Index j = 0; j < x.cols(); ++j) cols[static_cast<std::size_t>(j)] = x.col(j).data();
    return cols;
}

// d[i] = |W (x_i - loc)|² for all rows.
void distances(const ConstRef& x, const Vec& loc, const Mat& w, double* d, Workspace& ws) {
    const auto n = static_cast<std::size_t>(x.rows());
    const Eigen::Index p = x.cols();
    const auto pp = static_cast<std::size_t>(p);
    std::vector<double> wrm(pp * pp);
    bool lower = true;
    for (Eigen::Index j = 0; j < p; ++j)
        for (Eigen::Index k = 0; k < p; ++k) {
            wrm[static_cast<std::size_t>(j) * pp + static_cast<std::size_t>(k)] = w(j, k);
            if (k > j && w(j, k) != 0.0) lower = false;
        }
    const auto cols = column_pointers(x);
    const DistFixedFn fixed = dist_fixed_fn(p, lower);
    parallel_for(block_count(n), ws.threads_for(n), [&](std::size_t b, unsigned t) {
        const std::size_t r0 = b * kBlock;
        const std::size_t m = std::min(kBlock, n - r0);
        if (fixed != nullptr) {
            fixed(cols.data(), r0, m, loc.data(), wrm.data(), d);
        } else {
            dist_rows(cols.data(), r0, m, loc.data(), wrm.data(), lower, static_cast<int>(p), ws.zbuf[t].data(), d);
        }
    });
}

// The h-th smallest of d[0, n) (1 ≤ h < n). Large n: the quantile is first
// bracketed from a strided sample; one (parallel, branch-free) pass counts the
// values below the bracket and collects those inside it, and only those are
// selected among. If the bracket misses (it cannot for data in random order,
// but rows may be sorted) the whole vector is selected among.
double kth_smallest(const double* d, std::size_t n, std::size_t h, Workspace& ws) {
    auto& scratch = ws.scratch;
    if (n >= 65536) {
        constexpr std::size_t kSample = 16384;
        auto& smp = ws.sample;
        smp.resize(kSample);
        for (std::size_t i = 0; i < kSample; ++i) smp[i] = d[(i * n) / kSample];
        const double q = static_cast<double>(h) / static_cast<double>(n);
        const double sd = std::sqrt(static_cast<double>(kSample) * q * (1.0 - q)) + 1.0;
        const double r_lo = q * static_cast<double>(kSample) - 8.0 * sd;
        const double r_hi = q * static_cast<double>(kSample) + 8.0 * sd;
        double lo = -kInf, hi = kInf;
        if (r_lo >= 0.0) {
            const auto r = static_cast<std::size_t>(r_lo);
            std::nth_element(smp.begin(), smp.begin() + static_cast<std::ptrdiff_t>(r), smp.end());
            lo = smp[r];
        }
        if (r_hi < static_cast<double>(kSample - 1)) {
            const auto r = static_cast<std::size_t>(r_hi) + 1;
            std::nth_element(smp.begin(), smp.begin() + static_cast<std::ptrdiff_t>(r), smp.end());
            hi = smp[r];
        }
        scratch.resize(n);
        const std::size_t nb = block_count(n);
        ws.band_count.assign(nb, 0);
        ws.band_below.assign(nb, 0);
        parallel_for(nb, ws.threads_for(n), [&](std::size_t b, unsigned) {
            const std::size_t r0 = b * kBlock;
            const std::size_t m = std::min(kBlock, n - r0);
            const double* __restrict src = d + r0;
            double* __restrict band = scratch.data() + r0;
            const double blo = lo, bhi = hi;  // locals: the stores below cannot alias them
            std::size_t below = 0, k = 0;
            for (std::size_t i = 0; i < m; ++i) {
                const double v = src[i];
                below += static_cast<std::size_t>(v < blo);
                band[k] = v;
                k += static_cast<std::size_t>((v >= blo) & (v <= bhi));
            }
            ws.band_count[b] = k;
            ws.band_below[b] = below;
        });
        std::size_t below = 0, k = 0;
        for (std::size_t b = 0; b < nb; ++b) {
            below += ws.band_below[b];
            if (k != b * kBlock && ws.band_count[b] > 0)
                std::memmove(scratch.data() + k, scratch.data() + b * kBlock, ws.band_count[b] * sizeof(double));
            k += ws.band_count[b];
        }
        if (below < h && h <= below + k) {
            double* band = scratch.data();
            const std::size_t r = h - below - 1;
            std::nth_element(band, band + r, band + k);
            return band[r];
        }
    }
    scratch.assign(d, d + n);
    std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(h - 1), scratch.end());
    return scratch[h - 1];
}

// mask[i] = 1 for the h rows of smallest d (ties at the h-th value: lowest
// indices first).
void select_smallest(const double* d, std::size_t n, std::size_t h, std::uint8_t* mask, Workspace& ws) {
    if (h >= n) {
        std::fill(mask, mask + n, std::uint8_t{1});
        return;
    }
    const double t = kth_smallest(d, n, h, ws);
    const std::size_t nb = block_count(n);
    ws.band_count.assign(nb, 0);
    parallel_for(nb, ws.threads_for(n), [&](std::size_t b, unsigned) {
        const std::size_t r0 = b * kBlock;
        const std::size_t m = std::min(kBlock, n - r0);
        const double* __restrict src = d + r0;
        std::uint8_t* __restrict out = mask + r0;
        const double tt = t;
        std::size_t c = 0;
        for (std::size_t i = 0; i < m; ++i) {
            const auto in = static_cast<std::uint8_t>(src[i] <= tt);
            out[i] = in;
            c += in;
        }
        ws.band_count[b] = c;
    });
    std::size_t count = 0;
    for (std::size_t b = 0; b < nb; ++b) count += ws.band_count[b];
    for (std::size_t i = n; i-- > 0 && count > h;) {  // ties beyond h: drop the last ones
        if (d[i] == t) {
            mask[i] = 0;
            --count;
        }
    }
}

// Sums over the rows with mask ≠ 0 of z = x - center: s1 = Σz, s2 = Σzzᵀ.
struct Sums {
    Vec center;
    Vec s1;
    Mat s2;
    std::size_t count = 0;
};

Sums support_sums(const ConstRef& x, const std::uint8_t* mask, const Vec& center, Workspace& ws) {
    const auto n = static_cast<std::size_t>(x.rows());
    const Eigen::Index p = x.cols();
    const std::size_t nb = block_count(n);
    const auto pp = static_cast<std::size_t>(p);
    ws.s1.assign(nb * pp, 0.0);
    ws.s2.assign(nb * pp * pp, 0.0);
    ws.cnt.assign(nb, 0);
    const auto cols = column_pointers(x);
    const StatsFixedFn fixed = stats_fixed_fn(p);
    parallel_for(nb, ws.threads_for(n), [&](std::size_t b, unsigned t) {
        const std::size_t r0 = b * kBlock;
        const std::size_t m = std::min(kBlock, n - r0);
        double* s1 = ws.s1.data() + b * pp;
        double* s2 = ws.s2.data() + b * pp * pp;
        ws.cnt[b] = fixed != nullptr ? fixed(cols.data(), r0, m, mask, center.data(), s1, s2)
                                     : stats_rows(cols.data(), r0, m, mask, center.data(), static_cast<int>(p),
                                                  ws.zbuf[t].data(), ws.sel[t].data(), s1, s2);
    });
    Sums s;
    s.center = center;
    s.s1 = Vec::Zero(p);
    s.s2 = Mat::Zero(p, p);
    for (std::size_t b = 0; b < nb; ++b) {
        for (std::size_t j = 0; j < pp; ++j) {
            s.s1(static_cast<Eigen::Index>(j)) += ws.s1[b * pp + j];
            for (std::size_t l = 0; l <= j; ++l)
                s.s2(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(l)) += ws.s2[b * pp * pp + j * pp + l];
        }
        s.count += ws.cnt[b];
    }
    s.s2.triangularView<Eigen::StrictlyUpper>() = s.s2.transpose().triangularView<Eigen::StrictlyUpper>();
    return s;
}

// Location and covariance (divided by the count, as sklearn's
// empirical_covariance) from the sums.
void finish_stats(const Sums& s, Vec& loc, Mat& cov) {
    const double c = static_cast<double>(s.count);
    const Vec off = s.s1 / c;
    loc = s.center + off;
    cov = s.s2 / c - off * off.transpose();
}

// Location and covariance of the rows with mask ≠ 0, accumulated around
// `center` (any point near the mean; it only controls rounding).
void support_stats(const ConstRef& x, const std::uint8_t* mask, const Vec& center, Vec& loc, Mat& cov,
                   Workspace& ws) {
    finish_stats(support_sums(x, mask, center, ws), loc, cov);
}

// Large n: the next support from the new distances, as the rows that enter
// and leave it (few after the first C-steps), so the sums are updated instead
// of recomputed. Returns false on ties at the h-th distance (then the caller
// resolves them and recomputes).
bool reselect(const double* d, std::size_t n, std::size_t h, std::uint8_t* mask, Workspace& ws,
              std::vector<std::uint32_t>& added, std::vector<std::uint32_t>& removed) {
    const double t = kth_smallest(d, n, h, ws);
    const std::size_t nb = block_count(n);
    ws.add_b.resize(nb);
    ws.rem_b.resize(nb);
    ws.band_count.assign(nb, 0);
    parallel_for(nb, ws.threads_for(n), [&](std::size_t b, unsigned) {
        const std::size_t r0 = b * kBlock;
        const std::size_t m = std::min(kBlock, n - r0);
        auto& add = ws.add_b[b];
        auto& rem = ws.rem_b[b];
        add.clear();
        rem.clear();
        const double tt = t;
        const double* __restrict src = d + r0;
        std::uint8_t* __restrict out = mask + r0;
        std::size_t c = 0;
        for (std::size_t i = 0; i < m; ++i) {
            const auto in = static_cast<std::uint8_t>(src[i] <= tt);
            c += in;
            if (in != out[i]) {
                (in ? add : rem).push_back(static_cast<std::uint32_t>(r0 + i));
                out[i] = in;
            }
        }
        ws.band_count[b] = c;
    });
    added.clear();
    removed.clear();
    std::size_t count = 0;
    for (std::size_t b = 0; b < nb; ++b) {
        added.insert(added.end(), ws.add_b[b].begin(), ws.add_b[b].end());
        removed.insert(removed.end(), ws.rem_b[b].begin(), ws.rem_b[b].end());
        count += ws.band_count[b];
    }
    if (count == h) return true;
    for (std::size_t i = n; i-- > 0 && count > h;) {  // ties beyond h: drop the last ones
        if (d[i] == t && mask[i] != 0) {
            mask[i] = 0;
            --count;
        }
    }
    return false;
}

void apply_delta(const ConstRef& x, Sums& s, const std::vector<std::uint32_t>& rows, double sign) {
    const Eigen::Index p = x.cols();
    Vec z(p);
    for (std::uint32_t r : rows) {
        for (Eigen::Index j = 0; j < p; ++j) z(j) = x(static_cast<Eigen::Index>(r), j) - s.center(j);
        s.s1 += sign * z;
        s.s2.noalias() += (sign * z) * z.transpose();
    }
}

Vec masked_mean(const ConstRef& x, const std::uint8_t* mask) {
    Vec s = Vec::Zero(x.cols());
    std::size_t c = 0;
    for (Eigen::Index i = 0; i < x.rows(); ++i) {
        if (mask[i] == 0) continue;
        s += x.row(i).transpose();
        ++c;
    }
    return s / static_cast<double>(c);
}

// One result of sklearn's _c_step. Its distance vector is not stored: it is
// |dist_w (x - dist_loc)|² and computed only when needed.
struct Candidate {
    Vec loc;
    Mat cov;
    double logdet = kInf;
    std::vector<std::uint8_t> support;
    Vec dist_loc;
    Mat dist_w;
    std::size_t steps = 0;  // C-steps taken
};

bool allclose(double a, double b) {  // numpy.allclose for scalars (inf == inf)
    if (std::isinf(a) || std::isinf(b)) return a == b;
    return std::fabs(a - b) <= 1e-8 + 1e-5 * std::fabs(b);
}

// sklearn _c_step: from a random h-subset (`start` = the rows) or from an
// initial estimate, C-steps while the determinant decreases, at most
// `iterations`.
Candidate c_step(const ConstRef& x, std::size_t h, const std::uint32_t* start, const Vec* init_loc,
                 const Mat* init_cov, int iterations, Workspace& ws, std::vector<double>& dist) {
    const auto n = static_cast<std::size_t>(x.rows());
    dist.resize(n);
    Candidate cur;
    cur.support.assign(n, 0);
    Vec center;
    if (start != nullptr) {
        for (std::size_t i = 0; i < h; ++i) cur.support[start[i]] = 1;
        center = masked_mean(x, cur.support.data());
    } else {
        const Whitening w0 = whiten(*init_cov);
        distances(x, *init_loc, w0.w, dist.data(), ws);
        select_smallest(dist.data(), n, h, cur.support.data(), ws);
        center = *init_loc;
    }
    // Large n: sums around a fixed center, updated with the rows that enter
    // and leave the support; small n: recomputed around the last location.
    const bool incremental = n >= kParallelRows;
    Sums sums = support_sums(x, cur.support.data(), center, ws);
    finish_stats(sums, cur.loc, cur.cov);
    std::vector<std::uint32_t> added, removed;
    Whitening wcur = whiten(cur.cov);
    cur.logdet = wcur.logdet;
    Mat w_last = wcur.w;  // `precision` in sklearn: of the covariance before the last update
    Candidate prev;
    double prev_det = kInf;
    bool looped = false;
    while (cur.logdet < prev_det && iterations > 0 && !std::isinf(cur.logdet)) {
        prev = cur;
        prev_det = cur.logdet;
        w_last = wcur.w;
        distances(x, cur.loc, w_last, dist.data(), ws);
        if (incremental) {
            if (reselect(dist.data(), n, h, cur.support.data(), ws, added, removed)) {
                apply_delta(x, sums, added, 1.0);
                apply_delta(x, sums, removed, -1.0);
            } else {
                sums = support_sums(x, cur.support.data(), sums.center, ws);
            }
            finish_stats(sums, cur.loc, cur.cov);
        } else {
            select_smallest(dist.data(), n, h, cur.support.data(), ws);
            support_stats(x, cur.support.data(), prev.loc, cur.loc, cur.cov, ws);
        }
        wcur = whiten(cur.cov);
        cur.logdet = wcur.logdet;
        ++cur.steps;
        --iterations;
        looped = true;
    }
    // sklearn's final dist uses the new location with the last precision;
    // `previous_dist` is the last computed vector (prev location, same W).
    cur.dist_loc = cur.loc;
    cur.dist_w = w_last;
    Candidate result = cur;
    if (looped && !allclose(cur.logdet, prev_det) && cur.logdet > prev_det) {
        result = prev;  // "Determinant has increased; this should not happen"
        result.steps = cur.steps;
        result.dist_loc = prev.loc;
        result.dist_w = w_last;
    }
    if (iterations == 0) result = cur;
    return result;
}

std::vector<Candidate> pick_best(std::vector<Candidate> all, std::size_t select) {
    std::vector<std::size_t> order(all.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return all[a].logdet < all[b].logdet; });
    std::vector<Candidate> best;
    for (std::size_t i = 0; i < std::min(select, order.size()); ++i) best.push_back(std::move(all[order[i]]));
    return best;
}

// sklearn select_candidates from random starts: `starts` holds, per trial,
// the first h entries of the permutation drawn for it.
std::vector<Candidate> select_from_random(const ConstRef& x, std::size_t h,
                                          const std::vector<std::uint32_t>& starts, std::size_t trials,
                                          std::size_t select, int iterations, unsigned threads) {
    std::vector<Candidate> all(trials);
    const unsigned t_count = x.rows() >= static_cast<Eigen::Index>(kParallelRows) ? 1u : threads;
    std::vector<Workspace> ws;
    std::vector<std::vector<double>> dist(std::max(1u, t_count));
    for (unsigned t = 0; t < std::max(1u, t_count); ++t) ws.emplace_back(x.cols(), t_count == 1 ? threads : 1u);
    parallel_for(trials, t_count, [&](std::size_t j, unsigned t) {
        all[j] = c_step(x, h, starts.data() + j * h, nullptr, nullptr, iterations, ws[t], dist[t]);
    });
    return pick_best(std::move(all), select);
}

// sklearn select_candidates from initial estimates (identical ones are
// iterated once: the C-steps are deterministic).
std::vector<Candidate> select_from_estimates(const ConstRef& x, std::size_t h,
                                             const std::vector<Candidate>& inits, std::size_t select,
                                             int iterations, unsigned threads, std::size_t* steps = nullptr) {
    const std::size_t m = inits.size();
    std::vector<std::size_t> same_as(m);
    for (std::size_t j = 0; j < m; ++j) {
        same_as[j] = j;
        for (std::size_t i = 0; i < j; ++i) {
            if (same_as[i] == i && inits[i].loc == inits[j].loc && inits[i].cov == inits[j].cov) {
                same_as[j] = i;
                break;
            }
        }
    }
    std::vector<std::size_t> unique;
    for (std::size_t j = 0; j < m; ++j)
        if (same_as[j] == j) unique.push_back(j);
    std::vector<Candidate> all(m);
    const unsigned t_count = x.rows() >= static_cast<Eigen::Index>(kParallelRows) ? 1u : threads;
    std::vector<Workspace> ws;
    std::vector<std::vector<double>> dist(std::max(1u, t_count));
    for (unsigned t = 0; t < std::max(1u, t_count); ++t) ws.emplace_back(x.cols(), t_count == 1 ? threads : 1u);
    parallel_for(unique.size(), t_count, [&](std::size_t u, unsigned t) {
        const std::size_t j = unique[u];
        all[j] = c_step(x, h, nullptr, &inits[j].loc, &inits[j].cov, iterations, ws[t], dist[t]);
    });
    if (steps != nullptr)
        for (std::size_t j : unique) *steps += all[j].steps;
    for (std::size_t j = 0; j < m; ++j)
        if (same_as[j] != j) all[j] = all[same_as[j]];
    return pick_best(std::move(all), select);
}

Mat gather_rows(const ConstRef& x, const std::uint32_t* rows, std::size_t count) {
    Mat out(static_cast<Eigen::Index>(count), x.cols());
    for (Eigen::Index j = 0; j < x.cols(); ++j)
        for (std::size_t i = 0; i < count; ++i) out(static_cast<Eigen::Index>(i), j) = x(rows[i], j);
    return out;
}

struct RawMcd {
    Vec loc;
    Mat cov;
    std::vector<std::uint8_t> support;
    std::vector<double> dist;
    std::size_t subsets = 0;
    std::size_t full_steps = 0;
};

// sklearn fast_mcd for one feature: the shortest half.
RawMcd fast_mcd_univariate(const ConstRef& x, std::size_t h) {
    const auto n = static_cast<std::size_t>(x.rows());
    RawMcd r;
    r.support.assign(n, 0);
    r.dist.resize(n);
    std::vector<double> v(x.col(0).data(), x.col(0).data() + n);
    double loc;
    if (h < n) {
        std::sort(v.begin(), v.end());
        double best = kInf;
        for (std::size_t i = 0; i + h < n; ++i) best = std::min(best, v[i + h] - v[i]);
        double sum = 0.0;
        std::size_t cnt = 0;
        for (std::size_t i = 0; i + h < n; ++i) {
            if (v[i + h] - v[i] == best) {
                sum += 0.5 * (v[h + i] + v[i]);
                ++cnt;
            }
        }
        loc = sum / static_cast<double>(cnt);
        std::vector<double> dev(n);
        for (std::size_t i = 0; i < n; ++i) dev[i] = std::fabs(x(static_cast<Eigen::Index>(i), 0) - loc);
        Workspace ws(1, 1);
        select_smallest(dev.data(), n, h, r.support.data(), ws);
    } else {
        std::fill(r.support.begin(), r.support.end(), std::uint8_t{1});
        loc = x.col(0).mean();
    }
    double m = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        if (r.support[i]) m += x(static_cast<Eigen::Index>(i), 0);
    m /= static_cast<double>(h);
    double var = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        if (r.support[i]) var += (x(static_cast<Eigen::Index>(i), 0) - m) * (x(static_cast<Eigen::Index>(i), 0) - m);
    var /= static_cast<double>(h);
    r.loc = Vec::Constant(1, loc);
    r.cov = Mat::Constant(1, 1, var);
    const double prec = var > 0.0 ? 1.0 / var : 0.0;  // pinvh of a 1×1
    for (std::size_t i = 0; i < n; ++i) {
        const double z = x(static_cast<Eigen::Index>(i), 0) - loc;
        r.dist[i] = z * z * prec;
    }
    return r;
}

RawMcd finish(const ConstRef& x, Candidate&& c, Workspace& ws) {
    RawMcd r;
    r.loc = std::move(c.loc);
    r.cov = std::move(c.cov);
    r.support = std::move(c.support);
    r.dist.resize(static_cast<std::size_t>(x.rows()));
    distances(x, c.dist_loc, c.dist_w, r.dist.data(), ws);
    return r;
}

// sklearn fast_mcd, p > 1.
RawMcd fast_mcd(const ConstRef& x, std::size_t h, const McdSettings& s, unsigned threads) {
    const auto n = static_cast<std::size_t>(x.rows());
    const Eigen::Index p = x.cols();
    NumpyRandomState rng(s.seed);
    Workspace ws(p, threads);
    std::vector<std::uint32_t> perm;
    if (n > 500) {
        const std::size_t n_subsets_all = n / 300;
        const std::size_t n_sub = n / n_subsets_all;
        const std::size_t used = s.max_subsets == 0 ? n_subsets_all : std::min(s.max_subsets, n_subsets_all);
        std::vector<std::uint32_t> shuffle;
        rng.permutation(n, shuffle);
        const auto h_sub = static_cast<std::size_t>(
            std::ceil(static_cast<double>(n_sub) * (static_cast<double>(h) / static_cast<double>(n))));
        const std::size_t trials = std::max<std::size_t>(10, 500 / used);
        const std::size_t best_sub = 10;
        // All random starts in the order sklearn draws them.
        std::vector<std::uint32_t> starts(used * trials * h_sub);
        for (std::size_t i = 0; i < used; ++i) {
            for (std::size_t j = 0; j < trials; ++j) {
                rng.permutation(n_sub, perm);
                std::copy_n(perm.begin(), h_sub, starts.begin() + static_cast<std::ptrdiff_t>((i * trials + j) * h_sub));
            }
        }
        std::vector<Candidate> pooled(used * best_sub);
        for (std::size_t i = 0; i < used; ++i) {  // trials run in parallel inside
            const Mat sub = gather_rows(x, shuffle.data() + i * n_sub, n_sub);
            std::vector<std::uint32_t> st(starts.begin() + static_cast<std::ptrdiff_t>(i * trials * h_sub),
                                          starts.begin() + static_cast<std::ptrdiff_t>((i + 1) * trials * h_sub));
            auto best = select_from_random(sub, h_sub, st, trials, best_sub, 2, threads);
            for (std::size_t k = 0; k < best.size(); ++k) pooled[i * best_sub + k] = std::move(best[k]);
        }
        const std::size_t n_merged = std::min<std::size_t>(1500, n);
        const auto h_merged = static_cast<std::size_t>(
            std::ceil(static_cast<double>(n_merged) * (static_cast<double>(h) / static_cast<double>(n))));
        const std::size_t best_merged = n > 1500 ? 10 : 1;
        rng.permutation(n, perm);
        const Mat merged = gather_rows(x, perm.data(), n_merged);
        auto cands = select_from_estimates(merged, h_merged, pooled, best_merged, 30, threads);
        RawMcd r;
        r.subsets = used;
        if (n < 1500) {
            Candidate& c = cands[0];
            std::vector<double> dm(n_merged);
            Workspace ws1(p, 1);
            distances(merged, c.dist_loc, c.dist_w, dm.data(), ws1);
            r.loc = c.loc;
            r.cov = c.cov;
            r.support.assign(n, 0);
            r.dist.assign(n, 0.0);
            for (std::size_t i = 0; i < n_merged; ++i) {
                r.support[perm[i]] = c.support[i];
                r.dist[perm[i]] = dm[i];
            }
            return r;
        }
        std::size_t steps = 0;
        auto full = select_from_estimates(x, h, cands, 1, 30, threads, &steps);
        RawMcd out = finish(x, std::move(full[0]), ws);
        out.subsets = used;
        out.full_steps = steps;
        return out;
    }
    const std::size_t trials = 30;
    std::vector<std::uint32_t> starts(trials * h);
    for (std::size_t j = 0; j < trials; ++j) {
        rng.permutation(n, perm);
        std::copy_n(perm.begin(), h, starts.begin() + static_cast<std::ptrdiff_t>(j * h));
    }
    auto best = select_from_random(x, h, starts, trials, 10, 2, threads);
    std::size_t steps = 0;
    auto full = select_from_estimates(x, h, best, 1, 30, threads, &steps);
    RawMcd out = finish(x, std::move(full[0]), ws);
    out.full_steps = steps;
    return out;
}

}  // namespace

McdResult fit_mcd(const Eigen::Ref<const Eigen::MatrixXd>& x, const McdSettings& settings) {
    const auto n = static_cast<std::size_t>(x.rows());
    const Eigen::Index p = x.cols();
    if (p < 1) throw InputError("MCD: no features");
    if (n < 2) throw InputError(cat("MCD: ", n, " row(s); at least 2 needed"));
    if (n <= static_cast<std::size_t>(p))
        throw InputError(cat("MCD: ", n, " rows for ", p, " features; need more rows than features"));
    for (Eigen::Index j = 0; j < p; ++j)
        for (Eigen::Index i = 0; i < x.rows(); ++i)
            if (!std::isfinite(x(i, j)))
                throw InputError(cat("MCD: row ", i, ", feature ", j, " is not finite (", x(i, j), ")"));
    std::size_t h;
    if (settings.support_fraction == 0.0) {
        h = (n + static_cast<std::size_t>(p) + 2) / 2;  // ⌈(n+p+1)/2⌉
    } else {
        if (!(settings.support_fraction > 0.0 && settings.support_fraction <= 1.0))
            throw InputError(cat("MCD: support fraction ", settings.support_fraction, " outside (0, 1]"));
        h = static_cast<std::size_t>(settings.support_fraction * static_cast<double>(n));
    }
    if (h <= static_cast<std::size_t>(p))
        throw InputError(cat("MCD: support of ", h, " rows for ", p, " features; need more rows than features"));
    const unsigned threads = resolve_threads(settings.threads);

    RawMcd raw = p == 1 ? fast_mcd_univariate(x, h) : fast_mcd(x, h, settings, threads);

    McdResult r;
    r.h = h;
    r.subsets_used = raw.subsets;
    r.full_c_steps = raw.full_steps;
    r.raw_location = raw.loc;
    r.raw_covariance = raw.cov;
    r.raw_support = raw.support;
    const std::size_t n_support = static_cast<std::size_t>(std::count(raw.support.begin(), raw.support.end(), 1));
    if (n_support < n && raw.cov.cwiseAbs().maxCoeff() <= 1e-8)
        throw InputError("MCD: the covariance of the support is zero (more than half the rows are identical)");

    // Consistency correction: only the distances are rescaled (sklearn 1.2
    // discards the corrected covariance itself).
    std::vector<double> tmp(raw.dist);
    const double correction = median_inplace(tmp) / chi2_quantile(0.5, static_cast<double>(p));
    r.correction = correction;
    for (double& d : raw.dist) d /= correction;

    // Reweighting: rows with corrected d² < χ²_p(0.975).
    const double cut = chi2_quantile(0.975, static_cast<double>(p));
    r.support.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) r.support[i] = raw.dist[i] < cut ? 1 : 0;
    Workspace ws(p, threads);
    support_stats(x, r.support.data(), raw.loc, r.location, r.covariance, ws);
    const Whitening w = whiten(r.covariance);
    if (std::isinf(w.logdet))
        throw InputError("MCD: the reweighted covariance is singular (a feature is constant over most rows)");
    r.distance_sq.resize(n);
    distances(x, r.location, w.w, r.distance_sq.data(), ws);
    return r;
}

std::vector<double> mahalanobis_sq(const Eigen::Ref<const Eigen::MatrixXd>& x, const Eigen::VectorXd& location,
                                   const Eigen::MatrixXd& covariance, unsigned threads) {
    if (location.size() != x.cols() || covariance.rows() != x.cols() || covariance.cols() != x.cols())
        throw InputError(cat("Mahalanobis: ", x.cols(), " features but location of ", location.size(),
                             " and covariance of ", covariance.rows(), "×", covariance.cols()));
    Workspace ws(x.cols(), resolve_threads(threads));
    std::vector<double> d(static_cast<std::size_t>(x.rows()));
    distances(x, location, whiten(covariance).w, d.data(), ws);
    return d;
}

ContributionWhitener::ContributionWhitener(const Eigen::MatrixXd& covariance) {
    Eigen::SelfAdjointEigenSolver<Mat> es(covariance);
    const Vec& lam = es.eigenvalues();
    const auto p = covariance.rows();
    const double cutoff = static_cast<double>(p) * std::numeric_limits<double>::epsilon() *
                          lam.cwiseAbs().maxCoeff();
    Vec s(p);
    for (Eigen::Index i = 0; i < p; ++i) s(i) = lam(i) > cutoff ? 1.0 / std::sqrt(lam(i)) : 0.0;
    inv_sqrt_ = es.eigenvectors() * s.asDiagonal() * es.eigenvectors().transpose();
    sd_ = covariance.diagonal().cwiseSqrt();
}

std::vector<FeatureContribution> ContributionWhitener::contributions(const Eigen::VectorXd& x,
                                                                     const Eigen::VectorXd& location) const {
    const Vec z = x - location;
    const Vec w = inv_sqrt_ * z;
    const double d2 = w.squaredNorm();
    std::vector<FeatureContribution> out(static_cast<std::size_t>(z.size()));
    for (Eigen::Index j = 0; j < z.size(); ++j) {
        auto& c = out[static_cast<std::size_t>(j)];
        c.feature = static_cast<std::size_t>(j);
        c.share = d2 > 0.0 ? w(j) * w(j) / d2 : 0.0;
        c.z = sd_(j) > 0.0 ? z(j) / sd_(j) : 0.0;
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const FeatureContribution& a, const FeatureContribution& b) { return a.share > b.share; });
    return out;
}

}  // namespace eol::models
