"""Triton Vandermonde kernel generation: K[h, l] = Re(sum_n C[h, n] z[h, n]^l), never materializing (H, N, L).

A program owns one row h and a chunk of positions. For l = l0 + j (j < BLOCK_L) it uses
z^l = z^l0 * z^j: the table z^j (BLOCK_N, BLOCK_L) is made once per program and block of nodes,
then each block of positions costs one power z^l0 per node and one complex product per element,
instead of an exp, cos and sin per element. Powers are exp(l log|z|) (cos + i sin)(l arg z) with
the phase l*arg(z) formed in fp64 and reduced modulo one turn before the fp32 cos/sin: in fp32 the
product alone loses ~1e-3 rad at l ~ 1e4, more than the rest of the error budget. The backward
uses the same tables:
    dC[h, n] = sum_l g[h, l] conj(z^l)      = sum_l0 conj(z^l0) sum_j g[h, l0 + j] conj(z^j)
    dz[h, n] = conj(C / z) * sum_l l g[h, l] conj(z^l)
(torch's convention for complex gradients: dL/dRe + i dL/dIm); chunks of one row add their sums
atomically.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_TWO_PI = 2.0 * math.pi


@triton.jit
def _powers(logmag, turns, l):
    """(re, im) of z^l from log|z| and arg(z)/2pi (fp64) (broadcast tensors), l integer positions."""
    lf = l.to(tl.float32)
    t = l.to(tl.float64) * turns
    t = (t - tl.floor(t)).to(tl.float32) * 6.283185307179586
    mag = tl.exp(lf * logmag)
    return mag * tl.cos(t), mag * tl.sin(t)


@triton.jit
def _nodes(lm_ptr, tu_ptr, h, n0, N, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """Offsets and mask of nodes n0 ... n0 + BLOCK_N - 1 of row h, their log|z|, arg/2pi, and the
    table z^j (BLOCK_N, BLOCK_L); masked nodes get log|z| = 0, turns = 0."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    mn = offs_n < N
    idx = h * N + offs_n
    lm = tl.load(lm_ptr + idx, mask=mn, other=0.0)
    tu = tl.load(tu_ptr + idx, mask=mn, other=0.0).to(tl.float64)
    vr, vi = _powers(lm[:, None], tu[:, None], tl.arange(0, BLOCK_L)[None, :])
    return idx, mn, lm, tu, vr, vi


