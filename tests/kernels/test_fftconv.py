"""FFT convolution: the reference against direct sums and gradcheck (fp64), and the fused Triton
kernels (run by the interpreter on CPU) against the reference, forward and gradients.

Tolerances (relative error in norm, against the reference evaluated in fp64):
fp32 1e-5 (the interpreter's tl.dot is an exact fp32 product; on the GPU fp32 uses tf32, ~1e-3,
checked in bench/fftconv.py); bf16 3e-2 (bf16 operands and output rounding).
"""

import math

import pytest
import torch

from kernels.fftconv import fftconv, fftconv_nd, fftconv_nd_ref, fftconv_ref, next_fast_len


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _direct_1d(u, k, D, causal):
    """y[t] = sum_j k[j] u[t - j + c] by explicit loops (c = 0 causal, (L'-1)//2 centred)."""
    B, H, L = u.shape
    Lk = k.shape[-1]
    c = 0 if causal else (Lk - 1) // 2
    y = torch.zeros_like(u)
    for t in range(L):
        for j in range(Lk):
            s = t - j + c
            if 0 <= s < L:
                y[..., t] += k[:, j] * u[..., s]
    return y if D is None else y + D[:, None] * u


def _direct_2d(u, k, causal, circular):
    B, H, S1, S2 = u.shape
    K1, K2 = k.shape[1:]
    c1, c2 = (0, 0) if causal else ((K1 - 1) // 2, (K2 - 1) // 2)
    y = torch.zeros_like(u)
    for i in range(S1):
        for j in range(S2):
            for a in range(K1):
                for b in range(K2):
                    s, t = i - a + c1, j - b + c2
                    if circular:
                        s, t = s % S1, t % S2
                    elif not (0 <= s < S1 and 0 <= t < S2):
                        continue
                    y[..., i, j] += k[:, a, b] * u[..., s, t]
    return y


def test_next_fast_len():
    assert [next_fast_len(n) for n in (1, 2, 7, 11, 17, 97, 1000)] == [1, 2, 8, 12, 18, 100, 1000]


@pytest.mark.parametrize("L,Lk,causal", [(1, 1, True), (9, 9, True), (10, 4, True), (9, 9, False), (10, 4, False)])
def test_reference_matches_direct_1d(L, Lk, causal):
    g = torch.Generator().manual_seed(L * 10 + Lk)
    u = torch.randn(2, 3, L, generator=g, dtype=torch.float64)
    k = torch.randn(3, Lk, generator=g, dtype=torch.float64)
    D = torch.randn(3, generator=g, dtype=torch.float64)
    assert _rel(fftconv_ref(u, k, D, causal), _direct_1d(u, k, D, causal)) < 1e-12


@pytest.mark.parametrize("causal,circular", [(True, False), (False, False), (True, True), (False, True)])
def test_reference_matches_direct_2d(causal, circular):
    g = torch.Generator().manual_seed(7)
    u = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    assert _rel(fftconv_nd_ref(u, k, causal=causal, circular=circular), _direct_2d(u, k, causal, circular)) < 1e-12


def test_reference_3d_is_separable_conv():
    # a rank-one 3-D kernel equals three 1-D causal convolutions in turn
    g = torch.Generator().manual_seed(3)
    u = torch.randn(1, 2, 4, 5, 6, generator=g, dtype=torch.float64)
    ks = [torch.randn(2, n, generator=g, dtype=torch.float64) for n in (2, 3, 4)]
    k = ks[0][:, :, None, None] * ks[1][:, None, :, None] * ks[2][:, None, None, :]
    y = fftconv_nd_ref(u, k)
    x = u
    for ax, kk in zip((2, 3, 4), ks):
        xt = x.movedim(ax, -1).movedim(1, 0)  # (H, B, ..., n)
        shp = xt.shape
        yt = fftconv_ref(xt.reshape(2, -1, shp[-1]).transpose(0, 1), kk)
        x = yt.transpose(0, 1).reshape(shp).movedim(0, 1).movedim(-1, ax)
    assert _rel(y, x) < 1e-12


def test_reference_gradcheck_fp64():
    g = torch.Generator().manual_seed(0)
    for causal in (True, False):
        u = torch.randn(2, 2, 7, generator=g, dtype=torch.float64, requires_grad=True)
        k = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
        D = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c: fftconv_ref(a, b, c, causal), (u, k, D))
    u = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fftconv_nd_ref(a, b, causal=False, circular=True), (u, k))


