"""Vandermonde kernel generation: the reference against a direct power sum, gradcheck in fp64,
and the Triton kernel (run by the interpreter on CPU) against the reference, forward and gradients.

Tolerances: the Triton kernel computes in fp32 (phases reduced in fp64), compared against the
reference evaluated in complex128: relative error (norm) < 2e-5 forward, < 1e-4 gradients.
"""

import pytest
import torch

from kernels.vandermonde import vandermonde, vandermonde_ref


def _nodes(H, N, L, seed):
    g = torch.Generator().manual_seed(seed)
    # |z| < 1 with decay slow enough that z^l still matters at l = L (as in S4D)
    mag = torch.exp(-torch.rand(H, N, generator=g, dtype=torch.float64) * 3.0 / L)
    ang = (torch.rand(H, N, generator=g, dtype=torch.float64) * 2 - 1) * torch.pi
    z = torch.polar(mag, ang)
    C = torch.complex(torch.randn(H, N, generator=g, dtype=torch.float64), torch.randn(H, N, generator=g, dtype=torch.float64))
    return C, z


def _rel(a, b):
    # an all-zero reference (dz at L = 1) must be matched exactly, hence the floor
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def test_reference_matches_power_sum():
    C, z = _nodes(3, 5, 17, 0)
    K = vandermonde_ref(C, z, 17)
    direct = torch.stack([(C * z**l).sum(-1).real for l in range(17)], -1)
    assert K.shape == (3, 17)
    assert _rel(K, direct) < 1e-12


def test_reference_gradcheck_fp64():
    C, z = _nodes(2, 3, 6, 1)
    C.requires_grad_(True)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, w: vandermonde_ref(c, w, 6), (C, z))


def test_reference_rejects_bad_input():
    C, z = _nodes(2, 3, 4, 2)
    with pytest.raises(ValueError):
        vandermonde_ref(C, z, 0)
    with pytest.raises(ValueError):
        vandermonde_ref(C.real, z, 4)


def _check_triton(H, N, L, seed, device="cpu"):
    """Triton (complex64 inputs on device) against the reference in complex128 at the same rounded
    inputs (rounding z alone moves z^l by ~l * 6e-8): forward < 2e-5, gradients < 1e-4."""
    C64, z64 = _nodes(H, N, L, seed)
    C = C64.to(torch.complex64).to(device).requires_grad_(True)
    z = z64.to(torch.complex64).to(device).requires_grad_(True)
    K = vandermonde(C, z, L)
    Cr = C.detach().cpu().to(torch.complex128).requires_grad_(True)
    zr = z.detach().cpu().to(torch.complex128).requires_grad_(True)
    Kr = vandermonde_ref(Cr, zr, L)
    assert K.shape == (H, L) and K.dtype == torch.float32
    assert _rel(K.double().cpu(), Kr) < 2e-5
    g = torch.randn(H, L, dtype=torch.float64)
    K.backward(g.float().to(device))
    Kr.backward(g)
    assert _rel(C.grad.cpu().to(torch.complex128), Cr.grad) < 1e-4
    assert _rel(z.grad.cpu().to(torch.complex128), zr.grad) < 1e-4


@pytest.mark.parametrize("H,N,L", [(3, 5, 1), (5, 7, 37), (17, 9, 70)])
def test_triton_forward_and_grad(monkeypatch, H, N, L):
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    _check_triton(H, N, L, H * 100 + L)


def test_triton_broadcast_leading_dims(monkeypatch):
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    C64, z64 = _nodes(6, 4, 9, 3)
    C = C64.to(torch.complex64).reshape(2, 3, 4)
    z = z64.to(torch.complex64)[:3]  # (3, 4) broadcast against (2, 3, 4)
    K = vandermonde(C, z, 9)
    Kr = vandermonde_ref(C64.reshape(2, 3, 4), z64[:3], 9)
    assert K.shape == (2, 3, 9)
    assert _rel(K.double(), Kr) < 2e-5


def test_triton_blocks_and_chunks(monkeypatch):
    """Several blocks of nodes (partial last one) and several programs per row: the z^l0 * z^j
    factorisation, the accumulation over node blocks and the programs' atomic gradient sums."""
    from kernels.vandermonde import triton_vandermonde as tv

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tv, "CFG", dict(max_block_n=16, block_l=16, blocks=16, num_warps=4))
    _check_triton(3, 37, 600, 7)  # 3 node blocks (the last holds 5), 3 programs per row (the last partial)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_gpu_long():
    """On the GPU at S4D-like sizes (several programs per row, one node block)."""
    _check_triton(8, 64, 5000, 11, device="cuda")
