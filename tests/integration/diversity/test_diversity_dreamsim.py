"""DreamSim through the dreamsim package itself, offline: random weights written in the package's exact cache
layout (ddistill_dev/models/dreamsim_fixtures.py) so that the package's real loading code runs, with a stand-in
torch.hub repository that has upstream DINO's top-level modules (hubconf -> vision_transformer -> `from utils import
...`),
inside the booted ComfyUI whose own `utils` package is in sys.modules. With real weights, set
DDISTILL_DREAMSIM_WEIGHTS=<folder holding the package's ensemble files> to run test_real_weights too."""

import importlib
import io
import itertools
import os
import shutil
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ddistill_dev.host import comfy_host
from ddistill_dev.models.dreamsim_fixtures import (
    HUB_FILES,
    HUB_REPO,
    near_duplicate,
    scene,
    write_dino_hub,
    write_dreamsim_cache,
)

REAL_WEIGHTS = os.environ.get("DDISTILL_DREAMSIM_WEIGHTS")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("dreamsim_cache"))
    write_dreamsim_cache(folder, "ensemble", seed=0)
    write_dreamsim_cache(folder, "dino_vitb16_patch", seed=1)
    yield folder
    shutil.rmtree(folder)  # 1 GB of weights: not left on the disk for the rest of the run


def comfy_utils_modules() -> dict:
    """ComfyUI's own `utils` package and its submodules as sys.modules holds them."""
    return {k: v for k, v in sys.modules.items() if k == "utils" or k.startswith("utils.")}


def assert_process_untouched(utils_before: dict, folder: str, hub_before=None):
    """ComfyUI's `utils` entries are the same objects as before; no hub repository module stayed behind."""
    assert comfy_utils_modules() == utils_before
    assert all(sys.modules[k] is v for k, v in utils_before.items())
    assert sys.modules["utils"].__file__ == str(comfy_host.comfyui_root() / "utils" / "__init__.py")
    assert not {"hubconf", "vision_transformer"} & set(sys.modules)
    real = os.path.realpath(folder) + os.sep
    assert not [
        k
        for k, m in list(sys.modules.items())
        if os.path.realpath(getattr(m, "__file__", None) or "/").startswith(real)
    ]
    if hub_before is not None:
        assert (torch.hub.get_dir(), torch.hub._hub_dir) == hub_before


def saved_png(image: torch.Tensor) -> Image.Image:
    """The PNG ComfyUI's SaveImage writes for one IMAGE [H, W, 3], read back."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)).save(buf, "PNG")
    buf.seek(0)
    return Image.open(buf)


def package_distances(backend, images):
    """The package's own model(preprocess(pil_a), preprocess(pil_b)) on the saved PNGs, for every pair."""
    assert backend.preprocess.__module__ == "dreamsim.model"  # the transform dreamsim() returned
    x = torch.cat([backend.preprocess(saved_png(img)) for img in images])
    net = backend._net
    device = next(net.parameters()).device
    pairs = list(itertools.combinations(range(len(x)), 2))
    a, b = (x[[p[k] for p in pairs]].to(device) for k in (0, 1))
    with torch.no_grad():
        return dict(zip(pairs, net(a, b).tolist()))  # the package's forward, one call for all pairs


def pictures_at(height: int, width: int) -> torch.Tensor:
    """Three structured pictures [3, height, width, 3] with some texture (values off the uint8 grid)."""
    g = torch.Generator().manual_seed(height * 1000 + width)
    out = []
    for i, kind in enumerate(["disc", "stripes", "ring"]):
        p = scene(kind, 96 + 32 * i).permute(2, 0, 1)[None]
        p = torch.nn.functional.interpolate(p, size=(height, width), mode="bicubic", align_corners=False)
        out.append((p[0].permute(1, 2, 0) + 0.03 * torch.randn(height, width, 3, generator=g)).clamp(0, 1))
    return torch.stack(out)


