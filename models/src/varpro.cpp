#include "varpro.hpp"

namespace eol::models::detail {

namespace {

template <class B, class X>
bool solve_spd_impl(const SmallMat& a, const B& b, X& x) {
    const auto n = a.rows();
    SmallVec s(n);
    for (Eigen::Index i = 0; i < n; ++i) {
        if (!(a(i, i) > 0.0) || !std::isfinite(a(i, i))) return false;
        s(i) = 1.0 / std::sqrt(a(i, i));
    }
    const SmallMat as = s.asDiagonal() * a * s.asDiagonal();
    const Eigen::LDLT<SmallMat> ldlt(as);
    if (ldlt.info() != Eigen::Success) return false;
    const SmallVec d = ldlt.vectorD();
    if (!(d.minCoeff() > 1e-14 * d.cwiseAbs().maxCoeff())) return false;
    x = s.asDiagonal() * ldlt.solve(s.asDiagonal() * b);
    return x.allFinite();
}

}  // namespace

bool solve_spd(const SmallMat& a, const SmallVec& b, SmallVec& x) { return solve_spd_impl(a, b, x); }
bool solve_spd(const SmallMat& a, const SmallMat& b, SmallMat& x) { return solve_spd_impl(a, b, x); }

Eval evaluate(const Layout& lay, const SmallMat& m) {
    const int nl = lay.n_lin, nd = lay.n_deriv, nk = lay.n_theta, y = nl + nd;
    Eval e;
    e.ss = std::numeric_limits<double>::infinity();
    const SmallMat g = m.topLeftCorner(nl, nl);
    const SmallVec b = m.block(0, y, nl, 1);
    if (!solve_spd(g, b, e.c)) return e;
    e.ss = std::max(0.0, m(y, y) - b.dot(e.c));
    // Inner products of each derivative column with the residual r = y − Φc.
    const SmallVec rd = m.block(nl, y, nd, 1) - m.block(nl, 0, nd, nl) * e.c;
    // D_k = Σ_d w(d,k)·col_d is ∂(Φc + offset)/∂θ_k; u_k = (∂Φ/∂θ_k)ᵀ r.
    SmallMat w = SmallMat::Zero(nd, nk);
    SmallMat rhs = SmallMat::Zero(nl, 2 * nk);
    for (int d = 0; d < nd; ++d) {
        const int k = lay.deriv_theta[static_cast<std::size_t>(d)];
        const int j = lay.deriv_lin[static_cast<std::size_t>(d)];
        w(d, k) = j >= 0 ? e.c(j) : 1.0;
        if (j >= 0) rhs(j, nk + k) += rd(d);
    }
    rhs.leftCols(nk) = m.block(0, nl, nl, nd) * w;  // Φᵀ D
    SmallMat sol;
    if (!solve_spd(g, rhs, sol)) return e;
    const SmallMat dd = w.transpose() * m.block(nl, nl, nd, nd) * w;
    // Golub–Pereyra: J_k = −P⊥D_k − Φ G⁻¹ u_k; the two parts are orthogonal.
    e.jtj = dd - rhs.leftCols(nk).transpose() * sol.leftCols(nk) +
            rhs.rightCols(nk).transpose() * sol.rightCols(nk);
    e.jtj = 0.5 * (e.jtj + e.jtj.transpose()).eval();
    e.jtr = -(w.transpose() * rd);
    e.ok = e.jtj.allFinite() && e.jtr.allFinite();
    if (!e.ok) e.ss = std::numeric_limits<double>::infinity();
    return e;
}

SmallMat full_jtj(const Layout& lay, const SmallMat& m, const SmallVec& c) {
    const int nl = lay.n_lin, nd = lay.n_deriv, nk = lay.n_theta, y = nl + nd;
    SmallMat a = SmallMat::Zero(y, nl + nk);
    a.topLeftCorner(nl, nl).setIdentity();
    for (int d = 0; d < nd; ++d) {
        const int k = lay.deriv_theta[static_cast<std::size_t>(d)];
        const int j = lay.deriv_lin[static_cast<std::size_t>(d)];
        a(nl + d, nl + k) = j >= 0 ? c(j) : 1.0;
    }
    return a.transpose() * m.topLeftCorner(y, y) * a;
}

double t975(double dof) {
    static constexpr double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                       2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                       2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                       2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
    if (!(dof >= 1.0)) return std::numeric_limits<double>::infinity();
    if (dof <= 30.0) return table[static_cast<int>(dof) - 1];
    // Cornish–Fisher expansion about z = 1.959964 (error < 1e-4 for dof > 30).
    const double z = 1.959963985, z2 = z * z, v = dof;
    return z + (z2 * z + z) / (4 * v) + (5 * z2 * z2 * z + 16 * z2 * z + 3 * z) / (96 * v * v) +
           (3 * z2 * z2 * z2 * z + 19 * z2 * z2 * z + 17 * z2 * z - 15 * z) / (384 * v * v * v);
}

}  // namespace eol::models::detail
