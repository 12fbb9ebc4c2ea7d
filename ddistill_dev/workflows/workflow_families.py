"""The flow-matching and video distills of 2025-26 as workflow pairs: Z-Image + Z-Image-Turbo, Qwen-Image +
Lightning LoRA, SD3.5 Large + Turbo, FLUX.1-dev + schnell, Wan 2.2 A14B + Lightning LoRAs (two experts), Krea 2 RAW +
Turbo (a full model, or the Turbo LoRA on RAW).

Every setting is the one of README "Settings per family" (the models' cards and official workflows, with their
sources); the hybrid connects the distilled model to Base First Step's ``distilled_model`` input, so the schedule
is the distilled model's own (its shift), with ComfyUI's ``simple`` scheduler and ``euler``, base_cfg 1. The hybrid
hands over by noise level (``base_steps`` 0, ``handover_amplification`` the paper's A* = 18.2): each family's
``rule`` is where that lands on its schedule (``tests/integration/hybrid/test_handover_rule_families.py`` computes it
with ComfyUI's own model_sampling).
"""

from __future__ import annotations

import copy
import math

from ddistill import protocol as P
from ddistill.noise_level import PAPER_AMPLIFICATION

from . import workflow_blocks as b
from .workflow_blocks import PROMPT, Base, Canvas, Family, RulePoint

FLOW = {"scheduler": "simple", "sampler": "euler", "schedule_from_distilled": True}
ZIMAGE_FILE, QWEN_FILE = "z_image_bf16.safetensors", "qwen_image_fp8_e4m3fn.safetensors"
SD35_FILE, DEV_FILE = "sd3.5_large.safetensors", "flux1-dev.safetensors"
QWEN_4STEP = "Qwen-Image-Lightning-4steps-V1.0.safetensors"  # the alternative LoRA (steps 4), named in the note
WAN_HIGH, WAN_LOW = (f"wan2.2_t2v_{n}_noise_14B_fp8_scaled.safetensors" for n in ("high", "low"))
WAN_LORAS = tuple(f"wan2.2_t2v_lightx2v_4steps_lora_v1.1_{n}_noise.safetensors" for n in ("high", "low"))
FLUX_GUIDANCE = 3.5  # FluxGuidance on dev's conditioning [F6, F7]
WAN_BOUNDARY = 0.875  # Wan 2.2 text-to-video switches experts at t = 875 [W1, W4]
WAN_SIZE, WAN_FRAMES = (832, 480), 33  # 33 frames (2 s at 16 fps): 9 latent frames, 8 clips in one batch
KREA2_RAW_FILE, KREA2_TURBO_FILE = "krea2_raw_bf16.safetensors", "krea2_turbo_bf16.safetensors"
KREA2_TURBO_LORA = "krea2_turbo_lora_rank_64_bf16.safetensors"  # RAW + this LoRA at strength 1 = Turbo [K4, K5]
KREA2_TE, KREA2_VAE = "qwen3vl_4b_fp8_scaled.safetensors", "qwen_image_vae.safetensors"  # Comfy-Org's template [K2]
KREA2_COMFYUI = "0.33.0"  # the first tested ComfyUI with Krea 2 (its model class and CLIPLoader type "krea2")

# Where the noise-level rule (A <= A* = 18.2, A = (sigma / (1 - sigma))^2 in rectified flow) hands over on each
# family's schedule (simple scheduler, the distilled side's shift): k, sigma_k, A(sigma_k), A(sigma_(k-1)).
SHIFT3_8 = RulePoint(4, 0.75, 9.0, 25.0)  # shift 3, 8 steps: 1, .955, .9, .833, .75, ...
SHIFT3_4 = RulePoint(2, 0.75, 9.0, 81.0)  # shift 3, 4 steps: 1, .9, .75, .5
UNSHIFTED_4 = RulePoint(1, 0.75, 9.0, math.inf)  # 1, .75, .5, .25: A 9 after the first step already
SHIFT5_4 = RulePoint(3, 0.625, 2.778, 25.0)  # shift 5, 4 steps: 1, .9375, .833, .625
MU115_8 = RulePoint(4, 0.7595, 9.974, 27.71)  # Flux time shift mu 1.15, 8 steps: 1, .957, .905, .840, .760, ...
# The rule as a sigma in rectified flow: A <= A*  <=>  sigma <= sqrt(A*) / (1 + sqrt(A*)) (0.8101 for 18.2)
FLOW_RULE_SIGMA = round(math.sqrt(PAPER_AMPLIFICATION) / (1 + math.sqrt(PAPER_AMPLIFICATION)), 4)

