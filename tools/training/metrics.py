"""The training tool's own pipeline (decided exactly as the runtime decides), its figures, the parity check
against aads-edge, and the bundle files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import onnx
from safetensors.numpy import save_file

from . import fit

REJECTED = ("ood", "unknown_crop")


class ParityError(Exception):
    pass


def check_float_twin(path: str, bb) -> None:
    """The float model must be the one the int8 backbone was quantized from: same Conv nodes and shapes."""
    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node if n.op_type == "Conv"}
    int8_convs = [n.name for n in bb.model.graph.node if n.op_type == "Conv"]
    if sorted(nodes) != sorted(int8_convs):
        raise ValueError(f"{path}: its Conv nodes differ from the int8 backbone's: mismatched backbone")
    for t in bb.targets:
        w = inits.get(nodes[t].input[1])
        if w is None or tuple(w.dims) != bb.conv(t)["wq"].shape:
            raise ValueError(f"{path}: weight of '{t}' does not match the int8 backbone: mismatched backbone")


class Pipeline:
    """Router → adapter (LoRA-merged tail run by ONNX Runtime) → Mahalanobis, as aads-edge decides."""

    def __init__(self, bb, crops, classes, router_w, router_b, threshold, rank, alpha):
        self.bb, self.crops, self.classes = bb, crops, classes
        self.router_w, self.router_b, self.threshold = router_w, router_b, threshold
        self.rank, self.alpha = rank, alpha
        self.adapters: dict[str, dict] = {}
        self.sessions: dict[str, object] = {}

    def add_adapter(self, crop: str, params: dict) -> None:
        self.adapters[crop] = params
        if params["lora"]:
            self.sessions[crop] = self.bb.tail_session(self.bb.merged(params["lora"], self.rank, self.alpha))

    def adapter_features(self, crop, S, F, tail=None) -> np.ndarray:
        """Features after the crop's LoRA: the JAX twin when given (fast, for statistics), else ONNX Runtime."""
        a = self.adapters[crop]
        if not a["lora"] or len(S) == 0:
            return F
        taps = F[:, F.shape[1] - self.bb.tap_channels:]
        if tail is not None:
            import jax.numpy as jnp

            lora = {t: (jnp.asarray(x), jnp.asarray(y)) for t, (x, y) in a["lora"].items()}
            out = np.concatenate([np.asarray(tail(lora, jnp.asarray(S[i:i + 128]))) for i in range(0, len(S), 128)])
        else:
            out = self.bb.tail_features(self.sessions[crop], S)
        return np.concatenate([out, taps], 1) if self.bb.tap_channels else out

    def decide(self, F, S) -> list[dict]:
        probs = fit.softmax(F @ self.router_w.T + self.router_b)
        best = probs.argmax(1)
        rows = [{"crop": self.crops[b], "crop_confidence": float(probs[i, b])} for i, b in enumerate(best)]
        for crop_index, crop in enumerate(self.crops):
            idx = np.where(best == crop_index)[0]
            if len(idx) == 0:
                continue
            a = self.adapters[crop]
            f = self.adapter_features(crop, S[idx], F[idx])
            z = f @ a["proj_w"].T + a["proj_b"]
            p = fit.softmax(z @ a["cls_w"].T + a["cls_b"])
            pred = p.argmax(1)
            if "ood" in a:
                d = z - a["ood"]["means"][pred]
                d2 = np.einsum("ni,ij,nj->n", d, a["ood"]["precision"], d)
            else:
                d2 = np.zeros(len(idx))
            for j, i in enumerate(idx):
                r = rows[i]
                r["disease"] = self.classes[crop][pred[j]]
                r["confidence"] = float(p[j, pred[j]])
                r["mahalanobis"] = float(d2[j])
                r["threshold"] = float(a["thresholds"][pred[j]]) if "thresholds" in a else float("inf")
        for r in rows:
            if r["crop_confidence"] < self.threshold:
                r["decision"] = "unknown_crop"
            elif r["mahalanobis"] > r["threshold"]:
                r["decision"] = "ood"
            else:
                r["decision"] = "diagnosis"
        return rows


