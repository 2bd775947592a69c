#include "eol/models/ecm.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include "fit_common.hpp"
#include "varpro.hpp"

namespace eol::models {
namespace {

using detail::Layout;
using detail::SmallMat;
using detail::SmallVec;

constexpr int kMaxRc = 3;
constexpr int kMaxGrid = 14;

/// One O(N) pass: RC states for unit resistance, their derivatives with
/// respect to log τ (second recursion), and the Gram matrix of
///   [1, −I, −x_k, (−e_k), −∂x_k/∂θ_k, (−∂e_k/∂θ_k), y].
template <int NRC, bool FREE>
struct EcmPass {
    static constexpr int L = 2 + NRC + (FREE ? NRC : 0);
    static constexpr int D = FREE ? 2 * NRC : NRC;
    static constexpr int Q = L + D + 1;
    static constexpr std::size_t kN = static_cast<std::size_t>(NRC);
    // Kernel column order: the columns that change with τ first
    //   [−x_k, (−e_k), −∂x_k, (−∂e_k)]  (NVAR of them), then the data [1, −I, y],
    // whose mutual products are computed once (data_gram) instead of per pass.
    static constexpr int NVAR = FREE ? 4 * NRC : 2 * NRC;
    static constexpr std::size_t kV = static_cast<std::size_t>(NVAR);
    using Acc = detail::GramAcc<Q, NVAR>;

    const detail::Prepared& p;
    const std::vector<detail::Row>* subset = nullptr;  // null: every row
    double data_gram[3][3] = {};

    explicit EcmPass(const detail::Prepared& prep, const std::vector<detail::Row>* rows = nullptr)
        : p(prep), subset(rows) {
        auto add = [&](std::size_t s, double w) {
            const double z[3] = {w, -w * p.i[s], w * (p.v[s] - p.v_ref)};
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) data_gram[a][b] += z[a] * z[b];
        };
        if (subset) {
            for (const auto& r : *subset) add(r.index, r.sqrt_weight);
            return;
        }
        // Every row: from the sums prepare() took (Σ(v − v_ref) = 0).
        const double n = static_cast<double>(p.n);
        const double g[3][3] = {{n, -p.sum_i, 0.0}, {-p.sum_i, p.sum_i2, -p.sum_iy}, {0.0, -p.sum_iy, p.v_ss}};
        for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b) data_gram[a][b] = g[a][b];
    }

    /// Position in the variable-projection layout [1, −I, −x, (−e) | −∂x, (−∂e) | y]
    /// of each kernel column.
    static constexpr int varpro_index(int c) {
        if (c < NRC) return 2 + c;                                   // −x_k
        if (FREE && c < 2 * NRC) return 2 + c;                       // −e_k
        if (c < NVAR) return L + (c - (FREE ? 2 * NRC : NRC));       // −∂x_k, (−∂e_k)
        return c == NVAR ? 0 : (c == NVAR + 1 ? 1 : Q - 1);          // 1, −I, y
    }

    void unpack(const Acc& acc, SmallMat& m) const {
        m.resize(Q, Q);
        for (int i = 0; i < Q; ++i)
            for (int j = i; j < Q; ++j) {
                const double x = i < NVAR ? acc.acc[i][j] : data_gram[i - NVAR][j - NVAR];
                m(varpro_index(i), varpro_index(j)) = m(varpro_index(j), varpro_index(i)) = x;
            }
    }

    static Layout layout() {
        Layout lay;
        lay.n_lin = L;
        lay.n_deriv = D;
        lay.n_theta = NRC;
        for (int k = 0; k < NRC; ++k) {
            lay.deriv_theta[static_cast<std::size_t>(k)] = k;
            lay.deriv_lin[static_cast<std::size_t>(k)] = 2 + k;
            if (FREE) {
                lay.deriv_theta[static_cast<std::size_t>(NRC + k)] = k;
                lay.deriv_lin[static_cast<std::size_t>(NRC + k)] = 2 + NRC + k;
            }
        }
        return lay;
    }

    typedef double v4d __attribute__((vector_size(32)));

    /// The held-current update's coefficients for an interval h: a = e^{−h/τ},
    /// b = 1 − a, per pair. An interval close to the last exponentiated one
    /// (a jittered logger) reuses it: a = a_ref·e^{−δ}, δ = (h − h_ref)/τ, by a
    /// series exact to rounding for |δ| ≤ 1e-3; otherwise a fresh expm1.
    struct IntervalCoeffs {
        double h_ref = -1.0;
        v4d a_ref = {0, 0, 0, 0}, b_ref = {0, 0, 0, 0};

