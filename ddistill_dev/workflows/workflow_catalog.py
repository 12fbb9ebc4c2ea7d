"""The paper's experiments as workflow graphs, and the model files they expect (stdlib and the pure core only).

Each ``Experiment.build()`` returns a ``workflow_graph.Graph`` that uses only ComfyUI core nodes and the pack's
own. Titles follow ``runner/CONVENTIONS.md``. ``MODELS`` lists every file name a workflow expects, its ComfyUI
models folder, where to get it and its licence; ``readme_table()`` writes the README table from both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ddistill import protocol
from ddistill.noise_level import PAPER_AMPLIFICATION

from . import workflow_blocks as b
from . import workflow_families as wf
from .workflow_graph import Graph

PACK_ID = "comfyui-diversity-distillation"
PACK_VERSION = "0.1.0"
PACK_NODE_PREFIX = protocol.NODE_PREFIX
HF = "https://huggingface.co/"


@dataclass(frozen=True)
class Model:
    """A model file: its ComfyUI models folder, a direct download link (empty where none fits the frontend's rules:
    its missing-models dialog downloads only ``.safetensors`` / ``.sft`` files from huggingface.co or civitai.com;
    ``note`` then says how to get the file), its licence and a note."""

    folder: str
    url: str
    licence: str
    note: str = ""


MODELS = {
    "sd_xl_base_1.0.safetensors": Model(
        "checkpoints",
        HF + "stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "CreativeML Open RAIL++-M",
    ),
    "dmd2_sdxl_4step_lora_fp16.safetensors": Model(
        "loras",
        HF + "tianweiy/DMD2/resolve/main/dmd2_sdxl_4step_lora_fp16.safetensors",
        "CC BY-NC-SA 4.0 (non-commercial)",
        "DMD2 4-step as a LoRA on SDXL base",
    ),
    "sd_xl_turbo_1.0_fp16.safetensors": Model(
        "checkpoints",
        HF + "stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors",
        "Stability AI licence (non-commercial research / community: see the model card)",
    ),
    "sdxl_lightning_4step.safetensors": Model(
        "checkpoints",
        HF + "ByteDance/SDXL-Lightning/resolve/main/sdxl_lightning_4step.safetensors",
        "CreativeML Open RAIL++-M",
        "the full 4-step checkpoint",
    ),
    "lcm-lora-sdxl.safetensors": Model(
        "loras",
        HF + "latent-consistency/lcm-lora-sdxl/resolve/main/pytorch_lora_weights.safetensors",
        "CreativeML Open RAIL++-M",
        "published as pytorch_lora_weights.safetensors: save it under this name",
    ),
    "v2-1_512-ema-pruned.safetensors": Model(
        "checkpoints",
        HF + "stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.safetensors",
        "CreativeML Open RAIL++-M",
        "SD 2.1 base (512 px, eps prediction)",
    ),
    "sd_turbo.safetensors": Model(
        "checkpoints",
        HF + "stabilityai/sd-turbo/resolve/main/sd_turbo.safetensors",
        "Stability AI licence (non-commercial research / community: see the model card)",
    ),
    "PixArt-XL-2-1024-MS.safetensors": Model(
        "diffusion_models",
        HF + "PixArt-alpha/PixArt-XL-2-1024-MS/resolve/main/transformer/diffusion_pytorch_model.safetensors",
        "CreativeML Open RAIL++-M",
        "PixArt-alpha 1024: the diffusers transformer file, saved under this name (Load Diffusion Model reads the "
        "diffusers layout, as for PixArt-delta)",
    ),
    "PixArt-LCM-XL-2-1024-MS.safetensors": Model(
        "diffusion_models",
        HF + "PixArt-alpha/PixArt-LCM-XL-2-1024-MS/resolve/main/transformer/diffusion_pytorch_model.safetensors",
        "CreativeML Open RAIL++-M",
        "PixArt-delta (LCM): the diffusers transformer file, saved under this name",
    ),
    "t5xxl_fp16.safetensors": Model(
        "text_encoders",
        HF + "comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        "Apache-2.0",
        "T5-XXL text encoder: both PixArt models, SD3.5 (TripleCLIPLoader), FLUX.1 (DualCLIPLoader)",
    ),
    "vae-ft-mse-840000-ema-pruned.safetensors": Model(
        "vae",
        HF + "stabilityai/sd-vae-ft-mse-original/resolve/main/vae-ft-mse-840000-ema-pruned.safetensors",
        "MIT",
        "the SD 1.x VAE that PixArt-alpha uses",
    ),
    "sdxl_age_slider.safetensors": Model(
        "loras",
        "",  # no file the frontend may download: github.com and the sliders site are not among its allowed hosts
        "MIT (Concept Sliders code); check the licence of the slider you use",
        "no download link: any Concept Slider / LoRA trained on SDXL base, e.g. the SDXL age slider of the Concept "
        "Sliders project (sliders.baulab.info, code at github.com/rohitgandikota/sliders) or one you train with it, "
        "as a .safetensors LoRA saved under this name",
    ),
    "dmd2_age_slider.safetensors": Model(
        "loras",
        "",  # none is published
        "your own (trained by you on SDXL-DMD2)",
        "no download link: none is published; train a Concept Slider on the SDXL-DMD2 UNet (Appendix B) with "
        "github.com/rohitgandikota/sliders and save it as a .safetensors LoRA under this name",
    ),
}


# The 2025-26 flow and video families (README "Settings per family"): Comfy-Org's repackaged files where they exist.
COMFY_ORG = HF + "Comfy-Org/"
ZIT, QWEN = (
    COMFY_ORG + "z_image_turbo/resolve/main/split_files/",
    COMFY_ORG + "Qwen-Image_ComfyUI/resolve/main/split_files/",
)
WAN22 = COMFY_ORG + "Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/"
KREA2 = COMFY_ORG + "Krea-2/resolve/main/"  # no split_files/ folder in this repository
KREA2_LICENCE = "Krea 2 Community License (weights)"
LIGHTX2V = HF + "lightx2v/Qwen-Image-Lightning/resolve/main/"
GATED = "gated: accept the licence on the model's Hugging Face page first"
MODELS.update(
    {
        "z_image_bf16.safetensors": Model(
            "diffusion_models",
            COMFY_ORG + "z_image/resolve/main/split_files/diffusion_models/z_image_bf16.safetensors",
            "Apache-2.0",
            "Z-Image, the base model",
        ),
        "z_image_turbo_bf16.safetensors": Model(
            "diffusion_models", ZIT + "diffusion_models/z_image_turbo_bf16.safetensors", "Apache-2.0"
        ),
        "qwen_3_4b.safetensors": Model(
            "text_encoders", ZIT + "text_encoders/qwen_3_4b.safetensors", "Apache-2.0", "Z-Image's text encoder"
        ),
        "ae.safetensors": Model(
            "vae",
            ZIT + "vae/ae.safetensors",
            "Apache-2.0",
            "the FLUX.1 autoencoder (as black-forest-labs/FLUX.1-schnell's ae.safetensors): Z-Image and FLUX.1 use it",
        ),
        "qwen_image_fp8_e4m3fn.safetensors": Model(
            "diffusion_models", QWEN + "diffusion_models/qwen_image_fp8_e4m3fn.safetensors", "Apache-2.0"
        ),
        "Qwen-Image-Lightning-8steps-V1.1.safetensors": Model(
            "loras",
            LIGHTX2V + "Qwen-Image-Lightning-8steps-V1.1.safetensors",
            "Apache-2.0",
            "8-step LoRA on Qwen-Image",
        ),
        "Qwen-Image-Lightning-4steps-V1.0.safetensors": Model(
            "loras",
            LIGHTX2V + "Qwen-Image-Lightning-4steps-V1.0.safetensors",
            "Apache-2.0",
            "the 4-step alternative to the 8-step LoRA (no workflow loads it; the 10b note says how to switch)",
        ),
        "qwen_2.5_vl_7b_fp8_scaled.safetensors": Model(
            "text_encoders", QWEN + "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors", "Apache-2.0"
        ),
        "qwen_image_vae.safetensors": Model(
            "vae", QWEN + "vae/qwen_image_vae.safetensors", "Apache-2.0", "Qwen-Image's VAE; Krea 2 uses it too"
        ),
        "sd3.5_large.safetensors": Model(
            "checkpoints",
            HF + "stabilityai/stable-diffusion-3.5-large/resolve/main/sd3.5_large.safetensors",
            "Stability AI Community License",
            GATED,
        ),
        "sd3.5_large_turbo.safetensors": Model(
            "checkpoints",
            HF + "stabilityai/stable-diffusion-3.5-large-turbo/resolve/main/sd3.5_large_turbo.safetensors",
            "Stability AI Community License",
            GATED,
        ),
        "clip_l.safetensors": Model(
            "text_encoders",
            HF + "comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
            "MIT (OpenAI CLIP ViT-L/14)",
            "CLIP-L text encoder: SD3.5 and FLUX.1",
        ),
        "clip_g.safetensors": Model(
            "text_encoders",
            COMFY_ORG + "stable-diffusion-3.5-fp8/resolve/main/text_encoders/clip_g.safetensors",
            "MIT (OpenCLIP ViT-bigG/14)",
            "CLIP-G text encoder of SD3.5",
        ),
        "flux1-dev.safetensors": Model(
            "diffusion_models",
            HF + "black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors",
            "FLUX.1 [dev] Non-Commercial License",
            GATED,
        ),
        "flux1-schnell.safetensors": Model(
            "diffusion_models",
            HF + "black-forest-labs/FLUX.1-schnell/resolve/main/flux1-schnell.safetensors",
            "Apache-2.0",
        ),
        **{
            f: Model("diffusion_models", WAN22 + "diffusion_models/" + f, "Apache-2.0")
            for f in (wf.WAN_HIGH, wf.WAN_LOW)
        },
        **{f: Model("loras", WAN22 + "loras/" + f, "Apache-2.0", "Wan2.2-Lightning (lightx2v)") for f in wf.WAN_LORAS},
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors": Model(
            "text_encoders",
            COMFY_ORG + "Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
            "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "Apache-2.0",
        ),
        "wan_2.1_vae.safetensors": Model("vae", WAN22 + "vae/wan_2.1_vae.safetensors", "Apache-2.0"),
        **{
            f: Model("diffusion_models", KREA2 + "diffusion_models/" + f, KREA2_LICENCE, note)
            for f, note in (
                (wf.KREA2_RAW_FILE, "Krea 2 RAW, the undistilled base model"),
                (wf.KREA2_TURBO_FILE, "Krea 2 Turbo, the 8-step distilled model"),
            )
        },
        wf.KREA2_TURBO_LORA: Model(
            "loras", KREA2 + "loras/" + wf.KREA2_TURBO_LORA, KREA2_LICENCE, "Krea 2 Turbo as a LoRA on Krea 2 RAW"
        ),
        wf.KREA2_TE: Model(
            "text_encoders", KREA2 + "text_encoders/" + wf.KREA2_TE, "Apache-2.0 (Qwen3-VL-4B)", "Krea 2's encoder"
        ),
    }
)


# --------------------------------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    paper: str  # what in the paper it reproduces
    compare: str  # the paper's number(s) to compare with
    files: tuple  # model files it expects (keys of MODELS); empty for the bundled demo models
    make: Callable[["Experiment"], Graph]
    body: str = ""
    links: bool = False  # the note gives each file's download link too
    alternatives: tuple = ()  # catalogued files the note offers instead of a loaded one (keys of MODELS)

    def build(self) -> Graph:
        return self.make(self)

    def note(self) -> str:
        files = "\n".join(
            f"- `{f}` in `models/{MODELS[f].folder}/` ({MODELS[f].licence})"
            + ("" if MODELS[f].url else f": {MODELS[f].note}")
            + (f": {MODELS[f].url}" + (f" ({MODELS[f].note})" if MODELS[f].note else "") if self.links else "")
            for f in self.files + self.alternatives
        )
        files = files or "- none: the pack's bundled demo digit models (runs on CPU in seconds)"
        return (
            f"## {self.title}\n*{self.paper}*\n\n{self.body}\n\n**Compare with:** {self.compare}\n\n"
            f"**Model files:**\n{files}\n\nThe Diversity Meter uses its offline EfficientNet-Lite0 backend; "
            "set its backend to `dreamsim_ensemble` (weights in `models/dreamsim`) for the paper's DreamSim "
            "numbers. Titles `prompt`, `negative`, `seed`, `batch`, `method: ...` are read by the pack's experiment "
            "runner (`python -m runner`): change values, keep titles."
        )


def _pair(c, source, fam, bcfg=None, prompt=b.PROMPT):
    if source in wf.PAIRS:
        return wf.PAIRS[source](c, fam, bcfg)
    if source == "demo":
        return b.demo_pair(c)
    if source == "pixart":
        return b.pixart_pair(c, prompt)
    return b.checkpoint_pair(c, source, fam, prompt)


def _hybrid_sweep(c, base, d, lat, fam, **sweep):
    """One hybrid row per value of base_cfg or base_steps; the first value is the paper's, titled plain 'hybrid'."""
    ((arg, values),) = sweep.items()
    tag = {"base_cfg": "hybrid cfg {:g}", "base_steps": "hybrid k{}"}[arg]
    for i, v in enumerate(values):
        b.hybrid_row(c, base, d, lat, fam, method="hybrid" if i == 0 else tag.format(v), **{arg: v})


