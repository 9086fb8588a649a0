"""Choose between a Triton kernel and its PyTorch reference.

CUDA tensors take Triton and CPU tensors the reference, unless the environment variable
``TSMODELS_KERNELS`` forces one: ``triton`` (e.g. with ``TRITON_INTERPRET=1`` to run the
Triton kernels on CPU in tests) or ``reference``. Models never call this; they call the public
op, which calls this.
"""

from __future__ import annotations

import os

import torch

_CHOICES = ("auto", "triton", "reference")


def backend(*tensors: torch.Tensor | None) -> str:
    """Return ``"triton"`` or ``"reference"`` for an op on ``tensors`` (None entries ignored)."""
    choice = os.environ.get("TSMODELS_KERNELS", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"TSMODELS_KERNELS={choice!r} — set it to one of {', '.join(_CHOICES)}")
    if choice != "auto":
        return choice
    present = [t for t in tensors if t is not None]
    return "triton" if present and all(t.is_cuda for t in present) else "reference"
