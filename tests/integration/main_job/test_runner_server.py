"""The experiment runner (`python -m runner`) against real ComfyUI servers on 127.0.0.1: two servers, one killed
mid-run; resume; the report's numbers against the Diversity Meter's own numbers in the graph; bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from ddistill.protocol import EFFNET_BACKEND
from ddistill_dev.gpu.runner_graphs import tiny_workflow
from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.host.comfy_server import ComfyServer, execution_error

EFFNET = EFFNET_BACKEND
PROMPTS = ["a red car", "a blue house"]


def start_all(servers):
    errors = []

    def go(s):
        try:
            s.start()
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=go, args=(s,)) for s in servers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if errors:
        [s.stop() for s in servers]
        raise errors[0]
    return servers


@pytest.fixture(scope="module")
def server_a(tmp_path_factory):
    s = ComfyServer(tmp_path_factory.mktemp("comfy_a"))
    yield start_all([s])[0]
    s.stop()


def runner_cmd(workflow: Path, prompts: Path, out: Path, servers, *extra):
    cmd = [sys.executable, "-m", "runner", str(workflow), "--prompts", str(prompts), "--out", str(out)]
    for s in servers:
        cmd += ["--server", s]
    return cmd + [str(x) for x in extra]


def run_runner(*args, timeout=240):
    return subprocess.run(runner_cmd(*args), cwd=PACK_ROOT, capture_output=True, text=True, timeout=timeout)


def write_inputs(tmp: Path, graph: dict, prompts=PROMPTS):
    (tmp / "wf.json").write_text(json.dumps(graph))
    (tmp / "prompts.txt").write_text("# test prompts\n" + "\n".join(prompts) + "\n")
    return tmp / "wf.json", tmp / "prompts.txt"


def done_records(out: Path) -> list[dict]:
    lines = (out / "state.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "done"]


def pixels(png: bytes) -> bytes:
    """Pixel data of a PNG (the files also carry the workflow as metadata, which differs between graphs)."""
    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB").tobytes()


def direct_meter_run(server, prompt: str, seed: int, batch: int, method_nodes: tuple[str, str]):
    """The graph built by hand (not by the runner) for one method: the meter's numbers and the image bytes."""
    g = tiny_workflow()
    g["3"]["inputs"]["text"] = prompt
    g["4"]["inputs"]["batch_size"] = batch
    g["10"]["inputs"]["seed"] = g["20"]["inputs"]["seed"] = seed
    save, meter = method_nodes
    keep = {"1", "2", "3", "4", "5", "10", "11", "20", "21", "22", save, meter}
    graph = {k: v for k, v in g.items() if k in keep}
    graph["99"] = {"class_type": "PreviewAny", "inputs": {"source": [meter, 0]}}  # runs the meter either way
    entry = server.run(graph)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    images = [
        server.get(f"/view?filename={r['filename']}&subfolder={r['subfolder']}&type={r['type']}")
        for r in entry["outputs"][save]["images"]
    ]
    return entry["outputs"][meter], images


