"""Lightning callbacks shared by all tasks."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch


class EpochTimer(pl.Callback):
    """Records the wall time of every training epoch (seconds) in ``self.times``.

    The training loop is synchronized on CUDA before reading the clock, so the time covers the
    device work of the epoch. Validation is excluded: it runs after ``on_train_epoch_end``.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    @staticmethod
    def _sync(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._start)

    @property
    def median(self) -> float | None:
        """Median epoch time in seconds (the first epoch, which includes compilation, excluded when
        there are more than two)."""
        ts = self.times[1:] if len(self.times) > 2 else self.times
        return float(sorted(ts)[len(ts) // 2]) if ts else None
