"""The pack's subgraph blueprints (``subgraphs/<name>.json``): a graph of the pack's nodes packed as one node that the
frontend lists in its node library ("Subgraph Blueprints") and search. ComfyUI serves every custom node pack's
``subgraphs/*.json`` at ``/global_subgraphs`` (0.3.75 and 0.33.0).

A blueprint file is a canvas workflow (schema 0.4) whose only node is an instance of the subgraph defined in
``definitions.subgraphs``. Inside the definition, links from the subgraph's inputs start at node -10 and links to
its outputs end at node -20. An input linked to a widget of an inner node is shown as that widget on the
blueprint's node (a "promoted" widget): the artist sets it there, and the frontend writes its value into the inner
node when it queues the graph. ``extra.BlueprintDescription`` is the node library's description,
``extra.BlueprintSearchAliases`` the words search finds it by, and ``category`` files it under
"Subgraph Blueprints/<category>" (the last two read by frontends 1.49 and later).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ddistill import protocol

from .workflow_graph import Graph, Out, complete_inputs, input_list, to_ui

INPUT_NODE, OUTPUT_NODE = -10, -20  # litegraph's ids of a subgraph's input and output nodes
# Inner node ids: unique across a workflow and its subgraphs, as frontends 1.49+ want them (they renumber clashes),
# so ids that the pack's workflows (and most graphs) do not use.
INNER_FIRST_ID = 901
CATEGORY = "Diversity Distillation"


@dataclass(frozen=True)
class Blueprint:
    name: str  # the file name and the node's name in the library
    graph: Graph  # inner nodes; an input fed by the blueprint's input i holds ``Out(INPUT_NODE, i)``
    inputs: tuple  # ((name, type, label), ...) in the order the node shows them
    outputs: tuple  # ((name, Out), ...): each output's type is its inner node's
    description: str
    aliases: tuple


def _uid(*parts) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "ddistill-blueprint/" + "/".join(map(str, parts))))


def blueprint_id(name: str) -> str:
    """The subgraph id of blueprint ``name``: the node type of its instances in a workflow."""
    return _uid(name)


def to_blueprint(bp: Blueprint, info: dict, node_properties) -> dict:
    """The blueprint file's JSON, in the format of the frontend's own "Publish subgraph"."""
    complete_inputs(bp.graph, info)
    outside = {Out(INPUT_NODE, i): kind for i, (_name, kind, _label) in enumerate(bp.inputs)}
    inner = to_ui(bp.graph, info, node_properties, outside)
    links = [
        {"id": i, "origin_id": o, "origin_slot": os_, "target_id": t, "target_slot": ts, "type": ty}
        for i, o, os_, t, ts, ty in inner["links"]
    ]
    by_id = {n["id"]: n for n in inner["nodes"]}
    sub_inputs, outer_inputs = [], []
    for slot, (name, kind, label) in enumerate(bp.inputs):
        ids = [link["id"] for link in links if (link["origin_id"], link["origin_slot"]) == (INPUT_NODE, slot)]
        if not ids:
            raise ValueError(f"{bp.name}: input {name!r} feeds no inner node")
        promoted = any(
            "widget" in sock for node in by_id.values() for sock in node["inputs"] if sock.get("link") in ids
        )
        sub_inputs.append(
            {
                "id": _uid(bp.name, "in", name),
                "name": name,
                "type": kind,
                "linkIds": ids,
                "label": label or name,
                "pos": [0, 20 * slot],
            }
        )
        outer = {"label": label or name, "name": name, "type": kind, "link": None}
        if promoted:
            outer["widget"] = {"name": name}
        outer_inputs.append(outer)
    sub_outputs, outer_outputs = [], []
    for slot, (name, src) in enumerate(bp.outputs):
        kind = by_id[src.node]["outputs"][src.slot]["type"]
        link_id = len(links) + 1
        links.append(
            {
                "id": link_id,
                "origin_id": src.node,
                "origin_slot": src.slot,
                "target_id": OUTPUT_NODE,
                "target_slot": slot,
                "type": kind,
            }
        )
        by_id[src.node]["outputs"][src.slot]["links"].append(link_id)
        sub_outputs.append(
            {"id": _uid(bp.name, "out", name), "name": name, "type": kind, "linkIds": [link_id], "pos": [0, 0]}
        )
        outer_outputs.append({"name": name, "type": kind, "links": []})
    left = min(n["pos"][0] for n in inner["nodes"])
    right = max(n["pos"][0] + n["size"][0] for n in inner["nodes"])
    definition = {
        "id": blueprint_id(bp.name),
        "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": inner["last_node_id"], "lastLinkId": len(links), "lastRerouteId": 0},
        "revision": 0,
        "config": {},
        "name": bp.name,
        "inputNode": {"id": INPUT_NODE, "bounding": [left - 300, 0, 220, 40 + 20 * len(sub_inputs)]},
        "outputNode": {"id": OUTPUT_NODE, "bounding": [right + 80, 0, 150, 40 + 20 * len(sub_outputs)]},
        "inputs": sub_inputs,
        "outputs": sub_outputs,
        "widgets": [],
        "nodes": inner["nodes"],
        "groups": [],
        "links": links,
        "extra": {},
        "category": CATEGORY,
        "description": bp.description,
    }
    node = {
        "id": 1,
        "type": definition["id"],
        "pos": [0, 0],
        "size": [360, 60 + 24 * len(outer_inputs)],
        "flags": {},
        "order": 0,
        "mode": 0,
        "inputs": outer_inputs,
        "outputs": outer_outputs,
        "title": bp.name,
        "properties": {},
        "widgets_values": [],
    }
    return {
        "revision": 0,
        "last_node_id": 1,
        "last_link_id": 0,
        "nodes": [node],
        "links": [],
        "version": 0.4,
        "definitions": {"subgraphs": [definition]},
        "extra": {"BlueprintDescription": bp.description, "BlueprintSearchAliases": list(bp.aliases)},
    }


def hybrid_sampler() -> Blueprint:
    """ "Diversity Hybrid Sampler": Base First Step Sampler → Distilled Continue Sampler on one pair of
    conditionings. The widgets an artist changes are promoted; the others keep the nodes' defaults inside."""
    inputs = (
        ("base_model", "MODEL", None),
        ("distilled_model", "MODEL", None),
        ("positive", "CONDITIONING", None),
        ("negative", "CONDITIONING", None),
        ("latent_image", "LATENT", None),
        ("seed", "INT", None),
        ("steps", "INT", None),
        ("base_steps", "INT", "handover step (0 = by noise level)"),
        ("base_cfg", "FLOAT", None),
        ("cfg", "FLOAT", None),
        ("scheduler", "COMBO", None),
        ("sampler_name", "COMBO", None),
    )
    x = {name: Out(INPUT_NODE, i) for i, (name, _kind, _label) in enumerate(inputs)}
    g = Graph("Diversity Hybrid Sampler", first_id=INNER_FIRST_ID)
    base = g.add(
        protocol.BASE_FIRST_STEP,
        {k: v for k, v in x.items() if k != "cfg"},  # cfg is the Distilled Continue's
        title="handover",  # the runner's title for the node --sweep varies (runner/CONVENTIONS.md); a seed node too
        pos=(0, 0),
    )
    cont = g.add(
        protocol.DISTILLED_CONTINUE,
        {
            "distilled_model": x["distilled_model"],
            "positive": x["positive"],
            "negative": x["negative"],
            "latent": base[0],
            "cfg": x["cfg"],
        },
        title="Distilled Continue Sampler",
        pos=(420, 0),
    )
    return Blueprint(
        name="Diversity Hybrid Sampler",
        graph=g,
        inputs=inputs,
        outputs=(("LATENT", cont[0]), ("x0_trajectory", cont[1])),
        description=(
            "Diverse images at distilled speed (diversity distillation, Gandikota and Bau): the base model takes "
            "the first step(s) of the distilled model's schedule, where a distilled model loses its variety "
            "between seeds, and the distilled model (DMD2, Turbo, Lightning, LCM, a distillation LoRA) does the "
            "rest. A Base First Step Sampler and a Distilled Continue Sampler in one node."
        ),
        aliases=protocol.HYBRID_BLUEPRINT_ALIASES,
    )