def test_reference_rejects_long_kernel():
    with pytest.raises(ValueError):
        fftconv_ref(torch.randn(1, 2, 4), torch.randn(2, 5))


def _check(fn, ref, u64, k64, D64, dtype, tol_y, tol_g):
    """Compare fn(u, k, D) in dtype with ref in fp64: outputs and the gradients of all three inputs."""
    u = u64.to(dtype).requires_grad_(True)
    k = k64.float().requires_grad_(True)
    D = None if D64 is None else D64.float().requires_grad_(True)
    y = fn(u, k, D)
    assert y.dtype == dtype and y.shape == u.shape
    ur, kr = u64.clone().requires_grad_(True), k64.clone().requires_grad_(True)
    Dr = None if D64 is None else D64.clone().requires_grad_(True)
    yr = ref(ur, kr, Dr)
    assert torch.isfinite(y).all()
    assert _rel(y, yr) < tol_y
    gy = torch.randn(yr.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(yr.device)
    y.backward(gy.to(dtype))
    yr.backward(gy)
    assert _rel(u.grad, ur.grad) < tol_g
    assert _rel(k.grad, kr.grad) < tol_g
    if D is not None:
        assert _rel(D.grad, Dr.grad) < tol_g


TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (3e-2, 3e-2)}
# the three-level kernel's forward scratch (triton_long.SCRATCH_DTYPE): fp32 is exact on the interpreter
# (fp32 products), fp16 rounds each value to 11 bits twice (measured ~2e-4 relative here)
SCRATCH_TOL = {torch.float32: 1e-5, torch.float16: 1e-3}
# fp16 dot operands (FP16_DOTS, BWD_FP16_DOTS) round every product's inputs to 11 bits as well, as tf32
# does on a GPU (up to ~1e-3 measured here)
DOTS16_TOL = 3e-3

CASES_1D = [  # B, H, L, L', causal, D
    (2, 3, 1, 1, True, True),
    (2, 3, 37, 37, True, True),  # odd, not a power of two
    (1, 2, 100, 13, True, False),  # kernel shorter than the input
    (2, 2, 37, 20, False, True),  # centred kernel
    (3, 2, 200, 200, True, True),  # two tiles of 16 rows: n = 512 = 32 x 16
]


@pytest.mark.parametrize("B,H,L,Lk,causal,has_d", CASES_1D)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_fftconv_1d(monkeypatch, B, H, L, Lk, causal, has_d, dtype):
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    g = torch.Generator().manual_seed(B * 1000 + L)
    u = torch.randn(B, H, L, generator=g, dtype=torch.float64)
    k = torch.randn(H, Lk, generator=g, dtype=torch.float64) / Lk**0.5
    D = torch.randn(H, generator=g, dtype=torch.float64) if has_d else None
    _check(
        lambda a, b, c: fftconv(a, b, c, causal),
        lambda a, b, c: fftconv_ref(a, b, c, causal),
        u, k, D, dtype, *TOL[dtype],
    )


CASES_2D = [  # S, S', causal, circular
    ((5, 7), (3, 4), True, False),
    ((6, 5), (6, 5), False, False),
    ((16, 16), (5, 5), False, True),
    ((16, 16), (16, 16), True, True),
]


@pytest.mark.parametrize("S,Sk,causal,circular", CASES_2D)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_fftconv_2d(monkeypatch, S, Sk, causal, circular, dtype):
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    g = torch.Generator().manual_seed(sum(S) + sum(Sk))
    u = torch.randn(2, 3, *S, generator=g, dtype=torch.float64)
    k = torch.randn(3, *Sk, generator=g, dtype=torch.float64) / (Sk[0] * Sk[1]) ** 0.5
    D = torch.randn(3, generator=g, dtype=torch.float64)
    _check(
        lambda a, b, c: fftconv_nd(a, b, c, causal=causal, circular=circular),
        lambda a, b, c: fftconv_nd_ref(a, b, c, causal=causal, circular=circular),
        u, k, D, dtype, *TOL[dtype],
    )


