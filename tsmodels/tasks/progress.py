"""Logging the training loss without stalling the GPU.

Lightning turns every progress-bar value logged in a training step into a Python number after each
batch (``convert_tensors_to_scalars`` in its logger connector): a host synchronization that makes the
host wait for all queued GPU work every step, so the loop's own Python work (optimizer, hooks, the
next batch) adds to every step instead of overlapping it — a large share of the step for
launch-bound models with CUDA-graphed steps (T1, FNO, SpaceTime at batch 20-50). Loggers are
unaffected: they convert only every ``log_every_n_steps``.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch


def log_training_loss(module: pl.LightningModule, loss: torch.Tensor, batch_size: int) -> None:
    """Log ``train/loss`` (a 0-dim tensor) per step and per epoch (``train/loss_step``,
    ``train/loss_epoch``); on the CPU also to the progress bar, on an accelerator not (see the module
    docstring; the progress bar still shows the validation loss)."""
    module.log("train/loss", loss, prog_bar=loss.device.type == "cpu", on_step=True, on_epoch=True,
               batch_size=batch_size)
