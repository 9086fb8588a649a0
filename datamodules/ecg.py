"""ECG classification data: UCR text files, WFDB beat windows (MIT-BIH layout) and PTB-XL.

Three sources, one batch format ``(x, y)``: x (B, L, C) float32, y (B,) long class indices or,
for multi-label tasks, (B, K) float multi-hot.

- :class:`UCRDataModule` — UCR archive text files ``<name>_TRAIN.txt`` / ``<name>_TEST.txt`` (one
  series per line, first value the label). With an official TEST file (ECG200) that file is the
  test split and validation is carved from TRAIN (stratified, seeded); without one (ECG5000 ships
  only TRAIN here) TRAIN is split train/val/test, stratified and seeded.
- :class:`WFDBBeatsDataModule` — WFDB records with beat annotations (MIT-BIH: ``100.hea/.dat/.atr``):
  one fixed-length window around each annotated beat, label = beat symbol (or its AAMI class).
- :class:`PTBXLDataModule` — the PTB-XL layout: ``ptbxl_database.csv`` (``ecg_id``, ``scp_codes``,
  ``strat_fold``, ``filename_lr``/``filename_hr``) + ``scp_statements.csv`` (code → diagnostic
  class) + the WFDB records; diagnostic superclasses (NORM, MI, STTC, CD, HYP) as a single-label
  task (records with exactly one superclass) or a multi-label task. Splits: the recommended
  ``strat_fold`` 1-8 / 9 / 10.

All standardize each lead with the mean/std of the training split only. Data are read and split
at construction, so every problem surfaces early as a :class:`UserInputError`.
:meth:`ECGClassificationDataModule.export_info` is what a checkpoint needs to preprocess new inputs
(`tsm predict`), through :func:`load_ecg_for_prediction`.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from datamodules._paths import data_root
from datamodules._splits import SplitLoaders
from tsmodels.errors import UserInputError

UCR_URL = "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/"
PTBXL_URL = "https://physionet.org/content/ptb-xl/"
PTBXL_SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
# WFDB annotation symbols that mark a beat (the rest are rhythm/noise/comment markers such as '+', '~').
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
# AAMI EC57 grouping of beat symbols into five classes.
AAMI_CLASSES = {**dict.fromkeys("NLReBj", "N"), **dict.fromkeys("AaJSn", "S"), **dict.fromkeys("VE", "V"),
                "F": "F", **dict.fromkeys("/fQ?r", "Q")}


# ----------------------------------------------------------------------------------------------
# splitting and scaling


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Split indices ``0..N-1`` into ``len(fractions)`` disjoint sorted index arrays, stratified by
    ``labels`` (N,) and reproducible for a seed.

    Each part gets ``round(N * fraction)`` items in total (the first part takes what is left),
    shared out between classes in proportion to their size by largest remainders, so every class
    appears in each part in (close to) its overall proportion.
    """
    labels = np.asarray(labels)
    n = len(labels)
    fractions = [float(f) for f in fractions]
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise UserInputError(f"split fractions {fractions} must be >= 0 and sum to at most 1",
                             "use e.g. val_fraction=0.2 test_fraction=0.2")
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    pools = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(classes))]
    counts = np.array([len(p) for p in pools])
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    taken = np.zeros(len(classes), dtype=int)
    # the later parts (val, test) get exact totals; the first (train) takes the rest
    for j in range(len(fractions) - 1, 0, -1):
        total = int(round(n * fractions[j]))
        quota = counts * fractions[j]
        alloc = np.floor(quota).astype(int)
        remainder = quota - alloc
        order = np.lexsort((rng.random(len(classes)), -remainder))
        for k in order[: max(0, total - alloc.sum())]:
            alloc[k] += 1
        alloc = np.minimum(alloc, counts - taken)
        for k in range(len(classes)):
            parts[j].append(pools[k][taken[k] : taken[k] + alloc[k]])
        taken += alloc
    parts[0] = [pools[k][taken[k] :] for k in range(len(classes))]
    return [np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts]


