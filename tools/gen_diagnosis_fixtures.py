#!/usr/bin/env python3
"""Reference values for the diagnosis math, computed with numpy, saved as safetensors + JSON.

Writes Tests/Fixtures/diagnosis/{adapter.safetensors,lora.safetensors,expected.json}.
Deterministic (seeded). Run from the repository root.
"""
import json
import pathlib

import numpy as np
from safetensors.numpy import save_file

OUT = pathlib.Path("Tests/Fixtures/diagnosis")
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(2026)

features, proj_dim, classes = 16, 6, 4
proj_w = rng.normal(size=(proj_dim, features)).astype(np.float32)
proj_b = rng.normal(size=proj_dim).astype(np.float32)
cls_w = rng.normal(size=(classes, proj_dim)).astype(np.float32)
cls_b = rng.normal(size=classes).astype(np.float32)
means = rng.normal(size=(classes, proj_dim)).astype(np.float32)
samples = rng.normal(size=(200, proj_dim))
cov = np.cov(samples, rowvar=False) * 0.9 + 0.1 * np.eye(proj_dim)
precision = np.linalg.inv(cov).astype(np.float32)
val_mean = np.array([4.0, 5.5, 3.0, 6.0], np.float32)
val_std = np.array([1.0, 0.5, 2.0, 1.5], np.float32)
val_count = np.array([25, 10, 9, 0], np.float32)  # classes 2 and 3 fall back to the fallback threshold

save_file(
    {
        "proj.weight": proj_w, "proj.bias": proj_b, "cls.weight": cls_w, "cls.bias": cls_b,
        "ood.means": means, "ood.precision": precision, "ood.val_mean": val_mean,
        "ood.val_std": val_std, "ood.val_count": val_count,
    },
    str(OUT / "adapter.safetensors"),
)

rank, out_ch, k = 3, 5, 8
lora_a = rng.normal(size=(rank, k)).astype(np.float32)
lora_b = rng.normal(size=(out_ch, rank)).astype(np.float32)
alpha = 6.0
save_file({"conv_head.lora_A": lora_a, "conv_head.lora_B": lora_b}, str(OUT / "lora.safetensors"))

cases = []
for _ in range(5):
    f = rng.normal(size=features).astype(np.float32)
    z = proj_w.astype(np.float64) @ f + proj_b
    logits = cls_w.astype(np.float64) @ z + cls_b
    p = np.exp(logits - logits.max())
    p /= p.sum()
    c = int(np.argmax(p))
    d = z - means[c]
    cases.append({
        "features": f.tolist(), "z": z.tolist(), "probabilities": p.tolist(), "predicted": c,
        "mahalanobis": float(d @ precision.astype(np.float64) @ d),
    })

thresholds = [
    float(val_mean[i] + 2.0 * val_std[i]) if val_count[i] >= 10 else 25.0 for i in range(classes)
]
delta = (alpha / rank) * (lora_b.astype(np.float64) @ lora_a)
expected = {
    "cases": cases, "thresholds": thresholds,
    "lora": {"rank": rank, "alpha": alpha, "delta": delta.reshape(-1).tolist()},
}
(OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print("wrote", OUT)
