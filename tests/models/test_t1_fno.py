"""T1 and FNO operators: shapes, gradients, resolution invariance, vp init, spectral loss, task metrics."""

from __future__ import annotations

import math

import pytest
import torch

from tsmodels.errors import UserInputError
from tsmodels.layers.fno import SpectralConv2d, gather_modes, hermitian_columns, scatter_modes
from tsmodels.layers.t1 import T1Block2d, complex_linear, real_form, vp_scale
from tsmodels.models.fno import FNO2d
from tsmodels.models.t1_operator import T1Operator2d
from tsmodels.tasks.operator import OperatorTask, RelativeL2, rel_l2, rel_l2_parts, spectral_rel_l2_parts


@pytest.fixture(autouse=True)
def _one_thread():
    # small tensors: threads only add contention on shared CI cores
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def _bandlimited(b: int, c: int, n: int, kmax: int, seed: int = 0) -> torch.Tensor:
    """Fields with Fourier modes |k| <= kmax only, sampled on an n x n grid: (b, c, n, n)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64) / n
    out = torch.zeros(b, c, n, n, dtype=torch.float64)
    for k1 in range(-kmax, kmax + 1):
        for k2 in range(0, kmax + 1):
            a, p = torch.randn(b, c, 1, 1, generator=g, dtype=torch.float64), torch.rand(b, c, 1, 1, generator=g, dtype=torch.float64)
            out += a * torch.cos(2 * math.pi * (k1 * x.view(-1, 1) + k2 * x.view(1, -1)) + 2 * math.pi * p)
    return out.float()


@pytest.mark.parametrize("cls", ["t1", "t1_dct", "fno"])
def test_shapes_and_gradient_flow(cls):
    m = (FNO2d(4, 2, width=8, modes=4, n_layers=2, proj_width=16) if cls == "fno"
         else T1Operator2d(4, 2, resolution=16, width=8, modes=4, n_layers=2, head_width=16,
                           transform="dct" if cls == "t1_dct" else "dft"))
    x = torch.randn(3, 4, 16, 16)
    y = m(x)
    assert y.shape == (3, 2, 16, 16) and y.dtype == torch.float32 and torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # other grid sizes work as long as they hold the modes
    assert m(torch.randn(2, 4, 8, 12)).shape == (2, 2, 8, 12)


def test_t1_is_resolution_invariant_on_bandlimited_inputs():
    m = T1Operator2d(2, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=16, grid=False).eval()
    coarse, fine = _bandlimited(2, 2, 16, 3), _bandlimited(2, 2, 32, 3)
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(m(fine)[..., ::2, ::2], m(coarse), atol=1e-4, rtol=1e-4)


def test_fno_spectral_conv_is_resolution_invariant_up_to_norm():
    # the spectral conv alone (linear) is invariant on band-limited inputs once the FFT scale is undone
    conv = SpectralConv2d(2, 3, 4, 4)
    coarse, fine = _bandlimited(1, 2, 16, 3), _bandlimited(1, 2, 32, 3)
    with torch.no_grad():
        a, b = conv(coarse), conv(fine)[..., ::2, ::2]
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_modes_larger_than_grid_raise_user_error():
    with pytest.raises(UserInputError, match="do not fit"):
        T1Operator2d(1, 1, resolution=16, modes=9)
    with pytest.raises(UserInputError, match="do not fit"):
        FNO2d(1, 1, modes=20, resolution=32)
    m = FNO2d(1, 1, width=4, modes=6)
    with pytest.raises(UserInputError, match="lower the modes"):
        m(torch.randn(1, 1, 8, 8))


def test_gather_scatter_round_trip():
    z = torch.randn(2, 3, 16, 9, dtype=torch.cfloat)
    zm = gather_modes(z, 4, 5)
    assert zm.shape == (2, 3, 8, 5)
    back = scatter_modes(zm, (16, 16))
    torch.testing.assert_close(back[..., :4, :5], z[..., :4, :5])
    torch.testing.assert_close(back[..., -4:, :5], z[..., -4:, :5])
    assert back[..., 4:12, :].abs().sum() == 0 and back[..., 5:].abs().sum() == 0


def test_vp_init_preserves_variance_through_a_reduced_order_layer():
    # transform, weight with the vp scale, keep M modes, inverse: the field keeps its variance
    W, n, m = 32, 64, 12
    x = torch.randn(8, W, n, n)
    z = gather_modes(torch.fft.rfft2(x, norm="forward"), m, m)
    std = vp_scale(n * n, W, 2 * m * m)
    w = std * torch.randn(W, W, 2 * m, m, dtype=torch.cfloat)
    y = torch.fft.irfft2(scatter_modes(torch.einsum("bixy,ioxy->boxy", z, w), (n, n)), s=(n, n), norm="forward")
    assert 0.8 < y.var().item() / x.var().item() < 1.25
    # the block built with it starts close to that scale too (residual + mixed branch)
    blk = T1Block2d(W, m, m, n * n, mode_mixing=False, residual=False, act="identity", init="vp")
    # blocks work modes-major: (M1, M2, B, W)
    y2 = blk(z.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
    y2 = torch.fft.irfft2(scatter_modes(y2, (n, n)), s=(n, n), norm="forward")
    assert 0.7 < y2.var().item() / x.var().item() < 1.4


def test_frequency_domain_loss_equals_space_loss():
    m = T1Operator2d(3, 2, resolution=16, width=8, modes=4, n_layers=1, head_width=8)
    x, target = torch.randn(4, 3, 16, 16), torch.randn(4, 2, 16, 16)
    zm = m.forward_spectrum(x)
    pred = m.spectrum_to_grid(zm, (16, 16))
    e1, n1 = rel_l2_parts(pred, target)
    e2, n2 = spectral_rel_l2_parts(zm, target)
    torch.testing.assert_close(n2, n1)
    torch.testing.assert_close(e2, e1, rtol=1e-4, atol=1e-3)
    # and with all columns kept (Nyquist weighting)
    m8 = T1Operator2d(3, 1, resolution=16, width=4, modes=8, n_layers=1, head_width=4)
    zm8 = m8.forward_spectrum(x)
    e3, _ = spectral_rel_l2_parts(zm8, target[:, :1])
    e4, _ = rel_l2_parts(m8.spectrum_to_grid(zm8, (16, 16)), target[:, :1])
    torch.testing.assert_close(e3, e4, rtol=1e-4, atol=1e-3)


def test_relative_l2_metric_is_per_sample_mean():
    pred, target = torch.randn(5, 2, 8, 8), torch.randn(5, 2, 8, 8)
    metric = RelativeL2()
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    manual = torch.stack([(pred[i] - target[i]).norm() / target[i].norm() for i in range(5)]).mean()
    torch.testing.assert_close(metric.compute(), manual)
    torch.testing.assert_close(rel_l2(target, target), torch.zeros(5))


def test_task_rollout_and_one_step_shapes_and_training_lowers_loss():
    torch.manual_seed(0)
    model = T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=16)
    task = OperatorTask(model, lr=3e-3)
    # a smooth, learnable evolution: each frame is the previous one shifted by one grid cell
    base = _bandlimited(8, 1, 16, 2, seed=1)
    seq = torch.cat([torch.roll(base, shifts=t, dims=-1) for t in range(6)], dim=1)
    x, y = seq[:, :3], seq[:, 3:]
    assert task.rollout(x, 3).shape == (8, 3, 16, 16)
    assert task.one_step(x, y).shape == (8, 3, 16, 16)
    # the one-step prediction of frame 1 uses the true frame 0 in its window
    with torch.no_grad():
        torch.testing.assert_close(task.one_step(x, y)[:, 1:2], model(torch.cat([x[:, 1:], y[:, :1]], 1)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = task._objective(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    # the frequency-domain objective gives the same number
    task_f = OperatorTask(model, loss_domain="frequency")
    torch.testing.assert_close(task_f._objective(x, y), task._objective(x, y), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("learned", [False, True])
def test_t1_input_skip_starts_as_persistence(learned):
    # with the head's last layer at zero, a stepper returns its last input frame (band-limited inputs)
    m = T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=16, head_init=0.0,
                     learned_skip=learned).eval()
    assert m.input_skip
    x = _bandlimited(2, 3, 16, 3)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x[:, -1:], atol=1e-5, rtol=0)


def test_t1_block_gain_scales_the_residual_branch():
    """block_gain=g: each block returns z + g * f(z) with g a learned scalar; g = 0 makes the block the identity."""
    from tsmodels.layers.t1 import T1Block2d

    torch.manual_seed(0)
    z = torch.randn(8, 4, 3, 6, dtype=torch.cfloat)
    plain = T1Block2d(6, 4, 4, 256)
    gained = T1Block2d(6, 4, 4, 256, gain=0.25)
    gained.load_state_dict({**plain.state_dict(), "gain": torch.tensor(0.25)})
    torch.testing.assert_close(gained(z) - z, 0.25 * (plain(z) - z))
    gained.gain.data.zero_()
    torch.testing.assert_close(gained(z), z)
    m = T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=8, block_gain=0.1)
    assert all(float(b.gain) == pytest.approx(0.1) for b in m.blocks)


def test_t1_learned_skip_is_a_per_mode_linear_map_of_the_inputs():
    """The learned skip adds sum_c delta[k, c] * x_c at each retained mode k: setting delta to a copy of the
    first input field at one mode changes the output by exactly that field's component there."""
    torch.manual_seed(0)
    m = T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=16, head_init=0.0,
                     learned_skip=True).eval()
    x = _bandlimited(2, 3, 16, 3)
    with torch.no_grad():
        base = m.forward_spectrum(x)
        m.skip_delta[5, 0, 0] = 1.0  # mode 5 = row 1, column 1 of the (2m, m) retained grid
        diff = m.forward_spectrum(x) - base
    expected = torch.zeros_like(diff)
    expected[:, 0, 1, 1] = m.encode(x)[:, 0, 1, 1]
    torch.testing.assert_close(diff, expected, atol=1e-6, rtol=0)
    assert T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=1, head_width=4, learned_skip=False).skip_delta is None
    # auto: off when there are more outputs than inputs; asking for it then is a user error
    assert not T1Operator2d(1, 2, resolution=16, width=4, modes=4, n_layers=1, head_width=4).input_skip
    with pytest.raises(UserInputError, match="input_skip"):
        T1Operator2d(1, 2, resolution=16, width=4, modes=4, n_layers=1, head_width=4, input_skip=True)


