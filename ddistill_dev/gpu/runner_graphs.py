"""API-format graphs (what ``/prompt`` takes) for the tests and tools that queue one: one builder per node (each
returns that node's ``{"class_type", "_meta", "inputs"}`` entry; a link is ``[node_id, slot]``), the pack's
two-node hybrid, and the graphs built from them. The ``DDTest_*`` nodes are the test fixture pack's tiny models
(``tests/integration/fixture_pack``); the unit tests parse these graphs, the server tests run them.

``workflow_graph.py`` writes the saved workflows (both formats, from a server's ``/object_info``); this module needs
no server and keeps every graph byte for byte as the tests typed it."""

from __future__ import annotations

from ddistill import protocol
from ddistill.protocol import EFFNET_BACKEND as EFFNET


def node(class_type: str, inputs: dict, title: str | None = None) -> dict:
    """One API node; ``title`` (``_meta.title``) is what the runner reads ("seed", "method: ...")."""
    entry: dict = {"class_type": class_type}
    if title is not None:
        entry["_meta"] = {"title": title}
    entry["inputs"] = inputs
    return entry


# ------------------------------------------------------------------------------------------ models, prompts, latents
def tiny_model(seed: int, kind: str = "sdxl") -> dict:
    return node("DDTest_TinyModel", {"kind": kind, "seed": seed})


def tiny_conditioning(kind: str = "sdxl", batch: int = 1, seed: int = 0) -> dict:
    return node("DDTest_TinyConditioning", {"kind": kind, "batch": batch, "seed": seed})


def demo_loader(**inputs) -> dict:
    return node(protocol.DEMO_MODEL_LOADER, inputs)


def demo_prompt(text: str = "a handwritten digit") -> dict:
    return node(protocol.DEMO_PROMPT, {"text": text})


def empty_latent(size: int, batch: int, class_type: str = "EmptyLatentImage", title: str | None = None) -> dict:
    return node(class_type, {"width": size, "height": size, "batch_size": batch}, title)


def tiny_sdxl_inputs(size: int, batch: int) -> dict:
    """Nodes 1-4: base and distilled tiny SDXL models, one conditioning, an empty latent."""
    return {"1": tiny_model(1), "2": tiny_model(2), "3": tiny_conditioning(), "4": empty_latent(size, batch)}


# ---------------------------------------------------------------------------------------------------------- samplers
def ksampler(
    model, positive, negative, latent_image, seed, steps, sampler_name="euler", scheduler="normal", title=None
) -> dict:
    inputs = {
        "model": model,
        "positive": positive,
        "negative": negative,
        "latent_image": latent_image,
        "seed": seed,
        "steps": steps,
        "cfg": 1.0,
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "denoise": 1.0,
    }
    return node("KSampler", inputs, title)


def base_first_step(
    base_model,
    positive,
    negative,
    latent_image,
    seed,
    base_steps=1,
    steps=4,
    distilled_model=None,
    title=None,
    scheduler="lcm",
    sampler_name="lcm",
) -> dict:
    """Base First Step Sampler (cfg 1); ``distilled_model`` is its optional input."""
    wired = (
        {"base_model": base_model}
        if distilled_model is None
        else {"base_model": base_model, "distilled_model": distilled_model}
    )
    inputs = {
        **wired,
        "positive": positive,
        "negative": negative,
        "latent_image": latent_image,
        "seed": seed,
        "base_cfg": 1.0,
        "base_steps": base_steps,
        "steps": steps,
        "scheduler": scheduler,
        "sampler_name": sampler_name,
    }
    return node(protocol.BASE_FIRST_STEP, inputs, title)


def distilled_continue(distilled_model, positive, negative, latent, title=None) -> dict:
    inputs = {"distilled_model": distilled_model, "positive": positive, "negative": negative, "latent": latent}
    return node(protocol.DISTILLED_CONTINUE, {**inputs, "cfg": 1.0}, title)


def hybrid(
    ids, base_model, distilled_model, positive, negative, latent_image, seed, base_steps=1, wire_distilled=False
) -> dict:
    """The two-node hybrid: Base First Step Sampler (node ``ids[0]``) -> Distilled Continue Sampler (``ids[1]``);
    ``wire_distilled`` also links the distilled model to the first node's optional input."""
    first, second = ids
    extra = distilled_model if wire_distilled else None
    return {
        first: base_first_step(base_model, positive, negative, latent_image, seed, base_steps, distilled_model=extra),
        second: distilled_continue(distilled_model, positive, negative, [first, 0]),
    }


