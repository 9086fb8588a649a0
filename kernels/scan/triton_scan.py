"""Triton kernels for the scans, with their autograd Functions.

linear_scan: each program owns BLOCK_R rows of the (B*D, L) problem and walks L in blocks of
BLOCK_L: one ``tl.associative_scan`` over the block, then the carry from the previous block is
folded in (h = A_cum * carry + B_cum). One read of a and b, one write of h: memory-bound.
The backward is the same walk in the other direction over (a shifted by one, grad_h), which
gives grad_b; grad_a = grad_b * h[t-1] in the same pass (h is the saved forward output).

selective_scan: each program owns a block of channels of one batch element and walks L in chunks
(mamba-ssm's organisation, our code): per chunk it reads u and delta once, then takes the N states one
after another, each as one ``tl.associative_scan`` of (exp(dt*A), dt*B*u) along the chunk's time steps
(spread over the threads), adding C*x into the output in registers; the per-state carries between
chunks go through a small two-buffer scratch (2, B, D, N), one barrier per chunk. Only the state at
each chunk start is saved,
(B, D, N, L/chunk), so (B, D, N, L) never exists in memory. The backward walks the chunks last to
first and, per state, rebuilds the chunk's states from the checkpoint with the same scan, runs the
adjoint dx[t] = C[t] gy[t] + exp(dt[t+1] A) dx[t+1] as a reverse scan, and takes
exp(dt A) x[t-1] = x[t] - dt u B (as mamba-ssm does). Sums over channels (dB, dC) go through one fp32
atomic per element and block; sums over time (dA, dD, d delta_bias) are accumulated per program.
Block sizes are constexprs read from the dicts below at call time; tests shrink them to hit
block boundaries on tiny shapes. Measured timings: bench/README.md.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tunables, read at call time (tests monkeypatch them to tiny values).
# tile: elements per program; defaults from bench/results/scan_sweep.json (H100, fp32).
# min_programs: fewer rows per program (down to 1) while the grid would have fewer programs than this,
# so that few long rows (small B*D, long L) still spread over the GPU (each row is one program's serial
# walk); 264 = 2 per SM of an H100/H200.
# prefetch / bwd_prefetch: each block's loads are issued one block ahead, before the previous block's
# scan (H200, fp32, 2^26 / 2^28 elements: forward 96% / 100% of copy bandwidth against 86% / 88%,
# fwd+bwd 84% / 86% against 72% / 74%; bench/results/scan_prefetch_ab_h200_run21.json).
LINEAR_CFG = {"block_l": 4096, "tile": 8192, "num_warps": 8, "bwd_block_l": 1024, "bwd_tile": 4096, "bwd_num_warps": 4,
              "min_programs": 264, "prefetch": True, "bwd_prefetch": True, "bwd_gather": False}
# Overrides of LINEAR_CFG for 2-byte inputs (bf16/fp16), from bench/results/scan_sweep_16bit{,_bwd}.json
# (H200, bf16, 2^26 and 2^28 elements): shorter blocks of more rows per program measured fastest for
# 2-byte data (forward 88-93% of copy bandwidth against 60-66% with the fp32 tiling, same sweep).
# bwd_gather: the backward moves a[t+1] and h[t-1] one column in registers (tl.gather, warp-local when a
# row of the block lies in one warp) instead of loading them one step off, which compiles to scalar
# 2-byte loads (16 LDG.U16 against 1 LDG.128 per thread and block in the sm_90 code): H200 bf16 fwd+bwd
# 68% / 71% of copy bandwidth at 2^26 / 2^28 against 63% / 65% (bench/results/scan_h200_run11.json).
# prefetch: off for 2-byte inputs (forward 80% / 85% against 88% / 93% with it, same A/B run).
LINEAR_CFG_16BIT: dict = {"block_l": 512, "tile": 8192, "num_warps": 8, "prefetch": False,
                          "bwd_block_l": 256, "bwd_tile": 4096, "bwd_num_warps": 16, "bwd_gather": True,
                          "bwd_prefetch": True}
# Selective scan tiling: chunk = time steps per scan (forward and backward must agree: the forward
# saves the state at each chunk start); block_d = channels per program, halved in the forward while
# the grid has fewer than min_programs programs; maxnreg caps registers per thread (more programs per
# SM); bwd_rotate starts each backward program at its own state (see _ss_bwd_kernel). One-warp
# programs (no cross-warp barriers in the scans) are fastest with many rows; below few_rows
# (batch x channels) rows, or few_rows_infer for a forward without gradients, the GPU has too few
# warps for them and FEW_ROWS_TILING replaces those keys. From the H200 runs in
# bench/results/selective_scan_sweep_h200_run8.json (B=8, D=1536, N=16, L=2048) and the few-rows
# sweeps selective_scan_few_rows_sweep_h200_run1[012].json (B=1, L=16384); bwd_rotate from
# selective_scan_ab_h200_run28.json (B=1 fwd+bwd 1.07x, B=8 / B=4 0.98x); with it on, the few-rows
# backward is fastest at 1 channel x 2 warps (selective_scan_ab_h200_run30.json: 0.8-0.9% over 2 x 4 in
# two runs; 1 x 1, 2 x 2, 1 x 4 were 10-27% slower).
SELECTIVE_CFG = {"chunk": 128, "block_d": 2, "num_warps": 1, "maxnreg": None, "bwd_block_d": 2, "bwd_num_warps": 1,
                 "bwd_maxnreg": None, "bwd_rotate": False, "min_programs": 1024, "few_rows": 2048,
                 "few_rows_infer": 4096}
FEW_ROWS_TILING = {"chunk": 512, "block_d": 4, "num_warps": 2, "maxnreg": None, "bwd_block_d": 1, "bwd_num_warps": 2,
                   "bwd_maxnreg": None, "bwd_rotate": True}


def _tiling(rows: int, grad: bool) -> dict:
    """SELECTIVE_CFG, with FEW_ROWS_TILING over it when rows = batch x channels is small."""
    cfg = SELECTIVE_CFG
    return {**cfg, **FEW_ROWS_TILING} if rows < cfg["few_rows" if grad else "few_rows_infer"] else cfg


def _launch_opts(cfg: dict, pre: str) -> dict:
    """num_warps and, when set, a register cap per thread (maxnreg: more programs per SM, maybe spills)."""
    opts = {"num_warps": cfg[pre + "num_warps"]}
    if cfg.get(pre + "maxnreg"):
        opts["maxnreg"] = cfg[pre + "maxnreg"]
    return opts


# --------------------------------------------------------------------------------------------
# combine functions: element (a, b) is the affine map h -> a*h + b; combine = apply left, then right


@triton.jit
def _combine(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _combine_c(ar1, ai1, br1, bi1, ar2, ai2, br2, bi2):
    ar = ar1 * ar2 - ai1 * ai2
    ai = ar1 * ai2 + ai1 * ar2
    br = ar2 * br1 - ai2 * bi1 + br2
    bi = ar2 * bi1 + ai2 * br1 + bi2
    return ar, ai, br, bi


# --------------------------------------------------------------------------------------------
# linear scan, real


@triton.jit
def _block_steps(i, nblk, L, rmask, BLOCK_L: tl.constexpr, LAST_FIRST: tl.constexpr):
    """Time steps t (BLOCK_L,) of the i-th block visited (blocks last to first when LAST_FIRST;
    each block's steps stay in increasing order, for 16-byte vector loads) and the mask (rows, t)."""
    cols = tl.arange(0, BLOCK_L)
    if LAST_FIRST:
        t = (nblk - 1 - i) * BLOCK_L + cols
    else:
        t = i * BLOCK_L + cols
    return t, rmask[:, None] & (t < L)[None, :]


@triton.jit
def _edge(x, BLOCK_L: tl.constexpr, FIRST: tl.constexpr):
    """Column 0 (FIRST) or BLOCK_L - 1 of an (rows, BLOCK_L) block, per row: the carry to the next block."""
    cols = tl.arange(0, BLOCK_L)[None, :]
    if FIRST:
        return tl.sum(tl.where(cols == 0, x, 0.0), axis=1)
    else:
        return tl.sum(tl.where(cols == BLOCK_L - 1, x, 0.0), axis=1)


@triton.jit
def _fwd_loads(A, X, base, rmask, i, nblk, L, REVERSE: tl.constexpr, BLOCK_L: tl.constexpr):
    """a, b of the i-th block the forward visits, in the inputs' dtype (all masked off for i = nblk)."""
    t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, REVERSE)
    m = m & (t >= 0)[None, :]  # i = nblk: before the first step (blocks last to first) or past L
    offs = base + t[None, :]
    return tl.load(A + offs, mask=m, other=1.0), tl.load(X + offs, mask=m, other=0.0)


