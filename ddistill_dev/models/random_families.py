"""Full-size random-weight model files of the 2025-26 families (Z-Image, Qwen-Image, FLUX.1, Wan 2.2 A14B, SD3.5
Large, Krea 2, their text encoders, VAEs and distillation LoRAs) under the names of the released files, for
``gpu_workflows.py``. The Krea 2 files need ComfyUI 0.33.0 or later (its model and text-encoder classes; ``KREA2``).

Each file is first a *spec*: an ordered ``{key: TensorSpec}`` read off ComfyUI's own model class built on the
``meta`` device (so the keys and shapes are exactly what ComfyUI's loaders expect, and nothing is allocated), with
the released file's dtypes (bf16 / fp16 / fp32; ``float8_e4m3fn`` for the Linear weights of the ``*fp8*`` files,
with ComfyUI's ``scaled_fp8`` marker and per-layer ``scale_weight`` in the ``*_scaled`` ones). ``write`` then
streams the spec into a safetensors file tensor by tensor (random values made on the GPU when there is one,
fan-in scaled as ``random_checkpoints.randomize`` does), so memory stays at one tensor whatever the model's size.
``tests/integration/families/test_random_families.py`` checks each spec against ComfyUI's own detection.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .random_checkpoints import VAE_DDCONFIG, ZIMAGE_DIT

# The full-size configs as ComfyUI's model detection (comfy/model_detection.py) reads them from the released files.
FLUX1 = {
    "image_model": "flux",
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 768,
    "context_in_dim": 4096,
    "hidden_size": 3072,
    "mlp_ratio": 4.0,
    "num_heads": 24,
    "depth": 19,
    "depth_single_blocks": 38,
    "axes_dim": [16, 56, 56],
    "theta": 10000,
    "qkv_bias": True,
    "patch_size": 2,
}
FLUX1_DEV = {**FLUX1, "guidance_embed": True}
FLUX1_SCHNELL = {**FLUX1, "guidance_embed": False}
QWEN_IMAGE_DIT = {"image_model": "qwen_image", "in_channels": 64, "num_layers": 60}  # the rest: the class's defaults
WAN22_A14B_T2V = {  # each of the two experts; ComfyUI detects them as WAN21_T2V (the 5B TI2V is its WAN22_T2V)
    "image_model": "wan2.1",
    "model_type": "t2v",
    "dim": 5120,
    "out_dim": 16,
    "num_heads": 40,
    "ffn_dim": 13824,
    "num_layers": 40,
    "patch_size": (1, 2, 2),
    "freq_dim": 256,
    "window_size": (-1, -1),
    "qk_norm": True,
    "cross_attn_norm": True,
    "eps": 1e-6,
    "in_dim": 16,
}
SD35_LARGE = {
    "in_channels": 16,
    "out_channels": 16,
    "patch_size": 2,
    "depth": 38,
    "input_size": None,
    "adm_in_channels": 2048,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 2432}},
    "num_patches": 36864,
    "pos_embed_max_size": 192,
    "qk_norm": "rms",
    "pos_embed_scaling_factor": None,
    "x_block_self_attn_layers": [],
}
# Krea 2 RAW / Turbo (12.9 B): ComfyUI 0.33's detection reads all of these from the file (comfy/model_detection.py).
KREA2_DIT = {
    "image_model": "krea2",
    "features": 6144,
    "channels": 16,
    "patch": 2,
    "layers": 28,
    "heads": 48,
    "kvheads": 12,
    "txtlayers": 12,
    "txtdim": 2560,
}
# The 16-channel KL VAE of FLUX.1 / Z-Image (ae.safetensors) and SD3 (inside its checkpoints): no quant convs.
VAE16_DDCONFIG = {**VAE_DDCONFIG, "z_channels": 16}
# Wan 2.1's causal video VAE (wan_2.1_vae.safetensors); Qwen-Image's VAE has the same architecture.
WAN_VAE = {
    "dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
}
LORA_RANK = 64
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
FP8_SPREAD = 8.0  # scaled fp8: the scale maps 8 standard deviations of a weight to fp8's largest value
_ST_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    FP8: "F8_E4M3",
    torch.uint8: "U8",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a file: shape, dtype and how to fill it (``normal``: N(0, std), clamped to fp8's range for fp8;
    ``const``: every element ``value``; ``bytes``: ``data`` as uint8)."""

    shape: tuple
    dtype: torch.dtype
    init: str = "normal"
    std: float = 0.0
    value: float = 0.0
    data: bytes | None = None

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


