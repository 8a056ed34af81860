"""Station observations: CSV tables, IGRA2 ids, domain checks and simulated stations.

Station data use the schemas of :mod:`hdm.domains.radiosondes`: a *station list* (dim
``station``: ``id``, ``lat``, ``lon``, ...) and *observations* (dim ``obs``: coordinates
``id``, ``lat``, ``lon``, ``time`` and a ``value`` variable).

*Station table* (delimited text with a header row): columns ``id``, ``lat``
(degrees_north), ``lon`` (degrees_east), ``time`` (ISO 8601; a timezone suffix is
converted to UTC, naive times are taken as UTC) and ``value``; any further column
becomes a data variable (float64 if every entry is numeric or empty, else str). Column
names are matched case-insensitively (``ID``, ``Lat``), and a few aliases are accepted
(``Station``, ``Latitude``, ``DateTime``). The delimiter is ",", ";" or a tab, whichever
the header holds most; in a ";" table ``lat``, ``lon`` and ``value`` may have a decimal
comma (``50,2183``). Text is UTF-8 (with or without a byte-order mark), UTF-16 with a
byte-order mark, or else Windows-1252/Latin-1. Blank and "#" comment lines before the
header are skipped. Any file whose first line is not an IGRA2 sounding header
(``#`` + 11-character station id) and whose header holds a delimiter is a table, whatever
its extension.

Simulated observations (observing-system simulation experiments, OSSE) sample a
gridded field at station coordinates by bilinear interpolation in (lat, lon) degrees
(:func:`hdm.data.regrid.values_at_points`), then add independent Gaussian noise
N(0, noise_std²) from a seeded :func:`numpy.random.default_rng`. On a grid point the
interpolant is the grid value, and it reproduces any field linear in (lat, lon) exactly.

Longitudes are kept as given; domain tests compare them modulo 360, so either
convention works (a box may cross the antimeridian, e.g. lon=(170, 190)). Domain bounds
are inclusive.
"""

from __future__ import annotations

import difflib
import io
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hdm.data.regrid import longitude_period, values_at_points
from hdm.data.units import parse_units, to_units
from hdm.domains.radiosondes import (
    IGRA2_STATION_LIST,
    OBS_DIM,
    atmos_data_dir,
    listing,
    read_igra2_soundings,
    read_igra2_station_list,
)
from hdm.hilbert.grids import LONGITUDE_RANGE

__all__ = [
    "check_stations_in_domain",
    "first_occurrences",
    "parse_ids",
    "read_station_table",
    "read_stations",
    "shipped_station_list",
    "simulate_observations",
    "station_field_names",
    "station_times",
    "stations_by_id",
    "stations_from_frame",
    "stations_in_domain",
]


# ------------------------------------------------------------------------ station table

_TABLE_REQUIRED = ("id", "lat", "lon", "time", "value")

#: the columns a station table names: the required ones and the per-row ``units`` and
#: ``variable`` (:data:`ROW_COLUMNS`); matched case-insensitively
_TABLE_NAMED = (*_TABLE_REQUIRED, "units", "variable")

#: other names of the required columns, taken where the column itself is absent and
#: exactly one of them is present (case-insensitive)
_COLUMN_ALIASES = {
    "id": ("station", "station_id", "stn", "site", "wmo_id"),
    "lat": ("latitude",),
    "lon": ("longitude", "long"),
    "time": ("datetime", "date_time", "valid_time", "timestamp"),
}

#: the delimiters of a station table, in the order that breaks a tie
_DELIMITERS = (",", ";", "\t")

#: a number with a decimal comma (``50,2183``, ``-1,5e3``), as ";" tables write them
_DECIMAL_COMMA = r"^(\s*[+-]?\d+),(\d+(?:[eE][+-]?\d+)?\s*)$"

#: the start of an IGRA2 sounding header: "#" and the 11-character station id (columns
#: 1-12, :mod:`hdm.domains.radiosondes`), then a blank before the year
_IGRA2_HEADER = re.compile(r"#[A-Z0-9]{11}(\s|$)")

#: bytes read to tell a station table from an IGRA2 sounding file
_SNIFF_BYTES = 1 << 16


def _decode(data: bytes) -> str:
    """The text of a file: UTF-16 if it starts with a UTF-16 byte-order mark (Excel's
    "Unicode text"), else UTF-8 (a byte-order mark dropped, as Excel's "CSV UTF-8"
    writes), else Windows-1252 (Excel's "CSV" on Western locales), else Latin-1 (which
    decodes any byte)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _is_comment(line: str) -> bool:
    """A blank line, or one whose first non-blank character is "#"."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _delimiter(header: str) -> str:
    """The delimiter of a header line: the one of ",", ";", tab it holds most often
    (a tie, or none, in that order)."""
    return max(_DELIMITERS, key=header.count)


