"""Demo Digit Models: the bundled base/distilled digit pair as ComfyUI's own MODEL, VAE and CONDITIONING.

The networks (``demo_model.py``) sit inside ``comfy.model_base.BaseModel``, wrapped in a stock ``ModelPatcher``:
the eps pair with an EPS ``model_sampling`` on SD's 1000-step beta schedule, the flow pair with ComfyUI's FLOW
one (ModelSamplingDiscreteFlow + CONST, shift 3). The VAE is ComfyUI's pixel-space VAE (what VAELoader's
"pixel_space" builds). So KSampler, the pack's samplers, VAE Decode and Save Image treat them as any other model
pair. The latent format class is the demo's own, so the pack's pair check refuses a demo model next to a real
one (and, by the noise parameterisation, an eps demo model next to a flow one).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.supported_models_base
import comfy.utils
import torch

from ..ddistill import protocol
from ..ddistill.demo_model import (
    FLOW_MULTIPLIER,
    FLOW_SHIFT,
    FLOW_STEPS,
    IMAGE_SIZE,
    LINEAR_END,
    LINEAR_START,
    DigitFlowStudent,
    DigitStudent,
    PosteriorMeanDenoiser,
    PosteriorMeanFlowDenoiser,
)
from .api import io, search_aliases

CATEGORY = "sampling/diversity distillation/demo"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "demo" / "weights"
BASE_FILE, STUDENT_FILE = "digits_base.safetensors", "digits_student.safetensors"
FLOW_STUDENT_FILE = "digits_flow_student.safetensors"
WEIGHT_SHA256 = {
    BASE_FILE: "d693b8deab3b02810094e10213290cd8ae098ac2432059baa44af09a542e2d02",
    STUDENT_FILE: "1e45e962f5903e21762ffc0abb8ef0cb93a80e8f575b80f096a25f97268a3448",
    FLOW_STUDENT_FILE: "a60f1ac0b6e501482687bd39e47f7e3dd9285894244d78a265c68c022a20563e",
}
EPS_PAIR = "digits eps (4-step lcm)"
FLOW_PAIR = f"digits flow (shift {FLOW_SHIFT:g}, {FLOW_STEPS}-step)"
PAIRS = [EPS_PAIR, FLOW_PAIR]  # the first is the default (what a workflow without a `pair` value gets)


class DemoWeightsError(RuntimeError):
    """Missing or corrupted demo weights."""


class DemoDigitLatent(comfy.latent_formats.LatentFormat):
    """32x32 RGB pixel-space latents of the demo digit models (scale 1); previews show them as they are."""

    latent_channels = 3

    def __init__(self):
        self.latent_rgb_factors = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


class DemoDigitConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {}
    latent_format = DemoDigitLatent
    sampling_settings = {"beta_schedule": "linear", "linear_start": LINEAR_START, "linear_end": LINEAR_END}
    supported_inference_dtypes = [torch.float32]
    memory_usage_factor = 1.0


class DemoDigitFlowConfig(DemoDigitConfig):
    """The flow pair: ComfyUI's ModelSamplingDiscreteFlow reads shift and multiplier from here."""

    sampling_settings = {"shift": FLOW_SHIFT, "multiplier": FLOW_MULTIPLIER}


class DemoDigitModel(comfy.model_base.BaseModel):
    """ComfyUI's BaseModel under its own name, so that messages (e.g. the pair check's) name the demo model."""


class DemoDigitFlowModel(DemoDigitModel):
    """The flow pair's models (their own name in the pair check's messages)."""


class _PairSpec(NamedTuple):
    base: type  # network classes of ddistill/demo_model.py
    student: type
    student_file: str
    config: type
    model: type
    model_type: str  # comfy.model_base.ModelType member


_PAIRS = {
    EPS_PAIR: _PairSpec(PosteriorMeanDenoiser, DigitStudent, STUDENT_FILE, DemoDigitConfig, DemoDigitModel, "EPS"),
    FLOW_PAIR: _PairSpec(
        PosteriorMeanFlowDenoiser,
        DigitFlowStudent,
        FLOW_STUDENT_FILE,
        DemoDigitFlowConfig,
        DemoDigitFlowModel,
        "FLOW",
    ),
}


def _train_command(name: str) -> str:
    return "python demo/train.py --pair flow" if name == FLOW_STUDENT_FILE else "python demo/train.py"


def verify_weights(name: str, weights_dir: Path = WEIGHTS_DIR, expected: dict | None = None) -> Path:
    """The path of a demo weight file after its sha256 check; DemoWeightsError says how to restore it."""
    path = Path(weights_dir) / name
    fix = (
        f"restore it with `git checkout -- demo/weights/{name}` in the pack folder, or retrain the pair with "
        f"`{_train_command(name)}` and update WEIGHT_SHA256 in nodes/demo_nodes.py"
    )
    if not path.is_file():
        raise DemoWeightsError(f"Demo Digit Models: the weight file {path} is missing; {fix}.")
    want = (expected or WEIGHT_SHA256)[name]
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != want:
        raise DemoWeightsError(
            f"Demo Digit Models: {path} is corrupted or changed (sha256 {got[:16]}..., expected {want[:16]}...); {fix}."
        )
    return path