ZIMAGE_TURBO = Family("Z-Image-Turbo", "z_image_turbo_bf16.safetensors", steps=8, shift=3.0, rule=SHIFT3_8, **FLOW)
ZIMAGE = Base("Z-Image", steps=50, cfg=4.0, sampler="res_multistep", scheduler="simple", shift=3.0)
QWEN_LIGHTNING = Family(
    "Qwen-Image-Lightning 8-step LoRA", "Qwen-Image-Lightning-8steps-V1.1.safetensors", size=1328, steps=8,
    shift=3.0, rule=SHIFT3_8, **FLOW,
)  # fmt: skip
QWEN = Base("Qwen-Image", steps=20, cfg=2.5, scheduler="simple", shift=3.1)
SD35_TURBO = Family("SD3.5 Large Turbo", "sd3.5_large_turbo.safetensors", steps=4, rule=SHIFT3_4, **FLOW)
SD35 = Base("SD3.5 Large", steps=40, cfg=4.5, sampler="dpmpp_2m", scheduler="sgm_uniform")
SCHNELL = Family("FLUX.1-schnell", "flux1-schnell.safetensors", steps=4, rule=UNSHIFTED_4, **FLOW)
DEV = Base(f"FLUX.1-dev (guidance {FLUX_GUIDANCE:g})", steps=20, cfg=1.0, scheduler="simple")
WAN_LIGHTNING = Family("Wan2.2-Lightning 4-step LoRAs", WAN_LORAS[0], steps=4, shift=5.0, rule=SHIFT5_4, **FLOW)
WAN = Base("Wan 2.2 A14B", steps=20, cfg=3.5, scheduler="simple", shift=8.0)
# Krea 2: no shift node on either side, ComfyUI's Krea 2 config carries Krea's fixed mu 1.15 [K1, K3]
KREA2_TURBO = Family("Krea 2 Turbo", KREA2_TURBO_FILE, steps=8, rule=MU115_8, **FLOW)
KREA2_TURBO_LORA_FAMILY = Family("Krea 2 RAW + Turbo LoRA", KREA2_TURBO_LORA, steps=8, rule=MU115_8, **FLOW)
KREA2_RAW = Base("Krea 2 RAW", steps=52, cfg=3.5, scheduler="simple")

# Options of stock nodes that a workflow here needs and that the pinned ComfyUI (0.3.75, whose /object_info the
# files are built from) does not list: {(node type, input): (options, the first tested ComfyUI that lists them)}.
NEWER_OPTIONS = {("CLIPLoader", "type"): (("krea2",), KREA2_COMFYUI)}


def with_newer_options(info: dict) -> dict:
    """A copy of a server's ``/object_info`` whose combo lists also hold ``NEWER_OPTIONS``, appended (so no default
    changes): the builder then writes the Krea 2 workflows on the pinned host exactly as on a host that knows Krea 2
    (a combo's value is written as it is; the list only checks it). The pinned server itself still refuses them."""
    info = copy.deepcopy(info)
    for (node_type, name), (options, _) in NEWER_OPTIONS.items():
        spec = info.get(node_type, {}).get("input", {})
        raw = spec.get("required", {}).get(name) or spec.get("optional", {}).get(name)
        if raw is None:
            continue
        listed = raw[0] if isinstance(raw[0], list) else raw[1].setdefault("options", [])
        listed.extend(o for o in options if o not in listed)
    return info


def unlisted_newer_options(info: dict, prompt: dict) -> dict[str, str]:
    """{node id: option} of the options a workflow uses that only a newer ComfyUI lists (``NEWER_OPTIONS``: Krea 2's
    CLIPLoader type on 0.3.75) and this server does not."""
    out = {}
    for nid, node in prompt.items():
        for (node_type, name), (options, _) in NEWER_OPTIONS.items():
            value = node["inputs"].get(name)
            if node["class_type"] == node_type and value in options:
                spec = info[node_type]["input"]["required"].get(name) or info[node_type]["input"]["optional"][name]
                listed = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
                if value not in listed:
                    out[nid] = value
    return out


