#!/usr/bin/env bash
# COCO 2014 val mAP of a checkpoint, as the seed's run_eval.sh (spec §5): 416 x 416 inputs.
# The network and quantizer come from the checkpoint's own config.
#
# Environment (optional): DEVICE_TARGET (CPU, GPU or Ascend; default CPU),
# PYTHON (the interpreter with yoloqat installed; default python3).
set -euo pipefail

usage() {
    cat >&2 <<USAGE
Usage: bash $0 DATASET_PATH CHECKPOINT_PATH [yoloqat eval flags...]

  DATASET_PATH     COCO 2014 root (val2014/, annotations/instances_val2014.json)
  CHECKPOINT_PATH  checkpoint to evaluate (.ckpt)
  further flags    passed to 'yoloqat eval' after the script's, so they override it
USAGE
    exit "${1:-2}"
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
help_requested "$@"

[[ $# -ge 2 && "${1:0:1}" != "-" && "${2:0:1}" != "-" ]] || fail "DATASET_PATH and CHECKPOINT_PATH are required"
dataset_path=$1
checkpoint=$2
shift 2
require_dir DATASET_PATH "$dataset_path"
require_file CHECKPOINT_PATH "$checkpoint"

exec "${PYTHON:-python3}" -m yoloqat eval \
    --data_dir "$dataset_path" \
    --pretrained "$checkpoint" \
    --testing_shape 416 \
    --device_target "${DEVICE_TARGET:-CPU}" \
    "$@"
