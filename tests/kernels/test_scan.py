"""Scans: references (gradcheck in fp64, step == full scan) and the Triton kernels against them.

The Triton kernels run under TRITON_INTERPRET=1 on CPU (tests/kernels/conftest.py) with tiny
block and chunk sizes so that block boundaries, the carry between blocks and padding are all
exercised on short sequences. Tolerances, relative error in norm against the reference:
  fp32 / complex64: forward 1e-5, gradients 1e-4 (same fp32 math, different summation order);
  bf16 inputs: 2e-2 (outputs and gradients are rounded to bf16, ~4e-3 per element).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

from kernels import scan
from kernels.scan import (
    linear_scan,
    linear_scan_ref,
    selective_scan,
    selective_scan_ref,
    selective_scan_step,
    selective_scan_step_ref,
)

TOL = {torch.float32: (1e-5, 1e-4), torch.complex64: (1e-5, 1e-4), torch.bfloat16: (2e-2, 2e-2)}


def _rel(x, r):
    x, r = x.detach().to(torch.complex128 if r.is_complex() else torch.float64), r.detach()
    r = r.to(x.dtype)
    return ((x - r).norm() / r.norm().clamp_min(1e-30)).item()


@pytest.fixture
def tiny_triton(monkeypatch):
    """Force the Triton path with blocks of 4 steps (2 rows per linear-scan program, 4 for bf16)."""
    from kernels.scan import triton_scan

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setitem(triton_scan.LINEAR_CFG, "block_l", 4)
    monkeypatch.setitem(triton_scan.LINEAR_CFG, "tile", 8)  # 2 rows of 4
    monkeypatch.setitem(triton_scan.LINEAR_CFG, "bwd_block_l", 4)
    monkeypatch.setitem(triton_scan.LINEAR_CFG, "bwd_tile", 8)
    monkeypatch.setitem(triton_scan.LINEAR_CFG, "min_programs", 1)  # keep several rows per program
    # 2-byte inputs: their own forward tiling (4 rows of 4)
    monkeypatch.setattr(triton_scan, "LINEAR_CFG_16BIT", {"tile": 16})
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "chunk", 4)
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "block_d", 2)
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "bwd_block_d", 2)
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "min_programs", 1)
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "few_rows", 0)  # tiny shapes keep the main tiling
    monkeypatch.setitem(triton_scan.SELECTIVE_CFG, "few_rows_infer", 0)
    return triton_scan


def _linear_inputs(shape, dtype, h0, gen):
    real = torch.float32 if dtype != torch.complex64 else torch.float32
    if dtype == torch.complex64:
        mag = torch.rand(shape, generator=gen) * 0.8 + 0.15
        ang = torch.rand(shape, generator=gen) * 6.28
        a = torch.polar(mag, ang)
        b = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
        h = torch.complex(torch.randn(shape[:2], generator=gen), torch.randn(shape[:2], generator=gen)) if h0 else None
    else:
        a = (torch.rand(shape, generator=gen, dtype=real) * 1.6 - 0.8).to(dtype)
        b = torch.randn(shape, generator=gen, dtype=real).to(dtype)
        h = torch.randn(shape[:2], generator=gen, dtype=real).to(dtype) if h0 else None
    return [t.requires_grad_() if t is not None else None for t in (a, b, h)]


# ------------------------------------------------------------------------------ references


@pytest.mark.parametrize("L", [5, 70])  # one step at a time; in chunks
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_ref_gradcheck_fp64(reverse, L):
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(2, 2, L, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    b = torch.randn(2, 2, L, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan_ref(a, b, h0, reverse), (a, b, h0))
    ac, bc = a.detach().to(torch.complex128).requires_grad_(), (b.detach() * 1j + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: linear_scan_ref(a, b, None, reverse), (ac, bc))


@pytest.mark.parametrize("L", [1, 63, 64, 65, 1000, 4097])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_linear_ref_matches_step_by_step(L, dtype):
    """The reference scans chunks side by side (about 2 sqrt(L) Python steps); the recurrence one step at a
    time gives the same h, across the chunk sizes' boundaries, with zeros in a, forward and reverse."""
    g = torch.Generator().manual_seed(L)
    a = (torch.rand(2, 3, L, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    if dtype.is_complex:
        a = a * torch.exp(1j * torch.rand(2, 3, L, generator=g, dtype=torch.float64))
    a[..., L // 3] = 0
    b = torch.randn(2, 3, L, generator=g, dtype=torch.float64).to(dtype)
    h0 = torch.randn(2, 3, generator=g, dtype=torch.float64).to(dtype)
    for reverse in (False, True):
        h, hs = h0, [None] * L
        for t in (range(L - 1, -1, -1) if reverse else range(L)):
            h = a[..., t] * h + b[..., t]
            hs[t] = h
        torch.testing.assert_close(linear_scan_ref(a, b, h0, reverse), torch.stack(hs, -1), rtol=1e-12, atol=1e-12)


def test_linear_ref_matches_closed_form():
    # h[t] = sum_{s<=t} (prod_{s<r<=t} a[r]) b[s] + (prod_{r<=t} a[r]) h0, written out directly
    g = torch.Generator().manual_seed(1)
    a, b, h0 = torch.rand(1, 2, 6, generator=g, dtype=torch.float64), torch.randn(1, 2, 6, generator=g, dtype=torch.float64), torch.randn(1, 2, generator=g, dtype=torch.float64)
    h = linear_scan_ref(a, b, h0)
    for t in range(6):
        expect = torch.prod(a[..., : t + 1], -1) * h0
        for s in range(t + 1):
            expect = expect + torch.prod(a[..., s + 1 : t + 1], -1) * b[..., s]
        torch.testing.assert_close(h[..., t], expect)
    hr = linear_scan_ref(a.flip(-1), b.flip(-1), h0).flip(-1)
    torch.testing.assert_close(linear_scan_ref(a, b, h0, reverse=True), hr)


def _selective_inputs(Bsz, Dm, N, L, G, dtype=torch.float64, gen=None, opts=("D", "z", "db")):
    gen = gen or torch.Generator().manual_seed(0)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=gen, dtype=torch.float64) * scale).to(dtype)  # noqa: E731
    shp = (Bsz, N, L) if G is None else (Bsz, G, N, L)
    ins = dict(
        u=r(Bsz, Dm, L),
        delta=r(Bsz, Dm, L, scale=0.5),
        A=(-torch.rand(Dm, N, generator=gen, dtype=torch.float64) * 2 - 0.1).to(dtype),
        B=r(*shp),
        C=r(*shp),
        D=r(Dm) if "D" in opts else None,
        z=r(Bsz, Dm, L) if "z" in opts else None,
        delta_bias=r(Dm, scale=0.3) if "db" in opts else None,
    )
    return {k: (v.requires_grad_() if v is not None else None) for k, v in ins.items()}


@pytest.mark.parametrize("G, softplus", [(None, True), (2, False)])
def test_selective_ref_gradcheck_fp64(G, softplus):
    ins = _selective_inputs(1, 4, 2, 4, G)
    keys = [k for k, v in ins.items() if v is not None]
    f = lambda *xs: selective_scan_ref(**dict(zip(keys, xs)), delta_softplus=softplus)  # noqa: E731
    assert torch.autograd.gradcheck(f, tuple(ins[k] for k in keys))


@pytest.mark.parametrize("L, elems", [(70, 1 << 24), (300, 1000)])  # one block of steps; blocks of 25 steps
def test_selective_ref_matches_step_by_step(monkeypatch, L, elems):
    """The reference scans blocks of steps in chunks (about 2 sqrt(L) Python steps); the recurrence of its
    docstring one step at a time gives the same output and last state."""
    from kernels.scan import reference

    monkeypatch.setattr(reference, "_SELECTIVE_ELEMS", elems)
    ins = {k: (v.detach() if v is not None else None) for k, v in _selective_inputs(2, 5, 4, L, 5).items()}
    dt = torch.nn.functional.softplus(ins["delta"] + ins["delta_bias"][:, None])
    Bd, Cd = (ins[k].repeat_interleave(1, dim=1) for k in ("B", "C"))  # G = D: one group per channel
    x = torch.zeros(2, 5, 4, dtype=torch.float64)
    ys = []
    for t in range(L):
        x = torch.exp(dt[:, :, t, None] * ins["A"]) * x + (dt[:, :, t] * ins["u"][:, :, t])[..., None] * Bd[..., t]
        ys.append((x * Cd[..., t]).sum(-1))
    y = (torch.stack(ys, -1) + ins["D"][:, None] * ins["u"]) * torch.nn.functional.silu(ins["z"])
    out, last = selective_scan_ref(**ins, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, x, rtol=1e-12, atol=1e-12)


def test_selective_ref_is_a_linear_scan_per_state():
    # with N = 1 and C = 1 the selective scan is linear_scan(exp(dt A), dt B u)
    ins = _selective_inputs(2, 3, 1, 7, None, opts=())
    ins["C"] = torch.ones_like(ins["C"])
    dt = ins["delta"]
    h = linear_scan_ref(torch.exp(dt * ins["A"][None]), dt * ins["B"] * ins["u"])
    torch.testing.assert_close(selective_scan_ref(**ins), h)


@pytest.mark.parametrize("G", [None, 3])
def test_step_matches_full_scan(G):
    ins = _selective_inputs(2, 6, 3, 5, G, dtype=torch.float32)
    out, last = selective_scan_ref(**ins, delta_softplus=True, return_last_state=True)
    state = torch.zeros(2, 6, 3)
    for t in range(5):
        y, state = selective_scan_step(
            state, ins["u"][..., t], ins["delta"][..., t], ins["A"], ins["B"][..., t], ins["C"][..., t],
            ins["D"], ins["z"][..., t], ins["delta_bias"], delta_softplus=True,
        )
        torch.testing.assert_close(y, out[..., t], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, last, rtol=1e-5, atol=1e-5)


def test_cpu_default_is_reference(monkeypatch):
    monkeypatch.delenv("TSMODELS_KERNELS", raising=False)
    ins = _selective_inputs(1, 2, 2, 3, None, dtype=torch.float32)
    torch.testing.assert_close(selective_scan(**ins), selective_scan_ref(**ins), rtol=0, atol=0)
    a, b = torch.rand(1, 2, 3), torch.randn(1, 2, 3)
    torch.testing.assert_close(linear_scan(a, b), linear_scan_ref(a, b), rtol=0, atol=0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="linear_scan"):
        linear_scan(torch.rand(2, 3, 4), torch.rand(2, 3, 5))
    with pytest.raises(ValueError, match="h0"):
        linear_scan(torch.rand(2, 3, 4), torch.rand(2, 3, 4), torch.rand(3, 2))
    ins = _selective_inputs(1, 4, 2, 3, None, dtype=torch.float32)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**{**ins, "B": torch.rand(1, 3, 3)})
    with pytest.raises(ValueError, match="G dividing"):
        selective_scan(**{**ins, "B": torch.rand(1, 3, 2, 3), "C": torch.rand(1, 3, 2, 3)})
    with pytest.raises(ValueError, match="complex A"):
        selective_scan(**{**ins, "A": ins["A"].detach().to(torch.complex64)})


