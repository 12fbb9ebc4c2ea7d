"""The tests' ComfyUI server: the pack's local server (``runner.comfy_server``) with the test-only fixture pack
(tiny models) linked beside the pack unless ``with_fixture_pack=False``, and readers of what a server did."""

from __future__ import annotations

import re
from pathlib import Path

from runner.comfy_server import PACK_ROOT, free_port
from runner.comfy_server import ComfyServer as LocalServer

FIXTURE_PACK = PACK_ROOT / "tests" / "integration" / "fixture_pack"  # test-only nodes (tiny models), never shipped
__all__ = ["ComfyServer", "FIXTURE_PACK", "execution_error", "free_port", "weight_loads"]


class ComfyServer(LocalServer):
    def __init__(self, base_dir: Path, with_fixture_pack: bool = True, **kwargs):
        packs = {"ddistill_test_fixtures": FIXTURE_PACK} if with_fixture_pack else {}
        super().__init__(base_dir, extra_packs=packs, **kwargs)


def execution_error(entry: dict) -> dict | None:
    """The execution_error message of a history entry, or None."""
    for kind, msg in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return msg
    return None


def weight_loads(log_text: str) -> int:
    """How many times ComfyUI loaded model weights in a server log: its own "loaded completely / partially" lines
    (each unpatch + re-patch ends with one; 0.33 colours them and prefixes "[INFO] ")."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", log_text)
    return sum(
        re.sub(r"^\[\w+\] ", "", line).startswith(("loaded completely", "loaded partially"))
        for line in plain.splitlines()
    )
