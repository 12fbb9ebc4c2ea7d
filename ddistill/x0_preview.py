"""x̂0 trajectory display maths (pure torch + PIL, no ComfyUI): which frames fit a grid, the annotated grid,
the Fig. 5 convergence curve (distance of each step's x̂0 to the final image) and its plot.

Shapes: decoded frames are ComfyUI IMAGE tensors [N, H, W, 3] in 0..1. A grid has one row per batch item
(seed) and one column per step; frames travel step-major (frame index = column * rows + row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

MAX_GRID_CELLS = 1024
PALETTE = {"base": (230, 126, 34), "distilled": (52, 152, 219)}
OTHER_COLOURS = [(46, 204, 113), (155, 89, 182), (241, 196, 15), (231, 76, 60), (26, 188, 156)]
BACKGROUND, INK, MUTED = (24, 24, 24), (235, 235, 235), (150, 150, 150)


def model_colour(label: str) -> tuple[int, int, int]:
    """A stable colour per model label (base orange, distilled blue, others from a small palette)."""
    if label in PALETTE:
        return PALETTE[label]
    return OTHER_COLOURS[sum(label.encode()) % len(OTHER_COLOURS)]


def pick_evenly(n: int, k: int) -> list[int]:
    """``k`` of ``range(n)`` spread evenly, always keeping the last (the final x̂0) and, for k >= 2, the first."""
    if n < 1 or k < 1:
        raise ValueError(f"pick_evenly: need n >= 1 and k >= 1, got n={n}, k={k}")
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


@dataclass(frozen=True)
class GridPlan:
    columns: tuple[int, ...]  # indices into the trajectory's frames (steps), in order
    rows: int  # batch items shown (the first ``rows``)
    total_steps: int
    total_rows: int

    @property
    def capped(self) -> bool:
        return len(self.columns) < self.total_steps or self.rows < self.total_rows

    def note(self, max_cells: int) -> str:
        if not self.capped:
            return ""
        return (
            f"max_cells {max_cells}: showing {len(self.columns)} of {self.total_steps} steps and {self.rows} of "
            f"{self.total_rows} seeds (first and last steps kept); raise max_cells to see more"
        )


def plan_grid(n_steps: int, batch: int, max_cells: int) -> GridPlan:
    """Columns (steps) and rows (seeds) that fit ``max_cells`` cells; steps are thinned evenly, seeds cut."""
    if n_steps < 1:
        raise ValueError(
            "trajectory: it is empty (no step was recorded); connect the trajectory of a sampler "
            "that ran at least one step"
        )
    if batch < 1:
        raise ValueError("trajectory: its frames hold no batch item")
    if not 2 <= max_cells <= MAX_GRID_CELLS:
        raise ValueError(f"max_cells: {max_cells} is out of range; use 2 to {MAX_GRID_CELLS}")
    n_cols = min(n_steps, max(2, max_cells // min(batch, 8)))
    rows = max(1, min(batch, max_cells // n_cols))
    return GridPlan(tuple(pick_evenly(n_steps, n_cols)), rows, n_steps, batch)


def cell_label(step: int, total: int, level: str, model: str) -> tuple[str, str]:
    """Two label lines of a grid cell: which step and model, and where on the noise schedule (``Frame.level``;
    Latin-1 only: Pillow's built-in font has no Greek letters or combining marks)."""
    return f"step {step + 1}/{total} · {model}", level


def load_font(size: int):
    """Pillow's default font at ``size`` px (scalable in Pillow >= 10.1, else its one bitmap size)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def to_pil(image: torch.Tensor) -> Image.Image:
    """[H, W, 3] float 0..1 -> PIL RGB."""
    return Image.fromarray((image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def from_pil(img: Image.Image) -> torch.Tensor:
    """PIL -> IMAGE [1, H, W, 3] float 0..1."""
    data = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
    return data.view(1, img.height, img.width, 3).float() / 255.0


def fit_cells(images: torch.Tensor, cell_size: int) -> torch.Tensor:
    """Scale [N, H, W, 3] so that the long edge is ``cell_size`` (area-averaged when shrinking)."""
    h, w = images.shape[1:3]
    scale = cell_size / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return images
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="area") if scale < 1 else F.interpolate(x, size=size, mode="bilinear")
    return x.permute(0, 2, 3, 1).clamp(0, 1)


MIN_LABEL_PX = 8  # smallest label font (Pillow's scalable default font; its bitmap fallback has one size)


def text_width(draw: ImageDraw.ImageDraw, text: str, font) -> float:
    """Pixels ``text`` covers from its x position: the advance or the ink's right edge, whichever is larger."""
    if not text:
        return 0.0
    return max(draw.textlength(text, font=font), draw.textbbox((0, 0), text, font=font)[2])


def line_height(font) -> int:
    """Height of one text line of ``font`` (ascender to descender of 'Ag', plus 2 px leading)."""
    box = font.getbbox("Ag")
    return box[3] - min(box[1], 0) + 2


def _shorten(draw, word: str, width: float, font) -> str:
    """``word`` cut to the longest prefix that fits ``width`` with a trailing '.' (at least its first letter)."""
    if text_width(draw, word, font) <= width:
        return word
    for k in range(len(word) - 1, 0, -1):
        cut = word[:k].rstrip(" ./") + "."
        if text_width(draw, cut, font) <= width:
            return cut
    return word[:1]


def wrap_text(draw, text: str, width: float, font, sep: str = " ", shorten: bool = False) -> list[str] | None:
    """Greedy wrap of ``text`` into lines no wider than ``width``: ``sep``-separated parts are kept whole where
    they fit (joined with ``sep`` while the line has room), a part too wide for one line is wrapped by words. A
    word wider than ``width`` is cut (``shorten``) or makes the wrap fail (returns None)."""
    lines: list[str] = []
    for part in text.split(sep):
        if text_width(draw, part, font) <= width:
            if lines and text_width(draw, lines[-1] + sep + part, font) <= width:
                lines[-1] += sep + part
            else:
                lines.append(part)
            continue
        line = None
        for word in part.split(" "):
            if text_width(draw, word, font) > width:
                if not shorten:
                    return None
                word = _shorten(draw, word, width, font)
            if line is not None and text_width(draw, line + " " + word, font) <= width:
                line += " " + word
            else:
                if line is not None:
                    lines.append(line)
                line = word
        lines.append(line)
    return lines


LABEL_SEP = " · "


def fit_labels(
    draw, labels: list[tuple[str, str]], width: float, start_px: int
) -> tuple[object, list[list[list[str]]]]:
    """Font and wrapped lines of every column's two label lines so that no line is wider than ``width``: the
    largest font size (``start_px`` down to ``MIN_LABEL_PX``) at which every label fits in at most 2, then 3, then
    4 lines (broken at ' · ', then at spaces); failing that, the smallest font with over-long words cut.
    Returns (font, [[line-1 lines, line-2 lines] per column])."""
    sizes = list(range(max(start_px, MIN_LABEL_PX), MIN_LABEL_PX - 1, -1))
    for max_lines in (2, 3, 4):
        for px in sizes:
            font = load_font(px)
            out = []
            for pair in labels:
                wrapped = [wrap_text(draw, t, width, font, LABEL_SEP) for t in pair]
                if any(w is None for w in wrapped) or sum(len(w) for w in wrapped) > max_lines:
                    break
                out.append(wrapped)
            else:
                return font, out
    font = load_font(MIN_LABEL_PX)
    return font, [[wrap_text(draw, t, width, font, LABEL_SEP, shorten=True) for t in pair] for pair in labels]


def compose_grid(
    cells: torch.Tensor, labels: list[tuple[str, str, str]], row_names: list[str], title: str = "", note: str = ""
) -> torch.Tensor:
    """Annotated grid: ``cells`` [cols, rows, h, w, 3]; ``labels`` per column (line 1, line 2, model label);
    returns IMAGE [1, H, W, 3]. Every cell carries its column's labels and a frame in its model's colour. Labels
    are fitted to the column width (smaller font, wrapped at ' · ' and spaces, words cut as a last resort), so
    neighbouring columns' labels never overlap; title and note wrap to the grid's width."""
    n_cols, n_rows, h, w = cells.shape[:4]
    if len(labels) != n_cols or len(row_names) != n_rows:
        raise ValueError(
            f"compose_grid: {n_cols} columns / {n_rows} rows but {len(labels)} labels / {len(row_names)} row names"
        )
    fs = max(10, min(20, w // 14))
    font, small = load_font(fs), load_font(max(9, fs - 2))
    pad, border = max(4, w // 40), 3
    gap = 3  # empty pixels between one column's labels and the next column (and 1 before, for overhanging glyphs)
    left = max(fs * 4, 40)
    cw = w + 2 * border + pad
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_font, wrapped = fit_labels(measure, [lab[:2] for lab in labels], cw - gap - 1, max(9, fs - 2))
    lh = line_height(label_font)
    n_lines = max(len(a) + len(b) for a, b in wrapped)
    band = n_lines * lh + 4
    ch = h + 2 * border + band + pad
    width = left + n_cols * cw + pad
    head = []  # (text, font, colour, line height)
    for text, f, colour in ((title, font, INK), (note, small, (255, 180, 80))):
        if text:
            for line in wrap_text(measure, text, width - 2 * pad, f, shorten=True):
                head.append((line, f, colour, line_height(f)))
    top = 4 + sum(x[3] for x in head) + (8 if head else 2)
    canvas = Image.new("RGB", (width, top + n_rows * ch + pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 4
    for line, f, colour, step in head:
        draw.text((pad, y), line, fill=colour, font=f)
        y += step
    for r in range(n_rows):
        y0 = top + r * ch
        name = wrap_text(measure, row_names[r], left - 8, font, shorten=True)[0]
        draw.text((6, y0 + h // 2), name, fill=INK, font=font)
        for c in range(n_cols):
            x0 = left + c * cw
            colour = model_colour(labels[c][2])
            draw.rectangle((x0, y0, x0 + w + 2 * border - 1, y0 + h + 2 * border - 1), fill=colour)
            canvas.paste(to_pil(cells[c, r]), (x0 + border, y0 + border))
            ty = y0 + h + 2 * border + 2
            for k, lines in enumerate(wrapped[c]):
                for line in lines:
                    draw.text((x0 + 1, ty), line, fill=MUTED if k else INK, font=label_font)
                    ty += lh
    return from_pil(canvas)


def pixel_distance_to_final(frames: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """RMS pixel distance (0..1 scale) of each frame to its seed's final image.

    ``frames`` [S, B, H, W, 3], ``final`` [B, H, W, 3] -> [S, B]."""
    if frames.shape[1:] != final.shape:
        raise ValueError(
            f"final image: shape {tuple(final.shape)} does not match the frames' {tuple(frames.shape[1:])}"
        )
    diff = frames.float() - final.float().unsqueeze(0)
    return diff.pow(2).flatten(2).mean(dim=2).sqrt()


def cosine_distance_to_final(emb: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """1 - cos of each frame's embedding to its seed's final embedding: [S, B, D], [B, D] -> [S, B]."""
    if emb.shape[1:] != final.shape:
        raise ValueError(
            f"final embedding: shape {tuple(final.shape)} does not match the frames' {tuple(emb.shape[1:])}"
        )
    e = F.normalize(emb.double(), dim=-1)
    f = F.normalize(final.double(), dim=-1).unsqueeze(0)
    return (1.0 - (e * f).sum(-1)).clamp_min(0.0).float()


def curve_table(dist: torch.Tensor, steps: list[int], sigmas: list[float], models: list[str]) -> str:
    """CSV: one line per step: step (1-based), sigma, model, mean over seeds, then each seed's distance."""
    n_seeds = dist.shape[1]
    lines = ["step,sigma,model,mean," + ",".join(f"seed_{b}" for b in range(n_seeds))]
    for i, step in enumerate(steps):
        vals = ",".join(f"{v:.5f}" for v in dist[i].tolist())
        lines.append(f"{step + 1},{sigmas[i]:.5g},{models[i]},{dist[i].mean().item():.5f},{vals}")
    return "\n".join(lines)


def render_curve(
    dist: torch.Tensor, steps: list[int], models: list[str], metric: str, width: int = 720, height: int = 420
) -> torch.Tensor:
    """Plot of distance-to-final per step (Fig. 5): thin line per seed, thick mean line, points coloured by
    the model that took the step. ``dist`` [S, B]; returns IMAGE [1, height, width, 3]."""
    if dist.ndim != 2 or dist.shape[0] != len(steps) or len(steps) != len(models) or not steps:
        raise ValueError(f"render_curve: distances {tuple(dist.shape)} do not match {len(steps)} steps")
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    font, small = load_font(15), load_font(12)
    ml, mr, mt, mb = 64, 20, 40, 48
    pw, ph = width - ml - mr, height - mt - mb
    ymax = max(float(dist.max()), 1e-6) * 1.08
    lo, hi = steps[0] + 1, steps[-1] + 1

    def xy(step: int, value: float):
        x = ml + (pw * (step + 1 - lo) / (hi - lo) if hi > lo else pw / 2)
        return x, mt + ph * (1 - value / ymax)

    d.text((ml, 10), f"x0 (denoised) distance to the final image ({metric})", fill=INK, font=font)
    d.line((ml, mt, ml, mt + ph), fill=MUTED)
    d.line((ml, mt + ph, ml + pw, mt + ph), fill=MUTED)
    for k in range(5):
        v = ymax * k / 4
        _, y = xy(lo - 1, v)
        d.line((ml - 4, y, ml, y), fill=MUTED)
        d.text((4, y - 7), f"{v:.3g}", fill=MUTED, font=small)
    every = max(1, len(steps) // 12)
    for i, s in enumerate(steps):
        if i % every == 0 or i == len(steps) - 1:
            x, _ = xy(s, 0)
            d.line((x, mt + ph, x, mt + ph + 4), fill=MUTED)
            d.text((x - 6, mt + ph + 8), str(s + 1), fill=MUTED, font=small)
    d.text((ml + pw // 2 - 20, height - 20), "step", fill=MUTED, font=small)
    for b in range(dist.shape[1]):
        pts = [xy(s, float(dist[i, b])) for i, s in enumerate(steps)]
        if len(pts) > 1:
            d.line(pts, fill=(110, 110, 110), width=1)
    mean = dist.mean(dim=1)
    pts = [xy(s, float(mean[i])) for i, s in enumerate(steps)]
    if len(pts) > 1:
        d.line(pts, fill=INK, width=3)
    for (x, y), m in zip(pts, models):
        d.ellipse((x - 5, y - 5, x + 5, y + 5), fill=model_colour(m))
    lx = ml + pw - 150
    for j, m in enumerate(dict.fromkeys(models)):
        d.ellipse((lx, mt + 6 + 18 * j, lx + 10, mt + 16 + 18 * j), fill=model_colour(m))
        d.text((lx + 16, mt + 3 + 18 * j), m, fill=INK, font=small)
    d.text((lx, mt + 6 + 18 * len(set(models))), "white line: mean over seeds", fill=INK, font=small)
    return from_pil(img)
