"""The paper's experiments as workflow graphs, and the model files they expect (stdlib only).

Each ``Experiment.build()`` returns a ``workflow_graph.Graph`` that uses only ComfyUI core nodes and the pack's
own. Titles follow ``runner/CONVENTIONS.md``. ``MODELS`` lists every file name a workflow expects, its ComfyUI
models folder, where to get it and its licence; ``readme_table()`` writes the README table from both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from workflow_graph import Graph

PACK_ID = "comfyui-diversity-distillation"
PACK_VERSION = "0.1.0"
PACK_NODE_PREFIX = "DDistill_"
HF = "https://huggingface.co/"


@dataclass(frozen=True)
class Model:
    folder: str
    url: str
    licence: str
    note: str = ""


MODELS = {
    "sd_xl_base_1.0.safetensors": Model(
        "checkpoints", HF + "stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "CreativeML Open RAIL++-M"),
    "dmd2_sdxl_4step_lora_fp16.safetensors": Model(
        "loras", HF + "tianweiy/DMD2/resolve/main/dmd2_sdxl_4step_lora_fp16.safetensors",
        "CC BY-NC-SA 4.0 (non-commercial)", "DMD2 4-step as a LoRA on SDXL base"),
    "sd_xl_turbo_1.0_fp16.safetensors": Model(
        "checkpoints", HF + "stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors",
        "Stability AI non-commercial research licence (sai-nc-community)"),
    "sdxl_lightning_4step.safetensors": Model(
        "checkpoints", HF + "ByteDance/SDXL-Lightning/resolve/main/sdxl_lightning_4step.safetensors",
        "CreativeML Open RAIL++-M", "the full 4-step checkpoint"),
    "lcm-lora-sdxl.safetensors": Model(
        "loras", HF + "latent-consistency/lcm-lora-sdxl/resolve/main/pytorch_lora_weights.safetensors",
        "CreativeML Open RAIL++-M", "published as pytorch_lora_weights.safetensors: save it under this name"),
    "v2-1_512-ema-pruned.safetensors": Model(
        "checkpoints", HF + "stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.safetensors",
        "CreativeML Open RAIL++-M", "SD 2.1 base (512 px, eps prediction)"),
    "sd_turbo.safetensors": Model(
        "checkpoints", HF + "stabilityai/sd-turbo/resolve/main/sd_turbo.safetensors",
        "Stability AI non-commercial research licence (sai-nc-community)"),
    "PixArt-XL-2-1024-MS.pth": Model(
        "diffusion_models", HF + "PixArt-alpha/PixArt-alpha/resolve/main/PixArt-XL-2-1024-MS.pth",
        "CreativeML Open RAIL++-M", "PixArt-alpha 1024 (original checkpoint)"),
    "PixArt-LCM-XL-2-1024-MS.safetensors": Model(
        "diffusion_models",
        HF + "PixArt-alpha/PixArt-LCM-XL-2-1024-MS/resolve/main/transformer/diffusion_pytorch_model.safetensors",
        "CreativeML Open RAIL++-M", "PixArt-delta (LCM): the diffusers transformer file, saved under this name"),
    "t5xxl_fp16.safetensors": Model(
        "text_encoders", HF + "comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        "Apache-2.0", "T5-XXL text encoder shared by both PixArt models"),
    "vae-ft-mse-840000-ema-pruned.safetensors": Model(
        "vae", HF + "stabilityai/sd-vae-ft-mse-original/resolve/main/vae-ft-mse-840000-ema-pruned.safetensors",
        "MIT", "the SD 1.x VAE that PixArt-alpha uses"),
    "sdxl_age_slider.safetensors": Model(
        "loras", "https://github.com/rohitgandikota/sliders",
        "MIT (Concept Sliders code); check the licence of the slider you use",
        "any Concept Slider / LoRA trained on SDXL base (e.g. the sliders repo's SDXL age slider, or one you "
        "train with it), saved under this name"),
    "dmd2_age_slider.safetensors": Model(
        "loras", "https://github.com/rohitgandikota/sliders",
        "your own (trained by you on SDXL-DMD2)",
        "a Concept Slider / LoRA trained on SDXL-DMD2 (Appendix B; none is published: train one with the "
        "sliders repo on the DMD2 UNet) saved under this name"),
}

# Every workflow starts with this note; the experiment adds its own text.
PROMPT = "image of a car"  # the prompt of Tables D.1 and E.1
BATCH = 8
NEG = ""


# ----------------------------------------------------------------------------------------------- building blocks
class Canvas:
    """Positions nodes: shared loaders on the left, one row per method on the right."""
    ROW_H = 420
    X_SAMPLER, X_CONTINUE, X_DECODE, X_SAVE, X_METER = 1000, 1360, 1720, 1960, 2300

    def __init__(self, name: str, note: str):
        self.g = Graph(name)
        self.g.note(note, pos=(0, -420), size=(900, 380))
        self.rows = 0
        self.col_y = {0: 0, 460: 0}  # next free y of the loader column and of the encoder column

    def left(self, class_type, inputs=None, title=None, x=0, h=160, **kw):
        node = self.g.add(class_type, inputs, title=title, pos=(x, self.col_y[x]), **kw)
        self.col_y[x] += h
        return node

    def row(self, method: str, label: str):
        y = self.rows * self.ROW_H
        self.rows += 1
        self.g.group(label, (self.X_SAMPLER - 20, y - 50, 1700, self.ROW_H - 30))
        return y

    def finish(self, method: str, y: int, latent, vae, prefix: str):
        """VAE Decode -> Save Image (+ Diversity Meter once the pack has it), titled ``method: NAME``."""
        g = self.g
        image = g.add("VAEDecode", {"samples": latent, "vae": vae}, pos=(self.X_DECODE, y))
        g.add("SaveImage", {"images": image[0], "filename_prefix": f"ddistill/{prefix}/{method.replace(' ', '_')}"},
              title=f"method: {method}", pos=(self.X_SAVE, y), size=(320, 340))
        return image


def ksampler(c: Canvas, y, model, pos, neg, latent, steps, cfg, sampler, scheduler):
    return c.g.add("KSampler", {"model": model, "positive": pos, "negative": neg, "latent_image": latent,
                                "seed": 0, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                                "scheduler": scheduler, "denoise": 1.0}, title="seed", pos=(c.X_SAMPLER, y))


def hybrid(c: Canvas, y, base, b_pos, b_neg, distilled, d_pos, d_neg, latent, scheduler, sampler, steps=4,
           base_cfg=1.0, base_steps=1, cfg=1.0):
    first = c.g.add("DDistill_BaseFirstStepSampler", {
        "base_model": base, "positive": b_pos, "negative": b_neg, "latent_image": latent, "seed": 0,
        "base_cfg": base_cfg, "base_steps": base_steps, "steps": steps, "scheduler": scheduler,
        "sampler_name": sampler}, title="seed", pos=(c.X_SAMPLER, y))
    rest = c.g.add("DDistill_DistilledContinueSampler", {
        "distilled_model": distilled, "positive": d_pos, "negative": d_neg, "latent": first[0], "cfg": cfg},
        pos=(c.X_CONTINUE, y))
    return first, rest


def encode(c: Canvas, clip, text, title, x=460):
    return c.left("CLIPTextEncode", {"text": text, "clip": clip}, title=title, x=x, h=150)


def checkpoint(c: Canvas, name):
    return c.left("CheckpointLoaderSimple", {"ckpt_name": name}, h=150)


def latent(c: Canvas, size, batch=BATCH):
    return c.left("EmptyLatentImage", {"width": size, "height": size, "batch_size": batch}, title="batch", x=460)


@dataclass(frozen=True)
class Family:
    """A distilled family: how to get its model/CLIP/VAE, its schedule and handover rule, and its resolution."""
    label: str
    files: tuple
    scheduler: str       # the pack's schedule for the hybrid ("lcm" or "trailing")
    sampler: str         # update rule of every step
    ksampler_scheduler: str  # closest stock scheduler for the distilled model alone
    size: int = 1024


DMD2 = Family("SDXL-DMD2", ("dmd2_sdxl_4step_lora_fp16.safetensors",), "lcm", "lcm", "sgm_uniform")
TURBO = Family("SDXL-Turbo", ("sd_xl_turbo_1.0_fp16.safetensors",), "trailing", "euler_ancestral", "sgm_uniform", 512)
LIGHTNING = Family("SDXL-Lightning 4-step", ("sdxl_lightning_4step.safetensors",), "trailing", "euler", "sgm_uniform")
LCM = Family("LCM-LoRA SDXL", ("lcm-lora-sdxl.safetensors",), "lcm", "lcm", "sgm_uniform")


def sdxl_pair(c: Canvas, fam: Family, prompt=PROMPT):
    """Load SDXL base and the family's distilled model; encode the prompt for each. Returns a dict of outputs."""
    base = checkpoint(c, "sd_xl_base_1.0.safetensors")
    b_pos = encode(c, base[1], prompt, "prompt")
    b_neg = encode(c, base[1], NEG, "negative")
    file = fam.files[0]
    if MODELS[file].folder == "loras":
        d_model = c.left("LoraLoaderModelOnly", {"model": base[0], "lora_name": file, "strength_model": 1.0}, h=130)
        d = {"model": d_model[0], "pos": b_pos[0], "neg": b_neg[0], "vae": base[2]}
    else:
        ck = checkpoint(c, file)
        d_pos = encode(c, ck[1], prompt, "prompt")
        d_neg = encode(c, ck[1], NEG, "negative")
        d = {"model": ck[0], "pos": d_pos[0], "neg": d_neg[0], "vae": ck[2]}
    lat = latent(c, fam.size)
    return {"model": base[0], "pos": b_pos[0], "neg": b_neg[0], "vae": base[2]}, d, lat[0]


