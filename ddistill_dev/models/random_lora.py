"""Random LoRAs over a ComfyUI model's Linear and Conv weights, in the key formats people's files use (kohya
``lora_unet_*.lora_up/lora_down/alpha``, diffusers/PEFT ``unet.*.lora_A/lora_B``), for tests and benchmarks. Load
them as users do: ``comfy.sd.load_lora_for_models`` or, saved with ``save``, the LoraLoaderModelOnly node."""

from __future__ import annotations

from pathlib import Path

import torch

FORMATS = ("kohya", "diffusers")


def lora_targets(model, fmt: str = "kohya") -> dict[str, str]:
    """LoRA name -> model key for every Linear/Conv weight of the diffusion model that ``fmt`` can name."""
    import comfy.lora

    sd = model.state_dict()
    lin_conv = lambda k: k in sd and k.endswith(".weight") and sd[k].ndim in (2, 4)  # noqa: E731
    if fmt == "kohya":
        return {
            "lora_unet_" + k[len("diffusion_model.") : -len(".weight")].replace(".", "_"): k
            for k in sd
            if k.startswith("diffusion_model.") and lin_conv(k)
        }
    if fmt == "diffusers":
        key_map = comfy.lora.model_lora_keys_unet(model, {})
        return {n: k for n, k in key_map.items() if n.startswith("unet.") and lin_conv(k)}
    raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")


def lora_state_dict(
    model,
    rank: int = 4,
    seed: int = 0,
    fmt: str = "kohya",
    scale: float = 0.5,
    dtype: torch.dtype = torch.float32,
    only: str | None = None,
    bias_diff: float = 0.0,
) -> dict[str, torch.Tensor]:
    """A random LoRA for ``model`` (a ComfyUI BaseModel): rank ``rank`` on every Linear and Conv weight (those whose
    model key contains ``only``, if given); its update has about ``scale`` times the spread of a fan-in-scaled
    weight. ``bias_diff`` > 0: also a ``diff_b`` of that spread for each such layer's bias (lightx2v's LoRAs carry
    them; ComfyUI's loader makes a "diff" patch of the bias)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, key in sorted(lora_targets(model, fmt).items()):
        if only is not None and only not in key:
            continue
        w = sd[key]
        fan_in = w[0].numel()
        r = min(rank, w.shape[0], fan_in)
        down = torch.randn((r, *w.shape[1:]), generator=g) * (scale / fan_in**0.5)
        up = torch.randn((w.shape[0], r) + (1, 1) * (w.ndim == 4), generator=g) / r**0.5
        if fmt == "kohya":
            out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = down, up
            out[f"{name}.alpha"] = torch.tensor(float(r))
        else:
            out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = down, up
        bias = sd.get(key[: -len(".weight")] + ".bias") if key.endswith(".weight") else None
        if bias_diff > 0 and bias is not None:
            out[f"{name}.diff_b"] = torch.randn(bias.shape, generator=g) * bias_diff
    return {k: v.to(dtype) if v.ndim else v for k, v in out.items()}


def unmatched_lora(rank: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA whose keys name no weight of any model."""
    g = torch.Generator().manual_seed(seed)
    return {
        "lora_unet_no_such_layer.lora_down.weight": torch.randn(rank, 8, generator=g),
        "lora_unet_no_such_layer.lora_up.weight": torch.randn(8, rank, generator=g),
    }


def save(path: Path, lora: dict[str, torch.Tensor]) -> Path:
    import safetensors.torch

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in lora.items()}, str(path))
    return Path(path)
