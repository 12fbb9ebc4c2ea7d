"""The demo job: the paper's experiments on the bundled digit pair through a real ComfyUI server and the runner.

    .venv/bin/python -m demo.run_demo [OUT_DIR | --out OUT_DIR] [--seeds 100] [--fresh]   (from the pack folder;
    bash scripts/demo.sh sets up first; options in any order)

Starts ComfyUI (CPU) on 127.0.0.1 with this pack (runner/comfy_server.py), runs demo/workflow.py's graph
for every method with `python -m runner`, then writes OUT/REPORT.md and OUT/report.json: the Diversity Meter
numbers with their intervals, mode coverage from the repository's digit classifier, and whether the paper's
ordering holds. --server HOST:PORT uses a running ComfyUI (with this pack) instead of starting one.

A rerun with the same settings reuses the finished samples in OUT (the runner's resumable state) and only writes
the report again; with other settings, or --fresh, the previous run in OUT is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT = "a handwritten digit"


def prepare(out: Path, seeds: int, base_steps: int, fresh: bool) -> str:
    """Write the workflow and prompt list into ``out``; keep a previous run made with the same workflow (the runner
    resumes it), otherwise remove it with the server's copies of its images. Returns what was done, for the log."""
    from demo import workflow

    out.mkdir(parents=True, exist_ok=True)
    wf_path, prompts = out / "demo_workflow_api.json", out / "prompts.txt"
    text = json.dumps(workflow.build(seeds, base_steps), indent=1)
    same = wf_path.is_file() and wf_path.read_text() == text and (out / "runner" / "state.jsonl").is_file()
    previous = (out / "runner").exists() or (out / "comfy" / "output").exists()
    if previous and (fresh or not same):
        for folder in (out / "runner", out / "comfy" / "output", out / "comfy" / "temp"):
            shutil.rmtree(folder, ignore_errors=True)
    wf_path.write_text(text)
    prompts.write_text(PROMPT + "\n")
    if same and not fresh:
        return f"same settings as the previous run in {out}: reusing its finished samples (--fresh samples again)"
    if previous:
        return f"replacing the previous run in {out} ({'--fresh' if fresh else 'other settings'})"
    return f"new run in {out}"


def run_job(server: str, out: Path, seeds: int) -> tuple[int, Path]:
    """Run the runner on the workflow ``prepare`` wrote into ``out``, against ``server``."""
    wf_path, prompts = out / "demo_workflow_api.json", out / "prompts.txt"
    runner_out = out / "runner"
    cmd = [
        sys.executable,
        "-m",
        "runner",
        str(wf_path),
        "--prompts",
        str(prompts),
        "--seeds",
        str(seeds),
        "--batch",
        str(seeds),
        "--server",
        server.removeprefix("http://"),
        "--out",
        str(runner_out),
        "--paper",
        "none",
    ]
    return subprocess.call(cmd, cwd=REPO), runner_out