# ------------------------------------------------------------------------------ Triton (interpreter)


@pytest.mark.parametrize(
    "L, reverse, h0, dtype",
    [
        (1, False, True, torch.float32),
        (4, False, False, torch.float32),  # exactly one block
        (5, False, True, torch.float32),  # one block + 1
        (13, False, True, torch.float32),
        (1, True, True, torch.float32),
        (5, True, False, torch.float32),
        (13, True, True, torch.float32),
        (9, False, True, torch.bfloat16),
        (9, True, False, torch.bfloat16),
        (1, False, True, torch.complex64),
        (5, False, True, torch.complex64),
        (11, True, True, torch.complex64),
    ],
)
def test_linear_triton_matches_reference(tiny_triton, L, reverse, h0, dtype):
    gen = torch.Generator().manual_seed(L + 100 * reverse)
    a, b, h = _linear_inputs((2, 3, L), dtype, h0, gen)  # 6 rows: 3 programs of 2, the last full
    out = linear_scan(a, b, h, reverse)
    assert out.dtype == dtype and out.shape == (2, 3, L)
    ref = linear_scan_ref(a, b, h, reverse)
    ftol, gtol = TOL[dtype]
    assert _rel(out, ref) < ftol
    go = torch.randn(out.shape, generator=gen).to(dtype) if dtype != torch.complex64 else torch.polar(
        torch.rand(out.shape, generator=gen), torch.rand(out.shape, generator=gen) * 6.28)
    inputs = [t for t in (a, b, h) if t is not None]
    got = torch.autograd.grad(out, inputs, go)
    exp = torch.autograd.grad(ref, inputs, go)
    for x, r in zip(got, exp):
        assert x.dtype == r.dtype
        assert _rel(x, r) < gtol


