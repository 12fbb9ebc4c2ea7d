"""Per-method diversity from a run's records: the Diversity Meter's own numbers when one graph batch holds all of a
prompt's samples, otherwise the same numbers recomputed over all saved images with the pack's functions
(`ddistill/embedding.py`, `ddistill/diversity.py`). The average over prompts and its interval are small pure
functions here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ddistill import diversity, embedding
from ddistill.protocol import METER_UI_KEY, X0_UI_KEY

Z95 = 1.959963984540054


@dataclass
class Cell:
    """Diversity of one method on one prompt."""

    method: str
    prompt: str
    n: int
    n_pairs: int
    mean: float
    std: float
    ci: tuple[float, float] | None
    source: str  # "graph" (the Diversity Meter's output) or "recomputed (...)"
    images: list[str] = field(default_factory=list)
    chunk_means: list[float] = field(default_factory=list)  # what the meter measured on each graph batch


def meter_numbers(ui: dict) -> dict:
    """mean / std / ci / n / n_pairs from a Diversity Meter's `ui` output in /history."""
    data = ui.get(METER_UI_KEY)
    if isinstance(data, list) and data:
        data = data[0]
    first = (data.get("a") or data) if isinstance(data, dict) else None
    if not isinstance(first, dict) or "mean" not in first or "n" not in first:
        raise ValueError(f"Diversity Meter output has no numbers the runner understands: keys {sorted(ui)}")
    return {
        "mean": float(first["mean"]),
        "std": float(first.get("std", float("nan"))),
        "ci": tuple(first["ci"]) if first.get("ci") else None,
        "n": int(first["n"]),
        "n_pairs": int(first.get("n_pairs", first["n"] * (first["n"] - 1) // 2)),
    }


def load_images(paths: list[Path]):
    import numpy as np
    import torch
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0 for p in paths]
    return torch.from_numpy(np.stack(arrays))


def recompute(
    paths: list[Path],
    backend_name: str,
    device: str = "cpu",
    weights_dir: str | None = None,
    n_boot: int | None = None,
    seed: int = 0,
) -> dict:
    """The Diversity Meter's numbers over saved images, with the pack's own backend and statistics."""
    backend = embedding.get_backend(backend_name, device=device, weights_dir=weights_dir)
    d = backend.pairwise(backend.embed(load_images(paths)))
    s, _ = diversity.summarize(d, n_boot if n_boot is not None else diversity.DEFAULT_BOOTSTRAP, seed)
    return {"mean": s.mean, "std": s.std, "ci": tuple(s.ci) if s.ci else None, "n": s.n, "n_pairs": s.n_pairs}


def average(cells: list[Cell]) -> dict:
    """Average over prompts (prompts fixed, as in Table 3) with a 95% interval that combines the per-prompt
    intervals as independent normal errors: se_i = (hi_i - lo_i) / (2 z), se = sqrt(sum se_i^2) / P."""
    if len(cells) == 1:  # one prompt: its own numbers
        return {"mean": cells[0].mean, "ci": cells[0].ci, "prompts": 1}
    means = [c.mean for c in cells]
    avg = sum(means) / len(means)
    if any(c.ci is None for c in cells):
        return {"mean": avg, "ci": None, "prompts": len(cells)}
    se = math.sqrt(sum(((c.ci[1] - c.ci[0]) / (2 * Z95)) ** 2 for c in cells)) / len(cells)
    return {"mean": avg, "ci": (avg - Z95 * se, avg + Z95 * se), "prompts": len(cells)}


def x0_curve(ui: dict) -> dict[int, float] | None:
    """{step (1-based): mean distance of that step's x̂0 to the final image} from an x̂0 Preview `ui` output (its
    structured entry `protocol.X0_UI_KEY`: steps and mean_distance, in step order)."""
    entries = ui.get(X0_UI_KEY)
    entry = entries[0] if isinstance(entries, list) and entries else None
    if not isinstance(entry, dict) or len(entry.get("steps") or []) != len(entry.get("mean_distance") or [None]):
        return None
    return {int(s): float(d) for s, d in zip(entry["steps"], entry["mean_distance"])}
