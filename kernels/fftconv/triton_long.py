"""Long 1-D FFT convolution (padded transform n = 4K ... 128K), and 2-D / 3-D fields, as a three-level Triton kernel.

The one-tile kernel of :mod:`.triton_fftconv` holds a whole transform in registers, which stops
paying off above n = 4096 (register spills). Here a transform of n = N1 * M, M = P * Q
(each factor 16 ... 128) is a four-step FFT whose outer step goes through a small per-program
scratch buffer (written and re-read by the same program, so it stays in L2 up to n = 16K-32K):

    two batch rows of one channel as one complex row:  z = u[b] + i u[b+1]
    (k is real, so conv(z, k) = conv(u[b], k) + i conv(u[b+1], k): one complex transform
    serves two rows, and no real/imaginary unpacking is needed)

    pass 1, column blocks:  X1[k1, c] = sum_a F_N1[k1, a] z[M a + c] * w_n^(k1 c)  -> scratch
            (only the first NA rows a hold data: the causal zero padding halves this product)
    pass 2, row blocks:     the length-M DFT of each row k1 as P x Q Monarch products and a
            twiddle (tl.dot), times the kernel's spectrum, the inverse, back into scratch
    pass 3, column blocks:  y[M a + c] = sum_k1 conj(F_N1)[a, k1] X1'[k1, c] conj(w_n^(k1 c))
            for the NA rows a that hold outputs; real part -> row b, imaginary -> b+1 (D u is
            in the spectrum: k + D delta)

The outer twiddle w_n^(k1 c) is read from an n-long table, or at n = 8K computed with the SFU's
sin/cos (SINCOS_N). All DFT contractions are ``tl.dot`` products of complex tiles (4 real products each),
with fp16 operands and fp32 accumulation (FP16_DOTS, BWD_FP16_DOTS; tf32 operands where they are off). The
program loops over row pairs (a persistent grid of NPROG programs), so the scratch is
NPROG x n complex whatever B and H (the O(chunk) workspace). The backward holds twice that, plus
one n-long cross-spectrum row per channel (per share of a channel's pairs when channels are fewer
than programs), the size of the kernel's spectrum. The DFT matrices, twiddles and spectrum are
shared by all programs and read through L2; each program loads the DFT matrices once and holds them
(the backward kernel reloads F1 per pair), and pass 2's inner twiddle too where it has at least
HOLD2_MIN_R rows per block.

Two rows of different size must not share a transform as they are: the products round relative to
the larger. Each row is scaled by its own power of two before the pair is formed (its max |u|, read by
a small kernel first) and unscaled in pass 3; with the spectrum's per-channel power of two this also
bounds every value the scratch holds, which is why it can be fp16 (SCRATCH_DTYPE; BWD_SCRATCH_DTYPE
for the backward, whose scales are set the same way); with fp16 dot operands the bound covers every
value the transform forms (its spectrum too), and the spectrum's 1/n waits for pass 3 (KMUL).

The spectrum is precomputed in the tile order of pass 2, already scaled by 1/n, by a third kernel
(passes 1-2 on each row of k; a centred kernel is first rolled on the host). Backward (one kernel, one pass over u and
the output gradient g): per row pair, passes 1-2 transform both z = u pair and w = g pair; the
cross-spectrum conj(Z) W is summed over the channel's pairs, and W conj(K) goes through the inverse
to du (the correlation with k) + D g. Since u, g, k are real, dk = Re(ifft(sum_pairs conj(Z) W)):
a small fourth kernel sums a channel's partial cross-spectra and takes them through the inverse
passes 2-3. dD = sum u g is that correlation at lag 0 (no separate reduction over u and g).

N-D fields (fftconv_nd): the padded grid (G0, G1, G2) is laid on the levels, each axis one or two of
them: (N1, P, Q) for 3-D, (N1, P*Q) or (N1*P, Q) for 2-D. A DFT over the whole grid is then this
transform with the twiddles between axes left out (TW1, TW2); within an axis of two levels the
four-step twiddle stays. Pass 1 and 3 read and write the field's values at their grid positions
(:func:`_field`); the kernel is laid on the grid (and rolled, when centred) on the host, and the
kernel gradient is the cross-correlation on the grid, gathered at the taps' lags.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .triton_fftconv import _CONSTS, _dot, _pow2_at_least, _prec, _record, _twiddle
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
# register cap for the forward kernel (None: the compiler's choice, 239-255 per thread, two programs per
# SM); with fp16 operands a cap of 168 (three programs of 4 warps) costs 344 bytes of spills at L = 16K
# (local sm_90). To be timed: bench/fftconv.py --sweep-occupancy.
MAXNREG = None
# software pipelining of the forward kernel's loads (num_stages): 2 measured 27% slower with tf32 operands
# (H200, L = 4K, spills); with fp16 operands, local sm_90 at 16K: no spills, 76 barriers per row pair
# against 111. To be timed: bench/fftconv.py --sweep-occupancy.
STAGES = 1
# transform sizes n whose outer twiddle w_n^(k1 c) is computed from sin/cos in registers; others read
# it from an n-long table through L2. H200 kernel-only forward, fp32 (bench/results/fftconv_long_ab_h200_run19.json):
# n = 8K 0.37-0.39 vs 0.41 ms (bf16 0.35-0.37 vs 0.39); n = 4K 0.29 vs 0.22, 32K 2.33-2.39 vs 2.27-2.33,
# 128K 13.3-13.5 vs 11.2-11.4 ms (more registers spilled there)
SINCOS_N = (8192,)
# pass 2 holds its inner twiddle per program (two small tables broadcast over a block's R rows) when
# R >= this; else it gathers a (R*Q, P) twiddle tile from an L2-resident table in every block. H200,
# B = 8, H = 768, fp32, same-run A/B (bench/results/fftconv_long_ab_h200_run34.json): held from R = 4,
# forward kernel 0.32 vs 0.35 ms at L = 4K (R = 16) but 2.16 vs 2.12 ms at 16K (R = 4); fwd+bwd
# 1.17 vs 1.28 ms at 4K and 6.67 vs 6.89 at 16K; at 64K (R = 2) held: 14.8 vs 9.7 ms forward
HOLD2_MIN_R = {"fwd": 8, "bwd": 4}
# The forward kernel's scratch (the transform between passes) is fp16: half the bytes of fp32, and it
# outgrows the L2 from n = 32K in fp32. fp16 keeps tf32's 11-bit significand but not fp32's range,
# so the values are scaled into it by powers of two (exact): each input row by su (its max |u| times
# NA sqrt(2), the bound on pass 1's sums, under SCRATCH_LOG2_MAX), and the spectrum by the channel's
# ks = 2^-ceil(log2(sum |k| + |D|)), which bounds pass 2's output |conv(z, k)| <= max |z| (sum |k| + |D|);
# both undone in pass 3's registers. Scaling each row apart also keeps two rows that share a complex
# transform out of each other's tf32 rounding. The backward kernel scales its rows under the same bound
# (_long_bwd_kernel); its scratch is BWD_SCRATCH_DTYPE.
SCRATCH_DTYPE = torch.float16
SCRATCH_LOG2_MAX = 14.0  # fp16's largest finite value is 65504 < 2^16: a factor of 2 to 4 to spare
# The forward kernel's tl.dot operands in fp16 instead of tf32 (same 11-bit significand, half the
# operand registers, twice the tensor-core rate). The rows are then scaled so that the whole transform,
# not only the scratch, stays in fp16's range (_log2_bound). H200, B = 8, H = 768, same-run A/B against
# tf32 operands (bench/results/fftconv_dots_ab_h200_run52.json), forward kernel fp32 1.27x / 1.18x / 1.18x
# at L = 4K / 16K / 64K (bf16 1.33 / 1.15 / 1.25x), relative error 1.0-1.1e-3 against 2.9-3.5e-3
# (fp16 rounds to nearest; the fp32 -> tf32 conversion of the operands measured coarser); at 16K no
# register spills left (sm_90: 0 against 124 bytes).
FP16_DOTS = True
# The same for the backward kernel (its transforms of u and g and du's inverse; the dk kernel keeps
# tf32): public fwd+bwd 1.04x / 1.10x / 0.99x at L = 4K / 16K / 64K against tf32 operands, du, dk, dD
# errors 1.0-1.8e-3 against 2.9-4.5e-3 (bench/results/fftconv_dots_ab_bwd_h200_run53.json)
BWD_FP16_DOTS = True
# The spectrum kernel's (passes 1-2 on each channel's kernel, ~17% of the public forward at L = 16K): off
# until timed on a GPU (bench/fftconv.py --spectrum-dots-ab)
SPECTRUM_FP16_DOTS = False
# The backward kernel's scratch: its values are bounded the same way (_long_bwd_kernel), so fp16 holds
# them. H200, B = 8, H = 768, public fwd+bwd against fp32 scratch in the same run
# (bench/results/fftconv_scratch_ab_bwd_h200_run51.json): 0.97x at L = 4K, 1.13x at 16K, 1.09x at 64K;
# du, dk, dD errors 2.9-4.2e-3 against 3.2-4.8e-3
BWD_SCRATCH_DTYPE = torch.float16


def _dots16(meta: dict, on: bool) -> bool:
    """Switch a kernel's meta (:func:`_meta`) to fp16 dot operands where on and its PREC is tf32 (or the
    interpreter's emulation of it); whether it did."""
    if on and meta["PREC"] in ("tf32", "emulate"):
        meta["PREC"] = "fp16" if meta["PREC"] == "tf32" else "fp16_emulate"
        return True
    return False


