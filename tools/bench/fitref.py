"""Reference fits with SciPy for the eolstation model benchmarks.

The same models as eol::models, written independently in NumPy:
  circuit  V = OCV − R0·I − Σ Rk·F(I; τk)
  thermal  T = T0·e + F(T_amb; τ) + R_th·F(P; τ) + R_th·P_x·(1 − e)
where F(u; τ) is the exact response of a unit-gain first-order lag to u held
between samples, x[n] = a_n·x[n−1] + (1 − a_n)·u[n−1], a_n = exp(−Δt_n/τ),
x[0] = 0, and e = exp(−(t − t0)/τ).

Also: the LabVIEW reader and time stitcher for the real Samsung 30Q record,
and the window extraction used by the C++ real-data test.
Run with /usr/bin/python3 (Debian's numpy/scipy).
"""
import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter


def ltv_filter(t, u, tau):
    """Exact held-input first-order response for any (uneven) sampling."""
    dt = np.diff(t)
    n = len(dt)
    x = np.zeros(len(t))
    if n == 0:
        return x
    r = dt / tau
    v = -np.expm1(-r) * u[:-1]
    lg = np.cumsum(-r)  # log of the running decay product
    start, xs = 0, 0.0
    while start < n:
        base = lg[start - 1] if start > 0 else 0.0
        # a chunk in which the decay from its start stays above e^-300
        end = max(start + 1, start + int(np.searchsorted(base - lg[start:], 300.0)))
        L = lg[start:end] - base
        xc = np.exp(L) * (xs + np.cumsum(v[start:end] * np.exp(-L)))
        x[start + 1:end + 1] = xc
        xs = xc[-1]
        start = end
    return x


def uniform_filter(u, a):
    """The same response for uniform sampling: lfilter with one pole."""
    y = lfilter([0.0, 1.0 - a], [1.0, -a], u)
    return y


# ---- circuit ------------------------------------------------------------------------------------

def ecm_model(p, t, i, n_rc, filt=None):
    filt = filt or ltv_filter
    v = p[0] - p[1] * i
    for k in range(n_rc):
        v = v - p[2 + 2 * k] * filt(t, i, np.exp(p[3 + 2 * k]))
    return v


def fit_ecm_scipy(t, i, v, n_rc=2, tau_starts=None, filt=None):
    """least_squares on all parameters (OCV, R0, Rk, log τk), best of several
    starts. Each start: a τ combination from `tau_starts`, linear parameters
    from linear least squares at those τ (a generous start)."""
    span = t[-1] - t[0]
    dt = np.median(np.diff(t))
    if tau_starts is None:
        grid = np.geomspace(2 * dt, 2 * span, 6)
        import itertools
        tau_starts = [c for c in itertools.combinations(grid, n_rc)]
    best = None
    for taus in tau_starts:
        cols = [np.ones_like(t), -i] + [-(filt or ltv_filter)(t, i, tau) for tau in taus]
        c, *_ = np.linalg.lstsq(np.column_stack(cols), v, rcond=None)
        p0 = [c[0], c[1]]
        for k, tau in enumerate(taus):
            p0 += [c[2 + k], np.log(tau)]
        try:
            with np.errstate(over='ignore', invalid='ignore'):  # far-off trial steps overflow
                r = least_squares(lambda p: ecm_model(p, t, i, n_rc, filt) - v, p0, x_scale='jac',
                                  ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=2000)
        except ValueError:  # a start whose residual is not finite
            continue
        if best is None or r.cost < best.cost:
            best = r
    p = best.x
    rmse = float(np.sqrt(2 * best.cost / len(t)))
    out = {"ocv_v": p[0], "r0_ohm": p[1], "rmse_v": rmse, "nfev": best.nfev}
    order = np.argsort([p[3 + 2 * k] for k in range(n_rc)])
    for j, k in enumerate(order):
        out[f"r{j + 1}_ohm"] = p[2 + 2 * k]
        out[f"tau{j + 1}_s"] = float(np.exp(p[3 + 2 * k]))
    return out


# ---- thermal ------------------------------------------------------------------------------------

def thermal_model(q, t, heat, amb):
    """q = (log τ, T0, R_th, R_th·P_x); heat[n] over (t[n−1], t[n]], amb held."""
    tau = np.exp(q[0])
    e = np.exp(-(t - t[0]) / tau)
    return ltv_filter(t, amb, tau) + q[1] * e + q[2] * ltv_filter(t, np.append(heat[1:], 0.0), tau) + q[3] * (1 - e)


