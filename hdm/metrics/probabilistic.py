r"""Deterministic and probabilistic scores of gridded fields, ensembles and station values.

Every score takes ``xr.DataArray`` objects plus ``dim=`` (the dimensions to reduce;
default: every dimension of the truth) and ``weights=`` (a DataArray broadcast against
the truth; default: area weights when ``lat`` is reduced, else equal weights) and
returns a DataArray: the scores per time, per station or per variable are one call
(``rmse(mean, truth, dim=["lat", "lon"])`` is one RMSE per time), the scalar is
``float(rmse(mean, truth))``. This is the convention of weatherbench2 and xskillscore.

A prediction and its truth must have the same dimensions (apart from ``member``) with
the same sizes and, where both carry coordinates, the same coordinate values (floats to
within 1e-6): nothing is silently aligned, broadcast or dropped. Ensembles hold members
along ``member``.

Averages
--------
A score s is averaged over the reduced dims with the weights w,

.. math:: \langle s \rangle = \frac{\sum w\, s}{\sum w},
   \qquad w_i = \texttt{lat\_weights(truth)}_i \ \text{(default, when lat is reduced)}

(cos φ on a regular grid, the stored block weights on a coarse-grained one;
:func:`hdm.data.schema.lat_weights`). Points where the score is not finite (NaN in the
truth, the prediction, or any member) are left out of both sums (xarray's weighted
mean); a score with no finite point is NaN.

Scores
------
- :func:`rmse` :math:`= \sqrt{\langle (\hat x - x)^2 \rangle}`, :func:`mae`
  :math:`= \langle |\hat x - x| \rangle`, :func:`bias` :math:`= \langle \hat x - x\rangle`.
- :func:`laplacian_ratio`: the members' mean squared 5-point Laplacian over the
  truth's, on a mask (sea, land): grid-scale speckle where it sits.
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
- :func:`rank_histogram`: the rank of the truth among the M members (0..M, M + 1 bins
  on dim ``rank``), ties (members equal to the truth) broken uniformly at random with a
  seeded generator; plain counts, not weighted. Flat for a calibrated ensemble.
- :func:`coverage`: the (weighted) fraction of points where the truth lies in the
  central ``level`` interval [q_{(1−level)/2}, q_{(1+level)/2}] of the members.
  Quantiles use the Weibull plotting positions (``method="weibull"``, the k-th of M
  sorted members at probability k/(M + 1)), for which the truth falls below the k-th
  member with probability exactly k/(M + 1) when members and truth are exchangeable, so
  a calibrated ensemble covers ``level`` on average even for small M (the default linear
  positions (k − 1)/(M − 1) under-cover by ≈ 2/(M + 1)). The widest central interval
  M members give is [x_(1), x_(M)], of level (M − 1)/(M + 1) (0.5 for 3 members, 0.88
  for 16, 0.9 for 19): a wider ``level`` is clipped to it and measures that narrower
  interval under the wider name. Within half a plotting position of it, ``level`` ≤
  M/(M + 1), that is the resolution the members have (16 members: "90 %" is the
  [min, max] interval of level 0.88, so a calibrated ensemble scores 0.88); beyond it
  (with 3 members "90 %" would be the 50 % interval) the coverage is NaN, with one
  warning naming M, the level and the members it needs, M ≥ level/(1 − level).
  :func:`gaussian_coverage` uses μ ± z σ with z = Φ⁻¹((1 + level)/2).
- :func:`coarse_consistency`: :math:`\sqrt{\langle (A\hat x - y)^2 \rangle} / \sigma_y`
  with A = :func:`hdm.data.coarsen.coarse_grain` (area-weighted block means, trailing
  incomplete blocks trimmed), averaged with the coarse cells' weights and over members;
  ≈ 1 or below when the prediction agrees with the coarse input to its noise level.

Station values (a ``station`` dimension, e.g. from
:func:`hdm.data.regrid.values_at_points`) have no ``lat`` dimension, so they are averaged
with equal weights.

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
the fields of the ``dim`` dimensions (default: every leading dim). Fields with a
non-finite value are left out; empty bins are left out. :func:`spectrum_ratio` is the
mean over the high-wavenumber bins of P_pred / P_truth (≈ 1 when the small scales carry
the right energy; interpolation gives ≪ 1).

Intervals
---------
:func:`block_bootstrap` gives moving-block bootstrap intervals over time; with fewer
than :data:`MIN_BLOCKS` blocks there is no interval (it would be a point or close to
one) and both ends are None.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import scoringrules as sr
import xarray as xr
from scipy.signal import windows
from scipy.special import ndtri

from hdm.data.coarsen import coarse_grain
from hdm.data.schema import LAT, LON, MEMBER, lat_weights

__all__ = [
    "MIN_BLOCKS",
    "WAVENUMBER",
    "bias",
    "block_bootstrap",
    "coarse_consistency",
    "coverage",
    "coverage_resolved",
    "fair_crps",
    "gaussian_coverage",
    "gaussian_crps",
    "laplacian",
    "laplacian_ratio",
    "mae",
    "paired_block_bootstrap",
    "power_spectrum",
    "rank_histogram",
    "rmse",
    "spectrum_ratio",
    "spread_skill",
    "spread_skill_by_band",
    "spread_skill_interval",
]

#: dimension of power spectra (cycles per degree)
WAVENUMBER = "wavenumber"
#: the fewest moving blocks a bootstrap interval is given for
MIN_BLOCKS = 4

#: absolute tolerance on matching float coordinates (degrees for lat/lon)
_COORD_ATOL = 1e-6

Dims = Hashable | Sequence[Hashable] | None


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


def _matched(
    x: xr.DataArray, truth: xr.DataArray, x_name: str, truth_name: str, *, member: bool
) -> xr.DataArray:
    """``x`` checked against the truth (same dims, ``member`` aside when ``member``, sizes
    and coordinate values) and given the truth's coordinates, so arithmetic aligns
    exactly."""
    x = _as_dataarray(x, x_name)
    truth = _as_dataarray(truth, truth_name)
    if not member and MEMBER in x.dims:
        raise ValueError(
            f"{x_name} has a {MEMBER!r} dimension; score the ensemble mean "
            f"(.mean({MEMBER!r})) or use an ensemble score"
        )
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
    shared = {d: truth[d] for d in truth.dims if d in truth.coords and d in x.coords}
    return x.assign_coords(shared)


def _members(ensemble: xr.DataArray, name: str, minimum: int) -> int:
    if MEMBER not in ensemble.dims:
        raise ValueError(f"{name} needs a {MEMBER!r} dimension (has {ensemble.dims})")
    m = ensemble.sizes[MEMBER]
    if m < minimum:
        raise ValueError(f"{name} needs at least {minimum} members, got {m}")
    return m


def _reduced_dims(truth: xr.DataArray, dim: Dims) -> list[Hashable]:
    """The dims to reduce: every dim of the truth (None), or the ones named."""
    if dim is None:
        return list(truth.dims)
    dims = [dim] if isinstance(dim, str) or not isinstance(dim, Sequence) else list(dim)
    missing = [d for d in dims if d not in truth.dims]
    if missing:
        raise ValueError(f"cannot reduce over {missing}: the truth has dims {truth.dims}")
    return dims


def _mean(
    score: xr.DataArray, truth: xr.DataArray, dim: Dims, weights: xr.DataArray | None
) -> xr.DataArray:
    """The weighted mean of ``score`` over ``dim`` (module doc), non-finite points left out."""
    dims = _reduced_dims(truth, dim)
    score = score.where(np.isfinite(score))
    if weights is None and LAT in dims:
        try:
            weights = lat_weights(truth)
        except KeyError as err:
            raise ValueError(f"the truth needs a {LAT!r} coordinate for area weights") from err
    score = score.drop_attrs()  # a score is not the field: none of its attributes hold
    if weights is None:
        return score.mean(dims, skipna=True)
    weights = _as_dataarray(weights, "weights").fillna(0.0)
    return score.weighted(weights).mean(dims, skipna=True)


def _invalid(ensemble: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    """True where the truth or any member is not finite."""
    return ~(np.isfinite(truth) & np.isfinite(ensemble).all(MEMBER))


# --------------------------------------------------------------------------- deterministic


def rmse(
    prediction: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Root mean squared error √⟨(prediction − truth)²⟩ over ``dim`` (module doc)."""
    p = _matched(prediction, truth, "prediction", "truth", member=False)
    return np.sqrt(_mean((p - truth) ** 2, truth, dim, weights)).rename("rmse")


