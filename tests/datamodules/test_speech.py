"""Speech datamodule: FSDD standard split by take (sizes, no take leakage), mu-law round trip,
batch formats of both tasks, resampling, user folders (flat and per label), clear errors."""

import numpy as np
import pytest
import soundfile as sf
import torch

from datamodules.speech import SpeechDataModule, mu_law_decode, mu_law_encode, read_audio
from tsmodels.errors import UserInputError


@pytest.fixture(scope="module")
def fsdd(data_dir):
    root = data_dir / "fsdd" / "recordings"
    if not root.is_dir():
        pytest.skip(f"{root} missing")
    return root


def test_fsdd_split_by_take_no_leakage(fsdd):
    dm = SpeechDataModule(root=fsdd, task="generation", length=800)
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 2400, "val": 300, "test": 300}
    takes = {k: {it["take"] for it in v} for k, v in dm.splits.items()}
    assert takes["test"] == set(range(5)) and takes["val"] == set(range(5, 10))
    assert takes["train"] == set(range(10, 50))
    keys = {k: {(it["label"], it["speaker"], it["take"]) for it in v} for k, v in dm.splits.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"]) and not (keys["val"] & keys["test"])
    assert dm.n_classes == 256 and dm.n_labels == 10 and dm.sample_rate == 8000
    assert dm.labels == [str(i) for i in range(10)]


def test_batches_both_tasks(fsdd):
    dm = SpeechDataModule(root=fsdd, task="generation", length=800, batch_size=3, limit=6)
    tokens, y, n_valid = next(iter(dm.test_dataloader()))
    assert tokens.shape == (3, 800) and tokens.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < 256 and (n_valid <= 800).all()
    dm = SpeechDataModule(root=fsdd, task="classification", length=20000, batch_size=2, limit=2)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (2, 20000, 1) and x.dtype == torch.float32 and dm.n_classes == 10
    # clips are shorter than 2.5 s: zero padded at the end
    assert (x[:, -100:] == 0).all()


def test_mu_law_round_trip():
    x = torch.linspace(-1, 1, 10001)
    q = mu_law_encode(x)
    assert q.min() == 0 and q.max() == 255 and mu_law_encode(torch.zeros(1)).item() == 128
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))
    # quantization error is small relative to the signal in the companded domain
    err = (mu_law_decode(q) - x).abs()
    assert (err <= 0.025 * x.abs() + 2e-4).all()


def test_resample_and_user_folders(tmp_path, fsdd):
    x, sr = read_audio(fsdd / "3_theo_7.flac", 16000)
    x8, _ = read_audio(fsdd / "3_theo_7.flac")
    assert sr == 16000 and abs(len(x) - 2 * len(x8)) <= 2
    # a folder per label, WAV files, stereo at 16 kHz
    for label in ("yes", "no"):
        (tmp_path / "per_label" / label).mkdir(parents=True)
        for i in range(10):
            sf.write(tmp_path / "per_label" / label / f"c{i}.wav", np.random.default_rng(i).uniform(-0.5, 0.5, (1600, 2)), 16000)
    dm = SpeechDataModule(root=tmp_path / "per_label", task="classification", length=400, sample_rate=8000, batch_size=2)
    assert dm.labels == ["no", "yes"] and {k: len(v) for k, v in dm.splits.items()} == {"train": 16, "val": 2, "test": 2}
    xb, _ = next(iter(dm.train_dataloader()))
    assert xb.shape == (2, 400, 1)
    # flat folder with a badly named file
    (tmp_path / "flat").mkdir()
    sf.write(tmp_path / "flat" / "badname.wav", np.zeros(100), 8000)
    with pytest.raises(UserInputError, match="label"):
        SpeechDataModule(root=tmp_path / "flat")
    with pytest.raises(UserInputError, match="does not exist"):
        SpeechDataModule(root=tmp_path / "nowhere")
    with pytest.raises(UserInputError):
        SpeechDataModule(root=fsdd, task="regression")


def test_training_augmentation_only_on_train_clips(fsdd):
    kw = dict(root=fsdd, task="classification", length=8000, batch_size=4, limit=4, seed=1)
    plain = SpeechDataModule(**kw)
    aug = SpeechDataModule(**kw, shift=True, speed=0.1, gain_db=6.0, noise=0.05)
    # evaluation clips are never augmented
    for split in ("val", "test"):
        assert torch.equal(plain.datasets[split][0][0], aug.datasets[split][0][0])
    x0, y0 = plain.datasets["train"][0]
    xa, ya = aug.datasets["train"][0]
    assert y0 == ya and xa.shape == x0.shape == (8000, 1)
    assert not torch.equal(xa, x0) and xa.abs().max() <= 1
    # each draw is new, and the same seed repeats the same draws
    assert not torch.equal(aug.datasets["train"][0][0], xa)
    again = SpeechDataModule(**kw, shift=True, speed=0.1, gain_db=6.0, noise=0.05)
    assert torch.equal(again.datasets["train"][0][0], xa)
    with pytest.raises(UserInputError, match="augmentation"):
        SpeechDataModule(**kw, speed=1.5)
    with pytest.raises(UserInputError, match="time_mask"):
        SpeechDataModule(**kw, time_mask=1.0)


def test_time_mask_zeroes_one_span(fsdd):
    kw = dict(root=fsdd, task="classification", length=8000, limit=4, seed=3)
    plain = SpeechDataModule(**kw).datasets["train"]
    masked = SpeechDataModule(**kw, time_mask=0.5).datasets["train"]
    x, m = plain[0][0][:, 0], masked[0][0][:, 0]
    changed = torch.nonzero(x != m).flatten()
    # the changed samples are a zeroed run inside one span of at most half the clip
    assert len(changed) > 0 and torch.all(m[changed] == 0)
    assert changed[-1] - changed[0] < 4000


def test_shift_moves_the_clip_inside_the_window(fsdd):
    dm = SpeechDataModule(root=fsdd, task="classification", length=12000, limit=2, shift=True)
    x = dm.datasets["train"].waveform(0)
    starts = set()
    for _ in range(5):
        w = dm.datasets["train"][0][0][:, 0]
        nz = torch.nonzero(w).flatten()
        starts.add(int(nz[0]))
        assert int(nz[-1]) - int(nz[0]) < len(x)
    assert len(starts) > 1
