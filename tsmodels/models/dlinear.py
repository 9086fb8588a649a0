"""DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series Forecasting?").

The linear baseline for the Informer benchmarks: split each channel into a moving-average trend
and a remainder, map each with one linear layer from lookback to horizon, add.
"""

from __future__ import annotations

import torch
from torch import nn


class DLinear(nn.Module):
    """x (B, lookback, C_in) → (B, horizon, C_out).

    Args:
        lookback, horizon: input and output lengths.
        n_channels_in, n_channels_out: channels; when they differ the last n_channels_out input
            channels are forecast (the "MS" setting: the target is the last column).
        kernel_size: moving-average window (odd; edges replicate-padded as in the paper).
        individual: one pair of linear maps per channel instead of one shared pair.
    """

    def __init__(self, lookback: int, horizon: int, n_channels_in: int = 1, n_channels_out: int = 1,
                 kernel_size: int = 25, individual: bool = False):
        super().__init__()
        if n_channels_out > n_channels_in:
            raise ValueError(f"n_channels_out={n_channels_out} > n_channels_in={n_channels_in}")
        self.horizon, self.n_out = horizon, n_channels_out
        self.kernel_size = kernel_size | 1
        n_maps = n_channels_in if individual else 1
        self.seasonal = nn.Parameter(torch.full((n_maps, horizon, lookback), 1.0 / lookback))
        self.trend = nn.Parameter(torch.full((n_maps, horizon, lookback), 1.0 / lookback))
        self.bias = nn.Parameter(torch.zeros(n_maps, horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel_size - 1) // 2
        xt = x.transpose(1, 2)  # (B, C, L)
        padded = torch.cat([xt[..., :1].expand(-1, -1, pad), xt, xt[..., -1:].expand(-1, -1, pad)], dim=-1)
        trend = nn.functional.avg_pool1d(padded, self.kernel_size, stride=1)
        seasonal = xt - trend
        y = (torch.einsum("chl,bcl->bch", self.seasonal, seasonal)
             + torch.einsum("chl,bcl->bch", self.trend, trend) + self.bias)
        return y.transpose(1, 2)[..., -self.n_out:]
