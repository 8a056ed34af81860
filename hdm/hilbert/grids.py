"""Grids: where a function is held, its physical wavenumbers and its quadrature weights.

A field u: D → R^C is stored as its values on a grid of D. Every grid here knows

- its coordinates along each axis (physical units, e.g. hours, degrees, metres),
- its quadrature weights w_i, with Σ_i w_i = |D| (the domain's length/area), so that
  ∫_D u v ≈ Σ_i w_i u_i v_i converges as the grid is refined,
- the *spectral embedding* used by :mod:`hdm.hilbert.covariance`: a periodic grid of
  period P per axis on which stationary Gaussian fields are drawn with the FFT. For a
  periodic axis P = |D|; for a non-periodic axis of length L with n points (spacing
  h = L/(n−1)) the field is drawn on a periodic domain P = cL (c ≥ 2 an integer chosen
  by the covariance from ℓ/L, never from n) with c(n−1) points and restricted to the
  first n, which gives a *stationary* field; for c = 2 its wavenumbers κ_k = πk/L are
  those of the Neumann cosine basis on [0, L],
- ``with_resolution``: the same domain at another number of points. Because the
  wavenumbers depend on the domain and not on the grid size, a draw on a coarse grid
  and one on a fine grid from the same seed are the same random function (the coarse
  one being the spectral truncation of the fine one). Refinement keeps the end points,
  so a grid of n points and one of (n−1)·r + 1 points share every coarse point.

Axes are ordered as the array's trailing dimensions: a 1-D field has shape (..., n),
a 2-D field (..., n_y, n_x) (for lat-lon: (..., n_lat, n_lon)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class Axis:
    """One regular axis: ``n`` points from ``start`` to ``stop`` (``stop`` included when
    not periodic; excluded when periodic, where ``stop`` is the point after the last one,
    i.e. ``start + period``)."""

    start: float
    stop: float
    n: int
    periodic: bool = False
    name: str = "x"

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"axis {self.name!r} needs at least 2 points, got {self.n}")
        if not self.stop > self.start:
            raise ValueError(
                f"axis {self.name!r} must be increasing: start={self.start}, stop={self.stop}"
            )

    @property
    def length(self) -> float:
        """|D| along this axis (a period for a periodic axis)."""
        return self.stop - self.start

    @property
    def spacing(self) -> float:
        return self.length / (self.n if self.periodic else self.n - 1)

    @property
    def coords(self) -> np.ndarray:
        """Point coordinates, shape (n,), float64."""
        if self.periodic:
            return self.start + self.spacing * np.arange(self.n)
        return np.linspace(self.start, self.stop, self.n)

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights (periodic: rectangle rule; otherwise trapezoid), sum = length."""
        w = np.full(self.n, self.spacing)
        if not self.periodic:
            w[0] = w[-1] = self.spacing / 2
        return w

    def embedding_size(self, factor: int = 2) -> int:
        """Points of the periodic grid on which this axis' stationary fields are drawn:
        n if periodic, else factor·(n − 1) (period factor·L, the grid's points on it)."""
        return self.n if self.periodic else factor * (self.n - 1)

    def embedding_period(self, factor: int = 2) -> float:
        """Period P of that grid, physical units."""
        return self.length if self.periodic else factor * self.length

    def wavenumbers(self, factor: int = 2) -> np.ndarray:
        """Physical angular wavenumbers κ_k = 2π k / P of the embedding's FFT, FFT order."""
        m = self.embedding_size(factor)
        return 2 * math.pi * np.fft.fftfreq(m, d=1.0 / m) / self.embedding_period(factor)

    def mode_indices(self, factor: int = 2) -> np.ndarray:
        """Integer mode numbers k of the embedding's FFT, in FFT order."""
        m = self.embedding_size(factor)
        return np.rint(np.fft.fftfreq(m, d=1.0 / m)).astype(np.int64)

    def with_points(self, n: int) -> Axis:
        return replace(self, n=int(n))

    def describe(self) -> str:
        kind = "periodic" if self.periodic else "closed"
        return f"{self.name} ∈ [{self.start:g}, {self.stop:g}] ({kind}, {self.n} points)"


