"""The runner's handover sweep (`python -m runner ... --sweep`) through a real ComfyUI server on the offline demo digit
pair, with the shipped template workflows/api/11_handover_sweep_demo.json: the points and the handover each really
used (read back from the server, checked against the x̂0 trajectory), diversity with intervals, k = 0 equal to the
distilled model alone, the report files, and a resumed run that adds a point."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import pytest
from PIL import Image

from ddistill.noise_level import PAPER_AMPLIFICATION
from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.host.comfy_server import ComfyServer

TEMPLATE = PACK_ROOT / "workflows" / "api" / "11_handover_sweep_demo.json"
SEEDS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_sweep"), with_fixture_pack=False) as s:
        yield s


def template(tmp_path, base_steps: int = 6):
    """The shipped template with fewer steps for the base alone (50 in the file; a reference, not swept)."""
    graph = json.loads(TEMPLATE.read_text())
    (sampler,) = [n for n in graph.values() if n["class_type"] == "KSampler"]
    sampler["inputs"]["steps"] = base_steps
    path = tmp_path / "template.json"
    path.write_text(json.dumps(graph))
    return path


def sweep(server, workflow, out, prompts, *grid):
    cmd = [sys.executable, "-m", "runner", str(workflow), "--prompts", str(prompts), "--seeds", str(SEEDS)]
    cmd += ["--server", server.url, "--out", str(out), "--paper", "none"]
    for g in grid:
        cmd += ["--sweep", g]
    return subprocess.run(cmd, cwd=PACK_ROOT, capture_output=True, text=True, timeout=240)


def pixels(path) -> bytes:
    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


def records(out) -> dict:
    lines = (out / "state.jsonl").read_text().splitlines()
    return {r["method"]: r for r in map(json.loads, lines) if r.get("kind") == "done"}


def test_sweep_on_the_demo_pair(server, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten digit\n")
    out = tmp_path / "sweep"
    workflow = template(tmp_path)
    res = sweep(server, workflow, out, prompts, "k=0..2", "A=18.2", "sigma=2")
    assert res.returncode == 0, res.stderr
    assert "sweep of node" in res.stderr and "references: base, distilled" in res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is True and report["problems"] == []
    rows = {r["method"]: r for r in report["sweep"]["rows"]}
    assert list(rows) == ["k=0", "k=1", "A=18.2", "k=2", "sigma=2", "base", "distilled"]  # earliest first
    print("\n".join(report["sweep"]["markdown"]))

    # the handover each point really used, as the server's Base First Step reported it
    assert [rows[m]["k"] for m in ("k=0", "k=1", "k=2", "A=18.2", "sigma=2")] == [0, 1, 2, 1, 2]
    assert all(rows[m]["steps"] == 4 for m in ("k=0", "k=1", "k=2"))
    assert rows["k=0"]["rule"] == "distilled alone" and rows["k=1"]["rule"] == "steps"
    assert rows["A=18.2"]["rule"] == "amplification" and rows["sigma=2"]["rule"] == "sigma"
    a = [rows[f"k={k}"]["amplification"] for k in range(3)]
    sigmas = [rows[f"k={k}"]["sigma"] for k in range(3)]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0 and a[0] > a[1] > a[2] > 0
    assert a[0] > PAPER_AMPLIFICATION >= a[1]  # so A* = 18.2 hands over at k = 1, as it did
    assert rows["A=18.2"]["sigma"] == sigmas[1] and rows["A=18.2"]["amplification"] == a[1]
    assert sigmas[1] > 2 >= sigmas[2] and rows["sigma=2"]["sigma"] == sigmas[2]
    loader = next(n for n in json.loads(TEMPLATE.read_text()).values() if n["class_type"] == "DDistill_DemoModelLoader")
    if "eps" in str(loader["inputs"].get("pair", "eps")):  # sigma space: A = sigma^2
        assert all(math.isclose(x, s * s, rel_tol=1e-4) for x, s in zip(a, sigmas))
    # ... and against the x̂0 trajectory of the same run: the distilled model's first step is at the handover sigma
    recs = records(out)
    for m in ("k=0", "k=1", "k=2", "A=18.2", "sigma=2"):
        entry = recs[m]["x0"]["ddistill_x0"][0]
        k = rows[m]["k"]
        assert entry["sigmas"][k] == pytest.approx(rows[m]["sigma"], rel=1e-6), m
        assert entry["models"][:k] == ["base"] * k and entry["models"][k].startswith("distilled"), (m, entry)
        assert rows[m]["x0_step"] == k + 1 and rows[m]["x0_distance"] == pytest.approx(entry["mean_distance"][k])
        assert recs[m]["seconds"] > 0 and rows[m]["seconds_per_image"] == pytest.approx(recs[m]["seconds"] / SEEDS)

    # diversity with intervals; k = 0 is the distilled model alone, and equal handovers give equal samples
    for r in rows.values():
        lo, hi = r["ci"]
        assert math.isfinite(r["diversity"]) and 0 <= lo <= r["diversity"] <= hi, r
        assert r["relative_to_base"] == pytest.approx(r["diversity"] / rows["base"]["diversity"])
    assert rows["k=0"]["diversity"] == rows["distilled"]["diversity"] and rows["k=0"]["ci"] == rows["distilled"]["ci"]
    for a_name, b_name in (("k=0", "distilled"), ("A=18.2", "k=1"), ("sigma=2", "k=2")):
        assert [pixels(out / p) for p in recs[a_name]["images"]] == [pixels(out / p) for p in recs[b_name]["images"]]
        assert rows[a_name]["diversity"] == rows[b_name]["diversity"]
    assert rows["k=1"]["diversity"] > 2 * rows["k=0"]["diversity"]  # the base's first step restores diversity

    # the report files
    md = (out / "sweep.md").read_text()
    assert "| handover | k | sigma | A | diversity (95% CI) | x̂0 distance at the handover step | time per image |" in md
    pick = report["sweep"]["pick"]
    if pick:
        earlier = [m for m in rows if m != pick][: list(rows).index(pick)]
        assert all(not rows[m]["reaches_base"] for m in earlier)
        assert rows[pick]["ci"][1] >= rows["base"]["diversity"]
        assert f"Earliest handover whose interval reaches the base's diversity: {pick}" in md
    table = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["method"] for r in table] == list(rows) and table[0]["k"] == "0"
    assert "## Handover sweep" in (out / "summary.md").read_text()
    with Image.open(io.BytesIO((out / "plots" / "sweep.png").read_bytes())) as im:
        assert im.size == (720, 420)

    # a resumed run with one more point runs only that point
    again = sweep(server, workflow, out, prompts, "k=0..3")
    assert again.returncode == 0, again.stderr
    assert "6 items (6 methods x 1 prompts x 1 chunks of up to 8); 5 already done" in again.stderr
    rows = {r["method"]: r for r in json.loads((out / "report.json").read_text())["sweep"]["rows"]}
    assert list(rows) == ["k=0", "k=1", "k=2", "k=3", "base", "distilled"] and rows["k=3"]["k"] == 3