def ksampler_select(sampler_name: str) -> dict:
    return node("KSamplerSelect", {"sampler_name": sampler_name})


def record_x0_sampler(sampler, label: str) -> dict:
    return node(protocol.RECORD_X0_SAMPLER, {"sampler": sampler, "label": label})


def basic_scheduler(model, scheduler: str, steps: int) -> dict:
    return node("BasicScheduler", {"model": model, "scheduler": scheduler, "steps": steps, "denoise": 1.0})


def sampler_custom(model, noise_seed, positive, negative, sampler, sigmas, latent_image, add_noise=True) -> dict:
    inputs = {
        "model": model,
        "add_noise": add_noise,
        "noise_seed": noise_seed,
        "cfg": 1.0,
        "positive": positive,
        "negative": negative,
        "sampler": sampler,
        "sigmas": sigmas,
        "latent_image": latent_image,
    }
    return node("SamplerCustom", inputs)


# ----------------------------------------------------------------------------------------------------------- outputs
def vae_decode(samples, vae) -> dict:
    return node("VAEDecode", {"samples": samples, "vae": vae})


def save_image(images, prefix: str, title=None) -> dict:
    return node("SaveImage", {"images": images, "filename_prefix": prefix}, title)


def save_latent(samples, prefix: str) -> dict:
    return node("SaveLatent", {"samples": samples, "filename_prefix": prefix})


def x0_preview(vae, latent, max_cells, cell_size, trajectory=None, recording=None, title=None) -> dict:
    """x̂0 Preview (pixel metric) of a hybrid's ``trajectory`` or a stock sampler's ``recording``."""
    inputs = {"vae": vae}
    if trajectory is not None:
        inputs["trajectory"] = trajectory
    if recording is not None:
        inputs["recording"] = recording
    inputs.update(latent=latent, max_cells=max_cells, cell_size=cell_size, metric=protocol.PIXEL_METRIC)
    return node(protocol.X0_PREVIEW, inputs, title)


def diversity_meter(images, title: str) -> dict:
    return node(protocol.DIVERSITY_METER, {"images": images, "backend": EFFNET}, title)


# ------------------------------------------------------------------------------------------------------------ graphs
def hybrid_prompt(batch: int = 2, seed: int = 3) -> dict:
    """The hybrid on the tiny SDXL pair at 128x128, its latent saved (node 7)."""
    g = tiny_sdxl_inputs(128, batch)
    g.update(hybrid(("5", "6"), ["1", 0], ["2", 0], ["3", 0], ["3", 0], ["4", 0], seed))
    g["7"] = save_latent(["6", 0], "hybrid")
    return g


def tiny_workflow(meter: bool = True, x0: bool = False) -> dict:
    """Two methods (stock KSampler 'base', the pack's hybrid), tiny real models, 64x64 images, a real VAE."""
    text = ["3", 0]
    g = {
        "1": tiny_model(1),
        "2": tiny_model(2),
        "3": node("DDTest_TextConditioning", {"kind": "sdxl", "text": ""}, "prompt"),
        "4": empty_latent(64, 3, title="batch"),
        "5": node("DDTest_TinyVAE", {"seed": 0}),
        "10": ksampler(["1", 0], text, text, ["4", 0], 0, 4, title="seed"),
        "11": vae_decode(["10", 0], ["5", 0]),
        "12": save_image(["11", 0], "rt/base", "method: base"),
        "20": base_first_step(["1", 0], text, text, ["4", 0], 0, title="seed"),
        "21": distilled_continue(["2", 0], text, text, ["20", 0]),
        "22": vae_decode(["21", 0], ["5", 0]),
        "23": save_image(["22", 0], "rt/hybrid", "method: hybrid"),
        "30": node("PreviewImage", {"images": ["22", 0]}),  # untitled: not run by the runner
    }
    if x0:
        g["25"] = x0_preview(["5", 0], ["21", 0], 16, 32, trajectory=["21", 1], title="method: hybrid")
    if meter:
        g["13"] = diversity_meter(["11", 0], "method: base")
        g["24"] = diversity_meter(["22", 0], "method: hybrid")
    return g
