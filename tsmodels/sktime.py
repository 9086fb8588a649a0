"""sktime adapter: fit and forecast with SpaceTime like with any sktime forecaster.

    from tsmodels.sktime import SpaceTimeForecaster
    f = SpaceTimeForecaster(lookback=96, max_epochs=5)
    f.fit(y)                       # pd.Series or pd.DataFrame (multivariate), regular index
    f.predict(fh=[1, 2, 3])        # the next steps, indexed like y

Training is `tsm forecast`'s (shared in :mod:`tsmodels.tasks.fitting`): windows and train-only
scaling from :class:`datamodules.csv.CSVDataModule`, the last ``val_fraction`` of the rows for
early stopping (no hold-out: evaluating is the caller's business in sktime), best-validation
weights kept. The forecast is one pass of the model over the last ``lookback`` observed rows.
Only out-of-sample steps 1..horizon can be predicted; the horizon is fixed at fit time.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from sktime.forecasting.base import BaseForecaster

from datamodules.csv import CSVDataModule, Series, split_sizes
from tsmodels.errors import UserInputError
from tsmodels.tasks import fitting

DEFAULT_HORIZON = 24


class InSampleForecastError(UserInputError, NotImplementedError):
    """In-sample forecast requested. A NotImplementedError too, as sktime's contract expects for
    forecasters without in-sample capability."""


class SpaceTimeForecaster(BaseForecaster):
    """SpaceTime (Zhang et al. 2023) as an sktime forecaster.

    Args:
        lookback: input window L; None: ``tsmodels.tasks.fitting.default_lookback`` of the
            training rows (max(horizon, 96), capped at 336 and at what the series allows).
        horizon: largest step the model is trained for (and can predict); None: the largest
            step of ``fh`` passed to ``fit``, else min(24, max(1, rows // 10)).
        max_epochs: training epochs of ``batches_per_epoch`` random batches (None: full passes).
        val_fraction: share of the rows at the end kept for early stopping and model selection.
        patience: epochs without validation improvement before stopping.
        batch_size, lr, weight_decay: optimisation (AdamW with cosine decay).
        d_model, state_dim, n_encoder_layers, dropout: SpaceTime size (see SpaceTimeConfig).
        random_state: seed of weights and batch order; equal inputs give equal forecasts.
        n_threads: torch intra-op threads during fit/predict (restored after); 1 avoids the
            oversubscription that makes small CPU FFTs very slow.
        progress: show Lightning's progress bar.

    y: pd.Series or pd.DataFrame (every column is input and target), no missing values, any
    regular index (DatetimeIndex, PeriodIndex, RangeIndex). Exogenous X is ignored.
    Fitted attributes: ``model_`` (SpaceTime nn.Module, eval mode), ``scaler_`` (train-row
    StandardScaler), ``lookback_``, ``horizon_``, ``n_epochs_``, ``best_val_loss_``.

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from tsmodels.sktime import SpaceTimeForecaster
    >>> y = load_airline()  # 144 monthly values, PeriodIndex
    >>> f = SpaceTimeForecaster(lookback=24, max_epochs=1, d_model=4, state_dim=4)
    >>> f = f.fit(y, fh=[1, 2, 3])
    >>> len(f.predict())
    3
    """

    _tags = {
        "authors": ["tsmodels"],
        "python_dependencies": ["torch", "lightning"],
        "y_inner_mtype": "pd.DataFrame",
        "X_inner_mtype": "pd.DataFrame",
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": False,
        "capability:pred_int:insample": False,
        "capability:missing_values": False,
        "capability:update": True,
        "capability:random_state": True,
        "requires-fh-in-fit": False,
        "X-y-must-have-same-index": True,
        "fit_is_empty": False,
    }

    def __init__(self, lookback=None, horizon=None, max_epochs=10, val_fraction=0.15,
                 batches_per_epoch=fitting.BATCHES_PER_EPOCH, patience=fitting.PATIENCE, batch_size=32,
                 lr=fitting.LR, weight_decay=fitting.WEIGHT_DECAY, d_model=16, state_dim=16, n_encoder_layers=2,
                 dropout=0.0, random_state=0, n_threads=1, progress=False):
        self.lookback = lookback
        self.horizon = horizon
        self.max_epochs = max_epochs
        self.val_fraction = val_fraction
        self.batches_per_epoch = batches_per_epoch
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.d_model = d_model
        self.state_dim = state_dim
        self.n_encoder_layers = n_encoder_layers
        self.dropout = dropout
        self.random_state = random_state
        self.n_threads = n_threads
        self.progress = progress
        super().__init__()

    # -- sktime hooks ---------------------------------------------------------------------------

    def _check_fh(self, fh, pred_int=False):
        # sktime itself refuses in-sample horizons (capability:insample False) with a bare
        # NotImplementedError; re-raise it as ours, which names the fix and is still one.
        try:
            return super()._check_fh(fh, pred_int=pred_int)
        except NotImplementedError as e:
            if "in-sample" not in str(e):
                raise
            raise InSampleForecastError(
                f"SpaceTimeForecaster cannot make in-sample predictions ({e})",
                "pass only future steps, e.g. fh=[1, 2, ..., H] relative to the end of the fitted y, "
                "or fh=ForecastingHorizon(index_after_y, is_relative=False)") from e

    def _fit(self, y: pd.DataFrame, X=None, fh=None):
        """Train on y (T, C); sets the fitted attributes."""
        values = self._values(y)
        horizon = self._fit_horizon(fh, len(values))
        n_train = split_sizes(len(values), horizon, self.val_fraction, 0.0)[0]
        lookback = self.lookback if self.lookback is not None else fitting.default_lookback(n_train, horizon)
        try:
            dm = CSVDataModule(series=_as_series(y, values), lookback=lookback, horizon=horizon,
                               val_fraction=self.val_fraction, test_fraction=0.0, batch_size=self.batch_size)
        except UserInputError as e:
            # CSVDataModule words its fixes for the CLI (--lookback); name the estimator's parameters.
            raise UserInputError(e.what, f"pass a smaller lookback= (now {lookback}) or horizon= (now {horizon}) "
                                         "to SpaceTimeForecaster, a smaller val_fraction=, or a longer series") from e
        with self._quiet_torch():
            task, trainer = fitting.fit_spacetime(
                dm, max_epochs=self.max_epochs, seed=self.random_state, batches_per_epoch=self.batches_per_epoch,
                patience=self.patience, lr=self.lr, weight_decay=self.weight_decay, progress=self.progress,
                d_model=self.d_model, state_dim=self.state_dim, n_encoder_layers=self.n_encoder_layers,
                dropout=self.dropout)
        self.model_ = task.model.eval()
        self.scaler_ = dm.scaler
        self.lookback_, self.horizon_ = lookback, horizon
        self.n_epochs_ = trainer.current_epoch
        best = trainer.checkpoint_callback.best_model_score
        self.best_val_loss_ = None if best is None else float(best)
        self._columns = list(y.columns)
        self._window = values[-lookback:]
        return self

    def _update(self, y: pd.DataFrame, X=None, update_params=True):
        """New observations y (T', C) move the forecast origin; with update_params=True the model
        is refit on all data seen (when sktime remembers it, the default)."""
        self._window = np.concatenate([self._window, self._values(y)])[-self.lookback_:]
        if update_params and self._y is not None:
            y_all = self._y.to_frame() if isinstance(self._y, pd.Series) else self._y
            self._fit(y_all, fh=self._fh)
        return self

    def _predict(self, fh, X=None) -> pd.DataFrame:
        """Forecast the steps of fh (all in 1..horizon_) from the last lookback rows seen."""
        steps = np.asarray(fh.to_relative(self.cutoff).to_numpy(), dtype=np.int64)
        if (steps < 1).any():
            raise InSampleForecastError(f"fh contains in-sample steps {sorted(steps[steps < 1].tolist())}",
                                        "pass only future steps, e.g. fh=[1, 2, ..., H]")
        if steps.max() > self.horizon_:
            raise UserInputError(
                f"fh reaches {int(steps.max())} steps ahead, but the model was fitted for horizon {self.horizon_}",
                f"refit with SpaceTimeForecaster(horizon={int(steps.max())}, ...) or pass this fh to fit()")
        x = torch.from_numpy(self.scaler_.transform(self._window).astype(np.float32))[None]
        with self._quiet_torch(), torch.no_grad():
            y = self.model_(x)[0].numpy()  # (horizon_, C), scaled
        y = self.scaler_.inverse_transform(y)[steps - 1]
        return pd.DataFrame(y, index=fh.to_absolute_index(self.cutoff), columns=self._columns)

    # -- helpers --------------------------------------------------------------------------------

    def _values(self, y: pd.DataFrame) -> np.ndarray:
        values = y.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise UserInputError("y contains NaN or infinite values",
                                 "fill or drop them first, e.g. y.interpolate().ffill().bfill()")
        return values

    def _fit_horizon(self, fh, n_rows: int) -> int:
        need = None if fh is None else int(np.max(fh.to_relative(self.cutoff).to_numpy()))
        if self.horizon is not None:
            if isinstance(self.horizon, bool) or not isinstance(self.horizon, (int, np.integer)) or self.horizon < 1:
                raise UserInputError(f"horizon={self.horizon!r}", "pass a positive integer horizon, or None")
            if need is not None and need > self.horizon:
                raise UserInputError(f"fh reaches {need} steps ahead, beyond horizon={self.horizon}",
                                     f"set horizon={need} (or None to take it from fh)")
            return int(self.horizon)
        return need if need is not None else min(DEFAULT_HORIZON, max(1, n_rows // 10))

    @contextmanager
    def _quiet_torch(self):
        """n_threads torch threads and no Lightning info lines inside; both restored after."""
        threads = torch.get_num_threads()
        loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
        levels = [lg.level for lg in loggers]
        torch.set_num_threads(self.n_threads)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            for lg, lvl in zip(loggers, levels):
                lg.setLevel(lvl)

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Tiny settings for sktime's estimator checks (each fit well under a second)."""
        tiny = {"max_epochs": 1, "batches_per_epoch": 2, "d_model": 4, "state_dim": 4, "n_encoder_layers": 1}
        return [tiny, {**tiny, "lookback": 8, "n_encoder_layers": 0, "batch_size": 8}]


def _as_series(y: pd.DataFrame, values: np.ndarray) -> Series:
    """y as the datamodules' Series. CSVDataModule reads only the values; the timestamps are
    y's own when it has them, else placeholders (sktime maps steps to y's index itself)."""
    idx = y.index
    if isinstance(idx, pd.PeriodIndex):
        idx = idx.to_timestamp()
    if not isinstance(idx, pd.DatetimeIndex):
        idx = pd.date_range("2000-01-01", periods=len(y), freq="D")
    freq = idx.freq if idx.freq is not None else pd.tseries.frequencies.to_offset("D")  # unused by the datamodule
    return Series(timestamps=idx, values=values, columns=[str(c) for c in y.columns], freq=freq, time_col="time")
