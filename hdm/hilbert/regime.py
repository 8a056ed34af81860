r"""The small-scale level: how rough a field is below about a degree, as a prior's input.

A prior trained on a few weeks learns one average amount of small-scale variability; on
rougher days (clear nights, strong land–sea contrasts) its members vary too little below
the coarse cells and the ensemble's spread does not follow its error (BENCHMARKS.md
``uk-spread-by-time``: spread 1.2–1.3× from time to time where the error varies 2.5×).
A prior *conditioned* on the level of its small scales lets every time have its own.

The level of a field x (B, C, H, W) on a regional lat-lon grid, in normalised units:

    ρ(x) = log √( Σ_i w_i Σ_c ((I − L) x)_{c,i}² / (C Σ_i w_i) ),

with L the Gaussian low-pass of the training augmentation
(:func:`hdm.hilbert.augmentation.gaussian_lowpass`, σ grid spacings of the training grid)
and w the grid's area weights. The network sees z = (ρ − μ_ρ) / s_ρ, with μ_ρ, s_ρ the
mean and std of ρ over the (unaugmented) training fields, through its time embedding
(:class:`hdm.hilbert.networks.TimeConditionedFNO`, ``condition_inputs``). The
augmentation x' = L x + a (x − L x) moves ρ by about log a, so a prior trained with it
has seen levels well beyond those of its weeks.

At sampling time ρ of the unknown field is estimated from the coarse field's own finest
scales, which follow it (UK t2m, 1° low-pass: correlation 0.98 / 0.98 / 0.90 at ×2 / ×4 /
×8 on the training days 03-12..24, 0.99 / 0.95 at ×4 / ×8 on the unseen days 03-04..10;
BENCHMARKS.md uk-validation-shift): for a coarse field c of h × w cells (h, w ≥ 4),

    r(c) = log √( Σ_j v_j (c − B P₂ c)_j² / Σ_j v_j ),

P₂ the mean of 2 × 2 blocks of cells, B the bilinear interpolation between the block
centres (held beyond the outermost ones), v_j = cos φ_j. On the training fields, for every
integer factor f whose coarse grid P_f x has at least 4 cells per axis, an ordinary least
squares fit

    ρ = a_f + b_f r(P_f x) + ε,   ε of std s_f,

is recorded (:class:`LevelEstimator`); a coarse grid of f cells per training spacing
(geometric mean over both axes) takes the fit at f, interpolated linearly in log f
between the recorded factors, and is refused outside them. Members share the estimate
ẑ = (a_f + b_f r − μ_ρ)/s_ρ of their time (the residual std s_f is reported, not drawn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hdm.hilbert.augmentation import gaussian_lowpass
from hdm.hilbert.grids import Grid

__all__ = [
    "LevelError",
    "LevelEstimator",
    "SmallScaleLevel",
    "block_means",
    "coarse_roughness",
    "small_scale_level",
    "spacing_ratio",
]


class LevelError(ValueError):
    """A coarse field the small-scale level cannot be estimated from."""


def small_scale_level(x: torch.Tensor, grid: Grid, sigma_cells: float) -> torch.Tensor:
    """ρ(x) (module doc) of x (B, C, H, W) on ``grid``: (B,), in log normalised units."""
    small = x - gaussian_lowpass(x, sigma_cells)
    w = grid.weights_tensor(dtype=x.dtype, device=x.device)
    w = w / w.sum()
    mean_square = (small**2 * w).sum(dim=(-2, -1)).mean(dim=1)
    return 0.5 * torch.log(mean_square.clamp_min(1e-30))


def block_means(x: np.ndarray, factor: int) -> np.ndarray:
    """The means of ``factor`` × ``factor`` blocks over the last two axes of x (..., H, W),
    starting at the first row and column; rows and columns beyond the last whole block are
    dropped (as :func:`hdm.data.coarsen.coarse_grain` does with ``boundary="trim"``)."""
    h, w = x.shape[-2] // factor, x.shape[-1] // factor
    x = x[..., : h * factor, : w * factor]
    return x.reshape(*x.shape[:-2], h, factor, w, factor).mean(axis=(-3, -1))


def coarse_roughness(coarse: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """r(c) (module doc) of coarse fields c (T, h, w) with cell-centre latitudes ``lat``
    (h,) in degrees: (T,).

    Raises:
        LevelError: fewer than 4 cells along an axis, or a non-finite value.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or min(coarse.shape[1:]) < 4:
        raise LevelError(
            f"the coarse field has {coarse.shape[-2:]} cells; its small-scale roughness "
            "needs at least 4 along each axis"
        )
    if not np.isfinite(coarse).all():
        raise LevelError("the coarse field has non-finite values")
    h, w = coarse.shape[1] // 2 * 2, coarse.shape[2] // 2 * 2
    blocks = torch.as_tensor(block_means(coarse, 2)[:, None])
    # align_corners=False puts output cell i at input coordinate (i + ½)/2 − ½: between the
    # block centres exactly, clamped (held) beyond the outermost ones
    smooth = F.interpolate(blocks, size=(h, w), mode="bilinear", align_corners=False)
    residual = coarse[:, :h, :w] - smooth[:, 0].numpy()
    v = np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)[:h]))[:, None] * np.ones(w)
    v = v / v.sum()
    return 0.5 * np.log(np.maximum((residual**2 * v).sum(axis=(1, 2)), 1e-30))


