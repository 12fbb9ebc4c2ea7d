"""Integration tests: a real ComfyUI booted in this process (``--cpu``), the pack loaded as ComfyUI loads it, and
real servers on 127.0.0.1 (``ddistill_dev.comfy_server``). The pure tests in ``tests/unit`` need none of it."""

import pytest
from browser import chromium  # noqa: F401  (module-scoped fixture of the browser tests)

from ddistill_dev import comfy_host

comfy_host.boot()


@pytest.fixture(scope="session")
def pack():
    return comfy_host.load_pack()
