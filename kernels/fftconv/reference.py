"""PyTorch reference for FFT long convolutions: the definition, the CPU path, the test oracle.

Computed in fp32 (fp64 for fp64 inputs) whatever the input dtype; the result is cast back to u's dtype.
"""

from __future__ import annotations

import torch


def next_fast_len(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _check_kernel(u: torch.Tensor, k: torch.Tensor, ndim: int) -> None:
    if u.dim() < ndim + 2:
        raise ValueError(f"u must be (B, H, {ndim} spatial dims), got shape {tuple(u.shape)}")
    if k.dim() != ndim + 1 or k.shape[0] != u.shape[1]:
        raise ValueError(
            f"k must be (H={u.shape[1]}, {ndim} dims), got {tuple(k.shape)} for u {tuple(u.shape)}"
        )
    for a in range(1, ndim + 1):
        if k.shape[a] > u.shape[a + 1]:
            raise ValueError(f"kernel longer than input on axis {a}: {tuple(k.shape)} vs {tuple(u.shape)}")


def fftconv_nd_ref(
    u: torch.Tensor,
    k: torch.Tensor,
    D: torch.Tensor | None = None,
    causal: bool = True,
    circular: bool = False,
) -> torch.Tensor:
    """N-D convolution of each channel of u with its own kernel, through the FFT.

    Args:
        u: (B, H, *S) input, N = len(S) spatial axes.
        k: (H, *S') kernel with S'[i] <= S[i].
        D: optional (H,) skip: y += D[h] * u.
        causal: True: y[s] = sum_j k[j] u[s - j] (the kernel starts at lag 0 on every axis).
            False: the kernel is centred, lag j - (S'[i] - 1) // 2 on axis i ("same" output).
        circular: periodic boundary instead of zero padding (then S' must equal S).
    Returns:
        y: (B, H, *S), dtype of u.
    """
    ndim = k.dim() - 1
    _check_kernel(u, k, ndim)
    S = tuple(u.shape[2:2 + ndim])
    Sk = tuple(k.shape[1:])
    dims = tuple(range(-ndim, 0))
    # fp64 stays fp64 (gradcheck); everything else is computed in fp32
    cdt = torch.float64 if u.dtype == torch.float64 else torch.float32
    uf, kf = u.to(cdt), k.to(cdt)
    if circular:
        if Sk != S:
            kf = torch.nn.functional.pad(kf, [p for i in reversed(range(ndim)) for p in (0, S[i] - Sk[i])])
        n = S
    else:
        n = tuple(next_fast_len(S[i] + Sk[i] - 1) for i in range(ndim))
    y = torch.fft.irfftn(torch.fft.rfftn(uf, s=n, dim=dims) * torch.fft.rfftn(kf, s=n, dim=dims), s=n, dim=dims)
    if not causal:
        # a centred kernel: output index s sees lag (j - c), so start reading at c
        shifts = [(Sk[i] - 1) // 2 for i in range(ndim)]
        if circular:
            y = torch.roll(y, shifts=[-s for s in shifts], dims=dims)
        else:
            for i, c in enumerate(shifts):
                y = y.narrow(dims[i], c, S[i])
    if not circular or causal:
        for i in range(ndim):
            y = y.narrow(dims[i], 0, S[i])
    if D is not None:
        y = y + uf * D.to(cdt).view(-1, *([1] * ndim))
    return y.to(u.dtype)


def fftconv_ref(
    u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, causal: bool = True
) -> torch.Tensor:
    """1-D long convolution through the FFT (zero padded, so no wrap-around).

    Args:
        u: (B, H, L) input.
        k: (H, L') kernel, L' <= L.
        D: optional (H,) skip.
        causal: True: y[t] = sum_{s<=t} k[s] u[t-s] + D u[t]. False: k is centred
            (lag s - (L'-1)//2), e.g. a bidirectional kernel [flip(k_bwd[1:]), k_fwd].
    Returns:
        y: (B, H, L), dtype of u.
    """
    return fftconv_nd_ref(u, k, D=D, causal=causal, circular=False)
