#!/usr/bin/env bash
# Renders the field report from a demo journal and screenshots it with headless Chromium, to look at it.
#   tools/render_report.sh [OUT_DIR]      (needs: apt-get install chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/aads-report}"
mkdir -p "$out"
rm -f "$out/demo.sqlite" "$out/demo.sqlite-wal" "$out/demo.sqlite-shm"
bin=.build/debug/aads-edge
[ -x "$bin" ] || swift build --product aads-edge
"$bin" report --demo --journal "$out/demo.sqlite" --root "$out/no-slots" --out "$out/report.html"
chromium --headless --no-sandbox --disable-gpu --screenshot="$out/report.png" --window-size=1200,2700 \
    "file://$(realpath "$out/report.html")" 2>/dev/null
echo "screenshot: $out/report.png"
