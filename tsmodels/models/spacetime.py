"""SpaceTime (Zhang et al. 2023, "Effectively Modeling Time Series with Simple Discrete State Spaces").

    x (B, lookback, C_in)
      - mean over the lookback            (official data_transform "mean", added back at the end)
      -> embedding                        Linear(C_in, d_model)
      -> encoder                          n_encoder_layers SpaceTime layers (SSM heads -> residual -> MLP);
                                          the first may use shift-SSM heads (learned FIR preprocessing)
      -> decoder                          closed-loop companion SSM: reads the lookback, then feeds its
                                          own next-input prediction K x back (A + BK) for `horizon` steps,
                                          all in one convolution
      -> output                           GELU -> Dropout -> Linear(d_model, C_out)
    y (B, horizon, C_out)

`forward` runs every SSM as a convolution; `forward_recurrent` runs the same network one time step
at a time (the encoder layers' `step` and the decoder's loop) and returns the same numbers.
Defaults are small so that the model trains in seconds on a CPU; the paper's ETT settings are in
notes/spacetime_paper.md. When C_out < C_in the last C_out input channels are the targets (the
Informer "MS" layout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from tsmodels.errors import UserInputError
from tsmodels.layers.closed_loop import ClosedLoopCompanionSSM
from tsmodels.layers.spacetime_block import SpaceTimeLayer


@dataclass
class SpaceTimeConfig:
    """SpaceTime hyperparameters (defaults: tiny CPU model; paper: d_model 128, state_dim 64)."""

    lookback: int = 96  # expected input length (any length works; the kernels are built per call)
    horizon: int = 24  # forecast length (any value, also > lookback)
    n_channels_in: int = 1
    n_channels_out: int | None = None  # None: same as n_channels_in
    d_model: int = 16
    n_heads: int | None = None  # SSMs per encoder layer; None: one per channel (official default)
    state_dim: int = 16  # N: companion state size (paper: 64)
    n_encoder_layers: int = 2
    n_shift_heads: int = 0  # > 0: the first encoder layer uses this many shift-SSM (FIR) heads
    shift_init: str = "residual"  # shift heads start as differencing / MA-residual filters, or "normal"
    decoder_heads: int | None = None  # closed-loop SSMs; None: one per channel (official)
    mlp_ratio: int = 1  # 1: the paper's single Linear(d, d) MLP
    dropout: float = 0.0  # paper's ETT runs: 0.25
    norm: bool = False  # LayerNorm before each SSM (off in the paper)
    subtract_mean: bool = True  # official data_transform="mean"

    def __post_init__(self):
        if self.n_channels_out is None:
            self.n_channels_out = self.n_channels_in
        if self.n_heads is None:
            self.n_heads = self.d_model
        if self.decoder_heads is None:
            self.decoder_heads = self.d_model
        for name in ("lookback", "horizon", "n_channels_in", "n_channels_out", "d_model", "state_dim"):
            if getattr(self, name) < 1:
                raise UserInputError(f"SpaceTime {name}={getattr(self, name)} must be >= 1", f"set {name} to a positive integer")
        if self.n_channels_out > self.n_channels_in:
            raise UserInputError(
                f"n_channels_out={self.n_channels_out} > n_channels_in={self.n_channels_in}",
                "the targets must be among the inputs (the last n_channels_out columns)",
            )
        for name in ("n_heads", "decoder_heads") + (("n_shift_heads",) if self.n_shift_heads else ()):
            h = getattr(self, name)
            if h < 1 or self.d_model % h:
                raise UserInputError(f"{name}={h} does not divide d_model={self.d_model}", f"pick {name} among the divisors of d_model")
        if self.n_encoder_layers < 0 or (self.n_shift_heads and self.n_encoder_layers < 1):
            raise UserInputError(
                f"n_encoder_layers={self.n_encoder_layers} (n_shift_heads={self.n_shift_heads})",
                "use n_encoder_layers >= 0, and >= 1 when the first layer has shift heads",
            )
        if self.shift_init not in ("normal", "residual"):
            raise UserInputError(f"shift_init={self.shift_init!r}", "use 'residual' or 'normal'")
        if not 0.0 <= self.dropout < 1.0:
            raise UserInputError(f"dropout={self.dropout}", "use a dropout probability in [0, 1)")


class SpaceTime(nn.Module):
    """SpaceTime forecaster: x (B, lookback, C_in) -> (B, horizon, C_out).

    Build with plain keyword arguments (Hydra: ``_target_: tsmodels.models.spacetime.SpaceTime``),
    e.g. ``SpaceTime(lookback=96, horizon=24, n_channels_in=7)``, or with a config:
    ``SpaceTime(SpaceTimeConfig(...))``. Keywords next to a config override its fields.
    """

    def __init__(self, config: SpaceTimeConfig | None = None, **kwargs):
        super().__init__()
        known = {f.name for f in fields(SpaceTimeConfig)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UserInputError(f"unknown SpaceTime argument(s): {', '.join(unknown)}", f"use some of: {', '.join(sorted(known))}")
        cfg = SpaceTimeConfig(**{**(asdict(config) if config is not None else {}), **kwargs})
        self.config = cfg
        d = cfg.d_model

        self.embedding = nn.Linear(cfg.n_channels_in, d)
        self.encoder = nn.ModuleList(
            SpaceTimeLayer(
                d,
                cfg.n_shift_heads if (i == 0 and cfg.n_shift_heads) else cfg.n_heads,
                cfg.state_dim,
                kind="shift" if (i == 0 and cfg.n_shift_heads) else "companion",
                mlp_ratio=cfg.mlp_ratio,
                dropout=cfg.dropout,
                norm=cfg.norm,
                shift_init=cfg.shift_init,
            )
            for i in range(cfg.n_encoder_layers)
        )
        self.decoder = ClosedLoopCompanionSSM(d, cfg.decoder_heads, cfg.state_dim)
        self.output = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, cfg.n_channels_out))

    @classmethod
    def from_kwargs(cls, **kwargs) -> "SpaceTime":
        """Same as ``SpaceTime(**kwargs)``."""
        return cls(**kwargs)

    # -- shared pieces --------------------------------------------------------------------------

    def _check(self, x: torch.Tensor, horizon: int | None) -> int:
        if x.dim() != 3 or x.shape[-1] != self.config.n_channels_in or x.shape[1] < 1:
            raise UserInputError(
                f"SpaceTime input has shape {tuple(x.shape)}",
                f"pass x of shape (batch, lookback, {self.config.n_channels_in})",
            )
        horizon = self.config.horizon if horizon is None else horizon
        if horizon < 1:
            raise UserInputError(f"horizon={horizon}", "use a horizon >= 1")
        return horizon

    def _center(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Subtract the lookback mean (official 'mean' transform); return it for the targets."""
        if not self.config.subtract_mean:
            return x, None
        mean = x.mean(dim=1, keepdim=True)
        return x - mean, mean[..., -self.config.n_channels_out :]

    def _finish(self, y: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        y = self.output(y)
        return y if mean is None else y + mean

    # -- convolutional mode (training) ------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding + encoder on already centred inputs: (B, L, C_in) -> (B, L, d); causal in L."""
        z = self.embedding(x)
        for layer in self.encoder:
            z = layer(z)
        return z

    def forward(self, x: torch.Tensor, horizon: int | None = None, return_aux: bool = False):
        """x (B, lookback, C_in) -> forecast (B, horizon, C_out); every SSM as a convolution.

        With return_aux=True also returns a dict for the official auxiliary losses
        (criterion_weights w1, w2 of the reference code):
          "lookback": (B, L, C_out), open-loop decoder output at t = forecast of the targets at t + 1
              (the official loss skips the first state_dim - 1 steps: lookback[:, N-1:] vs
              targets[:, N:L+1], where target index L is the first horizon step);
          "next_input", "decoder_input": (B, L, d_model), the decoder's prediction K x_t of its own
              input at t + 1, and that input (loss: next_input[:, N-1:-1] vs decoder_input[:, N:]).
        """
        horizon = self._check(x, horizon)
        x, mean = self._center(x)
        z = self.encode(x)
        zt = z.transpose(1, 2)
        if not return_aux:
            return self._finish(self.decoder(zt, horizon).transpose(1, 2), mean)
        y, (y_open, u_next) = self.decoder(zt, horizon, open_loop=True)
        y = self._finish(y.transpose(1, 2), mean)
        aux = {
            "lookback": self._finish(y_open.transpose(1, 2), mean),
            "next_input": u_next.transpose(1, 2),
            "decoder_input": z,
        }
        return y, aux

    # -- recurrent mode ---------------------------------------------------------------------------

    @torch.no_grad()
    def forward_recurrent(self, x: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """Same as :meth:`forward`, computed one time step at a time (for checking and streaming)."""
        horizon = self._check(x, horizon)
        x, mean = self._center(x)
        B, L, _ = x.shape
        states = [layer.initial_state(B, dtype=x.dtype, device=x.device) for layer in self.encoder]
        zs = []
        for t in range(L):
            z = self.embedding(x[:, t])
            for i, layer in enumerate(self.encoder):
                z, states[i] = layer.step(z, states[i])
            zs.append(z)
        z = torch.stack(zs, dim=-1)  # (B, d, L)
        y = self.decoder.forward_recurrent(z, horizon).transpose(1, 2)
        return self._finish(y, mean)
