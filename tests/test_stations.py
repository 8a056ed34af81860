"""hdm.domains.stations: station tables, simulated observations, and their bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hdm.domains import radiosondes as rs
from hdm.domains import stations as stn

DATA = rs.atmos_data_dir()
STATIONS = DATA / rs.IGRA2_STATION_LIST
RHINE_U10 = DATA / "era5_rhine_2020-01-01" / "ERA5_2020-01-01_u10.nc"


@pytest.fixture(scope="module")
def station_list() -> xr.Dataset:
    return stn.shipped_station_list()


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------ station table


def test_station_table(tmp_path):
    path = _write(tmp_path, "t.csv", [
        "id,lat,lon,time,value,quality,note",
        "A,50.0,5.0,2020-01-01T06:00,271.5,1,ok",
        "B,51.5,-3.0,2020-01-01T07:00+01:00,,2,",
    ])  # fmt: skip
    ds = stn.read_station_table(path, units={"value": "K"})
    assert ds.sizes == {"obs": 2} and ds.value.attrs["units"] == "K"
    assert ds.id.values.tolist() == ["A", "B"]
    np.testing.assert_array_equal(ds.time.values, np.array(["2020-01-01T06:00"] * 2, "M8[ns]"))
    assert ds.value.values[0] == 271.5 and np.isnan(ds.value.values[1])
    assert ds.quality.dtype == float and ds.note.values.tolist() == ["ok", ""]


def test_station_tables_under_other_column_names_and_delimiters(tmp_path):
    """Station/Latitude/Longitude/DateTime and a ";" delimiter read as the canonical
    table; the rows' units and variable columns are kept by read_stations, and a file
    without a units column joined to one with it gets its attribute on every row."""
    canonical = _write(tmp_path, "c.csv", [
        "id,lat,lon,time,value,units,variable", "A,50.0,5.0,2020-01-01T06:00,45,degF,t2m",
    ])  # fmt: skip
    other = _write(tmp_path, "o.csv", [
        "Station;Latitude;Longitude;DateTime;value;units;variable",
        "A;50.0;5.0;2020-01-01T06:00;45;degF;t2m",
    ])  # fmt: skip
    a, b = stn.read_stations(str(canonical)), stn.read_stations(str(other))
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a["units"].values.tolist() == ["degF"] and a["variable"].values.tolist() == ["t2m"]
    plain = _write(tmp_path, "p.csv", ["id,lat,lon,time,value", "B,51,6,2020-01-01T06:00,280"])
    with pytest.raises(ValueError, match=r"p.csv: no 'variable' column"):
        stn.read_stations([str(canonical), str(plain)])
    in_f = _write(
        tmp_path, "f.csv", ["id,lat,lon,time,value,units", "A,50,5,2020-01-01T06,45,degF"]
    )
    both = stn.read_stations([str(in_f), str(plain)], units="K")
    assert both["units"].values.tolist() == ["degF", "K"]


def test_read_stations_converts_tables_to_the_units_of_the_first_file(tmp_path):
    from hdm.data.units import UnitsError

    path = _write(tmp_path, "c.csv", ["id,lat,lon,time,value", "A,50,5,2020-01-01T06:00,-1.5"])
    alone = stn.read_stations(path, units="degC")
    assert alone.value.attrs["units"] == "degC" and float(alone.value[0]) == -1.5
    sounding = DATA / "igra2" / "USM00070026-data_2010-06-01_subset.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped sample ends with a truncated sounding
        both = stn.read_stations([sounding, path], units="degC")
        with pytest.raises(UnitsError, match=r"c\.csv is in 'm s-1' .* to 'K'"):
            stn.read_stations([sounding, path], units="m s-1")
    # the soundings come first, in K: the table's -1.5 °C is 271.65 K
    assert both.value.attrs["units"] == "K"
    assert float(both.value[-1]) == pytest.approx(271.65)
    with pytest.raises(UnitsError, match=r"cannot read the units 'degCC'"):
        stn.read_stations(path, units="degCC")


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["id,lon,value", "A,5,1"], r"missing column\(s\) 'lat', 'time'"),
        (["id,lat,lon,time,value", "A,50,5,2020-01-01,1", "B,nan,5,2020-01-01,1"],
         r"NaN or missing coordinates for station 'B' \(line 3\)"),
        (["id,lat,lon,time,value", "C,50,,2020-01-01,1"],
         r"NaN or missing coordinates for station 'C' \(line 2\)"),
        (["id,lat,lon,time,value", "A,50,5,2020-01-01,1", "A,50,5,yesterday,1"],
         r"unparseable time .* line 3 \('yesterday'\)"),
        (["id,lat,lon,time,value", "D,95,5,2020-01-01,1"], r"out of range .*'D' \(line 2"),
        (["id,lat,lon,time,value", "A,50,5,2020-01-01,warm"], r"value is not a number on line 2"),
    ],
)  # fmt: skip
def test_station_table_bad_input(tmp_path, lines, match):
    path = _write(tmp_path, "bad.csv", lines)
    with pytest.raises(ValueError, match=match):
        stn.read_station_table(path)


@pytest.mark.parametrize(
    "header", ["ID,Lat,Lon,Time,Value,Units,Variable", "ID,LAT,LON,TIME,VALUE,UNITS,VARIABLE"]
)
def test_station_table_column_names_in_any_case(tmp_path, header):
    path = _write(tmp_path, "t.csv", [header, "A,50.5,5.25,2020-01-01T06:00,271.5,K,t2m"])
    ds = stn.read_stations(path)
    assert ds.id.values.tolist() == ["A"] and ds.lat.values.tolist() == [50.5]
    assert ds.lon.values.tolist() == [5.25] and ds.value.values.tolist() == [271.5]
    assert ds["units"].values.tolist() == ["K"] and ds["variable"].values.tolist() == ["t2m"]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("id,ID,lat,lon,time,value", r"d\.csv, line 2: columns 'id' and 'ID' both name .*'id'"),
        ("Station,stn,lat,lon,time,value", r"columns 'Station' and 'stn' both name .*'id'"),
        ("id,lat,lon,time,value,Value", r"columns 'value' and 'Value' both name .*'value'"),
    ],
)  # fmt: skip
def test_station_table_two_columns_for_one_name(tmp_path, header, match):
    path = _write(tmp_path, "d.csv", ["# one comment", header, "A,B,50,5,2020-01-01,1"])
    with pytest.raises(ValueError, match=match):
        stn.read_station_table(path)


def test_station_table_encodings(tmp_path):
    """A UTF-8 byte-order mark is dropped; Windows-1252 and Latin-1 text is read."""
    rows = ["id,lat,lon,time,value,name", "A,50.2,-5.3,2020-01-01T06,280,Camborne – Cornwall",
            "B,59.1,10.4,2020-01-01T06,270,Ås"]  # fmt: skip
    text = "\n".join(rows) + "\n"
    files = {
        "bom.csv": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "cp1252.csv": text.encode("cp1252"),
        "utf16.csv": text.encode("utf-16"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        ds = stn.read_station_table(tmp_path / name)
        assert ds.id.values.tolist() == ["A", "B"], name
        assert ds.name.values.tolist() == ["Camborne – Cornwall", "Ås"], name
    # 0x81 is not Windows-1252: Latin-1 reads it
    (tmp_path / "latin1.csv").write_bytes(
        text.replace("–", "-").encode("latin-1") + b"C\x81,0,0,2020-01-01,1,x\n"
    )
    ds = stn.read_station_table(tmp_path / "latin1.csv")
    assert ds.id.values.tolist() == ["A", "B", "C\x81"] and ds.name.values[1] == "Ås"


def test_station_table_skips_leading_comments(tmp_path):
    """Blank and "#" lines before the header are skipped, a "#" in a cell is data, and
    the lines named in errors are the file's."""
    lines = ["# exported by a logger", "", "  # station: Camborne", "id,lat,lon,time,value",
             "STN#1,50.2,-5.3,2020-01-01T06,280", "",
             "STN#2,50.3,-5.2,2020-01-01T06,281"]  # fmt: skip
    ds = stn.read_station_table(_write(tmp_path, "c.csv", lines))
    assert ds.id.values.tolist() == ["STN#1", "STN#2"]
    np.testing.assert_array_equal(ds.value.values, [280.0, 281.0])
    with pytest.raises(ValueError, match=r"lat is not a number on line 7 \('north'\)"):
        stn.read_station_table(_write(tmp_path, "b.csv", [*lines[:6], "X,north,1,2020-01-01,1"]))
    with pytest.raises(ValueError, match=r"b\.csv, line 7: 6 cells where the header has 5"):
        stn.read_station_table(_write(tmp_path, "b.csv", [*lines[:6], "X,1,1,2020-01-01,1,9"]))