CASES_ND = [  # B, S, S', causal, circular, D, mode of the three-level kernel
    (3, (3, 5, 7), (2, 3, 5), True, False, True, "3d"),  # odd B, padded to 16^3
    (2, (6, 5, 9), (3, 4, 5), False, False, True, "3d"),  # centred kernel
    (1, (16, 16, 16), (3, 3, 3), False, True, False, "3d"),  # circular, centred: wraps on every axis
    (2, (20, 200), (4, 7), True, False, True, "rows"),  # 2-D too big for one tile: (32, 256) = 32 x (16 x 16)
    (2, (300, 12), (9, 5), False, False, True, "cols"),  # (512, 16) = (32 x 16) x 16
]


@pytest.mark.parametrize("B,S,Sk,causal,circular,has_d,mode", CASES_ND)
@pytest.mark.parametrize("scratch,dots16,bwd_dots16", [(torch.float32, False, False), (torch.float16, True, False),
                                                       (torch.float16, True, True)])
def test_triton_fftconv_nd_three_level(monkeypatch, B, S, Sk, causal, circular, has_d, mode, scratch, dots16,
                                       bwd_dots16):
    """3-D fields, and 2-D fields the one-tile kernel does not hold, on the three-level kernel (its
    levels laid on the padded grid's axes): forward and all gradients against the fp64 reference.
    (Its measured range starts at 16K-value grids and 1024 rows; small shapes here, for the interpreter.)"""
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tl_, "ND_MIN_N", 0)
    monkeypatch.setattr(tl_, "ND_MIN_ROWS", 0)
    monkeypatch.setattr(tl_, "SCRATCH_DTYPE", scratch)
    monkeypatch.setattr(tl_, "BWD_SCRATCH_DTYPE", scratch)
    monkeypatch.setattr(tl_, "FP16_DOTS", dots16)
    monkeypatch.setattr(tl_, "BWD_FP16_DOTS", bwd_dots16)
    monkeypatch.setattr(tl_, "SPECTRUM_FP16_DOTS", bwd_dots16)
    tol = DOTS16_TOL if dots16 or bwd_dots16 else SCRATCH_TOL[scratch]
    nd = tl_.plan_nd(S, Sk, circular, torch.float32)
    assert nd is not None and nd.mode == mode
    calls = []
    fn = tl_.launch_bwd
    monkeypatch.setattr(tl_, "launch_bwd", lambda *a, **kw: calls.append(kw["nd"] if "nd" in kw else a[6]) or fn(*a, **kw))
    g = torch.Generator().manual_seed(sum(S) + sum(Sk))
    u = torch.randn(B, 2, *S, generator=g, dtype=torch.float64)
    k = torch.randn(2, *Sk, generator=g, dtype=torch.float64) / math.prod(Sk) ** 0.5
    D = torch.randn(2, generator=g, dtype=torch.float64) if has_d else None
    _check(
        lambda a, b, c: fftconv_nd(a, b, c, causal=causal, circular=circular),
        lambda a, b, c: fftconv_nd_ref(a, b, c, causal=causal, circular=circular),
        u, k, D, torch.float32, tol, tol,
    )
    assert calls == [nd]
    # without a gradient for k, du alone: the forward kernel on the correlation (conj spectrum)
    uf = u.float().requires_grad_(True)
    y = fftconv_nd(uf, k.float(), None, causal=causal, circular=circular)
    gy = torch.randn(y.shape, generator=g)
    (du,) = torch.autograd.grad(y, uf, gy)
    ur = u.clone().requires_grad_(True)
    (dur,) = torch.autograd.grad(fftconv_nd_ref(ur, k, None, causal=causal, circular=circular), ur, gy.double())
    assert calls == [nd] and _rel(du, dur) < tol


def test_fftconv_nd_few_rows_take_torch(monkeypatch):
    """Below ND_MIN_ROWS batch x channel rows the three-level kernel has too few row pairs to fill the
    GPU (measured slower): fftconv_nd takes torch.fft even for a field it could lay out."""
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tl_, "ND_MIN_N", 0)
    monkeypatch.setattr(tl_, "fftconv_long", lambda *a, **kw: pytest.fail("took the three-level kernel"))
    g = torch.Generator().manual_seed(3)
    u, k = torch.randn(2, 3, 3, 5, 7, generator=g), torch.randn(3, 2, 3, 5, generator=g)
    assert tl_.plan_nd((3, 5, 7), (2, 3, 5), False) is not None
    assert _rel(fftconv_nd(u, k), fftconv_nd_ref(u.double(), k.double())) < 1e-5


