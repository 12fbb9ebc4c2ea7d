"""The paper's diversity numbers (mean pairwise DreamSim distance) that the summary sets beside a run's results.

Sources: Table 3 (main text, SDXL base / DMD2 / hybrid, five prompts of which the paper gives short names), Table D.1
and Table E.1 (supplementary, prompt "image of a car", 100 samples). Method keys follow runner/CONVENTIONS.md.
"""

from __future__ import annotations

TABLES = {
    "table3": {
        "title": "Table 3: SDXL base vs SDXL-DMD2 vs hybrid, mean pairwise DreamSim distance",
        "methods": ["base", "distilled", "hybrid"],
        "rows": {
            "sunset beach": {"base": 0.396, "distilled": 0.271, "hybrid": 0.373},
            "cute puppy": {"base": 0.233, "distilled": 0.199, "hybrid": 0.265},
            "futuristic city": {"base": 0.237, "distilled": 0.198, "hybrid": 0.283},
            "person": {"base": 0.484, "distilled": 0.347, "hybrid": 0.461},
            "van gogh": {"base": 0.337, "distilled": 0.305, "hybrid": 0.366},
        },
        "average": {"base": 0.337, "distilled": 0.264, "hybrid": 0.350},
    },
    "tableD1-sd21": {
        "title": "Table D.1: SD 2.1 vs SD-Turbo vs hybrid, 'image of a car', 100 samples",
        "methods": ["base", "distilled", "hybrid"],
        "rows": {"image of a car": {"base": 0.298, "distilled": 0.171, "hybrid": 0.294}},
        "average": None,
    },
    "tableD1-pixart": {
        "title": "Table D.1: PixArt-α vs PixArt-δ vs hybrid, 'image of a car', 100 samples",
        "methods": ["base", "distilled", "hybrid"],
        "rows": {"image of a car": {"base": 0.342, "distilled": 0.198, "hybrid": 0.339}},
        "average": None,
    },
    "tableE1": {
        "title": "Table E.1: replacing the first vs the final timesteps (SDXL / DMD2), 'image of a car', 100 samples",
        "methods": ["base", "distilled", "hybrid", "replace final"],
        "rows": {"image of a car": {"base": 0.357, "distilled": 0.264, "hybrid": 0.350, "replace final": 0.251}},
        "average": None,
    },
}


def paper_row(table: str, prompt: str) -> dict | None:
    """The paper's row whose short prompt name occurs in `prompt` (case-insensitive), if any."""
    rows = TABLES[table]["rows"]
    low = prompt.lower()
    for key, row in rows.items():
        if key in low:
            return row
    return None


def pick_table(requested: str, methods: list[str], prompts: list[str]) -> str | None:
    """`requested` if it names a table; for 'auto', the table whose prompts and methods the run matches best."""
    if requested == "none":
        return None
    if requested != "auto":
        if requested not in TABLES:
            raise ValueError(f"--paper: {requested!r} is not one of auto, none, {', '.join(TABLES)}")
        return requested
    best, score = None, 0
    for name, table in TABLES.items():
        if name == "tableD1-pixart":  # same prompt as D.1/SD 2.1: only chosen explicitly
            continue
        s = sum(1 for p in prompts if paper_row(name, p)) * len(set(methods) & set(table["methods"]))
        s += 0.5 * ("replace final" in methods and name == "tableE1")
        if s > score:
            best, score = name, s
    return best
