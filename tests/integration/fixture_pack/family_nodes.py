"""Test-only fixture nodes for CPU runs of the flow / video example workflows (10a-10e): a tiny model of a family
(where ComfyUI's file detection would make it full width), the family's conditioning from a prompt text (in place
of its text encoders), and a probe that shows a hybrid's x̂0 trajectory: the sigma and model of every step."""

import hashlib

from ddistill_dev.models import tiny_models

KINDS = sorted(tiny_models.FAMILIES)


class FamilyModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (KINDS,), "seed": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, seed):
        return (tiny_models.make_family_model(kind, seed),)


class FamilyConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (KINDS,), "text": ("STRING", {"multiline": True, "default": ""})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, kind, text):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return (tiny_models.family_conditioning(kind, 1, seed),)


class TrajectoryProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"trajectory": ("DDISTILL_X0_TRAJECTORY",)}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def show(self, trajectory):
        frames = trajectory.frames
        return {"ui": {"sigmas": [f.sigma for f in frames], "models": [f.model for f in frames]}}


NODE_CLASS_MAPPINGS = {
    "DDTest_FamilyModel": FamilyModel,
    "DDTest_FamilyConditioning": FamilyConditioning,
    "DDTest_TrajectoryProbe": TrajectoryProbe,
}