def test_plan_nd():
    """Which N-D fields the three-level kernel takes: every padded axis one or two of its levels (16-64
    each, the first up to 128), 16K to 128K values (the measured range, ND_MIN_N)."""
    from kernels.fftconv.triton_long import plan_nd

    assert plan_nd((16, 32, 32), (16, 32, 32), False).G == (32, 64, 64)  # video clip, full-size kernel
    assert plan_nd((16, 16, 16), (16, 16, 16), False).split == (32, 32, 32)
    assert plan_nd((16, 16, 16), (3, 3, 3), True) is None  # 4K values: torch.fft measured as fast
    assert plan_nd((8, 8, 8), (8, 8, 8), True) is None  # circular axes below the smallest dot
    assert plan_nd((32, 64, 64), (32, 64, 64), True).split == (32, 64, 64)
    assert plan_nd((64, 64, 64), (64, 64, 64), True) is None  # 256K values: beyond the scratch plan
    assert plan_nd((64, 64), (64, 64), False) is None  # (128, 128): no split into levels >= 16
    assert plan_nd((50, 300), (1, 1), False).mode == "rows"  # (64, 512) = 64 x (32 x 16)
    assert plan_nd((100, 300), (1, 1), False) is None  # (128, 512): rows with N1 = 128 measured slower
    assert plan_nd((256, 32), (256, 32), False).mode == "cols"  # (512, 64) = (32 x 16) x 64
    assert plan_nd((16, 16, 100), (3, 3, 3), False) is None  # a 128-long last axis
    assert plan_nd((3, 5, 7), (2, 3, 5), False, torch.float64) is None


def test_triton_small_tiles_and_torch_backward(monkeypatch):
    """One row per program, and the torch.fft path for the kernel gradient of large transforms."""
    from kernels.fftconv import triton_fftconv as tf

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tf, "TILE_ELEMS", 256)
    monkeypatch.setattr(tf, "BWD_TILE_ELEMS", 128)
    g = torch.Generator().manual_seed(11)
    u = torch.randn(2, 2, 50, generator=g, dtype=torch.float64)
    k = torch.randn(2, 50, generator=g, dtype=torch.float64) / 7
    D = torch.randn(2, generator=g, dtype=torch.float64)
    _check(lambda a, b, c: fftconv(a, b, c, False), lambda a, b, c: fftconv_ref(a, b, c, False), u, k, D, torch.float32, 1e-5, 1e-5)
    u2 = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64)
    k2 = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    _check(lambda a, b, c: fftconv_nd(a, b, c), lambda a, b, c: fftconv_nd_ref(a, b, c), u2, k2, D, torch.float32, 1e-5, 1e-5)


def test_triton_fp16(monkeypatch):
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    g = torch.Generator().manual_seed(21)
    u = torch.randn(2, 2, 30, generator=g, dtype=torch.float64)
    k = torch.randn(2, 30, generator=g, dtype=torch.float64) / 6
    D = torch.randn(2, generator=g, dtype=torch.float64)
    _check(lambda a, b, c: fftconv(a, b, c), lambda a, b, c: fftconv_ref(a, b, c), u, k, D, torch.float16, 5e-3, 5e-3)


def test_triton_paths_that_fall_back(monkeypatch):
    """Shapes the fused kernels do not hold (small circular 3-D, circular 1-D, fp64, too long) give the
    reference's answer."""
    from kernels.fftconv import triton_fftconv as tf

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    g = torch.Generator().manual_seed(5)
    monkeypatch.setattr(tf, "MAX_FUSED_N", {torch.float32: 256})
    assert tf.plan_1d(200, 200, torch.float32) is None
    u0 = torch.randn(1, 2, 200, generator=g)
    k0 = torch.randn(2, 200, generator=g) / 14
    assert _rel(fftconv(u0, k0), fftconv_ref(u0.double(), k0.double())) < 1e-5
    u = torch.randn(1, 2, 3, 4, 5, generator=g)
    k = torch.randn(2, 3, 4, 5, generator=g)
    # circular 3-D with axes below the smallest DFT level
    assert _rel(fftconv_nd(u, k, circular=True), fftconv_nd_ref(u.double(), k.double(), circular=True)) < 1e-5
    u1 = torch.randn(1, 2, 9, generator=g)
    k1 = torch.randn(2, 9, generator=g)
    assert _rel(fftconv_nd(u1, k1, circular=True), fftconv_nd_ref(u1.double(), k1.double(), circular=True)) < 1e-5
    assert _rel(fftconv(u1.double(), k1.double()), fftconv_ref(u1.double(), k1.double())) < 1e-12