@pytest.mark.parametrize("L, reverse, dtype", [(13, False, torch.float32), (13, True, torch.float32),
                                               (9, False, torch.bfloat16), (4, True, torch.bfloat16),
                                               (1, False, torch.float32)])
def test_linear_triton_backward_shift_by_gather(tiny_triton, monkeypatch, L, reverse, dtype):
    # a[t+1] and h[t-1] moved in registers instead of loaded one step off (LINEAR_CFG "bwd_gather")
    monkeypatch.setitem(tiny_triton.LINEAR_CFG, "bwd_gather", True)
    monkeypatch.setattr(tiny_triton, "LINEAR_CFG_16BIT", {"tile": 16, "bwd_gather": True})
    gen = torch.Generator().manual_seed(L)
    a, b, h = _linear_inputs((2, 3, L), dtype, True, gen)
    go = torch.randn((2, 3, L), generator=gen).to(dtype)
    got = torch.autograd.grad(linear_scan(a, b, h, reverse), [a, b, h], go)
    exp = torch.autograd.grad(linear_scan_ref(a, b, h, reverse), [a, b, h], go)
    for x, r in zip(got, exp):
        assert _rel(x, r) < TOL[dtype][1]


@pytest.mark.parametrize("gather", [False, True])
@pytest.mark.parametrize("L, reverse, dtype", [(13, False, torch.float32), (13, True, torch.bfloat16),
                                               (4, False, torch.bfloat16), (1, True, torch.float32)])
