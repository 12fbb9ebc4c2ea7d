"""Batch-diversity statistics from image embeddings (pure torch, no ComfyUI import).

The paper (Gandikota and Bau, Tables 3, D.1, E.1) measures the diversity of one prompt's samples as the mean
pairwise DreamSim distance over the batch. DreamSim's distance is the cosine distance between two embeddings,
so every pair comes from one embedding per image: N network passes, not N(N-1)/2.

Interval: a seeded percentile bootstrap over IMAGES (not over pairs: the N(N-1)/2 pairs share images and are
not independent). Each replicate draws N images with replacement and averages the distances of all pairs of
distinct draws; draws of the same image are not paired with themselves (that would add fake zero distances).
With fewer than 3 images there is nothing to resample and the interval is undefined (None).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .x0_preview import from_pil, line_height, load_font, text_width

DEFAULT_BOOTSTRAP = 2000
DEFAULT_LEVEL = 0.95
INTERVAL_METHOD = "percentile bootstrap over images"


def cosine_distance_matrix(emb: torch.Tensor) -> torch.Tensor:
    """[N, D] embeddings -> [N, N] cosine distances 1 - cos(e_i, e_j) (float32, symmetric, zero diagonal).

    Computed in float64, the same quantity as ``1 - F.cosine_similarity(a, b)`` for every pair."""
    if emb.ndim != 2:
        raise ValueError(f"embeddings: expected a [N, D] tensor, got shape {tuple(emb.shape)}")
    if emb.shape[0] == 0:
        raise ValueError("embeddings: the batch is empty")
    if not torch.isfinite(emb).all():
        raise ValueError("embeddings: contain NaN or inf (check the input images)")
    e = emb.detach().to(torch.float64)
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)
    d = (1.0 - e @ e.T).clamp_min(0.0)
    d.fill_diagonal_(0.0)
    d = 0.5 * (d + d.T)
    return d.to(torch.float32)


def _check_matrix(d: torch.Tensor, name: str = "distances") -> int:
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"{name}: expected a square [N, N] matrix, got shape {tuple(d.shape)}")
    n = d.shape[0]
    if n < 2:
        raise ValueError(f"{name}: diversity needs at least 2 images, got {n}; generate a batch (batch_size >= 2)")
    return n


def pair_distances(d: torch.Tensor) -> torch.Tensor:
    """The N(N-1)/2 distances of the upper triangle (i < j), in row-major order."""
    n = _check_matrix(d)
    i, j = torch.triu_indices(n, n, offset=1)
    return d[i, j]


def canonical_order(d: torch.Tensor) -> list[int]:
    """An order of the images that depends only on their distances (row sum, then row sum of squares, rounded),
    so that the seeded bootstrap gives the same interval whatever order the batch comes in. Rows that tie are
    images at the same distances from all others, interchangeable for the statistics."""
    rows = d.detach().to(torch.float64).cpu()
    s1 = torch.round(rows.sum(1) * 1e9)
    s2 = torch.round((rows * rows).sum(1) * 1e9)
    by_s2 = torch.argsort(s2, stable=True)
    return by_s2[torch.argsort(s1[by_s2], stable=True)].tolist()


def bootstrap_means(d: torch.Tensor, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, chunk: int = 256) -> torch.Tensor:
    """Mean pairwise distance of ``n_boot`` image-level bootstrap replicates (seeded; NaN-free for N >= 2).

    A replicate draws N images with replacement; with c_i the number of draws of image i, the sum over ordered
    pairs of draws is c^T D c (D_ii = 0) and the number of pairs of draws of different images is
    N^2 - sum_i c_i^2, so each replicate costs one [N] x [N, N] product, not N^2 gathers."""
    n = _check_matrix(d)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.tensor(canonical_order(d))
    d64 = d.detach().to(torch.float64).cpu()[order][:, order]
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = torch.randint(0, n, (b, n), generator=gen)
        counts = torch.zeros(b, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(b, n, dtype=torch.float64))
        total = ((counts @ d64) * counts).sum(dim=1)
        pairs = n * n - (counts * counts).sum(dim=1)
        out.append(torch.where(pairs > 0, total / pairs.clamp_min(1), torch.full_like(total, float("nan"))))
    means = torch.cat(out)
    return means[~torch.isnan(means)]


def _percentile_interval(samples: torch.Tensor, level: float) -> tuple[float, float] | None:
    if samples.numel() < 2:
        return None
    alpha = (1.0 - level) / 2.0
    q = torch.quantile(samples, torch.tensor([alpha, 1.0 - alpha], dtype=samples.dtype))
    return float(q[0]), float(q[1])


@dataclass
class Summary:
    n: int
    n_pairs: int
    mean: float
    std: float  # standard deviation of the N(N-1)/2 pair distances
    ci: tuple[float, float] | None
    level: float
    min_pair: tuple[int, int, float]  # (i, j, distance), 0-based image indices, i < j
    max_pair: tuple[int, int, float]
    method: str = INTERVAL_METHOD

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(
    d: torch.Tensor, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = DEFAULT_LEVEL
) -> tuple[Summary, torch.Tensor]:
    """Statistics of one batch's distance matrix; also returns the bootstrap replicates (for comparisons)."""
    n = _check_matrix(d)
    pairs = pair_distances(d).to(torch.float64)
    i, j = torch.triu_indices(n, n, offset=1)
    lo, hi = int(torch.argmin(pairs)), int(torch.argmax(pairs))
    boots = bootstrap_means(d, n_boot, seed) if n >= 3 else torch.empty(0, dtype=torch.float64)
    std = float(pairs.std(unbiased=True)) if pairs.numel() > 1 else 0.0
    summary = Summary(
        n=n,
        n_pairs=int(pairs.numel()),
        mean=float(pairs.mean()),
        std=std,
        ci=_percentile_interval(boots, level),
        level=level,
        min_pair=(int(i[lo]), int(j[lo]), float(pairs[lo])),
        max_pair=(int(i[hi]), int(j[hi]), float(pairs[hi])),
    )
    return summary, boots


