"""Does conditional SaShiMi say the digit it was asked for? (issue 5, item 7)

1. Generate ``--per-label`` clips for every label of a digit-conditional SaShiMi checkpoint
   (recurrent mode, one seed, ``--temperature``).
2. Judge them with digit classifiers trained on real recordings only:
   - the project's own classifiers (``--classifier``: `tsm train experiment=speech_*` run folders
     or checkpoints; several may be given and the one with the best accuracy on the real
     *validation* takes is the judge; all are reported), and
   - unless ``--spec-cnn-epochs 0``, a small CNN on log spectrograms trained here on the real
     training + validation takes (an independent second judge, seconds on a GPU).
   Each judge's accuracy on the real test takes (0-4) is measured in the same run, so the
   generated-clip accuracy can be read against both chance (1 / number of labels) and what the
   judge achieves on real speech.
3. Objective signal checks on generated clips, real test clips and white noise of the same
   loudness: RMS level, fraction of 32 ms frames that are active (within 30 dB of the clip's
   loudest frame) and the spectral flatness of the active frames (about 0.56 for white noise,
   far lower for voiced speech).

Reported per judge: accuracy against the intended digits with a Wilson 95% interval and the exact
one-sided binomial p-value against chance, per-digit accuracy, the confusion matrix (rows:
intended digit, columns: predicted), mean top probability and the Inception-style score
exp(E KL(p(y|x) || p(y))) for generated and real test clips.

Writes bench/results/<name>.json (or $BENCH_RESULTS_DIR) and a PNG of one spectrogram per digit;
``--save-clips F.npz`` keeps the generated tokens so that ``--clips F.npz`` can re-judge them later
(e.g. with a better classifier) without generating again.

    python bench/sashimi_quality.py --classifier runs/speech_cnn/<time> --per-label 10
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apps.generate import default_checkpoint, load_generator, spectrogram_grid  # noqa: E402
from bench._timing import device_name, print_table, write_json  # noqa: E402


def _rel(p: Path | str) -> str:
    """A path for the JSON: relative to the repository if inside it, else the file name alone."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return p.name


# -- statistics ----------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a binomial proportion k / n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def binom_p_greater(k: int, n: int, p: float) -> float:
    """Exact one-sided p-value P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, p, alternative="greater").pvalue)


def inception_score(probs: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) of classifier probabilities (N, K); 1 = uninformative, K = max."""
    p_y = probs.mean(0, keepdim=True)
    kl = (probs * (torch.log(probs + 1e-12) - torch.log(p_y + 1e-12))).sum(-1).mean()
    return float(torch.exp(kl))


def judge_report(probs: torch.Tensor, target: torch.Tensor, names: list[str]) -> dict:
    """Accuracy (with interval, p-value vs chance), per-label accuracy, confusion of (N, K) probs."""
    K = len(names)
    pred = probs.argmax(-1)
    n, k = len(target), int((pred == target).sum())
    conf = torch.zeros(K, K, dtype=torch.long)
    for t, q in zip(target.tolist(), pred.tolist()):
        conf[t, q] += 1
    per = {names[i]: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None) for i in range(K)}
    return {"n": n, "correct": k, "accuracy": k / n, "accuracy_95ci": list(wilson(k, n)), "chance": 1 / K,
            "p_value_vs_chance": binom_p_greater(k, n, 1 / K), "per_label_accuracy": per,
            "confusion": conf.tolist(), "pred_histogram": torch.bincount(pred, minlength=K).tolist(),
            "mean_top_prob": float(probs.max(-1).values.mean()), "inception_score": inception_score(probs)}


