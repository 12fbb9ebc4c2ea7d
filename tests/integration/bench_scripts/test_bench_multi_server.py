"""benchmarks/bench_multi_server.py in its CPU mode: two real ComfyUI servers (tiny in-graph models), the runner's own
code over 2 prompts x 4 seeds x 3 methods on 1 and 2 servers, then one server killed mid-run; the tables and the
checks (every item recorded once, every image on disk once) come back complete."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

from ddistill_dev.host.comfy_host import PACK_ROOT
from runner.workflow import parse_workflow

SCRIPT = PACK_ROOT / "benchmarks" / "bench_multi_server.py"
IMAGES = 2 * 4 * 3  # prompts x seeds x methods
GRAPHS = 2 * 2 * 3  # prompts x chunks of 2 seeds x methods


def load_script():
    spec = importlib.util.spec_from_file_location("bench_multi_server", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workflows_of_the_pairs_are_runner_workflows():
    b = load_script()
    for pair, loader in (("lora", "LoraLoaderModelOnly"), ("unet", "UNETLoader")):
        g = b.build_workflow("sdxl", pair, 1024, 8, 10, ["base", "distilled", "hybrid"], meter=True)
        wf = parse_workflow(g)
        assert sorted(wf.methods) == ["base", "distilled", "hybrid"] and wf.default_batch == 8
        types = [n["class_type"] for n in g.values()]
        assert types.count(loader) == 1 and types.count("DDistill_DiversityMeter") == 3
        assert {n["inputs"]["steps"] for n in g.values() if n["class_type"] == "KSampler"} == {10}
        names = {v for n in g.values() for k, v in n["inputs"].items() if k in ("ckpt_name", "lora_name", "unet_name")}
        assert names == {"bench_sdxl_base.safetensors", f"bench_sdxl_{pair}.safetensors"}
        # the "static" variant's extra nodes: what no prompt, seed or batch reaches and feeds another node
        static = sorted(wf.graph[n]["class_type"] for n in b.static_nodes(wf))
        assert static == sorted(["CheckpointLoaderSimple", "CLIPTextEncode", loader, "KSamplerSelect",
                                 "DDistill_DistilledSchedule"])  # fmt: skip
    g = b.build_workflow("tiny", "lora", 64, 2, 4, ["base", "hybrid"], meter=False)
    assert sorted(parse_workflow(g).methods) == ["base", "hybrid"]
    assert not any(n["class_type"] in ("DDistill_DiversityMeter", "CheckpointLoaderSimple") for n in g.values())


def test_cpu_run_scaling_table_and_a_killed_server(tmp_path):
    out, js = tmp_path / "multi.md", tmp_path / "multi.json"
    cmd = [
        sys.executable, str(SCRIPT), "--cpu", "--arch", "tiny", "--size", "64", "--prompts", "2", "--seeds", "4",
        "--batch", "2", "--base-steps", "4", "--counts", "1,2", "--kill", "--warmup-batch", "0",
        "--base", str(tmp_path / "work"), "--out", str(out), "--json", str(js),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the runner's recomputation in the script's process, too
    res = subprocess.run(cmd, cwd=PACK_ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stderr[-5000:]
    data = json.loads(js.read_text())
    runs = {r["label"]: r for r in data["runs"]}
    assert list(runs) == ["1 server", "2 servers", "2 servers, one killed"]
    for r in runs.values():
        c = r["check"]
        assert c["ok"], c
        assert c["planned_items"] == c["recorded_items"] == GRAPHS and c["duplicates"] == c["missing"] == 0
        assert r["images"] == c["recorded_images"] == c["images_on_disk"] == IMAGES and c["image_paths_unique"]
        assert r["images_per_s"] > 0 and r["wall_s"] > 0
        for s in r["per_server"]:
            assert 0 < s["busy_frac"] <= 1.01, s
            assert s["categories"]["sampling"] > 0 and s["categories"]["VAE"] > 0, s
            assert s["client_calls"]["POST"] >= s["graphs"]
    assert [s["graphs"] for s in runs["1 server"]["per_server"]] == [GRAPHS]
    assert sum(s["graphs"] for s in runs["2 servers"]["per_server"]) == GRAPHS
    assert all(s["graphs"] > 0 for s in runs["2 servers"]["per_server"])

    kill = runs["2 servers, one killed"]
    k = kill["killed"]
    victim, survivor = kill["per_server"][1], kill["per_server"][0]
    assert k["server"] == victim["url"] and k["at_s"] is not None and k["graphs_running"] == 1
    assert k["given_back"] >= 1 and k["thrown_away_s"] > 0
    assert list(kill["check"]["stopped"]) == [victim["url"]]
    assert victim["graphs"] + survivor["graphs"] == GRAPHS and survivor["graphs"] >= k["given_back"]

    text = out.read_text()
    assert text.strip() in res.stdout
    assert re.search(r"^Card: CPU; ComfyUI \d+\.\d+\.\d+;", text, re.M)
    for head in (
        "| run | servers | GPUs | depth | graphs | images | wall (s) | images/s | x 1 server | efficiency vs servers",
        "| run | server | GPU | graphs | busy | GPU util | GPU mem (GiB) | weight loads / graph |",
        "| run | sampling | VAE | saving | meter | loaders | other | idle: start | idle between graphs: runner at work",
        "| run | build | POST | wait | /history | download | write | state file | turnaround | report: recompute",
        "| run | killed at (s) | images done then | graphs running / queued on it | given back | server-s thrown away",
    ):
        assert head in text, head
    rows = [ln for ln in text.splitlines() if ln.startswith("| 2 servers, one killed | ")]
    assert len(rows) == 6  # throughput, 2 per server, breakdown, client, kill
    assert f"| {GRAPHS} of {GRAPHS} | 0 | 0 | {IMAGES} of {IMAGES} |" in rows[-1]
    assert "Checks: every run recorded each planned item once and each image once on disk." in text