@dataclass
class Comparison:
    a: Summary
    b: Summary
    difference: float  # mean(B) - mean(A)
    difference_ci: tuple[float, float] | None
    level: float
    method: str = "independent " + INTERVAL_METHOD + " of each batch; interval of the difference of replicates"

    def as_dict(self) -> dict:
        return asdict(self)


def compare(
    d_a: torch.Tensor, d_b: torch.Tensor, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = DEFAULT_LEVEL
) -> Comparison:
    """Two batches side by side: both summaries and mean(B) - mean(A) with its bootstrap interval."""
    sa, boot_a = summarize(d_a, n_boot, seed, level)
    sb, boot_b = summarize(d_b, n_boot, seed + 1, level)
    ci = None
    if boot_a.numel() and boot_b.numel():
        k = min(boot_a.numel(), boot_b.numel())
        ci = _percentile_interval(boot_b[:k] - boot_a[:k], level)
    return Comparison(a=sa, b=sb, difference=sb.mean - sa.mean, difference_ci=ci, level=level)


def _fmt_ci(ci, level) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "n/a (needs >= 3 images)"


def format_summary(s: Summary, title: str = "batch") -> str:
    pct = f"{round(s.level * 100)}%"
    return "\n".join(
        [
            f"{title}: mean pairwise distance {s.mean:.4f}",
            f"  std over pairs {s.std:.4f}; {pct} interval {_fmt_ci(s.ci, s.level)} ({s.method})",
            f"  min pair ({s.min_pair[0]}, {s.min_pair[1]}) = {s.min_pair[2]:.4f}; "
            f"max pair ({s.max_pair[0]}, {s.max_pair[1]}) = {s.max_pair[2]:.4f}",
            f"  N = {s.n} images, {s.n_pairs} pairs",
        ]
    )


def format_comparison(c: Comparison) -> str:
    pct = f"{round(c.level * 100)}%"
    return "\n".join(
        [
            format_summary(c.a, "A"),
            format_summary(c.b, "B"),
            f"B - A: {c.difference:+.4f}; {pct} interval {_fmt_ci(c.difference_ci, c.level)}",
        ]
    )


# A perceptually uniform ramp (viridis anchors), interpolated linearly.
_RAMP = torch.tensor(
    [
        [0.267, 0.005, 0.329],
        [0.283, 0.141, 0.458],
        [0.254, 0.265, 0.530],
        [0.207, 0.372, 0.553],
        [0.164, 0.471, 0.558],
        [0.128, 0.567, 0.551],
        [0.135, 0.659, 0.518],
        [0.267, 0.749, 0.441],
        [0.478, 0.821, 0.318],
        [0.741, 0.873, 0.150],
        [0.993, 0.906, 0.144],
    ]
)


