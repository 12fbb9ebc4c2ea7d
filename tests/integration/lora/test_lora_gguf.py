"""LoRA pairs on GGUF models. city96/ComfyUI-GGUF (commit 795e451, the archive beside the checkout in
../shared/comfyui/, ``gguf_files.pack_archive``) is loaded by path as ComfyUI loads a custom node folder; a tiny Wan
model is written as a Q8_0 ``.gguf`` file (``ddistill_dev.models.gguf_files``), loaded with its ``UnetLoaderGGUF``
and given LoRAs with the stock LoraLoaderModelOnly. GGUF attaches a MODEL's patch list to each quantized tensor
(``GGMLTensor.patches``: (patches, key) pairs, no backup of the original) and its layers apply it at every forward
from the quantized data, ignoring ComfyUI's weight functions. The pair presents the base weights by giving those
tensors the base MODEL's own patch list for the base forward (what GGUF's own load of the base model gives them): no
unpatch, re-patch or copy, and the hybrid equals the stock two-segment chain bit for bit, never the LoRA model on
both segments. A tensor carrying patches in another form keeps the stock path, named in the log."""

import importlib
import importlib.util
import logging
import sys

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sample
import comfy.samplers
import comfy.sd
import folder_paths
import pytest
import torch
from lora_chain import KIND, count_weight_events, hybrid, lora, pair_lines, stock_chain, zero

from ddistill_dev.host import comfy_host
from ddistill_dev.host.comfy_host import comfyui_version
from ddistill_dev.models import gguf_files
from ddistill_dev.models import random_lora as rl
from ddistill_dev.models import tiny_models as tm

pytest.importorskip("gguf", reason="the gguf package (tests/requirements.txt) is not installed")

GGUF_MODULE = gguf_files.PACK_MODULE
FAST = "weights differ: 16 given the base model's own patch list (applied by their layers)"


@pytest.fixture(scope="module")
def gguf_pack(tmp_path_factory):
    """ComfyUI-GGUF extracted into a temporary folder and imported as ComfyUI imports ``custom_nodes/ComfyUI-GGUF``
    (its NODE_CLASS_MAPPINGS are not registered with this process's ComfyUI: the other tests see the stock set)."""
    if GGUF_MODULE in sys.modules:
        return sys.modules[GGUF_MODULE]
    archive = gguf_files.pack_archive()
    if not archive.is_file():
        pytest.skip(f"no ComfyUI-GGUF source archive at {archive} (../shared/comfyui/; or set DD_GGUF_ARCHIVE)")
    return comfy_host.load_node_folder(gguf_files.extract_pack(tmp_path_factory.mktemp("custom_nodes")), GGUF_MODULE)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """models/unet (the GGUF files ``load_gguf`` writes) and LoRAs for the tiny Wan model in models/loras, in
    folders ComfyUI's folder_paths lists for this module's tests."""
    base = tmp_path_factory.mktemp("gguf_models")
    plain = tm.make_family_model(KIND, 1).model  # the same keys and shapes as the GGUF model
    rl.save(base / "loras" / "dmd.safetensors", rl.lora_state_dict(plain, rank=4, seed=3))
    rl.save(base / "loras" / "style.safetensors", rl.lora_state_dict(plain, rank=2, seed=6, only="attn"))
    rl.save(base / "loras" / "dmd_ffn.safetensors", rl.lora_state_dict(plain, rank=4, seed=4, only="ffn"))
    rl.save(base / "loras" / "dmd_bias.safetensors", rl.lora_state_dict(plain, rank=4, seed=3, bias_diff=0.5))
    rl.save(base / "loras" / "unmatched.safetensors", rl.unmatched_lora())
    mp = pytest.MonkeyPatch()
    for name, sub in (("unet", "unet"), ("loras", "loras")):
        key = folder_paths.map_legacy(name)
        paths, exts = folder_paths.folder_names_and_paths[key]
        mp.setitem(folder_paths.folder_names_and_paths, key, ([str(base / sub), *paths], exts))
    yield base
    mp.undo()


@pytest.fixture(scope="module")
def mods(pack_modules):
    return pack_modules(
        lp="nodes.lora_pair", lw="nodes.lora_weights", hn="nodes.hybrid_nodes", sampling="nodes.sampling"
    )


