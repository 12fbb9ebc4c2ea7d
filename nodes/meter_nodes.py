"""Diversity Meter (V3 node): mean pairwise perceptual distance of a batch, as in the paper's Tables 3, D.1, E.1.

Thin: validation and maths live in ``ddistill.diversity`` (statistics, heatmap) and ``ddistill.embedding``
(embeddings, placed by ComfyUI through ``metric_loading``). The numbers also go to the canvas
(``js/diversity_meter.js``) as the ``protocol.METER_UI_KEY`` ui entry, next to the heatmap preview; API scripts
read the same entry from /history.
"""

from __future__ import annotations

import comfy.model_management
import comfy.utils
import torch

from ..ddistill import protocol
from ..ddistill.diversity import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_LEVEL,
    compare,
    format_comparison,
    format_summary,
    heatmap_image,
    summarize,
)
from ..ddistill.embedding import DEFAULT_CHUNK, check_images
from ..ddistill.protocol import BACKENDS, DREAMSIM_BACKEND, EFFNET_BACKEND
from ..ddistill.video import clip_embeddings, group_clips
from .api import io, search_aliases, ui
from .metric_loading import get_backend

CATEGORY = "sampling/diversity distillation/inspect"
HEATMAP_PX = 512

BACKEND_TIP = (
    f"'{EFFNET_BACKEND}' works offline out of the box but is NOT the paper's metric. "
    f"'{DREAMSIM_BACKEND}' is the paper's metric (DreamSim ensemble, mean pairwise distance); its "
    "weights go in ComfyUI/models/dreamsim (the error message lists the files). The other dreamsim_* "
    "entries are the dreamsim package's single-backbone types."
)


