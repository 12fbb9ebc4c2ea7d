"""Start a real ComfyUI in this process and load the pack as ComfyUI would.

The one place that puts ComfyUI's root on sys.path (in-process ComfyUI needs it; HOST.md). Used by the
integration tests, the scripts and the benchmarks; ``COMFYUI_PATH`` names the ComfyUI root (default: the one
``scripts/setup_host.py`` made in ``.host/ComfyUI``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_MODULE = "diversity_distillation_pack"
# The ComfyUI that scripts/setup_host.py pins (its COMFYUI_VERSION) and that workflows/ is built against; the suite
# also runs on ComfyUI 0.33.0 (README: "Tested ComfyUI versions").
PINNED_COMFYUI = "0.3.75"


def comfyui_root() -> Path:
    return Path(os.environ.get("COMFYUI_PATH") or PACK_ROOT / ".host" / "ComfyUI").resolve()


def comfyui_version(root: Path | None = None) -> str:
    """The version of the ComfyUI at ``root`` (its ``comfyui_version.py``), without importing it."""
    path = Path(root or comfyui_root()) / "comfyui_version.py"
    text = path.read_text() if path.exists() else ""
    return next((line.split("=")[1].strip().strip("\"'") for line in text.splitlines() if "__version__" in line), "?")


def boot(
    extra_args: tuple[str, ...] = (), cpu: bool = True, root: Path | None = None, import_nodes: bool = True
) -> Path:
    """Import ComfyUI in-process (``--cpu`` unless ``cpu=False``; idempotent); returns its root."""
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
    import utils.extra_config  # noqa: F401  (must come before `import nodes`, see HOST.md)

    if import_nodes:
        import nodes  # noqa: F401

    return root


def load_pack():
    """Import the pack under a fixed module name, as ComfyUI imports a custom node folder."""
    boot()
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(
        PACK_MODULE, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module
