"""Claim: T1 (transform once) trains >= 3x faster per epoch than FNO at equal width and modes on
2-D Navier-Stokes (nu = 1e-3, 64 x 64, FNO's 10 -> 10 autoregressive setup), with no worse
relative L2 (Poli et al. 2022 report > 20% lower error).

One GPU run does everything:
1. generate the data set with our solver on the GPU (``--n`` trajectories, FNO recipe), NetCDF;
2. micro-benchmark: one training step (10-step rollout, forward + backward + AdamW), eager and as
   CUDA graphs, and one inference call per model, CUDA events, median of 20 reps, at 64 x 64 and
   128 x 128 (random fields);
3. ``apps.pde_bench.pde_bench``: every model trained with the same task, data, epochs, seed, data
   on the GPU and CUDA-graphed training steps (``--no-cuda-graphs``: eager); table, JSON and PNG.

``--mode direct`` runs the paper's own task instead (initial vorticity -> the last recorded frame,
or ``--target-frame K``, one call, no rollout); its micro-benchmark times that one-call operator.
``--lr`` sets the learning rate of every model (default 1e-3).

Usage (device): python bench/pde.py --epochs 30 --out-dir $OUT
                python bench/pde.py --epochs 30 --mode direct --lr 3e-3 --out-dir $OUT
Writes bench/results/pde_ns.json (direct: pde_ns_direct.json; or under $BENCH_RESULTS_DIR) and
<out-dir>/pde_bench.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.pde_bench import MODES, build_model, count_params, parse_models, pde_bench  # noqa: E402
from bench._timing import device_name, parse_options, time_ms, write_json  # noqa: E402
from datamodules.navier_stokes import generate_navier_stokes, write_netcdf  # noqa: E402
from tsmodels.tasks.operator import OperatorTask  # noqa: E402


def training_step(name: str, x: torch.Tensor, y: torch.Tensor, width: int, modes: int, n_layers: int, graphs: bool,
                  t1_options: dict | None = None):
    """One model's training step on the batch (x, y) as a closure: the task's objective forward and
    backward (through CUDA graphs when ``graphs``), then AdamW. Returns (task, step)."""
    torch.manual_seed(0)
    model = build_model(name, x.shape[1], 1, x.shape[-1], width, modes, n_layers,
                        t1_options if name == "t1" else None).cuda()
    task = OperatorTask(model, cuda_graphs=graphs).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        task.objective(x, y).backward()
        opt.step()

    return task, step


def micro(models: list[str], res: int, batch: int, width: int, modes: int, n_layers: int, t_in: int, t_out: int,
          t1_options: dict | None = None) -> list[dict]:
    """Training-step times (ms; forward + backward + AdamW step), eager and through CUDA graphs, and
    inference times per model on random fields at ``res``."""
    rows = []
    x = torch.randn(batch, t_in, res, res, device="cuda")
    y = torch.randn(batch, t_out, res, res, device="cuda")
    for name in models:
        row = {"model": name, "resolution": res, "batch": batch}
        for graphs in (False, True):
            task, step = training_step(name, x, y, width, modes, n_layers, graphs, t1_options)
            model = task.model
            t = time_ms(step, warmup=3, reps=20, flush_l2=False)
            row["train_step_ms_graphed" if graphs else "train_step_ms"] = t["median_ms"]
            if graphs:
                row["graph_captured"] = task.graphed
        row["params"] = count_params(model)
        with torch.no_grad():
            infer = time_ms(lambda: model(x), warmup=3, reps=20, flush_l2=False)
        row.update(inference_ms=infer["median_ms"], inference_ms_per_sample=infer["median_ms"] / batch)
        rows.append(row)
        print(f"micro {name} {res}x{res} b{batch}: step {row['train_step_ms']:.2f} ms eager, "
              f"{row['train_step_ms_graphed']:.2f} ms graphed ({row['graph_captured']}), infer {infer['median_ms']:.2f} ms",
              flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1200)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--viscosity", type=float, default=1e-3)
    p.add_argument("--dt", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--modes", type=int, default=12)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--models", default=None)
    p.add_argument("--data", default="ns_bench.nc")
    p.add_argument("--out-dir", default="pde_bench_out")
    p.add_argument("--max-minutes-per-model", type=float, default=None)
    p.add_argument("--micro-res", default="64,128")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mode", choices=MODES, default="autoregressive")
    p.add_argument("--target-frame", type=int, default=None, help="--mode direct: 0-based frame index (default last)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="train eagerly (autograd launches every kernel)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the data are generated with seed 0)")
    p.add_argument("--t1-options", default="", help="further T1Operator2d arguments, e.g. product=32,product_blocks=4 or product=0 (the paper's blocks)")
    a = p.parse_args()
    t1_options = parse_options(a.t1_options)
    # fail before the data generation and micro-benchmark, not after them
    if a.target_frame is not None and a.mode != "direct":
        p.error("--target-frame only applies to --mode direct")
    if not a.lr > 0:
        p.error(f"--lr must be positive, got {a.lr}")
    models = parse_models(a.models)
    direct = a.mode == "direct"
    report: dict = {"claim": "T1 >= 3x faster per epoch than FNO at equal width/modes, rel. L2 no worse",
                    "t1_options": t1_options,
                    "device": device_name(), "torch": torch.__version__, "mode": a.mode, "lr": a.lr, "seed": a.seed}
    # a direct run must not overwrite the autoregressive results
    result_name = "pde_ns_direct" if direct else "pde_ns"

    t0 = time.perf_counter()
    data = Path(a.data)
    if not data.exists():
        ds = generate_navier_stokes(n=a.n, res=a.res, steps=a.steps, viscosity=a.viscosity, dt=a.dt, seed=0,
                                    batch_size=1200, device="cuda", progress=True)
        write_netcdf(ds, data)
    report["generation"] = {"n": a.n, "res": a.res, "steps": a.steps, "viscosity": a.viscosity, "dt": a.dt,
                            "solver": "float64, Crank-Nicolson viscous, explicit advection, 2/3 dealiasing",
                            "seconds_including_write": round(time.perf_counter() - t0, 2)}
    print(f"data ready in {report['generation']['seconds_including_write']} s", flush=True)

    report["micro"] = []
    for r in [int(v) for v in a.micro_res.split(",") if v]:
        # direct: one field in, one out, one call (t_in = t_out = 1)
        frames = (1, 1) if direct else (10, 10)
        report["micro"] += micro(models, r, a.batch_size, a.width, a.modes, a.layers, *frames, t1_options)
    write_json(result_name, report)  # partial results survive a run cut short

    res = pde_bench(dataset=data, models=models, epochs=a.epochs, out_dir=a.out_dir, width=a.width, modes=a.modes,
                    n_layers=a.layers, batch_size=a.batch_size, lr=a.lr, max_minutes_per_model=a.max_minutes_per_model,
                    progress=False, mode=a.mode, target_frame=a.target_frame, seed=a.seed,
                    cuda_graphs=not a.no_cuda_graphs, t1_options=t1_options)
    report["pde_bench"] = res
    path = write_json(result_name, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
