#!/usr/bin/env bash
# The GPU check, in one go, on a lent GPU (under 8 minutes on one H100 / H200):
#
#     bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. the GPU-marked tests (tests/gpu: CUDA vs the official fixtures <= 1e-4 on every family, fp16 / bf16 autocast,
#    a training step against the CPU's gradients, a 1-GPU nccl torchrun run) and, beside them on the spare cores,
#    the whole suite on the GPU machine (its tests keep to the CPU, tests/conftest.py; capped at SUITE_S seconds);
# 2. benchmarks/targets.py --device cuda (batch 64, AMP; LITv2-S beside Swin-T and the official forward,
#    litv2_s:official; the attention layers in fp32 and fp16), alone on the machine;
# 3. a per-op CUDA profile of LITv2-S beside the official forward (fp32 and fp16 inference, batch 64), to
#    OUT_DIR/profile_fp32.md and profile_fp16.md, and LITv2-S with one part at a time run the official way
#    (litv2_s:official=ffn / hilo / dtm; fp16 inference, with GPU memory), to OUT_DIR/parts_fp16.md: which part a
#    gap in speed or memory comes from.
# Runs from a checkout (src/ goes first on PYTHONPATH) in an environment with torch, torchvision, timm and pytest
# (pytest-xdist for the suite). Each step's output goes to OUT_DIR, the tables to OUT_DIR/tables.md; the exit status
# is 1 if a GPU test or a benchmark failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_check}
mkdir -p "$out"
PY=${PYTHON:-$(command -v python || command -v python3)}
SUITE_S=${SUITE_S:-90}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
log() { echo "=== $(date -u +%T) $*" | tee -a "$out/summary.txt"; }

{
  "$PY" - <<'PY'
import torch, torchvision, timm
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}")
print(f"cuda {torch.version.cuda}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO GPU'}")
PY
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  grep -m1 "model name" /proc/cpuinfo; nproc
} | tee "$out/machine.txt"

log "GPU tests, and the whole suite beside them (at most ${SUITE_S} s)"
timeout -s INT -k 30 "$SUITE_S" "$PY" -m pytest -q -n 8 -p no:cacheprovider --ignore=tests/gpu >"$out/suite.txt" 2>&1 &
suite=$!
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/gpu_tests.txt" || status=1
tail -n 1 "$out/gpu_tests.txt" >> "$out/summary.txt"
wait $suite; rc=$?
echo "suite: exit $rc$([ $rc = 124 ] && echo " (stopped at ${SUITE_S} s)"): $(tail -n 1 "$out/suite.txt")" >> "$out/summary.txt"

log "targets (cuda)"
timeout 300 "$PY" benchmarks/targets.py --device cuda --threads 8 --rounds 3 --out "$out/targets" 2>&1 | tee "$out/targets.txt" || status=1
for t in "$out"/targets/*/table.md; do [ -f "$t" ] && { echo "## $t"; cat "$t"; } >> "$out/tables.md"; done
log "profiles (cuda)"
for dtype in fp32 fp16; do
  timeout 60 "$PY" -m litvit.bench.cli litv2_s litv2_s:official --profile --device cuda --dtype $dtype --batch-size 64 \
    --warmup 3 --repeats 5 --quiet --out "$out/profile_$dtype" >"$out/profile_$dtype.txt" 2>&1 || status=1
  cp "$out/profile_$dtype/profile.md" "$out/profile_$dtype.md" 2>/dev/null
done
log "parts (cuda, fp16)"
parts="litv2_s:official=ffn litv2_s:official=hilo litv2_s:official=dtm"
timeout 90 "$PY" -m litvit.bench.cli litv2_s litv2_s:official $parts --device cuda --dtype fp16 --batch-size 64 \
  --no-latency --rounds 3 --quiet --out "$out/parts_fp16" >"$out/parts_fp16.txt" 2>&1 || status=1
cp "$out/parts_fp16/table.md" "$out/parts_fp16.md" 2>/dev/null
log "done (status $status); tables: $out/tables.md"
exit $status
