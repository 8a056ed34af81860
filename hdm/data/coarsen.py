"""Coarse-graining: area-weighted block means by an integer factor, and conservative
regridding onto any coarser lat-lon grid, lazily.

For a field u on a regular latitude–longitude grid and integer factors (f_φ, f_λ), the
coarse cell I×J (f_φ rows i ∈ I by f_λ columns j ∈ J) holds the area-weighted mean

    U_IJ = Σ_{i∈I, j∈J} w_i u_ij / Σ_{i∈I, j∈J} w_i,      w_i = cos φ_i,

NaNs excluded from both sums (a block without any finite value gives NaN). The coarse
coordinates are the area-weighted block centres

    Φ_I = Σ_{i∈I} w_i φ_i / Σ_{i∈I} w_i,        Λ_J = (1/f_λ) Σ_{j∈J} λ_j,

(slightly equatorward of the arithmetic centre, by ≈ tan(Φ)·var(φ_i) radians), and the
coarse cells' area weights W_I = (1/f_φ) Σ_{i∈I} w_i are stored as the coordinate
``lat_weight`` along ``lat``, so that :func:`hdm.data.schema.lat_weights` of the coarse
dataset gives W_I and the area-weighted mean over the (kept) domain is preserved
exactly: Σ_IJ W_I U_IJ / Σ_IJ W_I = Σ_ij w_i u_ij / Σ_ij w_i (for fields without NaN).
A coarse-grained dataset can be coarse-grained again (its ``lat_weight`` is used).

Rows or columns that do not fill a block (n mod f ≠ 0) follow ``boundary``:

- ``"trim"`` (default): the trailing n mod f rows (the northernmost, lat being
  ascending) or columns (the easternmost) are dropped; the dataset attribute
  ``coarse_grain`` records the factors and what was dropped;
- ``"error"``: raise, naming the dimension, its size and the factor.

Everything is lazy (dask arrays stay dask; numpy stays numpy); data variables without
``lat`` and ``lon`` are passed through unchanged (one with only one of them is an
error), and non-index coordinates that
depend on ``lat`` or ``lon`` are dropped. Sums are in float64; the result has the
input's floating dtype.

:func:`conservative_regrid` maps onto any lat-lon grid of cells, given by their centres
and optional CF bounds (else the midpoints between centres, the outer edges half a
spacing out): the cell I × J holds the area-weighted mean over its overlap with the
fine cells (a fine point x_j stands for [x_j − h/2, x_j + h/2]),

    U_IJ = Σ_ij O^φ_Ii w_i O^λ_Jj u_ij / Σ_ij O^φ_Ii w_i O^λ_Jj,
    O_Ii = |[e_I, e_{I+1}) ∩ [x_i − h/2, x_i + h/2]|,

with the overlap lengths of :func:`hdm.hilbert.cells.overlap_lengths`, the weights the
observation operator :meth:`hdm.conditioning.observations.CoarseGrain.for_coarse_grid`
uses, so a coarse field made here is what that operator observes of the truth. Aligned
blocks of f points give exactly :func:`coarse_grain`'s values and ``lat_weight``. A cell
cut by the fine grid's edge holds the mean over its covered part; cells less than half
covered along lat or lon (the operator's rule) are dropped (``outside="trim"``) or NaN
(``"nan"``). The result has ``lat_bnds`` / ``lon_bnds`` (dims (lat | lon, bnds), named
by the coordinates' CF ``bounds`` attribute) on a Dataset; a DataArray cannot hold
them (xarray allows coordinates along its own dims only), so a DataArray result keeps
the centres, from which :func:`cell_bounds` and the operator derive the same cells for
every grid whose bounds are the midpoints of its centres (every regular grid); a file's
own bounds ride on a DataArray as two 1-D coordinates (:func:`with_cell_bounds`).

:func:`coarse_grain_sphere` is the block mean of a global field (the equiangular grid
with both poles, :class:`~hdm.hilbert.grids.GlobalGrid`): f × f blocks cannot tile
n_lat = k·f + 1 rows that start and end on a pole, so the cells are instead the
latitude bands of f·Δφ from pole to pole (the first and last are polar caps' belts
whose edge is the pole) by f whole grid columns from the first column's western edge,
and each holds the area mean with the grid's own quadrature,

    U_IJ = Σ_ij a_Ii w_i b_Jj u_ij / Σ_ij a_Ii w_i b_Jj,

w_i the sphere's quadrature weights, a_Ii the fraction of row i's latitude cell (clipped
to the poles) inside band I, b_Jj = 1 for the f columns of cell J
(:func:`~hdm.hilbert.cells.sphere_latitude_overlaps`): exactly what
:class:`~hdm.conditioning.observations.CoarseGrain` observes of the truth on the sphere.
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from hdm.data.accessor import grid_of
from hdm.data.regrid import longitude_period
from hdm.data.schema import LAT, LAT_WEIGHT, LON, lat_weights
from hdm.hilbert.cells import (
    CellError,
    edges_from_bounds,
    edges_from_centres,
    overlap_lengths,
    sphere_latitude_overlaps,
)
from hdm.hilbert.grids import GlobalGrid

__all__ = [
    "BOUNDS_DIM",
    "CELL_BOUND_COORDS",
    "cell_bounds",
    "coarse_grain",
    "coarse_grain_sphere",
    "conservative_regrid",
    "sphere_cells",
    "with_cell_bounds",
]

#: the dim of CF bounds variables (``lat_bnds(lat, bnds)``)
BOUNDS_DIM = "bnds"
#: a coarse cell is kept when at least this fraction of it along lat and along lon is
#: covered (the rule of :class:`hdm.conditioning.observations.CoarseGrain`)
MIN_COVERAGE = 0.5


def _factors(factor: int | tuple[int, int]) -> tuple[int, int]:
    pair = factor if isinstance(factor, tuple) else (factor, factor)
    if len(pair) != 2:
        raise ValueError(f"factor must be an int or a pair (lat, lon), got {factor!r}")
    for f in pair:
        if isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 1:
            raise ValueError(f"the coarse-graining factor must be a positive integer, got {f!r}")
    return int(pair[0]), int(pair[1])


def _check_blocks(ds: xr.Dataset, factors: dict[str, int], boundary: str) -> dict[str, int]:
    """The rows/columns left over by whole blocks, {lat: n_lat mod f_lat, lon: n_lon mod
    f_lon}, after checking that ``ds`` has both dims, that no factor exceeds its dim and,
    with ``boundary="error"``, that nothing is left over."""
    missing = [d for d in (LAT, LON) if d not in ds.dims]
    if missing:
        raise ValueError(f"coarse_grain needs dims {LAT!r} and {LON!r}; missing {missing}")
    sizes = {LAT: ds.sizes[LAT], LON: ds.sizes[LON]}
    too_big = [d for d in (LAT, LON) if factors[d] > sizes[d]]
    if too_big:
        detail = ", ".join(f"{d}: size {sizes[d]} < factor {factors[d]}" for d in too_big)
        raise ValueError(f"the coarse-graining factor is larger than the grid ({detail})")
    rest = {d: sizes[d] % factors[d] for d in (LAT, LON)}
    if boundary == "error" and any(rest.values()):
        detail = ", ".join(
            f"{d}: size {sizes[d]} is not a multiple of {factors[d]} ({rest[d]} left over)"
            for d in (LAT, LON)
            if rest[d]
        )
        raise ValueError(f"incomplete coarse-graining blocks with boundary='error' ({detail})")
    return rest


def _trim_incomplete_blocks(ds: xr.Dataset, rest: dict[str, int]) -> tuple[xr.Dataset, list[str]]:
    """``ds`` without the ``rest[d]`` trailing values of lat and lon, and a note per dim
    trimmed naming the values dropped."""
    notes = []
    for d in (LAT, LON):
        if rest[d]:
            dropped = ds[d].values[ds.sizes[d] - rest[d] :]
            notes.append(
                f"trimmed {rest[d]} trailing {d} value(s) {dropped[0]:g} to {dropped[-1]:g}"
            )
    keep = {d: slice(0, ds.sizes[d] - rest[d]) for d in (LAT, LON)}
    return ds.isel(keep), notes


def _map_fields(ds: xr.Dataset, reduce) -> dict[str, xr.DataArray]:
    """``reduce(var)`` of every data variable on (lat, lon); variables with neither are
    passed through, one with only one of them is an error naming it."""
    out = {}
    for name, var in ds.data_vars.items():
        if LAT not in var.dims and LON not in var.dims:
            out[name] = var
        elif LAT not in var.dims or LON not in var.dims:
            raise ValueError(
                f"variable {name!r} has only one of {LAT!r}, {LON!r} (dims {var.dims})"
            )
        else:
            out[name] = reduce(var)
    return out


def _block_mean(var: xr.DataArray, w: xr.DataArray, window: dict[str, int]) -> xr.DataArray:
    """U = Σ w_i u_ij / Σ w_i over each block of ``window`` cells, NaNs left out of both
    sums (NaN for a block without a finite value), in float64, then cast back to the
    variable's floating dtype (float64 if it is not floating); ``w`` (lat,), cos φ."""
    x = var.reset_coords(drop=True).astype(np.float64)
    wf = xr.where(np.isfinite(x), w, 0.0)
    num = (wf * x.fillna(0.0)).coarsen(window).sum()
    den = wf.coarsen(window).sum()
    mean = (num / den.where(den > 0)).transpose(*var.dims)
    dtype = var.dtype if var.dtype.kind == "f" else np.float64
    out = mean.astype(dtype)
    out.attrs = dict(var.attrs)  # the variable's alone: not the weights' (a unitless field
    return out  # would take the latitudes' degrees_north)


