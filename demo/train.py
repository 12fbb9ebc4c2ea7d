"""Train a demo pair (seeded, CPU, one thread): the eps pair with the digit classifier, or the flow pair's student.

    .venv/bin/python demo/train.py              # eps pair: digits_base, digit_classifier, digits_student
    .venv/bin/python demo/train.py --pair flow  # flow pair: digits_flow_student (the base is digits_base)

Both write their settings and sha256 into demo/weights/training_log.json (the flow pair under "flow").
1. Base model: the exact posterior-mean denoiser of 1297 scikit-learn digits (its "weights" are the
   images themselves, ddistill/demo_model.py:PosteriorMeanDenoiser / PosteriorMeanFlowDenoiser).
2. Digit classifier (eps run): an MLP trained on the other 500 digits (mode-coverage measure of the report).
3. Student: eps, a 4-step lcm model (t = 999, 759, 499, 259); flow, an 8-step lcm model on ComfyUI's
   ``simple`` schedule of ModelSamplingDiscreteFlow(shift 3). Initialised by regression onto the base
   denoiser (as DMD2 initialises the student from the teacher), then trained with Distribution Matching
   Distillation against the base (demo/distill.py).
Afterwards paste the printed sha256 values into nodes/demo_nodes.py (WEIGHT_SHA256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from pathlib import Path

import torch

from ddistill import demo_model as dm
from demo import classifier as clf_mod
from demo.common import NUM_TRAIN, SPLIT_SEED, WEIGHTS
from demo.distill import dmd_target, lcm_chain_inputs, ve_noising

LCM_TIMESTEPS = [999, 759, 499, 259]
SEED = 0
PAIRS = ("eps", "flow")
STUDENT_FILES = {"eps": "digits_student.safetensors", "flow": "digits_flow_student.safetensors"}


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits in [-1, 1] as [N, 64]: (train images, train labels, held-out images, labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images.reshape(-1, 64) / 16.0 * 2.0 - 1.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    tr, ho = perm[:NUM_TRAIN], perm[NUM_TRAIN:]
    return x[tr], y[tr], x[ho], y[ho]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recipe(dm, pair: str) -> dict:
    """What differs between the pairs: the student class, its noise levels (in its own units: digit-space sigma
    for eps, flow sigma for flow), the log-uniform range of the 30% random levels (the base's sigma range), how a
    noisy digit-space latent is written and the base's exact denoiser in those units."""
    if pair == "eps":
        return {
            "student": dm.DigitStudent,
            "sigmas": [float(s) / dm.NOISE_SHRINK for s in dm.training_sigmas()[LCM_TIMESTEPS]],
            "log_range": (math.log(0.03 / dm.NOISE_SHRINK), math.log(15.0 / dm.NOISE_SHRINK)),
            "noising": ve_noising,
            "denoise": dm.posterior_mean,
        }
    if pair == "flow":
        return {
            "student": dm.DigitFlowStudent,
            "sigmas": [float(s) for s in dm.flow_simple_sigmas(dm.FLOW_STEPS, dm.FLOW_SHIFT)[:-1]],
            "log_range": (math.log(0.003), math.log(1.0)),
            "noising": dm.flow_noising,
            "denoise": dm.flow_posterior_mean,
        }
    raise ValueError(f"pair: expected one of {PAIRS}, got {pair!r}")


def train_student(
    dm, images: torch.Tensor, warmup_iters: int, dmd_iters: int, batch: int = 256, log=print, pair: str = "eps"
):
    r = recipe(dm, pair)
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    student = r["student"]()
    sig_d, (lo, hi), noising, denoise = r["sigmas"], r["log_range"], r["noising"], r["denoise"]
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for it in range(warmup_iters):  # regression onto the teacher's denoiser
        x0 = images[torch.randint(0, len(images), (batch,), generator=g)]
        s = torch.tensor(sig_d)[torch.randint(0, len(sig_d), (batch,), generator=g)]
        s = torch.where(torch.rand(batch, generator=g) < 0.3, torch.empty(batch).uniform_(lo, hi, generator=g).exp(), s)
        y = noising(x0, s[:, None], torch.randn(x0.shape, generator=g))
        with torch.no_grad():
            target = denoise(y, s, images)
        loss = (student.predict_x0(y, s) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % 1000 == 0:
            log(f"  warmup {it + 1}/{warmup_iters}: mse {loss.item():.4f}")
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    t_all = dm.training_sigmas()
    for it in range(dmd_iters):  # distribution matching on every step of the student's own chain
        inputs = lcm_chain_inputs(student, sig_d, batch, g, noising)
        loss = 0.0
        for k, y in enumerate(inputs):
            x0 = student.predict_x0(y, torch.full((batch,), sig_d[k]))
            # both pairs: the eps base's timesteps 20..979 in digit space (the flow choice: demo/TRAINING.md)
            s = t_all[torch.randint(20, 980, (batch,), generator=g)] / dm.NOISE_SHRINK
            target = dmd_target(x0, images, s, torch.randn(x0.shape, generator=g), dm.posterior_mean)
            loss = loss + 0.5 * (x0 - target).square().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % 100 == 0:
            log(f"  dmd {it + 1}/{dmd_iters}: loss {float(loss.detach()):.4f}")
    return student.eval(), sig_d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", choices=PAIRS, default="eps", help="which demo pair to train (default: eps)")
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--warmup-iters", type=int, default=3000)
    ap.add_argument("--dmd-iters", type=int, default=800)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "training_log.json"
    previous = json.loads(log_path.read_text()) if log_path.is_file() else {}
    if args.pair == "eps":
        log = train_eps(args)
        if "flow" in previous:  # the other pair's section stays
            log["flow"] = previous["flow"]
    else:
        log = previous
        log["flow"] = train_flow(args)
    log["sha256"] = {f: sha256(args.out / f) for f in sorted(p.name for p in args.out.glob("*.safetensors"))}
    log_path.write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps(log, indent=1))


def train_eps(args) -> dict:
    from safetensors.torch import save_file

    t0 = time.time()
    x_tr, y_tr, x_ho, y_ho = digits_split()
    save_file({"images": x_tr.contiguous(), "labels": y_tr.contiguous()}, str(args.out / "digits_base.safetensors"))

    clf = clf_mod.train_classifier(x_ho, y_ho, seed=SEED)
    with torch.no_grad():
        acc = float((clf(x_tr).argmax(1) == y_tr).float().mean())
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(args.out / "digit_classifier.safetensors"))
    print(f"classifier: trained on {len(x_ho)} held-out digits, accuracy on the {len(x_tr)} base digits {acc:.3f}")

    t1 = time.time()
    student, sig_d = train_student(dm, x_tr, args.warmup_iters, args.dmd_iters)
    t2 = time.time()
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(args.out / STUDENT_FILES["eps"]))
    return {
        "seed": SEED,
        "train_images": len(x_tr),
        "heldout_images": len(x_ho),
        "classifier_accuracy_on_train_split": acc,
        "warmup_iters": args.warmup_iters,
        "dmd_iters": args.dmd_iters,
        "batch": 256,
        "torch_threads": args.threads,
        "seconds_total": round(time.time() - t0, 1),
        "seconds_student": round(t2 - t1, 1),
        "student_sigmas_digit_space": sig_d,
        **_platform(),
    }


