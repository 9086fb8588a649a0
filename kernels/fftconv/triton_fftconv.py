"""Fused Triton FFT convolution (1-D long conv, 2-D conv) with DFTs done as matrix products.

The idea is FlashFFTConv's (Fu et al. 2023, HazyResearch/flash-fft-conv): a length-n FFT with
n = N1 * N2 is a Cooley-Tukey / Monarch product of two small DFT matrices and a twiddle, so it
runs on the tensor cores (``tl.dot``) with the whole sequence held on-chip. Our kernel, per
(batch, channel) row, in one pass over HBM:

    A[r, c]  = u[N2 r + c]                     (zero padded to n inside: masked load)
    B        = F_N1 @ A            (real input: 2 real products)
    B       *= T,  T[k1, c] = w_n^(k1 c)       (twiddle)
    X        = B @ F_N2            X[k1, k2] = FFT(u)[k1 + N1 k2]   (4 real products)
    X       *= Khat                (the kernel's spectrum, pre-permuted to the same order, / n)
    Y        = X @ conj(F_N2);  Y *= conj(T);  y = Re(conj(F_N1) @ Y)   (4 + 2 products)
    y[:L] (+ D u) -> HBM

A 2-D transform is the same with no twiddle (rows by F_N1, columns by F_N2), so the same
kernel serves ``fftconv_nd`` for 2-D sizes that fit.

Everything the kernel does is a circular convolution of length n followed by "keep the first L
outputs"; causal/centred kernels and linear/circular boundaries are all expressed in the
spectrum (zero padding to n >= L + L' - 1, a circular roll by the centre for non-causal), which
is computed once per call by a small Triton kernel with the same DFT products (it is (H, n),
small next to u for B > 1). One autograd Function holds both kernels (each Function call costs
host time that short convolutions feel, bench/README.md); its backward:

    du    = Re(iDFT(DFT(g) * conj(Khat)))[:L] + D g     (the same kernel with CONJ=True)
    dKhat = sum_b conj(DFT(u_b)) * DFT(g_b)             (second kernel, loops over b)
    dk    = the spectrum's adjoint (inverse DFT, real part, gathered into k's shape) of dKhat
    dD    = sum_{b,t} g u

Precision: fp32 inputs use tf32 tensor-core products (about 2e-3 relative error measured on
an H100, bench/README.md); bf16 inputs use bf16 operands with fp32 accumulation. Longer 1-D
inputs (fp32 from n = 4096) go to the three-level kernel of :mod:`.triton_long`; fp64 inputs and
other shapes that do not fit on-chip go to the torch.fft path (the reference), as ``fftconv``
documents.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from .reference import _check_kernel, fftconv_nd_ref, fftconv_ref

# Largest padded transform n = N1 * N2 given to the fused kernel, per input dtype. Measured on an
# H100 (bench/README.md, B=8, H=768): with n = 4096 (L = 2K) the fused path beat torch.fft in
# fp32 (1.22x fwd, 1.14x fwd+bwd) and bf16 (2.17x, 1.78x); at n = 8192 (L = 4K) it lost in
# both (fp32 0.45-0.58x: register spills of the 128x64 split; bf16 0.92x fwd, 0.68x fwd+bwd).
# Larger transforms take the three-level kernel of triton_long (which also takes fp32 n = 4096,
# where it measured faster on the H200) or torch.fft.
MAX_FUSED_N = {torch.float32: 4096, torch.bfloat16: 4096, torch.float16: 4096}
# tl.dot needs every matrix dimension >= 16
_MIN_SIDE = 16
# fp32 operand mode for tl.dot: "tf32" (fast) or "tf32x3" (about fp32 accuracy, ~3x the products)
FP32_PRECISION = "tf32"


def _prec() -> str:
    """The PREC constexpr: "emulate" under TRITON_INTERPRET=1 (see _dot), else FP32_PRECISION."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "emulate"
    return os.environ.get("TSMODELS_FFTCONV_FP32", FP32_PRECISION)