        EOL_ALWAYS_INLINE void update(double h, v4d inv_tau, v4d& a, v4d& b) {
            const v4d d = (h - h_ref) * inv_tau;
            double dmax = 0.0;
            for (std::size_t k = 0; k < kN; ++k) dmax = std::max(dmax, std::abs(d[k]));
            if (h_ref > 0.0 && dmax <= 1e-3) {
                const v4d em = d * (1.0 - d * (0.5 - d * (1.0 / 6.0 - d * (1.0 / 24.0 - d * (1.0 / 120.0)))));
                a = a_ref * (1.0 - em);
                b = b_ref + a_ref * em;
            } else {
                for (std::size_t k = 0; k < kN; ++k) {
                    const double em1 = std::expm1(-h * inv_tau[k]);
                    a[k] = 1.0 + em1;
                    b[k] = -em1;
                }
                a_ref = a;
                b_ref = b;
                h_ref = h;
            }
        }
    };

    /// The pass proper. States of all pairs live in one 4-lane vector each
    /// (lanes ≥ NRC stay zero), so the recursions run in registers.
    template <bool SUB>
    EOL_ALWAYS_INLINE static void body(const detail::Prepared& p, const double* theta, const detail::Row* rows,
                                       std::size_t n_rows, Acc& acc) {
        v4d inv_tau = {0, 0, 0, 0}, x = {0, 0, 0, 0}, dx = {0, 0, 0, 0}, e = {0, 0, 0, 0};
        v4d a = {0, 0, 0, 0}, b = {0, 0, 0, 0}, g = {0, 0, 0, 0};
        for (std::size_t k = 0; k < kN; ++k) {
            inv_tau[k] = std::exp(-theta[k]);
            e[k] = 1.0;
        }
        const std::size_t n = p.n;
        const double* t = p.t;
        const double* dt = p.dt.data();
        const double* cur = p.i;
        const double* held = p.ih;
        const double* v = p.v;
        const double v_ref = p.v_ref;
        // With a row subset (SUB), only those rows enter the Gram matrix, scaled
        // by the square root of their weight; the recursion sees every sample.
        std::size_t next = 0, fill = 0;
        IntervalCoeffs coeffs;
        auto emit = [&](std::size_t s) EOL_ALWAYS_INLINE_LAMBDA {
            double w = 1.0;
            if (SUB) {
                if (next >= n_rows || rows[next].index != s) return;
                w = rows[next++].sqrt_weight;
            }
            // Each 4-lane store starts where the previous block's valid lanes
            // end; the data columns are written last.
            double* z = acc.buf[fill++];
            const v4d xs = -w * x;
            __builtin_memcpy(z, &xs, sizeof xs);
            if (FREE) {
                const v4d es = -w * e;
                __builtin_memcpy(z + kN, &es, sizeof es);
            }
            const v4d dxs = -w * dx;
            __builtin_memcpy(z + (FREE ? 2 * kN : kN), &dxs, sizeof dxs);
            if (FREE) {
                const v4d des = (-w * (t[s] - t[0])) * e * inv_tau;
                __builtin_memcpy(z + 3 * kN, &des, sizeof des);
            }
            z[kV] = w;
            z[kV + 1] = -w * cur[s];
            z[kV + 2] = w * (v[s] - v_ref);
        };
        emit(0);
        std::size_t s = 1;
        while (s < n) {
            // New interval: the exponentials (library calls) are computed here,
            // outside the inner loop, so its state stays in registers.
            const double h = dt[s];
            coeffs.update(h, inv_tau, a, b);
            g = a * h * inv_tau;  // ∂a/∂log τ
            // All following samples with the same interval, up to a full block.
            do {
                const double ip = held[s - 1];
                dx = a * dx + g * (x - ip);
                x = a * x + b * ip;
                if (FREE) e = a * e;
                emit(s);
                ++s;
                if (fill == Acc::B) {
                    acc.flush(fill);
                    fill = 0;
                }
            } while (s < n && dt[s] == h);
        }
        acc.flush(fill);
    }