def three_way(c: Canvas, fam: Family, base, d, lat, prefix, base_cfg=5.0, base_steps=50, with_base=True):
    """The Table 2/3 comparison rows: base alone, distilled alone, hybrid (base first step)."""
    if with_base:
        y = c.row("base", f"Base alone: SDXL base, {base_steps} steps euler, cfg {base_cfg}")
        s = ksampler(c, y, base["model"], base["pos"], base["neg"], lat, base_steps, base_cfg, "euler", "normal")
        c.finish("base", y, s[0], base["vae"], prefix)
    y = c.row("distilled", f"Distilled alone: {fam.label}, 4 steps {fam.sampler}, cfg 1")
    s = ksampler(c, y, d["model"], d["pos"], d["neg"], lat, 4, 1.0, fam.sampler, fam.ksampler_scheduler)
    c.finish("distilled", y, s[0], d["vae"], prefix)
    y = c.row("hybrid", f"Hybrid: base takes step 1, {fam.label} steps 2-4 ('{fam.scheduler}' schedule)")
    _, rest = hybrid(c, y, base["model"], base["pos"], base["neg"], d["model"], d["pos"], d["neg"], lat,
                     fam.scheduler, fam.sampler)
    c.finish("hybrid", y, rest[0], d["vae"], prefix)


