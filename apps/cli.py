"""The `tsm` command. Each subcommand is a thin wrapper over a function in apps/.

User errors (:class:`tsmodels.errors.UserInputError`) become one line ``error: ...`` on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from tsmodels.errors import UserInputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tsmodels: SpaceTime, S4/SaShiMi, T1 and friends for time series and physical fields.")


@app.command()
def forecast(
    csv: Optional[Path] = typer.Option(None, help="CSV with a time column and numeric target(s). Default: the bundled ETTh1 sample."),
    target: Optional[str] = typer.Option(None, help="Target column(s), comma-separated. Default: OT, or the only numeric column."),
    horizon: int = typer.Option(96, help="Steps to forecast."),
    lookback: Optional[int] = typer.Option(None, help="Input window length. Default: max(horizon, 96), at most 336 and what the series allows."),
    time_col: Optional[str] = typer.Option(None, "--time-col", help="Time column. Default: auto-detected."),
    out: Path = typer.Option(Path("forecast.csv"), help="Output CSV: timestamps, forecast, interval bounds."),
    plot: str = typer.Option("forecast.png", help="PNG of history, forecast and interval ('' for none)."),
    level: float = typer.Option(0.9, help="Prediction-interval coverage (split conformal on validation residuals)."),
    max_epochs: int = typer.Option(10, help="Training epochs of 25 random batches each (early stopping on validation)."),
    seed: int = typer.Option(0, help="Random seed; same seed, same result on CPU."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Fit SpaceTime on one series and forecast the next HORIZON steps with prediction intervals."""
    from apps.forecast import ForecastOptions, run_forecast

    run_forecast(ForecastOptions(csv=csv, target=target, horizon=horizon, lookback=lookback, time_col=time_col,
                                 out=out, plot=Path(plot) if plot else None, level=level,
                                 max_epochs=max_epochs, seed=seed, progress=not quiet))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    list_: bool = typer.Option(False, "--list", help="List the shipped experiments and exit."),
) -> None:
    """Train through Hydra: `tsm train experiment=NAME [key=value ...]` (e.g. trainer=gpu, trainer=smoke)."""
    from apps.train import list_experiments, train as run_train

    if list_:
        typer.echo("\n".join(list_experiments()))
        return
    overrides: List[str] = list(ctx.args)
    if not any(o.startswith("experiment=") for o in overrides):
        raise UserInputError("no experiment given", "run `tsm train experiment=NAME`; `tsm train --list` shows the names")
    run_train(overrides)


def _register_commands() -> None:
    """Subcommands that live in their own modules (each module's `*_command` holds its options)."""
    from apps.data import data_navier_stokes_command
    from apps.generate import generate_audio_command
    from apps.pde_bench import pde_bench_command
    from apps.predict import predict_command

    app.command("predict")(predict_command)
    app.command("pde-bench")(pde_bench_command)
    generate = typer.Typer(no_args_is_help=True, help="Generate samples from a trained model.")
    generate.command("audio")(generate_audio_command)
    app.add_typer(generate, name="generate")
    data = typer.Typer(no_args_is_help=True, help="Generate data sets (Navier-Stokes).")
    data.command("navier-stokes")(data_navier_stokes_command)
    app.add_typer(data, name="data")


_register_commands()


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the `tsm` console script."""
    try:
        app(args=argv, standalone_mode=False)
    except UserInputError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted — nothing was written", err=True)
        sys.exit(130)
    except Exception as e:
        # click usage errors (a bad option value) arrive here in non-standalone mode; typer
        # vendors click, so recognise them by their interface rather than their class
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            if not e.format_message():  # `tsm` with no arguments: help was printed
                sys.exit(e.exit_code)
            typer.echo(f"error: {e.format_message()} — see `tsm --help`", err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
