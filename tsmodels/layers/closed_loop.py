"""Closed-loop companion SSM: SpaceTime's decoder.

Open loop, the SSM reads the lookback ``u_0..u_{L-1}``: ``x_t = A x_{t-1} + B u_t``, ``y_t = C x_t``
(y_t is the forecast of step t + 1; A = S + a e_N^T companion). Closed loop, a learned
readout K predicts the layer's *next input* from the state, ``u_{t+1} ≈ K x_t``, and feeds it back,
so past the lookback ``x_{t+1} = (A + B K) x_t`` and

    y_{L-1+j} = C (A + BK)^j x_{L-1},     û_{L+j} = K (A + BK)^j x_{L-1},     j = 0..h-1.

The horizon needs no loop: A + BK = S + U V^T with U = [a, B], V = [e_N, K] is a shift plus a
rank-two term, so Woodbury with the nilpotent S turns ``C (I - z(A+BK))^{-1} x`` into a ratio of
polynomials ``Num(z) / Den(z)`` (``Den = det(I - z(A+BK))``, degree <= 2N; Num from FFT products of
length-N vectors). ``1/Den`` is the impulse response of the closed-loop system (the closed-loop
kernel, h terms by Newton's iteration), and the horizon is one causal convolution
``fftconv(Num, 1/Den)``: O((N + h) log(N + h)) per channel. The state ``x_{L-1}`` itself comes from
:func:`tsmodels.layers.companion.companion_state` (a polynomial product and one fast division).

As in the official ClosedLoopCompanionSSM (norm_order=1), a, B, C and K are all divided by their
L1 norms; unlike it, the same normalised B drives both the lookback and the rollout (the official
code uses the raw B for the lookback state and the normalised one inside A + BK).
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.fftconv import fftconv

from .companion import (
    _heads_to_channels,
    companion_kernel,
    companion_state,
    correlate,
    inverse_denominator,
    l1_normalize,
    polymul,
    series_inverse,
)

__all__ = ["closed_loop_rollout", "ClosedLoopCompanionSSM"]


def _one_minus_z(g: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """Coefficients of δ - z g(z) (δ = 1 on the diagonal of I - zG, else 0): (..., N) -> (..., N+1)."""
    lead = torch.ones_like(g[..., :1]) if diagonal else torch.zeros_like(g[..., :1])
    return torch.cat([lead, -g], dim=-1)


def closed_loop_rollout(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, k: torch.Tensor, readouts: list[torch.Tensor], h: int
) -> list[torch.Tensor]:
    """r^T (A + b k^T)^j x for j < h and each readout r, without a loop over j.

    Args: x (B, H, N) start state; a, b, k (H, N) (A = S + a e_N^T); readouts: list of (H, N);
    h >= 1 steps. Returns: list of (B, H, h), one per readout.
    """
    G11, G12 = a.flip(-1), b.flip(-1)  # e_N^T R a, e_N^T R b with R = (I - zS)^{-1}
    G21, G22 = correlate(k, a), correlate(k, b)
    E11, E12 = _one_minus_z(G11, True), _one_minus_z(G12, False)
    E21, E22 = _one_minus_z(G21, False), _one_minus_z(G22, True)
    den = polymul(E11, E22) - polymul(E12, E21)  # det(I - z(A + bk^T)), den[0] = 1
    kernel = series_inverse(den, h).to(x.dtype)  # closed-loop impulse response, (H, h)
    v1, v2 = x.flip(-1), correlate(k, x)  # V^T R x
    w1 = polymul(E22, v1) - polymul(E12, v2)  # adj(I - zG) V^T R x
    w2 = polymul(E11, v2) - polymul(E21, v1)
    outs = []
    for r in readouts:
        num = polymul(den, correlate(r, x))
        num = num + nn.functional.pad(polymul(correlate(r, a), w1) + polymul(correlate(r, b), w2), (1, 0))
        n = num.shape[-1]
        num = num[..., :h] if n >= h else nn.functional.pad(num, (0, h - n))
        outs.append(fftconv(num, kernel))
    return outs


class ClosedLoopCompanionSSM(nn.Module):
    """Closed-loop companion SSM heads over d_model channels (the SpaceTime decoder SSM).

    Args: d_model (H), n_heads (divides d_model), state_dim N, normalize (L1 on a, B, C, K).
    Shapes: forward u (B, H, L), horizon h -> y (B, H, h) (and the predicted next inputs
    û (B, H, h) with return_inputs=True); forward_recurrent is the same by a loop over steps.
    """

    def __init__(self, d_model: int, n_heads: int, state_dim: int, normalize: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.d_model, self.n_heads, self.state_dim, self.normalize = d_model, n_heads, state_dim, normalize
        self.a = nn.Parameter(torch.randn(n_heads, state_dim))
        self.b = nn.Parameter(torch.randn(n_heads, state_dim))
        self.c = nn.Parameter(torch.randn(n_heads, state_dim))
        self.k = nn.Parameter(torch.randn(n_heads, state_dim))

    def params(self) -> tuple[torch.Tensor, ...]:
        """(a, B, C, K), each (H, N) per channel, normalised if configured."""
        ps = (self.a, self.b, self.c, self.k)
        if self.normalize:
            ps = tuple(l1_normalize(p) for p in ps)
        return tuple(_heads_to_channels(p, self.d_model) for p in ps)

    def forward(self, u: torch.Tensor, horizon: int, return_inputs: bool = False, open_loop: bool = False):
        """u (B, H, L) lookback -> y (B, H, horizon) [, û (B, H, horizon)] in one pass.

        open_loop=True also returns :meth:`open_loop`'s two (B, H, L) outputs, as a last tuple
        element; the lookback state and the open-loop kernels then share one denominator inverse.
        """
        a, b, c, k = (p.to(u.dtype) for p in self.params())
        L = u.shape[-1]
        inv = inverse_denominator(a, L) if open_loop else None
        x = companion_state(a, b, u, inv)
        outs = closed_loop_rollout(x, a, b, k, [c, k] if return_inputs else [c], horizon)
        if open_loop:
            outs = [*outs, self._open_loop(u, a, b, c, k, inv)]
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def _open_loop(u, a, b, c, k, inv=None) -> tuple[torch.Tensor, torch.Tensor]:
        # both readouts in one kernel computation (one shared denominator)
        K = companion_kernel(a, b, torch.stack([c, k]), u.shape[-1], inv).to(u.dtype)
        return fftconv(u, K[0]), fftconv(u, K[1])

    def open_loop(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Open-loop outputs over the lookback, for the official auxiliary losses.

        u (B, H, L) -> (C x_t, K x_t), each (B, H, L): at step t the layer's forecast of step t + 1
        and its prediction of its own next input u_{t+1} (two causal convolutions).
        """
        return self._open_loop(u, *(p.to(u.dtype) for p in self.params()))

    def forward_recurrent(self, u: torch.Tensor, horizon: int, return_inputs: bool = False):
        """Reference: the same outputs by stepping the recurrence (loop over L + horizon)."""
        a, b, c, k = (p.to(u.dtype) for p in self.params())
        x = torch.zeros(*u.shape[:2], self.state_dim, dtype=u.dtype, device=u.device)

        def advance(x, v):
            return nn.functional.pad(x[..., :-1], (1, 0)) + a * x[..., -1:] + b * v[..., None]

        for t in range(u.shape[-1]):
            x = advance(x, u[..., t])
        ys, us = [], []
        for _ in range(horizon):
            ys.append((c * x).sum(-1))
            v = (k * x).sum(-1)  # predicted next input, fed back
            us.append(v)
            x = advance(x, v)
        y, uh = torch.stack(ys, -1), torch.stack(us, -1)
        return (y, uh) if return_inputs else y
