"""Sequence classifiers: embedding -> encoder -> norm -> pooling over time -> linear head.

    x (B, L, C_in)
      -> embedding      Linear(C_in, d) per step, or a strided Conv1d "patch" embedding that
                        shortens long inputs (raw audio) by a factor ``patch`` before the encoder
                        (window ``patch_kernel`` >= patch: overlapping windows, a learned filterbank)
      -> encoder        one of: SpaceTimeEncoder (SpaceTime layers: companion-SSM heads -> MLP),
                        S4DEncoder (pre-norm residual S4D blocks), CNNEncoder (Conv1d/BN/GELU
                        blocks, the baseline); each (B, L', d) -> (B, L'', d)
      -> LayerNorm -> pooling over time ("mean", "max" or "last") -> Dropout -> Linear(d, K)
    logits (B, K)

The encoders can shorten the sequence between layers (``pool``), which keeps the cost of long
inputs (8 kHz speech) down; the head does not care about the final length. Multi-label models
return one logit per label; :meth:`SequenceClassifier.predict_proba` applies sigmoid or softmax
accordingly.
"""

from __future__ import annotations

import torch
from torch import nn

from tsmodels.errors import UserInputError
from tsmodels.layers.s4d import S4D
from tsmodels.layers.spacetime_block import SpaceTimeLayer

__all__ = ["CNNEncoder", "S4DEncoder", "SpaceTimeEncoder", "SequenceClassifier"]


