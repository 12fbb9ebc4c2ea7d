"""x̂0 Preview and Record x̂0 Sampler (V3 nodes).

Stock graphs: Record x̂0 Sampler wraps any SAMPLER (``recorder.X0RecordingSampler``) and outputs a *recording*
that the sampler fills while SamplerCustom / SamplerCustomAdvanced runs. x̂0 Preview takes that recording together
with the stock sampler's output LATENT, so ComfyUI runs it after the sampler, and reads the run from the handle.
"""

from __future__ import annotations

import comfy.samplers
import torch

from ..ddistill import protocol
from ..ddistill.protocol import EFFNET_BACKEND, PIXEL_METRIC
from ..ddistill.trajectory import Trajectory
from ..ddistill.video import clips_to_strips
from ..ddistill.x0_preview import (
    MAX_GRID_CELLS,
    cell_label,
    compose_grid,
    cosine_distance_to_final,
    curve_table,
    fit_cells,
    pixel_distance_to_final,
    plan_grid,
    render_curve,
)
from .api import io, search_aliases, ui
from .io_types import Recording_IO, Trajectory_IO
from .metric_loading import get_backend
from .recorder import X0Recording, X0RecordingSampler

CATEGORY = "sampling/diversity distillation/inspect"

BOTH_SOURCES = "trajectory / recording: connect one of them, not both"
RECORDING_NEEDS_LATENT = (
    "latent: connect the stock sampler's output LATENT (SamplerCustom 'output') so that x̂0 "
    "Preview runs after the sampler that fills the recording"
)
NOTHING_TO_SHOW = (
    "trajectory: nothing to show; connect a pack sampler's x0_trajectory output, or a Record x̂0 "
    "Sampler's recording together with the stock sampler's output LATENT"
)


def source_problem(trajectory: bool, recording: bool, latent: bool) -> str | None:
    """Which inputs x̂0 Preview needs linked, as the message naming the input to fix, or None."""
    if trajectory and recording:
        return BOTH_SOURCES
    if recording and not latent:
        return RECORDING_NEEDS_LATENT
    if not (trajectory or recording or latent):
        return NOTHING_TO_SHOW
    return None


class RecordX0Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.RECORD_X0_SAMPLER,
            **search_aliases(protocol.RECORD_X0_SAMPLER),
            display_name="Record x̂0 Sampler",
            category=CATEGORY,
            description=(
                "Wraps a SAMPLER so that a stock SamplerCustom / SamplerCustomAdvanced records every step's "
                "x̂0. Connect 'recording' and the stock sampler's output LATENT to an x̂0 Preview."
            ),
            inputs=[
                io.Sampler.Input("sampler", tooltip="Any SAMPLER, e.g. from KSamplerSelect."),
                io.String.Input(
                    "label", default="sampler", tooltip="Model label written on the frames (e.g. base, distilled)."
                ),
            ],
            outputs=[
                io.Sampler.Output(display_name="SAMPLER", tooltip="The same sampler, recording x̂0 as it runs."),
                Recording_IO.Output(
                    display_name="recording", tooltip="Filled while the sampler runs; connect to x̂0 Preview."
                ),
            ],
        )

    @classmethod
    def execute(cls, sampler, label) -> io.NodeOutput:
        if not isinstance(sampler, comfy.samplers.Sampler):
            raise ValueError(f"sampler: expected a SAMPLER (e.g. from KSamplerSelect), got {type(sampler).__name__}")
        recording = X0Recording(label.strip() or "sampler")
        return io.NodeOutput(X0RecordingSampler(sampler, recording), recording)


# ---------------------------------------------------------------- x̂0 Preview
def resolve_trajectory(trajectory, recording, latent) -> Trajectory:
    """The trajectory to show, from exactly one source: trajectory, recording (+ latent), or a pack LATENT."""
    problem = source_problem(trajectory is not None, recording is not None, latent is not None)
    if problem:
        raise ValueError(problem)
    if recording is not None:
        if not isinstance(recording, X0Recording):
            raise ValueError(f"recording: expected a Record x̂0 Sampler's recording, got {type(recording).__name__}")
        return recording.trajectory()
    if trajectory is None and isinstance(latent, dict):
        trajectory = latent.get(protocol.TRAJECTORY_KEY)
    if trajectory is None:
        raise ValueError(NOTHING_TO_SHOW)
    if not isinstance(trajectory, Trajectory):
        raise ValueError(f"trajectory: expected an x̂0 trajectory, got {type(trajectory).__name__}")
    return trajectory


