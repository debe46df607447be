"""Procedural leaf photos for the factory bundle: synthetic tomato, pepper and corn leaves, healthy or
with a disease's typical lesions, on varied backgrounds and lighting. Pure Pillow + numpy; every image is
a function of its integer seed.

These are drawings, not photographs of plants. They give the factory adapters something with the
right structure (crop = leaf shape and venation, disease = lesion pattern) to exercise the runtime.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CROPS = {
    "tomato": ["healthy", "early_blight", "late_blight", "septoria_leaf_spot", "bacterial_spot"],
    "pepper": ["healthy", "bacterial_spot"],
    "corn": ["healthy", "common_rust", "northern_leaf_blight"],
}

SS = 2  # supersampling factor


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------


def _smooth_noise(rng, size, cells, amp=1.0):
    """Low-frequency noise in [-amp, amp] of shape (size, size), bicubic-upsampled from cells x cells."""
    a = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(((a + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return (np.asarray(img, np.float32) / 127.5 - 1.0) * amp


def _jitter(rng, rgb, amount):
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in rgb)


def _ellipse(cx, cy, a, b, angle, n=28, wobble=None):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 if wobble is None else wobble
    x, y = a * np.cos(t) * r, b * np.sin(t) * r
    c, s = math.cos(angle), math.sin(angle)
    return [(float(cx + c * xi - s * yi), float(cy + s * xi + c * yi)) for xi, yi in zip(x, y)]


def _blob(rng, cx, cy, r, angle=0.0, aspect=1.0, roughness=0.3, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = rng.integers(2, 6)
    wob = 1 + roughness * (
        0.6 * np.sin(k * t + rng.uniform(0, 6.3)) + 0.4 * np.sin((k + 2) * t + rng.uniform(0, 6.3))
    ) + rng.normal(0, roughness * 0.15, n)
    return _ellipse(cx, cy, r * aspect, r, angle, n, np.clip(wob, 0.3, 2.0))


# ---------------------------------------------------------------------------------------------------
# backgrounds
# ---------------------------------------------------------------------------------------------------


def _background(rng, n):
    kind = rng.choice(["soil", "lab", "foliage", "table", "sky", "mulch"], p=[0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    g = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    if kind == "soil":
        base = np.array(_jitter(rng, (105, 80, 58), 15), np.float32)
        tex = _smooth_noise(rng, n, 48, 30)[..., None] + rng.normal(0, 12, (n, n, 1))
        img = base + tex + g * 25
    elif kind == "lab":
        v = rng.uniform(170, 240)
        base = np.array([v, v, v], np.float32) + rng.normal(0, 6, 3)
        img = base + g * 35 + rng.normal(0, 3, (n, n, 1))
    elif kind == "foliage":
        base = np.array(_jitter(rng, (45, 75, 35), 12), np.float32)
        blobs = np.stack([_smooth_noise(rng, n, 10, 40) for _ in range(3)], -1)
        img = base + blobs * np.array([0.6, 1.0, 0.5]) + g * 20
        img = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(6 * SS)), np.float32)
    elif kind == "table":
        base = np.array(_jitter(rng, (170, 130, 90), 18), np.float32)
        grain = np.sin(yy * rng.uniform(40, 90) + _smooth_noise(rng, n, 6, 2.5))[..., None] * 12
        img = base + grain + g * 25
    elif kind == "sky":
        top, bot = np.array(_jitter(rng, (120, 170, 225), 15), np.float32), np.array(_jitter(rng, (215, 230, 245), 10), np.float32)
        img = top * (1 - yy[..., None]) + bot * yy[..., None]
    else:  # mulch / straw
        base = np.array(_jitter(rng, (150, 125, 70), 15), np.float32)
        img = base + rng.normal(0, 25, (n, n, 1)) + g * 20
        img = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(2)), np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# leaf geometry
# ---------------------------------------------------------------------------------------------------


class Leaf:
    """One leaf (or leaflet) in canvas coordinates: base point, direction, length, width profile."""

    def __init__(self, x0, y0, angle, length, width, profile, serration=0.0, teeth=0, curve=0.0, rng=None):
        self.x0, self.y0, self.angle, self.length, self.width = x0, y0, angle, length, width
        self.profile, self.serration, self.teeth, self.curve = profile, serration, teeth, curve
        self.phase = rng.uniform(0, 6.3) if rng is not None else 0.0

    def point(self, t, v):
        """Canvas point at fraction t along the midrib and v (-1..1) across the half width."""
        bend = self.curve * (t**2) * self.length
        lx, ly = t * self.length, v * self.halfwidth(t) + bend
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.x0 + c * lx - s * ly, self.y0 + s * lx + c * ly

    def halfwidth(self, t):
        w = self.width * self.profile(t)
        if self.teeth:
            saw = (t * self.teeth + self.phase / 6.3) % 1.0
            w *= 1 - self.serration * saw * min(1.0, 4 * t * (1 - t) + 0.2)
        return w

    def outline(self, n=120):
        ts = np.linspace(0, 1, n)
        upper = [self.point(t, 1) for t in ts]
        lower = [self.point(t, -1) for t in ts[::-1]]
        return upper + lower


def _ovate(t):  # broad near the base third, pointed tip
    return max(0.0, math.sin(math.pi * min(1, t) ** 0.75)) ** 0.85


def _lanceolate(t):
    return max(0.0, math.sin(math.pi * min(1, t) ** 0.9)) ** 0.7


def _strap(t):  # corn blade: nearly parallel sides, long taper to the tip
    return min(1.0, 6 * t) * (1 - t**3) ** 0.8 if t < 1 else 0.0


def _crop_leaves(rng, crop, n):
    """List of (Leaf, vein_style) making up one leaf of the crop, and the rachis line if any."""
    cx, cy = n * rng.uniform(0.4, 0.6), n * rng.uniform(0.4, 0.6)
    ang = rng.uniform(0, 2 * math.pi)
    scale = rng.uniform(0.75, 1.1)
    parts, rachis = [], None
    if crop == "pepper":
        length = n * 0.78 * scale
        x0, y0 = cx - math.cos(ang) * length / 2, cy - math.sin(ang) * length / 2
        parts.append((Leaf(x0, y0, ang, length, length * rng.uniform(0.26, 0.34), _ovate,
                           curve=rng.uniform(-0.08, 0.08), rng=rng), "pinnate"))
    elif crop == "tomato":
        length = n * 1.0 * scale  # whole compound leaf: rachis with opposite leaflet pairs + terminal leaflet
        x0, y0 = cx - math.cos(ang) * length / 2, cy - math.sin(ang) * length / 2
        rachis = (x0, y0, ang, length)
        c, s = math.cos(ang), math.sin(ang)
        npairs = int(rng.integers(2, 4))
        for k in range(npairs):
            t = 0.12 + 0.5 * k / max(1, npairs - 1)
            bx, by = x0 + c * t * length * 0.8, y0 + s * t * length * 0.8
            ll = length * rng.uniform(0.3, 0.38) * (1 - 0.2 * t)
            for side in (-1, 1):
                a = ang + side * rng.uniform(0.7, 1.1)
                parts.append((Leaf(bx, by, a, ll, ll * rng.uniform(0.32, 0.42), _ovate, rng.uniform(0.15, 0.3),
                                   int(rng.integers(7, 12)), rng.uniform(-0.1, 0.1), rng), "pinnate"))
        tl = length * rng.uniform(0.36, 0.44)
        tx, ty = x0 + c * length * 0.66, y0 + s * length * 0.66
        parts.append((Leaf(tx, ty, ang + rng.uniform(-0.2, 0.2), tl, tl * rng.uniform(0.34, 0.44), _ovate,
                           rng.uniform(0.15, 0.3), int(rng.integers(8, 13)), 0.0, rng), "pinnate"))
    else:  # corn: one or two long blades crossing the frame
        for b in range(int(rng.choice([1, 1, 2]))):
            a = ang + (0 if b == 0 else rng.uniform(-0.5, 0.5))
            length = n * rng.uniform(1.3, 1.7)
            wid = n * rng.uniform(0.09, 0.14) * scale
            off = (b - 0.5) * wid * 2.4 if b else 0.0
            x0 = cx - math.cos(a) * length * 0.45 - math.sin(a) * off
            y0 = cy - math.sin(a) * length * 0.45 + math.cos(a) * off
            parts.append((Leaf(x0, y0, a, length, wid, _strap, curve=rng.uniform(-0.06, 0.06), rng=rng), "parallel"))
    return parts, rachis


# ---------------------------------------------------------------------------------------------------
# diseases: lesions drawn inside the leaf
# ---------------------------------------------------------------------------------------------------


def _points_in(mask, rng, k, edge_bias=False):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return []
    idx = rng.integers(0, len(xs), k)
    return list(zip(xs[idx].astype(float), ys[idx].astype(float)))


def _lesions(rng, img, mask, crop, disease, parts, n):
    d = ImageDraw.Draw(img)
    u = n / 256.0  # size unit: pixels of a 256-px image
    leaf_dir = parts[0][0].angle
    if disease == "early_blight":
        for x, y in _points_in(mask, rng, int(rng.integers(4, 10))):
            r = rng.uniform(6, 12) * u
            halo = Image.new("L", img.size, 0)
            ImageDraw.Draw(halo).polygon(_blob(rng, x, y, r * 1.7, roughness=0.15), fill=255)
            halo = halo.filter(ImageFilter.GaussianBlur(r * 0.35))
            yellow = Image.new("RGB", img.size, _jitter(rng, (205, 190, 70), 12))
            img.paste(yellow, (0, 0), halo.point(lambda v: int(v * 0.8)))
            rings = int(rng.integers(3, 6))
            ang0 = rng.uniform(0, 6.3)
            for j in range(rings):
                rr = r * (1 - j / rings)
                col = (95, 62, 35) if j % 2 == 0 else (140, 100, 55)
                d.polygon(_blob(rng, x, y, rr, ang0, 1.1, 0.12), fill=_jitter(rng, col, 8))
            d.ellipse([x - r * 0.15, y - r * 0.15, x + r * 0.15, y + r * 0.15], fill=(60, 40, 25))
    elif disease == "late_blight":
        for x, y in _points_in(mask, rng, int(rng.integers(2, 4))):
            r = rng.uniform(20, 36) * u
            a = rng.uniform(0, 6.3)
            d.polygon(_blob(rng, x, y, r * 1.25, a, 1.2, 0.35), fill=_jitter(rng, (105, 120, 80), 10))  # water-soaked rim
            d.polygon(_blob(rng, x, y, r, a, 1.2, 0.4), fill=_jitter(rng, (58, 52, 38), 8))
            for _ in range(3):
                dx, dy = rng.normal(0, r * 0.3, 2)
                d.polygon(_blob(rng, x + dx, y + dy, r * 0.4, a, 1.0, 0.5), fill=_jitter(rng, (40, 36, 28), 6))
    elif disease == "septoria_leaf_spot":
        for x, y in _points_in(mask, rng, int(rng.integers(25, 60))):
            r = rng.uniform(2.6, 4.6) * u
            d.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(rng, (80, 50, 35), 10))
            rc = r * 0.6
            d.ellipse([x - rc, y - rc, x + rc, y + rc], fill=_jitter(rng, (200, 195, 180), 10))
            if rng.random() < 0.5:
                d.point([(x + rng.normal(0, rc * 0.3), y + rng.normal(0, rc * 0.3))], fill=(30, 30, 30))
    elif disease == "bacterial_spot":
        k = int(rng.integers(40, 110)) if crop == "tomato" else int(rng.integers(25, 70))
        for x, y in _points_in(mask, rng, k):
            r = rng.uniform(0.9, 2.0) * u * (1.4 if crop == "pepper" else 1.0)
            if rng.random() < 0.2:
                rh = r * 1.7
                d.ellipse([x - rh, y - rh, x + rh, y + rh], fill=_jitter(rng, (120, 140, 60), 10))
            d.polygon(_blob(rng, x, y, r, rng.uniform(0, 6.3), 1.0, 0.35, 12), fill=_jitter(rng, (40, 30, 22), 8))
    elif disease == "common_rust":
        for x, y in _points_in(mask, rng, int(rng.integers(50, 140))):
            a, b = rng.uniform(2.0, 4.0) * u, rng.uniform(0.9, 1.6) * u
            d.polygon(_ellipse(x, y, a * 1.3, b * 1.4, leaf_dir, 16), fill=_jitter(rng, (120, 70, 30), 10))
            d.polygon(_ellipse(x, y, a, b, leaf_dir, 16), fill=_jitter(rng, (200, 110, 40), 12))
    elif disease == "northern_leaf_blight":
        for x, y in _points_in(mask, rng, int(rng.integers(2, 6))):
            a, b = rng.uniform(22, 48) * u, rng.uniform(4, 8) * u
            wob = 1 + 0.08 * np.sin(np.linspace(0, 12, 36))
            d.polygon(_ellipse(x, y, a * 1.08, b * 1.3, leaf_dir, 36, wob), fill=_jitter(rng, (110, 100, 70), 8))
            d.polygon(_ellipse(x, y, a, b, leaf_dir, 36, wob), fill=_jitter(rng, (185, 170, 130), 12))
    elif disease != "healthy":
        raise ValueError(disease)


# ---------------------------------------------------------------------------------------------------
# the renderer
# ---------------------------------------------------------------------------------------------------

_LEAF_GREEN = {"tomato": (70, 120, 45), "pepper": (40, 95, 30), "corn": (95, 145, 50)}


def render(crop: str, disease: str, seed, size: int = 256) -> Image.Image:
    """One synthetic photo (RGB, size x size) of a crop leaf with the disease's lesions."""
    if disease not in CROPS[crop]:
        raise ValueError(f"{crop} has no class {disease}")
    rng = np.random.default_rng(seed)
    n = size * SS
    bg = _background(rng, n)
    parts, rachis = _crop_leaves(rng, crop, n)

    mask_img = Image.new("L", (n, n), 0)
    md = ImageDraw.Draw(mask_img)
    for leaf, _ in parts:
        md.polygon(leaf.outline(), fill=255)
    if rachis is not None:
        x0, y0, a, length = rachis
        md.line([(x0, y0), (x0 + math.cos(a) * length * 0.7, y0 + math.sin(a) * length * 0.7)], fill=255,
                width=max(2, int(n * 0.012)))
    mask = np.asarray(mask_img) > 127
    # lesions go on leaf blades (not the rachis) and inside the central region that survives a centre crop
    blade = Image.new("L", (n, n), 0)
    bd = ImageDraw.Draw(blade)
    for leaf, _ in parts:
        bd.polygon(leaf.outline(), fill=255)
    lesion_mask = np.asarray(blade) > 127
    m0, m1 = int(n * 0.1), int(n * 0.9)
    central = np.zeros_like(lesion_mask)
    central[m0:m1, m0:m1] = True
    lesion_mask = lesion_mask & central if (lesion_mask & central).sum() > 0.02 * n * n else lesion_mask

    # leaf colour: base green, mottling, lighting gradient
    base = np.array(_jitter(rng, _LEAF_GREEN[crop], 10), np.float32)
    mott = _smooth_noise(rng, n, 12, 14)[..., None] * np.array([0.6, 1.0, 0.4])
    fine = rng.normal(0, 4, (n, n, 1))
    leaf = np.clip(base + mott + fine, 0, 255).astype(np.uint8)
    leaf_img = Image.fromarray(leaf)
    ld = ImageDraw.Draw(leaf_img)

    vein = tuple(int(min(255, c * 1.35 + 25)) for c in base)
    lw = max(1, int(n / 256))
    for lf, style in parts:
        if style == "parallel":
            ld.line([lf.point(t, 0) for t in np.linspace(0, 1, 40)], fill=vein, width=int(3.5 * lw))
            for v in np.linspace(-0.85, 0.85, int(rng.integers(8, 14))):
                if abs(v) > 0.12:
                    ld.line([lf.point(t, v) for t in np.linspace(0.02, 0.97, 40)],
                            fill=tuple(int(c * 1.12 + 6) for c in base), width=lw)
        else:
            ld.line([lf.point(t, 0) for t in np.linspace(0, 0.97, 30)], fill=vein, width=2 * lw)
            nv = int(rng.integers(5, 9))
            for k in range(nv):
                t0 = 0.1 + 0.8 * k / nv
                for side in (-1, 1):
                    pts = [lf.point(min(0.99, t0 + 0.22 * s), side * s * 0.9) for s in np.linspace(0, 1, 8)]
                    ld.line(pts, fill=vein, width=lw)
    if rachis is not None:
        x0, y0, a, length = rachis
        ld.line([(x0, y0), (x0 + math.cos(a) * length * 0.7, y0 + math.sin(a) * length * 0.7)],
                fill=tuple(int(c * 0.8) for c in vein), width=max(2, int(n * 0.012)))

    _lesions(rng, leaf_img, lesion_mask, crop, disease, parts, n)

    # specular sheen (pepper leaves are glossy), then shadow and composite
    leaf = np.asarray(leaf_img, np.float32)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    light = 1 + (xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3))
    if crop == "pepper":
        sheen = np.exp(-(((xx - rng.uniform(0.3, 0.7)) ** 2 + (yy - rng.uniform(0.3, 0.7)) ** 2) / 0.03))
        leaf = leaf + sheen[..., None] * rng.uniform(25, 55)
    leaf = leaf * light[..., None]

    soft = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(0.8 * SS)), np.float32)[..., None] / 255
    sh_off = int(rng.integers(3, 10) * SS)
    shadow = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(5 * SS)), np.float32)[..., None] / 255
    shadow = np.roll(shadow, (sh_off, sh_off), (0, 1))
    out = bg.astype(np.float32) * (1 - 0.35 * shadow)
    out = out * (1 - soft) + leaf * soft

    # global photo variation: exposure, contrast, colour cast, noise
    out = (out - 128) * rng.uniform(0.85, 1.15) + 128 + rng.uniform(-20, 20)
    out = out * (1 + rng.normal(0, 0.04, 3))
    out = out + rng.normal(0, rng.uniform(1, 5), out.shape)
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize((size, size), Image.LANCZOS)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return img


