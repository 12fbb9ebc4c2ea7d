"""Random-valued DreamSim weights in the dreamsim package's exact cache layout (no download, no ComfyUI).

``write_dreamsim_cache(folder, "ensemble")`` writes what the package's ``dreamsim()`` reads:
- the checkpoint zip's content: ``dino_vitb16_pretrain.pth`` ({"student": DINO head}), ``{open_,}clip_vitb16_
  pretrain.pth.tar`` ({"state_dict": ViT-B/16 with LayerNorm pos_drop + "proj"}), ``ensemble_lora/`` (peft
  adapter: adapter_config.json + adapter weights, written by peft's own save_pretrained);
- what torch.hub fetches for DINO: ``facebookresearch_dino_main/`` with upstream's top-level modules and imports
  (``hubconf.py`` -> ``import vision_transformer`` -> ``from utils import trunc_normal_``, a top-level
  ``utils.py``; the entry point ``dino_vitb16`` builds the package's own ViT-B/16 and reads its checkpoint through
  ``torch.hub.load_state_dict_from_url``, as the real hub repository does) and
  ``checkpoints/dino_vitbase16_pretrain.pth``.
The LoRA B matrices are random (peft initialises them to zero), so the adapter changes the distances.
Used by tests/integration/diversity/test_diversity_dreamsim.py and benchmarks/bench_diversity.py.
"""

from __future__ import annotations

import functools
import json
import os

import torch

from ddistill.embedding import HubGuard

LORA = {"r": 16, "lora_alpha": 0.5, "lora_dropout": 0.3, "bias": "none", "target_modules": ["qkv"]}
# Stand-ins for the files of github.com/facebookresearch/dino (branch main) that torch.hub runs, with upstream's
# top-level module names and imports: hubconf.py does `import vision_transformer`, whose code does
# `from utils import trunc_normal_` from the repository's top-level utils.py. Inside ComfyUI the name `utils` is
# ComfyUI's own package, which is exactly the clash real users hit. The network itself is the dreamsim package's
# copy of DINO's ViT (same state-dict keys), built with random weights.
HUB_REPO = "facebookresearch_dino_main"
HUBCONF = '''"""Test stand-in for facebookresearch/dino hubconf.py."""
import torch

import vision_transformer as vits

dependencies = ["torch"]


def dino_vitb16(pretrained=True, **kwargs):
    model = vits.vit_base(patch_size=16, num_classes=0, **kwargs)
    if pretrained:
        url = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
        model.load_state_dict(torch.hub.load_state_dict_from_url(url=url, map_location="cpu"), strict=True)
    return model
'''
VISION_TRANSFORMER = '''"""Test stand-in for facebookresearch/dino vision_transformer.py."""
from dreamsim.feature_extraction.vision_transformer import vit_base as _package_vit_base
from utils import trunc_normal_  # upstream's import, meant to resolve to the repository's own utils.py


def vit_base(patch_size=16, **kwargs):
    model = _package_vit_base(patch_size=patch_size, **kwargs)
    trunc_normal_(model.pos_embed, std=0.02)  # initialisation, as upstream (the checkpoint then replaces it)
    return model
'''
UTILS = '''"""Test stand-in for facebookresearch/dino utils.py (a top-level module called utils)."""
import torch


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return torch.nn.init.trunc_normal_(tensor, mean, std, a, b)
'''
HUB_FILES = {"hubconf.py": HUBCONF, "vision_transformer.py": VISION_TRANSFORMER, "utils.py": UTILS}


def write_dino_hub(repo_dir: str, files: dict | None = None) -> str:
    """Writes the stand-in hub repository into ``repo_dir`` (``files``: name -> text, replacing or adding files,
    e.g. a broken ``utils.py``)."""
    os.makedirs(repo_dir, exist_ok=True)
    for name, text in {**HUB_FILES, **(files or {})}.items():
        with open(os.path.join(repo_dir, name), "w") as f:
            f.write(text)
    return repo_dir


@functools.lru_cache(maxsize=None)
def _vit_shapes(patch: int) -> tuple:
    from dreamsim.feature_extraction.vision_transformer import vit_base

    return tuple((k, v.shape) for k, v in vit_base(patch_size=patch, num_classes=0).state_dict().items())


def _vit_state(patch: int, gen: torch.Generator, clip_style: bool) -> dict:
    shapes = dict(_vit_shapes(patch))
    if clip_style:  # the package replaces pos_drop by a LayerNorm for the CLIP-as-DINO backbones
        shapes.update({"pos_drop.weight": torch.Size([768]), "pos_drop.bias": torch.Size([768])})
    sd = {}
    for k, shape in shapes.items():
        random = len(shape) > 1 or "bias" in k
        sd[k] = torch.randn(shape, generator=gen) * 0.02 if random else torch.ones(shape)  # LayerNorm gains
    if clip_style:
        sd["proj"] = torch.randn(768, 512, generator=gen) * 0.05
    return sd


