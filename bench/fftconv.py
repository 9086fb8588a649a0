"""Causal FFT long convolution on the GPU: our `fftconv` vs torch.fft, plus Vandermonde kernel generation.

Shapes: B=8, H=768, L = 1K, 4K, 16K, 64K and B=1, H=768, L = 256K, 512K, 1M; kernel k (H, L),
D skip; fp32 and bf16; forward and forward+backward.
Baseline (same run): torch.fft: rfft(u, 2L) * rfft(k, 2L) -> irfft -> [:L] + D u (bf16 inputs
are upcast to fp32 for cuFFT and the result cast back; that is what a user would write).
`ours` is the public `kernels.fftconv.fftconv`, whatever path it dispatches to (the column `path`
says which); `triton` rows force the fused kernel at lengths the dispatch does not give it, to
show where the dispatch threshold comes from.
Effective GB/s counts the fewest bytes: read u, write y (forward). Peak memory is the extra
allocation of one forward call.
Vandermonde: K (H, L) = Re(sum_n C z^l), H=768, N=64, L = 1K..16K, Triton vs the reference.

    python bench/fftconv.py [--quick] [--no-vandermonde]
Prints Markdown tables and writes bench/results/fftconv.json ($BENCH_RESULTS_DIR overrides).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench._timing import copy_bandwidth, device_name, peak_memory, print_table, time_ms, write_json  # noqa: E402
from kernels.fftconv import fftconv  # noqa: E402
from kernels.fftconv import triton_fftconv as tf  # noqa: E402
from kernels.vandermonde import vandermonde, vandermonde_ref  # noqa: E402


MAX_FUSED_N_DEFAULT = dict(tf.MAX_FUSED_N)


def torch_fftconv(u, k, D):
    """The torch.fft baseline: what a user writes without a fused kernel."""
    L = u.shape[-1]
    n = 2 * L
    uf = u.float()
    y = torch.fft.irfft(torch.fft.rfft(uf, n=n) * torch.fft.rfft(k.float(), n=n), n=n)[..., :L]
    return (y + uf * D.float()[:, None]).to(u.dtype)


def _rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


def _fwd_bwd(fn, u, k, D, g):
    def run():
        for t in (u, k, D):
            t.grad = None
        fn(u, k, D).backward(g)

    return run


def bench_conv(B, H, L, dtype, bw, force_triton=False, reps=20):
    torch.manual_seed(0)
    u = torch.randn(B, H, L, device="cuda").to(dtype).requires_grad_(True)
    # a decaying kernel (as S4/Hyena make) so the output is O(1) and relative errors mean something
    t = torch.arange(L, device="cuda", dtype=torch.float32)
    k = (torch.randn(H, L, device="cuda") * torch.exp(-t / (L / 8)) / (L / 8) ** 0.5).requires_grad_(True)
    D = torch.randn(H, device="cuda").requires_grad_(True)
    g = torch.randn(B, H, L, device="cuda").to(dtype)
    old = tf.MAX_FUSED_N
    if force_triton:
        tf.MAX_FUSED_N = 1 << 30
    try:
        plan = tf.plan_1d(L, L, dtype)
        path = "triton" if plan is not None else "torch.fft"
        if force_triton and plan is None:
            return None
        ours = lambda a, b, c: fftconv(a, b, c)  # noqa: E731
        with torch.no_grad():
            y = ours(u, k, D)
            yb = torch_fftconv(u, k, D)
            # accuracy against fp64 on the first rows (a full fp64 copy would not fit at 1M)
            r = min(B * H, 16)
            y64 = torch_fftconv(u.detach()[:1, :r].double(), k.detach()[:r].double(), D.detach()[:r].double())
            err = _rel(y[:1, :r], y64)
            err_base = _rel(yb[:1, :r], y64)
            del y, yb, y64
        t_kernel = None
        if plan is not None:
            # the fused kernel alone, its spectrum precomputed (what a layer with a fixed k pays)
            with torch.no_grad():
                K = tf._spectrum(k, plan[0], plan[1], True, two_d=False)
                yk = torch.empty_like(u)
                geom = (plan[0], plan[1], True, plan[0], plan[1], plan[1], L)
                t_kernel = time_ms(lambda: tf._launch_fwd(u.detach(), K, D.detach(), yk, geom, False), reps=reps)["median_ms"]
        with torch.no_grad():
            t_ours = time_ms(lambda: ours(u, k, D), reps=reps)["median_ms"]
            t_base = time_ms(lambda: torch_fftconv(u, k, D), reps=reps)["median_ms"]
            mem_ours = peak_memory(lambda: ours(u, k, D))
            mem_base = peak_memory(lambda: torch_fftconv(u, k, D))
        tb_ours = time_ms(_fwd_bwd(ours, u, k, D, g), reps=reps)["median_ms"]
        tb_torchdk = None
        if plan is not None:
            # the same with the kernel gradient through torch.fft instead of the fused dK kernel
            tf.BWD_K = "torch"
            try:
                tb_torchdk = time_ms(_fwd_bwd(ours, u, k, D, g), reps=reps)["median_ms"]
            finally:
                tf.BWD_K = "triton"
        tb_base = time_ms(_fwd_bwd(torch_fftconv, u, k, D, g), reps=reps)["median_ms"]
        # gradient agreement with the baseline's autograd
        grads = []
        for fn in (ours, torch_fftconv):
            for x in (u, k, D):
                x.grad = None
            fn(u, k, D).backward(g)
            grads.append([x.grad.clone() for x in (u, k, D)])
        gerr = max(_rel(a, b) for a, b in zip(*grads))
    finally:
        tf.MAX_FUSED_N = old
    nbytes = 2 * B * H * L * u.element_size()
    gbs = nbytes / t_ours / 1e6
    return {
        "B": B, "H": H, "L": L, "dtype": str(dtype).replace("torch.", ""),
        "path": path + (" (forced)" if force_triton else ""),
        "fwd_ms": t_ours, "kernel_ms": t_kernel, "torch_fwd_ms": t_base, "fwd_speedup": t_base / t_ours,
        "fwdbwd_ms": tb_ours, "fwdbwd_ms_torch_dk": tb_torchdk, "torch_fwdbwd_ms": tb_base, "fwdbwd_speedup": tb_base / tb_ours,
        "GB/s": gbs, "copy_frac": gbs / bw, "torch_copy_frac": nbytes / t_base / 1e6 / bw,
        "peak_MB": mem_ours / 2**20, "torch_peak_MB": mem_base / 2**20,
        "rel_err": err, "torch_rel_err": err_base, "grad_rel_diff": gerr,
    }


def bench_vandermonde(H, N, L, reps=20):
    torch.manual_seed(0)
    z = torch.polar(torch.exp(-torch.rand(H, N, device="cuda") * 4 / L), (torch.rand(H, N, device="cuda") * 2 - 1) * 3.1)
    C = torch.randn(H, N, device="cuda", dtype=torch.complex64)
    Cg, zg = C.clone().requires_grad_(True), z.clone().requires_grad_(True)
    g = torch.randn(H, L, device="cuda")
    with torch.no_grad():
        K = vandermonde(C, z, L)
        K64 = vandermonde_ref(C[:64].to(torch.complex128), z[:64].to(torch.complex128), L)
        err = _rel(K[:64], K64)
        err_ref = _rel(vandermonde_ref(C[:64], z[:64], L), K64)
        t_ours = time_ms(lambda: vandermonde(C, z, L), reps=reps)["median_ms"]
        t_ref = time_ms(lambda: vandermonde_ref(C, z, L), reps=reps)["median_ms"]
        m_ours = peak_memory(lambda: vandermonde(C, z, L))
        m_ref = peak_memory(lambda: vandermonde_ref(C, z, L))

    def fb(fn):
        def run():
            Cg.grad = zg.grad = None
            fn(Cg, zg, L).backward(g)

        return run

    tb_ours = time_ms(fb(vandermonde), reps=reps)["median_ms"]
    tb_ref = time_ms(fb(vandermonde_ref), reps=reps)["median_ms"]
    return {
        "H": H, "N": N, "L": L, "fwd_ms": t_ours, "ref_fwd_ms": t_ref, "fwd_speedup": t_ref / t_ours,
        "fwdbwd_ms": tb_ours, "ref_fwdbwd_ms": tb_ref, "fwdbwd_speedup": tb_ref / tb_ours,
        "peak_MB": m_ours / 2**20, "ref_peak_MB": m_ref / 2**20, "rel_err": err, "ref_rel_err": err_ref,
    }


def sweep(bw):
    """Kernel-only forward time over tile sizes (rows per program) and warps, fp32 and bf16."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for L in (1024, 4096):
            torch.manual_seed(0)
            u = torch.randn(8, 768, L, device="cuda").to(dtype)
            k = torch.randn(768, L, device="cuda") / L
            D = torch.randn(768, device="cuda")
            tf.MAX_FUSED_N = 1 << 30
            N1, N2 = tf.plan_1d(L, L)
            n = N1 * N2
            K = tf._spectrum(k, N1, N2, True, two_d=False)
            geom = (N1, N2, True, N1, N2, N2, L)
            y = torch.empty_like(u)
            ref = torch_fftconv(u, k, D)
            t_torch = time_ms(lambda: torch_fftconv(u, k, D))["median_ms"]
            for tile in sorted({max(n, t) for t in (2048, 4096, 8192)}):
                for warps in (4, 8) if n < 8192 else (4, 8, 16):
                    for coal in (False, True):
                        tf.TILE_ELEMS, tf.WARPS, tf.COALESCE = tile, warps, coal
                        try:
                            tf._launch_fwd(u, K, D, y, geom, False)
                            err = _rel(y, ref)
                            ms = time_ms(lambda: tf._launch_fwd(u, K, D, y, geom, False))["median_ms"]
                        except Exception as e:  # noqa: BLE001 - out of shared memory etc.: record and go on
                            err, ms = None, None
                            print(f"tile {tile} warps {warps}: {type(e).__name__}")
                        r = {"dtype": str(dtype).replace("torch.", ""), "L": L, "rows_per_prog": tile // n,
                             "warps": warps, "coalesce": coal, "kernel_ms": ms, "rel_err": err,
                             "GB/s": None if ms is None else 2 * u.numel() * u.element_size() / ms / 1e6,
                             "torch_ms": t_torch}
                        rows.append(r)
                        print_table([r], list(r.keys()))
    tf.TILE_ELEMS, tf.WARPS, tf.COALESCE = 4096, None, True
    tf.MAX_FUSED_N = dict(MAX_FUSED_N_DEFAULT)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few sizes only (smoke test)")
    ap.add_argument("--no-vandermonde", action="store_true")
    ap.add_argument("--no-long", action="store_true", help="skip B=1, L >= 256K")
    ap.add_argument("--sweep", action="store_true", help="only the tile/warps sweep of the fused kernel")
    args = ap.parse_args()
    bw = copy_bandwidth()
    print(f"device {device_name()}  copy {bw:.0f} GB/s  fp32 dot mode {tf.FP32_PRECISION}", flush=True)
    if args.sweep:
        rows = sweep(bw)
        write_json("fftconv_sweep", {"device": device_name(), "rows": rows, "compile_stats": tf.COMPILE_STATS})
        print_table(rows, list(rows[0].keys()))
        print("compile stats:", tf.COMPILE_STATS)
        return
    shapes = [(8, 768, 256), (8, 768, 1024), (8, 768, 2048), (8, 768, 4096), (8, 768, 16384), (8, 768, 65536)]
    if not args.no_long:
        shapes += [(1, 768, 262144), (1, 768, 524288), (1, 768, 1048576)]
    if args.quick:
        shapes = [(8, 768, 1024), (8, 768, 2048)]
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for B, H, L in shapes:
            torch.cuda.empty_cache()
            try:
                r = bench_conv(B, H, L, dtype, bw)
            except torch.OutOfMemoryError as e:
                print(f"L={L} {dtype}: out of memory ({str(e)[:120]})")
                torch.cuda.empty_cache()
                continue
            rows.append(r)
            print_table([r], list(r.keys()))
            if r["path"] == "torch.fft" and 2 * L <= 8192:
                try:
                    rf = bench_conv(B, H, L, dtype, bw, force_triton=True)
                except Exception as e:  # noqa: BLE001 - e.g. out of registers: report, go on
                    print(f"forced triton at L={L} {dtype}: {type(e).__name__}: {str(e)[:200]}")
                    rf = None
                if rf is not None:
                    rows.append(rf)
                    print_table([rf], list(rf.keys()))
    vrows = []
    if not args.no_vandermonde:
        for L in ([1024] if args.quick else [1024, 4096, 16384]):
            v = bench_vandermonde(768, 64, L)
            vrows.append(v)
            print_table([v], list(v.keys()))
    payload = {
        "device": device_name(), "copy_GBps": bw, "fp32_dot": tf.FP32_PRECISION, "torch": torch.__version__,
        "compile_stats": tf.COMPILE_STATS, "fftconv": rows, "vandermonde": vrows,
    }
    path = write_json("fftconv_quick" if args.quick else "fftconv", payload)
    print("\n## fftconv (causal, k of length L, D skip)")
    print_table(rows, ["B", "H", "L", "dtype", "path", "fwd_ms", "kernel_ms", "torch_fwd_ms", "fwd_speedup", "fwdbwd_ms",
                       "fwdbwd_ms_torch_dk", "torch_fwdbwd_ms", "fwdbwd_speedup", "copy_frac", "torch_copy_frac", "peak_MB",
                       "torch_peak_MB", "rel_err", "grad_rel_diff"])
    if vrows:
        print("\n## vandermonde (H=768, N=64)")
        print_table(vrows, list(vrows[0].keys()))
    print("compile stats:", tf.COMPILE_STATS)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