def test_stand_in_hub_reproduces_the_comfyui_utils_clash(cache):
    """The stand-in has upstream's layout, and torch.hub alone (no guard) fails inside ComfyUI as users saw."""
    repo = os.path.join(cache, HUB_REPO)
    assert sorted(f for f in os.listdir(repo) if f.endswith(".py")) == sorted(HUB_FILES)
    assert "import vision_transformer" in HUB_FILES["hubconf.py"]
    assert "from utils import trunc_normal_" in HUB_FILES["vision_transformer.py"]
    assert "def trunc_normal_" in HUB_FILES["utils.py"]
    utils_before = comfy_utils_modules()
    assert not hasattr(utils_before["utils"], "trunc_normal_")  # ComfyUI's utils package
    try:
        with pytest.raises(ImportError, match=r"cannot import name 'trunc_normal_' from 'utils'"):
            torch.hub.load(repo, "dino_vitb16", source="local", pretrained=False)
    finally:
        for name in ("vision_transformer", "hubconf"):
            sys.modules.pop(name, None)
    assert_process_untouched(utils_before, cache)


def test_meter_loads_inside_comfyui_with_upstream_hub_layout(pack, loading, cache, monkeypatch):
    """The Diversity Meter node, weights found through the nodes' loader (a fresh load, ComfyUI's placement),
    the stand-in hub code importing `utils` while ComfyUI's `utils` is in sys.modules."""
    meter = importlib.import_module(pack.__name__ + ".nodes.meter_nodes")
    monkeypatch.setattr(loading.embedding, "_CACHE", {})
    monkeypatch.setattr(loading, "register_folder", lambda: [cache])
    utils_before, hub_before = comfy_utils_modules(), (torch.hub.get_dir(), torch.hub._hub_dir)
    images = pictures_at(256, 320)
    out = meter.DiversityMeter.execute(images, backend="dreamsim_dino_vitb16_patch", chunk_size=2)
    assert_process_untouched(utils_before, cache, hub_before)
    backend = loading.get_backend("dreamsim_dino_vitb16_patch")  # the one the meter loaded (cached)
    ref = package_distances(backend, images)
    assert abs(out.result[0] - sum(ref.values()) / len(ref)) < 1e-5, (out.result[0], ref)
    assert max(ref.values()) > 1e-3
    assert_process_untouched(utils_before, cache, hub_before)


