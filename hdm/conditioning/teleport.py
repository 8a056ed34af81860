"""Guided teleportation: the exact Gaussian posterior given linear observations, at t*.

Under the Gaussian of the training data (:mod:`hdm.hilbert.gaussian`), X_0 = m + B z with
z ~ N(0, I_r), and observations y = A X_0 + η, η ~ N(0, R), R = diag(noise_std²), are
linear in z: y − A m = G z + η with G = A B (n_obs × r). The posterior of z is Gaussian
with precision and mean

    P = I_r + Gᵀ R⁻¹ G,        μ_z = P⁻¹ Gᵀ R⁻¹ (y − A m),

(the kriging answer in the PCA basis: its mean m + B μ_z equals m + C Aᵀ(A C Aᵀ + R)⁻¹
(y − A m) for C = B Bᵀ, its covariance B P⁻¹ Bᵀ equals C − C Aᵀ(A C Aᵀ + R)⁻¹ A C; a test
checks both against :func:`hdm.conditioning.guidance.gaussian_posterior`). With P = L Lᵀ,
z = μ_z + L⁻ᵀ ε has covariance P⁻¹. Pushed to t* through the forward process, X_{t*} =
α (m + B z) + σ ξ is the exact marginal at t* of the diffusion posterior of that Gaussian:
the guided sampler starts there (:class:`hdm.hilbert.gaussian.GaussianStart`). The cost
is r applications of A (once per operator) and an r × r Cholesky per time.

Missing observations (NaN in y) are left out of G and y.
"""

from __future__ import annotations

import torch

from hdm.conditioning.observations import ObservationOperator
from hdm.hilbert.gaussian import CoefficientLaw, GaussianStart, GaussianStatistics
from hdm.hilbert.process import ForwardProcess

__all__ = ["guided_start", "observed_basis", "posterior_law"]


def observed_basis(
    stats: GaussianStatistics, operator: ObservationOperator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, A m): the basis and the mean seen through ``operator``, (n_obs, r) and (n_obs,)
    float64, on the statistics' grid."""
    g = operator.apply(stats.basis.to(torch.float64), stats.grid).T
    am = operator.apply(stats.mean[None].to(torch.float64), stats.grid)[0]
    return g.to(torch.float64), am.to(torch.float64)


def posterior_law(
    stats: GaussianStatistics,
    operator: ObservationOperator,
    y,
    observed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> CoefficientLaw:
    """The posterior of the coefficients z given y (n_obs,), NaN = missing (module doc).

    ``observed``: :func:`observed_basis` of the same operator, to reuse across times."""
    g, am = observed if observed is not None else observed_basis(stats, operator)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if y.shape[0] != g.shape[0]:
        raise ValueError(f"{g.shape[0]} observations expected by {operator.name}, got {y.shape[0]}")
    present = torch.isfinite(y)
    noise_var = torch.as_tensor(operator.noise_std(), dtype=torch.float64) ** 2
    g, resid, w = g[present], (y - am)[present], 1.0 / noise_var[present]
    precision = torch.eye(stats.rank, dtype=torch.float64) + g.T @ (w[:, None] * g)
    chol = torch.linalg.cholesky(precision)
    rhs = (g.T @ (w * resid))[:, None]
    mean = torch.cholesky_solve(rhs, chol)[:, 0]
    # z = μ + L⁻ᵀ ε: the factor is L⁻ᵀ (covariance L⁻ᵀ L⁻¹ = P⁻¹)
    eye = torch.eye(stats.rank, dtype=torch.float64)
    factor = torch.linalg.solve_triangular(chol.T, eye, upper=True)
    return CoefficientLaw(mean=mean, factor=factor)


def guided_start(
    stats: GaussianStatistics,
    process: ForwardProcess,
    varsigma: float,
    operator: ObservationOperator,
    y,
    observed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> GaussianStart:
    """The start of a guided, teleported sampler: the Gaussian posterior given y pushed to
    ς* = ``varsigma`` (module doc)."""
    return GaussianStart(stats, process, varsigma, posterior_law(stats, operator, y, observed))
