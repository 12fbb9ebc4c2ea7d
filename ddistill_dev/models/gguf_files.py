"""Diffusion models as ``.gguf`` files, as city96/ComfyUI-GGUF's ``UnetLoaderGGUF`` reads them (the layout of its
``tools/convert.py`` then a llama.cpp quantization, written here with the ``gguf`` PyPI package): the architecture in
``general.architecture``, the diffusion model's keys without prefix, 1-D, small and high-precision tensors
(``.modulation``) in F32, the rest quantized (Q8_0 by default); a tensor of more than 4 dimensions (Wan's Conv3d
patch embedding) is stored flat in F32 with its shape in ``comfy.gguf.orig_shape.<key>``, which the loader reads
back. Tiny random models for tests (``write_family_gguf``) and full-size random ones for benchmarks
(``write_spec_gguf``: tensors made one at a time on any device, Q8_0 quantized there by ``q8_0``, bit-equal to the
``gguf`` package's own quantizer). Needs ``gguf`` (tests/requirements.txt)."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

import torch

from ..host.comfy_host import PACK_ROOT
from .tiny_models import make_family_model

ARCH = {"wan22": "wan", "wan21": "wan"}  # tiny family kinds ComfyUI's detection keeps tiny from a state dict
SMALL = 1024  # convert.py's QUANTIZATION_THRESHOLD: tensors this small stay F32
HIGH_PRECISION = (".modulation",)  # Wan's nn.Parameters that GGUF keeps in F32 (convert.py keys_hiprec)
Q8_BLOCK = 32
# city96/ComfyUI-GGUF at commit 795e451 (Apache-2.0), the archive the project keeps beside the checkout
PACK_ARCHIVE = "ComfyUI-GGUF-795e451.tar.gz"
PACK_ARCHIVE_SHA256 = "9fdfa050c2ebb8e8cf9ef50eb9844ecd9bdf410b247a4518bcb1924b7e8ca056"
PACK_MODULE = "ComfyUI-GGUF"  # its folder in the archive; the module name ComfyUI's load_custom_node gives it


def pack_archive() -> Path:
    """Where the ComfyUI-GGUF source archive is: ``$DD_GGUF_ARCHIVE``, else ``../shared/comfyui/`` beside the
    checkout (it may be missing: callers check)."""
    return Path(os.environ.get("DD_GGUF_ARCHIVE") or PACK_ROOT.parent / "shared" / "comfyui" / PACK_ARCHIVE)


def extract_pack(dest: Path) -> Path:
    """ComfyUI-GGUF extracted from ``pack_archive()`` (its checksum checked) into ``dest``; its folder."""
    archive = pack_archive()
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != PACK_ARCHIVE_SHA256:
        raise ValueError(f"{archive}: sha256 {digest}, expected {PACK_ARCHIVE_SHA256}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return Path(dest) / PACK_MODULE


def q8_0(t: torch.Tensor):
    """``t`` (last dimension a multiple of 32) as GGML Q8_0 blocks, computed where ``t`` lives: per block of 32 a
    float16 scale d = max|x| / 127 then the 32 values round(x / d) as int8 (ties away from zero); the bytes of the
    ``gguf`` package's ``quants.quantize(x, Q8_0)`` as a uint8 numpy array of shape (..., n / 32 * 34)."""
    x = t.detach().to(torch.float32)
    blocks = x.reshape(-1, Q8_BLOCK)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    y = blocks * inv
    a = y.abs()
    floored = a.floor()
    qs = (torch.sign(y) * (floored + (2 * (a - floored)).floor())).to(torch.int8)
    out = torch.cat([d.to(torch.float16).view(torch.uint8), qs.view(torch.uint8)], dim=1)
    return out.reshape(*x.shape[:-1], x.shape[-1] // Q8_BLOCK * (Q8_BLOCK + 2)).cpu().numpy()


def write_gguf_items(path: Path, items: Iterable[tuple[str, torch.Tensor]], arch: str, qtype: str = "Q8_0") -> Path:
    """Write the (key, tensor) pairs of a diffusion model (keys without ``model.diffusion_model.``, in file order) as a
    GGUF file of architecture ``arch``, quantizing what GGUF quantizes to ``qtype`` (a ``gguf.GGMLQuantizationType``
    name). Q8_0 is quantized on the tensor's own device; the quantized bytes are held until the file is written."""
    import gguf

    quant = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[quant][0]
    f32 = gguf.GGMLQuantizationType.F32
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}"))
    for key, t in items:
        small = t.ndim <= 1 or t.numel() <= SMALL or any(s in key for s in HIGH_PRECISION)
        if t.ndim > 4:  # GGUF holds at most 4 dimensions
            writer.add_array(f"comfy.gguf.orig_shape.{key}", [int(d) for d in t.shape])
            t, small = t.reshape(t.shape[0], -1), True
        qt = f32 if small or t.shape[-1] % block else quant
        if qt == gguf.GGMLQuantizationType.Q8_0:
            data = q8_0(t)
        else:
            data = gguf.quants.quantize(t.detach().to(torch.float32).cpu().numpy(), qt)
        writer.add_tensor(key, data, raw_dtype=qt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_gguf(path: Path, state_dict: dict[str, torch.Tensor], arch: str, qtype: str = "Q8_0") -> Path:
    """``write_gguf_items`` of a state dict, keys sorted."""
    return write_gguf_items(path, sorted(state_dict.items()), arch, qtype)


def write_family_gguf(path: Path, kind: str = "wan22", seed: int = 0, qtype: str = "Q8_0") -> Path:
    """A tiny random model of a family (``tiny_models.FAMILIES``; those in ``ARCH``) as a GGUF file."""
    sd = make_family_model(kind, seed).model.diffusion_model.state_dict()
    return write_gguf(path, sd, ARCH[kind], qtype)


def write_spec_gguf(path: Path, spec: dict, arch: str, seed: int = 0, device="cpu", qtype: str = "Q8_0") -> Path:
    """A full-size random model of ``random_families``' spec (float weights, e.g. a bf16 DiT's) as a GGUF file, each
    tensor made on ``device`` (the values ``random_families.write_spec`` would write with ``seed``) and quantized
    there."""
    from .random_families import make_tensor

    return write_gguf_items(path, ((k, make_tensor(k, t, seed, device)) for k, t in spec.items()), arch, qtype)
