"""The hybrid on the flow and video families of 2025-26 (tiny random models of ComfyUI's own classes): equality
with the stock sample_custom chain, the schedule from the distilled model's own sampling, per-family input checks,
Skip First Step's start on flow models. Krea 2 needs ComfyUI 0.33.0 or later (skipped on older hosts)."""

import importlib
import logging

import comfy.sample
import comfy.samplers
import pytest
import torch

from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.models import tiny_models as tm

KINDS = ["flux_dev", "flux_schnell", "sd3", "zimage", "qwen", "wan21", "krea2"]
ALL_KINDS = [
    pytest.param(
        k,
        marks=pytest.mark.skipif(
            not tm.has_family(k), reason=f"ComfyUI {comfyui_version()} has no {tm.FAMILIES[k][0]} model class"
        ),
    )
    for k in KINDS
]


@pytest.fixture(scope="module")
def models():
    return {k: (tm.make_family_model(k, 1), tm.make_family_model(k, 2)) for k in KINDS if tm.has_family(k)}


def hybrid(hn, base, distilled, kind, latent, seed=5, **kw):
    pos, neg = tm.family_conditioning(kind, seed=1), tm.family_conditioning(kind, seed=2)
    first = hn.BaseFirstStepSampler.execute(
        base, pos, neg, latent, seed, 1.0, 1, 4, "simple", "euler", None, "", kw.get("distilled_model")
    )
    out, traj = hn.DistilledContinueSampler.execute(distilled, pos, neg, first.result[0], 1.0).result
    return first.result[0], out, traj


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_tiny_family_models_are_all_seeded(kind):
    """Everything a checkpoint would hold is random from the seed (SD3's pos_embed buffer, made with torch.empty
    by ComfyUI, once gave NaN when left as it was): two models of one seed are equal tensor for tensor."""
    a, b = (tm.make_family_model(kind, 3).model.diffusion_model.state_dict() for _ in range(2))
    assert a.keys() == b.keys()
    floats = [k for k in a if a[k].is_floating_point() and a[k].numel()]
    assert all(torch.equal(a[k], b[k]) and bool(torch.isfinite(a[k]).all()) for k in floats)
    assert not [k for k in floats if not a[k].any()]  # none left as zeroed (fresh) memory


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_hybrid_equals_two_stock_segments(hn, sampling, models, kind):
    base, distilled = models[kind]
    latent = tm.family_latent(kind, batch=2)
    first, out, traj = hybrid(hn, base, distilled, kind, latent, distilled_model=distilled)
    pos, neg = tm.family_conditioning(kind, seed=1), tm.family_conditioning(kind, seed=2)
    sigmas = sampling.model_schedule(distilled, 4, "simple")
    euler = comfy.samplers.sampler_object("euler")
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, 5)
    mid = comfy.sample.sample_custom(base, noise, 1.0, euler, sigmas[:2], pos, neg, samples, seed=5)
    ref = comfy.sample.sample_custom(
        distilled,
        torch.zeros_like(mid),
        1.0,
        euler,
        sigmas[1:],
        pos,
        neg,
        mid,
        seed=first["diversity_distillation_handover"].noise_seed,
    )
    assert torch.equal(out["samples"], ref), kind
    assert out["samples"].shape == samples.shape and len(traj) == 4
    assert [f.model for f in traj.frames] == ["base", "distilled", "distilled", "distilled"]
    # flow steps are labelled by sigma (the timestep is sigma or 1000 sigma there and adds nothing) and by the
    # amplification (sigma / (1 - sigma))^2 the handover rule reads, infinite at the pure-noise start
    want = [f"sigma {s:.3f} · A {'inf' if s == 1 else f'{(s / (1 - s)) ** 2:.3g}'}" for s in sigmas[:-1].tolist()]
    assert [f.level for f in traj.frames] == want


