"""Selective scan (Mamba-1) on the GPU: ours (Triton) vs mamba-ssm's CUDA `selective_scan_fn` vs the
PyTorch reference, Mamba-130M-like shapes D=1536, N=16, fp32, with D skip, z gate, delta_bias and
softplus (what a Mamba block passes).

Shapes: (B, L) = (8, 2048), (4, 8192), (1, 16384). Bytes counted as the fewest the op must move:
forward reads u, delta, z, B, C and writes out (4 B*D*L + 2 B*N*L elements); forward+backward
adds reading u, delta, z, dout, B, C and writing du, ddelta, dz, dB, dC (11 B*D*L + 6 B*N*L).
mamba-ssm is built on the device from its sources (see ../shared/peers/README.md) with
`--mamba-root DIR` (DIR holds csrc/selective_scan and mamba_ssm); if the build fails the error is
printed and recorded and the rest still runs. Writes bench/results/selective_scan.json.

    python bench/selective_scan.py --mamba-root .peers/mamba [--quick] [--sweep]
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from bench._timing import (  # noqa: E402
    copy_bandwidth, device_name, parse_options, peak_memory, print_table, time_ms, write_json)
from kernels.scan import selective_scan, selective_scan_ref  # noqa: E402
from kernels.scan import triton_scan  # noqa: E402

SHAPES = [(8, 2048), (4, 8192), (1, 16384)]
DIM, NSTATE = 1536, 16


def build_mamba(root: str):
    """Build mamba-ssm's selective_scan_cuda for sm_90 only; return (selective_scan_fn, its ref)."""
    from torch.utils.cpp_extension import load

    src = os.path.abspath(os.path.join(root, "csrc", "selective_scan"))
    files = ["selective_scan.cpp"] + [f"selective_scan_fwd_{t}.cu" for t in ("fp32", "fp16", "bf16")]
    files += [f"selective_scan_bwd_{t}_{k}.cu" for t in ("fp32", "fp16", "bf16") for k in ("real", "complex")]
    os.environ.setdefault("MAX_JOBS", "16")
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    flags = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
             "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
             "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
             "-gencode", "arch=compute_90,code=sm_90"]
    t0 = time.time()
    mod = load(name="selective_scan_cuda", sources=[os.path.join(src, f) for f in files],
               extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=flags, extra_include_paths=[src],
               verbose=False)
    print(f"built selective_scan_cuda in {time.time() - t0:.0f} s", flush=True)
    sys.modules["selective_scan_cuda"] = mod
    pkg = types.ModuleType("mamba_ssm")
    pkg.__path__ = [os.path.abspath(os.path.join(root, "mamba_ssm"))]
    sys.modules["mamba_ssm"] = pkg
    ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    return ssi.selective_scan_fn, ssi.selective_scan_ref


