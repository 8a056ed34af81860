"""Radiosondes: IGRA2 station lists and soundings (station tables, simulated observations
and station lookups are in :mod:`hdm.domains.stations`).

Everything here returns an :class:`xarray.Dataset` in one of two shapes.

**Station list** (dim ``station``, one row per station): coordinates ``id`` (str),
``lat`` (degrees_north), ``lon`` (degrees_east); data variables ``elevation`` (m),
``state`` (str, U.S. stations only, else ""), ``name`` (str), ``first_year``,
``last_year`` (int, first and last year with data) and ``n_obs`` (int, number of
soundings). Positions are NaN where the file has none (mobile stations).

**Observations** (the obs schema; dim ``obs``, one row per observed value, flattened
over stations, times and levels): coordinates ``id`` (str, station id), ``lat``
(float64, degrees_north), ``lon`` (float64, degrees_east) and ``time``
(datetime64[ns], UTC, timezone-naive); then float64 data variables, each with a
``units`` attribute where known. Station tables and simulated observations hold
``value``; soundings hold one variable per measured quantity (see
:func:`read_igra2_soundings`). Dataset attrs say where the data came from
(``source``). Any dataset with ``id``, ``lat`` and ``lon`` along one dimension (a
station list or obs) can be passed where "stations" are expected.

Formats
-------
*IGRA2 station list* (``igra2-station-list.txt``, NOAA NCEI). Fixed-width ASCII, one
station per 88-character line; columns are 1-based and inclusive::

    ID       1-11   e.g. GMM00010410            STATE   39-40  U.S. state or blank
    LAT     13-20   degrees north                NAME    42-71
    LON     22-30   degrees east                 FSTYEAR 73-76  first year with data
    ELEV    32-37   metres above sea level       LSTYEAR 78-81  last year with data
                                                 NOBS    83-88  number of soundings

Missing codes, read as NaN: LAT −98.8888 and LON −998.8888 (mobile stations: ships,
aircraft), ELEV −998.8 (mobile) and −999.9 (unknown). A record with columns 1–71 all
blank (no ID, position or name) is skipped with a warning.

*IGRA2 sounding data* (``<ID>-data.txt``, "igra2-data-format.txt"). Each sounding is a
71-character header line followed by NUMLEV level lines of 51 characters (a trailing
space, as in NCEI's files, is allowed). Header::

    HEADREC  1      '#'                        RELTIME 28-31  release time HHMM UTC,
    ID       2-12   station id                                9999 / HH=99 / MM=99 missing
    YEAR    14-17                              NUMLEV  33-36  number of level lines
    MONTH   19-20                              P_SRC   38-45  source of pressure levels
    DAY     22-23                              NP_SRC  47-54  source of other levels
    HOUR    25-26   nominal hour UTC, 99 missing  LAT  56-62  degrees north × 10⁴
                                                  LON  64-71  degrees east × 10⁴

Level line::

    LVLTYP1  1     1 standard pressure level, 2 other pressure level, 3 non-pressure level
    LVLTYP2  2     1 surface, 2 tropopause, 0 other
    ETIME    4-8   elapsed time since launch, MMMSS (minutes, seconds)
    PRESS   10-15  pressure (Pa)                 PFLAG 16
    GPH     17-21  geopotential height (m)       ZFLAG 22
    TEMP    23-27  temperature (0.1 °C)          TFLAG 28
    RH      29-33  relative humidity (0.1 %)
    DPDP    35-39  dewpoint depression (0.1 °C)
    WDIR    41-45  wind direction (degrees from north, the direction the wind blows from)
    WSPD    47-51  wind speed (0.1 m s⁻¹)

Columns 3, 9, 34, 40 and 46 are blank. Missing values are −9999 (missing) and −8888
(removed by quality assurance); both are read as NaN. Quality flags (PFLAG, ZFLAG,
TFLAG): "" (blank: not checked), "A" (passed the tier-1 climatological check), "B"
(passed tiers 1 and 2). The IGRA2 *derived-parameter* files (``<ID>-drvd.txt``) have
a different, wider layout and are rejected with a clear message.

*Station table* (CSV with a header row): columns ``id``, ``lat`` (degrees_north),
``lon`` (degrees_east), ``time`` (ISO 8601; a timezone suffix is converted to UTC,
naive times are taken as UTC) and ``value``; any further column becomes a data variable
(float64 if every entry is numeric or empty, else str).

Units and conventions
---------------------
Temperatures are converted to K (T[K] = 0.1·TEMP + 273.15), dewpoint depressions to
K (a difference: 0.1·DPDP), wind speed to m s⁻¹, relative humidity to %, the elapsed
time to s. Longitudes are kept as given; domain tests compare them modulo 360, so
either convention works (a box may cross the antimeridian, e.g. lon=(170, 190)).
Domain bounds are inclusive.

Simulated observations (observing-system simulation experiments, OSSE) sample a
gridded field at station coordinates by bilinear interpolation in (lat, lon) degrees,
then add independent Gaussian noise N(0, noise_std²) from a seeded
:func:`numpy.random.default_rng`. On a grid point the interpolant is the grid value,
and it reproduces any field linear in (lat, lon) exactly.

References:
    - I. Durre, X. Yin, R. S. Vose, S. Applequist, J. Arnfield. Enhancing the data
      coverage in the Integrated Global Radiosonde Archive. J. Atmos. Oceanic Technol.
      35, 1753–1770, 2018 (IGRA v2).
    - NOAA NCEI, "Integrated Global Radiosonde Archive (IGRA) v2: data format
      description" (igra2-data-format.txt) and station list description
      (igra2-list-format.txt).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.domains.shipped import shipped_path

__all__ = [
    "IGRA2_SAMPLE_SOUNDINGS",
    "IGRA2_STATION_LIST",
    "OBS_DIM",
    "STATION_DIM",
    "TruncatedSoundingWarning",
    "atmos_data_dir",
    "listing",
    "read_igra2_soundings",
    "read_igra2_station_list",
]

OBS_DIM = "obs"
STATION_DIM = "station"
# Paths of the shipped samples, relative to :func:`atmos_data_dir`.
IGRA2_STATION_LIST = "igra2/igra2-station-list.txt"
IGRA2_SAMPLE_SOUNDINGS = "igra2/USM00070026-data_2010-06-01_subset.txt"

_ZERO_CELSIUS = 273.15
_MISSING = (-9999, -8888)


class TruncatedSoundingWarning(UserWarning):
    """A sounding has fewer level lines than its header's NUMLEV (a cut file)."""


