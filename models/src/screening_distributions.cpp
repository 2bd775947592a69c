// Distribution functions used by the screening: regularized incomplete gamma
// (chi-square) and beta (binomial), their inverses where needed, and the
// normal quantile. Classic algorithms: power series / Lentz continued
// fractions (Numerical Recipes §6.2, §6.4) with a log-gamma prefactor.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>
#include <string>

#include "eol/models/lot_tests.hpp"
#include "eol/models/mcd.hpp"
#include "eol/models/series.hpp"

namespace eol::models {
namespace {

constexpr double kEps = 1e-16;
constexpr double kTiny = 1e-300;
constexpr int kMaxIter = 1'000'000;

template <class... A>
std::string cat(const A&... a) {
    std::ostringstream os;
    os.precision(17);
    (os << ... << a);
    return os.str();
}

// log(x^a e^-x / Γ(a)).
double log_gamma_prefactor(double a, double x) { return a * std::log(x) - x - std::lgamma(a); }

// P(a, x) by its power series (converges quickly for x < a+1).
double gamma_series(double a, double x) {
    double ap = a;
    double del = 1.0 / a;
    double sum = del;
    for (int n = 0; n < kMaxIter; ++n) {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if (std::fabs(del) < std::fabs(sum) * kEps) break;
    }
    return sum * std::exp(log_gamma_prefactor(a, x));
}

// Q(a, x) by its continued fraction (x ≥ a+1), modified Lentz.
double gamma_cfrac(double a, double x) {
    double b = x + 1.0 - a;
    double c = 1.0 / kTiny;
    double d = 1.0 / b;
    double h = d;
    for (int i = 1; i < kMaxIter; ++i) {
        const double an = -static_cast<double>(i) * (static_cast<double>(i) - a);
        b += 2.0;
        d = an * d + b;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = b + an / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::fabs(del - 1.0) < kEps) break;
    }
    return std::exp(log_gamma_prefactor(a, x)) * h;
}

void check_gamma_args(double a, double x) {
    if (!(a > 0.0) || !std::isfinite(a)) throw InputError(cat("incomplete gamma: shape ", a, " is not positive"));
    if (!(x >= 0.0)) throw InputError(cat("incomplete gamma: x = ", x, " is negative or NaN"));
}

// Continued fraction of I_x(a, b) (modified Lentz), valid for x < (a+1)/(a+b+2).
double beta_cfrac(double a, double b, double x) {
    const double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0;
    double d = 1.0 - qab * x / qap;
    if (std::fabs(d) < kTiny) d = kTiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m < kMaxIter; ++m) {
        const double dm = static_cast<double>(m);
        const double m2 = 2.0 * dm;
        double aa = dm * (b - dm) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + dm) * (qab + dm) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (std::fabs(d) < kTiny) d = kTiny;
        c = 1.0 + aa / c;
        if (std::fabs(c) < kTiny) c = kTiny;
        d = 1.0 / d;
        const double del = d * c;
        h *= del;
        if (std::fabs(del - 1.0) < kEps) break;
    }
    return h;
}

}  // namespace

double gamma_p(double a, double x) {
    check_gamma_args(a, x);
    if (x == 0.0) return 0.0;
    if (std::isinf(x)) return 1.0;
    return x < a + 1.0 ? gamma_series(a, x) : 1.0 - gamma_cfrac(a, x);
}

double gamma_q(double a, double x) {
    check_gamma_args(a, x);
    if (x == 0.0) return 1.0;
    if (std::isinf(x)) return 0.0;
    return x < a + 1.0 ? 1.0 - gamma_series(a, x) : gamma_cfrac(a, x);
}

double normal_quantile(double prob) {
    if (!(prob > 0.0 && prob < 1.0)) throw InputError(cat("normal quantile: probability ", prob, " outside (0, 1)"));
    if (prob > 0.5) return -normal_quantile(1.0 - prob);  // 1-prob is exact here
    // Acklam's approximation (relative error < 1.2e-9) …
    static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                   1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                   6.680131188771972e+01, -1.328068155288572e+01};
    static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                   -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                   3.754408661907416e+00};
    double x;
    if (prob < 0.02425) {
        const double q = std::sqrt(-2.0 * std::log(prob));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else {
        const double q = prob - 0.5;
        const double r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    }
    // … refined by Halley steps on Φ(x) = erfc(-x/√2)/2 (lower tail: no cancellation).
    for (int it = 0; it < 3; ++it) {
        const double e = 0.5 * std::erfc(-x / std::numbers::sqrt2) - prob;
        const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
        const double step = u / (1.0 + 0.5 * x * u);
        x -= step;
        if (std::fabs(step) <= 1e-16 * std::fabs(x)) break;
    }
    return x;
}