def _is_station_table(path: Path) -> bool:
    """Whether ``path`` holds a station table rather than IGRA2 soundings, by content.

    An IGRA2 sounding file starts with a header line "#" + the 11-character station id
    (e.g. ``#USM00070219 2019 03 01 00 ...``): soundings. Otherwise the first line that
    is neither blank nor a "#" comment is a table header if it holds ",", ";" or a tab,
    and any ``.csv`` file is a table; the rest are read as soundings (whose reader names
    the line it cannot parse). A missing file goes by its extension (the readers raise).
    """
    is_csv = path.suffix.lower() == ".csv"
    if not path.is_file():
        return is_csv
    with path.open("rb") as f:
        lines = _decode(f.read(_SNIFF_BYTES)).splitlines()
    first = next((line for line in lines if line.strip()), "")
    if _IGRA2_HEADER.match(first):
        return False
    header = next((line for line in lines if not _is_comment(line)), "")
    return is_csv or any(d in header for d in _DELIMITERS)


def _column_aliases(where: str, columns: list[str]) -> dict[str, str]:
    """{found name: name} for the named columns (:data:`_TABLE_NAMED`) written in another
    case (``ID``, ``Lat``) or, for a required column absent in any case, under one of
    its aliases (``Station``, ``Latitude``; :data:`_COLUMN_ALIASES`).

    Raises:
        ValueError: two columns that name the same column (``id`` and ``ID``, or
            ``Station`` and ``stn`` without an ``id``), naming both, after ``where`` (the
            file and its header line, or the DataFrame).
    """
    rename = {}
    for name in _TABLE_NAMED:
        found = [c for c in columns if c.lower() == name]
        if not found:
            found = [c for c in columns if c.lower() in _COLUMN_ALIASES.get(name, ())]
        if len(found) > 1:
            named = ", ".join(map(repr, found[:-1])) + f" and {found[-1]!r}"
            raise ValueError(
                f"{where}: columns {named} "
                f"{'both' if len(found) == 2 else 'all'} name the column {name!r}; "
                "keep one"
            )
        if found and found[0] != name:
            rename[found[0]] = name
    return rename


def _read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The table as text cells, with the named columns and a row, and the file line
    (1-based) of each row.

    Decoded as in :func:`_decode`. Leading blank lines and "#" comment lines are skipped
    (a "#" further on is data: an id such as ``STN#1``); the next line is the header,
    whose delimiter (:func:`_delimiter`) splits every line. Column names are stripped
    and matched by :func:`_column_aliases`; empty rows are dropped; missing trailing
    cells are "". With ";" as delimiter, ``lat``, ``lon`` and ``value`` cells written
    with a decimal comma (``50,2183``) read as numbers (``50.2183``).
    """
    if not path.is_file():
        raise FileNotFoundError(f"station table not found: {path}")
    lines = _decode(path.read_bytes()).split("\n")
    skipped = next((k for k, line in enumerate(lines) if not _is_comment(line)), len(lines))
    if skipped == len(lines):
        raise ValueError(f"{path}: empty station table (no header row)")
    delimiter = _delimiter(lines[skipped])
    try:
        df = pd.read_csv(
            io.StringIO("\n".join(lines[skipped:])), sep=delimiter, dtype=str,
            keep_default_na=False, skipinitialspace=True, skip_blank_lines=False,
        )  # fmt: skip
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found:
            want, at, saw = map(int, found.groups())
            raise ValueError(
                f"{path}, line {skipped + at}: {saw} cells where the header has {want} "
                f"(delimiter {delimiter!r})"
            ) from None
        raise ValueError(f"{path}: not a readable station table: {err}".strip()) from None
    header_line = skipped + 1
    df.columns = [str(c).strip() for c in df.columns]
    df = df.rename(columns=_column_aliases(f"{path}, line {header_line}", list(df.columns)))
    missing = [c for c in _TABLE_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}, line {header_line}: station table is missing column(s) "
            f"{', '.join(map(repr, missing))}; found {', '.join(map(repr, df.columns))} "
            f"(delimiter {delimiter!r})"
        )
    df = df.fillna("")
    filled = (df.apply(lambda col: col.str.strip()) != "").any(axis=1).to_numpy()
    line = (header_line + 1 + np.arange(len(df)))[filled]
    df = df[filled].reset_index(drop=True)
    if len(df) == 0:
        raise ValueError(f"{path}: station table has a header but no rows")
    if delimiter == ";":
        for col in ("lat", "lon", "value"):
            df[col] = df[col].str.replace(_DECIMAL_COMMA, r"\1.\2", regex=True)
    return df, line


def _numeric(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``col`` as float64 (NaN where empty or a NaN word such as "NA") and the mask
    of the cells that are neither a number nor such a word. A numeric column (of a
    DataFrame) is taken as it is; other cells are read as text (None and NaN: empty)."""
    column = df[col]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=float), np.zeros(len(column), dtype=bool)
    text = _text(column)
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    nan_words = text.str.lower().isin(["", "nan", "na", "n/a", "null", "none"])
    bad = np.isnan(values) & ~nan_words.to_numpy()
    return values, bad


