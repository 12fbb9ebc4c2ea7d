#!/usr/bin/env python3
"""Run every example workflow end to end on a GPU machine with full-size random-weight models.

1. ``write``: builds each model file the workflows expect (``ddistill_dev/workflows/workflow_catalog.py``:
   ``MODELS``) from ComfyUI's own model classes with the real architectures (SDXL, SD 2.1, PixArt-alpha DiT,
   T5-XXL, SD VAE) and random weights, and writes it under the expected name in ``<base>/models/<folder>/`` --
   checkpoints with ``comfy.sd.save_checkpoint`` (what the CheckpointSave node uses), diffusion models / text
   encoders / VAEs as plain state dicts, LoRAs / sliders in the kohya ``lora_unet_*`` format over every SDXL
   attention projection.
2. ``run``: starts a real ComfyUI server (``main.py``) on 127.0.0.1 with that base directory and the pack, queues
   every API workflow (``workflows/api/*.json``, batch set through the node titled ``batch``), waits for each
   and prints a table (status, seconds, images per method, Diversity Meter numbers where present).

Needs only a working ComfyUI (``--comfyui``, default ``$COMFYUI_PATH`` or ``.host/ComfyUI``) and torch for
``write``; ``run`` also needs the pack's runtime requirements (``requirements.txt``: the Diversity Meter's
offline backend). Without the frontend package the server starts API-only (``--front-end-root``).
Seen on one H100: writing all 13 files (37 GB) took 78-85 s; all 18 workflows ran (batch 2) in about
3 minutes, also after the distilled-alone rows moved to SamplerCustom + Distilled Schedule.

The 2025-26 families (workflows 10a-10e: Z-Image, Qwen-Image, SD3.5 Large, FLUX.1, Wan 2.2) need 21 more files,
183 GB together (``ddistill_dev/models/random_families.py`` streams them from ComfyUI's own classes). They do not fit on
one disk at once, so ``all`` goes workflow by workflow for them (``--per-workflow``, the default as soon as one
selected workflow needs a family file): write that workflow's files, run it through a fresh server, delete the
files no later selected workflow needs (only those written by this program). ``--dry-run`` lists every file with
its size and what each workflow needs on disk. Seen on one H200 (64 GiB disk; the Diversity Meter nodes taken out
of the API files on that machine, whose Python lacks the meter's offline backend package): writing took 41-70 s
per workflow (28-53 GiB), the five ran (batch 2) in 29-152 s each, base / distilled / hybrid all producing their
images, no key missing in ComfyUI's loaders. Example::

    python -m ddistill_dev.gpu.gpu_workflows --base /tmp/ddistill_gpu write
    python -m ddistill_dev.gpu.gpu_workflows --base /tmp/ddistill_gpu run --batch 2 --out results.json
    python -m ddistill_dev.gpu.gpu_workflows --base /tmp/ddistill_gpu all --only 10a_zimage_turbo --dry-run
    python -m ddistill_dev.gpu.gpu_workflows --base /tmp/ddistill_gpu all \
        --only 10a_zimage_turbo 10b_qwen_image_lightning
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

from ddistill.protocol import METER_UI_KEY, X0_UI_KEY

from ..host import comfy_host
from ..host.comfy_host import PACK_ROOT
from ..host.comfy_server import ComfyServer
from ..models import random_families, random_lora
from ..models.random_checkpoints import SD21_UNET, SDXL_UNET, random_vae, randomize, unet_model, write_checkpoint
from ..workflows.workflow_catalog import EXPERIMENTS, MODELS

MODULE = "ddistill_dev.gpu.gpu_workflows"  # what the child processes run (``__name__`` is ``__main__`` under ``-m``)
# Full-size architectures (as ComfyUI's model detection reads them from the released files).
PIXART_1024 = {
    "image_model": "pixart_alpha",
    "num_heads": 16,
    "patch_size": 2,
    "hidden_size": 1152,
    "in_channels": 4,
    "depth": 28,
    "model_max_length": 120,
    "input_size": 128,
    "pe_interpolation": 2,
    "micro_condition": True,
}
SDXL_CHECKPOINTS = (
    "sd_xl_base_1.0.safetensors",
    "sd_xl_turbo_1.0_fp16.safetensors",
    "sdxl_lightning_4step.safetensors",
)
SD21_CHECKPOINTS = ("v2-1_512-ema-pruned.safetensors", "sd_turbo.safetensors")
SDXL_LORAS = (
    "dmd2_sdxl_4step_lora_fp16.safetensors",
    "lcm-lora-sdxl.safetensors",
    "sdxl_age_slider.safetensors",
    "dmd2_age_slider.safetensors",
)
PIXART_FILES = ("PixArt-XL-2-1024-MS.safetensors", "PixArt-LCM-XL-2-1024-MS.safetensors")


def log(msg: str) -> None:
    print(f"[gpu_workflows] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------- model files
def _device(cpu: bool):
    import comfy.model_management

    return comfy.model_management.get_torch_device() if not cpu else "cpu"


def _unet_model(config_cls, unet_config, seed, cpu):
    return unet_model(config_cls, unet_config, seed, _device(cpu))


def write_lora(path: Path, sdxl_model, seed: int, rank: int = 4) -> None:
    """A kohya-format LoRA (``random_lora``: ``lora_unet_*.lora_down/lora_up/alpha``, fp16) over every attention
    projection of the SDXL UNet, small random values (an update of about 1e-3 * sqrt(rank) / sqrt(fan_in) per
    element): LoraLoaderModelOnly patches 700+ weights."""
    import torch

    lora = random_lora.lora_state_dict(
        sdxl_model.model, rank=rank, seed=seed, scale=1e-3 * rank**0.5, dtype=torch.float16, only=".attn"
    )
    if not lora:
        raise RuntimeError("no SDXL attention weights found for the LoRA")
    random_lora.save(path, lora)


def pixart_extra_keys(cfg: dict = PIXART_1024) -> dict:
    """Keys a released PixArt checkpoint has beyond ComfyUI's parameters: the fixed 2D sin-cos ``pos_embed``
    buffer, whose shape ComfyUI's detection reads for ``input_size`` / ``pe_interpolation`` (values unused)."""
    import torch

    n = (cfg["input_size"] // cfg["patch_size"]) ** 2
    return {"pos_embed": torch.zeros(1, n, cfg["hidden_size"], dtype=torch.float16)}


def write_pixart(path: Path, seed: int, cpu: bool) -> None:
    import comfy.supported_models
    import comfy.utils
    import torch

    _, model = _unet_model(comfy.supported_models.PixArtAlpha, PIXART_1024, seed, cpu)
    state = model.model.diffusion_model.state_dict()
    sd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}
    sd.update(pixart_extra_keys())
    if path.suffix == ".pth":
        torch.save(sd, str(path))
    else:
        comfy.utils.save_torch_file(sd, str(path))


