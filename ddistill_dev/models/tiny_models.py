"""Real ComfyUI model classes with tiny random configs (CPU, milliseconds per step)."""

from __future__ import annotations

import torch

from .random_checkpoints import UNET_COMMON

TINY_UNET = {
    **UNET_COMMON,
    "model_channels": 64,
    "num_res_blocks": [1],
    "transformer_depth": [1],
    "channel_mult": [1],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": True,
    "num_head_channels": 32,
    "transformer_depth_output": [1, 1],
    "dtype": torch.float32,
}
CONTEXT_DIM = {"sdxl": 2048, "sd15": 768, "sd21": 1024, "sd21v": 1024, "flow": 768}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights: the parameters, then the floating persistent buffers (what a checkpoint file holds besides
    them, e.g. SD3's ``pos_embed``, which ComfyUI creates with ``torch.empty``: left alone, its values were whatever
    memory held, and a test saw NaN from it once in a whole-suite run)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        params = {id(p) for p in module.parameters()}
        for t in module.state_dict(keep_vars=True).values():
            if id(t) not in params and t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)


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
    return _patcher(model, seed)


def make_conditioning(kind: str = "sdxl", batch: int = 1, seed: int = 0, tokens: int = 8):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, tokens, CONTEXT_DIM[kind], generator=g)
    extra = {}
    if kind == "sdxl":
        extra = {"pooled_output": torch.randn(batch, 1280, generator=g), "width": 64, "height": 64}
    return [[cond, extra]]


def empty_latent(batch: int = 1, size: int = 16) -> dict:
    return {"samples": torch.zeros(batch, 4, size, size)}


# Tiny configs of the 2025-26 flow and video families, as ComfyUI's own model classes (supported_models) build them.
_FLUX = {
    "image_model": "flux",
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 16,
    "context_in_dim": 32,
    "hidden_size": 64,
    "mlp_ratio": 2.0,
    "num_heads": 2,
    "depth": 1,
    "depth_single_blocks": 1,
    "axes_dim": [8, 12, 12],
    "theta": 10000,
    "qkv_bias": True,
    "patch_size": 2,
}
FAMILIES = {
    # kind: (supported_models class name, unet_config, conditioning width, pooled width or None, latent shape)
    "flux_dev": ("Flux", dict(_FLUX, guidance_embed=True), 32, 16, (16, 16, 16)),
    "flux_schnell": ("FluxSchnell", dict(_FLUX, guidance_embed=False), 32, 16, (16, 16, 16)),
    "sd3": (
        "SD3",
        {
            "in_channels": 16,
            "pos_embed_scaling_factor": None,
            "patch_size": 2,
            "depth": 2,
            "adm_in_channels": 32,
            "pos_embed_max_size": 32,
            "num_patches": 1024,
            "context_embedder_config": {
                "target": "torch.nn.Linear",
                "params": {"in_features": 24, "out_features": 128},
            },
        },
        24,
        32,
        (16, 16, 16),
    ),
    "zimage": (
        "ZImage",
        {
            "image_model": "lumina2",
            "patch_size": 2,
            "in_channels": 16,
            "dim": 256,  # Z-Image's modulation needs dim >= 256
            "n_layers": 1,
            "n_refiner_layers": 1,
            "n_heads": 4,
            "n_kv_heads": 4,
            "axes_dims": [16, 24, 24],
            "axes_lens": [300, 64, 64],
            "cap_feat_dim": 24,
            "qk_norm": True,
            "z_image_modulation": True,
            "rope_theta": 256.0,
            "ffn_dim_multiplier": 8.0 / 3.0,
            "time_scale": 1000.0,
            "pad_tokens_multiple": None,
        },
        24,
        None,
        (16, 16, 16),
    ),
    "qwen": (
        "QwenImage",
        {
            "image_model": "qwen_image",
            "patch_size": 2,
            "in_channels": 64,
            "out_channels": 16,
            "num_layers": 1,
            "attention_head_dim": 32,
            "num_attention_heads": 2,
            "joint_attention_dim": 24,
            "axes_dims_rope": (8, 12, 12),
        },
        24,
        None,
        (16, 1, 16, 16),
    ),
    "wan21": (
        "WAN21_T2V",
        {
            "image_model": "wan2.1",
            "model_type": "t2v",
            "patch_size": (1, 2, 2),
            "text_len": 16,
            "in_dim": 16,
            "dim": 64,
            "ffn_dim": 128,
            "freq_dim": 32,
            "text_dim": 24,
            "out_dim": 16,
            "num_heads": 2,
            "num_layers": 1,
            "window_size": (-1, -1),
            "qk_norm": True,
            "cross_attn_norm": True,
            "eps": 1e-6,
        },
        24,
        None,
        (16, 3, 16, 16),
    ),
}
# Krea 2 (ComfyUI 0.33+: supported_models.Krea2, a single-stream DiT with Krea's mu 1.15 time shift and Wan 2.1
# latents). Its detection reads every one of these back from a state dict (heads = wq rows / 128, so 128-wide heads;
# txtlayers x txtdim is the conditioning width), so a tiny file loads through UNETLoader as it is. The text-fusion
# stage keeps the class's 20 heads (txtdim a multiple of 20), tdim 256 and multiplier 4.
FAMILIES["krea2"] = (
    "Krea2",
    {
        "image_model": "krea2",
        "features": 256,
        "channels": 16,
        "patch": 2,
        "layers": 1,
        "heads": 2,
        "kvheads": 1,
        "txtlayers": 2,
        "txtdim": 40,
    },
    80,
    None,
    (16, 1, 16, 16),
)
# Wan as ComfyUI's detection reads it back from a state dict (UNETLoader): heads = dim / 128, freq_dim 256 and the
# class's text_dim 4096 are fixed there, so this one loads from a file with its tiny config intact.
FAMILIES["wan22"] = (
    "WAN21_T2V",
    dict(FAMILIES["wan21"][1], dim=128, ffn_dim=256, freq_dim=256, text_dim=4096, num_heads=1, text_len=512),
    4096,
    None,
    (16, 3, 16, 16),
)


