#!/usr/bin/env bash
# The GPU check, in one go, on a lent GPU (under 8 minutes on one H100 / H200):
#
#     bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. the GPU-marked tests (tests/gpu: CUDA vs the official fixtures <= 1e-4 on every family, fp16 / bf16 autocast,
#    a training step against the CPU's gradients, a 1-GPU nccl torchrun run), then the whole suite on the machine;
# 2. benchmarks/targets.py --device cuda (batch 64, AMP; LITv2-S beside Swin-T and the official forward, litv2_s:official).
# Runs from a checkout (src/ goes first on PYTHONPATH) in an environment with torch, torchvision, timm and pytest.
# Each step's output goes to OUT_DIR; the exit status is 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu_check}
mkdir -p "$out"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
log() { echo "=== $*" | tee -a "$out/summary.txt"; }

"$PY" - <<'PY' | tee "$out/machine.txt"
import torch, torchvision, timm
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}")
print(f"cuda {torch.version.cuda}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO GPU'}")
PY

log "GPU tests"
timeout 240 "$PY" -m pytest -q tests/gpu 2>&1 | tee "$out/gpu_tests.txt" || status=1
tail -n 1 "$out/gpu_tests.txt" >> "$out/summary.txt"

log "targets (cuda)"
timeout 300 "$PY" benchmarks/targets.py --device cuda --threads 8 --rounds 5 --out "$out/targets" 2>&1 | tee "$out/targets.txt" || status=1
for t in "$out"/targets/*/table.md; do [ -f "$t" ] && { echo "## $t"; cat "$t"; } >> "$out/tables.md"; done
log "done (status $status); tables: $out/tables.md"
exit $status
