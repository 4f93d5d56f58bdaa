#!/usr/bin/env bash
# Create a Cloud TPU VM (or pod slice) for plm_jax.
# Usage: launch/tpu_vm_create.sh NAME ZONE ACCELERATOR_TYPE [RUNTIME_VERSION]
#   e.g. launch/tpu_vm_create.sh bert-v4 us-central2-b v4-32
set -euo pipefail
NAME=${1:?tpu name}; ZONE=${2:?zone}; TYPE=${3:?accelerator type, e.g. v4-8}
RUNTIME=${4:-tpu-ubuntu2204-base}
gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" \
  --accelerator-type="$TYPE" --version="$RUNTIME"
