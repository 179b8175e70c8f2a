#!/bin/bash
# Starts the same entry point on every host of a Cloud TPU VM pod slice.
# jax.distributed.initialize() (called by `--distributed`) discovers the pod's
# hosts from the TPU metadata. The repository must be checked out (and
# installed with `pip install -e .`) at the same path on every worker first,
# e.g. with `--command "git clone ... && cd neurojax && pip install -e ."`.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]
#
# WORKDIR must be a path every worker sees (a shared filesystem or a bucket
# mounted with gcsfuse, not a gs:// URL), since orbax writes checkpoints
# from every host and the loop appends to metrics.jsonl.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
repo_dir=${NEUROJAX_REMOTE_DIR:-neurojax}
extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd $repo_dir && python -m launch.run --distributed --config $config --workdir $workdir$extra"
