"""The pack's one x̂0 recorder, and the live frames of the canvas filmstrip (``js/x0_filmstrip.js``).

``StepRecorder`` is a sampler callback (ComfyUI's ``callback(step, x0, x, total_steps)``): it keeps each step's
x̂0 (ComfyUI's ``denoised``) on the CPU in the VAE's latent space, sends a thumbnail to the canvas and forwards to
the next callback (ComfyUI's previewer). The pack's samplers and Record x̂0 Sampler both use it.

``X0Recording`` / ``X0RecordingSampler``: Record x̂0 Sampler wraps any SAMPLER (a ``comfy.samplers.Sampler`` that
delegates to it and adds the recorder; nothing in ComfyUI is patched) and outputs a *recording*, a handle that the
sampler fills while SamplerCustom / SamplerCustomAdvanced runs.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import comfy.samplers
import latent_preview
import torch
from comfy_execution.utils import get_executing_context

from ..ddistill.noise_level import amplification_from_scaling
from ..ddistill.protocol import LIVE_X0_EVENT
from ..ddistill.trajectory import Frame, Trajectory

FILMSTRIP_PX = 128
log = logging.getLogger(__name__)


def _prompt_server():
    """ComfyUI's running PromptServer, or None (scripts, tests without a server)."""
    cls = getattr(sys.modules.get("server"), "PromptServer", None)
    return getattr(cls, "instance", None)


_SENDER: ThreadPoolExecutor | None = None
_SENDER_LOCK = threading.Lock()


def _sender() -> ThreadPoolExecutor:
    """The one thread that encodes and sends live frames, in the order they were taken (made at first use)."""
    global _SENDER
    with _SENDER_LOCK:
        if _SENDER is None:
            _SENDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ddistill-x0-frames")
        return _SENDER


class LiveX0Frames:
    """Sends each step's x̂0 as a small JPEG (ComfyUI's Latent2RGB previewer, batch item 0; no VAE decode) to
    the frontend as the ``LIVE_X0_EVENT`` event, tagged with the executing node. A no-op without a server.

    The sampler never waits for a frame: the callback only queues a non-blocking copy of item 0 to pinned host
    memory (and a CUDA event after it); the sender thread waits for that copy, runs the previewer on the CPU,
    encodes and sends. A synchronous preview would stall the host once per step until the GPU caught up, which at
    batch 1 (host-bound) costs about as much as launching the next step. ``flush`` waits for the queued frames:
    the pack's samplers call it when their sampling ends, so every frame reaches the canvas before the node's
    result does."""

    def __init__(self, latent_format, label: str):
        self.server, ctx = _prompt_server(), get_executing_context()
        self.enabled = self.server is not None and ctx is not None
        self.node, self.prompt_id, self.label = (ctx.node_id, ctx.prompt_id, label) if ctx else (None, None, label)
        factors = getattr(latent_format, "latent_rgb_factors", None)
        self.previewer = (
            latent_preview.Latent2RGBPreviewer(
                factors, latent_format.latent_rgb_factors_bias, latent_format.latent_rgb_factors_reshape
            )
            if self.enabled and factors is not None
            else None
        )
        self.pending: list[Future] = []

    def __call__(self, step: int, sigma: float, timestep: float, x0: torch.Tensor, level: str = "") -> None:
        if not self.enabled:
            return
        event = {
            "node": self.node,
            "prompt_id": self.prompt_id,
            "step": int(step),
            "sigma": float(sigma),
            "timestep": float(timestep),
            "level": level,  # the grid's noise-level label (flow models: sigma only)
            "model": self.label,
            "image": None,
        }
        host, ready = None, None
        if self.previewer is not None:
            item = x0.detach()[:1]
            if item.ndim == 5 and self.previewer.latent_rgb_factors_reshape is None:
                item = item[:, :, :1]  # the previewer shows the first frame of the first clip
            host = to_host(item)
            if item.device.type == "cuda":
                ready = torch.cuda.Event()
                ready.record()
        self.pending = [f for f in self.pending if not f.done()]
        self.pending.append(_sender().submit(self._send, event, host, ready))

    def _send(self, event: dict, host: torch.Tensor | None, ready) -> None:
        if not self.enabled:
            return
        try:
            if host is not None:
                if ready is not None:
                    ready.synchronize()  # this thread waits for the copy; the sampler does not
                pil = self.previewer.decode_latent_to_preview(host)
                pil.thumbnail((FILMSTRIP_PX, FILMSTRIP_PX))
                buf = io.BytesIO()
                pil.save(buf, format="JPEG", quality=85)
                event["image"] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
            self.server.send_sync(LIVE_X0_EVENT, event, self.server.client_id)
        except Exception as exc:  # a display aid must never stop sampling
            self.enabled = False
            log.warning("x̂0 filmstrip: live frames disabled for this run: %s", exc)

    def flush(self) -> None:
        """Wait until every frame queued so far has been sent (or dropped)."""
        pending, self.pending = self.pending, []
        for f in pending:
            f.result()


def to_host(t: torch.Tensor) -> torch.Tensor:
    """float32 copy on the CPU without stalling the GPU: a non-blocking copy into pinned memory, which the
    sampler's own final ``.to(intermediate_device)`` synchronises before anyone reads it."""
    t = t.to(torch.float32)
    if t.device.type != "cuda":
        return t.to("cpu", copy=True)
    host = torch.empty(t.shape, dtype=torch.float32, pin_memory=True)
    return host.copy_(t, non_blocking=True)


