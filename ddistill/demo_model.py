"""The demo digit model pair as plain torch modules (no ComfyUI import).

Images are scikit-learn's 8x8 handwritten digits, upsampled 4x (nearest) to 32x32 and written as RGB
in ComfyUI's pixel-space latent ([-1, 1], 3 channels, latent scale 1). Every such image is constant
on 4x4x3 blocks, so a noisy latent x = x0 + sigma*eps carries all its information about x0 in its
block means ("digit space", 64 values) where the noise has std sigma/sqrt(48).

Two pairs share the training digits and the latent format:
- eps pair: EPS models on the SD 1.x/SDXL 1000-step scaled-linear beta schedule, called as a ComfyUI UNet
  is: ``forward(xc, t)`` with xc = x / sqrt(1 + sigma^2) and t the training timestep.
  ``PosteriorMeanDenoiser`` (base): the exact denoiser of the training digits, E[x0 | x_t], a
  softmax-weighted mean of the stored images (closed form, no learned weights).
  ``DigitStudent`` (distilled, 4-step lcm): a small MLP with EDM preconditioning, trained by ``demo/train.py``.
- flow pair: rectified-flow models in ComfyUI's CONST parameterisation, x = (1 - sigma) x0 + sigma eps, on
  ModelSamplingDiscreteFlow with shift 3 (multiplier 1000): ``forward(x, t)`` with the unscaled x and
  t = 1000 sigma returns the velocity v = (x - x0_hat) / sigma (ComfyUI's denoised = x - sigma v). In digit
  space a flow latent is y = (1 - sigma) d0 + sigma / sqrt(48) eps'.
  ``PosteriorMeanFlowDenoiser`` (base): the same exact denoiser, in flow form.
  ``DigitFlowStudent`` (distilled, 8-step lcm on the shift-3 ``simple`` schedule): the same MLP.
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
FLOW_SHIFT, FLOW_MULTIPLIER, FLOW_STEPS = 3.0, 1000, 8  # the flow pair's ModelSamplingDiscreteFlow, student steps


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


def scaled_posterior_mean(
    y: torch.Tensor, alpha: torch.Tensor, sigma_d: torch.Tensor, images: torch.Tensor
) -> torch.Tensor:
    """E[x0 | y] for y = alpha * x0 + sigma_d * eps, x0 uniform over ``images`` [N, 64] (per-row alpha, sigma_d).

    Equal to ``posterior_mean(y / alpha, sigma_d / alpha, images)``, written without the division: the logits
    -|y - alpha m|^2 / (2 sigma_d^2) lose the row constant |y|^2, which leaves alpha (y.m - alpha |m|^2 / 2) /
    sigma_d^2. At alpha = 0 (pure noise) every logit is 0 and the result is the data mean, without NaN.
    """
    imgs = images.float()
    a = alpha.float().reshape(-1, 1)
    s2 = sigma_d.float().reshape(-1, 1).square()
    logits = a * (y.float() @ imgs.T - 0.5 * a * imgs.square().sum(1)) / s2
    return torch.softmax(logits, dim=1) @ imgs


def flow_noising(d0: torch.Tensor, sigma, noise: torch.Tensor) -> torch.Tensor:
    """A digit-space flow latent: (1 - sigma) d0 + sigma / sqrt(48) noise (the block means of ComfyUI's
    noise_scaling of a 3x32x32 latent); ``sigma`` a float or a tensor that broadcasts against ``d0``."""
    return (1 - sigma) * d0 + sigma / NOISE_SHRINK * noise


def flow_posterior_mean(y: torch.Tensor, sigma: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E[d0 | y] for digit-space flow latents y = (1 - sigma) d0 + sigma/sqrt(48) eps' (per-row flow sigma):
    the eps pair's denoiser at digit-space noise sigma / ((1 - sigma) sqrt(48)) applied to y / (1 - sigma);
    the data mean at sigma = 1."""
    sigma = sigma.float()
    return scaled_posterior_mean(y, 1 - sigma, sigma / NOISE_SHRINK, images)


def flow_training_sigmas(shift: float = FLOW_SHIFT, timesteps: int = 1000, multiplier: int = FLOW_MULTIPLIER):
    """The sigma table of ComfyUI's ModelSamplingDiscreteFlow (float32, ascending): the shifted
    sigma(t) = shift t / (1 + (shift - 1) t) at t = 1/timesteps .. 1, with the same float32 operations
    (t passes through timestep units and back) so that the values are ComfyUI's bit for bit."""
    t = (torch.arange(1, timesteps + 1, 1) / timesteps) * multiplier / multiplier
    return t if shift == 1.0 else shift * t / (1 + (shift - 1) * t)


