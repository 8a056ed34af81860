r"""Static input fields (land fraction, orography, latitude) on any regular lat-lon grid.

Downscaling networks see, besides the noisy state, fields that do not change in time:
where the land is and how high it stands. hdm computes them for whatever grid is sampled
(the training grid, or a zero-shot finer one) from a *source* described by a
:class:`StaticSource`, a frozen dataclass that round-trips through a plain dict (it is
stored in checkpoints) and hashes its file (:meth:`StaticSource.sha256`):

======================  ==============================================================
kind                    the field on the cells of the grid
======================  ==============================================================
``natural_earth_land``  land fraction: the share of each cell's area covered by land
                        polygons (a shapefile; default Natural Earth 1:50m land)
``file``                a variable of a netCDF/zarr/GRIB file on a regular lat-lon or a
                        curvilinear (2-D lat/lon) grid, area-averaged onto the cells
                        (:func:`hdm.data.regrid.regrid_to_cells`)
``latitude``            the latitude of each cell centre
======================  ==============================================================

Units (:data:`STATIC_UNITS`): every static is returned in one canonical unit: ``"1"``
(a fraction in [0, 1]), ``"m"`` (a height) or ``"degrees_north"``. A file's ``units``
attribute is converted by a small table: a fraction given in ``%`` is divided by 100; a
height in ``km`` multiplied by 1000; a geopotential Φ (``m**2 s**-2``, ERA5's ``z``)
becomes the height Φ / g₀ with the standard gravity g₀ = 9.80665 m s⁻². Other units, a
missing ``units`` attribute, fractions outside [0, 1] or heights outside
[-1000, 9000] m (a sign of mislabelled units) are refused, with the file and variable
named.

Land fraction from polygons. For a cell C and land polygons L,

    f_C = |C ∩ L| / |C|,

with areas taken in the coordinates (λ, sin φ) (λ in radians): Lambert's cylindrical
equal-area map, where planar area is area on the unit sphere and parallels and meridians
are straight, so the cells are rectangles and shapely's planar areas are the true ones.
(Plain degree² areas would be proportional to the true area within a cell only up to a
relative error of about tan φ · Δφ / 2: 0.3 % for 0.25° cells at 55 °N. The equal-area
coordinates cost one transform and make the fractions exactly additive on the sphere:
the area-weighted mean of the fractions of cells that tile a larger cell is the larger
cell's fraction, to rounding.) Polygon edges are straight between their vertices in
either coordinates, which differ by far less than the 1:50m scale's own accuracy. The
polygons must not overlap (Natural Earth's land layer does not). The polygons are
repeated one turn (360°) west and east, so a grid in [0, 360) longitudes works as well.
Timing on 2 shared CPU cores: a 33 × 49 grid 0.02–0.04 s, a 1° global grid (180 × 360)
1–3 s, after the shapefile is read and prepared once per process (0.3–0.7 s).

Grids: a regular grid is given by its ascending cell centres ``lat``, ``lon``
(degrees, ≥ 2 each); cell edges lie at the midpoints, the outer ones half a spacing out
(:func:`hdm.data.regrid.lat_lon_cell_edges`). Results are cached per (source, grid,
file modification time and size), so a sampler asking for the statics of every member
batch computes them once; callers get a copy.

Shipped sources (:data:`STATIC_SOURCES`; :data:`DEFAULT_STATICS` are the network inputs
of the project's domains): ``land_fraction`` from Natural Earth 1:50m land
(``data/natural_earth``), ``orography`` from the EUR-11 regional model's surface height
``HSURF`` (``data/static``, rotated-pole 0.11°, about 20–74 °N, 48 °W–70 °E), the
EUR-11 land fraction ``FR_LAND`` as ``land_fraction_eur11`` (a reference), and
``latitude``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import shapefile
import shapely
import xarray as xr
from shapely.geometry import shape

from hdm.data.open import open_fields
from hdm.data.regrid import equal_area_y, lat_lon_cell_edges, regrid_to_cells
from hdm.data.schema import LAT, LON, TIME
from hdm.domains.shipped import shipped_path
from hdm.hilbert.grids import Grid, LatLonGrid
from hdm.hilbert.statics import StaticInputs

__all__ = [
    "DEFAULT_STATICS",
    "KINDS",
    "STANDARD_GRAVITY",
    "STATIC_SOURCES",
    "STATIC_UNITS",
    "StaticSource",
    "StaticSourceError",
    "clear_static_cache",
    "land_fraction",
    "static_field",
    "static_inputs",
    "static_source",
    "static_sources",
    "statics_from_record",
    "statics_record",
]

#: the kinds of static source (module doc)
KINDS = ("natural_earth_land", "file", "latitude")

#: g₀, m s⁻²: geopotential / g₀ = geopotential height
STANDARD_GRAVITY = 9.80665

#: spellings of m² s⁻² (geopotential), in lower case without spaces
_GEOPOTENTIAL = ("m**2s**-2", "m2s-2", "m^2s^-2", "m**2/s**2", "m2/s2", "m^2/s^2")

#: canonical units of statics and the file units each accepts, as factors to them
#: (file units compared in lower case without spaces)
STATIC_UNITS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "1": MappingProxyType(
            {"1": 1.0, "": 1.0, "0-1": 1.0, "(0-1)": 1.0, "fraction": 1.0}
            | {"%": 0.01, "percent": 0.01}
        ),
        "m": MappingProxyType(
            {"m": 1.0, "metre": 1.0, "metres": 1.0, "meter": 1.0, "meters": 1.0, "gpm": 1.0}
            | {"km": 1000.0}
            | dict.fromkeys(_GEOPOTENTIAL, 1.0 / STANDARD_GRAVITY)  # height = Φ / g₀
        ),
        "degrees_north": MappingProxyType({}),  # the grid's own latitude, never a file
    }
)

#: plausible range of each canonical unit: values outside mean mislabelled units
_RANGES = {"1": (-1e-6, 1.0 + 1e-6), "m": (-1000.0, 9000.0)}

#: the canonical units of statics known by name
_UNITS_BY_NAME = {"land_fraction": "1", "orography": "m", "latitude": "degrees_north"}

#: a kind's own units, when it has one
_UNITS_BY_KIND = {"natural_earth_land": "1", "latitude": "degrees_north"}

NATURAL_EARTH_LAND_50M = "natural_earth/shapefiles/natural_earth/physical/ne_50m_land.shp"


class StaticSourceError(ValueError):
    """A static source that is not valid: its description, its file, variable or units."""


def _closest(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class StaticSource:
    """Where a static field comes from (module doc).

    Attributes:
        name: the static's name (a network input channel), e.g. ``"land_fraction"``.
        kind: one of :data:`KINDS`.
        path: the file: a shapefile (``natural_earth_land``; default the shipped Natural
            Earth 1:50m land) or a netCDF/zarr/GRIB file (``file``); with ``shipped``
            relative to the shipped data folder (:mod:`hdm.domains.shipped`).
        variable: the file's variable (``file`` only).
        units: the canonical units of the field returned, a key of :data:`STATIC_UNITS`;
            default from the kind, else from a known name (``land_fraction``: ``"1"``,
            ``orography``: ``"m"``).
        shipped: whether ``path`` is relative to the shipped data folder.
    """

    name: str
    kind: str
    path: str | None = None
    variable: str | None = None
    units: str | None = None
    shipped: bool = False

    def __post_init__(self) -> None:
        what = f"static source {self.name!r}"
        if self.kind not in KINDS:
            raise StaticSourceError(
                f"{what}: kind must be one of {list(KINDS)}, got {self.kind!r}"
                + _closest(str(self.kind), KINDS)
            )
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))  # a Path becomes str: dicts
        if self.kind == "natural_earth_land" and self.path is None:
            object.__setattr__(self, "path", NATURAL_EARTH_LAND_50M)
            object.__setattr__(self, "shipped", True)
        units = self.units or _UNITS_BY_KIND.get(self.kind) or _UNITS_BY_NAME.get(self.name)
        if units not in STATIC_UNITS:
            raise StaticSourceError(
                f"{what}: units must be one of {list(STATIC_UNITS)} (the field's canonical "
                f"units), got {units!r}"
            )
        own = _UNITS_BY_KIND.get(self.kind)
        if own is not None and units != own:
            raise StaticSourceError(f"{what}: a {self.kind} static is in {own!r}, not {units!r}")
        if self.kind == "file" and (not self.path or not self.variable or units == "degrees_north"):
            raise StaticSourceError(
                f"{what}: a file static needs a path, a variable and units '1' or 'm' (got "
                f"path={self.path!r}, variable={self.variable!r}, units={units!r})"
            )
        if self.kind != "file" and self.variable is not None:
            raise StaticSourceError(f"{what}: a {self.kind} static takes no variable")
        if self.kind == "latitude" and self.path is not None:
            raise StaticSourceError(f"{what}: a latitude static takes no path")
        object.__setattr__(self, "units", units)

    def resolved_path(self) -> Path | None:
        """The source file, which must exist (None for ``latitude``)."""
        if self.path is None:
            return None
        if self.shipped:
            return shipped_path(self.path, f"the source of the static {self.name!r}")
        path = Path(self.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"static {self.name!r}: no file {path}")
        return path

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (str, None and bool values): :meth:`from_dict` gives self back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StaticSource:
        """The source described by ``d`` (the keys of :meth:`to_dict`)."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in fields]
        if unknown:
            raise StaticSourceError(
                f"unknown static source key(s) {unknown}{_closest(str(unknown[0]), fields)}; "
                f"the keys are {fields}"
            )
        missing = [k for k in ("name", "kind") if k not in d]
        if missing:
            raise StaticSourceError(f"a static source needs {missing}, got {dict(d)}")
        return cls(**d)

    def sha256(self) -> str | None:
        """The sha256 hex digest of the file the field is computed from (for a shapefile,
        its ``.shp``, which holds the geometry); None for ``latitude``."""
        path = self.resolved_path()
        if path is None:
            return None
        # imported here: hdm.hilbert.checkpoints loads torch, which statics do not need
        from hdm.hilbert.checkpoints import file_sha256

        return file_sha256(path)


