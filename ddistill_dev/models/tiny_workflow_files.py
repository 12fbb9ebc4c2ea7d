"""Tiny model files under the names the example workflows 10a-10g load, for CPU runs of those graphs through a real
server: ComfyUI's own classes with tiny random weights, in the files the stock loaders read. ComfyUI's detection
keeps a tiny config for Wan and Krea 2 (0.33+) diffusion models (UNETLoader), SD3 checkpoints
(CheckpointLoaderSimple), LoRAs and VAEs; it fixes the full width of Flux, Z-Image and Qwen-Image diffusion models,
which tests take from a fixture node instead (as the text encoders)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import random_lora
from .tiny_models import make_family_model


def _random(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


def taesd16_vae(seed: int = 0):
    """A VAE of the 16-channel latent space (FLUX.1, Z-Image, SD3): ComfyUI's TAESD architecture, random weights."""
    import comfy.sd
    import comfy.taesd.taesd

    net = comfy.taesd.taesd.TAESD(latent_channels=16)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in net.state_dict().items():
        if k in ("vae_scale", "vae_shift"):
            v = torch.ones_like(v) if k == "vae_scale" else torch.zeros_like(v)
        elif v.dtype.is_floating_point:
            v = torch.randn(v.shape, generator=g) * (2.0 / max(1, v[0].numel()) ** 0.5)
        sd[k] = v
    return comfy.sd.VAE(sd=sd)


def wan_vae(seed: int = 0):
    """A tiny Wan 2.1 video VAE (Qwen-Image and Wan 2.2 A14B use it), random weights that keep its output finite."""
    import comfy.ldm.wan.vae
    import comfy.sd

    net = comfy.ldm.wan.vae.WanVAE(
        dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
        temperal_downsample=[False, True, True], dropout=0.0,
    )  # fmt: skip
    _random(net, seed)
    with torch.no_grad():  # 1x1x1 convolutions near identity
        for p in net.parameters():
            if p.ndim == 4 and p.shape[1:] == (1, 1, 1):
                p.add_(1.0)
    return comfy.sd.VAE(sd=net.state_dict())


def _save(path: Path, sd: dict) -> Path:
    import comfy.utils

    path.parent.mkdir(parents=True, exist_ok=True)
    comfy.utils.save_torch_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def write_unet(path: Path, kind: str, seed: int = 0) -> Path:
    """The diffusion model's state dict, as Load Diffusion Model reads it."""
    return _save(path, make_family_model(kind, seed).model.diffusion_model.state_dict())


def write_checkpoint(path: Path, kind: str, vae, seed: int = 0) -> Path:
    """A checkpoint with the diffusion model and ``vae`` (no text encoders, as SD3.5's), written by ComfyUI."""
    import comfy.sd

    path.parent.mkdir(parents=True, exist_ok=True)
    comfy.sd.save_checkpoint(str(path), make_family_model(kind, seed), vae=vae)
    return path


def write_vae(path: Path, vae) -> Path:
    return _save(path, vae.get_sd())


def write_lora(path: Path, kind: str, seed: int = 0) -> Path:
    """A random LoRA (kohya keys) on every Linear of a ``kind`` tiny model."""
    return random_lora.save(path, random_lora.lora_state_dict(make_family_model(kind).model, seed=seed))
