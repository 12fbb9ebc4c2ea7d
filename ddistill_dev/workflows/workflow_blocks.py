"""Building blocks of the example workflows: canvas layout, model pairs, samplers and each method's outputs.

Titles follow ``runner/CONVENTIONS.md``: text encoders ``prompt`` / ``negative``, the latent ``batch``, every node
with a seed ``seed``, and each method's Save Image, Diversity Meter and x̂0 Preview ``method: NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddistill import protocol as P
from ddistill.noise_level import PAPER_AMPLIFICATION

from .workflow_blueprint import blueprint_id, hybrid_sampler
from .workflow_graph import Graph

PROMPT = "image of a car"  # the prompt of Tables D.1 and E.1
BATCH = 8
NEG = ""
# The Diversity Meter keeps its default backend (EfficientNet-Lite0, offline); the paper's metric is
# "dreamsim_ensemble", whose weights users add to models/dreamsim.


@dataclass(frozen=True)
class RulePoint:
    """Where Base First Step's noise-level rule (``base_steps`` 0, ``handover_amplification`` A* = the paper's 18.2)
    hands over on a family's schedule: after step ``k``, at ``sigma`` with amplification ``a``; ``before`` is A at
    the step before (sigma_(k-1); inf at pure noise). The numbers the notes and row labels show, computed from
    ComfyUI's own model_sampling by ``tests/integration/hybrid/test_handover_rule_families.py``."""

    k: int
    sigma: float
    a: float
    before: float

    def why(self, steps: int, a_star: float) -> str:
        at = f"A {self.a:.3g} <= {a_star:g} at sigma {self.sigma:.4g}"
        return f"k = {self.k} of {steps}: {at}" + ("" if self.k == 1 else f", A {self.before:.3g} at the step before")


@dataclass(frozen=True)
class Family:
    """A distilled family: its model file, the schedule and update rule (hybrid and distilled alone), its native
    resolution, its steps and guidance, the shift node on its side (ModelSamplingAuraFlow / ModelSamplingSD3 value,
    None: none) and whether Base First Step takes its schedule from it (``distilled_model`` connected: the flow
    families, whose base and distilled sampling may differ). ``rule``: the hybrid hands over by noise level
    (``base_steps`` 0) and this is where that lands on the family's schedule; None: after one base step (the paper's
    ``base_steps`` 1). Values of the flow families: README "Settings per family"."""

    label: str
    file: str | None
    scheduler: str
    sampler: str
    size: int = 1024
    steps: int = 4
    cfg: float = 1.0
    shift: float | None = None
    schedule_from_distilled: bool = False
    rule: RulePoint | None = None

    @property
    def base_steps(self) -> int:
        """The hybrid's ``base_steps``: 0 (by noise level) where ``rule`` is set, else 1."""
        return 0 if self.rule else 1


DMD2 = Family("SDXL-DMD2", "dmd2_sdxl_4step_lora_fp16.safetensors", "lcm", "lcm")
TURBO = Family("SDXL-Turbo", "sd_xl_turbo_1.0_fp16.safetensors", "trailing", "euler_ancestral", size=512)
LIGHTNING = Family("SDXL-Lightning 4-step", "sdxl_lightning_4step.safetensors", "trailing", "euler")
LCM = Family("LCM-LoRA SDXL", "lcm-lora-sdxl.safetensors", "lcm", "lcm")
SD_TURBO = Family("SD-Turbo", "sd_turbo.safetensors", "trailing", "euler_ancestral", size=512)
PIXART_ALPHA_FILE = "PixArt-XL-2-1024-MS.safetensors"
PIXART_DELTA = Family("PixArt-delta", "PixArt-LCM-XL-2-1024-MS.safetensors", "lcm", "lcm")
DEMO = Family("demo student", None, "lcm", "lcm", size=32)


@dataclass(frozen=True)
class Base:
    """How the base model runs alone (the paper's 'Base' column)."""

    label: str
    steps: int = 50
    cfg: float = 5.0
    sampler: str = "euler"
    scheduler: str = "normal"
    shift: float | None = None  # the shift node on the base side (flow families), None: none


