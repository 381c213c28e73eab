#!/usr/bin/env bash
# Single-device QAT training, the seed's 1-device recipe (spec §6.3): 16 images per step,
# lr 0.004, cosine annealing over 135 epochs with 5 warmup epochs, from a float checkpoint.
#
# Environment (optional): DEVICE_TARGET (CPU, GPU or Ascend; default CPU),
# PYTHON (the interpreter with yoloqat installed; default python3).
set -euo pipefail

usage() {
    cat >&2 <<USAGE
Usage: bash $0 DATASET_PATH FLOAT_CKPT [yoloqat train flags...]

  DATASET_PATH  COCO 2014 root (train2014/, annotations/instances_train2014.json)
  FLOAT_CKPT    float checkpoint to start QAT from (--resume_yolov3)
  further flags passed to 'yoloqat train' after the recipe's, so they override it
USAGE
    exit "${1:-2}"
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
help_requested "$@"

[[ $# -ge 2 && "${1:0:1}" != "-" && "${2:0:1}" != "-" ]] || fail "DATASET_PATH and FLOAT_CKPT are required"
dataset_path=$1
float_ckpt=$2
shift 2
require_dir DATASET_PATH "$dataset_path"
require_file FLOAT_CKPT "$float_ckpt"

exec "${PYTHON:-python3}" -m yoloqat train \
    --config yolov3_darknet53_quant \
    --data_dir "$dataset_path" \
    --resume_yolov3 "$float_ckpt" \
    --is_distributed 0 \
    --device_target "${DEVICE_TARGET:-CPU}" \
    --per_batch_size 16 \
    --lr 0.004 \
    --T_max 135 \
    --max_epoch 135 \
    --warmup_epochs 5 \
    --lr_scheduler cosine_annealing \
    "$@"
