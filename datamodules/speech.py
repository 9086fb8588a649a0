"""Speech clips (Free Spoken Digit Dataset, or any folder of WAV/FLAC) for classification and
autoregressive generation.

Layouts read:
  - flat: files named ``{label}_{speaker}_{take}.wav|flac`` (FSDD: ``7_jackson_32.flac``);
    split by take: takes in ``test_takes`` (FSDD standard: 0-4) are the test set, takes in
    ``val_takes`` (default 5-9) validation, the rest training -- so no recording session
    (take) of a speaker/digit appears in two splits.
  - per label: ``root/<label>/*.wav|flac``; no takes, so a fixed seeded shuffle of each label's
    files gives 80/10/10 % train/val/test.

Every clip is mixed to mono, resampled to ``sample_rate`` if asked (polyphase, scipy), then
cropped or zero padded at the end to ``length`` samples (training clips longer than that are
cropped at a random offset, evaluation clips at the start).

Training-clip augmentation for classification (all off by default; validation and test clips
are never augmented): ``shift`` places a shorter clip at a random offset in the window instead of
at its start, ``speed`` resamples it by a random factor in [1 - speed, 1 + speed] (pitch and tempo
together), ``gain_db`` scales it by a random gain in +-gain_db dB, and ``noise`` adds white noise
at a random level up to ``noise`` times the clip's RMS, and ``time_mask`` zeroes one random span of
up to that fraction of the clip (SpecAugment's time mask, on the waveform).

Batches:
  - ``task="classification"``: ``(x, y)``, x (B, length, 1) float32 in [-1, 1], y (B,) int64.
  - ``task="generation"``: ``(tokens, y, n_valid)``, tokens (B, length) int64 mu-law classes in
    [0, 2^bits), y (B,) labels, n_valid (B,) samples of real audio before the padding.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from datamodules._paths import data_root
from datamodules._splits import SplitLoaders
from tsmodels.errors import UserInputError

AUDIO_SUFFIXES = (".wav", ".flac")
_FLAT = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>.+)_(?P<take>\d+)$")


def mu_law_encode(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Waveform in [-1, 1] (any shape) -> int64 classes in [0, 2^bits); 0.0 maps to 2^(bits-1)."""
    mu = 2**bits - 1
    x = x.float().clamp(-1, 1)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.floor((y + 1) / 2 * mu + 0.5).long()