def label_of(row: dict) -> str:
    if row.get("decision") in REJECTED:
        return "rejected"
    if row.get("decision") == "diagnosis":
        return f"{row.get('crop')}/{row.get('disease')}"
    return "error"


def accuracy_without_rejection(rows, photos) -> float:
    """Share of photos whose predicted crop and disease are right, whatever the decision."""
    return float(np.mean([f"{r.get('crop')}/{r.get('disease')}" == p.label for r, p in zip(rows, photos)]))


def summary(rows, photos) -> dict:
    """Accuracy, accepted accuracy, rejection and routing on labelled in-distribution photos."""
    got = [label_of(r) for r in rows]
    want = [p.label for p in photos]
    accepted = [(g, w) for g, w in zip(got, want) if g not in ("rejected", "error")]
    return {
        "images": len(rows),
        "accuracy": float(np.mean([g == w for g, w in zip(got, want)])),
        "accepted_accuracy": float(np.mean([g == w for g, w in accepted])) if accepted else 0.0,
        "rejected": float(np.mean([g == "rejected" for g in got])),
        "crop_routing": float(np.mean([r.get("crop") == p.crop for r, p in zip(rows, photos)])),
    }


def per_class(rows, photos) -> dict:
    labels = sorted({p.label for p in photos})
    got = [label_of(r) for r in rows]
    want = [p.label for p in photos]
    columns = labels + ["rejected"]
    confusion = {w: {c: 0 for c in columns} for w in labels}
    for g, w in zip(got, want):
        confusion[w][g if g in columns else "rejected"] += 1
    out = {}
    for c in labels:
        tp = confusion[c][c]
        predicted = sum(confusion[w][c] for w in labels)
        out[c] = {"precision": tp / predicted if predicted else 0.0, "recall": tp / sum(confusion[c].values())}
    return {"per_class": out, "confusion": confusion}


