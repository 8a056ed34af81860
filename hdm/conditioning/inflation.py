"""Adaptive inflation of the part of an ensemble's spread that no observation sees.

A prior trained on one period gives posterior ensembles that are too narrow where the
fields vary more below the coarse cells than its training fields did: the UK test week
has 1.29× the training period's sub-1° variability (BENCHMARKS.md, section downscale-uk)
and its spread–skill falls to 0.70. The station observations measure that variability
at sampling time, so it can be corrected without the truth and without retraining: the
multiplicative inflation of ensemble data assimilation, with its factor estimated from
innovation statistics (Desroziers et al. 2005; Li, Kalnay & Miyoshi 2009), here from the
residuals of the stations about the interpolated coarse field.

**Estimate.** With C the coarse-cell operator, I the bilinear interpolation of cell values
(at the cell centres) onto the grid and S the bilinear sampling at the stations, the
sub-coarse residual of a field x at the stations is r(x) = S x − S I(C x), shape
(n_stations,). For the observations, r_obs = y_s − S I(y_c) over every (time, station)
pair with an observation; E[r_obs²] = E_world[r²] + σ_s² (station noise σ_s; the coarse
noise, 2 % of the training std by default, is neglected). The prior's E_prior[r²] comes
from ``draws`` unconditional samples on the same grid with the same operators. Then

    λ² = (mean r_obs² − mean σ_s²) / mean r_prior²,

clipped to ``bounds`` (default [1, 2]: inflation only, as sampling error makes
ensembles too narrow, not too wide). λ is one number per run: estimated from all its
times, so it does not depend on how a batch run splits them.

**Inflation.** Per time, with A the operator rows that hold an observation (coarse cells
and stations), each member's deviation δ_m = x_m − x̄ splits into the part the
observations see, δ_A = Aᵀ(AAᵀ)⁻¹Aδ_m, and the rest δ_⊥ = δ_m − δ_A (Aδ_⊥ = 0):

    x_m' = x̄ + δ_A + λ δ_⊥.

The ensemble mean and every member's observed values A x_m are unchanged; the spread the
observations cannot see grows by λ. Fields are in the model's normalised units
throughout (the operators average, so they commute with the affine normalisation).

On a prior of C channels (variables, levels, a wind pair) x_m is the whole member, of
C·N values, and A holds the rows of every source on every channel. Each row reads one
channel, so rows of different channels are orthogonal and AAᵀ is block-diagonal by
channel: δ_A is the projection of each channel c onto its own rows A_c, made channel by
channel, and a channel no observation reads is all δ_⊥ (its spread grows by λ). λ itself
is one number for all channels; "auto" estimates it for one-channel priors only (its
residuals are those of one variable's stations about that variable's coarse field, and
the prior draws of a vector prior are not one channel's).

Shapes: members (M, C, *grid.shape); observation values (n_times, n_obs) ordered as the
operator's rows, NaN where a station has no observation at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
import xarray as xr

from hdm.conditioning.ensembles import member_seed
from hdm.conditioning.observations import (
    CoarseGrain,
    Composite,
    ObservationError,
    ObservationOperator,
    PointSample,
)
from hdm.data.schema import LAT, LON
from hdm.hilbert.denoisers import Denoiser
from hdm.hilbert.devices import denoiser_device, seeded_generator
from hdm.hilbert.grids import LatLonGrid
from hdm.hilbert.sampling import make_sampler

__all__ = [
    "InflationConfig",
    "InflationEstimate",
    "estimate_inflation",
    "inflate_members",
    "parse_inflation",
    "prior_draws",
    "station_residuals",
]


@dataclass(frozen=True)
class InflationConfig:
    """How λ is estimated: ``draws`` unconditional prior samples (``sampler``, ``steps``,
    ``batch_size`` per call, seeded by ``seed``), and the ``bounds`` λ is clipped to."""

    draws: int = 64
    sampler: str = "heun"
    steps: int = 25
    batch_size: int = 16
    bounds: tuple[float, float] = (1.0, 2.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.draws) < 2:
            raise ValueError(f"inflation needs at least 2 prior draws, got {self.draws}")
        lo, hi = self.bounds
        if not 0 < lo <= hi:
            raise ValueError(f"inflation bounds must satisfy 0 < low <= high, got {self.bounds}")
        make_sampler(self.sampler, self.steps)


@dataclass(frozen=True)
class InflationEstimate:
    """λ and what it was made of (variances in normalised units², see the module doc).

    ``unclipped`` is λ before the bounds (NaN when the residual variance does not exceed
    the station noise variance)."""

    factor: float
    unclipped: float
    innovation_var: float
    noise_var: float
    prior_var: float
    n_innovations: int
    draws: int

    def attrs(self, std: float) -> dict:
        """Dataset attributes, variances converted to physical units² with the field std."""
        return {
            "inflation": self.factor,
            "inflation_unclipped": self.unclipped,
            "inflation_residual_var": self.innovation_var * std**2,
            "inflation_noise_var": self.noise_var * std**2,
            "inflation_prior_residual_var": self.prior_var * std**2,
            "inflation_innovations": self.n_innovations,
            "inflation_prior_draws": self.draws,
        }


def parse_inflation(value: str | float | None) -> float | str | None:
    """``None``/"none"/1 → None (off); "auto" → "auto"; a number ≥ 1 (as text or float) → it.

    Raises ValueError naming the value otherwise."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("none", "off", ""):
        return None
    if text == "auto":
        return "auto"
    message = f"inflation must be 'none', 'auto' or a number >= 1, got {value!r}"
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(message) from None
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(message)
    return None if factor == 1 else factor


