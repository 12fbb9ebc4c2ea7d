#!/usr/bin/env bash
# The pack's test command: sets up the pinned ComfyUI host and dependencies (idempotent), then runs pytest.
# Pass pytest arguments through, e.g. `bash scripts/test.sh -k hybrid`. COMFYUI_PATH=... uses an existing ComfyUI.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup_host.py --dev
bash scripts/setup_browser.sh
exec .venv/bin/python -m pytest tests "$@"
