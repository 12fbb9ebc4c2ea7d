"""One run's job: builds each item's API prompt and collects its outputs (images, Diversity Meter and x̂0 Preview
`ui` outputs) from /history into the report folder."""

from __future__ import annotations

import os
from pathlib import Path

from .client import ExecutionFailed
from .work import Item, RunState, slug
from .workflow import Workflow


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Job:
    def __init__(self, workflow: Workflow, state: RunState, sinks: frozenset = frozenset()):
        self.workflow = workflow
        self.state = state
        self.out = state.out
        self.sinks = sinks

    def build(self, item: Item) -> dict:
        return self.workflow.build(item.method, item.prompt, item.seed, item.batch, self.sinks)

    def _fetch_refs(self, client, refs: list, folder: Path) -> list[str]:
        paths = []
        for k, ref in enumerate(refs):
            path = folder / f"{k:03d}_{Path(ref['filename']).name}"
            write_atomic(path, client.view(ref))
            paths.append(str(path.relative_to(self.out)))
        return paths

    def collect(self, client, item: Item, entry: dict) -> dict:
        m = self.workflow.methods[item.method]
        outputs = entry.get("outputs") or {}
        refs = (outputs.get(m.image_node) or {}).get("images") or []
        if len(refs) != item.batch:
            raise ExecutionFailed(
                "",
                f"server {client.url}: method {item.method!r}: node {m.image_node} gave "
                f"{len(refs)} images for a batch of {item.batch}; its images input must be "
                f"the method's whole batch",
            )
        images = []
        for i, ref in enumerate(refs):
            path = item.image_path(self.out, i)
            write_atomic(path, client.view(ref))
            images.append(str(path.relative_to(self.out)))
        rec = {"images": images, "meter": None, "x0": None, **execution_time(entry)}
        extras = self.out / "node_images" / slug(item.method, 24) / slug(item.prompt) / f"seed{item.seed}"
        for key, nid in (("meter", m.meter_node), ("x0", m.x0_node)):
            if nid and nid in outputs:
                ui = dict(outputs[nid])
                if isinstance(ui.get("images"), list):
                    ui["images"] = self._fetch_refs(client, ui["images"], extras / key)
                rec[key] = ui
            elif nid:
                raise ExecutionFailed(
                    "", f"server {client.url}: method {item.method!r}: node {nid} returned no output in /history"
                )
        try:
            rec.update(self.workflow.collect_extra(item.method, outputs, f"server {client.url}: "))
        except ValueError as e:
            raise ExecutionFailed("", str(e)) from None
        return rec


def execution_time(entry: dict) -> dict:
    """The server's own clock for one graph: seconds from execution_start to execution_success (its status
    messages' timestamps, ms) and the nodes it served from its cache."""
    stamps, cached = {}, []
    for kind, msg in (entry.get("status") or {}).get("messages") or []:
        if isinstance(msg, dict) and isinstance(msg.get("timestamp"), (int, float)):
            stamps[kind] = msg["timestamp"]
        if kind == "execution_cached" and isinstance(msg, dict):
            cached = [str(n) for n in msg.get("nodes") or []]
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    return {"seconds": None if start is None or end is None else (end - start) / 1000.0, "cached": cached}
