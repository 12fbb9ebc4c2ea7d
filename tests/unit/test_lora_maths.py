"""The pure helpers of the LoRA-pair path (ddistill/lora_maths.py): which patches two clones share, the layers a
Dynamic VRAM swap must take whole, and the difference measure of the README's bound."""

import torch

from ddistill.lora_maths import difference, differing_keys, patch_lists_equal, shared_prefix, sibling_keys


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
