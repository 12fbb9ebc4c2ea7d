#!/usr/bin/env python3
"""Diversity Meter speed and memory: embed a batch (chunked, one network pass per image), all pairwise distances,
statistics with the bootstrap interval. Prints a markdown table. No ComfyUI needed (the backends get an explicit
device, plain torch placement); needs torch, timm, and for DreamSim the dreamsim package (+ peft, open_clip).

Targets: 100 images of 1024x1024 through DreamSim's ensemble architecture in at most 1 s on an
H100-class GPU; the offline EfficientNet-Lite0 backend on 2 CPU cores in at most 10 s.

  python benchmarks/bench_diversity.py --device cuda                       # DreamSim ensemble + EfficientNet
  python benchmarks/bench_diversity.py --device cpu --threads 2 --backends effnet
  python benchmarks/bench_diversity.py --device cuda --chunks 8,32,100     # memory bounded by the chunk size
  python benchmarks/bench_diversity.py --comfyui                           # through ComfyUI's device choice
                                                                           # (ModelPatcher), + parity check

DreamSim runs with random weights written in the package's exact cache layout (ddistill_dev/models/dreamsim_fixtures.py;
~1 GB, in --dreamsim-cache or a temporary folder): same architecture and cost as the real weights. Pass
--dreamsim-cache DIR with real weights to time those instead. Images start on the CPU, as ComfyUI's IMAGE does,
so the host-to-device copy is part of the time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddistill import diversity, embedding
from ddistill.protocol import DREAMSIM_BACKEND, EFFNET_BACKEND
from ddistill_dev.host import comfy_host


def make(name: str, comfyui: bool, device, weights_dir: str | None = None):
    """The backend, placed by plain torch on ``device`` or, with ``--comfyui``, by ComfyUI's model management
    exactly as the nodes place it (``nodes/metric_loading.py``, the pack loaded as ComfyUI loads it)."""
    if not comfyui:
        return embedding.get_backend(name, device=device, weights_dir=weights_dir)
    comfy_host.boot(cpu=device.type == "cpu")
    loading = importlib.import_module(comfy_host.load_pack().__name__ + ".nodes.metric_loading")
    folders = (lambda: [weights_dir]) if weights_dir else loading.register_folder
    return embedding.make_backend(name, placer=loading.ComfyPlacer(), folders=folders)


def parity(backend, images):
    """Largest |embedding distance - the package's model(preprocess(a), preprocess(b))| over the pairs of a few
    images, ``preprocess`` being the package's own transform on the PIL images ComfyUI's SaveImage would write."""
    import itertools

    import numpy as np
    from PIL import Image

    d = backend.pairwise(backend.embed(images))
    pils = [Image.fromarray(np.clip(255.0 * i.cpu().numpy(), 0, 255).astype(np.uint8)) for i in images]
    x = torch.cat([backend.preprocess(p) for p in pils])
    dev = next(backend._net.parameters()).device
    pairs = list(itertools.combinations(range(len(x)), 2))
    a, b = (x[[p[k] for p in pairs]].to(dev) for k in (0, 1))
    with torch.no_grad():
        ref = backend._net(a, b).float().cpu()
    return max(abs(float(d[i, j]) - float(r)) for (i, j), r in zip(pairs, ref))


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="dreamsim,effnet", help="comma list of: dreamsim, effnet")
    ap.add_argument("--n", type=int, default=100, help="images per batch")
    ap.add_argument("--size", type=int, default=1024, help="image side in pixels")
    ap.add_argument("--chunks", default="32", help="comma list of chunk sizes (images per network pass)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--dreamsim-cache", default=None, help="folder with DreamSim weights (else random, temporary)")
    ap.add_argument(
        "--comfyui",
        action="store_true",
        help="load the networks through ComfyUI (ModelPatcher, "
        "load_models_gpu on its device choice) instead of plain torch; needs a ComfyUI root",
    )
    ap.add_argument("--out", type=Path)
    return ap.parse_args()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_images(n, size, seed=0):
    """Smooth random pictures [n, size, size, 3] in [0, 1] on the CPU (content does not change the cost)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 16, 16, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear").permute(0, 2, 3, 1).contiguous()


def run_once(backend, dv, images, chunk, n_boot, device):
    sync(device)
    t0 = time.perf_counter()
    emb = backend.embed(images, chunk_size=chunk)
    sync(device)
    t1 = time.perf_counter()
    d = backend.pairwise(emb)
    summary, _ = dv.summarize(d, n_boot=n_boot, seed=0)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, summary


def bench(name, backend, dv, images, chunks, args, device):
    rows = []
    for chunk in chunks:
        run_once(backend, dv, images[: min(len(images), chunk)], chunk, 100, device)  # load + warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = [run_once(backend, dv, images, chunk, args.bootstrap, device) for _ in range(args.repeats)]
        embed = statistics.median(t[0] for t in times)
        stats = statistics.median(t[1] for t in times)
        peak = (
            f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB GPU"
            if device.type == "cuda"
            else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB RSS (process max)"
        )
        rows.append(
            [
                name,
                str(device),
                str(len(images)),
                f"{args.size}x{args.size}",
                str(chunk),
                f"{embed:.3f}",
                f"{stats:.3f}",
                f"{embed + stats:.3f}",
                peak,
                f"{times[-1][2].mean:.4f}",
            ]
        )
        print(f"  {name} chunk {chunk}: {embed + stats:.3f} s", file=sys.stderr, flush=True)
    return rows


def main():
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = make_images(args.n, args.size)
    chunks = [int(c) for c in args.chunks.split(",")]
    rows, notes = [], []
    for which in args.backends.split(","):
        if which == "effnet":
            rows += bench(
                EFFNET_BACKEND, make(EFFNET_BACKEND, args.comfyui, device), diversity, images, chunks, args, device
            )
        elif which == "dreamsim":
            folder = args.dreamsim_cache
            tmp = None
            if folder is None or embedding.missing_files(folder, "ensemble"):
                from ddistill_dev.models.dreamsim_fixtures import write_dreamsim_cache

                if folder is None:
                    tmp = tempfile.TemporaryDirectory()
                    folder = tmp.name
                print(f"  writing random DreamSim ensemble weights to {folder}", file=sys.stderr, flush=True)
                write_dreamsim_cache(folder, "ensemble")
            backend = make(DREAMSIM_BACKEND, args.comfyui, device, folder)
            rows += bench(
                DREAMSIM_BACKEND + ("" if args.dreamsim_cache else " (random weights)"),
                backend,
                diversity,
                images,
                chunks,
                args,
                device,
            )
            notes.append(
                f"dreamsim_ensemble: max |embedding distance - package model(a, b)| over 10 pairs of 5 "
                f"images: {parity(backend, images[:5]):.2e}"
            )
            backend.free()
            if tmp:
                tmp.cleanup()
        else:
            raise SystemExit(f"--backends: unknown '{which}'; use dreamsim and/or effnet")
    head = [
        "backend",
        "device",
        "N",
        "image",
        "chunk",
        "embed s",
        "pairs+stats s",
        "total s",
        "peak memory",
        "mean dist",
    ]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    how = "through ComfyUI (ModelPatcher)" if args.comfyui else "plain torch placement"
    lines = [
        f"Diversity Meter benchmark ({gpu}; torch {torch.__version__}; {how}; median of {args.repeats}; "
        f"bootstrap {args.bootstrap})",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows] + [""] + notes
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