@pytest.mark.parametrize("B,L,Lk,causal,has_d,split,sincos,hold", [
    (3, 2100, 1990, True, True, (16, 16, 16), True, True),  # odd B: the last row pair holds one real row
    (3, 2100, 1990, True, True, (16, 16, 16), False, True),  # the outer twiddle from its table
    # centred kernel (dD = the centre tap's lag); n = 4096, outer column mostly empty
    (2, 1500, 1500, False, True, (16, 16, 16), True, True),
    (1, 2500, 2000, True, True, (16, 32, 16), False, True),  # P != Q: catches a mix-up of the two inner factors
    (3, 2500, 2000, True, True, (16, 32, 16), False, False),  # inner twiddle gathered per block (L >= 16K on GPUs)
])
@pytest.mark.parametrize("scratch,dots16,bwd_dots16", [(torch.float32, False, False), (torch.float16, True, False),
                                                       (torch.float16, True, True)])
def test_triton_long_kernel(monkeypatch, B, L, Lk, causal, has_d, split, sincos, hold, scratch, dots16, bwd_dots16):
    """The three-level kernel (n = N1 * P * Q) against the reference, forward and all gradients.

    Its production range starts at n = 4096 in fp32; the one-tile kernel is switched off and the
    long kernel takes the smallest splits tl.dot allows, so the interpreter runs it in seconds.
    sincos: the outer twiddle computed in registers (else read from its n-long table). hold: pass 2's
    inner twiddle held per program (else gathered in every row block, as with few rows per block).
    scratch: the forward and backward kernels' scratch dtype; dots16, bwd_dots16: their fp16 dot operands
    (FP16_DOTS; BWD_FP16_DOTS, with the spectrum kernel's, SPECTRUM_FP16_DOTS)."""
    from kernels.fftconv import triton_fftconv as tf
    from kernels.fftconv import triton_long as tl_

    n = split[0] * split[1] * split[2]
    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tf, "MAX_FUSED_N", 0)
    monkeypatch.setattr(tl_, "SINCOS_N", (n,) if sincos else ())
    monkeypatch.setattr(tl_, "LONG_N", {torch.float32: (n, n)})
    monkeypatch.setattr(tl_, "SPLITS", {n.bit_length() - 1: split})
    monkeypatch.setattr(tl_, "SCRATCH_DTYPE", scratch)
    monkeypatch.setattr(tl_, "BWD_SCRATCH_DTYPE", scratch)
    monkeypatch.setattr(tl_, "FP16_DOTS", dots16)
    monkeypatch.setattr(tl_, "BWD_FP16_DOTS", bwd_dots16)
    monkeypatch.setattr(tl_, "SPECTRUM_FP16_DOTS", bwd_dots16)
    tol = DOTS16_TOL if dots16 or bwd_dots16 else SCRATCH_TOL[scratch]
    if not hold:
        monkeypatch.setattr(tl_, "HOLD2_MIN_R", {"fwd": n, "bwd": n})
    assert tl_.plan_long(L, Lk, torch.float32) == split
    calls = []
    for name in ("launch", "launch_bwd"):
        fn = getattr(tl_, name)
        monkeypatch.setattr(tl_, name, lambda *a, fn=fn, name=name, **kw: calls.append(name) or fn(*a, **kw))
    g = torch.Generator().manual_seed(L)
    u = torch.randn(B, 2, L, generator=g, dtype=torch.float64)
    k = torch.randn(2, Lk, generator=g, dtype=torch.float64) * torch.exp(-torch.arange(Lk) / 200.0) / 10
    D = torch.randn(2, generator=g, dtype=torch.float64) if has_d else None
    _check(lambda a, b, c: fftconv(a, b, c, causal), lambda a, b, c: fftconv_ref(a, b, c, causal),
           u, k, D, torch.float32, tol, tol)
    # forward, then the backward kernel for du and the cross-spectrum, whose inverse gives dk and dD
    # (with B=3 and 2 channels on the interpreter's 8 programs, each channel's two row pairs are split
    # over two work items; the inverse kernel sums them)
    assert calls == ["launch", "launch_bwd"]
    # without a gradient for k, du alone: the forward kernel on the correlation
    calls.clear()
    uf = u.float().requires_grad_(True)
    y = fftconv(uf, k.float(), None if D is None else D.float(), causal)
    gy = torch.randn(y.shape, generator=g)
    (du,) = torch.autograd.grad(y, uf, gy)
    ur = u.clone().requires_grad_(True)
    (dur,) = torch.autograd.grad(fftconv_ref(ur, k, D, causal), ur, gy.double())
    assert calls == ["launch", "launch"] and _rel(du, dur) < tol
    # no gradient wanted: the same launches without the autograd Function, the same output bit for bit
    calls.clear()
    with torch.no_grad():
        assert torch.equal(fftconv(uf, k.float(), None if D is None else D.float(), causal), y)
    assert calls == ["launch"]


