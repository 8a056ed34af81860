"""The Gaussian of the training data, and analytical teleportation from it.

At high and moderate noise the learned denoiser is close to the denoiser of the Gaussian
N(m, C) with the training data's mean and covariance (Wang & Vastola, "The unreasonable
effectiveness of Gaussian score approximation for diffusion models", 2024). Down to that
noise level the reverse process of the Gaussian is known in closed form, so a sampler can
start there: X_{t*} = α_{t*} X_0 + σ_{t*} ξ with X_0 ~ N(m, C) and ξ ~ N(0, Q), one
exact draw in place of the steps above t* ("teleportation").

The form of C (what scales): a truncated eigenbasis of the empirical covariance,

    C ≈ B Bᵀ,  B = [b_1 … b_r],  b_k = s_k v_k / √(N − 1),

from the thin SVD of the N centred training fields X − m = U S Vᵀ (each field flattened
over channels and grid points, D = C·n values). Storage and a draw cost O(r D), so grids
of 10⁵ points with a few hundred modes are cheap; r ≤ N − 1 always (the empirical
covariance of N fields has that rank). The error is what the truncation leaves out,
reported as ``explained`` (the fraction Σ_{k≤r} s_k² / Σ s_k² of the training variance
kept), plus everything the N fields never showed: the Gaussian has no variance outside
span(B). That is why it is used only down to t*, where σ_{t*} ξ still covers the scales
it lacks, and why t* is measured (:mod:`hdm.pipelines.gaussian_stats`) rather than
assumed.

The sample covariance of N strongly autocorrelated fields (24 days of hourly t2m: 575
modes in 1,617 dimensions) has no variance outside span(B), so at the coarse cells' scales
the posterior of the start is narrower than the days it meets. :meth:`GaussianStatistics.shrunk`
shrinks it toward a full-rank target T (a Ledoit–Wolf-style convex combination with a
fixed weight, kept here because the target is the model's own Q rather than a multiple
of I, and the weight is chosen on validation skill rather than by Ledoit–Wolf's
Frobenius-loss formula):

    C' = (1 − δ) B Bᵀ + δ T,

stored the same way, B' from the eigendecomposition of C' (one channel, dense: at most
:data:`DENSE_DENOISER_LIMIT` values; the pipeline's T is a low-pass of Q scaled to the
data's variance, :mod:`hdm.pipelines.gaussian_stats`). ``shrinkage`` records δ and what T was.

A draw is x_0 = m + B z with z ~ N(0, I_r) (the prior) or z ~ N(μ_z, Σ_z), a Gaussian in
coefficient space (:class:`CoefficientLaw`; the posterior given linear observations is
one, see :mod:`hdm.conditioning.teleport`). The statistics live on the grid they were
fitted on: a PCA basis is not a function of the continuum, so they refuse another grid
(naming both) instead of interpolating it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.devices import draw_device
from hdm.hilbert.grids import Grid
from hdm.hilbert.process import ForwardProcess

__all__ = [
    "DENSE_DENOISER_LIMIT",
    "CoefficientLaw",
    "GaussianStart",
    "GaussianStatistics",
    "TeleportError",
]

#: the largest D = channels × grid points for which the dense Gaussian denoiser (one
#: generalised eigendecomposition, O(D³)) is built to measure t*
DENSE_DENOISER_LIMIT = 4096


class TeleportError(ValueError):
    """Teleportation that cannot be done as asked (named in the message)."""


@dataclass(frozen=True)
class CoefficientLaw:
    """z ~ N(mean, factor factorᵀ) in the coefficients of a :class:`GaussianStatistics`
    basis: ``mean`` (r,), ``factor`` (r, r), float64. The prior is N(0, I)."""

    mean: torch.Tensor
    factor: torch.Tensor

    @staticmethod
    def standard(rank: int) -> CoefficientLaw:
        return CoefficientLaw(
            torch.zeros(rank, dtype=torch.float64), torch.eye(rank, dtype=torch.float64)
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, (n, r) float64, on the generator's device."""
        where = draw_device(generator)
        eps = torch.randn(
            n, self.mean.shape[0], generator=generator, dtype=torch.float64, device=where
        )
        return self.mean.to(where) + eps @ self.factor.to(where).T