def write_report(out: Path, runner_out: Path, settings: dict) -> dict:
    """REPORT.md + report.json from the runner's report and images; returns the report data."""
    from safetensors.torch import load_file

    from demo import report
    from demo.classifier import DigitClassifier
    from demo.common import WEIGHTS
    from runner.work import slug

    rr = json.loads((runner_out / "report.json").read_text())
    clf = DigitClassifier()
    clf.load_state_dict(load_file(str(WEIGHTS / "digit_classifier.safetensors")))
    clf.eval()
    train_digits = load_file(str(WEIGHTS / "digits_base.safetensors"))["images"]
    meter, stats, links = {}, {}, {}
    for m in report.METHODS:
        cell = (rr["methods"].get(m) or {}).get("prompts", {}).get(PROMPT)
        if not cell:
            continue
        meter[m] = {k: cell[k] for k in ("mean", "std", "ci", "n")}
        stats[m] = report.method_stats(report.load_pngs([runner_out / p for p in cell["images"]]), clf, train_digits)
        x0_dir = runner_out / "node_images" / slug(m, 24) / slug(PROMPT)
        for png in sorted(x0_dir.glob("seed*/x0/*.png")):
            kind = "curve" if "curve" in png.name else "grid" if "grid" in png.name else png.stem
            links[f"x̂0 preview {kind}, {m}"] = str(png.relative_to(out))
    for name, rel in (rr.get("grids") or {}).items():
        links[f"sample grid ({name})"] = str((runner_out / rel).relative_to(out))
    for name, rel in (rr.get("plots") or {}).items():
        links[f"plot: {name}"] = str((runner_out / rel).relative_to(out))
    links["runner summary"] = str((runner_out / "summary.md").relative_to(out))
    times = method_seconds(runner_out)
    md, verdicts = report.markdown(meter, stats, settings, links, times)
    (out / "REPORT.md").write_text(md, encoding="utf-8")
    handovers = {m: report.handover(m) for m in meter if report.handover(m)}
    data = {
        "settings": settings,
        "meter": meter,
        "stats": stats,
        "verdicts": verdicts,
        "handover": handovers,
        "seconds": times,
        "links": links,
    }
    (out / "report.json").write_text(json.dumps(data, indent=1))
    return data


def method_seconds(runner_out: Path) -> dict[str, float]:
    """Each method's time on the server (its graphs' execution_start to execution_success, summed over chunks),
    from the runner's resumable state; a method with a chunk the runner did not time is left out."""
    seconds: dict[str, float] = {}
    untimed = set()
    state = runner_out / "state.jsonl"
    for line in state.read_text().splitlines() if state.is_file() else []:
        rec = json.loads(line)
        if rec.get("kind") != "done":
            continue
        if rec.get("seconds") is None:
            untimed.add(rec["method"])
        seconds[rec["method"]] = seconds.get(rec["method"], 0.0) + (rec.get("seconds") or 0.0)
    return {m: t for m, t in seconds.items() if m not in untimed}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options in any order; the output folder either positional or as --out."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", type=Path, help="output folder (same as --out)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: out/demo)")
    ap.add_argument("--seeds", type=int, default=100, help="samples per method (one batch; the paper uses 100)")
    ap.add_argument("--base-steps", type=int, default=40, help="euler steps of the base method")
    ap.add_argument("--server", default=None, help="HOST:PORT of a running ComfyUI with this pack")
    ap.add_argument("--fresh", action="store_true", help="sample again even if OUT holds a run with these settings")
    args = ap.parse_args(argv)
    if args.out_dir is not None and args.out is not None and args.out_dir != args.out:
        ap.error(f"two output folders given: {args.out_dir} and --out {args.out}; give one")
    args.out = args.out or args.out_dir or REPO / "out" / "demo"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from runner.comfy_server import ComfyServer

    t0 = time.time()
    out = args.out.resolve()
    print(prepare(out, args.seeds, args.base_steps, args.fresh), file=sys.stderr)
    server = None
    if args.server is None:
        server = ComfyServer(out / "comfy")
        print(f"starting ComfyUI on {server.url} (log: {server.log_path})", file=sys.stderr)
        server.start()
    try:
        rc, runner_out = run_job(args.server or server.url, out, args.seeds)
    finally:
        if server is not None:
            server.stop()
    if not (runner_out / "report.json").exists():
        print(f"error: the runner wrote no report (exit {rc}); see {out / 'comfy' / 'server.log'}", file=sys.stderr)
        return 1
    settings = {
        "seeds": args.seeds,
        "base_steps": args.base_steps,
        "seconds": time.time() - t0,
        "cpus": len(os.sched_getaffinity(0)),
        "runner_rc": rc,
    }
    data = write_report(out, runner_out, settings)
    print((out / "REPORT.md").read_text())
    print(f"report: {out / 'REPORT.md'} ({settings['seconds']:.0f} s)", file=sys.stderr)
    from demo.report import METHODS

    return 0 if rc == 0 and len(data["stats"]) == len(METHODS) else 1


if __name__ == "__main__":
    sys.exit(main())
