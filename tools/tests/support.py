"""What the tool tests share: a tiny folder of real photos, and running a tool as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_photos(leaves: str, dest: str, classes: dict[str, list[str]], per_class: int) -> None:
    """The first `per_class` photos (by name) of each <crop>/<class> of `leaves`, copied to `dest`."""
    for crop, names in classes.items():
        for c in names:
            os.makedirs(os.path.join(dest, crop, c))
            for name in sorted(os.listdir(os.path.join(leaves, crop, c)))[:per_class]:
                shutil.copyfile(os.path.join(leaves, crop, c, name), os.path.join(dest, crop, c, name))


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """tools/<name> with `args`, its output captured as text."""
    return subprocess.run([sys.executable, os.path.join(TOOLS, name), *args], capture_output=True, text=True)
