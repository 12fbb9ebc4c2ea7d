"""Full-size ComfyUI checkpoints with random weights, written by ComfyUI's own ``comfy.sd.save_checkpoint``
(what the CheckpointSave node uses), so that the stock loader nodes can load real architectures."""
from __future__ import annotations

from pathlib import Path

import torch

KINDS = ("sd15", "sd21", "sdxl")


def _fill(module: torch.nn.Module, seed: int, std: float = 0.02) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def build(kind: str = "sd15", seed: int = 0, dtype=torch.float16):
    """(ModelPatcher, CLIP, VAE) of the real architecture of ``kind`` with random weights."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models

    configs = {"sd15": (comfy.supported_models.SD15, "SD15"), "sd21": (comfy.supported_models.SD20, "SD21"),
               "sdxl": (comfy.supported_models.SDXL, "SDXL")}
    if kind not in configs:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    cls, name = configs[kind]
    unet = dict(_unet_configs(dtype)[name])
    config = cls(unet)
    model = config.get_model({}, device="cpu")
    _fill(model.diffusion_model, seed)
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    clip = comfy.sd.CLIP(config.clip_target(), model_options={"dtype": dtype, "load_device": cpu,
                                                               "offload_device": cpu, "initial_device": cpu})
    _fill(clip.cond_stage_model, seed + 1)
    ddconfig = {'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3, 'ch': 128,
                'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [], 'dropout': 0.0}
    vae = comfy.sd.VAE(sd={}, device=cpu, dtype=dtype, config={"params": {"ddconfig": ddconfig, "embed_dim": 4}})
    _fill(vae.first_stage_model, seed + 2)
    return patcher, clip, vae


def _unet_configs(dtype):
    """The full-size UNet configs (as ComfyUI's model_detection lists them for these checkpoints)."""
    common = {'use_checkpoint': False, 'image_size': 32, 'out_channels': 4, 'use_spatial_transformer': True,
              'legacy': False, 'dtype': dtype, 'in_channels': 4, 'model_channels': 320,
              'use_temporal_attention': False, 'use_temporal_resblock': False}
    sd1 = dict(common, adm_in_channels=None, num_res_blocks=[2, 2, 2, 2], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
               channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
               transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    return {
        "SD15": dict(sd1, use_linear_in_transformer=False, context_dim=768, num_heads=8),
        "SD21": dict(sd1, use_linear_in_transformer=True, context_dim=1024, num_head_channels=64),
        "SDXL": dict(common, num_classes='sequential', adm_in_channels=2816, num_res_blocks=[2, 2, 2],
                     transformer_depth=[0, 0, 2, 2, 10, 10], channel_mult=[1, 2, 4], transformer_depth_middle=10,
                     use_linear_in_transformer=True, context_dim=2048, num_head_channels=64,
                     transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10]),
    }


def write(path: Path, kind: str = "sd15", seed: int = 0) -> Path:
    import comfy.sd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model, clip, vae = build(kind, seed)
    comfy.sd.save_checkpoint(str(path), model, clip, vae)
    return path
