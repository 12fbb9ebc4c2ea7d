"""Tiny diffusion models as ``.gguf`` files, as city96/ComfyUI-GGUF's ``UnetLoaderGGUF`` reads them (the layout of
its ``tools/convert.py`` then a llama.cpp quantization, written here with the ``gguf`` PyPI package): the
architecture in ``general.architecture``, the diffusion model's keys without prefix, 1-D, small and
high-precision tensors (``.modulation``) in F32, the rest quantized (Q8_0 by default); a tensor of more than 4
dimensions (Wan's Conv3d patch embedding) is stored flat in F32 with its shape in ``comfy.gguf.orig_shape.<key>``,
which the loader reads back. For tests; needs ``gguf`` (tests/requirements.txt)."""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_models import make_family_model

ARCH = {"wan22": "wan", "wan21": "wan"}  # tiny family kinds ComfyUI's detection keeps tiny from a state dict
SMALL = 1024  # convert.py's QUANTIZATION_THRESHOLD: tensors this small stay F32
HIGH_PRECISION = (".modulation",)  # Wan's nn.Parameters that GGUF keeps in F32 (convert.py keys_hiprec)


def write_gguf(path: Path, state_dict: dict[str, torch.Tensor], arch: str, qtype: str = "Q8_0") -> Path:
    """Write ``state_dict`` (a diffusion model's, keys without ``model.diffusion_model.``) as a GGUF file of
    architecture ``arch``, quantizing what GGUF quantizes to ``qtype`` (a ``gguf.GGMLQuantizationType`` name)."""
    import gguf

    quant = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[quant][0]
    f32 = gguf.GGMLQuantizationType.F32
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}"))
    for key, t in sorted(state_dict.items()):
        data = t.detach().to(torch.float32).cpu().numpy()
        small = data.ndim <= 1 or data.size <= SMALL or any(s in key for s in HIGH_PRECISION)
        if data.ndim > 4:  # GGUF holds at most 4 dimensions
            writer.add_array(f"comfy.gguf.orig_shape.{key}", [int(d) for d in data.shape])
            data, small = data.reshape(data.shape[0], -1), True
        qt = f32 if small or data.shape[-1] % block else quant
        writer.add_tensor(key, gguf.quants.quantize(data, qt), raw_dtype=qt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_family_gguf(path: Path, kind: str = "wan22", seed: int = 0, qtype: str = "Q8_0") -> Path:
    """A tiny random model of a family (``tiny_models.FAMILIES``; those in ``ARCH``) as a GGUF file."""
    sd = make_family_model(kind, seed).model.diffusion_model.state_dict()
    return write_gguf(path, sd, ARCH[kind], qtype)