def _text(column: pd.Series) -> pd.Series:
    """The cells of a column as stripped text, "" where missing (None, NaN)."""
    return column.where(column.notna(), "").astype(str).str.strip()


def _table_positions(
    path: Path | str, df: pd.DataFrame, line: np.ndarray, ids: np.ndarray, word: str = "line"
) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of each row in degrees, checked: numbers, not NaN, lat in [-90, 90] and
    lon in [-180, 360]; the errors name the rows by station and file ``line`` (or
    DataFrame row: ``word`` "row")."""
    coords = {}
    for col in ("lat", "lon"):
        values, bad = _numeric(df, col)
        if bad.any():
            rows = [f"{word} {n} ({v!r})" for n, v in zip(line[bad], df[col].to_numpy()[bad])]
            raise ValueError(f"{path}: {col} is not a number on {listing(rows)}")
        coords[col] = values
    lat, lon = coords["lat"], coords["lon"]
    nan = np.isnan(lat) | np.isnan(lon)
    if nan.any():
        rows = [f"station {s!r} ({word} {n})" for s, n in zip(ids[nan], line[nan])]
        raise ValueError(f"{path}: NaN or missing coordinates for {listing(rows)}")
    west, east = LONGITUDE_RANGE
    out = (np.abs(lat) > 90) | (lon < west) | (lon > east)
    if out.any():
        rows = [
            f"station {s!r} ({word} {n}: lat {a}, lon {b})"
            for s, n, a, b in zip(ids[out], line[out], lat[out], lon[out])
        ]
        raise ValueError(
            f"{path}: coordinates out of range (lat in [-90, 90], lon in [-180, 360]) "
            f"for {listing(rows)}"
        )
    return lat, lon


def _table_times(
    path: Path | str, df: pd.DataFrame, line: np.ndarray, word: str = "line"
) -> np.ndarray:
    """The ``time`` column as datetime64[ns] UTC, timezone-naive (ISO 8601; a timezone
    suffix is converted to UTC, naive times are taken as UTC). A datetime column (of a
    DataFrame) is taken as it is, converted to UTC if timezone-aware; text is parsed."""
    column = df["time"]
    if pd.api.types.is_datetime64_any_dtype(column):
        time = pd.to_datetime(column, utc=True)
    else:
        time = pd.to_datetime(_text(column), format="ISO8601", errors="coerce", utc=True)
    bad_time = time.isna().to_numpy()
    if bad_time.any():
        cells = column.to_numpy()[bad_time]
        rows = [f"{word} {n} ({v!r})" for n, v in zip(line[bad_time], cells)]
        raise ValueError(f"{path}: unparseable time (ISO 8601 expected) on {listing(rows)}")
    return time.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _table_variables(
    path: Path | str,
    df: pd.DataFrame,
    line: np.ndarray,
    units: Mapping[str, str] | None,
    word: str = "line",
) -> dict[str, tuple]:
    """The data variables along ``obs``: ``value`` (float64, must be numeric or empty),
    then each extra column (float64 if all numeric or empty, else the stripped text),
    with ``units`` attributes from ``units``."""
    value, bad = _numeric(df, "value")
    if bad.any():
        rows = [f"{word} {n} ({v!r})" for n, v in zip(line[bad], df["value"].to_numpy()[bad])]
        raise ValueError(f"{path}: value is not a number on {listing(rows)}")
    units = dict(units or {})
    d = OBS_DIM
    data = {"value": (d, value, {"units": units["value"]} if "value" in units else {})}
    for col in df.columns:
        if col in _TABLE_REQUIRED:
            continue
        values, bad = _numeric(df, col)
        attrs = {"units": units[col]} if col in units else {}
        if bad.any():  # not numeric: keep the text
            data[col] = (d, _text(df[col]).to_numpy(dtype=str), attrs)
        else:
            data[col] = (d, values, attrs)
    return data


def read_station_table(path: str | Path, *, units: Mapping[str, str] | None = None) -> xr.Dataset:
    """Read a station table into the obs schema (dim ``obs``, one row per row).

    Args:
        path: delimited text (",", ";" or tab; see the module docstring for the
            encodings, comments and decimal commas read) with a header row holding at
            least ``id``, ``lat``, ``lon``, ``time``, ``value`` in any case (names
            stripped of surrounding blanks). Further columns become data variables.
            Empty cells of ``value`` and extra columns are NaN; empty rows are skipped.
        units: optional ``{column: units}`` written to the ``units`` attribute of the
            data variables.

    Returns:
        ``xr.Dataset`` with dim ``obs`` in row order: coordinates ``id`` (str), ``lat``,
        ``lon`` (float64, degrees), ``time`` (datetime64[ns], UTC); variables ``value``
        (float64) and the extra columns. Attrs ``source`` (the file name).

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns (all listed, with the columns found), two columns
            for one name (``id`` and ``ID``), a row with more cells than the header, an
            empty table, an empty id, NaN or missing coordinates (naming the station and
            the line), latitude outside [-90, 90] or longitude outside [-180, 360], an
            unparseable time or value (naming the line). Line numbers are the file's,
            comment lines included.
    """
    path = Path(path)
    df, line = _read_table(path)
    obs = _table_dataset(path, df, line, units, "line")
    return obs.assign_attrs(source=path.name, format="station table (CSV)")


def _table_dataset(
    where: Path | str,
    df: pd.DataFrame,
    line: np.ndarray,
    units: Mapping[str, str] | None,
    word: str,
) -> xr.Dataset:
    """The obs dataset of a table whose named columns are found (:func:`_column_aliases`):
    ids, positions, times and variables checked, errors naming ``where`` and the rows
    (``word`` ``line``: a file's lines; ``row``: a DataFrame's index labels)."""
    ids = _text(df["id"]).to_numpy(dtype=object)
    if (ids == "").any():
        raise ValueError(
            f"{where}: empty station id on {word}(s) {listing(list(map(str, line[ids == ''])))}"
        )
    lat, lon = _table_positions(where, df, line, ids, word)
    times = _table_times(where, df, line, word)
    d = OBS_DIM
    return xr.Dataset(
        _table_variables(where, df, line, units, word),
        coords={
            "id": (d, ids.astype(str)),
            "lat": (d, lat, {"units": "degrees_north"}),
            "lon": (d, lon, {"units": "degrees_east"}),
            "time": (d, times),
        },
    )


def station_field_names(names: Sequence[str], where: str) -> dict[str, str]:
    """{found name: name} that brings the fields of station observations held under
    other names to theirs, as a station table's columns are (case-insensitive, and the
    aliases ``Station``, ``Latitude``, ``DateTime``, ...; module doc); ``where`` names
    the data in the error.

    Raises:
        ValueError: two names for one field (``id`` and ``ID``).
    """
    return _column_aliases(where, [str(n) for n in names])


def station_times(values: np.ndarray | pd.Index, where: str) -> np.ndarray:
    """Observation times as datetime64[ns] UTC, timezone-naive, as a station table's are
    read: datetimes as they are (timezone-aware converted to UTC, naive taken as UTC),
    text as ISO 8601.

    Raises:
        ValueError: times that cannot be read, naming ``where`` and the obs positions.
    """
    column = pd.Series(values if isinstance(values, pd.Index) else np.asarray(values).ravel())
    positions = np.arange(len(column)).astype(str)
    return _table_times(where, pd.DataFrame({"time": column}), positions, "obs")


def stations_from_frame(
    df: pd.DataFrame,
    *,
    units: Mapping[str, str] | None = None,
    what: str = "the station DataFrame",
) -> xr.Dataset:
    """A station table held as a pandas DataFrame, in the obs schema (dim ``obs``, one
    row per row), read as :func:`read_station_table` reads a file.

    Args:
        df: columns ``id``, ``lat``, ``lon``, ``time``, ``value`` in any case, under the
            aliases a file may use (``Station``, ``Latitude``, ``DateTime``; module doc),
            or as named levels of its index (``df.set_index(["id", "time"])``); optional
            ``units`` and ``variable`` per row, and any further columns (data
            variables). ``time``: datetime (timezone-aware converted to UTC, naive taken
            as UTC) or ISO 8601 text; ``lat``, ``lon``, ``value``: numbers (or numeric
            text); missing values (None, NaN) of ``value`` and extra columns are NaN.
        units: optional ``{column: units}`` written to the data variables' ``units``
            attribute (a ``units`` column says so row by row instead).
        what: the DataFrame, for messages.

    Returns:
        as :func:`read_station_table`: coordinates ``id`` (str), ``lat``, ``lon``
        (float64), ``time`` (datetime64[ns], UTC); variables ``value`` and the other
        columns.

    Raises:
        ValueError: missing columns (all listed, with those found), two columns for one
            name, no rows, an empty id, NaN or out-of-range coordinates, an unparseable
            time or a non-numeric value, naming the rows by their index labels.
    """
    named = {*_TABLE_NAMED, *(a for aliases in _COLUMN_ALIASES.values() for a in aliases)}
    columns = {str(c).strip().lower() for c in df.columns}
    levels = [
        n for n in df.index.names if n is not None and str(n).strip().lower() in named - columns
    ]
    if levels:  # id, time, ... kept as the index (df.set_index(["id", "time"]))
        df = df.reset_index(level=levels)
    df = df.rename(columns=lambda c: str(c).strip())
    df = df.rename(columns=_column_aliases(what, list(df.columns)))
    missing = [c for c in _TABLE_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {', '.join(map(repr, missing))}; found "
            f"{', '.join(map(repr, df.columns)) or 'none'} (a station table has columns "
            "id, lat, lon, time, value; optional units, variable)"
        )
    if len(df) == 0:
        raise ValueError(f"{what} has no rows")
    rows = np.array([str(label) for label in df.index], dtype=object)
    return _table_dataset(what, df.reset_index(drop=True), rows, units, "row")


# ------------------------------------------------------------------------------ domain


def _bounds(pair, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {pair!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} bounds must be finite with low <= high, got ({lo}, {hi})")
    if name == "lat" and (lo < -90 or hi > 90):
        raise ValueError(f"lat bounds must lie in [-90, 90], got ({lo}, {hi})")
    return lo, hi


def _station_dim(stations: xr.Dataset) -> str:
    missing = [v for v in ("id", "lat", "lon") if v not in stations.variables]
    if missing:
        raise ValueError(
            f"stations need 'id', 'lat' and 'lon' along one dimension; missing {missing}"
        )
    dims = {stations[v].dims for v in ("id", "lat", "lon")}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"'id', 'lat' and 'lon' must share one dimension, got {sorted(dims)}")
    return next(iter(dims))[0]


def _inside(
    lat: np.ndarray, lon: np.ndarray, lat_b: tuple[float, float], lon_b: tuple[float, float]
) -> np.ndarray:
    """Inclusive box test; longitudes compared modulo 360 from the box's west edge."""
    lon_wrapped = np.mod(lon - lon_b[0], 360.0) + lon_b[0]
    in_lon = (lon_b[1] - lon_b[0] >= 360.0) | (lon_wrapped <= lon_b[1])
    with np.errstate(invalid="ignore"):
        return (lat >= lat_b[0]) & (lat <= lat_b[1]) & in_lon & np.isfinite(lon)


