#!/usr/bin/env bash
# Data-parallel QAT training, the seed's 8-device recipe (spec §6.3, §6.5): 16 images per
# device, lr 0.012, cosine annealing over 135 epochs with 5 warmup epochs, starting from a
# float checkpoint. The workers are started by msrun, MindSpore's own launcher; each runs
# `python -m yoloqat train --is_distributed 1` and takes its rank and the group size from
# mindspore.communication after init(). The same command runs on CPU (AllReduce over
# loopback), GPU (NCCL) and Ascend (HCCL).
#
# msrun runs through `python -m yoloqat.engine.launch` (msrun's own process manager, same
# arguments), which names a rank that dies: the other ranks stop within the collective
# timeout (MS_CPU_COMM_OP_TIMEOUT on CPU, 30 s by default), each printing the rank that
# stopped, its step, the last checkpoint and this script's command with --resume; the
# script then exits with code 1.
#
# Environment (all optional):
#   DEVICE_NUM     workers when the 4th argument is not given (default 8)
#   DEVICE_TARGET  CPU, GPU or Ascend (default CPU)
#   MASTER_PORT    msrun scheduler port (default 8118)
#   RUN_NAME       run folder name under ckpt_path, shared by all ranks (default: start time)
#   LOG_DIR        msrun's per-worker logs (default msrun_logs/RUN_NAME)
#   PYTHON         the interpreter with yoloqat installed (default: python on PATH)
#   MS_CPU_COMM_OP_TIMEOUT  seconds a CPU collective waits for a peer (MindSpore; 30)
#   YOLOQAT_PEER_GRACE      seconds the other ranks get after one failed (timeout + 30)
set -euo pipefail

usage() {
    cat >&2 <<USAGE
Usage: bash $0 DATASET_PATH FLOAT_CKPT [RANK_TABLE_FILE] [DEVICE_NUM] [yoloqat train flags...]

  DATASET_PATH     COCO 2014 root (train2014/, annotations/instances_train2014.json)
  FLOAT_CKPT       float checkpoint to start QAT from (--resume_yolov3)
  RANK_TABLE_FILE  Ascend HCCL rank table (exported as RANK_TABLE_FILE and
                   MINDSPORE_HCCL_CONFIG_PATH); ignored on CPU/GPU; "" or none to skip
  DEVICE_NUM       number of workers (default \$DEVICE_NUM or 8)
  further flags    passed to 'yoloqat train' after the recipe's, so they override it

Example: bash $0 /data/coco2014 float.ckpt none 8
USAGE
    exit "${1:-2}"
}

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
help_requested "$@"
# this command line, with --resume CKPT appended, is what the ranks print to resume a run
YOLOQAT_LAUNCH_COMMAND="bash $(printf '%q' "$0")$(printf ' %q' "$@")"
export YOLOQAT_LAUNCH_COMMAND

positional=()
while [[ $# -gt 0 && ${#positional[@]} -lt 4 && "${1:0:1}" != "-" ]]; do
    positional+=("$1")
    shift
done
if [[ ${#positional[@]} -lt 2 ]]; then
    fail "DATASET_PATH and FLOAT_CKPT are required"
fi
dataset_path=${positional[0]}
float_ckpt=${positional[1]}
rank_table=${positional[2]:-}
device_num=${positional[3]:-${DEVICE_NUM:-8}}
device_target=${DEVICE_TARGET:-CPU}
master_port=${MASTER_PORT:-8118}

require_dir DATASET_PATH "$dataset_path"
require_file FLOAT_CKPT "$float_ckpt"
[[ "$device_num" =~ ^[1-9][0-9]*$ ]] || fail "DEVICE_NUM must be a positive integer, got '$device_num'"
[[ "$master_port" =~ ^[0-9]+$ ]] || fail "MASTER_PORT must be a port number, got '$master_port'"

if [[ -n "$rank_table" && "$rank_table" != "none" ]]; then
    require_file RANK_TABLE_FILE "$rank_table"
    if [[ "${device_target,,}" == "ascend" ]]; then
        rank_table=$(cd "$(dirname "$rank_table")" && pwd)/$(basename "$rank_table")
        export RANK_TABLE_FILE="$rank_table"
        export MINDSPORE_HCCL_CONFIG_PATH="$rank_table"
    else
        echo "note: RANK_TABLE_FILE is only used on Ascend; ignored on $device_target" >&2
    fi
fi

# msrun starts every worker as `python ...` found on PATH: put the chosen interpreter first.
python_bin=${PYTHON:-$(command -v python || command -v python3 || true)}
[[ -n "$python_bin" ]] || fail "no python found; set PYTHON to the interpreter with yoloqat"
python_bin=$(command -v "$python_bin") || fail "PYTHON not found: ${PYTHON:-python}"
PATH="$(dirname "$python_bin"):$PATH"
export PATH
if ! python -c "import yoloqat, mindspore" >/dev/null 2>&1; then
    fail "'python' on PATH ($(command -v python || echo none)) cannot import yoloqat and mindspore; activate its environment or set PYTHON"
fi

export YOLOQAT_RUN_NAME=${RUN_NAME:-${YOLOQAT_RUN_NAME:-$(date +%Y-%m-%d_time_%H_%M_%S)}}
log_dir=${LOG_DIR:-msrun_logs/$YOLOQAT_RUN_NAME}
echo "run $YOLOQAT_RUN_NAME: $device_num workers on $device_target, worker logs in $log_dir" >&2

exec python -m yoloqat.engine.launch \
    --worker_num="$device_num" --local_worker_num="$device_num" \
    --master_port="$master_port" --log_dir="$log_dir" --join=True \
    python -m yoloqat train \
    --config yolov3_darknet53_quant \
    --data_dir "$dataset_path" \
    --resume_yolov3 "$float_ckpt" \
    --is_distributed 1 \
    --device_target "$device_target" \
    --per_batch_size 16 \
    --lr 0.012 \
    --T_max 135 \
    --max_epoch 135 \
    --warmup_epochs 5 \
    --lr_scheduler cosine_annealing \
    "$@"
