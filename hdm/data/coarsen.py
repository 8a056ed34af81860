"""Coarse-graining: area-weighted block means by an integer factor, lazily.

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
"""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from hdm.data.schema import LAT, LAT_WEIGHT, LON, lat_weights

__all__ = ["coarse_grain"]


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
    return mean.astype(dtype).assign_attrs(var.attrs)


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

    out_vars = {}
    for name, var in ds.data_vars.items():
        if LAT not in var.dims and LON not in var.dims:
            out_vars[name] = var
            continue
        if LAT not in var.dims or LON not in var.dims:
            raise ValueError(
                f"variable {name!r} has only one of {LAT!r}, {LON!r} (dims {var.dims})"
            )
        out_vars[name] = _block_mean(var, w, window)

    result = xr.Dataset(
        {k: v.drop_vars([LAT, LON, LAT_WEIGHT], errors="ignore") for k, v in out_vars.items()},
        coords=_coarse_coords(ds, lat_c, lon_c, w_sum_lat / f_lat),
        attrs=dict(ds.attrs),
    )
    previous = ds.attrs.get("coarse_grain")
    note = "; ".join(notes)
    result.attrs["coarse_grain"] = f"{previous} | {note}" if previous else note
    return result