@triton.jit
def _dot(a, b, BF16: tl.constexpr, PREC: tl.constexpr):
    if BF16:
        if PREC == "emulate":
            # the CPU interpreter mis-multiplies bf16 operands: round them, multiply in fp32
            return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32))
        else:
            return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif PREC == "fp16":
        # fp16 operands (the three-level forward, FP16_DOTS: its values are scaled into fp16's range)
        return tl.dot(a.to(tl.float16), b.to(tl.float16))
    elif PREC == "fp16_emulate":
        return tl.dot(a.to(tl.float16).to(tl.float32), b.to(tl.float16).to(tl.float32))
    elif PREC == "emulate":
        return tl.dot(a, b)
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _sq(ptr, N: tl.constexpr):
    """An (N, N) DFT matrix, loaded where it is used: holding it across stages costs registers (spills)."""
    i = tl.arange(0, N)
    return tl.load(ptr + i[:, None] * N + i[None, :])


@triton.jit
def _tw(ptr, ROWS: tl.constexpr, A: tl.constexpr, N2: tl.constexpr, COLS: tl.constexpr, T_ROWS: tl.constexpr):
    """The twiddle T[k1, c] (N1, N2 row-major) as a (ROWS, COLS) tile repeating every A rows.

    T_ROWS: the tile's row index (mod A) is k1 (the (R*N1, N2) layout), else it is c ((R*N2, N1)).
    """
    a = (tl.arange(0, ROWS) % A)[:, None]
    j = tl.arange(0, COLS)[None, :]
    if T_ROWS:
        return tl.load(ptr + a * N2 + j)
    else:
        return tl.load(ptr + j * N2 + a)


