"""Causal FFT long convolution on the GPU: our `fftconv` vs torch.fft, plus Vandermonde kernel generation.

Shapes: B=8, H=768, L = 1K, 4K, 16K, 64K and B=1, H=768, L = 256K, 512K, 1M; kernel k (H, L),
D skip; fp32 and bf16; forward and forward+backward.
Baseline (same run): torch.fft: rfft(u, 2L) * rfft(k, 2L) -> irfft -> [:L] + D u (bf16 inputs
are upcast to fp32 for cuFFT and the result cast back; that is what a user would write).
`ours` is the public `kernels.fftconv.fftconv`, whatever path it dispatches to (the column `path`
says which); `triton` rows force the fused kernel at lengths the dispatch does not give it, to
show where the dispatch threshold comes from.
Ours and the baseline are timed in three alternating rounds (`time_pair`; medians), since the
short rows are bound by the host's time, which drifts over a run.
Effective GB/s counts the fewest bytes: read u, write y (forward). Peak memory is the extra
allocation of one forward call.
Vandermonde: K (H, L) = Re(sum_n C z^l), H=768, N=64, L = 1K..16K, Triton vs the reference.

    python bench/fftconv.py [--quick] [--no-vandermonde]
Prints Markdown tables and writes bench/results/fftconv.json ($BENCH_RESULTS_DIR overrides).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench._timing import copy_bandwidth, device_name, peak_memory, print_table, time_ms, time_pair, write_json  # noqa: E402
from kernels.fftconv import fftconv  # noqa: E402
from kernels.fftconv import triton_fftconv as tf  # noqa: E402
from kernels.fftconv import triton_long as tlong  # noqa: E402
from kernels.vandermonde import vandermonde, vandermonde_ref  # noqa: E402


MAX_FUSED_N_DEFAULT = dict(tf.MAX_FUSED_N)
LONG_N_DEFAULT = dict(tlong.LONG_N)


def torch_fftconv(u, k, D):
    """The torch.fft baseline: what a user writes without a fused kernel."""
    L = u.shape[-1]
    n = 2 * L
    uf = u.float()
    y = torch.fft.irfft(torch.fft.rfft(uf, n=n) * torch.fft.rfft(k.float(), n=n), n=n)[..., :L]
    return (y + uf * D.float()[:, None]).to(u.dtype)


def _decaying_kernel(H, L):
    """k (H, L) on the GPU with exponential decay (as S4/Hyena make), so the output is O(1) and
    relative errors mean something."""
    t = torch.arange(L, device="cuda", dtype=torch.float32)
    return torch.randn(H, L, device="cuda") * torch.exp(-t / (L / 8)) / (L / 8) ** 0.5


def _rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm()).item()


def _fwd_bwd(fn, u, k, D, g):
    def run():
        for t in (u, k, D):
            t.grad = None
        fn(u, k, D).backward(g)

    return run


def _set_force(force):
    """Route every length to one path: None (the dispatch), "triton", "long" or "torch"."""
    tf.MAX_FUSED_N = dict(MAX_FUSED_N_DEFAULT)
    tlong.LONG_N = dict(LONG_N_DEFAULT)
    if force == "triton":
        tf.MAX_FUSED_N = 1 << 30
        tlong.LONG_N = {}
    elif force == "long":
        tf.MAX_FUSED_N = 0
        tlong.LONG_N = {d: (1, 1 << 19) for d in LONG_N_DEFAULT}
    elif force == "torch":
        tf.MAX_FUSED_N = 0
        tlong.LONG_N = {}


def _path(L, dtype):
    """The path fftconv dispatches to (the same order as fftconv_triton: the long kernel first)."""
    if tlong.plan_long(L, L, dtype) is not None:
        return "long"
    if tf.plan_1d(L, L, dtype) is not None:
        return "triton"
    return "torch.fft"


def bench_conv(B, H, L, dtype, bw, force=None, reps=20):
    torch.manual_seed(0)
    u = torch.randn(B, H, L, device="cuda").to(dtype).requires_grad_(True)
    k = _decaying_kernel(H, L).requires_grad_(True)
    D = torch.randn(H, device="cuda").requires_grad_(True)
    g = torch.randn(B, H, L, device="cuda").to(dtype)
    _set_force(force)
    try:
        path = _path(L, dtype)
        if force is not None and path != force:
            return None
        plan = tf.plan_1d(L, L, dtype)
        lplan = tlong.plan_long(L, L, dtype)
        ours = lambda a, b, c: fftconv(a, b, c)  # noqa: E731
        with torch.no_grad():
            y = ours(u, k, D)
            yb = torch_fftconv(u, k, D)
            # accuracy against fp64 on the first rows (a full fp64 copy would not fit at 1M)
            r = min(H, 16)
            y64 = torch_fftconv(u.detach()[:2, :r].double(), k.detach()[:r].double(), D.detach()[:r].double())
            err = _rel(y[:2, :r], y64)
            err_base = _rel(yb[:2, :r], y64)
            del y, yb, y64
        t_kernel = None
        if path == "triton":
            # the fused kernel alone, its spectrum precomputed (what a layer with a fixed k pays)
            with torch.no_grad():
                K = tf._spectrum(k, plan[0], plan[1], True, two_d=False)
                yk = torch.empty_like(u)
                geom = (plan[0], plan[1], True, plan[0], plan[1], plan[1], L)
                t_kernel = time_ms(lambda: tf._launch_fwd(u.detach(), K, D.detach(), yk, geom, False), reps=reps)["median_ms"]
        elif path == "long":
            with torch.no_grad():
                Kt = tlong._spectrum_tiles(k, lplan, True, None, D)
                yk = torch.empty_like(u)
                t_kernel = time_ms(lambda: tlong.launch(u.detach(), Kt, yk, lplan, False), reps=reps)["median_ms"]
                del Kt, yk
        with torch.no_grad():
            t_ours, t_base = time_pair(lambda: ours(u, k, D), lambda: torch_fftconv(u, k, D), reps=reps)
            mem_ours = peak_memory(lambda: ours(u, k, D))
            mem_base = peak_memory(lambda: torch_fftconv(u, k, D))
        tb_ours, tb_base = time_pair(_fwd_bwd(ours, u, k, D, g), _fwd_bwd(torch_fftconv, u, k, D, g), reps=reps)
        tb_torchdk = None
        if path == "triton":
            # the same with the kernel gradient through torch.fft instead of the fused dK kernel
            tf.BWD_K = "torch"
            try:
                tb_torchdk = time_ms(_fwd_bwd(ours, u, k, D, g), reps=reps)["median_ms"]
            finally:
                tf.BWD_K = "triton"
        mem_b_ours = peak_memory(_fwd_bwd(ours, u, k, D, g))
        mem_b_base = peak_memory(_fwd_bwd(torch_fftconv, u, k, D, g))
        # gradient agreement with the baseline's autograd
        grads = []
        for fn in (ours, torch_fftconv):
            for x in (u, k, D):
                x.grad = None
            fn(u, k, D).backward(g)
            grads.append([x.grad.clone() for x in (u, k, D)])
        gerr = max(_rel(a, b) for a, b in zip(*grads))
    finally:
        _set_force(None)
    nbytes = 2 * B * H * L * u.element_size()
    gbs = nbytes / t_ours / 1e6
    return {
        "B": B, "H": H, "L": L, "dtype": str(dtype).replace("torch.", ""),
        "path": path + (" (forced)" if force is not None else ""),
        "split": list(lplan) if path == "long" else (list(plan) if path == "triton" else None),
        "fwd_ms": t_ours, "kernel_ms": t_kernel, "torch_fwd_ms": t_base, "fwd_speedup": t_base / t_ours,
        "fwdbwd_ms": tb_ours, "fwdbwd_ms_torch_dk": tb_torchdk, "torch_fwdbwd_ms": tb_base, "fwdbwd_speedup": tb_base / tb_ours,
        "GB/s": gbs, "copy_frac": gbs / bw, "torch_copy_frac": nbytes / t_base / 1e6 / bw,
        "peak_MB": mem_ours / 2**20, "torch_peak_MB": mem_base / 2**20,
        "peak_fwdbwd_MB": mem_b_ours / 2**20, "torch_peak_fwdbwd_MB": mem_b_base / 2**20,
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


SWEEP_LONG = [  # (dtype, L, (N1, P, Q), tile, warps, programs per SM)
    *[("float32", 4096, (32, 16, 16), t, w, p) for t, w, p in ((4096, 4, 2), (4096, 8, 2), (2048, 4, 4))],
    ("float32", 4096, (16, 32, 16), 4096, 4, 2),
    *[("float32", 16384, s, 4096, 4, 2) for s in ((32, 32, 32), (64, 32, 16), (128, 16, 16))],
    *[("float32", 65536, s, 4096, 4, 2) for s in ((128, 32, 32), (64, 64, 32), (32, 64, 64))],
]


def sweep_long(bw, B=8, H=768):
    """Kernel-only forward time of the three-level kernel over splits, tiles, warps, grid; vs torch.fft."""
    rows, best = [], {}
    saved = (dict(tlong.SPLITS), tlong.TILE, tlong.WARPS, tlong.PROGS_PER_SM)
    for dt, L, split, tile, warps, pps in SWEEP_LONG:
        dtype = getattr(torch, dt)
        torch.manual_seed(0)
        u = torch.randn(B, H, L, device="cuda").to(dtype)
        k = _decaying_kernel(H, L)
        D = torch.randn(H, device="cuda")
        y = torch.empty_like(u)
        t_torch = time_ms(lambda: torch_fftconv(u, k, D))["median_ms"]
        ref = torch_fftconv(u[:2].double(), k.double(), D.double())
        tlong.TILE, tlong.WARPS, tlong.PROGS_PER_SM = tile, warps, pps
        try:
            Kt = tlong._spectrum_tiles(k, split, True, None, D)
            tlong.launch(u, Kt, y, split, False)
            err = _rel(y[:2], ref)
            ms = time_ms(lambda: tlong.launch(u, Kt, y, split, False))["median_ms"]
            t_spec = time_ms(lambda: tlong._spectrum_tiles(k, split, True, None, D))["median_ms"]
        except Exception as e:  # noqa: BLE001 - out of resources etc.: record and go on
            print(f"{dt} L={L} {split} tile {tile} warps {warps}: {type(e).__name__}: {str(e)[:200]}")
            err = ms = t_spec = None
        r = {"dtype": dt, "L": L, "split": list(split), "tile": tile, "warps": warps, "progs_per_sm": pps,
             "kernel_ms": ms, "spectrum_ms": t_spec, "torch_ms": t_torch,
             "kernel_speedup": None if ms is None else t_torch / ms, "rel_err": err,
             "copy_frac": None if ms is None else 2 * u.numel() * u.element_size() / ms / 1e6 / bw}
        rows.append(r)
        print_table([r], list(r.keys()))
        key = (dt, L)
        if ms is not None and err is not None and err < 2e-2 and (key not in best or ms < best[key]["kernel_ms"]):
            best[key] = r
        del u, y, ref
        torch.cuda.empty_cache()
    tlong.SPLITS, tlong.TILE, tlong.WARPS, tlong.PROGS_PER_SM = saved
    return rows, best


def _worst_row(got, want):
    """The largest relative error of a (b, h) row of got (B, H, L) against want (fp64)."""
    return ((got.double() - want).flatten(2).norm(dim=-1) / want.flatten(2).norm(dim=-1)).max().item()


def fwd_ab(bw, lengths, dtypes, option, variants, B=8, H=768, rounds=3):
    """The three-level forward under two settings of tlong.<option> (variants: {name: value}, the
    candidate first), and torch.fft, in alternating rounds: public forward and kernel only (spectrum
    precomputed), the error against fp64 on the first rows, and the worst row's error when rows of one
    batch differ by 10^6; the rows' max |u| kernel alone (absmax_ms) and the candidate's forward kernel
    without it (<candidate>_main_kernel_ms)."""
    rows = []
    saved = getattr(tlong, option)
    (cand, cand_value), (base, _) = variants.items()
    for dtype in dtypes:
        for L in lengths:
            torch.manual_seed(0)
            u = torch.randn(B, H, L, device="cuda").to(dtype)
            k = _decaying_kernel(H, L)
            D = torch.randn(H, device="cuda")
            plan = tlong.plan_long(L, L, dtype)
            if plan is None:
                continue
            y = torch.empty_like(u)
            Kt = tlong._spectrum_tiles(k, plan, True, None, D)
            r16 = min(H, 16)
            y64 = torch_fftconv(u[:2, :r16].double(), k[:r16].double(), D[:r16].double())
            # rows scaled by 10^-3 ... 10^3 (b), each pair of rows shares one complex transform
            mag = torch.logspace(-3, 3, B, device="cuda")[:, None, None]
            um = (u[:, :r16].float() * mag).to(dtype)
            ym64 = torch_fftconv(um.double(), k[:r16].double(), D[:r16].double())
            times = {name: ([], []) for name in variants}
            errs = {}
            with torch.no_grad():
                t_torch = []
                for _ in range(rounds):
                    for name, value in variants.items():
                        setattr(tlong, option, value)
                        times[name][0].append(time_ms(lambda: fftconv(u, k, D))["median_ms"])
                        times[name][1].append(time_ms(lambda: tlong.launch(u, Kt, y, plan, False))["median_ms"])
                        errs[name] = _rel(fftconv(u[:2, :r16], k[:r16], D[:r16]), y64)
                        errs[name + "_rows"] = _worst_row(fftconv(um, k[:r16], D[:r16]), ym64)
                    t_torch.append(time_ms(lambda: torch_fftconv(u, k, D))["median_ms"])
                # the rows' max |u| (launch's first kernel) alone, and the forward kernel without it
                t_absmax = time_ms(lambda: tlong._row_absmax(u))["median_ms"]
                setattr(tlong, option, cand_value)
                mu = tlong._row_absmax(u)
                t_main = time_ms(lambda: tlong.launch(u, Kt, y, plan, False, mu=mu))["median_ms"]
            setattr(tlong, option, saved)
            med = statistics.median
            tt = med(t_torch)
            r = {"B": B, "H": H, "L": L, "dtype": str(dtype).replace("torch.", ""), "split": list(plan),
                 "option": option, "torch_fwd_ms": tt}
            for name, (tp, tk) in times.items():
                r[f"{name}_fwd_ms"] = med(tp)
                r[f"{name}_kernel_ms"] = med(tk)
                r[f"{name}_fwd_speedup"] = tt / med(tp)
                r[f"{name}_kernel_speedup"] = tt / med(tk)
                r[f"{name}_rel_err"] = errs[name]
                r[f"{name}_worst_row_rel_err"] = errs[name + "_rows"]
            r[f"{cand}_vs_{base}_fwd"] = r[f"{base}_fwd_ms"] / r[f"{cand}_fwd_ms"]
            r[f"{cand}_vs_{base}_kernel"] = r[f"{base}_kernel_ms"] / r[f"{cand}_kernel_ms"]
            r["absmax_ms"], r[f"{cand}_main_kernel_ms"] = t_absmax, t_main
            r[f"{cand}_main_kernel_speedup"] = tt / t_main
            r[f"{cand}_copy_frac"] = 2 * u.numel() * u.element_size() / r[f"{cand}_fwd_ms"] / 1e6 / bw
            rows.append(r)
            print_table([r], list(r.keys()))
            del u, y, Kt, um
            torch.cuda.empty_cache()
    return rows


def bwd_ab(lengths, option, variants, B=8, H=768, rounds=3):
    """The backward kernel under two settings of tlong.<option> (variants: {name: value}, the candidate
    first): public fwd+bwd in alternating rounds beside torch.fft's, fp32, and each gradient's error
    against torch.fft in fp64 on the first rows, with rows of u and g scaled 10^-3 ... 10^3 (the worst
    row of du)."""
    rows = []
    saved = getattr(tlong, option)
    (cand, _), (base, _) = variants.items()
    for L in lengths:
        if tlong.plan_long(L, L) is None:
            continue
        torch.manual_seed(0)
        u = torch.randn(B, H, L, device="cuda").requires_grad_(True)
        k = _decaying_kernel(H, L).requires_grad_(True)
        D = torch.randn(H, device="cuda").requires_grad_(True)
        g = torch.randn(B, H, L, device="cuda")
        r16 = min(H, 16)
        mag = torch.logspace(-3, 3, B, device="cuda")[:, None, None]
        small = [(u[:, :r16].detach() * mag).requires_grad_(True), k[:r16].detach().requires_grad_(True),
                 D[:r16].detach().requires_grad_(True)]
        gs = g[:, :r16] * mag.flip(0)
        big = [x.detach().double().requires_grad_(True) for x in small]
        want = torch.autograd.grad(torch_fftconv(*big), big, gs.double())
        times = {name: [] for name in variants}
        errs = {}
        t_torch = []
        for _ in range(rounds):
            for name, value in variants.items():
                setattr(tlong, option, value)
                times[name].append(time_ms(_fwd_bwd(fftconv, u, k, D, g))["median_ms"])
                got = torch.autograd.grad(fftconv(*small), small, gs)
                errs[name] = {n: _rel(a, b) for n, a, b in zip(("du", "dk", "dD"), got, want)}
                errs[name]["du_worst_row"] = _worst_row(got[0], want[0])
            t_torch.append(time_ms(_fwd_bwd(torch_fftconv, u, k, D, g))["median_ms"])
        med = statistics.median
        r = {"B": B, "H": H, "L": L, "dtype": "float32", "option": option, "torch_fwdbwd_ms": med(t_torch)}
        for name in times:
            r[f"{name}_fwdbwd_ms"] = med(times[name])
            r[f"{name}_fwdbwd_speedup"] = med(t_torch) / med(times[name])
            r.update({f"{name}_{e}_rel_err": v for e, v in errs[name].items()})
        r[f"{cand}_vs_{base}_fwdbwd"] = r[f"{base}_fwdbwd_ms"] / r[f"{cand}_fwdbwd_ms"]
        rows.append(r)
        print_table([r], list(r.keys()))
        del u, k, D, g, small, big
        torch.cuda.empty_cache()
    setattr(tlong, option, saved)
    return rows


def sweep_occupancy(bw, lengths, B=8, H=768, rounds=2):
    """The forward kernel at more programs per SM under a register cap, or with its loads pipelined
    (tlong.TILE, PROGS_PER_SM, MAXNREG, STAGES), fp32: kernel only and public forward against torch.fft,
    configs in alternating rounds."""
    cfgs = [(4096, 2, None, 1), (4096, 2, None, 2), (4096, 3, 168, 1), (2048, 3, 168, 1), (2048, 3, 168, 2),
            (2048, 4, 128, 1)]
    saved = (tlong.TILE, tlong.PROGS_PER_SM, tlong.MAXNREG, tlong.STAGES)
    rows = []
    for L in lengths:
        plan = tlong.plan_long(L, L)
        torch.manual_seed(0)
        u = torch.randn(B, H, L, device="cuda")
        k = _decaying_kernel(H, L)
        D = torch.randn(H, device="cuda")
        y = torch.empty_like(u)
        y64 = torch_fftconv(u[:2, :16].double(), k[:16].double(), D[:16].double())
        Kt = tlong._spectrum_tiles(k, plan, True, None, D)
        got = {c: ([], []) for c in cfgs}
        errs, t_torch = {}, []
        with torch.no_grad():
            for _ in range(rounds):
                for c in cfgs:
                    tlong.TILE, tlong.PROGS_PER_SM, tlong.MAXNREG, tlong.STAGES = c
                    got[c][0].append(time_ms(lambda: tlong.launch(u, Kt, y, plan, False))["median_ms"])
                    got[c][1].append(time_ms(lambda: fftconv(u, k, D))["median_ms"])
                    errs[c] = _rel(fftconv(u[:2, :16], k[:16], D[:16]), y64)
                t_torch.append(time_ms(lambda: torch_fftconv(u, k, D))["median_ms"])
        tlong.TILE, tlong.PROGS_PER_SM, tlong.MAXNREG, tlong.STAGES = saved
        tt = statistics.median(t_torch)
        for c, (tk, tp) in got.items():
            r = {"B": B, "H": H, "L": L, "dtype": "float32", "split": list(plan), "tile": c[0], "progs_per_sm": c[1],
                 "maxnreg": c[2], "stages": c[3], "torch_fwd_ms": tt, "kernel_ms": statistics.median(tk),
                 "fwd_ms": statistics.median(tp), "rel_err": errs[c]}
            r["kernel_speedup"], r["fwd_speedup"] = tt / r["kernel_ms"], tt / r["fwd_ms"]
            rows.append(r)
            print_table([r], list(r.keys()))
        del u, y, Kt
        torch.cuda.empty_cache()
    return rows


def sweep_long_bwd(bw, B=8, H=768):
    """Forward+backward of the public op on the three-level path over the backward kernel's tile and
    warps, fp32, L = 4K, 16K, 64K, beside torch.fft's forward+backward in the same run."""
    rows = []
    saved = (tlong.BWD_TILE, tlong.BWD_WARPS)
    for L in (4096, 16384, 65536):
        torch.manual_seed(0)
        u = torch.randn(B, H, L, device="cuda").requires_grad_(True)
        k = _decaying_kernel(H, L).requires_grad_(True)
        D = torch.randn(H, device="cuda").requires_grad_(True)
        g = torch.randn(B, H, L, device="cuda")
        t_torch = time_ms(_fwd_bwd(torch_fftconv, u, k, D, g))["median_ms"]
        _fwd_bwd(torch_fftconv, u, k, D, g)()  # (clears the grads first: they accumulate)
        ref = [x.grad.clone() for x in (u, k, D)]
        for tile, warps in ((2048, 8), (2048, 4), (1024, 4)):
            tlong.BWD_TILE, tlong.BWD_WARPS = tile, warps
            r = {"L": L, "bwd_tile": tile, "bwd_warps": warps, "torch_fwdbwd_ms": t_torch}
            try:
                _fwd_bwd(fftconv, u, k, D, g)()
                r["grad_rel_err"] = max(_rel(x.grad, y) for x, y in zip((u, k, D), ref))
                r["fwdbwd_ms"] = time_ms(_fwd_bwd(fftconv, u, k, D, g))["median_ms"]
                r["fwdbwd_speedup"] = t_torch / r["fwdbwd_ms"]
            except Exception as e:  # noqa: BLE001 - out of resources etc.: record and go on
                r["error"] = repr(e)[:200]
            rows.append(r)
            print(r, flush=True)
            write_json("fftconv_long_bwd_sweep", {"device": device_name(), "copy_GBs": bw, "B": B, "H": H,
                                                   "dtype": "float32", "rows": rows})
        del u, k, D, g, ref
        torch.cuda.empty_cache()
    tlong.BWD_TILE, tlong.BWD_WARPS = saved
    return rows


