"""The tests' and benchmarks' ComfyUI server: the pack's local server (``runner.comfy_server``) with the test-only
fixture pack (tiny models) linked beside the pack unless ``with_fixture_pack=False``, a prompt queued and waited for,
and readers of what a server did."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from runner.comfy_server import PACK_ROOT, free_port
from runner.comfy_server import ComfyServer as LocalServer

FIXTURE_PACK = PACK_ROOT / "tests" / "integration" / "fixture_pack"  # test-only nodes (tiny models), never shipped
__all__ = ["ComfyServer", "FIXTURE_PACK", "execution_error", "free_port", "weight_loads"]


class ComfyServer(LocalServer):
    def __init__(self, base_dir: Path, with_fixture_pack: bool = True, extra_packs: dict | None = None, **kwargs):
        packs = {"ddistill_test_fixtures": FIXTURE_PACK} if with_fixture_pack else {}
        super().__init__(base_dir, extra_packs={**packs, **(extra_packs or {})}, **kwargs)
        self.client_id = uuid.uuid4().hex

    def post(self, path: str, payload: dict | None = None):
        data = json.dumps(payload or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else None)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def queue(self, prompt: dict):
        """POST /prompt; returns (status, response json)."""
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        """Queue a prompt and wait for its history entry; raises on a validation error."""
        status, body = self.queue(prompt)
        if status != 200:
            raise AssertionError(f"prompt rejected ({status}): {json.dumps(body, indent=1)}")
        return self.wait(body["prompt_id"], timeout)

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s:\n{self.log_text()[-3000:]}")

    def object_info(self) -> dict:
        return self.get("/object_info")

    def comfyui_version(self) -> str:
        """The version this server reports (``/system_stats``), e.g. "0.3.75" or "0.33.0"."""
        return self.get("/system_stats")["system"]["comfyui_version"]

    def saved_latent(self, entry: dict, node: str):
        """The latent that SaveLatent node ``node`` of a finished prompt wrote, read back from its file."""
        import safetensors.torch

        saved = entry["outputs"][node]["latents"][0]
        path = self.base / "output" / saved.get("subfolder", "") / saved["filename"]
        return safetensors.torch.load_file(str(path))["latent_tensor"]


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
