"""The handover sweep (`python -m runner WORKFLOW ... --sweep k=0..4`): the hybrid at a grid of handover points, the
paper's Fig. 7 for any model pair.

The workflow names its hybrid by the title `handover` on one Base First Step Sampler (runner/CONVENTIONS.md). Each
grid point becomes a method of its own (`k=2`, `sigma=0.75`, `A=18.2`): the method whose branch holds that node,
with the node's handover inputs set for the point. Every other method of the workflow (`base`, `distilled`, ...)
runs once as a reference. Everything else is the runner's usual machinery: work items, resumable state, chunks,
servers, report.

The handover a point really used is read from the server, not assumed: the runner adds a stock `PreviewAny` after
the node's LATENT, which carries the node's `Handover` (`ddistill/handover.py`) with its `HandoverPoint` (k, sigma,
A, the rule) and the x̂0 trajectory of the base steps (the first frame: the schedule's start sigma and A). k = 0 is
the distilled model alone: the node takes the distilled model (and the conditioning and cfg) of the Distilled
Continue Sampler that its LATENT feeds, for one step, and the Distilled Continue the rest.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ddistill import protocol

from .workflow import HANDOVER_TITLE, Method, Workflow, WorkflowError, _describe, _is_link, _literal_int, _title

PROBE = "runner_handover"  # id of the PreviewAny the runner adds after the handover node's LATENT
PROBE_CLASS = "PreviewAny"
KINDS = {"k": "k", "sigma": "sigma", "a": "A"}  # --sweep keys (case-insensitive) -> canonical
DISTILLED_ALONE = "distilled alone"
K0_LABEL_SUFFIX = " (k=0)"  # on k = 0's x̂0 frames; it also keeps ComfyUI from serving k = 0 from its cache
REFERENCE_ORDER = ("base", "distilled")


class SweepError(ValueError):
    """A --sweep value the runner cannot run; the message says what to write."""


# ------------------------------------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class GridPoint:
    kind: str  # "k", "sigma" or "A"
    value: float  # int for k

    @property
    def name(self) -> str:
        return f"{self.kind}={_number(self.value)}"

    def inputs(self) -> dict:
        """The handover node's inputs for this point (k = 0 is rewired on top of these, see SweepWorkflow)."""
        if self.kind == "k":
            return {"base_steps": max(1, int(self.value))}
        if self.kind == "sigma":
            return {"base_steps": 0, "handover_sigma": float(self.value)}
        return {"base_steps": 0, "handover_amplification": float(self.value), "handover_sigma": 0.0}


def _number(v) -> str:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return str(int(v))
    short = f"{v:g}"
    return short if float(short) == v else repr(float(v))


def _parse_value(kind: str, text: str, spec: str):
    try:
        v = int(text) if kind == "k" else float(text)
    except ValueError:
        what = "a whole number of base steps" if kind == "k" else "a number"
        raise SweepError(f"--sweep {spec}: {text!r} is not {what}") from None
    if kind == "k" and v < 0:
        raise SweepError(f"--sweep {spec}: k = {v}; k counts base steps: 0 (the distilled model alone) or more")
    if kind != "k" and not (v > 0 and math.isfinite(v)):
        raise SweepError(f"--sweep {spec}: {kind} = {text} must be a positive number")
    return v


