#!/usr/bin/env python3
"""Reference values for the on-device A/B statistics, computed with scipy on seeded data.

Writes Tests/Fixtures/device/ab_stats.json: Welch's t-test (scipy.stats.ttest_ind, equal_var=False),
two-proportion z-tests (pooled proportion, p from scipy.stats.norm), the regularized incomplete beta
(scipy.special.betainc), Student's t CDF and the normal CDF; and for the paired A/B analysis the paired t-test
(scipy.stats.ttest_rel) with its t interval, McNemar's exact test (scipy.stats.binomtest on the discordant
pairs, as statsmodels' mcnemar(exact=True)), the paired-proportion Wald interval, the normal and t quantiles,
and the sequential e-values checked by numerical integration (scipy.integrate.quad) of the likelihood ratios
they mix, not by their closed forms. Run from the repository root:

    python3 tools/gen_ab_fixtures.py
"""
import json
import os

import numpy as np
import scipy
from scipy import integrate, special, stats

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


def paired_cases(rng):
    specs = [
        # name, n, image mean, image sd, extra candidate ms, jitter sd
        ("same_versions", 40, 30.0, 4.0, 0.0, 1.0),
        ("slightly_slower", 60, 30.0, 4.0, 0.4, 1.5),
        ("small", 4, 25.0, 3.0, 1.0, 0.8),
        ("much_faster", 120, 40.0, 6.0, -3.0, 2.0),
        # The point: image-to-image spread hides a paired difference from Welch's test.
        ("spread_hides_shift", 80, 30.0, 8.0, 1.0, 1.2),
    ]
    cases = []
    for name, n, mu, sd, shift, jitter in specs:
        image = rng.normal(mu, sd, n)
        b = (image + rng.normal(0, jitter, n)).round(6)
        a = (image + shift + rng.normal(0, jitter, n)).round(6)
        res = stats.ttest_rel(a, b)
        ci = res.confidence_interval(0.95)
        welch = stats.ttest_ind(a, b, equal_var=False)
        cases.append({"name": name, "a": a.tolist(), "b": b.tolist(), "t": float(res.statistic), "df": float(res.df),
                      "p": float(res.pvalue), "mean_difference": float(np.mean(a - b)), "ci_low": float(ci.low),
                      "ci_high": float(ci.high), "welch_p": float(welch.pvalue)})
    return cases


def mcnemar_cases():
    cases = []
    for b, c, n in [(7, 2, 100), (0, 0, 30), (15, 0, 100), (3, 3, 50), (1, 12, 200), (40, 61, 1000), (0, 1, 10)]:
        p = 1.0 if b + c == 0 else float(stats.binomtest(min(b, c), b + c, 0.5).pvalue)
        diff = (b - c) / n
        se = np.sqrt(b + c - (b - c) ** 2 / n) / n
        z = stats.norm.ppf(0.975)
        cases.append({"b": b, "c": c, "n": n, "statistic": min(b, c), "p": p, "difference": diff,
                      "ci_low": float(diff - z * se), "ci_high": float(diff + z * se)})
    return cases


def t_evalue(n, mean, ss, g):
    """One-sided mixture over delta > 0 of the noncentral/central t likelihood ratio of the t statistic."""
    nu = n - 1
    t = mean / np.sqrt(ss / nu / n)
    half_normal = lambda d: 2 * stats.norm.pdf(d, 0, np.sqrt(g))
    ratio = lambda d: half_normal(d) * stats.nct.pdf(t, nu, d * np.sqrt(n)) / stats.t.pdf(t, nu)
    return integrate.quad(ratio, 0, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]


def sign_evalue(b, c):
    """Uniform prior on p in [1/2, 1] for b successes and c failures, against p = 1/2."""
    return integrate.quad(lambda p: 2 * p**b * (1 - p) ** c / 0.5 ** (b + c), 0.5, 1, epsabs=0, epsrel=1e-13)[0]


def main():
    rng = np.random.default_rng(20240501)
    beta = [{"a": a, "b": b, "x": x, "value": float(special.betainc(a, b, x))}
            for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (10.0, 0.5, 0.9), (0.5, 10.0, 0.01), (50.0, 0.5, 0.98),
                            (3.5, 0.5, 0.999), (100.0, 100.0, 0.5), (1.0, 1.0, 0.25), (7.3, 0.5, 0.2)]]
    t_cdf = [{"t": t, "df": df, "value": float(stats.t.cdf(t, df))}
             for t, df in [(-3.0, 4.0), (0.0, 10.0), (1.2, 2.5), (2.5, 30.0), (-1.7, 7.7), (6.0, 100.0), (-10.0, 3.0),
                           (0.3, 1.0)]]
    normal = [{"x": x, "value": float(stats.norm.cdf(x))} for x in [-8.0, -3.0, -1.0, 0.0, 0.5, 1.959963984540054, 6.0]]
    normal_ppf = [{"p": p, "value": float(stats.norm.ppf(p))} for p in [1e-12, 0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.999999]]
    t_ppf = [{"p": p, "df": df, "value": float(stats.t.ppf(p, df))}
             for p, df in [(0.975, 1.0), (0.975, 3.0), (0.975, 29.0), (0.975, 199.0), (0.995, 4.0), (0.6, 2.5), (0.025, 10.0)]]
    t_evalues = [{"n": n, "mean": m, "ss": ss, "g": g, "value": t_evalue(n, m, ss, g)}
                 for n, m, ss, g in [(5, 0.3, 2.0, 0.2), (30, 0.5, 29.0, 0.2), (30, -0.2, 29.0, 0.2), (100, 0.25, 99.0, 0.2),
                                     (12, 1.0, 3.0, 1.0), (200, 0.05, 400.0, 0.2)]]
    sign_evalues = [{"b": b, "c": c, "value": sign_evalue(b, c)} for b, c in [(1, 0), (8, 0), (5, 3), (2, 9), (30, 12)]]
    out = {"scipy_version": scipy.__version__, "welch": welch_cases(rng), "ztest": z_cases(), "betainc": beta,
           "t_cdf": t_cdf, "normal_cdf": normal, "paired_t": paired_cases(rng), "mcnemar": mcnemar_cases(),
           "normal_ppf": normal_ppf, "t_ppf": t_ppf, "t_evalue": t_evalues, "sign_evalue": sign_evalues}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
