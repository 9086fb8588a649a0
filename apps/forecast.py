"""`tsm forecast`: fit SpaceTime on one series and forecast beyond its end, with intervals.

Flow: load and validate the CSV (datamodules.csv) → chronological train / validation / holdout
split, scaling fitted on train → train SpaceTime with early stopping on validation → report the
holdout MSE beside the naive last-value forecast → split-conformal intervals from validation
residuals → forecast the next ``horizon`` steps from the last window → write the CSV and the plot
atomically.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datamodules.csv import CSVDataModule, check_length, future_index, load_series
from tsmodels.errors import UserInputError
from tsmodels.io import atomic_path
from tsmodels.tasks import fitting
from tsmodels.tasks.forecasting import ForecastingTask

BUNDLED_SAMPLE = "etth1_sample.csv"
VAL_FRACTION = 0.15
HOLDOUT_FRACTION = 0.15


@dataclass
class ForecastOptions:
    """Options of `tsm forecast` (see `tsm forecast --help`)."""

    csv: Path | None = None
    target: str | None = None
    horizon: int = 96
    lookback: int | None = None
    time_col: str | None = None
    out: Path = Path("forecast.csv")
    plot: Path | None = Path("forecast.png")
    level: float = 0.9
    max_epochs: int = 10
    seed: int = 0
    progress: bool = True


def bundled_sample() -> Path:
    """Path of the ETTh1 excerpt shipped with the package (the default series)."""
    return Path(str(files("tsmodels") / "assets" / BUNDLED_SAMPLE))


def _check_options(opt: ForecastOptions) -> None:
    if opt.horizon <= 0:
        raise UserInputError(f"horizon must be positive, got {opt.horizon}", "pass --horizon 1 or more")
    if opt.lookback is not None and opt.lookback <= 0:
        raise UserInputError(f"lookback must be positive, got {opt.lookback}", "pass --lookback 1 or more, or leave it out")
    if not 0.0 < opt.level < 1.0:
        raise UserInputError(f"--level must be in (0, 1), got {opt.level}", "e.g. --level 0.9 for a 90% interval")
    if opt.max_epochs < 1:
        raise UserInputError(f"--max-epochs must be >= 1, got {opt.max_epochs}", "pass --max-epochs 1 or more")
    for flag, path in (("--out", opt.out), ("--plot", opt.plot)):
        if path is None:
            continue
        parent = Path(path).parent
        if not parent.is_dir():
            raise UserInputError(f"{flag} {path}: directory {parent} does not exist", f"create it first (mkdir -p {parent}) or pick another path")
        if Path(path).is_dir():
            raise UserInputError(f"{flag} {path} is a directory", f"give a file name, e.g. {flag[2:]}/forecast.{'csv' if flag == '--out' else 'png'}")


def default_lookback(n_rows: int, horizon: int) -> int:
    """:func:`tsmodels.tasks.fitting.default_lookback` for the training part of ``n_rows`` rows
    (70%: validation and hold-out take 15% each)."""
    return fitting.default_lookback(int(n_rows * (1 - VAL_FRACTION - HOLDOUT_FRACTION)), horizon)


def conformal_halfwidth(residuals: np.ndarray, level: float) -> np.ndarray:
    """Split-conformal half-widths: residuals (n, horizon, C) of absolute errors on calibration
    windows → (horizon, C), the ceil((n+1)·level)/n empirical quantile per step and channel."""
    n = residuals.shape[0]
    q = min(1.0, math.ceil((n + 1) * level) / n)
    return np.quantile(residuals, q, axis=0, method="higher")


@torch.no_grad()
def _predict(task: ForecastingTask, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions, targets, last input values), scaled, each (n, horizon | 1, C_out)."""
    preds, ys, lasts = [], [], []
    for x, y in loader:
        preds.append(task(x.to(task.device)).cpu())
        ys.append(y)
        lasts.append(x[:, -1:, -y.shape[-1]:])
    return torch.cat(preds).numpy(), torch.cat(ys).numpy(), torch.cat(lasts).numpy()


