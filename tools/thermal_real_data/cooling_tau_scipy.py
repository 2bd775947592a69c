#!/usr/bin/python3
"""Model-free check of the thermal time constant on the real record (SciPy).

For each of the eight 3 A windows (cut as in real_record.hpp), fits the
cooling rest alone, from 60 s after the current stops to the end of the rest:
T_cell = A·e + F[T_amb] + c·(1 − e), e = exp(−t/τ), F the first-order lag of
the chamber temperature — no heat model, no circuit. If the cooling τ of the
windows differ, the windows differ in the data, not in the heat model.
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
    print("| window | cooling tau s | c K | RMSE mK |\n|---|---|---|---|")
    taus = []
    for j, (a, b, lvl) in enumerate(segs):
        if lvl != 3 or j + 1 >= len(segs):
            continue
        s0, s1 = b + 60, segs[j + 1][1]
        tt = t[s0:s1] - t[s0]

        def fit(lt):
            tau = np.exp(lt)
            e = np.exp(-tt / tau)
            y = tc[s0:s1] - fitref.ltv_filter(tt, ta[s0:s1], tau)
            A = np.column_stack([e, 1 - e])
            c, *_ = np.linalg.lstsq(A, y, rcond=None)
            return np.sum((A @ c - y) ** 2), c

        grid = np.linspace(np.log(100), np.log(20000), 60)
        g0 = grid[int(np.argmin([fit(g)[0] for g in grid]))]
        r = minimize_scalar(lambda x: fit(x)[0], bounds=(g0 - 0.1, g0 + 0.1), method="bounded",
                            options={"xatol": 1e-7})
        ss, c = fit(r.x)
        taus.append(np.exp(r.x))
        print(f"| {len(taus) - 1} | {np.exp(r.x):.0f} | {c[1]:.3f} | {1e3 * np.sqrt(ss / len(tt)):.1f} |")
    md = np.median(taus)
    print(f"\ncooling tau: median {md:.0f} s, range {min(taus) / md - 1:+.0%} / {max(taus) / md - 1:+.0%}")


if __name__ == "__main__":
    main()
