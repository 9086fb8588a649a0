"""SaShiMi generation speed benchmark (GPU): recurrent vs convolutional generation.

Speed (``--speed``): samples per second of autoregressive generation with
  - the recurrent mode (every S4 layer a recurrence, pooling layers buffered: O(1) per sample), and
  - the convolutional mode re-run on the whole prefix at every step (what a model without a
    recurrent form must do: O(t log t) at step t),
for batch 1 and 16 and clips of 1 s and 4 s at the model's rate. The conv baseline is timed at
``--conv-steps`` prefix lengths spread evenly over [1, L] and the total extrapolated as
mean(step time) x L (a Riemann sum of the growing cost); the recurrent mode is timed on
``--rec-steps`` consecutive steps (all of them when the clip is shorter) and, its per-step cost
not depending on t, extrapolated linearly. Both are marked in the JSON. "realtime_factor" is
seconds of audio produced per wall-clock second (batch x samples/s / sample rate).

Generated-clip quality (does a digit classifier hear the digit asked for?) is
``bench/sashimi_quality.py``.

Writes bench/results/sashimi_generation.json (or $BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.generate import load_generator  # noqa: E402
from bench._timing import device_name, print_table, write_json  # noqa: E402


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@torch.no_grad()
def recurrent_rate(model, batch: int, length: int, max_steps: int | None) -> dict:
    """Steps per second of recurrent generation (sampling included) over min(length, max_steps) steps."""
    dev = model.embedding.weight.device
    model.setup_step()
    labels = torch.arange(batch, device=dev) % model.n_labels if model.n_labels else None
    steps = length if not max_steps else min(length, max_steps)
    g = torch.Generator(device=dev).manual_seed(0)

    def run(n):
        state = model.default_state(batch)
        token = torch.full((batch,), model.n_classes // 2, device=dev, dtype=torch.long)
        for _ in range(n):
            logits, state = model.step(token, state, labels)
            token = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=g).squeeze(-1)

    run(32)  # warm-up
    _sync()
    t0 = time.perf_counter()
    run(steps)
    _sync()
    dt = time.perf_counter() - t0
    return {"timed_steps": steps, "extrapolated": steps < length, "seconds_timed": dt,
            "seconds_total": dt / steps * length, "samples_per_s": steps / dt}


@torch.no_grad()
def conv_rate(model, batch: int, length: int, n_positions: int) -> dict:
    """Steps per second of regenerating with the conv mode on the whole prefix at each step."""
    dev = model.embedding.weight.device
    labels = torch.arange(batch, device=dev) % model.n_labels if model.n_labels else None
    tokens = torch.randint(0, model.n_classes, (batch, length), device=dev)
    n_positions = min(n_positions, length)
    positions = torch.linspace(1, length, n_positions).round().long().tolist()
    model(tokens[:, :length], labels)  # warm-up (largest FFT plans)
    model(tokens[:, :64], labels)
    times = []
    for t in positions:
        _sync()
        t0 = time.perf_counter()
        logits = model(tokens[:, :t], labels)[:, -1]
        torch.multinomial(torch.softmax(logits.float(), -1), 1)
        _sync()
        times.append(time.perf_counter() - t0)
    total = sum(times) / len(times) * length
    return {"timed_steps": n_positions, "extrapolated": n_positions < length, "seconds_total": total,
            "samples_per_s": length / total}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=None, help="SaShiMi checkpoint (default: the shipped one)")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--seconds", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--rec-steps", type=int, default=0, help="recurrent steps timed per case (0: all)")
    ap.add_argument("--conv-steps", type=int, default=200, help="prefix lengths timed for the conv baseline")
    ap.add_argument("--name", default="sashimi_generation")
    args = ap.parse_args(argv)

    from apps.generate import default_checkpoint

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)  # per-sample generation is a chain of tiny ops
    ckpt = args.ckpt or default_checkpoint()
    model = load_generator(ckpt, device)
    sr = model.sample_rate
    result = {"device": device_name() if device == "cuda" else "cpu", "checkpoint": str(ckpt),
              "params": sum(p.numel() for p in model.parameters()), "sample_rate": sr,
              "model_config": getattr(model, "config", None), "torch": torch.__version__}
    if args.speed:
        rows = []
        for seconds in args.seconds:
            L = int(round(seconds * sr))
            for b in args.batches:
                rec = recurrent_rate(model, b, L, args.rec_steps or None)
                conv = conv_rate(model, b, L, args.conv_steps)
                rows.append({"batch": b, "seconds": seconds, "length": L,
                             "recurrent_samples_per_s": rec["samples_per_s"], "conv_samples_per_s": conv["samples_per_s"],
                             "speedup": rec["samples_per_s"] / conv["samples_per_s"],
                             "recurrent_realtime_factor": b * rec["samples_per_s"] / sr,
                             "conv_realtime_factor": b * conv["samples_per_s"] / sr,
                             "recurrent": rec, "conv": conv})
                print(f"batch {b} {seconds}s: recurrent {rec['samples_per_s']:.1f}/s conv {conv['samples_per_s']:.2f}/s", flush=True)
        print_table(rows, ["batch", "seconds", "recurrent_samples_per_s", "conv_samples_per_s", "speedup",
                           "recurrent_realtime_factor"])
        result["speed"] = rows
        result["speed_method"] = ("samples_per_s = autoregressive steps per second (each step gives `batch` samples); "
                                  "conv baseline timed at conv-steps evenly spaced prefix lengths and extrapolated "
                                  "(mean step time x L); recurrent extrapolated linearly only where extrapolated=true")
    path = write_json(args.name, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
