"""Denoisers D(x_t, t) ≈ E[X_0 | X_t = x_t] and the Q-preconditioned score.

Every denoiser is called as ``denoiser(x, t, grid)`` with x of shape
(batch, channels, *grid.shape) and per-sample times t (batch,), and returns an
estimate of E[X_0 | X_t = x] of the same shape. From it, for X_t = α_t X_0 + σ_t ξ,
ξ ~ N(0, Q), Tweedie's formula gives the Q-preconditioned score without Q⁻¹:

    s(x, t) = Q ∇_x log p_t(x) = (α_t D(x, t) − x) / σ_t².

:class:`PreconditionedDenoiser` wraps a backbone network F that knows nothing of
schedules (EDM, Karras et al. 2022, with σ_data = 1 once data are normalised):

- ``"v"`` (default): D = α_t x + σ_t F(x, c_noise); the training target is
  F* = (x_0 − α_t x_t)/σ_t = σ_t x_0 − α_t ξ. This is EDM's preconditioning written in
  the VP variables (c_skip = α_t², c_out = σ_t, c_in = 1 on y = x/α), and its loss
  ‖F − F*‖² is EDM's loss with weight 1/c_out².
- ``"eps"`` (HDM's): F predicts ξ, D = (x_t − σ_t F)/α_t, loss ‖F − ξ‖².

c_noise = ¼ log(σ_t/α_t) is the network's time input (EDM).

:class:`GaussianDenoiser` is exact for X_0 ~ N(m, C): D(x_t) = m + α C (α² C + σ² Q)⁻¹
(x_t − α m), computed through the generalised eigenproblem C v = μ Q v (Vᵀ Q V = I),
(α²C + σ²Q)⁻¹ = V diag(1/(α²μ + σ²)) Vᵀ. It is the test oracle that isolates samplers
and guidance from the network.
"""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import scipy.linalg
import torch
from torch import nn

from hdm.hilbert.grids import Grid
from hdm.hilbert.process import ForwardProcess, expand_to
from hdm.hilbert.regime import SmallScaleLevel
from hdm.hilbert.statics import StaticInputs


class Denoiser(Protocol):
    process: ForwardProcess

    def __call__(self, x: torch.Tensor, t: torch.Tensor, grid: Grid) -> torch.Tensor:
        """E[X_0 | X_t = x], shape of x."""


def q_score(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, grid: Grid) -> torch.Tensor:
    """s = Q∇log p_t(x) = (α_t D − x)/σ_t² (see module docstring)."""
    schedule = denoiser.process.schedule
    alpha = expand_to(schedule.alpha(t), x)
    sigma = expand_to(schedule.sigma(t), x)
    return (alpha * denoiser(x, t, grid) - x) / sigma**2


def network_count(denoiser) -> int:
    """K, the networks whose rows a denoiser's batch goes through (a
    :class:`~hdm.hilbert.networks.NetworkEnsemble` backbone; a guided denoiser: that of the
    one it wraps); 1 for any other."""
    while not isinstance(denoiser, nn.Module) and hasattr(denoiser, "denoiser"):
        denoiser = denoiser.denoiser
    return int(getattr(getattr(denoiser, "backbone", None), "n_networks", 1))


PARAMETERISATIONS = ("v", "eps")


