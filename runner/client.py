"""HTTP + websocket client for one ComfyUI server (stdlib urllib and `websocket-client`)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import websocket


class ServerError(RuntimeError):
    """The server cannot be reached or went away; its work can go to another server."""


class PromptRejected(ValueError):
    """The server refused the prompt (validation); retrying elsewhere will not help."""


class ExecutionFailed(RuntimeError):
    """The graph raised an error while it ran on the server."""

    def __init__(self, prompt_id: str, message: str):
        super().__init__(message)
        self.prompt_id = prompt_id


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server: {url!r} is not a server address; give host:port, e.g. 127.0.0.1:8188")
    return url


def format_node_errors(body) -> str:
    if not isinstance(body, dict):
        return str(body)
    err = body.get("error") or {}
    lines = [err.get("message", "") + (": " + err["details"] if err.get("details") else "")] if err else []
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            text = f"node {nid} ({ne.get('class_type')}): {e.get('message')}: {e.get('details', '')}"
            lines.append(text.rstrip(": "))
    return "; ".join(x for x in lines if x) or json.dumps(body)[:500]


class ComfyClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = normalize_url(url)
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.ws = None

    def __repr__(self):
        return f"ComfyClient({self.url})"

    # -- HTTP
    def _request(self, path: str, data: bytes | None = None):
        req = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"} if data is not None else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get_content_type() if e.headers else "", e.read()
        except (urllib.error.URLError, OSError, socket.timeout) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"server {self.url}: cannot connect ({reason})") from None

    def get_json(self, path: str):
        status, _, body = self._request(path)
        if status != 200:
            raise ServerError(f"server {self.url}: GET {path} answered {status}")
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise ServerError(f"server {self.url}: GET {path} did not answer JSON; is this a ComfyUI server?") from None

    def check(self) -> dict:
        """System stats of a live ComfyUI; a clear ServerError otherwise."""
        try:
            stats = self.get_json("/system_stats")
        except ServerError as e:
            raise ServerError(
                f"{e}. Start ComfyUI there (python main.py --listen HOST --port PORT) or leave "
                f"this address out of --server"
            ) from None
        if not isinstance(stats, dict) or "system" not in stats:
            raise ServerError(f"server {self.url}: /system_stats does not look like ComfyUI's; check the address")
        return stats

    def object_info(self) -> dict:
        return self.get_json("/object_info")

    def queue(self, prompt: dict) -> str:
        status, _, body = self._request("/prompt", json.dumps({"prompt": prompt, "client_id": self.client_id}).encode())
        try:
            parsed = json.loads(body) if body else None
        except json.JSONDecodeError:
            parsed = body[:300].decode(errors="replace")
        if status == 200 and isinstance(parsed, dict) and "prompt_id" in parsed:
            return parsed["prompt_id"]
        if status == 400:
            raise PromptRejected(f"server {self.url} rejected the workflow: {format_node_errors(parsed)}")
        raise ServerError(f"server {self.url}: POST /prompt answered {status}: {parsed}")

    def history(self, prompt_id: str) -> dict | None:
        entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        return None

    def view(self, ref: dict) -> bytes:
        query = urllib.parse.urlencode(
            {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        )
        status, _, body = self._request("/view?" + query)
        if status != 200:
            raise ServerError(f"server {self.url}: image {ref.get('filename')} could not be fetched ({status})")
        return body

    # -- websocket
    def connect(self) -> None:
        self.close()
        ws_url = self.url.replace("http", "ws", 1) + "/ws?clientId=" + self.client_id
        try:
            self.ws = websocket.create_connection(ws_url, timeout=self.timeout)
        except (OSError, websocket.WebSocketException) as e:
            raise ServerError(f"server {self.url}: websocket failed ({e})") from None

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # closing a dead socket
                pass
            self.ws = None

    def next_finished(self, prompt_ids, on_progress=None, poll: float = 2.0) -> tuple[str, dict]:
        """Wait until one of `prompt_ids` has finished; returns (prompt_id, history entry). Progress events go to
        on_progress(prompt_id, value, max). A history entry whose status is 'error' raises ExecutionFailed."""
        prompt_ids = set(prompt_ids)
        if self.ws is None:
            self.connect()
        self.ws.settimeout(poll)
        last_poll = 0.0
        while True:
            candidates = []
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                raw = None
            except (OSError, websocket.WebSocketException) as e:
                self.close()
                raise ServerError(f"server {self.url}: connection lost ({e or type(e).__name__})") from None
            if isinstance(raw, str):
                msg = json.loads(raw)
                data = msg.get("data") or {}
                pid = data.get("prompt_id")
                if msg.get("type") == "progress" and pid in prompt_ids and on_progress:
                    on_progress(pid, data.get("value", 0), data.get("max", 1))
                elif pid in prompt_ids and (
                    msg.get("type") in ("execution_success", "execution_error", "execution_interrupted")
                    or (msg.get("type") == "executing" and data.get("node") is None)
                ):
                    candidates.append(pid)
            if raw is None or time.time() - last_poll > 5 * poll:  # no event lost: ask /history too
                candidates.extend(sorted(prompt_ids))
                last_poll = time.time()
            for pid in candidates:
                entry = self.history(pid)
                if entry is not None:
                    if entry["status"].get("status_str") != "success":
                        raise ExecutionFailed(pid, f"server {self.url}: {execution_message(entry)}")
                    return pid, entry


def execution_message(entry: dict) -> str:
    for kind, msg in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return (
                f"node {msg.get('node_id')} ({msg.get('node_type')}) raised {msg.get('exception_type')}: "
                f"{msg.get('exception_message', '').strip()}"
            )
        if kind == "execution_interrupted":
            return f"interrupted at node {msg.get('node_id')} ({msg.get('node_type')})"
    return f"status {entry.get('status', {}).get('status_str')}"