@pytest.mark.parametrize("m", [4, 6])
def test_t1_quadratic_branch_is_the_retained_spectrum_of_a_product_of_fields(m):
    """With both projections picking channel 0 and the output projection writing channel 0, the branch returns
    the retained Fourier coefficients of x^2 for the band-limited field x whose retained spectrum is channel 0:
    the product on the small grid (> 3 m points) is exact, no aliasing onto the retained modes."""
    n = 32
    x = _bandlimited(2, 1, n, m - 1, seed=m)
    blk = T1Block2d(3, m, m, n * n, product=2, coef_scale=1.0)
    assert 3 * m < blk.product_grid < n
    with torch.no_grad():
        for w in (blk.prod_in, blk.prod_out):
            w.zero_()
        blk.prod_in[:, 0, 0] = 1.0  # a = channel 0
        blk.prod_in[:, 0, 2] = 1.0  # b = channel 0 (the second factor's projections start at P = 2)
        blk.prod_out[:, 0, 0] = 1.0
        z = torch.zeros(2 * m, m, 2, 3, dtype=torch.cfloat)
        z[..., 0] = gather_modes(torch.fft.rfft2(x[:, 0], norm="forward"), m, m).permute(1, 2, 0)
        got = blk.quadratic(z)
    # x^2 has modes up to 2(m - 1) < n / 2: its rfft2 on the n-grid is exact
    want = gather_modes(torch.fft.rfft2(x[:, 0].double() ** 2, norm="forward"), m, m).permute(1, 2, 0)
    torch.testing.assert_close(got[..., 0], want.to(got.dtype), atol=2e-5, rtol=0)
    assert got[..., 1:].abs().max() == 0


