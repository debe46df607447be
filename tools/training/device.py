"""The aads-edge binary as the training tool uses it: the device's own decoder and int8 engine, and its
diagnosis of a finished bundle. Training never resizes a photo itself, so there is no train/serve skew."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CANDIDATES = [".build-device/release/aads-edge", ".build/release/aads-edge", ".build/debug/aads-edge"]
# The int8 rounding the training asks aads-edge for: its verification mode, ONNX Runtime's float QDQ evaluation
# reproduced bit for bit, so that aads-edge's features equal the ONNX Runtime features the training fits on and the
# parity check compares like with like. The device itself rounds exactly (the runtime's default), which differs
# only in outputs within float noise of a half step; tools/bench/rounding measures what that changes in decisions.
ROUNDING = "onnxruntime"


class DeviceError(Exception):
    pass


def find_binary(explicit: str | None) -> str:
    explicit = explicit or os.environ.get("AADS_EDGE")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise DeviceError(f"{explicit}: not an executable aads-edge")
        return explicit
    for c in CANDIDATES:
        path = os.path.join(REPO, c)
        if os.access(path, os.X_OK):
            return path
    raise DeviceError("no aads-edge binary: build one first (tools/build-device or swift build -c release)")


def _check(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise DeviceError(f"{what}: {msg[-1] if msg else f'exit {p.returncode}'}")


def first_undecodable(edge: str, paths: list[str]) -> str | None:
    """The first file aads-edge cannot decode, with its error, or None."""
    p = subprocess.run([edge, "decode", "--json", *paths], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if row.get("error"):
                err = row["error"]
                text = err.get("message", err) if isinstance(err, dict) else err
                return f"{row.get('file', '?')}: {text}"
    return None


def channel_means(x: np.ndarray) -> np.ndarray:
    """Per-channel spatial means of a [C, H, W] tensor as aads-edge takes them for `backbone.taps` (summed in
    double precision, rounded to float32)."""
    return x.astype(np.float64).reshape(x.shape[0], -1).mean(1).astype(np.float32)


def backbone_outputs(edge: str, model: str, paths: list[str], outputs: list[str], prep: dict,
                     chunk: int = 300, workers: int = 2, progress=None, pooled: tuple[str, ...] = ()
                     ) -> dict[str, np.ndarray]:
    """Runs the int8 backbone on JPEG files with aads-edge (its decoder, its engine): {output: [N, ...]}.
    Outputs named in `pooled` come back as their channel means [N, C]."""
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]

    def run(files: list[str]) -> dict[str, list[np.ndarray]]:
        with tempfile.TemporaryDirectory() as tmp:
            links = []
            for i, f in enumerate(files):  # unique stems for the output files
                link = os.path.join(tmp, f"{i:06d}.jpg")
                os.symlink(os.path.abspath(f), link)
                links.append(link)
            out_dir = os.path.join(tmp, "out")
            cmd = [edge, "model", "run", model, "--json", "--rounding", ROUNDING, "--save-npy", out_dir,
                   "--size", str(prep["size"]),
                   "--policy", prep["policy"], "--mean", ",".join(map(str, prep["mean"])),
                   "--std", ",".join(map(str, prep["std"])), "--image", *links]
            for o in outputs:
                cmd += ["--output", o]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                bad = first_undecodable(edge, files)
                raise DeviceError(bad or f"aads-edge model run: {(p.stderr or p.stdout).strip()[-300:]}")
            res = {o: [np.load(os.path.join(out_dir, f"{i:06d}.{o.replace('/', '_')}.npy"))[0]
                       for i in range(len(files))] for o in outputs}
            for o in pooled:
                res[o] = [channel_means(a) for a in res[o]]
        if progress:
            progress(len(files))
        return res

    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(run, chunks))
    return {o: np.stack([a for part in parts for a in part[o]]) for o in outputs}


def diagnose(edge: str, bundle: str, paths: list[str], chunk: int = 400, rounding: str = ROUNDING) -> list[dict]:
    """aads-edge diagnose --json (with the training's ROUNDING unless told) on every file: one row each, in order."""
    rows = []
    for i in range(0, len(paths), chunk):
        part = paths[i:i + chunk]
        p = subprocess.run([edge, "diagnose", "--bundle", bundle, "--rounding", rounding, "--json", *part],
                           capture_output=True, text=True)
        if p.returncode not in (0, 1):
            raise DeviceError(f"aads-edge diagnose: {(p.stderr or p.stdout).strip()[-300:]}")
        got = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        if len(got) != len(part):
            raise DeviceError(f"aads-edge diagnose returned {len(got)} rows for {len(part)} files")
        rows += got
    return rows


def run_json(edge: str, *args: str) -> dict:
    p = subprocess.run([edge, *args, "--json"], capture_output=True, text=True)
    _check(p, f"aads-edge {' '.join(args[:2])}")
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def health_metrics(edge: str, bundle: str) -> dict:
    """The runtime's own golden-set figures of a bundle (`aads-edge health --bundle`), whatever its verdict."""
    p = subprocess.run([edge, "health", "--bundle", bundle, "--json"], capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines or "metrics" not in json.loads(lines[-1]):
        raise DeviceError(f"aads-edge health: {(p.stderr or p.stdout).strip()[-300:]}")
    return json.loads(lines[-1])["metrics"]