def rule_note(fam: Family, base: str, distilled: str) -> str:
    """The note's paragraph on where the hybrid hands over on this family's schedule, and why."""
    r, n = fam.rule, fam.steps
    if r.k == 1:
        why = f"sigma_1 = {r.sigma:.4g} already has A = {r.a:.3g}"
    else:
        why = f"A = {r.before:.3g} at sigma_{r.k - 1} is above it, A = {r.a:.3g} at sigma_{r.k} = {r.sigma:.4g} is not"
    steps = "step 1" if r.k == 1 else f"steps 1-{r.k}"
    return (
        f"**Handover by noise level:** Base First Step's base_steps 0 hands over after the first step k of "
        f"{distilled}'s schedule whose amplification A = (sigma / (1 - sigma))^2 is at most handover_amplification "
        f"A* = {PAPER_AMPLIFICATION:g} (A at SDXL's t = 759, the paper's handover after DMD2's first step). Here "
        f"k = {r.k} of {n}: {why}, so {base} takes {steps} and {distilled} the other {n - r.k}. base_steps 1 gives "
        f"the paper's single base step instead."
    )


def _unet(c: Canvas, name: str):
    return c.left("UNETLoader", {"unet_name": name, "weight_dtype": "default"}, h=160)[0]


def _shift(c: Canvas, model, shift, node="ModelSamplingAuraFlow"):
    return model if shift is None else c.left(node, {"model": model, "shift": shift}, h=140)[0]


def _lora(c: Canvas, model, name: str):
    return c.left("LoraLoaderModelOnly", {"model": model, "lora_name": name, "strength_model": 1.0}, h=160)[0]


def _encoders(c: Canvas, clip, prompt=PROMPT):
    return b._encode(c, clip, prompt, "prompt")[0], b._encode(c, clip, b.NEG, "negative")[0]


def _latent(c: Canvas, size: int, batch=b.BATCH):
    return b._latent(c, size, batch, "EmptySD3LatentImage")


def _fit(c: Canvas, fam: Family) -> None:
    """Room for Base First Step's live filmstrip: the base takes ``rule.k`` steps."""
    if fam.rule:
        c.fit_filmstrip(fam.rule.k, "X_SAMPLER")


