"""LoRA-distilled pairs: base_model and distilled_model are two clones of one model with different weight
patches. The hybrid must then run without unpatching, re-patching or moving the shared weights in steady state, and
equal the stock two-sampler chain on the same clones (ComfyUI's own merged weights) bit for bit where it uses
resident base weights; the forward-time delta path is measured against it."""

import gc
import inspect
import logging
import weakref

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.sd
import pytest
import torch
from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
from lora_chain import count_weight_events, zero

from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.host.comfy_server import weight_loads
from ddistill_dev.models import random_lora as rl
from ddistill_dev.models import tiny_models as tm

SEED = 7


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        lp="nodes.lora_pair",
        lw="nodes.lora_weights",
        hn="nodes.hybrid_nodes",
        sampling="nodes.sampling",
        schedules="ddistill.schedules",
        maths="ddistill.lora_maths",
    )


def with_lora(model, lora, strength=1.0):
    """A LoRA as LoraLoaderModelOnly applies it (comfy.sd.load_lora_for_models: a clone with weight patches)."""
    return comfy.sd.load_lora_for_models(model, None, lora, strength, 0)[0]


def dmd_lora(model, seed=3, **kw):
    return rl.lora_state_dict(model.model, rank=4, seed=seed, **kw)


@pytest.fixture
def events(monkeypatch):
    return count_weight_events(monkeypatch)


def conds():
    return tm.make_conditioning("sdxl", seed=1), tm.make_conditioning("sdxl", seed=2)


def hybrid(mods, base, distilled, connect=False, seed=SEED, base_cfg=1.0, batch=2):
    pos, neg = conds()
    hn = mods["hn"]
    latent = tm.empty_latent(batch)
    first = hn.BaseFirstStepSampler.execute(
        base, pos, neg, latent, seed, base_cfg, 1, 4, "lcm", "lcm", None, "", distilled if connect else None
    )
    mid = first.result[0]
    return hn.DistilledContinueSampler.execute(distilled, pos, neg, mid, 1.0).result[0]["samples"], mid["samples"]


def stock_chain(mods, base, distilled, seed=SEED, base_cfg=1.0, batch=2):
    """Stock ComfyUI only: sample_custom on base (sigmas[0:2]), then on distilled (sigmas[1:]) with its own seed."""
    pos, neg = conds()
    sigmas = mods["sampling"].model_schedule(distilled, 4, "lcm")
    x = tm.empty_latent(batch)["samples"]
    lcm = comfy.samplers.sampler_object("lcm")
    mid = comfy.sample.sample_custom(
        base, comfy.sample.prepare_noise(x, seed), base_cfg, lcm, sigmas[:2], pos, neg, x, seed=seed
    )
    cseed = mods["schedules"].derive_seed(seed, 1)
    out = comfy.sample.sample_custom(distilled, torch.zeros_like(mid), 1.0, lcm, sigmas[1:], pos, neg, mid, seed=cseed)
    return out, mid


def steady_state(mods, events, base, distilled, connect=False, runs=3):
    """Runs the hybrid ``runs`` times; returns the last result and the events of the runs after the first two."""
    for _ in range(2):
        hybrid(mods, base, distilled, connect)
    zero(events)
    for _ in range(runs - 2):
        out = hybrid(mods, base, distilled, connect)
    return out, dict(events)


def assert_equal(a, b):
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), (a[0] - b[0]).abs().max()


@pytest.mark.parametrize("connect", [False, True], ids=["distilled-unconnected", "distilled-connected"])
def test_dmd_lora_pair_runs_without_reloads_and_equals_stock_bit_for_bit(mods, events, connect, caplog):
    base = tm.make_model("sdxl", 11)
    distilled = with_lora(base, dmd_lora(base))
    with caplog.at_level(logging.INFO):
        out, ev = steady_state(mods, events, base, distilled, connect)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    lines = [r.getMessage() for r in caplog.records if "clones of one SDXL" in r.getMessage()]
    assert len(lines) == 1 and "swapped in from exact copies" in lines[0], lines
    zero(events)
    ref = stock_chain(mods, base, distilled)
    assert events["unpatch"] >= 1 and events["patch"] > 0  # the stock chain reloads at each switch
    assert_equal(out, ref)
    assert not torch.equal(out[1], stock_chain(mods, distilled, distilled)[1])  # the base step used base weights


