"""Downscaling on the sphere (issue: the whole globe, items 5 and "shallow-water
downscaling"): sphere cells, bilinear across the date line, chordal kriging, hdm.downscale
and hdm downscale with a global prior, stations that cannot be on the globe."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.conditioning.observations import CoarseGrain, ObservationError
from hdm.data.coarsen import coarse_grain_sphere, sphere_cells
from hdm.data.regrid import interpolate_coarse
from hdm.domains.shallow_water import ShallowWaterConfig, simulate
from hdm.domains.stations import igra2_worldwide, stations_by_id
from hdm.hilbert.grids import GlobalGrid
from hdm.metrics import baselines as bl
from hdm.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "checkpoints" / "shallow_water"
GRID = GlobalGrid.make(33, 64)
UNITS = {"h": "m", "u": "m s-1", "v": "m s-1"}


@pytest.fixture(scope="module")
def states() -> xr.Dataset:
    """Two shallow-water states on the shipped prior's 33 × 64 grid, 12 h apart, as
    (time, lat, lon) fields with units."""
    cfg = ShallowWaterConfig(nlat=33, nlon=64, trajectories=1, states=2, spin_up_hours=48.0)
    data = simulate(cfg, 0)
    lat, lon = GRID.coords()
    times = np.array(["2000-01-01T00", "2000-01-01T12"], dtype="datetime64[ns]")
    return xr.Dataset(
        {v: (("time", "lat", "lon"), data[:, c], {"units": UNITS[v]}) for c, v in enumerate(UNITS)},
        coords={"time": times, "lat": lat, "lon": lon},
    )


def _stations(states: xr.Dataset, count: int, lon_shift: float = 0.0) -> xr.Dataset:
    """h, u, v at ``count`` IGRA2 stations worldwide (exact values, both times)."""
    from hdm.domains.stations import simulate_observations

    ids = igra2_worldwide(count)[1]
    table = stations_by_id(ids)
    table = table.assign(lon=table["lon"] + lon_shift)
    parts = []
    for v in UNITS:
        obs = simulate_observations(states[v], table, 1e-6, 0)
        n = obs.sizes["obs"]
        parts.append(
            obs.assign_coords(variable=("obs", np.full(n, v)), units=("obs", np.full(n, UNITS[v])))
        )
    return xr.concat(parts, dim="obs")


def test_sphere_cells_are_what_the_operator_observes(states):
    """coarse_grain_sphere's 22.5° cells of a state equal CoarseGrain's observation of it
    (the same quadrature), and a constant stays constant; a factor that does not tile the
    globe is refused naming both counts."""
    coarse = coarse_grain_sphere(states, 4)
    assert coarse["h"].shape == (2, 8, 16)
    np.testing.assert_allclose(coarse["lat_bnds"].values[[0, -1]], [[-90, -67.5], [67.5, 90]])
    op = CoarseGrain.for_coarse_grid(coarse["lat"].values, coarse["lon"].values, GRID)
    x = torch.as_tensor(states["u"].values.astype(np.float64))[:, None]
    np.testing.assert_allclose(
        op.apply(x, GRID).numpy().reshape(2, 8, 16), coarse["u"].values, rtol=1e-5, atol=1e-4
    )
    ones = coarse_grain_sphere(xr.ones_like(states["h"]), 4)
    np.testing.assert_allclose(ones.values, 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match=r"factor 3 does not tile global 33 × 64.*32 latitude"):
        sphere_cells(GRID, 3)


def test_bilinear_on_a_global_field_has_no_seam_at_the_date_line():
    """A coarse cos λ on a global grid interpolated bilinearly: between the last centre and
    the first one (across 180°) the values are the chord between them, as between any other
    two neighbours: the error is the same everywhere along a row."""
    lat_c = np.array([-45.0, 0.0, 45.0])
    lon_c = -180 + 22.5 * np.arange(16) + 11.25
    coarse = xr.DataArray(
        np.tile(np.cos(np.deg2rad(lon_c)), (3, 1)),
        dims=("lat", "lon"),
        coords={"lat": lat_c, "lon": lon_c},
    )
    lon = np.linspace(-180, 180, 64, endpoint=False)
    fine = interpolate_coarse(coarse, (np.array([0.0]), lon), "bilinear").values[0]
    error = np.abs(fine - np.cos(np.deg2rad(lon)))
    date_line = np.abs(lon) > 180 - 11.25
    assert error[date_line].max() <= error[~date_line].max() + 1e-12
    assert fine[0] == pytest.approx(
        np.cos(np.deg2rad(lon_c[-1])) * 0.5 + np.cos(np.deg2rad(lon_c[0])) * 0.5
    )


def test_a_chordal_kernel_is_positive_definite_on_the_sphere():
    """The Matérn-5/2 of the chord is a valid covariance on the whole sphere (smallest
    eigenvalue of its Gram matrix on a global grid ≥ 0 up to round-off; the same kernel
    of the great-circle angle is not), and the chord is the arc for nearby points."""
    grid = GlobalGrid.make(9, 16)
    pts = bl.grid_points(*grid.coords())
    kernel = bl.FittedKernel(
        "matern", 1.0, 60.0, 2.5, 0.0, np.zeros(grid.shape), *grid.coords(), metric="chordal"
    )
    assert np.linalg.eigvalsh(kernel.covariance(pts, pts)).min() > -1e-9
    d = kernel.distance(np.array([[10.0, 20.0]]), np.array([[10.0, 21.0]]))[0, 0]
    assert d == pytest.approx(math.cos(math.radians(10.0)), rel=1e-4)
    with pytest.raises(ValueError, match="metric must be one of"):
        bl.FittedKernel("matern", 1.0, 1.0, 2.5, 0.0, np.zeros((1, 1)), [0.0], [0.0], metric="x")


def test_downscale_conditions_the_spherical_prior_on_cells_and_stations(states):
    """hdm.downscale with the shipped spherical prior and its default sampler (Heun 25):
    h, u, v members on the globe whose cell means meet the 22.5° cells to well within the
    fields' spread (40 IGRA2 stations observe them too)."""
    import hdm

    coarse = coarse_grain_sphere(states, 4)
    out = hdm.downscale(SHIPPED, coarse, _stations(states, 40), members=2, progress=False)
    assert out["u"].dims == ("member", "time", "lat", "lon") and out["u"].shape == (2, 2, 33, 64)
    assert np.isfinite(out["h"]).all() and out["h"].attrs["units"] == "m"
    again = coarse_grain_sphere(out[["h", "u", "v"]].mean("member"), 4)
    for v in UNITS:
        miss = float(np.sqrt(((again[v] - coarse[v]) ** 2).mean()))
        assert miss < 0.05 * float(states[v].std()), v


