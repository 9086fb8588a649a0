"""Triton Vandermonde kernel generation: K[h, l] = Re(sum_n C[h, n] z[h, n]^l), never materializing (H, N, L).

Each program owns a tile of BLOCK_H rows and BLOCK_L positions and loops over the N nodes.
z^l is exp(l log|z|) (cos + i sin)(l arg z). The phase l*arg(z) is formed in fp64 and reduced
modulo one turn before the fp32 cos/sin: in fp32 the product alone loses ~1e-3 rad at l ~ 1e4,
which is larger than the rest of the error budget. The backward uses the same tiling with the
roles of n and l swapped:
    dC[h, n] = sum_l g[h, l] conj(z^l)
    dz[h, n] = conj(C / z) * sum_l l g[h, l] conj(z^l)
(torch's convention for complex gradients: dL/dRe + i dL/dIm).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

_TWO_PI = 2.0 * math.pi


@triton.jit
def _powers(logmag, turns, l):
    """(re, im) of z^l from log|z| and arg(z)/2pi (broadcast tensors), l integer positions."""
    lf = l.to(tl.float32)
    t = l.to(tl.float64) * turns
    t = (t - tl.floor(t)).to(tl.float32) * 6.283185307179586
    mag = tl.exp(lf * logmag)
    return mag * tl.cos(t), mag * tl.sin(t)


@triton.jit
def _vandermonde_fwd_kernel(
    cr_ptr, ci_ptr, lm_ptr, tu_ptr, k_ptr,
    H, N, L,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mh = offs_h < H
    acc = tl.zeros((BLOCK_H, BLOCK_L), dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        m = mh[:, None] & (offs_n[None, :] < N)
        idx = offs_h[:, None] * N + offs_n[None, :]
        # masked nodes get C = 0 so they add nothing
        cr = tl.load(cr_ptr + idx, mask=m, other=0.0)
        ci = tl.load(ci_ptr + idx, mask=m, other=0.0)
        lm = tl.load(lm_ptr + idx, mask=m, other=0.0)
        tu = tl.load(tu_ptr + idx, mask=m, other=0.0)
        pr, pi = _powers(lm[:, :, None], tu[:, :, None].to(tl.float64), offs_l[None, None, :])
        acc += tl.sum(cr[:, :, None] * pr - ci[:, :, None] * pi, axis=1)
    out = offs_h[:, None] * L + offs_l[None, :]
    tl.store(k_ptr + out, acc, mask=mh[:, None] & (offs_l[None, :] < L))


@triton.jit
def _vandermonde_bwd_kernel(
    g_ptr, lm_ptr, tu_ptr, s1r_ptr, s1i_ptr, s2r_ptr, s2i_ptr,
    H, N, L,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_h = tl.program_id(1)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m = (offs_h[:, None] < H) & (offs_n[None, :] < N)
    idx = offs_h[:, None] * N + offs_n[None, :]
    lm = tl.load(lm_ptr + idx, mask=m, other=0.0)[:, :, None]
    tu = tl.load(tu_ptr + idx, mask=m, other=0.0).to(tl.float64)[:, :, None]
    s1r = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    s1i = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    s2r = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    s2i = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    for l0 in range(0, L, BLOCK_L):
        offs_l = l0 + tl.arange(0, BLOCK_L)
        gm = (offs_h[:, None] < H) & (offs_l[None, :] < L)
        g = tl.load(g_ptr + offs_h[:, None] * L + offs_l[None, :], mask=gm, other=0.0)[:, None, :]
        pr, pi = _powers(lm, tu, offs_l[None, None, :])
        # conj(z^l) = pr - i pi
        s1r += tl.sum(g * pr, axis=2)
        s1i -= tl.sum(g * pi, axis=2)
        gl = g * offs_l[None, None, :].to(tl.float32)
        s2r += tl.sum(gl * pr, axis=2)
        s2i -= tl.sum(gl * pi, axis=2)
    tl.store(s1r_ptr + idx, s1r, mask=m)
    tl.store(s1i_ptr + idx, s1i, mask=m)
    tl.store(s2r_ptr + idx, s2r, mask=m)
    tl.store(s2i_ptr + idx, s2i, mask=m)


_FWD = dict(BLOCK_H=16, BLOCK_N=8, BLOCK_L=64, num_warps=4)
_BWD = dict(BLOCK_H=8, BLOCK_N=16, BLOCK_L=64, num_warps=4)


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
        cfg = _FWD
        grid = (triton.cdiv(L, cfg["BLOCK_L"]), triton.cdiv(H, cfg["BLOCK_H"]))
        _vandermonde_fwd_kernel[grid](cr, ci, lm, tu, K, H, N, L, **cfg)
        ctx.save_for_backward(C, z, lm, tu)
        ctx.L = L
        return K

    @staticmethod
    def backward(ctx, gK: torch.Tensor):
        C, z, lm, tu = ctx.saved_tensors
        H, N = C.shape
        L = ctx.L
        g = gK.float().contiguous()
        s = [torch.empty(H, N, device=C.device, dtype=torch.float32) for _ in range(4)]
        cfg = _BWD
        grid = (triton.cdiv(N, cfg["BLOCK_N"]), triton.cdiv(H, cfg["BLOCK_H"]))
        _vandermonde_bwd_kernel[grid](g, lm, tu, *s, H, N, L, **cfg)
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
