// eol/models/mcd.hpp — robust multivariate location and scatter by the
// Minimum Covariance Determinant (FAST-MCD), robust Mahalanobis distances,
// the features behind a distance, and the chi-square distribution they are
// cut with.
//
// fit_mcd() follows scikit-learn 1.2's MinCovDet step for step (Rousseeuw &
// Van Driessen 1999):
//   h = ⌈(n+p+1)/2⌉ (or ⌊support_fraction·n⌋); random h-subsets refined by
//   C-steps; n ≤ 500: 30 random starts × 2 C-steps, the 10 best iterated to
//   convergence; n > 500: the data shuffled and cut into subsets of ~300
//   (at most `max_subsets` of them are used, see below), max(10, 500/subsets)
//   starts × 2 C-steps in each, the 10 best of each subset iterated on a
//   random merged set of 1500 rows, the 10 best of those iterated on all rows;
//   then sklearn's consistency correction (raw d² divided by
//   median(d²)/χ²_p.median) and reweighting (keep d² < χ²_p(0.975), location
//   and covariance (divided by the count, like sklearn) of the kept rows).
// Random subsets are drawn exactly as numpy's RandomState(seed).permutation
// does (MT19937), so for the same seed the result equals sklearn's
// MinCovDet(random_state=seed) up to rounding whenever the same subsets are
// used: n < 1800, or any n with max_subsets = 0. sklearn 1.2 uses ⌊n/300⌋
// subsets (3333 at n = 10⁶), the paper and R's robustbase use 5: the default
// here is 5 (see docs/screening.md for what that changes and what not).
//
// Data are an n×p column-major matrix (Eigen default), all values finite.
// Large passes (distances, selection, support statistics) are split into
// fixed blocks over `threads` std::threads and reduced in block order, so the
// result does not depend on the number of threads.
//
// Errors: InputError for n < 2, p < 1, non-finite values, a support fraction
// outside (0, 1], or a singular scatter of the support (a feature constant
// over more than half the rows).
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace eol::models {

/// Regularized lower incomplete gamma P(a, x) and its complement Q(a, x).
double gamma_p(double a, double x);
double gamma_q(double a, double x);
/// Inverse of P(a, ·): the x with P(a, x) = prob (0 < prob < 1).
double gamma_p_inverse(double a, double prob);
/// Chi-square distribution with `dof` > 0 degrees of freedom.
double chi2_cdf(double x, double dof);
/// Quantile (inverse CDF, like scipy.stats.chi2.ppf): the x with
/// P(χ² ≤ x) = prob, 0 < prob < 1. Wilson–Hilferty start, Halley steps on
/// the regularized incomplete gamma; relative accuracy ~1e-14.
double chi2_quantile(double prob, double dof);
/// Standard normal quantile, 0 < prob < 1 (Acklam's rational approximation
/// refined by Halley steps on erfc to full double precision).
double normal_quantile(double prob);

struct McdSettings {
    double support_fraction = 0.0;  // (0, 1]; 0 = sklearn's default h = ⌈(n+p+1)/2⌉
    std::uint32_t seed = 0;         // numpy RandomState(seed)
    std::size_t max_subsets = 5;    // n > 500: subsets of ~300 used; 0 = all ⌊n/300⌋ (sklearn)
    unsigned threads = 0;           // 0 = std::thread::hardware_concurrency()
};

struct McdResult {
    // Raw FAST-MCD estimate (sklearn raw_location_, raw_covariance_, raw_support_).
    Eigen::VectorXd raw_location;
    Eigen::MatrixXd raw_covariance;      // of the h rows, divided by h; not corrected
    std::vector<std::uint8_t> raw_support;
    std::size_t h = 0;                   // rows in the raw support
    double correction = 1.0;             // median(raw d²) / χ²_p median
    // Reweighted estimate (sklearn location_, covariance_, support_, dist_).
    Eigen::VectorXd location;
    Eigen::MatrixXd covariance;
    std::vector<std::uint8_t> support;
    std::vector<double> distance_sq;     // squared robust distance of every row
    // Diagnostics.
    std::size_t subsets_used = 0;        // n > 500: subsets of ~300 searched
    std::size_t full_c_steps = 0;        // C-steps over all n rows
};

/// FAST-MCD of the rows of `x` (n×p). Deterministic for a seed.
McdResult fit_mcd(const Eigen::Ref<const Eigen::MatrixXd>& x, const McdSettings& settings = {});

/// Squared Mahalanobis distances of the rows of `x` from `location` under
/// `covariance` (pseudo-inverse when singular), computed in blocks over
/// `threads` threads (0 = all cores).
std::vector<double> mahalanobis_sq(const Eigen::Ref<const Eigen::MatrixXd>& x,
                                   const Eigen::VectorXd& location,
                                   const Eigen::MatrixXd& covariance, unsigned threads = 0);

/// What each feature contributes to d² = zᵀΣ⁻¹z of one row, z = x - location.
/// The symmetric (ZCA) whitening w = Σ^{-1/2} z gives d² = Σ_j w_j², one
/// non-negative term per feature that does not depend on the feature order
/// (a Cholesky factor would credit the first features with their marginal
/// part and the later ones with their conditional part).
struct FeatureContribution {
    std::size_t feature = 0;
    double share = 0.0;  // w_j² / d², shares sum to 1
    double z = 0.0;      // marginal robust z-score (x_j - location_j)/sqrt(Σ_jj)
};

/// Whitening for contributions: computed once per covariance.
class ContributionWhitener {
public:
    explicit ContributionWhitener(const Eigen::MatrixXd& covariance);
    /// Contributions of every feature, largest share first.
    std::vector<FeatureContribution> contributions(const Eigen::VectorXd& x,
                                                   const Eigen::VectorXd& location) const;

private:
    Eigen::MatrixXd inv_sqrt_;
    Eigen::VectorXd sd_;
};

}  // namespace eol::models