def load_gguf(gguf_pack, files, qtype: str = "Q8_0"):
    """The tiny Wan model of seed 1 as a GGUF file of ``qtype`` (written once), loaded by UnetLoaderGGUF."""
    name = f"tiny_wan_{qtype.lower()}.gguf"
    if not (files / "unet" / name).is_file():
        gguf_files.write_family_gguf(files / "unet" / name, KIND, seed=1, qtype=qtype)
    return gguf_pack.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(name)[0]


def max_abs(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def rms(a) -> float:
    return float(a.double().pow(2).mean().sqrt())


def check_against_stock(mods, base, distilled, out, label):
    """``out`` equals the stock chain as closely as two runs of the stock chain agree (measured: bit for bit on the
    CPU) and is far from the LoRA model on both segments."""
    ref, ref_again = stock_chain(mods, base, distilled), stock_chain(mods, base, distilled)
    both = stock_chain(mods, distilled, distilled)
    tol = max(max_abs(ref[0], ref_again[0]), max_abs(ref[1], ref_again[1]))
    got = (max_abs(out[0], ref[0]), max_abs(out[1], ref[1]))
    off = max_abs(out[0], both[0])
    print(
        f"\n[gguf {label}] ComfyUI {comfyui_version()}: |hybrid - stock chain| max {got[0]:.3g} (handover "
        f"{got[1]:.3g}); |stock - stock again| {tol:.3g}; |hybrid - LoRA model for both| {off:.4g} at latent RMS "
        f"{rms(ref[0]):.4g}"
    )
    assert tol == 0.0  # ComfyUI's own GGUF path is deterministic here: the tolerance is bit equality
    assert got[0] <= tol and got[1] <= tol, got
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert off > 1e-3 * rms(ref[0]), off  # the base step used the base weights


@pytest.fixture
def events(monkeypatch):
    return count_weight_events(monkeypatch)


def patched_ggml(base, distilled) -> list[str]:
    """The distilled LoRA's keys, all of them GGUF's quantized tensors."""
    weights = dict(base.model.named_parameters())
    patched = [k for k in distilled.patches if k in weights]
    assert patched and all(type(weights[k]).__name__ == "GGMLTensor" for k in patched)
    return patched


@pytest.mark.parametrize("connect", [False, True], ids=["distilled-unconnected", "distilled-connected"])
def test_gguf_lora_pair_presents_the_base_patch_list_and_equals_the_stock_chain(
    mods, gguf_pack, files, events, connect, caplog
):
    lp = mods["lp"]
    base = load_gguf(gguf_pack, files)
    distilled = lora(base, "dmd.safetensors")
    patched = patched_ggml(base, distilled)
    assert lp.fallback_reason(base, distilled) is None
    with caplog.at_level(logging.INFO):
        hybrid(mods, base, distilled, connect, runs=2)
        zero(events)
        out = hybrid(mods, base, distilled, connect)
    assert (events["unpatch"], events["patch"]) == (0, 0), events  # no unpatch / re-patch per hybrid
    lines = pair_lines(caplog)
    assert len(lines) == 1 and FAST in lines[0] and "stock loading" not in lines[0], lines
    pair = lp.pair_for(base, distilled)
    assert pair.copies is None and len(pair.plan.carried) == len(patched)  # nothing held: no copy of any weight
    weights = dict(base.model.named_parameters())
    assert all(weights[k].patches and weights[k].patches[0][1] == k for k in patched)  # the distilled list is back
    check_against_stock(mods, base, distilled, out, f"dmd, {'connected' if connect else 'unconnected'}")


def test_gguf_style_lora_on_both_sides(mods, gguf_pack, files, events, caplog):
    """A style LoRA before the split (shared patches, so the base's own list is not empty) and the distilled LoRA at
    0.8 on one side: exact."""
    root = load_gguf(gguf_pack, files)
    base = lora(root, "style.safetensors", 0.7)
    distilled = lora(base, "dmd.safetensors", 0.8)
    with caplog.at_level(logging.INFO):
        hybrid(mods, base, distilled, connect=True, runs=2)
        zero(events)
        out = hybrid(mods, base, distilled, connect=True)
    assert (events["unpatch"], events["patch"]) == (0, 0), events
    pair = mods["lp"].pair_for(base, distilled)
    own = [o for _params, _name, o in pair.plan.carried]
    assert any(o and len(o[0][0]) == 1 for o in own) and any(not o for o in own)  # style-only keys; unpatched ones
    lines = pair_lines(caplog)
    assert len(lines) == 1 and "given the base model's own patch list" in lines[0], lines
    check_against_stock(mods, base, distilled, out, "style on both + dmd")


def test_gguf_patches_in_an_unknown_form_keep_the_stock_path(mods, gguf_pack, files, caplog):
    """A tensor whose own patches are not (patch list, key) pairs: the named stock path, and still exact."""
    lp = mods["lp"]
    base = load_gguf(gguf_pack, files)
    distilled = lora(base, "dmd.safetensors")
    key = patched_ggml(base, distilled)[0]
    weight = dict(base.model.named_parameters())[key]
    weight.patches = ["unknown"]
    try:
        why = lp.fallback_reason(base, distilled)
        assert (
            why == "its weights are GGMLTensor tensors (ComfyUI-GGUF) carrying patches in an unknown form (" + key + ")"
        )
        with caplog.at_level(logging.INFO):
            assert lp.base_segment_model(base, distilled) is base
        assert any(why in line and "stock loading" in line for line in pair_lines(caplog)), caplog.text
    finally:
        weight.patches = []
    out = hybrid(mods, base, distilled, connect=True, runs=2)
    check_against_stock(mods, base, distilled, out, "fallback")


def test_same_gguf_clone_on_both_sides_needs_no_fallback(mods, gguf_pack, files, caplog):
    lp = mods["lp"]
    m = load_gguf(gguf_pack, files)
    twin = m.clone()  # same patches_uuid: nothing differs, nothing to save
    assert lp.base_segment_model(m, m) is m
    assert lp.base_segment_model(m, twin) is m and lp.pair_for(m, twin) is None
    with caplog.at_level(logging.INFO):
        same = hybrid(mods, m, m, connect=True, runs=2)
        paired = hybrid(mods, m, twin, connect=True, runs=2)
    assert not pair_lines(caplog)
    for out, other in ((same, m), (paired, twin)):
        ref = stock_chain(mods, m, other)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_gguf_lora_whose_keys_match_nothing(mods, gguf_pack, files, caplog):
    """Same weights, new patches_uuid: no weight differs, so the pair path holds nothing and presents nothing (no
    GGML weight to get wrong); exact, no fallback."""
    lp = mods["lp"]
    base = load_gguf(gguf_pack, files)
    distilled = lora(base, "unmatched.safetensors")
    assert not distilled.patches and distilled.patches_uuid != base.patches_uuid
    assert lp.fallback_reason(base, distilled) is None
    with caplog.at_level(logging.INFO):
        out = hybrid(mods, base, distilled, connect=True, runs=2)
    assert lp.pair_for(base, distilled).keys == []
    assert not [line for line in pair_lines(caplog) if "stock loading" in line]
    ref = stock_chain(mods, base, distilled)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_what_decides_the_path_is_what_the_weight_is(mods, pack, gguf_pack, files):
    """The check reads the weight itself: plain tensors and Parameters of any dtype (the fast path) against a tensor
    that carries its own patches (GGUF's, or any) and other tensor subclasses (a quantized layout)."""
    maths = importlib.import_module(f"{pack.__name__}.ddistill.lora_maths")
    fw = maths.foreign_weight
    for dtype in (torch.float32, torch.float16, torch.bfloat16, getattr(torch, "float8_e4m3fn", torch.float16)):
        t = torch.zeros(4, 4, dtype=dtype)
        assert fw(t) is None and fw(torch.nn.Parameter(t, requires_grad=False)) is None
    ggml = next(p for p in load_gguf(gguf_pack, files).model.parameters() if type(p).__name__ == "GGMLTensor")
    assert fw(ggml) is None  # its own patches are (patch list, key) pairs: presented through them
    tagged = torch.zeros(2)
    tagged.patches = [([], "w")]
    assert fw(tagged) is None
    tagged.patches = "not a list"
    assert "carrying patches in an unknown form" in fw(tagged)

    class Packed(torch.Tensor):
        pass

    assert "a tensor subclass (a quantized layout)" in fw(torch.zeros(2).as_subclass(Packed))


def test_plain_weights_of_the_same_model_keep_the_fast_path(mods, caplog):
    """The same tiny Wan model with plain fp32 weights (what UNETLoader gives for a .safetensors file): the pair
    path, exact copies swapped in, bit-equal to the stock chain; no "string_to_seed has moved" warning (0.33)."""
    lp = mods["lp"]
    base = tm.make_family_model(KIND, 1)
    distilled = comfy.sd.load_lora_for_models(base, None, rl.lora_state_dict(base.model, rank=4, seed=3), 1.0, 0)[0]
    assert lp.fallback_reason(base, distilled) is None
    with caplog.at_level(logging.INFO):
        out = hybrid(mods, base, distilled, connect=True, runs=2)
    assert lp.pair_for(base, distilled) is not None
    assert any("swapped in from exact copies" in line for line in pair_lines(caplog)), caplog.text
    assert "string_to_seed has moved" not in caplog.text
    ref = stock_chain(mods, base, distilled)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_q8_0_quantizer_equals_the_gguf_package():
    """The benchmarks' Q8_0 quantizer (torch, on the tensor's device) writes the bytes of gguf's own, ties (x.5 of a
    block's step: away from zero), all-zero blocks and rows of several blocks included."""
    import gguf

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 96, generator=g)
    x[1] = 0.0
    x[2, :32] = torch.arange(32) - 15.5  # d = 16.5 / 127: x / d has .5 values
    x[3, :32] = torch.tensor([127.0, 0.5, -0.5, 1.5, -2.5] + [0.0] * 27)
    want = gguf.quants.quantize(x.numpy(), gguf.GGMLQuantizationType.Q8_0)
    got = gguf_files.q8_0(x)
    assert got.shape == want.shape == (6, 3 * 34)
    assert (got == want).all()
    assert (
        gguf_files.q8_0(x.to(torch.bfloat16))
        == gguf.quants.quantize(x.to(torch.bfloat16).float().numpy(), gguf.GGMLQuantizationType.Q8_0)
    ).all()