def stack_checked(traj: Trajectory, vae) -> torch.Tensor:
    """[S, B, C, H, W] x̂0 latents, checked against each other and against the VAE's latent format."""
    if len(traj) == 0:
        raise ValueError("trajectory: it is empty (no step was recorded); run the sampler with at least one step")
    first = traj.frames[0].x0
    for f in traj.frames:
        if f.x0.shape != first.shape:
            raise ValueError(
                f"trajectory: the frame of step {f.step + 1} has shape {tuple(f.x0.shape)} but the first "
                f"has {tuple(first.shape)}; a trajectory must come from one batch of one sampler chain"
            )
    if vae is None or not hasattr(vae, "decode"):
        raise ValueError(
            "vae: no VAE connected; connect the VAE that belongs to the sampled model (e.g. Load "
            "Checkpoint's VAE output)"
        )
    want_dims = int(getattr(vae, "latent_dim", 2))
    if first.ndim - 2 != want_dims or first.shape[1] != int(vae.latent_channels):
        raise ValueError(
            f"vae: this VAE decodes {vae.latent_channels}-channel {want_dims}-D latents but the "
            f"trajectory's x̂0 is {tuple(first.shape)} ({first.shape[1]} channels); connect the VAE of "
            "the model family that sampled (e.g. the SDXL VAE for SDXL models)"
        )
    return traj.stacked()


def _final_latent(latent, x0: torch.Tensor):
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None:
        return None
    if tuple(samples.shape) != tuple(x0.shape[1:]):
        raise ValueError(
            f"latent: its samples have shape {tuple(samples.shape)} but the trajectory's frames have "
            f"{tuple(x0.shape[1:])}; connect the output LATENT of the sampler that recorded it"
        )
    return samples.to("cpu", torch.float32)


def distances(frames: torch.Tensor, final: torch.Tensor, metric: str) -> torch.Tensor:
    """[S, B] distance of each decoded frame to its seed's final image, with ``metric``."""
    if metric == PIXEL_METRIC:
        return pixel_distance_to_final(frames, final)
    try:
        backend = get_backend(metric)
        emb = backend.embed(torch.cat([frames.flatten(0, 1), final]))
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ValueError(f"metric: '{metric}' failed: {exc}") from None
    s, b = frames.shape[:2]
    return cosine_distance_to_final(emb[: s * b].view(s, b, -1), emb[s * b :])


