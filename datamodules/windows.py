"""Shared pieces of the forecasting datamodules: sliding windows and standard scaling.

Both :mod:`datamodules.ett` and :mod:`datamodules.csv` cut a (T, C) array into stride-1
(lookback, horizon) windows and scale it with statistics fitted on the training rows only; this
module is the single place where either concept lives.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules._splits import SplitLoaders
from tsmodels.errors import UserInputError


class StandardScaler:
    """Per-column standardization ``(x - mean) / std`` with statistics fitted on one slice.

    ``std`` is the population standard deviation (ddof=0, as scikit-learn's scaler that the
    Informer benchmark uses); a constant column gets ``std = 1`` so scaling never divides by 0.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    @classmethod
    def identity(cls, n_channels: int) -> "StandardScaler":
        """A scaler that leaves data unchanged (``scale=False``): mean 0, std 1 per channel."""
        return cls(np.zeros(n_channels), np.ones(n_channels))

    def fit(self, data: np.ndarray) -> "StandardScaler":
        """Fit on ``data`` of shape (T, C) — pass the training rows only. Returns self."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"StandardScaler.fit expects a non-empty (T, C) array, got {data.shape}")
        self.mean = data.mean(axis=0)
        std = data.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def _check(self) -> None:
        if self.mean is None or self.std is None:
            raise RuntimeError("StandardScaler used before fit()")

    def _stats_like(self, x, cols: Sequence[int] | None):
        mean, std = self.mean, self.std
        if cols is not None:
            mean, std = mean[list(cols)], std[list(cols)]
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (torch.as_tensor(mean, dtype=dtype, device=x.device),
                    torch.as_tensor(std, dtype=dtype, device=x.device))
        return mean, std

    def transform(self, x, cols: Sequence[int] | None = None):
        """Scale ``x`` (array or tensor, last dim = channels ``cols`` of the fitted data, all if
        None) to zero mean / unit std. Same type and shape as ``x``."""
        self._check()
        mean, std = self._stats_like(x, cols)
        if isinstance(x, torch.Tensor):
            return (x - mean) / std
        return (np.asarray(x, dtype=np.float64) - mean) / std

    def inverse_transform(self, x, cols: Sequence[int] | None = None):
        """Undo :meth:`transform`: ``x * std + mean`` on the last dim (channels ``cols``)."""
        self._check()
        mean, std = self._stats_like(x, cols)
        if isinstance(x, torch.Tensor):
            return x * std + mean
        return np.asarray(x, dtype=np.float64) * std + mean


class WindowDataset(Dataset):
    """Stride-1 forecasting windows over rows ``[start, stop)`` of a (T, C) array.

    Item ``i`` is ``(x, y)`` with ``x = data[start+i : start+i+lookback, input_cols]`` of shape
    (lookback, C_in) and ``y = data[start+i+lookback : start+i+lookback+horizon, target_cols]``
    of shape (horizon, C_out), both float32. Every window whose inputs and targets lie inside
    ``[start, stop)`` is included, so there are ``stop - start - lookback - horizon + 1``.
    """

    def __init__(
        self,
        data: np.ndarray,
        lookback: int,
        horizon: int,
        input_cols: Sequence[int],
        target_cols: Sequence[int],
        start: int = 0,
        stop: int | None = None,
    ):
        stop = len(data) if stop is None else stop
        if not (0 <= start <= stop <= len(data)):
            raise ValueError(f"bad window range [{start}, {stop}) for {len(data)} rows")
        if lookback < 1 or horizon < 1:
            raise ValueError(f"lookback and horizon must be >= 1, got {lookback}, {horizon}")
        self.data = torch.as_tensor(np.ascontiguousarray(data, dtype=np.float32))
        self.lookback, self.horizon = int(lookback), int(horizon)
        self.input_cols = torch.as_tensor(list(input_cols), dtype=torch.long)
        self.target_cols = torch.as_tensor(list(target_cols), dtype=torch.long)
        self.start, self.stop = int(start), int(stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.start - self.lookback - self.horizon + 1)

    def target_rows(self, i: int) -> range:
        """Rows of the full array that window ``i``'s targets come from."""
        first = self.start + i + self.lookback
        return range(first, first + self.horizon)

    def input_rows(self, i: int) -> range:
        """Rows of the full array that window ``i``'s inputs come from."""
        return range(self.start + i, self.start + i + self.lookback)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"window {i} out of range for {n} windows")
        s = self.start + i
        x = self.data[s : s + self.lookback].index_select(1, self.input_cols)
        y = self.data[s + self.lookback : s + self.lookback + self.horizon].index_select(1, self.target_cols)
        return x, y