@dataclass
class GaussianStatistics:
    """N(m, B Bᵀ) of normalised training fields on one grid (see the module doc).

    Attributes:
        grid: the grid the fields were on.
        mean: m, (C, *grid.shape) float64.
        basis: B as fields, (r, C, *grid.shape) float64.
        explained: fraction of the training variance the r modes keep.
        n_fields: N, the number of fields fitted.
        varsigma_star: ς* = σ/α at t*, where samplers may start (None: not measured).
        curve: the measurement behind ς*: ``{"varsigma": [...], "difference": [...],
            "threshold": τ, "n_fields": M}`` (see :mod:`hdm.pipelines.gaussian_stats`).
        model_sha256: the model the curve was measured with.
        shrinkage: how B Bᵀ was shrunk toward a full-rank target (:meth:`shrunk`):
            ``{"weight": δ, ...}`` with what the caller says the target was; None: the
            sample covariance as it is.
    """

    grid: Grid
    mean: torch.Tensor
    basis: torch.Tensor
    explained: float
    n_fields: int
    varsigma_star: float | None = None
    curve: dict | None = None
    model_sha256: str | None = None
    shrinkage: dict | None = None

    @property
    def rank(self) -> int:
        return int(self.basis.shape[0])

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    @staticmethod
    def fit(fields: torch.Tensor, grid: Grid, rank: int | None = None) -> GaussianStatistics:
        """The mean and the top-``rank`` modes (default: all N − 1) of ``fields``
        (N, C, *grid.shape), by a thin SVD of the centred fields in float64."""
        if fields.ndim != 2 + grid.ndim or tuple(fields.shape[2:]) != grid.shape:
            raise TeleportError(
                f"fields of shape {tuple(fields.shape)} are not (N, C, {grid.shape}) "
                f"fields on {grid.describe()}"
            )
        n = fields.shape[0]
        if n < 2:
            raise TeleportError(f"a covariance needs at least 2 fields, got {n}")
        x = fields.to(torch.float64)
        mean = x.mean(0)
        centred = (x - mean).reshape(n, -1)
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        keep = int((s > s[0] * 1e-10).sum()) if s[0] > 0 else 0
        r = min(keep, n - 1, rank if rank is not None else n)
        if r < 1:
            raise TeleportError("the fields do not vary: their covariance is zero")
        total = float((s**2).sum())
        basis = (s[:r, None] * vt[:r]) / np.sqrt(n - 1)
        return GaussianStatistics(
            grid=grid,
            mean=mean,
            basis=basis.reshape(r, *mean.shape),
            explained=float((s[:r] ** 2).sum()) / total,
            n_fields=n,
        )

    @staticmethod
    def from_covariance(
        cov: np.ndarray, grid: Grid, mean: np.ndarray | float = 0.0, tol: float = 1e-12
    ) -> GaussianStatistics:
        """The statistics of a known one-channel N(mean, cov) (e.g. the closed-form
        problems of the tests and benchmarks): B from the eigendecomposition of cov,
        every eigenvalue above ``tol`` × the largest kept."""
        eig, vec = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
        keep = eig > tol * eig.max()
        basis = (vec[:, keep] * np.sqrt(eig[keep])).T[::-1].copy()
        m = np.broadcast_to(np.asarray(mean, dtype=np.float64), grid.shape)
        return GaussianStatistics(
            grid=grid,
            mean=torch.as_tensor(m.copy())[None],
            basis=torch.as_tensor(basis).reshape(-1, 1, *grid.shape),
            explained=float(eig[keep].sum() / eig[eig > 0].sum()),
            n_fields=0,
        )

    def require_dense(self, what: str, advice: str = "") -> int:
        """D = values per field, or a :class:`TeleportError` saying that ``what`` needs
        one channel and at most :data:`DENSE_DENOISER_LIMIT` values (then ``advice``)."""
        d = self.mean.numel()
        if self.channels != 1 or d > DENSE_DENOISER_LIMIT:
            raise TeleportError(
                f"{what} needs one channel and at most {DENSE_DENOISER_LIMIT} values per "
                f"field, got {self.channels} channel(s) × {self.grid.size} points{advice}"
            )
        return d

    def shrunk(
        self, target: np.ndarray, weight: float, record: dict | None = None, tol: float = 1e-10
    ) -> GaussianStatistics:
        """N(m, (1 − δ) B Bᵀ + δ T) for δ = ``weight`` in [0, 1) and a dense symmetric
        positive semi-definite ``target`` T (D, D) (module doc); B' keeps the
        eigenvalues above ``tol`` × the largest. ``record`` (what T was) is kept in
        ``shrinkage`` with δ. One channel and D ≤ :data:`DENSE_DENOISER_LIMIT` only."""
        d = self.require_dense("shrinking the Gaussian (a dense eigendecomposition)")
        if not 0 <= weight < 1:
            raise TeleportError(f"the shrinkage weight must lie in [0, 1), got {weight}")
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (d, d):
            raise TeleportError(f"the shrinkage target must be ({d}, {d}), got {target.shape}")
        cov = (1 - weight) * self.covariance() + weight * target
        out = GaussianStatistics.from_covariance(
            0.5 * (cov + cov.T), self.grid, self.mean[0].numpy(), tol=tol
        )
        # the data's variance kept by the sample modes is what `explained` reported; the
        # shrunk Gaussian is no longer a truncation of it
        out.explained, out.n_fields = self.explained, self.n_fields
        out.shrinkage = {"weight": float(weight), "sample_rank": self.rank, **(record or {})}
        return out

    def check_grid(self, grid: Grid, what: str = "the Gaussian statistics") -> None:
        """A :class:`TeleportError` naming both grids unless ``grid`` is theirs."""
        if grid != self.grid:
            raise TeleportError(
                f"{what} were computed on {self.grid.describe()} and cannot be transferred "
                f"to {grid.describe()} (a PCA basis lives on its grid); sample on the "
                "training grid or without teleportation"
            )

    def fields(self, z: torch.Tensor) -> torch.Tensor:
        """m + B z for coefficients z (n, r): fields (n, C, *grid.shape) float64, on z's
        device."""
        basis = self.basis.to(z.device).reshape(self.rank, -1)
        flat = z.to(torch.float64) @ basis
        return self.mean.to(z.device) + flat.reshape(z.shape[0], *self.mean.shape)

    def covariance(self) -> np.ndarray:
        """The dense B Bᵀ, (D, D) float64 (small grids only)."""
        flat = self.basis.reshape(self.rank, -1)
        return (flat.T @ flat).numpy()

    def denoiser(self, process: ForwardProcess, jitter: float = 1e-6) -> GaussianDenoiser:
        """The exact denoiser of N(m, B Bᵀ + jitter·tr/D·I) under ``process`` (one
        channel, D ≤ :data:`DENSE_DENOISER_LIMIT`): the reference that t* is measured
        against. The jitter keeps the generalised eigenproblem well posed where B Bᵀ is
        singular."""
        d = self.require_dense(
            "the dense Gaussian denoiser", "; give ς* explicitly instead of measuring it"
        )
        cov = self.covariance()
        cov += jitter * np.trace(cov) / d * np.eye(d)
        return GaussianDenoiser(process, self.grid, cov, self.mean[0].numpy())

    def to_dict(self) -> dict:
        """Tensors and JSON-like values for ``torch.save`` (basis kept in float32)."""
        return {
            "format": "hdm-gaussian",
            "grid": self.grid.to_dict(),
            "mean": self.mean.to(torch.float32),
            "basis": self.basis.to(torch.float32),
            "explained": self.explained,
            "n_fields": self.n_fields,
            "varsigma_star": self.varsigma_star,
            "curve": self.curve,
            "model_sha256": self.model_sha256,
            "shrinkage": self.shrinkage,
        }

    @staticmethod
    def from_dict(d: dict) -> GaussianStatistics:
        return GaussianStatistics(
            grid=Grid.from_dict(d["grid"]),
            mean=d["mean"].to(torch.float64),
            basis=d["basis"].to(torch.float64),
            explained=float(d["explained"]),
            n_fields=int(d["n_fields"]),
            varsigma_star=None if d.get("varsigma_star") is None else float(d["varsigma_star"]),
            curve=d.get("curve"),
            model_sha256=d.get("model_sha256"),
            shrinkage=d.get("shrinkage"),
        )


