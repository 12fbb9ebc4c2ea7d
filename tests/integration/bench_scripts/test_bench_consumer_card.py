"""CPU smoke test of ``benchmarks/bench_consumer_card.py``: model files written, a real server, every
row of the table with its bytes-moved and floor columns, and the pack hybrid's final latent bit-equal to the stock
two-sampler chain's on the same seed (both pairs); plus the byte accounting on made-up probe snapshots."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "benchmarks" / "bench_consumer_card.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_consumer_card", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(key, size, loaded, lowvram=False, dynamic=False):
    return {"id": key, "class": "BaseModel", "size": size, "loaded": loaded, "lowvram": lowvram, "dynamic": dynamic}


def _snap(stage, model, *loaded):
    return {"stage": stage, "tag": "0", "model": {**model, "memory_required": 7}, "loaded": list(loaded)}


def test_bytes_moved_from_probe_snapshots():
    """A hybrid under a cap: the base comes in partly (60 of 100, the rest streamed at its one forward) while the
    distilled model gives up 60; then the distilled model comes back whole and the base leaves."""
    b = _bench()
    base_gone, dist_full = _model(1, 100, 0), _model(2, 100, 100)
    base_part, dist_part = _model(1, 100, 60, lowvram=True), _model(2, 100, 40, lowvram=True)
    snaps = [
        _snap("start", base_gone, dist_full),
        _snap("base", base_part, base_part, dist_part),
        _snap("distilled", dist_full, dist_full),
    ]
    got = b.moved("sdxl", "pack hybrid", snaps)
    assert (got["h2d_load"], got["streamed"], got["d2h"], got["activations"]) == (120, 40, 120, 7)
    # Dynamic VRAM drops pages without copying them back: no D2H; its streamed weights count per forward (3 here)
    dyn = [_snap("start", _model(2, 100, 100, dynamic=True), _model(2, 100, 100, dynamic=True)),
           _snap("distilled", _model(2, 100, 80, dynamic=True), _model(2, 100, 80, dynamic=True))]  # fmt: skip
    got = b.moved("sdxl", "stock two samplers", dyn)
    assert (got["h2d_load"], got["streamed"], got["d2h"]) == (0, 60, 0)


def test_cpu_smoke(tmp_path):
    out = tmp_path / "consumer.md"
    cmd = [sys.executable, str(BENCH), "--cpu", "--arch", "sd15-shallow", "--size", "64", "--batches", "1",
           "--quick", "--repeats", "1", "--stock-repeats", "1", "--warmups", "0", "--rank", "4", "--parts", "unet",
           "--interleave", "--base", str(tmp_path / "base"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = out.read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| pair |"))
    for column in ("loads/run", "H2D: loads + streamed", "D2H", "must cross (floor s)", "floor x"):
        assert column in header, header
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines if line.startswith("| ")][1:]
    b = _bench()
    assert {(c[0], c[3]) for c in cells} == {(p, m) for p in ("separate checkpoints", "LoRA pair") for m in b.METHODS}
    for c in cells:
        assert c[7] and c[8] and c[9] and c[10], c  # bytes moved and floor filled on every row
    data = json.loads(out.with_suffix(".json").read_text())
    checks = {(c["pair"], c["method"]): c for r in data["results"] for c in r["checks"]}
    for pair in ("separate", "lora"):
        assert checks[(pair, "pack hybrid")]["equal"], checks[(pair, "pack hybrid")]
        assert not checks[(pair, "distilled alone")]["equal"]  # the comparison can tell the models apart
    assert "bit-equal" in text
    # each method's time per segment, from the probes' clocks and ComfyUI's timestamps (--interleave: one run each)
    seg = [line for line in lines if "median s per segment" in line]
    assert len(seg) == 2, seg
    for line in seg:
        hybrid = line.split("pack hybrid: ")[1].split(";")[0]
        parts = dict(p.rsplit(" ", 1) for p in hybrid.split(", "))
        assert list(parts) == ["before", "base", "distilled", "after"], hybrid
        assert all(float(v) >= 0 for v in parts.values()), hybrid
