#!/usr/bin/python3
"""The heat step of a simulated production (tools/screen_accuracy --dir DIR):
per class of cell (truth.csv) the thermal fit's R_th, C_th, tau and P_x, the
EOL measurements that failed on good cells of good lots, the given entropic
coefficient, and the state of charge each cell starts the heat step with
(as the simulator computes it: 0.8 at formation, the storage drain of its
leak and its short, the 69 A·s the OCV/DCIR/pulse steps draw before the heat
step) with the simulated k = -T·dU/dT at that SoC (docs/models.md, "A known
entropic coefficient").
Usage: /usr/bin/python3 tools/thermal_sim_roc/eol_heat_summary.py DIR"""
import csv, sqlite3, statistics, sys

d = sys.argv[1]
truth = {r["serial"]: r for r in csv.DictReader(open(f"{d}/truth.csv"))}
db = sqlite3.connect(f"{d}/prod.db")
fits = {}
for serial, name, value in db.execute(
        "select r.serial, p.name, p.value from test_runs r join model_fits m on m.run_id = r.id "
        "join fit_parameters p on p.fit_id = m.id where m.kind = 'thermal' and r.station_id like 'EOL%'"):
    fits.setdefault(serial, {})[name] = value
failed = {}
for serial, name in db.execute(
        "select r.serial, m.name from test_runs r join measurements m on m.run_id = r.id "
        "where r.station_id like 'EOL%' and m.pass = 0"):
    failed.setdefault(serial, []).append(name)

SOC = [i / 10 for i in range(11)]
OCV = [3.00, 3.45, 3.55, 3.62, 3.68, 3.75, 3.84, 3.93, 4.02, 4.10, 4.18]
DUDT = [-0.30e-3, -0.20e-3, -0.10e-3, -0.05e-3, 0.0, 0.05e-3, 0.10e-3, 0.15e-3, 0.20e-3, 0.25e-3, 0.30e-3]
def interp(y, s):
    s = min(max(s, 0.0), 1.0)
    for k in range(1, 11):
        if s <= SOC[k]:
            return y[k - 1] + (s - SOC[k - 1]) / 0.1 * (y[k] - y[k - 1])
    return y[-1]
def heat_soc(t):  # sim: storage_soc over rest_days (storage, then the fixture wait), then 69 A·s of EOL steps
    soc, hours = 0.8, float(t["rest_days"]) * 24.0
    r = float(t["r_isc_ohm"]) if t["shorted"] == "1" else None
    n = int(-(-hours // 1))
    for _ in range(n):
        i = float(t["leak_ma"]) * 1e-3 + ((interp(OCV, soc) / r) if r else 0.0)
        soc = min(max(soc - i * (hours / n) / 3.0, 0.0), 1.0)
    return soc - 69.0 / 3600.0 / 3.0

def q(v):
    v = sorted(x for x in v if x == x)
    if not v:
        return "-"
    return f"{v[0]:.4g} / {statistics.median(v):.4g} / {v[-1]:.4g}"

classes = {"good cells of good lots": [], "good cells of defect lots": [], "shorted": []}
for s, t in truth.items():
    k = "shorted" if t["shorted"] == "1" else ("good cells of defect lots" if t["defect_lot"] == "1" else "good cells of good lots")
    classes[k].append(s)
given = sorted({(f.get("entropic_v"), f.get("entropic_v_per_ah")) for f in fits.values() if f.get("entropic_given")})
print(f"{d}: given k (V, V/Ah): {given or 'none'}")
print("| cells | n | SoC at the heat step min / median / max | simulated k at it, mV | R_th K/W | C_th J/K | tau s | P_x mW | failed EOL |")
print("|---|---|---|---|---|---|---|---|---|")
for k, serials in classes.items():
    socs = [heat_soc(truth[s]) for s in serials]
    kk = [-(25.0 + 273.15 + 1.0) * interp(DUDT, x) * 1e3 for x in socs]
    g = lambda n, scale=1.0: [fits[s][n] * scale for s in serials if s in fits and n in fits[s] and fits[s][n] is not None]
    nf = sum(1 for s in serials if s in failed)
    print(f"| {k} | {len(serials)} | {q(socs)} | {q(kk)} | {q(g('r_th_k_per_w'))} | {q(g('c_th_j_per_k'))} | "
          f"{q(g('tau_s'))} | {q(g('p_extra_w', 1e3))} | {nf} |")
bad = {}
for s in classes["good cells of good lots"]:
    for n in failed.get(s, []):
        bad[n] = bad.get(n, 0) + 1
print("good cells of good lots failing EOL, by measurement:", bad or "none")
for s in classes["good cells of good lots"]:
    if s in failed:
        f = fits.get(s, {})
        print(f"  {s} pos {truth[s]['position']} failed {','.join(failed[s])}: R_th {f.get('r_th_k_per_w', float('nan')):.2f} "
              f"C_th {f.get('c_th_j_per_k', float('nan')):.1f} P_x {1e3 * (f.get('p_extra_w') or float('nan')):.1f} mW "
              f"cal {f.get('sensor_offset_c', 'none')}")