Spec = dict  # ordered {key: TensorSpec}


@dataclass(frozen=True)
class FamilyFile:
    """A released file this module writes: what it is and how its spec is built."""

    kind: str  # "diffusion_model", "checkpoint", "text_encoder", "vae", "lora"
    family: str
    build: Callable[[], Spec]
    note: str = ""


# ------------------------------------------------------------------------------------------------- spec builders
def _init_of(key: str, shape: tuple) -> tuple[str, float]:
    """randomize()'s rule: fan-in-scaled normal for matrices and kernels, ones for scales, zeros for biases."""
    if key.endswith("gamma") or (len(shape) <= 1 and key.endswith(("weight", "scale"))):
        return "const", 1.0
    if len(shape) <= 1:
        return "const", 0.0
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    return "normal", 1.0 / fan_in**0.5


def module_spec(
    module: torch.nn.Module,
    dtype: torch.dtype,
    prefix: str = "",
    fp8: Callable[[str], bool] | None = None,
    scaled: bool = False,
    marker: int = 2,
) -> Spec:
    """The spec of a module's state dict (built on ``meta``): ``dtype`` throughout, fp8 for the weights of the Linear
    layers ``fp8(key)`` selects (with a ``scale_weight`` each and ComfyUI's ``scaled_fp8`` marker of ``marker``
    elements if ``scaled``: 2 asks for full-precision matmuls; the text encoders' classes hold an empty one)."""
    linear = {f"{name}.weight".lstrip(".") for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    spec: Spec = {}
    for key, t in module.state_dict().items():
        shape = tuple(t.shape)
        init, x = _init_of(key, shape)
        quant = fp8 is not None and key in linear and fp8(key)
        if not quant:
            spec[prefix + key] = TensorSpec(shape, dtype, init, std=x if init == "normal" else 0.0, value=x)
        elif not scaled:
            spec[prefix + key] = TensorSpec(shape, FP8, "normal", std=x)
        else:  # stored = weight / scale, with the scale that puts FP8_SPREAD standard deviations at fp8's maximum
            scale = FP8_SPREAD * x / FP8_MAX
            spec[prefix + key] = TensorSpec(shape, FP8, "normal", std=FP8_MAX / FP8_SPREAD)
            spec[prefix + key[: -len("weight")] + "scale_weight"] = TensorSpec((), torch.float32, "const", value=scale)
    if scaled:
        spec[prefix + "scaled_fp8"] = TensorSpec((marker,), FP8, "const", value=0.0)
    return spec


def diffusion_model(config_name: str, unet_config: dict):
    """ComfyUI's diffusion model of ``supported_models.<config_name>`` with ``unet_config``, on meta."""
    import comfy.supported_models as sm

    if not hasattr(sm, config_name):
        raise RuntimeError(f"this ComfyUI has no {config_name} model class (Krea 2: ComfyUI 0.33.0 or later)")
    cfg = dict(unet_config)
    if cfg.get("image_model") == "flux":
        import comfy.ldm.flux.model

        if "txt_ids_dims" in comfy.ldm.flux.model.FluxParams.__dataclass_fields__:  # newer ComfyUI (0.33: FLUX.1 = [])
            cfg["txt_ids_dims"] = []
    return getattr(sm, config_name)(cfg).get_model({}, device="meta")


def _dit(config_name: str, unet_config: dict, fp8=None, scaled=False) -> Callable[[], Spec]:
    return lambda: module_spec(
        diffusion_model(config_name, unet_config).diffusion_model, torch.bfloat16, fp8=fp8, scaled=scaled
    )


def vae16_module():
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    dd = dict(VAE16_DDCONFIG)
    with torch.device("meta"):
        return AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": dd},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": dd},
        )


def wan_vae_module():
    import comfy.ldm.wan.vae

    with torch.device("meta"):
        return comfy.ldm.wan.vae.WanVAE(**WAN_VAE)


def _sd35_checkpoint() -> Spec:
    """Stability's SD3.5 Large file: the MMDiT and its VAE, no text encoders (bf16)."""
    dit = diffusion_model("SD3", SD35_LARGE).diffusion_model
    spec = module_spec(dit, torch.bfloat16, prefix="model.diffusion_model.")
    spec.update(module_spec(vae16_module(), torch.bfloat16, prefix="first_stage_model."))
    return spec


