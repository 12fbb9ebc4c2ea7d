#!/usr/bin/env python3
"""The one source of the pack's example workflows: every paper experiment is described once here and written
both as a canvas (UI-format) workflow ``workflows/<name>.json`` and as its API-format twin
``workflows/api/<name>.json``, plus a thumbnail card ``workflows/<name>.jpg`` (the template browser's image).

The UI format needs each node's widget order, so the node definitions come from a real server's
``/object_info``: ``--url http://127.0.0.1:8188`` uses a running ComfyUI with the pack; without it the script
starts a temporary one (``ddistill_dev/host/comfy_server.py``). The thumbnails of the offline demo twins are
real renders: the script runs those workflows on the bundled demo models (CPU, about a minute). ``--check``
compares instead of writing (exit 1 on a difference); ``--readme`` prints the README table of experiments and
model files.

Node titles follow ``runner/CONVENTIONS.md`` (``prompt``, ``negative``, ``seed``, ``batch``, ``method: NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from ddistill.protocol import METER_UI_KEY

from .workflow_blueprint import BLUEPRINTS, blueprint_id, expand, node_def, subgraph_of, to_blueprint
from .workflow_catalog import EXPERIMENTS, MODELS, PACK_ID, PACK_NODE_PREFIX, PACK_VERSION
from .workflow_families import with_newer_options
from .workflow_graph import complete_inputs, to_api, to_ui

PACK_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = PACK_ROOT / "workflows"
SUBGRAPHS = PACK_ROOT / "subgraphs"  # the pack's subgraph blueprints (ComfyUI serves them at /global_subgraphs)
BLUEPRINT_IDS = {blueprint_id(make().name) for make in BLUEPRINTS}
LOADER_INPUTS = {  # each loader's model file inputs
    "CheckpointLoaderSimple": ("ckpt_name",),
    "LoraLoaderModelOnly": ("lora_name",),
    "LoraLoader": ("lora_name",),
    "UNETLoader": ("unet_name",),
    "CLIPLoader": ("clip_name",),
    "DualCLIPLoader": ("clip_name1", "clip_name2"),
    "TripleCLIPLoader": ("clip_name1", "clip_name2", "clip_name3"),
    "VAELoader": ("vae_name",),
}


def node_properties(node) -> dict:
    """Properties the frontend reads: the pack a node comes from and, on loaders, where to get the model file
    (the frontend's missing-models dialog shows these links). A blueprint instance has none (as the frontend saves
    it)."""
    if node.type in BLUEPRINT_IDS:
        return {}
    pack = node.type.startswith(PACK_NODE_PREFIX)
    props = {"cnr_id": PACK_ID if pack else "comfy-core"}
    if pack:
        props["ver"] = PACK_VERSION
    files = [node.inputs.get(key) for key in LOADER_INPUTS.get(node.type, ())]
    models = [
        {"name": f, "url": MODELS[f].url, "directory": MODELS[f].folder}
        for f in files
        if f in MODELS and MODELS[f].url  # no link: the note says how to get the file
    ]
    if models:
        props["models"] = models
    return props


def build_all(object_info: dict) -> dict[str, tuple[dict, dict]]:
    """{name: (ui_workflow, api_prompt)} for every experiment whose nodes the server knows. Combo options that only a
    newer ComfyUI lists (``workflow_families.NEWER_OPTIONS``: CLIPLoader type ``krea2``, 0.33+) are added to the
    server's node definitions first, so the pinned host writes the Krea 2 workflows as a newer one does. A workflow
    with an instance of one of the pack's blueprints carries its definition (as the frontend saves it); its API
    twin has the blueprint's inner nodes, as the frontend queues it (``workflow_blueprint.expand``)."""
    object_info = with_newer_options(object_info)
    blueprints = {subgraph_of(bp)["id"]: bp for bp in build_blueprints(object_info).values()}
    info = {**object_info, **{i: node_def(bp, object_info) for i, bp in blueprints.items()}}
    out = {}
    for exp in EXPERIMENTS:
        graph = exp.build()
        complete_inputs(graph, info, MODELS)
        ui, prompt = to_ui(graph, info, node_properties), to_api(graph, info)
        used = sorted({n.type for n in graph.real_nodes()} & set(blueprints))
        if used:
            ui["definitions"] = {"subgraphs": [subgraph_of(blueprints[i]) for i in used]}
            prompt = expand(prompt, blueprints, object_info)
        out[exp.name] = (ui, prompt)
    return out


