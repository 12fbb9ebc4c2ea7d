"""Writes the report folder: diversity.csv, report.json, grids/, plots/, summary.md and summary.html. A run with
missing items or failures is written too, but marked INCOMPLETE everywhere (and report.json has complete=false)."""

from __future__ import annotations

import csv
import html
import json
from dataclasses import asdict
from pathlib import Path

from . import paper
from .plots import bar_chart, image_grid, line_plot
from .results import Cell, average, meter_numbers, recompute, x0_curve
from .work import Item, RunState, slug

GRID_PREVIEW = 8


def build_cells(
    workflow, prompts, items: list[Item], state: RunState, backend: str, device: str, weights_dir: str | None
):
    """{method: {prompt: Cell}}, the x̂0 curves {method: curve}, and the problems that keep the report incomplete."""
    methods = list(workflow.methods)
    cells: dict[str, dict[str, Cell]] = {m: {} for m in methods}
    curves: dict[str, list[dict[int, float]]] = {}
    problems: list[str] = []
    for m in methods:
        for p in prompts:
            mine = sorted((i for i in items if i.method == m and i.prompt == p), key=lambda i: i.chunk)
            missing = [i for i in mine if not state.is_done(i)]
            if missing:
                problems.append(
                    f"{m} | {p}: {len(missing)} of {len(mine)} chunks missing "
                    f"(seeds {', '.join(str(i.seed) for i in missing)})"
                )
                continue
            recs = [state.done[i.id] for i in mine]
            images = [img for r in recs for img in r["images"]]
            chunk_means = [meter_numbers(r["meter"])["mean"] for r in recs if r.get("meter")]
            for r in recs:
                curve = x0_curve(r["x0"]) if r.get("x0") else None
                if curve:
                    curves.setdefault(m, []).append(curve)
            try:
                if len(recs) == 1 and recs[0].get("meter"):
                    nums, source = meter_numbers(recs[0]["meter"]), "graph"
                elif len(images) < 2:
                    problems.append(f"{m} | {p}: one image cannot measure diversity; use --seeds 2 or more")
                    continue
                else:
                    nums = recompute(
                        [state.out / x for x in images],
                        backend,
                        device,
                        weights_dir,
                        seed=workflow.methods[m].meter_seed,
                    )
                    source = f"recomputed over {len(images)} saved images ({backend})"
            except Exception as e:  # reported as a problem of this cell, the report says so
                problems.append(f"{m} | {p}: numbers could not be computed: {e}")
                continue
            cells[m][p] = Cell(
                m, p, nums["n"], nums["n_pairs"], nums["mean"], nums["std"], nums["ci"], source, images, chunk_means
            )
    mean_curves = {
        m: {k: sum(c[k] for c in cs) / len(cs) for k in sorted(set.intersection(*(set(c) for c in cs)))}
        for m, cs in curves.items()
    }
    return cells, mean_curves, problems


