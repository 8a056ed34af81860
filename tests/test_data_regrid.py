"""hdm.data.regrid and the one multilinear stencil: values at stations, interpolation."""

import numpy as np
import pytest
import xarray as xr

from hdm.data.regrid import interpolate_coarse, longitude_period, values_at_points
from hdm.hilbert.grids import Axis, OutsideGridError, multilinear_stencil


def grid_field(values, lat, lon):
    return xr.DataArray(
        np.asarray(values, dtype=np.float64),
        dims=("time", "lat", "lon"),
        coords={"lat": lat, "lon": lon},
    )


def test_values_at_points_at_node_and_midpoint():
    values = np.arange(12.0).reshape(1, 3, 4)
    field = grid_field(values, lat=np.array([0.0, 1.0, 2.0]), lon=np.array([0.0, 1, 2, 3]))
    out = values_at_points(field, [1.0, 0.5], [2.0, 0.5])
    assert out.dims == ("time", "station")
    assert out.values[0, 0] == values[0, 1, 2]
    assert out.values[0, 1] == pytest.approx(values[0, :2, :2].mean())


def test_station_outside_grid_is_named():
    field = grid_field(np.zeros((1, 3, 4)), lat=np.array([0.0, 1, 2]), lon=np.arange(4.0))
    with pytest.raises(ValueError, match=r"station B at lat=2\.5 lies outside"):
        values_at_points(field, [1.0, 2.5], [1.0, 1.0], station=["A", "B"])


def test_a_global_longitude_grid_wraps_around():
    lon = np.arange(0.0, 360.0, 90.0)  # 0, 90, 180, 270: the circle
    assert longitude_period(lon) == 360.0 and longitude_period(lon[:3]) is None
    field = grid_field(np.array([[[0.0, 1.0, 2.0, 3.0]] * 2]), lat=[0.0, 1.0], lon=lon)
    # halfway between 270 (3) and 360 = 0 (0); -45 is the same point
    out = values_at_points(field, [0.0, 0.0], [315.0, -45.0])
    np.testing.assert_allclose(out.values[0], [1.5, 1.5])


def test_stencil_of_a_regular_axis_and_of_its_coordinates_agree_and_is_exact_for_linear():
    axis = Axis(50.0, 58.0, 33, name="lat")
    pts = np.array([[50.0], [51.13], [57.99], [58.0]])
    i1, w1 = multilinear_stencil((axis,), pts)
    i2, w2 = multilinear_stencil((axis.coords,), pts)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(w1, w2, atol=1e-12)
    np.testing.assert_allclose(w1.sum(1), 1.0)
    linear = 2.0 * axis.coords - 3.0
    np.testing.assert_allclose((linear[i1] * w1).sum(1), 2.0 * pts[:, 0] - 3.0)
    with pytest.raises(OutsideGridError, match="station s at lat=49 lies outside") as err:
        multilinear_stencil((axis,), np.array([[52.0], [49.0]]), ids=["r", "s"])
    assert err.value.point == 1


def test_interpolate_coarse_reproduces_a_linear_field():
    lat_c, lon_c = np.array([0.5, 1.5, 2.5, 3.5]), np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    coarse = grid_field((lat_c[:, None] + 2 * lon_c[None, :])[None], lat=lat_c, lon=lon_c)
    lat, lon = np.linspace(0, 4, 9), np.linspace(0, 5, 11)
    for method in ("bilinear", "bicubic"):
        for edges in ("extrapolate", "linear"):  # both continue a line exactly
            out = interpolate_coarse(coarse, (lat, lon), method, edges=edges)
            np.testing.assert_allclose(out.values[0], lat[:, None] + 2 * lon[None, :], atol=1e-9)
    held = interpolate_coarse(coarse, (lat, lon), "bicubic")  # standard: edge values held
    assert held.values[0, 0, 0] == pytest.approx(coarse.values[0, 0, 0])
