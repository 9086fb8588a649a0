"""Vandermonde kernel generation K[l] = Re(sum_n C[n] z[n]^l) for diagonal SSMs (S4D, S4ND)."""

from __future__ import annotations

import torch

from .._dispatch import backend
from .reference import vandermonde_ref

__all__ = ["vandermonde", "vandermonde_ref"]


def vandermonde(C: torch.Tensor, z: torch.Tensor, L: int) -> torch.Tensor:
    """K (..., L) = Re(sum_n C[..., n] z[..., n]^l); C, z complex (..., N). Differentiable in C and z."""
    if backend(C, z) == "triton":
        from .triton_vandermonde import vandermonde_triton

        return vandermonde_triton(C, z, L)
    return vandermonde_ref(C, z, L)