@triton.jit
def _linear_fwd_kernel(A, X, H0, H, R, L, HAS_H0: tl.constexpr, REVERSE: tl.constexpr,
                       BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr, PREFETCH: tl.constexpr = False):
    # blocks are always addressed in increasing order (16-byte vector loads); a reverse
    # recurrence walks the blocks last to first and scans each one right to left.
    # PREFETCH: the next block's loads are issued before this block's scan (loop-carried registers)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    if HAS_H0:
        carry = tl.load(H0 + rows, mask=rmask, other=0.0).to(tl.float32)
    else:
        carry = tl.zeros([BLOCK_R], dtype=tl.float32)
    base = rows.to(tl.int64)[:, None] * L
    nblk = tl.cdiv(L, BLOCK_L)
    if PREFETCH:
        a_n, b_n = _fwd_loads(A, X, base, rmask, 0, nblk, L, REVERSE, BLOCK_L)
    for i in range(0, nblk):
        t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, REVERSE)
        if PREFETCH:
            a, b = a_n, b_n
            a_n, b_n = _fwd_loads(A, X, base, rmask, i + 1, nblk, L, REVERSE, BLOCK_L)
        else:
            a, b = _fwd_loads(A, X, base, rmask, i, nblk, L, REVERSE, BLOCK_L)
        ac, bc = tl.associative_scan((a.to(tl.float32), b.to(tl.float32)), axis=1, combine_fn=_combine,
                                     reverse=REVERSE)
        h = ac * carry[:, None] + bc
        tl.store(H + base + t[None, :], h.to(H.dtype.element_ty), mask=m)
        # padding positions are identity maps, so the block's end column holds the carry
        carry = _edge(h, BLOCK_L, REVERSE)


@triton.jit
def _neighbours(t, m, L, REVERSE: tl.constexpr):
    """The adjoint's neighbour steps of t (BLOCK_L,): nxt = t + s and prv = t - s (s = +1 forward op,
    -1 reverse op), and their masks (rows, BLOCK_L): m where the step lies in [0, L)."""
    nxt = t - 1 if REVERSE else t + 1
    prv = t + 1 if REVERSE else t - 1
    return nxt, prv, m & ((nxt >= 0) & (nxt < L))[None, :], m & ((prv >= 0) & (prv < L))[None, :]


