"""PyTorch references for the scans: the definition, the CPU path, the test oracle.

Both take about 2 sqrt(L) Python steps, not one per position: the recurrence is scanned in chunks
side by side, then their carries (:func:`_chunked_scan`) — the same products in a different order
(the selective scan per state, a bounded block of steps at a time). Arithmetic is fp32
(fp64/complex128 stay in double, complex64 in complex64) whatever the input dtype; results are cast
back to the input's dtype. Every op is differentiable by autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: double stays double, complex stays complex, the rest is fp32."""
    if dtype in (torch.float64, torch.complex128, torch.complex64):
        return dtype
    return torch.float32


def linear_scan_ref(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, reverse: bool = False
) -> torch.Tensor:
    """First-order linear recurrence along the last axis.

    Forward (reverse=False): h[t] = a[t] * h[t-1] + b[t], with h[-1] = h0 (zero if None).
    Reverse (reverse=True):  h[t] = a[t] * h[t+1] + b[t], with h[L] = h0.

    Args:
        a, b: (B, D, L), real (fp32/bf16/fp16/fp64) or complex, same shape.
        h0: optional (B, D) initial state.
    Returns:
        h: (B, D, L) in the promoted dtype of a and b.
    """
    _check_linear(a, b, h0)
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    acc = _acc_dtype(out_dtype)
    if a.shape[-1] == 0:
        return torch.empty(a.shape, dtype=out_dtype, device=a.device)
    a32, b32 = a.to(acc), b.to(acc)
    if reverse:
        a32, b32 = a32.flip(-1), b32.flip(-1)
    h = torch.zeros(a.shape[:-1], dtype=acc, device=a.device) if h0 is None else h0.to(acc)
    h = _chunked_scan(a32, b32, h)
    return (h.flip(-1) if reverse else h).to(out_dtype)


# rows of at most this many steps are scanned one step at a time (the recursion's base case)
_DIRECT = 64


