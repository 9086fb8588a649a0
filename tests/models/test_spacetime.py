"""SpaceTime model: shapes, conv == recurrent, causality, gradients, constructor, overfit on ETTh1."""

from __future__ import annotations

import pytest
import torch

from datamodules._paths import data_root
from tsmodels.errors import UserInputError
from tsmodels.models.spacetime import SpaceTime, SpaceTimeConfig


COMBOS = [
    # lookback, horizon, C_in, C_out, extra
    (1, 5, 1, 1, {}),
    (24, 48, 3, 1, {"n_shift_heads": 4}),
    (37, 11, 7, 7, {"n_heads": 4, "decoder_heads": 8}),
    (16, 16, 2, 2, {"n_encoder_layers": 0}),
    (40, 3, 4, 2, {"mlp_ratio": 2, "norm": True, "subtract_mean": False}),
]


@pytest.mark.parametrize("lookback,horizon,cin,cout,extra", COMBOS)
def test_shapes_and_conv_equals_recurrent(lookback, horizon, cin, cout, extra):
    torch.manual_seed(0)
    model = SpaceTime(lookback=lookback, horizon=horizon, n_channels_in=cin, n_channels_out=cout, **extra).eval()
    x = torch.randn(3, lookback, cin)
    y = model(x)
    assert y.shape == (3, horizon, cout)
    yr = model.forward_recurrent(x)
    assert yr.shape == y.shape
    err = ((y - yr).abs().max() / yr.abs().max().clamp_min(1e-6)).item()
    assert err < 1e-4, err
    # the horizon can be changed per call, beyond the configured one
    assert model(x, horizon=2 * horizon + 1).shape == (3, 2 * horizon + 1, cout)


def test_conv_equals_recurrent_fp64_tight():
    torch.manual_seed(1)
    model = SpaceTime(lookback=30, horizon=50, n_channels_in=2, n_shift_heads=2, n_encoder_layers=3).double().eval()
    x = torch.randn(2, 30, 2, dtype=torch.float64)
    torch.testing.assert_close(model(x), model.forward_recurrent(x), rtol=1e-9, atol=1e-9)


def test_encoder_is_causal():
    torch.manual_seed(2)
    model = SpaceTime(lookback=32, horizon=8, n_channels_in=3, n_shift_heads=4, n_encoder_layers=3).double().eval()
    x = torch.randn(2, 32, 3, dtype=torch.float64)
    z = model.encode(x)
    for t in (0, 10, 31):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        z2 = model.encode(x2)
        torch.testing.assert_close(z2[:, : t + 1], z[:, : t + 1], rtol=1e-12, atol=1e-12)
        if t < 31:
            assert not torch.allclose(z2[:, t + 1 :], z[:, t + 1 :])


def test_gradients_reach_every_parameter():
    torch.manual_seed(3)
    model = SpaceTime(lookback=24, horizon=12, n_channels_in=3, n_shift_heads=4, dropout=0.1)
    model(torch.randn(4, 24, 3)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_aux_outputs_agree_with_closed_loop():
    """The open-loop output at the last lookback step is the first forecast step (same state),
    and the decoder's next-input prediction there is the first fed-back input."""
    torch.manual_seed(4)
    model = SpaceTime(lookback=20, horizon=7, n_channels_in=3, n_channels_out=1).double().eval()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    y, aux = model(x, return_aux=True)
    torch.testing.assert_close(y, model(x))
    assert aux["lookback"].shape == (2, 20, 1) and aux["next_input"].shape == aux["decoder_input"].shape == (2, 20, 16)
    torch.testing.assert_close(aux["lookback"][:, -1], y[:, 0])
    _, u_hat = model.decoder(aux["decoder_input"].transpose(1, 2), 7, return_inputs=True)
    torch.testing.assert_close(aux["next_input"][:, -1], u_hat[..., 0])


def test_constructors_and_errors():
    kw = dict(lookback=12, horizon=6, n_channels_in=2, d_model=8, state_dim=4)
    a, b = SpaceTime(**kw), SpaceTime(SpaceTimeConfig(**kw))
    assert a.config == b.config == SpaceTime.from_kwargs(**kw).config
    assert SpaceTime(SpaceTimeConfig(**kw), horizon=9).config.horizon == 9
    hydra_utils = pytest.importorskip("hydra.utils")
    m = hydra_utils.instantiate({"_target_": "tsmodels.models.spacetime.SpaceTime", **kw})
    assert isinstance(m, SpaceTime) and m.config.d_model == 8
    with pytest.raises(UserInputError):
        SpaceTime(lookbak=12)
    with pytest.raises(UserInputError):
        SpaceTime(d_model=8, n_heads=3)
    with pytest.raises(UserInputError):
        SpaceTime(n_channels_in=2, n_channels_out=3)
    with pytest.raises(UserInputError):
        a(torch.randn(2, 12, 3))


def test_overfits_small_etth1_batch():
    path = data_root() / "ett" / "ETTh1.csv"
    if not path.exists():
        pytest.skip(f"ETTh1.csv not found at {path} (set TSMODELS_DATA)")
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(path)
    values = torch.tensor(df.drop(columns=["date"]).to_numpy(), dtype=torch.float32)
    train = values[: 12 * 30 * 24]  # Informer train split: first 12 months
    values = (values - train.mean(0)) / train.std(0)
    lookback, horizon = 96, 24
    starts = torch.arange(0, 16 * 200, 200)
    idx = starts[:, None] + torch.arange(lookback + horizon)
    windows = values[idx]  # (16, 120, 7)
    x, y = windows[:, :lookback], windows[:, lookback:]

    torch.manual_seed(0)
    model = SpaceTime(lookback=lookback, horizon=horizon, n_channels_in=7, n_shift_heads=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda v: v == v, losses))
    assert min(losses[-5:]) < 0.4 * losses[0], (losses[0], losses[-5:])
