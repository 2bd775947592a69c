// Internal: the variable-projection engine shared by the circuit and thermal
// fits. Not a public header.
//
// A problem is "model = offset(θ) + Σ_j c_j φ_j(θ)" with a few nonlinear θ
// (log time constants) and linear c. Each problem supplies one O(N) pass that,
// for given θ, accumulates the Gram matrix M = Σ_n z_n z_nᵀ of the per-sample
// vector
//     z = [φ_0 … φ_{L-1} | ∂φ/∂θ and ∂offset/∂θ columns (D of them) | y − offset]
// Everything the search needs — the linear solution c, the projected residual
// sum of squares, and the Golub–Pereyra Jacobian's JᵀJ and Jᵀr — follows from
// M by small dense algebra (inner products of the columns), so no N×N or N×p
// matrix is ever formed and nothing is allocated per iteration.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>

namespace eol::models::detail {

constexpr int kMaxCols = 16;
using SmallMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxCols, kMaxCols>;
using SmallVec = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxCols, 1>;

struct Layout {
    int n_lin = 0;    // L: linear basis columns
    int n_deriv = 0;  // D: derivative columns
    int n_theta = 0;  // nonlinear parameters
    std::array<int, kMaxCols> deriv_theta{};  // θ index of each derivative column
    std::array<int, kMaxCols> deriv_lin{};    // basis column it differentiates; -1: the offset
    int size() const { return n_lin + n_deriv + 1; }
};

struct Eval {
    bool ok = false;  // the basis Gram matrix was numerically positive definite
    double ss = 0.0;  // projected residual sum of squares
    SmallVec c;       // linear coefficients
    SmallMat jtj;     // n_theta × n_theta, Golub–Pereyra Jacobian
    SmallVec jtr;     // n_theta
};

/// Solves the symmetric positive semi-definite system A x = b after scaling
/// A to unit diagonal. Returns false when A is numerically singular.
bool solve_spd(const SmallMat& a, const SmallVec& b, SmallVec& x);
bool solve_spd(const SmallMat& a, const SmallMat& b, SmallMat& x);

/// Everything the search needs from one Gram matrix (M is full symmetric).
Eval evaluate(const Layout& layout, const SmallMat& m);

/// JᵀJ of the full model Jacobian with respect to (c, θ), in that order.
SmallMat full_jtj(const Layout& layout, const SmallMat& m, const SmallVec& c);

struct SearchResult {
    SmallVec theta;
    Eval eval;
    SmallMat gram;  // the Gram matrix at theta
    int iterations = 0;
    int passes = 0;
    bool converged = false;
};

struct SearchLimits {
    SmallVec lo, hi;           // box on θ
    int max_iterations = 100;
    double max_step = 2.0;     // largest change of one θ per step
    double lambda0 = 1e-3;     // initial Marquardt damping
    // Converged when the undamped step would lower the residual sum of squares
    // by less than gain_tol × SS/dof: the parameters would move by less than
    // 1e-4 of their standard error. ss_floor: a residual at rounding level.
    double dof = 1.0;
    double gain_tol = 1e-8;
    double ss_floor = 0.0;
};

/// Levenberg–Marquardt on the projected residual. `pass(theta, m)` fills the
/// full symmetric Gram matrix for θ. Deterministic; a step is accepted only
/// when it lowers the residual. θ components that sit on a bound with the
/// gradient pointing outward are held there.
template <class Pass>
SearchResult search(const Layout& layout, Pass&& pass, SmallVec theta, const SearchLimits& lim);

// ---- implementation of search() ----------------------------------------------------------------

/// Damped Gauss–Newton step on the free components: (A + λ·diag A) δ = −g.
inline SmallVec damped_step(const Eval& e, double lambda, const std::array<bool, kMaxCols>& fixed) {
    const int k = static_cast<int>(e.jtr.size());
    std::array<int, kMaxCols> idx{};
    int nf = 0;
    for (int j = 0; j < k; ++j)
        if (!fixed[static_cast<std::size_t>(j)]) idx[static_cast<std::size_t>(nf++)] = j;
    SmallVec delta = SmallVec::Zero(k);
    if (nf == 0) return delta;
    double dmax = 0.0;
    for (int j = 0; j < k; ++j) dmax = std::max(dmax, e.jtj(j, j));
    const double floor = std::max(1e-12 * dmax, 1e-300);
    SmallMat a(nf, nf);
    SmallVec g(nf);
    for (int r = 0; r < nf; ++r) {
        const int jr = idx[static_cast<std::size_t>(r)];
        g(r) = -e.jtr(jr);
        for (int c = 0; c < nf; ++c) a(r, c) = e.jtj(jr, idx[static_cast<std::size_t>(c)]);
        a(r, r) += lambda * std::max(a(r, r), floor) + floor;
    }
    SmallVec x;
    if (!solve_spd(a, g, x)) return delta;
    for (int r = 0; r < nf; ++r) delta(idx[static_cast<std::size_t>(r)]) = x(r);
    return delta;
}

template <class Pass>
SearchResult search(const Layout& layout, Pass&& pass, SmallVec theta, const SearchLimits& lim) {
    const int k = layout.n_theta;
    SmallMat m(layout.size(), layout.size());
    SearchResult res;
    theta = theta.cwiseMax(lim.lo).cwiseMin(lim.hi);
    pass(theta, res.gram);
    ++res.passes;
    Eval cur = evaluate(layout, res.gram);
    double lambda = lim.lambda0, nu = 2.0;
    for (int it = 0; it < lim.max_iterations && cur.ok; ++it) {
        // Hold components that sit on a bound and want to leave the box.
        std::array<bool, kMaxCols> fixed{};
        for (int j = 0; j < k; ++j) {
            const double down = -cur.jtr(j);  // descent direction sign
            const auto js = static_cast<std::size_t>(j);
            if (theta(j) <= lim.lo(j) && down < 0.0) fixed[js] = true;
            if (theta(j) >= lim.hi(j) && down > 0.0) fixed[js] = true;
        }
        // Converged when the undamped step is negligible or predicts no gain.
        const SmallVec gn = damped_step(cur, 0.0, fixed);
        const double gain = -(2.0 * cur.jtr.dot(gn) + gn.dot(cur.jtj * gn));
        // 1e-10·SS: below that the residual sum, formed from the Gram matrix,
        // cannot resolve a gain, and a search for one only rejects steps.
        if (gn.cwiseAbs().maxCoeff() < 1e-10 || gain <= lim.gain_tol * cur.ss / lim.dof || gain <= 1e-10 * cur.ss ||
            cur.ss <= lim.ss_floor) {
            res.converged = true;
            break;
        }
        res.iterations = it + 1;
        bool accepted = false;
        while (!accepted && lambda < 1e12) {
            SmallVec delta = damped_step(cur, lambda, fixed);
            const double big = delta.cwiseAbs().maxCoeff();
            if (big > lim.max_step) delta *= lim.max_step / big;
            const SmallVec next = (theta + delta).cwiseMax(lim.lo).cwiseMin(lim.hi);
            delta = next - theta;
            if (delta.cwiseAbs().maxCoeff() == 0.0) break;
            pass(next, m);
            ++res.passes;
            Eval cand = evaluate(layout, m);
            const double pred = -(2.0 * cur.jtr.dot(delta) + delta.dot(cur.jtj * delta));
            const double actual = cur.ss - cand.ss;
            if (cand.ok && actual > 0.0) {
                const double rho = pred > 0.0 ? actual / pred : 1.0;
                const double f = 2.0 * rho - 1.0;
                lambda *= std::max(1.0 / 3.0, 1.0 - f * f * f);
                lambda = std::max(lambda, 1e-12);
                nu = 2.0;
                theta = next;
                cur = cand;
                res.gram = m;
                accepted = true;
            } else {
                lambda *= nu;
                nu *= 2.0;
            }
        }
        if (!accepted) {
            // No step lowers the residual: a minimum to the working precision.
            res.converged = gain <= 1e-8 * cur.ss || cur.ss <= 1e3 * lim.ss_floor;
            break;
        }
    }
    res.theta = theta;
    res.eval = cur;
    return res;
}

/// Quantile t_{0.975} of Student's t with `dof` degrees of freedom (1.96 as dof → ∞).
double t975(double dof);

}  // namespace eol::models::detail

