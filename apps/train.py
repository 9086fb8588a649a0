"""`tsm train experiment=NAME [overrides]`: compose the Hydra config, train, test, write results.

A run writes into ``runs/<name>/<time>/``: ``config.yaml`` (resolved), ``checkpoints/``
(best and last), ``metrics.json`` (test metrics, best validation loss, seconds per epoch,
parameter count) and the CSV logs. ``ckpt_path=...`` resumes. A config with a ``sweep`` mapping
runs one sub-run per combination and writes ``summary.json`` plus a printed table.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from tsmodels.errors import UserInputError
from tsmodels.io import write_atomic_text
from tsmodels.tasks.callbacks import EpochTimer


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose configs/config.yaml with Hydra ``overrides`` (e.g. ``["experiment=etth1_spacetime"]``)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="tsmodels.configs", version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except HydraException as e:
        raise UserInputError(f"bad config or override: {str(e).splitlines()[0]}",
                             "list experiments with `tsm train --list`; overrides look like key=value") from e
    name = cfg.hydra.runtime.choices.get("experiment")
    with open_dict(cfg):
        cfg.name = name if name not in (None, "null") else "default"
        del cfg["hydra"]
    return cfg


def build(cfg: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, but a UserInputError raised inside a constructor comes out as
    itself (Hydra wraps it), so the CLI can print it as one line."""
    try:
        # plain Python containers, so checkpoints hold no OmegaConf objects (weights_only loading)
        return instantiate(cfg, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserInputError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def _fill_from_data(model_cfg: DictConfig, dm: pl.LightningDataModule) -> None:
    """Model keys left as ``???`` take the datamodule's attribute of the same name (channel counts,
    vocabulary sizes, sample rates ...), so one model config serves every data set."""
    for key in list(model_cfg.keys()):
        if OmegaConf.is_missing(model_cfg, key):
            if not hasattr(dm, key):
                raise UserInputError(f"model.{key} is required and {type(dm).__name__} does not provide it",
                                     f"set it on the command line: model.{key}=...")
            model_cfg[key] = getattr(dm, key)


def run_one(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (and test) one configuration into ``run_dir``; return its metrics dict."""
    pl.seed_everything(cfg.seed, workers=True)
    dm = build(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    _fill_from_data(cfg.model, dm)
    task = build(cfg.task)
    callbacks = [build(c) for c in (cfg.callbacks or {}).values() if c is not None]
    for cb in callbacks:
        if isinstance(cb, pl.callbacks.ModelCheckpoint):
            cb.dirpath = str(run_dir / "checkpoints")
    timer = next((c for c in callbacks if isinstance(c, EpochTimer)), None)
    logger = pl.loggers.CSVLogger(str(run_dir), name="logs", version="")
    trainer = build(cfg.trainer, callbacks=callbacks, logger=logger, default_root_dir=str(run_dir))
    write_atomic_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    t0 = time.perf_counter()
    trainer.fit(task, datamodule=dm, ckpt_path=cfg.ckpt_path)
    fit_s = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "name": cfg.name,
        "params": sum(p.numel() for p in task.parameters()),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_s, 3),
        "seconds_per_epoch": timer.median if timer else None,
        "device": torch.cuda.get_device_name() if trainer.strategy.root_device.type == "cuda" else "cpu",
    }
    ckpt_cb = trainer.checkpoint_callback
    if ckpt_cb is not None and ckpt_cb.best_model_score is not None:
        metrics["best_val_loss"] = float(ckpt_cb.best_model_score)
        metrics["best_checkpoint"] = os.path.relpath(ckpt_cb.best_model_path, run_dir)
    if cfg.test:
        best = "best" if ckpt_cb is not None and ckpt_cb.best_model_path else None
        results = trainer.test(task, datamodule=dm, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    write_atomic_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _sweep_overrides(sweep: DictConfig | None) -> list[dict[str, Any]]:
    if not sweep:
        return [{}]
    keys = list(sweep.keys())
    values = [list(v) if OmegaConf.is_list(v) else [v] for v in sweep.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def train(overrides: list[str]) -> list[dict[str, Any]]:
    """Run ``tsm train`` with Hydra ``overrides``; returns one metrics dict per (sweep) run."""
    cfg = compose_config(overrides)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    root = Path(cfg.run_dir) if cfg.run_dir else Path(cfg.runs_root) / cfg.name / stamp
    combos = _sweep_overrides(cfg.get("sweep"))
    results = []
    for combo in combos:
        sub_cfg = cfg.copy()
        for key, value in combo.items():
            OmegaConf.update(sub_cfg, key, value, merge=False)
        tag = "_".join(f"{k.split('.')[-1]}={v}" for k, v in combo.items())
        run_dir = root / tag if tag else root
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            m = run_one(sub_cfg, run_dir)
        except UserInputError as e:
            if len(combos) == 1:
                raise
            # in a sweep, a data set the user does not have is skipped, not fatal
            print(f"skipped {tag}: {e}")
            continue
        m.update({"run": tag or ".", **{k: v for k, v in combo.items()}})
        results.append(m)
    if len(combos) > 1:
        write_atomic_text(root / "summary.json", json.dumps(results, indent=2))
        print_summary(results)
    print(f"results in {root}")
    return results


def print_summary(results: list[dict[str, Any]]) -> None:
    """Print a table of test metrics for a sweep."""
    from rich.console import Console
    from rich.table import Table

    keys = [k for k in ("test/mse", "test/mae", "test/loss", "seconds_per_epoch", "params") if any(k in r for r in results)]
    table = Table(title="sweep results")
    table.add_column("run")
    for k in keys:
        table.add_column(k, justify="right")
    for r in results:
        table.add_row(r["run"], *[f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys])
    Console().print(table)


def list_experiments() -> list[str]:
    """Names of the experiments shipped in configs/experiment/."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in (files("tsmodels") / "configs" / "experiment").iterdir() if p.name.endswith(".yaml"))
