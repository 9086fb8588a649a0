"""Forecasting task: any model mapping (B, lookback, C_in) → (B, horizon, C_out), trained with MSE (or RMSE).

Metrics are computed on the scaled values (as the Informer-line papers report them); a
datamodule's ``inverse_transform`` turns predictions back into original units for users.
"""

from __future__ import annotations

import inspect

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from tsmodels.errors import UserInputError
from tsmodels.tasks.graphs import GraphedObjective
from tsmodels.tasks.optim import adamw_cosine
from tsmodels.tasks.progress import log_training_loss


class ForecastingTask(GraphedObjective, pl.LightningModule):
    """Lightning wrapper for a forecasting model.

    Args:
        model: nn.Module, forward(x (B, lookback, C_in)) -> (B, horizon, C_out).
        lr, weight_decay: AdamW settings.
        scheduler: "cosine" (decay to 0 over trainer.max_epochs, after ``warmup_epochs`` of linear
            warm-up) or None.
        loss: "mse", or "rmse" (the square root of each term's MSE, the official SpaceTime
            ``informer_rmse``: every term of the objective then has a gradient of unit scale).
        aux_weights: (w_lookback, w_next_input): SpaceTime's two auxiliary training losses (the
            official objective uses 1, 1): the decoder's open-loop one-step forecasts over the
            lookback, and its predictions of its own next input. Needs a model whose forward takes
            ``return_aux=True`` (see tsmodels.models.spacetime); the first state_dim steps, where the
            state is still filling, are skipped as in the reference code.
        cuda_graphs: on CUDA, run the training objective (forward + backward) as captured CUDA graphs
            (tsmodels.tasks.graphs): SpaceTime's step is thousands of small kernels.
    Batches are (x, y) with y (B, horizon, C_out); the targets are the last C_out input channels.
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0, scheduler: str | None = "cosine",
                 aux_weights: tuple[float, float] = (0.0, 0.0), cuda_graphs: bool = False, loss: str = "mse",
                 warmup_epochs: int = 0):
        super().__init__()
        if loss not in ("mse", "rmse"):
            raise UserInputError(f"forecasting loss {loss!r}", "use task.loss=mse or task.loss=rmse")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self._aux = any(aux_weights) and "return_aux" in inspect.signature(model.forward).parameters
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self._init_graphs(cuda_graphs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, lookback, C_in) → (B, horizon, C_out), scaled units."""
        return self.model(x)

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(training loss, lookback aux loss, next-input aux loss) for a batch; the aux terms are 0 when unused."""
        if not self._aux:
            zero = x.new_zeros(())
            return self._term(self(x), y), zero, zero
        w_look, w_next = self.hparams.aux_weights
        pred, aux = self.model(x, return_aux=True)
        look, nxt = self._aux_losses(x, y, aux)
        return self._term(pred, y) + w_look * look + w_next * nxt, look, nxt

    def _term(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = nn.functional.mse_loss(pred, target)
        return mse.sqrt() if self.hparams.loss == "rmse" else mse

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, look, nxt = self.objective(x, y)
        log_training_loss(self, loss, x.shape[0])
        if self._aux:
            self.log_dict({"train/aux_lookback": look, "train/aux_next_input": nxt}, batch_size=x.shape[0])
        return loss

    def _aux_losses(self, x, y, aux) -> tuple[torch.Tensor, torch.Tensor]:
        skip = getattr(getattr(self.model, "config", None), "state_dim", 1)
        L = x.shape[1]
        if L <= skip:
            return x.new_zeros(()), x.new_zeros(())
        targets = torch.cat([x[..., -y.shape[-1]:], y], dim=1)  # (B, L + H, C_out)
        look = self._term(aux["lookback"][:, skip - 1:], targets[:, skip:L + 1])
        nxt = self._term(aux["next_input"][:, skip - 1:-1], aux["decoder_input"][:, skip:])
        return look, nxt

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
        hp = self.hparams
        epochs = self.trainer.max_epochs if self._trainer is not None else None
        return adamw_cosine(self.parameters(), hp.lr, hp.weight_decay, hp.scheduler, epochs, hp.warmup_epochs)
