"""scripts/gpu_workflows.py on CPU, where it can be checked without writing gigabytes: its full-size architecture
configs are what ComfyUI's own model detection reads back from such a state dict (built on the meta device), its
LoRA writer patches every attention projection through ComfyUI's LoRA loader, and its VAE loads and decodes."""

import pytest
import torch

from ddistill_dev.gpu import gpu_workflows as gw
from ddistill_dev.models import tiny_models


@pytest.mark.parametrize("kind", ["SDXL", "SD20", "PixArtAlpha"])
def test_full_size_configs_are_what_comfyui_detects(pack, kind):
    import comfy.model_detection
    import comfy.supported_models as sm

    cls, cfg = {
        "SDXL": (sm.SDXL, gw.SDXL_UNET),
        "SD20": (sm.SD20, gw.SD21_UNET),
        "PixArtAlpha": (sm.PixArtAlpha, gw.PIXART_1024),
    }[kind]
    model = cls(dict(cfg)).get_model({}, device="meta")
    sd = dict(model.diffusion_model.state_dict())
    if kind == "PixArtAlpha":  # a diffusion-model file (UNETLoader): no prefix, plus the released file's buffers
        sd.update(gw.pixart_extra_keys())
        prefix = ""
    else:  # inside a checkpoint
        sd, prefix = {"model.diffusion_model." + k: v for k, v in sd.items()}, "model.diffusion_model."
    detected = comfy.model_detection.model_config_from_unet(sd, prefix)
    assert type(detected).__name__ == kind
    assert {k: detected.unet_config.get(k) for k in cfg} == cfg
    params = sum(v.numel() for k, v in sd.items() if k != "pos_embed")
    assert params == pytest.approx({"SDXL": 2.567e9, "SD20": 0.866e9, "PixArtAlpha": 0.612e9}[kind], rel=1e-3)


def test_lora_file_patches_every_attention_projection(pack, tmp_path):
    import comfy.lora
    import comfy.sd
    import comfy.utils

    model = tiny_models.make_model("sdxl", 0)
    gw.write_lora(tmp_path / "lora.safetensors", model, seed=1)
    lora = comfy.utils.load_torch_file(str(tmp_path / "lora.safetensors"))
    patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model.model, {}))
    attention = [k for k, v in model.model.state_dict().items() if ".attn" in k and ".to_" in k and v.ndim == 2]
    assert sorted(patches) == sorted(attention) and len(lora) == 3 * len(attention)
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0.0)
    key = attention[0]
    before = model.model.state_dict()[key].clone()
    patched.patch_model()
    try:
        assert not torch.equal(patched.model.state_dict()[key], before)
    finally:
        patched.unpatch_model()


def test_vae_file_loads_and_decodes(pack, tmp_path):
    import comfy.sd
    import comfy.utils

    gw.write_vae(tmp_path / "vae.safetensors", seed=3)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(tmp_path / "vae.safetensors")))
    image = vae.decode(torch.randn(1, 4, 8, 8)).detach()
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.0


def test_dry_run_lists_every_family_file_with_its_size(pack, tmp_path, capsys):
    import comfy.supported_models

    from ddistill_dev.models import random_families as rf
    from ddistill_dev.workflows.workflow_catalog import EXPERIMENTS

    krea2 = hasattr(comfy.supported_models, "Krea2")  # Krea 2's files (10f, 10g) need its classes: ComfyUI 0.33+
    exps = [e for e in EXPERIMENTS if e.name.startswith("10") and (krea2 or not set(e.files) & set(rf.KREA2))]
    gw.dry_run(tmp_path, exps)
    out = capsys.readouterr().out
    for name in {f for e in exps for f in e.files} - {"t5xxl_fp16.safetensors"}:
        size = rf.spec_bytes(rf.spec_of(name)) / 2**30
        assert f"{size:7.2f}  to write, random_families" in next(line for line in out.splitlines() if name in line)
    assert "10d_flux_dev_schnell: 53.7 GiB (5 files)" in out


def test_per_workflow_deletes_only_what_no_later_workflow_needs(pack, tmp_path, monkeypatch):
    """Workflow by workflow: the files it wrote go once no later workflow needs them; a file that was there before
    and is not ours (no random-weights mark) stays."""
    import argparse
    import types

    from ddistill_dev.models import random_families as rf

    exps = [
        types.SimpleNamespace(name="10a", files=("ae.safetensors", "z_image_bf16.safetensors", "clip_l.safetensors")),
        types.SimpleNamespace(name="10d", files=("ae.safetensors", "flux1-dev.safetensors")),
    ]
    (tmp_path / "models" / "text_encoders").mkdir(parents=True)
    gw.model_path(tmp_path, "clip_l.safetensors").write_bytes(b"a real file")
    tiny = {"w": rf.TensorSpec((2, 2), torch.bfloat16)}

    def fake_write(cmd, **_):
        name = cmd[cmd.index("--only") + 1]
        for f in next(e for e in exps if e.name == name).files:
            if not gw.model_path(tmp_path, f).exists():
                rf.write_spec(gw.model_path(tmp_path, f), tiny, 0, metadata={"ddistill": "random"})
        return types.SimpleNamespace(returncode=0)

    seen = []

    def fake_run(root, base, names, *a):
        seen.append(
            {f for f in ("ae", "z_image_bf16", "flux1-dev") if gw.model_path(base, f + ".safetensors").exists()}
        )
        return [{"workflow": names[0], "status": "success", "seconds": 1.0}]

    monkeypatch.setattr(gw.subprocess, "run", fake_write)
    monkeypatch.setattr(gw, "run_workflows", fake_run)
    args = argparse.Namespace(cpu=True, force=False, keep=False, batch=2, python="python", timeout=10)
    results = gw.run_per_workflow(args, tmp_path, tmp_path, exps)
    assert [r["status"] for r in results] == ["success", "success"]
    assert seen == [{"ae", "z_image_bf16"}, {"ae", "flux1-dev"}]  # z_image gone before 10d; ae kept for it
    assert not any(gw.model_path(tmp_path, f).exists() for f in ("ae.safetensors", "flux1-dev.safetensors"))
    assert gw.model_path(tmp_path, "clip_l.safetensors").read_bytes() == b"a real file"
    assert gw.is_ours(tmp_path / "x.safetensors") is False
