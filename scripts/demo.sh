#!/usr/bin/env bash
# The main job: on a fresh machine, set up the pinned ComfyUI host (idempotent), then run the demo experiments
# on the bundled digit models through a real ComfyUI server with the runner, and write the report.
#   bash scripts/demo.sh [OUT_DIR] [--seeds N] [--base-steps N] [--fresh]   (any order; default OUT_DIR: out/demo)
# A rerun with the same settings reuses the finished samples; other settings (or --fresh) replace the run.
# COMFYUI_PATH=... uses an existing ComfyUI instead of the pinned one; DD_VENV=DIR another virtual environment.
# It installs only what the product needs (no test requirements, no development install of the pack): the demo and
# the runner run as modules from this folder (python -m), so they import the pack's packages from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
setup_out="$(mktemp)"
trap 'rm -f "$setup_out"' EXIT
python3 scripts/setup_host.py | tee "$setup_out"
PY="$(sed -n 's/^PYTHON=//p' "$setup_out")"
COMFYUI_PATH="$(sed -n 's/^COMFYUI_PATH=//p' "$setup_out")"
export COMFYUI_PATH  # the ComfyUI the demo's server runs (runner/comfy_server.py)
unset COMFYUI_ARCHIVE
"$PY" -m demo.run_demo "$@"
