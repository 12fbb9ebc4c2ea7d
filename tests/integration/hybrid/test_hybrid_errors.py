"""Bad input to the sampler nodes: clear errors that name the input and the fix (in process)."""

import pytest
import torch

from ddistill_dev.models import tiny_models as tm


@pytest.fixture(scope="module")
def models():
    return {k: tm.make_model(k, i) for i, k in enumerate(("sdxl", "sd15", "flow"))}


def base_step(hn, model, latent, kind="sdxl", k=1, steps=4, sigmas=None, pos=None):
    pos = pos if pos is not None else tm.make_conditioning(kind)
    return hn.BaseFirstStepSampler.execute(
        model, pos, tm.make_conditioning(kind), latent, 0, 1.0, k, steps, "lcm", "lcm", sigmas
    )


@pytest.mark.parametrize(
    "sigmas,k,needle",
    [
        (torch.tensor([]), 1, "sigmas: the schedule is empty"),
        (torch.tensor([14.6, 0.0]), 1, "sigmas: the schedule has 1 step"),
        (torch.tensor([14.6, 4.2, 1.6, 0.0]), 3, "base_steps: 3 leaves no step for the distilled model"),
        (torch.tensor([14.6, 4.2, 1.6, 0.0]), -1, "base_steps: 0 hands over by noise level, >= 1 after that many"),
    ],
)
def test_bad_schedules(hn, models, sigmas, k, needle):
    with pytest.raises(ValueError, match=needle):
        base_step(hn, models["sdxl"], tm.empty_latent(), k=k, sigmas=sigmas)


def test_step_rules_one_place_each(hn, models):
    """Single-input ranges are ComfyUI's own widget checks (one message, on that input, at queue time); the rule
    between inputs is checked when the node runs and names the input and the fix."""
    for node in (hn.BaseFirstStepSampler, hn.SkipFirstStep):
        assert node.INPUT_TYPES()["required"]["steps"][1]["min"] == 2
    assert hn.BaseFirstStepSampler.INPUT_TYPES()["required"]["base_steps"][1]["min"] == 0  # 0: by noise level
    assert hn.DistilledSchedule.INPUT_TYPES()["required"]["steps"][1]["min"] == 1
    assert not any(hasattr(n, "validate_inputs") and "validate_inputs" in vars(n) for n in hn.NODES)
    with pytest.raises(
        ValueError,
        match=r"base_steps: 4 leaves no step for the distilled model in a 4-step "
        r"schedule; use base_steps <= 3 or raise steps",
    ):
        base_step(hn, models["sdxl"], tm.empty_latent(), k=4, steps=4)


def test_linked_sigmas_errors_do_not_blame_steps(hn, models):
    """steps is ignored when SIGMAS is linked, so the fix names the SIGMAS input."""
    with pytest.raises(ValueError) as err:
        base_step(hn, models["sdxl"], tm.empty_latent(), sigmas=torch.tensor([14.6]))
    assert "sigmas: the schedule has 0 step(s)" in str(err.value) and "connect a SIGMAS schedule" in str(err.value)
    assert "raise steps" not in str(err.value).lower()
    with pytest.raises(ValueError, match="sigmas must not increase.*reverse it"):
        base_step(hn, models["sdxl"], tm.empty_latent(), sigmas=torch.tensor([0.0, 1.6, 4.2, 14.6]))
    with pytest.raises(ValueError, match="base_steps: 3 leaves no step.*connect a SIGMAS schedule with more values"):
        base_step(hn, models["sdxl"], tm.empty_latent(), k=3, sigmas=torch.tensor([14.6, 4.2, 1.6, 0.0]))


def test_latent_from_another_family(hn, models):
    latent = {"samples": torch.ones(1, 16, 8, 8)}
    with pytest.raises(ValueError, match=r"latent_image: the latent has 16 channels but base_model is SDXL"):
        base_step(hn, models["sdxl"], latent)


def test_empty_latent_of_another_family_is_fitted_as_in_stock(hn, models):
    """An all-zero latent carries no content: like stock samplers, the pack fits its channels to the model."""
    out = base_step(hn, models["sdxl"], {"samples": torch.zeros(1, 16, 8, 8)}).result[0]
    ref = base_step(hn, models["sdxl"], {"samples": torch.zeros(1, 4, 8, 8)}).result[0]
    assert out["samples"].shape == (1, 4, 8, 8) and torch.equal(out["samples"], ref["samples"])


