"""Tests of hdm.data.open.open_fields: laziness, conventions, selection, bad input."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dask.array
import netCDF4
import numpy as np
import pytest
import xarray as xr

from hdm.data.open import Region, open_fields
from hdm.data.schema import mock_fields

ROOT = Path(__file__).resolve().parents[1]
UK = Path("era5_t2m_uk_2019-03") / "era5_t2m_2019-03_uk.nc"


def atmos_file(rel: Path) -> Path:
    """The shipped file, else $HDM_DATA_DIR/atmos, else the shared data folder."""
    candidates = [ROOT / "data" / "atmos" / rel]
    if os.environ.get("HDM_DATA_DIR"):
        candidates.append(Path(os.environ["HDM_DATA_DIR"]) / "atmos" / rel)
    candidates.append(ROOT.parent / "shared" / "data" / "atmos" / rel)
    for c in candidates:
        if c.exists():
            return c
    pytest.skip(f"{rel} not found in {[str(c) for c in candidates]}")


def raw_like_era5(n_time: int = 4, seed: int = 0) -> xr.Dataset:
    """A mock in ERA5's file conventions: latitude descending, longitude in [0, 360)."""
    ds = mock_fields(["t2m"], n_time=n_time, n_lat=7, n_lon=12, lat=(-60, 60), seed=seed)
    ds = ds.isel(lat=slice(None, None, -1))
    ds = ds.assign_coords(lon=np.mod(ds.lon, 360.0)).sortby("lon")
    return ds.rename(lat="latitude", lon="longitude")


def write(ds: xr.Dataset, path: Path, **kw) -> Path:
    ds.to_netcdf(path, **kw)
    return path


def test_real_uk_t2m_opens_lazily_in_the_schema():
    path = atmos_file(UK)
    ds = open_fields(path)
    assert dict(ds.sizes) == {"time": 744, "lat": 33, "lon": 49}
    assert isinstance(ds.t2m.data, dask.array.Array)  # nothing read yet
    assert "time" in ds.dims and "valid_time" in ds.coords and "valid_time" not in ds.dims
    lat, lon = ds.lat.values, ds.lon.values
    assert np.all(np.diff(lat) > 0) and lat[0] == 50.0 and lat[-1] == 58.0
    assert lon.min() >= -180 and lon.max() < 180 and np.all(np.diff(lon) > 0)
    assert ds.t2m.attrs["units"] == "K"
    # the values are the file's, with the rows reversed
    with netCDF4.Dataset(path) as nc:
        raw = nc["t2m"][5].filled(np.nan)
    step = ds.t2m.isel(time=5).values
    assert np.isfinite(step).all()
    np.testing.assert_array_equal(step, raw[::-1, :])


def test_real_rhine_files_merge_with_level_and_region_selection():
    folder = atmos_file(Path("era5_rhine_2020-01-01") / "ERA5_2020-01-01_pl_q.nc").parent
    files = [folder / "ERA5_2020-01-01_pl_q.nc", folder / "ERA5_2020-01-01_d2m.nc"]
    ds = open_fields(files, level=[500, 850], region=Region(lat=(46, 50), lon=(2, 6)))
    assert set(ds.data_vars) == {"q", "d2m"}
    assert dict(ds.sizes) == {"time": 24, "level": 2, "lat": 17, "lon": 17}
    assert list(ds.level.values) == [500, 850]
    assert float(ds.lat[0]) == 46.0 and float(ds.lon[-1]) == 6.0
    assert np.isfinite(ds.q.isel(time=0).values).all()


def test_conventions_normalised_and_values_reordered(tmp_path):
    raw = raw_like_era5()
    ds = open_fields(write(raw, tmp_path / "a.nc"))
    assert list(ds.dims) == ["time", "lat", "lon"]
    assert np.all(np.diff(ds.lat.values) > 0)
    assert ds.lon.values[0] == -180.0 and np.all(np.diff(ds.lon.values) > 0)
    assert "lat reversed" in ds.attrs["hdm_conventions"]
    expected = mock_fields(["t2m"], n_time=4, n_lat=7, n_lon=12, lat=(-60, 60))
    np.testing.assert_array_equal(ds.t2m.values, expected.t2m.values)
    np.testing.assert_allclose(ds.lon.values, expected.lon.values)


