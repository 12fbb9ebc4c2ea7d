"""Browser tests' infrastructure: Debian's Chromium driven by Playwright against a real ComfyUI server
(``ddistill_dev/host/comfy_server.py``) and the frontend that ComfyUI bundles (comfyui-frontend-package).

``bash scripts/setup_browser.sh`` installs the prerequisites (it never downloads a Playwright browser build:
Playwright starts /usr/bin/chromium through ``executable_path``). Use in a test module::

    from browser import open_frontend  # the chromium fixture comes from conftest.py

    def test_x(server, chromium):
        with open_frontend(chromium, server) as fe:
            assert "DDistill_X0Preview" in fe.registered_node_types()

Where Chromium or Playwright is missing the tests skip with the set-up command, except under CI (``CI`` set),
where they fail: a CI run must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DDISTILL_CHROMIUM", "/usr/bin/chromium"))
SETUP_HINT = "run `bash scripts/setup_browser.sh` (installs Debian's chromium and the playwright client)"
# The frontend has loaded when its app, graph and node registry exist and the node definitions arrived.
READY_JS = (
    "() => !!(window.app && window.app.graph && window.LiteGraph && window.LiteGraph.registered_node_types"
    " && Object.keys(window.LiteGraph.registered_node_types).length > 0 && window.app.canvas)"
)
# Settings that keep first-run dialogs (templates browser, release notes) from covering the canvas.
QUIET_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Workflow.ShowMissingNodesWarning": False,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
    "Comfy.Release.Timestamp": 4102444800000,
}


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run: {reason}; {SETUP_HINT}")
    pytest.skip(f"{reason}; {SETUP_HINT}")


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Playwright ``Browser``) for one test module. Module scope on purpose: Playwright's sync
    API keeps an event loop on this thread while it runs, so it is stopped before other modules' tests run (they
    may use asyncio), and each module that imports this fixture gets its own, started after the previous stopped."""
    if not (CHROMIUM.exists() or shutil.which(str(CHROMIUM))):
        _missing(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        )
    except Exception:
        pw.stop()
        raise
    try:
        yield browser
    finally:
        browser.close()
        pw.stop()


class Frontend:
    """One open ComfyUI frontend tab; ``console`` / ``errors`` collect what the page logged."""

    def __init__(self, page, server):
        self.page, self.server = page, server
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def eval(self, js: str, arg=None):
        return self.page.evaluate(js, arg)

    def wait_for(self, js: str, arg=None, timeout_s: float = 60):
        """Wait until the JS function ``js`` returns a truthy value; returns that value."""
        handle = self.page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000, polling=100)
        return handle.json_value()

    def registered_node_types(self) -> list[str]:
        return self.eval("() => Object.keys(window.LiteGraph.registered_node_types)")

    def extensions(self) -> list[str]:
        """Names of the frontend extensions that registered (core and custom)."""
        return self.eval("() => (window.app.extensions || []).map(e => e.name)")

    def add_node(self, node_type: str, pos=(100, 100)) -> int:
        """Add a node to the canvas graph as a user would; returns its id."""
        return self.eval(
            "([t, pos]) => { const n = window.LiteGraph.createNode(t); n.pos = pos;"
            " window.app.graph.add(n); return n.id; }",
            [node_type, list(pos)],
        )

    def load_api_prompt(self, prompt: dict) -> None:
        """Replace the canvas graph with an API-format prompt (as dropping an API workflow file does)."""
        self.eval("async (p) => { await window.app.loadApiJson(p, 'test.json'); }", prompt)

    def queue(self) -> None:
        """Queue the canvas graph through the frontend (the Queue button's path, with this tab's client id)."""
        self.eval("async () => { await window.app.queuePrompt(0, 1); }")

    def log(self) -> str:
        return "\n".join(self.console + [f"pageerror: {e}" for e in self.errors])


@contextmanager
def open_frontend(browser, server, timeout_s: float = 90, settings: dict | None = None):
    """Open ``server``'s bundled frontend in a fresh browser context and wait until it has loaded."""
    for key, value in {**QUIET_SETTINGS, **(settings or {})}.items():
        server.post(f"/settings/{key}", value)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    fe = Frontend(page, server)
    try:
        page.goto(server.url + "/", wait_until="domcontentloaded", timeout=timeout_s * 1000)
        try:
            fe.wait_for(READY_JS, timeout_s=timeout_s)
        except Exception as exc:
            raise AssertionError(
                f"the ComfyUI frontend did not load in {timeout_s}s: {exc}\n"
                f"page log:\n{fe.log()[-3000:]}\nserver log:\n{server.log_text()[-2000:]}"
            ) from None
        yield fe
    finally:
        context.close()


# The template dialog shows a page of cards at a time and adds more as its grid is scrolled (1.32.9: 24 at first):
# scroll every scrollable element of the dialog down step by step, collecting the text each step shows, until
# every name of ``names`` has been seen. The collected text keeps the order the cards were shown in.
_DIALOG_TEXT_JS = """async (names) => {
  const dialogs = () => [...document.querySelectorAll('.p-dialog, [role=dialog]')];
  let text = '';
  for (let i = 0; i < 60; i++) {
    text += '\\n' + dialogs().map((d) => d.innerText).join('\\n');
    if (names.every((n) => text.includes(n))) return text;
    let moved = false;
    for (const d of dialogs()) for (const el of [d, ...d.querySelectorAll('*')]) {
      if (el.scrollHeight > el.clientHeight + 4 && el.scrollTop + el.clientHeight < el.scrollHeight - 1) {
        el.scrollTop += Math.max(el.clientHeight - 40, 40);
        el.dispatchEvent(new Event('scroll'));
        moved = true;
      }
    }
    await new Promise((r) => setTimeout(r, moved ? 300 : 500));
  }
  return text;
}"""


def template_dialog_text(page, names: list[str]) -> str:
    """Everything the open template dialog lists, scrolled until each of the cards ``names`` was shown (ComfyUI
    lists a pack's templates in the order it finds the files; see ``_DIALOG_TEXT_JS``)."""
    return page.evaluate(_DIALOG_TEXT_JS, list(names))
