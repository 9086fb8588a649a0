"""Operator-learning task (PDE surrogates): relative L2 loss, FNO-style metrics, autoregressive rollouts.

Batches are (x, y): x (B, T_in, X, Y) input fields, y (B, T_y, X, Y) targets. A model maps
(B, T_in, X, Y) -> (B, C_out, X, Y). If C_out == T_y it is a direct operator (one call); if
C_out < T_y it is a time stepper: the task rolls it out, feeding each prediction back into the
input window (FNO's 10 -> 10 Navier-Stokes setup), and trains on the whole rollout.

Metrics (per-sample relative L2, averaged over samples, the FNO convention):
    val/loss, test/loss     the training objective (rollout relative L2 for time steppers)
    test/rel_l2             one-step relative L2: every target frame predicted from the true
                            preceding T_in frames (for direct operators: the prediction itself)
    test/rollout_rel_l2     time steppers only: the autoregressive rollout over all T_y frames

Models that map retained spectra to retained spectra (``encode`` / ``step_weights`` / ``step_modes`` /
``spectrum_to_grid``, T1) are rolled out in the frequency domain: one forward transform of the input
window per batch, none inside the rollout, since every predicted frame is band-limited and its
coefficients are exactly what the next step would compute from the grid. ``loss_domain="frequency"``
then takes the loss on the spectrum by Parseval (no inverse transform at all); ``"space"`` does one
inverse transform of all predicted frames. Both equal the grid rollout's loss up to rounding.

``cuda_graphs=True`` replays the training objective's forward and backward as CUDA graphs
(tsmodels.tasks.graphs). At the sizes of the FNO benchmark (64 x 64, batch 20, width 32) both T1 and
FNO are bound by kernel launches and autograd's CPU work, not by the GPU; a graph removes that, so
epoch times measure the models' device work.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from tsmodels.layers.fno import gather_modes
from tsmodels.tasks.graphs import GraphedObjective
from tsmodels.tasks.optim import adamw_cosine, param_groups
from tsmodels.tasks.progress import log_training_loss


def rel_l2_parts(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared error and squared target norm per sample: (B, ...) x2 -> (B,), (B,)."""
    err = (pred.float() - target.float()).flatten(1).pow(2).sum(1)
    norm = target.float().flatten(1).pow(2).sum(1)
    return err, norm


