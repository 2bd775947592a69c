// FAST-MCD against scikit-learn 1.2.1's MinCovDet on the same data and seed,
// the chi-square quantile against scipy, distances, contributions, errors.
//
// The data come from make_data() below: splitmix64 integers → uniforms
// k·2⁻⁵³ → Irwin–Hall "normals" (sum of 12 uniforms - 6) → a fixed
// lower-triangular mix, with planted outliers every n/n_out rows. Only IEEE
// +, * and integer operations, so Python reproduces it bit for bit. The
// expected values were produced with /usr/bin/python3 (numpy 1.24.2,
// scikit-learn 1.2.1, scipy 1.10.1) by:
//
//   import numpy as np
//   from sklearn.covariance import MinCovDet
//   from scipy.stats import chi2
//   M = (1 << 64) - 1
//   def splitmix(state):
//       state = (state + 0x9E3779B97F4A7C15) & M
//       z = state
//       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//       return state, z ^ (z >> 31)
//   def make_data(n, p, seed, n_out):
//       s = seed; X = np.zeros((n, p))
//       for i in range(n):
//           z = []
//           for j in range(p):
//               acc = 0.0
//               for k in range(12):
//                   s, r = splitmix(s)
//                   acc += (r >> 11) * (1.0 / 9007199254740992.0)
//               z.append(acc - 6.0)
//           for j in range(p):
//               v = float(j + 1)
//               for k in range(j + 1):
//                   v += (0.5 if k < j else 1.0 + 0.25 * j) * z[k]
//               X[i, j] = v
//           if i % (n // n_out) == 0 and i // (n // n_out) < n_out:
//               for j in range(p):
//                   X[i, j] += 4.0 + 0.5 * j if j % 2 == 0 else -3.0
//       return X
//   X = make_data(n, p, seed, n_out)
//   m = MinCovDet(random_state=7).fit(X)
//   print(m.raw_location_, m.raw_covariance_, m.location_, m.covariance_,
//         m.raw_support_.sum(), m.support_.sum(), m.dist_[:3],
//         np.where(m.dist_ > chi2.ppf(0.999, p))[0])
//
// with (n, p, seed, n_out) = (120, 3, 11, 8), (700, 4, 12, 20),
// (1550, 3, 13, 40), (60, 1, 14, 4), (200, 11, 15, 6). They cover sklearn's
// three code paths (n ≤ 500; 500 < n < 1500 with subsets and a merged set;
// n ≥ 1500 with a final pass over all rows), the univariate shortest half,
// and p above the fixed-size kernels.
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "eol/models/mcd.hpp"
#include "eol/models/series.hpp"

using eol::models::chi2_cdf;
using eol::models::chi2_quantile;
using eol::models::fit_mcd;
using eol::models::InputError;
using eol::models::McdResult;
using eol::models::McdSettings;

