"""The pack loads in the real ComfyUI server and a hybrid graph runs through /prompt."""

import pytest

from ddistill_dev.comfy_server import ComfyServer, execution_error

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


def hybrid_prompt(batch=2, seed=3):
    return {
        "1": {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 1}},
        "2": {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 2}},
        "3": {"class_type": "DDTest_TinyConditioning", "inputs": {"kind": "sdxl", "batch": 1, "seed": 0}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": batch}},
        "5": {
            "class_type": "DDistill_BaseFirstStepSampler",
            "inputs": {
                "base_model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "base_cfg": 1.0,
                "base_steps": 1,
                "steps": 4,
                "scheduler": "lcm",
                "sampler_name": "lcm",
            },
        },
        "6": {
            "class_type": "DDistill_DistilledContinueSampler",
            "inputs": {
                "distilled_model": ["2", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent": ["5", 0],
                "cfg": 1.0,
            },
        },
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "hybrid"}},
    }


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