def stations_in_domain(
    stations: xr.Dataset,
    lat: tuple[float, float],
    lon: tuple[float, float],
    *,
    active_in: int | None = None,
) -> xr.Dataset:
    """The stations inside the box ``lat[0] <= lat <= lat[1]``, ``lon[0] <= lon <= lon[1]``.

    Args:
        stations: any dataset with ``id``, ``lat``, ``lon`` along one dim (a station list
            or obs). Longitudes in either convention; see the module docstring.
        lat, lon: inclusive bounds in degrees (``lon`` may cross 180°, e.g. (170, 190)).
        active_in: if given, keep only stations with ``first_year <= active_in <=
            last_year`` (needs those variables, as in the IGRA2 station list).

    Returns:
        The selected rows, in their original order. Stations with NaN coordinates are
        never inside.
    """
    dim = _station_dim(stations)
    lat_b, lon_b = _bounds(lat, "lat"), _bounds(lon, "lon")
    keep = _inside(stations["lat"].values, stations["lon"].values, lat_b, lon_b)
    if active_in is not None:
        missing = [v for v in ("first_year", "last_year") if v not in stations.variables]
        if missing:
            raise ValueError(f"active_in needs the station variables {missing}")
        year = int(active_in)
        keep &= (stations["first_year"].values <= year) & (stations["last_year"].values >= year)
    return stations.isel({dim: np.flatnonzero(keep)})


