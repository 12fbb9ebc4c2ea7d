#!/usr/bin/env python3
"""The hybrid on a consumer card: separate checkpoints and LoRA pairs under VRAM caps, through a real
ComfyUI server, models loaded from files, with the weight bytes each run moves and the physical floor beside the times.

Files (written once into ``--base``, reused by every server start and by a later run on the other host):

* ``unet`` part (``--arch``, SDXL by default): a full checkpoint (random fp16 weights, ``comfy.sd.save_checkpoint``)
  loaded by CheckpointLoaderSimple; a second UNet with different random weights (the "DMD2-like UNet": a UNet-only
  file in ``models/diffusion_models``, loaded by UNETLoader as users load DMD2); a rank-``--rank`` LoRA on every
  Linear and Conv weight of the checkpoint's UNet (kohya keys, fp16), loaded by LoraLoaderModelOnly. Two pairs:
  *separate checkpoints* (checkpoint + UNet file) and *LoRA pair* (checkpoint + the LoRA on it).
* ``zimage`` part: Z-Image and Z-Image-Turbo (6.15 B DiTs, random bf16, the released file layout) loaded by
  UNETLoader; conditioning from a benchmark-only node (random 32 x 2560 hidden states: no 8 GB text encoder file).

Per cap (``--caps``: GiB of VRAM left to ComfyUI by ``--reserve-vram`` = card total - cap, or ``none``) one server
(``runner.comfy_server``, main.py on 127.0.0.1; on ComfyUI 0.33 its main.py turns Dynamic VRAM on), and per pair
and batch three API graphs with a new seed per run: *distilled alone* (SamplerCustom on the distilled model, the
pack's Distilled Schedule), *pack hybrid* (Base First Step, base_steps 1, distilled_model connected -> Distilled
Continue), *stock two samplers* (SplitSigmas(1) -> SamplerCustom on the base -> SamplerCustom on the distilled
model). cfg 1 throughout (one model pass per step). Times are ComfyUI's own execution_start -> execution_success;
distilled alone and the hybrid are interleaved round by round, the stock chain runs in a block after them
(``--interleave``: all three in every round, so that each method follows the same prompts). Each probe also reads
the clock after a device synchronise: the notes give each method's median time per segment (before the first
sampler, base step, distilled steps, after the last sampler) against ComfyUI's own prompt timestamps.

Bytes moved: counted through ComfyUI's own counters, read by a benchmark-only probe node placed before the first
sampler and after each sampling segment (it passes the LATENT through and reports, as its UI output in the
prompt's history, every model in ``model_management.current_loaded_models`` with ``loaded_size()`` and
``model_size()``: ``model_loaded_weight_memory`` for ModelPatcher, VBAR residency + force-loaded weights for
ModelPatcherDynamic). H2D = sum of the increases of the loaded sizes between probes (loads), plus, for the
segment's model, (size - loaded after the segment) x its forward passes (weights ComfyUI streams through its cast
path at each forward: lowvram / not resident; an estimate). D2H = sum of the decreases (ModelPatcher unloads move
weights back; Dynamic VRAM drops pages, counted as 0). "loads/run" counts ComfyUI's "loaded completely /
partially" log lines. The pack's own holders (exact base copies, LoRA factors) are models in ComfyUI's model
management too; LoRA factors the pack reads from the host at each base forward are not counted (its log line, in
the notes, says where they live).

Floor: the pinned and pageable host-to-device copy rates are measured once with torch (1 GiB) before the servers
start. ComfyUI's usable memory C = cap (or the card's total) - the CUDA context; A = ComfyUI's own activation
estimate for the batch (``BaseModel.memory_required``, read by the probe); W = the model sizes ComfyUI reports.
Weights that must cross the bus per run: max(0, W_needed + A - C), W_needed = W_distilled (alone), W_base +
W_distilled (separate checkpoints), W_base + the LoRA's factors (LoRA pair: the distilled weights follow from the
base weights and the factors on the card). The hybrid's floor = 1 + (its bytes - distilled alone's) / pinned rate /
(distilled alone's time): transfers not overlapped with sampling (with full overlap it would be lower still).

  python benchmarks/bench_consumer_card.py --out consumer.md                  # both parts, caps 12, 8, none
  python benchmarks/bench_consumer_card.py --quick --budget-s 420 --base /tmp/consumer --out consumer.md
  python benchmarks/bench_consumer_card.py --cpu --arch sd15-shallow --size 64 --batches 1 --quick --repeats 1 \\
      --stock-repeats 1 --warmups 0 --rank 4 --parts unet         # CPU smoke (as test_bench_consumer_card.py runs it)

Cost: "plan:" lists the prompts of every block before the first server starts; each block prints its seconds as it
ends; --budget-s starts no new block or server past that many seconds (counted from the start, file writing
included), and the table lists what it left out. The files stay in --base for the next run (the other host).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ddistill import protocol as P
from ddistill.lora_maths import difference
from ddistill.schedules import derive_seed

METHODS = ("distilled alone", "pack hybrid", "stock two samplers")
PAIRS = {"separate": "separate checkpoints", "lora": "LoRA pair"}
# arch: (steps, scheduler, sampler, latent channels, UNet/DiT dtype)
ARCHS = {"sdxl": (4, "lcm", "lcm", 4, "float16"), "sd15": (4, "lcm", "lcm", 4, "float16"),
         "sd15-shallow": (4, "lcm", "lcm", 4, "float16"), "zimage": (8, "simple", "euler", 16, "bfloat16")}  # fmt: skip
# SD1.5's width and text encoder (ComfyUI detects the file as SD1.5) with one resolution level of one block: 26 M
# UNet parameters, for the CPU smoke test (a full-size SD1.5 takes seconds per step on two CPU cores even at 64x64).
SD15_SHALLOW = {"num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
                "transformer_depth_output": [1, 1], "transformer_depth_middle": 1}  # fmt: skip
ZIMAGE_FILES = ("z_image_bf16.safetensors", "z_image_turbo_bf16.safetensors")
PROBE = "DDistillBench_WeightProbe"
CONDITIONING = "DDistillBench_Conditioning"
OUTPUT_PREFIX = "bench_consumer"
SAVE = "99"
GiB = 2**30

# A benchmark-only custom node pack, written into the base directory and linked beside the pack (never shipped).
PROBE_PACK = '''"""Benchmark-only nodes written by benchmarks/bench_consumer_card.py (not part of the pack)."""
import time

import torch
import comfy.model_management as mm


def _entry(patcher):
    m = patcher.model
    dynamic = getattr(patcher, "is_dynamic", None)
    return {"id": id(m), "class": type(m).__name__, "size": int(patcher.model_size()),
            "loaded": int(patcher.loaded_size()), "lowvram": bool(getattr(m, "model_lowvram", False)),
            "dynamic": bool(dynamic()) if dynamic else False}


class WeightProbe:
    """Passes a LATENT through; its UI output: what ComfyUI's model management holds now (its own counters)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "model": ("MODEL",), "stage": ("STRING", {"default": ""}),
                             "tag": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "probe"
    CATEGORY = "testing"

    def probe(self, latent, model, stage, tag):
        seen = {}
        for lm in list(mm.current_loaded_models):
            p = lm.model
            if p is not None and id(p.model) not in seen:
                seen[id(p.model)] = _entry(p)
        me = _entry(model)
        try:
            me["memory_required"] = int(model.model.memory_required(list(latent["samples"].shape)))
        except Exception:  # an estimate only; the floor then counts no activations
            me["memory_required"] = 0
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        snap = {"stage": stage, "tag": tag, "model": me, "loaded": list(seen.values()), "t": time.time()}
        return {"ui": {"ddistill_probe": [snap]}, "result": (latent,)}


