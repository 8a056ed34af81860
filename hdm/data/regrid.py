r"""Regridding: interpolation of coarse fields, field values at points (stations), and
area means over the cells of a grid.

Interpolation (:func:`interpolate_coarse`)
------------------------------------------
Tensor-product spline interpolation of a coarse (..., lat, lon) field at the target
grid's coordinates: ``"bilinear"`` (degree 1) or ``"bicubic"`` (degree 3, not-a-knot
end conditions: the interpolating cubic spline), applied as one 1-D interpolating spline
along ``lat`` and then one along ``lon`` (``scipy.interpolate.make_interp_spline``),
which on a rectilinear grid is the same as the 2-D tensor-product interpolant.

*Edges.* The coarse cell centres do not reach the fine grid's edge rows and columns
(half a coarse cell minus half a fine cell outside them). Bilinear continues its end
pieces (linear extrapolation: linear functions a + bφ + cλ are reproduced exactly
everywhere). Bicubic is the interpolating cubic spline inside the centres' span and
holds the edge value beyond it (``scipy.interpolate.RectBivariateSpline``'s convention),
its standard form and the strongest of the three on the UK t2m training period
(2019-03-01..24 every 6 h, RMSE in K at ×2 / ×4 / ×8: held 0.244 / 0.527 / 0.795, end
tangent continued 0.338 / 0.606 / 0.939, end cubic continued 0.472 / 0.714 / 1.154;
bilinear 0.292 / 0.561 / 0.814, with its edge held 0.290 / 0.555 / 0.827).
A coarse field whose longitudes cover the whole circle (:func:`longitude_period`: a
global field) is interpolated periodically in longitude — its columns are continued
round the circle before the spline is made, so the date line is an ordinary meridian —
and beyond its outermost latitude centres (the polar caps) ``edges`` applies as above:
bilinear on the sphere in its usual form (bilinear in (lat, lon), periodic in lon).
A regional field's longitude is not treated as periodic.

Values at points (:func:`values_at_points`)
-------------------------------------------
A (..., lat, lon) field sampled at station coordinates by bilinear interpolation in
(lat, lon) degrees with the one stencil of hdm (:func:`hdm.hilbert.grids.multilinear_stencil`,
shared with the station observation operator): corners with zero weight do not
contribute (a NaN there does not spread to a station on a node or an edge); a grid that
spans 360° of longitude wraps around; a station outside the grid is an error naming it.
Only the grid points next to the stations are read, so a dask-backed field is not
loaded whole.

Area means over cells (:func:`regrid_to_cells`)
-----------------------------------------------
A source field on a regular (1-D ``lat``, ``lon``) or curvilinear (2-D ``lat``, ``lon``,
e.g. a rotated-pole grid) grid onto the *cells* of a regular target grid given by its
ascending centres (:func:`cell_edges`: edges at the midpoints, the outer edges half a
spacing out, latitudes clipped to ±90°). Each target cell C gets the area-weighted mean
of the source points whose centres fall in it,

    u_C = Σ_{p ∈ C} a_p u_p / Σ_{p ∈ C} a_p,

a_p the area of source cell p. Each source cell counts in exactly one target cell, so
this is first-order conservative up to the source cells that straddle a target edge
(exact when the target cells are unions of source cells: the same grid gives the source
back, an aligned integer coarsening gives its area-weighted block means, as
:func:`hdm.data.coarsen.coarse_grain`). A target cell that holds no source centre, or is
smaller than half the mean area of the source cells centred in it (a target finer than
the source, where one source centre would stand for a whole cell from its corner), gets
the source interpolated linearly in (lat, lon) at its centre instead: bilinear on a
regular source, on the Delaunay triangles of the source points on a curvilinear one;
between the outermost source centres and the source's edge, the nearest value is held.
(On EUR-11's 0.11° points, 0.25° cells hold 2 or more (3 on average), all bin means; at
0.125° about a third of the cells hold none; at 0.0625° every cell is interpolated.)

Areas are computed in the coordinates (λ, sin φ) (radians): Lambert's cylindrical
equal-area map, in which planar area *is* area on the unit sphere and parallels and
meridians are straight, so a regular grid cell is the rectangle
[λ_w, λ_e] × [sin φ_s, sin φ_n] of area Δλ (sin φ_n − sin φ_s) ∝ cos φ (for cells of
one latitude spacing). Curvilinear source cells are the quadrilaterals of their corners
(the means of the four surrounding centres, extended half a step at the border).

Coverage: the target's outer cell edges must lie inside the source's (its outline, for
a curvilinear grid: the ring of its outer cell corners), and the source must be finite
near the target (the target's box plus two source spacings); otherwise
:class:`CoverageError` names the source, its extent and the grid's. A regular source
that spans 360° of longitude wraps around; the longitudes of a regional source are
taken in whichever 360° turn lies nearest the grid.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
import xarray as xr
from scipy.interpolate import (
    LinearNDInterpolator,
    NearestNDInterpolator,
    RegularGridInterpolator,
    make_interp_spline,
)
from scipy.spatial import Delaunay

from hdm.data.schema import LAT, LAT_WEIGHT, LON
from hdm.hilbert.grids import multilinear_stencil

__all__ = [
    "STATION",
    "CoverageError",
    "cell_edges",
    "check_ascending",
    "equal_area_y",
    "fine_coords",
    "interpolate_coarse",
    "lat_lon_cell_edges",
    "longitude_period",
    "regrid_to_cells",
    "spline_resample",
    "values_at_points",
]

#: dimension of values at stations
STATION = "station"

#: spline degree and edge treatment of each method (module doc)
_METHODS = {"bilinear": (1, "extrapolate"), "bicubic": (3, "hold")}
_EDGES = ("extrapolate", "hold", "linear")


def check_ascending(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    """``values`` as a float64 array, which must be finite, 1-D and strictly ascending."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or np.any(np.diff(arr) <= 0) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite, strictly ascending 1-D array")
    return arr