def test_t1_product_blocks_and_transform_rules():
    m = T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=3, head_width=8, product=4, product_blocks=1)
    assert [b.product for b in m.blocks] == [4, 0, 0]
    x = _bandlimited(2, 3, 16, 3)
    m(x).square().mean().backward()
    assert m.blocks[0].prod_in.grad.abs().sum() > 0 and m.blocks[0].prod_out.grad.abs().sum() > 0
    assert all(b.product == 4 for b in T1Operator2d(1, 1, 16, width=4, modes=4, n_layers=2, product=4).blocks)
    # mode mixing by default only where no block has the branch
    assert not any(b.mode_mixing for b in m.blocks)
    for kw in (dict(product=0), dict(product_blocks=0), dict(transform="dct")):
        assert all(b.mode_mixing for b in T1Operator2d(1, 1, 16, width=4, modes=4, n_layers=2, **kw).blocks)
    with pytest.raises(UserInputError, match="product"):
        T1Operator2d(1, 1, 16, width=4, modes=4, n_layers=1, transform="dct", product=4)


def test_t1_coef_scale_defaults_to_ortho_units_and_is_checked():
    assert T1Operator2d(1, 1, resolution=16, width=4, modes=4, n_layers=1, head_width=4).coef_scale == 16.0
    with pytest.raises(UserInputError, match="coef_scale"):
        T1Operator2d(1, 1, resolution=16, width=4, modes=4, n_layers=1, head_width=4, coef_scale=0.0)