class ForecastingDataModule(SplitLoaders, LightningDataModule):
    """Base of the forecasting datamodules: scaled (T, C) data, three window splits, loaders.

    Subclasses set ``self.data`` (T, C) in original units, ``self.input_cols``,
    ``self.target_cols`` and the split row ranges, then call :meth:`_build`. Batches are
    ``(x, y)`` float32 with x (B, lookback, C_in) and y (B, horizon, C_out) in scaled units.
    """

    def __init__(self, lookback: int, horizon: int, batch_size: int, num_workers: int, scale: bool):
        super().__init__()
        self.lookback, self.horizon = int(lookback), int(horizon)
        self.batch_size, self.num_workers, self.scale = int(batch_size), int(num_workers), bool(scale)
        self.train_dataset: WindowDataset | None = None
        self.val_dataset: WindowDataset | None = None
        self.test_dataset: WindowDataset | None = None

    def _build(self, data: np.ndarray, input_cols, target_cols, train_stop: int,
               splits: dict[str, tuple[int, int] | None]) -> None:
        """Fit the scaler on rows [0, train_stop), scale ``data`` and make one WindowDataset per
        split ``name -> (start, stop)`` (None: no such split)."""
        self.input_cols, self.target_cols = list(input_cols), list(target_cols)
        self.scaler = (StandardScaler().fit(data[:train_stop]) if self.scale
                       else StandardScaler.identity(data.shape[1]))
        self.scaled = self.scaler.transform(data).astype(np.float32)
        for name, rng in splits.items():
            ds = None if rng is None else WindowDataset(
                self.scaled, self.lookback, self.horizon, self.input_cols, self.target_cols, *rng)
            setattr(self, f"{name}_dataset", ds)

    @property
    def n_channels_in(self) -> int:
        """C_in: channels of x."""
        return len(self.input_cols)

    @property
    def n_channels_out(self) -> int:
        """C_out: channels of y (the target columns)."""
        return len(self.target_cols)

    @property
    def mean(self) -> np.ndarray:
        """Training mean of the target columns, shape (C_out,) (zeros when ``scale=False``)."""
        return self.scaler.mean[self.target_cols]

    @property
    def std(self) -> np.ndarray:
        """Training std of the target columns, shape (C_out,) (ones when ``scale=False``)."""
        return self.scaler.std[self.target_cols]

    def inverse_transform(self, y):
        """Scaled targets → original units. ``y``: tensor or array (..., C_out); same type back."""
        return self.scaler.inverse_transform(y, self.target_cols)

    def transform(self, y):
        """Original-unit targets (..., C_out) → scaled units; inverse of :meth:`inverse_transform`."""
        return self.scaler.transform(y, self.target_cols)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds: WindowDataset | None = getattr(self, f"{split}_dataset")
        if ds is None:
            raise UserInputError(f"this datamodule has no {split} split",
                                 f"set a {split} fraction > 0 to get {split} windows")
        # pinned batches reach a GPU without a stream synchronization per batch (pageable copies wait);
        # training drops the ragged last batch (as the Informer loaders do): one batch shape, one CUDA graph
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, pin_memory=torch.cuda.is_available(),
                          drop_last=shuffle and len(ds) > self.batch_size,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