    /// Every row, fixed initial state, at most 2 pairs (the common case):
    /// z = [−x_1, (−x_2), −∂x_1, (−∂x_2)] fits one 4-lane vector, and its
    /// outer product with itself and with the data [1, −I, y] is summed in
    /// registers (z·z, z·rot1(z), z·rot2(z) hold every pair of lanes), so no
    /// sample goes through the block buffer.
    static constexpr bool kDirect = !FREE && NRC <= 2;

    EOL_ALWAYS_INLINE static void body_direct(const detail::Prepared& p, const double* theta, Acc& acc) {
        v4d inv_tau = {0, 0, 0, 0}, x = {0, 0, 0, 0}, dx = {0, 0, 0, 0};
        v4d a = {0, 0, 0, 0}, b = {0, 0, 0, 0}, g = {0, 0, 0, 0};
        for (std::size_t k = 0; k < kN; ++k) inv_tau[k] = std::exp(-theta[k]);
        v4d p0 = {0, 0, 0, 0}, p1 = p0, p2 = p0, d0 = p0, d1 = p0, d2 = p0;
        const std::size_t n = p.n;
        const double* dt = p.dt.data();
        const double* cur = p.i;
        const double* held = p.ih;
        const double* v = p.v;
        const double v_ref = p.v_ref;
        auto add = [&](std::size_t s) EOL_ALWAYS_INLINE_LAMBDA {
            v4d z;
            if constexpr (NRC == 2)
                z = __builtin_shufflevector(x, dx, 0, 1, 4, 5);
            else
                z = __builtin_shufflevector(x, dx, 0, 4, 2, 3);
            z = -z;
            p0 += z * z;
            p1 += z * __builtin_shufflevector(z, z, 1, 2, 3, 0);
            p2 += z * __builtin_shufflevector(z, z, 2, 3, 0, 1);
            d0 += z;
            d1 += z * -cur[s];
            d2 += z * (v[s] - v_ref);
        };
        add(0);
        IntervalCoeffs coeffs;
        std::size_t s = 1;
        while (s < n) {
            const double h = dt[s];
            coeffs.update(h, inv_tau, a, b);
            g = a * h * inv_tau;
            do {
                const double ip = held[s - 1];
                dx = a * dx + g * (x - ip);
                x = a * x + b * ip;
                add(s);
                ++s;
            } while (s < n && dt[s] == h);
        }
        // Into the layout body() leaves: rows < NVAR of the upper triangle.
        auto pair = [&](std::size_t i, std::size_t j) {
            switch (j - i) {
                case 0: return p0[i];
                case 1: return p1[i];
                case 2: return p2[i];
                default: return p1[j];  // (3, 0)
            }
        };
        for (std::size_t i = 0; i < kV; ++i) {
            for (std::size_t j = i; j < kV; ++j) acc.acc[i][j] = pair(i, j);
            acc.acc[i][kV] = d0[i];
            acc.acc[i][kV + 1] = d1[i];
            acc.acc[i][kV + 2] = d2[i];
        }
    }

    EOL_TARGET_AVX2 static void body_avx2(const detail::Prepared& p, const double* theta, const detail::Row* rows,
                                          std::size_t n_rows, Acc& acc) {
        if (rows)
            body<true>(p, theta, rows, n_rows, acc);
        else if constexpr (kDirect)
            body_direct(p, theta, acc);
        else
            body<false>(p, theta, rows, n_rows, acc);
    }
    static void body_base(const detail::Prepared& p, const double* theta, const detail::Row* rows,
                          std::size_t n_rows, Acc& acc) {
        if (rows)
            body<true>(p, theta, rows, n_rows, acc);
        else if constexpr (kDirect)
            body_direct(p, theta, acc);
        else
            body<false>(p, theta, rows, n_rows, acc);
    }

    void operator()(const SmallVec& theta, SmallMat& m) const {
        Acc acc;
        const detail::Row* rows = subset ? subset->data() : nullptr;
        const std::size_t n_rows = subset ? subset->size() : 0;
        if (detail::cpu_has_avx2())
            body_avx2(p, theta.data(), rows, n_rows, acc);
        else
            body_base(p, theta.data(), rows, n_rows, acc);
        unpack(acc, m);
    }
};

