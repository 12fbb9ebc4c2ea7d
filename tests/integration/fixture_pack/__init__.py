"""Test-only ComfyUI node pack: tiny real ComfyUI models with random weights and matching conditioning,
for graphs that run through the real server on CPU (where no loader node can build such a model)."""

from ddistill_dev.models import tiny_models


class TinyModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "kind": (["sdxl", "sd15", "sd21", "sd21v", "flow"],),
                "seed": ("INT", {"default": 0, "min": 0}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, seed):
        return (tiny_models.make_model(kind, seed),)


class TinyConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "kind": (["sdxl", "sd15", "sd21", "sd21v", "flow"],),
                "batch": ("INT", {"default": 1, "min": 1}),
                "seed": ("INT", {"default": 0, "min": 0}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, batch, seed):
        return (tiny_models.make_conditioning(kind, batch, seed),)


NODE_CLASS_MAPPINGS = {"DDTest_TinyModel": TinyModel, "DDTest_TinyConditioning": TinyConditioning}


class BadLatent:
    """A latent that no stock node makes: NaN values or a foreign channel count."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mode": (["nan", "channels16"],), "batch": ("INT", {"default": 1, "min": 1})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, mode, batch):
        import torch

        if mode == "channels16":
            return ({"samples": torch.ones(batch, 16, 8, 8)},)
        samples = torch.zeros(batch, 4, 8, 8)
        samples[0, 0, 0, 0] = float("nan")
        return ({"samples": samples},)


NODE_CLASS_MAPPINGS["DDTest_BadLatent"] = BadLatent

from .runner_nodes import NODE_CLASS_MAPPINGS as _RUNNER_NODES  # noqa: E402  (experiment runner tests)

NODE_CLASS_MAPPINGS.update(_RUNNER_NODES)

from .family_nodes import NODE_CLASS_MAPPINGS as _FAMILY_NODES  # noqa: E402  (flow / video workflow tests)

NODE_CLASS_MAPPINGS.update(_FAMILY_NODES)
