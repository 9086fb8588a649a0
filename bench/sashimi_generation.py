"""SaShiMi generation benchmark (GPU) and sample-quality check.

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

Quality (``--quality DIR``): a small CNN digit classifier on log spectrograms is trained on the real
FSDD training takes (5-49), checked on the test takes (0-4), then applied to the WAV files of DIR
(written by `tsm generate audio`; for a conditional model clip i is conditioned on digit i mod 10):
its accuracy against the intended digits vs chance (10%, conditional models only), mean top probability, and the Inception-style score
exp(E_x KL(p(y|x) || p(y))) for generated and for real test clips.

Writes bench/results/sashimi_generation.json (or $BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

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


# -- quality -----------------------------------------------------------------------------------
def log_spec(x: torch.Tensor) -> torch.Tensor:
    """(B, T) waveform -> (B, 1, 129, frames) log power spectrogram, per-clip normalized."""
    S = torch.stft(x, n_fft=256, hop_length=64, window=torch.hann_window(256, device=x.device), return_complex=True)
    S = torch.log(S.abs() ** 2 + 1e-6)
    S = (S - S.mean(dim=(1, 2), keepdim=True)) / (S.std(dim=(1, 2), keepdim=True) + 1e-5)
    return S.unsqueeze(1)


class DigitCNN(nn.Module):
    """Small CNN on log spectrograms: (B, T) waveform -> (B, 10) logits."""

    def __init__(self, n_labels: int = 10):
        super().__init__()
        layers, c = [], 1
        for w in (16, 32, 64, 64):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c, n_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(log_spec(x)).mean(dim=(2, 3)))


def _load_split(dm, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = dm.datasets[split]
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs)[..., 0], torch.tensor(ys)


def train_classifier(root: Path | None, device: str, epochs: int, seed: int = 0, limit: int | None = None) -> tuple[nn.Module, dict]:
    """Train DigitCNN on FSDD takes 5-49 (train + val), report accuracy on takes 0-4."""
    from datamodules.speech import SpeechDataModule

    torch.manual_seed(seed)
    dm = SpeechDataModule(root=root, task="classification", length=8000, limit=limit)
    xtr, ytr = (torch.cat(t) for t in zip(_load_split(dm, "train"), _load_split(dm, "val")))
    xte, yte = _load_split(dm, "test")
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)
    clf = DigitCNN(dm.n_labels).to(device)
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-3, weight_decay=1e-2)
    steps = epochs * math.ceil(len(xtr) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    t0 = time.perf_counter()
    for _ in range(epochs):
        clf.train()
        perm = torch.randperm(len(xtr), device=device)
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            x = xtr[idx]
            # random delay and gain: generated clips need not start where the recordings do
            shift = int(torch.randint(0, 1600, (1,)))
            x = torch.nn.functional.pad(x, (shift, 0))[:, : x.shape[1]] * (0.5 + torch.rand(len(x), 1, device=device))
            loss = nn.functional.cross_entropy(clf(x), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    clf.eval()
    probs = predict(clf, xte)
    return clf, {"classifier_train_clips": len(xtr), "classifier_test_clips": len(xte), "classifier_epochs": epochs,
                 "classifier_train_seconds": time.perf_counter() - t0,
                 "classifier_test_accuracy": float((probs.argmax(-1) == yte).float().mean()),
                 "real_test_inception_score": inception_score(probs)}


@torch.no_grad()
def predict(clf: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.softmax(clf(x[i:i + 256]), -1) for i in range(0, len(x), 256)])


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) of classifier probabilities (N, K)."""
    p_y = probs.mean(0, keepdim=True)
    kl = (probs * (torch.log(probs + 1e-12) - torch.log(p_y + 1e-12))).sum(-1).mean()
    return float(torch.exp(kl))


def score_generated(clf: nn.Module, folder: Path, n_labels: int, device: str, conditional: bool = True) -> dict:
    """Classify the WAVs of ``folder`` (sample_XX.wav, clip i conditioned on label i mod n_labels)."""
    import soundfile as sf

    paths = sorted(folder.glob("sample_*.wav"))
    waves, labels = [], []
    for p in paths:
        x, _ = sf.read(str(p), dtype="float32")
        x = torch.from_numpy(x)[:8000]
        waves.append(torch.nn.functional.pad(x, (0, 8000 - len(x))))
        labels.append(int(p.stem.split("_")[1]) % n_labels)
    x, y = torch.stack(waves).to(device), torch.tensor(labels, device=device)
    probs = predict(clf, x)
    pred = probs.argmax(-1)
    # an unconditional model has no intended digit: accuracy is defined for conditional models only
    acc = float((pred == y).float().mean()) if conditional else None
    return {"generated_clips": len(paths), "conditional": conditional, "generated_accuracy": acc, "chance": 1 / n_labels,
            "generated_mean_top_prob": float(probs.max(-1).values.mean()),
            "generated_inception_score": inception_score(probs),
            "generated_pred_histogram": torch.bincount(pred, minlength=n_labels).tolist()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=None, help="SaShiMi checkpoint (default: the shipped one)")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--seconds", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--rec-steps", type=int, default=0, help="recurrent steps timed per case (0: all)")
    ap.add_argument("--conv-steps", type=int, default=200, help="prefix lengths timed for the conv baseline")
    ap.add_argument("--quality", type=Path, default=None, help="folder of generated WAVs to score")
    ap.add_argument("--classifier-epochs", type=int, default=12)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--classifier-limit", type=int, default=None, help="clips per split (quick checks only)")
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
    if args.quality is not None:
        clf, q = train_classifier(args.data_root, device, args.classifier_epochs, limit=args.classifier_limit)
        q.update(score_generated(clf, args.quality, model.n_labels or 10, device, conditional=model.n_labels > 0))
        print(q, flush=True)
        result["quality"] = q
    path = write_json(args.name, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
