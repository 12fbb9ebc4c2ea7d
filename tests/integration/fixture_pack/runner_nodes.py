"""Test-only fixture nodes for the experiment runner's server tests: a tiny real ComfyUI VAE (TAESD architecture,
random weights, so the stock VAEDecode makes real images) and conditioning made from a prompt text (a different,
deterministic conditioning per text, so the runner's prompt substitution changes the images)."""

import hashlib

from ddistill_dev.models import tiny_models


def make_vae(seed: int = 0):
    import comfy.sd
    import comfy.taesd.taesd
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in comfy.taesd.taesd.TAESD().state_dict().items():
        if k == "vae_scale":
            v = torch.ones_like(v)
        elif k == "vae_shift":
            v = torch.zeros_like(v)
        elif v.dtype.is_floating_point:
            v = torch.randn(v.shape, generator=g) * (2.0 / max(1, v[0].numel()) ** 0.5)  # varied, saturated colours
        sd[k] = v
    return comfy.sd.VAE(sd=sd)


class TinyVAE:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, seed):
        return (make_vae(seed),)


class TextConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "kind": (["sdxl", "sd15", "sd21", "sd21v", "flow"],),
                "text": ("STRING", {"multiline": True, "default": ""}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, text):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return (tiny_models.make_conditioning(kind, 1, seed),)


NODE_CLASS_MAPPINGS = {"DDTest_TinyVAE": TinyVAE, "DDTest_TextConditioning": TextConditioning}
