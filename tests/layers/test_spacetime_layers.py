"""SpaceTime layers: companion kernel vs matrix powers, conv vs recurrent, closed-loop rollout."""

from __future__ import annotations

import pytest
import torch

from kernels.fftconv import fftconv
from tsmodels.layers.closed_loop import ClosedLoopCompanionSSM, closed_loop_rollout
from tsmodels.layers.companion import (
    CompanionSSM,
    companion_kernel,
    companion_matrix,
    companion_state,
    l1_normalize,
    polymul,
    series_inverse,
)
from tsmodels.layers.shift import ShiftSSM, residual_fir
from tsmodels.layers.spacetime_block import SpaceTimeLayer

f64 = torch.float64


def powers_kernel(A, b, c, L):
    """Oracle: K[h, l] = c_h^T A_h^l b_h with the dense powers A^l (P <- A P)."""
    P = torch.eye(A.shape[-1], dtype=A.dtype).expand_as(A)
    out = []
    for _ in range(L):
        out.append((c[:, None, :] @ P @ b[:, :, None])[:, 0, 0])
        P = A @ P
    return torch.stack(out, -1)


@pytest.mark.parametrize("N,L", [(8, 20), (16, 5), (4, 1), (1, 7), (12, 64), (6, 6)])
@pytest.mark.parametrize("normalize", [True, False])
def test_companion_kernel_equals_matrix_powers(N, L, normalize):
    g = torch.Generator().manual_seed(N * 100 + L)
    a, b, c = (torch.randn(3, N, generator=g, dtype=f64) for _ in range(3))
    # unnormalised a is scaled down so that A^l stays bounded and the comparison is meaningful
    a = l1_normalize(a) if normalize else 0.9 * a / a.abs().sum(-1, keepdim=True)
    K = companion_kernel(a, b, c, L)
    assert K.shape == (3, L)
    torch.testing.assert_close(K, powers_kernel(companion_matrix(a), b, c, L), rtol=1e-10, atol=1e-10)


def test_companion_kernel_fp32_at_paper_size():
    # paper setting: N = 64, lookback 336; fp32 kernel vs fp64 oracle
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(4, 64, generator=g, dtype=f64) for _ in range(3))
    a = l1_normalize(a)
    ref = powers_kernel(companion_matrix(a), b, c, 336)
    K = companion_kernel(a.float(), b.float(), c.float(), 336).double()
    assert ((K - ref).abs().max() / ref.abs().max()) < 1e-4


