"""Fixtures of the Diversity Meter's tests."""

import pytest


@pytest.fixture(scope="module")
def mb(pack_modules):
    """The core's embedding module as the pack loads it."""
    return pack_modules(m="ddistill.embedding")["m"]


@pytest.fixture(scope="module")
def loading(pack_modules):
    """The nodes' side: networks placed by ComfyUI's model management."""
    return pack_modules(m="nodes.metric_loading")["m"]