#: the shipped sources, by name (module doc)
STATIC_SOURCES: Mapping[str, StaticSource] = MappingProxyType(
    {
        "land_fraction": StaticSource(
            "land_fraction", "natural_earth_land", NATURAL_EARTH_LAND_50M, shipped=True
        ),
        "orography": StaticSource(
            "orography", "file", "static/HSURF_regional_model_0.11deg.nc", "HSURF", shipped=True
        ),
        "land_fraction_eur11": StaticSource(
            "land_fraction_eur11",
            "file",
            "static/FR-LAND_regional_model_0.11deg.nc",
            "FR_LAND",
            units="1",
            shipped=True,
        ),
        "latitude": StaticSource("latitude", "latitude"),
    }
)

#: the statics a model of the project's domains takes as inputs, in channel order
DEFAULT_STATICS: tuple[str, ...] = ("land_fraction", "orography", "latitude")


def static_source(name: str) -> StaticSource:
    """The shipped source called ``name`` (:data:`STATIC_SOURCES`)."""
    if name not in STATIC_SOURCES:
        raise StaticSourceError(
            f"unknown static {name!r}{_closest(name, list(STATIC_SOURCES))}; the shipped ones "
            f"are {list(STATIC_SOURCES)}, or describe another with StaticSource"
        )
    return STATIC_SOURCES[name]