def run_forecast(opt: ForecastOptions) -> dict:
    """Run `tsm forecast`; returns a summary dict (paths, holdout metrics, seconds)."""
    t0 = time.perf_counter()
    _check_options(opt)
    csv = Path(opt.csv) if opt.csv is not None else bundled_sample()
    series = load_series(csv, target=opt.target, time_col=opt.time_col)
    lookback = opt.lookback or default_lookback(len(series.values), opt.horizon)
    check_length(series, lookback, opt.horizon)

    # The default model is small: one intra-op thread is as fast, deterministic, and immune to
    # the oversubscription that makes small CPU FFTs orders of magnitude slower on a busy machine.
    torch.set_num_threads(1)
    dm = CSVDataModule(series=series, lookback=lookback, horizon=opt.horizon, val_fraction=VAL_FRACTION,
                       test_fraction=HOLDOUT_FRACTION, batch_size=32)
    task, trainer = fitting.fit_spacetime(dm, max_epochs=opt.max_epochs, seed=opt.seed,
                                          progress=opt.progress)

    dm.setup("test")
    summary: dict = {"csv": str(csv), "targets": list(series.columns), "lookback": lookback, "horizon": opt.horizon,
                     "epochs": trainer.current_epoch}
    if dm.test_dataloader() is not None and len(dm.test_dataloader().dataset) > 0:
        pred, y, last = _predict(task, dm.test_dataloader())
        summary["holdout_mse"] = float(np.mean((pred - y) ** 2))
        summary["holdout_mae"] = float(np.mean(np.abs(pred - y)))
        summary["naive_mse"] = float(np.mean((last - y) ** 2))
        summary["naive_mae"] = float(np.mean(np.abs(last - y)))

    pred_val, y_val, _ = _predict(task, dm.val_dataloader())
    resid = np.abs(dm.inverse_transform(pred_val) - dm.inverse_transform(y_val))
    half = conformal_halfwidth(resid, opt.level)

    with torch.no_grad():
        point = task(dm.last_window().to(task.device)).cpu().numpy()[0]
    point = dm.inverse_transform(point)
    index = future_index(series, opt.horizon)
    frame = pd.DataFrame({series.time_col: index})
    lo_name, hi_name = f"lower_{round(opt.level * 100):g}", f"upper_{round(opt.level * 100):g}"
    for c, col in enumerate(series.columns):
        frame[col] = point[:, c]
        frame[f"{col}_{lo_name}"] = point[:, c] - half[:, c]
        frame[f"{col}_{hi_name}"] = point[:, c] + half[:, c]

    with atomic_path(opt.out) as tmp:
        frame.to_csv(tmp, index=False)
    summary["out"] = str(opt.out)
    if opt.plot is not None:
        plot_forecast(series, frame, opt.plot, opt.level, lo_name, hi_name)
        summary["plot"] = str(opt.plot)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _print_summary(summary)
    return summary


def plot_forecast(series, frame: pd.DataFrame, path: Path, level: float, lo_name: str, hi_name: str) -> None:
    """PNG of the recent history, the point forecast and the interval, one panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_hist = min(len(series.values), 4 * len(frame))
    cols = list(series.columns)
    fig, axes = plt.subplots(len(cols), 1, figsize=(10, 3 * len(cols)), squeeze=False)
    t_future = frame[series.time_col]
    for ax, (c, col) in zip(axes[:, 0], enumerate(cols)):
        ax.plot(series.timestamps[-n_hist:], series.values[-n_hist:, c], color="0.3", lw=1, label="history")
        ax.plot(t_future, frame[col], color="C0", lw=1.5, label="forecast")
        ax.fill_between(t_future, frame[f"{col}_{lo_name}"], frame[f"{col}_{hi_name}"], color="C0", alpha=0.25,
                        label=f"{level:.0%} interval")
        ax.set_ylabel(col)
        ax.legend(loc="upper left")
    axes[0, 0].set_title("SpaceTime forecast")
    fig.autofmt_xdate()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _print_summary(s: dict) -> None:
    from rich.console import Console

    con = Console()
    if "holdout_mse" in s:
        better = "better" if s["holdout_mse"] < s["naive_mse"] else "NOT better"
        con.print(f"holdout (scaled): MSE {s['holdout_mse']:.4f}, MAE {s['holdout_mae']:.4f}; "
                  f"naive last value MSE {s['naive_mse']:.4f}, MAE {s['naive_mae']:.4f} ({better} than naive)")
    con.print(f"forecast of {s['horizon']} steps for {', '.join(s['targets'])} → {s['out']}"
              + (f", plot → {s['plot']}" if "plot" in s else "") + f"  ({s['seconds']:.1f} s)")