def _log2_bound(meta: dict, dots16: bool = False) -> float:
    """log2 of the bound each row's max |x| is scaled under: pass 1's sums are at most NA sqrt(2) times it
    (NA rows of a complex pair), and they stay under 2^SCRATCH_LOG2_MAX. dots16 (FP16_DOTS): every value
    the transform forms, up to the spectrum's NA M sqrt(2) max |x|, stays under it."""
    rows = meta["NA"] * (meta["P"] * meta["Q"] if dots16 else 1)
    return SCRATCH_LOG2_MAX - math.log2(rows) - 0.5


@triton.jit
def _normal_exp(e):
    """e clamped to fp32's normal exponents [-126, 126] (so that 2^e and 2^-e are finite and nonzero)."""
    return tl.minimum(tl.maximum(e, -126.0), 126.0)


@triton.jit
def _pow2_exp(log2_max, m):
    """floor(log2_max - log2 m), within fp32's normal range: the exponent of the power of two that
    brings m (>= 0) under 2^log2_max; 0 where m = 0 (all zeros: any scale holds them)."""
    e = tl.floor(log2_max - tl.log2(tl.maximum(m, 1.1754943508222875e-38)))
    return tl.where(m > 0, _normal_exp(e), 0.0)


@triton.jit
def _row_absmax_kernel(x_ptr, m_ptr, L, BLOCK: tl.constexpr):
    """m[r] = max_t |x[r, t]| for the rows of x (R, L), fp32; one program per row."""
    row = tl.program_id(0).to(tl.int64) * L
    m = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in range(0, L, BLOCK):
        o = s + tl.arange(0, BLOCK)
        m = tl.maximum(m, tl.abs(tl.load(x_ptr + row + o, mask=o < L, other=0.0).to(tl.float32)))
    tl.store(m_ptr + tl.program_id(0), tl.max(m, 0))


def _row_absmax(x: torch.Tensor) -> torch.Tensor:
    """x (B, H, L) -> (B * H,) fp32: each row's max |x|."""
    m = torch.empty(x.shape[0] * x.shape[1], device=x.device, dtype=torch.float32)
    _row_absmax_kernel[(m.numel(),)](x, m, x.shape[-1], BLOCK=1024, num_warps=4)
    return m


@triton.jit
def _pair_scalar(ptr, b0, h, H, has1):
    """Values of rows b0 and b0 + 1 of channel h in a (B * H,) array (0 for a missing row b0 + 1)."""
    v0 = tl.load(ptr + b0 * H + h)
    v1 = tl.load(ptr + (b0 + 1) * H + h + tl.zeros((1, 1), dtype=tl.int32), mask=has1, other=0.0)
    return v0, v1


@triton.jit
def _cdot(ar, ai, br, bi, BF16: tl.constexpr, PREC: tl.constexpr):
    """(ar + i ai) @ (br + i bi) as four real tensor-core products (H200, L = 4K / 64K: three,
    Karatsuba-style, 0.42 / 15.1 ms against 0.41 / 12.4; the four chained in two accumulators,
    0.406 / 12.4 ms against 0.411 / 11.4)."""
    xr = _dot(ar, br, BF16, PREC) - _dot(ai, bi, BF16, PREC)
    xi = _dot(ar, bi, BF16, PREC) + _dot(ai, br, BF16, PREC)
    return xr, xi


@triton.jit
def _operand(x, PREC: tl.constexpr):
    """x in the dtype its tl.dot products take it in: fp16 with fp16 operands (cast once, where it is
    formed: the on-chip transposes then move half the bytes, and a held matrix takes half the registers),
    else fp32. Numerically the same as casting inside :func:`_dot`."""
    if PREC == "fp16":
        return x.to(tl.float16)
    elif PREC == "fp16_emulate":
        return x.to(tl.float16)
    else:
        return x.to(tl.float32)


@triton.jit
def _mat(ptr, ROWS: tl.constexpr, COLS: tl.constexpr, LD: tl.constexpr, PREC: tl.constexpr):
    """A (ROWS, COLS) block of a DFT matrix (row stride LD) as a dot operand (:func:`_operand`)."""
    i = tl.arange(0, ROWS)[:, None]
    j = tl.arange(0, COLS)[None, :]
    return _operand(tl.load(ptr + i * LD + j), PREC)


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
    """This program's K n-long scratch planes (SCRATCH_DTYPE in the forward kernel, BWD_SCRATCH_DTYPE in the backward, else fp32) start here (the persistent grid's workspace)."""
    return s_ptr + tl.program_id(0).to(tl.int64) * (K * NN)