# ------------------------------------------------------------------------ land polygons


def _shifted(geoms: np.ndarray, dx: float) -> np.ndarray:
    """Geometries moved by ``dx`` along x."""
    return shapely.transform(geoms, lambda xy: xy + np.array([dx, 0.0]))


@functools.lru_cache(maxsize=4)
def _land_polygons(path: str) -> np.ndarray:
    """The polygons of a shapefile in (λ rad, sin φ), repeated a turn west and east, valid
    and prepared (read once per file and process)."""
    # pyshp logs a missing .dbf EOF byte (Natural Earth's files lack it) at INFO on
    # every read: harmless, and not the user's concern
    logging.getLogger("shapefile").setLevel(logging.WARNING)
    try:
        with shapefile.Reader(path) as reader:
            shapes = [s.__geo_interface__ for s in reader.iterShapes() if s.points]
    except (shapefile.ShapefileException, OSError) as err:
        raise StaticSourceError(f"cannot read {path} as a shapefile: {err}") from None
    geoms = np.array([shape(s) for s in shapes], dtype=object)
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))  # Polygon, MultiPolygon
    if geoms.size == 0 or not polygonal.all():
        raise StaticSourceError(f"{path} holds no polygons, or not only polygons: not land")
    polys = shapely.transform(
        geoms, lambda xy: np.column_stack([np.deg2rad(xy[:, 0]), equal_area_y(xy[:, 1])])
    )
    polys = np.concatenate([_shifted(polys, -2.0 * np.pi), polys, _shifted(polys, 2.0 * np.pi)])
    invalid = ~shapely.is_valid(polys)
    polys[invalid] = shapely.make_valid(polys[invalid])
    shapely.prepare(polys)  # indexed point-in-polygon for the predicates below
    return polys


