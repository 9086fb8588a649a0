"""load_series validation (every error case), future_index, check_length and CSVDataModule."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datamodules._paths import data_root
from datamodules.csv import (CSVDataModule, DataWarning, Series, check_length, future_index,
                             load_series, split_sizes)
from tsmodels.errors import UserInputError

SAMPLE = Path(__file__).resolve().parents[2] / "tsmodels" / "assets" / "etth1_sample.csv"
ETTH1 = data_root() / "ett" / "ETTh1.csv"


def write(tmp_path: Path, text: str | bytes, name: str = "s.csv") -> Path:
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def hourly(n: int, start: str = "2024-01-01", **cols) -> str:
    t = pd.date_range(start, periods=n, freq="h")
    df = pd.DataFrame({"date": t.strftime("%Y-%m-%d %H:%M:%S"), **cols})
    return df.to_csv(index=False)


# ---------------------------------------------------------------- the bundled sample and ETT

def test_bundled_sample_is_an_unchanged_excerpt_of_etth1():
    sample = SAMPLE.read_bytes()
    assert sample.count(b"\n") == 3001
    if not ETTH1.is_file():
        pytest.skip(f"ETTh1.csv not found under {ETTH1.parent} (set TSMODELS_DATA)")
    assert ETTH1.read_bytes().startswith(sample)


def test_load_bundled_sample():
    s = load_series(SAMPLE)
    assert s.columns == ["OT"] and s.values.shape == (3000, 1) and s.time_col == "date"
    assert s.freq == pd.tseries.frequencies.to_offset("h")
    assert s.timestamps[0] == pd.Timestamp("2016-07-01 00:00") and s.timestamps[-1] == pd.Timestamp("2016-11-02 23:00")
    assert s.values[0, 0] == pytest.approx(30.5310001373291)


def test_multiple_targets_comma_separated():
    s = load_series(SAMPLE, target="HUFL, OT")
    assert s.columns == ["HUFL", "OT"] and s.values.shape == (3000, 2)
    assert load_series(SAMPLE, target=["LULL"]).columns == ["LULL"]


# ---------------------------------------------------------------- file-level errors

def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="file not found.*--csv"):
        load_series(tmp_path / "nope.csv")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(UserInputError, match="is a folder"):
        load_series(tmp_path)


@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_empty_file(tmp_path, text):
    with pytest.raises(UserInputError, match="is empty"):
        load_series(write(tmp_path, text))


def test_binary_file(tmp_path):
    with pytest.raises(UserInputError, match="binary"):
        load_series(write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10))
    rng = np.random.default_rng(0)
    noise = bytes(b for b in rng.integers(1, 256, 4000, dtype=np.uint8).tolist())
    with pytest.raises(UserInputError, match="binary"):
        load_series(write(tmp_path, noise, "noise.csv"))


def test_latin1_text_is_read(tmp_path):
    text = "date,temp\u00e9rature\n" + "".join(f"2024-01-0{d},{d}.5\n" for d in range(1, 8))
    s = load_series(write(tmp_path, text.encode("latin-1")))
    assert s.columns == ["temp\u00e9rature"] and s.values[:, 0].tolist() == [d + 0.5 for d in range(1, 8)]


def test_header_only(tmp_path):
    with pytest.raises(UserInputError, match="no data rows"):
        load_series(write(tmp_path, "date,value\n\n"))


def test_unparseable_csv(tmp_path):
    text = "date,value\n2024-01-01,1\n2024-01-02,2,3,4\n2024-01-03,3\n"
    with pytest.raises(UserInputError, match="line 3 .* has 4 fields but the header has 2.*decimal comma"):
        load_series(write(tmp_path, text))
    with pytest.raises(UserInputError, match="first line .* is empty"):
        load_series(write(tmp_path, "\n" + text, "blank.csv"))
    with pytest.raises(UserInputError, match="could not be parsed as CSV"):
        load_series(write(tmp_path, 'date,value\n2024-01-01,"1\n2024-01-02,2\n', "q.csv"))


def test_semicolon_separated(tmp_path):
    text = "Datum;Wert\n" + "".join(f"2024-03-{d:02d};{d}\n" for d in range(1, 11))
    s = load_series(write(tmp_path, text), time_col="Datum")
    assert s.columns == ["Wert"] and len(s) == 10 and s.freq == pd.tseries.frequencies.to_offset("D")


def test_no_header_line(tmp_path):
    text = "".join(f"2024-01-01 {h:02d}:00:00,{h}\n" for h in range(10))
    with pytest.raises(UserInputError, match="no header line.*add a header"):
        load_series(write(tmp_path, text))


# ---------------------------------------------------------------- the time column

def test_time_column_detected_by_name(tmp_path):
    text = "value,TimeStamp\n" + "".join(f"{v},2024-01-01 {v:02d}:00\n" for v in range(12))
    s = load_series(write(tmp_path, text))
    assert s.time_col == "TimeStamp" and s.columns == ["value"]


def test_time_column_detected_by_content(tmp_path):
    text = "sensor,when,reading\n" + "".join(f"a{v},2024-02-{v + 1:02d},{v * 1.5}\n" for v in range(12))
    s = load_series(write(tmp_path, text))
    assert s.time_col == "when" and s.columns == ["reading"]
    assert s.freq == pd.tseries.frequencies.to_offset("D")


def test_time_col_override(tmp_path):
    text = "date,obs_time,y\n" + "".join(f"x,2024-01-01 {h:02d}:30,{h}\n" for h in range(12))
    s = load_series(write(tmp_path, text), time_col="obs_time")
    assert s.time_col == "obs_time" and s.timestamps[0] == pd.Timestamp("2024-01-01 00:30")
    with pytest.raises(UserInputError, match="time column 'obs_tim' not found.*did you mean obs_time"):
        load_series(write(tmp_path, text), time_col="obs_tim")


def test_no_time_column(tmp_path):
    text = "a,b\n1,2\n3,4\n5,6\n"
    with pytest.raises(UserInputError, match="no time column found.*columns: a, b.*--time-col"):
        load_series(write(tmp_path, text))


def test_unparseable_timestamp_names_the_line(tmp_path):
    text = hourly(6, value=range(6)).replace("2024-01-01 03:00:00", "yesterday-ish")
    with pytest.raises(UserInputError, match=r"unparseable timestamp.*'yesterday-ish'.*line 5\b"):
        load_series(write(tmp_path, text))


def test_mixed_utc_offsets_across_dst(tmp_path):
    text = "date,y\n2024-03-31T00:00+01:00,1\n2024-03-31T01:00+01:00,2\n2024-03-31T03:00+02:00,3\n"
    s = load_series(write(tmp_path, text))
    assert str(s.timestamps.tz) == "UTC" and s.freq == pd.tseries.frequencies.to_offset("h")
    assert s.timestamps[-1] == pd.Timestamp("2024-03-31 01:00", tz="UTC")


def test_numeric_timestamps_get_a_conversion_hint(tmp_path):
    with pytest.raises(UserInputError, match="plain numbers.*unit='s'"):
        load_series(write(tmp_path, "date,y\n1700000000,1\n1700003600,2\n"))


def test_empty_timestamp(tmp_path):
    text = hourly(6, value=range(6)).replace("2024-01-01 02:00:00", "")
    with pytest.raises(UserInputError, match=r"empty timestamp at line 4\b"):
        load_series(write(tmp_path, text))


def test_duplicate_timestamps(tmp_path):
    text = hourly(6, value=range(6)).replace("2024-01-01 04:00:00", "2024-01-01 02:00:00")
    with pytest.raises(UserInputError, match=r"duplicate timestamps.*2024-01-01 02:00:00.*lines 4, 6"):
        load_series(write(tmp_path, text))


def test_unsorted_timestamps_are_sorted_with_warning(tmp_path):
    lines = hourly(8, value=range(8)).splitlines()
    text = "\n".join([lines[0]] + lines[1:][::-1]) + "\n"
    with pytest.warns(DataWarning, match="not in time order"):
        s = load_series(write(tmp_path, text))
    assert s.timestamps.is_monotonic_increasing
    assert s.values[:, 0].tolist() == list(range(8))


def test_irregular_steps_use_the_most_common_with_warning(tmp_path):
    t = list(pd.date_range("2024-01-01", periods=10, freq="h")) + [pd.Timestamp("2024-01-01 10:20")]
    text = "date,v\n" + "".join(f"{x},{i}\n" for i, x in enumerate(t))
    with pytest.warns(DataWarning, match="irregular.*1 of 10 intervals.*0 days 01:00:00"):
        s = load_series(write(tmp_path, text))
    assert s.freq == pd.tseries.frequencies.to_offset("h") and len(s) == 11


def test_missing_rows_on_the_grid_are_inserted_and_filled(tmp_path):
    t = pd.date_range("2024-01-01", periods=40, freq="15min").delete(17)
    text = "date,v\n" + "".join(f"{x},{2 * i}\n" for i, x in zip(range(40), pd.date_range("2024-01-01", periods=40, freq="15min")) if x in t)
    with pytest.warns(DataWarning) as rec:
        s = load_series(write(tmp_path, text))
    msgs = " | ".join(str(r.message) for r in rec)
    assert "1 timestamp(s) missing from the regular 0 days 00:15:00 grid" in msgs and "interpolation" in msgs
    assert len(s) == 40 and s.timestamps[17] == pd.Timestamp("2024-01-01 04:15")
    assert s.values[17, 0] == pytest.approx(34.0)
    assert s.freq == pd.tseries.frequencies.to_offset("15min")


def test_no_inferable_step(tmp_path):
    t = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00", "2024-01-01 07:00", "2024-01-01 15:00"]
    text = "date,v\n" + "".join(f"{x},{i}\n" for i, x in enumerate(t))
    with pytest.raises(UserInputError, match="no two consecutive intervals are equal.*resample"):
        load_series(write(tmp_path, text))
    with pytest.raises(UserInputError, match="single timestamp"):
        load_series(write(tmp_path, "date,v\n2024-01-01,1\n", "one.csv"))


# ---------------------------------------------------------------- targets and values

def test_target_absent_lists_columns(tmp_path):
    p = write(tmp_path, hourly(5, load=range(5), temp=range(5)))
    with pytest.raises(UserInputError, match=r"'tmp' not found.*did you mean temp.*one of: load, temp"):
        load_series(p, target="tmp")
    with pytest.raises(UserInputError, match="is the time column"):
        load_series(p, target="date")


def test_target_default(tmp_path):
    s = load_series(write(tmp_path, hourly(5, name=list("abcde"), y=range(5))))
    assert s.columns == ["y"]
    with pytest.raises(UserInputError, match=r"several numeric columns \(a, b\).*--target"):
        load_series(write(tmp_path, hourly(5, a=range(5), b=range(5)), "two.csv"))
    with pytest.raises(UserInputError, match="no numeric column"):
        load_series(write(tmp_path, hourly(5, name=list("abcde")), "none.csv"))


def test_non_numeric_target_names_line_and_value(tmp_path):
    text = hourly(6, y=["1.0", "2.5", "3,7", "4", "oops", "6"])
    with pytest.raises(UserInputError, match=r"non-numeric.*'3,7', 'oops' at lines 4, 6"):
        load_series(write(tmp_path, text), target="y")


def test_infinite_value(tmp_path):
    with pytest.raises(UserInputError, match="infinite value.*line 3"):
        load_series(write(tmp_path, hourly(4, y=["1", "inf", "2", "3"])))


def test_few_nans_are_interpolated_with_warning(tmp_path):
    y = [float(i) for i in range(40)]
    y[10], y[0] = np.nan, np.nan
    text = hourly(40, y=y)
    with pytest.warns(DataWarning, match=r"'y' had 2 missing value\(s\) \(5.0%\).*interpolation"):
        s = load_series(write(tmp_path, text))
    assert s.values[10, 0] == pytest.approx(10.0)  # midway between 9 and 11
    assert s.values[0, 0] == pytest.approx(1.0)  # edge: nearest observed value
    assert np.isfinite(s.values).all()


def test_short_lines_count_as_missing_values(tmp_path):
    text = "date,y\n" + "".join(f"2024-01-{d:02d},{d}\n" if d != 9 else f"2024-01-{d:02d}\n" for d in range(1, 31))
    with pytest.warns(DataWarning, match="1 missing value"):
        s = load_series(write(tmp_path, text))
    assert s.values[8, 0] == pytest.approx(9.0)


def test_many_nans_are_an_error(tmp_path):
    y = ["" if i % 5 == 0 else str(i) for i in range(40)]
    with pytest.raises(UserInputError, match=r"8 missing values of 40 \(20.0%\).*fill or drop"):
        load_series(write(tmp_path, hourly(40, y=y)))


# ---------------------------------------------------------------- lengths, horizon, future_index

def test_check_length_and_horizon():
    s = Series(pd.DatetimeIndex(pd.date_range("2024-01-01", periods=50, freq="h")), np.zeros((50, 1)),
               ["y"], pd.tseries.frequencies.to_offset("h"))
    check_length(s, 40, 10)
    with pytest.raises(UserInputError, match=r"50 rows.*at least 51 rows.*smaller --lookback/--horizon"):
        check_length(s, 41, 10)
    for bad in (0, -2, 1.5):
        with pytest.raises(UserInputError, match="horizon must be a positive integer"):
            check_length(s, 10, bad)
        with pytest.raises(UserInputError, match="horizon must be a positive integer"):
            future_index(s, bad)


def test_future_index_hourly():
    s = load_series(SAMPLE)
    f = future_index(s, 3)
    assert list(f) == [pd.Timestamp("2016-11-03 00:00"), pd.Timestamp("2016-11-03 01:00"), pd.Timestamp("2016-11-03 02:00")]


def test_future_index_daily_and_monthly(tmp_path):
    s = load_series(write(tmp_path, "ds,y\n" + "".join(f"2024-02-{d:02d},{d}\n" for d in range(20, 30))))
    assert list(future_index(s, 2)) == [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")]  # leap year
    s = load_series(write(tmp_path, "month,y\n" + "".join(f"2023-{m:02d}-01,{m}\n" for m in range(1, 13)), "m.csv"),
                    time_col="month")
    assert list(future_index(s, 2)) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")]


# ---------------------------------------------------------------- CSVDataModule

def test_csv_datamodule_splits_scaling_and_last_window():
    dm = CSVDataModule(SAMPLE, lookback=96, horizon=24, val_fraction=0.2, test_fraction=0.1, batch_size=8)
    assert (dm.n_train, dm.n_val, dm.n_test) == (2100, 600, 300) == split_sizes(3000, 24, 0.2, 0.1)
    assert split_sizes(200, 96, 0.15, 0.15) == (8, 96, 96)  # val/test keep at least one window
    tr, va, te = dm.train_dataset, dm.val_dataset, dm.test_dataset
    assert len(tr) == 2100 - 96 - 24 + 1 and len(va) == 600 - 24 + 1 and len(te) == 300 - 24 + 1
    assert tr.target_rows(len(tr) - 1)[-1] < 2100
    assert va.target_rows(0)[0] == 2100 and va.target_rows(len(va) - 1)[-1] == 2699
    assert te.target_rows(0)[0] == 2700 and te.target_rows(len(te) - 1)[-1] == 2999
    ot = load_series(SAMPLE).values[:, 0]
    assert dm.mean[0] == pytest.approx(ot[:2100].mean()) and dm.mean[0] != pytest.approx(ot.mean())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 96, 1) and y.shape == (8, 24, 1) and x.dtype == torch.float32
    w = dm.last_window()
    assert w.shape == (1, 96, 1) and w.dtype == torch.float32
    np.testing.assert_allclose(dm.inverse_transform(w)[0, :, 0].numpy(), ot[-96:], rtol=1e-5)
    np.testing.assert_allclose(dm.inverse_transform(dm.transform(ot[:5, None])), ot[:5, None])
    assert dm.future_index()[0] == pd.Timestamp("2016-11-03 00:00") and len(dm.future_index()) == 24


def test_csv_datamodule_forecast_mode_multivariate():
    s = load_series(SAMPLE, target="HUFL,OT")
    dm = CSVDataModule(series=s, lookback=48, horizon=12, test_fraction=0.0)
    assert dm.n_test == 0 and dm.test_dataset is None and dm.n_channels_in == dm.n_channels_out == 2
    assert dm.val_dataset.target_rows(len(dm.val_dataset) - 1)[-1] == 2999  # val ends the history
    with pytest.raises(UserInputError, match="no test split"):
        dm.test_dataloader()
    x, y = dm.val_dataset[0]
    assert x.shape == (48, 2) and y.shape == (12, 2)


def test_csv_datamodule_errors(tmp_path):
    p = write(tmp_path, hourly(100, y=range(100)))
    with pytest.raises(UserInputError, match="horizon must be a positive integer"):
        CSVDataModule(p, lookback=10, horizon=0)
    with pytest.raises(UserInputError, match=r"100 rows.*60 training rows.*at least 146 rows.*smaller --lookback/--horizon"):
        CSVDataModule(p, lookback=80, horizon=8, val_fraction=0.2, test_fraction=0.2)
    # The stated minimum is exact: 146 rows work, 145 do not.
    ok = CSVDataModule(write(tmp_path, hourly(146, y=range(146)), "146.csv"), lookback=80, horizon=8)
    assert len(ok.train_dataset) == 1
    with pytest.raises(UserInputError, match="at least 146 rows"):
        CSVDataModule(write(tmp_path, hourly(145, y=range(145)), "145.csv"), lookback=80, horizon=8)
    with pytest.raises(UserInputError, match="exactly one of"):
        CSVDataModule()
    with pytest.raises(UserInputError, match="leaves no training rows"):
        CSVDataModule(p, lookback=4, horizon=2, val_fraction=0.5, test_fraction=0.5)


# ---------------------------------------------------------------- fuzzing

_alphabet = st.sampled_from(list("0123456789-:., ;\t\"'\nabcdeTZ+/") + ["date", "OT", "2024-01-0", "nan", "inf", "\r\n", ",,"])
_csvish = st.lists(_alphabet, max_size=80).map("".join)


def _structured():
    row = st.tuples(
        st.one_of(st.sampled_from(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-02",
                                   "", "bad", "2024-13-01", "1e5", "2024-01-01T03:00+02:00", "0"]),
                  st.text(max_size=6)),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                  st.sampled_from(["", "NA", "x", "1,5"]), st.text(max_size=4)))
    return st.tuples(st.sampled_from(["date,OT", "time,y", "a,b", "", "ds"]), st.lists(row, max_size=12)).map(
        lambda hr: hr[0] + "\n" + "\n".join(f"{t},{v}" for t, v in hr[1]))


def _tabular():
    """Plausible files: a time column in one of several formats with random steps and gaps, and
    1-3 value columns with occasional junk."""
    fmts = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S%z", "%b %d %Y"]
    value = st.one_of(st.floats(-1e6, 1e6).map(lambda v: f"{v:.4g}"),
                      st.sampled_from(["", "NaN", "n/a", "x", "1e999", "-0"]))
    return st.builds(
        lambda fmt, steps, ncols, vals, tcol: (
            f"{tcol}," + ",".join(f"v{j}" for j in range(ncols)) + "\n" + "".join(
                pd.Timestamp("2020-02-28", tz="UTC" if "%z" in fmt else None).__add__(pd.Timedelta(hours=int(h))).strftime(fmt)
                + "," + ",".join(vals[(i * ncols + j) % len(vals)] for j in range(ncols)) + "\n"
                for i, h in enumerate(np.cumsum(steps)))),
        st.sampled_from(fmts), st.lists(st.sampled_from([0, 1, 1, 1, 24, -3]), min_size=1, max_size=30),
        st.integers(1, 3), st.lists(value, min_size=1, max_size=40), st.sampled_from(["date", "Time", "when"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_csvish, _structured(), _tabular(), st.binary(max_size=60)))
def test_fuzz_load_series_raises_only_user_errors(content):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.csv"
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            try:
                s = load_series(p)
            except UserInputError:
                return
    assert isinstance(s.timestamps, pd.DatetimeIndex) and s.timestamps.is_monotonic_increasing
    assert s.timestamps.is_unique and len(s) >= 2
    assert s.values.dtype == np.float64 and s.values.shape == (len(s), len(s.columns))
    assert np.isfinite(s.values).all()
    assert len(future_index(s, 2)) == 2
