"""A small graph description that writes both ComfyUI workflow formats (stdlib only, no ComfyUI import).

``Graph`` holds nodes (class type, literal inputs, links to other nodes' outputs, title, position) once; ``to_api``
writes the API format (what ``/prompt`` takes and "Export (API)" saves) and ``to_ui`` the canvas format (nodes with
positions, sockets, links and ``widgets_values`` in the order the frontend builds widgets), using the node
definitions of a real server's ``/object_info``. Frontend-only notes (``MarkdownNote``) appear only in the UI format.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_TYPE = "MarkdownNote"
SEED_CONTROL = "fixed"  # value of the frontend's hidden "control_after_generate" widget: keep the seed


@dataclass(frozen=True)
class Out:
    """Output ``slot`` of node ``node`` (a link source)."""

    node: int
    slot: int


@dataclass
class Node:
    id: int
    type: str
    inputs: dict
    title: str | None = None
    pos: tuple = (0, 0)
    size: tuple | None = None
    color: str | None = None
    properties: dict = field(default_factory=dict)

    def __getitem__(self, slot: int) -> Out:
        return Out(self.id, slot)


@dataclass
class Group:
    title: str
    bounding: tuple
    color: str


class Graph:
    def __init__(self, name: str, first_id: int = 1):
        self.name = name
        self.first_id = first_id  # node ids count from here (a blueprint's inner nodes: ids no workflow uses)
        self.nodes: list[Node] = []
        self.groups: list[Group] = []

    def add(
        self,
        class_type: str,
        inputs: dict | None = None,
        title: str | None = None,
        pos=(0, 0),
        size=None,
        color=None,
        properties=None,
    ) -> Node:
        node = Node(
            self.first_id + len(self.nodes),
            class_type,
            dict(inputs or {}),
            title,
            tuple(pos),
            size,
            color,
            dict(properties or {}),
        )
        self.nodes.append(node)
        return node

    def note(self, text: str, pos, size=(420, 300)) -> Node:
        return self.add(NOTE_TYPE, {"text": text}, title="Note", pos=pos, size=size, color="#432")

    def group(self, title: str, bounding, color: str = "#3f789e") -> None:
        self.groups.append(Group(title, tuple(bounding), color))

    def real_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.type != NOTE_TYPE]


# --------------------------------------------------------------------------------------------- node definitions
def _spec(info: dict, node_type: str) -> dict:
    if node_type not in info:
        raise KeyError(f"node type {node_type!r} is not in the server's /object_info (is its pack loaded?)")
    return info[node_type]


def input_list(info: dict, node_type: str) -> list[tuple[str, str, dict, bool, bool]]:
    """(name, type, options, is_widget, optional) of each visible input, in the frontend's order."""
    spec = _spec(info, node_type)
    order = spec.get("input_order") or {k: list(v) for k, v in spec["input"].items()}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            raw = spec["input"][section][name]
            kind, opts = raw[0], (raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {})
            if isinstance(kind, list):
                kind = "COMBO"
            widget = kind in WIDGET_TYPES and not opts.get("forceInput")
            out.append((name, kind, opts, widget, section == "optional"))
    return out


def _combo_options(info, node_type, name) -> list:
    raw = _spec(info, node_type)["input"]
    raw = raw.get("required", {}).get(name) or raw.get("optional", {}).get(name)
    if isinstance(raw[0], list):
        return raw[0]
    return (raw[1] if len(raw) > 1 else {}).get("options", [])


def widget_default(info, node_type, name, kind, opts):
    if "default" in opts:
        return opts["default"]
    if kind == "COMBO":
        options = _combo_options(info, node_type, name)
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def complete_inputs(graph: Graph, info: dict, known_files=()) -> None:
    """Fill every widget input the graph leaves unset with its default (as the frontend does); check input names
    and combo values (model file names, listed in ``known_files``, may be absent from the server's lists)."""
    for node in graph.real_nodes():
        known = {}
        for name, kind, opts, widget, optional in input_list(info, node.type):
            known[name] = kind
            if widget and name not in node.inputs:
                node.inputs[name] = widget_default(info, node.type, name, kind, opts)
            value = node.inputs.get(name)
            if kind == "COMBO" and not isinstance(value, Out) and name in node.inputs:
                options = _combo_options(info, node.type, name)
                if options and value not in options and value not in known_files:
                    raise ValueError(
                        f"{graph.name}: node {node.id} ({node.type}) {name}={value!r} is not one of {options[:8]}"
                    )
            elif not widget and not optional and name not in node.inputs:
                raise ValueError(f"{graph.name}: node {node.id} ({node.type}) has no link for its input {name!r}")
        unknown = set(node.inputs) - set(known)
        if unknown:
            raise ValueError(f"{graph.name}: node {node.id} ({node.type}) has no input(s) {sorted(unknown)}")


