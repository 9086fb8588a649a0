"""`tsm train`: Hydra composition, a smoke run that writes what it promises, resume, sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apps.cli import main
from apps.train import compose_config, list_experiments, train
from tsmodels.errors import UserInputError


def test_compose_fills_defaults_and_overrides():
    cfg = compose_config(["experiment=etth1_spacetime", "data.horizon=24", "trainer=smoke"])
    assert cfg.name == "etth1_spacetime"
    assert cfg.data.horizon == 24 and cfg.model.horizon == 24
    assert cfg.trainer.max_epochs == 1


def test_unknown_experiment_is_a_user_error():
    with pytest.raises(UserInputError, match="experiment"):
        compose_config(["experiment=does_not_exist"])


def test_shipped_experiments_listed():
    assert {"etth1_spacetime", "ett_informer"} <= set(list_experiments())


@pytest.mark.parametrize("model", ["spacetime", "dlinear"])
def test_smoke_run_writes_metrics_checkpoints_and_resumes(ett_dir, tmp_path, model):
    common = ["experiment=etth1_spacetime", f"model={model}", "trainer=smoke", "data.lookback=96",
              "data.horizon=24", f"data.root={ett_dir}"]
    (m,) = train(common + [f"run_dir={tmp_path / 'a'}"])
    run = tmp_path / "a"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == pytest.approx(metrics)  # valid JSON with numbers
    assert set(m) >= {"test/mse", "test/mae", "params", "seconds_per_epoch"}
    assert metrics["test/mse"] == pytest.approx(m["test/mse"]) and metrics["test/mse"] > 0
    assert (run / "config.yaml").is_file()
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    # resume: one more epoch on top of the saved one
    (m2,) = train(common + [f"run_dir={tmp_path / 'b'}", f"ckpt_path={last}", "trainer.max_epochs=2"])
    assert m2["epochs"] == 2
    assert torch.load(last, weights_only=False)["epoch"] == 0


def test_sweep_runs_each_combination_and_skips_missing_data(ett_dir, tmp_path):
    results = train(["experiment=ett_informer", "model=dlinear", "trainer=smoke", f"data.root={ett_dir}",
                     "data.lookback=96", f"run_dir={tmp_path}",
                     "sweep={data.name: [ETTh1, ETTm1], data.horizon: [24, 48]}"])
    # ETTm1 is not shipped: its runs are skipped with a message, the ETTh1 ones run
    assert sorted((r["data.name"], r["data.horizon"]) for r in results) == [("ETTh1", 24), ("ETTh1", 48)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary) == 2 and all("test/mse" in r for r in summary)


def test_cli_train_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: no experiment given")
    with pytest.raises(SystemExit) as e:
        main(["train", "experiment=nope"])
    assert e.value.code == 2
