"""CPU smoke test of ``benchmarks/bench_lora_server.py`` on quantized weights: the tiny Wan 2.2 model as an
fp8_scaled file (UNETLoader) and as a Q8_0 GGUF file (city96/ComfyUI-GGUF's UnetLoaderGGUF, linked into the
server's custom_nodes) with a LoRA, through a real server; every method's row, the pack's log line (the fast path:
exact copies, or GGUF's own patch lists), and the hybrid bit-equal to the stock two-sampler chain on the same seed."""

import subprocess
import sys
from pathlib import Path

import pytest

from ddistill_dev.models import gguf_files

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "benchmarks" / "bench_lora_server.py"
SAID = {
    "fp8_scaled": "the base step runs on the loaded distilled weights (no unpatch, re-patch or move)",
    "gguf_q8_0": "given the base model's own patch list (applied by their layers)",
}


@pytest.mark.parametrize("weights", sorted(SAID))
def test_quantized_cpu_smoke(tmp_path, weights):
    if weights == "gguf_q8_0":
        pytest.importorskip("gguf", reason="the gguf package (tests/requirements.txt) is not installed")
        if not gguf_files.pack_archive().is_file():
            pytest.skip(f"no ComfyUI-GGUF source archive at {gguf_files.pack_archive()}")
    out = tmp_path / "lora_server.md"
    cmd = [sys.executable, str(BENCH), "--weights", weights, "--cpu", "--tiny", "--size", "128", "--length", "9",
           "--repeats", "1", "--stock-repeats", "1", "--configs", "uncapped", "--batches", "1",
           "--base", str(tmp_path / "base"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = out.read_text()
    rows = [line.split("|")[3].strip() for line in text.splitlines() if line.startswith("| uncapped | 1 |")]
    assert rows == ["LoRA model alone", "pack hybrid", "stock two samplers"]
    assert SAID[weights] in text
    assert "hybrid vs stock chain: bit-equal" in text
    assert "LoRA model alone vs stock chain: differs" in text  # the base step did run on the base weights