def _coarse_coords(
    ds: xr.Dataset, lat_c: xr.DataArray, lon_c: xr.DataArray, lat_weight: xr.DataArray
) -> dict:
    """Coordinates of the coarse dataset: those of ``ds`` that depend on neither lat nor
    lon, the block centres ``lat_c`` and ``lon_c`` (degrees, float64 with the input's
    attributes: area-weighted centres rounded to float32 move by ~1e-5°, which other
    grids built from the same fine grid would not reproduce) and the coarse cells' area
    weights ``lat_weight`` W_I (module doc)."""
    drop = [c for c in ds.coords if c not in ds.dims and ({LAT, LON} & set(ds[c].dims))]
    coords = {
        c: ds[c] for c in ds.coords if c not in drop and c not in (LAT, LON) and c != LAT_WEIGHT
    }
    lat_attrs, lon_attrs = dict(ds[LAT].attrs), dict(ds[LON].attrs)
    coords[LAT] = (LAT, lat_c.values.astype(np.float64), lat_attrs)
    coords[LON] = (LON, lon_c.values.astype(np.float64), lon_attrs)
    coords[LAT_WEIGHT] = (
        LAT,
        lat_weight.values,
        {"long_name": "area weight of coarse cells (mean cos latitude)", "units": "1"},
    )
    return coords


