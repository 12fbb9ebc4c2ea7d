"""What the LoRA-pair tests share: the patch-event counter (every ModelPatcher's weight unpatch, per-weight patch
and load, wrapped for one test), and on the tiny Wan 2.2 model (``test_lora_quantized``, ``test_lora_gguf``) the
stock LoRA loader, the pack's hybrid (Base First Step k = 1 of 4, euler, simple -> Distilled Continue) and the stock
two-sampler chain it must equal, and the pair's log lines."""

import comfy.model_patcher
import comfy.sample
import comfy.samplers
import torch

import nodes
from ddistill.schedules import derive_seed
from ddistill_dev.models import tiny_models as tm

KIND, SEED, STEPS = "wan22", 5, 4


def count_weight_events(monkeypatch) -> dict[str, int]:
    """Counters, live for the test, of an unpatch that restores weights, each weight patched to a device and each
    full or partial (re)load."""
    counts = {"unpatch": 0, "patch": 0, "load": 0}
    cls = comfy.model_patcher.ModelPatcher
    unpatch, patch, load = cls.unpatch_model, cls.patch_weight_to_device, cls.load

    def counted_unpatch(self, device_to=None, unpatch_weights=True):
        if unpatch_weights and self.model.current_weight_patches_uuid is not None:
            counts["unpatch"] += 1
        return unpatch(self, device_to, unpatch_weights)

    def counted_patch(self, key, *args, **kwargs):
        counts["patch"] += key in self.patches
        return patch(self, key, *args, **kwargs)

    def counted_load(self, *args, **kwargs):
        counts["load"] += 1
        return load(self, *args, **kwargs)

    monkeypatch.setattr(cls, "unpatch_model", counted_unpatch)
    monkeypatch.setattr(cls, "patch_weight_to_device", counted_patch)
    monkeypatch.setattr(cls, "load", counted_load)
    return counts


def zero(counts: dict[str, int]) -> None:
    counts.update(dict.fromkeys(counts, 0))


def lora(model, name: str, strength: float = 1.0):
    """The stock LoraLoaderModelOnly's MODEL."""
    return nodes.LoraLoaderModelOnly().load_lora_model_only(model, name, strength)[0]


def conds():
    return tm.family_conditioning(KIND, seed=1), tm.family_conditioning(KIND, seed=2)


def hybrid(mods, base, distilled, connect: bool = False, runs: int = 1):
    """The pack's hybrid ``runs`` times (the second run of an unconnected pair knows its partner); the last result:
    (final latent, latent at the handover)."""
    pos, neg = conds()
    latent = tm.family_latent(KIND)
    hn = mods["hn"]
    for _ in range(runs):
        first = hn.BaseFirstStepSampler.execute(
            base, pos, neg, latent, SEED, 1.0, 1, STEPS, "simple", "euler", None, "", distilled if connect else None
        ).result[0]
        out = hn.DistilledContinueSampler.execute(distilled, pos, neg, first, 1.0).result[0]
    return out["samples"], first["samples"]


def stock_chain(mods, base, distilled):
    """Stock ComfyUI only: sample_custom on base (sigmas[0:2]), then on distilled (sigmas[1:]) with the
    continuation seed; (final latent, latent at the handover)."""
    pos, neg = conds()
    sigmas = mods["sampling"].model_schedule(distilled, STEPS, "simple")
    x = tm.family_latent(KIND)["samples"]
    euler = comfy.samplers.sampler_object("euler")
    noise = comfy.sample.prepare_noise(x, SEED)
    mid = comfy.sample.sample_custom(base, noise, 1.0, euler, sigmas[:2], pos, neg, x, seed=SEED)
    out = comfy.sample.sample_custom(
        distilled, torch.zeros_like(mid), 1.0, euler, sigmas[1:], pos, neg, mid, seed=derive_seed(SEED, 1)
    )
    return out, mid


def pair_lines(caplog) -> list[str]:
    """The pack's log lines about a pair of clones (its plan, or why it keeps the stock path)."""
    return [r.getMessage() for r in caplog.records if "clones of one" in r.getMessage()]