TYPES_PATH = {"Q4_0": FAST, "Q5_1": FAST, "BF16": FAST, "F16": "weights differ: 16 swapped in from exact copies"}


@pytest.mark.parametrize("qtype", list(TYPES_PATH))
def test_gguf_types_take_the_path_of_how_gguf_patches_them(mods, gguf_pack, files, events, qtype, caplog):
    """Other GGUF types (those the gguf package writes; not its K-quants): quantized ones and BF16 carry their
    patches like Q8_0 (the base's own list); F16, which GGUF loads as torch-compatible tensors and merges the
    ordinary way (an F16 tensor with an empty patch list, its original in the backup), takes exact copies. Both
    bit-equal to the stock chain; giving an F16 tensor the base's list would leave the distilled merge in it."""
    base = load_gguf(gguf_pack, files, qtype)
    distilled = lora(base, "dmd.safetensors")
    with caplog.at_level(logging.INFO):
        hybrid(mods, base, distilled, connect=True, runs=2)
        zero(events)
        out = hybrid(mods, base, distilled, connect=True)
    assert (events["unpatch"], events["patch"]) == (0, 0), events
    lines = pair_lines(caplog)
    assert len(lines) == 1 and TYPES_PATH[qtype] in lines[0], lines
    check_against_stock(mods, base, distilled, out, qtype)


