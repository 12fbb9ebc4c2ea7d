"""Diversity Meter node: in process (execute) and through the real ComfyUI server on 127.0.0.1."""

import importlib
import json

import pytest
import torch

from ddistill.protocol import METER_UI_KEY
from ddistill_dev.host.comfy_server import ComfyServer, execution_error
from ddistill_dev.models.dreamsim_fixtures import near_duplicate, scene

KINDS = ["disc", "stripes", "checker", "ring", "diagonal"]


@pytest.fixture(scope="module")
def meter(pack):
    return importlib.import_module(pack.__name__ + ".nodes.meter_nodes")


@pytest.fixture(scope="module")
def diverse():
    return torch.stack([scene(k, 128) for k in KINDS])


@pytest.fixture(scope="module")
def collapsed(diverse):
    return torch.stack([near_duplicate(diverse[0], seed=i) for i in range(5)])


def run(meter, images, **kw):
    kw.setdefault("backend", meter.EFFNET_BACKEND)
    return meter.DiversityMeter.execute(images, **kw)


def test_one_batch(meter, diverse):
    out = run(meter, diverse)
    mean, report, heatmap, mean_b, diff = out.result
    payload = out.ui[METER_UI_KEY][0]
    assert isinstance(mean, float) and 0.2 < mean < 1.0 and (mean_b, diff) == (0.0, 0.0)
    assert heatmap.shape == (1, 512, 510, 3)  # 5 cells of 102 px
    assert "N = 5 images, 10 pairs" in report and "95% interval [" in report and "NOT DreamSim" in report
    a = payload["a"]
    assert a["mean"] == mean and a["n_pairs"] == 10 and a["ci"][0] < mean < a["ci"][1]
    assert payload["b"] is None and payload["backend"] == meter.EFFNET_BACKEND
    json.dumps(payload, allow_nan=False)  # the canvas gets strict JSON
    assert out.ui["images"][0]["type"] == "temp"  # heatmap preview on the node


def test_two_batches_compare(meter, diverse, collapsed):
    out = run(meter, collapsed, images_b=diverse)
    mean_a, report, heatmap, mean_b, diff = out.result
    payload = out.ui[METER_UI_KEY][0]
    assert mean_a < mean_b and diff == pytest.approx(mean_b - mean_a)
    assert payload["difference_ci"][0] > 0  # the collapsed batch is clearly less diverse
    assert "B - A: +" in report and report.count("N = 5 images, 10 pairs") == 2
    assert heatmap.shape == (1, 512, 510 + 16 + 510, 3)


def test_same_seed_same_result_and_order_free(meter, diverse):
    a = run(meter, diverse, bootstrap_seed=4)
    b = run(meter, diverse[torch.tensor([4, 2, 0, 3, 1])], bootstrap_seed=4)
    assert a.result[0] == pytest.approx(b.result[0], abs=1e-6)
    assert a.ui[METER_UI_KEY][0]["a"]["ci"] == pytest.approx(b.ui[METER_UI_KEY][0]["a"]["ci"], abs=1e-6)


def test_alpha_channel_gives_the_rgb_result(meter, diverse):
    rgba = torch.cat([diverse, torch.full((5, 128, 128, 1), 0.5)], dim=-1)
    assert run(meter, rgba).result[0] == pytest.approx(run(meter, diverse).result[0], abs=1e-6)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda d: d[:1], "images: diversity needs at least 2 images of one prompt, got 1; set batch_size >= 2"),
        (lambda d: d[:0], "images: the batch is empty"),
        (
            lambda d: torch.where(torch.arange(5).view(5, 1, 1, 1) == 2, float("nan"), d),
            r"images: image\(s\) 2 \(0-based\) contain NaN or inf",
        ),
    ],
)
def test_bad_input(meter, diverse, make, needle):
    with pytest.raises(ValueError, match=needle):
        run(meter, make(diverse))


def test_bad_second_batch_is_named(meter, diverse):
    with pytest.raises(ValueError, match="images_b: diversity needs at least 2 images"):
        run(meter, diverse, images_b=diverse[:1])


def test_missing_dreamsim_weights_offline(meter, diverse):
    import folder_paths

    with pytest.raises(RuntimeError) as err:
        run(meter, diverse, backend="dreamsim_ensemble")
    folder = folder_paths.get_folder_paths("dreamsim")[0]  # registered at first use, not at import
    assert folder.endswith("models/dreamsim") and folder.startswith(folder_paths.models_dir)
    msg = str(err.value)
    assert f"DreamSim 'ensemble' weights are missing from {folder}" in msg
    for f in (
        "dino_vitb16_pretrain.pth",
        "clip_vitb16_pretrain.pth.tar",
        "open_clip_vitb16_pretrain.pth.tar",
        "ensemble_lora/adapter_config.json",
        "facebookresearch_dino_main/hubconf.py",
        "checkpoints/dino_vitbase16_pretrain.pth",
    ):
        assert f"{folder}/{f}" in msg
    assert "allow_download" in msg and "dreamsim_ensemble_checkpoint.zip" in msg


