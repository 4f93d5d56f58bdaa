#!/usr/bin/env bash
# Run training on all workers of a TPU VM / pod slice (multi-host: every host runs
# the same command; main.py calls jax.distributed.initialize() when --distributed is set).
# Usage: launch/tpu_vm_train.sh NAME ZONE CONFIG WORKDIR [extra main.py flags...]
#   e.g. launch/tpu_vm_train.sh bert-v4 us-central2-b configs/bert.py:base gs://my-bucket/bert_base \
#          --config.data.corpus.type=tfds --config.data.corpus.tfds_name=wikipedia/20230601.en
set -euo pipefail
NAME=${1:?tpu name}; ZONE=${2:?zone}; CONFIG=${3:?config}; WORKDIR=${4:?workdir}; shift 4
EXTRA="$*"
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command="
  cd plm_jax && nohup python3 main.py --config=$CONFIG --workdir=$WORKDIR --distributed $EXTRA \
    > train.log 2>&1 &
"
echo "started; follow with: gcloud compute tpus tpu-vm ssh $NAME --zone=$ZONE --worker=0 --command='tail -f plm_jax/train.log'"
