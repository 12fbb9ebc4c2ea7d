"""The weights of a LoRA pair (``lora_pair``): which weights differ and how each one's base version is made the way
ComfyUI patches a weight (``WeightKey.exact_base``: ``comfy.lora.calculate_weight`` on the original, a converted
weight through its layer's own ``convert_<name>`` / ``set_<name>``), and the weight function (the kind ComfyUI's
``LowVramPatch`` is) that makes it per layer at forward time (``BaseWeight``), exactly from the original or as
W_merged - dW_distilled + dW_base for additive patches. Patch tuples are ComfyUI's: (strength, value,
strength_model, offset, function)."""

from __future__ import annotations

import contextlib
import functools
import inspect

import comfy.float
import comfy.lora
import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import comfy.weight_adapter
import torch

from ..ddistill.lora_maths import carries_own_patches, shared_prefix


def layer_weight(model, key: str):
    """(layer, parameter name, the layer's ``convert_<name>``, its ``set_<name>``) of weight ``key``. A layer with
    either function stores the weight converted (fp8_scaled, ComfyUI's QuantizedTensor layouts) and ComfyUI patches
    it through them (``comfy.model_patcher.get_key_weight``); a parameter of the model itself has neither."""
    path, name = key.rsplit(".", 1) if "." in key else ("", key)
    if not path:
        return model, name, None, None
    module = comfy.utils.get_attr(model, path)
    return module, name, getattr(module, f"convert_{name}", None), getattr(module, f"set_{name}", None)


@functools.cache
def quantized_classes() -> tuple[type, ...]:
    """The tensor subclass of ComfyUI's quantized layouts (``comfy.quant_ops.QuantizedTensor``: ComfyUI 0.33's
    mixed-precision layers, also in 0.3.75), whose layers convert and set their weights themselves (``convert_weight``
    dequantizes, ``set_weight`` quantizes): a weight the pair presents exactly through those functions."""
    try:
        from comfy.quant_ops import QuantizedTensor
    except ImportError:
        return ()
    return (QuantizedTensor,) if isinstance(QuantizedTensor, type) and issubclass(QuantizedTensor, torch.Tensor) else ()


def returns_weight(set_func) -> bool:
    """Whether a layer's ``set_<name>`` (if any) can hand back the weight it would store without storing it
    (``return_weight=True``, as ComfyUI's ``LowVramPatch`` and ``patch_weight_to_device(return_weight=True)`` call
    it): how the pair makes a base copy in the stored format."""
    if set_func is None:
        return True
    try:
        return "return_weight" in inspect.signature(set_func).parameters
    except (TypeError, ValueError):
        return False


def is_additive(patch) -> bool:
    """A patch whose effect does not depend on the weight: ``calculate_weight(p, W) == W + dW``."""
    _strength, v, strength_model, offset, function = patch
    if strength_model != 1.0 or offset is not None or function is not None:
        return False
    if isinstance(v, comfy.weight_adapter.LoRAAdapter):
        return v.weights[4] is None and v.weights[5] is None  # no DoRA scale, no reshape
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "diff":
        v = v[1]
    return isinstance(v, tuple) and len(v) == 1 and isinstance(v[0], torch.Tensor)


def negated(patch):
    strength, v, strength_model, offset, function = patch
    return (-strength, v, strength_model, offset, function)


def tensors_of(patch) -> list[torch.Tensor]:
    v = patch[1]
    if isinstance(v, comfy.weight_adapter.LoRAAdapter):
        return [t for t in v.weights if isinstance(t, torch.Tensor)]
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "diff":
        v = v[1]
    return [v[0]]


def on_device(patch, held: dict[int, torch.Tensor]):
    """The same patch reading its tensors from the pair's factor holder (where ComfyUI placed them)."""
    strength, v, strength_model, offset, function = patch
    swap = lambda t: held.get(id(t), t) if isinstance(t, torch.Tensor) else t  # noqa: E731
    if isinstance(v, comfy.weight_adapter.LoRAAdapter):
        v = comfy.weight_adapter.LoRAAdapter(v.loaded_keys, tuple(swap(t) for t in v.weights))
    elif isinstance(v, tuple) and len(v) == 2 and v[0] == "diff":
        v = ("diff", (swap(v[1][0]),) + tuple(v[1][1:]))
    else:
        v = (swap(v[0]),)
    return (strength, v, strength_model, offset, function)


