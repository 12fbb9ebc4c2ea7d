"""ddistill/x0_preview.py: grid planning and capping, the annotated grid, the Fig. 5 distances and plot (pure)."""

import importlib

import pytest
import torch

from ddistill.trajectory import Frame, noise_level


@pytest.fixture(scope="module")
def xp():
    return importlib.import_module("ddistill.x0_preview")


def test_pick_evenly_keeps_first_and_last(xp):
    assert xp.pick_evenly(50, 5) == [0, 12, 24, 37, 49]
    assert xp.pick_evenly(4, 10) == [0, 1, 2, 3]
    assert xp.pick_evenly(7, 1) == [6]
    assert xp.pick_evenly(7, 2) == [0, 6]
    for n in range(1, 30):
        for k in range(1, n + 1):
            got = xp.pick_evenly(n, k)
            assert len(got) == k and got == sorted(set(got)) and got[-1] == n - 1


@pytest.mark.parametrize(
    "steps,batch,cap,cols,rows",
    [(4, 4, 64, 4, 4), (50, 4, 64, 16, 4), (50, 16, 64, 8, 8), (4, 100, 64, 4, 16), (1, 3, 64, 1, 3), (9, 9, 2, 2, 1)],
)
def test_plan_grid_fits_the_cap(xp, steps, batch, cap, cols, rows):
    plan = xp.plan_grid(steps, batch, cap)
    assert (len(plan.columns), plan.rows) == (cols, rows)
    assert len(plan.columns) * plan.rows <= cap
    assert plan.columns[-1] == steps - 1
    assert plan.capped == (cols < steps or rows < batch)


def test_plan_grid_says_when_it_caps(xp):
    plan = xp.plan_grid(50, 4, 64)
    assert plan.note(64) == (
        "max_cells 64: showing 16 of 50 steps and 4 of 4 seeds (first and last steps kept); raise max_cells to see more"
    )
    assert xp.plan_grid(4, 2, 64).note(64) == ""


def test_plan_grid_errors_name_the_input(xp):
    with pytest.raises(ValueError, match="trajectory: it is empty"):
        xp.plan_grid(0, 2, 64)
    with pytest.raises(ValueError, match="max_cells: 1 is out of range; use 2 to 1024"):
        xp.plan_grid(4, 2, 1)


def test_compose_grid_places_each_cell_in_its_row_and_column(xp):
    cols, rows, h, w = 3, 2, 32, 40
    cells = torch.zeros(cols, rows, h, w, 3)
    for c in range(cols):
        for r in range(rows):
            cells[c, r] = torch.tensor([c / 2, r, 0.5])  # a distinct flat colour per cell
    labels = [
        xp.cell_label(c, cols, noise_level(14.6 / (c + 1), 999 - 250 * c, False), "base" if c == 0 else "distilled")
        + ("base" if c == 0 else "distilled",)
        for c in range(cols)
    ]
    grid = xp.compose_grid(cells, labels, ["#0", "#1"], title="t", note="capped")
    assert grid.ndim == 4 and grid.shape[0] == 1 and grid.shape[-1] == 3
    img = (grid[0] * 255).round()
    for c in range(cols):
        for r in range(rows):
            want = (cells[c, r, 0, 0] * 255).round()
            hits = (img == want).all(-1)
            ys, xs = hits.nonzero(as_tuple=True)
            assert ys.numel() >= h * w * 0.9, (c, r)
            # cells keep the grid order: later columns further right, later rows further down
            if c:
                prev = (img == (cells[c - 1, r, 0, 0] * 255).round()).all(-1).nonzero(as_tuple=True)[1]
                assert xs.float().mean() > prev.float().mean()
            if r:
                prev = (img == (cells[c, r - 1, 0, 0] * 255).round()).all(-1).nonzero(as_tuple=True)[0]
                assert ys.float().mean() > prev.float().mean()


LONG_NOTE = (
    "max_cells 64: showing 16 of 50 steps and 4 of 8 seeds (first and last steps kept); raise max_cells to see more"
)


