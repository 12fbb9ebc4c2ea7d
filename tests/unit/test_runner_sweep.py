"""The runner's handover sweep (runner/sweep.py), pure parts: the grid syntax, the swept graphs per grid point, the
handover read back from a LATENT's text, and the sweep report (table, CSV, JSON, plot) from synthetic results."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PIL import Image

from ddistill import protocol
from ddistill.handover import Handover
from ddistill.noise_level import HandoverPoint
from ddistill.pairing import ModelInfo
from ddistill.trajectory import Frame, Trajectory
from ddistill_dev.gpu.runner_graphs import tiny_workflow
from runner.cli import main
from runner.job import execution_time
from runner.report import write_report
from runner.sweep import (
    DISTILLED_ALONE,
    PROBE,
    GridPoint,
    SweepError,
    parse_latent_text,
    parse_sweep,
    real_handover,
    sweep_workflow,
    table_markdown,
)
from runner.work import Item, RunState, plan
from runner.workflow import WorkflowError, parse_workflow


def names(*specs):
    return [p.name for p in parse_sweep(list(specs))]


def test_grid_syntax():
    assert names("k=0..4") == ["k=0", "k=1", "k=2", "k=3", "k=4"]
    assert names("k=0..1,3") == ["k=0", "k=1", "k=3"]
    assert names("sigma=0.9,0.8,0.75") == ["sigma=0.9", "sigma=0.8", "sigma=0.75"]
    assert names("A=400,80,18.2") == ["A=400", "A=80", "A=18.2"]
    assert names("K=1", "a=18.2", "Sigma=1.5") == ["k=1", "A=18.2", "sigma=1.5"]  # keys in any case, combined
    assert names("A=1e3", "sigma=0.123456789") == ["A=1000", "sigma=0.123456789"]  # names keep the value exactly
    pts = parse_sweep(["k=0,2", "sigma=0.75", "A=18.2"])
    assert [p.inputs() for p in pts] == [
        {"base_steps": 1},  # k = 0 runs the distilled model for one step (rewired by the workflow)
        {"base_steps": 2},
        {"base_steps": 0, "handover_sigma": 0.75},
        {"base_steps": 0, "handover_amplification": 18.2, "handover_sigma": 0.0},
    ]


@pytest.mark.parametrize(
    "specs, message",
    [
        (["k"], "write KIND=VALUES"),
        (["t=1,2"], "write KIND=VALUES"),
        (["k="], "an empty value"),
        (["k=1,,2"], "an empty value"),
        (["k=3..1"], "runs backwards; write k=1..3"),
        (["k=-1"], "0 (the distilled model alone) or more"),
        (["k=1.5"], "not a whole number"),
        (["sigma=0.9..0.5"], "ranges (a..b) are for k only"),
        (["sigma=0"], "must be a positive number"),
        (["A=inf"], "must be a positive number"),
        (["A=x"], "'x' is not a number"),
        (["k=1..2", "k=2"], "k=2 is given twice"),
        ([], "no grid point"),
    ],
)
def test_grid_errors(specs, message):
    with pytest.raises(SweepError) as e:
        parse_sweep(specs)
    assert message in str(e.value)


def swept_graph(**change) -> dict:
    g = tiny_workflow(x0=True)
    g["20"]["_meta"] = {"title": "handover"}
    g["21"]["inputs"]["cfg"] = 1.5
    g["20"]["inputs"].update(change)
    return g


def test_swept_graph_per_grid_point():
    wf = parse_workflow(swept_graph())
    assert "20" in wf.seed_nodes  # 'handover' is a seed node too
    sw = sweep_workflow(wf, parse_sweep(["k=0..2", "sigma=0.75", "A=18.2"]))
    assert list(sw.methods) == ["base", "k=0", "k=1", "k=2", "sigma=0.75", "A=18.2"]
    assert sw.template == "hybrid" and sw.node == "20" and sw.continue_id == "21" and sw.references == ["base"]
    k0 = sw.build("k=0", "a cat", 7, 4)
    node = k0["20"]["inputs"]
    assert node["base_model"] == ["2", 0] and node["base_steps"] == 1 and node["base_cfg"] == 1.5  # the distilled
    assert node["model_label"] == "distilled (k=0)" and node["seed"] == 7
    assert k0[PROBE] == {
        "class_type": "PreviewAny",
        "inputs": {"source": ["20", 0]},
        "_meta": {"title": "runner: the handover point"},
    }
    assert set(k0) == set(wf.build("hybrid", "a cat", 7, 4)) | {PROBE}
    k2 = sw.build("k=2", "a cat", 7, 4)["20"]["inputs"]
    assert k2["base_model"] == ["1", 0] and k2["base_steps"] == 2 and "model_label" not in k2
    s = sw.build("sigma=0.75", "x", 0, 2)["20"]["inputs"]
    assert (s["base_steps"], s["handover_sigma"]) == (0, 0.75)
    a = sw.build("A=18.2", "x", 0, 2)["20"]["inputs"]
    assert (a["base_steps"], a["handover_amplification"], a["handover_sigma"]) == (0, 18.2, 0.0)
    assert PROBE not in sw.build("base", "x", 0, 2)
    assert wf.graph["20"]["inputs"]["base_steps"] == 1 and "model_label" not in wf.graph["20"]["inputs"]  # untouched
    assert sw.methods["k=1"].image_node == wf.methods["hybrid"].image_node


def test_swept_workflow_errors():
    wf = parse_workflow(tiny_workflow())
    with pytest.raises(WorkflowError, match="titled 'handover'.*no node carries"):
        sweep_workflow(wf, parse_sweep(["k=1"]))
    with pytest.raises(SweepError, match="k=4 leave.*4-step schedule, so k goes up to 3"):
        sweep_workflow(parse_workflow(swept_graph()), parse_sweep(["k=1..4"]))
    g = swept_graph()
    g["10"]["_meta"] = {"title": "handover"}  # a KSampler
    with pytest.raises(WorkflowError, match="nodes 10, 20 are titled 'handover'"):
        sweep_workflow(parse_workflow(g), parse_sweep(["k=1"]))
    g = swept_graph()
    g["20"]["_meta"], g["10"]["_meta"] = {"title": "seed"}, {"title": "handover"}
    with pytest.raises(WorkflowError, match="only a DDistill_BaseFirstStepSampler"):
        sweep_workflow(parse_workflow(g), parse_sweep(["k=1"]))
    g = swept_graph()
    g["12"]["inputs"]["images"] = g["13"]["inputs"]["images"] = ["22", 0]  # 'base' saves the hybrid's images
    with pytest.raises(WorkflowError, match="node 20 feeds 'base', 'hybrid'; it must feed exactly one"):
        sweep_workflow(parse_workflow(g), parse_sweep(["k=1"]))
    g = swept_graph()
    g["22"]["inputs"]["samples"] = g["25"]["inputs"]["latent"] = ["20", 0]  # no Distilled Continue: k >= 1 fine,
    g["25"]["inputs"]["trajectory"] = ["20", 1]  # k = 0 has no distilled model to take
    del g["21"]
    assert list(sweep_workflow(parse_workflow(g), parse_sweep(["k=1"])).methods) == ["base", "k=1"]
    with pytest.raises(WorkflowError, match="k=0 .*there is none in method 'hybrid'"):
        sweep_workflow(parse_workflow(g), parse_sweep(["k=0..1"]))


def latent_text(k=1, rule="amplification", target=18.2, model="base", n=4, flow=False) -> str:
    """str() of a LATENT as Base First Step outputs it (PreviewAny shows that), from the pack's own classes."""
    sigmas = torch.tensor([14.6146, 4.2606, 1.6129, 0.7194, 0.0][-(n + 1) :])
    amps = sigmas**2
    info = ModelInfo("SDXL", "EPS", "SDXL", 4, 0.03, 14.6)
    point = HandoverPoint(k, float(sigmas[k]), float(amps[k]), rule, target)
    frames = tuple(
        Frame(s, float(sigmas[s]), 999.0 - 250 * s, model, torch.rand(2, 4, 8, 8), flow, float(amps[s]))
        for s in range(k)
    )
    handover = Handover(sigmas[k:], k, "lcm", 5, info, "base_model", point)
    latent = {
        "samples": torch.rand(2, 4, 8, 8),
        protocol.TRAJECTORY_KEY: Trajectory(frames),
        protocol.HANDOVER_KEY: handover,
    }
    return str(latent)