def parse_sweep(specs: list[str]) -> list[GridPoint]:
    """Grid points from --sweep values, in the order given: `k=0..4` (a range, both ends included), `k=0,1,3`,
    `sigma=0.9,0.8,0.75`, `A=400,80,18.2`; several --sweep values add up (`--sweep k=0..2 --sweep A=18.2`)."""
    points: list[GridPoint] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        kind = KINDS.get(key.strip().lower())
        if not sep or kind is None:
            raise SweepError(
                f"--sweep {spec!r}: write KIND=VALUES with KIND k (base steps), sigma (handover_sigma) or A "
                f"(handover_amplification), e.g. --sweep k=0..4, --sweep sigma=0.9,0.8,0.75, --sweep A=400,80,18.2"
            )
        parts = [p.strip() for p in values.split(",")]
        if not values.strip() or any(not p for p in parts):
            raise SweepError(f"--sweep {spec!r}: an empty value; separate values with commas, e.g. {kind}=1,2")
        for part in parts:
            if ".." in part:
                if kind != "k":
                    raise SweepError(
                        f"--sweep {spec!r}: ranges (a..b) are for k only; list the {kind} values, e.g. "
                        f"{kind}=0.9,0.8,0.75"
                    )
                lo, _, hi = part.partition("..")
                a, b = _parse_value("k", lo.strip(), spec), _parse_value("k", hi.strip(), spec)
                if a > b:
                    raise SweepError(f"--sweep {spec!r}: the range {part} runs backwards; write k={b}..{a}")
                points += [GridPoint("k", k) for k in range(a, b + 1)]
            else:
                points.append(GridPoint(kind, _parse_value(kind, part, spec)))
    if not points:
        raise SweepError("--sweep: no grid point given")
    seen: set[str] = set()
    for p in points:
        if p.name in seen:
            raise SweepError(f"--sweep: {p.name} is given twice; give each grid point once")
        seen.add(p.name)
    return points


# ----------------------------------------------------------------------------------------------- the workflow
def handover_node(graph: dict) -> str:
    """The id of the one node titled `handover`; it must be a Base First Step Sampler."""
    found = [nid for nid, n in graph.items() if _title(n).lower() == HANDOVER_TITLE]
    hint = " (see runner/CONVENTIONS.md)"
    if not found:
        raise WorkflowError(
            f"workflow: --sweep needs the hybrid's {protocol.BASE_FIRST_STEP} titled '{HANDOVER_TITLE}' (instead "
            f"of 'seed': the runner sets its seed too); no node carries that title" + hint
        )
    if len(found) > 1:
        raise WorkflowError(
            f"workflow: nodes {', '.join(found)} are titled '{HANDOVER_TITLE}'; the sweep varies one hybrid, "
            f"title only its Base First Step Sampler" + hint
        )
    nid = found[0]
    if graph[nid]["class_type"] != protocol.BASE_FIRST_STEP:
        raise WorkflowError(
            f"workflow: {_describe(nid, graph[nid])} is titled '{HANDOVER_TITLE}', but only a "
            f"{protocol.BASE_FIRST_STEP} (Base First Step Sampler) can be swept" + hint
        )
    return nid


def continue_node(graph: dict, nid: str) -> str | None:
    """The Distilled Continue Sampler fed by node ``nid``'s LATENT, if any."""
    for cid, n in graph.items():
        latent = n["inputs"].get("latent")
        fed = _is_link(latent) and (str(latent[0]), latent[1]) == (nid, 0)
        if fed and n["class_type"] == protocol.DISTILLED_CONTINUE:
            return cid
    return None


@dataclass
class SweepWorkflow(Workflow):
    """A workflow whose hybrid runs once per grid point; ``methods`` = the references, then one per point."""

    points: dict[str, GridPoint] = field(default_factory=dict)
    template: str = ""  # the workflow's method that holds the handover node (replaced by the grid points)
    node: str = ""  # the handover node
    continue_id: str | None = None
    references: list[str] = field(default_factory=list)

    def build(self, method: str, prompt: str, seed: int, batch: int, sinks: frozenset = frozenset()) -> dict:
        g = super().build(method, prompt, seed, batch, sinks)  # a grid point: the template's nodes (sweep_workflow)
        point = self.points.get(method)
        if point is None:
            return g
        node = g[self.node]["inputs"]
        node.update(point.inputs())
        if point.kind == "k" and point.value == 0:  # the distilled model alone, through the same two nodes
            cont = g[self.continue_id]["inputs"]
            node["base_model"] = cont["distilled_model"]
            node["positive"], node["negative"] = cont["positive"], cont["negative"]
            node["base_cfg"] = cont.get("cfg", 1.0)
            label = str(cont.get("model_label") or "").strip() or protocol.DISTILLED_LABEL
            node["model_label"] = label + K0_LABEL_SUFFIX
        g[PROBE] = {
            "class_type": PROBE_CLASS,
            "inputs": {"source": [self.node, 0]},
            "_meta": {"title": "runner: the handover point"},
        }
        return g

    def collect_extra(self, method: str, outputs: dict, where: str = "") -> dict:
        point = self.points.get(method)
        if point is None:
            return {}
        text = ((outputs.get(PROBE) or {}).get("text") or [None])[0]
        if not isinstance(text, str):
            raise ValueError(f"{where}method {method!r}: the runner's PreviewAny after node {self.node} gave no text")
        return {"handover": real_handover(point, parse_latent_text(text, where))}