class Conditioning:
    """Random text-encoder hidden states of a given width (no text encoder file needed)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tokens": ("INT", {"default": 32, "min": 1}), "width": ("INT", {"default": 2560}),
                             "seed": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, tokens, width, seed):
        g = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, tokens, width, generator=g), {}]],)


NODE_CLASS_MAPPINGS = {"%s": WeightProbe, "%s": Conditioning}
''' % (PROBE, CONDITIONING)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="the markdown table (and the same data as .json beside it)")
    ap.add_argument("--base", type=Path, help="ComfyUI base directory holding the files (default: a temporary one)")
    ap.add_argument("--parts", default="unet,zimage", help="unet (--arch pairs) and/or zimage")
    ap.add_argument("--arch", default="sdxl", choices=["sdxl", "sd15", "sd15-shallow"],
                    help="the unet part's architecture (sd15-shallow: the CPU smoke test's)")  # fmt: skip
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--batches", default="1,4", help="unet part")
    ap.add_argument("--caps", default="12,8,none", help="unet part: GiB left to ComfyUI, or none")
    ap.add_argument("--pairs", default="separate,lora", help="unet part: separate and/or lora")
    ap.add_argument("--zimage-caps", default="24")
    ap.add_argument("--zimage-batches", default="1")
    ap.add_argument("--zimage-layers", type=int, default=None, help=argparse.SUPPRESS)  # shallow DiT: CPU check only
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds of distilled alone + hybrid (8; quick 2)")
    ap.add_argument("--stock-repeats", type=int, default=None, help="timed stock chains (3; quick 2)")
    ap.add_argument("--stock-warmups", type=int, default=None, help="untimed stock chains first (1; quick 0)")
    ap.add_argument(
        "--warmups",
        type=int,
        default=1,
        help="untimed runs of distilled alone and of the hybrid first (the LoRA pair's hybrid: one more)",
    )
    ap.add_argument("--interleave", action="store_true",
                    help="the stock chain in every round too (--repeats runs; --stock-warmups first)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="2 rounds, 2 stock chains, no stock warm-up")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--cpu", action="store_true", help="CPU smoke run (small --arch/--size; caps ignored)")
    ap.add_argument("--server-args", default="", help="more arguments for main.py, e.g. '--verbose DETAIL'")
    ap.add_argument("--no-probe", dest="probe", action="store_false", help="no probe nodes (no bytes columns)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no further block (pair x batch) or server after this many seconds")  # fmt: skip
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # child process: files + copy rates -> json
    args = ap.parse_args(argv)
    full = {"repeats": 8, "stock_repeats": 3, "stock_warmups": 1}
    quick = {"repeats": 2, "stock_repeats": 2, "stock_warmups": 0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.parts = [p for p in args.parts.split(",") if p]
    args.pairs = [p for p in args.pairs.split(",") if p]
    for p in args.parts:
        if p not in ("unet", "zimage"):
            ap.error(f"--parts: unknown part {p!r}")
    for p in args.pairs:
        if p not in PAIRS:
            ap.error(f"--pairs: unknown pair {p!r}")
    return args


# ------------------------------------------------------------------------------------------ files (child process)
def file_names(arch: str) -> dict[str, str]:
    return {"ckpt": f"bench_{arch}_base.safetensors", "unet": f"bench_{arch}_distilled_unet.safetensors",
            "lora": f"bench_{arch}_distill_lora.safetensors"}  # fmt: skip


def unet_config(arch: str):
    """(ComfyUI supported-model class, UNet config) of the unet part's ``arch``."""
    from ddistill_dev.models import random_checkpoints as rc

    if arch == "sd15-shallow":
        cls, config = rc.config_of("sd15")
        return cls, {**config, **SD15_SHALLOW}
    return rc.config_of(arch)


