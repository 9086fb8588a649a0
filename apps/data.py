"""`tsm data navier-stokes`: generate a Navier-Stokes data set (FNO recipe) into a NetCDF file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def navier_stokes(n: int = 1200, res: int = 64, steps: int = 20, viscosity: float = 1e-3, out: str | Path = "ns.nc",
                  seed: int = 0, record_dt: float = 1.0, dt: float = 1e-3, device: str | None = None,
                  batch_size: int = 256, progress: bool = True) -> Path:
    """Generate ``n`` vorticity trajectories (res x res, ``steps`` frames every ``record_dt``) with our
    pseudo-spectral solver and write them atomically to ``out`` (NetCDF, h5netcdf). Returns the path."""
    from datamodules.navier_stokes import generate_navier_stokes, write_netcdf
    from tsmodels.errors import UserInputError

    out = Path(out)
    if out.suffix.lower() not in (".nc", ".nc4", ".netcdf"):
        raise UserInputError(f"output {out} does not end in .nc", "pass --out FILE.nc")
    if device is not None and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserInputError(f"--device {device} asked for but no CUDA device is available", "drop --device or use --device cpu")
    ds = generate_navier_stokes(n=n, res=res, steps=steps, viscosity=viscosity, record_dt=record_dt, dt=dt,
                                seed=seed, batch_size=batch_size, device=device, progress=progress)
    path = write_netcdf(ds, out)
    if progress:
        print(f"wrote {path}: vorticity {tuple(ds['vorticity'].shape)} (sample, time, x, y), "
              f"nu={viscosity:g}, {ds.attrs['seconds']:.1f}s")
    return path


def data_navier_stokes_command(
    n: int = typer.Option(1200, help="Number of trajectories (samples)."),
    res: int = typer.Option(64, help="Grid size (res x res, even)."),
    steps: int = typer.Option(20, help="Recorded time frames per trajectory."),
    viscosity: float = typer.Option(1e-3, help="Viscosity nu (FNO benchmark: 1e-3, 1e-4, 1e-5)."),
    out: Path = typer.Option(Path("navier_stokes.nc"), help="Output NetCDF file (written atomically)."),
    seed: int = typer.Option(0, help="Random seed of the initial conditions."),
    record_dt: float = typer.Option(1.0, "--record-dt", help="Time between recorded frames."),
    dt: float = typer.Option(1e-3, help="Solver time step."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda. Default: cuda if available."),
    batch_size: int = typer.Option(256, "--batch-size", help="Trajectories solved together."),
) -> None:
    """Generate 2-D Navier-Stokes vorticity data (FNO recipe) as NetCDF: dims (sample, time, x, y)."""
    navier_stokes(n=n, res=res, steps=steps, viscosity=viscosity, out=out, seed=seed, record_dt=record_dt, dt=dt,
                  device=device, batch_size=batch_size)
