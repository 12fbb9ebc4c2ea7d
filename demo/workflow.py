"""The demo experiment as one API-format workflow for the runner (titles per runner/CONVENTIONS.md).

Methods (all from the same initial noise per seed, 32x32 digits, cfg 1):
- base:          stock SamplerCustom, euler, 'normal' schedule, BASE_STEPS steps, on the base model;
- distilled:     the student alone on the paper's 4-step lcm schedule (t = 999, 759, 499, 259), lcm sampler;
- hybrid:        the base takes step 1, the student steps 2-4 (Base First Step -> Distilled Continue);
- skip first:    the student on steps 2-4 only, from pure noise (Skip First Step);
- replace final: the student takes step 1, the base steps 2-4 (Table E.1's control).
Every method ends in Save Image + Diversity Meter + x̂0 Preview titled 'method: NAME'.
"""

from __future__ import annotations

from ddistill import protocol as P
from ddistill.protocol import EFFNET_BACKEND

BASE_STEPS = 40
EFFNET = EFFNET_BACKEND
LCM = {"steps": 4, "scheduler": "lcm", "sampler_name": "lcm"}


def _outputs(g: dict, nid: int, method: str, image_src: list, vae: list, x0: dict) -> None:
    title = {"title": f"method: {method}"}
    g[str(nid)] = {"class_type": "VAEDecode", "inputs": {"samples": image_src, "vae": vae}}
    g[str(nid + 1)] = {
        "class_type": "SaveImage",
        "_meta": title,
        "inputs": {"images": [str(nid), 0], "filename_prefix": f"ddistill_demo/{method.replace(' ', '_')}"},
    }
    g[str(nid + 2)] = {
        "class_type": P.DIVERSITY_METER,
        "_meta": title,
        "inputs": {"images": [str(nid), 0], "backend": EFFNET, "bootstrap_seed": 0},
    }
    g[str(nid + 3)] = {
        "class_type": P.X0_PREVIEW,
        "_meta": title,
        "inputs": {"vae": vae, "max_cells": 48, "cell_size": 64, "metric": EFFNET, **x0},
    }


def _first_then(g: dict, nid: int, first: list, then: list, pos: list, latent: list, labels: tuple[str, str]) -> None:
    """Base First Step on ``first``, Distilled Continue on ``then``; ``labels`` name the models on the x̂0 frames."""
    seed = {"title": "seed"}
    g[str(nid)] = {
        "class_type": P.BASE_FIRST_STEP,
        "_meta": seed,
        "inputs": {
            "base_model": first,
            "positive": pos,
            "negative": pos,
            "latent_image": latent,
            "seed": 0,
            "base_cfg": 1.0,
            "base_steps": 1,
            **LCM,
            "model_label": labels[0],
        },
    }
    g[str(nid + 1)] = {
        "class_type": P.DISTILLED_CONTINUE,
        "inputs": {
            "distilled_model": then,
            "positive": pos,
            "negative": pos,
            "latent": [str(nid), 0],
            "cfg": 1.0,
            "model_label": labels[1],
        },
    }


def build(batch: int = 100, base_steps: int = BASE_STEPS) -> dict:
    base, student, vae, pos, latent = ["1", 0], ["1", 1], ["1", 2], ["2", 0], ["3", 0]
    g = {
        "1": {"class_type": P.DEMO_MODEL_LOADER, "inputs": {}},
        "2": {"class_type": P.DEMO_PROMPT, "_meta": {"title": "prompt"}, "inputs": {"text": "a handwritten digit"}},
        "3": {
            "class_type": "EmptyChromaRadianceLatentImage",
            "_meta": {"title": "batch"},
            "inputs": {"width": 32, "height": 32, "batch_size": batch},
        },
        # base: stock sampler path, recorded for the x̂0 preview
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "11": {"class_type": P.RECORD_X0_SAMPLER, "inputs": {"sampler": ["10", 0], "label": P.BASE_LABEL}},
        "12": {
            "class_type": "BasicScheduler",
            "inputs": {"model": base, "scheduler": "normal", "steps": base_steps, "denoise": 1.0},
        },
        "13": {
            "class_type": "SamplerCustom",
            "_meta": {"title": "seed"},
            "inputs": {
                "model": base,
                "add_noise": True,
                "noise_seed": 0,
                "cfg": 1.0,
                "positive": pos,
                "negative": pos,
                "sampler": ["11", 0],
                "sigmas": ["12", 0],
                "latent_image": latent,
            },
        },
    }
    _outputs(g, 14, "base", ["13", 0], vae, {"recording": ["11", 1], "latent": ["13", 0]})
    _first_then(g, 20, student, student, pos, latent, (P.DISTILLED_LABEL, P.DISTILLED_LABEL))
    _outputs(g, 22, "distilled", ["21", 0], vae, {"trajectory": ["21", 1], "latent": ["21", 0]})
    _first_then(g, 30, base, student, pos, latent, (P.BASE_LABEL, P.DISTILLED_LABEL))
    _outputs(g, 32, "hybrid", ["31", 0], vae, {"trajectory": ["31", 1], "latent": ["31", 0]})
    g["40"] = {
        "class_type": P.SKIP_FIRST_STEP,
        "_meta": {"title": "seed"},
        "inputs": {
            "model": student,
            "positive": pos,
            "negative": pos,
            "latent_image": latent,
            "seed": 0,
            "cfg": 1.0,
            **LCM,
        },
    }
    _outputs(g, 42, "skip first", ["40", 0], vae, {"trajectory": ["40", 1], "latent": ["40", 0]})
    _first_then(g, 50, student, base, pos, latent, (P.DISTILLED_LABEL, P.BASE_LABEL))
    _outputs(g, 52, "replace final", ["51", 0], vae, {"trajectory": ["51", 1], "latent": ["51", 0]})
    return g