double gamma_p_inverse(double a, double prob) {
    if (!(a > 0.0) || !std::isfinite(a)) throw InputError(cat("inverse gamma: shape ", a, " is not positive"));
    if (!(prob > 0.0 && prob < 1.0)) throw InputError(cat("inverse gamma: probability ", prob, " outside (0, 1)"));
    // Start: Wilson–Hilferty (chi-square with 2a dof, halved); for small
    // probabilities or shapes the series' first term P ≈ x^a/Γ(a+1).
    const double k = 2.0 * a;
    const double z = normal_quantile(prob);
    const double t = 1.0 - 2.0 / (9.0 * k) + z * std::sqrt(2.0 / (9.0 * k));
    double x = 0.5 * k * t * t * t;
    const double x_small = std::exp((std::log(prob) + std::lgamma(a + 1.0)) / a);
    if (!(x > 0.0)) x = x_small;
    // Halley on f(x) = P(a,x) - prob, written as (1-prob) - Q(a,x) above the
    // median so the residual keeps its relative accuracy in the upper tail.
    const bool upper = prob > 0.5;
    const double target = upper ? 1.0 - prob : prob;
    double lo = 0.0;
    double hi = std::numeric_limits<double>::infinity();
    for (int it = 0; it < 200; ++it) {
        const double f = upper ? target - gamma_q(a, x) : gamma_p(a, x) - target;
        if (f == 0.0) break;
        if (f > 0.0) {
            hi = x;
        } else {
            lo = x;
        }
        const double dens = std::exp((a - 1.0) * std::log(x) - x - std::lgamma(a));  // dP/dx
        double xn = x;
        if (dens > 0.0 && std::isfinite(dens)) {
            const double step = f / dens;
            const double curv = (a - 1.0) / x - 1.0;  // f''/f'
            const double den = 1.0 - 0.5 * step * curv;
            xn = x - (den > 0.5 && den < 2.0 ? step / den : step);
        }
        if (!(xn > lo && xn < hi)) xn = std::isinf(hi) ? 2.0 * x + 1.0 : 0.5 * (lo + hi);
        const bool done = std::fabs(xn - x) <= 4e-16 * x;
        x = xn;
        if (done) break;
    }
    return x;
}

double chi2_cdf(double x, double dof) {
    if (!(dof > 0.0)) throw InputError(cat("chi-square: ", dof, " degrees of freedom"));
    if (x <= 0.0) return 0.0;
    return gamma_p(0.5 * dof, 0.5 * x);
}

double chi2_quantile(double prob, double dof) {
    if (!(dof > 0.0)) throw InputError(cat("chi-square: ", dof, " degrees of freedom"));
    if (!(prob > 0.0 && prob < 1.0)) throw InputError(cat("chi-square quantile: probability ", prob, " outside (0, 1)"));
    return 2.0 * gamma_p_inverse(0.5 * dof, prob);
}

double regularized_beta(double a, double b, double x) {
    if (!(a > 0.0) || !(b > 0.0)) throw InputError(cat("incomplete beta: parameters ", a, ", ", b, " must be positive"));
    if (!(x >= 0.0 && x <= 1.0)) throw InputError(cat("incomplete beta: x = ", x, " outside [0, 1]"));
    if (x == 0.0) return 0.0;
    if (x == 1.0) return 1.0;
    const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                             b * std::log1p(-x);
    const double front = std::exp(log_front);
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_cfrac(a, b, x) / a;
    return 1.0 - front * beta_cfrac(b, a, 1.0 - x) / b;
}

double binomial_upper_tail(std::uint64_t k, std::uint64_t n, double p) {
    if (!(p >= 0.0 && p <= 1.0)) throw InputError(cat("binomial: probability ", p, " outside [0, 1]"));
    if (k == 0) return 1.0;
    if (k > n) return 0.0;
    if (p == 0.0) return 0.0;
    if (p == 1.0) return 1.0;
    return regularized_beta(static_cast<double>(k), static_cast<double>(n - k + 1), p);
}

}  // namespace eol::models
