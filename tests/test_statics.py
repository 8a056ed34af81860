"""hdm.domains.statics: land fraction, orography and latitude on any regular grid."""

import json
import os

import numpy as np
import pytest
import xarray as xr

from hdm.data.coarsen import coarse_grain
from hdm.data.regrid import CoverageError
from hdm.domains import statics
from hdm.domains.statics import (
    STANDARD_GRAVITY,
    STATIC_SOURCES,
    StaticSource,
    StaticSourceError,
    static_field,
)

#: the UK domain of uk_t2m: 0.25° centres, 50–58 °N, 10 °W–2 °E
UK_LAT, UK_LON = np.linspace(50.0, 58.0, 33), np.linspace(-10.0, 2.0, 49)


def cell(lat, lon):
    return int(np.argmin(abs(UK_LAT - lat))), int(np.argmin(abs(UK_LON - lon)))


@pytest.fixture(scope="module")
def uk():
    return {name: static_field(name, UK_LAT, UK_LON) for name in STATIC_SOURCES}


#: open Atlantic south-west of Ireland and west of the Hebrides, and the North Sea
SEA = [(50.5, -10.0), (51.0, -10.0), (56.0, -10.0), (56.5, -9.75), (56.0, 1.5)]


def test_land_fraction_is_zero_at_sea_one_inland_and_fractional_on_the_coast(uk):
    land = uk["land_fraction"]
    assert land.shape == (33, 49) and land.dtype == np.float64
    assert all(land[cell(*p)] == 0.0 for p in SEA)
    # the Midlands: cells inside Great Britain's polygon
    assert all(land[cell(*p)] == pytest.approx(1.0, abs=1e-12) for p in [(52.5, -1.5), (52, -1)])
    assert 0.2 < land[cell(52.5, 1.75)] < 0.8  # Lowestoft: the coast crosses the cell


def test_land_fraction_agrees_with_the_eur11_model_within_5_percent(uk):
    # measured: domain means 0.416 (Natural Earth) and 0.424 (EUR-11), -1.9 %; mean
    # absolute cell difference 0.025
    ne, model = uk["land_fraction"], uk["land_fraction_eur11"]
    w = np.broadcast_to(np.cos(np.deg2rad(UK_LAT))[:, None], ne.shape)
    mean_ne, mean_model = np.average(ne, weights=w), np.average(model, weights=w)
    assert abs(mean_ne - mean_model) / mean_model < 0.05
    assert np.abs(ne - model).mean() < 0.05


def test_land_fraction_is_conserved_across_resolutions(uk):
    """The 2 × 2 blocks of a grid refined by 2 tile the coarse cells exactly (cell-centred:
    fine centres a quarter of a coarse spacing either side of the coarse ones), so their
    area-weighted (cos lat) means are the coarse fractions."""
    lat = np.linspace(50.0 - 0.0625, 58.0 + 0.0625, 66)
    lon = np.linspace(-10.0 - 0.0625, 2.0 + 0.0625, 98)
    fine = xr.DataArray(static_field("land_fraction", lat, lon), coords={"lat": lat, "lon": lon})
    blocks = coarse_grain(fine, 2)
    np.testing.assert_allclose(blocks["lat"], UK_LAT, atol=1e-3)  # cos-weighted centres
    coarse = uk["land_fraction"]
    assert ((coarse > 0) & (coarse < 1)).sum() > 100  # many coasts: not 0 = 0 and 1 = 1
    np.testing.assert_allclose(blocks.values, coarse, rtol=0, atol=1e-6)


def test_land_fraction_does_not_depend_on_the_longitude_convention(uk):
    shifted = static_field("land_fraction", UK_LAT, UK_LON + 360.0)
    np.testing.assert_allclose(shifted, uk["land_fraction"], rtol=0, atol=1e-12)


def test_orography_peaks_over_the_highlands_and_is_zero_at_sea(uk):
    height = uk["orography"]
    i, j = np.unravel_index(np.argmax(height), height.shape)
    assert 56.0 <= UK_LAT[i] <= 58.0 and -6.0 <= UK_LON[j] <= -2.5  # the Grampians
    assert height[i, j] > 600.0
    assert all(abs(height[cell(*p)]) < 1.0 for p in SEA)


def test_latitude_is_the_cell_centres():
    np.testing.assert_array_equal(static_field("latitude", UK_LAT, UK_LON)[:, 7], UK_LAT)