/// States of all grid time constants, recorded at the selected rows only:
/// zsel row r = sqrt(w)·[1, −I, −x_j…, (−e_j…), y] at rows[r].
EOL_ALWAYS_INLINE void grid_states_body(const detail::Prepared& p, const double* a_unit, int m, bool free_state,
                                        const detail::Row* rows, std::size_t n_rows, double* zsel, int q) {
    constexpr std::size_t kG = static_cast<std::size_t>(kMaxGrid);
    const auto mm = static_cast<std::size_t>(m);
    double x[kG] = {}, e[kG], a[kG] = {}, b[kG] = {};
    for (std::size_t j = 0; j < kG; ++j) e[j] = 1.0;
    double h_prev = -1.0;
    std::size_t next = 0;
    for (std::size_t s = 0; s < p.n && next < n_rows; ++s) {
        if (s > 0) {
            const double h = p.dt[s], ip = p.ih[s - 1];
            if (h != h_prev) {
                for (std::size_t j = 0; j < mm; ++j) {
                    const double em1 = std::expm1(-h * a_unit[j]);
                    a[j] = 1.0 + em1;
                    b[j] = -em1;
                }
                h_prev = h;
            }
            for (std::size_t j = 0; j < kG; ++j) x[j] = a[j] * x[j] + b[j] * ip;
            if (free_state)
                for (std::size_t j = 0; j < kG; ++j) e[j] *= a[j];
        }
        if (rows[next].index != s) continue;
        const double w = rows[next].sqrt_weight;
        double* z = zsel + next * static_cast<std::size_t>(q);
        ++next;
        z[0] = w;
        z[1] = -w * p.i[s];
        for (std::size_t j = 0; j < mm; ++j) {
            z[2 + j] = -w * x[j];
            if (free_state) z[2 + mm + j] = -w * e[j];
        }
        z[q - 1] = w * (p.v[s] - p.v_ref);
    }
}
EOL_TARGET_AVX2 void grid_states_avx2(const detail::Prepared& p, const double* a_unit, int m, bool free_state,
                                      const detail::Row* rows, std::size_t n_rows, double* zsel, int q) {
    grid_states_body(p, a_unit, m, free_state, rows, n_rows, zsel, q);
}
void grid_states_base(const detail::Prepared& p, const double* a_unit, int m, bool free_state,
                      const detail::Row* rows, std::size_t n_rows, double* zsel, int q) {
    grid_states_body(p, a_unit, m, free_state, rows, n_rows, zsel, q);
}

/// Circuit voltage by the held-current recursion over (snapped) intervals.
std::vector<double> voltage(std::size_t n, const std::vector<double>& dt, const double* i_a,
                            const EcmParams& p) {
    const std::size_t nk = p.rc.size();
    std::vector<double> v(n);
    std::array<double, kMaxRc + 8> vk{}, a{}, b{};
    if (nk > vk.size()) throw InputError("ecm_voltage: too many RC pairs");
    for (std::size_t k = 0; k < nk && k < p.v0_v.size(); ++k) vk[k] = p.v0_v[k];
    double h_prev = -1.0;
    for (std::size_t s = 0; s < n; ++s) {
        if (s > 0) {
            const double h = dt[s];
            if (h != h_prev) {
                for (std::size_t k = 0; k < nk; ++k) {
                    const double em1 = std::expm1(-h / p.rc[k].tau_s);
                    a[k] = 1.0 + em1;
                    b[k] = -em1 * p.rc[k].r_ohm;
                }
                h_prev = h;
            }
            for (std::size_t k = 0; k < nk; ++k) vk[k] = a[k] * vk[k] + b[k] * i_a[s - 1];
        }
        double v_s = p.ocv_v - p.r0_ohm * i_a[s];
        for (std::size_t k = 0; k < nk; ++k) v_s -= vk[k];
        v[s] = v_s;
    }
    return v;
}

/// Σ (V − model)² by the same recursion, without storing the model.
double residual_ss(const detail::Prepared& p, const EcmParams& prm) {
    const std::size_t nk = prm.rc.size();
    std::array<double, kMaxRc> vk{}, a{}, b{};
    for (std::size_t k = 0; k < nk && k < prm.v0_v.size(); ++k) vk[k] = prm.v0_v[k];
    double h_prev = -1.0, ss = 0.0;
    for (std::size_t s = 0; s < p.n; ++s) {
        if (s > 0) {
            const double h = p.dt[s];
            if (h != h_prev) {
                for (std::size_t k = 0; k < nk; ++k) {
                    const double em1 = std::expm1(-h / prm.rc[k].tau_s);
                    a[k] = 1.0 + em1;
                    b[k] = -em1 * prm.rc[k].r_ohm;
                }
                h_prev = h;
            }
            for (std::size_t k = 0; k < nk; ++k) vk[k] = a[k] * vk[k] + b[k] * p.ih[s - 1];
        }
        double r = p.v[s] - prm.ocv_v + prm.r0_ohm * p.i[s];
        for (std::size_t k = 0; k < nk; ++k) r += vk[k];
        ss += r * r;
    }
    return ss;
}

