"""The command line: `python -m runner WORKFLOW --prompts FILE --seeds N --server HOST:PORT [--server ...] --out DIR
[--sweep k=0..4 | sigma=0.9,0.8 | A=400,80,18.2]`.

Exit status: 0 = complete report; 1 = report written but INCOMPLETE (rerun to finish); 2 = bad input, nothing run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddistill.protocol import EFFNET_BACKEND

from .client import ComfyClient, ServerError
from .job import Job
from .progress import Progress
from .report import write_report
from .sweep import PROBE_CLASS, parse_sweep, sweep_workflow
from .work import RunState, StateError, WorkQueue, fingerprint, plan, run_items
from .workflow import METER, X0_PREVIEW, WorkflowError, load_prompts, load_workflow

EFFNET = EFFNET_BACKEND


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runner",
        description=(
            "Run an API-format workflow (titles per runner/CONVENTIONS.md) for every prompt of a list and N seeds "
            "over one or more ComfyUI servers; write a diversity report (CSV, JSON, grids, plots, summary.md/html)."
        ),
    )
    p.add_argument("workflow", help="API-format workflow JSON, e.g. workflows/api/<name>.json")
    p.add_argument("--prompts", required=True, help="text file, one prompt per line ('#' = comment line)")
    p.add_argument("--seeds", type=int, default=100, help="samples per prompt and method (paper: 100)")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="samples per queued graph (default: the workflow's "
        "batch_size); with one batch per prompt the Diversity Meter's own numbers are reported",
    )
    p.add_argument("--seed-start", type=int, default=0, help="seed of the first chunk; chunk c uses seed-start + c")
    p.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a ComfyUI server (repeat for several: one per GPU); default 127.0.0.1:8188",
    )
    p.add_argument("--out", required=True, help="report folder; rerunning with the same folder resumes")
    p.add_argument("--fresh", action="store_true", help="forget finished items in --out and start over")
    p.add_argument(
        "--depth",
        type=int,
        default=1,
        help="graphs queued on each server at a time (2 hides the download time between items)",
    )
    p.add_argument(
        "--paper",
        default="auto",
        help="paper table to compare with: auto, none, table3, tableD1-sd21, tableD1-pixart, tableE1",
    )
    p.add_argument("--backend", default=EFFNET, help="metric when the workflow has no Diversity Meter")
    p.add_argument("--device", default="cpu", help="device for recomputing numbers over several batches")
    p.add_argument(
        "--dreamsim-dir",
        default=None,
        help="folder with DreamSim weights for recomputing (the layout of ComfyUI's models/dreamsim)",
    )
    p.add_argument("--report-only", action="store_true", help="write the report from finished items, run nothing")
    p.add_argument("--revive-tries", type=int, default=3, help="reconnect tries before a lost server is dropped")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KIND=VALUES",
        help="handover sweep of the Base First Step titled 'handover': k=0..4 (base steps; 0 = the distilled model "
        "alone), sigma=0.9,0.8,0.75 (handover_sigma) or A=400,80,18.2 (handover_amplification); repeat to combine. "
        "Each point runs as a method 'k=2' / 'sigma=0.75' / 'A=18.2', the workflow's other methods once as "
        "references; the report adds sweep.md/.csv/.json and plots/sweep.png",
    )
    return p


def check_servers(clients: list[ComfyClient], class_types: set[str]) -> frozenset:
    """Every server answers and has every node type; returns the pack's reporting node types that some server does
    not mark as output nodes (the runner adds a PreviewAny after them so that they run)."""
    problems, sinks = [], set()
    for c in clients:
        try:
            c.check()
            info = c.object_info()
        except ServerError as e:
            problems.append(str(e))
            continue
        missing = sorted(class_types - set(info))
        sinks |= {t for t in (METER, X0_PREVIEW) if t in class_types and t in info and not info[t].get("output_node")}
        if missing:
            problems.append(
                f"server {c.url} lacks node types {', '.join(missing)}: install the packs that provide "
                f"them in its custom_nodes (DDistill_* come from this pack) and restart it"
            )
    if problems:
        raise ServerError("; ".join(problems))
    return frozenset(sinks)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        workflow = load_workflow(args.workflow)
        if args.sweep:
            workflow = sweep_workflow(workflow, parse_sweep(args.sweep))
        prompts = load_prompts(args.prompts)
        batch = args.batch or workflow.default_batch
        items = plan(list(workflow.methods), prompts, args.seeds, batch, args.seed_start)
        state = RunState(Path(args.out), fingerprint(workflow.graph), fresh=args.fresh)
        pending = [i for i in items if not state.is_done(i)]
        clients = [ComfyClient(u) for u in (args.server or ["127.0.0.1:8188"])]
        sinks = frozenset()
        if pending and not args.report_only:
            needed = {n["class_type"] for n in workflow.graph.values()} | ({PROBE_CLASS} if args.sweep else set())
            sinks = check_servers(clients, needed)
    except (WorkflowError, StateError, ServerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.sweep:
        print(
            f"sweep of node {workflow.node} (method {workflow.template!r}): {', '.join(workflow.points)}; "
            f"references: {', '.join(workflow.references) or 'none'}",
            file=sys.stderr,
        )
    print(
        f"{len(items)} items ({len(workflow.methods)} methods x {len(prompts)} prompts x "
        f"{-(-args.seeds // batch)} chunks of up to {batch}); {len(items) - len(pending)} already done; "
        f"{len(clients)} server(s)",
        file=sys.stderr,
    )
    queue = WorkQueue(pending)
    stopped: dict[str, str] = {}
    if pending and not args.report_only:
        progress = Progress(len(items), len(items) - len(pending), [c.url for c in clients])
        try:
            stopped = run_items(
                queue,
                clients,
                Job(workflow, state, sinks),
                progress,
                depth=max(1, args.depth),
                revive_tries=args.revive_tries,
            )
        except KeyboardInterrupt:
            print(
                f"\ninterrupted: {len(state.done)} items are saved in {args.out}; rerun the same command to go on "
                f"(graphs already queued on the servers still run there)",
                file=sys.stderr,
            )
            return 130
        progress.render(force=True)
        for c in clients:
            c.close()
    settings = {
        "seeds": args.seeds,
        "batch": batch,
        "seed_start": args.seed_start,
        "servers": [c.url for c in clients],
        "paper": args.paper,
        "backend": args.backend,
        "device": args.device,
        "dreamsim_dir": args.dreamsim_dir,
        "sweep": args.sweep,
    }
    report = write_report(Path(args.out), workflow, prompts, items, state, settings, dict(queue.failed), stopped)
    for url, why in stopped.items():
        print(f"server {url} dropped: {why}", file=sys.stderr)
    where = Path(args.out) / "summary.md"
    if report["complete"]:
        print(f"report complete: {where}", file=sys.stderr)
        return 0
    print(
        f"report INCOMPLETE ({len(report['problems'])} problems, see {where}); rerun the same command to finish",
        file=sys.stderr,
    )
    for p in report["problems"][:20]:
        print(f"  - {p}", file=sys.stderr)
    return 1
