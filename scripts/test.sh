#!/usr/bin/env bash
# The pack's test command: sets up the pinned ComfyUI host and dependencies (idempotent), checks lint and format,
# then runs the pure tests (tests/unit, no ComfyUI booted) and the integration tests (tests/integration).
# Pass pytest arguments through, e.g. `bash scripts/test.sh -k hybrid`. Another host (scripts/setup_host.py):
# COMFYUI_PATH=/path/to/ComfyUI uses an existing ComfyUI, COMFYUI_ARCHIVE=.../ComfyUI-0.33.0.tar.gz extracts that
# one into .host/; DD_VENV=DIR uses (or makes) that virtual environment instead of .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_out="$(mktemp)"
trap 'rm -f "$setup_out"' EXIT
python3 scripts/setup_host.py --dev | tee "$setup_out"
PY="$(sed -n 's/^PYTHON=//p' "$setup_out")"
COMFYUI_PATH="$(sed -n 's/^COMFYUI_PATH=//p' "$setup_out")"
export COMFYUI_PATH  # the host the integration tests boot and serve (ddistill_dev/host/comfy_host.py)
unset COMFYUI_ARCHIVE
bash scripts/setup_browser.sh "$PY"
BIN="$(dirname "$PY")"
"$BIN/ruff" check .
"$BIN/ruff" format --check .
"$PY" -m pytest tests/unit "$@"
"$PY" -m pytest tests/integration "$@"
