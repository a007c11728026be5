#!/usr/bin/env bash
# Install Debian's chromium for the status-page browser test (tests/integration/test_e2e_status_page.py).
# Installs only when chromium is missing and we are root; otherwise says why it does nothing and exits 0,
# so CI scripts can call it unconditionally.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    echo "setup_browser: chromium already installed ($(command -v chromium || echo /usr/bin/chromium))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup_browser: chromium is missing but we are not root; the browser test will be skipped." \
         "Install it with: sudo apt-get install chromium"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: chromium is missing and apt-get is not available; the browser test will be skipped."
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup_browser: installing Debian's chromium"
apt-get update -q
apt-get install -y -q --no-install-recommends chromium
echo "setup_browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
