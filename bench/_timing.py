"""Shared timing helpers for the GPU benchmarks in bench/ (CUDA only).

Small on purpose; the bench scripts share these functions:

- :func:`time_pair` -- two ops timed in alternating rounds (the ours-vs-baseline ratios).
- :func:`time_ms` -- median milliseconds of ``fn()`` over CUDA events, after warm-up, >= 20 reps,
  with the L2 cache flushed before each rep (so small sizes are not timed out of cache).
- :func:`copy_bandwidth` -- measured HBM copy bandwidth in GB/s (bytes read + bytes written),
  the ceiling that memory-bound kernels are reported against.
- :func:`peak_memory` -- peak bytes allocated by ``fn()`` above what was allocated before.
- :func:`device_name`, :func:`write_json`, :func:`print_table` -- reporting.
- :func:`parse_options` -- ``k=v,k=v`` command-line options (``--cfg``, ``--t1-options``) to a dict.

Usage::

    from bench._timing import time_ms, copy_bandwidth, write_json
    ms = time_ms(lambda: op(x))["median_ms"]
    frac = (bytes_moved / ms / 1e6) / copy_bandwidth()
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Callable, Sequence

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_flush_buf: torch.Tensor | None = None


def _flush_l2() -> None:
    # 256 MB write evicts the whole L2 (50-60 MB on H100/H200).
    global _flush_buf
    if _flush_buf is None:
        _flush_buf = torch.empty(64 * 1024 * 1024, dtype=torch.float32, device="cuda")
    _flush_buf.zero_()


def time_ms(fn: Callable[[], object], warmup: int = 5, reps: int = 20, flush_l2: bool = True) -> dict:
    """Time ``fn()`` on the current CUDA device.

    Args:
        fn: the work; called warmup + reps times.
        warmup: untimed calls first (compilation, autotuning, allocator warm-up).
        reps: timed calls, each between its own pair of CUDA events (at least 20 used).
        flush_l2: evict L2 before each timed call (outside the timed region).
    Returns:
        {"median_ms", "min_ms", "max_ms", "reps"}.
    """
    reps = max(int(reps), 20)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if flush_l2:
            _flush_l2()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": reps}


def time_pair(fa: Callable[[], object], fb: Callable[[], object], rounds: int = 3, reps: int = 20) -> tuple[float, float]:
    """Median milliseconds of ``fa()`` and ``fb()`` timed in alternating rounds (a, b, a, b, ...).

    Where the host's submission time decides the result (short ops through autograd), clocks and the
    host's load drift over a run; alternating keeps both sides under the same drift.
    Returns (median over rounds of fa's median_ms, the same for fb).
    """
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(time_ms(fa, reps=reps)["median_ms"])
        tb.append(time_ms(fb, reps=reps)["median_ms"])
    return statistics.median(ta), statistics.median(tb)


def copy_bandwidth(nbytes: int = 1 << 30, dtype: torch.dtype = torch.float32) -> float:
    """Measured device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written.

    Args: nbytes: size of the source buffer (default 1 GiB; the destination is as large).
    """
    n = nbytes // torch.tensor([], dtype=dtype).element_size()
    x = torch.randn(n, device="cuda").to(dtype)
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x), warmup=3, reps=20, flush_l2=False)["median_ms"]
    del x, y
    return 2 * nbytes / ms / 1e6


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak CUDA bytes allocated while running ``fn()`` once, above the allocation before it."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - base)


def device_name() -> str:
    """Name of the current CUDA device, e.g. 'NVIDIA H100 80GB HBM3'."""
    return torch.cuda.get_device_name(torch.cuda.current_device())


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` to bench/results/<name>.json (or $BENCH_RESULTS_DIR) atomically; return the path."""
    out_dir = Path(os.environ.get("BENCH_RESULTS_DIR", RESULTS_DIR))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    tmp.replace(path)
    return path


def print_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Print rows (dicts) as a Markdown table with the given columns; return the text."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def parse_options(text: str) -> dict:
    """"k=v,k=v" -> {k: v} with v a Python/JSON-style literal (true/false accepted) or else a string."""
    import ast

    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        value = {"true": "True", "false": "False", "none": "None"}.get(value.lower(), value)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out