def ood_score(row: dict) -> float:
    """Larger = more unknown: d²/T for images the router accepts, above every accepted score otherwise."""
    if row.get("decision") == "unknown_crop" or "mahalanobis" not in row:
        return 1e6 + (1 - row.get("crop_confidence", 0.0))
    t = row.get("threshold") or 1.0
    return float(row["mahalanobis"]) / t


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(score of an OOD image > score of a known leaf), ties counted half."""
    if not pos or not neg:
        return float("nan")
    a, b = np.asarray(pos), np.asarray(neg)
    return float(((a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()) / (len(a) * len(b)))


def parity(ours: list[dict], theirs: list[dict]) -> dict:
    agree, first = 0, None
    for o, t in zip(ours, theirs):
        same = label_of(o) == label_of(t) and o["decision"] == t.get("decision")
        agree += same
        if not same and first is None:
            first = f"{t.get('file')}: tool {o['decision']} {label_of(o)}, aads-edge {t.get('decision')} {label_of(t)}"
    gaps = [abs(o["mahalanobis"] - t["mahalanobis"]) / max(t.get("threshold") or 1.0, 1e-9)
            for o, t in zip(ours, theirs)
            if isinstance(o.get("mahalanobis"), float) and isinstance(t.get("mahalanobis"), (int, float))
            and o.get("crop") == t.get("crop")]
    return {"images": len(ours), "agreement": agree / max(1, len(ours)), "first_mismatch": first,
            "max_distance_gap": max(gaps) if gaps else 0.0, "median_distance_gap": float(np.median(gaps)) if gaps else 0.0}


# ---------------------------------------------------------------------------------------------------------------
# bundle files
# ---------------------------------------------------------------------------------------------------------------


def _file_list(root: str) -> list[dict]:
    files = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, root)
            if rel in ("manifest.json", "manifest.sig"):
                continue
            with open(path, "rb") as f:
                data = f.read()
            files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    return sorted(files, key=lambda f: f["path"].encode())


def finite(value):
    """JSON has no NaN: a figure with nothing to count becomes null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_manifest(root: str, manifest: dict) -> None:
    manifest = finite(dict(manifest))
    manifest["files"] = _file_list(root)
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def write_bundle(root, args, bb, crops, classes, router_w, router_b, threshold, adapters, golden_photos,
                 ood_photos, ood_rule, preprocessing) -> list[str]:
    """Writes every bundle file and a provisional manifest (no figures yet). Returns the golden photos used."""
    os.makedirs(os.path.join(root, "adapters"))
    shutil.copyfile(bb.path, os.path.join(root, "backbone.onnx"))
    save_file({"weight": router_w, "bias": router_b}, os.path.join(root, "router.safetensors"))
    manifest_adapters = {}
    for crop in crops:
        a = adapters[crop]
        head = {"proj.weight": a["proj_w"], "proj.bias": a["proj_b"], "cls.weight": a["cls_w"],
                "cls.bias": a["cls_b"], **{f"ood.{k}": np.ascontiguousarray(v) for k, v in a["ood"].items()}}
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in head.items()},
                  os.path.join(root, "adapters", f"{crop}.safetensors"))
        entry = {"classes": classes[crop], "head": f"adapters/{crop}.safetensors"}
        if a["lora"]:
            tensors = {}
            for t, (A, B) in a["lora"].items():
                tensors[f"{t}.lora_A"] = np.ascontiguousarray(A, np.float32)
                tensors[f"{t}.lora_B"] = np.ascontiguousarray(B, np.float32)
            save_file(tensors, os.path.join(root, "adapters", f"{crop}_lora.safetensors"))
            entry["lora"] = {"file": f"adapters/{crop}_lora.safetensors", "rank": args.rank, "alpha": args.alpha,
                             "targets": bb.targets}
        manifest_adapters[crop] = entry
    # golden set: the first photos of each class's golden split, in a seeded order, and the OOD photos
    rows, used = [], []
    by_label: dict[str, list] = {}
    for p in golden_photos:
        by_label.setdefault(p.label, []).append(p)
    for label in sorted(by_label):
        ps = sorted(by_label[label], key=lambda p: hashlib.sha256(f"{args.seed}:{p.path}".encode()).digest())
        for p in ps[:args.golden_per_class]:
            rel = f"golden/{p.crop}/{p.cls}/{os.path.basename(p.path)}"
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            shutil.copyfile(p.path, os.path.join(root, rel))
            rows.append(f"{rel},{p.crop},{p.cls}")
            used.append(p.path)
    for path in ood_photos:
        rel = f"golden/ood/{os.path.basename(path)}"
        os.makedirs(os.path.join(root, "golden", "ood"), exist_ok=True)
        shutil.copyfile(path, os.path.join(root, rel))
        rows.append(f"{rel},ood,ood")
    for folder in sorted({os.path.dirname(p) for p in ood_photos}):  # the non-plant photos' licences
        for candidate in (os.path.join(folder, "LICENSES.md"), os.path.join(os.path.dirname(folder), "LICENSES.md")):
            if os.path.isfile(candidate):
                shutil.copyfile(candidate, os.path.join(root, "golden", "ood", "LICENSES.md"))
                break
    for i, data_root in enumerate(args.data):  # the labelled photos' provenance and licence
        readme = os.path.join(data_root, "README.md")
        if os.path.isfile(readme):
            shutil.copyfile(readme, os.path.join(root, "golden", f"SOURCES{'' if i == 0 else f'-{i + 1}'}.md"))
    with open(os.path.join(root, "golden", "labels.csv"), "w") as f:
        f.write("path,crop,class\n" + "\n".join(rows) + "\n")
    manifest = {
        "schema_version": 1,
        "model_version": args.version,
        "created": args.created,
        "description": args.description or f"crop router and adapters for {', '.join(crops)}, trained by "
                                          f"tools/train-bundle on real labelled photos",
        "preprocessing": preprocessing,
        "backbone": {"file": "backbone.onnx", "input": "input", "features": "features",
                     **({"taps": bb.taps} if bb.taps else {})},
        "router": {"crops": crops, "head": "router.safetensors", "confidence_threshold": round(threshold, 4)},
        "adapters": manifest_adapters,
        "ood": ood_rule,
        "golden_set": {"labels": "golden/labels.csv"},
        "baseline_metrics": {},
    }
    write_manifest(root, manifest)
    return used


