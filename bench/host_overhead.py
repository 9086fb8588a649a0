"""Host (CPU) time per call of the public fftconv against torch.fft, and where it goes.

At short lengths the fused kernel runs in tens of microseconds, so a call's Python work (autograd
Functions, Triton's launcher, allocations) decides the time the GPU waits. This script measures the
host's submission time per call (N calls back to back, no synchronization between them, so the GPU
queue absorbs them), for the whole op and for its parts, and prints a cProfile of the whole op.

    python bench/host_overhead.py [--lengths 256,1024] [--dtypes float32,bfloat16] [--calls 300]

Writes results/host_overhead*.json (device name, shapes, dtype, microseconds per call).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._timing import device_name, print_table, write_json  # noqa: E402
from bench.fftconv import _decaying_kernel, _fwd_bwd, torch_fftconv  # noqa: E402
from kernels.fftconv import fftconv  # noqa: E402
from kernels.fftconv import triton_fftconv as tf  # noqa: E402


@triton.jit
def _noop(x_ptr):
    pid = tl.program_id(0)
    tl.store(x_ptr + pid, pid)


def host_us(fn, calls: int) -> float:
    """Microseconds of host time per call of fn(), calls back to back (the GPU queue takes them)."""
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / calls * 1e6


def profile(fn, calls: int, top: int = 25) -> str:
    """cProfile of `calls` calls of fn(), the `top` entries by own time."""
    fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(calls):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    # file names relative to site-packages / the repository: no machine paths in the results
    text = re.sub(r"/\S*?site-packages/", "site-packages/", s.getvalue())
    return text.replace(str(Path(__file__).resolve().parents[1]) + "/", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="256,1024")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--name", default="host_overhead")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile listings")
    args = ap.parse_args()
    B, H = 8, 768
    x = torch.zeros(1024, device="cuda", dtype=torch.int32)
    rows, profiles = [], {}
    noop = host_us(lambda: _noop[(1,)](x), args.calls)
    for dt, L in [(dt, int(L)) for dt in args.dtypes.split(",") for L in args.lengths.split(",")]:
        dtype = getattr(torch, dt)
        u = torch.randn(B, H, L, device="cuda").to(dtype)
        k = _decaying_kernel(H, L)
        D = torch.randn(H, device="cuda")
        plan = tf.plan_1d(L, L, dtype)
        r = {"B": B, "H": H, "L": L, "dtype": dt, "noop_launch_us": noop}
        with torch.no_grad():
            r["fftconv_us"] = host_us(lambda: fftconv(u, k, D), args.calls)
            r["torch_fft_us"] = host_us(lambda: torch_fftconv(u, k, D), args.calls)
            if plan is not None:
                N1, N2 = plan
                geom = (N1, N2, True, N1, N2, N2, L)
                K = tf._spectrum(k, N1, N2, True, two_d=False)
                y = torch.empty_like(u)
                r["spectrum_us"] = host_us(lambda: tf._spectrum(k, N1, N2, True, two_d=False), args.calls)
                r["launch_fwd_us"] = host_us(lambda: tf._launch_fwd(u, K, D, y, geom, False), args.calls)
                r["fftconv_apply_us"] = host_us(lambda: tf._FFTConv.apply(u, k, D, geom, True), args.calls)
            if not args.no_profile:
                profiles[f"{dt}_{L}_fwd"] = profile(lambda: fftconv(u, k, D), args.calls)
        ug, kg, Dg = (t.clone().requires_grad_(True) for t in (u, k, D))
        g = torch.randn_like(u)

        r["fftconv_fwdbwd_us"] = host_us(_fwd_bwd(fftconv, ug, kg, Dg, g), args.calls)
        r["torch_fft_fwdbwd_us"] = host_us(_fwd_bwd(torch_fftconv, ug, kg, Dg, g), args.calls)
        if not args.no_profile:
            profiles[f"{dt}_{L}_fwdbwd"] = profile(_fwd_bwd(fftconv, ug, kg, Dg, g), args.calls)
        rows.append({k2: (round(v, 1) if isinstance(v, float) else v) for k2, v in r.items()})
        print_table([rows[-1]], list(rows[-1].keys()))
    for key, text in profiles.items():
        print(f"\n### cProfile {key} ({args.calls} calls)\n{text}")
    write_json(args.name, {"device": device_name(), "torch": torch.__version__, "triton": triton.__version__,
                           "calls": args.calls, "rows": rows, "profiles": profiles})


if __name__ == "__main__":
    main()
