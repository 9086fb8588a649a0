"""FFT long convolution: causal 1-D (SpaceTime, S4, H3, Hyena) and N-D (S4ND, T1).

Public functions dispatch on the device (see :mod:`kernels._dispatch`); the PyTorch reference
in :mod:`kernels.fftconv.reference` defines the results.

On CUDA (the Triton backend) a 1-D convolution goes to the three-level kernel of
:mod:`kernels.fftconv.triton_long` for padded n = 4K (fp32; 8K in bf16/fp16) ... 128K (L up to
64K), to the one-tile fused kernel of :mod:`kernels.fftconv.triton_fftconv` below that (its whole
transform on-chip), and to the torch.fft path beyond. 2-D fields use the one-tile kernel up to its
size limit; larger 2-D and 3-D fields the three-level kernel where their padded axes split into its
levels and the batch is large enough (``triton_long.plan_nd``, ``ND_MIN_ROWS``); circular 1-D, fp64
and other N-D shapes take torch.fft. Measured ratios against torch.fft: bench/README.md.
"""

from __future__ import annotations

import torch

from .._dispatch import backend
from .reference import fftconv_nd_ref, fftconv_ref, next_fast_len

__all__ = ["fftconv", "fftconv_nd", "fftconv_ref", "fftconv_nd_ref", "next_fast_len"]


def fftconv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
    """y = k * u (per channel, linear, any length) + D u.

    Args: u (B, H, L); k (H, L') with L' <= L; D (H,) or None; causal as in :func:`fftconv_ref`.
    Returns: (B, H, L) in u's dtype. Differentiable in u, k and D.
    """
    if backend(u, k, D) == "triton":
        from .triton_fftconv import fftconv_triton

        return fftconv_triton(u, k, D, causal)
    return fftconv_ref(u, k, D, causal)


def fftconv_nd(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    causal: bool = True,
    circular: bool = False,
) -> torch.Tensor:
    """N-D per-channel convolution: u (B, H, *S), k (H, *S') → (B, H, *S); see :func:`fftconv_nd_ref`."""
    if backend(u, k, D) == "triton":
        from .triton_fftconv import fftconv_nd_triton

        return fftconv_nd_triton(u, k, D, causal, circular)
    return fftconv_nd_ref(u, k, D, causal, circular)
