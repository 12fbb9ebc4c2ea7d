"""A local ComfyUI server on 127.0.0.1: ``python main.py`` in a subprocess (``--cpu`` unless asked for the GPU),
with this pack (and any other packs given) linked into its own base directory. The demo job starts one
(``demo/run_demo.py``); the tests and benchmarks use it through ``ddistill_dev.comfy_server``.

``COMFYUI_PATH`` names the ComfyUI root (default: the one ``scripts/setup_host.py`` made in ``.host/ComfyUI``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "ComfyUI-DiversityDistillation"


def comfyui_root() -> Path:
    """The ComfyUI this pack runs on: ``$COMFYUI_PATH``, else the pinned host ``scripts/setup_host.py`` extracts."""
    return Path(os.environ.get("COMFYUI_PATH") or PACK_ROOT / ".host" / "ComfyUI").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(
        self,
        base_dir: Path,
        extra_args: tuple[str, ...] = (),
        cpu: bool = True,
        extra_packs: dict[str, Path] | None = None,
        env: dict[str, str] | None = None,
        python: str | None = None,
        root: Path | None = None,
    ):
        self.base = Path(base_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.packs = {PACK_NAME: PACK_ROOT, **(extra_packs or {})}  # custom_nodes/<name> -> folder
        self.extra_args = extra_args
        self.cpu = cpu  # False: ComfyUI's own device choice (a GPU, with its default memory management)
        self.env = dict(env or {})  # set in the server's environment, e.g. {"CUDA_VISIBLE_DEVICES": "1"}
        self.python = python or sys.executable  # the interpreter that runs main.py
        self.root = Path(root).resolve() if root else None  # the ComfyUI root; None: comfyui_root()
        self.proc = None
        self.log_path = self.base / "server.log"

    # -- lifecycle
    def start(self, timeout: float = 120) -> "ComfyServer":
        custom = self.base / "custom_nodes"
        custom.mkdir(parents=True, exist_ok=True)
        for name, target in self.packs.items():
            if not (custom / name).exists():
                (custom / name).symlink_to(target, target_is_directory=True)
        root = self.root or comfyui_root()
        cmd = [
            self.python,
            "main.py",
            *(["--cpu"] if self.cpu else []),
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-auto-launch",
            *self.extra_args,
        ]
        if subprocess.run([self.python, "-c", "import comfyui_frontend_package"], capture_output=True).returncode:
            web = self.base / "web"  # no frontend package (a GPU machine): the API needs none, serve an empty root
            web.mkdir(parents=True, exist_ok=True)
            (web / "index.html").write_text("<!doctype html><title>ComfyUI API only</title>")
            cmd += ["--front-end-root", str(web)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=root, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                self.get("/system_stats")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"ComfyUI did not answer in {timeout}s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP
    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

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