def zimage_pair(c: Canvas, fam: Family, bcfg: Base):
    """Z-Image and Z-Image-Turbo (two full models), ModelSamplingAuraFlow 3 on both; one Qwen3-4B encoder; Turbo's
    negative is the zeroed prompt, as in its template."""
    _fit(c, fam)
    base_m, turbo_m = _unet(c, ZIMAGE_FILE), _unet(c, fam.file)
    clip = c.left("CLIPLoader", {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"}, h=190)[0]
    vae = c.left("VAELoader", {"vae_name": "ae.safetensors"}, h=130)[0]
    base_m, turbo_m = _shift(c, base_m, bcfg.shift), _shift(c, turbo_m, fam.shift)
    pos, neg = _encoders(c, clip)
    zero = c.left("ConditioningZeroOut", {"conditioning": pos}, x=460, h=110)[0]
    base = {"model": base_m, "pos": pos, "neg": neg, "vae": vae}
    return base, {**base, "model": turbo_m, "neg": zero}, _latent(c, fam.size)


def qwen_pair(c: Canvas, fam: Family, bcfg: Base):
    """Qwen-Image, and the same model with the Lightning LoRA (strength 1) and the shift it was distilled at."""
    _fit(c, fam)
    unet = _unet(c, QWEN_FILE)
    clip = c.left("CLIPLoader", {"clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors", "type": "qwen_image"}, h=190)
    vae = c.left("VAELoader", {"vae_name": "qwen_image_vae.safetensors"}, h=130)[0]
    base_m, lightning = _shift(c, unet, bcfg.shift), _shift(c, _lora(c, unet, fam.file), fam.shift)
    pos, neg = _encoders(c, clip[0])
    base = {"model": base_m, "pos": pos, "neg": neg, "vae": vae}
    return base, {**base, "model": lightning}, _latent(c, fam.size)


def sd35_pair(c: Canvas, fam: Family, bcfg: Base):
    """SD3.5 Large and Large Turbo checkpoints (each with its VAE), one TripleCLIPLoader for both."""
    _fit(c, fam)
    base_ck, turbo_ck = b._checkpoint(c, SD35_FILE), b._checkpoint(c, fam.file)
    names = ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")
    clip = c.left("TripleCLIPLoader", {f"clip_name{i + 1}": n for i, n in enumerate(names)}, h=190)[0]
    pos, neg = _encoders(c, clip)
    base = {"model": base_ck[0], "pos": pos, "neg": neg, "vae": base_ck[2]}
    return base, {**base, "model": turbo_ck[0], "vae": turbo_ck[2]}, _latent(c, fam.size)


def flux_pair(c: Canvas, fam: Family, bcfg: Base):
    """FLUX.1-dev (prompt through FluxGuidance) and FLUX.1-schnell: one DualCLIPLoader, one autoencoder."""
    _fit(c, fam)
    dev, schnell = _unet(c, DEV_FILE), _unet(c, fam.file)
    encoders = {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}
    clip = c.left("DualCLIPLoader", encoders, h=220)[0]
    vae = c.left("VAELoader", {"vae_name": "ae.safetensors"}, h=130)[0]
    pos, neg = _encoders(c, clip)
    guided = c.left("FluxGuidance", {"conditioning": pos, "guidance": FLUX_GUIDANCE}, x=460, h=140)[0]
    base = {"model": dev, "pos": guided, "neg": neg, "vae": vae}
    return base, {**base, "model": schnell, "pos": pos}, _latent(c, fam.size)


def krea2_pair(c: Canvas, fam: Family, bcfg: Base):
    """Krea 2 RAW and Krea 2 Turbo: two full models, or (``fam.file`` the Turbo LoRA) RAW with the Turbo LoRA at
    strength 1. One Qwen3-VL-4B encoder (CLIPLoader type ``krea2``, ComfyUI 0.33+), the Qwen-Image VAE, no shift
    node (ComfyUI's Krea 2 config: mu 1.15); Turbo's negative is the zeroed prompt, as in its template [K2]."""
    _fit(c, fam)
    raw = _unet(c, KREA2_RAW_FILE)
    turbo = _lora(c, raw, fam.file) if fam.file == KREA2_TURBO_LORA else _unet(c, fam.file)
    clip = c.left("CLIPLoader", {"clip_name": KREA2_TE, "type": "krea2"}, h=190)[0]
    vae = c.left("VAELoader", {"vae_name": KREA2_VAE}, h=130)[0]
    pos, neg = _encoders(c, clip)
    zero = c.left("ConditioningZeroOut", {"conditioning": pos}, x=460, h=110)[0]
    base = {"model": raw, "pos": pos, "neg": neg, "vae": vae}
    return base, {**base, "model": turbo, "neg": zero}, _latent(c, fam.size)


PAIRS = {"zimage": zimage_pair, "qwen": qwen_pair, "sd35": sd35_pair, "flux": flux_pair, "krea2": krea2_pair}


# ------------------------------------------------------------------------------------ Wan 2.2: two experts a side
def wan_models(c: Canvas, fam: Family, bcfg: Base) -> tuple[dict, dict]:
    """{high, low, pos, neg, vae} of the base experts (template shift) and of the Lightning ones (LoRA + shift 5)."""
    high, low = _unet(c, WAN_HIGH), _unet(c, WAN_LOW)
    clip = c.left("CLIPLoader", {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}, h=190)[0]
    vae = c.left("VAELoader", {"vae_name": "wan_2.1_vae.safetensors"}, h=130)[0]
    base = [_shift(c, m, bcfg.shift, "ModelSamplingSD3") for m in (high, low)]
    light = [_shift(c, _lora(c, m, f), fam.shift, "ModelSamplingSD3") for m, f in zip((high, low), WAN_LORAS)]
    pos, neg = _encoders(c, clip)
    shared = {"pos": pos, "neg": neg, "vae": vae}
    return {"high": base[0], "low": base[1], **shared}, {"high": light[0], "low": light[1], **shared}


def wan_latent(c: Canvas, batch=b.BATCH):
    (w, h), inputs = WAN_SIZE, {"length": WAN_FRAMES, "batch_size": batch}
    return c.left("EmptyHunyuanLatentVideo", {"width": w, "height": h, **inputs}, title="batch", x=460, h=220)[0]


def two_experts(c: Canvas, y, m: dict, latent, steps: int, cfg: float, scheduler: str):
    """High expert on the first half of the steps, low expert on the rest: KSamplerAdvanced x 2 (the template)."""
    common = {"positive": m["pos"], "negative": m["neg"], "noise_seed": 0, "steps": steps, "cfg": cfg}
    common.update(sampler_name="euler", scheduler=scheduler)
    first = c.g.add(
        "KSamplerAdvanced",
        {"model": m["high"], "latent_image": latent, "add_noise": "enable", **common, "start_at_step": 0,
         "end_at_step": steps // 2, "return_with_leftover_noise": "enable"},
        title="seed", pos=(c.X_SAMPLER, y),
    )  # fmt: skip
    return c.g.add(
        "KSamplerAdvanced",
        {"model": m["low"], "latent_image": first[0], "add_noise": "disable", **common, "start_at_step": steps // 2,
         "end_at_step": 10000, "return_with_leftover_noise": "disable"},
        title="seed", pos=(c.X_CONTINUE, y),
    )  # fmt: skip


def wan_rows(exp, fam: Family = WAN_LIGHTNING, bcfg: Base = WAN):
    """Base alone (high then low expert), Lightning alone (both LoRA experts), and the hybrid, handing over by noise
    level: the base experts take the steps down to the rule's handover (``fam.rule``: A <= A* first at sigma .625,
    k = 3 of 4, below the expert boundary), each on its own range: Base First Step on the base high expert down to the
    boundary (``handover_sigma`` 0.875), Distilled Continue on the base low expert (``model_label`` base, so that its
    frames say so) down to the rule's sigma (``end_at_sigma`` = the rule as a sigma, 0.8101), then Distilled Continue
    on Lightning-low. The meter reads each decoded batch as clips of WAN_FRAMES frames."""
    c = Canvas(exp.name, exp.note())
    base, light = wan_models(c, fam, bcfg)
    latent = wan_latent(c)
    clips = {"frames_per_video": WAN_FRAMES}
    y = c.row(f"Base alone: {bcfg.label}, high then low expert, {bcfg.steps} steps, cfg {bcfg.cfg:g}")
    c.finish("base", y, two_experts(c, y, base, latent, bcfg.steps, bcfg.cfg, bcfg.scheduler)[0], base["vae"], **clips)
    y = c.row(f"Distilled alone: {fam.label}, high then low, {fam.steps} steps {fam.sampler}, cfg {fam.cfg:g}")
    c.finish(
        "distilled", y, two_experts(c, y, light, latent, fam.steps, fam.cfg, fam.scheduler)[0], base["vae"], **clips
    )
    r = fam.rule
    y = c.row(
        f"Hybrid: base experts take steps 1-{r.k} (high to sigma {WAN_BOUNDARY}, low on; by noise level, "
        f"{r.why(fam.steps, PAPER_AMPLIFICATION)}), cfg 1; Lightning low the rest"
    )
    first = c.g.add(
        P.BASE_FIRST_STEP,
        {"base_model": base["high"], "positive": base["pos"], "negative": base["neg"], "latent_image": latent,
         "seed": 0, "base_cfg": 1.0, "base_steps": 0, "steps": fam.steps, "scheduler": fam.scheduler,
         "sampler_name": fam.sampler, "distilled_model": light["high"], "handover_sigma": WAN_BOUNDARY},
        title="seed", pos=(c.X_AUX, y),
    )  # fmt: skip
    low = {"distilled_model": base["low"], "positive": base["pos"], "negative": base["neg"], "latent": first[0]}
    low.update(cfg=1.0, model_label=P.BASE_LABEL, end_at_sigma=FLOW_RULE_SIGMA)
    mid = c.g.add(P.DISTILLED_CONTINUE, low, pos=(c.X_SAMPLER, y))
    inputs = {"distilled_model": light["low"], "positive": light["pos"], "negative": light["neg"], "latent": mid[0]}
    out = c.g.add(P.DISTILLED_CONTINUE, {**inputs, "cfg": fam.cfg}, pos=(c.X_CONTINUE, y))[0]
    c.finish("hybrid", y, out, light["vae"], **clips)
    return c.g