@triton.jit
def _vandermonde_fwd_kernel(
    cr_ptr, ci_ptr, lm_ptr, tu_ptr, k_ptr,
    H, N, L, LCHUNK,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_l = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    j = tl.arange(0, BLOCK_L)
    l_lo = pid_l * LCHUNK
    l_hi = tl.minimum(l_lo + LCHUNK, L)
    for n0 in range(0, N, BLOCK_N):
        idx, mn, lm, tu, vr, vi = _nodes(lm_ptr, tu_ptr, h, n0, N, BLOCK_N, BLOCK_L)
        # masked nodes get C = 0 so they add nothing
        cr = tl.load(cr_ptr + idx, mask=mn, other=0.0)
        ci = tl.load(ci_ptr + idx, mask=mn, other=0.0)
        for l0 in range(l_lo, l_hi, BLOCK_L):
            pr, pi = _powers(lm, tu, l0 + tl.zeros_like(idx))
            wr = cr * pr - ci * pi  # C z^l0
            wi = cr * pi + ci * pr
            k = tl.sum(wr[:, None] * vr - wi[:, None] * vi, axis=0)
            out = k_ptr + h * L + l0 + j
            ml = l0 + j < l_hi
            if n0 > 0:  # this program stored these positions for the previous block of nodes
                k += tl.load(out, mask=ml, other=0.0)
            tl.store(out, k, mask=ml)


@triton.jit
def _vandermonde_bwd_kernel(
    g_ptr, lm_ptr, tu_ptr, s1r_ptr, s1i_ptr, s2r_ptr, s2i_ptr,
    H, N, L, LCHUNK,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_l = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    j = tl.arange(0, BLOCK_L)
    l_lo = pid_l * LCHUNK
    l_hi = tl.minimum(l_lo + LCHUNK, L)
    for n0 in range(0, N, BLOCK_N):
        idx, mn, lm, tu, vr, vi = _nodes(lm_ptr, tu_ptr, h, n0, N, BLOCK_N, BLOCK_L)
        s1r = tl.zeros((BLOCK_N,), dtype=tl.float32)
        s1i = tl.zeros((BLOCK_N,), dtype=tl.float32)
        s2r = tl.zeros((BLOCK_N,), dtype=tl.float32)
        s2i = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for l0 in range(l_lo, l_hi, BLOCK_L):
            g = tl.load(g_ptr + h * L + l0 + j, mask=l0 + j < l_hi, other=0.0)[None, :]
            gl = g * (l0 + j).to(tl.float32)[None, :]
            # sum_j g conj(z^j), then times conj(z^l0)
            ar = tl.sum(g * vr, axis=1)
            ai = -tl.sum(g * vi, axis=1)
            br = tl.sum(gl * vr, axis=1)
            bi = -tl.sum(gl * vi, axis=1)
            pr, pi = _powers(lm, tu, l0 + tl.zeros_like(idx))
            s1r += pr * ar + pi * ai
            s1i += pr * ai - pi * ar
            s2r += pr * br + pi * bi
            s2i += pr * bi - pi * br
        tl.atomic_add(s1r_ptr + idx, s1r, mask=mn, sem="relaxed")
        tl.atomic_add(s1i_ptr + idx, s1i, mask=mn, sem="relaxed")
        tl.atomic_add(s2r_ptr + idx, s2r, mask=mn, sem="relaxed")
        tl.atomic_add(s2i_ptr + idx, s2i, mask=mn, sem="relaxed")


# nodes per table (up to), positions per block, blocks per program (a chunk of L), warps
CFG = dict(max_block_n=64, block_l=64, chunk_blocks=16, num_warps=4)


def _launch(kernel, args, H: int, N: int, L: int):
    """Grid (chunks of L, rows) and block sizes from CFG for one of the two kernels."""
    bn = min(CFG["max_block_n"], max(2, triton.next_power_of_2(N)))
    bl = CFG["block_l"]
    chunk = bl * CFG["chunk_blocks"]
    kernel[(triton.cdiv(L, chunk), H)](*args, H, N, L, chunk, BLOCK_N=bn, BLOCK_L=bl, num_warps=CFG["num_warps"])


def _prep(z: torch.Tensor):
    """log|z| (fp32) and arg(z)/2pi (fp32 in [-1/2, 1/2]) for the kernels, computed in fp64."""
    z64 = z.to(torch.complex128)
    return z64.abs().log().float().contiguous(), (z64.angle() / _TWO_PI).float().contiguous()


class _Vandermonde(torch.autograd.Function):
    @staticmethod
    def forward(ctx, C: torch.Tensor, z: torch.Tensor, L: int):
        H, N = C.shape
        lm, tu = _prep(z)
        cr = C.real.float().contiguous()
        ci = C.imag.float().contiguous()
        K = torch.empty(H, L, device=C.device, dtype=torch.float32)
        _launch(_vandermonde_fwd_kernel, (cr, ci, lm, tu, K), H, N, L)
        ctx.save_for_backward(C, z, lm, tu)
        ctx.L = L
        return K

    @staticmethod
    def backward(ctx, gK: torch.Tensor):
        C, z, lm, tu = ctx.saved_tensors
        H, N = C.shape
        L = ctx.L
        g = gK.float().contiguous()
        s = [torch.zeros(H, N, device=C.device, dtype=torch.float32) for _ in range(4)]
        _launch(_vandermonde_bwd_kernel, (g, lm, tu, *s), H, N, L)
        s1 = torch.complex(s[0], s[1])
        s2 = torch.complex(s[2], s[3])
        dC = s1.to(C.dtype) if ctx.needs_input_grad[0] else None
        dz = (torch.conj(C / z) * s2).to(z.dtype) if ctx.needs_input_grad[1] else None
        return dC, dz, None


def vandermonde_triton(C: torch.Tensor, z: torch.Tensor, L: int) -> torch.Tensor:
    """K (..., L) = Re(sum_n C[..., n] z[..., n]^l) through Triton; C, z complex (..., N), broadcastable.

    Returns fp32 K (the phases and sums are fp32 whatever the complex width; complex128
    inputs go to the reference, which keeps fp64 for gradcheck). Differentiable in C and z.
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    if not (C.is_complex() and z.is_complex()):
        raise ValueError("C and z must be complex tensors")
    if C.dtype == torch.complex128 or z.dtype == torch.complex128:
        from .reference import vandermonde_ref

        return vandermonde_ref(C, z, L)
    Cb, zb = torch.broadcast_tensors(C, z)
    lead = Cb.shape[:-1]
    N = Cb.shape[-1]
    K = _Vandermonde.apply(Cb.reshape(-1, N), zb.reshape(-1, N), int(L))
    return K.reshape(*lead, L)
