#!/usr/bin/env bash
# Every GPU benchmark of the pack in one run on one card, against the ComfyUI in $COMFYUI_PATH (either host:
# 0.3.75 or 0.33.0); writes each table into OUT_DIR (default bench_out/) and all of them into OUT_DIR/BENCHMARKS.md.
# On the project's GPU machine (no package index), carry .whl and `source benchmarks/gpu_env.sh` first (see
# BENCHMARKS.md).
#   bash benchmarks/run_gpu.sh [OUT_DIR]                      # every part, full repeats
#   PARTS="profile lora_server main" QUICK=1 bash benchmarks/run_gpu.sh OUT_DIR   # some parts, fewer repeats
# Parts: main lowvram x0 diversity lora lora_server profile profile_lora handover (Z-Image pair: the noise-level
# handover's cost; about 4 minutes of an H100 with model building) consumer (separate checkpoints
# and LoRA pairs through the server under 12 / 8 GiB caps and none, Z-Image pair under 24 GiB, bytes moved and the
# floor; its model files go to CONSUMER_BASE (default /tmp/ddistill_consumer_base, outside OUT_DIR), are kept and
# reused by the next run on the same machine (the other host); CONSUMER_PARTS=unet|zimage, CONSUMER_CAPS=12,8,none,
# CONSUMER_BUDGET_S (default QUICK 420, else 1800): no new block after that many seconds); quantized (a Wan 2.2 A14B
# expert as fp8_scaled and as GGUF Q8_0 + the lightx2v LoRA through the server: carry the ComfyUI-GGUF archive and set
# DD_GGUF_ARCHIVE; 13-15 GiB files per format in /tmp/ddistill_quantized_base, removed after each).
# QUICK=1 fits one host in about 10 minutes of an H200.
# UNTIL_S=N starts no further part once N seconds have passed (to stay inside a machine's time limit per command).
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-bench_out}")"
mkdir -p "$out"
parts="${PARTS:-main lowvram x0 diversity lora lora_server profile profile_lora handover consumer quantized}"
quick="${QUICK:-}"
if [ -d .bench/diversity_wheels_min ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .bench/diversity_wheels_min/*.whl
fi
export PYTHONUNBUFFERED=1
quiet() { grep -v "^WARNING\|it/s\]\|^Requested to load\|loaded completely\|^Model .* prepared\|s/it\]"; }
r() { if [ -n "$quick" ]; then echo "$2"; else echo "$1"; fi; }  # full / quick value
start=$SECONDS
for part in $parts; do
    if [ -n "${UNTIL_S:-}" ] && [ $((SECONDS - start)) -ge "$UNTIL_S" ]; then
        echo "== $part: skipped (UNTIL_S=$UNTIL_S seconds reached)"; continue
    fi
    echo "== $part ($(date -u +%H:%M:%S))"
    case "$part" in
    main) python3 benchmarks/bench_gpu.py main --archs "$(r sdxl,sd21 sdxl)" --batches "$(r 1,4,16 1,4)" \
              --repeats "$(r 15 9)" --out "$out/main.md" 2>&1 | quiet ;;
    lowvram) python3 benchmarks/bench_gpu.py lowvram --cap-gb 12 --archs sdxl --batches "$(r 1,4,16 4)" \
              --repeats "$(r 15 6)" --out "$out/lowvram.md" 2>&1 | quiet ;;
    x0) python3 benchmarks/bench_x0.py --size full --batches 1,4 --repeats "$(r 15 6)" --out "$out/x0.md" 2>&1 | quiet ;;
    diversity) python3 benchmarks/bench_diversity.py --device cuda --backends dreamsim --comfyui --chunks 32,100 \
              --out "$out/diversity.md" 2>&1 | quiet ;;
    lora) python3 benchmarks/bench_lora.py --repeats "$(r 20 10)" --stock-repeats "$(r 4 2)" \
              --out "$out/lora.md" 2>&1 | quiet ;;
    lora_server) python3 benchmarks/bench_lora_server.py --repeats "$(r 12 8)" --stock-repeats "$(r 3 2)" \
              --configs "${LORA_CONFIGS:-uncapped,capped}" \
              --base "$out/lora_server_base" --out "$out/lora_server.md" 2>&1 | quiet
              rm -rf "$out/lora_server_base/models" "$out/lora_server_base/output" ;;
    profile) python3 benchmarks/profile_batch1.py --arch sdxl --rounds "$(r 40 30)" --out "$out/profile.md" 2>&1 | quiet ;;
    profile_lora) python3 benchmarks/profile_batch1.py --arch sdxl --pair lora --rounds "$(r 40 30)" \
              --out "$out/profile_lora.md" 2>&1 | quiet ;;
    handover) python3 benchmarks/bench_gpu.py handover --batches 1,4 --repeats "$(r 9 6)" \
              --out "$out/handover.md" 2>&1 | quiet ;;
    consumer) python3 benchmarks/bench_consumer_card.py $(r "" --quick) --budget-s "${CONSUMER_BUDGET_S:-$(r 1800 420)}" \
              --parts "${CONSUMER_PARTS:-unet,zimage}" --caps "${CONSUMER_CAPS:-12,8,none}" \
              --base "${CONSUMER_BASE:-/tmp/ddistill_consumer_base}" --out "$out/consumer.md" 2>&1 | quiet
              rm -rf "${CONSUMER_BASE:-/tmp/ddistill_consumer_base}/output" ;;
    quantized) qbase=/tmp/ddistill_quantized_base
              : > "$out/quantized.md"
              for w in fp8_scaled gguf_q8_0; do
                  python3 benchmarks/bench_lora_server.py --weights "$w" --configs uncapped --batches 1 --size 832 \
                      --height 480 --length 17 --repeats "$(r 6 3)" --stock-repeats "$(r 3 2)" --base "$qbase" \
                      --out "$out/quantized_$w.md" 2>&1 | quiet
                  { echo "### $w"; echo; cat "$out/quantized_$w.md" 2>/dev/null || echo "(not produced)"; echo; } \
                      >> "$out/quantized.md"
                  rm -rf "$qbase"
              done ;;
    *) echo "unknown part: $part" ;;
    esac
done
{
  echo "# GPU benchmarks (generated by \`bash benchmarks/run_gpu.sh\` on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), ComfyUI $(python3 -c 'from ddistill_dev.host.comfy_host import comfyui_version; print(comfyui_version())'), $(date -u +%Y-%m-%d))"
  for f in $parts; do echo; echo "## $f"; echo; cat "$out/$f.md" 2>/dev/null || echo "(not produced)"; done
} > "$out/BENCHMARKS.md"
cat "$out/BENCHMARKS.md"
