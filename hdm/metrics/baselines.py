r"""Baselines for downscaling: kriging (GP regression) on coarse fields and stations
(interpolation of the coarse field is :func:`hdm.data.regrid.interpolate_coarse`, of
cell means from their cells' middles where the file gives the cells:
:func:`at_cell_middles`).

Kriging / Gaussian-process regression
-------------------------------------
*Prior.* The field on the target grid, f (n = n_lat · n_lon values, row-major: lat then
lon), is Gaussian with mean m (per pixel) and covariance

.. math:: K_f = K + \tau^2 I, \qquad K_{ab} = \sigma^2 \rho(d_{ab}/\ell),

a stationary isotropic kernel of the distance in degrees

.. math:: d_{ab}^2 = (\varphi_a - \varphi_b)^2 + c^2 (\lambda_a - \lambda_b)^2,

with c = cos(mean latitude of the training grid) (``lon_factor``; 1 with
``scale_lon=False``): the local great-circle distance in degrees of latitude for a
regional domain, without the cost of a full spherical kernel. On the whole sphere
(``metric="chordal"``) d is the chord between the points in degrees,
d_ab = (180/π) |x_a − x_b| with x the unit vectors: a kernel positive definite in
R³ restricted to the sphere stays positive definite there (a Matérn kernel of the
great-circle distance does not, for ν > 1/2), and d equals the great-circle distance
to within 1 % up to 28° of arc. ρ is the squared
exponential exp(−r²/2) or the Matérn correlation
:math:`\frac{2^{1-\nu}}{\Gamma(\nu)} (\sqrt{2\nu} r)^\nu K_\nu(\sqrt{2\nu} r)`
(closed forms for ν = 1/2, 3/2, 5/2). The nugget τ² is white pixel-scale variance that
the training fields contain (unresolved variability, analysis noise): it is part of
the field to be predicted, so it sits in K_f and in the posterior variance of every
pixel (and is averaged down by block means: a coarse cell of f² pixels sees τ²/f²).

*Fit* (:func:`fit_kernel`). Anomalies from the per-pixel training mean (the prior mean
m) at up to ``max_points`` random pixels, for up to ``max_fields`` random training
fields treated as independent draws, maximise the Gaussian log-likelihood. With
K = σ²(R_ℓ + t I) (t = τ²/σ²) and the scatter S = Σ_f y_f y_fᵀ of F fields at p
pixels, σ² is profiled out, :math:`\hat\sigma^2 = \mathrm{tr}((R_\ell + tI)^{-1} S)/(Fp)`,
leaving :math:`\min_{\ell, t}\; p \log \hat\sigma^2 + \log\det(R_\ell + tI)`, solved by a
coarse search over ℓ then L-BFGS-B on (log ℓ, log t) (ν fixed). A random pixel subset
is still a valid marginal likelihood of a GP; < 1 s on one core at the defaults
(33 × 49 grid, 600 fields).
Variance that changes across the domain (stationarity) and the correlation of
consecutive training times (independence) are not modelled.

*Posterior* (:func:`gp_posterior`). Observations y = A f + η, η ~ N(0, diag(v)), with A
a linear operator on the grid (block means, bilinear point samples, ...):

.. math::
    B = K_f A^\top, \quad S = A B + \mathrm{diag}(v), \quad
    \mu = m + B S^{-1} (y - A m), \quad
    \mathrm{var}_i = (K_f)_{ii} - \| L^{-1} B_{i,:}^\top \|^2 \ \ (S = L L^\top).

S is factorised once (Cholesky; a jitter 1e-10 · mean diag(S) is added for noiseless
observations); S⁻¹ is never formed. B (n × n_obs) is built in row chunks of K_f (never
an n × n matrix at once) against a sparse A: a 65 × 97 grid (n = 6,305) with ~1,600
observations takes ≈ 3 s and ≈ 0.4 GB on one core. Observations that are NaN are left
out (per batch row: the Cholesky factor of each distinct pattern of missing values is
computed once).

Optimal interpolation with the training covariance
--------------------------------------------------
The stationary kernel above is kriging in its geostatistical form. The stronger linear
baseline for a gridded archive uses the training fields' own covariance: with the N
training fields x_k on the grid, their per-pixel mean m and the anomalies as columns,
F = [x_1 − m, …, x_N − m] / √(N − 1) (n × N; stored as Fᵀ, (N, n)),

.. math:: K_f = F F^\top,

the sample covariance, non-stationary (land, sea and orography set its variance and
correlations) and of rank ≤ N − 1 (:func:`fit_empirical_covariance`). The posterior is
the same Gaussian update, with B = K_f Aᵀ = F (A F)ᵀ formed from F without an n × n
matrix. This is optimal interpolation (the BLUE) with the climatological covariance:
the answer of the Gaussian that :mod:`hdm.hilbert.gaussian` fits for teleportation,
pushed to t = 0. It lives on the training grid only (a sample covariance has no
values between its pixels). Its variance lacks what the N fields do not span (the
scales below their rank), so its spread is too small; its mean is hard to beat.

*Convenience* (:func:`kriging_downscale`). A for the coarse field is the area-weighted
block mean of :func:`hdm.data.coarsen.coarse_grain` (boundary="trim"): block (I, J)
averages the f_φ × f_λ fine cells from the start of the target grid with weights cos φ_i,
trailing rows/columns that do not fill a block are not observed; stations are sampled
bilinearly (:func:`hdm.hilbert.grids.multilinear_stencil`). A coarse field on any other
grid (``factor=None``) is observed as the model observes it: cell means over the target
cells each coarse cell overlaps (weights: overlap length along each axis × cos φ_i; its
edges midway between centres), cells less than half covered left out; or, for point
values (``points=True``: ERA5 on a 1° grid, a subsampled field), bilinearly at the
points, like stations, points beyond the target grid's cells left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy import linalg, optimize
from scipy.special import gamma, kv

from hdm.data.coarsen import MIN_COVERAGE, cell_bounds, coarse_grain
from hdm.data.regrid import (
    STATION,
    check_ascending,
    fine_coords,
    longitude_period,
    spline_resample,
)
from hdm.data.schema import LAT, LON
from hdm.hilbert.cells import edges_from_centres, overlap_lengths
from hdm.hilbert.grids import multilinear_stencil

__all__ = [
    "EmpiricalCovariance",
    "FittedKernel",
    "at_cell_middles",
    "fit_empirical_covariance",
    "fit_kernel",
    "gp_posterior",
    "grid_points",
    "is_coarse_grained_grid",
    "kriging_downscale",
    "on_grid",
]

#: kernel kinds
_KINDS = ("matern", "se")
#: distances: local (regional, d² = Δφ² + c² Δλ²) or chordal (the whole sphere)
_METRICS = ("local", "chordal")
#: most kernel entries per row chunk of K_f Aᵀ (16 MB each, a few temporaries)
_CHUNK_ENTRIES = 2_000_000
#: relative jitter on the diagonal of S = A K_f Aᵀ + diag(v)
_JITTER = 1e-10
#: tolerance, in degrees, when matching coordinates
_COORD_ATOL = 1e-6


# --------------------------------------------------------------------------- interpolation


def at_cell_middles(coarse: xr.DataArray) -> xr.DataArray:
    """``coarse`` with each value placed at the middle of its cell, (lower + upper)/2 of
    the cell bounds it carries along lat and lon (:func:`hdm.data.coarsen.cell_bounds`,
    longitudes within half a turn of their centres, :func:`hdm.data.coarsen.
    with_cell_bounds`), for the interpolation baselines of cell means: a file whose
    centres are not its cells' middles (a cos-weighted centre, a rounded coordinate)
    would otherwise shift the interpolant by their offset. An axis without bounds keeps
    its centres; the values and every other coordinate are unchanged."""
    middles = {}
    for dim in (LAT, LON):
        bounds = cell_bounds(coarse, dim)
        if bounds is not None:
            middles[dim] = (dim, bounds.mean(axis=1), dict(coarse[dim].attrs))
    return coarse.assign_coords(middles)


# --------------------------------------------------------------------------- kernels


def grid_points(grid_lat: np.ndarray, grid_lon: np.ndarray) -> np.ndarray:
    """The (n_lat · n_lon, 2) array of (lat, lon) grid points, row-major (lat, then lon)."""
    lat, lon = np.meshgrid(np.asarray(grid_lat, float), np.asarray(grid_lon, float), indexing="ij")
    return np.stack([lat.ravel(), lon.ravel()], axis=1)


def _correlation(kind: str, nu: float | None, r: np.ndarray) -> np.ndarray:
    """ρ(r), r = d/ℓ ≥ 0, for the squared exponential or Matérn-ν kernel."""
    if kind == "se":
        return np.exp(-0.5 * r * r)
    if nu == 0.5:
        return np.exp(-r)
    if nu == 1.5:
        s = math.sqrt(3.0) * r
        return (1.0 + s) * np.exp(-s)
    if nu == 2.5:
        s = math.sqrt(5.0) * r
        return (1.0 + s + s * s / 3.0) * np.exp(-s)
    s = math.sqrt(2.0 * nu) * r
    with np.errstate(invalid="ignore", over="ignore"):
        rho = (2.0 ** (1.0 - nu) / gamma(nu)) * s**nu * kv(nu, s)
    return np.where(s < 1e-12, 1.0, np.nan_to_num(rho, nan=0.0))


@dataclass(frozen=True, eq=False)
class FittedKernel:
    """A stationary isotropic covariance on (lat, lon) degrees, fitted on training fields.

    Attributes:
        kind: ``"matern"`` or ``"se"`` (squared exponential).
        variance: σ², in the field's units squared.
        lengthscale: ℓ, in degrees (of latitude; longitudes scaled by ``lon_factor``).
        nu: Matérn smoothness ν (``None`` for ``"se"``).
        nugget: τ², white pixel-scale variance (field units squared), see module doc.
        mean_field: (n_lat, n_lon) per-pixel training mean, the default prior mean.
        grid_lat, grid_lon: coordinates of ``mean_field`` (degrees).
        lon_factor: c in d² = Δφ² + c² Δλ² (cos of the training grid's mean latitude).
        metric: ``"local"`` (that d) or ``"chordal"`` (the chord in degrees, module doc).
    """

    kind: str
    variance: float
    lengthscale: float
    nu: float | None
    nugget: float
    mean_field: np.ndarray
    grid_lat: np.ndarray
    grid_lon: np.ndarray
    lon_factor: float = 1.0
    metric: str = "local"

    def __post_init__(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {self.metric!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "matern" and not (self.nu is not None and self.nu > 0):
            raise ValueError(f"a Matérn kernel needs nu > 0, got {self.nu!r}")
        if not (self.variance > 0 and self.lengthscale > 0 and self.nugget >= 0):
            raise ValueError(
                "variance and lengthscale must be positive and nugget non-negative, got "
                f"{self.variance!r}, {self.lengthscale!r}, {self.nugget!r}"
            )
        if not self.lon_factor > 0:
            raise ValueError(f"lon_factor must be positive, got {self.lon_factor!r}")
        shape = (np.size(self.grid_lat), np.size(self.grid_lon))
        if np.shape(self.mean_field) != shape:
            raise ValueError(
                f"mean_field has shape {np.shape(self.mean_field)}, its grid is {shape}"
            )

    def describe(self) -> str:
        """One line: the kernel and its fitted parameters."""
        return (
            f"{self.kind} nu={self.nu} variance={self.variance:.6g} "
            f"lengthscale={self.lengthscale:.6g} deg nugget={self.nugget:.6g} "
            f"lon_factor={self.lon_factor:.6g} metric={self.metric}"
        )

    def distance(self, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
        """(n_a, n_b) distances √(Δφ² + c² Δλ²), or chords, in degrees between (lat, lon)
        points."""
        a = np.asarray(points_a, dtype=np.float64).reshape(-1, 2)
        b = np.asarray(points_b, dtype=np.float64).reshape(-1, 2)
        if self.metric == "chordal":
            xa, xb = _unit_vectors(a), _unit_vectors(b)
            gram = np.clip(xa @ xb.T, -1.0, 1.0)
            return np.degrees(np.sqrt(2.0 * (1.0 - gram)))
        dlat = a[:, None, 0] - b[None, :, 0]
        dlon = self.lon_factor * (a[:, None, 1] - b[None, :, 1])
        return np.sqrt(dlat * dlat + dlon * dlon)

    def correlation(self, distance: np.ndarray) -> np.ndarray:
        """ρ(d / ℓ) for distances in degrees (1 at d = 0)."""
        return _correlation(self.kind, self.nu, np.asarray(distance) / self.lengthscale)

    def covariance(self, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
        """Dense (n_a, n_b) matrix σ² ρ(d_ab / ℓ) between (n, 2) arrays of (lat, lon) degrees.

        The nugget is not included (add τ² on the diagonal for values of pixels).
        """
        return self.variance * self.correlation(self.distance(points_a, points_b))


def _unit_vectors(points: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of (n, 2) (lat, lon) points in degrees."""
    lat, lon = np.deg2rad(points[:, 0]), np.deg2rad(points[:, 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def on_grid(lat_a: np.ndarray, lon_a: np.ndarray, lat_b: np.ndarray, lon_b: np.ndarray) -> bool:
    """Whether two (lat, lon) grids are the same: same sizes, coordinates within 1e-6°."""
    return all(
        np.size(a) == np.size(b) and np.allclose(a, b, rtol=0.0, atol=_COORD_ATOL)
        for a, b in ((lat_a, lat_b), (lon_a, lon_b))
    )


@dataclass(frozen=True, eq=False)
class EmpiricalCovariance:
    """The training fields' own covariance K_f = F Fᵀ on their grid (module doc).

    Attributes:
        anomalies: Fᵀ as (N, n) float64, rows (x_k − m) / √(N − 1), n = n_lat · n_lon
            row-major (lat, then lon); field units.
        mean_field: m, (n_lat, n_lon), the default prior mean.
        grid_lat, grid_lon: the training grid (degrees).
    """

    anomalies: np.ndarray
    mean_field: np.ndarray
    grid_lat: np.ndarray
    grid_lon: np.ndarray

    @property
    def n_fields(self) -> int:
        return int(self.anomalies.shape[0])

    def describe(self) -> str:
        return f"empirical covariance of {self.n_fields} training fields"

    def variance(self) -> np.ndarray:
        """diag K_f, (n,)."""
        return np.einsum("kn,kn->n", self.anomalies, self.anomalies)

    def times_operator(self, op: sp.csr_array) -> np.ndarray:
        """K_f Aᵀ = F (A F)ᵀ, (n × n_obs)."""
        seen = op @ self.anomalies.T  # A F: (n_obs, N)
        return self.anomalies.T @ seen.T

    def check_grid(self, grid_lat: np.ndarray, grid_lon: np.ndarray) -> None:
        """A ValueError unless (grid_lat, grid_lon) is the training grid."""
        if not on_grid(self.grid_lat, self.grid_lon, grid_lat, grid_lon):
            raise ValueError(
                f"the empirical covariance lives on its training grid ({self.grid_lat.size} × "
                f"{self.grid_lon.size}); the target grid is {grid_lat.size} × "
                f"{grid_lon.size}: use a fitted kernel (fit_kernel) there"
            )


def fit_empirical_covariance(train_fields: xr.DataArray) -> EmpiricalCovariance:
    """The per-pixel mean and scaled anomalies of (..., lat, lon) training fields (every
    leading dim indexes fields, ≥ 2 in all, none with a NaN)."""
    x, lat, lon = _fields_array(train_fields)
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 training fields, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("the training fields hold NaN: the empirical covariance needs full fields")
    mean = x.mean(axis=0)
    anomalies = (x - mean).reshape(x.shape[0], -1) / math.sqrt(x.shape[0] - 1)
    return EmpiricalCovariance(anomalies=anomalies, mean_field=mean, grid_lat=lat, grid_lon=lon)


def _fields_array(train_fields: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(train_fields, xr.DataArray):
        raise TypeError(
            f"train_fields must be an xarray.DataArray, got {type(train_fields).__name__}"
        )
    missing = [d for d in (LAT, LON) if d not in train_fields.dims]
    if missing:
        raise ValueError(f"train_fields needs dims {LAT!r} and {LON!r}; missing {missing}")
    lat = check_ascending(train_fields[LAT].values, "train_fields lat")
    lon = check_ascending(train_fields[LON].values, "train_fields lon")
    lead = [d for d in train_fields.dims if d not in (LAT, LON)]
    x = train_fields.transpose(*lead, LAT, LON).values.astype(np.float64)
    return x.reshape(-1, lat.size, lon.size), lat, lon


def _likelihood_sample(
    x: np.ndarray,
    mean_field: np.ndarray,
    max_fields: int,
    max_points: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels and anomalies that enter the likelihood of :func:`fit_kernel`.

    ``x`` (F_all, n_lat, n_lon) fields, ``mean_field`` (n_lat, n_lon). Up to
    ``max_points`` random pixels (sorted flat indices, row-major; all if there are no
    more), then, of the fields free of NaN there, up to ``max_fields`` at random.
    Returns (pixel indices (p,), anomalies y = x − mean (p, F)).
    """
    n_pix = mean_field.size
    pix = np.arange(n_pix)
    if n_pix > max_points:
        pix = np.sort(rng.choice(n_pix, size=max_points, replace=False))
    anomalies = (x - mean_field).reshape(x.shape[0], n_pix)[:, pix]
    usable = np.flatnonzero(np.isfinite(anomalies).all(axis=1))
    if usable.size == 0:
        raise ValueError("no training field is free of NaN at the sampled pixels")
    if usable.size > max_fields:
        usable = np.sort(rng.choice(usable, size=max_fields, replace=False))
    return pix, anomalies[usable].T


def _profile_objective(
    kind: str, nu: float | None, dist: np.ndarray, y: np.ndarray
) -> Callable[[np.ndarray], float]:
    """The profiled negative log-likelihood (module doc) of (log ℓ, log t), t = τ²/σ².

    ``dist`` (p, p) distances in degrees between the sampled pixels, ``y`` (p, F) the
    anomalies. With R = ρ(dist/ℓ) + t I = L Lᵀ and σ̂² = ‖L⁻¹ y‖²_F / (F p), the value is
    p log σ̂² + log det R (1e300 where R is not positive definite or σ̂² is not > 0).
    """
    p, n_fields = y.shape

    def objective(log_params: np.ndarray) -> float:
        ell, ratio = np.exp(log_params)
        c = _correlation(kind, nu, dist / ell)
        c[np.diag_indices_from(c)] += ratio
        try:
            chol = linalg.cholesky(c, lower=True, check_finite=False)
        except linalg.LinAlgError:
            return 1e300
        z = linalg.solve_triangular(chol, y, lower=True, check_finite=False)
        sigma2 = float(np.sum(z * z)) / (n_fields * p)
        if not sigma2 > 0:
            return 1e300
        return p * math.log(sigma2) + 2.0 * float(np.sum(np.log(np.diag(chol))))

    return objective


def _minimise_over_lengthscale_and_ratio(
    objective: Callable[[np.ndarray], float],
    lat: np.ndarray,
    lon: np.ndarray,
    lon_factor: float,
) -> tuple[float, float]:
    """(ℓ, t) minimising ``objective`` of (log ℓ, log t): the best of 10 lengthscales
    spaced geometrically from half the grid spacing to the domain's extent (degrees, at
    t = 0.01), then L-BFGS-B within ℓ ∈ [0.1 spacing, 10 extent], t ∈ [1e-8, 10]."""
    spacing = min(
        np.min(np.diff(lat)) if lat.size > 1 else np.inf,
        lon_factor * np.min(np.diff(lon)) if lon.size > 1 else np.inf,
    )
    extent = math.hypot(lat[-1] - lat[0], lon_factor * (lon[-1] - lon[0]))
    lo_ell, hi_ell = 0.1 * spacing, 10.0 * max(extent, spacing)
    lo_t, hi_t = 1e-8, 10.0
    candidates = np.geomspace(0.5 * spacing, max(extent, spacing), 10)
    start_ell = min(candidates, key=lambda e: objective(np.log([e, 1e-2])))
    result = optimize.minimize(
        objective,
        np.log([start_ell, 1e-2]),
        method="L-BFGS-B",
        bounds=[(math.log(lo_ell), math.log(hi_ell)), (math.log(lo_t), math.log(hi_t))],
    )
    ell, ratio = np.exp(result.x)
    return ell, ratio


def fit_kernel(
    train_fields: xr.DataArray,
    kernel: str = "matern",
    nu: float = 1.5,
    *,
    max_fields: int = 100,
    max_points: int = 600,
    scale_lon: bool = True,
    metric: str = "local",
    seed: int | np.random.Generator = 0,
) -> FittedKernel:
    """Fit a stationary kernel to training fields by maximum likelihood (module doc).

    Args:
        train_fields: (..., lat, lon) training fields; every leading dim indexes fields
            (≥ 2 in all). NaNs are skipped in the mean; fields with a NaN at the chosen
            pixels are not used in the likelihood.
        kernel: ``"matern"`` (with ``nu``) or ``"se"``.
        nu: Matérn smoothness (fixed, not fitted).
        max_fields: at most this many random fields enter the likelihood.
        max_points: at most this many random pixels (the same for every field).
        scale_lon: scale longitude differences by cos(mean latitude) (else plain degrees).
        metric: ``"local"`` (regional domains) or ``"chordal"`` (global fields; then
            ``scale_lon`` is not used).
        seed: seed or generator for the random fields and pixels.

    Returns:
        the :class:`FittedKernel` (its ``mean_field`` is the mean of *all* fields).
    """
    if kernel not in _KINDS:
        raise ValueError(f"kernel must be one of {_KINDS}, got {kernel!r}")
    if max_fields < 1 or max_points < 2:
        raise ValueError(f"need max_fields ≥ 1 and max_points ≥ 2, got {max_fields}, {max_points}")
    x, lat, lon = _fields_array(train_fields)
    if x.shape[0] < 2:
        raise ValueError(f"fit_kernel needs at least 2 training fields, got {x.shape[0]}")
    counts = np.isfinite(x).sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(f"{int(np.sum(counts == 0))} pixel(s) are NaN in every training field")
    mean_field = np.nansum(x, axis=0) / counts
    lon_factor = float(np.cos(np.deg2rad(lat.mean()))) if scale_lon and metric == "local" else 1.0
    rng = np.random.default_rng(seed)
    pix, y = _likelihood_sample(x, mean_field, max_fields, max_points, rng)
    template = FittedKernel(
        kind=kernel,
        variance=1.0,
        lengthscale=1.0,
        nu=nu if kernel == "matern" else None,
        nugget=0.0,
        mean_field=mean_field,
        grid_lat=lat,
        grid_lon=lon,
        lon_factor=lon_factor,
        metric=metric,
    )
    points = grid_points(lat, lon)[pix]
    dist = template.distance(points, points)
    objective = _profile_objective(template.kind, template.nu, dist, y)
    ell, ratio = _minimise_over_lengthscale_and_ratio(objective, lat, lon, lon_factor)
    c = _correlation(template.kind, template.nu, dist / ell)
    c[np.diag_indices_from(c)] += ratio
    z = linalg.solve_triangular(linalg.cholesky(c, lower=True), y, lower=True)
    p, n_fields = y.shape
    sigma2 = float(np.sum(z * z)) / (n_fields * p)
    return FittedKernel(
        kind=kernel,
        variance=sigma2,
        lengthscale=float(ell),
        nu=template.nu,
        nugget=float(sigma2 * ratio),
        mean_field=mean_field,
        grid_lat=lat,
        grid_lon=lon,
        lon_factor=lon_factor,
        metric=metric,
    )


# --------------------------------------------------------------------------- posterior


def _prior_mean(
    kernel: FittedKernel | EmpiricalCovariance,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    prior_mean: float | np.ndarray | None,
) -> np.ndarray:
    """(n_lat, n_lon) prior mean: given, the training mean, or it interpolated bilinearly."""
    shape = (grid_lat.size, grid_lon.size)
    if prior_mean is not None:
        m = np.broadcast_to(np.asarray(prior_mean, dtype=np.float64), shape)
        return np.array(m)
    if on_grid(kernel.grid_lat, kernel.grid_lon, grid_lat, grid_lon):
        return np.asarray(kernel.mean_field, dtype=np.float64)
    if kernel.grid_lat.size < 2 or kernel.grid_lon.size < 2:
        raise ValueError("the kernel's mean field is too small to interpolate; pass prior_mean")
    return spline_resample(
        kernel.mean_field, kernel.grid_lat, kernel.grid_lon, grid_lat, grid_lon, degree=1
    )


def _as_operator(a: np.ndarray | sp.sparray | sp.spmatrix, n: int) -> sp.csr_array:
    op = sp.csr_array(a, dtype=np.float64)
    if op.ndim != 2 or op.shape[1] != n:
        raise ValueError(f"A must have shape (n_obs, {n}) for this grid, got {op.shape}")
    return op


def _cov_times_operator(kernel: FittedKernel, points: np.ndarray, op: sp.csr_array) -> np.ndarray:
    """B = K_f Aᵀ (n × n_obs), building K_f a block of rows at a time."""
    n = points.shape[0]
    out = np.empty((n, op.shape[0]))
    chunk = max(1, _CHUNK_ENTRIES // n)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        k_rows = kernel.covariance(points[rows], points)  # (c, n)
        k_rows[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] += kernel.nugget
        out[rows] = (op @ k_rows.T).T
    return out


def _posterior_batch(
    b: np.ndarray,
    s: np.ndarray,
    op: sp.csr_array,
    m: np.ndarray,
    prior_var: np.ndarray,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance (batch, n) for y (batch, n_obs); NaN obs left out."""
    observed = np.isfinite(y)
    patterns, which = np.unique(observed, axis=0, return_inverse=True)
    which = np.asarray(which).ravel()
    mean = np.empty((y.shape[0], b.shape[0]))
    var = np.empty_like(mean)
    am = op @ m
    for k, pattern in enumerate(patterns):
        rows = np.flatnonzero(which == k)
        obs = np.flatnonzero(pattern)
        if obs.size == 0:
            mean[rows], var[rows] = m, prior_var
            continue
        s_obs = s[np.ix_(obs, obs)].copy()
        s_obs[np.diag_indices_from(s_obs)] += _JITTER * max(float(np.mean(np.diag(s_obs))), 1e-300)
        factor = linalg.cho_factor(s_obs, lower=True, check_finite=False)
        b_obs = b if obs.size == b.shape[1] else b[:, obs]
        resid = y[np.ix_(rows, obs)] - am[obs]
        mean[rows] = m + (b_obs @ linalg.cho_solve(factor, resid.T, check_finite=False)).T
        v = linalg.solve_triangular(factor[0], b_obs.T, lower=True, check_finite=False)
        var[rows] = np.maximum(prior_var - np.einsum("ij,ij->j", v, v), 0.0)
    return mean, var


def _gaussian_update(
    kernel: FittedKernel | EmpiricalCovariance,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    op: sp.csr_array,
    y: np.ndarray,
    noise_var: np.ndarray,
    prior_mean: float | np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    n = grid_lat.size * grid_lon.size
    if isinstance(kernel, EmpiricalCovariance):
        kernel.check_grid(grid_lat, grid_lon)
        b = kernel.times_operator(op)
        prior_var = kernel.variance()
    else:
        b = _cov_times_operator(kernel, grid_points(grid_lat, grid_lon), op)
        prior_var = np.full(n, kernel.variance + kernel.nugget)
    m = _prior_mean(kernel, grid_lat, grid_lon, prior_mean).ravel()
    s = op @ b
    s[np.diag_indices_from(s)] += noise_var
    return _posterior_batch(b, s, op, m, prior_var, y)


def gp_posterior(
    kernel: FittedKernel | EmpiricalCovariance,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    A: np.ndarray | sp.sparray | sp.spmatrix,
    y: np.ndarray,
    noise_var: float | np.ndarray,
    prior_mean: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of the grid values given y = A f + η (module doc).

    Args:
        kernel: the prior covariance K_f = K + τ² I, or the empirical F Fᵀ (and the
            default mean).
        grid_lat, grid_lon: (n_lat,), (n_lon,) ascending target coordinates (degrees);
            the grid has n = n_lat · n_lon points, row-major (lat, then lon).
        A: (n_obs, n) observation operator, dense or scipy.sparse.
        y: (n_obs,) observations, or (..., n_obs) for several sets under the same A
            (NaN: that observation is missing).
        noise_var: (n_obs,) or a scalar, the variances of η (≥ 0).
        prior_mean: a scalar or (n_lat, n_lon); default ``kernel.mean_field`` when the
            grid is the kernel's, else that mean field interpolated bilinearly (linear
            extrapolation at the edges) onto the grid.

    Returns:
        ``(mean, variance)``, each (..., n_lat, n_lon) like ``y``'s leading shape.
    """
    grid_lat = check_ascending(grid_lat, "grid_lat")
    grid_lon = check_ascending(grid_lon, "grid_lon")
    n = grid_lat.size * grid_lon.size
    op = _as_operator(A, n)
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1:] != (op.shape[0],):
        raise ValueError(f"y must end with n_obs = {op.shape[0]} values, got shape {y.shape}")
    noise = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), (op.shape[0],))
    if np.any(noise < 0) or not np.isfinite(noise).all():
        raise ValueError("noise_var must be finite and non-negative")
    lead = y.shape[:-1]
    mean, var = _gaussian_update(
        kernel, grid_lat, grid_lon, op, y.reshape(-1, op.shape[0]), noise, prior_mean
    )
    shape = (*lead, grid_lat.size, grid_lon.size)
    return mean.reshape(shape), var.reshape(shape)


# --------------------------------------------------------------------------- downscaling


def _block_mean_operator(
    grid_lat: np.ndarray, grid_lon: np.ndarray, f_lat: int, f_lon: int
) -> sp.csr_array:
    """Sparse A of the cos-lat weighted f_lat × f_lon block means (trailing cells trimmed)."""
    n_lat_c, n_lon_c = grid_lat.size // f_lat, grid_lon.size // f_lon
    w = np.cos(np.deg2rad(grid_lat)).clip(min=0.0)
    rows, cols, vals = [], [], []
    for bi in range(n_lat_c):
        i = np.arange(bi * f_lat, (bi + 1) * f_lat)
        wi = w[i] / (f_lon * w[i].sum())
        for bj in range(n_lon_c):
            j = np.arange(bj * f_lon, (bj + 1) * f_lon)
            rows.append(np.full(i.size * j.size, bi * n_lon_c + bj))
            cols.append((i[:, None] * grid_lon.size + j[None, :]).ravel())
            vals.append(np.repeat(wi, j.size))
    return sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_lat_c * n_lon_c, grid_lat.size * grid_lon.size),
    )


def _cell_mean_operator(
    coarse: xr.DataArray, grid_lat: np.ndarray, grid_lon: np.ndarray
) -> tuple[sp.csr_array, np.ndarray]:
    """(A, kept) for coarse cells on any lat-lon grid: A (n_kept, n) the cos-lat, overlap-
    weighted means over the grid's cells of each coarse cell at least half covered by
    them (``MIN_COVERAGE`` along each axis, the rule of the model's operator; edges from
    the cells' bounds where ``coarse`` carries contiguous ones (:func:`hdm.data.coarsen.
    cell_bounds`), else midway between centres; snapped to a grid edge within a quarter
    spacing), ``kept``
    the flat (lat-major) indices of those cells in ``coarse``."""
    weights, kept = [], []
    for dim, fine in ((LAT, grid_lat), (LON, grid_lon)):
        bounds = cell_bounds(coarse, dim)
        if bounds is not None and np.allclose(bounds[1:, 0], bounds[:-1, 1]):
            edges = np.append(bounds[:, 0], bounds[-1, 1])  # the cells' own (CF) bounds
        else:
            edges = edges_from_centres(np.asarray(coarse[dim].values, dtype=np.float64), dim)
        fine_edges = edges_from_centres(fine, dim)
        # edges derived from centres (the cos-weighted centres of coarse_grain sit off the
        # block middles) snap to a grid edge within a quarter spacing, as the model's do
        nearest = fine_edges[np.abs(edges[:, None] - fine_edges[None, :]).argmin(1)]
        snap = np.abs(edges - nearest) <= 0.25 * np.min(np.diff(fine_edges))
        edges = np.where(snap, nearest, edges)
        period = longitude_period(grid_lon) if dim == LON else None
        overlap = overlap_lengths(edges, fine_edges[:-1], fine_edges[1:], period)
        keep = overlap.sum(1) / np.diff(edges) >= MIN_COVERAGE - 1e-9
        weights.append(overlap[keep])
        kept.append(np.flatnonzero(keep))
    lat_w = weights[0] * np.cos(np.deg2rad(grid_lat)).clip(min=0.0)[None, :]
    op = sp.csr_array(sp.kron(sp.csr_array(lat_w), sp.csr_array(weights[1])))
    op = sp.csr_array(sp.diags_array(1.0 / op.sum(axis=1)) @ op)
    flat = (kept[0][:, None] * coarse.sizes[LON] + kept[1][None, :]).ravel()
    return op, flat


def _point_operator(
    coarse: xr.DataArray, grid_lat: np.ndarray, grid_lon: np.ndarray
) -> tuple[sp.csr_array, np.ndarray]:
    """(A, kept) for coarse point values: bilinear samples at the points inside the
    grid's cells (flat lat-major indices ``kept`` in ``coarse``)."""
    lat, lon = np.meshgrid(coarse[LAT].values, coarse[LON].values, indexing="ij")
    lat, lon = lat.ravel().astype(np.float64), lon.ravel().astype(np.float64)
    inside = np.ones(lat.size, bool)
    for values, fine, dim in ((lat, grid_lat, LAT), (lon, grid_lon, LON)):
        if dim == LON and longitude_period(grid_lon) is not None:
            continue
        edges = edges_from_centres(fine, dim)
        inside &= (values >= edges[0]) & (values <= edges[-1])
    kept = np.flatnonzero(inside)
    return _station_operator(grid_lat, grid_lon, lat[kept], lon[kept]), kept


def _station_operator(
    grid_lat: np.ndarray, grid_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> sp.csr_array:
    index, weight = multilinear_stencil(
        (grid_lat, grid_lon),
        np.stack([lat, lon], axis=1),
        periods=(None, longitude_period(grid_lon)),
        names=("lat", "lon"),
    )
    rows = np.repeat(np.arange(index.shape[0]), 4)
    return sp.csr_array(
        (weight.ravel(), (rows, index.ravel())),
        shape=(index.shape[0], grid_lat.size * grid_lon.size),
    )


def _station_array(
    values: xr.DataArray | np.ndarray, lead_template: xr.DataArray, n_station: int
) -> np.ndarray:
    """Station values as (n_batch, n_station) matching the coarse field's leading dims."""
    lead = list(lead_template.dims)
    lead_shape = tuple(lead_template.shape)
    if isinstance(values, xr.DataArray):
        if STATION not in values.dims:
            raise ValueError(f"station_values needs a {STATION!r} dimension (has {values.dims})")
        extra = [d for d in values.dims if d not in (*lead, STATION)]
        if extra:
            raise ValueError(f"station_values has dims {extra} that the coarse field lacks")
        values, _ = xr.align(values, lead_template, join="exact")
        values = values.broadcast_like(lead_template).transpose(*lead, STATION).values
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape == (n_station,):
        arr = np.broadcast_to(arr, (*lead_shape, n_station))
    if arr.shape != (*lead_shape, n_station):
        raise ValueError(
            f"station_values must have shape ({n_station},) or {(*lead_shape, n_station)}, "
            f"got {arr.shape}"
        )
    return arr.reshape(-1, n_station)


def _check_kriging_inputs(
    coarse: xr.DataArray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    stations: tuple,
    noise_std_coarse: float,
    noise_std_station: float | None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check the arguments of :func:`kriging_downscale`; ``stations`` is (station_lat,
    station_lon, station_values). Returns the target coordinates as ascending float
    arrays and whether stations are given (all three, or none: anything else raises)."""
    if not isinstance(coarse, xr.DataArray):
        raise TypeError(f"coarse must be an xarray.DataArray, got {type(coarse).__name__}")
    missing = [d for d in (LAT, LON) if d not in coarse.dims]
    if missing:
        raise ValueError(f"coarse needs dims {LAT!r} and {LON!r}; missing {missing}")
    target_lat = check_ascending(target_lat, "target_lat")
    target_lon = check_ascending(target_lon, "target_lon")
    given = [v is not None for v in stations]
    if any(given) and not all(given):
        raise ValueError("give station_lat, station_lon and station_values together, or none")
    if not noise_std_coarse >= 0:
        raise ValueError(f"noise_std_coarse must be ≥ 0, got {noise_std_coarse!r}")
    if all(given) and not (noise_std_station is not None and noise_std_station >= 0):
        raise ValueError(f"stations need noise_std_station ≥ 0, got {noise_std_station!r}")
    return target_lat, target_lon, all(given)


def is_coarse_grained_grid(
    coarse: xr.DataArray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    factor: int | tuple[int, int],
) -> bool:
    """Whether ``coarse`` is on the grid of ``coarse_grain(<target grid>, factor)``, the
    grid the interpolation, kriging and OI baselines here are built for."""
    try:
        _check_coarse_grid(coarse, target_lat, target_lon, factor)
    except ValueError:
        return False
    return True


def _check_coarse_grid(
    coarse: xr.DataArray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    factor: int | tuple[int, int],
) -> None:
    """Raise unless ``coarse``'s lat and lon are those of ``coarse_grain(<target grid>,
    factor)`` (same sizes, values within a thousandth of the target spacing: coordinates
    kept in float32, as coarse_grain keeps the input's dtype, differ by ~1e-5°)."""
    template = xr.DataArray(
        np.zeros((target_lat.size, target_lon.size)),
        dims=(LAT, LON),
        coords={LAT: target_lat, LON: target_lon},
    )
    expected = coarse_grain(template, factor)
    for d, target in ((LAT, target_lat), (LON, target_lon)):
        atol = max(_COORD_ATOL, 1e-3 * float(np.min(np.diff(target)))) if target.size > 1 else 1e-6
        ok = coarse.sizes[d] == expected.sizes[d] and np.allclose(
            coarse[d].values, expected[d].values, rtol=0.0, atol=atol
        )
        if not ok:
            raise ValueError(
                f"the coarse field's {d!r} ({coarse.sizes[d]} values) is not the "
                f"coarse-grained target grid (factor {factor}: {expected.sizes[d]} values "
                f"from {expected[d].values[0]:g})"
            )


def _kriging_dataset(
    kernel: FittedKernel | EmpiricalCovariance,
    coarse: xr.DataArray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    factor: int | tuple[int, int] | None,
    with_stations: bool,
    mean: np.ndarray,
    var: np.ndarray,
    points: bool = False,
) -> xr.Dataset:
    """The result of :func:`kriging_downscale`: ``mean`` and ``std`` = √var, given as
    (n_batch, n_lat · n_lon), on (<coarse's leading dims>, lat, lon) of the target grid,
    with the coarse field's units and the method and kernel in the attributes."""
    lead = [d for d in coarse.dims if d not in (LAT, LON)]
    lead_shape = tuple(coarse.sizes[d] for d in lead)
    shape = (*lead_shape, target_lat.size, target_lon.size)
    coords = fine_coords(coarse, target_lat, target_lon)
    dims = (*lead, LAT, LON)
    units = coarse.attrs.get("units")
    unit_attrs = {"units": units} if units else {}
    return xr.Dataset(
        {
            "mean": (dims, mean.reshape(shape), {"long_name": "kriging mean", **unit_attrs}),
            "std": (dims, np.sqrt(var).reshape(shape), {"long_name": "kriging std", **unit_attrs}),
        },
        coords=coords,
        attrs={
            "method": "GP regression (kriging) from coarse "
            + ("point values" if points else "block means" if factor else "cell means")
            + (" and stations" if with_stations else ""),
            "kernel": kernel.describe(),
            "coarse_factor": str(factor) if factor else "none (another grid)",
        },
    )


def kriging_downscale(
    kernel: FittedKernel | EmpiricalCovariance,
    coarse: xr.DataArray,
    target_lat: np.ndarray,
    target_lon: np.ndarray,
    factor: int | tuple[int, int] | None,
    station_lat: np.ndarray | None = None,
    station_lon: np.ndarray | None = None,
    station_values: xr.DataArray | np.ndarray | None = None,
    *,
    noise_std_coarse: float,
    noise_std_station: float | None = None,
    prior_mean: float | np.ndarray | None = None,
    points: bool = False,
) -> xr.Dataset:
    """Kriging of the target grid from the coarse field and (optionally) stations.

    Args:
        kernel: the prior: a stationary kernel (:func:`fit_kernel`), or the training
            fields' own covariance (:func:`fit_empirical_covariance`: optimal
            interpolation, on the training grid only).
        coarse: (..., lat, lon) block means on the grid that
            ``coarse_grain(<target grid>, factor)`` gives (coordinates checked), or
            with ``factor=None`` cell means on any lat-lon grid (point values with
            ``points``); NaN cells are treated as missing.
        target_lat, target_lon: the fine grid (ascending degrees).
        factor: the coarse-graining factor, int or (f_lat, f_lon); None: another grid
            (module doc, *Convenience*).
        points: the coarse values are point values (``factor`` must be None).
        station_lat, station_lon, station_values: all three or none; values are
            (n_station,), (..., n_station) or a DataArray on ``station`` (+ the coarse
            field's leading dims); NaN: missing.
        noise_std_coarse: standard deviation of the noise on each coarse value (≥ 0).
        noise_std_station: the same for station values (required with stations).
        prior_mean: see :func:`gp_posterior`.

    Returns:
        ``xr.Dataset`` with ``mean`` and ``std`` (..., lat, lon) on the target grid
        (read them as ``ds["mean"]``: ``ds.mean`` is the Dataset method).
    """
    target_lat, target_lon, with_stations = _check_kriging_inputs(
        coarse,
        target_lat,
        target_lon,
        (station_lat, station_lon, station_values),
        noise_std_coarse,
        noise_std_station,
    )
    lead = [d for d in coarse.dims if d not in (LAT, LON)]
    values = coarse.transpose(*lead, LAT, LON).values.astype(np.float64)
    if factor is not None:
        if points:
            raise ValueError("point values have no coarse-graining factor: give factor=None")
        _check_coarse_grid(coarse, target_lat, target_lon, factor)
        f_lat, f_lon = (int(factor), int(factor)) if np.ndim(factor) == 0 else map(int, factor)
        ops = [_block_mean_operator(target_lat, target_lon, f_lat, f_lon)]
        y_parts = [values.reshape(-1, ops[0].shape[0])]
    else:
        op, kept = (_point_operator if points else _cell_mean_operator)(
            coarse, target_lat, target_lon
        )
        if kept.size == 0:
            raise ValueError("no coarse value lies over the target grid")
        ops = [op]
        y_parts = [values.reshape(-1, coarse.sizes[LAT] * coarse.sizes[LON])[:, kept]]
    noise = [np.full(ops[0].shape[0], float(noise_std_coarse) ** 2)]
    if with_stations:
        s_lat = np.atleast_1d(np.asarray(station_lat, dtype=np.float64))
        s_lon = np.atleast_1d(np.asarray(station_lon, dtype=np.float64))
        ops.append(_station_operator(target_lat, target_lon, s_lat, s_lon))
        lead_template = coarse.isel({LAT: 0, LON: 0}, drop=True).reset_coords(drop=True)
        y_parts.append(_station_array(station_values, lead_template, s_lat.size))
        noise.append(np.full(s_lat.size, float(noise_std_station) ** 2))
    op = sp.csr_array(sp.vstack(ops))
    mean, var = _gaussian_update(
        kernel, target_lat, target_lon, op, np.hstack(y_parts), np.concatenate(noise), prior_mean
    )
    return _kriging_dataset(
        kernel, coarse, target_lat, target_lon, factor, with_stations, mean, var, points
    )