@triton.jit
def _field(m, L, S1, S2, G1: tl.constexpr, G2: tl.constexpr):
    """Offsets within a (b, h) row of L values, and mask, of the padded transform's positions m, for
    an N-D field: position m = (x G1 + y) G2 + z of the padded grid (G0, G1, G2) holds the field's
    value (x, y, z) of a (L / (S1 S2), S1, S2) field (a 2-D field has G0 = 1).

    1-D rows (G1 = 0: the row's first L positions) are written inline by the callers: with this call
    in the 1-D path, the debug scopes of one more inlined function alone changed ptxas's register
    allocation (sm_90, L = 64K forward: 476 instead of 456 bytes of spill stores)."""
    x = m // (G1 * G2)
    y = (m // G2) % G1
    z = m % G2
    return (x * S1 + y) * S2 + z, (x * (S1 * S2) < L) & (y < S1) & (z < S2)


@triton.jit
def _sincos(ang, PREC: tl.constexpr):
    """(cos, sin) of the angles ang (radians in [-pi, pi))."""
    if PREC == "emulate":
        return tl.cos(ang), tl.sin(ang)
    elif PREC == "fp16_emulate":
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
def _cols_fwd(src, row0, row1, has1, sc0, sc1, dst_re, dst_im, f1r, f1i, t1r_ptr, t1i_ptr, L, S1, S2,
              N1: tl.constexpr, M: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr,
              SINCOS: tl.constexpr, TW1: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr,
              BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 1: rows row0 + i row1 of src (their fields laid on the padded grid, :func:`_field`), scaled
    by sc0 and sc1, as one complex row; column DFTs (f1r, f1i: F1's (N1, NA) columns for the NA rows that hold data) and
    the outer twiddle (TW1), into the scratch planes dst_re, dst_im."""
    for cb in range(0, M, BC):
        c = cb + tl.arange(0, BC)[None, :]
        pos = tl.arange(0, NA)[:, None] * M + c
        k1 = tl.arange(0, N1)[:, None]
        if G1 == 0:
            off, msk = pos, pos < L  # 1-D, inline (see _field)
        else:
            off, msk = _field(pos, L, S1, S2, G1, G2)
        # L2 hints: u and y stream through once (evict_first), the scratch is read back by the next pass
        # (evict_last); it still outgrows the L2 from n = 32K (H200 run 41: 16K kernel time -1.7%)
        zr = tl.load(src + row0 + off, mask=msk, other=0.0, eviction_policy="evict_first").to(tl.float32) * sc0
        zi = tl.load(src + row1 + off, mask=msk & has1, other=0.0, eviction_policy="evict_first").to(tl.float32) * sc1
        xr, xi = _cdot(f1r, f1i, _operand(zr, PREC), _operand(zi, PREC), BF16, PREC)
        # tw is formed in each branch, not once before them: hoisted, ptxas allocates the backward
        # kernel differently (sm_90, L = 4K: 8 more loop instructions, 4 more bytes of spills)
        if TW1:
            tr, ti = _outer_tw(t1r_ptr, t1i_ptr, k1, c, N1, M, SINCOS, PREC)
            tw = k1 * M + c
            # each product stored as soon as it is formed (fewer live registers than both at once)
            tl.store(dst_re + tw, (xr * tr - xi * ti).to(dst_re.dtype.element_ty), eviction_policy="evict_last")
            tl.store(dst_im + tw, (xr * ti + xi * tr).to(dst_re.dtype.element_ty), eviction_policy="evict_last")
        else:
            tw = k1 * M + c
            tl.store(dst_re + tw, xr.to(dst_re.dtype.element_ty), eviction_policy="evict_last")
            tl.store(dst_im + tw, xi.to(dst_re.dtype.element_ty), eviction_policy="evict_last")


@triton.jit
def _pass2_consts(fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr,
                  P: tl.constexpr, Q: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr, PREC: tl.constexpr):
    """Pass 2's constants, loaded once per program: (F_P re, im (P, P), F_Q re, im (Q, Q), inner twiddle),
    the twiddle as (Q, P) and (P, Q) tables (re, im) when HOLD2 (see :data:`HOLD2_MIN_R`), else four
    (1, 1) placeholders (pass 2 then gathers it from t2r_ptr, t2i_ptr).

    Held, not reloaded per block: the reloads (and their layout conversions for the dots) cost more
    than the spills that holding them adds (H200, runs 31-32, fp32 L = 4K-64K: forward kernel
    1.11-1.20x, public fwd+bwd 1.09-1.15x against per-block loads)."""
    if TW2 and HOLD2:
        a = tl.arange(0, P)[None, :] * Q + tl.arange(0, Q)[:, None]
        b = tl.arange(0, P)[:, None] * Q + tl.arange(0, Q)[None, :]
        t2t = (tl.load(t2r_ptr + a), tl.load(t2i_ptr + a), tl.load(t2r_ptr + b), tl.load(t2i_ptr + b))
    else:
        z = tl.zeros((1, 1), dtype=tl.float32)
        t2t = (z, z, z, z)
    return (_mat(fpr_ptr, P, P, P, PREC), _mat(fpi_ptr, P, P, P, PREC), _mat(fqr_ptr, Q, Q, Q, PREC),
            _mat(fqi_ptr, Q, Q, Q, PREC), t2t)


@triton.jit
def _rows_fwd(s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
              P: tl.constexpr, Q: tl.constexpr, R: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr,
              BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 2, forward half: the length-M DFTs (P x Q, inner twiddle if TW2; without it the 2-D DFT
    of the (P, Q) row) of R scratch rows at off; m2 = :func:`_pass2_consts`.
    Returns the spectrum as (R*P, Q) tiles [(r, kp), kq] = frequency k1 + N1 (kp + P kq) of row k1 = rb + r (1-D)."""
    fpr, fpi, fqr, fqi, t2t = m2[0], m2[1], m2[2], m2[3], m2[4]
    # rows (r, p) of length Q -> (r, q) rows of length P: contract over p
    xr = _swap(tl.reshape(_operand(tl.load(s_re + off, eviction_policy="evict_last"), PREC), (R * P, Q)), R, P, Q)
    xi = _swap(tl.reshape(_operand(tl.load(s_im + off, eviction_policy="evict_last"), PREC), (R * P, Q)), R, P, Q)
    xr, xi = _cdot(xr, xi, fpr, fpi, BF16, PREC)
    if TW2:
        # inner twiddle w_M^(kp q) at tile [(r, q), kp]
        if HOLD2:
            # the held (Q, P) table repeats over the block's R rows: no gather from global memory
            tr = tl.reshape(tl.broadcast_to(t2t[0][None, :, :], (R, Q, P)), (R * Q, P))
            ti = tl.reshape(tl.broadcast_to(t2t[1][None, :, :], (R, Q, P)), (R * Q, P))
        else:
            rq = tl.arange(0, R * Q)[:, None] % Q
            jp = tl.arange(0, P)[None, :]
            tr = tl.load(t2r_ptr + jp * Q + rq)
            ti = tl.load(t2i_ptr + jp * Q + rq)
        xr, xi = xr * tr - xi * ti, xr * ti + xi * tr
    xr = _swap(_operand(xr, PREC), R, Q, P)
    xi = _swap(_operand(xi, PREC), R, Q, P)
    return _cdot(xr, xi, fqr, fqi, BF16, PREC)


@triton.jit
def _rows_inv(xr, xi, s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
              P: tl.constexpr, Q: tl.constexpr, R: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr,
              BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 2, inverse half (conj(F_Q), conj(twiddle), conj(F_P)) of tiles laid out as
    :func:`_rows_fwd` returns them, stored back into the scratch rows at off."""
    M: tl.constexpr = P * Q
    fpr, fpi, fqr, fqi, t2t = m2[0], m2[1], m2[2], m2[3], m2[4]
    xr, xi = _cdot(xr, xi, fqr, -fqi, BF16, PREC)
    if TW2:
        if HOLD2:
            tr = tl.reshape(tl.broadcast_to(t2t[2][None, :, :], (R, P, Q)), (R * P, Q))
            ti = tl.reshape(tl.broadcast_to(t2t[3][None, :, :], (R, P, Q)), (R * P, Q))
        else:
            rp = tl.arange(0, R * P)[:, None] % P
            jq = tl.arange(0, Q)[None, :]
            tr = tl.load(t2r_ptr + rp * Q + jq)
            ti = tl.load(t2i_ptr + rp * Q + jq)
        xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
    xr = _swap(_operand(xr, PREC), R, P, Q)
    xi = _swap(_operand(xi, PREC), R, P, Q)
    xr, xi = _cdot(xr, xi, fpr, -fpi, BF16, PREC)
    # cast to the scratch's dtype before the transpose: half its bytes with an fp16 scratch
    tl.store(s_re + off, tl.reshape(_swap(xr.to(s_re.dtype.element_ty), R, Q, P), (R, M)), eviction_policy="evict_last")
    tl.store(s_im + off, tl.reshape(_swap(xi.to(s_re.dtype.element_ty), R, Q, P), (R, M)), eviction_policy="evict_last")


@triton.jit
def _cols_inv(s_re, s_im, dst, row0, row1, has1, o0, o1, g1r, g1i, t1r_ptr, t1i_ptr, L, S1, S2,
              N1: tl.constexpr, M: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr,
              SINCOS: tl.constexpr, TW1: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr,
              BF16: tl.constexpr, PREC: tl.constexpr):
    """Pass 3: conj outer twiddle (TW1), inverse column DFTs for the NA output rows (g1r, g1i: conj(F1)'s
    (NA, N1) rows); real part times o0 -> dst row0, imaginary part times o1 -> dst row1 (fields on the padded grid,
    :func:`_field`). The D skip is in the spectrum (:func:`_spectrum_tiles`), so no input is read again."""
    for cb in range(0, M, BC):
        c = cb + tl.arange(0, BC)[None, :]
        k1 = tl.arange(0, N1)[:, None]
        pos = tl.arange(0, NA)[:, None] * M + c
        tw = k1 * M + c
        xr = tl.load(s_re + tw, eviction_policy="evict_last").to(tl.float32)
        xi = tl.load(s_im + tw, eviction_policy="evict_last").to(tl.float32)
        if TW1:
            tr, ti = _outer_tw(t1r_ptr, t1i_ptr, k1, c, N1, M, SINCOS, PREC)
            xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
        yr, yi = _cdot(g1r, g1i, _operand(xr, PREC), _operand(xi, PREC), BF16, PREC)
        if G1 == 0:
            m, msk = pos, pos < L
        else:
            m, msk = _field(pos, L, S1, S2, G1, G2)
        tl.store(dst + row0 + m, (yr * o0).to(dst.dtype.element_ty), mask=msk, eviction_policy="evict_first")
        tl.store(dst + row1 + m, (yi * o1).to(dst.dtype.element_ty), mask=msk & has1, eviction_policy="evict_first")


@triton.jit
def _long_kernel(
    u_ptr, kt_ptr, ks_ptr, mu_ptr, y_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    B, H, L, S1, S2, NPAIRS, PB, NPROG, LOG2U, KMUL,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    CONJ: tl.constexpr, SINCOS: tl.constexpr, TW1: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr,
    G1: tl.constexpr, G2: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr,
):
    M: tl.constexpr = P * Q
    m2 = _pass2_consts(fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr, P, Q, TW2, HOLD2, PREC)
    f1r, f1i = _mat(f1r_ptr, N1, NA, N1, PREC), _mat(f1i_ptr, N1, NA, N1, PREC)
    g1r, g1i = _mat(f1r_ptr, NA, N1, N1, PREC), -_mat(f1i_ptr, NA, N1, N1, PREC)
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = _planes(s_ptr, NN, 2)
    s_im = s_re + NN
    for pair in range(pid, NPAIRS, NPROG):
        h = pair // PB
        b0 = (pair % PB) * 2
        row0, row1, has1 = _pair_rows(b0, h, H, L, B)
        # the scratch's range (SCRATCH_DTYPE): each row scaled by its own power of two before the two
        # share a complex row (also keeps a small row's result free of its partner's rounding), and
        # the spectrum by the channel's, undone on the way out; a zero row's output is exactly zero,
        # free of its partner's rounding
        kscale = tl.load(ks_ptr + h) * KMUL
        mu0, mu1 = _pair_scalar(mu_ptr, b0, h, H, has1)
        sc0 = tl.exp2(_pow2_exp(LOG2U, mu0))
        sc1 = tl.exp2(_pow2_exp(LOG2U, mu1))
        # the previous pair's pass 3 has read the scratch before this pass 1 overwrites it
        tl.debug_barrier()
        _cols_fwd(u_ptr, row0, row1, has1, sc0, sc1, s_re, s_im, f1r, f1i, t1r_ptr, t1i_ptr, L, S1, S2,
                  N1, M, NA, BC, SINCOS, TW1, G1, G2, BF16, PREC)
        tl.debug_barrier()
        for rb in range(0, N1, R):
            off = _row_block(rb, M, R)
            xr, xi = _rows_fwd(s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
                               P, Q, R, TW2, HOLD2, BF16, PREC)
            # the spectrum is stored in the tile order of _rows_fwd
            koff = h.to(tl.int64) * (2 * NN) + _tile_off(rb, P, Q, R)
            kr = tl.load(kt_ptr + koff) * kscale
            ki = tl.load(kt_ptr + NN + koff) * kscale
            if CONJ:
                ki = -ki
            xr, xi = xr * kr - xi * ki, xr * ki + xi * kr
            _rows_inv(xr, xi, s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
                      P, Q, R, TW2, HOLD2, BF16, PREC)
        tl.debug_barrier()
        _cols_inv(s_re, s_im, y_ptr, row0, row1, has1, tl.where(mu0 > 0, 1.0 / (sc0 * kscale), 0.0),
                  tl.where(mu1 > 0, 1.0 / (sc1 * kscale), 0.0),
                  g1r, g1i, t1r_ptr, t1i_ptr, L, S1, S2, N1, M, NA, BC, SINCOS, TW1, G1, G2, BF16, PREC)


@triton.jit
def _long_bwd_kernel(
    u_ptr, g_ptr, kt_ptr, ks_ptr, mu_ptr, mg_ptr, du_ptr, p_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    B, H, L, S1, S2, PB, NSPLIT, NWORK, NPROG, LOG2B, KMUL,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    SINCOS: tl.constexpr, TW1: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr,
    G1: tl.constexpr, G2: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr,
):
    # Backward of one channel's row pairs: z = u pair, w = g pair (the output gradient). Per pair,
    # both take passes 1-2 forward; the products conj(Z) W summed over this work item's pairs go to
    # p (its (2, n) row, tile order; _long_dk_kernel turns their sum into dk), and W conj(K) (K holds
    # D, see _spectrum_tiles) takes the inverse to du = correlation with k + D g. Work item = (channel, split of its pairs).
    # Rows are scaled by powers of two (mu, mg: each row's max |u|, |g|) so that a small row sharing a
    # complex transform with a large one keeps its own accuracy under tf32 products: g row b by 2^eg_b
    # (max |g| to 2^LOG2B; undone in du's pass 3); u row b by 2^(ec - eg_b), which makes every term
    # u_b g_b of the pair's cross-spectrum carry the same 2^ec (undone before the sum) while the
    # scaled u_b stays within 2^LOG2B: the pair's terms keep their relative sizes, and a row whose g is
    # zero adds nothing (scale 0). LOG2B and the channel's ks on K bound what the scratch holds, as in
    # _long_kernel, so that it may be fp16 (BWD_SCRATCH_DTYPE), and with KMUL every dot operand
    # (BWD_FP16_DOTS).
    M: tl.constexpr = P * Q
    m2 = _pass2_consts(fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr, P, Q, TW2, HOLD2, PREC)
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
        for pb in range(sp, PB, NSPLIT):
            row0, row1, has1 = _pair_rows(pb * 2, h, H, L, B)
            mu0, mu1 = _pair_scalar(mu_ptr, pb * 2, h, H, has1)
            mg0, mg1 = _pair_scalar(mg_ptr, pb * 2, h, H, has1)
            eg0 = _pow2_exp(LOG2B, mg0)
            eg1 = _pow2_exp(LOG2B, mg1)
            a0 = tl.where((mu0 > 0) & (mg0 > 0), _pow2_exp(LOG2B, mu0) + eg0, 1e9)
            a1 = tl.where((mu1 > 0) & (mg1 > 0), _pow2_exp(LOG2B, mu1) + eg1, 1e9)
            ec = tl.minimum(a0, a1)
            ec = tl.where(ec < 1e9, _normal_exp(ec), 0.0)
            su0 = tl.where(mg0 > 0, tl.exp2(_normal_exp(ec - eg0)), 0.0)
            su1 = tl.where(mg1 > 0, tl.exp2(_normal_exp(ec - eg1)), 0.0)
            inv_c = tl.exp2(-ec)
            kscale = tl.load(ks_ptr + h) * KMUL
            tl.debug_barrier()
            # F1 loaded per pair, not once per program as in the forward kernels: held through pass 2
            # it made this kernel far slower at L = 64K (run 32: fwd+bwd 41.6 against 32.3 ms)
            f1r, f1i = _mat(f1r_ptr, N1, NA, N1, PREC), _mat(f1i_ptr, N1, NA, N1, PREC)
            _cols_fwd(u_ptr, row0, row1, has1, su0, su1, z_re, z_im, f1r, f1i, t1r_ptr, t1i_ptr, L, S1, S2,
                      N1, M, NA, BC, SINCOS, TW1, G1, G2, BF16, PREC)
            _cols_fwd(g_ptr, row0, row1, has1, tl.exp2(eg0), tl.exp2(eg1), w_re, w_im, f1r, f1i, t1r_ptr, t1i_ptr, L, S1, S2,
                      N1, M, NA, BC, SINCOS, TW1, G1, G2, BF16, PREC)
            tl.debug_barrier()
            for rb in range(0, N1, R):
                off = _row_block(rb, M, R)
                zr, zi = _rows_fwd(z_re, z_im, off, m2, t2r_ptr, t2i_ptr,
                                   P, Q, R, TW2, HOLD2, BF16, PREC)
                wr, wi = _rows_fwd(w_re, w_im, off, m2, t2r_ptr, t2i_ptr,
                                   P, Q, R, TW2, HOLD2, BF16, PREC)
                poff = _tile_off(rb, P, Q, R)  # tile order of _rows_fwd
                pr = (zr * wr + zi * wi) * inv_c
                pi = (zr * wi - zi * wr) * inv_c
                if pb > sp:  # the same threads wrote these elements for the previous pair
                    pr += tl.load(p_re + poff)
                    pi += tl.load(p_im + poff)
                tl.store(p_re + poff, pr)
                tl.store(p_im + poff, pi)
                koff = h.to(tl.int64) * (2 * NN) + poff
                kr = tl.load(kt_ptr + koff) * kscale
                ki = tl.load(kt_ptr + NN + koff) * kscale
                xr, xi = wr * kr + wi * ki, wi * kr - wr * ki
                _rows_inv(xr, xi, w_re, w_im, off, m2, t2r_ptr, t2i_ptr,
                          P, Q, R, TW2, HOLD2, BF16, PREC)
            tl.debug_barrier()
            g1r, g1i = _mat(f1r_ptr, NA, N1, N1, PREC), -_mat(f1i_ptr, NA, N1, N1, PREC)
            _cols_inv(w_re, w_im, du_ptr, row0, row1, has1, tl.where(mg0 > 0, 1.0 / (tl.exp2(eg0) * kscale), 0.0),
                      tl.where(mg1 > 0, 1.0 / (tl.exp2(eg1) * kscale), 0.0), g1r, g1i, t1r_ptr, t1i_ptr, L, S1, S2,
                      N1, M, NA, BC, SINCOS, TW1, G1, G2, BF16, PREC)


@triton.jit
def _long_spectrum_kernel(
    k_ptr, d_ptr, kt_ptr, ks_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    H, LK, NPROG, inv_n, LOG2K,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    SINCOS: tl.constexpr, TW1: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr, PREC: tl.constexpr,
    HAS_D: tl.constexpr, DOTS16: tl.constexpr,
):
    # The kernel's spectrum for _long_kernel: row h of k (H, LK) — a causal 1-D kernel, or any kernel
    # already laid on the padded transform (N-D grids, centred rolls) — zero padded to n, through
    # passes 1-2 forward (as a complex row with zero imaginary part), plus D[h] (HAS_D), scaled by 1/n
    # and stored in pass 2's tile order, re plane then im plane of kt (H, 2, n); and
    # ks[h] = 2^-ceil(log2(sum |k[h]| + |D[h]|)) (1 for a zero kernel), the scale _long_kernel gives it.
    # DOTS16 (fp16 dot operands, SPECTRUM_FP16_DOTS): the row is scaled by a power of two so that every
    # partial sum of its transform, at most sum |k|, stays under 2^LOG2K, and unscaled before D is added.
    # (Two channels per complex transform, split by symmetry, measured slower: bench/README.md, run 51.)
    M: tl.constexpr = P * Q
    m2 = _pass2_consts(fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr, P, Q, TW2, HOLD2, PREC)
    f1r, f1i = _mat(f1r_ptr, N1, NA, N1, PREC), _mat(f1i_ptr, N1, NA, N1, PREC)
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = _planes(s_ptr, NN, 2)
    s_im = s_re + NN
    no_im = tl.zeros((1, 1), dtype=tl.int32) != 0  # a real row: the imaginary row is masked off
    for h in range(pid, H, NPROG):
        h = tl.cast(h, tl.int64)  # a Python int under the interpreter
        row = h * LK
        ksum = tl.zeros((BC,), dtype=tl.float32)
        for s in range(0, LK, BC):
            o = s + tl.arange(0, BC)
            ksum += tl.abs(tl.load(k_ptr + row + o, mask=o < LK, other=0.0).to(tl.float32))
        ksum = tl.sum(ksum, 0)
        if HAS_D:
            ksum += tl.abs(tl.load(d_ptr + h).to(tl.float32))
        tl.store(ks_ptr + h, tl.exp2(_pow2_exp(0.0, ksum)))
        if DOTS16:
            sk = tl.exp2(_pow2_exp(LOG2K, ksum))
        else:
            sk = tl.full((), 1.0, tl.float32)
        tl.debug_barrier()
        _cols_fwd(k_ptr, row, row, no_im, sk, sk, s_re, s_im, f1r, f1i, t1r_ptr, t1i_ptr, LK, 1, 1,
                  N1, M, NA, BC, SINCOS, TW1, 0, 1, False, PREC)
        tl.debug_barrier()
        for rb in range(0, N1, R):
            off = _row_block(rb, M, R)
            xr, xi = _rows_fwd(s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
                               P, Q, R, TW2, HOLD2, False, PREC)
            koff = h * (2 * NN) + _tile_off(rb, P, Q, R)
            xr = xr * (1.0 / sk)
            if HAS_D:
                xr += tl.load(d_ptr + h).to(tl.float32)
            tl.store(kt_ptr + koff, xr * inv_n)
            tl.store(kt_ptr + NN + koff, xi * ((1.0 / sk) * inv_n))


@triton.jit
def _long_dk_kernel(
    p_ptr, c_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    H, NSPLIT, NOUT, NPROG, inv_n,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    SINCOS: tl.constexpr, TW1: tl.constexpr, TW2: tl.constexpr, HOLD2: tl.constexpr, PREC: tl.constexpr,
):
    # The kernel gradient's last step: row h of c (H, NOUT) = the first NOUT values of
    # Re(ifft(S_h)), S_h = sum over the NSPLIT partial cross-spectra of channel h in p (tile order,
    # as _long_bwd_kernel leaves them): the sum, then the inverse passes 2 and 3.
    M: tl.constexpr = P * Q
    m2 = _pass2_consts(fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t2r_ptr, t2i_ptr, P, Q, TW2, HOLD2, PREC)
    g1r, g1i = _mat(f1r_ptr, NA, N1, N1, PREC), -_mat(f1i_ptr, NA, N1, N1, PREC)
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
            _rows_inv(xr * inv_n, xi * inv_n, s_re, s_im, off, m2, t2r_ptr, t2i_ptr,
                      P, Q, R, TW2, HOLD2, False, PREC)
        tl.debug_barrier()
        row = h * NOUT
        _cols_inv(s_re, s_im, c_ptr, row, row, no_im, 1.0, 1.0, g1r, g1i, t1r_ptr, t1i_ptr, NOUT, 1, 1,
                  N1, M, NA, BC, SINCOS, TW1, 0, 1, False, PREC)


# ----------------------------------------------------------------------------------------------
# host side

def plan_long(L: int, Lk: int, dtype=torch.float32) -> tuple[int, int, int] | None:
    """(N1, P, Q) of the long kernel for a length-L input and length-Lk kernel, or None."""
    lo, hi = LONG_N.get(dtype, (1, 0))
    n = _pow2_at_least(max(L + Lk - 1, 2))
    if n < lo or n > hi:
        return None
    return SPLITS.get(n.bit_length() - 1)


# N-D fields (2-D, 3-D) on the same kernels: the padded grid's axes are unions of the transform's
# levels (N1 | P | Q), whose twiddles are then partly absent. mode -> (outer twiddle, inner twiddle):
#   "3d":   axes (N1, P, Q): none, none
#   "rows": axes (N1, P*Q):  none, w_M (the second axis is a length-M four-step FFT)
#   "cols": axes (N1*P, Q):  w_(N1 P)^(k1 p), none
# The dot products need every level in 16 ... ND_MAX (N1 up to 128).
ND_MAX = 64
# Where the N-D path pays (H200, B = 4, centred full-size kernels, bench/results/fftconv_nd_h200_run24.json):
# at B x H = 1024 rows and padded grids of >= 16K values it measured 1.25-3.4x torch.fft forward and
# 1.4-3.2x fwd+bwd (fp32 and bf16); at 256 rows (128 row pairs for 264 programs) 0.41-1.5x forward;
# at 4K-8K values 1.0x / 0.8x; a (128, 512) grid in "rows" (N1 = 128) 0.92x forward; a 64 x 64 field
# padded on to (128, 256) 0.50-0.56x. Outside these bounds fftconv_nd takes torch.fft.
ND_MIN_N = 1 << 14
ND_MIN_ROWS = 1024
_TW = {"1d": (True, True), "3d": (False, False), "rows": (False, True), "cols": (True, False)}


class NDPlan(NamedTuple):
    """A fused N-D transform: split (N1, P, Q), mode (see _TW), padded grid G, field S (u's spatial shape)."""

    split: tuple[int, int, int]
    mode: str
    G: tuple[int, ...]
    S: tuple[int, ...]


def _levels(g: int) -> tuple[int, int] | None:
    """g = P * Q with 16 <= Q <= P <= ND_MAX (as square as possible), or None."""
    q = 1 << ((g.bit_length() - 1) // 2)
    p = g // q
    return (p, q) if 16 <= q and p <= ND_MAX else None


def plan_nd(S, Sk, circular: bool, dtype=torch.float32) -> NDPlan | None:
    """The fused plan for a 2-D or 3-D field S with kernel Sk, or None (torch.fft): not expressible in
    levels, or outside the measured range (ND_MIN_N; the caller checks ND_MIN_ROWS).

    Linear convolution pads each axis to a power of two >= S + Sk - 1 (and >= 16, the smallest dot);
    circular convolution needs each axis a power of two already. (Padding further so that an axis
    splits into levels, e.g. 128 x 128 -> 128 x 256, measured slower than torch.fft.)"""
    if circular:
        G = tuple(S)
        if any(g != _pow2_at_least(g) for g in G):
            return None
    else:
        G = tuple(max(16, _pow2_at_least(a + b - 1)) for a, b in zip(S, Sk))
    n = math.prod(G)
    if dtype not in LONG_N or not ND_MIN_N <= n <= LONG_N[dtype][1] or min(G) < 16:
        return None
    if len(G) == 3:
        if G[0] <= 128 and max(G[1:]) <= ND_MAX:
            return NDPlan(G, "3d", G, tuple(S))
        return None
    if len(G) == 2:
        pq = _levels(G[1])
        if G[0] <= ND_MAX and pq is not None:
            return NDPlan((G[0],) + pq, "rows", G, tuple(S))
        n1p = _levels(G[0])  # the first axis's two levels, N1 >= P
        if G[1] <= ND_MAX and n1p is not None:
            return NDPlan(n1p + (G[1],), "cols", G, tuple(S))
    return None


class Spectrum(NamedTuple):
    """A kernel's spectrum for the long kernels: tiles (H, 2, n) fp32, scale (H,) fp32 (SCRATCH_DTYPE)."""

    tiles: torch.Tensor
    scale: torch.Tensor


def _spectrum_tiles(k: torch.Tensor, plan, causal: bool, nd: NDPlan | None = None, D=None) -> Spectrum:
    """k (H, *Sk), D (H,) or None -> tiles (H, 2, n) fp32: re/im planes of (DFT_n(k_eff) + D) / n in pass
    2's tile order, by the Triton passes 1-2 (torch.fft and the reorder took 20-30% of the forward's
    time, bench/README.md); and the forward's scale per channel, 2^-ceil(log2(sum |k| + |D|)).

    k_eff is k zero padded to n (on the padded grid for N-D), rolled back by the centre on each axis
    when not causal. Position (k1, kp, kq) of the tile order holds frequency k1 + N1 (kp + P kq) (1-D).
    A causal 1-D kernel is read as it is (the kernel pads it); any other is laid out here first.
    D: the skip, y = k * u + D u = (k_eff + D delta) * u, and the DFT of delta (lag 0 at position 0,
    where the roll puts a centred kernel's centre) is 1 at every frequency; folded in here, the
    convolution kernels never read u (or, backward, g) a second time.
    """
    N1, P, Q = plan
    n = N1 * P * Q
    H = k.shape[0]
    src = k.detach()
    if nd is not None or not causal:
        grid = nd.G if nd is not None else (n,)
        src = src.new_zeros((H,) + tuple(grid))
        src[(slice(None),) + tuple(slice(0, s) for s in k.shape[1:])] = k.detach()
        if not causal:
            src = torch.roll(src, [-((s - 1) // 2) for s in k.shape[1:]], dims=tuple(range(1, k.dim())))
        src = src.reshape(H, n)
    kt = torch.empty(H, 2, n, device=k.device, dtype=torch.float32)
    ks = torch.empty(H, device=k.device, dtype=torch.float32)
    nprog = _nprog(H, k.device)
    scratch = torch.empty(nprog, 2, n, device=k.device, dtype=torch.float32)
    meta = _meta(plan, src.shape[1], TILE, nd)
    dots16 = _dots16(meta, SPECTRUM_FP16_DOTS)
    _long_spectrum_kernel[(nprog,)](
        src.contiguous(), D.detach() if D is not None else src, kt, ks, scratch, *_tables(plan, k.device, nd),
        H, src.shape[1], nprog, 1.0 / n, SCRATCH_LOG2_MAX, **meta, HAS_D=D is not None, DOTS16=dots16,
        num_warps=WARPS, num_stages=1,
    )
    return Spectrum(kt, ks)


_SIDE_STREAMS: dict = {}


def _side_stream(device) -> torch.cuda.Stream:
    """One extra CUDA stream per device, made once."""
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


def _nprog(nwork: int, device) -> int:
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(nwork, sms * PROGS_PER_SM))


def _tables(plan, device, nd: NDPlan | None = None) -> list[torch.Tensor]:
    """DFT matrices (N1, P, Q) and twiddles (outer N1 x M, inner P x Q) as re/im fp32 planes (a
    twiddle the mode leaves out is passed as a placeholder the kernel does not read)."""
    N1, P, Q = plan
    f1r, f1i = _dft(N1, device)
    fpr, fpi = _dft(P, device)
    fqr, fqi = _dft(Q, device)
    t1r, t1i = _twiddle(N1, P * Q, device)
    t2r, t2i = _twiddle(P, Q, device)
    if nd is not None and nd.mode == "cols":
        # w_(N1 P)^(k1 p) at [k1, p Q + q]: the first axis's four-step twiddle, constant along q
        key = ("T_cols", N1, P, Q, str(device))
        if key not in _CONSTS:
            tr, ti = _twiddle(N1, P, device)
            _CONSTS[key] = tuple(t[:, :, None].expand(N1, P, Q).reshape(N1, P * Q).contiguous() for t in (tr, ti))
        t1r, t1i = _CONSTS[key]
    return [f1r, f1i, fpr, fpi, fqr, fqi, t1r, t1i, t2r, t2i]


def _meta(plan, L: int, tile: int, nd: NDPlan | None = None, kind: str = "bwd") -> dict:
    """The constexprs every long kernel takes: the split (N1, P, Q), NA (column rows that hold data
    for the first L positions of the padded transform), BC (columns per pass-1/3 block), R (rows per
    pass-2 block), SINCOS, the twiddles the mode has (TW1, TW2), HOLD2 (the inner twiddle held per
    program; kind = "fwd" for the forward kernel, "bwd" for the others) and PREC."""
    N1, P, Q = plan
    M = P * Q
    R = min(N1, max(1, tile // M))
    tw1, tw2 = _TW[nd.mode if nd is not None else "1d"]
    return dict(N1=N1, P=P, Q=Q, NA=min(N1, max(16, _pow2_at_least(triton.cdiv(L, M)))),
                BC=min(M, max(16, tile // N1)), R=R, SINCOS=nd is None and N1 * M in SINCOS_N,
                TW1=tw1, TW2=tw2, HOLD2=R >= HOLD2_MIN_R[kind], PREC=_prec())


def _field_args(L: int, nd: NDPlan | None) -> tuple[tuple[int, int, int], dict]:
    """(extent, S1, S2) and the constexprs G1, G2 of :func:`_field` for a row of L values; the extent is
    one past the last padded position that holds field data (what NA is sized from)."""
    if nd is None:
        return (L, 1, 1), dict(G1=0, G2=1)
    G = (1,) * (3 - len(nd.G)) + tuple(nd.G)
    S = (1,) * (3 - len(nd.S)) + tuple(nd.S)
    extent = ((S[0] - 1) * G[1] + S[1] - 1) * G[2] + S[2]
    return (extent, S[1], S[2]), dict(G1=G[1], G2=G[2])


def launch(u: torch.Tensor, Kt: Spectrum, y: torch.Tensor, plan, conj: bool, nd: NDPlan | None = None,
           mu: torch.Tensor | None = None) -> torch.Tensor:
    """y = conv(u, k) (+ D u) for the rows of u (B, H, L) (L = the field's size for N-D) with the
    spectrum Kt of k (and D) from :func:`_spectrum_tiles`; conj=True: the correlation with k
    instead (the convolution's input gradient, + D g). mu: each row's max |u| ((B * H,) fp32), computed
    here when not given; returned (the backward reuses it)."""
    N1, P, Q = plan
    n = N1 * P * Q
    B, H, L = u.shape
    PB = triton.cdiv(B, 2)
    npairs = H * PB
    nprog = _nprog(npairs, u.device)
    scratch = torch.empty(nprog, 2, n, device=u.device, dtype=SCRATCH_DTYPE)
    (extent, S1, S2), fmeta = _field_args(L, nd)
    meta = _meta(plan, extent, TILE, nd, "fwd")
    if mu is None:
        mu = _row_absmax(u)
    dots16 = _dots16(meta, FP16_DOTS)
    ck = _long_kernel[(nprog,)](
        u, Kt.tiles, Kt.scale, mu, y, scratch, *_tables(plan, u.device, nd),
        # with fp16 operands the spectrum's 1/n is taken out of pass 2 (KMUL = n, put back with the
        # rows' scales in pass 3): inside pass 2, X K / n would fall to fp16's subnormals
        B, H, L, S1, S2, npairs, PB, nprog, _log2_bound(meta, dots16), float(n) if dots16 else 1.0,
        **meta, **fmeta, CONJ=conj,
        BF16=False,  # bf16 inputs take fp16 operands too: 3 more bits than bf16's, at the same rate
        num_warps=WARPS, num_stages=STAGES, **({"maxnreg": MAXNREG} if MAXNREG else {}),
    )
    _record(f"long_fwd_w{WARPS}_t{TILE}_{N1}", P, Q, ck)
    return mu


def launch_bwd(u: torch.Tensor, g: torch.Tensor, Kt: Spectrum, plan, kshape, causal: bool,
               nd: NDPlan | None, mu: torch.Tensor):
    """Input and kernel gradients of the long conv in one pass over u and g (both (B, H, L)), plus
    one small kernel for the kernel gradient's inverse transform. mu: the rows' max |u| ((B * H,),
    from :func:`launch`).

    Returns du (B, H, L) = correlation of g with k (+ D g, through Kt) and c (kshape = (H, *Sk)) fp32 with
    c[h, j] = sum_b sum_t g[b, h, t] u[b, h, t - j] at the lags j of k's taps (causal: j = tap index;
    centred: j = tap index - (Sk - 1) // 2 on each axis) — dk before the cast to k's dtype."""
    N1, P, Q = plan
    n = N1 * P * Q
    B, H, L = u.shape
    PB = triton.cdiv(B, 2)
    nprog = _nprog(H * PB, u.device)
    # a channel's pairs split over several work items only when there are fewer channels than programs
    nsplit = min(PB, triton.cdiv(nprog, H))
    nwork = H * nsplit
    nprog = min(nprog, nwork)
    scratch = torch.empty(nprog, 4, n, device=u.device, dtype=BWD_SCRATCH_DTYPE)
    psum = torch.empty(nwork, 2, n, device=u.device, dtype=torch.float32)
    du = torch.empty_like(u)
    tables = _tables(plan, u.device, nd)
    (extent, S1, S2), fmeta = _field_args(L, nd)
    meta = _meta(plan, extent, min(BWD_TILE, n // 2), nd)
    dots16 = _dots16(meta, BWD_FP16_DOTS)
    _long_bwd_kernel[(nprog,)](
        u, g, Kt.tiles, Kt.scale, mu, _row_absmax(g), du, psum, scratch, *tables,
        # KMUL as in launch
        B, H, L, S1, S2, PB, nsplit, nwork, nprog, _log2_bound(meta, dots16), float(n) if dots16 else 1.0,
        **meta, **fmeta,
        BF16=False,
        num_warps=BWD_WARPS, num_stages=1,
    )
    # the circular cross-correlation Re(ifft(sum_b conj(U_b) G_b)) on the padded grid: its first Lk
    # lags (causal 1-D), or all n, of which the taps' lags are gathered (k[i] sits at k_eff[(i - sh) mod n])
    Sk = tuple(kshape[1:])
    nout = Sk[0] if causal and nd is None else n
    c = torch.empty(H, nout, device=u.device, dtype=torch.float32)
    # its programs (one per channel, at most the backward's) use 2 of the scratch's 4 planes each, in
    # fp32 (the cross-spectrum's sums are not bounded): an fp16 scratch's bytes hold them
    nprog = _nprog(H, u.device)
    assert nprog <= scratch.shape[0]
    _long_dk_kernel[(nprog,)](
        psum, c, scratch.view(torch.float32), *tables, H, nsplit, nout, nprog, 1.0 / n,
        **_meta(plan, nout, TILE, nd), num_warps=WARPS, num_stages=1,
    )
    if nout == n:
        c = c.view((H,) + (nd.G if nd is not None else (n,)))
        dims = tuple(range(1, c.dim()))
        if not causal:
            c = torch.roll(c, [(s - 1) // 2 for s in Sk], dims=dims)
        c = c[(slice(None),) + tuple(slice(0, s) for s in Sk)]
    return du, c


def _long_fwd(u, k, D, plan, causal, nd):
    """Forward without autograd: u (B, H, ...) -> (y of u's shape, u as (B, H, L), the spectrum Kt, the
    rows' max |u| (B * H,))."""
    shape = u.shape
    u = u.contiguous().view(shape[0], shape[1], -1)
    if u.is_cuda:
        # the rows' maxima (bandwidth-bound) on a side stream, beside the spectrum kernel (latency-bound)
        main, side = torch.cuda.current_stream(u.device), _side_stream(u.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            mu = _row_absmax(u)
        Kt = _spectrum_tiles(k, plan, causal, nd, D)
        main.wait_stream(side)
        mu.record_stream(main)  # allocated on the side stream, used and freed on the main one
    else:
        mu, Kt = _row_absmax(u), _spectrum_tiles(k, plan, causal, nd, D)
    y = torch.empty_like(u)
    launch(u, Kt, y, plan, conj=False, nd=nd, mu=mu)
    return y.view(shape), u, Kt, mu


class _LongConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, k, D, plan, causal, nd):
        y, u, Kt, mu = _long_fwd(u, k, D, plan, causal, nd)
        ctx.save_for_backward(u, k, D, mu)
        ctx.Kt = Kt
        ctx.plan, ctx.causal, ctx.nd = plan, causal, nd
        return y

    @staticmethod
    def backward(ctx, gy):
        u, k, D, mu = ctx.saved_tensors
        Kt, nd = ctx.Kt, ctx.nd
        ctx.Kt = None
        g = gy.contiguous().to(u.dtype).view(u.shape)
        du = dk = dD = None
        if ctx.needs_input_grad[1]:
            du, c = launch_bwd(u, g, Kt, ctx.plan, tuple(k.shape), ctx.causal, nd, mu)
            dk = c.to(k.dtype)
            # dD = sum_b,t u g is the correlation at lag 0: the first tap (causal) or the centre tap
            lag0 = tuple(0 if ctx.causal else (s - 1) // 2 for s in k.shape[1:])
            dD_lag0 = c[(slice(None),) + lag0]
        elif ctx.needs_input_grad[0]:
            du = torch.empty_like(u)
            launch(g, Kt, du, ctx.plan, conj=True, nd=nd)
        if not ctx.needs_input_grad[0]:
            du = None
        else:
            du = du.view(gy.shape)
        if D is not None and ctx.needs_input_grad[2]:
            if dk is not None:
                dD = dD_lag0.to(D.dtype)
            else:
                dD = torch.einsum("bhl,bhl->h", u.float(), g.float()).to(D.dtype)
        return du, dk, dD, None, None, None


def fftconv_long(u: torch.Tensor, k: torch.Tensor, D, causal: bool, plan, nd: NDPlan | None = None) -> torch.Tensor:
    """Long FFT conv: 1-D with the plan from :func:`plan_long` (u (B, H, L), k (H, L')), or N-D with
    nd from :func:`plan_nd` (u (B, H, *S), k (H, *S'), plan = nd.split; linear or circular as planned).
    D (H,) or None. Returns u's shape and dtype. Through autograd only when a gradient is wanted (an
    autograd Function call costs host time, as in :func:`.triton_fftconv._apply`)."""
    if torch.is_grad_enabled() and (u.requires_grad or k.requires_grad or (D is not None and D.requires_grad)):
        return _LongConv.apply(u, k, D, plan, causal, nd)
    return _long_fwd(u, k, D, plan, causal, nd)[0]
