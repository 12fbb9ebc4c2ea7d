#!/usr/bin/env bash
# The main job: on a fresh machine, set up the pinned ComfyUI host (idempotent), then run the demo experiments
# on the bundled digit models through a real ComfyUI server with the runner, and write the report.
#   bash scripts/demo.sh [OUT_DIR] [--seeds N] [--base-steps N] [--fresh]   (any order; default OUT_DIR: out/demo)
# A rerun with the same settings reuses the finished samples; other settings (or --fresh) replace the run.
# COMFYUI_PATH=... uses an existing ComfyUI instead of the pinned one.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup_host.py
exec .venv/bin/python demo/run_demo.py "$@"
