"""The shipped workflows' layout in the real frontend (headless Chromium, a real server): no two nodes overlap and
the Diversity Meter's panel shows all of its text, also after a run, when the meters, x̂0 previews, Save Image
nodes and samplers (live x̂0 filmstrip) have grown; the template browser lists every card of the pack;
every model link is one the frontend's missing-models dialog accepts.

Each offline demo workflow (09a-09e) runs for real on the bundled demo models. The others cannot run here (no model
files), so each of their output and sampler nodes is sent what a demo run sent a node of its class (the frontend's
own ``executed`` and the pack's ``ddistill.x0_frame`` messages, replayed through the frontend's api object): the
largest such message, the worst case for the layout.

Runs on ComfyUI's bundled frontend. To check another one by hand: ``DDISTILL_FRONTEND_ROOT=<unzipped
comfyui_frontend_package>/static`` (e.g. 1.58.1) and ``DDISTILL_VUE_NODES=1`` for the "Nodes 2.0" renderer (then the
nodes' rectangles are their DOM boxes); ``DDISTILL_LAYOUT_SHOTS=DIR`` saves a screenshot of each workflow there.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import QUIET_SETTINGS, READY_JS, template_dialog_text

from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.host.comfy_server import ComfyServer
from ddistill_dev.workflows.workflow_catalog import EXPERIMENTS, MODELS

WORKFLOWS = PACK_ROOT / "workflows"
PACK_FOLDER = "ComfyUI-DiversityDistillation"
NAMES = [e.name for e in EXPERIMENTS]
DEMOS = [e.name for e in EXPERIMENTS if not e.files]
OTHERS = [e.name for e in EXPERIMENTS if e.files]
FRONTEND_ROOT = os.environ.get("DDISTILL_FRONTEND_ROOT")
VUE_NODES = os.environ.get("DDISTILL_VUE_NODES", "") not in ("", "0")
SHOTS = os.environ.get("DDISTILL_LAYOUT_SHOTS")
METER, FRAME_EVENT = "DDistill_DiversityMeter", "ddistill.x0_frame"

# Capture what the server sends (the frontend's api object dispatches every websocket message as an event).
CAPTURE_JS = (
    """() => {
  if (window.__ddx) return;
  window.__ddx = [];
  const api = window.comfyAPI.api.api;
  for (const type of ["executed", "%s"]) api.addEventListener(type, (e) => window.__ddx.push({type, detail: e.detail}));
}"""
    % FRAME_EVENT
)
LOAD_JS = "async ([w, n]) => { window.__ddx = window.__ddx || []; await window.app.loadGraphData(w, true, true, n); }"
# Pan over the whole graph at scale 1, one screenful at a time, so that the frontend lays out and draws every node
# (DOM widgets included), as a user scrolling over the canvas does: nodes outside the view are neither arranged
# nor drawn. With `ids`, put just those nodes on screen, one at a time.
VISIT_JS = """async (ids) => {
  const app = window.app, ds = app.canvas.ds, el = app.canvas.canvas;
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const show = async (x, y) => { ds.scale = 1; ds.offset = [-x, -y]; app.canvas.setDirty(true, true); await frame(); };
  if (ids) {
    for (const id of ids) { const n = app.graph.getNodeById(id); if (n) await show(n.pos[0] - 60, n.pos[1] - 80); }
    return;
  }
  const nodes = app.graph.nodes;
  const x0 = Math.min(...nodes.map((n) => n.pos[0])) - 50, y0 = Math.min(...nodes.map((n) => n.pos[1])) - 80;
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
  const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
  const w = el.clientWidth - 100, h = el.clientHeight - 100;
  for (let y = y0; y < y1; y += h) for (let x = x0; x < x1; x += w) await show(x, y);
}"""
# Every node's rectangle in graph units, title bar included: from pos/size, or, under the Vue renderer, its DOM box.
RECTS_JS = """() => {
  const app = window.app, ds = app.canvas.ds, T = window.LiteGraph.NODE_TITLE_HEIGHT;
  const c = app.canvas.canvas.getBoundingClientRect();
  return app.graph.nodes.map((n) => {
    let rect = [n.pos[0], n.pos[1] - T, n.size[0], n.size[1] + T];
    const el = document.querySelector(`.lg-node[data-node-id="${n.id}"]`);
    if (el) {
      const b = el.getBoundingClientRect();
      rect = [(b.x - c.x) / ds.scale - ds.offset[0], (b.y - c.y) / ds.scale - ds.offset[1],
              b.width / ds.scale, b.height / ds.scale];
    }
    return {id: n.id, type: n.type, title: n.title, rect};
  });
}"""
# The meter panel of node `id` (on screen): its content against its box, and its box against the node's.
PANEL_JS = """(id) => {
  const el = document.querySelector(`.ddistill-diversity[data-node-id="${id}"]`);
  if (!el) return null;
  const app = window.app, ds = app.canvas.ds, n = app.graph.getNodeById(id);
  const c = app.canvas.canvas.getBoundingClientRect();
  const b = el.getBoundingClientRect();
  const box = [(b.x - c.x) / ds.scale - ds.offset[0], (b.y - c.y) / ds.scale - ds.offset[1], b.width / ds.scale,
               b.height / ds.scale];
  const host = el.closest(".lg-node");
  const hb = host ? host.getBoundingClientRect() : null;
  const node = hb ? [(hb.x - c.x) / ds.scale - ds.offset[0], (hb.y - c.y) / ds.scale - ds.offset[1],
                     hb.width / ds.scale, hb.height / ds.scale] : [n.pos[0], n.pos[1], n.size[0], n.size[1]];
  return {sh: el.scrollHeight, ch: el.clientHeight, sw: el.scrollWidth, cw: el.clientWidth, text: el.innerText,
          box, node, lines: el.children.length};
}"""
# Replay, to each node of the loaded graph, the largest captured message of a node of its class.
REPLAY_JS = """([events, frameEvent]) => {
  const api = window.comfyAPI.api.api, graph = window.app.graph;
  const link = (l) => graph.links[l] ?? graph.links.get?.(l); // an object or a Map, by frontend version
  const recorded = new Set(graph.nodes.filter((n) => n.type === "DDistill_RecordX0Sampler").flatMap((n) =>
    (n.outputs || []).flatMap((o) => (o.links || []).map((l) => link(l)?.target_id))));
  let sent = 0;
  for (const n of graph.nodes) {
    const ev = events[n.type];
    if (!ev) continue;
    if (ev.frames) {
      const pack = n.type.startsWith("DDistill_");
      if (!pack && !recorded.has(n.id)) continue; // stock samplers stream frames only through Record x0 Sampler
      for (const f of ev.frames) api.dispatchCustomEvent(frameEvent, {...f, node: String(n.id), prompt_id: "replay"});
      sent += 1;
    }
    if (ev.output) {
      const id = String(n.id);
      api.dispatchCustomEvent("executed", {node: id, display_node: id, output: ev.output, prompt_id: "replay"});
      sent += 1;
    }
  }
  return sent;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    extra = ("--front-end-root", FRONTEND_ROOT) if FRONTEND_ROOT else ()
    with ComfyServer(tmp_path_factory.mktemp("comfy_layout"), with_fixture_pack=False, extra_args=extra) as s:
        yield s


def set_setting(server, key: str, value) -> None:
    """POST one frontend setting with exactly this JSON value (``ComfyServer.post`` sends ``{}`` for ``False``)."""
    req = urllib.request.Request(
        f"{server.url}/settings/{key}", data=json.dumps(value).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, (key, r.status)


@contextmanager
def open_page(browser, server, **extra_settings):
    settings = {**QUIET_SETTINGS, "Comfy.VueNodes.Enabled": VUE_NODES, **extra_settings}
    for key, value in settings.items():
        set_setting(server, key, value)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    # nothing but this server: newer frontends call api.comfy.org and huggingface.co
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.url) else r.abort())
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url + "/", wait_until="domcontentloaded", timeout=90000)
        page.wait_for_function(READY_JS, timeout=90000, polling=100)
        page.evaluate(CAPTURE_JS)
        page.errors = errors
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def page(server, chromium):
    with open_page(chromium, server) as p:
        yield p


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def load(page, name: str) -> int:
    """Open workflow ``name`` as the template browser does; returns how many nodes the canvas then holds."""
    page.evaluate(LOAD_JS, [workflow(name), name])
    return page.evaluate("() => window.app.graph.nodes.length")