def tensor_bytes(path: Path, prefix: str = "") -> int:
    """Bytes of the tensors of a safetensors file whose keys start with ``prefix`` (read from its header)."""
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return sum(
        v["data_offsets"][1] - v["data_offsets"][0]
        for k, v in header.items()
        if k != "__metadata__" and k.startswith(prefix)
    )


def write_unet_files(base: Path, arch: str, rank: int, cpu: bool) -> str:
    """The checkpoint, the second UNet (different random weights) and the LoRA, unless present."""
    import torch

    from ddistill_dev.host import comfy_host
    from ddistill_dev.models import random_checkpoints as rc
    from ddistill_dev.models import random_lora as rl

    n = file_names(arch)
    ckpt, unet = base / "models" / "checkpoints" / n["ckpt"], base / "models" / "diffusion_models" / n["unet"]
    lora = base / "models" / "loras" / n["lora"]
    if ckpt.exists() and unet.exists() and lora.exists():
        return f"{arch} files present"
    comfy_host.boot(cpu=cpu, import_nodes=False)
    import safetensors.torch

    t = time.perf_counter()
    device = "cpu" if cpu else "cuda"
    model = rc.write_checkpoint(ckpt, *unet_config(arch), seed=1, device=device, dtype=torch.float16)
    rl.save(lora, rl.lora_state_dict(model.model, rank=rank, seed=3, scale=0.3, dtype=torch.float16))
    del model
    _, second = rc.unet_model(*unet_config(arch), seed=2, device=device, dtype=torch.float16)
    unet.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in second.model.diffusion_model.state_dict().items()}
    safetensors.torch.save_file(sd, str(unet))  # UNet-only file, ldm keys without a prefix (as UNETLoader reads)
    del second, sd
    return f"{arch} checkpoint, second UNet and rank-{rank} LoRA written in {time.perf_counter() - t:.0f} s"


def write_zimage_files(base: Path, cpu: bool, layers: int | None) -> str:
    """Z-Image and Z-Image-Turbo DiT files (``layers``: a shallow DiT of the same width, for a CPU check)."""
    from ddistill_dev.host import comfy_host

    folder = base / "models" / "diffusion_models"
    names = zimage_names(layers)
    if all((folder / name).exists() for name in names):
        return "Z-Image files present"
    comfy_host.boot(cpu=cpu, import_nodes=False)
    import torch

    from ddistill_dev.models import random_families as rf
    from ddistill_dev.models.random_checkpoints import ZIMAGE_DIT

    t = time.perf_counter()
    device = "cpu" if cpu else "cuda"
    for seed, name in enumerate(names, start=1):
        if layers is None:
            rf.write(folder / name, ZIMAGE_FILES[seed - 1], seed=seed, device=device, log=lambda s: None)
        else:
            dit = rf.diffusion_model("ZImage", {**ZIMAGE_DIT, "n_layers": layers}).diffusion_model
            rf.write_spec(folder / name, rf.module_spec(dit, torch.bfloat16), seed, device)
    return f"Z-Image pair written in {time.perf_counter() - t:.0f} s"


def zimage_names(layers: int | None) -> tuple[str, str]:
    if layers is None:
        return ZIMAGE_FILES
    return tuple(n.replace(".safetensors", f"_{layers}layers.safetensors") for n in ZIMAGE_FILES)


