"""`tsm generate audio`: sample waveforms from a trained SaShiMi checkpoint.

Writes ``sample_00.wav`` ... (PCM 16, the model's sample rate) and ``spectrograms.png`` (a grid
of their spectrograms, titled with each clip's label) into the output folder. A class-conditional
model (the shipped one is conditioned on the spoken digit) generates the labels given with
``--digit`` (repeatable; clip i gets the (i mod k)-th of k given), by default all its labels in
turn (digits 0, 1, ..., 9, 0, ...). Each file is written under a temporary name and renamed when
complete, so an interrupted run leaves no partial WAV. The default checkpoint is the
small one shipped in ``tsmodels/assets/sashimi/`` (trained by ``tsm train experiment=sc_sashimi``).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import List, Optional

import torch
import typer

from tsmodels.errors import UserInputError
from tsmodels.io import atomic_path

SHIPPED_CKPT = "sashimi/sashimi.ckpt"


def default_checkpoint() -> Path:
    """Path of the SaShiMi checkpoint shipped in tsmodels/assets/sashimi/."""
    return Path(str(files("tsmodels") / "assets" / SHIPPED_CKPT))


def _model_config(ckpt_path: Path, ckpt: dict) -> dict:
    if isinstance(ckpt.get("model_config"), dict):
        return dict(ckpt["model_config"])
    # older checkpoints: the run's resolved config.yaml (runs/<name>/<time>/checkpoints/x.ckpt)
    for cand in (ckpt_path.parent / "config.yaml", ckpt_path.parent.parent / "config.yaml"):
        if cand.is_file():
            from omegaconf import OmegaConf

            model = OmegaConf.to_container(OmegaConf.load(cand), resolve=True).get("model")
            if isinstance(model, dict):
                return model
    raise UserInputError(f"{ckpt_path} holds no model configuration",
                         "use a checkpoint written by `tsm train experiment=sc_sashimi`")


def load_generator(ckpt_path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model of a generation checkpoint (Lightning .ckpt) with its weights, in eval mode.

    The model gets a ``label_names`` attribute: the names of its conditioning labels in embedding
    order (from the checkpoint; "0".."n_labels-1" if it has none), [] for an unconditional model.
    Raises UserInputError for a missing, unreadable or foreign checkpoint.
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise UserInputError(f"checkpoint {ckpt_path} not found",
                             "pass --ckpt with a .ckpt from runs/<name>/<time>/checkpoints/, or omit it for the shipped model")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, AttributeError, pickle.UnpicklingError) as e:
        raise UserInputError(f"checkpoint {ckpt_path} is corrupt or not a PyTorch checkpoint ({type(e).__name__})",
                             "re-train or re-download it; `tsm train experiment=sc_sashimi` writes one") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserInputError(f"{ckpt_path} is not a Lightning checkpoint (no state_dict)",
                             "use a checkpoint written by `tsm train experiment=sc_sashimi`")
    from hydra.utils import instantiate

    cfg = _model_config(ckpt_path, ckpt)
    try:
        model = instantiate(cfg)
    except Exception as e:
        raise UserInputError(f"cannot build the model of {ckpt_path}: {e}", "use a checkpoint of this tsmodels version") from e
    if not hasattr(model, "generate"):
        raise UserInputError(f"{ckpt_path} holds a {type(model).__name__}, which does not generate audio",
                             "use a SaShiMi checkpoint (experiment=sc_sashimi)")
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserInputError(f"weights in {ckpt_path} do not match its model configuration",
                             "the checkpoint is damaged or from another version; re-train it") from e
    n_labels = int(getattr(model, "n_labels", 0))
    names = ckpt.get("label_names")
    if not (isinstance(names, (list, tuple)) and len(names) == n_labels):
        names = [str(i) for i in range(n_labels)]
    model.label_names = [str(x) for x in names]
    return model.to(device).eval()


def label_indices(model: torch.nn.Module, digits: list[str] | None, n: int) -> torch.Tensor | None:
    """Embedding index (n,) int64 of each of the ``n`` clips: the labels ``digits`` (names, e.g.
    ["3", "7"]) in turn, or all the model's labels in turn when None; None for an unconditional model.

    Raises UserInputError for a name the model was not trained with, or labels for an
    unconditional model.
    """
    names = list(getattr(model, "label_names", []) or [])
    if not names:
        if digits:
            raise UserInputError("this checkpoint is unconditional (trained without labels), so --digit has no meaning",
                                 "omit --digit, or use a conditional checkpoint (`tsm train experiment=sc_sashimi`)")
        return None
    if not digits:
        return torch.arange(n) % len(names)
    unknown = [d for d in digits if str(d) not in names]
    if unknown:
        raise UserInputError(f"--digit {unknown[0]} is not a label of this checkpoint (it knows {', '.join(names)})",
                             f"pass --digit with one of: {', '.join(names)}")
    idx = [names.index(str(d)) for d in digits]
    return torch.tensor([idx[i % len(idx)] for i in range(n)], dtype=torch.long)


@dataclass
class GenerateOptions:
    """What `tsm generate audio` does: see :func:`generate_audio_command`."""

    ckpt: Optional[Path] = None
    n: int = 16
    seconds: float = 1.0
    temperature: float = 1.0
    seed: Optional[int] = None
    out: Path = Path("generated")
    progress: bool = True
    device: Optional[str] = None
    digits: Optional[list[str]] = None


def _check(opts: GenerateOptions) -> None:
    if opts.n < 1:
        raise UserInputError(f"--n must be at least 1, got {opts.n}", "pass --n 16")
    if not (opts.seconds > 0) or not math.isfinite(opts.seconds):
        raise UserInputError(f"--seconds must be a positive number, got {opts.seconds}", "pass --seconds 1.0")
    if not (opts.temperature > 0) or not math.isfinite(opts.temperature):
        raise UserInputError(f"--temperature must be positive, got {opts.temperature}", "pass --temperature 1.0 (lower is more conservative)")
    if opts.out.exists() and not opts.out.is_dir():
        raise UserInputError(f"--out {opts.out} exists and is not a folder", "pass a folder path for the WAV files")


def spectrogram_grid(waves: list, sample_rate: int, path: Path, titles: list[str] | None = None) -> None:
    """PNG grid of the spectrograms of ``waves`` (list of 1-D float arrays), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(waves)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        nfft = min(256, max(16, len(waves[i]) // 4))
        ax.specgram(waves[i], NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma")
        ax.set_title(titles[i] if titles else f"sample {i:02d}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"generated audio, {sample_rate} Hz (time s, frequency Hz)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def generate_audio(opts: GenerateOptions) -> list[Path]:
    """Generate ``opts.n`` clips and write them; returns the paths written (WAVs, then the PNG)."""
    import soundfile as sf

    from datamodules.speech import mu_law_decode

    _check(opts)
    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_generator(opts.ckpt or default_checkpoint(), device)
    labels = label_indices(model, opts.digits, opts.n)
    if labels is not None:
        labels = labels.to(device)
    sr = int(model.sample_rate)
    length = max(1, int(round(opts.seconds * sr)))
    opts.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device=device)
    if opts.seed is not None:
        gen.manual_seed(int(opts.seed))
    else:
        gen.seed()
    threads = torch.get_num_threads()
    if device == "cpu":
        # one sample at a time is a chain of tiny ops; extra threads only add hand-off cost
        torch.set_num_threads(1)
    try:
        if opts.progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(TextColumn("generating"), BarColumn(), TextColumn("{task.completed}/{task.total} samples"),
                          TimeRemainingColumn()) as bar:
                tid = bar.add_task("gen", total=length)
                tokens = model.generate(opts.n, length, opts.temperature, generator=gen, labels=labels,
                                        callback=lambda t: bar.update(tid, completed=t) if t % 100 == 0 or t == length else None)
        else:
            tokens = model.generate(opts.n, length, opts.temperature, generator=gen, labels=labels)
    finally:
        torch.set_num_threads(threads)
    bits = int(round(math.log2(model.n_classes)))
    waves = mu_law_decode(tokens.cpu(), bits).numpy()
    written = []
    for i, w in enumerate(waves):
        path = opts.out / f"sample_{i:02d}.wav"
        with atomic_path(path) as tmp:
            sf.write(str(tmp), w, sr, subtype="PCM_16", format="WAV")
        written.append(path)
    png = opts.out / "spectrograms.png"
    titles = [f"sample {i:02d}" + (f" (digit {model.label_names[int(labels[i])]})" if labels is not None else "")
              for i in range(opts.n)]
    spectrogram_grid(list(waves), sr, png, titles)
    written.append(png)
    return written


def generate_audio_command(
    ckpt: Optional[Path] = typer.Option(None, help="SaShiMi checkpoint (.ckpt). Default: the small model shipped with tsmodels."),
    n: int = typer.Option(16, help="Number of clips."),
    seconds: float = typer.Option(1.0, help="Length of each clip in seconds."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (> 0; lower is more conservative)."),
    seed: Optional[int] = typer.Option(None, help="Random seed; same seed, same audio on CPU."),
    out: Path = typer.Option(Path("generated"), help="Output folder for sample_XX.wav and spectrograms.png."),
    digit: Optional[List[str]] = typer.Option(
        None, help="Digit (label) to generate, for a conditional checkpoint; repeat for several (clips take them in "
                   "turn). Default: all the checkpoint's labels in turn."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Generate audio clips with SaShiMi: WAV files (PCM 16) and a PNG of their spectrograms."""
    paths = generate_audio(GenerateOptions(ckpt=ckpt, n=n, seconds=seconds, temperature=temperature, seed=seed,
                                           out=out, progress=not quiet, digits=digit or None))
    typer.echo(f"wrote {len(paths) - 1} WAV files and {paths[-1].name} to {out}")
