"""scripts/gpu_workflows.py on CPU, where it can be checked without writing gigabytes: its full-size architecture
configs are what ComfyUI's own model detection reads back from such a state dict (built on the meta device), its
LoRA writer patches every attention projection through ComfyUI's LoRA loader, and its VAE loads and decodes."""

import pytest
import torch

from ddistill_dev import gpu_workflows as gw
from ddistill_dev import tiny_models


@pytest.mark.parametrize("kind", ["SDXL", "SD20", "PixArtAlpha"])
def test_full_size_configs_are_what_comfyui_detects(pack, kind):
    import comfy.model_detection
    import comfy.supported_models as sm

    cls, cfg = {
        "SDXL": (sm.SDXL, gw.SDXL_UNET),
        "SD20": (sm.SD20, gw.SD21_UNET),
        "PixArtAlpha": (sm.PixArtAlpha, gw.PIXART_1024),
    }[kind]
    model = cls(dict(cfg)).get_model({}, device="meta")
    sd = dict(model.diffusion_model.state_dict())
    if kind == "PixArtAlpha":  # a diffusion-model file (UNETLoader): no prefix, plus the released file's buffers
        sd.update(gw.pixart_extra_keys())
        prefix = ""
    else:  # inside a checkpoint
        sd, prefix = {"model.diffusion_model." + k: v for k, v in sd.items()}, "model.diffusion_model."
    detected = comfy.model_detection.model_config_from_unet(sd, prefix)
    assert type(detected).__name__ == kind
    assert {k: detected.unet_config.get(k) for k in cfg} == cfg
    params = sum(v.numel() for k, v in sd.items() if k != "pos_embed")
    assert params == pytest.approx({"SDXL": 2.567e9, "SD20": 0.866e9, "PixArtAlpha": 0.612e9}[kind], rel=1e-3)


def test_lora_file_patches_every_attention_projection(pack, tmp_path):
    import comfy.lora
    import comfy.sd
    import comfy.utils

    model = tiny_models.make_model("sdxl", 0)
    gw.write_lora(tmp_path / "lora.safetensors", model, seed=1)
    lora = comfy.utils.load_torch_file(str(tmp_path / "lora.safetensors"))
    patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model.model, {}))
    attention = [k for k, v in model.model.state_dict().items() if ".attn" in k and ".to_" in k and v.ndim == 2]
    assert sorted(patches) == sorted(attention) and len(lora) == 3 * len(attention)
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0.0)
    key = attention[0]
    before = model.model.state_dict()[key].clone()
    patched.patch_model()
    try:
        assert not torch.equal(patched.model.state_dict()[key], before)
    finally:
        patched.unpatch_model()


def test_vae_file_loads_and_decodes(pack, tmp_path):
    import comfy.sd
    import comfy.utils

    gw.write_vae(tmp_path / "vae.safetensors", seed=3)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(tmp_path / "vae.safetensors")))
    image = vae.decode(torch.randn(1, 4, 8, 8)).detach()
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.0
