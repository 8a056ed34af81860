r"""Deterministic and probabilistic scores of gridded fields, ensembles and station values.

Everything here takes ``xr.DataArray`` objects and addresses dimensions by name
(:mod:`hdm.data.schema`): ``member`` holds ensemble members, ``lat``/``lon`` the grid,
``station`` the points of station scores; every other dimension (``time``, ``level``,
...) is averaged over, with equal weight per point. A prediction and its truth must have
the same dimensions (apart from ``member``) with the same sizes and, where both carry
coordinates, the same coordinate values (floats to within 1e-6): nothing is silently
aligned, broadcast or dropped.

Averages
--------
Gridded scores are area-weighted means over every point (and time, level, ...),

.. math:: \langle s \rangle = \frac{\sum_{t,i,j} w_i\, s_{tij}}{\sum_{t,i,j} w_i},
   \qquad w_i = \texttt{lat\_weights(truth)}_i

(cos φ on a regular grid, the stored block weights on a coarse-grained one). Station
scores (``point_*``) are plain means over ``station`` and the rest. Points where the
score is not finite (NaN in the truth, the prediction, or any member) are left out of
both sums; a score with no finite point at all is NaN.

Scores
------
- :func:`rmse` :math:`= \sqrt{\langle (\hat x - x)^2 \rangle}`, :func:`mae`
  :math:`= \langle |\hat x - x| \rangle`, :func:`bias` :math:`= \langle \hat x - x\rangle`.
- :func:`fair_crps`: the fair ensemble CRPS of M members (Ferro 2014; the estimator
  GenCast reports), per point

  .. math:: \mathrm{CRPS}_F = \frac1M \sum_m |x_m - y|
            - \frac{1}{2M(M-1)} \sum_{m,m'} |x_m - x_{m'}|,

  unbiased for the CRPS of the distribution the members are drawn from
  (``scoringrules.crps_ensemble(..., estimator="fair")``), then averaged as above.
- :func:`gaussian_crps`: the closed form for a Gaussian forecast N(μ, σ²),
  :math:`\sigma\,[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`, z = (y − μ)/σ
  (``scoringrules.crps_normal``), for kriging / GP baselines, on the same scale as
  :func:`fair_crps`. σ = 0 gives the absolute error |y − μ|.
- :func:`spread_skill`: with the unbiased member variance s² (ddof = 1) and the
  ensemble mean :math:`\bar x`,

  .. math:: \mathrm{SSR} = \sqrt{\tfrac{M+1}{M}}\,
            \frac{\sqrt{\langle s^2 \rangle}}{\sqrt{\langle (\bar x - y)^2\rangle}}.

  For members and truth exchangeable (drawn from one distribution),
  :math:`E(\bar x - y)^2 = \frac{M+1}{M} E s^2`, so a calibrated ensemble has SSR ≈ 1
  for any M (Fortin et al. 2014, "Why should ensemble spread match the RMSE of the
  ensemble mean?"; GenCast, Price et al. 2024, use the same factor). SSR < 1:
  under-dispersive.
- :func:`rank_histogram`: the rank of the truth among the M members (0..M, M + 1 bins),
  ties (members equal to the truth) broken uniformly at random with a seeded generator;
  plain counts, not area weighted. Flat for a calibrated ensemble.
- :func:`coverage`: the (area-weighted) fraction of points where the truth lies in the
  central ``level`` interval [q_{(1−level)/2}, q_{(1+level)/2}] of the members.
  Quantiles use the Weibull plotting positions (``np.quantile(method="weibull")``,
  the k-th of M sorted members at probability k/(M + 1)), for which the truth falls
  below the k-th member with probability exactly k/(M + 1) when members and truth are
  exchangeable, so a calibrated ensemble covers ``level`` on average even for small M
  (the default linear positions (k − 1)/(M − 1) under-cover by ≈ 2/(M + 1)).
  :func:`gaussian_coverage` uses μ ± z σ with z = Φ⁻¹((1 + level)/2).
- :func:`coarse_consistency`: :math:`\sqrt{\langle (A\hat x - y)^2 \rangle} / \sigma_y`
  with A = :func:`hdm.data.coarsen.coarse_grain` (area-weighted block means, trailing
  incomplete blocks trimmed), averaged with the coarse cells' weights and over members;
  ≈ 1 or below when the prediction agrees with the coarse input to its noise level.

Stations
--------
:func:`station_values` samples a gridded field at station coordinates by bilinear
interpolation in (lat, lon) degrees (:func:`bilinear_stencil` gives the weights; a
station outside the grid's coordinate range is an error naming it; longitudes are not
wrapped, so stations must use the grid's longitude convention). :func:`point_rmse`,
:func:`point_fair_crps` and :func:`point_gaussian_crps` score values on dim ``station``.

Spectra
-------
:func:`power_spectrum` is the radially averaged 2-D power spectral density of fields on
a regular grid: each (lat, lon) field u (n_φ × n_λ, spacings Δφ, Δλ in degrees) has its
mean removed, is multiplied by a 2-D window w (outer product of 1-D Hann or Tukey
windows, against leakage from the non-periodic edges), and

.. math:: P(\mathbf k) = \frac{\Delta\varphi\,\Delta\lambda}{\sum_{ij} w_{ij}^2}\,
          \Big|\sum_{ij} w_{ij} u_{ij}\, e^{-2\pi i (k_\varphi \varphi_i +
          k_\lambda \lambda_j)}\Big|^2,

in (field units)² · deg², on the FFT wavenumbers k in cycles per degree (of latitude,
and of longitude: longitudes are not scaled by cos φ). This is a density: white noise of
variance σ² has P = σ² Δφ Δλ, and the same smooth field sampled at two resolutions has
the same P at the wavenumbers both resolve. |k| = √(k_φ² + k_λ²) is binned with a fixed
width Δk = 1 / max(n_φ Δφ, n_λ Δλ) (the fundamental of the longer side of the domain,
so grids of the same domain at 2× resolution share their bins), bin b centred at b Δk,
for b = 1 .. ⌊k_N / Δk⌋ with k_N = min(1/(2Δφ), 1/(2Δλ)) the smaller Nyquist
wavenumber (the largest full circle); P is averaged over the modes in each bin and over
all fields (every leading dim). Empty bins are left out. :func:`spectrum_ratio` is the
mean over the high-wavenumber bins of P_pred / P_truth (≈ 1 when the small scales carry
the right energy; interpolation gives ≪ 1).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import scoringrules as sr
import xarray as xr
from scipy.signal import windows
from scipy.special import ndtri

from hdm.data.coarsen import coarse_grain
from hdm.data.schema import LAT, LON, MEMBER, lat_weights

__all__ = [
    "STATION",
    "WAVENUMBER",
    "bias",
    "bilinear_stencil",
    "block_bootstrap",
    "coarse_consistency",
    "coverage",
    "fair_crps",
    "gaussian_coverage",
    "gaussian_crps",
    "mae",
    "paired_block_bootstrap",
    "point_fair_crps",
    "point_gaussian_crps",
    "point_rmse",
    "power_spectrum",
    "rank_histogram",
    "rmse",
    "spectrum_ratio",
    "spread_skill",
    "spread_skill_interval",
    "station_values",
]

#: dimension of station values
STATION = "station"
#: dimension of power spectra (cycles per degree)
WAVENUMBER = "wavenumber"

#: absolute tolerance on matching float coordinates (degrees for lat/lon)
_COORD_ATOL = 1e-6
#: tolerance, in degrees, on a station lying on the edge of the grid
_EDGE_ATOL = 1e-9


# --------------------------------------------------------------------------- inputs


def _as_dataarray(x: object, name: str) -> xr.DataArray:
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"{name} must be an xarray.DataArray, got {type(x).__name__}")
    return x


def _same_coord(a: xr.DataArray, b: xr.DataArray) -> bool:
    av, bv = np.asarray(a.values), np.asarray(b.values)
    if av.shape != bv.shape:
        return False
    if np.issubdtype(av.dtype, np.number) and np.issubdtype(bv.dtype, np.number):
        return bool(np.allclose(av, bv, rtol=0.0, atol=_COORD_ATOL, equal_nan=True))
    return bool(np.array_equal(av, bv))


def _check_matching(
    x: xr.DataArray, truth: xr.DataArray, x_name: str, truth_name: str, *, member: bool
) -> None:
    """Same dims (``member`` aside when ``member``), sizes and coordinate values."""
    x_dims = set(x.dims) - ({MEMBER} if member else set())
    t_dims = set(truth.dims)
    if x_dims != t_dims:
        raise ValueError(
            f"{x_name} and {truth_name} have different dimensions: {x_name} has "
            f"{sorted(map(str, x_dims))}, {truth_name} has {sorted(map(str, t_dims))}"
            + (" (besides 'member')" if member else "")
        )
    for d in truth.dims:
        if x.sizes[d] != truth.sizes[d]:
            raise ValueError(
                f"dimension {d!r} has size {x.sizes[d]} in {x_name} but "
                f"{truth.sizes[d]} in {truth_name}"
            )
        if d in x.coords and d in truth.coords and not _same_coord(x[d], truth[d]):
            raise ValueError(
                f"coordinate {d!r} differs between {x_name} and {truth_name} "
                f"(beyond {_COORD_ATOL:g})"
            )


def _require_dims(x: xr.DataArray, dims: Sequence[Hashable], name: str) -> None:
    missing = [d for d in dims if d not in x.dims]
    if missing:
        raise ValueError(f"{name} needs dims {list(dims)}; missing {missing} (has {x.dims})")


def _require_members(ensemble: xr.DataArray, name: str, minimum: int) -> int:
    if MEMBER not in ensemble.dims:
        raise ValueError(f"{name} needs a {MEMBER!r} dimension (has {ensemble.dims})")
    m = ensemble.sizes[MEMBER]
    if m < minimum:
        raise ValueError(f"{name} needs at least {minimum} members, got {m}")
    return m


def _layout(truth: xr.DataArray, spatial: bool) -> tuple[Hashable, ...]:
    """Dims of truth with the grid (lat, lon) or ``station`` last."""
    last: tuple[Hashable, ...] = (LAT, LON) if spatial else (STATION,)
    _require_dims(truth, last, "the truth")
    return (*[d for d in truth.dims if d not in last], *last)


def _weights(truth: xr.DataArray, spatial: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Area weights (cos lat or stored block weights) broadcast to (..., lat, lon)."""
    if not spatial:
        return np.ones(shape)
    try:
        w = lat_weights(truth).values
    except KeyError as err:
        raise ValueError(f"the truth needs a {LAT!r} coordinate for area weights") from err
    return np.broadcast_to(w[:, None], shape)


