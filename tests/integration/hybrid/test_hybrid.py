"""The hybrid on real ComfyUI model classes: bit-exact against a reference built from ComfyUI's own functions."""

import comfy.sample
import comfy.samplers
import pytest
import torch

from ddistill_dev.models import tiny_models as tm


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        hybrid_nodes="nodes.hybrid_nodes",
        schedules="ddistill.schedules",
        sampling="nodes.sampling",
        pairing="ddistill.pairing",
    )


@pytest.fixture(scope="module")
def sdxl_pair():
    return tm.make_model("sdxl", 1), tm.make_model("sdxl", 2)


def run_hybrid(
    mods,
    base,
    distilled,
    latent,
    seed=7,
    k=1,
    steps=4,
    scheduler="lcm",
    sampler="lcm",
    cfg=1.0,
    kind="sdxl",
    sigmas=None,
):
    pos, neg = tm.make_conditioning(kind, seed=1), tm.make_conditioning(kind, seed=2)
    hn = mods["hybrid_nodes"]
    first = hn.BaseFirstStepSampler.execute(base, pos, neg, latent, seed, cfg, k, steps, scheduler, sampler, sigmas)
    second = hn.DistilledContinueSampler.execute(distilled, pos, neg, first.result[0], 1.0)
    return first.result, second.result


def reference(
    mods,
    base,
    distilled,
    latent,
    seed=7,
    k=1,
    steps=4,
    scheduler="lcm",
    sampler="lcm",
    cfg=1.0,
    kind="sdxl",
    continue_seed=None,
):
    """Stock ComfyUI only: sample_custom on sigmas[0:k+1] (base), then on sigmas[k:] (distilled)."""
    pos, neg = tm.make_conditioning(kind, seed=1), tm.make_conditioning(kind, seed=2)
    sigmas = mods["sampling"].model_schedule(distilled, steps, scheduler)
    x = latent["samples"]
    noise = comfy.sample.prepare_noise(x, seed)
    mid = comfy.sample.sample_custom(
        base, noise, cfg, comfy.samplers.sampler_object(sampler), sigmas[: k + 1], pos, neg, x, seed=seed
    )
    cseed = mods["schedules"].derive_seed(seed, 1) if continue_seed is None else continue_seed
    return comfy.sample.sample_custom(
        distilled,
        torch.zeros_like(mid),
        1.0,
        comfy.samplers.sampler_object(sampler),
        sigmas[k:],
        pos,
        neg,
        mid,
        seed=cseed,
    )


@pytest.mark.parametrize(
    "sampler,scheduler,k",
    [
        ("lcm", "lcm", 1),
        ("euler_ancestral", "trailing", 1),
        ("euler", "trailing", 1),
        ("lcm", "lcm", 2),
        ("lcm", "sgm_uniform", 3),
    ],
)
def test_hybrid_equals_stock_reference_bit_for_bit(mods, sdxl_pair, sampler, scheduler, k):
    base, distilled = sdxl_pair
    latent = tm.empty_latent(batch=2)
    _, (out, traj) = run_hybrid(mods, base, distilled, latent, k=k, scheduler=scheduler, sampler=sampler)
    ref = reference(mods, base, distilled, latent, k=k, scheduler=scheduler, sampler=sampler)
    assert torch.equal(out["samples"], ref)
    assert [f.model for f in traj.frames] == ["base"] * k + ["distilled"] * (4 - k)
    assert [f.step for f in traj.frames] == [0, 1, 2, 3]


def test_paper_schedule_and_handover_sigma(mods, sdxl_pair):
    base, distilled = sdxl_pair
    (first, _), _ = run_hybrid(mods, base, distilled, tm.empty_latent())
    handover = first["diversity_distillation_handover"]
    assert handover.sigmas.tolist() == pytest.approx([4.2606, 1.6129, 0.7194, 0.0], abs=2e-3)  # t = 759, 499, 259
    sig = mods["sampling"].model_schedule(base, 4, "lcm")
    assert sig.tolist() == pytest.approx([14.6146, 4.2606, 1.6129, 0.7194, 0.0], abs=2e-3)
    assert mods["sampling"].model_schedule(base, 4, "trailing")[:4].tolist() == pytest.approx(
        [14.6146, 4.0817, 1.6129, 0.6932], abs=2e-3
    )  # t = 999, 749, 499, 249


def test_continuation_has_its_own_noise_stream(mods, sdxl_pair):
    base, distilled = sdxl_pair
    latent = tm.empty_latent(batch=2)
    _, (out, _) = run_hybrid(mods, base, distilled, latent, seed=11)
    same_seed = reference(mods, base, distilled, latent, seed=11, continue_seed=11)
    assert not torch.allclose(out["samples"], same_seed)  # the base seed's stream is not reused


