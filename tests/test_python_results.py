"""The Python API gives what the command line writes.

``hdm.downscale`` returns the dataset an ``hdm downscale`` store holds: the ensemble,
its inputs (``{var}_coarse`` with its ``cell_methods``, ``station_obs``) and the CF
attributes, so that ``ds.to_netcdf`` is a file ``hdm evaluate downscale`` scores with
its baselines; ``hdm.evaluate_downscale`` takes the dataset itself. ``hdm sample``'s
outputs carry the same CF attributes, and ``hdm.sample`` has the command's defaults and
names its own arguments in its errors. A coverage level the members cannot resolve is
unavailable, not the coverage of a narrower interval.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.downscaling.core import downscale
from hdm.downscaling.output import attach_inputs
from hdm.metrics.probabilistic import coverage
from hdm.pipelines.cli import _parser, main
from hdm.pipelines.evaluate import evaluate_downscale
from hdm.pipelines.job import run_downscale
from hdm.pipelines.report import format_downscale_report
from hdm.pipelines.sample import sample, write_samples

ROOT = Path(__file__).resolve().parents[1]
UK_FILE = GRIDDED_DATASETS["uk_t2m"].resolved_path()
STATIONS = "UKM00003808,UKM00003882"
HELDOUT = "UKM00003354,UKM00003238"
QUADRATIC = ROOT / "data" / "checkpoints" / "quadratic"
LEVELS = ROOT / "data" / "checkpoints" / "rhine_levels"
TIME = "2019-03-25T00"
#: the tiny model is barely trained: its members are not weather (no run-away bound)
DRAW = dict(members=3, steps=2, sampler="heun", runaway_bound=None, progress=False)
#: the attributes that only a batch store has (its run's bookkeeping) or only a run in
#: one process (its timing and counts)
RUN_ONLY = {
    "hdm_manifest", "run_ids", "task_time_s", "wall_time_s", "n_observations",
    "dropped_nan_observations", "created", "device", "nfe_per_member",
}  # fmt: skip


@pytest.fixture(scope="module")
def truth() -> xr.DataArray:
    return open_fields(UK_FILE, "t2m", time=slice(TIME, TIME))["t2m"].load()


@pytest.fixture(scope="module")
def stations(truth) -> xr.Dataset:
    return simulate_observations(truth, stations_by_id(STATIONS.split(",")), 0.5, 0)


@pytest.fixture(scope="module")
def ensemble(tiny_model, truth, stations) -> xr.Dataset:
    return downscale(tiny_model, coarse=coarse_grain(truth, 4), stations=stations, **DRAW)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ hdm.downscale


def test_downscale_returns_its_inputs_with_how_they_were_observed(ensemble, truth, stations):
    """The coarse field in the ensemble's units with ``cell_methods`` (area means here,
    points where the input says so) and the stations of the run's times."""
    coarse = ensemble["t2m_coarse"]
    assert coarse.dims == ("time", "coarse_lat", "coarse_lon") and coarse.shape == (1, 8, 12)
    assert coarse.attrs["cell_methods"] == "area: mean" and coarse.attrs["units"] == "K"
    np.testing.assert_allclose(coarse.values, coarse_grain(truth, 4).values, rtol=1e-6)
    obs = ensemble["station_obs"]
    assert sorted(obs["obs_id"].values.astype(str)) == sorted(STATIONS.split(","))
    np.testing.assert_allclose(np.sort(obs.values), np.sort(stations["value"].values))


def test_point_values_are_stored_as_points(tiny_model, truth):
    points = coarse_grain(truth, 4).assign_attrs(cell_methods="area: point")
    ds = _quiet(downscale, tiny_model, coarse=points, **{**DRAW, "members": 2})
    assert ds["t2m_coarse"].attrs["cell_methods"] == "area: point"