@dataclass(frozen=True)
class LevelEstimator:
    """ρ ≈ intercept + slope · r(P_f x) at ``factor`` f, fitted on ``n`` training fields
    with ``residual_std`` and ``correlation`` (of ρ with r)."""

    factor: int
    intercept: float
    slope: float
    residual_std: float
    correlation: float
    n: int


@dataclass(frozen=True)
class SmallScaleLevel:
    """What a prior conditioned on its small-scale level records (module doc).

    sigma_cells: the low-pass width of ρ in training-grid spacings; mean, std: μ_ρ, s_ρ;
    estimators: one :class:`LevelEstimator` per recorded coarsening factor, ascending.
    """

    sigma_cells: float
    mean: float
    std: float
    estimators: tuple[LevelEstimator, ...]

    @classmethod
    def fit(
        cls,
        fields: torch.Tensor,
        grid: Grid,
        sigma_cells: float,
        factors: Sequence[int] | None = None,
    ) -> SmallScaleLevel:
        """μ_ρ, s_ρ and the estimators from training fields (N, C, H, W) on ``grid`` (the
        first channel's coarse roughness; one-channel models are the ones conditioned).
        ``factors``: default every f ≥ 2 with ≥ 4 coarse cells per axis."""
        levels = torch.cat([small_scale_level(b, grid, sigma_cells) for b in fields.split(64)])
        rho = levels.double().numpy()
        std = float(rho.std())
        if not std > 0:
            raise ValueError("the training fields all have the same small-scale level")
        h, w = fields.shape[-2:]
        if factors is None:
            factors = [f for f in range(2, min(h, w) // 4 + 1) if min(h // f, w // f) >= 4]
        lat = np.asarray(grid.axes[0].coords, dtype=np.float64)
        x = fields[:, 0].double().numpy()
        estimators = []
        for f in sorted(factors):
            coarse_lat = lat[: len(lat) // f * f].reshape(-1, f).mean(axis=1)
            r = coarse_roughness(block_means(x, f), coarse_lat)
            slope, intercept = np.polyfit(r, rho, 1)
            residual = rho - (intercept + slope * r)
            estimators.append(
                LevelEstimator(
                    factor=int(f),
                    intercept=float(intercept),
                    slope=float(slope),
                    residual_std=float(residual.std()),
                    correlation=float(np.corrcoef(r, rho)[0, 1]),
                    n=len(rho),
                )
            )
        if not estimators:
            raise ValueError(
                f"a {h} x {w} grid has no coarsening factor with 4 coarse cells per axis"
            )
        return cls(float(sigma_cells), float(rho.mean()), std, tuple(estimators))

    def normalised(self, rho):
        """z = (ρ − μ_ρ)/s_ρ (a tensor or an array)."""
        return (rho - self.mean) / self.std

    def training_input(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The network input z of training fields x (B, C, H, W): (B, 1)."""
        return self.normalised(small_scale_level(x, grid, self.sigma_cells))[:, None]

    @property
    def factors(self) -> tuple[int, ...]:
        return tuple(e.factor for e in self.estimators)

    def estimator_at(self, factor: float) -> LevelEstimator:
        """The fit at ``factor`` (interpolated linearly in log f between recorded ones).

        Raises:
            LevelError: ``factor`` outside the recorded range (with a 2 % tolerance).
        """
        lo, hi = self.factors[0], self.factors[-1]
        if not lo / 1.02 <= factor <= hi * 1.02:
            raise LevelError(
                f"the coarse cells are {factor:.3g} training-grid spacings wide; this "
                f"model estimates its small-scale level from coarse fields of {lo} to {hi} "
                "spacings only"
            )
        factor = min(max(factor, lo), hi)
        logs = np.log(self.factors)
        u = float(np.log(factor))

        def at(name: str) -> float:
            return float(np.interp(u, logs, [getattr(e, name) for e in self.estimators]))

        return LevelEstimator(
            factor=round(factor),
            intercept=at("intercept"),
            slope=at("slope"),
            residual_std=at("residual_std"),
            correlation=at("correlation"),
            n=self.estimators[0].n,
        )

    def estimate(self, coarse: np.ndarray, lat: np.ndarray, factor: float) -> np.ndarray:
        """ẑ (T,) for normalised coarse fields (T, h, w) with cell latitudes ``lat`` whose
        cells are ``factor`` training spacings wide (module doc)."""
        fit = self.estimator_at(factor)
        return self.normalised(fit.intercept + fit.slope * coarse_roughness(coarse, lat))

    def to_dict(self) -> dict:
        return {
            "kind": "small_scale_level",
            "sigma_cells": self.sigma_cells,
            "mean": self.mean,
            "std": self.std,
            "estimators": [asdict(e) for e in self.estimators],
        }

    @classmethod
    def from_dict(cls, d: dict) -> SmallScaleLevel:
        if d.get("kind") != "small_scale_level":
            raise ValueError(f"unknown conditioning record {d.get('kind')!r}")
        return cls(
            float(d["sigma_cells"]),
            float(d["mean"]),
            float(d["std"]),
            tuple(LevelEstimator(**e) for e in d["estimators"]),
        )


def spacing_ratio(coarse_lat: np.ndarray, coarse_lon: np.ndarray, grid: Grid) -> float:
    """Coarse cells per training spacing, the geometric mean over both axes, from the
    coarse cell centres (ascending, ≥ 2 each) and the training grid's axes."""
    ratios = [
        abs(float(np.mean(np.diff(c)))) / axis.spacing
        for c, axis in zip((coarse_lat, coarse_lon), grid.axes)
    ]
    return math.sqrt(ratios[0] * ratios[1])