def test_stations_off_the_globe_are_refused_by_name(states):
    """A station whose longitude no convention gives (400°) is an error naming it, not a
    station at 40°."""
    import hdm

    stations = _stations(states.isel(time=[0]), 3, lon_shift=400.0)
    with pytest.raises(ObservationError, match=r"station \S+ has longitude 4\d\d.*-180..360"):
        hdm.downscale(SHIPPED, None, stations, times=states["time"].values[:1], progress=False)


def test_hdm_downscale_cuts_a_global_truth_into_sphere_cells(states, tmp_path, capsys):
    """hdm downscale --truth on a global file: the truth is cut into the sphere's 22.5°
    cells and the members cover the globe; hdm evaluate downscale, whose scores are
    planar, refuses the global store by name (exit 2)."""
    truth = tmp_path / "sw.nc"
    states.to_netcdf(truth)
    out = tmp_path / "out.zarr"
    args = ["downscale", str(SHIPPED), "--truth", str(truth), "--factor", "4"]
    args += ["--simulate-stations", ",".join(igra2_worldwide(20)[1]), "--members", "2"]
    args += ["--steps", "8", "--out", str(out), "--no-plots", "--no-progress"]
    assert main(args) == 0
    ds = xr.open_zarr(out)
    assert ds["v"].shape == (2, 2, 33, 64) and np.isfinite(ds["v"].values).all()
    assert float(ds["lat"][0]) == -90.0 and float(ds["lat"][-1]) == 90.0
    code = main(["evaluate", "downscale", "--prediction", str(out), "--truth", str(truth)])
    assert code == 2 and "covers the whole globe" in capsys.readouterr().err


