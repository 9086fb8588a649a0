"""2-D incompressible Navier-Stokes on the unit torus: our pseudo-spectral solver, NetCDF I/O and a
LightningDataModule for operator learning (FNO benchmark recipe, Li et al. 2021).

Vorticity form, periodic domain [0, 1)^2:

    dw/dt + u . grad(w) = nu * lap(w) + f,      u = (d psi/dy, -d psi/dx),   -lap(psi) = w

with forcing f(x, y) = 0.1 (sin 2pi(x + y) + cos 2pi(x + y)) and a Gaussian-random-field initial
vorticity w0 ~ N(0, 7^{3/2} (-lap + 49 I)^{-2.5}) (zero mean), as in the FNO data generator. Time
stepping: Crank-Nicolson for the viscous term, explicit (forward Euler) for advection and forcing,
2/3-rule dealiasing of the nonlinear term. Everything is batched torch.fft, so it runs on the GPU
for benchmark-sized sets (thousands of fields) and on the CPU for small test sets.

Files: NetCDF (xarray, engine h5netcdf) with ``vorticity`` (sample, time, x, y) at times
``record_dt * (1..steps)``, ``initial_vorticity`` (sample, x, y) and attributes for every
generation parameter and the seed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from datamodules._paths import data_root
from datamodules._splits import SplitLoaders
from tsmodels.errors import UserInputError
from tsmodels.io import atomic_path

FORCING = "0.1*(sin(2*pi*(x+y)) + cos(2*pi*(x+y)))"
REQUIRED_VARS = {"vorticity": ("sample", "time", "x", "y"), "initial_vorticity": ("sample", "x", "y")}


# --------------------------------------------------------------------------------------------
# solver
# --------------------------------------------------------------------------------------------


def wavenumbers(res: int, device=None, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer wavenumbers of an rfft2 grid of ``res`` x ``res``: kx (res, 1) over the full first
    axis, ky (1, res // 2 + 1) over the half last axis."""
    kx = torch.fft.fftfreq(res, d=1.0 / res, device=device, dtype=dtype).view(-1, 1)
    ky = torch.fft.rfftfreq(res, d=1.0 / res, device=device, dtype=dtype).view(1, -1)
    return kx, ky


def fno_forcing(res: int, device=None, dtype=torch.float64) -> torch.Tensor:
    """The FNO benchmark forcing 0.1 (sin 2pi(x+y) + cos 2pi(x+y)) on the grid x_i = i / res: (res, res)."""
    t = torch.arange(res, device=device, dtype=dtype) / res
    s = t.view(-1, 1) + t.view(1, -1)
    return 0.1 * (torch.sin(2 * math.pi * s) + torch.cos(2 * math.pi * s))


def gaussian_random_field(n: int, res: int, alpha: float = 2.5, tau: float = 7.0,
                          generator: torch.Generator | None = None, device=None,
                          dtype=torch.float64) -> torch.Tensor:
    """Samples of the FNO initial-condition field N(0, tau^{2 alpha - 2} (-lap + tau^2)^{-alpha})
    on the periodic unit square, zero mean: (n, res, res).

    The spectrum is the one of the FNO generator: per mode k, standard deviation
    sqrt(2) * tau^{alpha - 1} * (4 pi^2 |k|^2 + tau^2)^{-alpha / 2} (coefficients of a unit-period
    Fourier series), the k = 0 mode set to zero.
    """
    kx = torch.fft.fftfreq(res, d=1.0 / res, device=device, dtype=dtype).view(-1, 1)
    ky = kx.view(1, -1)
    sigma = tau ** (0.5 * (2 * alpha - 2))
    std = math.sqrt(2.0) * sigma * (4 * math.pi ** 2 * (kx ** 2 + ky ** 2) + tau ** 2) ** (-alpha / 2)
    std[0, 0] = 0.0
    # draw on the CPU with the given generator so that a seed gives the same field on every device
    noise = torch.randn(n, res, res, 2, generator=generator, dtype=dtype)
    coeff = torch.complex(noise[..., 0], noise[..., 1]).to(device) * std
    # norm="forward": the inverse is the plain Fourier series sum_k c_k e^{2 pi i k.x}
    return torch.fft.ifft2(coeff, norm="forward").real


