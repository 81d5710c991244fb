#!/usr/bin/env bash
# Install the headless browser the web-view test drives (tests/server/test_web_view_browser.py):
# Debian's chromium and its chromium-driver, through apt (never a browser download of its own).
# Idempotent: does nothing when both are already there. Needs root (CI runs as root); without
# apt or root it says so and exits 0, and the browser test skips with the reason.
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "install_browser.sh: no apt-get or not root; the browser test will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
    || echo "install_browser.sh: apt-get could not install chromium; the browser test will be skipped" >&2
exit 0
