"""Any CSV time series: validated loading (:func:`load_series`) and a forecasting datamodule.

Every problem a user's file can have is reported as a :class:`tsmodels.errors.UserInputError`
that says what is wrong (with the line number and value where there is one) and what to do;
repairs we can make safely (unsorted rows, a few missing values) are made with a
:class:`DataWarning`. Line numbers are those of the file, counting the header as line 1.
"""

from __future__ import annotations

import csv as _csv
import difflib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset

from datamodules.windows import ForecastingDataModule
from tsmodels.errors import UserInputError

TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds")
MAX_NAN_FRACTION = 0.05
# A column is taken for the time axis when at least this share of its non-empty values parse.
TIME_PARSE_FRACTION = 0.8
_NA_STRINGS = {"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"}
_SHOW = 3  # how many offending rows/values a message lists


class DataWarning(UserWarning):
    """A problem in the user's data that was repaired (sorted rows, interpolated gaps, ...)."""


@dataclass
class Series:
    """A validated, regularly indexed multivariate series.

    Attributes:
        timestamps: pd.DatetimeIndex of length T, strictly increasing.
        values: float64 array (T, C) of the target columns, finite (gaps interpolated).
        columns: the C target column names.
        freq: pandas DateOffset of the step (inferred by pandas, else the most common step).
        time_col: name of the time column in the file.
        path: the file it came from (None if built in memory).
    """

    timestamps: pd.DatetimeIndex
    values: np.ndarray
    columns: list[str]
    freq: pd.DateOffset
    time_col: str = "date"
    path: str | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def n_channels(self) -> int:
        """C: number of target columns."""
        return self.values.shape[1]


def _err(what: str, fix: str) -> UserInputError:
    return UserInputError(what, fix)


def _lines(idx: Sequence[int]) -> str:
    idx = list(idx)
    shown = ", ".join(str(i + 2) for i in idx[:_SHOW])
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return f"line{'s' if len(idx) > 1 else ''} {shown}{more}"


