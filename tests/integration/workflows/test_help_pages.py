"""The node help pages (``js/docs/<node ID>.md``) through the real server and the bundled frontend.

How the frontend finds them (its ``NodeHelpService``, the same in the bundles of 1.32.9, 1.49.6 and 1.58.1): for a
node whose ``python_module`` is ``custom_nodes.<pack folder>`` it fetches ``/extensions/<pack folder>/docs/<node
class>/<locale>.md`` and, where that fails, ``/extensions/<pack folder>/docs/<node class>.md``; the node class is
the node ID (``DDistill_X0Preview``). ComfyUI serves a pack's ``WEB_DIRECTORY`` (here ``js/``) at
``/extensions/<pack folder>/``, so the pages lie in ``js/docs/``, one per node, without locale folders (the
locale URL answers 404 and the frontend falls back). Pictures with a relative address are rebased onto
``/extensions/<pack folder>/docs/``, so they lie beside the pages; links are not rebased. 1.49.6 and later refuse a
reply served as text/html (ComfyUI serves .md as application/octet-stream).

Where each frontend shows them:

* 1.32.9 (ComfyUI 0.3.75): in the node library sidebar: a node's "?" (Learn more) button there, and the info button
  of the selection toolbox over a selected node, open the page in the sidebar.
* 1.49.6 (ComfyUI 0.33.0) and 1.58.1: the redesigned node library (their default) has no help button and only
  lists the node; the selection toolbox's info button (or the properties panel's Info tab) shows the page in the
  right side panel.

The tests: each page against the node's schema as ``/object_info`` reports it (title, every input and output,
the defaults the page states); every page and picture fetched from the server as the frontend does; in headless
Chromium the help of Base First Step (its settings table must fit the panel's width) and x̂0 Preview opened through
the selection toolbox's info button, and the Diversity Meter's through the node library where its library has a
help button (else the library must list it), each showing the page's text and its picture.
"""

import re
import urllib.error
import urllib.request

import pytest
from browser import open_frontend

from ddistill_dev.host.comfy_host import PACK_ROOT
from ddistill_dev.host.comfy_server import ComfyServer
from runner.comfy_server import PACK_NAME

DOCS = PACK_ROOT / "js" / "docs"
DOCS_URL = f"/extensions/{PACK_NAME}/docs"
MODULE = f"custom_nodes.{PACK_NAME}"
HELP = ".node-help-content"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_help"), with_fixture_pack=False) as s:
        yield s


@pytest.fixture(scope="module")
def pack_nodes(server):
    return {name: info for name, info in server.object_info().items() if info.get("python_module") == MODULE}