def test_handover_read_back_from_the_latent_text():
    got = parse_latent_text(latent_text(k=2, rule="sigma", target=2.0))
    assert got["k"] == 2 and got["rule"] == "sigma" and got["target"] == 2.0 and got["steps"] == 4
    assert got["sigma"] == pytest.approx(1.6129) and got["amplification"] == pytest.approx(1.6129**2)
    assert got["start_sigma"] == pytest.approx(14.6146) and got["start_amplification"] == pytest.approx(14.6146**2)
    assert got["first_model"] == "base"
    steps = parse_latent_text(latent_text(k=1, rule="steps", target=None, model='it\'s "odd"'))
    assert steps["target"] is None and steps["first_model"] == 'it\'s "odd"'
    k0 = real_handover(GridPoint("k", 0), parse_latent_text(latent_text(k=1, rule="steps", target=None)))
    assert (k0["k"], k0["rule"], k0["target"]) == (0, DISTILLED_ALONE, None)
    assert k0["sigma"] == pytest.approx(14.6146) and k0["amplification"] == pytest.approx(14.6146**2)
    flow = parse_latent_text(latent_text(k=1, flow=True).replace("amplification=213", "amplification=inf #"))
    assert flow["k"] == 1
    with pytest.raises(ValueError, match="carries no HandoverPoint.*update it"):
        parse_latent_text(str({"samples": torch.zeros(1)}))
    inf_point = "HandoverPoint(k=1, sigma=1.0, amplification=inf, rule='sigma', target=1.0)"
    assert math.isinf(parse_latent_text(inf_point)["amplification"])


