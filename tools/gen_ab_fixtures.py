#!/usr/bin/env python3
"""Reference values for the on-device A/B statistics, computed with scipy on seeded data.

Writes Tests/Fixtures/device/ab_stats.json: Welch's t-test (scipy.stats.ttest_ind, equal_var=False),
two-proportion z-tests (pooled proportion, p from scipy.stats.norm), the regularized incomplete beta
(scipy.special.betainc), Student's t CDF and the normal CDF. Run from the repository root:

    python3 tools/gen_ab_fixtures.py
"""
import json
import os

import numpy as np
import scipy
from scipy import special, stats

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "device", "ab_stats.json")


def welch_cases(rng):
    specs = [
        # name, n_a, mean_a, sd_a, n_b, mean_b, sd_b
        ("moderate", 30, 35.0, 5.0, 40, 38.0, 8.0),
        ("small", 5, 20.0, 2.0, 7, 23.0, 6.0),
        ("far_apart", 200, 31.0, 4.0, 180, 38.0, 5.0),
        ("close", 50, 40.0, 6.0, 60, 40.1, 6.5),
        ("unequal_variance", 12, 50.0, 1.0, 90, 49.0, 15.0),
        ("latency_like", 120, 27.5, 3.2, 110, 29.9, 4.4),
    ]
    cases = []
    for name, na, ma, sa, nb, mb, sb in specs:
        a = rng.normal(ma, sa, na).round(6)
        b = rng.normal(mb, sb, nb).round(6)
        res = stats.ttest_ind(a, b, equal_var=False)
        va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        cases.append({"name": name, "a": a.tolist(), "b": b.tolist(), "t": float(res.statistic), "df": float(df),
                      "p": float(res.pvalue)})
    return cases


def z_cases():
    cases = []
    for x1, n1, x2, n2 in [(12, 200, 25, 200), (5, 80, 6, 80), (40, 100, 10, 100), (0, 50, 3, 50), (90, 1000, 70, 1000),
                           (7, 30, 2, 45)]:
        p1, p2 = x1 / n1, x2 / n2
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (p1 - p2) / se
        p = 2 * stats.norm.sf(abs(z))
        cases.append({"x1": x1, "n1": n1, "x2": x2, "n2": n2, "z": float(z), "p": float(p)})
    return cases


def main():
    rng = np.random.default_rng(20240501)
    beta = [{"a": a, "b": b, "x": x, "value": float(special.betainc(a, b, x))}
            for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (10.0, 0.5, 0.9), (0.5, 10.0, 0.01), (50.0, 0.5, 0.98),
                            (3.5, 0.5, 0.999), (100.0, 100.0, 0.5), (1.0, 1.0, 0.25), (7.3, 0.5, 0.2)]]
    t_cdf = [{"t": t, "df": df, "value": float(stats.t.cdf(t, df))}
             for t, df in [(-3.0, 4.0), (0.0, 10.0), (1.2, 2.5), (2.5, 30.0), (-1.7, 7.7), (6.0, 100.0), (-10.0, 3.0),
                           (0.3, 1.0)]]
    normal = [{"x": x, "value": float(stats.norm.cdf(x))} for x in [-8.0, -3.0, -1.0, 0.0, 0.5, 1.959963984540054, 6.0]]
    out = {"scipy_version": scipy.__version__, "welch": welch_cases(rng), "ztest": z_cases(), "betainc": beta,
           "t_cdf": t_cdf, "normal_cdf": normal}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
