"""Thumbnail cards for the template browser: ``workflows/<name>.jpg`` (ComfyUI's frontend 1.32 asks custom-node
templates for ``<name>.jpg``). Drawn with Pillow from the experiment description, deterministic."""
from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from workflow_catalog import EXPERIMENTS

SIZE = (512, 384)
BG, FG, ACCENT, MUTED = (24, 28, 38), (236, 238, 243), (255, 176, 59), (150, 158, 175)
METHOD_COLORS = [(91, 155, 213), (237, 125, 49), (112, 173, 71), (165, 105, 189), (255, 192, 0), (68, 190, 190)]


def _font(size: int, bold: bool = False):
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu"):
        path = Path(folder) / name
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default()


def _methods(exp) -> list[str]:
    graph = exp.build()
    return [n.title.split(":", 1)[1].strip() for n in graph.nodes
            if n.type == "SaveImage" and n.title and n.title.startswith("method:")]


def draw(exp) -> Image.Image:
    img = Image.new("RGB", SIZE, BG)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, SIZE[0], 6], fill=ACCENT)
    d.text((24, 22), "Diversity distillation · " + exp.paper, font=_font(15), fill=ACCENT)
    y = 50
    for line in textwrap.wrap(exp.title, 30)[:3]:
        d.text((24, y), line, font=_font(26, True), fill=FG)
        y += 34
    y += 10
    methods = _methods(exp)
    w = (SIZE[0] - 48 - 8 * (len(methods) - 1)) // max(1, len(methods))
    for i, m in enumerate(methods):
        x = 24 + i * (w + 8)
        color = METHOD_COLORS[i % len(METHOD_COLORS)]
        d.rounded_rectangle([x, y, x + w, y + 70], radius=8, fill=tuple(c // 3 for c in color), outline=color, width=2)
        for j, part in enumerate(textwrap.wrap(m, max(6, w // 9), break_long_words=False)[:3]):
            d.text((x + 6, y + 8 + 18 * j), part, font=_font(14, True), fill=FG)
    y += 88
    for line in textwrap.wrap(exp.compare, 58)[:4]:
        d.text((24, y), line, font=_font(14), fill=MUTED)
        y += 19
    return img


def draw_all(folder: Path) -> list[Path]:
    paths = []
    for exp in EXPERIMENTS:
        path = Path(folder) / f"{exp.name}.jpg"
        draw(exp).save(path, "JPEG", quality=88, optimize=True)
        paths.append(path)
    return paths
