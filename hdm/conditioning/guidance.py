"""Guidance: zero-shot posterior sampling by wrapping a denoiser (SCIENCE.md §4).

With X_t = α X_0 + σ ξ, ξ ~ N(0, Q), the denoiser is Tweedie's mean
D(x_t) = E[X_0 | x_t] = (x_t + σ² Q∇log p_t(x_t))/α (gradients with respect to grid
values, Q the covariance matrix on grid values, see :mod:`hdm.hilbert.covariance`). The
posterior score adds ∇log p(y | x_t), so the *guided denoiser*

    D̃(x_t) = D(x_t) + (σ²/α) Q ∇_{x_t} log p(y | x_t)

keeps the denoiser's call signature ``(x, t, grid) -> x0`` and works with every sampler
of :mod:`hdm.hilbert.sampling`. The guidance is Q-preconditioned: a point observation
gives a gradient that is a spike on the neighbouring grid points, and Q turns it into a
kernel-shaped update that does not depend on the grid. With J = ∂D/∂x_t and the residual
r = y − A D(x_t), the likelihood approximations are:

- :class:`DPS` (Chung et al. 2023): p(y | x_t) ≈ N(y; A D, Σ_y), so
  D̃ = D + ζ (σ²/α) Q Jᵀ Aᵀ Σ_y⁻¹ r, one vector–Jacobian product per evaluation;
  ``normalise=True`` (the default) divides the step by ‖Σ_y^{-1/2} r‖ (Chung's
  ζ/‖y − A D‖ rule).
- :class:`CovarianceAware` (SDA, Rozet & Louppe 2023; the heuristic of Chakraborty et al.
  2025): p(y | x_t) ≈ N(y; A D, Σ_y + γ (σ/α)² A Q Aᵀ); the (n_obs × n_obs) matrix is
  factorised directly (A Q Aᵀ is computed once per grid with n_obs applications of Q).
- :class:`MomentMatching` (MMPS, Rozet et al. 2024): Tweedie's covariance
  Cov[X_0 | x_t] = (σ²/α) J Q, p(y | x_t) ≈ N(y; A D, Σ_y + A Cov Aᵀ). The system
  (Σ_y + A Cov Aᵀ) v = r is solved by conjugate gradients (preconditioned with the
  heuristic's matrix, its scale fitted per step), each product A J Q Aᵀ u taken as
  A Q Jᵀ Aᵀ u (J Q is symmetric for the exact denoiser), i.e. one vector–Jacobian
  product through the network; then D̃ = D + (σ²/α) Q Jᵀ Aᵀ v = D + Cov Aᵀ v. For a
  Gaussian prior and linear A, D̃ is exactly E[X_0 | x_t, y], so the guided sampler
  reproduces the closed-form posterior (checked against :class:`GaussianDenoiser`).
- :class:`Replacement` (the naive baseline, after Kerrigan et al.'s inpainting):
  D̃ = D + Q Aᵀ (A Q Aᵀ + Σ_y)⁻¹ r, the Q-metric projection of the denoised estimate
  onto the observations (at grid-node observations with small noise: overwrite the
  observed values, blend the neighbours with the kernel of Q). It ignores the
  uncertainty of D and needs no Jacobian.

Observations y have shape (n_obs,) (the same for the whole batch) or (B, n_obs) (one row
per batch element, e.g. members × times); NaN entries are missing observations: they get
zero weight (their rows of the linear systems are decoupled), which lets a batch mix
times with different stations reporting.

Diagnostics are reported by ``callback`` (k-diffusion's convention): a guidance made with
``callback=f`` calls ``f(info)`` after each guided chunk of fields, with ``info`` a dict
holding ``guidance`` (the name), ``t`` (B,) and what the method measured: MMPS gives
``kappa`` (B,), the preconditioner's scale over the heuristic's (σ/α)²,
``cg_iterations``, the conjugate-gradient iterations of the chunk, and ``shrink`` (B,),
the factor (1 unless the update overshot the observations, see :func:`_no_overshoot`)
the update was scaled by.
"""