def _pct(x) -> str:
    return f"{100 * x:.1f} %" if isinstance(x, float) and x == x else "n/a"


def write_readme(root: str, report: dict, manifest: dict, backbone_doc: str) -> None:
    """The bundle's README: what it holds, how it was trained, its held-out figures and its sources."""
    g, gs, ood = report["golden"], report["golden_shifted"], report["ood"]
    classes = "\n".join(f"| {c} | {', '.join(a['classes'])} |" for c, a in manifest["adapters"].items())
    lora = report["lora"]
    taps = manifest["backbone"].get("taps", [])
    width = report["features"]["width"]
    tapped = (f"; the features are the pooled `features` output followed by the channel means of "
              f"{', '.join(f'`{t}`' for t in taps)} (`backbone.taps`: mid-level texture that the last layer pools "
              f"away), {width} values in all" if taps else "")
    text = f"""# AADS Edge model bundle {manifest['model_version']}

{manifest['description']}.

Trained by `tools/train-bundle` (seed {report['seed']}) on real labelled photos: a crop router over the
int8 backbone's features, and per crop an adapter: LoRA deltas (rank {lora['rank']}, alpha {lora['alpha']:g}) on
{', '.join(f'`{t}`' for t in lora['targets']) or 'no layer'}, a projection and a disease head, trained end to end through
the adapted layers, plus Mahalanobis OOD statistics (threshold factor
{manifest['ood']['threshold_factor']:g}) from validation features of the predicted class{tapped}.

| crop | classes |
|---|---|
{classes}

## Figures on held-out photos (as aads-edge decides them)

Photos of leaf groups that training never saw (no leaf straddles two splits); "field-shifted" are the
same photos with the leaf cut out, rotated, rescaled, put on soil or foliage, colour-jittered, blurred and
re-encoded. Decided with `--rounding onnxruntime`, the int8 arithmetic the training matches bit for bit; a
device rounds exactly (the default), which decides a few photos near a decision boundary the other way
(`tools/bench/rounding`; `aads-edge evaluate` measures a bundle as the device runs it).

| set | images | correct crop + disease | correct of accepted | rejected (ood / unknown_crop) | crop routing |
|---|---:|---:|---:|---:|---:|
| held out | {g['images']} | {_pct(g['accuracy'])} | {_pct(g['accepted_accuracy'])} | {_pct(g['rejected'])} | {_pct(g['crop_routing'])} |
| held out, field-shifted | {gs['images']} | {_pct(gs['accuracy'])} | {_pct(gs['accepted_accuracy'])} | {_pct(gs['rejected'])} | {_pct(gs['crop_routing'])} |

Non-plant photos rejected: {_pct(ood['rejected'])} of {ood['images']}; OOD AUROC (held-out leaves vs those
photos): {ood['auroc']:.3f}. Accuracy without rejection on the held-out photos: with LoRA
{_pct(report['accuracy_with_lora_no_rejection']['golden'])}, projection and head only
{_pct(report['accuracy_without_lora_no_rejection']['golden'])}.

**Read this before trusting the figures.** The photos are PlantVillage lab photos: one detached leaf on a
plain background, shot in few sessions per class. Accuracy on them overstates accuracy in the field, where
leaves are on the plant, overlap, and are lit by the sun; the field-shifted row is a synthetic
approximation of that, not a field trial.

## Sources and licence

The labelled photos are from PlantVillage (Hughes & Salathé 2015; Mohanty, Hughes & Salathé 2016),
licensed CC BY-SA 3.0; the copies in `golden/` are unmodified, and `golden/SOURCES.md` gives their
provenance. The non-plant photos in `golden/ood/` carry their own licences (`golden/ood/LICENSES.md`).

- Mohanty, S. P., Hughes, D. P., & Salathé, M. (2016). Using deep learning for image-based plant
  disease detection. *Frontiers in Plant Science* 7:1419. doi:10.3389/fpls.2016.01419.
- Hughes, D. P., & Salathé, M. (2015). An open access repository of images on plant health to enable
  the development of mobile disease diagnostics. arXiv:1511.08060.

Backbone, quantized to int8 QDQ: {backbone_doc or 'no description in the model'}

## Layout

```
manifest.json                      index, figures, changelog, training report; every file with sha256 and size
manifest.sig                       Ed25519 signature over manifest.json
backbone.onnx                      int8 QDQ backbone: input "input" [1,3,224,224], output "features" [1,1280]
router.safetensors                 weight [crops,{width}], bias [crops]
adapters/<crop>.safetensors        proj.weight [P,{width}], proj.bias, cls.weight [C,P], cls.bias,
                                   ood.means [C,P], ood.precision [P,P], ood.val_mean/val_std/val_count [C]
adapters/<crop>_lora.safetensors   "<node>.lora_A" [r, in*kh*kw], "<node>.lora_B" [out, r] per target
golden/<crop>/<class>/*.jpg        held-out real photos; golden/ood/*.jpg non-plant photos; golden/labels.csv
```
"""
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write(text)


