"""LoRA pairs on quantized weights as users load them: a tiny Wan model written as an fp8_scaled
file (ComfyUI 0.3.75: ``scaled_fp8_ops``, plain fp8 weights the layer scales; 0.33: ``QuantizedTensor`` of layout
``TensorCoreFP8E4M3Layout``) and, on 0.33, as ``comfy_quant`` files of each ``QuantizedTensor`` format the CPU can
build (``ddistill_dev.models.quantized_files``), loaded with the stock UNETLoader and given a LoRA with the stock
LoraLoaderModelOnly; also a plain file loaded with UNETLoader's weight_dtype fp8_e4m3fn (plain fp8 weights). The
pair keeps exact base copies made as ComfyUI patches such a weight (the layer's ``convert_weight``,
``comfy.lora.calculate_weight``, its ``set_weight(..., return_weight=True)`` with the key's rounding seed), at their
stored size: the hybrid runs without unpatch / re-patch and equals the stock two-sampler chain bit for bit. Without
resident copies (``RESIDENT_BASE_WEIGHTS`` False) the same base weights are made per layer at each base forward from
the original stored weight; measured against the stock chain (README, "LoRA-distilled pairs")."""

import logging

import folder_paths
import pytest
import torch
from lora_chain import KIND, count_weight_events, hybrid, lora, pair_lines, stock_chain, zero

import nodes
from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.models import quantized_files as qf
from ddistill_dev.models import random_lora as rl
from ddistill_dev.models import tiny_models as tm

FORMATS = ("fp8_e4m3fn-weights", "fp8_scaled", *(f"comfy_quant-{f}" for f in qf.COMFY_QUANT_FORMATS))
# The forward-time variant's bound (README "LoRA-distilled pairs"), max and RMS of the final latent's difference from
# the stock chain, relative to its RMS, by (format, LoRA); else bit for bit, or with bias patches BIAS_DELTA: float32
# biases (0.33's mixed-precision ops) take the delta path, about an fp32 ulp (fp8-stored ones are made exactly).
FORWARD_TIME_BOUND = {
    ("comfy_quant-int8_tensorwise", "dmd"): 2e-3,
    ("comfy_quant-int8_tensorwise", "dmd_bias"): 1e-2,  # the INT8 paths quantize activations: differences grow
    ("comfy_quant-asym_w4a8_int8", "dmd_bias"): 3e-4,
}
BIAS_DELTA = 3e-6


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        lp="nodes.lora_pair", hn="nodes.hybrid_nodes", sampling="nodes.sampling", maths="ddistill.lora_maths"
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """models/unet and models/loras of this module's tests, listed in ComfyUI's folder_paths; the LoRAs."""
    base = tmp_path_factory.mktemp("quantized_models")
    plain = tm.make_family_model(KIND, 1).model  # the keys and shapes of the quantized files
    rl.save(base / "loras" / "dmd.safetensors", rl.lora_state_dict(plain, rank=4, seed=3))
    rl.save(base / "loras" / "style.safetensors", rl.lora_state_dict(plain, rank=2, seed=6, only="attn"))
    rl.save(base / "loras" / "dmd_bias.safetensors", rl.lora_state_dict(plain, rank=4, seed=3, bias_diff=0.5))
    mp = pytest.MonkeyPatch()
    for name in ("unet", "loras"):
        key = folder_paths.map_legacy(name)
        paths, exts = folder_paths.folder_names_and_paths[key]
        mp.setitem(folder_paths.folder_names_and_paths, key, ([str(base / name), *paths], exts))
    yield base
    mp.undo()


@pytest.fixture(autouse=True)
def inference_mode():
    """ComfyUI's executor runs every node under ``torch.inference_mode()`` (execution.py); so do these tests (its
    fp8_scaled ``set_weight`` rounds with ``out=`` ops that autograd refuses)."""
    with torch.inference_mode():
        yield


_WRITTEN: dict[str, str] = {}


def model_file(folders, fmt: str) -> str:
    """The file of ``fmt`` (written once), or a skip naming why this ComfyUI cannot build or load it on the CPU."""
    if fmt not in _WRITTEN:
        name = f"tiny_wan_{fmt}.safetensors"
        if fmt == "fp8_scaled":
            qf.write_scaled_fp8(folders / "unet" / name, KIND, seed=1)
        elif fmt == "fp8_e4m3fn-weights":
            qf.write_plain(folders / "unet" / name, KIND, seed=1)
        else:
            why = qf.comfy_quant_available(fmt.split("-", 1)[1])
            if why:
                _WRITTEN[fmt] = "skip: " + why
            else:
                qf.write_comfy_quant(folders / "unet" / name, fmt.split("-", 1)[1], KIND, seed=1)
        _WRITTEN.setdefault(fmt, name)
    name = _WRITTEN[fmt]
    if name.startswith("skip: "):
        pytest.skip(f"ComfyUI {comfyui_version()}: {name[6:]}")
    return name


def load(folders, fmt):
    """The model of ``fmt`` as UNETLoader loads it; ``fp8_e4m3fn-weights``: a plain file with its weight_dtype
    fp8_e4m3fn (every weight a plain fp8 tensor, no scale)."""
    weight_dtype = "fp8_e4m3fn" if fmt == "fp8_e4m3fn-weights" else "default"
    return nodes.UNETLoader().load_unet(model_file(folders, fmt), weight_dtype)[0]


def quantized_kind(weight) -> str | None:
    """What makes a loaded weight quantized: ComfyUI's QuantizedTensor (its layout), an fp8 dtype, else None."""
    if type(weight).__name__ == "QuantizedTensor":
        return weight._layout_cls
    return str(weight.dtype) if weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) else None


