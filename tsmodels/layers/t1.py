"""Transform Once (T1) frequency-domain blocks (Poli et al. 2022, "Transform Once: Efficient
Operator Learning in Frequency Domain").

A T1 model transforms its input once (rfft2), keeps a reduced set of low modes, runs every block
on those modes and transforms back once at the end. A block here acts on the retained spectrum
z (B, W, M1, M2), M1 = 2 m1 (positive and negative first-axis frequencies), M2 = m2:

    z <- z + mix_modes(act(mix_channels(z)))

- ``mix_channels``: a complex W x W matrix per retained mode (the FNO weight, but with no FFT
  around it);
- ``act``: a pointwise nonlinearity on the coefficients, ``"gelu"`` on real and imaginary parts
  separately, or ``"sin"`` (complex sine, the paper's reference choice for the DFT);
- ``mix_modes``: dense complex mixing along each mode axis (M1 x M1 and M2 x M2 per channel),
  which a frequency-domain model needs to couple modes (pointwise products in space are
  convolutions in frequency, so nothing else in the block couples them).

Initialization: the paper's variance-preserving (vp) scheme for reduced-order models. With N grid
points, fan-in W and M = M1 * M2 retained (half-spectrum) modes, keeping M of N modes throws away
most of a signal's energy; the channel weights get E|w|^2 = N / (2 W M) so the field after
"transform, weight, truncate, inverse" keeps its variance (the factor 2 counts the conjugate
half of the spectrum). Mode-mixing weights use the fan-in scale E|w|^2 = 1 / fan_in.

Only forward/inverse transforms are involved (no convolution), so the FFTs are plain torch.fft.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def complex_act(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Nonlinearity on complex coefficients: ``"gelu"`` (split real/imag) or ``"sin"`` (complex sine)."""
    if kind == "gelu":
        # on the (..., 2) real view: one kernel, no copies of the real and imaginary parts
        return torch.view_as_complex(nn.functional.gelu(torch.view_as_real(z)))
    if kind == "sin":
        return torch.sin(z)
    if kind == "identity":
        return z
    raise ValueError(f"unknown activation {kind!r}: use gelu, sin or identity")


def vp_scale(signal_size: int, fan_in: int, n_modes: int) -> float:
    """Standard deviation |w| of the paper's variance-preserving init for a reduced-order layer that keeps
    ``n_modes`` half-spectrum modes of a ``signal_size``-point real signal: sqrt(N / (2 fan_in M))."""
    return math.sqrt(signal_size / (2.0 * fan_in * n_modes))


def _crandn(*shape: int, std: float) -> torch.Tensor:
    # complex normal with E|w|^2 = std^2 (real and imaginary parts each std^2 / 2)
    return std * torch.randn(*shape, dtype=torch.cfloat)


class ComplexLinear(nn.Module):
    """Pointwise complex linear map over channels (no bias: in the frequency domain a bias would
    add the same coefficient to every mode). z (B, C_in, M1, M2) -> (B, C_out, M1, M2)."""

    def __init__(self, in_channels: int, out_channels: int, std: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(_crandn(in_channels, out_channels, std=std or 1.0 / math.sqrt(in_channels)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C_in, M1, M2) complex -> (B, C_out, M1, M2)."""
        return torch.einsum("bixy,io->boxy", z, self.weight)


class T1Block2d(nn.Module):
    """One T1 block on retained modes: z (B, width, M1, M2) complex -> same shape.

    Args:
        width: channels W.
        modes1, modes2: retained frequencies (M1 = 2 modes1 rows, M2 = modes2 columns).
        signal_size: grid points N = X * Y of the training resolution (for the vp init).
        act: ``"gelu"`` | ``"sin"`` | ``"identity"``.
        mode_mixing: mix along the mode axes after the activation (the paper's spatial mixing).
        residual: add the block input (z + f(z)).
        init: ``"vp"`` (variance preserving, the paper's) or ``"fno"`` (1 / W^2, the FNO scale).
    """

    def __init__(self, width: int, modes1: int, modes2: int, signal_size: int, act: str = "gelu",
                 mode_mixing: bool = True, residual: bool = True, init: str = "vp"):
        super().__init__()
        self.width, self.modes1, self.modes2 = width, modes1, modes2
        self.act, self.residual, self.mode_mixing = act, residual, mode_mixing
        M1, M2 = 2 * modes1, modes2
        if init == "vp":
            std = vp_scale(signal_size, width, M1 * M2)
        elif init == "fno":
            std = 1.0 / (width * width)
        else:
            raise ValueError(f"unknown init {init!r}: use vp or fno")
        self.channel = nn.Parameter(_crandn(width, width, M1, M2, std=std))
        if mode_mixing:
            # start near the identity so a deep stack begins as the plain channel-mixing operator
            self.mix1 = nn.Parameter(torch.eye(M1, dtype=torch.cfloat).unsqueeze(-1).repeat(1, 1, width)
                                     + _crandn(M1, M1, width, std=1.0 / math.sqrt(M1)) * 0.1)
            self.mix2 = nn.Parameter(torch.eye(M2, dtype=torch.cfloat).unsqueeze(-1).repeat(1, 1, width)
                                     + _crandn(M2, M2, width, std=1.0 / math.sqrt(M2)) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, W, M1, M2) complex -> (B, W, M1, M2)."""
        y = torch.einsum("bixy,ioxy->boxy", z, self.channel)
        y = complex_act(y, self.act)
        if self.mode_mixing:
            y = torch.einsum("bcxy,xpc->bcpy", y, self.mix1)
            y = torch.einsum("bcxy,yqc->bcxq", y, self.mix2)
        return z + y if self.residual else y