def test_schedule_is_the_distilled_models_own(hn, models, caplog):
    """FLUX.1-dev base -> schnell: with schnell connected the schedule is schnell's (shift 1.0), not dev's."""
    dev, schnell = models["flux_dev"][0], models["flux_schnell"][1]
    latent = tm.family_latent("flux_dev")
    pos = tm.family_conditioning("flux_dev")
    first = hn.BaseFirstStepSampler.execute(dev, pos, pos, latent, 0, 1.0, 1, 4, "simple", "euler", None, "", schnell)
    handover = first.result[0]["diversity_distillation_handover"]
    assert handover.sigmas.tolist() == pytest.approx([0.75, 0.5, 0.25, 0.0], abs=1e-4)
    assert handover.schedule_from == "distilled_model"
    unconnected = hn.BaseFirstStepSampler.execute(dev, pos, pos, latent, 0, 1.0, 1, 4, "simple", "euler")
    dev_tail = unconnected.result[0]["diversity_distillation_handover"].sigmas
    assert dev_tail[0] > 0.76  # dev's shift-1.15 schedule: the one the README warns about
    with caplog.at_level(logging.WARNING):
        hn.DistilledContinueSampler.execute(schnell, pos, pos, unconnected.result[0], 1.0)
    assert "the schedule follows base_model's" in caplog.text and "distilled_model input" in caplog.text
    assert "shift 1.15" in caplog.text and "shift 1" in caplog.text