def write_t5xxl(path: Path, seed: int, cpu: bool) -> None:
    import comfy.ops
    import comfy.text_encoders.t5 as t5
    import comfy.utils
    import torch

    config = json.loads((Path(t5.__file__).parent / "t5_config_xxl.json").read_text())
    model = t5.T5(config, torch.float16 if not cpu else torch.float32, _device(cpu), comfy.ops.manual_cast)
    randomize(model, seed)
    comfy.utils.save_torch_file(
        {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}, str(path)
    )


def write_vae(path: Path, seed: int) -> None:
    import comfy.utils

    comfy.utils.save_torch_file(random_vae(seed).get_sd(), str(path))


def model_path(base: Path, name: str) -> Path:
    return base / "models" / MODELS[name].folder / name


# Approximate sizes of the files the legacy writers build in memory (parameters x bytes: fp16 UNets / PixArt / T5,
# fp32 VAEs); the family files' sizes are exact, from their specs.
LEGACY_BYTES = {
    **{n: 6_938_000_000 for n in SDXL_CHECKPOINTS},
    **{n: 2_580_000_000 for n in SD21_CHECKPOINTS},
    **{n: 2_260_000 for n in SDXL_LORAS},
    **{n: 1_224_000_000 for n in PIXART_FILES},
    "t5xxl_fp16.safetensors": 9_524_000_000,
    "vae-ft-mse-840000-ema-pruned.safetensors": 334_600_000,
}


