"""Transform Once (T1) frequency-domain blocks (Poli et al. 2022, "Transform Once: Efficient
Operator Learning in Frequency Domain").

A T1 model transforms its input once (rfft2), keeps a reduced set of low modes, runs every block
on those modes and transforms back once at the end (or never: the loss can be taken on the
spectrum). Blocks here work on the retained spectrum in a *modes-major* layout
z (M1, M2, B, W): M1 = 2 m1 rows (positive then negative first-axis frequencies; m1 rows for the cosine
transform, whose coefficients and weights are real), M2 = m2 columns,
batch B, channels W. In that layout the per-mode channel mixing is one batched matmul over the
M1 * M2 modes with no transposes, which is what the block spends most of its arithmetic on.

    z <- z + mix_modes(act(mix_channels(z)))

- ``mix_channels``: a complex W x W matrix per retained mode (the FNO weight, with no FFT around it);
- ``act``: a pointwise nonlinearity on the coefficients, ``"gelu"`` on real and imaginary parts
  separately, ``"tanh"`` likewise, or ``"sin"`` (complex sine);
- ``mix_modes``: dense complex mixing along each mode axis (M1 x M1 and M2 x M2, one matrix per
  channel), the paper's "spatial mixing": pointwise products in space are convolutions in frequency,
  so without it nothing in a block couples different modes.
- ``quadratic`` (optional, ``product`` > 0; not in the paper): z + ... + Q(A z * B z), the product of two
  per-mode projections of z as fields, i.e. the convolution of their retained spectra, computed exactly
  on a small alias-free grid. It gives a block the bilinear mode coupling of advection, which the
  per-coefficient activation and linear mode mixing can only approximate (bench/README.md, T1 section).

Initialization (``init``):
- ``"vp"``: the paper's variance-preserving scheme for reduced-order layers. With N grid points,
  fan-in W and M = M1 * M2 retained half-spectrum modes, E|w|^2 = N / (2 W M), so that "transform,
  weight, truncate, inverse" keeps the variance of a white field (the factor 2 counts the conjugate
  half of the spectrum). It amplifies the retained coefficients by sqrt(N / 2M) per block; that is
  the point for one reduced-order layer on white inputs, and it is what the paper uses for direct
  (one-call) operators.
- ``"fan_in"``: E|w|^2 = 1 / W, variance preserving for the coefficients themselves (no truncation
  compensation: inside a T1 model the blocks never see the discarded modes again). A stack of
  residual blocks then stays O(1) on smooth fields, which matters for time steppers whose output is
  fed back many times (measured: vp diverges in a 10-step rollout, see bench/results/pde_ns_h100.json).
- ``"fno"``: 1 / W^2, FNO's scale.
Mode-mixing matrices start at the identity plus a small complex perturbation, so a block starts as
"channel mixing + activation" and learns the coupling; the paper draws them at the fan-in scale.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from tsmodels.errors import UserInputError


_ACTS = {"gelu": nn.functional.gelu, "tanh": torch.tanh, "sin": torch.sin, "identity": lambda t: t}


def complex_act(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Nonlinearity on coefficients: ``"gelu"``/``"tanh"`` (split real/imag), ``"sin"`` (complex sine),
    ``"identity"``. z (...) complex (or real: the plain function) -> same shape."""
    if kind not in _ACTS:
        raise ValueError(f"unknown activation {kind!r}: use gelu, tanh, sin or identity")
    if z.is_complex() and kind in ("gelu", "tanh"):
        # on the (..., 2) real view: one kernel, no copies of the real and imaginary parts
        return torch.view_as_complex(_ACTS[kind](torch.view_as_real(z)))
    return _ACTS[kind](z)


