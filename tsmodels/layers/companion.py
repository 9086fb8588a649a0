"""Companion-matrix SSM heads (SpaceTime, Zhang et al. 2023).

Each head is a discrete SSM ``x_t = A x_{t-1} + B u_t``, ``y_t = C x_t (+ D u_t)`` whose state
matrix is a companion matrix ``A = S + a e_N^T``: ``S`` shifts the state down by one
(``S[i+1, i] = 1``) and the learned vector ``a`` is A's last column. As in the official code, ``a``
is divided by its L1 norm before use, which puts every root of the characteristic polynomial in
the closed unit disk (``|λ|^N = |Σ a_j λ^j| <= max(1, |λ|)^(N-1)``), so kernels never blow up.

Kernel. The impulse response ``K[l] = C A^l B`` is the power series of the transfer function

    H(z) = C (I - zA)^{-1} B = Num(z) / Den(z),

and the companion structure makes both polynomials cheap: ``(I - zS)^{-1} = Σ_k z^k S^k`` is
a polynomial in z because S is nilpotent, and Sherman-Morrison on the rank-one term
``z a e_N^T`` gives

    Den(z) = 1 - z e_N^T (I - zS)^{-1} a   = 1 - Σ_{m=1..N} a_{N-m} z^m     (reversed char. poly)
    Num(z) = (c⋆b)(z) Den(z) + z (c⋆a)(z) flip(b)(z)

where ``(u⋆v)(z) = Σ_k z^k Σ_i u_{i+k} v_i`` (a correlation, length N). All of these are FFT
products of length-N coefficient vectors. The first L coefficients of Num/Den are then one
power-series division: Newton's iteration ``g <- g (2 - Den g)`` doubles the number of correct
coefficients per step with FFT products, so the whole kernel costs O(N log N + L log L) per
head, with no N x L Krylov matrix and no matrix powers.

Why not the paper's roots-of-unity shortcut verbatim: evaluating ``Num/Den`` at the L-th roots
of unity and inverting the FFT returns the kernel *aliased* modulo L; the paper removes that by
using ``C~ = C (I - A^L)`` in place of C (and suggests learning C~ directly). That needs A^L, and
a learned C~ ties the parameters to one sequence length and cannot be turned back into C when
``I - A^L`` is singular, which is exactly the case for unit-root (trend / integrator) dynamics
that the L1 normalisation allows. Exact series division has the same cost and none of these
issues; see notes/spacetime_paper.md.

The convolution of the input with the kernel goes through :func:`kernels.fftconv.fftconv`.
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.fftconv import fftconv, next_fast_len

__all__ = [
    "polymul",
    "correlate",
    "series_inverse",
    "l1_normalize",
    "companion_matrix",
    "companion_kernel",
    "inverse_denominator",
    "companion_state",
    "CompanionSSM",
]


# ----------------------------------------------------------------------------------------------
# polynomial helpers (coefficients along the last axis, lowest degree first; leading dims broadcast)


def polymul(f: torch.Tensor, g: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
    """Coefficients of the product f(z) g(z), through the FFT.

    Args: f (..., n), g (..., m) (leading dims broadcast); n_out: keep only the first n_out
    coefficients (the result is zero padded if the product is shorter).
    Returns: (..., n + m - 1) or (..., n_out).
    """
    if n_out is not None:
        # coefficients of degree >= n_out never reach the first n_out outputs
        f, g = f[..., :n_out], g[..., :n_out]
    n = f.shape[-1] + g.shape[-1] - 1
    size = next_fast_len(n)
    y = torch.fft.irfft(torch.fft.rfft(f, n=size) * torch.fft.rfft(g, n=size), n=size)[..., :n]
    if n_out is not None and n_out > n:
        y = nn.functional.pad(y, (0, n_out - n))
    elif n_out is not None:
        y = y[..., :n_out]
    return y


def correlate(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """r[k] = Σ_i u[i + k] v[i] for k = 0..N-1, i.e. the polynomial u^T (I - zS)^{-1} v.

    Args: u (..., N), v (..., N). Returns (..., N).
    """
    N = u.shape[-1]
    return polymul(u, v.flip(-1))[..., N - 1 : 2 * N - 1]


# Newton's doubling starts from this many terms found by one triangular solve: the first
# doublings are tiny FFT products whose launch count, not arithmetic, dominates.
_DIRECT_TERMS = 32


def _series_inverse_direct(d: torch.Tensor, n: int) -> torch.Tensor:
    """First n coefficients of 1 / d(z) as the first column of the inverse of the lower-triangular
    Toeplitz matrix T[i, j] = d[i - j]: one solve. d (..., m) -> (..., n)."""
    dn = d[..., :n]
    if dn.shape[-1] < n:
        dn = nn.functional.pad(dn, (0, n - dn.shape[-1]))
    i = torch.arange(n, device=d.device)
    lag = i[:, None] - i[None, :]
    T = dn[..., lag.clamp_min(0)] * (lag >= 0)
    e0 = torch.zeros(n, 1, dtype=d.dtype, device=d.device)
    e0[0] = 1
    return torch.linalg.solve_triangular(T, e0.expand(*T.shape[:-1], 1), upper=False)[..., 0]


def series_inverse(d: torch.Tensor, n: int) -> torch.Tensor:
    """First n coefficients of the power series 1 / d(z), by Newton's iteration (FFT products).

    Args: d (..., m) with d[..., 0] != 0; n >= 1. Returns (..., n).
    The first terms come from one triangular solve; each Newton step then doubles the number of
    exact coefficients and keeps the ones already found, so the low-order terms are not
    recomputed (and not re-rounded).
    """
    k = min(n, _DIRECT_TERMS)
    g = _series_inverse_direct(d, k)
    while k < n:
        k2 = min(2 * k, n)
        e = polymul(d[..., :k2], g, k2)  # = 1 + z^k e_hi(z) + O(z^k2)
        g = torch.cat([g, -polymul(g, e[..., k:k2], k2 - k)], dim=-1)
        k = k2
    return g


def l1_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / ||x||_1 over the last axis (the official 'norm_order=1'); (..., N) -> (..., N)."""
    return x / x.abs().sum(-1, keepdim=True).clamp_min(eps)


