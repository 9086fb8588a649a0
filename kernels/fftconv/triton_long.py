"""Long causal 1-D FFT convolution (padded transform n = 8K ... 512K) as a three-level Triton kernel.

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

All DFT contractions are ``tl.dot`` products of complex tiles (4 real products each). The
program loops over row pairs (a persistent grid of NPROG programs), so the scratch is
NPROG x n complex whatever B and H (the O(chunk) workspace); the DFT matrices, twiddles and
spectrum are shared by all programs and read through L2.

The spectrum is precomputed by torch.fft (an (H, n) transform, 1/(2B) of the work of the batch)
in the tile order of pass 2, already scaled by 1/n. Backward: du is the same kernel with the
conjugate spectrum (correlation); dk and dD are per-batch-row sums through torch.fft, one
batch row at a time so the workspace stays O(H n).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_fftconv import _dft_matrix as _dft
from .triton_fftconv import _dot, _pow2_at_least, _prec, _twiddle

# (min n, max n) of the padded transform given to this kernel per input dtype; outside it the
# dispatcher uses the one-tile kernel (smaller n) or torch.fft. Measured on an H200
# (bench/results/fftconv_long_h200.json): 1.0-1.25x torch.fft forward for n = 8K ... 128K
# (L = 4K ... 64K), 0.42x at n = 512K (L = 256K, B = 1), hence the upper bound.
LONG_N = {torch.float32: (8192, 1 << 17), torch.bfloat16: (8192, 1 << 17), torch.float16: (8192, 1 << 17)}

# default (N1, P, Q) per log2 n; bench/fftconv.py --sweep-long tries others via SPLITS
SPLITS = {
    12: (16, 16, 16),
    13: (32, 16, 16),
    14: (64, 16, 16),
    15: (32, 32, 32),
    16: (64, 32, 32),
    17: (128, 32, 32),
    18: (128, 64, 32),
    19: (128, 64, 64),
}
# complex values per on-chip tile in passes 1-3, warps, programs per SM (persistent grid)
TILE = 4096
WARPS = 8
PROGS_PER_SM = 2
# dot operands for bf16 inputs: True = bf16 operands (faster, ~1e-2 error), False = tf32 like fp32
BF16_DOTS = False


@triton.jit
def _cdot(ar, ai, br, bi, BF16: tl.constexpr, PREC: tl.constexpr):
    """(ar + i ai) @ (br + i bi) as four real tensor-core products."""
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
def _long_kernel(
    u_ptr, kt_ptr, d_ptr, y_ptr, s_ptr,
    f1r_ptr, f1i_ptr, fpr_ptr, fpi_ptr, fqr_ptr, fqi_ptr, t1r_ptr, t1i_ptr, t2r_ptr, t2i_ptr,
    B, H, L, NPAIRS, PB, NPROG,
    N1: tl.constexpr, P: tl.constexpr, Q: tl.constexpr, NA: tl.constexpr, BC: tl.constexpr, R: tl.constexpr,
    CONJ: tl.constexpr, HAS_D: tl.constexpr, BF16: tl.constexpr, PREC: tl.constexpr,
):
    M: tl.constexpr = P * Q
    NN: tl.constexpr = N1 * M
    pid = tl.program_id(0)
    s_re = s_ptr + pid.to(tl.int64) * (2 * NN)
    s_im = s_re + NN
    a = tl.arange(0, NA)[:, None]
    k1 = tl.arange(0, N1)[:, None]
    for pair in range(pid, NPAIRS, NPROG):
        h = pair // PB
        b0 = (pair % PB) * 2
        row0 = (b0 * H + h).to(tl.int64) * L
        row1 = ((b0 + 1) * H + h).to(tl.int64) * L
        # tensor-valued (a scalar bool mask breaks when B specializes to 1 or 2)
        n_b = tl.zeros((NA, 1), dtype=tl.int32) + b0 + 1
        has1 = n_b < B
        # the previous pair's pass 3 has read the scratch before this pass 1 overwrites it
        tl.debug_barrier()
        # ---- pass 1: column DFTs (length N1, only NA nonzero inputs) and the outer twiddle
        for cb in range(0, M, BC):
            c = cb + tl.arange(0, BC)[None, :]
            m = a * M + c
            msk = m < L
            zr = tl.load(u_ptr + row0 + m, mask=msk, other=0.0).to(tl.float32)
            zi = tl.load(u_ptr + row1 + m, mask=msk & has1, other=0.0).to(tl.float32)
            xr, xi = _cdot(_mat(f1r_ptr, N1, NA, N1), _mat(f1i_ptr, N1, NA, N1), zr, zi, BF16, PREC)
            tw = k1 * M + c
            tr = tl.load(t1r_ptr + tw)
            ti = tl.load(t1i_ptr + tw)
            tl.store(s_re + tw, xr * tr - xi * ti)
            tl.store(s_im + tw, xr * ti + xi * tr)
        tl.debug_barrier()
        # ---- pass 2: per row k1, the length-M DFT (P x Q), the spectrum, the inverse
        rq = tl.arange(0, R * Q)[:, None] % Q
        rp = tl.arange(0, R * P)[:, None] % P
        jp = tl.arange(0, P)[None, :]
        jq = tl.arange(0, Q)[None, :]
        for rb in range(0, N1, R):
            off = rb * M + tl.arange(0, R)[:, None] * M + tl.arange(0, M)[None, :]
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
            xr, xi = _cdot(xr, xi, _mat(fqr_ptr, Q, Q, Q), _mat(fqi_ptr, Q, Q, Q), BF16, PREC)
            # tile [(r, kp), kq] is frequency k1 + N1 (kp + P kq): the spectrum is stored in this order
            koff = h.to(tl.int64) * (2 * NN) + rb * M + tl.arange(0, R * P)[:, None] * Q + jq
            kr = tl.load(kt_ptr + koff)
            ki = tl.load(kt_ptr + NN + koff)
            if CONJ:
                ki = -ki
            xr, xi = xr * kr - xi * ki, xr * ki + xi * kr
            # inverse: conj(F_Q), conj(twiddle), conj(F_P)
            xr, xi = _cdot(xr, xi, _mat(fqr_ptr, Q, Q, Q), -_mat(fqi_ptr, Q, Q, Q), BF16, PREC)
            tr = tl.load(t2r_ptr + rp * Q + jq)
            ti = tl.load(t2i_ptr + rp * Q + jq)
            xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
            xr = _swap(xr, R, P, Q)
            xi = _swap(xi, R, P, Q)
            xr, xi = _cdot(xr, xi, _mat(fpr_ptr, P, P, P), -_mat(fpi_ptr, P, P, P), BF16, PREC)
            tl.store(s_re + off, tl.reshape(_swap(xr, R, Q, P), (R, M)))
            tl.store(s_im + off, tl.reshape(_swap(xi, R, Q, P), (R, M)))
        tl.debug_barrier()
        # ---- pass 3: conj outer twiddle, inverse column DFTs for the NA output rows, D skip
        if HAS_D:
            dh = tl.load(d_ptr + h).to(tl.float32)
        for cb in range(0, M, BC):
            c = cb + tl.arange(0, BC)[None, :]
            tw = k1 * M + c
            xr = tl.load(s_re + tw)
            xi = tl.load(s_im + tw)
            tr = tl.load(t1r_ptr + tw)
            ti = tl.load(t1i_ptr + tw)
            xr, xi = xr * tr + xi * ti, xi * tr - xr * ti
            yr, yi = _cdot(_mat(f1r_ptr, NA, N1, N1), -_mat(f1i_ptr, NA, N1, N1), xr, xi, BF16, PREC)
            m = a * M + c
            msk = m < L
            if HAS_D:
                yr += dh * tl.load(u_ptr + row0 + m, mask=msk, other=0.0).to(tl.float32)
                yi += dh * tl.load(u_ptr + row1 + m, mask=msk & has1, other=0.0).to(tl.float32)
            tl.store(y_ptr + row0 + m, yr.to(y_ptr.dtype.element_ty), mask=msk)
            tl.store(y_ptr + row1 + m, yi.to(y_ptr.dtype.element_ty), mask=msk & has1)


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
    (k1, kp, kq) of the tile order holds frequency k1 + N1 (kp + P kq).
    """
    N1, P, Q = plan
    n = N1 * P * Q
    H, Lk = k.shape
    kf = k.detach().float()
    if not causal:
        sh = (Lk - 1) // 2
        kf = torch.cat([kf[:, sh:], kf.new_zeros(H, n - Lk), kf[:, :sh]], dim=1)
    K = torch.fft.fft(kf, n=n) / n
    # frequency f = k1 + N1 kp + N1 P kq -> view (H, kq, kp, k1), then to (k1, kp, kq)
    K = K.view(H, Q, P, N1).permute(0, 3, 2, 1).reshape(H, n)
    return torch.stack([K.real, K.imag], dim=1).contiguous()


