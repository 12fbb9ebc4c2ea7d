"""Tiny real ComfyUI VAEs with random weights for the x̂0 tests (helpers), and checks that they are what
ComfyUI's own loader and decode node make of them.

- ``make_kl_vae``: ``comfy.sd.VAE`` with the AutoencoderKL architecture (SD/SDXL family) at a tiny width
  (32 channels, four levels = the real 8x downscale), built through VAE's ``config`` path.
- ``taesd_state_dict``: a random TAESD-format state dict; ``comfy.sd.VAE(sd=...)`` and the stock VAELoader
  node detect the architecture from its keys, so the server tests load it from ``models/vae``.
"""

from __future__ import annotations

from pathlib import Path

import torch

KL_CONFIG = {
    "embed_dim": 4,
    "ddconfig": {
        "double_z": True,
        "z_channels": 4,
        "resolution": 64,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
}


def _random_like(sd: dict, seed: int, scale: float = 0.05) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif "norm" in k and k.endswith("weight"):
            out[k] = torch.ones_like(v)
        else:
            out[k] = torch.randn(v.shape, generator=g) * scale
    return out


def make_kl_vae(seed: int = 0):
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    shapes = AutoencoderKL(**KL_CONFIG).state_dict()
    return comfy.sd.VAE(sd=_random_like(shapes, seed), config={"params": KL_CONFIG})


def taesd_state_dict(seed: int = 0, latent_channels: int = 4) -> dict:
    from comfy.taesd.taesd import TAESD

    sd = _random_like(TAESD(latent_channels=latent_channels).state_dict(), seed, scale=0.1)
    sd["vae_scale"], sd["vae_shift"] = torch.tensor(1.0), torch.tensor(0.0)
    return sd


def make_taesd_vae(seed: int = 0, latent_channels: int = 4):
    import comfy.sd

    return comfy.sd.VAE(sd=taesd_state_dict(seed, latent_channels))


def write_taesd_file(
    models_dir: Path, name: str = "tiny_taesd.safetensors", seed: int = 0, latent_channels: int = 4
) -> str:
    """Writes a random TAESD VAE where ComfyUI's VAELoader finds it (``<models_dir>/vae/<name>``)."""
    from safetensors.torch import save_file

    folder = Path(models_dir) / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in taesd_state_dict(seed, latent_channels).items()}, str(folder / name))
    return name


# ---------------------------------------------------------------- the helpers are real ComfyUI VAEs
def test_kl_vae_is_comfy_autoencoder_with_8x_decode():
    from comfy.ldm.models.autoencoder import AutoencoderKL

    vae = make_kl_vae(1)
    assert isinstance(vae.first_stage_model, AutoencoderKL) and vae.latent_channels == 4
    img = vae.decode(torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(0)))
    assert img.shape == (2, 64, 48, 3)
    img = img.detach()
    assert 0 <= float(img.min()) and float(img.max()) <= 1 and float(img.std()) > 0


def test_taesd_state_dict_is_detected_by_comfy_vae(pack):
    from comfy.taesd.taesd import TAESD

    import nodes as comfy_nodes  # ComfyUI's nodes.py (VAEDecode)

    vae = make_taesd_vae(2)
    assert isinstance(vae.first_stage_model, TAESD)
    latent = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    (decoded,) = comfy_nodes.VAEDecode().decode(vae, {"samples": latent})
    assert decoded.shape == (3, 64, 64, 3)
    assert torch.equal(decoded, vae.decode(latent))  # the stock node's path is VAE.decode
    assert not torch.allclose(decoded[0], decoded[1])  # batch items stay distinct