# ------------------------------------------------------------------------------------------------------ API format
def to_api(graph: Graph, info: dict) -> dict:
    """The API format as the frontend's "Export (API)" writes it (every node's title in ``_meta``)."""
    prompt = {}
    for node in graph.real_nodes():
        inputs = {k: ([str(v.node), v.slot] if isinstance(v, Out) else v) for k, v in node.inputs.items()}
        title = node.title or _spec(info, node.type).get("display_name") or node.type
        prompt[str(node.id)] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": title}}
    return prompt


# ------------------------------------------------------------------------------------------------------- UI format
def _order(graph: Graph) -> dict[int, int]:
    """Topological execution order of the nodes (notes first), as the frontend stores it in ``order``."""
    deps = {n.id: {v.node for v in n.inputs.values() if isinstance(v, Out) and v.node > 0} for n in graph.nodes}
    done, order = set(), {}
    while len(done) < len(deps):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise ValueError(f"{graph.name}: the graph has a cycle")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order


def _size(n_sockets: int, n_widgets: int, multiline: int) -> list:
    return [320, 46 + 22 * n_sockets + 26 * n_widgets + 90 * multiline]


def to_ui(graph: Graph, info: dict, extra_properties=None, outside: dict | None = None) -> dict:
    """The canvas format (schema 0.4). ``extra_properties(node) -> dict`` adds node properties (e.g. models).
    ``outside`` maps link sources outside the graph (``Out`` with a negative node id: a subgraph's inputs,
    ``workflow_blueprint.py``) to their types; with it, every input gets its socket, widgets too, in the order of
    the frontend's slots (a subgraph's links address the slots of its nodes by index)."""
    order = _order(graph)
    links, out_links = [], {}
    ui_nodes = []
    for node in graph.nodes:
        if node.type == NOTE_TYPE:
            ui_nodes.append(
                {
                    "id": node.id,
                    "type": NOTE_TYPE,
                    "pos": list(node.pos),
                    "size": list(node.size),
                    "flags": {},
                    "order": order[node.id],
                    "mode": 0,
                    "inputs": [],
                    "outputs": [],
                    "title": node.title,
                    "properties": {},
                    "widgets_values": [node.inputs["text"]],
                    "color": node.color,
                    "bgcolor": "#653",
                }
            )
            continue
        sockets, widgets_values, multiline = [], [], 0
        inputs = input_list(info, node.type)
        if outside is not None:  # the frontend's slot order: sockets first, then the widgets' sockets
            inputs = sorted(inputs, key=lambda item: item[3])
        for name, kind, opts, widget, optional in inputs:
            value = node.inputs.get(name)
            linked = isinstance(value, Out)
            if not widget or linked or outside is not None:
                sock = {"name": name, "type": kind, "link": None}
                if optional:
                    sock["shape"] = 7
                if widget:
                    sock["widget"] = {"name": name}
                if linked:
                    link_id = len(links) + 1
                    if value.node < 0:
                        out_type = outside[value]
                    else:
                        out_type = _spec(info, graph.nodes[value.node - graph.first_id].type)["output"][value.slot]
                    links.append([link_id, value.node, value.slot, node.id, len(sockets), out_type])
                    out_links.setdefault((value.node, value.slot), []).append(link_id)
                    sock["link"] = link_id
                sockets.append(sock)
            if widget:
                widgets_values.append(widget_default(info, node.type, name, kind, opts) if linked else value)
                multiline += bool(opts.get("multiline"))
                if kind == "INT" and opts.get("control_after_generate"):
                    widgets_values.append(SEED_CONTROL)
        spec = _spec(info, node.type)
        props = {
            "Node name for S&R": node.type,
            **(extra_properties(node) if extra_properties else {}),
            **node.properties,
        }
        entry = {
            "id": node.id,
            "type": node.type,
            "pos": list(node.pos),
            "size": list(node.size or _size(max(len(sockets), len(spec["output"])), len(widgets_values), multiline)),
            "flags": {},
            "order": order[node.id],
            "mode": 0,
            "inputs": sockets,
            "outputs": [],
            "properties": props,
            "widgets_values": widgets_values,
        }
        entry["_outputs"] = [
            (i, t, n) for i, (t, n) in enumerate(zip(spec["output"], spec.get("output_name", spec["output"])))
        ]
        if node.title:
            entry["title"] = node.title
        if node.color:
            entry["color"] = node.color
        ui_nodes.append(entry)
    for entry in ui_nodes:
        for slot, out_type, out_name in entry.pop("_outputs", []):
            ids = out_links.get((entry["id"], slot), [])
            entry["outputs"].append({"name": out_name, "type": out_type, "slot_index": slot, "links": ids})
    groups = [
        {"id": i + 1, "title": g.title, "bounding": list(g.bounding), "color": g.color, "font_size": 24, "flags": {}}
        for i, g in enumerate(graph.groups)
    ]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "ddistill-workflow/" + graph.name)),
        "revision": 0,
        "last_node_id": graph.first_id + len(graph.nodes) - 1,
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": 0.65, "offset": [40, 500]}},
        "version": 0.4,
    }
