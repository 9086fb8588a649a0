"""EpochTimer measures training epochs only: Lightning runs validation inside the epoch."""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tsmodels.tasks.callbacks import EpochTimer

TRAIN_SLEEP, VAL_SLEEP = 0.01, 0.05


class _Sleepy(pl.LightningModule):
    """4 training batches of TRAIN_SLEEP s each and 4 validation batches of VAL_SLEEP s each."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(TRAIN_SLEEP)
        return self.lin(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        time.sleep(VAL_SLEEP)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_epoch_timer_excludes_validation():
    loader = DataLoader(TensorDataset(torch.randn(4, 1)), batch_size=1)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                         num_sanity_val_steps=1)
    trainer.fit(_Sleepy(), loader, loader)
    assert len(timer.times) == 2
    for t in timer.times:
        # 4 x 10 ms of training; the 4 x 50 ms of validation (and the sanity check) must not count
        assert 4 * TRAIN_SLEEP <= t < 4 * TRAIN_SLEEP + 2 * VAL_SLEEP, timer.times
