#!/usr/bin/env bash
# Cross-compiles the C kernels and tools/neon/kernel_test.c for AArch64 and runs the test under QEMU user mode:
# once on a CPU with the dot-product extension (NEON + SDOT variants) and once on a Cortex-A53 (NEON only,
# checking the run-time selection). Every variant must equal the reference bit for bit.
# Needs tools/setup-cross.sh. Usage: tools/test-neon.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-300}"
cc="${CC_AARCH64:-aarch64-linux-gnu-gcc}"
qemu="${QEMU_AARCH64:-qemu-aarch64-static}"
command -v "$cc" >/dev/null || { echo "test-neon: $cc missing (run tools/setup-cross.sh)" >&2; exit 2; }
command -v "$qemu" >/dev/null || { echo "test-neon: $qemu missing (run tools/setup-cross.sh)" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for opt in -O2 -O0; do
    "$cc" $opt -std=c11 -Wall -Wextra -ffp-contract=off -march=armv8-a -static -I Sources/CKernels/include -I Sources/CKernels \
        Sources/CKernels/*.c tools/neon/kernel_test.c -lm -o "$out/kernel_test"
    echo "== $opt, cpu max (dot product available)"
    "$qemu" -cpu max "$out/kernel_test" "$cases"
    echo "== $opt, cpu cortex-a53 (no dot product)"
    "$qemu" -cpu cortex-a53 "$out/kernel_test" "$cases"
done
