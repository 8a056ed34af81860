"""Open gridded fields lazily and normalise their conventions, once, here.

:func:`open_fields` reads one netCDF file, a glob, a list of files, a zarr store or a
GRIB file (with the optional extra ``hdm[grib]``: cfgrib + ecCodes) into one lazy
``xr.Dataset`` backed by dask arrays: opening reads metadata and 1-D coordinates only;
values are read when computed (chunk by chunk).

Conventions after opening (the schema of :mod:`hdm.data.schema`):

- names: ``latitude`` → ``lat``, ``longitude`` → ``lon``, ``valid_time`` → ``time``
  when it is the time dimension (ERA5 netCDF from cfgrib has both; then the dimension
  ``time`` is kept and ``valid_time`` stays a non-index coordinate), ``pressure_level``,
  ``isobaricInhPa``, ``plev`` → ``level``; ensemble ``number`` (as a dimension) →
  ``member``;
- ``lat`` strictly ascending (a descending file is reversed, lazily);
- ``lon`` in [-180, 180), strictly ascending: λ ↦ ((λ + 180) mod 360) − 180, then the
  columns are reordered (a [0, 360) global grid is rolled by half a turn); a repeated
  cyclic column (λ₀ + 360 as last column) is dropped;
- ``level`` ascending, in hPa (levels in another pressure unit, such as Pa, are
  converted; levels without units are taken to be in hPa);
- ``time`` strictly increasing; a numeric time dimension (``time_index`` in hours since
  an epoch given by its ``units`` or the dataset's ``time_units`` attribute) decoded;
- values kept in the units of their ``units`` attribute, unless ``units=`` asks for
  others (``{"t2m": "K"}``: converted lazily with :mod:`hdm.data.units`); what was
  changed is listed in the dataset attribute ``hdm_conventions``.

Requested variables are found under their own name, else under an alias of it
(:data:`hdm.data.schema.VARIABLE_ALIASES`: CMIP's ``tas`` for ``t2m``, ``ua`` for ``u``),
which is renamed to the name asked for (logged, and listed in ``hdm_conventions``).

Checks (each raises with a message naming the file and what is wrong): missing file or
no match for a glob; a file that is not netCDF/zarr/GRIB or is truncated; a requested
variable absent, under its name and its aliases (the present ones are listed); a
coordinate that is not strictly monotonic or has a duplicate (the coordinate and the
first bad index are named); latitudes outside [-90, 90]; one variable with different
units in different files (both files named; spellings of one unit, K and kelvin, are not
different units), unless ``units=`` converts them to one. Several files are combined by
their coordinates (:func:`xarray.combine_by_coords`) after each has been normalised.

Selection happens before any data is read: ``time`` (a slice of ISO strings or
datetimes, one string such as ``"2019-03-02"`` for a whole day, or a list),
``region`` (a :class:`Region` latitude/longitude box, inclusive) and ``level`` (one
level in hPa, which drops the dimension, or a list).

Chunks: ``chunks="auto"`` keeps the horizontal grid whole and lets dask choose the
number of time steps per chunk (about ``array.chunk-size``, 128 MiB by default, in
multiples of the file's own chunks); a dict such as ``{"time": 1}`` (schema names) is
passed to :meth:`xarray.Dataset.chunk`, dimensions not named staying whole.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from hdm.data.schema import ALIASES, LAT, LEVEL, LON, TIME, variable_in
from hdm.data.units import UnitsError, affine, is_pressure, known, same_units, to_units

__all__ = [
    "Region",
    "check_coordinate",
    "detect_format",
    "normalise_conventions",
    "open_fields",
    "pa_level_hint",
    "renamed_from",
]

PathLike = str | os.PathLike[str]

_NETCDF3_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray", ".zmetadata")
_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb2")

log = logging.getLogger("hdm")


@dataclass(frozen=True)
class Region:
    """A latitude–longitude box, degrees, bounds included.

    ``lat = (south, north)`` within [-90, 90]; ``lon = (west, east)`` in the
    [-180, 180] convention with west ≤ east (boxes across the antimeridian are not
    supported: open two boxes).
    """

    lat: tuple[float, float]
    lon: tuple[float, float]

    def __post_init__(self) -> None:
        (s, n), (w, e) = self.lat, self.lon
        if not (-90.0 <= s <= n <= 90.0):
            raise ValueError(f"Region.lat must satisfy -90 <= south <= north <= 90, got {self.lat}")
        if not (-180.0 <= w <= e <= 180.0):
            raise ValueError(
                f"Region.lon must satisfy -180 <= west <= east <= 180, got {self.lon} "
                "(boxes across the antimeridian are not supported)"
            )

    @classmethod
    def coerce(cls, value: Region | Mapping[str, Any] | Sequence[float]) -> Region:
        """From a Region, ``{"lat": (s, n), "lon": (w, e)}`` or ``(s, n, w, e)``."""
        if isinstance(value, Region):
            return value
        if isinstance(value, Mapping):
            return cls(lat=tuple(value["lat"]), lon=tuple(value["lon"]))
        vals = tuple(float(v) for v in value)
        if len(vals) != 4:
            raise ValueError(
                f"region as a sequence must be (south, north, west, east), got {value}"
            )
        return cls(lat=vals[:2], lon=vals[2:])


# --------------------------------------------------------------------------- formats


def detect_format(path: PathLike) -> str:
    """``"netcdf3"``, ``"netcdf4"``, ``"zarr"`` or ``"grib"``, from the content of ``path``.

    Raises:
        FileNotFoundError: no file or directory at ``path``.
        ValueError: a directory that is not a zarr store, an empty file, or a file that
            is neither netCDF (classic or HDF5) nor GRIB.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or zarr store: {p}")
    if p.is_dir():
        if any((p / m).exists() for m in _ZARR_MARKERS):
            return "zarr"
        raise ValueError(
            f"{p} is a directory but not a zarr store (no {' / '.join(_ZARR_MARKERS)} inside)"
        )
    with open(p, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{p} is empty: not a netCDF, zarr or GRIB file")
    if head[:4] in _NETCDF3_MAGIC:
        return "netcdf3"
    if head == _HDF5_MAGIC:
        return "netcdf4"
    if head[:4] == b"GRIB" or p.suffix.lower() in _GRIB_SUFFIXES:
        return "grib"
    raise ValueError(
        f"{p} is not a netCDF, zarr or GRIB file (it starts with {head!r}; netCDF starts "
        "with b'CDF' or b'\\x89HDF')"
    )


def _check_classic_netcdf(path: Path) -> None:
    """Raise if a classic (CDF-1/2) netCDF file is shorter than its header says.

    The netCDF-C library opens a truncated classic file without complaint and reads
    the missing bytes as fill values, so the header is checked here with scipy's
    reader, which maps every variable onto the file and fails if one runs past its
    end. CDF-5 files are not checked (scipy cannot read them).
    """
    from scipy.io import netcdf_file

    with open(path, "rb") as f:
        if f.read(4) == b"CDF\x05":
            return
    try:
        with warnings.catch_warnings():
            # scipy warns when closing a file whose mmap views are still referenced
            warnings.simplefilter("ignore")
            nc = netcdf_file(path, mode="r", mmap=True)
            try:
                for var in nc.variables.values():
                    _ = var.data.shape
            finally:
                nc.close()
    except Exception as err:
        raise ValueError(
            f"{path} is truncated or corrupt: its netCDF header describes more data than "
            f"the file holds ({type(err).__name__}: {err})"
        ) from err


def _open_raw(path: Path, fmt: str) -> xr.Dataset:
    """Open one file or store lazily *without* dask (lazily indexed backend arrays)."""
    try:
        if fmt == "zarr":
            with warnings.catch_warnings():  # stores without consolidated metadata are fine
                warnings.filterwarnings("ignore", message=".*consolidated metadata")
                # a README or sample_info.json beside the arrays is not part of the data
                warnings.filterwarnings("ignore", message=".*not recognized as a component")
                return xr.open_dataset(path, engine="zarr", chunks=None)
        if fmt == "grib":
            try:
                import cfgrib  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    f"reading the GRIB file {path} needs the optional extra 'grib': "
                    "pip install 'hdm[grib]' (cfgrib, with the ecCodes library)"
                ) from err
            return xr.open_dataset(
                path, engine="cfgrib", chunks=None, backend_kwargs={"indexpath": ""}
            )
        if fmt == "netcdf3":
            _check_classic_netcdf(path)
        return xr.open_dataset(path, engine="netcdf4", chunks=None)
    except (ImportError, ValueError):
        raise
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        raise ValueError(
            f"cannot read {path} as {fmt}: not a valid file of that format, or truncated "
            f"({type(err).__name__}: {err})"
        ) from err