class WeightKey:
    """One weight whose patches differ between the two clones; or (``companion``) a weight patched alike on both
    sides in a layer where another weight differs, which a Dynamic VRAM layer needs beside the swapped one."""

    def __init__(self, model, key: str, base_patches: list, distilled_patches: list, companion: bool = False):
        self.key, self.companion = key, companion
        self.module, self.name, self.convert, self.set = layer_weight(model, key)
        p = self.module._parameters[self.name]
        # stored size, as ComfyUI's module_size counts a weight (a QuantizedTensor: its quantized data)
        self.dtype, self.nbytes = p.dtype, p.nbytes
        self.converted = self.convert is not None or self.set is not None
        self.base = list(base_patches)
        n = shared_prefix(base_patches, distilled_patches)
        self.base_rest, self.distilled_rest = list(base_patches[n:]), list(distilled_patches[n:])
        # the delta path works on the weight as the layer stores it: not for a converted one (rounded at each set)
        additive = all(is_additive(q) for q in self.base_rest + self.distilled_rest)
        self.additive = additive and not self.converted
        # whether the delta's extra rounding of a merge the layer stores is small: at most an ulp of a 16- or 32-bit
        # float; an fp8 weight's ulp is up to an eighth of it, so a merged fp8 weight is made from its original
        self.precise = self.dtype.is_floating_point and torch.finfo(self.dtype).bits >= 16
        self.seed = string_to_seed(key)
        attr = f"{self.name}_function"
        self.fn_attr = attr if self.name in ("weight", "bias") and hasattr(self.module, attr) else None

    def param(self):
        return self.module._parameters[self.name]

    def carried(self, backup) -> bool:
        """Whether the weight as loaded carries its own patches (``carries_own_patches``): presented by giving it
        the base MODEL's list for the base forward, no copy."""
        return carries_own_patches(self.param(), self.key in backup)

    def in_self_casting_layer(self, backup) -> bool:
        """Whether the layer holds a parameter that carries its own patches: such a layer (ComfyUI-GGUF's quantized
        ones) casts all its parameters itself and calls no ComfyUI weight function, so a differing parameter of it
        that carries none (an F32 bias a LoRA's ``diff_b`` patched, merged the ordinary way) is made for the forward
        and swapped in instead."""
        path = self.key.rsplit(".", 1)[0]
        return any(
            carries_own_patches(p, f"{path}.{n}" in backup) for n, p in self.module._parameters.items() if p is not None
        )

    def own_patches(self) -> list:
        """The patch list the base MODEL's load gives such a weight (as ComfyUI-GGUF's ``patch_weight_to_device``:
        one (patches, key) pair, none for a weight the base does not patch)."""
        return [(self.base, self.key)] if self.base else []

    def original(self, backup):
        bk = backup.get(self.key)
        return bk.weight if bk is not None else self.param()

    def exact_base(self, original: torch.Tensor, device) -> torch.Tensor:
        """The base version as ModelPatcher.patch_weight_to_device computes it (same calls, same order, in the
        host's LoRA compute dtype: float32 in 0.3.75, ``lora_compute_dtype`` of the device in newer ComfyUI), in
        the format the layer stores: a converted weight through the layer's own ``convert_<name>``, then its
        ``set_<name>(..., return_weight=True)`` with the key's rounding seed (fp8_scaled: fp8 over the layer's
        scale; ComfyUI 0.33's layouts: a new QuantizedTensor), while the layer presents the original weight, as it
        does when ComfyUI patches the base model."""
        if not self.base:
            return original.to(device, copy=True)
        compute = getattr(mm, "lora_compute_dtype", None)
        temp = mm.cast_to_device(original, device, compute(device) if compute else torch.float32, copy=True)
        if self.convert is not None:
            temp = self.convert(temp, inplace=True)
        out = comfy.lora.calculate_weight(self.base, temp, self.key)
        if self.set is None:
            return comfy.float.stochastic_rounding(out, self.dtype, seed=self.seed)
        with self.presenting(original):
            return self.set(out, seed=self.seed, return_weight=True)

    def merged_by(self, sandbox, original: torch.Tensor, device) -> torch.Tensor:
        """The base version as the base MODEL merges it itself (``merge_sandbox``: a throwaway clone of it): its own
        ``patch_weight_to_device`` with only this key's base patches, while the layer presents the original."""
        sandbox.patches = {self.key: list(self.base)}
        with self.presenting(original) as params:
            sandbox.patch_weight_to_device(self.key, device_to=device)
            return params[self.name].detach()

    @contextlib.contextmanager
    def presenting(self, original: torch.Tensor):
        """The layer holds ``original`` as its parameter inside the block (which may replace it, as ComfyUI's set
        functions do); the parameter it held before is put back after. Yields the layer's parameter registry."""
        params = self.module._parameters
        current = params[self.name]
        params[self.name] = original
        try:
            yield params
        finally:
            params[self.name] = current

    def as_cast(self, stored: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A weight in the stored format as ComfyUI's cast path hands it to a layer's weight functions (``like``:
        what it handed this time): on its device, in its dtype, a QuantizedTensor dequantized (0.33's
        ``cast_bias_weight``); fp8_scaled weights stay unscaled (the layer scales them in its forward)."""
        out = stored.to(device=like.device, dtype=like.dtype)
        quantized = quantized_classes()
        if quantized and isinstance(out, quantized):
            out = out.dequantize()
        return out.to(like.dtype) if out.dtype != like.dtype else out


def merge_sandbox(patcher):
    """None for a MODEL that merges patches as ComfyUI's ModelPatcher classes (``comfy.*``) do, which
    ``WeightKey.exact_base`` reproduces; else a throwaway clone of it (its own backup, no in-place update) whose own
    ``patch_weight_to_device`` makes the copies (``WeightKey.merged_by``): a ModelPatcher subclass of another pack
    that merges its own way (ComfyUI-GGUF merges its F16 / F32 tensors in float32 where ComfyUI 0.33 uses
    ``lora_compute_dtype``, float16 on a GPU)."""
    fn = getattr(type(patcher), "patch_weight_to_device", None)
    if fn is None or getattr(fn, "__module__", "").startswith("comfy."):
        return None
    sandbox = patcher.clone()
    sandbox.backup, sandbox.weight_inplace_update = {}, False
    return sandbox


def string_to_seed(key: str) -> int:
    """ComfyUI's seed of a weight's stochastic rounding: ``comfy.utils.string_to_seed`` where it exists (0.33 warns
    at each call of the old ``comfy.model_patcher`` one), else ``comfy.model_patcher.string_to_seed`` (0.3.75)."""
    fn = getattr(comfy.utils, "string_to_seed", None) or comfy.model_patcher.string_to_seed
    return fn(key)


def lora_term(patch):
    """(coefficient, up, down) of a plain LoRA patch (no mid, DoRA or reshape), else None."""
    strength, v, _strength_model, _offset, _function = patch
    if not isinstance(v, comfy.weight_adapter.LoRAAdapter) or any(t is not None for t in v.weights[3:6]):
        return None
    up, down, alpha = v.weights[:3]
    return strength * (alpha / down.shape[0] if alpha is not None else 1.0), up, down


class BaseWeight:
    """A ComfyUI weight function (the kind ``LowVramPatch`` is) that returns the base version of one weight, per
    layer at forward time, either exactly from the original weight (``source``, else the weight the layer holds),
    or (``delta``: the distilled-only patches negated, then the base-only ones) from the distilled merge the layer
    holds. Plain LoRA terms of a delta are one ``addmm_`` each (on the copy ComfyUI's ``cast_bias_weight`` made, in
    its dtype when the factors share it); other additive patches go through ``comfy.lora.calculate_weight``."""

    def __init__(
        self, key: WeightKey, source: torch.Tensor | None = None, delta: tuple[list, list] | None = None, fresh=True
    ):
        # fresh: whether the weight ComfyUI passes in is its own copy for this forward (its cast path copies a
        # weight that has weight functions), which the delta may then change in place. Dynamic VRAM passes the
        # weight its VBAR keeps for later forwards: never written.
        self.key, self.source, self.delta, self.fresh = key, source, delta, fresh
        terms = [lora_term(q) for q in delta[0] + delta[1]] if delta is not None else []
        self.terms = terms if delta is not None and all(t is not None for t in terms) else None

    def __call__(self, weight: torch.Tensor, fresh: bool | None = None) -> torch.Tensor:
        k, fresh = self.key, self.fresh if fresh is None else fresh
        if self.terms is not None:
            # In the weight's dtype when the factors have it (GEMMs accumulate in float32 and round once), else in
            # float32 as ComfyUI merges: factors rounded to a narrower dtype would move the weight by their rounding.
            same = all(t.dtype == weight.dtype for _c, up, down in self.terms for t in (up, down))
            if same:
                w = weight if fresh and weight.is_contiguous() else weight.contiguous().clone()
            else:
                w = weight.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
            flat = w.view(w.shape[0], -1)
            for coef, up, down in self.terms:
                up = up.to(device=w.device, dtype=w.dtype, non_blocking=True).flatten(1)
                down = down.to(device=w.device, dtype=w.dtype, non_blocking=True).flatten(1)
                flat.addmm_(up, down, alpha=coef)
            return w if same else w.to(weight.dtype)
        if k.converted:
            # from the original in its stored format (ModelPatcher.backup, else the layer's own weight), exactly as
            # a resident copy is made, then cast as the layer's cast path casts its stored weight
            src = self.source if self.source is not None else k.param()
            return k.as_cast(k.exact_base(src, weight.device), weight)
        if self.delta is not None:
            undo, redo = self.delta
            w = comfy.lora.calculate_weight(undo, weight.to(torch.float32, copy=True), k.key)
            w = comfy.lora.calculate_weight(redo, w, k.key) if redo else w
            return comfy.float.stochastic_rounding(w, k.dtype, seed=k.seed).to(weight.dtype)
        # from the original (ModelPatcher.backup, else the weight the layer holds), as ComfyUI merges it
        src = self.source if self.source is not None else weight
        return k.exact_base(src, weight.device).to(weight.dtype)
