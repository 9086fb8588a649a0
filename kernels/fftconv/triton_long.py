"""Long causal 1-D FFT convolution (padded transform n = 4K ... 128K) as a three-level Triton kernel.

The one-tile kernel of :mod:`.triton_fftconv` holds a whole transform in registers, which stops
paying off above n = 4096 (register spills). Here a transform of n = N1 * M, M = P * Q
(each factor 16 ... 128) is a four-step FFT whose outer step goes through a small per-program
scratch buffer (written and re-read by the same program, so it stays in L2):

    two batch rows of one channel as one complex row:  z = u[b] + i u[b+1]
    (k is real, so conv(z, k) = conv(u[b], k) + i conv(u[b+1], k): one complex transform
    serves two rows, and no real/imaginary unpacking is needed)

    pass 1, column blocks:  X1[k1, c] = sum_a F_N1[k1, a] z[M a + c] * w_n^(k1 c)  -> scratch
            (only the first NA rows a hold data: the causal zero padding halves this product)
    pass 2, row blocks:     the length-M DFT of each row k1 as P x Q Monarch products and a
            twiddle (tl.dot), times the kernel's spectrum, the inverse, back into scratch
    pass 3, column blocks:  y[M a + c] = sum_k1 conj(F_N1)[a, k1] X1'[k1, c] conj(w_n^(k1 c))
            for the NA rows a that hold outputs; + D u; real part -> row b, imaginary -> b+1

The outer twiddle w_n^(k1 c) is read from an n-long table, or at n = 8K computed with the SFU's
sin/cos (SINCOS_N). All DFT contractions are ``tl.dot`` products of complex tiles (4 real products each). The
program loops over row pairs (a persistent grid of NPROG programs), so the scratch is
NPROG x n complex whatever B and H (the O(chunk) workspace). The backward holds twice that, plus
one n-long cross-spectrum row per channel (per share of a channel's pairs when channels are fewer
than programs), the size of the kernel's spectrum. The DFT matrices, twiddles and spectrum are
shared by all programs and read through L2.

The spectrum is precomputed in the tile order of pass 2, already scaled by 1/n, by a third kernel
(passes 1-2 on each row of k; torch.fft for a centred kernel). Backward (one kernel, one pass over u and
the output gradient g): per row pair, passes 1-2 transform both z = u pair and w = g pair; the
cross-spectrum conj(Z) W is summed over the channel's pairs, and W conj(K) goes through the inverse
to du (the correlation with k) + D g. Since u, g, k are real, dk = Re(ifft(sum_pairs conj(Z) W)):
a small fourth kernel sums a channel's partial cross-spectra and takes them through the inverse
passes 2-3. dD = sum u g is that correlation at lag 0 (no separate reduction over u and g).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_fftconv import _dot, _pow2_at_least, _prec, _record, _twiddle
from .triton_fftconv import _dft_matrix as _dft

# (min n, max n) of the padded transform given to this kernel per input dtype; outside it the
# dispatcher uses the one-tile kernel (smaller n) or torch.fft. Measured on an H200: 1.5-2.0x
# torch.fft forward, 1.6-1.9x fwd+bwd for n = 8K ... 128K (L = 4K ... 64K, B = 8, H = 768;
# bench/results/fftconv_h200_run20.json), 0.42x at n = 512K (L = 256K, B = 1; fftconv_long_h200.json),
# hence the upper bound. fp32 from n = 4096 (L = 2K), where the one-tile kernel also applies: this
# kernel 1.8x forward and 2.0x fwd+bwd (run 20); the one-tile kernel measured 0.96x / 0.95x
# (fftconv_h200_run15_short.json). In bf16 both measured alike at n = 4096 (1.67-1.69x).
LONG_N = {torch.float32: (4096, 1 << 17), torch.bfloat16: (8192, 1 << 17), torch.float16: (8192, 1 << 17)}

# default (N1, P, Q) per log2 n; bench/fftconv.py --sweep-long tries others via SPLITS
SPLITS = {
    12: (16, 16, 16),
    13: (32, 16, 16),
    14: (64, 16, 16),
    15: (32, 32, 32),
    16: (64, 32, 32),
    17: (64, 64, 32),  # H200, 4 warps: 11.3 ms vs 12.5 (128, 32, 32) and 11.9 (32, 64, 64) at L = 64K
    18: (128, 64, 32),
    19: (128, 64, 64),
}
# complex values per on-chip tile in passes 1-3, warps, programs per SM (persistent grid)
TILE = 4096
# the backward's pass 2 holds two spectra (u's and the gradient's) at once: at most half a transform
# per block (H200 fwd+bwd kernel, 4096 vs 2048 values: 0.93 vs 0.94 ms at L = 4K, 4.8 vs 4.9 at 16K,
# 23.8 vs 29.7 at 64K; at L = 2K, where 4096 is the whole transform, 0.53 vs 0.39)
BWD_TILE = 4096
# 4 warps: two programs share an SM and hide each other's latency (8 warps: one program per SM,
# limited by registers; H200 kernel time 0.41 vs 0.50 ms at L = 4K, 12.3 vs 16.3 ms at 64K)
WARPS = 4
BWD_WARPS = 4
PROGS_PER_SM = 2
# transform sizes n whose outer twiddle w_n^(k1 c) is computed from sin/cos in registers; others read
# it from an n-long table through L2. H200 kernel-only forward, fp32 (bench/results/fftconv_long_ab_h200_run19.json):
# n = 8K 0.37-0.39 vs 0.41 ms (bf16 0.35-0.37 vs 0.39); n = 4K 0.29 vs 0.22, 32K 2.33-2.39 vs 2.27-2.33,
# 128K 13.3-13.5 vs 11.2-11.4 ms (more registers spilled there)
SINCOS_N = (8192,)
# dot operands for bf16 inputs: True = bf16 operands (faster, ~1e-2 error), False = tf32 like fp32
BF16_DOTS = False


@triton.jit
def _cdot(ar, ai, br, bi, BF16: tl.constexpr, PREC: tl.constexpr):
    """(ar + i ai) @ (br + i bi) as four real tensor-core products (H200, L = 4K / 64K: three,
    Karatsuba-style, 0.42 / 15.1 ms against 0.41 / 12.4; the four chained in two accumulators,
    0.406 / 12.4 ms against 0.411 / 11.4)."""
    xr = _dot(ar, br, BF16, PREC) - _dot(ai, bi, BF16, PREC)
    xi = _dot(ar, bi, BF16, PREC) + _dot(ai, br, BF16, PREC)
    return xr, xi


@triton.jit
def _mat(ptr, ROWS: tl.constexpr, COLS: tl.constexpr, LD: tl.constexpr):
    i = tl.arange(0, ROWS)[:, None]
    j = tl.arange(0, COLS)[None, :]
    return tl.load(ptr + i * LD + j)


@triton.jit
def _swap(x, R: tl.constexpr, A: tl.constexpr, C: tl.constexpr):
    """(R*A, C) viewed as (R, A, C) -> (R, C, A) -> (R*C, A): the on-chip transpose between DFT levels."""
    return tl.reshape(tl.permute(tl.reshape(x, (R, A, C)), (0, 2, 1)), (R * C, A))


@triton.jit
def _pair_rows(b0, h, H, L, B):
    """Offsets of batch rows b0 and b0 + 1 of channel h, and whether row b0 + 1 exists (a (1, 1)
    mask: tensor-valued, since a scalar bool mask breaks when B specializes to 1 or 2)."""
    row0 = (b0 * H + h).to(tl.int64) * L
    row1 = ((b0 + 1) * H + h).to(tl.int64) * L
    return row0, row1, (tl.zeros((1, 1), dtype=tl.int32) + b0 + 1) < B


@triton.jit
def _row_block(rb, M: tl.constexpr, R: tl.constexpr):
    """Scratch offsets (R, M) of the R rows k1 = rb ... rb + R - 1 that pass 2 takes at once."""
    return rb * M + tl.arange(0, R)[:, None] * M + tl.arange(0, M)[None, :]


@triton.jit
def _tile_off(rb, P: tl.constexpr, Q: tl.constexpr, R: tl.constexpr):
    """Offsets (R*P, Q) of a row block's spectrum in the tile order of :func:`_rows_fwd` within an
    n-long plane: [(r, kp), kq] -> (rb + r) M + kp Q + kq."""
    return rb * (P * Q) + tl.arange(0, R * P)[:, None] * Q + tl.arange(0, Q)[None, :]


@triton.jit
def _planes(s_ptr, NN: tl.constexpr, K: tl.constexpr):
    """This program's K n-long fp32 scratch planes start here (the persistent grid's workspace)."""
    return s_ptr + tl.program_id(0).to(tl.int64) * (K * NN)


@triton.jit
def _sincos(ang, PREC: tl.constexpr):
    """(cos, sin) of the angles ang (radians in [-pi, pi))."""
    if PREC == "emulate":
        return tl.cos(ang), tl.sin(ang)
    else:
        # the SFU's approximations: absolute error ~2^-21 on [-pi, pi], far below tf32's
        c = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=f,f", [ang], dtype=tl.float32, is_pure=True, pack=1)
        s = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=f,f", [ang], dtype=tl.float32, is_pure=True, pack=1)
        return c, s


@triton.jit
def _outer_tw(t1r_ptr, t1i_ptr, k1, c, N1: tl.constexpr, M: tl.constexpr, SINCOS: tl.constexpr, PREC: tl.constexpr):
    """The outer twiddle w_n^(k1 c) (n = N1 M) at the index grids k1, c (broadcast together)."""
    if SINCOS:
        NN: tl.constexpr = N1 * M
        e = (k1 * c) % NN
        # the exponent reduced in integers, then to [-n/2, n/2) so the angle is in [-pi, pi)
        e = tl.where(e >= NN // 2, e - NN, e)
        return _sincos(e.to(tl.float32) * (-6.283185307179586 / NN), PREC)
    else:
        tw = k1 * M + c
        return tl.load(t1r_ptr + tw), tl.load(t1i_ptr + tw)


@triton.jit
def _cols_fwd(src, row0, row1, has1, dst_re, dst_im, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
              N1: tl.constexpr, M: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr,
              SINCOS: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 1: rows row0 + i row1 of src as one complex row; column DFTs (length N1, only the NA
    rows that hold data) and the outer twiddle, into the scratch planes dst_re, dst_im."""
    for cb in range(0, M, BC):
        c = cb + tl.arange(0, BC)[None, :]
        m = tl.arange(0, NA)[:, None] * M + c
        k1 = tl.arange(0, N1)[:, None]
        msk = m < L
        zr = tl.load(src + row0 + m, mask=msk, other=0.0).to(tl.float32)
        zi = tl.load(src + row1 + m, mask=msk & has1, other=0.0).to(tl.float32)
        xr, xi = _cdot(_mat(f1r_ptr, N1, NA, N1), _mat(f1i_ptr, N1, NA, N1), zr, zi, BF16, PREC)
        tr, ti = _outer_tw(t1r_ptr, t1i_ptr, k1, c, N1, M, SINCOS, PREC)
        tw = k1 * M + c
        tl.store(dst_re + tw, xr * tr - xi * ti)
        tl.store(dst_im + tw, xr * ti + xi * tr)