def _nprog(npairs: int, device) -> int:
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    return max(1, min(npairs, sms * PROGS_PER_SM))


def launch(u: torch.Tensor, Kt: torch.Tensor, D, y: torch.Tensor, plan, conj: bool) -> None:
    """y = conv(u, k) (+ D u) for the rows of u (B, H, L) with the tile-order spectrum Kt."""
    N1, P, Q = plan
    M = P * Q
    B, H, L = u.shape
    NA = min(N1, max(16, _pow2_at_least(triton.cdiv(L, M))))
    BC = min(M, max(16, TILE // N1))
    R = min(N1, max(1, TILE // M))
    PB = triton.cdiv(B, 2)
    npairs = H * PB
    nprog = _nprog(npairs, u.device)
    scratch = torch.empty(nprog, 2, N1 * M, device=u.device, dtype=torch.float32)
    f1r, f1i = _dft(N1, u.device)
    fpr, fpi = _dft(P, u.device)
    fqr, fqi = _dft(Q, u.device)
    t1r, t1i = _twiddle(N1, M, u.device)
    t2r, t2i = _twiddle(P, Q, u.device)
    bf16 = BF16_DOTS and u.dtype == torch.bfloat16
    _long_kernel[(nprog,)](
        u, Kt, D if D is not None else u, y, scratch,
        f1r, f1i, fpr, fpi, fqr, fqi, t1r, t1i, t2r, t2i,
        B, H, L, npairs, PB, nprog,
        N1=N1, P=P, Q=Q, NA=NA, BC=BC, R=R, CONJ=conj, HAS_D=D is not None, BF16=bf16, PREC=_prec(),
        num_warps=WARPS, num_stages=1,  # software pipelining multiplies shared memory past the limit
    )


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
        if ctx.needs_input_grad[0]:
            du = torch.empty_like(u)
            launch(g, Kt, D, du, ctx.plan, conj=True)
        if ctx.needs_input_grad[1]:
            dk = _grad_k(u, g, k.shape[1], ctx.plan, ctx.causal).to(k.dtype)
        if D is not None and ctx.needs_input_grad[2]:
            dD = torch.einsum("bhl,bhl->h", u.float(), g.float()).to(D.dtype)
        return du, dk, dD, None, None


def _grad_k(u, g, Lk, plan, causal):
    """dk[j] = sum_b sum_t g[b, t] u[b, t - j] (circularly in n, gathered back into k), one row of b at a time."""
    N1, P, Q = plan
    n = N1 * P * Q
    acc = None
    for b in range(u.shape[0]):
        U = torch.fft.rfft(u[b].float(), n=n)
        G = torch.fft.rfft(g[b].float(), n=n)
        prod = torch.conj(U) * G
        acc = prod if acc is None else acc + prod
    c = torch.fft.irfft(acc, n=n)
    if causal:
        return c[:, :Lk]
    sh = (Lk - 1) // 2
    # k[i] sits at k_eff[(i - sh) mod n]
    return torch.cat([c[:, n - sh:], c[:, :Lk - sh]], dim=1)


def fftconv_long(u: torch.Tensor, k: torch.Tensor, D, causal: bool, plan) -> torch.Tensor:
    """Long 1-D FFT conv with the plan from :func:`plan_long`: u (B, H, L), k (H, L'), D (H,) → (B, H, L)."""
    return _LongConv.apply(u, k, D, plan, causal)