def _progress(sizes: list[int], chunk: int):
    """Embedding progress as ComfyUI's progress bar (one step per chunk of every batch); also stops at a user
    interrupt between chunks."""
    bar = comfy.utils.ProgressBar(sum(-(-n // chunk) for n in sizes))

    def update(done, total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update(1)

    return update


def _samples(images, name: str, frames_per_video: int) -> tuple[torch.Tensor, int, int]:
    """(frames to embed, samples, frames per sample): images, or clips of frames (video mode)."""
    frames, n, per = group_clips(images, frames_per_video, name)
    check_images(frames, name)
    if n < 2:
        what = "videos" if per > 1 else "images"
        raise ValueError(
            f"{name}: diversity needs at least 2 {what} of one prompt, got {n}; "
            "set batch_size >= 2 on the latent (the paper uses many seeds per prompt)"
        )
    return frames, n, per


class DiversityMeter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=protocol.DIVERSITY_METER,
            **search_aliases(protocol.DIVERSITY_METER),
            display_name="Diversity Meter",
            category=CATEGORY,
            is_output_node=True,  # shows its numbers and heatmap on the canvas; runs without a consumer
            description=(
                "Sample diversity of one prompt's batch: the mean pairwise perceptual distance (the "
                "paper's DreamSim diversity), with its spread, a 95% bootstrap interval over images and "
                "an N x N distance heatmap. Connect a second batch to compare two methods (e.g. the "
                "distilled model alone vs the hybrid)."
            ),
            inputs=[
                io.Image.Input("images", tooltip="A batch of at least 2 images of ONE prompt (different seeds)."),
                io.Combo.Input("backend", options=list(BACKENDS), default=EFFNET_BACKEND, tooltip=BACKEND_TIP),
                io.Image.Input(
                    "images_b",
                    optional=True,
                    tooltip="Optional second batch (same prompt, another method): both numbers and "
                    "the difference B - A, each with its interval.",
                ),
                io.Boolean.Input(
                    "allow_download",
                    default=False,
                    optional=True,
                    tooltip="Let the dreamsim package download missing DreamSim weights (GitHub, "
                    "~1 GB for the ensemble) into models/dreamsim. Off: never touch the "
                    "network; missing files give an error that lists them.",
                ),
                io.Int.Input(
                    "bootstrap_seed",
                    default=0,
                    min=0,
                    max=2**31 - 1,
                    optional=True,
                    tooltip="Seed of the bootstrap interval (same seed, same interval).",
                ),
                io.Int.Input(
                    "chunk_size",
                    default=DEFAULT_CHUNK,
                    min=1,
                    max=1024,
                    optional=True,
                    tooltip="Images embedded per network pass; lower it if memory runs out.",
                ),
                io.Int.Input(
                    "frames_per_video",
                    default=0,
                    min=0,
                    max=100000,
                    optional=True,
                    tooltip="Video mode. 0: a 5-D IMAGE [videos, frames, H, W, C] is read as videos, a plain IMAGE "
                    "batch as images. N > 1: every N consecutive images of the batch are one video (VAE Decode's "
                    "output for a batch of clips). Each video is one sample (the mean of its frames' embeddings) "
                    "and pairs are only between videos, so the number does not change with the frame count.",
                ),
            ],
            outputs=[
                io.Float.Output(display_name="mean_distance", tooltip="Mean pairwise distance of images (A)."),
                io.String.Output(display_name="report", tooltip="Mean, std, 95% interval, min/max pair, N, pairs."),
                io.Image.Output(display_name="heatmap", tooltip="N x N distances (A, then B), one colour scale."),
                io.Float.Output(
                    display_name="mean_distance_b",
                    tooltip="Mean pairwise distance of images_b (0.0 when images_b is not connected).",
                ),
                io.Float.Output(
                    display_name="difference",
                    tooltip="mean_distance_b - mean_distance (0.0 when images_b is not connected).",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        images,
        backend,
        images_b=None,
        allow_download=False,
        bootstrap_seed=0,
        chunk_size=DEFAULT_CHUNK,
        frames_per_video=0,
    ) -> io.NodeOutput:
        frames_a, n_a, per_a = _samples(images, "images", frames_per_video)
        frames_b, n_b, per_b = (
            _samples(images_b, "images_b", frames_per_video) if images_b is not None else (None, 0, 1)
        )
        net = get_backend(backend, allow_download=allow_download)
        progress = _progress([frames_a.shape[0], 0 if frames_b is None else frames_b.shape[0]], chunk_size)

        def distances(frames, n, per, name):  # one embedding per sample: the mean of a clip's frame embeddings
            return net.pairwise(clip_embeddings(net.embed(frames, chunk_size, progress, name), n, per))

        d_a = distances(frames_a, n_a, per_a, "images")
        header = f"Diversity Meter - {net.label}" + (f" (videos of {per_a} frames)" if per_a > 1 else "")
        if n_b:
            d_b = distances(frames_b, n_b, per_b, "images_b")
            result = compare(d_a, d_b, DEFAULT_BOOTSTRAP, bootstrap_seed, DEFAULT_LEVEL)
            report = header + "\n" + format_comparison(result)
            heatmap = heatmap_image([d_a, d_b], HEATMAP_PX)
            payload = {"backend": backend, "label": net.label, **result.as_dict(), "report": report}
            values = (result.a.mean, report, heatmap, result.b.mean, result.difference)
        else:
            summary, _ = summarize(d_a, DEFAULT_BOOTSTRAP, bootstrap_seed, DEFAULT_LEVEL)
            report = header + "\n" + format_summary(summary, "videos" if per_a > 1 else "images")
            heatmap = heatmap_image([d_a], HEATMAP_PX)
            payload = {
                "backend": backend,
                "label": net.label,
                "a": summary.as_dict(),
                "b": None,
                "difference": None,
                "difference_ci": None,
                "level": DEFAULT_LEVEL,
                "report": report,
            }
            values = (summary.mean, report, heatmap, 0.0, 0.0)
        preview = ui.PreviewImage(heatmap, cls=cls).as_dict()
        return io.NodeOutput(*values, ui={**preview, protocol.METER_UI_KEY: [payload]})


NODES = [DiversityMeter]
