"""Sampling segments through ComfyUI's own functions (no copied loop, no global patching).

A segment is one ``comfy.sample.sample_custom`` call: ComfyUI loads the model through
``model_management`` (offloading what does not fit), drives its progress bar and live preview, and
honours interrupts. The pack adds a callback that records each step's x̂0 on the CPU (``recorder.py``).
"""

from __future__ import annotations

import comfy.k_diffusion.sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ..ddistill.handover import Handover
from ..ddistill.pairing import NOISE_FAMILY, ModelInfo, all_finite, check_latent, conditioning_width
from ..ddistill.protocol import HANDOVER_KEY, TRAJECTORY_KEY
from ..ddistill.schedules import SEED_LIMIT, TIMESTEP_SCHEDULES, ScheduleError, sigmas_from_timesteps
from ..ddistill.trajectory import Frame, Trajectory
from .recorder import noise_amplification, patcher_recorder

PACK_SCHEDULERS = list(TIMESTEP_SCHEDULES)
SCHEDULERS = PACK_SCHEDULERS + [s for s in comfy.samplers.SCHEDULER_NAMES if s not in PACK_SCHEDULERS]
SAMPLERS = list(comfy.samplers.SAMPLER_NAMES)


def sampling_description(ms) -> str:
    """A model_sampling object as the schedule sees it: its ComfyUI schedule class and parameters (shift,
    multiplier of flow models; the sigma range of discrete ones)."""
    mro = [c.__name__ for c in type(ms).__mro__]
    kind = next((n for n in mro if n.startswith("ModelSampling") and n != "ModelSampling"), mro[0])
    params = [f"{name} {float(getattr(ms, name)):.4g}" for name in ("shift", "multiplier") if hasattr(ms, name)]
    if not params:
        params = [f"sigmas {float(ms.sigma_min):.4g}..{float(ms.sigma_max):.4g}"]
    return f"{kind} ({', '.join(params)})"


def model_info(model) -> ModelInfo:
    """What the pair check needs to know about a ComfyUI MODEL (a ModelPatcher), with its patches applied as
    ``get_model_object`` sees them (a ModelSamplingSD3 / ModelSamplingAuraFlow shift patch included)."""
    ms = model.get_model_object("model_sampling")
    prediction = next((c.__name__ for c in type(ms).__mro__ if c.__name__ in NOISE_FAMILY), type(ms).__name__)
    fmt = model.get_model_object("latent_format")
    return ModelInfo(
        name=type(model.model).__name__,
        prediction=prediction,
        latent_format=type(fmt).__name__,
        latent_channels=int(fmt.latent_channels),
        sigma_min=float(ms.sigma_min),
        sigma_max=float(ms.sigma_max),
        latent_dims=int(getattr(fmt, "latent_dimensions", 2)),
        sampling=sampling_description(ms),
        conditioning_width=conditioning_width(model.model.model_config.unet_config),
    )


