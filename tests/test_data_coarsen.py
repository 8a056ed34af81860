"""Tests of hdm.data.coarsen: coarse_grain (block constants, area means, trim policy) and
conservative_regrid (aligned blocks, the operator's numbers, conservation, edges)."""

from __future__ import annotations

import dask.array
import numpy as np
import pytest
import xarray as xr

from hdm.conditioning.observations import CoarseGrain
from hdm.data.coarsen import cell_bounds, coarse_grain, conservative_regrid
from hdm.data.schema import lat_weights, mock_fields
from hdm.hilbert.grids import LatLonGrid


def field(n_lat=10, n_lon=13, seed=0, chunks=None) -> xr.Dataset:
    ds = mock_fields(
        ["t2m"],
        n_time=2,
        n_lat=n_lat,
        n_lon=n_lon,
        lat=(-80, 82),
        lon=(-30, 30),
        seed=seed,
        dtype="float64",
    )
    return ds.chunk(chunks) if chunks else ds


def area_mean(ds: xr.Dataset) -> np.ndarray:
    w = lat_weights(ds)
    return ((ds.t2m * w).sum(("lat", "lon")) / (w.sum() * ds.sizes["lon"])).values


def test_block_constants_are_returned_and_trailing_rows_trimmed():
    ds = field()
    rng = np.random.default_rng(1)
    blocks = rng.normal(size=(2, 3, 4))  # (time, 3 coarse rows, 4 coarse cols)
    fine = np.repeat(np.repeat(blocks, 3, axis=1), 3, axis=2)  # 9 x 12
    values = np.pad(fine, ((0, 0), (0, 1), (0, 1)), constant_values=99.0)  # 10 x 13
    coarse = coarse_grain(ds.assign(t2m=(ds.t2m.dims, values, ds.t2m.attrs)), 3)
    assert dict(coarse.sizes) == {"time": 2, "lat": 3, "lon": 4}
    np.testing.assert_allclose(coarse.t2m.values, blocks, rtol=1e-13)
    assert "trimmed 1 trailing lat value(s) 82 to 82" in coarse.attrs["coarse_grain"]
    assert "trimmed 1 trailing lon value(s) 30 to 30" in coarse.attrs["coarse_grain"]
    assert coarse.t2m.attrs["units"] == "K"


def test_area_weighted_mean_preserved_and_centres_weighted():
    ds = field()
    coarse = coarse_grain(ds, 3)
    kept = ds.isel(lat=slice(0, 9), lon=slice(0, 12))
    assert np.isfinite(coarse.t2m.values).all()
    np.testing.assert_allclose(area_mean(coarse), area_mean(kept), rtol=1e-14)
    w = np.cos(np.deg2rad(kept.lat.values)).reshape(3, 3)
    np.testing.assert_allclose(
        coarse.lat.values, (w * kept.lat.values.reshape(3, 3)).sum(1) / w.sum(1), rtol=1e-14
    )
    np.testing.assert_allclose(coarse.lon.values, kept.lon.values.reshape(4, 3).mean(1))
    # area-weighted centres lie equatorward of the arithmetic ones
    arith = kept.lat.values.reshape(3, 3).mean(1)
    assert np.all(np.abs(coarse.lat.values) <= np.abs(arith) + 1e-12)


def test_coarse_graining_composes():
    ds = field(n_lat=8, n_lon=8)
    twice = coarse_grain(coarse_grain(ds, 2), 2)
    once = coarse_grain(ds, 4)
    np.testing.assert_allclose(twice.t2m.values, once.t2m.values, rtol=1e-13)
    np.testing.assert_allclose(twice.lat.values, once.lat.values, rtol=1e-13)
    np.testing.assert_allclose(twice.lat_weight.values, once.lat_weight.values, rtol=1e-13)