def sweep_workflow(workflow: Workflow, points: list[GridPoint]) -> SweepWorkflow:
    """The sweep of ``workflow``: its references and one method per grid point (checked before anything runs)."""
    graph = workflow.graph
    nid = handover_node(graph)
    holders = [m for m in workflow.methods.values() if nid in m.nodes]
    if len(holders) != 1:
        which = ", ".join(repr(m.name) for m in holders) or "no method"
        raise WorkflowError(
            f"workflow: the '{HANDOVER_TITLE}' node {nid} feeds {which}; it must feed exactly one method (the "
            f"hybrid whose outputs are titled 'method: NAME') (see runner/CONVENTIONS.md)"
        )
    template = holders[0]
    cont = continue_node(graph, nid)
    inputs = graph[nid]["inputs"]
    steps = inputs.get("steps")
    if _literal_int(steps) and "sigmas" not in inputs:
        too_far = [p.name for p in points if p.kind == "k" and p.value >= steps]
        if too_far:
            raise SweepError(
                f"--sweep: {', '.join(too_far)} leave(s) no step for the distilled model: node {nid} runs a "
                f"{steps}-step schedule, so k goes up to {steps - 1}"
            )
    if any(p.kind == "k" and p.value == 0 for p in points):
        if cont is None or cont not in template.nodes:
            raise WorkflowError(
                f"workflow: k=0 (the distilled model alone) takes the distilled model of the Distilled Continue "
                f"Sampler that node {nid}'s LATENT feeds; there is none in method {template.name!r}. Leave k=0 out "
                f"(--sweep k=1..K) or connect the hybrid as Base First Step -> Distilled Continue"
            )
        for key in ("distilled_model", "positive", "negative"):
            if key not in graph[cont]["inputs"]:
                raise WorkflowError(f"workflow: node {cont} (Distilled Continue) has no {key} input for k=0")
    clash = [p.name for p in points if p.name in workflow.methods]
    if clash:
        raise WorkflowError(f"workflow: methods {', '.join(clash)} have the names of grid points; rename them")
    rank = {m: REFERENCE_ORDER.index(m) if m in REFERENCE_ORDER else len(REFERENCE_ORDER) for m in workflow.methods}
    refs = sorted((m for m in workflow.methods if m != template.name), key=rank.get)  # stable: the workflow's order
    methods = {m: workflow.methods[m] for m in refs}
    for p in points:
        methods[p.name] = Method(
            p.name,
            template.image_node,
            template.meter_node,
            template.meter_seed,
            template.x0_node,
            set(template.nodes),
        )
    return SweepWorkflow(
        workflow.path,
        workflow.graph,
        methods,
        workflow.prompt_nodes,
        workflow.seed_nodes,
        workflow.batch_nodes,
        workflow.default_batch,
        workflow.meter_backend,
        points={p.name: p for p in points},
        template=template.name,
        node=nid,
        continue_id=cont,
        references=refs,
    )


