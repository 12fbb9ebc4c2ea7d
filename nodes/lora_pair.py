"""LoRA-distilled pairs: base_model and distilled_model are two clones of one ComfyUI model.

Most people run a distilled model as a LoRA on its base (DMD2 4-step, LCM-LoRA, Lightning): LoraLoaderModelOnly
returns ``model.clone()`` with weight patches. ComfyUI's ``load_models_gpu`` then detaches one clone for the other
at every switch and, their ``patches_uuid`` differing, unpatches the shared weights, moves the whole model to the
offload device and patches it again (seconds per hybrid for SDXL).

Here the base segment runs on a *runner*: a clone of the base model (its model_options, object patches such as a
model_sampling patch, wrappers, callbacks) that declares the distilled model's weight patches and patches_uuid, so
that ComfyUI finds the merged distilled weights current and loads nothing. An APPLY_MODEL wrapper (the runner's
own, ``add_wrapper_with_key``) presents, for the duration of each base forward, the base versions of the weights
whose patches differ, and restores the merged ones afterwards:

* resident (exact): the base versions are computed once per pair as ``ModelPatcher.patch_weight_to_device``
  computes them (``comfy.lora.calculate_weight`` on the original weight, which ``ModelPatcher.backup`` holds while
  the weights are patched), held in a plain ``ModelPatcher`` that ``model_management`` loads when they fit beside
  the model and the sampling's memory estimate (and offloads when another model needs the memory); swapped in.
* otherwise, per layer at forward time through ComfyUI's weight functions (the ``weight_function`` lists its
  lowvram patches use): from the original weight when the layer holds it (exact), else for additive patches (LoRA,
  diff) ``W_merged - dW_distilled + dW_base`` (one extra rounding of the weight dtype: README "LoRA-distilled
  pairs"), else from the original in ``ModelPatcher.backup`` (exact).

Weights a layer stores converted (fp8_scaled files: fp8 over a per-layer scale; ComfyUI's ``QuantizedTensor``
layouts: fp8, int8, nvfp4, mxfp8) are patched by ComfyUI through the layer's own ``convert_weight`` / ``set_weight``:
their base versions are made with those functions (``set_weight(..., return_weight=True)`` with the key's rounding
seed), held at their stored size (a QuantizedTensor stays one); at forward time, made per layer from the original
and swapped in for that layer's forward (README "LoRA-distilled pairs" gives what is exact per format).

A weight that carries its own patches (ComfyUI-GGUF's quantized ``GGMLTensor``: its ModelPatcher gives the tensor the
MODEL's patch list as (patches, key) pairs, its layers apply them at each forward from the quantized data) needs no
copy: for the base forward it is given the base MODEL's own list (what GGUF's load of the base model gives it), then
the distilled list back. Any other differing weight that is not a plain tensor whose patches live in the ModelPatcher
(patches in another form, another tensor subclass, a ``set_weight`` that cannot return the weight:
``fallback_reason``) keeps ComfyUI's stock path for the pair: the base segment runs on the base MODEL as ComfyUI loads
it, and the log names the reason.

The pair's state lives on ComfyUI's objects: on the base MODEL as an attachment (``set_attachments``; a clone starts
without it), keyed by the distilled MODEL through a weak reference, so that its extra memory goes when either MODEL
goes (ComfyUI's ``cleanup_models`` then forgets the holders); the MODELs a Distilled Continue ran on are noted on the
model their clones share. The weights and their base versions are ``lora_weights``; what a base forward swaps and the
holders are ``lora_plan``.
"""

from __future__ import annotations

import logging
import weakref

import comfy.float
import comfy.lora
import comfy.model_management as mm
import comfy.model_patcher
import comfy.patcher_extension as pe
import comfy.sampler_helpers
import comfy.utils
import comfy.weight_adapter
import torch

