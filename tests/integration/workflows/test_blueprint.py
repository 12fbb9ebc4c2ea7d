"""The "Diversity Hybrid Sampler" subgraph blueprint (``subgraphs/``, built by
``ddistill_dev/workflows/workflow_blueprint.py``): the server lists and serves it, the frontend shows it in its node
search and drops it into a graph, and the graph
the frontend queues from it gives the same latents as the two-node hybrid. Search aliases of the pack's nodes reach
the frontend where the host declares them (ComfyUI 0.33; 0.3.75's schema has none).

The blueprint itself is found by the words of its name ("hybrid", "diversity"). Its ``BlueprintSearchAliases``
stay in the file, but frontends 1.49 and 1.58 take a served (custom node) blueprint's aliases from the server's
``/global_subgraphs`` entry, where ComfyUI 0.33 writes none, so they do not reach the search there.

Runs on each host's bundled frontend (1.32.9 on 0.3.75, 1.49.6 on 0.33.0); ``DDISTILL_FRONTEND_ROOT=<unzipped
comfyui_frontend_package>/static`` runs it on another (1.58.1 was checked so)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from browser import open_frontend

from ddistill import protocol
from ddistill_dev.gpu import runner_graphs as rg
from ddistill_dev.host.comfy_server import ComfyServer
from ddistill_dev.workflows.workflow_build import SUBGRAPHS, build_blueprints, dumps

NAME = "Diversity Hybrid Sampler"
FRONTEND_ROOT = os.environ.get("DDISTILL_FRONTEND_ROOT")
PROMOTED = ["seed", "steps", "base_steps", "base_cfg", "cfg", "scheduler", "sampler_name"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    extra = ("--front-end-root", FRONTEND_ROOT) if FRONTEND_ROOT else ()
    with ComfyServer(tmp_path_factory.mktemp("comfy_blueprint"), extra_args=extra) as s:
        yield s


def _listed(server) -> tuple[str, dict]:
    entries = server.get("/global_subgraphs")
    ours = [(k, e) for k, e in entries.items() if e["name"] == NAME]
    assert len(ours) == 1, f"/global_subgraphs lists {[e['name'] for e in entries.values()]}"
    return ours[0]


def test_blueprint_file_is_the_builder_output(server):
    built = build_blueprints(server.object_info())
    assert sorted(built) == sorted(p.name for p in SUBGRAPHS.glob("*.json"))
    for name, blueprint in built.items():
        assert (SUBGRAPHS / name).read_text(encoding="utf-8") == dumps(blueprint), (
            f"subgraphs/{name} is stale: run python scripts/build_workflows.py"
        )


def test_server_lists_and_serves_the_blueprint(server):
    entry_id, entry = _listed(server)
    assert entry["source"] == "custom_node" and entry["info"]["node_pack"].startswith("custom_nodes.")
    served = json.loads(server.get(f"/global_subgraphs/{entry_id}")["data"])
    assert served == json.loads((SUBGRAPHS / f"{NAME}.json").read_text(encoding="utf-8"))
    definition = served["definitions"]["subgraphs"][0]
    assert served["nodes"][0]["type"] == definition["id"] and definition["name"] == NAME
    assert [n["type"] for n in definition["nodes"]] == [protocol.BASE_FIRST_STEP, protocol.DISTILLED_CONTINUE]
    assert [i["name"] for i in definition["inputs"]] == [
        "base_model",
        "distilled_model",
        "positive",
        "negative",
        "latent_image",
        *PROMOTED,
    ]
    assert [o["type"] for o in definition["outputs"]] == ["LATENT", "DDISTILL_X0_TRAJECTORY"]
    assert set(served["extra"]["BlueprintSearchAliases"]) >= {"diversity", "DMD2", "turbo", "lightning", "hybrid"}


def test_search_aliases_reach_the_node_definitions(server):
    info = server.object_info()
    declared = "search_aliases" in info["KSampler"]  # 0.33 lists every node's (empty for most), 0.3.75 none
    for node_id, words in protocol.SEARCH_ALIASES.items():
        if declared:
            assert info[node_id]["search_aliases"] == list(words)
        else:
            assert "search_aliases" not in info[node_id]
    covered = {w.lower() for words in protocol.SEARCH_ALIASES.values() for w in words}
    wanted = {"diversity", "seed variety", "hybrid", "dmd2", "turbo", "lightning", "lcm", "distilled", "x0"}
    assert wanted | {"preview", "dreamsim"} <= covered


LISTS_JS = """() => [...document.querySelectorAll('[role=listbox], .p-autocomplete-list')]
  .map((e) => e.innerText).join('\\n').replace(/[ \\t]*\\n[ \\t]*/g, '\\n')"""
WAIT_JS = "([js, want]) => (new Function('return ' + js)())().includes(want)"


def _open_search(fe, text: str, want: str) -> str:
    """The node search as an artist opens it (a double click on empty canvas, then typing); what it lists once
    ``want`` is among the results (or after 10 s: the search filters as the typing arrives)."""
    closed = "() => !document.querySelector('[role=listbox], .p-autocomplete-list, .p-dialog-mask')"
    for _ in range(5):  # right after loading, or while the last search closes, the canvas may not take the click
        try:
            fe.wait_for(closed, timeout_s=5)
        except Exception:  # still open: close it
            fe.page.keyboard.press("Escape")
        fe.page.mouse.dblclick(700, 450)
        try:
            fe.wait_for("() => document.activeElement?.tagName === 'INPUT'", timeout_s=3)
            break
        except Exception:  # not open yet: close whatever opened and click again
            fe.page.keyboard.press("Escape")
    fe.page.keyboard.press("Control+A")  # newer frontends keep the last search's text
    fe.page.keyboard.press("Backspace")
    fe.page.keyboard.type(text, delay=20)
    try:
        fe.wait_for(WAIT_JS, [LISTS_JS, want], timeout_s=10)
    except Exception:  # the assertion below shows what the search listed instead
        pass
    return fe.eval(LISTS_JS)


def _search(fe, text: str, want: str) -> str:
    fe.eval("() => window.app.graph.clear()")
    found = _open_search(fe, text, want)
    fe.page.keyboard.press("Escape")
    return found


HAS_NODE_JS = "(name) => window.app.graph.nodes.some((n) => n.title === name)"


def _add_from_search(fe) -> None:
    """The blueprint dropped into the graph from the node search, as an artist does: its whole name typed (on 0.33
    "hybrid" also finds the samplers by their aliases), its result clicked."""
    for _ in range(3):
        _open_search(fe, NAME, NAME)
        fe.page.locator("[role=option]", has_text=NAME).first.click(timeout=10000)
        try:
            fe.wait_for(HAS_NODE_JS, NAME, timeout_s=10)
            return
        except Exception:  # the click landed while the list was still changing: search again
            fe.page.keyboard.press("Escape")
    fe.wait_for(HAS_NODE_JS, NAME, timeout_s=10)


def _hybrid_prompt(seed: int, base_steps: int) -> dict:
    """The two-node hybrid on the demo digit models, its latent saved."""
    g = {
        "2": rg.demo_loader(),
        "3": rg.demo_prompt(),
        "4": rg.demo_prompt(""),
        "5": rg.empty_latent(32, 4, "EmptyChromaRadianceLatentImage"),
    }
    g.update(rg.hybrid(("6", "7"), ["2", 0], ["2", 1], ["3", 0], ["4", 0], ["5", 0], seed, base_steps, True))
    g["8"] = rg.save_latent(["7", 0], "ddistill/two_nodes")
    return g


# Replace the two samplers of the loaded graph by the blueprint, as an artist would: the blueprint from the node
# search (Enter takes the first result), its inputs wired from the loaders, its promoted widgets set.
WIRE_JS = """async ([seed, baseSteps]) => {
  const g = window.app.graph;
  const bp = g.nodes.find((n) => n.title === %s);
  const of = (type) => g.nodes.filter((n) => n.type === type);
  const prompt = (text) => of(%s).find((n) => n.widgets[0].value === text);
  const slot = (name) => bp.inputs.findIndex((i) => i.name === name);
  const [models] = of(%s);
  models.connect(0, bp, slot('base_model'));
  models.connect(1, bp, slot('distilled_model'));
  prompt('a handwritten digit').connect(0, bp, slot('positive'));
  prompt('').connect(0, bp, slot('negative'));
  of('EmptyChromaRadianceLatentImage')[0].connect(0, bp, slot('latent_image'));
  bp.connect(0, of('SaveLatent')[0], 0);
  for (const w of bp.widgets) {
    if (w.name === 'seed') w.value = seed;
    if (w.name === 'base_steps') w.value = baseSteps;
  }
  const p = await window.app.graphToPrompt();
  return {output: p.output, widgets: bp.widgets.map((w) => w.name)};
}""" % (json.dumps(NAME), json.dumps(protocol.DEMO_PROMPT), json.dumps(protocol.DEMO_MODEL_LOADER))


def test_blueprint_from_search_runs_as_the_two_node_hybrid(server, chromium):
    seed, base_steps = 123, 2
    with open_frontend(chromium, server) as fe:
        found = _search(fe, "hybrid", NAME)
        assert NAME in found, f"node search for 'hybrid' lists:\n{found}\n{fe.log()[-1500:]}"
        if "search_aliases" in server.object_info()["KSampler"]:  # frontends 1.49+ read aliases; 0.33 sends them
            assert "Base First Step Sampler" in _search(fe, "DMD2", "Base First Step Sampler")
            assert "Base First Step Sampler" in _search(fe, "seed variety", "Base First Step Sampler")
        two_nodes = _hybrid_prompt(seed, base_steps)
        fe.eval("() => window.app.graph.clear()")
        _add_from_search(fe)
        for i, nid in enumerate(("2", "3", "4", "5")):
            node = fe.add_node(two_nodes[nid]["class_type"], pos=(50, 60 + 160 * i))
            for name, value in two_nodes[nid]["inputs"].items():
                fe.eval(
                    "([id, name, value]) => { window.app.graph.getNodeById(id).widgets"
                    ".find((w) => w.name === name).value = value; }",
                    [node, name, value],
                )
        fe.add_node("SaveLatent", pos=(900, 60))
        queued = fe.eval(WIRE_JS, [seed, base_steps])
    assert queued["widgets"][: len(PROMOTED)] == PROMOTED
    inner = {k: v for k, v in queued["output"].items() if ":" in k}  # the frontend names inner nodes "<node>:<id>"
    assert sorted(v["class_type"] for v in inner.values()) == sorted(
        [protocol.BASE_FIRST_STEP, protocol.DISTILLED_CONTINUE]
    )
    base = next(v for v in inner.values() if v["class_type"] == protocol.BASE_FIRST_STEP)
    assert (base["inputs"]["seed"], base["inputs"]["base_steps"]) == (seed, base_steps)
    from_blueprint = server.run(queued["output"])
    reference = server.run(two_nodes)
    for entry in (from_blueprint, reference):
        assert entry["status"]["status_str"] == "success", server.log_text()[-3000:]
    save = next(k for k, v in queued["output"].items() if v["class_type"] == "SaveLatent")
    a, b = server.saved_latent(from_blueprint, save), server.saved_latent(reference, "8")
    assert a.shape == (4, 3, 32, 32)
    assert torch.equal(a, b)