@pytest.mark.parametrize("size", [(160, 160), (256, 320), (157, 203), (1024, 1024)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ["dreamsim_ensemble", "dreamsim_dino_vitb16_patch"])
def test_embeddings_reproduce_package_distances(loading, cache, name, size):
    """Distances equal the package's model(preprocess(a), preprocess(b)) on the PNGs ComfyUI would save."""
    utils_before, hub_before = comfy_utils_modules(), (torch.hub.get_dir(), torch.hub._hub_dir)
    backend = loading.get_backend(name, weights_dir=cache)
    images = pictures_at(*size)
    d = backend.pairwise(backend.embed(images, chunk_size=2))
    # side effects undone: torch.hub's folder, the hub repository's top-level modules; ComfyUI's utils untouched
    assert_process_untouched(utils_before, cache, hub_before)
    ref = package_distances(backend, images)
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


def test_one_pass_per_image(loading, cache):
    backend = loading.get_backend("dreamsim_dino_vitb16_patch", weights_dir=cache)
    seen = []
    vit = backend._net.base_model.model.extractor_list[0].model
    handle = vit.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        backend.embed(torch.cat([pictures_at(160, 160), pictures_at(160, 160)[:2]]), chunk_size=2)  # 5 images
    finally:
        handle.remove()
    assert seen == [2, 2, 1]  # chunks of the batch: 5 image passes for 10 pairs


def test_chunks_progress_and_nonfinite(loading, cache):
    backend = loading.get_backend("dreamsim_dino_vitb16_patch", weights_dir=cache)
    images = torch.cat([pictures_at(61, 47), pictures_at(61, 47)[:2]])
    calls = []
    chunked = backend.embed(images, chunk_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert torch.allclose(chunked, backend.embed(images, chunk_size=5), atol=1e-6)
    bad = images.clone()
    bad[3, 10, 10, 1] = float("nan")
    with pytest.raises(ValueError, match=r"images: image\(s\) 3 \(0-based\) contain NaN or inf"):
        backend.embed(bad, chunk_size=2)


def test_missing_weights_list_files_and_folder(mb, tmp_path):
    backend = mb.DreamSimBackend("ensemble", device="cpu", weights_dir=str(tmp_path))
    with pytest.raises(mb.MissingWeightsError) as err:
        backend.embed(torch.rand(2, 32, 32, 3))
    msg = str(err.value)
    for rel in mb.required_files("ensemble"):
        assert os.path.join(str(tmp_path), rel) in msg
    adapter = os.path.join(str(tmp_path), "ensemble_lora", "adapter_model.safetensors")
    assert f"  {adapter} (or adapter_model.bin)" in msg.splitlines()
    assert "allow_download" in msg and mb.EFFNET_BACKEND in msg
    assert os.listdir(tmp_path) == []  # nothing written, nothing downloaded


def test_missing_adapter_accepts_either_name(mb, tmp_path):
    folder = str(tmp_path)
    for rel in mb.required_files("dino_vitb16"):
        if not rel.endswith("adapter_model.safetensors"):
            os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
            open(os.path.join(folder, rel), "w").close()
    assert mb.missing_files(folder, "dino_vitb16") == ["dino_vitb16_single_lora/adapter_model.safetensors"]
    with pytest.raises(mb.MissingWeightsError) as err:
        mb.DreamSimBackend("dino_vitb16", device="cpu", weights_dir=folder).embed(torch.rand(2, 32, 32, 3))
    path = os.path.join(folder, "dino_vitb16_single_lora", "adapter_model.safetensors")
    assert f"  {path} (or adapter_model.bin)" in str(err.value).splitlines()
    open(os.path.join(folder, "dino_vitb16_single_lora", "adapter_model.bin"), "w").close()
    assert mb.missing_files(folder, "dino_vitb16") == []


@pytest.mark.parametrize(
    "broken, expect",
    [
        (
            {"utils.py": "# an outdated copy: no trunc_normal_\n"},
            ["cannot import name 'trunc_normal_' from 'utils'", "lacks what its code imports", "delete "],
        ),
        (
            {"vision_transformer.py": "import dino_helpers_not_installed\n"},
            ["No module named 'dino_helpers_not_installed'", "neither in the repository nor installed", "install"],
        ),
    ],
    ids=["utils-without-trunc_normal_", "missing-module"],
)
def test_broken_hub_code_gives_a_clear_error(mb, cache, tmp_path, broken, expect):
    folder = str(tmp_path / "dreamsim")
    os.makedirs(folder)
    for rel in ("dino_vitb16_pretrain.pth", "dino_vitb16_patch_lora", "checkpoints"):
        os.symlink(os.path.join(cache, rel), os.path.join(folder, rel))
    repo = write_dino_hub(os.path.join(folder, HUB_REPO), broken)
    utils_before = comfy_utils_modules()
    backend = mb.DreamSimBackend("dino_vitb16_patch", device="cpu", weights_dir=folder)
    with pytest.raises(mb.HubCodeError) as err:
        backend.embed(pictures_at(40, 40)[:2])
    msg = str(err.value)
    assert msg.startswith(f"DreamSim 'dino_vitb16_patch': the torch.hub code in {repo} failed to import.")
    for text in expect + ["Cause: ", "What to do: ", "github.com/facebookresearch/dino"]:
        assert text in msg, (text, msg)
    assert err.value.__suppress_context__ and err.value.__cause__ is None  # one message, no deep traceback
    assert_process_untouched(utils_before, folder)


def test_a_clash_the_guard_does_not_know_is_named(mb, cache, tmp_path, monkeypatch):
    """Without the guard's knowledge of the hub repository's names, the load meets ComfyUI's `utils` (the bug
    users saw); the error then names the clash, both files and what to do."""
    folder = str(tmp_path / "dreamsim")
    os.makedirs(folder)
    for rel in ("dino_vitb16_pretrain.pth", "dino_vitb16_patch_lora", "checkpoints"):
        os.symlink(os.path.join(cache, rel), os.path.join(folder, rel))
    repo = write_dino_hub(os.path.join(folder, HUB_REPO))
    monkeypatch.setattr(mb, "_top_level_names", lambda repo: set())
    utils_before = comfy_utils_modules()
    with pytest.raises(mb.HubCodeError) as err:
        mb.DreamSimBackend("dino_vitb16_patch", device="cpu", weights_dir=folder).embed(pictures_at(40, 40)[:2])
    msg = str(err.value)
    comfy_utils = str(comfy_host.comfyui_root() / "utils" / "__init__.py")
    assert f"Cause: module clash: its import of 'utils' resolved to {comfy_utils}, not to the repository's own " in msg
    assert os.path.join(repo, "utils.py") in msg and "What to do: find what provides 'utils'" in msg
    assert_process_untouched(utils_before, folder)


def serve(routes: dict, urls: list):
    """A stand-in for torch.hub.download_url_to_file serving local files by URL (the only network step)."""

    def download(url, dst, *args, **kwargs):
        urls.append(url)
        shutil.copy(routes[url], dst)

    return download


def test_allow_download_uses_the_package_download(mb, loading, cache, tmp_path, monkeypatch):
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
    d = backend.pairwise(backend.embed(pictures_at(160, 160)[:2]))
    from dreamsim.config import dreamsim_weights

    assert urls == [dreamsim_weights["dino_vitb16_patch"]]
    assert mb.missing_files(str(folder), "dino_vitb16_patch") == []
    reference = loading.get_backend("dreamsim_dino_vitb16_patch", weights_dir=cache)
    assert torch.allclose(d, reference.pairwise(reference.embed(pictures_at(160, 160)[:2])), atol=1e-5)


def test_allow_download_fetches_the_hub_repository_inside_comfyui(mb, cache, tmp_path, monkeypatch):
    """First use with allow_download: torch.hub downloads the DINO repository during the load, so its `utils`
    is only known then; the load is retried with it taken out of the way and succeeds."""
    from dreamsim.config import dreamsim_weights

    folder = str(tmp_path / "dreamsim")
    checkpoint_zip, repo_zip = tmp_path / "checkpoint.zip", tmp_path / "repo.zip"
    with zipfile.ZipFile(checkpoint_zip, "w", zipfile.ZIP_STORED) as z:
        for rel in (
            "dino_vitb16_pretrain.pth",
            "dino_vitb16_patch_lora/adapter_config.json",
            "dino_vitb16_patch_lora/adapter_model.safetensors",
        ):
            z.write(os.path.join(cache, rel), rel)
    with zipfile.ZipFile(repo_zip, "w") as z:  # GitHub's zipball: one top folder named after the commit
        z.writestr("facebookresearch-dino-7c446df/", "")
        for name, text in HUB_FILES.items():
            z.writestr(f"facebookresearch-dino-7c446df/{name}", text)
    ckpt_url = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
    routes = {
        dreamsim_weights["dino_vitb16_patch"]: checkpoint_zip,
        "https://github.com/facebookresearch/dino/zipball/main": repo_zip,
        ckpt_url: os.path.join(cache, "checkpoints", "dino_vitbase16_pretrain.pth"),
    }
    urls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", serve(routes, urls))
    monkeypatch.setattr(torch.hub, "_validate_not_a_forked_repo", lambda *a, **k: None)  # a GitHub API call
    utils_before = comfy_utils_modules()
    backend = mb.DreamSimBackend("dino_vitb16_patch", device="cpu", weights_dir=folder, allow_download=True)
    d = backend.pairwise(backend.embed(pictures_at(96, 80)))
    assert float(d[0, 1]) > 1e-3
    assert urls[:2] == [dreamsim_weights["dino_vitb16_patch"], "https://github.com/facebookresearch/dino/zipball/main"]
    assert ckpt_url in urls
    assert mb.missing_files(folder, "dino_vitb16_patch") == []
    assert_process_untouched(utils_before, folder)


@pytest.mark.skipif(not REAL_WEIGHTS, reason="set DDISTILL_DREAMSIM_WEIGHTS to a folder with real DreamSim weights")
def test_real_weights(loading):
    backend = loading.get_backend("dreamsim_ensemble", weights_dir=REAL_WEIGHTS)
    originals = torch.stack([scene(k, 160) for k in ["disc", "stripes", "checker", "ring", "diagonal"]])
    dupes = torch.stack([near_duplicate(p, seed=i) for i, p in enumerate(originals)])
    d = backend.pairwise(backend.embed(torch.cat([originals, originals[:1], dupes])))
    assert float(d[0, 5]) < 1e-4  # identical
    near = torch.stack([d[i, 6 + i] for i in range(5)])
    unrelated = torch.stack([d[i, j] for i, j in itertools.combinations(range(5), 2)])
    assert float(near.max()) < float(unrelated.min())
    ref = package_distances(backend, originals)
    assert all(abs(float(d[i, j]) - v) < 1e-5 for (i, j), v in ref.items())