def copy_rates(cpu: bool) -> dict:
    """Host-to-device copy rates (bytes/s) from pinned and pageable memory, the card and its CUDA context size."""
    import torch

    def timed(copy, sync, reps=5):
        copy()
        sync()
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            copy()
            sync()
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    if cpu:  # no bus: a host copy, only so that the columns exist in a smoke run
        import psutil

        n = 256 * 2**20
        src, dst = torch.ones(n, dtype=torch.uint8), torch.empty(n, dtype=torch.uint8)
        rate = n / timed(lambda s=src: dst.copy_(s), lambda: None)
        total = psutil.virtual_memory().total
        return {"pinned": rate, "pageable": rate, "card": "CPU (host copy rate; no bus)", "total": total, "ctx": 0}
    n = GiB
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    ctx = total - free
    dst = torch.empty(n, dtype=torch.uint8, device="cuda")
    rates = {}
    for kind, pinned in (("pageable", False), ("pinned", True)):
        src = torch.ones(n, dtype=torch.uint8, pin_memory=pinned)
        rates[kind] = n / timed(lambda s=src, p=pinned: dst.copy_(s, non_blocking=p), torch.cuda.synchronize)
    return {**rates, "card": torch.cuda.get_device_name(0), "total": total, "ctx": ctx}


def prepare(args) -> dict:
    """Child process: copy rates first (a clean card), then the files that are missing; their weight sizes."""
    info = copy_rates(args.cpu)
    info["written"] = []
    weights = {}
    if "unet" in args.parts:
        info["written"].append(write_unet_files(args.base, args.arch, args.rank, args.cpu))
        n = file_names(args.arch)
        m = args.base / "models"
        weights["base"] = tensor_bytes(m / "checkpoints" / n["ckpt"], "model.diffusion_model.")
        weights["unet"] = tensor_bytes(m / "diffusion_models" / n["unet"])
        weights["lora"] = tensor_bytes(m / "loras" / n["lora"])
    if "zimage" in args.parts and (not args.cpu or args.zimage_layers):
        info["written"].append(write_zimage_files(args.base, args.cpu, args.zimage_layers))
        weights["zimage"] = [tensor_bytes(args.base / "models" / "diffusion_models" / name)
                             for name in zimage_names(args.zimage_layers)]  # fmt: skip
    info["weights"] = weights
    return info


# --------------------------------------------------------------------------------------------------------- graphs
def graph(args, arch: str, pair: str, method: str, seed: int, batch: int, tag: str) -> dict:
    """One API prompt of ``method`` on ``pair`` (nodes from ``ddistill_dev.gpu.runner_graphs``); probe nodes around
    the sampling segments unless --no-probe."""
    from ddistill_dev.gpu import runner_graphs as rg

    steps, scheduler, sampler, _, _ = ARCHS[arch]
    if arch == "zimage":
        base_name, turbo_name = zimage_names(args.zimage_layers)
        g = {
            "1": rg.node("UNETLoader", {"unet_name": base_name, "weight_dtype": "default"}),
            "2": rg.node("UNETLoader", {"unet_name": turbo_name, "weight_dtype": "default"}),
            "3": rg.node(CONDITIONING, {"tokens": 32, "width": 2560, "seed": 0}),
            "4": rg.empty_latent(args.size, batch, "EmptySD3LatentImage"),
        }
    else:
        n = file_names(arch)
        distilled = (
            rg.node("UNETLoader", {"unet_name": n["unet"], "weight_dtype": "default"})
            if pair == "separate"
            else rg.node("LoraLoaderModelOnly", {"model": ["1", 0], "lora_name": n["lora"], "strength_model": 1.0})
        )
        g = {
            "1": rg.node("CheckpointLoaderSimple", {"ckpt_name": n["ckpt"]}),
            "2": distilled,
            "3": rg.node("CLIPTextEncode", {"text": "image of a car", "clip": ["1", 1]}),
            "4": rg.empty_latent(args.size, batch),
        }
    g["5"] = rg.node(P.DISTILLED_SCHEDULE, {"model": ["2", 0], "steps": steps, "scheduler": scheduler})
    g["6"] = rg.ksampler_select(sampler)
    pos = neg = ["3", 0]
    base, dist = ["1", 0], ["2", 0]

    def probe(node: str, latent, model, stage: str):
        if not args.probe:
            return latent
        g[node] = rg.node(PROBE, {"latent": latent, "model": model, "stage": stage, "tag": tag})
        return [node, 0]

    def custom(node, model, add_noise, noise_seed, sigmas, latent):
        g[node] = rg.sampler_custom(model, noise_seed, pos, neg, ["6", 0], sigmas, latent, add_noise)
        return [node, 0]

    if method == "distilled alone":
        start = probe("p0", ["4", 0], dist, "start")
        out = probe("p1", custom("10", dist, True, seed, ["5", 0], start), dist, "distilled")
    elif method == "pack hybrid":
        start = probe("p0", ["4", 0], base, "start")
        g["10"] = rg.base_first_step(
            base, pos, neg, start, seed, steps=steps, distilled_model=dist, scheduler=scheduler, sampler_name=sampler
        )
        g["11"] = rg.distilled_continue(dist, pos, neg, probe("p1", ["10", 0], base, "base"))
        out = probe("p2", ["11", 0], dist, "distilled")
    else:
        g["7"] = rg.node("SplitSigmas", {"sigmas": ["5", 0], "step": 1})
        mid = probe("p1", custom("10", base, True, seed, ["7", 0], probe("p0", ["4", 0], base, "start")), base, "base")
        out = probe("p2", custom("11", dist, False, derive_seed(seed, 1), ["7", 1], mid), dist, "distilled")
    g[SAVE] = rg.save_latent(out, f"{OUTPUT_PREFIX}/latent")
    return g