def fit_lead_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-lead mean and std (population) of ``x`` (N, L, C) over samples and time; a constant lead
    gets std 1. Returns two (C,) float64 arrays."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    return mean, np.where(std > 0, std, 1.0)


def _fix_length(sig: np.ndarray, length: int) -> np.ndarray:
    """Crop (keep the start) or zero-pad (at the end) ``sig`` (T, C) to (length, C)."""
    if len(sig) >= length:
        return sig[:length]
    return np.concatenate([sig, np.zeros((length - len(sig), sig.shape[1]), sig.dtype)], axis=0)


# ----------------------------------------------------------------------------------------------
# base datamodule


class ECGClassificationDataModule(SplitLoaders, LightningDataModule):
    """Base of the ECG datamodules: three (x, y) array splits, standardized per lead, and loaders.

    Subclasses read their source and call :meth:`_set_splits`. Attributes after construction:
    ``n_channels_in`` (C), ``n_classes`` (K), ``multilabel``, ``seq_len`` (L), ``classes`` (K
    names), ``mean``/``std`` (C,) training statistics, ``x_train/y_train/...`` arrays and
    ``sizes`` (split → count).
    """

    kind = "series"  # how a new input is cut into examples at prediction time

    def __init__(self, batch_size: int = 32, num_workers: int = 0, standardize: bool = True, seed: int = 0):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise UserInputError(f"batch_size must be a positive integer, got {batch_size!r}", "pass data.batch_size=32")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.standardize, self.seed = bool(standardize), int(seed)
        self.multilabel = False

    def _set_splits(self, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str]) -> None:
        """``splits``: name → (x (N, L, C) raw units, y (N,) int or (N, K) multi-hot)."""
        for name in ("train", "val", "test"):
            if len(splits[name][0]) == 0:
                raise UserInputError(f"the {name} split is empty ({self.describe()})",
                                     "use more data or larger split fractions")
        self.classes = [str(c) for c in classes]
        x_train = splits["train"][0]
        if self.standardize:
            self.mean, self.std = fit_lead_stats(x_train)
        else:
            self.mean, self.std = np.zeros(x_train.shape[2]), np.ones(x_train.shape[2])
        for name, (x, y) in splits.items():
            x = ((x - self.mean) / self.std).astype(np.float32)
            y = y.astype(np.float32) if self.multilabel else y.astype(np.int64)
            setattr(self, f"x_{name}", x)
            setattr(self, f"y_{name}", y)
        self.sizes = {name: len(splits[name][0]) for name in ("train", "val", "test")}

    def describe(self) -> str:
        return type(self).__name__

    @property
    def n_channels_in(self) -> int:
        """C: leads per example."""
        return int(self.x_train.shape[2])

    @property
    def seq_len(self) -> int:
        """L: samples per example."""
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        """K: classes (single-label) or labels (multi-label)."""
        return len(self.classes)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw (N, L, C) → standardized float32 with the training statistics."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def export_info(self) -> dict[str, Any]:
        """Everything needed to turn a new file into model inputs (saved in checkpoints)."""
        return {"domain": "ecg", "kind": self.kind, "seq_len": self.seq_len, "n_channels": self.n_channels_in,
                "mean": self.mean.tolist(), "std": self.std.tolist(), "classes": list(self.classes),
                "multilabel": self.multilabel}

    def _dataset(self, name: str) -> TensorDataset:
        return TensorDataset(torch.from_numpy(getattr(self, f"x_{name}")), torch.from_numpy(getattr(self, f"y_{name}")))

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(self._dataset(name), batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)


# ----------------------------------------------------------------------------------------------
# UCR


