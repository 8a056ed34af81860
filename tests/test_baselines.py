"""Tests for hdm.metrics.baselines: each asserts one property on tiny synthetic grids."""

import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.regrid import interpolate_coarse
from hdm.metrics.baselines import (
    FittedKernel,
    at_cell_middles,
    fit_empirical_covariance,
    fit_kernel,
    gp_posterior,
    grid_points,
    kriging_downscale,
)

FINE_LAT = 40.0 + 0.5 * np.arange(16)
FINE_LON = 5.0 + 0.5 * np.arange(24)


def kernel_on(lat, lon, lengthscale=2.0, nugget=1e-3, kind="matern", nu=1.5):
    return FittedKernel(
        kind=kind,
        variance=1.0,
        lengthscale=lengthscale,
        nu=nu if kind == "matern" else None,
        nugget=nugget,
        mean_field=np.zeros((lat.size, lon.size)),
        grid_lat=lat,
        grid_lon=lon,
        lon_factor=float(np.cos(np.deg2rad(lat.mean()))),
    )


def sample_fields(kernel, n, seed):
    """n fields (n, n_lat, n_lon) drawn from N(0, K + nugget I)."""
    pts = grid_points(kernel.grid_lat, kernel.grid_lon)
    cov = kernel.covariance(pts, pts) + kernel.nugget * np.eye(len(pts))
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(pts)))
    z = np.random.default_rng(seed).standard_normal((len(pts), n))
    return (chol @ z).T.reshape(n, kernel.grid_lat.size, kernel.grid_lon.size)


def as_field(values, lat, lon):
    return xr.DataArray(values, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})


def test_at_cell_middles_moves_the_centres_of_an_axis_with_cell_bounds_only():
    """Centres 0.2° off the middles of cells [40, 42), [42, 44): lat (with its bounds,
    carried as :data:`hdm.data.coarsen.CELL_BOUND_COORDS`) moves to 41, 43; lon (no
    bounds) and the values stay."""
    coarse = as_field(np.arange(6.0).reshape(1, 2, 3), [41.2, 43.2], [5.2, 7.2, 9.2])
    coarse = coarse.assign_coords(lat_cell_lower=("lat", [40.0, 42.0]))
    coarse = coarse.assign_coords(lat_cell_upper=("lat", [42.0, 44.0]))
    moved = at_cell_middles(coarse)
    np.testing.assert_allclose(moved.lat, [41.0, 43.0])
    np.testing.assert_allclose(moved.lon, coarse.lon)
    np.testing.assert_array_equal(moved.values, coarse.values)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_interpolation_of_a_linear_function_is_exact_inside_and_edges_are_standard(method):
    def linear(lat, lon):
        return 2.0 + 0.3 * lat[:, None] - 0.7 * lon[None, :]

    fine = as_field(linear(FINE_LAT, FINE_LON)[None], FINE_LAT, FINE_LON)
    coarse = coarse_grain(fine, 4)
    # the block means of a linear function are its values at the weighted block centres
    coarse = coarse.copy(data=linear(coarse.lat.values, coarse.lon.values)[None])
    out = interpolate_coarse(coarse, fine, method=method, edges="extrapolate")
    assert out.lat[0] < coarse.lat[0] and out.lon[-1] > coarse.lon[-1]
    np.testing.assert_allclose(out.values, fine.values, atol=1e-9)
    # the standard form: bilinear continues its end lines (exact everywhere); bicubic is
    # exact inside the centres' span and holds the edge value beyond it
    standard = interpolate_coarse(coarse, fine, method=method)
    inside = (fine.lat >= coarse.lat[0]) & (fine.lat <= coarse.lat[-1])
    inside = inside & (fine.lon >= coarse.lon[0]) & (fine.lon <= coarse.lon[-1])
    np.testing.assert_allclose(standard.where(inside).values, fine.where(inside).values, atol=1e-9)
    if method == "bicubic":  # the corner holds the nearest centre's value, not the line's
        assert float(standard[0, 0, 0]) == pytest.approx(float(coarse[0, 0, 0]))
        assert float(standard[0, 0, 0]) != pytest.approx(float(fine[0, 0, 0]))


