#!/usr/bin/env python3
"""AUROC (scipy's Mann-Whitney U / n1 n2) and numpy quantiles on seeded data, for the health tests.

Writes Tests/Fixtures/health/rank_statistics.json. Run from the repository root.
"""
import json
import pathlib

import numpy as np
from scipy.stats import mannwhitneyu

rng = np.random.default_rng(55)
cases = []
for n_pos, n_neg, ties in [(30, 70, False), (5, 200, True), (120, 40, True), (1, 1, False)]:
    pos = rng.normal(1.0, 1.0, n_pos)
    neg = rng.normal(0.0, 1.0, n_neg)
    if ties:
        pos, neg = np.round(pos, 1), np.round(neg, 1)
    scores = np.concatenate([pos, neg])
    labels = [True] * n_pos + [False] * n_neg
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    cases.append({
        "scores": scores.tolist(), "positives": labels, "auroc": float(u / (n_pos * n_neg)),
        "p50": float(np.quantile(scores, 0.5)), "p95": float(np.quantile(scores, 0.95)),
    })
out = pathlib.Path("Tests/Fixtures/health")
out.mkdir(parents=True, exist_ok=True)
(out / "rank_statistics.json").write_text(json.dumps(cases) + "\n")
print("wrote", out / "rank_statistics.json")
