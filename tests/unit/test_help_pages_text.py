"""The node help pages (``js/docs/<node ID>.md``; the frontend reads them from ``/extensions/<pack>/docs/``, see
``tests/integration/workflows/test_help_pages.py``), checked without ComfyUI: one page per node the pack defines and
no other, each the same shape (title, inputs, outputs), short, with its pictures beside it and small. The per-family
settings
table of the two sampler pages is the README's: the SDXL rows its "Settings from the paper" table (and the
handover the noise-level rule gives on those schedules, computed here with the core's maths), the flow rows its
"Settings per family" table and the example workflows' settings (``ddistill_dev/workflows/workflow_families.py``, which
``test_family_settings.py`` ties to that table). The inputs, outputs and defaults each page lists are compared with
the nodes' schemas, as the server reports them, in the integration test."""

import ast
import re

import pytest

from ddistill import protocol
from ddistill.noise_level import PAPER_AMPLIFICATION, sd_sigma
from ddistill.schedules import TIMESTEP_SCHEDULES
from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.workflows import workflow_families as wf

DOCS = PACK_ROOT / "js" / "docs"
README = (PACK_ROOT / "README.md").read_text(encoding="utf-8")
MAX_WORDS = 360  # prose words (the settings table aside): a short page for artists, not a reference
MAX_PICTURE_BYTES = 60_000
SAMPLER_PAGES = (protocol.BASE_FIRST_STEP, protocol.DISTILLED_CONTINUE)
TABLE_HEADER = ["family", "steps, scheduler, sampler", "k"]  # three columns: the help panel is narrow
# page row -> the README's "Settings from the paper" row (SDXL schedules, timestep based)
PAPER_ROWS = {
    "SDXL + DMD2, LCM": "DMD2, LCM (LoRA)",
    "SDXL-Turbo, SD-Turbo": "SDXL-Turbo, SD-Turbo",
    "SDXL-Lightning": "SDXL-Lightning",
}
# page row -> (the README's "Settings per family" row, the example workflows' family)
FLOW_ROWS = {
    "Z-Image-Turbo": ("Z-Image + Z-Image-Turbo", wf.ZIMAGE_TURBO),
    "Qwen-Image-Lightning": ("Qwen-Image + Qwen-Image-Lightning", wf.QWEN_LIGHTNING),
    "SD3.5 Large Turbo": ("SD3.5 Large + SD3.5 Large Turbo", wf.SD35_TURBO),
    "FLUX.1-schnell": ("FLUX.1-dev + FLUX.1-schnell", wf.SCHNELL),
    "Wan 2.2 Lightning": ("Wan 2.2 A14B text-to-video + Wan2.2-Lightning", wf.WAN_LIGHTNING),
    "Krea 2 Turbo": ("Krea 2 RAW + Krea 2 Turbo", wf.KREA2_TURBO),
}


def protocol_node_ids() -> set[str]:
    names = {v for k, v in vars(protocol).items() if k.isupper() and isinstance(v, str)}
    return {v for v in names if v.startswith(protocol.NODE_PREFIX)} - {protocol.NODE_PREFIX}


