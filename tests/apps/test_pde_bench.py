"""`tsm pde-bench` / `tsm data navier-stokes` end to end on tiny data, bad inputs, and `tsm train experiment=ns_t1`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from apps.data import data_navier_stokes_command, navier_stokes
from apps.pde_bench import parse_models, pde_bench, pde_bench_command
from tsmodels.errors import UserInputError


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nsdata") / "ns.nc"
    navier_stokes(n=16, res=16, steps=6, viscosity=1e-3, out=path, seed=1, record_dt=0.25, dt=1e-2, device="cpu",
                  progress=False)
    return path


def test_pde_bench_smoke_end_to_end(tmp_path):
    report = pde_bench(smoke=True, out_dir=tmp_path, progress=False)
    assert [r["model"] for r in report["results"]] == ["t1", "fno"]
    for r in report["results"]:
        assert r["params"] > 0 and r["seconds_per_epoch"] > 0 and r["inference_ms_per_sample"] > 0
        assert np.isfinite(r["test_rel_l2"]) and np.isfinite(r["test_rollout_rel_l2"])
        assert np.isfinite(r["train_loss_last_epoch"])
    saved = json.loads((tmp_path / "pde_bench.json").read_text())
    assert saved["setup"]["smoke"] is True and saved["dataset"]["seed"] == 0
    png = (tmp_path / "pde_bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_pde_bench_direct_smoke_end_to_end(tmp_path, capsys):
    # the T1 paper's task: initial vorticity -> last recorded frame (smoke data: 6 frames, record_dt 0.25)
    report = pde_bench(smoke=True, out_dir=tmp_path, progress=False, mode="direct", lr=3e-3)
    assert [r["model"] for r in report["results"]] == ["t1", "fno"]
    for r in report["results"]:
        assert r["params"] > 0 and np.isfinite(r["test_rel_l2"]) and np.isfinite(r["test_loss"])
        assert r["test_rollout_rel_l2"] is None
    saved = json.loads((tmp_path / "pde_bench.json").read_text())
    s = saved["setup"]
    assert s["mode"] == "direct" and s["lr"] == 3e-3 and s["t_in"] == 1 and s["t_out"] == 1
    assert s["target_frame"] == 5 and s["target_time"] == pytest.approx(1.5)
    assert "t1_rollout_rel_l2_change_vs_fno" not in saved
    assert (tmp_path / "pde_bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "direct w0 -> t = 1.5" in out
    # the rollout column shows "-" for both rows
    rows = [line for line in out.splitlines() if line.strip("│ ").startswith(("t1 ", "fno "))]
    assert len(rows) == 2 and all(line.rstrip(" │").endswith("-") for line in rows), out


def test_pde_bench_direct_target_frame_and_default_lr(tmp_path, tiny_file):
    report = pde_bench(dataset=tiny_file, models="fno", epochs=1, width=4, modes=2, n_layers=1, batch_size=8,
                       out_dir=tmp_path, progress=False, mode="direct", target_frame=1)
    s = report["setup"]
    assert s["lr"] == 1e-3 and s["target_frame"] == 1 and s["target_time"] == pytest.approx(0.5)
    assert report["results"][0]["test_rollout_rel_l2"] is None


def test_pde_bench_bad_mode_lr_target(tmp_path, tiny_file):
    with pytest.raises(UserInputError, match="unknown mode 'rollout'"):
        pde_bench(dataset=tiny_file, out_dir=tmp_path, mode="rollout", progress=False)
    with pytest.raises(UserInputError, match="learning rate"):
        pde_bench(dataset=tiny_file, out_dir=tmp_path, lr=0.0, progress=False)
    with pytest.raises(UserInputError, match="only applies to the direct task"):
        pde_bench(dataset=tiny_file, out_dir=tmp_path, target_frame=2, progress=False)
    with pytest.raises(UserInputError, match="outside the file's 6 recorded frames"):
        pde_bench(dataset=tiny_file, out_dir=tmp_path, mode="direct", target_frame=6, progress=False)


@pytest.mark.parametrize("args, needle", [
    (["--mode", "rollout"], "unknown mode 'rollout'"),
    (["--lr", "-1"], "learning rate must be a positive number"),
    (["--mode", "direct", "--target-frame", "99"], "outside the file's 6 recorded frames"),
])
def test_cli_bad_mode_exit_2_one_error_line(tmp_path, tiny_file, capsys, args, needle):
    from apps.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pde-bench", "--dataset", str(tiny_file), "--out-dir", str(tmp_path / "out"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not (tmp_path / "out" / "pde_bench.json").exists()


def test_pde_bench_bad_inputs(tmp_path, tiny_file):
    import xarray as xr

    from datamodules.navier_stokes import netcdf_engine

    bad = tmp_path / "bad.nc"
    xr.Dataset({"u": (("sample", "x", "y"), np.zeros((2, 4, 4)))}).to_netcdf(bad, engine=netcdf_engine())
    with pytest.raises(UserInputError, match="no variable 'vorticity'"):
        pde_bench(dataset=bad, out_dir=tmp_path, t_in=3, t_out=3, progress=False)
    with pytest.raises(UserInputError, match="does not divide"):
        pde_bench(dataset=tiny_file, resolution=6, out_dir=tmp_path, t_in=3, t_out=3, progress=False)
    with pytest.raises(UserInputError, match="do not fit"):
        pde_bench(dataset=tiny_file, modes=12, out_dir=tmp_path, t_in=3, t_out=3, progress=False)
    with pytest.raises(UserInputError, match="neither --dataset nor --generate"):
        pde_bench(out_dir=tmp_path, progress=False)
    with pytest.raises(UserInputError, match="unknown model"):
        parse_models("t1,unet")


def test_cli_commands_via_typer(tmp_path):
    app = typer.Typer()
    app.command("pde-bench")(pde_bench_command)
    data = typer.Typer()
    data.command("navier-stokes")(data_navier_stokes_command)
    app.add_typer(data, name="data")
    runner = CliRunner()
    out = tmp_path / "cli.nc"
    res = runner.invoke(app, ["data", "navier-stokes", "--n", "4", "--res", "8", "--steps", "2", "--record-dt", "0.1",
                              "--dt", "0.01", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and "wrote" in res.output
    res = runner.invoke(app, ["pde-bench", "--dataset", str(out), "--resolution", "3", "--out-dir", str(tmp_path)])
    assert isinstance(res.exception, UserInputError)


def test_tsm_train_experiment_ns_t1_smoke(tmp_path, tiny_file):
    from apps.train import train

    results = train(["experiment=ns_t1", "trainer=smoke", f"runs_root={tmp_path}", f"data.path={tiny_file}",
                     "data.t_in=3", "data.t_out=3", "data.batch_size=4", "model.width=8", "model.modes=4",
                     "model.n_layers=1", "model.head_width=8"])
    m = results[0]
    assert m["name"] == "ns_t1" and m["params"] > 0
    assert np.isfinite(m["test/rel_l2"]) and np.isfinite(m["test/rollout_rel_l2"])
    assert list(tmp_path.glob("ns_t1/*/metrics.json"))


def test_build_model_t1_options():
    from apps.pde_bench import build_model
    from tsmodels.errors import UserInputError

    m = build_model("t1", 1, 1, 32, 8, 4, 2, {"width": 12, "n_layers": 3, "learned_skip": True})
    assert (m.blocks[0].width, len(m.blocks), m.skip_delta is not None) == (12, 3, True)
    with pytest.raises(UserInputError, match="unknown T1 option"):
        build_model("t1", 1, 1, 32, 8, 4, 2, {"widht": 12})
    with pytest.raises(UserInputError, match="t1 only"):
        build_model("fno", 1, 1, 32, 8, 4, 2, {"learned_skip": True})
