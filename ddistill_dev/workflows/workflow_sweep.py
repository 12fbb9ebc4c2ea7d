"""The handover sweep template (``workflows/11_handover_sweep_demo.json``): the graph that ``python -m runner ...
--sweep`` varies, on the bundled demo digit pair so that it runs offline on a CPU.

Three methods: ``base`` (the base model alone), ``distilled`` (the distilled model alone through Base First Step
-> Distilled Continue, as the sweep's k = 0 point runs it) and ``hybrid``, whose Base First Step Sampler is titled
``handover``: the node the runner's sweep sets per grid point (runner/CONVENTIONS.md, runner/sweep.py). The catalog
(``workflow_catalog.py``) registers it with ``sweep_experiment``; this module imports only the blocks, so that the
catalog can import it at its end without a cycle.
"""

from __future__ import annotations

from ddistill import protocol as P

from . import workflow_blocks as b

NAME = "11_handover_sweep_demo"
TITLE = "Offline demo: calibrate the handover (sweep)"
PAPER = "Fig. 7 for any pair (the runner's --sweep)"
COMPARE = (
    "diversity rises from k = 0 (the distilled model alone) towards the base's; pick the earliest handover whose "
    "interval reaches the base's"
)
RUN = (
    "python -m runner workflows/api/11_handover_sweep_demo.json --prompts runner/prompts/car.txt --seeds 32 "
    "--server 127.0.0.1:8188 --out out/sweep --sweep k=0..3"
)
BODY = (
    "**The handover sweep.** Run alone, this is base / distilled / hybrid, the hybrid handing over by noise level "
    "(base_steps 0: after the first step whose amplification A is at most 18.2, the paper's handover on SDXL). The "
    "runner's sweep runs the hybrid at a grid of handover points instead and reports, per point, diversity with "
    f"its 95% interval, the x̂0 distance at the handover step and the time per image:\n\n`{RUN}`\n\n"
    "or `--sweep sigma=0.9,0.8,0.75` (handover_sigma) or `--sweep A=400,80,18.2` (handover_amplification); "
    "k = 0 is the distilled model alone. The Base First Step titled `handover` is the node it varies (the runner "
    "also sets its seed). Read sweep.md in the --out folder: the earliest handover whose interval reaches the "
    "base's diversity is the one to use.\n\n"
    "**Your own pair:** replace the demo loader with your base and distilled models (checkpoint or LoRA loaders), "
    "the demo prompts with your text encoders (titled `prompt` / `negative`), and the latent with your family's "
    "empty latent (titled `batch`); set Base First Step's steps, scheduler and sampler_name to your distilled "
    "model's (connect its distilled_model input for flow models); keep the titles and the Diversity Meter / x̂0 "
    "Preview. Then Workflow > Export (API) and give that file to the runner. The `distilled` row runs the "
    "distilled model through the same two nodes as the sweep's k = 0 point, so both give the same numbers."
)


def make(exp):
    c = b.Canvas(exp.name, exp.note())
    fam = b.DEMO
    c.fit_filmstrip(fam.steps - 1)
    base, d, lat = b.demo_pair(c)
    b.base_row(c, base, lat, b.DEMO_BASE)

    y = c.row(f"Distilled alone: {fam.label} in both samplers ({fam.steps} steps {fam.sampler}), the sweep's k = 0")
    _, rest = b.hybrid(c, y, d, d, lat, fam, base_steps=1, labels=(P.DISTILLED_LABEL, P.DISTILLED_LABEL))
    c.finish("distilled", y, rest[0], d["vae"])

    wide = {"right": c.X_EXTRA + c.X0_SIZE[0] + 20, "left": c.X_AUX}
    y = c.row("Hybrid, swept by the runner: its Base First Step is titled 'handover' (base_steps 0: A <= 18.2)", **wide)
    first, rest = b.hybrid(c, y, base, d, lat, fam, base_steps=0)
    first.title = "handover"  # runner/CONVENTIONS.md: the node --sweep varies (and a seed node)
    c.finish("hybrid", y, rest[0], d["vae"])
    b.x0_preview(c, y, "hybrid", d["vae"], rest[0], trajectory=rest[1])
    return c.g


def sweep_experiment(experiment, demo_note: str):
    """The catalog entry: ``experiment`` is ``workflow_catalog.Experiment``, ``demo_note`` its offline-demo note."""
    return experiment(NAME, TITLE, PAPER, COMPARE, (), make, demo_note + BODY)