def test_chunks_and_selection(tmp_path):
    mock = mock_fields(["t2m", "q"], n_time=8, levels=[300, 500, 850], level_variables=["q"])
    path = write(mock, tmp_path / "m.nc")
    ds = open_fields(path, "q", chunks={"time": 2}, time=slice("2020-01-01T06", "2020-01-02"))
    assert ds.q.data.chunks[0] == (2, 2, 2, 1) and list(ds.data_vars) == ["q"]
    assert ds.sizes["time"] == 7  # 06, 12, 18 UTC on the 1st and the whole 2nd
    one = open_fields(path, ["q"], level=500, region=(-20, 40, -30, 100), time="2020-01-02")
    assert "level" not in one.q.dims and one.sizes["time"] == 4
    want = mock.q.sel(level=500, lat=slice(-20, 40), lon=slice(-30, 100), time="2020-01-02")
    np.testing.assert_array_equal(one.q.values, want.values)


def test_glob_and_list_of_files_combine_by_time(tmp_path):
    mock = mock_fields(["t2m"], n_time=6)
    write(mock.isel(time=slice(3, 6)), tmp_path / "p2.nc")
    write(mock.isel(time=slice(0, 3)), tmp_path / "p1.nc")
    by_glob = open_fields(str(tmp_path / "p*.nc"))
    by_list = open_fields([tmp_path / "p2.nc", tmp_path / "p1.nc"])
    for ds in (by_glob, by_list):
        assert ds.sizes["time"] == 6 and isinstance(ds.t2m.data, dask.array.Array)
        np.testing.assert_array_equal(ds.t2m.values, mock.t2m.values)


def test_zarr_store_opens_the_same(tmp_path):
    raw = raw_like_era5()
    raw.to_zarr(tmp_path / "a.zarr", consolidated=False)
    nc = open_fields(write(raw, tmp_path / "a.nc"))
    zr = open_fields(tmp_path / "a.zarr")
    xr.testing.assert_equal(nc.t2m, zr.t2m)


# ----------------------------------------------------------------- bad input


def test_missing_file_and_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file or zarr store: .*nope.nc"):
        open_fields(tmp_path / "nope.nc")
    with pytest.raises(FileNotFoundError, match=r"no file matches the pattern .*zz_"):
        open_fields(str(tmp_path / "zz_*.nc"))


def test_not_netcdf_truncated_and_not_zarr(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_text("hello, world")
    with pytest.raises(ValueError, match=r"junk.nc is not a netCDF, zarr or GRIB file"):
        open_fields(junk)
    good = write(mock_fields(n_time=40), tmp_path / "good.nc")
    cut4 = tmp_path / "cut4.nc"
    cut4.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cannot read .*cut4.nc as netcdf4: .*truncated"):
        open_fields(cut4)
    classic = write(mock_fields(n_time=40), tmp_path / "c3.nc", format="NETCDF3_64BIT")
    cut3 = tmp_path / "cut3.nc"
    cut3.write_bytes(classic.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"cut3.nc is truncated or corrupt"):
        open_fields(cut3)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"folder is a directory but not a zarr store"):
        open_fields(tmp_path / "folder")


def test_grib_without_cfgrib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cfgrib", None)  # `import cfgrib` now fails
    fake = tmp_path / "x.grib"
    fake.write_bytes(b"GRIB" + b"\0" * 60)
    with pytest.raises(ImportError, match=r"x.grib needs the optional extra 'grib'.*hdm\[grib\]"):
        open_fields(fake)


def test_grib_reads_the_same_values_as_the_derived_netcdf():
    pytest.importorskip("cfgrib")
    grib = atmos_file(UK.parent / "era5-2mt-2019-03-uk.grib")
    day = slice("2019-03-05", "2019-03-05T23")
    g = open_fields(grib, "t2m", time=day)
    n = open_fields(atmos_file(UK), "t2m", time=day)
    assert dict(g.sizes) == {"time": 24, "lat": 33, "lon": 49} and "valid_time" in g.coords
    np.testing.assert_array_equal(g.t2m.values, n.t2m.values)  # bit-identical (PROVENANCE)
    np.testing.assert_array_equal(g.lat.values, n.lat.values)


