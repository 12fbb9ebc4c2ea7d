#!/usr/bin/env bash
# The pack's test command: sets up the pinned ComfyUI host and dependencies (idempotent), checks lint and format,
# then runs the pure tests (tests/unit, no ComfyUI booted) and the integration tests (tests/integration).
# Pass pytest arguments through, e.g. `bash scripts/test.sh -k hybrid`. COMFYUI_PATH=... uses an existing ComfyUI.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup_host.py --dev
bash scripts/setup_browser.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest tests/unit "$@"
.venv/bin/python -m pytest tests/integration "$@"
