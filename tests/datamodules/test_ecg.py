"""ECG datamodules: UCR splits (official and stratified), WFDB beats, PTB-XL layout, per-lead
standardization from train only, label encoding, leakage, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules._paths import data_root
from datamodules.ecg import (
    PTBXLDataModule,
    UCRDataModule,
    WFDBBeatsDataModule,
    load_ecg_for_prediction,
    read_wfdb_record,
    stratified_split,
)
from tsmodels.errors import UserInputError

UCR = data_root() / "ecg" / "ucr"
MITDB = data_root() / "ecg" / "mitdb"
needs_ucr = pytest.mark.skipif(not (UCR / "ECG200_TRAIN.txt").is_file(), reason=f"UCR ECG files not found under {UCR} (set TSMODELS_DATA)")
needs_mitdb = pytest.mark.skipif(not (MITDB / "100.hea").is_file(), reason=f"MIT-BIH record 100 not found under {MITDB} (set TSMODELS_DATA)")


def _disjoint_cover(parts, n):
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx), "an index is in two splits"
    assert sorted(allidx.tolist()) == list(range(n))


def test_stratified_split_sizes_and_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    tr, va, te = stratified_split(y, [0.6, 0.2, 0.2], seed=3)
    assert (len(tr), len(va), len(te)) == (60, 20, 20)
    _disjoint_cover([tr, va, te], 100)
    for part, n in ((va, 20), (te, 20)):
        assert np.bincount(y[part], minlength=3).tolist() == [12, 6, 2]
    again = stratified_split(y, [0.6, 0.2, 0.2], seed=3)
    assert all((a == b).all() for a, b in zip(again, (tr, va, te)))
    other = stratified_split(y, [0.6, 0.2, 0.2], seed=4)
    assert not (other[2] == te).all()
    with pytest.raises(UserInputError):
        stratified_split(y, [0.8, 0.3, 0.2])


@needs_ucr
def test_ecg200_official_split_shapes_labels():
    dm = UCRDataModule("ECG200", seed=0, batch_size=16)
    assert dm.sizes == {"train": 80, "val": 20, "test": 100}
    assert dm.split_source == "official test file"
    assert (dm.n_channels_in, dm.n_classes, dm.multilabel, dm.seq_len) == (1, 2, False, 96)
    assert dm.classes == ["-1", "1"]
    # class counts from the README: TRAIN -1: 31, 1: 69; TEST -1: 36, 1: 64
    assert np.bincount(np.concatenate([dm.y_train, dm.y_val])).tolist() == [31, 69]
    assert np.bincount(dm.y_test).tolist() == [36, 64]
    assert set(np.unique(dm.y_val)) == {0, 1}  # stratified: both classes in val
    _disjoint_cover([dm.indices["train"], dm.indices["val"]], 100)
    raw = np.loadtxt(UCR / "ECG200_TRAIN.txt")
    # label -1 is class 0, and x_val rows are the standardized TRAIN rows at the val indices
    assert ((raw[dm.indices["val"], 0] == 1) == (dm.y_val == 1)).all()
    np.testing.assert_allclose(dm.x_val[:, :, 0], ((raw[dm.indices["val"], 1:] - dm.mean[0]) / dm.std[0]), rtol=1e-5, atol=1e-5)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 96, 1) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.long


@needs_ucr
def test_ecg5000_stratified_split():
    dm = UCRDataModule("ECG5000", seed=0)
    assert dm.sizes == {"train": 300, "val": 100, "test": 100}
    assert "stratified" in dm.split_source
    assert dm.classes == ["1", "2", "3", "4", "5"] and dm.n_classes == 5 and dm.seq_len == 140
    _disjoint_cover([dm.indices[k] for k in ("train", "val", "test")], 500)
    # README counts 292/177/10/19/2; val and test hold ~20 % of each class
    for split in ("val", "test"):
        counts = np.bincount(getattr(dm, f"y_{split}"), minlength=5)
        assert abs(counts[0] - 58.4) <= 1 and abs(counts[1] - 35.4) <= 1 and counts[2] == 2 and abs(counts[3] - 3.8) <= 1
    # no series (leakage) appears in two splits
    rows = {k: {r.tobytes() for r in getattr(dm, f"x_{k}")} for k in ("train", "val", "test")}
    assert not (rows["train"] & rows["test"]) and not (rows["train"] & rows["val"]) and not (rows["val"] & rows["test"])


def _write_ucr(folder, name, train, test=None):
    np.savetxt(folder / f"{name}_TRAIN.txt", train)
    if test is not None:
        np.savetxt(folder / f"{name}_TEST.txt", test)


def test_standardization_uses_train_only(tmp_path):
    rng = np.random.default_rng(0)
    train = np.c_[np.repeat([1, 2], 20), 3.0 + 2.0 * rng.standard_normal((40, 12))]
    test = np.c_[np.repeat([1, 2], 5), 1000.0 + rng.standard_normal((10, 12))]
    _write_ucr(tmp_path, "TOY", train, test)
    dm = UCRDataModule("TOY", root=tmp_path, val_fraction=0.25)
    tr_raw = train[dm.indices["train"], 1:]
    np.testing.assert_allclose(dm.mean, [tr_raw.mean()], rtol=1e-12)
    np.testing.assert_allclose(dm.std, [tr_raw.std()], rtol=1e-12)
    assert abs(dm.x_train.mean()) < 1e-5 and abs(dm.x_train.std() - 1) < 1e-4
    assert dm.x_test.mean() > 100  # test data were not used for the statistics
    # the same train rows with a different test file give the same statistics
    _write_ucr(tmp_path, "TOY", train, np.c_[test[:, :1], test[:, 1:] * 0 - 50])
    dm2 = UCRDataModule("TOY", root=tmp_path, val_fraction=0.25)
    np.testing.assert_array_equal(dm.mean, dm2.mean)


def test_ucr_errors(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        UCRDataModule("NOPE", root=tmp_path)
    (tmp_path / "BAD_TRAIN.txt").write_text("1 2 x 4\n2 3 4 5\n")
    with pytest.raises(UserInputError, match="could not read"):
        UCRDataModule("BAD", root=tmp_path)
    _write_ucr(tmp_path, "MIS", np.c_[np.repeat([1, 2], 10), np.zeros((20, 5))], np.c_[[3, 3], np.zeros((2, 5))])
    with pytest.raises(UserInputError, match="only outside"):
        UCRDataModule("MIS", root=tmp_path)


@needs_mitdb
def test_wfdb_beats_record_100():
    dm = WFDBBeatsDataModule(records=["100"], window=256, pre=96, seed=0, batch_size=8)
    # README: N 2239, A 33, V 1 and one non-beat '+'; beats too close to the record edges drop out
    assert dm.classes == ["N", "A", "V"]
    total = sum(dm.sizes.values())
    assert 2270 <= total <= 2273
    assert (dm.n_channels_in, dm.seq_len, dm.n_classes, dm.fs) == (2, 256, 3, 360.0)
    _disjoint_cover([dm.indices[k] for k in ("train", "val", "test")], total)
    assert (dm.y_val == 1).sum() >= 5 and (dm.y_test == 1).sum() >= 5  # stratified: A beats in every split
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 256, 2) and y.dtype == torch.long
    np.testing.assert_allclose(dm.x_train.reshape(-1, 2).mean(0), 0, atol=1e-4)
    aami = WFDBBeatsDataModule(records=["100"], labels="aami")
    assert aami.classes == ["N", "S", "V"]


def test_wfdb_unreadable_record(tmp_path):
    with pytest.raises(UserInputError, match="could not read WFDB record"):
        read_wfdb_record(tmp_path / "missing")
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(UserInputError, match="could not read WFDB record"):
        WFDBBeatsDataModule(records=["bad"], root=tmp_path)


@pytest.fixture
def ptbxl_dir(tmp_path):
    """A tiny PTB-XL-layout folder: 20 two-lead records cut from MIT-BIH record 100."""
    if not (MITDB / "100.hea").is_file():
        pytest.skip(f"MIT-BIH record 100 not found under {MITDB}")
    import wfdb

    sig = wfdb.rdrecord(str(MITDB / "100")).p_signal
    # record i gets codes[i % 5]; the two-superclass records (i % 5 == 2) all fall in train folds 3, 8
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0}", "{'LVH': 100.0, 'IMI': 100.0}", "{'NDT': 100.0}",
             "{'LAFB': 100.0, 'SR': 0.0}"]
    rows = []
    for i in range(20):
        rec_dir = tmp_path / "records100" / "00000"
        rec_dir.mkdir(parents=True, exist_ok=True)
        name = f"{i + 1:05d}_lr"
        wfdb.wrsamp(name, fs=100, units=["mV", "mV"], sig_name=["I", "II"], p_signal=sig[i * 1000 : i * 1000 + 1000],
                    fmt=["16", "16"], write_dir=str(rec_dir))
        rows.append({"ecg_id": i + 1, "patient_id": 100 + i, "scp_codes": codes[i % 5], "strat_fold": i % 10 + 1,
                     "filename_lr": f"records100/00000/{name}", "filename_hr": f"records500/00000/{i + 1:05d}_hr"})
    pd.DataFrame(rows).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    pd.DataFrame({"scp_code": ["NORM", "IMI", "NDT", "LAFB", "LVH", "SR"],
                  "diagnostic": [1.0, 1.0, 1.0, 1.0, 1.0, None],
                  "diagnostic_class": ["NORM", "MI", "STTC", "CD", "HYP", None]}).to_csv(tmp_path / "scp_statements.csv", index=False)
    return tmp_path


def test_ptbxl_multilabel_and_single_label(ptbxl_dir):
    ml = PTBXLDataModule(root=ptbxl_dir, task="superclass_multilabel", batch_size=4)
    assert ml.multilabel and ml.n_classes == 5 and ml.classes == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert ml.sizes == {"train": 16, "val": 2, "test": 2}  # strat_fold 1-8 / 9 / 10
    x, y = next(iter(ml.train_dataloader()))
    assert x.shape == (4, 1000, 2) and x.dtype == torch.float32
    assert y.shape == (4, 5) and y.dtype == torch.float32
    # record 3 (i=2) has IMI and LVH -> MI and HYP; record 1 has NORM (SR is not diagnostic)
    assert ml.y_train[0].tolist() == [1, 0, 0, 0, 0]
    assert ml.y_train[2].tolist() == [0, 1, 0, 0, 1]
    single = PTBXLDataModule(root=ptbxl_dir, task="superclass", batch_size=4)
    assert not single.multilabel and single.sizes["train"] == 12  # the 4 two-superclass records dropped
    assert single.y_train.dtype == np.int64 and set(single.y_train.tolist()) == {0, 1, 2, 3}
    # prediction path: a record of the layout becomes one standardized (1, 1000, 2) example
    names, xp = load_ecg_for_prediction(ptbxl_dir / "records100/00000/00001_lr.hea", ml.export_info())
    assert names == ["00001_lr"] and xp.shape == (1, 1000, 2)
    np.testing.assert_allclose(xp[0], ml.x_train[0], atol=1e-5)


def test_ptbxl_missing_tables(tmp_path):
    with pytest.raises(UserInputError, match="PTB-XL table not found"):
        PTBXLDataModule(root=tmp_path)
