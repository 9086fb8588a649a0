"""`tsm forecast` end to end: output files, intervals, and every bad input → one line, exit 2,
no output file left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.cli import main
from apps.forecast import bundled_sample, conformal_halfwidth

FAST = ["--lookback", "48", "--horizon", "12", "--max-epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    """The first 600 rows of the bundled ETTh1 excerpt (real data)."""
    df = pd.read_csv(bundled_sample()).iloc[:600]
    path = tmp_path_factory.mktemp("data") / "etth1_600.csv"
    df.to_csv(path, index=False)
    return path


def run(args, capsys):
    """Run the CLI; return (exit code, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_forecast_end_to_end(small_csv, tmp_path, capsys):
    out, plot = tmp_path / "f.csv", tmp_path / "f.png"
    code, err = run(["forecast", "--csv", str(small_csv), "--target", "OT", "--out", str(out), "--plot", str(plot),
                     "--level", "0.8", *FAST], capsys)
    assert code == 0, err
    f = pd.read_csv(out, parse_dates=["date"])
    assert list(f.columns) == ["date", "OT", "OT_lower_80", "OT_upper_80"]
    assert len(f) == 12
    last = pd.read_csv(small_csv, parse_dates=["date"])["date"].iloc[-1]
    assert (f["date"] == pd.date_range(last, periods=13, freq="h")[1:]).all()
    assert (f["OT_lower_80"] <= f["OT"]).all() and (f["OT"] <= f["OT_upper_80"]).all()
    assert np.isfinite(f.drop(columns="date").to_numpy()).all()
    assert plot.stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_forecast_multiple_targets(small_csv, tmp_path, capsys):
    out = tmp_path / "m.csv"
    code, err = run(["forecast", "--csv", str(small_csv), "--target", "HUFL,OT", "--out", str(out), "--plot", "",
                     *FAST], capsys)
    assert code == 0, err
    assert {"HUFL", "OT", "HUFL_lower_90", "OT_upper_90"} <= set(pd.read_csv(out).columns)


def test_same_seed_same_forecast(small_csv, tmp_path, capsys):
    outs = []
    for i in range(2):
        out = tmp_path / f"s{i}.csv"
        assert run(["forecast", "--csv", str(small_csv), "--out", str(out), "--plot", "", *FAST], capsys)[0] == 0
        outs.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])


def test_conformal_halfwidth_covers_level():
    rng = np.random.default_rng(0)
    resid = np.abs(rng.standard_normal((999, 3, 2)))
    half = conformal_halfwidth(resid, 0.9)
    assert half.shape == (3, 2)
    assert np.allclose((resid <= half).mean(0), 0.9, atol=0.01)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def _hourly(n: int, values=None) -> str:
    t = pd.date_range("2020-01-01", periods=n, freq="h")
    v = np.sin(np.arange(n) / 5) if values is None else values
    return pd.DataFrame({"date": t, "OT": v}).to_csv(index=False)


BAD_CASES = {
    "missing file": (None, [], "not found"),
    "unreadable csv": (b"\x00\x01\x02\xff\xfe binary", [], ""),
    "no time column": ("a,b\n1,2\n3,4\n5,6\n", [], "time"),
    "unparseable timestamps": ("date,OT\n2020-01-01,1\nyesterday,2\n2020-01-03,3\n", [], "timestamp"),
    "duplicate timestamps": ("date,OT\n2020-01-01,1\n2020-01-01,2\n2020-01-02,3\n", [], "duplicate"),
    # (found by the fuzz test below: a step beyond pandas' nanosecond range crashed inside pandas)
    "time step of centuries": ("date,OT\n2000-01-01 00:00:00,1\n2293-01-01 00:00:00.000001,2\n", [], "too long"),
    "target absent": ("SERIES", ["--target", "nope"], "nope"),
    "non-numeric target": ("date,OT\n2020-01-01,1\n2020-01-02,abc\n2020-01-03,3\n", [], "numeric"),
    "too many NaNs": ("NANS", [], "missing"),
    "series too short": ("SHORT", [], "rows"),
    "horizon zero": ("SERIES", ["--horizon", "0"], "horizon"),
    "horizon negative": ("SERIES", ["--horizon", "-3"], "horizon"),
    "out dir missing": ("SERIES", ["--out", "no/such/dir/f.csv"], "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_exit_2_no_output(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, extra, needle = BAD_CASES[case]
    if text == "SERIES":
        text = _hourly(400)
    elif text == "SHORT":
        text = _hourly(30)
    elif text == "NANS":
        v = np.sin(np.arange(400) / 5)
        v[::3] = np.nan
        text = _hourly(400, v)
    csv = tmp_path / "missing.csv" if text is None else _write(tmp_path, "in.csv", text)
    args = ["forecast", "--csv", str(csv), "--lookback", "48", "--horizon", "12", "--max-epochs", "1", "--quiet"]
    args += extra
    if "--out" not in extra:
        args += ["--out", "f.csv"]
    code, err = run(args + ["--plot", "f.png"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert " — " in lines[0]
    assert needle.lower() in lines[0].lower()
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "f.png").exists()


csv_cells = st.one_of(st.just(""), st.just("nan"), st.text(alphabet="0123456789.-e:T ,x", max_size=12),
                      st.floats(allow_nan=True, allow_infinity=True).map(str),
                      st.datetimes().map(lambda d: d.isoformat(sep=" ")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["date", "OT", "x", "", "time", "OT"]), min_size=1, max_size=4),
       rows=st.lists(st.lists(csv_cells, min_size=1, max_size=4), max_size=40))
def test_malformed_csv_clean_error_or_valid_forecast(header, rows, tmp_path, capsys):
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows)
    csv = _write(tmp_path, "fuzz.csv", text)
    out = tmp_path / "fuzz_out.csv"
    if out.exists():
        out.unlink()
    code, err = run(["forecast", "--csv", str(csv), "--lookback", "4", "--horizon", "2", "--max-epochs", "1",
                     "--quiet", "--out", str(out), "--plot", ""], capsys)
    if code == 0:
        assert len(pd.read_csv(out)) == 2
    else:
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
