"""The denoising score-matching loss in function space.

For x_0 from the data, t ~ U[t_min, t_max] and ξ ~ N(0, Q),

    L(θ) = E_{x_0, t, ξ} ‖F_θ(α_t x_0 + σ_t ξ, t) − F*(x_0, ξ, t)‖²_{L²(D)} / |D|,

with F* the target of the denoiser's parameterisation (ξ for "eps", HDM's loss;
σ_t x_0 − α_t ξ for "v", EDM's weighting). The L² norm is the quadrature sum
Σ_i w_i (·)_i² / Σ_i w_i, so the loss of one function does not depend on the grid it is
held on, and the loss is a mean over channels and samples.
"""

from __future__ import annotations

import torch

from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.grids import Grid


def weighted_mean_square(residual: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Σ_i w_i r_i² / Σ_i w_i averaged over batch and channels: a scalar."""
    w = grid.weights_tensor(dtype=residual.dtype, device=residual.device)
    w = w / w.sum()
    dims = tuple(range(-grid.ndim, 0))
    return (residual**2 * w).sum(dim=dims).mean()


def denoising_loss(
    denoiser: PreconditionedDenoiser,
    x0: torch.Tensor,
    grid: Grid,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One Monte-Carlo estimate of L(θ) on a batch x0 of shape (batch, C, *grid.shape).

    t and ξ are drawn from ``generator`` (ξ through Q), so a seeded generator makes the
    loss reproducible.
    """
    process = denoiser.process
    t = process.sample_times(x0.shape[0], generator)
    xi = process.noise(x0.shape[0], x0.shape[1], grid, generator, dtype=x0.dtype)
    return loss_given_noise(denoiser, x0, t, xi, grid)


def loss_given_noise(
    denoiser: PreconditionedDenoiser,
    x0: torch.Tensor,
    t: torch.Tensor,
    xi: torch.Tensor,
    grid: Grid,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """L for drawn times t (batch,) and noise ξ (batch, C, *grid.shape):
    ``mean_b Σ_i w_i (F_θ(α_t x0 + σ_t ξ, t) − F*(x0, ξ, t))_i² / Σ_i w_i``; ``condition``
    (batch, 1): the small-scale level z of each x0 for a model conditioned on it."""
    xt = denoiser.process.perturb(x0, t, xi)
    residual = denoiser.network_output(xt, t, grid, condition) - denoiser.training_target(x0, xi, t)
    return weighted_mean_square(residual, grid)