def _chunked_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """h[t] = a[t] h[t-1] + b[t] over the last axis from h[-1] = h0 ((..., L), (..., L), (...) -> (..., L)),
    in about 2 sqrt(L) Python steps instead of L: the rows of L cut into chunks of C ~ sqrt(L) steps, each
    chunk scanned from zero (all chunks at once, C steps), the chunk-end states by the same scan over the
    chunks (recursively), then h = local + (prod of a within the chunk so far) x (state before the chunk)."""
    L = a.shape[-1]
    if L <= _DIRECT:
        hs = []
        h = h0
        for t in range(L):
            h = a[..., t] * h + b[..., t]
            hs.append(h)
        return torch.stack(hs, dim=-1)
    C = math.isqrt(L - 1) + 1
    nc = -(-L // C)
    pad = nc * C - L  # identity steps (a = 1, b = 0) after the end
    a2 = F.pad(a, (0, pad), value=1.0).unflatten(-1, (nc, C))
    b2 = F.pad(b, (0, pad)).unflatten(-1, (nc, C))
    local = _chunked_scan(a2, b2, torch.zeros_like(b2[..., 0]))
    prod = torch.cumprod(a2, dim=-1)
    ends = _chunked_scan(prod[..., -1], local[..., -1], h0)  # the state after each chunk
    before = torch.cat([h0[..., None], ends[..., :-1]], dim=-1)
    return (local + prod * before[..., None]).flatten(-2)[..., :L]


def _check_linear(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> None:
    if a.dim() != 3 or a.shape != b.shape:
        raise ValueError(f"linear_scan: a and b must both be (B, D, L); got {tuple(a.shape)} and {tuple(b.shape)}")
    if h0 is not None and h0.shape != a.shape[:-1]:
        raise ValueError(f"linear_scan: h0 must be (B, D) = {tuple(a.shape[:-1])}; got {tuple(h0.shape)}")


def _check_selective(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Validate shapes; return the number of groups G of B and C."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u and delta must both be (B, D, L); got {tuple(u.shape)}, {tuple(delta.shape)}")
    bsz, dim, L = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (D={dim}, N); got {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported; pass a real (D, N) A")
    N = A.shape[1]
    groups = []
    for name, M in (("B", B), ("C", C)):
        if M.dim() == 3 and M.shape == (bsz, N, L):
            groups.append(1)
        elif M.dim() == 4 and M.shape[0] == bsz and M.shape[2:] == (N, L) and dim % M.shape[1] == 0:
            groups.append(M.shape[1])
        else:
            raise ValueError(
                f"selective_scan: {name} must be (B, N, L) = {(bsz, N, L)} or (B, G, N, L) with G dividing D={dim}; "
                f"got {tuple(M.shape)}"
            )
    if groups[0] != groups[1]:
        raise ValueError(f"selective_scan: B and C must have the same number of groups; got {groups[0]} and {groups[1]}")
    if D is not None and D.shape != (dim,):
        raise ValueError(f"selective_scan: D must be ({dim},); got {tuple(D.shape)}")
    if delta_bias is not None and delta_bias.shape != (dim,):
        raise ValueError(f"selective_scan: delta_bias must be ({dim},); got {tuple(delta_bias.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z must be (B, D, L) = {tuple(u.shape)}; got {tuple(z.shape)}")
    return groups[0]


def _per_channel(M: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, N, L) or (B, G, N, L) -> (B, D, N, L) view/expansion: channel d reads group d // (D // G)."""
    if M.dim() == 3:
        return M[:, None]
    return M.repeat_interleave(dim // M.shape[1], dim=1)


_SELECTIVE_ELEMS = 1 << 24


def selective_scan_ref(
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
    """Selective state-space scan (Mamba-1), the semantics of mamba-ssm's ``selective_scan_ref``.

    With dt = softplus(delta + delta_bias) (or delta + delta_bias without softplus), per batch b,
    channel d, state n and step t:

        x[t, n] = exp(dt[t] * A[d, n]) * x[t-1, n] + dt[t] * B[n, t] * u[t],   x[-1] = 0
        y[t]    = sum_n C[n, t] * x[t, n] + D[d] * u[t]
        out[t]  = y[t] * silu(z[t])  (if z is given)

    Args:
        u, delta: (B, D, L).
        A: (D, N) real.
        B, C: (B, N, L), or (B, G, N, L) where channel d uses group d // (D // G).
        D: optional (D,) skip; z: optional (B, D, L) gate; delta_bias: optional (D,).
    Returns:
        out (B, D, L) in u's dtype; with return_last_state also x[L-1] as (B, D, N) fp32.
    """
    _check_selective(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    acc = _acc_dtype(dtype_in)
    bsz, dim, L = u.shape
    u_, dt = u.to(acc), delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A_ = A.to(acc)
    Bd = _per_channel(B.to(acc), dim)  # (B, 1 or D, N, L)
    Cd = _per_channel(C.to(acc), dim)
    x = torch.zeros(bsz, dim, A.shape[1], dtype=acc, device=u.device)
    # per state a linear scan over t: exp(dt A) and dt B u are laid out as (B, D, N, c) for c steps at a time
    # (c bounded so that such a tensor holds about _SELECTIVE_ELEMS values) and scanned by _chunked_scan
    c = max(1, _SELECTIVE_ELEMS // x.numel())
    ys = []
    for t0 in range(0, L, c):
        t = slice(t0, t0 + c)
        dA = torch.exp(dt[:, :, None, t] * A_[:, :, None])
        dBu = (dt[:, :, t] * u_[:, :, t])[:, :, None] * Bd[..., t]
        xs = _chunked_scan(dA, dBu, x)
        ys.append((xs * Cd[..., t]).sum(2))
        x = xs[..., -1]
    y = torch.cat(ys, dim=-1) if L else u_.new_zeros(u.shape)
    if D is not None:
        y = y + D.to(acc)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(acc))
    out = y.to(dtype_in)
    return (out, x) if return_last_state else out


def selective_scan_step_ref(
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
    """One step of :func:`selective_scan_ref` for recurrent inference.

    Args:
        state: (B, D, N) the state after the previous token (zeros before the first).
        u, delta: (B, D); A: (D, N); B, C: (B, N) or (B, G, N); D: (D,); z: (B, D); delta_bias: (D,).
    Returns:
        (y, new_state): y (B, D) in u's dtype, new_state (B, D, N) in state's dtype.
    """
    if u.dim() != 2 or delta.shape != u.shape or state.shape != (*u.shape, A.shape[-1]):
        raise ValueError(
            f"selective_scan_step: need u, delta (B, D) and state (B, D, N); got u {tuple(u.shape)}, "
            f"delta {tuple(delta.shape)}, state {tuple(state.shape)}, A {tuple(A.shape)}"
        )
    acc = _acc_dtype(u.dtype)
    dim = u.shape[1]
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)
    if delta_softplus:
        dt = F.softplus(dt)

    def chan(M):
        M = M.to(acc)
        if M.dim() == 2:
            return M[:, None]  # (B, 1, N)
        return M.repeat_interleave(dim // M.shape[1], dim=1)

    u_ = u.to(acc)
    dA = torch.exp(dt[..., None] * A.to(acc))
    x = dA * state.to(acc) + (dt * u_)[..., None] * chan(B)
    y = (x * chan(C)).sum(-1)
    if D is not None:
        y = y + D.to(acc) * u_
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype), x.to(state.dtype)