def text_encoder_module(name: str):
    """The transformer of ComfyUI's text-encoder class for ``name`` (its state dict is what the file holds)."""
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.text_encoders.qwen_image
    import comfy.text_encoders.wan
    import comfy.text_encoders.z_image

    if name == "qwen3vl_4b":  # Krea 2's encoder: Qwen3-VL-4B with its vision tower (ComfyUI 0.33+)
        try:
            import comfy.text_encoders.krea2
        except ImportError as e:
            raise RuntimeError(f"this ComfyUI has no Krea 2 text encoder (ComfyUI 0.33.0 or later): {e}") from None

        return comfy.text_encoders.krea2.Krea2Qwen3VLClipModel(
            device=torch.device("meta"), dtype=torch.bfloat16
        ).transformer
    cls = {
        "qwen3_4b": comfy.text_encoders.z_image.Qwen3_4BModel,
        "qwen25_7b": comfy.text_encoders.qwen_image.Qwen25_7BVLIModel,
        "umt5_xxl": comfy.text_encoders.wan.UMT5XXlModel,
        "clip_l": comfy.sd1_clip.SDClipModel,
        "clip_g": comfy.sdxl_clip.SDXLClipG,
    }[name]
    return cls(device=torch.device("meta"), dtype=torch.bfloat16).transformer


def spiece_model() -> bytes:
    """A SentencePiece model to stand in for UMT5's (the released umt5 files carry theirs as ``spiece_model``; ComfyUI
    ships none): ComfyUI's own T5-pile tokenizer, 32k pieces, all ids inside UMT5's 256k vocabulary."""
    import comfy.text_encoders.wan

    return (Path(comfy.text_encoders.wan.__file__).parent / "t5_pile_tokenizer" / "tokenizer.model").read_bytes()


# Qwen3-VL files keep the Hugging Face layout, which ComfyUI's loader maps back to its modules' names.
HF_QWEN3VL = (("model.", "model.language_model."), ("visual.", "model.visual."))


def _te(name: str, dtype: torch.dtype, scaled_fp8: bool = False) -> Callable[[], Spec]:
    def build() -> Spec:
        fp8 = (_language_model if name == "qwen3vl_4b" else _all) if scaled_fp8 else None
        spec = module_spec(text_encoder_module(name), dtype, fp8=fp8, scaled=scaled_fp8, marker=0)
        if name == "umt5_xxl":
            data = spiece_model()
            spec["spiece_model"] = TensorSpec((len(data),), torch.uint8, "bytes", data=data)
        if name == "qwen3vl_4b":
            spec = {_renamed(k, HF_QWEN3VL): t for k, t in spec.items()}
        return spec

    return build


def _renamed(key: str, prefixes) -> str:
    return next((new + key[len(old) :] for old, new in prefixes if key.startswith(old)), key)


def lora_spec(model, fmt: str, only: str, rank: int = LORA_RANK, dtype=torch.bfloat16) -> Spec:
    """A rank-``rank`` LoRA over every Linear weight of ``model`` (a ComfyUI BaseModel on meta) under ``only``:
    ``fmt`` "diffusers" (``transformer_blocks.N.<path>.lora_A/lora_B.weight``, as Qwen-Image-Lightning), "comfy"
    (``diffusion_model.<path>.lora_down/lora_up.weight`` + ``alpha``, as the lightx2v Wan 2.2 LoRAs ComfyUI ships) or
    "peft" (``diffusion_model.<path>.lora_A/lora_B.weight``, no alpha: Krea 2's ComfyUI LoRAs, krea-ai/krea-2
    ``docs/lora_conversion.md``). Its update is small (up ~ N(0, 1e-3 / rank))."""
    dm = model.diffusion_model
    spec: Spec = {}
    shapes = {k: tuple(v.shape) for k, v in dm.state_dict().items()}
    for name, m in dm.named_modules():
        if not isinstance(m, torch.nn.Linear) or not name.startswith(only):
            continue
        n_out, n_in = shapes[f"{name}.weight"]
        down = TensorSpec((rank, n_in), dtype, "normal", std=1.0 / n_in**0.5)
        up = TensorSpec((n_out, rank), dtype, "normal", std=1e-3 / rank)
        if fmt == "diffusers":
            spec[f"{name}.lora_A.weight"], spec[f"{name}.lora_B.weight"] = down, up
        elif fmt == "peft":
            spec[f"diffusion_model.{name}.lora_A.weight"], spec[f"diffusion_model.{name}.lora_B.weight"] = down, up
        else:
            base = f"diffusion_model.{name}"
            spec[f"{base}.lora_down.weight"], spec[f"{base}.lora_up.weight"] = down, up
            spec[f"{base}.alpha"] = TensorSpec((), dtype, "const", value=float(rank))
    return spec