def test_decimal_commas_in_semicolon_tables(tmp_path):
    path = _write(tmp_path, "eu.csv", [
        "Station;Latitude;Longitude;DateTime;value;quality",
        "Camborne;50,2183;-5,3267;2020-01-01T06:00;281,25;1",
        "Valentia;51,9394;-10,2219;2020-01-01T06:00;-1,5e0;2",
    ])  # fmt: skip
    ds = stn.read_station_table(path)
    np.testing.assert_array_equal(ds.lat.values, [50.2183, 51.9394])
    np.testing.assert_array_equal(ds.lon.values, [-5.3267, -10.2219])
    np.testing.assert_array_equal(ds.value.values, [281.25, -1.5])
    # a "," table keeps "," as the delimiter only: a quoted "50,2183" is no number
    comma = _write(tmp_path, "c.csv", ["id,lat,lon,time,value", 'A,"50,2183",5,2020-01-01,1'])
    with pytest.raises(ValueError, match=r"lat is not a number on line 2 \('50,2183'\)"):
        stn.read_station_table(comma)


def test_station_files_are_told_apart_by_content(tmp_path):
    """Tab-separated tables under any name are tables; an IGRA2 sounding is one even
    as .csv; a .txt that is neither gets the sounding reader's error."""
    rows = ["id\tlat\tlon\ttime\tvalue", "A\t50.5\t5.25\t2020-01-01T06:00\t271.5"]
    for name in ("obs.txt", "obs.tsv", "obs"):
        ds = stn.read_stations(_write(tmp_path, name, ["# tab-separated", *rows]))
        assert ds.id.values.tolist() == ["A"] and ds.lat.values.tolist() == [50.5], name
        assert ds.value.values.tolist() == [271.5], name
    sounding = DATA / "igra2" / "USM00070026-data_2010-06-01_subset.txt"
    as_csv = tmp_path / "sounding.csv"
    as_csv.write_bytes(sounding.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped sample ends with a truncated sounding
        a, b = stn.read_stations(sounding), stn.read_stations(as_csv)
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert set(a.id.values) == {"USM00070026"} and a.value.attrs["units"] == "K"
    plain = _write(tmp_path, "plain.txt", ["id lat lon time value", "A 50 5 2020-01-01 1"])
    with pytest.raises(ValueError, match=r"plain\.txt, line 1: malformed IGRA2 sounding"):
        stn.read_stations(plain)


# ------------------------------------------------------------------ simulated stations


def _field(values=None) -> xr.DataArray:
    """A small (time 3, latitude 5 descending, longitude 6) field, ERA5-style names."""
    lat = np.array([54.0, 53.0, 52.0, 51.0, 50.0])
    lon = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    time = pd.date_range("2020-01-01", periods=3, freq="h").values
    if values is None:
        values = np.random.default_rng(0).normal(280.0, 5.0, (3, 5, 6))
    return xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"time": time, "latitude": lat, "longitude": lon},
        name="t2m",
        attrs={"units": "K"},
    )