def test_absent_variable_lists_present(tmp_path):
    path = write(mock_fields(["t2m", "u10"]), tmp_path / "m.nc")
    with pytest.raises(KeyError, match=r"\['z'\] not found in .*m.nc; present: \['t2m', 'u10'\]"):
        open_fields(path, ["t2m", "z"])


def test_a_cmip_name_is_taken_as_the_variable_asked_for(tmp_path, caplog):
    mock = mock_fields(["t2m"], n_time=3)
    cmip = mock.rename(t2m="tas").assign(uas=mock.t2m * 0 + 1.0)
    path = write(cmip, tmp_path / "tas_day_model.nc")
    with caplog.at_level("INFO", logger="hdm"):
        ds = open_fields(path, ["t2m"], units={"t2m": "degC"})
    assert list(ds.data_vars) == ["t2m"]  # the alias renamed, the other variable left out
    np.testing.assert_allclose(ds.t2m.values, mock.t2m.values - 273.15, atol=3e-5)
    assert "tas taken as t2m" in caplog.text and "tas taken as t2m" in ds.attrs["hdm_conventions"]
    # the file's own name comes first; neither name present is refused as before
    both = write(cmip.assign(t2m=mock.t2m + 1.0), tmp_path / "both.nc")
    np.testing.assert_allclose(open_fields(both, "t2m").t2m.values, mock.t2m.values + 1.0)
    with pytest.raises(
        KeyError, match=r"\['u'\] not found in .*tas_day_model.nc; present: \['tas', 'uas'\]"
    ):
        open_fields(path, ["t2m", "u"])


def test_training_data_of_a_cmip_file_reads_tas_as_t2m(tmp_path):
    from hdm.pipelines.config import train_config_from_dict
    from hdm.pipelines.train import gridded_training_data

    mock = mock_fields(["t2m"], n_time=4, n_lat=8, n_lon=8, lat=(50, 57), lon=(-7, 0))
    path = write(mock.rename(t2m="tas"), tmp_path / "tas_cmip.nc")
    data = {"dataset": "cmip", "path": str(path), "variables": ["t2m"]}
    data |= {"train_start": "2020-01-01T00", "train_end": "2020-01-01T18"}
    cfg = train_config_from_dict({"name": "cmip", "data": data})
    training = gridded_training_data(cfg)
    assert training.metadata["variables"] == ["t2m"] and training.tensor.shape == (4, 1, 8, 8)
    back = training.normaliser.denormalise(training.tensor.double().numpy())[:, 0]
    np.testing.assert_allclose(back, mock.t2m.values, atol=1e-3)


def test_non_monotonic_and_duplicated_coordinates(tmp_path):
    mock = mock_fields(n_time=4, n_lat=5)
    lat = mock.lat.values.copy()
    lat[[2, 3]] = lat[[3, 2]]
    bad_lat = write(mock.assign_coords(lat=lat), tmp_path / "lat.nc")
    with pytest.raises(ValueError, match=r"coordinate 'lat' in .*lat.nc is not monotonic.*index 3"):
        open_fields(bad_lat)
    t = mock.time.values.copy()
    t[2] = t[1]
    dup = write(mock.assign_coords(time=t), tmp_path / "dup.nc")
    with pytest.raises(ValueError, match=r"coordinate 'time' .* duplicated value .* at index 2"):
        open_fields(dup)
    # overlapping files: the combined time axis repeats a step
    write(mock.isel(time=slice(0, 3)), tmp_path / "o1.nc")
    write(mock.isel(time=slice(2, 4)), tmp_path / "o2.nc")
    with pytest.raises(ValueError, match=r"'time' in the files combined .*o1.nc, .*o2.nc"):
        open_fields(str(tmp_path / "o*.nc"))