class X0Preview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.X0_PREVIEW,
            **search_aliases(protocol.X0_PREVIEW),
            display_name="x̂0 Preview",
            category=CATEGORY,
            description=(
                "Decodes a sampler's x̂0 per step and seed (rows = seeds, columns = steps) and plots how far "
                "each step's x̂0 is from the final image (the paper's Fig. 5): a distilled model's first "
                "x̂0 already shows the final layout, a base model's forms slowly."
            ),
            is_output_node=True,
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE of the sampled model family."),
                Trajectory_IO.Input(
                    "trajectory",
                    optional=True,
                    tooltip="x0_trajectory output of Base First Step / Distilled Continue / Skip First Step.",
                ),
                Recording_IO.Input(
                    "recording",
                    optional=True,
                    tooltip="From Record x̂0 Sampler (stock SamplerCustom graphs); needs latent too.",
                ),
                io.Latent.Input(
                    "latent",
                    optional=True,
                    tooltip="The sampler's output LATENT: the final image of the curve; with a recording "
                    "it makes this node run after the sampler.",
                ),
                io.Int.Input(
                    "max_cells",
                    default=64,
                    min=2,
                    max=MAX_GRID_CELLS,
                    tooltip="Most grid cells (steps x seeds) decoded; more steps are thinned evenly "
                    "(first and last kept), more seeds cut, and the grid says so.",
                ),
                io.Int.Input(
                    "cell_size",
                    default=192,
                    min=32,
                    max=1024,
                    tooltip="Long edge of a grid cell in pixels (the frames output keeps full size).",
                ),
                io.Combo.Input(
                    "metric",
                    options=[PIXEL_METRIC, *protocol.BACKENDS],
                    default=EFFNET_BACKEND,
                    tooltip="Distance of each step's x̂0 to the final image. The paper uses DreamSim "
                    "(dreamsim_ensemble, needs its weights); EfficientNet works offline; pixel "
                    "is plain RMS.",
                ),
            ],
            outputs=[
                io.Image.Output(display_name="grid", tooltip="Annotated grid: rows = seeds, columns = steps."),
                io.Image.Output(
                    display_name="frames", tooltip="Decoded x̂0 frames, step by step, batch order kept within each step."
                ),
                io.Image.Output(display_name="curve", tooltip="Distance to the final image per step (Fig. 5)."),
                io.String.Output(display_name="distances", tooltip="The curve as CSV: per step, mean and per seed."),
            ],
        )

    @classmethod
    def execute(cls, vae, max_cells, cell_size, metric, trajectory=None, recording=None, latent=None) -> io.NodeOutput:
        traj = resolve_trajectory(trajectory, recording, latent)
        x0 = stack_checked(traj, vae)
        final_latent = _final_latent(latent, x0)
        plan = plan_grid(x0.shape[0], x0.shape[1], max_cells)
        cols, rows = list(plan.columns), plan.rows
        chosen = x0[cols, :rows]
        batch = chosen.flatten(0, 1)
        if final_latent is not None:
            batch = torch.cat([batch, final_latent[:rows]])
        # one call into ComfyUI's VAE path: it loads the VAE through model_management and splits the batch by free
        # memory (tiled decode on OOM), exactly as the stock VAE Decode node
        images = clips_to_strips(vae.decode(batch).detach())  # a video clip: its first, middle and last frames
        n = len(cols) * rows
        frames = images[:n].float().cpu()
        framed = frames.view(len(cols), rows, *frames.shape[1:])
        final = images[n:].float().cpu() if final_latent is not None else framed[-1]

        picked = [traj.frames[c] for c in cols]
        total = max(f.step for f in traj.frames) + 1
        labels = [(*cell_label(f.step, total, f.level, f.model), f.model) for f in picked]
        small = fit_cells(frames, cell_size)
        cells = small.view(len(cols), rows, *small.shape[1:])
        title = f"x0 (denoised) per step: {plan.total_steps} steps x {plan.total_rows} seeds"
        grid = compose_grid(cells, labels, [f"#{b}" for b in range(rows)], title, plan.note(max_cells))

        dist = distances(framed, final, metric)
        steps, models = [f.step for f in picked], [f.model for f in picked]
        csv = curve_table(dist, steps, [f.sigma for f in picked], models)
        curve = render_curve(dist, steps, models, metric)
        means = dist.mean(dim=1).tolist()
        summary = " ".join(f"{s + 1}:{v:.3f}" for s, v in zip(steps, means))
        text = f"mean distance to final ({metric}) by step: {summary}" + (
            f"\n{plan.note(max_cells)}" if plan.capped else ""
        )
        curve_entry = {
            "metric": metric,
            "steps": [s + 1 for s in steps],
            "sigmas": [f.sigma for f in picked],
            "models": models,
            "mean_distance": means,
            "total_steps": plan.total_steps,
            "seeds": plan.total_rows,
            "capped": plan.capped,
        }
        saved = [
            *ui.ImageSaveHelper.save_images(grid, "ddistill_x0_grid", io.FolderType.temp, cls, 1),
            *ui.ImageSaveHelper.save_images(curve, "ddistill_x0_curve", io.FolderType.temp, cls, 1),
        ]
        return io.NodeOutput(
            grid, frames, curve, csv, ui={"images": saved, "text": [text], protocol.X0_UI_KEY: [curve_entry]}
        )


NODES = [X0Preview, RecordX0Sampler]
