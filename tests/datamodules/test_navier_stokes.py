"""Navier-Stokes solver accuracy, NetCDF round trip and the datamodule's splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datamodules.navier_stokes import (
    NavierStokesDataModule,
    fno_forcing,
    gaussian_random_field,
    generate_navier_stokes,
    open_navier_stokes,
    solve_navier_stokes,
    spectral_curl,
    spectral_divergence,
    velocity_from_vorticity,
    write_netcdf,
)
from tsmodels.errors import UserInputError


def _grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


def test_single_fourier_mode_decays_exactly():
    # a single mode has u . grad(w) = 0, so only viscosity acts: w(t) = w0 exp(-nu |k|^2 (2 pi)^2 t)
    x = _grid(16)
    kx, ky, nu = 2, 1, 1e-2
    w0 = torch.cos(2 * math.pi * (kx * x.view(-1, 1) + ky * x.view(1, -1)))
    out = solve_navier_stokes(w0[None], nu, t_final=1.0, record_steps=4, dt=1e-3)
    for j in range(4):
        t = 0.25 * (j + 1)
        expected = w0 * math.exp(-nu * (kx ** 2 + ky ** 2) * (2 * math.pi) ** 2 * t)
        torch.testing.assert_close(out[0, j], expected, rtol=0, atol=1e-6)


def test_taylor_green_vortex_decays_exactly():
    x = _grid(32)
    nu = 5e-3
    w0 = torch.sin(2 * math.pi * x.view(-1, 1)) * torch.sin(2 * math.pi * x.view(1, -1))
    w0 = torch.stack([w0, 2 * w0])  # two amplitudes: the nonlinear term must vanish for both
    out = solve_navier_stokes(w0, nu, t_final=2.0, record_steps=2, dt=2e-3)
    decay = math.exp(-2 * nu * (2 * math.pi) ** 2 * 2.0)
    torch.testing.assert_close(out[:, -1], w0 * decay, rtol=0, atol=1e-6)


def test_velocity_is_divergence_free_and_has_the_vorticity():
    w = gaussian_random_field(3, 32, generator=torch.Generator().manual_seed(1))
    # keep the modes whose derivatives the grid represents (drop Nyquist)
    wh = torch.fft.rfft2(w)
    wh[..., 16, :] = 0
    wh[..., :, 16] = 0
    w = torch.fft.irfft2(wh, s=(32, 32))
    u, v = velocity_from_vorticity(w)
    assert spectral_divergence(u, v).abs().max() < 1e-10
    torch.testing.assert_close(spectral_curl(u, v), w, rtol=0, atol=1e-10)
    assert u.abs().max() > 1e-3


def test_grf_statistics_and_forced_run_are_sane():
    w = gaussian_random_field(64, 32, generator=torch.Generator().manual_seed(0))
    assert abs(w.mean().item()) < 1e-10  # zero-mean field (k = 0 mode removed)
    assert 0.05 < w.std().item() < 5
    f = fno_forcing(32)
    torch.testing.assert_close(f[3, 5], torch.tensor(0.1 * (math.sin(2 * math.pi * 8 / 32) + math.cos(2 * math.pi * 8 / 32)),
                                                      dtype=torch.float64))
    out = solve_navier_stokes(w[:4], 1e-3, 1.0, 4, dt=5e-3, forcing=f)
    assert torch.isfinite(out).all()
    # the spatial mean of vorticity is conserved (forcing and nonlinear term have zero mean)
    assert out.mean(dim=(-1, -2)).abs().max() < 1e-10


@pytest.fixture(scope="module")
def tiny_nc(tmp_path_factory):
    ds = generate_navier_stokes(n=12, res=16, steps=6, viscosity=1e-3, record_dt=0.25, dt=1e-2, seed=3, device="cpu")
    return write_netcdf(ds, tmp_path_factory.mktemp("ns") / "tiny.nc"), ds


def test_netcdf_round_trip_is_lazy_and_keeps_attrs(tiny_nc):
    path, ds = tiny_nc
    back = open_navier_stokes(path)
    try:
        assert back["vorticity"].dims == ("sample", "time", "x", "y")
        assert back["vorticity"].shape == (12, 6, 16, 16)
        # not read yet: xarray holds a lazy array until .values
        assert not isinstance(back["vorticity"].variable._data, np.ndarray)
        np.testing.assert_array_equal(back["vorticity"].values, ds["vorticity"].values)
        for key in ("viscosity", "seed", "resolution", "steps", "dt", "record_dt", "forcing", "n"):
            assert back.attrs[key] == ds.attrs[key]
        np.testing.assert_allclose(back["time"].values, 0.25 * np.arange(1, 7))
    finally:
        back.close()


def test_same_seed_same_data():
    a = generate_navier_stokes(n=2, res=16, steps=2, record_dt=0.1, dt=1e-2, seed=5, device="cpu")
    b = generate_navier_stokes(n=2, res=16, steps=2, record_dt=0.1, dt=1e-2, seed=5, device="cpu")
    np.testing.assert_array_equal(a["vorticity"].values, b["vorticity"].values)


def test_datamodule_pairs_splits_and_attributes(tiny_nc):
    path, ds = tiny_nc
    dm = NavierStokesDataModule(path=path, t_in=3, t_out=3, n_train=8, n_val=2, n_test=2, batch_size=4)
    assert (dm.in_channels, dm.out_channels, dm.resolution, dm.t_out) == (3, 1, 16, 3)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (2, 3, 16, 16) and y.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    v = ds["vorticity"].values
    np.testing.assert_allclose(x[0].numpy(), v[8, :3])
    np.testing.assert_allclose(y[0].numpy(), v[8, 3:6])
    idx = {k: set(r) for k, r in dm.split_indices.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert [len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)] == [8, 2, 2]
    # an epoch of shuffled batches covers every training pair once (batches of 4, 4)
    batches = list(dm.train_dataloader())
    assert [b[0].shape[0] for b in batches] == [4, 4]
    seen = sorted(map(tuple, torch.cat([b[0][:, 0, 0, :2] for b in batches]).tolist()))
    assert seen == sorted(map(tuple, torch.from_numpy(v[:8, 0, 0, :2]).tolist()))
    # coarser evaluation grid by striding, direct mode (initial -> last frame)
    dm2 = NavierStokesDataModule(path=path, mode="direct", resolution=8, n_train=8, n_val=2, n_test=2)
    x2, y2 = dm2.test_dataset.tensors
    assert x2.shape == (2, 1, 8, 8) and y2.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(y2[0, 0].numpy(), v[10, -1, ::2, ::2])
    np.testing.assert_allclose(x2[0, 0].numpy(), ds["initial_vorticity"].values[10, ::2, ::2])


def test_bad_files_and_settings_raise_user_errors(tiny_nc, tmp_path):
    import xarray as xr

    from datamodules.navier_stokes import netcdf_engine

    path, ds = tiny_nc
    with pytest.raises(UserInputError, match="not found"):
        open_navier_stokes(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    xr.Dataset({"u": (("a", "b"), np.zeros((2, 2)))}).to_netcdf(bad, engine=netcdf_engine())
    with pytest.raises(UserInputError, match="no variable 'vorticity'"):
        open_navier_stokes(bad)
    swapped = tmp_path / "swapped.nc"
    ds.transpose("time", "sample", "x", "y").to_netcdf(swapped, engine=netcdf_engine())
    with pytest.raises(UserInputError, match="expected \\('sample', 'time', 'x', 'y'\\)"):
        open_navier_stokes(swapped)
    text = tmp_path / "text.nc"
    text.write_text("not netcdf")
    with pytest.raises(UserInputError, match="cannot read"):
        open_navier_stokes(text)
    with pytest.raises(UserInputError, match="does not divide"):
        NavierStokesDataModule(path=path, t_in=3, t_out=3, resolution=6)
    with pytest.raises(UserInputError, match="do not fit"):
        NavierStokesDataModule(path=path, t_in=4, t_out=4)
    with pytest.raises(UserInputError, match="even"):
        generate_navier_stokes(n=2, res=15, steps=2)


def test_index_batches_cover_every_sample_once_and_follow_the_seed():
    from datamodules.navier_stokes import IndexBatches

    sampler = IndexBatches(23, 5, shuffle=True)
    torch.manual_seed(1)
    first = list(sampler)
    assert len(first) == len(sampler) == 5 and [len(b) for b in first] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(first).tolist()) == list(range(23))
    assert all(b.dtype == torch.int64 for b in first)
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(first, sampler))  # same seed, same order
    assert not torch.equal(torch.cat(first), torch.cat(list(sampler)))  # a new order each epoch
    assert torch.equal(torch.cat(list(IndexBatches(7, 3, shuffle=False))), torch.arange(7))
