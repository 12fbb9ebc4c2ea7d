"""Video (and Wan-VAE image) batches for the display and the diversity maths (pure torch, no ComfyUI).

ComfyUI's VAE decodes a video latent [N, C, T, H, W] to [N, F, H, W, 3] (F frames per clip; one for Qwen-Image's
[N, 16, 1, H, W] latents). x̂0 Preview shows each clip as one strip of up to ``STRIP_FRAMES`` frames (first,
middle(s), last, side by side); the Diversity Meter treats one clip as one sample (the mean of its frames'
embeddings), so pairs are only ever between clips.
"""

from __future__ import annotations

import torch

STRIP_FRAMES = 3


def strip_frames(count: int, keep: int = STRIP_FRAMES) -> list[int]:
    """Up to ``keep`` frame indices of ``count``, evenly spread, first and last included."""
    if count <= keep:
        return list(range(count))
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def clips_to_strips(images: torch.Tensor, keep: int = STRIP_FRAMES) -> torch.Tensor:
    """[N, F, H, W, C] decoded clips -> [N, H, k * W, C] strips (a single frame stays as it is)."""
    if images.ndim == 4:
        return images
    if images.ndim != 5:
        raise ValueError(f"expected decoded images [N, H, W, C] or clips [N, F, H, W, C], got {tuple(images.shape)}")
    picked = images[:, strip_frames(images.shape[1], keep)]
    return torch.cat(list(picked.unbind(1)), dim=2)


def group_clips(images: torch.Tensor, frames_per_video: int, name: str = "images") -> tuple[torch.Tensor, int, int]:
    """A batch of clips as (frames [V * F, H, W, C], V, F): a 5-D IMAGE [V, F, H, W, C], or a 4-D IMAGE whose
    consecutive ``frames_per_video`` images are one clip (VAE Decode's output for a batch of videos). With
    ``frames_per_video`` 0 and a 4-D IMAGE every image is its own sample (F = 1)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected an IMAGE tensor, got {type(images).__name__}")
    if images.ndim == 5:
        v, f = images.shape[:2]
        if frames_per_video not in (0, f):
            raise ValueError(
                f"{name}: a batch of {v} videos of {f} frames, but frames_per_video is {frames_per_video}; set it "
                f"to 0 (read from the batch) or {f}"
            )
        return images.flatten(0, 1), v, f
    if frames_per_video <= 1:
        return images, images.shape[0] if images.ndim == 4 else 1, 1
    n = images.shape[0]
    if n % frames_per_video:
        raise ValueError(
            f"{name}: {n} frames do not split into videos of {frames_per_video} frames; set frames_per_video to the "
            "frame count of one video (the length of each clip in the batch)"
        )
    return images, n // frames_per_video, frames_per_video


def clip_embeddings(frame_embeddings: torch.Tensor, videos: int, frames: int) -> torch.Tensor:
    """[V * F, D] frame embeddings -> [V, D]: one embedding per clip, the mean of its frames' embeddings."""
    if frames == 1:
        return frame_embeddings
    return frame_embeddings.view(videos, frames, -1).mean(dim=1)