def _read_text(path: Path) -> str:
    if not path.exists():
        raise _err(f"file not found: {path}", "check the path (pass --csv PATH to an existing CSV file)")
    if path.is_dir():
        raise _err(f"{path} is a folder, not a CSV file", "pass the path of a .csv file inside it")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _err(f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from e
    if not raw.strip():
        raise _err(f"{path} is empty", "pass a CSV with a header line and at least a few rows of data")
    if b"\x00" in raw[:65536]:
        raise _err(f"{path} looks like a binary file, not CSV text (it contains NUL bytes)",
                   "export the data as a plain-text CSV (comma-separated, header on the first line)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheet exports in a legacy 8-bit encoding are common and harmless; binary data is
        # not, and shows up as many control characters once decoded.
        text = raw.decode("latin-1")
        ctrl = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\r\n")
        if ctrl > 0.01 * min(len(text), 65536):
            raise _err(f"{path} looks like a binary file, not CSV text",
                       "export the data as a plain-text UTF-8 CSV") from None
    if not text.strip():
        raise _err(f"{path} is empty", "pass a CSV with a header line and at least a few rows of data")
    return text


def _sniff_delimiter(text: str) -> str:
    head = "\n".join(text.splitlines()[:20])
    try:
        return _csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except _csv.Error:
        return ","


def _check_fields(text: str, sep: str, path: Path) -> None:
    """Header present, and no row longer than it (pandas would silently drop the extra fields)."""
    reader = _csv.reader(io.StringIO(text), delimiter=sep)
    try:
        header = next(reader, [])
        if not any(h.strip() for h in header):
            raise _err(f"the first line of {path} is empty; it should be the header naming the columns",
                       "remove blank lines before the header, e.g. start the file with date,value")
        n = len(header)
        for row in reader:
            if len(row) > n:
                hint = (" If numbers use a decimal comma (1,5), write them with a dot or separate "
                        "the columns with ';'." if sep == "," else "")
                raise _err(f"line {reader.line_num} of {path} has {len(row)} fields but the header has {n}",
                           "give every line the same number of fields as the header." + hint)
    except _csv.Error as e:
        raise _err(f"{path} could not be parsed as CSV (line {reader.line_num}: {e})",
                   "check the quotes and separators on that line") from e


def _read_table(text: str, path: Path) -> pd.DataFrame:
    sep = _sniff_delimiter(text)
    _check_fields(text, sep, path)
    try:
        # Everything as strings: we convert ourselves so that errors can name the line and value.
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                         skip_blank_lines=False, skipinitialspace=True, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, _csv.Error, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _err(f"{path} could not be parsed as CSV ({msg})",
                   "check that every line has the same number of fields as the header and that "
                   "quotes are balanced") from e
    df.columns = [str(c).strip() for c in df.columns]
    df = df.fillna("")  # fields missing from short lines count as empty cells
    # Blank lines (kept so that index i is line i + 2) and all-empty rows carry nothing.
    empty = df.apply(lambda col: col.str.strip().eq("")).all(axis=1) if len(df.columns) else pd.Series([], dtype=bool)
    df = df[~empty]
    if len(df) == 0:
        raise _err(f"{path} has a header but no data rows", "add rows of data below the header line")
    return df


def _is_missing(col: pd.Series) -> pd.Series:
    return col.str.strip().str.lower().isin(_NA_STRINGS)


def _parse_times(col: pd.Series) -> pd.Series:
    """Strings → datetimes (NaT where unparseable). Tries pandas' inferred single format, then
    per-element parsing, and keeps the one that parses more values."""
    vals = col.str.strip()
    best = None
    for kwargs in ({}, {"format": "mixed"}):
        # utc=True only as a fallback: it normalises mixed UTC offsets (e.g. across a DST change),
        # which pandas otherwise refuses, but would needlessly shift naive local times.
        for utc in (False, True):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = pd.to_datetime(vals, errors="coerce", utc=utc, **kwargs)
            except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
                continue
            if pd.api.types.is_datetime64_any_dtype(t):
                break
        else:
            continue
        if best is None or t.notna().sum() > best.notna().sum():
            best = t
        if best.notna().all():
            break
    if best is None:
        best = pd.Series(pd.NaT, index=col.index, dtype="datetime64[us]")
    return best


def _looks_numeric(col: pd.Series) -> bool:
    vals = col[~_is_missing(col)]
    return len(vals) > 0 and pd.to_numeric(vals.str.strip(), errors="coerce").notna().mean() >= 0.5


def _find_time_col(df: pd.DataFrame, time_col: str | None, path: Path) -> str:
    cols = list(df.columns)
    if time_col is not None:
        if time_col in cols:
            return time_col
        close = difflib.get_close_matches(time_col, cols, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise _err(f"time column {time_col!r} not found in {path}{hint}; columns: {', '.join(cols)}",
                   "pass --time-col with one of the columns above")
    for c in cols:
        if c.strip().lower() in TIME_NAMES:
            return c
    for c in cols:
        vals = df[c][~_is_missing(df[c])]
        if len(vals) == 0 or _looks_numeric(df[c]):
            continue
        # A sample decides; per-element date parsing of a long text column would be slow.
        if _parse_times(vals.iloc[:500]).notna().mean() >= TIME_PARSE_FRACTION:
            return c
    raise _err(f"no time column found in {path} (columns: {', '.join(cols)})",
               "name the time column date/time/timestamp/datetime/ds or pass --time-col NAME; "
               "its values should be dates like 2024-01-31 or 2024-01-31 13:00")


def _parse_target_arg(target) -> list[str] | None:
    if target is None:
        return None
    names = target.split(",") if isinstance(target, str) else list(target)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise _err(f"empty target {target!r}", "pass --target COL (or several: --target A,B)")
    return names


def _choose_targets(df: pd.DataFrame, time_col: str, target, path: Path) -> list[str]:
    candidates = [c for c in df.columns if c != time_col]
    if not candidates:
        raise _err(f"{path} has only the time column {time_col!r} and no values to forecast",
                   "add at least one numeric column")
    names = _parse_target_arg(target)
    if names is None:
        if "OT" in candidates:
            return ["OT"]
        numeric = [c for c in candidates if _looks_numeric(df[c])]
        if len(numeric) == 1:
            return numeric
        if not numeric:
            raise _err(f"{path} has no numeric column to forecast (columns: {', '.join(candidates)})",
                       "add a column of numbers, or fix its values so that they parse as numbers")
        raise _err(f"{path} has several numeric columns ({', '.join(numeric)}) and no target was given",
                   "pass --target COL (or several, comma-separated: --target A,B)")
    for n in names:
        if n == time_col:
            raise _err(f"target {n!r} is the time column", f"pick a value column: {', '.join(candidates)}")
        if n not in candidates:
            close = difflib.get_close_matches(n, candidates, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise _err(f"target column {n!r} not found in {path}{hint}",
                       f"pass --target with one of: {', '.join(candidates)}")
    if len(set(names)) != len(names):
        raise _err(f"target {target!r} names a column twice", "list each target column once")
    return names


def _to_numeric(df: pd.DataFrame, names: list[str], path: Path) -> np.ndarray:
    out = np.empty((len(df), len(names)), dtype=np.float64)
    for j, n in enumerate(names):
        col = df[n]
        missing = _is_missing(col)
        vals = pd.to_numeric(col.where(~missing, None).str.strip(), errors="coerce")
        bad = vals.isna() & ~missing
        if bad.any():
            idx = [i for i in df.index[bad.to_numpy()]]
            shown = ", ".join(f"{col.loc[i]!r}" for i in idx[:_SHOW])
            raise _err(f"column {n!r} has non-numeric value(s) {shown} at {_lines(idx)} of {path}",
                       "fix or remove those values (leave a cell empty for a missing value)")
        arr = vals.to_numpy(dtype=np.float64, na_value=np.nan)
        inf = np.isinf(arr)
        if inf.any():
            idx = list(df.index[inf])
            raise _err(f"column {n!r} has infinite value(s) at {_lines(idx)} of {path}",
                       "replace them with real numbers or leave the cells empty")
        out[:, j] = arr
    return out


def _regularize(ts: pd.DatetimeIndex, values: np.ndarray, path: Path
                ) -> tuple[pd.DatetimeIndex, np.ndarray, pd.DateOffset]:
    """Infer the step of sorted, unique ``ts``. A pandas frequency is used when there is one;
    else the most common step: rows missing from that grid are inserted as missing values
    (filled or refused later by the NaN rule), and off-grid timestamps are kept with a warning."""
    if len(ts) < 2:
        raise _err(f"{path} has a single timestamp; no time step can be inferred",
                   "pass a series with at least two (and, for training, many more) rows")
    if len(ts) >= 3:
        try:
            f = pd.infer_freq(ts)
        except (TypeError, ValueError):
            f = None
        if f is not None:
            return ts, values, to_offset(f)
    steps = pd.Series(np.diff(ts.asi8))
    counts = steps.value_counts()
    step, n_common = int(counts.index[0]), int(counts.iloc[0])
    if n_common == 1 and len(steps) >= 3:
        raise _err(f"{path}: the timestamps are irregular — no two consecutive intervals are equal, "
                   "so no time step can be inferred",
                   "resample the series to a regular step first (e.g. hourly with pandas' resample().mean())")
    delta = pd.Timedelta(step, unit=ts.unit)
    try:
        offset = to_offset(delta)
    except (OverflowError, ValueError):  # pandas' ticks count nanoseconds: about 292 years at most
        raise _err(f"{path}: the time step {delta} between rows is too long to be a pandas frequency "
                   "(about 292 years at most)", "check the timestamp column for wrong years or units") from None
    n_other = len(steps) - n_common
    if n_other:
        rel = ts.asi8 - ts.asi8[0]
        n_grid = int(rel[-1] // step) + 1
        # Only fill in when every row sits on the grid and the gaps are a minority of it.
        if np.all(rel % step == 0) and n_grid <= 2 * len(ts):
            grid = np.full((n_grid, values.shape[1]), np.nan)
            grid[rel // step] = values
            warnings.warn(f"{path}: {n_grid - len(ts)} timestamp(s) missing from the regular {delta} "
                          "grid; inserted as missing values", DataWarning, stacklevel=3)
            full = pd.DatetimeIndex(ts[0] + np.arange(n_grid) * delta, name=ts.name)
            return full, grid, offset
        warnings.warn(
            f"{path}: irregular timestamps — {n_other} of {len(steps)} intervals differ from the most "
            f"common step {delta}; treating the series as regular with step {delta}",
            DataWarning, stacklevel=3)
    return ts, values, offset


def _fill_gaps(values: np.ndarray, names: list[str], path: Path) -> np.ndarray:
    for j, n in enumerate(names):
        nan = np.isnan(values[:, j])
        k = int(nan.sum())
        if k == 0:
            continue
        frac = k / len(nan)
        if frac > MAX_NAN_FRACTION or k == len(nan):
            raise _err(f"column {n!r} of {path} has {k} missing values of {len(nan)} ({frac:.1%}), "
                       f"more than the {MAX_NAN_FRACTION:.0%} we fill automatically",
                       "fill or drop the missing values yourself, or choose another --target")
        # Linear interpolation between neighbours; the edges take the nearest observed value.
        good = ~nan
        values[:, j] = np.interp(np.arange(len(nan)), np.flatnonzero(good), values[good, j])
        warnings.warn(f"{path}: column {n!r} had {k} missing value(s) ({frac:.1%}); filled by linear "
                      "interpolation", DataWarning, stacklevel=3)
    return values


def load_series(path: str | Path, target: str | Sequence[str] | None = None,
                time_col: str | None = None) -> Series:
    """Read and validate a CSV time series.

    Args:
        path: CSV file (comma, semicolon, tab or ``|`` separated; header on the first line).
        target: a column name, a comma-separated list or a list of names; None: ``OT`` if present,
            else the only numeric column.
        time_col: the time column; None: the column named date/time/timestamp/datetime/ds
            (case-insensitive), else the first column whose values mostly parse as datetimes.

    Returns:
        :class:`Series` with values (T, C) float64 of the target columns.

    Raises:
        UserInputError: for every problem, naming the line/value and the fix.

    Repairs, each with a DataWarning: rows out of order are sorted; without a pandas frequency the
    most common step is used and rows missing from its grid are inserted as missing values;
    missing values (at most 5% per column) are linearly interpolated.
    """
    path = Path(path)
    text = _read_text(path)
    df = _read_table(text, path)
    tcol = _find_time_col(df, time_col, path)
    if (any(ch.isdigit() for ch in tcol) and len(df.columns) > 1
            and _parse_times(pd.Series([tcol], dtype=str)).notna().all()):
        raise _err(f"{path} seems to have no header line: its first line starts with {tcol!r}, a timestamp",
                   "add a header line naming the columns, e.g. date,value")
    names = _choose_targets(df, tcol, target, path)

    raw_t = df[tcol].astype(str)
    empty_t = _is_missing(raw_t)
    if empty_t.any():
        raise _err(f"empty timestamp at {_lines(df.index[empty_t.to_numpy()])} of {path}",
                   "fill in the time of those rows or delete them")
    times = _parse_times(raw_t)
    bad = times.isna().to_numpy()
    if bad.any():
        idx = list(df.index[bad])
        shown = ", ".join(f"{raw_t.loc[i]!r}" for i in idx[:_SHOW])
        fix = "write times as ISO dates like 2024-01-31 or 2024-01-31 13:00:00, one format for all rows"
        if pd.to_numeric(raw_t.loc[idx].str.strip(), errors="coerce").notna().all():
            fix = ("these are plain numbers; convert them to dates first (for Unix seconds: "
                   "pd.to_datetime(x, unit='s')), or " + fix)
        raise _err(f"unparseable timestamp(s) {shown} in column {tcol!r} at {_lines(idx)} of {path}", fix)
    ts = pd.DatetimeIndex(times)

    dup = ts.duplicated(keep=False)
    if dup.any():
        idx = list(df.index[dup])
        first = ts[dup][0]
        raise _err(f"duplicate timestamps in {path}: {first} appears more than once "
                   f"({int(dup.sum())} rows involved, {_lines(idx)})",
                   "keep one row per timestamp (e.g. average them with df.groupby(time).mean())")

    values = _to_numeric(df, names, path)
    order = None
    if not ts.is_monotonic_increasing:
        order = np.argsort(ts.asi8, kind="stable")
        warnings.warn(f"{path}: rows are not in time order; sorting them by {tcol!r}", DataWarning, stacklevel=2)
        ts, values = ts[order], values[order]
    ts, values, freq = _regularize(ts, values, path)
    values = _fill_gaps(values, names, path)
    return Series(timestamps=ts, values=values, columns=names, freq=freq, time_col=tcol, path=str(path))


def check_length(series: Series, lookback: int, horizon: int) -> None:
    """Raise UserInputError unless ``series`` has at least ``lookback + horizon`` rows and both
    are positive integers."""
    _check_positive(lookback=lookback, horizon=horizon)
    need = lookback + horizon
    if len(series) < need:
        raise _err(f"the series has {len(series)} rows, too short for lookback {lookback} + horizon "
                   f"{horizon}: at least {need} rows are needed",
                   f"use a smaller --lookback/--horizon (lookback + horizon <= {len(series)}) or a longer series")


def _check_positive(**kwargs) -> None:
    for name, v in kwargs.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise _err(f"{name} must be a positive integer, got {v!r}", f"pass --{name} N with N >= 1")


def future_index(series: Series, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after the series' last one, spaced by its ``freq``."""
    _check_positive(horizon=horizon)
    last = series.timestamps[-1]
    try:
        return pd.date_range(start=last + series.freq, periods=horizon, freq=series.freq)
    except (OverflowError, pd.errors.OutOfBoundsDatetime, ValueError) as e:
        raise _err(f"cannot continue the timestamps {horizon} steps of {series.freq} after {last} ({e})",
                   "check the time column: the dates or their spacing look wrong") from e


def split_sizes(n_rows: int, horizon: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) rows of CSVDataModule's chronological split: val and test take
    round(fraction * n_rows) rows each, but at least ``horizon`` (one window) when present;
    n_train may come out too small (< lookback + horizon), which CSVDataModule reports."""
    n_test = max(int(round(n_rows * test_fraction)), horizon) if test_fraction > 0 else 0
    n_val = max(int(round(n_rows * val_fraction)), horizon) if val_fraction > 0 else 0
    return n_rows - n_val - n_test, n_val, n_test


class CSVDataModule(ForecastingDataModule):
    """Forecasting windows over a CSV series with a chronological train/val/test split.

    Args:
        path: CSV file, or an already loaded :class:`Series` (also accepted as ``series=``).
        target, time_col: as in :func:`load_series` (ignored when a Series is given).
        lookback, horizon: input length L and forecast length H.
        val_fraction: share of rows whose targets form the validation split (the end of the
            history before the test rows; at least ``horizon`` rows).
        test_fraction: share of rows at the end for testing; 0 for pure forecasting (then
            ``test_dataloader`` raises).
        batch_size, num_workers, scale: as in :class:`datamodules.ett.ETTDataModule`.

    Rows: train [0, n_train), val targets in [n_train, n_train + n_val), test targets in the rest;
    val/test inputs may reach ``lookback`` rows back into the previous split. All target columns
    are inputs and outputs: batches (x, y) float32, x (B, L, C), y (B, H, C), scaled with
    train-only statistics. ``last_window()`` is the final (1, L, C) input for forecasting beyond
    the data, ``future_index()`` its H timestamps, ``series`` the data in original units.
    """

    def __init__(
        self,
        path: str | Path | Series | None = None,
        target: str | Sequence[str] | None = None,
        time_col: str | None = None,
        lookback: int = 336,
        horizon: int = 96,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        batch_size: int = 32,
        num_workers: int = 0,
        scale: bool = True,
        series: Series | None = None,
    ):
        if isinstance(path, Series):
            path, series = None, path
        if (path is None) == (series is None):
            raise _err("CSVDataModule needs exactly one of path= or series=", "pass the CSV path (--csv FILE)")
        _check_positive(lookback=lookback, horizon=horizon, batch_size=batch_size)
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not (0 <= f < 1):
                raise _err(f"{name} must be in [0, 1), got {f!r}", f"pass a {name} such as 0.2")
        if val_fraction <= 0:
            raise _err("val_fraction must be > 0 (validation drives early stopping and calibration)",
                       "pass val_fraction such as 0.2")
        if val_fraction + test_fraction >= 1:
            raise _err(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training rows",
                       "make their sum well below 1, e.g. 0.2 and 0.2")
        super().__init__(lookback, horizon, batch_size, num_workers, scale)
        self.save_hyperparameters(ignore=["series"])
        self.series = series if series is not None else load_series(path, target, time_col)
        check_length(self.series, lookback, horizon)

        t = len(self.series)
        n_train, n_val, n_test = self._split_sizes(t)
        if n_train < lookback + horizon:
            need = next(m for m in range(t + 1, 100 * t + 10 * (lookback + horizon))
                        if self._split_sizes(m)[0] >= lookback + horizon)
            raise _err(
                f"the series has {t} rows: after {n_val} validation and {n_test} test rows, {max(n_train, 0)} "
                f"training rows remain, fewer than lookback {lookback} + horizon {horizon}; with these "
                f"fractions at least {need} rows are needed",
                "use a smaller --lookback/--horizon, smaller val/test fractions, or a longer series")
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        c = self.series.n_channels
        val_end = n_train + n_val
        self._build(self.series.values, range(c), range(c), n_train, {
            "train": (0, n_train),
            "val": (n_train - lookback, val_end),
            "test": (val_end - lookback, t) if n_test else None,
        })

    def _split_sizes(self, t: int) -> tuple[int, int, int]:
        return split_sizes(t, self.horizon, self.hparams.val_fraction, self.hparams.test_fraction)

    @property
    def columns(self) -> list[str]:
        """Names of the C target columns."""
        return self.series.columns

    def last_window(self) -> torch.Tensor:
        """The final ``lookback`` rows of the series, scaled: float32 (1, lookback, C)."""
        return torch.from_numpy(self.scaled[-self.lookback:][None, :, self.input_cols].copy())

    def future_index(self, horizon: int | None = None) -> pd.DatetimeIndex:
        """Timestamps of the ``horizon`` (default: this module's) steps after the data."""
        return future_index(self.series, self.horizon if horizon is None else horizon)