def _fp8_blocks(key: str) -> bool:
    return key.startswith("transformer_blocks.")


def _all(key: str) -> bool:
    return True


def _language_model(key: str) -> bool:
    """The language model's Linear layers, not the vision tower's (Comfy-Org's qwen3vl_4b_fp8_scaled: 5.24 GB)."""
    return key.startswith("model.")


FILES: dict[str, FamilyFile] = {
    # diffusion_models (UNETLoader)
    "z_image_bf16.safetensors": FamilyFile("diffusion_model", "Z-Image", _dit("ZImage", ZIMAGE_DIT)),
    "z_image_turbo_bf16.safetensors": FamilyFile("diffusion_model", "Z-Image", _dit("ZImage", ZIMAGE_DIT)),
    "qwen_image_fp8_e4m3fn.safetensors": FamilyFile(
        "diffusion_model", "Qwen-Image", _dit("QwenImage", QWEN_IMAGE_DIT, fp8=_fp8_blocks), "fp8 block matrices"
    ),
    "flux1-dev.safetensors": FamilyFile("diffusion_model", "FLUX.1", _dit("Flux", FLUX1_DEV)),
    "flux1-schnell.safetensors": FamilyFile("diffusion_model", "FLUX.1", _dit("FluxSchnell", FLUX1_SCHNELL)),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": FamilyFile(
        "diffusion_model", "Wan 2.2", _dit("WAN21_T2V", WAN22_A14B_T2V, fp8=_all, scaled=True), "scaled fp8"
    ),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": FamilyFile(
        "diffusion_model", "Wan 2.2", _dit("WAN21_T2V", WAN22_A14B_T2V, fp8=_all, scaled=True), "scaled fp8"
    ),
    # checkpoints (CheckpointLoaderSimple): MMDiT + VAE
    "sd3.5_large.safetensors": FamilyFile("checkpoint", "SD3.5", _sd35_checkpoint),
    "sd3.5_large_turbo.safetensors": FamilyFile("checkpoint", "SD3.5", _sd35_checkpoint),
    # text_encoders (CLIPLoader / DualCLIPLoader / TripleCLIPLoader)
    "qwen_3_4b.safetensors": FamilyFile("text_encoder", "lumina2", _te("qwen3_4b", torch.bfloat16)),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": FamilyFile(
        "text_encoder", "qwen_image", _te("qwen25_7b", torch.bfloat16, scaled_fp8=True), "with the vision tower"
    ),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": FamilyFile(
        "text_encoder", "wan", _te("umt5_xxl", torch.bfloat16, scaled_fp8=True), "stand-in tokenizer"
    ),
    "clip_l.safetensors": FamilyFile("text_encoder", "sd3", _te("clip_l", torch.float16)),
    "clip_g.safetensors": FamilyFile("text_encoder", "sd3", _te("clip_g", torch.float16)),
    # vae (VAELoader)
    "ae.safetensors": FamilyFile("vae", "FLUX.1", lambda: module_spec(vae16_module(), torch.float32)),
    "qwen_image_vae.safetensors": FamilyFile(
        "vae", "Qwen-Image", lambda: module_spec(wan_vae_module(), torch.bfloat16)
    ),
    "wan_2.1_vae.safetensors": FamilyFile("vae", "Wan 2.2", lambda: module_spec(wan_vae_module(), torch.bfloat16)),
    # loras (LoraLoaderModelOnly)
    "Qwen-Image-Lightning-8steps-V1.1.safetensors": FamilyFile(
        "lora",
        "Qwen-Image",
        lambda: lora_spec(diffusion_model("QwenImage", QWEN_IMAGE_DIT), "diffusers", "transformer_blocks."),
    ),
    "Qwen-Image-Lightning-4steps-V1.0.safetensors": FamilyFile(
        "lora",
        "Qwen-Image",
        lambda: lora_spec(diffusion_model("QwenImage", QWEN_IMAGE_DIT), "diffusers", "transformer_blocks."),
    ),
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors": FamilyFile(
        "lora", "Wan 2.2", lambda: lora_spec(diffusion_model("WAN21_T2V", WAN22_A14B_T2V), "comfy", "blocks.")
    ),
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors": FamilyFile(
        "lora", "Wan 2.2", lambda: lora_spec(diffusion_model("WAN21_T2V", WAN22_A14B_T2V), "comfy", "blocks.")
    ),
}
# Krea 2 (Comfy-Org/Krea-2's names): ComfyUI 0.33+ only, the spec builders need its Krea 2 classes.
KREA2 = {
    "krea2_raw_bf16.safetensors": FamilyFile("diffusion_model", "Krea 2", _dit("Krea2", KREA2_DIT)),
    "krea2_turbo_bf16.safetensors": FamilyFile("diffusion_model", "Krea 2", _dit("Krea2", KREA2_DIT)),
    "krea2_turbo_lora_rank_64_bf16.safetensors": FamilyFile(
        "lora", "Krea 2", lambda: lora_spec(diffusion_model("Krea2", KREA2_DIT), "peft", "blocks."), "PEFT keys"
    ),
    "qwen3vl_4b_fp8_scaled.safetensors": FamilyFile(
        "text_encoder", "krea2", _te("qwen3vl_4b", torch.bfloat16, scaled_fp8=True), "HF layout, vision tower"
    ),
}
FILES.update(KREA2)


