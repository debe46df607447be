"""Field-shift augmentation: a lab photo of one leaf on a plain background, made to look like the field.

The leaf is cut out of its plain background (a colour-distance mask from the border), rotated, rescaled and
placed on a procedural soil, mulch or foliage background, then colour-jittered, lit unevenly, sometimes
blurred, noised, and re-encoded as a JPEG at a random quality. Photos without a plain background (close-ups
that fill the frame) are rotated, rescaled and cropped instead of cut out.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage


def _noise(rng: np.random.Generator, size: int, octaves: int = 4) -> np.ndarray:
    """Smooth value noise in [0, 1]: sum of upsampled random grids."""
    out = np.zeros((size, size), np.float32)
    weight = 1.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells, cells)).astype(np.float32)
        img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        out += weight * np.asarray(img, np.float32) / 255
        weight *= 0.55
    out -= out.min()
    return out / max(out.max(), 1e-6)


def background(rng: np.random.Generator, size: int) -> Image.Image:
    """A procedural field background: soil, mulch, foliage or gravel-like texture."""
    kind = rng.integers(4)
    n = _noise(rng, size, 5)[..., None]
    fine = rng.random((size, size, 1)).astype(np.float32)
    if kind == 0:  # soil: browns
        base = np.array([rng.uniform(70, 140), rng.uniform(50, 100), rng.uniform(30, 70)], np.float32)
        px = base * (0.6 + 0.7 * n) + 25 * (fine - 0.5)
    elif kind == 1:  # mulch / dry straw
        base = np.array([rng.uniform(120, 190), rng.uniform(100, 160), rng.uniform(50, 100)], np.float32)
        stripes = _noise(rng, size, 6)[..., None]
        px = base * (0.5 + 0.8 * stripes) + 30 * (fine - 0.5)
    elif kind == 2:  # foliage: greens with dark gaps
        base = np.array([rng.uniform(30, 90), rng.uniform(80, 150), rng.uniform(20, 70)], np.float32)
        blobs = (_noise(rng, size, 6)[..., None] > rng.uniform(0.3, 0.6)).astype(np.float32)
        px = base * (0.35 + 0.9 * n * (0.5 + 0.5 * blobs)) + 20 * (fine - 0.5)
    else:  # gravel / concrete: greys
        g = rng.uniform(90, 180)
        base = np.array([g, g * rng.uniform(0.9, 1.05), g * rng.uniform(0.85, 1.0)], np.float32)
        px = base * (0.7 + 0.5 * n) + 45 * (fine - 0.5)
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))


def leaf_mask(img: Image.Image) -> Image.Image | None:
    """A soft mask of the leaf against a plain, grey background, or None when there is no such background.

    Leaves are saturated (green, yellow, brown), lab backgrounds nearly grey: Otsu's threshold on the
    saturation channel separates them; a closing fills lesions, an opening drops specks.
    """
    s = np.asarray(img.convert("HSV"), np.uint8)[..., 1]
    hist = np.bincount(s.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    t = int(np.argmax(between))
    lo, hi = s[s <= t], s[s > t]
    if len(lo) == 0 or len(hi) == 0 or hi.mean() - lo.mean() < 40:
        return None
    leaf = ndimage.binary_closing(s > t, iterations=3)  # lesions and veins
    leaf = ndimage.binary_opening(ndimage.binary_fill_holes(leaf), iterations=2)  # dark patches; specks
    m = Image.fromarray((leaf * 255).astype(np.uint8))
    cover = np.asarray(m, np.float32).mean() / 255
    if cover < 0.08 or cover > 0.85:
        return None
    return m.filter(ImageFilter.GaussianBlur(1.0))


def field_shift(img: Image.Image, rng: np.random.Generator) -> bytes:
    """One field-shifted JPEG of a lab photo."""
    img = img.convert("RGB")
    canvas = int(rng.integers(240, 400))
    angle = float(rng.uniform(0, 360))
    mask = leaf_mask(img)
    if mask is not None and rng.random() < 0.85:
        scale = rng.uniform(0.55, 1.15) * canvas / max(img.size)
        size = (max(8, round(img.width * scale)), max(8, round(img.height * scale)))
        leaf = img.resize(size, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
        m = mask.resize(size, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
        out = background(rng, canvas)
        x = int(rng.integers(-leaf.width // 5, max(1, canvas - leaf.width * 4 // 5)))
        y = int(rng.integers(-leaf.height // 5, max(1, canvas - leaf.height * 4 // 5)))
        if rng.random() < 0.4:  # the leaf casts a soft shadow
            shadow = Image.new("RGB", leaf.size, (0, 0, 0))
            sm = m.point(lambda v: int(v * rng.uniform(0.3, 0.6))).filter(ImageFilter.GaussianBlur(4))
            out.paste(shadow, (x + int(rng.integers(3, 12)), y + int(rng.integers(3, 12))), sm)
        out.paste(leaf, (x, y), m)
    else:
        zoom = rng.uniform(1.0, 1.5)
        side = round(max(img.size) * zoom)
        big = img.resize((side, side), Image.BILINEAR).rotate(angle, Image.BILINEAR)
        crop = round(side / 1.42)
        off = (side - crop) // 2
        out = big.crop((off, off, off + crop, off + crop)).resize((canvas, canvas), Image.BILINEAR)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.6, 1.35))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.7, 1.3))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.65, 1.35))
    a = np.asarray(out, np.float32)
    a = a * rng.uniform(0.88, 1.12, 3)  # white balance
    ramp = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25), canvas, dtype=np.float32)
    a = a * (ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None])  # uneven light
    a = a + rng.normal(0, rng.uniform(0, 6), a.shape)
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.6))))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(rng.integers(45, 92)))
    return buf.getvalue()


def shift_key(seed: int, split: str, path: str, copy: int) -> int:
    """The seed of field-shifted copy `copy` of a photo in a split: the same copy for the same photo path."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{split}:{path}:{copy}".encode()).digest()[:8], "little")


def shift_job(job: tuple[str, str, int]) -> str:
    """(source photo, destination JPEG, seed) → writes one field-shifted copy."""
    src, dst, seed = job
    with Image.open(src) as img:
        data = field_shift(img, np.random.default_rng(seed))
    with open(dst, "wb") as f:
        f.write(data)
    return dst


def background_job(job: tuple[str, int]) -> str:
    """(destination JPEG, seed) → writes one leafless background."""
    dst, seed = job
    rng = np.random.default_rng(seed)
    background(rng, int(rng.integers(240, 400))).save(dst, "JPEG", quality=85)
    return dst
