"""The demo pair through the real ComfyUI server: stock KSampler -> VAE Decode -> Save Image on the base,
the pack's hybrid on the pair, and the pair check against a (tiny) SDXL model."""

import io

import pytest
from PIL import Image

from ddistill_dev.gpu import runner_graphs as rg
from ddistill_dev.host.comfy_server import ComfyServer, execution_error


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_demo")) as s:
        yield s


def demo_nodes(batch=2, size=32, empty="EmptyChromaRadianceLatentImage"):
    return {"1": rg.demo_loader(), "2": rg.demo_prompt(), "3": rg.empty_latent(size, batch, empty)}


def saved_images(server, entry, node="9"):
    out = []
    for img in entry["outputs"][node]["images"]:
        body = server.get(f"/view?filename={img['filename']}&subfolder={img['subfolder']}&type={img['type']}")
        out.append(Image.open(io.BytesIO(body)))
    return out


def test_loader_listed(server):
    info = server.object_info()
    node = info["DDistill_DemoModelLoader"]
    assert node["display_name"] == "Demo Digit Models (diversity distillation)"
    assert node["output"] == ["MODEL", "MODEL", "VAE"]
    assert node["output_name"] == ["base_model", "distilled_model", "vae"]
    assert info["DDistill_DemoPrompt"]["output"] == ["CONDITIONING"]


def test_stock_ksampler_vae_decode_save_image(server):
    g = demo_nodes(size=256, empty="EmptyLatentImage")  # stock: ComfyUI divides by 8 -> 32x32
    g["4"] = rg.ksampler(["1", 0], ["2", 0], ["2", 0], ["3", 0], seed=5, steps=20)
    g["5"] = rg.vae_decode(["4", 0], ["1", 2])
    g["9"] = rg.save_image(["5", 0], "demo_base")
    entry = server.run(g)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    images = saved_images(server, entry)
    assert len(images) == 2 and all(im.size == (32, 32) for im in images)


def test_hybrid_on_the_pair(server):
    g = demo_nodes(batch=3)
    g.update(rg.hybrid(("4", "5"), ["1", 0], ["1", 1], ["2", 0], ["2", 0], ["3", 0], seed=1))
    g["6"] = rg.vae_decode(["5", 0], ["1", 2])
    g["9"] = rg.save_image(["6", 0], "demo_hybrid")
    entry = server.run(g)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    assert len(saved_images(server, entry)) == 3


def test_demo_base_with_sdxl_distilled_is_refused(server):
    g = demo_nodes(batch=1)
    g["7"] = rg.tiny_model(2)
    g["8"] = rg.tiny_conditioning()
    g["4"] = rg.base_first_step(["1", 0], ["2", 0], ["2", 0], ["3", 0], seed=1)
    g["5"] = rg.distilled_continue(["7", 0], ["8", 0], ["8", 0], ["4", 0])
    g["9"] = rg.save_latent(["5", 0], "bad_pair")
    entry = server.run(g)
    err = execution_error(entry)
    assert entry["status"]["status_str"] == "error" and err is not None
    assert (
        "DemoDigitModel" in err["exception_message"]
        and "DemoDigitLatent" in err["exception_message"]
        and "SDXL" in err["exception_message"]
    )
    assert err["exception_type"].endswith("PairError")
    # the server survives and still runs the demo
    test_stock_ksampler_vae_decode_save_image(server)


def test_wrong_latent_size_through_server(server):
    g = demo_nodes(batch=1, size=64)
    g["4"] = rg.ksampler(
        ["1", 1], ["2", 0], ["2", 0], ["3", 0], seed=5, steps=4, sampler_name="lcm", scheduler="sgm_uniform"
    )
    g["9"] = rg.save_latent(["4", 0], "bad_size")
    entry = server.run(g)
    err = execution_error(entry)
    assert err is not None and "EmptyChromaRadianceLatentImage of 32x32" in err["exception_message"]


def test_demo_job_end_to_end(server, tmp_path):
    """The main job's steps (runner over the demo workflow, then the report) on a few seeds."""
    import math

    from demo.report import METHODS
    from demo.run_demo import prepare, run_job, write_report

    assert prepare(tmp_path, seeds=4, base_steps=8, fresh=False).startswith("new run")
    rc, runner_out = run_job(server.url, tmp_path, seeds=4)
    assert rc == 0, (runner_out / "summary.md").read_text() if (runner_out / "summary.md").exists() else rc
    data = write_report(tmp_path, runner_out, {"seeds": 4, "base_steps": 8, "seconds": 0, "cpus": 1, "runner_rc": rc})
    assert list(data["stats"]) == METHODS and list(data["meter"]) == METHODS
    for m in METHODS:
        assert data["meter"][m]["n"] == 4 and math.isfinite(data["meter"][m]["mean"]) and data["meter"][m]["ci"]
        assert sum(data["stats"][m]["counts"]) == 4
    assert any("x̂0 preview grid" in k for k in data["links"])
    text = (tmp_path / "REPORT.md").read_text()
    assert "**Verdict**" in text and all(f"| {m} |" in text for m in METHODS)

    # a rerun with the same settings reuses every finished sample: no new files, the same numbers
    files = sorted(p.relative_to(tmp_path) for p in runner_out.rglob("*.png"))
    assert "reusing its finished samples" in prepare(tmp_path, seeds=4, base_steps=8, fresh=False)
    rc, _ = run_job(server.url, tmp_path, seeds=4)
    again = write_report(tmp_path, runner_out, {"seeds": 4, "base_steps": 8, "seconds": 0, "cpus": 1, "runner_rc": rc})
    assert rc == 0 and sorted(p.relative_to(tmp_path) for p in runner_out.rglob("*.png")) == files
    assert again["meter"] == data["meter"]
    # other settings replace the previous run instead of piling files up
    assert "replacing the previous run" in prepare(tmp_path, seeds=3, base_steps=8, fresh=False)
    assert not runner_out.exists()