def test_a_grid_outside_eur11_is_refused_naming_both_extents():
    japan = (np.linspace(30.0, 40.0, 11), np.linspace(130.0, 145.0, 16))
    pattern = (
        r"variable 'HSURF' of .*HSURF_regional_model_0\.11deg\.nc does not cover the grid: "
        r"the source spans lat 20\.\d+ to 74\.\d+, lon -48\.\d+ to 70\.\d+; the grid's "
        r"cells span lat 29\.500 to 40\.500, lon 129\.500 to 145\.500$"
    )
    with pytest.raises(CoverageError, match=pattern):
        static_field("orography", *japan)
    # inside the domain's lat/lon box, but west of its slanted (rotated-pole) edge
    with pytest.raises(CoverageError, match="outline of its curvilinear grid leaves"):
        static_field("orography", np.linspace(21, 23, 5), np.linspace(-40, -30, 11))


# ----------------------------------------------------------------- synthetic files


def era5_invariants(path, lat, lon, height, land):
    """An ERA5-style invariant file: latitude descending, longitude in [0, 360), one
    valid_time, geopotential z (m² s⁻²) and lsm (0 - 1)."""
    dims = ("valid_time", "latitude", "longitude")
    ds = xr.Dataset(
        {
            "z": (dims, (STANDARD_GRAVITY * height)[None, ::-1], {"units": "m**2 s**-2"}),
            "lsm": (dims, land[None, ::-1], {"units": "(0 - 1)"}),
        },
        coords={
            "valid_time": np.array(["2019-01-01"], dtype="datetime64[ns]"),
            "latitude": lat[::-1],
            "longitude": np.mod(lon, 360.0),
        },
    )
    ds.to_netcdf(path)
    return path


def era5_grid():
    lat, lon = np.arange(50.0, 56.01, 0.5), np.arange(-10.0, -0.49, 0.5)
    height = 500.0 + 20.0 * (lat[:, None] - 50.0) + 10.0 * lon[None, :]
    land = np.clip((lon[None, :] + 6.0) / 4.0 + 0 * lat[:, None], 0.0, 1.0)
    return lat, lon, height, land


def test_era5_geopotential_becomes_height_and_lsm_a_fraction(tmp_path):
    lat, lon, height, land = era5_grid()
    path = era5_invariants(tmp_path / "invariants.nc", lat, lon, height, land)
    orography = StaticSource("orography", "file", str(path), "z")
    # the same cells as the file's: each cell's mean is its one point, z / g0
    np.testing.assert_allclose(static_field(orography, lat, lon), height, rtol=1e-12)
    lsm = StaticSource("land_fraction", "file", str(path), "lsm")
    np.testing.assert_allclose(static_field(lsm, lat, lon), land, rtol=0, atol=1e-12)


def write_one(path, values, lat, lon, units, name="h"):
    ds = xr.Dataset(
        {name: (("lat", "lon"), values, {} if units is None else {"units": units})},
        coords={"lat": lat, "lon": lon},
    )
    ds.to_netcdf(path)
    return path


def test_units_are_converted_or_refused(tmp_path):
    lat, lon, height, land = era5_grid()
    km = write_one(tmp_path / "km.nc", height / 1000.0, lat, lon, "km")
    np.testing.assert_allclose(
        static_field(StaticSource("orography", "file", str(km), "h"), lat, lon), height
    )
    percent = write_one(tmp_path / "percent.nc", 100.0 * land, lat, lon, "%")
    fraction = static_field(StaticSource("land_fraction", "file", str(percent), "h"), lat, lon)
    np.testing.assert_allclose(fraction, land, atol=1e-12)
    kelvin = write_one(tmp_path / "kelvin.nc", height, lat, lon, "K")
    with pytest.raises(StaticSourceError, match=r"'h' of .*kelvin\.nc is in 'K'.*'m'"):
        static_field(StaticSource("orography", "file", str(kelvin), "h"), lat, lon)
    # mislabelled units: 49 to 74 km of "m" is no height on Earth
    wrong = write_one(tmp_path / "wrong.nc", STANDARD_GRAVITY * height * 10, lat, lon, "m")
    with pytest.raises(StaticSourceError, match=r"wrong\.nc ranges from .* are its units"):
        static_field(StaticSource("orography", "file", str(wrong), "h"), lat, lon)


def test_nan_in_the_source_inside_the_grid_is_refused(tmp_path):
    lat, lon, height, _ = era5_grid()
    height[4, 6] = np.nan  # 52 °N, 7 °W
    path = write_one(tmp_path / "holes.nc", height, lat, lon, "m")
    with pytest.raises(CoverageError, match=r"1 non-finite value.*lat 52\.000, lon -7\.000"):
        static_field(StaticSource("orography", "file", str(path), "h"), lat, lon)


