"""Can two models share a latent at a sigma? (pure Python, no ComfyUI).

A hybrid hands a latent x_k at sigma_k from one model to another. That is exact when both models
write a noisy latent the same way (the same noise parameterisation) in the same latent space. The
prediction target may differ: eps, v and x0 models all write x = x0 + sigma * eps in ComfyUI and each
model's own ``model_sampling`` turns its output into x̂0, so SD 2.1 (v) with SD-Turbo (eps) is fine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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


@dataclass(frozen=True)
class ModelInfo:
    name: str  # model class, e.g. "SDXL"
    prediction: str  # model_sampling prediction class, e.g. "EPS", "V_PREDICTION", "CONST"
    latent_format: str  # latent format class, e.g. "SDXL", "SD15"
    latent_channels: int
    sigma_min: float
    sigma_max: float

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

    def to_dict(self) -> dict:
        return asdict(self)


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
    if first.family != second.family:
        problems.append(f"they write noisy latents differently ({first.family} vs {second.family})")
    if problems:
        raise PairError(
            f"{first_role} is {first.describe()} and {second_role} is {second.describe()}: "
            + " and ".join(problems)
            + ". Pair a distilled model with the base model it was distilled from (e.g. SDXL base with DMD2, "
            "SD 2.1 with SD-Turbo, PixArt-alpha with PixArt-delta)."
        )


def check_latent(info: ModelInfo, channels: int, role: str, input_name: str = "latent_image") -> None:
    """Raise PairError when a latent's channel count does not fit the model."""
    if channels != info.latent_channels:
        raise PairError(
            f"{input_name}: the latent has {channels} channels but {role} is {info.describe()}. "
            "Make the latent with this model family (e.g. an Empty Latent Image for SD1.x/SDXL, "
            "or a VAE Encode with the model's own VAE)."
        )
