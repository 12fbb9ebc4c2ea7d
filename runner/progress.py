"""Text progress bars on stderr: one overall bar and one per server (redrawn in place on a terminal, one line
per finished item otherwise)."""

from __future__ import annotations

import sys
import threading
import time


def bar(done: float, total: float, width: int = 24) -> str:
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    full = int(frac * width)
    return "[" + "#" * full + "-" * (width - full) + f"] {100 * frac:5.1f}%"


class Progress:
    def __init__(self, total: int, already_done: int, servers: list[str], stream=None):
        self.total = total
        self.done = already_done
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.lock = threading.Lock()
        self.servers = {s: {"done": 0, "item": "", "step": (0, 0), "state": "running"} for s in servers}
        self.n_failed = 0
        self.start = time.time()
        self._lines = 0
        self._last = 0.0

    def _line(self, text: str) -> None:
        if not self.tty:
            print(text, file=self.stream, flush=True)

    def _persist(self, text: str) -> None:
        """A message that stays: on a terminal it goes above the bars, which are drawn again below it."""
        if self.tty:
            self.stream.write("\x1b[F" * self._lines + "\x1b[J")
            self._lines = 0
        print(text, file=self.stream, flush=True)

    def started(self, server: str, item) -> None:
        with self.lock:
            self.servers[server].update(
                item=f"{item.method} | {item.prompt[:30]} | seed {item.seed} x{item.batch}", step=(0, 0)
            )

    def step(self, server: str, value: int, maximum: int) -> None:
        with self.lock:
            self.servers[server]["step"] = (value, maximum)

    def finished(self, server: str, item) -> None:
        with self.lock:
            self.done += 1
            self.servers[server]["done"] += 1
            self.servers[server].update(item="", step=(0, 0))
            self._line(
                f"{self.done}/{self.total} done: {item.method} | {item.prompt[:40]} | seed {item.seed} "
                f"x{item.batch} on {server}"
            )

    def failed(self, server: str, item, message: str) -> None:
        with self.lock:
            self.n_failed += 1
            self._persist(f"FAILED on {server}: {item.method} | {item.prompt[:40]} | seed {item.seed}: {message}")

    def dead(self, server: str, message: str, returned: int) -> None:
        with self.lock:
            self.servers[server]["state"] = "gone"
            self._persist(f"{message}; server {server} stopped, {returned} unfinished item(s) went back to the queue")

    def render(self, force: bool = False) -> None:
        if not self.tty or (not force and time.time() - self._last < 0.2):
            return
        with self.lock:
            self._last = time.time()
            rows = [
                f"overall  {bar(self.done, self.total)} {self.done}/{self.total} items, "
                f"{time.time() - self.start:6.0f} s" + (f", {self.n_failed} failed attempts" if self.n_failed else "")
            ]
            for url, s in self.servers.items():
                v, m = s["step"]
                step = f" step {bar(v, m, 10)}" if m else ""
                rows.append(f"  {url}: {s['done']} done, {s['state']}{step} {s['item']}"[:160])
            out = ("\x1b[F" * self._lines) + "".join("\x1b[2K" + r + "\n" for r in rows)
            self._lines = len(rows)
            self.stream.write(out)
            self.stream.flush()