# --------------------------------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper: str           # what in the paper it reproduces
    compare: str         # the paper's number(s) to compare with
    files: tuple         # model files it expects (keys of MODELS)
    make: Callable[["Experiment"], Graph]
    cpu: bool = False    # executes end to end on CPU (demo models)

    def build(self) -> Graph:
        return self.make(self)

    def note(self, body: str) -> str:
        files = "\n".join(f"- `{f}` in `models/{MODELS[f].folder}/` ({MODELS[f].licence})" for f in self.files)
        return (f"## {self.title}\n{self.paper}\n\n{body}\n\n**Compare with:** {self.compare}\n\n"
                f"**Model files:**\n{files}\n\nTitles `prompt`, `seed`, `batch`, `method: ...` are read by the "
                f"pack's experiment runner (`python -m runner`); change values, keep titles.")


def _family_workflow(fam: Family, body: str):
    def make(exp: Experiment) -> Graph:
        c = Canvas(exp.name, exp.note(body))
        base, d, lat = sdxl_pair(c, fam)
        three_way(c, fam, base, d, lat, exp.name)
        return c.g
    return make


def _skip_first(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "Skip First Step: the distilled model alone on its schedule without the first timestep, from unit-variance "
        "noise (no base model in memory). Hybrid: the base model takes the first timestep."))
    base, d, lat = sdxl_pair(c, DMD2)
    three_way(c, DMD2, base, d, lat, exp.name, with_base=False)
    y = c.row("skip first", "Skip first step: DMD2 alone on t = 759, 499, 259")
    s = c.g.add("DDistill_SkipFirstStep", {"model": d["model"], "positive": d["pos"], "negative": d["neg"],
                                           "latent_image": lat, "seed": 0, "cfg": 1.0, "steps": 4,
                                           "scheduler": "lcm", "sampler_name": "lcm"}, title="seed",
                pos=(c.X_SAMPLER, y))
    c.finish("skip first", y, s[0], d["vae"], exp.name)
    return c.g