# ------------------------------------------------------------------- coordinate checks


def _fmt(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def check_coordinate(
    values: np.ndarray, name: str, source: str, *, increasing: bool = False
) -> int:
    """Check that a 1-D coordinate is strictly monotonic without duplicates.

    Args:
        values: the coordinate values, in the file's order.
        name: the coordinate name (for messages).
        source: where it comes from (a file name), for messages.
        increasing: require strictly increasing (time) rather than either direction.

    Returns:
        +1 if ascending (or shorter than 2), −1 if descending.

    Raises:
        ValueError: naming the coordinate, the source and the first bad index.
    """
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"coordinate {name!r} in {source} must be 1-D, got shape {v.shape}")
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        i = int(np.flatnonzero(~np.isfinite(v))[0])
        raise ValueError(f"coordinate {name!r} in {source} is not finite at index {i}")
    if v.size < 2:
        return 1
    d = np.diff(v)
    zero = d == np.zeros((), d.dtype)
    if zero.any():
        i = int(np.flatnonzero(zero)[0]) + 1
        raise ValueError(
            f"coordinate {name!r} in {source} has a duplicated value {_fmt(v[i])} at index {i} "
            f"(same as index {i - 1})"
        )
    positive = d > np.zeros((), d.dtype)
    direction = 1 if (increasing or positive[0]) else -1
    bad = ~positive if direction == 1 else positive
    if bad.any():
        i = int(np.flatnonzero(bad)[0]) + 1
        order = "increasing" if direction == 1 else "decreasing"
        raise ValueError(
            f"coordinate {name!r} in {source} is not monotonic (strictly {order}): first bad "
            f"index {i} ({_fmt(v[i])} after {_fmt(v[i - 1])})"
        )
    return direction