def atmos_data_dir(data_dir: str | Path | None = None) -> Path:
    """Folder of the shipped atmospheric data: ``data_dir`` if given, else ``atmos/`` of
    the shipped data folder (:mod:`hdm.domains.shipped`; ``data/atmos/PROVENANCE.md``
    says where each file comes from)."""
    if data_dir is not None:
        return Path(data_dir)
    return shipped_path("atmos", "the atmospheric samples")


# ------------------------------------------------------------------ fixed-width parsing


class _LineError(ValueError):
    """A malformed line; the reader adds the file name and line number."""


def _field(line: str, first: int, last: int) -> str:
    """Columns ``first..last`` (1-based, inclusive) of ``line``."""
    return line[first - 1 : last]


def _int(line: str, first: int, last: int, name: str) -> int:
    text = _field(line, first, last)
    try:
        return int(text)
    except ValueError:
        raise _LineError(f"{name} (columns {first}-{last}) is {text!r}, not an integer") from None


def _float(line: str, first: int, last: int, name: str) -> float:
    text = _field(line, first, last)
    try:
        value = float(text)
    except ValueError:
        raise _LineError(f"{name} (columns {first}-{last}) is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise _LineError(f"{name} (columns {first}-{last}) is {text!r}, not a finite number")
    return value


def _blanks(line: str, columns: tuple[int, ...]) -> None:
    for c in columns:
        if line[c - 1] != " ":
            raise _LineError(f"column {c} should be blank but holds {line[c - 1]!r}")


def _read_lines(path: str | Path, what: str) -> tuple[Path, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    # latin-1 decodes any byte, so a binary file fails with a line error, not a codec error.
    with path.open(encoding="latin-1", newline="") as f:
        return path, [line.rstrip("\r\n") for line in f]


# ------------------------------------------------------------------------ station list

_STATION_LINE = 88
_STATION_BLANKS = (12, 21, 31, 38, 41, 72, 77, 82)
_MOBILE_LAT, _MOBILE_LON = -98.8888, -998.8888
_MISSING_ELEV = (-998.8, -999.9)


def _parse_station_line(line: str) -> tuple | None:
    """One station, or None for a record whose columns 1-71 are blank (no station)."""
    if len(line.rstrip()) != _STATION_LINE:
        raise _LineError(
            f"a station line has {_STATION_LINE} characters (NOBS ends in column 88), "
            f"this one has {len(line.rstrip())}"
        )
    _blanks(line, _STATION_BLANKS)
    if not line[:71].strip():
        for name, a, b in (("FSTYEAR", 73, 76), ("LSTYEAR", 78, 81), ("NOBS", 83, 88)):
            _int(line, a, b, name)
        return None
    sid = _field(line, 1, 11)
    if " " in sid:
        raise _LineError(f"ID (columns 1-11) is {sid!r}; station ids have no blanks")
    lat = _float(line, 13, 20, "LAT")
    lon = _float(line, 22, 30, "LON")
    elev = _float(line, 32, 37, "ELEV")
    if lat == _MOBILE_LAT:
        lat = math.nan
    elif not -90.0 <= lat <= 90.0:
        raise _LineError(f"LAT (columns 13-20) is {lat}, outside [-90, 90]")
    if lon == _MOBILE_LON:
        lon = math.nan
    elif not -180.0 <= lon <= 360.0:
        raise _LineError(f"LON (columns 22-30) is {lon}, outside [-180, 360]")
    if elev in _MISSING_ELEV:
        elev = math.nan
    return (
        sid,
        lat,
        lon,
        elev,
        _field(line, 39, 40).strip(),
        _field(line, 42, 71).strip(),
        _int(line, 73, 76, "FSTYEAR"),
        _int(line, 78, 81, "LSTYEAR"),
        _int(line, 83, 88, "NOBS"),
    )


def read_igra2_station_list(path: str | Path) -> xr.Dataset:
    """Read the IGRA2 station list (fixed-width text, see the module docstring).

    Args:
        path: the ``igra2-station-list.txt`` file. Blank lines are skipped, and so,
            with a warning, are records whose columns 1-71 (ID to NAME) are all blank
            (the shipped list has two: lines 952 and 2069).

    Returns:
        ``xr.Dataset`` with dim ``station`` (in file order): coordinates ``id``, ``lat``
        (degrees_north), ``lon`` (degrees_east); variables ``elevation`` (m), ``state``,
        ``name``, ``first_year``, ``last_year``, ``n_obs``. Missing positions and
        elevations are NaN. Attrs ``source`` (the file name).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed line (the message names the file and the line number),
            or a file with no stations.
    """
    path, lines = _read_lines(path, "IGRA2 station list")
    rows = []
    empty = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = _parse_station_line(line)
        except _LineError as err:
            raise ValueError(
                f"{path}, line {number}: malformed IGRA2 station line: {err}"
            ) from None
        if row is None:
            empty.append(str(number))
        else:
            rows.append(row)
    if empty:
        warnings.warn(
            f"{path.name}: skipped {len(empty)} record(s) with no ID, position or name "
            f"(only years and NOBS) on line(s) {listing(empty)}",
            UserWarning,
            stacklevel=2,
        )
    if not rows:
        raise ValueError(f"{path}: no stations in the file")
    cols = list(zip(*rows))
    dim = STATION_DIM
    ds = xr.Dataset(
        {
            "elevation": (dim, np.array(cols[3], dtype=float), {"units": "m"}),
            "state": (dim, np.array(cols[4], dtype=str)),
            "name": (dim, np.array(cols[5], dtype=str)),
            "first_year": (dim, np.array(cols[6], dtype=np.int64)),
            "last_year": (dim, np.array(cols[7], dtype=np.int64)),
            "n_obs": (dim, np.array(cols[8], dtype=np.int64), {"long_name": "number of soundings"}),
        },
        coords={
            "id": (dim, np.array(cols[0], dtype=str)),
            "lat": (dim, np.array(cols[1], dtype=float), {"units": "degrees_north"}),
            "lon": (dim, np.array(cols[2], dtype=float), {"units": "degrees_east"}),
        },
        attrs={"source": path.name, "format": "IGRA2 station list"},
    )
    return ds


# --------------------------------------------------------------------------- soundings

_HEADER_LINE = 71
_HEADER_BLANKS = (13, 18, 21, 24, 27, 32, 37, 46, 55, 63)
_LEVEL_LINE = 51
_LEVEL_BLANKS = (3, 9, 34, 40, 46)
_FLAGS = frozenset(" AB")
_DERIVED_MIN = 100  # derived-parameter lines are about 150 characters long
# name, first column, last column of the integer fields of a level line
_LEVEL_INTS = (
    ("ETIME", 4, 8),
    ("PRESS", 10, 15),
    ("GPH", 17, 21),
    ("TEMP", 23, 27),
    ("RH", 29, 33),
    ("DPDP", 35, 39),
    ("WDIR", 41, 45),
    ("WSPD", 47, 51),
)


def _derived_hint(line: str) -> None:
    if len(line.rstrip()) >= _DERIVED_MIN:
        raise _LineError(
            f"the line has {len(line.rstrip())} characters; this looks like an IGRA2 "
            "derived-parameter file (<ID>-drvd.txt), which this reader does not parse. "
            "read_igra2_soundings reads the sounding data format (<ID>-data.txt)"
        )


def _parse_header(line: str) -> dict:
    _derived_hint(line)
    if len(line.rstrip()) != _HEADER_LINE:
        raise _LineError(
            f"a header line has {_HEADER_LINE} characters, this one has {len(line.rstrip())}"
        )
    _blanks(line, _HEADER_BLANKS)
    sid = _field(line, 2, 12)
    if " " in sid:
        raise _LineError(f"ID (columns 2-12) is {sid!r}; station ids have no blanks")
    year = _int(line, 14, 17, "YEAR")
    month = _int(line, 19, 20, "MONTH")
    day = _int(line, 22, 23, "DAY")
    hour = _int(line, 25, 26, "HOUR")
    reltime = _int(line, 28, 31, "RELTIME")
    numlev = _int(line, 33, 36, "NUMLEV")
    lat = _int(line, 56, 62, "LAT") / 1e4
    lon = _int(line, 64, 71, "LON") / 1e4
    try:
        date = dt.datetime(year, month, day)
    except ValueError as err:
        raise _LineError(f"invalid date {year}-{month}-{day}: {err}") from None
    if not (0 <= hour <= 23 or hour == 99):
        raise _LineError(f"HOUR (columns 25-26) is {hour}, not 00-23 or 99 (missing)")
    if numlev < 0:
        raise _LineError(f"NUMLEV (columns 33-36) is {numlev}, negative")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 360.0):
        raise _LineError(f"position lat {lat}, lon {lon} is out of range")
    time = date + dt.timedelta(hours=hour) if hour != 99 else None
    rel_h, rel_m = divmod(reltime, 100)
    release = None
    if reltime >= 0 and rel_h <= 23 and rel_m <= 59:
        release = date + dt.timedelta(hours=rel_h, minutes=rel_m)
        # A 00 UTC sounding is often launched before midnight: put the release on the
        # day that brings it within 12 h of the nominal time.
        if time is not None and release - time > dt.timedelta(hours=12):
            release -= dt.timedelta(days=1)
        elif time is not None and time - release > dt.timedelta(hours=12):
            release += dt.timedelta(days=1)
    return {
        "id": sid,
        "time": time,
        "release_time": release,
        "numlev": numlev,
        "p_src": _field(line, 38, 45).strip(),
        "np_src": _field(line, 47, 54).strip(),
        "lat": lat,
        "lon": lon,
    }


def _parse_level(line: str) -> tuple:
    _derived_hint(line)
    if len(line.rstrip()) != _LEVEL_LINE:
        raise _LineError(
            f"a level line has {_LEVEL_LINE} characters (WSPD ends in column 51), "
            f"this one has {len(line.rstrip())}"
        )
    _blanks(line, _LEVEL_BLANKS)
    lt1, lt2 = line[0], line[1]
    if lt1 not in "123" or lt2 not in "012":
        raise _LineError(
            f"level type (columns 1-2) is {line[:2]!r}; LVLTYP1 is 1-3 and LVLTYP2 is 0-2"
        )
    flags = (line[15], line[21], line[27])
    for name, flag in zip(("PFLAG", "ZFLAG", "TFLAG"), flags):
        if flag not in _FLAGS:
            raise _LineError(f"{name} is {flag!r}; quality flags are blank, 'A' or 'B'")
    ints = tuple(_int(line, a, b, name) for name, a, b in _LEVEL_INTS)
    return (int(lt1), int(lt2), *ints, *(f.strip() for f in flags))


def _scaled(raw: list[int], scale: float, offset: float = 0.0) -> np.ndarray:
    """Integers with IGRA2 missing codes -> float64 ``raw·scale + offset`` with NaN."""
    a = np.asarray(raw, dtype=np.int64)
    out = a * scale + offset
    out[np.isin(a, _MISSING)] = np.nan
    return out


def _elapsed_seconds(raw: list[int]) -> np.ndarray:
    a = np.asarray(raw, dtype=np.int64)
    minutes, seconds = np.divmod(np.abs(a), 100)
    out = (60.0 * minutes + seconds) * np.sign(a)
    out[np.isin(a, _MISSING)] = np.nan
    return out


def _datetimes(values: list) -> np.ndarray:
    return np.array(
        [np.datetime64(v, "ns") if v is not None else np.datetime64("NaT", "ns") for v in values],
        dtype="datetime64[ns]",
    )


class _Soundings:
    """The soundings kept while a file is read, their levels flattened in file order.

    ``headers``: one dict per kept sounding (:func:`_parse_header`'s keys, plus ``line``,
    its header's line number, and ``levels``, its parsed level lines); ``levels``: the
    level tuples of :func:`_parse_level`, all soundings one after the other;
    ``sounding_of_level``: for each level, the index of its sounding in ``headers``;
    ``truncated``: a description of each sounding with fewer levels than its NUMLEV.
    """

    def __init__(self, path: Path, keep_truncated: bool):
        self.path, self.keep_truncated = path, keep_truncated
        self.headers: list[dict] = []
        self.levels: list[tuple] = []
        self.sounding_of_level: list[int] = []
        self.truncated: list[str] = []

    def close(self, block: dict | None) -> None:
        """Keep a finished sounding (``None``: nothing yet), warning if it is truncated.

        Called by :func:`_collect_soundings` only, so that ``stacklevel=4`` names the
        caller of :func:`read_igra2_soundings`.
        """
        if block is None:
            return
        found = len(block["levels"])
        if found < block["numlev"]:
            what = (
                f"sounding {block['id']} {block['time'] or 'time missing'} (header on line "
                f"{block['line']}): NUMLEV says {block['numlev']} levels, found {found}"
            )
            self.truncated.append(what)
            action = "keeping the levels found" if self.keep_truncated else "dropped"
            warnings.warn(
                f"{self.path.name}: truncated {what}; {action}",
                TruncatedSoundingWarning,
                stacklevel=4,
            )
            if not self.keep_truncated:
                return
        self.sounding_of_level.extend([len(self.headers)] * found)
        self.levels.extend(block["levels"])
        self.headers.append(block)


def _add_level(current: dict | None, line: str) -> None:
    """Parse a level line into the open sounding ``current``, which must still lack some."""
    if current is None:
        _derived_hint(line)
        raise _LineError("a level line before the first header line ('#...')")
    if len(current["levels"]) >= current["numlev"]:
        _derived_hint(line)
        raise _LineError(
            f"a level line beyond NUMLEV = {current['numlev']} of the sounding "
            f"whose header is on line {current['line']}"
        )
    current["levels"].append(_parse_level(line))


def _collect_soundings(path: Path, lines: list[str], keep_truncated: bool) -> _Soundings:
    """Parse the lines of a sounding file (blank lines skipped) into :class:`_Soundings`.

    A malformed line raises ValueError naming the file and the line number; so does a
    file without any header line.
    """
    soundings = _Soundings(path, keep_truncated)
    current: dict | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if line.startswith("#"):
                soundings.close(current)
                current = {**_parse_header(line), "line": number, "levels": []}
            else:
                _add_level(current, line)
        except _LineError as err:
            raise ValueError(
                f"{path}, line {number}: malformed IGRA2 sounding line: {err}"
            ) from None
    if current is None:
        raise ValueError(f"{path}: no IGRA2 header line ('#...') in the file")
    soundings.close(current)
    return soundings


def _level_variables(levels: list[tuple]) -> dict[str, tuple]:
    """The variables of the level lines along ``obs``, in SI-like units (module docstring):
    pressure (Pa), gph (m), temperature (K), relative humidity (%), dewpoint depression
    (K), wind direction (degree), wind speed (m s-1), elapsed time (s), then the level
    types (int8) and the quality flags (str) as in the file. Missing values are NaN."""
    cols = list(zip(*levels)) if levels else [[] for _ in range(13)]
    (lt1, lt2, etime, press, gph, temp, rh, dpdp, wdir, wspd, pflag, zflag, tflag) = cols
    d = OBS_DIM
    return {
        "pressure": (d, _scaled(press, 1.0), {"units": "Pa", "long_name": "pressure"}),
        "gph": (d, _scaled(gph, 1.0), {"units": "m", "long_name": "geopotential height"}),
        "temperature": (
            d,
            _scaled(temp, 0.1, _ZERO_CELSIUS),
            {"units": "K", "long_name": "air temperature"},
        ),
        "relative_humidity": (
            d,
            _scaled(rh, 0.1),
            {"units": "%", "long_name": "relative humidity"},
        ),
        "dewpoint_depression": (
            d,
            _scaled(dpdp, 0.1),
            {"units": "K", "long_name": "dewpoint depression"},
        ),
        "wind_direction": (
            d,
            _scaled(wdir, 1.0),
            {"units": "degree", "long_name": "wind direction (from, clockwise from north)"},
        ),
        "wind_speed": (d, _scaled(wspd, 0.1), {"units": "m s-1", "long_name": "wind speed"}),
        "elapsed_time": (
            d,
            _elapsed_seconds(etime),
            {"units": "s", "long_name": "time elapsed since launch"},
        ),
        "level_type1": (
            d,
            np.asarray(lt1, dtype=np.int8),
            {"meaning": "1 standard pressure level, 2 other pressure level, 3 non-pressure"},
        ),
        "level_type2": (
            d,
            np.asarray(lt2, dtype=np.int8),
            {"meaning": "1 surface, 2 tropopause, 0 other"},
        ),
        "pressure_flag": (d, np.asarray(pflag, dtype="<U1")),
        "gph_flag": (d, np.asarray(zflag, dtype="<U1")),
        "temperature_flag": (d, np.asarray(tflag, dtype="<U1")),
    }


def _soundings_dataset(path: Path, soundings: _Soundings) -> xr.Dataset:
    """The obs dataset of :func:`read_igra2_soundings`: one row per kept level, with the
    level variables and, repeated on each level, its sounding's header values."""
    headers = soundings.headers
    per = np.asarray(soundings.sounding_of_level, dtype=np.int64)

    def header_col(key: str) -> list:
        return [headers[k][key] for k in per]

    level_in_sounding = np.concatenate(
        [np.arange(len(h["levels"]), dtype=np.int64) for h in headers] or [np.zeros(0, int)]
    )
    d = OBS_DIM
    ds = xr.Dataset(
        {
            **_level_variables(soundings.levels),
            "pressure_source": (d, np.asarray(header_col("p_src"), dtype=str)),
            "nonpressure_source": (d, np.asarray(header_col("np_src"), dtype=str)),
        },
        coords={
            "id": (d, np.asarray(header_col("id"), dtype=str)),
            "lat": (d, np.asarray(header_col("lat"), dtype=float), {"units": "degrees_north"}),
            "lon": (d, np.asarray(header_col("lon"), dtype=float), {"units": "degrees_east"}),
            "time": (d, _datetimes(header_col("time"))),
            "release_time": (d, _datetimes(header_col("release_time"))),
            "sounding": (d, per),
            "level": (d, level_in_sounding),
        },
        attrs={
            "source": path.name,
            "format": "IGRA2 sounding data (v2)",
            "n_soundings": len(headers),
            "truncated": "; ".join(soundings.truncated),
            "flags": '"" not checked, "A" passed tier-1 check, "B" passed tiers 1 and 2',
            "missing": "-9999 (missing) and -8888 (removed by QA) read as NaN",
        },
    )
    for name in ("pressure_flag", "gph_flag", "temperature_flag"):
        ds[name].attrs["meaning"] = ds.attrs["flags"]
    return ds


def read_igra2_soundings(path: str | Path, *, keep_truncated: bool = False) -> xr.Dataset:
    """Read an IGRA2 sounding data file (format in the module docstring) into obs.

    Args:
        path: an IGRA2 v2 ``<ID>-data.txt`` file (one or more stations, any number of
            soundings). Blank lines are skipped.
        keep_truncated: a sounding with fewer level lines than its header's NUMLEV
            (a file cut mid-sounding, or a header with no levels, as at the end of the
            shipped samples) is dropped by default; if True its levels are kept. Either
            way a :class:`TruncatedSoundingWarning` names it (station, nominal time,
            expected vs found levels, header line).

    Returns:
        ``xr.Dataset`` with dim ``obs``, one row per level, soundings in file order.
        Coordinates: ``id`` (str), ``lat``, ``lon`` (header position, degrees),
        ``time`` (nominal time; NaT where HOUR is 99), ``release_time`` (launch time,
        NaT if missing), ``sounding`` (0-based number of the sounding among those
        returned), ``level`` (0-based level number within its sounding). Float64
        variables: ``pressure`` (Pa), ``gph`` (geopotential height, m),
        ``temperature`` (K), ``relative_humidity`` (%), ``dewpoint_depression`` (K),
        ``wind_direction`` (degree), ``wind_speed`` (m s-1), ``elapsed_time`` (s);
        missing as NaN. Kept as in the file: ``level_type1``, ``level_type2`` (int8),
        ``pressure_flag``, ``gph_flag``, ``temperature_flag`` (str: "", "A" or "B"),
        ``pressure_source``, ``nonpressure_source`` (str). Attrs: ``source`` (file
        name), ``n_soundings``, ``truncated`` (descriptions of truncated soundings).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed header or level line, a level line before the first
            header or beyond NUMLEV, a derived-parameter file, or no header at all;
            the message names the file and the line number.
    """
    path, lines = _read_lines(path, "IGRA2 sounding file")
    soundings = _collect_soundings(path, lines, keep_truncated)
    return _soundings_dataset(path, soundings)


_MAX_LISTED = 10


def listing(items: list[str]) -> str:
    """The first 10 of ``items`` joined by commas, then "and N more" (for messages)."""
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")
