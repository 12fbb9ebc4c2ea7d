#!/usr/bin/env python3
"""GPU benchmark of LoRA-distilled pairs: the distilled model is a LoRA on its base, so base_model and
distilled_model are two clones of one model (LoraLoaderModelOnly on the same checkpoint).

Full-size SDXL UNet (random fp16 weights, ComfyUI's own classes), 1024x1024, a rank-64 LoRA on every Linear and
Conv weight (fp16, kohya keys, loaded by comfy.sd.load_lora_for_models as LoraLoaderModelOnly does), 4 lcm steps.
Methods, each against "LoRA model alone" (stock sample_custom on the LoRA clone) in the same process:
the pack's hybrid (Base First Step + Distilled Continue, distilled_model unconnected), the same with the base
weights made at forward time (no resident copies: the pack's fallback when they do not fit), and the stock
two-sampler chain on the same clones. Each method: two warm-up runs (steady state from the second run), then the
median of timed runs, the LoRA model alone and the pack hybrid interleaved round by round (so that clock or host
drift hits both alike), the other two each in a block after them; "loads/run" counts ComfyUI's own "loaded
completely/partially" events per run.

  python benchmarks/bench_lora.py --out lora.md          # uncapped and --reserve-vram leaving --cap-gb, one run
  python benchmarks/bench_lora.py --tiny                 # CPU smoke test on the tiny model

Needs a ComfyUI root in $COMFYUI_PATH (default .host/ComfyUI) and a CUDA GPU (except --tiny).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ddistill_dev.host import comfy_host

TARGETS = {"uncapped": 1.10, "capped": 1.30}


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=20, help="timed rounds of the fast methods")
    ap.add_argument("--stock-repeats", type=int, default=4, help="timed runs of the stock chain (seconds each)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--cap-gb", type=float, default=12.0, help="capped: VRAM left to ComfyUI by --reserve-vram")
    ap.add_argument("--configs", default="uncapped,capped")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny SDXL-architecture UNet")
    ap.add_argument("--one", choices=list(TARGETS), help=argparse.SUPPRESS)  # one configuration in this process
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args()


class LoadCounter(logging.Handler):
    """ComfyUI logs each weight load ("loaded completely" / "loaded partially"): every unpatch + re-patch ends so."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.n = 0

    def emit(self, record):
        self.n += record.getMessage().startswith(("loaded completely", "loaded partially"))


def conditioning(tiny):
    import torch

    if tiny:
        from ddistill_dev.models import tiny_models as tm

        return tm.make_conditioning("sdxl", seed=0)
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 77, 2048, generator=g)
    return [[c, {"pooled_output": torch.randn(1, 1280, generator=g), "width": 1024, "height": 1024}]]