def _weighted_mean(score: np.ndarray, weights: np.ndarray) -> float:
    """Σ w s / Σ w over the points where s is finite (NaN when there are none)."""
    ok = np.isfinite(score)
    den = float(np.sum(weights, where=ok))
    if den <= 0.0:
        return float("nan")
    return float(np.sum(weights * np.where(ok, score, 0.0)) / den)


def _pair(
    prediction: xr.DataArray,
    truth: xr.DataArray,
    *,
    names: tuple[str, str],
    spatial: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, truth, weights) as float64 arrays laid out as (..., lat, lon)."""
    prediction = _as_dataarray(prediction, names[0])
    truth = _as_dataarray(truth, names[1])
    if MEMBER in prediction.dims:
        raise ValueError(
            f"{names[0]} has a {MEMBER!r} dimension; score the ensemble mean "
            f"(.mean({MEMBER!r})) or use an ensemble score"
        )
    order = _layout(truth, spatial)
    _check_matching(prediction, truth, *names, member=False)
    t = truth.transpose(*order).values.astype(np.float64)
    p = prediction.transpose(*order).values.astype(np.float64)
    return p, t, _weights(truth, spatial, t.shape)


def _ensemble_pair(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    *,
    names: tuple[str, str],
    spatial: bool,
    min_members: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(members (..., M), truth, weights, valid) with invalid points set to 0 in both."""
    ensemble = _as_dataarray(ensemble, names[0])
    truth = _as_dataarray(truth, names[1])
    _require_members(ensemble, names[0], min_members)
    order = _layout(truth, spatial)
    _check_matching(ensemble, truth, *names, member=True)
    t = truth.transpose(*order).values.astype(np.float64)
    f = ensemble.transpose(*order, MEMBER).values.astype(np.float64)
    valid = np.isfinite(t) & np.isfinite(f).all(axis=-1)
    t = np.where(valid, t, 0.0)
    f = np.where(valid[..., None], f, 0.0)
    return f, t, _weights(truth, spatial, t.shape), valid