def test_shift_patch_on_the_distilled_side_is_followed(hn, models):
    """A ModelSamplingSD3 shift patch on the distilled model only (as users add for Lightning LoRAs)."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    base, distilled = models["sd3"]
    patched = ModelSamplingSD3().patch(distilled, 5.0)[0]
    latent, pos = tm.family_latent("sd3"), tm.family_conditioning("sd3")
    first = hn.BaseFirstStepSampler.execute(base, pos, pos, latent, 0, 1.0, 1, 4, "simple", "euler", None, "", patched)
    ms = patched.get_model_object("model_sampling")
    expected = comfy.samplers.calculate_sigmas(ms, "simple", 4).float()
    assert torch.allclose(first.result[0]["diversity_distillation_handover"].sigmas, expected[1:])


@pytest.mark.parametrize("kind,width", [("flux_dev", 32), ("sd3", 24), ("zimage", 24), ("qwen", 24), ("wan21", 24)])
def test_wrong_conditioning_width_is_a_named_error(hn, models, kind, width):
    base = models[kind][0]
    bad = tm.family_conditioning(kind, width=100)
    with pytest.raises(
        ValueError,
        match=rf"positive: the conditioning has width 100 but base_model expects {width} \(\w+\); "
        r"encode the prompt with the text encoder",
    ):
        hn.BaseFirstStepSampler.execute(base, bad, bad, tm.family_latent(kind), 0, 1.0, 1, 4, "simple", "euler")


def test_latent_dimensionality_is_checked(hn, models):
    flux, wan = models["flux_dev"][0], models["wan21"][0]
    video = {"samples": torch.randn(1, 16, 3, 16, 16)}
    with pytest.raises(
        ValueError,
        match=r"latent_image: the latent has 5 dimensions but base_model is Flux .*"
        r"\[batch, channels, height, width\]",
    ):
        hn.BaseFirstStepSampler.execute(
            flux, *[tm.family_conditioning("flux_dev")] * 2, video, 0, 1.0, 1, 4, "simple", "euler"
        )
    # an empty 4-D latent is unsqueezed for a video model, as ComfyUI's samplers do
    pos = tm.family_conditioning("wan21")
    out = hn.BaseFirstStepSampler.execute(
        wan, pos, pos, {"samples": torch.zeros(1, 16, 16, 16)}, 0, 1.0, 1, 4, "simple", "euler"
    )
    assert out.result[0]["samples"].shape == (1, 16, 1, 16, 16)


def test_pair_of_different_latent_dimensions_is_refused(hn, models):
    flux, wan = models["flux_dev"][0], models["wan21"][1]
    pos = tm.family_conditioning("flux_dev")
    first = hn.BaseFirstStepSampler.execute(
        flux, pos, pos, tm.family_latent("flux_dev"), 0, 1.0, 1, 4, "simple", "euler"
    )
    with pytest.raises(ValueError, match="their latents have 2 and 3 spatial dimensions"):
        hn.DistilledContinueSampler.execute(wan, *[tm.family_conditioning("wan21")] * 2, first.result[0], 1.0)


def test_skip_first_on_flow_starts_from_the_marginal_noise_level(hn, models):
    """x at sigma_1 is pure noise with the variance (1 - s)^2 + s^2 that unit-variance data have there (README)."""
    schnell = models["flux_schnell"][1]
    pos = tm.family_conditioning("flux_schnell")
    latent = tm.family_latent("flux_schnell", batch=4)
    seen = []
    schnell_probe = schnell.clone()
    schnell_probe.set_model_unet_function_wrapper(
        lambda apply, args: seen.append(args["input"].clone()) or apply(args["input"], args["timestep"], **args["c"])
    )
    hn.SkipFirstStep.execute(schnell_probe, pos, pos, latent, 0, 1.0, 4, "simple", "euler")
    s1 = 0.75
    expected = ((1 - s1) ** 2 + s1**2) ** 0.5
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    assert torch.allclose(seen[0], noise * expected, atol=1e-5)


def test_wan22_two_experts_chain_equals_three_stock_segments(hn, sampling, models):
    """Base high-noise model for step 1 -> distilled high-noise expert down to the boundary sigma -> distilled
    low-noise expert: three sample_custom segments, each continuation with its own noise stream."""
    from ddistill.schedules import derive_seed

    base, high = models["wan21"]
    low = tm.make_family_model("wan21", 3)
    latent, pos = tm.family_latent("wan21", batch=2), tm.family_conditioning("wan21")
    first = hn.BaseFirstStepSampler.execute(
        base, pos, pos, latent, 9, 1.0, 1, 6, "simple", "euler_ancestral", None, "", high
    )
    mid, _ = hn.DistilledContinueSampler.execute(high, pos, pos, first.result[0], 1.0, "high", 0.875).result
    out, traj = hn.DistilledContinueSampler.execute(low, pos, pos, mid, 1.0, "low").result
    sigmas = sampling.model_schedule(high, 6, "simple")
    k = int((sigmas <= 0.875).nonzero()[0])
    assert 1 < k < 6 and mid["diversity_distillation_handover"].sigmas[0] == sigmas[k]
    anc = comfy.samplers.sampler_object("euler_ancestral")
    x = comfy.sample.prepare_noise(latent["samples"], 9)
    x = comfy.sample.sample_custom(base, x, 1.0, anc, sigmas[:2], pos, pos, latent["samples"], seed=9)
    s1 = derive_seed(9, 1)
    x = comfy.sample.sample_custom(high, torch.zeros_like(x), 1.0, anc, sigmas[1 : k + 1], pos, pos, x, seed=s1)
    x = comfy.sample.sample_custom(low, torch.zeros_like(x), 1.0, anc, sigmas[k:], pos, pos, x, seed=derive_seed(s1, 1))
    assert torch.equal(out["samples"], x)
    assert [f.model for f in traj.frames] == ["base"] + ["high"] * (k - 1) + ["low"] * (6 - k)
    assert [f.step for f in traj.frames] == list(range(6))
    assert "diversity_distillation_handover" not in out


def test_end_at_sigma_above_the_schedule_is_a_named_error(hn, models):
    base, high = models["wan21"]
    latent, pos = tm.family_latent("wan21"), tm.family_conditioning("wan21")
    first = hn.BaseFirstStepSampler.execute(base, pos, pos, latent, 0, 1.0, 1, 4, "simple", "euler", None, "", high)
    with pytest.raises(ValueError, match="end_at_sigma: 0.99 is at or above the first sigma of the schedule left"):
        hn.DistilledContinueSampler.execute(high, pos, pos, first.result[0], 1.0, "", 0.99)


def tiny_wan_vae():
    """ComfyUI's own VAE wrapper around a tiny random Wan 2.1 video VAE (detected from its state dict)."""
    import comfy.ldm.wan.vae
    import comfy.sd

    torch.manual_seed(0)
    net = comfy.ldm.wan.vae.WanVAE(
        dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    )
    with torch.no_grad():  # small random weights keep the untrained decoder's output finite
        for param in net.parameters():
            param.copy_(
                torch.randn_like(param) * 0.05 + (1.0 if param.ndim == 4 and param.shape[1:] == (1, 1, 1) else 0)
            )
    return comfy.sd.VAE(sd=net.state_dict())


