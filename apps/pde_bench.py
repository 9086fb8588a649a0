"""`tsm pde-bench`: train T1, FNO (and neuraloperator's FNO when installed) on the same Navier-Stokes
data with the same task and budget; print one table, write JSON and a PNG of true vs predicted vorticity.

Every model runs through :class:`tsmodels.tasks.operator.OperatorTask` (same loss, optimizer,
schedule, epochs, batches and seed). Columns: parameters (real numbers; a complex weight counts
two), median seconds per training epoch, inference milliseconds per sample (one model call,
test batch), test one-step relative L2 and autoregressive-rollout relative L2.

Two tasks (``mode``): ``"autoregressive"`` (default), FNO's 10 -> 10 time stepper trained on the
rollout; ``"direct"``, the T1 paper's setting (Poli et al. 2022, where it reports > 20% lower error
than FNO): initial vorticity -> the field at one recorded frame (default the last), one call, no
rollout (the table's rollout column shows "-").
"""

from __future__ import annotations

import json
import numbers
import time
from pathlib import Path
from typing import Any, Optional

import typer

from tsmodels.errors import UserInputError

KNOWN_MODELS = ("t1", "fno", "neuralop-fno")
MODES = ("autoregressive", "direct")
SMOKE = dict(n=24, res=16, steps=6, t_in=3, t_out=3, record_dt=0.25, dt=1e-2, width=8, modes=4, n_layers=2,
             epochs=1, batch_size=8)


def parse_mode(mode: str) -> str:
    """``"Direct"`` -> "direct"; anything but one of MODES raises UserInputError."""
    m = mode.strip().lower() if isinstance(mode, str) else mode
    if m not in MODES:
        raise UserInputError(f"unknown mode {mode!r}", f"use --mode {' or --mode '.join(MODES)}")
    return m


def neuralop_available() -> bool:
    """True when neuraloperator (``neuralop``, extra ``peers``) imports."""
    try:
        import neuralop  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken optional install counts as absent
        return False
    return True


def parse_models(models: str | list[str] | None) -> list[str]:
    """``"t1,fno"`` -> ["t1", "fno"]; None -> t1, fno and neuralop-fno when importable."""
    if models is None or models == "" or models == []:
        return ["t1", "fno"] + (["neuralop-fno"] if neuralop_available() else [])
    names = [m.strip().lower() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    bad = [m for m in names if m not in KNOWN_MODELS]
    if bad or not names:
        raise UserInputError(f"unknown model(s) {', '.join(bad) or '(none)'}", f"use --models with some of {','.join(KNOWN_MODELS)}")
    if "neuralop-fno" in names and not neuralop_available():
        raise UserInputError("neuralop-fno asked for but neuraloperator is not installed",
                             "pip install 'tsmodels[peers]' (or neuraloperator), or drop it from --models")
    return list(dict.fromkeys(names))


class NeuralopFNO:
    """Factory for neuraloperator's FNO with our constructor keys; returns an nn.Module with
    ``in_channels``/``out_channels`` attributes (the task reads them to roll out)."""

    def __new__(cls, in_channels: int, out_channels: int, width: int, modes: int, n_layers: int):
        from neuralop.models import FNO

        # neuralop counts modes over the full axis (+/- frequencies) and halves the last one for the
        # rfft: n_modes = 2 m keeps the same 2m x (m + 1) block as our m
        model = FNO(n_modes=(2 * modes, 2 * modes), in_channels=in_channels, out_channels=out_channels,
                    hidden_channels=width, n_layers=n_layers)
        model.in_channels, model.out_channels = in_channels, out_channels
        return model


def build_model(name: str, in_channels: int, out_channels: int, resolution: int, width: int, modes: int, n_layers: int,
                t1_options: dict[str, Any] | None = None):
    """One of KNOWN_MODELS at the given width and modes; ``t1_options``: further T1Operator2d arguments (t1 only;
    width, modes and n_layers there override the shared ones)."""
    from tsmodels.layers.fno import check_modes

    options = dict(t1_options or {})
    if options and name != "t1":
        raise UserInputError(f"model options {sorted(options)} given for {name}", "options apply to t1 only")
    if name == "t1":
        import inspect

        from tsmodels.models.t1_operator import T1Operator2d

        unknown = set(options) - set(inspect.signature(T1Operator2d).parameters)
        if unknown:
            raise UserInputError(f"unknown T1 option(s) {sorted(unknown)}", "see T1Operator2d's arguments")
        # options may override the shared size too (the paper compares a wider, deeper T1 against FNO); the
        # model checks its modes against the grid for its own transform
        return T1Operator2d(in_channels, out_channels, resolution, **{"width": width, "modes": modes,
                                                                      "n_layers": n_layers, **options})
    check_modes(modes, modes, (resolution, resolution))
    if name == "fno":
        from tsmodels.models.fno import FNO2d

        return FNO2d(in_channels, out_channels, width=width, modes=modes, n_layers=n_layers)
    return NeuralopFNO(in_channels, out_channels, width, modes, n_layers)


def count_params(model) -> int:
    """Real parameters (a complex entry counts two)."""
    return int(sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters()))


