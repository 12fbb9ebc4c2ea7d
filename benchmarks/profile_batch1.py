#!/usr/bin/env python3
"""Where the batch-1 time of the pack's hybrid goes, against the stock two-sampler chain.

Two separate full-size UNets (random weights, ComfyUI's own classes) as base and distilled model, batch 1, the
methods of ``bench_gpu.py`` (stock chain: ``sample_custom`` on sigmas[0:2] then sigmas[1:], the progress bar set
as SamplerCustom sets it). First ``--rounds`` interleaved rounds (median of each), then cProfile over ``--profiled``
runs of each: the host time per run of the pack's own functions and the functions whose time per run differs most
between the two (what the pack adds or changes on the host).

  python benchmarks/profile_batch1.py --arch sdxl --out profile.md
  python benchmarks/profile_batch1.py --tiny          # CPU smoke test on tiny models
  python benchmarks/profile_batch1.py --pair lora --dynamic --batch 4   # ComfyUI 0.33: Dynamic VRAM, checkpoint file
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ddistill_dev.host import comfy_host


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sdxl", choices=["sdxl", "sd21", "zimage"])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--profiled", type=int, default=15)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--pair", default="separate", choices=["separate", "lora"],
                    help="two separate UNets (baseline: the stock chain), or the base + a rank-64 LoRA clone on "
                    "every Linear and Conv weight (baseline: the LoRA model alone)")  # fmt: skip
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dynamic", action="store_true",
                    help="ComfyUI 0.33+: Dynamic VRAM started as its main.py starts it, the base model loaded "
                    "from a checkpoint file by load_checkpoint_guess_config; with --pair lora")  # fmt: skip
    ap.add_argument("--reloads", type=int, default=20, help="times load_models_gpu is timed on the loaded model")
    ap.add_argument("--out", type=Path)
    return ap.parse_args()


OTHER = ("/.host/", "/.venv/", "/benchmarks/")  # folders under the checkout that are not the pack's code


def per_run(stats: pstats.Stats, runs: int) -> dict:
    """{(file, line, function): (own seconds per run, cumulative seconds per run)}."""
    return {k: (v[2] / runs, v[3] / runs) for k, v in stats.stats.items()}


def name(key) -> str:
    file, line, func = key
    short = "/".join(Path(file).parts[-2:]) if file != "~" else ""
    return f"`{short}:{line} {func}`" if short else f"`{func}`"


def from_file(arch: str):
    """(base, None): a checkpoint (random weights) written by ``comfy.sd.save_checkpoint`` and its model loaded
    back by ``comfy.sd.load_checkpoint_guess_config`` (CheckpointLoaderSimple's loader: a ModelPatcherDynamic
    under Dynamic VRAM)."""
    import tempfile

    import comfy.sd

    bench_gpu = importlib.import_module("bench_gpu")
    path = Path(tempfile.gettempdir()) / "ddistill_profile" / f"{arch}.safetensors"  # kept for the next run
    if not path.exists():  # written by a process without Dynamic VRAM (it builds the text encoders on "meta")
        code = (
            "import sys, torch; from ddistill_dev import comfy_host, random_checkpoints as rc; "
            "path, arch, dtype = sys.argv[1:4]; comfy_host.boot(cpu=False, import_nodes=False); "
            "rc.write_checkpoint(path, *rc.config_of(arch), seed=1, dtype=getattr(torch, dtype))"
        )
        subprocess.run([sys.executable, "-c", code, str(path), arch, bench_gpu.ARCHS[arch][5]], check=True)
    return comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False, output_clip=False)[0], None


def reload_seconds(model, runs: int) -> float:
    """Median seconds of ``load_models_gpu([model])`` when ``model`` is the loaded one (what each sampling call of
    a graph pays before its first step)."""
    import comfy.model_management as mm
    import torch

    mm.load_models_gpu([model])
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        mm.load_models_gpu([model])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    args = parse()
    if args.dynamic and (args.tiny or args.pair != "lora"):
        raise SystemExit("--dynamic needs the GPU and --pair lora")
    comfy_host.boot(cpu=args.tiny, dynamic_vram=args.dynamic)
    pack = comfy_host.load_pack()
    import comfy.sample
    import comfy.samplers
    import comfy.utils
    import latent_preview
    import torch

    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    sampling = importlib.import_module(pack.__name__ + ".nodes.sampling")
    schedules = importlib.import_module(pack.__name__ + ".ddistill.schedules")
    cuda = not args.tiny
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if args.tiny:
        from ddistill_dev.models import tiny_models as tm

        base, distilled = tm.make_model("sdxl", 1), tm.make_model("sdxl", 2)
        cond, latent = tm.make_conditioning("sdxl", seed=0), {"samples": torch.zeros(1, 4, 16, 16)}
        steps, scheduler, sampler_name = 4, "lcm", "lcm"
    else:
        bench_gpu = importlib.import_module("bench_gpu")  # the sibling script (its folder is sys.path[0])
        base, distilled = from_file(args.arch) if args.dynamic else bench_gpu.make_pair(args.arch)
        scheduler, sampler_name, steps, channels, size, _ = bench_gpu.ARCHS[args.arch]
        cond, latent = bench_gpu.conditioning(args.arch, 1), {"samples": torch.zeros(args.batch, channels, size, size)}
    if args.pair == "lora":
        import comfy.sd

        from ddistill_dev.models import random_lora as rl

        dtype = torch.float32 if args.tiny else torch.float16
        lora = rl.lora_state_dict(base.model, rank=64, seed=3, scale=0.3, dtype=dtype)
        distilled = comfy.sd.load_lora_for_models(base, None, lora, 1.0, 0)[0]
    sampler = comfy.samplers.sampler_object(sampler_name)
    sigmas = sampling.model_schedule(distilled, steps, scheduler)
    pbar_off = not comfy.utils.PROGRESS_BAR_ENABLED  # as SamplerCustom and the pack's nodes set it

    def stock(model, noise, sig, x, seed):
        cb = latent_preview.prepare_callback(model, len(sig) - 1)
        return comfy.sample.sample_custom(
            model, noise, 1.0, sampler, sig, cond, cond, x, callback=cb, disable_pbar=pbar_off, seed=seed
        )

    def chain():
        x = latent["samples"]
        mid = stock(base, comfy.sample.prepare_noise(x, 0), sigmas[:2], x, 0)
        return stock(distilled, torch.zeros_like(mid), sigmas[1:], mid, schedules.derive_seed(0, 1))

    def hybrid():
        mid = hn.BaseFirstStepSampler.execute(
            base, cond, cond, latent, 0, 1.0, 1, steps, scheduler, sampler_name, None, "", distilled
        ).result[0]
        return hn.DistilledContinueSampler.execute(distilled, cond, cond, mid, 1.0).result[0]["samples"]

    def alone():
        x = latent["samples"]
        return stock(distilled, comfy.sample.prepare_noise(x, 0), sigmas, x, 0)

    equal = torch.equal(chain().cpu(), hybrid().cpu())
    baseline = "stock two samplers" if args.pair == "separate" else "LoRA model alone"
    methods = {baseline: chain if args.pair == "separate" else alone, "pack hybrid": hybrid}
    if args.dynamic:  # A/B: the base segment asking load_models_gpu too (a second ModelPatcherDynamic load)
        lp = importlib.import_module(pack.__name__ + ".nodes.lora_pair")

        def hybrid_reloading():
            lp.REUSE_DYNAMIC_LOAD = False
            try:
                return hybrid()
            finally:
                lp.REUSE_DYNAMIC_LOAD = True

        methods["pack hybrid, base segment reloading"] = hybrid_reloading
    for fn in methods.values():
        fn()
    times = {k: [] for k in methods}
    for _ in range(args.rounds):
        for k, fn in methods.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    reload = reload_seconds(distilled, args.reloads) if cuda else None
    profiles = {}
    for k, fn in methods.items():
        prof = cProfile.Profile()
        sync()
        prof.enable()
        for _ in range(args.profiled):
            fn()
        sync()
        prof.disable()
        profiles[k] = per_run(pstats.Stats(prof), args.profiled)
    chain_p, hybrid_p = profiles[baseline], profiles["pack hybrid"]
    device = torch.cuda.get_device_name(0) if cuda else "CPU (tiny models)"
    lines = [
        f"Card: {device}; torch {torch.__version__}; ComfyUI {comfy_host.comfyui_version()}; "
        f"{args.arch if cuda else 'tiny sdxl'}, batch {args.batch}, {steps} "
        f"{sampler_name} steps, {'two separate UNets' if args.pair == 'separate' else 'base + rank-64 LoRA clone'}; "
        f"median of {args.rounds} interleaved rounds; hybrid equals the stock chain bit for bit: {equal}.",
        "",
        f"| method | time (ms) | x {baseline} |",
        "|---|---|---|",
    ]
    c = med[baseline]
    lines += [f"| {k} | {v * 1000:.2f} | {v / c:.4f} |" for k, v in med.items()]
    if reload is not None:
        lines += [
            "",
            f"Patcher: `{type(distilled).__name__}`; `load_models_gpu` on the loaded LoRA model (median of "
            f"{args.reloads}): {reload * 1000:.2f} ms.",
        ]
    pack_root = str(comfy_host.PACK_ROOT)
    own = sorted(
        ((k, v) for k, v in hybrid_p.items() if k[0].startswith(pack_root) and not any(d in k[0] for d in OTHER)),
        key=lambda kv: -kv[1][1],
    )
    lines += ["", "Pack functions in the hybrid (cProfile, host ms per run):", "", "| function | own | cumulative |"]
    lines += ["|---|---|---|"] + [f"| {name(k)} | {o * 1e3:.3f} | {cu * 1e3:.3f} |" for k, (o, cu) in own[: args.top]]
    diff = sorted(
        ((k, hybrid_p.get(k, (0, 0))[0] - chain_p.get(k, (0, 0))[0]) for k in set(hybrid_p) | set(chain_p)),
        key=lambda kv: -abs(kv[1]),
    )
    lines += ["", f"Largest differences in own host time per run (hybrid - {baseline}, ms):", "", "| function | ms |"]
    lines += ["|---|---|"] + [f"| {name(k)} | {d * 1e3:+.3f} |" for k, d in diff[: args.top]]
    cum = sorted(
        ((k, hybrid_p.get(k, (0, 0))[1] - chain_p.get(k, (0, 0))[1]) for k in set(hybrid_p) | set(chain_p)),
        key=lambda kv: -abs(kv[1]),
    )
    lines += ["", f"Largest differences in cumulative host time per run (hybrid - {baseline}, ms):", ""]
    lines += ["| function | ms |", "|---|---|"] + [f"| {name(k)} | {d * 1e3:+.3f} |" for k, d in cum[: args.top]]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