def test_execution_time_from_history_status():
    entry = {
        "status": {
            "messages": [
                ["execution_start", {"prompt_id": "p", "timestamp": 1000}],
                ["execution_cached", {"nodes": ["1", 3], "prompt_id": "p", "timestamp": 1001}],
                ["execution_success", {"prompt_id": "p", "timestamp": 3500}],
            ]
        }
    }
    assert execution_time(entry) == {"seconds": 2.5, "cached": ["1", "3"]}
    assert execution_time({"status": {"messages": []}})["seconds"] is None


# ------------------------------------------------------------------------------------------- report from a state
RESULTS = {  # method: (mean, ci, handover (k, sigma, A) or None, x0 curve, seconds per item)
    "base": (0.30, (0.27, 0.33), None, None, 4.0),
    "k=0": (0.10, (0.08, 0.12), (0, 14.6146, 213.6), {1: 0.05, 2: 0.02, 3: 0.01, 4: 0.0}, 1.0),
    "k=1": (0.25, (0.22, 0.28), (1, 4.2606, 18.15), {1: 0.4, 2: 0.1, 3: 0.02, 4: 0.0}, 1.2),
    "k=2": (0.29, (0.26, 0.31), (2, 1.6129, 2.601), {1: 0.4, 2: 0.3, 3: 0.05, 4: 0.0}, 1.4),
    "A=18.2": (0.26, (0.23, 0.29), (1, 4.2606, 18.15), {1: 0.4, 2: 0.12, 3: 0.02, 4: 0.0}, 1.2),
}


def write_state(tmp_path, sw, items, cached=()):
    state = RunState(tmp_path, "fp")
    for item in items:
        mean, ci, h, curve, secs = RESULTS[item.method]
        paths = []
        for i in range(item.batch):
            p = item.image_path(tmp_path, i)
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(p)
            paths.append(str(p.relative_to(tmp_path)))
        meter = {"ddistill_diversity": [{"a": {"mean": mean, "std": 0.01, "ci": list(ci), "n": 4, "n_pairs": 6}}]}
        rec = {"images": paths, "meter": meter, "x0": None, "seconds": secs, "cached": []}
        if item.method in cached:
            rec["cached"] = [sw.node]
        if curve:
            rec["x0"] = {"ddistill_x0": [{"steps": list(curve), "mean_distance": list(curve.values())}]}
        if h:
            rec["handover"] = {
                "point": item.method,
                "k": h[0],
                "sigma": h[1],
                "amplification": h[2],
                "rule": "x",
                "target": None,
                "steps": 4,
            }
        state.record(item, rec)
    return state


def sweep_report(tmp_path, specs, cached=()):
    sw = sweep_workflow(parse_workflow(swept_graph()), parse_sweep(specs))
    items = plan(list(sw.methods), ["a digit"], 4, 4, 0)
    state = write_state(tmp_path, sw, items, cached)
    settings = {"seeds": 4, "batch": 4, "seed_start": 0, "paper": "none", "backend": "x", "device": "cpu"}
    return write_report(tmp_path, sw, ["a digit"], items, state, settings, {}, {}), sw