def spec_of(name: str) -> Spec:
    return FILES[name].build()


def spec_bytes(spec: Spec) -> int:
    return sum(t.nbytes for t in spec.values())


def meta_state_dict(spec: Spec) -> dict[str, torch.Tensor]:
    """The spec as a state dict of meta tensors (what detection reads: keys, shapes, dtypes); the few a loader reads
    the values of are real: LoRA alphas, the scaled-fp8 marker, the tokenizer."""
    out = {}
    for k, t in spec.items():
        if t.init == "bytes":
            out[k] = torch.frombuffer(bytearray(t.data), dtype=torch.uint8)
        elif t.init == "const" and k.endswith((".alpha", "scaled_fp8")):
            out[k] = torch.full(t.shape, t.value, dtype=torch.float32).to(t.dtype)
        else:
            out[k] = torch.empty(t.shape, dtype=t.dtype, device="meta")
    return out


# ------------------------------------------------------------------------------------------------------- writing
def make_tensor(key: str, t: TensorSpec, seed: int, device) -> torch.Tensor:
    """The tensor of ``t`` on ``device`` (deterministic in ``seed`` and ``key``)."""
    if t.init == "bytes":
        return torch.frombuffer(bytearray(t.data), dtype=torch.uint8)
    if t.init == "const":
        return torch.full(t.shape, t.value, dtype=torch.float32, device=device).to(t.dtype)
    g = torch.Generator(device=device).manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**63)
    x = torch.randn(t.shape, generator=g, device=device, dtype=torch.float32).mul_(t.std)
    if t.dtype == FP8:
        x.clamp_(-FP8_MAX, FP8_MAX)
    return x.to(t.dtype)


def write_spec(path: Path, spec: Spec, seed: int, device="cpu", metadata: dict | None = None) -> int:
    """Stream ``spec`` into a safetensors file at ``path`` (header first, then each tensor as it is made);
    returns the file's size."""
    header, offset = {}, 0
    for k, t in spec.items():
        header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for k, t in spec.items():
            x = make_tensor(k, t, seed, device).contiguous().cpu()
            if x.numel():
                f.write(x.reshape(-1).view(torch.uint8).numpy())
    tmp.replace(path)
    return path.stat().st_size


def write(path: Path, name: str | None = None, seed: int = 0, device="cpu", log=print) -> int:
    """Write the family file ``name`` (default: ``path``'s name) to ``path``; returns its size in bytes."""
    name = name or Path(path).name
    t0 = time.time()
    spec = spec_of(name)
    size = write_spec(
        path, spec, seed, device, {"ddistill": f"random weights, {FILES[name].family} {FILES[name].kind}"}
    )
    log(f"wrote {path} ({size / 2**30:.2f} GiB, {len(spec)} tensors, {time.time() - t0:.0f} s)")
    return size