from ..ddistill.lora_maths import differing_keys, foreign_weight, gib, patch_lists_equal, sibling_keys
from .lora_plan import Held, Plan, dynamic_layer
from .lora_weights import (
    BaseWeight,
    WeightKey,
    layer_weight,
    merge_sandbox,
    negated,
    on_device,
    quantized_classes,
    returns_weight,
    tensors_of,
)

WRAPPER_KEY = "ddistill_lora_pair"
RESIDENT_BASE_WEIGHTS = True  # False: never hold base copies; every differing weight is made at forward time
REUSE_DYNAMIC_LOAD = True  # False: under Dynamic VRAM the base segment, too, asks load_models_gpu for its weights
MEMORY_MARGIN = 1.1  # as load_models_gpu's own margin on what it frees
log = logging.getLogger(__name__)

PARTNERS_ATTR = "ddistill_distilled_models"  # on the BaseModel the clones share: MODELs a Distilled Continue ran on


class _Pairs:
    """Attachment of a base MODEL (``ModelPatcher.set_attachments``): its pairs with distilled MODELs and the stock
    paths it logged, both keyed by the distilled MODEL through weak references, so that an entry goes when that
    MODEL goes, and all of them with the base MODEL. A clone of the base MODEL starts with none of them."""

    def __init__(self):
        self.pairs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # distilled MODEL -> LoraPair
        self.logged: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # distilled MODEL -> reason logged

    def on_model_patcher_clone(self) -> _Pairs:
        return _Pairs()


def _pairs(base, create: bool = False) -> _Pairs | None:
    held = base.get_attachment(WRAPPER_KEY)
    if held is None and create:
        held = _Pairs()
        base.set_attachments(WRAPPER_KEY, held)
    return held


def remember_distilled(model) -> None:
    """Distilled Continue: note its MODEL on the model its clones share, so that the next Base First Step on another
    clone of the same model (its distilled_model input left unconnected) can keep these weights loaded."""
    seen = [r for r in getattr(model.model, PARTNERS_ATTR, ()) if r() is not None and r() is not model]
    setattr(model.model, PARTNERS_ATTR, [*seen, weakref.ref(model)])  # oldest first


def base_segment_model(base, distilled=None, conds=()):
    """The MODEL the base segment runs on: ``base`` itself, or, when ``base`` and the distilled model (the connected
    one, else the last one a Distilled Continue ran on a clone of the same model) are two clones with different
    weight patches, a runner that keeps the distilled model's merged weights loaded. Conditioning with hooks
    (``comfy.hooks``, which patch weights during sampling) keeps the stock path."""
    partner = distilled if distilled is not None else _partner(base)
    if partner is None or any("hooks" in c[1] for cond in conds for c in cond or ()):
        return base
    pair = pair_for(base, partner)
    return base if pair is None else pair.runner()


def _partner(base):
    alive = (ref() for ref in reversed(getattr(base.model, PARTNERS_ATTR, ())))
    candidates = [
        d for d in alive if d is not None and d is not base and base.is_clone(d) and d.patches_uuid != base.patches_uuid
    ]
    if not candidates:
        return None
    loaded = getattr(base.model, "current_weight_patches_uuid", None)  # prefer the weights that are loaded now
    return next((d for d in candidates if d.patches_uuid == loaded), candidates[0])