/// Deterministic start: geometric τ grid, Gram matrix of all grid states on a
/// weighted row subset (every row just after a current change, log-spaced
/// rows later), best combination of n grid values by projected residual.
std::vector<SmallVec> grid_starts(const detail::Prepared& p, const std::vector<detail::Row>& rows, int nrc,
                                  bool free_state, std::size_t n_starts) {
    const double tau_lo = 2.0 * p.dt_med;
    const double tau_hi = std::max(4.0 * p.span, 4.0 * tau_lo);
    int m = static_cast<int>(std::ceil(std::log(tau_hi / tau_lo) / std::log(3.0))) + 1;
    m = std::clamp(m, nrc + 1, kMaxGrid);
    std::array<double, kMaxGrid> grid{}, inv{};
    for (std::size_t j = 0; j < static_cast<std::size_t>(m); ++j) {
        grid[j] = tau_lo * std::pow(tau_hi / tau_lo, static_cast<double>(j) / (m - 1));
        inv[j] = 1.0 / grid[j];
    }
    const int per = free_state ? 2 : 1;
    const int q = 2 + per * m + 1;
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zsel(
        static_cast<Eigen::Index>(rows.size()), q);
    if (detail::cpu_has_avx2())
        grid_states_avx2(p, inv.data(), m, free_state, rows.data(), rows.size(), zsel.data(), q);
    else
        grid_states_base(p, inv.data(), m, free_state, rows.data(), rows.size(), zsel.data(), q);
    const Eigen::MatrixXd gram = zsel.transpose() * zsel;

    // Enumerate index combinations j0 < j1 < … of size nrc.
    std::array<int, kMaxRc> idx{};
    for (int k = 0; k < nrc; ++k) idx[static_cast<std::size_t>(k)] = k;
    std::vector<std::pair<double, std::array<int, kMaxRc>>> ranked;
    const int nl = 2 + per * nrc;
    std::array<int, detail::kMaxCols> cols{};
    while (true) {
        cols[0] = 0;
        cols[1] = 1;
        for (int k = 0; k < nrc; ++k) {
            cols[static_cast<std::size_t>(2 + k)] = 2 + idx[static_cast<std::size_t>(k)];
            if (free_state) cols[static_cast<std::size_t>(2 + nrc + k)] = 2 + m + idx[static_cast<std::size_t>(k)];
        }
        SmallMat g(nl, nl);
        SmallVec b(nl), c;
        for (int r = 0; r < nl; ++r) {
            b(r) = gram(cols[static_cast<std::size_t>(r)], q - 1);
            for (int cc = 0; cc < nl; ++cc)
                g(r, cc) = gram(cols[static_cast<std::size_t>(r)], cols[static_cast<std::size_t>(cc)]);
        }
        if (detail::solve_spd(g, b, c)) ranked.push_back({gram(q - 1, q - 1) - b.dot(c), idx});
        // next combination
        int k = nrc - 1;
        while (k >= 0 && idx[static_cast<std::size_t>(k)] == m - nrc + k) --k;
        if (k < 0) break;
        ++idx[static_cast<std::size_t>(k)];
        for (int j = k + 1; j < nrc; ++j) idx[static_cast<std::size_t>(j)] = idx[static_cast<std::size_t>(j - 1)] + 1;
    }
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (ranked.empty()) {  // every combination singular: start from the middle of the grid
        std::array<int, kMaxRc> mid{};
        for (int k = 0; k < nrc; ++k) mid[static_cast<std::size_t>(k)] = (m - nrc) / 2 + k;
        ranked.push_back({0.0, mid});
    }
    std::vector<SmallVec> starts;
    for (std::size_t r = 0; r < ranked.size() && r < n_starts; ++r) {
        SmallVec theta(nrc);
        for (int k = 0; k < nrc; ++k)
            theta(k) = std::log(grid[static_cast<std::size_t>(ranked[r].second[static_cast<std::size_t>(k)])]);
        starts.push_back(theta);
    }
    return starts;
}

