"""Tests of the ``.hdm`` accessor: exact tensor round trips and grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import hdm.data  # noqa: F401  (registers the accessor)
from hdm.data.coarsen import coarse_grain
from hdm.data.schema import mock_fields


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_tensor_from_tensor_round_trip_is_exact(dtype):
    ds = mock_fields(
        ["t2m", "q", "u10"], n_time=3, levels=[300, 500, 850], level_variables=["q"], dtype=dtype
    )
    x = ds.hdm.to_tensor()
    assert x.shape == (3, 5, 9, 16) and x.dtype == getattr(torch, dtype)
    assert torch.isfinite(x).all()
    assert ds.hdm.channels()[1:4] == (("q", 300.0), ("q", 500.0), ("q", 850.0))
    np.testing.assert_array_equal(x[:, 2].numpy(), ds.q.sel(level=500).values)
    back = ds.hdm.from_tensor(x)
    xr.testing.assert_identical(back, ds)
    assert ds.hdm.to_tensor(dtype=torch.float16).dtype == torch.float16


def test_subset_members_and_dataarray():
    ds = mock_fields(["t2m", "u10"], n_time=2, chunks={"time": 1})
    x = ds.hdm.to_tensor("u10")
    assert x.shape == (2, 1, 9, 16)
    ens = torch.stack([x, x + 1, x + 2])  # (member, time, C, lat, lon)
    out = ds.hdm.from_tensor(ens, "u10")
    assert dict(out.u10.sizes) == {"member": 3, "time": 2, "lat": 9, "lon": 16}
    np.testing.assert_array_equal(out.u10.sel(member=2).values, ds.u10.values + 2)
    da = ds.t2m
    t = da.hdm.to_tensor()
    assert t.shape == (2, 1, 9, 16)
    xr.testing.assert_identical(da.hdm.from_tensor(t), da.load())
    with pytest.raises(ValueError, match=r"expected \(time, C, lat, lon\) = \(2, 2, 9, 16\)"):
        ds.hdm.from_tensor(torch.zeros(2, 3, 9, 16))


def test_grid_global_regional_and_coarse():
    glob = mock_fields(n_lat=9, n_lon=16, lat=(-80, 80), lon=(-180, 180))
    g = glob.hdm.grid
    assert g.shape == (9, 16) and g.axes[1].periodic and not g.axes[0].periodic
    np.testing.assert_allclose(g.axes[0].coords, glob.lat.values)
    np.testing.assert_allclose(g.axes[1].coords, glob.lon.values)
    assert np.isfinite(g.weights()).all()
    region = mock_fields(n_lat=33, n_lon=49, lat=(50, 58), lon=(-10, 2))
    r = region.t2m.hdm.grid
    assert not r.axes[1].periodic and r.axes[1].start == -10 and r.axes[1].stop == 2
    coarse = coarse_grain(region, 4)  # area-weighted centres: nearly regular
    assert coarse.hdm.grid.shape == (8, 12)


def test_irregular_grid_names_the_coordinate():
    ds = mock_fields(n_lat=6)
    lat = ds.lat.values.copy()
    lat[3] += 10.0
    with pytest.raises(ValueError, match="coordinate 'lat' is not regularly spaced: index 3"):
        _ = ds.assign_coords(lat=lat).hdm.grid