def companion_matrix(a: torch.Tensor) -> torch.Tensor:
    """Dense A = S + a e_N^T (for tests and small-scale inspection). a (..., N) -> (..., N, N)."""
    N = a.shape[-1]
    A = torch.zeros(*a.shape, N, dtype=a.dtype, device=a.device)
    A[..., 1:, :-1] = torch.eye(N - 1, dtype=a.dtype, device=a.device)
    A[..., :, -1] = A[..., :, -1] + a
    return A


def _denominator(a: torch.Tensor) -> torch.Tensor:
    """Den(z) = det(I - zA) = 1 - Σ_m a_{N-m} z^m: (..., N) -> (..., N + 1)."""
    one = torch.ones_like(a[..., :1])
    return torch.cat([one, -a.flip(-1)], dim=-1)


def inverse_denominator(a: torch.Tensor, n: int) -> torch.Tensor:
    """First n coefficients of 1 / det(I - zA) for A = S + a e_N^T: (H, N) -> (H, n).

    Shared by :func:`companion_kernel` and :func:`companion_state` (pass it as ``inv``), so a
    layer that needs both computes the Newton iteration once."""
    return series_inverse(_denominator(a), n)


def companion_kernel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, L: int,
                     inv: torch.Tensor | None = None) -> torch.Tensor:
    """K[l] = c^T A^l b, l < L, for A = S + a e_N^T, in O(N log N + L log L).

    Args: a, b (H, N) (a already normalised if wanted); c (..., H, N): leading dims give several
    readouts of the same SSM at the cost of one denominator; L >= 1; inv: optional
    ``inverse_denominator(a, n)`` with n >= L.
    Returns: K (..., H, L).
    """
    den = _denominator(a)
    cb, ca = correlate(c, b), correlate(c, a)
    num = polymul(cb, den)  # (..., H, 2N)
    num = num + nn.functional.pad(polymul(ca, b.flip(-1)), (1, 0))
    inv = series_inverse(den, L) if inv is None else inv[..., :L]
    return polymul(num, inv, L)