@triton.jit
def _bwd_loads(A, H, G, base, rmask, i, nblk, L, REVERSE: tl.constexpr, BLOCK_L: tl.constexpr,
               SHIFT_GATHER: tl.constexpr):
    """The adjoint's main loads for the i-th block it visits, in the inputs' dtype (all masked off
    for i = nblk): g[t], then a[t+s], h[t-s] (s = +1 forward op, -1 reverse op), or with
    SHIFT_GATHER the aligned a[t], h[t] that the caller moves one column in registers."""
    t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, not REVERSE)
    m = m & (t >= 0)[None, :]  # i = nblk: before the first step (blocks last to first) or past L
    g = tl.load(G + base + t[None, :], mask=m, other=0.0)
    if SHIFT_GATHER:
        a = tl.load(A + base + t[None, :], mask=m, other=1.0)
        h = tl.load(H + base + t[None, :], mask=m, other=0.0)
    else:
        nxt, prv, mn, mp = _neighbours(t, m, L, REVERSE)
        a = tl.load(A + base + nxt[None, :], mask=mn, other=1.0)
        h = tl.load(H + base + prv[None, :], mask=mp, other=0.0)
    return g, a, h


@triton.jit
def _linear_bwd_kernel(A, H, H0, G, GA, GB, GH0, R, L, HAS_H0: tl.constexpr, REVERSE: tl.constexpr,
                       SCAN_REV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr,
                       SHIFT_GATHER: tl.constexpr = False, PREFETCH: tl.constexpr = False):
    # adjoint d[t] = g[t] + a[t+s] d[t+s] (s = +1 forward op, -1 reverse op), walked against the op.
    # PREFETCH: the next block's loads are issued before this block's scan (loop-carried registers)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    cols = tl.arange(0, BLOCK_L)
    if HAS_H0:
        h0 = tl.load(H0 + rows, mask=rmask, other=0.0).to(tl.float32)
    else:
        h0 = tl.zeros([BLOCK_R], dtype=tl.float32)
    carry = tl.zeros([BLOCK_R], dtype=tl.float32)
    base = rows.to(tl.int64)[:, None] * L
    nblk = tl.cdiv(L, BLOCK_L)
    if PREFETCH:
        g_n, a_n, h_n = _bwd_loads(A, H, G, base, rmask, 0, nblk, L, REVERSE, BLOCK_L, SHIFT_GATHER)
    for i in range(0, nblk):
        # the adjoint runs against the recurrence: a[t+s] is the next step's, h[t-s] the previous
        t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, not REVERSE)
        nxt, prv, mn, mp = _neighbours(t, m, L, REVERSE)
        if PREFETCH:
            g, an, hp = g_n, a_n, h_n
            g_n, a_n, h_n = _bwd_loads(A, H, G, base, rmask, i + 1, nblk, L, REVERSE, BLOCK_L, SHIFT_GATHER)
        else:
            g, an, hp = _bwd_loads(A, H, G, base, rmask, i, nblk, L, REVERSE, BLOCK_L, SHIFT_GATHER)
        g = g.to(tl.float32)
        an = an.to(tl.float32)
        hp = hp.to(tl.float32)
        if SHIFT_GATHER:
            # a[t+s] and h[t-s] from aligned (vectorizable) loads of the block, moved one column in
            # registers (a warp-local gather when a row lies within a warp); only the edge column
            # comes from the neighbouring block, one value per row
            if REVERSE:
                t0 = i * BLOCK_L  # the block's first step
                sh = -1
                en = 0  # column whose a[t+s] lies in the neighbouring block
                ep = BLOCK_L - 1  # column whose h[t-s] does
            else:
                t0 = (nblk - 1 - i) * BLOCK_L
                sh = 1
                en = BLOCK_L - 1
                ep = 0
            jn = tl.minimum(tl.maximum(cols + sh, 0), BLOCK_L - 1)[None, :] + rows[:, None] * 0
            jp = tl.minimum(tl.maximum(cols - sh, 0), BLOCK_L - 1)[None, :] + rows[:, None] * 0
            an = tl.gather(an, jn, axis=1)
            hp = tl.gather(hp, jp, axis=1)
            ne = rows[:, None] * 0 + (t0 + en + sh)  # (BLOCK_R, 1)
            pe = rows[:, None] * 0 + (t0 + ep - sh)
            a_edge = tl.load(A + base + ne, mask=rmask[:, None] & (ne >= 0) & (ne < L), other=1.0).to(tl.float32)
            h_edge = tl.load(H + base + pe, mask=rmask[:, None] & (pe >= 0) & (pe < L), other=0.0).to(tl.float32)
            an = tl.where(mn, tl.where((cols == en)[None, :], a_edge, an), 1.0)
            hp = tl.where((cols == ep)[None, :], h_edge, hp)
        hp = tl.where(mp, hp, h0[:, None])
        ac, bc = tl.associative_scan((an, g), axis=1, combine_fn=_combine, reverse=SCAN_REV)
        d = ac * carry[:, None] + bc
        tl.store(GB + base + t[None, :], d.to(GB.dtype.element_ty), mask=m)
        tl.store(GA + base + t[None, :], (d * hp).to(GA.dtype.element_ty), mask=m)
        carry = _edge(d, BLOCK_L, not REVERSE)
    if HAS_H0:
        if REVERSE:
            first = L - 1
        else:
            first = 0
        a0 = tl.load(A + rows.to(tl.int64) * L + first, mask=rmask, other=0.0).to(tl.float32)
        tl.store(GH0 + rows, (a0 * carry).to(GH0.dtype.element_ty), mask=rmask)