std::string fmt_num(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", x);
    return buf;
}

template <int NRC, bool FREE>
EcmFit solve(const detail::Prepared& p, const EcmOptions& opt) {
    using Pass = EcmPass<NRC, FREE>;
    const Layout lay = Pass::layout();
    detail::SearchLimits lim;
    lim.lo = SmallVec::Constant(NRC, std::log(p.dt_med / 10.0));
    lim.hi = SmallVec::Constant(NRC, std::log(50.0 * p.span));
    lim.max_iterations = opt.max_iterations;
    lim.dof = static_cast<double>(p.n) - (Pass::L + NRC);
    const double yy = p.v_ss;
    lim.ss_floor = 1e-13 * yy;
    // Start: the best few combinations of the τ grid, each refined by the
    // search, the best result kept (deterministic; several starts guard
    // against the local minima of sums of exponentials). Long records are
    // searched on a reduced record first and only polished on every sample.
    const std::vector<detail::Row> rows = detail::select_rows(p, opt.search_every_sample_up_to);
    const bool reduced = rows.size() < p.n;
    detail::Compressed comp;
    if (reduced) detail::compress(p, rows, comp);
    const detail::Prepared& pc = reduced ? comp.p : p;
    const Pass coarse_pass(pc, reduced ? &comp.rows : nullptr);
    detail::SearchLimits coarse_lim = lim;
    if (reduced) coarse_lim.gain_tol = 1e-4;  // a start for the polish below
    constexpr std::size_t kStarts = 3;
    const std::vector<SmallVec> starts = grid_starts(pc, reduced ? comp.rows : rows, NRC, FREE, kStarts);
    int iterations = 0, passes = 1;  // the grid pass
    detail::SearchResult res;
    bool have = false;
    for (const SmallVec& st : starts) {
        detail::SearchResult r = detail::search(lay, coarse_pass, st, coarse_lim);
        iterations += r.iterations;
        passes += r.passes;
        if (!have || (r.eval.ok && r.eval.ss < res.eval.ss)) {
            res = std::move(r);
            have = true;
        }
    }
    if (reduced) {
        lim.lambda0 = 1e-6;  // near the optimum already
        // Long records: stop when the gain left is below 1e-4·s² (parameters
        // within 1 % of their standard error) or 1e-8 of the residual sum
        // (SciPy least_squares' default ftol), whichever is smaller. The
        // stricter 1e-8·s² of short windows costs one more O(N) pass here for
        // a change in the residual sum below 1e-9.
        lim.gain_tol = std::min(1e-4, 1e-8 * lim.dof);
        const Pass pass(p);
        res = detail::search(lay, pass, res.theta, lim);
        iterations += res.iterations;
        passes += res.passes;
    }
    const SmallMat& m = res.gram;
    const detail::Eval& ev = res.eval;
    EcmFit fit;
    fit.samples = p.n;
    fit.iterations = iterations;
    fit.passes = passes;
    fit.converged = res.converged && ev.ok;
    if (!ev.ok) throw InputError("circuit fit failed: the basis is singular at the optimum (the window does not excite the RC branches)");

    // Exact residual (not through the Gram matrix).
    EcmParams prm;
    prm.ocv_v = ev.c(0) + p.v_ref;
    prm.r0_ohm = ev.c(1);
    for (int k = 0; k < NRC; ++k) prm.rc.push_back({ev.c(2 + k), std::exp(res.theta(k))});
    if (FREE)
        for (int k = 0; k < NRC; ++k) prm.v0_v.push_back(ev.c(2 + NRC + k));
    // The residual sum of squares from the Gram matrix (yy − bᵀc) loses
    // digits to cancellation and to the conditioning of the basis; it is
    // recomputed sample by sample unless the record is long (then one pass
    // matters for speed) and the residual well above the rounding level.
    double ss = ev.ss;
    if (p.n <= 20000 || !(ss > 1e-6 * yy)) {
        ss = residual_ss(p, prm);
        ++fit.passes;
    }
    fit.rmse_v = std::sqrt(ss / static_cast<double>(p.n));

    // Covariance of (c, θ) from the full Jacobian.
    const int np = Pass::L + NRC;
    const double dof = static_cast<double>(p.n) - np;
    const double s2 = ss / dof;
    const double tq = detail::t975(dof);
    SmallMat cov;
    const bool cov_ok = detail::solve_spd(detail::full_jtj(lay, m, ev.c), SmallMat::Identity(np, np), cov);
    auto half = [&](int i) {
        return cov_ok && cov(i, i) >= 0.0 ? tq * std::sqrt(s2 * cov(i, i)) : std::numeric_limits<double>::infinity();
    };
    fit.ocv_v = {prm.ocv_v, half(0), true};
    fit.r0_ohm = {prm.r0_ohm, half(1), true};

    std::array<int, kMaxRc> order{};
    std::iota(order.begin(), order.begin() + NRC, 0);
    std::sort(order.begin(), order.begin() + NRC,
              [&](int a, int b) { return res.theta(a) < res.theta(b); });
    for (int o = 0; o < NRC; ++o) {
        const int k = order[static_cast<std::size_t>(o)];
        const int ir = 2 + k, it = Pass::L + k;
        const double r = ev.c(ir), tau = std::exp(res.theta(k)), c = tau / r;
        EcmRc rc;
        rc.r_ohm = {r, half(ir), true};
        rc.tau_s = {tau, cov_ok ? tq * tau * std::sqrt(std::max(0.0, s2 * cov(it, it))) : std::numeric_limits<double>::infinity(), true};
        double rel_c = std::numeric_limits<double>::infinity();
        if (cov_ok) {
            const double v = s2 * (cov(it, it) + cov(ir, ir) / (r * r) - 2.0 * cov(it, ir) / r);
            rel_c = std::sqrt(std::max(0.0, v));
        }
        rc.c_f = {c, tq * std::abs(c) * rel_c, true};
        fit.rc.push_back(rc);
        if (FREE) fit.v0_v.push_back({ev.c(2 + NRC + k), half(2 + NRC + k), true});
    }

    // Identifiability.
    auto flag_pair = [&](int o, const std::string& why) {
        auto& rc = fit.rc[static_cast<std::size_t>(o)];
        rc.r_ohm.identifiable = rc.tau_s.identifiable = rc.c_f.identifiable = false;
        fit.notes.push_back(why);
    };
    if (fit.r0_ohm.value <= 0.0) {
        fit.r0_ohm.identifiable = false;
        fit.notes.push_back("r0_ohm: non-physical (" + fmt_num(fit.r0_ohm.value) +
                            " ohm): is the current sign reversed? (discharge must be positive)");
    }
    for (int o = 0; o < NRC; ++o) {
        const auto& rc = fit.rc[static_cast<std::size_t>(o)];
        const std::string tn = "tau" + std::to_string(o + 1) + "_s";
        if (rc.tau_s.value > p.span)
            flag_pair(o, tn + ": " + fmt_num(rc.tau_s.value) + " s is longer than the window (" +
                             fmt_num(p.span) + " s)");
        if (rc.tau_s.value < p.dt_med) {
            flag_pair(o, tn + ": " + fmt_num(rc.tau_s.value) + " s is shorter than the sampling interval (" +
                             fmt_num(p.dt_med) + " s)");
            fit.r0_ohm.identifiable = false;
            fit.notes.push_back("r0_ohm: shares the step with RC pair " + std::to_string(o + 1) +
                                " (time constant below the sampling interval)");
        }
        if (rc.r_ohm.value <= 0.0)
            flag_pair(o, "r" + std::to_string(o + 1) + "_ohm: non-physical (" + fmt_num(rc.r_ohm.value) + " ohm)");
        if (o + 1 < NRC && fit.rc[static_cast<std::size_t>(o + 1)].tau_s.value < 1.5 * rc.tau_s.value) {
            const std::string why = tn + ", tau" + std::to_string(o + 2) + "_s: within a factor 1.5 (" +
                                    fmt_num(rc.tau_s.value) + " s, " +
                                    fmt_num(fit.rc[static_cast<std::size_t>(o + 1)].tau_s.value) +
                                    " s): the pairs collapse";
            flag_pair(o, why);
            auto& nxt = fit.rc[static_cast<std::size_t>(o + 1)];
            nxt.r_ohm.identifiable = nxt.tau_s.identifiable = nxt.c_f.identifiable = false;
        }
    }
    auto wide = [&](Estimate& e, const std::string& name) {
        if (!(e.ci95 <= 0.5 * std::abs(e.value))) {
            if (e.identifiable)
                fit.notes.push_back(name + ": 95 % interval ±" + fmt_num(e.ci95) + " is wider than half the value " +
                                    fmt_num(e.value));
            e.identifiable = false;
        }
    };
    wide(fit.ocv_v, "ocv_v");
    wide(fit.r0_ohm, "r0_ohm");
    for (int o = 0; o < NRC; ++o) {
        auto& rc = fit.rc[static_cast<std::size_t>(o)];
        const std::string k = std::to_string(o + 1);
        wide(rc.r_ohm, "r" + k + "_ohm");
        wide(rc.tau_s, "tau" + k + "_s");
        wide(rc.c_f, "c" + k + "_f");
    }
    return fit;
}

}  // namespace