@dataclass(frozen=True)
class Grid:
    """A regular tensor-product grid of one or more axes.

    ``shape`` is the trailing shape of a field on the grid; ``coords()`` returns one array
    per axis; ``weights()`` the product quadrature weights, shape ``shape``.
    """

    axes: tuple[Axis, ...]

    def __post_init__(self) -> None:
        if not self.axes:
            raise ValueError("a grid needs at least one axis")

    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.n for a in self.axes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def volume(self) -> float:
        """|D|: length (1-D) or area (2-D) of the domain."""
        return float(np.prod([a.length for a in self.axes]))

    def coords(self) -> tuple[np.ndarray, ...]:
        return tuple(a.coords for a in self.axes)

    def weights(self) -> np.ndarray:
        """Quadrature weights w, shape ``shape``, Σ w = |D|."""
        w = np.ones(())
        for a in self.axes:
            w = np.multiply.outer(w, a.weights)
        return w

    def weights_tensor(self, dtype=torch.float32, device=None) -> torch.Tensor:
        return torch.as_tensor(self.weights(), dtype=dtype, device=device)

    def normalised_coords(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """Coordinate channels in [0, 1] across the *domain* (not the grid), shape
        (ndim, *shape): the same physical point gets the same value on every resolution."""
        mesh = np.meshgrid(*[(a.coords - a.start) / a.length for a in self.axes], indexing="ij")
        return torch.as_tensor(np.stack(mesh), dtype=dtype, device=device)

    def with_resolution(self, *shape: int) -> Grid:
        """The same domain with ``shape`` points (one int per axis, or one int for all)."""
        if len(shape) == 1 and self.ndim > 1:
            shape = shape * self.ndim
        if len(shape) != self.ndim:
            raise ValueError(f"grid has {self.ndim} axes but {len(shape)} sizes were given")
        return replace(self, axes=tuple(a.with_points(n) for a, n in zip(self.axes, shape)))

    def refined(self, factor: int) -> Grid:
        """Refine by an integer factor keeping every existing point."""
        sizes = [a.n * factor if a.periodic else (a.n - 1) * factor + 1 for a in self.axes]
        return self.with_resolution(*sizes)

    def same_domain(self, other: Grid, rtol: float = 1e-6) -> bool:
        if self.ndim != other.ndim:
            return False
        return all(
            a.periodic == b.periodic
            and math.isclose(a.start, b.start, rel_tol=rtol, abs_tol=rtol * a.length)
            and math.isclose(a.stop, b.stop, rel_tol=rtol, abs_tol=rtol * a.length)
            for a, b in zip(self.axes, other.axes)
        )

    def describe(self) -> str:
        return " × ".join(a.describe() for a in self.axes)

    def to_dict(self) -> dict:
        return {
            "kind": type(self).__name__,
            "axes": [
                {"start": a.start, "stop": a.stop, "n": a.n, "periodic": a.periodic, "name": a.name}
                for a in self.axes
            ],
        }

    @staticmethod
    def from_dict(d: dict) -> Grid:
        kinds = {
            "Grid": Grid,
            "IntervalGrid": Grid,
            "RectGrid": Grid,
            "LatLonGrid": LatLonGrid,
            "GlobalGrid": GlobalGrid,
        }
        if d.get("kind") not in kinds:
            raise ValueError(f"unknown grid kind {d.get('kind')!r}; known: {sorted(kinds)}")
        axes = tuple(Axis(**a) for a in d["axes"])
        if d["kind"] == "GlobalGrid":
            return GlobalGrid(axes=axes, quadrature=d.get("quadrature", "equiangular"))
        return kinds[d["kind"]](axes=axes)


def IntervalGrid(start: float, stop: float, n: int, name: str = "x") -> Grid:
    """n points on the closed interval [start, stop] (end points included)."""
    return Grid(axes=(Axis(float(start), float(stop), int(n), False, name),))


def PeriodicGrid(lengths: tuple[float, ...], shape: tuple[int, ...]) -> Grid:
    """A periodic box [0, L_1) × … × [0, L_d) (a torus), ``shape`` points per axis."""
    names = ("x",) if len(shape) == 1 else ("y", "x")
    return Grid(
        axes=tuple(
            Axis(0.0, float(length), int(n), True, name)
            for length, n, name in zip(lengths, shape, names)
        )
    )


def RectGrid(y: tuple[float, float], x: tuple[float, float], shape: tuple[int, int]) -> Grid:
    """A closed (non-periodic) rectangle [y0, y1] × [x0, x1] with ``shape`` = (n_y, n_x)."""
    return Grid(
        axes=(
            Axis(float(y[0]), float(y[1]), int(shape[0]), False, "y"),
            Axis(float(x[0]), float(x[1]), int(shape[1]), False, "x"),
        )
    )


@dataclass(frozen=True)
class LatLonGrid(Grid):
    """A regular latitude-longitude grid (degrees), axes (lat, lon), latitude ascending.

    Longitude is periodic when the grid spans the full circle. Quadrature weights are
    area weights: the trapezoid weights in degrees times cos(latitude), so Σ w is the
    area in square degrees at the equator's scale (multiply by (π R/180)² for m²).
    Covariances on this grid are stationary in (lat, lon) degrees: a regional
    approximation that is adequate for boxes of a few tens of degrees.
    """

    @staticmethod
    def regular(
        lat: tuple[float, float], lon: tuple[float, float], shape: tuple[int, int]
    ) -> LatLonGrid:
        lat0, lat1 = lat
        if not (-90 <= lat0 < lat1 <= 90):
            raise ValueError(f"latitudes must satisfy -90 <= start < stop <= 90, got {lat}")
        periodic = math.isclose(lon[1] - lon[0], 360.0)
        return LatLonGrid(
            axes=(
                Axis(float(lat0), float(lat1), int(shape[0]), False, "lat"),
                Axis(float(lon[0]), float(lon[1]), int(shape[1]), periodic, "lon"),
            )
        )

    def weights(self) -> np.ndarray:
        w = super().weights()
        return w * np.cos(np.deg2rad(self.axes[0].coords))[:, None]


#: the longitudes a point may be given in: degrees east in −180..180 or 0..360 (outside
#: both, e.g. 400°, it is a typo, not 40°)
LONGITUDE_RANGE = (-180.0, 360.0)
#: the latitude quadratures of a global grid (:class:`GlobalGrid`)
SPHERE_QUADRATURES = ("equiangular", "legendre-gauss")
#: the sphere's area in square degrees (4π sr), the total of a global grid's weights
SPHERE_AREA_DEG2 = 4 * math.pi * (180 / math.pi) ** 2


@dataclass(frozen=True)
class GlobalGrid(Grid):
    """The whole sphere on a latitude–longitude grid (degrees), axes (lat, lon).

    Latitudes ascend from the south; longitudes are periodic, ``nlon`` points from −180°.
    ``quadrature``:

    - "equiangular": ``nlat`` equally spaced latitudes from pole to pole, both poles
      included (ERA5's 0.25° and 1° grids: 721 × 1440, 181 × 360), Clenshaw–Curtis
      weights in sin(latitude); refining by r keeps every point.
    - "legendre-gauss": the ``nlat`` Gauss–Legendre latitudes (no poles), exact for
      band-limited fields of degree < nlat; no two resolutions share a latitude.

    Weights are area weights in square degrees, w_ij = q_i Δλ (180/π)² with q the
    latitude quadrature on sin(latitude) ∈ [−1, 1] and Δλ = 2π/nlon: Σ w = 4π sr =
    :data:`SPHERE_AREA_DEG2`, and Σ w f → ∫ f dΩ as the grid is refined. The transforms
    (:mod:`torch_harmonics`, :class:`~hdm.hilbert.covariance.SphericalCovariance`)
    resolve degrees ℓ < :attr:`max_degree`.
    """

    quadrature: str = "equiangular"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quadrature not in SPHERE_QUADRATURES:
            raise ValueError(
                f"unknown quadrature {self.quadrature!r}; known: {list(SPHERE_QUADRATURES)}"
            )
        lat, lon = self.axes
        if not (math.isclose(lat.start, -90.0) and math.isclose(lat.stop, 90.0)):
            raise ValueError(
                f"a global grid spans latitudes −90..90; got {lat.start:g}..{lat.stop:g} "
                "(a regional box is a LatLonGrid)"
            )
        if not (lon.periodic and math.isclose(lon.length, 360.0)):
            raise ValueError(
                f"a global grid's longitudes go round the circle (periodic, 360°); got "
                f"{lon.start:g}..{lon.stop:g}{'' if lon.periodic else ' (closed)'}"
            )
        if lat.n < 3 or lon.n < 4:
            raise ValueError(f"a global grid needs at least 3 × 4 points, got {lat.n} × {lon.n}")

    @staticmethod
    def make(nlat: int, nlon: int, quadrature: str = "equiangular") -> GlobalGrid:
        """The global grid of ``nlat`` latitudes and ``nlon`` longitudes from −180°."""
        return GlobalGrid(
            axes=(
                Axis(-90.0, 90.0, int(nlat), False, "lat"),
                Axis(-180.0, 180.0, int(nlon), True, "lon"),
            ),
            quadrature=quadrature,
        )

    @property
    def max_degree(self) -> int:
        """L: the spherical-harmonic degrees ℓ < L (and orders |m| ≤ ℓ) the grid
        resolves: L = min(nlat, nlon/2 + 1) (triangular truncation)."""
        return min(self.axes[0].n, self.axes[1].n // 2 + 1)

    def sin_latitude_quadrature(self) -> tuple[np.ndarray, np.ndarray]:
        """(sin(latitude) nodes ascending, weights summing to 2)."""
        from torch_harmonics.quadrature import clenshaw_curtiss_weights, legendre_gauss_weights

        rule = (
            clenshaw_curtiss_weights if self.quadrature == "equiangular" else legendre_gauss_weights
        )
        nodes, weights = rule(self.axes[0].n, -1.0, 1.0)
        return np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64)

    def coords(self) -> tuple[np.ndarray, ...]:
        if self.quadrature == "equiangular":
            return super().coords()
        nodes, _ = self.sin_latitude_quadrature()
        return np.rad2deg(np.arcsin(nodes)), self.axes[1].coords

    def weights(self) -> np.ndarray:
        _, q = self.sin_latitude_quadrature()
        dlon = 2 * math.pi / self.axes[1].n
        return np.multiply.outer(q, np.full(self.axes[1].n, dlon)) * (180 / math.pi) ** 2

    def refined(self, factor: int) -> Grid:
        """``factor`` × the resolution; an equiangular grid keeps every existing point."""
        nlat, nlon = self.shape
        if self.quadrature == "equiangular":
            return self.with_resolution((nlat - 1) * factor + 1, nlon * factor)
        return self.with_resolution(nlat * factor, nlon * factor)

    def same_domain(self, other: Grid, rtol: float = 1e-6) -> bool:
        return isinstance(other, GlobalGrid)

    def describe(self) -> str:
        return f"global {self.shape[0]} × {self.shape[1]} ({self.quadrature})"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "quadrature": self.quadrature}


