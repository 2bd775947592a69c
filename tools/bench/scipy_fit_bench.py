#!/usr/bin/python3
"""SciPy reference timings for bench_fit, on the identical records.

Reads the CSVs bench_fit wrote (--data-dir) and fits the same models with
scipy.optimize.least_squares, written fairly: the recursions are vectorized
with scipy.signal.lfilter (the records are uniformly sampled), SciPy gets a
good start for free (time constants near the answer, linear parameters from a
linear least-squares solve at those time constants, outside the timing), and
it is timed both with its default 2-point Jacobian and with an analytic
Jacobian (the derivative recursions, also by lfilter). The ratio uses the
faster of the two.

With --ours FILE (bench_fit --json) it prints the side-by-side table and
checks the targets: ECM fit < 2 ms and >= 100x faster than SciPy, thermal
fit < 1 ms (on CPU time: the machine may be shared; wall times are printed
too). Exit 1 if a target is missed.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter


def lag(u, a):
    """x[n] = a·x[n−1] + (1 − a)·u[n−1], x[0] = 0 (held input, uniform sampling)."""
    return lfilter([0.0, 1.0 - a], [1.0, -a], u)


def dlag(x, u, a, g):
    """∂x/∂log τ: d[n] = a·d[n−1] + g·(x[n−1] − u[n−1]), g = a·Δt/τ."""
    return lfilter([0.0, g], [1.0, -a], x - u)


# ---- circuit, 2 RC ------------------------------------------------------------------------------

def ecm_fit(t, i, v, taus, analytic):
    dt = t[1] - t[0]

    def parts(p):
        out = []
        for k in range(2):
            tau = np.exp(p[3 + 2 * k])
            a = np.exp(-dt / tau)
            x = lag(i, a)
            out.append((a, x, a * dt / tau))
        return out

    def res(p):
        v_m = p[0] - p[1] * i
        for k, (a, x, g) in enumerate(parts(p)):
            v_m = v_m - p[2 + 2 * k] * x
        return v_m - v

    def jac(p):
        j = np.empty((len(t), 6))
        j[:, 0] = 1.0
        j[:, 1] = -i
        for k, (a, x, g) in enumerate(parts(p)):
            j[:, 2 + 2 * k] = -x
            j[:, 3 + 2 * k] = -p[2 + 2 * k] * dlag(x, i, a, g)
        return j

    cols = [np.ones_like(t), -i] + [-lag(i, np.exp(-dt / tau)) for tau in taus]
    c, *_ = np.linalg.lstsq(np.column_stack(cols), v, rcond=None)
    p0 = [c[0], c[1], c[2], np.log(taus[0]), c[3], np.log(taus[1])]
    w0, c0 = time.perf_counter(), time.process_time()
    r = least_squares(res, p0, jac=jac if analytic else '2-point', x_scale='jac')
    return (time.perf_counter() - w0, time.process_time() - c0), r


# ---- thermal ------------------------------------------------------------------------------------

def thermal_fit(t, temp, heat, amb, tau0, analytic):
    dt = t[1] - t[0]
    n = np.arange(len(t))

    def parts(q):
        tau = np.exp(q[0])
        a = np.exp(-dt / tau)
        return tau, a, a * dt / tau, np.exp(-n * dt / tau)

    def res(q):
        tau, a, g, e = parts(q)
        return lag(amb, a) + q[1] * e + q[2] * lag(heat, a) + q[3] * (1 - e) - temp

    def jac(q):
        tau, a, g, e = parts(q)
        fa, fp = lag(amb, a), lag(heat, a)
        de = e * n * dt / tau
        j = np.empty((len(t), 4))
        j[:, 0] = dlag(fa, amb, a, g) + q[1] * de + q[2] * dlag(fp, heat, a, g) - q[3] * de
        j[:, 1] = e
        j[:, 2] = fp
        j[:, 3] = 1 - e
        return j

    q0 = [np.log(tau0), temp[0], 10.0, 0.0]
    w0, c0 = time.perf_counter(), time.process_time()
    r = least_squares(res, q0, jac=jac if analytic else '2-point', x_scale='jac')
    return (time.perf_counter() - w0, time.process_time() - c0), r


def median_time(f, repeat):
    """(median CPU ms, median wall ms, last result)."""
    wall, cpu, last = [], [], None
    for _ in range(repeat):
        (w, c), last = f()
        wall.append(w)
        cpu.append(c)
    return float(np.median(cpu)) * 1e3, float(np.median(wall)) * 1e3, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--ours", help="bench_fit --json output")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()

    e = np.loadtxt(os.path.join(a.data_dir, "ecm_2rc_40k.csv"), delimiter=",", skiprows=1)
    th = np.loadtxt(os.path.join(a.data_dir, "thermal_2h.csv"), delimiter=",", skiprows=1)
    t, i, v = e[:, 0], e[:, 1], e[:, 2]
    taus = (0.5, 5.0)  # a good start: the answer is 1 s and 12 s
    ecm = {}
    for analytic in (False, True):
        cpu, wall, r = median_time(lambda: ecm_fit(t, i, v, taus, analytic), a.repeat)
        ecm[analytic] = (cpu, r, wall)
    tt, ti, tv, tc, ta = th.T
    heat = np.concatenate([ti[:-1] ** 2 * 0.05, [0.0]])  # heat over (t[n], t[n+1]] at index n, as lag() reads it
    thm = {}
    for analytic in (False, True):
        cpu, wall, r = median_time(lambda: thermal_fit(tt, tc, heat, ta, 3000.0, analytic), a.repeat)
        thm[analytic] = (cpu, r, wall)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    r_e = min(ecm.values(), key=lambda x: x[0])[1]
    r_t = min(thm.values(), key=lambda x: x[0])[1]
    rmse_e = float(np.sqrt(np.mean(r_e.fun ** 2)))
    rmse_t = float(np.sqrt(np.mean(r_t.fun ** 2)))
    print(f"SciPy least_squares ({a.repeat} repetitions, median CPU time, wall in brackets; lfilter recursions)")
    print(f"  ecm_2rc_40k: 2-point {ecm[False][0]:.1f} ms [{ecm[False][2]:.1f}] ({ecm[False][1].nfev} evals), analytic "
          f"{ecm[True][0]:.1f} ms [{ecm[True][2]:.1f}] ({ecm[True][1].nfev} evals); R0 {r_e.x[1] * 1e3:.3f} mOhm, "
          f"rmse {rmse_e * 1e3:.4f} mV")
    print(f"  thermal_2h:  2-point {thm[False][0]:.1f} ms [{thm[False][2]:.1f}] ({thm[False][1].nfev} evals), analytic "
          f"{thm[True][0]:.1f} ms [{thm[True][2]:.1f}] ({thm[True][1].nfev} evals); C {np.exp(r_t.x[0]) / r_t.x[2]:.2f} "
          f"J/K, R {r_t.x[2]:.3f} K/W, rmse {rmse_t * 1e3:.3f} mK")
    print(f"  peak resident memory {peak_mb:.1f} MB (python process)")
    if not a.ours:
        return 0

    ours = json.load(open(a.ours))
    oe, ot, oc = ours["ecm_2rc_40k"], ours["thermal_2h"], ours["thermal_2h_circuit"]
    fe = min(ecm.values(), key=lambda x: x[0])
    ft = min(thm.values(), key=lambda x: x[0])
    print()
    print("Side by side: median time per fit, CPU (wall). SciPy: the faster of its 2-point and analytic Jacobian.")
    hdr = (f"{'case':<20} {'ours ms':>15} {'SciPy ms':>16} {'ratio':>7} {'target':>24} {'peak MB ours/SciPy':>19}"
           f" | agreement")
    print(hdr)
    print("-" * (len(hdr) + 50))
    ok_e = oe["cpu_ms"] < 2.0 and fe[0] / oe["cpu_ms"] >= 100
    ok_t = ot["cpu_ms"] < 1.0
    print(f"{'ecm_2rc_40k':<20} {oe['cpu_ms']:>6.3f} ({oe['wall_ms']:>6.3f}) {fe[0]:>7.1f} ({fe[2]:>6.1f}) "
          f"{fe[0] / oe['cpu_ms']:>6.0f}x {'<2 ms, >=100x: ' + ('met' if ok_e else 'MISSED'):>24} "
          f"{ours['peak_rss_mb']:>8.1f} / {peak_mb:>6.1f} | R0 {oe['r0_ohm'] * 1e3:.3f} vs {r_e.x[1] * 1e3:.3f} mOhm, "
          f"rmse {oe['rmse_v'] * 1e3:.4f} vs {rmse_e * 1e3:.4f} mV")
    print(f"{'thermal_2h':<20} {ot['cpu_ms']:>6.3f} ({ot['wall_ms']:>6.3f}) {ft[0]:>7.1f} ({ft[2]:>6.1f}) "
          f"{ft[0] / ot['cpu_ms']:>6.0f}x {'<1 ms: ' + ('met' if ok_t else 'MISSED'):>24} "
          f"{ours['peak_rss_mb']:>8.1f} / {peak_mb:>6.1f} | C {ot['c_th_j_per_k']:.2f} vs "
          f"{np.exp(r_t.x[0]) / r_t.x[2]:.2f} J/K, rmse {ot['rmse_k'] * 1e3:.3f} vs {rmse_t * 1e3:.3f} mK")
    print(f"{'thermal_2h_circuit':<20} {oc['cpu_ms']:>6.3f} ({oc['wall_ms']:>6.3f})   (heating from a circuit fit of "
          f"the record, included)")
    print("Peak memory: ru_maxrss of each whole process (ours: both records and all fits).")
    return 0 if (ok_e and ok_t) else 1


if __name__ == "__main__":
    sys.exit(main())