BLUEPRINTS = (hybrid_sampler,)


def subgraph_of(blueprint: dict) -> dict:
    """The subgraph a blueprint file defines."""
    return blueprint["definitions"]["subgraphs"][0]


def _inner(definition: dict, link_id: int) -> tuple[dict, dict]:
    """(inner node, its socket) that link ``link_id`` of ``definition`` ends at."""
    for node in definition["nodes"]:
        for sock in node["inputs"]:
            if sock.get("link") == link_id:
                return node, sock
    raise KeyError(link_id)


def node_def(blueprint: dict, info: dict) -> dict:
    """A node definition (as in ``/object_info``) for an instance of ``blueprint`` in a workflow: its inputs in the
    order of the blueprint's, a promoted widget with the spec of the inner input it feeds (the frontend shows no
    control_after_generate on it), its outputs. It lets the workflow builder lay out and complete such a node."""
    definition = subgraph_of(blueprint)
    required, order = {}, []
    for inp in definition["inputs"]:
        node, sock = _inner(definition, inp["linkIds"][0])
        spec = info[node["type"]]["input"]
        raw = spec.get("required", {}).get(sock["name"]) or spec.get("optional", {}).get(sock["name"])
        if "widget" in sock:
            opts = {k: v for k, v in (raw[1] if len(raw) > 1 else {}).items() if k != "control_after_generate"}
            required[inp["name"]] = [raw[0], opts]
        else:
            required[inp["name"]] = [inp["type"], {}]
        order.append(inp["name"])
    return {
        "input": {"required": required},
        "input_order": {"required": order},
        "output": [o["type"] for o in definition["outputs"]],
        "output_name": [o["name"] for o in definition["outputs"]],
        "name": definition["id"],
        "display_name": definition["name"],
        "python_module": "blueprint",
    }


