"""The demo experiment as one API-format workflow for the runner (titles per runner/CONVENTIONS.md).

Two offline pairs (Demo Digit Models' ``pair`` input), every method from the same initial noise per seed, 32x32
digits, cfg 1:

The eps pair (SD's sigma space; the student's 4-step lcm schedule t = 999, 759, 499, 259):
- base:                stock SamplerCustom, euler, 'normal' schedule, BASE_STEPS steps, on the base model;
- distilled:           the student alone, lcm sampler;
- hybrid:              the base takes step 1 (k = 1, the paper's), the student steps 2-4;
- hybrid k2, k3:       the base takes 2 or 3 steps;
- hybrid noise level:  the base until the rule's noise level (base_steps 0, A* = 18.2);
- skip first:          the student on steps 2-4 only, from pure noise (Skip First Step);
- skip to noise level: the student from pure noise at the rule's noise level (skip_steps 0);
- replace final:       the student takes step 1, the base steps 2-4 (Table E.1's control).
The flow pair (rectified flow, the student's 8-step shift-3 'simple' schedule, lcm sampler): the same methods
prefixed 'flow ', the base with euler on its own shift-3 'simple' schedule, the hybrid at k = 1..4 and by noise
level, skip first and skip to the noise level.
Every method ends in Save Image + Diversity Meter; the paper's methods (and the noise-level hybrids) also in
x̂0 Preview; all titled 'method: NAME'.
"""

from __future__ import annotations

from ddistill import protocol as P
from ddistill.protocol import EFFNET_BACKEND

BASE_STEPS = 40
EFFNET = EFFNET_BACKEND
EPS_PAIR, FLOW_PAIR = "digits eps (4-step lcm)", "digits flow (shift 3, 8-step)"  # nodes/demo_nodes.py PAIRS
EPS = {"steps": 4, "scheduler": "lcm", "sampler_name": "lcm"}
FLOW = {"steps": 8, "scheduler": "simple", "sampler_name": "lcm"}
RULE = {"base_steps": 0}  # hand over by noise level, the default A* (the paper's 18.2)
EPS_METHODS = [
    "base",
    "distilled",
    "hybrid",
    "hybrid k2",
    "hybrid k3",
    "hybrid noise level",
    "skip first",
    "skip to noise level",
    "replace final",
]
FLOW_METHODS = [
    "flow base",
    "flow distilled",
    "flow hybrid k1",
    "flow hybrid k2",
    "flow hybrid k3",
    "flow hybrid k4",
    "flow hybrid noise level",
    "flow skip first",
    "flow skip to noise level",
]
WITH_X0 = {"base", "distilled", "hybrid", "skip first", "replace final", "hybrid noise level"}
WITH_X0 |= {"flow base", "flow distilled", "flow hybrid k1", "flow hybrid noise level"}