@pytest.mark.parametrize("fmt", rl.FORMATS)
def test_stacked_loras_style_on_both_sides_and_strengths(mods, events, fmt):
    """A style LoRA on both sides (shared patches), DMD2 at 0.8 and a second LoRA at -0.5 on the distilled side."""
    root = tm.make_model("sdxl", 12)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=2, seed=5, fmt=fmt), 0.7)
    distilled = with_lora(with_lora(base, dmd_lora(root, fmt=fmt), 0.8), dmd_lora(root, seed=9, only="attn"), -0.5)
    out, ev = steady_state(mods, events, base, distilled)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    assert_equal(out, stock_chain(mods, base, distilled))
    pair = mods["lp"].pair_for(base, distilled)
    assert all(len(k.distilled_rest) in (1, 2) and not k.base_rest for k in pair.keys)  # the style LoRA is shared


def test_patches_on_the_base_the_distilled_side_lacks(mods, events):
    root = tm.make_model("sdxl", 13)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=2, seed=6, only="attn"))
    distilled = with_lora(root, dmd_lora(root, only="ff"))
    out, ev = steady_state(mods, events, base, distilled)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    assert_equal(out, stock_chain(mods, base, distilled))


@pytest.mark.parametrize("side", ["base", "distilled"])
def test_model_sampling_patch_on_one_side(mods, events, side):
    """An object patch (ModelSamplingDiscrete) on one side only: the base step samples with the base's."""
    root = tm.make_model("sdxl", 14)
    base, distilled = root, with_lora(root, dmd_lora(root))
    if side == "base":
        base = ModelSamplingDiscrete().patch(base, "eps", True)[0]
    else:
        distilled = ModelSamplingDiscrete().patch(distilled, "lcm", False)[0]
    out, ev = steady_state(mods, events, base, distilled, connect=True)  # the schedule follows the distilled model
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    assert_equal(out, stock_chain(mods, base, distilled))


def test_lora_whose_keys_match_nothing(mods, events):
    """Same weights, new patches_uuid: stock ComfyUI still unpatches and moves the model at every switch."""
    base = tm.make_model("sdxl", 15)
    distilled = with_lora(base, rl.unmatched_lora())
    assert not distilled.patches and distilled.patches_uuid != base.patches_uuid
    out, ev = steady_state(mods, events, base, distilled)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    assert mods["lp"].pair_for(base, distilled).keys == []
    zero(events)
    ref = stock_chain(mods, base, distilled)
    assert events["load"] >= 1
    assert_equal(out, ref)


def test_strength_zero(mods, events):
    import nodes

    base = tm.make_model("sdxl", 16)
    assert nodes.LoraLoader().load_lora(base, None, "unused.safetensors", 0.0, 0.0)[0] is base  # stock: no clone
    distilled = with_lora(base, dmd_lora(base), 0.0)  # patches of strength 0
    out, ev = steady_state(mods, events, base, distilled)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    assert_equal(out, stock_chain(mods, base, distilled))


def test_same_clone_on_both_sides_is_plain_stock(mods):
    m = tm.make_model("sdxl", 17)
    assert mods["lp"].base_segment_model(m, m) is m
    twin = m.clone()  # same patches_uuid: nothing to save
    assert mods["lp"].base_segment_model(m, twin) is m and mods["lp"].pair_for(m, twin) is None
    assert_equal(hybrid(mods, m, m), stock_chain(mods, m, m))
    assert_equal(hybrid(mods, m, twin, connect=True), stock_chain(mods, m, twin))


def test_separate_models_are_untouched(mods):
    a, b = tm.make_model("sdxl", 18), tm.make_model("sdxl", 19)
    assert mods["lp"].base_segment_model(a, b) is a


def plain_weights(model, patches):
    """The weights ComfyUI gives a clone with ``patches``: its own patch_weight_to_device on the originals."""
    out = {}
    for k, p in model.model.state_dict().items():
        bk = model.backup.get(k)
        w = (bk.weight if bk is not None else p).to(torch.float32, copy=True)
        out[k] = comfy.lora.calculate_weight(patches[k], w, k).to(p.dtype) if k in patches else w.to(p.dtype)
    return out


