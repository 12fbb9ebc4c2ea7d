"""Reads an API-format workflow and applies the runner's title convention (see CONVENTIONS.md): which nodes get
the prompt, the seed and the batch size, and which output nodes make up each method."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ddistill import protocol

METER = protocol.DIVERSITY_METER
X0_PREVIEW = protocol.X0_PREVIEW
IMAGE_OUTPUTS = ("SaveImage", "PreviewImage")
PROMPT_INPUTS = ("text", "text_g", "text_l", "prompt")
SEED_INPUTS = ("seed", "noise_seed")
HANDOVER_TITLE = "handover"  # the hybrid (Base First Step) that --sweep varies (runner/sweep.py); a seed node too
SEED_TITLES = ("seed", HANDOVER_TITLE)
METHOD_NAME = re.compile(r"^[A-Za-z0-9 _.+\-]+$")


class WorkflowError(ValueError):
    """The workflow cannot be run by the runner; the message says what to change."""


@dataclass
class Method:
    name: str
    image_node: str
    meter_node: str | None = None
    meter_seed: int = 0  # the meter's bootstrap_seed: the runner's recomputed intervals use the same
    x0_node: str | None = None
    nodes: set[str] = field(default_factory=set)  # the method's output nodes and everything upstream


@dataclass
class Workflow:
    path: str
    graph: dict
    methods: dict[str, Method]
    prompt_nodes: list[str]
    seed_nodes: list[str]
    batch_nodes: list[str]
    default_batch: int
    meter_backend: str | None
    static_nodes: list[str] = field(default_factory=list)  # see static_nodes()

    def build(self, method: str, prompt: str, seed: int, batch: int, sinks: frozenset = frozenset()) -> dict:
        """The API prompt that makes `batch` samples of `method` for `prompt`, starting at `seed`. Meter / x̂0
        Preview nodes whose class is in `sinks` (not output nodes on the server: ComfyUI would skip them as
        leaves) get a stock PreviewAny after their first output so that they run."""
        m = self.methods[method]
        keep = m.nodes | set(self.static_nodes)
        graph = {nid: copy.deepcopy(node) for nid, node in self.graph.items() if nid in keep}
        for nid in (m.meter_node, m.x0_node):
            if nid and graph[nid]["class_type"] in sinks:
                graph[f"runner_sink_{nid}"] = {
                    "class_type": "PreviewAny",
                    "inputs": {"source": [nid, 0]},
                    "_meta": {"title": f"runner: runs node {nid}"},
                }
        for nid in self.prompt_nodes:
            if nid in graph:
                for name in PROMPT_INPUTS:
                    if isinstance(graph[nid]["inputs"].get(name), str):
                        graph[nid]["inputs"][name] = prompt
        for nid in self.seed_nodes:
            if nid in graph:
                for name in SEED_INPUTS:
                    if _literal_int(graph[nid]["inputs"].get(name)):
                        graph[nid]["inputs"][name] = int(seed)
        for nid in self.batch_nodes:
            if nid in graph:
                graph[nid]["inputs"]["batch_size"] = int(batch)
        return graph

    def collect_extra(self, method: str, outputs: dict, where: str = "") -> dict:
        """What an item records beyond images, meter and x̂0 (a sweep: the handover point the server used)."""
        return {}


def _title(node: dict) -> str:
    meta = node.get("_meta") or {}
    return str(meta.get("title") or "").strip()


def _literal_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and _literal_int(value[1])


def _describe(nid: str, node: dict) -> str:
    title = _title(node)
    return f"node {nid} ({node.get('class_type')}{', titled ' + repr(title) if title else ''})"


def load_workflow(path: str | Path) -> Workflow:
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(
            f"workflow: {path} does not exist; give an API-format workflow file such as workflows/api/<name>.json"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkflowError(f"workflow: {path} is not valid JSON ({e})") from None
    return parse_workflow(data, str(path))


def parse_workflow(data, path: str = "<workflow>") -> Workflow:
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"workflow: {path} is in ComfyUI's UI (canvas) format, but the runner needs the API format. Use the "
            f"API twin in workflows/api/ if the pack ships one, or open the file in ComfyUI and save it with "
            f"Workflow > Export (API)."
        )
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a saved POST /prompt body
    if (
        not isinstance(data, dict)
        or not data
        or not all(
            isinstance(n, dict) and "class_type" in n and isinstance(n.get("inputs"), dict) for n in data.values()
        )
    ):
        raise WorkflowError(
            f"workflow: {path} is not an API-format workflow (a JSON object mapping node ids to "
            f"{{'class_type', 'inputs'}}); export it from ComfyUI with Workflow > Export (API)"
        )
    graph = {str(k): v for k, v in data.items()}
    hint = " (see runner/CONVENTIONS.md)"

    prompt_nodes = [nid for nid, n in graph.items() if _title(n).lower() == "prompt"]
    for nid in prompt_nodes:
        if not any(isinstance(graph[nid]["inputs"].get(k), str) for k in PROMPT_INPUTS):
            raise WorkflowError(
                f"workflow: {_describe(nid, graph[nid])} is titled 'prompt' but has no literal text "
                f"input ({', '.join(PROMPT_INPUTS)}); put the title on the text encoder" + hint
            )
    if not prompt_nodes:
        raise WorkflowError(
            f"workflow: {path} has no node titled 'prompt'; give the positive text encoder(s) "
            f"(e.g. CLIPTextEncode) the title 'prompt' so the runner can set the prompt" + hint
        )

    seed_nodes = [nid for nid, n in graph.items() if _title(n).lower() in SEED_TITLES]
    for nid in seed_nodes:
        if not any(_literal_int(graph[nid]["inputs"].get(k)) for k in SEED_INPUTS):
            raise WorkflowError(
                f"workflow: {_describe(nid, graph[nid])} is titled {_title(graph[nid]).lower()!r} but has no "
                f"literal seed/noise_seed input" + hint
            )
    if not seed_nodes:
        raise WorkflowError(
            f"workflow: {path} has no node titled 'seed'; give every sampler or noise node whose "
            f"seed must change per sample the title 'seed'" + hint
        )

    batch_nodes = [nid for nid, n in graph.items() if _title(n).lower() == "batch"]
    if not batch_nodes:
        batch_nodes = [nid for nid, n in graph.items() if _literal_int(n["inputs"].get("batch_size"))]
    for nid in batch_nodes:
        if not _literal_int(graph[nid]["inputs"].get("batch_size")):
            raise WorkflowError(
                f"workflow: {_describe(nid, graph[nid])} is titled 'batch' but has no literal batch_size input" + hint
            )
    if not batch_nodes:
        raise WorkflowError(
            f"workflow: {path} has no latent node with a batch_size input; the runner needs one "
            f"(e.g. EmptyLatentImage, titled 'batch') to make several seeds per run" + hint
        )
    default_batch = max(int(graph[nid]["inputs"]["batch_size"]) for nid in batch_nodes)

    methods: dict[str, Method] = {}
    backends = set()
    for nid, node in graph.items():
        title = _title(node)
        if not title.lower().startswith("method:"):
            continue
        name = title.split(":", 1)[1].strip()
        if not name or not METHOD_NAME.match(name):
            raise WorkflowError(
                f"workflow: {_describe(nid, node)} has an invalid method name {name!r}; use "
                f"letters, digits, spaces and _ . + -" + hint
            )
        m = methods.setdefault(name, Method(name=name, image_node=""))
        kind = node["class_type"]
        if kind in IMAGE_OUTPUTS:
            if m.image_node:
                raise WorkflowError(
                    f"workflow: method {name!r} has two image outputs (nodes {m.image_node} and "
                    f"{nid}); keep one SaveImage/PreviewImage per method" + hint
                )
            m.image_node = nid
        elif kind == METER:
            m.meter_node = nid
            seed = node["inputs"].get("bootstrap_seed", 0)
            m.meter_seed = seed if _literal_int(seed) else 0
            if isinstance(node["inputs"].get("backend"), str):
                backends.add(node["inputs"]["backend"])
        elif kind == X0_PREVIEW:
            m.x0_node = nid
        else:
            raise WorkflowError(
                f"workflow: {_describe(nid, node)} carries a method title, but only "
                f"{', '.join(IMAGE_OUTPUTS + (METER, X0_PREVIEW))} nodes may" + hint
            )
    if not methods:
        raise WorkflowError(
            f"workflow: {path} has no node titled 'method: NAME'; title each method's SaveImage "
            f"(and its {METER}) e.g. 'method: hybrid'" + hint
        )
    for m in methods.values():
        if not m.image_node:
            raise WorkflowError(
                f"workflow: method {m.name!r} has no SaveImage/PreviewImage titled "
                f"'method: {m.name}'; the runner collects each method's images from one" + hint
            )
        outputs = [m.image_node] + [x for x in (m.meter_node, m.x0_node) if x]
        m.nodes = upstream(graph, outputs)
        if m.meter_node and _source(graph, m.meter_node, "images") != _source(graph, m.image_node, "images"):
            raise WorkflowError(
                f"workflow: method {m.name!r}: the {METER} (node {m.meter_node}) does not measure "
                f"the batch that node {m.image_node} saves; connect both to the same IMAGE" + hint
            )
        if not any(p in m.nodes for p in prompt_nodes):
            raise WorkflowError(f"workflow: method {m.name!r} does not use any node titled 'prompt'" + hint)
        if not any(s in m.nodes for s in seed_nodes):
            raise WorkflowError(
                f"workflow: method {m.name!r} does not use any node titled 'seed', so all its "
                f"chunks would repeat the same samples" + hint
            )
    if len(backends) > 1:
        raise WorkflowError(
            f"workflow: the Diversity Meters use different backends ({', '.join(sorted(backends))});"
            f" use one backend so that methods are comparable"
        )
    return Workflow(
        path,
        graph,
        methods,
        prompt_nodes,
        seed_nodes,
        batch_nodes,
        default_batch,
        backends.pop() if backends else None,
        static_nodes(graph, prompt_nodes + seed_nodes + batch_nodes),
    )


def static_nodes(graph: dict, varying: list[str]) -> list[str]:
    """Nodes that feed another node and that no prompt, seed or batch node reaches: loaders, text encoders of fixed
    text, schedules. Every graph the runner sends carries them, also those another method uses: ComfyUI keeps the
    cached outputs of the nodes of the prompt it runs and drops the others, so a graph of one method would otherwise
    make the next method's graph load its model files again. ComfyUI runs only what the graph's outputs need."""
    consumers: dict[str, set[str]] = {}
    for nid, node in graph.items():
        for value in node["inputs"].values():
            if _is_link(value):
                consumers.setdefault(str(value[0]), set()).add(nid)
    reached, todo = set(), list(varying)
    while todo:
        nid = todo.pop()
        if nid not in reached:
            reached.add(nid)
            todo.extend(consumers.get(nid, ()))
    return [nid for nid in graph if nid in consumers and nid not in reached]


def _source(graph: dict, nid: str, name: str):
    value = graph[nid]["inputs"].get(name)
    return (str(value[0]), value[1]) if _is_link(value) else None


def upstream(graph: dict, outputs: list[str]) -> set[str]:
    """The given nodes and every node they depend on through links."""
    seen: set[str] = set()
    todo = list(outputs)
    while todo:
        nid = todo.pop()
        if nid in seen:
            continue
        if nid not in graph:
            raise WorkflowError(f"workflow: a link points to node {nid}, which is not in the workflow")
        seen.add(nid)
        todo.extend(str(v[0]) for v in graph[nid]["inputs"].values() if _is_link(v))
    return seen


def load_prompts(path: str | Path) -> list[str]:
    """Prompt lines of a text file: one prompt per line, '#' starts a comment line; blank lines inside the list and
    duplicate prompts are errors (they would silently add unconditioned or double-counted samples)."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowError(f"prompts: {path} does not exist; give a text file with one prompt per line")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    prompts, seen, problems = [], {}, []
    for i, raw in enumerate(lines, 1):
        text = raw.strip()
        if text.startswith("#"):
            continue
        if not text:
            problems.append(f"line {i} is blank (remove it, or start it with '#')")
            continue
        if text in seen:
            problems.append(
                f"line {i} repeats line {seen[text]} ({text!r}); each prompt must appear once "
                f"(use --seeds for more samples)"
            )
            continue
        seen[text] = i
        prompts.append(text)
    if problems:
        raise WorkflowError(f"prompts: {path}: " + "; ".join(problems))
    if not prompts:
        raise WorkflowError(f"prompts: {path} holds no prompt; write one prompt per line")
    return prompts