@pytest.mark.parametrize("L", [1, 1000, 1024, 2100])
def test_row_absmax_kernel(L):
    """The rows' max |x| that the long kernels scale by (_row_absmax) against torch's amax: one block, a
    partial block, whole blocks and a tail; a zero row gives 0."""
    from kernels.fftconv import triton_long as tl_

    x = torch.randn(3, 2, L, generator=torch.Generator().manual_seed(L)) * torch.tensor([1e-20, 1.0, 1e20])[:, None, None]
    x[1, 0] = 0.0
    assert torch.equal(tl_._row_absmax(x), x.abs().amax(-1).flatten())


def _rows_rel(y, yr):
    """Relative error of each (b, h) row: (B, H)."""
    d = (y.double() - yr.double()).flatten(2).norm(dim=-1)
    return d / yr.double().flatten(2).norm(dim=-1).clamp_min(1e-300)


def _any_magnitude_case(device="cpu"):
    """Rows of u from 1e-15 to 1e15 (paired with each other in the kernel's complex rows), kernels of
    1e5 and 1e-5 (with and without D), a zero row and a zero kernel, and a constant row through a
    positive kernel (the spectrum and the output at their bounds, L max |u| and max |u| sum |k|):
    (u, k, D) in fp64."""
    g = torch.Generator().manual_seed(5)
    B, H, L = 5, 3, 2100
    u = torch.randn(B, H, L, generator=g, dtype=torch.float64)
    u *= torch.tensor([1e6, 1e-6, 1e-15, 1e15, 1.0], dtype=torch.float64)[:, None, None]
    u[4, 1] = 0.0
    u[4, 0] = -1.0
    Lk = 1990  # n = 4096
    k = torch.randn(H, Lk, generator=g, dtype=torch.float64) * torch.exp(-torch.arange(Lk) / 200.0) / 10
    k[0] = k[0].abs()
    k *= torch.tensor([1e5, 1e-5, 0.0], dtype=torch.float64)[:, None]
    D = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    return u.to(device), k.to(device), D.to(device)


@pytest.mark.parametrize("bwd_scratch,dots16", [(torch.float16, True), (torch.float32, False)])
def test_triton_long_kernel_any_magnitude(monkeypatch, bwd_scratch, dots16):
    """The forward kernel's fp16 scratch holds rows and kernels of any magnitude (each row and channel
    scaled by a power of two, SCRATCH_DTYPE): every row keeps its own relative accuracy, however large
    the row it shares a complex transform with; zero rows and kernels give zeros. The same for the
    backward kernel's gradients, its scratch fp16 or fp32 (BWD_SCRATCH_DTYPE), and for the kernels' fp16
    dot operands (FP16_DOTS, BWD_FP16_DOTS, SPECTRUM_FP16_DOTS; on the interpreter: operands rounded to fp16, where a value
    out of fp16's range would be inf)."""
    from kernels.fftconv import triton_fftconv as tf
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tf, "MAX_FUSED_N", 0)
    monkeypatch.setattr(tl_, "LONG_N", {torch.float32: (4096, 4096)})
    monkeypatch.setattr(tl_, "SPLITS", {12: (16, 16, 16)})
    assert tl_.SCRATCH_DTYPE == torch.float16
    monkeypatch.setattr(tl_, "BWD_SCRATCH_DTYPE", bwd_scratch)
    monkeypatch.setattr(tl_, "FP16_DOTS", dots16)
    monkeypatch.setattr(tl_, "BWD_FP16_DOTS", dots16)
    monkeypatch.setattr(tl_, "SPECTRUM_FP16_DOTS", dots16)
    u, k, D = _any_magnitude_case()
    assert tl_.plan_long(u.shape[-1], k.shape[-1], torch.float32) == (16, 16, 16)
    # two rows that share a complex transform, scaled to the same max |u|, still round relative to
    # each other's values (the twiddles mix them): here the constant row's concentrated transform costs
    # its random partner ~2e-3 in fp16 (4e-3 with fp16 operands too), ~2e-6 in fp32; the GPU test's bound
    _check_any_magnitude(u, k, D, 1e-2, 1e-2 if bwd_scratch == torch.float16 else SCRATCH_TOL[bwd_scratch])