# ---------------------------------------------------------------- through the real server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfy_meter")) as s:
        yield s


def meter_prompt(colors=(0xFF0000, 0x0000FF), backend=None, batch=2):
    """Core nodes only: EmptyImage batches of plain colours joined by ImageBatch, then the meter."""
    from ddistill_dev.gpu import runner_graphs as rg

    empty = {"width": 64, "height": 64}
    return {
        "1": rg.node("EmptyImage", {**empty, "batch_size": batch, "color": colors[0]}),
        "2": rg.node("EmptyImage", {**empty, "batch_size": 1, "color": colors[1]}),
        "3": rg.node("ImageBatch", {"image1": ["1", 0], "image2": ["2", 0]}),
        "4": rg.node(
            "DDistill_DiversityMeter",
            {"images": ["3", 0], "backend": backend or "efficientnet_lite0 (ImageNet, not DreamSim)"},
        ),
    }


def test_server_schema(server):
    info = server.object_info()["DDistill_DiversityMeter"]
    assert info["display_name"] == "Diversity Meter"
    assert info["category"].startswith("sampling/diversity distillation")
    options = info["input"]["required"]["backend"]
    assert options[1]["default"] == "efficientnet_lite0 (ImageNet, not DreamSim)"
    assert "dreamsim_ensemble" in options[0] or "dreamsim_ensemble" in json.dumps(options)
    assert info["output"] == ["FLOAT", "STRING", "IMAGE", "FLOAT", "FLOAT"]


def test_server_runs_and_reports(server):
    entry = server.run(meter_prompt())
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    out = entry["outputs"]["4"]
    payload = out["ddistill_diversity"][0]
    a = payload["a"]
    assert (a["n"], a["n_pairs"]) == (3, 3)
    assert a["min_pair"][:2] == [0, 1] and a["min_pair"][2] < 1e-5  # the two identical red images
    assert a["max_pair"][2] > 0.05
    image = out["images"][0]
    png = server.get(f"/view?filename={image['filename']}&type={image['type']}&subfolder={image['subfolder']}")
    assert png[:4] == b"\x89PNG"


def test_server_survives_bad_input(server):
    one_image = meter_prompt()
    one_image["4"]["inputs"]["images"] = ["2", 0]
    entry = server.run(one_image)
    err = execution_error(entry)
    assert entry["status"]["status_str"] == "error"
    assert "images: diversity needs at least 2 images" in err["exception_message"]
    entry = server.run(meter_prompt(backend="dreamsim_ensemble"))
    assert "DreamSim 'ensemble' weights are missing" in execution_error(entry)["exception_message"]
    assert "ensemble_lora/adapter_config.json" in execution_error(entry)["exception_message"]
    entry = server.run(meter_prompt(colors=(0x00FF00, 0xFFFF00)))  # the server still works
    assert entry["status"]["status_str"] == "success", execution_error(entry)


def test_user_interrupt_stops_between_chunks(meter, diverse):
    import comfy.model_management as mm

    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(meter, diverse, chunk_size=2)
    finally:
        mm.interrupt_current_processing(False)
    assert run(meter, diverse).result[0] > 0  # runs again afterwards


def test_video_mode_one_sample_per_clip(meter, diverse):
    """3 clips of 9 frames: 3 samples, 3 pairs, the same number for any frame count; 5-D IMAGE or frames_per_video."""
    clips = diverse[:3]  # [3, H, W, 3]: each clip repeats one picture
    frames = clips[:, None].expand(-1, 9, -1, -1, -1)
    as_images = run(meter, clips).result[0]
    five_d = run(meter, frames.contiguous())
    flat = run(meter, frames.reshape(27, *frames.shape[2:]), frames_per_video=9)
    payload = five_d.ui[METER_UI_KEY][0]
    assert payload["a"]["n"] == 3 and payload["a"]["n_pairs"] == 3
    assert five_d.result[0] == pytest.approx(as_images, abs=1e-5) and flat.result[0] == pytest.approx(
        as_images, abs=1e-5
    )
    assert "videos of 9 frames" in five_d.result[1]
    with pytest.raises(ValueError, match="images: 27 frames do not split into videos of 4 frames"):
        run(meter, frames.reshape(27, *frames.shape[2:]), frames_per_video=4)
    with pytest.raises(ValueError, match="images: diversity needs at least 2 videos of one prompt, got 1"):
        run(meter, frames[:1].contiguous())