def run(page, server, name: str, timeout: float = 300) -> None:
    """Queue the loaded graph through the frontend and wait until the server has finished it."""
    before = set(server.get("/history"))
    page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = {k: v for k, v in server.get("/history").items() if k not in before}
        done = [v for v in new.values() if v.get("status", {}).get("completed") is not None]
        if done:
            assert done[0]["status"]["status_str"] == "success", f"{name}: {done[0]['status']}"
            page.wait_for_timeout(500)  # the last websocket messages reach the page
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} did not finish in {timeout} s:\n{server.log_text()[-2000:]}")


def overlapping(rects: list[dict], tol: float = 0.5) -> list[str]:
    found = []
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = a["rect"], b["rect"]
            if ax + tol < bx + bw and bx + tol < ax + aw and ay + tol < by + bh and by + tol < ay + ah:
                found.append(
                    f"{a['id']} {a['type']} '{a['title']}' {[round(v) for v in a['rect']]} overlaps "
                    f"{b['id']} {b['type']} '{b['title']}' {[round(v) for v in b['rect']]}"
                )
    return found


def check_layout(page, name: str, meters_ran: bool) -> None:
    page.evaluate(VISIT_JS, None)  # twice: a node drawn for the first time may grow once more (image previews)
    page.evaluate(VISIT_JS, None)
    problems = []
    meters = page.evaluate(f"() => window.app.graph.nodes.filter((n) => n.type === '{METER}').map((n) => n.id)")
    for mid in meters:
        page.evaluate(VISIT_JS, [mid])
        panel = page.evaluate(PANEL_JS, mid)
        if not meters_ran:
            continue
        if panel is None or "A:" not in panel["text"]:
            problems.append(f"meter {mid}: no numbers on the panel ({panel})")
            continue
        if panel["sh"] > panel["ch"] + 1 or panel["sw"] > panel["cw"] + 1 or panel["ch"] < 20:
            problems.append(f"meter {mid}: panel content {panel['sw']}x{panel['sh']} cut by its box {panel}")
        (x, y, w, h), (nx, ny, nw, nh) = panel["box"], panel["node"]
        if x < nx - 1 or y < ny - 1 or x + w > nx + nw + 1 or y + h > ny + nh + 1:
            problems.append(f"meter {mid}: panel {[round(v) for v in panel['box']]} outside its node {panel['node']}")
    rects = page.evaluate(RECTS_JS)
    problems += overlapping(rects)
    if SHOTS:
        shoot(page, name)
    assert not problems, f"{name}:\n" + "\n".join(problems)


