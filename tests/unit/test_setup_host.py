"""scripts/setup_host.py's torch layer lent between the checkout's venvs by hard links (seed_torch_layer)."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup_host.py"
PYVER = f"python{sys.version_info.major}.{sys.version_info.minor}"
KEY = "torch==2.14.1 torchvision==0.29.1"


@pytest.fixture
def setup_host(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("setup_host_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PACK_ROOT", tmp_path)
    return module


def site(venv: Path) -> Path:
    path = venv / "lib" / PYVER / "site-packages"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dist(site_dir: Path, name: str, files: dict[str, str], extra_record=()) -> None:
    """A distribution as pip leaves it: its files and a dist-info whose RECORD lists them (and itself)."""
    info = f"{name}.dist-info"
    for rel, text in {**files, f"{info}/METADATA": f"Name: {name}\n"}.items():
        (site_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (site_dir / rel).write_text(text)
    rows = [f"{info}/METADATA", *files, *extra_record, f"{info}/RECORD"]  # dist-info first, as a RECORD may list it
    (site_dir / info / "RECORD").write_text("".join(f"{r},sha256=x,1\n" for r in rows))


@pytest.fixture
def source(tmp_path):
    """The first venv (.venv): torch, a CUDA library, and a package outside the torch layer."""
    venv = tmp_path / ".venv"
    s = site(venv)
    dist(s, "torch-2.14.1", {"torch/__init__.py": "torch", "torch/lib/libtorch.so": "so"}, ["../../../bin/torchrun"])
    dist(s, "nvidia_cublas-13.1.1.3", {"nvidia/cublas/lib/libcublas.so": "cublas"})
    dist(s, "numpy-2.3.0", {"numpy/__init__.py": "numpy"})
    (venv / ".torch_stamp").write_text(KEY)
    return s


def test_torch_layer_is_hard_linked_and_nothing_else(setup_host, source, tmp_path):
    venv = tmp_path / ".host" / "venv-0.33.0"
    target = site(venv)
    setup_host.seed_torch_layer(venv, KEY)
    for rel in ("torch/__init__.py", "torch/lib/libtorch.so", "torch-2.14.1.dist-info/RECORD"):
        assert os.path.samefile(target / rel, source / rel), rel
    assert os.path.samefile(target / "nvidia/cublas/lib/libcublas.so", source / "nvidia/cublas/lib/libcublas.so")
    assert not (target / "numpy").exists() and not (target / "numpy-2.3.0.dist-info").exists()
    assert not (venv / "bin" / "torchrun").exists()  # scripts name the other venv's python: pip writes its own


def test_other_pins_or_an_installed_layer_are_left_to_pip(setup_host, source, tmp_path):
    venv = tmp_path / ".host" / "venv-0.33.0"
    target = site(venv)
    setup_host.seed_torch_layer(venv, "torch==2.15.0 torchvision==0.30.0")
    assert list(target.iterdir()) == []
    (venv / ".torch_stamp").write_text(KEY)  # this venv already has its torch
    setup_host.seed_torch_layer(venv, KEY)
    assert list(target.iterdir()) == []


def test_a_failed_link_undoes_every_link(setup_host, source, tmp_path, monkeypatch):
    venv = tmp_path / ".host" / "venv-0.33.0"
    target = site(venv)
    calls = []

    def link(src, dst):
        if len(calls) == 3:
            raise OSError(18, "Invalid cross-device link")
        calls.append(dst)
        os.symlink(src, dst)

    monkeypatch.setattr(setup_host.os, "link", link)
    setup_host.seed_torch_layer(venv, KEY)
    assert len(calls) == 3
    assert not [p for p in target.rglob("*") if p.is_file() or p.is_symlink()]


def test_dist_info_is_linked_after_the_files_it_lists(setup_host, source, tmp_path, monkeypatch):
    """pip must never find a dist-info whose files are not all there, even if linking stops half-way."""
    venv = tmp_path / ".host" / "venv-0.33.0"
    site(venv)
    order = []

    def link(src, dst):
        order.append(Path(dst).relative_to(site(venv)))
        os.symlink(src, dst)

    monkeypatch.setattr(setup_host.os, "link", link)
    setup_host.seed_torch_layer(venv, KEY)
    torch = [str(p) for p in order if str(p).startswith("torch")]
    first_info = next(i for i, p in enumerate(torch) if ".dist-info/" in p)
    assert all(".dist-info/" in p for p in torch[first_info:]), torch
    assert all(".dist-info/" not in p for p in torch[:first_info]), torch
