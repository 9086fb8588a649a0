"""FNO-2d (Li et al. 2021): lift -> [spectral conv + pointwise skip, GELU] x L -> project.

Reads top to bottom: inputs (B, C_in, X, Y) get two grid channels (x, y in [0, 1)), a pointwise
lifting to ``width`` channels, ``n_layers`` Fourier layers (two FFTs each) and a pointwise
two-layer projection to ``out_channels``. Same constructor keys as :class:`T1Operator2d` so the
two compare at equal width and modes.
"""

from __future__ import annotations

import torch
from torch import nn

from tsmodels.layers.fno import SpectralConv2d, check_modes


def grid_channels(x: torch.Tensor) -> torch.Tensor:
    """Coordinates of an (X, Y) grid on the unit square: x (B, C, X, Y) -> (B, 2, X, Y)."""
    B, _, X, Y = x.shape
    gx = torch.arange(X, device=x.device, dtype=x.dtype) / X
    gy = torch.arange(Y, device=x.device, dtype=x.dtype) / Y
    return torch.stack(torch.broadcast_tensors(gx.view(X, 1), gy.view(1, Y))).expand(B, 2, X, Y)


class FNO2d(nn.Module):
    """Fourier Neural Operator on a 2-D periodic grid.

    Args:
        in_channels: input fields (e.g. 10 past vorticity frames).
        out_channels: output fields (e.g. 1 next frame).
        width: hidden channels. modes: retained frequencies per axis (modes1 = modes2).
        n_layers: Fourier layers. proj_width: hidden size of the projection.
        resolution: training grid size (only checked against the modes; FNO works at any grid).
        grid: append the (x, y) coordinate channels to the input.
    Shapes: x (B, in_channels, X, Y) -> (B, out_channels, X, Y), any X, Y holding the modes.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, modes: int = 12, n_layers: int = 4,
                 proj_width: int = 128, resolution: int | None = None, grid: bool = True):
        super().__init__()
        if resolution is not None:
            check_modes(modes, modes, (resolution, resolution))
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        self.grid = grid
        self.lift = nn.Conv2d(in_channels + (2 if grid else 0), width, 1)
        self.spectral = nn.ModuleList(SpectralConv2d(width, width, modes, modes) for _ in range(n_layers))
        self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(n_layers))
        self.proj = nn.Sequential(nn.Conv2d(width, proj_width, 1), nn.GELU(), nn.Conv2d(proj_width, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> (B, C_out, X, Y)."""
        h = self.lift(torch.cat([x, grid_channels(x)], dim=1) if self.grid else x)
        for i, (spec, pw) in enumerate(zip(self.spectral, self.pointwise)):
            h = spec(h) + pw(h)
            if i < len(self.spectral) - 1:
                h = nn.functional.gelu(h)
        return self.proj(h)
