"""ddistill_dev/models/random_families.py without writing gigabytes: every file's spec (the keys, shapes and dtypes the
writer streams) is read back by ComfyUI's own detection and loaders as the released file's architecture --
model_config_from_unet for the diffusion models and checkpoints, detect_te_model and load_text_encoder_state_dicts
(on the meta device) for the text encoders, comfy.sd.VAE for the VAEs, comfy.lora for the LoRAs -- and a real
VAE file written by it loads and decodes."""

import json
import logging

import comfy.supported_models
import pytest
import torch

from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.models import random_families as rf

# Krea 2's files need its ComfyUI classes (0.33.0 and later): on an older host their specs cannot be built
KREA2_SKIP = pytest.mark.skipif(
    not hasattr(comfy.supported_models, "Krea2"),
    reason=f"ComfyUI {comfyui_version()} has no Krea 2 model class (Krea 2 files: ComfyUI 0.33.0 or later)",
)


def params(table: dict) -> list:
    """The table's file names as test parameters, the Krea 2 ones skipped on a host without Krea 2."""
    return [pytest.param(n, marks=KREA2_SKIP) if n in rf.KREA2 else n for n in sorted(table)]


DIFFUSION = {  # file: (ComfyUI config class, config the detection must read, parameters in billions)
    "z_image_bf16.safetensors": ("ZImage", rf.ZIMAGE_DIT, 6.15),
    "z_image_turbo_bf16.safetensors": ("ZImage", rf.ZIMAGE_DIT, 6.15),
    "qwen_image_fp8_e4m3fn.safetensors": ("QwenImage", rf.QWEN_IMAGE_DIT, 20.43),
    "flux1-dev.safetensors": ("Flux", rf.FLUX1_DEV, 11.90),
    "flux1-schnell.safetensors": ("FluxSchnell", rf.FLUX1_SCHNELL, 11.89),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": ("WAN21_T2V", rf.WAN22_A14B_T2V, 14.29),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": ("WAN21_T2V", rf.WAN22_A14B_T2V, 14.29),
    "sd3.5_large.safetensors": ("SD3", rf.SD35_LARGE, 8.15),
    "sd3.5_large_turbo.safetensors": ("SD3", rf.SD35_LARGE, 8.15),
    "krea2_raw_bf16.safetensors": ("Krea2", rf.KREA2_DIT, 12.82),
    "krea2_turbo_bf16.safetensors": ("Krea2", rf.KREA2_DIT, 12.82),
}
TEXT = {  # file: (TEModel, CLIPLoader type, ComfyUI's text-encoder class, scaled fp8)
    "qwen_3_4b.safetensors": ("QWEN3_4B", "LUMINA2", "ZImageTEModel_", False),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": ("QWEN25_7B", "QWEN_IMAGE", "QwenImageTEModel_", True),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": ("T5_XXL", "WAN", "WanTEModel", True),
    "clip_l.safetensors": ("CLIP_L", "SD3", "SD3ClipModel_", False),
    "clip_g.safetensors": ("CLIP_G", "SD3", "SD3ClipModel_", False),
    "qwen3vl_4b_fp8_scaled.safetensors": ("QWEN3VL_4B", "KREA2", "Krea2TEModel_", True),
}
VAES = {  # file: (first-stage class, latent channels, latent dims, dtype)
    "ae.safetensors": ("AutoencodingEngine", 16, 2, torch.float32),
    "qwen_image_vae.safetensors": ("WanVAE", 16, 3, torch.bfloat16),
    "wan_2.1_vae.safetensors": ("WanVAE", 16, 3, torch.bfloat16),
}
LORAS = {  # file: (model file it patches, layers patched)
    "Qwen-Image-Lightning-8steps-V1.1.safetensors": ("qwen_image_fp8_e4m3fn.safetensors", 60 * 14),
    "Qwen-Image-Lightning-4steps-V1.0.safetensors": ("qwen_image_fp8_e4m3fn.safetensors", 60 * 14),
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors": (
        "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
        40 * 10,
    ),
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors": (
        "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
        40 * 10,
    ),
    # Krea 2's main blocks: attention q, k, v, gate, out and the SwiGLU's gate, up, down
    "krea2_turbo_lora_rank_64_bf16.safetensors": ("krea2_raw_bf16.safetensors", 28 * 8),
}