namespace {

std::uint64_t splitmix(std::uint64_t& state) {
    state += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

Eigen::MatrixXd make_data(Eigen::Index n, Eigen::Index p, std::uint64_t seed, Eigen::Index n_out) {
    std::uint64_t s = seed;
    Eigen::MatrixXd X(n, p);
    std::vector<double> z(static_cast<std::size_t>(p));
    for (Eigen::Index i = 0; i < n; ++i) {
        for (Eigen::Index j = 0; j < p; ++j) {
            double acc = 0.0;
            for (int k = 0; k < 12; ++k) acc += static_cast<double>(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
            z[static_cast<std::size_t>(j)] = acc - 6.0;
        }
        for (Eigen::Index j = 0; j < p; ++j) {
            double v = static_cast<double>(j + 1);
            for (Eigen::Index k = 0; k <= j; ++k)
                v += (k < j ? 0.5 : 1.0 + 0.25 * static_cast<double>(j)) * z[static_cast<std::size_t>(k)];
            X(i, j) = v;
        }
        const Eigen::Index step = n / n_out;
        if (i % step == 0 && i / step < n_out)
            for (Eigen::Index j = 0; j < p; ++j) X(i, j) += j % 2 == 0 ? 4.0 + 0.5 * static_cast<double>(j) : -3.0;
    }
    return X;
}

struct Expected {
    std::vector<double> raw_location, raw_covariance, location, covariance;  // covariance row-major (or empty)
    std::size_t raw_support, support;
    std::vector<double> dist3;
    std::vector<Eigen::Index> flagged;
};

void check_close(double got, double want, const char* what, std::size_t k) {
    INFO(what << "[" << k << "] got " << got << " want " << want);
    CHECK(std::fabs(got - want) <= 1e-9 * (1.0 + std::fabs(want)));
}

void check_against(const Eigen::MatrixXd& X, const Expected& e) {
    McdSettings s;
    s.seed = 7;
    const McdResult r = fit_mcd(X, s);
    const auto p = X.cols();
    for (Eigen::Index j = 0; j < p; ++j) {
        const auto k = static_cast<std::size_t>(j);
        check_close(r.raw_location(j), e.raw_location[k], "raw_location", k);
        check_close(r.location(j), e.location[k], "location", k);
        for (Eigen::Index l = 0; l < p; ++l) {
            const auto kl = static_cast<std::size_t>(j * p + l);
            if (!e.raw_covariance.empty()) check_close(r.raw_covariance(j, l), e.raw_covariance[kl], "raw_covariance", kl);
            if (!e.covariance.empty()) check_close(r.covariance(j, l), e.covariance[kl], "covariance", kl);
        }
    }
    CHECK(std::count(r.raw_support.begin(), r.raw_support.end(), 1) == static_cast<std::ptrdiff_t>(e.raw_support));
    CHECK(std::count(r.support.begin(), r.support.end(), 1) == static_cast<std::ptrdiff_t>(e.support));
    for (std::size_t k = 0; k < 3; ++k) check_close(r.distance_sq[k], e.dist3[k], "dist", k);
    const double cut = chi2_quantile(0.999, static_cast<double>(p));
    std::vector<Eigen::Index> flagged;
    for (Eigen::Index i = 0; i < X.rows(); ++i)
        if (r.distance_sq[static_cast<std::size_t>(i)] > cut) flagged.push_back(i);
    CHECK(flagged == e.flagged);
}

}  // namespace

TEST_CASE("mcd: n = 120, p = 3 equals sklearn MinCovDet (random starts, C-steps, reweighting)") {
    const auto X = make_data(120, 3, 11, 8);
    CHECK(X(0, 0) == 4.034636873838793);  // the generator is the one the expected values came from
    CHECK(X(119, 2) == 2.8337059081388167);
    check_against(X, {{0.7854840966659083, 1.8133258319024796, 2.8547314365241756},
                      {0.6681088869383154, 0.24565439909636091, 0.32989794113876914, 0.24565439909636091,
                       0.5000475342428823, 0.2768380090329854, 0.32989794113876914, 0.2768380090329854,
                       1.010641261406297},
                      {0.9517177156004074, 1.996496312158041, 2.76390536042125},
                      {1.0393292644403322, 0.4553170562287407, 0.47568680357739707, 0.4553170562287407,
                       1.4210447205898693, 0.8208437332091224, 0.47568680357739707, 0.8208437332091224,
                       2.330965113209043},
                      62,
                      108,
                      {50.19891365915756, 4.900076299095221, 0.7903456369305234},
                      {0, 15, 30, 45, 60, 75, 90, 105}});
}

TEST_CASE("mcd: n = 700, p = 4 equals sklearn (subsets of 300, merged set)") {
    const auto X = make_data(700, 4, 12, 20);
    check_against(X, {{0.9737958620581048, 2.144372313045708, 3.1841122916853815, 4.149593538703914},
                      {0.49866314583204063, 0.28975577026398885, 0.21618369612551608, 0.2570362332371112,
                       0.28975577026398885, 1.2120632723214255, 0.4997881838812127, 0.4540395757807065,
                       0.21618369612551608, 0.4997881838812127, 1.1747525636968608, 0.33702718598731585,
                       0.2570362332371112, 0.4540395757807065, 0.33702718598731585, 1.5132622352426335},
                      {0.9603732537200401, 2.0109037111264114, 3.034160916696465, 3.930106023539488},
                      {0.88145375382561, 0.4785718763062544, 0.45085489363467557, 0.4273869963548944,
                       0.4785718763062544, 1.9558441161381295, 0.8732514525895018, 0.8221701162219854,
                       0.45085489363467557, 0.8732514525895018, 2.536143890399004, 1.1984214329678302,
                       0.4273869963548944, 0.8221701162219854, 1.1984214329678302, 3.548712844350734},
                      354,
                      663,
                      {66.08058395985866, 2.468160231032092, 1.2748634379495316},
                      {0, 35, 70, 105, 140, 175, 210, 245, 280, 315, 350, 385, 420, 455, 490, 525, 560, 595, 630,
                       665}});
}

TEST_CASE("mcd: n = 1550, p = 3 equals sklearn (subsets, merged set, all rows), natural outliers too") {
    const auto X = make_data(1550, 3, 13, 40);
    check_against(X, {{0.9910875450208149, 2.043448402241791, 3.04791970644673},
                      {0.40736950245360914, 0.13429041475602546, 0.21454595297968446, 0.13429041475602546,
                       0.7200389161599792, 0.35595877102421014, 0.21454595297968446, 0.35595877102421014,
                       1.1604824311354929},
                      {1.0149795310787262, 1.9728652385221443, 2.9930237203018737},
                      {0.9362681283517266, 0.43914862812405064, 0.4783672460975612, 0.43914862812405064,
                       1.6245183047428495, 0.8375522454120584, 0.4783672460975612, 0.8375522454120584,
                       2.6211937773568685},
                      777,
                      1476,
                      {30.278706939197228, 3.6055309499545194, 1.7628521065235034},
                      {0,    38,   76,   114,  152,  190,  228,  266,  304,  342,  380,  418,  456,  494,
                       532,  570,  608,  646,  684,  760,  798,  836,  874,  912,  950,  988,  1026, 1064,
                       1102, 1140, 1178, 1216, 1254, 1292, 1328, 1330, 1368, 1406, 1444, 1458, 1482}});
}

TEST_CASE("mcd: one feature uses the shortest half, like sklearn") {
    const auto X = make_data(60, 1, 14, 4);
    check_against(X, {{0.7084602361186931},
                      {0.2090722003608728},
                      {0.9398573813099454},
                      {0.8958796625907227},
                      31,
                      56,
                      {15.812440351490869, 3.66809648755185, 0.005729056590531509},
                      {0, 15, 30, 45}});
}

TEST_CASE("mcd: eleven features (generic kernels) equal sklearn") {
    const auto X = make_data(200, 11, 15, 6);
    check_against(X, {{0.9083443321999827, 1.9387246595572845, 2.836288829030218, 4.037721452683378,
                       5.231492618595688, 5.560767804011265, 6.876915544734421, 7.852647696100039,
                       9.002936545209101, 9.909797946190649, 11.773407595372893},
                      {},
                      {0.8998458957503028, 1.984873615693438, 2.892074736266222, 4.1516793306318,
                       5.198396884264164, 5.793540525600953, 6.9280696928898635, 7.980259545766933,
                       8.669031823302529, 9.925180482660842, 11.234882990761815},
                      {},
                      106,
                      173,
                      {75.32802011459358, 8.294996641275635, 15.375117197862712},
                      {0, 31, 33, 66, 99, 132, 165, 173, 194}});
}

TEST_CASE("mcd: large n is deterministic whatever the thread count, and finds the planted outliers") {
    const auto X = make_data(33000, 3, 21, 165);  // above the parallel threshold (32768 rows)
    McdSettings one;
    one.seed = 3;
    one.threads = 1;
    McdSettings two = one;
    two.threads = 2;
    const McdResult a = fit_mcd(X, one);
    const McdResult b = fit_mcd(X, two);
    CHECK(a.subsets_used == 5);  // the default cap (sklearn would use 110)
    CHECK(a.full_c_steps > 0);
    CHECK(a.raw_location == b.raw_location);
    CHECK(a.covariance == b.covariance);
    CHECK(a.distance_sq == b.distance_sq);
    const double cut = chi2_quantile(0.999, 3.0);
    std::size_t planted_found = 0, others = 0;
    for (std::size_t i = 0; i < a.distance_sq.size(); ++i) {
        const bool planted = i % 200 == 0;
        if (a.distance_sq[i] > cut) (planted ? planted_found : others) += 1;
    }
    CHECK(planted_found == 165);
    CHECK(others < 165);  // ~0.1-0.2 % natural exceedances of 32,835 inliers
    // The location is close to the generator's (1, 2, 3).
    CHECK(std::fabs(a.location(0) - 1.0) < 0.05);
    CHECK(std::fabs(a.location(2) - 3.0) < 0.05);
}

TEST_CASE("mcd: chi-square quantile and cdf agree with scipy.stats.chi2") {
    // scipy.stats.chi2.ppf(p, k), scipy 1.10.1
    struct Q {
        double p, k, x;
    };
    const Q table[] = {{0.5, 1, 0.454936423119572},      {0.5, 2, 1.386294361119891},
                       {0.5, 8, 7.344121497701794},      {0.975, 8, 17.534546139484647},
                       {0.999, 8, 26.12448155837614},    {0.999, 1, 10.827566170662733},
                       {0.999, 2, 13.815510557964274},   {0.9999, 3, 21.107513466160444},
                       {0.01, 1, 0.00015708785790970184}, {0.001, 5, 0.2102126026292192},
                       {0.5, 50, 49.33493673397683},     {0.999, 100, 149.44925277903886},
                       {1e-06, 0.5, 1.3499395786223394e-24}, {0.999999, 10, 46.86304684671568},
                       {0.025, 4, 0.4844185570879299}};
    for (const auto& q : table) {
        INFO("p=" << q.p << " k=" << q.k);
        CHECK(chi2_quantile(q.p, q.k) == doctest::Approx(q.x).epsilon(1e-12));
        CHECK(chi2_cdf(q.x, q.k) == doctest::Approx(q.p).epsilon(1e-12));
    }
    // scipy.stats.norm.ppf
    CHECK(eol::models::normal_quantile(0.975) == doctest::Approx(1.959963984540054).epsilon(1e-14));
    CHECK(eol::models::normal_quantile(1e-10) == doctest::Approx(-6.361340902404056).epsilon(1e-13));
    CHECK(eol::models::normal_quantile(0.5) == 0.0);
    CHECK_THROWS_AS(chi2_quantile(1.0, 3), InputError);
    CHECK_THROWS_AS(chi2_quantile(0.5, 0), InputError);
}

TEST_CASE("mcd: distances and feature contributions") {
    Eigen::MatrixXd cov(2, 2);
    cov << 4.0, 1.8, 1.8, 1.0;  // correlation 0.9
    Eigen::VectorXd loc(2);
    loc << 10.0, 5.0;
    Eigen::MatrixXd x(3, 2);
    x << 10.0, 5.0,  //
        12.0, 6.0,   // along the correlation: close
        12.0, 4.0;   // against it: far, though each coordinate is only 1-2 σ off
    const auto d = eol::models::mahalanobis_sq(x, loc, cov);
    const Eigen::MatrixXd inv = cov.inverse();
    for (Eigen::Index i = 0; i < 3; ++i) {
        const Eigen::VectorXd z = x.row(i).transpose() - loc;
        CHECK(d[static_cast<std::size_t>(i)] == doctest::Approx(z.dot(inv * z)).epsilon(1e-12));
    }
    CHECK(d[2] > 10.0 * d[1]);

    const eol::models::ContributionWhitener w(cov);
    const auto c = w.contributions(x.row(2).transpose(), loc);
    REQUIRE(c.size() == 2);
    CHECK(c[0].share + c[1].share == doctest::Approx(1.0));
    CHECK(c[0].share >= c[1].share);
    CHECK(c[0].share > 0.0);
    // z-scores are marginal: (12-10)/2 and (4-5)/1
    for (const auto& f : c) CHECK(std::fabs(f.z) == doctest::Approx(1.0));
    // Order invariance: swapping the features swaps the shares.
    Eigen::MatrixXd cov_s(2, 2);
    cov_s << 1.0, 1.8, 1.8, 4.0;
    Eigen::VectorXd loc_s(2), x_s(2);
    loc_s << 5.0, 10.0;
    x_s << 4.0, 12.0;
    const auto cs = eol::models::ContributionWhitener(cov_s).contributions(x_s, loc_s);
    CHECK(cs[0].share == doctest::Approx(c[0].share));
    CHECK(cs[0].feature != c[0].feature);
}

TEST_CASE("mcd: input errors name the problem") {
    Eigen::MatrixXd x = make_data(50, 3, 5, 1);
    x(7, 1) = std::nan("");
    CHECK_THROWS_WITH_AS(fit_mcd(x), doctest::Contains("row 7, feature 1"), InputError);
    CHECK_THROWS_WITH_AS(fit_mcd(make_data(3, 3, 5, 1)), doctest::Contains("more rows than features"), InputError);
    McdSettings bad;
    bad.support_fraction = 1.5;
    CHECK_THROWS_WITH_AS(fit_mcd(make_data(50, 3, 5, 1), bad), doctest::Contains("support fraction"), InputError);
    Eigen::MatrixXd constant = make_data(50, 2, 5, 1);
    constant.col(1).setConstant(2.0);
    CHECK_THROWS_AS(fit_mcd(constant), InputError);
}
