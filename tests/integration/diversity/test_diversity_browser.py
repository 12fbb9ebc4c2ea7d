"""Headless Chromium against the real server: the Diversity Meter shows its numbers on the node (js/), and its
listener goes away with the node."""

import pytest
from browser import open_frontend
from test_diversity_meter import meter_prompt

from ddistill_dev.host.comfy_server import ComfyServer

EXT = "DDistill.DiversityMeter"
PANEL = "(id) => document.querySelector(`.ddistill-diversity[data-node-id='${id}']`)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_meter_browser")) as s:
        yield s


def history_payload(server):
    for entry in server.get("/history").values():
        out = entry.get("outputs", {}).get("4", {})
        if "ddistill_diversity" in out:
            return out["ddistill_diversity"][0]
    raise AssertionError("no Diversity Meter output in /history")


def test_numbers_on_the_node_and_listener_removed(server, chromium):
    with open_frontend(chromium, server) as fe:
        assert EXT in fe.extensions(), fe.log()[-2000:]
        prompt = meter_prompt()
        prompt["5"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 3, "color": 0x00FF00},
        }
        prompt["4"]["inputs"]["images_b"] = ["5", 0]
        fe.load_api_prompt(prompt)
        fe.queue()
        text = fe.wait_for(
            f"() => {{ const el = ({PANEL})(4); "
            "return el && el.querySelector('[data-batch=\"B-A\"]') && el.innerText; }",
            timeout_s=120,
        )
        p = history_payload(server)
        assert f"A: {p['a']['mean']:.4f} [{p['a']['ci'][0]:.4f}, {p['a']['ci'][1]:.4f}]  N=3 (3 pairs)" in text
        assert f"B: {p['b']['mean']:.4f} [{p['b']['ci'][0]:.4f}, {p['b']['ci'][1]:.4f}]  N=3 (3 pairs)" in text
        assert f"B - A: {p['difference']:+.4f}" in text and "NOT DreamSim" in text
        removed = fe.eval(f"""() => {{
            const ext = window.app.extensions.find((e) => e.name === "{EXT}");
            const node = window.app.graph.getNodeById(4);
            const before = ext.panels.size;
            window.app.graph.remove(node);
            return [before, ext.panels.size];
        }}""")
        assert removed == [1, 0]
        # an "executed" message for the removed node reaches no panel and raises nothing
        fe.eval(
            "() => window.comfyAPI.api.api.dispatchCustomEvent('executed', "
            "{node: '4', display_node: '4', output: {ddistill_diversity: [{a: null}]}})"
        )
        assert fe.eval(f"() => ({PANEL})(4) === null || !document.body.contains(({PANEL})(4))")
        assert not [e for e in fe.errors if "diversity" in e.lower()], fe.log()[-2000:]