def _replace_final(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "Causal check: the same two sampler nodes with the roles swapped. In 'replace final' DMD2 takes the FIRST "
        "step (it sits in the Base First Step Sampler's model slot) and SDXL base takes steps 2-4 (in the "
        "Distilled Continue Sampler's slot). Diversity should stay at the distilled level: the first step decides "
        "the layout."))
    base, d, lat = sdxl_pair(c, DMD2)
    three_way(c, DMD2, base, d, lat, exp.name)
    y = c.row("replace final", "Replace final steps: DMD2 takes step 1, SDXL base steps 2-4")
    _, rest = hybrid(c, y, d["model"], d["pos"], d["neg"], base["model"], base["pos"], base["neg"], lat, "lcm", "lcm")
    c.finish("replace final", y, rest[0], base["vae"], exp.name)
    return c.g


def _sd21(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "SD 2.1 base (512 px, eps) with SD-Turbo, each with its own text encoder; Turbo's schedule: 'trailing' "
        "with euler_ancestral."))
    fam = Family("SD-Turbo", ("sd_turbo.safetensors",), "trailing", "euler_ancestral", "sgm_uniform", 512)
    b = checkpoint(c, "v2-1_512-ema-pruned.safetensors")
    b_pos, b_neg = encode(c, b[1], PROMPT, "prompt"), encode(c, b[1], NEG, "negative")
    t = checkpoint(c, "sd_turbo.safetensors")
    t_pos, t_neg = encode(c, t[1], PROMPT, "prompt"), encode(c, t[1], NEG, "negative")
    lat = latent(c, 512)
    three_way(c, fam, {"model": b[0], "pos": b_pos[0], "neg": b_neg[0], "vae": b[2]},
              {"model": t[0], "pos": t_pos[0], "neg": t_neg[0], "vae": t[2]}, lat[0], exp.name, base_cfg=7.0)
    return c.g


def _pixart(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "PixArt-alpha (DiT) with PixArt-delta (its LCM distillation). Both diffusion models load with Load "
        "Diffusion Model, share the T5-XXL encoder (type 'pixart') and the SD 1.x VAE. PixArt-delta's schedule: "
        "'lcm' with the lcm sampler."))
    fam = Family("PixArt-delta", ("PixArt-LCM-XL-2-1024-MS.safetensors",), "lcm", "lcm", "sgm_uniform")
    b = c.left("UNETLoader", {"unet_name": "PixArt-XL-2-1024-MS.pth", "weight_dtype": "default"}, h=130)
    dm = c.left("UNETLoader", {"unet_name": "PixArt-LCM-XL-2-1024-MS.safetensors", "weight_dtype": "default"}, h=130)
    clip = c.left("CLIPLoader", {"clip_name": "t5xxl_fp16.safetensors", "type": "pixart"}, h=130)
    vae = c.left("VAELoader", {"vae_name": "vae-ft-mse-840000-ema-pruned.safetensors"}, h=110)
    pos, neg = encode(c, clip[0], PROMPT, "prompt"), encode(c, clip[0], NEG, "negative")
    lat = latent(c, 1024)
    three_way(c, fam, {"model": b[0], "pos": pos[0], "neg": neg[0], "vae": vae[0]},
              {"model": dm[0], "pos": pos[0], "neg": neg[0], "vae": vae[0]}, lat[0], exp.name, base_cfg=4.5)
    return c.g


