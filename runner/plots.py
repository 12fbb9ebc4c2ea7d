"""Report images drawn with PIL: image grids, a bar chart with error bars, and a line plot."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]
FONT = ImageFont.load_default()


def _text(draw, xy, text, fill=(0, 0, 0), anchor="la"):
    draw.text(xy, text, fill=fill, font=FONT, anchor=anchor)


def image_grid(rows: list[tuple[str, list[Path]]], cell: int = 128, label_w: int = 110) -> Image.Image:
    """One labelled row of thumbnails per (label, image paths)."""
    cols = max((len(p) for _, p in rows), default=1) or 1
    grid = Image.new("RGB", (label_w + cols * (cell + 2), max(1, len(rows)) * (cell + 2)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, paths) in enumerate(rows):
        y = r * (cell + 2)
        for k, line in enumerate(_wrap(label, 16)[:6]):
            _text(draw, (4, y + 4 + 12 * k), line)
        for c, p in enumerate(paths):
            with Image.open(p) as im:
                thumb = im.convert("RGB")
                scale = cell / max(thumb.size)
                thumb = thumb.resize(
                    (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
                    Image.NEAREST if scale > 1 else Image.LANCZOS,
                )
            grid.paste(thumb, (label_w + c * (cell + 2), y))
    return grid


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])


def _axes(draw, box, ymax, ylabel, ticks=5):
    x0, y0, x1, y1 = box
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=(0, 0, 0))
    for k in range(ticks + 1):
        v = ymax * k / ticks
        y = y1 - (y1 - y0) * k / ticks
        draw.line([(x0 - 4, y), (x0, y)], fill=(0, 0, 0))
        draw.line([(x0 + 1, y), (x1, y)], fill=(235, 235, 235))
        _text(draw, (x0 - 6, y), f"{v:.3g}", anchor="rm")
    _text(draw, (x0, y0 - 14), ylabel)


def bar_chart(bars: list[dict], title: str, ylabel: str = "mean pairwise distance", size=(640, 400)) -> Image.Image:
    """bars: {label, value, ci: (lo, hi) | None, reference: float | None}; error bars show ci, a black tick the
    paper's reference value."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    _text(draw, (w // 2, 8), title, anchor="ma")
    tops = (
        [b["value"] for b in bars]
        + [b["ci"][1] for b in bars if b.get("ci")]
        + [b["reference"] for b in bars if b.get("reference") is not None]
    )
    ymax = max([t for t in tops if t == t] + [1e-6]) * 1.15
    box = (70, 40, w - 20, h - 60)
    _axes(draw, box, ymax, ylabel)
    x0, y0, x1, y1 = box
    slot = (x1 - x0) / max(1, len(bars))
    scale = lambda v: y1 - (y1 - y0) * v / ymax  # noqa: E731
    for k, b in enumerate(bars):
        cx = x0 + slot * (k + 0.5)
        half = slot * 0.3
        draw.rectangle([cx - half, scale(b["value"]), cx + half, y1], fill=COLORS[k % len(COLORS)])
        if b.get("ci"):
            lo, hi = scale(b["ci"][0]), scale(b["ci"][1])
            draw.line([(cx, lo), (cx, hi)], fill=(0, 0, 0), width=2)
            draw.line([(cx - 6, lo), (cx + 6, lo)], fill=(0, 0, 0), width=2)
            draw.line([(cx - 6, hi), (cx + 6, hi)], fill=(0, 0, 0), width=2)
        if b.get("reference") is not None:
            r = scale(b["reference"])
            draw.line([(cx - half - 4, r), (cx + half + 4, r)], fill=(0, 0, 0), width=1)
            _text(draw, (cx + half + 6, r), "paper", anchor="lm")
        _text(draw, (cx, y1 + 6), b["label"][:18], anchor="ma")
        _text(draw, (cx, y1 + 20), f"{b['value']:.3f}", anchor="ma")
    return img