def make_inputs(B, L, dim=DIM, N=NSTATE, seed=0):
    """Inputs as a Mamba block makes them (S4D-real A, dt in [1e-3, 1e-1] through delta_bias)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    dt = torch.exp(torch.rand(dim, device="cuda", generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(
        u=r(B, dim, L), delta=r(B, dim, L) * 0.5,
        A=-torch.arange(1, N + 1, device="cuda", dtype=torch.float32).repeat(dim, 1),
        B=r(B, N, L), C=r(B, N, L), D=torch.ones(dim, device="cuda"), z=r(B, dim, L),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),
    )


KEYS = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def _fns(op, ins):
    ins_g = {k: v.clone().requires_grad_() for k, v in ins.items()}
    dout = torch.randn_like(ins["u"])

    def fwd():
        return op(**ins, delta_softplus=True)

    def fwdbwd():
        out = op(**ins_g, delta_softplus=True)
        return torch.autograd.grad(out, [ins_g[k] for k in KEYS], dout)

    return fwd, fwdbwd, ins_g, dout


def _rel(x, r):
    return ((x.float() - r.float()).norm() / r.float().norm().clamp_min(1e-30)).item()


def compare(op_a, op_b, ins):
    """max relative error (norm) of op_a vs op_b over the output and every gradient."""
    fa, fba, ia, dout = _fns(op_a, ins)
    out_a = op_a(**ia, delta_softplus=True)
    ga = torch.autograd.grad(out_a, [ia[k] for k in KEYS], dout)
    ib = {k: v.clone().requires_grad_() for k, v in ins.items()}
    out_b = op_b(**ib, delta_softplus=True)
    gb = torch.autograd.grad(out_b, [ib[k] for k in KEYS], dout)
    errs = {"out": _rel(out_a, out_b)}
    errs.update({f"d{k}": _rel(x, y) for k, x, y in zip(KEYS, ga, gb)})
    return errs


def _bytes(B, L, dim=DIM, N=NSTATE):
    return (4 * B * dim * L + 2 * B * N * L) * 4, (11 * B * dim * L + 6 * B * N * L) * 4


# SELECTIVE_CFG overrides timed by --sweep (the tilings of bench/results/selective_scan_sweep_h200_run6.json
# around the default): (chunk, block_d, num_warps, maxnreg, bwd_block_d, bwd_num_warps, bwd_maxnreg)
SWEEP = [dict(chunk=ch, block_d=bd, num_warps=nw, maxnreg=mr, bwd_block_d=bbd, bwd_num_warps=bnw, bwd_maxnreg=bmr)
         for ch, bd, nw, mr, bbd, bnw, bmr in [
             (256, 4, 2, None, 2, 2, 128), (256, 4, 2, None, 2, 2, None), (256, 4, 2, None, 2, 2, 168),
             (512, 4, 4, None, 2, 4, None), (512, 4, 4, None, 2, 4, 128), (128, 4, 1, None, 2, 1, None),
             (128, 2, 1, None, 2, 1, None)]]


def _set(cfg: dict, values: dict) -> None:
    """Replace a tiling dict's contents in place (the launchers read the module's dict at each call)."""
    cfg.clear()
    cfg.update(values)


def sweep(bw):
    """Time every SWEEP config at the first shape; set SELECTIVE_CFG to the fastest fwd+bwd."""
    B, L = SHAPES[0]
    ins = make_inputs(B, L)
    fb, fbb = _bytes(B, L)
    default = dict(triton_scan.SELECTIVE_CFG)
    rows = []
    for cfg in SWEEP:
        _set(triton_scan.SELECTIVE_CFG, {**default, **cfg})
        fwd, fwdbwd, _, _ = _fns(selective_scan, ins)
        try:
            tf = time_ms(fwd)["median_ms"]
            tfb = time_ms(fwdbwd)["median_ms"]
        except Exception as e:  # noqa: BLE001
            print("config failed", cfg, repr(e)[:300])
            continue
        rows.append({**cfg, "fwd_ms": tf, "fwdbwd_ms": tfb, "fwd_frac": fb / tf / 1e6 / bw, "fwdbwd_frac": fbb / tfb / 1e6 / bw})
        print(rows[-1], flush=True)
    best = {k: v for k, v in min(rows, key=lambda r: r["fwdbwd_ms"]).items() if not k.endswith(("_ms", "_frac"))}
    _set(triton_scan.SELECTIVE_CFG, {**default, **best})
    print("best:", best)
    print_table(rows)
    write_json("selective_scan_sweep", {"device": device_name(), "copy_GBs": bw, "shape": [B, DIM, NSTATE, L],
                                        "dtype": "float32", "rows": rows, "best": best})


# few-rows tilings (FEW_ROWS_TILING overrides) timed by --few-rows-sweep (earlier runs: bench/README.md)
FEW_SWEEP = [dict(chunk=ch, block_d=bd, num_warps=nw, bwd_block_d=bbd, bwd_num_warps=bnw, bwd_maxnreg=bmr)
             for ch, bd, nw, bbd, bnw, bmr in [
                 (512, 4, 2, 2, 4, None), (512, 4, 2, 4, 4, None), (512, 4, 2, 4, 8, None), (512, 4, 2, 2, 8, None),
                 (512, 4, 2, 2, 4, 128), (1024, 4, 4, 2, 4, None), (1024, 4, 4, 2, 8, None)]]


def few_rows_sweep(bw, mamba_fn, tilings=FEW_SWEEP):
    """Time each tiling (FEW_ROWS_TILING overrides; {} = the default) at B=1, L=16K (below few_rows)
    beside mamba-ssm."""
    default_few = dict(triton_scan.FEW_ROWS_TILING)
    B, L = 1, 16384
    ins = make_inputs(B, L)
    mamba = {}
    if mamba_fn is not None:
        mf, mfb, _, _ = _fns(mamba_fn, ins)
        mamba = {"mamba_fwd_ms": time_ms(mf)["median_ms"], "mamba_fwdbwd_ms": time_ms(mfb)["median_ms"]}
    rows = []
    for tiling in tilings:
        _set(triton_scan.FEW_ROWS_TILING, {**default_few, **tiling})
        fwd, fwdbwd, _, _ = _fns(selective_scan, ins)
        row = {"B": B, "L": L, **tiling, **mamba}
        try:
            row["fwd_ms"] = time_ms(fwd)["median_ms"]
            row["fwdbwd_ms"] = time_ms(fwdbwd)["median_ms"]
        except Exception as e:  # noqa: BLE001 - a tiling the compiler rejects
            row["error"] = repr(e)[:200]
        rows.append(row)
        print(row, flush=True)
        # rewritten after every row, so a sweep cut short keeps what it timed
        write_json("selective_scan_few_rows_sweep", {"device": device_name(), "copy_GBs": bw, "D": DIM,
                                                     "N": NSTATE, "dtype": "float32", "rows": rows})
    _set(triton_scan.FEW_ROWS_TILING, default_few)


def ab(variants: list[dict], shapes=SHAPES, rounds: int = 3):
    """Same-run A/B of our kernels: the default config and each variant (SELECTIVE_CFG overrides;
    keys "few.<key>" override FEW_ROWS_TILING), timed in turn `rounds` times at every shape; reports
    the median over rounds of each config's fwd and fwd+bwd medians (across runs, different GPUs of
    one model differ by a few percent)."""
    default, default_few = dict(triton_scan.SELECTIVE_CFG), dict(triton_scan.FEW_ROWS_TILING)
    configs = [{}] + variants
    rows = []
    for B, L in shapes:
        ins = make_inputs(B, L)
        times = {i: ([], []) for i in range(len(configs))}
        for _ in range(rounds):
            for i, cfg in enumerate(configs):
                few = {k[4:]: v for k, v in cfg.items() if k.startswith("few.")}
                main = {k: v for k, v in cfg.items() if not k.startswith("few.")}
                _set(triton_scan.SELECTIVE_CFG, {**default, **main})
                _set(triton_scan.FEW_ROWS_TILING, {**default_few, **few})
                fwd, fwdbwd, _, _ = _fns(selective_scan, ins)
                times[i][0].append(time_ms(fwd)["median_ms"])
                times[i][1].append(time_ms(fwdbwd)["median_ms"])
        for i, cfg in enumerate(configs):
            f, fb = sorted(times[i][0]), sorted(times[i][1])
            d0, d1 = sorted(times[0][0])[rounds // 2], sorted(times[0][1])[rounds // 2]
            rows.append({"B": B, "L": L, "config": str(cfg or "default"), "fwd_ms": f[rounds // 2],
                         "fwdbwd_ms": fb[rounds // 2], "speedup_fwd_vs_default": d0 / f[rounds // 2],
                         "speedup_fwdbwd_vs_default": d1 / fb[rounds // 2]})
            print(rows[-1], flush=True)
        del ins
        torch.cuda.empty_cache()
    _set(triton_scan.SELECTIVE_CFG, default)
    _set(triton_scan.FEW_ROWS_TILING, default_few)
    print_table(rows, list(rows[0].keys()))
    write_json("selective_scan_ab", {"device": device_name(), "torch": torch.__version__, "default": default,
                                     "rounds": rounds, "rows": rows})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mamba-root", default=".peers/mamba")
    p.add_argument("--quick", action="store_true", help="first shape only")
    p.add_argument("--sweep", action="store_true", help="time block configs of ours at the first shape, "
                   "then run the comparison with the fastest")
    p.add_argument("--cfg-from", default=None, help="take SELECTIVE_CFG from a selective_scan_sweep.json's 'best'")
    p.add_argument("--cfg", default="", help="override SELECTIVE_CFG, e.g. block_d=8,chunk=512,bwd_maxnreg=None")
    p.add_argument("--no-ref", action="store_true", help="skip timing the PyTorch reference")
    p.add_argument("--few-rows-sweep", nargs="?", const="", default=None,
                   help="time few-rows tilings at B=1, L=16K beside mamba-ssm (FEW_SWEEP, or the FEW_ROWS_TILING "
                   "overrides given, separated by ';', e.g. ';bwd_rotate=False'), write "
                   "selective_scan_few_rows_sweep.json, exit")
    p.add_argument("--ab", default="", help="only a same-run A/B of ours: variants separated by ';', "
                   "e.g. 'chunk=256;few.bwd_maxnreg=168' (see ab())")
    p.add_argument("--ab-shapes", default="", help="shapes of the A/B as BxL, e.g. 1x16384,8x2048 (default: all)")
    args = p.parse_args()
    if args.ab:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.ab_shapes.split(",")] if args.ab_shapes else SHAPES
        ab([parse_options(v) for v in args.ab.split(";")], shapes)
        return
    if args.cfg_from:
        import json

        triton_scan.SELECTIVE_CFG.update(json.load(open(args.cfg_from))["best"])
    triton_scan.SELECTIVE_CFG.update(parse_options(args.cfg))
    bw = copy_bandwidth()
    print(f"device: {device_name()}  HBM copy: {bw:.0f} GB/s  cfg: {triton_scan.SELECTIVE_CFG}", flush=True)

    # correctness first: ours vs our reference at a small awkward shape
    small = make_inputs(2, 1000, dim=64, seed=1)
    errs_ref = compare(selective_scan, selective_scan_ref, small)
    print("ours vs reference (B=2, D=64, L=1000):", {k: f"{v:.1e}" for k, v in errs_ref.items()}, flush=True)
    if args.sweep:
        sweep(bw)

    mamba_fn, build_error = None, None
    try:
        mamba_fn, _ = build_mamba(args.mamba_root)
    except Exception:  # noqa: BLE001
        build_error = traceback.format_exc()
        print("mamba-ssm build failed:\n" + build_error[-3000:], flush=True)
    if args.few_rows_sweep is not None:
        tilings = [parse_options(v) for v in args.few_rows_sweep.split(";")] if args.few_rows_sweep else FEW_SWEEP
        few_rows_sweep(bw, mamba_fn, tilings)
        return

    rows = []
    for i, (B, L) in enumerate(SHAPES[:1] if args.quick else SHAPES):
        ins = make_inputs(B, L)
        fb, fbb = _bytes(B, L)
        row = {"B": B, "D": DIM, "N": NSTATE, "L": L, "dtype": "float32"}
        fwd, fwdbwd, _, _ = _fns(selective_scan, ins)
        row["ours_fwd_ms"] = time_ms(fwd)["median_ms"]
        row["ours_fwdbwd_ms"] = time_ms(fwdbwd)["median_ms"]
        row["ours_fwd_frac"] = fb / row["ours_fwd_ms"] / 1e6 / bw
        row["ours_fwdbwd_frac"] = fbb / row["ours_fwdbwd_ms"] / 1e6 / bw
        row["ours_fwdbwd_peak_MiB"] = peak_memory(fwdbwd) / 2**20
        if mamba_fn is not None:
            row["err_vs_mamba"] = max(compare(selective_scan, mamba_fn, ins).values())
            mf, mfb, _, _ = _fns(mamba_fn, ins)
            row["mamba_fwd_ms"] = time_ms(mf)["median_ms"]
            row["mamba_fwdbwd_ms"] = time_ms(mfb)["median_ms"]
            row["mamba_fwd_frac"] = fb / row["mamba_fwd_ms"] / 1e6 / bw
            row["mamba_fwdbwd_frac"] = fbb / row["mamba_fwdbwd_ms"] / 1e6 / bw
            row["mamba_fwdbwd_peak_MiB"] = peak_memory(mfb) / 2**20
            row["speedup_fwd_vs_mamba"] = row["mamba_fwd_ms"] / row["ours_fwd_ms"]
            row["speedup_fwdbwd_vs_mamba"] = row["mamba_fwdbwd_ms"] / row["ours_fwdbwd_ms"]
        if not args.no_ref:
            rf, rfb, _, _ = _fns(selective_scan_ref, ins)
            row["ref_fwd_ms"] = time_ms(rf, warmup=1)["median_ms"]
            row["speedup_fwd_vs_ref"] = row["ref_fwd_ms"] / row["ours_fwd_ms"]
            if i == 0:  # the reference backward over 2K python steps is slow; time it once per run
                row["ref_fwdbwd_ms"] = time_ms(rfb, warmup=1)["median_ms"]
                row["speedup_fwdbwd_vs_ref"] = row["ref_fwdbwd_ms"] / row["ours_fwdbwd_ms"]
        rows.append(row)
        print(row, flush=True)
        del ins
        torch.cuda.empty_cache()
    cols = ["B", "L", "ours_fwd_ms", "mamba_fwd_ms", "ref_fwd_ms", "ours_fwdbwd_ms", "mamba_fwdbwd_ms",
            "ref_fwdbwd_ms", "speedup_fwd_vs_mamba", "speedup_fwdbwd_vs_mamba", "speedup_fwd_vs_ref",
            "speedup_fwdbwd_vs_ref", "ours_fwd_frac", "ours_fwdbwd_frac", "ours_fwdbwd_peak_MiB",
            "mamba_fwdbwd_peak_MiB", "err_vs_mamba"]
    table = print_table(rows, cols)
    path = write_json("selective_scan", {
        "device": device_name(), "torch": torch.__version__, "copy_GBs": bw, "cfg": dict(triton_scan.SELECTIVE_CFG),
        "options": "D skip, z gate, delta_bias, delta_softplus=True; fp32",
        "bytes_model": "fwd 4*BDL + 2*BNL elements, fwd+bwd 11*BDL + 6*BNL",
        "ours_vs_reference_small": errs_ref, "mamba_build_error": build_error, "rows": rows, "table": table})
    print("wrote", path)


if __name__ == "__main__":
    main()
