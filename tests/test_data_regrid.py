"""hdm.data.regrid and the one multilinear stencil: values at stations, interpolation."""

import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.regrid import (
    CoverageError,
    interpolate_coarse,
    longitude_period,
    regrid_to_cells,
    values_at_points,
)
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
    with pytest.raises(ValueError, match=r"station B at lat=2\.6 lies outside"):
        values_at_points(field, [1.0, 2.6], [1.0, 1.0], station=["A", "B"])


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
    # within half a spacing (0.125°) beyond the outermost rows: in their cells, their values
    for edge in (axis, axis.coords):
        i, w = multilinear_stencil((edge,), np.array([[58.1], [49.9]]))
        np.testing.assert_allclose((linear[i] * w).sum(1), [linear[-1], linear[0]])
    with pytest.raises(OutsideGridError, match=r"x0=58.15 .* its cells \[49.875, 58.125\]"):
        multilinear_stencil((axis.coords,), np.array([[58.15]]))


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


def test_regrid_to_cells_gives_the_source_back_and_its_block_means():
    """Target cells that are source cells: the source; unions of 2 × 2 source cells: the
    area-weighted block means of coarse_grain."""
    lat, lon = 40.25 + 0.5 * np.arange(8), -5.25 + 0.5 * np.arange(10)  # 8 × 10 cells
    values = np.random.default_rng(0).normal(size=(lat.size, lon.size))
    same = regrid_to_cells(values, lat, lon, lat, lon)
    np.testing.assert_allclose(same, values, rtol=0, atol=1e-12)
    blocks = coarse_grain(grid_field(values[None], lat, lon), 2)
    coarse = regrid_to_cells(values, lat, lon, lat[::2] + 0.25, lon[::2] + 0.25)
    np.testing.assert_allclose(coarse, blocks.values[0], rtol=0, atol=1e-12)


def test_regrid_to_cells_interpolates_a_linear_field_exactly_on_a_finer_grid():
    lat, lon = 40.25 + 0.5 * np.arange(8), -5.25 + 0.5 * np.arange(10)
    values = 3.0 * lat[:, None] - 2.0 * lon[None, :]
    # 0.1° cells, centres inside the source centres' span (beyond, the edge value is held)
    fine_lat, fine_lon = np.arange(40.3, 43.7, 0.1), np.arange(-5.2, -0.75, 0.1)
    out = regrid_to_cells(values, lat, lon, fine_lat, fine_lon)
    np.testing.assert_allclose(out, 3.0 * fine_lat[:, None] - 2.0 * fine_lon[None, :], atol=1e-9)


def test_a_global_source_wraps_around_the_antimeridian():
    lat, lon = np.array([-5.0, 5.0]), np.arange(-175.0, 180.0, 10.0)  # 36 cells of 10°
    values = np.tile(lon, (2, 1))
    out = regrid_to_cells(values, lat, lon, lat, np.array([165.0, 175.0, 185.0, 195.0]))
    np.testing.assert_allclose(out[0], [165.0, 175.0, -175.0, -165.0])


def test_a_grid_beyond_a_regular_source_is_refused_naming_both_extents():
    lat, lon = 40.25 + 0.5 * np.arange(8), -5.25 + 0.5 * np.arange(10)
    with pytest.raises(
        CoverageError,
        match=r"^t2m does not cover the grid: the source spans "
        r"lat 40\.000 to 44\.000, lon -5\.500 to -0\.500; the grid's cells span "
        r"lat 42\.000 to 46\.000, lon -2\.500 to -0\.500$",
    ):
        regrid_to_cells(np.zeros((8, 10)), lat, lon, [43.0, 45.0], [-2.0, -1.0], source="t2m")
