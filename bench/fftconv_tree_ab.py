"""Two versions of the fftconv kernels against each other, in alternating processes (CUDA only).

For a change that has no switch (a code change, not an option of ``kernels.fftconv.triton_long``):
export the old ``kernels/`` package into a folder, e.g.

    mkdir -p .carry/old && git archive <commit> kernels | tar -x -C .carry/old
    python bench/fftconv_tree_ab.py --before .carry/old --after . --lengths 16384,65536 --rounds 3

Each round runs one process per tree (before, then after) for each length; a process imports ``kernels``
from its tree and times, at B = 8, H = 768, fp32, a causal kernel of length L with D: the public forward,
the forward kernel alone (spectrum precomputed), the public fwd+bwd, and torch.fft's forward (rfft,
multiply, irfft) as the baseline; it also reports the sum of y, so that a change meant to keep the numerics
shows it did. Writes the medians over rounds, the after / before ratios and every round to
``results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def child(tree: str, L: int) -> dict:
    """One tree's times at length L (run in a fresh process: Python imports ``kernels`` once)."""
    sys.path.insert(0, os.path.abspath(tree))
    sys.path.insert(0, HERE)
    import torch

    from _timing import device_name, time_ms
    from kernels.fftconv import fftconv
    from kernels.fftconv import triton_long as tl

    assert tl.__file__.startswith(os.path.abspath(tree)), tl.__file__
    B, H = 8, 768
    torch.manual_seed(0)
    u = torch.randn(B, H, L, device="cuda", requires_grad=True)
    k = (torch.randn(H, L, device="cuda") * torch.exp(-torch.arange(L, device="cuda") / 2000.0)).requires_grad_(True)
    D = torch.randn(H, device="cuda", requires_grad=True)
    g = torch.randn(B, H, L, device="cuda")
    plan = tl.plan_long(L, L)

    def torch_fwd():
        n = 2 * L
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L] + u * D[:, None]

    def fwd_bwd():
        u.grad = k.grad = D.grad = None
        fftconv(u, k, D).backward(g)

    with torch.no_grad():
        Kt = tl._spectrum_tiles(k, plan, True, None, D)
        y = torch.empty_like(u)
        r = {"device": device_name(), "fwd_ms": time_ms(lambda: fftconv(u, k, D))["median_ms"],
             "kernel_ms": time_ms(lambda: tl.launch(u, Kt, y, plan, False))["median_ms"],
             "torch_fwd_ms": time_ms(torch_fwd)["median_ms"]}
        r["y_sum"] = float(fftconv(u, k, D).double().sum())
    r["fwdbwd_ms"] = time_ms(fwd_bwd)["median_ms"]
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="folder holding the old kernels/ package")
    ap.add_argument("--after", default=".", help="folder holding the new one (default: this checkout)")
    ap.add_argument("--lengths", default="16384")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="fftconv_tree_ab")
    ap.add_argument("--child", nargs=2, metavar=("TREE", "L"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    sys.path.insert(0, HERE)
    from _timing import print_table, write_json

    runs, rows = [], []
    for L in [int(x) for x in args.lengths.split(",")]:
        got = {"before": [], "after": []}
        for rnd in range(args.rounds):
            for side in ("before", "after"):
                out = subprocess.run([sys.executable, __file__, "--child", getattr(args, side), str(L)],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                got[side].append(r)
                runs.append({"L": L, "round": rnd, "tree": side, **r})
        med = {s: {m: statistics.median(x[m] for x in v) for m in ("fwd_ms", "kernel_ms", "fwdbwd_ms", "torch_fwd_ms")}
               for s, v in got.items()}
        row = {"B": 8, "H": 768, "L": L, "dtype": "float32"}
        for s in ("before", "after"):
            row.update({f"{s}_{m}": v for m, v in med[s].items()})
            row[f"{s}_fwd_speedup"] = med[s]["torch_fwd_ms"] / med[s]["fwd_ms"]
        for m in ("fwd_ms", "kernel_ms", "fwdbwd_ms"):
            row[f"after_vs_before_{m[:-3]}"] = med["before"][m] / med["after"][m]
        row["same_y_sum"] = len({x["y_sum"] for v in got.values() for x in v}) == 1
        rows.append(row)
        print_table([row], list(row.keys()))
    write_json(args.name, {"device": runs[0]["device"], "before": args.before, "after": args.after, "rows": rows,
                           "runs": runs})


if __name__ == "__main__":
    main()