def test_lazy_in_lazy_out_nans_and_rectangular_factor():
    ds = field(chunks={"time": 1})
    values = ds.t2m.values.copy()
    values[0, 0, 0] = np.nan  # one NaN in block (0, 0)
    values[0, 3:6, 0:2] = np.nan  # block (1, 0) with factor (3, 2) all NaN
    ds = ds.assign(t2m=(ds.t2m.dims, values)).chunk({"time": 1})
    out = coarse_grain(ds, (3, 2))
    assert isinstance(out.t2m.data, dask.array.Array)
    assert dict(out.sizes) == {"time": 2, "lat": 3, "lon": 6}
    got = out.t2m.values
    w = np.cos(np.deg2rad(ds.lat.values[:3]))[:, None] * np.ones((3, 2))
    block = values[0, :3, :2]
    ok = np.isfinite(block)
    assert got[0, 0, 0] == pytest.approx((w[ok] * block[ok]).sum() / w[ok].sum(), rel=1e-13)
    assert np.isnan(got[0, 1, 0]) and np.isfinite(got[1]).all()
    numpy_out = coarse_grain(ds.load(), (3, 2))
    assert isinstance(numpy_out.t2m.data, np.ndarray)
    da = coarse_grain(ds.t2m, (3, 2))
    assert isinstance(da, xr.DataArray) and da.name == "t2m"


def test_errors():
    ds = field()
    with pytest.raises(ValueError, match=r"larger than the grid \(lat: size 10 < factor 11"):
        coarse_grain(ds, 11)
    with pytest.raises(ValueError, match=r"lon: size 13 < factor 20"):
        coarse_grain(ds, (2, 20))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="must be a positive integer"):
            coarse_grain(ds, bad)
    with pytest.raises(ValueError, match=r"boundary='error' \(lat: size 10 is not a multiple of 3"):
        coarse_grain(ds, 3, boundary="error")
    assert coarse_grain(ds, (5, 13), boundary="error").sizes["lat"] == 2
    with pytest.raises(ValueError, match="boundary must be 'trim' or 'error'"):
        coarse_grain(ds, 2, boundary="pad")


# ------------------------------------------------------------------ conservative_regrid


def uk_field(chunks=None) -> xr.Dataset:
    """Fields on the UK model grid: lat 50..58, lon -10..2 every 0.25° (domain
    [49.875, 58.125] × [-10.125, 2.125])."""
    ds = mock_fields(
        ["t2m"], n_time=2, n_lat=33, n_lon=49, lat=(50, 58), lon=(-10, 2), seed=3, dtype="float64"
    )
    return ds.chunk(chunks) if chunks else ds


def test_aligned_blocks_are_coarse_grain():
    ds = field(chunks={"time": 1})
    blocks = coarse_grain(ds, 3)  # trims the 10th row and the 13th column
    lat = ds.lat.values[:9].reshape(3, 3).mean(1)  # the blocks' arithmetic middles
    lon = ds.lon.values[:12].reshape(4, 3).mean(1)
    out = conservative_regrid(ds, lat, lon)
    assert isinstance(out.t2m.data, dask.array.Array)
    np.testing.assert_allclose(out.t2m.values, blocks.t2m.values, rtol=1e-13)
    np.testing.assert_allclose(out.lat_weight.values, blocks.lat_weight.values, rtol=1e-14)


def test_regridded_field_is_what_the_operator_observes():
    """One implementation of the weights: the 0.7° field made from the truth is exactly
    CoarseGrain.for_coarse_grid's observation of it, edge cells and left-out rows alike."""
    import torch

    ds = uk_field()
    lat, lon = np.arange(49.5, 59.0, 0.7), np.arange(-10.5, 3.0, 0.7)
    out = conservative_regrid(ds.t2m, lat, lon)
    assert (
        out.shape == (2, 12, 18)
        and "2 lat row(s), 2 lon column(s)" in out.attrs["conservative_regrid"]
    )
    grid = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
    op = CoarseGrain.for_coarse_grid(lat, lon, grid, 0.1)
    y = op.apply(torch.as_tensor(ds.t2m.values)[:, None], grid).numpy()
    np.testing.assert_allclose(y, out.values.reshape(2, -1), rtol=1e-14)
    np.testing.assert_allclose(out.lat.values, lat[1:13])


def test_cells_tiling_the_grid_conserve_the_area_mean():
    ds = uk_field()
    lat = 49.875 + 0.55 * (np.arange(15) + 0.5)  # 15 cells of 0.55° tile [49.875, 58.125]
    lon = -10.125 + 0.875 * (np.arange(14) + 0.5)  # 14 of 0.875° tile [-10.125, 2.125]
    out = conservative_regrid(ds, lat, lon)
    assert out.t2m.shape == (2, 15, 14)
    np.testing.assert_allclose(area_mean(out), area_mean(ds), rtol=1e-14)


