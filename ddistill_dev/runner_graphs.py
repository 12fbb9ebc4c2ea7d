"""API-format graphs for the runner's tests, on the test fixture pack's tiny models (``tests/integration/fixture_pack``:
``DDTest_*`` nodes); the unit tests parse them, the server tests run them."""

from __future__ import annotations

from ddistill.protocol import EFFNET_BACKEND as EFFNET


def tiny_workflow(meter: bool = True, x0: bool = False) -> dict:
    """Two methods (stock KSampler 'base', the pack's hybrid), tiny real models, 64x64 images, a real VAE."""
    g = {
        "1": {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 1}},
        "2": {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 2}},
        "3": {
            "class_type": "DDTest_TextConditioning",
            "_meta": {"title": "prompt"},
            "inputs": {"kind": "sdxl", "text": ""},
        },
        "4": {
            "class_type": "EmptyLatentImage",
            "_meta": {"title": "batch"},
            "inputs": {"width": 64, "height": 64, "batch_size": 3},
        },
        "5": {"class_type": "DDTest_TinyVAE", "inputs": {"seed": 0}},
        "10": {
            "class_type": "KSampler",
            "_meta": {"title": "seed"},
            "inputs": {
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": 0,
                "steps": 4,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["5", 0]}},
        "12": {
            "class_type": "SaveImage",
            "_meta": {"title": "method: base"},
            "inputs": {"images": ["11", 0], "filename_prefix": "rt/base"},
        },
        "20": {
            "class_type": "DDistill_BaseFirstStepSampler",
            "_meta": {"title": "seed"},
            "inputs": {
                "base_model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": 0,
                "base_cfg": 1.0,
                "base_steps": 1,
                "steps": 4,
                "scheduler": "lcm",
                "sampler_name": "lcm",
            },
        },
        "21": {
            "class_type": "DDistill_DistilledContinueSampler",
            "inputs": {
                "distilled_model": ["2", 0],
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent": ["20", 0],
                "cfg": 1.0,
            },
        },
        "22": {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["5", 0]}},
        "23": {
            "class_type": "SaveImage",
            "_meta": {"title": "method: hybrid"},
            "inputs": {"images": ["22", 0], "filename_prefix": "rt/hybrid"},
        },
        "30": {"class_type": "PreviewImage", "inputs": {"images": ["22", 0]}},  # untitled: not run by the runner
    }
    if x0:
        g["25"] = {
            "class_type": "DDistill_X0Preview",
            "_meta": {"title": "method: hybrid"},
            "inputs": {
                "vae": ["5", 0],
                "trajectory": ["21", 1],
                "latent": ["21", 0],
                "max_cells": 16,
                "cell_size": 32,
                "metric": "pixel (RMS, 0..1)",
            },
        }
    if meter:
        g["13"] = {
            "class_type": "DDistill_DiversityMeter",
            "_meta": {"title": "method: base"},
            "inputs": {"images": ["11", 0], "backend": EFFNET},
        }
        g["24"] = {
            "class_type": "DDistill_DiversityMeter",
            "_meta": {"title": "method: hybrid"},
            "inputs": {"images": ["22", 0], "backend": EFFNET},
        }
    return g