def signal_stats(x: torch.Tensor, frame: int = 256) -> dict:
    """Level, activity and spectral flatness of waveforms x (N, T) in [-1, 1] (medians over clips)."""
    x = x.float()
    rms = x.pow(2).mean(-1).sqrt()
    S = torch.stft(x, n_fft=frame, hop_length=frame // 2, window=torch.hann_window(frame, device=x.device),
                   return_complex=True).abs().pow(2)[:, 1:]  # (N, F, frames), DC dropped
    energy = S.sum(1)
    active = energy > energy.max(-1, keepdim=True).values * 1e-3  # within 30 dB of the loudest frame
    flat = torch.exp(torch.log(S + 1e-12).mean(1)) / (S.mean(1) + 1e-12)
    flat_active = torch.where(active, flat, torch.nan).nanmean(-1)
    db = 20 * torch.log10(rms + 1e-9)
    return {"rms_dbfs_median": float(db.median()), "silent_clips(rms<-60dBFS)": int((db < -60).sum()),
            "active_fraction_median": float(active.float().mean(-1).median()),
            "spectral_flatness_active_median": float(flat_active.nanmedian()), "clips": len(x)}


# -- judges --------------------------------------------------------------------------------------
class ProjectJudge:
    """A classifier written by `tsm train experiment=speech_*`: (B, T) waveform -> (B, K) probabilities."""

    def __init__(self, ckpt: Path, device: str):
        from apps.predict import load_classifier, resolve_checkpoint

        self.path = resolve_checkpoint(Path(ckpt))
        self.task, self.info, self.names = load_classifier(self.path)
        self.task.to(device)
        self.length, self.sample_rate = int(self.info["seq_len"]), int(self.info["sample_rate"])
        self.device = device

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        x = _fit(x, self.length)
        out = [self.task.probabilities(self.task(x[i:i + 128, :, None].to(self.device))).cpu()
               for i in range(0, len(x), 128)]
        return torch.cat(out)


def log_spec(x: torch.Tensor) -> torch.Tensor:
    """(B, T) waveform -> (B, 1, 129, frames) log power spectrogram, standardized per clip."""
    S = torch.stft(x, n_fft=256, hop_length=64, window=torch.hann_window(256, device=x.device), return_complex=True)
    S = torch.log(S.abs() ** 2 + 1e-6)
    S = (S - S.mean(dim=(1, 2), keepdim=True)) / (S.std(dim=(1, 2), keepdim=True) + 1e-5)
    return S.unsqueeze(1)


class SpecCNN(nn.Module):
    """Small 2-D CNN on log spectrograms: (B, T) waveform -> (B, K) logits."""

    def __init__(self, n_labels: int):
        super().__init__()
        layers, c = [], 1
        for w in (16, 32, 64, 64):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c, n_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(log_spec(x)).mean(dim=(2, 3)))


