#!/usr/bin/python3
"""Reference of the drift-window scan (models/drift_window.hpp) in numpy/scipy,
written from the documented method, for tests/models/test_drift_window.cpp.

Input: CSV with a header `day,f0,f1,…` (day: integer day number).
Output (JSON on stdout): the used days, the whitening covariance, the best run
(first/last day), its statistic T, and the posterior of the start and end
(the permutation p-value is not reproduced: it depends on the random stream).
"""
import json
import sys

import numpy as np
from scipy import stats

WINSOR, MIN_DAY_FRACTION, MAX_WINDOW_FRACTION = 3.0, 0.5, 0.5

data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, ndmin=2)
day, x = data[:, 0].astype(np.int64), data[:, 1:]
p = x.shape[1]
centre = np.median(x, axis=0)
q1, q3 = np.percentile(x, [25, 75], axis=0)
z = np.clip((x - centre) / ((q3 - q1) / 1.349), -WINSOR, WINSOR)
days, inverse, counts = np.unique(day, return_inverse=True, return_counts=True)
used = counts >= max(2.0, MIN_DAY_FRACTION * np.sort(counts)[len(counts) // 2])
y = np.array([z[inverse == k].mean(axis=0) for k in range(len(days))])[used]
udays = days[used]
D = len(udays)

# Day covariance from successive differences, trimmed at chi2_p(0.99), 3 passes.
diff = np.diff(y, axis=0)
cov = diff.T @ diff / len(diff)
q99 = stats.chi2.ppf(0.99, p)
consistency = stats.chi2.cdf(q99, p + 2) / 0.99
for _ in range(3):
    d2 = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)
    keep = diff[d2 <= q99]
    cov = keep.T @ keep / len(keep) / consistency
cov_y = cov / 2
w = np.linalg.solve(np.linalg.cholesky(cov_y), y.T).T

def T(a, b):
    m = b - a + 1
    u = w[a:b + 1].sum(axis=0) - m / D * w.sum(axis=0)
    return D / (m * (D - m)) * (u @ u)

m_max = int(np.floor(MAX_WINDOW_FRACTION * D))
best = max(((T(a, b), a, b) for a in range(D) for b in range(a, min(D, a + m_max))), key=lambda t: t[0])
t_best, a, b = best

def posterior(ts):
    ts = np.array(ts)
    e = np.exp(0.5 * (ts - ts.max()))
    return (e / e.sum()).tolist()

starts = [s for s in range(0, b + 1) if b - s + 1 <= m_max]
ends = [e for e in range(a, D) if e - a + 1 <= m_max]
print(json.dumps({
    "days_used": int(D),
    "cov_y": cov_y.tolist(),
    "first_day": int(udays[a]), "last_day": int(udays[b]), "statistic": float(t_best),
    "start_days": [int(udays[s]) for s in starts], "start_posterior": posterior([T(s, b) for s in starts]),
    "end_days": [int(udays[e]) for e in ends], "end_posterior": posterior([T(a, e) for e in ends]),
}))
