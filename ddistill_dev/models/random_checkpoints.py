"""Full-size ComfyUI models with random weights, built by ComfyUI's own classes, and checkpoints written by
ComfyUI's own ``comfy.sd.save_checkpoint`` (what the CheckpointSave node uses), so that the stock loader nodes
load real architectures. Shared by the tests, ``benchmarks/`` and ``scripts/gpu_workflows.py``."""

from __future__ import annotations

from pathlib import Path

import torch

# what every SD-family UNet config here shares (the tiny ones of tiny_models too)
UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "model_channels": 320,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
_SD1_LAYOUT = {
    "adm_in_channels": None,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
}
# The full-size UNets as ComfyUI's model detection reads them from the released files.
SD15_UNET = {**UNET_COMMON, **_SD1_LAYOUT, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8}
SD21_UNET = {
    **UNET_COMMON,
    **_SD1_LAYOUT,
    "use_linear_in_transformer": True,
    "context_dim": 1024,
    "num_head_channels": 64,
}
SDXL_UNET = {
    **UNET_COMMON,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "num_res_blocks": [2, 2, 2],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
}
VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
# Z-Image (and Z-Image-Turbo): the 6B single-stream DiT as ComfyUI's model detection reads it from the released
# files (cap_embedder 2560 -> 3840, 30 layers, pad tokens to a multiple of 32).
ZIMAGE_DIT = {
    "image_model": "lumina2",
    "patch_size": 2,
    "in_channels": 16,
    "dim": 3840,
    "cap_feat_dim": 2560,
    "n_layers": 30,
    "qk_norm": True,
    "n_heads": 30,
    "n_kv_heads": 30,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1536, 512, 512],
    "rope_theta": 256.0,
    "ffn_dim_multiplier": 8.0 / 3.0,
    "z_image_modulation": True,
    "time_scale": 1000.0,
    "pad_tokens_multiple": 32,
}
KINDS = ("sd15", "sd21", "sdxl", "zimage")


def config_of(kind: str):
    """(ComfyUI supported-model class, UNet config) of ``kind``."""
    import comfy.supported_models as sm

    table = {
        "sd15": (sm.SD15, SD15_UNET),
        "sd21": (sm.SD20, SD21_UNET),
        "sdxl": (sm.SDXL, SDXL_UNET),
        "zimage": (sm.ZImage, ZIMAGE_DIT),
    }
    if kind not in table:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return table[kind]


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Fan-in-scaled normal weights (activations stay near unit scale through full depth), unit norm scales,
    zero biases: finite outputs at every step, in fp16 too."""
    g = None
    with torch.no_grad():
        for name, p in module.named_parameters():
            if g is None or g.device != p.device:
                g = torch.Generator(device=p.device).manual_seed(seed)
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g, device=p.device) / p[0].numel() ** 0.5)
            elif name.endswith("weight") or name.endswith("scale"):
                p.fill_(1.0)
            else:
                p.zero_()


def unet_model(config_cls, unet_config: dict, seed: int, device=None, dtype=None):
    """(model config, ModelPatcher) of a randomly initialised diffusion model on ``device`` (default: ComfyUI's)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    device = torch.device(device) if device is not None else mm.get_torch_device()  # ComfyUI wants a torch.device
    dtype = dtype or (torch.float32 if device.type == "cpu" else torch.float16)
    cfg = config_cls(dict(unet_config))
    cfg.set_inference_dtype(dtype, None)
    model = cfg.get_model({}, device=device)
    randomize(model.diffusion_model, seed)
    return cfg, comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())


def random_vae(seed: int):
    """ComfyUI's SD VAE (AutoencoderKL) with random weights."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ae = AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    randomize(ae, seed)
    return comfy.sd.VAE(sd={k: v.contiguous() for k, v in ae.state_dict().items()})


def write_checkpoint(path: Path, config_cls, unet_config: dict, seed: int, device=None, dtype=None):
    """A checkpoint (UNet + CLIP + VAE, random) written by comfy.sd.save_checkpoint; returns the UNet's patcher."""
    import comfy.sd

    cfg, model = unet_model(config_cls, unet_config, seed, device, dtype)
    clip = comfy.sd.CLIP(target=cfg.clip_target({}))
    randomize(clip.cond_stage_model, seed + 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    comfy.sd.save_checkpoint(str(path), model, clip, random_vae(seed + 2))
    return model


def write(path: Path, kind: str = "sd15", seed: int = 0, device="cpu", dtype=torch.float16) -> Path:
    """A checkpoint of ``kind`` with an fp16 UNet (as released checkpoints are), built on ``device``."""
    write_checkpoint(path, *config_of(kind), seed, device, dtype)
    return Path(path)
