"""The data schema of hdm: dimension and coordinate names, units, mock datasets.

Every gridded dataset inside hdm (after :func:`hdm.data.open.open_fields`) follows one
schema, so the rest of the package addresses dimensions by these names only:

=========  ==========================================================================
name       meaning
=========  ==========================================================================
``time``   valid time, ``datetime64[ns]``, strictly increasing (UTC)
``level``  pressure level, hPa, ascending (only for fields on pressure levels)
``lat``    latitude, degrees_north, strictly ascending, within [-90, 90]
``lon``    longitude, degrees_east, strictly ascending, within [-180, 180)
``member`` ensemble member, integer 0, 1, ..., N-1 (generated ensembles)
``sample`` sample index, for draws that are not tied to a time
``x``      the coordinate of 1-D functional data (see :mod:`hdm.domains.functional`)
=========  ==========================================================================

Data variables are laid out as ``([member,] [sample|time,] [level,] lat, lon)``
(:data:`DIM_ORDER`). Physical units live in the ``units`` attribute of each variable,
written as in the source (UDUNITS strings such as ``"K"``, ``"m s**-1"``,
``"kg kg**-1"``); :mod:`hdm.data.units` reads, compares and converts them (pint).
Values are converted only when asked: ``open_fields(..., units={"t2m": "K"})``, and
the inputs of a downscaling run into the model's units.

Area weights. On a regular latitude–longitude grid the area of a cell is proportional
to cos(lat) (the cell width in degrees being constant), so area-weighted means are

    ⟨u⟩ = Σ_ij cos(φ_i) u_ij / Σ_ij cos(φ_i).

:func:`lat_weights` returns these weights (a 1-D array on ``lat``); for a coarse-grained
dataset it returns the block-mean weights stored by :func:`hdm.data.coarsen.coarse_grain`
in the coordinate ``lat_weight``, so that area-weighted means are preserved exactly by
coarse-graining.

:func:`mock_fields` builds a small seeded synthetic dataset in this schema for tests and
examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "ALIASES",
    "DIM_ORDER",
    "KNOWN_VARIABLES",
    "LAT",
    "LAT_WEIGHT",
    "LEVEL",
    "LON",
    "MEMBER",
    "SAMPLE",
    "TIME",
    "VARIABLE_ALIASES",
    "VariableInfo",
    "X",
    "lat_weights",
    "mock_fields",
    "variable_in",
]

TIME = "time"
LAT = "lat"
LON = "lon"
LEVEL = "level"
MEMBER = "member"
SAMPLE = "sample"
X = "x"

#: coordinate along ``lat`` holding the area weights of coarse-grained cells
LAT_WEIGHT = "lat_weight"

#: the canonical order of dimensions of a data variable (absent ones are skipped)
DIM_ORDER: tuple[str, ...] = (MEMBER, SAMPLE, TIME, LEVEL, LAT, LON, X)

#: names found in files, by schema name, in order of preference (the first one that is a
#: dimension wins; see :func:`hdm.data.open.normalise_conventions`)
ALIASES: Mapping[str, tuple[str, ...]] = {
    TIME: ("time", "valid_time"),
    LAT: ("lat", "latitude", "nav_lat"),
    LON: ("lon", "longitude", "nav_lon"),
    LEVEL: ("level", "pressure_level", "isobaricInhPa", "plev"),
    MEMBER: ("member", "number", "realization"),
}


@dataclass(frozen=True)
class VariableInfo:
    """CF metadata of a variable hdm knows by name (ERA5 short names)."""

    long_name: str
    units: str
    standard_name: str | None = None


#: ERA5 short names and their CF metadata (used to fill missing attributes on writing)
KNOWN_VARIABLES: Mapping[str, VariableInfo] = {
    "t2m": VariableInfo("2 metre temperature", "K", "air_temperature"),
    "d2m": VariableInfo("2 metre dewpoint temperature", "K", "dew_point_temperature"),
    "t": VariableInfo("Temperature", "K", "air_temperature"),
    "u10": VariableInfo("10 metre U wind component", "m s**-1", "eastward_wind"),
    "v10": VariableInfo("10 metre V wind component", "m s**-1", "northward_wind"),
    "u": VariableInfo("U component of wind", "m s**-1", "eastward_wind"),
    "v": VariableInfo("V component of wind", "m s**-1", "northward_wind"),
    "q": VariableInfo("Specific humidity", "kg kg**-1", "specific_humidity"),
    "z": VariableInfo("Geopotential", "m**2 s**-2", "geopotential"),
    "sp": VariableInfo("Surface pressure", "Pa", "surface_air_pressure"),
    "msl": VariableInfo("Mean sea level pressure", "Pa", "air_pressure_at_mean_sea_level"),
    "tp": VariableInfo("Total precipitation", "m", "lwe_thickness_of_precipitation_amount"),
    "tcw": VariableInfo("Total column water", "kg m**-2", None),
    "e": VariableInfo(
        "Evaporation", "m of water equivalent", "lwe_thickness_of_water_evaporation_amount"
    ),
}

#: other names of the variables above in files (CMIP6 table names, GRIB short names), in
#: order of preference; only names of the same quantity in convertible units: CMIP's
#: ``zg`` (geopotential height, m) is not ERA5's ``z`` (m² s⁻²), ``pr`` (a rate) not ``tp``
VARIABLE_ALIASES: Mapping[str, tuple[str, ...]] = {
    "t2m": ("tas", "2t"),
    "d2m": ("2d",),
    "t": ("ta",),
    "u10": ("uas", "10u"),
    "v10": ("vas", "10v"),
    "u": ("ua",),
    "v": ("va",),
    "q": ("hus",),
    "sp": ("ps",),
    "msl": ("psl",),
}


def variable_in(names: Iterable[str], variable: str) -> str | None:
    """The name under which ``variable`` (an ERA5 short name) appears among ``names``:
    itself, else its first alias present (:data:`VARIABLE_ALIASES`); None if neither."""
    present = set(names)
    if variable in present:
        return variable
    return next((a for a in VARIABLE_ALIASES.get(variable, ()) if a in present), None)


#: CF attributes of the schema's coordinates
COORD_ATTRS: Mapping[str, Mapping[str, str]] = {
    LAT: {
        "units": "degrees_north",
        "standard_name": "latitude",
        "long_name": "latitude",
        "axis": "Y",
    },
    LON: {
        "units": "degrees_east",
        "standard_name": "longitude",
        "long_name": "longitude",
        "axis": "X",
    },
    TIME: {"standard_name": "time", "long_name": "time", "axis": "T"},
    LEVEL: {
        "units": "hPa",
        "standard_name": "air_pressure",
        "long_name": "pressure level",
        "positive": "down",
        "axis": "Z",
    },
    MEMBER: {"standard_name": "realization", "long_name": "ensemble member", "units": "1"},
    SAMPLE: {"long_name": "sample index", "units": "1"},
}


def lat_weights(obj: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Area weights on ``lat``, a 1-D float64 DataArray (not normalised).

    ``obj[LAT_WEIGHT]`` when present (coarse-grained grids, see
    :func:`hdm.data.coarsen.coarse_grain`), else cos(lat). Raises ``KeyError`` if there
    is no ``lat`` coordinate.
    """
    if LAT not in obj.coords:
        raise KeyError(f"no {LAT!r} coordinate to weight by; coordinates: {list(obj.coords)}")
    if LAT_WEIGHT in obj.coords:
        return obj[LAT_WEIGHT].astype(np.float64).reset_coords(drop=True)
    lat = obj[LAT].reset_coords(drop=True)
    return np.cos(np.deg2rad(lat.astype(np.float64))).clip(min=0.0).rename(LAT_WEIGHT)


