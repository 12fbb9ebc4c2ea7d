"""Work items, the resumable state file, and the distribution of items over servers.

One item = one method, one prompt, one chunk of seeds: one POST /prompt. Items wait in one shared queue; each server
has a worker thread that takes the next item when it has room (a faster server simply takes more), so there is no
scheduler beyond handing out items. A server that goes away gives its unfinished items back to the queue; the
state file (`state.jsonl`, one JSON line per finished item, appended and fsynced) is written only after an item's
images are on disk, and an item is recorded at most once, so a rerun skips finished items and nothing is lost or
counted twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "state.jsonl"
STATE_VERSION = 1


class StateError(ValueError):
    pass


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"
    return f"{s}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Item:
    method: str
    prompt_index: int
    prompt: str
    chunk: int
    seed: int
    batch: int
    first_sample: int  # index of this chunk's first sample among the prompt's samples

    @property
    def id(self) -> str:
        return f"{self.method}|{hashlib.sha1(self.prompt.encode()).hexdigest()[:12]}|seed{self.seed}|n{self.batch}"

    def image_path(self, out: Path, i: int) -> Path:
        return out / "images" / slug(self.method, 24) / slug(self.prompt) / f"seed{self.seed}_{i:03d}.png"


def plan(methods: list[str], prompts: list[str], seeds: int, batch: int, seed_start: int) -> list[Item]:
    """All items: chunk c of every prompt uses seed seed_start + c and min(batch, seeds - c*batch) samples."""
    if seeds < 2:
        raise ValueError(f"--seeds: {seeds} is too few; use at least 2 so that diversity can be measured")
    if batch < 1:
        raise ValueError(f"--batch: {batch} is too small; use at least 1")
    items = []
    chunks = (seeds + batch - 1) // batch
    for c in range(chunks):
        for p, prompt in enumerate(prompts):
            for m in methods:
                items.append(Item(m, p, prompt, c, seed_start + c, min(batch, seeds - c * batch), c * batch))
    return items


def fingerprint(graph: dict) -> str:
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()


class RunState:
    """The report folder's `state.jsonl`: a header line, then one line per finished item."""

    def __init__(self, out: Path, workflow_fingerprint: str, fresh: bool = False):
        self.out = Path(out)
        self.path = self.out / STATE_FILE
        self.lock = threading.Lock()
        self.done: dict[str, dict] = {}
        header = {"kind": "header", "version": STATE_VERSION, "workflow": workflow_fingerprint}
        self.out.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            first = json.loads(lines[0]) if lines else {}
            if first.get("workflow") != workflow_fingerprint:
                raise StateError(
                    f"--out: {self.out} holds a run of a different workflow (or a changed one); give "
                    f"another --out folder, or --fresh to start this one over"
                )
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that item simply runs again
                    continue
                if rec.get("kind") == "done":
                    self.done.setdefault(rec["item"], rec)
        else:
            self._append(header)

    def _append(self, rec: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def is_done(self, item: Item) -> bool:
        rec = self.done.get(item.id)
        return rec is not None and all((self.out / p).is_file() for p in rec["images"])

    def record(self, item: Item, rec: dict) -> bool:
        """Record a finished item once; returns False (and writes nothing) if it was already recorded."""
        with self.lock:
            if item.id in self.done:
                return False
            rec = {"kind": "done", "item": item.id, **asdict(item), **rec}
            self._append(rec)
            self.done[item.id] = rec
            return True


class WorkQueue:
    """Pending items shared by the server workers; items of a failed server come back to the front."""

    def __init__(self, items, max_attempts: int = 2):
        self.pending = deque(items)
        self.inflight = 0
        self.cond = threading.Condition()
        self.failed: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.max_attempts = max_attempts

    def take(self, block: bool = True) -> Item | None:
        with self.cond:
            while not self.pending:
                if not block or self.inflight == 0:
                    return None
                self.cond.wait(0.5)
            self.inflight += 1
            return self.pending.popleft()

    def finish(self, item: Item) -> None:
        with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    def give_back(self, item: Item) -> None:
        with self.cond:
            self.inflight -= 1
            self.pending.appendleft(item)
            self.cond.notify_all()

    def failed_attempt(self, item: Item, message: str) -> None:
        """An execution error: retried (on whichever server takes it) until max_attempts, then failed."""
        with self.cond:
            self.inflight -= 1
            n = self.attempts[item.id] = self.attempts.get(item.id, 0) + 1
            if n < self.max_attempts:
                self.pending.append(item)
            else:
                self.failed[item.id] = message
            self.cond.notify_all()


def run_items(
    queue: WorkQueue, servers: list, job, progress=None, depth: int = 1, revive_tries: int = 3, revive_wait: float = 2.0
) -> dict[str, str]:
    """Run the queue on every server (one thread each, at most `depth` prompts queued on each) until it is empty or
    no server is left. `job` has `build(item) -> API prompt`, `collect(client, item, history entry) -> record` and
    `state` (a RunState). Returns {server: why it stopped early} for servers that died or refused the workflow."""
    from .client import ExecutionFailed, PromptRejected, ServerError

    stopped: dict[str, str] = {}

    def worker(client):
        inflight: dict[str, Item] = {}
        tries = 0

        def revived(client) -> bool:
            """The server answers again within revive_tries waits (counted until an item succeeds)."""
            nonlocal tries
            while tries < revive_tries:
                tries += 1
                time.sleep(revive_wait)
                try:
                    client.check()
                    return True
                except ServerError:
                    pass
            return False

        while True:
            try:
                while len(inflight) < depth:
                    item = queue.take(block=not inflight)
                    if item is None:
                        break
                    inflight["?"] = item  # given back below if queueing fails
                    pid = client.queue(job.build(item))
                    inflight[pid] = inflight.pop("?")
                    if progress:
                        progress.started(client.url, item)
                if not inflight:
                    return
                pid, entry = client.next_finished(
                    inflight, on_progress=progress and (lambda p, v, m: progress.step(client.url, v, m))
                )
                item = inflight[pid]
                rec = job.collect(client, item, entry)  # images on disk before the item is recorded
                rec["server"] = client.url
                job.state.record(item, rec)
                del inflight[pid]
                queue.finish(item)
                tries = 0
                if progress:
                    progress.finished(client.url, item)
            except (ExecutionFailed, PromptRejected) as e:  # this item's fault: retried, then reported as failed
                key = "?" if "?" in inflight else (getattr(e, "prompt_id", "") or pid)
                item = inflight.pop(key if key in inflight else pid)
                queue.failed_attempt(item, str(e))
                if progress:
                    progress.failed(client.url, item, str(e))
            except Exception as e:  # server gone (or a runner bug): its items go back, the server stops
                returned = len(inflight)
                for item in inflight.values():
                    queue.give_back(item)
                inflight.clear()
                client.close()
                if isinstance(e, ServerError) and revived(client):
                    continue
                why = str(e) if isinstance(e, ServerError) else f"runner error {e!r}"
                stopped[client.url] = why
                if progress:
                    progress.dead(client.url, why, returned)
                return

    threads = [threading.Thread(target=worker, args=(c,), name=f"runner-{c.url}", daemon=True) for c in servers]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
            if progress:
                progress.render()
    return stopped
