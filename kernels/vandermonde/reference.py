"""PyTorch reference for diagonal-SSM kernel generation (S4D, S4ND)."""

from __future__ import annotations

import torch


def vandermonde_ref(C: torch.Tensor, z: torch.Tensor, L: int) -> torch.Tensor:
    """K[..., l] = Re(sum_n C[..., n] * z[..., n] ** l) for l in [0, L).

    Args:
        C: (..., N) complex coefficients (C·B folded in, as S4D does).
        z: (..., N) complex nodes (the discretized diagonal A), broadcastable against C.
        L: kernel length.
    Returns:
        K: (..., L) real, fp32 for complex64 inputs (fp64 for complex128).

    Materializes (..., N, L); the Triton kernel does not.
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    if not (C.is_complex() and z.is_complex()):
        raise ValueError("C and z must be complex tensors")
    l = torch.arange(L, device=z.device, dtype=z.real.dtype)
    # z**l as exp(l log z): one log per node instead of L repeated products
    powers = torch.exp(torch.log(z).unsqueeze(-1) * l)
    return torch.einsum("...n,...nl->...l", C, powers).real
