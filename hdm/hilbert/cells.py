"""Cells along one axis: their edges (from centres or CF bounds) and their overlaps.

A coarse cell along an axis is an interval [e_I, e_{I+1}), given by the increasing edges
e_0 < … < e_n; a grid point x_j stands for its fine cell [lo_j, hi_j] (on a regular axis
[x_j − h/2, x_j + h/2], so the fine cells tile [x_0 − h/2, x_{n−1} + h/2], the extent of
the data the grid holds). Conservative (area-overlap) remapping weights are made of one
matrix per axis,

    O[I, j] = |[e_I, e_{I+1}) ∩ [lo_j, hi_j]|           (n_cells, n_fine), axis units,

and on a tensor grid the area-weighted mean of the piecewise-constant field u over the
part of coarse cell (I, J) that the fine cells cover is

    U_IJ = Σ_ij O^φ_Ii w_i O^λ_Jj u_ij / Σ_ij O^φ_Ii w_i O^λ_Jj,      w_i = cos φ_i

(w = 1 on a flat grid). Where the coarse edges fall on fine-cell edges, O is h times a 0/1
matrix and U is the plain block mean. The covered length of cell I is Σ_j O[I, j].

Both the observation operator :class:`hdm.conditioning.observations.CoarseGrain` and the
data layer's :func:`hdm.data.coarsen.conservative_regrid` use these functions, so a coarse
field made from the truth and the operator that observes it weigh the same fine cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdm.hilbert.grids import Axis, GlobalGrid

__all__ = [
    "CellError",
    "CellsOnAxis",
    "cells_on_axis",
    "edges_from_bounds",
    "edges_from_centres",
    "fine_cells",
    "overlap_lengths",
    "sphere_latitude_overlaps",
]


class CellError(ValueError):
    """Cell centres or bounds that do not describe increasing, contiguous cells."""


def _increasing(values: np.ndarray, what: str, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise CellError(f"the {what} of {name!r} must be a 1-D array of finite numbers")
    if values.size > 1 and not np.all(np.diff(values) > 0):
        bad = int(np.flatnonzero(np.diff(values) <= 0)[0])
        raise CellError(
            f"the {what} of {name!r} must increase: {values[bad]:g} is followed by "
            f"{values[bad + 1]:g} (index {bad})"
        )
    return values


def edges_from_centres(centres: np.ndarray, name: str = "x") -> np.ndarray:
    """Edges (n + 1,) of the cells centred at ``centres`` (n,): the midpoints between
    neighbours, and the outer edges half a spacing beyond the first and last centre,
    e_0 = c_0 − (c_1 − c_0)/2, e_n = c_{n−1} + (c_{n−1} − c_{n−2})/2. Exact for a regular
    axis; for cells of unequal widths give their bounds (:func:`edges_from_bounds`).

    Raises:
        CellError: fewer than two centres, or centres that do not increase (names ``name``).
    """
    c = _increasing(centres, "centres", name)
    if c.size < 2:
        raise CellError(
            f"{name!r} has {c.size} centre(s): the width of a cell needs two centres or its bounds"
        )
    mid = 0.5 * (c[:-1] + c[1:])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def edges_from_bounds(
    bounds: np.ndarray, name: str = "x", centres: np.ndarray | None = None, rtol: float = 1e-6
) -> np.ndarray:
    """Edges (n + 1,) from CF cell bounds (n, 2): each row is the pair of one cell's
    edges (in either order); cell I ends where cell I + 1 begins (within ``rtol`` of the
    cell's width). With ``centres`` (n,), each centre must lie within its cell.

    Raises:
        CellError: bounds that are not (n, 2), not contiguous or not increasing, or a
            centre outside its bounds; the message names ``name`` and the first such cell.
    """
    b = np.asarray(bounds, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] < 1:
        raise CellError(f"the bounds of {name!r} must have shape (n, 2), got {b.shape}")
    b = np.sort(b, axis=1)
    width = b[:, 1] - b[:, 0]
    if not np.all(np.isfinite(b)) or np.any(width <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(width) & (width > 0)))[0])
        raise CellError(f"cell {bad} of {name!r} has empty or non-finite bounds {tuple(b[bad])}")
    gap = np.abs(b[1:, 0] - b[:-1, 1])
    bad = np.flatnonzero(gap > rtol * np.maximum(width[1:], width[:-1]))
    if bad.size:
        k = int(bad[0])
        raise CellError(
            f"the cells of {name!r} must be contiguous: cell {k} ends at {b[k, 1]:g}, "
            f"cell {k + 1} starts at {b[k + 1, 0]:g}"
        )
    edges = _increasing(np.append(b[:, 0], b[-1, 1]), "bounds", name)
    if centres is not None:
        c = np.asarray(centres, dtype=np.float64)
        if c.shape != (b.shape[0],):
            raise CellError(f"{name!r} has {c.size} centres for {b.shape[0]} pairs of bounds")
        tol = rtol * width
        out = np.flatnonzero((c < b[:, 0] - tol) | (c > b[:, 1] + tol))
        if out.size:
            k = int(out[0])
            raise CellError(
                f"centre {c[k]:g} of {name!r} (cell {k}) lies outside its bounds "
                f"[{b[k, 0]:g}, {b[k, 1]:g}]"
            )
    return edges


def overlap_lengths(
    edges: np.ndarray, lo: np.ndarray, hi: np.ndarray, period: float | None = None
) -> np.ndarray:
    """O[I, j] = |[e_I, e_{I+1}) ∩ [lo_j, hi_j]|, shape (n_cells, n_fine), axis units.

    Args:
        edges: increasing coarse edges (n_cells + 1,).
        lo, hi: the fine cells' lower and upper ends (n_fine,).
        period: for a periodic axis (a longitude circle, 360), the fine cells are those
            of one period and repeat every ``period``: a coarse cell across the seam, or
            given in another longitude convention, overlaps the copies it meets.

    Returns:
        float64 lengths; a row sums to the length of the cell that the fine cells cover.
    """
    e = np.asarray(edges, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)

    def overlap(shift: float) -> np.ndarray:
        left = np.maximum(e[:-1, None], lo[None, :] + shift)
        right = np.minimum(e[1:, None], hi[None, :] + shift)
        return np.clip(right - left, 0.0, None)

    if period is None:
        return overlap(0.0)
    # Bring the first edge into the fine cells' period; the cells then span at most
    # [lo_0, lo_0 + 2·period), which the copies at −1, 0, +1 periods cover.
    e = e - period * np.floor((e[0] - lo.min()) / period)
    return sum(overlap(k * period) for k in (-1, 0, 1))


def fine_cells(axis: Axis) -> tuple[np.ndarray, np.ndarray]:
    """The cells [x_j − h/2, x_j + h/2] of a regular axis' points: (lo, hi), each (n,)."""
    coords = axis.coords
    return coords - axis.spacing / 2, coords + axis.spacing / 2


@dataclass(frozen=True)
class CellsOnAxis:
    """Where coarse cells lie on a grid axis (made by :func:`cells_on_axis`).

    Attributes:
        edges: (n + 1,) the cells' edges, snapped onto fine-cell edges when aligned.
        coverage: (n,) the fraction of each cell's length that the axis' fine cells cover.
        keep: the cells whose coverage is at least the minimum, a slice (they are
            contiguous: the fine cells cover one interval); empty when none is.
        factor: f when the kept cells are blocks of f whole fine cells each (aligned and
            fully covered), else None.
    """

    edges: np.ndarray
    coverage: np.ndarray
    keep: slice
    factor: int | None


def _aligned_edges(edges: np.ndarray, axis: Axis, tol: float) -> tuple[np.ndarray, int] | None:
    """The edges snapped onto fine-cell edges x_0 − h/2 + K h and the block width f, when
    every edge is within ``tol`` spacings of one and every cell is f ≥ 1 fine cells."""
    h = axis.spacing
    k = (edges - (axis.coords[0] - h / 2)) / h
    whole = np.round(k)
    widths = np.diff(whole)
    if np.max(np.abs(k - whole)) > tol or widths[0] < 1 or np.any(widths != widths[0]):
        return None
    f = int(widths[0])
    # the arithmetic of CoarseGrain.from_coarse_coords, so aligned cells get its numbers
    start = axis.coords[0] + whole[0] * h - h / 2
    return start + f * h * np.arange(edges.size), f


def cells_on_axis(
    edges: np.ndarray, axis: Axis, *, align_tol: float, min_coverage: float = 0.5
) -> CellsOnAxis:
    """Place coarse cells (edges (n + 1,), axis units) on a grid axis.

    Edges within ``align_tol`` spacings of fine-cell edges, all cells the same whole
    number f of fine cells, are snapped onto them (the aligned blocks of the grid). A
    cell's coverage is Σ_j O[I, j] / (e_{I+1} − e_I) (:func:`overlap_lengths`; 1 on a
    periodic axis); cells with coverage ≥ ``min_coverage`` are kept.
    """
    edges = np.asarray(edges, dtype=np.float64)
    aligned = _aligned_edges(edges, axis, align_tol)
    if aligned is not None:
        edges = aligned[0]
    period = axis.length if axis.periodic else None
    if period is not None and edges[-1] - edges[0] > period * (1 + 1e-9):
        raise CellError(
            f"the cells along {axis.name!r} span {edges[-1] - edges[0]:g}, more than the "
            f"axis' period {period:g}"
        )
    coverage = overlap_lengths(edges, *fine_cells(axis), period).sum(1) / np.diff(edges)
    kept = np.flatnonzero(coverage >= min_coverage - 1e-9)
    keep = slice(int(kept[0]), int(kept[-1]) + 1) if kept.size else slice(0, 0)
    full = kept.size > 0 and bool(np.all(coverage[keep] >= 1 - 1e-9))
    factor = aligned[1] if aligned is not None and full else None
    return CellsOnAxis(edges, coverage, keep, factor)


def sphere_latitude_overlaps(edges: np.ndarray, grid: GlobalGrid) -> np.ndarray:
    """(n_cells, nlat) latitude weights of coarse cells with latitude ``edges`` on a
    global grid: the fraction of each point's latitude cell (clipped to the poles) inside
    the coarse cell, times the point's area weight (the grid's quadrature, exact for the
    sphere's area: the polar caps included, where cos φ = 0 would drop the pole). Rows
    normalised to 1 give the area means of
    :class:`~hdm.conditioning.observations.CoarseGrain` and
    :func:`~hdm.data.coarsen.coarse_grain_sphere`."""
    axis = grid.axes[0]
    lo, hi = fine_cells(axis)
    lo, hi = np.maximum(lo, -90.0), np.minimum(hi, 90.0)
    fraction = overlap_lengths(np.asarray(edges, dtype=np.float64), lo, hi) / (hi - lo)[None, :]
    return fraction * grid.weights()[:, 0][None, :]