class OutsideGridError(ValueError):
    """A point (a station) outside the grid it is interpolated on; ``point`` is the index
    of the first such point."""

    def __init__(self, message: str, point: int) -> None:
        super().__init__(message)
        self.point = point


#: a point within this fraction of the axis' extent outside it still counts as on it
_EDGE_RTOL = 1e-9


def _axis_neighbours(
    axis: Axis | np.ndarray, x: np.ndarray, period: float | None, name: str, ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower node, upper node, weight of the upper node) of every coordinate in ``x``.

    A regular :class:`Axis` locates points by their position (x − start)/h, snapped to a
    node within 1e-9 spacings; a coordinate array by the interval that holds them,
    (x − c_i)/(c_{i+1} − c_i). A periodic axis (``period``, or a periodic Axis) wraps the
    points outside [c_0, c_0 + period) and joins its last node to its first. On a bounded
    axis a point up to half a spacing beyond the outermost node lies in that node's cell
    and takes its value (a station at 58.05° N on a grid whose last row is 58°); one
    farther out is an :class:`OutsideGridError`."""
    coords = axis.coords if isinstance(axis, Axis) else np.asarray(axis, dtype=np.float64)
    if coords.ndim != 1 or coords.size < 2 or np.any(np.diff(coords) <= 0):
        raise ValueError(f"axis {name} must be 1-D, strictly ascending, with ≥ 2 values")
    if isinstance(axis, Axis) and axis.periodic:
        period = axis.length
    n, lo = coords.size, coords[0]
    if period is not None:
        outside = (x < lo) | (x >= lo + period)  # only these move: on-grid points stay exact
        x = np.where(outside, lo + np.mod(x - lo, period), x)
        ext = np.append(coords, lo + period)
    else:
        hi = coords[-1]
        tol = _EDGE_RTOL * max(1.0, abs(lo), abs(hi))
        west, east = lo - (coords[1] - lo) / 2 - tol, hi + (hi - coords[-2]) / 2 + tol
        bad = np.flatnonzero(~np.isfinite(x) | (x < west) | (x > east))
        if bad.size:
            k = int(bad[0])
            raise OutsideGridError(
                f"station {ids[k]} at {name}={x[k]:g} lies outside the grid "
                f"({name} ∈ [{lo:g}, {hi:g}], its cells [{west + tol:g}, {east - tol:g}]); "
                f"{bad.size} station(s) outside in all",
                k,
            )
        ext = coords
    if isinstance(axis, Axis):
        pos = (x - lo) / axis.spacing
        nearest = np.round(pos)
        pos = np.clip(np.where(np.abs(pos - nearest) < 1e-9, nearest, pos), 0.0, ext.size - 1)
        lower = np.minimum(np.floor(pos).astype(np.int64), ext.size - 2)
        frac = pos - lower
    else:
        lower = np.clip(np.searchsorted(ext, x, side="right") - 1, 0, ext.size - 2)
        frac = np.clip((x - ext[lower]) / (ext[lower + 1] - ext[lower]), 0.0, 1.0)
    return lower, (lower + 1) % n, frac


def multilinear_stencil(
    axes: Sequence[Axis | np.ndarray],
    points: np.ndarray,
    *,
    periods: Sequence[float | None] | None = None,
    names: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multilinear (bilinear in 2-D) interpolation weights of points on a tensor grid:
    the one stencil of station operators, station scores and simulated stations.

    In 2-D, for a point in the cell [φ_i, φ_{i+1}] × [λ_j, λ_{j+1}] with fractions s, t
    along the two axes, the value is (1−s)(1−t) u_{i,j} + (1−s) t u_{i,j+1}
    + s (1−t) u_{i+1,j} + s t u_{i+1,j+1}; it is exact for fields linear in each axis and
    gives the node's value on a node.

    Args:
        axes: per axis, a regular :class:`Axis` or ascending 1-D coordinates.
        points: (n, d) coordinates in the axes' units (e.g. (lat, lon) degrees).
        periods: per axis, a period (360 for a longitude circle) or None; a periodic
            Axis is periodic whatever is given.
        names: the axes' names for messages (default: the Axis names, or x0, x1, ...).
        ids: the points' names for messages (default: #0, #1, ...).

    Returns:
        ``(index, weight)``, both (n, 2^d): flat C-order indices into the grid and their
        weights (summing to 1 per point), corners in the order (0,…,0), (0,…,1), ….

    Raises:
        OutsideGridError: a point outside a non-periodic axis (or with a non-finite
            coordinate), naming the first such point, the axis and the count.
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    d = len(axes)
    if pts.shape[1] != d:
        raise ValueError(f"points have {pts.shape[1]} coordinates, the grid has {d} axes")
    ids = list(ids) if ids is not None else [f"#{i}" for i in range(len(pts))]
    names = list(names or [a.name if isinstance(a, Axis) else f"x{k}" for k, a in enumerate(axes)])
    periods = list(periods or [None] * d)
    parts = [_axis_neighbours(axes[k], pts[:, k], periods[k], names[k], ids) for k in range(d)]
    sizes = [a.n if isinstance(a, Axis) else len(a) for a in axes]
    strides = np.cumprod((1, *sizes[::-1]))[::-1][1:]
    corners = np.array(np.meshgrid(*[[0, 1]] * d, indexing="ij")).reshape(d, -1)
    index = np.zeros((len(pts), corners.shape[1]), dtype=np.int64)
    weight = np.ones((len(pts), corners.shape[1]))
    for k, (lower, upper, frac) in enumerate(parts):
        c = corners[k][None, :]
        index += np.where(c == 1, upper[:, None], lower[:, None]) * strides[k]
        weight *= np.where(c == 1, frac[:, None], 1.0 - frac[:, None])
    return index, weight


@dataclass(frozen=True)
class PointSet:
    """Irregular points (stations, a ragged 1-D grid): a field on them has shape (..., n).

    ``points`` is a tuple of coordinate tuples (hashable, so operators can cache their
    Gram matrices); build it with :meth:`from_array`. Only dense, kernel-on-points
    covariances (:class:`~hdm.hilbert.covariance.KernelCovariance`) apply here.
    """

    points: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a point set needs at least one point")
        dims = {len(p) for p in self.points}
        if len(dims) != 1:
            raise ValueError(f"all points must have the same dimension, got {sorted(dims)}")
        if not np.all(np.isfinite(self.as_array())):
            bad = int(np.flatnonzero(~np.isfinite(self.as_array()).all(axis=1))[0])
            raise ValueError(f"point {bad} has non-finite coordinates {self.points[bad]}")

    @staticmethod
    def from_array(points: np.ndarray) -> PointSet:
        """From an array of shape (n, d) (or (n,) for 1-D points)."""
        arr = np.asarray(points, dtype=np.float64)
        arr = arr[:, None] if arr.ndim == 1 else arr
        return PointSet(tuple(tuple(float(v) for v in row) for row in arr))

    def as_array(self) -> np.ndarray:
        """Coordinates, shape (n, d)."""
        return np.asarray(self.points, dtype=np.float64)

    @property
    def ndim(self) -> int:
        return 1  # fields on a point set have one trailing dimension

    @property
    def shape(self) -> tuple[int]:
        return (len(self.points),)

    @property
    def size(self) -> int:
        return len(self.points)

    def describe(self) -> str:
        return f"{self.size} points in {len(self.points[0])}-D"