def fallback_reason(base, distilled) -> str | None:
    """None when the pair path applies; "" when there is nothing to save (different models, same weights); else why
    the stock path is kept. A differing weight must be a plain tensor whose patches live in the ModelPatcher, or one
    that carries its own patches as (patch list, key) pairs (``foreign_weight``): the pair presents base versions by
    swapping tensors, through ComfyUI's weight functions, or by giving such a tensor the base MODEL's own list, which
    patches in another form or an unknown tensor subclass defeats. A layer that converts its weight
    (``convert_<name>`` / ``set_<name>``: fp8_scaled, ComfyUI's ``QuantizedTensor``) is presented through those
    functions, which needs ``set_<name>(..., return_weight=True)``."""
    if base is distilled or not base.is_clone(distilled) or base.patches_uuid == distilled.patches_uuid:
        return ""
    for side, m in (("base_model", base), ("distilled_model", distilled)):
        if m.hook_patches or m.current_hooks is not None or m.forced_hooks is not None:
            return f"{side} carries hook patches (comfy.hooks)"
    if base.backup is not distilled.backup or base.object_patches_backup is not distilled.object_patches_backup:
        return "the two MODELs wrap one model but are not clones of one ModelPatcher"
    wrappers_b, wrappers_d = base.weight_wrapper_patches, distilled.weight_wrapper_patches
    if wrappers_b.keys() != wrappers_d.keys() or any(
        not patch_lists_equal(wrappers_b[k], wrappers_d[k]) for k in wrappers_b
    ):
        return "the weight wrappers differ"
    if base.force_cast_weights != distilled.force_cast_weights or base.object_patches.get(
        "manual_cast_dtype"
    ) != distilled.object_patches.get("manual_cast_dtype"):
        return "the compute dtypes differ"
    for key in differing_keys(base.patches, distilled.patches):
        module, name, convert, set_func = layer_weight(base.model, key)
        if name not in module._parameters:
            return f"{key} is not a parameter"
        weight = module._parameters[name]
        converted = convert is not None or set_func is not None
        foreign = foreign_weight(weight, quantized_classes() if converted else ()) if weight is not None else None
        if foreign:
            return f"{foreign} ({key})"
        if converted and not returns_weight(set_func):
            return f"{key} is stored in a converted (quantized) format whose set_{name} cannot return a weight"
    return None


def pair_for(base, distilled) -> LoraPair | None:
    """The pair state of two clones (made once, kept while both MODELs live), or None for the stock path."""
    pair = existing_pair(base, distilled)
    if pair is not None and pair.matches(base, distilled) and not (base.hook_patches or distilled.hook_patches):
        return pair
    why = fallback_reason(base, distilled)
    if why is not None:
        if why:
            _log_fallback(base, distilled, why)
        return None
    pair = _pairs(base, create=True).pairs[distilled] = LoraPair(base, distilled)
    return pair


def existing_pair(base, distilled) -> LoraPair | None:
    """The pair state made for these two MODELs, if any (without checking that it still applies)."""
    held = _pairs(base)
    return held.pairs.get(distilled) if held is not None else None


def _log_fallback(base, distilled, why: str) -> None:
    """One log line per pair of MODELs (and reason) that keeps the stock path."""
    held = _pairs(base, create=True)
    if held.logged.get(distilled) == why:
        return
    held.logged[distilled] = why
    log.info(
        "DDistill: base_model and distilled_model are clones of one %s, but %s: stock loading, the base segment "
        "runs on ComfyUI's own load of the base model (slower, exact)",
        type(base.model).__name__,
        why,
    )


def holds_factors(device) -> bool:
    """Whether the delta path's LoRA factors are worth holding on ``device`` (not where they already live)."""
    return device.type != "cpu"


def dynamic_patcher(patcher) -> bool:
    """A ModelPatcherDynamic (ComfyUI 0.33+ with Dynamic VRAM on); ComfyUI 0.3.75's ModelPatcher has no is_dynamic."""
    return bool(getattr(patcher, "is_dynamic", lambda: False)())


def same_load_setup(a, b) -> bool:
    """Whether a load of clone ``a`` sets the model up as one of clone ``b`` did, weights aside: the same object
    patches (a model_sampling patch, ...), injections and ON_LOAD callbacks, no forced hooks."""
    if a.forced_hooks is not None or b.forced_hooks is not None:
        return False
    pa, pb = a.object_patches, b.object_patches
    if pa.keys() != pb.keys() or any(pa[k] is not pb[k] for k in pa):
        return False
    ia, ib = a.injections, b.injections
    same = lambda x, y: len(x) == len(y) and all(i is j for i, j in zip(x, y))  # noqa: E731
    if ia.keys() != ib.keys() or not all(same(ia[k], ib[k]) for k in ia):
        return False
    return a.get_all_callbacks(pe.CallbacksMP.ON_LOAD) == b.get_all_callbacks(pe.CallbacksMP.ON_LOAD)


