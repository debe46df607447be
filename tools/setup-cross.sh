#!/usr/bin/env bash
# Installs what tools/test-neon.sh needs on Debian 12 (x86-64 hosts): an AArch64 cross C compiler and QEMU user
# mode, besides the packages of tools/setup.sh. Separate because only ARM kernel tests need it. Idempotent.
set -euo pipefail
exec "$(dirname "$0")/setup.sh" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
