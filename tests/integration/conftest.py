"""Integration tests: a real ComfyUI booted in this process (``--cpu``), the pack loaded as ComfyUI loads it, and
real servers on 127.0.0.1 (``ddistill_dev.host.comfy_server``). The pure tests in ``tests/unit`` need none of it."""

import importlib

import pytest
from browser import chromium  # noqa: F401  (module-scoped fixture of the browser tests)

from ddistill_dev.host import comfy_host

comfy_host.boot()


@pytest.fixture(scope="session")
def pack():
    return comfy_host.load_pack()


def _pack_module(pack, name: str):
    return importlib.import_module(f"{pack.__name__}.{name}")


@pytest.fixture(scope="session")
def hn(pack):
    """The pack's sampler nodes (nodes/hybrid_nodes.py), as ComfyUI imported them."""
    return _pack_module(pack, "nodes.hybrid_nodes")


@pytest.fixture(scope="session")
def sampling(pack):
    return _pack_module(pack, "nodes.sampling")


@pytest.fixture(scope="session")
def demo(pack):
    """The demo digit models' nodes (nodes/demo_nodes.py)."""
    return _pack_module(pack, "nodes.demo_nodes")


@pytest.fixture(scope="session")
def dm(pack):
    return _pack_module(pack, "ddistill.demo_model")