EcmParams EcmFit::params() const {
    EcmParams p;
    p.ocv_v = ocv_v.value;
    p.r0_ohm = r0_ohm.value;
    for (const auto& b : rc) p.rc.push_back({b.r_ohm.value, b.tau_s.value});
    for (const auto& v : v0_v) p.v0_v.push_back(v.value);
    return p;
}

EcmFit fit_ecm(const Series& s, const EcmOptions& opt) {
    if (opt.rc_pairs < 1 || opt.rc_pairs > kMaxRc)
        throw InputError("rc_pairs must be 1, 2 or 3 (got " + std::to_string(opt.rc_pairs) + ")");
    const int nrc = opt.rc_pairs;
    const std::size_t n_par = static_cast<std::size_t>(2 + 2 * nrc + (opt.free_initial_state ? nrc : 0));
    const detail::Prepared p = detail::prepare(s, n_par + 2, false);
    detail::require_current_change(p);
    const bool fr = opt.free_initial_state;
    const detail::FlushDenormals ftz;
    switch (nrc) {
        case 1: return fr ? solve<1, true>(p, opt) : solve<1, false>(p, opt);
        case 2: return fr ? solve<2, true>(p, opt) : solve<2, false>(p, opt);
        default: return fr ? solve<3, true>(p, opt) : solve<3, false>(p, opt);
    }
}

