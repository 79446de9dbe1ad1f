#!/usr/bin/env bash
# The compression study of docs/results/compression_study.md: the quick preset, seeds 0 and 1. Healing:
# every pruned model is fine-tuned the preset's budget, with the FRVSR loss on the built-in GT ("plain");
# Torch-Pruning's row is also healed with output distillation from the dense model ("distill").
#   positional:plain                            depth only (the study's strategy), blocks 5, 3, 1
#   positional:plain:w0.5                       + uniform width: half of every channel group, FNet included
#   tp:plain:lat0.33                            Torch-Pruning's MetaPruner, uniform ratio bisected to 1/3 latency
#   block_influence:plain:lat0.33               prunekit's latency planner (blocks + per-group widths),
#                                               moves priced by channel importance (the default)
#   block_influence:plain:lat0.33:sensitivity   the same, moves priced by measured output damage
#   tp:distill:lat0.33                          the baseline healed by distillation
#   block_influence:plain:lat0.33:uniform:refit the planner keeping every block, all groups cut by one
#                                               fraction (lockstep), refit
#   tp:plain:lat0.32:refit                      the refit baseline planned with a margin under 1/3: its bisection
#                                               stops at the first ratio measured <= the target, and a later
#                                               interleaved timing of the same model varies by about +-0.01
#   ...:refit                                   the pruned layers refit to the dense ones by least squares
#                                               (pk.refit) before healing: Torch-Pruning's uniform model,
#                                               the planner (both pricings) and the uniform w0.5 series
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
  MARGIN=0.48
  BLOCKS=3,1
else
  KEEP=0.33
  MARGIN=0.32
  BLOCKS=5,3,1
fi
SERIES="positional:plain,positional:plain:w0.5,tp:plain:lat$KEEP,block_influence:plain:lat$KEEP"
SERIES="$SERIES,block_influence:plain:lat$KEEP:sensitivity,tp:distill:lat$KEEP"
SERIES="$SERIES,tp:plain:lat$KEEP:refit,block_influence:plain:lat$KEEP:refit"
SERIES="$SERIES,block_influence:plain:lat$KEEP:sensitivity:refit,positional:plain:w0.5:refit"
SERIES="$SERIES,block_influence:plain:lat$KEEP:uniform,block_influence:plain:lat$KEEP:uniform:refit"
SERIES="$SERIES,tp:plain:lat$MARGIN:refit"
for SEED in 0 1; do
  "$PRUNEKIT" bench tecogan --preset "$PRESET" --seed "$SEED" --blocks "$BLOCKS" --series "$SERIES" \
    --out "$OUT/$PRESET-seed$SEED"
done
"${PYTHON:-.venv/bin/python}" benchmarks/compression_study.py "$OUT" --preset "$PRESET" --keep "$KEEP"