def _long_config() -> dict:
    """The three-level kernel's settings a run used (for its JSON)."""
    return {"tile": tlong.TILE, "warps": tlong.WARPS, "progs_per_sm": tlong.PROGS_PER_SM,
            "maxnreg": tlong.MAXNREG, "stages": tlong.STAGES, "fp16_dots": tlong.FP16_DOTS,
            "bwd_fp16_dots": tlong.BWD_FP16_DOTS, "spectrum_fp16_dots": tlong.SPECTRUM_FP16_DOTS,
            "scratch": str(tlong.SCRATCH_DTYPE), "bwd_scratch": str(tlong.BWD_SCRATCH_DTYPE),
            "splits": {str(k): v for k, v in tlong.SPLITS.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few sizes only (smoke test)")
    ap.add_argument("--no-vandermonde", action="store_true")
    ap.add_argument("--no-long", action="store_true", help="skip B=1, L >= 256K")
    ap.add_argument("--lengths", type=str, default=None, help="comma-separated L at B=8 (default 256..64K)")
    ap.add_argument("--dtypes", type=str, default="float32,bfloat16")
    ap.add_argument("--sweep", action="store_true", help="only the tile/warps sweep of the one-tile kernel")
    ap.add_argument("--sweep-long", action="store_true",
                    help="sweep the three-level kernel first, then run the table with the fastest config per length")
    ap.add_argument("--sweep-long-bwd", action="store_true",
                    help="only the backward tile/warps sweep of the three-level path (fwd+bwd vs torch.fft)")
    ap.add_argument("--no-forced", action="store_true", help="time only the dispatched path (and torch.fft) per row")
    ap.add_argument("--name", type=str, default=None, help="results file name (default fftconv)")
    # the same-run A/Bs and sweeps of the three-level kernel's options, at L = 4K, 16K, 64K unless --lengths
    # (the closures read bw, ab_lengths and dts, set below)
    abs_ = {
        "scratch_ab": ("the forward, fp16 vs fp32 scratch (--lengths, --dtypes)", lambda: fwd_ab(
            bw, ab_lengths, dts, "SCRATCH_DTYPE", {"fp16": torch.float16, "fp32": torch.float32})),
        "dots_ab": ("the forward, fp16 vs tf32 dot operands (--lengths, --dtypes)", lambda: fwd_ab(
            bw, ab_lengths, dts, "FP16_DOTS", {"fp16dots": True, "tf32dots": False})),
        "spectrum_dots_ab": ("the spectrum kernel's dot operands, fp16 vs tf32: public forward (--lengths, --dtypes)", lambda: fwd_ab(
            bw, ab_lengths, dts, "SPECTRUM_FP16_DOTS", {"fp16dots": True, "tf32dots": False})),
        "sweep_occupancy": ("the forward kernel at 2-4 programs per SM under register caps, or pipelined (--lengths)",
                            lambda: sweep_occupancy(bw, ab_lengths)),
        "scratch_ab_bwd": ("the backward kernel's scratch, fp16 vs fp32, fwd+bwd (--lengths)", lambda: bwd_ab(
            ab_lengths, "BWD_SCRATCH_DTYPE", {"fp16": torch.float16, "fp32": torch.float32})),
        "dots_ab_bwd": ("the backward kernel's dot operands, fp16 vs tf32, fwd+bwd (--lengths)", lambda: bwd_ab(
            ab_lengths, "BWD_FP16_DOTS", {"fp16dots": True, "tf32dots": False})),
    }
    for mode, (text, _) in abs_.items():
        ap.add_argument("--" + mode.replace("_", "-"), action="store_true", help="only " + text)
    args = ap.parse_args()
    bw = copy_bandwidth()
    print(f"device {device_name()}  copy {bw:.0f} GB/s  fp32 dot mode {tf.FP32_PRECISION}", flush=True)
    ab_lengths = [int(x) for x in (args.lengths or "4096,16384,65536").split(",")]
    dts = [getattr(torch, d) for d in args.dtypes.split(",")]
    for mode, (_, run) in abs_.items():
        if getattr(args, mode):
            write_json(args.name or "fftconv_" + mode, {"device": device_name(), "copy_GBps": bw,
                                                        "torch": torch.__version__, "rows": run()})
            return
    if args.sweep_long_bwd:
        sweep_long_bwd(bw)
        return
    if args.sweep:
        rows = sweep(bw)
        write_json("fftconv_sweep", {"device": device_name(), "rows": rows, "compile_stats": tf.COMPILE_STATS})
        print_table(rows, list(rows[0].keys()))
        print("compile stats:", tf.COMPILE_STATS)
        return
    sweep_rows, chosen = [], {}
    if args.sweep_long:
        sweep_rows, best = sweep_long(bw)
        write_json((args.name or "fftconv") + "_sweep_long", {"device": device_name(), "copy_GBps": bw, "rows": sweep_rows})
        # adopt the fastest fp32 config per length for the table below (one global tile/warps/grid:
        # that of the fastest at the shortest swept length; splits per length)
        fp32 = sorted((r for (dt, _), r in best.items() if dt == "float32"), key=lambda r: r["L"])
        if fp32:
            tlong.TILE, tlong.WARPS, tlong.PROGS_PER_SM = fp32[0]["tile"], fp32[0]["warps"], fp32[0]["progs_per_sm"]
            for r in fp32:
                tlong.SPLITS[(2 * r["L"]).bit_length() - 1] = tuple(r["split"])
        chosen = _long_config()
        print("adopted:", chosen, flush=True)
    lengths = [256, 1024, 2048, 4096, 16384, 65536]
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    shapes = [(8, 768, L) for L in lengths]
    if not args.no_long:
        shapes += [(1, 768, 262144), (1, 768, 524288), (1, 768, 1048576)]
    if args.quick:
        shapes = [(8, 768, 1024), (8, 768, 2048)]
    rows = []
    for dtype in [getattr(torch, d) for d in args.dtypes.split(",")]:
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
            # the other fused path where it applies, to show where the dispatch thresholds come from
            others = []
            if args.no_forced:
                continue
            if r["path"] != "triton" and 2 * L <= 8192:
                others.append("triton")
            if r["path"] != "long" and 4096 <= 2 * L <= (1 << 19):
                others.append("long")
            if r["path"] != "torch.fft":
                others.append("torch")
            for force in others:
                torch.cuda.empty_cache()
                try:
                    rf = bench_conv(B, H, L, dtype, bw, force=force)
                except Exception as e:  # noqa: BLE001 - e.g. out of registers or memory: report, go on
                    print(f"forced {force} at L={L} {dtype}: {type(e).__name__}: {str(e)[:200]}")
                    torch.cuda.empty_cache()
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
        "long_config": chosen or _long_config(),
        "compile_stats": tf.COMPILE_STATS, "fftconv": rows, "vandermonde": vrows,
    }
    path = write_json(args.name or ("fftconv_quick" if args.quick else "fftconv"), payload)
    print("\n## fftconv (causal, k of length L, D skip)")
    print_table(rows, ["B", "H", "L", "dtype", "path", "split", "fwd_ms", "kernel_ms", "torch_fwd_ms", "fwd_speedup",
                       "fwdbwd_ms", "fwdbwd_ms_torch_dk", "torch_fwdbwd_ms", "fwdbwd_speedup", "copy_frac",
                       "torch_copy_frac", "peak_MB", "torch_peak_MB", "peak_fwdbwd_MB", "torch_peak_fwdbwd_MB",
                       "rel_err", "grad_rel_diff"])
    if sweep_rows:
        print("\n## three-level kernel sweep (kernel only, B=8, H=768)")
        print_table(sweep_rows, list(sweep_rows[0].keys()))
    if vrows:
        print("\n## vandermonde (H=768, N=64)")
        print_table(vrows, list(vrows[0].keys()))
    print("compile stats:", tf.COMPILE_STATS)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