def model_timesteps(model_sampling, sigmas: torch.Tensor) -> list[float]:
    """The model's own timestep of each sigma (one device round trip per run, not one per step)."""
    table = getattr(model_sampling, "sigmas", None)
    device = table.device if isinstance(table, torch.Tensor) else "cpu"
    return model_sampling.timestep(sigmas.to(device)).flatten().float().cpu().tolist()


def noise_amplification(model_sampling, sigmas: torch.Tensor) -> torch.Tensor:
    """A at each sigma (``ddistill.noise_level``), from how this model_sampling writes a noisy latent:
    x = a * x0 + b * eps read off its own ``noise_scaling`` (a from x0 = 1, b from eps = 1), so every
    parameterisation ComfyUI has (and any shift or noise scale on it) is measured, not assumed."""
    s = sigmas.detach().to("cpu", torch.float64).reshape(-1)
    ones, zeros = torch.ones(s.numel(), 1, dtype=torch.float64), torch.zeros(s.numel(), 1, dtype=torch.float64)
    noise = model_sampling.noise_scaling(s, ones, zeros).reshape(-1)
    signal = model_sampling.noise_scaling(s, zeros, ones).reshape(-1)
    return amplification_from_scaling(signal, noise)


class StepRecorder:
    """Sampler callback: records x̂0 (VAE latent space, CPU), sends the live frame, forwards to ``forward``."""

    def __init__(self, model_sampling, latent_format, sigmas: torch.Tensor, label: str, step_offset: int, forward=None):
        """``model_sampling`` / ``latent_format``: the sampling model's own objects, with its patches (a
        ModelPatcher's ``get_model_object``, or the BaseModel while it samples); ``sigmas``: this run's schedule."""
        self.sigmas = sigmas.detach().to("cpu", torch.float32)
        self.timesteps = model_timesteps(model_sampling, sigmas)
        self.flow = any(c.__name__ == "CONST" for c in type(model_sampling).__mro__)  # rectified flow
        self.amplification = noise_amplification(model_sampling, self.sigmas).tolist()
        self.process_out = latent_format.process_out
        self.label, self.offset, self.forward = label, step_offset, forward
        self.frames: list[Frame] = []
        self.live = LiveX0Frames(latent_format, label)

    def __call__(self, step, x0, x, total_steps):
        sigma, timestep = float(self.sigmas[step]), self.timesteps[step]
        self.frames.append(
            Frame(
                self.offset + step,
                sigma,
                timestep,
                self.label,
                to_host(self.process_out(x0.detach())),
                self.flow,
                self.amplification[step],
            )
        )
        self.live(self.offset + step, sigma, timestep, x0, self.frames[-1].level)
        if self.forward is not None:
            self.forward(step, x0, x, total_steps)

    def flush(self) -> None:
        """The sampling ended: wait until its live frames are sent (see ``LiveX0Frames``)."""
        self.live.flush()


def patcher_recorder(model, sigmas: torch.Tensor, label: str, step_offset: int) -> StepRecorder:
    """The recorder of one pack sampler run on a MODEL (ModelPatcher), forwarding to ComfyUI's own previewer."""
    preview = latent_preview.prepare_callback(model, sigmas.numel() - 1)
    return StepRecorder(
        model.get_model_object("model_sampling"),
        model.get_model_object("latent_format"),
        sigmas,
        label,
        step_offset,
        preview,
    )


class _Run:
    def __init__(self, prompt_id, node_id, sigmas: torch.Tensor, offset: int):
        self.prompt_id, self.node_id, self.offset = prompt_id, node_id, offset
        self.sigmas = sigmas.detach().to("cpu", torch.float32)
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
        run = _Run(prompt_id, node_id, sigmas, offset)
        self.runs.append(run)
        return run

    def trajectory(self) -> Trajectory:
        """The recorded trajectory; several runs in one prompt must continue each other's schedule."""
        if not self.runs or not any(r.frames for r in self.runs):
            raise ValueError(
                "recording: nothing was recorded; connect Record x̂0 Sampler's SAMPLER output to the "
                "sampler input of SamplerCustom / SamplerCustomAdvanced, and that node's output LATENT "
                "to this node's latent input"
            )
        for a, b in zip(self.runs, self.runs[1:]):
            if not math.isclose(float(a.sigmas[-1]), float(b.sigmas[0]), rel_tol=1e-4):
                nodes = ", ".join(str(r.node_id) for r in self.runs)
                raise ValueError(
                    f"recording: one Record x̂0 Sampler fed {len(self.runs)} separate sampler runs in "
                    f"this prompt (nodes {nodes}) whose schedules do not continue each other; give "
                    "each sampler its own Record x̂0 Sampler"
                )
        return Trajectory(tuple(f for r in self.runs for f in r.frames))


class X0RecordingSampler(comfy.samplers.Sampler):
    """A SAMPLER that runs ``inner`` unchanged and records each step's x̂0 (``denoised``) through the callback."""

    def __init__(self, inner, recording: X0Recording):
        self.inner, self.recording = inner, recording

    def max_denoise(self, model_wrap, sigmas):
        return self.inner.max_denoise(model_wrap, sigmas)

    def sample(
        self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False
    ):
        run = self.recording.start(sigmas)
        base = model_wrap.inner_model  # the BaseModel, its object patches applied while it samples
        recorder = StepRecorder(
            base.model_sampling, base.latent_format, sigmas, self.recording.label, run.offset, callback
        )
        run.frames = recorder.frames
        try:
            return self.inner.sample(
                model_wrap, sigmas, extra_args, recorder, noise, latent_image, denoise_mask, disable_pbar
            )
        finally:
            recorder.flush()