def test_base_alone_before_and_after_a_hybrid_gets_plain_base_weights(mods):
    root = tm.make_model("sdxl", 20)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=2, seed=6, only="attn"))
    distilled = with_lora(root, dmd_lora(root))

    def base_alone():
        pos, neg = conds()
        x = tm.empty_latent(2)["samples"]
        sig = mods["sampling"].model_schedule(base, 4, "lcm")
        noise = comfy.sample.prepare_noise(x, 1)
        return comfy.sample.sample_custom(base, noise, 1.0, comfy.samplers.sampler_object("lcm"), sig, pos, neg, x)

    before = base_alone()
    for _ in range(3):
        hybrid(mods, base, distilled)
    after = base_alone()
    assert torch.equal(before, after)
    assert base.model.current_weight_patches_uuid == base.patches_uuid
    expected = plain_weights(base, base.patches)
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert_equal(hybrid(mods, base, distilled), stock_chain(mods, base, distilled))


def test_extra_memory_goes_with_the_models(mods):
    lp = mods["lp"]

    def run():
        base = tm.make_model("sdxl", 21)
        distilled = with_lora(base, dmd_lora(base))
        for _ in range(2):
            hybrid(mods, base, distilled)
        pair = lp.pair_for(base, distilled)
        held = pair.copies
        assert held is not None and held.loaded_size() == held.model_size() == pair.copies_bytes
        assert any(lm.model is held for lm in mm.current_loaded_models)  # accounted by model_management
        return weakref.ref(pair)

    pair = run()
    gc.collect()
    mm.cleanup_models()
    assert pair() is None  # the pair lived in the base MODEL's attachment, keyed by the distilled MODEL
    assert not any(type(getattr(lm.model, "model", None)).__name__ == "_Held" for lm in mm.current_loaded_models)


def ulps(est: torch.Tensor, exact: torch.Tensor, merged: torch.Tensor) -> float:
    """Largest difference in units in the last place (of the weight dtype) of the larger of the exact base weight
    and the merged weight it was made from: the delta path rounds the merge once more than ComfyUI does."""
    info = torch.finfo(exact.dtype)
    e = torch.maximum(exact.double().abs(), merged.double().abs()).clamp_min(info.tiny)
    ulp = torch.exp2(torch.floor(torch.log2(e))) * info.eps
    return float(((est.double() - exact.double()).abs() / ulp).max())


@pytest.fixture
def forward_time(monkeypatch, mods):
    monkeypatch.setattr(mods["lp"], "RESIDENT_BASE_WEIGHTS", False)


def test_delta_path_difference_is_measured_and_small(mods, events, forward_time):
    """No resident copies: W_merged - dW_distilled + dW_base per layer at each base forward. Weights within a
    few units in the last place; the hybrid's latents within 1e-6 of their RMS (float32) of the stock chain."""
    root = tm.make_model("sdxl", 22)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=2, seed=6), 0.7)
    distilled = with_lora(base, dmd_lora(root))
    out, ev = steady_state(mods, events, base, distilled)
    assert ev == {"unpatch": 0, "patch": 0, "load": 0}, ev
    ref = stock_chain(mods, base, distilled)
    diff = mods["maths"].difference(out[0], ref[0])
    assert 0 < diff["relative"] < 1e-6, diff
    assert mods["maths"].difference(out[1], ref[1])["relative"] < 1e-6


@pytest.mark.parametrize(
    "dtype,lora_dtype",
    [(torch.float32, torch.float32), (torch.float16, torch.float32), (torch.float16, torch.float16)],
    ids=["fp32", "fp16-fp32-lora", "fp16-fp16-lora"],
)
def test_delta_weights_within_ulps_of_comfyui_base_weights(mods, forward_time, dtype, lora_dtype):
    import comfy.supported_models as sm

    from ddistill_dev.models import random_checkpoints as rc

    cfg = dict(tm.TINY_UNET, context_dim=2048, adm_in_channels=2816, num_classes="sequential")
    _, root = rc.unet_model(sm.SDXL, cfg, seed=3, device="cpu", dtype=dtype)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=4, seed=6, scale=0.3, dtype=lora_dtype), 0.7)
    distilled = with_lora(base, rl.lora_state_dict(root.model, rank=8, seed=7, scale=1.0, dtype=lora_dtype))
    mm.load_models_gpu([distilled])
    pair = mods["lp"].pair_for(base, distilled)
    pair.place(distilled, 0)
    worst = 0.0
    exact_base = plain_weights(base, base.patches)
    with torch.no_grad():
        for k in pair.keys:
            fn = next(fl[0] for m, attr, fl in pair.plan.funcs if m is k.module and attr == k.fn_attr)
            assert fn.terms is not None  # plain LoRA terms: one addmm_ each
            merged = k.param().detach()
            worst = max(worst, ulps(fn(merged.clone()), exact_base[k.key], merged))
    print(f"delta path, weights {dtype}, LoRA {lora_dtype}: worst {worst:.2f} ulp")
    assert worst <= 2.0, worst
    assert len(pair.delta_keys) == len(pair.keys) > 0