class LoraPair:
    """The state of one (base, distilled) pair of clones: the differing weights and their holders."""

    def __init__(self, base, distilled):
        self.base_ref, self.distilled_ref = weakref.ref(base), weakref.ref(distilled)
        self.uuids = (base.patches_uuid, distilled.patches_uuid)
        self.backup = base.backup  # ModelPatcher.backup, shared by the clones: the original weights while patched
        self.model_name = type(base.model).__name__
        keys = differing_keys(base.patches, distilled.patches)
        self.keys = [WeightKey(base.model, k, base.patches.get(k, []), distilled.patches.get(k, [])) for k in keys]
        self.keys += [
            WeightKey(base.model, k, base.patches.get(k, []), base.patches.get(k, []), True)
            for k in sibling_keys(keys, self._companion_candidates(base, keys))
        ]
        self.copies_bytes = sum(k.nbytes for k in self.keys)  # until the first load tells which weights carry theirs
        self.copies = None  # ModelPatcher of Held: exact base versions of the keys in copy_index, in its order
        self.copy_index: dict[str, int] = {}
        self.factors = None  # ModelPatcher of Held: tensors of the patches the delta path applies
        self.factor_ids: list[int] = []
        self.plan: Plan | None = None
        self.device = None  # the runner's load device, set when ComfyUI loaded it (place)
        self.reported = None
        self.delta_keys: list[WeightKey] = []  # the plan's weights made as W_merged - dW_distilled + dW_base
        self.reused = False  # the last base segment ran on ComfyUI's current Dynamic VRAM load (_current_load)
        self.factors_on_demand = False  # the factors were loaded into memory Dynamic VRAM frees on demand
        self.on_demand_ok = True  # False once ComfyUI unloaded such factors: then only free memory holds them

    @staticmethod
    def _companion_candidates(base, keys) -> set[str]:
        """Keys a swapped layer may need beside its differing ones: the patched ones; under Dynamic VRAM
        (ModelPatcherDynamic) every weight and bias of those layers, patched or not, because a layer whose
        parameters are all on the load device casts nothing (ComfyUI's ordinary path), while one with a parameter
        left on the offload device copies the layer through a cast buffer and waits for that copy at each forward."""
        out = set(base.patches)
        if dynamic_patcher(base):
            for key in keys:
                if "." not in key:
                    continue
                path = key.rsplit(".", 1)[0]
                module = comfy.utils.get_attr(base.model, path)
                out.update(f"{path}.{n}" for n in ("weight", "bias") if module._parameters.get(n) is not None)
        return out

    def matches(self, base, distilled) -> bool:
        return (
            self.base_ref() is base
            and self.distilled_ref() is distilled
            and self.uuids == (base.patches_uuid, distilled.patches_uuid)
        )

    def runner(self):
        """A fresh clone of the base model declaring the distilled model's weights (dropped after the segment;
        its LoadedModel then falls back to the distilled MODEL, whose weights are the loaded ones)."""
        base, distilled = self.base_ref(), self.distilled_ref()
        r = base.clone()
        r.patches = {k: v[:] for k, v in distilled.patches.items()}
        r.patches_uuid = distilled.patches_uuid
        r.parent = distilled
        r.add_wrapper_with_key(pe.WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY, self._prepare)
        r.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY, self._apply)
        return r

    # -- sampling wrappers
    def _prepare(self, executor, model, noise_shape, conds, model_options=None, **kwargs):
        # ComfyUI loads the runner; newer versions pass more options (0.33: force_full_load, force_offload)
        memory = comfy.sampler_helpers.estimate_memory(model, noise_shape, conds)[0]
        current = self._current_load(model, conds, model_options, kwargs)
        self.reused = current is not None
        if current is None:
            out = executor(model, noise_shape, conds, model_options=model_options, **kwargs)
        else:  # what load_models_gpu does for a loaded dynamic model, but its model_load
            need = self._needed(current.model_memory_required(current.device), memory)
            mm.free_memory(need, current.device, keep_loaded=[current, *self._holder_loads()], for_dynamic=True)
            current.currently_used = True
            out = (model.model, conds, [])
        self.plan = None
        self.place(model, memory)
        return out

    def _current_load(self, runner, conds, model_options, kwargs):
        """The distilled MODEL's LoadedModel when the base segment can run on ComfyUI's current load of it, else
        None (ComfyUI loads the runner). Under Dynamic VRAM each ``load_models_gpu`` of a ModelPatcherDynamic walks
        every layer of the model again (``ModelPatcherDynamic.load``), although its weights stay where they are;
        the base segment skips that walk when the distilled weights are the loaded ones on the runner's device,
        nothing else is to be loaded for this sampling (no ControlNet, model patches or nested models) and a load
        of the runner would set the model up as the distilled MODEL's load did (``same_load_setup``)."""
        distilled = self.distilled_ref()
        if not REUSE_DYNAMIC_LOAD or distilled is None or not dynamic_patcher(runner):
            return None
        if kwargs.get("force_full_load") or kwargs.get("force_offload"):
            return None
        current = next((lm for lm in mm.current_loaded_models if lm.model is distilled), None)
        if current is None or current.device != runner.load_device or not same_load_setup(runner, distilled):
            return None
        if getattr(runner.model, "current_weight_patches_uuid", None) != distilled.patches_uuid:
            return None
        helpers = comfy.sampler_helpers
        others = helpers.get_additional_models(conds, runner.model_dtype())[0]
        others += helpers.get_additional_models_from_model_options(model_options)
        others += runner.get_nested_additional_models() + runner.model_patches_models()
        return None if others else current

    def _holder_loads(self) -> list:
        mine = [h for h in (self.copies, self.factors) if h is not None]
        return [lm for lm in mm.current_loaded_models if any(lm.model is h for h in mine)]

    def _apply(self, executor, *args, **kwargs):
        if self.plan is None:
            self.plan = self._make_plan(executor.class_obj)
        state = self.plan.enter()
        try:
            return executor(*args, **kwargs)
        finally:
            Plan.exit(state)

    # -- memory
    @staticmethod
    def _needed(nbytes: float, memory_required: float) -> float:
        """Free memory that holding ``nbytes`` needs: the bytes with load_models_gpu's margin, plus what the next
        load_models_gpu of this sampling asks to be free (its memory estimate + ComfyUI's reserve)."""
        extra = max(mm.minimum_inference_memory(), memory_required + mm.extra_reserved_memory())
        return nbytes * MEMORY_MARGIN + extra  # load_models_gpu's own rule

    @classmethod
    def _fits(cls, nbytes: float, device, memory_required: float, on_demand: float = 0.0) -> bool:
        """Room for ``nbytes`` beside what is loaded (and ``on_demand`` bytes that Dynamic VRAM gives back when
        asked), so that holding them never evicts the model itself."""
        return mm.get_free_memory(device) + on_demand > cls._needed(nbytes, memory_required)

    @staticmethod
    def _on_demand(device) -> float:
        """Bytes that ComfyUI's Dynamic VRAM (0.33+) frees on demand on ``device``: the loaded size of its dynamic
        models (their VBARs), which ComfyUI's ``free_memory`` counts as free for a dynamic model and gives back,
        page by page, when a plain ModelPatcher is loaded. Each model counted once (clones share one VBAR)."""
        seen, total = set(), 0.0
        for lm in mm.current_loaded_models:
            m = lm.model
            if m is None or lm.device != device or not dynamic_patcher(m):
                continue
            if id(m.model) not in seen:
                seen.add(id(m.model))
                total += m.loaded_size()
        return total

    def _room(self, nbytes: float, runner, memory_required: float, on_demand: float = 0.0) -> bool:
        """Whether ``nbytes`` fit on the runner's device (``_fits``); when they do not, but would beside the runner
        once idle models are unloaded (a text encoder or VAE that ran earlier in the graph), ComfyUI's
        ``free_memory`` unloads those first, as ``load_models_gpu`` does for a model the sampling needs: the copies
        are part of what this sampling uses. The runner's model and the pair's own holders stay loaded."""
        device = runner.load_device
        if self._fits(nbytes, device, memory_required, on_demand):
            return True
        if device.type == "cpu":  # ComfyUI frees nothing on the CPU (load_models_gpu neither)
            return False
        mine = (runner, self.distilled_ref())  # the distilled MODEL's load where the segment reuses it
        keep = [lm for lm in mm.current_loaded_models if any(lm.model is m for m in mine)] + self._holder_loads()
        idle = sum(
            lm.model_loaded_memory()
            for lm in mm.current_loaded_models
            if lm.device == device and lm.model is not None and lm not in keep
        )
        need = self._needed(nbytes, memory_required)
        if mm.get_free_memory(device) + idle + on_demand <= need:
            return False
        unloaded = mm.free_memory(need, device, keep_loaded=keep)
        names = [type(lm.model.model).__name__ for lm in unloaded if lm.model is not None]
        if names:
            log.info(
                "DDistill LoRA pair: unloaded idle models to hold the base weights on %s: %s", device, ", ".join(names)
            )
        return self._fits(nbytes, device, memory_required, on_demand)

    def _load(self, held, runner, memory_required: float, on_demand: float = 0.0) -> None:
        missing = held.model_size() - held.loaded_size()
        if missing > 0 and self._room(missing, runner, memory_required, on_demand):
            mm.load_models_gpu([held], memory_required=memory_required)

    def place(self, runner, memory_required: float) -> None:
        """After ComfyUI loaded the runner: hold the base copies where they fit, else the delta path's LoRA
        factors; then the plan of the base forwards. The copies (about the size of the patched weights) are held
        only in memory that is free; the factors (a fraction of it) also in memory Dynamic VRAM frees on demand,
        as ComfyUI counts it for a dynamic model: a few of the model's pages then come back from the host at the
        next distilled forward, which costs less than reading the factors from the host at every base forward;
        unless ComfyUI unloads them again (a tight VRAM cap), which would repeat at every hybrid."""
        device, offload = runner.load_device, runner.offload_device
        self.device = device
        if RESIDENT_BASE_WEIGHTS and self.keys:
            if self.copies is None:
                held = [k for k in self.keys if not k.carried(self.backup)]  # carrying its own patches: no copy
                self.copies_bytes = sum(k.nbytes for k in held)
                if held and self._room(self.copies_bytes, runner, memory_required):
                    base = self.base_ref()
                    sandbox = merge_sandbox(base) if base is not None else None
                    inplace = runner.weight_inplace_update
                    copies = [self._base_copy(k, device, offload, inplace, sandbox) for k in held]
                    self.copies = comfy.model_patcher.ModelPatcher(Held(copies), device, offload)
                    self.copy_index = {k.key: j for j, k in enumerate(held)}
            if self.copies is not None:
                self._load(self.copies, runner, memory_required)
        plan = self._make_plan(runner.model)
        if self.delta_keys and holds_factors(device):
            tensors = {}
            for k in self.delta_keys:
                for q in k.base_rest + k.distilled_rest:
                    tensors.update((id(t), t) for t in tensors_of(q))
            nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
            held = self.factors
            partial = held is not None and held.loaded_size() < held.model_size()
            if partial and self.factors_on_demand:
                # ComfyUI unloaded factors held in memory it then had to evict Dynamic VRAM pages for: from now on
                # only free memory (else each hybrid would evict the pages its distilled steps fault back)
                self.on_demand_ok = False
            spare = self._on_demand(device) if self.on_demand_ok else 0.0
            stale = held is None or not set(tensors) <= set(self.factor_ids)
            if not stale and partial:  # e.g. all factors, and only some fit now
                missing = held.model_size() - held.loaded_size()
                fits = lambda n: self._fits(n, device, memory_required, spare)  # noqa: E731
                stale = not fits(missing) and fits(nbytes)
            if stale:  # the factors of the weights made at forward time now
                self.factor_ids = list(tensors)
                self.factors = comfy.model_patcher.ModelPatcher(Held(list(tensors.values())), device, offload)
            missing = self.factors.model_size() - self.factors.loaded_size()
            beyond_free = missing > 0 and not self._fits(missing, device, memory_required)
            self._load(self.factors, runner, memory_required, spare)
            if missing > 0:
                self.factors_on_demand = beyond_free and self.factors.loaded_size() > 0
            plan = self._make_plan(runner.model)
        self.plan = plan
        self._report(device)

    def _base_copy(self, k: WeightKey, device, offload, inplace: bool, sandbox=None) -> torch.Tensor:
        """The exact base version of one weight, on the offload device for ComfyUI to load. A weight the base does
        not patch is its original, which ModelPatcher.backup already holds there: held as is, without a copy (never
        written in place: ComfyUI replaces patched parameters unless the model patches in place)."""
        original = k.original(self.backup)
        if not k.base and not inplace and original.device == offload:
            return original
        if sandbox is not None and not k.converted:  # the base MODEL merges its own way (merge_sandbox)
            return k.merged_by(sandbox, original, device).to(offload)
        return k.exact_base(original, device).to(offload)

    def _make_plan(self, model) -> Plan:
        if getattr(model, "current_weight_patches_uuid", None) != self.uuids[1]:
            raise RuntimeError(
                "DDistill LoRA pair: the loaded weights are not the distilled model's; this is a bug of the pack"
            )
        plan = Plan()
        copies = self.copies.model.values() if RESIDENT_BASE_WEIGHTS and self.copies is not None else None
        held = {}
        if self.factors is not None:
            values = self.factors.model.values()
            held = {i: t for i, t in zip(self.factor_ids, values) if t.device.type != "cpu"}
        self.delta_keys = []

        def resident(k: WeightKey) -> bool:
            # Dynamic VRAM (ModelPatcherDynamic) layers keep their weights on the offload device, casts them into
            # its VBAR at each forward and applies their patches there (``weight_lowvram_function``); a weight
            # on the load device instead takes ComfyUI's ordinary cast path, which applies neither.
            dev = self.device if dynamic_layer(k.module) else k.param().device
            j = self.copy_index.get(k.key)
            held = copies[j] if copies is not None and j is not None else None
            return held is not None and held.device == dev and held.dtype == k.param().dtype

        layer_resident: dict[int, bool] = {}  # Dynamic VRAM layers: swapped only with all their copies resident
        for k in self.keys:
            if dynamic_layer(k.module):
                layer_resident[id(k.module)] = layer_resident.get(id(k.module), True) and resident(k)
        for k in self.keys:
            params, cur = k.module._parameters, k.param()
            if k.carried(self.backup):  # ComfyUI-GGUF's quantized weights: the base MODEL's own list for the forward
                plan.carried.append((params, k.name, k.own_patches()))
                continue
            dynamic = dynamic_layer(k.module)
            swap = layer_resident[id(k.module)] if dynamic else resident(k)
            if k.companion and not (dynamic and swap):
                continue  # patched alike on both sides: the layer's own weight is already the base's
            lowvram = [] if k.fn_attr is None else getattr(k.module, k.fn_attr)
            kept = [f for f in lowvram if not (isinstance(f, comfy.model_patcher.LowVramPatch) and f.key == k.key)]
            if swap:
                plan.swaps.append((params, k.name, copies[self.copy_index[k.key]]))
                if len(kept) != len(lowvram):  # a lowvram layer: its patch of the distilled weights goes too
                    plan.funcs.append((k.module, k.fn_attr, kept))
                continue
            if dynamic and k.fn_attr is not None:
                # ComfyUI hands the weight functions the distilled merge from its VBAR (the distilled patches
                # applied): the base version from it (additive patches, the factors where the pair holds them),
                # else from the original weight the layer holds (exact; one host-to-device copy per forward)
                if k.additive:
                    self.delta_keys.append(k)
                    undo = [on_device(negated(q), held) for q in k.distilled_rest]
                    fn = BaseWeight(k, delta=(undo, [on_device(q, held) for q in k.base_rest]), fresh=False)
                else:
                    fn = BaseWeight(k, source=cur)
                plan.funcs.append((k.module, k.fn_attr, [fn] + kept))
                continue
            merged = k.key in self.backup  # the layer holds the distilled merge (else the original weight)
            if k.converted:
                # a stored-format weight, made from its original just before the layer's forward and swapped in for
                # that forward only (its weight functions then without ours or the distilled lowvram patch): the
                # layer runs as on the base model, its own quantized path included, one layer's copy at a time. A
                # caller that casts the layer's weight without its forward (0.33's linear_input_act for INT8)
                # gets the same base weight from the weight function, dequantized as ComfyUI's cast path does.
                src = self.backup[k.key].weight if merged else None
                if k.fn_attr is not None:
                    plan.funcs.append((k.module, k.fn_attr, [BaseWeight(k, source=src)] + kept))
                plan.layers.append((k, src, kept))
                continue
            if merged and k.additive and k.precise:
                self.delta_keys.append(k)
                undo = [on_device(negated(q), held) for q in k.distilled_rest]
                fn = BaseWeight(k, delta=(undo, [on_device(q, held) for q in k.base_rest]))
            else:
                fn = BaseWeight(k, source=self.backup[k.key].weight if merged else None)
            if k.fn_attr is None or k.in_self_casting_layer(self.backup):
                plan.transient.append((params, k.name, fn))
            else:
                plan.funcs.append((k.module, k.fn_attr, [fn] + kept))
        return plan

    def memory(self) -> dict[str, float]:
        """Bytes of the pair's holders, and how much of each ComfyUI has on the load device now."""
        out = {"copies": 0.0, "copies_loaded": 0.0, "factors": 0.0, "factors_loaded": 0.0}
        for name, held in (("copies", self.copies), ("factors", self.factors)):
            if held is not None:
                out[name], out[name + "_loaded"] = float(held.model_size()), float(held.loaded_size())
        return out

    def _report(self, device) -> None:
        swaps, made = self.plan.counts()
        mem = self.memory()
        sig = (swaps, made, len(self.plan.carried), len(self.delta_keys), mem["copies_loaded"], mem["factors_loaded"],
               self.reused)  # fmt: skip
        if sig == self.reported:
            return
        self.reported = sig
        n, delta = sum(not k.companion for k in self.keys), len(self.delta_keys)
        parts = []
        if self.reused:
            parts.append("the distilled model's current Dynamic VRAM load reused (no second ModelPatcherDynamic load)")
        if self.plan.carried:
            parts.append(f"{len(self.plan.carried)} given the base model's own patch list (applied by their layers)")
        if swaps:
            parts.append(
                f"{swaps} swapped in from exact copies ({gib(mem['copies_loaded'])} on {device}, held in ComfyUI's "
                "model management)"
            )
        if delta:
            held = f", LoRA factors {gib(mem['factors_loaded'])} on {device}" if mem["factors_loaded"] else ""
            parts.append(f"{delta} made per layer at each base forward as W_merged - dW_distilled + dW_base{held}")
        if made - delta:
            parts.append(f"{made - delta} made per layer at each base forward from the original weights")
        copyable = n - len(self.plan.carried)
        if copyable and swaps < copyable:
            free = f", {gib(mm.get_free_memory(device))} free there now" if device.type != "cpu" else ""
            parts.append(f"exact copies of all {copyable} would need {gib(self.copies_bytes)}{free}")
        log.info(
            "DDistill: base_model and distilled_model are clones of one %s with different weight patches; the base "
            "step runs on the loaded distilled weights (no unpatch, re-patch or move); %d weights differ%s",
            self.model_name,
            n,
            (": " + "; ".join(parts)) if parts else ", no extra memory",
        )