def model_schedule(model, steps: int, scheduler: str, sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """The distilled model's sigmas: a connected SIGMAS input as given, else the paper's timestep schedules or any
    ComfyUI scheduler."""
    if sigmas is not None:
        return sigmas.cpu().float()
    ms = model.get_model_object("model_sampling")
    if scheduler in TIMESTEP_SCHEDULES:
        table = getattr(ms, "sigmas", None)
        if table is None:
            raise ScheduleError(
                f"scheduler: '{scheduler}' needs a model with discrete training timesteps; "
                "choose one of ComfyUI's schedulers or connect a SIGMAS input"
            )
        return sigmas_from_timesteps(table, TIMESTEP_SCHEDULES[scheduler](steps, num_train_timesteps=len(table)))
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ScheduleError(f"scheduler: unknown scheduler '{scheduler}'; choose one of {SCHEDULERS}")
    return comfy.samplers.calculate_sigmas(ms, scheduler, steps).cpu().float()


def schedule_amplification(model, sigmas: torch.Tensor) -> torch.Tensor:
    return noise_amplification(model.get_model_object("model_sampling"), sigmas)


def check_inputs(
    model, latent: dict, positive, negative, info: ModelInfo, role: str, latent_name: str = "latent_image"
) -> dict:
    """Validate a LATENT (the node input ``latent_name``) and its conditioning against a model; return the LATENT
    with an empty latent's channels fitted to the model (as ComfyUI's samplers do before making noise)."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim < 4:
        raise ValueError(f"{latent_name}: expected a LATENT with a {info.latent_shape} 'samples' tensor")
    if not all_finite(samples):
        raise ValueError(
            f"{latent_name}: the latent contains NaN or inf values; regenerate it (e.g. with "
            "Empty Latent Image) or check the node that produced it"
        )
    samples = comfy.sample.fix_empty_latent_channels(model, samples)  # an empty latent fits any model, as in stock
    check_latent(info, samples.shape[1], role, latent_name, samples.ndim)
    batch = samples.shape[0]
    width = info.conditioning_width
    for name, cond in (("positive", positive), ("negative", negative)):
        for c in cond or []:
            cb = c[0].shape[0]
            if width is not None and c[0].ndim == 3 and c[0].shape[-1] != width:
                raise ValueError(
                    f"{name}: the conditioning has width {c[0].shape[-1]} but {role} expects {width} ({info.name}); "
                    f"encode the prompt with the text encoder that belongs to {role}"
                )
            if cb not in (1, batch):
                raise ValueError(
                    f"{name}: the conditioning has batch size {cb} but the latent has {batch}; "
                    f"use one conditioning (batch 1) for all latents or exactly {batch}"
                )
    return {**latent, "samples": samples}


def run_segment(
    model,
    positive,
    negative,
    latent: dict,
    noise: torch.Tensor,
    cfg: float,
    sampler_name: str,
    sigmas: torch.Tensor,
    seed: int,
    label: str,
    step_offset: int,
) -> tuple[torch.Tensor, tuple[Frame, ...]]:
    """One ``comfy.sample.sample_custom`` call on ``sigmas``; returns the samples and the recorded frames."""
    latent_image = latent["samples"]
    recorder = patcher_recorder(model, sigmas, label, step_offset)
    try:
        samples = comfy.sample.sample_custom(
            model,
            noise,
            cfg,
            comfy.samplers.sampler_object(sampler_name),
            sigmas,
            positive,
            negative,
            latent_image,
            noise_mask=latent.get("noise_mask"),
            callback=recorder,
            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
            seed=seed,
        )
    finally:
        recorder.flush()
    return samples, tuple(recorder.frames)


def check_seed(model, seed: int, name: str = "seed") -> None:
    """A named error for the seed 2^64 - 1 where this ComfyUI's noise sampler cannot take it (0.33 on the CPU seeds
    its generator with ``seed + 1``; stock KSampler fails there too) instead of a traceback from inside the sampler.
    Seeds the pack derives never reach it (``ddistill.schedules.derive_seed``)."""
    if int(seed) != SEED_LIMIT:
        return
    device = getattr(model, "load_device", None) or torch.device("cpu")
    try:
        comfy.k_diffusion.sampling.default_noise_sampler(torch.zeros(1, device=device), seed=int(seed))
    except (OverflowError, RuntimeError, ValueError):
        raise ValueError(
            f"{name}: {SEED_LIMIT} (2^64 - 1) is one more than this ComfyUI's noise sampler accepts on {device} "
            f"(it seeds its generator with seed + 1); use a seed up to {SEED_LIMIT - 1}"
        ) from None


def initial_noise(latent: dict, seed: int) -> torch.Tensor:
    """ComfyUI's own seeded initial noise (as KSampler / RandomNoise make it, batch_index honoured)."""
    return comfy.sample.prepare_noise(latent["samples"], seed, latent.get("batch_index"))


def no_noise(latent: dict) -> torch.Tensor:
    """Zero noise (as DisableNoise makes it): a continuation starts from the handed-over latent itself."""
    s = latent["samples"]
    return torch.zeros(s.shape, dtype=s.dtype, layout=s.layout, device="cpu")


def output_latent(latent: dict, samples: torch.Tensor, trajectory: Trajectory, handover: Handover | None) -> dict:
    out = {k: v for k, v in latent.items() if k != HANDOVER_KEY}
    out["samples"] = samples
    out[TRAJECTORY_KEY] = trajectory
    if handover is not None:
        out[HANDOVER_KEY] = handover
    return out
