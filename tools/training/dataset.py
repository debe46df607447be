"""Labelled image folders (`<crop>/<class>/*.jpg`): scanning, validation, leaf groups and a leak-free split."""

from __future__ import annotations

import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

MIN_PHOTOS_PER_CLASS = 10
JPEG_SUFFIXES = (".jpg", ".jpeg")
SPLITS = ("train", "val", "golden")


class DataError(Exception):
    """Bad input data; the message names the file or folder."""


@dataclass(frozen=True)
class Photo:
    path: str
    crop: str
    cls: str
    group: str

    @property
    def label(self) -> str:
        return f"{self.crop}/{self.cls}"


_LEAF = re.compile(r"^(.*?)[_ ]?Leaf[_ ](\d+)", re.IGNORECASE)
_NUMBERED = re.compile(r"^(.*?)[_ ](\d+)(?:[._ ].*)?$")


def leaf_group(file_name: str) -> str:
    """The leaf group of a PlantVillage-style name (`<uuid>___<code>_<number>.jpg`).

    Names with `Leaf <n>` group by code and leaf number (every shot and day of one leaf); other names by
    code and block of 10 consecutive photo numbers, so consecutive shots of one leaf stay together.
    Names of another form are a group of their own.
    """
    stem = os.path.splitext(file_name)[0]
    code = stem.split("___", 1)[-1]
    if m := _LEAF.match(code):
        return f"{m.group(1)} Leaf {int(m.group(2))}"
    if m := _NUMBERED.match(code):
        return f"{m.group(1)} #{int(m.group(2)) // 10}"
    return code


def _is_jpeg(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(3) == b"\xff\xd8\xff"
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e.strerror})") from None


def scan(roots: list[str]) -> list[Photo]:
    """Every photo under the roots, checked: JPEG signature, at least MIN_PHOTOS_PER_CLASS per class."""
    photos: list[Photo] = []
    for root in roots:
        if not os.path.isdir(root):
            raise DataError(f"{root}: not a directory")
        crops = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
        if not crops:
            raise DataError(f"{root}: no <crop>/<class>/ folders")
        for crop in crops:
            crop_dir = os.path.join(root, crop)
            classes = sorted(d for d in os.listdir(crop_dir) if os.path.isdir(os.path.join(crop_dir, d)))
            if not classes:
                raise DataError(f"{crop_dir}: no class folders")
            for cls in classes:
                class_dir = os.path.join(crop_dir, cls)
                names = sorted(n for n in os.listdir(class_dir) if not n.startswith("."))
                if not names:
                    raise DataError(f"{class_dir}: empty class folder")
                for name in names:
                    path = os.path.join(class_dir, name)
                    if not os.path.isfile(path):
                        raise DataError(f"{path}: not a regular file")
                    if not name.lower().endswith(JPEG_SUFFIXES) or not _is_jpeg(path):
                        raise DataError(f"{path}: not a JPEG file")
                    photos.append(Photo(path, crop, cls, f"{crop}/{cls}/{leaf_group(name)}"))
    counts = Counter(p.label for p in photos)
    for label, n in sorted(counts.items()):
        if n < MIN_PHOTOS_PER_CLASS:
            raise DataError(f"class {label}: {n} photos, at least {MIN_PHOTOS_PER_CLASS} are needed")
    return photos


def split(photos: list[Photo], seed: int, val: float = 0.15, golden: float = 0.15) -> dict[str, list[Photo]]:
    """Per class, whole leaf groups in seeded order go to golden, then validation, then training.

    A group never straddles two splits. Each held-out split gets at least MIN_PHOTOS_PER_CLASS photos of
    every class (so the OOD thresholds have enough validation samples).
    """
    by_class: dict[str, dict[str, list[Photo]]] = defaultdict(lambda: defaultdict(list))
    for p in photos:
        by_class[p.label][p.group].append(p)
    out: dict[str, list[Photo]] = {s: [] for s in SPLITS}
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        random.Random(f"{seed}:{label}").shuffle(groups)
        total = sum(len(by_class[label][g]) for g in groups)
        want = {"golden": max(MIN_PHOTOS_PER_CLASS, round(total * golden)),
                "val": max(MIN_PHOTOS_PER_CLASS, round(total * val))}
        target = "golden"
        for g in groups:
            members = by_class[label][g]
            if target != "train" and len([p for p in out[target] if p.label == label]) >= want[target]:
                target = "val" if target == "golden" else "train"
            out[target].extend(members)
        if not any(p.label == label for p in out["train"]):
            raise DataError(f"class {label}: too few leaf groups to hold out validation and golden photos")
    return out


def class_counts(splits: dict[str, list[Photo]]) -> dict[str, dict[str, int]]:
    labels = sorted({p.label for s in splits.values() for p in s})
    return {label: {s: sum(p.label == label for p in splits[s]) for s in SPLITS} for label in labels}


def link_photos(root: str, rel_paths: list[str], dest: str) -> None:
    """A folder `dest` of symbolic links to `root`/rel for each rel path, laid out as in `root` (the held-out photos
    of a report as a folder that `aads-edge evaluate` reads)."""
    for rel in rel_paths:
        link = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.join(root, rel), link)
