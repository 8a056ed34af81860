"""hdm.downscale and the downscale / evaluate commands on the shipped UK t2m data."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from hdm.conditioning.observations import ObservationError
from hdm.data.coarsen import coarse_grain, conservative_regrid
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.downscaling.core import downscale
from hdm.pipelines.cli import main

UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
STATIONS = "UKM00003808,UKM00003882,UKM00003354"
#: the tiny model (conftest) is barely trained: its members are not weather and reach
#: 1e2-1e3 training stds, so these plumbing tests turn the run-away bound off
UNTRAINED = {"runaway_bound": None}


@pytest.fixture(scope="module")
def truth():
    return open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T01"))["t2m"].load()


def _stations(truth, noise=0.5):
    return simulate_observations(truth, stations_by_id(STATIONS.split(",")), noise, 0)


def test_downscale_returns_members_and_summaries_in_kelvin(tiny_model, truth):
    coarse = coarse_grain(truth, 4)
    ds = downscale(
        tiny_model,
        coarse=coarse,
        stations=_stations(truth),
        members=2,
        steps=2,
        guidance="sda",
        **UNTRAINED,
        progress=False,
    )
    assert ds["t2m"].dims == ("member", "time", "lat", "lon")
    assert ds["t2m"].shape == (2, 2, 33, 49)
    assert np.isfinite(ds["t2m"]).all()
    assert ds["t2m"].attrs["units"] == "K"
    np.testing.assert_allclose(ds["t2m_mean"], ds["t2m"].mean("member"), rtol=1e-6)
    assert ds.attrs["stations"] == STATIONS
    assert ds.attrs["sampler"] == "heun"  # the default: 2N − 1 NFE
    assert ds.attrs["nfe_per_member"] == 3
    # The same seed gives the same members; the members of a time do not depend on
    # which other times are downscaled with it.
    one = downscale(
        tiny_model,
        coarse=coarse.isel(time=[1]),
        stations=_stations(truth),
        members=2,
        steps=2,
        guidance="sda",
        **UNTRAINED,
        progress=False,
    )
    np.testing.assert_array_equal(one["t2m"].isel(time=0), ds["t2m"].isel(time=1))


def test_zero_shot_grid_is_twice_as_fine(tiny_model, truth):
    ds = downscale(
        tiny_model,
        coarse=coarse_grain(truth.isel(time=[0]), 4),
        members=1,
        grid=2,
        steps=2,
        guidance="sda",
        **UNTRAINED,
        progress=False,
    )
    assert ds["t2m"].shape == (1, 1, 65, 97)
    assert np.isfinite(ds["t2m"]).all()


def test_nan_station_values_are_dropped_with_a_count(tiny_model, truth):
    obs = _stations(truth)
    obs["value"][0] = np.nan
    with pytest.warns(UserWarning, match="dropping 1 NaN station observation"):
        downscale(
            tiny_model,
            coarse=coarse_grain(truth, 4),
            stations=obs,
            members=1,
            steps=1,
            guidance="sda",
            progress=False,
        )
    with pytest.raises(ObservationError, match=r"1 station observation.* NaN"):
        downscale(
            tiny_model,
            coarse=coarse_grain(truth, 4),
            stations=obs,
            members=1,
            steps=1,
            nan="error",
            progress=False,
        )


@pytest.mark.parametrize(
    "lat, lon",
    [
        (np.arange(49.5, 59.0, 0.7), np.arange(-10.5, 3.0, 0.7)),  # 0.7°, cut by the edges
        (np.arange(49.0, 59.0), np.arange(-9.5, 3.0)),  # 1°, edges on grid points
    ],
    ids=["0.7deg", "1deg-offset"],
)
def test_coarse_fields_on_any_grid_are_downscaled(tiny_model, truth, lat, lon):
    """A conservative coarse field of the truth on a grid that is no block of the model's:
    the members' means over the same cells (the same regridding) match the coarse values
    to within twice the coarse noise (2 % of the training std) in RMS."""
    coarse = conservative_regrid(truth, lat, lon)
    ds = downscale(tiny_model, coarse=coarse, members=2, steps=30, progress=False)
    assert ds["t2m"].shape == (2, 2, 33, 49) and np.isfinite(ds["t2m"]).all()
    misfit = conservative_regrid(ds["t2m"], lat, lon) - coarse
    noise = 0.02 * tiny_model.mean_std[1]
    assert float(np.sqrt((misfit**2).mean())) < 2 * noise


def test_bad_inputs_are_named(tiny_model, truth):
    coarse = coarse_grain(truth, 4)
    far = _stations(truth).assign_coords(lat=("obs", np.full(6, 60.0)))
    with pytest.raises(ObservationError, match="station UKM00003808 at lat=60 lies outside"):
        downscale(tiny_model, coarse=coarse, stations=far, members=1, progress=False)
    late = _stations(truth).assign_coords(
        time=("obs", np.full(6, np.datetime64("2019-03-25T00:40", "ns")))
    )
    with pytest.raises(
        ObservationError, match="no station observation lies within 10min of a field time"
    ):
        downscale(
            tiny_model,
            coarse=coarse,
            stations=late,
            members=1,
            time_tolerance="10min",
            progress=False,
        )
    # a coarse field on any grid is taken (test_coarse_fields_on_any_grid_...), one outside
    # the domain is not
    north = coarse.assign_coords(lat=coarse.lat.values + 10.0)
    with pytest.raises(ObservationError, match=r"coarse grid \(lat \[59.8.*does not overlap"):
        downscale(tiny_model, coarse=north, members=1, progress=False)
    with pytest.raises(ValueError, match="station_noise: the observation noise std must be"):
        downscale(
            tiny_model,
            coarse=coarse,
            stations=_stations(truth),
            station_noise=0.0,
            members=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="members must be at least 1"):
        downscale(tiny_model, coarse=coarse, members=0, progress=False)


def test_cli_downscale_and_evaluate_round_trip(tiny_model, tmp_path, capsys):
    out = tmp_path / "uk.zarr"
    args = [
        "downscale",
        tiny_model.path,
        "--truth",
        str(UK_FILE),
        "--factor",
        "4",
        "--simulate-stations",
        STATIONS,
        "--members",
        "2",
        "--steps",
        "20",
        "--sampler",
        "em",
        "--guidance",
        "sda",
        "--times",
        "2019-03-25T00",
        "2019-03-25T01",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    assert out.exists() and list(tmp_path.glob("uk_*.png"))
    assert main(args) == 2  # exists: refused without --overwrite
    assert "--overwrite to replace it" in capsys.readouterr().err
    code = main(
        [
            "evaluate",
            "downscale",
            "--prediction",
            str(out),
            "--truth",
            str(UK_FILE),
            "--heldout-stations",
            "UKM00003171,UKM00003257",
            "--json",
            "--plots",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "rmse",
        "rmse_bicubic",
        "rmse_kriging",
        "crps",
        "crps_kriging",
        "spread_skill",
        "coverage50",
        "heldout_rmse",
        "heldout_rmse_kriging",
        "laplacian_ratio_sea",
        "laplacian_ratio_land",
    ):
        assert np.isfinite(report[key]), key
    assert report["coverage90"] is None  # 2 members cannot resolve a 90 % interval
    assert report["members"] == 2 and report["times"] == 2
    # a barely trained prior's members drawn by Euler–Maruyama are rough, and the speckle
    # number sees it where ERA5 is smooth: over the sea (measured 2.3 sea, 0.77 land)
    sea, land = report["laplacian_ratio_sea"], report["laplacian_ratio_land"]
    assert sea > 1.25 and sea > 1.5 * land
    best = report["best_baseline_rmse"]
    # optimal interpolation with the training covariance is scored beside kriging
    # the tiny model trains on 2019-03-01..24 hourly: 576 fields
    assert np.isfinite(report["rmse_oi"]) and report["oi_fields"] == 576
    baselines = ("bilinear", "bicubic", "kriging", "oi")
    assert best["value"] == min(report[f"rmse_{b}"] for b in baselines)
    assert report[f"rmse_{best['baseline']}"] == best["value"]
    # a point forecast's CRPS is its mean absolute error, on the scale of the others
    assert report["crps_bicubic"] >= report["best_baseline_crps"]["value"]
    # two times are one block of a day: no bootstrap interval, never a point
    assert report["spread_skill_ci95"] is None
    assert (tmp_path / "eval_rank_histogram.png").exists()
    assert (tmp_path / "eval_spectra.png").exists()


def test_members_beyond_the_runaway_bound_end_the_cli_run_in_one_line(tiny_model, tmp_path, capsys):
    """The default bound (50 training stds) refuses the barely trained model's members
    (1e2-1e3 stds, not weather): exit 1 and one line naming the member, time and bound;
    ``--runaway-bound none`` lets them through; a bound that is no number is bad input."""
    args = ["downscale", tiny_model.path, "--truth", str(UK_FILE), "--factor", "4"]
    args += ["--members", "2", "--steps", "2", "--guidance", "sda", "--no-progress"]
    args += ["--times", "2019-03-25T00", "2019-03-25T00", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "a.zarr")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"member \d at 2019-03-25T00:00:00 ran away: .*training stds "
                     r"\(runaway_bound 50\)", err), err  # fmt: skip
    assert "Traceback" not in err
    assert main([*args, "--out", str(tmp_path / "b.zarr"), "--runaway-bound", "none"]) == 0
    assert main([*args, "--out", str(tmp_path / "c.zarr"), "--runaway-bound", "big"]) == 2
    assert "runaway_bound must be" in capsys.readouterr().err


def test_cli_names_an_unknown_station(tiny_model, tmp_path, capsys):
    code = main(
        [
            "downscale",
            tiny_model.path,
            "--truth",
            str(UK_FILE),
            "--factor",
            "4",
            "--simulate-stations",
            "UKM00003809",
            "--out",
            str(tmp_path / "x.zarr"),
            "--times",
            "2019-03-25T00",
            "2019-03-25T00",
        ]
    )
    assert code == 2
    assert "UKM00003809" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_time_selection_without_data_is_an_error(tiny_model, truth):
    with pytest.raises(ValueError, match="2020-01-01T00:00:00 not in the coarse field"):
        downscale(
            tiny_model,
            coarse=coarse_grain(truth, 4),
            times=pd.to_datetime(["2020-01-01T00"]),
            members=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="selects no time of the coarse field"):
        downscale(
            tiny_model,
            coarse=coarse_grain(truth, 4),
            times=slice("2020-01-01", "2020-01-02"),
            members=1,
            progress=False,
        )


def test_igra2_surface_levels_are_station_observations(tiny_model, truth):
    from hdm.domains.radiosondes import atmos_data_dir
    from hdm.domains.stations import read_stations

    path = atmos_data_dir() / "igra2" / "USM00070026-data_2010-06-01_subset.txt"
    with pytest.warns(UserWarning):  # the shipped sample ends with a truncated sounding
        obs = read_stations(path)
    # Line 2 of the file: the surface level of 2010-06-01 00 UTC, 0.0 °C → 273.15 K.
    assert obs["value"].attrs["units"] == "K"
    assert abs(float(obs["value"][0]) - 273.1) < 0.06
    assert str(obs["id"].values[0]) == "USM00070026"
    # Barrow, Alaska is not in the British Isles: the error names the station.
    with pytest.raises(ObservationError, match=r"station USM00070026 at lat=71\.2889 lies outside"):
        downscale(
            tiny_model, coarse=coarse_grain(truth, 4), stations=obs, members=1, progress=False
        )


def test_downscaling_demo_writes_store_maps_and_metrics(tmp_path, capsys):
    from hdm.pipelines.demo import run_downscale_demo

    written = run_downscale_demo(tmp_path, members=2, steps=10, sampler="heun")
    names = {p.name for p in written}
    assert "uk_t2m_2019-03-28.zarr" in names
    assert {"uk_t2m_2019-03-28_rank_histogram.png", "uk_t2m_2019-03-28_spectra.png"} <= names
    assert all(p.exists() for p in written)
    report = json.loads((tmp_path / "uk_t2m_2019-03-28_metrics.json").read_text())
    assert report["times"] == 4 and report["members"] == 2
    assert report["rmse"] < report["rmse_bicubic"]  # 19 NFE already beat interpolation
    assert "RMSE kriging" in capsys.readouterr().out


def test_inflation_widens_only_the_spread_the_observations_do_not_see(tiny_model, truth):
    from hdm.conditioning.inflation import InflationConfig
    from hdm.downscaling.core import inflate_ensemble

    coarse = coarse_grain(truth, 4)
    stations = _stations(truth)
    kw = dict(coarse=coarse, stations=stations, members=3, steps=2, guidance="sda", **UNTRAINED)
    raw = downscale(tiny_model, progress=False, **kw)
    wide = downscale(tiny_model, progress=False, inflation=1.5, **kw)
    assert wide.attrs["inflation"] == 1.5 and raw.attrs["inflation"] == 1.0
    np.testing.assert_allclose(wide["t2m_mean"], raw["t2m_mean"], atol=1e-3)
    assert float(wide["t2m_std"].mean()) > float(raw["t2m_std"].mean())
    # Every member keeps its coarse cell means (the observed part of its deviation).
    np.testing.assert_allclose(
        coarse_grain(wide["t2m"], 4), coarse_grain(raw["t2m"], 4), rtol=0, atol=0.05
    )
    assert float(np.abs(wide["t2m"] - raw["t2m"]).max()) > 1.0
    # Inflating the stored ensemble afterwards gives the same members.
    again = inflate_ensemble(raw, tiny_model, coarse, stations, 1.5)
    np.testing.assert_allclose(again["t2m"], wide["t2m"], atol=1e-3)
    auto = inflate_ensemble(
        raw, tiny_model, coarse, stations, "auto", options=InflationConfig(draws=4, steps=2)
    )
    assert 1.0 <= auto.attrs["inflation"] <= 2.0
    assert auto.attrs["inflation_innovations"] == 2 * 3  # 2 times x 3 stations
    assert np.isfinite(auto["t2m"]).all()
    # other stations than the run's are refused: λ and the kept values are the run's
    with pytest.raises(ValueError, match=r"not those the ensemble was conditioned on"):
        fewer = stations.where(stations["id"] != stations["id"].values[0], drop=True)
        inflate_ensemble(raw, tiny_model, coarse, fewer, 1.5)


def test_inputs_in_celsius_downscale_as_in_kelvin(tiny_model, truth):
    from hdm.data.units import UnitsError

    coarse, obs = coarse_grain(truth, 4), _stations(truth)
    kw = {"members": 2, "steps": 2, "guidance": "sda", "progress": False, **UNTRAINED}
    kelvin = downscale(tiny_model, coarse=coarse, stations=obs, **kw)
    c_coarse = (coarse - 273.15).assign_attrs({**coarse.attrs, "units": "degC"})
    c_obs = obs.assign(value=(obs["value"] - 273.15).assign_attrs(units="°C"))
    celsius = downscale(tiny_model, coarse=c_coarse, stations=c_obs, **kw)
    assert celsius["t2m"].attrs["units"] == "K"
    # the same members, up to the float32 rounding of the °C inputs
    np.testing.assert_allclose(celsius["t2m"], kelvin["t2m"], atol=2e-3)
    # °C values without units lie ~40 training stds from the model's mean: named, not sampled
    bare = coarse - 273.15
    bare.attrs = {}
    with pytest.raises(ObservationError, match=r"coarse field's values lie \d+ training stds"):
        downscale(tiny_model, coarse=bare, **kw)
    with pytest.raises(UnitsError, match=r"^the coarse field t2m is in 'm s-1' .* to 'K'"):
        downscale(tiny_model, coarse=coarse.assign_attrs(units="m s-1"), **kw)


def test_cli_converts_celsius_truth_and_stations_and_stores_kelvin(tiny_model, tmp_path, capsys):
    from hdm.data.stores import open_store

    times = ["2019-03-25T00", "2019-03-25T01"]
    kelvin = open_fields(UK_FILE, "t2m", time=slice(*times)).load()
    celsius = kelvin.assign(t2m=(kelvin.t2m - 273.15).assign_attrs(units="degC"))
    celsius.to_netcdf(tmp_path / "truth_degC.nc")
    obs = simulate_observations(kelvin.t2m, stations_by_id(STATIONS.split(",")), 0.0, 0)
    table = pd.DataFrame(
        {
            "id": obs["id"].values,
            "lat": obs["lat"].values,
            "lon": obs["lon"].values,
            "time": pd.to_datetime(obs["time"].values).strftime("%Y-%m-%dT%H:%M"),
            "value": obs["value"].values - 273.15,
        }
    )
    table.to_csv(tmp_path / "stations_degC.csv", index=False)
    out = tmp_path / "uk.zarr"
    inputs = ["--truth", str(tmp_path / "truth_degC.nc"), "--factor", "4"]
    stations = ["--stations", str(tmp_path / "stations_degC.csv"), "--station-units", "degC"]
    # sde2m: Heun (the default) at 2 steps with SDA throws this barely trained model's
    # members hundreds of K away; the stochastic solver stays near the data
    run = ["--members", "2", "--steps", "2", "--sampler", "sde2m", "--guidance", "sda"]
    run += ["--scheduler", "synchronous"]
    where = ["--times", *times, "--out", str(out), "--no-progress"]
    # without --station-units the table's °C are far from the model's K: exit 2, no store
    assert main(["downscale", tiny_model.path, *inputs, *stations[:2], *run, *where]) == 2
    assert "station observations lie" in capsys.readouterr().err and not out.exists()
    code = main(["downscale", tiny_model.path, *inputs, *stations, *run, *where])
    assert code == 0, capsys.readouterr().err
    ds = open_store(out)
    assert ds["t2m"].attrs["units"] == "K" and ds["t2m_coarse"].attrs["units"] == "K"
    np.testing.assert_allclose(
        ds["t2m_coarse"].values, coarse_grain(kelvin.t2m, 4).values, atol=2e-4
    )
    assert ds["station_obs"].attrs["units"] == "K"
    np.testing.assert_allclose(np.sort(ds["station_obs"].values), np.sort(obs["value"]), atol=1e-9)
    # sampled in K (a barely trained model: near the truth, not 273 K away from it)
    assert abs(float(ds["t2m_mean"].mean()) - float(kelvin.t2m.mean())) < 50
    # evaluating against the truth in °C, in °C under the CMIP name tas, or in K gives the
    # same scores; a truth without one of the prediction's times is one line naming it
    celsius.rename(t2m="tas").to_netcdf(tmp_path / "tas_degC.nc")
    reports = []
    for truth in (tmp_path / "truth_degC.nc", tmp_path / "tas_degC.nc", UK_FILE):
        args = ["evaluate", "downscale", "--prediction", str(out), "--truth", str(truth)]
        assert main([*args, "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    for key in ("rmse", "crps", "rmse_bicubic"):
        for other in reports[1:]:
            assert reports[0][key] == pytest.approx(other[key], abs=1e-4), key
    celsius.isel(time=[1]).to_netcdf(tmp_path / "one_time.nc")
    args = ["evaluate", "downscale", "--prediction", str(out), "--truth"]
    assert main([*args, str(tmp_path / "one_time.nc")]) == 2
    assert "lacks 1 of the prediction's 2 times (first: 2019-03-25T00:00:00)" in (
        capsys.readouterr().err
    )


def test_inputs_far_from_training_are_refused_past_twenty_stds(tiny_model, truth):
    from hdm.downscaling.inputs import FAR_FROM_TRAINING, check_near_training

    mean, std = tiny_model.mean_std
    field = coarse_grain(truth, 4)
    sign = np.where(np.random.default_rng(0).random(field.shape) < 0.5, -1.0, 1.0)
    # every value z σ from the mean, on either side: the median distance is z
    check_near_training(
        tiny_model, {"t2m": field.copy(data=mean + (FAR_FROM_TRAINING - 0.5) * std * sign)}, {}
    )
    with pytest.raises(ObservationError, match=r"coarse field's values lie 20 training stds"):
        far = field.copy(data=mean + (FAR_FROM_TRAINING + 0.4) * std * sign)
        check_near_training(tiny_model, {"t2m": far}, {})


def test_one_missing_value_code_among_good_values_is_named(tiny_model, truth):
    """A −9999 at one station, or netCDF's default fill in one coarse cell, passes the
    median check; it is named (station and time, or the cell) instead of pulling the
    members to it until they run away."""
    from hdm.downscaling.inputs import check_near_training

    stations = _stations(truth)
    check_near_training(tiny_model, {}, {"t2m": stations})  # the good values pass
    bad = stations.copy(deep=True)
    bad["value"][1] = -9999.0
    with pytest.raises(ObservationError, match=rf"station {bad['id'].values[1]} at 2019-03-25T"):
        check_near_training(tiny_model, {}, {"t2m": bad})
    field = coarse_grain(truth, 4).load()
    field[1, 2, 3] = 9.96921e36
    with pytest.raises(
        ObservationError,
        match=r"coarse value at time 2019-03-25T01:00, lat 52.37.* lon -6.625 .* missing-value",
    ):
        check_near_training(tiny_model, {"t2m": field}, {})


@pytest.mark.parametrize("convention", ["cds names", "descending lat", "0..360 lon"])
def test_in_memory_inputs_get_the_conventions_of_files(tiny_model, truth, convention):
    """The same coarse field under CDS names, with latitude descending or longitudes in
    0..360 gives the members of the normalised input, bit for bit."""
    coarse = coarse_grain(truth, 4)
    if convention == "cds names":
        other = coarse.rename(lat="latitude", lon="longitude").to_dataset(name="t2m")
    elif convention == "descending lat":
        other = coarse.isel(lat=slice(None, None, -1))
    else:
        other = coarse.assign_coords(lon=np.mod(coarse.lon, 360.0)).sortby("lon")
    run = {"members": 2, "steps": 2, "sampler": "heun", "progress": False, **UNTRAINED}
    expected = downscale(tiny_model, coarse, **run)["t2m"].values
    np.testing.assert_array_equal(downscale(tiny_model, other, **run)["t2m"].values, expected)


def test_stations_with_longitudes_in_0_360_are_the_same_stations(tiny_model, truth):
    obs = _stations(truth)
    turned = obs.assign_coords(lon=("obs", np.mod(obs["lon"].values, 360.0)))
    assert (turned["lon"].values > 180).any()
    run = {"members": 2, "steps": 2, "sampler": "heun", "progress": False, **UNTRAINED}
    expected = downscale(tiny_model, stations=obs, times=truth.time.values, **run)["t2m"].values
    got = downscale(tiny_model, stations=turned, times=truth.time.values, **run)["t2m"].values
    np.testing.assert_array_equal(got, expected)


def _station_table(rows) -> xr.Dataset:
    frame = pd.DataFrame(rows, columns=["id", "lat", "lon", "time", "value"])
    frame["time"] = pd.to_datetime(frame["time"])
    return xr.Dataset.from_dataframe(frame.rename_axis("obs"))


def test_station_rows_take_the_nearest_observation_and_refuse_ambiguous_ones(tiny_model):
    """Two observations of one station within the time tolerance of a field time: the
    nearer is used; two different values at the same instant, or one id at two places,
    is one error naming the station."""
    from hdm.downscaling.inputs import observation_setup

    times = np.array(["2019-03-25T00", "2019-03-25T06"], dtype="datetime64[ns]")
    mean, std = tiny_model.mean_std

    def setup(rows):
        return observation_setup(
            tiny_model, tiny_model.grid, None, _station_table(rows), times,
            coarse_noise={}, station_noise=0.5, time_tolerance="30min",
        )  # fmt: skip

    near = setup(
        [
            ("A", 51.5, -0.4, "2019-03-25T00:10", 281.0),  # 10 min from 00 UTC: taken
            ("A", 51.5, -0.4, "2019-03-24T23:40", 279.0),  # 20 min, later in the table
            ("A", 51.5, -0.4, "2019-03-25T06:00", 283.0),
        ]
    )
    np.testing.assert_allclose(near.values * std + mean, [[281.0], [283.0]], rtol=1e-9)
    with pytest.raises(ObservationError, match=r"station A has two values at 2019-03-25T00"):
        setup([("A", 51.5, -0.4, "2019-03-25T00:00", v) for v in (280.0, 281.0)])
    same = setup([("A", 51.5, -0.4, "2019-03-25T00:00", 280.0)] * 2)  # a repeated row
    assert np.isfinite(same.values[0]).all()
    with pytest.raises(ObservationError, match=r"station A is at two positions, \(51.5, -0.4\)"):
        setup([("A", 51.5, -0.4, "2019-03-25T00", 280), ("A", 52.5, -0.4, "2019-03-25T06", 281)])


@pytest.mark.parametrize(
    ("methods", "points"),
    [
        ("area: point", True),
        ("lat: lon: point", True),
        ("time: mean area: point (interval: 1 degree)", True),
        ("area: mean time: point", False),
        ("area: mean where land", False),
        ("", False),
    ],
)
def test_point_sampled_reads_the_horizontal_cell_method(methods, points):
    from hdm.downscaling.inputs import point_sampled

    assert point_sampled(xr.DataArray([0.0], attrs={"cell_methods": methods})) is points


def test_a_point_sampled_coarse_field_is_observed_at_its_points_not_as_cell_means(tiny_model):
    """Every 4th point of the truth (in °C, CF "area: point"): the operator reads the
    (K) truth back exactly at those points; read as 1° cell means, as a field without
    cell_methods is, the same values miss the truth's cell means by over a kelvin at the
    coasts. A point grid that leaves the north of the domain open is refused."""
    from hdm.downscaling.inputs import observation_setup

    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T06"])["t2m"].load()
    grid, (mean, std) = tiny_model.grid, tiny_model.mean_std
    points = (truth.isel(lat=slice(None, None, 4), lon=slice(None, None, 4)) - 273.15).assign_attrs(
        units="degC", cell_methods="area: point"
    )

    def setup(field):
        return observation_setup(
            tiny_model, grid, {"t2m": field}, None, truth["time"].values,
            coarse_noise=0.05, station_noise={},
        )  # fmt: skip

    as_points = setup(points)
    x = torch.as_tensor((truth.values - mean) / std)[:, None]
    read = as_points.operator.apply(x, grid).numpy()
    assert read.shape == (1, 9 * 13)
    np.testing.assert_allclose(read * std + mean, as_points.values * std + mean, atol=1e-4)
    as_means = setup(points.assign_attrs(cell_methods=""))
    gap = np.abs(as_means.operator.apply(x, grid).numpy() - as_means.values) * std
    assert np.nanmax(gap) > 1.0
    with pytest.raises(ObservationError, match=r"coarse points cover lat \[50, 54\]"):
        setup(points.sel(lat=slice(None, 54.5)))


def test_cmip_names_are_taken_as_the_models_variables(tiny_model):
    """A file of CMIP names (tas beside pr) gives the model's t2m from tas, the values
    untouched, and names pr as not the model's; a name that is not the same quantity
    (zg for z) is never taken."""
    from hdm.data.schema import variable_in
    from hdm.downscaling.inputs import model_fields

    kelvin = open_fields(UK_FILE, "t2m", time=["2019-03-25T00"]).load()
    cmip = kelvin.rename(t2m="tas").assign(pr=kelvin.t2m * 0.0)
    with pytest.warns(UserWarning, match=r"holds variable\(s\) \['pr'\] the model was not"):
        fields = model_fields(cmip, tiny_model, "input cmip.nc")
    assert list(fields) == ["t2m"]
    np.testing.assert_array_equal(fields["t2m"].values, kelvin.t2m.values)
    assert variable_in(["zg", "ua"], "z") is None and variable_in(["zg", "ua"], "u") == "ua"


def test_a_dimension_beyond_time_lat_lon_is_dropped_if_single_else_named(tiny_model):
    """An ensemble ``number`` of one member is dropped; of three, it is named (which to
    downscale is the user's choice), never broadcast into the members; a scalar time is
    the field's one time, and no time at all is named with what to do."""
    import warnings

    from hdm.downscaling.inputs import model_fields

    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T06"])["t2m"].load()
    coarse = coarse_grain(truth, 4)
    one = model_fields(coarse.expand_dims(number=[0]).to_dataset(), tiny_model, "input c.nc")
    xr.testing.assert_identical(one["t2m"], coarse.transpose("time", "lat", "lon"))
    three = coarse.expand_dims(number=[0, 1, 2]).to_dataset()
    with pytest.raises(ValueError, match=r"input c.nc's t2m has a dimension 'number' \(3 values"):
        model_fields(three, tiny_model, "input c.nc")
    # one variable under another name is the model's one variable, with no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        renamed = model_fields(coarse.rename("temperature").to_dataset(), tiny_model, "c.nc")
    assert list(renamed) == ["t2m"]
    # one field saved with its time as a scalar coordinate is that time's field
    scalar = model_fields(coarse.isel(time=0).to_dataset(), tiny_model, "input c.nc")
    xr.testing.assert_allclose(
        scalar["t2m"].reset_coords(drop=True), one["t2m"].reset_coords(drop=True)
    )
    with pytest.raises(ValueError, match=r"missing \['time'\]; give the field its valid time"):
        model_fields(coarse.isel(time=0, drop=True).to_dataset(), tiny_model, "input c.nc")


def test_a_curvilinear_coarse_field_is_refused_with_what_to_do(tiny_model):
    from hdm.downscaling.inputs import model_fields

    rlat, rlon = np.linspace(-4, 4, 5), np.linspace(-6, 6, 7)
    grid_r, grid_l = np.meshgrid(rlat, rlon, indexing="ij")
    rotated = xr.Dataset(
        {"tas": (("time", "rlat", "rlon"), np.full((1, 5, 7), 280.0), {"units": "K"})},
        coords={
            "time": np.array(["2019-03-26T00"], "datetime64[ns]"),
            "lat": (("rlat", "rlon"), 54 + grid_r + 0.1 * grid_l),
            "lon": (("rlat", "rlon"), -4 + 1.5 * grid_l),
        },
    )
    with pytest.raises(ValueError, match=r"curvilinear grid .* over \('rlat', 'rlon'\)"):
        model_fields(rotated, tiny_model, "input rotated.nc")


def test_coarse_cells_finer_than_the_grid_sampled_are_refused_unless_sampled_finer(tiny_model):
    """0.2° cells over the 0.25° UK grid: nothing to downscale there, one line saying so;
    sampled on the 0.125° grid (--scale 2) the same cells are observed."""
    from hdm.downscaling.inputs import observation_setup
    from hdm.downscaling.prior import target_grid

    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T06"])["t2m"].load()
    fine = conservative_regrid(truth, np.arange(50.0, 58.01, 0.2), np.arange(-10.0, 2.01, 0.2))

    def setup(grid):
        return observation_setup(
            tiny_model, grid, {"t2m": fine}, None, truth["time"].values,
            coarse_noise=0.05, station_noise={},
        )  # fmt: skip

    with pytest.raises(ObservationError, match=r"\(0.2 wide\) are finer than the grid sampled"):
        setup(tiny_model.grid)
    assert setup(target_grid(tiny_model, 2)).values.shape[1] > 1000


def test_coarse_cells_beyond_the_measured_factors_are_warned_of(tiny_model):
    """×12 blocks of the 0.25° grid are coarser than any factor whose calibration has
    been measured (×2–×8): a warning names the factor; ×8 runs without one."""
    import warnings

    from hdm.downscaling.inputs import observation_setup

    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T06"])["t2m"].load()

    def setup(factor):
        return observation_setup(
            tiny_model, tiny_model.grid, {"t2m": coarse_grain(truth, factor)}, None,
            truth["time"].values, coarse_noise=0.05, station_noise={},
        )  # fmt: skip

    with pytest.warns(UserWarning, match=r"cells of x12 the training spacing, beyond x8"):
        setup(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert setup(8).values.shape[1] == 4 * 6


def test_an_in_memory_prediction_with_its_inputs_is_evaluated_like_a_store(tiny_model, truth):
    """hdm.downscale's dataset, with its inputs attached, is read by read_downscale
    without a store: its ensemble variable is found, and kriging of 1.5° cells (not
    blocks of the grid) is built from the cells it overlaps."""
    from hdm.downscaling.output import attach_inputs
    from hdm.pipelines.evaluate import kriging_baseline, read_downscale

    cells = conservative_regrid(truth, np.arange(50.5, 58, 1.5), np.arange(-9.5, 2, 1.5))
    ds = downscale(
        tiny_model, coarse=cells, members=2, steps=2, guidance="sda", **UNTRAINED,
        progress=False,
    )  # fmt: skip
    ev = read_downscale(attach_inputs(ds, {"t2m": cells}, None), UK_FILE)
    assert ev.variable == "t2m" and ev.factor is None
    assert ev.coarse.attrs["cell_methods"] == "area: mean"
    krig = kriging_baseline(ev, tiny_model.path)
    again = conservative_regrid(krig["mean"], cells.lat.values, cells.lon.values)
    assert float(np.abs(again - cells).max()) < 0.3  # the cells' means, to their noise


def test_evaluate_krigs_point_values_as_points(tiny_model, tmp_path, capsys):
    """Points every 4th grid point (a 9 × 13 lattice, not the ×4 blocks' grid), stored as
    points: kriging and OI observe them at the points (so they reproduce the truth
    there), bilinear and bicubic interpolate them, and the best baseline is chosen among
    all four."""
    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T06"])["t2m"].load()
    points = truth.isel(lat=slice(None, None, 4), lon=slice(None, None, 4))
    points.assign_attrs(cell_methods="area: point").to_dataset().to_netcdf(tmp_path / "p.nc")
    out = tmp_path / "p.zarr"
    run = ["--members", "2", "--steps", "2", "--sampler", "sde2m", "--guidance", "sda"]
    args = ["downscale", tiny_model.path, "--coarse", str(tmp_path / "p.nc"), *run]
    args += ["--scheduler", "synchronous", "--out", str(out), "--no-progress", "--no-plots"]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    evaluate = ["evaluate", "downscale", "--prediction", str(out), "--truth", str(UK_FILE)]
    assert main([*evaluate, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert xr.open_zarr(out)["t2m_coarse"].attrs["cell_methods"] == "area: point"
    names = ("bilinear", "bicubic", "kriging", "oi")
    assert report["best_baseline_rmse"]["value"] == min(report[f"rmse_{n}"] for n in names)
    # OI with the training covariance from exact points beats interpolating them
    assert report["rmse_oi"] < report["rmse_bicubic"]


def test_one_member_is_written_without_spread_and_not_scored_as_an_ensemble(
    tiny_model, tmp_path, capsys
):
    """--members 1: the member is written, its std and quantiles are NaN (undefined, not
    0); hdm evaluate downscale refuses it in one line (exit 2) instead of scoring a
    spread of nothing."""
    out = tmp_path / "one.zarr"
    args = ["downscale", tiny_model.path, "--truth", str(UK_FILE), "--factor", "4"]
    args += ["--times", "2019-03-25T06", "2019-03-25T06", "--members", "1", "--steps", "2"]
    args += ["--guidance", "sda", "--runaway-bound", "none", "--scheduler", "synchronous"]
    assert main([*args, "--out", str(out), "--no-progress", "--no-plots"]) == 0
    ds = xr.open_zarr(out)
    assert np.isfinite(ds["t2m"]).all() and np.isnan(ds["t2m_std"]).all()
    assert np.isnan(ds["t2m_quantile"]).all()
    capsys.readouterr()
    evaluate = ["evaluate", "downscale", "--prediction", str(out), "--truth", str(UK_FILE)]
    assert main(evaluate) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds one member" in err[0]


def test_a_fill_value_at_a_later_time_is_named_before_the_store_exists(
    tiny_model, tmp_path, capsys
):
    """netCDF's default fill in one cell of the second time: the driver finds that time
    (lazily, one max per time) and names the cell; no store is left behind."""
    truth = open_fields(UK_FILE, "t2m", time=["2019-03-25T00", "2019-03-25T06"])["t2m"].load()
    coarse = coarse_grain(truth, 4)
    coarse[1, 3, 5] = 9.96921e36
    coarse.to_dataset().to_netcdf(tmp_path / "fill.nc")
    out = tmp_path / "fill.zarr"
    args = ["downscale", tiny_model.path, "--coarse", str(tmp_path / "fill.nc")]
    args += ["--members", "2", "--steps", "2", "--scheduler", "synchronous", "--no-plots"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coarse value at time 2019-03-25T06:00, lat 53.37" in err[0]
    assert not out.exists()


def test_hourly_reports_with_six_hourly_fields_use_the_reports_at_the_field_times(tiny_model):
    """Stations reporting every hour, fields every 6 h: the reports at 00 and 06 UTC are
    used, the five between are left out (not an error)."""
    from hdm.downscaling.inputs import observation_setup

    truth = open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T06"))["t2m"]
    hourly = _stations(truth.load(), noise=0.0)  # 3 stations x 7 hours
    times = truth["time"].values[[0, 6]]
    setup = observation_setup(
        tiny_model, tiny_model.grid, None, hourly, times, coarse_noise=0.05,
        station_noise={"t2m": 0.5},
    )  # fmt: skip
    first = hourly["id"].values == setup.station_ids[0]
    at_fields = np.isin(hourly["time"].values, times) & first
    mean, std = tiny_model.mean_std
    expected = (hourly["value"].values[at_fields] - mean) / std
    assert hourly.sizes["obs"] == 21 and setup.values.shape == (2, 3)
    np.testing.assert_allclose(setup.values[:, 0], expected, rtol=1e-6)


def _whole_degree_cells(centre_offset: float, with_bounds: bool) -> xr.Dataset:
    """1° cell means of the truth with edges on whole degrees (lat 50…58, lon −10…2),
    their centres written ``centre_offset`` from the middles, and (``with_bounds``) the CF
    bounds, longitudes in [0, 360) as a file from a [0, 360) archive has them."""
    truth = open_fields(UK_FILE, "t2m", time=["2019-03-28T00"])["t2m"].load()
    lat_e, lon_e = np.arange(50.0, 58.01, 1.0), np.arange(-10.0, 2.01, 1.0)
    means = conservative_regrid(truth, lat_e[:-1] + 0.5, lon_e[:-1] + 0.5)
    lat, lon = lat_e[:-1] + 0.5 + centre_offset, (lon_e[:-1] + 0.5 + centre_offset) % 360
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), means.values, {"units": "K"})},
        coords={"time": truth.time.values, "lat": lat, "lon": lon},
    )
    if with_bounds:
        ds["lat_bnds"] = (("lat", "bnds"), np.stack([lat_e[:-1], lat_e[1:]], 1))
        ds["lon_bnds"] = (("lon", "bnds"), np.stack([lon_e[:-1], lon_e[1:]], 1) % 360)
        ds["lat"].attrs["bounds"], ds["lon"].attrs["bounds"] = "lat_bnds", "lon_bnds"
    return ds


def test_cf_cell_bounds_of_a_coarse_file_are_its_cells(tiny_model, tmp_path, capsys):
    """Centres written 0.2° off the cells' middles, with CF bounds on whole degrees (lon
    bounds in [0, 360), the cell −1…0 written (359, 0)): the members are those of the
    same cells given by their middles, the store keeps the file's bounds, and the bounds
    variables are not taken for fields the model was not trained on."""
    import warnings

    from hdm.data.coarsen import cell_bounds
    from hdm.downscaling.inputs import model_fields

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        field = model_fields(_whole_degree_cells(0.2, True), tiny_model, "c.nc")["t2m"]
    np.testing.assert_allclose(cell_bounds(field, "lon")[9], [-1.0, 0.0])
    means = {}
    for name, ds in (("bounded", _whole_degree_cells(0.2, True)),
                     ("middles", _whole_degree_cells(0.0, False))):  # fmt: skip
        ds.to_netcdf(tmp_path / f"{name}.nc")
        out = tmp_path / f"{name}.zarr"
        args = ["downscale", tiny_model.path, "--coarse", str(tmp_path / f"{name}.nc")]
        args += ["--members", "2", "--steps", "2", "--guidance", "sda", "--no-plots"]
        args += ["--runaway-bound", "none", "--scheduler", "synchronous", "--no-progress"]
        assert main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
        means[name] = xr.open_zarr(out)
    np.testing.assert_array_equal(means["bounded"]["t2m"], means["middles"]["t2m"])
    np.testing.assert_allclose(means["bounded"]["coarse_lat_bounds"][0], [50.0, 51.0])
    np.testing.assert_allclose(means["bounded"]["coarse_lon_bounds"][9], [-1.0, 0.0])
    # hdm evaluate's kriging and OI observe the stored cells, not cells around the centres
    from hdm.pipelines.evaluate import kriging_baseline, read_downscale

    gaussian = {
        name: kriging_baseline(read_downscale(ds, UK_FILE), tiny_model.path)
        for name, ds in means.items()
    }
    for base in ("mean", "std"):
        np.testing.assert_allclose(gaussian["bounded"][base], gaussian["middles"][base], atol=1e-6)


def test_a_station_report_far_from_its_coarse_cell_is_named(tiny_model, truth):
    """One report 30 K below its truth (250 K in a 280 K cell: a slipped digit) is 13
    training stds from the ×4 coarse value over it and is refused by name; the honest
    reports, at most a few K from their cells, pass."""
    from hdm.downscaling.inputs import FAR_FROM_COARSE, observation_setup

    coarse = coarse_grain(truth, 4)
    good = _stations(truth)

    def setup(stations):
        return observation_setup(
            tiny_model, tiny_model.grid, {"t2m": coarse}, stations, truth["time"].values,
            coarse_noise=0.05, station_noise={"t2m": 0.5},
        )  # fmt: skip

    assert setup(good).values.shape == (2, coarse.lat.size * coarse.lon.size + 3)
    bad = good.copy(deep=True)
    bad["value"][4] = bad["value"][4] - 30.0
    _, std = tiny_model.mean_std
    assert 30.0 / std > FAR_FROM_COARSE
    with pytest.raises(ObservationError, match=rf"station {bad['id'].values[4]} at 2019-03-25T"):
        setup(bad)


def test_a_one_member_run_warns_of_it_once(tiny_model, truth, caplog):
    # the run copies its config (resolving the teleport level, the batch's options): a
    # copy warns only of the choices it changes, not again of the one member it keeps
    with caplog.at_level("WARNING", logger="hdm"):
        downscale(
            tiny_model,
            coarse=coarse_grain(truth.isel(time=[0]), 4),
            members=1,
            steps=2,
            guidance="sda",
            **UNTRAINED,
            progress=False,
        )
    assert caplog.text.count("one member: a single posterior draw") == 1


def test_downscale_takes_stations_in_any_form(tiny_model, truth):
    """A DataFrame of a station table, a Dataset on another dimension, or one whose values
    are named as the model's variable condition exactly as the obs Dataset does, and are
    returned as the same attached inputs."""
    obs = _stations(truth)
    df = obs.to_dataframe().reset_index()[["id", "lat", "lon", "time", "value"]]
    kw = {"members": 2, "steps": 2, "guidance": "sda", "progress": False, **UNTRAINED}
    coarse = coarse_grain(truth, 4)
    ref = downscale(tiny_model, coarse=coarse, stations=obs, **kw)
    for st in (df, df.to_xarray(), obs.rename(obs="station"), obs.rename(value="t2m")):
        got = downscale(tiny_model, coarse=coarse, stations=st, **kw)
        np.testing.assert_array_equal(got["t2m"].values, ref["t2m"].values)
        np.testing.assert_array_equal(got["station_obs"].values, ref["station_obs"].values)
        assert got.attrs["stations"] == ref.attrs["stations"]


def test_a_coarse_input_without_coordinates_is_one_line(tiny_model, truth):
    with pytest.raises(TypeError, match=r"must be an xarray DataArray or Dataset .* numpy"):
        downscale(tiny_model, coarse=coarse_grain(truth, 4).values, members=1, progress=False)


def test_station_longitudes_in_0_360_are_stored_in_the_grids_convention(tiny_model, truth):
    # a table may give 358.5 for -1.5: the store holds -1.5, where evaluate looks for it
    obs = _stations(truth)
    shifted = obs.assign(lon=obs["lon"] % 360.0)
    assert float(shifted["lon"].max()) > 180.0  # some UK stations lie west of Greenwich
    kw = {"members": 2, "steps": 2, "guidance": "sda", "progress": False, **UNTRAINED}
    ds = downscale(tiny_model, coarse=coarse_grain(truth, 4), stations=shifted, **kw)
    ref = downscale(tiny_model, coarse=coarse_grain(truth, 4), stations=obs, **kw)
    np.testing.assert_allclose(ds["obs_lon"].values, ref["obs_lon"].values)
    np.testing.assert_array_equal(ds["t2m"].values, ref["t2m"].values)


def test_dps_by_default_takes_the_normalised_step_that_does_not_run_away():
    """DPS's plain step (ζ = 1) has a gain of order ‖A C Aᵀ‖/σ_y² with the coarse cells'
    small default noise and runs away on the shipped prior; its default is the normalised
    step (ζ = 3) the closed-form GRF check chose, which downscales a training-period field
    to well within the coarse cells' own error."""
    from hdm.conditioning.ensembles import SamplingDiverged
    from hdm.domains.shipped import shipped_checkpoint
    from hdm.downscaling.prior import load_prior

    uk = GRIDDED_DATASETS["uk_t2m"].resolved_path()
    truth = open_fields(uk, "t2m", time=slice("2019-03-20T00", "2019-03-20T00"))["t2m"].load()
    prior, coarse = load_prior(shipped_checkpoint("uk_t2m")), coarse_grain(truth, 4)
    run = {"members": 2, "steps": 8, "guidance": "dps", "progress": False}
    with pytest.raises(SamplingDiverged, match="ran away"):
        downscale(prior, coarse, guidance_options={"normalise": False, "scale": 1.0}, **run)
    ds = downscale(prior, coarse, **run)
    rmse = float(np.sqrt(((ds["t2m_mean"].values - truth.values) ** 2).mean()))
    assert np.isfinite(ds["t2m"].values).all() and rmse < 0.5