@pytest.mark.parametrize("qtype", ["F16", "Q8_0"])
def test_gguf_lora_on_one_side_each(mods, gguf_pack, files, events, qtype):
    """A style LoRA on the attention of the base only and the distilled LoRA on the FFN only: the keys the loaded
    (distilled) weights leave unpatched hold an empty list and no backup, and carry patches only where stored packed
    (Q8_0: the base's list; F16: an exact copy)."""
    root = load_gguf(gguf_pack, files, qtype)
    base, distilled = lora(root, "style.safetensors", 0.7), lora(root, "dmd_ffn.safetensors")
    assert not set(base.patches) & set(distilled.patches)
    out = hybrid(mods, base, distilled, connect=True, runs=3)
    pair = mods["lp"].pair_for(base, distilled)
    assert bool(pair.plan.carried) is (qtype != "F16") and (pair.copies is None) is (qtype != "F16")
    check_against_stock(mods, base, distilled, out, f"{qtype} one side each")


def test_gguf_f16_copies_made_as_gguf_merges(mods, gguf_pack, files, monkeypatch):
    """GGUF merges its F16 tensors in float32; ComfyUI's ModelPatcher in ``lora_compute_dtype`` (float16 on a
    GPU in 0.33). With that dtype forced here, the pair's copies, made by GGUF's own patch_weight_to_device, still
    equal the stock chain bit for bit, where ComfyUI's recipe gives other weights. Without copies, the merged F16
    weights take the forward-time delta path: within 1e-3 of the latent RMS of the stock chain."""
    monkeypatch.setattr(mm, "lora_compute_dtype", lambda device: torch.float16, raising=False)
    lw, lp = mods["lw"], mods["lp"]
    root = load_gguf(gguf_pack, files, "F16")
    assert lw.merge_sandbox(comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), "cpu", "cpu")) is None
    sandbox = lw.merge_sandbox(root)  # GGUF's own merge
    assert type(sandbox) is type(root) and sandbox.backup == {} and sandbox.backup is not root.backup
    base = lora(root, "style.safetensors", 0.7)
    distilled = lora(base, "dmd.safetensors", 0.8)
    out = hybrid(mods, base, distilled, connect=True, runs=3)
    pair = lp.pair_for(base, distilled)
    assert pair.copies is not None
    check_against_stock(mods, base, distilled, out, "F16, float16 LoRA compute")
    k = next(k for k in pair.keys if k.base)  # a style-patched weight: its base version is a merge
    original = k.original(pair.backup)
    assert not torch.equal(k.exact_base(original, torch.device("cpu")), k.merged_by(sandbox, original, "cpu"))
    # forward-time: merged F16 weights take the delta path (W_merged - dW_distilled + dW_base, 1 ulp per weight)
    monkeypatch.setattr(lp, "RESIDENT_BASE_WEIGHTS", False)
    base = lora(root, "style.safetensors", 0.7)
    distilled = lora(base, "dmd.safetensors", 0.8)
    out = hybrid(mods, base, distilled, connect=True, runs=3)
    assert lp.pair_for(base, distilled).copies is None
    ref, both = stock_chain(mods, base, distilled), stock_chain(mods, distilled, distilled)
    for got, want, far in zip(out, ref, both):
        assert max_abs(got, want) <= 1e-3 * rms(want) < max_abs(far, want), (max_abs(got, want), rms(want))


