#!/usr/bin/env python3
"""Builds the JPEG → tensor test fixtures in Tests/Fixtures/images.

1. Copies the JPEGs the tests use from the public image set (default ../shared/data, or --data DIR)
   into Tests/Fixtures/images/shared/ (same sub-folders and names).
2. Generates extra encodings into generated/: EXIF orientations 1-8, 4:4:0 and 4:1:1 subsampling and
   YCCK (via libturbojpeg's tjCompress2 through ctypes), an Adobe-RGB (no colour transform) file, and
   two valid-but-unsupported files (12-bit precision, lossless SOF3), and files with per-component
   sampling factors TurboJPEG cannot classify (cjpeg -sample, from Debian's libjpeg-turbo-progs; only
   this script needs it, the tests read the committed files).
3. Writes Pillow reference pixels (uint8, H×W×3) as .npy into reference/ and lists every case in
   cases.json.

The reference path is Pillow's FULL decode (no draft), then ImageOps.exif_transpose, convert("RGB")
(CMYK through Pillow's own CMYK→RGB with Adobe polarity), then
Image.resize((S, S), Image.BILINEAR, box=box, reducing_gap=None): Pillow's anti-aliased triangle
filter on shrinking axes, bilinear interpolation on growing ones, with
  - centre crop: box = the centred square of side min(W, H) (fractional offsets kept);
  - stretch: box = the whole image.
The runtime decodes at a DCT scale instead, so the tests allow a mean absolute difference of 2 levels.
For the files with unusual sampling factors decoded at a reduced scale, a second reference
(`scaled_reference`) starts from Pillow's own DCT-scaled decode (`Image.draft` to the runtime's scale)
instead of the full one, and must match to rounding.

Deterministic: running it twice gives identical files.
"""

import argparse
import ctypes
import io
import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "images"

SHARED = [
    "variants/coffee_baseline_420_q85.jpg",
    "variants/coffee_422_q90.jpg",
    "variants/coffee_444_q95.jpg",
    "variants/coffee_progressive_420_q85.jpg",
    "variants/coffee_gray_q90.jpg",
    "variants/coffee_cmyk_q90.jpg",
    "variants/coffee_restart_q90.jpg",
    "variants/coffee_exif_orient3.jpg",
    "variants/coffee_exif_orient6.jpg",
    "variants/coffee_exif_orient8.jpg",
    "variants/coffee_12mp_4000x3000_q85.jpg",
    "ood/skimage-chelsea.jpg",
    "ood/sklearn-flower.jpg",
    "ood/skimage-camera.jpg",
    "leaf/redpatch-single_input.jpg",
    "corrupt/truncated_30pct.jpg",
    "corrupt/truncated_90pct.jpg",
    "corrupt/bitflip_32.jpg",
    "corrupt/zero_bytes.jpg",
    "corrupt/png_named.jpg",
    "corrupt/random_bytes.jpg",
    "corrupt/header_only_no_sof.jpg",
    "corrupt/sof_65000x65000.jpg",
]

# Pillow's exif_transpose operation for each orientation; the stored pixels are made with its inverse.
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
}

# TurboJPEG 2.x scaling factors that do not enlarge, smallest first.
FACTORS = [Fraction(n, 8) for n in range(1, 9)]


def turbojpeg():
    lib = ctypes.CDLL("libturbojpeg.so.0")
    lib.tjInitCompress.restype = ctypes.c_void_p
    lib.tjCompress2.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_ulong), ctypes.c_int, ctypes.c_int,
        ctypes.c_int,
    ]
    lib.tjFree.argtypes = [ctypes.c_void_p]
    lib.tjDestroy.argtypes = [ctypes.c_void_p]
    return lib


def tj_compress(pixels: np.ndarray, pixel_format: int, subsamp: int, quality: int = 90) -> bytes:
    """tjCompress2 of packed pixels (TJPF_RGB = 0, TJPF_CMYK = 11; TJSAMP_440 = 4, TJSAMP_411 = 5)."""
    lib = turbojpeg()
    handle = lib.tjInitCompress()
    h, w, c = pixels.shape
    src = np.ascontiguousarray(pixels, dtype=np.uint8)
    buf = ctypes.c_void_p()
    size = ctypes.c_ulong(0)
    rc = lib.tjCompress2(handle, src.ctypes.data, w, w * c, h, pixel_format, ctypes.byref(buf),
                         ctypes.byref(size), subsamp, quality, 0)
    if rc != 0:
        raise RuntimeError("tjCompress2 failed")
    data = ctypes.string_at(buf, size.value)
    lib.tjFree(buf)
    lib.tjDestroy(handle)
    return data


def expected_scale(width: int, height: int, size: int) -> Fraction:
    shorter = min(width, height)
    for f in FACTORS:
        if shorter * f >= size:
            return f
    return Fraction(1)


