"""Can two models share a latent at a sigma? (pure Python, no ComfyUI).

A hybrid hands a latent x_k at sigma_k from one model to another. That is exact when both models
write a noisy latent the same way (the same noise parameterisation) in the same latent space. The
prediction target may differ: eps, v and x0 models all write x = x0 + sigma * eps in ComfyUI and each
model's own ``model_sampling`` turns its output into x̂0, so SD 2.1 (v) with SD-Turbo (eps) is fine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class PairError(ValueError):
    """Two models that cannot share a latent."""


# ComfyUI model_sampling prediction classes -> how they write a noisy latent.
NOISE_FAMILY = {
    "EPS": "variance-exploding sigma space (x = x0 + sigma*eps)",
    "V_PREDICTION": "variance-exploding sigma space (x = x0 + sigma*eps)",
    "EDM": "variance-exploding sigma space (x = x0 + sigma*eps)",
    "X0": "variance-exploding sigma space (x = x0 + sigma*eps)",
    "CONST": "rectified flow (x = (1 - sigma)*x0 + sigma*eps)",
}


# unet_config keys that hold the width of the text conditioning each model family expects, in lookup order:
# SD1.x/SDXL/SD2 context_dim, Flux context_in_dim, Qwen-Image joint_attention_dim, Lumina 2 / Z-Image cap_feat_dim,
# Wan text_dim (SD3 keeps it in context_embedder_config, see conditioning_width).
CONDITIONING_WIDTH_KEYS = ("context_dim", "context_in_dim", "joint_attention_dim", "cap_feat_dim", "text_dim")


def conditioning_width(unet_config: dict) -> int | None:
    """The last dimension of the text conditioning a model takes, read from its ComfyUI unet_config, or None."""
    for key in CONDITIONING_WIDTH_KEYS:
        if isinstance(unet_config.get(key), int):
            return unet_config[key]
    embedder = unet_config.get("context_embedder_config") or {}
    width = (embedder.get("params") or {}).get("in_features")
    return width if isinstance(width, int) else None


@dataclass(frozen=True)
class ModelInfo:
    name: str  # model class, e.g. "SDXL"
    prediction: str  # model_sampling prediction class, e.g. "EPS", "V_PREDICTION", "CONST"
    latent_format: str  # latent format class, e.g. "SDXL", "SD15"
    latent_channels: int
    sigma_min: float
    sigma_max: float
    latent_dims: int = 2  # spatial dimensions of a latent: 2 (images), 3 (video / Wan-VAE latents [B, C, T, H, W])
    sampling: str = ""  # the noise schedule as ComfyUI parameterises it, e.g. "ModelSamplingFlux (shift 1.15)"
    conditioning_width: int | None = None  # text conditioning width the model expects (None: unknown)

    @property
    def latent_shape(self) -> str:
        return (
            "[batch, channels, height, width]" if self.latent_dims == 2 else "[batch, channels, frames, height, width]"
        )

    @property
    def family(self) -> str:
        return NOISE_FAMILY.get(self.prediction, f"unknown ({self.prediction})")

    @property
    def variance_preserving_noise(self) -> bool:
        return self.prediction != "CONST"

    def describe(self) -> str:
        return (
            f"{self.name} ({self.prediction} prediction, {self.family}, {self.latent_format} latents "
            f"with {self.latent_channels} channels)"
        )


def check_pair(
    first: ModelInfo, second: ModelInfo, first_role: str = "base_model", second_role: str = "distilled_model"
) -> None:
    """Raise PairError naming both models' types unless a latent can pass from ``first`` to ``second``."""
    problems = []
    if first.latent_format != second.latent_format or first.latent_channels != second.latent_channels:
        problems.append(
            f"their latent spaces differ ({first.latent_format}/{first.latent_channels} channels vs "
            f"{second.latent_format}/{second.latent_channels} channels)"
        )
    if first.latent_dims != second.latent_dims:
        problems.append(f"their latents have {first.latent_dims} and {second.latent_dims} spatial dimensions")
    if first.family != second.family:
        problems.append(f"they write noisy latents differently ({first.family} vs {second.family})")
    if problems:
        raise PairError(
            f"{first_role} is {first.describe()} and {second_role} is {second.describe()}: "
            + " and ".join(problems)
            + ". Pair a distilled model with the base model it was distilled from (e.g. SDXL base with DMD2, "
            "SD 2.1 with SD-Turbo, PixArt-alpha with PixArt-delta, Z-Image with Z-Image-Turbo, Qwen-Image with its "
            "Lightning LoRA, SD3.5 Large with SD3.5 Large Turbo, FLUX.1-dev with FLUX.1-schnell, Wan 2.2 with its "
            "Lightning LoRAs)."
        )


def sampling_note(base: ModelInfo, distilled: ModelInfo, schedule_from: str) -> str | None:
    """A note when the two models sample with different noise schedules (class, shift): which one the schedule
    follows and how to change that. None when they agree."""
    if base.sampling == distilled.sampling:
        return None
    follows = "distilled_model's" if schedule_from == "distilled_model" else "base_model's"
    hint = (
        ""
        if schedule_from == "distilled_model"
        else " Connect the distilled model to Base First Step's distilled_model input so that the schedule is the "
        "distilled model's."
    )
    return (
        f"base_model samples with {base.sampling or base.prediction} and distilled_model with "
        f"{distilled.sampling or distilled.prediction}; the schedule follows {follows}.{hint}"
    )


def check_latent(
    info: ModelInfo, channels: int, role: str, input_name: str = "latent_image", ndim: int | None = None
) -> None:
    """Raise PairError when a latent's channel count (or, given ``ndim``, its dimensionality) does not fit."""
    if ndim is not None and ndim - 2 != info.latent_dims:
        raise PairError(
            f"{input_name}: the latent has {ndim} dimensions but {role} is {info.describe()}, which takes "
            f"{info.latent_shape} latents. Make the latent with this model family's own latent node (e.g. Empty "
            "Latent Image for SD/SDXL/Flux, EmptySD3LatentImage for SD3 and Qwen-Image, EmptyHunyuanLatentVideo or "
            "Wan's latent nodes for Wan) or its VAE Encode."
        )
    if channels != info.latent_channels:
        raise PairError(
            f"{input_name}: the latent has {channels} channels but {role} is {info.describe()}. "
            "Make the latent with this model family (e.g. an Empty Latent Image for SD1.x/SDXL, "
            "or a VAE Encode with the model's own VAE)."
        )


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``, in one float64 reduction (NaN and inf propagate through a sum; float64 cannot
    overflow on float32/16 values), without the element-wise mask of ``isfinite(t).all()``, which costs about 5 ms
    of host time per SDXL latent at batch 1 (``benchmarks/profile_batch1.py`` measures that path)."""
    if t.device.type == "mps":  # no float64 there
        return bool(torch.isfinite(t).all())
    return bool(torch.isfinite(t.sum(dtype=torch.float64)))