def test_delta_never_writes_a_weight_comfyui_keeps(mods, forward_time):
    """Dynamic VRAM hands the weight functions the weight its VBAR keeps for later forwards: a delta made with
    ``fresh=False`` (as the pair makes them for Dynamic VRAM layers) leaves it as it was and gives the same base
    weight as the in-place one on a copy (ComfyUI's ordinary cast path passes its own copy: changed in place)."""
    root = tm.make_model("sdxl", 24)
    base = with_lora(root, rl.lora_state_dict(root.model, rank=2, seed=6), 0.7)
    distilled = with_lora(base, dmd_lora(root))
    mm.load_models_gpu([distilled])
    pair = mods["lp"].pair_for(base, distilled)
    pair.place(distilled, 0)
    k = pair.keys[0]
    fn = next(fl[0] for m, attr, fl in pair.plan.funcs if m is k.module and attr == k.fn_attr)
    kept = mods["lw"].BaseWeight(k, delta=fn.delta, fresh=False)
    with torch.no_grad():
        merged = k.param().detach().clone()
        before = merged.clone()
        out = kept(merged)
        assert torch.equal(merged, before) and out.data_ptr() != merged.data_ptr()
        copy = merged.clone()
        assert torch.equal(fn(copy), out) and not torch.equal(copy, before)  # in place on ComfyUI's own copy


@pytest.mark.parametrize("resident", [True, False], ids=["copies", "weight-functions"])
def test_lowvram_layers_get_exact_base_weights(mods, resident, monkeypatch):
    """Layers ComfyUI has partially unloaded (lowvram: original weight + LowVramPatch of the distilled patches):
    their patch is replaced by the base version (exact), merged layers as in the other tests."""
    lp = mods["lp"]
    monkeypatch.setattr(lp, "RESIDENT_BASE_WEIGHTS", resident)
    root = tm.make_model("sdxl", 23)
    base = root
    distilled = with_lora(root, dmd_lora(root), 0.9)
    distilled.patches = {k: [(s, v, 0.9, o, f) for s, v, _sm, o, f in p] for k, p in distilled.patches.items()}
    pair = lp.pair_for(base, distilled)
    assert not any(k.additive for k in pair.keys)  # strength_model 0.9: made from the original weights, exactly
    runner = pair.runner()
    mm.load_models_gpu([runner])
    pair.place(runner, 0)
    runner.partially_unload(runner.offload_device, runner.model_size() // 2)
    assert runner.model.model_lowvram and runner.model.current_weight_patches_uuid == distilled.patches_uuid
    pair.plan = pair._make_plan(runner.model)
    lowvram = [k for k in pair.keys if k.key not in pair.backup]
    assert lowvram and any(
        isinstance(f, comfy.model_patcher.LowVramPatch) for k in lowvram for f in getattr(k.module, k.fn_attr)
    )
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([3.0, 3.0])
    ctx = tm.make_conditioning("sdxl", 2, seed=1)[0][0]
    y = torch.randn(2, 2816, generator=torch.Generator().manual_seed(1))
    state = pair.plan.enter()
    try:
        got = runner.model.apply_model(x, sigma, c_crossattn=ctx, y=y)
    finally:
        pair.plan.exit(state)
    mm.load_models_gpu([base])  # stock: ComfyUI unpatches and loads the base weights
    want = base.model.apply_model(x, sigma, c_crossattn=ctx, y=y)
    assert torch.equal(got, want), (got - want).abs().max()


def test_pairs_with_hooks_keep_the_stock_path(mods):
    import comfy.hooks

    base = tm.make_model("sdxl", 24)
    distilled = with_lora(base, dmd_lora(base))
    hooked = distilled.clone()
    hooked.hook_patches = {comfy.hooks._HookRef(): {}}
    assert "hook patches" in mods["lp"].fallback_reason(base, hooked)
    assert mods["lp"].base_segment_model(base, hooked) is base
    pos, neg = conds()
    assert mods["lp"].base_segment_model(base, distilled, (pos, neg)) is not base  # the pair path
    hooked_cond = [[pos[0][0], {**pos[0][1], "hooks": comfy.hooks.HookGroup()}]]
    assert mods["lp"].base_segment_model(base, distilled, (hooked_cond, neg)) is base


# -- through the real server: LoraLoaderModelOnly loading a .safetensors LoRA onto the same model


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory):
    from ddistill_dev.host.comfy_server import ComfyServer

    base_dir = tmp_path_factory.mktemp("comfy_lora")
    model = tm.make_model("sdxl", 1)  # the weights DDTest_TinyModel (kind sdxl, seed 1) builds
    rl.save(base_dir / "models" / "loras" / "tiny_dmd.safetensors", dmd_lora(model))
    with ComfyServer(base_dir) as s:
        yield s