def test_series_inverse():
    g = torch.Generator().manual_seed(1)
    d = 0.2 * torch.randn(2, 9, generator=g, dtype=f64)
    d[:, 0] = 1.0
    for n in (1, 2, 7, 50):  # <= 32: the triangular solve alone; 50: then a Newton step
        inv = series_inverse(d, n)
        target = torch.zeros(2, n, dtype=f64)
        target[:, 0] = 1.0
        torch.testing.assert_close(polymul(d, inv, n), target, rtol=0, atol=1e-12)
    # 1 / (2 - 3z) = (1/2) Σ (3/2)^m z^m: a growing series, compared relatively
    inv = series_inverse(torch.tensor([2.0, -3.0], dtype=f64), 40)
    torch.testing.assert_close(inv, 0.5 * 1.5 ** torch.arange(40, dtype=f64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("N,L", [(8, 30), (16, 3), (5, 1)])
def test_companion_state_equals_recurrence(N, L):
    g = torch.Generator().manual_seed(2)
    a = l1_normalize(torch.randn(3, N, generator=g, dtype=f64))
    b = torch.randn(3, N, generator=g, dtype=f64)
    u = torch.randn(2, 3, L, generator=g, dtype=f64)
    A = companion_matrix(a)
    x = torch.zeros(2, 3, N, dtype=f64)
    for t in range(L):
        x = (A @ x[..., None])[..., 0] + b * u[..., t : t + 1]
    torch.testing.assert_close(companion_state(a, b, u), x, rtol=1e-10, atol=1e-10)


def _run_steps(mod, u):
    state = mod.initial_state(u.shape[0], dtype=u.dtype)
    ys = []
    for t in range(u.shape[-1]):
        y, state = mod.step(u[..., t], state)
        ys.append(y)
    return torch.stack(ys, -1)


@pytest.mark.parametrize("cls", [CompanionSSM, ShiftSSM])
@pytest.mark.parametrize("heads", [8, 2])
def test_ssm_conv_equals_recurrent(cls, heads):
    torch.manual_seed(3)
    mod = cls(8, heads, 6).double()
    u = torch.randn(2, 8, 25, dtype=f64)
    torch.testing.assert_close(mod(u), _run_steps(mod, u), rtol=1e-10, atol=1e-10)


def test_shift_ssm_is_fir_and_learns_differencing():
    mod = ShiftSSM(2, 2, 4, skip=False).double()
    with torch.no_grad():
        mod.c.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0], [1.0, -2.0, 1.0, 0.0]]))
    u = torch.randn(1, 2, 12, dtype=f64)
    y = mod(u)
    torch.testing.assert_close(y[0, 0, 1:], u[0, 0, 1:] - u[0, 0, :-1])
    torch.testing.assert_close(y[0, 1, 2:], u[0, 1, 2:] - 2 * u[0, 1, 1:-1] + u[0, 1, :-2])
    assert torch.equal(mod.kernel(10)[:, 4:], torch.zeros(2, 6, dtype=f64))


def test_shift_residual_init_is_differencing_and_ma_residual():
    c = residual_fir(6, 8).double()
    u = torch.randn(1, 6, 30, dtype=f64)
    mod = ShiftSSM(6, 6, 8, skip=False, init="residual").double()
    y = mod(u)[0]
    torch.testing.assert_close(y[0], u[0, 0])  # order 0: identity
    torch.testing.assert_close(y[1, 1:], u[0, 1, 1:] - u[0, 1, :-1])
    torch.testing.assert_close(y[3, 3:], u[0, 3, 3:] - 3 * u[0, 3, 2:-1] + 3 * u[0, 3, 1:-2] - u[0, 3, :-3])
    # heads 4, 5: x_t - mean of the last w values, w = 4 and 8
    for head, w in ((4, 4), (5, 8)):
        assert c[head, :w].sum().abs() < 1e-12
        ma = torch.stack([u[0, head, t - w + 1 : t + 1].mean() for t in range(w - 1, 30)])
        torch.testing.assert_close(y[head, w - 1 :], u[0, head, w - 1 :] - ma)
    assert residual_fir(2, 1).shape == (2, 1)


