#!/usr/bin/env bash
# Install plm_jax on every worker of a TPU VM / pod slice.
# Usage: launch/tpu_vm_setup.sh NAME ZONE [GIT_URL] [BRANCH]
set -euo pipefail
NAME=${1:?tpu name}; ZONE=${2:?zone}
GIT_URL=${3:-$(git config --get remote.origin.url)}; BRANCH=${4:-main}
gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command="
  set -e
  if [ ! -d plm_jax ]; then git clone --branch $BRANCH $GIT_URL plm_jax; fi
  cd plm_jax && git pull --ff-only
  python3 -m pip install -U pip
  python3 -m pip install 'jax[tpu]==0.10.2' -r requirements.txt
  python3 -m pip install --no-deps -e .
"