def land_fraction(
    path: str | Path, lat: np.ndarray | Sequence[float], lon: np.ndarray | Sequence[float]
) -> np.ndarray:
    """(n_lat, n_lon) share of each cell's area covered by the polygons of a shapefile.

    Cells of the regular grid of centres (``lat``, ``lon``, degrees) and the polygons are
    compared in equal-area coordinates (module doc). An STR tree of the cells finds the
    (polygon, cell) pairs that meet; a cell inside a polygon is land without computing an
    intersection (prepared polygons make the test cheap), the others add the areas of
    their intersections, all in vectorised shapely calls.
    """
    lat_e, lon_e = lat_lon_cell_edges(lat, lon)
    x, y = np.deg2rad(lon_e), equal_area_y(lat_e)
    cells = shapely.box(x[None, :-1], y[:-1, None], x[None, 1:], y[1:, None]).ravel()
    area = shapely.area(cells)
    land = _land_polygons(str(path))
    poly, cell = shapely.STRtree(cells).query(land, predicate="intersects")
    inside = shapely.contains_properly(land[poly], cells[cell])
    # float from the start: bincount of no pairs gives int64 zeros (a domain where no cell
    # lies wholly on land: islands, coastal seas, coarse cells), which float areas cannot
    # be added to in place
    covered = np.zeros(cells.size)
    covered += np.bincount(cell[inside], area[cell[inside]], minlength=cells.size)
    edge = ~inside
    pieces = shapely.intersection(cells[cell[edge]], land[poly[edge]])
    covered += np.bincount(cell[edge], shapely.area(pieces), minlength=cells.size)
    # rounding can leave 1 + 1e-16 in a cell cut by many polygons
    return np.clip(covered / area, 0.0, 1.0).reshape(lat_e.size - 1, lon_e.size - 1)


# -------------------------------------------------------------------------- file fields


def _unit_factor(units: Any, canonical: str, label: str) -> float:
    """The factor from a file's ``units`` attribute to the canonical units (module doc)."""
    accepted = STATIC_UNITS[canonical]
    if units is None:
        raise StaticSourceError(
            f"{label} has no units attribute: cannot tell its units (for {canonical!r} it "
            f"may be one of {sorted(accepted)})"
        )
    key = str(units).strip().lower().replace(" ", "")
    if key not in accepted:
        raise StaticSourceError(
            f"{label} is in {units!r}, which cannot be converted to {canonical!r}: the "
            f"accepted units are {sorted(accepted)}"
        )
    return accepted[key]


