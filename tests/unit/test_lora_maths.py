"""The pure helpers of the LoRA-pair path (ddistill/lora_maths.py): which patches two clones share, the layers a
Dynamic VRAM swap must take whole, and the difference measure of the README's bound."""

import torch

from ddistill.lora_maths import (
    carries_own_patches,
    difference,
    differing_keys,
    foreign_weight,
    own_patch_list,
    patch_lists_equal,
    shared_prefix,
    sibling_keys,
    stored_packed,
)


def test_patch_lists_compare_by_identity_as_clones_share_entries():
    a, b, c = object(), object(), object()
    assert shared_prefix([a, b], [a, c]) == 1
    assert patch_lists_equal([a, b], [a, b]) and not patch_lists_equal([a], [a, b])
    assert not patch_lists_equal([[1.0]], [[1.0]])  # equal values loaded twice are different patches


def test_differing_keys_either_direction():
    s = object()
    base = {"x.weight": [s], "y.weight": [s]}
    distilled = {"x.weight": [s, object()], "y.weight": [s], "z.bias": [object()]}
    assert differing_keys(base, distilled) == ["x.weight", "z.bias"]


def test_sibling_keys_are_the_alike_patched_params_of_differing_layers():
    s = object()
    patched = {"a.weight": [s], "a.bias": [s], "b.weight": [s], "c.bias": [s], "d.weight": [s]}
    # a.weight differs: its bias (patched alike) comes along; b has no patched bias; c's weight is unpatched
    assert sibling_keys(["a.weight", "b.weight", "c.weight"], patched) == ["a.bias", "c.bias"]
    assert sibling_keys(["a.weight", "a.bias"], patched) == []  # both differ: no sibling left
    assert sibling_keys(["emb"], patched) == []  # not a weight/bias key
    # any container of candidate keys: here also the unpatched bias of b (what Dynamic VRAM layers need resident)
    assert sibling_keys(["a.weight", "b.weight"], set(patched) | {"b.bias"}) == ["a.bias", "b.bias"]


def test_difference_relative_to_rms():
    ref = torch.full((2, 4), 2.0)
    d = difference(ref + torch.tensor([0.5, 0, 0, 0] + [0] * 4).view(2, 4), ref)
    assert d == {"max_abs": 0.5, "rms": 2.0, "relative": 0.25}


class _Carrying(torch.Tensor):
    """A tensor subclass that carries patches and may declare a logical shape, as ComfyUI-GGUF's GGMLTensor does."""


def _carrying(data: torch.Tensor, patches, tensor_shape=None) -> torch.Tensor:
    t = data.as_subclass(_Carrying)
    t.patches = patches
    if tensor_shape is not None:
        t.tensor_shape = torch.Size(tensor_shape)
    return t


def test_own_patch_lists_and_packed_storage():
    """(patch list, key) pairs are a list a layer applies; an empty one is such a list too (a weight not patched
    now), so whether a tensor carries its patches then depends on what it stores: packed bytes (integer dtype, or a
    stored shape other than its logical one) or the weight's values (GGUF's F16 / F32 tensors)."""
    assert own_patch_list([([("p",)], "w.weight")]) and own_patch_list([])
    assert not own_patch_list(["unknown"]) and not own_patch_list(None) and not own_patch_list([([], 3)])
    assert stored_packed(torch.zeros(4, 34, dtype=torch.uint8))  # Q8_0 blocks
    assert stored_packed(_carrying(torch.zeros(4, 34, dtype=torch.uint8), [], (4, 32)))
    assert stored_packed(_carrying(torch.zeros(4, 8, dtype=torch.float16), [], (4, 16)))  # values, other shape
    assert not stored_packed(_carrying(torch.zeros(4, 32, dtype=torch.float16), [], (4, 32)))  # F16 values
    assert not stored_packed(torch.zeros(3, dtype=torch.float8_e4m3fn))


def test_carries_own_patches_only_when_its_patcher_did_not_merge_it():
    packed = _carrying(torch.zeros(4, 34, dtype=torch.uint8), [], (4, 32))
    values = _carrying(torch.zeros(4, 32, dtype=torch.float16), [], (4, 32))
    listed = _carrying(torch.zeros(4, 34, dtype=torch.uint8), [([("p",)], "w.weight")], (4, 32))
    assert carries_own_patches(listed, merged=False) and carries_own_patches(packed, merged=False)
    assert not carries_own_patches(values, merged=False)  # GGUF F16 not patched now: an ordinary weight
    assert not carries_own_patches(values, merged=True) and not carries_own_patches(listed, merged=True)
    assert not carries_own_patches(torch.zeros(2), merged=False)  # no patches attribute
    assert not carries_own_patches(_carrying(torch.zeros(4, 34, dtype=torch.uint8), ["unknown"]), merged=False)


def test_foreign_weight_names_what_keeps_a_weight_from_the_fast_path():
    assert foreign_weight(torch.zeros(2)) is None and foreign_weight(torch.nn.Parameter(torch.zeros(2))) is None
    assert foreign_weight(_carrying(torch.zeros(2), [])) is None
    assert foreign_weight(_carrying(torch.zeros(2), ["unknown"])) == (
        "its weights are _Carrying tensors (test_lora_maths) carrying patches in an unknown form"
    )
    plain = torch.zeros(2).as_subclass(_Carrying)
    assert "a tensor subclass (a quantized layout)" in foreign_weight(plain)
    assert foreign_weight(plain, known=(_Carrying,)) is None