@pytest.mark.parametrize("L,h", [(20, 7), (5, 40), (1, 1), (16, 16)])
def test_closed_loop_conv_equals_recurrent(L, h):
    torch.manual_seed(4)
    mod = ClosedLoopCompanionSSM(6, 3, 8).double()
    u = torch.randn(2, 6, L, dtype=f64)
    y, uh = mod(u, h, return_inputs=True)
    yr, uhr = mod.forward_recurrent(u, h, return_inputs=True)
    assert y.shape == uh.shape == (2, 6, h)
    torch.testing.assert_close(y, yr, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(uh, uhr, rtol=1e-9, atol=1e-10)


def test_closed_loop_rollout_equals_autoregressive_open_loop():
    """Feeding the predicted inputs back into the *open-loop* SSM reproduces the closed-loop outputs,
    and the rollout equals C (A + BK)^j x with dense matrices."""
    torch.manual_seed(5)
    H, N, L, h = 4, 8, 30, 25
    mod = ClosedLoopCompanionSSM(H, H, N).double()
    u = torch.randn(3, H, L, dtype=f64)
    y, uh = mod(u, h, return_inputs=True)
    a, b, c, k = mod.params()
    # autoregressive: extend the input with its own predictions, run the open-loop convolution
    seq = torch.cat([u, uh[..., :-1]], dim=-1)
    y_open = fftconv(seq, companion_kernel(a, b, c, L + h - 1))
    torch.testing.assert_close(y, y_open[..., L - 1 :], rtol=1e-9, atol=1e-10)
    # dense closed-loop matrix
    M = companion_matrix(a) + b[:, :, None] * k[:, None, :]
    x = companion_state(a, b, u)
    ys = []
    for _ in range(h):
        ys.append((c * x).sum(-1))
        x = (M @ x[..., None])[..., 0]
    torch.testing.assert_close(y, torch.stack(ys, -1), rtol=1e-9, atol=1e-10)
    # the functional form with several readouts
    (y2,) = closed_loop_rollout(companion_state(a, b, u), a, b, k, [c], h)
    torch.testing.assert_close(y2, y)


def test_closed_loop_fp32_paper_size():
    torch.manual_seed(6)
    mod = ClosedLoopCompanionSSM(16, 16, 64)
    u = torch.randn(2, 16, 336)
    y = mod(u, 720)
    yr = mod.double().forward_recurrent(u.double(), 720)
    assert ((y.double() - yr).abs().max() / yr.abs().max()) < 1e-4


@pytest.mark.parametrize("kind", ["companion", "shift"])
def test_spacetime_layer_conv_equals_step_and_is_causal(kind):
    torch.manual_seed(7)
    layer = SpaceTimeLayer(8, 4, 6, kind=kind, mlp_ratio=2, dropout=0.1, norm=True).double().eval()
    z = torch.randn(2, 19, 8, dtype=f64)
    out = layer(z)
    state = layer.initial_state(2, dtype=f64)
    steps = []
    for t in range(19):
        o, state = layer.step(z[:, t], state)
        steps.append(o)
    torch.testing.assert_close(out, torch.stack(steps, 1), rtol=1e-10, atol=1e-10)
    z2 = z.clone()
    z2[:, 11:] = torch.randn(2, 8, 8, dtype=f64)
    out2 = layer(z2)
    torch.testing.assert_close(out2[:, :11], out[:, :11], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(out2[:, 11:], out[:, 11:])


def test_layer_gradients_reach_every_parameter():
    torch.manual_seed(8)
    layer = SpaceTimeLayer(8, 8, 6)
    dec = ClosedLoopCompanionSSM(8, 8, 6)
    z = torch.randn(2, 30, 8)
    y = dec(layer(z).transpose(1, 2), 12)
    y.square().mean().backward()
    for name, p in list(layer.named_parameters()) + list(dec.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_shared_denominator_paths_match_separate_calls():
    """Stacked readouts and a precomputed 1/Den give what separate calls give (the decoder's
    forward with open_loop=True shares one Newton inverse between the lookback state and both
    open-loop kernels)."""
    from tsmodels.layers.companion import inverse_denominator

    torch.manual_seed(3)
    H, N, L = 4, 8, 50
    a, b, c, k = (torch.randn(H, N, dtype=torch.float64) / N for _ in range(4))
    both = companion_kernel(a, b, torch.stack([c, k]), L, inverse_denominator(a, L + 5))
    torch.testing.assert_close(both[0], companion_kernel(a, b, c, L))
    torch.testing.assert_close(both[1], companion_kernel(a, b, k, L))
    u = torch.randn(2, H, L, dtype=torch.float64)
    torch.testing.assert_close(companion_state(a, b, u, inverse_denominator(a, L)), companion_state(a, b, u))
    dec = ClosedLoopCompanionSSM(H, 2, N).double()
    y, (y_open, u_next) = dec(u, 7, open_loop=True)
    torch.testing.assert_close(y, dec(u, 7))
    for got, want in zip((y_open, u_next), dec.open_loop(u)):
        torch.testing.assert_close(got, want)