def file_bytes(name: str) -> int:
    if name in random_families.FILES:
        return random_families.spec_bytes(random_families.spec_of(name))
    return LEGACY_BYTES.get(name, 0)


def dry_run(base: Path, exps) -> None:
    """Every file the workflows expect, its size, whether it is there; what each workflow needs on disk at once."""
    names = sorted({f for e in exps for f in e.files})
    size = {n: file_bytes(n) for n in names}
    print(f"{'file':64} {'folder':17} {'GiB':>7}  state")
    for n in names:
        state = "exists" if model_path(base, n).exists() else "to write"
        kind = "random_families" if n in random_families.FILES else "legacy writer (size approx.)"
        print(f"{n:64} {MODELS[n].folder:17} {size[n] / 2**30:7.2f}  {state}, {kind}")
    print(f"all files: {sum(size.values()) / 2**30:.1f} GiB")
    for e in exps:
        print(f"  {e.name}: {sum(size[f] for f in e.files) / 2**30:.1f} GiB ({len(e.files)} files)")
    parent = next(p for p in [base, *base.parents] if p.exists())
    print(f"free under {parent}: {shutil.disk_usage(parent).free / 2**30:.1f} GiB")


def write_models(base: Path, files: set[str], cpu: bool, force: bool) -> None:
    import comfy.model_management
    import comfy.supported_models as sm
    import torch

    def target(name):
        p = model_path(base, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    todo = {f for f in files if force or not target(f).exists()}
    log(f"{len(todo)} of {len(files)} model files to write under {base}/models")
    sdxl = None
    for i, name in enumerate(sorted(todo)):
        t0 = time.time()
        if name in SDXL_CHECKPOINTS:
            sdxl = write_checkpoint(target(name), sm.SDXL, SDXL_UNET, 100 + i, _device(cpu))
        elif name in SD21_CHECKPOINTS:
            write_checkpoint(target(name), sm.SD20, SD21_UNET, 200 + i, _device(cpu))
        elif name in SDXL_LORAS:
            if sdxl is None:
                _, sdxl = _unet_model(sm.SDXL, SDXL_UNET, 99, cpu)
            write_lora(target(name), sdxl, 300 + i)
        elif name in PIXART_FILES:
            write_pixart(target(name), 400 + i, cpu)
        elif name in random_families.FILES:  # streamed: log its own line, nothing kept in memory
            need, free = file_bytes(name), shutil.disk_usage(target(name).parent).free
            if need > free:
                raise RuntimeError(f"{name} needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free under {base}")
            random_families.write(target(name), name, zlib.crc32(name.encode()) % 10_000, _device(cpu), log)
            continue
        elif name == "t5xxl_fp16.safetensors":
            write_t5xxl(target(name), 500, cpu)
        elif MODELS[name].folder == "vae":
            write_vae(target(name), 600 + i)
        else:
            raise ValueError(f"no writer for {name}")
        comfy.model_management.soft_empty_cache()
        log(f"wrote {target(name)} ({target(name).stat().st_size / 2**30:.2f} GiB, {time.time() - t0:.0f} s)")
        if name not in SDXL_CHECKPOINTS:
            torch.cuda.empty_cache() if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------------------------ run workflows
def run_one(server: ComfyServer, name: str, prompt: dict, batch: int, timeout: float) -> dict:
    for node in prompt.values():
        if node.get("_meta", {}).get("title", "").strip().lower() == "batch":
            node["inputs"]["batch_size"] = batch
    t0 = time.time()
    status, body = server.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
    if status != 200:
        return {"workflow": name, "status": "rejected", "seconds": 0, "error": json.dumps(body)[:800]}
    pid = body["prompt_id"]
    while time.time() - t0 < timeout:
        hist = server.get(f"/history/{pid}")
        if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
            break
        time.sleep(0.5)
    else:
        server.post("/interrupt", {})
        return {"workflow": name, "status": "timeout", "seconds": round(time.time() - t0, 1)}
    entry = hist[pid]
    result = {
        "workflow": name,
        "status": entry["status"]["status_str"],
        "seconds": round(time.time() - t0, 1),
        "images": {},
        "diversity": {},
        "x0": {},
    }
    for kind, msg in entry["status"].get("messages", []):
        if kind == "execution_error":
            result["error"] = f"{msg.get('node_type')}: {msg.get('exception_message', '')[:600]}"
    for node_id, out in entry.get("outputs", {}).items():
        title = prompt[node_id].get("_meta", {}).get("title", node_id)
        method = title.replace("method: ", "")
        if prompt[node_id]["class_type"] == "SaveImage":
            result["images"][method] = len(out.get("images", []))
        elif out.get(METER_UI_KEY):  # the Diversity Meter's numbers (random weights: only that it ran)
            result["diversity"][method] = round(out[METER_UI_KEY][0]["a"]["mean"], 4)
        elif out.get(X0_UI_KEY):  # x̂0 Preview's curve: mean distance to the final image by step
            entry = out[X0_UI_KEY][0]
            result["x0"][method] = {s: round(d, 4) for s, d in zip(entry["steps"], entry["mean_distance"])}
    return result


def run_workflows(root: Path, base: Path, names: list[str], batch: int, python: str, cpu: bool, timeout: float):
    server = ComfyServer(base, with_fixture_pack=False, cpu=cpu, python=python, root=root).start(timeout=300)
    results = []
    try:
        for name in names:
            prompt = json.loads((PACK_ROOT / "workflows" / "api" / f"{name}.json").read_text())
            log(f"running {name}")
            results.append(run_one(server, name, prompt, batch, timeout))
            log(json.dumps(results[-1]))
    finally:
        server.stop()
    return results


def table(results, device: str) -> str:
    lines = [
        f"device: {device}",
        "| workflow | status | seconds | images per method | meter per method | error |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        imgs = ", ".join(f"{k}={v}" for k, v in sorted(r.get("images", {}).items()))
        meters = ", ".join(f"{k}={v}" for k, v in sorted(r.get("diversity", {}).items()))
        lines.append(
            f"| {r['workflow']} | {r['status']} | {r['seconds']} | {imgs} | {meters} | {r.get('error', '')[:200]} |"
        )
    return "\n".join(lines)


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a safetensors file random_families wrote (its header's metadata says so)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return 0 < n < 100_000_000 and "ddistill" in json.loads(f.read(n)).get("__metadata__", {})
    except (OSError, ValueError):
        return False


def device_name(cpu: bool) -> str:
    if cpu:
        return "cpu"
    q = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    return subprocess.run(q, capture_output=True, text=True).stdout.strip()


def report(results, cpu: bool, out: str | None) -> int:
    device = device_name(cpu)
    print(table(results, device))
    if out:
        Path(out).write_text(json.dumps({"device": device, "results": results}, indent=1))
    return 0 if results and all(r["status"] == "success" for r in results) else 1


def run_per_workflow(args, root: Path, base: Path, exps) -> list[dict]:
    """For each workflow: write its files (a child process, so that its GPU memory is free for the server), run it
    through a fresh server, then delete the files no later workflow needs that this program wrote."""
    results = []
    for i, e in enumerate(exps):
        later = {f for x in exps[i + 1 :] for f in x.files}
        before = {f for f in e.files if model_path(base, f).exists()}
        argv = ["write", "--comfyui", str(root), "--base", str(base), "--only", e.name]
        argv += ["--cpu"] * args.cpu + ["--force"] * args.force
        t0 = time.time()
        rc = subprocess.run([sys.executable, "-m", MODULE, *argv]).returncode
        t_write = time.time() - t0
        written = [f for f in e.files if f not in before and model_path(base, f).exists()]
        gib = sum(model_path(base, f).stat().st_size for f in written) / 2**30
        log(f"{e.name}: wrote {len(written)} files ({gib:.1f} GiB) in {t_write:.0f} s")
        if rc:
            results.append({"workflow": e.name, "status": "write failed", "seconds": 0, "error": f"write rc {rc}"})
        else:
            results += run_workflows(root, base, [e.name], args.batch, args.python, args.cpu, args.timeout)
        results[-1]["write_seconds"] = round(t_write, 1)
        gone = 0
        for f in e.files:
            p = model_path(base, f)
            if f in later or args.keep or not p.exists() or not (f in written or is_ours(p)):
                continue
            gone += p.stat().st_size
            p.unlink()
        base.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(base).free / 2**30
        r = results[-1]
        log(f"{e.name}: {r['status']} in {r['seconds']} s; deleted {gone / 2**30:.1f} GiB, {free:.1f} GiB free")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["write", "run", "all"])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or str(PACK_ROOT / ".host" / "ComfyUI"))
    ap.add_argument("--base", default="/tmp/ddistill_gpu", help="ComfyUI base directory (models/, custom_nodes/)")
    ap.add_argument("--only", nargs="*", help="workflow names (default: all)")
    ap.add_argument("--batch", type=int, default=2, help="batch size set on the node titled 'batch'")
    ap.add_argument("--cpu", action="store_true", help="CPU only (slow; for small checks)")
    ap.add_argument("--force", action="store_true", help="rewrite model files that exist")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per workflow")
    ap.add_argument("--python", default=sys.executable, help="python that runs the ComfyUI server")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="list the files, their sizes and state; write nothing")
    ap.add_argument(
        "--per-workflow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="all: write, run, delete workflow by workflow (default: on when a workflow needs a family file)",
    )
    ap.add_argument("--keep", action="store_true", help="per workflow: keep the files (delete nothing)")
    args = ap.parse_args()
    root, base = Path(args.comfyui).resolve(), Path(args.base).resolve()
    exps = [e for e in EXPERIMENTS if not args.only or e.name in args.only]
    if args.only and len(exps) != len(args.only):
        ap.error(f"unknown workflow in --only; known: {[e.name for e in EXPERIMENTS]}")
    exps = [e for e in exps if all(f in MODELS for f in e.files)]
    if args.dry_run:
        comfy_host.boot(cpu=True, root=root, import_nodes=False)
        dry_run(base, exps)
        return 0
    per_workflow = args.per_workflow
    if per_workflow is None:
        per_workflow = any(f in random_families.FILES for e in exps for f in e.files)
    if args.action == "all" and per_workflow:
        return report(run_per_workflow(args, root, base, exps), args.cpu, args.out)
    if args.action == "all":  # write in a child process so that its GPU memory is free for the server
        argv = [a if a != "all" else "write" for a in sys.argv[1:]]
        if subprocess.run([sys.executable, "-m", MODULE, *argv]).returncode:
            return 1
    elif args.action == "write":
        comfy_host.boot(cpu=args.cpu, root=root, import_nodes=False)
        write_models(base, {f for e in exps for f in e.files}, args.cpu, args.force)
    if args.action in ("run", "all"):
        results = run_workflows(root, base, [e.name for e in exps], args.batch, args.python, args.cpu, args.timeout)
        return report(results, args.cpu, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
