"""The flow and video example workflows (10a-10g) run end to end through the real server on CPU, as built: their
samplers, shift nodes, FluxGuidance, LoRA loaders and latent nodes stay; only what cannot be tiny is replaced.
Tiny model files of each family lie under the workflow's names (``ddistill_dev/models/tiny_workflow_files.py``): Wan and
Krea 2 diffusion models, SD3.5 checkpoints, LoRAs and VAEs load through the stock loaders; the Flux, Z-Image and
Qwen-Image diffusion models (ComfyUI's detection makes them full width) and the text encoders come from fixture
nodes (``fixture_pack/family_nodes.py``). Each method saves its batch and the meter measures it; the hybrid's steps
run on the distilled model's own schedule, the base taking the steps down to the noise-level handover (the
families' ``rule``). Krea 2 (10f, 10g) needs ComfyUI 0.33.0 or later and is skipped on older hosts."""

import json
from math import comb

import comfy.supported_models
import pytest

from ddistill_dev.host.comfy_host import PACK_ROOT, comfyui_version
from ddistill_dev.host.comfy_server import ComfyServer, execution_error
from ddistill_dev.models import tiny_models
from ddistill_dev.models import tiny_workflow_files as tiny
from ddistill_dev.workflows import workflow_families as wf
from ddistill_dev.workflows.workflow_families import (
    KREA2_RAW_FILE,
    KREA2_TURBO_FILE,
    KREA2_TURBO_LORA,
    WAN_HIGH,
    WAN_LORAS,
    WAN_LOW,
)
from runner.workflow import parse_workflow

BATCH, SIZE, FRAMES = 3, 64, 5  # 3 samples (3 meter pairs); 64 px images; 5-frame clips (2 latent frames)
ENCODERS = ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader")
HAS_KREA2 = hasattr(comfy.supported_models, "Krea2")
SHIFT3_8 = [1, 0.955, 0.9, 0.833, 0.75, 0.643, 0.5, 0.3]  # 8 steps, shift 3
MU115_8 = [1, 0.9567, 0.9045, 0.8403, 0.7595, 0.6546, 0.5128, 0.3109]  # 8 steps, Krea 2's mu 1.15
# workflow: (tiny kind of its conditioning, {diffusion model file: fixture kind}, the hybrid's schedule by README,
# its distilled family)
CASES = {
    "10a_zimage_turbo": (
        "zimage",
        {"z_image_bf16.safetensors": "zimage", "z_image_turbo_bf16.safetensors": "zimage"},
        SHIFT3_8,  # Turbo, 8 steps, shift 3
        wf.ZIMAGE_TURBO,
    ),
    "10b_qwen_image_lightning": ("qwen", {"qwen_image_fp8_e4m3fn.safetensors": "qwen"}, SHIFT3_8, wf.QWEN_LIGHTNING),
    "10c_sd35_large_turbo": ("sd3", {}, [1, 0.9, 0.75, 0.5], wf.SD35_TURBO),  # Turbo, 4 steps, shift 3
    "10d_flux_dev_schnell": (
        "flux_schnell",
        {"flux1-dev.safetensors": "flux_dev", "flux1-schnell.safetensors": "flux_schnell"},
        [1, 0.75, 0.5, 0.25],  # schnell, unshifted (dev's own would start 1, .905)
        wf.SCHNELL,
    ),
    "10e_wan22_lightning_t2v": ("wan22", {}, [1, 0.9375, 0.833, 0.625], wf.WAN_LIGHTNING),  # Lightning-high, shift 5
    "10f_krea2_turbo": ("krea2", {}, MU115_8, wf.KREA2_TURBO),
    "10g_krea2_turbo_lora": ("krea2", {}, MU115_8, wf.KREA2_TURBO_LORA_FAMILY),
}
KREA2 = {"10f_krea2_turbo", "10g_krea2_turbo_lora"}


def hybrid_models(name: str) -> list[str]:
    """The model of each of the hybrid's steps: the base for the rule's k steps (10e: its high expert to the
    boundary, then its low expert in a Distilled Continue labelled "base"), the distilled model for the rest."""
    *_, schedule, fam = CASES[name]
    return ["base"] * fam.rule.k + ["distilled"] * (len(schedule) - fam.rule.k)


