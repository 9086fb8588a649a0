"""Lightning callbacks shared by all tasks."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch


class EpochTimer(pl.Callback):
    """Records the wall time of every training epoch (seconds) in ``self.times``, validation excluded.

    The device is synchronized before each clock reading, so the time covers the epoch's device work.
    Lightning runs the end-of-epoch validation inside the training epoch (before ``on_train_epoch_end``),
    so the clock is paused from ``on_validation_start`` to ``on_validation_end``.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start: float | None = None  # None: the clock is not running
        self._elapsed = 0.0
        self._resume_after_val = False

    @staticmethod
    def _sync(pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def _pause(self, pl_module: pl.LightningModule) -> None:
        if self._start is not None:
            self._sync(pl_module)
            self._elapsed += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync(pl_module)
        self._elapsed, self._start = 0.0, time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # only a validation inside a running epoch resumes the clock (not the sanity check, not validate())
        self._resume_after_val = self._start is not None
        self._pause(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resume_after_val:
            self._resume_after_val = False
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause(pl_module)
        self.times.append(self._elapsed)

    @property
    def median(self) -> float | None:
        """Median epoch time in seconds (the first epoch, which includes compilation, excluded when
        there are more than two)."""
        ts = self.times[1:] if len(self.times) > 2 else self.times
        return float(sorted(ts)[len(ts) // 2]) if ts else None