from __future__ import annotations

import difflib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hdm.conditioning.observations import ObservationError, ObservationOperator
from hdm.hilbert.denoisers import Denoiser
from hdm.hilbert.grids import Grid
from hdm.hilbert.process import expand_to

__all__ = [
    "DPS",
    "GUIDANCE",
    "CovarianceAware",
    "Guidance",
    "MomentMatching",
    "Replacement",
    "check_guidance_options",
    "guidance_options",
    "make_guidance",
]

#: the signature of a guidance callback: called with a dict of diagnostics
GuidanceCallback = Callable[[dict[str, Any]], None]


def _prepare_y(y, batch: int, n_obs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n_obs) float64 values with NaN → 0 and the mask of present observations."""
    y = torch.as_tensor(y, dtype=torch.float64)
    if y.ndim == 1:
        y = y.expand(batch, -1)
    if y.shape != (batch, n_obs):
        raise ObservationError(
            f"observations of shape {tuple(y.shape)} for a batch of {batch} and {n_obs} "
            "observations per field; give (n_obs,) or (batch, n_obs)"
        )
    mask = torch.isfinite(y)
    return torch.where(mask, y, torch.zeros_like(y)), mask.to(torch.float64)


class Guidance(ABC):
    """A denoiser conditioned on observations ``y`` of ``operator`` (see module doc)."""

    name: str = "guidance"
    #: on the CPU, the largest hidden activation (fields × width × extended points ×
    #: element size) of one guided chunk; its autograd graph holds a few dozen tensors of
    #: that size. 0: the whole batch at once. See __call__.
    cpu_graph_chunk_bytes: int = 64 * 2**20

    def __init__(
        self,
        denoiser: Denoiser,
        operator: ObservationOperator,
        y,
        callback: GuidanceCallback | None = None,
    ) -> None:
        self.denoiser = denoiser
        self.callback = callback
        self.process = denoiser.process
        self.operator = operator
        self.y = torch.as_tensor(y, dtype=torch.float64)
        if self.y.shape[-1] != operator.n_obs():
            raise ObservationError(
                f"{operator.n_obs()} observations expected by {operator.name}, "
                f"got values of shape {tuple(self.y.shape)}"
            )
        if torch.isinf(self.y).any():
            raise ObservationError("observation values must be finite or NaN (missing)")
        self.noise_var = torch.as_tensor(operator.noise_std() ** 2, dtype=torch.float64)

    def _coefficients(self, t: torch.Tensor):
        schedule = self.process.schedule
        alpha = schedule.alpha(t).to(torch.float64)
        sigma = schedule.sigma(t).to(torch.float64)
        return alpha, sigma

    def _denoise_with_graph(self, x: torch.Tensor, t: torch.Tensor, grid: Grid):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            d = self.denoiser(x, t, grid)
        return x, d

    def _vjp(self, x, d, v_obs: torch.Tensor, grid: Grid, retain: bool) -> torch.Tensor:
        """Jᵀ Aᵀ v for v (B, n_obs), as a float64 field (B, C, *grid.shape)."""
        back = self.operator.adjoint(v_obs, grid, channels=x.shape[1])
        # Aᵀv enters Q Jᵀ: with a band-limited Q only its part in Q's range may pass
        # through the network's Jacobian (the identity for a Q of full rank)
        back = self.process.covariance.project_covector(back, grid).to(d.dtype)
        (g,) = torch.autograd.grad(d, x, grad_outputs=back, retain_graph=retain)
        return g.to(torch.float64)

    def _q(self, field: torch.Tensor, grid: Grid) -> torch.Tensor:
        return self.process.covariance.apply(field, grid)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, grid: Grid) -> torch.Tensor:
        """D̃(x, t), in chunks of fields whose hidden activation in the network fits in
        ``cpu_graph_chunk_bytes`` (every row of the guidance is independent of the
        others). A guided call keeps the network's activations for its vector–Jacobian
        products, so one chunk's graph lives at a time: 16 members at 512 × 512 in one
        graph were killed for memory on 24 GB; one at a time peak at 14.6 GB. On the
        33 × 49 UK grid the 16 members stay one chunk (split in two they took 10 % longer)."""
        if self.noise_var.device != x.device:  # the solves run where the fields are
            self.noise_var = self.noise_var.to(x.device)
        y, mask = _prepare_y(self.y.to(x.device), x.shape[0], self.operator.n_obs())
        chunk_size = getattr(self.denoiser, "chunk_size", None)
        size = x.shape[0] if chunk_size is None else chunk_size(x, grid, self.cpu_graph_chunk_bytes)
        t = t.to(x.device)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        parts = zip(x.split(size), t.split(size), y.split(size), mask.split(size))
        out = [self.guide(xc, tc, grid, yc, mc) for xc, tc, yc, mc in parts]
        return out[0] if len(out) == 1 else torch.cat(out)

    def _report(self, t: torch.Tensor, **info) -> None:
        """Hand a chunk's diagnostics to the callback (see the module doc)."""
        if self.callback is not None:
            self.callback({"guidance": self.name, "t": t.detach(), **info})

    @abstractmethod
    def guide(self, x, t, grid, y, mask) -> torch.Tensor:
        """D̃(x, t) given observation values y (B, n_obs) and their mask."""


