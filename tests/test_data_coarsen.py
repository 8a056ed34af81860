"""Tests of hdm.data.coarsen.coarse_grain: block constants, area means, trim policy."""

from __future__ import annotations

import dask.array
import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.schema import lat_weights, mock_fields


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
