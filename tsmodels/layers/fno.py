"""Fourier Neural Operator spectral convolution (Li et al. 2021), the baseline for T1.

Each layer transforms to Fourier space (rfft2), multiplies the retained low modes by a learned
complex matrix per mode (in_channels x out_channels), zeroes the rest and transforms back
(irfft2): two FFTs per layer. The retained set of an rfft2 grid (X, Y // 2 + 1) is rows
[0, m1) and [X - m1, X) (positive and negative first-axis frequencies) by columns [0, m2).

This is per-mode channel mixing, not a per-channel convolution, so it uses torch.fft directly;
``kernels.fftconv.fftconv_nd`` (one kernel per channel) does not express it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from tsmodels.errors import UserInputError


def check_modes(modes1: int, modes2: int, size: tuple[int, int]) -> None:
    """Raise UserInputError unless an (X, Y) grid has the retained modes: 2 m1 <= X and m2 <= Y // 2 + 1."""
    X, Y = size
    if modes1 < 1 or modes2 < 1 or 2 * modes1 > X or modes2 > Y // 2 + 1:
        raise UserInputError(
            f"{modes1}x{modes2} Fourier modes do not fit a {X}x{Y} grid (needs 2*modes1 <= {X} and modes2 <= {Y // 2 + 1})",
            f"lower the modes (model.modes <= {min(X // 2, Y // 2 + 1)}) or use a finer resolution")


def gather_modes(z: torch.Tensor, modes1: int, modes2: int) -> torch.Tensor:
    """Retained modes of an rfft2 spectrum: z (..., X, Y//2+1) -> (..., 2 m1, m2), rows ordered
    [0, m1) then [X - m1, X)."""
    return torch.cat([z[..., :modes1, :modes2], z[..., -modes1:, :modes2]], dim=-2)


def scatter_modes(zm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`gather_modes`: zm (..., 2 m1, m2) -> zero-padded rfft2 spectrum (..., X, Y//2+1)."""
    X, Y = size
    m1, m2 = zm.shape[-2] // 2, zm.shape[-1]
    out = zm.new_zeros(*zm.shape[:-2], X, Y // 2 + 1)
    out[..., :m1, :m2] = zm[..., :m1, :]
    out[..., X - m1:, :m2] = zm[..., m1:, :]
    return out


@functools.lru_cache(maxsize=64)
def _hermitian_constants(m1: int, unpaired: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows ordered [0, m1) then [-m1, 0): the row of each row's negative frequency, (-row) mod 2 m1,
    and the weights 1/2 (0 at frequency -m1 when ``unpaired``: its partner +m1 is not retained).
    Cached: a rollout projects every step and should not rebuild them."""
    partner = (-torch.arange(2 * m1, device=device)) % (2 * m1)
    half = torch.full((2 * m1,), 0.5, device=device)
    if unpaired:
        half[m1] = 0.0
    return partner, half


def hermitian_columns(zm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Project a retained rfft2 spectrum onto spectra of real fields: zm (..., 2 m1, m2) -> same shape.

    Column 0 (and the Nyquist column, when Y is even and kept) of a real field's rfft2 satisfies
    c[-k] = conj(c[k]); irfft2 silently keeps only that part. Projecting explicitly (and zeroing a row
    whose partner is not retained) makes the coefficients exactly those of the field irfft2 returns, so
    norms computed from them (Parseval) match the field's.
    """
    X, Y = size
    m1, m2 = zm.shape[-2] // 2, zm.shape[-1]
    partner, half = _hermitian_constants(m1, X != 2 * m1, zm.device)

    def sym(col: torch.Tensor) -> torch.Tensor:
        return (col + col.index_select(-1, partner).conj()) * half

    cols = [sym(zm[..., 0]).unsqueeze(-1), zm[..., 1:]]
    if Y % 2 == 0 and m2 == Y // 2 + 1 and m2 > 1:
        cols = [cols[0], zm[..., 1:-1], sym(zm[..., -1]).unsqueeze(-1)]
    return torch.cat(cols, dim=-1)


class SpectralConv2d(nn.Module):
    """FNO spectral convolution: y = irfft2(W_k rfft2(x)_k) over the retained modes k.

    Args:
        in_channels, out_channels: channel counts.
        modes1, modes2: retained frequencies per axis (first axis: +/- modes1; last: [0, modes2)).
    Shapes: x (B, in_channels, X, Y) -> (B, out_channels, X, Y); any X, Y holding the modes.
    Init: uniform complex entries scaled by 1 / (in_channels * out_channels) (the FNO reference's choice).
    """

    def __init__(self, in_channels: int, out_channels: int, modes1: int, modes2: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes1, self.modes2 = modes1, modes2
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, 2 * modes1, modes2, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> (B, C_out, X, Y)."""
        size = (x.shape[-2], x.shape[-1])
        check_modes(self.modes1, self.modes2, size)
        z = gather_modes(torch.fft.rfft2(x.float()), self.modes1, self.modes2)
        z = torch.einsum("bixy,ioxy->boxy", z, self.weight)
        return torch.fft.irfft2(scatter_modes(z, size), s=size).to(x.dtype)