ROWS = {  # a method row of a canvas: (canvas, base, distilled, latent, family, base settings)
    "base": lambda c, base, d, lat, fam, bcfg: b.base_row(c, base, lat, bcfg),
    "distilled": lambda c, base, d, lat, fam, bcfg: b.distilled_row(c, d, lat, fam),
    "hybrid": lambda c, base, d, lat, fam, bcfg: b.hybrid_row(c, base, d, lat, fam),
    "skip first": lambda c, base, d, lat, fam, bcfg: b.skip_first_row(c, d, lat, fam),
    "hybrid node": lambda c, base, d, lat, fam, bcfg: b.hybrid_node_row(c, base, d, lat, fam),
    "replace final": lambda c, base, d, lat, fam, bcfg: b.replace_final_row(c, base, d, lat, fam),
    "x0": lambda c, base, d, lat, fam, bcfg: b.x0_rows(c, base, d, lat, fam, bcfg),
    "cfg sweep": lambda c, base, d, lat, fam, bcfg: _hybrid_sweep(c, base, d, lat, fam, base_cfg=(1.0, 2.0, 4.0, 7.0)),
    "k sweep": lambda c, base, d, lat, fam, bcfg: _hybrid_sweep(c, base, d, lat, fam, base_steps=(1, 2, 3)),
}