def defined_node_ids() -> set[str]:
    """The node IDs the pack's node modules define (``node_id=protocol.NAME`` in a schema), read from the source."""
    found = set()
    for path in (PACK_ROOT / "nodes").glob("*_nodes.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "node_id":
                assert isinstance(node.value, ast.Attribute) and node.value.value.id == "protocol", path
                found.add(getattr(protocol, node.value.attr))
    return found


def page(node_id: str) -> str:
    return (DOCS / f"{node_id}.md").read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """{"## heading": body} of a page; "" holds what comes before the first such heading."""
    parts = re.split(r"^(## .+)$", text, flags=re.M)
    return {"": parts[0], **{parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}}


def listed_names(body: str) -> list[str]:
    """The names a section's top-level list items start with: "- `a`, `b` (optional): ..." names a and b."""
    names = []
    for line in body.splitlines():
        m = re.match(r"- ((?:`[^`]+`(?:, )?)+)", line)
        if m:
            names += re.findall(r"`([^`]+)`", m.group(1))
    return names


def table_rows(body: str) -> list[list[str]]:
    lines = [line for line in body.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [r for r in rows if not all(set(c) <= set("-: ") for c in r)]


def readme_table(after: str) -> dict[str, list[str]]:
    """The first Markdown table after the line that starts with ``after`` in the README, as {first cell: cells}."""
    lines = README.split(after, 1)[1].split("\n", 1)[1].lstrip("\n").splitlines()
    rows = table_rows("\n".join(line for line in lines[: next(i for i, x in enumerate(lines) if not x.strip())]))
    return {r[0]: r for r in rows[1:]}


def test_one_page_per_node():
    ids = defined_node_ids()
    assert ids == protocol_node_ids(), "protocol.py names every node ID the node modules define"
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert pages == ids, f"missing pages: {sorted(ids - pages)}; pages of no node: {sorted(pages - ids)}"


@pytest.mark.parametrize("node_id", sorted(protocol_node_ids()))
def test_page_shape(node_id):
    text = page(node_id)
    assert text.startswith("# ") and text.count("\n# ") == 0, "one title, on the first line (the node's name)"
    parts = sections(text)
    assert list(parts)[1:3] == ["## Inputs", "## Outputs"], list(parts)
    assert parts[""].split("\n", 1)[1].strip(), "a few lines on what the node is for, before its inputs"
    assert listed_names(parts["## Inputs"]) and listed_names(parts["## Outputs"])
    words = len(re.sub(r"^\|.*$", "", text, flags=re.M).split())  # a settings table is compact, not prose
    assert words <= MAX_WORDS, f"{node_id}: {words} words; keep a help page to about one screen"
    for href in re.findall(r"(?<!!)\[[^\]]*\]\(([^)]+)\)", text):
        # the frontend rebases pictures onto the docs folder but not links: a relative link would lead nowhere
        assert href.startswith("https://"), f"{node_id}: link {href!r}"


def test_pictures_beside_the_pages_and_small():
    used = set()
    for path in DOCS.glob("*.md"):
        for src in re.findall(r"!\[[^\]]+\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            assert "/" not in src and ":" not in src, f"{path.name}: picture {src!r} is not a file beside the page"
            assert (DOCS / src).is_file(), f"{path.name}: {src} is missing"
            used.add(src)
    pictures = {p.name for p in DOCS.iterdir() if p.suffix != ".md"}
    assert pictures == used, f"pictures no page shows: {sorted(pictures - used)}"
    for name in pictures:
        size = (DOCS / name).stat().st_size
        assert name.endswith((".jpg", ".png")) and size <= MAX_PICTURE_BYTES, (name, size)
    assert {"x0_grid.jpg", "meter_panel.jpg"} <= used


def family_table(node_id: str) -> dict[str, list[str]]:
    """{family: [family, steps, scheduler, sampler, k]} of a page's settings table."""
    rows = table_rows(sections(page(node_id))["## Settings per family"])
    assert rows[0] == TABLE_HEADER, rows[0]
    return {r[0]: [r[0], *r[1].split(", "), r[2]] for r in rows[1:]}


def rule_k(scheduler: str, steps: int) -> int:
    """Where Base First Step's noise-level rule hands over on SDXL's sigma table: the first step k >= 1 whose
    amplification A = sigma^2 is at most the paper's A* (ddistill/noise_level.py)."""
    timesteps = TIMESTEP_SCHEDULES[scheduler](steps)
    return next(k for k in range(1, steps) if sd_sigma(timesteps[k]) ** 2 <= PAPER_AMPLIFICATION)


def test_sampler_pages_share_one_table_of_every_family():
    tables = [family_table(n) for n in SAMPLER_PAGES]
    assert tables[0] == tables[1], "the two sampler pages show the same settings"
    assert list(tables[0]) == [*PAPER_ROWS, *FLOW_ROWS]
    assert {r for r, _ in FLOW_ROWS.values()} == set(readme_table("### Settings per family")) - {"pair"}
    assert set(PAPER_ROWS.values()) == set(readme_table("Settings from the paper:")) - {"distilled family"}


@pytest.mark.parametrize("family", list(PAPER_ROWS))
def test_sdxl_rows_are_the_papers_settings(family):
    _, steps, scheduler, sampler, k = family_table(protocol.BASE_FIRST_STEP)[family]
    _, readme_scheduler, readme_sampler, timesteps = readme_table("Settings from the paper:")[PAPER_ROWS[family]]
    assert f"`{scheduler}`" in readme_scheduler and f"`{sampler}`" in readme_sampler, (family, scheduler, sampler)
    assert timesteps == ", ".join(map(str, TIMESTEP_SCHEDULES[scheduler](int(steps)))), (family, steps, timesteps)
    assert int(k) == rule_k(scheduler, int(steps)) == 1, "README: on SDXL's schedules the rule gives k = 1"


@pytest.mark.parametrize("family", list(FLOW_ROWS))
def test_flow_rows_are_the_readme_and_the_workflows(family):
    _, steps, scheduler, sampler, k = family_table(protocol.BASE_FIRST_STEP)[family]
    readme_row, fam = FLOW_ROWS[family]
    _, distilled, base_cell, _, handover, _ = readme_table("### Settings per family")[readme_row]
    assert (int(steps), scheduler, sampler, int(k)) == (fam.steps, fam.scheduler, fam.sampler, fam.rule.k), family
    assert f"`{sampler}`" in distilled and f"`{scheduler}`" in distilled + base_cell, (family, distilled)
    assert f"k = {k} of {steps}," in handover, (family, handover)


def test_schedule_page_names_the_papers_timesteps():
    text = page(protocol.DISTILLED_SCHEDULE)
    for name in ("lcm", "trailing"):
        assert f"`{name}`: " in text and ", ".join(map(str, TIMESTEP_SCHEDULES[name](4))) in text, name