@pytest.fixture
def events(monkeypatch):
    return count_weight_events(monkeypatch)


def steady_hybrid(mods, base, distilled, events, connect: bool = True):
    """The third hybrid of a pair (the first two make its state and warm up): no unpatch or re-patch of a weight."""
    hybrid(mods, base, distilled, connect, runs=2)
    zero(events)
    out = hybrid(mods, base, distilled, connect)
    assert (events["unpatch"], events["patch"]) == (0, 0), events  # no unpatch / re-patch per hybrid
    return out


@pytest.mark.parametrize("connect", [False, True], ids=["unconnected", "connected"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_lora_pair_fast_path_equals_the_stock_chain(mods, folders, events, fmt, connect, caplog):
    lp = mods["lp"]
    base = load(folders, fmt)
    distilled = lora(base, "dmd.safetensors")
    weights = dict(base.model.named_parameters())
    kinds = {quantized_kind(weights[k]) for k in distilled.patches if k in weights}
    assert kinds - {None}, kinds  # LoRA on quantized weights (and on the float ones beside them)
    assert lp.fallback_reason(base, distilled) is None
    with caplog.at_level(logging.INFO):
        out = steady_hybrid(mods, base, distilled, events, connect)
    lines = pair_lines(caplog)
    assert len(lines) == 1 and "swapped in from exact copies" in lines[0] and "stock loading" not in lines[0], lines
    pair = lp.pair_for(base, distilled)
    converted = [k for k in pair.keys if k.converted]
    copies = dict(zip((k.key for k in pair.keys), pair.copies.model.values()))
    quantized = [k.key for k in pair.keys if quantized_kind(weights[k.key])]
    assert quantized and all(quantized_kind(copies[k]) == quantized_kind(weights[k]) for k in quantized)
    assert pair.copies_bytes == pair.copies.model_size() == pair.copies.loaded_size()  # their stored size
    stored = sum(weights[k.key].nbytes for k in pair.keys)
    assert pair.copies_bytes == stored
    ref = stock_chain(mods, base, distilled)
    assert events["unpatch"] >= 1 and events["patch"] > 0  # the stock chain unpatches and re-patches
    both = stock_chain(mods, distilled, distilled)
    print(
        f"\n[{fmt}] ComfyUI {comfyui_version()}: |hybrid - stock| {float((out[0] - ref[0]).abs().max()):.3g}, "
        f"{len(quantized)} quantized, {len(converted)} converted of {len(pair.keys)}, copies {pair.copies_bytes} B"
    )
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert not torch.equal(out[1], both[1])  # the base step used the base weights


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_style_lora_on_both_sides(mods, folders, events, fmt):
    """A style LoRA before the split (its patches shared, so the base copies are re-made through set_weight) and
    the distilled LoRA at 0.8: exact."""
    root = load(folders, fmt)
    base = lora(root, "style.safetensors", 0.7)
    distilled = lora(base, "dmd.safetensors", 0.8)
    out = steady_hybrid(mods, base, distilled, events)
    pair = mods["lp"].pair_for(base, distilled)
    assert any(k.base and (k.converted or k.dtype == torch.float8_e4m3fn) for k in pair.keys)  # re-made quantized
    ref = stock_chain(mods, base, distilled)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


@pytest.mark.parametrize("lora_file", ["dmd", "dmd_bias"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_forward_time_variant(mods, folders, events, fmt, lora_file, monkeypatch):
    """No resident copies: each differing converted weight is made per layer at each base forward from its stored
    original, as a copy is made, and swapped in for the layer's forward (a weight function makes it where the weight
    is cast without the forward); a merged plain fp8 weight (or bias) is made from its original too (the delta's
    rounding would be an fp8 ulp). Also with the LoRA's ``diff_b`` bias patches (``dmd_bias``). Measured against
    the stock chain (max and RMS of the difference relative to the latent's RMS); the README's table gives the
    bound."""
    monkeypatch.setattr(mods["lp"], "RESIDENT_BASE_WEIGHTS", False)
    root = load(folders, fmt)
    base = lora(root, "style.safetensors", 0.7)
    distilled = lora(base, f"{lora_file}.safetensors", 0.8)
    out = steady_hybrid(mods, base, distilled, events)
    pair = mods["lp"].pair_for(base, distilled)
    assert pair.copies is None and pair.plan.counts()[1] == sum(not k.companion for k in pair.keys)
    ref = stock_chain(mods, base, distilled)
    both = stock_chain(mods, distilled, distilled)
    d = mods["maths"].difference(out[0], ref[0])
    rms_rel = float((out[0] - ref[0]).double().pow(2).mean().sqrt()) / d["rms"] if d["rms"] else 0.0
    off = mods["maths"].difference(both[0], ref[0])["relative"]
    print(
        f"\n[{fmt} forward-time] ComfyUI {comfyui_version()}: max {d['relative']:.3g}, RMS {rms_rel:.3g} of the "
        f"latent RMS {d['rms']:.4g}; LoRA model for both {off:.3g}"
    )
    # exact, but where the model casts a layer's weight without the layer's forward: 0.33's linear_input_act (Wan's
    # FFN) runs INT8 layers through ck.int8_linear on the stored weight, which a weight function (dequantized, as
    # ComfyUI's cast path hands it) cannot reproduce (measured: max 9.2e-4, RMS 7.4e-5 of the latent RMS)
    bound = FORWARD_TIME_BOUND.get((fmt, lora_file), BIAS_DELTA if lora_file == "dmd_bias" else 0.0)
    assert d["relative"] <= bound and rms_rel <= bound, d
    if bound == 0.0:
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert off > 1e-3
