"""Headless Chromium against the real ComfyUI server: the bundled frontend loads and knows the pack's nodes."""

import pytest
from browser import open_frontend

from ddistill_dev.host.comfy_server import ComfyServer

PACK_IDS = ["DDistill_BaseFirstStepSampler", "DDistill_DistilledContinueSampler", "DDistill_SkipFirstStep"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_browser")) as s:
        yield s


def test_frontend_loads_and_registers_pack_nodes(server, chromium):
    with open_frontend(chromium, server) as fe:
        types = fe.registered_node_types()
        for node_id in PACK_IDS:
            assert node_id in types, f"{node_id} not registered in the frontend; page log:\n{fe.log()[-2000:]}"
        assert "KSampler" in types  # the core node definitions arrived too
        node_id = fe.add_node("DDistill_SkipFirstStep")
        title = fe.eval("(id) => window.app.graph.getNodeById(id).title", node_id)
        assert title == "Skip First Step"
