"""ForecastingTask's objective options (loss="rmse": the official SpaceTime informer_rmse)."""

from __future__ import annotations

import pytest
import torch

from tsmodels.errors import UserInputError
from tsmodels.models.spacetime import SpaceTime
from tsmodels.tasks.forecasting import ForecastingTask


def test_rmse_objective_is_the_root_of_each_mse_term():
    """With loss="rmse" every term (horizon, lookback aux, next-input aux) is the square root of the
    MSE term that loss="mse" computes on the same model and batch."""
    torch.manual_seed(0)
    model = SpaceTime(lookback=24, horizon=12, n_channels_in=2, n_channels_out=1)
    mse_task = ForecastingTask(model, aux_weights=(1.0, 0.5), loss="mse").train()
    rmse_task = ForecastingTask(model, aux_weights=(1.0, 0.5), loss="rmse").train()
    x, y = torch.randn(4, 24, 2), torch.randn(4, 12, 1)
    m_loss, m_look, m_nxt = mse_task.objective(x, y)
    r_loss, r_look, r_nxt = rmse_task.objective(x, y)
    torch.testing.assert_close(r_look, m_look.sqrt())
    torch.testing.assert_close(r_nxt, m_nxt.sqrt())
    horizon_mse = m_loss - m_look - 0.5 * m_nxt
    torch.testing.assert_close(r_loss, horizon_mse.sqrt() + r_look + 0.5 * r_nxt)


def test_unknown_loss_is_a_user_error():
    with pytest.raises(UserInputError, match="task.loss=mse"):
        ForecastingTask(SpaceTime(lookback=8, horizon=4), loss="mae")


def test_warmup_epochs_reach_the_scheduler():
    """warmup_epochs=3: the lr ramps 1/4, 2/4, 3/4 of lr over the first epochs, then the cosine decay."""
    from types import SimpleNamespace

    task = ForecastingTask(SpaceTime(lookback=8, horizon=4), lr=1e-3, warmup_epochs=3)
    task._trainer = SimpleNamespace(max_epochs=20)  # configure_optimizers reads only max_epochs
    cfg = task.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25e-3, 0.5e-3, 0.75e-3, 1e-3])