def test_noiseless_point_observation_is_reproduced_and_far_variance_is_prior():
    lat, lon = np.arange(10.0), np.arange(30.0)
    kernel = kernel_on(lat, lon, lengthscale=1.5)
    a = np.zeros((1, lat.size * lon.size))
    a[0, 2 * lon.size + 3] = 1.0  # the pixel (lat 2, lon 3)
    mean, var = gp_posterior(kernel, lat, lon, a, np.array([1.7]), 0.0)
    assert mean[2, 3] == pytest.approx(1.7, abs=1e-6)
    assert var[2, 3] == pytest.approx(0.0, abs=1e-6)
    assert var[9, 29] == pytest.approx(kernel.variance + kernel.nugget, rel=1e-3)


def test_posterior_with_identity_operator_matches_textbook_formula():
    lat, lon = np.array([0.0, 1.0, 2.0]), np.array([10.0, 11.5])
    kernel = kernel_on(lat, lon, lengthscale=1.2, kind="se")
    rng = np.random.default_rng(0)
    y, noise, m = rng.standard_normal(6), rng.uniform(0.1, 0.5, 6), rng.standard_normal((3, 2))
    pts = grid_points(lat, lon)
    k = kernel.covariance(pts, pts) + kernel.nugget * np.eye(6)
    gain = k @ np.linalg.inv(k + np.diag(noise))
    mean, var = gp_posterior(kernel, lat, lon, np.eye(6), y, noise, prior_mean=m)
    np.testing.assert_allclose(mean.ravel(), m.ravel() + gain @ (y - m.ravel()), atol=1e-8)
    np.testing.assert_allclose(var.ravel(), np.diag(k - gain @ k), atol=1e-8)


def test_fit_kernel_recovers_lengthscale():
    lat, lon = 10.0 + np.arange(12.0), 20.0 + np.arange(14.0)
    truth = kernel_on(lat, lon, lengthscale=3.0, nugget=0.01)
    fields = as_field(sample_fields(truth, 40, seed=1), lat, lon)
    fitted = fit_kernel(fields, "matern", nu=1.5, max_points=168, seed=0)
    assert fitted.lengthscale == pytest.approx(3.0, rel=0.25)
    assert fitted.mean_field.shape == (12, 14)


def test_kriging_mean_is_consistent_with_coarse_data():
    kernel = kernel_on(FINE_LAT, FINE_LON, lengthscale=2.0)
    truth = as_field(sample_fields(kernel, 2, seed=2), FINE_LAT, FINE_LON)
    noise_std = 0.05
    noise = noise_std * np.random.default_rng(3).standard_normal((2, 4, 6))
    coarse = coarse_grain(truth, 4) + noise
    out = kriging_downscale(kernel, coarse, FINE_LAT, FINE_LON, 4, noise_std_coarse=noise_std)
    assert out["mean"].dims == ("time", "lat", "lon")
    misfit = coarse_grain(out["mean"], 4) - coarse
    assert float(np.sqrt((misfit**2).mean())) < 2 * noise_std
    assert float(out["std"].min()) > 0


