"""Where a PDE operator's training step spends GPU time: kernels per step, kernel time per step and
the costliest kernels (torch.profiler over CUDA-graph replays, as pde-bench trains).

The step is pde-bench's: the task's objective (the 10-step rollout loss for FNO's 10 -> 10 setup)
forward and backward, then AdamW, on random fields. Found with it (H200, 64 x 64, batch 20): one
complex GEMM, the weight gradient of T1's head, took 4.6 of T1's 10.8 ms (see complex_linear).

Usage (device): python bench/pde_profile.py [--models t1,fno] [--res 64] [--batch 20] [--top 20]
Writes bench/results/pde_profile.json (or under $BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.pde_bench import parse_models  # noqa: E402
from bench._timing import device_name, write_json  # noqa: E402
from bench.pde import training_step  # noqa: E402


def profile_step(name: str, res: int, batch: int, graphs: bool, reps: int, top: int) -> dict:
    """Kernel count and GPU kernel time per training step of ``name`` (mean over ``reps`` steps), and the
    ``top`` kernels by total time."""
    x = torch.randn(batch, 10, res, res, device="cuda")
    y = torch.randn(batch, 10, res, res, device="cuda")
    task, step = training_step(name, x, y, 32, 12, 4, graphs)  # pde-bench's default width, modes, layers
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name: dict[str, list] = {}
    for e in kernels:
        entry = by_name.setdefault(e.name, [0, 0.0])
        entry[0] += 1
        entry[1] += e.device_time  # us
    rows = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]
    return {"model": name, "resolution": res, "batch": batch, "cuda_graphs": graphs, "graph_captured": task.graphed,
            "kernels_per_step": len(kernels) / reps,
            "kernel_ms_per_step": sum(e.device_time for e in kernels) / reps / 1000,
            "top": [{"kernel": k, "calls_per_step": n / reps, "ms_per_step": t / reps / 1000, "us_per_call": t / n}
                    for k, (n, t) in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="t1,fno")
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--no-cuda-graphs", action="store_true")
    a = p.parse_args()
    if not torch.cuda.is_available():
        p.error("needs a CUDA device")
    report = {"device": device_name(), "torch": torch.__version__, "results": []}
    for name in parse_models(a.models):
        r = profile_step(name, a.res, a.batch, not a.no_cuda_graphs, a.reps, a.top)
        report["results"].append(r)
        print(f"== {name} {a.res}x{a.res} b{a.batch} graphs={r['graph_captured']}: {r['kernels_per_step']:.0f} kernels, "
              f"{r['kernel_ms_per_step']:.2f} ms of kernels per step")
        for t in r["top"]:
            print(f"{t['ms_per_step']:8.3f} ms {t['calls_per_step']:6.0f}x {t['us_per_call']:7.1f} us  {t['kernel'][:90]}")
    print(f"wrote {write_json('pde_profile', report)}")


if __name__ == "__main__":
    main()
