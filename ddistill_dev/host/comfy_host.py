"""Start a real ComfyUI in this process and load the pack as ComfyUI would.

The one place that puts ComfyUI's root on sys.path (ComfyUI imports its own modules by top-level name, from its
root first on sys.path). Used by the integration tests, the scripts and the benchmarks; ``COMFYUI_PATH`` names the
ComfyUI root (default: the one ``scripts/setup_host.py`` made in ``.host/ComfyUI``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from runner.comfy_server import comfyui_root

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_MODULE = "diversity_distillation_pack"
# The ComfyUI that scripts/setup_host.py pins (its COMFYUI_VERSION) and that workflows/ is built against; the suite
# also runs on ComfyUI 0.33.0 (README: "Tested ComfyUI versions").
PINNED_COMFYUI = "0.3.75"


def comfyui_version(root: Path | None = None) -> str:
    """The version of the ComfyUI at ``root`` (its ``comfyui_version.py``), without importing it."""
    path = Path(root or comfyui_root()) / "comfyui_version.py"
    text = path.read_text() if path.exists() else ""
    return next((line.split("=")[1].strip().strip("\"'") for line in text.splitlines() if "__version__" in line), "?")


def boot(
    extra_args: tuple[str, ...] = (),
    cpu: bool = True,
    root: Path | None = None,
    import_nodes: bool = True,
    dynamic_vram: bool = False,
) -> Path:
    """Import ComfyUI in-process (``--cpu`` unless ``cpu=False``; idempotent); returns its root. ``dynamic_vram``:
    start Dynamic VRAM as ComfyUI 0.33's main.py does (``_start_dynamic_vram``)."""
    root = Path(root).resolve() if root is not None else comfyui_root()
    if "nodes" in sys.modules and hasattr(sys.modules["nodes"], "NODE_CLASS_MAPPINGS"):
        return root
    if not (root / "nodes.py").exists():
        raise RuntimeError(f"no ComfyUI at {root}; run python3 scripts/setup_host.py first")
    sys.argv = [sys.argv[0], *(["--cpu"] if cpu else []), *extra_args]
    sys.path.insert(0, str(root))
    os.chdir(root)
    import comfy.options

    comfy.options.enable_args_parsing()
    import utils.extra_config  # noqa: F401  (before `import nodes`, or `utils` resolves to another package)

    if dynamic_vram:
        _start_dynamic_vram()

    if import_nodes:
        import nodes  # noqa: F401

    return root


def _start_dynamic_vram() -> None:
    """What ComfyUI 0.33's main.py does before its server starts, so that in-process loaders make
    ``ModelPatcherDynamic``: its CUDA allocator choice (``cuda_malloc``), comfy-aimdo initialised before CUDA, then
    on the torch devices, then ``CoreModelPatcher`` and ``memory_management.aimdo_enabled``."""
    import cuda_malloc  # noqa: F401  (sets PYTORCH_CUDA_ALLOC_CONF before torch starts CUDA, as main.py)
    from comfy.cli_args import args, enables_dynamic_vram

    try:
        import comfy_aimdo.control as aimdo
    except ImportError as e:
        raise RuntimeError(f"Dynamic VRAM needs ComfyUI 0.33+ with comfy-aimdo installed ({e})") from None
    if not enables_dynamic_vram():
        raise RuntimeError("Dynamic VRAM is switched off by this ComfyUI's arguments (--cpu, --highvram, ...)")
    headroom = None if args.reserve_vram is None else int(args.reserve_vram * 1024**3)
    try:
        aimdo.init(simple_vram_headroom=headroom, nvml_pressure=not args.disable_nvml_pressure)
    except TypeError:  # older comfy-aimdo protocols
        aimdo.init(simple_vram_headroom=headroom)
    import comfy.memory_management
    import comfy.model_management as mm
    import comfy.model_patcher

    devices = mm.get_all_torch_devices()
    if not aimdo.init_devices((d.index, int(args.vram_headroom * 1024**3)) for d in devices):
        raise RuntimeError("comfy-aimdo did not start on this machine's devices (Dynamic VRAM needs an NVIDIA GPU)")
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    comfy.memory_management.aimdo_enabled = True


def load_pack():
    """Import the pack under a fixed module name, as ComfyUI imports a custom node folder."""
    boot()
    return load_node_folder(PACK_ROOT, PACK_MODULE)


def load_node_folder(root: Path, name: str):
    """Import the custom node folder ``root`` as module ``name`` (once), as ComfyUI's ``load_custom_node`` imports a
    folder of ``custom_nodes``; its NODE_CLASS_MAPPINGS are not registered with ComfyUI."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(root) / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
