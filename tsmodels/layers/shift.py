"""Shift-SSM heads (SpaceTime's preprocessing heads).

A shift SSM is a companion SSM with the last column fixed to zero and B fixed to e_1:
``x_t = S x_{t-1} + e_1 u_t`` keeps the last N inputs in a shift register, so with a learned C
the kernel is the finite impulse response ``K[l] = C_l`` for l < N (zero after). Such heads can
learn differencing (C = binomial coefficients with alternating signs) or moving-average
residuals (C = e_1 - 1/w on the first w taps), which is how the paper uses them in the first
layer. Official code: a and B are buffers, C ~ N(0, 1), no normalisation (norm_order 0).
``init="residual"`` starts C at the official *fixed* first-layer preprocessing kernels
(`model/ssm/preprocess/residual.py`: differencing of orders 0..3, then moving-average residuals)
and lets them train from there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kernels.fftconv import fftconv

from .companion import _heads_to_channels

__all__ = ["ShiftSSM", "residual_fir"]


def residual_fir(n_heads: int, N: int) -> torch.Tensor:
    """(n_heads, N) FIR taps: differencing of orders 0..min(3, N-1) (binomial, alternating signs),
    then moving-average residuals e_1 - 1/w (first w taps) with w spread evenly over [min(4, N), N]."""
    c = torch.zeros(n_heads, N)
    n_diff = min(4, N, n_heads)
    for order in range(n_diff):
        for j in range(order + 1):
            c[order, j] = (-1) ** j * math.comb(order, j)
    n_ma = n_heads - n_diff
    if n_ma:
        windows = torch.linspace(min(4, N), N, n_ma).round().long().tolist()
        for i, w in enumerate(windows):
            c[n_diff + i, 0] = 1.0
            c[n_diff + i, :w] -= 1.0 / w
    return c


class ShiftSSM(nn.Module):
    """Bank of shift-SSM heads (learned FIR filters of length N) over d_model channels.

    Args: d_model (H), n_heads (divides d_model; head h serves a contiguous block of channels),
    state_dim N (FIR length), skip (learn D u), init: "normal" (official) or "residual"
    (differencing orders 0..3, then moving-average residuals with windows spread over [4, N]).
    Shapes: forward u (B, H, L) -> (B, H, L); step u_t (B, H), state (B, H, N).
    """

    def __init__(self, d_model: int, n_heads: int, state_dim: int, skip: bool = True, init: str = "normal"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.d_model, self.n_heads, self.state_dim = d_model, n_heads, state_dim
        if init == "normal":
            c = torch.randn(n_heads, state_dim)
        elif init == "residual":
            c = residual_fir(n_heads, state_dim)
        else:
            raise ValueError(f"init must be 'normal' or 'residual', got {init!r}")
        self.c = nn.Parameter(c)
        self.D = nn.Parameter(torch.randn(d_model)) if skip else None

    def kernel(self, L: int) -> torch.Tensor:
        """K (n_heads, L): C zero padded (or cut) to length L."""
        N = self.state_dim
        return nn.functional.pad(self.c, (0, L - N)) if L >= N else self.c[:, :L]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, L) -> y (B, H, L) through :func:`kernels.fftconv.fftconv`."""
        k = _heads_to_channels(self.kernel(u.shape[-1]), self.d_model).to(u.dtype)
        return fftconv(u, k, self.D)

    def initial_state(self, batch: int, dtype=None, device=None) -> torch.Tensor:
        """Zero state (B, H, N)."""
        return torch.zeros(batch, self.d_model, self.state_dim, dtype=dtype or self.c.dtype, device=device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x <- S x + e_1 u; y = C x (+ D u). u (B, H), state (B, H, N)."""
        state = torch.cat([u[..., None], state[..., :-1]], dim=-1)
        y = (_heads_to_channels(self.c, self.d_model) * state).sum(-1)
        if self.D is not None:
            y = y + self.D * u
        return y, state
