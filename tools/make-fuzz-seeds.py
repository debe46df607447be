#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz targets into Fuzz/corpus/ (committed; the fuzz scripts read them).

Small seeds keep every fuzz execution cheap: a mutated 2 KB JPEG decodes in microseconds, a mutated 60 KB
photo in milliseconds, and the fuzzer mostly keeps the size of its seeds.

- Fuzz/corpus/decode/: JPEGs of 8 to 72 pixels a side, one per feature the decode path handles: baseline,
  progressive, optimised and arithmetic Huffman tables, 4:4:4 / 4:2:2 / 4:2:0 / 4:4:0 / 4:1:1 and odd
  per-component sampling, grey, RGB without colour transform, CMYK and YCCK, restart markers, EXIF
  orientations in both byte orders, ICC and comment segments, a header claiming a too-large frame, the
  valid-but-unsupported 12-bit and lossless fixtures, a tables-only file and a truncated one.
- Fuzz/corpus/state/: slot store `state.json` files (empty store, installed, trial, committed, rolled back).

The device.json and health.json seeds are the shipped files in firmware-config/ (copied by the fuzz script).
Needs Pillow, numpy and cjpeg (Debian's libjpeg-turbo-progs); the output is the same on every run.

    python3 tools/make-fuzz-seeds.py
"""

import json
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from gen_image_fixtures import tj_compress

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Fuzz" / "corpus"
FIXTURES = ROOT / "Tests" / "Fixtures" / "images"


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A deterministic picture with edges and gradients (so every DCT coefficient band is used)."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1)).astype(np.uint8)
    g = (y * 255 // max(1, height - 1)).astype(np.uint8)
    b = (((x // 4 + y // 4) % 2) * 200 + 30).astype(np.uint8)
    im = Image.fromarray(np.dstack([r, g, b]), "RGB")
    return im.convert(mode) if mode != "RGB" else im


def pillow(im: Image.Image, **options) -> bytes:
    path = Path(tempfile.mkstemp(suffix=".jpg")[1])
    try:
        im.save(path, "JPEG", **options)
        return path.read_bytes()
    finally:
        path.unlink()


def cjpeg(im: Image.Image, *arguments: str) -> bytes:
    """cjpeg of a PPM/PGM picture with the given switches."""
    tool = shutil.which("cjpeg")
    if tool is None:
        raise SystemExit("cjpeg not found: install Debian's libjpeg-turbo-progs")
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / ("in.pgm" if im.mode == "L" else "in.ppm")
        im.save(source)
        return subprocess.run([tool, *arguments, str(source)], check=True, capture_output=True).stdout


def exif(orientation: int, big_endian: bool) -> bytes:
    """An APP1 Exif payload (without the marker) holding IFD0 with the orientation tag and one more tag."""
    order = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    entries = [(0x010F, 2, 4, b"AADS"), (0x0112, 3, 1, struct.pack(order + "H", orientation) + b"\0\0")]
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(order + "HHI", tag, kind, count) + value
    return b"Exif\0\0" + tiff + ifd + struct.pack(order + "I", 0)


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """Inserts one marker segment right after SOI."""
    return jpeg[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + jpeg[2:]


def with_frame_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrites the frame header's dimensions (the scan data no longer matches them)."""
    data = bytearray(jpeg)
    for index in range(2, len(data) - 8):
        if data[index] == 0xFF and data[index + 1] in (0xC0, 0xC1, 0xC2):
            data[index + 5 : index + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no SOF marker")


def decode_seeds() -> dict[str, bytes]:
    rgb = picture(24, 16)
    seeds = {
        "baseline_420.jpg": pillow(rgb, quality=75, subsampling=2),
        "baseline_422.jpg": pillow(rgb, quality=80, subsampling=1),
        "baseline_444.jpg": pillow(rgb, quality=90, subsampling=0),
        "tiny_8x8.jpg": pillow(picture(8, 8), quality=50),
        "odd_17x9.jpg": pillow(picture(17, 9), quality=70),
        "scale_72x64.jpg": pillow(picture(72, 64), quality=30, subsampling=2),
        "gray.jpg": pillow(picture(16, 16, "L"), quality=80),
        "progressive.jpg": pillow(picture(32, 24), quality=70, progressive=True),
        "progressive_gray.jpg": pillow(picture(16, 8, "L"), quality=70, progressive=True),
        "optimized.jpg": pillow(rgb, quality=60, optimize=True),
        "restart_blocks.jpg": pillow(picture(32, 16), quality=70, restart_marker_blocks=1),
        "cmyk.jpg": pillow(picture(16, 16, "CMYK"), quality=80),
        "rgb_no_transform.jpg": pillow(rgb, quality=80, keep_rgb=True, subsampling=0),
        "comment_icc.jpg": pillow(rgb, quality=70, comment=b"seed", icc_profile=b"\0" * 64),
        "arithmetic.jpg": cjpeg(rgb, "-arithmetic", "-quality", "70"),
        "arithmetic_progressive.jpg": cjpeg(rgb, "-arithmetic", "-progressive", "-quality", "70"),
        "sample_440.jpg": cjpeg(rgb, "-sample", "1x2,1x1,1x1", "-quality", "70"),
        "sample_411.jpg": cjpeg(picture(32, 8), "-sample", "4x1,1x1,1x1", "-quality", "70"),
        "sample_odd.jpg": cjpeg(rgb, "-sample", "2x1,1x2,1x1", "-quality", "70"),
        "sample_odd_progressive.jpg": cjpeg(rgb, "-sample", "1x2,2x1,1x1", "-progressive", "-quality", "70"),
        "restart_rows.jpg": cjpeg(picture(16, 32), "-restart", "1", "-quality", "70"),
        "cmyk_420.jpg": pillow(picture(16, 16, "CMYK"), quality=80, subsampling=2),
        # TurboJPEG writes CMYK pixels as YCCK (TJPF_CMYK = 11, TJSAMP_420 = 2).
        "ycck_420.jpg": tj_compress(np.asarray(picture(16, 16, "CMYK")), 11, 2, quality=80),
    }
    for orientation in (3, 6, 8):
        seeds[f"exif_le_orient{orientation}.jpg"] = with_segment(
            seeds["baseline_420.jpg"], 0xE1, exif(orientation, big_endian=False))
    seeds["exif_be_orient5.jpg"] = with_segment(seeds["baseline_444.jpg"], 0xE1, exif(5, big_endian=True))
    seeds["too_large_header.jpg"] = with_frame_size(seeds["tiny_8x8.jpg"], 4000, 3000)
    baseline = seeds["baseline_420.jpg"]
    seeds["truncated.jpg"] = baseline[: len(baseline) * 2 // 3]
    seeds["tables_only.jpg"] = baseline[: baseline.index(b"\xff\xc0")] + b"\xff\xd9"
    for name in ("unsupported_12bit.jpg", "unsupported_lossless.jpg"):
        seeds[name] = (FIXTURES / "generated" / name).read_bytes()
    return seeds


def state_seeds() -> dict[str, object]:
    def slot(state, version=None, metrics=None):
        record = {"state": state}
        if version:
            record.update(
                version=version, manifest_sha256="ab" * 32, signer="factory",
                installed_at="2026-01-02T03:04:05Z")
        if metrics:
            record["metrics"] = metrics
        return record

    trial = {
        "slot": "b", "attempts": 1, "attempts_left": 2, "started_at": "2026-01-02T03:04:05Z", "starts": 1,
        "probation_successes": 3, "probation_errors": 0,
    }
    return {
        "empty.json": {"format": 1, "generation": 0, "a": slot("empty"), "b": slot("empty")},
        "installed.json": {
            "format": 1, "generation": 2, "active": "a", "floor": "1.0.0", "a": slot("good", "1.0.0"),
            "b": slot("installed", "1.1.0"), "updated_at": "2026-01-02T03:04:05Z",
        },
        "trial.json": {
            "format": 1, "generation": 5, "active": "b", "fallback": "a", "floor": "1.0.0", "trial": trial,
            "a": slot("good", "1.0.0", {"adapter_accuracy": 0.91, "latency_ms": 41.5}),
            "b": slot("trial", "1.1.0-rc.1"),
        },
        "committed.json": {
            "format": 1, "generation": 9, "active": "b", "fallback": "a", "floor": "1.1.0",
            "a": slot("good", "1.0.0"), "b": slot("good", "1.1.0"),
        },
        "rolled_back.json": {
            "format": 1, "generation": 12, "active": "a", "a": slot("good", "1.0.0"),
            "b": slot("bad", "1.2.0"), "updated_at": "2026-01-03T00:00:00Z",
        },
        "installing.json": {"format": 1, "generation": 1, "a": slot("installing", "1.0.0"), "b": slot("empty")},
    }


def main() -> None:
    decode = OUT / "decode"
    state = OUT / "state"
    for directory in (decode, state):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    for name, data in sorted(decode_seeds().items()):
        (decode / name).write_bytes(data)
    for name, value in sorted(state_seeds().items()):
        (state / name).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in decode.iterdir())
    print(f"{len(list(decode.iterdir()))} JPEG seeds ({total} bytes), {len(list(state.iterdir()))} state seeds")


if __name__ == "__main__":
    main()
