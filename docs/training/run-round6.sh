#!/usr/bin/env bash
# Round 6 of the lesion model (issue 15): round 5's member had 22 whole-network
# epochs from ImageNet and its validation was still rising, so this continues
# it: warm start from round 5's file (every tensor, head included; no stage-1
# epochs), 16 more epochs of round 5's recipe at half the learning rate
# (1.5e-4, warm-up 1, cosine), the EMA of the last epoch kept.
#   usage: docs/training/run-round6.sh RUN_DIR NAME SEED EPOCHS ROUND5_MODEL [extra train options]
#   round 6 as run (one Xeon core, ~50 min):
#     docs/training/run-round6.sh runs/r6 r6-r5cont 6 16 runs/r5/r5-inet-s5.safetensors
# Every epoch is checkpointed; append --resume to continue on any machine.
set -euo pipefail
RUN=$1 NAME=$2 SEED=$3 EPOCHS=$4 INIT=$5; shift 5
exec "$(dirname "$0")/run-round5.sh" "$RUN" "$NAME" "$SEED" "$EPOCHS" \
  --init "$INIT" --epochs-head 0 --lr 1.5e-4 "$@"