def coarse_grain(
    ds: xr.Dataset | xr.DataArray,
    factor: int | tuple[int, int],
    boundary: str = "trim",
) -> xr.Dataset | xr.DataArray:
    """Area-weighted block mean over ``factor`` × ``factor`` cells (see the module doc).

    Args:
        ds: a dataset (or DataArray) with ``lat`` and ``lon`` dimension coordinates.
        factor: a positive integer, or a pair (f_lat, f_lon).
        boundary: ``"trim"`` or ``"error"`` for rows/columns that do not fill a block.

    Returns:
        the same kind of object on the coarse grid (lazy if the input is), with the
        ``lat_weight`` coordinate and the ``coarse_grain`` attribute.

    Raises:
        ValueError: a factor that is not a positive integer, larger than the grid
            (dims and sizes named), an incomplete block with ``boundary="error"``, or
            an unknown ``boundary``.
    """
    if isinstance(ds, xr.DataArray):
        name = ds.name if ds.name is not None else "__da__"
        out = coarse_grain(ds.to_dataset(name=name), factor, boundary)[name]
        return out.rename(ds.name)
    if boundary not in ("trim", "error"):
        raise ValueError(f"boundary must be 'trim' or 'error', got {boundary!r}")
    f_lat, f_lon = _factors(factor)
    rest = _check_blocks(ds, {LAT: f_lat, LON: f_lon}, boundary)
    notes = [f"factor (lat, lon) = ({f_lat}, {f_lon}), area-weighted (cos lat) block mean"]
    ds, trimmed = _trim_incomplete_blocks(ds, rest)
    notes.extend(trimmed)

    w = lat_weights(ds)  # (lat,), float64; block sums of fine weights if already coarse
    window = {LAT: f_lat, LON: f_lon}
    w_sum_lat = w.coarsen({LAT: f_lat}).sum()
    lat_c = (w * ds[LAT].astype(np.float64)).coarsen({LAT: f_lat}).sum() / w_sum_lat
    lon_c = ds[LON].astype(np.float64).coarsen({LON: f_lon}).mean()

    out_vars = _map_fields(ds, lambda var: _block_mean(var, w, window))

    result = xr.Dataset(
        {k: v.drop_vars([LAT, LON, LAT_WEIGHT], errors="ignore") for k, v in out_vars.items()},
        coords=_coarse_coords(ds, lat_c, lon_c, w_sum_lat / f_lat),
        attrs=dict(ds.attrs),
    )
    previous = ds.attrs.get("coarse_grain")
    note = "; ".join(notes)
    result.attrs["coarse_grain"] = f"{previous} | {note}" if previous else note
    return result