def test_batch_of_seeds_all_different_and_reproducible(mods, sdxl_pair):
    base, distilled = sdxl_pair
    latent = tm.empty_latent(batch=4)
    _, (a, _) = run_hybrid(mods, base, distilled, latent, seed=123)
    _, (b, _) = run_hybrid(mods, base, distilled, latent, seed=123)
    _, (c, _) = run_hybrid(mods, base, distilled, latent, seed=124)
    assert torch.equal(a["samples"], b["samples"])
    assert not torch.allclose(a["samples"], c["samples"])
    s = a["samples"].flatten(1)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(s[i], s[j]), (i, j)


def test_base_equal_to_distilled_matches_a_single_run(mods, sdxl_pair):
    """With a deterministic rule (euler) the split is invisible: hybrid(m, m) == m alone on the full schedule."""
    model = sdxl_pair[1]
    latent = tm.empty_latent(batch=2)
    _, (out, _) = run_hybrid(mods, model, model, latent, scheduler="trailing", sampler="euler")
    pos, neg = tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)
    sigmas = mods["sampling"].model_schedule(model, 4, "trailing")
    single = comfy.sample.sample_custom(
        model,
        comfy.sample.prepare_noise(latent["samples"], 7),
        1.0,
        comfy.samplers.sampler_object("euler"),
        sigmas,
        pos,
        neg,
        latent["samples"],
        seed=7,
    )
    torch.testing.assert_close(out["samples"], single, rtol=1e-5, atol=1e-4)


def test_eps_base_with_v_prediction_distilled(mods):
    """SD 2.1 (v) -> SD-Turbo (eps) style pair: each model's model_sampling reads the shared latent."""
    base, distilled = tm.make_model("sd21v", 3), tm.make_model("sd21", 4)
    latent = tm.empty_latent(batch=2)
    _, (out, traj) = run_hybrid(mods, base, distilled, latent, kind="sd21v")
    ref = reference(mods, base, distilled, latent, kind="sd21v")
    assert torch.equal(out["samples"], ref)
    _, (out2, _) = run_hybrid(mods, distilled, base, latent, kind="sd21v")  # eps -> v
    assert torch.equal(out2["samples"], reference(mods, distilled, base, latent, kind="sd21v"))


def test_skip_first_step_starts_from_unit_variance_noise(mods, sdxl_pair):
    model = sdxl_pair[1]
    latent = {"samples": torch.zeros(2, 4, 32, 32)}
    pos, neg = tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)
    out, traj = mods["hybrid_nodes"].SkipFirstStep.execute(model, pos, neg, latent, 5, 1.0, 4, "lcm", "lcm").result
    sigmas = mods["sampling"].model_schedule(model, 4, "lcm")
    s1 = float(sigmas[1])
    noise = comfy.sample.prepare_noise(latent["samples"], 5)
    seen = {}
    ref = comfy.sample.sample_custom(
        model,
        noise * ((1 + s1**2) ** 0.5 / s1),
        1.0,
        comfy.samplers.sampler_object("lcm"),
        sigmas[1:],
        pos,
        neg,
        latent["samples"],
        callback=lambda i, x0, x, n: seen.setdefault(i, x.clone()),
        seed=5,
    )
    assert torch.equal(out["samples"], ref)
    torch.testing.assert_close(seen[0], noise * (1 + s1**2) ** 0.5)  # 4.376 x N(0, 1) at t = 759
    assert seen[0].std().item() == pytest.approx(4.376, rel=0.05)
    assert [f.step for f in traj.frames] == [1, 2, 3] and len(traj) == 3


def test_causal_validation_order_is_expressible(mods, sdxl_pair):
    """Table E.1: the distilled model takes the first step, the base model the final ones."""
    base, distilled = sdxl_pair
    latent = tm.empty_latent(batch=2)
    _, (out, traj) = run_hybrid(mods, distilled, base, latent, k=1)
    assert torch.equal(out["samples"], reference(mods, distilled, base, latent, k=1))
    assert len(traj) == 4