def shoot(page, name: str) -> None:
    """Screenshots: the method rows at a scale that shows all of them, and their output end (Save Image, meter,
    x̂0 Preview) at scale 0.8."""
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    tag = ("vue" if VUE_NODES else "classic") + ("_" + Path(FRONTEND_ROOT).parent.name if FRONTEND_ROOT else "")
    for part in ("", "_detail"):
        page.evaluate(
            """(detail) => {
          const app = window.app, ds = app.canvas.ds, nodes = app.graph.nodes.filter((n) => n.pos[0] > 900);
          const x0 = Math.min(...nodes.map((n) => n.pos[0])) - 40, y0 = Math.min(...nodes.map((n) => n.pos[1])) - 120;
          const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])) + 40;
          const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1])) + 40;
          ds.scale = detail ? 0.8 : Math.min(1600 / (x1 - x0), 900 / (y1 - y0));
          ds.offset = [-(detail ? x1 - 1600 / 0.8 : x0), -y0];
          app.canvas.setDirty(true, true);
        }""",
            bool(part),
        )
        page.wait_for_timeout(800)
        page.screenshot(path=str(Path(SHOTS) / f"{name}_{tag}{part}.png"))


def largest_messages(page) -> dict:
    """{class type: {"output": the largest executed output, "frames": the longest run of x̂0 frames}} of a node of
    that class, from the messages captured during the demo runs."""
    return page.evaluate(
        """(frameEvent) => {
      const byNode = {}, out = {};
      for (const {type, detail} of window.__ddx) {
        const id = String(type === frameEvent ? detail.node : (detail.display_node ?? detail.node));
        const e = (byNode[id] = byNode[id] || {frames: new Map(), output: null});
        if (type === frameEvent) e.frames.set(detail.step, detail); else e.output = detail.output;
        e.nodeType = e.nodeType || window.__ddxTypes?.[id];
      }
      for (const [id, e] of Object.entries(byNode)) {
        const t = e.nodeType;
        if (!t) continue;
        const cur = (out[t] = out[t] || {frames: null, output: null});
        if (e.frames.size && (!cur.frames || e.frames.size > cur.frames.length)) cur.frames = [...e.frames.values()];
        const longer = (a, b) => JSON.stringify(a).length > JSON.stringify(b).length;
        if (e.output && (!cur.output || longer(e.output, cur.output))) cur.output = e.output;
      }
      return out;
    }""",
        FRAME_EVENT,
    )


