"""Several variables in one prior: a joint model of u10 and v10 over the Rhine box."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from hdm.conditioning.observations import ObservationError
from hdm.data.coarsen import coarse_grain
from hdm.domains.atmosphere import GRIDDED_DATASETS, open_split
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.downscaling.core import downscale

RHINE = GRIDDED_DATASETS["rhine"]


@pytest.fixture(scope="module")
def wind_model(tmp_path_factory):
    """A barely trained joint prior of u10 and v10 (the pipeline, not its quality)."""
    from hdm.downscaling.prior import load_prior
    from hdm.pipelines.config import train_config_from_dict
    from hdm.pipelines.train import run_training

    out = tmp_path_factory.mktemp("rhine_wind")
    cfg = train_config_from_dict(
        {
            "name": "rhine_wind",
            "data": {"dataset": "rhine", "variables": ["u10", "v10"]},
            "noise": {"kind": "spectral", "kernel": "matern", "lengthscale": 1.0},
            "model": {"width": 8, "n_modes": 8, "n_layers": 1, "time_dim": 16},
            "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        }
    )
    run_training(cfg, out, progress=False)
    return load_prior(out / "model.pt")


@pytest.fixture(scope="module")
def test_hours():
    return open_split(RHINE, "test").isel(time=slice(0, 2)).load()


def _u10_stations(truth):
    obs = simulate_observations(
        truth["u10"], stations_by_id(RHINE.conditioning_stations[:4]), 1.0, 0
    )
    return obs.assign_coords(variable=("obs", np.full(obs.sizes["obs"], "u10")))


def test_the_joint_prior_has_both_variables_with_their_own_statistics(wind_model, test_hours):
    assert wind_model.variables == ("u10", "v10")
    train = open_split(RHINE, "train")
    assert wind_model.units == {v: train[v].attrs["units"] for v in ("u10", "v10")}
    assert wind_model.channel("v10") == 1
    weights = np.cos(np.deg2rad(train.lat))  # the normaliser's area weights
    for var in ("u10", "v10"):
        mean, std = wind_model.stats(var)
        assert mean == pytest.approx(float(train[var].weighted(weights).mean()), rel=1e-4)
        assert std == pytest.approx(float(train[var].weighted(weights).std()), rel=1e-3)
    with pytest.raises(KeyError, match=r"no variable 'sp'; its variables are \['u10', 'v10'\]"):
        wind_model.channel("sp")
    with pytest.raises(ValueError, match="has variables"):
        wind_model.variable  # noqa: B018


def test_downscaling_writes_every_variable_and_uses_stations_of_one(wind_model, test_hours):
    coarse = coarse_grain(test_hours[["u10", "v10", "d2m"]], 4)
    with pytest.warns(UserWarning, match=r"variable\(s\) \['d2m'\] the model was not trained on"):
        ds = downscale(
            wind_model, coarse=coarse, stations=_u10_stations(test_hours), members=3, steps=4,
            sampler="heun", progress=False,
        )  # fmt: skip
    for var in ("u10", "v10"):
        assert ds[var].dims == ("member", "time", "lat", "lon")
        assert ds[var].shape == (3, 2, 41, 41) and np.isfinite(ds[var]).all()
        assert f"{var}_mean" in ds and f"{var}_std" in ds and f"{var}_quantile" in ds
    # each variable's members keep its own coarse means (the guidance reads its channel):
    # the ensemble means, coarse-grained, are closer to their own coarse field than to
    # the other variable's
    for var, other in (("u10", "v10"), ("v10", "u10")):
        cells = coarse_grain(ds[f"{var}_mean"], 4).values
        own = np.abs(cells - coarse[var].values).mean()
        cross = np.abs(cells - coarse[other].values).mean()
        assert np.isfinite(own) and own < cross
    # the noise attributes: one number for the one variable the stations observe
    assert ds.attrs["station_noise_std"] == pytest.approx(1.0)  # DEFAULT_STATION_NOISE
    assert set(json.loads(ds.attrs["coarse_noise_std"])) == {"u10", "v10"}


def test_a_coarse_input_without_one_of_the_models_variables_says_so(wind_model, test_hours):
    """A coarse file of u10 alone for the joint u10/v10 prior: v10 is drawn from the prior
    (and stations), which a warning names, not a silent run."""
    from hdm.downscaling.inputs import observation_setup

    coarse = coarse_grain(test_hours[["u10"]], 4)
    with pytest.warns(UserWarning, match=r"the coarse input holds no v10 \(of the model's 2"):
        setup = observation_setup(
            wind_model, wind_model.grid, dict(coarse.data_vars), None, test_hours.time.values,
            coarse_noise=0.05, station_noise={},
        )  # fmt: skip
    assert setup.coarse_channels == ("u10",)


def test_stations_without_a_variable_column_are_refused_for_a_joint_prior(wind_model, test_hours):
    obs = simulate_observations(
        test_hours["u10"], stations_by_id(RHINE.conditioning_stations[:2]), 1.0, 0
    )
    with pytest.raises(ObservationError, match=r"no 'variable' column; the model has variables"):
        downscale(wind_model, stations=obs, times=test_hours.time.values, members=1, steps=2,
                  progress=False)  # fmt: skip


def test_evaluation_scores_each_variable(wind_model, test_hours, tmp_path):
    from hdm.downscaling.output import attach_inputs, write_output
    from hdm.pipelines.evaluate import evaluate_downscale

    coarse = coarse_grain(test_hours[["u10", "v10"]], 4)
    obs = _u10_stations(test_hours)
    ds = downscale(wind_model, coarse=coarse, stations=obs, members=2, steps=3, sampler="heun",
                   progress=False)  # fmt: skip
    ds = attach_inputs(ds, {v: coarse[v] for v in ("u10", "v10")}, obs)
    store = write_output(ds, tmp_path / "wind.zarr")
    truth = [str(p) for p in RHINE.resolved_path()]
    report = evaluate_downscale(store, truth, checkpoint=wind_model.path)
    assert set(report["variables"]) == {"u10", "v10"}
    for var, r in report["variables"].items():
        assert r["variable"] == var and np.isfinite(r["rmse"]) and np.isfinite(r["crps"])
        assert r["best_baseline_rmse"]["value"] == min(
            r[f"rmse_{b}"] for b in ("bilinear", "bicubic", "kriging")
        )


def test_simulated_stations_of_variables_in_other_units_are_each_converted(
    wind_model, test_hours, tmp_path
):
    """v10 given in km/h beside u10 in m/s: each variable's simulated stations keep their
    own units through the batch job (one shared value column would label the v10 rows
    m/s and silently make them 3.6 times too large)."""
    from hdm.pipelines.job import run_downscale

    truth = test_hours[["u10", "v10"]].isel(time=[0]).copy()
    truth["v10"] = truth["v10"] * 3.6
    truth["v10"].attrs["units"] = "km h-1"
    path = tmp_path / "truth.nc"
    truth.to_netcdf(path)
    t = str(truth.time.values[0])[:13]
    run_downscale(
        wind_model.path, tmp_path / "out.zarr", progress=False, truth=str(path), factor=4,
        simulate_stations=",".join(RHINE.conditioning_stations[:4]),
        station_variables=["u10", "v10"], station_noise=1e-3, members=1, steps=2,
        sampler="heun", times=(t, t), plots=False,
        runaway_bound="none",  # a barely trained model: its members are not weather
    )  # fmt: skip
    from hdm.data.stores import open_store

    out = open_store(tmp_path / "out.zarr").load()
    v_rows = out["station_obs"].where(out["obs_variable"] == "v10", drop=True)
    lat, lon = v_rows["obs_lat"].values, v_rows["obs_lon"].values
    exact = (
        test_hours["v10"]
        .isel(time=0)
        .interp(lat=xr.DataArray(lat, dims="p"), lon=xr.DataArray(lon, dims="p"))
    )
    np.testing.assert_allclose(v_rows.values.ravel(), exact.values, atol=0.05)