def test_longitudes_cut_across_greenwich_from_a_0_360_file_open_in_order(tmp_path):
    """A region cut from a [0, 360) file across Greenwich (350 … 359, 0 … 2: monotonic
    only on the circle), east- or westward, opens as -10 … 2 with each column's values
    kept; a longitude out of order on the circle too is still an error."""
    uk = open_fields(atmos_file(UK)).isel(time=[0]).load()
    rolled = uk.assign_coords(lon=np.mod(uk.lon.values, 360.0)).rename(lon="longitude")
    assert np.any(np.diff(rolled.longitude.values) < 0)  # 359.75, then 0
    for k, ds in enumerate([rolled, rolled.isel(longitude=slice(None, None, -1))]):
        got = open_fields(write(ds, tmp_path / f"rolled{k}.nc")).load()
        np.testing.assert_array_equal(got.lon.values, uk.lon.values)
        np.testing.assert_array_equal(got.t2m.values, uk.t2m.values)
    lon = rolled.longitude.values.copy()
    lon[[3, 4]] = lon[[4, 3]]
    bad = write(rolled.assign_coords(longitude=lon), tmp_path / "swapped.nc")
    with pytest.raises(ValueError, match=r"'lon' in .*swapped.nc is not monotonic.*index 4"):
        open_fields(bad)


def test_model_calendars_open_as_datetimes_by_label(tmp_path):
    """A noleap time axis (GCM output) opens as datetime64 with the same labels; a 360_day
    29 February 2019, which the standard calendar lacks, is an error naming it."""
    mock = mock_fields(n_time=2)
    for calendar, days, ok in (("noleap", [87.25, 87.75], True), ("360_day", [58.0, 59.0], False)):
        ds = mock.assign_coords(time=("time", days, {"units": "days since 2019-01-01",
                                                     "calendar": calendar}))  # fmt: skip
        path = tmp_path / f"{calendar}.nc"
        ds.to_netcdf(path)
        if ok:
            got = open_fields(path)
            np.testing.assert_array_equal(
                got.time.values, np.array(["2019-03-29T06", "2019-03-29T18"], "datetime64[ns]")
            )
            assert "noleap calendar by label" in got.attrs["hdm_conventions"]
        else:
            with pytest.raises(
                ValueError, match=r"360_day.nc: time 2019-02-29 00:00 of the 360_day"
            ):
                open_fields(path)


def test_an_era5_era5t_file_opens_with_its_expver_merged(tmp_path):
    """A CDS download mixing final ERA5 (expver 1) and preliminary ERA5T (5) holds each
    time's values under one of them, NaN under the other: it opens as one field."""
    mock = mock_fields(n_time=4)
    early = mock.time < mock.time[2]
    mixed = xr.concat([mock.where(early), mock.where(~early)], dim="expver")
    path = tmp_path / "era5_era5t.nc"
    mixed.assign_coords(expver=["0001", "0005"]).to_netcdf(path)
    got = open_fields(path).load()
    assert "expver" not in got.dims
    xr.testing.assert_allclose(got["t2m"], mock["t2m"].transpose(*got["t2m"].dims))
    assert "merged expver 0001/0005" in got.attrs["hdm_conventions"]


@pytest.mark.parametrize("init_dim", [False, True])
def test_a_forecast_file_is_indexed_by_its_valid_times(tmp_path, init_dim):
    """cfgrib's layout of a forecast: ``step`` lead times, ``time`` the initialisation
    (scalar, or a dimension of one), ``valid_time(step)``: the steps open as the fields
    at their valid times, the initialisation kept as forecast_reference_time."""
    import pandas as pd

    mock = mock_fields(n_time=3)
    init = np.datetime64("2019-03-25T00", "ns")
    steps = pd.to_timedelta([0, 6, 12], unit="h").values
    fc = mock.rename(time="step").assign_coords(step=steps, time=init)
    fc = fc.assign_coords(valid_time=("step", init + steps))
    if init_dim:
        fc = fc.expand_dims(time=[init]).assign_coords(
            valid_time=(("time", "step"), (init + steps)[None])
        )
    fc.to_netcdf(tmp_path / "fc.nc")
    got = open_fields(tmp_path / "fc.nc").load()
    np.testing.assert_array_equal(got.time.values, init + steps)
    np.testing.assert_allclose(got["t2m"].values, mock["t2m"].transpose(*got["t2m"].dims).values)
    assert got["forecast_reference_time"].values == init


