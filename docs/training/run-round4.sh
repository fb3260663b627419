#!/usr/bin/env bash
# Round 4 of the lesion model (issue 15): the round-3 recipe (pooled sources,
# scale augmentation, per-source balance, EMA, prior shift) with the levers
# round 3 left untried: a longer schedule (warm start from a round-3 model at a
# lower learning rate) and mixup/cutmix, each run giving an ensemble member.
#   usage: docs/training/run-round4.sh RUN_DIR NAME INIT_MODEL SEED EPOCHS LR [extra train options]
#   round 4 as run:
#     docs/training/run-round4.sh runs/r4 r4-crop-long  runs/r3/r3-crop-s1.safetensors 3 16 1.5e-4
#     docs/training/run-round4.sh runs/r4 r4-crop-mixup runs/round1.safetensors 4 20 3e-4 --mixup 0.3
#   (r3-crop-s1 is the round-3 centre-crop run before its operating point; the
#   round-1 model is `git show 03280c0:weights/dermlens_ham10000.safetensors`,
#   i.e. the model shipped before round 3.)
# Every epoch is checkpointed (RUN_DIR/NAME.safetensors.ckpt); re-run the same
# command with --resume appended on any machine to continue.
set -euo pipefail
RUN=$1 NAME=$2 INIT=$3 SEED=$4 EPOCHS=$5 LR=$6; shift 6
D=${DATASETS:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
BIN=${DERMLENS:-./build-rel/cli/dermlens}
mkdir -p "$RUN"
exec "$BIN" train \
  --train "$D/ham10000/train" --train "$D/ham10000_224crop/train" --train "$D/isic2017/labels.csv" --train-split train \
  --val "$D/ham10000/val" --val "$D/ham10000_224crop/val" --val "$D/isic2017/labels.csv" --val-split val \
  --exclude docs/training/exclude-isic2017-test-duplicates.txt \
  --init "$INIT" --cut input --epochs-head 0 --views 1 \
  --epochs "$EPOCHS" --epoch-size 4096 --lr "$LR" --warmup 1 --patience 0 \
  --resize center_crop --scale-aug --source-balance --class-power 0 --ema 0.998 --prior-shift \
  --seed "$SEED" --threads 1 --name "DermLens lesion classifier ($NAME, seed $SEED)" \
  --log "$RUN/$NAME.log.csv" -o "$RUN/$NAME.safetensors" "$@"