def _horizontal(da: xr.DataArray, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, lat, lon) of a static variable: one time step (or none), lat/lon as 1-D
    dims (a regular grid) or 2-D coordinates (a curvilinear one), float64."""
    if TIME in da.dims:
        if da.sizes[TIME] != 1:
            raise StaticSourceError(
                f"{label} has {da.sizes[TIME]} time steps: a static field has one"
            )
        da = da.isel({TIME: 0})
    if LAT in da.dims and LON in da.dims:
        grid_dims: tuple = (LAT, LON)
        lat, lon = da[LAT].values, da[LON].values
    elif LAT in da.coords and LON in da.coords and da[LAT].ndim == 2:
        grid_dims = da[LAT].dims
        lat, lon = da[LAT].transpose(*grid_dims).values, da[LON].transpose(*grid_dims).values
    else:
        raise StaticSourceError(
            f"{label} has neither lat/lon dimensions nor 2-D lat/lon coordinates "
            f"(dims {list(da.dims)}, coordinates {list(da.coords)})"
        )
    extra = {d: n for d, n in da.sizes.items() if d not in grid_dims}
    if any(n != 1 for n in extra.values()):
        raise StaticSourceError(f"{label} has dimensions {extra} besides its grid")
    values = da.isel(dict.fromkeys(extra, 0)).transpose(*grid_dims).values
    return tuple(np.asarray(a, dtype=np.float64) for a in (values, lat, lon))


def _file_field(source: StaticSource, path: Path, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A file's variable in canonical units, area-averaged onto the grid's cells."""
    label = f"variable {source.variable!r} of {path}"
    try:
        ds = open_fields(path, source.variable)
    except KeyError as err:  # a missing variable: the message lists the present ones
        raise StaticSourceError(str(err.args[0])) from None
    with ds:
        da = ds[source.variable]
        factor = _unit_factor(da.attrs.get("units"), source.units, label)
        values, src_lat, src_lon = _horizontal(da, label)
    values = values * factor
    lo, hi = _RANGES[source.units]
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < lo or finite.max() > hi):
        raise StaticSourceError(
            f"{label} ranges from {finite.min():g} to {finite.max():g} {source.units} after "
            f"conversion, outside [{lo:g}, {hi:g}]: are its units ({da.attrs['units']!r}) right?"
        )
    return regrid_to_cells(values, src_lat, src_lon, lat, lon, source=label)


# --------------------------------------------------------------------------- the fields


