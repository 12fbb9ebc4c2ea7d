"""A full-size SD1.x checkpoint (random weights, written by comfy.sd.save_checkpoint) loaded by ComfyUI's own
CheckpointLoaderSimple and sampled at 64x64 on the CPU with the pack's nodes, through the real server."""

import numpy as np
import pytest
from PIL import Image

from ddistill_dev.gpu import runner_graphs as rg
from ddistill_dev.host.comfy_server import ComfyServer, execution_error
from ddistill_dev.models import random_checkpoints

CKPT = "sd15_random_weights.safetensors"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_ckpt")
    ckpt = base / "models" / "checkpoints" / CKPT
    random_checkpoints.write(ckpt, "sd15", seed=0)
    with ComfyServer(base, with_fixture_pack=False) as s:
        yield s
    ckpt.unlink()  # 2.2 GB: not left on the disk for the rest of the run


def graph(seed):
    g = {
        "1": rg.node("CheckpointLoaderSimple", {"ckpt_name": CKPT}),
        "2": rg.node("CLIPTextEncode", {"clip": ["1", 1], "text": "image of a car"}),
        "3": rg.node("CLIPTextEncode", {"clip": ["1", 1], "text": ""}),
        "4": rg.empty_latent(64, 2),
    }
    g.update(rg.hybrid(("5", "6"), ["1", 0], ["1", 0], ["2", 0], ["3", 0], ["4", 0], seed))
    g["7"] = rg.vae_decode(["6", 0], ["1", 2])
    g["8"] = rg.save_image(["7", 0], f"hybrid_{seed}")
    return g


def images(server, entry):
    out = []
    for im in entry["outputs"]["8"]["images"]:
        out.append(np.asarray(Image.open(server.base / "output" / im["subfolder"] / im["filename"])))
    return out


def test_full_size_checkpoint_samples_with_the_pack(server):
    entry = server.run(graph(5), timeout=600)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    first = images(server, entry)
    assert len(first) == 2 and first[0].shape == (64, 64, 3)
    assert not np.array_equal(first[0], first[1])  # two seeds of one batch differ
    other = images(server, server.run(graph(6), timeout=600))
    assert not np.array_equal(first[0], other[0])
    again = images(server, server.run(graph(5), timeout=600))  # re-executed (graph 6 replaced the cache)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
