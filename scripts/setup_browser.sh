#!/usr/bin/env bash
# Browser tests' prerequisites (idempotent): Debian's Chromium at /usr/bin/chromium and the Playwright
# Python client in the test venv (it drives that Chromium through `executable_path`; no browser is downloaded).
#   bash scripts/setup_browser.sh [PYTHON]     PYTHON: the venv's python (default .venv/bin/python; scripts/test.sh
#                                              passes the one setup_host.py reported, e.g. DD_VENV's)
# CI runs as root with Debian's package registry reachable. SKIP_BROWSER_SETUP=1 skips it all.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_BROWSER_SETUP:-0}" = "1" ] && exit 0
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" != "0" ]; then
        echo "setup_browser: /usr/bin/chromium is missing; install it with 'apt-get install chromium' (as root)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
PY="${1:-.venv/bin/python}"
if ! "$PY" -c "import playwright" 2>/dev/null; then
    "$PY" -m pip install -q -r tests/requirements.txt
fi
/usr/bin/chromium --version
