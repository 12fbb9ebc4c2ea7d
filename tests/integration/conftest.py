"""Integration tests: a real ComfyUI booted in this process (``--cpu``), the pack loaded as ComfyUI loads it, and
real servers on 127.0.0.1 (``ddistill_dev.host.comfy_server``). The pure tests in ``tests/unit`` need none of it."""

import importlib
import shutil
import tempfile
from pathlib import Path

import pytest
from browser import chromium  # noqa: F401  (module-scoped fixture of the browser tests)

from ddistill_dev.host import comfy_host

comfy_host.boot()


def pytest_sessionstart(session):
    """Say the free disk where the tests write (the checkout, the temporary folder), also under ``-q``: a full disk
    fails them far from the cause (a 2.2 GB full-size checkpoint, 1 GB of DreamSim stand-in weights)."""
    places = {"checkout": Path(__file__).resolve().parents[2], "temp": Path(tempfile.gettempdir())}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line(
        "free disk: " + ", ".join(f"{k} {shutil.disk_usage(v).free / 2**30:.1f} GiB" for k, v in places.items())
    )


@pytest.fixture(scope="session")
def pack():
    return comfy_host.load_pack()


def _pack_module(pack, name: str):
    return importlib.import_module(f"{pack.__name__}.{name}")


@pytest.fixture(scope="session")
def pack_modules(pack):
    """``pack_modules(alias="nodes.lora_pair", ...)``: {alias: that module of the pack, as ComfyUI imported it}."""
    return lambda **paths: {alias: _pack_module(pack, path) for alias, path in paths.items()}


@pytest.fixture(scope="session")
def hn(pack):
    """The pack's sampler nodes (nodes/hybrid_nodes.py), as ComfyUI imported them."""
    return _pack_module(pack, "nodes.hybrid_nodes")


@pytest.fixture(scope="session")
def run_hybrid(hn):
    """``run_hybrid(base, distilled, positive, negative, latent, seed, cfg=1.0, **base_inputs)``: Base First Step
    (base_cfg 1, base_steps 1, 4 lcm steps unless ``base_inputs`` say otherwise) then Distilled Continue at ``cfg``,
    called by input name as ComfyUI calls them; (Base First Step's outputs, Distilled Continue's outputs)."""

    def run(base, distilled, positive, negative, latent, seed, cfg=1.0, **base_inputs):
        inputs = {"base_cfg": 1.0, "base_steps": 1, "steps": 4, "scheduler": "lcm", "sampler_name": "lcm"}
        first = hn.BaseFirstStepSampler.execute(
            base_model=base,
            positive=positive,
            negative=negative,
            latent_image=latent,
            seed=seed,
            **{**inputs, **base_inputs},
        ).result
        second = hn.DistilledContinueSampler.execute(
            distilled_model=distilled, positive=positive, negative=negative, latent=first[0], cfg=cfg
        ).result
        return first, second

    return run


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


@pytest.fixture(scope="session")
def mb(pack):
    """The core's embedding module (the Diversity Meter's backends)."""
    return _pack_module(pack, "ddistill.embedding")


@pytest.fixture(scope="session")
def loading(pack):
    """The meter's networks placed by ComfyUI's model management (nodes/metric_loading.py)."""
    return _pack_module(pack, "nodes.metric_loading")
