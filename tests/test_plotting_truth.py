"""The truth panel of ``plot_downscale_maps``: a truth DataArray is put on the ensemble's
grid, time and units (as a file opens: descending latitude, °C, a time dimension) before
it is drawn; what cannot be put there is a one-line error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import QuadMesh

from hdm import plotting

LAT = np.arange(50.0, 54.0, 0.25)
LON = np.arange(-4.0, 2.0, 0.25)
TIMES = pd.date_range("2019-03-28", periods=3, freq="6h")


def _truth_k() -> xr.DataArray:
    """A (time, lat, lon) truth in K on the ensemble's grid, ascending, that differs
    between times, rows and columns (a flipped or shifted field would not match)."""
    t = np.arange(TIMES.size)[:, None, None]
    values = 270.0 + 0.5 * t + 2.0 * (LAT[None, :, None] - 50) + 0.3 * LON[None, None, :]
    return xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": TIMES, "lat": LAT, "lon": LON},
        attrs={"units": "K"},
        name="t2m",
    )


def _ensemble(members: int = 3) -> xr.Dataset:
    """The layout of hdm.downscale's output around the truth, in K."""
    rng = np.random.default_rng(0)
    truth = _truth_k()
    values = truth.values[None] + rng.normal(0, 0.3, (members, *truth.shape))
    ens = xr.DataArray(
        values,
        dims=("member", "time", "lat", "lon"),
        coords={"member": np.arange(members), "time": TIMES, "lat": LAT, "lon": LON},
        attrs={"units": "K"},
    )
    return xr.Dataset({"t2m": ens, "t2m_mean": ens.mean("member"), "t2m_std": ens.std("member")})


def _as_a_file_opens(truth: xr.DataArray) -> xr.DataArray:
    """``truth`` as ERA5's netCDF has it: latitude/longitude names, latitude descending,
    longitudes in [0, 360), values in °C."""
    celsius = (truth - 273.15).assign_attrs(units="degC")
    celsius = celsius.rename(lat="latitude", lon="longitude").isel(latitude=slice(None, None, -1))
    celsius = celsius.assign_coords(longitude=np.mod(celsius["longitude"].values, 360.0))
    return celsius.sortby("longitude")


def test_a_descending_celsius_truth_with_time_gives_the_panel_of_the_kelvin_one():
    ens, truth = _ensemble(), _truth_k()
    as_file = _as_a_file_opens(truth)
    assert float(as_file["latitude"][0]) > float(as_file["latitude"][-1])  # descending
    expected = truth.isel(time=1).values
    for given in (truth, truth.isel(time=1), as_file, as_file.isel(time=1)):
        panel = plotting.truth_field(ens, "t2m", 1, given)
        assert panel.shape == (LAT.size, LON.size)
        np.testing.assert_allclose(panel, expected, atol=1e-9)
    # the truth panel of the map is that array, on the shared K colour scale
    panels = plotting._map_panels(ens, "t2m", 1, as_file, n_members=1)
    title, lon, lat, values, kind = panels[0]
    assert (title, kind) == ("truth", "field")
    np.testing.assert_allclose(values, expected, atol=1e-9)
    np.testing.assert_array_equal(lat, LAT)
    np.testing.assert_array_equal(lon, LON)


def test_a_numpy_truth_on_the_grid_is_drawn_as_it_is():
    """The CLI's maps pass ``truth.isel(time=0).values``: a (lat, lon) array."""
    ens = _ensemble()
    values = _truth_k().isel(time=2).values
    np.testing.assert_array_equal(plotting.truth_field(ens, "t2m", 2, values), values)
    np.testing.assert_array_equal(plotting.truth_field(ens, "t2m", -1, values), values)


def test_a_truth_on_a_finer_grid_is_interpolated_to_the_ensemble_grid():
    """A field linear in lat and lon is reproduced exactly by linear interpolation."""
    ens = _ensemble()
    lat, lon = np.arange(49.5, 54.01, 0.125), np.arange(-5.0, 3.01, 0.1)
    values = 280.0 + 2.0 * lat[:, None] - 0.7 * lon[None, :]
    fine = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    panel = plotting.truth_field(ens, "t2m", 0, fine)
    np.testing.assert_allclose(panel, 280.0 + 2.0 * LAT[:, None] - 0.7 * LON[None, :], atol=1e-9)


def _one_line_error(error, match, fn, *args, **kwargs) -> str:
    with pytest.raises(error, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_a_time_index_outside_the_ensemble_names_its_number_of_times(tmp_path):
    ens = _ensemble()
    message = _one_line_error(
        ValueError,
        r"time_index 5 is out of range: the ensemble has 3 time\(s\)",
        plotting.plot_downscale_maps,
        tmp_path / "m.png",
        ens,
        "t2m",
        5,
    )
    assert "indices 0..2" in message
    assert not (tmp_path / "m.png").exists()
    truth = _truth_k()
    _one_line_error(
        ValueError, "time_index -4 is out of range", plotting.truth_field, ens, "t2m", -4, truth
    )


def test_a_truth_that_does_not_fit_is_one_line():
    ens, truth = _ensemble(), _truth_k()
    cases = [
        (truth.isel(time=0).values[:-1], r"truth array has shape \(15, 24\).*\(16, 24\)"),
        (truth.isel(time=0), r"the truth is at 2019-03-28T00:00, .* at 2019-03-28T06:00"),
        (truth.isel(time=[0, 2]), r"the truth has no time 2019-03-28T06:00 .* 2 time\(s\)"),
        (truth.sel(lat=slice(51, 53)), r"does not cover the ensemble's grid: lat 50\.\.53\.75"),
        (truth.assign_attrs(units="m s-1"), r"the truth is in 'm s-1'.*cannot be converted to 'K'"),
        (truth.expand_dims(number=2), r"dimension\(s\) besides time, level, lat and lon"),
        (xr.DataArray(truth.values[0]), r"needs 'lat' and 'lon' dimensions with coordinates"),
    ]
    for given, match in cases:
        _one_line_error(ValueError, match, plotting.truth_field, ens, "t2m", 1, given)


def test_maps_name_a_variable_the_ensemble_lacks(tmp_path):
    _one_line_error(
        KeyError,
        r"the ensemble has no temp, temp_mean, temp_std.*\['t2m', 't2m_mean', 't2m_std'\]",
        plotting.plot_downscale_maps,
        tmp_path / "m.png",
        _ensemble(),
        "temp",
    )


def test_maps_draw_a_truth_as_a_file_opens_it(tmp_path, monkeypatch):
    """The whole map with a file-like truth: written, with the truth's mesh holding the
    K values on the ensemble's (ascending) grid."""
    figures = []
    save = plotting._save
    monkeypatch.setattr(plotting, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    ens = _ensemble()
    truth = _truth_k()
    path = plotting.plot_downscale_maps(
        tmp_path / "m.png", ens, "t2m", 1, truth=_as_a_file_opens(truth), n_members=1
    )
    assert path.stat().st_size > 1000
    (ax,) = [a for a in figures[0].axes if a.get_title() == "truth"]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    drawn = np.asarray(mesh.get_array()).reshape(LAT.size, LON.size)
    np.testing.assert_allclose(drawn, truth.isel(time=1).values, atol=1e-9)
