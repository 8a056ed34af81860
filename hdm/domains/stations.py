"""Station observations: CSV tables, IGRA2 ids, domain checks and simulated stations.

Station data use the schemas of :mod:`hdm.domains.radiosondes`: a *station list* (dim
``station``: ``id``, ``lat``, ``lon``, ...) and *observations* (dim ``obs``: coordinates
``id``, ``lat``, ``lon``, ``time`` and a ``value`` variable).

*Station table* (CSV with a header row): columns ``id``, ``lat`` (degrees_north),
``lon`` (degrees_east), ``time`` (ISO 8601; a timezone suffix is converted to UTC,
naive times are taken as UTC) and ``value``; any further column becomes a data variable
(float64 if every entry is numeric or empty, else str).

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
import math
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
    "stations_by_id",
    "stations_in_domain",
]


# ------------------------------------------------------------------------ station table

_TABLE_REQUIRED = ("id", "lat", "lon", "time", "value")


#: other names of the required columns, taken where the column itself is absent and
#: exactly one of them is present (case-insensitive)
_COLUMN_ALIASES = {
    "id": ("station", "station_id", "stn", "site", "wmo_id"),
    "lat": ("latitude",),
    "lon": ("longitude", "long"),
    "time": ("datetime", "date_time", "valid_time", "timestamp"),
}


def _column_aliases(columns: list[str]) -> dict[str, str]:
    """{found name: required name} for the required columns given under another name."""
    lower = {c.lower(): c for c in columns}
    rename = {}
    for name, aliases in _COLUMN_ALIASES.items():
        if name in lower:
            continue
        found = [lower[a] for a in aliases if a in lower]
        if len(found) == 1:
            rename[found[0]] = name
    return rename


def _read_table(path: Path) -> pd.DataFrame:
    """The CSV as text cells (column names stripped), with the required columns and a row."""
    if not path.is_file():
        raise FileNotFoundError(f"station table not found: {path}")
    try:  # the delimiter is sniffed: tables from European locales use ";"
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=None,
            engine="python",
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty station table (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV station table: {err}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.rename(columns=_column_aliases(list(df.columns)))
    missing = [c for c in _TABLE_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: station table is missing column(s) {', '.join(map(repr, missing))}; "
            f"found {', '.join(map(repr, df.columns))}"
        )
    if len(df) == 0:
        raise ValueError(f"{path}: station table has a header but no rows")
    return df


def _numeric(df: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Column ``col`` as float64 (NaN where empty or a NaN word such as "NA") and the mask
    of the cells that are neither a number nor such a word."""
    text = df[col].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    nan_words = text.str.lower().isin(["", "nan", "na", "n/a", "null", "none"])
    bad = np.isnan(values) & ~nan_words.to_numpy()
    return values, bad