def _deriv(k: torch.Tensor, res: int) -> torch.Tensor:
    """2 pi i k with the Nyquist wavenumber (|k| = res / 2) set to zero."""
    return 2j * math.pi * torch.where(k.abs() == res // 2, torch.zeros_like(k), k)


def velocity_from_vorticity(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity (u, v) = (d psi/dy, -d psi/dx) with -lap psi = w, spectrally: w (..., X, X) -> two (..., X, X).

    The mean of w (the k = 0 mode) and its Nyquist modes do not enter: a periodic stream function only
    sees zero-mean vorticity, and a real field's Nyquist mode has no representable derivative.
    """
    res = w.shape[-1]
    kx, ky = wavenumbers(res, device=w.device, dtype=w.dtype)
    lap = 4 * math.pi ** 2 * (kx ** 2 + ky ** 2)
    lap[0, 0] = 1.0
    psi_h = torch.fft.rfft2(w) / lap
    psi_h[..., 0, 0] = 0
    u = torch.fft.irfft2(_deriv(ky, res) * psi_h, s=w.shape[-2:])
    v = torch.fft.irfft2(-_deriv(kx, res) * psi_h, s=w.shape[-2:])
    return u, v


def spectral_divergence(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """du/dx + dv/dy computed spectrally: (..., X, X) -> (..., X, X)."""
    res = u.shape[-1]
    kx, ky = wavenumbers(res, device=u.device, dtype=u.dtype)
    return torch.fft.irfft2(_deriv(kx, res) * torch.fft.rfft2(u) + _deriv(ky, res) * torch.fft.rfft2(v), s=u.shape[-2:])


def spectral_curl(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Vorticity dv/dx - du/dy computed spectrally: (..., X, X) -> (..., X, X)."""
    res = u.shape[-1]
    kx, ky = wavenumbers(res, device=u.device, dtype=u.dtype)
    return torch.fft.irfft2(_deriv(kx, res) * torch.fft.rfft2(v) - _deriv(ky, res) * torch.fft.rfft2(u), s=u.shape[-2:])


def solve_navier_stokes(w0: torch.Tensor, viscosity: float, t_final: float, record_steps: int,
                        dt: float = 1e-3, forcing: torch.Tensor | None = None,
                        progress: bool = False) -> torch.Tensor:
    """Integrate the vorticity equation from w0 and record ``record_steps`` equally spaced snapshots.

    Args:
        w0: (B, X, X) initial vorticity (X even), any float dtype; computed in w0's dtype.
        viscosity: nu.
        t_final: end time; snapshots at t_final * j / record_steps, j = 1..record_steps.
        record_steps: number of snapshots.
        dt: time step (rounded down so that every record interval holds a whole number of steps).
        forcing: (X, X) time-independent forcing f, or None for the free (unforced) problem.
    Returns:
        (B, record_steps, X, X) vorticity in w0's dtype.

    Scheme (per step, in Fourier space, L = 4 pi^2 |k|^2):
        w_h <- [(1 - dt nu L / 2) w_h + dt (f_h - N_h)] / (1 + dt nu L / 2)
    where N = u . grad(w) is computed on the grid and its spectrum truncated by the 2/3 rule.
    """
    if w0.dim() != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] % 2:
        raise UserInputError(f"initial vorticity must be (batch, X, X) with X even, got {tuple(w0.shape)}",
                             "use an even resolution such as 64")
    res = w0.shape[-1]
    shape = w0.shape[-2:]
    kx, ky = wavenumbers(res, device=w0.device, dtype=w0.dtype)
    lap = 4 * math.pi ** 2 * (kx ** 2 + ky ** 2)
    inv_lap = 1.0 / torch.where(lap == 0, torch.ones_like(lap), lap)
    inv_lap[0, 0] = 0.0
    kmax = res // 2
    dealias = ((kx.abs() <= (2.0 / 3.0) * kmax) & (ky.abs() <= (2.0 / 3.0) * kmax)).to(w0.dtype)
    steps_per_record = max(1, math.ceil((t_final / record_steps) / dt - 1e-9))
    h = (t_final / record_steps) / steps_per_record
    # derivative operators with the Nyquist row/column zeroed: the derivative of a real field's
    # Nyquist mode is not representable on the grid (and the 2/3 rule removes it anyway)
    ikx, iky = _deriv(kx, res), _deriv(ky, res)
    # one batched inverse FFT per step gives u, v, dw/dx, dw/dy together
    ops = torch.stack([iky * inv_lap, -ikx * inv_lap, ikx.expand_as(lap), iky.expand_as(lap)]).unsqueeze(1)
    cn_num = 1.0 - 0.5 * h * viscosity * lap
    cn_den = 1.0 + 0.5 * h * viscosity * lap
    f_h = torch.fft.rfft2(forcing.to(w0)) if forcing is not None else None

    w_h = torch.fft.rfft2(w0)
    # small CPU FFTs gain nothing from threads, and lose a lot when the cores are shared
    threads = torch.get_num_threads()
    if w0.device.type == "cpu" and w0.numel() <= 2 ** 20:
        torch.set_num_threads(1)
    try:
        out = _integrate(w_h, ops, dealias, cn_num, cn_den, f_h, h, steps_per_record, record_steps, shape, progress)
    finally:
        torch.set_num_threads(threads)
    return out.to(w0.dtype)


def _integrate(w_h, ops, dealias, cn_num, cn_den, f_h, h, steps_per_record, record_steps, shape, progress):
    out = torch.empty(w_h.shape[0], record_steps, *shape, dtype=w_h.real.dtype, device=w_h.device)
    t0 = time.perf_counter()
    for j in range(record_steps):
        for _ in range(steps_per_record):
            d = torch.fft.irfft2(ops * w_h, s=shape)
            rhs = -torch.fft.rfft2(d[0] * d[2] + d[1] * d[3]) * dealias
            if f_h is not None:
                rhs = rhs + f_h
            w_h = (cn_num * w_h + h * rhs) / cn_den
        out[:, j] = torch.fft.irfft2(w_h, s=shape)
        if progress:
            print(f"  solver: record {j + 1}/{record_steps}, t={(j + 1) * h * steps_per_record:.3g}, "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# data sets on disk
# --------------------------------------------------------------------------------------------


def generate_navier_stokes(n: int, res: int = 64, steps: int = 20, viscosity: float = 1e-3,
                           record_dt: float = 1.0, dt: float = 1e-3, seed: int = 0,
                           batch_size: int = 256, device: str | None = None, alpha: float = 2.5,
                           tau: float = 7.0, progress: bool = False):
    """Generate ``n`` trajectories with the FNO recipe; returns an xarray.Dataset (in memory).

    Variables: ``vorticity`` (sample, time, x, y) float32 at t = record_dt * (1..steps) and
    ``initial_vorticity`` (sample, x, y). Attributes record every parameter and the seed. Solved in
    float64 on ``device`` (default: CUDA if available), in batches of ``batch_size`` trajectories.
    """
    import xarray as xr

    for name, value in (("n", n), ("res", res), ("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}", f"pass --{name} N with N >= 1")
    if res % 2 or res < 8:
        raise UserInputError(f"resolution {res} is not an even number >= 8", "pass --res 64 (or another even size)")
    for name, value in (("viscosity", viscosity), ("record_dt", record_dt), ("dt", dt)):
        if not value > 0:
            raise UserInputError(f"{name} must be positive, got {value}", f"pass a positive --{name.replace('_', '-')}")
    if dt > record_dt:
        raise UserInputError(f"dt={dt} is larger than the record interval {record_dt}", "pass a smaller --dt")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(seed)
    f = fno_forcing(res, device=device)
    w0_all, traj_all = [], []
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        w0 = gaussian_random_field(b, res, alpha=alpha, tau=tau, generator=gen, device=device)
        traj = solve_navier_stokes(w0, viscosity, record_dt * steps, steps, dt=dt, forcing=f)
        w0_all.append(w0.float().cpu().numpy())
        traj_all.append(traj.float().cpu().numpy())
        if progress:
            print(f"generated {start + b}/{n} trajectories ({time.perf_counter() - t0:.1f}s)", flush=True)
    grid = np.arange(res) / res
    ds = xr.Dataset(
        {
            "vorticity": (("sample", "time", "x", "y"), np.concatenate(traj_all)),
            "initial_vorticity": (("sample", "x", "y"), np.concatenate(w0_all)),
        },
        coords={"sample": np.arange(n), "time": record_dt * np.arange(1, steps + 1), "x": grid, "y": grid},
        attrs={
            "title": "2-D incompressible Navier-Stokes, vorticity form, unit torus (FNO benchmark recipe)",
            "generator": "tsmodels datamodules.navier_stokes (pseudo-spectral, Crank-Nicolson viscous term, "
                         "explicit advection, 2/3 dealiasing)",
            "n": int(n), "resolution": int(res), "steps": int(steps), "viscosity": float(viscosity),
            "record_dt": float(record_dt), "dt": float(dt), "seed": int(seed), "forcing": FORCING,
            "grf_alpha": float(alpha), "grf_tau": float(tau), "solver_dtype": "float64",
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return ds


def netcdf_engine() -> str:
    """xarray engine for NetCDF-4: ``h5netcdf`` (needs h5py), else ``netcdf4`` (the netCDF4 library).

    Both write the same NetCDF-4/HDF5 files; the fallback exists because an environment may ship
    h5netcdf without h5py (h5netcdf then cannot open anything).
    """
    import importlib.util

    if importlib.util.find_spec("h5netcdf") and importlib.util.find_spec("h5py"):
        return "h5netcdf"
    if importlib.util.find_spec("netCDF4"):
        return "netcdf4"
    raise UserInputError("no NetCDF-4 backend: neither h5netcdf+h5py nor netCDF4 is installed",
                         "pip install h5netcdf h5py")


def write_netcdf(ds, path: str | os.PathLike) -> Path:
    """Write an xarray.Dataset to ``path`` as NetCDF-4 (h5netcdf, see :func:`netcdf_engine`), atomically."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=netcdf_engine())
    # the temporary file was created private (0600); a data set is meant to be shared like any output
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def open_navier_stokes(path: str | os.PathLike):
    """Open a Navier-Stokes NetCDF lazily (xarray.open_dataset, h5netcdf or netcdf4) and check its layout.

    Raises UserInputError when the file is missing, unreadable, or lacks ``vorticity``
    (sample, time, x, y) / ``initial_vorticity`` (sample, x, y) with a square grid.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise UserInputError(f"Navier-Stokes file {path} not found",
                             "generate one with `tsm data navier-stokes --out FILE.nc` or pass --generate")
    try:
        ds = xr.open_dataset(path, engine=netcdf_engine())
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file from the user's side
        raise UserInputError(f"cannot read {path} as NetCDF ({type(e).__name__}: {e})",
                             "pass a NetCDF-4 file written by `tsm data navier-stokes`") from e
    for var, dims in REQUIRED_VARS.items():
        if var not in ds.variables:
            ds.close()
            raise UserInputError(f"{path} has no variable {var!r} (has: {', '.join(map(str, ds.data_vars)) or 'none'})",
                                 f"the file needs {var}{dims}; write it with `tsm data navier-stokes`")
        if tuple(ds[var].dims) != dims:
            got = tuple(ds[var].dims)
            ds.close()
            raise UserInputError(f"{path}: {var} has dims {got}, expected {dims}",
                                 "transpose/rename the dims (xarray: ds.transpose(...).rename(...)) or regenerate the file")
    if ds.sizes["x"] != ds.sizes["y"]:
        n = (ds.sizes["x"], ds.sizes["y"])
        ds.close()
        raise UserInputError(f"{path}: grid is {n[0]}x{n[1]}, expected square", "regenerate on a square grid")
    return ds


def default_cache_path(n: int, res: int, steps: int, viscosity: float, seed: int) -> Path:
    """Where generated sets are cached when no file is given: data_root()/navier_stokes/..."""
    return data_root() / "navier_stokes" / f"ns_v{viscosity:g}_n{n}_r{res}_T{steps}_s{seed}.nc"


# --------------------------------------------------------------------------------------------
# datamodule
# --------------------------------------------------------------------------------------------


class IndexBatches(Sampler):
    """Batches of sample indices as int64 tensors on ``device`` (the data's), for a TensorDataset.

    One host-to-device copy of the epoch's order instead of one per batch: a copy from pageable host
    memory waits for the GPU, so a per-batch copy would stall the host behind every training step
    (nothing queued ahead), and the loop's Python overhead would add to the GPU time instead of
    overlapping it. Shuffled orders come from torch's global generator, as RandomSampler's do.

    Args: n samples, batch_size (the last batch may be short), shuffle, device.
    Yields: (batch,) int64 index tensors; ``len`` is the number of batches.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, device: torch.device | str = "cpu"):
        self.n, self.batch_size, self.shuffle, self.device = int(n), int(batch_size), shuffle, torch.device(device)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        yield from order.to(self.device).split(self.batch_size)


class NavierStokesDataModule(SplitLoaders, pl.LightningDataModule):
    """Operator-learning pairs from a Navier-Stokes NetCDF file, split by sample (no leakage).

    Args:
        path: NetCDF file; None: generate with ``generate`` (dict of :func:`generate_navier_stokes`
            arguments) and cache it under data_root()/navier_stokes/.
        mode: ``"autoregressive"``: x = frames [0, t_in), y = frames [t_in, t_in + t_out) (FNO's
            10 -> 10 setup; a model maps t_in frames to the next ``out_channels`` = 1 frame and is
            rolled out); ``"direct"``: x = initial vorticity, y = the frame at ``t_final`` (index, default last).
        t_in, t_out: frame counts for autoregressive mode.
        resolution: evaluate at a coarser grid by striding; must divide the file's resolution.
        n_train, n_val, n_test: sample counts (the first samples train, then val, then test);
            None: n_test = n_val = round(n / 12), n_train the rest (1000/100/100 for 1200 samples).
        batch_size, num_workers: DataLoader settings.
        device: keep the splits on this device (e.g. "cuda": a 1000-trajectory 64 x 64 set is ~0.3 GB), so a
            batch is one gather on the GPU instead of a host-to-device copy; None keeps them on the CPU.

    Batches: (x, y) float32, x (B, in_channels, R, R), y (B, T_y, R, R) with T_y = t_out or 1.
    Attributes filled into model ``???`` keys: ``in_channels``, ``out_channels``, ``resolution``,
    ``t_out``, plus ``attrs`` (the file's generation parameters).
    """

    def __init__(self, path: str | os.PathLike | None = None, mode: str = "autoregressive", t_in: int = 10,
                 t_out: int = 10, t_final: int | None = None, resolution: int | None = None,
                 n_train: int | None = None, n_val: int | None = None, n_test: int | None = None,
                 batch_size: int = 20, num_workers: int = 0, generate: dict[str, Any] | None = None,
                 device: str | torch.device | None = None):
        super().__init__()
        if mode not in ("autoregressive", "direct"):
            raise UserInputError(f"unknown mode {mode!r}", "use mode=autoregressive or mode=direct")
        self.mode = mode
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        if path is None or str(path) == "":
            g = dict(generate or {})
            g.setdefault("n", 1200)
            g.setdefault("res", 64)
            g.setdefault("steps", 20)
            g.setdefault("viscosity", 1e-3)
            g.setdefault("seed", 0)
            path = default_cache_path(g["n"], g["res"], g["steps"], g["viscosity"], g["seed"])
            if not path.exists():
                write_netcdf(generate_navier_stokes(progress=True, **g), path)
        self.path = Path(path)
        ds = open_navier_stokes(self.path)
        try:
            self.attrs = dict(ds.attrs)
            n_samples, n_time, file_res = ds.sizes["sample"], ds.sizes["time"], ds.sizes["x"]
            self.file_resolution = int(file_res)
            self.resolution = int(resolution) if resolution else self.file_resolution
            if self.resolution < 1 or file_res % self.resolution:
                raise UserInputError(f"resolution {self.resolution} does not divide the file's grid {file_res}",
                                     f"pick a divisor of {file_res}, e.g. {file_res // 2}")
            stride = file_res // self.resolution
            if mode == "autoregressive":
                if t_in < 1 or t_out < 1 or t_in + t_out > n_time:
                    raise UserInputError(f"t_in={t_in} + t_out={t_out} frames do not fit the file's {n_time} time steps",
                                         f"pick t_in + t_out <= {n_time} or generate more --steps")
                frames = ds["vorticity"][:, : t_in + t_out, ::stride, ::stride].values.astype(np.float32)
                x, y = frames[:, :t_in], frames[:, t_in:]
                self.in_channels, self.out_channels, self.t_out = int(t_in), 1, int(t_out)
            else:
                idx = n_time - 1 if t_final is None else int(t_final)
                if not -n_time <= idx < n_time:
                    raise UserInputError(f"target frame {t_final} is outside the file's {n_time} recorded frames",
                                         f"pick a frame index in 0..{n_time - 1} (or -1 for the last)")
                idx %= n_time
                x = ds["initial_vorticity"][:, ::stride, ::stride].values[:, None].astype(np.float32)
                y = ds["vorticity"][:, idx: idx + 1, ::stride, ::stride].values.astype(np.float32)
                self.in_channels, self.out_channels, self.t_out = 1, 1, 1
                # the target's 0-based frame index and its time (the file's time coordinate)
                self.target_frame = idx
                self.target_time = float(ds["time"].values[idx]) if "time" in ds.coords else None
        finally:
            ds.close()
        self.t_in = int(t_in) if mode == "autoregressive" else 1
        if n_val is None:
            n_val = max(1, round(n_samples / 12))
        if n_test is None:
            n_test = max(1, round(n_samples / 12))
        if n_train is None:
            n_train = n_samples - n_val - n_test
        if min(n_train, n_val, n_test) < 1 or n_train + n_val + n_test > n_samples:
            raise UserInputError(f"split {n_train}/{n_val}/{n_test} does not fit {n_samples} samples",
                                 "lower n_train/n_val/n_test or generate more samples")
        self.n_train, self.n_val, self.n_test = int(n_train), int(n_val), int(n_test)
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        if device is not None:
            xt, yt = xt.to(device), yt.to(device)
            self.num_workers = 0  # worker processes cannot share CUDA tensors
        a, b, c = self.n_train, self.n_train + self.n_val, self.n_train + self.n_val + self.n_test
        self.train_dataset = TensorDataset(xt[:a], yt[:a])
        self.val_dataset = TensorDataset(xt[a:b], yt[a:b])
        self.test_dataset = TensorDataset(xt[b:c], yt[b:c])
        self.split_indices = {"train": range(0, a), "val": range(a, b), "test": range(b, c)}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = getattr(self, f"{split}_dataset")
        # whole batches of indices: TensorDataset answers an index tensor with one gather per tensor,
        # instead of batch_size single-sample reads and a stack
        return DataLoader(ds, sampler=IndexBatches(len(ds), self.batch_size, shuffle, ds.tensors[0].device),
                          batch_size=None, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
