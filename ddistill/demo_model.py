"""The demo digit model pair as plain torch modules (no ComfyUI import).

Images are scikit-learn's 8x8 handwritten digits, upsampled 4x (nearest) to 32x32 and written as RGB
in ComfyUI's pixel-space latent ([-1, 1], 3 channels, latent scale 1). Every such image is constant
on 4x4x3 blocks, so a noisy latent x = x0 + sigma*eps carries all its information about x0 in its
block means ("digit space", 64 values) where the noise has std sigma/sqrt(48).

Both networks are EPS models on the SD 1.x/SDXL 1000-step scaled-linear beta schedule, called as a
ComfyUI UNet is: ``forward(xc, t)`` with xc = x / sqrt(1 + sigma^2) and t the training timestep.
- ``PosteriorMeanDenoiser`` (base): the exact denoiser of the training digits, E[x0 | x_t], a
  softmax-weighted mean of the stored images (closed form, no learned weights).
- ``DigitStudent`` (distilled): a small MLP with EDM preconditioning, trained by ``demo/train.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 32  # pixels (= latent size: pixel-space latents)
DIGIT_SIZE = 8  # the dataset's resolution
UPSCALE = IMAGE_SIZE // DIGIT_SIZE
CHANNELS = 3
DIGIT_DIM = DIGIT_SIZE * DIGIT_SIZE
NOISE_SHRINK = math.sqrt(UPSCALE * UPSCALE * CHANNELS)  # block means shrink the noise std by this
LINEAR_START, LINEAR_END, NUM_TIMESTEPS = 0.00085, 0.012, 1000  # SD's "linear" (scaled-linear) betas


class DemoInputError(ValueError):
    """A latent that the demo digit models cannot denoise."""


def training_sigmas() -> torch.Tensor:
    """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..999 (SD 1.x/SDXL betas, as ComfyUI computes them)."""
    betas = torch.linspace(LINEAR_START**0.5, LINEAR_END**0.5, NUM_TIMESTEPS, dtype=torch.float64) ** 2
    abar = torch.cumprod(1.0 - betas, dim=0)
    return ((1 - abar) / abar).sqrt().float()


def sigma_at(timestep: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """sigma at (possibly fractional) timesteps, interpolating log sigma as ComfyUI does."""
    t = timestep.float().clamp(0, len(log_sigmas) - 1)
    lo = t.floor().long()
    hi = t.ceil().long()
    w = t - lo
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()


def to_digits(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, 32, 32] pixel-space latents -> [B, 64] block means (the orthogonal projection onto digits)."""
    return F.avg_pool2d(x.mean(dim=1, keepdim=True), UPSCALE).flatten(1)


def from_digits(d: torch.Tensor) -> torch.Tensor:
    """[B, 64] digits in [-1, 1] -> [B, 3, 32, 32] blocky RGB latents."""
    img = d.reshape(-1, 1, DIGIT_SIZE, DIGIT_SIZE)
    return F.interpolate(img, scale_factor=UPSCALE, mode="nearest").expand(-1, CHANNELS, -1, -1).contiguous()


def posterior_mean(y: torch.Tensor, sigma_d: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E[x0 | y] for y = x0 + sigma_d * eps with x0 uniform over ``images`` [N, 64] (per-row sigma_d)."""
    d2 = torch.cdist(y.float(), images.float()).square()
    logits = -d2 / (2 * sigma_d.float().reshape(-1, 1).square())
    return torch.softmax(logits, dim=1) @ images.float()


def check_latent(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1:] != (CHANNELS, IMAGE_SIZE, IMAGE_SIZE):
        raise DemoInputError(
            f"latent_image: the demo digit models make {IMAGE_SIZE}x{IMAGE_SIZE} pixel-space latents "
            f"[batch, {CHANNELS}, {IMAGE_SIZE}, {IMAGE_SIZE}], got {list(x.shape)}. Use EmptyChromaRadianceLatentImage "
            f"of {IMAGE_SIZE}x{IMAGE_SIZE} (or an Empty Latent Image of {IMAGE_SIZE * 8}x{IMAGE_SIZE * 8}: ComfyUI "
            "divides by 8)."
        )


class _DigitEpsModel(nn.Module):
    """Shared ComfyUI-UNet interface: (xc, t) -> eps, computed through a digit-space x0 prediction."""

    def __init__(self, device=None, **_unused):
        super().__init__()
        self.dtype = torch.float32
        self.register_buffer("log_sigmas", training_sigmas().log(), persistent=False)

    def predict_x0(self, y: torch.Tensor, sigma_d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, xc: torch.Tensor, timesteps: torch.Tensor, context=None, **_kwargs) -> torch.Tensor:
        check_latent(xc)
        sigma = sigma_at(timesteps.reshape(-1).to(self.log_sigmas.device), self.log_sigmas)
        sigma = sigma.expand(xc.shape[0]).to(xc.device).reshape(-1, 1, 1, 1)
        x = xc.float() * (sigma.square() + 1).sqrt()
        x0 = from_digits(self.predict_x0(to_digits(x), sigma.reshape(-1) / NOISE_SHRINK))
        return (x - x0) / sigma


class PosteriorMeanDenoiser(_DigitEpsModel):
    """The base model: the exact posterior-mean denoiser of the stored training digits."""

    def __init__(self, num_images: int = 1, device=None, **_unused):
        super().__init__()
        self.register_buffer("images", torch.zeros(num_images, DIGIT_DIM, device=device))

    def predict_x0(self, y, sigma_d):
        return posterior_mean(y, sigma_d, self.images)


class DigitStudent(_DigitEpsModel):
    """The distilled model: an MLP x0-predictor with EDM preconditioning (c_skip, c_out, c_in)."""

    def __init__(self, hidden: int = 512, sigma_data: float = 0.6, fourier: int = 16, device=None, **_unused):
        super().__init__()
        self.sigma_data = sigma_data
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), fourier)), persistent=False)
        self.net = nn.Sequential(
            nn.Linear(DIGIT_DIM + 2 * fourier, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, DIGIT_DIM),
        )
        if device is not None:
            self.to(device)

    def predict_x0(self, y, sigma_d):
        s = sigma_d.float().reshape(-1, 1).expand(y.shape[0], 1)
        sd2 = self.sigma_data**2
        c_in, c_skip, c_out = (
            (s.square() + sd2).rsqrt(),
            sd2 / (s.square() + sd2),
            s * self.sigma_data * (s.square() + sd2).rsqrt(),
        )
        e = s.log() / 4 * self.freqs
        return c_skip * y + c_out * self.net(torch.cat([y * c_in, e.sin(), e.cos()], dim=1))
