"""The shallow-water testbed (issue: the whole globe, item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.data.coarsen import coarse_grain_sphere
from hdm.domains.shallow_water import (
    ShallowWaterConfig,
    generate,
    open_shallow_water,
    simulate,
    split_of,
)
from hdm.pipelines.cli import main

TINY = ShallowWaterConfig(
    nlat=17, nlon=32, trajectories=4, states=3, spin_up_hours=12.0, every_hours=6.0,
    dt_seconds=600.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return generate(TINY, tmp_path_factory.mktemp("sw") / "sw.zarr", progress=False)


def test_the_states_keep_the_mass_of_the_fluid(store):
    """∫ h dΩ is an invariant of the shallow-water equations: its drift over a trajectory
    is round-off, while the depth itself moves by tens of metres."""
    ds = xr.open_zarr(store)
    assert ds["h"].dims == ("trajectory", "step", "lat", "lon") and ds.sizes["step"] == 3
    assert float(ds["mass_drift"].max()) < 1e-7
    change = float(np.abs(ds["h"].isel(step=-1) - ds["h"].isel(step=0)).max())
    assert change > 10.0 and np.isfinite(ds["u"].values).all()
    assert 9_000 < float(ds["h"].mean()) < 11_000 and ds["u"].attrs["units"] == "m s-1"


def test_a_trajectory_is_its_seed():
    again = simulate(TINY, 1)
    np.testing.assert_array_equal(again, simulate(TINY, 1))
    other = simulate(ShallowWaterConfig(**{**TINY.__dict__, "seed": 1}), 1)
    assert np.abs(other - again)[:, 0].max() > 10.0


def test_splits_are_whole_trajectories(store):
    assert split_of(10).tolist() == ["train"] * 8 + ["validation", "test"]
    assert split_of(4).tolist() == ["train", "train", "validation", "test"]
    train, test = open_shallow_water(store, "train"), open_shallow_water(store, "test")
    assert train.sizes["sample"] == 2 * 3 and test.sizes["sample"] == 3
    assert not set(train["trajectory"].values) & set(test["trajectory"].values)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        open_shallow_water(store, "val")


def test_the_command_refuses_an_odd_longitude_count(tmp_path, capsys):
    code = main(["shallow-water", "--out", str(tmp_path / "x.zarr"), "--nlon", "63"])
    assert code == 2 and "an even nlon >= 8, got 65 x 63" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_a_spherical_prior_trains_on_the_testbed_and_samples_the_globe(store, tmp_path):
    """hdm train with the sphere config (2 steps) → a TimeConditionedSFNO with a
    spherical Q; hdm sample draws h, u, v on its global grid and hdm.downscale
    conditions it on sphere cells."""
    import hdm
    from hdm.downscaling.prior import load_prior
    from hdm.hilbert.covariance import SphericalCovariance
    from hdm.hilbert.spherical_network import TimeConditionedSFNO
    from hdm.pipelines.config import TrainRunConfig, load_config
    from hdm.pipelines.train import run_training

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(
        TrainRunConfig,
        root / "configs" / "sphere" / "shallow_water.yaml",
        [
            f"data.path={store}", "optim.steps=2", "optim.batch_size=2", "optim.warmup_steps=1",
            "optim.checkpoint_every=2", "model.width=8", "model.n_layers=1", "model.n_modes=5",
        ],
    )  # fmt: skip
    run_training(cfg, tmp_path / "prior", progress=False)
    prior = load_prior(tmp_path / "prior")
    assert isinstance(prior.denoiser.backbone, TimeConditionedSFNO)
    assert isinstance(prior.denoiser.process.covariance, SphericalCovariance)
    assert prior.variables == ("h", "u", "v") and prior.grid.shape == (17, 32)
    out = tmp_path / "samples.nc"
    assert (
        main(["sample", str(tmp_path / "prior"), "--n", "2", "--steps", "3", "--out", str(out)])
        == 0
    )
    samples = xr.open_dataset(out)
    assert samples["h"].dims == ("sample", "lat", "lon") and np.isfinite(samples["u"]).all()
    assert samples["h"].attrs["units"] == "m" and float(samples["lat"][0]) == -90.0
    # the winds are one vector field, normalised alike, and the samples lie in Q's range:
    # winds of band-limited stream function and potential, a band-limited height
    covariance = prior.denoiser.process.covariance
    assert covariance.vector == (1, 2) and covariance.band_limit == 11
    assert prior.stats("u") == prior.stats("v") and prior.stats("u")[0] == 0.0
    fields = torch.as_tensor(np.stack([samples[v].values for v in ("h", "u", "v")], axis=1))
    kept = covariance.project_field(fields.double(), prior.grid)  # float32 sampling: 1e-4
    assert float((kept - fields).norm() / fields.norm()) < 1e-3
    state = open_shallow_water(store, "test").isel(sample=[0])
    state = state.drop_vars(["sample", "trajectory", "step", "hours", "split", "mass_drift"])
    state = state.rename(sample="time").assign_coords(time=[np.datetime64("2000-01-01", "ns")])
    out = hdm.downscale(prior, coarse_grain_sphere(state, 4), members=2, steps=3, progress=False)
    assert out["h"].shape == (2, 1, 17, 32) and np.isfinite(out["v"]).all()


def test_a_planar_prior_trains_on_the_testbed_as_a_periodic_box(store, tmp_path):
    """model.kind fno on a global store (the planar comparison): a planar FNO with a
    planar Q on the same points as a lat-lon box periodic in longitude."""
    from hdm.downscaling.prior import load_prior
    from hdm.hilbert.covariance import SpectralCovariance
    from hdm.hilbert.grids import LatLonGrid
    from hdm.hilbert.networks import TimeConditionedFNO
    from hdm.pipelines.config import TrainRunConfig, load_config
    from hdm.pipelines.train import run_training

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(
        TrainRunConfig,
        root / "configs" / "sphere" / "shallow_water_planar.yaml",
        [
            f"data.path={store}", "optim.steps=2", "optim.batch_size=2", "optim.warmup_steps=1",
            "optim.checkpoint_every=2", "model.width=8", "model.n_layers=1", "model.n_modes=4",
            "model.n_modes_2=4",
        ],
    )  # fmt: skip
    run_training(cfg, tmp_path / "planar", progress=False)
    prior = load_prior(tmp_path / "planar")
    assert isinstance(prior.denoiser.backbone, TimeConditionedFNO)
    assert isinstance(prior.denoiser.process.covariance, SpectralCovariance)
    assert isinstance(prior.grid, LatLonGrid) and prior.grid.axes[1].periodic
    assert prior.grid.coords()[0][0] == -90.0 and prior.grid.shape == (17, 32)


def test_the_shipped_spherical_prior_draws_fluid_of_the_testbeds_depth(tmp_path):
    """data/checkpoints/shallow_water: h, u, v on 33 × 64 in physical units; the fluid's
    area-mean depth is the testbed's 10 km (mass is what the states conserve)."""
    from hdm.hilbert.grids import GlobalGrid

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "s.nc"
    args = ["sample", str(root / "data/checkpoints/shallow_water"), "--n", "4", "--steps", "8"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    ds = xr.open_dataset(out)
    weights = GlobalGrid.make(33, 64).weights()
    depth = (ds["h"].values * weights).sum(axis=(1, 2)) / weights.sum()
    assert ds["h"].shape == (4, 33, 64) and np.isfinite(ds["v"]).all()
    np.testing.assert_allclose(depth, 10_000.0, rtol=0.01)


def test_the_spherical_prior_samples_one_function_on_a_twice_finer_globe(tmp_path):
    """hdm sample --scale 2 on the shipped prior: 65 × 128 samples that equal the 33 × 64
    ones of the same seed at the shared points (the noise of a seed is one function, and
    the network is an operator), to well within 3 % of the field's spread."""
    root = Path(__file__).resolve().parents[1]
    paths = {}
    for scale in (1, 2):
        paths[scale] = tmp_path / f"s{scale}.nc"
        args = ["sample", str(root / "data/checkpoints/shallow_water"), "--n", "2", "--steps", "8"]
        args += ["--scale", str(scale), "--out", str(paths[scale]), "--no-progress"]
        assert main(args) == 0
    coarse, fine = (xr.open_dataset(paths[s]) for s in (1, 2))
    assert fine["u"].shape == (2, 65, 128) and fine.attrs["training_grid"].startswith("global 33")
    for v in ("h", "u", "v"):
        gap = fine[v].values[:, ::2, ::2] - coarse[v].values
        assert np.sqrt(np.mean(gap**2)) < 0.03 * float(coarse[v].std()), v
