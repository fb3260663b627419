#!/usr/bin/env bash
# Round 3 of the lesion model (issue 15): pooled multi-source fine-tuning with
# scale augmentation, per-source class balance, weight EMA and a validation-
# chosen prior shift. One run per framing (the preprocessing lever), each on
# one thread so two run side by side on a 2-core machine.
#   usage: docs/training/run-round3.sh RUN_DIR crop|squash SEED [--resume]
# The warm start is the round-1 model: INIT=FILE, default runs/round1.safetensors
# (git show 03280c0:weights/dermlens_ham10000.safetensors > runs/round1.safetensors).
# Every epoch is checkpointed (RUN_DIR/<name>.safetensors.ckpt); re-run the
# same command with --resume on any machine to continue.
set -euo pipefail
RUN=$1 FRAMING=$2 SEED=$3; shift 3
D=${DATASETS:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/datasets}
BIN=${DERMLENS:-./build-rel/cli/dermlens}
case $FRAMING in crop) RESIZE=center_crop ;; squash) RESIZE=squash ;; *) echo "framing: crop|squash" >&2; exit 2 ;; esac
mkdir -p "$RUN"
NAME=r3-$FRAMING-s$SEED
exec "$BIN" train \
  --train "$D/ham10000/train" --train "$D/ham10000_224crop/train" --train "$D/isic2017/labels.csv" --train-split train \
  --val "$D/ham10000/val" --val "$D/ham10000_224crop/val" --val "$D/isic2017/labels.csv" --val-split val \
  --exclude docs/training/exclude-isic2017-test-duplicates.txt \
  --init "${INIT:-runs/round1.safetensors}" --cut input --epochs-head 0 --views 1 \
  --epochs 20 --epoch-size 4096 --lr 3e-4 --warmup 1 --patience 0 \
  --resize "$RESIZE" --scale-aug --source-balance --class-power 0 --ema 0.998 --prior-shift \
  --seed "$SEED" --threads 1 --name "DermLens lesion classifier (round 3, $FRAMING, seed $SEED)" \
  --log "$RUN/$NAME.log.csv" -o "$RUN/$NAME.safetensors" "$@"
