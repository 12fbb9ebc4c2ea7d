"""Every UI workflow in the real frontend (headless Chromium, ComfyUI's bundled frontend, real server): fetched
through the template browser's URL, loaded with no missing node and no warning, each widget value where the
workflow put it, and the prompt the frontend builds equals the API twin and passes the server's validation.
Runs with the frontend each tested host bundles: 1.32.9 on ComfyUI 0.3.75, 1.49.6 on 0.33.0."""

import copy
import json
import re

import pytest
from browser import open_frontend, template_dialog_text

from ddistill_dev.host.comfy_host import PACK_ROOT, PINNED_COMFYUI
from ddistill_dev.host.comfy_server import ComfyServer
from ddistill_dev.workflows.workflow_catalog import EXPERIMENTS, MODELS, PACK_ID
from ddistill_dev.workflows.workflow_families import unlisted_newer_options

WORKFLOWS = PACK_ROOT / "workflows"
FIXTURE_WORKFLOWS = (
    PACK_ROOT / "tests" / "integration" / "fixture_workflows"
)  # files as an earlier release shipped them
PACK_FOLDER = "ComfyUI-DiversityDistillation"
NAMES = [e.name for e in EXPERIMENTS]
# Chromium here has no internet: the frontend's calls to outside hosts fail by name. Anything else logged is ours.
OFFLINE = "Failed to load resource: net::ERR_NAME_NOT_RESOLVED"

