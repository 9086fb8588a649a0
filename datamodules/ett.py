"""ETT (Electricity Transformer Temperature) with the exact Informer benchmark splits.

Files: ``ETTh1.csv``/``ETTh2.csv`` (hourly) and ``ETTm1.csv``/``ETTm2.csv`` (15-minute) from
zhouhaoyi/ETDataset, columns ``date, HUFL, HULL, MUFL, MULL, LUFL, LULL, OT`` (CC BY-ND 4.0;
Zhou et al., "Informer", AAAI 2021). Splits, as in Informer/Autoformer/SpaceTime:

    hourly:    train [0, 8640)   val [8640 - lookback, 11520)   test [11520 - lookback, 14400)
    15-minute: every bound x 4   (34560 / 46080 / 57600)

so a val/test window may read its inputs from the previous split but its targets always lie in
its own split. Standard scaling uses the training rows' statistics only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from datamodules._paths import data_root
from datamodules.windows import ForecastingDataModule
from tsmodels.errors import UserInputError

ETT_NAMES = ("ETTh1", "ETTh2", "ETTm1", "ETTm2")
ETT_URL = "https://github.com/zhouhaoyi/ETDataset/tree/main/ETT-small"
# 12 / 4 / 4 months of 30 days, in hours; the 15-minute files have 4 rows per hour.
_HOURLY_BORDERS = (12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)


def ett_borders(name: str) -> tuple[int, int, int]:
    """End rows (exclusive) of the train, val and test splits of ``name``: (8640, 11520, 14400)
    for ETTh*, four times that for ETTm*."""
    factor = 4 if name.startswith("ETTm") else 1
    return tuple(b * factor for b in _HOURLY_BORDERS)


def _check_int(name: str, value, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserInputError(f"{name} must be a positive integer, got {value!r}",
                             f"pass {flag} N with N >= 1")
    return int(value)


class ETTDataModule(ForecastingDataModule):
    """Informer-split ETT forecasting data.

    Args:
        name: ``"ETTh1"``, ``"ETTh2"``, ``"ETTm1"`` or ``"ETTm2"``.
        root: folder holding ``<name>.csv``; default ``data_root()/"ett"``.
        lookback: input length L. horizon: forecast length H.
        features: ``"S"`` target only in and out; ``"M"`` all 7 columns in and out; ``"MS"`` all
            7 in, target out. Columns are ordered as in Informer: the others, then the target.
        target: target column (``"OT"``).
        batch_size, num_workers: DataLoader settings (train shuffled, val/test in order).
        scale: standardize with training statistics (else identity).

    Batches: ``(x, y)`` float32, x (B, L, C_in), y (B, H, C_out), scaled units.
    Attributes: ``n_channels_in``, ``n_channels_out``, ``mean``/``std`` (C_out,) of the target
    columns, ``inverse_transform(y)``, ``columns`` (data column order), ``dates`` (all rows),
    ``borders`` (train/val/test end rows), ``train/val/test_dataset`` (WindowDataset).
    The file is read and the splits are built at construction, so every problem surfaces early.
    """

    def __init__(
        self,
        name: str = "ETTh1",
        root: str | Path | None = None,
        lookback: int = 336,
        horizon: int = 96,
        features: str = "S",
        target: str = "OT",
        batch_size: int = 32,
        num_workers: int = 0,
        scale: bool = True,
    ):
        if name not in ETT_NAMES:
            raise UserInputError(f"unknown ETT data set {name!r}", f"use one of {', '.join(ETT_NAMES)}")
        if features not in ("S", "M", "MS"):
            raise UserInputError(f"unknown features mode {features!r}",
                                 "use 'S' (target only), 'M' (all columns in and out) or 'MS' (all in, target out)")
        lookback = _check_int("lookback", lookback, "--lookback")
        horizon = _check_int("horizon", horizon, "--horizon")
        _check_int("batch_size", batch_size, "--batch-size")
        super().__init__(lookback, horizon, batch_size, num_workers, scale)
        self.save_hyperparameters()
        self.name, self.features, self.target = name, features, target
        self.root = Path(root) if root is not None else data_root() / "ett"
        self.borders = ett_borders(name)
        train_end, val_end, test_end = self.borders

        if lookback + horizon > train_end:
            raise UserInputError(
                f"lookback {lookback} + horizon {horizon} = {lookback + horizon} does not fit the "
                f"{train_end} training rows of {name}",
                f"use a smaller --lookback/--horizon (lookback + horizon <= {train_end})")
        if horizon > val_end - train_end:
            raise UserInputError(
                f"horizon {horizon} is longer than the {val_end - train_end}-row val/test splits of {name}",
                f"use --horizon <= {val_end - train_end}")

        df = self._read(test_end)
        others = [c for c in df.columns if c not in ("date", target)]
        self.columns = others + [target]
        data = df[self.columns].to_numpy(dtype=np.float64)
        self.dates = pd.DatetimeIndex(pd.to_datetime(df["date"]))
        t = len(self.columns) - 1
        all_cols = list(range(len(self.columns)))
        input_cols = [t] if features == "S" else all_cols
        target_cols = all_cols if features == "M" else [t]
        self._build(data, input_cols, target_cols, train_end, {
            "train": (0, train_end),
            "val": (train_end - lookback, val_end),
            "test": (val_end - lookback, test_end),
        })

    def _read(self, min_rows: int) -> pd.DataFrame:
        path = (self.root / f"{self.name}.csv").resolve()
        if not path.is_file():
            if self.name.startswith("ETTm"):
                fix = (f"{self.name}.csv is not shipped with tsmodels; download ETT-small/{self.name}.csv "
                       f"from {ETT_URL} and put it at {path} (or pass root=DIR / set TSMODELS_DATA)")
            else:
                fix = (f"put {self.name}.csv (from {ETT_URL}) at {path}, pass root=DIR, or set "
                       "TSMODELS_DATA to the folder that holds ett/")
            raise UserInputError(f"ETT file not found: {path}", fix)
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserInputError(f"could not read {path} as CSV ({e})",
                                 f"replace it with an unchanged copy from {ETT_URL}") from e
        missing = [c for c in ("date", self.target) if c not in df.columns]
        if missing:
            raise UserInputError(f"{path} has no column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}",
                                 "pass target= one of the columns above, or use an unchanged ETT file")
        numeric = [c for c in df.columns if c != "date"]
        bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(df[c]) or df[c].isna().any()]
        if bad:
            raise UserInputError(f"{path}: column(s) {', '.join(bad)} hold missing or non-numeric values",
                                 f"replace the file with an unchanged copy from {ETT_URL}")
        if len(df) < min_rows:
            raise UserInputError(f"{path} has {len(df)} rows; the Informer splits of {self.name} need {min_rows}",
                                 f"use the complete file from {ETT_URL}")
        return df