#: the 1-D coordinates that carry a field's cell bounds along ``dim`` on a DataArray
#: (which cannot hold CF's (n, 2) bounds variable): :func:`with_cell_bounds`
CELL_BOUND_COORDS = ("{dim}_cell_lower", "{dim}_cell_upper")


def with_cell_bounds(ds: xr.Dataset, field: xr.DataArray) -> xr.DataArray:
    """``field`` (a variable of ``ds``) with the CF bounds of ``ds``'s lat and lon as 1-D
    coordinates (:data:`CELL_BOUND_COORDS`), which follow it through selection, cropping
    and reordering. Each cell's bounds are sorted, and longitude bounds are moved by
    whole turns to lie within half a turn of their centres (a file's bounds in [0, 360)
    once its longitudes were wrapped to [−180, 180), a cell written (359, 0)). Without
    bounds the field is returned as is."""
    for dim in (LAT, LON):
        if dim not in field.dims or dim not in ds.coords:
            continue
        bounds = cell_bounds(ds, dim)
        if bounds is None:
            continue
        if dim == LON:  # each bound within half a turn of its cell's centre
            centre = ds[LON].values[:, None]
            bounds = bounds + 360.0 * np.round((centre - bounds) / 360.0)
        lower, upper = bounds.min(axis=1), bounds.max(axis=1)
        low_name, up_name = (name.format(dim=dim) for name in CELL_BOUND_COORDS)
        field = field.assign_coords({low_name: (dim, lower), up_name: (dim, upper)})
    return field


def cell_bounds(obj: xr.Dataset | xr.DataArray, dim: str) -> np.ndarray | None:
    """CF bounds (n, 2) of coordinate ``dim``: the variable its ``bounds`` attribute names,
    else ``{dim}_bnds``; on a DataArray, its :data:`CELL_BOUND_COORDS` (a DataArray
    cannot hold (n, 2) coordinates); None when ``obj`` holds none (its cells then follow
    from its centres)."""
    if dim not in obj.coords:
        raise KeyError(f"no {dim!r} coordinate; coordinates: {list(obj.coords)}")
    low_name, up_name = (name.format(dim=dim) for name in CELL_BOUND_COORDS)
    if isinstance(obj, xr.DataArray) and low_name in obj.coords and up_name in obj.coords:
        return np.stack([obj[low_name].values, obj[up_name].values], axis=1).astype(np.float64)
    held = obj.variables if isinstance(obj, xr.Dataset) else obj.coords
    for name in (obj[dim].attrs.get("bounds"), f"{dim}_bnds"):
        if isinstance(name, str) and name in held:
            b = obj[name]
            if b.ndim == 2 and dim in b.dims:
                return b.transpose(dim, ...).values.astype(np.float64)
    return None


