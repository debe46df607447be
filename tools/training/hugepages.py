"""Transparent huge pages for XLA's buffers on CPU.

XLA maps fresh memory for a training step's buffers and the kernel clears it one 4 KB page fault at a time:
without huge pages about half of tools/finetune-backbone's CPU time went to those faults. glibc (2.35 and
later) backs its allocations with transparent huge pages when the GLIBC_TUNABLES variable asks for it, and
reads that variable only when a process starts, so a tool re-executes itself once with it set.
Where the kernel's THP setting is `never`, or glibc is older, the variable changes nothing.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb"


def reexec_with_huge_pages() -> None:
    """Re-executes the running script with `glibc.malloc.hugetlb=1` added to GLIBC_TUNABLES, unless it is set."""
    current = os.environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in current:
        return
    setting = f"{TUNABLE}=1"
    env = dict(os.environ, GLIBC_TUNABLES=f"{current}:{setting}" if current else setting)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