def test_linear_triton_prefetch(tiny_triton, monkeypatch, L, reverse, dtype, gather):
    # the next block's loads issued before this block's scan (LINEAR_CFG "prefetch", "bwd_prefetch"):
    # L = 13 is 4 blocks of 4 with a partial last one, L = 4 exactly one block, L = 1 a single step
    opts = {"prefetch": True, "bwd_prefetch": True, "bwd_gather": gather}
    for key, val in opts.items():
        monkeypatch.setitem(tiny_triton.LINEAR_CFG, key, val)
    monkeypatch.setattr(tiny_triton, "LINEAR_CFG_16BIT", {"tile": 16, **opts})
    gen = torch.Generator().manual_seed(L + 100)
    a, b, h = _linear_inputs((2, 3, L), dtype, True, gen)
    out = linear_scan(a, b, h, reverse)
    ref = linear_scan_ref(a, b, h, reverse)
    assert _rel(out, ref) < TOL[dtype][0]
    go = torch.randn((2, 3, L), generator=gen).to(dtype)
    got = torch.autograd.grad(out, [a, b, h], go)
    exp = torch.autograd.grad(ref, [a, b, h], go)
    for x, r in zip(got, exp):
        assert _rel(x, r) < TOL[dtype][1]


def test_linear_triton_odd_rows(tiny_triton):
    # 5 rows with 2 per program: the last program is half masked
    gen = torch.Generator().manual_seed(7)
    a, b, h = _linear_inputs((1, 5, 6), torch.float32, True, gen)
    assert _rel(linear_scan(a, b, h), linear_scan_ref(a, b, h)) < 1e-5