LOAD_JS = """async ([name, url, data]) => {
  const app = window.app;
  const workflow = data || await (await fetch(url)).json();
  await app.loadGraphData(workflow, true, true, name);
  const nodes = app.graph.nodes;
  const missing = nodes.filter(n => !window.LiteGraph.registered_node_types[n.type]).map(n => n.type);
  const serialized = app.graph.serialize();
  const prompt = await app.graphToPrompt();
  return {missing, widgets: Object.fromEntries(serialized.nodes.map(n => [n.id, n.widgets_values || []])),
          output: prompt.output};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_wf_browser")
    for name, model in MODELS.items():  # placeholders: validation checks names in the folder lists only
        path = base / "models" / model.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    with ComfyServer(base, with_fixture_pack=False) as s:
        yield s


@pytest.fixture(scope="module")
def frontend(server, chromium):
    with open_frontend(chromium, server) as fe:
        yield fe


def load(fe, name: str, data: dict | None = None) -> dict:
    start = len(fe.console)
    url = fe.eval("(p) => window.comfyAPI.api.api.apiURL(p)", f"/workflow_templates/{PACK_FOLDER}/{name}.json")
    result = fe.eval(LOAD_JS, [name, url, data])
    result["log"] = [m for m in fe.console[start:] if not m.startswith("log:") and OFFLINE not in m] + fe.errors
    return result


def ui_file(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def twin_file(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))


def own_titles(ui: dict) -> set[str]:
    """Ids of the workflow's nodes that have their own title (``seed``, ``method: hybrid``, ...), with the inner
    nodes of a blueprint instance as the frontend names them in a prompt (``"<instance>:<inner id>"``)."""
    definitions = {d["id"]: d for d in ui.get("definitions", {}).get("subgraphs", [])}
    inner = {
        f"{n['id']}:{m['id']}"
        for n in ui["nodes"]
        if n["type"] in definitions
        for m in definitions[n["type"]]["nodes"]
        if "title" in m
    }
    return {str(n["id"]) for n in ui["nodes"] if "title" in n} | inner


def comparable(prompt: dict, own: set[str]) -> dict:
    """Class, inputs and title of each node of an API prompt, the title only for the nodes in ``own``. A node
    without its own title in the workflow is named by the frontend after this host's display name, which ComfyUI
    versions change for stock nodes (LoraLoaderModelOnly is "LoraLoaderModelOnly" in 0.3.75, "Load LoRA" in 0.33;
    the twins carry the pinned host's): ``default_titles`` checks those against the server. Inputs compare with
    Python's ``==``, so a number the frontend writes as ``1`` equals the twin's ``1.0`` (JavaScript has one number
    type)."""
    return {
        k: {
            "class_type": v["class_type"],
            "inputs": v["inputs"],
            "title": v.get("_meta", {}).get("title") if k in own else None,
        }
        for k, v in prompt.items()
    }


def default_titles(server, prompt: dict, ui: dict) -> dict:
    """{node id: (title the frontend wrote, this server's display name)} for the nodes without an own title."""
    info, own = server.object_info(), own_titles(ui)
    return {
        k: (v.get("_meta", {}).get("title"), info[v["class_type"]].get("display_name") or v["class_type"])
        for k, v in prompt.items()
        if k not in own
    }


def assert_builds_twin(server, output: dict, name: str) -> None:
    ui, twin = ui_file(name), twin_file(name)
    assert comparable(output, own_titles(ui)) == comparable(twin, own_titles(ui))
    titles = default_titles(server, output, ui)
    assert all(written == shown for written, shown in titles.values()), f"{name}: {titles}"
    if server.comfyui_version() == PINNED_COMFYUI:  # the host the twins are built against names nodes as they do
        assert {k: v["_meta"]["title"] for k, v in output.items()} == {k: v["_meta"]["title"] for k, v in twin.items()}


def test_frontend_lists_the_templates_and_their_thumbnails(frontend):
    listed = frontend.eval("async () => await window.comfyAPI.api.api.getWorkflowTemplates()")
    assert sorted(listed[PACK_FOLDER]) == sorted(NAMES)
    for name in NAMES:
        url = frontend.eval("(p) => window.comfyAPI.api.api.apiURL(p)", f"/workflow_templates/{PACK_FOLDER}/{name}.jpg")
        status = frontend.eval(
            "async (u) => { const r = await fetch(u); return [r.status, r.headers.get('content-type')]; }", url
        )
        assert status == [200, "image/jpeg"], name


@pytest.mark.parametrize("name", NAMES)
def test_workflow_loads_cleanly_and_builds_its_api_twin(frontend, server, name):
    ui = ui_file(name)
    result = load(frontend, name)
    assert result["missing"] == [], f"{name}: missing node types {result['missing']}"
    assert result["log"] == [], f"{name}: the frontend warned:\n" + "\n".join(result["log"])
    for node in ui["nodes"]:
        assert result["widgets"][str(node["id"])] == node["widgets_values"], f"{name}: widgets of node {node['id']}"
    assert_builds_twin(server, result["output"], name)
    status, body = server.queue(result["output"])
    newer = unlisted_newer_options(server.object_info(), result["output"])  # Krea 2 (10f, 10g) on 0.3.75
    if newer:  # refused with ComfyUI's own message, for that option only (README: "Settings per family")
        assert set(body["node_errors"]) == set(newer), f"{name}: {json.dumps(body)[:1500]}"
    else:
        assert status == 200 and body["node_errors"] == {}, f"{name}: {json.dumps(body)[:1500]}"
    server.post("/queue", {"clear": True})
    server.post("/interrupt")


def test_checks_catch_a_missing_node_and_a_misplaced_widget(frontend):
    """The two checks above can fail: an unknown node type is reported, swapped widget values change the prompt."""
    name = "01_mode_collapse_sdxl_dmd2"
    ui, twin = ui_file(name), twin_file(name)
    broken = copy.deepcopy(ui)
    node = next(n for n in broken["nodes"] if n["type"] == "DDistill_DistilledContinueSampler")
    node["type"] = "DDistill_NoSuchNode"
    assert load(frontend, name, broken)["missing"] == ["DDistill_NoSuchNode"]
    swapped = copy.deepcopy(ui)
    ks = next(n for n in swapped["nodes"] if n["type"] == "KSampler")
    ks["widgets_values"][2], ks["widgets_values"][3] = ks["widgets_values"][3], ks["widgets_values"][2]  # steps, cfg
    assert comparable(load(frontend, name, swapped)["output"], own_titles(ui)) != comparable(twin, own_titles(ui))


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """A ComfyUI that does not load the pack (as one older than the pack's floor) and has no model files."""
    with ComfyServer(
        tmp_path_factory.mktemp("comfy_bare"), with_fixture_pack=False, extra_args=("--disable-all-custom-nodes",)
    ) as s:
        yield s


def test_without_the_pack_or_the_models_comfyui_says_what_is_missing(bare_server, chromium):
    name = "01_mode_collapse_sdxl_dmd2"
    ui, twin = ui_file(name), twin_file(name)
    status, body = bare_server.queue(twin)  # API mode: the server's own message naming a pack node
    # One refusal in each version's words (execution.py, validate_prompt): 0.3.75 answers type "invalid_prompt",
    # "Cannot execute because node <class> does not exist."; 0.33 a dedicated type "missing_node_type", "Node
    # '<title>' not found. The custom node may not be installed.", with the class in extra_info. What matters on
    # both: the prompt is refused (400) and the error names a pack node of the workflow as unknown.
    error = body["error"]
    assert status == 400, body
    if bare_server.comfyui_version() == PINNED_COMFYUI:
        assert error["type"] == "invalid_prompt", error
        match = re.fullmatch(r"Cannot execute because node (\S+) does not exist\.", error["message"])
        unknown = match and match.group(1)
    else:
        assert error["type"] == "missing_node_type", error
        assert error["message"].endswith("not found. The custom node may not be installed."), error
        unknown = error["extra_info"]["class_type"]
    assert unknown and unknown.startswith("DDistill_") and unknown in {n["class_type"] for n in twin.values()}, error
    warn = {"Comfy.Workflow.ShowMissingNodesWarning": True, "Comfy.Workflow.ShowMissingModelsWarning": True}
    pack_types = {n["type"] for n in ui["nodes"] if n["type"].startswith("DDistill_")}
    with open_frontend(chromium, bare_server, settings=warn) as fe:
        fe.eval("async (g) => { await window.app.loadGraphData(g, true, true, 'x'); }", ui)
        version = fe.eval("() => window.__COMFYUI_FRONTEND_VERSION__")
        # The same report in each frontend's UI. 1.32 (ComfyUI 0.3.75) opens two dialogs: "missing nodes" with
        # their types, and the missing models as "folder / file" with download links. 1.49 (ComfyUI 0.33) opens
        # none: a toast leads to an errors panel that lists the missing pack by its registry id (the nodes'
        # cnr_id), its node types once the pack's entry is opened, and each model file above its folder with a
        # Download button. Checked on both: the pack, each of its node types, each model file in its folder.
        if tuple(int(x) for x in version.split(".")[:2]) < (1, 49):
            fe.wait_for("() => document.querySelectorAll('.p-dialog').length >= 2")
            text = "\n".join(fe.eval("() => [...document.querySelectorAll('.p-dialog')].map(d => d.innerText)"))
            assert "missing nodes" in text and all(t in text for t in pack_types), text
            assert "checkpoints / sd_xl_base_1.0.safetensors" in text, text  # the models dialog, with download links
            assert "loras / dmd2_sdxl_4step_lora_fp16.safetensors" in text, text
        else:
            fe.page.get_by_text("View details").first.click(timeout=60000)
            fe.page.get_by_text("Missing Node Packs").first.wait_for(timeout=30000)
            fe.page.get_by_text(PACK_ID, exact=True).first.click(timeout=30000)
            fe.wait_for("(t) => document.body.innerText.includes(t)", sorted(pack_types)[0], timeout_s=30)
            text = fe.page.inner_text("body")  # the canvas draws nodes: their types are not page text
            assert "Missing Node Packs" in text and PACK_ID in text and all(t in text for t in pack_types), text
            assert "Missing Models" in text, text
            assert "sd_xl_base_1.0.safetensors\ncheckpoints\nDownload" in text, text
            assert "dmd2_sdxl_4step_lora_fp16.safetensors\nloras\nDownload" in text, text


@pytest.mark.parametrize("name", ["01_mode_collapse_sdxl_dmd2", "06_x0_visualization", "09d_demo_x0_visualization"])
def test_api_twin_opens_in_the_frontend_and_round_trips(frontend, name):
    """API mode files open in the canvas too (as dropping an exported API file does) and give back the same prompt
    (titles included: the API file carries every title, the frontend keeps them)."""
    twin = twin_file(name)
    start = len(frontend.console)
    frontend.load_api_prompt(twin)
    output = frontend.eval("async () => (await window.app.graphToPrompt()).output")
    log = [m for m in frontend.console[start:] if not m.startswith("log:") and OFFLINE not in m]
    assert log == [], log
    assert comparable(output, set(twin)) == comparable(twin, set(twin))


def test_template_browser_dialog_shows_the_packs_workflows_with_thumbnails(server, chromium):
    with open_frontend(chromium, server) as fe:
        seen = []
        fe.page.on(
            "response",
            lambda r: (
                seen.append((r.url, r.status, r.headers.get("content-type")))
                if "/workflow_templates/" in r.url
                else None
            ),
        )
        fe.eval("async () => { await window.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
        fe.page.get_by_text(PACK_FOLDER).first.click(timeout=30000)  # the pack's category under Extensions
        fe.wait_for("() => document.body.innerText.includes('01_mode_collapse_sdxl_dmd2')")
        fe.page.wait_for_timeout(1500)  # the visible cards' thumbnails load lazily
        text = fe.page.inner_text("body") + template_dialog_text(fe.page, NAMES)  # more cards as it scrolls
        fe.eval("() => document.querySelectorAll('.p-dialog *, [role=dialog] *').forEach((el) => (el.scrollTop = 0))")
        pick = "09a_demo_mode_collapse"  # open one as a user does: click its card
        n_nodes = len(json.loads((WORKFLOWS / f"{pick}.json").read_text(encoding="utf-8"))["nodes"])
        fe.page.get_by_text(pick, exact=True).first.click()
        fe.wait_for("(n) => window.app.graph.nodes.length === n", n_nodes)
        output = fe.eval("async () => (await window.app.graphToPrompt()).output")
    assert_builds_twin(server, output, pick)
    shown = [name for name in NAMES if name in text]
    assert len(shown) == len(NAMES), f"the dialog lists {shown}"
    thumbs = [s for s in seen if s[0].endswith(".jpg")]
    assert len(thumbs) >= 4, seen
    assert all(status == 200 and ctype == "image/jpeg" for _, status, ctype in thumbs), thumbs
    assert {url.rsplit("/", 1)[1][:-4] for url, _, _ in thumbs} <= set(NAMES)


def test_a_workflow_saved_before_the_handover_inputs_keeps_its_settings(frontend, server):
    """09a as the pack shipped it on 2026-12-02, before Base First Step had handover_amplification / handover_sigma
    (and Demo Digit Models its pair): the frontend keeps every saved widget value (base_steps 1: one base step, as
    before), gives the new inputs their defaults, and builds the same prompt as today's 09a, which the server
    accepts."""
    name = "09a_demo_mode_collapse"
    old = json.loads((FIXTURE_WORKFLOWS / "09a_demo_mode_collapse_saved_2026-12-02.json").read_text())
    result = load(frontend, name, old)
    assert result["missing"] == [] and result["log"] == [], result["log"]
    today = {str(n["id"]): n["widgets_values"] for n in ui_file(name)["nodes"]}
    for node in old["nodes"]:
        widgets, saved = result["widgets"][str(node["id"])], node["widgets_values"]
        assert widgets[: len(saved)] == saved, node["type"]  # every saved value where it was
        assert widgets == today[str(node["id"])], node["type"]  # the inputs added since: their defaults
        if node["type"] == "DDistill_BaseFirstStepSampler":
            assert widgets[3] == 1 and widgets[len(saved) :] == [18.2, 0.0]  # base_steps as saved; A*, no sigma
    assert_builds_twin(server, result["output"], name)
    status, body = server.queue(result["output"])
    assert status == 200 and body["node_errors"] == {}, json.dumps(body)[:1500]
    server.post("/queue", {"clear": True})
    server.post("/interrupt")
