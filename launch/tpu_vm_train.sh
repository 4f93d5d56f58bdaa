#!/usr/bin/env bash
# Run training on all workers of a TPU VM / pod slice (multi-host: every host runs the
# same command; main.py calls jax.distributed.initialize() with --distributed).
# Usage: launch/tpu_vm_train.sh [--dry_run] NAME ZONE CONFIG WORKDIR [main.py flags...]
#   e.g. launch/tpu_vm_train.sh bert-v4 us-central2-b configs/bert.py:base gs://my-bucket/bert_base \
#          --config.data.corpus.type=tfds --config.data.corpus.tfds_name=wikipedia/20230601.en
# WORKDIR gs://BUCKET/PATH: the bucket is mounted with gcsfuse on every worker
# (~/gcs/BUCKET), so checkpoints, TensorBoard events and the export go to the bucket,
# and each worker's console log to WORKDIR/logs/<worker hostname>.log. Each main.py
# flag reaches the workers as one argument, whatever it holds (quotes, spaces, $).
# --dry_run prints the gcloud command instead of running it.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(( DRY_RUN )) && shift
NAME=${1:?tpu name}; ZONE=${2:?zone}; CONFIG=${3:?config}; WORKDIR=${4:?workdir}; shift 4
DIR=$(path_expr "$WORKDIR")
SCRIPT="set -euo pipefail; $(mount_script "$WORKDIR")mkdir -p $DIR/logs && cd plm_jax && \
nohup python3 main.py $(quote "--config=$CONFIG") --workdir=$DIR --distributed \
$(quote_all "$@") > $DIR/logs/\"\$(hostname)\".log 2>&1 &"
on_workers "$NAME" "$ZONE" "$SCRIPT"
if (( ! DRY_RUN )); then
  echo "started; follow with: $(quote_all gcloud compute tpus tpu-vm ssh "$NAME" \
    --zone="$ZONE" --worker=0 --command="tail -f $DIR/logs/*.log")"
fi