def test_two_servers_one_killed_report_complete_and_equal_to_meter(server_a, tmp_path):
    wf, prompts = write_inputs(tmp_path, tiny_workflow())
    out = tmp_path / "report"
    server_b = start_all([ComfyServer(tmp_path / "comfy_b")])[0]
    try:
        proc = subprocess.Popen(
            runner_cmd(wf, prompts, out, [server_a.url, server_b.url], "--seeds", 3, "--depth", 2, "--revive-tries", 1),
            cwd=PACK_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if (out / "state.jsonl").exists() and any(r["server"] == server_b.url for r in done_records(out)):
                server_b.proc.kill()  # dies with work queued on it (depth 2)
                break
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        server_b.stop()
    assert proc.returncode == 0, stderr
    returned = re.search(rf"server {re.escape(server_b.url)} stopped, (\d+) unfinished item\(s\) went back", stderr)
    assert returned and int(returned.group(1)) >= 1, stderr  # it died with work in flight

    records = done_records(out)
    ids = [r["item"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * len(PROMPTS), ids  # every item once, none twice
    by_server = {r["server"] for r in records}
    assert by_server == {server_a.url, server_b.url}
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is True and report["problems"] == []
    assert server_b.url in report["servers_stopped"]
    images = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))
    assert len(images) == 2 * len(PROMPTS) * 3
    assert sorted(x for r in records for x in r["images"]) == images

    rows = list(csv.DictReader((out / "diversity.csv").open()))
    for method, nodes in (("base", ("12", "13")), ("hybrid", ("23", "24"))):
        for p in PROMPTS:
            cell = report["methods"][method]["prompts"][p]
            assert cell["n"] == 3 and cell["n_pairs"] == 3 and cell["source"] == "graph"
            row = next(r for r in rows if r["method"] == method and r["prompt"] == p)
            assert float(row["mean"]) == cell["mean"]
            rec = next(r for r in records if r["method"] == method and r["prompt"] == p)
            assert [(out / x).read_bytes() for x in rec["images"]] == [(out / x).read_bytes() for x in cell["images"]]
        # the Diversity Meter, run here in a graph built by hand on server A, gives the report's numbers exactly
        ui, direct_images = direct_meter_run(server_a, PROMPTS[0], 0, 3, nodes)
        cell = report["methods"][method]["prompts"][PROMPTS[0]]
        direct = ui["ddistill_diversity"][0]["a"]
        assert cell["mean"] == direct["mean"] and list(cell["ci"]) == list(direct["ci"])
        assert [pixels((out / x).read_bytes()) for x in cell["images"]] == [pixels(b) for b in direct_images]
        avg = report["methods"][method]["average"]
        means = [report["methods"][method]["prompts"][p]["mean"] for p in PROMPTS]
        assert avg["mean"] == pytest.approx(sum(means) / len(means))
    for name in ("summary.md", "summary.html", "plots/diversity.png", f"grids/{Path(images[0]).parent.name}.png"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "INCOMPLETE" not in summary and "not DreamSim" in summary

    # rerun: everything is finished, nothing is queued again, same report
    before = len(server_a.get("/history"))
    again = run_runner(wf, prompts, out, [server_a.url], "--seeds", 3)
    assert again.returncode == 0, again.stderr
    assert f"{2 * len(PROMPTS)} already done" in again.stderr
    assert len(server_a.get("/history")) == before
    assert json.loads((out / "report.json").read_text())["methods"] == report["methods"]


def test_several_chunks_recomputed_like_the_meter(server_a, tmp_path):
    wf, prompts = write_inputs(tmp_path, tiny_workflow(x0=True), PROMPTS[:1])
    out = tmp_path / "report"
    res = run_runner(wf, prompts, out, [server_a.url], "--seeds", 4, "--batch", 2, "--seed-start", 5)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    records = done_records(out)
    assert sorted((r["method"], r["seed"], r["batch"]) for r in records) == [
        ("base", 5, 2),
        ("base", 6, 2),
        ("hybrid", 5, 2),
        ("hybrid", 6, 2),
    ]
    from runner.results import recompute

    for method in ("base", "hybrid"):
        cell = report["methods"][method]["prompts"][PROMPTS[0]]
        assert cell["n"] == 4 and cell["n_pairs"] == 6 and cell["source"].startswith("recomputed over 4")
        # the same functions on one graph batch's saved images give the meter's number of that batch (up to the
        # 8-bit rounding of the saved PNGs)
        for rec in (r for r in records if r["method"] == method):
            mine = recompute([out / x for x in rec["images"]], EFFNET)
            assert mine["mean"] == pytest.approx(rec["meter"]["ddistill_diversity"][0]["a"]["mean"], rel=1e-2)
    # the x̂0 Preview of the hybrid branch: its curve (mean over both chunks) in the report, CSV and plot
    curve = report["x0_convergence"]["hybrid"]
    assert sorted(map(int, curve)) == [1, 2, 3, 4] and "base" not in report["x0_convergence"]
    texts = [r["x0"]["text"][0] for r in records if r["method"] == "hybrid"]
    last = [float(t.split(" 4:")[1].split()[0]) for t in texts]
    assert curve["4"] == pytest.approx(sum(last) / 2)
    assert (out / "plots/x0_convergence.png").is_file()
    assert len((out / "x0_convergence.csv").read_text().splitlines()) == 1 + 4


def test_unreachable_server_and_missing_nodes_are_clear(server_a, tmp_path):
    wf, prompts = write_inputs(tmp_path, tiny_workflow(meter=False))
    res = run_runner(wf, prompts, tmp_path / "r1", ["127.0.0.1:9"], "--seeds", 3, timeout=60)
    assert res.returncode == 2
    assert "server http://127.0.0.1:9: cannot connect" in res.stderr and "--server" in res.stderr
    assert not (tmp_path / "r1" / "report.json").exists()

    g = tiny_workflow(meter=False)
    g["5"]["class_type"] = "DDTest_NoSuchVAE"
    wf2, _ = write_inputs(tmp_path, g)
    res = run_runner(wf2, prompts, tmp_path / "r2", [server_a.url], "--seeds", 3, timeout=60)
    assert res.returncode == 2
    assert f"server {server_a.url} lacks node types DDTest_NoSuchVAE" in res.stderr
    assert not (tmp_path / "r2" / "report.json").exists()


def test_rejected_workflow_gives_an_incomplete_report(server_a, tmp_path):
    g = tiny_workflow()
    g["10"]["inputs"]["sampler_name"] = "no_such_sampler"
    wf, prompts = write_inputs(tmp_path, g, PROMPTS[:1])
    out = tmp_path / "report"
    res = run_runner(wf, prompts, out, [server_a.url], "--seeds", 3, timeout=120)
    assert res.returncode == 1, res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False
    assert "base | a red car: 1 of 1 chunks missing (seeds 0)" in report["problems"]
    failed = [p for p in report["problems"] if p.startswith("failed: base|")]
    assert len(failed) == 1 and "rejected the workflow" in failed[0] and "sampler_name" in failed[0], failed
    assert report["methods"]["hybrid"]["prompts"]["a red car"]["n"] == 3  # the other method still ran
    assert (out / "summary.md").read_text().startswith("# Diversity report (INCOMPLETE)")
    assert "INCOMPLETE" in (out / "summary.html").read_text()


def test_recompute_equals_the_meter_node_on_the_same_pixels(pack, tmp_path):
    """On the same pixel values, the runner's recomputation and the real Diversity Meter node agree exactly."""
    import importlib

    import numpy as np
    import torch

    from runner.results import load_images, recompute

    meter = importlib.import_module(pack.__name__ + ".nodes.meter_nodes").DiversityMeter
    rng = np.random.default_rng(0)
    paths = []
    for k in range(5):
        arr = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
        arr[: 8 * (k + 1)] = 40 * k  # some structure, different per image
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(arr).save(paths[-1])
    images = load_images(paths)
    assert images.shape == (5, 48, 48, 3) and images.dtype == torch.float32
    out = meter.execute(images, EFFNET)
    node = out.ui["ddistill_diversity"][0]["a"]
    mine = recompute(paths, EFFNET)
    assert (mine["n"], mine["n_pairs"]) == (node["n"], node["n_pairs"]) == (5, 10)
    assert mine["mean"] == pytest.approx(node["mean"], abs=1e-6)
    assert mine["ci"] == pytest.approx(tuple(node["ci"]), abs=1e-6)
    assert mine["std"] == pytest.approx(node["std"], abs=1e-6)


def _cached(entry: dict) -> set[str]:
    """Nodes ComfyUI took from its cache in a finished prompt (its execution_cached message)."""
    return {n for kind, msg in entry["status"]["messages"] if kind == "execution_cached" for n in msg["nodes"]}


def test_alternating_methods_keep_the_loaders_cached(server_a):
    """A graph of one method carries the loaders of the others (``Workflow.static_nodes``): ComfyUI keeps their
    outputs, so base, hybrid, base, hybrid loads each model once. Without them the base graph makes ComfyUI drop the
    distilled model's loader (node 2) and the next hybrid graph runs it again."""
    from runner.workflow import parse_workflow

    wf = parse_workflow(tiny_workflow())
    for static in (wf.static_nodes, []):
        wf.static_nodes = static
        entries = []
        for i, method in enumerate(("hybrid", "base", "hybrid")):
            entry = server_a.run(wf.build(method, f"cache check {len(static)}", 1000 + i, 2))
            assert entry["status"]["status_str"] == "success", execution_error(entry)
            entries.append(entry)
        kept = "2" in _cached(entries[2])
        assert kept == bool(static), (static, _cached(entries[2]))