def _control(slider: str, trained_on: str):
    def make(exp: Experiment) -> Graph:
        c = Canvas(exp.name, exp.note(
            f"A Concept Slider / LoRA trained on {trained_on} applied, unchanged, to every model (LoRA Loader "
            "Model Only, same strength). Each method runs with and without the slider from the same seeds, so "
            "each pair differs only by the slider; the hybrid gets it on both models."))
        base, d, lat = sdxl_pair(c, DMD2, prompt="a photo of a person")
        lora = {"lora_name": slider, "strength_model": 2.0}
        b_s = c.left("LoraLoaderModelOnly", {"model": base["model"], **lora}, title="slider on base", h=130)
        d_s = c.left("LoraLoaderModelOnly", {"model": d["model"], **lora}, title="slider on DMD2", h=130)
        rows = [("base", base, None), ("base + slider", {**base, "model": b_s[0]}, None),
                ("distilled", d, None), ("distilled + slider", {**d, "model": d_s[0]}, None),
                ("hybrid", base, d), ("hybrid + slider", {**base, "model": b_s[0]}, {**d, "model": d_s[0]})]
        for method, m, m2 in rows:
            y = c.row(method, method)
            if m2 is None:
                steps, cfg, smp, sch = (50, 5.0, "euler", "normal") if m is base or "base" in method else (
                    4, 1.0, "lcm", "sgm_uniform")
                s = ksampler(c, y, m["model"], m["pos"], m["neg"], lat, steps, cfg, smp, sch)
            else:
                _, s = hybrid(c, y, m["model"], m["pos"], m["neg"], m2["model"], m2["pos"], m2["neg"], lat, "lcm",
                              "lcm")
            c.finish(method, y, s[0], base["vae"], exp.name)
        return c.g
    return make


def _cfg_sweep(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "Guidance of the base model's first step (base_cfg). 1.0 = conditional only (the paper's setting); "
        "higher values follow the prompt more, cost a second UNet pass and lower diversity."))
    base, d, lat = sdxl_pair(c, DMD2)
    three_way(c, DMD2, base, d, lat, exp.name, with_base=False)
    for cfg in (2.0, 4.0, 7.0):
        method = f"hybrid cfg {cfg:g}"
        y = c.row(method, f"Hybrid, base_cfg {cfg:g}")
        _, rest = hybrid(c, y, base["model"], base["pos"], base["neg"], d["model"], d["pos"], d["neg"], lat, "lcm",
                         "lcm", base_cfg=cfg)
        c.finish(method, y, rest[0], d["vae"], exp.name)
    return c.g


def _k_sweep(exp: Experiment) -> Graph:
    c = Canvas(exp.name, exp.note(
        "k = number of steps (of 4) the base model takes before DMD2 continues. k = 0 is the distilled model "
        "alone, k = 1 the paper's hybrid; more base steps cost time and add little diversity."))
    base, d, lat = sdxl_pair(c, DMD2)
    three_way(c, DMD2, base, d, lat, exp.name, with_base=False)
    for k in (2, 3):
        method = f"hybrid k{k}"
        y = c.row(method, f"Hybrid, base takes {k} of 4 steps")
        _, rest = hybrid(c, y, base["model"], base["pos"], base["neg"], d["model"], d["pos"], d["neg"], lat, "lcm",
                         "lcm", base_steps=k)
        c.finish(method, y, rest[0], d["vae"], exp.name)
    return c.g