def build_blueprints(object_info: dict) -> dict[str, dict]:
    """{file name: blueprint JSON} for every subgraph blueprint of the pack (``workflow_blueprint.py``)."""
    out = {}
    for make in BLUEPRINTS:
        bp = make()
        out[f"{bp.name}.json"] = to_blueprint(bp, object_info, node_properties)
    return out


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


@contextmanager
def comfy_server(url: str | None):
    """The URL of a running ComfyUI with the pack: ``url``, or a temporary one from the test harness."""
    if url:
        yield url.rstrip("/")
        return
    from ..host.comfy_server import ComfyServer  # the test harness's real server (pack linked into a temp base dir)

    with tempfile.TemporaryDirectory(prefix="ddistill_wf_") as base:
        with ComfyServer(Path(base), with_fixture_pack=False) as server:
            yield server.url


def http(url: str, payload: dict | None = None):
    req = urllib.request.Request(
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def render_demos(url: str, built: dict, timeout: float = 600) -> dict:
    """Run the demo twins (bundled digit models, CPU) and return {name: {method: (PIL images, diversity)}}."""
    from io import BytesIO

    from PIL import Image

    renders = {}
    for exp in EXPERIMENTS:
        if exp.files:
            continue
        prompt = built[exp.name][1]
        http(url + "/free", {"free_memory": True})  # a fresh cache: every node runs and reports its numbers
        pid = http(url + "/prompt", {"prompt": prompt})["prompt_id"]
        deadline = time.time() + timeout
        while (entry := http(f"{url}/history/{pid}").get(pid)) is None or entry["status"].get("completed") is None:
            if time.time() > deadline:
                raise TimeoutError(f"{exp.name} did not finish in {timeout} s")
            time.sleep(0.3)
        if entry["status"]["status_str"] != "success":
            raise RuntimeError(f"{exp.name} failed: {entry['status']['messages'][-1]}")
        methods = {}
        for nid, out in entry["outputs"].items():
            method = prompt[nid]["_meta"]["title"].replace("method: ", "")
            if prompt[nid]["class_type"] == "SaveImage":
                images = [
                    Image.open(BytesIO(http(f"{url}/view?" + urllib.parse.urlencode(im)))).convert("RGB")
                    for im in out["images"]
                ]
                methods.setdefault(method, [None, None])[0] = images
            elif out.get(METER_UI_KEY):
                methods.setdefault(method, [None, None])[1] = out[METER_UI_KEY][0]["a"]["mean"]
        renders[exp.name] = methods
    return renders


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running ComfyUI server with the pack (default: start a temporary one)")
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    ap.add_argument("--readme", action="store_true", help="print the README table and exit")
    ap.add_argument("--no-thumbnails", action="store_true", help="do not (re)draw the thumbnail cards")
    args = ap.parse_args()
    if args.readme:
        from .workflow_catalog import readme_table

        print(readme_table())
        return 0
    with comfy_server(args.url) as url:
        info = http(url + "/object_info")
        built = build_all(info)
        (WORKFLOWS / "api").mkdir(parents=True, exist_ok=True)
        SUBGRAPHS.mkdir(exist_ok=True)
        files = [(SUBGRAPHS / name, dumps(bp)) for name, bp in build_blueprints(info).items()]
        for name, (ui, api) in built.items():
            files += [(WORKFLOWS / f"{name}.json", dumps(ui)), (WORKFLOWS / "api" / f"{name}.json", dumps(api))]
        stale = []
        for path, text in files:
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(PACK_ROOT)))
            else:
                path.write_text(text, encoding="utf-8")
        if not args.check and not args.no_thumbnails:
            from .workflow_thumbnails import draw_all

            draw_all(WORKFLOWS, render_demos(url, built))
    if stale:
        print("out of date (run `python scripts/build_workflows.py`):\n  " + "\n  ".join(stale))
        return 1
    print(
        f"{'checked' if args.check else 'wrote'} {len(built)} workflows (+ API twins) in {WORKFLOWS} and "
        f"{len(files) - 2 * len(built)} subgraph blueprint(s) in {SUBGRAPHS}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
