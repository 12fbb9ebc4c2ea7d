#!/usr/bin/env python3
"""x̂0 recording overhead: the same ``comfy.sample.sample_custom`` sampling with and without the pack's x̂0
recording, printed as a markdown table (target: recording costs at most 3% of sampling time at 1024x1024 on a GPU).

Variants, all from the same noise on the same loaded model:
  no callback      callback=None
  stock callback   latent_preview.prepare_callback (what stock SamplerCustom passes): the baseline
  pack recorder    the pack samplers' callback (nodes/recorder.py StepRecorder: x̂0 to the CPU per step + stock)
  Record x̂0 wrap   stock callback + the Record x̂0 Sampler wrapper around the SAMPLER (stock graphs)
  pack recorder + live frames   the pack recorder with the live filmstrip on, as under a server (a sink stands
                   in for the socket): each step's Latent2RGB preview + JPEG, made on the recorder's sender thread

  python benchmarks/bench_x0.py                 # full-size SDXL UNet (random fp16 weights) on CUDA, else tiny on CPU
  python benchmarks/bench_x0.py --size tiny     # tiny SDXL-architecture UNet on CPU (seconds)
  python benchmarks/bench_x0.py --size full --batches 1,4 --repeats 7 --out x0.md

Needs a ComfyUI root in $COMFYUI_PATH (default .host/ComfyUI).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from pathlib import Path

from ddistill_dev.host import comfy_host

ROOT = Path(__file__).resolve().parent.parent


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["auto", "full", "tiny"], default="auto")
    ap.add_argument("--resolution", type=int, default=None, help="pixels (default 1024 full, 128 tiny)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--sampler", default="lcm")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    return ap.parse_args()


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _once(fn):
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def timed_interleaved(fns: dict, repeats: int) -> dict:
    """Median time of each variant, the variants taking turns (so drift and neighbours' load hit all alike)."""
    for fn in fns.values():
        fn()  # warm-up (loads the model, compiles kernels)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_once(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def full_sdxl():
    from ddistill_dev.models import random_checkpoints as rc

    return rc.unet_model(*rc.config_of("sdxl"), seed=1)[1]


def conditioning(res):
    import torch

    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 77, 2048, generator=g)
    return [[c, {"pooled_output": torch.randn(1, 1280, generator=g), "width": res, "height": res}]]


class _Sink:  # stands in for the PromptServer: the frame is built and handed over, nothing is sent
    client_id = None

    def send_sync(self, event, data, sid=None):
        pass


def main():
    args = parse()
    import torch

    full = args.size == "full" or (args.size == "auto" and torch.cuda.is_available())
    comfy_host.boot(cpu=not full)
    pack = comfy_host.load_pack()
    bridge = importlib.import_module(pack.__name__ + ".nodes.sampling")
    preview_nodes = importlib.import_module(pack.__name__ + ".nodes.preview_nodes")
    recorder = importlib.import_module(pack.__name__ + ".nodes.recorder")
    import comfy.sample
    import comfy.samplers
    import latent_preview

    from ddistill_dev.models import tiny_models

    res = args.resolution or (1024 if full else 128)
    model = full_sdxl() if full else tiny_models.make_model("sdxl", 1)
    cond = conditioning(res)
    sigmas = bridge.model_schedule(model, args.steps, "lcm")
    device = torch.cuda.get_device_name(0) if full else "CPU"
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        latent = torch.zeros(batch, 4, res // 8, res // 8)
        noise = comfy.sample.prepare_noise(latent, 0)

        def run(callback=None, wrap=False):
            sampler = comfy.samplers.sampler_object(args.sampler)
            if wrap:
                sampler = preview_nodes.RecordX0Sampler.execute(sampler, "bench").result[0]
            return comfy.sample.sample_custom(
                model, noise, 1.0, sampler, sigmas, cond, cond, latent, callback=callback, disable_pbar=True, seed=0
            )

        def live():  # the recorder as the pack's samplers run it under a server, live frames on
            rec = recorder.patcher_recorder(model, sigmas, "bench", 0)
            fmt = model.model.latent_format
            rec.live.server, rec.live.enabled = _Sink(), True
            rec.live.previewer = latent_preview.Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias)
            try:
                return run(rec)
            finally:
                rec.flush()

        variants = {
            "no callback": lambda: run(None),
            "stock callback": lambda: run(latent_preview.prepare_callback(model, args.steps)),
            "pack recorder": lambda: run(recorder.patcher_recorder(model, sigmas, "bench", 0)),
            "pack recorder + live frames": live,
            "Record x̂0 wrap": lambda: run(latent_preview.prepare_callback(model, args.steps), wrap=True),
        }
        times = timed_interleaved(variants, args.repeats)
        base = times["stock callback"]
        for name, t in times.items():
            rows.append((name, batch, t, 100.0 * (t - base) / base))

    lines = [
        f"x̂0 recording overhead: {device}, SDXL UNet ({'full size, fp16' if full else 'tiny'}), {res}x{res}, "
        f"{args.steps} {args.sampler} steps, median of {args.repeats} interleaved warm runs",
        "",
        "| variant | batch | time (s) | vs stock callback |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {b} | {t:.4f} | {o:+.2f}% |" for n, b, t, o in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