def test_latitude_out_of_range(tmp_path):
    mock = mock_fields(n_lat=3, lat=(80, 100))
    path = write(mock, tmp_path / "pole.nc")
    with pytest.raises(
        ValueError, match=r"latitude in .*pole.nc outside \[-90, 90\]: 100 at index 2"
    ):
        open_fields(path)


def test_mixed_units_name_both_files(tmp_path):
    mock = mock_fields(n_time=4)
    kelvin = write(mock.isel(time=slice(0, 2)), tmp_path / "a_kelvin.nc")
    celsius = mock.isel(time=slice(2, 4))
    celsius = celsius.assign(t2m=(celsius.t2m - 273.15).assign_attrs(units="°C"))
    write(celsius, tmp_path / "b_celsius.nc")
    with pytest.raises(
        ValueError, match=r"'t2m' has mixed units: 'K' in .*a_kelvin.nc but '°C' in .*b_celsius.nc"
    ):
        open_fields([kelvin, tmp_path / "b_celsius.nc"])
    # the same unit spelled differently is not a conflict
    write(celsius.assign(t2m=celsius.t2m.assign_attrs(units="kelvin")), tmp_path / "c.nc")
    assert open_fields([kelvin, tmp_path / "c.nc"]).sizes["time"] == 4


def test_levels_in_pa_descending_become_hpa_ascending(tmp_path):
    mock = mock_fields(["q"], n_time=2, levels=[300, 500, 850])
    raw = mock.isel(level=slice(None, None, -1)).rename(level="plev")
    raw = raw.assign_coords(plev=("plev", raw.plev.values * 100.0, {"units": "Pa"}))
    before = dict(raw.attrs)
    ds = open_fields(write(raw, tmp_path / "pl.nc"))
    assert list(ds.level.values) == [300.0, 500.0, 850.0] and ds.level.attrs["units"] == "hPa"
    np.testing.assert_array_equal(ds.q.values, mock.q.values)
    assert raw.attrs == before


def test_units_option_converts_files_in_kelvin_and_celsius_to_one(tmp_path):
    mock = mock_fields(n_time=4)
    kelvin = write(mock.isel(time=slice(0, 2)), tmp_path / "a_kelvin.nc")
    celsius = mock.isel(time=slice(2, 4))
    celsius = celsius.assign(t2m=(celsius.t2m - 273.15).assign_attrs(units="°C"))
    write(celsius, tmp_path / "b_celsius.nc")
    ds = open_fields([kelvin, tmp_path / "b_celsius.nc"], units={"t2m": "K"})
    assert isinstance(ds.t2m.data, dask.array.Array)  # converted lazily
    assert ds.t2m.attrs["units"] == "K" and ds.t2m.dtype == np.float32
    np.testing.assert_allclose(ds.t2m.values, mock.t2m.values, atol=3e-5)
    assert "t2m °C->K" in ds.attrs["hdm_conventions"]
    # and the other way round, one file at a time
    c = open_fields(kelvin, "t2m", units={"t2m": "degC"})
    np.testing.assert_allclose(c.t2m.values, mock.t2m.values[:2] - 273.15, atol=3e-5)
    with pytest.raises(KeyError, match=r"units for \['q'\] not found in .*a_kelvin.nc"):
        open_fields(kelvin, units={"q": "kg kg-1"})
    with pytest.raises(ValueError, match=r"'t2m' in .*a_kelvin.nc is in 'K' .* to 'm s-1'"):
        open_fields(kelvin, units={"t2m": "m s-1"})
    bare = mock.copy()
    bare.t2m.attrs.pop("units")
    with pytest.raises(ValueError, match=r"'t2m' in .*bare\.nc has no units attribute"):
        open_fields(write(bare, tmp_path / "bare.nc"), units={"t2m": "K"})


