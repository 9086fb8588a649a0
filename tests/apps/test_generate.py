"""`tsm train experiment=sc_sashimi trainer=smoke` end to end (tiny sizes, digit-conditional by
default), then `tsm generate audio` on the checkpoint it wrote: WAV files (PCM 16, model rate),
spectrogram PNG, seeded determinism, `--digit`, and clear `error: ...` exits for missing/corrupt
checkpoints, bad arguments and labels the checkpoint does not have."""

import json

import pytest
import soundfile as sf
import torch
import typer

from apps import cli
from apps.generate import generate_audio_command

TINY = ["model.d_model=8", "model.n_layers=1", "model.d_state=8", "model.mlp_expand=1",
        "data.length=256", "data.limit=4", "data.batch_size=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    if not (data_dir / "fsdd" / "recordings").is_dir():
        pytest.skip("fsdd recordings missing")
    from apps.train import train

    root = tmp_path_factory.mktemp("runs")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (metrics,) = train(["experiment=sc_sashimi", "trainer=smoke", f"runs_root={root}", *TINY])
    finally:
        torch.set_num_threads(n)
    run_dir = next((root / "sc_sashimi").iterdir())
    return metrics, run_dir


def _cli(argv):
    # register `tsm generate audio` the way apps/cli.py does, unless it already is
    if not any(g.name == "generate" for g in cli.app.registered_groups):
        gen = typer.Typer(help="Generate samples from trained models.")
        gen.command("audio")(generate_audio_command)
        cli.app.add_typer(gen, name="generate")
    cli.main(argv)


def test_train_smoke_writes_metrics(trained):
    metrics, run_dir = trained
    assert metrics["name"] == "sc_sashimi"
    for key in ("best_val_loss", "test/loss", "test/nll_bits", "test/nll_bits_speech"):
        assert key in metrics and metrics[key] == metrics[key]  # present and not NaN
    # nats -> bits
    assert abs(metrics["test/nll_bits"] - metrics["test/loss"] / 0.6931471805599453) < 1e-3
    assert json.loads((run_dir / "metrics.json").read_text())["test/nll_bits"] == pytest.approx(metrics["test/nll_bits"])
    ckpt = torch.load(run_dir / metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["_target_"] == "tsmodels.models.sashimi.SaShiMi"
    # digit-conditional by default: n_labels came from the data, names in embedding order
    assert ckpt["model_config"]["n_labels"] == 10
    assert ckpt["label_names"] == [str(d) for d in range(10)]
    assert ckpt["state_dict"]["model.label_embedding.weight"].shape[0] == 10


def test_generate_cli_end_to_end(trained, tmp_path):
    metrics, run_dir = trained
    ckpt = run_dir / metrics["best_checkpoint"]
    out = tmp_path / "gen"
    _cli(["generate", "audio", "--ckpt", str(ckpt), "--n", "3", "--seconds", "0.01", "--seed", "5", "--out", str(out), "--quiet"])
    wavs = sorted(out.glob("*.wav"))
    assert [p.name for p in wavs] == ["sample_00.wav", "sample_01.wav", "sample_02.wav"]
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 8000 and info.subtype == "PCM_16" and info.frames == 80
    assert (out / "spectrograms.png").stat().st_size > 1000
    assert not list(out.glob(".*"))  # no temporary files left
    first = sf.read(str(wavs[1]))[0]
    _cli(["generate", "audio", "--ckpt", str(ckpt), "--n", "3", "--seconds", "0.01", "--seed", "5", "--out", str(out), "--quiet"])
    assert (sf.read(str(wavs[1]))[0] == first).all()


def test_generate_digit_option_picks_the_label(trained, tmp_path):
    from apps.generate import GenerateOptions, generate_audio, label_indices, load_generator

    metrics, run_dir = trained
    ckpt = run_dir / metrics["best_checkpoint"]
    model = load_generator(ckpt)
    assert model.label_names == [str(d) for d in range(10)]
    assert label_indices(model, None, 12).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert label_indices(model, ["7", "3"], 3).tolist() == [7, 3, 7]

    def clips(digits, out):
        generate_audio(GenerateOptions(ckpt=ckpt, n=2, seconds=0.005, seed=3, out=out, progress=False, digits=digits))
        return [sf.read(str(out / f"sample_{i:02d}.wav"))[0] for i in range(2)]

    a = clips(["7"], tmp_path / "a")
    b = clips(["7"], tmp_path / "b")
    c = clips(["2"], tmp_path / "c")
    assert all((x == y).all() for x, y in zip(a, b))  # same digit, same seed: same audio
    assert any((x != y).any() for x, y in zip(a, c))  # the label changes the distribution sampled
    _cli(["generate", "audio", "--ckpt", str(ckpt), "--n", "2", "--seconds", "0.005", "--seed", "3",
          "--digit", "7", "--out", str(tmp_path / "d"), "--quiet"])
    assert all((x == sf.read(str(tmp_path / "d" / f"sample_{i:02d}.wav"))[0]).all() for i, x in enumerate(a))


def _unconditional_ckpt(path):
    from tsmodels.models.sashimi import SaShiMi
    from tsmodels.tasks.audio_generation import AudioGenerationTask

    torch.manual_seed(0)
    model = SaShiMi(d_model=8, n_layers=1, d_state=8, mlp_expand=1, n_labels=0)
    cfg = {"_target_": "tsmodels.models.sashimi.SaShiMi", **model.config}
    torch.save({"state_dict": AudioGenerationTask(model).state_dict(), "model_config": cfg}, path)
    return path


def test_generate_cli_errors(trained, tmp_path, capsys):
    metrics, run_dir = trained
    ckpt = run_dir / metrics["best_checkpoint"]
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    cases = [
        (["--ckpt", str(tmp_path / "missing.ckpt")], "not found"),
        (["--ckpt", str(bad)], "corrupt"),
        (["--ckpt", str(ckpt), "--n", "0"], "--n"),
        (["--ckpt", str(ckpt), "--seconds", "-1"], "--seconds"),
        (["--ckpt", str(ckpt), "--temperature", "0"], "--temperature"),
        (["--ckpt", str(ckpt), "--digit", "11"], "not a label of this checkpoint"),
        (["--ckpt", str(ckpt), "--digit", "3", "--digit", "x"], "--digit x"),
        (["--ckpt", str(_unconditional_ckpt(tmp_path / "uncond.ckpt")), "--digit", "3"], "unconditional"),
    ]
    for args, needle in cases:
        with pytest.raises(SystemExit) as e:
            _cli(["generate", "audio", *args, "--out", str(tmp_path / "o"), "--quiet"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and needle in err, err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.wav"))


def test_shipped_checkpoint_loads_and_generates():
    from apps.generate import default_checkpoint, load_generator

    path = default_checkpoint()
    if not path.is_file():
        pytest.skip("no shipped checkpoint in tsmodels/assets/sashimi/")
    assert path.stat().st_size <= 5 * 1024 * 1024
    model = load_generator(path)
    assert model.sample_rate == 8000 and model.n_classes == 256 and model.n_labels == 10
    assert model.label_names == [str(d) for d in range(10)]
    out = model.generate(2, 20, generator=torch.Generator().manual_seed(0), labels=torch.tensor([3, 9]))
    assert out.shape == (2, 20)


def test_shipped_assets_hold_no_machine_paths():
    from apps.generate import default_checkpoint

    folder = default_checkpoint().parent
    for f in folder.iterdir():
        if f.suffix in (".yaml", ".json", ".md", ".csv"):
            text = f.read_text()
            for prefix in ("/tmp/", "/root/", "/home/", "/work/"):
                assert prefix not in text, (f.name, prefix)


def test_sc_sashimi_config_conditional_by_default_unconditional_on_request():
    from omegaconf import OmegaConf

    from apps.train import compose_config

    # ??? in the model config: filled with the data's label count (10 digits) by `tsm train`
    assert OmegaConf.is_missing(compose_config(["experiment=sc_sashimi"]).model, "n_labels")
    assert compose_config(["experiment=sc_sashimi", "model.n_labels=0"]).model.n_labels == 0


def test_label_count_mismatch_is_a_user_error(tmp_path, data_dir):
    if not (data_dir / "fsdd" / "recordings").is_dir():
        pytest.skip("fsdd recordings missing")
    from apps.train import train
    from tsmodels.errors import UserInputError

    with pytest.raises(UserInputError, match="conditioned on 3 labels"):
        train(["experiment=sc_sashimi", "trainer=smoke", f"runs_root={tmp_path}", "model.n_labels=3", *TINY])