def check_stations_in_domain(
    obs: xr.Dataset, lat: tuple[float, float], lon: tuple[float, float]
) -> xr.Dataset:
    """Raise unless every station of ``obs`` lies inside the box (bounds inclusive).

    Args:
        obs: any dataset with ``id``, ``lat``, ``lon`` along one dim.
        lat, lon: the box, as in :func:`stations_in_domain`.

    Returns:
        ``obs`` unchanged, for chaining.

    Raises:
        ValueError: naming each station outside the box (with its position) and each
            with NaN coordinates. Stations are never dropped silently.
    """
    _station_dim(obs)
    lat_b, lon_b = _bounds(lat, "lat"), _bounds(lon, "lon")
    ids = np.array([str(v) for v in obs["id"].values], dtype=object)
    la, lo = obs["lat"].values.astype(float), obs["lon"].values.astype(float)
    nan = np.isnan(la) | np.isnan(lo)
    outside = ~_inside(la, lo, lat_b, lon_b) & ~nan
    problems = []
    if outside.any():
        _, first = np.unique(ids[outside], return_index=True)
        rows = np.flatnonzero(outside)[np.sort(first)]
        named = [f"{ids[r]!r} (lat {la[r]:g}, lon {lo[r]:g})" for r in rows]
        problems.append(
            f"{len(named)} station(s) outside the domain lat [{lat_b[0]:g}, {lat_b[1]:g}], "
            f"lon [{lon_b[0]:g}, {lon_b[1]:g}]: {listing(named)}"
        )
    if nan.any():
        named = [repr(s) for s in dict.fromkeys(ids[nan])]
        problems.append(f"{len(named)} station(s) with NaN coordinates: {listing(named)}")
    if problems:
        raise ValueError("; ".join(problems))
    return obs