def real_form(w: torch.Tensor) -> torch.Tensor:
    """A complex (or real) weight w (K, N) as the real matrix (2K, 2N) that :func:`complex_linear` multiplies
    by: rows (k, re/im of the input), columns (n, re/im of the output), the block [[wr, wi], [-wi, wr]]."""
    K, N = w.shape
    wr, wi = (w.real, w.imag) if w.is_complex() else (w, torch.zeros_like(w))
    return torch.stack([torch.stack([wr, wi], -1), torch.stack([-wi, wr], -1)], 1).reshape(2 * K, 2 * N)


def complex_linear(z: torch.Tensor, w_real: torch.Tensor) -> torch.Tensor:
    """z @ w for complex z (..., K), with w given by ``w_real = real_form(w)`` (2K, 2N) -> (..., N) complex:
    one real matmul on the interleaved real view of z (no copy of z when its last axis is contiguous).

    Why not ``z @ w``: for the weight gradient cuBLAS's complex GEMM sums over all rows (retained modes
    times batch: 5,760 for a T1 at 64 x 64, batch 20) with a 2-block kernel: 0.46 ms per call on an H200,
    43% of a T1 training step. The real GEMM on the same numbers splits that sum across the GPU.
    """
    K2, N2 = w_real.shape
    y = torch.view_as_real(z).reshape(*z.shape[:-1], K2) @ w_real
    return torch.view_as_complex(y.view(*z.shape[:-1], N2 // 2, 2))


@functools.lru_cache(maxsize=32)
def cosine_basis(n: int, m: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first m terms of the cosine series on n cell-centred points t_j = (j + 1/2) / n of [0, 1]:
    analysis A (n, m) and synthesis S (m, n), so that a = x @ A are the coefficients of
    x(t) = sum_k a_k cos(pi k t) and x = a @ S (DCT-II / DCT-III pair, exact for m = n and for fields
    made of the first m terms). Coefficients of a band-limited field do not depend on n.
    Cached per (n, m, device): a rollout encodes every batch and should not rebuild them."""
    j = torch.arange(n, dtype=torch.float64) + 0.5
    k = torch.arange(m, dtype=torch.float64)
    cos = torch.cos(math.pi * j[:, None] * k[None, :] / n)  # (n, m)
    w = torch.full((m,), 2.0 / n, dtype=torch.float64)
    w[0] = 1.0 / n
    return (cos * w).float().to(device), cos.t().contiguous().float().to(device)


def vp_scale(signal_size: int, fan_in: int, n_modes: int) -> float:
    """Standard deviation |w| of the paper's variance-preserving init for a reduced-order layer that keeps
    ``n_modes`` half-spectrum modes of a ``signal_size``-point real signal: sqrt(N / (2 fan_in M))."""
    return math.sqrt(signal_size / (2.0 * fan_in * n_modes))


def init_std(init: str, fan_in: int, signal_size: int, n_modes: int) -> float:
    """Std of a channel-mixing weight for ``init`` in {"vp", "fan_in", "fno"} (see the module docstring)."""
    if init == "vp":
        return vp_scale(signal_size, fan_in, n_modes)
    if init == "fan_in":
        return 1.0 / math.sqrt(fan_in)
    if init == "fno":
        return 1.0 / (fan_in * fan_in)
    raise ValueError(f"unknown init {init!r}: use vp, fan_in or fno")


def crandn(*shape: int, std: float) -> torch.Tensor:
    """Complex normal tensor with E|w|^2 = std^2 (real and imaginary parts each std^2 / 2)."""
    return std * torch.randn(*shape, dtype=torch.cfloat)


def rrandn(*shape: int, std: float) -> torch.Tensor:
    """Real normal tensor with E w^2 = std^2 (:func:`crandn`'s real counterpart)."""
    return std * torch.randn(*shape)


class T1Block2d(nn.Module):
    """One T1 block on retained modes, modes-major layout: z (M1, M2, B, W) complex (real with ``real``) -> same.

    Args:
        width: channels W.
        modes1, modes2: retained frequencies (M1 = 2 modes1 rows for the DFT, modes1 with ``real``; M2 = modes2 columns).
        signal_size: grid points N = X * Y of the training resolution (for the vp init).
        act: ``"gelu"`` | ``"tanh"`` | ``"sin"`` | ``"identity"``.
        mode_mixing: mix along the mode axes after the activation (the paper's spatial mixing).
        residual: add the block input (z + f(z)).
        init: ``"vp"`` | ``"fan_in"`` | ``"fno"`` for the channel weights.
        gain: None, or the initial value of a learned scalar multiplying the block's branch
            (z + gain * f(z)): a small value starts a deep stack near the identity (ReZero-style).
        real: real coefficients and weights (the cosine transform): M1 = modes1 rows (no negative
            frequencies) and the vp init without the conjugate-half factor.
        product: P > 0 adds a quadratic branch (see :meth:`quadratic`): two per-mode projections W -> P of z,
            multiplied as fields, projected back P -> W per mode. 0: none (the paper's block).
        coef_scale: the constant the model multiplies its coefficients by (the product divides by it once,
            so the branch's output has the units of z).
    """

    def __init__(self, width: int, modes1: int, modes2: int, signal_size: int, act: str = "gelu",
                 mode_mixing: bool = True, residual: bool = True, init: str = "fan_in", gain: float | None = None,
                 real: bool = False, product: int = 0, coef_scale: float = 1.0):
        super().__init__()
        if product and real:
            raise UserInputError("the quadratic branch (product) needs the Fourier transform",
                                 "use transform=dft or product=0")
        self.width, self.modes1, self.modes2 = width, modes1, modes2
        self.act, self.residual, self.mode_mixing = act, residual, mode_mixing
        M1, M2 = (modes1 if real else 2 * modes1), modes2
        self.gain = None if gain is None else nn.Parameter(torch.tensor(float(gain)))
        # real vp: no conjugate half, so E w^2 = N / (W M) instead of N / (2 W M)
        std = init_std(init, width, signal_size, M1 * M2) * (math.sqrt(2.0) if real and init == "vp" else 1.0)
        randn = rrandn if real else crandn
        dtype = torch.float32 if real else torch.cfloat
        # (mode, in, out): one W x W matrix per retained mode, laid out for torch.bmm
        self.channel = nn.Parameter(randn(M1 * M2, width, width, std=std))
        if mode_mixing:
            # (channel, in mode, out mode), near the identity
            self.mix1 = nn.Parameter(torch.eye(M1, dtype=dtype).expand(width, M1, M1)
                                     + randn(width, M1, M1, std=0.1 / math.sqrt(M1)))
            self.mix2 = nn.Parameter(torch.eye(M2, dtype=dtype).expand(width, M2, M2)
                                     + randn(width, M2, M2, std=0.1 / math.sqrt(M2)))
        self.product, self.coef_scale = product, coef_scale
        if product:
            # (mode, W, 2P): both factors' projections in one bmm; (mode, P, W) back, small so the branch starts small
            self.prod_in = nn.Parameter(crandn(M1 * M2, width, 2 * product, std=1.0 / math.sqrt(width)))
            self.prod_out = nn.Parameter(crandn(M1 * M2, product, width, std=0.1 / math.sqrt(product)))
            # factors hold |k| <= m per axis (the conjugate half of the rfft2 columns reaches +m), products
            # |k| <= 2m; on more than 3m points no alias lands on a retained mode
            self.product_grid = 3 * max(modes1, modes2) + 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (M1, M2, B, W) complex -> (M1, M2, B, W)."""
        M1, M2, B, W = z.shape
        y = torch.bmm(z.reshape(M1 * M2, B, W), self.channel)
        y = complex_act(y, self.act)
        if self.mode_mixing:
            # per-channel matmuls along each mode axis: channels lead, the mixed axis last
            y = y.view(M1, M2, B, W).permute(3, 1, 2, 0).reshape(W, M2 * B, M1)
            y = torch.bmm(y, self.mix1).view(W, M2, B, M1).transpose(1, 3).reshape(W, M1 * B, M2)
            y = torch.bmm(y, self.mix2).view(W, M1, B, M2).permute(1, 3, 2, 0)
        else:
            y = y.view(M1, M2, B, W)
        if self.product:
            y = y + self.quadratic(z)
        if self.gain is not None:
            y = self.gain * y
        return z + y if self.residual else y

    def quadratic(self, z: torch.Tensor) -> torch.Tensor:
        """The product branch: z (M1, M2, B, W) complex -> (M1, M2, B, W), sum_p Q_p[k] (a_p * b_p)^[k] with
        a = A[k] z[k], b = B[k] z[k] per retained mode k.

        Why: the per-coefficient activation never couples modes, and the advection term of Navier-Stokes,
        u . grad(w), is a product of two fields (u and grad w are per-mode linear maps of w: exactly what A
        and B can represent), i.e. a convolution of their spectra. The convolution of the retained spectra
        is computed as a DFT convolution: both spectra synthesized on a small alias-free grid (> 3 m points
        per axis, not the data's grid), multiplied there, analysed back onto the retained modes only.
        ``kernels.fftconv`` does not apply: it convolves a signal with a fixed per-channel kernel, here both
        factors depend on the input. The grid is small enough (37 x 37 for 12 modes) that separable DFT
        matmuls beat torch.fft's zero-pad / transform / gather sequence (measured: 0.306 vs 0.350 s per epoch
        on the NS benchmark, whose steps are latency-bound).
        """
        M1, M2, B, W = z.shape
        P = self.product
        n = self.product_grid
        ex, ey, fx, fy = product_dft(M1 // 2, M2, n, self.coef_scale, z.device)
        ab = torch.bmm(z.reshape(M1 * M2, B, W), self.prod_in).view(M1, M2, B * 2 * P)
        # synthesis: columns (the C2R weights are in ey), then rows; the field is the real part
        f = (ex @ torch.matmul(ey, ab).view(M1, n * B * 2 * P)).real.view(n, n, B, 2, P)
        a, b = f.unbind(3)
        # analysis of the real product: columns as one real GEMM (cos and sin rows), then rows (complex)
        h = torch.matmul(fy, (a * b).view(n, n, B * P)).view(n, 2, M2, B * P)
        zp = (fx @ torch.complex(h[:, 0], h[:, 1]).view(n, M2 * B * P)).view(M1 * M2, B, P)
        return torch.bmm(zp, self.prod_out).view(M1, M2, B, W)


@functools.lru_cache(maxsize=16)
def product_dft(m1: int, m2: int, n: int, scale: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """DFT matrices of the quadratic branch on an n x n grid for retained rows [0, m1) then [-m1, 0) and columns
    [0, m2): row synthesis ex (n, 2 m1) complex, column synthesis ey (n, m2) complex with the weights of a real
    field's half spectrum (1 for column 0, 2 for the others: the field is the real part), row analysis fx
    (2 m1, n) complex and column analysis fy (2 m2, n) real (rows: cos then -sin), norm="forward" and 1 / scale
    folded in. Cached per shape and device."""
    kx = torch.cat([torch.arange(m1), torch.arange(-m1, 0)]).double()
    ky = torch.arange(m2).double()
    x = torch.arange(n).double() * (2 * math.pi / n)
    ex = torch.polar(torch.ones(n, 2 * m1, dtype=torch.float64), x[:, None] * kx[None, :])
    wy = torch.full((m2,), 2.0, dtype=torch.float64)
    wy[0] = 1.0
    ey = torch.polar(wy.expand(n, m2), x[:, None] * ky[None, :])
    fx = ex.conj().t() / n
    phase = ky[:, None] * x[None, :]
    fy = torch.cat([torch.cos(phase), -torch.sin(phase)]) / (n * scale)
    return ex.to(device, torch.cfloat), ey.to(device, torch.cfloat), fx.to(device, torch.cfloat), fy.to(device, torch.float32)