SEL_CASES = [
    # (Bsz, Dm, N, L, G, opts, softplus)
    (2, 6, 3, 1, None, ("D", "z", "db"), True),
    (1, 6, 3, 4, None, ("D", "z", "db"), True),  # L = chunk
    (1, 5, 3, 5, None, ("D",), False),  # L = chunk + 1, channels not a multiple of the block
    (2, 8, 4, 11, 2, ("z", "db"), True),  # groups of B and C
    (1, 4, 16, 9, None, (), False),
]


@pytest.mark.parametrize("Bsz, Dm, N, L, G, opts, softplus", SEL_CASES)
def test_selective_triton_matches_reference(tiny_triton, Bsz, Dm, N, L, G, opts, softplus):
    _check_selective_triton(Bsz, Dm, N, L, G, opts, softplus)


@pytest.mark.parametrize("case", [SEL_CASES[2], (1, 4, 2, 6, 2, ("z", "db"), True)])
def test_selective_triton_other_tilings(tiny_triton, monkeypatch, case):
    # one channel per program forward, a register cap on the backward (the launch option passes through)
    monkeypatch.setitem(tiny_triton.SELECTIVE_CFG, "block_d", 1)
    monkeypatch.setitem(tiny_triton.SELECTIVE_CFG, "bwd_maxnreg", 128)
    _check_selective_triton(*case)


@pytest.mark.parametrize("case", [(1, 5, 3, 19, None, ("D", "z", "db"), True), (2, 4, 3, 13, 2, ("D",), False)])
def test_selective_triton_few_rows_tiling(tiny_triton, monkeypatch, case):
    # few (batch x channel) rows take FEW_ROWS_TILING, forward and backward alike; its backward starts
    # each program at its own state
    monkeypatch.setitem(tiny_triton.SELECTIVE_CFG, "few_rows", 10**9)
    monkeypatch.setattr(tiny_triton, "FEW_ROWS_TILING", {"chunk": 8, "block_d": 4, "bwd_block_d": 1, "bwd_maxnreg": 128,
                                                         "bwd_rotate": True})
    assert tiny_triton._tiling(16, True)["chunk"] == 8 and tiny_triton._tiling(16, False)["chunk"] == 4
    _check_selective_triton(*case)


def test_selective_grid_keeps_enough_programs():
    from kernels.scan.triton_scan import _fill_grid

    assert _fill_grid(4, 8, 1536, 1024) == 4  # 3072 programs already
    assert _fill_grid(4, 1, 1536, 1024) == 1  # 384 -> 768 -> 1536
    assert _fill_grid(4, 1, 8, 1024) == 1


def _check_selective_triton(Bsz, Dm, N, L, G, opts, softplus):
    ins = _selective_inputs(Bsz, Dm, N, L, G, dtype=torch.float32, gen=torch.Generator().manual_seed(L), opts=opts)
    keys = [k for k, v in ins.items() if v is not None]
    out, last = selective_scan(**ins, delta_softplus=softplus, return_last_state=True)
    ref, ref_last = selective_scan_ref(**ins, delta_softplus=softplus, return_last_state=True)
    assert out.shape == (Bsz, Dm, L) and last.shape == (Bsz, Dm, N)
    assert _rel(out, ref) < 1e-5 and _rel(last, ref_last) < 1e-5
    go = torch.randn(out.shape)
    got = torch.autograd.grad(out, [ins[k] for k in keys], go)
    exp = torch.autograd.grad(ref, [ins[k] for k in keys], go)
    for k, x, r in zip(keys, got, exp):
        assert x.shape == r.shape, k
        assert _rel(x, r) < 1e-4, k


