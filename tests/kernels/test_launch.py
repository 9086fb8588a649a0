"""kernels._launch: the cached-launch path takes exactly the calls Triton would compile alike."""

import pytest
import torch

from kernels._launch import _arg_key, launcher
from kernels.fftconv import fftconv, fftconv_ref


def test_arg_key_separates_what_triton_specializes():
    buf = torch.zeros(64)
    assert _arg_key(buf) != _arg_key(buf[1:])  # 16-byte alignment
    assert _arg_key(buf) != _arg_key(buf.double())  # dtype
    assert _arg_key(1) != _arg_key(2) != _arg_key(32)  # == 1, % 16
    assert _arg_key(32) == _arg_key(48)
    assert _arg_key(2**31 + 16) != _arg_key(32)  # 64-bit integers
    assert _arg_key(True) != _arg_key(1) and _arg_key(0.5) == _arg_key(2.0)


def test_interpreted_kernels_take_the_normal_path():
    from kernels.fftconv import triton_fftconv as tf

    lk = launcher(tf._fftconv_fwd_kernel)
    if not hasattr(tf._fftconv_fwd_kernel, "params"):  # TRITON_INTERPRET=1 (CI)
        assert lk.broken


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cached_launches_on_gpu(monkeypatch):
    """Repeated fftconv calls (fused forward, spectrum, backward kernels) go through the cache after
    the first and stay exact; a misaligned input gets its own compiled variant."""
    from kernels.fftconv import triton_fftconv as tf

    monkeypatch.setenv("TSMODELS_KERNELS", "triton")
    normal = []
    orig = tf._FWD.kernel

    class Counting:
        params = orig.params

        def __getitem__(self, grid):
            normal.append(grid)
            return orig[grid]

    monkeypatch.setattr(tf._FWD, "kernel", Counting())
    monkeypatch.setattr(tf._FWD, "cache", {})
    g = torch.Generator().manual_seed(0)
    k = (torch.randn(4, 500, generator=g) / 20).cuda()
    for i in range(3):
        u = torch.randn(2, 4, 500, generator=g).cuda().requires_grad_(True)
        y = fftconv(u, k)
        (du,) = torch.autograd.grad(y, u, torch.ones_like(y))
        ur = u.detach().double().requires_grad_(True)
        yr = fftconv_ref(ur, k.double())
        (dur,) = torch.autograd.grad(yr, ur, torch.ones_like(yr))
        assert (y.double() - yr).norm() / yr.norm() < 1e-2
        assert (du.double() - dur).norm() / dur.norm() < 1e-2
    assert not tf._FWD.broken
    # forward and the du launch (conjugate) compile once each; later calls are cached
    assert len(normal) == 2
    buf = torch.randn(2 * 4 * 500 + 1, generator=g).cuda()
    um = buf[1:].view(2, 4, 500)  # 4-byte offset: not 16-byte aligned
    assert (fftconv(um, k).double() - fftconv_ref(um.double(), k.double())).abs().max() < 1e-2
    assert len(normal) == 3
