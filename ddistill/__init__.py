"""The pack's pure core: the mathematics of diversity distillation, with no ComfyUI import.

torch, numpy and PIL only (a ruff rule bans ComfyUI's modules here), so the nodes, the runner, the demo, the
benchmarks and the tests import it alike. Modules:

- ``protocol``: names shared by the nodes, the frontend scripts, the runner and the tools (keys, ui entries, node IDs).
- ``schedules``: the paper's timestep schedules, the split at the handover, the rules a schedule must satisfy.
- ``pairing``: which two models can share a latent (``ModelInfo``, ``check_pair``).
- ``handover``: what Base First Step hands to Distilled Continue (a typed record carried in the LATENT).
- ``trajectory``: the recorded x̂0 frames.
- ``x0_preview``: grids, labels and the Fig. 5 convergence curve.
- ``diversity``: pairwise distances, bootstrap intervals, the heatmap.
- ``embedding``: the perceptual networks (EfficientNet-Lite0, DreamSim) with plain-torch placement.
- ``demo_model``: the bundled digit model pair.
"""