def run_one(args) -> dict:
    import torch

    extra, cuda = (), not args.tiny
    if cuda and args.one == "capped":
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        extra = ("--reserve-vram", f"{max(total - args.cap_gb, 0):.1f}")
    comfy_host.boot(extra_args=extra, cpu=not cuda)
    pack = comfy_host.load_pack()
    import importlib

    import comfy.model_management as mm
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    import latent_preview

    from ddistill_dev.models import random_checkpoints as rc
    from ddistill_dev.models import random_lora as rl
    from ddistill_dev.models import tiny_models as tm

    hn = importlib.import_module(pack.__name__ + ".nodes.hybrid_nodes")
    sampling = importlib.import_module(pack.__name__ + ".nodes.sampling")
    lp = importlib.import_module(pack.__name__ + ".nodes.lora_pair")
    maths = importlib.import_module(pack.__name__ + ".ddistill.lora_maths")
    schedules = importlib.import_module(pack.__name__ + ".ddistill.schedules")
    counter = LoadCounter()
    logging.getLogger().addHandler(counter)
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    pbar_off = not comfy.utils.PROGRESS_BAR_ENABLED  # as SamplerCustom and the pack's nodes set it

    if args.tiny:
        root, size, lora_dtype = tm.make_model("sdxl", 1), 16, torch.float32
    else:
        root, size, lora_dtype = rc.unet_model(*rc.config_of("sdxl"), seed=1)[1], 128, torch.float16
        root.model.diffusion_model.to(mm.unet_offload_device())
    t = time.perf_counter()
    lora = rl.lora_state_dict(root.model, rank=args.rank, seed=3, scale=0.3, dtype=lora_dtype)
    distilled = comfy.sd.load_lora_for_models(root, None, lora, 1.0, 0)[0]
    lora_bytes = sum(v.numel() * v.element_size() for v in lora.values())
    print(
        f"LoRA: {len(distilled.patches)} weights, {lora_bytes / 2**30:.2f} GiB, made in {time.perf_counter() - t:.1f}s"
    )
    cond = conditioning(args.tiny)
    lcm = comfy.samplers.sampler_object("lcm")
    sigmas = sampling.model_schedule(distilled, 4, "lcm")
    rows, notes = [], []

    for batch in [int(b) for b in args.batches.split(",")]:
        latent = {"samples": torch.zeros(batch, 4, size, size)}

        def stock(model, noise, sig, x, seed):  # as SamplerCustom runs it: preview callback, its progress-bar flag
            cb = latent_preview.prepare_callback(model, len(sig) - 1)
            return comfy.sample.sample_custom(
                model, noise, 1.0, lcm, sig, cond, cond, x, callback=cb, disable_pbar=pbar_off, seed=seed
            )

        def noise():
            return comfy.sample.prepare_noise(latent["samples"], 0)

        def alone():
            return stock(distilled, noise(), sigmas, latent["samples"], 0)

        def stock_two():
            mid = stock(root, noise(), sigmas[:2], latent["samples"], 0)
            return stock(distilled, torch.zeros_like(mid), sigmas[1:], mid, schedules.derive_seed(0, 1))

        def hybrid(resident=True):
            lp.RESIDENT_BASE_WEIGHTS = resident
            try:
                mid = hn.BaseFirstStepSampler.execute(root, cond, cond, latent, 0, 1.0, 1, 4, "lcm", "lcm").result[0]
                return hn.DistilledContinueSampler.execute(distilled, cond, cond, mid, 1.0).result[0]["samples"]
            finally:
                lp.RESIDENT_BASE_WEIGHTS = True

        def interleaved(fns, repeats):
            """{name: (median seconds, loads per run, peak GiB)}: two warm-up runs each, then ``repeats`` rounds
            that run every function once in turn, so that clock or host drift hits all of them alike."""
            for fn in fns.values():
                for _ in range(2):
                    fn()
            times, loads, peaks = ({k: [] for k in fns} for _ in range(3))
            for _ in range(repeats):
                for k, fn in fns.items():
                    sync()
                    if cuda:
                        torch.cuda.reset_peak_memory_stats()
                    n0, t = counter.n, time.perf_counter()
                    fn()
                    sync()
                    times[k].append(time.perf_counter() - t)
                    loads[k].append(counter.n - n0)
                    peaks[k].append(torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"))
            return {k: (statistics.median(times[k]), sum(loads[k]) / repeats, max(peaks[k])) for k in fns}

        def pair_held():  # GiB the pair's holders have on the load device now (in every row's peak once held)
            pair = lp.existing_pair(root, distilled)
            return (pair.memory()["copies_loaded"] + pair.memory()["factors_loaded"]) / 2**30 if pair else 0.0

        def pair_note():
            pair = lp.existing_pair(root, distilled)
            if pair is None or pair.plan is None:
                return "stock path"
            swaps, made = pair.plan.counts()
            mem = pair.memory()
            return (
                f"{swaps} resident ({mem['copies_loaded'] / 2**30:.2f} GiB), {made} made per layer"
                f" ({len(pair.delta_keys)} by delta, factors {mem['factors_loaded'] / 2**30:.2f} GiB on GPU)"
            )

        methods = [
            ("LoRA model alone (stock, 4 lcm steps)", alone, args.repeats),
            ("pack hybrid (LoRA pair path)", hybrid, args.repeats),
            ("pack hybrid, base weights made at forward time", lambda: hybrid(False), args.repeats),
            ("stock two samplers on the two clones", stock_two, args.stock_repeats),
        ]
        if batch == int(args.batches.split(",")[0]):  # the first hybrid runs of the pair: pairing, copies built
            firsts = []
            for _ in range(3):
                sync()
                t = time.perf_counter()
                hybrid()
                sync()
                firsts.append(time.perf_counter() - t)
            notes.append(f"first three hybrid runs at batch {batch}: " + ", ".join(f"{x:.3f}s" for x in firsts))
        # the target pair interleaved; the forward-time variant (another plan) and the stock chain (it unpatches
        # the model) each in their own block after it
        (a_name, a_fn, reps), (h_name, h_fn, _) = methods[:2]
        results = interleaved({a_name: a_fn, h_name: h_fn}, reps)
        notes_by = {h_name: pair_note()}
        for name, fn, repeats in methods[2:]:
            results.update(interleaved({name: fn}, repeats))
            notes_by[name] = pair_note() if name.startswith("pack hybrid") else ""
        for name, *_ in methods:
            note = notes_by.get(name, "")
            rows.append({"batch": batch, "method": name, "time": results[name][0], "loads": results[name][1],
                         "peak": results[name][2], "held": pair_held(), "note": note})  # fmt: skip
        ref_final = stock_two()
        for label, out in (("resident", hybrid()), ("forward-time", hybrid(False))):
            d = maths.difference(out, ref_final)
            equal = "bit-equal" if torch.equal(out.cpu(), ref_final.cpu()) else "differs"
            notes.append(
                f"batch {batch}, hybrid {label} vs stock chain: {equal}, max |diff| {d['max_abs']:.3g}, "
                f"{d['relative']:.3g} of the latent RMS ({d['rms']:.3g})"
            )
        alone_t = results[methods[0][0]][0]
        for r in rows:
            if r["batch"] == batch:
                r["ratio"] = r["time"] / alone_t
    device = torch.cuda.get_device_name(0) if cuda else "CPU (tiny model)"
    return {"config": args.one, "device": device, "torch": torch.__version__, "rows": rows, "notes": notes,
            "comfyui": comfy_host.comfyui_version(),
            "free_gib": mm.get_free_memory(mm.get_torch_device()) / 2**30}  # fmt: skip


def table(results: list[dict], cap_gb: float) -> str:
    dev = results[0]["device"]
    lines = [
        f"Card: {dev}; torch {results[0]['torch']}; ComfyUI {results[0].get('comfyui', '?')}.",
        "SDXL UNet 1024x1024 (random fp16), rank-64 LoRA",
        f"on every Linear and Conv weight, 4 lcm steps; capped = `--reserve-vram` leaving {cap_gb:g} GiB to ComfyUI.",
        "",
        "| config | batch | method | time (s) | x LoRA model alone | loads/run | peak VRAM (GiB) | pair holds (GiB) "
        "| base weights |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["rows"]:
            lines.append(
                f"| {res['config']} | {r['batch']} | {r['method']} | {r['time']:.3f} | {r['ratio']:.3f} | "
                f"{r['loads']:.1f} | {r['peak']:.1f} | {r.get('held', float('nan')):.2f} | {r['note']} |"
            )
    return "\n".join(lines + target_lines(results, "pack hybrid (LoRA pair path)")) + "\n"


def target_lines(results: list[dict], method: str) -> list[str]:
    """The targets table (``method``'s ratio to the LoRA model alone, per configuration and batch) and the notes;
    shared with ``bench_lora_server.py``."""
    lines = ["", "| config | target (hybrid / LoRA model alone) | measured | met? |", "|---|---|---|---|"]
    for res in results:
        target = TARGETS[res["config"]]
        ratios = [(r["batch"], r["ratio"]) for r in res["rows"] if r["method"] == method]
        measured = ", ".join(f"{x:.3f}x (batch {b})" for b, x in ratios)
        met = "yes" if all(x <= target for _, x in ratios) else "no"
        lines.append(f"| {res['config']} | <= {target:.2f}x | {measured} | {met} |")
    lines.append("")
    return lines + [f"- {res['config']}: {n}" for res in results for n in res["notes"]]


def main():
    args = parse()
    if args.one or args.tiny:
        args.one = args.one or "uncapped"
        res = run_one(args)
        if args.json:
            args.json.write_text(json.dumps(res))
        else:
            print(table([res], args.cap_gb))
        return
    results = []
    out_dir = (args.out.parent if args.out else Path(".")).resolve()
    for cfg in args.configs.split(","):  # one process each: --reserve-vram is a ComfyUI start option
        js = out_dir / f"bench_lora_{cfg}.json"
        cmd = [sys.executable, __file__, "--one", cfg, "--json", str(js), "--batches", args.batches,
               "--repeats", str(args.repeats), "--stock-repeats", str(args.stock_repeats), "--rank", str(args.rank),
               "--cap-gb", str(args.cap_gb)]  # fmt: skip
        rc = subprocess.call(cmd)
        if rc == 0 and js.exists():
            results.append(json.loads(js.read_text()))
        else:
            print(f"{cfg}: exit {rc}", file=sys.stderr)
    text = table(results, args.cap_gb) if results else "(no results)\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