def test_sweep_report_table_csv_json_plot(tmp_path):
    report, sw = sweep_report(tmp_path, ["A=18.2", "k=0..2"], cached=("k=1",))
    assert report["complete"] is True
    rows = report["sweep"]["rows"]
    # earliest handover first (k, then the highest sigma), the references last
    assert [r["method"] for r in rows] == ["k=0", "A=18.2", "k=1", "k=2", "base"]  # A=18.2 first in the grid
    k1 = rows[2]
    assert (k1["k"], k1["sigma"], k1["amplification"], k1["steps"]) == (1, 4.2606, 18.15, 4)
    assert k1["x0_step"] == 2 and k1["x0_distance"] == 0.1  # the x̂0 at the handover sigma: the distilled's first
    assert k1["seconds_per_image"] is None  # its sampler came from the cache: no time
    assert rows[0]["seconds_per_image"] == pytest.approx(0.25) and rows[0]["x0_distance"] == 0.05
    assert rows[3]["relative_to_base"] == pytest.approx(0.29 / 0.30)
    assert [r["reaches_base"] for r in rows] == [False, False, False, True, None]
    assert report["sweep"]["pick"] == "k=2"

    md = (tmp_path / "sweep.md").read_text()
    header = "| handover | k | sigma | A | diversity (95% CI) | x̂0 distance at the handover step | time per image |"
    assert header in md
    table = table_markdown(rows)
    assert table[2] == (
        "| k=0 (distilled alone) | 0 of 4 | 14.61 | 213.6 | 0.100 [0.080, 0.120] (33% of base) | 0.050 (step 1) "
        "| 0.25 s |"
    )
    assert "| k=1 | 1 of 4 | 4.261 | 18.15 | 0.250 [0.220, 0.280] (83% of base) | 0.100 (step 2) | cached |" in md
    assert "| base (reference) |  |  |  | 0.300 [0.270, 0.330] (100% of base) |  | 1 s |" in md
    assert "Earliest handover whose interval reaches the base's diversity: k=2** (k = 2, sigma 1.613" in md
    assert "## Handover sweep" in (tmp_path / "summary.md").read_text()
    assert "Handover sweep" in (tmp_path / "summary.html").read_text()

    lines = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert [r["method"] for r in lines] == [r["method"] for r in rows]
    assert lines[3]["k"] == "2" and float(lines[3]["ci_high"]) == 0.31 and lines[3]["reaches_base"] == "True"
    assert lines[1]["requested_kind"] == "A" and float(lines[1]["requested_value"]) == 18.2
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["pick"] == "k=2" and data["template"] == "hybrid" and data["node"] == "20"
    with Image.open(tmp_path / "plots" / "sweep.png") as im:
        assert im.size == (720, 420)
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 16)}
    assert (44, 160, 44) in colours  # the base's reference line is drawn
    assert json.loads((tmp_path / "report.json").read_text())["sweep"]["files"]["plot"] == "plots/sweep.png"


def test_sweep_report_without_base_and_with_no_point_reaching_it(tmp_path):
    report, _ = sweep_report(tmp_path / "a", ["k=0..1"])
    md = (tmp_path / "a" / "sweep.md").read_text()
    assert report["sweep"]["pick"] is None and "No grid point reaches the base's diversity" in md
    RESULTS["base2"] = RESULTS.pop("base")
    try:
        g = swept_graph()
        for nid in ("12", "13"):
            g[nid]["_meta"]["title"] = "method: base2"
        sw = sweep_workflow(parse_workflow(g), parse_sweep(["k=1..2"]))
        items = plan(list(sw.methods), ["p"], 4, 4, 0)
        state = write_state(tmp_path / "b", sw, items)
        settings = {"seeds": 4, "batch": 4, "seed_start": 0, "paper": "none", "backend": "x", "device": "cpu"}
        report = write_report(tmp_path / "b", sw, ["p"], items, state, settings, {}, {})
    finally:
        RESULTS["base"] = RESULTS.pop("base2")
    md = (tmp_path / "b" / "sweep.md").read_text()
    assert "has no `base` method" in md and report["sweep"]["pick"] is None
    assert all(r["relative_to_base"] is None for r in report["sweep"]["rows"])


def test_missing_handover_record_is_a_problem(tmp_path):
    sw = sweep_workflow(parse_workflow(swept_graph()), parse_sweep(["k=1"]))
    item = Item("k=1", 0, "p", 0, 0, 4, 0)
    state = write_state(tmp_path, sw, [item])
    state.done[item.id].pop("handover")
    settings = {"seeds": 4, "batch": 4, "seed_start": 0, "paper": "none", "backend": "x", "device": "cpu"}
    report = write_report(tmp_path, sw, ["p"], [item], state, settings, {}, {})
    assert report["complete"] is False and "k=1: no item recorded its handover point" in report["problems"]


def test_cli_sweep_errors_exit_2(tmp_path, capsys):
    (tmp_path / "plain.json").write_text(json.dumps(tiny_workflow()))
    (tmp_path / "swept.json").write_text(json.dumps(swept_graph()))
    (tmp_path / "p.txt").write_text("a car\n")
    cases = [
        ("plain.json", ["--sweep", "k=1"], "titled 'handover'"),
        ("swept.json", ["--sweep", "k=3..1"], "runs backwards"),
        ("swept.json", ["--sweep", "k=0..9"], "k goes up to 3"),
    ]
    for wf, extra, message in cases:
        argv = [str(tmp_path / wf), "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o")]
        rc = main([*argv, "--server", "127.0.0.1:9", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and message in err, err