def test_levels_in_pa_without_units_are_refused_with_the_hint(tmp_path):
    mock = mock_fields(["q"], n_time=1, levels=[500, 850])
    raw = mock.assign_coords(level=("level", mock.level.values * 100.0))  # no units
    path = write(raw, tmp_path / "pa.nc")
    with pytest.raises(
        KeyError,
        match=r"levels look like Pa \(50000 = 500 hPa\): set the level coordinate's units "
        r"attribute to 'Pa'",
    ) as err:
        open_fields(path, level=[500, 850])
    assert "level(s) ['500', '850'] hPa not in" in str(err.value)
    # levels in hPa that are simply not the file's get no hint
    with pytest.raises(KeyError) as err:
        open_fields(write(mock, tmp_path / "hpa.nc"), level=[300])
    assert "look like Pa" not in str(err.value)


def test_levels_in_any_pressure_unit_become_hpa(tmp_path):
    mock = mock_fields(["q"], n_time=1, levels=[300, 500, 850])
    raw = mock.assign_coords(level=("level", mock.level.values / 10.0, {"units": "kPa"}))
    ds = open_fields(write(raw, tmp_path / "kpa.nc"))
    np.testing.assert_allclose(ds.level.values, [300.0, 500.0, 850.0])
    assert ds.level.attrs["units"] == "hPa" and "level kPa->hPa" in ds.attrs["hdm_conventions"]


GLOBAL = ROOT / "data/atmos/era5_global_1deg_2026-03/era5_global_1deg_2026-03.zarr"


def test_the_global_era5_sample_opens_with_time_decoded_and_the_project_conventions():
    """Integer hours since 1940 in a root attribute, latitude 90 → -90, longitude 0..359:
    opened as datetimes, ascending latitude, [-180, 180) longitude, the same values."""
    ds = open_fields(GLOBAL)
    assert dict(ds.sizes) == {"time": 24, "lat": 181, "lon": 360}
    times = ds.time.values
    assert times.dtype == np.dtype("datetime64[ns]") and (np.diff(times) > np.timedelta64(0)).all()
    assert str(times[0])[:13] == "2026-03-25T00" and str(times[-1])[:13] == "2026-03-31T23"
    assert ds.lat.values[0] == -90 and ds.lat.values[-1] == 90
    assert ds.lon.values[0] == -180 and ds.lon.values[-1] == 179
    raw = xr.open_zarr(GLOBAL, consolidated=False)
    hours = int(raw.time_index.values[3])
    assert times[3] == np.datetime64("1940-01-01") + np.timedelta64(hours, "h")
    # the point (50 °N, 10 °W) is raw longitude 350: the same value after the wrap
    expected = raw.t2m.isel(time_index=3).sel(latitude=50, longitude=350).values
    assert ds.t2m.isel(time=3).sel(lat=50, lon=-10).values == expected
    assert 200 < float(ds.t2m.isel(time=0).mean()) < 320 and ds.t2m.attrs["units"] == "K"


def test_a_numeric_time_dimension_without_units_is_named(tmp_path):
    ds = mock_fields(n_time=3).rename(time="time_index")
    ds = ds.assign_coords(time_index=np.arange(3))
    ds.to_netcdf(tmp_path / "f.nc")
    with pytest.raises(ValueError, match=r"f.nc: the time dimension 'time_index' holds numbers"):
        open_fields(tmp_path / "f.nc")
    ds.attrs["time_units"] = "hours since 2000-01-01"
    ds.to_netcdf(tmp_path / "g.nc")
    assert str(open_fields(tmp_path / "g.nc").time.values[2])[:13] == "2000-01-01T02"


