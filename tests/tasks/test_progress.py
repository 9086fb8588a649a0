"""The training loss reaches the progress bar on the CPU only: on a GPU, Lightning's per-batch
conversion of progress-bar values would synchronize the host every step."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tsmodels.tasks.progress import log_training_loss


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.lin(x), y)
        log_training_loss(self, loss, x.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_cpu_loss_is_logged_per_step_per_epoch_and_on_the_progress_bar():
    data = TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Tiny(), DataLoader(data, batch_size=4))
    assert {"train/loss_step", "train/loss_epoch"} <= set(trainer.callback_metrics)
    assert "train/loss_epoch" in trainer.progress_bar_metrics


def test_accelerator_loss_stays_off_the_progress_bar():
    calls = []
    module = _Tiny()
    module.log = lambda name, value, **kw: calls.append((name, kw))
    log_training_loss(module, torch.tensor(1.0, device="meta"), 4)
    log_training_loss(module, torch.tensor(1.0), 4)
    assert [kw["prog_bar"] for _, kw in calls] == [False, True]
    assert all(kw["on_step"] and kw["on_epoch"] for _, kw in calls)


@pytest.mark.gpu
def test_graphed_operator_training_does_not_synchronize_between_steps():
    """From the second epoch on, nothing between one training batch's end and the next batch's start
    (Lightning's logging, the scheduler, the next batch) may make the host wait for the GPU."""
    from datamodules.navier_stokes import IndexBatches
    from tsmodels.models.t1_operator import T1Operator2d
    from tsmodels.tasks.operator import OperatorTask

    class NoSync(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch >= 1 and batch_idx < trainer.num_training_batches - 1:
                torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            torch.cuda.set_sync_debug_mode(0)

    data = TensorDataset(torch.randn(80, 4, 16, 16, device="cuda"), torch.randn(80, 4, 16, 16, device="cuda"))
    loader = DataLoader(data, sampler=IndexBatches(80, 20, True, "cuda"), batch_size=None)
    task = OperatorTask(T1Operator2d(4, 4, 16, width=8, modes=4), cuda_graphs=True)
    trainer = pl.Trainer(max_epochs=2, accelerator="gpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[NoSync()])
    try:
        trainer.fit(task, loader)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert task.graphed
