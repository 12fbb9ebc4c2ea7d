"""The handover by noise level, in process on tiny random models of ComfyUI's own classes: equality with the stock
two-segment chain split at the chosen sigma, the handover the LATENT carries, the log line, the amplification
measured from ComfyUI's model_sampling against the core's closed form, and Skip First Step's noise-level start."""

import logging

import comfy.sample
import comfy.samplers
import pytest
import torch

from ddistill import noise_level as nl
from ddistill.protocol import HANDOVER_KEY
from ddistill.schedules import derive_seed, unit_noise_scale
from ddistill_dev.models import tiny_models as tm


def shifted(model, shift):
    """The model with ComfyUI's own ModelSamplingAuraFlow shift patch (as the family presets apply it)."""
    from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow

    out = ModelSamplingAuraFlow().patch_aura(model, shift)
    return out[0] if isinstance(out, tuple) else out.result[0]


@pytest.fixture(scope="module")
def zimage():
    return shifted(tm.make_family_model("zimage", 1), 3.0), shifted(tm.make_family_model("zimage", 2), 3.0)


def first_input_probe(model, seen):
    probe = model.clone()
    probe.set_model_unet_function_wrapper(
        lambda apply, args: seen.append(args["input"].clone()) or apply(args["input"], args["timestep"], **args["c"])
    )
    return probe


def test_measured_amplification_equals_the_closed_form(sampling, zimage):
    """A from ComfyUI's own noise_scaling (flow: CONST; sigma space: EPS) is the core's formula."""
    sigmas = sampling.model_schedule(zimage[1], 8, "simple")
    measured = sampling.schedule_amplification(zimage[1], sigmas)
    closed = nl.amplification(sigmas, "CONST")
    assert torch.isinf(measured[0]) and torch.allclose(measured[1:], closed[1:], rtol=1e-5)
    sdxl = tm.make_model("sdxl", 0)
    lcm = sampling.model_schedule(sdxl, 4, "lcm")
    assert torch.allclose(sampling.schedule_amplification(sdxl, lcm), lcm.double().square().float(), rtol=1e-5)


@pytest.mark.parametrize("by", ["amplification", "sigma"])
def test_hybrid_by_noise_level_equals_the_stock_chain_split_there(hn, sampling, zimage, caplog, by):
    """Z-Image-Turbo's 8-step shift-3 schedule: the rule hands over after k = 4 steps (sigma 0.75, A 9); the hybrid
    equals sample_custom(base, sigmas[:5]) then sample_custom(distilled, sigmas[4:]) bit for bit."""
    base, distilled = zimage
    pos, neg = tm.family_conditioning("zimage", seed=1), tm.family_conditioning("zimage", seed=2)
    latent = tm.family_latent("zimage", batch=2)
    kw = {"handover_sigma": 0.8} if by == "sigma" else {}
    with caplog.at_level(logging.INFO):
        first = hn.BaseFirstStepSampler.execute(
            base, pos, neg, latent, 5, 1.0, 0, 8, "simple", "euler", None, "", distilled, **kw
        ).result[0]
    out, traj = hn.DistilledContinueSampler.execute(distilled, pos, neg, first, 1.0).result
    sigmas = sampling.model_schedule(distilled, 8, "simple")
    point = first[HANDOVER_KEY].point
    assert (point.k, round(point.sigma, 4), round(point.amplification, 3)) == (4, 0.75, 9.0)
    assert point.rule == (nl.RULE_SIGMA if by == "sigma" else nl.RULE_AMPLIFICATION)
    assert first[HANDOVER_KEY].step_offset == 4 and torch.equal(first[HANDOVER_KEY].sigmas, sigmas[4:])
    assert "hands over to the distilled model at k = 4 of 8 steps, sigma 0.75, A 9" in caplog.text
    euler = comfy.samplers.sampler_object("euler")
    samples = latent["samples"]
    mid = comfy.sample.sample_custom(
        base, comfy.sample.prepare_noise(samples, 5), 1.0, euler, sigmas[:5], pos, neg, samples, seed=5
    )
    ref = comfy.sample.sample_custom(
        distilled, torch.zeros_like(mid), 1.0, euler, sigmas[4:], pos, neg, mid, seed=derive_seed(5, 1)
    )
    assert torch.equal(out["samples"], ref)
    assert [f.model for f in traj.frames] == ["base"] * 4 + ["distilled"] * 4
    assert traj.frames[4].level == "sigma 0.750 · A 9"  # the distilled model's first step: where it took over


def test_base_steps_still_counts_steps(hn, zimage):
    """Workflows saved before the rule hold base_steps >= 1: that many steps, the amplification not consulted."""
    base, distilled = zimage
    pos = tm.family_conditioning("zimage", seed=1)
    first = hn.BaseFirstStepSampler.execute(
        base, pos, pos, tm.family_latent("zimage"), 5, 1.0, 1, 8, "simple", "euler", None, "", distilled
    ).result[0]
    point = first[HANDOVER_KEY].point
    assert (point.k, point.rule) == (1, nl.RULE_STEPS) and point.amplification > 400


@pytest.mark.parametrize("kind,steps,scheduler,k", [("zimage", 8, "simple", 4), ("sdxl", 4, "lcm", 1)])
def test_skip_to_the_noise_level_starts_from_pure_noise_there(hn, sampling, zimage, kind, steps, scheduler, k):
    """skip_steps 0: the distilled model alone from sigma_k of the rule, its first input pure noise with the variance
    unit-variance data have there (flow: (1 - s)^2 + s^2; sigma space: 1 + s^2); skip_steps 1 is Table 4's."""
    if kind == "zimage":
        model, pos, latent = zimage[1], tm.family_conditioning("zimage"), tm.family_latent("zimage", batch=2)
    else:
        model, pos, latent = tm.make_model("sdxl", 2), tm.make_conditioning("sdxl"), tm.empty_latent(batch=2)
    sigmas = sampling.model_schedule(model, steps, scheduler)
    noise = comfy.sample.prepare_noise(latent["samples"], 0)
    flow = kind == "zimage"
    for skip, at in ((0, k), (1, 1)):
        seen = []
        out, traj = hn.SkipFirstStep.execute(
            first_input_probe(model, seen), pos, pos, latent, 0, 1.0, steps, scheduler, "euler", None, "", skip
        ).result
        scale = unit_noise_scale(float(sigmas[at]), variance_preserving=not flow)
        assert torch.allclose(seen[0], noise * scale, atol=1e-5), (skip, at)
        assert len(seen) == steps - at and [f.step for f in traj.frames] == list(range(at, steps))


def test_skip_to_a_sigma_and_its_errors(hn, zimage):
    model, pos = zimage[1], tm.family_conditioning("zimage")
    latent = tm.family_latent("zimage")
    _, traj = hn.SkipFirstStep.execute(
        model, pos, pos, latent, 0, 1.0, 8, "simple", "euler", None, "", 0, 18.2, 0.9
    ).result
    assert traj.frames[0].step == 2 and traj.frames[0].level == "sigma 0.900 · A 81"
    with pytest.raises(ValueError, match=r"handover_sigma: 1.2 is above the schedule's start"):
        hn.SkipFirstStep.execute(model, pos, pos, latent, 0, 1.0, 8, "simple", "euler", None, "", 0, 18.2, 1.2)
    with pytest.raises(ValueError, match=r"skip_steps: 8 leaves no step for the distilled model"):
        hn.SkipFirstStep.execute(model, pos, pos, latent, 0, 1.0, 8, "simple", "euler", None, "", 8)
