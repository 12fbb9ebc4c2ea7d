"""x̂0 Preview and Record x̂0 Sampler through the real ComfyUI server (127.0.0.1), and the live filmstrip in the
bundled frontend driven by headless Chromium."""

import pytest
from browser import open_frontend
from test_x0_vae import write_taesd_file

from ddistill_dev.gpu import runner_graphs as rg
from ddistill_dev.host.comfy_server import ComfyServer, execution_error


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_x0")
    write_taesd_file(base / "models", "tiny_taesd.safetensors", seed=0)
    write_taesd_file(base / "models", "tiny_taesd16.safetensors", seed=0, latent_channels=16)
    with ComfyServer(base) as s:
        yield s


def common():
    return {**rg.tiny_sdxl_inputs(64, 2), "14": rg.node("VAELoader", {"vae_name": "tiny_taesd.safetensors"})}


def hybrid_prompt(seed=3, vae="14"):
    p = common()
    p.update(rg.hybrid(("5", "6"), ["1", 0], ["2", 0], ["3", 0], ["3", 0], ["4", 0], seed))
    p["15"] = rg.x0_preview([vae, 0], ["6", 0], 64, 64, trajectory=["6", 1])
    return p


def stock_prompt(seed=1):
    p = common()
    p["10"] = rg.ksampler_select("euler")
    p["11"] = rg.record_x0_sampler(["10", 0], "stock")
    p["12"] = rg.basic_scheduler(["1", 0], "karras", 3)
    p["13"] = rg.sampler_custom(["1", 0], seed, ["3", 0], ["3", 0], ["11", 0], ["12", 0], ["4", 0])
    p["15"] = rg.x0_preview(["14", 0], ["13", 0], 64, 64, recording=["11", 1])
    return p


def test_nodes_registered(server):
    info = server.object_info()
    assert info["DDistill_X0Preview"]["display_name"] == "x̂0 Preview"
    assert info["DDistill_X0Preview"]["output_node"] is True
    assert info["DDistill_X0Preview"]["output_name"] == ["grid", "frames", "curve", "distances"]
    assert info["DDistill_RecordX0Sampler"]["output"] == ["SAMPLER", "DDISTILL_X0_RECORDING"]
    assert info["DDistill_X0Preview"]["category"] == "sampling/diversity distillation/inspect"


def _check_ui(server, entry, steps, models):
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    out = entry["outputs"]["15"]
    assert len(out["images"]) == 2  # grid and curve
    for image in out["images"]:
        png = server.get(f"/view?filename={image['filename']}&type={image['type']}&subfolder={image['subfolder']}")
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = out["text"][0]
    assert text.startswith("mean distance to final (pixel (RMS, 0..1)) by step:")
    assert [int(t.split(":")[0]) for t in text.split("by step: ")[1].split()] == steps


def test_hybrid_graph_preview(server):
    _check_ui(server, server.run(hybrid_prompt()), [1, 2, 3, 4], None)


def test_stock_graph_preview_through_recording(server):
    entry = server.run(stock_prompt())
    _check_ui(server, entry, [1, 2, 3], None)
    # a changed seed re-runs the stock sampler and the preview shows the new run (no stale frames)
    _check_ui(server, server.run(stock_prompt(seed=2)), [1, 2, 3], None)


def test_wrong_vae_is_a_clear_error_and_the_server_lives_on(server):
    p = hybrid_prompt()
    p["16"] = {"class_type": "VAELoader", "inputs": {"vae_name": "tiny_taesd16.safetensors"}}
    p["15"]["inputs"]["vae"] = ["16", 0]
    entry = server.run(p)
    err = execution_error(entry)
    assert err is not None and err["node_id"] == "15"
    assert err["exception_message"].startswith("vae: this VAE decodes 16-channel 2-D latents")
    assert server.run(hybrid_prompt(seed=4))["status"]["status_str"] == "success"


def test_unlinked_sources_and_wrong_links_give_one_error_each(server):
    """A recording without the sampler's LATENT is refused when the node runs, naming the input to link; a link of
    the wrong type is ComfyUI's own queue-time error, once, on that input."""
    p = stock_prompt()
    del p["15"]["inputs"]["latent"]
    err = execution_error(server.run(p))
    assert err is not None and err["node_id"] == "15", err
    assert err["exception_message"].startswith("latent: connect the stock sampler's output LATENT"), err
    p = hybrid_prompt()
    p["15"]["inputs"]["trajectory"] = ["4", 0]  # a LATENT output into the trajectory input
    status, body = server.queue(p)
    errors = body["node_errors"]["15"]["errors"]
    assert status == 400 and len(errors) == 1, body
    assert errors[0]["extra_info"]["input_name"] == "trajectory"
    assert "LATENT" in str(errors[0]) and "DDISTILL_X0_TRAJECTORY" in str(errors[0]), errors
    assert server.run(hybrid_prompt(seed=4))["status"]["status_str"] == "success"


FRAMES_JS = """([id, n]) => document.querySelectorAll(
    `.ddistill-filmstrip[data-node-id="${id}"] .ddistill-frame`).length === n"""


def test_filmstrip_fills_live_in_the_frontend(server, chromium):
    with open_frontend(chromium, server) as fe:
        assert "DDistill.X0Filmstrip" in fe.extensions(), fe.log()
        fe.load_api_prompt(hybrid_prompt(seed=21))
        fe.queue()
        for node_id, n in (("5", 1), ("6", 3)):  # base: step 1; distilled: steps 2-4
            fe.wait_for(FRAMES_JS, [node_id, n], timeout_s=120)
        steps = fe.eval(
            "() => [...document.querySelectorAll('.ddistill-filmstrip[data-node-id=\"6\"] .ddistill-frame')]"
            ".map(f => [f.dataset.step, f.querySelector('figcaption').textContent,"
            " f.querySelector('img').naturalWidth > 0 || f.querySelector('img').complete])"
        )
        assert steps == [["1", "2 distilled", True], ["2", "3 distilled", True], ["3", "4 distilled", True]]
        summary = fe.wait_for("() => document.querySelector('.ddistill-x0-summary')?.textContent", timeout_s=120)
        assert summary.startswith("mean distance to final (pixel (RMS, 0..1)) by step: 1:")
        # a stock SamplerCustom with Record x̂0 Sampler gets a filmstrip too
        fe.load_api_prompt(stock_prompt(seed=22))
        fe.queue()
        fe.wait_for(FRAMES_JS, ["13", 3], timeout_s=120)
        # removing the node removes its listener and its filmstrip state
        before = fe.eval("() => window.app.extensions.find(e => e.name === 'DDistill.X0Filmstrip').filmstrips.size")
        fe.eval("() => window.app.graph.remove(window.app.graph.getNodeById(13))")
        after = fe.eval("() => window.app.extensions.find(e => e.name === 'DDistill.X0Filmstrip').filmstrips.size")
        assert after == before - 1
        assert not [e for e in fe.errors], fe.log()
