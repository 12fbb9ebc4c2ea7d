"""Tiny diffusion models as quantized ``.safetensors`` files, in the layouts people download and ComfyUI's stock
loaders (UNETLoader / ``comfy.sd.load_diffusion_model``) detect:

* ``fp8_scaled`` (``write_scaled_fp8``): every Linear weight stored as ``float8_e4m3fn`` divided by its per-tensor
  ``scale_weight`` (float32), ``scale_input`` 1.0, and the ``scaled_fp8`` marker key (an empty tensor of the fp8
  dtype, as ComfyUI's own ``state_dict_for_saving`` writes it). ComfyUI 0.3.75 loads it with ``scaled_fp8_ops``
  (plain fp8 weights, ``convert_weight`` / ``set_weight`` scale them); 0.33 converts it (``convert_old_quants``)
  to its mixed-precision ops: a ``QuantizedTensor`` of layout ``TensorCoreFP8E4M3Layout`` per Linear weight.
* ``comfy_quant`` (``write_comfy_quant``, ComfyUI 0.33+): the Linear weights of the transformer blocks quantized
  by ComfyUI's own ``QuantizedTensor.from_float`` into one of ``QUANT_ALGOS`` (``float8_e4m3fn``,
  ``int8_tensorwise``, ``nvfp4``, ``mxfp8``, ``convrot_w4a4``, ``asym_w4a8_int8``), their tensors under the keys
  the layout's ``state_dict`` names and a ``<layer>.comfy_quant`` JSON key; other weights (embeddings, head: the
  ones detection reads the shapes of) stay float, as in released mixed-precision files, and so do the layers a
  layout refuses by shape (``convrot_w4a4`` and ``asym_w4a8_int8`` take in_features that are multiples of 256 only:
  in the tiny Wan, the second FFN layer of each block).

The model is a tiny random one of ``tiny_models.FAMILIES`` whose detection keeps it tiny (Wan 2.2). For tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tiny_models import make_family_model

FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
COMFY_QUANT_FORMATS = ("float8_e4m3fn", "int8_tensorwise", "nvfp4", "mxfp8", "convrot_w4a4", "asym_w4a8_int8")


def linear_layers(model: torch.nn.Module) -> list[str]:
    """Names (state-dict prefixes) of the Linear layers of a diffusion model, sorted."""
    return sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))


def _save(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    import safetensors.torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def scaled_fp8_state_dict(diffusion_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The diffusion model's state dict with every Linear weight as fp8_scaled files hold it."""
    sd = {k: v.detach().clone() for k, v in diffusion_model.state_dict().items()}
    for layer in linear_layers(diffusion_model):
        w = sd[f"{layer}.weight"].to(torch.float32)
        scale = (w.abs().amax() / FP8_MAX).clamp_min(1e-12)
        sd[f"{layer}.weight"] = (w / scale).to(torch.float8_e4m3fn)
        sd[f"{layer}.scale_weight"] = scale.reshape(())
        sd[f"{layer}.scale_input"] = torch.ones((), dtype=torch.float32)
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return sd


def write_plain(path: Path, kind: str = "wan22", seed: int = 0) -> Path:
    """A tiny random model of ``kind`` as a plain float32 diffusion-model file (UNETLoader's ``weight_dtype``
    ``fp8_e4m3fn`` then stores its weights as plain fp8 tensors)."""
    return _save(path, make_family_model(kind, seed).model.diffusion_model.state_dict())


def write_scaled_fp8(path: Path, kind: str = "wan22", seed: int = 0) -> Path:
    """A tiny random model of ``kind`` as an fp8_scaled diffusion-model file (see the module's docstring)."""
    return _save(path, scaled_fp8_state_dict(make_family_model(kind, seed).model.diffusion_model))


def comfy_quant_available(fmt: str) -> str | None:
    """None when this ComfyUI can build ``fmt`` on the CPU, else why not (no QuantizedTensor layouts before 0.33,
    comfy_kitchen missing, a format it does not list, or a quantization that fails here)."""
    try:
        from comfy.quant_ops import QUANT_ALGOS, QuantizedTensor
    except ImportError as e:
        return f"this ComfyUI has no comfy.quant_ops ({e})"
    import comfy.utils

    if not hasattr(comfy.utils, "convert_old_quants"):
        return "this ComfyUI's loaders read no per-layer comfy_quant keys (0.33+)"
    if fmt not in QUANT_ALGOS:
        return f"this ComfyUI's QUANT_ALGOS has no {fmt} (comfy_kitchen too old?)"
    try:
        QuantizedTensor.from_float(torch.randn(32, 256), QUANT_ALGOS[fmt]["comfy_tensor_layout"]).dequantize()
    except Exception as e:
        return f"{fmt} cannot be built on the CPU here: {type(e).__name__}: {e}"
    return None


def comfy_quant_state_dict(diffusion_model: torch.nn.Module, fmt: str, only: str = "blocks.") -> dict:
    """The diffusion model's state dict with the Linear weights under ``only`` quantized to ``fmt`` by ComfyUI's
    ``QuantizedTensor.from_float`` (round to nearest), as a ``comfy_quant`` file holds them; a layer whose shape the
    layout refuses (``ValueError`` from its block rules) stays float. At least one layer must take the format."""
    from comfy.quant_ops import QUANT_ALGOS, QuantizedTensor

    layout = QUANT_ALGOS[fmt]["comfy_tensor_layout"]
    sd = {k: v.detach().clone() for k, v in diffusion_model.state_dict().items()}
    quantized = 0
    for layer in linear_layers(diffusion_model):
        if not layer.startswith(only):
            continue
        try:
            qt = QuantizedTensor.from_float(sd[f"{layer}.weight"].to(torch.float32), layout)
        except ValueError:
            continue
        del sd[f"{layer}.weight"]
        quantized += 1
        for k, v in qt.state_dict(f"{layer}.weight").items():
            if v.dtype == getattr(torch, "float8_e8m0fnu", None):
                v = v.view(torch.uint8)  # stored as bytes; the loader views them back
            sd[k] = v
        sd[f"{layer}.comfy_quant"] = torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)
    if not quantized:
        raise ValueError(f"{fmt}: no Linear layer under {only!r} has a shape this layout takes")
    return sd


def write_comfy_quant(path: Path, fmt: str, kind: str = "wan22", seed: int = 0) -> Path:
    """A tiny random model of ``kind`` with its block Linear weights in ComfyUI's ``fmt`` layout (0.33+)."""
    return _save(path, comfy_quant_state_dict(make_family_model(kind, seed).model.diffusion_model, fmt))