def mu_law_decode(q: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Classes in [0, 2^bits) -> waveform in [-1, 1] float32; inverse of :func:`mu_law_encode` up to
    quantization (relative error about 1/(2^bits) of the companded value)."""
    mu = 2**bits - 1
    y = q.float() / mu * 2 - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def scan_folder(root: Path) -> list[dict]:
    """List the audio files under ``root``: dicts with path, label, speaker (or None), take (or None).

    Flat layout if ``root`` holds audio files named ``{label}_{speaker}_{take}``, else one sub-folder
    per label. Raises UserInputError if neither fits.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserInputError(f"audio folder {root} does not exist",
                             "pass data.root=<folder of WAV/FLAC files> or set TSMODELS_DATA")
    flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    items = []
    if flat:
        bad = [p.name for p in flat if not _FLAT.match(p.stem)]
        if bad:
            raise UserInputError(f"{len(bad)} audio files in {root} are not named {{label}}_{{speaker}}_{{take}}, e.g. {bad[0]}",
                                 "rename them, or put the files of each label in a sub-folder named after it")
        for p in flat:
            m = _FLAT.match(p.stem)
            items.append({"path": p, "label": m["label"], "speaker": m["speaker"], "take": int(m["take"])})
        return items
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for p in sorted(q for q in d.iterdir() if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES):
            items.append({"path": p, "label": d.name, "speaker": None, "take": None})
    if not items:
        raise UserInputError(f"no WAV/FLAC files in {root} (flat or one folder per label)",
                             "point data.root at a folder of {label}_{speaker}_{take}.wav files or of label folders")
    return items


def split_items(items: list[dict], test_takes=range(0, 5), val_takes=range(5, 10), seed: int = 0) -> dict[str, list[dict]]:
    """Split into train/val/test: by take when files have takes, else seeded 80/10/10 per label."""
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    if all(it["take"] is not None for it in items):
        test_takes, val_takes = set(test_takes), set(val_takes)
        for it in items:
            out["test" if it["take"] in test_takes else "val" if it["take"] in val_takes else "train"].append(it)
        return out
    rng = np.random.default_rng(seed)
    for label in sorted({it["label"] for it in items}):
        group = [it for it in items if it["label"] == label]
        order = rng.permutation(len(group))
        n_test = n_val = max(1, len(group) // 10) if len(group) >= 3 else 0
        for rank, i in enumerate(order):
            out["test" if rank < n_test else "val" if rank < n_test + n_val else "train"].append(group[i])
    return out


def read_audio(path: Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC as mono float32 in [-1, 1], resampled to ``sample_rate`` if given.
    Returns (samples (T,), rate)."""
    import soundfile as sf

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
        raise UserInputError(f"cannot read audio file {path}: {e}", "check the file is a valid WAV or FLAC") from e
    x = x.mean(axis=1)
    if sample_rate and sr != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), int(sample_rate))
        x = resample_poly(x, sample_rate // g, sr // g).astype(np.float32)
        sr = sample_rate
    return x, int(sr)


class SpeechDataset(Dataset):
    """Fixed-length clips from a list of files (see the module doc for the item format)."""

    def __init__(self, items: list[dict], label_index: dict[str, int], length: int, sample_rate: int | None,
                 task: str, bits: int, random_crop: bool, seed: int = 0, augment: dict | None = None):
        self.items, self.label_index, self.length = items, label_index, length
        self.sample_rate, self.task, self.bits, self.random_crop = sample_rate, task, bits, random_crop
        self.augment = {k: v for k, v in (augment or {}).items() if v}
        self._cache: dict[int, np.ndarray] = {}
        self._seed, self._rng_worker = seed, None
        self._rng = np.random.default_rng(seed)

    def _worker_rng(self) -> np.random.Generator:
        """The random generator, re-seeded once per loader worker (each worker gets a copy of the
        dataset, and identical copies would draw identical crops and augmentations)."""
        info = torch.utils.data.get_worker_info()
        if info is not None and self._rng_worker != info.id:
            self._rng = np.random.default_rng([self._seed, info.seed % 2**32])
            self._rng_worker = info.id
        return self._rng

    def __len__(self) -> int:
        return len(self.items)

    def waveform(self, i: int) -> np.ndarray:
        """The whole clip i (resampled), cached in memory after the first read."""
        if i not in self._cache:
            self._cache[i] = read_audio(self.items[i]["path"], self.sample_rate)[0]
        return self._cache[i]

    def _augmented(self, x: np.ndarray) -> np.ndarray:
        """Random speed / gain / noise / time mask of one clip x (T,) (see the module doc); a new array."""
        rng, aug = self._worker_rng(), self.augment
        if aug.get("speed"):
            factor = 1 + rng.uniform(-aug["speed"], aug["speed"])
            n_out = max(2, int(round(len(x) / factor)))
            x = np.interp(np.linspace(0, len(x) - 1, n_out), np.arange(len(x)), x).astype(np.float32)
        if aug.get("gain_db"):
            x = x * np.float32(10 ** (rng.uniform(-aug["gain_db"], aug["gain_db"]) / 20))
        if aug.get("noise"):
            rms = float(np.sqrt(np.mean(x**2))) + 1e-8
            x = x + (rng.uniform(0, aug["noise"]) * rms * rng.standard_normal(len(x))).astype(np.float32)
        if aug.get("time_mask"):
            width = int(rng.uniform(0, aug["time_mask"]) * len(x))
            start = int(rng.integers(0, len(x) - width + 1))
            x = x.copy()
            x[start:start + width] = 0.0
        return np.clip(x, -1, 1).astype(np.float32)

    def __getitem__(self, i: int):
        x = self.waveform(i)
        L = self.length
        if self.augment:
            x = self._augmented(x)
        if len(x) > L:
            off = int(self._worker_rng().integers(0, len(x) - L + 1)) if self.random_crop else 0
            x = x[off:off + L]
        n_valid = len(x)
        start = int(self._worker_rng().integers(0, L - n_valid + 1)) if self.augment.get("shift") and n_valid < L else 0
        wav = torch.zeros(L)
        wav[start:start + n_valid] = torch.from_numpy(np.ascontiguousarray(x))
        y = self.label_index[self.items[i]["label"]]
        if self.task == "classification":
            return wav.unsqueeze(-1), y
        return mu_law_encode(wav, self.bits), y, n_valid


class SpeechDataModule(SplitLoaders, pl.LightningDataModule):
    """Spoken-digit (or any labelled speech) clips for classification or mu-law generation.

    Args:
        root: audio folder; default ``data_root()/"fsdd"/"recordings"``.
        task: ``"classification"`` or ``"generation"``.
        length: samples per clip after resampling (default 8000 = 1 s at 8 kHz).
        sample_rate: resample to this rate; None takes the first file's rate (others are resampled to it).
        bits: mu-law bits for generation (8 -> 256 classes).
        test_takes, val_takes: take numbers of the test / validation splits (flat layout).
        batch_size, num_workers, seed: loader settings (train shuffled).
        limit: use only the first ``limit`` files of each split (quick runs and tests).
        shift, speed, gain_db, noise, time_mask: training-clip augmentation for classification (see the
            module doc); ignored for generation.

    Attributes (for ``???`` model keys): ``n_classes`` (2^bits for generation, number of labels for
    classification), ``n_labels``, ``labels``, ``sample_rate``, ``length``, ``d_input`` (1).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        task: str = "generation",
        length: int = 8000,
        sample_rate: int | None = None,
        bits: int = 8,
        test_takes: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
        val_takes: list[int] | tuple[int, ...] = (5, 6, 7, 8, 9),
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        limit: int | None = None,
        shift: bool = False,
        speed: float = 0.0,
        gain_db: float = 0.0,
        noise: float = 0.0,
        time_mask: float = 0.0,
    ):
        super().__init__()
        if task not in ("classification", "generation"):
            raise UserInputError(f"unknown speech task {task!r}", "use data.task=classification or data.task=generation")
        if not isinstance(length, int) or length < 1:
            raise UserInputError(f"clip length must be a positive integer, got {length!r}", "pass data.length=8000")
        if not 1 <= bits <= 16:
            raise UserInputError(f"mu-law bits must be in 1..16, got {bits}", "use data.bits=8")
        self.root = Path(root) if root else data_root() / "fsdd" / "recordings"
        self.task, self.length, self.bits = task, length, bits
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        items = scan_folder(self.root)
        self.splits = split_items(items, test_takes, val_takes, seed)
        if limit:
            self.splits = {k: v[:limit] for k, v in self.splits.items()}
        for k in ("train", "test"):
            if not self.splits[k]:
                raise UserInputError(f"the {k} split of {self.root} is empty",
                                     "check the takes (data.test_takes / data.val_takes) or add files")
        labels = sorted({it["label"] for it in items})
        if all(l.isdigit() for l in labels):
            labels = sorted(labels, key=int)
        self.labels = labels
        self.label_index = {l: i for i, l in enumerate(labels)}
        self.n_labels = len(labels)
        self.n_classes = 2**bits if task == "generation" else self.n_labels
        self.d_input = 1
        if sample_rate is None:
            import soundfile as sf

            try:
                sample_rate = sf.info(str(items[0]["path"])).samplerate
            except Exception as e:
                raise UserInputError(f"cannot read audio file {items[0]['path']}: {e}", "check the file") from e
        self.sample_rate = int(sample_rate)
        self._resample = sample_rate  # always resample to this rate if a file differs
        if not (0 <= speed < 1 and gain_db >= 0 and noise >= 0 and 0 <= time_mask < 1):
            raise UserInputError(f"augmentation speed={speed}, gain_db={gain_db}, noise={noise}, time_mask={time_mask} "
                                 "out of range", "use 0 <= data.speed < 1, data.gain_db >= 0, data.noise >= 0, "
                                                 "0 <= data.time_mask < 1")
        augment = {"shift": shift, "speed": speed, "gain_db": gain_db, "noise": noise, "time_mask": time_mask} if task == "classification" else None
        self.datasets = {
            k: SpeechDataset(v, self.label_index, length, self._resample, task, bits, random_crop=(k == "train"), seed=seed,
                             augment=augment if k == "train" else None)
            for k, v in self.splits.items()
        }

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: files are listed at construction and read lazily (then cached)."""

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, generator=g,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
