#!/usr/bin/env bash
# Install plm_jax on every worker of a TPU VM / pod slice: the repository (cloned, or
# pulled when present), the TPU build of jax (jax[tpu] with libtpu from its release
# index, at requirements.txt's jax version), the rest of requirements.txt, and gcsfuse
# (workdirs on gs:// paths are mounted with it by tpu_vm_train.sh).
# Usage: launch/tpu_vm_setup.sh [--dry_run] NAME ZONE [GIT_URL] [BRANCH]
#   e.g. launch/tpu_vm_setup.sh bert-v4 us-central2-b https://github.com/you/plm_jax.git
# --dry_run prints the gcloud command instead of running it.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(( DRY_RUN )) && shift
NAME=${1:?tpu name}; ZONE=${2:?zone}
GIT_URL=${3:-$(git config --get remote.origin.url)}; BRANCH=${4:-main}
SCRIPT="set -euo pipefail; \
if [ ! -d plm_jax ]; then git clone --branch $(quote "$BRANCH") $(quote "$GIT_URL") plm_jax; fi; \
cd plm_jax && git fetch origin && git checkout $(quote "$BRANCH") && git pull --ff-only; \
python3 -m pip install -U pip; \
python3 -m pip install $(quote "jax[tpu]==$JAX_VERSION") -f $(quote "$LIBTPU_INDEX") -r requirements.txt; \
python3 -m pip install --no-deps -e .; \
if ! command -v gcsfuse >/dev/null; then \
  echo \"deb https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list; \
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /etc/apt/trusted.gpg.d/gcsfuse.asc >/dev/null; \
  sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; \
fi; \
python3 -c 'import jax; print(jax.device_count(), jax.devices()[0].platform)'"
on_workers "$NAME" "$ZONE" "$SCRIPT"