# ------------------------------------------------------------------ simulated stations

_FIELD_NAMES = {"latitude": "lat", "longitude": "lon", "valid_time": "time"}


def _as_time_lat_lon(field: xr.DataArray) -> xr.DataArray:
    """Rename to (time, lat, lon), sort both axes ascending, check the grid."""
    if not isinstance(field, xr.DataArray):
        raise TypeError(f"field must be an xarray.DataArray, got {type(field).__name__}")
    renames = {k: v for k, v in _FIELD_NAMES.items() if k in field.dims and v not in field.dims}
    field = field.rename(renames)
    if set(field.dims) != {"time", "lat", "lon"}:
        raise ValueError(
            f"field must have dims (time, lat, lon) (or latitude/longitude), got {field.dims}; "
            "select one level or member first"
        )
    for axis in ("time", "lat", "lon"):
        if axis not in field.coords:
            raise ValueError(f"field has no {axis!r} coordinate")
    field = field.transpose("time", "lat", "lon").sortby(["lat", "lon"])
    for axis in ("lat", "lon"):
        values = field[axis].values.astype(float)
        if values.size < 2:
            raise ValueError(f"field needs at least 2 points along {axis} to interpolate")
        if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
            raise ValueError(f"field {axis} coordinate has NaN or duplicated values")
    return field