def colorize(values: torch.Tensor, vmax: float) -> torch.Tensor:
    """Map values in [0, vmax] to RGB in [0, 1] (..., 3)."""
    t = (values.to(torch.float32) / max(vmax, 1e-8)).clamp(0, 1) * (len(_RAMP) - 1)
    lo = t.floor().long().clamp(max=len(_RAMP) - 2)
    w = (t - lo).unsqueeze(-1)
    return _RAMP[lo] * (1 - w) + _RAMP[lo + 1] * w


def _scale_bar(width: int, height: int, vmin: float, vmax: float) -> torch.Tensor:
    """The colour scale as an image [height, width, 3] on white: the ramp from ``vmin`` to ``vmax`` as a bar, its
    end values written under its ends ("min 0" left, "max 0.312" right)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    margin = max(2, height // 12)
    px = max(8, height // 3)
    lo, hi = f"min {vmin:.3g}", f"max {vmax:.3g}"
    while px > 8:  # both end values side by side in the strip's width
        font = load_font(px)
        if text_width(draw, lo, font) + text_width(draw, hi, font) + 4 * margin <= width:
            break
        px -= 1
    font = load_font(px)
    text_h = line_height(font)
    bar_h = max(2, height - text_h - 3 * margin)
    ramp = colorize(torch.linspace(vmin, vmax, max(1, width - 2 * margin)), vmax)  # [w, 3]
    bar = (ramp.clamp(0, 1) * 255).round().to(torch.uint8)
    bar_img = Image.fromarray(bar[None].expand(bar_h, -1, -1).contiguous().numpy())
    img.paste(bar_img, (margin, margin))
    y = margin + bar_h + margin
    draw.text((margin, y), lo, fill=(0, 0, 0), font=font)
    draw.text((width - margin - text_width(draw, hi, font), y), hi, fill=(0, 0, 0), font=font)
    return from_pil(img)[0]


def scale_bar_height(size: int) -> int:
    """Rows of a ``size``-high heatmap taken by its colour scale (bar and end values)."""
    return max(20, size // 9)


def heatmap_image(
    matrices: list[torch.Tensor], size: int = 512, vmax: float | None = None, gap: int = 16
) -> torch.Tensor:
    """N x N distance heatmap(s) as one ComfyUI IMAGE [1, H, W, 3]: cell (i, j) = distance of images i and j,
    one shared colour scale from 0 (dark purple) to ``vmax`` (yellow; default the largest distance shown), drawn
    as a bar with its end values along the bottom (``scale_bar_height(size)`` rows).

    Size contract: the image is ``size`` pixels high and each matrix's panel ``n * (size // n)`` wide (``size``
    when n > size), panels side by side with ``gap`` white columns between them. Each matrix is drawn with square
    cells in the panel's top ``size - scale_bar_height(size)`` rows, centred."""
    if not matrices:
        raise ValueError("heatmap: no distance matrix given")
    if vmax is None:
        vmax = max(float(m.max()) for m in matrices)
    area = size - scale_bar_height(size)
    panels = []
    for m in matrices:
        n = _check_matrix(m)
        m = m.detach().cpu().to(torch.float32)
        width = min(n, size) * (size // min(n, size))
        if n > area:  # more images than pixels: each pixel shows the mean of a block of pairs
            m = F.adaptive_avg_pool2d(m[None, None], area)[0, 0]
            n = area
        cell = max(1, area // n)
        rgb = colorize(m, vmax)
        img = rgb.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
        if cell >= 6:  # thin separating lines between cells
            img[::cell, :, :] = 1.0
            img[:, ::cell, :] = 1.0
        side = min(n * cell, area, width)
        panel = torch.ones(size, max(width, 1), 3)
        x = (width - side) // 2
        panel[:side, x : x + side] = img[:side, :side]
        panels.append(panel)
    spacer = torch.ones(size, gap, 3)
    parts = []
    for k, p in enumerate(panels):
        parts += [spacer, p] if k else [p]
    out = torch.cat(parts, dim=1)
    bar_h = scale_bar_height(size)
    out[size - bar_h :] = _scale_bar(out.shape[1], bar_h, 0.0, vmax)
    return out.unsqueeze(0).clamp(0, 1)