def train_flow(args) -> dict:
    """The flow pair's student; its base is the stored digits_base (the same 1297 digits, in flow form)."""
    from safetensors.torch import save_file

    x_tr = digits_split()[0]
    t0 = time.time()
    student, sigmas = train_student(dm, x_tr, args.warmup_iters, args.dmd_iters, pair="flow")
    seconds = round(time.time() - t0, 1)
    path = args.out / STUDENT_FILES["flow"]
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(path))
    return {
        "file": path.name,
        "sha256": sha256(path),
        "seed": SEED,
        "train_images": len(x_tr),
        "model": f"rectified flow (CONST), ModelSamplingDiscreteFlow shift {dm.FLOW_SHIFT}, multiplier "
        f"{dm.FLOW_MULTIPLIER}",
        "student_steps": dm.FLOW_STEPS,
        "student_sigmas_flow": sigmas,
        "warmup_iters": args.warmup_iters,
        "warmup_lr": 1e-3,
        "warmup_random_share": 0.3,
        "warmup_random_sigma_range": [0.003, 1.0],
        "dmd_iters": args.dmd_iters,
        "dmd_lr": 1e-4,
        "dmd_noise_levels": "eps base timesteps 20..979, digit-space sigma (as the eps student)",
        "batch": 256,
        "torch_threads": args.threads,
        "seconds_student": seconds,
        **_platform(),
    }


def _platform() -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_name(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