def rows(*names):
    """A workflow factory: the model pair of ``source``, then the named method rows in order."""

    def factory(source, fam: b.Family, bcfg: b.Base):
        def make(exp):
            c = b.Canvas(exp.name, exp.note())
            c.fit_filmstrip(fam.steps - 1)  # Distilled Continue's live x̂0 frames
            base, d, lat = _pair(c, source, fam, bcfg)
            for name in names:
                ROWS[name](c, base, d, lat, fam, bcfg)
            return c.g

        return make

    return factory


three_way = rows("base", "distilled", "hybrid")  # Tables 2-3 / D.1
skip_first = rows("distilled", "hybrid", "skip first")  # Table 4
replace_final = rows("base", "distilled", "hybrid", "replace final")  # Table E.1
x0_viz = rows("x0")  # Fig. 5, F.1, F.2
cfg_sweep = rows("distilled", "cfg sweep")  # Fig. 7, base guidance
k_sweep = rows("base", "distilled", "k sweep")  # Fig. 7, number of base steps
one_node = rows("distilled", "hybrid", "hybrid node")  # the hybrid as the pack's blueprint


def control(slider: str):
    """Table 1 / Fig. B.1: one slider LoRA on base, distilled and hybrid, each with and without it."""

    def make(exp):
        c = b.Canvas(exp.name, exp.note())
        base, d, lat = _pair(c, "sd_xl_base_1.0.safetensors", b.DMD2, prompt="a photo of a person")
        lora = {"lora_name": slider, "strength_model": 2.0}
        b_s = c.left("LoraLoaderModelOnly", {"model": base["model"], **lora}, title="slider on base", h=160)
        d_s = c.left("LoraLoaderModelOnly", {"model": d["model"], **lora}, title="slider on DMD2", h=160)
        base_s, d2_s = {**base, "model": b_s[0]}, {**d, "model": d_s[0]}
        for tag, bm, dm in (("", base, d), (" + slider", base_s, d2_s)):
            y = c.row(f"Base alone{tag}")
            s = b.ksampler(c, y, bm, lat, 50, 5.0, "euler", "normal")
            c.finish("base" + tag, y, s[0], base["vae"])
            y = c.row(f"DMD2 alone{tag}")
            s = b.distilled_sampler(c, y, dm, lat, b.DMD2)
            c.finish("distilled" + tag, y, s[0], base["vae"])
            y = c.row(f"Hybrid{tag}")
            _, rest = b.hybrid(c, y, bm, dm, lat, b.DMD2)
            c.finish("hybrid" + tag, y, rest[0], base["vae"])
        return c.g

    return make