def _pool_time(z: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool (B, L, d) over time by ``factor`` (a no-op for 1 or sequences shorter than it)."""
    if factor <= 1 or z.shape[1] < factor:
        return z
    return nn.functional.avg_pool1d(z.transpose(1, 2), factor, factor).transpose(1, 2)


class CNNEncoder(nn.Module):
    """1-D CNN baseline: ``n_layers`` blocks Conv1d(d, d, k) -> Norm -> GELU -> MaxPool(pool),
    with a residual connection around each conv. z (B, L, d) -> (B, L / pool^n_layers, d).

    ``norm="batch"`` (BatchNorm, default) or ``"group"`` (GroupNorm with one group: per-example
    statistics, identical in training and evaluation). On raw speech, BatchNorm only generalized
    to evaluation mode once the inputs were standardized per example (``input_norm`` of
    :class:`SequenceClassifier`): clip loudness varies too much for running batch statistics."""

    def __init__(self, d_model: int = 64, n_layers: int = 4, kernel_size: int = 7, pool: int = 2, dropout: float = 0.1,
                 norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "group"):
            raise UserInputError(f"unknown CNN norm {norm!r}", "use norm=batch or norm=group")
        self.d_model, self.pool = d_model, int(pool)
        self.convs = nn.ModuleList(nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2) for _ in range(n_layers))
        self.norms = nn.ModuleList((nn.BatchNorm1d(d_model) if norm == "batch" else nn.GroupNorm(1, d_model))
                                   for _ in range(n_layers))
        self.act, self.drop = nn.GELU(), nn.Dropout(dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, d) -> (B, L', d)."""
        h = z.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.drop(self.act(norm(conv(h))))
            if self.pool > 1 and h.shape[-1] >= self.pool:
                h = nn.functional.max_pool1d(h, self.pool, self.pool)
        return h.transpose(1, 2)


class S4DEncoder(nn.Module):
    """Stack of pre-norm residual S4D blocks: z = z + Dropout(S4D(LayerNorm(z))), then optional
    average pooling by ``pool`` after each block. z (B, L, d) -> (B, L / pool^n_layers, d).

    ``bidirectional`` (default on, as in the S4 classification models) lets every step see the
    whole sequence; ``lr`` is the S4D learning rate for A, B, dt (see :class:`S4D`)."""

    def __init__(self, d_model: int = 64, n_layers: int = 4, d_state: int = 64, init: str = "legs",
                 bidirectional: bool = True, dropout: float = 0.1, pool: int = 1, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, lr: float | None = 1e-3):
        super().__init__()
        self.d_model, self.pool = d_model, int(pool)
        self.layers = nn.ModuleList(
            S4D(d_model, d_state=d_state, init=init, bidirectional=bidirectional, dropout=dropout,
                dt_min=dt_min, dt_max=dt_max, lr=lr) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.drop = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, d) -> (B, L', d)."""
        for layer, norm in zip(self.layers, self.norms):
            z = z + self.drop(layer(norm(z)))
            z = _pool_time(z, self.pool)
        return z


class SpaceTimeEncoder(nn.Module):
    """The SpaceTime encoder as a classifier backbone: ``n_layers`` SpaceTime layers (companion-SSM
    heads -> residual -> MLP; the first may use shift-SSM heads), optional average pooling by
    ``pool`` after each. z (B, L, d) -> (B, L / pool^n_layers, d). Causal within a layer; the
    classifier's pooling over time gives the head the whole sequence."""

    def __init__(self, d_model: int = 64, n_layers: int = 4, n_heads: int | None = None, state_dim: int = 64,
                 n_shift_heads: int = 0, mlp_ratio: int = 1, dropout: float = 0.1, norm: bool = True, pool: int = 1):
        super().__init__()
        n_heads = d_model if n_heads is None else n_heads
        for name, h in (("n_heads", n_heads),) + ((("n_shift_heads", n_shift_heads),) if n_shift_heads else ()):
            if h < 1 or d_model % h:
                raise UserInputError(f"{name}={h} does not divide d_model={d_model}", f"pick {name} among the divisors of d_model")
        self.d_model, self.pool = d_model, int(pool)
        self.layers = nn.ModuleList(
            SpaceTimeLayer(d_model, n_shift_heads if (i == 0 and n_shift_heads) else n_heads, state_dim,
                           kind="shift" if (i == 0 and n_shift_heads) else "companion",
                           mlp_ratio=mlp_ratio, dropout=dropout, norm=norm)
            for i in range(n_layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, d) -> (B, L', d)."""
        for layer in self.layers:
            z = _pool_time(layer(z), self.pool)
        return z


class SequenceClassifier(nn.Module):
    """x (B, L, C_in) -> logits (B, K).

    Args:
        n_channels_in: C_in. n_classes: K (classes, or labels when ``multilabel``).
        encoder: an encoder module mapping (B, L, d) -> (B, L', d) with ``d = d_model``
            (CNNEncoder, S4DEncoder, SpaceTimeEncoder or any such module).
        d_model: width d of the embedding and the encoder.
        patch: > 1: the embedding is Conv1d(C_in, d, patch_kernel, stride=patch), shortening L by
            ``patch``; 1: a per-step Linear(C_in, d).
        patch_kernel: window of the patch embedding (default ``patch``: non-overlapping frames).
            Wider, overlapping windows give the learned filters finer frequency resolution than
            the stride alone; the input is padded so the output still has ceil(L / patch) steps.
        pooling: "mean", "max" or "last" over the encoder's output steps.
        dropout: before the head. multilabel: one independent logit per label (sigmoid).
        input_norm: standardize each example's channels over time first (instance norm, no
            parameters). Raw speech clips differ in loudness by orders of magnitude; without it the
            per-batch statistics of a BatchNorm CNN did not carry over to evaluation.
    """

    def __init__(self, n_channels_in: int, n_classes: int, encoder: nn.Module, d_model: int = 64, patch: int = 1,
                 pooling: str = "mean", dropout: float = 0.1, multilabel: bool = False, input_norm: bool = False,
                 patch_kernel: int | None = None):
        super().__init__()
        if pooling not in ("mean", "max", "last"):
            raise UserInputError(f"unknown pooling {pooling!r}", "use pooling=mean, max or last")
        if n_classes < 2 and not multilabel:
            raise UserInputError(f"n_classes={n_classes}: a classifier needs at least 2 classes", "check the data labels")
        enc_d = getattr(encoder, "d_model", d_model)
        if enc_d != d_model:
            raise UserInputError(f"encoder width {enc_d} != d_model {d_model}", "give the encoder d_model: ${..d_model}")
        self.n_channels_in, self.n_classes, self.multilabel = int(n_channels_in), int(n_classes), bool(multilabel)
        self.patch, self.pooling, self.input_norm = int(patch), pooling, bool(input_norm)
        self.patch_kernel = self.patch if patch_kernel is None else int(patch_kernel)
        if self.patch > 1 and self.patch_kernel < self.patch:
            raise UserInputError(f"patch_kernel={self.patch_kernel} is shorter than patch={self.patch}",
                                 "use patch_kernel >= patch (or leave it unset)")
        self.embedding = (nn.Conv1d(n_channels_in, d_model, self.patch_kernel, stride=self.patch) if self.patch > 1
                          else nn.Linear(n_channels_in, d_model))
        self.encoder = encoder
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C_in) -> pooled features (B, d)."""
        if x.dim() != 3 or x.shape[-1] != self.n_channels_in:
            raise UserInputError(f"classifier input has shape {tuple(x.shape)}",
                                 f"pass x of shape (batch, length, {self.n_channels_in})")
        if self.input_norm:
            x = (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + 1e-5)
        if self.patch > 1:
            if x.shape[1] < self.patch:
                raise UserInputError(f"input length {x.shape[1]} is shorter than the patch {self.patch}", "pass longer inputs")
            h = x.transpose(1, 2)
            extra = self.patch_kernel - self.patch
            if extra or h.shape[-1] % self.patch:
                # centre the wider windows on their frames; pad the end to a whole number of frames
                left = extra // 2
                right = extra - left + (-h.shape[-1]) % self.patch
                h = nn.functional.pad(h, (left, right))
            z = self.embedding(h).transpose(1, 2)
        else:
            z = self.embedding(x)
        z = self.norm(self.encoder(z))
        if self.pooling == "mean":
            return z.mean(dim=1)
        if self.pooling == "max":
            return z.amax(dim=1)
        return z[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C_in) -> logits (B, K)."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C_in) -> probabilities (B, K): softmax over classes, or per-label sigmoid."""
        logits = self(x)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
