"""The demo job: the paper's experiments on the bundled digit pair through a real ComfyUI server and the runner.

    .venv/bin/python demo/run_demo.py [--out out/demo] [--seeds 100]     (bash scripts/demo.sh sets up first)

Starts ComfyUI (CPU) on 127.0.0.1 with this pack, runs demo/workflow.py's graph for every method with
`python -m runner`, then writes OUT/REPORT.md (+ report.json): the Diversity Meter numbers with their
intervals, mode coverage from the repository's digit classifier, and whether the paper's ordering holds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/server.py: the real-server launcher shared with the tests

PROMPT = "a handwritten digit"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    ap.add_argument("--seeds", type=int, default=100, help="samples per method (one batch; the paper uses 100)")
    ap.add_argument("--base-steps", type=int, default=40)
    args = ap.parse_args()
    import torch
    from safetensors.torch import load_file

    from demo import report, workflow
    from demo.classifier import DigitClassifier
    from demo.common import WEIGHTS
    from runner.work import slug
    from server import ComfyServer

    t0 = time.time()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wf_path, prompts = out / "demo_workflow_api.json", out / "prompts.txt"
    wf_path.write_text(json.dumps(workflow.build(args.seeds, args.base_steps), indent=1))
    prompts.write_text(PROMPT + "\n")
    runner_out = out / "runner"
    server = ComfyServer(out / "comfy", with_fixture_pack=False)
    print(f"starting ComfyUI on {server.url} (log: {server.log_path})", file=sys.stderr)
    server.start()
    try:
        cmd = [sys.executable, "-m", "runner", str(wf_path), "--prompts", str(prompts), "--seeds", str(args.seeds),
               "--batch", str(args.seeds), "--server", server.url.removeprefix("http://"), "--out", str(runner_out),
               "--paper", "none", "--fresh"]
        rc = subprocess.call(cmd, cwd=REPO)
    finally:
        server.stop()
    rep_path = runner_out / "report.json"
    if not rep_path.exists():
        print(f"error: the runner wrote no report (exit {rc}); see {server.log_path}", file=sys.stderr)
        return 1
    rr = json.loads(rep_path.read_text())

    clf = DigitClassifier()
    clf.load_state_dict(load_file(str(WEIGHTS / "digit_classifier.safetensors")))
    clf.eval()
    train_digits = load_file(str(WEIGHTS / "digits_base.safetensors"))["images"]
    meter, stats, links = {}, {}, {}
    for m in report.METHODS:
        cell = (rr["methods"].get(m) or {}).get("prompts", {}).get(PROMPT)
        if not cell:
            continue
        meter[m] = cell
        stats[m] = report.method_stats(report.load_pngs([runner_out / p for p in cell["images"]]), clf, train_digits)
        x0_dir = runner_out / "node_images" / slug(m, 24) / slug(PROMPT)
        for k, png in enumerate(sorted(x0_dir.glob("seed*/x0/*.png"))):
            links[f"x̂0 preview, {m} ({k})"] = str(png.relative_to(out))
    for name, rel in (rr.get("grids") or {}).items():
        links[f"sample grid ({name})"] = f"runner/{rel}"
    for name, rel in (rr.get("plots") or {}).items():
        links[f"plot: {name}"] = f"runner/{rel}"
    links["runner summary"] = "runner/summary.md"
    settings = {"seeds": args.seeds, "base_steps": args.base_steps, "seconds": time.time() - t0,
                "cpus": len(os.sched_getaffinity(0)), "runner_rc": rc}
    md = report.markdown(meter, stats, settings, links)
    (out / "REPORT.md").write_text(md, encoding="utf-8")
    (out / "report.json").write_text(json.dumps({"settings": settings, "meter": {m: {k: meter[m][k] for k in (
        "mean", "std", "ci", "n")} for m in meter}, "stats": stats, "links": links}, indent=1))
    print(md)
    print(f"report: {out / 'REPORT.md'} ({settings['seconds']:.0f} s)", file=sys.stderr)
    return 0 if rc == 0 and len(stats) == len(report.METHODS) else 1


if __name__ == "__main__":
    sys.exit(main())