def forwards(arch: str, method: str, stage: str) -> int:
    """Model passes of a segment at cfg 1 (one per step): base_steps 1, the rest on the distilled model."""
    steps = ARCHS[arch][0]
    return {"distilled alone": {"distilled": steps}}.get(method, {"base": 1, "distilled": steps - 1}).get(stage, 0)


def moved(arch: str, method: str, snaps: list[dict]) -> dict:
    """Bytes a run moved, from its probe snapshots (in execution order): see the module's docstring."""
    h2d_load = d2h = streamed = 0
    for a, b in zip(snaps, snaps[1:]):
        la = {m["id"]: m for m in a["loaded"]}
        lb = {m["id"]: m for m in b["loaded"]}
        for key in set(la) | set(lb):
            before = la[key]["loaded"] if key in la else 0
            after = lb[key]["loaded"] if key in lb else 0
            if after > before:
                h2d_load += after - before
            elif before > after and not (la.get(key) or lb.get(key))["dynamic"]:
                d2h += before - after
        seg = b["model"]
        streamed += max(0, seg["size"] - seg["loaded"]) * forwards(arch, method, b["stage"])
    models = {s["stage"]: s["model"] for s in snaps}
    return {"h2d_load": h2d_load, "streamed": streamed, "d2h": d2h, "models": models,
            "activations": max((s["model"].get("memory_required") or 0) for s in snaps)}  # fmt: skip


