"""A digit classifier for the mode-coverage measure (pure torch): an MLP on 8x8 digits in [-1, 1].

Trained by ``demo/train.py`` on the 500 held-out digits that the base model never stores; applied to
generated IMAGEs (``[B, H, W, 3]`` in [0, 1]) after averaging them down to 8x8 grey.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DigitClassifier(nn.Module):
    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        return self.net(digits)


def images_to_digits(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, C] in [0, 1] (H, W multiples of 8) -> [B, 64] grey digits in [-1, 1]."""
    if images.ndim != 4 or images.shape[1] % 8 or images.shape[2] % 8:
        raise ValueError(
            f"images: expected [batch, H, W, channels] with H and W multiples of 8, got {list(images.shape)}"
        )
    grey = images.float().mean(dim=3, keepdim=True).permute(0, 3, 1, 2)
    return (F.adaptive_avg_pool2d(grey, 8).flatten(1) * 2 - 1).clamp(-1, 1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, seed: int = 0, epochs: int = 400) -> DigitClassifier:
    """Full-batch Adam with weight decay and light pixel noise; deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    for _ in range(epochs):
        noisy = x + 0.1 * torch.randn(x.shape, generator=g)
        loss = F.cross_entropy(model(noisy), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def class_histogram(model: DigitClassifier, digits: torch.Tensor) -> torch.Tensor:
    return torch.bincount(model(digits).argmax(1), minlength=10)


def coverage(counts: torch.Tensor, min_share: float = 0.02) -> dict:
    """Mode coverage of a class histogram: classes holding >= min_share of samples, entropy in bits."""
    p = counts.float() / counts.sum().clamp_min(1)
    nz = p[p > 0]
    return {
        "classes_covered": int((p >= min_share).sum()),
        "entropy_bits": max(0.0, float(-(nz * nz.log2()).sum())),
        "max_entropy_bits": math.log2(10),
        "counts": [int(c) for c in counts],
    }
