#!/usr/bin/env python3
"""GPU benchmark of the hybrid through the pack's nodes, against stock ComfyUI in the same run.

Full-size SDXL (1024x1024) and SD 2.1 (512x512) UNet architectures with random fp16 weights, and the Z-Image /
Z-Image-Turbo flow pair (6B DiT, bf16, 1024x1024, 8 euler steps on the `simple` schedule as Z-Image-Turbo's card
and ComfyUI template run it), built by ComfyUI's own classes; both models of a pair are real, separate networks.
Timings are medians of warm runs (models loaded), each reported as a ratio to "distilled alone" (stock
`comfy.sample.sample_custom` on the distilled schedule) at the same batch.

  python benchmarks/bench_gpu.py main --out table.md
  python benchmarks/bench_gpu.py lowvram --cap-gb 12 --out lowvram.md   # ComfyUI's --reserve-vram caps free VRAM
  python benchmarks/bench_gpu.py handover --out handover.md   # Z-Image pair: the noise-level handover's cost
  python benchmarks/bench_gpu.py handover --smoke --repeats 3   # the same methods, tiny Z-Image on the CPU (a check)

Needs a ComfyUI root in $COMFYUI_PATH (default .host/ComfyUI) and a CUDA GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ddistill_dev.host import comfy_host

ROOT = Path(__file__).resolve().parent.parent


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["main", "lowvram", "handover"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cap-gb", type=float, default=12.0, help="lowvram: VRAM left free for ComfyUI")
    ap.add_argument("--archs", default="sdxl,sd21")
    ap.add_argument("--batches", default=None, help="default 1,4,16 (handover: 1,4)")
    ap.add_argument("--repeats", type=int, default=15, help="timed runs at batch 1 (a third of it, at least 3, above)")
    ap.add_argument("--base-cfg", type=float, default=None, help="handover: the base's cfg (default: Z-Image's, 4)")
    ap.add_argument("--smoke", action="store_true", help="handover: tiny Z-Image on the CPU, to check the mode")
    args = ap.parse_args()
    args.batches = args.batches or ("1,4" if args.mode == "handover" else "1,4,16")
    return args


def boot(args):
    extra = ()
    if args.mode == "lowvram":
        import torch

        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        extra = ("--reserve-vram", f"{max(total - args.cap_gb, 0):.1f}")
    comfy_host.boot(extra_args=extra, cpu=args.smoke)
    return comfy_host.load_pack()


# arch: (scheduler, sampler, distilled steps, latent channels, latent side at the benchmark resolution, weights dtype)
ARCHS = {
    "sdxl": ("lcm", "lcm", 4, 4, 128, "float16"),
    "sd21": ("lcm", "lcm", 4, 4, 64, "float16"),
    "zimage": ("simple", "euler", 8, 16, 128, "bfloat16"),
}


def make_pair(arch):
    """Two separate full-size networks (random weights), offloaded until ComfyUI loads them."""
    import comfy.model_management as mm
    import torch

    from ddistill_dev.models import random_checkpoints as rc

    dtype = getattr(torch, ARCHS[arch][5])
    pair = [rc.unet_model(*rc.config_of(arch), seed=seed, dtype=dtype)[1] for seed in (1, 2)]
    for patcher in pair:
        patcher.model.diffusion_model.to(mm.unet_offload_device())
    return pair


def conditioning(arch, batch):
    import torch

    g = torch.Generator().manual_seed(0)
    if arch == "zimage":  # Qwen3-4B hidden states, padded to 32 tokens
        return [[torch.randn(1, 32, 2560, generator=g), {}]]
    if arch == "sdxl":
        c = torch.randn(1, 77, 2048, generator=g)
        return [[c, {"pooled_output": torch.randn(1, 1280, generator=g), "width": 1024, "height": 1024}]]
    return [[torch.randn(1, 77, 1024, generator=g), {}]]


def timed_interleaved(fns, repeats):
    """Median time and peak VRAM of each function: one warm-up each (loads the models), then ``repeats`` rounds
    that run every function once in turn, so that clock or load drift hits all methods alike."""
    import torch

    cuda = torch.cuda.is_available()  # False only in handover --smoke (CPU): no sync, peak 0
    sync = torch.cuda.synchronize if cuda else lambda: None
    times = {name: [] for name, _ in fns}
    peaks = {}
    for name, fn in fns:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        fn()
        sync()
        peaks[name] = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    for _ in range(repeats):
        for name, fn in fns:
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), peaks[name]) for name, _ in fns}


def methods(pack, base, distilled, arch, batch):
    import importlib

    import comfy.sample
    import comfy.samplers
    import latent_preview
    import torch

    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    cb = importlib.import_module(pack.__name__ + ".nodes.sampling")
    scheduler, sampler_name, steps, channels, size, _ = ARCHS[arch]
    latent = {"samples": torch.zeros(batch, channels, size, size)}
    cond = conditioning(arch, batch)
    sigmas = cb.model_schedule(distilled, steps, scheduler)
    lcm = comfy.samplers.sampler_object(sampler_name)

    def stock(model, noise, cfg, sampler, sig, x, seed):  # as SamplerCustomAdvanced runs it, preview callback included
        cbk = latent_preview.prepare_callback(model, len(sig) - 1)
        return comfy.sample.sample_custom(
            model, noise, cfg, sampler, sig, cond, cond, x, callback=cbk, disable_pbar=True, seed=seed
        )

    def noise():  # as RandomNoise makes it, inside the timing as for the pack's nodes
        return comfy.sample.prepare_noise(latent["samples"], 0)

    def distilled_alone():
        stock(distilled, noise(), 1.0, lcm, sigmas, latent["samples"], 0)

    def stock_two():
        mid = stock(base, noise(), 1.0, lcm, sigmas[:2], latent["samples"], 0)
        stock(distilled, torch.zeros_like(mid), 1.0, lcm, sigmas[1:], mid, 1)

    def hybrid(cfg):
        def run():
            mid = hn.BaseFirstStepSampler.execute(
                base, cond, cond, latent, 0, cfg, 1, steps, scheduler, sampler_name, None, "", distilled
            ).result[0]
            hn.DistilledContinueSampler.execute(distilled, cond, cond, mid, 1.0)

        return run

    def skip_first():
        hn.SkipFirstStep.execute(distilled, cond, cond, latent, 0, 1.0, steps, scheduler, sampler_name)

    def pack_distilled():  # the pack's segment runner (x̂0 recording) on the same 4 steps as distilled_alone
        cb.run_segment(distilled, cond, cond, latent, noise(), 1.0, sampler_name, sigmas, 0, "distilled", 0)

    def base_50():
        s = comfy.samplers.calculate_sigmas(base.get_model_object("model_sampling"), "normal", 50).cpu()
        stock(base, noise(), 7.0, comfy.samplers.sampler_object("euler"), s, latent["samples"], 0)

    out = [
        (f"distilled alone (stock, {steps} {sampler_name} steps)", distilled_alone),
        (f"pack: distilled {steps} steps with x̂0 recording", pack_distilled),
        ("stock two samplers (base sigmas[0:2] + distilled sigmas[1:])", stock_two),
        ("pack hybrid, base cfg 1", hybrid(1.0)),
        ("pack hybrid, base cfg 5", hybrid(5.0)),
        (f"pack skip first step ({steps - 1} steps)", skip_first),
    ]
    if batch == 1 and arch != "zimage":  # a 50-step 6B base run would cost more GPU time than the rest together
        out.append(("base alone, 50 euler steps, cfg 7", base_50))
    return out


def loads_per_run(pack, base, distilled, arch, batch):
    """How many times each model is loaded onto the GPU during one hybrid run of the whole batch."""
    import importlib

    import torch

    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    _, _, _, channels, size, _ = ARCHS[arch]
    latent, cond = {"samples": torch.zeros(batch, channels, size, size)}, conditioning(arch, batch)
    pair = {"base": base, "distilled": distilled}
    resident = lambda: {k: m.model.model_loaded_weight_memory for k, m in pair.items()}  # noqa: E731
    snapshots = [resident()]
    mid = hn.BaseFirstStepSampler.execute(base, cond, cond, latent, 0, 1.0, 1, 4, "lcm", "lcm").result[0]
    snapshots.append(resident())
    hn.DistilledContinueSampler.execute(distilled, cond, cond, mid, 1.0)
    snapshots.append(resident())
    return {k: sum(b[k] > a[k] for a, b in zip(snapshots, snapshots[1:])) for k in pair}


def handover_pair(smoke):
    """(base, distilled, conditioning(batch), latent shape): full-size Z-Image DiTs, or tiny ones on the CPU."""
    if not smoke:
        base, distilled = make_pair("zimage")
        _, _, _, channels, size, _ = ARCHS["zimage"]
        return base, distilled, lambda batch: conditioning("zimage", batch), (channels, size, size)
    from ddistill_dev.models import tiny_models as tm

    base, distilled = (tm.make_family_model("zimage", seed) for seed in (1, 2))
    return base, distilled, lambda batch: tm.family_conditioning("zimage"), tm.FAMILIES["zimage"][4]


def handover_methods(pack, base, distilled, cond, shape, batch, base_cfg):
    """The noise-level handover's cost: (a) distilled alone, (b) the noise-level handover (base_steps 0) at base
    cfg 1, (c) the same at the base's cfg, (d) base_steps 1 at cfg 1, and the stock two-sampler chain at the rule's
    k as a reference. Returns [(name, fn, expected ratio)], the expected ratio being model passes / the distilled
    model's steps (a base step at cfg > 1 is two passes: cond and uncond), and the rule's handover point."""
    import importlib

    import comfy.sample
    import comfy.samplers
    import latent_preview
    import torch

    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    cb = importlib.import_module(pack.__name__ + ".nodes.sampling")
    ho = importlib.import_module(pack.__name__ + ".ddistill.handover")
    protocol = importlib.import_module(pack.__name__ + ".ddistill.protocol")
    scheduler, sampler_name, steps, *_ = ARCHS["zimage"]
    latent = {"samples": torch.zeros(batch, *shape)}
    sigmas = cb.model_schedule(distilled, steps, scheduler)
    euler = comfy.samplers.sampler_object(sampler_name)

    def base_first(cfg, base_steps):
        return hn.BaseFirstStepSampler.execute(
            base, cond, cond, latent, 0, cfg, base_steps, steps, scheduler, sampler_name, None, "", distilled
        ).result[0]

    point = ho.read_handover(base_first(1.0, 0), protocol.HANDOVER_KEY).point  # the rule's k on this schedule
    k = point.k

    def stock(model, noise, cfg, sig, x, seed):  # as SamplerCustomAdvanced runs it, preview callback included
        cbk = latent_preview.prepare_callback(model, len(sig) - 1)
        return comfy.sample.sample_custom(
            model, noise, cfg, euler, sig, cond, cond, x, callback=cbk, disable_pbar=True, seed=seed
        )

    def noise():  # as RandomNoise makes it, inside the timing as for the pack's nodes
        return comfy.sample.prepare_noise(latent["samples"], 0)

    def distilled_alone():
        stock(distilled, noise(), 1.0, sigmas, latent["samples"], 0)

    def stock_two():
        mid = stock(base, noise(), 1.0, sigmas[: k + 1], latent["samples"], 0)
        stock(distilled, torch.zeros_like(mid), 1.0, sigmas[k:], mid, 1)

    def hybrid(cfg, base_steps):
        def run():
            hn.DistilledContinueSampler.execute(distilled, cond, cond, base_first(cfg, base_steps), 1.0)

        return run

    def expected(k_base, cfg):
        return (steps - k_base + k_base * (2 if cfg != 1.0 else 1)) / steps

    rule = f"base_steps 0 -> k = {k}"
    return [
        (f"(a) distilled alone (stock, {steps} {sampler_name} steps {scheduler})", distilled_alone, 1.0),
        (f"(b) pack hybrid, {rule}, base cfg 1", hybrid(1.0, 0), expected(k, 1.0)),
        (f"(c) pack hybrid, {rule}, base cfg {base_cfg:g}", hybrid(base_cfg, 0), expected(k, base_cfg)),
        ("(d) pack hybrid, base_steps 1 (k = 1), base cfg 1", hybrid(1.0, 1), expected(1, 1.0)),
        (f"(ref) stock two samplers at k = {k} (base sigmas[0:{k + 1}] + distilled sigmas[{k}:]), cfg 1", stock_two,
         expected(k, 1.0)),
    ], point  # fmt: skip


def run_handover(args, pack):
    import comfy.model_management as mm
    import torch

    from ddistill_dev.workflows.workflow_families import ZIMAGE

    base_cfg = ZIMAGE.cfg if args.base_cfg is None else args.base_cfg
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (smoke: tiny Z-Image)"
    base, distilled, cond_of, shape = handover_pair(args.smoke)
    head = [
        f"Card: {card}; torch {torch.__version__}; ComfyUI {comfy_version()}; mode handover; "
        f"{'tiny Z-Image pair (smoke)' if args.smoke else 'Z-Image + Z-Image-Turbo architecture (6B DiT each)'}, "
        f"random {'fp32' if args.smoke else 'bf16'} weights, latent {'x'.join(map(str, shape))}; "
        f"median of {args.repeats} warm runs at batch 1, {max(args.repeats // 3, 3)} above (methods interleaved)",
    ]
    rows = [
        "| batch | method | time (s) | x (a) | expected x (model passes / 8) | peak VRAM (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for batch in [int(b) for b in args.batches.split(",")]:
        fns, point = handover_methods(pack, base, distilled, cond_of(batch), shape, batch, base_cfg)
        if len(head) == 1:
            head.append(f"Rule's handover on the distilled schedule: {point.describe(ARCHS['zimage'][2])}")
        repeats = args.repeats if batch == 1 else max(args.repeats // 3, 3)
        results = timed_interleaved([(n, f) for n, f, _ in fns], repeats)
        ref = results[fns[0][0]][0]
        for name, _, exp in fns:
            t, peak = results[name]
            rows.append(f"| {batch} | {name} | {t:.3f} | {t / ref:.3f} | {exp:.3f} | {peak:.1f} |")
            print(rows[-1], flush=True)
    del base, distilled
    mm.unload_all_models()
    mm.soft_empty_cache()
    return head + [""] + rows


def main():
    args = parse()
    pack = boot(args)
    if args.mode == "handover":
        text = "\n".join(run_handover(args, pack)) + "\n"
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    import comfy.model_management as mm
    import torch

    card = torch.cuda.get_device_name(0)
    lines = [
        f"Card: {card}; torch {torch.__version__}; ComfyUI {comfy_version()}; mode {args.mode}"
        + (f" (free VRAM capped at {args.cap_gb:g} GiB with --reserve-vram)" if args.mode == "lowvram" else ""),
        "",
        "| arch | batch | method | time (s) | x distilled alone | peak VRAM (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    batches = [int(b) for b in args.batches.split(",")]
    if args.mode == "lowvram":
        batches = [16]
    for arch in args.archs.split(","):
        base, distilled = make_pair(arch)
        for batch in batches:
            fns = [
                (n, f)
                for n, f in methods(pack, base, distilled, arch, batch)
                if args.mode == "main" or n.startswith(("distilled alone", "pack hybrid, base cfg 1", "stock two"))
            ]
            slow = [(n, f) for n, f in fns if n.startswith("base alone")]
            fast = [(n, f) for n, f in fns if not n.startswith("base alone")]
            repeats = args.repeats if batch == 1 else max(args.repeats // 3, 3)
            if args.mode == "lowvram":  # one method at a time: interleaving would make every method swap models
                results = {}
                for item in fast:
                    results.update(timed_interleaved([item], repeats))
            else:
                results = timed_interleaved(fast, repeats)
            results.update(timed_interleaved(slow, 3))
            ref = results[fast[0][0]][0]
            for name, _ in fns:
                t, peak = results[name]
                lines.append(f"| {arch} | {batch} | {name} | {t:.3f} | {t / ref:.3f} | {peak:.1f} |")
                print(lines[-1], flush=True)
            if args.mode == "lowvram":
                c = loads_per_run(pack, base, distilled, arch, batch)
                lines.append(
                    f"| {arch} | {batch} | loads per hybrid run of the whole batch | base {c['base']}, "
                    f"distilled {c['distilled']} | | |"
                )
                print(lines[-1], flush=True)
        del base, distilled
        mm.unload_all_models()
        mm.soft_empty_cache()
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


def comfy_version():
    try:
        import comfyui_version

        return comfyui_version.__version__
    except ImportError:
        return "unknown"


if __name__ == "__main__":
    main()
