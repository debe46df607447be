#!/usr/bin/env bash
# Installs what building, testing and running AADS Edge needs on Debian 12 / Raspberry Pi OS bookworm.
# Idempotent: packages already present are not reinstalled. Extra package names given as arguments are
# installed the same way (tools/setup-cross.sh uses that).
set -euo pipefail
packages=(libturbojpeg0-dev libjpeg62-turbo-dev libgpiod-dev libsqlite3-dev pkg-config "$@")
# Headless Chromium renders the HTML field report for a visual check (tools/render_report.sh); opt in.
if [ "${WITH_CHROMIUM:-0}" = 1 ]; then packages+=(chromium); fi
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
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    echo "note: add /opt/swift/usr/bin to PATH" >&2
fi
