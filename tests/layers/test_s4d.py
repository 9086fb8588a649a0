"""S4D layer: HiPPO-LegS and its diagonal approximation against their closed forms, conv mode
against step mode (fp32, L >= 1000), the kernel against a direct power sum, bidirectional kernel.

Tolerances: conv vs step in fp32 at L = 1200: max abs error < 1e-4 on outputs of unit scale.
"""

import math

import pytest
import torch

from tsmodels.layers.s4d import S4D, diagonal_init, hippo_legs, hippo_legs_nplr


def test_hippo_legs_closed_form():
    N = 7
    A, B = hippo_legs(N)
    for n in range(N):
        assert B[n].item() == pytest.approx(math.sqrt(2 * n + 1))
        for k in range(N):
            want = -math.sqrt((2 * n + 1) * (2 * k + 1)) if n > k else (-(n + 1) if n == k else 0.0)
            assert A[n, k].item() == pytest.approx(want, abs=1e-12)


def test_legs_nplr_normal_part_is_half_identity_plus_skew():
    N = 8
    A, _ = hippo_legs(N)
    A_n, P, _ = hippo_legs_nplr(N)
    assert torch.allclose(A_n - torch.outer(P, P), A, atol=1e-12)
    # A_normal + A_normal^T = -I: real part of the spectrum is exactly -1/2
    assert torch.allclose(A_n + A_n.T, -torch.eye(N, dtype=A.dtype), atol=1e-12)


def test_legs_diagonal_reconstructs_normal_part():
    N = 16
    A_d, B_d, V = diagonal_init(N, "legs")
    A_n, _, B = hippo_legs_nplr(N)
    assert A_d.shape == (N // 2,) and V.shape == (N, N // 2)
    assert torch.allclose(A_d.real, torch.full((N // 2,), -0.5, dtype=torch.float64))
    assert (A_d.imag > 0).all()
    # the kept half plus its conjugates is the whole spectrum: A_normal = 2 Re(V diag(A) V^H)
    recon = 2 * (V @ torch.diag(A_d) @ V.conj().T).real
    assert torch.allclose(recon, A_n, atol=1e-10)
    # eigenvalues agree with a general eigen solver on A_normal
    ev = torch.linalg.eigvals(A_n)
    ev = ev[ev.imag > 0]
    assert torch.allclose(torch.sort(ev.imag).values, A_d.imag, atol=1e-8)
    # B in the eigenbasis: 2 Re(V B_d) = B
    assert torch.allclose(2 * (V @ B_d).real, B, atol=1e-10)


def test_lin_and_inv_closed_forms():
    A, B, _ = diagonal_init(8, "lin")
    assert torch.allclose(A, torch.complex(torch.full((4,), -0.5, dtype=torch.float64), math.pi * torch.arange(4.0, dtype=torch.float64)))
    assert torch.all(B == 1)
    A, _, _ = diagonal_init(8, "inv")
    n = torch.arange(4.0, dtype=torch.float64)
    assert torch.allclose(A.imag, 8 / math.pi * (8 / (2 * n + 1) - 1))


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_kernel_matches_power_sum(disc):
    torch.manual_seed(0)
    layer = S4D(4, d_state=8, init="lin", discretization=disc)
    z, dB = layer._discrete()
    C = torch.view_as_complex(layer.C)[0]
    K = layer.kernel(20)[0]
    direct = torch.stack([2 * (C * dB * z**l).sum(-1).real for l in range(20)], -1)
    assert torch.allclose(K, direct, atol=1e-5)
    if disc == "zoh":
        A = torch.complex(-torch.exp(layer.log_A_real), layer.A_imag)
        dt = torch.exp(layer.log_dt)[:, None]
        assert torch.allclose(z, torch.exp(dt * A))


@pytest.mark.parametrize("init,disc", [("legs", "zoh"), ("lin", "bilinear"), ("inv", "zoh")])
def test_conv_equals_step(init, disc):
    torch.manual_seed(1)
    B, L, H = 2, 1200, 8
    layer = S4D(H, d_state=16, init=init, dt_min=1e-3, dt_max=1e-1, discretization=disc).eval()
    u = torch.randn(B, L, H)
    with torch.no_grad():
        y_conv = layer(u)
        state = layer.default_state(B)
        ys = []
        for t in range(L):
            y, state = layer.step(u[:, t], state)
            ys.append(y)
        y_step = torch.stack(ys, 1)
    assert y_conv.shape == (B, L, H)
    assert (y_conv - y_step).abs().max().item() < 1e-4


def test_step_cache_matches_uncached():
    torch.manual_seed(2)
    layer = S4D(4, d_state=8).eval()
    u = torch.randn(3, 4)
    s = layer.default_state(3)
    with torch.no_grad():
        y0, s0 = layer.step(u, s)
        layer.setup_step()
        y1, s1 = layer.step(u, s)
    assert torch.allclose(y0, y1) and torch.allclose(s0, s1)


def test_transposed_and_causality():
    torch.manual_seed(3)
    layer = S4D(6, d_state=8, transposed=True).eval()
    u = torch.randn(2, 6, 64)
    y = layer(u)
    assert y.shape == (2, 6, 64)
    u2 = u.clone()
    u2[..., 40:] = torch.randn(2, 6, 24)
    assert torch.allclose(layer(u2)[..., :40], y[..., :40], atol=1e-5)
    assert not torch.allclose(layer(u2)[..., 40:], y[..., 40:], atol=1e-3)


def test_bidirectional_matches_direct_two_sided_sum():
    torch.manual_seed(4)
    H, L = 3, 50
    layer = S4D(H, d_state=8, bidirectional=True).eval()
    u = torch.randn(1, H, L)
    k = layer.kernel(L)
    y = layer._ssm(u)
    # direct: y[t] = sum_{s<=t} k_f[t-s] u[s] + sum_{s>t} k_b[s-t-1] u[s] + D u[t]
    want = torch.zeros(1, H, L)
    for t in range(L):
        for s in range(L):
            want[..., t] += (k[0, :, t - s] if s <= t else k[1, :, s - t - 1]) * u[..., s]
    want += layer.D[:, None] * u
    assert torch.allclose(y, want, atol=1e-4)
    with pytest.raises(RuntimeError):
        layer.step(u[..., 0], layer.default_state(1))


def test_gradients_reach_all_parameters():
    layer = S4D(4, d_state=8)
    layer(torch.randn(2, 32, 4)).square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
