#!/usr/bin/env bash
# Round 5 of the lesion model (issue 15): an ensemble member of its own lineage.
# Every round-3/4 member descends from the round-1 model; this run starts from
# the ImageNet backbone alone (stage 1: a new head on cached features; stage 2:
# the whole network), with round 4's recipe (pooled sources, scale augmentation,
# per-source balance, EMA, prior shift) plus mixup/cutmix and stronger colour
# jitter, keeping the end of the schedule (the EMA), not the best val epoch.
#   usage: docs/training/run-round5.sh RUN_DIR NAME SEED EPOCHS [extra train options]
#   round 5 as run:
#     docs/training/run-round5.sh runs/r5 r5-inet-s5 5 22
# Every epoch is checkpointed (RUN_DIR/NAME.safetensors.ckpt); re-run the same
# command with --resume appended on any machine to continue.
set -euo pipefail
RUN=$1 NAME=$2 SEED=$3 EPOCHS=$4; shift 4
D=${DATASETS:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
BIN=${DERMLENS:-./build-rel/cli/dermlens}
mkdir -p "$RUN"
exec "$BIN" train \
  --train "$D/ham10000/train" --train "$D/ham10000_224crop/train" --train "$D/isic2017/labels.csv" --train-split train \
  --val "$D/ham10000/val" --val "$D/ham10000_224crop/val" --val "$D/isic2017/labels.csv" --val-split val \
  --exclude docs/training/exclude-isic2017-test-duplicates.txt \
  --cut input --epochs-head 4 --views 1 \
  --epochs "$EPOCHS" --epoch-size 4096 --lr 3e-4 --warmup 1 --patience 0 \
  --resize center_crop --scale-aug --colour-jitter 1.5 --mixup 0.3 --source-balance --class-power 0 \
  --ema 0.998 --prior-shift --select last \
  --seed "$SEED" --threads 1 --name "DermLens lesion classifier ($NAME, seed $SEED)" \
  --log "$RUN/$NAME.log.csv" -o "$RUN/$NAME.safetensors" "$@"