class SpecJudge:
    """SpecCNN trained here on the real training + validation takes (no test take)."""

    def __init__(self, splits: dict, names: list[str], device: str, epochs: int, seed: int = 0):
        torch.manual_seed(seed)
        (xtr, ytr), (xva, yva) = splits["train"], splits["val"]
        x, y = torch.cat([xtr, xva]).to(device), torch.cat([ytr, yva]).to(device)
        self.names, self.device, self.length = names, device, x.shape[1]
        self.net = SpecCNN(len(names)).to(device)
        opt = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=1e-2)
        bs = 64
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * math.ceil(len(x) / bs))
        t0 = time.perf_counter()
        self.net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), device=device)
            for i in range(0, len(x), bs):
                idx = perm[i:i + bs]
                xb = x[idx]
                # random delay and gain: generated speech need not start or sit where recordings do
                shift = int(torch.randint(0, 1600, (1,)))
                xb = nn.functional.pad(xb, (shift, 0))[:, : xb.shape[1]] * (0.5 + torch.rand(len(xb), 1, device=device))
                loss = nn.functional.cross_entropy(self.net(xb), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.net.eval()
        self.train_info = {"train_clips": len(x), "epochs": epochs, "train_seconds": time.perf_counter() - t0}

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        x = _fit(x, self.length)
        return torch.cat([torch.softmax(self.net(x[i:i + 256].to(self.device)), -1).cpu() for i in range(0, len(x), 256)])


def _fit(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad (N, T) waveforms at the end to ``length`` samples."""
    return x[:, :length] if x.shape[1] >= length else nn.functional.pad(x, (0, length - x.shape[1]))


def real_splits(root: Path | None, length: int, sample_rate: int, limit: int | None) -> tuple[dict, list[str]]:
    """Real FSDD clips per split: {split: (x (N, length) float32, y (N,) int64)}, label names."""
    from datamodules.speech import SpeechDataModule

    dm = SpeechDataModule(root=root, task="classification", length=length, sample_rate=sample_rate, limit=limit)
    out = {}
    for split in ("train", "val", "test"):
        ds = dm.datasets[split]
        xs, ys = zip(*(ds[i] for i in range(len(ds))))
        out[split] = (torch.stack(xs)[..., 0], torch.tensor(ys))
    return out, list(dm.labels)


# -- main ----------------------------------------------------------------------------------------
def generate(model, per_label: int, seconds: float, temperature: float, seed: int, device: str,
             batch: int | None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """per_label clips of every label: tokens (N, L) int64, label indices (N,), seconds taken."""
    L = max(1, int(round(seconds * model.sample_rate)))
    labels = torch.arange(model.n_labels).repeat_interleave(per_label)
    gen = torch.Generator(device=device).manual_seed(seed)
    batch = batch or len(labels)
    t0 = time.perf_counter()
    toks = [model.generate(len(lb), L, temperature, generator=gen, labels=lb.to(device)).cpu()
            for lb in labels.split(batch)]
    if device == "cuda":
        torch.cuda.synchronize()
    return torch.cat(toks), labels, time.perf_counter() - t0


def _metrics_of(ckpt: Path) -> dict | None:
    import json

    for cand in (ckpt.parent / "metrics.json", ckpt.parent.parent / "metrics.json"):
        if cand.is_file():
            m = json.loads(cand.read_text())
            return {k: m[k] for k in ("test/nll_bits_speech", "test/nll_bits", "best_val_loss", "epochs", "fit_seconds",
                                      "device") if k in m}
    return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gen-ckpt", type=Path, default=None, help="conditional SaShiMi checkpoint (default: shipped)")
    ap.add_argument("--classifier", type=Path, action="append", default=[],
                    help="`tsm train experiment=speech_*` run folder or .ckpt (repeatable)")
    ap.add_argument("--spec-cnn-epochs", type=int, default=12, help="epochs of the spectrogram CNN judge (0: none)")
    ap.add_argument("--per-label", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=None, help="clips generated at once (default: all)")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None, help="real clips per split (quick checks only)")
    ap.add_argument("--clips", type=Path, default=None, help="judge tokens saved by --save-clips instead of generating")
    ap.add_argument("--save-clips", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None, help="spectrograms of the first clip of each label")
    ap.add_argument("--name", default="sashimi_quality")
    args = ap.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)  # generation is a chain of tiny ops
    from datamodules.speech import mu_law_decode

    ckpt = args.gen_ckpt or default_checkpoint()
    model = load_generator(ckpt, device)
    if not model.n_labels:
        raise SystemExit(f"{ckpt} is unconditional: there is no intended digit to check")
    names = list(model.label_names)
    result: dict = {"device": device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
                    "generator": {"checkpoint": _rel(ckpt), "params": sum(p.numel() for p in model.parameters()),
                                  "config": model.config, "label_names": names, "run_metrics": _metrics_of(Path(ckpt))}}

    if args.clips:
        saved = np.load(args.clips)
        tokens, labels = torch.from_numpy(saved["tokens"].astype(np.int64)), torch.from_numpy(saved["labels"]).long()
        result["generation"] = {"from": _rel(args.clips), **{k: saved[k].item() for k in ("seed", "temperature", "seconds")}}
    else:
        tokens, labels, secs = generate(model, args.per_label, args.seconds, args.temperature, args.seed, device, args.batch)
        result["generation"] = {"clips": len(tokens), "per_label": args.per_label, "seconds": args.seconds,
                                "temperature": args.temperature, "seed": args.seed, "wall_seconds": secs,
                                "realtime_factor": len(tokens) * tokens.shape[1] / model.sample_rate / secs}
        print(f"generated {len(tokens)} clips of {tokens.shape[1]} samples in {secs:.1f} s", flush=True)
        if args.save_clips:
            np.savez_compressed(args.save_clips, tokens=tokens.numpy().astype(np.uint8 if model.n_classes <= 256 else np.int32),
                                labels=labels.numpy(), seed=args.seed, temperature=args.temperature, seconds=args.seconds)
    bits = int(round(math.log2(model.n_classes)))
    waves = mu_law_decode(tokens, bits)

    splits, data_names = real_splits(args.data_root, 8000, int(model.sample_rate), args.limit)
    torch.manual_seed(args.seed)
    noise = torch.randn_like(splits["test"][0]) * splits["test"][0].pow(2).mean(-1, keepdim=True).sqrt()
    result["signal"] = {"generated": signal_stats(waves), "real_test": signal_stats(splits["test"][0]),
                        "white_noise_same_rms": signal_stats(noise.clamp(-1, 1))}

    judges: list[tuple[str, object, dict]] = []
    for c in args.classifier:
        j = ProjectJudge(c, device)
        if j.sample_rate != model.sample_rate:
            raise SystemExit(f"classifier {c} works at {j.sample_rate} Hz, the generator at {model.sample_rate} Hz")
        judges.append((f"project:{_rel(j.path)}", j, {"kind": "tsm train classifier", "checkpoint": _rel(j.path),
                                                      "model": type(j.task.model).__name__}))
    if args.spec_cnn_epochs > 0:
        j = SpecJudge(splits, data_names, device, args.spec_cnn_epochs, seed=args.seed)
        judges.append(("spectrogram_cnn", j, {"kind": "log-spectrogram CNN trained in this script", **j.train_info}))

    rows, reports, gen_pred = [], {}, {}
    for key, j, meta in judges:
        # generator label i -> the judge's class index of the same name
        missing = [n for n in names if n not in j.names]
        if missing:
            raise SystemExit(f"judge {key} has no class {missing[0]!r} (its classes: {j.names})")
        to_judge = torch.tensor([j.names.index(names[i]) for i in labels.tolist()])
        dmap = torch.tensor([j.names.index(n) for n in data_names])
        rep = {**meta}
        for split in ("val", "test"):
            x, y = splits[split]
            rep[f"real_{split}"] = judge_report(j.probs(x), dmap[y], j.names)
        probs = j.probs(waves)
        gen_pred[key] = [j.names[q] for q in probs.argmax(-1).tolist()]
        rep["generated"] = judge_report(probs, to_judge, j.names)
        reports[key] = rep
        g, t = rep["generated"], rep["real_test"]
        rows.append({"judge": key, "real_val_acc": rep["real_val"]["accuracy"], "real_test_acc": t["accuracy"],
                     "generated_acc": g["accuracy"], "ci_low": g["accuracy_95ci"][0], "ci_high": g["accuracy_95ci"][1],
                     "chance": g["chance"], "p_vs_chance": g["p_value_vs_chance"]})
    project = [k for k in reports if k.startswith("project:")]
    if project:
        # the project judge is chosen on real validation takes, never on the generated clips
        result["project_judge"] = max(project, key=lambda k: reports[k]["real_val"]["accuracy"])
    result["judges"] = reports
    print_table(rows, ["judge", "real_val_acc", "real_test_acc", "generated_acc", "ci_low", "ci_high", "chance",
                       "p_vs_chance"])
    for k, v in result["signal"].items():
        print(k, v)

    if args.png:
        first = [int((labels == i).nonzero()[0]) for i in range(model.n_labels) if (labels == i).any()]
        shown = [(k, "tsm") for k in [result.get("project_judge")] if k] + [(k, "spec") for k in gen_pred if k == "spectrogram_cnn"]
        titles = [f"asked {names[int(labels[i])]}" + "".join(f"; {tag} heard {gen_pred[k][i]}" for k, tag in shown)
                  for i in first]
        spectrogram_grid([waves[i].numpy() for i in first], int(model.sample_rate), args.png, titles)
        result["png"] = _rel(args.png)
    path = write_json(args.name, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
