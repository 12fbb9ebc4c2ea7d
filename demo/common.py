"""Shared by the demo scripts: repository paths and the digit data split (the model itself is the pure core's
``ddistill.demo_model``)."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "demo" / "weights"
SPLIT_SEED = 0
NUM_TRAIN = 1297  # images of the base model; the other 500 of the 1797 train the digit classifier


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits in [-1, 1] as [N, 64]: (train images, train labels, held-out images, labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images.reshape(-1, 64) / 16.0 * 2.0 - 1.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, ho = perm[:NUM_TRAIN], perm[NUM_TRAIN:]
    return x[tr], y[tr], x[ho], y[ho]
