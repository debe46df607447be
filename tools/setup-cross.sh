#!/usr/bin/env bash
# Installs what tools/test-neon.sh needs on Debian 12 (x86-64 hosts): an AArch64 cross C compiler and QEMU user
# mode. Separate from tools/setup.sh because only ARM kernel development needs it. Idempotent.
set -euo pipefail
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