def lora_graph(seed, stock=False):
    from ddistill_dev.gpu import runner_graphs as rg

    prompt = rg.hybrid_prompt(batch=2, seed=seed)
    prompt["2"] = rg.node(
        "LoraLoaderModelOnly", {"model": ["1", 0], "lora_name": "tiny_dmd.safetensors", "strength_model": 1.0}
    )
    if stock:  # the same two segments with stock nodes only
        from ddistill.schedules import derive_seed

        for n in ("5", "6"):
            del prompt[n]
        pos = neg = ["3", 0]
        prompt["10"] = rg.node("DDistill_DistilledSchedule", {"model": ["2", 0], "steps": 4, "scheduler": "lcm"})
        prompt["11"] = rg.node("SplitSigmas", {"sigmas": ["10", 0], "step": 1})
        prompt["12"] = rg.ksampler_select("lcm")
        prompt["13"] = rg.sampler_custom(["1", 0], seed, pos, neg, ["12", 0], ["11", 0], ["4", 0])
        rest = derive_seed(seed, 1)
        prompt["14"] = rg.sampler_custom(["2", 0], rest, pos, neg, ["12", 0], ["11", 1], ["13", 0], add_noise=False)
        prompt["7"]["inputs"]["samples"] = ["14", 0]
    return prompt


def test_server_lora_loader_pair_steady_state_and_equal_to_stock_graph(lora_server):
    """The hybrid graph with LoraLoaderModelOnly on the base checkpoint: from the third run on, no weight (re)load
    at all (ComfyUI logs each load); the stock SamplerCustom graph on the same clones loads at each switch and
    gives the same latent, bit for bit."""
    for seed in (3, 4):
        assert lora_server.run(lora_graph(seed))["status"]["status_str"] == "success"
    before = lora_server.log_text()
    entry = lora_server.run(lora_graph(5))
    during = lora_server.log_text()[len(before) :]
    assert entry["status"]["status_str"] == "success"
    assert weight_loads(during) == 0, during
    assert lora_server.log_text().count("clones of one SDXL with different weight patches") == 1
    hybrid_latent = lora_server.saved_latent(entry, "7")
    before = lora_server.log_text()
    stock = lora_server.run(lora_graph(5, stock=True))
    assert weight_loads(lora_server.log_text()[len(before) :]) >= 2  # stock: unpatch + re-patch at each switch
    assert torch.equal(hybrid_latent, lora_server.saved_latent(stock, "7"))


def test_factor_holder_for_the_forward_time_weights(mods, forward_time, monkeypatch):
    """Where the LoRA factors are worth holding on the load device (a GPU), the delta path holds those of the
    weights it makes, in a ModelPatcher that model_management loads; results do not depend on where they are."""
    lp = mods["lp"]
    root = tm.make_model("sdxl", 25)
    distilled = with_lora(root, dmd_lora(root))
    without = [hybrid(mods, root, distilled, connect=True) for _ in range(2)][-1]
    monkeypatch.setattr(lp, "holds_factors", lambda device: True)
    with_held = [hybrid(mods, root, distilled, connect=True) for _ in range(2)][-1]
    pair = lp.pair_for(root, distilled)
    lora_tensors = {id(t) for k in pair.keys for q in k.distilled_rest for t in mods["lw"].tensors_of(q)}
    assert pair.factors is not None and set(pair.factor_ids) == lora_tensors
    assert pair.factors.loaded_size() == pair.factors.model_size() > 0
    assert any(lm.model is pair.factors for lm in mm.current_loaded_models)
    assert_equal(with_held, without)