def _check_latitude(values: np.ndarray, source: str) -> None:
    v = np.asarray(values, dtype=np.float64)
    out = np.abs(v) > 90.0
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ValueError(
            f"latitude in {source} outside [-90, 90]: {v[i]:g} at index {i} "
            f"(range {v.min():g} to {v.max():g})"
        )


# --------------------------------------------------------------------- conventions


def _forecast_steps(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    """A forecast file as cfgrib opens it (a ``step`` dimension of lead times, ``time``
    the initialisation, scalar or of length 1, and ``valid_time(step)``) indexed by its
    valid times instead: each step is the field at its valid time, which is what hdm
    downscales. Other datasets are returned as they are."""
    if "step" not in ds.dims or "valid_time" not in ds.coords:
        return ds
    if "time" in ds.dims and ds.sizes["time"] == 1:
        ds = ds.isel(time=0)  # one initialisation: its steps are the times
    if ds["valid_time"].dims != ("step",):
        return ds  # several initialisations: left to the caller's messages
    notes.append("forecast steps indexed by valid_time")
    return ds.swap_dims({"step": "valid_time"})


def renamed_from(ds: xr.Dataset) -> dict[str, str]:
    """{schema name: the file's name} of the names :func:`normalise_conventions` changed
    (read from its ``hdm_conventions`` note), for messages in the file's terms."""
    note = str(ds.attrs.get("hdm_conventions", ""))
    return {new: old for old, new in re.findall(r"(\w+)->(\w+)", note)}


def _rename_map(ds: xr.Dataset) -> dict[str, str]:
    """File names → schema names: per schema name, the first alias (in any case) that is a
    dimension, else the first alias present; a non-dimension ``time`` that would clash with a
    ``valid_time`` dimension is renamed ``forecast_reference_time``."""
    names = set(ds.variables) | set(ds.dims)
    # matched in any case (TIME, LAT, Lon: some tools write coordinates in capitals)
    by_lower: dict[str, str] = {}
    for name in sorted(map(str, names), key=lambda n: n != n.lower()):
        by_lower.setdefault(name.lower(), name)  # an exact lower-case name first
    rename: dict[str, str] = {}
    for target, aliases in ALIASES.items():
        present = [by_lower[a] for a in aliases if a in by_lower]
        if not present:
            continue
        dims = [a for a in present if a in ds.dims]
        chosen = dims[0] if dims else present[0]
        if target == "member" and chosen not in ds.dims:
            continue  # ERA5's scalar `number` coordinate is not an ensemble dimension
        if chosen != target:
            if target in names:
                if target in ds.dims:
                    continue
                rename[target] = "forecast_reference_time" if target == TIME else f"{target}_orig"
            rename[chosen] = target
    return rename


def _calendar_time(ds: xr.Dataset, source: str, notes: list[str]) -> xr.Dataset:
    """A time axis of a model calendar (cftime dates: ``noleap``, ``360_day``, …) as
    datetime64 by label (2019-03-29 06:00 stays 2019-03-29 06:00, as CMIP tools compare
    calendars), so it can meet the stations' and the model's times; a date that the
    standard calendar lacks (30 February) is an error naming it, not a time dropped."""
    if TIME not in ds.coords or ds[TIME].dtype != object:
        return ds
    values = ds[TIME].values
    calendar = getattr(values[0], "calendar", None) if values.size else None
    if calendar is None:
        return ds
    converted = []
    for d in values:
        try:
            converted.append(
                np.datetime64(datetime(d.year, d.month, d.day, d.hour, d.minute, d.second), "ns")
            )
        except ValueError:
            raise ValueError(
                f"{source}: time {d.strftime('%Y-%m-%d %H:%M')} of the {calendar} calendar "
                "has no date in the standard calendar; select the times that do"
            ) from None
    notes.append(f"time taken from the {calendar} calendar by label")
    return ds.assign_coords({TIME: (ds[TIME].dims, np.array(converted), ds[TIME].attrs)})


_TIME_UNITS = re.compile(r"^\s*(\w+\s+since\s+[^()]+?)\s*(?:\((\w+)\))?\s*$")


def _numeric_time(ds: xr.Dataset, source: str, notes: list[str]) -> xr.Dataset:
    """A numeric time dimension (``time_index``: hours since 1940, say) decoded to
    datetimes and renamed ``time``, when the file has no ``time`` dimension.

    The units come from the coordinate's own ``units`` attribute (CF) or, as some stores
    keep them, from a dataset attribute ``<name>_units`` or ``time_units``, e.g. ``"hours
    since 1940-01-01 00:00 (proleptic_gregorian)"`` (a calendar in parentheses). A
    numeric time dimension without units is an error naming it: its steps cannot be
    placed in time.
    """
    if TIME in ds.dims:
        return ds
    candidates = [
        d for d in ds.dims if str(d).lower().startswith("time") and d in ds.coords
        and np.issubdtype(ds[d].dtype, np.number)
    ]  # fmt: skip
    if not candidates:
        return ds
    name = candidates[0]
    text = (
        ds[name].attrs.get("units") or ds.attrs.get(f"{name}_units") or ds.attrs.get("time_units")
    )
    match = _TIME_UNITS.match(str(text)) if text else None
    if match is None:
        raise ValueError(
            f"{source}: the time dimension {name!r} holds numbers without time units "
            f"(got {text!r}; expected e.g. 'hours since 1940-01-01', as its 'units' "
            f"attribute or the dataset attribute 'time_units')"
        )
    units, calendar = match.group(1), match.group(2) or "proleptic_gregorian"
    try:
        times = xr.coding.times.decode_cf_datetime(ds[name].values, units, calendar)
    except (ValueError, OverflowError, TypeError) as err:
        raise ValueError(
            f"{source}: cannot decode the time dimension {name!r} with units {text!r}: {err}"
        ) from None
    notes.append(f"decoded {name} ({units}, {calendar}) -> time")
    ds = ds.rename({name: TIME})
    return ds.assign_coords({TIME: (TIME, pd.DatetimeIndex(times).values, {})})


# Each of the three helpers below reads one 1-D coordinate of the dataset and adds to
# ``indexers`` (positional, for Dataset.isel), ``new_coords`` (for assign_coords) and
# ``notes`` (for the ``hdm_conventions`` attribute) what normalise_conventions must do.


def _level_conventions(
    lev: xr.DataArray,
    source: str,
    indexers: dict[str, Any],
    new_coords: dict[str, Any],
    notes: list[str],
) -> None:
    """``level`` ascending (a descending one is reversed) and in hPa when its units are a
    pressure (Pa divided by 100; levels without units are taken as hPa, levels in other
    units, such as model levels, are kept)."""
    values = lev.values
    if check_coordinate(values, LEVEL, source) < 0:
        indexers[LEVEL] = slice(None, None, -1)
        values = values[::-1]
        notes.append("level reversed to ascending")
    units = lev.attrs.get("units")
    if is_pressure(units) and str(units).strip() != "hPa":
        a, b = affine(units, "hPa", f"coordinate {LEVEL!r} in {source}")
        attrs = {**lev.attrs, "units": "hPa"}
        new_coords[LEVEL] = (LEVEL, values * a + b, attrs)  # after the reversal
        notes.append(f"level {str(units).strip()}->hPa")


def _lat_conventions(
    lat_coord: xr.DataArray,
    source: str,
    region: Region | None,
    indexers: dict[str, Any],
    notes: list[str],
) -> None:
    """``lat`` checked in [-90, 90], made ascending, then cut to ``region.lat`` (inclusive)."""
    lat = lat_coord.values
    lat_index = np.arange(lat.size)
    _check_latitude(lat, source)
    if check_coordinate(lat, LAT, source) < 0:
        lat_index = lat_index[::-1]
        notes.append("lat reversed to ascending")
    if region is not None:
        lat_sorted = lat[lat_index]
        keep = (lat_sorted >= region.lat[0]) & (lat_sorted <= region.lat[1])
        if not keep.any():
            raise ValueError(
                f"region lat {region.lat} selects no latitude of {source} "
                f"(latitudes {lat.min():g} to {lat.max():g})"
            )
        lat_index = lat_index[keep]
    if not np.array_equal(lat_index, np.arange(lat.size)):
        indexers[LAT] = _as_indexer(lat_index)


def _circular_direction(lon: np.ndarray) -> int | None:
    """+1 (−1) where the longitudes step strictly east (west) by less than half a turn
    each time, wrapping at most once, and span less than a turn; None otherwise."""
    steps = np.mod(np.diff(np.asarray(lon, dtype=np.float64)), 360.0)
    if steps.size == 0 or not np.isfinite(steps).all():
        return None
    if np.all((steps > 0) & (steps < 180)) and steps.sum() < 360:
        return 1
    back = 360.0 - steps
    if np.all((back > 0) & (back < 180)) and back.sum() < 360:
        return -1
    return None


def _refuse_antimeridian(lon_asc: np.ndarray, source: str) -> None:
    """A ValueError for ascending longitudes of a region that spans 180° (170, …, 182, or
    -190, …, -170) without going round the globe: wrapped to [-180, 180) they would split
    into two pieces 350° apart, which no regular grid holds (hdm's grids do not cross the
    antimeridian yet)."""
    if lon_asc.size < 2:
        return
    step = float(np.median(np.diff(lon_asc)))
    whole_circle = lon_asc[-1] - lon_asc[0] + step >= 360.0 - 0.5 * step
    crosses = any(lon_asc[0] < edge < lon_asc[-1] for edge in (-180.0, 180.0, 540.0))
    if crosses and not whole_circle:
        if lon_asc[-1] - lon_asc[0] >= 180.0:  # most of the globe: a global field short of it
            raise ValueError(
                f"the longitudes of {source} run {lon_asc[0]:g}..{lon_asc[-1]:g} in steps of "
                f"{step:g}: not the whole globe (lon {lon_asc[-1] + step:g}..{lon_asc[0] + 360:g} "
                "has no values) and not a region within [-180, 180); a global model needs "
                "values round the whole circle"
            )
        raise ValueError(
            f"the longitudes of {source} run {lon_asc[0]:g}..{lon_asc[-1]:g} across the "
            "antimeridian (180°): hdm's longitudes lie in [-180, 180), where this region "
            "would be two pieces; regions across the antimeridian are not supported: cut "
            "the region at 180°, or choose one within [-180, 180)"
        )


def _lon_conventions(
    lon_coord: xr.DataArray,
    source: str,
    region: Region | None,
    indexers: dict[str, Any],
    new_coords: dict[str, Any],
    notes: list[str],
) -> None:
    """``lon`` in [-180, 180), strictly ascending, cut to ``region.lon`` (inclusive).

    A descending coordinate is reversed, a repeated cyclic column (λ₀ + 360 last) dropped,
    then λ ↦ ((λ + 180) mod 360) − 180 and the columns reordered by the wrapped values.
    Longitudes that cross their own convention's wrap once (350, …, 359.5, 0, …, 2: a
    region cut across Greenwich from a [0, 360) file) are monotonic on the circle and are
    taken the same way; any other disorder is an error naming the first bad index.
    """
    lon_raw = lon_coord.values
    try:
        direction = check_coordinate(lon_raw, LON, source)
    except ValueError:
        # a file whose longitudes cross its convention's wrap (350, …, 359.5, 0, …, 2)
        # is monotonic on the circle; anything else is the error as raised
        direction = _circular_direction(lon_raw)
        if direction is None:
            raise
        notes.append("lon crossed the wrap of its convention")
    if direction < 0:
        order = np.arange(lon_raw.size)[::-1]
        notes.append("lon reversed")
    else:
        order = np.arange(lon_raw.size)
    lon_asc = lon_raw[order].astype(np.float64)
    if lon_asc.size > 1 and np.isclose(lon_asc[-1] - lon_asc[0], 360.0):
        order, lon_asc = order[:-1], lon_asc[:-1]  # drop the repeated cyclic column
        notes.append("cyclic lon column dropped")
    _refuse_antimeridian(lon_asc, source)
    wrapped = np.mod(lon_asc + 180.0, 360.0) - 180.0
    perm = np.argsort(wrapped, kind="stable")
    check_coordinate(wrapped[perm], LON, f"{source} (after wrapping to [-180, 180))")
    if not np.array_equal(wrapped, lon_asc):
        notes.append("lon wrapped to [-180, 180)")
    order, wrapped = order[perm], wrapped[perm]
    if region is not None:
        keep = (wrapped >= region.lon[0]) & (wrapped <= region.lon[1])
        if not keep.any():
            raise ValueError(
                f"region lon {region.lon} selects no longitude of {source} "
                f"(longitudes {wrapped.min():g} to {wrapped.max():g} after wrapping)"
            )
        order, wrapped = order[keep], wrapped[keep]
    if not np.array_equal(order, np.arange(lon_raw.size)):
        indexers[LON] = _as_indexer(order)
    if not np.array_equal(wrapped, lon_raw[order]):
        lon_attrs = dict(lon_coord.attrs)
        new_coords[LON] = (LON, wrapped.astype(lon_coord.dtype), lon_attrs)


#: the dimension of ERA5 files from the CDS that mix final data (expver 1, 0001) with the
#: preliminary ERA5T (5, 0005) of the last months: each time holds a value in one of them
EXPVER = "expver"


def _merged_expver(ds: xr.Dataset, notes: list[str]) -> xr.Dataset:
    """An ``expver`` dimension merged away: at each time and point the first experiment
    version that has a value (in the file's order: final ERA5 before ERA5T), as the
    CDS documents for such downloads. Lazy; a dataset without it is returned as is."""
    if EXPVER not in ds.dims:
        return ds
    versions = [str(v) for v in ds[EXPVER].values] if EXPVER in ds.coords else []
    merged = ds.isel({EXPVER: 0}, drop=True)
    for k in range(1, ds.sizes[EXPVER]):
        merged = merged.combine_first(ds.isel({EXPVER: k}, drop=True))
    notes.append(f"merged expver {'/'.join(versions) or ds.sizes[EXPVER]} (first with a value)")
    return merged.assign_attrs(ds.attrs)


def normalise_conventions(
    ds: xr.Dataset, source: str = "<dataset>", *, region: Region | None = None
) -> xr.Dataset:
    """Map names to the schema, check coordinates, make lat ascending and lon in [-180, 180).

    Works lazily on any dataset (backend-lazy or dask arrays): only 1-D coordinates are
    read. ``region`` selects a box *after* longitudes are wrapped, with positional
    indexing that composes with the file reads (so only the box is ever read).

    Raises:
        ValueError: non-monotonic or duplicated coordinate (name and first bad index),
            latitudes outside [-90, 90], a region that selects nothing.
    """
    notes: list[str] = []
    ds = _forecast_steps(ds, notes)
    rename = _rename_map(ds)
    if rename:
        ds = ds.rename(rename)
        notes.append("renamed " + ", ".join(f"{a}->{b}" for a, b in rename.items()))
    ds = _numeric_time(ds, source, notes)
    ds = _calendar_time(ds, source, notes)
    ds = _merged_expver(ds, notes)
    indexers: dict[str, Any] = {}
    new_coords: dict[str, Any] = {}

    if TIME in ds.dims and TIME in ds.coords:
        check_coordinate(ds[TIME].values, TIME, source, increasing=True)
    if LEVEL in ds.dims and LEVEL in ds.coords:
        _level_conventions(ds[LEVEL], source, indexers, new_coords, notes)
    if LAT in ds.dims and LAT in ds.coords:
        _lat_conventions(ds[LAT], source, region, indexers, notes)
    if LON in ds.dims and LON in ds.coords:
        _lon_conventions(ds[LON], source, region, indexers, new_coords, notes)

    if indexers:
        ds = ds.isel(indexers)
    if new_coords:
        ds = ds.assign_coords(new_coords)
    if notes:
        ds = ds.assign_attrs(hdm_conventions="; ".join(notes))  # a copy: input untouched
    return ds


def _as_indexer(index: np.ndarray) -> slice | np.ndarray:
    """A slice when ``index`` is an arithmetic progression (cheapest to read), else itself."""
    if index.size == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    step = int(index[1] - index[0])
    if step != 0 and np.all(np.diff(index) == step):
        stop = int(index[-1]) + step
        return slice(int(index[0]), stop if stop >= 0 else None, step)
    return index


# ---------------------------------------------------------------------- selection


def _select_time(ds: xr.Dataset, time: Any) -> xr.Dataset:
    """Select by time labels; a file without any selected step gives an empty ``time``."""
    if time is None or TIME not in ds.dims:
        return ds
    try:
        out = ds.sel({TIME: time})
        if TIME not in out.dims:  # one step selected by an exact label: keep the dim
            out = ds.sel({TIME: [time]})
    except KeyError:
        out = ds.isel({TIME: slice(0, 0)})
    return out


#: the highest pressure level in hPa a file holds (1000 hPa and a little below ground)
_HIGHEST_HPA = 1100.0


def pa_level_hint(present: Sequence[float], wanted: Sequence[float]) -> str:
    """A clause for a message refusing levels ``present`` (read as hPa) that lack the
    ``wanted`` ones (hPa): where all are above 1100 and ``present`` / 100 holds one of
    ``wanted``, the file's levels are in Pa without a ``units`` attribute (which
    :func:`normalise_conventions` reads as hPa); else ``""``."""
    present = np.asarray(present, dtype=np.float64)
    if present.size == 0 or not (present > _HIGHEST_HPA).all():
        return ""
    match = [p for p in present if np.isclose(np.asarray(wanted, np.float64), p / 100).any()]
    if not match:
        return ""
    return (
        f"; the file's levels look like Pa ({_fmt(match[0])} = {_fmt(match[0] / 100)} hPa): "
        "set the level coordinate's units attribute to 'Pa'"
    )


def _select_level(ds: xr.Dataset, level: Any, source: str) -> xr.Dataset:
    if level is None:
        return ds
    if LEVEL not in ds.dims:
        return ds  # surface fields in a multi-variable set have no level
    present = ds[LEVEL].values
    wanted = np.atleast_1d(np.asarray(level, dtype=np.float64))
    missing = [w for w in wanted if not np.isclose(present.astype(np.float64), w).any()]
    if missing:
        raise KeyError(
            f"level(s) {[_fmt(m) for m in missing]} hPa not in {source}; levels present: "
            f"{[_fmt(p) for p in present]}" + pa_level_hint(present, wanted)
        )
    return ds.sel({LEVEL: level})


# ------------------------------------------------------------------------- chunks


def _auto_chunks(ds: xr.Dataset, preferred: Mapping[str, int]) -> dict[str, Any]:
    """Whole horizontal grid, dask-chosen time steps (multiples of the file's chunks)."""
    if not ds.data_vars:
        return {}
    var = max(ds.data_vars.values(), key=lambda v: v.size * v.dtype.itemsize)
    if TIME not in var.dims:
        return dict.fromkeys(ds.dims, "auto")
    spec = tuple("auto" if d == TIME else -1 for d in var.dims)
    prev = tuple(
        min(int(preferred.get(d, s)), s) if d == TIME else s for d, s in zip(var.dims, var.shape)
    )
    chunks = dask.array.core.normalize_chunks(
        spec, shape=var.shape, dtype=var.dtype, previous_chunks=prev
    )
    return {TIME: chunks[var.dims.index(TIME)], **{d: -1 for d in ds.dims if d != TIME}}


def _preferred_chunks(ds: xr.Dataset, rename: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for var in ds.data_vars.values():
        for dim, size in var.encoding.get("preferred_chunks", {}).items():
            out.setdefault(rename.get(dim, dim), int(size))
    return out


def _chunk(ds: xr.Dataset, chunks: str | Mapping[str, Any], preferred: Mapping[str, int]):
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto' or a dict of dim -> size, got {chunks!r}")
        spec = _auto_chunks(ds, preferred)
    elif isinstance(chunks, Mapping):
        unknown = sorted(set(chunks) - set(ds.dims))
        if unknown:
            raise ValueError(f"chunks for unknown dim(s) {unknown}; dims: {list(ds.dims)}")
        spec = {d: -1 for d in ds.dims} | dict(chunks)
    else:
        raise TypeError(f"chunks must be 'auto' or a dict, got {type(chunks).__name__}")
    # Small non-index coordinates (valid_time, GRIB's scalar step/number, ...) are read
    # now and kept in memory; only data variables become dask arrays.
    small = [c for c in ds.coords if c not in ds.indexes and ds[c].nbytes <= 64 * 2**20]
    ds = ds.assign_coords({c: ds[c].variable.load() for c in small})
    chunked = {
        name: var.variable.chunk({d: spec[d] for d in var.dims if d in spec})
        for name, var in ds.data_vars.items()
    }
    return ds.assign(chunked)


# ------------------------------------------------------------------------ sources


def _expand_sources(source: PathLike | Iterable[PathLike]) -> tuple[list[Path], str]:
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if any(c in text for c in "*?[") and not Path(text).exists():
            matches = sorted(globlib.glob(text))
            if not matches:
                raise FileNotFoundError(f"no file matches the pattern {text}")
            return [Path(m) for m in matches], text
        return [Path(text)], text
    paths = [Path(os.fspath(p)) for p in source]
    if not paths:
        raise ValueError("open_fields got an empty list of files")
    label = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files ({paths[0]}, ...)"
    return paths, label


def _check_units(parts: Sequence[tuple[Path, xr.Dataset]]) -> None:
    """Raise if one variable has different units in two files (spellings of one unit,
    such as K and kelvin, are the same units)."""
    seen: dict[str, tuple[str, Path]] = {}
    for path, ds in parts:
        for name, var in ds.data_vars.items():
            units = var.attrs.get("units")
            if units is None:
                continue
            if name in seen and not same_units(seen[name][0], units):
                first_units, first_path = seen[name]
                raise UnitsError(
                    f"variable {name!r} has mixed units: {first_units!r} in {first_path} but "
                    f"{units!r} in {path}: convert the files to one unit (from Python, "
                    f"open_fields(..., units={{{name!r}: {first_units!r}}}) does it lazily)"
                )
            seen.setdefault(name, (units, path))


def _convert_units(ds: xr.Dataset, units: Mapping[str, str], path: Path) -> xr.Dataset:
    """The variables named in ``units`` converted to those units (lazily: dask arrays)."""
    converted, notes = {}, []
    for name, target in units.items():
        if name not in ds.data_vars:
            continue  # the variable is in other files
        where = f"variable {name!r} in {path}"
        source = ds[name].attrs.get("units")
        if not known(source):
            raise UnitsError(f"{where} has no units attribute: cannot convert it to {target!r}")
        converted[name] = to_units(ds[name], target, where)
        if not same_units(source, target):
            notes.append(f"{name} {source}->{target}")
    if not notes:
        return ds.assign(converted)
    done = [ds.attrs["hdm_conventions"]] if "hdm_conventions" in ds.attrs else []
    return ds.assign(converted).assign_attrs(hdm_conventions="; ".join(done + notes))


def _explain_grid_mismatch(group: Sequence[tuple[Path, xr.Dataset]]) -> None:
    """Raise naming the odd file where files that split a time series (their times differ)
    do not share one grid: a level, lat or lon axis unlike the most common one that
    overlaps it (one file missing a row would otherwise be combined as a tile, and fail as
    a non-monotonic axis); disjoint axes are tiles of the domain, left to the combine."""
    times = [ds[TIME].values for _, ds in group if TIME in ds.dims]
    if len(times) < 2 or all(np.array_equal(t, times[0]) for t in times):
        return
    for dim in (LEVEL, LAT, LON):
        axes = [(p, ds[dim].values) for p, ds in group if dim in ds.dims]
        if len(axes) < 2 or all(np.array_equal(a, axes[0][1]) for _, a in axes):
            continue
        kinds: dict[bytes, list[tuple[Path, np.ndarray]]] = {}
        for path, axis in axes:
            kinds.setdefault(np.asarray(axis, np.float64).tobytes(), []).append((path, axis))
        common = max(kinds.values(), key=len)
        path, axis = next(pa for k in kinds.values() if k is not common for pa in k)
        if np.intersect1d(axis, common[0][1]).size == 0:
            continue  # disjoint: tiles of the domain, combined by their coordinates

        def shown(values: np.ndarray) -> str:
            return f"{values.size} values {_fmt(values[0])}..{_fmt(values[-1])}"

        raise ValueError(
            f"{path} has another {dim} axis ({shown(axis)}) than {common[0][0]} "
            f"({shown(common[0][1])}): the files of one time series must share one grid"
        )


def _explain_overlap(parts: Sequence[tuple[Path, xr.Dataset]]) -> None:
    """Raise naming the files if, among files with the same variables, a coordinate that
    differs between them is not strictly increasing once concatenated in the order of
    the files' first values (overlapping or duplicated steps)."""
    groups: dict[tuple[str, ...], list[tuple[Path, xr.Dataset]]] = {}
    for path, ds in parts:
        groups.setdefault(tuple(sorted(map(str, ds.data_vars))), []).append((path, ds))
    for group in groups.values():
        _explain_grid_mismatch(group)
        for dim in (TIME, LEVEL, LAT, LON):
            coords = [(p, ds[dim].values) for p, ds in group if dim in ds.dims]
            if len(coords) < 2 or all(np.array_equal(c, coords[0][1]) for _, c in coords):
                continue
            coords.sort(key=lambda pc: pc[1][0])
            names = ", ".join(str(p) for p, _ in coords)
            values = np.concatenate([c for _, c in coords])
            check_coordinate(values, dim, f"the files combined ({names})", increasing=True)


def _requested_in(names: Iterable[str], variable: str, wanted: Sequence[str]) -> str | None:
    """The name under which the requested ``variable`` is among a file's ``names``: itself,
    else an alias (:func:`hdm.data.schema.variable_in`) that is not itself requested."""
    return variable_in([n for n in names if n == variable or n not in wanted], variable)


def _combine(parts: Sequence[tuple[Path, xr.Dataset]]) -> xr.Dataset:
    if len(parts) == 1:
        return parts[0][1]
    _explain_overlap(parts)
    try:
        return xr.combine_by_coords(
            [ds for _, ds in parts],
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="outer",
            combine_attrs="drop_conflicts",
        )
    except ValueError as err:
        raise ValueError(f"cannot combine the files by their coordinates: {err}") from err


# ---------------------------------------------------------------------------- API


def open_fields(
    source: PathLike | Iterable[PathLike],
    variables: str | Sequence[str] | None = None,
    *,
    chunks: str | Mapping[str, Any] = "auto",
    time: Any = None,
    region: Region | Mapping[str, Any] | Sequence[float] | None = None,
    level: float | Sequence[float] | None = None,
    units: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """Open gridded fields lazily (dask), in the hdm schema.

    Args:
        source: a netCDF file, a glob pattern (``"era5_*.nc"``), a list of files, a
            zarr store (directory) or a GRIB file (needs ``hdm[grib]``).
        variables: names (or one name) of the data variables to keep; default all. A
            name a file lacks is taken from its alias there (CMIP's ``tas`` for ``t2m``:
            :data:`hdm.data.schema.VARIABLE_ALIASES`), renamed to the name asked for.
        chunks: ``"auto"`` (whole horizontal grid, dask-sized time chunks) or a dict
            ``{dim: size}`` in schema names (unnamed dims stay whole).
        time: a ``slice("2019-03-01", "2019-03-07T23")`` of ISO strings or datetimes,
            one string (``"2019-03-02"``: that day), or a list of times.
        region: a :class:`Region`, ``{"lat": (s, n), "lon": (w, e)}`` or
            ``(s, n, w, e)``, degrees, bounds included, in [-180, 180] longitudes.
        level: pressure level(s), hPa. One value drops the ``level`` dimension.
        units: ``{variable: units}`` (UDUNITS/CF strings, e.g. ``{"t2m": "K"}``): those
            variables (by the names asked for) converted to those units, file by file
            and lazily, so that files in K and in °C open together (:mod:`hdm.data.units`).

    Returns:
        a lazy ``xr.Dataset``, dims in the schema (``time``, ``level``, ``lat``,
        ``lon``), lat ascending, lon in [-180, 180) ascending. Nothing is computed.

    Raises:
        FileNotFoundError: a missing file, or a glob without match (named).
        ValueError: not netCDF/zarr/GRIB or truncated (named); non-monotonic or
            duplicated coordinates (coordinate and first bad index named); latitudes
            outside [-90, 90]; mixed units of one variable across files (both files
            named, unless ``units`` converts them); a selection that selects nothing;
            units that cannot be read or converted (:class:`~hdm.data.units.UnitsError`).
        KeyError: a requested variable (nor any alias of it) or level absent (the present
            ones listed), or a variable of ``units`` absent.
        ImportError: a GRIB file without cfgrib (names the extra ``hdm[grib]``).
    """
    paths, label = _expand_sources(source)
    wanted = [variables] if isinstance(variables, str) else variables
    box = Region.coerce(region) if region is not None else None

    raw: list[tuple[Path, xr.Dataset]] = []
    for path in paths:
        raw.append((path, _open_raw(path, detect_format(path))))

    present = sorted({str(v) for _, ds in raw for v in ds.data_vars})
    # the requested names a file may hold under an alias (tas for t2m): VARIABLE_ALIASES
    found = [v for v in wanted or [] if _requested_in(present, v, wanted) is not None]
    for asked, what in ((wanted or [], "variable(s)"), (list(units or {}), "units for")):
        missing = [v for v in asked if v not in present and v not in found]
        if missing:
            raise KeyError(f"{what} {missing} not found in {label}; present: {present}")

    parts: list[tuple[Path, xr.Dataset]] = []
    taken: dict[str, str] = {}
    for path, ds in raw:
        rename: dict[str, str] = {}
        if wanted is not None:
            names = [str(v) for v in ds.data_vars]
            keep = {v: a for v in wanted if (a := _requested_in(names, v, wanted)) is not None}
            if not keep:
                ds.close()
                continue
            rename = {a: v for v, a in keep.items() if a != v}
            ds = ds[list(keep.values())].rename(rename)
            taken.update(rename)
        preferred = _preferred_chunks(ds, _rename_map(ds))
        ds = normalise_conventions(ds, str(path), region=box)
        if rename:  # listed with the conventions, after normalise_conventions sets them
            done = [ds.attrs["hdm_conventions"]] if "hdm_conventions" in ds.attrs else []
            notes = [f"{a} taken as {v}" for a, v in rename.items()]
            ds = ds.assign_attrs(hdm_conventions="; ".join(done + notes))
        ds = _select_time(_select_level(ds, level, str(path)), time)
        if TIME in ds.dims and ds.sizes[TIME] == 0:
            continue
        # Chunk each file before combining: concatenating backend-lazy arrays would
        # load them, dask arrays stay lazy.
        # converted once chunked: arithmetic on the backend's lazy arrays would read them
        parts.append((path, _convert_units(_chunk(ds, chunks, preferred), units or {}, path)))
    if not parts:
        raise ValueError(f"the time selection {time!r} selects no time step of {label}")
    if taken:
        log.info("%s: %s", label, ", ".join(f"{a} taken as {v}" for a, v in taken.items()))

    _check_units(parts)
    ds = _combine(parts)
    ds.attrs["hdm_source"] = label
    return ds