def test_every_family_file_is_covered(pack):
    assert set(rf.FILES) == set(DIFFUSION) | set(TEXT) | set(VAES) | set(LORAS)


def _empty(spec, prefix=""):
    """Real (uninitialised, so free) tensors for the loaders that copy them into a model of their own."""
    return {k[len(prefix) :]: torch.empty(t.shape, dtype=t.dtype) for k, t in spec.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", params(DIFFUSION))
def test_diffusion_model_is_what_comfyui_detects(pack, name):
    import comfy.model_detection
    import comfy.utils

    cls, cfg, billions = DIFFUSION[name]
    spec = rf.spec_of(name)
    sd = rf.meta_state_dict(spec)
    checkpoint = rf.FILES[name].kind == "checkpoint"
    prefix = "model.diffusion_model." if checkpoint else ""
    if not checkpoint:  # what UNETLoader does first
        assert comfy.model_detection.unet_prefix_from_state_dict(sd) in ("", "model.")  # no ldm prefix: none stripped
    scaled = "_scaled" in name
    new_quants = hasattr(comfy.utils, "convert_old_quants")  # newer ComfyUI (0.33) converts scaled fp8 first
    sd, metadata = comfy.utils.convert_old_quants(dict(sd), prefix, metadata={}) if new_quants else (dict(sd), None)
    detected = comfy.model_detection.model_config_from_unet(sd, prefix, metadata=metadata)
    assert type(detected).__name__ == cls
    assert {k: detected.unet_config.get(k) for k in cfg} == cfg
    if new_quants:
        quant = getattr(detected, "quant_config", None) or {}
        assert bool(quant) == scaled
        if scaled:  # every Linear of the file in fp8: the per-layer configs ComfyUI made of the old format
            layers = {k: json.loads(bytes(v.tolist())) for k, v in sd.items() if k.endswith(".comfy_quant")}
            assert len(layers) == sum(k.endswith(".scale_weight") for k in spec)
            assert {v["format"] for v in layers.values()} == {"float8_e4m3fn"}
    else:
        assert (detected.scaled_fp8 == torch.float8_e4m3fn) if scaled else detected.scaled_fp8 is None
    weights = {k: t for k, t in spec.items() if k.startswith(prefix) and not k.endswith(("scale_weight", "scaled_fp8"))}
    assert sum(torch.Size(t.shape).numel() for t in weights.values()) == pytest.approx(billions * 1e9, rel=2e-3)
    dtypes = {t.dtype for t in weights.values()}
    assert dtypes == ({torch.float8_e4m3fn, torch.bfloat16} if "fp8" in name else {torch.bfloat16})
    if checkpoint:  # Stability's SD3.5 files: the MMDiT and its 16-channel VAE, no text encoders
        import comfy.sd

        assert {k.split(".")[0] for k in spec} == {"model", "first_stage_model"}
        vae = comfy.sd.VAE(sd=_empty(spec, "first_stage_model."))
        assert type(vae.first_stage_model).__name__ == "AutoencodingEngine" and vae.latent_channels == 16


@pytest.mark.parametrize("name", params(TEXT))
def test_text_encoder_is_what_comfyui_loads(pack, name, caplog):
    import comfy.sd
    import comfy.utils

    te_model, clip_type, cls, scaled = TEXT[name]
    spec = rf.spec_of(name)
    sd = rf.meta_state_dict(spec)
    assert comfy.sd.detect_te_model(sd) == comfy.sd.TEModel[te_model]
    assert ("scaled_fp8" in sd) == scaled and (torch.float8_e4m3fn in {t.dtype for t in spec.values()}) == scaled
    if hasattr(comfy.utils, "convert_old_quants"):  # newer ComfyUI's load_clip converts scaled fp8 first
        sd, _ = comfy.utils.convert_old_quants(sd, model_prefix="", metadata={})
    with caplog.at_level(logging.DEBUG):  # CLIPLoader's path, built on meta: no key missing, none left over
        clip = comfy.sd.load_text_encoder_state_dicts(
            [sd], clip_type=comfy.sd.CLIPType[clip_type], model_options={"initial_device": torch.device("meta")}
        )
    assert type(clip.cond_stage_model).__name__ == cls
    left = caplog.text.replace("clip unexpected: ['spiece_model']", "")  # the tokenizer UMT5 files carry (as released)
    assert "clip missing" not in left and "clip unexpected" not in left
    if scaled:
        assert any(k.endswith((".scale_weight", ".weight_scale")) for k in clip.cond_stage_model.state_dict())


def test_sd3_text_encoders_load_as_a_pair(pack, caplog):
    """DualCLIPLoader / TripleCLIPLoader (type sd3) over clip_l + clip_g."""
    import comfy.sd

    sds = [rf.meta_state_dict(rf.spec_of(n)) for n in ("clip_l.safetensors", "clip_g.safetensors")]
    with caplog.at_level(logging.DEBUG):
        clip = comfy.sd.load_text_encoder_state_dicts(
            sds, clip_type=comfy.sd.CLIPType.SD3, model_options={"initial_device": torch.device("meta")}
        )
    assert {"clip_l", "clip_g"} <= set(dir(clip.cond_stage_model))
    assert "clip missing" not in caplog.text and "clip unexpected" not in caplog.text


@pytest.mark.parametrize("name", params(VAES))
def test_vae_is_what_comfyui_detects(pack, name, caplog):
    import comfy.sd

    cls, channels, dims, dtype = VAES[name]
    spec = rf.spec_of(name)
    assert {t.dtype for t in spec.values()} == {dtype}
    with caplog.at_level(logging.DEBUG):
        vae = comfy.sd.VAE(sd=_empty(spec))
    assert type(vae.first_stage_model).__name__ == cls
    assert (vae.latent_channels, vae.latent_dim) == (channels, dims)
    assert "Missing VAE keys" not in caplog.text and "Leftover VAE keys" not in caplog.text


@pytest.mark.parametrize("name", params(LORAS))
def test_lora_patches_every_block_linear(pack, name, caplog):
    import comfy.lora

    model_file, layers = LORAS[name]
    detected_cls, cfg, _ = DIFFUSION[model_file]
    model = rf.diffusion_model(detected_cls, cfg)
    lora = rf.meta_state_dict(rf.spec_of(name))
    with caplog.at_level(logging.WARNING):
        patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model, {}))
    assert "lora key not loaded" not in caplog.text
    assert len(patches) == layers
    sd = model.state_dict()
    for key in patches:
        assert sd[key].ndim == 2 and key.startswith("diffusion_model.")
    ranks = {t.shape[0] for k, t in lora.items() if k.endswith(("lora_A.weight", "lora_down.weight"))}
    assert ranks == {rf.LORA_RANK}