@pytest.mark.parametrize("name", ["t1", "fno"])
def test_overfits_a_small_navier_stokes_batch(name):
    """GUIDE §7's tiny overfit test on solver data: 4 trajectories (16 x 16, nu = 1e-3), 3 -> 3
    frames, 60 Adam steps on the rollout loss bring the relative L2 well below its start."""
    from apps.pde_bench import build_model
    from datamodules.navier_stokes import generate_navier_stokes

    ds = generate_navier_stokes(n=4, res=16, steps=6, viscosity=1e-3, record_dt=0.25, dt=1e-2, seed=7, device="cpu")
    w = torch.tensor(ds["vorticity"].values, dtype=torch.float32)  # (4, 6, 16, 16)
    x, y = w[:, :3], w[:, 3:]
    torch.manual_seed(0)
    task = OperatorTask(build_model(name, 3, 1, 16, 8, 4, 2))
    opt = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = task._objective(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_cuda_graphs_option_is_eager_on_cpu():
    torch.manual_seed(0)
    task = OperatorTask(T1Operator2d(3, 1, resolution=16, width=8, modes=4, n_layers=2, head_width=16), cuda_graphs=True)
    x, y = _bandlimited(4, 3, 16, 2, seed=3), _bandlimited(4, 2, 16, 2, seed=4)
    torch.testing.assert_close(task.objective(x, y), task._objective(x, y))
    assert not task.graphed


def _loss_and_grads(task, x, y):
    task.model.zero_grad(set_to_none=True)
    loss = task.objective(x, y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in task.model.parameters()]


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["t1", "fno"])
def test_cuda_graphed_objective_matches_eager(name):
    """Loss and gradients through the captured graph equal the eager ones, over several replays with new data."""
    from apps.pde_bench import build_model

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.manual_seed(0)
    model = build_model(name, 3, 1, 16, 8, 4, 2).cuda()
    eager = OperatorTask(model).cuda().train()
    graphed = OperatorTask(model, cuda_graphs=True).cuda().train()
    for seed in range(3):
        x = _bandlimited(4, 3, 16, 2, seed=seed).cuda()
        y = _bandlimited(4, 2, 16, 2, seed=seed + 10).cuda()
        # an eager autograd graph still alive during the capture (its gradient accumulators were made on
        # another stream) invalidates the capture: each loss is computed and released inside the helper
        grads = [_loss_and_grads(task, x, y) for task in (graphed, eager)]
        assert graphed.graphed
        torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(grads[0][1], grads[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weight", ["complex", "real"])
def test_complex_linear_matches_complex_matmul(weight):
    """The real-GEMM form of z @ w: same values and gradients as the complex matmul, for a strided z too."""
    torch.manual_seed(0)
    z = torch.randn(3, 5, 7, 4, dtype=torch.cdouble).permute(0, 2, 1, 3).requires_grad_()  # non-contiguous
    w = (torch.randn(4, 6, dtype=torch.cdouble) if weight == "complex" else torch.randn(4, 6, dtype=torch.double))
    w.requires_grad_()
    g = torch.randn(3, 7, 5, 6, dtype=torch.cdouble)
    ours = complex_linear(z, real_form(w))
    ref = z @ (w if w.is_complex() else w.to(z.dtype))
    torch.testing.assert_close(ours, ref)
    grads = torch.autograd.grad((ours * g.conj()).real.sum(), (z, w))
    grads_ref = torch.autograd.grad((ref * g.conj()).real.sum(), (z, w))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("size,m", [((16, 16), 4), ((8, 8), 4), ((8, 10), 4), ((12, 8), 5)])
def test_hermitian_columns_gives_the_coefficients_of_the_real_field(size, m):
    """The projection returns the retained coefficients of the real field that irfft2 makes of the
    spectrum, except that a row whose partner frequency is not retained (-m1 when X > 2 m1) is zeroed
    in the self-conjugate columns; the projected spectrum is then exactly that of its own field."""
    torch.manual_seed(0)
    m2 = min(m, size[1] // 2 + 1)
    zm = torch.randn(2, 3, 2 * m, m2, dtype=torch.cdouble)
    field = torch.fft.irfft2(scatter_modes(zm, size), s=size)
    expected = gather_modes(torch.fft.rfft2(field), m, m2)
    if size[0] > 2 * m:
        cols = [0] + ([m2 - 1] if size[1] % 2 == 0 and m2 == size[1] // 2 + 1 else [])
        expected[..., m, cols] = 0
    projected = hermitian_columns(zm, size)
    torch.testing.assert_close(projected, expected)
    own = gather_modes(torch.fft.rfft2(torch.fft.irfft2(scatter_modes(projected, size), s=size)), m, m2)
    torch.testing.assert_close(own, projected)


def _cosine_field(n: int, a: torch.Tensor) -> torch.Tensor:
    """sum_kl a[..., k, l] cos(pi k x) cos(pi l y) at the cell centres of an n x n grid: (..., n, n)."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    c = torch.cos(math.pi * torch.arange(a.shape[-1], dtype=torch.float64)[:, None] * t[None, :])  # (m, n)
    return (c.t() @ a.double() @ c).float()


def test_dct_t1_encodes_cosine_series_coefficients_at_any_resolution():
    """The cosine transform returns the series coefficients of a band-limited field, whatever the grid,
    and its inverse reproduces the field: the DCT T1 is resolution invariant like the DFT one."""
    torch.manual_seed(0)
    a = torch.randn(2, 1, 5, 5)
    m = T1Operator2d(1, 1, resolution=16, width=8, modes=6, n_layers=2, head_width=8, transform="dct",
                     grid=False).eval()
    outs = []
    for n in (16, 24):
        x = _cosine_field(n, a)
        z = m.encode(x)
        assert z.shape == (2, 1, 6, 6) and not z.is_complex()
        torch.testing.assert_close(z[..., :5, :5], a, atol=1e-5, rtol=0)
        torch.testing.assert_close(m.spectrum_to_grid(z, (n, n)), x, atol=1e-4, rtol=0)
        with torch.no_grad():
            outs.append(m.forward_spectrum(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    with pytest.raises(UserInputError, match="cosine modes"):
        m.encode(torch.randn(1, 1, 4, 4))
    with pytest.raises(UserInputError, match="transform"):
        T1Operator2d(1, 1, resolution=16, transform="wavelet")
    with pytest.raises(ValueError, match="frequency"):
        OperatorTask(m, loss_domain="frequency")


def test_dct_t1_stepper_starts_as_persistence_and_trains():
    torch.manual_seed(0)
    m = T1Operator2d(3, 1, resolution=16, width=8, modes=6, n_layers=2, head_width=16, head_init=0.0,
                     transform="dct", learned_skip=True)
    x = _cosine_field(16, torch.randn(4, 3, 6, 6))
    with torch.no_grad():
        torch.testing.assert_close(m(x), x[:, -1:], atol=1e-4, rtol=0)
    task = OperatorTask(m)
    y = _cosine_field(16, torch.randn(4, 2, 6, 6))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = task._objective(x, y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