T3 = "Table 3: mean pairwise DreamSim distance base / distilled / hybrid, average .337 / .264 / .350"
EXPERIMENTS = [
    Experiment("01_mode_collapse_sdxl_dmd2", "Mode collapse and its fix: SDXL base vs DMD2 vs hybrid",
               "Tables 2-3, Fig. G", T3 + "; Table 2 FID 12.74 / 15.52 / 10.79",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors"),
               _family_workflow(DMD2, "Same prompt, same seeds (one batch) for each method. DMD2's schedule: 'lcm' "
                                      "(t = 999, 759, 499, 259) with the lcm sampler.")),
    Experiment("02a_mode_collapse_sdxl_turbo", "Mode collapse and its fix: SDXL-Turbo", "Tables 2-3 (Turbo column)",
               "diversity: hybrid close to base, Turbo lower (Table 3 pattern)",
               ("sd_xl_base_1.0.safetensors", "sd_xl_turbo_1.0_fp16.safetensors"),
               _family_workflow(TURBO, "SDXL-Turbo (512 px): 'trailing' schedule (t = 999, 749, 499, 249) with "
                                       "euler_ancestral; each model encodes the prompt with its own CLIP.")),
    Experiment("02b_mode_collapse_sdxl_lightning", "Mode collapse and its fix: SDXL-Lightning 4-step",
               "Tables 2-3 (Lightning column)", "diversity: hybrid close to base, Lightning lower",
               ("sd_xl_base_1.0.safetensors", "sdxl_lightning_4step.safetensors"),
               _family_workflow(LIGHTNING, "SDXL-Lightning: 'trailing' schedule with deterministic euler.")),
    Experiment("02c_mode_collapse_lcm_lora_sdxl", "Mode collapse and its fix: LCM-LoRA SDXL",
               "Tables 2-3 (LCM column)", "diversity: hybrid close to base, LCM lower",
               ("sd_xl_base_1.0.safetensors", "lcm-lora-sdxl.safetensors"),
               _family_workflow(LCM, "LCM-LoRA on SDXL base: 'lcm' schedule with the lcm sampler.")),
    Experiment("03_skip_first_step_vs_hybrid", "Skip the first step vs the hybrid", "Table 4, Fig. C.1",
               "Table 4: hybrid FID 10.79 / CLIP 32.12 / 0.64 s; skip first FID 10.12 / CLIP 31.71 / 0.53 s",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors"), _skip_first),
    Experiment("04_causal_replace_final_steps", "Causal check: replace the final steps instead of the first",
               "Table E.1, Fig. E.1",
               "Table E.1 (DreamSim, 'image of a car'): base .357, DMD2 .264, replace first .350, replace final .251",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors"), _replace_final),
    Experiment("05a_generalization_sd21_sd_turbo", "Generalization: SD 2.1 + SD-Turbo", "Table D.1, Fig. D.1",
               "Table D.1 (DreamSim, 'image of a car'): SD 2.1 .298, SD-Turbo .171, hybrid .294",
               ("v2-1_512-ema-pruned.safetensors", "sd_turbo.safetensors"), _sd21),
    Experiment("05b_generalization_pixart", "Generalization: PixArt-alpha + PixArt-delta", "Table D.1, Fig. D.1",
               "Table D.1 (DreamSim, 'image of a car'): PixArt-alpha .342, PixArt-delta .198, hybrid .339",
               ("PixArt-XL-2-1024-MS.pth", "PixArt-LCM-XL-2-1024-MS.safetensors", "t5xxl_fp16.safetensors",
                "vae-ft-mse-840000-ema-pruned.safetensors"), _pixart),
    Experiment("07a_control_transfer_base_to_distilled", "Control transfer: a base-model slider on DMD2 and the hybrid",
               "Table 1, Fig. 3", "Table 1 (% CLIP change, age slider): base 20.4, DMD2 17.8",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors",
                "sdxl_age_slider.safetensors"), _control("sdxl_age_slider.safetensors", "SDXL base")),
    Experiment("07b_control_transfer_distilled_to_base", "Reverse control transfer: a DMD2 slider on the base model",
               "Appendix B, Fig. B.1", "Fig. B.1 (qualitative): the slider's edit appears on the base model",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors", "dmd2_age_slider.safetensors"),
               _control("dmd2_age_slider.safetensors", "SDXL-DMD2")),
    Experiment("08a_ablation_base_guidance", "Ablation: guidance of the base step", "Fig. 7 (left)",
               "Fig. 7: lower base guidance gives more diversity",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors"), _cfg_sweep),
    Experiment("08b_ablation_base_steps", "Ablation: number of base steps k", "Fig. 7 (right)",
               "Fig. 7: k = 1 is the sweet spot",
               ("sd_xl_base_1.0.safetensors", "dmd2_sdxl_4step_lora_fp16.safetensors"), _k_sweep),
]


def readme_table() -> str:
    rows = ["| experiment (paper) | workflow | model files (folder) | compare with |", "|---|---|---|---|"]
    for e in EXPERIMENTS:
        files = "<br>".join(f"`{f}` ({MODELS[f].folder})" for f in e.files)
        rows.append(f"| {e.title} ({e.paper}) | `workflows/{e.name}.json` | {files} | {e.compare} |")
    rows += ["", "| file | folder | where to get it | licence |", "|---|---|---|---|"]
    for f, m in MODELS.items():
        rows.append(f"| `{f}` | `models/{m.folder}/` | {m.url}{' — ' + m.note if m.note else ''} | {m.licence} |")
    return "\n".join(rows)