SDXL = "sd_xl_base_1.0.safetensors"
SD21 = "v2-1_512-ema-pruned.safetensors"
DMD2_FILES = (SDXL, b.DMD2.file)
T3 = "Table 3: mean pairwise DreamSim distance base / distilled / hybrid, average .337 / .264 / .350"
E1 = "Table E.1 (DreamSim, 'image of a car'): base .357, DMD2 .264, replace first .350, replace final .251"
SAME = (
    "Same prompt, same seeds (one batch) for every method. The distilled model alone runs in a stock "
    "SamplerCustom on the pack's Distilled Schedule: the same schedule and update rule as the hybrid."
)
DEMO_NOTE = (
    "**Runs offline: no model file to download, no GPU** (CPU, seconds). Offline twin on the pack's bundled demo "
    "digit models (unconditional 32x32 digits; the student is a 4-step DMD distillation of the base). "
)


FLOW_COMPARE = "diversity: hybrid close to {0}, {1} lower (the paper's pattern); no published numbers for this pair"
FLOW_NOTE = (
    "Distilled alone: stock SamplerCustom + KSamplerSelect + BasicScheduler on the distilled model, the same "
    "schedule (simple) and rule (euler) as the hybrid. Settings and sources: README, 'Settings per family'."
)


KREA2_NEEDS = (
    f"**Needs ComfyUI {wf.KREA2_COMFYUI} or later** (Krea 2's model class and the CLIPLoader type `krea2`; an older "
    "ComfyUI refuses the workflow when it is queued). "
)
KREA2_NOTE = (
    "Both sides are ComfyUI Krea2 models with Krea's fixed time shift mu 1.15 (ModelSamplingFlux, no shift node), so "
    "the schedules agree: 1, .957, .905, .840, .760, .655, .513, .311, 0 (Krea's reference sampler gives RAW a "
    "resolution-dependent mu instead, 0.91 at 1024 px). One Qwen3-VL-4B encoder (CLIPLoader type krea2) and the "
    "Qwen-Image VAE serve both; 1024 px (RAW was trained up to 1K, Turbo 1K-2K). "
)


def _e(name, title, paper, compare, files, make, body):
    return Experiment(name, title, paper, compare, tuple(files), make, body)