class PreconditionedDenoiser(nn.Module):
    """D(x, t) from a backbone F(x, c_noise, grid) (see module docstring); a backbone with
    static channels gets them from ``statics`` (:class:`hdm.hilbert.statics.StaticInputs`),
    on whatever grid it is called. A backbone conditioned on the small-scale level
    (``regime``, :mod:`hdm.hilbert.regime`) gets the normalised level z: per sample in
    training (``condition``), else the one bound by :meth:`at_level` (default 0, the
    training fields' mean level)."""

    def __init__(
        self,
        backbone: nn.Module,
        process: ForwardProcess,
        parameterisation: str = "v",
        statics: StaticInputs | None = None,
        regime: SmallScaleLevel | None = None,
    ):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(
                f"unknown parameterisation {parameterisation!r}; known: {PARAMETERISATIONS}"
            )
        self.backbone = backbone
        self.process = process
        self.parameterisation = parameterisation
        self.statics = statics
        if (regime is None) != (getattr(backbone, "condition_inputs", 0) == 0):
            raise ValueError(
                "a backbone with condition inputs needs the small-scale level's record "
                "(regime), and only such a backbone takes one"
            )
        self.regime = regime
        self.level = 0.0

    def at_level(self, level: float) -> PreconditionedDenoiser:
        """This denoiser (the same network, not a copy of it) with the normalised
        small-scale level z = ``level`` bound for sampling."""
        if self.regime is None:
            raise ValueError("this model is not conditioned on a small-scale level")
        if not np.isfinite(level):
            raise ValueError(f"the small-scale level must be finite, got {level}")
        bound = copy.copy(self)
        bound.level = float(level)
        return bound

    def chunk_size(self, x: torch.Tensor, grid: Grid, budget: int | None = None) -> int:
        """Fields per chunk in which the backbone splits a batch for a budget in bytes
        (default: its own; the whole batch when the backbone does not split batches; see
        ``TimeConditionedFNO.chunk_size``)."""
        size = getattr(self.backbone, "chunk_size", None)
        return x.shape[0] if size is None else size(x, grid, budget)

    def c_noise(self, t: torch.Tensor) -> torch.Tensor:
        return 0.25 * torch.log(self.process.schedule.varsigma(t))

    def network_output(
        self, x: torch.Tensor, t: torch.Tensor, grid: Grid, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """F(x, c_noise(t)): the raw backbone output (``condition``: z per sample, (B, 1),
        for a model conditioned on the small-scale level; default the bound level)."""
        tau = self.c_noise(t).to(x.dtype)
        statics = (
            None if self.statics is None else self.statics(grid, dtype=x.dtype, device=x.device)
        )
        if self.regime is None:
            if condition is not None:
                raise ValueError("this model is not conditioned on a small-scale level")
            f = (
                self.backbone(x, tau, grid)
                if statics is None
                else self.backbone(x, tau, grid, statics)
            )
        else:
            if condition is None:
                condition = torch.full((x.shape[0], 1), self.level, dtype=x.dtype, device=x.device)
            f = self.backbone(x, tau, grid, statics, condition)
        return self._within_range(f, x, t, grid)

    def _within_range(self, f: torch.Tensor, x: torch.Tensor, t: torch.Tensor, grid: Grid):
        """F with its part outside Q's range set to the exact one (Π: the projection of
        :meth:`~hdm.hilbert.covariance.CovarianceOperator.project_field`; the identity for
        a Q of full rank). ξ ∈ range(Q), so (I − Π) x_t = α (I − Π) x0 is known: the
        target of "eps" there is 0, that of "v" (σ/α)(I − Π) x_t, and D's part outside the
        range is (I − Π) x_t / α. Without it the network must learn the identity on every
        field Q never perturbs, and what it misses stays in every sample (the
        shallow-water prior put 3·10³ m² of height at ℓ ≥ 11 against 0.2 in the data)."""
        covariance = self.process.covariance
        if not covariance.restricts_range:
            return f
        inside = covariance.project_field(f, grid)
        if self.parameterisation == "eps":
            return inside
        alpha = expand_to(self.process.schedule.alpha(t), x)
        sigma = expand_to(self.process.schedule.sigma(t), x)
        return inside + (sigma / alpha) * (x - covariance.project_field(x, grid))

    def training_target(self, x0: torch.Tensor, xi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What F is regressed on for x_t = α x0 + σ ξ."""
        if self.parameterisation == "eps":
            return xi
        alpha = expand_to(self.process.schedule.alpha(t), x0)
        sigma = expand_to(self.process.schedule.sigma(t), x0)
        return sigma * x0 - alpha * xi

    def forward(self, x: torch.Tensor, t: torch.Tensor, grid: Grid) -> torch.Tensor:
        alpha = expand_to(self.process.schedule.alpha(t), x)
        sigma = expand_to(self.process.schedule.sigma(t), x)
        f = self.network_output(x, t, grid)
        if self.parameterisation == "eps":
            return (x - sigma * f) / alpha
        return alpha * x + sigma * f


class GaussianDenoiser:
    """The exact denoiser for X_0 ~ N(m, C) under Q-noise, on one fixed grid, one channel.

    ``mean``: shape grid.shape (or a scalar); ``cov``: dense C, (grid.size, grid.size).
    Precomputation O(n³) (one generalised eigendecomposition), each call O(batch·n²).
    """

    def __init__(
        self,
        process: ForwardProcess,
        grid: Grid,
        cov: np.ndarray,
        mean: np.ndarray | float = 0.0,
        jitter: float = 1e-9,
    ):
        self.process = process
        self.grid = grid
        n = grid.size
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (n, n):
            raise ValueError(f"covariance must have shape ({n}, {n}) for {grid.describe()}")
        q = process.covariance.dense(grid)
        q = q + jitter * np.trace(q) / n * np.eye(n)
        mu, v = scipy.linalg.eigh(cov, q)
        self.mean = torch.as_tensor(np.broadcast_to(mean, grid.shape).reshape(n).copy())
        self._mu = torch.as_tensor(np.clip(mu, 0.0, None))
        self._cv = torch.as_tensor(cov @ v)  # C V, (n, n)
        self._vt = torch.as_tensor(v.T.copy())  # Vᵀ, (n, n)
        self.cov = torch.as_tensor(cov)
        self._devices: dict = {}
        self.device = torch.device("cpu")  # where samplers draw for it (see ``to``)

    def to(self, device: torch.device | str) -> GaussianDenoiser:
        """Sample on ``device`` (like ``nn.Module.to``: in place, returns self)."""
        self.device = torch.device(device)
        return self

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(mean, μ, Vᵀ, C V) on ``device`` (copied once per device)."""
        if device not in self._devices:
            self._devices[device] = tuple(
                a.to(device) for a in (self.mean, self._mu, self._vt, self._cv)
            )
        return self._devices[device]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, grid: Grid) -> torch.Tensor:
        if grid != self.grid:
            raise ValueError(
                f"GaussianDenoiser was built for {self.grid.describe()}, got {grid.describe()}"
            )
        if x.shape[1] != 1:
            raise ValueError(f"GaussianDenoiser takes one channel, got {x.shape[1]}")
        b = x.shape[0]
        mean, mu, vt, cv = self._on(x.device)
        flat = x.reshape(b, -1).to(torch.float64)
        alpha = self.process.schedule.alpha(t.to(x.device)).reshape(b, 1).to(torch.float64)
        sigma = self.process.schedule.sigma(t.to(x.device)).reshape(b, 1).to(torch.float64)
        r = flat - alpha * mean
        coeff = (r @ vt.T) / (alpha**2 * mu + sigma**2)
        out = mean + alpha * (coeff @ cv.T)
        return out.reshape(x.shape).to(x.dtype)