def test_a_spherical_model_and_a_regional_one_refuse_each_others_grids():
    """The shipped spherical prior cannot sample a regional box, nor the UK model the
    globe: one error naming both grids, before anything is drawn."""
    from hdm.downscaling.prior import load_prior, target_grid
    from hdm.hilbert.grids import LatLonGrid
    from hdm.hilbert.networks import GridError

    box = LatLonGrid.regular((40.0, 60.0), (-10.0, 10.0), (21, 21))
    with pytest.raises(GridError, match=r"lat ∈ \[40, 60\].*does not span.*global 33 × 64"):
        target_grid(load_prior(SHIPPED), box)
    uk = load_prior(ROOT / "data" / "checkpoints" / "uk_t2m")
    with pytest.raises(GridError, match=r"global 65 × 128 .*does not span the model's domain"):
        target_grid(uk, GlobalGrid.make(65, 128))


def _coarse_h(lon: np.ndarray) -> xr.Dataset:
    """A 15° coarse h (no cell_methods: cell means) of 10000 m at one time, at ``lon``."""
    lat = np.arange(-82.5, 83.0, 15.0)
    h = np.full((1, lat.size, lon.size), 10000.0)
    time = np.array(["2000-01-01T00"], dtype="datetime64[ns]")
    return xr.Dataset(
        {"h": (("time", "lat", "lon"), h, {"units": "m"})},
        coords={"time": time, "lat": lat, "lon": lon},
    )


def test_a_global_coarse_field_short_of_a_longitude_strip_is_refused_naming_it():
    """15° cells at lon −180..120 leave 127.5..172.5 of the globe without a value: the
    global prior refuses them in one line naming that strip, not silently sampling the
    prior alone there (the circle has no edge for the bounded-axis check to see)."""
    from hdm.downscaling.inputs import model_fields, observation_setup
    from hdm.downscaling.prior import load_prior

    prior = load_prior(SHIPPED)
    coarse = model_fields(_coarse_h(np.arange(-180.0, 121.0, 15.0)), prior, "coarse field")
    with pytest.raises(ObservationError) as err:
        observation_setup(
            prior,
            prior.grid,
            coarse,
            None,
            coarse["h"]["time"].values,
            coarse_noise=1.0,
            station_noise=1.0,
        )
    assert str(err.value) == (
        "coarse h: the coarse cells leave the strip lon 127.5..172.5 of the whole globe "
        "(45° wide, more than one coarse cell, 15°) without a coarse value: its members "
        "there would be the prior alone; give a coarse field round the whole globe"
    )


def test_a_global_coarse_field_in_0_360_short_of_a_strip_names_the_strip():
    """The same gap in the [0, 360) convention (cells at lon 0..285) is refused naming the
    uncovered strip 292.5..352.5, not as a region across the antimeridian."""
    from hdm.downscaling.inputs import model_fields
    from hdm.downscaling.prior import load_prior

    with pytest.raises(ObservationError) as err:
        model_fields(_coarse_h(np.arange(0.0, 286.0, 15.0)), load_prior(SHIPPED), "coarse field")
    assert str(err.value) == (
        "the coarse field: the coarse cells leave the strip lon 292.5..352.5 of the whole "
        "globe (60° wide, more than one coarse cell, 15°) without a coarse value: its "
        "members there would be the prior alone; give a coarse field round the whole globe"
    )
