"""Timestep schedules, the handover split and noise scales of the paper (pure torch, no ComfyUI).

Sigmas here are ComfyUI's "k-diffusion" sigmas: x_t = x0 + sigma * eps, sigma = sqrt((1 - abar) / abar).
"""

from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000
LCM_ORIGINAL_STEPS = 50


class ScheduleError(ValueError):
    """A schedule that cannot be split into a base segment and a continuation."""


def lcm_timesteps(
    steps: int, original_steps: int = LCM_ORIGINAL_STEPS, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> list[int]:
    """Timesteps of the LCM scheduler (DMD2, LCM): 4 steps give 999, 759, 499, 259.

    The scheduler keeps ``original_steps`` evenly spaced "origin" timesteps (19, 39, ..., 999) and picks
    ``steps`` of them at floor(linspace(0, original_steps, steps, endpoint=False)) from the top.
    """
    if steps < 1 or steps > original_steps:
        raise ScheduleError(f"steps: the lcm schedule needs 1..{original_steps} steps, got {steps}")
    c = num_train_timesteps // original_steps
    origin = [(i + 1) * c - 1 for i in range(original_steps)][::-1]
    return [origin[math.floor(i * original_steps / steps)] for i in range(steps)]


def trailing_timesteps(steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """ "Trailing" spacing (SDXL-Turbo, SDXL-Lightning): 4 steps give 999, 749, 499, 249."""
    if steps < 1 or steps > num_train_timesteps:
        raise ScheduleError(f"steps: the trailing schedule needs 1..{num_train_timesteps} steps, got {steps}")
    stride = num_train_timesteps / steps
    return [round(num_train_timesteps - i * stride) - 1 for i in range(steps)]


TIMESTEP_SCHEDULES = {"lcm": lcm_timesteps, "trailing": trailing_timesteps}


def sigmas_from_timesteps(sigma_table: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Sigmas at integer training timesteps (``sigma_table[t]``) followed by the final 0."""
    if len(sigma_table) <= max(timesteps):
        raise ScheduleError(f"timestep {max(timesteps)} is outside the model's {len(sigma_table)} training timesteps")
    picked = sigma_table.detach().float().cpu()[torch.tensor(timesteps)]
    return torch.cat([picked, picked.new_zeros(1)])


def step_count_problem(steps: int, base_steps: int | None, source: str = "steps") -> str | None:
    """The hybrid's rule on a schedule's length, as a message naming the input and the fix, or None.

    A schedule of N steps has N + 1 sigmas (the last one usually 0). The base model takes steps 0..k-1 and the
    continuation at least one step, so 1 <= k < N (``base_steps=None``: no base segment, N >= 2 still holds:
    Skip First Step drops one step and needs one left). ``source`` is where N comes from: the ``steps`` widget or
    a linked ``sigmas`` schedule, so that the fix names what the user can change.
    """
    longer = "raise steps" if source == "steps" else "connect a SIGMAS schedule with more values"
    if base_steps is not None and base_steps < 1:
        return f"base_steps: must be at least 1 (the base model takes the first step), got {base_steps}"
    if steps < 2:
        if source == "steps":
            return f"steps: {steps} is too few; use at least 2"
        need = (
            "the hybrid needs at least 2 (one for the base model, one for the distilled model)"
            if base_steps is not None
            else "skipping its first step leaves nothing to sample"
        )
        return f"{source}: the schedule has {steps} step(s); {need}; {longer}"
    if base_steps is not None and base_steps >= steps:
        return (
            f"base_steps: {base_steps} leaves no step for the distilled model in a {steps}-step schedule; use "
            f"base_steps <= {steps - 1} or {longer}"
        )
    return None


def check_schedule(sigmas: torch.Tensor, base_steps: int | None, name: str = "sigmas") -> None:
    """Raise ScheduleError unless ``sigmas`` (finite, non-increasing) can hand over after ``base_steps`` steps."""
    if sigmas is None or sigmas.ndim != 1 or sigmas.numel() == 0:
        raise ScheduleError(f"{name}: the schedule is empty; give steps >= 2 or a SIGMAS input with at least 3 values")
    if not torch.isfinite(sigmas).all():
        raise ScheduleError(f"{name}: the schedule contains NaN or inf values")
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ScheduleError(
            f"{name}: sigmas must not increase along the schedule, got {sigmas.tolist()}; give it "
            "from high noise to low (e.g. reverse it, or use a scheduler node's SIGMAS)"
        )
    problem = step_count_problem(sigmas.numel() - 1, base_steps, name)
    if problem:
        raise ScheduleError(problem)


def split_schedule(sigmas: torch.Tensor, base_steps: int, source: str = "sigmas") -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas[0:k+1], sigmas[k:]): the base segment ends where the continuation starts, at sigma_k."""
    check_schedule(sigmas, base_steps, source)
    return sigmas[: base_steps + 1], sigmas[base_steps:]


def split_at_sigma(sigmas: torch.Tensor, boundary: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the steps that start above ``boundary``, the rest) of a remaining schedule, for a chain of experts (Wan 2.2:
    the high-noise model down to its boundary sigma, the low-noise model after). The first part ends at the first
    sigma at or below the boundary, where the rest starts. ``boundary <= 0``, or one that no step ends below before
    the last, keeps the whole schedule (rest None)."""
    if boundary <= 0:
        return sigmas, None
    below = (sigmas <= boundary).nonzero().flatten().tolist()
    first = below[0] if below else sigmas.numel() - 1
    if first == 0:
        raise ScheduleError(
            f"end_at_sigma: {boundary:.4g} is at or above the first sigma of the schedule left "
            f"({float(sigmas[0]):.4g}), so this node would take no step; lower it (e.g. Wan 2.2's boundary "
            "0.875 for text-to-video), or set 0 to finish the schedule"
        )
    if first >= sigmas.numel() - 1:
        return sigmas, None
    return sigmas[: first + 1], sigmas[first:]


def unit_noise_scale(sigma: float, variance_preserving: bool = True) -> float:
    """Factor that turns N(0, 1) noise into the paper's pure-noise start at ``sigma`` (Skip First Step).

    The paper's code feeds pure noise x_t = eps at timestep t1: no signal term, and the variance the model's inputs
    have at t1 for unit-variance data (a DDPM x_t = sqrt(a) x0 + sqrt(1 - a) eps has variance a + (1 - a) = 1). The
    same rule in each of ComfyUI's parameterisations:
      - sigma space (eps / v / x0 models, x = x0 + sigma * eps): variance 1 + sigma^2, so sqrt(1 + sigma^2)
        (4.376 at t = 759 of SDXL);
      - rectified flow (x = (1 - sigma) x0 + sigma * eps): variance (1 - sigma)^2 + sigma^2, so
        sqrt((1 - sigma)^2 + sigma^2) (0.791 at sigma 0.75, FLUX.1-schnell's second step).
    """
    s = float(sigma)
    return math.sqrt(1.0 + s * s) if variance_preserving else math.sqrt((1.0 - s) ** 2 + s * s)


SEED_LIMIT = (1 << 64) - 1  # seeds are 0..2^64 - 1 (ComfyUI's seed widgets)
GOLDEN_64 = 0x9E3779B97F4A7C15


def derive_seed(seed: int, stream: int) -> int:
    """Seed of an independent noise stream derived from a user seed (64-bit, reproducible).

    stream 0 is the user seed itself; stream n > 0 adds n times the 64-bit golden-ratio constant (mod 2^64), so
    that neighbouring user seeds (s, s + 1) never share a derived stream. A derived seed is never 2^64 - 1:
    ComfyUI 0.33's CPU noise sampler seeds its generator with ``seed + 1``, which overflows there. The one user seed
    whose stream would land on it (7045075238040912874 for n = 1) takes instead the value the user seed 2^64 - 1
    takes (n * C - 1). So every other seed keeps its stream, and the only two seeds that share a derived stream are
    that one and 2^64 - 1, a seed ComfyUI 0.33 refuses on the CPU (``nodes/sampling.check_seed``).
    """
    seed, stream = int(seed), int(stream)
    if stream == 0:
        return seed
    derived = (seed + stream * GOLDEN_64) % (1 << 64)
    return derived if derived != SEED_LIMIT else (stream * GOLDEN_64 - 1) % (1 << 64)