# ------------------------------------------------------------------------- the handover the server really used
_NUM = r"[-+]?(?:inf|nan|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_POINT = re.compile(
    rf"HandoverPoint\(k=(\d+), sigma=({_NUM}), amplification=({_NUM}), rule='(\w+)', target=({_NUM}|None)\)"
)
_TAIL = re.compile(r"Handover\(sigmas=tensor\(\[([^\]]*)\]")
_FRAME = re.compile(
    rf"Frame\(step=(\d+), sigma=({_NUM}), timestep=({_NUM}), model=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
)
_FRAME_END = re.compile(rf"flow=(True|False), amplification=({_NUM}|None)\)")


def parse_latent_text(text: str, where: str = "") -> dict:
    """What a Base First Step's LATENT says about its handover, from its text as PreviewAny shows it (the repr of
    the LATENT dict): the HandoverPoint (k, sigma, A, rule, target), the schedule's step count N and the first
    x̂0 frame (the schedule's start: sigma_0, A_0, the model that took step 1)."""
    point = _POINT.search(text)
    if point is None:
        raise ValueError(
            f"{where}the Base First Step's LATENT carries no HandoverPoint: the pack on that server is older than the "
            f"sweep (no noise-level handover); update it there and restart the server"
        )
    k = int(point.group(1))
    out = {
        "k": k,
        "sigma": float(point.group(2)),
        "amplification": float(point.group(3)),
        "rule": point.group(4),
        "target": None if point.group(5) == "None" else float(point.group(5)),
        "steps": None,
        "start_sigma": None,
        "start_amplification": None,
        "first_model": None,
    }
    tail = _TAIL.search(text)
    if tail:
        out["steps"] = k + len([x for x in tail.group(1).split(",") if x.strip()]) - 1
    for frame in _FRAME.finditer(text):
        if int(frame.group(1)) != 0:
            continue
        out["start_sigma"] = float(frame.group(2))
        out["first_model"] = ast.literal_eval(frame.group(4))
        end = _FRAME_END.search(text, frame.end())
        if end and end.group(2) != "None":
            out["start_amplification"] = float(end.group(2))
        break
    return out


def real_handover(point: GridPoint, parsed: dict) -> dict:
    """The handover of a grid point as the server ran it: the node's HandoverPoint, or for k = 0 (the distilled
    model alone: the node took one step of the distilled model) the schedule's start."""
    rec = {"point": point.name, **parsed}
    if point.kind == "k" and point.value == 0:
        rec.update(k=0, sigma=parsed["start_sigma"], amplification=parsed["start_amplification"], rule=DISTILLED_ALONE)
        rec["target"] = None
    return rec


# ------------------------------------------------------------------------------------------------- the report
def _seconds(rec: dict, node: str) -> float | None:
    """The server's execution time of one item, None when the sampler came from ComfyUI's cache."""
    if rec.get("seconds") is None or node in (rec.get("cached") or []):
        return None
    return rec["seconds"]


def time_per_image(recs: list[dict], node: str | None) -> float | None:
    timed = [(s, r["batch"]) for r in recs if (s := _seconds(r, node or "")) is not None]
    return sum(s for s, _ in timed) / sum(n for _, n in timed) if timed else None