def companion_state(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor, inv: torch.Tensor | None = None) -> torch.Tensor:
    """Final state x_{L-1} = Σ_i A^{L-1-i} b u_i of the recurrence (zero initial state).

    A acts on coefficient vectors as multiplication by x modulo the characteristic polynomial
    χ(x) = x^N - Σ_j a_j x^j, so x_{L-1} = (Σ_i u_i x^{L-1-i}) b(x) mod χ(x): one FFT product and
    one fast polynomial division (quotient from a reversed power-series division by Den).
    Args: a, b (H, N); u (B, H, L); inv: optional ``inverse_denominator(a, n)`` with n >= L - 1.
    Returns: (B, H, N).
    """
    N = a.shape[-1]
    f = polymul(u.flip(-1), b)  # (B, H, L + N - 1)
    n = f.shape[-1]
    if n <= N:
        return nn.functional.pad(f, (0, N - n))
    nq = n - N
    inv = series_inverse(_denominator(a), nq) if inv is None else inv[..., :nq]
    q = polymul(f.flip(-1)[..., :nq], inv, nq).flip(-1)
    chi = torch.cat([-a, torch.ones_like(a[..., :1])], dim=-1)
    return f[..., :N] - polymul(q, chi, N)


# ----------------------------------------------------------------------------------------------


def _heads_to_channels(t: torch.Tensor, d_model: int) -> torch.Tensor:
    """(n_heads, ...) -> (d_model, ...): head h serves a contiguous block of d_model/n_heads channels."""
    return t.repeat_interleave(d_model // t.shape[0], dim=0)


class CompanionSSM(nn.Module):
    """Bank of companion SSM heads over d_model channels, with a per-channel skip D.

    Head h (of n_heads) is shared by channels [h*r, (h+1)*r), r = d_model // n_heads; with
    n_heads = d_model (the official default) every channel has its own SSM.

    Args:
        d_model: channels H.
        n_heads: number of distinct SSMs (divides d_model).
        state_dim: N.
        skip: learn the D u term (official: on in encoder layers).
        normalize: divide a by its L1 norm (official norm_order=1).
    Shapes: forward u (B, H, L) -> y (B, H, L); step u_t (B, H), state (B, H, N).
    """

    def __init__(self, d_model: int, n_heads: int, state_dim: int, skip: bool = True, normalize: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        self.d_model, self.n_heads, self.state_dim, self.normalize = d_model, n_heads, state_dim, normalize
        # official init: a, b, c ~ N(0, 1) ('kernel_init: normal'), skip ~ N(0, 1)
        self.a = nn.Parameter(torch.randn(n_heads, state_dim))
        self.b = nn.Parameter(torch.randn(n_heads, state_dim))
        self.c = nn.Parameter(torch.randn(n_heads, state_dim))
        self.D = nn.Parameter(torch.randn(d_model)) if skip else None

    def abc(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (normalised) last column a and B, C, each (n_heads, N)."""
        a = l1_normalize(self.a) if self.normalize else self.a
        return a, self.b, self.c

    def kernel(self, L: int) -> torch.Tensor:
        """K (n_heads, L) with K[h, l] = C_h A_h^l B_h."""
        return companion_kernel(*self.abc(), L)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, L) -> y (B, H, L): causal conv with the heads' kernels (+ D u)."""
        k = _heads_to_channels(self.kernel(u.shape[-1]), self.d_model).to(u.dtype)
        return fftconv(u, k, self.D)

    def initial_state(self, batch: int, dtype=None, device=None) -> torch.Tensor:
        """Zero state (B, H, N)."""
        return torch.zeros(batch, self.d_model, self.state_dim, dtype=dtype or self.a.dtype, device=device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: x <- A x + B u, y = C x (+ D u). u (B, H), state (B, H, N)."""
        a, b, c = (_heads_to_channels(t, self.d_model) for t in self.abc())
        # A x = shift(x) + a * x[N-1]: O(N), no dense A
        shifted = nn.functional.pad(state[..., :-1], (1, 0))
        state = shifted + a * state[..., -1:] + b * u[..., None]
        y = (c * state).sum(-1)
        if self.D is not None:
            y = y + self.D * u
        return y, state