@pytest.fixture(scope="module")
def demo_messages(page, server):
    """Run every demo workflow once in the page (the layout is checked after each run) and keep its messages."""
    results = {}
    for name in DEMOS:
        page.evaluate("() => { window.__ddx = []; }")
        assert load(page, name) == len(workflow(name)["nodes"]), name
        server.post("/free", {"free_memory": True})  # every node runs and reports
        run(page, server, name)
        results.setdefault("_frame_models", {})[name] = page.evaluate(
            f"""() => {{ const out = {{}};
              for (const {{type, detail}} of window.__ddx) if (type === "{FRAME_EVENT}")
                if (!(out[detail.node] = out[detail.node] || []).includes(detail.model))
                  out[detail.node].push(detail.model);
              return out; }}"""
        )
        types = page.evaluate("() => Object.fromEntries(window.app.graph.nodes.map((n) => [String(n.id), n.type]))")
        page.evaluate("(t) => { window.__ddxTypes = t; }", types)
        messages = largest_messages(page)
        try:
            check_layout(page, name, meters_ran=True)
            results[name] = None
        except AssertionError as exc:
            results[name] = str(exc)
        results.setdefault("_messages", {})
        for t, m in messages.items():  # keep the largest over all demos
            cur = results["_messages"].setdefault(t, {"frames": None, "output": None})
            if m["frames"] and (not cur["frames"] or len(m["frames"]) > len(cur["frames"])):
                cur["frames"] = m["frames"]
            if m["output"] and (not cur["output"] or len(json.dumps(m["output"])) > len(json.dumps(cur["output"]))):
                cur["output"] = m["output"]
    return results


@pytest.mark.parametrize("name", DEMOS)
def test_demo_workflow_after_a_real_run_has_no_overlap_and_whole_meter_panels(demo_messages, name):
    assert demo_messages[name] is None, demo_messages[name]


@pytest.mark.parametrize("name", NAMES)
def test_model_labels_only_where_a_node_holds_the_other_model(name):
    """'replace final' rows (04, 09c) swap the models: Base First Step says 'distilled', Distilled Continue 'base'; a
    distilled-alone row through the hybrid's nodes (11) has Base First Step say 'distilled';
    10e's hybrid runs the base low-noise expert in a Distilled Continue (the base takes steps 1-3 there, by noise
    level), labelled 'base'; every other sampler keeps its role's label (empty)."""
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    role = {"DDistill_BaseFirstStepSampler": "base", "DDistill_DistilledContinueSampler": "distilled"}
    labels = {  # a label that repeats the node's role says nothing more
        n["class_type"]: n["inputs"]["model_label"]
        for n in api.values()
        if n["inputs"].get("model_label") and n["inputs"]["model_label"] != role.get(n["class_type"])
    }
    swapped = any(n["_meta"]["title"] == "method: replace final" for n in api.values())
    want = {"DDistill_BaseFirstStepSampler": "distilled", "DDistill_DistilledContinueSampler": "base"}
    expected = {"DDistill_DistilledContinueSampler": "base"} if name.startswith("10e_") else {}
    alone = [  # a distilled-alone row through the hybrid's nodes (11's k = 0): its Base First Step holds the distilled
        h
        for h in api.values()  # model, the one its Distilled Continue holds
        if h["class_type"] == "DDistill_BaseFirstStepSampler"
        and any(
            c["class_type"] == "DDistill_DistilledContinueSampler"
            and c["inputs"]["distilled_model"] == h["inputs"]["base_model"]
            for c in api.values()
        )
    ]
    if alone:
        expected = {"DDistill_BaseFirstStepSampler": "distilled"}
    assert labels == (want if swapped else expected), name


def test_frames_name_the_model_that_took_each_step(demo_messages):
    """Where a sampler node holds the other model than its role (09c's 'replace final' row: the distilled model in
    Base First Step, the base model in Distilled Continue), its model_label makes the live x̂0 frames say so."""
    api = json.loads((WORKFLOWS / "api" / "09c_demo_replace_final_steps.json").read_text(encoding="utf-8"))
    labelled = {nid: n["inputs"]["model_label"] for nid, n in api.items() if n["inputs"].get("model_label")}
    assert sorted(labelled.values()) == ["base", "distilled"], labelled
    frames = demo_messages["_frame_models"]["09c_demo_replace_final_steps"]
    for nid, label in labelled.items():
        assert frames.get(nid) == [label], (nid, label, frames)