def test_downscale_carries_the_cf_attributes_of_a_store(ensemble):
    assert ensemble.attrs["Conventions"] == "CF-1.8"
    assert ensemble["member"].attrs["standard_name"] == "realization"
    assert ensemble["time"].attrs["axis"] == "T"
    assert ensemble["lat"].attrs["bounds"] == "lat_bounds" and "lat_bounds" in ensemble
    assert ensemble["coarse_lon"].attrs["standard_name"] == "longitude"
    assert ensemble.attrs["hdm_checkpoint_hash"] == ensemble.attrs["checkpoint_hash"]


def test_downscale_holds_what_the_hdm_downscale_store_holds(tiny_model, truth, stations, tmp_path):
    """The same variables, coordinates and attributes as the batch store of the same run
    (the values differ: other stations' noise), in memory and after ``to_netcdf``."""
    store = tmp_path / "cli.zarr"
    summary = run_downscale(
        tiny_model.path, store, times=(TIME, TIME), truth=str(UK_FILE), factor=4,
        simulate_stations=STATIONS, members=3, steps=2, sampler="heun",
        runaway_bound="none", plots=False, progress=False,
    )  # fmt: skip
    assert summary["status"] == "done"
    cli = xr.open_zarr(store)
    ds = downscale(tiny_model, coarse=coarse_grain(truth, 4), stations=stations, **DRAW)
    ds.to_netcdf(tmp_path / "py.nc")
    for python in (ds, xr.open_dataset(tmp_path / "py.nc")):
        assert set(python.variables) == set(cli.variables)
        for name in cli.variables:
            assert python[name].attrs == cli[name].attrs, name
        assert set(python.attrs) - RUN_ONLY == set(cli.attrs) - RUN_ONLY


def test_attaching_the_inputs_again_replaces_them(ensemble, truth, stations):
    """The batch job attaches its coarse field to what downscale returns: a coarse field
    on another grid replaces the stored one (no NaN from aligning two grids, no second
    set of axes), and stations given replace the stored ones."""
    coarser = coarse_grain(truth, 8)
    again = attach_inputs(ensemble, {"t2m": coarser}, stations.isel(obs=[0]))
    assert again["t2m_coarse"].shape == (1, 4, 6)
    np.testing.assert_allclose(again["t2m_coarse"].values, coarser.values, rtol=1e-6)
    assert again.sizes["coarse_lat"] == 4 and again["station_obs"].sizes["obs"] == 1
    same = attach_inputs(ensemble, {"t2m": coarse_grain(truth, 4)}, None)
    xr.testing.assert_equal(same["t2m_coarse"], ensemble["t2m_coarse"])
    xr.testing.assert_identical(same["station_obs"], ensemble["station_obs"])


# --------------------------------------------------------------------- evaluation


def test_a_python_result_written_by_to_netcdf_is_scored_with_its_baselines(
    tiny_model, ensemble, tmp_path
):
    path = tmp_path / "ens.nc"
    ensemble.to_netcdf(path)
    report = _quiet(
        evaluate_downscale, str(path), UK_FILE, heldout=HELDOUT, checkpoint=tiny_model.path
    )
    for key in ("rmse_bilinear", "rmse_bicubic", "rmse_kriging", "heldout_rmse_kriging"):
        assert np.isfinite(report[key]), key
    in_memory = _quiet(
        evaluate_downscale, ensemble, UK_FILE, heldout=HELDOUT, checkpoint=tiny_model.path
    )
    assert in_memory["rmse_kriging"] == pytest.approx(report["rmse_kriging"])
    assert in_memory["crps"] == pytest.approx(report["crps"], rel=1e-6)
    assert "hdm_variables" not in ensemble.attrs  # the caller's dataset is left as it was


def test_evaluate_refuses_what_is_no_prediction_in_one_line():
    with pytest.raises(TypeError, match=r"^the prediction must be a store path or an xr\.Data"):
        evaluate_downscale(42, UK_FILE)