@pytest.mark.parametrize("kind", ["wan21", "qwen"])
def test_x0_preview_on_video_and_wan_vae_latents(pack, hn, models, kind):
    """Wan video [B, 16, T, H, W] and Qwen-Image [B, 16, 1, H, W] latents: each grid cell shows a clip as a strip of
    its first, middle and last frames (a single frame for Qwen-Image)."""
    preview = importlib.import_module(pack.__name__ + ".nodes.preview_nodes")
    vae = tiny_wan_vae()
    base, distilled = models[kind]
    _, out, traj = hybrid(hn, base, distilled, kind, tm.family_latent(kind, batch=2), distilled_model=distilled)
    grid, frames, curve, csv = preview.X0Preview.execute(
        vae, 16, 64, preview.PIXEL_METRIC, trajectory=traj, latent=out
    ).result
    decoded = vae.decode(out["samples"])
    per_clip = decoded.shape[1]
    width = decoded.shape[3] * min(per_clip, 3)
    assert frames.shape == (4 * 2, decoded.shape[2], width, 3)
    assert grid.ndim == 4 and curve.ndim == 4 and len(csv.splitlines()) == 5
    assert (per_clip > 1) == (kind == "wan21")


def test_full_size_zimage_config_is_what_comfyui_detects(pack):
    """The GPU benchmark's Z-Image DiT (ddistill_dev/models/random_checkpoints.py) is the released architecture:
    ComfyUI's own detection reads the same config back from its state dict (built on the meta device), 6.15 B
    parameters."""
    import comfy.model_detection
    import comfy.supported_models as sm

    from ddistill_dev.models.random_checkpoints import ZIMAGE_DIT

    model = sm.ZImage(dict(ZIMAGE_DIT)).get_model({}, device="meta")
    sd = {"model.diffusion_model." + k: v for k, v in model.diffusion_model.state_dict().items()}
    detected = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(detected).__name__ == "ZImage"
    assert {k: detected.unet_config.get(k) for k in ZIMAGE_DIT} == ZIMAGE_DIT
    assert sum(v.numel() for v in sd.values()) == pytest.approx(6.15e9, rel=0.01)


@pytest.mark.parametrize("kind", ["wan21", "qwen"])
def test_live_filmstrip_on_video_latents(pack, hn, models, kind, monkeypatch):
    """The live filmstrip on 5-D latents: each step sends ComfyUI's Latent2RGB preview of the first frame of the
    first clip (a JPEG of the latent's height x width), labelled by sigma as flow steps are. The server is the one
    part stood in for: the frontend's socket (send_sync), as a PromptServer has it while a prompt runs."""
    import base64
    import io
    from types import SimpleNamespace

    from PIL import Image

    recorder = importlib.import_module(pack.__name__ + ".nodes.recorder")
    sent = []
    server = SimpleNamespace(client_id="c1", send_sync=lambda event, data, sid: sent.append((event, data, sid)))
    monkeypatch.setattr(recorder, "_prompt_server", lambda: server)
    monkeypatch.setattr(recorder, "get_executing_context", lambda: SimpleNamespace(node_id="7", prompt_id="p1"))
    base, distilled = models[kind]
    latent = tm.family_latent(kind, batch=2)
    _, out, traj = hybrid(hn, base, distilled, kind, latent, distilled_model=distilled)
    assert [e for e, _, _ in sent] == ["ddistill.x0_frame"] * 4 and {s for *_, s in sent} == {"c1"}
    frames = [d for _, d, _ in sent]
    assert [f["step"] for f in frames] == [0, 1, 2, 3]
    assert [f["model"] for f in frames] == ["base", "distilled", "distilled", "distilled"]
    assert [f["level"] for f in frames] == [f.level for f in traj.frames]
    assert all(f["level"].startswith("sigma 0.") or f["level"] == "sigma 1.000 · A inf" for f in frames)
    h, w = latent["samples"].shape[-2:]
    for f in frames:
        assert f["image"].startswith("data:image/jpeg;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(f["image"].split(",", 1)[1])))
        assert img.size == (w, h)  # one frame (the first of the first clip), at the latent's resolution
