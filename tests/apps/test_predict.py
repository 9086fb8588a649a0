"""`tsm predict`: checkpoint + config.yaml -> task, WAV file / folder and ECG CSV / WFDB record ->
probability CSV (atomic), through the typer command end to end; clear errors for bad inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from typer.testing import CliRunner

from apps.predict import load_classifier, predict, predict_command
from datamodules._paths import data_root
from tsmodels.errors import UserInputError

FSDD = data_root() / "fsdd" / "recordings"
UCR = data_root() / "ecg" / "ucr"
MITDB = data_root() / "ecg" / "mitdb"
TINY = ["trainer=smoke", "model.d_model=16", "model.encoder.n_layers=1"]


def _train(tmp_path_factory, overrides):
    from apps.train import train

    root = tmp_path_factory.mktemp("runs")
    res = train([*overrides, f"runs_root={root}"])[0]
    run_dir = next(next(root.iterdir()).iterdir())
    return run_dir / res["best_checkpoint"]


@pytest.fixture(scope="module")
def speech_ckpt(tmp_path_factory):
    if not FSDD.is_dir():
        pytest.skip(f"FSDD not found under {FSDD} (set TSMODELS_DATA)")
    return _train(tmp_path_factory, ["experiment=speech_cnn", *TINY, "data.limit=8", "data.batch_size=4"])


@pytest.fixture(scope="module")
def ecg_ckpt(tmp_path_factory):
    if not (UCR / "ECG200_TRAIN.txt").is_file():
        pytest.skip(f"UCR ECG200 not found under {UCR} (set TSMODELS_DATA)")
    return _train(tmp_path_factory, ["experiment=ecg_cnn", *TINY])


@pytest.fixture(scope="module")
def beats_ckpt(tmp_path_factory):
    if not (MITDB / "100.hea").is_file():
        pytest.skip(f"MIT-BIH record 100 not found under {MITDB}")
    return _train(tmp_path_factory, ["experiment=ecg_cnn", "data=ecg_mitdb", *TINY])


def _cli():
    app = typer.Typer(add_completion=False)
    app.command("predict")(predict_command)
    app.command("noop")(lambda: None)  # a second command keeps `predict` as a sub-command
    return app


def test_cli_wav_folder_and_file(speech_ckpt, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    files = ["3_theo_1.flac", "7_jackson_2.flac", "0_george_4.flac"]
    for f in files:
        shutil.copy(FSDD / f, folder / f)
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "probs.csv"
    r = CliRunner().invoke(_cli(), ["predict", "--ckpt", str(speech_ckpt), "--input", str(folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert df["input"].tolist() == sorted(files)
    assert [c for c in df.columns if c.startswith("p_")] == [f"p_{d}" for d in range(10)]
    np.testing.assert_allclose(df.filter(like="p_").sum(axis=1), 1.0, atol=1e-4)
    assert df["predicted"].astype(str).isin([str(d) for d in range(10)]).all()
    # a single file gives the same row as in the folder; a run folder resolves to its best checkpoint
    one = predict(speech_ckpt.parent.parent, folder / "7_jackson_2.flac")
    row = df.filter(like="p_").to_numpy()[sorted(files).index("7_jackson_2.flac")]
    np.testing.assert_allclose(one.filter(like="p_").to_numpy()[0], row, rtol=1e-4, atol=1e-6)


def test_same_probabilities_as_the_trained_task(ecg_ckpt):
    task, info, names = load_classifier(ecg_ckpt)
    assert names == ["-1", "1"] and info["seq_len"] == 96
    from datamodules.ecg import UCRDataModule

    dm = UCRDataModule("ECG200")
    with torch.no_grad():
        expect = torch.softmax(task(torch.from_numpy(dm.x_test)), -1).numpy()
    df = predict(ecg_ckpt, UCR / "ECG200_TEST.txt")  # UCR text: label column dropped
    assert len(df) == 100
    np.testing.assert_allclose(df[["p_-1", "p_1"]].to_numpy(), expect, rtol=1e-4, atol=1e-6)


def test_ecg_csv_and_errors(ecg_ckpt, tmp_path):
    csv = tmp_path / "series.csv"
    np.savetxt(csv, np.random.default_rng(0).standard_normal((4, 96)), delimiter=",")
    out = tmp_path / "out.csv"
    assert len(predict(ecg_ckpt, csv, out)) == 4 and out.is_file()
    bad = tmp_path / "short.csv"
    np.savetxt(bad, np.zeros((2, 50)), delimiter=",")
    out2 = tmp_path / "never.csv"
    with pytest.raises(UserInputError, match="length 96"):
        predict(ecg_ckpt, bad, out2)
    assert not out2.exists() and not list(tmp_path.glob(".never*"))
    with pytest.raises(UserInputError, match="not an ECG input"):
        predict(ecg_ckpt, FSDD / "3_theo_1.flac")
    with pytest.raises(UserInputError, match="not found"):
        predict(ecg_ckpt, tmp_path / "nope.csv")
    with pytest.raises(UserInputError, match="checkpoint not found"):
        predict(tmp_path / "missing.ckpt", csv)
    lone = tmp_path / "lone.ckpt"
    shutil.copy(ecg_ckpt, lone)
    with pytest.raises(UserInputError, match="no config.yaml"):
        predict(lone, csv)
    # the CLI turns user errors into exit code 2 through apps.cli.main's handler; here: the exception
    r = CliRunner().invoke(_cli(), ["predict", "--ckpt", str(ecg_ckpt), "--input", str(bad)])
    assert isinstance(r.exception, UserInputError)


def test_wfdb_record_beats(beats_ckpt, tmp_path):
    out = tmp_path / "beats.csv"
    df = predict(beats_ckpt, MITDB / "100.hea", out)
    assert len(df) >= 2270 and df["input"].iloc[0].startswith("100@")
    assert set(df["predicted"]) <= {"N", "A", "V"}
    np.testing.assert_allclose(df.filter(like="p_").sum(axis=1), 1.0, atol=1e-4)


def test_audio_model_rejects_non_audio(speech_ckpt, tmp_path):
    with pytest.raises(UserInputError, match="not a WAV/FLAC"):
        predict(speech_ckpt, UCR / "ECG200_TEST.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no WAV/FLAC"):
        predict(speech_ckpt, tmp_path / "empty")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(UserInputError, match="cannot read audio"):
        predict(speech_ckpt, broken)