def test_trajectory_records_denoised_in_vae_space(mods, sdxl_pair):
    base, distilled = sdxl_pair
    latent = tm.empty_latent(batch=3)
    (mid, t1), (out, t2) = run_hybrid(mods, base, distilled, latent)
    assert len(t1) == 1 and len(t2) == 4 and t2.frames[0] is t1.frames[0]
    assert t2.stacked().shape == (4, 3, 4, 16, 16)
    assert all(f.x0.device.type == "cpu" and f.x0.dtype == torch.float32 for f in t2.frames)
    # the lcm rule's last step returns x̂0 itself, so the final frame is the output latent
    torch.testing.assert_close(t2.frames[-1].x0, out["samples"], rtol=1e-5, atol=1e-5)
    first = t2.frames[0]
    assert (first.step, first.level, first.model) == (0, "sigma 14.6 · t 999 · A 214", "base")  # A = sigma^2


def test_closest_stock_graph_differs_only_by_the_continuation_seed(mods, sdxl_pair):
    """SplitSigmas + two SamplerCustomAdvanced (RandomNoise, then DisableNoise) equals the pack's hybrid except that
    DisableNoise seeds the continuation's noise stream with 0 for every user seed (README: "Seeds")."""
    from comfy_extras import nodes_custom_sampler as ncs

    base, distilled = sdxl_pair
    pos, neg = tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)
    sigmas = mods["sampling"].model_schedule(distilled, 4, "lcm")
    high, low = ncs.SplitSigmas.execute(sigmas, 1).result
    sampler = ncs.KSamplerSelect.execute("lcm").result[0]

    def stock(seed):
        latent = tm.empty_latent(batch=2)
        g1 = ncs.CFGGuider.execute(base, pos, neg, 1.0).result[0]
        mid = ncs.SamplerCustomAdvanced.execute(
            ncs.RandomNoise.execute(seed).result[0], g1, sampler, high, latent
        ).result[0]
        g2 = ncs.CFGGuider.execute(distilled, pos, neg, 1.0).result[0]
        return ncs.SamplerCustomAdvanced.execute(ncs.DisableNoise.execute().result[0], g2, sampler, low, mid).result[0][
            "samples"
        ]

    latent = tm.empty_latent(batch=2)
    assert torch.equal(stock(7), reference(mods, base, distilled, latent, seed=7, continue_seed=0))
    _, (ours, _) = run_hybrid(mods, base, distilled, latent, seed=7)
    assert not torch.allclose(ours["samples"], stock(7))


def test_distilled_schedule_node_gives_the_hybrids_schedule(mods, sdxl_pair):
    """Stock SamplerCustom on the Distilled Schedule node's SIGMAS = the distilled model alone on the paper's
    schedule."""
    _, distilled = sdxl_pair
    sigmas = mods["hybrid_nodes"].DistilledSchedule.execute(distilled, 4, "lcm").result[0]
    assert sigmas.tolist() == pytest.approx([14.6146, 4.2606, 1.6129, 0.7194, 0.0], abs=2e-3)
    assert torch.equal(sigmas, mods["sampling"].model_schedule(distilled, 4, "lcm"))
    with pytest.raises(ValueError, match="steps: the lcm schedule needs 1..50 steps, got 60"):
        mods["hybrid_nodes"].DistilledSchedule.execute(distilled, 60, "lcm")


def test_frames_are_labelled_by_the_model_label_or_the_role(mods, sdxl_pair):
    """Table E.1's replace-final order (the distilled model first, the base after) and the distilled-alone baseline
    read right when the nodes are told which model sits in them; empty labels fall back to the node's role."""
    base, distilled = sdxl_pair
    hn, latent = mods["hybrid_nodes"], tm.empty_latent(2)
    pos, neg = tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)
    first = hn.BaseFirstStepSampler.execute(
        distilled, pos, neg, latent, 3, 1.0, 1, 4, "lcm", "lcm", None, " distilled "
    )
    _, traj = hn.DistilledContinueSampler.execute(base, pos, neg, first.result[0], 1.0, "base").result
    assert [f.model for f in traj.frames] == ["distilled", "base", "base", "base"]
    unlabelled = hn.BaseFirstStepSampler.execute(base, pos, neg, latent, 3, 1.0, 1, 4, "lcm", "lcm", None, "  ")
    _, traj = hn.DistilledContinueSampler.execute(distilled, pos, neg, unlabelled.result[0], 1.0).result
    assert [f.model for f in traj.frames] == ["base", "distilled", "distilled", "distilled"]
    _, skip = hn.SkipFirstStep.execute(distilled, pos, neg, latent, 3, 1.0, 4, "lcm", "lcm", None, "DMD2").result
    assert {f.model for f in skip.frames} == {"DMD2"}
    # the label changes only the frames' names, not the samples
    a = hn.BaseFirstStepSampler.execute(base, pos, neg, latent, 3, 1.0, 1, 4, "lcm", "lcm", None, "teacher")
    assert torch.equal(a.result[0]["samples"], unlabelled.result[0]["samples"])
