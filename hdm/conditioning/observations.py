"""Linear observation operators y = A(x) + η, defined in physical coordinates.

An operator is described by *where* it looks (coarse cells, station coordinates) in the
grid's physical units, never by grid indices, so one operator serves every resolution of
a domain: ``A.apply(x, grid)`` builds the discrete A for ``grid`` on first use.

Fields are tensors of shape (batch, C, *grid.shape); observations have shape
(batch, n_obs); each operator reads one channel (``channel``, default 0). The noise is
Gaussian, η ~ N(0, diag(noise_std²)), one std per observation (a scalar per source is
broadcast). Operators:

- :class:`CoarseGrain`: area-weighted (cos latitude on a
  :class:`~hdm.hilbert.grids.LatLonGrid`) cell means; along each axis a coarse cell is an
  interval [e_I, e_{I+1}). Made by ``from_factor`` or ``from_coarse_coords``, a cell is
  the mean of the f × f points of the grid the coarse field was made from, exactly the
  block mean of :func:`hdm.data.coarsen.coarse_grain`; on a refined grid it is the mean
  of the same points (the midpoint rule with f points per axis), so the observations
  mean the same on every grid. With ``samples_per_cell=None`` it is instead the exact
  area mean of the grid's piecewise-constant field (a point x_j stands for
  [x_j − h/2, x_j + h/2], points on a cell edge count half in each): the conservative
  remap, the same on the source grid, smoother on a refined one (see the class).
  ``for_coarse_grid`` takes a coarse field on any grid (CF bounds or centres): aligned
  blocks get the midpoint rule, other cells the area-overlap mean, and cells mostly
  outside the domain are left out (:func:`area_scaled_noise` gives their noise).
- :class:`PointSample`: multilinear (bilinear in 2-D) interpolation at station
  coordinates; a station outside the grid, or with a NaN coordinate, is an error that
  names it.
- :func:`subgrid`: sampling at the nodes selected by a mask of a grid (a PointSample at
  those nodes' coordinates, so it stays the same points on refined grids).
- :class:`Composite`: several sources stacked, each with its own noise.

Every operator has its adjoint (``adjoint``, Aᵀ on grid values, the convention of the
guidance: gradients with respect to grid values) and, for small grids, its dense matrix
(``matrix``), used by kriging baselines and tests.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hdm.hilbert.cells import (
    CellError,
    CellsOnAxis,
    cells_on_axis,
    edges_from_bounds,
    edges_from_centres,
    fine_cells,
    overlap_lengths,
    sphere_latitude_overlaps,
)
from hdm.hilbert.devices import draw_device
from hdm.hilbert.grids import (
    LONGITUDE_RANGE,
    Axis,
    GlobalGrid,
    Grid,
    LatLonGrid,
    OutsideGridError,
    multilinear_stencil,
)

__all__ = [
    "MIN_COVERAGE",
    "CoarseGrain",
    "Composite",
    "ObservationError",
    "ObservationOperator",
    "PointSample",
    "area_scaled_noise",
    "check_noise_std",
    "subgrid",
    "uncovered_strip",
]

log = logging.getLogger("hdm")


class ObservationError(ValueError):
    """Observations or operators that cannot be used (named in the message)."""


def check_noise_std(noise_std, n: int, what: str) -> np.ndarray:
    """Noise stds as a float64 array (n,); zero, negative or non-finite ones are errors."""
    std = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (n,)).copy()
    bad = np.flatnonzero(~(np.isfinite(std) & (std > 0)))
    if bad.size:
        raise ObservationError(
            f"{what}: the observation noise std must be positive and finite, got "
            f"{std[bad[0]]!r} (observation {int(bad[0])}); a noise-free observation is "
            "not allowed (use a small std such as 1e-3 of the field's scale)"
        )
    return std


class ObservationOperator(ABC):
    """A linear map from fields (B, C, *grid.shape) to observations (B, n_obs)."""

    name: str
    channel: int

    @abstractmethod
    def n_obs(self) -> int:
        """Number of observations."""

    @abstractmethod
    def noise_std(self) -> np.ndarray:
        """Observation noise std, (n_obs,)."""

    @abstractmethod
    def _apply(self, u: torch.Tensor, grid: Grid) -> torch.Tensor:
        """A on one channel: (B, *grid.shape) → (B, n_obs)."""

    @abstractmethod
    def _adjoint(self, v: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Aᵀ on one channel: (B, n_obs) → (B, *grid.shape)."""

    def labels(self) -> list[str]:
        return [f"{self.name}[{i}]" for i in range(self.n_obs())]

    def _channel(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        if x.ndim != 2 + grid.ndim or tuple(x.shape[2:]) != grid.shape:
            raise ObservationError(
                f"{self.name}: fields must have shape (batch, channels, {grid.shape}), "
                f"got {tuple(x.shape)}"
            )
        if not 0 <= self.channel < x.shape[1]:
            raise ObservationError(
                f"{self.name} reads channel {self.channel}, the fields have {x.shape[1]}"
            )
        return x[:, self.channel]

    def apply(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """A(x): (B, C, *grid.shape) → (B, n_obs)."""
        return self._apply(self._channel(x, grid), grid)

    def adjoint(self, v: torch.Tensor, grid: Grid, channels: int = 1) -> torch.Tensor:
        """Aᵀ v: (B, n_obs) → (B, channels, *grid.shape), zero on the other channels."""
        out = torch.zeros((v.shape[0], channels, *grid.shape), dtype=v.dtype, device=v.device)
        out[:, self.channel] = self._adjoint(v, grid)
        return out

    def matrix(self, grid: Grid) -> np.ndarray:
        """The dense matrix (n_obs, grid.size) of A on one channel (small grids only)."""
        if grid.size > 200_000:
            raise ObservationError(f"{grid.describe()} is too large for a dense operator")
        eye = torch.eye(self.n_obs(), dtype=torch.float64)
        return self._adjoint(eye, grid).reshape(self.n_obs(), grid.size).numpy()

    def simulate(
        self, x: torch.Tensor, grid: Grid, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """y = A(x) + η with η ~ N(0, diag(noise_std²)), seeded by ``generator``."""
        y = self.apply(x, grid)
        where = draw_device(generator)
        noise = torch.randn(y.shape, generator=generator, dtype=torch.float64, device=where)
        noise = noise * torch.as_tensor(self.noise_std(), device=where)
        return y + noise.to(device=y.device, dtype=y.dtype)


# ----------------------------------------------------------------- coarse cells

#: a coarse cell is observed when at least this fraction of its extent along every axis
#: lies inside the model's domain (see CoarseGrain)
MIN_COVERAGE = 0.5


def area_scaled_noise(base_std, covered_area, reference_area: float = 1.0) -> np.ndarray:
    """Noise stds of cells by what they average: σ_I = σ_ref · sqrt(A_ref / A_I).

    A coarse value's error (the product's own error and what the operator cannot
    represent of it) is an average over the cell; for errors that decorrelate over a
    length smaller than the cell, its variance falls as 1 / (the area averaged). So a
    cell averaging half the area of the reference cell gets √2 × its std, and a cell cut
    by the domain's edge, whose value the operator matches with the mean over its inside
    part only, gets the std of a cell of that inside area. With A_ref = 1 (a 1° × 1° cell
    at the cell's latitude; :meth:`CoarseGrain.covered_area` leaves cos φ out of both)
    the ×4 cells of the 0.25° UK grid (1° × 1°) keep σ_ref.

    Args:
        base_std: σ_ref, the std of a cell covering ``reference_area`` (a number, or one
            per cell).
        covered_area: A_I, (n,), in the units of ``reference_area`` (e.g. degree²).
        reference_area: A_ref.

    Returns:
        (n,) float64 stds.
    """
    area = np.asarray(covered_area, dtype=np.float64)
    if not np.all(np.isfinite(area) & (area > 0)):
        raise ObservationError(
            f"area_scaled_noise: covered areas must be positive and finite, got "
            f"{area[~(np.isfinite(area) & (area > 0))][:3]}"
        )
    if not (math.isfinite(reference_area) and reference_area > 0):
        raise ObservationError(
            f"area_scaled_noise: reference_area must be positive, got {reference_area!r}"
        )
    return np.asarray(base_std, dtype=np.float64) * np.sqrt(reference_area / area)


def _coarse_edges(centres, bounds, axis: str, name: str) -> tuple[np.ndarray, bool]:
    """A coarse axis' edges, and whether they were given as bounds (else derived)."""
    try:
        if bounds is None:
            return edges_from_centres(centres, axis), False
        return edges_from_bounds(bounds, axis, centres), True
    except CellError as exc:
        raise ObservationError(f"{name}: {exc}") from None


def _outside_message(name: str, placed: Sequence[CellsOnAxis], grid: Grid) -> str:
    """The error for a coarse grid none of whose cells is observed: both extents."""
    coarse = ", ".join(
        f"{a.name} [{p.edges[0]:g}, {p.edges[-1]:g}]" for a, p in zip(grid.axes, placed)
    )
    model = ", ".join(
        f"{a.name} [{a.coords[0] - a.spacing / 2:g}, {a.coords[-1] + a.spacing / 2:g}]"
        for a in grid.axes
    )
    if all(p.coverage.max() > 0 for p in placed):
        return (
            f"{name}: no cell of the coarse grid ({coarse}) lies at least half inside the "
            f"model's domain ({model})"
        )
    return f"{name}: the coarse grid ({coarse}) does not overlap the model's domain ({model})"


def uncovered_strip(
    name: str, what: str, axis: Axis, lo: float, hi: float, width: float
) -> str | None:
    """The error for coarse ``what`` ("cells", "points") spanning [lo, hi] along ``axis``
    that leave more than one coarse ``width`` (and more than a grid spacing) of the
    domain uncovered at an edge: there the members would be the prior alone, with nothing
    to say so. None where they reach within that of both edges, as the block means of a
    grid whose size is not a multiple of the factor do."""
    if axis.periodic:  # a circle has no edges: the gap is the arc from hi round to lo
        domain = "the whole circle"
        where, gap = f"from {axis.name} = {hi:g} round to {lo:g}", axis.length - (hi - lo)
    else:
        west, east = axis.coords[0] - axis.spacing / 2, axis.coords[-1] + axis.spacing / 2
        if axis.name == "lat":  # the cells of a grid with poles end at the poles
            west, east = max(west, -90.0), min(east, 90.0)
        domain = f"the model's domain [{west:g}, {east:g}]"
        gaps = {f"below {axis.name} = {lo:g}": lo - west, f"above {axis.name} = {hi:g}": east - hi}
        where, gap = max(gaps.items(), key=lambda kv: kv[1])
    if gap <= max(width, axis.spacing) * (1 + 1e-6):
        return None
    return (
        f"{name}: the coarse {what} cover {axis.name} [{lo:g}, {hi:g}] of {domain}; the "
        f"{gap:g} {where} (more than one coarse {what[:-1]}, {width:g}) has no coarse value "
        "and its members would be the prior alone: give a coarse field over the whole domain"
    )


def _uncovered_message(name: str, placed: Sequence[CellsOnAxis], grid: Grid) -> str | None:
    """:func:`uncovered_strip` of the observed cells along each bounded axis."""
    for axis, p in zip(grid.axes, placed):
        if axis.periodic:
            continue
        lo, hi = p.edges[p.keep.start], p.edges[p.keep.stop]
        message = uncovered_strip(
            name, "cells", axis, lo, hi, (hi - lo) / (p.keep.stop - p.keep.start)
        )
        if message:
            return message
    return None


def _log_left_out(name: str, placed: Sequence[CellsOnAxis], grid: Grid) -> None:
    total = math.prod(p.coverage.size for p in placed)
    kept = math.prod(p.keep.stop - p.keep.start for p in placed)
    if kept < total:
        where = ", ".join(
            f"{p.coverage.size - (p.keep.stop - p.keep.start)} of {p.coverage.size} along "
            f"{a.name!r}"
            for a, p in zip(grid.axes, placed)
        )
        log.info(
            "%s: %d of %d coarse cells left out, less than half inside the model's domain (%s)",
            name,
            total - kept,
            total,
            where,
        )


@dataclass(frozen=True)
class CoarseGrain(ObservationOperator):
    """Area-weighted means over coarse cells given by their edges along each axis.

    ``edges[k]`` is the increasing array (n_k + 1,) of cell boundaries along axis k, in the
    grid's physical units (degrees for lat/lon). Observations are ordered row-major over
    the coarse cells (shape ``cell_shape``). On a lat-lon grid each point (sample point)
    is weighted by cos(latitude).

    ``samples_per_cell`` says which mean of a cell [e_I, e_{I+1}) a coarse value is, along
    each axis (one value for all axes, or one per axis):

    - None: the exact area mean of the grid's piecewise-constant field (point x_j stands
      for [x_j − h/2, x_j + h/2]), the conservative remap
      (:func:`hdm.hilbert.cells.overlap_lengths`): the row of cell I holds the overlaps
      |[e_I, e_{I+1}) ∩ [x_j − h/2, x_j + h/2]| (× cos φ_j), normalised. A cell that the
      grid's cells only partly cover is the mean over its covered part.
    - f: the midpoint rule with f points per axis,
      (1/f) Σ_m u(e_I + (m + ½)(e_{I+1} − e_I)/f), the point values read off the grid by
      linear interpolation. A coarse field made as the block mean of f × f grid points
      (:func:`hdm.data.coarsen.coarse_grain`) is exactly this on its own grid, and on a
      refinement of it the same points are averaged, so the observation keeps its
      meaning. The exact area mean on a refined grid also weighs the points between them:
      for fields smooth between the source points, a 6-point kernel
      (1, 7, 8, 8, 7, 1)/32 per axis in place of the 4-point box of f = 4, which damps the
      2-cell wavelength to 0.93× of the box's response, so matching the same coarse
      values takes ≈ 7 % more amplitude there.

    **Any coarse grid** (:meth:`for_coarse_grid`): the cells come from CF bounds or from
    the centres (midpoints; the outer edges half a spacing out). Along an axis whose
    cells are aligned blocks of f whole grid cells, all inside the domain, the midpoint
    rule with f is used (the aligned path, the numbers of :meth:`from_coarse_coords`);
    along any other axis (offset, non-integer ratio, cells cut by the domain's edge) the
    exact area mean. On the grid the operator is made for, both are the same numbers.

    **Cells cut by the domain's edge.** The domain is what the model grid's cells cover,
    [x_0 − h/2, x_{n−1} + h/2] per axis. A cell observes the area-weighted mean over its
    part inside the domain. A cell is left out when less than half of its extent along
    lat, or along lon, lies inside (``MIN_COVERAGE``; the numbers left out are logged
    once, at INFO on the ``hdm`` logger), so a kept cell has at least a quarter of its
    area inside (a corner) and at least half of it along an edge. The rule is per axis
    so that the observed cells are whole rows and columns of the coarse grid: they stay a
    grid (no holes) for interpolation, inflation and the output. The noise of a cell can
    grow with how little of it is inside (:func:`area_scaled_noise`,
    ``noise_reference_area``), since its value also averages the part the model does not
    hold. A coarse grid with no kept cell is an error naming both extents.

    ``source_shape`` and ``source_index`` (set by :meth:`for_coarse_grid`) say where the
    observed cells sit in the coarse grid it was made from: :meth:`source_values` picks
    their values.
    """

    edges: tuple[tuple[float, ...], ...]
    noise: float | tuple[float, ...] = 0.1
    name: str = "coarse"
    channel: int = 0
    samples_per_cell: int | tuple[int | None, ...] | None = None
    source_shape: tuple[int, ...] = ()
    source_index: tuple[int, ...] = ()
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        edges = tuple(tuple(float(e) for e in axis) for axis in self.edges)
        object.__setattr__(self, "edges", edges)
        for k, axis in enumerate(edges):
            if len(axis) < 2 or not np.all(np.diff(axis) > 0):
                raise ObservationError(
                    f"{self.name}: the cell edges of axis {k} must increase, got {axis[:4]}..."
                )
        noise = self.noise if isinstance(self.noise, int | float) else tuple(self.noise)
        object.__setattr__(self, "noise", noise)
        check_noise_std(noise, self.n_obs(), self.name)
        if self.samples_per_cell is not None:
            object.__setattr__(self, "samples_per_cell", self._checked_samples())
        source = (tuple(self.source_shape), tuple(self.source_index))
        object.__setattr__(self, "source_shape", source[0])
        object.__setattr__(self, "source_index", source[1])
        if source != ((), ()) and not (
            len(source[0]) == len(source[1]) == len(edges)
            and all(0 <= i and i + n <= s for i, n, s in zip(source[1], self.cell_shape, source[0]))
        ):
            raise ObservationError(
                f"{self.name}: cells {self.cell_shape} at index {source[1]} do not fit in a "
                f"source grid of shape {source[0]}"
            )

    def _checked_samples(self) -> tuple[int | None, ...]:
        given = self.samples_per_cell
        per_axis = (given,) * len(self.edges) if isinstance(given, int) else tuple(given)
        if len(per_axis) != len(self.edges) or any(
            f is not None and (isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 1)
            for f in per_axis
        ):
            raise ObservationError(
                f"{self.name}: samples_per_cell must be a positive integer or one per "
                f"axis ({len(self.edges)}), got {given!r}"
            )
        return tuple(None if f is None else int(f) for f in per_axis)

    @property
    def cell_shape(self) -> tuple[int, ...]:
        return tuple(len(axis) - 1 for axis in self.edges)

    def cell_centres(self) -> tuple[np.ndarray, ...]:
        return tuple(0.5 * (np.asarray(a[:-1]) + np.asarray(a[1:])) for a in self.edges)

    def n_obs(self) -> int:
        return math.prod(self.cell_shape)

    def noise_std(self) -> np.ndarray:
        return check_noise_std(self.noise, self.n_obs(), self.name)

    @staticmethod
    def from_factor(
        grid: Grid, factor: int, noise: float = 0.1, name: str = "coarse", channel: int = 0
    ) -> CoarseGrain:
        """Blocks of ``factor`` points per axis from the grid's start, each the mean of its
        ``factor`` points per axis (``samples_per_cell=factor``); trailing points that do
        not fill a block are left out (``coarse_grain``'s ``"trim"`` policy)."""
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ObservationError(f"{name}: the factor must be a positive integer, got {factor!r}")
        edges = []
        for axis in grid.axes:
            blocks = axis.n // factor
            if blocks < 1:
                raise ObservationError(
                    f"{name}: factor {factor} is larger than axis {axis.name!r} ({axis.n} points)"
                )
            first = axis.coords[0] - axis.spacing / 2
            edges.append(tuple(first + axis.spacing * factor * np.arange(blocks + 1)))
        return CoarseGrain(tuple(edges), noise, name, channel, samples_per_cell=factor)

    @staticmethod
    def from_coarse_coords(
        coords: Sequence[np.ndarray],
        grid: Grid,
        noise: float = 0.1,
        name: str = "coarse",
        channel: int = 0,
        rtol: float = 0.02,
    ) -> CoarseGrain:
        """The cells of a coarse field (centre coordinates per axis) that is an integer
        coarse-graining of ``grid``: each cell is the mean of f consecutive points of the
        grid per axis (``samples_per_cell``), on ``grid`` and on any refinement of it.

        Raises ObservationError when the coarse spacing is not an integer multiple of the
        grid's, or the cells are not aligned with blocks of grid points (names the axis).
        """
        edges, factors = [], []
        for axis, centres in zip(grid.axes, coords):
            centres = np.asarray(centres, dtype=np.float64)
            if centres.ndim != 1 or len(centres) < 1:
                raise ObservationError(f"{name}: coarse coordinate {axis.name!r} is empty")
            h = axis.spacing
            spacing = float(np.median(np.diff(centres))) if len(centres) > 1 else h
            ratio = spacing / h
            f = round(ratio)
            if f < 1 or abs(ratio - f) > rtol * max(f, 1):
                raise ObservationError(
                    f"{name}: the coarse field is not an integer coarse-graining of the target "
                    f"grid along {axis.name!r}: coarse spacing {spacing:g} / grid spacing "
                    f"{h:g} = {ratio:.3f}"
                )
            # The block starting at grid index i0 has its centre at x_{i0} + (f − 1) h / 2.
            i0 = (centres[0] - axis.coords[0] - (f - 1) * h / 2) / h
            if abs(i0 - round(i0)) > 0.25 or round(i0) < 0 or f > axis.n:
                raise ObservationError(
                    f"{name}: the coarse cells along {axis.name!r} are not aligned with blocks "
                    f"of {f} grid points (first coarse centre {centres[0]:g}, grid starts at "
                    f"{axis.coords[0]:g} with spacing {h:g})"
                )
            start = axis.coords[0] + round(i0) * h - h / 2
            edge = start + f * h * np.arange(len(centres) + 1)
            if edge[-1] > axis.coords[-1] + h / 2 + 1e-9 * max(1.0, abs(edge[-1])):
                raise ObservationError(
                    f"{name}: the coarse field extends beyond the target grid along "
                    f"{axis.name!r} (last cell ends at {edge[-1]:g}, grid ends at "
                    f"{axis.coords[-1] + h / 2:g})"
                )
            edges.append(tuple(edge))
            factors.append(f)
        return CoarseGrain(tuple(edges), noise, name, channel, samples_per_cell=tuple(factors))

    @staticmethod
    def for_coarse_grid(
        lat: np.ndarray,
        lon: np.ndarray,
        model_grid: Grid,
        noise=0.1,
        lat_bounds: np.ndarray | None = None,
        lon_bounds: np.ndarray | None = None,
        *,
        noise_reference_area: float | None = None,
        name: str = "coarse",
        channel: int = 0,
    ) -> CoarseGrain:
        """The cells of a coarse field on any lat-lon grid (class doc: aligned blocks,
        area overlaps, cells cut by the domain's edge), for the model's grid and every
        refinement of it.

        Args:
            lat, lon: the coarse cells' centres (n_lat,), (n_lon,), ascending, degrees
                (the first and second axis of ``model_grid``).
            model_grid: the grid the model was trained on (which cells are observed, and
                whether they are aligned blocks, is decided on it).
            noise: the std of every cell, or one per coarse cell, (n_lat, n_lon).
            lat_bounds, lon_bounds: CF cell bounds (n, 2); None: from the centres
                (midpoints, the outer edges half a spacing out). Derived edges within a
                quarter of a grid spacing of aligned blocks are taken as those blocks
                (:func:`~hdm.data.coarsen.coarse_grain` puts its centres slightly
                equatorward of the blocks' middles); given bounds are taken as they are.
            noise_reference_area: with it, ``noise`` is the std of a cell covering this
                area (degree², 1.0 = a 1° × 1° cell) and each cell gets
                :func:`area_scaled_noise` of its covered area; None: ``noise`` as given.

        Returns:
            the operator of the observed cells (rows and columns of the coarse grid,
            ``source_index`` the first), with ``samples_per_cell`` per axis (f along an
            aligned axis, None along an area-overlap one).

        Raises:
            ObservationError: centres or bounds that do not make increasing contiguous
                cells, a noise array of another shape, or a coarse grid none of whose
                cells is at least half inside the model's domain (both extents named).
        """
        if model_grid.ndim != 2:
            raise ObservationError(f"{name}: needs a 2-D model grid, got {model_grid.describe()}")
        placed = []
        for axis, centres, bounds in zip(model_grid.axes, (lat, lon), (lat_bounds, lon_bounds)):
            edges, given = _coarse_edges(centres, bounds, axis.name, name)
            try:  # derived edges are snapped within the centres' own uncertainty
                cells = cells_on_axis(
                    edges, axis, align_tol=1e-6 if given else 0.25, min_coverage=MIN_COVERAGE
                )
            except CellError as exc:
                raise ObservationError(f"{name}: {exc}") from None
            placed.append(cells)
        if any(p.keep.stop == p.keep.start for p in placed):
            raise ObservationError(_outside_message(name, placed, model_grid))
        uncovered = _uncovered_message(name, placed, model_grid)
        if uncovered:
            raise ObservationError(uncovered)
        _log_left_out(name, placed, model_grid)
        factors = tuple(p.factor for p in placed)
        op = CoarseGrain(
            tuple(tuple(p.edges[p.keep.start : p.keep.stop + 1]) for p in placed),
            0.1,
            name,
            channel,
            samples_per_cell=None if factors == (None, None) else factors,
            source_shape=tuple(p.coverage.size for p in placed),
            source_index=tuple(p.keep.start for p in placed),
        )
        per_cell = _cell_noise(op, noise, model_grid, noise_reference_area)
        return dataclasses.replace(op, noise=per_cell, _cache={})

    def covered_area(self, grid: Grid) -> np.ndarray:
        """A_I (n_obs,): the area of each cell that the grid's cells cover, Π_k Σ_j O_k[I, j]
        (:func:`~hdm.hilbert.cells.overlap_lengths`) in the grid's units: degree² on a
        lat-lon grid, at the cell's latitude (cos φ left out, as it cancels in
        :func:`area_scaled_noise`)."""
        if grid.ndim != len(self.edges):
            raise ObservationError(
                f"{self.name} has {len(self.edges)} axes, the grid has {grid.ndim}"
            )
        lengths = [
            overlap_lengths(np.asarray(e), *fine_cells(a), a.length if a.periodic else None).sum(1)
            for a, e in zip(grid.axes, self.edges)
        ]
        return functools.reduce(np.multiply.outer, lengths).ravel()

    def source_values(self, values: np.ndarray) -> np.ndarray:
        """The observed cells' values (..., n_obs) from ``values`` (..., *source_shape) on
        the coarse grid the operator was made from (without one: (..., *cell_shape))."""
        values = np.asarray(values)
        shape = self.source_shape or self.cell_shape
        lead = values.ndim - len(shape)
        if lead < 0 or values.shape[lead:] != shape:
            raise ObservationError(
                f"{self.name}: values of shape {values.shape} for a coarse grid of shape {shape}"
            )
        index = self.source_index or (0,) * len(shape)
        cells = tuple(slice(i, i + n) for i, n in zip(index, self.cell_shape))
        return values[(..., *cells)].reshape(*values.shape[:lead], self.n_obs())

    def weights(self, grid: Grid) -> tuple[torch.Tensor, ...]:
        """Per-axis row-normalised weight matrices (n_cells_k, n_points_k), float64."""
        key = ("weights", grid)
        if key not in self._cache:
            if grid.ndim != len(self.edges):
                raise ObservationError(
                    f"{self.name} has {len(self.edges)} axes, the grid has {grid.ndim}"
                )
            check_observable(grid, self.name)
            samples = self.samples_per_cell or (None,) * grid.ndim
            mats = []
            for k, (axis, edges) in enumerate(zip(grid.axes, self.edges)):
                lat_weighted = k == 0 and isinstance(grid, LatLonGrid | GlobalGrid)
                if samples[k] is None and k == 0 and isinstance(grid, GlobalGrid):
                    w = sphere_latitude_overlaps(np.asarray(edges), grid)
                elif samples[k] is None:
                    period = axis.length if axis.periodic else None
                    w = overlap_lengths(np.asarray(edges), *fine_cells(axis), period)
                    if lat_weighted:
                        w = w * np.cos(np.deg2rad(axis.coords))[None, :]
                else:
                    w = self._midpoint_matrix(k, axis, lat_weighted, grid)
                empty = np.flatnonzero(w.sum(1) <= 0)
                if empty.size:
                    raise ObservationError(
                        f"{self.name}: coarse cell {int(empty[0])} along {axis.name!r} "
                        f"([{edges[empty[0]]:g}, {edges[empty[0] + 1]:g}]) contains no point "
                        f"of {grid.describe()}"
                    )
                mats.append(torch.as_tensor(w / w.sum(1, keepdims=True)))
            self._cache[key] = tuple(mats)
        return self._cache[key]

    def _midpoint_matrix(self, k: int, axis, lat_weighted: bool, grid: Grid) -> np.ndarray:
        """(n_cells, n_points) unnormalised midpoint-rule weights of axis k."""
        edges = np.asarray(self.edges[k])
        f = self.samples_per_cell[k]
        offsets = (np.arange(f) + 0.5) / f
        samples = (edges[:-1, None] + offsets[None, :] * np.diff(edges)[:, None]).ravel()
        try:
            index, linear = multilinear_stencil((axis,), samples[:, None])
        except OutsideGridError as exc:
            first = exc.point
            cell = first // f
            raise ObservationError(
                f"{self.name}: coarse cell {cell} along {axis.name!r} "
                f"([{edges[cell]:g}, {edges[cell + 1]:g}]) has a sample point at "
                f"{samples[first]:g}, outside {grid.describe()}"
            ) from None
        weight = np.cos(np.deg2rad(samples)) if lat_weighted else np.ones_like(samples)
        rows = np.arange(samples.size)
        interp = np.zeros((samples.size, axis.n))
        np.add.at(interp, (rows, index[:, 0]), weight * linear[:, 0])
        np.add.at(interp, (rows, index[:, 1]), weight * linear[:, 1])
        return interp.reshape(len(edges) - 1, f, axis.n).sum(1)

    def _apply(self, u, grid):
        w = [m.to(device=u.device, dtype=u.dtype) for m in self.weights(grid)]
        if grid.ndim == 1:
            out = u @ w[0].T
        else:
            out = torch.einsum("Ii,bij,Jj->bIJ", w[0], u, w[1])
        return out.reshape(u.shape[0], -1)

    def _adjoint(self, v, grid):
        w = [m.to(device=v.device, dtype=v.dtype) for m in self.weights(grid)]
        if grid.ndim == 1:
            return v @ w[0]
        cells = v.reshape(v.shape[0], *self.cell_shape)
        return torch.einsum("Ii,bIJ,Jj->bij", w[0], cells, w[1])


def check_geographic(
    points: np.ndarray,
    ids: Sequence[str],
    name: str,
    lon_range: tuple[float, float] = LONGITUDE_RANGE,
) -> None:
    """An ObservationError naming the first station whose latitude is beyond ±90° or whose
    longitude is outside ``lon_range`` (default −180..360°: no convention gives 400°, a
    typo, not 40°)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    bad_lat = np.flatnonzero(np.abs(pts[:, 0]) > 90.0)
    if bad_lat.size:
        k = bad_lat[0]
        raise ObservationError(f"{name}: station {ids[k]} has latitude {pts[k, 0]:g}, beyond ±90°")
    lo, hi = lon_range
    bad_lon = np.flatnonzero((pts[:, 1] < lo) | (pts[:, 1] > hi))
    if bad_lon.size:
        k = bad_lon[0]
        raise ObservationError(
            f"{name}: station {ids[k]} has longitude {pts[k, 1]:g}, outside {lo:g}..{hi:g}° "
            "(degrees east, in -180..180 or 0..360)"
        )


def check_observable(grid: Grid, name: str) -> None:
    """An ObservationError for grids the operators cannot read yet: a Gauss–Legendre
    global grid (its latitudes are not a regular axis)."""
    if isinstance(grid, GlobalGrid) and grid.quadrature != "equiangular":
        raise ObservationError(
            f"{name}: observations on {grid.describe()} are not supported; sample on the "
            "equiangular grid of the same size"
        )


def _cell_noise(
    op: CoarseGrain, noise, model_grid: Grid, reference_area: float | None
) -> float | tuple[float, ...]:
    """The noise of ``op``'s cells from one std or one per cell of its source grid,
    scaled by :func:`area_scaled_noise` when ``reference_area`` is given."""
    std = np.asarray(noise, dtype=np.float64)
    if std.ndim == 0 and reference_area is None:
        return float(std)  # one std stays one number, as the other constructors keep it
    if std.ndim == 0:
        std = np.full(op.n_obs(), float(std))
    elif std.shape == op.source_shape:
        std = op.source_values(std)
    else:
        raise ObservationError(
            f"{op.name}: noise must be one std or one per coarse cell {op.source_shape}, "
            f"got shape {std.shape}"
        )
    if reference_area is not None:
        std = area_scaled_noise(std, op.covered_area(model_grid), reference_area)
    return tuple(float(s) for s in std)


# ----------------------------------------------------------------- point samples


@dataclass(frozen=True)
class PointSample(ObservationOperator):
    """Multilinear interpolation at points (n_obs, ndim) in the grid's physical units
    ((lat, lon) degrees on a lat-lon grid); ``ids`` name them in errors."""

    points: tuple[tuple[float, ...], ...]
    noise: float | tuple[float, ...] = 0.1
    ids: tuple[str, ...] = ()
    name: str = "stations"
    channel: int = 0
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        pts = np.atleast_2d(np.asarray(self.points, dtype=np.float64))
        object.__setattr__(self, "points", tuple(tuple(float(c) for c in p) for p in pts))
        ids = tuple(str(i) for i in self.ids) or tuple(f"#{i}" for i in range(len(pts)))
        if len(ids) != len(pts):
            raise ObservationError(f"{self.name}: {len(ids)} ids for {len(pts)} points")
        object.__setattr__(self, "ids", ids)
        bad = np.flatnonzero(~np.isfinite(pts).all(1))
        if bad.size:
            raise ObservationError(
                f"{self.name}: station {ids[bad[0]]} has a NaN or infinite coordinate "
                f"{tuple(pts[bad[0]])}"
            )
        noise = self.noise if isinstance(self.noise, int | float) else tuple(self.noise)
        object.__setattr__(self, "noise", noise)
        check_noise_std(noise, len(pts), self.name)

    def n_obs(self) -> int:
        return len(self.points)

    def noise_std(self) -> np.ndarray:
        return check_noise_std(self.noise, self.n_obs(), self.name)

    def labels(self) -> list[str]:
        return list(self.ids)

    def subset(self, keep: np.ndarray) -> PointSample:
        """The stations selected by a boolean mask or index array."""
        idx = np.arange(self.n_obs())[np.asarray(keep)]
        std = self.noise_std()[idx]
        return PointSample(
            tuple(self.points[i] for i in idx),
            tuple(std),
            tuple(self.ids[i] for i in idx),
            self.name,
            self.channel,
        )

    def stencil(self, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices and weights of the 2^d neighbours of every point, (n_obs, 2^d).
        On a global grid: bilinear in latitude and longitude, longitudes wrapped round
        the circle; the pole rows hold one value each, so a station near a pole reads
        the polar cap's value and its ring's (not a great-circle interpolation)."""
        key = ("stencil", grid)
        if key in self._cache:
            return self._cache[key]
        check_observable(grid, self.name)
        pts = np.asarray(self.points)
        if pts.shape[1] != grid.ndim:
            raise ObservationError(
                f"{self.name}: points have {pts.shape[1]} coordinates, "
                f"the grid has {grid.ndim} axes"
            )
        if isinstance(grid, LatLonGrid | GlobalGrid):
            # a station moved into the grid's longitude window may sit half a spacing west
            # of −180° (hdm.downscaling.inputs.lon_in_grid)
            lon = grid.axes[1]
            west = min(LONGITUDE_RANGE[0], lon.coords[0] - lon.spacing / 2)
            check_geographic(pts, self.ids, self.name, (west, LONGITUDE_RANGE[1]))
        try:
            idx, wts = multilinear_stencil(grid.axes, pts, ids=self.ids)
        except OutsideGridError as exc:
            raise ObservationError(f"{self.name}: {exc}") from None
        self._cache[key] = (torch.as_tensor(idx), torch.as_tensor(wts))
        return self._cache[key]

    def _apply(self, u, grid):
        idx, wts = self.stencil(grid)
        flat = u.reshape(u.shape[0], -1)
        return (flat[:, idx.to(u.device)] * wts.to(device=u.device, dtype=u.dtype)).sum(-1)

    def _adjoint(self, v, grid):
        idx, wts = self.stencil(grid)
        contrib = v[:, :, None] * wts.to(device=v.device, dtype=v.dtype)[None]
        out = torch.zeros(v.shape[0], grid.size, dtype=v.dtype, device=v.device)
        out.index_add_(1, idx.reshape(-1).to(v.device), contrib.reshape(v.shape[0], -1))
        return out.reshape(v.shape[0], *grid.shape)


def subgrid(
    grid: Grid, mask: np.ndarray, noise: float = 0.1, name: str = "subgrid", channel: int = 0
) -> PointSample:
    """Observations at the grid nodes where ``mask`` (grid.shape, bool) is True: a
    PointSample at those nodes' coordinates (the same points on every refined grid)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != grid.shape:
        raise ObservationError(f"{name}: mask of shape {mask.shape} for grid {grid.shape}")
    if not mask.any():
        raise ObservationError(f"{name}: the mask selects no grid point")
    mesh = np.meshgrid(*grid.coords(), indexing="ij")
    pts = np.stack([m[mask] for m in mesh], axis=1)
    ids = tuple(f"node{tuple(int(i) for i in ix)}" for ix in np.argwhere(mask))
    return PointSample(tuple(map(tuple, pts)), noise, ids, name, channel)


# ----------------------------------------------------------------- composites


@dataclass(frozen=True)
class Composite(ObservationOperator):
    """Several sources stacked: y = [A_1 x; A_2 x; ...], block-diagonal noise."""

    parts: tuple[ObservationOperator, ...]
    name: str = "composite"
    channel: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.parts:
            raise ObservationError("a Composite needs at least one observation operator")

    def n_obs(self) -> int:
        return sum(p.n_obs() for p in self.parts)

    def noise_std(self) -> np.ndarray:
        return np.concatenate([p.noise_std() for p in self.parts])

    def labels(self) -> list[str]:
        return [label for p in self.parts for label in p.labels()]

    def slices(self) -> dict[str, slice]:
        """Where each source's observations sit in y."""
        out, start = {}, 0
        for p in self.parts:
            out[p.name] = slice(start, start + p.n_obs())
            start += p.n_obs()
        return out

    def apply(self, x, grid):
        return torch.cat([p.apply(x, grid) for p in self.parts], dim=1)

    def adjoint(self, v, grid, channels=1):
        out, start = None, 0
        for p in self.parts:
            part = p.adjoint(v[:, start : start + p.n_obs()], grid, channels)
            out = part if out is None else out + part
            start += p.n_obs()
        return out

    def _apply(self, u, grid):
        return self.apply(u[:, None], grid)

    def _adjoint(self, v, grid):
        return self.adjoint(v, grid, 1)[:, 0]
