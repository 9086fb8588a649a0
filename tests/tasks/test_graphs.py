"""CUDA-graphed training objectives (tsmodels.tasks.graphs): eager on the CPU, equal to eager on a GPU."""

from __future__ import annotations

import pytest
import torch

from tsmodels.models.spacetime import SpaceTime
from tsmodels.tasks.forecasting import ForecastingTask


def _spacetime_task(aux: bool, graphs: bool) -> ForecastingTask:
    torch.manual_seed(0)
    model = SpaceTime(lookback=24, horizon=12, n_channels_in=2, n_channels_out=1, n_shift_heads=4)
    return ForecastingTask(model, aux_weights=(1.0, 1.0) if aux else (0.0, 0.0), cuda_graphs=graphs)


def _loss_and_grads(task, x, y):
    task.model.zero_grad(set_to_none=True)
    parts = task.objective(x, y)
    parts[0].backward()
    return [p.detach() for p in parts], [p.grad.clone() for p in task.model.parameters()]


@pytest.mark.parametrize("aux", [False, True])
def test_forecasting_objective_parts(aux):
    """objective = (loss, lookback aux, next-input aux); the loss is MSE plus the weighted aux terms, and
    with cuda_graphs on a CPU nothing is captured."""
    task = _spacetime_task(aux, graphs=True).train()
    x, y = torch.randn(4, 24, 2), torch.randn(4, 12, 1)
    loss, look, nxt = task.objective(x, y)
    mse = torch.nn.functional.mse_loss(task(x), y)
    torch.testing.assert_close(loss, mse + look + nxt)
    assert (look > 0 and nxt > 0) if aux else (look == 0 and nxt == 0)
    assert not task.graphed


@pytest.mark.gpu
@pytest.mark.parametrize("aux", [False, True])
def test_forecasting_graphed_objective_matches_eager(aux):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    graphed = _spacetime_task(aux, graphs=True).cuda().train()
    eager = ForecastingTask(graphed.model, aux_weights=graphed.hparams.aux_weights).cuda().train()
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(4, 24, 2, generator=g).cuda(), torch.randn(4, 12, 1, generator=g).cuda()
        # graphed first: an eager graph alive during the capture would invalidate it
        (lg, gg), (le, ge) = (_loss_and_grads(t, x, y) for t in (graphed, eager))
        assert graphed.graphed
        for a, b in zip(lg, le):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(gg, ge):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
