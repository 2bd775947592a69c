#!/usr/bin/python3
"""Model-free check of the thermal time constant on the real record (SciPy).

For each of the eight 3 A windows (cut as in real_record.hpp), fits the
cooling rest alone, from 60 s after the current stops to the end of the rest:
T_cell = A·e + F[T_amb] + c·(1 − e), e = exp(−t/τ), F the first-order lag of
the chamber temperature — no heat model, no circuit. If the cooling τ of the
windows differ, the windows differ in the data, not in the heat model.
Also per rest: τ from its first 1500 s only (a single exponential gives the
same τ from any part of the curve), the cell's rise above the chamber at the
start, the chamber sensor's drift (linear, mK/h) and spread (SD) over the
rest, and the correlation of the drift with τ.
Run with /usr/bin/python3 (Debian's numpy/scipy). Prints a markdown table.
"""
import os
import sys

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import fitref  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FILE = os.path.join(ROOT, "..", "shared", "data", "real", "samsung-30q-hppc-20c-10pct-soc-steps.txt")


def main():
    d = fitref.read_labview(sys.argv[1] if len(sys.argv) > 1 else FILE)
    t, _ = fitref.stitch(d[:, 0])
    i, tc, ta = -d[:, 1], d[:, 4], d[:, 5]
    lv = fitref.level(i)
    segs, k = [], 0
    while k < len(t):
        e = k
        while e < len(t) and lv[e] == lv[k]:
            e += 1
        segs.append((k, e, lv[k]))
        k = e
    print("| window | cooling tau s | tau from the first 1500 s | c K | RMSE mK | rise K | chamber drift mK/h | "
          "chamber SD mK |\n|---|---|---|---|---|---|---|---|")
    taus, drifts = [], []
    for j, (a, b, lvl) in enumerate(segs):
        if lvl != 3 or j + 1 >= len(segs):
            continue
        s0, s1 = b + 60, segs[j + 1][1]
        tt = t[s0:s1] - t[s0]

        def fit(lt, span=np.inf):
            m = tt <= span
            tau = np.exp(lt)
            e = np.exp(-tt[m] / tau)
            y = (tc[s0:s1] - fitref.ltv_filter(tt, ta[s0:s1], tau))[m]
            A = np.column_stack([e, 1 - e])
            c, *_ = np.linalg.lstsq(A, y, rcond=None)
            return np.sum((A @ c - y) ** 2), c

        def best(span=np.inf):
            grid = np.linspace(np.log(100), np.log(20000), 60)
            g0 = grid[int(np.argmin([fit(g, span)[0] for g in grid]))]
            r = minimize_scalar(lambda x: fit(x, span)[0], bounds=(g0 - 0.1, g0 + 0.1), method="bounded",
                                options={"xatol": 1e-7})
            return r.x

        x = best()
        ss, c = fit(x)
        x_early = best(1500.0)
        early = f"{np.exp(x_early):.0f}" if np.exp(x_early) < 19000 else "> 19000 (no decay)"
        amb = ta[s0:s1]
        drift = np.polyfit(tt, amb, 1)[0] * 3600e3
        rise = tc[s0] - amb[:60].mean()
        taus.append(np.exp(x))
        drifts.append(drift)
        print(f"| {len(taus) - 1} | {np.exp(x):.0f} | {early} | {c[1]:.3f} | {1e3 * np.sqrt(ss / len(tt)):.1f} | "
              f"{rise:.2f} | {drift:+.0f} | {1e3 * amb.std():.0f} |")
    md = np.median(taus)
    print(f"\ncooling tau: median {md:.0f} s, range {min(taus) / md - 1:+.0%} / {max(taus) / md - 1:+.0%}; "
          f"correlation of the chamber drift with tau {np.corrcoef(drifts, taus)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