std::vector<double> ecm_voltage(const std::vector<double>& t_s, const std::vector<double>& i_a,
                                const EcmParams& p) {
    const std::size_t n = std::min(t_s.size(), i_a.size());
    return voltage(n, detail::snap_intervals(t_s.data(), n), i_a.data(), p);
}

std::vector<double> ecm_joule_power_w(const std::vector<double>& t_s, const std::vector<double>& i_a,
                                      const EcmParams& p) {
    const std::size_t n = std::min(t_s.size(), i_a.size()), nk = p.rc.size();
    if (nk > kMaxRc + 8) throw InputError("ecm_joule_power_w: too many RC pairs");
    const std::vector<double> dt = detail::snap_intervals(t_s.data(), n);
    std::vector<double> pw(n, 0.0);
    std::array<double, kMaxRc + 8> vk{}, a{}, f1{}, f2{};
    for (std::size_t k = 0; k < nk && k < p.v0_v.size(); ++k) vk[k] = p.v0_v[k];
    double h_prev = -1.0;
    for (std::size_t s = 1; s < n; ++s) {
        const double h = dt[s], cur = i_a[s - 1];
        if (h != h_prev) {
            for (std::size_t k = 0; k < nk; ++k) {
                const double tau = p.rc[k].tau_s;
                a[k] = std::exp(-h / tau);
                f1[k] = tau * (1.0 - a[k]);
                f2[k] = 0.5 * tau * (1.0 - a[k] * a[k]);
            }
            h_prev = h;
        }
        double e = std::max(p.r0_ohm, 0.0) * cur * cur * h;
        for (std::size_t k = 0; k < nk; ++k) {
            const double r = p.rc[k].r_ohm, vinf = r * cur, d = vk[k] - vinf;
            if (r > 0.0)  // ∫ (v∞ + d·e^{−s/τ})² / R ds over the interval
                e += (vinf * vinf * h + 2.0 * vinf * d * f1[k] + d * d * f2[k]) / r;
            vk[k] = vinf + d * a[k];
        }
        pw[s] = e / h;
    }
    return pw;
}

}  // namespace eol::models