def pillow_reference(path: Path, size: int, policy: str) -> tuple[np.ndarray, int, tuple[int, int]]:
    im = Image.open(path)
    orientation = im.getexif().get(0x0112, 1)
    im = ImageOps.exif_transpose(im)  # full decode happens here (no draft)
    im = im.convert("RGB")
    w, h = im.size
    if policy == "center-crop":
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    else:
        box = (0, 0, w, h)
    out = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8), orientation, (w, h)


def cjpeg(im: Image.Image, sample: str, *extra: str, quality: int = 90) -> bytes:
    """cjpeg of an RGB picture with explicit per-component sampling factors (`-sample HxV,HxV,HxV`)."""
    tool = shutil.which("cjpeg")
    if tool is None:
        raise SystemExit("cjpeg not found: install Debian's libjpeg-turbo-progs to regenerate the fixtures")
    ppm = io.BytesIO()
    im.save(ppm, "PPM")
    out = subprocess.run([tool, "-quality", str(quality), "-sample", sample, *extra], input=ppm.getvalue(),
                         capture_output=True, check=True)
    return out.stdout


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Inserts an APP1 Exif segment with the orientation tag right after SOI."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()  # b"Exif\0\0" + TIFF
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def pillow_scaled_reference(path: Path, size: int, policy: str, scale: Fraction) -> np.ndarray:
    """As pillow_reference, but from Pillow's DCT-scaled decode at `scale` (1/2, 1/4 or 1/8)."""
    im = Image.open(path)
    w, h = im.size
    im.draft("RGB", (-(-w * scale.numerator // scale.denominator), -(-h * scale.numerator // scale.denominator)))
    assert im.size[0] == -(-w * scale.numerator // scale.denominator), "Pillow chose another scale"
    orientation = im.getexif().get(0x0112, 1)
    im = ImageOps.exif_transpose(im).convert("RGB")
    f = float(scale)
    tw, th = (h, w) if orientation >= 5 else (w, h)
    if policy == "center-crop":
        side = min(tw, th)
        box = ((tw - side) / 2 * f, (th - side) / 2 * f, (tw + side) / 2 * f, (th + side) / 2 * f)
    else:
        box = (0, 0, tw * f, th * f)
    out = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8)


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def generate(data_dir: Path) -> list[str]:
    gen = OUT / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    made = []
    base = Image.open(data_dir / "variants/coffee_444_q95.jpg").convert("RGB")
    small = base.resize((240, 160), Image.Resampling.LANCZOS)

    # EXIF orientations: upright picture stored so that applying the tag gives it back.
    for o in range(1, 9):
        stored = small
        if o in TRANSPOSE:
            op = TRANSPOSE[o]
            stored = small.transpose(INVERSE.get(op, op))
        exif = Image.Exif()
        exif[0x0112] = o
        (gen / f"orient{o}.jpg").write_bytes(jpeg_bytes(stored, quality=92, exif=exif.tobytes()))
        made.append(f"generated/orient{o}.jpg")

    pixels = np.asarray(small)
    # 4:4:0 and 4:1:1 through TurboJPEG (Pillow does not write them).
    (gen / "subsamp_440.jpg").write_bytes(tj_compress(pixels, 0, 4))
    (gen / "subsamp_411.jpg").write_bytes(tj_compress(pixels, 0, 5))
    made += ["generated/subsamp_440.jpg", "generated/subsamp_411.jpg"]

    # YCCK: CMYK with real black (under-colour removal), stored with Adobe (inverted) polarity as
    # Photoshop does; TurboJPEG converts CMYK to YCCK and writes an Adobe marker with transform 2.
    rgb = pixels.astype(np.int32)
    cmy = 255 - rgb
    k = cmy.min(axis=2, keepdims=True)
    cmyk = np.concatenate([cmy - k, k], axis=2)
    stored = (255 - cmyk).astype(np.uint8)
    (gen / "ycck_420.jpg").write_bytes(tj_compress(stored, 11, 2))
    made.append("generated/ycck_420.jpg")

    # Adobe RGB: 3 components without the YCbCr transform (Adobe APP14 transform 0).
    (gen / "adobe_rgb.jpg").write_bytes(jpeg_bytes(small, quality=90, keep_rgb=True))
    made.append("generated/adobe_rgb.jpg")

    # Sampling factors TurboJPEG 2.1's tjDecompressHeader3 cannot classify ("Could not determine subsampling
    # type"); Pillow and libjpeg decode them. Luma need not have the largest factors.
    (gen / "sampling_2x1_1x2_1x1.jpg").write_bytes(cjpeg(small, "2x1,1x2,1x1"))
    (gen / "sampling_1x2_2x1_1x1_progressive.jpg").write_bytes(cjpeg(small, "1x2,2x1,1x1", "-progressive"))
    # 600x400 (decoded at 1/4 for 64), stored rotated with EXIF orientation 6.
    stored = base.transpose(INVERSE[TRANSPOSE[6]])
    (gen / "sampling_2x2_2x1_1x1_orient6.jpg").write_bytes(
        with_exif_orientation(cjpeg(stored, "2x2,2x1,1x1", quality=88), 6))
    made += [
        "generated/sampling_2x1_1x2_1x1.jpg",
        "generated/sampling_1x2_2x1_1x1_progressive.jpg",
        "generated/sampling_2x2_2x1_1x1_orient6.jpg",
    ]
    # The first of them cut at 60 %: damaged data, for the corrupt_jpeg / allow-damaged policy (no reference).
    whole = (gen / "sampling_2x1_1x2_1x1.jpg").read_bytes()
    (gen / "damaged_sampling_2x1_1x2_1x1.jpg").write_bytes(whole[: len(whole) * 6 // 10])

    # Valid JPEG features the decoder does not support: 12-bit samples and the lossless process.
    tiny = jpeg_bytes(small.resize((48, 32)), quality=80)
    sof = tiny.find(b"\xff\xc0")
    twelve = bytearray(tiny)
    twelve[sof + 4] = 12
    (gen / "unsupported_12bit.jpg").write_bytes(bytes(twelve))
    lossless = bytearray(tiny)
    lossless[sof + 1] = 0xC3
    (gen / "unsupported_lossless.jpg").write_bytes(bytes(lossless))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("AADS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--data", default=default, help="the public image set (default: %(default)s)")
    args = parser.parse_args()
    data_dir = Path(args.data)
    if not (data_dir / "manifest.csv").exists():
        print(f"no image set at {data_dir} (use --data DIR)", file=sys.stderr)
        return 2

    for rel in SHARED:
        target = OUT / "shared" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / rel, target)
    generated = generate(data_dir)

    ref_dir = OUT / "reference"
    if ref_dir.exists():
        shutil.rmtree(ref_dir)
    ref_dir.mkdir(parents=True)

    plan = []
    small_set = [f"shared/{p}" for p in SHARED if p.startswith("variants/") and "12mp" not in p]
    small_set += [f"{g}" for g in generated if "unsupported" not in g and "damaged" not in g]
    for rel in small_set:
        for policy in ("center-crop", "stretch"):
            plan.append((rel, 64, policy))
    plan += [
        ("shared/variants/coffee_baseline_420_q85.jpg", 224, "center-crop"),
        ("shared/variants/coffee_12mp_4000x3000_q85.jpg", 224, "center-crop"),
        ("shared/variants/coffee_12mp_4000x3000_q85.jpg", 224, "stretch"),
        ("shared/ood/skimage-chelsea.jpg", 224, "center-crop"),
        ("generated/orient1.jpg", 192, "center-crop"),  # upscale at 1/1
        ("generated/orient6.jpg", 192, "stretch"),  # one axis shrinks, the other grows
        ("shared/ood/sklearn-flower.jpg", 160, "center-crop"),
        ("shared/ood/skimage-camera.jpg", 160, "stretch"),
        ("shared/leaf/redpatch-single_input.jpg", 224, "stretch"),
        ("generated/sampling_2x1_1x2_1x1.jpg", 192, "center-crop"),  # libjpeg at 1/1, upscaled
        ("generated/sampling_2x2_2x1_1x1_orient6.jpg", 224, "center-crop"),  # 1/1, transposed
    ]

    cases = []
    for rel, size, policy in plan:
        ref, orientation, (w, h) = pillow_reference(OUT / rel, size, policy)
        name = f"{Path(rel).stem}_{size}_{policy}"
        np.save(ref_dir / f"{name}.npy", ref, allow_pickle=False)
        scale = expected_scale(w, h, size)
        stored_w, stored_h = (h, w) if orientation >= 5 else (w, h)
        scaled = (-(-stored_w * scale.numerator // scale.denominator),
                  -(-stored_h * scale.numerator // scale.denominator))
        if orientation >= 5:
            scaled = (scaled[1], scaled[0])
        case = {
            "name": name,
            "jpeg": rel,
            "size": size,
            "policy": policy,
            "reference": f"reference/{name}.npy",
            "orientation": orientation,
            "source_width": w,
            "source_height": h,
            "dct_scale": f"{scale.numerator}/{scale.denominator}",
            "width": scaled[0],
            "height": scaled[1],
        }
        if Path(rel).name.startswith("sampling_") and scale in (Fraction(1, 2), Fraction(1, 4), Fraction(1, 8)):
            scaled_ref = pillow_scaled_reference(OUT / rel, size, policy, scale)
            np.save(ref_dir / f"{name}_scaled.npy", scaled_ref, allow_pickle=False)
            case["scaled_reference"] = f"reference/{name}_scaled.npy"
        cases.append(case)

    # Sanity: the eight orientation files must all look like the same upright picture.
    uprights = [np.load(ref_dir / f"orient{o}_64_stretch.npy").astype(int) for o in range(1, 9)]
    worst = max(np.abs(u - uprights[0]).mean() for u in uprights)
    assert worst < 3, f"orientation references disagree ({worst:.2f})"

    (OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{len(cases)} cases, {len(generated)} generated JPEGs, {total / 1e6:.2f} MB in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
