"""hdm.domains.radiosondes: IGRA2 parsers on the shipped text, station tables, domains,
simulated observations, and every bad-input message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hdm.domains import radiosondes as rs
from hdm.domains import stations as stn

DATA = rs.atmos_data_dir()
SOUNDINGS = DATA / rs.IGRA2_SAMPLE_SOUNDINGS
STATIONS = DATA / rs.IGRA2_STATION_LIST
DERIVED = DATA / "igra2" / "USM00070026-drvd_2014-09-10_subset.txt"
RHINE_U10 = DATA / "era5_rhine_2020-01-01" / "ERA5_2020-01-01_u10.nc"

# Stations active in 2020 inside the Rhine box, as listed in data/atmos/PROVENANCE.md.
RHINE_STATIONS = [
    "BEM00006458", "FRM00007145", "GMM00010035", "GMM00010113", "GMM00010238",
    "GMM00010304", "GMM00010410", "GMM00010618", "GMM00010739", "ITM00016080",
    "NLM00006260", "SZM00006610", "UKM00003693", "UKM00003882",
]  # fmt: skip

# Lines copied from the shipped sounding sample, for small files of bad input.
HEADER = "#USM00070026 2010 06 01 00 2303    2 ncdc6301 ncdc6301  712889 -1567833"
LEVEL_1 = "21     0 100980B   12     0B 1000     0    20    51 "
LEVEL_2 = "10    12 100000    90B   -7B  936     9 -9999 -9999 "
STATION_LINE = (
    "GMM00010410  51.4041    6.9682  147.4    ESSEN (AEROLOGY)               1965 2026  62631"
)


@pytest.fixture(scope="module")
def station_list() -> xr.Dataset:
    with pytest.warns(UserWarning, match=r"skipped 2 record\(s\).*952, 2069"):
        return rs.read_igra2_station_list(STATIONS)


@pytest.fixture(scope="module")
def soundings() -> xr.Dataset:
    with pytest.warns(rs.TruncatedSoundingWarning) as record:
        ds = rs.read_igra2_soundings(SOUNDINGS)
    assert len(record) == 1
    return ds


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _level(ds: xr.Dataset, sounding: int, level: int) -> xr.Dataset:
    row = np.flatnonzero((ds.sounding.values == sounding) & (ds.level.values == level))
    assert row.size == 1
    return ds.isel(obs=int(row[0]))


# ------------------------------------------------------------------------ soundings


def test_soundings_every_level_and_truncation_warning():
    with pytest.warns(rs.TruncatedSoundingWarning) as record:
        ds = rs.read_igra2_soundings(SOUNDINGS)
    message = str(record[0].message)
    assert "USM00070026" in message and "2010-06-02 00:00" in message
    assert "147" in message and "found 0" in message and "line 318" in message
    # 318 lines = 3 headers + 158 + 157 level lines; the third header has none.
    assert ds.sizes == {"obs": 158 + 157}
    assert ds.attrs["n_soundings"] == 2
    assert np.bincount(ds.sounding.values).tolist() == [158, 157]
    assert (ds.id == "USM00070026").all()
    np.testing.assert_array_equal(ds.lat, 71.2889)
    np.testing.assert_array_equal(ds.lon, -156.7833)
    times = pd.DatetimeIndex(np.unique(ds.time.values))
    assert list(times) == [pd.Timestamp("2010-06-01 00:00"), pd.Timestamp("2010-06-01 12:00")]
    # RELTIME 2303 for the 00 UTC sounding is a launch the evening before.
    assert _level(ds, 0, 0).release_time.values == np.datetime64("2010-05-31T23:03")
    assert _level(ds, 1, 0).release_time.values == np.datetime64("2010-06-01T11:00")
    assert ds.temperature.attrs["units"] == "K" and ds.pressure.attrs["units"] == "Pa"
    assert ds.wind_speed.attrs["units"] == "m s-1"


def test_soundings_spot_checked_against_the_text(soundings):
    ds = soundings
    # line 2: "21     0 100980B   12     0B 1000     0    20    51 " (surface)
    a = _level(ds, 0, 0)
    assert (int(a.level_type1), int(a.level_type2)) == (2, 1)
    assert float(a.pressure) == 100980.0 and str(a.pressure_flag.values) == "B"
    assert float(a.gph) == 12.0 and str(a.gph_flag.values) == ""
    assert float(a.temperature) == pytest.approx(0.0 + 273.15)
    assert float(a.relative_humidity) == pytest.approx(100.0)
    assert float(a.dewpoint_depression) == pytest.approx(0.0)
    assert (float(a.wind_direction), float(a.wind_speed)) == pytest.approx((20.0, 5.1))
    # line 14: "10  1936  50000  5420B -272B  614    51   202   159 " (500 hPa)
    b = _level(ds, 0, 12)
    assert float(b.pressure) == 50000.0 and float(b.gph) == 5420.0
    assert float(b.temperature) == pytest.approx(-27.2 + 273.15)
    assert float(b.relative_humidity) == pytest.approx(61.4)
    assert float(b.dewpoint_depression) == pytest.approx(5.1)
    assert (float(b.wind_direction), float(b.wind_speed)) == pytest.approx((202.0, 15.9))
    assert float(b.elapsed_time) == 19 * 60 + 36
    # line 184: "12  2900  30000  8902B -488B  121   164   197   283 " (tropopause)
    c = _level(ds, 1, 184 - 161)
    assert (int(c.level_type1), int(c.level_type2)) == (1, 2)
    assert float(c.pressure) == 30000.0 and float(c.gph) == 8902.0
    assert float(c.temperature) == pytest.approx(-48.8 + 273.15)
    assert (float(c.wind_direction), float(c.wind_speed)) == pytest.approx((197.0, 28.3))
    assert float(c.elapsed_time) == 29 * 60
    # line 3 has -9999 winds; the last level line (317) has -9999 pressure and temperature.
    assert np.isnan(_level(ds, 0, 1).wind_speed) and np.isnan(_level(ds, 0, 1).wind_direction)
    last = _level(ds, 1, 156)
    assert np.isnan(last.pressure) and np.isnan(last.temperature)
    assert float(last.gph) == 33036.0 and float(last.wind_speed) == pytest.approx(10.3)


def test_soundings_keep_truncated(tmp_path):
    header = HEADER.replace("    2 ncdc", "    3 ncdc")
    path = _write(tmp_path, "cut.txt", [header, LEVEL_1, LEVEL_2])
    with pytest.warns(rs.TruncatedSoundingWarning, match="NUMLEV says 3 levels, found 2"):
        kept = rs.read_igra2_soundings(path, keep_truncated=True)
    assert kept.sizes["obs"] == 2
    with pytest.warns(rs.TruncatedSoundingWarning, match="dropped"):
        assert rs.read_igra2_soundings(path).sizes["obs"] == 0


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([HEADER, LEVEL_1, LEVEL_2[:25] + "X" + LEVEL_2[26:]], r"line 3: .*TEMP"),
        ([HEADER, LEVEL_1[:45], LEVEL_2], r"line 2: .*51 characters"),
        ([HEADER, "4" + LEVEL_1[1:], LEVEL_2], r"line 2: .*level type"),
        ([HEADER, LEVEL_1[:15] + "Z" + LEVEL_1[16:], LEVEL_2], r"line 2: .*PFLAG"),
        ([HEADER.replace(" 06 01", " 13 01"), LEVEL_1, LEVEL_2], r"line 1: .*invalid date"),
        ([HEADER, LEVEL_1, LEVEL_2, LEVEL_2], r"line 4: .*beyond NUMLEV = 2"),
        ([LEVEL_1, HEADER], r"line 1: .*before the first header"),
    ],
)
def test_soundings_malformed_line_names_file_and_line(tmp_path, lines, match):
    path = _write(tmp_path, "bad-data.txt", lines)
    with pytest.raises(ValueError, match=match) as err:
        rs.read_igra2_soundings(path)
    assert "bad-data.txt" in str(err.value)


def test_soundings_rejects_derived_file():
    with pytest.raises(ValueError, match="looks like an IGRA2 derived-parameter file") as err:
        rs.read_igra2_soundings(DERIVED)
    assert "line 1" in str(err.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        rs.read_igra2_soundings(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        rs.read_igra2_station_list(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        stn.read_station_table(tmp_path / "nope.csv")


# ----------------------------------------------------------------- station list, domain


def test_station_list(station_list):
    st = station_list
    # 2,923 lines; two (952, 2069) hold only years and NOBS and are skipped.
    assert st.sizes == {"station": 2921}
    assert len(set(st.id.values.tolist())) == 2921
    essen = st.isel(station=int(np.flatnonzero(st.id.values == "GMM00010410")[0]))
    assert (float(essen.lat), float(essen.lon), float(essen.elevation)) == (51.4041, 6.9682, 147.4)
    assert str(essen.name.values) == "ESSEN (AEROLOGY)"
    assert (int(essen.first_year), int(essen.last_year), int(essen.n_obs)) == (1965, 2026, 62631)
    # 100 mobile stations (LAT -98.8888) have NaN positions; 4 stations have ELEV -999.9.
    assert int(st.lat.isnull().sum()) == 100 and int(st.lon.isnull().sum()) == 100
    assert int(st.elevation.isnull().sum()) == 104
    assert np.nanmax(np.abs(st.lat)) <= 90


def test_rhine_stations_active_in_2020(station_list):
    with xr.open_dataset(RHINE_U10) as ds:
        lat = (float(ds.latitude.min()), float(ds.latitude.max()))
        lon = (float(ds.longitude.min()), float(ds.longitude.max()))
    assert (lat, lon) == ((45.0, 55.0), (0.0, 10.0))
    inside = stn.stations_in_domain(station_list, lat, lon, active_in=2020)
    assert sorted(inside.id.values.tolist()) == RHINE_STATIONS
    assert ((inside.first_year <= 2020) & (inside.last_year >= 2020)).all()
    assert stn.stations_in_domain(station_list, lat, lon).sizes["station"] > 14
    stn.check_stations_in_domain(inside, lat, lon)


def test_stations_in_domain_wraps_longitude():
    st = xr.Dataset(coords={"id": ("station", ["a", "b", "c", "d"]),
                            "lat": ("station", [0.0, 1.0, 2.0, np.nan]),
                            "lon": ("station", [175.0, -175.0, 0.0, 175.0])})  # fmt: skip
    assert stn.stations_in_domain(st, (-5, 5), (170, 190)).id.values.tolist() == ["a", "b"]
    assert stn.stations_in_domain(st, (-5, 5), (-10, 10)).id.values.tolist() == ["c"]


def test_station_list_malformed_line(tmp_path):
    bad = STATION_LINE[:13] + "51.4O41" + STATION_LINE[20:]  # letter O in LAT
    path = _write(tmp_path, "stations.txt", [STATION_LINE, STATION_LINE, bad])
    with pytest.raises(ValueError, match=r"stations.txt, line 3: .*LAT .*51.4O41"):
        rs.read_igra2_station_list(path)
    path = _write(tmp_path, "short.txt", [STATION_LINE, STATION_LINE[:80]])
    with pytest.raises(ValueError, match=r"short.txt, line 2: .*88 characters"):
        rs.read_igra2_station_list(path)


def test_check_stations_in_domain_names_each_station():
    obs = xr.Dataset(coords={"id": ("obs", ["IN", "NORTH", "NORTH", "LOST"]),
                             "lat": ("obs", [50.0, 60.5, 60.5, np.nan]),
                             "lon": ("obs", [5.0, 5.0, 5.0, 5.0])})  # fmt: skip
    with pytest.raises(ValueError) as err:
        stn.check_stations_in_domain(obs, (45, 55), (0, 10))
    message = str(err.value)
    assert "1 station(s) outside the domain" in message and "'NORTH' (lat 60.5" in message
    assert "NaN coordinates: 'LOST'" in message and "'IN'" not in message