# --------------------------------------------------------------------------------------------
# linear scan, complex64 (viewed as interleaved fp32 pairs)


@triton.jit
def _linear_fwd_kernel_c(A, X, H0, H, R, L, HAS_H0: tl.constexpr, REVERSE: tl.constexpr,
                         BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    if HAS_H0:
        cr = tl.load(H0 + 2 * rows, mask=rmask, other=0.0)
        ci = tl.load(H0 + 2 * rows + 1, mask=rmask, other=0.0)
    else:
        cr = tl.zeros([BLOCK_R], dtype=tl.float32)
        ci = tl.zeros([BLOCK_R], dtype=tl.float32)
    base = rows.to(tl.int64)[:, None] * L
    nblk = tl.cdiv(L, BLOCK_L)
    for i in range(0, nblk):
        t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, REVERSE)
        offs = 2 * (base + t[None, :])
        ar = tl.load(A + offs, mask=m, other=1.0)
        ai = tl.load(A + offs + 1, mask=m, other=0.0)
        br = tl.load(X + offs, mask=m, other=0.0)
        bi = tl.load(X + offs + 1, mask=m, other=0.0)
        ar, ai, br, bi = tl.associative_scan((ar, ai, br, bi), axis=1, combine_fn=_combine_c, reverse=REVERSE)
        hr = ar * cr[:, None] - ai * ci[:, None] + br
        hi = ar * ci[:, None] + ai * cr[:, None] + bi
        tl.store(H + offs, hr, mask=m)
        tl.store(H + offs + 1, hi, mask=m)
        cr = _edge(hr, BLOCK_L, REVERSE)
        ci = _edge(hi, BLOCK_L, REVERSE)