def to_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def render_negative(seed, size: int = 256) -> Image.Image:
    """A synthetic non-leaf photo (for outlier exposure of the router): bare backgrounds, random objects,
    colour fields, stripes, round or lobed non-crop leaves in autumn colours, sometimes grayscale."""
    rng = np.random.default_rng(seed)
    n = size * SS
    kind = rng.choice(["background", "objects", "field", "stripes", "other_leaf"])
    if kind == "field":
        img = np.stack([_smooth_noise(rng, n, int(rng.integers(2, 12)), 90) for _ in range(3)], -1) + rng.uniform(60, 190, 3)
        img = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    elif kind == "stripes":
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
        a = rng.uniform(0, np.pi)
        f = rng.uniform(4, 40)
        s = np.sin((xx * math.cos(a) + yy * math.sin(a)) * f * 2 * np.pi)[..., None]
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = Image.fromarray(np.clip(c1 * (s > 0) + c2 * (s <= 0) + rng.normal(0, 8, (n, n, 1)), 0, 255).astype(np.uint8))
    else:
        img = Image.fromarray(_background(rng, n))
        d = ImageDraw.Draw(img)
        if kind == "objects":
            for _ in range(int(rng.integers(1, 8))):
                col = tuple(int(c) for c in rng.integers(0, 256, 3))
                x, y, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.04, 0.3) * n
                shape = rng.integers(0, 3)
                if shape == 0:
                    d.ellipse([x - r, y - r * rng.uniform(0.4, 1), x + r, y + r], fill=col)
                elif shape == 1:
                    d.rectangle([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=col)
                else:
                    d.line([(x, y), (rng.uniform(0, n), rng.uniform(0, n))], fill=col, width=int(rng.integers(2, 30)))
        elif kind == "other_leaf":
            col = tuple(int(c) for c in rng.choice([(190, 70, 30), (220, 170, 40), (140, 80, 40), (170, 40, 40), (90, 130, 60)]))
            for _ in range(int(rng.integers(1, 4))):
                x, y, r = rng.uniform(0.2, 0.8) * n, rng.uniform(0.2, 0.8) * n, rng.uniform(0.12, 0.3) * n
                lobes = int(rng.integers(0, 2)) * int(rng.integers(3, 6))
                t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
                rr = r * (1 + (0.35 * np.abs(np.sin(lobes * t / 2)) if lobes else 0.05 * np.sin(5 * t)))
                d.polygon([(float(x + a * math.cos(b)), float(y + a * math.sin(b))) for a, b in zip(rr, t)], fill=_jitter(rng, col, 15))
    img = img.resize((size, size), Image.LANCZOS)
    if rng.random() < 0.3:
        img = img.convert("L").convert("RGB")
    return img
