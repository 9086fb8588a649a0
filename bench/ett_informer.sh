#!/usr/bin/env bash
# ETTh1/ETTh2 x {96,192,336,720}: SpaceTime (the paper's settings) and the DLinear baseline, on one GPU.
# Usage on the device: bash bench/ett_informer.sh OUTDIR [MAX_EPOCHS] [PATIENCE] [MAX_TIME] [JOBS]
#   defaults: 500 epochs, patience 20 (the paper's), at most 00:00:12:00 of training per run, 8 runs at a time.
# One process per (model, data set, horizon); JOBS of them share the GPU, so the seconds per epoch they
# report are under that sharing (time one run alone for the table's epoch time). Training steps are
# CUDA graphs (task.cuda_graphs). Writes OUTDIR/<model>_<data>_<H>.json (each run's metrics) and
# OUTDIR/ett_informer.json (all runs, with the device name).
set -u
out=${1:?out dir}; epochs=${2:-500}; patience=${3:-20}; max_time=${4:-00:00:12:00}; jobs=${5:-8}
runs=${RUNS_ROOT:-runs/ett_informer_bench}
mkdir -p "$out" "$runs"
for model in spacetime_paper dlinear; do
  for ds in ETTh1 ETTh2; do
    for h in 96 192 336 720; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
      name=${model}_${ds}_$h
      tsm train experiment=ett_informer trainer=gpu model=$model "sweep={data.name: [$ds], data.horizon: [$h]}" \
        trainer.max_epochs=$epochs callbacks.early_stopping.patience=$patience run_dir=$runs/$name \
        +trainer.max_time=$max_time +trainer.enable_progress_bar=false > "$runs/$name.log" 2>&1 &
    done
  done
done
wait
python - "$runs" "$out" <<'PY'
import glob, json, os, sys
runs, out = sys.argv[1:]
rows = []
for path in sorted(glob.glob(os.path.join(runs, "*", "*", "metrics.json")) + glob.glob(os.path.join(runs, "*", "metrics.json"))):
    m = json.load(open(path))
    name = os.path.relpath(path, runs).split(os.sep)[0]
    json.dump(m, open(os.path.join(out, f"{name}.json"), "w"), indent=2)
    rows.append({"run": name, **{k: m.get(k) for k in ("epochs", "seconds_per_epoch", "test/mse", "test/mae", "device")}})
json.dump({"runs": rows}, open(os.path.join(out, "ett_informer.json"), "w"), indent=2)
for r in rows:
    print(f"{r['run']:28s} epochs {r['epochs']!s:>4} s/epoch {r['seconds_per_epoch'] or 0:6.2f} "
          f"mse {r['test/mse'] or float('nan'):.4f} mae {r['test/mae'] or float('nan'):.4f}")
PY
tail -n 3 "$runs"/*.log > "$out/logs_tail.txt"