@pytest.mark.parametrize("resident", [True, False], ids=["copies", "forward-time"])
def test_gguf_lora_with_bias_diffs(mods, gguf_pack, files, monkeypatch, resident):
    """A LoRA with ``diff_b`` bias patches (as lightx2v's Wan LoRAs have) on a Q8_0 model: GGUF merges the F32 biases
    the ordinary way, while their layers (quantized weights) cast themselves and call no ComfyUI weight function.
    Copies: bit-equal to the stock chain. Forward-time: the biases are made for the forward and swapped in (the
    delta path: within 1e-3 of the RMS), never left as the distilled merge."""
    monkeypatch.setattr(mods["lp"], "RESIDENT_BASE_WEIGHTS", resident)
    base = load_gguf(gguf_pack, files)
    distilled = lora(base, "dmd_bias.safetensors")
    params = dict(base.model.named_parameters())
    biases = [k for k in distilled.patches if k.endswith(".bias")]
    assert len(biases) >= 8 and all(distilled.patches[k][0][1][0] == "diff" for k in biases)
    out = hybrid(mods, base, distilled, connect=True, runs=3)
    pair = mods["lp"].pair_for(base, distilled)
    assert {k.key for k in pair.keys} >= set(biases) and all(type(params[k]).__name__ == "GGMLTensor" for k in biases)
    if resident:
        check_against_stock(mods, base, distilled, out, "bias diffs")
        return
    assert pair.copies is None and len(pair.plan.transient) == len(biases)
    ref, both = stock_chain(mods, base, distilled), stock_chain(mods, distilled, distilled)
    for got, want, far in zip(out, ref, both):
        assert max_abs(got, want) <= 1e-3 * rms(want) < max_abs(far, want), (max_abs(got, want), rms(want))