def test_kriging_from_any_grid_equals_the_block_form_on_blocks_and_honours_points():
    """factor=None builds the operator from the coarse centres: on the blocks of
    coarse_grain it is the block-mean operator (same posterior); point values are
    reproduced at their points, and a coarse grid of other cells stays consistent."""
    kernel = kernel_on(FINE_LAT, FINE_LON, lengthscale=2.0)
    truth = as_field(sample_fields(kernel, 1, seed=5), FINE_LAT, FINE_LON)
    blocks = coarse_grain(truth, 4)
    by_factor = kriging_downscale(kernel, blocks, FINE_LAT, FINE_LON, 4, noise_std_coarse=0.01)
    by_cells = kriging_downscale(kernel, blocks, FINE_LAT, FINE_LON, None, noise_std_coarse=0.01)
    np.testing.assert_allclose(by_cells["mean"], by_factor["mean"], atol=1e-8)
    np.testing.assert_allclose(by_cells["std"], by_factor["std"], atol=1e-8)
    points = truth.isel(lat=slice(1, None, 3), lon=slice(2, None, 3))
    out = kriging_downscale(
        kernel, points, FINE_LAT, FINE_LON, None, noise_std_coarse=1e-3, points=True
    )
    at = out["mean"].sel(lat=points.lat, lon=points.lon)
    np.testing.assert_allclose(at, points, atol=0.01)
    assert "point values" in out.attrs["method"]
    # 1.5° cells (3 × 3 fine cells, offset from the grid's blocks) and a last row of
    # cells hanging off the grid: the covered cells' means are reproduced
    cells = truth.coarsen(lat=3, lon=3, boundary="trim").mean()
    out = kriging_downscale(kernel, cells, FINE_LAT, FINE_LON, None, noise_std_coarse=1e-3)
    again = out["mean"].coarsen(lat=3, lon=3, boundary="trim").mean()
    np.testing.assert_allclose(again, cells, atol=0.02)


def test_kriging_with_stations_pulls_the_mean_to_the_station_value():
    kernel = kernel_on(FINE_LAT, FINE_LON, lengthscale=2.0)
    coarse = coarse_grain(as_field(np.zeros((1, 16, 24)), FINE_LAT, FINE_LON), 4)
    out = kriging_downscale(
        kernel,
        coarse,
        FINE_LAT,
        FINE_LON,
        4,
        station_lat=[FINE_LAT[5]],
        station_lon=[FINE_LON[7]],
        station_values=[3.0],
        noise_std_coarse=0.05,
        noise_std_station=0.01,
    )
    assert float(out["mean"][0, 5, 7]) > 1.0
    assert float(out["std"][0, 5, 7]) < 0.05


def test_optimal_interpolation_is_the_gaussian_update_with_the_sample_covariance():
    lat, lon = np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    kernel = kernel_on(lat, lon, lengthscale=1.5)
    fields = sample_fields(kernel, 7, seed=4)
    covariance = fit_empirical_covariance(as_field(fields, lat, lon))
    assert covariance.n_fields == 7
    c = np.cov(fields.reshape(7, -1), rowvar=False)  # rank 6 of 24: singular
    # the 2 × 2 block means of a 4 × 6 grid (row-major lat, lon), 6 cells
    a = coarse_grain(as_field(np.eye(24).reshape(24, 4, 6), lat, lon), 2).values.reshape(24, 6).T
    rng = np.random.default_rng(5)
    y, noise = rng.standard_normal(6), rng.uniform(0.01, 0.1, 6)
    m = fields.mean(0).ravel()
    gain = c @ a.T @ np.linalg.inv(a @ c @ a.T + np.diag(noise))
    mean, var = gp_posterior(covariance, lat, lon, a, y, noise)
    np.testing.assert_allclose(mean.ravel(), m + gain @ (y - a @ m), atol=1e-8)
    np.testing.assert_allclose(var.ravel(), np.diag(c - gain @ a @ c), atol=1e-8)


def test_optimal_interpolation_refuses_a_grid_other_than_the_training_grid():
    kernel = kernel_on(FINE_LAT, FINE_LON)
    covariance = fit_empirical_covariance(as_field(sample_fields(kernel, 5, 6), FINE_LAT, FINE_LON))
    coarse = coarse_grain(as_field(np.zeros((1, 8, 24)), FINE_LAT[:8], FINE_LON), 4)
    with pytest.raises(ValueError, match=r"lives on its training grid \(16 × 24\).* 8 × 24"):
        kriging_downscale(covariance, coarse, FINE_LAT[:8], FINE_LON, 4, noise_std_coarse=0.1)
