"""`tsm predict --ckpt F --input X [--out F.csv]`: class probabilities from a trained classifier.

The checkpoint is one written by `tsm train` with the classification task
(``runs/<name>/<time>/checkpoints/*.ckpt``, or the run folder itself, which picks the best
checkpoint). The task is rebuilt from the run's ``config.yaml`` with ``hydra.utils.instantiate``
and the weights loaded; the checkpoint's ``data_info`` (written by the task) says how the training
data were prepared, so new inputs get the same preprocessing:

- audio models: a WAV/FLAC file or a folder of them; each clip mixed to mono, resampled to the
  training rate, cut/zero-padded to the training length;
- ECG models: a CSV/TXT file of series, or a WFDB record (see
  :func:`datamodules.ecg.load_ecg_for_prediction`), standardized with the training statistics.

Output: a CSV with one row per example — ``input``, one ``p_<class>`` column per class (softmax;
per-label sigmoid for multi-label models) and ``predicted`` — written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import typer

from tsmodels.errors import UserInputError
from tsmodels.io import atomic_path

AUDIO_SUFFIXES = (".wav", ".flac")


def resolve_checkpoint(ckpt: Path) -> Path:
    """A checkpoint file, or a run folder → its best checkpoint (else last.ckpt)."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        folder = ckpt / "checkpoints" if (ckpt / "checkpoints").is_dir() else ckpt
        found = sorted(folder.glob("best*.ckpt")) or sorted(folder.glob("last*.ckpt")) or sorted(folder.glob("*.ckpt"))
        if not found:
            raise UserInputError(f"no .ckpt file in {folder}", "pass --ckpt runs/<name>/<time>/checkpoints/<file>.ckpt")
        return found[-1]
    if not ckpt.is_file():
        raise UserInputError(f"checkpoint not found: {ckpt}", "pass --ckpt runs/<name>/<time>/checkpoints/<file>.ckpt")
    return ckpt


def load_classifier(ckpt: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """Rebuild the task of a `tsm train` run and load its weights.

    Returns (task in eval mode on CPU, data_info, class names)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    ckpt = resolve_checkpoint(ckpt)
    cfg_path = next((p / "config.yaml" for p in (ckpt.parent.parent, ckpt.parent) if (p / "config.yaml").is_file()), None)
    if cfg_path is None:
        raise UserInputError(f"no config.yaml beside {ckpt} (looked in {ckpt.parent.parent} and {ckpt.parent})",
                             "use a checkpoint from a `tsm train` run folder (runs/<name>/<time>/checkpoints/)")
    cfg = OmegaConf.load(cfg_path)
    if "task" not in cfg or "ClassificationTask" not in str(cfg.task.get("_target_", "")):
        raise UserInputError(f"{cfg_path} is not a classification run (task {cfg.get('task', {}).get('_target_')})",
                             "pass a checkpoint of a classification experiment (ecg_*, speech_*)")
    try:
        # our own training output: it holds Lightning loop state besides tensors
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserInputError(f"could not load checkpoint {ckpt} ({type(e).__name__}: {e})", "pass an intact .ckpt file") from e
    if "state_dict" not in state:
        raise UserInputError(f"{ckpt} has no state_dict", "pass a Lightning checkpoint written by `tsm train`")
    task = instantiate(cfg.task)
    task.load_state_dict(state["state_dict"])
    task.eval()
    info = state.get("data_info")
    if not info:
        raise UserInputError(f"{ckpt} does not record how its data were prepared (no data_info)",
                             "retrain with the current classification task, which stores it")
    names = list(state.get("class_names") or info.get("classes") or [str(i) for i in range(task.n_classes)])
    return task, info, names


def _audio_inputs(path: Path, info: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    from datamodules.speech import read_audio

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise UserInputError(f"no WAV/FLAC files in {path}", "pass a WAV file or a folder of WAV/FLAC files")
    elif path.is_file():
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            raise UserInputError(f"{path} is not a WAV/FLAC file and this is an audio model", "pass a .wav/.flac file or a folder of them")
        files = [path]
    else:
        raise UserInputError(f"input not found: {path}", "pass a WAV file or a folder of WAV files")
    L = int(info["seq_len"])
    x = np.zeros((len(files), L, 1), dtype=np.float32)
    for i, f in enumerate(files):
        wav, _ = read_audio(f, int(info["sample_rate"]))
        if len(wav) == 0:
            raise UserInputError(f"{f} holds no samples", "pass non-empty recordings")
        wav = wav[:L]  # evaluation clips are cut at the start, as in the datamodule
        x[i, : len(wav), 0] = wav
    return [f.name for f in files], x


def predict(ckpt: Path, input: Path, out: Path | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Class probabilities for ``input`` from checkpoint ``ckpt``; written to ``out`` (CSV) if given.

    Returns a DataFrame: ``input``, ``p_<class>`` for each of the K classes, ``predicted``."""
    if batch_size < 1:
        raise UserInputError(f"batch size {batch_size}", "pass --batch-size N with N >= 1")
    task, info, names = load_classifier(ckpt)
    input = Path(input)
    if info.get("domain") == "audio":
        ids, x = _audio_inputs(input, info)
    elif info.get("domain") == "ecg":
        from datamodules.ecg import load_ecg_for_prediction

        if input.is_dir() or input.suffix.lower() in AUDIO_SUFFIXES:
            raise UserInputError(f"{input} is not an ECG input and this is an ECG model", "pass a CSV/TXT of series or a WFDB record")
        if not input.exists() and not input.with_suffix(".hea").exists():
            raise UserInputError(f"input not found: {input}", "pass an existing CSV file or WFDB record")
        ids, x = load_ecg_for_prediction(input, info)
    else:
        raise UserInputError(f"unknown data domain {info.get('domain')!r} in the checkpoint", "retrain the model")
    probs = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            probs.append(task.probabilities(task(torch.from_numpy(x[s : s + batch_size]))).numpy())
    p = np.concatenate(probs)
    df = pd.DataFrame(p, columns=[f"p_{c}" for c in names])
    df.insert(0, "input", ids)
    if task.multilabel:
        df["predicted"] = [";".join(c for c, on in zip(names, row) if on) for row in p >= 0.5]
    else:
        df["predicted"] = [names[i] for i in p.argmax(axis=1)]
    if out is not None:
        out = Path(out)
        if out.parent and not out.parent.exists():
            raise UserInputError(f"output folder {out.parent} does not exist", "create it or pass another --out")
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    return df


def predict_command(
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint of a `tsm train` classification run (or its run folder)."),
    input: Path = typer.Option(..., "--input", help="WAV/FLAC file or folder (audio models); CSV/TXT or WFDB record (ECG models)."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="Output CSV of class probabilities."),
    batch_size: int = typer.Option(64, "--batch-size", help="Examples per forward pass."),
) -> None:
    """Class probabilities from a trained classifier: `tsm predict --ckpt F --input X [--out F.csv]`."""
    df = predict(ckpt, input, out, batch_size)
    typer.echo(f"wrote {len(df)} prediction(s) to {out}")
