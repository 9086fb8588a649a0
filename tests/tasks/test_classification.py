"""ClassificationTask: losses, metric wiring (a perfect predictor scores 1.0), val/loss logging,
confusion-matrix PNG, classifier shapes, and every classification experiment end to end with
trainer=smoke."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from datamodules._paths import data_root
from tsmodels.models.classifiers import CNNEncoder, S4DEncoder, SequenceClassifier, SpaceTimeEncoder
from tsmodels.tasks.classification import ClassificationTask


class Oracle(nn.Module):
    """Returns the logits stored in x[:, 0, :K] (x (B, 1, K)); lets a test choose the predictions."""

    def __init__(self, n_classes: int, multilabel: bool = False):
        super().__init__()
        self.n_classes, self.multilabel = n_classes, multilabel
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, 0, :] + 0 * self.dummy


def _trainer(tmp_path, **kw):
    opts = dict(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(tmp_path))
    return pl.Trainer(**{**opts, **kw})


def test_perfect_multiclass_predictor_scores_one(tmp_path):
    K, n = 4, 40
    y = torch.arange(n) % K
    x = (10 * nn.functional.one_hot(y, K).float()).unsqueeze(1)
    task = ClassificationTask(Oracle(K), class_names=["a", "b", "c", "d"])
    res = _trainer(tmp_path).test(task, DataLoader(TensorDataset(x, y), batch_size=8), verbose=False)[0]
    assert res["test/acc"] == pytest.approx(1.0)
    assert res["test/auroc"] == pytest.approx(1.0)
    assert res["test/f1"] == pytest.approx(1.0)
    assert res["test/loss"] < 1e-3
    png = tmp_path / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cm = np.array(json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"])
    assert (cm == np.diag([10] * K)).all()
    assert not list(tmp_path.glob(".confusion*"))  # no temporary files left behind


def test_macro_auroc_ignores_absent_classes():
    from tsmodels.tasks.classification import MacroAUROC

    y = torch.tensor([0, 1, 2, 0, 1, 2])  # class 3 never occurs
    p = nn.functional.one_hot(y, 4).float() * 0.9 + 0.025
    assert MacroAUROC(4)(p, y).item() == pytest.approx(1.0)
    p_bad = p.clone()
    p_bad[0], p_bad[1] = p[1], p[0]  # one swap: classes 0 and 1 lose, class 2 keeps 1.0
    got = MacroAUROC(4)(p_bad, y).item()
    assert 0.5 < got < 1.0


def test_multilabel_perfect_and_chance(tmp_path):
    K, n = 3, 32
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, K, generator=g) > 0.5).float()
    y[0], y[1] = 1.0, 0.0  # every label has both values
    task = ClassificationTask(Oracle(K, multilabel=True))
    perfect = _trainer(tmp_path).test(task, DataLoader(TensorDataset((20 * y - 10).unsqueeze(1), y), batch_size=8), verbose=False)[0]
    assert perfect["test/acc"] == pytest.approx(1.0) and perfect["test/auroc"] == pytest.approx(1.0)
    assert perfect["test/f1"] == pytest.approx(1.0)
    cm = np.array(json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"])
    assert cm.shape == (K, 2, 2) and cm[:, 0, 1].sum() == 0 and cm[:, 1, 0].sum() == 0
    # inverted predictions: AUROC 0, and BCE-with-logits (not cross-entropy) is the loss
    inverted = _trainer(tmp_path).test(task, DataLoader(TensorDataset((10 - 20 * y).unsqueeze(1), y), batch_size=8), verbose=False)[0]
    assert inverted["test/auroc"] == pytest.approx(0.0) and inverted["test/acc"] == pytest.approx(0.0)
    logits = (10 - 20 * y)
    assert inverted["test/loss"] == pytest.approx(nn.functional.binary_cross_entropy_with_logits(logits, y).item(), rel=1e-4)


def test_fit_logs_val_loss_and_lowers_it(tmp_path):
    torch.manual_seed(0)
    n, L = 64, 32
    y = torch.arange(n) % 2
    t = torch.linspace(0, 1, L)
    x = torch.where(y[:, None] == 1, torch.sin(12 * t), torch.sin(3 * t))[:, :, None] + 0.1 * torch.randn(n, L, 1)
    model = SequenceClassifier(1, 2, CNNEncoder(16, 2, kernel_size=5, pool=2), d_model=16)
    task = ClassificationTask(model, lr=1e-2)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    trainer = _trainer(tmp_path, max_epochs=8, num_sanity_val_steps=0)
    first = _trainer(tmp_path).validate(task, loader, verbose=False)[0]["val/loss"]
    trainer.fit(task, loader, loader)
    m = trainer.callback_metrics
    assert {"val/loss", "val/acc", "val/auroc", "val/f1", "train/loss"} <= set(m)
    assert float(m["val/loss"]) < first
    assert float(m["val/acc"]) > 0.9


@pytest.mark.parametrize("encoder", [
    lambda: CNNEncoder(16, 2, pool=2),
    lambda: S4DEncoder(16, 2, d_state=8, pool=2),
    lambda: SpaceTimeEncoder(16, 2, n_heads=4, state_dim=8, n_shift_heads=4, pool=2),
])
@pytest.mark.parametrize("patch", [1, 4])
def test_classifier_shapes(encoder, patch):
    model = SequenceClassifier(3, 5, encoder(), d_model=16, patch=patch)
    x = torch.randn(2, 64, 3)
    assert model(x).shape == (2, 5)
    p = model.predict_proba(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    ml = SequenceClassifier(3, 5, encoder(), d_model=16, patch=patch, multilabel=True)
    p = ml.predict_proba(x)
    assert p.shape == (2, 5) and not torch.allclose(p.sum(-1), torch.ones(2))


def test_overlapping_patch_embedding():
    """patch_kernel > patch: wider, overlapping windows, still ceil(L / patch) encoder steps."""
    from tsmodels.errors import UserInputError

    torch.manual_seed(0)
    enc = CNNEncoder(8, 1, pool=1)
    seen = []
    enc.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model = SequenceClassifier(1, 3, enc, d_model=8, patch=4, patch_kernel=12).eval()
    assert model.embedding.kernel_size == (12,) and model.embedding.stride == (4,)
    assert model(torch.randn(2, 66, 1)).shape == (2, 3)
    assert seen[-1] == (2, 17, 8)  # ceil(66 / 4) steps
    with pytest.raises(UserInputError, match="patch_kernel"):
        SequenceClassifier(1, 3, CNNEncoder(8, 1), d_model=8, patch=4, patch_kernel=2)


def test_input_norm_makes_the_classifier_loudness_invariant():
    torch.manual_seed(0)
    model = SequenceClassifier(1, 3, CNNEncoder(8, 2), d_model=8, patch=4, input_norm=True).eval()
    x = torch.randn(2, 64, 1)
    torch.testing.assert_close(model(x), model(50 * x), rtol=1e-4, atol=1e-5)
    plain = SequenceClassifier(1, 3, CNNEncoder(8, 2), d_model=8, patch=4).eval()
    assert not torch.allclose(plain(x), plain(50 * x), atol=1e-3)


def test_s4d_parameters_get_their_own_learning_rate():
    model = SequenceClassifier(1, 2, S4DEncoder(8, 1, d_state=4, lr=1e-4), d_model=8)
    task = ClassificationTask(model, lr=1e-2, weight_decay=0.1)
    opt = task.configure_optimizers()
    lrs = sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups)
    assert lrs[0][:2] == (1e-4, 0.0) and lrs[0][2] == 4  # log_dt, log_A_real, A_imag, B
    assert lrs[1][:2] == (1e-2, 0.1)


# -- experiments end to end (trainer=smoke) ---------------------------------------------------------

TINY = ["model.d_model=16", "model.encoder.n_layers=1"]
EXPERIMENTS = {
    "ecg_cnn": [],
    "ecg_s4": ["model.encoder.d_state=8"],
    "ecg_spacetime": ["model.encoder.n_heads=4", "model.encoder.state_dim=8"],
    "speech_cnn": ["data.limit=8", "data.batch_size=4"],
    "speech_s4": ["data.limit=8", "data.batch_size=4", "model.encoder.d_state=8"],
    "speech_spacetime": ["data.limit=8", "data.batch_size=4", "model.encoder.n_heads=4", "model.encoder.state_dim=8"],
}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_experiment_smoke(name, tmp_path):
    need = data_root() / ("ecg/ucr/ECG200_TRAIN.txt" if name.startswith("ecg") else "fsdd/recordings")
    if not need.exists():
        pytest.skip(f"{need} not found (set TSMODELS_DATA)")
    from apps.train import train

    res = train([f"experiment={name}", "trainer=smoke", f"runs_root={tmp_path}", *TINY, *EXPERIMENTS[name]])[0]
    for key in ("test/acc", "test/f1", "test/loss", "best_val_loss", "seconds_per_epoch"):
        assert key in res and np.isfinite(res[key]), key
    # data.limit=8 keeps the first 8 test clips, all digit 0: AUROC is undefined (NaN), not 0
    assert "test/auroc" in res and (np.isfinite(res["test/auroc"]) or name.startswith("speech"))
    run_dir = next((tmp_path / name).iterdir())
    assert (run_dir / "confusion_matrix.png").is_file() and (run_dir / "metrics.json").is_file()
    ckpt = torch.load(run_dir / res["best_checkpoint"], map_location="cpu", weights_only=False)
    info = ckpt["data_info"]
    assert info["domain"] == ("ecg" if name.startswith("ecg") else "audio")
    assert len(ckpt["class_names"]) == (2 if name.startswith("ecg") else 10)


def test_ecg5000_via_data_override(tmp_path):
    if not (data_root() / "ecg/ucr/ECG5000_TRAIN.txt").is_file():
        pytest.skip("ECG5000 not found (set TSMODELS_DATA)")
    from apps.train import train

    res = train(["experiment=ecg_cnn", "data=ecg5000", "trainer=smoke", f"runs_root={tmp_path}", *TINY])[0]
    assert np.isfinite(res["test/acc"])
    run_dir = next((tmp_path / "ecg_cnn").iterdir())
    assert json.loads((run_dir / "confusion_matrix.json").read_text())["classes"] == ["1", "2", "3", "4", "5"]


def test_speech_cls_config_splits_by_take_without_leakage():
    if not (data_root() / "fsdd/recordings").is_dir():
        pytest.skip("FSDD not found (set TSMODELS_DATA)")
    from hydra.utils import instantiate

    from apps.train import compose_config

    dm = instantiate(compose_config(["experiment=speech_s4"]).data)
    assert dm.task == "classification" and dm.n_classes == 10
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 2400, "val": 300, "test": 300}
    takes = {k: {it["take"] for it in v} for k, v in dm.splits.items()}
    assert takes["test"] == set(range(5)) and takes["val"] == set(range(5, 10)) and min(takes["train"]) == 10
    files = {k: {it["path"].name for it in v} for k, v in dm.splits.items()}
    assert not (files["train"] & files["test"]) and not (files["train"] & files["val"]) and not (files["val"] & files["test"])