@pytest.mark.parametrize("name", OTHERS)
def test_workflow_after_a_replayed_run_has_no_overlap_and_whole_meter_panels(page, demo_messages, name):
    messages = demo_messages["_messages"]
    assert {METER, "SaveImage"} <= set(messages), sorted(messages)
    assert load(page, name) == len(workflow(name)["nodes"]), name
    check_layout(page, name + " (before a run)", meters_ran=False)
    sent = page.evaluate(REPLAY_JS, [messages, FRAME_EVENT])
    assert sent >= 3, name
    page.wait_for_timeout(500)
    check_layout(page, name, meters_ran=True)
    assert not page.errors, page.errors


def test_template_browser_lists_every_card_and_a_to_z_is_experiment_order(page):
    """ComfyUI serves a pack's templates in the order it finds the files and the pack leaves that list alone (no
    documented hook orders it: js/diversity_meter.js); the names start with the experiment number, so sorting them
    by name (the dialog's "A → Z") is the catalogue's (experiment) order. The dialog shows every card."""
    listed = page.evaluate("async () => await window.comfyAPI.api.api.getWorkflowTemplates()")
    assert sorted(listed[PACK_FOLDER]) == NAMES  # NAMES is the catalogue's (experiment) order
    page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
    page.get_by_text(PACK_FOLDER).first.click(timeout=30000)  # the pack's category under Extensions
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('.p-dialog, [role=dialog]')].some((d) => d.innerText.includes(n))",
        arg=listed[PACK_FOLDER][0],
        timeout=30000,
    )
    page.wait_for_timeout(500)
    text = template_dialog_text(page, NAMES)  # the dialog adds cards as it is scrolled
    assert [n for n in NAMES if n not in text] == []
    page.keyboard.press("Escape")


def downloadable(text: str, file: str, folder: str) -> bool:
    """The missing-models list offers a download for ``file``: its line ('folder / file' in 1.32, 'file' then
    'folder' in newer frontends) is followed by a Download button, not by an error (1.32) or nothing (newer)."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for i, line in enumerate(lines):
        if line in (file, f"{folder} / {file}"):
            rest = lines[i + 1 : i + 3]
            if rest and rest[0] == folder:
                rest = rest[1:]
            if rest and rest[0].startswith("Download"):
                return True
    return False


def test_model_links_are_ones_the_missing_models_dialog_accepts(server, chromium):
    """Each workflow with model files opens with the missing-models warning on (the server has none of the files):
    the frontend lists every linked file (1.32: a dialog; newer: "View details" of the issues panel) with no 'not
    allowed' error; files without a link say in the workflow's note how to get them."""
    try:
        for name in OTHERS:  # a fresh page per workflow: one warning at a time, no open tabs left from the last one
            with open_page(chromium, server, **{"Comfy.Workflow.ShowMissingModelsWarning": True}) as page:
                ui = workflow(name)
                linked = {m["name"] for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])}
                page.evaluate(LOAD_JS, [ui, name])
                try:
                    page.wait_for_function(
                        "() => document.querySelector('.p-dialog') || document.body.innerText.includes('View details')",
                        timeout=30000,
                    )
                except Exception as exc:
                    raise AssertionError(f"{name}: no missing-models warning:\n{page.inner_text('body')}") from exc
                details = page.get_by_text("View details")
                if details.count():
                    details.first.click()
                    page.wait_for_function("() => document.body.innerText.includes('Missing Models')", timeout=10000)
                text = page.inner_text("body")
                assert "not allowed" not in text and "Only allowed suffixes" not in text, f"{name}:\n{text}"
                for f in linked:
                    assert downloadable(text, f, MODELS[f].folder), f"{name}: no download offered for {f}\n{text}"
                note = next(n for n in ui["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
                for f in {f for e in EXPERIMENTS if e.name == name for f in e.files} - linked:
                    assert not MODELS[f].url and MODELS[f].note in note, f"{name}: {f} has neither a link nor a note"
    finally:
        set_setting(server, "Comfy.Workflow.ShowMissingModelsWarning", False)
