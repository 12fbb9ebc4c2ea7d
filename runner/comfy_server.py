"""A local ComfyUI server on 127.0.0.1: ``python main.py`` in a subprocess (``--cpu`` unless asked for the GPU),
with this pack (and any other packs given) linked into its own base directory. The demo job starts one
(``demo/run_demo.py``); the tests and benchmarks use it through ``ddistill_dev.host.comfy_server``.

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
