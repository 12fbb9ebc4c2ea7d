"""The settings of the flow / video example workflows (``ddistill_dev/workflows/workflow_families.py``) are the
README's: each pair's row of "Settings per family" names the distilled side's steps, cfg, sampler, scheduler and shift,
the
base side's steps, cfg, sampler and shift (a shift in the side's cell or the schedule's), and where the noise-level
rule hands over on the distilled schedule (k, sigma, A: the families' ``rule``, which
``tests/integration/hybrid/test_handover_rule_families.py`` computes with ComfyUI's own model_sampling)."""

import pytest

from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.workflows import workflow_families as wf

PAIRS = {
    "Z-Image + Z-Image-Turbo": (wf.ZIMAGE_TURBO, wf.ZIMAGE),
    "Qwen-Image + Qwen-Image-Lightning": (wf.QWEN_LIGHTNING, wf.QWEN),
    "SD3.5 Large + SD3.5 Large Turbo": (wf.SD35_TURBO, wf.SD35),
    "FLUX.1-dev + FLUX.1-schnell": (wf.SCHNELL, wf.DEV),
    "Wan 2.2 A14B text-to-video + Wan2.2-Lightning": (wf.WAN_LIGHTNING, wf.WAN),
    "Krea 2 RAW + Krea 2 Turbo": (wf.KREA2_TURBO, wf.KREA2_RAW),
}


def readme_row(pair: str) -> list[str]:
    text = (PACK_ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("### Settings per family", 1)[1].split("\n\n", 2)[1]
    (row,) = [line for line in table.splitlines() if line.startswith(f"| {pair} |")]
    return [cell.strip() for cell in row.strip("|").split("|")]


@pytest.mark.parametrize("pair", list(PAIRS))
def test_workflow_settings_are_the_readme_table(pair):
    fam, base = PAIRS[pair]
    _, distilled, base_cell, schedule, handover, _ = readme_row(pair)
    for cell, steps, cfg, sampler, shift in (
        (distilled, fam.steps, fam.cfg, fam.sampler, fam.shift),
        (base_cell, base.steps, base.cfg, base.sampler, base.shift),
    ):
        assert str(steps) in cell and "steps" in cell, (pair, steps, cell)
        assert f"cfg {cfg:g}" in cell and f"`{sampler}`" in cell, (pair, cfg, sampler, cell)
        assert shift is None or f" {shift:g}" in cell + schedule, (pair, shift, cell)  # its cell or the schedule's
    assert f"`{fam.scheduler}`" in distilled + base_cell, pair
    if fam is wf.SCHNELL:
        assert f"guidance {wf.FLUX_GUIDANCE:g}" in base_cell
    r = fam.rule
    assert f"k = {r.k} of {fam.steps}, sigma {r.sigma:.4g}, A {r.a:.3g}" in handover, (pair, handover)