def test_a_constant_curvilinear_field_regrids_to_the_constant(tmp_path):
    """A sheared (curvilinear) 30 × 40 grid of 0.2° × 0.3° cells, onto 0.5° cells (bin
    means) and 0.05° cells (interpolation)."""
    i, j = np.meshgrid(np.arange(30.0), np.arange(40.0), indexing="ij")
    ds = xr.Dataset(
        {"frac": (("y", "x"), np.full(i.shape, 0.37), {"units": "1"})},
        coords={
            "lat": (("y", "x"), 48.0 + 0.2 * i + 0.03 * j),
            "lon": (("y", "x"), -12.0 + 0.3 * j - 0.05 * i),
        },
    )
    ds.to_netcdf(tmp_path / "curvilinear.nc")
    source = StaticSource("land_fraction", "file", str(tmp_path / "curvilinear.nc"), "frac")
    for step in (0.5, 0.05):
        lat, lon = np.arange(50.0, 53.0, step), np.arange(-10.0, -4.0, step)
        np.testing.assert_allclose(static_field(source, lat, lon), 0.37, rtol=0, atol=1e-12)


# ------------------------------------------------------- descriptions, hashes, cache


def test_sources_round_trip_through_a_dict_and_hash_their_file(tmp_path):
    for source in STATIC_SOURCES.values():
        d = json.loads(json.dumps(source.to_dict()))  # plain values only
        assert StaticSource.from_dict(d) == source
    # the .shp of Natural Earth 1:50m land, as in data/natural_earth/PROVENANCE.md
    assert STATIC_SOURCES["land_fraction"].sha256() == (
        "140d1419f7ace66bf0ea8ceb068cab544d413170f4e8c48e0a11bde6c978b319"
    )
    assert STATIC_SOURCES["latitude"].sha256() is None

    lat, lon, height, _ = era5_grid()
    path = write_one(tmp_path / "h.nc", height, lat, lon, "m")
    source = StaticSource("orography", "file", str(path), "h")
    before, field = source.sha256(), static_field(source, lat, lon)
    stamp = os.stat(path).st_mtime_ns
    write_one(path, height + 1.0, lat, lon, "m")
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # an edit a second later
    assert source.sha256() != before
    np.testing.assert_allclose(static_field(source, lat, lon), field + 1.0)


def test_static_fields_are_computed_once_per_source_and_grid(monkeypatch):
    calls = []

    def count(source, lat, lon):
        calls.append(source.name)
        return np.zeros((lat.size, lon.size))

    monkeypatch.setattr(statics, "_compute", count)
    statics.clear_static_cache()
    first = static_field("latitude", UK_LAT, UK_LON)
    first[:] = 1.0  # the caller's copy, not the cache
    again = static_field("latitude", UK_LAT, UK_LON)
    static_field("latitude", UK_LAT[:-1], UK_LON)
    assert calls == ["latitude", "latitude"] and not again.any()
    statics.clear_static_cache()


def test_descriptions_that_cannot_work_are_refused_in_one_line(tmp_path):
    with pytest.raises(StaticSourceError, match=r"kind must be one of .*did you mean 'file'"):
        StaticSource("orography", "fil", "x.nc", "z")
    with pytest.raises(StaticSourceError, match="needs a path, a variable"):
        StaticSource("orography", "file", "x.nc")
    with pytest.raises(StaticSourceError, match=r"unknown static source key\(s\) \['varible'\]"):
        StaticSource.from_dict({"name": "o", "kind": "file", "varible": "z"})
    lat, lon, height, _ = era5_grid()
    path = write_one(tmp_path / "h.nc", height, lat, lon, "m")
    with pytest.raises(StaticSourceError, match=r"\['HSURF'\] not found in .*h\.nc; present"):
        static_field(StaticSource("orography", "file", str(path), "HSURF"), lat, lon)
    with pytest.raises(FileNotFoundError, match="static 'orography': no file"):
        static_field(StaticSource("orography", "file", str(tmp_path / "no.nc"), "z"), lat, lon)


def test_land_fraction_of_a_domain_with_no_cell_wholly_on_land_is_fractional():
    # the Faroes at 0.25°: islands smaller than every cell, so no cell lies inside land
    # (this once failed casting float areas onto bincount's int64 zeros)
    lat, lon = np.arange(61.0, 63.01, 0.25), np.arange(-8.0, -5.99, 0.25)
    land = static_field("land_fraction", lat, lon)
    assert land.shape == (lat.size, lon.size) and np.isfinite(land).all()
    assert 0.0 < land.max() < 1.0 and (land == 0.0).mean() > 0.5  # coast cells, open sea
