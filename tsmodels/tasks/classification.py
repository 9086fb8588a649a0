"""Sequence classification task: any model mapping x (B, L, C) -> logits (B, K).

Single-label: cross-entropy, y (B,) long. Multi-label: BCE-with-logits, y (B, K) float multi-hot.
The model says which through its ``multilabel`` and ``n_classes`` attributes (see
:class:`tsmodels.models.classifiers.SequenceClassifier`). Metrics (torchmetrics, per split):
accuracy, macro AUROC and macro F1, logged as ``{val,test}/{acc,auroc,f1}`` next to
``{train,val,test}/loss``. At the end of testing a confusion-matrix PNG (per-label 2x2 matrices
for multi-label) is written atomically into the run directory (``trainer.default_root_dir``).
Checkpoints carry the datamodule's ``export_info()`` under ``"data_info"`` so that `tsm predict`
can prepare new inputs exactly as the training data were.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelConfusionMatrix,
    MultilabelF1Score,
)

from tsmodels.io import atomic_path, write_atomic_text
from tsmodels.tasks.optim import adamw_cosine, param_groups
from tsmodels.tasks.progress import log_training_loss


class MacroAUROC(MulticlassAUROC):
    """Macro one-vs-rest AUROC over the classes that occur in the targets.

    torchmetrics' ``average="macro"`` scores a class with no positive sample as 0 and still
    averages it in, which caps a perfect predictor below 1 whenever a rare class is missing from a
    split (ECG5000's class 5 has 2 beats in all). Here such a class is left out of the mean.
    preds (B, K) probabilities, target (B,) class indices.
    """

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(num_classes, average="none", **kwargs)
        self.add_state("positives", default=torch.zeros(num_classes), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds, target)
        # out-of-place: states reset under inference_mode must not be updated in place later
        self.positives = self.positives + torch.bincount(target.flatten().long(), minlength=self.num_classes)[: self.num_classes].float()
        self.count = self.count + target.numel()

    def compute(self) -> torch.Tensor:
        per_class = super().compute()
        ok = (self.positives > 0) & (self.positives < self.count)
        return per_class[ok].mean() if ok.any() else per_class.new_tensor(float("nan"))


class MacroMultilabelAUROC(MultilabelAUROC):
    """Macro AUROC over the labels that take both values in the targets (see :class:`MacroAUROC`).
    preds (B, K) probabilities, target (B, K) in {0, 1}."""

    def __init__(self, num_labels: int, **kwargs):
        super().__init__(num_labels, average="none", **kwargs)
        self.add_state("positives", default=torch.zeros(num_labels), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(()), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds, target)
        self.positives = self.positives + target.float().sum(0)
        self.count = self.count + target.shape[0]

    def compute(self) -> torch.Tensor:
        per_label = super().compute()
        ok = (self.positives > 0) & (self.positives < self.count)
        return per_label[ok].mean() if ok.any() else per_label.new_tensor(float("nan"))


def classification_metrics(n_classes: int, multilabel: bool) -> MetricCollection:
    """acc (micro accuracy; per-label for multi-label), auroc (macro over the classes present),
    f1 (macro)."""
    if multilabel:
        return MetricCollection({"acc": MultilabelAccuracy(n_classes), "auroc": MacroMultilabelAUROC(n_classes),
                                 "f1": MultilabelF1Score(n_classes, average="macro")})
    return MetricCollection({"acc": MulticlassAccuracy(n_classes, average="micro"), "auroc": MacroAUROC(n_classes),
                             "f1": MulticlassF1Score(n_classes, average="macro")})


def plot_confusion(cm: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> None:
    """Write a confusion-matrix PNG atomically. ``cm``: (K, K) counts (rows true, columns predicted)
    or (K, 2, 2) per-label matrices of a multi-label task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = [cm] if cm.ndim == 2 else list(cm)
    names = [class_names] if cm.ndim == 2 else [["0", "1"]] * len(mats)
    titles = [title] if cm.ndim == 2 else [f"{title} {c}".strip() for c in class_names]
    k = mats[0].shape[0]
    size = max(3.0, 0.5 * k + 2)
    fig, axes = plt.subplots(1, len(mats), figsize=(size * len(mats), size), squeeze=False)
    for ax, m, lab, t in zip(axes[0], mats, names, titles):
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(lab)), lab, rotation=45 if len(lab) > 6 else 0)
        ax.set_yticks(range(len(lab)), lab)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(t)
        thresh = m.max() / 2 if m.size else 0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > thresh else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def data_info_of(dm: Any, class_names: list[str], multilabel: bool) -> dict[str, Any] | None:
    """What a checkpoint needs to prepare new inputs like ``dm`` prepared its data: the
    datamodule's ``export_info()`` if it has one, else, for audio datamodules (``sample_rate`` and
    ``length`` attributes), the rate, clip length and class names. None if neither."""
    if hasattr(dm, "export_info"):
        return dm.export_info()
    if hasattr(dm, "sample_rate") and hasattr(dm, "length"):
        return {"domain": "audio", "sample_rate": int(dm.sample_rate), "seq_len": int(dm.length), "n_channels": 1,
                "classes": list(class_names), "multilabel": multilabel}
    return None


