"""Where to hand over from the base model to the distilled model, as a noise level (pure torch, no ComfyUI).

The paper's Appendix A (eq. A.4, A.8): an error e in the model's noise prediction reaches x̂0 as
sqrt((1 - abar_t) / abar_t) * e, so its power is amplified by A = (1 - abar_t) / abar_t, the noise-to-signal
power ratio of the noisy latent. The diversity is lost where A is large; the paper hands over to the distilled model
at SDXL's t = 759, where A = sigma^2 = 18.2 (ComfyUI's sigma space, x = x0 + sigma * eps).

Every ComfyUI parameterisation writes a noisy latent as x = a(sigma) * x0 + b(sigma) * eps, so A = (b / a)^2:
  - sigma space (EPS, V_PREDICTION, EDM, X0; also COSMOS_RFLOW and V_PREDICTION_DDPM): a = 1, b = sigma, A = sigma^2;
  - rectified flow (CONST: SD3, FLUX, Z-Image, Qwen-Image, Wan, Krea 2): a = 1 - sigma, b = sigma,
    A = (sigma / (1 - sigma))^2 (infinite at sigma = 1, pure noise).
The node layer measures a and b from the model's own ``model_sampling.noise_scaling`` (so a parameterisation this
table does not know, or a CONST ``noise_scale``, is read as ComfyUI writes it) and this module decides.

The rule: hand over after the first step k >= 1 of the distilled model's schedule whose handover sigma_k has
A(sigma_k) <= A* (default: the paper's 18.2), or at the first sigma_k <= a given sigma. Its limits: A is a
per-element ratio for data of unit variance; latents are not (SDXL's scaled latents have about unit variance, flow
VAEs' latents are shifted and scaled to about it), and a larger image has more elements that average out the same
noise, which is why the flow models shift their schedules with resolution. A* is a starting point to calibrate
against (the handover sweep), not a law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedules import ScheduleError

PAPER_TIMESTEP = 759  # the paper's handover on SDXL: the second timestep of DMD2's 4-step lcm schedule
SD_BETAS = (0.00085, 0.012, 1000)  # SD 1.x / SDXL scaled-linear betas (ComfyUI's "linear")

SIGMA_SPACE = ("EPS", "V_PREDICTION", "EDM", "X0", "COSMOS_RFLOW", "V_PREDICTION_DDPM")
FLOW = ("CONST",)

RULE_STEPS = "steps"
RULE_AMPLIFICATION = "amplification"
RULE_SIGMA = "sigma"


def sd_sigma(timestep: int) -> float:
    """sigma = sqrt((1 - abar_t) / abar_t) of SD's 1000-step scaled-linear betas at an integer timestep."""
    start, end, n = SD_BETAS
    betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    abar = torch.cumprod(1.0 - betas, dim=0)[timestep]
    return float(((1 - abar) / abar).sqrt())


# SDXL's A at t = 759 is 18.15 (sigma 4.2606); one decimal, 18.2, so that a handover at exactly that timestep passes
# the rule whatever float rounding the model's sigma table has (A* = 18.15 would refuse ComfyUI's 18.152)
PAPER_AMPLIFICATION = round(sd_sigma(PAPER_TIMESTEP) ** 2, 1)


