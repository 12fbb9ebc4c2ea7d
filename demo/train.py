"""Train the demo pair and the digit classifier (seeded, CPU, about 4 minutes on one core).

    .venv/bin/python demo/train.py            # writes demo/weights/*.safetensors and training_log.json

1. Base model: the exact posterior-mean denoiser of 1297 scikit-learn digits (its "weights" are the
   images themselves, ddistill/demo_model.py:PosteriorMeanDenoiser).
2. Digit classifier: an MLP trained on the other 500 digits (mode-coverage measure of the report).
3. Student: a 4-step lcm model (t = 999, 759, 499, 259), initialised by regression onto the base
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
from demo import classifier as clf_mod  # noqa: E402
from demo.common import WEIGHTS, digits_split  # noqa: E402
from demo.distill import dmd_target, lcm_chain_inputs  # noqa: E402

LCM_TIMESTEPS = [999, 759, 499, 259]
SEED = 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_student(dm, images: torch.Tensor, warmup_iters: int, dmd_iters: int, batch: int = 256, log=print):
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    student = dm.DigitStudent()
    sig_d = [float(s) / dm.NOISE_SHRINK for s in dm.training_sigmas()[LCM_TIMESTEPS]]
    lo, hi = math.log(0.03 / dm.NOISE_SHRINK), math.log(15.0 / dm.NOISE_SHRINK)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for it in range(warmup_iters):  # regression onto the teacher's denoiser
        x0 = images[torch.randint(0, len(images), (batch,), generator=g)]
        s = torch.tensor(sig_d)[torch.randint(0, 4, (batch,), generator=g)]
        s = torch.where(torch.rand(batch, generator=g) < 0.3, torch.empty(batch).uniform_(lo, hi, generator=g).exp(), s)
        y = x0 + s[:, None] * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            target = dm.posterior_mean(y, s, images)
        loss = (student.predict_x0(y, s) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % 1000 == 0:
            log(f"  warmup {it + 1}/{warmup_iters}: mse {loss.item():.4f}")
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    t_all = dm.training_sigmas()
    for it in range(dmd_iters):  # distribution matching on every step of the student's own chain
        inputs = lcm_chain_inputs(student, sig_d, batch, g)
        loss = 0.0
        for k, y in enumerate(inputs):
            x0 = student.predict_x0(y, torch.full((batch,), sig_d[k]))
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
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--warmup-iters", type=int, default=3000)
    ap.add_argument("--dmd-iters", type=int, default=800)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
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
    save_file(
        {k: v.contiguous() for k, v in student.state_dict().items()}, str(args.out / "digits_student.safetensors")
    )

    files = sorted(p.name for p in args.out.glob("*.safetensors"))
    log = {
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
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_name(),
        "sha256": {f: sha256(args.out / f) for f in files},
    }
    (args.out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps(log, indent=1))


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