def read_ucr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a UCR text file: returns labels (N,) as strings and series (N, L) float64."""
    if not path.is_file():
        raise UserInputError(f"UCR file not found: {path}",
                             f"put it there (from {UCR_URL}), pass data.root=DIR, or set TSMODELS_DATA")
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter="," if path.suffix == ".csv" else None)
    except ValueError as e:
        raise UserInputError(f"could not read {path} as a UCR file ({str(e).splitlines()[0]})",
                             "each line must hold the label then the series, all numeric, the same count per line") from e
    if arr.shape[1] < 3 or not np.isfinite(arr).all():
        raise UserInputError(f"{path}: expected rows of 'label v1 v2 ...' with finite values, got shape {arr.shape}",
                             "replace it with an unchanged UCR archive file")
    raw = arr[:, 0]
    labels = np.array([str(int(v)) if float(v).is_integer() else str(v) for v in raw])
    return labels, arr[:, 1:]


def _encode(labels: np.ndarray, classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """String labels → int indices in the order of ``classes`` (default: sorted numerically when
    possible, else lexically)."""
    if classes is None:
        uniq = sorted(set(labels.tolist()), key=lambda s: (0, float(s), s) if _is_number(s) else (1, 0.0, s))
        classes = uniq
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        raise UserInputError(f"labels {unknown} appear only outside the training file", "check the data files")
    return np.array([index[s] for s in labels], dtype=np.int64), list(classes)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


class UCRDataModule(ECGClassificationDataModule):
    """A UCR archive data set (ECG200, ECG5000, ...), univariate: x (B, L, 1), y (B,) long.

    Args:
        name: file prefix, ``<root>/<name>_TRAIN.txt`` (and ``_TEST.txt`` if present).
        root: folder of the files; default ``data_root()/"ecg"/"ucr"``.
        val_fraction: share of TRAIN (official test file) or of all rows (no test file) for val.
        test_fraction: share of the rows for test when there is no TEST file.
        seed: split seed. batch_size, num_workers, standardize: as usual.
    Labels are encoded in sorted order (ECG200: -1 → 0, 1 → 1; ECG5000: 1..5 → 0..4); ``classes``
    holds the original labels. ``split_source`` says "official test file" or "stratified split of TRAIN".
    """

    def __init__(self, name: str = "ECG200", root: str | Path | None = None, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                 standardize: bool = True):
        super().__init__(batch_size, num_workers, standardize, seed)
        self.save_hyperparameters()
        self.name = name
        self.root = Path(root) if root is not None else data_root() / "ecg" / "ucr"
        train_labels, train_x = read_ucr(self.root / f"{name}_TRAIN.txt")
        y_all, classes = _encode(train_labels)
        test_path = self.root / f"{name}_TEST.txt"
        if test_path.is_file():
            test_labels, test_x = read_ucr(test_path)
            if test_x.shape[1] != train_x.shape[1]:
                raise UserInputError(f"{test_path} has series of length {test_x.shape[1]}, TRAIN has {train_x.shape[1]}",
                                     "use matching UCR files")
            y_test, _ = _encode(test_labels, classes)
            tr, va = stratified_split(y_all, [1 - val_fraction, val_fraction], seed)
            splits = {"train": (train_x[tr], y_all[tr]), "val": (train_x[va], y_all[va]), "test": (test_x, y_test)}
            self.split_source = "official test file"
            self.indices = {"train": tr, "val": va}
        else:
            tr, va, te = stratified_split(y_all, [1 - val_fraction - test_fraction, val_fraction, test_fraction], seed)
            splits = {k: (train_x[i], y_all[i]) for k, i in zip(("train", "val", "test"), (tr, va, te))}
            self.split_source = f"stratified split of {name}_TRAIN.txt (seed {seed})"
            self.indices = {"train": tr, "val": va, "test": te}
        self._set_splits({k: (x[:, :, None], y) for k, (x, y) in splits.items()}, classes)

    def describe(self) -> str:
        return f"UCR {self.name}"


# ----------------------------------------------------------------------------------------------
# WFDB


def read_wfdb_record(path: str | Path, channels: Sequence[int] | None = None):
    """Read a WFDB record (path without extension, or with .hea/.dat) → ``wfdb.Record``.

    Raises :class:`UserInputError` naming the record when wfdb cannot read it.
    """
    import wfdb

    base = _record_base(path)
    try:
        return wfdb.rdrecord(str(base), channels=list(channels) if channels is not None else None)
    except Exception as e:  # wfdb raises FileNotFoundError, ValueError, struct errors... for bad records
        raise UserInputError(f"could not read WFDB record {base} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                             "pass the record path without extension; it needs a readable .hea header and its signal file") from e


def read_wfdb_beats(path: str | Path, extension: str = "atr"):
    """Read the beat annotations ``<record>.<extension>`` → (sample positions (M,), symbols (M,))."""
    import wfdb

    base = _record_base(path)
    try:
        ann = wfdb.rdann(str(base), extension)
    except Exception as e:
        raise UserInputError(f"could not read annotations {base}.{extension} ({type(e).__name__}: {e})",
                             f"beat windows need a {extension} annotation file beside the record") from e
    return np.asarray(ann.sample, dtype=np.int64), np.asarray(ann.symbol)


def _record_base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".hea", ".dat", ".atr", ".mat") else p


def cut_beats(signal: np.ndarray, samples: np.ndarray, window: int, pre: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``signal[s - pre : s - pre + window]`` around each annotation sample ``s``.

    signal (T, C), samples (M,) → (windows (M', window, C), kept (M',) indices into samples);
    beats whose window would leave the record are dropped.
    """
    starts = samples - pre
    keep = np.flatnonzero((starts >= 0) & (starts + window <= len(signal)))
    idx = starts[keep, None] + np.arange(window)[None, :]
    return signal[idx], keep