def varsigma_range(process: ForwardProcess) -> tuple[float, float]:
    """(ς(t_min), ς(t_max)): the noise levels a sampler can start from lie strictly inside."""
    schedule = process.schedule
    low = float(schedule.varsigma(torch.tensor(schedule.t_min, dtype=torch.float64)))
    high = float(schedule.varsigma(torch.tensor(schedule.t_max, dtype=torch.float64)))
    return low, high


def check_varsigma(process: ForwardProcess, varsigma: float) -> float:
    """ς* as a float inside (ς(t_min), ς(t_max)), else a :class:`TeleportError` naming the
    range in ς and in t."""
    schedule = process.schedule
    low, high = varsigma_range(process)
    v = float(varsigma)
    if not (np.isfinite(v) and low < v < high):
        t = (
            float(schedule.t_from_varsigma(torch.tensor(v, dtype=torch.float64)))
            if np.isfinite(v) and v > 0
            else float("nan")
        )
        raise TeleportError(
            f"the teleportation level ς* = {v:g} (t* = {t:.4g}) lies outside the process's "
            f"range: ς in ({low:.3g}, {high:.4g}), t in ({schedule.t_min:g}, "
            f"{schedule.t_max:g})"
        )
    return v


@dataclass(frozen=True)
class GaussianStart:
    """Where a sampler starts when it teleports: X_{t*} = α (m + B z) + σ ξ, z ~ ``law``
    (default N(0, I): the unconditional marginal), ξ ~ N(0, Q), at ς* = ``varsigma``.

    A sampler given a start integrates from ς* instead of ς(t_max) (see
    :mod:`hdm.hilbert.sampling`)."""

    statistics: GaussianStatistics
    process: ForwardProcess
    varsigma: float
    law: CoefficientLaw | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "varsigma", check_varsigma(self.process, self.varsigma))

    def draw(
        self, n: int, channels: int, grid: Grid, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws of X_{t*}, (n, channels, *grid.shape) float32: the coefficients first,
        then the noise, from ``generator``."""
        stats = self.statistics
        stats.check_grid(grid)
        if channels != stats.channels:
            raise TeleportError(
                f"the Gaussian statistics have {stats.channels} channel(s), the sampler "
                f"asked for {channels}"
            )
        law = self.law or CoefficientLaw.standard(stats.rank)
        x0 = stats.fields(law.sample(n, generator))
        schedule = self.process.schedule
        t = schedule.t_from_varsigma(torch.tensor(self.varsigma, dtype=torch.float64))
        xi = self.process.noise(n, channels, grid, generator, dtype=torch.float64)
        return (schedule.alpha(t) * x0 + schedule.sigma(t) * xi).to(torch.float32)
