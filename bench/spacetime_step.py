"""Claim: SpaceTime's training step (the paper's ETT settings) is faster on the GPU with the
decoder sharing one denominator inverse and series_inverse starting from a triangular solve,
and faster again under torch.compile; all variants give the same loss.

Times one optimizer step (forward with the auxiliary outputs, the official three-term loss,
backward, AdamW) at batch 50, lookback 336, horizon 720, d_model 128, state 64, one encoder
layer of 16 heads, in the same run for:
  - "separate":   decoder forecast and open-loop outputs computed by separate calls, and
                  series_inverse by Newton doubling from one term (the code before this change);
  - "shared":     the current code (one inverse shared; 32 terms by a triangular solve);
  - "compiled":   the current code under torch.compile (skipped with the error if it fails);
  - "graphed":    (CUDA) ForecastingTask's objective (same three terms) replayed as a CUDA graph
                  (tsmodels.tasks.graphs), as `tsm train` runs it.
Prints a table, writes bench/results/spacetime_step.json (or $BENCH_RESULTS_DIR) with the
device, shapes, aten-op counts and ratios against "separate".

    python bench/spacetime_step.py [--batch 50] [--horizon 720] [--no-compile]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._timing import device_name, print_table, time_ms, write_json  # noqa: E402
from tsmodels.layers import companion  # noqa: E402
from tsmodels.models.spacetime import SpaceTime  # noqa: E402
from tsmodels.tasks.forecasting import ForecastingTask  # noqa: E402


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _loss(model, x, y, separate: bool):
    """The official objective: horizon MSE + open-loop lookback MSE + next-input MSE."""
    if separate:
        xc, mean = model._center(x)
        z = model.encode(xc)
        zt = z.transpose(1, 2)
        pred = model._finish(model.decoder(zt, y.shape[1]).transpose(1, 2), mean)
        y_open, u_next = model.decoder.open_loop(zt)
        aux = {"lookback": model._finish(y_open.transpose(1, 2), mean), "next_input": u_next.transpose(1, 2),
               "decoder_input": z}
    else:
        pred, aux = model(x, return_aux=True)
    n = model.decoder.state_dim
    return ((pred - y).square().mean() + (aux["lookback"][:, n - 1:-1] - x[:, n:]).square().mean()
            + (aux["next_input"][:, n - 1:-1] - aux["decoder_input"][:, n:]).square().mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lookback", type=int, default=336)
    ap.add_argument("--horizon", type=int, default=720)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = SpaceTime(lookback=args.lookback, horizon=args.horizon, n_channels_in=1, d_model=128, state_dim=64,
                      n_encoder_layers=1, n_heads=16, dropout=0.0).to(dev)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(args.batch, args.lookback, 1, device=dev)
    y = torch.randn(args.batch, args.horizon, 1, device=dev)
    direct = companion._DIRECT_TERMS

    def make_step(separate: bool, fn=None):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = (fn or _loss)(model, x, y, separate)
            loss.backward()
            opt.step()
            return loss
        return step

    variants = [("separate", True, 1, None), ("shared", False, direct, None)]
    if not args.no_compile:
        variants.append(("compiled", False, direct, torch.compile(_loss)))
    task = ForecastingTask(model, aux_weights=(1.0, 1.0), cuda_graphs=True).train()
    if dev == "cuda":
        variants.append(("graphed", False, direct, lambda m, x, y, separate: task.objective(x, y)[0]))
    rows = []
    for name, separate, terms, fn in variants:
        companion._DIRECT_TERMS = terms
        row = {"variant": name, "direct_terms": terms}
        model.load_state_dict(init)  # every variant starts from the same weights: same first loss
        # the first GPU step JIT-compiles the Triton fftconv kernels for these lengths (tens of s)
        print(f"{name}: warming up", flush=True)
        try:
            with torch.no_grad():
                row["loss"] = float((fn or _loss)(model, x, y, separate))
            if fn is None:
                with _CountOps() as c:
                    make_step(separate)()
                row["aten_ops_per_step"] = c.n
            t0 = time.perf_counter()
            timing = time_ms(make_step(separate, fn), warmup=3, reps=20, flush_l2=False) if dev == "cuda" else None
            row["first_call_s"] = None if fn is None else round(time.perf_counter() - t0, 1)
            if timing is None:  # CPU: wall clock, median of 5
                ts = []
                for _ in range(5):
                    t = time.perf_counter()
                    make_step(separate, fn)()
                    ts.append(time.perf_counter() - t)
                row["step_ms"] = sorted(ts)[2] * 1e3
            else:
                row["step_ms"] = timing["median_ms"]
        except Exception as e:  # compile failures are reported, not fatal
            row["error"] = f"{type(e).__name__}: {e}"[:300]
        if name == "graphed":
            row["graph_captured"] = task.graphed
        rows.append(row)
        print(row, flush=True)
    companion._DIRECT_TERMS = direct
    base = rows[0].get("step_ms")
    for r in rows:
        if base and r.get("step_ms"):
            r["speedup_vs_separate"] = base / r["step_ms"]
    print_table(rows, ["variant", "direct_terms", "aten_ops_per_step", "step_ms", "speedup_vs_separate", "loss"])
    result = {"device": device_name() if dev == "cuda" else "cpu", "torch": torch.__version__,
              "shapes": {"batch": args.batch, "lookback": args.lookback, "horizon": args.horizon, "d_model": 128,
                         "state_dim": 64, "encoder_layers": 1, "heads": 16}, "dtype": "float32", "rows": rows}
    print(f"wrote {write_json('spacetime_step', result)}")
    return result


if __name__ == "__main__":
    main()
