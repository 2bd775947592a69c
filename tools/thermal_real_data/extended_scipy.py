#!/usr/bin/python3
"""SciPy cross-check of the extended thermal fit on the real record.

For each of the eight 3 A windows of the Samsung 30Q record (cut as in
real_record.hpp), runs `eolstation fit thermal --heating-rc 3 --reversible
--json` (reversible heat k·I, free start state, no sensor offset known) and
fits the same model with SciPy least_squares (tools/bench/fitref.py
fit_thermal_ext_scipy, best of 16 starts) on the same heat: the circuit's own
Joule heat R0·I² + Σ Vk²/Rk of `eolstation fit ecm --rc 3` of the window,
pairs slower than the window taken as the state-of-charge change (checked:
the effective heating resistance equals ours to 1e-6). Criterion: our RMSE no
worse than SciPy's (1 ppb), τ, R_th, k and c = offset + R_th·P_x within 1 %
(c: 1 mK), and P_x reported missing (null) in every window.
Usage: /usr/bin/python3 tools/thermal_real_data/extended_scipy.py [--eolstation PATH] [--file PATH]
Exit 0 when every window meets the criterion, 1 otherwise.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
import fitref  # noqa: E402
from real_data_compare import DEFAULT_FILE, find_cli, run, write_csv  # noqa: E402

TOL = 1e-9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eolstation", default=find_cli())
    ap.add_argument("--file", default=DEFAULT_FILE)
    a = ap.parse_args()
    d = fitref.read_labview(a.file)
    t, _ = fitref.stitch(d[:, 0])
    i_raw, v, tc, ta = d[:, 1], d[:, 2], d[:, 4], d[:, 5]
    i_dis = -i_raw
    print(f"{a.file}: eolstation = {a.eolstation}\n")
    print("| window | tau s ours / SciPy | R_th K/W ours / SciPy | k mV ours / SciPy | c K ours / SciPy | "
          "RMSE mK ours / SciPy | P_x ours | ok |")
    print("|---|---|---|---|---|---|---|---|")
    ok_all = True
    with tempfile.TemporaryDirectory() as tmp:
        for k, (lo, hi) in enumerate(fitref.windows(i_dis, 3)):
            path = os.path.join(tmp, f"heat{k}.csv")
            write_csv(path, [t[lo:hi], i_raw[lo:hi], v[lo:hi], tc[lo:hi], ta[lo:hi]],
                      ["time", "current", "voltage", "cell_temp", "ambient_temp"])
            ours = run(a.eolstation, ["fit", "thermal", "--csv", path, "--discharge-negative", "--heating-rc", "3",
                                      "--reversible", "--json"])
            tt, ii = t[lo:hi], i_dis[lo:hi]
            circ = run(a.eolstation, ["fit", "ecm", "--csv", path, "--rc", "3", "--discharge-negative", "--json"])
            pairs = [(circ[f"r{n}_ohm"], circ[f"tau{n}_s"]) for n in (1, 2, 3) if circ[f"tau{n}_s"] <= tt[-1] - tt[0]]
            heat = fitref.joule_power(tt, ii, circ["r0_ohm"], pairs)
            r_eff = float(np.sum(heat[1:] * np.diff(tt)) / np.sum(ii[:-1] ** 2 * np.diff(tt)))
            if abs(r_eff / ours["heating_ohm"] - 1) > 1e-6:
                sys.exit(f"window {k}: SciPy's heat ({r_eff} ohm) is not ours ({ours['heating_ohm']} ohm)")
            ref = fitref.fit_thermal_ext_scipy(tt, tc[lo:hi], heat, ta[lo:hi], ii)
            rel = lambda x, y: abs(x / y - 1)  # noqa: E731
            good = (ours["rmse_k"] <= ref["rmse_k"] * (1 + TOL) and rel(ours["tau_s"], ref["tau_s"]) < 0.01
                    and rel(ours["r_th_k_per_w"], ref["r_th_k_per_w"]) < 0.01
                    and abs(ours["entropic_v"] - ref["entropic_v"]) < 0.01 * abs(ref["entropic_v"]) + 1e-4
                    and abs(ours["steady_offset_k"] - ref["steady_offset_k"]) < 1e-3
                    and ours["p_extra_w"] is None and not ours["p_extra_identifiable"])
            ok_all &= good
            print(f"| {k} | {ours['tau_s']:.0f} / {ref['tau_s']:.0f} | {ours['r_th_k_per_w']:.2f} / "
                  f"{ref['r_th_k_per_w']:.2f} | {ours['entropic_v'] * 1e3:.1f} / {ref['entropic_v'] * 1e3:.1f} | "
                  f"{ours['steady_offset_k']:.4f} / {ref['steady_offset_k']:.4f} | {ours['rmse_k'] * 1e3:.3f} / "
                  f"{ref['rmse_k'] * 1e3:.3f} | {'missing' if ours['p_extra_w'] is None else ours['p_extra_w']} | "
                  f"{'yes' if good else 'NO'} |")
    print("\ncriterion (RMSE no worse than SciPy's to 1 ppb; tau, R_th, k within 1 %, c within 1 mK; P_x missing):",
          "met" if ok_all else "NOT MET")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
