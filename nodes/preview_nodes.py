"""x̂0 Preview and Record x̂0 Sampler (V3 nodes), the SAMPLER wrapper that records a stock sampler's x̂0, and
the live x̂0 frames sent to the canvas filmstrip (``js/x0_filmstrip.js``).

Stock graphs: Record x̂0 Sampler wraps any SAMPLER (a ``comfy.samplers.Sampler`` that delegates to it and adds a
recording callback; nothing in ComfyUI is patched) and outputs a *recording*, a handle that the sampler fills
while SamplerCustom / SamplerCustomAdvanced runs. x̂0 Preview takes that recording together with the stock
sampler's output LATENT, so ComfyUI runs it after the sampler, and reads the run from the handle.
"""
from __future__ import annotations

import base64
import io as _bytes_io
import logging
import math
import sys

import comfy.samplers
import latent_preview
import torch
from comfy_execution.utils import get_executing_context

from .api import io, ui
from .comfy_bridge import TRAJECTORY_KEY, link_type_error
from .hybrid_nodes import Trajectory_IO
from .metric_backends import BACKENDS, EFFNET_BACKEND, get_backend
from .trajectory import Frame, Trajectory
from .x0_preview import (MAX_GRID_CELLS, cell_label, compose_grid, cosine_distance_to_final, curve_table, fit_cells,
                         pixel_distance_to_final, plan_grid, render_curve)

CATEGORY = "sampling/diversity distillation/inspect"
Recording_IO = io.Custom("DDISTILL_X0_RECORDING")
LIVE_EVENT = "ddistill.x0_frame"
FILMSTRIP_PX = 128
PIXEL_METRIC = "pixel (RMS, 0..1)"
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- live frames for the canvas filmstrip
def _prompt_server():
    """ComfyUI's running PromptServer, or None (scripts, tests without a server)."""
    cls = getattr(sys.modules.get("server"), "PromptServer", None)
    return getattr(cls, "instance", None)


class LiveX0Frames:
    """Sends each step's x̂0 as a small JPEG (ComfyUI's Latent2RGB previewer, batch item 0; no VAE decode) to
    the frontend as the ``ddistill.x0_frame`` event, tagged with the executing node. A no-op without a server."""

    def __init__(self, base_model, label: str):
        self.server, ctx = _prompt_server(), get_executing_context()
        self.enabled = self.server is not None and ctx is not None
        self.node, self.prompt_id, self.label = (ctx.node_id, ctx.prompt_id, label) if ctx else (None, None, label)
        fmt = getattr(base_model, "latent_format", None)
        factors = getattr(fmt, "latent_rgb_factors", None)
        self.previewer = (latent_preview.Latent2RGBPreviewer(factors, fmt.latent_rgb_factors_bias,
                                                             fmt.latent_rgb_factors_reshape)
                          if self.enabled and factors is not None else None)

    def __call__(self, step: int, sigma: float, timestep: float, x0: torch.Tensor) -> None:
        if not self.enabled:
            return
        try:
            image = None
            if self.previewer is not None:
                pil = self.previewer.decode_latent_to_preview(x0.detach())
                pil.thumbnail((FILMSTRIP_PX, FILMSTRIP_PX))
                buf = _bytes_io.BytesIO()
                pil.save(buf, format="JPEG", quality=85)
                image = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
            self.server.send_sync(LIVE_EVENT, {"node": self.node, "prompt_id": self.prompt_id, "step": int(step),
                                               "sigma": float(sigma), "timestep": float(timestep),
                                               "model": self.label, "image": image}, self.server.client_id)
        except Exception as exc:  # a display aid must never stop sampling
            self.enabled = False
            log.warning("x̂0 filmstrip: live frames disabled for this run: %s", exc)


# ---------------------------------------------------------------- recording a stock sampler
class _Run:
    def __init__(self, prompt_id, node_id, sigmas: torch.Tensor, label: str, offset: int):
        self.prompt_id, self.node_id, self.label, self.offset = prompt_id, node_id, label, offset
        self.sigmas = sigmas.detach().to("cpu", torch.float32)
        self.timesteps: list[float] = []  # filled once per run (one device sync, not one per step)
        self.frames: list[Frame] = []