def _compute(source: StaticSource, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The static on the grid, uncached."""
    if source.kind == "latitude":
        return np.repeat(lat[:, None], lon.size, axis=1)
    path = source.resolved_path()
    if source.kind == "natural_earth_land":
        return land_fraction(path, lat, lon)
    return _file_field(source, path, lat, lon)


@functools.lru_cache(maxsize=32)
def _cached(
    source: StaticSource, lat: tuple[float, ...], lon: tuple[float, ...], stamp: tuple
) -> np.ndarray:
    """:func:`_compute`, once per (source, grid, file stamp); the stamp only keys it."""
    field = _compute(source, np.asarray(lat), np.asarray(lon))
    field.setflags(write=False)  # the cached copy; callers get their own
    return field


def _stamp(source: StaticSource) -> tuple:
    """(modification time ns, size) of the source file, so an edited file is reread."""
    path = source.resolved_path()
    if path is None:
        return ()
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


def static_field(
    source: StaticSource | str,
    lat: np.ndarray | Sequence[float],
    lon: np.ndarray | Sequence[float],
) -> np.ndarray:
    """A static on the cells of a regular grid, in its canonical units (module doc).

    Args:
        source: a :class:`StaticSource`, or the name of a shipped one
            (:data:`STATIC_SOURCES`).
        lat, lon: the grid's ascending cell centres, degrees (≥ 2 each).

    Returns:
        (n_lat, n_lon) float64 in ``source.units``: a land fraction in [0, 1], a height
        in m or a latitude in degrees_north. Cached per (source, grid); a fresh copy.

    Raises:
        StaticSourceError: a file that cannot give the field (variable, units, dims).
        CoverageError: a grid the file does not cover, or NaN in it inside the grid
            (source, variable and both extents named); both are ValueErrors.
        FileNotFoundError: a missing source file.
    """
    if isinstance(source, str):
        source = static_source(source)
    lat_lon_cell_edges(lat, lon)  # checks the grid before any file is read
    lat = np.asarray(lat, dtype=np.float64)
    if lat[0] < -90.0 or lat[-1] > 90.0:
        raise ValueError(f"grid lat must lie within [-90, 90], got {lat[0]:g} to {lat[-1]:g}")
    key = (tuple(lat.tolist()), tuple(np.asarray(lon, dtype=np.float64).tolist()))
    return _cached(source, *key, _stamp(source)).copy()


def clear_static_cache() -> None:
    """Forget the cached statics and shapefiles (they are recomputed on the next call)."""
    _cached.cache_clear()
    _land_polygons.cache_clear()


# ------------------------------------------------------------- network static inputs


def static_sources(entries: Sequence[str | Mapping[str, Any] | StaticSource]) -> list[StaticSource]:
    """The sources a config names: shipped names (:data:`STATIC_SOURCES`), dicts of
    :class:`StaticSource` keys, or sources; names must be unique (one channel each)."""
    sources = [
        e
        if isinstance(e, StaticSource)
        else static_source(e)
        if isinstance(e, str)
        else StaticSource.from_dict(e)
        for e in entries
    ]
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StaticSourceError(f"static input(s) {repeated} named more than once")
    return sources


def static_inputs(
    sources: Sequence[StaticSource],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> StaticInputs:
    """The network's static inputs from ``sources``, on whatever lat-lon grid it is
    evaluated (:func:`static_field` on the grid's centres, channel order = ``sources``);
    ``mean``/``std``: the normalisation fitted at training (None: fit on the first grid)."""
    sources = tuple(sources)

    def provider(grid: Grid) -> np.ndarray:
        if not isinstance(grid, LatLonGrid):
            raise StaticSourceError(
                f"static inputs {[s.name for s in sources]} need a lat-lon grid, got "
                f"{grid.describe()}"
            )
        lat, lon = grid.coords()
        return np.stack([static_field(s, lat, lon) for s in sources])

    return StaticInputs([s.name for s in sources], provider, mean, std)


def statics_record(sources: Sequence[StaticSource], inputs: StaticInputs) -> dict[str, Any]:
    """What a checkpoint stores of its static inputs: names, sources (dicts), the sha256
    of each source file and the normalisation fitted on the training grid."""
    return {
        **inputs.to_dict(),
        "sources": [s.to_dict() for s in sources],
        "sha256": [s.sha256() for s in sources],
    }


def statics_from_record(record: Mapping[str, Any], model: str) -> StaticInputs:
    """The static inputs of a model from its checkpoint's record (:func:`statics_record`).

    Each source file must be the one the model was trained with: a missing file, or one
    whose sha256 differs, is an error naming the static, the file and the model (the
    network learnt that field; another one would give plausible-looking wrong members).
    """
    sources = [StaticSource.from_dict(d) for d in record["sources"]]
    for source, expected in zip(sources, record.get("sha256") or [None] * len(sources)):
        try:
            digest = source.sha256()
        except FileNotFoundError as err:
            raise StaticSourceError(
                f"the model {model} takes the static input {source.name!r} from "
                f"{source.path}, which is not here ({err})"
            ) from None
        if expected is not None and digest != expected:
            raise StaticSourceError(
                f"the model {model} was trained with static input {source.name!r} from "
                f"{source.resolved_path()} with sha256 {expected[:12]}…, but that file is "
                f"now {digest[:12]}…: restore it, or retrain"
            )
    return static_inputs(sources, record["mean"], record["std"])