def labels_for(xp, cols: int, total: int = 50, models=("base", "distilled", "replace final")):
    return [
        xp.cell_label(
            c * (total // cols),
            total,
            noise_level(14.6146 / (c + 1), 999 - 20 * c, False),
            models[min(c, len(models) - 1)],
        )
        + (models[min(c, len(models) - 1)],)
        for c in range(cols)
    ]


@pytest.mark.parametrize("cell_size", [32, 64])
def test_grid_labels_fit_their_column_at_small_cells(xp, cell_size):
    """Every label line is narrower than its column (measured with the font it is drawn in), so neighbouring
    labels never overlap ("distilledstep 3/4"), and nothing of a label is dropped but cut words."""
    from PIL import Image, ImageDraw

    cols = 4
    labels = labels_for(xp, cols)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pitch = cell_size + 2 * 3 + max(4, cell_size // 40)  # cell + frame + pad, as compose_grid lays it out
    font, wrapped = xp.fit_labels(draw, [lab[:2] for lab in labels], pitch - 4, 9)
    for lab, lines in zip(labels, wrapped):
        for text, parts in zip(lab[:2], lines):
            assert parts, text
            for line in parts:
                assert xp.text_width(draw, line, font) <= pitch - 4, (cell_size, line)
    # the drawn grid: the label band of each column ends in background pixels before the next column starts
    cells = torch.ones(cols, 1, cell_size, cell_size, 3)
    grid = (xp.compose_grid(cells, labels, ["#0"], title="x0 (denoised) per step", note=LONG_NOTE)[0] * 255).round()
    bg = torch.tensor(xp.BACKGROUND, dtype=grid.dtype)
    frame = (grid - torch.tensor(xp.model_colour("base"), dtype=grid.dtype)).abs().sum(-1) == 0
    ys, xs = frame.nonzero(as_tuple=True)
    band_top, left = int(ys.max()) + 1, int(xs.min())
    band = grid[band_top:]
    for c in range(1, cols + 1):
        gap = band[:, left + c * pitch - 3 : left + c * pitch]
        assert ((gap - bg).abs().sum(-1) == 0).all(), f"cell_size {cell_size}: a label runs into column {c}"


def test_header_note_wraps_to_the_grid_width(xp):
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = xp.load_font(9)
    lines = xp.wrap_text(draw, LONG_NOTE, 120, font)
    assert len(lines) > 1 and " ".join(lines) == LONG_NOTE  # wrapped at spaces, nothing lost
    assert all(xp.text_width(draw, line, font) <= 120 for line in lines)
    cells = torch.ones(2, 1, 32, 32, 3)
    short = xp.compose_grid(cells, labels_for(xp, 2), ["#0"], title="t")
    long = xp.compose_grid(cells, labels_for(xp, 2), ["#0"], title="t", note=LONG_NOTE)
    assert long.shape[2] == short.shape[2] and long.shape[1] > short.shape[1] + 3 * 9  # taller, not wider


def test_wrap_text_keeps_parts_and_cuts_only_as_a_last_resort(xp):
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = xp.load_font(10)
    wide = xp.text_width(draw, "step 3/4 · distilled", font)
    assert xp.wrap_text(draw, "step 3/4 · distilled", wide, font, " · ") == ["step 3/4 · distilled"]
    assert xp.wrap_text(draw, "step 3/4 · distilled", wide - 1, font, " · ") == ["step 3/4", "distilled"]
    narrow = xp.text_width(draw, "distil", font)
    assert xp.wrap_text(draw, "distilled", narrow, font) is None
    (cut,) = xp.wrap_text(draw, "distilled", narrow, font, shorten=True)
    assert cut.endswith(".") and "distilled".startswith(cut[:-1]) and xp.text_width(draw, cut, font) <= narrow


def test_cell_label_text(xp):
    assert xp.cell_label(0, 4, noise_level(14.6146, 999.0, False), "base") == ("step 1/4 · base", "sigma 14.6 · t 999")


def test_flow_steps_are_labelled_by_sigma(xp):
    """Flow models: the timestep is sigma (FLUX) or 1000 sigma (SD3, Z-Image), so the label is sigma alone, with
    enough digits to tell schnell's 1, .75, .5, .25 apart (the old label printed 't 1' for each)."""
    assert [noise_level(s, s, True) for s in (1.0, 0.75, 0.5, 0.25)] == [
        "sigma 1.000", "sigma 0.750", "sigma 0.500", "sigma 0.250"
    ]  # fmt: skip
    assert noise_level(0.9375, 937.5, True) == "sigma 0.938"
    frame = Frame(2, 0.5, 500.0, "distilled", torch.zeros(1, 16, 2, 2), flow=True)
    assert frame.level == "sigma 0.500"
    assert xp.cell_label(frame.step, 4, frame.level, frame.model) == ("step 3/4 · distilled", "sigma 0.500")
    assert Frame(0, 14.6146, 999.0, "base", torch.zeros(1, 4, 2, 2)).level == "sigma 14.6 · t 999"


def test_pixel_distance_to_final(xp):
    final = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    frames = torch.stack([final + 0.5, final + 0.25, final])
    d = xp.pixel_distance_to_final(frames, final)
    assert d.shape == (3, 2)
    torch.testing.assert_close(d, torch.tensor([[0.5, 0.5], [0.25, 0.25], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="final image: shape"):
        xp.pixel_distance_to_final(frames, final[:1])


def test_cosine_distance_to_final(xp):
    final = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    emb = torch.tensor([[[0.0, 1.0], [3.0, 0.0]], [[1.0, 1.0], [0.0, 1.0]]])
    d = xp.cosine_distance_to_final(emb, final)
    torch.testing.assert_close(d, torch.tensor([[1.0, 1.0], [1 - 2**-0.5, 0.0]]))


def test_curve_table_and_plot(xp):
    dist = torch.tensor([[0.4, 0.6], [0.1, 0.3], [0.0, 0.0]])
    csv = xp.curve_table(dist, [0, 1, 3], [14.6, 4.26, 0.72], ["base", "distilled", "distilled"])
    assert csv.splitlines() == [
        "step,sigma,model,mean,seed_0,seed_1",
        "1,14.6,base,0.50000,0.40000,0.60000",
        "2,4.26,distilled,0.20000,0.10000,0.30000",
        "4,0.72,distilled,0.00000,0.00000,0.00000",
    ]
    img = xp.render_curve(dist, [0, 1, 3], ["base", "distilled", "distilled"], "pixel", width=400, height=300)
    assert img.shape == (1, 300, 400, 3)
    base_colour = torch.tensor(xp.model_colour("base")) / 255
    assert ((img[0] - base_colour).abs().max(-1).values < 1e-3).any()  # the base step's marker is drawn
    with pytest.raises(ValueError, match="render_curve: distances"):
        xp.render_curve(dist, [0, 1], ["base", "distilled"], "pixel")