def _stations(lat, lon) -> xr.Dataset:
    ids = [f"S{k}" for k in range(len(lat))]
    return xr.Dataset(coords={"id": ("station", ids), "lat": ("station", lat),
                              "lon": ("station", lon)})  # fmt: skip


def test_simulate_exact_on_grid_points():
    field = _field()
    st = _stations([54.0, 50.0, 52.0, 51.0], [0.0, 2.5, 1.0, 2.0])  # corners included
    obs = stn.simulate_observations(field, st, noise_std=0.0, seed=0)
    assert obs.sizes == {"obs": 4 * 3} and obs.value.attrs["units"] == "K"
    for k in range(4):  # station-major: station k owns rows 3k .. 3k+2
        rows = obs.isel(obs=slice(3 * k, 3 * k + 3))
        expected = field.sel(latitude=st.lat.values[k], longitude=st.lon.values[k]).values
        np.testing.assert_array_equal(rows.value.values, expected)
        np.testing.assert_array_equal(rows.time.values, field.time.values)
        assert (rows.id == f"S{k}").all()
    np.testing.assert_array_equal(obs.value, obs.truth)


def test_simulate_bilinear_exact_for_linear_fields():
    tt, la, lo = np.meshgrid(np.arange(3.0), _field().latitude, _field().longitude, indexing="ij")
    field = _field(2.0 * tt + 0.7 * la - 1.3 * lo + 5.0)
    lat = np.array([50.2, 53.77, 51.5, 54.0])
    lon = np.array([0.1, 2.49, 1.25, 0.33])
    obs = stn.simulate_observations(field, _stations(lat, lon), noise_std=0.0, seed=0)
    t = np.tile(np.arange(3.0), 4)
    expected = 2.0 * t + 0.7 * np.repeat(lat, 3) - 1.3 * np.repeat(lon, 3) + 5.0
    np.testing.assert_allclose(obs.value.values, expected, rtol=0, atol=1e-12)