class _DynamicStub:
    """A loaded Dynamic VRAM model as model_management lists it (ComfyUI 0.33+ makes ModelPatcherDynamic only for
    a GPU, so none exists on the CPU these tests run on): is_dynamic, its VBAR's loaded size, its model."""

    def __init__(self, model, loaded, dynamic=True):
        self.model, self._loaded, self._dynamic = model, loaded, dynamic

    def is_dynamic(self):
        return self._dynamic

    def loaded_size(self):
        return self._loaded


def test_factors_count_memory_dynamic_vram_frees_on_demand(mods, monkeypatch):
    """The delta path's factors may take memory that Dynamic VRAM gives back on demand (the loaded size of the
    dynamic models on that device, each model once: clones share its VBAR), as ComfyUI's free_memory counts it for
    a dynamic model; plain ModelPatchers and other devices count nothing."""
    lp = mods["lp"]
    gpu, other = torch.device("cuda", 0), torch.device("cuda", 1)
    shared, lone = object(), object()

    def loaded(patcher, device):
        return type("LoadedModel", (), {"model": patcher, "device": device})()

    monkeypatch.setattr(
        mm,
        "current_loaded_models",
        [
            loaded(_DynamicStub(shared, 3e9), gpu),
            loaded(_DynamicStub(shared, 3e9), gpu),  # a clone: the same VBAR
            loaded(_DynamicStub(lone, 1e9), gpu),
            loaded(_DynamicStub(object(), 5e9, dynamic=False), gpu),  # plain ModelPatcher: loaded, not on demand
            loaded(_DynamicStub(object(), 7e9), other),
            loaded(None, gpu),  # a LoadedModel whose patcher is gone
        ],
    )
    assert lp.LoraPair._on_demand(gpu) == 4e9
    assert lp.LoraPair._on_demand(other) == 7e9
    monkeypatch.setattr(mm, "current_loaded_models", [])
    assert lp.LoraPair._on_demand(gpu) == 0.0
    free = 2e9
    monkeypatch.setattr(mm, "get_free_memory", lambda device=None, torch_free_too=False: free)
    need = lp.LoraPair._needed(1e9, 0)
    assert need > free
    assert not lp.LoraPair._fits(1e9, gpu, 0)
    assert lp.LoraPair._fits(1e9, gpu, 0, on_demand=need - free + 1)
    assert not lp.LoraPair._fits(1e9, gpu, 0, on_demand=need - free - 1)


@pytest.fixture
def load_calls(monkeypatch):
    """The MODELs of each load_models_gpu call (wrapped in this test only)."""
    calls = []
    load = mm.load_models_gpu

    def counted(models, *args, **kwargs):
        calls.append(list(models))
        return load(models, *args, **kwargs)

    monkeypatch.setattr(mm, "load_models_gpu", counted)
    return calls


@pytest.mark.parametrize("case", ["dynamic", "dynamic, model_sampling patch on the base", "plain ModelPatcher"])
def test_dynamic_vram_base_segment_reuses_the_current_load(mods, load_calls, monkeypatch, case, caplog):
    """Under Dynamic VRAM (ModelPatcherDynamic walks the whole model at every load_models_gpu) the base segment runs
    on ComfyUI's current load of the distilled weights: one load_models_gpu per hybrid (the Distilled Continue's),
    bit-equal to the stock chain. A load that would set the model up otherwise (an object patch on one side only)
    and ComfyUI's plain ModelPatcher keep the runner's own load. (ComfyUI makes ModelPatcherDynamic only for a
    GPU, so here the pack is told that these CPU models are dynamic.)"""
    lp = mods["lp"]
    if case != "plain ModelPatcher":
        if "for_dynamic" not in inspect.signature(mm.free_memory).parameters:
            pytest.skip(f"ComfyUI {comfyui_version()} has no Dynamic VRAM")
        monkeypatch.setattr(lp, "dynamic_patcher", lambda patcher: True)
    root = tm.make_model("sdxl", 27)
    base, distilled = root, with_lora(root, dmd_lora(root))
    if "model_sampling" in case:
        base = ModelSamplingDiscrete().patch(base, "eps", True)[0]
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            hybrid(mods, base, distilled, connect=True)
        load_calls.clear()
        out = hybrid(mods, base, distilled, connect=True)
    ours = [ms for ms in load_calls if any(m.model is root.model for m in ms)]
    reuse = case == "dynamic"
    assert len(ours) == (1 if reuse else 2), ours
    assert ours[-1][0] is distilled
    assert lp.pair_for(base, distilled).reused is reuse
    assert_equal(out, stock_chain(mods, base, distilled))
    said = [r.getMessage() for r in caplog.records if "weights differ" in r.getMessage()]  # on each change
    assert ("current Dynamic VRAM load reused" in said[-1]) is reuse, said


