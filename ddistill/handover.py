"""What Base First Step hands to Distilled Continue, carried in the LATENT under ``protocol.HANDOVER_KEY``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .noise_level import HandoverPoint
from .pairing import ModelInfo


@dataclass(frozen=True)
class Handover:
    sigmas: torch.Tensor  # the rest of the schedule, sigmas[k:], starting at the handover sigma_k
    step_offset: int  # k: steps already taken (the continuation's first step index)
    sampler_name: str  # the update rule both segments use
    noise_seed: int  # seed of the continuation's own noise stream (derive_seed(seed, 1))
    source: ModelInfo  # the model that produced the latent, for the pair check
    schedule_from: str = "base_model"  # whose model_sampling made the schedule: "base_model" or "distilled_model"
    point: HandoverPoint | None = None  # where and why the base segment handed over (k, sigma, A, the rule)


def read_handover(latent, key: str) -> Handover | None:
    """The handover a LATENT carries, or None."""
    found = latent.get(key) if isinstance(latent, dict) else None
    return found if isinstance(found, Handover) else None