def mae(
    prediction: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Mean absolute error ⟨|prediction − truth|⟩ over ``dim``."""
    p = _matched(prediction, truth, "prediction", "truth", member=False)
    return _mean(np.abs(p - truth), truth, dim, weights).rename("mae")


def bias(
    prediction: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Mean error ⟨prediction − truth⟩ over ``dim`` (positive: prediction too high)."""
    p = _matched(prediction, truth, "prediction", "truth", member=False)
    return _mean(p - truth, truth, dim, weights).rename("bias")


# --------------------------------------------------------------------------- probabilistic


def fair_crps(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Mean fair ensemble CRPS (module doc) over ``dim``, in the field's units.

    Args:
        ensemble: (member, ...) with M ≥ 2 members.
        truth: the same dims as ``ensemble`` without ``member``.
    """
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    _members(ens, "ensemble", 2)
    f = ens.transpose(*truth.dims, MEMBER).values.astype(np.float64)
    y = truth.values.astype(np.float64)
    crps = np.asarray(sr.crps_ensemble(y, f, m_axis=-1, estimator="fair", backend="numpy"))
    score = truth.copy(data=crps).where(~_invalid(ens, truth))
    return _mean(score, truth, dim, weights).rename("crps")


def gaussian_crps(
    mean: xr.DataArray,
    std: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Mean closed-form CRPS of N(mean, std²) forecasts (module doc) over ``dim``."""
    mu = _matched(mean, truth, "mean", "truth", member=False)
    sigma = _matched(std, truth, "std", "truth", member=False)
    if bool((sigma < 0).any()):
        raise ValueError(f"std must be non-negative; min is {float(sigma.min()):g}")
    positive = sigma > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crps = sr.crps_normal(
            truth.values, mu.values, np.where(positive, sigma.values, 1.0), backend="numpy"
        )
    score = truth.copy(data=np.asarray(crps, dtype=np.float64))
    score = score.where(positive, np.abs(truth - mu)).where(~np.isnan(sigma))
    return _mean(score, truth, dim, weights).rename("crps")


def spread_skill(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Spread–skill ratio √((M+1)/M) · √⟨s²⟩ / RMSE(ensemble mean) over ``dim``.

    Spread and skill are averaged over the same points (those where the truth and all
    members are finite). ≈ 1 for a calibrated ensemble, < 1 under-dispersive.
    """
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    m = _members(ens, "ensemble", 2)
    invalid = _invalid(ens, truth)
    var = ens.var(MEMBER, ddof=1, skipna=False).where(~invalid)
    sq_err = ((ens.mean(MEMBER, skipna=False) - truth) ** 2).where(~invalid)
    spread = np.sqrt(_mean(var, truth, dim, weights) * (m + 1) / m)
    skill = np.sqrt(_mean(sq_err, truth, dim, weights))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (spread / skill).rename("spread_skill")


def rank_histogram(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    dim: Dims = None,
    seed: int | np.random.Generator = 0,
) -> xr.DataArray:
    """Counts of the truth's rank among the M members, on dim ``rank`` (0..M), over ``dim``.

    Bin r counts the points where r members lie below the truth; members equal to the
    truth are split at random (the truth's rank among the tied ones is uniform), drawn
    from ``numpy.random.default_rng(seed)`` over the points in the truth's order. Points
    with any NaN are left out, so the counts sum to the number of valid points. Not
    weighted.
    """
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    m = _members(ens, "ensemble", 1)
    f = ens.transpose(*truth.dims, MEMBER).values.astype(np.float64)
    t = truth.values.astype(np.float64)
    valid = ~_invalid(ens, truth).values
    rng = np.random.default_rng(seed)
    below = np.sum(f < t[..., None], axis=-1)
    ties = np.sum(f == t[..., None], axis=-1)
    rank = np.full(t.shape, -1, dtype=np.int64)
    rank[valid] = below[valid] + rng.integers(0, ties[valid] + 1)
    ranks = truth.copy(data=rank)
    dims = _reduced_dims(truth, dim)
    counts = xr.concat([(ranks == r).sum(dims) for r in range(m + 1)], dim="rank")
    counts = counts.transpose(..., "rank").assign_coords(rank=np.arange(m + 1))
    return counts.rename("rank_histogram")


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def coverage(
    ensemble: xr.DataArray,
    truth: xr.DataArray,
    level: float = 0.9,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Fraction of points whose truth lies in the central ``level`` interval of the
    members (Weibull plotting positions, see the module doc), over ``dim``.

    NaN, with a :class:`UserWarning` naming M and ``level``, where the M members cannot
    resolve the interval: ``level`` > M/(M + 1), half a plotting position beyond the
    level (M − 1)/(M + 1) of [min, max] (module doc; :func:`coverage_resolved`)."""
    _check_level(level)
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    m = _members(ens, "ensemble", 2)
    f = ens.transpose(*truth.dims, MEMBER).values.astype(np.float64)
    probs = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    lo, hi = np.quantile(f, probs, axis=-1, method="weibull")
    inside = ((truth.values >= lo) & (truth.values <= hi)).astype(np.float64)
    score = truth.copy(data=inside).where(~_invalid(ens, truth))
    if not coverage_resolved(m, level):
        widest = (m - 1) / (m + 1)
        needed = int(np.ceil(level / (1.0 - level) - 1e-9))
        warnings.warn(
            f"coverage at level {level:g} is unavailable (NaN) with {m} members: their "
            f"widest central interval, [min, max], has level {widest:.3g}; it needs at "
            f"least {needed} members",
            UserWarning,
            stacklevel=2,
        )
        score = score.where(False)
    return _mean(score, truth, dim, weights).rename("coverage")


def coverage_resolved(members: int, level: float) -> bool:
    """Whether ``members`` members resolve the central ``level`` interval of
    :func:`coverage`: ``level`` ≤ M/(M + 1) (to rounding), within half a plotting
    position of the level (M − 1)/(M + 1) of [x_(1), x_(M)], the widest interval the
    members give (module doc)."""
    return level <= members / (members + 1) + 1e-12


def gaussian_coverage(
    mean: xr.DataArray,
    std: xr.DataArray,
    truth: xr.DataArray,
    level: float = 0.9,
    dim: Dims = None,
    weights: xr.DataArray | None = None,
) -> xr.DataArray:
    """Fraction of points with |truth − mean| ≤ Φ⁻¹((1 + level)/2) · std, over ``dim``."""
    _check_level(level)
    mu = _matched(mean, truth, "mean", "truth", member=False)
    sigma = _matched(std, truth, "std", "truth", member=False)
    z = ndtri((1.0 + level) / 2.0)
    inside = (np.abs(truth - mu) <= z * sigma).astype(np.float64)
    ok = np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(truth)
    return _mean(inside.where(ok), truth, dim, weights).rename("coverage")


# --------------------------------------------------------------------------- coarse input


def coarse_consistency(
    prediction: xr.DataArray,
    coarse: xr.DataArray,
    factor: int | tuple[int, int],
    noise_std: float,
    dim: Dims = None,
) -> xr.DataArray:
    """RMS of coarse_grain(prediction, factor) − coarse, divided by ``noise_std``.

    Args:
        prediction: ([member,] ..., lat, lon) on the fine grid; members are averaged
            over like any reduced dim (each member is checked, not the mean).
        coarse: (..., lat, lon) on the grid ``coarse_grain(prediction, factor)`` gives
            (trailing incomplete blocks trimmed); coordinates must match to 1e-6°.
        factor: the coarse-graining factor (int or (f_lat, f_lon)).
        noise_std: the standard deviation of the noise on ``coarse`` (> 0, its units).
        dim: the coarse field's dims to reduce (default all; members always).

    Returns:
        √⟨(A x̂ − y)²⟩ / noise_std, weighted by the coarse cells' areas.
    """
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive, got {noise_std!r}")
    prediction = _as_dataarray(prediction, "prediction")
    coarse = _as_dataarray(coarse, "coarse")
    if LAT not in prediction.dims or LON not in prediction.dims:
        raise ValueError(f"prediction needs dims {LAT!r} and {LON!r} (has {prediction.dims})")
    projected = coarse_grain(prediction, factor)
    for d in (LAT, LON):
        if coarse.sizes.get(d) != projected.sizes[d] or not _same_coord(projected[d], coarse[d]):
            raise ValueError(
                f"the coarse field's {d!r} does not match the coarse-grained prediction "
                f"(factor {factor}): {coarse.sizes.get(d)} vs {projected.sizes[d]} values, "
                f"{projected[d].values[:3]}... expected"
            )
    projected = _matched(projected, coarse, "prediction", "coarse", member=True)
    sq = (projected - coarse) ** 2
    weights = lat_weights(projected) if LAT in _reduced_dims(coarse, dim) else None
    dims = _reduced_dims(coarse, dim) + ([MEMBER] if MEMBER in sq.dims else [])
    sq = sq.where(np.isfinite(sq))
    mean = sq.weighted(weights).mean(dims) if weights is not None else sq.mean(dims)
    return (np.sqrt(mean) / noise_std).rename("coarse_consistency")


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


def _radial_bins(
    n_lat: int, n_lon: int, dlat: float, dlon: float, bin_width: float | None
) -> tuple[np.ndarray, int, float]:
    """The bin of every FFT mode (row-major), the number of bins and their width."""
    dk = bin_width if bin_width is not None else 1.0 / max(n_lat * dlat, n_lon * dlon)
    if not dk > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    k = np.hypot(np.fft.fftfreq(n_lat, d=dlat)[:, None], np.fft.fftfreq(n_lon, d=dlon)[None, :])
    n_bins = int(np.floor(min(0.5 / dlat, 0.5 / dlon) / dk + 1e-9))
    return np.rint(k / dk).astype(np.int64).ravel(), n_bins, dk


def power_spectrum(
    field: xr.DataArray,
    *,
    dim: Dims = None,
    window: str | None = "hann",
    tukey_alpha: float = 0.5,
    bin_width: float | None = None,
) -> xr.DataArray:
    """Radially averaged 2-D power spectral density on wavenumber |k| (module doc).

    Args:
        field: (..., lat, lon) on a regular grid (≥ 4 points per axis); 2-D fields with
            any non-finite value are left out.
        dim: the leading dims averaged over (default: all of them); the others are kept.
        window: ``"hann"`` (default), ``"tukey"`` (with ``tukey_alpha``) or ``None``.
        bin_width: Δk in cycles/degree; default 1 / max(n_lat Δlat, n_lon Δlon).

    Returns:
        DataArray ``power`` on (kept dims..., ``wavenumber``) (cycles/degree) with
        coordinate ``wavelength`` (degrees), in (field units)² deg²; attrs record the
        bin width and the number of fields averaged.
    """
    field = _as_dataarray(field, "field")
    if LAT not in field.dims or LON not in field.dims:
        raise ValueError(f"field needs dims {LAT!r} and {LON!r} (has {field.dims})")
    dlat = _regular_spacing(field[LAT].values, LAT)
    dlon = _regular_spacing(field[LON].values, LON)
    n_lat, n_lon = field.sizes[LAT], field.sizes[LON]
    lead = [d for d in field.dims if d not in (LAT, LON)]
    averaged = lead if dim is None else [d for d in _reduced_dims(field, dim) if d in lead]
    kept = [d for d in lead if d not in averaged]
    x = field.transpose(*kept, *averaged, LAT, LON).values.astype(np.float64)
    kept_shape = x.shape[: len(kept)]
    x = x.reshape(int(np.prod(kept_shape)), -1, n_lat, n_lon)
    finite = np.isfinite(x).all(axis=(2, 3))
    if not finite.any():
        raise ValueError("power_spectrum: every field contains non-finite values")
    x = np.where(finite[..., None, None], x, 0.0)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    w = np.outer(_window(n_lat, window, tukey_alpha), _window(n_lon, window, tukey_alpha))
    psd = np.abs(np.fft.fft2(x * w)) ** 2 * (dlat * dlon / np.sum(w**2))
    with np.errstate(invalid="ignore"):
        psd = np.sum(psd * finite[..., None, None], axis=1) / finite.sum(axis=1)[:, None, None]
    b, n_bins, dk = _radial_bins(n_lat, n_lon, dlat, dlon, bin_width)
    keep = (b >= 1) & (b <= n_bins)
    counts = np.bincount(b[keep], minlength=n_bins + 1)
    flat = psd.reshape(psd.shape[0], -1)[:, keep]
    sums = np.stack([np.bincount(b[keep], weights=row, minlength=n_bins + 1) for row in flat])
    filled = np.flatnonzero(counts > 0)
    filled = filled[filled >= 1]
    wavenumber = filled * dk
    units = field.attrs.get("units")
    values = (sums[:, filled] / counts[filled]).reshape(*kept_shape, filled.size)
    coords = {d: field[d] for d in kept if d in field.coords}
    coords[WAVENUMBER] = (WAVENUMBER, wavenumber, {"units": "cycles/degree"})
    coords["wavelength"] = (WAVENUMBER, 1.0 / wavenumber, {"units": "degrees"})
    return xr.DataArray(
        values,
        dims=(*kept, WAVENUMBER),
        coords=coords,
        name="power",
        attrs={
            "long_name": "radially averaged power spectral density",
            "units": f"({units})**2 deg**2" if units else "deg**2 (field units squared)",
            "bin_width": dk,
            "n_fields": int(finite.sum()),
            "window": str(window),
        },
    )


def _as_spectrum(x: xr.DataArray, name: str, dim: Dims) -> xr.DataArray:
    x = _as_dataarray(x, name)
    return x if WAVENUMBER in x.dims else power_spectrum(x, dim=dim)


def spectrum_ratio(
    prediction: xr.DataArray,
    truth: xr.DataArray,
    kmin: float | None = None,
    dim: Dims = None,
) -> xr.DataArray:
    """Mean over shared wavenumber bins above ``kmin`` of P_prediction / P_truth.

    Args:
        prediction, truth: fields (..., lat, lon) (their spectra are computed with
            :func:`power_spectrum` over ``dim``; members are averaged like any leading
            dim) or spectra on ``wavenumber``.
        kmin: cycles/degree; default half the largest wavenumber the two share (the top
            half of the shared range). Bins strictly above ``kmin`` are used.
        dim: the leading dims the spectra average over (default all).

    Raises:
        ValueError: no shared bin above ``kmin`` with positive truth power.
    """
    p = _as_spectrum(prediction, "prediction", dim)
    t = _as_spectrum(truth, "truth", dim)
    kp, kt = p[WAVENUMBER].values, t[WAVENUMBER].values
    match = np.isclose(kp[:, None], kt[None, :], rtol=1e-6, atol=0.0)
    ip, it = np.nonzero(match)
    if ip.size == 0:
        raise ValueError("the two spectra share no wavenumber bin (different bin widths?)")
    k = kt[it]
    threshold = 0.5 * k.max() if kmin is None else float(kmin)
    pv = p.isel({WAVENUMBER: ip}).drop_vars(["wavelength", WAVENUMBER])
    tv = t.isel({WAVENUMBER: it}).drop_vars(["wavelength", WAVENUMBER])
    use = xr.DataArray(k > threshold, dims=WAVENUMBER)
    ratio = (pv / tv).where(use & (tv > 0) & np.isfinite(pv) & np.isfinite(tv))
    if not bool(ratio.notnull().any()):
        raise ValueError(f"no shared wavenumber bin above kmin = {threshold:g} cycles/degree")
    return ratio.mean(WAVENUMBER).rename("spectrum_ratio")


def spread_skill_by_band(
    ensemble: xr.DataArray, truth: xr.DataArray, edges: Sequence[float]
) -> xr.DataArray:
    """Spread–skill in wavenumber bands: where in scale an ensemble is too narrow or wide.

    With S(k) the power spectrum (:func:`power_spectrum`, averaged over members and
    every other leading dim) of the members' deviations from their mean, scaled by
    M/(M − 1) (the unbiased member variance), and E(k) that of the ensemble mean's error,

        r_b = √((M+1)/M · Σ_{k∈b} S(k) / Σ_{k∈b} E(k)),   b = [edges_i, edges_{i+1}),

    the sums running over the radial bins whose centre lies in the band (both spectra
    share the bins, so the band sums weigh them alike). By Parseval the bands split the
    overall ratio of :func:`spread_skill` (up to the spectral window and the bins' mode
    counts); r_b ≈ 1 for an ensemble whose members and truth are exchangeable at those
    scales, < 1 where the spread there falls short of the error. The domain mean (k = 0)
    is left out, as in :func:`power_spectrum`.

    Args:
        ensemble: (member, ..., lat, lon); truth: (..., lat, lon), on the same grid.
        edges: increasing band edges in cycles/degree (e.g. [0, 0.25, 0.5, 1, inf]).

    Returns:
        DataArray ``spread_skill`` on ``band`` (labels "lo–hi"), with coordinates
        ``k_low``, ``k_high`` and ``error_share`` (the band's share of Σ E: which bands
        the ensemble mean's error lives in). Bands without a bin are NaN.
    """
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    m = _members(ens, "ensemble", 2)
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"edges must be at least two increasing values, got {edges}")
    mean = ens.mean(MEMBER)
    spread = power_spectrum((ens - mean).rename("deviation")) * (m / (m - 1))
    error = power_spectrum((mean - truth).rename("error"))
    k = error[WAVENUMBER].values
    ratios, shares = [], []
    total = float(error.sum())
    for lo, hi in itertools.pairwise(edges):
        band = (k >= lo) & (k < hi)
        e, sp = float(error.values[band].sum()), float(spread.values[band].sum())
        ratios.append(np.sqrt((m + 1) / m * sp / e) if band.any() and e > 0 else np.nan)
        shares.append(e / total if total > 0 else np.nan)
    labels = [f"{lo:g}–{hi:g}" for lo, hi in itertools.pairwise(edges)]
    return xr.DataArray(
        np.array(ratios),
        dims="band",
        coords={
            "band": labels,
            "k_low": ("band", edges[:-1], {"units": "cycles/degree"}),
            "k_high": ("band", edges[1:], {"units": "cycles/degree"}),
            "error_share": ("band", np.array(shares)),
        },
        name="spread_skill",
    )


def laplacian(field: xr.DataArray) -> xr.DataArray:
    """The 5-point Laplacian in grid units, x_{i+1,j} + x_{i−1,j} + x_{i,j+1} + x_{i,j−1}
    − 4 x_{i,j}, on interior points (NaN on the outer rows and columns)."""
    neighbours = sum(field.shift({d: s}) for d in (LAT, LON) for s in (1, -1))
    return neighbours - 4 * field


def laplacian_ratio(
    prediction: xr.DataArray, truth: xr.DataArray, where: xr.DataArray | None = None
) -> xr.DataArray:
    """⟨(Δx_m)²⟩ / ⟨(Δy)²⟩: the members' mean squared Laplacian over the truth's.

    The speckle number: grid-scale noise that a spectrum averaged over the domain can
    hide (noise over a smooth sea, say) raises the Laplacian where it sits. Both means
    run over every member, time and interior point in ``where`` (a boolean (lat, lon)
    mask, e.g. sea or land; default all), area-weighted; 1 for members as rough as the
    truth, > 1 speckled, < 1 too smooth. The grid spacing cancels in the ratio (one grid).
    """
    prediction = _matched(prediction, truth, "prediction", "truth", member=True)
    weights = lat_weights(truth) * xr.ones_like(truth[LON], dtype=np.float64)
    if where is not None:
        weights = weights.where(where.astype(bool), 0.0)
    num = (laplacian(prediction) ** 2).weighted(weights).mean()
    den = (laplacian(truth) ** 2).weighted(weights).mean()
    return (num / den).rename("laplacian_ratio")


# ----------------------------------------------------------------- block bootstrap


def block_bootstrap(
    statistic: Callable[..., float],
    *series: np.ndarray,
    block: int = 4,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float | None, float | None]:
    """``statistic(*series)`` with a moving-block bootstrap interval over time.

    ``series`` are per-time arrays of one length T ≥ 2 (e.g. per-time scores); each
    resample draws blocks of ``block`` consecutive times (a day at 6-hourly steps) with
    replacement (Künsch 1989), the same times for every series, so serial correlation
    and the pairing are kept. The interval is the percentile interval of ``n_boot``
    resamples, seeded. With fewer than :data:`MIN_BLOCKS` blocks (⌈T / block⌉) the
    resamples are too few to say anything: the interval is unavailable (None, None).

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
    value = float(statistic(*arrays))
    n_blocks = -(-size // block)
    if n_blocks < MIN_BLOCKS:
        return value, None, None
    rng = np.random.default_rng(seed)
    starts = np.arange(size - block + 1)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        idx = (rng.choice(starts, n_blocks)[:, None] + np.arange(block)[None, :]).ravel()[:size]
        draws[i] = statistic(*(x[idx] for x in arrays))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return value, float(low), float(high)


def paired_block_bootstrap(
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    block: int = 4,
    n_boot: int = 2000,
    level: float = 0.95,
    root: bool = False,
    seed: int = 0,
) -> tuple[float, float | None, float | None]:
    """Difference of mean scores, A − B, with a moving-block bootstrap interval over time.

    ``score_a``/``score_b`` are per-time scores (shape (T,)) of two methods on the same
    times (e.g. area-weighted squared errors, or CRPS). The statistic is
    mean(a) − mean(b), or sqrt(mean(a)) − sqrt(mean(b)) with ``root=True`` (RMSE from
    squared errors); the interval is :func:`block_bootstrap`'s (None without enough
    blocks).

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
    weights: xr.DataArray | None = None,
) -> tuple[float, float | None, float | None]:
    """:func:`spread_skill` with a moving-block bootstrap interval over ``dim``.

    Per time τ the weighted sums S_τ = Σ w s² (member variance) and
    E_τ = Σ w (ensemble mean − truth)² are kept; a resample R of the times gives
    √((M+1)/M · Σ_R S_τ / Σ_R E_τ), so on all times it equals :func:`spread_skill` when
    every time has the same valid points. Blocks of ``block`` consecutive times keep the
    serial correlation (:func:`block_bootstrap`; no interval with fewer than
    :data:`MIN_BLOCKS` blocks).

    Returns:
        (ratio on all times, low, high).
    """
    ensemble = _as_dataarray(ensemble, "ensemble")
    truth = _as_dataarray(truth, "truth")
    if dim not in truth.dims or dim not in ensemble.dims:
        raise ValueError(f"spread_skill_interval: ensemble and truth need the dim {dim!r}")
    ens = _matched(ensemble, truth, "ensemble", "truth", member=True)
    m = _members(ens, "ensemble", 2)
    invalid = _invalid(ens, truth)
    var = ens.var(MEMBER, ddof=1, skipna=False).where(~invalid)
    sq_err = ((ens.mean(MEMBER, skipna=False) - truth) ** 2).where(~invalid)
    others = [d for d in truth.dims if d != dim]
    if weights is None and LAT in others:
        weights = lat_weights(truth)
    w = (xr.ones_like(truth) if weights is None else weights.broadcast_like(truth)).where(~invalid)
    spread = (w * var).sum(others).transpose(dim).values
    error = (w * sq_err).sum(others).transpose(dim).values

    def ratio(s: np.ndarray, e: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sqrt((m + 1) / m * s.sum() / e.sum()))

    return block_bootstrap(ratio, spread, error, block=block, n_boot=n_boot, level=level, seed=seed)
