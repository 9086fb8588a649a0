#!/usr/bin/env bash
# ETTh1/ETTh2 x {96,192,336,720}: SpaceTime (the paper's settings) and the DLinear baseline, on one GPU.
# Usage on the device: bash bench/ett_informer.sh OUTDIR [MAX_EPOCHS] [PATIENCE] [MAX_TIME] [JOBS]
#   defaults: 500 epochs, patience 20 (the paper's), at most 00:00:12:00 of training per run, 8 runs at a time.
# Environment: MODELS (default "spacetime_paper dlinear"), DATASETS ("ETTh1 ETTh2"), HORIZONS
# ("96 192 336 720"), VARIANTS: ";"-separated "tag:override override ..." entries, each run for every
# (model, data set, horizon) (default one variant "base" with no overrides). Tags may not contain "_";
# a model argument that configs/model/<model>.yaml does not list needs Hydra's "+", e.g.
# "pre:+model.n_shift_heads=16 model.n_encoder_layers=2"; the seed is "seed=1".
# One process per (variant, model, data set, horizon); JOBS of them share the GPU (start an MPS daemon
# first so that their kernels overlap), so the seconds per epoch they report are under that sharing.
# Training steps are CUDA graphs (task.cuda_graphs). Writes OUTDIR/<variant>_<model>_<data>_<H>.json
# (each run's metrics) and OUTDIR/ett_informer.json (all runs, the device name, and per variant and
# model the mean best validation loss, by which a variant is chosen).
set -u
out=${1:?out dir}; epochs=${2:-500}; patience=${3:-20}; max_time=${4:-00:00:12:00}; jobs=${5:-8}
runs=${RUNS_ROOT:-runs/ett_informer_bench}
mkdir -p "$out" "$runs"
IFS=';' read -ra variants <<< "${VARIANTS:-base:}"
for variant in "${variants[@]}"; do
  tag=${variant%%:*}; overrides=${variant#*:}
  for model in ${MODELS:-spacetime_paper dlinear}; do
    for ds in ${DATASETS:-ETTh1 ETTh2}; do
      for h in ${HORIZONS:-96 192 336 720}; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 2; done
        name=${tag}_${model}_${ds}_$h
        # shellcheck disable=SC2086  # the overrides are separate words
        tsm train experiment=ett_informer trainer=gpu model=$model "sweep={data.name: [$ds], data.horizon: [$h]}" \
          trainer.max_epochs=$epochs callbacks.early_stopping.patience=$patience run_dir=$runs/$name \
          +trainer.max_time=$max_time +trainer.enable_progress_bar=false $overrides > "$runs/$name.log" 2>&1 &
      done
    done
  done
done
wait
python - "$runs" "$out" "${VARIANTS:-base:}" <<'PY'
import glob, json, os, statistics, sys
runs, out, variants = sys.argv[1:]
rows = []
for path in sorted(glob.glob(os.path.join(runs, "*", "*", "metrics.json"))):
    m = json.load(open(path))
    name = os.path.relpath(path, runs).split(os.sep)[0]
    tag, rest = name.split("_", 1)
    model, data, horizon = rest.rsplit("_", 2)
    json.dump(m, open(os.path.join(out, f"{name}.json"), "w"), indent=2)
    rows.append({"run": name, "variant": tag, "model": model, "data": data, "horizon": int(horizon),
                 **{k: m.get(k) for k in ("epochs", "seconds_per_epoch", "best_val_loss", "test/mse", "test/mae", "device")}})
groups = {}
for r in rows:
    groups.setdefault(f"{r['variant']}/{r['model']}", []).append(r["best_val_loss"])
summary = {k: {"runs": len(v), "mean_best_val_loss": statistics.mean(v)} for k, v in groups.items()}
overrides = {v.split(":", 1)[0]: v.split(":", 1)[1] for v in variants.split(";")}
json.dump({"variants": overrides, "summary": summary, "runs": rows}, open(os.path.join(out, "ett_informer.json"), "w"), indent=2)
for r in rows:
    print(f"{r['run']:40s} epochs {r['epochs']!s:>4} s/epoch {r['seconds_per_epoch'] or 0:6.2f} "
          f"val {r['best_val_loss'] or float('nan'):.4f} mse {r['test/mse'] or float('nan'):.4f} mae {r['test/mae'] or float('nan'):.4f}")
for k, v in summary.items():
    print(f"{k:40s} mean best val {v['mean_best_val_loss']:.4f} over {v['runs']} runs")
PY
tail -n 3 "$runs"/*.log > "$out/logs_tail.txt"