def sweep_rows(workflow: SweepWorkflow, items, state, averages: dict, curves: dict) -> tuple[list[dict], list[str]]:
    """One row per grid point (earliest handover first) and per reference method; problems found on the way."""
    problems: list[str] = []
    rows = []
    for name in list(workflow.points) + workflow.references:
        recs = [state.done[i.id] for i in items if i.method == name and state.is_done(i)]
        point = workflow.points.get(name)
        row = {
            "method": name,
            "reference": point is None,
            "requested": None if point is None else {"kind": point.kind, "value": point.value},
            "k": None,
            "sigma": None,
            "amplification": None,
            "rule": None,
            "steps": None,
            "diversity": None,
            "ci": None,
            "relative_to_base": None,
            "reaches_base": None,
            "x0_distance": None,
            "x0_step": None,
            "seconds_per_image": time_per_image(recs, workflow.node if point else None),
            "items": len(recs),
        }
        if name in averages:
            row["diversity"], row["ci"] = averages[name]["mean"], averages[name]["ci"]
        if point is not None:
            handovers = [r["handover"] for r in recs if r.get("handover")]
            seen = {json.dumps({k: h[k] for k in ("k", "sigma", "amplification")}) for h in handovers}
            if len(seen) > 1:
                problems.append(f"{name}: the handover differs between items ({'; '.join(sorted(seen))})")
            first = handovers[0] if handovers else None
            if first:
                row.update({k: first[k] for k in ("k", "sigma", "amplification", "rule", "steps")})
                step = first["k"] + 1  # the x̂0 predicted at the handover sigma: the distilled model's first step
                row["x0_step"] = step
                row["x0_distance"] = (curves.get(name) or {}).get(step)
            elif recs:
                problems.append(f"{name}: no item recorded its handover point")
        rows.append(row)
    base = averages.get("base")
    if base and base["mean"] > 0:
        for row in rows:
            if row["diversity"] is not None:
                row["relative_to_base"] = row["diversity"] / base["mean"]
                if not row["reference"] and row["ci"]:
                    row["reaches_base"] = row["ci"][1] >= base["mean"]
    grid = list(workflow.points)
    order = sorted(  # earliest handover first; equal handovers in the order of the grid
        (r for r in rows if not r["reference"]),
        key=lambda r: (r["k"] is None, r["k"] or 0, -(r["sigma"] or 0.0), grid.index(r["method"])),
    )
    return order + [r for r in rows if r["reference"]], problems


def pick(rows: list[dict]) -> dict | None:
    """The earliest handover (lowest k, highest sigma) whose diversity interval reaches the base's diversity."""
    return next((r for r in rows if not r["reference"] and r["reaches_base"]), None)


def _g(v, digits=4) -> str:
    if v is None:
        return ""
    return "inf" if math.isinf(v) else f"{v:.{digits}g}"


def _label(row: dict) -> str:
    if row["reference"]:
        return f"{row['method']} (reference)"
    return row["method"] + (f" ({DISTILLED_ALONE})" if row["requested"] == {"kind": "k", "value": 0} else "")


def _diversity_cell(row: dict) -> str:
    if row["diversity"] is None:
        return "missing"
    ci = f" [{row['ci'][0]:.3f}, {row['ci'][1]:.3f}]" if row["ci"] else ""
    rel = f" ({row['relative_to_base']:.0%} of base)" if row["relative_to_base"] is not None else ""
    return f"{row['diversity']:.3f}{ci}{rel}"


def table_markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| handover | k | sigma | A | diversity (95% CI) | x̂0 distance at the handover step | time per image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        x0 = "" if r["reference"] else ("n/a" if r["x0_distance"] is None else f"{r['x0_distance']:.3f}")
        if x0 and r["x0_step"] is not None and r["x0_distance"] is not None:
            x0 += f" (step {r['x0_step']})"
        t = "cached" if r["seconds_per_image"] is None and r["items"] else _g(r["seconds_per_image"], 3)
        t = f"{t} s" if r["seconds_per_image"] is not None else t
        k = "" if r["k"] is None else (f"{r['k']} of {r['steps']}" if r["steps"] else str(r["k"]))
        a = _g(r["amplification"])
        lines.append(f"| {_label(r)} | {k} | {_g(r['sigma'])} | {a} | {_diversity_cell(r)} | {x0} | {t} |")
    return lines