def finish_manifest(root: str, report: dict, args) -> None:
    """Adds the runtime's figures, the changelog and the training report, and rehashes every file."""
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    write_readme(root, report, manifest, onnx.load(os.path.join(root, "backbone.onnx")).doc_string)
    manifest["baseline_metrics"] = report["baseline_metrics"]
    if args.changelog:
        manifest["changelog"] = args.changelog
    manifest["training_report"] = report["manifest_summary"]
    write_manifest(root, manifest)


def report(args, counts, crops, classes, lab, evaluation, runtime_rows, sets, acc_lora, acc_no_lora, adapters,
           baseline, parity_result, threshold, bb, seconds, golden_files, health) -> dict:
    """The training report; its figures on held-out photos come from aads-edge's own decisions."""
    n_g, n_gs = len(sets["golden"]), len(sets["golden_shifted"])
    g_rows, gs_rows, ood_rows = runtime_rows[:n_g], runtime_rows[n_g:n_g + n_gs], runtime_rows[n_g + n_gs:]
    held_out = summary(g_rows, lab["golden"])
    shifted = summary(gs_rows, lab["golden_shifted"])
    ood_rejected = float(np.mean([r.get("decision") in REJECTED for r in ood_rows])) if ood_rows else float("nan")
    known = [ood_score(r) for r in g_rows]
    auc = auroc([ood_score(r) for r in ood_rows], known)
    latencies = [r["latency_ms"]["total"] for r in g_rows if isinstance(r.get("latency_ms"), dict)]
    memory = {}
    for crop in crops:
        lora_bytes = sum(bb.conv(t)["wq"].size + 8 * bb.conv(t)["wq"].shape[0] for t in adapters[crop]["lora"])
        head_bytes = sum(np.asarray(v).nbytes for k, v in adapters[crop].items()
                         if k in ("proj_w", "proj_b", "cls_w", "cls_b")) + sum(
            np.asarray(v).nbytes for v in adapters[crop]["ood"].values())
        memory[crop] = round((lora_bytes + head_bytes) / 1e6, 3)
    val = {k: summary(evaluation[k], lab[k]) for k in ("val", "val_shifted")}
    result = {
        "seed": args.seed,
        "lora": {"targets": bb.targets if not args.no_lora else [], "rank": args.rank, "alpha": args.alpha},
        "features": {"width": int(adapters[crops[0]]["proj_w"].shape[1]), "taps": bb.taps},
        "adapter_training": {"epochs": args.epochs, "clean_weight": args.clean_weight, "augment": args.augment,
                             "proj_dim": args.proj_dim, "ood_components": args.ood_components,
                             "shrinkage": args.shrinkage, "threshold_factor": args.threshold_factor,
                             "dropout": args.dropout, "lr": args.lr,
                             "lora_lr": args.lora_lr if args.lora_lr is not None else args.lr},
        "router_threshold": threshold,
        "class_counts": counts,
        "validation": {**val["val"], **per_class(evaluation["val"], lab["val"])},
        "validation_shifted": {**val["val_shifted"], **per_class(evaluation["val_shifted"], lab["val_shifted"])},
        "golden": {**held_out, **per_class(g_rows, lab["golden"])},
        "golden_shifted": {**shifted, **per_class(gs_rows, lab["golden_shifted"])},
        "ood": {"images": len(ood_rows), "rejected": ood_rejected, "auroc": auc},
        "accuracy_with_lora_no_rejection": acc_lora,
        "accuracy_without_lora_no_rejection": acc_no_lora,
        "parity": parity_result,
        "memory_per_adapter_mb": memory,
        "latency_ms": {"p50": float(np.percentile(latencies, 50)) if latencies else None,
                       "p95": float(np.percentile(latencies, 95)) if latencies else None},
        "training_seconds": round(seconds, 1),
        "train_seconds_per_adapter": {c: round(adapters[c].get("train_seconds", 0.0), 1) for c in crops},
        "golden_set_photos": [os.path.basename(p) for p in golden_files],
        "held_out_photos": sorted(os.path.relpath(p, os.path.dirname(os.path.dirname(os.path.dirname(p))))
                                  for p in sets["golden"]),
    }
    keys = ("crop_routing_accuracy", "adapter_accuracy", "ood_auroc", "ood_fpr", "latency_ms", "memory_per_adapter_mb")
    result["baseline_metrics"] = {k: round(float(health[k]), 4) for k in keys if k in health}
    result["manifest_summary"] = {
        "held_out": held_out, "held_out_field_shifted": shifted,
        "ood": result["ood"], "accuracy_with_lora": acc_lora["golden"], "accuracy_without_lora": acc_no_lora["golden"],
        "parity_agreement": parity_result["agreement"], "seed": args.seed, "lora": result["lora"],
        "features": result["features"],
    }
    return result


