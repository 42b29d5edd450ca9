#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice (or several slices) — every worker runs the same command;
# jax.distributed.initialize() picks coordinator/process ids from the TPU metadata.
#
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a CONFIG=configs/train_5b.py \
#   WORKDIR=gs://bucket/runs/5b ./launch/tpu_pod.sh --set optimizer.lr=1e-5
#
# Multi-slice (DCN data parallel across slices, e.g. queued resources with 2 slices): set
# NUM_SLICES=2: the script adds `--set mesh_dcn=data=$NUM_SLICES` (data parallel over DCN, the
# config's `mesh` inside each slice); MEGASCALE_* variables come from the TPU runtime.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}"; : "${ZONE:?set ZONE}"
CONFIG=${CONFIG:-configs/train_2b.py}
WORKDIR=${WORKDIR:-runs/train}
REPO_URL=${REPO_URL:-}           # optional: git URL to clone on the workers
BRANCH=${BRANCH:-main}
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
NUM_SLICES=${NUM_SLICES:-1}
EXTRA_ARGS=$(printf ' %q' "$@")
if [ "$NUM_SLICES" -gt 1 ]; then EXTRA_ARGS+=" --set mesh_dcn=data=$NUM_SLICES"; fi

SETUP="set -e; cd ~; "
if [ -n "$REPO_URL" ]; then
  SETUP+="[ -d cogvideox-jax ] || git clone -b $BRANCH $REPO_URL cogvideox-jax; cd cogvideox-jax; git pull --ff-only; "
  SETUP+="pip install -q -e . 'jax[tpu]==0.10.2' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html; "
else
  SETUP+="cd cogvideox-jax; "
fi

RUN="cogvideox-jax train --config $CONFIG --workdir $WORKDIR$EXTRA_ARGS"

if [ "$NUM_SLICES" -gt 1 ]; then
  # one TPU VM per slice: ${TPU_NAME}-0 … ${TPU_NAME}-(N-1)
  for s in $(seq 0 $((NUM_SLICES - 1))); do
    gcloud compute tpus tpu-vm ssh "${TPU_NAME}-${s}" --zone="$ZONE" $PROJECT_FLAG --worker=all \
      --command="$SETUP $RUN 2>&1 | tee -a ~/train_slice${s}.log" &
  done
  wait
else
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all \
    --command="$SETUP $RUN 2>&1 | tee -a ~/train.log"
fi
