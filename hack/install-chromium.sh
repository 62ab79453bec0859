#!/usr/bin/env bash
# Debian's chromium, for the report's browser test (tests/unit/test_report_browser.py drives it
# headless over the DevTools protocol). Idempotent: nothing to do when a chromium is on PATH.
# Prints the browser's path. CHROMIUM overrides which binary is used.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then echo "$CHROMIUM"; exit 0; fi
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null; then command -v "$b"; exit 0; fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-chromium: chromium is not installed; as root on Debian/Ubuntu: apt-get install chromium" >&2
  exit 1
fi
echo ">> installing Debian's chromium (first time only)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium >&2 || {
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends chromium >&2
}
command -v chromium