@triton.jit
def _rows_fwd(s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
              P: tl.constexpr, Q: tl.constexpr, R: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 2, forward half: the length-M DFTs (P x Q) of R scratch rows at off. Returns the
    spectrum as (R*P, Q) tiles [(r, kp), kq] = frequency k1 + N1 (kp + P kq) of row k1 = rb + r."""
    rq = tl.arange(0, R * Q)[:, None] % Q
    jp = tl.arange(0, P)[None, :]
    # rows (r, p) of length Q -> (r, q) rows of length P: contract over p
    xr = _swap(tl.reshape(tl.load(s_re + off), (R * P, Q)), R, P, Q)
    xi = _swap(tl.reshape(tl.load(s_im + off), (R * P, Q)), R, P, Q)
    xr, xi = _cdot(xr, xi, _mat(fpr_ptr, P, P, P), _mat(fpi_ptr, P, P, P), BF16, PREC)
    # inner twiddle w_M^(kp q) at tile [(r, q), kp]
    tr = tl.load(t2r_ptr + jp * Q + rq)
    ti = tl.load(t2i_ptr + jp * Q + rq)
    xr, xi = xr * tr - xi * ti, xr * ti + xi * tr
    xr = _swap(xr, R, Q, P)
    xi = _swap(xi, R, Q, P)
    return _cdot(xr, xi, _mat(fqr_ptr, Q, Q, Q), _mat(fqi_ptr, Q, Q, Q), BF16, PREC)


@triton.jit
def _rows_inv(xr, xi, s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
              P: tl.constexpr, Q: tl.constexpr, R: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 2, inverse half (conj(F_Q), conj(twiddle), conj(F_P)) of tiles laid out as
    :func:`_rows_fwd` returns them, stored back into the scratch rows at off."""
    M: tl.constexpr = P * Q
    rp = tl.arange(0, R * P)[:, None] % P
    jq = tl.arange(0, Q)[None, :]
    xr, xi = _cdot(xr, xi, _mat(fqr_ptr, Q, Q, Q), -_mat(fqi_ptr, Q, Q, Q), BF16, PREC)
    tr = tl.load(t2r_ptr + rp * Q + jq)
    ti = tl.load(t2i_ptr + rp * Q + jq)
    xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
    xr = _swap(xr, R, P, Q)
    xi = _swap(xi, R, P, Q)
    xr, xi = _cdot(xr, xi, _mat(fpr_ptr, P, P, P), -_mat(fpi_ptr, P, P, P), BF16, PREC)
    tl.store(s_re + off, tl.reshape(_swap(xr, R, Q, P), (R, M)))
    tl.store(s_im + off, tl.reshape(_swap(xi, R, Q, P), (R, M)))


@triton.jit
def _cols_inv(s_re, s_im, dst, skip, row0, row1, has1, dh, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
              N1: tl.constexpr, M: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, HAS_D: tl.constexpr,
              SINCOS: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 3: conj outer twiddle, inverse column DFTs for the NA output rows, + dh * skip;
    real part -> dst row0, imaginary part -> dst row1."""
    for cb in range(0, M, BC):
        c = cb + tl.arange(0, BC)[None, :]
        k1 = tl.arange(0, N1)[:, None]
        m = tl.arange(0, NA)[:, None] * M + c
        tw = k1 * M + c
        xr = tl.load(s_re + tw)
        xi = tl.load(s_im + tw)
        tr, ti = _outer_tw(t1r_ptr, t1i_ptr, k1, c, N1, M, SINCOS, PREC)
        xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
        yr, yi = _cdot(_mat(f1r_ptr, NA, N1, N1), -_mat(f1i_ptr, NA, N1, N1), xr, xi, BF16, PREC)
        msk = m < L
        if HAS_D:
            yr += dh * tl.load(skip + row0 + m, mask=msk, other=0.0).to(tl.float32)
            yi += dh * tl.load(skip + row1 + m, mask=msk & has1, other=0.0).to(tl.float32)
        tl.store(dst + row0 + m, yr.to(dst.dtype.element_ty), mask=msk)
        tl.store(dst + row1 + m, yi.to(dst.dtype.element_ty), mask=msk & has1)


@triton.jit
def _long_kernel(
    u_ptr, kt_ptr, d_ptr, y_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    B, H, L, NPAIRS, PB, NPROG,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    CONJ: tl.constexpr, HAS_D: tl.constexpr, SINCOS: tl.constexpr, BF16: tl.constexpr,
    PREC: tl.constexpr,
):
    M: tl.constexpr = P * Q
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = _planes(s_ptr, NN, 2)
    s_im = s_re + NN
    for pair in range(pid, NPAIRS, NPROG):
        h = pair // PB
        row0, row1, has1 = _pair_rows((pair % PB) * 2, h, H, L, B)
        # the previous pair's pass 3 has read the scratch before this pass 1 overwrites it
        tl.debug_barrier()
        _cols_fwd(u_ptr, row0, row1, has1, s_re, s_im, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
                  N1, M, NA, BC, SINCOS, BF16, PREC)
        tl.debug_barrier()
        for rb in range(0, N1, R):
            off = _row_block(rb, M, R)
            xr, xi = _rows_fwd(s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                               P, Q, R, BF16, PREC)
            # the spectrum is stored in the tile order of _rows_fwd
            koff = h.to(tl.int64) * (2 * NN) + _tile_off(rb, P, Q, R)
            kr = tl.load(kt_ptr + koff)
            ki = tl.load(kt_ptr + NN + koff)
            if CONJ:
                ki = -ki
            xr, xi = xr * kr - xi * ki, xr * ki + xi * kr
            _rows_inv(xr, xi, s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                      P, Q, R, BF16, PREC)
        tl.debug_barrier()
        dh = 0.0
        if HAS_D:
            dh = tl.load(d_ptr + h).to(tl.float32)
        _cols_inv(s_re, s_im, y_ptr, u_ptr, row0, row1, has1, dh, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
                  N1, M, NA, BC, HAS_D, SINCOS, BF16, PREC)


@triton.jit
def _long_bwd_kernel(
    u_ptr, g_ptr, kt_ptr, d_ptr, du_ptr, p_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    B, H, L, PB, NSPLIT, NWORK, NPROG,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    HAS_D: tl.constexpr, SINCOS: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr,
):
    # Backward of one channel's row pairs: z = u pair, w = g pair (the output gradient). Per pair,
    # both take passes 1-2 forward; the products conj(Z) W summed over this work item's pairs go to
    # p (its (2, n) row, tile order; _long_dk_kernel turns their sum into dk), and W conj(K)
    # takes the inverse to du (correlation with k) + D g. Work item = (channel, split of its pairs).
    M: tl.constexpr = P * Q
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    z_re = _planes(s_ptr, NN, 4)
    z_im = z_re + NN
    w_re = z_im + NN
    w_im = w_re + NN
    for item in range(pid, NWORK, NPROG):
        h = item // NSPLIT
        sp = item % NSPLIT
        p_re = p_ptr + (h * NSPLIT + sp).to(tl.int64) * (2 * NN)  # = item (a tensor under the interpreter too)
        p_im = p_re + NN
        dh = 0.0
        if HAS_D:
            dh = tl.load(d_ptr + h).to(tl.float32)
        for pb in range(sp, PB, NSPLIT):
            row0, row1, has1 = _pair_rows(pb * 2, h, H, L, B)
            tl.debug_barrier()
            _cols_fwd(u_ptr, row0, row1, has1, z_re, z_im, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
                      N1, M, NA, BC, SINCOS, BF16, PREC)
            _cols_fwd(g_ptr, row0, row1, has1, w_re, w_im, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
                      N1, M, NA, BC, SINCOS, BF16, PREC)
            tl.debug_barrier()
            for rb in range(0, N1, R):
                off = _row_block(rb, M, R)
                zr, zi = _rows_fwd(z_re, z_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                                   P, Q, R, BF16, PREC)
                wr, wi = _rows_fwd(w_re, w_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                                   P, Q, R, BF16, PREC)
                poff = _tile_off(rb, P, Q, R)  # tile order of _rows_fwd
                pr = zr * wr + zi * wi
                pi = zr * wi - zi * wr
                if pb > sp:  # the same threads wrote these elements for the previous pair
                    pr += tl.load(p_re + poff)
                    pi += tl.load(p_im + poff)
                tl.store(p_re + poff, pr)
                tl.store(p_im + poff, pi)
                koff = h.to(tl.int64) * (2 * NN) + poff
                kr = tl.load(kt_ptr + koff)
                ki = tl.load(kt_ptr + NN + koff)
                xr, xi = wr * kr + wi * ki, wi * kr - wr * ki
                _rows_inv(xr, xi, w_re, w_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                          P, Q, R, BF16, PREC)
            tl.debug_barrier()
            _cols_inv(w_re, w_im, du_ptr, g_ptr, row0, row1, has1, dh, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, L,
                      N1, M, NA, BC, HAS_D, SINCOS, BF16, PREC)


@triton.jit
def _long_spectrum_kernel(
    k_ptr, kt_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    H, LK, NPROG, inv_n,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    SINCOS: tl.constexpr, PREC: tl.constexpr,
):
    # The causal kernel's spectrum for _long_kernel: row h of k (H, LK), zero padded to n, through
    # passes 1-2 forward (as a complex row with zero imaginary part), scaled by 1/n and stored in
    # pass 2's tile order, re plane then im plane of kt (H, 2, n).
    M: tl.constexpr = P * Q
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = _planes(s_ptr, NN, 2)
    s_im = s_re + NN
    no_im = tl.zeros((1, 1), dtype=tl.int32) != 0  # a real row: the imaginary row is masked off
    for h in range(pid, H, NPROG):
        h = tl.cast(h, tl.int64)  # a Python int under the interpreter
        row = h * LK
        tl.debug_barrier()
        _cols_fwd(k_ptr, row, row, no_im, s_re, s_im, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, LK,
                  N1, M, NA, BC, SINCOS, False, PREC)
        tl.debug_barrier()
        for rb in range(0, N1, R):
            off = _row_block(rb, M, R)
            xr, xi = _rows_fwd(s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                               P, Q, R, False, PREC)
            koff = h * (2 * NN) + _tile_off(rb, P, Q, R)
            tl.store(kt_ptr + koff, xr * inv_n)
            tl.store(kt_ptr + NN + koff, xi * inv_n)


@triton.jit
def _long_dk_kernel(
    p_ptr, c_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    H, NSPLIT, NOUT, NPROG, inv_n,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    SINCOS: tl.constexpr, PREC: tl.constexpr,
):
    # The kernel gradient's last step: row h of c (H, NOUT) = the first NOUT values of
    # Re(ifft(S_h)), S_h = sum over the NSPLIT partial cross-spectra of channel h in p (tile order,
    # as _long_bwd_kernel leaves them): the sum, then the inverse passes 2 and 3.
    M: tl.constexpr = P * Q
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = _planes(s_ptr, NN, 2)
    s_im = s_re + NN
    no_im = tl.zeros((1, 1), dtype=tl.int32) != 0  # a real row: the imaginary row is masked off
    for h in range(pid, H, NPROG):
        h = tl.cast(h, tl.int64)  # a Python int under the interpreter
        tl.debug_barrier()
        for rb in range(0, N1, R):
            off = _row_block(rb, M, R)
            poff = h * NSPLIT * (2 * NN) + _tile_off(rb, P, Q, R)
            xr = tl.zeros((R * P, Q), dtype=tl.float32)
            xi = tl.zeros((R * P, Q), dtype=tl.float32)
            for sp in range(NSPLIT):
                xr += tl.load(p_ptr + poff + sp * (2 * NN))
                xi += tl.load(p_ptr + poff + sp * (2 * NN) + NN)
            _rows_inv(xr * inv_n, xi * inv_n, s_re, s_im, off, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                      P, Q, R, False, PREC)
        tl.debug_barrier()
        row = h * NOUT
        _cols_inv(s_re, s_im, c_ptr, c_ptr, row, row, no_im, 0.0, f1r_ptr, f1i_ptr, t1r_ptr, t1i_ptr, NOUT,
                  N1, M, NA, BC, False, SINCOS, False, PREC)


# ----------------------------------------------------------------------------------------------
# host side

def plan_long(L: int, Lk: int, dtype=torch.float32) -> tuple[int, int, int] | None:
    """(N1, P, Q) of the long kernel for a length-L input and length-Lk kernel, or None."""
    lo, hi = LONG_N.get(dtype, (1, 0))
    n = _pow2_at_least(max(L + Lk - 1, 2))
    if n < lo or n > hi:
        return None
    return SPLITS.get(n.bit_length() - 1)


def _spectrum_tiles(k: torch.Tensor, plan, causal: bool) -> torch.Tensor:
    """k (H, Lk) -> (H, 2, n) fp32: re/im planes of DFT_n(k_eff) / n in pass 2's tile order.

    k_eff is k zero padded to n, rolled back by the centre when not causal. Position
    (k1, kp, kq) of the tile order holds frequency k1 + N1 (kp + P kq). Causal kernels take the
    Triton passes 1-2 (one read of k, one write of the tiles; torch.fft and the reorder took
    20-30% of the forward's time, bench/README.md); centred kernels take torch.fft.
    """
    N1, P, Q = plan
    n = N1 * P * Q
    H, Lk = k.shape
    if causal:
        kt = torch.empty(H, 2, n, device=k.device, dtype=torch.float32)
        nprog = _nprog(H, k.device)
        scratch = torch.empty(nprog, 2, n, device=k.device, dtype=torch.float32)
        _long_spectrum_kernel[(nprog,)](
            k.detach().contiguous(), kt, scratch, *_tables(plan, k.device), H, Lk, nprog, 1.0 / n,
            **_meta(plan, Lk, TILE), num_warps=WARPS, num_stages=1,
        )
        return kt
    sh = (Lk - 1) // 2  # centred: k_eff starts at k's centre and wraps around
    kf = k.detach().float()
    kf = torch.cat([kf[:, sh:], kf.new_zeros(H, n - Lk), kf[:, :sh]], dim=1)
    K = torch.fft.fft(kf, n=n) / n
    # frequency f = k1 + N1 kp + N1 P kq -> view (H, kq, kp, k1), then to (k1, kp, kq)
    K = K.view(H, Q, P, N1).permute(0, 3, 2, 1).reshape(H, n)
    return torch.stack([K.real, K.imag], dim=1).contiguous()


def _nprog(nwork: int, device) -> int:
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(nwork, sms * PROGS_PER_SM))


def _tables(plan, device) -> list[torch.Tensor]:
    """DFT matrices (N1, P, Q) and twiddles (outer N1 x M, inner P x Q) as re/im fp32 planes."""
    N1, P, Q = plan
    f1r, f1i = _dft(N1, device)
    fpr, fpi = _dft(P, device)
    fqr, fqi = _dft(Q, device)
    t1r, t1i = _twiddle(N1, P * Q, device)
    t2r, t2i = _twiddle(P, Q, device)
    return [f1r, f1i, fpr, fpi, fqr, fqi, t1r, t1i, t2r, t2i]


def _meta(plan, L: int, tile: int) -> dict:
    """The constexprs every long kernel takes: the split (N1, P, Q), NA (column rows that hold data
    for L values), BC (columns per pass-1/3 block), R (rows per pass-2 block), SINCOS and PREC."""
    N1, P, Q = plan
    M = P * Q
    return dict(N1=N1, P=P, Q=Q, NA=min(N1, max(16, _pow2_at_least(triton.cdiv(L, M)))),
                BC=min(M, max(16, tile // N1)), R=min(N1, max(1, tile // M)), SINCOS=N1 * M in SINCOS_N,
                PREC=_prec())


def launch(u: torch.Tensor, Kt: torch.Tensor, D, y: torch.Tensor, plan, conj: bool) -> None:
    """y = conv(u, k) (+ D u) for the rows of u (B, H, L) with the tile-order spectrum Kt;
    conj=True: the correlation with k instead (the input gradient of the convolution)."""
    N1, P, Q = plan
    n = N1 * P * Q
    B, H, L = u.shape
    PB = triton.cdiv(B, 2)
    npairs = H * PB
    nprog = _nprog(npairs, u.device)
    scratch = torch.empty(nprog, 2, n, device=u.device, dtype=torch.float32)
    ck = _long_kernel[(nprog,)](
        u, Kt, D if D is not None else u, y, scratch, *_tables(plan, u.device),
        B, H, L, npairs, PB, nprog,
        **_meta(plan, L, TILE), CONJ=conj, HAS_D=D is not None,
        BF16=BF16_DOTS and u.dtype == torch.bfloat16,
        num_warps=WARPS, num_stages=1,  # 2 stages measured 27% slower (H200, L = 4K)
    )
    _record(f"long_fwd_w{WARPS}_t{TILE}_{N1}", P, Q, ck)


def launch_bwd(u: torch.Tensor, g: torch.Tensor, Kt: torch.Tensor, D, plan, Lk: int, causal: bool):
    """Input and kernel gradients of the long conv in one pass over u and g (both (B, H, L)), plus
    one small kernel for the kernel gradient's inverse transform.

    Returns du (B, H, L) = correlation of g with k (+ D g) and c (H, Lk) fp32 with
    c[h, j] = sum_b sum_t g[b, h, t] u[b, h, t - j] for the lags j of k's taps (causal: j = 0 ... Lk-1;
    centred: j = i - (Lk - 1) // 2 for tap i) — dk before the cast to k's dtype."""
    N1, P, Q = plan
    n = N1 * P * Q
    B, H, L = u.shape
    PB = triton.cdiv(B, 2)
    nprog = _nprog(H * PB, u.device)
    # a channel's pairs split over several work items only when there are fewer channels than programs
    nsplit = min(PB, triton.cdiv(nprog, H))
    nwork = H * nsplit
    nprog = min(nprog, nwork)
    scratch = torch.empty(nprog, 4, n, device=u.device, dtype=torch.float32)
    psum = torch.empty(nwork, 2, n, device=u.device, dtype=torch.float32)
    du = torch.empty_like(u)
    tables = _tables(plan, u.device)
    _long_bwd_kernel[(nprog,)](
        u, g, Kt, D if D is not None else u, du, psum, scratch, *tables,
        B, H, L, PB, nsplit, nwork, nprog,
        **_meta(plan, L, min(BWD_TILE, n // 2)), HAS_D=D is not None,
        BF16=BF16_DOTS and u.dtype == torch.bfloat16,
        num_warps=BWD_WARPS, num_stages=1,
    )
    # the circular cross-correlation Re(ifft(sum_b conj(U_b) G_b)): its first Lk lags (causal), or
    # all n, of which the centred taps' lags are gathered (k[i] sits at k_eff[(i - sh) mod n])
    nout = Lk if causal else n
    c = torch.empty(H, nout, device=u.device, dtype=torch.float32)
    # its programs (one per channel, at most the backward's) use 2 of the scratch's 4 planes each
    nprog = _nprog(H, u.device)
    assert nprog <= scratch.shape[0]
    _long_dk_kernel[(nprog,)](
        psum, c, scratch, *tables, H, nsplit, nout, nprog, 1.0 / n,
        **_meta(plan, nout, TILE), num_warps=WARPS, num_stages=1,
    )
    if not causal:
        sh = (Lk - 1) // 2
        c = torch.cat([c[:, n - sh:], c[:, :Lk - sh]], dim=1)
    return du, c


class _LongConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, k, D, plan, causal):
        u = u.contiguous()
        Kt = _spectrum_tiles(k, plan, causal)
        y = torch.empty_like(u)
        launch(u, Kt, D, y, plan, conj=False)
        ctx.save_for_backward(u, k, D)
        ctx.Kt = Kt
        ctx.plan, ctx.causal = plan, causal
        return y

    @staticmethod
    def backward(ctx, gy):
        u, k, D = ctx.saved_tensors
        Kt = ctx.Kt
        ctx.Kt = None
        g = gy.contiguous().to(u.dtype)
        du = dk = dD = None
        if ctx.needs_input_grad[1]:
            du, c = launch_bwd(u, g, Kt, D, ctx.plan, k.shape[1], ctx.causal)
            dk = c.to(k.dtype)
            # dD = sum_b,t u g is the correlation at lag 0: tap 0 (causal) or the centre tap
            dD_lag0 = c[:, 0 if ctx.causal else (k.shape[1] - 1) // 2]
        elif ctx.needs_input_grad[0]:
            du = torch.empty_like(u)
            launch(g, Kt, D, du, ctx.plan, conj=True)
        if not ctx.needs_input_grad[0]:
            du = None
        if D is not None and ctx.needs_input_grad[2]:
            if dk is not None:
                dD = dD_lag0.to(D.dtype)
            else:
                dD = torch.einsum("bhl,bhl->h", u.float(), g.float()).to(D.dtype)
        return du, dk, dD, None, None


def fftconv_long(u: torch.Tensor, k: torch.Tensor, D, causal: bool, plan) -> torch.Tensor:
    """Long 1-D FFT conv with the plan from :func:`plan_long`: u (B, H, L), k (H, L'), D (H,) → (B, H, L)."""
    return _LongConv.apply(u, k, D, plan, causal)