def line_plot(
    series: dict[str, dict[float, float]], title: str, xlabel: str, ylabel: str, xticks=None, size=(640, 400)
) -> Image.Image:
    """One line per name through its {x: y} points; ticks at `xticks` (default: every x that occurs)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    _text(draw, (w // 2, 8), title, anchor="ma")
    ymax = max([v for s in series.values() for v in s.values()] + [1e-6]) * 1.1
    xs_all = sorted(xticks or {x for s in series.values() for x in s}) or [1]
    lo, hi = xs_all[0], xs_all[-1]
    box = (70, 40, w - 140, h - 50)
    _axes(draw, box, ymax, ylabel)
    x0, y0, x1, y1 = box
    xs = lambda x: x0 + (x1 - x0) * ((x - lo) / ((hi - lo) or 1))  # noqa: E731
    for x in xs_all:
        _text(draw, (xs(x), y1 + 6), f"{x:g}", anchor="ma")
    _text(draw, ((x0 + x1) // 2, y1 + 24), xlabel, anchor="ma")
    for k, (name, s) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        pts = [(xs(x), y1 - (y1 - y0) * s[x] / ymax) for x in sorted(s)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for p in pts:
            draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
        _text(draw, (x1 + 10, y0 + 16 * k), name[:20], fill=color)
    return img


def _dashed(draw, y, x0, x1, fill, dash=6):
    for x in range(int(x0), int(x1), 2 * dash):
        draw.line([(x, y), (min(x + dash, x1), y)], fill=fill, width=1)


def sweep_plot(points: list[dict], references: list[dict], title: str, size=(720, 420)) -> Image.Image:
    """Diversity per handover point, earliest handover on the left. points: {label, sub, value, ci, picked}: a dot with
    its interval, joined by a line; references: {label, value, ci}: a horizontal line at the value, dashed lines at
    its interval (the base and the distilled model alone)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    _text(draw, (w // 2, 8), title, anchor="ma")
    tops = [p["value"] for p in points] + [r["value"] for r in references]
    tops += [c[1] for c in [p.get("ci") for p in points] + [r.get("ci") for r in references] if c]
    ymax = max([t for t in tops if t == t] + [1e-6]) * 1.12
    box = (70, 40, w - 150, h - 70)
    _axes(draw, box, ymax, "mean pairwise distance")
    x0, y0, x1, y1 = box
    scale = lambda v: y1 - (y1 - y0) * max(0.0, v) / ymax  # noqa: E731
    ref_colors = {"base": (44, 160, 44), "distilled": (214, 39, 40)}
    for k, r in enumerate(references):
        color = ref_colors.get(r["label"], COLORS[(k + 4) % len(COLORS)])
        y = scale(r["value"])
        draw.line([(x0 + 1, y), (x1, y)], fill=color, width=2)
        for c in r.get("ci") or ():
            _dashed(draw, scale(c), x0 + 1, x1, color)
        _text(draw, (x1 + 6, y), f"{r['label'][:16]} {r['value']:.3f}", fill=color, anchor="lm")
    slot = (x1 - x0) / max(1, len(points))
    xy = [(x0 + slot * (i + 0.5), scale(p["value"])) for i, p in enumerate(points)]
    if len(xy) > 1:
        draw.line(xy, fill=COLORS[0], width=2)
    for (cx, cy), p in zip(xy, points):
        if p.get("ci"):
            lo, hi = scale(p["ci"][0]), scale(p["ci"][1])
            draw.line([(cx, lo), (cx, hi)], fill=(0, 0, 0), width=2)
            draw.line([(cx - 5, lo), (cx + 5, lo)], fill=(0, 0, 0), width=2)
            draw.line([(cx - 5, hi), (cx + 5, hi)], fill=(0, 0, 0), width=2)
        draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=COLORS[0])
        if p.get("picked"):
            draw.ellipse([cx - 8, cy - 8, cx + 8, cy + 8], outline=(255, 127, 14), width=2)
        _text(draw, (cx, y1 + 6), p["label"][:14], anchor="ma")
        _text(draw, (cx, y1 + 20), (p.get("sub") or "")[:16], fill=(90, 90, 90), anchor="ma")
    _text(
        draw,
        ((x0 + x1) // 2, y1 + 38),
        "handover (earliest on the left); circled: the earliest that reaches base",
        anchor="ma",
    )
    return img
