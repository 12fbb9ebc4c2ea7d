"""DreamSim through the dreamsim package itself, offline: random weights written in the package's exact cache
layout (ddistill_dev/dreamsim_fixtures.py) so that the package's real loading code runs. With real weights, set
DDISTILL_DREAMSIM_WEIGHTS=<folder holding the package's ensemble files> to run test_real_weights too."""

import importlib
import itertools
import os
import shutil
import sys
import zipfile

import pytest
import torch

from ddistill_dev.dreamsim_fixtures import near_duplicate, scene, write_dreamsim_cache

REAL_WEIGHTS = os.environ.get("DDISTILL_DREAMSIM_WEIGHTS")


@pytest.fixture(scope="module")
def mb(pack):
    """The core's embedding module as the pack loads it."""
    return importlib.import_module(pack.__name__ + ".ddistill.embedding")


@pytest.fixture(scope="module")
def loading(pack):
    """The nodes' side: networks placed by ComfyUI's model management."""
    return importlib.import_module(pack.__name__ + ".nodes.metric_loading")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("dreamsim_cache"))
    write_dreamsim_cache(folder, "ensemble", seed=0)
    write_dreamsim_cache(folder, "dino_vitb16_patch", seed=1)
    return folder


@pytest.fixture(scope="module")
def pictures():
    pics = [scene(k, 96 + 32 * i) for i, k in enumerate(["disc", "stripes", "ring"])]
    return [
        torch.nn.functional.interpolate(p.permute(2, 0, 1)[None], size=(160, 160), mode="bilinear")[0].permute(1, 2, 0)
        for p in pics
    ]


def package_distances(mb, backend, images):
    """The package's own model(a, b) on the same (resized) inputs, for every pair."""
    x = mb.resize_for_net(mb.check_images(images))
    net = backend._net
    device = next(net.parameters()).device
    pairs = list(itertools.combinations(range(len(x)), 2))
    a, b = (x[[p[k] for p in pairs]].to(device) for k in (0, 1))
    with torch.no_grad():
        return dict(zip(pairs, net(a, b).tolist()))  # the package's forward, one call for all pairs


@pytest.mark.parametrize("name", ["dreamsim_ensemble", "dreamsim_dino_vitb16_patch"])
def test_embeddings_reproduce_package_distances(mb, loading, cache, pictures, name):
    hub_before, private_before, comfy_utils = torch.hub.get_dir(), torch.hub._hub_dir, sys.modules["utils"]
    backend = loading.get_backend(name, weights_dir=cache)
    images = torch.stack(pictures)
    d = backend.pairwise(backend.embed(images, chunk_size=2))
    # side effects undone: torch.hub's folder, the hub repository's top-level modules; ComfyUI's utils untouched
    assert (torch.hub.get_dir(), torch.hub._hub_dir) == (hub_before, private_before)
    assert "vision_transformer" not in sys.modules and "vit_utils" not in sys.modules
    assert sys.modules["utils"] is comfy_utils
    ref = package_distances(mb, backend, images)
    assert len(ref) == 3
    for (i, j), v in ref.items():
        assert abs(float(d[i, j]) - v) < 1e-5, (i, j, float(d[i, j]), v)
    assert max(ref.values()) > 1e-3  # not a degenerate network


def test_lora_adapter_is_loaded(loading, cache):
    from safetensors.torch import load_file

    backend = loading.get_backend("dreamsim_ensemble", weights_dir=cache)
    saved = load_file(os.path.join(cache, "ensemble_lora", "adapter_model.safetensors"))
    key = next(k for k in saved if "lora_B" in k)
    params = dict(backend._net.named_parameters())
    match = [v for k, v in params.items() if k.replace(".default", "").endswith(key.split("base_model.model.")[-1])]
    assert match and torch.equal(match[0].cpu(), saved[key]) and saved[key].abs().sum() > 0


def test_one_pass_per_image(loading, cache, pictures):
    backend = loading.get_backend("dreamsim_dino_vitb16_patch", weights_dir=cache)
    seen = []
    vit = backend._net.base_model.model.extractor_list[0].model
    handle = vit.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        backend.embed(torch.stack(pictures + pictures[:2]), chunk_size=2)  # 5 images
    finally:
        handle.remove()
    assert seen == [2, 2, 1]  # chunks of the batch: 5 image passes for 10 pairs


def test_missing_weights_list_files_and_folder(mb, tmp_path):
    backend = mb.DreamSimBackend("ensemble", device="cpu", weights_dir=str(tmp_path))
    with pytest.raises(mb.MissingWeightsError) as err:
        backend.embed(torch.rand(2, 32, 32, 3))
    msg = str(err.value)
    for rel in mb.required_files("ensemble"):
        assert os.path.join(str(tmp_path), rel) in msg
    assert "allow_download" in msg and mb.EFFNET_BACKEND in msg
    assert os.listdir(tmp_path) == []  # nothing written, nothing downloaded


def test_allow_download_uses_the_package_download(mb, loading, cache, tmp_path, monkeypatch, pictures):
    """No network here: the package's own download function is replaced by one that serves a zip of the
    checkpoint files (the only part that cannot run offline); unzipping and loading are the package's."""
    folder = tmp_path / "dreamsim"
    for rel in ("facebookresearch_dino_main", "checkpoints"):  # torch.hub's files are already there
        shutil.copytree(os.path.join(cache, rel), folder / rel)
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for rel in (
            "dino_vitb16_pretrain.pth",
            "dino_vitb16_patch_lora/adapter_config.json",
            "dino_vitb16_patch_lora/adapter_model.safetensors",
        ):
            z.write(os.path.join(cache, rel), rel)
    urls = []

    def fake_download(url, dst, *args, **kwargs):
        urls.append(url)
        shutil.copy(archive, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    backend = mb.DreamSimBackend("dino_vitb16_patch", device="cpu", weights_dir=str(folder), allow_download=True)
    d = backend.pairwise(backend.embed(torch.stack(pictures[:2])))
    from dreamsim.config import dreamsim_weights

    assert urls == [dreamsim_weights["dino_vitb16_patch"]]
    assert mb.missing_files(str(folder), "dino_vitb16_patch") == []
    reference = loading.get_backend("dreamsim_dino_vitb16_patch", weights_dir=cache)
    assert torch.allclose(d, reference.pairwise(reference.embed(torch.stack(pictures[:2]))), atol=1e-5)


@pytest.mark.skipif(not REAL_WEIGHTS, reason="set DDISTILL_DREAMSIM_WEIGHTS to a folder with real DreamSim weights")
def test_real_weights(mb, loading, pictures):
    backend = loading.get_backend("dreamsim_ensemble", weights_dir=REAL_WEIGHTS)
    originals = torch.stack([scene(k, 160) for k in ["disc", "stripes", "checker", "ring", "diagonal"]])
    dupes = torch.stack([near_duplicate(p, seed=i) for i, p in enumerate(originals)])
    d = backend.pairwise(backend.embed(torch.cat([originals, originals[:1], dupes])))
    assert float(d[0, 5]) < 1e-4  # identical
    near = torch.stack([d[i, 6 + i] for i in range(5)])
    unrelated = torch.stack([d[i, j] for i, j in itertools.combinations(range(5), 2)])
    assert float(near.max()) < float(unrelated.min())
    ref = package_distances(mb, backend, originals)
    assert all(abs(float(d[i, j]) - v) < 1e-5 for (i, j), v in ref.items())