def test_cf_bounds_are_written_read_and_used():
    ds = uk_field()
    lat_b = np.array([[50.0, 51.5], [51.5, 52.0], [52.0, 55.0]])  # unequal widths
    lon_b = np.array([[-9.0, -7.0], [-7.0, -6.0]])
    out = conservative_regrid(ds, lat_b.mean(1), lon_b.mean(1), lat_b, lon_b)
    assert out.lat.attrs["bounds"] == "lat_bnds" and out.lat_bnds.dims == ("lat", "bnds")
    np.testing.assert_array_equal(cell_bounds(out, "lat"), lat_b)
    np.testing.assert_array_equal(cell_bounds(out, "lon"), lon_b)
    assert cell_bounds(out.t2m, "lat") is None  # a DataArray holds no (n, 2) coordinate
    # the middle lat cell [51.5, 52.0] is the cos-weighted mean of the fine cells
    # [51.625 ± 0.125], [51.875 ± 0.125] and the halves of those at 51.5 and 52.0
    w = np.array([0.125, 0.25, 0.125]) * np.cos(np.deg2rad([51.5, 51.75, 52.0]))
    rows = ds.t2m.sel(lat=[51.5, 51.75, 52.0], lon=slice(-7.0, -6.0)).values
    lon_w = np.array([0.125, 0.25, 0.25, 0.25, 0.125])
    expected = np.einsum("i,tij,j->t", w, rows, lon_w) / (w.sum() * lon_w.sum())
    np.testing.assert_allclose(out.t2m.values[:, 1, 1], expected, rtol=1e-13)


def test_cells_cut_by_the_edge_are_kept_trimmed_or_nan():
    ds = uk_field()
    ones = ds.assign(t2m=xr.ones_like(ds.t2m))
    lat, lon = np.arange(49.0, 59.0), np.arange(-9.5, 3.0)  # 1° cells, edges on points
    trimmed = conservative_regrid(ones, lat, lon)
    assert trimmed.t2m.shape == (2, 9, 12)  # [48.5, 49.5] and [2, 3] are dropped
    np.testing.assert_allclose(trimmed.t2m.values, 1.0, rtol=1e-14)  # inside parts
    nan = conservative_regrid(ones, lat, lon, outside="nan")
    assert nan.t2m.shape == (2, 10, 13)
    assert np.isnan(nan.t2m.values[:, 0]).all() and np.isnan(nan.t2m.values[:, :, -1]).all()
    np.testing.assert_array_equal(nan.t2m.values[:, 1:, :-1], trimmed.t2m.values)
    # lat_weight: the mean cos φ over the kept row's covered part [49.875, 50.5]
    w = np.array([0.25, 0.25, 0.125]) * np.cos(np.deg2rad([50.0, 50.25, 50.5]))
    assert trimmed.lat_weight.values[0] == pytest.approx(w.sum() / 0.625, rel=1e-13)


def test_conservative_regrid_errors_name_the_problem():
    ds = uk_field()
    with pytest.raises(
        ValueError,
        match=r"coarse grid \(lat \[59\.5, 69\.5\], lon \[-10\.5, 1\.5\]\) is at least half "
        r"covered by the fine grid \(lat \[49\.875, 58\.125\], lon \[-10\.125, 2\.125\]\)",
    ):
        conservative_regrid(ds, np.arange(60.0, 70.0), np.arange(-10.0, 2.0))
    with pytest.raises(ValueError, match="the centres of 'coarse lat' must increase"):
        conservative_regrid(ds, np.array([52.0, 51.0]), np.arange(-10.0, 2.0))
    with pytest.raises(ValueError, match="outside must be 'trim' or 'nan'"):
        conservative_regrid(ds, np.arange(50.0, 58.0), np.arange(-10.0, 2.0), outside="pad")


def test_block_means_keep_the_variables_attributes_only():
    """A field without units stays without units (the weights' own attributes, those of
    the latitudes, must not leak into it: "degrees_north" would then be refused as a
    temperature's units)."""
    from hdm.data.schema import mock_fields

    ds = mock_fields(n_time=1, n_lat=8, n_lon=8)
    ds["lat"].attrs["units"] = "degrees_north"
    ds["t2m"].attrs = {"long_name": "2 metre temperature"}
    out = coarse_grain(ds, 4)
    assert out["t2m"].attrs == {"long_name": "2 metre temperature"}
