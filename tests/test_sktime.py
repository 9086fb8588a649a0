"""SpaceTimeForecaster (tsmodels/sktime.py): fit/predict on real ETTh1 rows, the horizon and
in-sample errors, multivariate + PeriodIndex, update, and sktime's own estimator checks (a fast
subset always; the full suite, about a minute, under -m slow)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from apps.forecast import bundled_sample
from tsmodels.errors import UserInputError
from tsmodels.sktime import InSampleForecastError, SpaceTimeForecaster

TINY = dict(max_epochs=1, batches_per_epoch=5, d_model=4, state_dim=4, n_encoder_layers=1)

# sktime warns on every construction that its remember_data default will change; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:The default of config")


@pytest.fixture(scope="module")
def etth1() -> pd.DataFrame:
    """The first 600 hourly rows of the bundled ETTh1 excerpt (real data), DatetimeIndex freq h."""
    df = pd.read_csv(bundled_sample(), parse_dates=["date"]).set_index("date").iloc[:600]
    return df.asfreq("h")


@pytest.fixture(scope="module")
def fitted(etth1) -> SpaceTimeForecaster:
    return SpaceTimeForecaster(lookback=48, **TINY).fit(etth1["OT"], fh=np.arange(1, 13))


def test_predict_index_length_finite(fitted, etth1):
    y = etth1["OT"]
    pred = fitted.predict(fh=np.arange(1, 13))
    assert isinstance(pred, pd.Series) and pred.name == "OT"
    assert len(pred) == 12
    pd.testing.assert_index_equal(pred.index, pd.date_range(y.index[-1], periods=13, freq="h")[1:], check_names=False)
    assert np.isfinite(pred.to_numpy()).all()
    # Original units: the forecast lies in the range of the series, not around 0.
    assert y.min() - 3 * y.std() < pred.mean() < y.max() + 3 * y.std()
    assert fitted.lookback_ == 48 and fitted.horizon_ == 12 and fitted.n_epochs_ >= 1
    # A sub-horizon is the same forecast, picked by step.
    part = fitted.predict(fh=[3, 7])
    np.testing.assert_allclose(part.to_numpy(), pred.to_numpy()[[2, 6]])


def test_same_seed_same_forecast(fitted, etth1):
    again = SpaceTimeForecaster(lookback=48, **TINY).fit(etth1["OT"], fh=np.arange(1, 13))
    fh = np.arange(1, 13)  # explicit: predict(fh=...) elsewhere replaces the fh stored by fit
    pd.testing.assert_series_equal(again.predict(fh), fitted.predict(fh))


def test_in_sample_and_beyond_horizon_errors(fitted):
    with pytest.raises(InSampleForecastError, match="in-sample.*future steps") as e:
        fitted.predict(fh=[-2, 1])
    assert isinstance(e.value, UserInputError) and isinstance(e.value, NotImplementedError)
    with pytest.raises(UserInputError, match=r"13 steps ahead.*horizon=13"):
        fitted.predict(fh=[1, 13])


def test_fit_errors_name_the_parameters(etth1):
    y = etth1["OT"].iloc[:40]
    with pytest.raises(UserInputError, match="lookback="):
        SpaceTimeForecaster(lookback=64, **TINY).fit(y, fh=[1, 2])
    with pytest.raises(UserInputError, match="horizon="):
        SpaceTimeForecaster(horizon=3, **TINY).fit(y, fh=[1, 5])


def test_multivariate_period_index_and_default_horizon(etth1):
    y = etth1[["HUFL", "OT"]].iloc[:300].copy()
    y.index = pd.period_range("2016-07-01 00:00", periods=len(y), freq="h")
    f = SpaceTimeForecaster(**TINY).fit(y)  # no fh: horizon min(24, rows // 10), lookback by default
    assert f.horizon_ == 24 and f.lookback_ >= 1
    pred = f.predict(fh=[1, 2, 24])
    assert list(pred.columns) == ["HUFL", "OT"]
    assert list(pred.index) == [y.index[-1] + k for k in (1, 2, 24)]
    assert np.isfinite(pred.to_numpy()).all()


def test_update_moves_the_forecast_origin(etth1):
    y = pd.Series(etth1["OT"].to_numpy()[:400])  # RangeIndex
    f = SpaceTimeForecaster(lookback=32, **TINY).fit(y.iloc[:380], fh=[1, 2, 3])
    before = f.predict()
    f.update(y.iloc[380:], update_params=False)
    after = f.predict()
    assert list(before.index) == [380, 381, 382] and list(after.index) == [400, 401, 402]
    assert not np.allclose(before.to_numpy(), after.to_numpy())  # the window moved with the data


# A fast, representative subset of sktime's suite: index/fh handling for every index type,
# in-sample refusal, fh contracts, remembered data, determinism, pickling, side effects, tags.
SKTIME_SUBSET = [
    "test_predict_time_index", "test_predict_time_index_in_sample_full", "test_fh_attribute",
    "test_fh_not_passed_error_handling", "test__y_remember_data",
    "test_fit_idempotent", "test_persistence_via_pickle", "test_methods_have_no_side_effects",
    "test_random_tags", "test_valid_object_class_tags", "test_class_has_doctest_example",
    "test_predict_series_name_preserved",
]


def _check(tests_to_run=None):
    from sktime.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(SpaceTimeForecaster, raise_exceptions=False, verbose=False,
                                  tests_to_run=tests_to_run)
    failed = {k: v for k, v in results.items() if v != "PASSED"}
    assert results and not failed, failed
    return results


def test_sktime_check_estimator_subset():
    results = _check(SKTIME_SUBSET)
    assert {k.split("[")[0] for k in results} == set(SKTIME_SUBSET)


@pytest.mark.slow
def test_sktime_check_estimator_full():
    """All of sktime's checks (690 cases, about a minute on one CPU thread)."""
    _check()
