"""ETTDataModule: exact Informer splits, no leakage, train-only scaling, shapes, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules._paths import data_root
from datamodules.ett import ETTDataModule, ett_borders
from datamodules.windows import StandardScaler, WindowDataset
from tsmodels.errors import UserInputError

ETT = data_root() / "ett"
ETTH1 = ETT / "ETTh1.csv"
needs_etth1 = pytest.mark.skipif(not ETTH1.is_file(),
                                 reason=f"ETTh1.csv not found under {ETT} (set TSMODELS_DATA to the shared data folder)")

L, H = 336, 96


@pytest.fixture(scope="module")
def raw():
    return pd.read_csv(ETTH1)


@pytest.fixture(scope="module")
def dm_s():
    return ETTDataModule("ETTh1", lookback=L, horizon=H, features="S", batch_size=64)


@pytest.fixture(scope="module")
def dm_m():
    return ETTDataModule("ETTh1", lookback=L, horizon=H, features="M", batch_size=64)


def test_borders():
    assert ett_borders("ETTh1") == (8640, 11520, 14400)
    assert ett_borders("ETTm2") == (34560, 46080, 57600)


@needs_etth1
def test_informer_split_sizes(dm_s):
    # Informer: len = split rows - lookback - horizon + 1, split rows 8640 / 2880 + L / 2880 + L.
    assert len(dm_s.train_dataset) == 8640 - L - H + 1 == 8209
    assert len(dm_s.val_dataset) == 2880 - H + 1 == 2785
    assert len(dm_s.test_dataset) == 2785
    assert (dm_s.train_dataset.start, dm_s.train_dataset.stop) == (0, 8640)
    assert (dm_s.val_dataset.start, dm_s.val_dataset.stop) == (8640 - L, 11520)
    assert (dm_s.test_dataset.start, dm_s.test_dataset.stop) == (11520 - L, 14400)


@needs_etth1
def test_first_and_last_rows_of_each_split(dm_s, raw):
    ot = raw["OT"].to_numpy()
    for ds, first_in, last_target in ((dm_s.train_dataset, 0, 8639),
                                      (dm_s.val_dataset, 8640 - L, 11519),
                                      (dm_s.test_dataset, 11520 - L, 14399)):
        x0, _ = ds[0]
        _, y_last = ds[len(ds) - 1]
        assert ds.input_rows(0)[0] == first_in
        assert ds.target_rows(len(ds) - 1)[-1] == last_target
        # The values themselves, back in original units, are the file's rows.
        np.testing.assert_allclose(dm_s.inverse_transform(x0[0]).numpy(), [ot[first_in]], rtol=1e-5)
        np.testing.assert_allclose(dm_s.inverse_transform(y_last[-1]).numpy(), [ot[last_target]], rtol=1e-5)


@needs_etth1
def test_no_leakage_between_splits(dm_s):
    tr, va, te = dm_s.train_dataset, dm_s.val_dataset, dm_s.test_dataset
    assert tr.target_rows(len(tr) - 1)[-1] < 8640
    assert va.target_rows(0)[0] >= 8640 and va.target_rows(len(va) - 1)[-1] < 11520
    assert te.target_rows(0)[0] >= 11520 and te.target_rows(len(te) - 1)[-1] < 14400
    # Inputs never reach the future: the train inputs stay below 8640 as well.
    assert tr.input_rows(len(tr) - 1)[-1] < 8640


@needs_etth1
def test_scaler_fitted_on_train_rows_only(dm_m, raw):
    cols = dm_m.columns
    train = raw[cols].to_numpy()[:8640]
    everything = raw[cols].to_numpy()
    np.testing.assert_allclose(dm_m.mean, train.mean(0), rtol=1e-10)
    np.testing.assert_allclose(dm_m.std, train.std(0), rtol=1e-10)
    assert not np.allclose(dm_m.mean, everything.mean(0), rtol=1e-3)
    # The scaled training rows have mean 0 / std 1; the test rows do not.
    s = dm_m.scaled.astype(np.float64)
    np.testing.assert_allclose(s[:8640].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s[:8640].std(0), 1, atol=1e-5)


@needs_etth1
@pytest.mark.parametrize("features,cin,cout", [("S", 1, 1), ("M", 7, 7), ("MS", 7, 1)])
def test_batch_shapes(features, cin, cout):
    dm = ETTDataModule("ETTh1", lookback=48, horizon=24, features=features, batch_size=5)
    assert (dm.n_channels_in, dm.n_channels_out) == (cin, cout)
    assert dm.mean.shape == dm.std.shape == (cout,)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.shape == (5, 48, cin) and y.shape == (5, 24, cout)
        assert x.dtype == y.dtype == torch.float32
    assert dm.columns[-1] == "OT"


@needs_etth1
def test_training_batches_have_one_shape_and_evaluation_keeps_every_window():
    dm = ETTDataModule("ETTh1", lookback=48, horizon=24, batch_size=64)
    assert {x.shape[0] for x, _ in dm.train_dataloader()} == {64}  # the ragged last batch is dropped
    assert sum(x.shape[0] for x, _ in dm.val_dataloader()) == len(dm.val_dataset)
    assert sum(x.shape[0] for x, _ in dm.test_dataloader()) == len(dm.test_dataset)


@needs_etth1
def test_ms_target_matches_s(dm_s):
    ms = ETTDataModule("ETTh1", lookback=L, horizon=H, features="MS")
    x_s, y_s = dm_s.test_dataset[7]
    x_ms, y_ms = ms.test_dataset[7]
    torch.testing.assert_close(y_ms, y_s)
    torch.testing.assert_close(x_ms[:, -1:], x_s)


@needs_etth1
def test_inverse_transform_round_trip(dm_m, raw):
    _, y = dm_m.test_dataset[0]
    back = dm_m.inverse_transform(y)
    assert isinstance(back, torch.Tensor) and back.shape == y.shape
    rows = dm_m.test_dataset.target_rows(0)
    np.testing.assert_allclose(back.numpy(), raw[dm_m.columns].to_numpy()[rows.start:rows.stop], rtol=1e-5, atol=1e-5)
    arr = np.random.default_rng(0).normal(size=(3, 4, 7))
    np.testing.assert_allclose(dm_m.transform(dm_m.inverse_transform(arr)), arr, atol=1e-12)
    batch = torch.randn(2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(dm_m.transform(dm_m.inverse_transform(batch)), batch)


@needs_etth1
def test_scale_false_is_identity(raw):
    dm = ETTDataModule("ETTh1", lookback=24, horizon=12, scale=False)
    _, y = dm.train_dataset[0]
    np.testing.assert_allclose(y[:, 0].numpy(), raw["OT"].to_numpy()[24:36], rtol=1e-6)
    np.testing.assert_array_equal(dm.mean, [0.0])
    np.testing.assert_array_equal(dm.std, [1.0])


def test_ettm_missing_file_error(tmp_path):
    with pytest.raises(UserInputError, match=r"ETTm1\.csv.*not shipped.*ETDataset") as e:
        ETTDataModule("ETTm1", root=tmp_path, lookback=96, horizon=24)
    assert str(tmp_path) in str(e.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(UserInputError, match="unknown ETT data set"):
        ETTDataModule("ETTx", root=tmp_path)
    with pytest.raises(UserInputError, match="features"):
        ETTDataModule("ETTh1", root=tmp_path, features="U")
    with pytest.raises(UserInputError, match="horizon must be a positive integer"):
        ETTDataModule("ETTh1", root=tmp_path, horizon=0)
    with pytest.raises(UserInputError, match="lookback must be a positive integer"):
        ETTDataModule("ETTh1", root=tmp_path, lookback=-3)
    with pytest.raises(UserInputError, match="8640 training rows.*smaller --lookback/--horizon"):
        ETTDataModule("ETTh1", root=tmp_path, lookback=8600, horizon=96)
    with pytest.raises(UserInputError, match="horizon 3000 is longer than the 2880-row"):
        ETTDataModule("ETTh1", root=tmp_path, lookback=96, horizon=3000)


def test_truncated_file_error(tmp_path):
    (tmp_path / "ETTh2.csv").write_text("date,OT\n2016-07-01 00:00:00,1.0\n2016-07-01 01:00:00,2.0\n")
    with pytest.raises(UserInputError, match="has 2 rows.*need 14400"):
        ETTDataModule("ETTh2", root=tmp_path, lookback=24, horizon=12)


def test_window_dataset_and_scaler_small():
    data = np.arange(20, dtype=np.float64).reshape(10, 2)
    ds = WindowDataset(data, lookback=3, horizon=2, input_cols=[0, 1], target_cols=[1], start=2, stop=9)
    assert len(ds) == 9 - 2 - 3 - 2 + 1 == 3
    x, y = ds[2]
    np.testing.assert_array_equal(x.numpy(), data[4:7])
    np.testing.assert_array_equal(y.numpy(), data[7:9, 1:])
    with pytest.raises(IndexError):
        ds[3]
    sc = StandardScaler().fit(data[:4])
    np.testing.assert_allclose(sc.mean, data[:4].mean(0))
    const = StandardScaler().fit(np.ones((5, 1)))
    assert const.std[0] == 1.0  # a constant column must not divide by zero