SDXL_BASE = Base("SDXL base")
SD21_BASE = Base("SD 2.1", cfg=7.0)
PIXART_ALPHA = Base("PixArt-alpha", cfg=4.5)
DEMO_BASE = Base("demo base", cfg=1.0)  # unconditional: cfg 1 (one pass)


class Canvas:
    """Lays nodes out: loaders and encoders on the left, one row (a group) per method on the right.

    The columns and the row height leave room for what the nodes become after a run, in the classic canvas and
    in the "Nodes 2.0" renderer (``tests/integration/workflows/test_workflow_layout_browser.py`` checks that no two
    nodes overlap then): the Diversity Meter with its numbers and heatmap preview (``METER_SIZE``, its size from the
    start), samplers with the live x̂0 filmstrip (up to 640 px wide, one strip high), Save Image with its previews,
    x̂0 Preview with its grid. Columns of a row: helpers (schedule, sampler select, recorder) | sampler (a single
    sampler, or Base First Step + Distilled Continue) | VAE Decode | Save Image | Diversity Meter | x̂0 Preview."""

    ROW_H = 700  # one method row (its group box is ROW_H - 30 high)
    X_AUX, X_SAMPLER, X_CONTINUE, X_DECODE, X_SAVE, X_METER, X_EXTRA = 980, 1340, 1700, 2080, 2360, 2740, 3180
    AUX_Y = (0, 200, 330)  # helper nodes' offsets in a row: schedule, sampler select, x̂0 recorder
    DECODE_SIZE, SAVE_SIZE, METER_SIZE, X0_SIZE = (240, 50), (340, 380), (400, 600), (420, 600)

    STRIP_PX = (24, 102, 640)  # js/x0_filmstrip.js: a sampler widens to 24 px + 102 px a frame, at most 640 px

    NOTE_W, NOTE_H, NOTE_LINE_PX, NOTE_CHARS = 900, 360, 15, 110  # the note above the loaders

    def __init__(self, name: str, note: str):
        self.name = name
        self.g = Graph(name)
        h = self.note_height(note)
        self.g.note(note, pos=(0, -h - 40), size=(self.NOTE_W, h))
        self.rows = 0
        self.col_y = {0: 0, 460: 0}

    COLUMNS = ("X_SAMPLER", "X_CONTINUE", "X_DECODE", "X_SAVE", "X_METER", "X_EXTRA")

    def fit_filmstrip(self, frames: int, at: str = "X_CONTINUE") -> None:
        """Move the columns right of the sampler column ``at`` (Distilled Continue; ``X_SAMPLER``: Base First Step)
        so that its live filmstrip of ``frames`` frames fits."""
        pad, per, most = self.STRIP_PX
        after = self.COLUMNS[self.COLUMNS.index(at) + 1 :]
        extra = max(0, min(most, pad + per * frames) - (getattr(self, after[0]) - getattr(self, at) - 20))
        for col in after:
            setattr(self, col, getattr(self, col) + extra)

    @classmethod
    def note_height(cls, note: str) -> int:
        """Height of the note: ``NOTE_H``, or more for a long text. "Nodes 2.0" sizes a note to its rendered text
        (about 15 px per line of 110 characters at 900 px, measured on frontend 1.58.1), so a long note would reach
        down over the loaders below it; the classic canvas uses this size as given."""
        lines = sum(max(1, -(-len(line) // cls.NOTE_CHARS)) for line in note.split("\n"))
        return max(cls.NOTE_H, lines * cls.NOTE_LINE_PX + 40)

    def left(self, class_type, inputs=None, title=None, x=0, h=160, **kw):
        node = self.g.add(class_type, inputs, title=title, pos=(x, self.col_y[x]), **kw)
        self.col_y[x] += h
        return node

    def aux(self, y: int, slot: int) -> tuple[int, int]:
        """Position of helper node ``slot`` (0 schedule, 1 sampler select, 2 recorder) of the row at ``y``."""
        return self.X_AUX, y + self.AUX_Y[slot]

    def row(self, label: str, right: int | None = None, left: int | None = None) -> int:
        y = self.rows * self.ROW_H
        self.rows += 1
        x0, x1 = (left or self.X_AUX) - 20, (right or self.X_METER + self.METER_SIZE[0] + 20)
        self.g.group(label, (x0, y - 50, x1 - x0, self.ROW_H - 30))
        return y

    def finish(self, method: str, y: int, latent, vae, meter: bool = True, frames_per_video: int = 0):
        """VAE Decode -> Save Image and Diversity Meter, both titled ``method: NAME``; returns the IMAGE output.
        ``frames_per_video`` > 0: the decoded batch is clips of that many frames (the meter's video mode)."""
        g = self.g
        image = g.add("VAEDecode", {"samples": latent, "vae": vae}, pos=(self.X_DECODE, y), size=self.DECODE_SIZE)
        g.add(
            "SaveImage",
            {"images": image[0], "filename_prefix": f"ddistill/{self.name}/{method.replace(' ', '_')}"},
            title=f"method: {method}",
            pos=(self.X_SAVE, y),
            size=self.SAVE_SIZE,
        )
        if meter:
            g.add(
                P.DIVERSITY_METER,
                {"images": image[0], **({"frames_per_video": frames_per_video} if frames_per_video else {})},
                title=f"method: {method}",
                pos=(self.X_METER, y),
                size=self.METER_SIZE,
            )
        return image[0]


# ---------------------------------------------------------------------------------------------------- samplers
def ksampler(c: Canvas, y, m: dict, latent, steps, cfg, sampler, scheduler):
    return c.g.add(
        "KSampler",
        {
            "model": m["model"],
            "positive": m["pos"],
            "negative": m["neg"],
            "latent_image": latent,
            "seed": 0,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": sampler,
            "scheduler": scheduler,
            "denoise": 1.0,
        },
        title="seed",
        pos=(c.X_SAMPLER, y),
    )


def hybrid(
    c: Canvas, y, first: dict, rest: dict, latent, fam: Family, base_cfg=1.0, base_steps=None, steps=None, labels=None
):
    """Base First Step Sampler (``first`` takes ``base_steps``; None: the family's, see ``Family.base_steps``) ->
    Distilled Continue Sampler (``rest``). ``labels`` (first, rest): the ``model_label`` of each node where it holds
    the other model than its role (the name its x̂0 frames carry); None keeps the roles."""
    first_label, rest_label = labels or ("", "")
    base_steps = fam.base_steps if base_steps is None else base_steps
    a = c.g.add(
        P.BASE_FIRST_STEP,
        {
            "base_model": first["model"],
            "positive": first["pos"],
            "negative": first["neg"],
            "latent_image": latent,
            "seed": 0,
            "base_cfg": base_cfg,
            "base_steps": base_steps,
            "steps": steps or fam.steps,
            "scheduler": fam.scheduler,
            "sampler_name": fam.sampler,
            **({"model_label": first_label} if first_label else {}),
            **({"distilled_model": rest["model"]} if fam.schedule_from_distilled else {}),
        },
        title="seed",
        pos=(c.X_SAMPLER, y),
    )
    b = c.g.add(
        P.DISTILLED_CONTINUE,
        {
            "distilled_model": rest["model"],
            "positive": rest["pos"],
            "negative": rest["neg"],
            "latent": a[0],
            "cfg": 1.0,
            **({"model_label": rest_label} if rest_label else {}),
        },
        pos=(c.X_CONTINUE, y),
    )
    return a, b


def schedule(c: Canvas, y, model, steps: int, scheduler: str):
    """SIGMAS of ``model``: the pack's Distilled Schedule for its ``lcm`` / ``trailing`` (stock schedulers have no LCM
    schedule), stock BasicScheduler for ComfyUI's schedulers."""
    if scheduler in ("lcm", "trailing"):
        return c.g.add(P.DISTILLED_SCHEDULE, {"model": model, "steps": steps, "scheduler": scheduler}, pos=c.aux(y, 0))
    inputs = {"model": model, "scheduler": scheduler, "steps": steps, "denoise": 1.0}
    return c.g.add("BasicScheduler", inputs, pos=c.aux(y, 0))


def recorded_sampler(c: Canvas, y, m: dict, latent, steps, cfg, sampler, scheduler, label):
    """A stock SamplerCustom whose sampler records x̂0 (Record x̂0 Sampler); returns (SamplerCustom, recorder)."""
    sel = c.g.add("KSamplerSelect", {"sampler_name": sampler}, pos=c.aux(y, 1))
    rec = c.g.add(P.RECORD_X0_SAMPLER, {"sampler": sel[0], "label": label}, pos=c.aux(y, 2))
    sig = schedule(c, y, m["model"], steps, scheduler)
    sc = c.g.add(
        "SamplerCustom",
        {
            "model": m["model"],
            "add_noise": True,
            "noise_seed": 0,
            "cfg": cfg,
            "positive": m["pos"],
            "negative": m["neg"],
            "sampler": rec[0],
            "sigmas": sig[0],
            "latent_image": latent,
        },
        title="seed",
        pos=(c.X_SAMPLER, y),
    )
    return sc, rec


def x0_preview(c: Canvas, y, method: str, vae, latent, trajectory=None, recording=None):
    inputs = {"vae": vae, "latent": latent}
    inputs.update({"trajectory": trajectory} if trajectory is not None else {"recording": recording})
    return c.g.add(P.X0_PREVIEW, inputs, title=f"method: {method}", pos=(c.X_EXTRA, y), size=c.X0_SIZE)


# ------------------------------------------------------------------------------------------------- model pairs
def _checkpoint(c: Canvas, name):
    return c.left("CheckpointLoaderSimple", {"ckpt_name": name}, h=190)


def _encode(c: Canvas, clip, text, title):
    return c.left("CLIPTextEncode", {"text": text, "clip": clip}, title=title, x=460, h=250, size=(400, 200))


def _latent(c: Canvas, size, batch=BATCH, node="EmptyLatentImage"):
    return c.left(node, {"width": size, "height": size, "batch_size": batch}, title="batch", x=460, h=180)[0]


def _encoded(c, ckpt_node, prompt):
    pos, neg = _encode(c, ckpt_node[1], prompt, "prompt"), _encode(c, ckpt_node[1], NEG, "negative")
    return {"model": ckpt_node[0], "pos": pos[0], "neg": neg[0], "vae": ckpt_node[2]}


def checkpoint_pair(c: Canvas, base_file: str, fam: Family, prompt=PROMPT, batch=BATCH):
    """Base checkpoint + the family's distilled model (a LoRA on the base, or its own checkpoint with its own CLIP
    and VAE); returns (base, distilled, latent) where base/distilled are dicts model/pos/neg/vae."""
    base = _encoded(c, _checkpoint(c, base_file), prompt)
    if fam.file.startswith(("dmd2", "lcm-lora")):
        lora = c.left(
            "LoraLoaderModelOnly", {"model": base["model"], "lora_name": fam.file, "strength_model": 1.0}, h=160
        )
        distilled = {**base, "model": lora[0]}
    else:
        distilled = _encoded(c, _checkpoint(c, fam.file), prompt)
    return base, distilled, _latent(c, fam.size, batch)


def pixart_pair(c: Canvas, prompt=PROMPT, batch=BATCH):
    """PixArt-alpha and PixArt-delta (Load Diffusion Model), one T5-XXL (type 'pixart') and the SD 1.x VAE."""
    b = c.left("UNETLoader", {"unet_name": PIXART_ALPHA_FILE, "weight_dtype": "default"}, h=160)
    d = c.left("UNETLoader", {"unet_name": PIXART_DELTA.file, "weight_dtype": "default"}, h=160)
    clip = c.left("CLIPLoader", {"clip_name": "t5xxl_fp16.safetensors", "type": "pixart"}, h=190)
    vae = c.left("VAELoader", {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}, h=130)
    pos, neg = _encode(c, clip[0], prompt, "prompt"), _encode(c, clip[0], NEG, "negative")
    base = {"model": b[0], "pos": pos[0], "neg": neg[0], "vae": vae[0]}
    return base, {**base, "model": d[0]}, _latent(c, 1024, batch)


def demo_pair(c: Canvas, batch=BATCH):
    """The pack's bundled digit models (no download): unconditional, pixel-space VAE, 32x32 images."""
    demo = c.left(P.DEMO_MODEL_LOADER, {}, h=170)
    pos = c.left(P.DEMO_PROMPT, {"text": "a handwritten digit"}, title="prompt", x=460, h=130)
    neg = c.left(P.DEMO_PROMPT, {"text": ""}, title="negative", x=460, h=130)
    base = {"model": demo[0], "pos": pos[0], "neg": neg[0], "vae": demo[2]}
    # 3-channel pixel-space latents: the core empty latent for pixel-space models (32 px = the digit images)
    return base, {**base, "model": demo[1]}, _latent(c, DEMO.size, batch, "EmptyChromaRadianceLatentImage")


# ------------------------------------------------------------------------------------------------- method rows
def base_row(c: Canvas, base: dict, latent, cfg: Base):
    y = c.row(f"Base alone: {cfg.label}, {cfg.steps} steps {cfg.sampler}, cfg {cfg.cfg:g}")
    s = ksampler(c, y, base, latent, cfg.steps, cfg.cfg, cfg.sampler, cfg.scheduler)
    return c.finish("base", y, s[0], base["vae"])


def distilled_sampler(c: Canvas, y, d: dict, latent, fam: Family):
    """The distilled model alone on exactly the hybrid's schedule: stock SamplerCustom + KSamplerSelect + the
    schedule of ``schedule``."""
    sel = c.g.add("KSamplerSelect", {"sampler_name": fam.sampler}, pos=c.aux(y, 1))
    sig = schedule(c, y, d["model"], fam.steps, fam.scheduler)
    return c.g.add(
        "SamplerCustom",
        {
            "model": d["model"],
            "add_noise": True,
            "noise_seed": 0,
            "cfg": fam.cfg,
            "positive": d["pos"],
            "negative": d["neg"],
            "sampler": sel[0],
            "sigmas": sig[0],
            "latent_image": latent,
        },
        title="seed",
        pos=(c.X_SAMPLER, y),
    )


def distilled_row(c: Canvas, d: dict, latent, fam: Family, method="distilled"):
    how = f"{fam.steps} steps {fam.sampler}, '{fam.scheduler}' schedule, cfg {fam.cfg:g}"
    y = c.row(f"Distilled alone: {fam.label}, {how}")
    return c.finish(method, y, distilled_sampler(c, y, d, latent, fam)[0], d["vae"])


def hybrid_row(c: Canvas, base: dict, d: dict, latent, fam: Family, method="hybrid", base_cfg=1.0, base_steps=None):
    base_steps = fam.base_steps if base_steps is None else base_steps
    then = f"{fam.label} the rest ('{fam.scheduler}' schedule, {fam.sampler})"
    if base_steps == 0 and fam.rule:  # by noise level: the row says where the rule lands on this schedule
        k = fam.rule.k
        takes = (
            f"{'step 1' if k == 1 else f'steps 1-{k}'} (by noise level, {fam.rule.why(fam.steps, PAPER_AMPLIFICATION)})"
        )
        label = f"Hybrid: base takes {takes}, cfg {base_cfg:g}; {then}"
    else:
        takes = "step 1" if base_steps == 1 else f"steps 1-{base_steps}"
        label = f"Hybrid: base takes {takes} (cfg {base_cfg:g}), {then}"
    y = c.row(label)
    _, rest = hybrid(c, y, base, d, latent, fam, base_cfg=base_cfg, base_steps=base_steps)
    return c.finish(method, y, rest[0], d["vae"])


def hybrid_node_row(c: Canvas, base: dict, d: dict, latent, fam: Family, method="hybrid node"):
    """The hybrid as one node: the pack's blueprint "Diversity Hybrid Sampler" (``subgraphs/``), on the base
    model's conditioning, the family's schedule and handover."""
    bp = hybrid_sampler()
    y = c.row(f"The same hybrid as one node: {bp.name} (a subgraph blueprint of the pack; double-click to open)")
    node = c.g.add(
        blueprint_id(bp.name),
        {
            "base_model": base["model"],
            "distilled_model": d["model"],
            "positive": base["pos"],
            "negative": base["neg"],
            "latent_image": latent,
            "seed": 0,
            "steps": fam.steps,
            "base_steps": fam.base_steps,
            "base_cfg": 1.0,
            "cfg": 1.0,
            "scheduler": fam.scheduler,
            "sampler_name": fam.sampler,
        },
        title=bp.name,
        pos=(c.X_SAMPLER, y),
    )
    return c.finish(method, y, node[0], d["vae"])


def skip_first_row(c: Canvas, d: dict, latent, fam: Family):
    y = c.row(f"Skip first step: {fam.label} alone from the second timestep, unit-variance noise")
    s = c.g.add(
        P.SKIP_FIRST_STEP,
        {
            "model": d["model"],
            "positive": d["pos"],
            "negative": d["neg"],
            "latent_image": latent,
            "seed": 0,
            "cfg": 1.0,
            "steps": 4,
            "scheduler": fam.scheduler,
            "sampler_name": fam.sampler,
        },
        title="seed",
        pos=(c.X_SAMPLER, y),
    )
    return c.finish("skip first", y, s[0], d["vae"])


def replace_final_row(c: Canvas, base: dict, d: dict, latent, fam: Family):
    y = c.row(f"Replace final steps: {fam.label} takes step 1, the base model steps 2-4")
    # the roles swapped: the distilled model sits in Base First Step, the base model in Distilled Continue; the
    # labels make the x̂0 frames (grid, curve, filmstrip) name the model that really took each step
    _, rest = hybrid(c, y, d, base, latent, fam, labels=(P.DISTILLED_LABEL, P.BASE_LABEL))
    return c.finish("replace final", y, rest[0], base["vae"])


def _wide(c: Canvas) -> dict:
    return {"right": c.X_EXTRA + c.X0_SIZE[0] + 20, "left": c.X_AUX}


def x0_rows(c: Canvas, base: dict, d: dict, latent, fam: Family, bcfg: Base):
    """Fig. 5 / F.1: the x̂0 of every step for base alone, distilled alone and the hybrid."""
    y = c.row(f"Base alone, x̂0 recorded: {bcfg.label}, {bcfg.steps} steps", **_wide(c))
    sc, rec = recorded_sampler(c, y, base, latent, bcfg.steps, bcfg.cfg, bcfg.sampler, bcfg.scheduler, "base")
    c.finish("base", y, sc[0], base["vae"])
    x0_preview(c, y, "base", base["vae"], sc[0], recording=rec[1])
    y = c.row(f"Distilled alone, x̂0 recorded: {fam.label}, 4 steps", **_wide(c))
    sc, rec = recorded_sampler(c, y, d, latent, 4, 1.0, fam.sampler, fam.scheduler, "distilled")
    c.finish("distilled", y, sc[0], d["vae"])
    x0_preview(c, y, "distilled", d["vae"], sc[0], recording=rec[1])
    y = c.row("Hybrid: the samplers' x0_trajectory output", **_wide(c))
    _, rest = hybrid(c, y, base, d, latent, fam)
    c.finish("hybrid", y, rest[0], d["vae"])
    x0_preview(c, y, "hybrid", d["vae"], rest[0], trajectory=rest[1])
