"""The x̂0 trajectory that the pack's samplers record (pure torch, no ComfyUI).

Every sampler step computes x̂0 (ComfyUI's ``denoised``, eq. A.2 of the paper). The pack keeps one
frame per step, in the VAE's latent space (after ``process_latent_out``) and on the CPU, so that a
trajectory can be decoded by the VAE at any time without holding GPU memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Frame:
    step: int  # index of the step in the whole schedule (0 = first step)
    sigma: float  # sigma the model was evaluated at
    timestep: float  # the model's own timestep for that sigma
    model: str  # which model produced it ("base", "distilled", ...)
    x0: torch.Tensor  # [B, C, H, W] x̂0 in the VAE's latent space, on the CPU
    flow: bool = False  # a rectified-flow model (sigma in [0, 1] is the noise level; its timestep adds nothing)
    amplification: float | None = None  # A at sigma (ddistill.noise_level): how much a prediction error grows in x̂0

    @property
    def level(self) -> str:
        return noise_level(self.sigma, self.timestep, self.flow, self.amplification)


def noise_level(sigma: float, timestep: float, flow: bool, amplification: float | None = None) -> str:
    """Where a step sits on the noise schedule, as a label: ``sigma 14.6 · t 999`` for models with training
    timesteps (eps / v / x0 prediction), ``sigma 0.750`` for flow models, whose timestep is sigma itself (FLUX) or
    sigma x 1000 (SD3, Z-Image, Wan) and so says nothing more; `` · A 18.2`` after it when the amplification is
    known, the noise level the handover rule reads (Latin-1 only: Pillow's built-in font)."""
    level = f"sigma {sigma:.3f}" if flow else f"sigma {sigma:.3g} · t {timestep:.0f}"
    if amplification is None:
        return level
    return f"{level} · A {'inf' if math.isinf(amplification) else f'{amplification:.3g}'}"


@dataclass(frozen=True)
class Trajectory:
    frames: tuple[Frame, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.frames)

    def extended(self, frames) -> "Trajectory":
        return Trajectory(self.frames + tuple(frames))

    def stacked(self) -> torch.Tensor:
        """[steps, B, C, H, W]."""
        if not self.frames:
            raise ValueError("trajectory: it is empty; connect the trajectory output of a sampler that ran")
        return torch.stack([f.x0 for f in self.frames])