def flow_simple_sigmas(steps: int = FLOW_STEPS, shift: float = FLOW_SHIFT) -> torch.Tensor:
    """ComfyUI's ``simple`` scheduler on ModelSamplingDiscreteFlow(shift): ``steps`` table entries, evenly spaced
    from the top (index -(1 + floor(i * 1000 / steps))), then 0. For 8 steps and shift 3: 1, .955, .9, .833, .75,
    .643, .5, .3, 0."""
    table = flow_training_sigmas(shift)
    stride = len(table) / steps
    return torch.tensor([float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0])


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


def _student_mlp(module: nn.Module, hidden: int, sigma_data: float, fourier: int) -> None:
    """The students' network (both pairs): MLP (64 + 2 fourier) - hidden x3 - 64, Fourier noise features."""
    module.sigma_data = sigma_data
    module.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), fourier)), persistent=False)
    module.net = nn.Sequential(
        nn.Linear(DIGIT_DIM + 2 * fourier, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, DIGIT_DIM),
    )


class DigitStudent(_DigitEpsModel):
    """The distilled model: an MLP x0-predictor with EDM preconditioning (c_skip, c_out, c_in)."""

    def __init__(self, hidden: int = 512, sigma_data: float = 0.6, fourier: int = 16, device=None, **_unused):
        super().__init__()
        _student_mlp(self, hidden, sigma_data, fourier)
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


class _DigitFlowModel(nn.Module):
    """Shared ComfyUI FLOW interface: (x, t = 1000 sigma) -> velocity (x - x0) / sigma, computed through a
    digit-space x0 prediction from y = to_digits(x) = (1 - sigma) d0 + sigma/sqrt(48) eps'."""

    def __init__(self, device=None, **_unused):
        super().__init__()
        self.dtype = torch.float32
        self.sigma_min = float(flow_training_sigmas()[0])

    def predict_x0(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context=None, **_kwargs) -> torch.Tensor:
        check_latent(x)
        # the table's range, as the eps models clamp their timestep to 0..999 (sigma 0 would divide by 0)
        sigma = (timesteps.reshape(-1).float() / FLOW_MULTIPLIER).to(x.device).clamp(self.sigma_min, 1.0)
        sigma = sigma.expand(x.shape[0]).reshape(-1, 1, 1, 1)
        x = x.float()
        x0 = from_digits(self.predict_x0(to_digits(x), sigma.reshape(-1)))
        return (x - x0) / sigma


class PosteriorMeanFlowDenoiser(_DigitFlowModel):
    """The flow base model: the exact posterior-mean denoiser of the stored training digits, in flow form."""

    def __init__(self, num_images: int = 1, device=None, **_unused):
        super().__init__()
        self.register_buffer("images", torch.zeros(num_images, DIGIT_DIM, device=device))

    def predict_x0(self, y, sigma):
        return flow_posterior_mean(y, sigma, self.images)


class DigitFlowStudent(_DigitFlowModel):
    """The flow pair's distilled model: DigitStudent's MLP with EDM preconditioning written for a scaled latent
    y = a d0 + b eps (a = 1 - sigma, b = sigma/sqrt(48)): c_in = 1/sqrt(a^2 sd^2 + b^2), c_skip = a sd^2/(a^2 sd^2
    + b^2), c_out = b sd/sqrt(a^2 sd^2 + b^2), which is EDM's on y/a at noise b/a and stays finite at sigma = 1.
    The noise features embed log(b)/4, the digit-space noise std (the eps student embeds its own digit-space
    sigma the same way; b/a, infinite at sigma = 1, cannot be embedded)."""

    def __init__(self, hidden: int = 512, sigma_data: float = 0.6, fourier: int = 16, device=None, **_unused):
        super().__init__()
        _student_mlp(self, hidden, sigma_data, fourier)
        if device is not None:
            self.to(device)

    def predict_x0(self, y, sigma):
        s = sigma.float().reshape(-1, 1).expand(y.shape[0], 1)
        a, b = 1 - s, s / NOISE_SHRINK
        sd2 = self.sigma_data**2
        den = a.square() * sd2 + b.square()
        c_in, c_skip, c_out = den.rsqrt(), a * sd2 / den, b * self.sigma_data * den.rsqrt()
        e = b.log() / 4 * self.freqs
        return c_skip * y + c_out * self.net(torch.cat([y * c_in, e.sin(), e.cos()], dim=1))
