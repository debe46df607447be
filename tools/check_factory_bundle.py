#!/usr/bin/env python3
"""Check a model bundle from its files alone, the way the device runtime reads it:

    python3 tools/check_factory_bundle.py [BUNDLE_DIR] [--json-lines OUT.jsonl]

Verifies every file of manifest.json (size, sha256), the tensor names and shapes of every head, merges
each adapter's LoRA deltas into the backbone weights (dequantize, add alpha/r * B A, requantize per
output channel), runs the whole pipeline over the golden set with ONNX Runtime (plain QDQ semantics)
and prints the golden-set metrics. It shares no code with the builder beyond image preprocessing, so
it is an independent check of the bundle's content. With --json-lines it writes one decision per
golden image (file, decision, crop, crop_confidence, disease, confidence, mahalanobis, threshold).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modelkit import REPO  # noqa: E402


def preprocess(path, pp):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    s = pp["size"]
    w, h = img.size
    k = s / min(w, h)
    nw, nh = max(s, round(w * k)), max(s, round(h * k))
    img = img.resize((nw, nh), Image.BILINEAR)
    l, t = (nw - s) // 2, (nh - s) // 2
    a = (np.asarray(img.crop((l, t, l + s, t + s)), np.float32) - np.asarray(pp["mean"], np.float32)) / np.asarray(pp["std"], np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None])


def session(model):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def merged_backbone(model, lora, rank, alpha, targets):
    """A copy of the backbone with each target conv's int8 weight and int32 bias replaced by the merge."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    for name in targets:
        conv = nodes[name]
        wdq, bdq, xdq = producer[conv.input[1]], producer[conv.input[2]], producer[conv.input[0]]
        wq = numpy_helper.to_array(inits[wdq.input[0]])
        ws = numpy_helper.to_array(inits[wdq.input[1]])
        bq = numpy_helper.to_array(inits[bdq.input[0]])
        bs = numpy_helper.to_array(inits[bdq.input[1]])
        xs = numpy_helper.to_array(inits[xdq.input[1]])
        A, B = lora[f"{name}.lora_A"], lora[f"{name}.lora_B"]
        assert A.shape == (rank, int(np.prod(wq.shape[1:]))) and B.shape == (wq.shape[0], rank), (A.shape, B.shape)
        w = wq.astype(np.float32) * ws.reshape(-1, 1, 1, 1) + (alpha / rank) * (B @ A).reshape(wq.shape)
        s = (np.abs(w).reshape(w.shape[0], -1).max(1) / 127).astype(np.float32)
        new = {
            wdq.input[0]: np.clip(np.rint(w / s.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8),
            wdq.input[1]: s,
            bdq.input[0]: np.rint(bq.astype(np.float32) * bs / (xs * s)).astype(np.int32),
            bdq.input[1]: (xs * s).astype(np.float32),
        }
        for k, v in new.items():
            inits[k].CopyFrom(numpy_helper.from_array(v, k))
    return m


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", default=os.path.join(REPO, "firmware-config", "factory-bundle"))
    ap.add_argument("--json-lines")
    args = ap.parse_args()
    root = args.bundle
    man = json.load(open(os.path.join(root, "manifest.json")))
    for f in man["files"]:
        p = os.path.join(root, f["path"])
        data = open(p, "rb").read()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
    print(f"{len(man['files'])} files: sizes and sha256 ok")

    pp = man["preprocessing"]
    backbone = onnx.load(os.path.join(root, man["backbone"]["file"]))
    feat = man["backbone"]["features"]
    base = session(backbone)
    router = load_file(os.path.join(root, man["router"]["head"]))
    crops = man["router"]["crops"]
    assert router["weight"].shape == (len(crops), 1280) and router["bias"].shape == (len(crops),)
    ood = man["ood"]
    heads, sessions = {}, {}
    for crop in crops:
        a = man["adapters"][crop]
        h = load_file(os.path.join(root, a["head"]))
        C, P = len(a["classes"]), h["proj.weight"].shape[0]
        shapes = {"proj.weight": (P, 1280), "proj.bias": (P,), "cls.weight": (C, P), "cls.bias": (C,), "ood.means": (C, P),
                  "ood.precision": (P, P), "ood.val_mean": (C,), "ood.val_std": (C,), "ood.val_count": (C,)}
        for k, s in shapes.items():
            assert h[k].shape == s and h[k].dtype == np.float32, (crop, k, h[k].shape)
        ok = h["ood.val_count"] >= ood["min_val_samples_per_class"]
        h["T"] = np.where(ok, h["ood.val_mean"] + ood["threshold_factor"] * h["ood.val_std"], ood["fallback_threshold"])
        heads[crop] = h
        if "lora" in a:
            lo = a["lora"]
            sessions[crop] = session(merged_backbone(backbone, load_file(os.path.join(root, lo["file"])), lo["rank"],
                                                     lo["alpha"], lo["targets"]))
        else:
            sessions[crop] = base
    print(f"heads ok: P = {[heads[c]['proj.weight'].shape[0] for c in crops]}")

    rows = list(csv.DictReader(open(os.path.join(root, man["golden_set"]["labels"]))))
    out, recs = [], []
    for r in rows:
        x = preprocess(os.path.join(root, r["path"]), pp)
        f = base.run([feat], {man["backbone"]["input"]: x})[0][0]
        pr = softmax(router["weight"] @ f + router["bias"])
        k = int(pr.argmax())
        crop = crops[k]
        h = heads[crop]
        fa = f if sessions[crop] is base else sessions[crop].run([feat], {man["backbone"]["input"]: x})[0][0]
        z = h["proj.weight"] @ fa + h["proj.bias"]
        p = softmax(h["cls.weight"] @ z + h["cls.bias"])
        c = int(p.argmax())
        dz = z - h["ood.means"][c]
        d2 = float(dz @ h["ood.precision"] @ dz)
        T = float(h["T"][c])
        decision = "unknown_crop" if pr[k] < man["router"]["confidence_threshold"] else ("ood" if d2 > T else "diagnosis")
        rec = {"file": r["path"], "decision": decision, "crop": crop, "crop_confidence": round(float(pr[k]), 6),
               "disease": man["adapters"][crop]["classes"][c], "confidence": round(float(p[c]), 6),
               "mahalanobis": round(d2, 4), "threshold": round(T, 4)}
        recs.append(rec)
        out.append((r, rec, np.inf if decision == "unknown_crop" else d2 / T))
    ind = [(r, d, s) for r, d, s in out if r["crop"] != "ood"]
    oo = [(r, d, s) for r, d, s in out if r["crop"] == "ood"]
    routed = [d["decision"] != "unknown_crop" and d["crop"] == r["crop"] for r, d, _ in ind]
    correct = [ok and d["disease"] == r["class"] for ok, (r, d, _) in zip(routed, ind)]
    pos, neg = np.array([s for *_, s in oo]), np.array([s for *_, s in ind])
    auroc = float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))
    m = {"crop_routing_accuracy": np.mean(routed), "adapter_accuracy": np.mean(correct), "ood_auroc": auroc,
         "ood_fpr": np.mean([d["decision"] == "ood" for _, d, _ in ind]),
         "real_photo_rejection": np.mean([d["decision"] != "diagnosis" for _, d, _ in oo])}
    print(f"golden set: {len(ind)} leaf images, {len(oo)} ood photos")
    print(json.dumps({k: round(float(v), 4) for k, v in m.items()}))
    print("manifest baseline_metrics:", json.dumps(man["baseline_metrics"]))
    if args.json_lines:
        with open(args.json_lines, "w") as f:
            for rec in recs:
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
