"""Forecasting task: any model mapping (B, lookback, C_in) → (B, horizon, C_out), trained with MSE.

Metrics are computed on the scaled values (as the Informer-line papers report them); a
datamodule's ``inverse_transform`` turns predictions back into original units for users.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection


class ForecastingTask(pl.LightningModule):
    """Lightning wrapper for a forecasting model.

    Args:
        model: nn.Module, forward(x (B, lookback, C_in)) -> (B, horizon, C_out).
        lr, weight_decay: AdamW settings.
        scheduler: "cosine" (decay to 0 over trainer.max_epochs) or None.
    Batches are (x, y) with y (B, horizon, C_out).
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0, scheduler: str | None = "cosine"):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, lookback, C_in) → (B, horizon, C_out), scaled units."""
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch, metrics: MetricCollection, stage: str):
        x, y = batch
        pred = self(x)
        self.log(f"{stage}/loss", nn.functional.mse_loss(pred, y), prog_bar=True, batch_size=x.shape[0])
        metrics.update(pred.flatten(), y.flatten())
        self.log_dict(metrics, on_epoch=True, batch_size=x.shape[0])

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics, "test")

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler != "cosine" or not self.trainer or not self.trainer.max_epochs or self.trainer.max_epochs < 1:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