def test_nan_latent(hn, models):
    latent = tm.empty_latent()
    latent["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="latent_image: the latent contains NaN"):
        base_step(hn, models["sdxl"], latent)


def test_conditioning_batch_mismatch(hn, models):
    with pytest.raises(ValueError, match="positive: the conditioning has batch size 3 but the latent has 2"):
        base_step(hn, models["sdxl"], tm.empty_latent(batch=2), pos=tm.make_conditioning("sdxl", batch=3))
    base_step(hn, models["sdxl"], tm.empty_latent(batch=2), pos=tm.make_conditioning("sdxl", batch=2))  # equal is fine


def test_conditioning_from_another_text_encoder(hn, models):
    with pytest.raises(ValueError, match="positive: the conditioning has width 768 but base_model expects 2048"):
        base_step(hn, models["sdxl"], tm.empty_latent(), pos=tm.make_conditioning("sd15"))


def test_pair_with_different_latent_spaces(hn, models):
    first = base_step(hn, models["sdxl"], tm.empty_latent()).result[0]
    with pytest.raises(
        ValueError,
        match=r"base_model is SDXL \(EPS prediction.*SDXL latents.*distilled_model is "
        r"BaseModel \(EPS prediction.*SD15 latents.*latent spaces differ",
    ):
        hn.DistilledContinueSampler.execute(
            models["sd15"], tm.make_conditioning("sd15"), tm.make_conditioning("sd15"), first, 1.0
        )


def test_pair_flow_with_eps(hn, models):
    first = base_step(hn, models["sd15"], tm.empty_latent(), kind="sd15").result[0]
    with pytest.raises(ValueError, match=r"CONST prediction, rectified flow.*write noisy latents differently"):
        hn.DistilledContinueSampler.execute(
            models["flow"], tm.make_conditioning("flow"), tm.make_conditioning("flow"), first, 1.0
        )


def test_continue_names_its_own_latent_input(hn, models):
    first = base_step(hn, models["sdxl"], tm.empty_latent()).result[0]
    first["samples"] = first["samples"].clone()
    first["samples"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="^latent: the latent contains NaN"):
        hn.DistilledContinueSampler.execute(models["sdxl"], tm.make_conditioning(), tm.make_conditioning(), first, 1.0)


def test_continue_without_handover(hn, models):
    with pytest.raises(
        ValueError,
        match="latent: this latent carries no handover; connect the LATENT output of a Base First Step Sampler",
    ):
        hn.DistilledContinueSampler.execute(
            models["sdxl"], tm.make_conditioning(), tm.make_conditioning(), tm.empty_latent(), 1.0
        )


def test_errors_leave_no_state_behind(hn, models):
    """A failed call changes nothing for the next one: same output before and after."""
    model = models["sdxl"]
    before = base_step(hn, model, tm.empty_latent()).result[0]["samples"]
    opts = dict(model.model_options)
    with pytest.raises(ValueError):
        base_step(hn, model, {"samples": torch.ones(1, 16, 8, 8)})
    assert model.model_options == opts
    assert torch.equal(base_step(hn, model, tm.empty_latent()).result[0]["samples"], before)


def test_seeds_at_the_top_of_the_range(hn, models, pack):
    """The seed whose continuation stream used to be 2^64 - 1 (an overflow in ComfyUI 0.33's CPU noise sampler,
    which seeds seed + 1) runs on every host; the user's own 2^64 - 1 runs where the host's noise sampler takes it
    (0.3.75) and is one named error on the seed where it does not (0.33 on the CPU), as stock KSampler cannot run it
    there either."""
    import comfy.k_diffusion.sampling as kds

    last = 2**64 - 1
    landing = last - 0x9E3779B97F4A7C15  # 7046029254386353130: seed + C = 2^64 - 1
    latent = tm.empty_latent(batch=2)
    pos = tm.make_conditioning("sdxl")
    for seed in (landing, last - 1):
        args = (models["sdxl"], pos, pos, latent, seed, 1.0, 1, 4, "lcm", "lcm")
        first = hn.BaseFirstStepSampler.execute(*args).result[0]
        assert first["diversity_distillation_handover"].noise_seed < last
        out, _ = hn.DistilledContinueSampler.execute(models["sdxl"], pos, pos, first, 1.0).result
        assert torch.isfinite(out["samples"]).all()
    try:
        kds.default_noise_sampler(torch.zeros(1), seed=last)
        host_takes_it = True
    except (OverflowError, RuntimeError, ValueError):
        host_takes_it = False
    for node, args in (
        (hn.BaseFirstStepSampler, (models["sdxl"], pos, pos, latent, last, 1.0, 1, 4, "lcm", "lcm")),
        (hn.SkipFirstStep, (models["sdxl"], pos, pos, latent, last, 1.0, 4, "lcm", "lcm")),
    ):
        if host_takes_it:
            assert torch.isfinite(node.execute(*args).result[0]["samples"]).all()
        else:
            with pytest.raises(ValueError, match=r"^seed: 18446744073709551615 \(2\^64 - 1\) is one more than"):
                node.execute(*args)
