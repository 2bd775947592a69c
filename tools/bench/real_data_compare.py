#!/usr/bin/python3
"""Real data: eolstation fits vs SciPy least_squares on the same windows.

Reads the Samsung 30Q HPPC record (../shared/data/real, ARTS-Lab, CC BY-SA
4.0), stitches its time column, cuts the same windows as the C++ real-data
test (each 10 s, 6 A pulse with its ~180 s rest; each 3 A step with its
~90 min rest), writes each window to a CSV in a temporary directory (current
as in the file, negative on discharge), runs `eolstation fit ecm|thermal
--discharge-negative --json` on it, fits the same model with SciPy
(best of several starts) and prints one table per model.

Requirement checked (exit 1 if violated): for every pulse window our RMSE
is no worse than SciPy's (to 1 ppb) and R0 is within 2 % of SciPy's. For the thermal
windows SciPy gets the same heat input (the Joule heat per interval of the
window's circuit fit, computed here from `eolstation fit ecm` and checked
against the heating_ohm eolstation reports) and our RMSE must be no worse.

Usage: real_data_compare.py [--eolstation PATH] [--file PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fitref  # noqa: E402

# "No worse" up to 1 ppb (1e-9 relative; the ppb column shows ours/SciPy − 1,
# negative = ours lower): both stop when the gain left is at rounding level.
TOL = 1e-9
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_FILE = os.path.join(ROOT, "..", "shared", "data", "real", "samsung-30q-hppc-20c-10pct-soc-steps.txt")


def find_cli():
    for b in ("models-rel", "release", "models", "dev", "debug"):
        p = os.path.join(ROOT, "build", b, "station", "cli", "eolstation")
        if os.access(p, os.X_OK):
            return p
    return "eolstation"


def run(cli, args):
    r = subprocess.run([cli] + args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join([cli] + args)} failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout)


def write_csv(path, cols, names):
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row in zip(*cols):
            f.write(",".join(repr(float(x)) for x in row) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eolstation", default=find_cli())
    ap.add_argument("--file", default=DEFAULT_FILE)
    a = ap.parse_args()
    if not os.path.exists(a.file):
        sys.exit(f"missing real data file {a.file}")

    d = fitref.read_labview(a.file)
    t, nrep = fitref.stitch(d[:, 0])
    i_raw, v, tc, ta = d[:, 1], d[:, 2], d[:, 4], d[:, 5]
    i_dis = -i_raw
    print(f"{a.file}: {len(t)} samples, {nrep} time-base repairs, eolstation = {a.eolstation}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        print("\nECM, OCV + R0 + 2 RC, each 6 A pulse + relaxation")
        hdr = (f"{'window':>13} {'n':>4} | {'R0 ours':>9} {'R0 SciPy':>9} {'diff':>7} | {'R1 ours/SciPy mΩ':>17} | "
               f"{'tau1 ours/SciPy s':>17} | {'R2 ours/SciPy mΩ':>17} | {'tau2 ours/SciPy s':>17} | "
               f"{'RMSE ours':>10} {'RMSE SciPy':>10} {'ppb':>6} | ok")
        print(hdr)
        print("-" * len(hdr))
        for k, (lo, hi) in enumerate(fitref.windows(i_dis, 6)):
            path = os.path.join(tmp, f"pulse{k}.csv")
            write_csv(path, [t[lo:hi], i_raw[lo:hi], v[lo:hi]], ["time", "current", "voltage"])
            ours = run(a.eolstation, ["fit", "ecm", "--csv", path, "--discharge-negative", "--json"])
            ref = fitref.fit_ecm_scipy(t[lo:hi], i_dis[lo:hi], v[lo:hi], 2)
            diff = (ours["r0_ohm"] - ref["r0_ohm"]) / ref["r0_ohm"] * 100
            good = ours["rmse_v"] <= ref["rmse_v"] * (1 + TOL) and abs(diff) <= 2.0
            ok &= good
            print(f"{lo:>6}-{hi:<6} {hi - lo:>4} | {ours['r0_ohm'] * 1e3:>7.3f}mΩ {ref['r0_ohm'] * 1e3:>7.3f}mΩ "
                  f"{diff:>+6.2f}% | {ours['r1_ohm'] * 1e3:>8.3f}/{ref['r1_ohm'] * 1e3:<8.3f} | "
                  f"{ours['tau1_s']:>8.3f}/{ref['tau1_s']:<8.3f} | {ours['r2_ohm'] * 1e3:>8.3f}/{ref['r2_ohm'] * 1e3:<8.3f} | "
                  f"{ours['tau2_s']:>8.1f}/{ref['tau2_s']:<8.1f} | "
                  f"{ours['rmse_v'] * 1e3:>8.6f}mV {ref['rmse_v'] * 1e3:>8.6f}mV "
                  f"{(ours['rmse_v'] / ref['rmse_v'] - 1) * 1e9:>+6.2f} | {'yes' if good else 'NO'}")

        print("\nThermal, heat R0·I² + Σ Vk²/Rk of the window's 2 RC circuit fit (same heat for SciPy), ambient = chamber column")
        hdr = (f"{'window':>13} {'n':>5} | {'R_heat':>7} | {'C_th ours':>9} {'SciPy':>7} | {'R_th ours':>9} "
               f"{'SciPy':>6} | {'tau ours':>8} {'SciPy':>6} | {'P_x ours/SciPy mW':>17} | {'RMSE ours':>10} {'SciPy':>9} {'ppb':>7} | ok")
        print(hdr)
        print("-" * len(hdr))
        for k, (lo, hi) in enumerate(fitref.windows(i_dis, 3)):
            path = os.path.join(tmp, f"heat{k}.csv")
            write_csv(path, [t[lo:hi], i_raw[lo:hi], v[lo:hi], tc[lo:hi], ta[lo:hi]],
                      ["time", "current", "voltage", "cell_temp", "ambient_temp"])
            ours = run(a.eolstation, ["fit", "thermal", "--csv", path, "--discharge-negative", "--json"])
            ii, tt = i_dis[lo:hi], t[lo:hi]
            # The same heat as ours: the circuit's own Joule heat per interval
            # (R0·I² + Σ Vk²/Rk) of the same 2 RC fit of the window, pairs
            # slower than the window taken as the state-of-charge change.
            circ = run(a.eolstation, ["fit", "ecm", "--csv", path, "--rc", "2", "--discharge-negative", "--json"])
            pairs = [(circ[f"r{k}_ohm"], circ[f"tau{k}_s"]) for k in (1, 2)
                     if circ[f"tau{k}_s"] <= tt[-1] - tt[0]]
            heat = fitref.joule_power(tt, ii, circ["r0_ohm"], pairs)
            r_eff = float(np.sum(heat[1:] * np.diff(tt)) / np.sum(ii[:-1] ** 2 * np.diff(tt)))
            if abs(r_eff / ours["heating_ohm"] - 1) > 1e-6:
                sys.exit(f"heat window {k}: SciPy's heat ({r_eff} ohm) is not ours ({ours['heating_ohm']} ohm)")
            ref = fitref.fit_thermal_scipy(t[lo:hi], tc[lo:hi], heat, ta[lo:hi])
            good = ours["rmse_k"] <= ref["rmse_k"] * (1 + TOL)
            ok &= good
            print(f"{lo:>6}-{hi:<6} {hi - lo:>5} | {ours['heating_ohm'] * 1e3:>5.1f}mΩ | "
                  f"{ours['c_th_j_per_k']:>9.1f} {ref['c_th_j_per_k']:>7.1f} | {ours['r_th_k_per_w']:>9.2f} "
                  f"{ref['r_th_k_per_w']:>6.2f} | {ours['tau_s']:>8.0f} {ref['tau_s']:>6.0f} | "
                  f"{ours['p_extra_w'] * 1e3:>8.2f}/{ref['p_extra_w'] * 1e3:<8.2f} | "
                  f"{ours['rmse_k'] * 1e3:>8.5f}mK {ref['rmse_k'] * 1e3:>7.5f}mK "
                  f"{(ours['rmse_k'] / ref['rmse_k'] - 1) * 1e9:>+7.2f} | {'yes' if good else 'NO'}")
    print("\nrequirement (RMSE no worse than SciPy's, to 1 ppb; R0 within 2 %):", "met" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