class X0Recording:
    """What a Record x̂0 Sampler recorded: the runs of the latest prompt that used it (one run per sampling)."""

    def __init__(self, label: str):
        self.label = label
        self.runs: list[_Run] = []

    def start(self, sigmas: torch.Tensor) -> _Run:
        ctx = get_executing_context()
        prompt_id, node_id = (ctx.prompt_id, ctx.node_id) if ctx else (None, None)
        self.runs = [r for r in self.runs if r.prompt_id == prompt_id]
        prev = self.runs[-1] if self.runs else None
        chained = prev is not None and math.isclose(float(prev.sigmas[-1]), float(sigmas[0]), rel_tol=1e-4)
        offset = prev.offset + prev.sigmas.numel() - 1 if chained else 0
        run = _Run(prompt_id, node_id, sigmas, self.label, offset)
        self.runs.append(run)
        return run

    def trajectory(self) -> Trajectory:
        """The recorded trajectory; several runs in one prompt must continue each other's schedule."""
        if not self.runs or not any(r.frames for r in self.runs):
            raise ValueError("recording: nothing was recorded; connect Record x̂0 Sampler's SAMPLER output to the "
                             "sampler input of SamplerCustom / SamplerCustomAdvanced, and that node's output LATENT "
                             "to this node's latent input")
        for a, b in zip(self.runs, self.runs[1:]):
            if not math.isclose(float(a.sigmas[-1]), float(b.sigmas[0]), rel_tol=1e-4):
                nodes = ", ".join(str(r.node_id) for r in self.runs)
                raise ValueError(f"recording: one Record x̂0 Sampler fed {len(self.runs)} separate sampler runs in "
                                 f"this prompt (nodes {nodes}) whose schedules do not continue each other; give "
                                 "each sampler its own Record x̂0 Sampler")
        return Trajectory(tuple(f for r in self.runs for f in r.frames))


class X0RecordingSampler(comfy.samplers.Sampler):
    """A SAMPLER that runs ``inner`` unchanged and records each step's x̂0 (``denoised``) through the callback."""

    def __init__(self, inner, recording: X0Recording):
        self.inner, self.recording = inner, recording

    def max_denoise(self, model_wrap, sigmas):
        return self.inner.max_denoise(model_wrap, sigmas)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        base = model_wrap.inner_model
        run = self.recording.start(sigmas)
        run.timesteps = base.model_sampling.timestep(run.sigmas).flatten().float().cpu().tolist()
        live = LiveX0Frames(base, run.label)

        def record(step, x0, x, total_steps):
            sigma, timestep = float(run.sigmas[step]), run.timesteps[step]
            run.frames.append(Frame(run.offset + step, sigma, timestep, run.label,
                                    base.process_latent_out(x0.detach()).to("cpu", torch.float32)))
            live(run.offset + step, sigma, timestep, x0)
            if callback is not None:
                callback(step, x0, x, total_steps)

        return self.inner.sample(model_wrap, sigmas, extra_args, record, noise, latent_image, denoise_mask,
                                 disable_pbar)