def test_a_prediction_without_its_coarse_input_says_baselines_are_not_scored(ensemble, tmp_path):
    """hdm evaluate downscale of a file without ``t2m_coarse`` (``ens.to_netcdf`` of an
    older hdm.downscale) scores the ensemble and says, in one warning line, that it
    scores no baseline, instead of leaving them out silently."""
    path = tmp_path / "bare.nc"
    ensemble.drop_vars("t2m_coarse").to_netcdf(path)
    args = ["evaluate", "downscale", "--prediction", str(path), "--truth", str(UK_FILE)]
    with pytest.warns(UserWarning) as caught:
        assert main([*args, "--json"]) == 0
    said = [str(w.message) for w in caught if "coarse input" in str(w.message)]
    assert said == [
        "the prediction holds no coarse input (t2m_coarse: a run without a coarse field, "
        "or a file written without its inputs): baselines are not scored"
    ]


def test_a_coverage_three_members_cannot_resolve_is_unavailable_in_the_report(tiny_model, ensemble):
    """3 members: the 90 % interval would be [min, max], the 50 % one; the report says
    null for it (and its table leaves it out), the 50 % coverage is a number."""
    with pytest.warns(UserWarning, match="level 0.9 is unavailable"):
        report = evaluate_downscale(ensemble, UK_FILE, checkpoint=tiny_model.path)
    assert report["coverage90"] is None and 0.0 <= report["coverage50"] <= 1.0
    table = format_downscale_report(report)
    assert not re.search(r"^\s+coverage 90%\s+\d", table, flags=re.M)
    assert re.search(r"^\s+coverage 90%\s+unavailable \(3 members\)$", table, flags=re.M)
    assert re.search(r"^\s+coverage 90% kriging\s+\d", table, flags=re.M)


# ----------------------------------------------------------------------- coverage


def _calibrated(members: int, seed: int = 0) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    dims = ("time", "lat", "lon")
    coords = {"lat": np.linspace(50, 58, 20), "lon": np.linspace(-10, 2, 25)}
    truth = xr.DataArray(rng.standard_normal((40, 20, 25)), dims=dims, coords=coords)
    ens = xr.DataArray(
        rng.standard_normal((members, 40, 20, 25)), dims=("member", *dims), coords=coords
    )
    return ens, truth


