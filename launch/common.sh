# shellcheck shell=bash
# Shared by the launch/tpu_vm_*.sh scripts (sourced, not run).
#
# Every script takes --dry_run as its first argument: the gcloud commands are printed,
# one per line and quoted so that pasting a line runs exactly that command, instead of
# being run. A command that runs on the TPU VM is one string (gcloud's --command); each
# argument in it is single-quoted by `quote`, so any main.py override survives the
# trip: --config.train.name='a b', --config.mesh.shape='(2,4,1)', a $ or a quote.

DRY_RUN=0
if [[ "${1:-}" == "--dry_run" ]]; then
  DRY_RUN=1
fi

# The TPU build of jax: jax[tpu] at requirements.txt's jax version, libtpu from its
# release index.
# shellcheck disable=SC2034  # used by tpu_vm_setup.sh
JAX_VERSION=$(sed -n 's/^jax\[cpu\]==\([0-9.]*\).*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../requirements.txt")
# shellcheck disable=SC2034
LIBTPU_INDEX="https://storage.googleapis.com/jax-releases/libtpu_releases.html"

# quote ARG: ARG as one POSIX shell word: bare when every character is safe, otherwise
# in single quotes (a ' inside becomes '\'').
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then   # safe as it is
    printf '%s' "$1"
    return
  fi
  local s=${1//\'/\'\\\'\'}
  printf "'%s'" "$s"
}

# quote_all ARG...: every ARG quoted, separated by spaces.
quote_all() {
  local out="" a
  for a in "$@"; do
    out+="${out:+ }$(quote "$a")"
  done
  printf '%s' "$out"
}

# run CMD ARG...: runs the command, or with --dry_run prints it (quoted, one line).
run() {
  if (( DRY_RUN )); then
    quote_all "$@"
    printf '\n'
  else
    "$@"
  fi
}

# on_workers NAME ZONE SCRIPT: runs SCRIPT (one shell string) on every worker.
on_workers() {
  run gcloud compute tpus tpu-vm ssh "$1" --zone="$2" --worker=all --command="$3"
}

# Bucket paths: gs://BUCKET/PATH is mounted with gcsfuse on every worker at
# ~/gcs/BUCKET (the trainer writes plain files), so PATH lives in the bucket.
bucket_of() {
  local rest=${1#gs://}
  printf '%s' "${rest%%/*}"
}

# path_expr PATH: a shell word that is PATH on the worker ("$HOME"/'gcs/BUCKET/...' for
# gs://BUCKET/..., PATH quoted otherwise).
path_expr() {
  if [[ "$1" == gs://* ]]; then
    # shellcheck disable=SC2016  # $HOME is for the worker's shell
    printf '"$HOME"/%s' "$(quote "gcs/${1#gs://}")"
  else
    quote "$1"
  fi
}

# mount_script PATH: the shell that mounts PATH's bucket on the worker (nothing for a
# local PATH).
mount_script() {
  if [[ "$1" == gs://* ]]; then
    local dir
    dir=$(path_expr "gs://$(bucket_of "$1")")
    printf '%s' "mkdir -p $dir && { mountpoint -q $dir || gcsfuse --implicit-dirs $(quote "$(bucket_of "$1")") $dir; } && "
  fi
}
