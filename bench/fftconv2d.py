"""2-D FFT convolution (S4ND, T1) on the GPU: our `fftconv_nd` vs the torch.fft.rfft2 path.

Shapes: B=4, H in (64, 256), S x S with S = 32, 64, 128, 256, 512; a full-size centred kernel
(H, S, S) as S4ND builds (linear, zero padded to 2S), and the circular mode (T1/FNO-style
periodic fields) at the same sizes; fp32 and bf16; forward and forward+backward.
Baseline (same run): rfft2(u, 2S) * rfft2(k, 2S) -> irfft2 -> centred crop + D u (circular:
no padding, roll); bf16 inputs upcast to fp32 for cuFFT.
`path` says what `fftconv_nd` dispatched to: the fused Triton kernel holds padded sizes up to
MAX_FUSED_N[dtype] = N1*N2 values on-chip; larger fields take the torch.fft path (the same computation
as the baseline, so a ratio near 1 there is expected).

    python bench/fftconv2d.py [--quick]
Prints a Markdown table and writes bench/results/fftconv2d.json ($BENCH_RESULTS_DIR overrides).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench._timing import device_name, peak_memory, print_table, time_ms, write_json  # noqa: E402
from kernels.fftconv import fftconv_nd  # noqa: E402
from kernels.fftconv import triton_fftconv as tf  # noqa: E402


def torch_conv2d(u, k, D, circular):
    """The torch.fft.rfft2 baseline with the same semantics as fftconv_nd(causal=False)."""
    S1, S2 = u.shape[-2:]
    c1, c2 = (k.shape[-2] - 1) // 2, (k.shape[-1] - 1) // 2
    uf = u.float()
    if circular:
        y = torch.fft.irfft2(torch.fft.rfft2(uf) * torch.fft.rfft2(k.float(), s=(S1, S2)), s=(S1, S2))
        y = torch.roll(y, shifts=(-c1, -c2), dims=(-2, -1))
    else:
        s = (2 * S1, 2 * S2)
        y = torch.fft.irfft2(torch.fft.rfft2(uf, s=s) * torch.fft.rfft2(k.float(), s=s), s=s)[..., c1:c1 + S1, c2:c2 + S2]
    return (y + uf * D.float()[:, None, None]).to(u.dtype)


def _rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


def bench_one(B, H, S, dtype, circular, reps=20):
    torch.manual_seed(0)
    u = torch.randn(B, H, S, S, device="cuda").to(dtype).requires_grad_(True)
    k = (torch.randn(H, S, S, device="cuda") / S).requires_grad_(True)
    D = torch.randn(H, device="cuda").requires_grad_(True)
    g = torch.randn(B, H, S, S, device="cuda").to(dtype)
    plan = tf.plan_2d((S, S), (S, S), circular, dtype)
    ours = lambda a, b, c: fftconv_nd(a, b, c, causal=False, circular=circular)  # noqa: E731
    base = lambda a, b, c: torch_conv2d(a, b, c, circular)  # noqa: E731
    with torch.no_grad():
        y64 = torch_conv2d(u.detach()[:1].double(), k.detach().double(), D.detach().double(), circular)
        err = _rel(ours(u, k, D)[:1], y64)
        t_ours = time_ms(lambda: ours(u, k, D), reps=reps)["median_ms"]
        t_base = time_ms(lambda: base(u, k, D), reps=reps)["median_ms"]
        m_ours = peak_memory(lambda: ours(u, k, D))
        m_base = peak_memory(lambda: base(u, k, D))

    def fb(fn):
        def run():
            for x in (u, k, D):
                x.grad = None
            fn(u, k, D).backward(g)

        return run

    tb_ours = time_ms(fb(ours), reps=reps)["median_ms"]
    tb_base = time_ms(fb(base), reps=reps)["median_ms"]
    return {
        "B": B, "H": H, "S": f"{S}x{S}", "mode": "circular" if circular else "linear",
        "dtype": str(dtype).replace("torch.", ""), "path": "triton" if plan else "torch.fft",
        "fwd_ms": t_ours, "torch_fwd_ms": t_base, "fwd_speedup": t_base / t_ours,
        "fwdbwd_ms": tb_ours, "torch_fwdbwd_ms": tb_base, "fwdbwd_speedup": tb_base / tb_ours,
        "peak_MB": m_ours / 2**20, "torch_peak_MB": m_base / 2**20, "rel_err": err,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [32, 64] if args.quick else [16, 32, 64, 128, 256, 512]
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for H in (64, 256):
            for S in sizes:
                for circular in (False, True):
                    r = bench_one(4, H, S, dtype, circular)
                    rows.append(r)
                    print_table([r], list(r.keys()))
    payload = {"device": device_name(), "fp32_dot": tf.FP32_PRECISION, "torch": torch.__version__,
               "compile_stats": tf.COMPILE_STATS, "rows": rows}
    path = write_json("fftconv2d_quick" if args.quick else "fftconv2d", payload)
    print("\n## fftconv_nd 2-D (centred full-size kernel, D skip, B=4)")
    print_table(rows, ["H", "S", "mode", "dtype", "path", "fwd_ms", "torch_fwd_ms", "fwd_speedup", "fwdbwd_ms",
                       "torch_fwdbwd_ms", "fwdbwd_speedup", "peak_MB", "torch_peak_MB", "rel_err"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
