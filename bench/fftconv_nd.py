"""N-D FFT convolution (S4ND images and video, T1 fields) on the GPU: our `fftconv_nd` vs the torch.fft.rfftn path.

Shapes: B=4, H in (64, 256); 2-D square fields S x S (S = 16 ... 512), 2-D rectangles and 3-D fields
(video-like T x S x S); a full-size centred kernel (H, *S) as S4ND builds (linear: zero padded to 2S),
and the circular mode (T1/FNO-style periodic fields); fp32 and bf16; forward and forward+backward.
Baseline (same run): rfftn(u, 2S) * rfftn(k, 2S) -> irfftn -> centred crop + D u (circular: no
padding, roll); bf16 inputs upcast to fp32 for cuFFT.
`path` says what `fftconv_nd` dispatched to: "one-tile" (2-D padded grids up to MAX_FUSED_N values,
on-chip), "three-level" (triton_long.plan_nd: 3-D, and 2-D grids whose axes split into its
levels), or "torch.fft" (the same computation as the baseline, so a ratio near 1 there is expected).

    python bench/fftconv_nd.py [--quick] [--shapes 64x64,64x256,16x32x32] [--name fftconv_nd]
Prints a Markdown table and writes bench/results/<name>.json ($BENCH_RESULTS_DIR overrides).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench._timing import device_name, peak_memory, print_table, time_pair, write_json  # noqa: E402
from kernels.fftconv import fftconv_nd  # noqa: E402
from kernels.fftconv import triton_fftconv as tf  # noqa: E402
from kernels.fftconv import triton_long as tlong  # noqa: E402

SHAPES = "16x16,32x32,64x64,128x128,256x256,512x512,64x256,256x32,16x16x16,16x32x32,32x32x32"


def torch_convnd(u, k, D, circular):
    """The torch.fft.rfftn baseline with the same semantics as fftconv_nd(causal=False)."""
    S = tuple(u.shape[2:])
    dims = tuple(range(-len(S), 0))
    c = [(k.shape[1 + i] - 1) // 2 for i in range(len(S))]
    uf = u.float()
    if circular:
        y = torch.fft.irfftn(torch.fft.rfftn(uf, dim=dims) * torch.fft.rfftn(k.float(), s=S, dim=dims), s=S, dim=dims)
        y = torch.roll(y, shifts=[-x for x in c], dims=dims)
    else:
        s = tuple(2 * x for x in S)
        y = torch.fft.irfftn(torch.fft.rfftn(uf, s=s, dim=dims) * torch.fft.rfftn(k.float(), s=s, dim=dims), s=s, dim=dims)
        y = y[(Ellipsis,) + tuple(slice(ci, ci + x) for ci, x in zip(c, S))]
    return (y + uf * D.float().view(-1, *([1] * len(S)))).to(u.dtype)


def _rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


def _path(S, circular, dtype, rows) -> str:
    """The path fftconv_nd_triton takes for rows = B * H fields of shape S (its dispatch, restated)."""
    if len(S) == 2 and tf.plan_2d(S, S, circular, dtype) is not None:
        return "one-tile"
    nd = tlong.plan_nd(S, S, circular, dtype) if rows >= tlong.ND_MIN_ROWS else None
    return f"three-level {nd.mode} {'x'.join(map(str, nd.G))}" if nd is not None else "torch.fft"


def bench_one(B, H, S, dtype, circular, reps=20):
    torch.manual_seed(0)
    numel = math.prod(S)
    u = torch.randn(B, H, *S, device="cuda").to(dtype).requires_grad_(True)
    k = (torch.randn(H, *S, device="cuda") / numel**0.5).requires_grad_(True)
    D = torch.randn(H, device="cuda").requires_grad_(True)
    g = torch.randn(B, H, *S, device="cuda").to(dtype)
    ours = lambda a, b, c: fftconv_nd(a, b, c, causal=False, circular=circular)  # noqa: E731
    base = lambda a, b, c: torch_convnd(a, b, c, circular)  # noqa: E731
    with torch.no_grad():
        y64 = torch_convnd(u.detach()[:1].double(), k.detach().double(), D.detach().double(), circular)
        err = _rel(ours(u, k, D)[:1], y64)
        t_ours, t_base = time_pair(lambda: ours(u, k, D), lambda: base(u, k, D), reps=reps)
        m_ours = peak_memory(lambda: ours(u, k, D))
        m_base = peak_memory(lambda: base(u, k, D))

    def fb(fn):
        def run():
            for x in (u, k, D):
                x.grad = None
            fn(u, k, D).backward(g)

        return run

    fb(ours)()
    grads = [x.grad.clone() for x in (u, k, D)]
    fb(base)()
    gerr = max(_rel(a, x.grad) for a, x in zip(grads, (u, k, D)))
    tb_ours, tb_base = time_pair(fb(ours), fb(base), reps=reps)
    return {
        "B": B, "H": H, "S": "x".join(map(str, S)), "mode": "circular" if circular else "linear",
        "dtype": str(dtype).replace("torch.", ""), "path": _path(S, circular, dtype, B * H),
        "fwd_ms": t_ours, "torch_fwd_ms": t_base, "fwd_speedup": t_base / t_ours,
        "fwdbwd_ms": tb_ours, "torch_fwdbwd_ms": tb_base, "fwdbwd_speedup": tb_base / tb_ours,
        "peak_MB": m_ours / 2**20, "torch_peak_MB": m_base / 2**20, "rel_err": err, "grad_rel_diff": gerr,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="32x32 and 16x16x16 only")
    ap.add_argument("--shapes", default=SHAPES, help="comma-separated fields, e.g. 64x64,16x32x32")
    ap.add_argument("--H", default="64,256")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--name", default="fftconv_nd")
    args = ap.parse_args()
    shapes = ["32x32", "16x16x16"] if args.quick else args.shapes.split(",")
    rows = []
    for dtype in [getattr(torch, d) for d in args.dtypes.split(",")]:
        for H in [int(h) for h in args.H.split(",")]:
            for shape in shapes:
                S = tuple(int(x) for x in shape.split("x"))
                for circular in (False, True):
                    if circular and any(x & (x - 1) for x in S):
                        continue
                    try:
                        r = bench_one(4, H, S, dtype, circular)
                    except torch.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        continue
                    rows.append(r)
                    print_table([r], list(r.keys()))
                    torch.cuda.empty_cache()
    payload = {"device": device_name(), "fp32_dot": tf.FP32_PRECISION, "torch": torch.__version__,
               "compile_stats": tf.COMPILE_STATS, "rows": rows}
    path = write_json(args.name, payload)
    print("\n## fftconv_nd (centred full-size kernel, D skip, B=4)")
    print_table(rows, ["H", "S", "mode", "dtype", "path", "fwd_ms", "torch_fwd_ms", "fwd_speedup", "fwdbwd_ms",
                       "torch_fwdbwd_ms", "fwdbwd_speedup", "peak_MB", "torch_peak_MB", "rel_err", "grad_rel_diff"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