def _leaves(operator: ObservationOperator) -> list[ObservationOperator]:
    """The single-channel sources of an operator, nested composites flattened, in the
    order of their rows."""
    if isinstance(operator, Composite):
        return [leaf for p in operator.parts for leaf in _leaves(p)]
    return [operator]


def _sources(operator: ObservationOperator) -> tuple[CoarseGrain, PointSample, slice, slice]:
    """The coarse and station parts of a composite and where their rows are."""
    parts = _leaves(operator)
    coarse = [p for p in parts if isinstance(p, CoarseGrain)]
    stations = [p for p in parts if isinstance(p, PointSample)]
    if len(coarse) > 1 or len(stations) > 1:
        what = ", ".join(p.name for p in (coarse if len(coarse) > 1 else stations))
        raise ObservationError(
            "inflation 'auto' estimates λ from one variable's station residuals about its "
            f"coarse field: it needs one coarse field and station observations of one "
            f"variable, got several ({what}); give a number instead"
        )
    if len(coarse) != 1 or len(stations) != 1:
        raise ObservationError(
            "inflation 'auto' estimates λ from the stations' residuals about the coarse "
            "field: it needs one coarse field and station observations"
        )
    rows, start = {}, 0
    for p in parts:
        rows[id(p)] = slice(start, start + p.n_obs())
        start += p.n_obs()
    return coarse[0], stations[0], rows[id(coarse[0])], rows[id(stations[0])]


def station_residuals(
    coarse_op: CoarseGrain,
    station_op: PointSample,
    grid: LatLonGrid,
    coarse_values: np.ndarray,
    station_values: np.ndarray,
) -> np.ndarray:
    """r = y_s − S I(y_c): station values minus the bilinearly interpolated coarse field.

    Args:
        coarse_values: (n, n_cells) cell values, row-major over ``coarse_op.cell_shape``.
        station_values: (n, n_stations), NaN where a station has no value.

    Returns:
        (n, n_stations) residuals (NaN where the station value is).
    """
    from hdm.data.regrid import interpolate_coarse

    coarse_values = np.asarray(coarse_values, dtype=np.float64)
    n = coarse_values.shape[0]
    lat_c, lon_c = coarse_op.cell_centres()
    cells = xr.DataArray(
        coarse_values.reshape(n, *coarse_op.cell_shape),
        dims=("sample", LAT, LON),
        coords={LAT: lat_c, LON: lon_c},
    )
    smooth = interpolate_coarse(cells, grid.coords(), "bilinear").values
    at_stations = station_op.apply(torch.as_tensor(smooth)[:, None], grid).numpy()
    return np.asarray(station_values, dtype=np.float64) - at_stations


def prior_draws(
    denoiser: Denoiser, grid: LatLonGrid, cfg: InflationConfig, channels: int = 1
) -> torch.Tensor:
    """``cfg.draws`` unconditional samples (draws, channels, *grid.shape), seeded."""
    sampler = make_sampler(cfg.sampler, cfg.steps)
    out, device = [], denoiser_device(denoiser)
    for k, start in enumerate(range(0, cfg.draws, cfg.batch_size)):
        n = min(cfg.batch_size, cfg.draws - start)
        gen = seeded_generator(member_seed(cfg.seed, f"inflation/{k}"), device)
        out.append(sampler(denoiser, n, grid, channels=channels, generator=gen).samples.cpu())
    return torch.cat(out).double()