def _inference_ms(model, x, reps: int = 10) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1000.0 * times[len(times) // 2] / x.shape[0]


def _plot(path: Path, truth, inputs_last, preds: dict[str, Any], title: str,
          input_label: str = "input (last frame)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsmodels.io import atomic_path

    panels = [(input_label, inputs_last), ("truth", truth)] + [(k, v) for k, v in preds.items()]
    panels += [(f"|{k} - truth|", abs(v - truth)) for k, v in preds.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2), squeeze=False)
    vmin, vmax = float(truth.min()), float(truth.max())
    for ax, (name, field) in zip(axes[0], panels):
        err = name.startswith("|")
        im = ax.imshow(field.T, origin="lower", cmap="magma" if err else "RdBu_r",
                       vmin=None if err else vmin, vmax=None if err else vmax)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def pde_bench(dataset: str | Path | None = None, generate: bool = False, models: str | list[str] | None = None,
              epochs: int = 20, resolution: int | None = None, smoke: bool = False, out_dir: str | Path = "pde_bench",
              width: int = 32, modes: int = 12, n_layers: int = 4, batch_size: int = 20, lr: float = 1e-3,
              n: int = 1200, steps: int = 20, viscosity: float = 1e-3, t_in: int = 10, t_out: int = 10,
              seed: int = 0, loss_domain: str = "space", max_minutes_per_model: float | None = None,
              progress: bool = True, mode: str = "autoregressive", target_frame: int | None = None,
              cuda_graphs: bool | None = None, t1_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and compare neural operators on one Navier-Stokes data set; returns the results dict.

    Args:
        dataset: NetCDF written by `tsm data navier-stokes` (dims sample, time, x, y).
        generate: generate ``n`` trajectories (``steps`` frames, ``viscosity``) at ``resolution``
            (default 64) into ``out_dir``/navier_stokes.nc instead.
        models: comma list of t1, fno, neuralop-fno (default: t1, fno, + neuralop-fno if installed).
        epochs: training epochs for every model. resolution: grid (a divisor of the file's).
        smoke: a tiny generated set and tiny models, 1 epoch: under a minute on CPU.
        out_dir: where results.json, the PNG (and generated data) go.
        width, modes, n_layers: shared model size. batch_size, lr: shared optimization.
        t_in, t_out: FNO's autoregressive setup (10 -> 10); unused in direct mode.
        max_minutes_per_model: optional wall-clock cap per model (Lightning max_time).
        mode: "autoregressive" (x (B, t_in, R, R) -> y (B, t_out, R, R) by rollout) or "direct"
            (initial vorticity x (B, 1, R, R) -> y (B, 1, R, R) at ``target_frame``, one call).
        target_frame: direct mode only: 0-based index of the recorded frame to predict (negative
            counts from the end); None: the last frame (the paper's pairing).
        cuda_graphs: train every model through captured CUDA graphs (``OperatorTask(cuda_graphs=True)``,
            the data kept on the GPU); None (default): on when a GPU is used. Off, both models pay
            autograd's per-kernel CPU cost, which at these sizes exceeds their GPU time.
        t1_options: further T1Operator2d arguments (e.g. {"learned_skip": True}), recorded in the JSON.
    Output: ``out_dir``/pde_bench.json and ``out_dir``/pde_bench.png; a rich table on stdout.
    """
    import lightning.pytorch as pl
    import torch

    from datamodules.navier_stokes import NavierStokesDataModule, generate_navier_stokes, write_netcdf
    from tsmodels.io import write_atomic_text
    from tsmodels.tasks.callbacks import EpochTimer
    from tsmodels.tasks.operator import OperatorTask

    mode = parse_mode(mode)
    if target_frame is not None and mode != "direct":
        raise UserInputError("--target-frame only applies to the direct task", "add --mode direct or drop --target-frame")
    if isinstance(target_frame, bool) or not (target_frame is None or isinstance(target_frame, numbers.Integral)):
        raise UserInputError(f"target frame must be an integer frame index, got {target_frame!r}",
                             "pass --target-frame K (0-based; -1 is the last frame)")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or lr == float("inf"):
        raise UserInputError(f"learning rate must be a positive number, got {lr!r}", "pass e.g. --lr 1e-3")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = parse_models(models if not (smoke and models is None) else "t1,fno")
    gen_kwargs: dict[str, Any] = {}
    if smoke:
        s = SMOKE
        epochs, width, modes, n_layers, batch_size = s["epochs"], s["width"], s["modes"], s["n_layers"], s["batch_size"]
        t_in, t_out = s["t_in"], s["t_out"]
        if dataset is None:
            gen_kwargs = dict(n=s["n"], res=resolution or s["res"], steps=s["steps"], viscosity=viscosity,
                              record_dt=s["record_dt"], dt=s["dt"], seed=seed, device="cpu")
    elif dataset is None:
        if not generate:
            raise UserInputError("no data: neither --dataset nor --generate given",
                                 "pass --dataset FILE.nc (from `tsm data navier-stokes`), --generate, or --smoke")
        gen_kwargs = dict(n=n, res=resolution or 64, steps=steps, viscosity=viscosity, seed=seed)
    elif generate:
        raise UserInputError("both --dataset and --generate given", "pass one of them")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UserInputError(f"epochs must be a positive integer, got {epochs!r}", "pass --epochs N with N >= 1")

    if gen_kwargs:
        dataset = out_dir / ("ns_smoke.nc" if smoke else "navier_stokes.nc")
        if progress:
            print(f"generating {gen_kwargs['n']} trajectories at {gen_kwargs['res']}x{gen_kwargs['res']} -> {dataset}")
        t0 = time.perf_counter()
        write_netcdf(generate_navier_stokes(**gen_kwargs), dataset)
        gen_seconds = time.perf_counter() - t0
        resolution = None
    else:
        gen_seconds = None
    on_gpu = torch.cuda.is_available()
    graphs = on_gpu if cuda_graphs is None else bool(cuda_graphs) and on_gpu
    dm = NavierStokesDataModule(path=dataset, mode=mode, t_in=t_in, t_out=t_out, t_final=target_frame,
                                resolution=resolution, batch_size=batch_size, device="cuda" if on_gpu else None)
    res = dm.resolution
    from tsmodels.layers.fno import check_modes

    check_modes(modes, modes, (res, res))
    device_name = torch.cuda.get_device_name() if on_gpu else "cpu"
    x_test, y_test = dm.test_dataset.tensors

    results, preds = [], {}
    report: dict[str, Any] = {
        "benchmark": "navier_stokes_2d", "device": device_name, "torch": torch.__version__,
        "dataset": {"file": Path(dataset).name, **{k: (v.item() if hasattr(v, "item") else v) for k, v in dm.attrs.items()},
                    "generation_seconds": gen_seconds},
        "setup": {"mode": mode, "t_in": dm.t_in, "t_out": dm.t_out, "resolution": res,
                  "n_train": dm.n_train, "n_val": dm.n_val, "n_test": dm.n_test, "epochs": epochs,
                  "batch_size": batch_size, "lr": lr, "optimizer": "AdamW(wd=1e-4), cosine", "width": width,
                  "modes": modes, "n_layers": n_layers,
                  "loss": (f"relative L2 over the {dm.t_out}-step rollout" if mode == "autoregressive"
                           else "relative L2 of the one-call prediction"),
                  "seed": seed, "smoke": smoke, "cuda_graphs": graphs, "t1_options": t1_options or {},
                  "data_on_device": on_gpu},
        "results": results,
    }
    if mode == "direct":
        # the paper's pairing: initial vorticity (t = 0) -> this recorded frame
        report["setup"].update(task="initial vorticity -> one frame, one call", target_frame=dm.target_frame,
                               target_time=dm.target_time)
    json_path, png_path = out_dir / "pde_bench.json", out_dir / "pde_bench.png"
    for name in names:
        pl.seed_everything(seed, workers=True, verbose=False)
        model = build_model(name, dm.in_channels, dm.out_channels, res, width, modes, n_layers,
                            t1_options if name == "t1" else None)
        task = OperatorTask(model, lr=lr, loss_domain=loss_domain if name == "t1" else "space", cuda_graphs=graphs)
        timer = EpochTimer()
        trainer = pl.Trainer(max_epochs=epochs, accelerator="gpu" if on_gpu else "cpu", devices=1, logger=False,
                             enable_checkpointing=False, callbacks=[timer], num_sanity_val_steps=0,
                             enable_progress_bar=progress and not smoke, enable_model_summary=False,
                             max_time={"minutes": max_minutes_per_model} if max_minutes_per_model else None,
                             deterministic=False)
        t0 = time.perf_counter()
        trainer.fit(task, datamodule=dm)
        fit_s = time.perf_counter() - t0
        # the training objective over the last epoch, beside test/loss (the same objective): over- or under-fitting
        train_loss = trainer.callback_metrics.get("train/loss_epoch")
        metrics = trainer.test(task, datamodule=dm, verbose=False)[0]
        # Lightning's teardown leaves the module on the CPU: time and predict on the training device
        dev = torch.device("cuda" if on_gpu else "cpu")
        task.to(dev)
        xb = x_test[:batch_size].to(dev)
        inf_ms = _inference_ms(task.model, xb)
        with torch.no_grad():
            task.eval()
            preds[name] = task.rollout(x_test[:1].to(dev), y_test.shape[1])[0, -1].float().cpu().numpy()
        row = {
            "model": name, "params": count_params(model), "epochs": trainer.current_epoch, "cuda_graph": task.graphed,
            "seconds_per_epoch": timer.median, "epoch_times": [round(t, 4) for t in timer.times],
            "fit_seconds": round(fit_s, 3), "inference_ms_per_sample": inf_ms,
            "test_rel_l2": float(metrics["test/rel_l2"]),
            "test_rollout_rel_l2": float(metrics["test/rollout_rel_l2"]) if "test/rollout_rel_l2" in metrics else None,
            "test_loss": float(metrics["test/loss"]),
            "train_loss_last_epoch": float(train_loss) if train_loss is not None else None,
        }
        results.append(row)
        # written after every model: a run cut off by a time limit keeps what finished
        write_atomic_text(json_path, json.dumps(report, indent=2))
        rollout = row["test_rollout_rel_l2"]
        print(f"{name}: {row['seconds_per_epoch'] or float('nan'):.3g} s/epoch, test rel L2 {row['test_rel_l2']:.4g}"
              + (f", rollout {rollout:.4g}" if rollout is not None else ""), flush=True)

    by = {r["model"]: r for r in results}
    if "t1" in by and "fno" in by and by["t1"]["seconds_per_epoch"] and by["fno"]["seconds_per_epoch"]:
        report["t1_speedup_per_epoch_vs_fno"] = by["fno"]["seconds_per_epoch"] / by["t1"]["seconds_per_epoch"]
        report["t1_rel_l2_change_vs_fno"] = by["t1"]["test_rel_l2"] / by["fno"]["test_rel_l2"] - 1.0
        if by["t1"]["test_rollout_rel_l2"] and by["fno"]["test_rollout_rel_l2"]:
            report["t1_rollout_rel_l2_change_vs_fno"] = by["t1"]["test_rollout_rel_l2"] / by["fno"]["test_rollout_rel_l2"] - 1.0
    write_atomic_text(json_path, json.dumps(report, indent=2))
    if mode == "autoregressive":
        t_last = float(dm.attrs.get("record_dt", 1.0)) * (dm.t_in + dm.t_out)
        title = f"test sample 0, t = {t_last:g} ({dm.t_out}-step rollout), {res}x{res}, nu = {dm.attrs.get('viscosity')}"
        input_label = "input (last frame)"
    else:
        t_txt = f"t = {dm.target_time:g}" if dm.target_time is not None else f"frame {dm.target_frame}"
        title = (f"test sample 0, direct task: initial vorticity -> {t_txt} (one call), {res}x{res}, "
                 f"nu = {dm.attrs.get('viscosity')}")
        input_label = "input (initial vorticity)"
    _plot(png_path, y_test[0, -1].cpu().numpy(), x_test[0, -1].cpu().numpy(), preds, title, input_label)
    report["files"] = {"json": json_path.name, "png": png_path.name}  # inside out_dir; no machine paths in results
    print_table(report)
    return report


def print_table(report: dict[str, Any]) -> None:
    """One rich table of a pde_bench report."""
    from rich.console import Console
    from rich.table import Table

    s = report["setup"]
    direct = s.get("mode", "autoregressive") == "direct"
    if direct:
        t = s.get("target_time")
        task = f"direct w0 -> {f't = {t:g}' if t is not None else 'frame ' + str(s.get('target_frame'))}"
    else:
        task = f"{s['t_in']}->{s['t_out']}"
    table = Table(title=f"Navier-Stokes {s['resolution']}x{s['resolution']}, {task}, "
                        f"{s['n_train']} train / {s['n_test']} test, {s['epochs']} epochs, lr {s.get('lr', 1e-3):g}, "
                        f"{report['device']}{', CUDA graphs' if s.get('cuda_graphs') else ''}")
    l2_col = "test rel. L2 (1 call)" if direct else "test rel. L2 (1 step)"
    for col in ("model", "params", "s / epoch", "inference ms / sample", l2_col, "rollout rel. L2"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in report["results"]:
        table.add_row(r["model"], f"{r['params']:,}", f"{r['seconds_per_epoch']:.3g}" if r["seconds_per_epoch"] else "-",
                      f"{r['inference_ms_per_sample']:.3g}", f"{r['test_rel_l2']:.4f}",
                      f"{r['test_rollout_rel_l2']:.4f}" if r["test_rollout_rel_l2"] is not None else "-")
    Console().print(table)
    if "t1_speedup_per_epoch_vs_fno" in report:
        Console().print(f"T1 vs FNO: {report['t1_speedup_per_epoch_vs_fno']:.2f}x faster per epoch, "
                        f"{'test' if direct else 'one-step'} rel. L2 {100 * report['t1_rel_l2_change_vs_fno']:+.1f}%")


def pde_bench_command(
    dataset: Optional[Path] = typer.Option(None, help="NetCDF from `tsm data navier-stokes` (dims sample, time, x, y)."),
    generate: bool = typer.Option(False, help="Generate the data set (FNO recipe) instead of reading one."),
    models: Optional[str] = typer.Option(None, help="Comma list of t1, fno, neuralop-fno. Default: t1,fno (+ neuralop-fno if installed)."),
    epochs: int = typer.Option(20, help="Training epochs, the same for every model."),
    resolution: Optional[int] = typer.Option(None, help="Grid size: a divisor of the file's grid (default: the file's; 64 when generating)."),
    smoke: bool = typer.Option(False, help="Tiny data and models, one epoch: a check that runs in under a minute on CPU."),
    out_dir: Path = typer.Option(Path("pde_bench"), "--out-dir", help="Where pde_bench.json and pde_bench.png go."),
    width: int = typer.Option(32, help="Hidden channels of every model."),
    modes: int = typer.Option(12, help="Retained Fourier modes per axis of every model."),
    n_layers: int = typer.Option(4, "--layers", help="Operator layers / blocks."),
    batch_size: int = typer.Option(20, "--batch-size", help="Batch size."),
    lr: float = typer.Option(1e-3, help="Learning rate (AdamW, cosine schedule), the same for every model."),
    mode: str = typer.Option("autoregressive", help="Task: autoregressive (FNO's 10 -> 10 rollout) or direct "
                                                    "(initial vorticity -> one frame, one call: the T1 paper's task)."),
    target_frame: Optional[int] = typer.Option(None, "--target-frame", help="With --mode direct: 0-based index of the "
                                               "recorded frame to predict (-1 = last). Default: the last frame."),
    n: int = typer.Option(1200, help="With --generate: trajectories (1000 train / 100 val / 100 test for 1200)."),
    viscosity: float = typer.Option(1e-3, help="With --generate: viscosity."),
    seed: int = typer.Option(0, help="Seed for data generation and training."),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs",
                                               help="Train through captured CUDA graphs (default: on with a GPU)."),
) -> None:
    """Train T1 and FNO on the same Navier-Stokes data and budget; print a table, write JSON and a PNG."""
    pde_bench(dataset=dataset, generate=generate, models=models, epochs=epochs, resolution=resolution, smoke=smoke,
              out_dir=out_dir, width=width, modes=modes, n_layers=n_layers, batch_size=batch_size, lr=lr, n=n,
              viscosity=viscosity, seed=seed, mode=mode, target_frame=target_frame, cuda_graphs=cuda_graphs)