class _Graph:
    def __init__(self, batch: int):
        self.g: dict = {
            "2": {"class_type": P.DEMO_PROMPT, "_meta": {"title": "prompt"}, "inputs": {"text": "a handwritten digit"}},
            "3": {
                "class_type": "EmptyChromaRadianceLatentImage",
                "_meta": {"title": "batch"},
                "inputs": {"width": 32, "height": 32, "batch_size": batch},
            },
        }
        self.next = 10
        self.pos, self.latent = ["2", 0], ["3", 0]

    def add(self, class_type: str, inputs: dict, title: str | None = None) -> str:
        nid = str(self.next)
        self.next += 1
        self.g[nid] = {"class_type": class_type, "inputs": inputs, **({"_meta": {"title": title}} if title else {})}
        return nid

    def outputs(self, method: str, samples: list, vae: list, x0: dict) -> None:
        title = f"method: {method}"
        image = [self.add("VAEDecode", {"samples": samples, "vae": vae}), 0]
        prefix = f"ddistill_demo/{method.replace(' ', '_')}"
        self.add("SaveImage", {"images": image, "filename_prefix": prefix}, title)
        self.add(P.DIVERSITY_METER, {"images": image, "backend": EFFNET, "bootstrap_seed": 0}, title)
        if method in WITH_X0:
            self.add(P.X0_PREVIEW, {"vae": vae, "max_cells": 48, "cell_size": 64, "metric": EFFNET, **x0}, title)

    def stock_base(self, method: str, base: list, vae: list, scheduler: str, steps: int) -> None:
        sampler = self.add("KSamplerSelect", {"sampler_name": "euler"})
        record = self.add(P.RECORD_X0_SAMPLER, {"sampler": [sampler, 0], "label": P.BASE_LABEL})
        sigmas = self.add("BasicScheduler", {"model": base, "scheduler": scheduler, "steps": steps, "denoise": 1.0})
        out = self.add(
            "SamplerCustom",
            {
                "model": base,
                "add_noise": True,
                "noise_seed": 0,
                "cfg": 1.0,
                "positive": self.pos,
                "negative": self.pos,
                "sampler": [record, 0],
                "sigmas": [sigmas, 0],
                "latent_image": self.latent,
            },
            "seed",
        )
        self.outputs(method, [out, 0], vae, {"recording": [record, 1], "latent": [out, 0]})

    def first_then(self, method: str, first: list, then: list, vae: list, schedule: dict, handover: dict, labels):
        """Base First Step (``first``) -> Distilled Continue (``then``); ``labels`` name the models on x̂0 frames."""
        inputs = {
            "base_model": first,
            "positive": self.pos,
            "negative": self.pos,
            "latent_image": self.latent,
            "seed": 0,
            "base_cfg": 1.0,
            **schedule,
            **handover,
            "model_label": labels[0],
        }
        head = self.add(P.BASE_FIRST_STEP, inputs, "seed")
        cont = {
            "distilled_model": then,
            "positive": self.pos,
            "negative": self.pos,
            "latent": [head, 0],
            "cfg": 1.0,
            "model_label": labels[1],
        }
        tail = self.add(P.DISTILLED_CONTINUE, cont)
        self.outputs(method, [tail, 0], vae, {"trajectory": [tail, 1], "latent": [tail, 0]})

    def skip(self, method: str, student: list, vae: list, schedule: dict, skip_steps: int) -> None:
        inputs = {
            "model": student,
            "positive": self.pos,
            "negative": self.pos,
            "latent_image": self.latent,
            "seed": 0,
            "cfg": 1.0,
            **schedule,
            "skip_steps": skip_steps,
        }
        out = self.add(P.SKIP_FIRST_STEP, inputs, "seed")
        self.outputs(method, [out, 0], vae, {"trajectory": [out, 1], "latent": [out, 0]})

    def pair(self, prefix: str, pair: str, schedule: dict, base_scheduler: str, base_steps: int, ks, control: bool):
        loader = self.add(P.DEMO_MODEL_LOADER, {"pair": pair})
        base, student, vae = [loader, 0], [loader, 1], [loader, 2]
        labels = (P.BASE_LABEL, P.DISTILLED_LABEL)
        self.stock_base(f"{prefix}base", base, vae, base_scheduler, base_steps)
        self.first_then(f"{prefix}distilled", student, student, vae, schedule, {"base_steps": 1}, (labels[1],) * 2)
        for k in ks:
            name = f"{prefix}hybrid" if (k == 1 and not prefix) else f"{prefix}hybrid k{k}"
            self.first_then(name, base, student, vae, schedule, {"base_steps": k}, labels)
        self.first_then(f"{prefix}hybrid noise level", base, student, vae, schedule, RULE, labels)
        self.skip(f"{prefix}skip first", student, vae, schedule, 1)
        self.skip(f"{prefix}skip to noise level", student, vae, schedule, 0)
        if control:
            self.first_then(f"{prefix}replace final", student, base, vae, schedule, {"base_steps": 1}, labels[::-1])


def build(batch: int = 100, base_steps: int = BASE_STEPS) -> dict:
    g = _Graph(batch)
    g.pair("", EPS_PAIR, EPS, "normal", base_steps, (1, 2, 3), control=True)
    g.pair("flow ", FLOW_PAIR, FLOW, "simple", base_steps, (1, 2, 3, 4), control=False)
    return g.g