def test_an_unseen_period_is_refused_where_it_overlaps_training_or_holds_nan(tmp_path):
    from hdm.domains.atmosphere import gridded_spec, open_unseen_period

    ds = raw_like_era5(n_time=4)
    path = write(ds, tmp_path / "fields.nc")
    times = open_fields(path)["time"].values
    first, last = (str(t)[:19] for t in (times[0], times[-1]))
    spec = gridded_spec("mine", str(path), ["t2m"], train=(first, first))
    unseen = open_unseen_period(spec, (str(times[1])[:19], last), "mine")
    assert unseen.sizes["time"] == 3
    with pytest.raises(ValueError, match=r"overlaps the training period .* \(1 time steps\)"):
        open_unseen_period(spec, (first, last), "mine")
    ds["t2m"][2, 0, 0] = np.nan
    spec = gridded_spec("mine", str(write(ds, tmp_path / "nan.nc")), ["t2m"], train=(first, first))
    with pytest.raises(ValueError, match=r"t2m of the period .* holds 1 NaN"):
        open_unseen_period(spec, (str(times[1])[:19], last), "mine")


def test_coordinates_named_in_capitals_are_the_schemas(tmp_path):
    # TIME/LAT/LON dimensions (some tools write capitals), beside a valid_time coordinate
    # that must not be taken as the time dimension instead
    ds = mock_fields(n_time=3, n_lat=5, n_lon=6)
    caps = ds.rename(time="TIME", lat="LAT", lon="LON")
    caps = caps.assign_coords(valid_time=("TIME", caps["TIME"].values))
    caps.to_netcdf(tmp_path / "caps.nc")
    opened = open_fields(tmp_path / "caps.nc").load()
    assert {"time", "lat", "lon"} <= set(opened.dims) and "TIME" not in opened.dims
    name = next(iter(ds.data_vars))
    np.testing.assert_array_equal(opened[name].values, ds[name].transpose(*opened[name].dims))


def test_a_region_across_the_antimeridian_is_refused_by_name(tmp_path):
    # 170..182 in [0, 360) would wrap to two pieces 350° apart: refused in one line,
    # where the same grid within 160..172 and a whole globe in [0, 360) open
    ds = mock_fields(n_time=1, n_lat=4, n_lon=9, lat=(10.0, 20.0), lon=(170.0, 182.0))
    ds.to_netcdf(tmp_path / "dateline.nc")
    with pytest.raises(ValueError, match=r"run 170\.\.182 across the antimeridian"):
        open_fields(tmp_path / "dateline.nc")
    ds.assign_coords(lon=ds["lon"] - 10.0).to_netcdf(tmp_path / "west.nc")
    assert open_fields(tmp_path / "west.nc").sizes["lon"] == 9
    globe = mock_fields(n_time=1, n_lat=4, n_lon=360, lon=(0.0, 359.0))
    globe.to_netcdf(tmp_path / "globe.nc")
    opened = open_fields(tmp_path / "globe.nc")
    assert float(opened["lon"][0]) == -180.0 and opened.sizes["lon"] == 360


def test_a_file_of_a_time_series_on_another_grid_is_named(tmp_path):
    # three daily files; the second lacks the northernmost row: named with both grids, not
    # combined as a tile and refused as a non-monotonic latitude axis
    ds = mock_fields(n_time=6, n_lat=5, n_lon=6, lat=(50.0, 58.0), lon=(-8.0, 2.0))
    for k in range(3):
        part = ds.isel(time=slice(2 * k, 2 * k + 2))
        if k == 1:
            part = part.isel(lat=slice(0, 4))
        part.to_netcdf(tmp_path / f"day{k}.nc")
    with pytest.raises(ValueError, match=r"day1.nc has another lat axis \(4 values 50..56\) than "):
        open_fields(str(tmp_path / "day*.nc"))
    with pytest.raises(ValueError, match=r"the files of one time series must share one grid"):
        open_fields(str(tmp_path / "day*.nc"))


def test_most_of_the_globe_short_of_a_strip_names_the_strip_not_the_antimeridian(tmp_path):
    # a global field in [0, 360) missing 300..345: not a region across 180°
    ds = mock_fields(n_time=1, n_lat=4, n_lon=20, lat=(10.0, 20.0), lon=(0.0, 285.0))
    ds.to_netcdf(tmp_path / "short.nc")
    with pytest.raises(ValueError, match=r"not the whole globe \(lon 300\.\.360 has no values\)"):
        open_fields(tmp_path / "short.nc")
