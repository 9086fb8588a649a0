"""T1 operator (Poli et al. 2022): transform once, learn on the retained modes, inverse once.

    x (B, C_in, X, Y) --rfft2 once, keep 2 m1 x m2 low modes--> zx (B, C_in, 2 m1, m2)   encode
      --lift (complex-linear over channels, + the grid channels' spectrum + bias)-->
      --T1 blocks (channel mixing per mode, activation, quadratic branch or mode mixing, residual)-->
      --head: complex MLP W -> head_width -> C_out--> zy (B, C_out, 2 m1, m2)             step_modes
      --zero-pad, irfft2 once--> y (B, C_out, X, Y)                                     spectrum_to_grid

The lift is pointwise and linear, so lifting then transforming equals transforming then lifting:
the model only ever depends on the retained modes of its input, and computing the lift on those
modes (plus the constant spectrum of the coordinate channels) is exact. That makes the model a map
between retained spectra (:meth:`step_modes`), so a time stepper can be rolled out entirely in the
frequency domain: every frame it predicts is band-limited, and its retained coefficients are exactly
the ones the next call would have computed from the grid. One rfft2 of the input window and (for a
space-domain loss or the user's output) one irfft2 of all predicted frames per batch, whatever the
rollout length; FNO does two FFTs per layer per step.

The transforms use norm="forward", so the coefficients are those of the Fourier series of the field
and do not depend on the grid size: a model trained at one resolution evaluates at another
(band-limited output, same modes). The head's last layer starts small (``head_init``), as in the
paper's code.

Coefficient scale (``coef_scale``, default: the training resolution X): the blocks see the retained
coefficients multiplied by a constant, the output is divided by it. With coef_scale = X on an X x X
grid these are the paper's norm="ortho" coefficients. It matters because the activations are
pointwise on the coefficients: Fourier-series coefficients of a vorticity field are tiny (NS at 32 x
32: median |c| ~ 2e-6, 99th percentile 0.06), where GELU is linear to first order and its quadratic
term is noise, so the network stays ~linear. The constant is fixed at construction, so evaluating at
another grid keeps the same units (resolution invariance holds).

Quadratic branch (``product``, on by default in the first two blocks; not in the paper): the paper's
blocks couple modes only linearly (mode mixing) and apply their nonlinearity to each coefficient
alone, so they cannot form a product of two fields, i.e. a convolution of spectra, which is what
advection u . grad(w) is. The branch adds one: two per-mode projections of the block input are
synthesized as fields on a (3m + 1)^2 grid (alias-free for the retained modes, far smaller than the
data's), multiplied, and analysed back onto the retained modes with DFT matrices. It is the model's only
other transform, and it never touches the data grid. Measured on the NS benchmark (H200, 30 epochs, 3
seeds, bench/README.md): one-step rel. L2 0.0026-0.0043 with it vs 0.0075-0.0095 without (FNO 0.0062-0.0070),
at 0.31 s per epoch (FNO 1.03 s).

Input skip (``input_skip``, on by default for time steppers): the output is the last ``out_channels``
input fields plus the head's prediction, so an untrained stepper is persistence rather than zero and
the network learns the per-step change. Trained on the 10-step rollout loss, T1 without it learned a
one-step map worse than persistence (CPU run, notes/t1_investigation.md: one-step rel. L2 0.098,
persistence 0.088; 0.038 with the skip). A likely reason: each mode's weights must learn the
identity on their own from a random start, while FNO starts from tiny spectral weights around a
pointwise path shared by all modes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tsmodels.errors import UserInputError
from tsmodels.layers.fno import check_modes, gather_modes, hermitian_columns, scatter_modes
from tsmodels.layers.t1 import T1Block2d, complex_act, complex_linear, cosine_basis, crandn, real_form, rrandn
from tsmodels.models.fno import grid_channels


class T1Operator2d(nn.Module):
    """Transform-once operator on a 2-D periodic grid.

    Args:
        in_channels, out_channels: input / output fields.
        resolution: training grid size X = Y (sets the vp init's N = X * Y and checks the modes).
        width: hidden channels W. modes: retained frequencies per axis (m1 = m2).
        n_layers: T1 blocks. head_width: hidden size of the frequency-domain head.
        act: activation (``"gelu"``/``"tanh"`` split real/imag, or ``"sin"``).
        init: channel-weight init of the blocks, ``"fan_in"`` (default), ``"vp"`` (the paper's) or ``"fno"``.
        head_init: std multiplier of the head's last layer (relative to fan-in scaling).
        mode_mixing: include the blocks' mode-mixing step (the paper's). None (default): only when there is no
            quadratic branch. Measured (H200, NS benchmark, bench/README.md): without the branch a T1 needs it
            (one-step rel. L2 0.0175 without, 0.0076 with); beside the branch it adds 28-55% to an epoch for no
            gain.
        grid: append the (x, y) coordinate channels to the input (FNO's practice). Without them the
            model is exactly resolution invariant on band-limited inputs.
        input_skip: add the retained spectrum of the last ``out_channels`` input fields to the output, so
            the network predicts the change of the fields (a time stepper starts as persistence). None
            (default): on when ``out_channels <= in_channels``.
        coef_scale: constant multiplying the coefficients inside the network (see the module docstring);
            None (default): ``resolution``, i.e. norm="ortho" units at the training grid.
        learned_skip: with ``input_skip``, the skip is a learned linear map of all input fields per
            retained mode (persistence at init: the identity on the last fields plus a learned change,
            M1 * M2 * C_in * C_out complex weights), a per-mode linear autoregression, the frequency-domain
            counterpart of FNO's pointwise linear path (default). False: a fixed copy of the last fields.
        block_gain: None, or the initial value of a learned scalar on each block's residual branch.
        transform: ``"dft"`` (rfft2, complex coefficients and weights; the default) or ``"dct"``: the cosine
            series (DCT-II, cell-centred), real coefficients and weights, ``modes`` x ``modes`` retained
            (the paper's code uses it for Navier-Stokes). Its basis is not periodic, so on a periodic field it
            needs more modes for the same accuracy, but all arithmetic is real (half the data, a quarter of
            the multiplies per weight).
        product: channels P of the quadratic branch (:meth:`T1Block2d.quadratic`: the product of two per-mode
            projections as fields, our addition to the paper's block; 0: none). None (default): 16 with the
            DFT, 0 with the cosine transform (the branch needs the DFT). On the NS benchmark it takes T1's
            one-step error from 0.0076 to 0.0026 (bench/README.md, T1 section).
        product_blocks: how many of the first blocks get the quadratic branch (default 2; None: all).
    Shapes: x (B, in_channels, X, Y) -> (B, out_channels, X, Y) for any X, Y holding the modes.
    """

    def __init__(self, in_channels: int, out_channels: int, resolution: int, width: int = 32, modes: int = 12,
                 n_layers: int = 4, head_width: int = 128, act: str = "gelu", init: str = "fan_in",
                 head_init: float = 0.01, mode_mixing: bool | None = None, grid: bool = True,
                 input_skip: bool | None = None, coef_scale: float | None = None, learned_skip: bool = True,
                 block_gain: float | None = None, transform: str = "dft", product: int | None = None,
                 product_blocks: int | None = 2):
        super().__init__()
        if transform not in ("dft", "dct"):
            raise UserInputError(f"unknown transform {transform!r}", "use transform=dft or transform=dct")
        self.transform = transform
        self._check_modes(modes, (resolution, resolution))
        self.in_channels, self.out_channels, self.modes, self.act = in_channels, out_channels, modes, act
        self.grid = grid
        if input_skip is None:
            input_skip = out_channels <= in_channels
        self.input_skip = bool(input_skip)
        if input_skip and out_channels > in_channels:
            raise UserInputError(f"input_skip adds the last {out_channels} input fields to the output, but there are "
                                 f"only {in_channels}", "pass input_skip=False (model.input_skip=false)")
        self.coef_scale = float(resolution if coef_scale is None else coef_scale)
        if not self.coef_scale > 0:
            raise UserInputError(f"coef_scale must be positive, got {coef_scale}", "pass coef_scale > 0 or None")
        c = in_channels + (2 if grid else 0)
        self.lift_weight = nn.Parameter(torch.randn(c, width) / math.sqrt(c))
        self.lift_bias = nn.Parameter(torch.zeros(width))
        real = transform == "dct"
        if product is None:
            product = 0 if real else 16
        if product < 0 or (product_blocks is not None and product_blocks < 0):
            raise UserInputError(f"product={product}, product_blocks={product_blocks}: both must be >= 0",
                                 "pass product >= 0 and product_blocks >= 0 (or None: all blocks)")
        n_product = n_layers if product_blocks is None else min(product_blocks, n_layers)
        if mode_mixing is None:
            mode_mixing = not (product and n_product)
        self.blocks = nn.ModuleList(
            T1Block2d(width, modes, modes, resolution * resolution, act=act, mode_mixing=mode_mixing, init=init,
                      gain=block_gain, real=real, product=product if i < n_product else 0,
                      coef_scale=self.coef_scale)
            for i in range(n_layers))
        randn = rrandn if real else crandn
        self.head1 = nn.Parameter(randn(width, head_width, std=1.0 / math.sqrt(width)))
        self.head2 = nn.Parameter(randn(head_width, out_channels, std=head_init / math.sqrt(head_width)))
        # (mode, input field, output field): the learned skip's change from persistence, zero at init
        n_modes = (1 if real else 2) * modes * modes
        self.skip_delta = (nn.Parameter(torch.zeros(n_modes, in_channels, out_channels,
                                                    dtype=torch.float32 if real else torch.cfloat))
                           if self.input_skip and learned_skip else None)
        self._consts: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _check_modes(self, modes: int, size: tuple[int, int]) -> None:
        if self.transform == "dft":
            check_modes(modes, modes, size)
        elif not 1 <= modes <= min(size):
            raise UserInputError(f"{modes}x{modes} cosine modes do not fit a {size[0]}x{size[1]} grid",
                                 f"lower the modes (model.modes <= {min(size)}) or use a finer resolution")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Retained spectrum of fields (series coefficients): x (B, C, X, Y) -> (B, C, 2 m, m) complex for the
        DFT, (B, C, m, m) real for the DCT."""
        X, Y = x.shape[-2:]
        self._check_modes(self.modes, (X, Y))
        if self.transform == "dct":
            ax, ay = cosine_basis(X, self.modes, x.device)[0], cosine_basis(Y, self.modes, x.device)[0]
            return ax.t() @ (x.float() @ ay)
        return gather_modes(torch.fft.rfft2(x.float(), norm="forward"), self.modes, self.modes)

    def _constants(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Retained spectrum of the two coordinate channels (2m, m, 1, 2) and the indicator of mode (0, 0)
        (2m, m, 1, 1), complex; cached per grid and device (no host-to-device copy per call)."""
        key = (size, device)
        if key not in self._consts:
            with torch.no_grad():
                g = self.encode(grid_channels(torch.zeros(1, 1, *size, device=device)))[0]
                e0 = torch.zeros(g.shape[1], self.modes, 1, 1, dtype=g.dtype, device=device)
                e0[0, 0] = 1.0
                self._consts[key] = (g.permute(1, 2, 0).unsqueeze(2).contiguous(), e0)
        return self._consts[key]

    def step_weights(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
        """What :meth:`step_modes` derives from the parameters alone, for an ``size`` grid: the lift as a real
        matrix (2 C_in, 2 W), the constant lifted spectrum (2m, m, 1, W) complex (bias and coordinate
        channels), the head's two layers as real matrices. A rollout builds them once, not once per step."""
        C = self.in_channels
        grid_modes, e0 = self._constants(size, device)
        # real coefficients (DCT) take the weights as they are; complex ones their real-GEMM form
        form = (lambda w: w) if self.transform == "dct" else real_form
        # the coordinate channels and the bias are the same for every sample; a constant lives in mode (0, 0)
        const = e0 * self.lift_bias.to(e0.dtype)
        if self.grid:
            const = const + self._linear(grid_modes, form(self.lift_weight[C:]))
        return form(self.lift_weight[:C]), const, form(self.head1), form(self.head2)

    def _linear(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """z (..., K) @ w for a weight from :meth:`step_weights` (real, or complex in real-GEMM form)."""
        return z @ w if self.transform == "dct" else complex_linear(z, w)

    def step_modes(self, zx: torch.Tensor, size: tuple[int, int], weights: tuple[torch.Tensor, ...] | None = None
                   ) -> torch.Tensor:
        """The operator on retained spectra: zx (B, C_in, M1, m) -> (B, C_out, M1, m) (:meth:`encode`'s layout),
        the coefficients of a real field on an ``size`` = (X, Y) grid (DFT: projected so that irfft2 keeps them all).
        ``weights``: :meth:`step_weights` for this grid (built here when None)."""
        C = self.in_channels
        lift, const, head1, head2 = weights if weights is not None else self.step_weights(size, zx.device)
        # the blocks work in units of coef_scale x the Fourier-series coefficients (module docstring)
        zm = zx.permute(2, 3, 0, 1)  # modes-major (M1, m, B, C_in)
        h = self._linear(zm * self.coef_scale, lift) + const  # (M1, m, B, W)
        for block in self.blocks:
            h = block(h)
        # (M1, m, B, C_out)
        out = self._linear(complex_act(self._linear(h, head1), self.act), head2) / self.coef_scale
        if self.input_skip:
            # the head predicts the change of the last out_channels input fields (see the module docstring)
            out = out + zm[..., C - self.out_channels:]
            if self.skip_delta is not None:
                M1, M2, B = out.shape[:3]
                out = out + torch.bmm(zm.reshape(M1 * M2, B, C), self.skip_delta).view(M1, M2, B, self.out_channels)
        out = out.permute(2, 3, 0, 1)
        return out if self.transform == "dct" else hermitian_columns(out, size)

    def forward_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> retained output spectrum (B, C_out, 2 m, m) complex (Fourier-series coefficients)."""
        return self.step_modes(self.encode(x), (x.shape[-2], x.shape[-1]))

    def spectrum_to_grid(self, zm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Retained spectrum (B, C, M1, m) (:meth:`encode`'s layout) -> field (B, C, X, Y): the one inverse transform."""
        if self.transform == "dct":
            sx, sy = cosine_basis(size[0], self.modes, zm.device)[1], cosine_basis(size[1], self.modes, zm.device)[1]
            return sx.t() @ zm @ sy
        return torch.fft.irfft2(scatter_modes(zm, size), s=size, norm="forward")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, X, Y) -> (B, C_out, X, Y)."""
        return self.spectrum_to_grid(self.forward_spectrum(x), (x.shape[-2], x.shape[-1])).to(x.dtype)