def _gaussian_triple(
    mean: xr.DataArray,
    std: xr.DataArray,
    truth: xr.DataArray,
    *,
    spatial: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mu, y, w = _pair(mean, truth, names=("mean", "truth"), spatial=spatial)
    sigma, _, _ = _pair(std, truth, names=("std", "truth"), spatial=spatial)
    if np.any(sigma < 0):
        raise ValueError(f"std must be non-negative; min is {np.nanmin(sigma):g}")
    return mu, sigma, y, w


# --------------------------------------------------------------------------- deterministic


def rmse(prediction: xr.DataArray, truth: xr.DataArray) -> float:
    """Area-weighted root mean squared error √⟨(prediction − truth)²⟩ (see module doc)."""
    p, t, w = _pair(prediction, truth, names=("prediction", "truth"), spatial=True)
    return float(np.sqrt(_weighted_mean((p - t) ** 2, w)))


def mae(prediction: xr.DataArray, truth: xr.DataArray) -> float:
    """Area-weighted mean absolute error ⟨|prediction − truth|⟩."""
    p, t, w = _pair(prediction, truth, names=("prediction", "truth"), spatial=True)
    return _weighted_mean(np.abs(p - t), w)


def bias(prediction: xr.DataArray, truth: xr.DataArray) -> float:
    """Area-weighted mean error ⟨prediction − truth⟩ (positive: prediction too high)."""
    p, t, w = _pair(prediction, truth, names=("prediction", "truth"), spatial=True)
    return _weighted_mean(p - t, w)


# --------------------------------------------------------------------------- probabilistic


def _fair_crps_values(f: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    crps = np.asarray(sr.crps_ensemble(t, f, m_axis=-1, estimator="fair", backend="numpy"))
    return np.where(valid, crps, np.nan)


def _gaussian_crps_values(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> np.ndarray:
    positive = sigma > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crps = np.asarray(sr.crps_normal(y, mu, np.where(positive, sigma, 1.0), backend="numpy"))
    crps = np.where(positive, crps, np.abs(y - mu))
    return np.where(np.isnan(sigma), np.nan, crps)


def fair_crps(ensemble: xr.DataArray, truth: xr.DataArray) -> float:
    """Area-weighted mean fair ensemble CRPS (module doc), in the field's units.

    Args:
        ensemble: (member, ..., lat, lon) with M ≥ 2 members.
        truth: (..., lat, lon), the same dims as ``ensemble`` without ``member``.
    """
    f, t, w, valid = _ensemble_pair(
        ensemble, truth, names=("ensemble", "truth"), spatial=True, min_members=2
    )
    return _weighted_mean(_fair_crps_values(f, t, valid), w)


def gaussian_crps(mean: xr.DataArray, std: xr.DataArray, truth: xr.DataArray) -> float:
    """Area-weighted mean closed-form CRPS of N(mean, std²) forecasts (module doc)."""
    mu, sigma, y, w = _gaussian_triple(mean, std, truth, spatial=True)
    return _weighted_mean(_gaussian_crps_values(mu, sigma, y), w)


def spread_skill(ensemble: xr.DataArray, truth: xr.DataArray) -> float:
    """Spread–skill ratio √((M+1)/M) · √⟨s²⟩ / RMSE(ensemble mean) (module doc).

    Spread and skill are averaged over the same points (those where the truth and all
    members are finite). ≈ 1 for a calibrated ensemble, < 1 under-dispersive.
    """
    f, t, w, valid = _ensemble_pair(
        ensemble, truth, names=("ensemble", "truth"), spatial=True, min_members=2
    )
    m = f.shape[-1]
    var = np.where(valid, f.var(axis=-1, ddof=1), np.nan)
    sq_err = np.where(valid, (f.mean(axis=-1) - t) ** 2, np.nan)
    spread = np.sqrt(_weighted_mean(var, w) * (m + 1) / m)
    skill = np.sqrt(_weighted_mean(sq_err, w))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(spread / skill)


def rank_histogram(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Counts of the truth's rank among the M members: an int array of M + 1 bins.

    Bin r counts the points where r members lie below the truth; members equal to the
    truth are split at random (the truth's rank among the tied ones is uniform), drawn
    from ``numpy.random.default_rng(seed)``. Points with any NaN are left out, so the
    counts sum to the number of valid points. Not area weighted.
    """
    f, t, _, valid = _ensemble_pair(
        ensemble, truth, names=("ensemble", "truth"), spatial=True, min_members=1
    )
    rng = np.random.default_rng(seed)
    f, t = f[valid], t[valid]
    below = np.sum(f < t[:, None], axis=-1)
    ties = np.sum(f == t[:, None], axis=-1)
    rank = below + rng.integers(0, ties + 1)
    return np.bincount(rank, minlength=f.shape[-1] + 1)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def coverage(ensemble: xr.DataArray, truth: xr.DataArray, level: float = 0.9) -> float:
    """Area-weighted fraction of points whose truth lies in the central ``level`` interval
    of the members (Weibull plotting positions, see the module doc)."""
    _check_level(level)
    f, t, w, valid = _ensemble_pair(
        ensemble, truth, names=("ensemble", "truth"), spatial=True, min_members=2
    )
    probs = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    lo, hi = np.quantile(f, probs, axis=-1, method="weibull")
    inside = ((t >= lo) & (t <= hi)).astype(np.float64)
    return _weighted_mean(np.where(valid, inside, np.nan), w)


def gaussian_coverage(
    mean: xr.DataArray, std: xr.DataArray, truth: xr.DataArray, level: float = 0.9
) -> float:
    """Area-weighted fraction of points with |truth − mean| ≤ Φ⁻¹((1 + level)/2) · std."""
    _check_level(level)
    mu, sigma, y, w = _gaussian_triple(mean, std, truth, spatial=True)
    z = ndtri((1.0 + level) / 2.0)
    ok = np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(y)
    inside = (np.abs(y - mu) <= z * sigma).astype(np.float64)
    return _weighted_mean(np.where(ok, inside, np.nan), w)


# --------------------------------------------------------------------------- stations


def bilinear_stencil(
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation weights of points on a rectilinear (lat, lon) grid.

    For a point in the cell [φ_i, φ_{i+1}] × [λ_j, λ_{j+1}] with fractions
    s = (φ − φ_i)/(φ_{i+1} − φ_i) and t = (λ − λ_j)/(λ_{j+1} − λ_j), the value is
    (1−s)(1−t) u_{i,j} + (1−s) t u_{i,j+1} + s (1−t) u_{i+1,j} + s t u_{i+1,j+1}.

    Args:
        grid_lat, grid_lon: strictly ascending 1-D coordinates (degrees), ≥ 2 each.
        lat, lon: 1-D point coordinates (degrees), the same length n.

    Returns:
        ``(index, weight)``, both (n, 4): flat indices ``i * n_lon + j`` into the
        row-major (lat, lon) grid and their weights (summing to 1 per point).

    Raises:
        ValueError: a point outside the grid's range, naming its index and coordinates.
    """
    glat = np.asarray(grid_lat, dtype=np.float64)
    glon = np.asarray(grid_lon, dtype=np.float64)
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    for name, g in ((LAT, glat), (LON, glon)):
        if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
            raise ValueError(f"grid {name} must be 1-D, strictly ascending, with ≥ 2 values")
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError(
            f"station lat and lon must be 1-D of one length, got {lat.shape}, {lon.shape}"
        )
    outside = (
        ~np.isfinite(lat)
        | ~np.isfinite(lon)
        | (lat < glat[0] - _EDGE_ATOL)
        | (lat > glat[-1] + _EDGE_ATOL)
        | (lon < glon[0] - _EDGE_ATOL)
        | (lon > glon[-1] + _EDGE_ATOL)
    )
    if outside.any():
        bad = np.flatnonzero(outside)
        listed = ", ".join(f"station {k} at ({lat[k]:g}, {lon[k]:g})" for k in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise ValueError(
            f"{listed}{more} outside the grid (lat {glat[0]:g}..{glat[-1]:g}, "
            f"lon {glon[0]:g}..{glon[-1]:g})"
        )
    i = np.clip(np.searchsorted(glat, lat, side="right") - 1, 0, glat.size - 2)
    j = np.clip(np.searchsorted(glon, lon, side="right") - 1, 0, glon.size - 2)
    s = np.clip((lat - glat[i]) / (glat[i + 1] - glat[i]), 0.0, 1.0)
    t = np.clip((lon - glon[j]) / (glon[j + 1] - glon[j]), 0.0, 1.0)
    n_lon = glon.size
    index = np.stack(
        [i * n_lon + j, i * n_lon + j + 1, (i + 1) * n_lon + j, (i + 1) * n_lon + j + 1], axis=1
    )
    weight = np.stack([(1 - s) * (1 - t), (1 - s) * t, s * (1 - t), s * t], axis=1)
    return index, weight


def station_values(
    field: xr.DataArray,
    lat: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    station: Sequence[Hashable] | np.ndarray | None = None,
) -> xr.DataArray:
    """Bilinear samples of a (..., lat, lon) field at stations: (..., station).

    Corners with zero weight do not contribute (a NaN there does not spread to a station
    on a node or an edge). The result carries ``station_lat``/``station_lon`` coordinates
    and, when ``station`` (names or ids) is given, a ``station`` coordinate.

    Raises:
        ValueError: a station outside the grid (named by index, see
            :func:`bilinear_stencil`) or a field without ``lat``/``lon``.
    """
    field = _as_dataarray(field, "field")
    _require_dims(field, (LAT, LON), "field")
    index, weight = bilinear_stencil(field[LAT].values, field[LON].values, lat, lon)
    lead = [d for d in field.dims if d not in (LAT, LON)]
    values = field.transpose(*lead, LAT, LON).values
    flat = values.reshape(*values.shape[:-2], -1)
    corners = flat[..., index]  # (..., station, 4)
    sampled = np.sum(np.where(weight > 0, corners * weight, 0.0), axis=-1)
    coords = {d: field[d] for d in lead if d in field.coords}
    coords["station_lat"] = (STATION, np.asarray(lat, dtype=np.float64).ravel())
    coords["station_lon"] = (STATION, np.asarray(lon, dtype=np.float64).ravel())
    if station is not None:
        coords[STATION] = (STATION, np.asarray(station))
    return xr.DataArray(
        sampled, dims=(*lead, STATION), coords=coords, name=field.name, attrs=dict(field.attrs)
    )


def point_rmse(prediction: xr.DataArray, truth: xr.DataArray) -> float:
    """RMSE over dim ``station`` (and the rest), unweighted: √mean((prediction − truth)²)."""
    p, t, w = _pair(prediction, truth, names=("prediction", "truth"), spatial=False)
    return float(np.sqrt(_weighted_mean((p - t) ** 2, w)))


def point_fair_crps(ensemble: xr.DataArray, truth: xr.DataArray) -> float:
    """Mean fair ensemble CRPS over dim ``station`` (and the rest), unweighted."""
    f, t, w, valid = _ensemble_pair(
        ensemble, truth, names=("ensemble", "truth"), spatial=False, min_members=2
    )
    return _weighted_mean(_fair_crps_values(f, t, valid), w)


def point_gaussian_crps(mean: xr.DataArray, std: xr.DataArray, truth: xr.DataArray) -> float:
    """Mean Gaussian CRPS over dim ``station`` (and the rest), unweighted."""
    mu, sigma, y, w = _gaussian_triple(mean, std, truth, spatial=False)
    return _weighted_mean(_gaussian_crps_values(mu, sigma, y), w)


# --------------------------------------------------------------------------- coarse input


def coarse_consistency(
    prediction: xr.DataArray,
    coarse: xr.DataArray,
    factor: int | tuple[int, int],
    noise_std: float,
) -> float:
    """RMS of coarse_grain(prediction, factor) − coarse, divided by ``noise_std``.

    Args:
        prediction: ([member,] ..., lat, lon) on the fine grid; members are averaged
            over like any other dim (each member is checked, not the mean).
        coarse: (..., lat, lon) on the grid ``coarse_grain(prediction, factor)`` gives
            (trailing incomplete blocks trimmed); coordinates must match to 1e-6°.
        factor: the coarse-graining factor (int or (f_lat, f_lon)).
        noise_std: the standard deviation of the noise on ``coarse`` (> 0, its units).

    Returns:
        √⟨(A x̂ − y)²⟩ / noise_std, weighted by the coarse cells' areas.
    """
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive, got {noise_std!r}")
    prediction = _as_dataarray(prediction, "prediction")
    coarse = _as_dataarray(coarse, "coarse")
    _require_dims(prediction, (LAT, LON), "prediction")
    projected = coarse_grain(prediction, factor)
    for d in (LAT, LON):
        if coarse.sizes.get(d) != projected.sizes[d] or not _same_coord(projected[d], coarse[d]):
            raise ValueError(
                f"the coarse field's {d!r} does not match the coarse-grained prediction "
                f"(factor {factor}): {coarse.sizes.get(d)} vs {projected.sizes[d]} values, "
                f"{projected[d].values[:3]}... expected"
            )
    order = _layout(coarse, spatial=True)
    _check_matching(projected, coarse, "prediction", "coarse", member=True)
    y = coarse.transpose(*order).values.astype(np.float64)
    weights = np.broadcast_to(lat_weights(projected).values[:, None], y.shape)
    if MEMBER in projected.dims:
        x = projected.transpose(*order, MEMBER).values.astype(np.float64)
        sq = (x - y[..., None]) ** 2
        weights = np.broadcast_to(weights[..., None], sq.shape)
    else:
        sq = (projected.transpose(*order).values.astype(np.float64) - y) ** 2
    return float(np.sqrt(_weighted_mean(sq, weights)) / noise_std)


# --------------------------------------------------------------------------- spectra


def _regular_spacing(coord: np.ndarray, name: str) -> float:
    if coord.size < 4:
        raise ValueError(f"power_spectrum needs at least 4 {name} values, got {coord.size}")
    step = np.diff(coord.astype(np.float64))
    spacing = float(np.mean(step))
    if spacing <= 0 or not np.allclose(step, spacing, rtol=1e-3, atol=0.0):
        raise ValueError(f"power_spectrum needs a regular ascending {name} grid")
    return spacing


def _window(n: int, window: str | None, tukey_alpha: float) -> np.ndarray:
    if window is None or window == "none":
        return np.ones(n)
    if window == "hann":
        return windows.hann(n, sym=True)
    if window == "tukey":
        return windows.tukey(n, alpha=tukey_alpha, sym=True)
    raise ValueError(f"window must be 'hann', 'tukey' or None, got {window!r}")


def power_spectrum(
    field: xr.DataArray,
    *,
    window: str | None = "hann",
    tukey_alpha: float = 0.5,
    bin_width: float | None = None,
) -> xr.DataArray:
    """Radially averaged 2-D power spectral density on wavenumber |k| (module doc).

    Args:
        field: (..., lat, lon) on a regular grid (≥ 4 points per axis); every leading
            dim is averaged over; 2-D fields with any non-finite value are skipped.
        window: ``"hann"`` (default), ``"tukey"`` (with ``tukey_alpha``) or ``None``.
        bin_width: Δk in cycles/degree; default 1 / max(n_lat Δlat, n_lon Δlon).

    Returns:
        DataArray ``power`` on dim ``wavenumber`` (cycles/degree) with coordinate
        ``wavelength`` (degrees), in (field units)² deg²; attrs record the bin width and
        the number of fields averaged.
    """
    field = _as_dataarray(field, "field")
    _require_dims(field, (LAT, LON), "field")
    dlat = _regular_spacing(field[LAT].values, LAT)
    dlon = _regular_spacing(field[LON].values, LON)
    n_lat, n_lon = field.sizes[LAT], field.sizes[LON]
    lead = [d for d in field.dims if d not in (LAT, LON)]
    x = field.transpose(*lead, LAT, LON).values.astype(np.float64).reshape(-1, n_lat, n_lon)
    x = x[np.isfinite(x).all(axis=(1, 2))]
    if x.shape[0] == 0:
        raise ValueError("power_spectrum: every field contains non-finite values")
    x = x - x.mean(axis=(1, 2), keepdims=True)
    w = np.outer(_window(n_lat, window, tukey_alpha), _window(n_lon, window, tukey_alpha))
    psd = np.abs(np.fft.fft2(x * w)) ** 2 * (dlat * dlon / np.sum(w**2))
    psd = psd.mean(axis=0)

    dk = bin_width if bin_width is not None else 1.0 / max(n_lat * dlat, n_lon * dlon)
    if not dk > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    k_lat = np.fft.fftfreq(n_lat, d=dlat)
    k_lon = np.fft.fftfreq(n_lon, d=dlon)
    k = np.hypot(k_lat[:, None], k_lon[None, :])
    n_bins = int(np.floor(min(0.5 / dlat, 0.5 / dlon) / dk + 1e-9))
    b = np.rint(k / dk).astype(np.int64).ravel()
    keep = (b >= 1) & (b <= n_bins)
    counts = np.bincount(b[keep], minlength=n_bins + 1)
    sums = np.bincount(b[keep], weights=psd.ravel()[keep], minlength=n_bins + 1)
    filled = np.flatnonzero(counts > 0)
    filled = filled[filled >= 1]
    wavenumber = filled * dk
    units = field.attrs.get("units")
    return xr.DataArray(
        sums[filled] / counts[filled],
        dims=(WAVENUMBER,),
        coords={
            WAVENUMBER: (WAVENUMBER, wavenumber, {"units": "cycles/degree"}),
            "wavelength": (WAVENUMBER, 1.0 / wavenumber, {"units": "degrees"}),
        },
        name="power",
        attrs={
            "long_name": "radially averaged power spectral density",
            "units": f"({units})**2 deg**2" if units else "deg**2 (field units squared)",
            "bin_width": dk,
            "n_fields": int(x.shape[0]),
            "window": str(window),
        },
    )


def _as_spectrum(x: xr.DataArray, name: str) -> xr.DataArray:
    x = _as_dataarray(x, name)
    return x if WAVENUMBER in x.dims else power_spectrum(x)


def spectrum_ratio(
    prediction: xr.DataArray, truth: xr.DataArray, kmin: float | None = None
) -> float:
    """Mean over shared wavenumber bins above ``kmin`` of P_prediction / P_truth.

    Args:
        prediction, truth: fields (..., lat, lon) (their spectra are computed with
            :func:`power_spectrum` defaults) or spectra on ``wavenumber``.
        kmin: cycles/degree; default half the largest wavenumber the two share (the top
            half of the shared range). Bins strictly above ``kmin`` are used.

    Raises:
        ValueError: no shared bin above ``kmin`` with positive truth power.
    """
    p = _as_spectrum(prediction, "prediction")
    t = _as_spectrum(truth, "truth")
    kp, kt = p[WAVENUMBER].values, t[WAVENUMBER].values
    match = np.isclose(kp[:, None], kt[None, :], rtol=1e-6, atol=0.0)
    ip, it = np.nonzero(match)
    if ip.size == 0:
        raise ValueError("the two spectra share no wavenumber bin (different bin widths?)")
    k = kt[it]
    threshold = 0.5 * k.max() if kmin is None else float(kmin)
    pv, tv = p.values[ip], t.values[it]
    use = (k > threshold) & (tv > 0) & np.isfinite(pv) & np.isfinite(tv)
    if not use.any():
        raise ValueError(f"no shared wavenumber bin above kmin = {threshold:g} cycles/degree")
    return float(np.mean(pv[use] / tv[use]))


# ----------------------------------------------------------------- paired bootstrap


def block_bootstrap(
    statistic: Callable[..., float],
    *series: np.ndarray,
    block: int = 4,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``statistic(*series)`` with a moving-block bootstrap interval over time.

    ``series`` are per-time arrays of one length T ≥ 2 (e.g. per-time scores); each
    resample draws blocks of ``block`` consecutive times (a day at 6-hourly steps) with
    replacement (Künsch 1989), the same times for every series, so serial correlation
    and the pairing are kept. The interval is the percentile interval of ``n_boot``
    resamples, seeded.

    Returns:
        (statistic on all times, low, high).
    """
    arrays = [np.asarray(x, dtype=float) for x in series]
    if not arrays or any(x.shape != arrays[0].shape for x in arrays) or arrays[0].ndim != 1:
        raise ValueError(f"need per-time arrays of one shape (T,), got {[x.shape for x in arrays]}")
    size = arrays[0].size
    if size < 2:
        raise ValueError(f"need at least 2 times for a bootstrap interval, got {size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    block = max(1, min(int(block), size))
    rng = np.random.default_rng(seed)
    starts = np.arange(size - block + 1)
    n_blocks = -(-size // block)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        idx = (rng.choice(starts, n_blocks)[:, None] + np.arange(block)[None, :]).ravel()[:size]
        draws[i] = statistic(*(x[idx] for x in arrays))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(statistic(*arrays)), float(low), float(high)


def paired_block_bootstrap(
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    block: int = 4,
    n_boot: int = 2000,
    level: float = 0.95,
    root: bool = False,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference of mean scores, A − B, with a moving-block bootstrap interval over time.

    ``score_a``/``score_b`` are per-time scores (shape (T,)) of two methods on the same
    times (e.g. area-weighted squared errors, or CRPS). The statistic is
    mean(a) − mean(b), or sqrt(mean(a)) − sqrt(mean(b)) with ``root=True`` (RMSE from
    squared errors); the interval is :func:`block_bootstrap`'s.

    Returns:
        (difference, low, high).
    """
    a, b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            f"need two per-time score arrays of one shape (T ≥ 2), got {a.shape}, {b.shape}"
        )
    stat = (
        (lambda x, y: np.sqrt(x.mean()) - np.sqrt(y.mean()))
        if root
        else (lambda x, y: x.mean() - y.mean())
    )
    return block_bootstrap(stat, a, b, block=block, n_boot=n_boot, level=level, seed=seed)


def spread_skill_interval(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    *,
    dim: str = "time",
    block: int = 4,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """:func:`spread_skill` with a moving-block bootstrap interval over ``dim``.

    Per time τ the area-weighted sums S_τ = Σ w s² (member variance) and
    E_τ = Σ w (ensemble mean − truth)² are kept; a resample R of the times gives
    √((M+1)/M · Σ_R S_τ / Σ_R E_τ), so on all times it equals :func:`spread_skill` when
    every time has the same valid points. Blocks of ``block`` consecutive times keep the
    serial correlation (:func:`block_bootstrap`).

    Returns:
        (ratio on all times, low, high).
    """
    ensemble = _as_dataarray(ensemble, "ensemble")
    truth = _as_dataarray(truth, "truth")
    if dim not in truth.dims or dim not in ensemble.dims:
        raise ValueError(f"spread_skill_interval: ensemble and truth need the dim {dim!r}")
    f, t, w, valid = _ensemble_pair(
        ensemble.transpose(dim, ...),
        truth.transpose(dim, ...),
        names=("ensemble", "truth"),
        spatial=True,
        min_members=2,
    )
    m = f.shape[-1]
    axes = tuple(range(1, t.ndim))
    spread = np.sum(np.where(valid, w * f.var(axis=-1, ddof=1), 0.0), axis=axes)
    error = np.sum(np.where(valid, w * (f.mean(axis=-1) - t) ** 2, 0.0), axis=axes)

    def ratio(s: np.ndarray, e: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sqrt((m + 1) / m * s.sum() / e.sum()))

    return block_bootstrap(ratio, spread, error, block=block, n_boot=n_boot, level=level, seed=seed)