def test_simulate_wraps_a_global_longitude_grid():
    lon = np.arange(0.0, 360.0, 90.0)
    values = np.broadcast_to(np.array([1.0, 2.0, 3.0, 4.0]), (1, 2, 4)).copy()
    field = xr.DataArray(values, dims=("time", "lat", "lon"),
                         coords={"time": [np.datetime64("2020-01-01", "ns")],
                                 "lat": [-10.0, 10.0], "lon": lon})  # fmt: skip
    obs = stn.simulate_observations(field, _stations([0.0, 0.0], [315.0, -45.0]), 0.0, 0)
    np.testing.assert_allclose(obs.value.values, [2.5, 2.5])  # halfway between 4 and 1


def test_simulate_rhine_stations_seeded_noise(station_list):
    stations = stn.stations_in_domain(station_list, (45, 55), (0, 10), active_in=2020)
    with xr.open_dataset(RHINE_U10) as ds:
        u10 = ds["u10"].load()
    a = stn.simulate_observations(u10, stations, noise_std=0.5, seed=7)
    b = stn.simulate_observations(u10, stations, noise_std=0.5, seed=7)
    c = stn.simulate_observations(u10, stations, noise_std=0.5, seed=8)
    assert a.sizes == {"obs": 14 * 24} and a.attrs["noise_std"] == 0.5
    np.testing.assert_array_equal(a.value, b.value)
    assert not np.array_equal(a.value, c.value)
    np.testing.assert_array_equal(a.truth, c.truth)
    assert np.isfinite(a.value).all() and a.value.attrs["units"] == "m s**-1"
    assert float(a.truth.min()) >= float(u10.min()) and float(a.truth.max()) <= float(u10.max())
    assert 0.4 < float((a.value - a.truth).std()) < 0.6
    np.testing.assert_array_equal(a.elevation.values[:24], stations.elevation.values[0])


def test_simulate_bad_input():
    field = _field()
    inside = _stations([51.0], [1.0])
    with pytest.raises(ValueError, match=r"noise_std must be finite and >= 0.*-0.1"):
        stn.simulate_observations(field, inside, noise_std=-0.1, seed=0)
    with pytest.raises(ValueError, match="noise_std"):
        stn.simulate_observations(field, inside, noise_std=float("nan"), seed=0)
    st = _stations([51.0, 49.0, np.nan], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError) as err:
        stn.simulate_observations(field, st, noise_std=1.0, seed=0)
    assert "outside the domain" in str(err.value) and "'S1' (lat 49" in str(err.value)
    assert "NaN coordinates: 'S2'" in str(err.value) and "'S0'" not in str(err.value)
    with pytest.raises(ValueError, match=r"dims \(time, lat, lon\)"):
        stn.simulate_observations(field.isel(time=0), inside, noise_std=1.0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean call warns about nothing
        stn.simulate_observations(field, inside, noise_std=1.0, seed=0)
