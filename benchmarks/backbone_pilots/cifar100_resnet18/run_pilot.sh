#!/usr/bin/env bash
# Time-to-accuracy pilot of DirectCopy recipes for the CIFAR-100 ResNet-18
# preset: each candidate is the first epochs of its own full-length schedule
# (scripts/pretrain.py --stop_at_epoch), so the winner continues into the
# preset run. One candidate at a time; rerun this file to resume where it
# stopped (a finished candidate is skipped).
#
#   bash benchmarks/backbone_pilots/cifar100_resnet18/run_pilot.sh [DATA_DIR] [RUNS_DIR]
#
# Then the architecture's random-init floor (scripts/evaluate.py --random_init)
# and the tables and plot of recipe_report.py, as the README says.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA_DIR=${1:-~/tensorflow_datasets}
RUNS_DIR=${2:-runs/pilot_c100}
PYTHON=${PYTHON:-python}
COMMON=(--config=cifar100_resnet20 "--data_dir=$DATA_DIR" --backbone=resnet18 --width_multiplier=0.5
        --knn_every=2 --verbose=2)

run() {  # NAME STOP_AT_EPOCH FLAGS...
  local name=$1 stop=$2
  shift 2
  "$PYTHON" scripts/pretrain.py "${COMMON[@]}" "$@" --stop_at_epoch="$stop" --output_dir="$RUNS_DIR/$name"
}

# A: a target copied from the online network, EMA 0.99 on BYOL's cosine to 1,
# lr 0.06 after 2 warmup epochs: lightly's CIFAR-10 BYOL settings.
run r18w05_copy_ema099cos_lr006 8 --epochs=150 --target_init=copy --ema=0.99 --ema_schedule=cosine \
    --lr=0.06 --warmup_epochs=2
# B, C, D: 90-epoch schedules. The first epochs of a cosine schedule barely
# depend on its length, so they compare with A's first epochs.
# B: as A with the reference's EMA, 0.996 constant.
run r18w05_copy_ema0996_lr006 4 --epochs=90 --target_init=copy --ema=0.996 --ema_schedule=constant \
    --lr=0.06 --warmup_epochs=2
# The reference code's step (its own random target, EMA 0.996 constant, lr 0.03
# constant) is left out: see the README.
# D: as A with a higher learning rate.
run r18w05_copy_ema099cos_lr01 4 --epochs=90 --target_init=copy --ema=0.99 --ema_schedule=cosine \
    --lr=0.1 --warmup_epochs=2

# The chosen candidate, B, continued to the end of its schedule (the kNN
# monitor every 5 epochs; knn_every is not part of the recipe).
if [ "${CONTINUE_CHOSEN:-0}" = 1 ]; then
  "$PYTHON" scripts/pretrain.py "${COMMON[@]}" --knn_every=5 --epochs=90 --target_init=copy --ema=0.996 \
      --ema_schedule=constant --lr=0.06 --warmup_epochs=2 --output_dir="$RUNS_DIR/r18w05_copy_ema0996_lr006"
fi