class DPS(Guidance):
    """Diffusion posterior sampling with step scale ζ (``scale``).

    The defaults (ζ = 3 with the normalised step) are the setting the closed-form GRF
    check chose among plain and normalised steps (``benchmarks/downscale.py``,
    ``choose_dps_options``) and the one its table covers. The plain step (``normalise=
    False``) has a gain of order ‖A C Aᵀ‖/σ_y² at high noise levels and diverges with the
    small default noise of coarse cells (2 % of the training std)."""

    name = "dps"

    def __init__(
        self, denoiser, operator, y, scale: float = 3.0, normalise: bool = True, callback=None
    ):
        super().__init__(denoiser, operator, y, callback)
        if not scale > 0:
            raise ValueError(f"DPS scale must be positive, got {scale}")
        self.scale, self.normalise = float(scale), bool(normalise)

    def guide(self, x, t, grid, y, mask):
        x, d = self._denoise_with_graph(x, t, grid)
        alpha, sigma = self._coefficients(t)
        r = mask * (y - self.operator.apply(d.detach().to(torch.float64), grid))
        v = r / self.noise_var
        if self.normalise:
            v = v / torch.sqrt((r**2 / self.noise_var).sum(1, keepdim=True)).clamp_min(1e-12)
        g = self._vjp(x, d, v, grid, retain=False)
        step = self.scale * expand_to(sigma**2 / alpha, g) * self._q(g, grid)
        return (d.detach().to(torch.float64) + step).to(x.dtype)


