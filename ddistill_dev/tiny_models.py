"""Real ComfyUI model classes with tiny random configs (CPU, milliseconds per step)."""

from __future__ import annotations

import torch

TINY_UNET = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "model_channels": 64,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "channel_mult": [1],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": True,
    "num_head_channels": 32,
    "transformer_depth_output": [1, 1],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "dtype": torch.float32,
}
CONTEXT_DIM = {"sdxl": 2048, "sd15": 768, "sd21": 1024, "sd21v": 1024, "flow": 768}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def make_model(kind: str = "sdxl", seed: int = 0):
    """A ModelPatcher around a real ComfyUI model: sdxl, sd15, sd21 (eps), sd21v (v-prediction), flow (SD1 latents,
    CONST)."""
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    cfg = dict(TINY_UNET, context_dim=CONTEXT_DIM[kind])
    model_type = comfy.model_base.ModelType.EPS
    if kind == "sdxl":
        cfg.update(adm_in_channels=2816, num_classes="sequential")
        config = comfy.supported_models.SDXL(cfg)
        model = comfy.model_base.SDXL(config, device="cpu")
    else:
        cfg.update(adm_in_channels=None)
        config = comfy.supported_models.SD20(cfg) if kind in ("sd21", "sd21v") else comfy.supported_models.SD15(cfg)
        if kind == "sd21v":
            model_type = comfy.model_base.ModelType.V_PREDICTION
        elif kind == "flow":
            model_type = comfy.model_base.ModelType.FLOW
        model = comfy.model_base.BaseModel(config, model_type=model_type, device="cpu")
    _randomize(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def make_conditioning(kind: str = "sdxl", batch: int = 1, seed: int = 0, tokens: int = 8):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, tokens, CONTEXT_DIM[kind], generator=g)
    extra = {}
    if kind == "sdxl":
        extra = {"pooled_output": torch.randn(batch, 1280, generator=g), "width": 64, "height": 64}
    return [[cond, extra]]


def empty_latent(batch: int = 1, size: int = 16) -> dict:
    return {"samples": torch.zeros(batch, 4, size, size)}