class RecordX0Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDistill_RecordX0Sampler",
            display_name="Record x̂0 Sampler",
            category=CATEGORY,
            description=("Wraps a SAMPLER so that a stock SamplerCustom / SamplerCustomAdvanced records every step's "
                         "x̂0. Connect 'recording' and the stock sampler's output LATENT to an x̂0 Preview."),
            inputs=[
                io.Sampler.Input("sampler", tooltip="Any SAMPLER, e.g. from KSamplerSelect."),
                io.String.Input("label", default="sampler",
                                tooltip="Model label written on the frames (e.g. base, distilled)."),
            ],
            outputs=[
                io.Sampler.Output(display_name="SAMPLER", tooltip="The same sampler, recording x̂0 as it runs."),
                Recording_IO.Output(display_name="recording",
                                    tooltip="Filled while the sampler runs; connect to x̂0 Preview."),
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
    if trajectory is not None and recording is not None:
        raise ValueError("trajectory / recording: connect one of them, not both")
    if recording is not None:
        if not isinstance(recording, X0Recording):
            raise ValueError(f"recording: expected a Record x̂0 Sampler's recording, got {type(recording).__name__}")
        if latent is None:
            raise ValueError("latent: connect the stock sampler's output LATENT (SamplerCustom 'output') so that "
                             "x̂0 Preview runs after the sampler that fills the recording")
        return recording.trajectory()
    if trajectory is None and isinstance(latent, dict):
        trajectory = latent.get(TRAJECTORY_KEY)
    if trajectory is None:
        raise ValueError("trajectory: nothing to show; connect a pack sampler's x0_trajectory output, or a Record "
                         "x̂0 Sampler's recording together with the stock sampler's output LATENT")
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
            raise ValueError(f"trajectory: the frame of step {f.step + 1} has shape {tuple(f.x0.shape)} but the first "
                             f"has {tuple(first.shape)}; a trajectory must come from one batch of one sampler chain")
    if vae is None or not hasattr(vae, "decode"):
        raise ValueError("vae: no VAE connected; connect the VAE that belongs to the sampled model (e.g. Load "
                         "Checkpoint's VAE output)")
    want_dims = int(getattr(vae, "latent_dim", 2))
    if first.ndim - 2 != want_dims or first.shape[1] != int(vae.latent_channels):
        raise ValueError(f"vae: this VAE decodes {vae.latent_channels}-channel {want_dims}-D latents but the "
                         f"trajectory's x̂0 is {tuple(first.shape)} ({first.shape[1]} channels); connect the VAE of "
                         "the model family that sampled (e.g. the SDXL VAE for SDXL models)")
    return traj.stacked()


def _final_latent(latent, x0: torch.Tensor):
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None:
        return None
    if tuple(samples.shape) != tuple(x0.shape[1:]):
        raise ValueError(f"latent: its samples have shape {tuple(samples.shape)} but the trajectory's frames have "
                         f"{tuple(x0.shape[1:])}; connect the output LATENT of the sampler that recorded it")
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
    return cosine_distance_to_final(emb[: s * b].view(s, b, -1), emb[s * b:])


class X0Preview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDistill_X0Preview",
            display_name="x̂0 Preview",
            category=CATEGORY,
            description=("Decodes a sampler's x̂0 per step and seed (rows = seeds, columns = steps) and plots how far "
                         "each step's x̂0 is from the final image (the paper's Fig. 5): a distilled model's first "
                         "x̂0 already shows the final layout, a base model's forms slowly."),
            is_output_node=True,
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE of the sampled model family."),
                Trajectory_IO.Input("trajectory", optional=True,
                                    tooltip="x0_trajectory output of Base First Step / Distilled Continue / Skip "
                                            "First Step."),
                Recording_IO.Input("recording", optional=True,
                                   tooltip="From Record x̂0 Sampler (stock SamplerCustom graphs); needs latent too."),
                io.Latent.Input("latent", optional=True,
                                tooltip="The sampler's output LATENT: the final image of the curve; with a recording "
                                        "it makes this node run after the sampler."),
                io.Int.Input("max_cells", default=64, min=2, max=MAX_GRID_CELLS,
                             tooltip="Most grid cells (steps x seeds) decoded; more steps are thinned evenly "
                                     "(first and last kept), more seeds cut, and the grid says so."),
                io.Int.Input("cell_size", default=192, min=32, max=1024,
                             tooltip="Long edge of a grid cell in pixels (the frames output keeps full size)."),
                io.Combo.Input("metric", options=[PIXEL_METRIC, *BACKENDS], default=EFFNET_BACKEND,
                               tooltip="Distance of each step's x̂0 to the final image. The paper uses DreamSim "
                                       "(dreamsim_ensemble, needs its weights); EfficientNet works offline; pixel "
                                       "is plain RMS."),
            ],
            outputs=[
                io.Image.Output(display_name="grid", tooltip="Annotated grid: rows = seeds, columns = steps."),
                io.Image.Output(display_name="frames",
                                tooltip="Decoded x̂0 frames, step by step, batch order kept within each step."),
                io.Image.Output(display_name="curve", tooltip="Distance to the final image per step (Fig. 5)."),
                io.String.Output(display_name="distances", tooltip="The curve as CSV: per step, mean and per seed."),
            ],
        )

    @classmethod
    def validate_inputs(cls, input_types=None):
        """Queue-time check of which sources are linked (the same rules execute applies to the values)."""
        linked = set(input_types or {})
        error = link_type_error(cls, input_types)
        if error:
            return error
        if {"trajectory", "recording"} <= linked:
            return "trajectory / recording: connect one of them, not both"
        if "recording" in linked and "latent" not in linked:
            return ("latent: connect the stock sampler's output LATENT (SamplerCustom 'output') so that x̂0 Preview "
                    "runs after the sampler that fills the recording")
        if not linked & {"trajectory", "recording", "latent"}:
            return ("trajectory: nothing to show; connect a pack sampler's x0_trajectory output, or a Record x̂0 "
                    "Sampler's recording together with the stock sampler's output LATENT")
        return True

    @classmethod
    def execute(cls, vae, max_cells, cell_size, metric, trajectory=None, recording=None,
                latent=None) -> io.NodeOutput:
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
        images = vae.decode(batch).detach()
        n = len(cols) * rows
        frames = images[:n].float().cpu()
        framed = frames.view(len(cols), rows, *frames.shape[1:])
        final = images[n:].float().cpu() if final_latent is not None else framed[-1]

        picked = [traj.frames[c] for c in cols]
        total = max(f.step for f in traj.frames) + 1
        labels = [(*cell_label(f.step, total, f.sigma, f.timestep, f.model), f.model) for f in picked]
        small = fit_cells(frames, cell_size)
        cells = small.view(len(cols), rows, *small.shape[1:])
        title = f"x0 (denoised) per step: {plan.total_steps} steps x {plan.total_rows} seeds"
        grid = compose_grid(cells, labels, [f"#{b}" for b in range(rows)], title, plan.note(max_cells))

        dist = distances(framed, final, metric)
        steps, models = [f.step for f in picked], [f.model for f in picked]
        csv = curve_table(dist, steps, [f.sigma for f in picked], models)
        curve = render_curve(dist, steps, models, metric)
        summary = " ".join(f"{s + 1}:{v:.3f}" for s, v in zip(steps, dist.mean(dim=1).tolist()))
        text = f"mean distance to final ({metric}) by step: {summary}" + (f"\n{plan.note(max_cells)}" if plan.capped
                                                                         else "")
        saved = [*ui.ImageSaveHelper.save_images(grid, "ddistill_x0_grid", io.FolderType.temp, cls, 1),
                 *ui.ImageSaveHelper.save_images(curve, "ddistill_x0_curve", io.FolderType.temp, cls, 1)]
        return io.NodeOutput(grid, frames, curve, csv, ui={"images": saved, "text": [text]})


NODES = [X0Preview, RecordX0Sampler]