def _masked_cholesky(matrix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of M S M + (I − M) per batch row; S (B, n, n) SPD, M = diag(mask):
    missing observations are decoupled (their rows and columns become the identity)."""
    pair = mask[:, :, None] * mask[:, None, :]
    return torch.linalg.cholesky(matrix * pair + torch.diag_embed(1.0 - mask))


def _solve_masked(matrix: torch.Tensor, r: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Solve (M S M + (I − M)) v = M r per batch row."""
    return torch.cholesky_solve((mask * r)[..., None], _masked_cholesky(matrix, mask))[..., 0]


class _DenseObservationCovariance:
    """A Q Aᵀ (n_obs × n_obs), computed once per grid (and device) with n_obs
    applications of Q."""

    def __init__(self) -> None:
        self._cache: dict = {}

    def __call__(
        self, guidance: Guidance, grid: Grid, channels: int, device: torch.device
    ) -> torch.Tensor:
        key = (grid, channels, device)
        if key not in self._cache:
            op = guidance.operator
            eye = torch.eye(op.n_obs(), dtype=torch.float64, device=device)
            cols = []
            for chunk in torch.split(eye, 256):
                back = op.adjoint(chunk, grid, channels)
                cols.append(op.apply(guidance._q(back, grid), grid))
            aqa = torch.cat(cols)
            self._cache[key] = 0.5 * (aqa + aqa.T)
        return self._cache[key]


class CovarianceAware(Guidance):
    """The SDA heuristic: Σ_y + γ (σ/α)² A Q Aᵀ as the likelihood covariance."""

    name = "sda"

    def __init__(
        self, denoiser, operator, y, gamma: float = 1.0, scale: float = 1.0, callback=None
    ):
        super().__init__(denoiser, operator, y, callback)
        if not gamma >= 0 or not scale > 0:
            raise ValueError(f"need gamma >= 0 and scale > 0, got {gamma}, {scale}")
        self.gamma, self.scale = float(gamma), float(scale)
        self._aqa = _DenseObservationCovariance()

    def guide(self, x, t, grid, y, mask):
        x, d = self._denoise_with_graph(x, t, grid)
        alpha, sigma = self._coefficients(t)
        aqa = self._aqa(self, grid, x.shape[1], x.device)
        r = y - self.operator.apply(d.detach().to(torch.float64), grid)
        ratio2 = (sigma / alpha) ** 2
        s = torch.diag(self.noise_var)[None] + self.gamma * ratio2[:, None, None] * aqa[None]
        v = _solve_masked(s, r, mask)
        g = self._vjp(x, d, v, grid, retain=False)
        step = self.scale * expand_to(sigma**2 / alpha, g) * self._q(g, grid)
        return (d.detach().to(torch.float64) + step).to(x.dtype)


class MomentMatching(Guidance):
    """MMPS: Tweedie covariance through vector–Jacobian products and conjugate gradients.

    The CG is preconditioned with P = Σ_y + κ A Q Aᵀ, κ = rᵀ A Cov Aᵀ r / rᵀ A Q Aᵀ r
    (a Rayleigh quotient from the first product): the covariance-aware heuristic with
    its scale fitted on the fly. It is exact when Cov ∝ Q on the observed subspace
    (low noise levels), so a few iterations reach the MMPS solution where plain CG
    needs about as many as there are observations.

    ``cg_steps`` (default 0: the preconditioned solve alone) adds CG iterations. With an
    exact denoiser they converge to the MMPS solution (20 reach it on the GRF test).
    With a trained network the Jacobian is neither exactly symmetric nor positive
    definite, so a row stops where the covariance term has no positive curvature along
    the search direction (pᵀAp ≤ pᵀΣ_y p). With that guard 5 iterations are stable on
    trained networks (GRF 64²: std ratio 1.36 against 1.47 with none; 1.15 with an SE
    Q and 32 modes, BENCHMARKS.md); stopping only at pᵀAp ≤ 0 diverged there. On the UK
    t2m prior's training day 5 iterations cost 2.5× the time for slightly worse scores
    (RMSE 0.230 vs 0.224 K, spread–skill 1.41 vs 1.20), and on the validation split
    for clearly worse ones (RMSE 0.312 vs 0.273 K, CRPS 0.155 vs 0.136;
    ``python -m benchmarks uk_cg_steps``), hence the default.

    ``overshoot_tolerance`` τ (default 1): an update that leaves the estimate more than τ
    times farther from the observations than no update is scaled back
    (:func:`_no_overshoot`; the factor is reported as ``shrink``).
    """

    name = "mmps"

    def __init__(
        self,
        denoiser,
        operator,
        y,
        cg_steps: int = 0,
        cg_tol: float = 1e-4,
        overshoot_tolerance: float = 1.0,
        callback=None,
    ):
        super().__init__(denoiser, operator, y, callback)
        if cg_steps < 0:
            raise ValueError(f"cg_steps must be non-negative, got {cg_steps}")
        if not overshoot_tolerance >= 1.0:
            raise ValueError(f"overshoot_tolerance must be at least 1, got {overshoot_tolerance}")
        self.cg_steps, self.cg_tol = int(cg_steps), float(cg_tol)
        self.overshoot_tolerance = float(overshoot_tolerance)
        self._aqa = _DenseObservationCovariance()

    def guide(self, x, t, grid, y, mask):
        x, d = self._denoise_with_graph(x, t, grid)
        alpha, sigma = self._coefficients(t)
        c = expand_to(sigma**2 / alpha, x).to(torch.float64)
        r = mask * (y - self.operator.apply(d.detach().to(torch.float64), grid))
        aqa = self._aqa(self, grid, x.shape[1], x.device)

        def cov_field(v):  # Cov[X0|x_t] Aᵀ v = (σ²/α) Q Jᵀ Aᵀ v
            return c * self._q(self._vjp(x, d, v, grid, retain=True), grid)

        def matvec(u):  # (M (Σ_y + A Cov Aᵀ) M + (I − M)) u
            mu = mask * u
            return (
                self.noise_var * mu
                + mask * self.operator.apply(cov_field(mu), grid)
                + (1.0 - mask) * u
            )

        # Preconditioner scale from the Rayleigh quotient of A Cov Aᵀ at r; where it is
        # not positive (a learned Jacobian need not be positive definite) the heuristic's
        # (σ/α)² is used.
        a_r = matvec(r) - self.noise_var * r
        q_r = torch.einsum("bi,ij,bj->b", r, aqa, r)
        kappa = (r * a_r).sum(1) / q_r.clamp_min(1e-300)
        fallback = ((sigma / alpha) ** 2).expand_as(kappa)
        kappa = torch.where(torch.isfinite(kappa) & (kappa > 0) & (q_r > 0), kappa, fallback)
        ratio = (kappa / fallback).detach()
        precond = torch.diag(self.noise_var)[None] + kappa[:, None, None] * aqa[None]
        chol = _masked_cholesky(precond, mask)

        def solve_p(u):
            return torch.cholesky_solve(u[..., None], chol)[..., 0]

        # Preconditioned conjugate gradients, batched over rows, from v₀ = P⁻¹ r. A row
        # stops where its residual is small or where the covariance term has no positive
        # curvature along p (the learned Tweedie covariance is only approximately positive
        # definite; with pᵀ A Cov Aᵀ p ≈ 0 the step rz / pᵀAp would be about rz / pᵀΣ_y p).
        v = solve_p(r)
        iterations = 0
        if self.cg_steps > 0:
            res = r - matvec(v)
            z = solve_p(res)
            p = z.clone()
            rz = (res * z).sum(1)
            r_norm = torch.sqrt((r * r).sum(1)).clamp_min(1e-30)
            active = torch.ones_like(rz, dtype=torch.bool)
            for _ in range(self.cg_steps):
                active &= torch.sqrt((res * res).sum(1)) > self.cg_tol * r_norm
                if not bool(active.any()):
                    break
                ap = matvec(p)
                curvature = (p * ap).sum(1)
                # pᵀ(M Σ_y M + I − M)p: what the curvature is without the covariance term,
                # whose own curvature pᵀ A Cov Aᵀ p must be positive (Cov is PSD)
                floor = (p * p * (mask * self.noise_var + (1.0 - mask))).sum(1)
                active &= torch.isfinite(curvature) & (curvature > floor)
                if not bool(active.any()):
                    break
                step = torch.where(active, rz / curvature.clamp_min(1e-300), 0.0)
                v = v + step[:, None] * p
                res = res - step[:, None] * ap
                z = solve_p(res)
                rz_new = (res * z).sum(1)
                p = z + torch.where(active, rz_new / rz.clamp_min(1e-300), 0.0)[:, None] * p
                rz = rz_new
                iterations += 1
        update = c * self._q(self._vjp(x, d, mask * v, grid, retain=False), grid)
        a_update = mask * self.operator.apply(update, grid)
        shrink = _no_overshoot(r, a_update, self.noise_var, mask, self.overshoot_tolerance)
        self._report(t, kappa=ratio, cg_iterations=iterations, shrink=shrink)
        update = expand_to(shrink, update) * update
        return (d.detach().to(torch.float64) + update).to(x.dtype)


def _no_overshoot(
    r: torch.Tensor,
    a_update: torch.Tensor,
    noise_var: torch.Tensor,
    mask: torch.Tensor,
    tolerance: float = 1.0,
) -> torch.Tensor:
    """The factor s ∈ [0, 1] per row that keeps a guided update from overshooting.

    The exact MMPS update u = Cov Aᵀ (Σ_y + A Cov Aᵀ)⁻¹ r moves the observed values by
    A u = K r, K = A Cov Aᵀ (Σ_y + A Cov Aᵀ)⁻¹, and I − K = Σ_y (Σ_y + A Cov Aᵀ)⁻¹ is,
    in the Σ_y⁻¹ metric, symmetric with eigenvalues in (0, 1]: the guided estimate is
    never farther from the observations than the unguided one,
    ‖r − A u‖_{Σ_y⁻¹} ≤ ‖r‖_{Σ_y⁻¹}. A learned Jacobian can break that: on the UK prior a
    member whose Rayleigh quotient along r fell to 1e-5 of the others' got
    v ≈ Σ_y⁻¹ r, an update of 4e3 (normalised units) at ς = 7.2, and ended 28 K from the
    ensemble mean (BENCHMARKS.md, uk-evaluation-heun-week). Where a row breaks it, its
    update is scaled by the least-squares factor s* = ⟨r, A u⟩ / ‖A u‖² (Σ_y⁻¹ inner
    product, clipped to [0, 1]), which gives ‖r − s* A u‖² = ‖r‖² − ⟨r, A u⟩²/‖A u‖²
    ≤ ‖r‖²; rows that keep it get s = 1, so the exact denoiser is never changed.

    ``tolerance`` τ ≥ 1 (MMPS's ``overshoot_tolerance``) shrinks only the rows with
    ‖r − A u‖ > τ ‖r‖: the property above is the exact update's, and a learned Jacobian's
    update may overshoot moderately at high noise and be pulled back by the later steps.
    On 6 validation states of the shallow-water prior no row of the default sampler
    exceeded τ = 10 (the members and scores equal those with no guard, h RMSE 8.43 m
    against 8.74 with τ = 1), while the UK member that ran away had an update of 4e3.
    On the UK validation split τ = 10 gives back the guard's 1–2 % of RMSE and also its
    excess high-wavenumber power (1.45 against 1.35 at ×4, BENCHMARKS.md
    uk-validation-overshoot), so τ = 1 stays the default.

    Args:
        r: (B, n_obs) residuals y − A D, zero where missing; a_update: (B, n_obs) A u,
        zero where missing; noise_var: (n_obs,) Σ_y's diagonal; mask: (B, n_obs);
        tolerance: τ.

    Returns:
        (B,) float64 factors.
    """
    w = mask / noise_var
    before = (w * r * r).sum(1)
    after = (w * (r - a_update) ** 2).sum(1)
    best = (w * r * a_update).sum(1) / (w * a_update * a_update).sum(1).clamp_min(1e-300)
    overshoots = after > before * (tolerance**2 * (1 + 1e-9))
    return torch.where(overshoots, best.clamp(0.0, 1.0), torch.ones_like(best))


class Replacement(Guidance):
    """Q-metric projection of D onto the observations (the naive baseline)."""

    name = "replacement"

    def __init__(self, denoiser, operator, y, callback=None):
        super().__init__(denoiser, operator, y, callback)
        self._aqa = _DenseObservationCovariance()

    def guide(self, x, t, grid, y, mask):
        with torch.no_grad():
            d = self.denoiser(x, t, grid).to(torch.float64)
        aqa = self._aqa(self, grid, x.shape[1], x.device)
        r = y - self.operator.apply(d, grid)
        s = (aqa + torch.diag(self.noise_var))[None].expand(x.shape[0], -1, -1)
        v = _solve_masked(s, r, mask)
        update = self._q(self.operator.adjoint(v, grid, x.shape[1]), grid)
        return (d + update).to(x.dtype)


GUIDANCE: dict[str, type[Guidance]] = {
    "dps": DPS,
    "sda": CovarianceAware,
    "mmps": MomentMatching,
    "replacement": Replacement,
}

GUIDANCE_DESCRIPTIONS = {
    "dps": "DPS: N(y; A D, Σ_y), step scale ζ",
    "sda": "covariance-aware heuristic: Σ_y + γ (σ/α)² A Q Aᵀ",
    "mmps": "moment matching: Tweedie covariance, conjugate gradients",
    "replacement": "Q-projection of D onto the observations (naive baseline)",
}


def _guidance_class(name: str) -> type[Guidance]:
    if name not in GUIDANCE:
        close = difflib.get_close_matches(str(name), GUIDANCE, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        known = ", ".join(f"{k} ({v})" for k, v in GUIDANCE_DESCRIPTIONS.items())
        raise ValueError(f"unknown guidance {name!r}{hint} Known: {known}")
    return GUIDANCE[name]


def guidance_options(name: str) -> dict[str, Any]:
    """The options guidance ``name`` takes (its keyword arguments) with their defaults."""
    params = list(inspect.signature(_guidance_class(name).__init__).parameters.values())
    return {p.name: p.default for p in params[4:] if p.name != "callback"}


def check_guidance_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against what guidance ``name`` takes, each value converted to
    the type of its default (so ``"5"`` from a command line becomes 5).

    Raises:
        ValueError: an option the guidance does not take (naming the closest and every
            option it takes) or a value of the wrong type.
    """
    known = guidance_options(name)
    checked = {}
    for key, value in dict(options or {}).items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = ", ".join(f"{k} (default {v!r})" for k, v in known.items()) or "none"
            raise ValueError(
                f"guidance {name!r} takes no option {key!r}{hint}; its options: {takes}"
            )
        kind = type(known[key])
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            if kind is int and (isinstance(value, bool) or float(value) != int(float(value))):
                raise TypeError
            checked[key] = kind(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"guidance option {key!r} of {name!r} must be a {kind.__name__}, got {value!r}"
            ) from None
    return checked


def make_guidance(
    name: str,
    denoiser: Denoiser,
    operator: ObservationOperator,
    y,
    *,
    callback: GuidanceCallback | None = None,
    **options,
) -> Guidance:
    """A guided denoiser by name ("dps", "sda", "mmps", "replacement") with its
    ``options`` (see :func:`guidance_options`) and an optional diagnostics ``callback``."""
    cls = _guidance_class(name)
    return cls(denoiser, operator, y, **check_guidance_options(name, options), callback=callback)


def gaussian_posterior(
    prior_cov: np.ndarray, prior_mean: np.ndarray, a: np.ndarray, y: np.ndarray, noise_var
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form posterior of X ~ N(m, C) given y = A X + η, η ~ N(0, diag(noise_var)):
    mean m + C Aᵀ S⁻¹ (y − A m), covariance C − C Aᵀ S⁻¹ A C, S = A C Aᵀ + Σ_y."""
    s = a @ prior_cov @ a.T + np.diag(np.broadcast_to(noise_var, (a.shape[0],)))
    k = np.linalg.solve(s, a @ prior_cov).T
    mean = prior_mean + k @ (y - a @ prior_mean)
    cov = prior_cov - k @ a @ prior_cov
    return mean, 0.5 * (cov + cov.T)