def estimate_inflation(
    denoiser: Denoiser,
    grid: LatLonGrid,
    operator: ObservationOperator,
    values: np.ndarray,
    cfg: InflationConfig = InflationConfig(),
) -> InflationEstimate:
    """λ from the observations of all times and the prior's own residuals (module doc).

    Args:
        denoiser: the prior's denoiser (unconditional draws are made with it).
        operator: a :class:`Composite` of one :class:`CoarseGrain` and one
            :class:`PointSample`, in normalised units.
        values: (n_times, n_obs) normalised observations in the operator's row order.

    Raises:
        ObservationError: the operator has no coarse field or no stations, several of
            either, sources on a channel other than 0 (the estimate is for one-channel
            priors), or no time has both a complete coarse field and a station observation.
    """
    coarse_op, station_op, c_rows, s_rows = _sources(operator)
    reading = sorted({coarse_op.channel, station_op.channel} - {0})
    if reading:
        raise ObservationError(
            f"inflation 'auto' is estimated for one-channel priors; the observations read "
            f"channel {reading[0]}: give a number instead"
        )
    values = np.asarray(values, dtype=np.float64)
    complete = np.isfinite(values[:, c_rows]).all(axis=1)
    r_obs = station_residuals(
        coarse_op, station_op, grid, values[complete, c_rows], values[complete, s_rows]
    )
    seen = np.isfinite(r_obs)
    if not seen.any():
        raise ObservationError(
            "inflation 'auto' found no time with both a complete coarse field and a station "
            "observation"
        )
    noise_var = float(np.mean(np.broadcast_to(station_op.noise_std() ** 2, r_obs.shape)[seen]))
    innovation_var = float(np.mean(r_obs[seen] ** 2))
    with torch.no_grad():
        x = prior_draws(denoiser, grid, cfg)
    r_prior = station_residuals(
        coarse_op,
        station_op,
        grid,
        coarse_op.apply(x, grid).numpy(),
        station_op.apply(x, grid).numpy(),
    )
    prior_var = float(np.mean(r_prior**2))
    excess = innovation_var - noise_var
    unclipped = math.sqrt(excess / prior_var) if excess > 0 and prior_var > 0 else math.nan
    lo, hi = cfg.bounds
    factor = lo if math.isnan(unclipped) else min(max(unclipped, lo), hi)
    return InflationEstimate(
        factor=float(factor),
        unclipped=float(unclipped),
        innovation_var=innovation_var,
        noise_var=noise_var,
        prior_var=prior_var,
        n_innovations=int(seen.sum()),
        draws=int(x.shape[0]),
    )


def inflate_members(
    members: torch.Tensor,
    operator: ObservationOperator,
    y: np.ndarray,
    grid: LatLonGrid,
    factor: float,
) -> torch.Tensor:
    """x_m' = x̄ + δ_A + λ δ_⊥ for one time (module doc), on every channel.

    Args:
        members: (M, C, *grid.shape), normalised.
        operator: the run's operator (its sources may read any of the C channels).
        y: (n_obs,) the time's observations; rows that are NaN are left out of A.
        factor: λ.

    Returns:
        (M, C, *grid.shape): per channel c, the deviations projected onto the rows A_c
        that read c are kept and the rest scaled by λ (all of a channel no row reads).
        Each source's dense matrix is used (grids up to 200,000 points).

    Raises:
        ObservationError: a source reads a channel the members do not have.
    """
    if factor == 1 or members.shape[0] < 2:
        return members
    finite = np.isfinite(np.asarray(y, dtype=np.float64))
    m, channels = members.shape[:2]
    x = members.detach().cpu().reshape(m, channels, -1).double()
    mean = x.mean(0, keepdim=True)
    dev = (x - mean).numpy()  # (M, C, N)
    blocks: dict[int, list[np.ndarray]] = {}
    start = 0
    for source in _leaves(operator):
        n = source.n_obs()
        if not 0 <= source.channel < channels:
            raise ObservationError(
                f"{source.name} reads channel {source.channel}, the members have {channels}"
            )
        keep = finite[start : start + n]
        if keep.any():
            blocks.setdefault(source.channel, []).append(source.matrix(grid)[keep])
        start += n
    out = factor * dev
    for c, rows in blocks.items():
        a = np.concatenate(rows)  # (n_rows, N): A_c
        coef = scipy.linalg.lstsq(a @ a.T, a @ dev[:, c].T, cond=1e-10)[0]  # (n_rows, M)
        observed = (a.T @ coef).T  # δ_A on channel c, (M, N)
        out[:, c] = observed + factor * (dev[:, c] - observed)
    inflated = mean + torch.as_tensor(out)
    return inflated.reshape(members.shape).to(dtype=members.dtype, device=members.device)
