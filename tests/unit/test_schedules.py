"""Pure maths: the paper's schedules, the split, noise scales and seeds (no ComfyUI needed)."""

import importlib

import pytest
import torch


@pytest.fixture(scope="module")
def sched():
    return importlib.import_module("ddistill.schedules")


def test_lcm_timesteps_match_the_paper(sched):
    assert sched.lcm_timesteps(4) == [999, 759, 499, 259]
    assert sched.lcm_timesteps(1) == [999]


def test_trailing_timesteps_match_the_paper(sched):
    assert sched.trailing_timesteps(4) == [999, 749, 499, 249]
    assert sched.trailing_timesteps(2) == [999, 499]


def test_split_shares_sigma_k(sched):
    s = torch.tensor([14.6, 4.26, 1.61, 0.72, 0.0])
    head, tail = sched.split_schedule(s, 1)
    assert head.tolist() == pytest.approx([14.6, 4.26]) and tail.tolist() == pytest.approx([4.26, 1.61, 0.72, 0.0])
    head, tail = sched.split_schedule(s, 3)
    assert head[-1] == tail[0] and len(head) == 4 and len(tail) == 2


@pytest.mark.parametrize(
    "sigmas,k,needle",
    [
        (torch.tensor([]), 1, "empty"),
        (torch.tensor([14.6, 0.0]), 1, "1 step"),
        (torch.tensor([14.6, 4.2, 0.0]), 2, "base_steps: 2 leaves no step"),
        (torch.tensor([14.6, 4.2, 0.0]), 0, "base_steps: must be at least 1"),
        (torch.tensor([14.6, float("nan"), 0.0]), 1, "NaN"),
        (torch.tensor([1.0, 4.2, 0.0]), 1, "must not increase"),
    ],
)
def test_bad_schedules_name_the_input(sched, sigmas, k, needle):
    with pytest.raises(sched.ScheduleError, match=needle):
        sched.check_schedule(sigmas, k)


def test_skip_first_noise_scale_is_the_papers(sched):
    assert sched.unit_noise_scale(4.2606) == pytest.approx(4.376, abs=1e-3)
    # flow: the marginal variance (1 - sigma)^2 + sigma^2 of unit-variance data, not unit noise
    assert sched.unit_noise_scale(0.5, variance_preserving=False) == pytest.approx(0.5**0.5)
    assert sched.unit_noise_scale(0.75, variance_preserving=False) == pytest.approx(0.7906, abs=1e-4)


def test_derived_seeds_are_distinct_and_stable(sched):
    seeds = {sched.derive_seed(s, 1) for s in range(1000)}
    assert len(seeds) == 1000 and not seeds & set(range(1000))
    assert sched.derive_seed(42, 1) == sched.derive_seed(42, 1) < 2**64
    assert sched.derive_seed(2**64 - 1, 1) < 2**64 and sched.derive_seed(5, 0) == 5


def test_derived_seeds_stay_below_the_last_seed_and_keep_their_streams(sched):
    """No derived seed is 2^64 - 1 (ComfyUI 0.33's CPU noise sampler seeds seed + 1); every seed whose stream did not
    land there keeps the stream it had (the formula before the change: seed + n * C mod 2^64)."""
    last, c = 2**64 - 1, 0x9E3779B97F4A7C15
    for n in (1, 2, 3):
        landing = (last - n * c) % 2**64  # the one seed whose old stream was 2^64 - 1
        assert sched.derive_seed(landing, n) != last
        assert sched.derive_seed(landing, n) == sched.derive_seed(last, n) == (n * c - 1) % 2**64
        for s in (0, 1, 42, landing - 1, landing + 1, last - 1, 2**63, 7045075238040912874):
            assert sched.derive_seed(s, n) == (s + n * c) % 2**64 < last
    assert sched.derive_seed(7046029254386353130, 1) == c - 1  # 2^64 - 1 - C, the user seed that landed there
    # a chain of experts derives from a derived seed: still never the last seed
    s = (7046029254386353130 - c) % 2**64
    assert sched.derive_seed(sched.derive_seed(s, 1), 1) != last


def test_all_finite_is_isfinite_all():
    """The one-reduction latent check equals isfinite().all(): NaN, +inf, -inf, both infs (their sum is NaN), and
    float32 values whose float32 sum would overflow but which are finite."""
    import torch

    from ddistill.pairing import all_finite

    x = torch.zeros(2, 4, 8, 8)
    assert all_finite(x)
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[1, 2, 3, 4] = bad
        assert not all_finite(y)
    y = x.clone()
    y[0, 0, 0, 0], y[1, 1, 1, 1] = float("inf"), float("-inf")
    assert not all_finite(y)
    big = torch.full((4, 1024), 3e38)
    assert torch.isinf(big.sum()) and all_finite(big)
    assert all_finite(big.half().clamp(-6e4, 6e4))