def test_coverage_beyond_what_the_members_resolve_is_nan_with_one_warning():
    """M members resolve central intervals up to about (M − 1)/(M + 1) (Weibull positions),
    within half a position: level ≤ M/(M + 1). With 3 members "90 %" would be their 50 %
    interval: NaN, and one warning names M, the level and the members needed (9); 16
    members give their [min, max] interval, level 16/17 − 1/17 = 0.88, which a calibrated
    ensemble covers 0.88 of the time; 50 % is resolved by both."""
    ens, truth = _calibrated(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wide = float(coverage(ens, truth, 0.9))
    assert np.isnan(wide)
    (warning,) = caught
    text = str(warning.message)
    assert "\n" not in text and "with 3 members" in text
    assert "level 0.9" in text and "at least 9 members" in text
    for members, level, expected in ((3, 0.5, 0.5), (16, 0.5, 0.5), (16, 0.9, 15 / 17)):
        ens, truth = _calibrated(members)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = float(coverage(ens, truth, level))
        assert got == pytest.approx(expected, abs=0.03), (members, level)


# ------------------------------------------------------------------------ samples


def test_hdm_sample_outputs_carry_the_cf_attributes(tmp_path):
    """Fields on levels: lat/lon axes with bounds, level in hPa, the sample index
    described, Conventions and the provenance, in netCDF and zarr alike."""
    ds = sample(LEVELS, n=1, steps=4, progress=False)
    for name in ("s.nc", "s.zarr"):
        out = xr.open_dataset(write_samples(ds, tmp_path / name))
        assert out.attrs["Conventions"] == "CF-1.8" and out.attrs["hdm_seed"] == 0
        assert out.attrs["hdm_checkpoint_hash"] == ds.attrs["checkpoint_sha256"]
        assert out["lat"].attrs["standard_name"] == "latitude" and "lat_bounds" in out
        assert out["lon"].attrs["axis"] == "X" and "lon_bounds" in out
        assert out["level"].attrs["units"] == "hPa"
        assert out["level"].attrs["standard_name"] == "air_pressure"
        assert out["sample"].attrs["long_name"] == "sample index"
    assert "Conventions" not in ds.attrs  # the samples themselves are left as they were


def test_hdm_sample_has_the_command_defaults():
    args = _parser().parse_args(["sample", str(QUADRATIC), "--out", "x.nc"])
    params = inspect.signature(sample).parameters
    assert (params["sampler"].default, params["steps"].default) == (args.sampler, args.steps)
    ds = sample(QUADRATIC, n=2, progress=False)
    assert (ds.attrs["sampler"], ds.attrs["steps"]) == (args.sampler, args.steps)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (QUADRATIC, {"n": 0}, r"^n \(--n\) must be at least 1, got 0$"),
        (QUADRATIC, {"n": 1, "points": 2}, r"^points \(--points\) must be at least 4, got 2$"),
        (LEVELS, {"n": 1, "points": 10}, r"gridded model: points \(--points\) applies to 1-D"),
        (QUADRATIC, {"n": 1, "scale": 2}, r"^scale and small_scale_level \(--scale, "),
    ],
)
def test_hdm_sample_errors_name_the_python_arguments(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(model, progress=False, **kwargs)


def test_scoring_times_the_model_was_trained_on_warns_that_they_are_in_sample(tiny_model, ensemble):
    """The tiny model was trained on 2019-03-01..24: scores of 03-10 are in-sample (and
    OI's too, fitted on those fields); those of the test week 03-25 are not."""
    seen = open_fields(UK_FILE, "t2m", time=slice("2019-03-10T00", "2019-03-10T00"))["t2m"]
    inside = downscale(tiny_model, coarse=coarse_grain(seen.load(), 4), **DRAW)
    with pytest.warns(UserWarning, match=r"1 of the prediction's 1 times .* in-sample"):
        evaluate_downscale(inside, UK_FILE, checkpoint=tiny_model.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_downscale(ensemble, UK_FILE, checkpoint=tiny_model.path)
    assert not [w for w in caught if "in-sample" in str(w.message)]


def test_a_truth_on_another_grid_or_with_nan_is_said_so(tiny_model, ensemble, truth, tmp_path):
    """A finer truth: the ensemble is scored at its points, the baselines on the truth's
    grid, which one warning says (their scores are not paired); NaN in the truth: the time
    and share of points left out are named."""
    lat = np.arange(float(truth.lat.min()), float(truth.lat.max()) + 1e-9, 0.125)
    lon = np.arange(float(truth.lon.min()), float(truth.lon.max()) + 1e-9, 0.125)
    fine = truth.interp(lat=lat, lon=lon)
    fine.to_dataset(name="t2m").to_netcdf(tmp_path / "fine.nc")
    with pytest.warns(UserWarning, match=r"truth's grid \(65 x 97\) is not the prediction's"):
        evaluate_downscale(ensemble, tmp_path / "fine.nc", checkpoint=tiny_model.path)
    holed = truth.where(truth.lat > 51.0)
    holed.to_dataset(name="t2m").to_netcdf(tmp_path / "holed.nc")
    with pytest.raises(ValueError, match=r"holds NaN at 1 of the prediction's 1 times \(first "):
        evaluate_downscale(ensemble, tmp_path / "holed.nc", checkpoint=tiny_model.path)


def test_a_truth_with_nan_at_some_times_is_scored_without_them_and_says_where(tiny_model, tmp_path):
    two = open_fields(UK_FILE, "t2m", time=slice("2019-03-25T00", "2019-03-25T01"))["t2m"]
    two = two.load()
    ens = downscale(tiny_model, coarse=coarse_grain(two, 4), **DRAW)
    holed = two.where((two.time == two.time[0]) | (two.lat > 51.0))
    holed.to_dataset(name="t2m").to_netcdf(tmp_path / "holed.nc")
    with pytest.warns(
        UserWarning, match=r"NaN at 1 of the prediction's 2 times \(first 2019-03-25T01:00"
    ):
        report = evaluate_downscale(ens, tmp_path / "holed.nc", checkpoint=tiny_model.path)
    assert np.isfinite(report["rmse"]) and np.isfinite(report["spectrum_ratio"])
