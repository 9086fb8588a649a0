"""T1 operator (Poli et al. 2022): transform once, learn on the retained modes, inverse once.

    x (B, C_in, X, Y) --lift (pointwise, with grid channels)--> h (B, W, X, Y)
      --rfft2 once, keep 2 m1 x m2 low modes--> z (B, W, 2 m1, m2) complex
      --T1 blocks (channel mixing per mode, activation, mode mixing, residual)-->
      --head: complex pointwise MLP W -> head_width -> C_out--> (B, C_out, 2 m1, m2)
      --zero-pad, irfft2 once--> y (B, C_out, X, Y)

Compared with FNO (two FFTs and a full-grid pointwise conv per layer), every block works on
2 m1 m2 coefficients instead of X Y grid points. The transforms use norm="forward", so the
coefficients are those of the Fourier series of the field and do not depend on the grid size:
a model trained at one resolution evaluates at another (band-limited output, same modes).
:meth:`forward_spectrum` returns the retained output spectrum, for a loss in the frequency domain.
"""

from __future__ import annotations

import torch
from torch import nn

from tsmodels.layers.fno import check_modes, gather_modes, hermitian_columns, scatter_modes
from tsmodels.layers.t1 import ComplexLinear, T1Block2d, complex_act
from tsmodels.models.fno import grid_channels


class T1Operator2d(nn.Module):
    """Transform-once operator on a 2-D periodic grid.

    Args:
        in_channels, out_channels: input / output fields.
        resolution: training grid size X = Y (sets the vp init's N = X * Y and checks the modes).
        width: hidden channels W. modes: retained frequencies per axis (m1 = m2).
        n_layers: T1 blocks. head_width: hidden size of the frequency-domain head.
        act: block activation (``"gelu"`` split real/imag, or ``"sin"``). init: ``"vp"`` | ``"fno"``.
        mode_mixing: include the blocks' mode-mixing step.
        grid: append the (x, y) coordinate channels to the input (FNO's practice). Without them the
            model is exactly resolution invariant on band-limited inputs.
    Shapes: x (B, in_channels, X, Y) -> (B, out_channels, X, Y) for any X, Y holding the modes.
    """

    def __init__(self, in_channels: int, out_channels: int, resolution: int, width: int = 32, modes: int = 12,
                 n_layers: int = 4, head_width: int = 128, act: str = "gelu", init: str = "vp",
                 mode_mixing: bool = True, grid: bool = True):
        super().__init__()
        check_modes(modes, modes, (resolution, resolution))
        self.in_channels, self.out_channels, self.modes, self.act = in_channels, out_channels, modes, act
        self.grid = grid
        self.lift = nn.Conv2d(in_channels + (2 if grid else 0), width, 1)
        self.blocks = nn.ModuleList(
            T1Block2d(width, modes, modes, resolution * resolution, act=act, mode_mixing=mode_mixing, init=init)
            for _ in range(n_layers))
        self.head1 = ComplexLinear(width, head_width)
        self.head2 = ComplexLinear(head_width, out_channels)

    def forward_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> retained output spectrum (B, C_out, 2 m, m) complex (Fourier-series coefficients)."""
        size = (x.shape[-2], x.shape[-1])
        check_modes(self.modes, self.modes, size)
        h = self.lift(torch.cat([x, grid_channels(x)], dim=1) if self.grid else x)
        z = gather_modes(torch.fft.rfft2(h.float(), norm="forward"), self.modes, self.modes)
        for block in self.blocks:
            z = block(z)
        # real output fields: make the coefficients the ones irfft2 will actually use
        return hermitian_columns(self.head2(complex_act(self.head1(z), self.act)), size)

    @staticmethod
    def spectrum_to_grid(zm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Retained spectrum (B, C, 2 m, m) -> field (B, C, X, Y): the one inverse transform."""
        return torch.fft.irfft2(scatter_modes(zm, size), s=size, norm="forward")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> (B, C_out, X, Y)."""
        return self.spectrum_to_grid(self.forward_spectrum(x), (x.shape[-2], x.shape[-1])).to(x.dtype)
