"""Pure helpers of the LoRA-pair path (``nodes/lora_pair.py``): which patches two clones share, how far apart two
results are, memory in words. No ComfyUI here."""

from __future__ import annotations

from collections.abc import Container, Sequence

import torch


def shared_prefix(a: Sequence, b: Sequence) -> int:
    """How many leading entries two patch lists share, by identity: ComfyUI's clones copy the list of a key but keep
    its entries (``ModelPatcher.clone``), so a LoRA applied before the split appears as the same objects on both
    sides. Entries equal in value but loaded twice count as different (they are then recomputed, still exactly)."""
    n = 0
    for x, y in zip(a, b):
        if x is not y:
            break
        n += 1
    return n


def patch_lists_equal(a: Sequence, b: Sequence) -> bool:
    return len(a) == len(b) and shared_prefix(a, b) == len(a)


def differing_keys(base: dict, distilled: dict) -> list[str]:
    """The weight keys whose patch lists differ between two clones (in either direction), sorted."""
    keys = set(base) | set(distilled)
    return sorted(k for k in keys if not patch_lists_equal(base.get(k, ()), distilled.get(k, ())))


def sibling_keys(differing: Sequence[str], patched: Container[str]) -> list[str]:
    """The ``weight`` / ``bias`` keys of the layers of ``differing`` keys that are in ``patched`` (the keys of the
    patch dict of either clone, alike on both sides for these; or more, e.g. every parameter of those layers) but do
    not differ themselves, sorted."""
    differ = set(differing)
    layers = {k.rsplit(".", 1)[0] for k in differing if k.rsplit(".", 1)[-1] in ("weight", "bias") and "." in k}
    return sorted(
        f"{p}.{n}" for p in layers for n in ("weight", "bias") if f"{p}.{n}" in patched and f"{p}.{n}" not in differ
    )


def own_patch_list(patches) -> bool:
    """Whether a tensor's own ``patches`` are in the form its layers apply at each forward (ComfyUI-GGUF's
    ``GGMLTensor``: a list of (patch list, weight key) pairs, the patch list in ComfyUI's format), so that the base
    weight is presented exactly by giving the tensor the base MODEL's patch list for the forward."""
    return isinstance(patches, list) and all(
        isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], (list, tuple)) and isinstance(e[1], str)
        for e in patches
    )


def stored_packed(t: torch.Tensor) -> bool:
    """Whether a tensor stores its weight as packed data rather than as its values: an integer or byte dtype, or a
    stored shape other than the logical ``tensor_shape`` it declares (ComfyUI-GGUF's quantized and BF16 tensors;
    its F16 / F32 tensors hold their values)."""
    shape = getattr(t, "tensor_shape", None)
    return not t.dtype.is_floating_point or (shape is not None and tuple(shape) != tuple(t.shape))


def carries_own_patches(p: torch.Tensor, merged: bool) -> bool:
    """Whether a loaded parameter carries its own patches (ComfyUI-GGUF's quantized weights: its ModelPatcher gives
    the tensor the MODEL's patch list, its layers apply it at each forward). A tensor with such a list that its
    ModelPatcher merged instead (``merged``: its original in the backup; GGUF's F16 / F32 tensors) is an ordinary
    weight; one not patched now (an empty list, no backup) carries its patches only if it stores packed data."""
    patches = getattr(p, "patches", None)
    if merged or not own_patch_list(patches):
        return False
    return bool(patches) or stored_packed(p)


def foreign_weight(t: torch.Tensor, known: tuple[type, ...] = ()) -> str | None:
    """What keeps a weight from being presented exactly, judged by what the weight is; None for a plain
    ``torch.Tensor`` / ``nn.Parameter`` (any dtype: fp32, fp16, bf16, fp8), whose patches live in the ModelPatcher,
    for an instance of a ``known`` tensor subclass (the caller's: ComfyUI's ``QuantizedTensor`` in a layer that
    converts and sets its weight itself) and for a tensor that carries its own patches as (patch list, key) pairs
    (``own_patch_list``: ComfyUI-GGUF's ``GGMLTensor``, patches applied by its layers at each forward from the
    quantized data). A tensor carrying patches in another form, or any other tensor subclass (a quantized layout the
    caller does not know), is described: its class and the package that defines it."""
    kind = type(t)
    name = f"{kind.__name__} tensors ({kind.__module__.split('.')[0]})"
    if hasattr(t, "patches"):
        return None if own_patch_list(t.patches) else f"its weights are {name} carrying patches in an unknown form"
    if known and isinstance(t, known):
        return None
    if kind is not torch.Tensor and kind is not torch.nn.Parameter:
        return f"its weights are {name}, a tensor subclass (a quantized layout) that the pack cannot present exactly"
    return None


def difference(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Max absolute difference of two results, and the same relative to the reference's RMS (the README's bound)."""
    x64, r64 = x.detach().double().cpu(), ref.detach().double().cpu()
    max_abs = float((x64 - r64).abs().max()) if x64.numel() else 0.0
    rms = float(r64.pow(2).mean().sqrt()) if r64.numel() else 0.0
    return {"max_abs": max_abs, "rms": rms, "relative": max_abs / rms if rms > 0 else 0.0}


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**29 else f"{nbytes / 2**20:.1f} MiB"