def _write_backbones(folder: str, dreamsim_type: str, gen: torch.Generator) -> None:
    """Backbone files, kept where they exist (several types share them, as in the package's folder)."""
    from dreamsim.feature_extraction.vision_transformer import DINOHead

    has_dino = os.path.exists(os.path.join(folder, "dino_vitb16_pretrain.pth"))
    if dreamsim_type in ("ensemble", "dino_vitb16", "dino_vitb16_patch") and not has_dino:
        write_dino_hub(os.path.join(folder, HUB_REPO))
        os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
        torch.save(_vit_state(16, gen, False), os.path.join(folder, "checkpoints", "dino_vitbase16_pretrain.pth"))
        head = DINOHead(768, 2048)
        student = {
            f"module.head.mlp.{i}.{p}": torch.randn(getattr(head.mlp[i], p).shape, generator=gen) * 0.02
            for i in (0, 2, 4)
            for p in ("weight", "bias")
        }
        student["module.head.last_layer.weight"] = torch.randn(head.last_layer.weight.shape, generator=gen)
        torch.save({"student": student}, os.path.join(folder, "dino_vitb16_pretrain.pth"))
    if dreamsim_type == "ensemble":
        for name in ("clip_vitb16", "open_clip_vitb16"):
            torch.save({"state_dict": _vit_state(16, gen, True)}, os.path.join(folder, f"{name}_pretrain.pth.tar"))
    if dreamsim_type == "clip_vitb32":
        torch.save({"state_dict": _vit_state(32, gen, True)}, os.path.join(folder, "clip_vitb32_pretrain.pth.tar"))


def write_dreamsim_cache(folder: str, dreamsim_type: str = "ensemble", seed: int = 0) -> str:
    """Writes random weights for ``dreamsim_type`` (ensemble, dino_vitb16, dino_vitb16_patch, clip_vitb32)."""
    from dreamsim.config import dreamsim_args
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, get_peft_model

    os.makedirs(folder, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    _write_backbones(folder, dreamsim_type, gen)
    with HubGuard(folder):  # PerceptualModel loads the DINO backbone through torch.hub (see HubGuard)
        model = PerceptualModel(
            **dreamsim_args["model_config"][dreamsim_type], device="cpu", load_dir=folder, normalize_embeds=True
        )
    peft_model = get_peft_model(model, LoraConfig(**LORA))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    if dreamsim_type == "ensemble":
        tag = "ensemble"
    elif dreamsim_type.endswith("_patch"):
        tag = dreamsim_type
    else:
        tag = f"{dreamsim_type}_single"
    out = os.path.join(folder, f"{tag}_lora")
    peft_model.save_pretrained(out)
    with open(os.path.join(out, "adapter_config.json")) as f:
        config = json.load(f)
    assert (config["r"], config["lora_alpha"]) == (LORA["r"], LORA["lora_alpha"]), config
    return folder


# ---------------------------------------------------------------- synthetic test images (IMAGE [N, H, W, 3])
def scene(kind: str, size: int = 160, hue: tuple = (0.9, 0.3, 0.2)) -> torch.Tensor:
    """A simple structured picture [H, W, 3] in [0, 1]: 'disc', 'stripes', 'checker', 'ring', 'diagonal'."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r = (x**2 + y**2).sqrt()
    masks = {
        "disc": (r < 0.55).float(),
        "stripes": ((x * 6).floor() % 2 == 0).float(),
        "checker": (((x * 4).floor() + (y * 4).floor()) % 2 == 0).float(),
        "ring": ((r > 0.4) & (r < 0.7)).float(),
        "diagonal": (x + y > 0).float(),
    }
    m = masks[kind].unsqueeze(-1)
    fg = torch.tensor(hue).view(1, 1, 3)
    bg = torch.tensor([0.1, 0.15, 0.35]).view(1, 1, 3) * (1 - 0.3 * (y.unsqueeze(-1) + 1) / 2)
    return m * fg + (1 - m) * bg


def near_duplicate(img: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same picture shifted by 2-4 pixels, 5% brighter and slightly tinted (what a collapsed mode looks like:
    same composition, small changes). Pixel noise is left out on purpose: ImageNet CNN features react to it
    strongly on flat synthetic pictures (see the README's note on the offline backend)."""
    shift = 2 + seed % 3
    tint = torch.tensor([1.0, 0.98, 1.02]).view(1, 1, 3)
    return (torch.roll(img, shifts=(shift, shift), dims=(0, 1)) * 1.05 * tint).clamp(0, 1)