def _target_coords(
    target: xr.DataArray | xr.Dataset | tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(target, xr.DataArray | xr.Dataset):
        missing = [c for c in (LAT, LON) if c not in target.coords]
        if missing:
            raise ValueError(f"the target has no {missing} coordinate(s)")
        return check_ascending(target[LAT].values, "target lat"), check_ascending(
            target[LON].values, "target lon"
        )
    lat, lon = target
    return check_ascending(lat, "target lat"), check_ascending(lon, "target lon")


def _spline_axis(
    src: np.ndarray, values: np.ndarray, dst: np.ndarray, degree: int, axis: int, edges: str
) -> np.ndarray:
    """The interpolating spline of ``values`` (nodes ``src`` along ``axis``) at ``dst``;
    outside [src_0, src_−1]: the end piece continued (``"extrapolate"``), the end value
    held (``"hold"``) or the end tangent continued (``"linear"``)."""
    spline = make_interp_spline(src, values, k=degree, axis=axis)
    if edges == "extrapolate":
        return spline(dst, extrapolate=True)
    inside = spline(np.clip(dst, src[0], src[-1]))
    if edges == "hold":
        return inside
    slope = spline.derivative()
    below, above = np.minimum(dst - src[0], 0.0), np.maximum(dst - src[-1], 0.0)
    shape = [1] * inside.ndim
    shape[axis] = dst.size
    return (
        inside
        + np.expand_dims(slope(src[0]), axis) * below.reshape(shape)
        + np.expand_dims(slope(src[-1]), axis) * above.reshape(shape)
    )


def spline_resample(
    values: np.ndarray,
    src_lat: np.ndarray,
    src_lon: np.ndarray,
    dst_lat: np.ndarray,
    dst_lon: np.ndarray,
    degree: int,
    edges: str = "extrapolate",
) -> np.ndarray:
    """Interpolating splines of ``degree`` along the last two axes (lat, lon); outside the
    source nodes as ``edges`` says (see :func:`_spline_axis`)."""
    for name, src in ((LAT, src_lat), (LON, src_lon)):
        if src.size < degree + 1:
            raise ValueError(
                f"degree-{degree} interpolation needs at least {degree + 1} coarse {name} "
                f"values, got {src.size}"
            )
    along_lat = _spline_axis(src_lat, values, dst_lat, degree, -2, edges)
    if longitude_period(src_lon) is not None:
        src_lon, along_lat, dst_lon = _wrapped_longitudes(src_lon, along_lat, dst_lon, degree)
    return _spline_axis(src_lon, along_lat, dst_lon, degree, -1, edges)


def _wrapped_longitudes(
    src_lon: np.ndarray, values: np.ndarray, dst_lon: np.ndarray, degree: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A global field's columns continued round the circle: ``degree + 1`` columns from
    each end copied beyond the other (shifted by ±360°), and the target longitudes
    brought into [first source − 360° … ] so that every one of them lies between two
    source columns; the spline of the padded row is the periodic interpolant up to the
    not-a-knot ends, which lie ``degree + 1`` columns away from any target point."""
    pad = min(degree + 1, src_lon.size)
    lon = np.concatenate([src_lon[-pad:] - 360.0, src_lon, src_lon[:pad] + 360.0])
    padded = np.concatenate([values[..., -pad:], values, values[..., :pad]], axis=-1)
    first = src_lon[0] - (360.0 - (src_lon[-1] - src_lon[0])) / 2  # half a gap before
    return lon, padded, first + np.mod(dst_lon - first, 360.0)


def interpolate_coarse(
    coarse: xr.DataArray,
    target: xr.DataArray | xr.Dataset | tuple[np.ndarray, np.ndarray],
    method: str = "bilinear",
    edges: str | None = None,
) -> xr.DataArray:
    """Interpolate a coarse (..., lat, lon) field onto the target grid (module doc).

    Args:
        coarse: a DataArray with ``lat``/``lon`` dims and ascending coordinates, no NaN.
        target: an object with ``lat``/``lon`` coordinates, or a pair (lat, lon) of
            ascending 1-D arrays (degrees).
        method: ``"bilinear"`` or ``"bicubic"`` (≥ 4 coarse points per axis).
        edges: beyond the outermost coarse centres, ``"hold"`` the edge value,
            continue the end tangent (``"linear"``) or the end piece (``"extrapolate"``);
            default: the method's standard form (module doc).

    Returns:
        (..., lat, lon) on the target coordinates; leading dims, their coordinates, the
        name and attributes of ``coarse`` are kept (``interpolation`` attr added).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    degree, standard = _METHODS[method]
    edges = standard if edges is None else edges
    if edges not in _EDGES:
        raise ValueError(f"edges must be one of {list(_EDGES)}, got {edges!r}")
    if not isinstance(coarse, xr.DataArray):
        raise TypeError(f"coarse must be an xarray.DataArray, got {type(coarse).__name__}")
    missing = [d for d in (LAT, LON) if d not in coarse.dims]
    if missing:
        raise ValueError(f"coarse needs dims {LAT!r} and {LON!r}; missing {missing}")
    dst_lat, dst_lon = _target_coords(target)
    src_lat = check_ascending(coarse[LAT].values, "coarse lat")
    src_lon = check_ascending(coarse[LON].values, "coarse lon")
    lead = [d for d in coarse.dims if d not in (LAT, LON)]
    values = coarse.transpose(*lead, LAT, LON).values.astype(np.float64)
    n_bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if n_bad:
        raise ValueError(f"coarse contains {n_bad} non-finite value(s); interpolation needs none")
    out = spline_resample(values, src_lat, src_lon, dst_lat, dst_lon, degree, edges)
    coords = fine_coords(coarse, dst_lat, dst_lon)
    dtype = coarse.dtype if coarse.dtype.kind == "f" else np.float64
    return xr.DataArray(
        out.astype(dtype),
        dims=(*lead, LAT, LON),
        coords=coords,
        name=coarse.name,
        attrs={**coarse.attrs, "interpolation": f"{method} spline, edges: {edges}"},
    )


def fine_coords(coarse: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> dict:
    """The coordinates of a field made from ``coarse`` on the grid (lat, lon): the coarse
    field's leading coordinates (none that lies along lat or lon) and the new axes."""
    coords: dict[Hashable, object] = {
        name: c
        for name, c in coarse.coords.items()
        if name not in (LAT, LON, LAT_WEIGHT) and not ({LAT, LON} & set(c.dims))
    }
    coords[LAT] = (LAT, lat, dict(coarse[LAT].attrs))
    coords[LON] = (LON, lon, dict(coarse[LON].attrs))
    return coords


def longitude_period(lon: np.ndarray) -> float | None:
    """360 when the regular longitudes ``lon`` cover the whole circle (the point after the
    last one is the first one again), else None."""
    lon = np.asarray(lon, dtype=np.float64)
    if lon.size < 2:
        return None
    step = lon[-1] - lon[-2]
    return 360.0 if abs(lon[-1] + step - lon[0] - 360.0) < 1e-6 * max(step, 1.0) else None


def values_at_points(
    field: xr.DataArray,
    lat: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    station: Sequence[Hashable] | np.ndarray | None = None,
) -> xr.DataArray:
    """Bilinear samples of a (..., lat, lon) field at stations: (..., station).

    The field's lat and lon must be ascending. The result carries ``station_lat`` /
    ``station_lon`` coordinates and, when ``station`` (names or ids) is given, a
    ``station`` coordinate; the field's name and attributes are kept.

    Raises:
        ValueError: a station outside the grid (named, see
            :func:`~hdm.hilbert.grids.multilinear_stencil`) or a field without lat/lon.
    """
    if not isinstance(field, xr.DataArray):
        raise TypeError(f"field must be an xarray.DataArray, got {type(field).__name__}")
    missing = [d for d in (LAT, LON) if d not in field.dims]
    if missing:
        raise ValueError(f"field needs dims {LAT!r} and {LON!r}; missing {missing}")
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError(
            f"station lat and lon must be 1-D of one length, got {lat.shape}, {lon.shape}"
        )
    ids = [str(s) for s in station] if station is not None else None
    grid_lat, grid_lon = field[LAT].values, field[LON].values
    index, weight = multilinear_stencil(
        (grid_lat, grid_lon),
        np.stack([lat, lon], axis=1),
        periods=(None, longitude_period(grid_lon)),
        names=(LAT, LON),
        ids=ids,
    )
    n_lon = grid_lon.size
    point = "_corner"
    corners = field.isel(
        {
            LAT: xr.DataArray(index.ravel() // n_lon, dims=point),
            LON: xr.DataArray(index.ravel() % n_lon, dims=point),
        }
    )
    lead = [d for d in field.dims if d not in (LAT, LON)]
    values = np.asarray(corners.transpose(*lead, point).values, dtype=np.float64)
    values = values.reshape(*values.shape[:-1], len(lat), 4)
    sampled = np.sum(np.where(weight > 0, values * weight, 0.0), axis=-1)
    coords = {d: field[d] for d in lead if d in field.coords}
    coords["station_lat"] = (STATION, lat)
    coords["station_lon"] = (STATION, lon)
    if station is not None:
        coords[STATION] = (STATION, np.asarray(station))
    return xr.DataArray(
        sampled, dims=(*lead, STATION), coords=coords, name=field.name, attrs=dict(field.attrs)
    )


# ------------------------------------------------------------ area means over cells


class CoverageError(ValueError):
    """A source field that does not cover a target grid, or is not finite inside it."""


def cell_edges(centres: np.ndarray | Sequence[float], name: str = "centres") -> np.ndarray:
    """(n + 1,) edges of the cells of ascending ``centres`` (n ≥ 2): the midpoints between
    neighbours, and the outer edges half the outer spacing beyond the outer centres."""
    c = check_ascending(centres, name)
    if c.size < 2:
        raise ValueError(f"{name} needs at least 2 values to define cells, got {c.size}")
    first, last = c[0] - (c[1] - c[0]) / 2, c[-1] + (c[-1] - c[-2]) / 2
    return np.concatenate([[first], (c[:-1] + c[1:]) / 2, [last]])


def lat_lon_cell_edges(
    lat: np.ndarray | Sequence[float], lon: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges (degrees) of the regular grid of centres (lat, lon); latitude edges
    clipped to [-90, 90] (a centre on a pole has a half cell)."""
    return np.clip(cell_edges(lat, "grid lat"), -90.0, 90.0), cell_edges(lon, "grid lon")


def equal_area_y(lat: np.ndarray) -> np.ndarray:
    """sin φ of latitudes φ in degrees: with λ in radians, (λ, sin φ) is Lambert's
    cylindrical equal-area map, where planar area is area on the unit sphere (sr)."""
    return np.sin(np.deg2rad(lat))


@dataclass(frozen=True)
class _Points:
    """Finite source points near the target grid, longitudes in the grid's 360° turn:
    positions (degrees), values, areas a_p (sr), and the linear interpolant of the values
    at (lat, lon) arrays (the nearest value held outside the source centres)."""

    lat: np.ndarray
    lon: np.ndarray
    values: np.ndarray
    area: np.ndarray
    interpolate: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _near(centres: np.ndarray, lo: float, hi: float, margin: int = 2) -> slice:
    """Indices of the ascending ``centres`` within [lo, hi], and ``margin`` more each side."""
    start = max(int(np.searchsorted(centres, lo)) - margin, 0)
    stop = min(int(np.searchsorted(centres, hi, side="right")) + margin, centres.size)
    return slice(start, stop)


def _turn(source_mid: float, grid_mid: float) -> float:
    """The multiple of 360° that brings a source's middle longitude nearest the grid's."""
    return 360.0 * np.round((grid_mid - source_mid) / 360.0)


def _not_covered(
    source: str, bounds: Sequence[float], lat_e: np.ndarray, lon_e: np.ndarray, note: str = ""
) -> CoverageError:
    """The error for a grid outside the source; ``bounds`` = (west, south, east, north)."""
    w, s, e, n = bounds
    return CoverageError(
        f"{source} does not cover the grid: the source spans lat {s:.3f} to {n:.3f}, lon "
        f"{w:.3f} to {e:.3f}; the grid's cells span lat {lat_e[0]:.3f} to {lat_e[-1]:.3f}, "
        f"lon {lon_e[0]:.3f} to {lon_e[-1]:.3f}{note}"
    )


def _check_finite(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise CoverageError(
            f"{source} has {int(bad.sum())} non-finite value(s) inside the grid's area (the "
            f"first at lat {lat.flat[i]:.3f}, lon {lon.flat[i]:.3f}): a field regridded onto "
            "the grid must be defined everywhere on it"
        )


def _regular_points(
    values: np.ndarray,
    src_lat: np.ndarray,
    src_lon: np.ndarray,
    lat_e: np.ndarray,
    lon_e: np.ndarray,
    source: str,
) -> _Points:
    """The points of a regular source near the grid (module doc); a source spanning 360°
    of longitude is tiled three times around the grid."""
    src_lat, src_lon = (
        check_ascending(src_lat, f"{source} lat"),
        check_ascending(src_lon, f"{source} lon"),
    )
    if values.shape != (src_lat.size, src_lon.size):
        raise ValueError(
            f"{source}: values of shape {values.shape} do not match its lat ({src_lat.size}) "
            f"and lon ({src_lon.size})"
        )
    lat_se = np.clip(cell_edges(src_lat, f"{source} lat"), -90.0, 90.0)
    grid_mid = (lon_e[0] + lon_e[-1]) / 2
    src_lon = src_lon + _turn((src_lon[0] + src_lon[-1]) / 2, grid_mid)
    if longitude_period(src_lon):
        src_lon = np.concatenate([src_lon - 360.0, src_lon, src_lon + 360.0])
        values = np.tile(values, (1, 3))
    lon_se = cell_edges(src_lon, f"{source} lon")
    tol = 1e-3 * min(np.min(np.diff(lat_se)), np.min(np.diff(lon_se)))
    inside = lat_se[0] - tol <= lat_e[0] and lat_e[-1] <= lat_se[-1] + tol
    if not (inside and lon_se[0] - tol <= lon_e[0] and lon_e[-1] <= lon_se[-1] + tol):
        raise _not_covered(source, (lon_se[0], lat_se[0], lon_se[-1], lat_se[-1]), lat_e, lon_e)
    rows, cols = _near(src_lat, lat_e[0], lat_e[-1]), _near(src_lon, lon_e[0], lon_e[-1])
    lat, lon = np.meshgrid(src_lat[rows], src_lon[cols], indexing="ij")
    block = values[rows, cols]
    _check_finite(block, lat, lon, source)
    area = np.outer(np.diff(equal_area_y(lat_se))[rows], np.diff(np.deg2rad(lon_se))[cols])
    spline = RegularGridInterpolator((src_lat[rows], src_lon[cols]), block, method="linear")

    def interpolate(qlat: np.ndarray, qlon: np.ndarray) -> np.ndarray:
        # clipped to the centres' span: the nearest value held beyond the outer centres
        qlat = np.clip(qlat, src_lat[rows][0], src_lat[rows][-1])
        qlon = np.clip(qlon, src_lon[cols][0], src_lon[cols][-1])
        return spline(np.column_stack([qlat, qlon]))

    return _Points(lat.ravel(), lon.ravel(), block.ravel(), area.ravel(), interpolate)


def _corners(centres: np.ndarray) -> np.ndarray:
    """(ny + 1, nx + 1) cell corners of a (ny, nx) curvilinear coordinate: the mean of the
    four surrounding centres, the centres extended one step linearly at the border."""
    p = np.pad(centres, 1, mode="reflect", reflect_type="odd")  # 2 c_0 − c_1 beyond c_0
    return (p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]) / 4


def _unwrapped(lon: np.ndarray) -> np.ndarray:
    """2-D longitudes without 360° jumps between neighbours (along rows, then the first
    column, whose shifts every row takes)."""
    along = np.unwrap(lon, period=360.0, axis=1)
    first = np.unwrap(along[:, 0], period=360.0)
    return along + (first - along[:, 0])[:, None]


def _linear_then_nearest(lon: np.ndarray, lat: np.ndarray, values: np.ndarray):
    """Linear interpolation on the Delaunay triangles of scattered points, the nearest
    point's value outside their convex hull; built on the first call (few grids need it)."""

    def interpolate(qlat: np.ndarray, qlon: np.ndarray) -> np.ndarray:
        xy = np.column_stack([lon, lat])
        out = LinearNDInterpolator(Delaunay(xy), values)(qlon, qlat)
        outside = np.isnan(out)  # the values are finite: NaN means outside the hull
        if outside.any():
            out[outside] = NearestNDInterpolator(xy, values)(qlon[outside], qlat[outside])
        return out

    return interpolate


def _outline(c_lat: np.ndarray, c_lon: np.ndarray, source: str) -> shapely.Polygon:
    """The polygon (lon, lat) of the outer cell corners of a curvilinear grid."""
    ring = np.concatenate(
        [
            np.column_stack([c_lon[0, :], c_lat[0, :]]),
            np.column_stack([c_lon[1:, -1], c_lat[1:, -1]]),
            np.column_stack([c_lon[-1, -2::-1], c_lat[-1, -2::-1]]),
            np.column_stack([c_lon[-2:0:-1, 0], c_lat[-2:0:-1, 0]]),
        ]
    )
    outline = shapely.Polygon(ring)
    if not outline.is_valid:
        raise ValueError(
            f"{source}: the outline of its curvilinear grid crosses itself in lat/lon (a grid "
            "around a pole or the whole globe): only regional curvilinear grids are supported"
        )
    return outline


def _quad_areas(c_lat: np.ndarray, c_lon: np.ndarray, iy: np.ndarray, ix: np.ndarray):
    """Areas (sr) of the source cells (iy, ix): their corner quadrilaterals in (λ, sin φ)."""
    x, y = np.deg2rad(c_lon), equal_area_y(c_lat)
    corners = ((0, 0), (0, 1), (1, 1), (1, 0), (0, 0))
    quads = np.stack(
        [np.column_stack([x[iy + a, ix + b], y[iy + a, ix + b]]) for a, b in corners], axis=1
    )
    return shapely.area(shapely.polygons(quads))


def _curvilinear_points(
    values: np.ndarray,
    src_lat: np.ndarray,
    src_lon: np.ndarray,
    lat_e: np.ndarray,
    lon_e: np.ndarray,
    source: str,
) -> _Points:
    """The points of a curvilinear source near the grid (module doc)."""
    if not (values.shape == src_lat.shape == src_lon.shape) or min(values.shape) < 2:
        raise ValueError(
            f"{source}: values {values.shape}, lat {src_lat.shape} and lon {src_lon.shape} "
            "must have one 2-D shape, at least 2 × 2"
        )
    if not (np.isfinite(src_lat).all() and np.isfinite(src_lon).all()):
        raise ValueError(f"{source}: its 2-D lat/lon coordinates are not all finite")
    lon = _unwrapped(src_lon)
    lon = lon + _turn((lon.min() + lon.max()) / 2, (lon_e[0] + lon_e[-1]) / 2)
    c_lat, c_lon = _corners(src_lat), _corners(lon)
    outline = _outline(c_lat, c_lon, source)
    grid_box = shapely.box(lon_e[0], lat_e[0], lon_e[-1], lat_e[-1])
    if not outline.covers(grid_box):
        in_box = shapely.box(*outline.bounds).covers(grid_box)
        note = " (the outline of its curvilinear grid leaves part of the grid out)"
        raise _not_covered(source, outline.bounds, lat_e, lon_e, note if in_box else "")
    margin = 2 * max(np.abs(np.diff(a, axis=ax)).max() for a in (src_lat, lon) for ax in (0, 1))
    near = (
        (src_lat >= lat_e[0] - margin)
        & (src_lat <= lat_e[-1] + margin)
        & (lon >= lon_e[0] - margin)
        & (lon <= lon_e[-1] + margin)
    )
    _check_finite(values[near], src_lat[near], lon[near], source)
    area = _quad_areas(c_lat, c_lon, *np.nonzero(near))
    plat, plon, pval = src_lat[near], lon[near], values[near]
    return _Points(plat, plon, pval, area, _linear_then_nearest(plon, plat, pval))


def _bin_means(
    points: _Points, lat_e: np.ndarray, lon_e: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(n_lat, n_lon) area-weighted means of the points in each cell (a point on an inner
    edge counts in the cell north / east of it), and which cells they stand for: those
    at least half as large as the mean source cell centred in them (module doc)."""
    i = np.searchsorted(lat_e, points.lat, side="right") - 1
    j = np.searchsorted(lon_e, points.lon, side="right") - 1
    n_lat, n_lon = lat_e.size - 1, lon_e.size - 1
    keep = (i >= 0) & (i < n_lat) & (j >= 0) & (j < n_lon)
    cell = i[keep] * n_lon + j[keep]
    total = np.bincount(cell, points.area[keep] * points.values[keep], n_lat * n_lon)
    area = np.bincount(cell, points.area[keep], n_lat * n_lon)
    count = np.bincount(cell, minlength=n_lat * n_lon)
    means = np.divide(total, area, out=np.zeros_like(total), where=area > 0)
    cell_area = np.outer(np.diff(equal_area_y(lat_e)), np.diff(np.deg2rad(lon_e))).ravel()
    held = (count > 0) & (2.0 * cell_area * count >= area)
    return means.reshape(n_lat, n_lon), held.reshape(n_lat, n_lon)


def regrid_to_cells(
    values: np.ndarray,
    src_lat: np.ndarray,
    src_lon: np.ndarray,
    lat: np.ndarray | Sequence[float],
    lon: np.ndarray | Sequence[float],
    *,
    source: str = "the source",
) -> np.ndarray:
    """Area means of a source field over the cells of a regular grid (module doc).

    Args:
        values: the source field, (ny, nx).
        src_lat, src_lon: its centres, degrees: 1-D ascending (ny,) and (nx,) for a
            regular grid, or 2-D (ny, nx) each for a curvilinear one.
        lat, lon: the target grid's ascending centres (≥ 2 each), degrees.
        source: what the source is (a variable and a file), for error messages.

    Returns:
        (n_lat, n_lon) float64: per cell, the area-weighted mean of the source points in
        it, or where it holds none (or is much smaller than the source cells) the source
        interpolated linearly at its centre.

    Raises:
        CoverageError: the grid reaches outside the source, or the source is not finite
            near it (the source, its extent and the grid's named).
        ValueError: shapes that do not match, coordinates not ascending.
    """
    values = np.asarray(values, dtype=np.float64)
    src_lat = np.asarray(src_lat, dtype=np.float64)
    src_lon = np.asarray(src_lon, dtype=np.float64)
    lat_e, lon_e = lat_lon_cell_edges(lat, lon)
    if src_lat.ndim == src_lon.ndim == 1:
        points = _regular_points(values, src_lat, src_lon, lat_e, lon_e, source)
    elif src_lat.ndim == src_lon.ndim == 2:
        points = _curvilinear_points(values, src_lat, src_lon, lat_e, lon_e, source)
    else:
        raise ValueError(
            f"{source}: lat and lon must both be 1-D (a regular grid) or both 2-D (a "
            f"curvilinear grid), got {src_lat.ndim}-D and {src_lon.ndim}-D"
        )
    means, held = _bin_means(points, lat_e, lon_e)
    if not held.all():
        glat, glon = np.meshgrid(np.asarray(lat, float), np.asarray(lon, float), indexing="ij")
        means[~held] = points.interpolate(glat[~held], glon[~held])
    return means