def expand(prompt: dict, blueprints: dict[str, dict], info: dict) -> dict:
    """An API prompt with each blueprint instance replaced by its inner nodes, as the frontend queues it: inner node
    ``i`` of instance ``n`` becomes ``"n:i"`` with every input of the inner node (its widgets' values; a promoted
    widget's value or an input link from the instance), and links from an instance's output point at the inner
    node behind it. ``blueprints``: {subgraph id: blueprint JSON}."""
    out: dict = {}
    outputs: dict[tuple[str, int], list] = {}  # (instance, output slot) -> [inner id, slot]
    for nid, node in prompt.items():
        bp = blueprints.get(node["class_type"])
        if bp is None:
            out[nid] = node
            continue
        definition = subgraph_of(bp)
        names = [i["name"] for i in definition["inputs"]]
        for link in definition["links"]:
            if link["target_id"] == OUTPUT_NODE:
                outputs[(nid, link["target_slot"])] = [f"{nid}:{link['origin_id']}", link["origin_slot"]]
        for inner in definition["nodes"]:
            widgets = iter(inner["widgets_values"])
            inputs = {}
            for name, kind, opts, widget, _optional in input_list(info, inner["type"]):
                if widget:
                    inputs[name] = next(widgets)
                    if kind == "INT" and opts.get("control_after_generate"):
                        next(widgets)
            for sock in inner["inputs"]:
                link = next((lk for lk in definition["links"] if lk["id"] == sock.get("link")), None)
                if link is None:
                    continue
                if link["origin_id"] == INPUT_NODE:
                    value = node["inputs"].get(names[link["origin_slot"]])
                    if value is None:
                        inputs.pop(sock["name"], None)
                        continue
                    inputs[sock["name"]] = value
                else:
                    inputs[sock["name"]] = [f"{nid}:{link['origin_id']}", link["origin_slot"]]
            out[f"{nid}:{inner['id']}"] = {
                "inputs": inputs,
                "class_type": inner["type"],
                "_meta": {"title": inner.get("title") or info[inner["type"]].get("display_name") or inner["type"]},
            }
    for node in out.values():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and (str(value[0]), value[1]) in outputs:
                node["inputs"][name] = outputs[(str(value[0]), value[1])]
    return out