def fit_thermal_scipy(t, temp, heat, amb):
    span = t[-1] - t[0]
    best = None
    for tau0 in np.geomspace(span / 50, 5 * span, 6):
        try:
            with np.errstate(over='ignore', invalid='ignore'):
                r = least_squares(lambda q: thermal_model(q, t, heat, amb) - temp,
                                  [np.log(tau0), temp[0], 10.0, 0.0], x_scale='jac', ftol=1e-12, xtol=1e-12,
                                  gtol=1e-12, max_nfev=2000)
        except ValueError:
            continue
        if best is None or r.cost < best.cost:
            best = r
    q = best.x
    tau, r_th = float(np.exp(q[0])), float(q[2])
    return {"tau_s": tau, "r_th_k_per_w": r_th, "c_th_j_per_k": tau / r_th, "p_extra_w": q[3] / r_th,
            "rmse_k": float(np.sqrt(2 * best.cost / len(t)))}


def thermal_model_ext(q, t, heat, amb, i):
    """Extended model (eol::models ThermalOptions::reversible_heat, no offset
    known): T_meas = T0'·e + F(T_amb) + R_th·F(P) + R_th·k·F(I) + c·(1 − e),
    q = (log τ, T0', R_th, R_th·k, c), c = sensor offset + R_th·P_x; I held
    between samples (discharge positive), heat[n] over (t[n−1], t[n]]."""
    tau = np.exp(q[0])
    e = np.exp(-(t - t[0]) / tau)
    return (ltv_filter(t, amb, tau) + q[1] * e + q[2] * ltv_filter(t, np.append(heat[1:], 0.0), tau)
            + q[3] * ltv_filter(t, i, tau) + q[4] * (1 - e))


def fit_thermal_ext_scipy(t, temp, heat, amb, i):
    """Best of several starts; returns τ, R_th, C_th, k (V), c (K), RMSE."""
    span = t[-1] - t[0]
    best = None
    for tau0 in np.geomspace(span / 50, 5 * span, 8):
        for r0 in (10.0, 30.0):
            try:
                with np.errstate(over='ignore', invalid='ignore'):
                    r = least_squares(lambda q: thermal_model_ext(q, t, heat, amb, i) - temp,
                                      [np.log(tau0), temp[0] - amb[0], r0, 0.0, 0.0], x_scale='jac', ftol=1e-12,
                                      xtol=1e-12, gtol=1e-12, max_nfev=4000)
            except ValueError:
                continue
            if best is None or r.cost < best.cost:
                best = r
    q = best.x
    tau, r_th = float(np.exp(q[0])), float(q[2])
    return {"tau_s": tau, "r_th_k_per_w": r_th, "c_th_j_per_k": tau / r_th, "entropic_v": q[3] / r_th,
            "steady_offset_k": float(q[4]), "rmse_k": float(np.sqrt(2 * best.cost / len(t)))}


# ---- the real record ----------------------------------------------------------------------------

def read_labview(path):
    """Rows after '***End_of_Header***': time, current, voltage, power, cell T, chamber T."""
    rows = []
    with open(path) as f:
        header = True
        for line in f:
            if header:
                header = not line.startswith("***End_of_Header***")
                continue
            if line.strip():
                rows.append([float(x) for x in line.split()])
    return np.array(rows)


def stitch(t, max_gap_factor=5.0):
    """Every non-positive or longer than 5× median interval is a logger clock
    artefact at a step change: replace it with the median interval."""
    dt = np.diff(t)
    med = np.median(dt[dt > 0])
    bad = (dt <= 0) | (dt > max_gap_factor * med)
    dt = np.where(bad, med, dt)
    return t[0] + np.concatenate([[0.0], np.cumsum(dt)]), int(bad.sum())


def level(i):
    return np.where(i > 4.5, 6, np.where(i > 1.5, 3, np.where(i < -1.5, -1, 0)))


def windows(i_dis, lvl):
    """[first, last): 10 samples before each segment at `lvl` to the end of the rest after it."""
    lv = level(i_dis)
    out, k, n = [], 0, len(lv)
    while k < n:
        e = k
        while e < n and lv[e] == lv[k]:
            e += 1
        if lv[k] == lvl and e < n and lv[e] == 0:
            r = e
            while r < n and lv[r] == 0:
                r += 1
            out.append((max(0, k - 10), r))
        k = e
    return out


def joule_power(t, i, r0, rc):
    """Mean heat of the circuit over each interval (t[n−1], t[n]] with the
    current held at i[n−1]: R0·I² + Σ Vk²/Rk integrated exactly, divided by
    the interval (index 0 is 0), as eol::models::ecm_joule_power_w.
    rc: [(R, τ), ...]; non-positive R contribute nothing."""
    n = len(t)
    p = np.zeros(n)
    dt = np.diff(t)
    ih = i[:-1]
    e = max(r0, 0.0) * ih ** 2 * dt
    for r, tau in rc:
        a = np.exp(-dt / tau)
        x = np.zeros(n)
        x[1:] = ltv_filter(t, i, tau)[1:]  # unit-R branch voltage at each sample
        vinf = r * ih
        d = r * x[:-1] - vinf
        if r > 0:
            f1 = tau * (1 - a)
            f2 = 0.5 * tau * (1 - a * a)
            e = e + (vinf ** 2 * dt + 2 * vinf * d * f1 + d ** 2 * f2) / r
    p[1:] = e / dt
    return p
