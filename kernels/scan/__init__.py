"""Scans: first-order linear recurrence and the selective state-space scan (Mamba-1).

Public functions dispatch on the device (see :mod:`kernels._dispatch`): CUDA tensors run the
Triton kernels in :mod:`kernels.scan.triton_scan`, CPU tensors the PyTorch references in
:mod:`kernels.scan.reference`, which define the results.
"""

from __future__ import annotations

import torch

from .._dispatch import backend
from .reference import (
    _check_linear,
    _check_selective,
    linear_scan_ref,
    selective_scan_ref,
    selective_scan_step_ref,
)

__all__ = [
    "linear_scan",
    "selective_scan",
    "selective_scan_step",
    "linear_scan_ref",
    "selective_scan_ref",
    "selective_scan_step_ref",
]


def linear_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, reverse: bool = False
) -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + b[t] along the last axis (h[t+1] instead when reverse).

    Args:
        a, b: (B, D, L), fp32 / bf16 / fp16 / complex64; fp64 and complex128 always take the
            reference (the kernels keep an fp32 state).
        h0: optional (B, D) state before the first step (after the last one when reverse).
    Returns:
        h: (B, D, L) in the promoted dtype of a and b (state kept in fp32 / complex64).
        Differentiable in a, b and h0.
    """
    _check_linear(a, b, h0)
    double = torch.promote_types(a.dtype, b.dtype) in (torch.float64, torch.complex128)
    if backend(a, b, h0) == "triton" and not double:  # the kernels keep fp32 state
        from .triton_scan import linear_scan_triton

        return linear_scan_triton(a, b, h0, reverse)
    return linear_scan_ref(a, b, h0, reverse)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Selective scan with the semantics of mamba-ssm's ``selective_scan_fn``.

    Args:
        u, delta: (B, D, L); A: (D, N) real; B, C: (B, N, L) or (B, G, N, L);
        D: (D,) skip, z: (B, D, L) gate (out = y * silu(z)), delta_bias: (D,), all optional.
        delta_softplus: dt = softplus(delta + delta_bias).
    Returns:
        out (B, D, L) in u's dtype; with return_last_state, (out, last_state (B, D, N) fp32),
        the last state not being differentiated (as in mamba-ssm).
    See :func:`kernels.scan.reference.selective_scan_ref` for the recurrence.
    """
    _check_selective(u, delta, A, B, C, D, z, delta_bias)
    if backend(u, delta, A, B, C, D, z, delta_bias) == "triton" and u.dtype != torch.float64:  # fp64: reference
        from .triton_scan import selective_scan_triton

        return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def selective_scan_step(
    state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
):
    """One token of the selective scan, for recurrent inference.

    Args:
        state: (B, D, N) after the previous token; u, delta: (B, D); A: (D, N);
        B, C: (B, N) or (B, G, N); D: (D,); z: (B, D); delta_bias: (D,).
    Returns:
        (y (B, D), new_state (B, D, N)). Feeding tokens one by one from a zero state gives the
        same outputs as :func:`selective_scan` over the whole sequence.
    """
    # One step is a handful of elementwise ops on (B, D, N): PyTorch on any device.
    return selective_scan_step_ref(state, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