def test_factors_in_on_demand_memory_stop_once_comfyui_takes_them_back(mods, forward_time, monkeypatch):
    """Factors that only fit in memory Dynamic VRAM frees on demand are held there until ComfyUI unloads them once
    (its next load wanted that memory: holding them again would evict the distilled model's pages at every hybrid);
    from then on only free memory holds them. Results never depend on where they are."""
    lp = mods["lp"]
    root = tm.make_model("sdxl", 28)
    distilled = with_lora(root, dmd_lora(root))
    plain = [hybrid(mods, root, distilled, connect=True) for _ in range(2)][-1]  # the steady state
    monkeypatch.setattr(lp, "holds_factors", lambda device: True)
    monkeypatch.setattr(lp.LoraPair, "_on_demand", staticmethod(lambda device: 1e15))
    monkeypatch.setattr(lp.LoraPair, "_needed", staticmethod(lambda nbytes, memory_required: 1e14))  # > free
    out = hybrid(mods, root, distilled, connect=True)
    pair = lp.pair_for(root, distilled)
    assert pair.factors is not None and pair.factors.loaded_size() == pair.factors.model_size() > 0
    assert pair.factors_on_demand and pair.on_demand_ok
    assert_equal(out, plain)
    held = next(lm for lm in mm.current_loaded_models if lm.model is pair.factors)
    keep = [lm for lm in mm.current_loaded_models if lm is not held]
    mm.free_memory(1e30, held.device, keep_loaded=keep)  # ComfyUI takes that memory back for its next load
    assert pair.factors.loaded_size() == 0
    out = hybrid(mods, root, distilled, connect=True)
    assert not pair.on_demand_ok and pair.factors.loaded_size() == 0  # not held again in on-demand memory
    assert_equal(out, plain)
    monkeypatch.undo()
    monkeypatch.setattr(lp, "RESIDENT_BASE_WEIGHTS", False)
    monkeypatch.setattr(lp, "holds_factors", lambda device: True)
    hybrid(mods, root, distilled, connect=True)  # free memory again: held there
    assert pair.factors.loaded_size() == pair.factors.model_size()


def test_separate_checkpoints_load_as_the_stock_chain(mods, monkeypatch):
    """Two separate models (not clones of one): the pack keeps ComfyUI's own path, so each segment asks
    load_models_gpu for its own model with the memory the stock chain asks (the same calls in the same order, the
    same arguments), never for both models at once, and no pair state is made."""
    calls = []
    load = mm.load_models_gpu

    def recorded(models, *args, **kwargs):
        calls.append(([id(m.model) for m in models], args, sorted(kwargs.items())))
        return load(models, *args, **kwargs)

    monkeypatch.setattr(mm, "load_models_gpu", recorded)
    base, distilled = tm.make_model("sdxl", 31), tm.make_model("sdxl", 32)
    seen = {}
    for name, run in (("stock", stock_chain), ("pack", lambda *a: hybrid(*a, connect=True))):
        run(mods, base, distilled)  # the steady state: the second run of each
        calls.clear()
        run(mods, base, distilled)
        seen[name] = list(calls)
    assert seen["pack"] == seen["stock"], seen
    assert [ids for ids, _a, _k in seen["pack"]] == [[id(base.model)], [id(distilled.model)]]
    assert mods["lp"].existing_pair(base, distilled) is None
