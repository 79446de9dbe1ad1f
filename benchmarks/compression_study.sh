#!/usr/bin/env bash
# The compression study of docs/results/compression_study.md: the quick preset, seeds 0 and 1, every
# series healed the same way (distillation from the dense model, the preset's fine-tune budget):
#   positional:distill                          depth only (the study's strategy), blocks 5, 3, 1
#   positional:distill:w0.5                     + uniform width: half of every channel group, FNet included
#   tp:distill:lat0.33                          Torch-Pruning's MetaPruner, uniform ratio bisected to 1/3 latency
#   block_influence:distill:lat0.33             prunekit's latency planner (blocks + per-group widths)
#   block_influence:distill:lat0.33:subpixel    the same with the sub-pixel tail (tecogan.subpixel_head)
# Latency: fast path (runner tecogan.fast), CPU, 1 thread, LR 134x320, all models interleaved.
# Run it on a machine nobody else is using (latency targets are measured), then
#   .venv/bin/python benchmarks/compression_study.py runs/compression-study > docs/results/compression_study_tables.md
#
# usage: benchmarks/compression_study.sh [quick|smoke] [OUT]   (smoke: a one-minute pipeline check)
set -euo pipefail
PRESET="${1:-quick}"
OUT="${2:-runs/compression-study}"
PRUNEKIT="${PRUNEKIT:-.venv/bin/prunekit}"
if [ "$PRESET" = "smoke" ]; then
  KEEP=0.5  # a narrow model at LR 64x96 cannot reach 1/3: fixed costs (warp, bicubic) dominate
  BLOCKS=3,1
else
  KEEP=0.33
  BLOCKS=5,3,1
fi
SERIES="positional:distill,positional:distill:w0.5,tp:distill:lat$KEEP,block_influence:distill:lat$KEEP"
SERIES="$SERIES,block_influence:distill:lat$KEEP:subpixel"
for SEED in 0 1; do
  "$PRUNEKIT" bench tecogan --preset "$PRESET" --seed "$SEED" --blocks "$BLOCKS" --series "$SERIES" \
    --out "$OUT/$PRESET-seed$SEED"
done
"${PYTHON:-.venv/bin/python}" benchmarks/compression_study.py "$OUT" --preset "$PRESET" --keep "$KEEP"
