#!/usr/bin/env bash
# ETTh1/ETTh2 × {96,192,336,720}, SpaceTime (paper settings) and the DLinear baseline, on one GPU.
# Usage on the device: bash bench/ett_informer.sh OUTDIR [max_time_per_run]
# Four sweeps run concurrently on the one GPU (the models are small), so the seconds per epoch
# reported are under that sharing; summaries are copied to OUTDIR.
set -u
out=${1:?out dir}; max_time=${2:-00:00:02:00}
runs=${RUNS_ROOT:-runs/ett_informer_bench}
mkdir -p "$out" "$runs"
for model in spacetime_paper dlinear; do
  for ds in ETTh1 ETTh2; do
    tsm train experiment=ett_informer trainer=gpu model=$model "sweep={data.name: [$ds], data.horizon: [96, 192, 336, 720]}" \
      run_dir=$runs/${model}_$ds +trainer.max_time=$max_time +trainer.enable_progress_bar=false \
      > "$runs/${model}_$ds.log" 2>&1 &
  done
done
wait
for model in spacetime_paper dlinear; do
  for ds in ETTh1 ETTh2; do
    cp "$runs/${model}_$ds/summary.json" "$out/${model}_$ds.json" 2>/dev/null || tail -30 "$runs/${model}_$ds.log"
  done
done
tail -5 $runs/*.log > "$out/logs_tail.txt"
