#!/usr/bin/env bash
# The main job: on a fresh machine, set up the pinned ComfyUI host (idempotent), then run the demo experiments
# on the bundled digit models through a real ComfyUI server with the runner, and write the report.
#   bash scripts/demo.sh [OUT_DIR] [run_demo.py options, e.g. --seeds 100]      (default OUT_DIR: out/demo)
# COMFYUI_PATH=... uses an existing ComfyUI instead of the pinned one.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup_host.py
out="${1:-out/demo}"
shift || true
exec .venv/bin/python demo/run_demo.py --out "$out" "$@"
