#!/usr/bin/env python3
"""LoRA-distilled pairs through a real ComfyUI server, models loaded from files as users load them.

Writes a full-size SDXL checkpoint (random fp16 weights, ``comfy.sd.save_checkpoint``) and a rank-64 LoRA on every
Linear and Conv weight of its UNet (kohya keys, fp16) into a ComfyUI base directory, starts ``main.py`` on
127.0.0.1 (on ComfyUI 0.33 its main.py turns Dynamic VRAM on, so the loaders make ``ModelPatcherDynamic``), and
queues API graphs: Load Checkpoint → LoraLoaderModelOnly, 1024x1024, 4 lcm steps, cfg 1, SaveLatent:

* LoRA model alone: SamplerCustom on the LoRA model, the pack's Distilled Schedule (lcm) + KSamplerSelect;
* pack hybrid: Base First Step (base = the checkpoint's model, distilled_model = the LoRA model) → Distilled Continue;
* stock two samplers: SplitSigmas(1) → SamplerCustom (base, add noise) → SamplerCustom (LoRA model, no noise);
* stock hooks: one SamplerCustom on the base with CreateHookLoraModelOnly keyframed off for step 1.

``--weights`` picks the files: ``checkpoint`` (the SDXL checkpoint above), or a quantized Wan 2.2 A14B expert as
users run it with the lightx2v 4-step LoRA (random weights of the released layouts,
``ddistill_dev.models.random_families``; conditioning from a benchmark-only node of random 512 x 4096 T5 states, no text
encoder file; an empty Wan video
latent of ``--size`` x ``--height`` x ``--length``; 4 euler steps, simple schedule): ``fp8_scaled``
(``wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors`` through UNETLoader: 0.3.75's scaled_fp8 ops, 0.33's
QuantizedTensor) or ``gguf_q8_0`` (the same architecture from bf16 weights quantized to Q8_0, through
city96/ComfyUI-GGUF's UnetLoaderGGUF, the archive of ``ddistill_dev.models.gguf_files.pack_archive`` linked into the
server's custom_nodes). ``--tiny`` writes the tiny Wan 2.2 model instead (the CPU smoke test's).

Each run gets a new seed (ComfyUI re-runs the samplers, the loaders stay cached: steady state from the second run).
Time = ComfyUI's own execution_start → execution_success timestamps; the LoRA model alone and the hybrid are
interleaved round by round. "loads/run" counts the server's "loaded completely/partially" log lines per run.

  python benchmarks/bench_lora_server.py --out lora_server.md               # uncapped, then capped (12 GiB)
  python benchmarks/bench_lora_server.py --cpu --arch sd15 --size 64 --repeats 2 --stock-repeats 1   # CPU smoke
  python benchmarks/bench_lora_server.py --weights fp8_scaled --configs uncapped --size 832 --height 480 --length 17
  python benchmarks/bench_lora_server.py --weights gguf_q8_0 --cpu --tiny --size 128 --length 9 --repeats 1 \
      --stock-repeats 1 --configs uncapped                         # CPU smoke of the quantized path
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_consumer_card import CONDITIONING, PROBE_PACK  # sibling scripts (this folder is sys.path[0])
from bench_lora import target_lines

from ddistill import protocol as P
from ddistill.lora_maths import difference
from ddistill.schedules import derive_seed
from ddistill_dev.gpu import runner_graphs as rg
from ddistill_dev.host import comfy_host

CKPT, LORA = "bench_base.safetensors", "bench_distill_lora.safetensors"
METHODS = ("LoRA model alone", "pack hybrid", "stock two samplers", "stock hooks, one sampler")
WAN = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"  # random_families' names of the released files
WAN_LORA = "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors"
# --weights: (diffusion-model file, LoRA file) of the quantized pairs
QUANTIZED = {"fp8_scaled": (WAN, WAN_LORA), "gguf_q8_0": ("wan2.2_t2v_high_noise_14B_Q8_0.gguf", WAN_LORA)}
TINY = {"fp8_scaled": ("tiny_wan22_fp8_scaled.safetensors", "tiny_wan22_lora.safetensors"),
        "gguf_q8_0": ("tiny_wan22_Q8_0.gguf", "tiny_wan22_lora.safetensors")}  # fmt: skip
T5_TOKENS, T5_WIDTH = 512, 4096  # Wan's umt5-xxl context


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--base", type=Path, help="ComfyUI base directory (default: a temporary one)")
    ap.add_argument("--arch", default="sdxl", choices=["sdxl", "sd15"])
    ap.add_argument("--weights", default="checkpoint", choices=["checkpoint", *QUANTIZED])
    ap.add_argument("--tiny", action="store_true", help="quantized weights: the tiny Wan 2.2 model (CPU smoke)")
    ap.add_argument("--size", type=int, default=1024, help="width (and height unless --height)")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--length", type=int, default=17, help="quantized weights: video frames")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--stock-repeats", type=int, default=3)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--cap-gb", type=float, default=12.0)
    ap.add_argument("--configs", default="uncapped,capped")
    ap.add_argument("--cpu", action="store_true", help="CPU smoke run (use a small --arch/--size)")
    ap.add_argument("--server-args", default="", help="more arguments for main.py, e.g. '--verbose DETAIL'")
    ap.add_argument("--fast-only", action="store_true", help="only the LoRA model alone and the pack hybrid")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip the same-seed comparison of the hybrid with the stock chain")  # fmt: skip
    args = ap.parse_args()
    args.height = args.height or args.size
    return args


def quantized_names(weights: str, tiny: bool) -> tuple[str, str]:
    return (TINY if tiny else QUANTIZED)[weights]


def write_quantized_files(base: Path, weights: str, tiny: bool, cpu: bool) -> str:
    """The quantized diffusion model and its LoRA under models/; returns what was written."""
    from ddistill_dev.models import gguf_files as gf
    from ddistill_dev.models import quantized_files as qf
    from ddistill_dev.models import random_families as rf
    from ddistill_dev.models import random_lora as rl
    from ddistill_dev.models import tiny_models as tm

    name, lora_name = quantized_names(weights, tiny)
    unet, lora = base / "models" / "diffusion_models" / name, base / "models" / "loras" / lora_name
    if unet.exists() and lora.exists():
        return f"{weights} files present"
    comfy_host.boot(cpu=cpu, import_nodes=False)
    t = time.perf_counter()
    device = "cpu" if cpu else "cuda"
    if tiny:
        if weights == "gguf_q8_0":
            gf.write_family_gguf(unet, "wan22", seed=1)
        else:
            qf.write_scaled_fp8(unet, "wan22", seed=1)
        rl.save(lora, rl.lora_state_dict(tm.make_family_model("wan22", 1).model, rank=4, seed=3))
    else:
        if weights == "gguf_q8_0":  # quantized from bf16 weights, as released GGUF files are made
            dit = rf.diffusion_model("WAN21_T2V", rf.WAN22_A14B_T2V).diffusion_model
            gf.write_spec_gguf(unet, rf.module_spec(dit, torch.bfloat16), "wan", seed=1, device=device)
        else:
            rf.write(unet, name, seed=1, device=device, log=lambda s: None)
        if not lora.exists():
            rf.write(lora, lora_name, seed=3, device=device, log=lambda s: None)
    gib = lambda p: p.stat().st_size / 2**30  # noqa: E731
    took = time.perf_counter() - t
    return f"{weights}: {name} {gib(unet):.2f} GiB, {lora_name} {gib(lora):.2f} GiB, {took:.0f}s"


def write_files(base: Path, arch: str, rank: int, cpu: bool) -> str:
    """The checkpoint and the LoRA under models/; returns what was written."""
    from ddistill_dev.models import random_checkpoints as rc
    from ddistill_dev.models import random_lora as rl

    ckpt, lora = base / "models" / "checkpoints" / CKPT, base / "models" / "loras" / LORA
    if ckpt.exists() and lora.exists():
        return "files present"
    comfy_host.boot(cpu=cpu, import_nodes=False)
    t = time.perf_counter()
    device = "cpu" if cpu else "cuda"
    model = rc.write_checkpoint(ckpt, *rc.config_of(arch), seed=1, device=device, dtype=torch.float16)
    state = rl.lora_state_dict(model.model, rank=rank, seed=3, scale=0.3, dtype=torch.float16)
    rl.save(lora, state)
    n = sum(k.endswith("lora_up.weight") for k in state)
    gib = lambda p: p.stat().st_size / 2**30  # noqa: E731
    took = time.perf_counter() - t
    return f"{arch} checkpoint {gib(ckpt):.2f} GiB, LoRA on {n} weights {gib(lora):.2f} GiB, {took:.0f}s"


def loaders(args, batch: int) -> tuple[dict, str, str]:
    """Nodes 1-4 of a prompt (base model, LoRA model, conditioning, empty latent), its scheduler and its sampler."""
    if args.weights == "checkpoint":
        lora = rg.node("LoraLoaderModelOnly", {"model": ["1", 0], "lora_name": LORA, "strength_model": 1.0})
        return (
            {
                "1": rg.node("CheckpointLoaderSimple", {"ckpt_name": CKPT}),
                "2": lora,
                "3": rg.node("CLIPTextEncode", {"text": "image of a car", "clip": ["1", 1]}),
                "4": rg.empty_latent(args.size, batch),
            },
            "lcm",
            "lcm",
        )
    name, lora_name = quantized_names(args.weights, args.tiny)
    unet = (
        rg.node("UnetLoaderGGUF", {"unet_name": name})
        if args.weights == "gguf_q8_0"
        else rg.node("UNETLoader", {"unet_name": name, "weight_dtype": "default"})
    )
    latent = {"width": args.size, "height": args.height, "length": args.length, "batch_size": batch}
    return (
        {
            "1": unet,
            "2": rg.node("LoraLoaderModelOnly", {"model": ["1", 0], "lora_name": lora_name, "strength_model": 1.0}),
            "3": rg.node(CONDITIONING, {"tokens": T5_TOKENS, "width": T5_WIDTH, "seed": 0}),
            "4": rg.node("EmptyHunyuanLatentVideo", latent),
        },
        "simple",
        "euler",
    )


def graph(args, method: str, seed: int, batch: int) -> dict:
    """One API prompt of ``method`` (nodes from ``ddistill_dev.gpu.runner_graphs``)."""
    pos = neg = ["3", 0]
    g, scheduler, sampler = loaders(args, batch)
    g["5"] = rg.node(P.DISTILLED_SCHEDULE, {"model": ["2", 0], "steps": 4, "scheduler": scheduler})
    g["6"] = rg.ksampler_select(sampler)
    if method == "LoRA model alone":
        g["10"] = rg.sampler_custom(["2", 0], seed, pos, neg, ["6", 0], ["5", 0], ["4", 0])
    elif method == "pack hybrid":
        g["10"] = rg.base_first_step(
            ["1", 0], pos, neg, ["4", 0], seed, distilled_model=["2", 0], scheduler=scheduler, sampler_name=sampler
        )
        g["11"] = rg.distilled_continue(["2", 0], pos, neg, ["10", 0])
    elif method == "stock two samplers":
        g["7"] = rg.node("SplitSigmas", {"sigmas": ["5", 0], "step": 1})
        g["10"] = rg.sampler_custom(["1", 0], seed, pos, neg, ["6", 0], ["7", 0], ["4", 0])
        g["11"] = rg.sampler_custom(["2", 0], derive_seed(seed, 1), pos, neg, ["6", 0], ["7", 1], ["10", 0], False)
    else:  # the LoRA as a hook on the base, strength 0 for the first step (lcm: t 999 = 0.1%), 1 from 10% on
        lora_name = g["2"]["inputs"]["lora_name"]
        g["20"] = rg.node("CreateHookLoraModelOnly", {"lora_name": lora_name, "strength_model": 1.0})
        g["21"] = rg.node("CreateHookKeyframe", {"strength_mult": 0.0, "start_percent": 0.0})
        g["22"] = rg.node("CreateHookKeyframe", {"strength_mult": 1.0, "start_percent": 0.1, "prev_hook_kf": ["21", 0]})
        g["23"] = rg.node("SetHookKeyframes", {"hooks": ["20", 0], "hook_kf": ["22", 0]})
        props = {"cond_NEW": pos, "strength": 1.0, "set_cond_area": "default", "hooks": ["23", 0]}
        g["24"] = rg.node("ConditioningSetProperties", props)
        g["10"] = rg.sampler_custom(["1", 0], seed, ["24", 0], ["24", 0], ["6", 0], ["5", 0], ["4", 0])
    g["99"] = rg.save_latent(["11" if "11" in g else "10", 0], "bench/latent")
    return g


def extra_packs(args) -> dict[str, Path]:
    """The custom node folders a server of ``--weights`` needs beside the pack: the benchmark-only conditioning
    node, and ComfyUI-GGUF for GGUF files (extracted once into the base directory)."""
    if args.weights == "checkpoint":
        return {}
    from ddistill_dev.models import gguf_files

    nodes = args.base / "ddistill_bench_probe"
    nodes.mkdir(parents=True, exist_ok=True)
    (nodes / "__init__.py").write_text(PROBE_PACK)
    packs = {"ddistill_bench_probe": nodes}
    if args.weights == "gguf_q8_0":
        root = args.base / "packs" / gguf_files.PACK_MODULE
        if not root.exists():
            gguf_files.extract_pack(root.parent)
        packs[gguf_files.PACK_MODULE] = root
    return packs


def methods(args) -> tuple[str, ...]:
    """Timed methods: hooks only on the checkpoint (ComfyUI's hook LoRAs patch plain weights)."""
    return METHODS if args.weights == "checkpoint" else METHODS[:3]


def run_config(args, config: str) -> dict:
    from ddistill_dev.host.comfy_server import ComfyServer, execution_error, weight_loads

    extra = ()
    if config == "capped" and not args.cpu:
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        extra = ("--reserve-vram", f"{max(total - args.cap_gb, 0):.1f}")
    extra += tuple(shlex.split(args.server_args))
    seeds = iter(range(1000, 10**6))
    rows, notes = [], []
    with ComfyServer(
        args.base, with_fixture_pack=False, extra_args=extra, cpu=args.cpu, extra_packs=extra_packs(args)
    ) as server:
        version = server.comfyui_version()
        dynamic = "DynamicVRAM support detected and enabled" in server.log_text()

        def execute(method, batch, seed):
            """One prompt of ``method``; its history entry."""
            entry = server.run(graph(args, method, seed, batch), timeout=900)
            err = execution_error(entry)
            if err:
                raise RuntimeError(f"{method}: {err.get('exception_message')}")
            return entry

        def run(method, batch):
            """(seconds from ComfyUI's own timestamps, weight loads in the server log) of one run, a new seed."""
            before = len(server.log_text())
            entry = execute(method, batch, next(seeds))
            stamps = {k: m.get("timestamp") for k, m in entry["status"]["messages"]}
            seconds = (stamps["execution_success"] - stamps["execution_start"]) / 1000
            return seconds, weight_loads(server.log_text()[before:])

        def latent(method, batch, seed):
            """The final latent of one run, read back from the file SaveLatent wrote."""
            return server.saved_latent(execute(method, batch, seed), "99")

        def check(batch):
            """Same seed: the hybrid twice and the stock two-sampler chain on the same files (the resident
            path's claim: equal to the chain bit for bit where ComfyUI itself repeats bit for bit)."""
            seed = next(seeds)
            h1, h2, chain = (latent(m, batch, seed) for m in ("pack hybrid", "pack hybrid", "stock two samplers"))
            alone = latent("LoRA model alone", batch, seed)
            out = []
            for name, x, ref in (("hybrid vs hybrid", h1, h2), ("hybrid vs stock chain", h1, chain),
                                 ("LoRA model alone vs stock chain", alone, chain)):  # fmt: skip
                d = difference(x, ref)
                same = "bit-equal" if torch.equal(x, ref) else "differs"
                out.append(f"batch {batch}, same seed, {name}: {same}, max |diff| {d['max_abs']:.3g}, "
                           f"{d['relative']:.3g} of the latent RMS ({d['rms']:.3g})")  # fmt: skip
            return out

        for batch in [int(b) for b in args.batches.split(",")]:
            firsts = [run("pack hybrid", batch)[0] for _ in range(3)]
            notes.append(f"batch {batch}: first three hybrid runs " + ", ".join(f"{t:.2f}s" for t in firsts))
            times = {m: [] for m in METHODS}
            counts = {m: [] for m in METHODS}
            fast, slow = METHODS[:2], ([] if args.fast_only else methods(args)[2:])
            for m in fast:
                run(m, batch)
            for _ in range(args.repeats):
                for m in fast:
                    t, n = run(m, batch)
                    times[m].append(t)
                    counts[m].append(n)
            for m in slow:
                run(m, batch)
                for _ in range(args.stock_repeats):
                    t, n = run(m, batch)
                    times[m].append(t)
                    counts[m].append(n)
                for m2 in fast:  # back to the steady state of the fast methods before the next block
                    run(m2, batch)
            said = [ln for ln in server.log_text().splitlines()
                    if "DDistill" in ln and ("weights differ" in ln or "stock loading" in ln)]  # fmt: skip
            if said:  # the pair's own log line (its memory plan, or why it keeps the stock path): the last one
                notes.append(f"batch {batch}: the pack logged: {said[-1].split('DDistill', 1)[1].lstrip(':')}")
            if args.check:
                notes.extend(check(batch))
            if not args.cpu:
                d0 = server.get("/system_stats").get("devices", [{}])[0]
                free, torch_free = (d0.get(k, 0) / 2**30 for k in ("vram_free", "torch_vram_free"))
                notes.append(f"batch {batch}: after the runs ComfyUI reports {free:.1f} GiB VRAM free "
                             f"({torch_free:.1f} GiB of it in torch's cache)")  # fmt: skip
            alone = statistics.median(times[METHODS[0]])
            for m in [m for m in METHODS if times[m]]:
                med = statistics.median(times[m])
                rows.append({"batch": batch, "method": m, "time": med, "ratio": med / alone,
                             "loads": sum(counts[m]) / len(counts[m])})  # fmt: skip
        stats = server.get("/system_stats")
    dev = stats.get("devices", [{}])[0]
    return {"config": config, "version": version, "dynamic": dynamic, "device": dev.get("name", "?"),
            "rows": rows, "notes": notes}  # fmt: skip


def what(args) -> str:
    """The models and the sampling of a run, in words."""
    if args.weights == "checkpoint":
        return (f"{args.arch} {args.size}x{args.size}, rank-{args.rank} LoRA on every Linear and Conv weight, "
                "loaded from files; 4 lcm steps")  # fmt: skip
    name, lora = quantized_names(args.weights, args.tiny)
    loader = "UnetLoaderGGUF (ComfyUI-GGUF)" if args.weights == "gguf_q8_0" else "UNETLoader"
    return (f"{name} by {loader} + {lora} by LoraLoaderModelOnly; video latent {args.size}x{args.height}, "
            f"{args.length} frames; 4 euler steps, simple schedule")  # fmt: skip


def table(results: list[dict], args) -> str:
    r0 = results[0]
    lines = [
        f"Card: {r0['device']}; ComfyUI {r0['version']} through its server (main.py), Dynamic VRAM "
        f"{'on (ModelPatcherDynamic)' if r0['dynamic'] else 'off (ModelPatcher)'}; "
        f"{what(args)}; median of {args.repeats} (stock: {args.stock_repeats}); capped = --reserve-vram leaving "
        f"{args.cap_gb:g} GiB.",
        "",
        "| config | batch | method | time (s) | x LoRA model alone | loads/run |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["rows"]:
            lines.append(
                f"| {res['config']} | {r['batch']} | {r['method']} | {r['time']:.3f} | {r['ratio']:.3f} | "
                f"{r['loads']:.1f} |"
            )
    return "\n".join(lines + target_lines(results, "pack hybrid")) + "\n"


def main():
    args = parse()
    tmp = None
    if args.base is None:
        tmp = tempfile.TemporaryDirectory(prefix="ddistill_lora_server_")
        args.base = Path(tmp.name)
    args.base = args.base.resolve()
    # the files in a child process, so that its GPU memory is free for the server
    write = (
        f"b.write_files(Path({str(args.base)!r}), {args.arch!r}, {args.rank}, {args.cpu})"
        if args.weights == "checkpoint"
        else f"b.write_quantized_files(Path({str(args.base)!r}), {args.weights!r}, {args.tiny}, {args.cpu})"
    )
    code = (
        f"import sys; from pathlib import Path; sys.argv = sys.argv[:1]; import bench_lora_server as b; print({write})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
    results = [run_config(args, c) for c in args.configs.split(",")]
    text = table(results, args)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