class WFDBBeatsDataModule(ECGClassificationDataModule):
    """Beat classification from annotated WFDB records (MIT-BIH layout): x (B, window, C), y (B,).

    Args:
        records: record names (relative to ``root``) or paths; default ``["100"]``.
        root: folder of the records; default ``data_root()/"ecg"/"mitdb"``.
        window, pre: window length and samples before the annotated R peak (default 256 and 96
            at 360 Hz: 0.27 s before, 0.44 s after, shorter than a normal RR interval).
        labels: "symbol" (one class per beat symbol) or "aami" (N, S, V, F, Q).
        annotation: annotation file extension. val_fraction, test_fraction, seed: stratified split
            over beats (with one record there is no other unit to split by; with several records,
            ``split_by="record"`` holds whole records out instead).
    Non-beat annotations ('+', '~', '|', ...) are skipped.
    """

    kind = "beats"

    def __init__(self, records: Sequence[str] = ("100",), root: str | Path | None = None, window: int = 256,
                 pre: int = 96, labels: str = "symbol", annotation: str = "atr", val_fraction: float = 0.2,
                 test_fraction: float = 0.2, split_by: str = "beat", seed: int = 0, batch_size: int = 32,
                 num_workers: int = 0, standardize: bool = True):
        super().__init__(batch_size, num_workers, standardize, seed)
        records = [str(r) for r in records]  # plain list: Hydra passes a ListConfig, which checkpoints cannot hold safely
        self.save_hyperparameters()
        if labels not in ("symbol", "aami"):
            raise UserInputError(f"unknown labels mode {labels!r}", "use labels=symbol or labels=aami")
        if split_by not in ("beat", "record"):
            raise UserInputError(f"unknown split_by {split_by!r}", "use split_by=beat or split_by=record")
        if not 0 <= pre < window:
            raise UserInputError(f"pre={pre} must lie in [0, window={window})", "pass e.g. window=256 pre=96")
        self.root = Path(root) if root is not None else data_root() / "ecg" / "mitdb"
        self.window, self.pre, self.labels_mode, self.annotation = int(window), int(pre), labels, annotation
        xs, syms, rec_ids, fs = [], [], [], None
        for r_i, rec in enumerate(records):
            path = Path(rec) if Path(rec).is_absolute() else self.root / str(rec)
            record = read_wfdb_record(path)
            if fs is not None and record.fs != fs:
                raise UserInputError(f"record {path} has {record.fs} Hz, earlier records {fs} Hz", "use records of one rate")
            fs = record.fs
            if xs and record.n_sig != xs[0].shape[2]:
                raise UserInputError(f"record {path} has {record.n_sig} leads, earlier records {xs[0].shape[2]}",
                                     "use records with the same leads")
            samples, symbols = read_wfdb_beats(path, annotation)
            is_beat = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
            samples, symbols = samples[is_beat], symbols[is_beat]
            sig = np.nan_to_num(record.p_signal.astype(np.float64))
            win, keep = cut_beats(sig, samples, self.window, self.pre)
            xs.append(win)
            syms.append(symbols[keep])
            rec_ids.append(np.full(len(keep), r_i))
        self.fs = float(fs)
        x = np.concatenate(xs)
        sym = np.concatenate(syms)
        rec_id = np.concatenate(rec_ids)
        if labels == "aami":
            sym = np.array([AAMI_CLASSES.get(s, "Q") for s in sym])
            classes = [c for c in ("N", "S", "V", "F", "Q") if c in set(sym.tolist())]
        else:
            values, counts = np.unique(sym, return_counts=True)
            classes = [str(v) for v in values[np.argsort(-counts, kind="stable")]]
        y, classes = _encode(sym, classes)
        if split_by == "record":
            if len(records) < 3:
                raise UserInputError("split_by=record needs at least 3 records", "pass more records or split_by=beat")
            parts = stratified_split(np.arange(len(records)), [1 - val_fraction - test_fraction, val_fraction, test_fraction], seed)
            tr, va, te = (np.flatnonzero(np.isin(rec_id, p)) for p in parts)
        else:
            tr, va, te = stratified_split(y, [1 - val_fraction - test_fraction, val_fraction, test_fraction], seed)
        self.indices = {"train": tr, "val": va, "test": te}
        self._set_splits({"train": (x[tr], y[tr]), "val": (x[va], y[va]), "test": (x[te], y[te])}, classes)

    def describe(self) -> str:
        return f"WFDB beats from {self.root}"

    def export_info(self) -> dict[str, Any]:
        return {**super().export_info(), "window": self.window, "pre": self.pre, "fs": self.fs,
                "annotation": self.annotation, "labels_mode": self.labels_mode}