def page(node_id: str) -> str:
    return (DOCS / f"{node_id}.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def items(body: str) -> list[tuple[list[str], str]]:
    """The top-level list items of a section: (the names they start with, the item's text)."""
    found = []
    for chunk in re.split(r"\n(?=- )", "\n" + body):
        m = re.match(r"- ((?:`[^`]+`(?:, )?)+)", chunk)
        if m:
            found.append((re.findall(r"`([^`]+)`", m.group(1)), " ".join(chunk.split())))
    return found


def first_paragraph(text: str) -> str:
    """The page's opening paragraph as the help panel shows it (Markdown marks gone, lines joined)."""
    para = text.split("\n\n", 2)[1]
    return re.sub(r"[*`]", "", " ".join(para.split()))


def schema_default(spec: list):
    opts = spec[1] if len(spec) > 1 else {}
    if "default" in opts:
        return opts["default"]
    options = spec[0] if isinstance(spec[0], list) else opts.get("options")
    return options[0] if options else None


def same_default(stated: str, default) -> bool:
    if isinstance(default, bool):
        return stated == str(default).lower()
    if isinstance(default, (int, float)):
        return float(stated) == float(default)
    return stated == default


def test_each_page_lists_the_nodes_inputs_outputs_and_defaults(pack_nodes):
    assert {p.stem for p in DOCS.glob("*.md")} == set(pack_nodes), "one page per node the server lists for the pack"
    for node_id, info in pack_nodes.items():
        text = page(node_id)
        assert text.splitlines()[0] == f"# {info['display_name']}", node_id
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        listed = items(section(text, "Inputs"))
        names = [n for ns, _ in listed for n in ns]
        assert sorted(names) == sorted(specs), f"{node_id}: the page lists {names}, the node has {sorted(specs)}"
        outputs = [n for ns, _ in items(section(text, "Outputs")) for n in ns]
        assert outputs == info["output_name"], node_id
        for ns, item in listed:
            stated = re.search(r"default `([^`]*)`", item)
            if stated:
                assert len(ns) == 1, f"{node_id}: a stated default belongs to one input: {item}"
                want = schema_default(specs[ns[0]])
                assert same_default(stated.group(1), want), f"{node_id}.{ns[0]}: page says {stated.group(1)}, is {want}"


def fetch(server, path: str):
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, "", b""


def test_server_serves_every_page_and_picture(server):
    files = sorted(DOCS.iterdir())
    assert any(f.suffix == ".jpg" for f in files)
    for f in files:
        status, kind, body = fetch(server, f"{DOCS_URL}/{f.name}")
        assert status == 200 and body == f.read_bytes(), (f.name, status)
        assert "text/html" not in kind, f"{f.name} served as {kind}: frontend 1.49+ would refuse it"
    # the frontend asks for a locale folder first; there is none, so it falls back to the page itself
    assert fetch(server, f"{DOCS_URL}/DDistill_X0Preview/en.md")[0] == 404


# The help text as shown (whitespace collapsed) and whether its pictures arrived (a picture that failed to load has
# naturalWidth 0).
SHOWN_JS = """() => [...document.querySelectorAll('.node-help-content')].map((el) => ({
    text: el.innerText.replace(/\\s+/g, ' '),
    pictures: [...el.querySelectorAll('img')].map((img) => [img.getAttribute('src'), img.complete && img.naturalWidth]),
}))"""


def wait_for_help(fe, node_id: str) -> dict:
    """The help panel that shows ``node_id``'s page, once its text and pictures are in."""
    want = first_paragraph(page(node_id))
    pictures = re.findall(r"!\[[^\]]+\]\(([^)\s]+)\)", page(node_id))
    js = f"""() => ({SHOWN_JS})().find((h) => h.text.includes({want!r})
        && h.pictures.length === {len(pictures)} && h.pictures.every(([, w]) => w > 0))"""
    try:
        shown = fe.wait_for(js, timeout_s=30)
    except Exception:
        raise AssertionError(
            f"{node_id}'s help page is not shown; help panels: {fe.eval(SHOWN_JS)}\npage log:\n{fe.log()[-2000:]}"
        ) from None
    assert [src for src, _ in shown["pictures"]] == [f"{DOCS_URL}/{p}" for p in pictures]
    return shown


def select_on_canvas(fe, node_id: str) -> None:
    """Add ``node_id`` to an empty canvas and click its title, as a user selects a node."""
    fe.eval("() => window.app.graph.clear()")
    node = fe.add_node(node_id, (700, 250))
    x, y = fe.eval(
        """(id) => { const c = window.app.canvas, n = window.app.graph.getNodeById(id);
        c.ds.scale = 1; c.ds.offset[0] = 0; c.ds.offset[1] = 0; c.setDirty(true, true);
        const r = c.canvas.getBoundingClientRect();
        return [r.left + n.pos[0] + 40, r.top + n.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT / 2]; }""",
        node,
    )
    fe.page.wait_for_timeout(300)  # one frame drawn at the new offset
    fe.page.mouse.click(x, y)


def open_info(fe, node_id: str) -> dict:
    """Select ``node_id`` on the canvas and press the selection toolbox's info button: its help page, as shown."""
    select_on_canvas(fe, node_id)
    fe.page.locator("[data-testid=info-button]").first.click(timeout=15000)
    return wait_for_help(fe, node_id)


# Whether every table of the shown help fits the panel's width (the panel is about 270 px wide by default).
TABLES_FIT_JS = """() => [...document.querySelectorAll('.node-help-content table')]
    .map((t) => [t.scrollWidth, t.parentElement.clientWidth])"""


def test_help_panel_shows_the_pages(server, chromium, pack_nodes):
    with open_frontend(chromium, server, settings={"Comfy.Canvas.SelectionToolbox": True}) as fe:
        page_ = fe.page
        # the node library: search the Diversity Meter; the library of 1.32.9 has a "?" button on each node, the
        # redesigned one (setting Comfy.NodeLibrary.NewDesign, on by default where it exists) only lists it
        new_library = fe.eval("() => !!window.app.extensionManager.setting.get('Comfy.NodeLibrary.NewDesign')")
        title = pack_nodes["DDistill_DiversityMeter"]["display_name"]
        page_.click("button[aria-label^='Node Library']")  # the sidebar's button (English labels)
        page_.locator(".sidebar-content-container input, .side-bar-panel input").first.fill(title)
        page_.get_by_text(title, exact=True).first.wait_for(timeout=15000)
        assert (page_.locator(".node-lib-tree-explorer").count() == 0) == new_library
        if not new_library:
            leaf = page_.locator(".node-lib-tree-explorer .p-tree-node-leaf", has_text=title).first
            leaf.hover()
            leaf.locator(".pi-question").click()
            wait_for_help(fe, "DDistill_DiversityMeter")
        # the selection toolbox's info button, on every frontend
        open_info(fe, "DDistill_BaseFirstStepSampler")
        widths = fe.eval(TABLES_FIT_JS)
        assert widths and all(w <= room for w, room in widths), f"the settings table overflows the panel: {widths}"
        shown = open_info(fe, "DDistill_X0Preview")
        assert "Inputs" in shown["text"] and "max_cells" in shown["text"]
        assert not fe.errors, fe.log()[-2000:]