def amplification_from_scaling(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A = (b / a)^2 for latents written x = a * x0 + b * eps; inf where the signal coefficient is 0 (pure noise)."""
    signal, noise = signal.double(), noise.double()
    ratio = torch.where(signal.abs() > 0, noise / signal.where(signal.abs() > 0, torch.ones_like(signal)), math.inf)
    return ratio.square().float()


def amplification(sigmas: torch.Tensor, prediction: str) -> torch.Tensor:
    """A at each sigma, in closed form for the parameterisations of ComfyUI named by ``prediction`` (the
    model_sampling prediction class: "EPS", "CONST", ...)."""
    s = sigmas.double()
    if prediction in SIGMA_SPACE:
        return amplification_from_scaling(torch.ones_like(s), s)
    if prediction in FLOW:
        return amplification_from_scaling(1.0 - s, s)
    raise ScheduleError(f"no closed-form amplification for {prediction} latents; measure it from its model_sampling")


@dataclass(frozen=True)
class HandoverPoint:
    """Where a schedule hands over: after ``k`` steps, at ``sigma`` (= sigmas[k]) with amplification ``a``."""

    k: int
    sigma: float
    amplification: float
    rule: str  # RULE_STEPS, RULE_AMPLIFICATION or RULE_SIGMA
    target: float | None = None  # A* or the sigma asked for; None for RULE_STEPS

    def describe(self, steps: int) -> str:
        if self.rule == RULE_STEPS:
            why = "a step count"
        elif self.rule == RULE_AMPLIFICATION:
            why = f"the first step with A <= A* = {self.target:g}"
        else:
            why = f"the first sigma <= {self.target:g}"
        a = format_amplification(self.amplification)
        return f"k = {self.k} of {steps} steps, sigma {self.sigma:.4g}, A {a} ({why})"


def format_amplification(a: float) -> str:
    return "inf" if math.isinf(a) else f"{a:.3g}"


def _first(mask: torch.Tensor) -> int | None:
    hits = mask.nonzero().flatten().tolist()
    return hits[0] if hits else None


def resolve_handover(
    sigmas: torch.Tensor,
    amps: torch.Tensor,
    base_steps: int,
    a_star: float | None = None,
    sigma: float | None = None,
    names: tuple[str, str, str] = ("base_steps", "handover_amplification", "handover_sigma"),
) -> HandoverPoint:
    """The handover point of a schedule (``sigmas``: N + 1 values, ``amps``: A at each of them).

    ``base_steps`` >= 1 hands over after that many steps (the amplification rule is not consulted); 0 hands
    over by noise level: at the first sigma_k (k >= 1) at or below ``sigma`` when it is given and > 0, else at the
    first sigma_k with A <= ``a_star``. The continuation keeps at least one step (k <= N - 1). ``names`` are the node
    inputs the messages name.
    """
    steps_name, a_name, sigma_name = names
    n = sigmas.numel() - 1
    if base_steps < 0:
        raise ScheduleError(f"{steps_name}: 0 hands over by noise level, >= 1 after that many steps; got {base_steps}")
    if base_steps >= 1:
        if base_steps >= n:
            raise ScheduleError(
                f"{steps_name}: {base_steps} leaves no step for the distilled model in a {n}-step schedule; use "
                f"{steps_name} <= {n - 1}, or 0 to hand over by noise level"
            )
        return HandoverPoint(base_steps, float(sigmas[base_steps]), float(amps[base_steps]), RULE_STEPS)
    inner = sigmas[1:n]  # candidate handover sigmas: after step 1 .. N - 1
    if sigma is not None and sigma > 0:
        start = float(sigmas[0])
        if sigma > start:
            raise ScheduleError(
                f"{sigma_name}: {sigma:g} is above the schedule's start (sigma {start:.4g}); give a sigma below it, "
                f"e.g. {float(sigmas[min(1, n)]):.4g} (after the first step), or 0 to use {a_name}"
            )
        hit = _first(inner <= sigma)
        if hit is None:
            raise ScheduleError(
                f"{sigma_name}: the schedule reaches sigma <= {sigma:g} only at its last step (sigmas "
                f"{_listing(sigmas)}); raise it to at least {float(sigmas[n - 1]):.4g}, or raise steps"
            )
        k = hit + 1
        return HandoverPoint(k, float(sigmas[k]), float(amps[k]), RULE_SIGMA, float(sigma))
    if a_star is None or not a_star > 0 or math.isnan(a_star):
        raise ScheduleError(
            f"{a_name}: must be above 0, got {a_star}; the paper's handover is {PAPER_AMPLIFICATION} (SDXL, t = 759)"
        )
    hit = _first(amps[1:n] <= a_star)
    if hit is None:
        last = float(amps[n - 1])
        raise ScheduleError(
            f"{a_name}: no step before the last reaches A <= {a_star:g} (A along the schedule: "
            f"{', '.join(format_amplification(float(a)) for a in amps[: n + 1])}); raise it to at least "
            f"{format_amplification(last)}, add steps, or give {steps_name} >= 1"
        )
    k = hit + 1
    return HandoverPoint(k, float(sigmas[k]), float(amps[k]), RULE_AMPLIFICATION, float(a_star))


def _listing(sigmas: torch.Tensor) -> str:
    return ", ".join(f"{float(s):.4g}" for s in sigmas)