@triton.jit
def _linear_bwd_kernel_c(A, H, H0, G, GA, GB, GH0, R, L, HAS_H0: tl.constexpr, REVERSE: tl.constexpr,
                         SCAN_REV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    # PyTorch's complex convention: grads flow through conj of the holomorphic derivative
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    if HAS_H0:
        h0r = tl.load(H0 + 2 * rows, mask=rmask, other=0.0)
        h0i = tl.load(H0 + 2 * rows + 1, mask=rmask, other=0.0)
    else:
        h0r = tl.zeros([BLOCK_R], dtype=tl.float32)
        h0i = tl.zeros([BLOCK_R], dtype=tl.float32)
    cr = tl.zeros([BLOCK_R], dtype=tl.float32)
    ci = tl.zeros([BLOCK_R], dtype=tl.float32)
    base = rows.to(tl.int64)[:, None] * L
    nblk = tl.cdiv(L, BLOCK_L)
    for i in range(0, nblk):
        # the adjoint runs against the recurrence: a[t+s] is the next step's, h[t-s] the previous
        t, m = _block_steps(i, nblk, L, rmask, BLOCK_L, not REVERSE)
        nxt, prv, mn, mp = _neighbours(t, m, L, REVERSE)
        ot = 2 * (base + t[None, :])
        on = 2 * (base + nxt[None, :])
        op = 2 * (base + prv[None, :])
        gr = tl.load(G + ot, mask=m, other=0.0)
        gi = tl.load(G + ot + 1, mask=m, other=0.0)
        anr = tl.load(A + on, mask=mn, other=1.0)
        ani = -tl.load(A + on + 1, mask=mn, other=0.0)
        hpr = tl.where(mp, tl.load(H + op, mask=mp, other=0.0), h0r[:, None])
        hpi = tl.where(mp, tl.load(H + op + 1, mask=mp, other=0.0), h0i[:, None])
        sar, sai, sbr, sbi = tl.associative_scan((anr, ani, gr, gi), axis=1, combine_fn=_combine_c, reverse=SCAN_REV)
        dr = sar * cr[:, None] - sai * ci[:, None] + sbr
        di = sar * ci[:, None] + sai * cr[:, None] + sbi
        tl.store(GB + ot, dr, mask=m)
        tl.store(GB + ot + 1, di, mask=m)
        # d * conj(h_prev)
        tl.store(GA + ot, dr * hpr + di * hpi, mask=m)
        tl.store(GA + ot + 1, di * hpr - dr * hpi, mask=m)
        cr = _edge(dr, BLOCK_L, not REVERSE)
        ci = _edge(di, BLOCK_L, not REVERSE)
    if HAS_H0:
        if REVERSE:
            first = L - 1
        else:
            first = 0
        o0 = 2 * (rows.to(tl.int64) * L + first)
        a0r = tl.load(A + o0, mask=rmask, other=0.0)
        a0i = -tl.load(A + o0 + 1, mask=rmask, other=0.0)
        tl.store(GH0 + 2 * rows, a0r * cr - a0i * ci, mask=rmask)
        tl.store(GH0 + 2 * rows + 1, a0r * ci + a0i * cr, mask=rmask)


def _linear_cfg(itemsize: int) -> dict:
    return {**LINEAR_CFG, **LINEAR_CFG_16BIT} if itemsize == 2 else LINEAR_CFG


def _linear_blocks(R: int, L: int, itemsize: int, pre: str = "") -> tuple[int, int, int]:
    """(rows per program, block length, warps) for R rows of length L of itemsize-byte elements."""
    cfg = _linear_cfg(itemsize)
    block_l = min(cfg[pre + "block_l"], triton.next_power_of_2(max(L, 1)))
    block_r = max(1, min(cfg[pre + "tile"] // block_l, triton.next_power_of_2(R)))
    while block_r > 1 and triton.cdiv(R, block_r) < cfg["min_programs"]:
        block_r //= 2
    return block_r, block_l, cfg[pre + "num_warps"]


def _linear_fwd(a, b, h0, reverse):
    Bsz, Dm, L = a.shape
    R = Bsz * Dm
    block_r, block_l, nw = _linear_blocks(R, L, a.element_size())
    grid = (triton.cdiv(R, block_r),)
    if a.is_complex():
        h = torch.empty_like(b)
        h0v = torch.view_as_real(h0.contiguous()) if h0 is not None else h
        _linear_fwd_kernel_c[grid](torch.view_as_real(a), torch.view_as_real(b), h0v, torch.view_as_real(h), R, L,
                                   HAS_H0=h0 is not None, REVERSE=reverse, BLOCK_R=block_r, BLOCK_L=block_l,
                                   num_warps=nw)
    else:
        h = torch.empty_like(b)
        _linear_fwd_kernel[grid](a, b, h0 if h0 is not None else h, h, R, L, HAS_H0=h0 is not None,
                                 REVERSE=reverse, BLOCK_R=block_r, BLOCK_L=block_l,
                                 PREFETCH=_linear_cfg(a.element_size())["prefetch"], num_warps=nw)
    return h


def _linear_bwd(a, h, h0, g, reverse):
    Bsz, Dm, L = a.shape
    R = Bsz * Dm
    block_r, block_l, nw = _linear_blocks(R, L, a.element_size(), "bwd_")
    grid = (triton.cdiv(R, block_r),)
    g = g.contiguous()
    ga = torch.empty_like(a)
    gb = torch.empty_like(h)
    gh0 = torch.empty_like(h0) if h0 is not None else None
    cfg = _linear_cfg(a.element_size())
    if a.is_complex():
        vr = torch.view_as_real
        _linear_bwd_kernel_c[grid](vr(a), vr(h), vr(h0) if h0 is not None else vr(h), vr(g), vr(ga), vr(gb),
                                   vr(gh0) if h0 is not None else vr(gb), R, L, HAS_H0=h0 is not None,
                                   REVERSE=reverse, SCAN_REV=not reverse, BLOCK_R=block_r, BLOCK_L=block_l, num_warps=nw)
    else:
        _linear_bwd_kernel[grid](a, h, h0 if h0 is not None else h, g, ga, gb, gh0 if h0 is not None else gb,
                                 R, L, HAS_H0=h0 is not None, REVERSE=reverse, SCAN_REV=not reverse, BLOCK_R=block_r,
                                 BLOCK_L=block_l, SHIFT_GATHER=cfg["bwd_gather"],
                                 PREFETCH=cfg["bwd_prefetch"], num_warps=nw)
    return ga, gb, gh0


class LinearScanFn(torch.autograd.Function):
    """autograd wrapper of the Triton linear scan; see :func:`linear_scan_triton`."""

    @staticmethod
    def forward(ctx, a, b, h0, reverse):
        h = _linear_fwd(a, b, h0, reverse)
        ctx.save_for_backward(a, h, h0)
        ctx.reverse = reverse
        return h

    @staticmethod
    def backward(ctx, g):
        a, h, h0 = ctx.saved_tensors
        ga, gb, gh0 = _linear_bwd(a, h, h0, g, ctx.reverse)
        return ga, gb, gh0, None


def linear_scan_triton(a, b, h0=None, reverse=False):
    """Triton linear scan h[t] = a[t] h[t-1] + b[t] (or h[t+1] when reverse).

    Args: a, b (B, D, L) of one dtype (fp32, bf16, fp16 or complex64); h0 (B, D) or None.
    Returns: h (B, D, L) in that dtype; state and sums in fp32.
    """
    dtype = torch.promote_types(a.dtype, b.dtype)
    if dtype == torch.complex128 or dtype == torch.float64:
        raise ValueError("linear_scan (Triton): fp64/complex128 are reference-only; use TSMODELS_KERNELS=reference")
    a = a.to(dtype).contiguous()
    b = b.to(dtype).contiguous()
    if h0 is not None:
        h0 = h0.to(dtype).contiguous()
    return LinearScanFn.apply(a, b, h0, bool(reverse))


# --------------------------------------------------------------------------------------------
# selective scan


@triton.jit
def _softplus_dt(dt, SOFTPLUS: tl.constexpr):
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    return dt


@triton.jit
def _ss_program(CARRY, Dm, L, G, N, BLOCK_D: tl.constexpr):
    """This program's channels d (BLOCK_D, 1) of batch row b and their mask, the offsets of their
    rows of u (and delta, z, ...), of the B/C group's rows, of their states (x N), and their slots
    in the two-buffer carry scratch (2, B, D, N) with the distance between the two buffers."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1)
    d = (pid_d * BLOCK_D + tl.arange(0, BLOCK_D))[:, None]
    g = (pid_d * BLOCK_D) // (Dm // G)
    row = (b * Dm + d).to(tl.int64) * L
    bc_base = (b * G + g).to(tl.int64) * N * L
    st = (b * Dm + d).to(tl.int64) * N
    half = tl.num_programs(1).to(tl.int64) * Dm * N
    scr = CARRY + b.to(tl.int64) * Dm * N + d.to(tl.int64) * N
    return d, d < Dm, row, bc_base, st, scr, half


@triton.jit
def _ss_fwd_kernel(U, DT, Aptr, Bp, Cp, Dp, Z, DB, OUT, XS, CARRY,
                   Dm, L, G, N, NCH,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
                   SAVE_STATES: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr):
    # Program (channel block, batch row). Tiles are (BLOCK_D, CHUNK) with time
    # across the threads; per-state values are (BLOCK_D, 1) and per-step rows of B, C are (1, CHUNK),
    # so nothing changes layout inside the state loop. The carry of state n from one chunk to the
    # next goes through CARRY (2, B, D, N): written after the state's scan, read back by all
    # threads after the next chunk's barrier; two buffers so that no read of chunk c sees a write of
    # chunk c. (Measured and removed: groups of chunks along L run in parallel from a summary pass,
    # for few rows; slower at every few-rows tiling on the H200, bench/README.md.)
    d, dmask, row, bc_base, st, scr, half = _ss_program(CARRY, Dm, L, G, N, BLOCK_D)
    if HAS_DB:
        bias = tl.load(DB + d, mask=dmask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(Dp + d, mask=dmask, other=0.0).to(tl.float32)
    ar = tl.arange(0, CHUNK)[None, :]
    for c in range(0, NCH):
        t = c * CHUNK + ar
        tmask = t < L
        m2 = dmask & tmask
        offs = row + t
        u = tl.load(U + offs, mask=m2, other=0.0).to(tl.float32)
        dt = tl.load(DT + offs, mask=m2, other=0.0).to(tl.float32)
        if HAS_DB:
            dt = dt + bias
        dt = tl.where(m2, _softplus_dt(dt, SOFTPLUS), 0.0)
        dtu = dt * u
        y = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
        rd = scr + (c % 2) * half
        wr = scr + ((c + 1) % 2) * half
        tl.debug_barrier()  # the previous chunk's carries are written
        for n in range(0, N):
            A2 = tl.load(Aptr + d * N + n, mask=dmask, other=0.0).to(tl.float32) * 1.4426950408889634
            Bn = tl.load(Bp + bc_base + n * L + t, mask=tmask, other=0.0).to(tl.float32)
            x0 = tl.load(rd + n, mask=dmask & (d * 0 + c > 0), other=0.0)
            if SAVE_STATES:
                tl.store(XS + (st + n) * NCH + c, x0, mask=dmask)
            a = tl.exp2(dt * A2)
            # the carry enters as the first step's input: the scan's second output is x itself
            _, x = tl.associative_scan((a, dtu * Bn + tl.where(ar == 0, a * x0, 0.0)), axis=1, combine_fn=_combine)
            y += x * tl.load(Cp + bc_base + n * L + t, mask=tmask, other=0.0).to(tl.float32)
            # past L the inputs are (1, 0): the last column is the state at min(chunk end, L); only
            # the thread that holds it stores it (a reduction to extract it costs a cross-thread step)
            tl.store(wr + n + ar * 0, x, mask=dmask & (ar == CHUNK - 1))
        if HAS_D:
            y = y + Dv * u
        if HAS_Z:
            zz = tl.load(Z + offs, mask=m2, other=0.0).to(tl.float32)
            y = y * zz * tl.sigmoid(zz)
        tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=m2)


@triton.jit
def _ss_bwd_kernel(U, DT, Aptr, Bp, Cp, Dp, Z, DB, DOUT, XS, CARRY,
                   DU, DDT, DZ, DA, DBm, DCm, DDv, DDB,
                   Dm, L, G, N, NCH,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DB: tl.constexpr, SOFTPLUS: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, ROTATE: tl.constexpr):
    # chunks last to first, states one after another (layouts and carries as in the forward): per
    # state, rebuild the chunk's states from its checkpoint with one scan, run the adjoint
    # dx[t] = C[t] gy[t] + exp(dt[t+1] A) dx[t+1] as a reverse scan, and fold the contributions into
    # per-channel register accumulators (du, ddelta), the chunk's dB, dC rows (summed over the
    # block's channels in registers, then one relaxed fp32 atomic per element) and dA.
    d, dmask, row, bc_base, st, scr, half = _ss_program(CARRY, Dm, L, G, N, BLOCK_D)
    nar = tl.arange(0, BLOCK_N)[None, :]
    # with ROTATE, program p takes the states in the order p, p+1, ... (mod N): with few rows all
    # programs walk the same chunk at once, and their dB, dC atomics would otherwise all hit one
    # row at a time (atomics on one address are serialized)
    pid_d = tl.program_id(0)
    if HAS_DB:
        bias = tl.load(DB + d, mask=dmask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(Dp + d, mask=dmask, other=0.0).to(tl.float32)
    ar = tl.arange(0, CHUNK)[None, :]
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    for ci in range(0, NCH):
        c = NCH - 1 - ci
        t = c * CHUNK + ar
        tmask = t < L
        m2 = dmask & tmask
        offs = row + t
        # only what the state loop needs stays live in it (register pressure sets the occupancy);
        # u, delta, dout and z are loaded again after it (L1/L2 hits)
        mn = dmask & (t + 1 < L)
        dt_n = tl.load(DT + offs + 1, mask=mn, other=0.0).to(tl.float32) + bias
        dt_n = tl.where(mn, _softplus_dt(dt_n, SOFTPLUS), 0.0)
        gy = tl.load(DOUT + offs, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(Z + offs, mask=m2, other=0.0).to(tl.float32)
            gy = gy * zz * tl.sigmoid(zz)
        dt = tl.where(m2, _softplus_dt(tl.load(DT + offs, mask=m2, other=0.0).to(tl.float32) + bias, SOFTPLUS), 0.0)
        dtu = dt * tl.load(U + offs, mask=m2, other=0.0).to(tl.float32)
        y = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
        dxB = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)
        dAA = tl.zeros([BLOCK_D, CHUNK], dtype=tl.float32)  # sum over N of dx[t] exp(dt A) x[t-1] A
        rd = scr + (ci % 2) * half
        wr = scr + ((ci + 1) % 2) * half
        tl.debug_barrier()  # the later chunk's carries are written
        for i in range(0, N):
            n = (i + pid_d) % N if ROTATE else i
            Anat = tl.load(Aptr + d * N + n, mask=dmask, other=0.0).to(tl.float32)
            A2 = Anat * 1.4426950408889634
            bo = bc_base + n * L + t
            Cn = tl.load(Cp + bo, mask=tmask, other=0.0).to(tl.float32)
            an = tl.exp2(dt_n * A2)
            dx1 = tl.load(rd + n, mask=dmask & (d * 0 + ci > 0), other=0.0)
            # the carry enters as the last step's input: the scan's second output is dx itself
            _, dx = tl.associative_scan((an, gy * Cn + tl.where(ar == CHUNK - 1, an * dx1, 0.0)), axis=1,
                                        combine_fn=_combine, reverse=True)
            Bn = tl.load(Bp + bo, mask=tmask, other=0.0).to(tl.float32)
            bu = dtu * Bn
            a = tl.exp2(dt * A2)
            x0 = tl.load(XS + (st + n) * NCH + c, mask=dmask, other=0.0)
            _, x = tl.associative_scan((a, bu + tl.where(ar == 0, a * x0, 0.0)), axis=1, combine_fn=_combine)
            if HAS_Z:
                y += x * Cn
            dxB += dx * Bn
            dAx = dx * (x - bu)  # dx[t] exp(dt[t] A) x[t-1]
            dAA += dAx * Anat
            # the carry dx[chunk start], stored by the thread that holds it (no cross-thread step)
            tl.store(wr + n + ar * 0, dx, mask=dmask & (ar == 0))
            dA_c = tl.sum(dAx * dt, axis=1, keep_dims=True)
            dA_acc = tl.where(nar == n, dA_acc + dA_c, dA_acc)
            tl.atomic_add(DBm + bo, tl.sum(dx * dtu, axis=0, keep_dims=True), mask=tmask, sem="relaxed")
            tl.atomic_add(DCm + bo, tl.sum(x * gy, axis=0, keep_dims=True), mask=tmask, sem="relaxed")
        u = tl.load(U + offs, mask=m2, other=0.0).to(tl.float32)
        du = dxB * dt
        ddt = dxB * u + dAA
        if HAS_D:
            du += Dv * gy
            dD_acc += tl.sum(gy * u, axis=1, keep_dims=True)
        if HAS_Z:
            if HAS_D:
                y = y + Dv * u
            zz = tl.load(Z + offs, mask=m2, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zz)
            dout = tl.load(DOUT + offs, mask=m2, other=0.0).to(tl.float32)
            tl.store(DZ + offs, (dout * y * sz * (1.0 + zz * (1.0 - sz))).to(DZ.dtype.element_ty), mask=m2)
        tl.store(DU + offs, du.to(DU.dtype.element_ty), mask=m2)
        if SOFTPLUS:
            dt_raw = tl.load(DT + offs, mask=m2, other=0.0).to(tl.float32) + bias
            ddt = tl.where(dt_raw <= 20.0, ddt * tl.sigmoid(dt_raw), ddt)
        ddt = tl.where(m2, ddt, 0.0)
        if HAS_DB:
            dbias_acc += tl.sum(ddt, axis=1, keep_dims=True)
        tl.store(DDT + offs, ddt.to(DDT.dtype.element_ty), mask=m2)
    tl.atomic_add(DA + d * N + nar, dA_acc, mask=dmask & (nar < N), sem="relaxed")
    if HAS_D:
        tl.atomic_add(DDv + d, dD_acc, mask=dmask, sem="relaxed")
    if HAS_DB:
        tl.atomic_add(DDB + d, dbias_acc, mask=dmask, sem="relaxed")


def _block_d(Dm: int, G: int, want: int) -> int:
    bd = max(1, min(want, triton.next_power_of_2(Dm)))
    if G > 1:
        # a program's channels must share one group of B and C
        while (Dm // G) % bd:
            bd //= 2
    return bd


def _fill_grid(bd: int, Bsz: int, Dm: int, min_programs: int) -> int:
    """Halve the channels per program (a power of two, so group alignment holds) until the grid
    has min_programs programs: with few (batch, channel) rows each program's walk over L is serial."""
    while bd > 1 and Bsz * triton.cdiv(Dm, bd) < min_programs:
        bd //= 2
    return bd


def _as4(M):
    return M.unsqueeze(1) if M.dim() == 3 else M


def _ss_fwd(u, delta, A, Bm, Cm, D, z, delta_bias, softplus, save_states, save_last):
    """Forward launch. Returns (out (B, D, L), checkpoints (B, D, N, n_chunks) or None, last state
    (B, D, N) or None, chunk); the backward must use the same chunk."""
    Bsz, Dm, L = u.shape
    G, N = Bm.shape[1], A.shape[1]
    cfg = _tiling(Bsz * Dm, save_states)
    bd = _fill_grid(_block_d(Dm, G, cfg["block_d"]), Bsz, Dm, cfg["min_programs"])
    chunk = cfg["chunk"]
    nch = max(1, triton.cdiv(L, chunk))
    f32 = dict(dtype=torch.float32, device=u.device)
    out = torch.empty_like(u)
    xs = torch.empty(Bsz, Dm, N, nch, **f32) if save_states else out
    carry = torch.empty(2, Bsz, Dm, N, **f32)
    args = [u, delta, A, Bm, Cm, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u]
    flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=delta_bias is not None, SOFTPLUS=softplus,
                 BLOCK_D=bd, CHUNK=chunk, **_launch_opts(cfg, ""))
    grid = (triton.cdiv(Dm, bd), Bsz)
    _ss_fwd_kernel[grid](*args, out, xs, carry, Dm, L, G, N, nch, SAVE_STATES=save_states, **flags)
    # the carry written by the last chunk: the state after step L
    last = carry[nch % 2] if save_last else None
    return out, (xs if save_states else None), last, chunk


def _ss_bwd(u, delta, A, Bm, Cm, D, z, delta_bias, softplus, dout, xs, chunk):
    Bsz, Dm, L = u.shape
    G, N = Bm.shape[1], A.shape[1]
    cfg = _tiling(Bsz * Dm, True)
    assert cfg["chunk"] == chunk, "the forward's checkpoints were taken with another tiling"
    bd = _block_d(Dm, G, cfg["bwd_block_d"])
    nch = xs.shape[-1]
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty_like(u)
    ddt = torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA = torch.zeros(A.shape, **f32)
    dB = torch.zeros(Bm.shape, **f32)
    dC = torch.zeros(Cm.shape, **f32)
    dD = torch.zeros(Dm, **f32) if D is not None else None
    ddb = torch.zeros(Dm, **f32) if delta_bias is not None else None
    carry = torch.empty(2, Bsz, Dm, N, **f32)
    args = [u, delta, A, Bm, Cm, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u, dout, xs, carry]
    grads = [du, ddt, dz if dz is not None else du, dA, dB, dC, dD if dD is not None else dA,
             ddb if ddb is not None else dA]
    flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_DB=delta_bias is not None, SOFTPLUS=softplus,
                 BLOCK_D=bd, BLOCK_N=triton.next_power_of_2(N), CHUNK=chunk, ROTATE=cfg["bwd_rotate"],
                 **_launch_opts(cfg, "bwd_"))
    grid = (triton.cdiv(Dm, bd), Bsz)
    _ss_bwd_kernel[grid](*args, *grads, Dm, L, G, N, nch, **flags)
    return du, ddt, dA, dB, dC, dD, dz, ddb


class SelectiveScanFn(torch.autograd.Function):
    """autograd wrapper of the Triton selective scan; see :func:`selective_scan_triton`."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        squeeze_B, squeeze_C = B.dim() == 3, C.dim() == 3
        Bm, Cm = _as4(B), _as4(C)
        need_grad = any(ctx.needs_input_grad[:8])
        out, xs, last, ctx.chunk = _ss_fwd(u, delta, A, Bm, Cm, D, z, delta_bias, delta_softplus, need_grad,
                                              return_last_state)
        if need_grad:
            ctx.save_for_backward(u, delta, A, Bm, Cm, D, z, delta_bias, xs)
        ctx.flags = (delta_softplus, squeeze_B, squeeze_C)
        ctx.dtypes = (A.dtype, B.dtype, C.dtype, None if D is None else D.dtype,
                      None if delta_bias is None else delta_bias.dtype)
        if return_last_state:
            ctx.mark_non_differentiable(last)
            return out, last
        return out

    @staticmethod
    def backward(ctx, dout, *unused):
        u, delta, A, Bm, Cm, D, z, delta_bias, xs = ctx.saved_tensors
        softplus, squeeze_B, squeeze_C = ctx.flags
        tA, tB, tC, tD, tdb = ctx.dtypes
        du, ddt, dA, dB, dC, dD, dz, ddb = _ss_bwd(u, delta, A, Bm, Cm, D, z, delta_bias, softplus,
                                                   dout.contiguous(), xs, ctx.chunk)
        dB = dB.squeeze(1) if squeeze_B else dB
        dC = dC.squeeze(1) if squeeze_C else dC
        return (du, ddt, dA.to(tA), dB.to(tB), dC.to(tC), None if dD is None else dD.to(tD), dz,
                None if ddb is None else ddb.to(tdb), None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):
    """Triton selective scan with mamba-ssm ``selective_scan_fn`` semantics (see kernels.scan.reference).

    Args: u, delta (B, D, L) fp32/bf16/fp16; A (D, N) real; B, C (B, N, L) or (B, G, N, L);
    D (D,), z (B, D, L), delta_bias (D,) optional. Returns out (B, D, L) in u's dtype, and the
    last state (B, D, N) fp32 when return_last_state (not differentiated, as in mamba-ssm).
    """
    c = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return SelectiveScanFn.apply(c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(delta_bias),
                                 bool(delta_softplus), bool(return_last_state))