# ------------------------------------------------------------------------------------------------------ the runs
class Budget:
    def __init__(self, seconds):
        self.t0, self.seconds = time.monotonic(), seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def over(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds


def plan(args) -> list[dict]:
    """The servers of this run: one per (part, cap), in the order of --parts and of the caps."""
    out = []
    for part in args.parts:
        if part == "unet":
            for cap in ["none"] if args.cpu else args.caps.split(","):
                out.append({"arch": args.arch, "cap": cap, "pairs": args.pairs,
                            "batches": [int(b) for b in args.batches.split(",")]})  # fmt: skip
        elif not args.cpu or args.zimage_layers:  # zimage: full width only (ComfyUI's detection), not on a CPU
            for cap in ["none"] if args.cpu else args.zimage_caps.split(","):
                out.append({"arch": "zimage", "cap": cap, "pairs": ["separate"],
                            "batches": [int(b) for b in args.zimage_batches.split(",")]})  # fmt: skip
    return out


def runs_per_block(args, pair: str) -> dict:
    hybrid = args.warmups + (pair == "lora" and args.warmups > 0)  # a new LoRA pair's second run builds its copies
    warm = {"distilled alone": args.warmups, "pack hybrid": hybrid, "stock two samplers": args.stock_warmups}
    timed = {"distilled alone": args.repeats, "pack hybrid": args.repeats, "stock two samplers": args.stock_repeats}
    return {m: (warm[m], timed[m]) for m in METHODS}


def print_plan(args, servers, info) -> None:
    total = 0
    print(f"plan: {len(servers)} server start(s); per block (pair x batch) warm-up + timed runs:", flush=True)
    for s in servers:
        for pair in s["pairs"]:
            counts = runs_per_block(args, pair)
            n = sum(w + t for w, t in counts.values()) * len(s["batches"])
            total += n
            desc = ", ".join(f"{m} {w}+{t}" for m, (w, t) in counts.items())
            print(f"  {s['arch']} cap {s['cap']}: {PAIRS[pair]}, batches {s['batches']}: {desc} ({n} prompts)")
    print(f"  {total} prompts in all; copy rates: pinned {info['pinned'] / 1e9:.1f} GB/s, pageable "
          f"{info['pageable'] / 1e9:.1f} GB/s; {'; '.join(info['written'])}", flush=True)  # fmt: skip


def run_server(args, spec: dict, info: dict, budget: Budget) -> dict:
    from ddistill_dev.host.comfy_server import ComfyServer, execution_error, weight_loads

    arch, cap = spec["arch"], spec["cap"]
    extra = ()
    if cap != "none" and not args.cpu:
        extra = ("--reserve-vram", f"{max(info['total'] / GiB - float(cap), 0):.2f}")
    extra += tuple(shlex.split(args.server_args))
    probe_dir = args.base / "ddistill_bench_probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / "__init__.py").write_text(PROBE_PACK)
    seeds = iter(range(1000, 10**6))
    tags = iter(range(10**9))
    rows, notes, checks, skipped = [], [], [], []
    t_start = budget.elapsed()
    server = ComfyServer(
        args.base,
        with_fixture_pack=False,
        extra_args=extra,
        cpu=args.cpu,
        extra_packs={"ddistill_bench_probe": probe_dir},
    )
    with server:
        version = server.comfyui_version()
        log = server.log_text()
        dynamic = "DynamicVRAM support detected and enabled" in log
        vram_state = re.findall(r"Set vram state to: (\w+)", log)
        notes.append(f"server up in {budget.elapsed() - t_start:.0f} s; args {' '.join(extra) or '(none)'}; "
                     f"vram state {vram_state[-1] if vram_state else '?'}")  # fmt: skip

        def execute(pair, method, batch, seed):
            """(seconds from ComfyUI's timestamps, its history entry, weight-load log lines, probe snapshots)."""
            before = len(server.log_text())
            entry = server.run(graph(args, arch, pair, method, seed, batch, str(next(tags))), timeout=900)
            err = execution_error(entry)
            if err:
                raise RuntimeError(f"{arch} {pair} {method} batch {batch}: {err.get('exception_message')}")
            stamps = {k: m.get("timestamp") for k, m in entry["status"]["messages"]}
            seconds = (stamps["execution_success"] - stamps["execution_start"]) / 1000
            outs = entry.get("outputs", {})
            snaps = [outs[p]["ddistill_probe"][0] for p in ("p0", "p1", "p2") if p in outs]
            return seconds, entry, weight_loads(server.log_text()[before:]), snaps

        for pair in spec["pairs"]:
            for batch in spec["batches"]:
                block = f"{arch} {PAIRS[pair]} cap {cap} batch {batch}"
                if budget.over():
                    skipped.append(block)
                    continue
                t_block = budget.elapsed()
                counts = runs_per_block(args, pair)
                timed = {m: [] for m in METHODS}
                first_entries = {}
                round_seeds = [next(seeds) for _ in range(max(args.repeats, 1))]
                rounds = METHODS if args.interleave else METHODS[:2]
                firsts = []
                for m in rounds:
                    for _ in range(counts[m][0]):
                        firsts.append(f"{m} {execute(pair, m, batch, next(seeds))[0]:.2f}s")
                for r in range(args.repeats):
                    for m in rounds:
                        res = execute(pair, m, batch, round_seeds[r])
                        timed[m].append(res)
                        first_entries.setdefault((m, round_seeds[r]), res[1])
                m = METHODS[2]
                for _ in range(0 if args.interleave else counts[m][0]):
                    firsts.append(f"{m} {execute(pair, m, batch, next(seeds))[0]:.2f}s")
                for j in range(0 if args.interleave else args.stock_repeats):
                    seed = round_seeds[j % len(round_seeds)]
                    res = execute(pair, m, batch, seed)
                    timed[m].append(res)
                    first_entries.setdefault((m, seed), res[1])
                notes.append(f"{block}: warm-up runs {', '.join(firsts) or 'none'}")
                notes.append(f"{block}: median s per segment: {segment_note(timed)}")
                said = [ln for ln in server.log_text().splitlines() if "DDistill" in ln and "weights differ" in ln]
                if pair == "lora" and said:
                    notes.append(f"{block}: the pack logged: {said[-1].split('DDistill', 1)[1].lstrip(':')}")
                checks.extend(compare(server, first_entries, round_seeds[0], arch, pair, cap, batch))
                rows.extend(block_rows(arch, pair, cap, batch, timed, info))
                print(f"[{budget.elapsed():.0f}s] {block}: {budget.elapsed() - t_block:.0f} s", flush=True)
                for r in rows[-3:]:
                    print(f"    {r['method']}: {r['time']:.3f} s, {r['ratio']:.3f}x", flush=True)
        stats = server.get("/system_stats")
    if args.out:  # ComfyUI's own log of this server beside the table (its loads, the pack's plan lines)
        log_copy = args.out.parent / f"{args.out.stem}_{arch}_cap{cap}.log"
        log_copy.write_text(server.log_text())
        notes.append(f"server log: {log_copy.name}")
    dev = stats.get("devices", [{}])[0]
    return {"arch": arch, "cap": cap, "version": version, "dynamic": dynamic, "device": dev.get("name", "?"),
            "rows": rows, "notes": notes, "checks": checks, "skipped": skipped,
            "seconds": budget.elapsed() - t_start}  # fmt: skip


def compare(server, entries: dict, seed: int, arch, pair, cap, batch) -> list[dict]:
    """Same seed: the pack hybrid and distilled alone against the stock two-sampler chain (final latents)."""
    ref = entries.get(("stock two samplers", seed))
    out = []
    if ref is None:
        return out
    chain = server.saved_latent(ref, SAVE)
    for m in METHODS[:2]:
        if (m, seed) not in entries:
            continue
        x = server.saved_latent(entries[(m, seed)], SAVE)
        d = difference(x, chain) if x.shape == chain.shape else {"max_abs": float("inf"), "relative": float("inf"),
                                                                   "rms": 0.0}  # fmt: skip
        out.append({"arch": arch, "pair": pair, "cap": cap, "batch": batch, "method": m, "against": METHODS[2],
                    "equal": bool(x.shape == chain.shape and (x == chain).all()), **d})  # fmt: skip
    return out


def segments(entry: dict, snaps: list[dict]) -> dict[str, float]:
    """Seconds of one prompt per segment, from ComfyUI's execution_start / execution_success timestamps and the
    probes' clocks (read after a device synchronise): before the first sampler, each sampling segment (its node's
    loads, sampling and the pack's own work), after the last sampler (saving)."""
    stamps = {k: m.get("timestamp") for k, m in entry["status"]["messages"]}
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    if not snaps or start is None or end is None or any("t" not in s for s in snaps):
        return {}
    out = {"before": snaps[0]["t"] - start / 1000}
    out.update((b["stage"], b["t"] - a["t"]) for a, b in zip(snaps, snaps[1:]))
    out["after"] = end / 1000 - snaps[-1]["t"]
    return out


def segment_note(timed: dict) -> str:
    """Each method's median seconds per segment (``segments``), in words."""
    parts = []
    for m in METHODS:
        per = [segments(r[1], r[3]) for r in timed[m]]
        per = [x for x in per if x]
        if per:
            keys = [k for k in ("before", "base", "distilled", "after") if k in per[0]]
            parts.append(f"{m}: " + ", ".join(f"{k} {statistics.median(x[k] for x in per):.3f}" for k in keys))
    return "; ".join(parts) or "no probes"


def block_rows(arch, pair, cap, batch, timed: dict, info: dict) -> list[dict]:
    """Median time, ratio to distilled alone, loads, bytes moved and the floor of each method of one block."""
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    alone = med([t for t, *_ in timed[METHODS[0]]])
    usable = (float(cap) * GiB if cap != "none" else info["total"]) - info["ctx"]
    rows = []
    sizes = {}
    for m in METHODS:
        for _, _, _, snaps in timed[m]:
            if snaps:
                mv = moved(arch, m, snaps)
                for stage, model in mv["models"].items():
                    sizes.setdefault(stage, model)
                sizes.setdefault("activations", mv["activations"])
    act = sizes.get("activations", 0)
    if "distilled" in sizes and "base" in sizes:  # ComfyUI's own model sizes, from the probes
        w_base, w_dist = sizes["base"]["size"], sizes["distilled"]["size"]
        same_module = sizes["base"]["id"] == sizes["distilled"]["id"]
    else:  # --no-probe: the files' tensor bytes, no activations
        w = info["weights"]
        second = w["unet"] if pair == "separate" else w["base"]
        w_base, w_dist = w["zimage"] if arch == "zimage" else (w["base"], second)
        same_module = pair == "lora"
    w_pair = w_base + (info["weights"].get("lora", 0) if same_module else w_dist)
    must_alone = max(0.0, w_dist + act - usable)
    must_pair = max(0.0, w_pair + act - usable)
    for m in METHODS:
        runs = timed[m]
        t = med([r[0] for r in runs])
        mvs = [moved(arch, m, r[3]) for r in runs if r[3]]
        row = {"arch": arch, "pair": pair, "cap": cap, "batch": batch, "method": m, "time": t, "ratio": t / alone,
               "loads": statistics.mean([r[2] for r in runs]) if runs else float("nan"), "n": len(runs)}  # fmt: skip
        if mvs:
            row["h2d_load"] = med([x["h2d_load"] for x in mvs])
            row["streamed"] = med([x["streamed"] for x in mvs])
            row["d2h"] = med([x["d2h"] for x in mvs])
        extra = 0.0 if m == METHODS[0] else must_pair - must_alone
        row.update(must_cross=must_alone if m == METHODS[0] else must_pair, floor_s=extra / info["pinned"])
        row["floor_x"] = 1 + row["floor_s"] / alone
        row.update(activations=act, usable=usable, w_base=w_base, w_distilled=w_dist, lora_pair=same_module)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------- output
def fmt_gib(x) -> str:
    return "" if x is None else f"{x / GiB:.2f}"


def flag(row: dict, rows: list[dict]) -> str:
    """Where a row asks for a profile: the pack above the stock chain, or above 1.3x where the floor is below."""
    if row["method"] != "pack hybrid":
        return ""
    same = ("arch", "pair", "cap", "batch")
    stock = next((r for r in rows if r["method"] == METHODS[2] and all(r[k] == row[k] for k in same)), None)
    out = []
    if stock and row["time"] > stock["time"]:
        out.append(f"above stock ({row['time'] / stock['time']:.2f}x it)")
    floor = row.get("floor_x")
    if row["ratio"] > 1.3 and floor is not None and floor < 1.3:
        out.append(f"above 1.3x, floor {floor:.2f}x")
    return "; ".join(out)


def table(results: list[dict], info: dict, args) -> str:
    r0 = next((r for r in results if r["rows"]), None)
    if r0 is None:
        return "nothing ran\n" + "".join(f"- not run (--budget-s): {b}\n" for r in results for b in r["skipped"])
    rows = [row for res in results for row in res["rows"]]
    w = info["weights"]
    weights = []
    if "base" in w:
        weights.append(f"{args.arch} UNet {w['base'] / GiB:.2f} GiB (checkpoint) and {w['unet'] / GiB:.2f} GiB "
                       f"(UNet file), LoRA factors {w['lora'] / GiB:.2f} GiB (rank {args.rank})")  # fmt: skip
    if "zimage" in w:
        weights.append("Z-Image / Z-Image-Turbo DiTs " + " / ".join(f"{b / GiB:.2f}" for b in w["zimage"]) + " GiB")
    dyn = "on (ModelPatcherDynamic)" if r0["dynamic"] else "off (ModelPatcher)"
    lines = [
        f"Card: {info['card']} ({info['total'] / GiB:.1f} GiB, CUDA context {info['ctx'] / GiB:.2f} GiB); "
        f"ComfyUI {r0['version']} through its server (main.py), Dynamic VRAM {dyn}. Host-to-device copy rate "
        f"(torch, 1 GiB): pinned {info['pinned'] / 1e9:.1f} GB/s, pageable {info['pageable'] / 1e9:.1f} GB/s. "
        f"Weights: {'; '.join(weights)}. {args.size}x{args.size}, cfg 1; SDXL/SD: 4 lcm steps, Z-Image: 8 euler "
        f"steps (simple); hybrid = base_steps 1. Median of {args.repeats} (stock: {args.stock_repeats}); cap = "
        "--reserve-vram leaving that many GiB to ComfyUI.",
        "",
        "Bytes per run (GiB) from ComfyUI's own counters (a probe node between the segments): H2D = loads + "
        "streamed (estimate: weights not resident x forward passes); D2H = unloads (ModelPatcher). Must cross = "
        "max(0, weights needed + ComfyUI's activation estimate - (cap - CUDA context)); floor x = 1 + (the "
        "hybrid's must-cross - distilled alone's) / pinned rate / distilled alone's time (the bus only, transfers "
        "not overlapped with sampling; the LoRA pair's weights made at forward time cost compute, not counted).",
        "",
        "| pair | cap (GiB) | batch | method | time (s) | x distilled alone | loads/run | H2D: loads + streamed "
        "| D2H | must cross (floor s) | floor x | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pair = "Z-Image pair (separate)" if r["arch"] == "zimage" else PAIRS[r["pair"]]
        h2d = "" if "h2d_load" not in r else f"{fmt_gib(r['h2d_load'])} + {fmt_gib(r['streamed'])}"
        must = "" if "must_cross" not in r else f"{fmt_gib(r['must_cross'])} ({r['floor_s']:.3f} s)"
        floor = "" if "floor_x" not in r else ("1 (ref)" if r["method"] == METHODS[0] else f"{r['floor_x']:.3f}")
        lines.append(
            f"| {pair} | {r['cap']} | {r['batch']} | {r['method']} | {r['time']:.3f} | {r['ratio']:.3f} | "
            f"{r['loads']:.1f} | {h2d} | {fmt_gib(r.get('d2h'))} | {must} | {floor} | {flag(r, rows)} |"
        )
    lines.append("")
    for c in [c for res in results for c in res["checks"]]:
        pair = "Z-Image" if c["arch"] == "zimage" else PAIRS[c["pair"]]
        what = "bit-equal" if c["equal"] else "differs"
        lines.append(
            f"- same seed, {pair}, cap {c['cap']}, batch {c['batch']}: {c['method']} vs {c['against']}: {what}, "
            f"max |diff| {c['max_abs']:.3g}, {c['relative']:.3g} of the latent RMS ({c['rms']:.3g})"
        )
    for res in results:
        head = f"{res['arch']} cap {res['cap']}"
        lines.append(f"- {head}: {res['seconds']:.0f} s in all")
        lines.extend(f"- {head}: {n}" for n in res["notes"])
        lines.extend(f"- {head}: not run (--budget-s): {b}" for b in res["skipped"])
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse(argv)
    if args.prepare:
        args.prepare.write_text(json.dumps(prepare(args)))
        return
    tmp = None
    if args.base is None:
        tmp = tempfile.TemporaryDirectory(prefix="ddistill_consumer_")
        args.base = Path(tmp.name)
    args.base = args.base.resolve()
    args.base.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    # the files and the copy rates in a child process, so that its GPU memory is free for the servers
    info_path = args.base / "bench_consumer_prepare.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--prepare", str(info_path), "--base", str(args.base),
           "--parts", ",".join(args.parts), "--arch", args.arch, "--rank", str(args.rank)]  # fmt: skip
    cmd += (["--cpu"] if args.cpu else []) + ([f"--zimage-layers={args.zimage_layers}"] if args.zimage_layers else [])
    subprocess.run(cmd, check=True)
    info = json.loads(info_path.read_text())
    servers = plan(args)
    print_plan(args, servers, info)
    results = []
    for spec in servers:
        if budget.over():
            results.append({**spec, "version": "?", "dynamic": False, "device": "?", "rows": [], "notes": [],
                            "checks": [], "skipped": [f"{spec['arch']} cap {spec['cap']} (server not started)"],
                            "seconds": 0.0})  # fmt: skip
            continue
        results.append(run_server(args, spec, info, budget))
    text = table(results, info, args)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"info": info, "results": results}, indent=1))
    out_dir = args.base / "output" / OUTPUT_PREFIX
    for f in out_dir.glob("*") if out_dir.exists() else []:
        f.unlink()


if __name__ == "__main__":
    main()