@triton.jit
def _dft_rows(p, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
              R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr,
              TWIDDLE: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Forward DFT of R real rows given transposed, P[(r, c), n1] = A_r[n1, c] (R*N2, N1).

    Returns X (R*N1, N2) complex with X[(r, k1), k2] = DFT(A_r) at (k1, k2).
    Both contractions are right-multiplications of a tall (R rows stacked) matrix, so one
    tl.dot serves all R rows; the permute between them is an on-chip layout change.
    """
    btr = _dot(p, _sq(f1r_ptr, N1), BF16, PREC)
    bti = _dot(p, _sq(f1i_ptr, N1), BF16, PREC)
    if TWIDDLE:
        ttr = _tw(tr_ptr, R * N2, N2, N2, N1, False)
        tti = _tw(ti_ptr, R * N2, N2, N2, N1, False)
        btr, bti = btr * ttr - bti * tti, btr * tti + bti * ttr
    br = tl.reshape(tl.permute(tl.reshape(btr, (R, N2, N1)), (0, 2, 1)), (R * N1, N2))
    bi = tl.reshape(tl.permute(tl.reshape(bti, (R, N2, N1)), (0, 2, 1)), (R * N1, N2))
    f2r = _sq(f2r_ptr, N2)
    f2i = _sq(f2i_ptr, N2)
    xr = _dot(br, f2r, BF16, PREC) - _dot(bi, f2i, BF16, PREC)
    xi = _dot(br, f2i, BF16, PREC) + _dot(bi, f2r, BF16, PREC)
    return xr, xi


@triton.jit
def _idft_rows(xr, xi, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
               R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr,
               TWIDDLE: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Real part of the unnormalized inverse of _dft_rows: X (R*N1, N2) -> transposed rows (R*N2, N1)."""
    f2r = _sq(f2r_ptr, N2)
    f2i = _sq(f2i_ptr, N2)
    yr = _dot(xr, f2r, BF16, PREC) + _dot(xi, f2i, BF16, PREC)
    yi = _dot(xi, f2r, BF16, PREC) - _dot(xr, f2i, BF16, PREC)
    if TWIDDLE:
        tr = _tw(tr_ptr, R * N1, N1, N2, N2, True)
        ti = _tw(ti_ptr, R * N1, N1, N2, N2, True)
        yr, yi = yr * tr + yi * ti, yi * tr - yr * ti
    ytr = tl.reshape(tl.permute(tl.reshape(yr, (R, N1, N2)), (0, 2, 1)), (R * N2, N1))
    yti = tl.reshape(tl.permute(tl.reshape(yi, (R, N1, N2)), (0, 2, 1)), (R * N2, N1))
    return _dot(ytr, _sq(f1r_ptr, N1), BF16, PREC) + _dot(yti, _sq(f1i_ptr, N1), BF16, PREC)


@triton.jit
def _rows_offsets(b0, h, B, H, R_LIM, C_LIM, STRIDE_R, TOT,
                  R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr):
    """Addresses and mask of the transposed tile P[(r, c), n1] = u[b0 + r, h][n1 * STRIDE_R + c]."""
    rho = tl.arange(0, R * N2)
    r = (rho // N2)[:, None]
    c = (rho % N2)[:, None]
    n1 = tl.arange(0, N1)[None, :]
    b = b0 + r
    inner = n1 * STRIDE_R + c
    off = (b * H + h).to(tl.int64) * TOT + inner
    mask = (b < B) & (n1 < R_LIM) & (c < C_LIM) & (inner < TOT)
    return off, mask


@triton.jit
def _rows_offsets_nat(b0, h, B, H, R_LIM, C_LIM, STRIDE_R, TOT,
                      R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr):
    """Addresses and mask of the natural tile A[(r, n1), c] = u[b0 + r, h][n1 * STRIDE_R + c] (coalesced)."""
    rho = tl.arange(0, R * N1)
    r = (rho // N1)[:, None]
    n1 = (rho % N1)[:, None]
    c = tl.arange(0, N2)[None, :]
    b = b0 + r
    inner = n1 * STRIDE_R + c
    off = (b * H + h).to(tl.int64) * TOT + inner
    mask = (b < B) & (n1 < R_LIM) & (c < C_LIM) & (inner < TOT)
    return off, mask


@triton.jit
def _fftconv_fwd_kernel(
    u_ptr, k_ptr, d_ptr, y_ptr,
    f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
    B, H, R_LIM, C_LIM, STRIDE_R, TOT, INV_N,
    KS1: tl.constexpr, KS2: tl.constexpr, R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, TWIDDLE: tl.constexpr, CONJ: tl.constexpr,
    HAS_D: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr, COALESCE: tl.constexpr,
):
    # one channel, R batch rows: the channel's spectrum and the DFT matrices are read once for R rows
    h = tl.program_id(0)
    b0 = tl.program_id(1) * R
    if COALESCE:
        # read rows in order and transpose on-chip, rather than a strided (uncoalesced) read
        off, mask = _rows_offsets_nat(b0, h, B, H, R_LIM, C_LIM, STRIDE_R, TOT, R, N1, N2)
        a = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
        p = tl.reshape(tl.permute(tl.reshape(a, (R, N1, N2)), (0, 2, 1)), (R * N2, N1))
    else:
        off, mask = _rows_offsets(b0, h, B, H, R_LIM, C_LIM, STRIDE_R, TOT, R, N1, N2)
        p = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
    xr, xi = _dft_rows(p, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, BF16, PREC)
    k1 = (tl.arange(0, R * N1) % N1)[:, None]
    # the spectrum as torch.fft leaves it: (re, im) pairs at frequency k1*KS1 + k2*KS2
    koff = h.to(tl.int64) * (2 * N1 * N2) + 2 * (k1 * KS1 + tl.arange(0, N2)[None, :] * KS2)
    kr = tl.load(k_ptr + koff) * INV_N
    ki = tl.load(k_ptr + koff + 1) * INV_N
    if CONJ:
        ki = -ki
    xr, xi = xr * kr - xi * ki, xr * ki + xi * kr
    y = _idft_rows(xr, xi, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, BF16, PREC)
    if HAS_D:
        y += tl.load(d_ptr + h).to(tl.float32) * p
    if COALESCE:
        y = tl.reshape(tl.permute(tl.reshape(y, (R, N2, N1)), (0, 2, 1)), (R * N1, N2))
    tl.store(y_ptr + off, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fftconv_bwd_k_kernel(
    u_ptr, g_ptr, dk_ptr, dd_ptr,
    f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
    B, H, G_PER, R_LIM, C_LIM, STRIDE_R, TOT, INV_N,
    KS1: tl.constexpr, KS2: tl.constexpr, R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, TWIDDLE: tl.constexpr,
    BF16: tl.constexpr, PREC: tl.constexpr,
):
    """Partial sums over G_PER groups of R batch rows: dK = sum_b conj(U_b) G_b, dD = sum g u."""
    h = tl.program_id(0)
    split = tl.program_id(1)
    accr = tl.zeros((R * N1, N2), dtype=tl.float32)
    acci = tl.zeros((R * N1, N2), dtype=tl.float32)
    accd = tl.zeros((R * N2, N1), dtype=tl.float32)
    for i in range(0, G_PER):
        b0 = (split * G_PER + i) * R
        off, mask = _rows_offsets(b0, h, B, H, R_LIM, C_LIM, STRIDE_R, TOT, R, N1, N2)
        p = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
        q = tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
        ur, ui = _dft_rows(p, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, BF16, PREC)
        gr, gi = _dft_rows(q, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, BF16, PREC)
        # conj(U) G
        accr += ur * gr + ui * gi
        acci += ur * gi - ui * gr
        accd += p * q
    dr = tl.sum(tl.reshape(accr, (R, N1, N2)), axis=0)
    di = tl.sum(tl.reshape(acci, (R, N1, N2)), axis=0)
    i1 = tl.arange(0, N1)[:, None]
    i2 = tl.arange(0, N2)[None, :]
    koff = (split * H + h).to(tl.int64) * (2 * N1 * N2) + 2 * (i1 * KS1 + i2 * KS2)
    tl.store(dk_ptr + koff, dr * INV_N)
    tl.store(dk_ptr + koff + 1, di * INV_N)
    tl.store(dd_ptr + split * H + h, tl.sum(tl.sum(accd, axis=1), axis=0))


@triton.jit
def _k_addr(h, n1, c, H, LK1, LK2, SH1, SH2, N1: tl.constexpr, N2: tl.constexpr, TWO_D: tl.constexpr):
    """Address in k (H, *Sk) of the effective kernel at tile position (n1, c), and its mask.

    The effective kernel is k zero padded to n and rolled back by SH (the centre when not causal):
    k_eff[m] = k[(m + SH) mod n] where that index is inside k.
    """
    if TWO_D:
        j1 = (n1 + SH1) % N1
        j2 = (c + SH2) % N2
        off = h.to(tl.int64) * (LK1 * LK2) + j1 * LK2 + j2
        mask = (h < H) & (j1 < LK1) & (j2 < LK2)
    else:
        j = (n1 * N2 + c + SH1) % (N1 * N2)
        off = h.to(tl.int64) * LK1 + j
        mask = (h < H) & (j < LK1)
    return off, mask


@triton.jit
def _spectrum_kernel(
    k_ptr, out_ptr, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
    H, LK1, LK2, SH1, SH2,
    KS1: tl.constexpr, KS2: tl.constexpr,
    R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, TWIDDLE: tl.constexpr, TWO_D: tl.constexpr,
    PREC: tl.constexpr,
):
    """Unnormalized DFT of R channels' effective kernels -> out (H, n, 2), frequency (k1, k2) at k1*KS1 + k2*KS2."""
    h0 = tl.program_id(0) * R
    rho = tl.arange(0, R * N2)
    h = h0 + (rho // N2)[:, None]
    c = (rho % N2)[:, None]
    n1 = tl.arange(0, N1)[None, :]
    off, mask = _k_addr(h, n1, c, H, LK1, LK2, SH1, SH2, N1, N2, TWO_D)
    p = tl.load(k_ptr + off, mask=mask, other=0.0).to(tl.float32)
    xr, xi = _dft_rows(p, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, False, PREC)
    rk = tl.arange(0, R * N1)
    ho = h0 + (rk // N1)[:, None]
    o = ho.to(tl.int64) * (2 * N1 * N2) + 2 * ((rk % N1)[:, None] * KS1 + tl.arange(0, N2)[None, :] * KS2)
    m = ho < H
    tl.store(out_ptr + o, xr, mask=m)
    tl.store(out_ptr + o + 1, xi, mask=m)


@triton.jit
def _spectrum_bwd_kernel(
    dK_ptr, dk_ptr, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr,
    H, LK1, LK2, SH1, SH2,
    KS1: tl.constexpr, KS2: tl.constexpr,
    R: tl.constexpr, N1: tl.constexpr, N2: tl.constexpr, TWIDDLE: tl.constexpr, TWO_D: tl.constexpr,
    PREC: tl.constexpr,
):
    """Adjoint of _spectrum_kernel: dk = Re(unnormalized inverse DFT of dK), gathered back into k's shape."""
    h0 = tl.program_id(0) * R
    rk = tl.arange(0, R * N1)
    hk = h0 + (rk // N1)[:, None]
    o = hk.to(tl.int64) * (2 * N1 * N2) + 2 * ((rk % N1)[:, None] * KS1 + tl.arange(0, N2)[None, :] * KS2)
    m = hk < H
    xr = tl.load(dK_ptr + o, mask=m, other=0.0)
    xi = tl.load(dK_ptr + o + 1, mask=m, other=0.0)
    y = _idft_rows(xr, xi, f1r_ptr, f1i_ptr, f2r_ptr, f2i_ptr, tr_ptr, ti_ptr, R, N1, N2, TWIDDLE, False, PREC)
    rho = tl.arange(0, R * N2)
    h = h0 + (rho // N2)[:, None]
    c = (rho % N2)[:, None]
    n1 = tl.arange(0, N1)[None, :]
    off, mask = _k_addr(h, n1, c, H, LK1, LK2, SH1, SH2, N1, N2, TWO_D)
    tl.store(dk_ptr + off, y.to(dk_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# host side

_CONSTS: dict = {}


def _dft_matrix(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    key = ("F", n, str(device))
    if key not in _CONSTS:
        j = torch.arange(n, dtype=torch.int64)
        # the exponent is reduced modulo n in integers so the angle stays exact for large n
        ang = (-2 * math.pi / n) * ((j[:, None] * j[None, :]) % n).double()
        _CONSTS[key] = (torch.cos(ang).float().to(device), torch.sin(ang).float().to(device))
    return _CONSTS[key]


def _twiddle(n1: int, n2: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    key = ("T", n1, n2, str(device))
    if key not in _CONSTS:
        n = n1 * n2
        k1 = torch.arange(n1, dtype=torch.int64)[:, None]
        c = torch.arange(n2, dtype=torch.int64)[None, :]
        ang = (-2 * math.pi / n) * ((k1 * c) % n).double()
        _CONSTS[key] = (torch.cos(ang).float().contiguous().to(device), torch.sin(ang).float().contiguous().to(device))
    return _CONSTS[key]


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _split(n: int) -> tuple[int, int]:
    """n = N1 * N2 with N1 >= N2, both powers of two, as square as possible."""
    lg = n.bit_length() - 1
    n2 = 1 << (lg // 2)
    return n // n2, n2


def _max_n(dtype) -> int:
    return MAX_FUSED_N.get(dtype, 0) if isinstance(MAX_FUSED_N, dict) else int(MAX_FUSED_N)


def plan_1d(L: int, Lk: int, dtype=torch.float32) -> tuple[int, int] | None:
    """(N1, N2) of the fused transform for a length-L input and length-Lk kernel, or None (torch.fft path)."""
    n = _pow2_at_least(max(L + Lk - 1, _MIN_SIDE * _MIN_SIDE))
    if n > _max_n(dtype):
        return None
    return _split(n)


def plan_2d(S: tuple[int, int], Sk: tuple[int, int], circular: bool, dtype=torch.float32) -> tuple[int, int] | None:
    """Padded (N1, N2) of the fused 2-D transform, or None if the shape does not fit on-chip."""
    if circular:
        n1, n2 = S
        if n1 != _pow2_at_least(n1) or n2 != _pow2_at_least(n2) or min(n1, n2) < _MIN_SIDE:
            return None
    else:
        n1 = _pow2_at_least(max(S[0] + Sk[0] - 1, _MIN_SIDE))
        n2 = _pow2_at_least(max(S[1] + Sk[1] - 1, _MIN_SIDE))
    if n1 * n2 > _max_n(dtype):
        return None
    return n1, n2


def _kgeom(kshape, causal: bool, two_d: bool) -> tuple[int, int, int, int]:
    """k's extent (lk1, lk2) and the shift (sh1, sh2) that centres a non-causal kernel."""
    if two_d:
        lk1, lk2 = kshape[1], kshape[2]
        return (lk1, lk2) + ((0, 0) if causal else ((lk1 - 1) // 2, (lk2 - 1) // 2))
    lk1 = kshape[1]
    return lk1, 1, (0 if causal else (lk1 - 1) // 2), 0


def _spectrum(k: torch.Tensor, N1: int, N2: int, causal: bool, two_d: bool) -> torch.Tensor:
    """k (H, *Sk) -> its effective kernel's unnormalized DFT, (H, N1, N2, 2) fp32 in frequency order
    (see _kstrides); not differentiable (the convolution's backward calls :func:`_spectrum_adjoint`).

    A Triton kernel with the same DFT products as the convolution (a torch.fft call here cost
    more than the whole fused convolution at short lengths).
    """
    k = k.contiguous()
    out = torch.empty(k.shape[0], N1, N2, 2, device=k.device, dtype=torch.float32)
    _launch_spectrum(_spectrum_kernel, k, out, N1, N2, k.shape, causal, two_d)
    return out


def _spectrum_adjoint(dK: torch.Tensor, kshape, kdtype, causal: bool, two_d: bool) -> torch.Tensor:
    """Gradient for k (kshape, kdtype) from the gradient dK (H, N1, N2, 2) of its spectrum: the real
    part of the inverse DFT, gathered back into k's shape."""
    dk = torch.empty(kshape, device=dK.device, dtype=kdtype)
    _launch_spectrum(_spectrum_bwd_kernel, dK.contiguous(), dk, dK.shape[1], dK.shape[2], kshape, causal, two_d)
    return dk


def _launch_spectrum(kernel, src, dst, N1: int, N2: int, kshape, causal: bool, two_d: bool) -> None:
    """Run the spectrum kernel or its adjoint from src into dst (one of them k, the other the spectrum)."""
    H, n = kshape[0], N1 * N2
    R = _rows(H, n, TILE_ELEMS)
    kernel[(triton.cdiv(H, R),)](
        src, dst, *_consts(N1, N2, not two_d, src.device), H, *_kgeom(kshape, causal, two_d),
        *_kstrides((N1, N2, not two_d)),
        R=R, N1=N1, N2=N2, TWIDDLE=not two_d, TWO_D=two_d, PREC=_prec(), num_warps=_warps(R * n),
    )


def _kstrides(geom) -> tuple[int, int]:
    """Frequency of tile position (k1, k2) is k1*KS1 + k2*KS2: k1 + N1 k2 in 1-D, row-major in 2-D.

    The spectrum buffer is kept in frequency order, the layout the H100 runs measured fastest for
    the convolution's read (run 10 vs run 15 in bench/README.md).
    """
    N1, N2, twiddle = geom[:3]
    return (1, N1) if twiddle else (N2, 1)


# values per program tile (R rows x n) in the forward / the backward (which holds two transforms);
# 4096 with 4 warps was the fastest forward at n = 2048 in the H100 sweep (bench/fftconv.py --sweep)
TILE_ELEMS = 4096
BWD_TILE_ELEMS = 4096
# kernel gradient: "triton" (fused, for n <= BWD_TILE_ELEMS) or "torch" (torch.fft of u and g)
BWD_K = "triton"


def _rows(B: int, n: int, cap: int) -> int:
    return max(1, min(_pow2_at_least(B), cap // n))


# forward kernel reads/writes rows in order and transposes on-chip (True) or reads strided (False)
COALESCE = True
# num_warps override (bench/fftconv.py --sweep sets it); None: by tile size
WARPS = None


def _warps(tile: int) -> int:
    if WARPS is not None:
        return WARPS
    return 4 if tile <= 8192 else 8


def _conv(u, k, D, geom, causal):
    """Forward without autograd: the kernel's spectrum, then the fused convolution. Returns (y, K)."""
    K = _spectrum(k, geom[0], geom[1], causal, two_d=not geom[2])
    y = torch.empty_like(u)
    _launch_fwd(u, K, D, y, geom, conj=False)
    return y, K


class _FFTConv(torch.autograd.Function):
    """u, k, D -> y through the fused kernels; geom = (N1, N2, twiddle (1-D), row limit, column limit,
    row stride, elements per (b, h) row) and causal describe the transform and k's placement."""

    @staticmethod
    def forward(ctx, u, k, D, geom, causal):
        y, K = _conv(u, k, D, geom, causal)
        ctx.save_for_backward(u, K, D)
        ctx.geom, ctx.causal, ctx.kmeta = geom, causal, (tuple(k.shape), k.dtype)
        return y

    @staticmethod
    def backward(ctx, gy):
        u, K, D = ctx.saved_tensors
        geom = ctx.geom
        N1, N2, twiddle, rlim, clim, stride, tot = geom
        n = N1 * N2
        B, H = u.shape[0], u.shape[1]
        g = gy.contiguous().to(u.dtype)
        du = dk = dD = None
        if ctx.needs_input_grad[0]:
            du = torch.empty_like(u)
            _launch_fwd(g, K, D, du, geom, conj=True)
        need_d = D is not None and ctx.needs_input_grad[2]
        if not (ctx.needs_input_grad[1] or need_d):
            return du, None, None, None, None
        if n > BWD_TILE_ELEMS or BWD_K == "torch":
            # two transforms of this size do not fit one program's shared memory: torch.fft
            dK, dD = _bwd_k_torch(u, g, geom, need_d)
        else:
            R = _rows(B, n, BWD_TILE_ELEMS)
            groups = triton.cdiv(B, R)
            # enough programs to fill the GPU: split the batch groups when there are few channels
            nsplit = max(1, min(groups, triton.cdiv(512, H)))
            g_per = triton.cdiv(groups, nsplit)
            nsplit = triton.cdiv(groups, g_per)
            pk = torch.empty((nsplit,) + tuple(K.shape), device=u.device, dtype=torch.float32)
            pdd = torch.empty(nsplit, H, device=u.device, dtype=torch.float32)
            ks1, ks2 = _kstrides(geom)
            ck = _fftconv_bwd_k_kernel[(H, nsplit)](
                u, g, pk, pdd, *_consts(N1, N2, twiddle, u.device),
                B, H, g_per, rlim, clim, stride, tot, 1.0 / n,
                KS1=ks1, KS2=ks2, R=R, N1=N1, N2=N2, TWIDDLE=twiddle,
                BF16=(u.dtype == torch.bfloat16), PREC=_prec(),
                num_warps=_warps(R * n), num_stages=1,
            )
            _record("bwd_k", N1, N2, ck)
            dK = pk.sum(0) if nsplit > 1 else pk[0]
            dD = (pdd.sum(0) if nsplit > 1 else pdd[0]) if need_d else None
        if ctx.needs_input_grad[1]:
            dk = _spectrum_adjoint(dK, *ctx.kmeta, ctx.causal, two_d=not twiddle)
        return du, dk, None if dD is None else dD.to(D.dtype), None, None


def _apply(u, k, D, geom, causal):
    """The convolution, through autograd only when a gradient is wanted (each autograd Function
    call costs host time that short convolutions feel)."""
    u = u.contiguous()
    if torch.is_grad_enabled() and (u.requires_grad or k.requires_grad or (D is not None and D.requires_grad)):
        return _FFTConv.apply(u, k, D, geom, causal)
    return _conv(u, k, D, geom, causal)[0]


def _bwd_k_torch(u, g, geom, need_d):
    """dK (as (re, im) pairs in the forward's spectrum layout) and dD through torch.fft."""
    N1, N2, twiddle = geom[:3]
    n = N1 * N2
    B, H = u.shape[:2]
    if twiddle:
        U = torch.fft.fft(u.float(), n=n)
        G = torch.fft.fft(g.float(), n=n)
        P = (torch.conj(U) * G).sum(0)
    else:
        U = torch.fft.fft2(u.float(), s=(N1, N2))
        G = torch.fft.fft2(g.float(), s=(N1, N2))
        P = (torch.conj(U) * G).sum(0)
    # the spectrum buffer is (H, N1, N2, 2) in frequency order
    dK = torch.view_as_real(P / n).reshape(H, N1, N2, 2).contiguous()
    dD = (u.float() * g.float()).sum(dim=tuple(i for i in range(u.dim()) if i != 1)) if need_d else None
    return dK, dD


def _consts(N1, N2, twiddle, device):
    """The six DFT-constant tensors a kernel takes, cached per geometry and device."""
    key = ("C", N1, N2, twiddle, device)
    c = _CONSTS.get(key)
    if c is None:
        f1r, f1i = _dft_matrix(N1, device)
        f2r, f2i = _dft_matrix(N2, device)
        # without the twiddle (2-D) the kernel ignores the last two
        tr, ti = _twiddle(N1, N2, device) if twiddle else (f1r, f1i)
        c = _CONSTS[key] = (f1r, f1i, f2r, f2i, tr, ti)
    return c


def _launch_fwd(u, K, D, y, geom, conj: bool):
    N1, N2, twiddle, rlim, clim, stride, tot = geom
    n = N1 * N2
    B, H = u.shape[0], u.shape[1]
    R = _rows(B, n, TILE_ELEMS)
    ks1, ks2 = _kstrides(geom)
    ck = _fftconv_fwd_kernel[(H, triton.cdiv(B, R))](
        u, K, D if D is not None else u, y, *_consts(N1, N2, twiddle, u.device),
        B, H, rlim, clim, stride, tot, 1.0 / n,
        KS1=ks1, KS2=ks2, R=R, N1=N1, N2=N2, TWIDDLE=twiddle, CONJ=conj, HAS_D=D is not None,
        BF16=(u.dtype == torch.bfloat16), PREC=_prec(), COALESCE=COALESCE,
        num_warps=_warps(R * n),
    )
    _record("fwd", N1, N2, ck)


# registers and spills of each compiled variant, for bench/ to report (empty under the interpreter)
COMPILE_STATS: dict = {}


def _record(name, N1, N2, ck):
    regs = getattr(ck, "n_regs", None)
    if regs is not None:
        COMPILE_STATS[f"{name}_{N1}x{N2}"] = {"n_regs": regs, "n_spills": getattr(ck, "n_spills", None)}


def _supported_dtype(u: torch.Tensor) -> bool:
    return u.dtype in (torch.float32, torch.bfloat16, torch.float16)


def fftconv_triton(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
    """Fused 1-D FFT conv: u (B, H, L), k (H, L'), D (H,) or None → (B, H, L) in u's dtype.

    Padded lengths in the range of the three-level kernel of :mod:`.triton_long` (``LONG_N``,
    per dtype) take it; shorter ones this module's one-tile kernel (up to :data:`MAX_FUSED_N`);
    anything else (and fp64) the torch.fft path.
    """
    _check_kernel(u, k, 1)
    L, Lk = u.shape[-1], k.shape[-1]
    if not _supported_dtype(u) or u.dim() != 3:
        return fftconv_ref(u, k, D, causal)
    from .triton_long import fftconv_long, plan_long

    # the three-level kernel where it has a plan (its range starts below MAX_FUSED_N for fp32)
    lplan = plan_long(L, Lk, u.dtype)
    if lplan is not None:
        return fftconv_long(u, k, D, causal, lplan)
    plan = plan_1d(L, Lk, u.dtype)
    if plan is None:
        return fftconv_ref(u, k, D, causal)
    N1, N2 = plan
    return _apply(u, k, D, (N1, N2, True, N1, N2, N2, L), causal)


def fftconv_nd_triton(
    u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, causal: bool = True, circular: bool = False
) -> torch.Tensor:
    """Fused N-D FFT conv: u (B, H, *S), k (H, *S'), D (H,) or None → (B, H, *S) in u's dtype.

    1-D goes to :func:`fftconv_triton` (linear) or torch.fft (circular). 2-D fields whose padded
    grid holds at most MAX_FUSED_N values take this module's one-tile kernel; larger 2-D and 3-D
    fields the three-level kernel of :mod:`.triton_long` where their padded axes fit its levels
    (:func:`.triton_long.plan_nd`) and batch x channels >= ND_MIN_ROWS; other shapes torch.fft.
    """
    from . import triton_long  # imports this module: not at the top

    ndim = k.dim() - 1
    _check_kernel(u, k, ndim)
    if ndim == 1 and not circular and u.dim() == 3:
        return fftconv_triton(u, k, D, causal)
    if ndim in (2, 3) and u.dim() == ndim + 2 and _supported_dtype(u):
        S, Sk = tuple(u.shape[2:]), tuple(k.shape[1:])
        plan = plan_2d(S, Sk, circular, u.dtype) if ndim == 2 else None
        if plan is not None:
            N1, N2 = plan
            return _apply(u, k, D, (N1, N2, False, S[0], S[1], S[1], S[0] * S[1]), causal)
        if u.shape[0] * u.shape[1] >= triton_long.ND_MIN_ROWS:
            nd = triton_long.plan_nd(S, Sk, circular, u.dtype)
            if nd is not None:
                return triton_long.fftconv_long(u, k, D, causal, nd.split, nd)
    return fftconv_nd_ref(u, k, D, causal, circular)