def rel_l2(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample relative L2 error ||pred - target|| / ||target||: (B, ...) x2 -> (B,)."""
    err, norm = rel_l2_parts(pred, target)
    return torch.sqrt(err / norm.clamp_min(eps))


def spectral_rel_l2_parts(pred_modes: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rel_l2_parts` from a band-limited prediction's retained spectrum.

    Args:
        pred_modes: (B, C, 2 m1, m2) complex Fourier-series coefficients (rfft2, norm="forward",
            retained rows [0, m1) and [X - m1, X), columns [0, m2)); zero outside.
        target: (B, C, X, Y) real fields.
    Returns: (err, norm) per sample, in the units of :func:`rel_l2_parts` (sums over grid points).
    By Parseval, sum_x f^2 = N sum_k w_k |c_k|^2 with w_k = 2 for the columns that stand for a
    conjugate pair and 1 for column 0 and (Y even) the Nyquist column.
    """
    X, Y = target.shape[-2:]
    m1, m2 = pred_modes.shape[-2] // 2, pred_modes.shape[-1]
    N = X * Y
    t_modes = gather_modes(torch.fft.rfft2(target.float(), norm="forward"), m1, m2)
    w = torch.full((m2,), 2.0, device=target.device)
    w[0] = 1.0
    if Y % 2 == 0 and m2 == Y // 2 + 1:
        w[-1] = 1.0
    norm = target.float().flatten(1).pow(2).sum(1)
    kept = (w * t_modes.abs().pow(2)).flatten(1).sum(1) * N
    diff = (w * (pred_modes - t_modes).abs().pow(2)).flatten(1).sum(1) * N
    # energy of the target outside the retained modes is error the prediction cannot remove
    return diff + (norm - kept).clamp_min(0), norm


class RelativeL2(Metric):
    """Per-sample relative L2 error averaged over all samples seen (FNO's test metric).

    update(pred (B, ...), target (B, ...)); compute() -> scalar.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        r = rel_l2(pred, target)
        self.total += r.double().sum()
        self.count += r.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class OperatorTask(GraphedObjective, pl.LightningModule):
    """Lightning wrapper for neural operators (T1, FNO, neuralop's FNO).

    Args:
        model: nn.Module, forward(x (B, T_in, X, Y)) -> (B, C_out, X, Y).
        lr, weight_decay: AdamW settings. scheduler: "cosine" (to 0 over max_epochs) or None.
        loss_domain: "space" or "frequency" (for spectral steppers; others always use "space").
        warmup_epochs: linear warm-up before the cosine decay.
        cuda_graphs: on CUDA, run the training objective (forward + backward) as captured CUDA graphs
            (tsmodels.tasks.graphs); same loss and gradients as eager mode.
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4,
                 scheduler: str | None = "cosine", loss_domain: str = "space", warmup_epochs: int = 0,
                 cuda_graphs: bool = False):
        super().__init__()
        if loss_domain not in ("space", "frequency"):
            raise ValueError(f"loss_domain must be 'space' or 'frequency', got {loss_domain!r}")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.spectral_loss = loss_domain == "frequency" and self.spectral_stepper
        if self.spectral_loss and getattr(model, "transform", "dft") != "dft":
            raise ValueError("loss_domain='frequency' takes the loss on DFT coefficients; use 'space' for this model")
        self.val_rel_l2 = RelativeL2()
        self.test_rel_l2 = RelativeL2()
        self.test_rollout = RelativeL2()
        self._init_graphs(cuda_graphs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T_in, X, Y) -> (B, C_out, X, Y): one model call."""
        return self.model(x)

    @staticmethod
    def _next_window(window: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Slide the input window by the frames just predicted: (B, T_in, ...), (B, k, ...) -> (B, T_in, ...)."""
        if p.shape[1] < window.shape[1]:
            return torch.cat([window[:, p.shape[1]:], p], dim=1)
        return p[:, -window.shape[1]:]

    @property
    def spectral_stepper(self) -> bool:
        """True when the model maps retained spectra to retained spectra (T1): rollouts stay in frequency domain."""
        return all(hasattr(self.model, a) for a in ("encode", "step_weights", "step_modes", "spectrum_to_grid"))

    def rollout_modes(self, zx: torch.Tensor, n_frames: int, size: tuple[int, int]) -> torch.Tensor:
        """Frequency-domain rollout of a spectral stepper: retained input spectra (B, T_in, 2m, m) ->
        predicted spectra (B, n_frames, 2m, m), with no transform inside the loop."""
        window, preds, t = zx, [], 0
        weights = self.model.step_weights(size, zx.device)  # once per rollout, not per step
        while t < n_frames:
            p = self.model.step_modes(window, size, weights)
            preds.append(p)
            t += p.shape[1]
            if t < n_frames:
                window = self._next_window(window, p)
        return torch.cat(preds, dim=1)[:, :n_frames]

    def rollout(self, x: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Autoregressive prediction of ``n_frames`` frames: x (B, T_in, X, Y) -> (B, n_frames, X, Y)."""
        if self.spectral_stepper:
            size = (x.shape[-2], x.shape[-1])
            zp = self.rollout_modes(self.model.encode(x), n_frames, size)
            return self.model.spectrum_to_grid(zp, size).to(x.dtype)
        window, preds, t = x, [], 0
        while t < n_frames:
            p = self.model(window)
            preds.append(p)
            t += p.shape[1]
            if t < n_frames:
                window = self._next_window(window, p)
        return torch.cat(preds, dim=1)[:, :n_frames]

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean per-sample relative L2 of the (rolled-out) prediction; on the spectrum when configured."""
        if not self.spectral_loss:
            return rel_l2(self.rollout(x, y.shape[1]), y).mean()
        zp = self.rollout_modes(self.model.encode(x), y.shape[1], (y.shape[-2], y.shape[-1]))
        err, norm = spectral_rel_l2_parts(zp, y)
        return torch.sqrt(err / norm.clamp_min(1e-12)).mean()

    def one_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Teacher-forced predictions of every target frame from the true preceding frames:
        (B, T_in, X, Y), (B, T_y, X, Y) -> (B, T_y, X, Y). Direct operators: one call."""
        T_in, T_y = x.shape[1], y.shape[1]
        out_ch = getattr(self.model, "out_channels", None)
        if out_ch is None or out_ch >= T_y:
            return self.model(x)[:, :T_y]
        seq = torch.cat([x, y], dim=1)
        starts = list(range(0, T_y, out_ch))
        windows = torch.cat([seq[:, s:s + T_in] for s in starts], dim=0)
        preds = self.model(windows).split(x.shape[0], dim=0)
        return torch.cat(preds, dim=1)[:, :T_y]

    def _is_stepper(self, y: torch.Tensor) -> bool:
        out_ch = getattr(self.model, "out_channels", None)
        return out_ch is not None and out_ch < y.shape[1]

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.objective(x, y)
        log_training_loss(self, loss, x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = self.rollout(x, y.shape[1])
        self.log("val/loss", rel_l2(pred, y).mean(), prog_bar=True, batch_size=x.shape[0])
        self.val_rel_l2.update(pred, y)
        self.log("val/rel_l2", self.val_rel_l2, on_epoch=True, batch_size=x.shape[0])

    def test_step(self, batch, batch_idx):
        x, y = batch
        pred = self.rollout(x, y.shape[1])
        self.log("test/loss", rel_l2(pred, y).mean(), batch_size=x.shape[0])
        self.test_rel_l2.update(self.one_step(x, y), y)
        self.log("test/rel_l2", self.test_rel_l2, on_epoch=True, batch_size=x.shape[0])
        if self._is_stepper(y):
            self.test_rollout.update(pred, y)
            self.log("test/rollout_rel_l2", self.test_rollout, on_epoch=True, batch_size=x.shape[0])

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self):
        hp = self.hparams
        epochs = self.trainer.max_epochs if self._trainer is not None else None
        return adamw_cosine(param_groups(self.model, hp.weight_decay), hp.lr, hp.weight_decay, hp.scheduler, epochs,
                            hp.warmup_epochs)