def write_files(models) -> None:
    """The files the stock loaders of the workflows read, tiny, under the workflows' names (Krea 2's only where this
    ComfyUI has its classes)."""
    vae16 = tiny.taesd16_vae(0)
    tiny.write_vae(models / "vae" / "ae.safetensors", vae16)
    for name in ("qwen_image_vae.safetensors", "wan_2.1_vae.safetensors"):
        tiny.write_vae(models / "vae" / name, tiny.wan_vae(0))
    for i, name in enumerate(("sd3.5_large.safetensors", "sd3.5_large_turbo.safetensors")):
        tiny.write_checkpoint(models / "checkpoints" / name, "sd3", vae16, seed=i + 1)
    for i, name in enumerate((WAN_HIGH, WAN_LOW)):
        tiny.write_unet(models / "diffusion_models" / name, "wan22", seed=i + 1)
    for i, name in enumerate(WAN_LORAS):
        tiny.write_lora(models / "loras" / name, "wan22", seed=i + 3)
    tiny.write_lora(models / "loras" / "Qwen-Image-Lightning-8steps-V1.1.safetensors", "qwen", seed=5)
    if tiny_models.has_family("krea2"):
        for i, name in enumerate((KREA2_RAW_FILE, KREA2_TURBO_FILE)):
            tiny.write_unet(models / "diffusion_models" / name, "krea2", seed=i + 6)
        tiny.write_lora(models / "loras" / KREA2_TURBO_LORA, "krea2", seed=8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_families")
    write_files(base / "models")
    with ComfyServer(base) as s:
        yield s


def tiny_prompt(name: str) -> dict:
    """The API workflow with tiny latents and batch, fixture models and conditioning in place of what cannot be
    tiny (same node ids, so every link stays), and a probe on the hybrid's final trajectory."""
    prompt = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text(encoding="utf-8"))
    kind, unets, *_ = CASES[name]
    for nid, node in list(prompt.items()):
        inputs, cls = node["inputs"], node["class_type"]
        if cls in ENCODERS:
            del prompt[nid]
        elif cls == "CLIPTextEncode":
            node.update(class_type="DDTest_FamilyConditioning", inputs={"kind": kind, "text": inputs["text"]})
        elif cls == "UNETLoader" and inputs["unet_name"] in unets:
            node.update(class_type="DDTest_FamilyModel", inputs={"kind": unets[inputs["unet_name"]], "seed": int(nid)})
        elif cls in ("EmptySD3LatentImage", "EmptyHunyuanLatentVideo"):
            inputs.update(
                width=SIZE, height=SIZE, batch_size=BATCH, **({"length": FRAMES} if "length" in inputs else {})
            )
        elif cls == "DDistill_DiversityMeter" and inputs.get("frames_per_video"):
            inputs["frames_per_video"] = FRAMES  # the decoded frames of one clip
    last = max(
        (nid for nid, n in prompt.items() if n["class_type"] == "DDistill_DistilledContinueSampler"),
        key=int,
    )
    prompt["probe"] = {"class_type": "DDTest_TrajectoryProbe", "inputs": {"trajectory": [last, 1]}}
    return prompt


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                n in KREA2 and not HAS_KREA2,
                reason=f"ComfyUI {comfyui_version()} has no Krea 2 (model class, CLIPLoader type krea2): "
                f"workflow {n} needs ComfyUI {wf.KREA2_COMFYUI} or later",
            ),
        )
        for n in CASES
    ],
)
def test_family_workflow_runs_every_method_on_the_distilled_schedule(server, name):
    prompt = tiny_prompt(name)
    entry = server.run(prompt, timeout=240)
    assert entry["status"]["status_str"] == "success", execution_error(entry)
    video = name.startswith("10e")
    for method in parse_workflow(prompt, name).methods.values():
        images = entry["outputs"][method.image_node]["images"]
        assert len(images) == BATCH * (FRAMES if video else 1), (name, method.name, len(images))
        meter = entry["outputs"][method.meter_node]["ddistill_diversity"][0]["a"]
        assert meter["n"] == BATCH and meter["n_pairs"] == comb(BATCH, 2), (name, method.name, meter)
        assert 0.0 < meter["mean"] <= 2.0, (name, method.name, meter)
    probe = entry["outputs"]["probe"]
    assert probe["sigmas"] == pytest.approx(CASES[name][2], abs=2e-3), (name, probe)
    assert probe["models"] == hybrid_models(name), (name, probe)