def _ci(ci):
    return "n/a" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def write_report(
    out: Path,
    workflow,
    prompts,
    items,
    state: RunState,
    settings: dict,
    failures: dict[str, str],
    stopped: dict[str, str],
) -> dict:
    out = Path(out)
    methods = list(workflow.methods)
    backend = workflow.meter_backend or settings["backend"]
    cells, curves, problems = build_cells(
        workflow, prompts, items, state, backend, settings["device"], settings.get("dreamsim_dir")
    )
    problems += [f"failed: {k}: {v}" for k, v in failures.items()]
    table = paper.pick_table(settings.get("paper", "auto"), methods, prompts)
    averages = {m: average(list(cells[m].values())) for m in methods if len(cells[m]) == len(prompts)}
    sweep = None
    if getattr(workflow, "points", None):  # a handover sweep (runner/sweep.py): its table, files and plot
        from .sweep import write_sweep

        sweep = write_sweep(out, workflow, items, state, averages, curves, backend)
        problems += sweep["problems"]
    complete = not problems
    ref_avg = (paper.TABLES[table].get("average") or {}) if table else {}
    if table and not ref_avg and len(prompts) == 1:
        ref_avg = paper.paper_row(table, prompts[0]) or {}

    # CSV
    with open(out / "diversity.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "prompt", "n", "n_pairs", "mean", "std", "ci_low", "ci_high", "source", "paper"])
        for m in methods:
            for p in prompts:
                c = cells[m].get(p)
                ref = (paper.paper_row(table, p) or {}).get(m) if table else None
                if c:
                    w.writerow([m, p, c.n, c.n_pairs, c.mean, c.std, *(c.ci or ("", "")), c.source, ref or ""])
            if m in averages:
                a = averages[m]
                w.writerow(
                    [
                        m,
                        "(average over prompts)",
                        "",
                        "",
                        a["mean"],
                        "",
                        *(a["ci"] or ("", "")),
                        "average",
                        ref_avg.get(m, ""),
                    ]
                )

    # grids and plots
    (out / "grids").mkdir(exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    grids = {}
    for p in prompts:
        rows = [(m, [out / x for x in cells[m][p].images[:GRID_PREVIEW]]) for m in methods if p in cells[m]]
        if rows:
            name = f"grids/{slug(p)}.png"
            image_grid(rows).save(out / name)
            grids[p] = name
            for m, _ in rows:
                paths = [out / x for x in cells[m][p].images]
                full = [(f"{k}-{min(k + 10, len(paths)) - 1}", paths[k : k + 10]) for k in range(0, len(paths), 10)]
                image_grid(full, cell=96, label_w=60).save(out / f"grids/{slug(p)}__{slug(m, 24)}.png")
    plots = {}
    if averages:
        bars = [
            {"label": m, "value": a["mean"], "ci": a["ci"], "reference": ref_avg.get(m)} for m, a in averages.items()
        ]
        bar_chart(bars, f"Diversity per method ({backend})").save(out / "plots/diversity.png")
        plots["diversity"] = "plots/diversity.png"
    if curves:
        with open(out / "x0_convergence.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["method", "step", "steps", "fraction", "mean_distance_to_final"])
            for m, curve in curves.items():
                w.writerows([m, k, max(curve), k / max(curve), v] for k, v in curve.items())
        # x = step / steps, so that a 50-step base model and a 4-step distilled one share the axis (Fig. 5)
        fractions = {m: {k / max(c): v for k, v in c.items()} for m, c in curves.items()}
        line_plot(
            fractions,
            "predicted x0 per step: distance to the final image",
            "fraction of the trajectory (step / steps)",
            "distance",
            xticks=[0, 0.25, 0.5, 0.75, 1],
        ).save(out / "plots/x0_convergence.png")
        plots["x0_convergence"] = "plots/x0_convergence.png"

    report = {
        "complete": complete,
        "problems": problems,
        "workflow": workflow.path,
        "backend": backend,
        "settings": settings,
        "servers_stopped": stopped,
        "paper_table": table,
        "methods": {
            m: {"average": averages.get(m), "prompts": {p: asdict(c) for p, c in cells[m].items()}} for m in methods
        },
        "paper": paper.TABLES.get(table) if table else None,
        "grids": grids,
        "plots": plots,
        "x0_convergence": curves,
    }
    if sweep is not None:
        report["sweep"] = {k: sweep[k] for k in ("rows", "pick", "files", "markdown")}
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    md = summary_markdown(report, methods, prompts, cells, averages, table, ref_avg)
    (out / "summary.md").write_text(md, encoding="utf-8")
    (out / "summary.html").write_text(
        summary_html(report, methods, prompts, cells, averages, table, ref_avg), encoding="utf-8"
    )
    return report


def _status_lines(report) -> list[str]:
    if report["complete"]:
        return ["Status: complete (every item finished; nothing missing)."]
    return [
        "**INCOMPLETE: these numbers do not cover the whole experiment.** Rerun the same command to finish "
        "the missing items (finished ones are skipped):",
        *[f"- {p}" for p in report["problems"]],
    ]


def summary_markdown(report, methods, prompts, cells, averages, table, ref_avg) -> str:
    s = report["settings"]
    lines = [
        f"# Diversity report{' (INCOMPLETE)' if not report['complete'] else ''}",
        "",
        *_status_lines(report),
        "",
        f"Workflow `{report['workflow']}`; {len(prompts)} prompt(s); {s['seeds']} samples per prompt and method "
        f"(seeds from {s['seed_start']}, batches of {s['batch']}); metric: **{report['backend']}** "
        f"(mean pairwise distance; 95% percentile bootstrap interval over images).",
        "",
    ]
    if report.get("sweep"):
        lines += report["sweep"]["markdown"]
    if "not DreamSim" in report["backend"]:
        lines += [
            "Note: this metric is not DreamSim, so its values are not on the paper's scale; compare the "
            "ordering of methods, not the values.",
            "",
        ]
    head = "| prompt | " + " | ".join(methods) + " |"
    lines += ["## Diversity per prompt", "", head, "|---" * (len(methods) + 1) + "|"]
    for p in prompts:
        row = [f"{cells[m][p].mean:.3f} {_ci(cells[m][p].ci)}" if p in cells[m] else "missing" for m in methods]
        ref = paper.paper_row(table, p) if table else None
        if ref:
            row = [f"{r} (paper {ref[m]:.3f})" if m in ref else r for r, m in zip(row, methods)]
        lines.append(f"| {p} | " + " | ".join(row) + " |")
    if averages:
        row = [
            f"**{averages[m]['mean']:.3f}** {_ci(averages[m]['ci'])}" if m in averages else "missing" for m in methods
        ]
        row = [f"{r} (paper {ref_avg[m]:.3f})" if m in ref_avg else r for r, m in zip(row, methods)]
        lines.append("| average | " + " | ".join(row) + " |")
        if "base" in averages and averages["base"]["mean"] > 0:
            base = averages["base"]["mean"]
            row = [f"{averages[m]['mean'] / base:.0%}" if m in averages else "missing" for m in methods]
            row = [
                f"{r} (paper {ref_avg[m] / ref_avg['base']:.0%})" if m in ref_avg and "base" in ref_avg else r
                for r, m in zip(row, methods)
            ]
            lines.append("| average / base | " + " | ".join(row) + " |")
    sources = sorted({c.source for m in methods for c in cells[m].values()})
    lines += [
        "",
        (
            "Source of each number: "
            + "; ".join(
                "graph (the Diversity Meter's own output in the workflow)" if x == "graph" else x for x in sources
            )
            + "."
        )
        if sources
        else "No number could be computed.",
        "",
    ]
    if table:
        t = paper.TABLES[table]
        lines += [
            f"## The paper: {t['title']}",
            "",
            "| prompt | " + " | ".join(t["methods"]) + " |",
            "|---" * (len(t["methods"]) + 1) + "|",
        ]
        for p, row in t["rows"].items():
            lines.append(f"| {p} | " + " | ".join(f"{row[m]:.3f}" for m in t["methods"]) + " |")
        if t.get("average"):
            lines.append("| average | " + " | ".join(f"{t['average'][m]:.3f}" for m in t["methods"]) + " |")
        lines.append("")
    for key, title in (("diversity", "Diversity per method"), ("x0_convergence", "x̂0 convergence")):
        if key in report["plots"]:
            lines += [f"![{title}]({report['plots'][key]})", ""]
    for p, g in report["grids"].items():
        lines += [f"Samples, {p}:", "", f"![{p}]({g})", ""]
    return "\n".join(lines)


def summary_html(report, methods, prompts, cells, averages, table, ref_avg) -> str:
    md = summary_markdown(report, methods, prompts, cells, averages, table, ref_avg)
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            if line.startswith("|---"):
                continue
            cells_ = [html.escape(c.strip()).replace("**", "") for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            body.append(
                ("<table>" if not in_table else "") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells_) + "</tr>"
            )
            in_table = True
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img src="{html.escape(src[:-1])}" alt="{html.escape(alt)}"></p>')
        elif line.startswith("# ") or line.startswith("## "):
            level = 1 if line.startswith("# ") else 2
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            opened = body and body[-1].endswith("</li></ul>")
            item = f"<li>{html.escape(line[2:])}</li></ul>"
            body[-1:] = [body[-1][: -len("</ul>")] + item] if opened else [*body[-1:], "<ul>" + item]
        elif line.strip():
            body.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if in_table:
        body.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
    )
    title = "Diversity report" + ("" if report["complete"] else " (INCOMPLETE)")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