def test_written_file_reads_back_and_vae_decodes(pack, tmp_path):
    """A real write on the CPU: ae.safetensors (84 M parameters, fp32) loads through ComfyUI and decodes; a small
    mixed spec (bf16, scaled fp8, scalars, bytes) reads back byte for byte."""
    import comfy.sd
    import comfy.utils
    import safetensors.torch

    path = tmp_path / "ae.safetensors"
    size = rf.write(path, seed=1, log=lambda _: None)
    assert size == pytest.approx(rf.spec_bytes(rf.spec_of("ae.safetensors")), abs=64 * 1024)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(path)))
    image = vae.decode(torch.randn(1, 16, 8, 8)).detach()
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all() and float(image.std()) > 0.0

    lin = torch.nn.Linear(64, 32, device="meta")
    spec = rf.module_spec(lin, torch.bfloat16, prefix="m.", fp8=lambda k: True, scaled=True)
    spec["tok"] = rf.TensorSpec((5,), torch.uint8, "bytes", data=b"abcde")
    rf.write_spec(tmp_path / "mixed.safetensors", spec, seed=2)
    back = safetensors.torch.load_file(str(tmp_path / "mixed.safetensors"))
    assert list(back) == sorted(spec) or set(back) == set(spec)
    for k, t in spec.items():
        assert back[k].dtype == t.dtype and tuple(back[k].shape) == t.shape
        a, b = back[k].reshape(-1), rf.make_tensor(k, t, 2, "cpu").reshape(-1)
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    w = back["m.weight"].float() * back["m.scale_weight"]
    assert w.std().item() == pytest.approx(1 / 64**0.5, rel=0.1) and torch.isfinite(w).all()
    assert bytes(back["tok"].tolist()) == b"abcde" and back["m.bias"].abs().sum() == 0
