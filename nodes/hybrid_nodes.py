"""Base First Step Sampler, Distilled Continue Sampler and Skip First Step (V3 nodes, thin)."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..ddistill import protocol
from ..ddistill.handover import Handover, read_handover
from ..ddistill.noise_level import PAPER_AMPLIFICATION, resolve_handover
from ..ddistill.pairing import check_pair, sampling_note
from ..ddistill.schedules import (
    check_schedule,
    derive_seed,
    split_at_sigma,
    split_schedule,
    unit_noise_scale,
)
from ..ddistill.trajectory import Trajectory
from .api import io, search_aliases
from .io_types import Trajectory_IO
from .lora_pair import base_segment_model, remember_distilled
from .sampling import (
    SAMPLERS,
    SCHEDULERS,
    check_inputs,
    check_seed,
    initial_noise,
    model_info,
    model_schedule,
    no_noise,
    output_latent,
    run_segment,
    schedule_amplification,
)

CATEGORY = "sampling/diversity distillation"
log = logging.getLogger(__name__)
CONTINUE_STREAM = 1  # derive_seed(seed, 1) seeds the continuation's noise stream

SCHEDULE_TIP = (
    "The distilled model's schedule, shared by both models. 'lcm' = LCM scheduler (DMD2, LCM: "
    "4 steps give t = 999, 759, 499, 259, the paper's default); 'trailing' = trailing spacing "
    "(SDXL-Turbo, SDXL-Lightning: 999, 749, 499, 249); the others are ComfyUI's schedulers."
)
SAMPLER_TIP = (
    "The distilled model's update rule, used for every step of both segments: lcm for DMD2/LCM, "
    "euler_ancestral for Turbo, euler for Lightning."
)


def _label_input(role: str):
    return io.String.Input(
        "model_label",
        default="",
        optional=True,
        tooltip=f"Name written on this node's x̂0 frames (x̂0 Preview grid and curve, live filmstrip). Empty: "
        f"'{role}', the node's role. Set it when another model sits here, e.g. the distilled model in "
        "Base First Step (the distilled-alone baseline, or Table E.1's replace-final order).",
    )


RULE_TIP = (
    "0 hands over by noise level: after the first step of the distilled model's schedule whose amplification "
    "A is at most handover_amplification (A = sigma^2 in SD/SDXL's sigma space, (sigma / (1 - sigma))^2 in "
    "rectified flow: how much an error of the model's prediction grows in x̂0, the paper's Appendix A), or at "
    "the first sigma at or below handover_sigma when that is above 0. With the default A* 18.2 (SDXL at t = 759, "
    "the paper's handover): SDXL + DMD2 lcm 4 steps k = 1; SD3.5 Large Turbo 4 steps k = 2; Wan 2.2 Lightning 4 "
    "steps (shift 5) k = 3; Z-Image-Turbo and Qwen-Image-Lightning 8 steps (shift 3) k = 4 (sigma 0.75); "
    "FLUX.1-schnell k = 1. The log and the x̂0 frames say which k, sigma and A were chosen."
)


def _sigma_input(name: str, tooltip: str):
    """An optional sigma widget whose 0 means "not set" (handover_sigma, end_at_sigma)."""
    return io.Float.Input(
        name, default=0.0, min=0.0, max=1000.0, step=0.001, round=0.0001, optional=True, tooltip=tooltip
    )


def _handover_inputs():
    """The noise-level handover's two widgets (Base First Step and Skip First Step), after the node's other inputs:
    a saved workflow stores widget values by position, so one that lacks these two keeps the values of the others."""
    return [
        io.Float.Input(
            "handover_amplification",
            default=PAPER_AMPLIFICATION,
            min=0.0,
            max=1.0e6,
            step=0.1,
            round=0.001,
            optional=True,
            tooltip="A*: with the step count at 0, hand over at the first step whose amplification A is at most "
            f"this. {PAPER_AMPLIFICATION} = SDXL's A at t = 759, the paper's handover. Lower: later handover, the "
            "base model shapes more of the image (more diversity, more of its look); higher: earlier. Calibrate "
            "your pair with the handover sweep (README).",
        ),
        _sigma_input(
            "handover_sigma",
            "0: use handover_amplification. Above 0 (with the step count at 0): hand over at the first "
            "sigma of the schedule at or below this value instead (e.g. 0.75 on a shift-3 flow schedule).",
        ),
    ]


def frame_label(model_label: str | None, role: str) -> str:
    return (model_label or "").strip() or role


def _schedule_inputs(min_steps: int = 2):
    """steps + scheduler + sampler_name + sigmas. ComfyUI's own range check enforces ``min_steps`` at queue time
    (one message on the steps input); rules between inputs (base_steps < steps, a linked SIGMAS) are checked when
    the node runs, with the message of ``ddistill.schedules.step_count_problem``."""
    return [
        io.Int.Input(
            "steps",
            default=4,
            min=min_steps,
            max=1000,
            tooltip="Steps of the distilled model's schedule (ignored when sigmas is connected). "
            + ("The hybrid needs at least 2: one for each model." if min_steps >= 2 else ""),
        ),
        io.Combo.Input("scheduler", options=SCHEDULERS, default="lcm", tooltip=SCHEDULE_TIP),
        io.Combo.Input("sampler_name", options=SAMPLERS, default="lcm", tooltip=SAMPLER_TIP),
        io.Sigmas.Input(
            "sigmas", optional=True, tooltip="Optional full schedule (N + 1 sigmas); overrides steps and scheduler."
        ),
    ]


class BaseFirstStepSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.BASE_FIRST_STEP,
            **search_aliases(protocol.BASE_FIRST_STEP),
            display_name="Base First Step Sampler",
            category=CATEGORY,
            description=(
                "Diversity distillation, part 1: the base model takes the first step(s) of the distilled "
                "model's schedule and hands the latent over at sigma_k. Connect its LATENT to a "
                "Distilled Continue Sampler."
            ),
            inputs=[
                io.Model.Input("base_model", tooltip="The base (teacher) model, e.g. SDXL base 1.0."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning encoded with the base model's CLIP."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning encoded with the base model's CLIP."),
                io.Latent.Input("latent_image"),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Seeds the initial noise (as KSampler) and, derived from it, the noise of the "
                    "continuation.",
                ),
                io.Float.Input(
                    "base_cfg",
                    default=1.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Guidance of the base step. 1.0 (conditional only) is the paper-consistent "
                    "setting; lower guidance gives more diversity (Fig. 7), higher follows the "
                    "prompt more and costs a second UNet pass.",
                ),
                io.Int.Input(
                    "base_steps",
                    default=0,
                    min=0,
                    max=999,
                    tooltip="k: how many steps of the schedule the base model takes (1: the paper's setting on "
                    "SDXL, the sweet spot of Fig. 7). " + RULE_TIP,
                ),
                *_schedule_inputs(),
                _label_input(protocol.BASE_LABEL),
                io.Model.Input(
                    "distilled_model",
                    optional=True,
                    tooltip="Optional: the distilled model, so that the schedule follows its own sampling (its "
                    "shift, e.g. FLUX.1-schnell's 1.0 against dev's 1.15, or a ModelSamplingSD3 / AuraFlow shift "
                    "patch on the distilled side). Not connected: base_model's sampling, which is the same for "
                    "pairs that share a noise schedule (SDXL / DMD2, SD 2.1 / SD-Turbo).",
                ),
                *_handover_inputs(),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="LATENT",
                    tooltip="The latent at sigma_k, carrying the rest of the "
                    "schedule for the Distilled Continue Sampler.",
                ),
                Trajectory_IO.Output(display_name="x0_trajectory", tooltip="x̂0 of every base step."),
            ],
        )

    @classmethod
    def execute(
        cls,
        base_model,
        positive,
        negative,
        latent_image,
        seed,
        base_cfg,
        base_steps,
        steps,
        scheduler,
        sampler_name,
        sigmas=None,
        model_label="",
        distilled_model=None,
        handover_amplification=PAPER_AMPLIFICATION,
        handover_sigma=0.0,
    ) -> io.NodeOutput:
        info = model_info(base_model)
        latent_image = check_inputs(base_model, latent_image, positive, negative, info, "base_model")
        check_seed(base_model, seed)
        schedule_from = "base_model" if distilled_model is None else "distilled_model"
        if distilled_model is not None:
            check_pair(info, model_info(distilled_model))
        full = model_schedule(distilled_model or base_model, steps, scheduler, sigmas)
        source = "sigmas" if sigmas is not None else "steps"
        check_schedule(full, max(base_steps, 1), source)
        amps = schedule_amplification(distilled_model or base_model, full)
        point = resolve_handover(full, amps, base_steps, handover_amplification, handover_sigma)
        head, tail = split_schedule(full, point.k, source)
        log.info("Base First Step: hands over to the distilled model at %s", point.describe(full.numel() - 1))
        samples, frames = run_segment(
            base_segment_model(base_model, distilled_model, (positive, negative)),  # LoRA pairs: no reload
            positive,
            negative,
            latent_image,
            initial_noise(latent_image, seed),
            base_cfg,
            sampler_name,
            head,
            seed,
            frame_label(model_label, protocol.BASE_LABEL),
            0,
        )
        trajectory = Trajectory(frames)
        handover = Handover(
            sigmas=tail,
            step_offset=point.k,
            sampler_name=sampler_name,
            noise_seed=derive_seed(seed, CONTINUE_STREAM),
            source=info,
            schedule_from=schedule_from,
            point=point,
        )
        return io.NodeOutput(output_latent(latent_image, samples, trajectory, handover), trajectory)


class DistilledContinueSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.DISTILLED_CONTINUE,
            **search_aliases(protocol.DISTILLED_CONTINUE),
            display_name="Distilled Continue Sampler",
            category=CATEGORY,
            description=(
                "Diversity distillation, part 2: the distilled model finishes the schedule from the latent "
                "a Base First Step Sampler handed over, with its own noise stream."
            ),
            inputs=[
                io.Model.Input("distilled_model", tooltip="The distilled model, e.g. DMD2, SDXL-Turbo, Lightning."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning for the distilled model."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning for the distilled model."),
                io.Latent.Input("latent", tooltip="The LATENT output of a Base First Step Sampler."),
                io.Float.Input(
                    "cfg",
                    default=1.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="Guidance of the distilled model; distilled models are made for 1.0.",
                ),
                _label_input(protocol.DISTILLED_LABEL),
                _sigma_input(
                    "end_at_sigma",
                    "0: finish the schedule. Above 0: stop at the first sigma at or below this value and "
                    "hand the rest over to another Distilled Continue Sampler (a chain of experts: Wan 2.2's "
                    "high-noise model down to its boundary, 0.875 for text-to-video, then the low-noise model).",
                ),
            ],
            outputs=[
                io.Latent.Output(
                    display_name="LATENT",
                    tooltip="The final latent, or with end_at_sigma the latent at that sigma, carrying the rest of "
                    "the schedule for the next Distilled Continue Sampler.",
                ),
                Trajectory_IO.Output(
                    display_name="x0_trajectory", tooltip="x̂0 of every step, base and distilled, in order."
                ),
            ],
        )

    @classmethod
    def execute(
        cls, distilled_model, positive, negative, latent, cfg, model_label="", end_at_sigma=0.0
    ) -> io.NodeOutput:
        handover = read_handover(latent, protocol.HANDOVER_KEY)
        if handover is None:
            raise ValueError(
                "latent: this latent carries no handover; connect the LATENT output of a "
                "Base First Step Sampler (directly or through nodes that keep the latent's keys)"
            )
        info = model_info(distilled_model)
        check_pair(handover.source, info)
        note = sampling_note(handover.source, info, handover.schedule_from)
        if note:  # a warning when the schedule is not the distilled model's own
            (log.warning if handover.schedule_from == "base_model" else log.info)("Distilled Continue: %s", note)
        latent = check_inputs(distilled_model, latent, positive, negative, info, "distilled_model", "latent")
        remember_distilled(distilled_model)
        here, rest = split_at_sigma(handover.sigmas, end_at_sigma)
        samples, frames = run_segment(
            distilled_model,
            positive,
            negative,
            latent,
            no_noise(latent),
            cfg,
            handover.sampler_name,
            here,
            handover.noise_seed,
            frame_label(model_label, protocol.DISTILLED_LABEL),
            handover.step_offset,
        )
        trajectory = latent.get(protocol.TRAJECTORY_KEY, Trajectory()).extended(frames)
        onward = None
        if rest is not None:  # the next expert continues with its own noise stream
            onward = replace(
                handover,
                sigmas=rest,
                step_offset=handover.step_offset + here.numel() - 1,
                noise_seed=derive_seed(handover.noise_seed, CONTINUE_STREAM),
                source=info,
            )
        return io.NodeOutput(output_latent(latent, samples, trajectory, onward), trajectory)


class SkipFirstStep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.SKIP_FIRST_STEP,
            **search_aliases(protocol.SKIP_FIRST_STEP),
            display_name="Skip First Step",
            category=CATEGORY,
            description=(
                "The cheaper partial fix (Table 4): the distilled model alone on its schedule without the "
                "first timestep, starting from pure noise as the paper's code does."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The distilled model."),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image"),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Seeds the initial noise (as KSampler) and the sampler's noise stream.",
                ),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01),
                *_schedule_inputs(),
                _label_input(protocol.DISTILLED_LABEL),
                io.Int.Input(
                    "skip_steps",
                    default=1,
                    min=0,
                    max=999,
                    optional=True,
                    tooltip="How many steps of the schedule to skip (1: Table 4's skip first timestep, for SDXL's "
                    "schedules). 0 skips to a noise level instead, chosen as Base First Step's handover: the first "
                    "step with A <= handover_amplification, or the first sigma <= handover_sigma (flow schedules: "
                    "one step leaves A far above the paper's, see Base First Step's base_steps).",
                ),
                *_handover_inputs(),
            ],
            outputs=[io.Latent.Output(display_name="LATENT"), Trajectory_IO.Output(display_name="x0_trajectory")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        latent_image,
        seed,
        cfg,
        steps,
        scheduler,
        sampler_name,
        sigmas=None,
        model_label="",
        skip_steps=1,
        handover_amplification=PAPER_AMPLIFICATION,
        handover_sigma=0.0,
    ) -> io.NodeOutput:
        info = model_info(model)
        latent_image = check_inputs(model, latent_image, positive, negative, info, "model")
        check_seed(model, seed)
        full = model_schedule(model, steps, scheduler, sigmas)
        source = "sigmas" if sigmas is not None else "steps"
        check_schedule(full, None, source)  # at least 2 steps (one skipped, one left), finite, non-increasing
        names = ("skip_steps", "handover_amplification", "handover_sigma")
        amps = schedule_amplification(model, full)
        point = resolve_handover(full, amps, skip_steps, handover_amplification, handover_sigma, names)
        rest = full[point.k :]
        log.info("Skip First Step: starts from pure noise at %s", point.describe(full.numel() - 1))
        sigma1 = float(rest[0])
        # sample_custom scales the noise by sigma_1 below sigma_max; the paper starts from unit-variance noise.
        noise = initial_noise(latent_image, seed) * (unit_noise_scale(sigma1, info.variance_preserving_noise) / sigma1)
        samples, frames = run_segment(
            model,
            positive,
            negative,
            latent_image,
            noise,
            cfg,
            sampler_name,
            rest,
            seed,
            frame_label(model_label, protocol.DISTILLED_LABEL),
            point.k,
        )
        trajectory = Trajectory(frames)
        return io.NodeOutput(output_latent(latent_image, samples, trajectory, None), trajectory)


class DistilledSchedule(io.ComfyNode):
    """The paper's schedules as a SIGMAS output, so that stock samplers (SamplerCustom, SplitSigmas...) run the
    distilled model alone on exactly the schedule the hybrid uses."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.DISTILLED_SCHEDULE,
            **search_aliases(protocol.DISTILLED_SCHEDULE),
            display_name="Distilled Schedule",
            category=CATEGORY,
            description=(
                "The distilled model's schedule as SIGMAS (e.g. DMD2's 4-step lcm schedule, t = 999, 759, "
                "499, 259), for stock SamplerCustom / SamplerCustomAdvanced baselines."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model whose sigma table maps the timesteps to sigmas."),
                *_schedule_inputs(min_steps=1)[:2],
            ],
            outputs=[io.Sigmas.Output(display_name="SIGMAS")],
        )

    @classmethod
    def execute(cls, model, steps, scheduler) -> io.NodeOutput:
        return io.NodeOutput(model_schedule(model, steps, scheduler))


NODES = [BaseFirstStepSampler, DistilledContinueSampler, SkipFirstStep, DistilledSchedule]