def reading_lines(rows: list[dict], has_base: bool) -> list[str]:
    lines = [
        "How to read it: each point is the hybrid handing over to the distilled model at that point (k = base "
        "steps taken, sigma = the noise level of the handover, A = its noise amplification, sigma^2 in SD/SDXL's "
        "sigma space, (sigma / (1 - sigma))^2 for flow models; k = 0 is the distilled model alone). Diversity rises "
        "with later handovers and then levels off; every base step costs time. Pick the **earliest handover (the "
        "lowest k / highest sigma) whose diversity interval reaches the base model's diversity**, and set it in Base "
        "First Step (base_steps k, or base_steps 0 with its handover_sigma / handover_amplification). The x̂0 "
        "distance is how far the x̂0 predicted at the handover noise level is from the final image (0 = the image "
        "is decided there). Times are the server's whole graph per image (sampling, decoding and the measuring "
        "nodes; a reference's graph may hold fewer of them); the first item of a run also loads the models.",
        "",
    ]
    if not has_base:
        lines.append(
            "This workflow has no `base` method, so there is no base level to reach: add the base model alone, "
            "its outputs titled `method: base`, to read the sweep."
        )
        return lines
    best = pick(rows)
    if best is None:
        lines.append(
            "**No grid point reaches the base's diversity**: extend the grid to later handovers (larger k, lower "
            "sigma or lower A), or use more seeds (narrower intervals need more samples)."
        )
    else:
        lines.append(
            f"**Earliest handover whose interval reaches the base's diversity: {_label(best)}** (k = {best['k']}, "
            f"sigma {_g(best['sigma'])}, A {_g(best['amplification'])})."
        )
    return lines


def write_sweep(out: Path, workflow: SweepWorkflow, items, state, averages: dict, curves: dict, backend: str) -> dict:
    """sweep.md, sweep.csv, sweep.json and plots/sweep.png; returns {rows, problems, markdown, files}."""
    from .plots import sweep_plot

    rows, problems = sweep_rows(workflow, items, state, averages, curves)
    has_base = "base" in averages
    md = [
        "## Handover sweep",
        "",
        f"The hybrid of method `{workflow.template}` (node {workflow.node}, titled `{HANDOVER_TITLE}`) at "
        f"{len(workflow.points)} handover points; diversity = the Diversity Meter's mean pairwise distance "
        f"({backend}), averaged over prompts, with its 95% interval.",
        "",
        *table_markdown(rows),
        "",
        *reading_lines(rows, has_base),
        "",
    ]
    (out / "sweep.md").write_text("\n".join(md), encoding="utf-8")
    fields = [
        "method",
        "reference",
        "requested_kind",
        "requested_value",
        "k",
        "steps",
        "sigma",
        "amplification",
        "rule",
        "diversity",
        "ci_low",
        "ci_high",
        "relative_to_base",
        "reaches_base",
        "x0_step",
        "x0_distance",
        "seconds_per_image",
    ]
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            req = r["requested"] or {}
            flat = {**r, "requested_kind": req.get("kind"), "requested_value": req.get("value")}
            flat["ci_low"], flat["ci_high"] = r["ci"] or (None, None)
            w.writerow(["" if flat[k] is None else flat[k] for k in fields])
    best = pick(rows) if has_base else None
    data = {"template": workflow.template, "node": workflow.node, "rows": rows, "pick": best and best["method"]}
    (out / "sweep.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    files = {"markdown": "sweep.md", "csv": "sweep.csv", "json": "sweep.json"}
    points = [r for r in rows if not r["reference"] and r["diversity"] is not None]
    if points:
        (out / "plots").mkdir(exist_ok=True)
        refs = [
            {"label": r["method"], "value": r["diversity"], "ci": r["ci"]}
            for r in rows
            if r["reference"] and r["diversity"] is not None
        ]
        marks = [
            {
                "label": r["method"],
                "sub": f"k={r['k']} sigma {_g(r['sigma'], 3)}" if r["k"] is not None else "",
                "value": r["diversity"],
                "ci": r["ci"],
                "picked": best is not None and r["method"] == best["method"],
            }
            for r in points
        ]
        title = f"Diversity vs handover ({backend.split(' (')[0]})"
        sweep_plot(marks, refs, title).save(out / "plots" / "sweep.png")
        files["plot"] = "plots/sweep.png"
        md += ["![Diversity vs handover](plots/sweep.png)", ""]
        (out / "sweep.md").write_text("\n".join(md), encoding="utf-8")
    return {"rows": rows, "problems": problems, "markdown": md, "files": files, "pick": data["pick"]}