def has_family(kind: str) -> bool:
    """Whether this ComfyUI has the model class of ``kind`` (Krea 2: 0.33+)."""
    import comfy.supported_models

    return hasattr(comfy.supported_models, FAMILIES[kind][0])


def make_family_model(kind: str, seed: int = 0):
    """A ModelPatcher around a tiny random model of a flow / video family (see FAMILIES), on the CPU."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    cls_name, unet_config, *_ = FAMILIES[kind]
    if not has_family(kind):
        raise RuntimeError(f"this ComfyUI has no {cls_name} model class ({kind}: ComfyUI 0.33.0 or later)")
    unet_config = dict(unet_config)
    if unet_config.get("image_model") == "flux":
        import comfy.ldm.flux.model

        if "txt_ids_dims" in comfy.ldm.flux.model.FluxParams.__dataclass_fields__:  # newer ComfyUI (0.33: FLUX.1 = [])
            unet_config["txt_ids_dims"] = []
    config = getattr(comfy.supported_models, cls_name)(unet_config)
    model = config.get_model({}, device="cpu")
    return _patcher(model, seed)


def family_conditioning(kind: str, batch: int = 1, seed: int = 0, tokens: int = 8, width: int | None = None):
    """Random conditioning of the width (and pooled vector, guidance) the family takes; ``width`` overrides."""
    _, _, cond_width, pooled, _ = FAMILIES[kind]
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, tokens, width or cond_width, generator=g)
    extra = {}
    if pooled:
        extra["pooled_output"] = torch.randn(batch, pooled, generator=g)
    if kind == "flux_dev":
        extra["guidance"] = 3.5
    return [[cond, extra]]


def family_latent(kind: str, batch: int = 1) -> dict:
    return {"samples": torch.zeros(batch, *FAMILIES[kind][4])}


def _patcher(model, seed: int):
    """``model`` with random weights of ``seed``, in eval mode, in a ModelPatcher on ComfyUI's devices."""
    import comfy.model_management
    import comfy.model_patcher

    _randomize(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )
