"""Thumbnails for the template browser: ``workflows/<name>.jpg`` (ComfyUI's frontend 1.32 asks custom-node
templates for ``<name>.jpg``). Cards drawn with Pillow from the experiment description; the offline demo twins
get a real render of their samples per method."""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .workflow_catalog import EXPERIMENTS

SIZE = (512, 384)
BG, FG, ACCENT, MUTED = (24, 28, 38), (236, 238, 243), (255, 176, 59), (150, 158, 175)
OFFLINE = (70, 200, 110)  # the badge of the workflows that need no model file
OFFLINE_BADGE = "RUNS OFFLINE · NO DOWNLOADS · CPU"
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
    return [
        n.title.split(":", 1)[1].strip()
        for n in graph.nodes
        if n.type == "SaveImage" and n.title and n.title.startswith("method:")
    ]


def _header(d: ImageDraw.ImageDraw, exp, max_lines: int) -> int:
    """Accent bar, source line and title; the demo twins (no model file) get a green 'runs offline' badge first."""
    offline = not exp.files
    d.rectangle([0, 0, SIZE[0], 6], fill=OFFLINE if offline else ACCENT)
    y = 14
    if offline:
        font = _font(14, True)
        w = d.textlength(OFFLINE_BADGE, font=font)
        d.rounded_rectangle([24, y, 24 + w + 20, y + 26], radius=13, fill=(20, 60, 35), outline=OFFLINE, width=2)
        d.text((34, y + 5), OFFLINE_BADGE, font=font, fill=OFFLINE)
        y += 34
    d.text((24, y + 4), "Diversity distillation · " + exp.paper, font=_font(15), fill=ACCENT)
    y += 30
    for line in textwrap.wrap(exp.title, 30)[:max_lines]:
        d.text((24, y), line, font=_font(26, True), fill=FG)
        y += 32
    return y + 8


def draw(exp) -> Image.Image:
    """A card: title, one box per method, the paper's number to compare with."""
    img = Image.new("RGB", SIZE, BG)
    d = ImageDraw.Draw(img)
    y = _header(d, exp, 3)
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
    d.text(
        (24, SIZE[1] - 30),
        f"needs {len(exp.files)} model files (listed in the workflow's note)",
        font=_font(13),
        fill=ACCENT,
    )
    return img


def draw_render(exp, methods: dict) -> Image.Image:
    """A real render: per method, the first samples the workflow made and its Diversity Meter number."""
    img = Image.new("RGB", SIZE, BG)
    d = ImageDraw.Draw(img)
    y = _header(d, exp, 2)
    order = _methods(exp)
    row_h = min(56, (SIZE[1] - y - 8) // max(1, len(order)))
    cell = row_h - 6
    for i, name in enumerate(order):
        images, diversity = methods.get(name, (None, None))
        color = METHOD_COLORS[i % len(METHOD_COLORS)]
        d.text((24, y + cell // 2 - 16), name, font=_font(13, True), fill=color)
        if diversity is not None:
            d.text((24, y + cell // 2 + 2), f"diversity {diversity:.3f}", font=_font(12), fill=MUTED)
        for j, im in enumerate((images or [])[:6]):
            img.paste(im.resize((cell, cell), Image.NEAREST), (150 + j * (cell + 4), y))
        y += row_h
    return img


def draw_all(folder: Path, renders: dict | None = None) -> list[Path]:
    """Write ``<name>.jpg`` for every experiment; ``renders`` ({name: {method: (images, diversity)}}) gives the
    demo twins a real render instead of a card."""
    paths = []
    for exp in EXPERIMENTS:
        path = Path(folder) / f"{exp.name}.jpg"
        rendered = (renders or {}).get(exp.name)
        (draw_render(exp, rendered) if rendered else draw(exp)).save(path, "JPEG", quality=88, optimize=True)
        paths.append(path)
    return paths
