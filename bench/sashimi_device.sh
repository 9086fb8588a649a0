#!/usr/bin/env bash
# One GPU session for issue 5: train the digit-conditional SaShiMi (`tsm train experiment=sc_sashimi`)
# while two spoken-digit classifiers train beside it on the same GPU with the project's own command
# (`tsm train experiment=speech_cnn`, BatchNorm and GroupNorm), then judge generated clips with
# bench/sashimi_quality.py. Everything lands in $OUT (default ./out): training logs, the best
# SaShiMi checkpoint, runs.tar.gz (configs, metrics, CSV logs), the quality JSON/PNG, the clips.
#
#   bash bench/sashimi_device.sh                      # on the GPU machine (defaults below)
#   TRAINER=smoke SMOKE=1 bash bench/sashimi_device.sh  # seconds-long CPU check of the recipe
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
TRAINER=${TRAINER:-gpu}
SASHIMI_EPOCHS=${SASHIMI_EPOCHS:-45}
SASHIMI_TIME=${SASHIMI_TIME:-00:00:04:20}   # hard cap; the cosine schedule is planned for SASHIMI_EPOCHS
CLS_EPOCHS=${CLS_EPOCHS:-40}
CLS_TIME=${CLS_TIME:-00:00:01:30}
GEN_EXTRA=() CLS_EXTRA=() Q_EXTRA=()
if [[ -n "${SMOKE:-}" ]]; then
  GEN_EXTRA=(model.d_model=8 model.n_layers=1 model.d_state=8 model.mlp_expand=1 data.length=256 data.limit=4 data.batch_size=2)
  CLS_EXTRA=(data.limit=20)
  Q_EXTRA=(--limit 20 --per-label 1 --seconds 0.02 --spec-cnn-epochs 1)
fi
rm -rf runs/sc_sashimi_device runs/judge_cnn_bn runs/judge_cnn_gn
t0=$(date +%s)

(
  for norm in batch group; do
    tag=$([[ $norm == batch ]] && echo bn || echo gn)
    tsm train experiment=speech_cnn trainer="$TRAINER" trainer.max_epochs="$CLS_EPOCHS" ++trainer.max_time="$CLS_TIME" \
      ++trainer.enable_progress_bar=false callbacks.early_stopping=null ++data.num_workers=3 model.encoder.norm=$norm \
      run_dir=runs/judge_cnn_$tag "${CLS_EXTRA[@]}"
    echo "classifier $tag done at $(( $(date +%s) - t0 )) s"
  done
) > "$OUT/classifiers.log" 2>&1 &
cls_pid=$!

tsm train experiment=sc_sashimi trainer="$TRAINER" trainer.max_epochs="$SASHIMI_EPOCHS" ++trainer.max_time="$SASHIMI_TIME" \
  ++trainer.enable_progress_bar=false data.num_workers=6 run_dir=runs/sc_sashimi_device "${GEN_EXTRA[@]}" 2>&1 \
  | tee "$OUT/sashimi_train.log"
echo "sashimi done at $(( $(date +%s) - t0 )) s"
wait "$cls_pid"
echo "classifiers done at $(( $(date +%s) - t0 )) s"
tail -4 "$OUT/classifiers.log"

ckpt=$(ls runs/sc_sashimi_device/checkpoints/best-*.ckpt | head -1)
cp "$ckpt" "$OUT/sashimi.ckpt"
BENCH_RESULTS_DIR="$OUT" python bench/sashimi_quality.py --gen-ckpt "$ckpt" \
  --classifier runs/judge_cnn_bn --classifier runs/judge_cnn_gn --png "$OUT/sashimi_quality.png" \
  --save-clips "$OUT/sashimi_quality_clips.npz" "${Q_EXTRA[@]}"
echo "quality done at $(( $(date +%s) - t0 )) s"
tar czf "$OUT/runs.tar.gz" --exclude='*.ckpt' runs/sc_sashimi_device runs/judge_cnn_bn runs/judge_cnn_gn
ls -la "$OUT"