# ----------------------------------------------------------------------------------------------
# PTB-XL


def ptbxl_superclasses(scp_codes: str | dict, code_to_class: dict[str, str]) -> list[str]:
    """Diagnostic superclasses of one record's ``scp_codes`` (a dict or its string form), in the
    order of :data:`PTBXL_SUPERCLASSES`."""
    codes = ast.literal_eval(scp_codes) if isinstance(scp_codes, str) else scp_codes
    found = {code_to_class[c] for c in codes if c in code_to_class}
    return [c for c in PTBXL_SUPERCLASSES if c in found]


class PTBXLDataModule(ECGClassificationDataModule):
    """PTB-XL-layout folder → diagnostic superclass classification, x (B, L, 12), y (B,) or (B, 5).

    Args:
        root: folder with ``ptbxl_database.csv``, ``scp_statements.csv`` and the records.
        task: "superclass" (single-label: records with exactly one superclass) or
            "superclass_multilabel" (multi-hot over NORM, MI, STTC, CD, HYP; records with none dropped).
        sampling_rate: 100 (``filename_lr``) or 500 (``filename_hr``).
        seq_len: crop/zero-pad every record to this many samples (default: 10 s).
        folds: (train, val, test) ``strat_fold`` values; default 1-8 / 9 / 10 as PTB-XL recommends.
    """

    kind = "record"

    def __init__(self, root: str | Path | None = None, task: str = "superclass", sampling_rate: int = 100,
                 seq_len: int | None = None, folds: Sequence[Sequence[int]] = ((1, 2, 3, 4, 5, 6, 7, 8), (9,), (10,)),
                 batch_size: int = 32, num_workers: int = 0, standardize: bool = True, seed: int = 0):
        super().__init__(batch_size, num_workers, standardize, seed)
        folds = [[int(f) for f in part] for part in folds]
        self.save_hyperparameters()
        if task not in ("superclass", "superclass_multilabel"):
            raise UserInputError(f"unknown PTB-XL task {task!r}", "use task=superclass or task=superclass_multilabel")
        if sampling_rate not in (100, 500):
            raise UserInputError(f"sampling_rate must be 100 or 500, got {sampling_rate}", "pass sampling_rate=100")
        self.root = Path(root) if root is not None else data_root() / "ecg" / "ptbxl"
        self.multilabel = task == "superclass_multilabel"
        self.task_name, self.fs = task, float(sampling_rate)
        length = int(seq_len) if seq_len else 10 * sampling_rate
        db, code_to_class = self._read_tables()
        col = "filename_lr" if sampling_rate == 100 else "filename_hr"
        supers = [ptbxl_superclasses(s, code_to_class) for s in db["scp_codes"]]
        if self.multilabel:
            keep = [i for i, s in enumerate(supers) if s]
        else:
            keep = [i for i, s in enumerate(supers) if len(s) == 1]
        if not keep:
            raise UserInputError(f"no record of {self.root} has a usable superclass label for task={task}",
                                 "check scp_codes and scp_statements.csv (diagnostic rows with diagnostic_class)")
        classes = list(PTBXL_SUPERCLASSES)
        xs, ys, folds_of = [], [], []
        for i in keep:
            row = db.iloc[i]
            rec = read_wfdb_record(self.root / str(row[col]))
            xs.append(_fix_length(np.nan_to_num(rec.p_signal.astype(np.float64)), length))
            if self.multilabel:
                ys.append(np.array([c in supers[i] for c in classes], dtype=np.float32))
            else:
                ys.append(classes.index(supers[i][0]))
            folds_of.append(int(row["strat_fold"]))
        if len({x.shape[1] for x in xs}) != 1:
            raise UserInputError(f"records of {self.root} have different lead counts", "use records with the same leads")
        x, y, fold = np.stack(xs), np.asarray(ys), np.asarray(folds_of)
        parts = [np.flatnonzero(np.isin(fold, list(f))) for f in folds]
        self.indices = dict(zip(("train", "val", "test"), parts))
        self.ecg_ids = db["ecg_id"].to_numpy()[keep] if "ecg_id" in db.columns else np.asarray(keep)
        self._set_splits({k: (x[p], y[p]) for k, p in self.indices.items()}, classes)

    def _read_tables(self) -> tuple[pd.DataFrame, dict[str, str]]:
        db_path, st_path = self.root / "ptbxl_database.csv", self.root / "scp_statements.csv"
        for p in (db_path, st_path):
            if not p.is_file():
                raise UserInputError(f"PTB-XL table not found: {p}",
                                     f"download PTB-XL from {PTBXL_URL} and pass data.root=<its folder>")
        db = pd.read_csv(db_path)
        need = {"scp_codes", "strat_fold", "filename_lr", "filename_hr"}
        if need - set(db.columns):
            raise UserInputError(f"{db_path} lacks column(s) {sorted(need - set(db.columns))}",
                                 "use the unchanged ptbxl_database.csv")
        st = pd.read_csv(st_path, index_col=0)
        if "diagnostic_class" not in st.columns:
            raise UserInputError(f"{st_path} lacks the diagnostic_class column", "use the unchanged scp_statements.csv")
        diag = st[st.get("diagnostic", pd.Series(1.0, index=st.index)).fillna(0) == 1]
        code_to_class = {str(k): str(v) for k, v in diag["diagnostic_class"].dropna().items()}
        return db, code_to_class

    def describe(self) -> str:
        return f"PTB-XL layout at {self.root}"

    def export_info(self) -> dict[str, Any]:
        return {**super().export_info(), "fs": self.fs}