def test_selective_triton_bf16(tiny_triton):
    ins = _selective_inputs(1, 4, 4, 6, None, dtype=torch.bfloat16, opts=("D", "z"))
    ins["A"] = ins["A"].detach().float().requires_grad_()
    out = selective_scan(**ins, delta_softplus=True)
    ref = selective_scan_ref(**ins, delta_softplus=True)
    assert out.dtype == torch.bfloat16 and _rel(out, ref) < 2e-2
    go = torch.randn(out.shape).to(torch.bfloat16)
    for x, r in zip(torch.autograd.grad(out, [ins["u"], ins["delta"], ins["A"]], go),
                    torch.autograd.grad(ref, [ins["u"], ins["delta"], ins["A"]], go)):
        assert _rel(x, r) < 2e-2


def test_selective_triton_without_grad_keeps_no_states(tiny_triton):
    ins = {k: (v.detach() if v is not None else None) for k, v in _selective_inputs(1, 4, 2, 6, None, torch.float32).items()}
    with torch.no_grad():
        out = selective_scan(**ins)
    assert _rel(out, selective_scan_ref(**ins)) < 1e-5


# ------------------------------------------------------------------------------ GPU


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_gpu(dtype, reverse):
    gen = torch.Generator().manual_seed(3)
    a, b, h = (t.detach().cuda().requires_grad_() for t in _linear_inputs((2, 64, 3001), dtype, True, gen))
    out = linear_scan(a, b, h, reverse)
    ref = linear_scan_ref(a, b, h, reverse)
    ftol, gtol = TOL[dtype]
    assert _rel(out, ref) < ftol
    go = torch.randn_like(out)
    for x, r in zip(torch.autograd.grad(out, (a, b, h), go), torch.autograd.grad(ref, (a, b, h), go)):
        assert _rel(x, r) < gtol


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("G", [None, 4])
def test_selective_gpu(G):
    # 2x64 rows take the few-rows tiling (chunk 512): L = 1100 crosses two chunk boundaries
    ins = {k: (v.detach().cuda().requires_grad_() if v is not None else None)
           for k, v in _selective_inputs(2, 64, 16, 1100, G, torch.float32).items()}
    out = selective_scan(**ins, delta_softplus=True)
    ref = selective_scan_ref(**ins, delta_softplus=True)
    assert _rel(out, ref) < 1e-5
    keys = [k for k, v in ins.items() if v is not None]
    go = torch.randn_like(out)
    for k, x, r in zip(keys, torch.autograd.grad(out, [ins[k] for k in keys], go),
                       torch.autograd.grad(ref, [ins[k] for k in keys], go)):
        assert _rel(x, r) < 1e-4, k


def test_linear_tiling_keeps_enough_programs():
    """Rows per program shrink (to 1 at least) when few rows would leave the GPU with few programs; the
    benchmark's shapes (B*D = 8192 rows) keep the swept tilings."""
    from kernels.scan import triton_scan

    blocks = triton_scan._linear_blocks
    assert blocks(8192, 32768, 2)[:2] == (16, 512)  # bf16: 512 programs
    assert blocks(8192, 32768, 4)[:2] == (2, 4096)  # fp32: 4096 programs
    assert blocks(8192, 32768, 2, "bwd_")[:2] == (16, 256)
    assert blocks(1024, 65536, 2)[0] == 2  # 512 programs >= 264
    assert blocks(256, 65536, 2)[0] == 1  # one row per program: 256 programs
    assert blocks(3, 5, 4)[:2] == (1, 8)
