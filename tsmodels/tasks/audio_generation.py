"""Autoregressive audio generation task: next-sample cross-entropy over quantized (mu-law) audio.

The model maps tokens (B, L) to logits (B, L, K) with logits[:, t] a distribution of the sample
after t. The task feeds the clip shifted right by one behind a start token (silence, K // 2), so
every sample of the clip, the first included, is predicted; generation starts from the same token.

Logged: ``train/loss``, ``val/loss`` (NLL in nats per sample, what the checkpoint monitors),
``val/bits``, and on test ``test/loss`` (nats), ``test/nll_bits`` (bits per sample over the whole
padded clip) and ``test/nll_bits_speech`` (bits per sample over the recorded part only, padding
excluded; the number to compare with other speech models).

A class-conditional model's checkpoints also carry ``label_names`` (the datamodule's ``labels``,
e.g. "0".."9" for spoken digits: index i of the label embedding is label_names[i]), so
`tsm generate audio --digit 7` can map names to embedding rows without the training data.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from tsmodels.errors import UserInputError
from tsmodels.tasks.optim import param_groups
from tsmodels.tasks.progress import log_training_loss


class AudioGenerationTask(pl.LightningModule):
    """Lightning wrapper for an autoregressive waveform model (e.g. SaShiMi).

    Args:
        model: nn.Module, forward(tokens (B, L) int64) -> logits (B, L, K); ``n_classes`` attribute.
        lr, weight_decay: AdamW settings (S4 parameters keep their own, see :func:`param_groups`).
        scheduler: "cosine" (per step, over the planned steps, after ``warmup_steps`` linear warm-up) or None.
        warmup_steps: linear warm-up length.
    Batches: tokens (B, L) int64, or a tuple (tokens, labels, n_valid) from SpeechDataModule; labels
    are used only by class-conditional models (``model.n_labels > 0``), then NLL is conditional.
    """

    def __init__(self, model: nn.Module, lr: float = 4e-3, weight_decay: float = 0.0,
                 scheduler: str | None = "cosine", warmup_steps: int = 100):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.val_nll = MeanMetric()
        self.test_nll = MeanMetric()
        self.test_nll_speech = MeanMetric()
        n_labels = int(getattr(model, "n_labels", 0))
        self.label_names: list[str] | None = [str(i) for i in range(n_labels)] if n_labels else None

    @property
    def start_token(self) -> int:
        return self.model.n_classes // 2

    @property
    def conditional(self) -> bool:
        return getattr(self.model, "n_labels", 0) > 0

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, L) (labels (B,) for a class-conditional model) -> logits (B, L, K) predicting
        tokens[:, t] from tokens[:, :t]."""
        inp = nn.functional.pad(tokens[:, :-1], (1, 0), value=self.start_token)
        return self.model(inp, labels) if self.conditional else self.model(inp)

    @staticmethod
    def _unpack(batch):
        if isinstance(batch, (tuple, list)):
            tokens = batch[0]
            labels = batch[1] if len(batch) > 1 else None
            n_valid = batch[2] if len(batch) > 2 else None
            return tokens, labels, n_valid
        return batch, None, None

    def _nll(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample NLL (B, L) in nats."""
        logits = self(tokens, labels)
        return nn.functional.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none")

    def training_step(self, batch, batch_idx):
        tokens, labels, _ = self._unpack(batch)
        loss = self._nll(tokens, labels).mean()
        log_training_loss(self, loss, tokens.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        tokens, labels, _ = self._unpack(batch)
        nll = self._nll(tokens, labels)
        self.val_nll.update(nll.mean(), weight=nll.numel())
        self.log("val/loss", self.val_nll, prog_bar=True, on_epoch=True, batch_size=tokens.shape[0])

    def on_validation_epoch_end(self):
        self.log("val/bits", self.val_nll.compute() / math.log(2))

    def test_step(self, batch, batch_idx):
        tokens, labels, n_valid = self._unpack(batch)
        nll = self._nll(tokens, labels)
        self.test_nll.update(nll.mean(), weight=nll.numel())
        if n_valid is not None:
            mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < n_valid[:, None]
            if mask.any():
                self.test_nll_speech.update(nll[mask].mean(), weight=int(mask.sum()))
        self.log("test/loss", self.test_nll, on_epoch=True, batch_size=tokens.shape[0])

    def on_test_epoch_end(self):
        self.log("test/nll_bits", self.test_nll.compute() / math.log(2))
        if self.test_nll_speech.update_count:
            self.log("test/nll_bits_speech", self.test_nll_speech.compute() / math.log(2))

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = getattr(dm, "labels", None)
        if not self.conditional or names is None:
            return
        if len(names) != self.model.n_labels:
            # an embedding row per label: a mismatch would fail later with an index error
            raise UserInputError(f"the model is conditioned on {self.model.n_labels} labels but the data have "
                                 f"{len(names)} ({', '.join(map(str, names[:12]))})",
                                 f"leave model.n_labels unset (it follows the data) or set model.n_labels={len(names)}")
        self.label_names = [str(n) for n in names]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # self-contained checkpoints: `tsm generate audio --ckpt F` rebuilds the model from F alone
        config = getattr(self.model, "config", None)
        if config is not None:
            cls = type(self.model)
            checkpoint["model_config"] = {"_target_": f"{cls.__module__}.{cls.__qualname__}", **config}
        if self.label_names is not None:
            checkpoint["label_names"] = list(self.label_names)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.label_names = checkpoint.get("label_names", self.label_names)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(param_groups(self.model, self.hparams.weight_decay), lr=self.hparams.lr)
        if self.hparams.scheduler != "cosine" or self.trainer is None:
            return opt
        total = int(self.trainer.estimated_stepping_batches or 0)
        if total <= 0 or total > 10**8:  # unbounded (max_epochs=-1 with max_time): warm-up only
            total = None
        warm = max(1, int(self.hparams.warmup_steps))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if total is None:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
