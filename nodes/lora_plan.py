"""What one base forward of a LoRA pair swaps (``Plan``), and the holders of the pair's tensors that ComfyUI's model
management places (``Held``)."""

from __future__ import annotations

import torch

from .lora_weights import BaseWeight, WeightKey


class _Slot(torch.nn.Module):
    def __init__(self, t: torch.Tensor):
        super().__init__()
        self.value = torch.nn.Parameter(t, requires_grad=False)


class Held(torch.nn.Module):
    """Tensors of one pair for ComfyUI's model management to place: one submodule per tensor, so that a partial
    load keeps each tensor whole on one device."""

    def __init__(self, tensors: list[torch.Tensor]):
        super().__init__()
        self.slots = torch.nn.ModuleList(_Slot(t) for t in tensors)

    def values(self) -> list[torch.Tensor]:
        return [s._parameters["value"] for s in self.slots]


class Plan:
    """What one base forward swaps: parameters (resident base copies), weight-function lists, and parameters made
    just for the forward (layers without weight functions). Built after each load, from where things are."""

    def __init__(self):
        self.swaps: list[tuple[dict, str, torch.nn.Parameter]] = []
        self.funcs: list[tuple[torch.nn.Module, str, list]] = []
        self.transient: list[tuple[dict, str, BaseWeight]] = []
        self.layers: list[tuple[WeightKey, torch.Tensor | None, list]] = []  # converted weights made per layer
        self.carried: list[tuple[dict, str, list]] = []  # weights carrying their own patches: the base's list

    def enter(self) -> list:
        saved = []
        # The module's own parameter registry, as comfy.utils.set_attr_param registers one, without the per-call
        # Parameter wrapping (hundreds of weights per forward).
        for params, name, p in self.swaps:
            saved.append((params, name, params[name]))
            params[name] = p
        for params, name, fn in self.transient:
            old = params[name]
            saved.append((params, name, old))
            params[name] = torch.nn.Parameter(fn(old, fresh=False), requires_grad=False)
        fsaved = []
        for m, attr, fl in self.funcs:  # instance attributes: the class-level default list is never touched
            fsaved.append((m, attr, vars(m).get(attr, _MISSING)))
            vars(m)[attr] = fl
        csaved = []
        for params, name, own in self.carried:  # the parameter the layer holds now; its own list for the forward
            p = params[name]
            csaved.append((p, p.patches))
            p.patches = own
        handles = []
        for k, source, kept in self.layers:
            params = k.module._parameters
            saved.append((params, k.name, params[k.name]))
            handles += made_hooks(k, source, params[k.name], kept)
        return [saved, fsaved, handles, csaved]

    @staticmethod
    def exit(state) -> None:
        saved, fsaved, handles, csaved = state
        for p, old in reversed(csaved):
            p.patches = old
        for h in handles:
            h.remove()
        for params, name, old in reversed(saved):
            params[name] = old
        for m, attr, old in reversed(fsaved):
            if old is _MISSING:
                vars(m).pop(attr, None)
            else:
                vars(m)[attr] = old

    def counts(self) -> tuple[int, int]:
        """(weights swapped in, weights made per layer at forward time); ``carried``: those given their own list."""
        made = sum(1 for _m, _a, fl in self.funcs if fl and isinstance(fl[0], BaseWeight))
        return len(self.swaps), made + len(self.transient) + sum(k.fn_attr is None for k, _s, _k in self.layers)


_MISSING = object()


def made_hooks(k: WeightKey, source: torch.Tensor | None, current: torch.Tensor, kept: list) -> list:
    """Forward hooks of one layer (removed after the base forward) that present the base version of a converted
    weight for that layer's forward only: made from the original stored weight (``source``, else the one the layer
    holds) on the layer's device as a resident copy is made (``WeightKey.exact_base``), with the layer's weight
    functions ``kept`` (the plan's own one, which makes the same weight for a cast outside the forward, left out);
    then the layer's own weight and the plan's functions back."""
    params, name, module, attr = k.module._parameters, k.name, k.module, k.fn_attr
    funcs = vars(module).get(attr, _MISSING) if attr is not None else _MISSING

    def made(_module, _args):
        src = source if source is not None else current
        w = src.to(current.device) if not k.base else k.exact_base(src, current.device)
        params[name] = torch.nn.Parameter(w, requires_grad=False)
        if funcs is not _MISSING:
            vars(module)[attr] = kept

    def restore(_module, _args, _output):
        params[name] = current
        if funcs is not _MISSING:
            vars(module)[attr] = funcs

    return [module.register_forward_pre_hook(made), module.register_forward_hook(restore)]


def dynamic_layer(module) -> bool:
    """A layer that ComfyUI's Dynamic VRAM (ModelPatcherDynamic, ComfyUI 0.33+) casts through its VBAR."""
    return hasattr(module, "_v")