def _check_noise_and_seed(noise_std: float, seed: int) -> float:
    """``noise_std`` as a float, checked finite and ≥ 0; ``seed`` a non-negative integer."""
    noise_std = float(noise_std)
    if not (math.isfinite(noise_std) and noise_std >= 0.0):
        raise ValueError(f"noise_std must be finite and >= 0 (0: no noise), got {noise_std}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return noise_std


def _station_major_coords(stations: xr.Dataset, dim: str, times: np.ndarray) -> dict:
    """Coordinates along ``obs`` = station × time, station-major: each station's ``id``,
    ``lat``, ``lon`` (and ``elevation``, if it lies along ``dim``) repeated for every time,
    and ``times`` tiled once per station."""
    n_time, n_st = times.size, stations.sizes[dim]
    d = OBS_DIM
    coords = {
        "id": (d, np.repeat(stations["id"].values.astype(str), n_time)),
        "lat": (
            d,
            np.repeat(stations["lat"].values.astype(float), n_time),
            {"units": "degrees_north"},
        ),
        "lon": (
            d,
            np.repeat(stations["lon"].values.astype(float), n_time),
            {"units": "degrees_east"},
        ),
        "time": (d, np.tile(times, n_st)),
    }
    if "elevation" in stations.variables and stations["elevation"].dims == (dim,):
        coords["elevation"] = (
            d,
            np.repeat(stations["elevation"].values, n_time),
            stations["elevation"].attrs,
        )
    return coords


def simulate_observations(
    field: xr.DataArray, stations: xr.Dataset, noise_std: float, seed: int
) -> xr.Dataset:
    """Sample a gridded field at station coordinates, with noise (an OSSE).

    Bilinear interpolation in (lat, lon) degrees: with the enclosing cell
    ``lat_i <= φ <= lat_{i+1}``, ``lon_j <= λ <= lon_{j+1}``, t = (φ − lat_i)/(lat_{i+1} −
    lat_i), s = (λ − lon_j)/(lon_{j+1} − lon_j),
    ``f(φ, λ) = (1−t)(1−s) f_ij + (1−t) s f_i,j+1 + t (1−s) f_i+1,j + t s f_i+1,j+1``;
    terms of weight 0 are skipped, so a station on a grid point gets the grid value
    exactly (even next to NaN). A grid spanning 360° of longitude wraps around. Then
    ``value = truth + noise_std · z``, z ~ N(0, 1) i.i.d. from
    ``numpy.random.default_rng(seed)`` in obs order.

    Args:
        field: dims (time, lat, lon), or latitude/longitude (valid_time), any order,
            either latitude direction (sorted here), with coordinates; may be dask-backed
            (only the needed grid points are computed).
        stations: dataset with ``id``, ``lat``, ``lon`` along one dim (a station list,
            e.g. from :func:`stations_in_domain`); ``elevation`` is carried along if
            present.
        noise_std: standard deviation of the noise in the field's units; 0 gives the
            exact interpolated values, negative or non-finite is an error.
        seed: seed of the noise generator; the same seed gives the same values.

    Returns:
        obs schema with dim ``obs`` = station × time, flattened station-major (all times
        of the first station, then the next): coordinates ``id``, ``lat``, ``lon`` (the
        stations' own), ``time``; variables ``value`` (noisy) and ``truth`` (interpolated,
        noise-free), with the field's ``units``. Attrs ``noise_std``, ``seed``,
        ``source``, ``variable``, ``interpolation``.

    Raises:
        ValueError: negative or non-finite ``noise_std``, a field not on (time, lat, lon),
            stations outside the field's grid or with NaN coordinates (all named).
    """
    noise_std = _check_noise_and_seed(noise_std, seed)
    field = _as_time_lat_lon(field)
    dim = _station_dim(stations)
    grid_lat = field["lat"].values.astype(float)
    grid_lon = field["lon"].values.astype(float)
    period = longitude_period(grid_lon)
    lon_hi = grid_lon[0] + 360.0 if period else grid_lon[-1]
    check_stations_in_domain(stations, (grid_lat[0], grid_lat[-1]), (grid_lon[0], lon_hi))
    st_lat = stations["lat"].values.astype(float)
    st_lon = stations["lon"].values.astype(float)
    truth = values_at_points(field, st_lat, st_lon).transpose("time", "station").values

    truth = truth.T.reshape(-1)  # station-major
    rng = np.random.default_rng(seed)
    value = truth + noise_std * rng.standard_normal(truth.size)
    attrs = {k: field.attrs[k] for k in ("units", "long_name") if k in field.attrs}
    d = OBS_DIM
    name = field.name if field.name is not None else "field"
    return xr.Dataset(
        {"value": (d, value, attrs), "truth": (d, truth, attrs)},
        coords=_station_major_coords(stations, dim, field["time"].values),
        attrs={
            "noise_std": noise_std,
            "seed": int(seed),
            "variable": str(name),
            "source": f"simulated: {name} interpolated at station coordinates + N(0, noise_std²)",
            "interpolation": "bilinear in (lat, lon) degrees",
        },
    )


# ------------------------------------------------------------------ station ids and files


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    """Indices of the first observation of every station, in order of appearance."""
    _, first = np.unique(np.asarray(ids).astype(str), return_index=True)
    return np.sort(first)


def shipped_station_list() -> xr.Dataset:
    """The IGRA2 station list shipped in ``data/atmos/igra2``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two blank records of the shipped list
        return read_igra2_station_list(atmos_data_dir() / IGRA2_STATION_LIST)


def igra2_worldwide(
    count: int = 200, year: int = 2020
) -> tuple[tuple[tuple[float, float], ...], tuple[str, ...]]:
    """((lat, lon), ...) and ids of ``count`` IGRA2 stations active in ``year``, evenly
    through the id-sorted shipped list (so every region, both polar ones included): the
    stations of observing-system experiments on the whole globe."""
    table = shipped_station_list()
    active = (table["last_year"].values >= year) & (table["first_year"].values <= year)
    active &= np.isfinite(table["lat"].values)
    ids = table["id"].values[active].astype(str)
    lat, lon = table["lat"].values[active], table["lon"].values[active]
    if count > len(ids):
        raise ValueError(f"only {len(ids)} IGRA2 stations were active in {year}, not {count}")
    order = np.argsort(ids)
    pick = order[np.linspace(0, len(order) - 1, count).round().astype(int)]
    return tuple(zip(lat[pick].tolist(), lon[pick].tolist(), strict=True)), tuple(ids[pick])


def stations_by_id(ids: Sequence[str], station_list: xr.Dataset | None = None) -> xr.Dataset:
    """The rows of the IGRA2 station list with these ids, in the order given."""
    table = station_list if station_list is not None else shipped_station_list()
    known = table["id"].values.astype(str)
    where = {sid: i for i, sid in enumerate(known)}
    rows = []
    for sid in ids:
        sid = sid.strip()
        if sid not in where:
            close = difflib.get_close_matches(sid, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise KeyError(f"station {sid!r} is not in the IGRA2 station list{hint}")
        rows.append(where[sid])
    return table.isel(station=rows)


def parse_ids(ids: str | Sequence[str] | None) -> list[str]:
    """Station ids from a list, or from one comma-separated string ("" or None: none)."""
    if ids is None:
        return []
    items = ids.split(",") if isinstance(ids, str) else list(ids)
    return [str(s).strip() for s in items if str(s).strip()]


#: per-row columns of a station table kept beside ``value``: its units, and the model
#: variable the row observes (:func:`hdm.downscaling.inputs.stations_by_variable`)
ROW_COLUMNS = ("units", "variable")


def _same_row_columns(parts: list[xr.Dataset], paths: Sequence) -> list[xr.Dataset]:
    """Files that are concatenated share their per-row columns: a file without a
    ``units`` column gets its ``value`` attribute on every row ("" when it has none); one
    without the ``variable`` column that others have is an error naming it."""
    if any("variable" in p for p in parts):
        lacking = [str(path) for p, path in zip(parts, paths) if "variable" not in p]
        if lacking:
            raise ValueError(
                f"{lacking[0]}: no 'variable' column, where the other station files say "
                "which variable each row observes"
            )
    if any("units" in p for p in parts):
        parts = [
            p
            if "units" in p
            else p.assign(units=("obs", np.full(p.sizes["obs"], p["value"].attrs.get("units", ""))))
            for p in parts
        ]
    return parts


def read_stations(
    paths: str | Path | Sequence[str | Path], *, units: str | None = None
) -> xr.Dataset:
    """Station observations: station tables (id, lat, lon, time, value;
    :func:`read_station_table`) or IGRA2 sounding files, whose *surface* levels
    (LVLTYP2 = 1) give the temperature (K), as obs. The format is told by content, not
    extension: a first line "#" + 11-character station id is an IGRA2 sounding header;
    a header line holding ",", ";" or a tab (after any "#" comments), or a ``.csv``
    file, is a table.

    Several paths (a list, or one string with commas) are concatenated along ``obs``,
    in the units of the first file that has units (the others converted to them).

    Args:
        paths: the files.
        units: the units of the tables' ``value`` column (e.g. ``"degC"``); None: no
            ``units`` attribute (values then count as being in the units of whatever
            they are compared with: the model's, when downscaling).

    Raises:
        UnitsError: ``units`` that cannot be read, or not convertible to those of
            another file (a wind table with temperature soundings).
    """
    if isinstance(paths, str | Path):
        paths = [p for p in str(paths).split(",") if p.strip()]
    if units is not None:
        parse_units(units, "the station tables' value")  # a typo fails before any read
    table_units = {"value": units} if units is not None else None
    parts = []
    for path in map(Path, paths):
        if _is_station_table(path):
            table = read_station_table(path, units=table_units)
            # the rows' own units and the variable each observes travel with the values
            kept = [c for c in ("value", *ROW_COLUMNS) if c in table.data_vars]
            parts.append(table[kept])
            continue
        soundings = read_igra2_soundings(path)
        surface = soundings.isel(obs=np.flatnonzero(soundings["level_type2"].values == 1))
        if surface.sizes["obs"] == 0:
            raise ValueError(f"{path}: no surface level (LVLTYP2 = 1) in any sounding")
        obs = surface[["temperature"]].rename({"temperature": "value"})
        obs["value"].attrs["units"] = "K"
        keep = [c for c in ("id", "lat", "lon", "time") if c in obs.coords]
        parts.append(obs.reset_coords([c for c in obs.coords if c not in keep], drop=True))
    if not parts:
        raise ValueError("no station file given")
    if len(parts) == 1:
        return parts[0]
    parts = _same_row_columns(parts, paths)
    first = next((p["value"].attrs["units"] for p in parts if "units" in p["value"].attrs), None)
    parts = [
        p.assign(value=to_units(p["value"], first, f"the station values of {path}"))
        for p, path in zip(parts, paths)
    ]
    return xr.concat(parts, dim="obs")