EXPERIMENTS = [
    _e(
        "01_mode_collapse_sdxl_dmd2",
        "Mode collapse and its fix: SDXL base vs DMD2 vs hybrid",
        "Tables 2-3, Fig. G",
        T3 + "; Table 2 FID 12.74 / 15.52 / 10.79",
        DMD2_FILES,
        three_way(SDXL, b.DMD2, b.SDXL_BASE),
        SAME + " DMD2 (LoRA on SDXL base): 'lcm' schedule (t = 999, 759, 499, 259) with the lcm sampler.",
    ),
    _e(
        "02a_mode_collapse_sdxl_turbo",
        "Mode collapse and its fix: SDXL-Turbo",
        "Tables 2-3 (Turbo)",
        "diversity: hybrid close to base, Turbo lower (Table 3 pattern)",
        (SDXL, b.TURBO.file),
        three_way(SDXL, b.TURBO, b.SDXL_BASE),
        SAME + " SDXL-Turbo at its 512 px: 'trailing' schedule (t = 999, 749, 499, 249) with euler_ancestral; each "
        "model encodes the prompt with its own CLIP.",
    ),
    _e(
        "02b_mode_collapse_sdxl_lightning",
        "Mode collapse and its fix: SDXL-Lightning 4-step",
        "Tables 2-3 (Lightning)",
        "diversity: hybrid close to base, Lightning lower",
        (SDXL, b.LIGHTNING.file),
        three_way(SDXL, b.LIGHTNING, b.SDXL_BASE),
        SAME + " SDXL-Lightning: 'trailing' schedule with euler.",
    ),
    _e(
        "02c_mode_collapse_lcm_lora_sdxl",
        "Mode collapse and its fix: LCM-LoRA SDXL",
        "Tables 2-3 (LCM)",
        "diversity: hybrid close to base, LCM lower",
        (SDXL, b.LCM.file),
        three_way(SDXL, b.LCM, b.SDXL_BASE),
        SAME + " LCM-LoRA on SDXL base: 'lcm' schedule with the lcm sampler.",
    ),
    _e(
        "03_skip_first_step_vs_hybrid",
        "Skip the first step vs the hybrid",
        "Table 4, Fig. C.1",
        "Table 4: hybrid FID 10.79 / CLIP 32.12 / 0.64 s; skip first FID 10.12 / CLIP 31.71 / 0.53 s",
        DMD2_FILES,
        skip_first(SDXL, b.DMD2, b.SDXL_BASE),
        "Skip First Step: DMD2 alone from the second timestep (t = 759), starting from unit-variance noise; no "
        "base model in memory. The hybrid lets the base model take the first timestep.",
    ),
    _e(
        "04_causal_replace_final_steps",
        "Causal check: replace the final steps instead of the first",
        "Table E.1, Fig. E.1",
        E1,
        DMD2_FILES,
        replace_final(SDXL, b.DMD2, b.SDXL_BASE),
        "'replace final' uses the same two nodes with the roles swapped: DMD2 sits in the Base First Step "
        "Sampler's model slot and takes step 1, SDXL base sits in the Distilled Continue Sampler and takes steps "
        "2-4. Diversity should stay at the distilled level: the first step decides the layout.",
    ),
    _e(
        "05a_generalization_sd21_sd_turbo",
        "Generalization: SD 2.1 + SD-Turbo",
        "Table D.1, Fig. D.1",
        "Table D.1 (DreamSim, 'image of a car'): SD 2.1 .298, SD-Turbo .171, hybrid .294",
        (SD21, b.SD_TURBO.file),
        three_way(SD21, b.SD_TURBO, b.SD21_BASE),
        "SD 2.1 base (512 px, eps) with SD-Turbo, each with its own text encoder; Turbo: 'trailing' + euler_ancestral.",
    ),
    _e(
        "05b_generalization_pixart",
        "Generalization: PixArt-alpha + PixArt-delta",
        "Table D.1, Fig. D.1",
        "Table D.1 (DreamSim, 'image of a car'): PixArt-alpha .342, PixArt-delta .198, hybrid .339",
        (
            b.PIXART_ALPHA_FILE,
            b.PIXART_DELTA.file,
            "t5xxl_fp16.safetensors",
            "vae-ft-mse-840000-ema-pruned.safetensors",
        ),
        three_way("pixart", b.PIXART_DELTA, b.PIXART_ALPHA),
        "PixArt-alpha (DiT) with PixArt-delta (its LCM distillation): both load with Load Diffusion Model and "
        "share the T5-XXL encoder (type 'pixart') and the SD 1.x VAE; PixArt-delta: 'lcm' schedule + lcm sampler.",
    ),
    _e(
        "06_x0_visualization",
        "x̂0 visualization: base vs distilled vs hybrid",
        "Fig. 5, F.1, F.2",
        "Fig. 5: the distilled model's x̂0 reaches the final layout within ~10% of its trajectory, the base "
        "model's after ~30%",
        DMD2_FILES,
        x0_viz(SDXL, b.DMD2, b.SDXL_BASE),
        "Each x̂0 Preview shows every step's x̂0 (rows = seeds, columns = steps) and the distance of each step's "
        "x̂0 to the final image. Base and distilled alone run through stock SamplerCustom with a Record x̂0 "
        "Sampler; the hybrid's samplers output their trajectory.",
    ),
    _e(
        "07a_control_transfer_base_to_distilled",
        "Control transfer: a base-model slider on DMD2 and the hybrid",
        "Table 1",
        "Table 1 (% CLIP change, age slider): base 20.4, DMD2 17.8",
        (*DMD2_FILES, "sdxl_age_slider.safetensors"),
        control("sdxl_age_slider.safetensors"),
        "A Concept Slider / LoRA trained on SDXL base, applied unchanged (LoRA Loader Model Only, same strength) "
        "to base, DMD2 and both models of the hybrid. Each method runs with and without it from the same seeds, "
        "so each pair differs only by the slider.",
    ),
    _e(
        "07b_control_transfer_distilled_to_base",
        "Reverse control transfer: a DMD2 slider on the base model",
        "Appendix B, Fig. B.1",
        "Fig. B.1 (qualitative): the slider's edit appears on the base model",
        (*DMD2_FILES, "dmd2_age_slider.safetensors"),
        control("dmd2_age_slider.safetensors"),
        "The reverse direction: a slider trained on SDXL-DMD2, applied unchanged to SDXL base, DMD2 and the "
        "hybrid, each with and without it from the same seeds.",
    ),
    _e(
        "08a_ablation_base_guidance",
        "Ablation: guidance of the base step",
        "Fig. 7 (left)",
        "Fig. 7: lower base guidance gives more diversity",
        DMD2_FILES,
        cfg_sweep(SDXL, b.DMD2, b.SDXL_BASE),
        "The hybrid with base_cfg 1 (conditional only, the paper's setting), 2, 4 and 7; higher values follow the "
        "prompt more, cost a second UNet pass in the base step and lower diversity.",
    ),
    _e(
        "08b_ablation_base_steps",
        "Ablation: number of base steps k",
        "Fig. 7 (right)",
        "Fig. 7: k = 1 is the sweet spot",
        DMD2_FILES,
        k_sweep(SDXL, b.DMD2, b.SDXL_BASE),
        "k = steps (of 4) the base model takes before DMD2 continues: k = 0 is DMD2 alone, k = 1 the paper's "
        "hybrid; more base steps cost time and add little diversity.",
    ),
    _e(
        "09a_demo_mode_collapse",
        "Offline demo: mode collapse and its fix",
        "twin of 01 (Tables 2-3)",
        "the same ordering as Table 3: distilled below base, hybrid back near base",
        (),
        three_way("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE + SAME,
    ),
    _e(
        "09b_demo_skip_first_step",
        "Offline demo: skip the first step vs the hybrid",
        "twin of 03 (Table 4)",
        "skip first between distilled and hybrid",
        (),
        skip_first("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE,
    ),
    _e(
        "09c_demo_replace_final_steps",
        "Offline demo: replace the final steps",
        "twin of 04 (Table E.1)",
        "replace final stays near the distilled level, hybrid near base",
        (),
        replace_final("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE,
    ),
    _e(
        "09d_demo_x0_visualization",
        "Offline demo: x̂0 visualization",
        "twin of 06 (Fig. 5)",
        "the student's x̂0 fixes the digit at step 1; the base's forms over its steps",
        (),
        x0_viz("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE,
    ),
    _e(
        "09e_demo_base_steps",
        "Offline demo: number of base steps k",
        "twin of 08b (Fig. 7)",
        "diversity rises from k = 0 to k = 1, little after",
        (),
        k_sweep("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE,
    ),
    _e(
        "09f_demo_hybrid_as_one_node",
        "Offline demo: the hybrid as one node",
        "twin of 09a's hybrid, as one node",
        "the one-node hybrid gives the two-node hybrid's samples and diversity, above the distilled model's",
        (),
        one_node("demo", b.DEMO, b.DEMO_BASE),
        DEMO_NOTE + "The third row is the pack's subgraph blueprint Diversity Hybrid Sampler (node library: Subgraph "
        "Blueprints), the two samplers of the second row packed into one node with the widgets an artist changes; "
        "its Diversity Meter reads the same numbers as the second row's.",
    ),
    *(
        Experiment(
            name, title, "Tables 2-3 pattern, " + kind, compare, tuple(files), make, body, links=True, alternatives=alt
        )
        for name, title, kind, compare, files, make, body, alt in (
            (
                "10a_zimage_turbo",
                "2025-26 distills: Z-Image + Z-Image-Turbo",
                "flow matching",
                FLOW_COMPARE.format("Z-Image", "Turbo"),
                (wf.ZIMAGE_FILE, wf.ZIMAGE_TURBO.file, "qwen_3_4b.safetensors", "ae.safetensors"),
                three_way("zimage", wf.ZIMAGE_TURBO, wf.ZIMAGE),
                "Z-Image (50 res_multistep steps, cfg 4 with a negative) against Z-Image-Turbo (Decoupled-DMD: 8 "
                "euler steps, cfg 1, its negative the zeroed prompt, as its template) and the hybrid, where Z-Image "
                "takes the first steps of Turbo's 8 at cfg 1 and Turbo the rest. Both carry ModelSamplingAuraFlow "
                "3, so the schedules agree: 1, .955, .9, .833, .75, .643, .5, .3, 0. "
                + wf.rule_note(wf.ZIMAGE_TURBO, "Z-Image", "Turbo")
                + " "
                + FLOW_NOTE,
                (),
            ),
            (
                "10b_qwen_image_lightning",
                "2025-26 distills: Qwen-Image + Lightning LoRA",
                "flow matching, LoRA",
                FLOW_COMPARE.format("Qwen-Image", "Lightning"),
                (
                    wf.QWEN_FILE,
                    wf.QWEN_LIGHTNING.file,
                    "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                    "qwen_image_vae.safetensors",
                ),
                three_way("qwen", wf.QWEN_LIGHTNING, wf.QWEN),
                "Qwen-Image (20 euler steps, cfg 2.5, ModelSamplingAuraFlow 3.1: its template) against the same "
                "model with the Lightning 8-step LoRA (strength 1) and ModelSamplingAuraFlow 3, the shift it was "
                "distilled at: 8 steps, cfg 1. The hybrid follows the Lightning side's schedule (connected to "
                "distilled_model); without a shift node ComfyUI would fall back to ModelSamplingFlux, another curve. "
                + wf.rule_note(wf.QWEN_LIGHTNING, "Qwen-Image", "Lightning")
                + " **4-step alternative:** select `Qwen-Image-Lightning-4steps-V1.0.safetensors` in the LoRA loader "
                "and set steps to 4 in the distilled row's BasicScheduler and in Base First Step (the rule then "
                "hands over after step 2 of 4, at sigma .75). " + FLOW_NOTE,
                (wf.QWEN_4STEP,),
            ),
            (
                "10c_sd35_large_turbo",
                "2025-26 distills: SD3.5 Large + Large Turbo",
                "flow matching",
                FLOW_COMPARE.format("SD3.5 Large", "Turbo"),
                (
                    wf.SD35_FILE,
                    wf.SD35_TURBO.file,
                    "clip_l.safetensors",
                    "clip_g.safetensors",
                    "t5xxl_fp16.safetensors",
                ),
                three_way("sd35", wf.SD35_TURBO, wf.SD35),
                "SD3.5 Large (40 dpmpp_2m steps, sgm_uniform, cfg 4.5: Stability's sd3_infer.py) against SD3.5 "
                "Large Turbo (adversarial diffusion distillation: 4 euler steps, cfg 1) and the hybrid. Both are SD3 "
                "models with shift 3, so the schedules agree (ComfyUI's simple: timesteps 1000, 750, 500, 250). The "
                "checkpoints hold no text encoders: one TripleCLIPLoader (clip_l, clip_g, t5xxl_fp16) encodes for "
                "both; each model decodes with its checkpoint's VAE. "
                + wf.rule_note(wf.SD35_TURBO, "SD3.5 Large", "Turbo")
                + " "
                + FLOW_NOTE,
                (),
            ),
            (
                "10d_flux_dev_schnell",
                "2025-26 distills: FLUX.1-dev + FLUX.1-schnell",
                "flow matching, siblings",
                FLOW_COMPARE.format("FLUX.1-dev", "schnell"),
                (wf.DEV_FILE, wf.SCHNELL.file, "clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"),
                three_way("flux", wf.SCHNELL, wf.DEV),
                "FLUX.1-dev (20 euler steps, cfg 1 with FluxGuidance 3.5) against FLUX.1-schnell (4 euler steps, "
                "cfg 1) and the hybrid, where dev takes the first of schnell's steps. **FLUX.1-schnell is distilled "
                "from FLUX.1 [pro], not from FLUX.1-dev** (its card names latent adversarial diffusion distillation "
                "and no teacher): dev and schnell are siblings, not teacher and student. They share the latent space "
                "(the same autoencoder, ae.safetensors), which is what the hybrid needs. Their schedules differ "
                "(schnell, unshifted: 1, .75, .5, .25, 0; dev's shift 1.15: 1, .905, .76, .513, 0): schnell is "
                "connected to distilled_model, so the hybrid runs schnell's. "
                + wf.rule_note(wf.SCHNELL, "dev", "schnell")
                + " "
                + FLOW_NOTE,
                (),
            ),
            (
                "10e_wan22_lightning_t2v",
                "2025-26 distills: Wan 2.2 A14B + Lightning (text to video)",
                "video, two experts",
                FLOW_COMPARE.format("Wan 2.2", "Lightning"),
                (
                    wf.WAN_HIGH,
                    wf.WAN_LOW,
                    *wf.WAN_LORAS,
                    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                    "wan_2.1_vae.safetensors",
                ),
                wf.wan_rows,
                "Wan 2.2 A14B has two experts. Base alone as ComfyUI's template: 20 euler steps, cfg 3.5, "
                "ModelSamplingSD3 8, the high-noise expert for steps 1-10 and the low-noise one for 11-20 "
                "(KSamplerAdvanced). Lightning (lightx2v 4-step LoRAs, one per expert, strength 1, ModelSamplingSD3 "
                "5): 4 steps, cfg 1, 2 + 2. Hybrid, on Lightning-high's schedule (1, .9375, .833, .625, 0), "
                "handing over by noise level: A = (sigma / (1 - sigma))^2 is 225, 25 and 2.78 after steps 1, 2 and "
                f"3, so the rule (A* = {PAPER_AMPLIFICATION:g}) hands over after step k = 3 of 4, at sigma .625, "
                "below the experts' boundary (Wan's own switch at t = 875). The base runs both of its experts on "
                "their own ranges: Base First Step on the base high-noise expert down to the boundary "
                "(base_steps 0, handover_sigma 0.875: steps 1-2, to .833), a Distilled Continue on the base "
                "low-noise expert (model_label 'base', cfg 1) down to the rule's sigma (end_at_sigma "
                f"{wf.FLOW_RULE_SIGMA:g}, where A = {PAPER_AMPLIFICATION:g} in rectified flow: step 3, to .625), "
                "and Lightning-low the last step; Lightning-high only sets the schedule (distilled_model). For the "
                "paper's single base step: Base First Step with base_steps 1 -> Lightning-high (end_at_sigma "
                "0.875) -> Lightning-low. 832x480, 33 frames (9 latent frames): 8 clips of the "
                "template's 81 frames would cost about 2.5 times the time and memory of the whole batch, for the "
                "same first steps that decide the layout; for 81 frames set length 81 and the three meters' "
                "frames_per_video to 81. VAE Decode returns the 8 clips as one batch of 8 x 33 frames; the meter "
                "(frames_per_video 33) takes each clip as one sample (28 pairs). " + FLOW_NOTE,
                (),
            ),
            (
                "10f_krea2_turbo",
                "2025-26 distills: Krea 2 RAW + Krea 2 Turbo",
                "flow matching",
                FLOW_COMPARE.format("Krea 2 RAW", "Turbo"),
                (wf.KREA2_RAW_FILE, wf.KREA2_TURBO_FILE, wf.KREA2_TE, wf.KREA2_VAE),
                three_way("krea2", wf.KREA2_TURBO, wf.KREA2_RAW),
                KREA2_NEEDS + "Krea 2 RAW (the undistilled base: 52 euler steps, cfg 3.5, empty negative) against "
                "Krea 2 Turbo (its 8-step distillation: 8 euler steps, cfg 1, its negative the zeroed prompt, as "
                "Comfy-Org's template) and the hybrid. "
                + KREA2_NOTE
                + wf.rule_note(wf.KREA2_TURBO, "RAW", "Turbo")
                + " RAW + the Turbo LoRA in place of the Turbo model: workflow 10g. "
                + FLOW_NOTE,
                (),
            ),
            (
                "10g_krea2_turbo_lora",
                "2025-26 distills: Krea 2 RAW + Turbo LoRA",
                "flow matching, LoRA",
                FLOW_COMPARE.format("Krea 2 RAW", "RAW + Turbo LoRA"),
                (wf.KREA2_RAW_FILE, wf.KREA2_TURBO_LORA, wf.KREA2_TE, wf.KREA2_VAE),
                three_way("krea2", wf.KREA2_TURBO_LORA_FAMILY, wf.KREA2_RAW),
                KREA2_NEEDS + "Krea 2 RAW (52 euler steps, cfg 3.5, empty negative) against RAW with Comfy-Org's "
                "Turbo LoRA at strength 1 (rank 64: RAW + this LoRA samples as Turbo: 8 euler steps, cfg 1, the "
                "zeroed prompt as negative) and the hybrid. One diffusion model in memory instead of two (26 GB "
                "each in bf16): the base steps run on RAW, the rest on the same model with the LoRA (README, "
                "'LoRA-distilled pairs'). "
                + KREA2_NOTE
                + wf.rule_note(wf.KREA2_TURBO_LORA_FAMILY, "RAW", "RAW + LoRA")
                + " The Turbo model itself in place of the LoRA: workflow 10f. "
                + FLOW_NOTE,
                (),
            ),
        )
    ),
]


def readme_table() -> str:
    rows = ["| experiment (paper) | workflow | model files (folder) | compare with |", "|---|---|---|---|"]
    for e in EXPERIMENTS:
        files = "<br>".join(f"`{f}` ({MODELS[f].folder})" for f in e.files) or "none (bundled demo models)"
        rows.append(f"| {e.title} ({e.paper}) | `workflows/{e.name}.json` | {files} | {e.compare} |")
    rows += ["", "| file | folder | where to get it | licence |", "|---|---|---|---|"]
    for f, m in MODELS.items():
        where = " — ".join(x for x in (m.url, m.note) if x)
        rows.append(f"| `{f}` | `models/{m.folder}/` | {where} | {m.licence} |")
    return "\n".join(rows)


# the handover sweep template (ddistill_dev/workflows/workflow_sweep.py), last in EXPERIMENTS; imported here, after
# Experiment and DEMO_NOTE exist, so that neither module imports the other at its top
from .workflow_sweep import sweep_experiment  # noqa: E402

EXPERIMENTS.append(sweep_experiment(Experiment, DEMO_NOTE))
