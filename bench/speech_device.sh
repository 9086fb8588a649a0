#!/usr/bin/env bash
# Spoken-digit classification on the GPU (issue 7) with the project's own command, every run side by
# side on one GPU (so their s/epoch are not solo figures). Each argument is one run:
#   "NAME EXPERIMENT [OVERRIDE ...]"
# Default: the three speech experiments (cnn, s4, spacetime). Everything (metrics.json, configs, CSV
# logs, confusion matrices, stdout) lands in $OUT/speech_runs.tar.gz, plus a summary table
# ($OUT/speech_summary.txt) sorted by validation loss (the checkpoint criterion), so a sweep picks
# its winner on validation, not on test.
#
#   bash bench/speech_device.sh                                    # on the GPU machine
#   bash bench/speech_device.sh "s4_pk16 speech_s4 model.patch_kernel=16" "s4_d256 speech_s4 model.d_model=256"
#   TRAINER=smoke EXTRA="data.limit=20" bash bench/speech_device.sh   # seconds-long CPU check
set -uo pipefail
OUT=${OUT:-out}
ROOT=runs/speech_device
mkdir -p "$OUT" "$ROOT"
TRAINER=${TRAINER:-gpu}
read -r -a EXTRA <<< "${EXTRA:-}"
if [ $# -eq 0 ]; then
  set -- "cnn speech_cnn trainer.max_epochs=${CNN_EPOCHS:-60}" "s4 speech_s4 trainer.max_epochs=${S4_EPOCHS:-60}" \
         "spacetime speech_spacetime trainer.max_epochs=${ST_EPOCHS:-30}"
fi
names=()
pids=()
for run in "$@"; do
  read -r -a words <<< "$run"
  name=${words[0]}
  exp=${words[1]}
  names+=("$name")
  tsm train experiment="$exp" trainer="$TRAINER" "${words[@]:2}" \
    ++trainer.max_time="${SPEECH_TIME:-00:00:05:00}" ++trainer.enable_progress_bar=false \
    callbacks.early_stopping=null ++data.num_workers="${WORKERS:-3}" run_dir="$ROOT/$name" "${EXTRA[@]}" \
    > "$ROOT/$name.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python3 - "$ROOT" "${names[@]}" > "$OUT/speech_summary.txt" <<'PY'
import json, sys
from pathlib import Path
root, rows = Path(sys.argv[1]), []
for name in sys.argv[2:]:
    f = root / name / "metrics.json"
    m = json.loads(f.read_text()) if f.exists() else {}
    rows.append((m.get("best_val_loss", float("inf")), name, m))
print(f"{'run':<16}{'val loss':>10}{'test acc':>10}{'epochs':>8}{'s/epoch':>9}  best checkpoint")
for v, name, m in sorted(rows, key=lambda r: r[0]):
    print(f"{name:<16}{v:>10.4f}{m.get('test/acc', float('nan')):>10.4f}{m.get('epochs', 0):>8}"
          f"{m.get('seconds_per_epoch') or float('nan'):>9.2f}  {m.get('best_checkpoint', 'failed: see ' + name + '.log')}")
PY
cat "$OUT/speech_summary.txt"
for n in "${names[@]}"; do echo "== $n"; tail -2 "$ROOT/$n.log"; done
tar czf "$OUT/speech_runs.tar.gz" --exclude='*.ckpt' "$ROOT"