def _mock_values(
    name: str, rng: np.random.Generator, shape: tuple[int, ...], lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
    """A smooth large-scale pattern plus unit white noise, in plausible physical units."""
    phi = np.deg2rad(lat)[:, None]
    lam = np.deg2rad(lon)[None, :]
    pattern = np.cos(phi) * np.cos(2 * lam) + 0.5 * np.sin(2 * phi) * np.sin(lam)
    noise = rng.standard_normal(shape)
    if name in ("t2m", "t", "d2m"):
        return 250.0 + 40.0 * np.cos(phi) ** 2 + 3.0 * pattern + 2.0 * noise
    if name in ("sp", "msl"):
        return 101_000.0 + 800.0 * pattern + 300.0 * noise
    return 5.0 * pattern + noise


def mock_fields(
    variables: Sequence[str] = ("t2m",),
    *,
    n_time: int = 4,
    n_lat: int = 9,
    n_lon: int = 16,
    lat: tuple[float, float] = (-80.0, 80.0),
    lon: tuple[float, float] = (-180.0, 180.0),
    levels: Sequence[float] | None = None,
    level_variables: Sequence[str] | None = None,
    n_member: int | None = None,
    start: str = "2020-01-01",
    freq: str = "6h",
    seed: int = 0,
    dtype: str = "float32",
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """A small synthetic dataset in the hdm schema, reproducible from ``seed``.

    Args:
        variables: data variable names; ERA5 short names (``t2m``, ``u10``, ``q``, ...)
            get their CF metadata from :data:`KNOWN_VARIABLES` and plausible values
            (t2m ≈ 250–290 K), others are dimensionless, mean ≈ 0, std ≈ 1.
        n_time, n_lat, n_lon: sizes. ``time`` starts at ``start`` with step ``freq``.
        lat: first and last latitude (both included), ascending.
        lon: longitude range; a 360° range is periodic (``n_lon`` points from
            ``lon[0]``, the end excluded), otherwise both ends are included.
        levels: pressure levels in hPa (ascending); the variables in
            ``level_variables`` (default: all) get a ``level`` dimension.
        n_member: if given, a leading ``member`` dimension of that size.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same data.
        dtype: dtype of the data variables.
        chunks: if given, the result is dask-backed with these chunks.

    Returns:
        an ``xr.Dataset`` with dims ``([member,] time, [level,] lat, lon)``.
    """
    if n_lat < 2 or n_lon < 2 or n_time < 1:
        raise ValueError(
            f"mock_fields needs n_lat, n_lon >= 2 and n_time >= 1, got {n_lat}, {n_lon}, {n_time}"
        )
    rng = np.random.default_rng(seed)
    lat_c = np.linspace(lat[0], lat[1], n_lat)
    if np.isclose(lon[1] - lon[0], 360.0):
        lon_c = lon[0] + np.arange(n_lon) * (360.0 / n_lon)
    else:
        lon_c = np.linspace(lon[0], lon[1], n_lon)
    coords: dict[str, object] = {
        TIME: pd.date_range(start, periods=n_time, freq=freq),
        LAT: (LAT, lat_c, dict(COORD_ATTRS[LAT])),
        LON: (LON, lon_c, dict(COORD_ATTRS[LON])),
    }
    lead: tuple[str, ...] = (TIME,)
    lead_shape: tuple[int, ...] = (n_time,)
    if n_member is not None:
        coords[MEMBER] = (MEMBER, np.arange(n_member), dict(COORD_ATTRS[MEMBER]))
        lead, lead_shape = (MEMBER, *lead), (n_member, *lead_shape)
    if levels is not None:
        coords[LEVEL] = (LEVEL, np.asarray(levels, dtype=np.float64), dict(COORD_ATTRS[LEVEL]))
    with_level = set(variables if level_variables is None else level_variables)
    data_vars = {}
    for name in variables:
        dims, shape = lead, lead_shape
        if levels is not None and name in with_level:
            dims, shape = (*dims, LEVEL), (*shape, len(levels))
        dims, shape = (*dims, LAT, LON), (*shape, n_lat, n_lon)
        info = KNOWN_VARIABLES.get(name, VariableInfo(f"synthetic field {name}", "1"))
        attrs = {"units": info.units, "long_name": info.long_name}
        if info.standard_name:
            attrs["standard_name"] = info.standard_name
        values = _mock_values(name, rng, shape, lat_c, lon_c).astype(dtype)
        data_vars[name] = (dims, values, attrs)
    ds = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={"title": "hdm mock fields", "source": f"hdm.data.schema.mock_fields(seed={seed})"},
    )
    return ds.chunk(dict(chunks)) if chunks is not None else ds