def _patcher(unet_cls, state_dict: dict, unet_config: dict, name: str, pair: str = EPS_PAIR):
    spec = _PAIRS[pair]
    model = spec.model(
        spec.config(unet_config),
        model_type=getattr(comfy.model_base.ModelType, spec.model_type),
        device=comfy.model_management.unet_offload_device(),
        unet_model=unet_cls,
    )
    try:
        model.diffusion_model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise DemoWeightsError(
            f"Demo Digit Models: {name} does not fit the demo network ({str(e).splitlines()[0]}); "
            f"restore the file with git or retrain with `{_train_command(name)}`"
        ) from None
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def load_demo_pair(weights_dir: Path = WEIGHTS_DIR, expected: dict | None = None, pair: str = EPS_PAIR):
    """(base MODEL, distilled MODEL) of ``pair`` (one of PAIRS) as ModelPatchers, after the sha256 checks."""
    if pair not in _PAIRS:
        raise ValueError(f"pair: expected one of {PAIRS}, got {pair!r}")
    spec = _PAIRS[pair]
    base_sd = comfy.utils.load_torch_file(str(verify_weights(BASE_FILE, weights_dir, expected)), safe_load=True)
    student_sd = comfy.utils.load_torch_file(
        str(verify_weights(spec.student_file, weights_dir, expected)), safe_load=True
    )
    base_sd.pop("labels", None)  # the digits' classes (kept for the demo report), not a network weight
    images = base_sd.get("images")
    if images is None or images.ndim != 2:
        raise DemoWeightsError(f"Demo Digit Models: {BASE_FILE} holds no [N, 64] 'images' tensor; restore it with git")
    base = _patcher(spec.base, base_sd, {"num_images": images.shape[0]}, BASE_FILE, pair)
    student = _patcher(spec.student, student_sd, {}, spec.student_file, pair)
    return base, student


def pixel_space_vae():
    """ComfyUI's own pixel-space VAE (IMAGE in [0, 1] <-> latent in [-1, 1], same size)."""
    return comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})


def unconditional() -> list:
    """A CONDITIONING for the unconditional demo models (they ignore it; samplers need one)."""
    return [[torch.zeros(1, 1, 1), {}]]


class DemoDigitModels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.DEMO_MODEL_LOADER,
            **search_aliases(protocol.DEMO_MODEL_LOADER),
            display_name="Demo Digit Models (diversity distillation)",
            category=CATEGORY,
            description=(
                "The bundled demo pairs, no download needed: a base diffusion model of scikit-learn's handwritten "
                "digits (the exact posterior-mean denoiser of 1297 digits; good with euler, 30-50 steps) and a "
                "student distilled from it with Distribution Matching Distillation. Two pairs (input 'pair'): "
                "SD-style eps models with a 4-step student (lcm sampler, lcm schedule), or rectified-flow models "
                f"(ComfyUI's FLOW sampling, shift {FLOW_SHIFT:g}) with an {FLOW_STEPS}-step student (lcm sampler, "
                f"simple schedule). Images are {IMAGE_SIZE}x{IMAGE_SIZE} RGB in pixel space: make the latent with "
                f"EmptyChromaRadianceLatentImage at {IMAGE_SIZE}x{IMAGE_SIZE} (or, for stock samplers, Empty Latent "
                f"Image at {IMAGE_SIZE * 8}x{IMAGE_SIZE * 8}, since ComfyUI divides by 8). "
                "The models are unconditional: give them a Demo Digit Prompt."
            ),
            inputs=[
                io.Combo.Input(
                    "pair",
                    options=PAIRS,
                    default=EPS_PAIR,
                    optional=True,
                    tooltip=(
                        f"'{EPS_PAIR}': EPS models on SD's 1000-step schedule, the student takes 4 lcm steps "
                        f"(lcm schedule). '{FLOW_PAIR}': rectified-flow models (ComfyUI's FLOW sampling, shift "
                        f"{FLOW_SHIFT:g}), the student takes {FLOW_STEPS} lcm steps on the simple schedule. "
                        "Both share the same digits and latents; a base of one pair cannot run with the other "
                        "pair's student (the pair check refuses it)."
                    ),
                )
            ],
            outputs=[
                io.Model.Output(display_name="base_model", tooltip="Base (teacher): exact posterior-mean denoiser."),
                io.Model.Output(
                    display_name="distilled_model",
                    tooltip=f"DMD student: 4 steps (eps pair) or {FLOW_STEPS} steps (flow pair), lcm sampler.",
                ),
                io.Vae.Output(display_name="vae", tooltip="ComfyUI's pixel-space VAE (32x32 latents are the images)."),
            ],
        )

    @classmethod
    def execute(cls, pair: str = EPS_PAIR) -> io.NodeOutput:
        base, student = load_demo_pair(pair=pair)
        return io.NodeOutput(base, student, pixel_space_vae())


class DemoDigitPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.DEMO_PROMPT,
            **search_aliases(protocol.DEMO_PROMPT),
            display_name="Demo Digit Prompt",
            category=CATEGORY,
            description=(
                "Stands where a text encoder would for the unconditional demo digit models: gives the "
                "CONDITIONING that samplers need (connect it to positive and negative). The text is not "
                "used by the models; it keeps graphs in the usual shape, e.g. for the runner's 'prompt'."
            ),
            inputs=[
                io.String.Input(
                    "text",
                    default="a handwritten digit",
                    tooltip="Not read by the demo models (they are unconditional).",
                )
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, text: str) -> io.NodeOutput:
        return io.NodeOutput(unconditional())


NODES = [DemoDigitModels, DemoDigitPrompt]