def _check_any_magnitude(u, k, D, tol, tol_bwd):
    """The any-magnitude case through the forward, the input gradient alone (the forward kernel on the
    correlation with k) and the fused backward (du, dk, dD), with an output gradient whose rows run the
    other way (row pairs mix 1e15 u with 1e-6 g, and so on): each row of y and du, and dk and dD per
    channel, within tol (tol_bwd for the fused backward) of the fp64 reference; zero rows exactly zero."""
    y = fftconv(u.float(), k.float(), D.float())
    yr = fftconv_ref(u, k, D)
    zero = (yr.flatten(2).abs().amax(-1) == 0)
    assert zero[:, 2].all() and zero[4, 1]
    assert torch.isfinite(y).all() and (y[zero] == 0).all()
    assert _rows_rel(y, yr)[~zero].max() < tol
    gy = u.flip(0)
    uf = u.float().requires_grad_(True)
    (du,) = torch.autograd.grad(fftconv(uf, k.float(), D.float()), uf, gy.float())
    ur = u.clone().requires_grad_(True)
    (dur,) = torch.autograd.grad(fftconv_ref(ur, k, D), ur, gy)
    nz = dur.flatten(2).abs().amax(-1) > 0
    assert torch.isfinite(du).all() and _rows_rel(du, dur)[nz].max() < tol
    args = [x.float().requires_grad_(True) for x in (u, k, D)]
    grads = torch.autograd.grad(fftconv(*args), args, gy.float())
    args = [x.clone().requires_grad_(True) for x in (u, k, D)]
    refs = torch.autograd.grad(fftconv_ref(*args), args, gy)
    assert all(torch.isfinite(x).all() for x in grads)
    (du, dk, dD), (dur, dkr, dDr) = grads, refs
    nz = dur.flatten(2).abs().amax(-1) > 0
    assert (du[~nz] == 0).all() and _rows_rel(du, dur)[nz].max() < tol_bwd
    assert ((dk.double() - dkr).norm(dim=-1) / dkr.norm(dim=-1)).max() < tol_bwd
    assert ((dD.double() - dDr).abs() / dDr.abs()).max() < tol_bwd


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("L", [1000, 2000, 3000, 20000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fftconv_gpu(L, dtype, monkeypatch):
    """On the GPU, the one-tile and three-level paths (forward, fused backward) against the fp64
    reference; tf32 tensor-core products set the tolerance (~2e-3 measured at B=8, H=768)."""
    from kernels.fftconv import triton_fftconv as tf
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    # padded n >= 4096 (fp32) / 8192 (bf16) take the three-level kernel, shorter ones the one-tile kernel
    long = tl_.plan_long(L, L, dtype) is not None
    assert long == (L >= (2000 if dtype == torch.float32 else 3000))
    assert long or tf.plan_1d(L, L, dtype) is not None
    g = torch.Generator().manual_seed(L)
    u = torch.randn(3, 4, L, generator=g, dtype=torch.float64)  # odd B: a pair with one row
    k = torch.randn(4, L, generator=g, dtype=torch.float64) * torch.exp(-torch.arange(L) / (L / 8)) / (L / 8) ** 0.5
    D = torch.randn(4, generator=g, dtype=torch.float64)
    tol = 1e-2 if dtype == torch.float32 else 3e-2
    _check(fftconv, fftconv_ref, u.cuda(), k.cuda(), D.cuda(), dtype, tol, tol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fftconv_gpu_any_magnitude(monkeypatch):
    """On the GPU (tf32 products, fp16 scratch), rows from 1e-15 to 1e15 sharing complex transforms and
    kernels of 1e5 / 1e-5: each row within tf32's accuracy of the fp64 reference, forward and du."""
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    u, k, D = _any_magnitude_case("cuda")
    assert tl_.plan_long(u.shape[-1], k.shape[-1], torch.float32) is not None
    _check_any_magnitude(u, k, D, 1e-2, 1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("S,Sk,circular", [((16, 32, 32), (16, 32, 32), False), ((32, 32, 32), (5, 5, 5), True),
                                           ((64, 256), (64, 256), True), ((256, 32), (256, 32), False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fftconv_nd_gpu(S, Sk, circular, dtype, monkeypatch):
    """On the GPU, N-D fields on the three-level kernel (3-D, and 2-D in its rows / cols layouts)
    against the fp64 reference, forward and all gradients; centred kernels as S4ND builds them."""
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tl_, "ND_MIN_ROWS", 0)  # 12 rows here
    assert tl_.plan_nd(S, Sk, circular, dtype) is not None
    g = torch.Generator().manual_seed(sum(S))
    u = torch.randn(3, 4, *S, generator=g, dtype=torch.float64)
    k = torch.randn(4, *Sk, generator=g, dtype=torch.float64) / math.prod(Sk) ** 0.5
    D = torch.randn(4, generator=g, dtype=torch.float64)
    tol = 1e-2 if dtype == torch.float32 else 3e-2
    _check(lambda a, b, c: fftconv_nd(a, b, c, causal=False, circular=circular),
           lambda a, b, c: fftconv_nd_ref(a, b, c, causal=False, circular=circular),
           u.cuda(), k.cuda(), D.cuda(), dtype, tol, tol)


@pytest.mark.parametrize("with_d,dots16", [(False, False), (True, False), (True, True)])
def test_long_spectrum_kernel_layout(monkeypatch, with_d, dots16):
    """The causal kernel's spectrum from the Triton passes 1-2: (DFT_n(k) + D) / n, frequency k1 + N1 (kp + P kq)
    at tile position (k1, kp, kq), re and im planes — what torch.fft gives, reordered (D: the skip folded in).
    Channels 1e10 apart in size: each to its own accuracy, also with fp16 dot operands (SPECTRUM_FP16_DOTS)."""
    from kernels.fftconv import triton_long as tl_

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    monkeypatch.setattr(tl_, "SPECTRUM_FP16_DOTS", dots16)
    tol = DOTS16_TOL if dots16 else 1e-6
    plan = (16, 16, 16)
    n = 16 ** 3
    g = torch.Generator().manual_seed(0)
    k = torch.randn(3, 1990, generator=g) * torch.tensor([1e5, 1e-5, 1.0])[:, None]
    k[2] = k[2].abs()  # a positive kernel: its DC term reaches the bound, sum |k|
    D = torch.randn(3, generator=g) * torch.tensor([1e5, 1e-5, 1.0]) if with_d else None
    got, scale = tl_._spectrum_tiles(k, plan, True, None, D)
    # the forward's scale: the power of two at or below 1 / (sum |k| + |D|)
    bound = k.abs().sum(1) + (D.abs() if with_d else 0)
    assert torch.equal(scale, torch.exp2(torch.floor(-torch.log2(bound))))
    assert torch.equal(tl_._spectrum_tiles(0 * k, plan, True, None, None).scale, torch.ones(3))
    K = torch.fft.fft(k.double(), n=n)
    if with_d:
        K = K + D.double()[:, None]
    want = (K / n).view(3, 16, 16, 16).permute(0, 3, 2, 1).reshape(3, n)
    assert got.shape == (3, 2, n)
    for h in range(3):
        assert _rel(got[h, 0], want[h].real) < tol and _rel(got[h, 1], want[h].imag) < tol


def test_dispatch_lengths():
    """Which 1-D path a length takes (the thresholds measured in bench/README.md): the one-tile kernel
    below padded n = 4096, the three-level kernel from 4096 in fp32 (8192 in bf16) to 128K, torch.fft above."""
    from kernels.fftconv import triton_fftconv as tf
    from kernels.fftconv import triton_long as tl_

    def path(L, dtype):
        if tl_.plan_long(L, L, dtype) is not None:
            return "long"
        return "one-tile" if tf.plan_1d(L, L, dtype) is not None else "torch"

    assert [path(L, torch.float32) for L in (1024, 2048, 4096, 65536, 65537)] == \
        ["one-tile", "long", "long", "long", "torch"]
    assert [path(L, torch.bfloat16) for L in (1024, 2048, 4096, 65536, 65537)] == \
        ["one-tile", "one-tile", "long", "long", "torch"]