def _table_positions(
    path: Path, df: pd.DataFrame, line: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of each row in degrees, checked: numbers, not NaN, lat in [-90, 90] and
    lon in [-180, 360]; the errors name the rows by station and file ``line``."""
    coords = {}
    for col in ("lat", "lon"):
        values, bad = _numeric(df, col)
        if bad.any():
            rows = [f"line {n} ({df[col].iloc[n - 2]!r})" for n in line[bad]]
            raise ValueError(f"{path}: {col} is not a number on {listing(rows)}")
        coords[col] = values
    lat, lon = coords["lat"], coords["lon"]
    nan = np.isnan(lat) | np.isnan(lon)
    if nan.any():
        rows = [f"station {s!r} (line {n})" for s, n in zip(ids[nan], line[nan])]
        raise ValueError(f"{path}: NaN or missing coordinates for {listing(rows)}")
    west, east = LONGITUDE_RANGE
    out = (np.abs(lat) > 90) | (lon < west) | (lon > east)
    if out.any():
        rows = [
            f"station {s!r} (line {n}: lat {a}, lon {b})"
            for s, n, a, b in zip(ids[out], line[out], lat[out], lon[out])
        ]
        raise ValueError(
            f"{path}: coordinates out of range (lat in [-90, 90], lon in [-180, 360]) "
            f"for {listing(rows)}"
        )
    return lat, lon


def _table_times(path: Path, df: pd.DataFrame, line: np.ndarray) -> np.ndarray:
    """The ``time`` column as datetime64[ns] UTC, timezone-naive (ISO 8601; a timezone
    suffix is converted to UTC, naive times are taken as UTC)."""
    time = pd.to_datetime(df["time"].str.strip(), format="ISO8601", errors="coerce", utc=True)
    bad_time = time.isna().to_numpy()
    if bad_time.any():
        rows = [f"line {n} ({df['time'].iloc[n - 2]!r})" for n in line[bad_time]]
        raise ValueError(f"{path}: unparseable time (ISO 8601 expected) on {listing(rows)}")
    return time.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")


def _table_variables(
    path: Path, df: pd.DataFrame, line: np.ndarray, units: Mapping[str, str] | None
) -> dict[str, tuple]:
    """The data variables along ``obs``: ``value`` (float64, must be numeric or empty),
    then each extra column (float64 if all numeric or empty, else the stripped text),
    with ``units`` attributes from ``units``."""
    value, bad = _numeric(df, "value")
    if bad.any():
        rows = [f"line {n} ({df['value'].iloc[n - 2]!r})" for n in line[bad]]
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
            data[col] = (d, df[col].str.strip().to_numpy(dtype=str), attrs)
        else:
            data[col] = (d, values, attrs)
    return data


def read_station_table(path: str | Path, *, units: Mapping[str, str] | None = None) -> xr.Dataset:
    """Read a plain CSV station table into the obs schema (dim ``obs``, one row per row).

    Args:
        path: CSV with a header row holding at least ``id``, ``lat``, ``lon``, ``time``,
            ``value`` (names stripped of surrounding blanks). Further columns become
            data variables. Empty cells of ``value`` and extra columns are NaN.
        units: optional ``{column: units}`` written to the ``units`` attribute of the
            data variables.

    Returns:
        ``xr.Dataset`` with dim ``obs`` in row order: coordinates ``id`` (str), ``lat``,
        ``lon`` (float64, degrees), ``time`` (datetime64[ns], UTC); variables ``value``
        (float64) and the extra columns. Attrs ``source`` (the file name).

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns (all listed, with the columns found), an empty
            table, an empty id, NaN or missing coordinates (naming the station and the
            line), latitude outside [-90, 90] or longitude outside [-180, 360], an
            unparseable time or value (naming the line). Line numbers count the
            header as line 1.
    """
    path = Path(path)
    df = _read_table(path)
    line = np.arange(len(df)) + 2  # file line of each row (header is line 1)
    ids = np.array([str(v).strip() for v in df["id"]], dtype=object)
    if (ids == "").any():
        raise ValueError(
            f"{path}: empty station id on line(s) {listing(list(map(str, line[ids == ''])))}"
        )
    lat, lon = _table_positions(path, df, line, ids)
    times = _table_times(path, df, line)
    d = OBS_DIM
    return xr.Dataset(
        _table_variables(path, df, line, units),
        coords={
            "id": (d, ids.astype(str)),
            "lat": (d, lat, {"units": "degrees_north"}),
            "lon": (d, lon, {"units": "degrees_east"}),
            "time": (d, times),
        },
        attrs={"source": path.name, "format": "station table (CSV)"},
    )


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
    """Station observations: CSV tables (id, lat, lon, time, value) or IGRA2 sounding
    files, whose *surface* levels (LVLTYP2 = 1) give the temperature (K), as obs.

    Several paths (a list, or one string with commas) are concatenated along ``obs``,
    in the units of the first file that has units (the others converted to them).

    Args:
        paths: the files.
        units: the units of the CSV tables' ``value`` column (e.g. ``"degC"``); None: no
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
        if path.suffix.lower() == ".csv":
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
