"""Where the noise-level handover rule lands on each family preset's schedule, computed by the real Base First Step
(executed in process, ``base_steps`` 0 with the default A* = 18.2) on tiny models of ComfyUI's own classes with the
presets' sampling: the class's own shift, or the shift node the preset puts on the distilled side
(ModelSamplingAuraFlow 3 for Z-Image-Turbo and Qwen-Image-Lightning, ModelSamplingSD3 5 for Wan2.2-Lightning), the
preset's steps and scheduler. The handover point is read from the output LATENT (``Handover.point``). The numbers are
the ones the example workflows' notes and row labels state (``workflow_families``' ``RulePoint``s) and README
"Settings per family" lists."""

from __future__ import annotations

import math

import comfy.supported_models
import pytest
from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow, ModelSamplingSD3

from ddistill import protocol
from ddistill.noise_level import PAPER_AMPLIFICATION, RULE_AMPLIFICATION
from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.models import tiny_models as tm
from ddistill_dev.workflows import workflow_blocks as b
from ddistill_dev.workflows import workflow_families as wf

KREA2 = pytest.mark.skipif(
    not hasattr(comfy.supported_models, "Krea2"),
    reason=f"ComfyUI {comfyui_version()} has no Krea 2 model class (Krea 2: ComfyUI 0.33.0 or later)",
)
# preset: (family, tiny kind of base and distilled model, shift node on the distilled side, expected k, sigma_k,
# A(sigma_k), A(sigma_(k-1)))
PRESETS = {
    "SDXL + DMD2 (lcm, 4 steps)": (b.DMD2, "sdxl", None, 1, 4.2606, 18.152, 213.7),
    "Z-Image-Turbo (8 steps, shift 3)": (wf.ZIMAGE_TURBO, "zimage", "aura", 4, 0.75, 9.0, 25.0),
    "Qwen-Image-Lightning (8 steps, shift 3)": (wf.QWEN_LIGHTNING, "qwen", "aura", 4, 0.75, 9.0, 25.0),
    "SD3.5 Large Turbo (4 steps, shift 3)": (wf.SD35_TURBO, "sd3", None, 2, 0.75, 9.0, 81.0),
    "FLUX.1-schnell (4 steps, shift 1)": (wf.SCHNELL, "flux_schnell", None, 1, 0.75, 9.0, math.inf),
    "Wan2.2-Lightning (4 steps, shift 5)": (wf.WAN_LIGHTNING, "wan22", "sd3", 3, 0.625, 2.7778, 25.0),
    "Krea 2 Turbo (8 steps, mu 1.15)": (wf.KREA2_TURBO, "krea2", None, 4, 0.7595, 9.9742, 27.706),
    "Krea 2 RAW + Turbo LoRA (8 steps)": (
        wf.KREA2_TURBO_LORA_FAMILY,
        "krea2",
        None,
        4,
        0.7595,
        9.9742,
        27.706,
    ),
}


def preset_models(fam, kind: str, shift_node: str | None):
    """Base and distilled tiny models of ``kind``, the distilled one with the preset's shift node."""
    if kind == "sdxl":
        return tm.make_model("sdxl", 1), tm.make_model("sdxl", 2)
    base, distilled = tm.make_family_model(kind, 1), tm.make_family_model(kind, 2)
    if shift_node == "aura":
        distilled = ModelSamplingAuraFlow().patch_aura(distilled, fam.shift)[0]
    elif shift_node == "sd3":
        distilled = ModelSamplingSD3().patch(distilled, fam.shift)[0]
    return base, distilled


def params():
    return [pytest.param(name, marks=KREA2) if "Krea 2" in name else name for name in PRESETS]


@pytest.mark.parametrize("preset", params())
def test_rule_hands_over_where_the_workflows_say(hn, sampling, preset):
    fam, kind, shift_node, k, sigma, a, before = PRESETS[preset]
    base, distilled = preset_models(fam, kind, shift_node)
    if kind == "sdxl":
        pos, latent = tm.make_conditioning("sdxl"), tm.empty_latent()
    else:
        pos, latent = tm.family_conditioning(kind), tm.family_latent(kind)
    out = hn.BaseFirstStepSampler.execute(
        base, pos, pos, latent, 0, 1.0, 0, fam.steps, fam.scheduler, fam.sampler,
        distilled_model=distilled if fam.schedule_from_distilled else None,
    ).result[0]  # fmt: skip
    point = out[protocol.HANDOVER_KEY].point
    assert (point.rule, point.target) == (RULE_AMPLIFICATION, PAPER_AMPLIFICATION)
    assert point.k == k and point.sigma == pytest.approx(sigma, abs=5e-4), (preset, point)
    assert point.amplification == pytest.approx(a, rel=1e-3), (preset, point)
    schedule = sampling.model_schedule(distilled, fam.steps, fam.scheduler)
    amps = sampling.schedule_amplification(distilled, schedule)
    assert float(amps[k - 1]) == pytest.approx(before, rel=1e-3)  # A one step earlier: above A*
    assert out[protocol.HANDOVER_KEY].sigmas.tolist() == pytest.approx(schedule[k:].tolist())
    if fam.rule is not None:  # what the workflow's note and hybrid row say
        r = fam.rule
        assert (r.k, r.sigma, r.a) == (k, pytest.approx(sigma, abs=5e-4), pytest.approx(a, rel=1e-3))
        assert r.before == pytest.approx(before, rel=1e-3) and fam.base_steps == 0
    else:
        assert fam.base_steps == 1  # the SDXL workflows keep the paper's one base step (the rule gives it too)


def test_wan_chain_hands_over_by_expert_then_by_the_rule(hn):
    """10e: the base high expert runs to Wan's boundary (handover_sigma 0.875: k = 2), the base low expert on to the
    rule written as a sigma (end_at_sigma 0.8101, A = A* in rectified flow): the schedule left starts at .625, where
    the rule alone hands over (k = 3 of 4)."""
    fam = wf.WAN_LIGHTNING
    base, light = preset_models(fam, "wan22", "sd3")
    low = tm.make_family_model("wan22", 3)
    pos, latent = tm.family_conditioning("wan22"), tm.family_latent("wan22")
    first = hn.BaseFirstStepSampler.execute(
        base, pos, pos, latent, 0, 1.0, 0, fam.steps, fam.scheduler, fam.sampler,
        distilled_model=light, handover_sigma=wf.WAN_BOUNDARY,
    ).result[0]  # fmt: skip
    assert first[protocol.HANDOVER_KEY].point.k == 2
    mid = hn.DistilledContinueSampler.execute(low, pos, pos, first, 1.0, "base", wf.FLOW_RULE_SIGMA).result[0]
    rest = mid[protocol.HANDOVER_KEY]
    assert rest.step_offset == fam.rule.k and float(rest.sigmas[0]) == pytest.approx(fam.rule.sigma, abs=5e-4)
    assert (wf.FLOW_RULE_SIGMA / (1 - wf.FLOW_RULE_SIGMA)) ** 2 == pytest.approx(PAPER_AMPLIFICATION, rel=1e-3)