def _axis_overlaps(
    fine: np.ndarray, centres, bounds, name: str, period: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(edges (n + 1,), overlaps O (n, n_fine)) of the coarse cells along one axis."""
    try:
        fine_edges = edges_from_centres(fine, f"fine {name}")
        if bounds is None:
            edges = edges_from_centres(centres, f"coarse {name}")
        else:
            edges = edges_from_bounds(bounds, f"coarse {name}", centres)
    except CellError as exc:
        raise ValueError(f"conservative_regrid: {exc}") from None
    return edges, overlap_lengths(edges, fine_edges[:-1], fine_edges[1:], period)


def _covered(
    overlaps: dict[str, tuple[np.ndarray, np.ndarray]], fine: xr.Dataset
) -> dict[str, np.ndarray]:
    """Per dim, the cells covered at least ``MIN_COVERAGE`` along it; an error naming both
    extents when there is none along a dim."""
    keep = {d: o.sum(1) / np.diff(e) >= MIN_COVERAGE - 1e-9 for d, (e, o) in overlaps.items()}
    if all(k.any() for k in keep.values()):
        return keep
    coarse = ", ".join(f"{d} [{e[0]:g}, {e[-1]:g}]" for d, (e, _) in overlaps.items())
    extents = []
    for d in (LAT, LON):
        f = edges_from_centres(fine[d].values, d)
        extents.append(f"{d} [{f[0]:g}, {f[-1]:g}]")
    raise ValueError(
        f"conservative_regrid: no cell of the coarse grid ({coarse}) is at least half "
        f"covered by the fine grid ({', '.join(extents)})"
    )


def _regridded(var: xr.DataArray, a: np.ndarray, b: np.ndarray) -> xr.DataArray:
    """Σ a_Ii u_ij b_Jj / Σ a_Ii b_Jj over the finite u (NaN where none is), in float64,
    cast back to the variable's floating dtype; dims (…, lat, lon) as in ``var``."""
    x = var.reset_coords(drop=True).astype(np.float64)
    wa = xr.DataArray(a, dims=("__lat", LAT))
    wb = xr.DataArray(b, dims=("__lon", LON))
    num = xr.dot(wa, x.fillna(0.0), wb, dim=[LAT, LON])
    den = xr.dot(wa, np.isfinite(x).astype(np.float64), wb, dim=[LAT, LON])
    mean = (num / den.where(den > 0)).rename({"__lat": LAT, "__lon": LON})
    dtype = var.dtype if var.dtype.kind == "f" else np.float64
    return mean.transpose(*var.dims).astype(dtype).assign_attrs(var.attrs)


def conservative_regrid(
    ds: xr.Dataset | xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    lat_bounds: np.ndarray | None = None,
    lon_bounds: np.ndarray | None = None,
    outside: str = "trim",
) -> xr.Dataset | xr.DataArray:
    """Area-overlap means of fine fields over the cells of a coarse lat-lon grid (module doc).

    Args:
        ds: a dataset (or DataArray) with ascending ``lat`` and ``lon`` dims (degrees),
            on a regular grid or one whose cells are the midpoints of its centres.
        lat, lon: the coarse cells' centres (ascending, degrees).
        lat_bounds, lon_bounds: CF bounds (n, 2) of the coarse cells; None: midpoints.
        outside: ``"trim"`` drops the coarse rows and columns less than half covered
            by the fine grid, ``"nan"`` keeps them as NaN.

    Returns:
        the same kind of object on the coarse grid (lazy if the input is), with the
        ``lat_weight`` coordinate (the mean cos φ over each row's covered part, as
        :func:`coarse_grain` writes), on a Dataset ``lat_bnds`` / ``lon_bnds``, and the
        ``conservative_regrid`` attribute (on the DataArray's own attributes for a
        DataArray).

    Raises:
        ValueError: missing dims, centres or bounds that do not make increasing
            contiguous cells, an unknown ``outside``, or a coarse grid with no cell at
            least half covered (both extents named).
    """
    if isinstance(ds, xr.DataArray):
        name = ds.name if ds.name is not None else "__da__"
        out = conservative_regrid(
            ds.to_dataset(name=name), lat, lon, lat_bounds, lon_bounds, outside
        )
        note = out.attrs["conservative_regrid"]
        return out[name].rename(ds.name).assign_attrs(conservative_regrid=note)
    if outside not in ("trim", "nan"):
        raise ValueError(f"outside must be 'trim' or 'nan', got {outside!r}")
    missing = [d for d in (LAT, LON) if d not in ds.dims]
    if missing:
        raise ValueError(f"conservative_regrid needs dims {LAT!r} and {LON!r}; missing {missing}")
    periods = {LAT: None, LON: longitude_period(ds[LON].values)}
    given = {LAT: (lat, lat_bounds), LON: (lon, lon_bounds)}
    overlaps = {d: _axis_overlaps(ds[d].values, *given[d], d, periods[d]) for d in (LAT, LON)}
    covered = _covered(overlaps, ds)
    keep = covered if outside == "trim" else {d: np.ones_like(k) for d, k in covered.items()}
    o_lat, o_lon = overlaps[LAT][1][keep[LAT]], overlaps[LON][1][keep[LON]]
    w = lat_weights(ds).values  # cos φ_i, or the block weights of an already coarse grid
    a = o_lat * w[None, :]
    # W_I = Σ_i O_Ii w_i / Σ_i O_Ii, the mean weight over the row's covered part
    rows_weight = np.divide(a.sum(1), o_lat.sum(1), out=np.zeros(len(a)), where=o_lat.sum(1) > 0)

    out_vars = _map_fields(ds, lambda var: _regridded(var, a, o_lon))
    cells = {d: (np.asarray(given[d][0], dtype=np.float64), overlaps[d][0]) for d in (LAT, LON)}
    return _with_cell_coords(ds, out_vars, cells, covered, keep, rows_weight)


def _with_cell_coords(
    ds: xr.Dataset,
    out_vars: dict,
    cells: dict[str, tuple[np.ndarray, np.ndarray]],
    covered: dict[str, np.ndarray],
    keep: dict[str, np.ndarray],
    rows_weight: np.ndarray,
) -> xr.Dataset:
    """The regridded dataset with the kept cells' centres, ``lat_weight``, CF bounds and
    the note; ``cells[d]`` is (centres, edges), ``covered[d]`` marks the cells at least
    half covered (the others are NaN where ``keep`` holds them, ``outside="nan"``)."""
    centres = {d: xr.DataArray(cells[d][0][keep[d]], dims=d) for d in (LAT, LON)}
    coords = _coarse_coords(ds, centres[LAT], centres[LON], xr.DataArray(rows_weight, dims=LAT))
    for d in (LAT, LON):
        edges = cells[d][1]
        bounds = np.stack([edges[:-1], edges[1:]], axis=1)[keep[d]]
        coords[f"{d}_bnds"] = (
            (d, BOUNDS_DIM),
            bounds,
            {"units": ds[d].attrs.get("units", "degrees")},
        )
        coords[d][2]["bounds"] = f"{d}_bnds"
    inside = xr.DataArray(
        np.multiply.outer(covered[LAT][keep[LAT]], covered[LON][keep[LON]]), dims=(LAT, LON)
    )
    result = xr.Dataset(
        {
            k: v.drop_vars([LAT, LON, LAT_WEIGHT], errors="ignore").where(inside)
            if LAT in v.dims
            else v
            for k, v in out_vars.items()
        },
        coords=coords,
        attrs=dict(ds.attrs),
    )
    outside = {d: int((~covered[d]).sum()) for d in (LAT, LON)}
    what = "dropped" if keep is covered else "NaN"
    result.attrs["conservative_regrid"] = (
        f"area-overlap (cos lat) means onto {centres[LAT].size} x {centres[LON].size} cells; "
        f"{what}: {outside[LAT]} lat row(s), {outside[LON]} lon column(s) less than half "
        "covered by the fine grid"
    )
    return result


def sphere_cells(grid: GlobalGrid, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The latitude and longitude edges (degrees) of the ``factor`` coarse cells of an
    equiangular global grid (module doc): (n_lat − 1)/f bands from −90° to 90°, n_lon/f
    cells of f whole columns from the first column's western edge.

    Raises:
        ValueError: a factor that does not divide n_lat − 1 and n_lon (sizes named), or a
            Gauss–Legendre grid (no pole rows to start the bands on).
    """
    if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor < 1:
        raise ValueError(f"the coarse-graining factor must be a positive integer, got {factor!r}")
    if grid.quadrature != "equiangular":
        raise ValueError(
            f"sphere cells need the equiangular grid with both poles, got {grid.describe()}"
        )
    nlat, nlon = grid.shape
    if (nlat - 1) % factor or nlon % factor:
        raise ValueError(
            f"factor {factor} does not tile {grid.describe()}: it must divide the "
            f"{nlat - 1} latitude spacings between the poles and the {nlon} longitudes"
        )
    step = 360.0 / nlon
    lat_edges = np.linspace(-90.0, 90.0, (nlat - 1) // factor + 1)
    lon_edges = grid.coords()[1][0] - step / 2 + factor * step * np.arange(nlon // factor + 1)
    return lat_edges, lon_edges


def _global_grid_of(ds: xr.Dataset) -> GlobalGrid:
    """The GlobalGrid of ``ds``'s lat and lon (:func:`~hdm.data.accessor.grid_of`), or a
    ValueError."""
    grid = grid_of(ds)
    if not isinstance(grid, GlobalGrid):
        lat, lon = ds[LAT].values, ds[LON].values
        raise ValueError(
            f"coarse_grain_sphere needs the points of a global grid (latitudes -90..90 "
            f"ascending, longitudes round the circle from -180); got lat {lat[0]:g}..{lat[-1]:g}, "
            f"lon {lon[0]:g}..{lon[-1]:g}"
        )
    return grid


def coarse_grain_sphere(ds: xr.Dataset | xr.DataArray, factor: int) -> xr.Dataset | xr.DataArray:
    """Area means of a global field over the ``factor`` cells of :func:`sphere_cells`,
    with the grid's quadrature (module doc), lazily.

    Args:
        ds: a dataset (or DataArray) on the equiangular global grid (``lat`` −90…90 with
            both poles, ``lon`` from −180, as :class:`~hdm.hilbert.grids.GlobalGrid`).
        factor: cells of ``factor`` × ``factor`` grid spacings.

    Returns:
        the same kind of object on the cells' centres, with CF ``lat_bnds`` /
        ``lon_bnds`` on a Dataset, ``lat_weight`` (each band's area fraction) and the
        ``coarse_grain`` attribute.
    """
    if isinstance(ds, xr.DataArray):
        name = ds.name if ds.name is not None else "__da__"
        out = coarse_grain_sphere(ds.to_dataset(name=name), factor)
        return out[name].rename(ds.name).assign_attrs(coarse_grain=out.attrs["coarse_grain"])
    missing = [d for d in (LAT, LON) if d not in ds.dims]
    if missing:
        raise ValueError(f"coarse_grain_sphere needs dims {LAT!r} and {LON!r}; missing {missing}")
    grid = _global_grid_of(ds)
    lat_edges, lon_edges = sphere_cells(grid, factor)
    a = sphere_latitude_overlaps(lat_edges, grid)
    rows = xr.DataArray(a / a.sum(1, keepdims=True), dims=("__cell_lat", LAT))
    n_lon = lon_edges.size - 1
    cols = xr.DataArray(
        np.kron(np.eye(n_lon), np.full((1, factor), 1.0 / factor)), dims=("__cell_lon", LON)
    )

    def cell_means(var: xr.DataArray) -> xr.DataArray:
        lead = [d for d in var.dims if d not in (LAT, LON)]
        means = xr.dot(rows, var.drop_vars([LAT, LON], errors="ignore"), cols, dim=[LAT, LON])
        means = means.rename(__cell_lat=LAT, __cell_lon=LON).transpose(*lead, LAT, LON)
        return means.astype(var.dtype).assign_attrs(var.attrs)

    out_vars = _map_fields(ds, cell_means)
    centres = {LAT: (lat_edges[:-1] + lat_edges[1:]) / 2, LON: (lon_edges[:-1] + lon_edges[1:]) / 2}
    band_area = a.sum(1) / a.sum()
    coords = _coarse_coords(
        ds,
        xr.DataArray(centres[LAT], dims=LAT),
        xr.DataArray(centres[LON], dims=LON),
        xr.DataArray(band_area, dims=LAT),
    )
    for d, edges in ((LAT, lat_edges), (LON, lon_edges)):
        coords[f"{d}_bnds"] = (
            (d, BOUNDS_DIM),
            np.stack([edges[:-1], edges[1:]], axis=1),
            {"units": ds[d].attrs.get("units", "degrees")},
        )
        coords[d][2]["bounds"] = f"{d}_bnds"
    result = xr.Dataset(out_vars, coords=coords, attrs=dict(ds.attrs))
    result.attrs["coarse_grain"] = (
        f"sphere cells of {factor} x {factor} spacings ({lat_edges.size - 1} x {n_lon}), "
        "area means with the grid's quadrature"
    )
    return result
