#!/usr/bin/env bash
# Create a Cloud TPU VM (or pod slice) for plm_jax.
# Usage: launch/tpu_vm_create.sh [--dry_run] NAME ZONE ACCELERATOR_TYPE [RUNTIME_VERSION]
#   e.g. launch/tpu_vm_create.sh bert-v4 us-central2-b v4-32
# --dry_run prints the gcloud command instead of running it.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(( DRY_RUN )) && shift
NAME=${1:?tpu name}; ZONE=${2:?zone}; TYPE=${3:?accelerator type, e.g. v4-8}
RUNTIME=${4:-tpu-ubuntu2204-base}
run gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" \
  --accelerator-type="$TYPE" --version="$RUNTIME"
