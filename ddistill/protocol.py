"""Names shared across the pack's layers, defined once: the nodes write them, the frontend scripts
(``js/``, which keep their own copies: JavaScript cannot import this file), the runner, the demo and the
workflow builder read them."""

# LATENT dict keys the pack's samplers add (ComfyUI passes unknown keys through)
HANDOVER_KEY = "diversity_distillation_handover"
TRAJECTORY_KEY = "diversity_distillation_trajectory"

# node ui entries (/history/<id> -> outputs[<node>][KEY][0]) and the websocket event of the live filmstrip
METER_UI_KEY = "ddistill_diversity"
X0_UI_KEY = "ddistill_x0"
LIVE_X0_EVENT = "ddistill.x0_frame"

# node IDs (stable: saved workflows refer to them)
NODE_PREFIX = "DDistill_"
BASE_FIRST_STEP = "DDistill_BaseFirstStepSampler"
DISTILLED_CONTINUE = "DDistill_DistilledContinueSampler"
SKIP_FIRST_STEP = "DDistill_SkipFirstStep"
DISTILLED_SCHEDULE = "DDistill_DistilledSchedule"
X0_PREVIEW = "DDistill_X0Preview"
RECORD_X0_SAMPLER = "DDistill_RecordX0Sampler"
DIVERSITY_METER = "DDistill_DiversityMeter"
DEMO_MODEL_LOADER = "DDistill_DemoModelLoader"
DEMO_PROMPT = "DDistill_DemoPrompt"

# default model labels on x̂0 frames
BASE_LABEL = "base"
DISTILLED_LABEL = "distilled"

# metric backends (the Diversity Meter's and x̂0 Preview's choices)
EFFNET_BACKEND = "efficientnet_lite0 (ImageNet, not DreamSim)"
DREAMSIM_TYPES = (
    "ensemble",
    "dino_vitb16",
    "clip_vitb32",
    "open_clip_vitb32",
    "dinov2_vitb14",
    "synclr_vitb16",
    "dino_vitb16_patch",
    "dinov2_vitb14_patch",
)
DREAMSIM_BACKEND = "dreamsim_ensemble"  # the paper's metric
BACKENDS = (EFFNET_BACKEND, *(f"dreamsim_{t}" for t in DREAMSIM_TYPES))
PIXEL_METRIC = "pixel (RMS, 0..1)"

# extra words the node search finds each node by (V3 ``search_aliases``, ComfyUI 0.33+; the hybrid blueprint's too)
_HYBRID_WORDS = ("diversity", "seed variety", "hybrid", "DMD2", "turbo", "lightning", "LCM", "distilled")
HYBRID_BLUEPRINT_ALIASES = (*_HYBRID_WORDS, "base first step", "diversity distillation")
SEARCH_ALIASES = {
    BASE_FIRST_STEP: (*_HYBRID_WORDS, "teacher", "base model", "handover"),
    DISTILLED_CONTINUE: (*_HYBRID_WORDS, "student", "continue"),
    SKIP_FIRST_STEP: ("diversity", "distilled", "DMD2", "turbo", "lightning", "skip step"),
    DISTILLED_SCHEDULE: ("distilled", "DMD2", "turbo", "lightning", "LCM", "sigmas", "trailing"),
    X0_PREVIEW: ("x0", "x0 preview", "preview", "denoised", "prediction", "trajectory"),
    RECORD_X0_SAMPLER: ("x0", "preview", "record", "trajectory", "SamplerCustom"),
    DIVERSITY_METER: ("diversity", "seed variety", "DreamSim", "mode collapse", "variety", "meter"),
    DEMO_MODEL_LOADER: ("demo", "diversity", "digits", "offline"),
    DEMO_PROMPT: ("demo", "digits", "conditioning"),
}