def print_summary(r: dict) -> None:
    def pct(x):
        return f"{100 * x:5.1f} %" if x == x else "  n/a"

    print("\nFigures on held-out photos, as aads-edge decides them (--rounding onnxruntime):")
    print(f"  {'':34}{'accuracy':>10}{'of accepted':>13}{'rejected':>10}{'routing':>10}")
    for key, name in (("validation", "validation"), ("validation_shifted", "validation, field-shifted"),
                      ("golden", "golden"), ("golden_shifted", "golden, field-shifted")):
        s = r[key]
        print(f"  {name:<34}{pct(s['accuracy']):>10}{pct(s['accepted_accuracy']):>13}{pct(s['rejected']):>10}"
              f"{pct(s['crop_routing']):>10}")
    print(f"  non-plant photos rejected: {pct(r['ood']['rejected'])} of {r['ood']['images']}, "
          f"AUROC {r['ood']['auroc']:.3f}")
    print("  accuracy without rejection (golden / golden shifted): "
          f"with LoRA {pct(r['accuracy_with_lora_no_rejection']['golden'])} / "
          f"{pct(r['accuracy_with_lora_no_rejection']['golden_shifted'])}, "
          f"head only {pct(r['accuracy_without_lora_no_rejection']['golden'])} / "
          f"{pct(r['accuracy_without_lora_no_rejection']['golden_shifted'])}")
    print(f"  parity with aads-edge: {pct(r['parity']['agreement'])} of {r['parity']['images']} validation images")
    print(f"  memory per adapter: {max(r['memory_per_adapter_mb'].values()):.2f} MB; "
          f"training {r['training_seconds']:.0f} s")
