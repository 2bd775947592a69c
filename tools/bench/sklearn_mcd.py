#!/usr/bin/python3
"""sklearn_mcd.py — the reference side of the screening benchmark.

Fits sklearn.covariance.MinCovDet(random_state=SEED) to the cells written by
`bench_screen generate` (DIR/cells.f64: int64 n, int64 p, then n*p float64
row-major), flags rows whose squared robust distance (dist_) exceeds
chi2.ppf(QUANTILE, p) — the same rule as eol::models::screen — and prints,
next to the figures bench_screen left in DIR/<tag>.json and
DIR/<tag>_outliers.txt: the times, the ratio, the Jaccard index of the two
outlier sets, how many planted outliers each found, and peak memory.

  sklearn_mcd.py --data-dir DIR [--ours ours] [--also TAG ...] [--seed 0]
                 [--quantile 0.999] [--rows N]

--rows N fits sklearn on the first N rows only (then the comparison is
against ours on the same N rows: run bench_screen with --n N). Exit status 1
when a target is missed: ours (PAT + MCD + lot tests) < 5 s, >= 20x faster
than sklearn's MinCovDet fit, Jaccard >= 0.95.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import sklearn
from scipy.stats import chi2
from sklearn.covariance import MinCovDet


def read_cells(path):
    with open(path, "rb") as f:
        n, p = np.fromfile(f, dtype=np.int64, count=2)
        x = np.fromfile(f, dtype=np.float64, count=int(n) * int(p)).reshape(int(n), int(p))
    return x


def read_set(path):
    with open(path) as f:
        return set(int(line) for line in f if line.strip())


def jaccard(a, b):
    return len(a & b) / len(a | b) if a or b else 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--ours", default="ours", help="tag of bench_screen's run (DIR/TAG.json)")
    ap.add_argument("--also", nargs="*", default=[], help="more bench_screen tags to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantile", type=float, default=0.999)
    ap.add_argument("--rows", type=int, default=0)
    a = ap.parse_args()

    x = read_cells(os.path.join(a.data_dir, "cells.f64"))
    if a.rows:
        x = np.ascontiguousarray(x[: a.rows])
    n, p = x.shape
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    mcd = MinCovDet(random_state=a.seed).fit(x)
    fit_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    cut = chi2.ppf(a.quantile, p)
    theirs = set(np.flatnonzero(mcd.dist_ > cut).tolist())
    with open(os.path.join(a.data_dir, "sklearn_outliers.txt"), "w") as f:
        f.writelines(f"{i}\n" for i in sorted(theirs))
    planted = {i for i in read_set(os.path.join(a.data_dir, "planted.txt")) if i < n}

    ours = json.load(open(os.path.join(a.data_dir, a.ours + ".json")))
    if ours["n"] != n:
        sys.exit(f"bench_screen ran on {ours['n']} rows, sklearn on {n}: run both on the same rows")
    ours_set = read_set(os.path.join(a.data_dir, a.ours + "_outliers.txt"))
    j = jaccard(ours_set, theirs)
    ratio = fit_s / ours["core_s"]
    ratio_mcd = fit_s / ours["mcd_s"]

    print(f"\n{n:,} cells x {p} features, chi-square cutoff {cut:.3f} (quantile {a.quantile})")
    print(f"{'':34}{'ours':>12}{'sklearn':>12}")
    print(f"{'PAT':34}{ours['pat_s']:>11.3f}s{'-':>12}")
    print(f"{'FAST-MCD (+ distances)':34}{ours['mcd_s']:>11.3f}s{fit_s:>11.1f}s")
    print(f"{'lot/window tests':34}{ours['lots_s']:>11.3f}s{'-':>12}")
    print(f"{'PAT + MCD + lot tests':34}{ours['core_s']:>11.3f}s{'-':>12}")
    print(f"{'full-data C-steps / subsets':34}{ours['full_c_steps']:>8} / {ours['max_subsets']:<2}"
          f"{'? / ' + str(n // 300):>12}")
    print(f"{'MCD outliers':34}{len(ours_set):>12}{len(theirs):>12}")
    print(f"{'planted outliers found':34}{len(ours_set & planted):>12}{len(theirs & planted):>12}   (of {len(planted)})")
    print(f"{'peak RSS (MB, incl. the input)':34}{ours['peak_rss_mb']:>12.0f}{rss:>12.0f}   "
          f"(input alone {ours['table_rss_mb']:.0f} / {rss_input:.0f})")
    print(f"\nspeed-up: {ratio:.1f}x (sklearn fit / ours PAT+MCD+lots), {ratio_mcd:.1f}x (MCD alone)")
    print(f"Jaccard(ours, sklearn) = {j:.4f}   (|A&B| {len(ours_set & theirs)}, |A|B| {len(ours_set | theirs)})")
    if "location" in ours:
        sd = np.sqrt(np.diag(mcd.covariance_))
        print(f"robust location: max |ours - sklearn| = {np.max(np.abs(np.array(ours['location']) - mcd.location_) / sd):.2e} sd")
    for tag in a.also:
        other = json.load(open(os.path.join(a.data_dir, tag + ".json")))
        s = read_set(os.path.join(a.data_dir, tag + "_outliers.txt"))
        print(f"\n{tag}: max_subsets {other['max_subsets']}, MCD {other['mcd_s']:.2f}s "
              f"({other['full_c_steps']} full-data C-steps), {len(s)} outliers, "
              f"Jaccard vs sklearn {jaccard(s, theirs):.4f}, vs ours {jaccard(s, ours_set):.4f}")
        if "location" in other:
            sd = np.sqrt(np.diag(mcd.covariance_))
            print(f"  robust location: max |{tag} - sklearn| = "
                  f"{np.max(np.abs(np.array(other['location']) - mcd.location_) / sd):.2e} sd")
    print(f"\n(sklearn {sklearn.__version__}, numpy {np.__version__}; ours: {ours['tag']})")

    ok = ours["core_s"] < 5.0 and ratio >= 20.0 and j >= 0.95
    print("targets (< 5 s, >= 20x, Jaccard >= 0.95):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
