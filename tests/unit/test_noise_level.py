"""The handover by noise level (ddistill/noise_level.py): the amplification of each parameterisation, the rule's
choice on the shifted schedules of the issue's table, and its errors (pure, no ComfyUI)."""

import math

import pytest
import torch

from ddistill import noise_level as nl
from ddistill.schedules import ScheduleError

SDXL_LCM = torch.tensor([14.6146, 4.2606, 1.6129, 0.7173, 0.0])
SHIFT3_8 = torch.tensor([1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3, 0.0])


def test_paper_amplification_is_sdxl_at_759():
    assert nl.sd_sigma(759) == pytest.approx(4.2606, abs=1e-4)
    assert nl.PAPER_AMPLIFICATION == 18.2 and nl.sd_sigma(759) ** 2 <= nl.PAPER_AMPLIFICATION


def test_amplification_per_parameterisation():
    s = torch.tensor([1.0, 0.75, 0.5, 0.0])
    flow = nl.amplification(s, "CONST")
    assert math.isinf(flow[0]) and flow[1:].tolist() == pytest.approx([9.0, 1.0, 0.0])
    for pred in ("EPS", "V_PREDICTION", "EDM", "X0"):
        assert nl.amplification(SDXL_LCM, pred).tolist() == pytest.approx((SDXL_LCM**2).tolist(), rel=1e-6)
    with pytest.raises(ScheduleError, match="no closed-form amplification for IMG_TO_IMG"):
        nl.amplification(s, "IMG_TO_IMG")
    # the measured form (x = a x0 + b eps) is the same maths
    assert nl.amplification_from_scaling(1 - s, s).tolist()[1:] == pytest.approx([9.0, 1.0, 0.0])


@pytest.mark.parametrize(
    "sigmas,pred,k,sigma",
    [
        (SDXL_LCM, "EPS", 1, 4.2606),  # the paper's own handover
        (SHIFT3_8, "CONST", 4, 0.75),  # Z-Image-Turbo / Qwen-Image-Lightning, 8 steps, shift 3
        (torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]), "CONST", 2, 0.75),  # SD3.5 Large Turbo, 4 steps, shift 3
        (torch.tensor([1.0, 0.9375, 0.8333, 0.625, 0.0]), "CONST", 3, 0.625),  # Wan 2.2 Lightning, shift 5
        (torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]), "CONST", 1, 0.75),  # FLUX.1-schnell, shift 1
    ],
)
def test_rule_on_the_issues_schedules(sigmas, pred, k, sigma):
    point = nl.resolve_handover(sigmas, nl.amplification(sigmas, pred), 0, nl.PAPER_AMPLIFICATION)
    assert (point.k, point.rule) == (k, nl.RULE_AMPLIFICATION) and point.sigma == pytest.approx(sigma, abs=1e-4)
    assert point.amplification <= nl.PAPER_AMPLIFICATION
    assert k == 1 or nl.amplification(sigmas, pred)[k - 1] > nl.PAPER_AMPLIFICATION  # the first such step


def test_steps_and_sigma_rules():
    amps = nl.amplification(SHIFT3_8, "CONST")
    by_steps = nl.resolve_handover(SHIFT3_8, amps, 2, nl.PAPER_AMPLIFICATION, 0.5)  # a step count wins
    assert (by_steps.k, by_steps.rule, by_steps.target) == (2, nl.RULE_STEPS, None)
    by_sigma = nl.resolve_handover(SHIFT3_8, amps, 0, nl.PAPER_AMPLIFICATION, 0.8)
    assert (by_sigma.k, by_sigma.sigma, by_sigma.rule) == (4, pytest.approx(0.75), nl.RULE_SIGMA)
    assert nl.resolve_handover(SHIFT3_8, amps, 0, 500.0).k == 1  # A* above the first step's A
    exact = nl.resolve_handover(SHIFT3_8, amps, 0, None, 0.9)
    assert exact.k == 2 and exact.describe(8) == "k = 2 of 8 steps, sigma 0.9, A 81 (the first sigma <= 0.9)"


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"a_star": 0.0}, r"handover_amplification: must be above 0, got 0.0; the paper's handover is 18.2"),
        ({"a_star": -3.0}, r"handover_amplification: must be above 0"),
        ({"a_star": float("nan")}, r"handover_amplification: must be above 0"),
        ({"a_star": 0.1}, r"handover_amplification: no step before the last reaches A <= 0.1 .* raise it to at least"),
        ({"a_star": 18.2, "sigma": 1.5}, r"handover_sigma: 1.5 is above the schedule's start \(sigma 1\)"),
        ({"a_star": 18.2, "sigma": 0.2}, r"handover_sigma: the schedule reaches sigma <= 0.2 only at its last step"),
        ({"a_star": 18.2, "base_steps": 8}, r"base_steps: 8 leaves no step for the distilled model in a 8-step"),
        ({"a_star": 18.2, "base_steps": -1}, r"base_steps: 0 hands over by noise level"),
    ],
)
def test_named_errors(kw, needle):
    amps = nl.amplification(SHIFT3_8, "CONST")
    base_steps = kw.pop("base_steps", 0)
    with pytest.raises(ScheduleError, match=needle):
        nl.resolve_handover(SHIFT3_8, amps, base_steps, **kw)


def test_error_names_the_callers_inputs():
    amps = nl.amplification(SHIFT3_8, "CONST")
    with pytest.raises(ScheduleError, match=r"^skip_steps: 9 leaves no step"):
        nl.resolve_handover(SHIFT3_8, amps, 9, 18.2, names=("skip_steps", "handover_amplification", "handover_sigma"))
