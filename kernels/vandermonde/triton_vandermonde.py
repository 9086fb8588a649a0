"""Triton Vandermonde kernel generation: K[h, l] = Re(sum_n C[h, n] z[h, n]^l), never materializing (H, N, L).

A program owns one row h and R blocks of BLOCK_L positions. For l = l0 + j (j < BLOCK_L) it
uses z^l = z^l0 * z^j: with the table z^j (BLOCK_N, BLOCK_L), made once per program and block of
nodes, and the R x BLOCK_N powers z^l0, the sum over nodes is a matrix product (tl.dot in full
fp32), instead of an exp, cos and sin per element. Powers are exp(l log|z|) (cos + i sin)(l arg z) with
the phase l*arg(z) formed in fp64 and reduced modulo one turn before the fp32 cos/sin: in fp32 the
product alone loses ~1e-3 rad at l ~ 1e4, more than the rest of the error budget. The backward
uses the same tables:
    dC[h, n] = sum_l g[h, l] conj(z^l)      = sum_l0 conj(z^l0) sum_j g[h, l0 + j] conj(z^j)
    dz[h, n] = conj(C / z) * sum_l l g[h, l] conj(z^l)
(torch's convention for complex gradients: dL/dRe + i dL/dIm); the programs of one row add their
sums atomically.
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
    """Offsets and mask of nodes n0 ... n0 + BLOCK_N - 1 of row h, their log|z| (1, BLOCK_N) and
    arg/2pi (fp64), and the table z^j as (BLOCK_N, BLOCK_L) re/im; masked nodes give z = 1."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    mn = offs_n < N
    idx = h * N + offs_n
    lm = tl.load(lm_ptr + idx, mask=mn, other=0.0)
    tu = tl.load(tu_ptr + idx, mask=mn, other=0.0)
    vr, vi = _powers(lm[:, None], tu[:, None], tl.arange(0, BLOCK_L)[None, :])
    return idx, mn, lm[None, :], tu[None, :], vr, vi


@triton.jit
def _vandermonde_fwd_kernel(
    cr_ptr, ci_ptr, lm_ptr, tu_ptr, k_ptr,
    N, L,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, R: tl.constexpr,
):
    # a program: row h, positions l = l0_r + j with l0_r = (pid_l R + r) BLOCK_L, r < R, j < BLOCK_L.
    # K[r, j] = Re(sum_n (C z^l0_r)[r, n] (z^j)[n, j]): two real (R, BLOCK_N) @ (BLOCK_N, BLOCK_L)
    # products per block of nodes, in full fp32 (tf32 would cost ~1e-3)
    pid_l = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    l0 = (pid_l * R + tl.arange(0, R)[:, None]) * BLOCK_L  # (R, 1)
    pos = l0 + tl.arange(0, BLOCK_L)[None, :]
    acc = tl.zeros((R, BLOCK_L), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        idx, mn, lm, tu, vr, vi = _nodes(lm_ptr, tu_ptr, h, n0, N, BLOCK_N, BLOCK_L)
        # masked nodes get C = 0 so they add nothing
        cr = tl.load(cr_ptr + idx, mask=mn, other=0.0)[None, :]
        ci = tl.load(ci_ptr + idx, mask=mn, other=0.0)[None, :]
        pr, pi = _powers(lm, tu, l0)  # z^l0: (R, BLOCK_N)
        wr = cr * pr - ci * pi
        wi = cr * pi + ci * pr
        acc += tl.dot(wr, vr, input_precision="ieee") - tl.dot(wi, vi, input_precision="ieee")
    tl.store(k_ptr + h * L + pos, acc, mask=pos < L)


@triton.jit
def _vandermonde_bwd_kernel(
    g_ptr, lm_ptr, tu_ptr, s1r_ptr, s1i_ptr, s2r_ptr, s2i_ptr,
    N, L,
    BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, R: tl.constexpr,
):
    # the same positions as the forward; per block of nodes A[r, n] = sum_j g[r, j] conj(z^j)[n, j]
    # (products with the transposed table), then sum_r conj(z^l0_r) A[r, n] (and with g l for dz)
    pid_l = tl.program_id(0)
    h = tl.program_id(1).to(tl.int64)
    l0 = (pid_l * R + tl.arange(0, R)[:, None]) * BLOCK_L
    pos = l0 + tl.arange(0, BLOCK_L)[None, :]
    g = tl.load(g_ptr + h * L + pos, mask=pos < L, other=0.0)
    gl = g * pos.to(tl.float32)
    for n0 in range(0, N, BLOCK_N):
        idx, mn, lm, tu, vr, vi = _nodes(lm_ptr, tu_ptr, h, n0, N, BLOCK_N, BLOCK_L)
        vrt = tl.trans(vr)
        vit = tl.trans(vi)
        ar = tl.dot(g, vrt, input_precision="ieee")
        ai = -tl.dot(g, vit, input_precision="ieee")
        br = tl.dot(gl, vrt, input_precision="ieee")
        bi = -tl.dot(gl, vit, input_precision="ieee")
        pr, pi = _powers(lm, tu, l0)
        tl.atomic_add(s1r_ptr + idx, tl.sum(pr * ar + pi * ai, axis=0), mask=mn, sem="relaxed")
        tl.atomic_add(s1i_ptr + idx, tl.sum(pr * ai - pi * ar, axis=0), mask=mn, sem="relaxed")
        tl.atomic_add(s2r_ptr + idx, tl.sum(pr * br + pi * bi, axis=0), mask=mn, sem="relaxed")
        tl.atomic_add(s2i_ptr + idx, tl.sum(pr * bi - pi * br, axis=0), mask=mn, sem="relaxed")


# nodes per table (up to; at least 16 for tl.dot), positions per block, blocks per program (>= 16), warps
CFG = dict(max_block_n=64, block_l=64, blocks=16, num_warps=4)


def _launch(kernel, args, H: int, N: int, L: int):
    """Grid (groups of CFG["blocks"] position blocks, rows) and block sizes for one of the two kernels."""
    bn = min(CFG["max_block_n"], max(16, triton.next_power_of_2(N)))
    bl, r = CFG["block_l"], CFG["blocks"]
    kernel[(triton.cdiv(L, bl * r), H)](*args, N, L, BLOCK_N=bn, BLOCK_L=bl, R=r, num_warps=CFG["num_warps"])


def _prep(z: torch.Tensor):
    """log|z| (fp32) and arg(z)/2pi (fp64 in [-1/2, 1/2]) for the kernels, computed in fp64.

    The turns stay fp64: rounded to fp32 they would move the phase l arg(z) by up to ~2e-7 l rad."""
    z64 = z.to(torch.complex128)
    return z64.abs().log().float().contiguous(), (z64.angle() / _TWO_PI).contiguous()


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
