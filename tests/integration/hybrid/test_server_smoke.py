"""The pack loads in the real ComfyUI server and a hybrid graph runs through /prompt."""

import pytest

from ddistill_dev.gpu.runner_graphs import hybrid_prompt
from ddistill_dev.host.comfy_server import ComfyServer, execution_error

HYBRID_IDS = [
    "DDistill_BaseFirstStepSampler",
    "DDistill_DistilledContinueSampler",
    "DDistill_SkipFirstStep",
    "DDistill_DistilledSchedule",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy")) as s:
        yield s


def test_nodes_registered_with_display_names(server):
    info = server.object_info()
    for node_id in HYBRID_IDS:
        assert node_id in info, f"{node_id} missing; server log:\n{server.log_text()[-2000:]}"
    assert info["DDistill_BaseFirstStepSampler"]["display_name"] == "Base First Step Sampler"
    assert info["DDistill_DistilledContinueSampler"]["display_name"] == "Distilled Continue Sampler"
    assert info["DDistill_SkipFirstStep"]["display_name"] == "Skip First Step"
    assert info["DDistill_DistilledSchedule"]["output"] == ["SIGMAS"]
    assert info["DDistill_BaseFirstStepSampler"]["input"]["required"]["base_cfg"][1]["default"] == 1.0


def test_hybrid_graph_runs(server):
    entry = server.run(hybrid_prompt())
    assert entry["status"]["status_str"] == "success", execution_error(entry)