class ClassificationTask(pl.LightningModule):
    """Lightning wrapper for a sequence classifier.

    Args:
        model: nn.Module, forward(x (B, L, C)) -> logits (B, K), with attributes ``n_classes``
            and ``multilabel`` (default False).
        lr, weight_decay: AdamW settings. Parameters that carry ``_optim`` (S4D's A, B, dt) get
            their own learning rate / no weight decay.
        scheduler: "cosine" (decay to 0 over trainer.max_epochs, after ``warmup_epochs`` linear
            warm-up) or None.
        label_smoothing: for cross-entropy.
        class_names: names for the confusion matrix and predictions (default: the datamodule's
            ``classes`` when fitting, else "0".."K-1").
    """

    def __init__(self, model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.01, scheduler: str | None = "cosine",
                 warmup_epochs: int = 0, label_smoothing: float = 0.0, class_names: list[str] | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.n_classes = int(model.n_classes)
        self.multilabel = bool(getattr(model, "multilabel", False))
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.n_classes)]
        self.data_info: dict[str, Any] | None = None
        metrics = classification_metrics(self.n_classes, self.multilabel)
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.confusion = (MultilabelConfusionMatrix(self.n_classes) if self.multilabel
                          else MulticlassConfusionMatrix(self.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> logits (B, K)."""
        return self.model(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, K) -> probabilities (B, K): sigmoid per label, or softmax over classes."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (y (B,) long) or BCE-with-logits (y (B, K) float)."""
        if self.multilabel:
            return nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        return nn.functional.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)

    # -- hooks ------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        names = getattr(dm, "classes", None) or getattr(dm, "labels", None) or []
        if not self.hparams.class_names and len(names) == self.n_classes:
            self.class_names = [str(c) for c in names]
        self.data_info = data_info_of(dm, self.class_names, self.multilabel)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = self.class_names
        if self.data_info is not None:
            checkpoint["data_info"] = self.data_info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.class_names = checkpoint.get("class_names", self.class_names)
        self.data_info = checkpoint.get("data_info", self.data_info)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        log_training_loss(self, loss, x.shape[0])
        return loss

    def _eval_step(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", self.loss(logits, y), prog_bar=True, on_epoch=True, batch_size=x.shape[0])
        probs = self.probabilities(logits.float())
        target = y.long()
        metrics.update(probs, target)
        self.log_dict(metrics, on_epoch=True, batch_size=x.shape[0])
        return probs

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        probs = self._eval_step(batch, self.test_metrics, "test")
        self.confusion.update(probs, batch[1].long())

    def on_test_epoch_start(self) -> None:
        self.confusion.reset()

    def on_test_epoch_end(self) -> None:
        cm = self.confusion.compute().cpu().numpy()
        self.confusion.reset()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        run_dir = Path(self.trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        plot_confusion(cm, self.class_names, run_dir / "confusion_matrix.png", title="test")
        write_atomic_text(run_dir / "confusion_matrix.json",
                          json.dumps({"classes": self.class_names, "multilabel": self.multilabel, "matrix": cm.tolist()}))

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self(x))

    def configure_optimizers(self):
        hp = self.hparams
        epochs = self.trainer.max_epochs if self._trainer is not None else None
        groups = param_groups(self, hp.weight_decay, decay_1d=True)
        return adamw_cosine(groups, hp.lr, hp.weight_decay, hp.scheduler, epochs, hp.warmup_epochs)
