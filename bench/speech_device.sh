#!/usr/bin/env bash
# Spoken-digit classification on the GPU (issue 7): the three `speech_*` experiments with the
# project's own command, run side by side on one GPU (so their s/epoch are not solo figures).
# Everything (metrics.json, configs, CSV logs, confusion matrices, stdout) lands in
# $OUT/speech_runs.tar.gz.
#
#   bash bench/speech_device.sh                         # on the GPU machine
#   TRAINER=smoke EXTRA="data.limit=20" bash bench/speech_device.sh   # seconds-long CPU check
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT" runs/speech_device
TRAINER=${TRAINER:-gpu}
read -r -a EXTRA <<< "${EXTRA:-}"
declare -A EPOCHS=([cnn]=${CNN_EPOCHS:-60} [s4]=${S4_EPOCHS:-60} [spacetime]=${ST_EPOCHS:-30})
pids=()
for m in cnn s4 spacetime; do
  tsm train experiment=speech_$m trainer="$TRAINER" trainer.max_epochs="${EPOCHS[$m]}" \
    ++trainer.max_time="${SPEECH_TIME:-00:00:05:00}" ++trainer.enable_progress_bar=false \
    callbacks.early_stopping=null ++data.num_workers=3 run_dir=runs/speech_device/$m "${EXTRA[@]}" \
    > runs/speech_device/$m.log 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
for m in cnn s4 spacetime; do echo "== $m"; tail -3 runs/speech_device/$m.log; done
tar czf "$OUT/speech_runs.tar.gz" --exclude='*.ckpt' runs/speech_device