# ----------------------------------------------------------------------------------------------
# new inputs for `tsm predict`


def load_ecg_for_prediction(path: str | Path, info: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Turn a user's ECG file into standardized model inputs, as the training data were prepared.

    ``info`` is :meth:`ECGClassificationDataModule.export_info` of the training datamodule.
    Accepted: a CSV/TXT file — for univariate series models one series per row (L values, or L+1
    with a leading label as in UCR files, which is ignored); for multi-lead models one example with
    rows = time and columns = leads (a header row is allowed) — or a WFDB record (``.hea`` path or
    the path without extension): for beat models every annotated beat, for record models the whole
    record cropped/padded to L. Returns (names (N,), x (N, L, C) float32).
    """
    p = Path(path)
    L, C = int(info["seq_len"]), int(info["n_channels"])
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    is_record = p.suffix in (".hea", ".dat") or (p.suffix == "" and p.with_suffix(".hea").is_file())
    if is_record:
        record = read_wfdb_record(p)
        if record.n_sig != C:
            raise UserInputError(f"record {p} has {record.n_sig} leads; the model was trained on {C}",
                                 f"pass a record with {C} leads")
        sig = np.nan_to_num(record.p_signal.astype(np.float64))
        if info["kind"] == "beats":
            samples, symbols = read_wfdb_beats(p, info.get("annotation", "atr"))
            is_beat = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
            x, keep = cut_beats(sig, samples[is_beat], int(info["window"]), int(info["pre"]))
            if len(keep) == 0:
                raise UserInputError(f"record {p} has no annotated beat with a full window", "pass a longer annotated record")
            names = [f"{p.with_suffix('').name}@{s}" for s in samples[is_beat][keep]]
        elif info["kind"] == "record":
            x, names = _fix_length(sig, L)[None], [p.with_suffix("").name]
        else:
            raise UserInputError(f"this model classifies single series of length {L}; a WFDB record is not one",
                                 "pass a CSV with one series per row")
    elif p.suffix.lower() in (".csv", ".txt", ".tsv"):
        if not p.is_file():
            raise UserInputError(f"input file not found: {p}", "check the path")
        sep = {".csv": ",", ".tsv": "\t"}.get(p.suffix.lower(), r"\s+")
        try:
            frame = pd.read_csv(p, header=None, sep=sep, engine="python", skipinitialspace=True)
            arr = frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserInputError(f"could not read {p} as CSV ({e})", "pass a numeric CSV") from e
        if len(arr) and np.isnan(arr[0]).all():  # a header row
            arr = arr[1:]
        if arr.size == 0 or np.isnan(arr).any():
            raise UserInputError(f"{p} holds missing or non-numeric values", "pass a numeric CSV without gaps")
        if C == 1 and info["kind"] == "series":
            if arr.shape[1] == L + 1:
                arr = arr[:, 1:]
            if arr.shape[1] != L:
                raise UserInputError(f"{p} has rows of {arr.shape[1]} values; the model takes series of length {L}",
                                     f"pass one series of {L} values per row (or {L + 1} with a leading label)")
            x, names = arr[:, :, None], [f"row{i}" for i in range(len(arr))]
        else:
            if arr.shape[1] != C:
                raise UserInputError(f"{p} has {arr.shape[1]} columns; the model takes {C} leads",
                                     f"pass one example with rows = time and {C} lead columns")
            if info["kind"] == "beats" and len(arr) != L:
                raise UserInputError(f"{p} has {len(arr)} rows; a beat window is {L} samples", f"pass {L} rows")
            x, names = _fix_length(arr, L)[None], [p.stem]
    else:
        raise UserInputError(f"cannot read {p} as an ECG input", "pass a .csv/.txt file or a WFDB record (.hea)")
    return names, ((x - mean) / std).astype(np.float32)
