"""Empirical model statistics (EMS) for the DPM-Solver-v3-style sampler ("v3").

DPM-Solver-v3 (Zheng, Lu, Bao & Zhu, NeurIPS 2023) writes the probability-flow ODE with
three coefficients per output element, fitted once per model on its training data, so
that the part its multistep update has to extrapolate is as close to constant as the
model allows. Here, with y = x/α and λ = −log ς (ς = σ/α), the PF-ODE is

    dy/dλ = D(y, λ) − y                                   (D: the denoiser)
          = −(1 − l_λ) y + f(y, λ),      f = D − l_λ y,

and, with S(λ) = ∫_{λ_s}^{λ} s and B(λ) = ∫_{λ_s}^{λ} e^{−S(r)} b_r dr from the step's
start λ_s, f = e^{S}(g + B): the update extrapolates g, not D. The coefficients minimise

    l_λ = argmin E‖∇_y f‖²_F       → l = E[diag ∇_y D]   (the linear part),
    (s_λ, b_λ) = argmin E‖f⁽¹⁾ − s f − b‖²  → s = Cov(f⁽¹⁾, f)/Var(f), b = E f⁽¹⁾ − s E f
    (s = 0 by default here: see 3. below),

with f⁽¹⁾ = df/dλ along the ODE, expectations over y ~ p_λ (training fields x_0 plus
ς ξ, ξ ~ N(0, Q): the PF-ODE has the forward marginals).

**The elements are cosine coefficients, not grid points.** The paper's elements are
pixels. A function-space denoiser's Jacobian is close to diagonal in frequency (for a
Gaussian field with stationary C and Q, ∇D = C(C + ς²Q)⁻¹ is diagonal in their common
Fourier basis, ≈ 1 on large scales and ≈ 0 on small ones at the same ς), where per grid
point its diagonal is one average over all scales. So every statistic is a field of
orthonormal DCT-II coefficients (per channel), and for a Gaussian model whose C and Q the
cosine basis diagonalises, f does not depend on y and g is constant: the solver is exact
up to its quadrature (``tests/test_solver_statistics.py``). The statistics belong to the
grid they were computed on (like the Gaussian statistics of teleportation).

Estimation (:func:`estimate_model_statistics`), at K levels uniform in λ:

1. l by Hutchinson's diagonal estimator in cosine space, diag Ĵ ≈ E[v̂ ⊙ Ĵ v̂] with
   Rademacher v̂, and Ĵ v̂ by a central difference of D (step 0.05 ς: float32 networks);
2. f⁽¹⁾ by a forward difference along the ODE (y + δ(D − y) at λ + δ, δ = 10⁻²), with
   l' from the l table, and b = E f⁽¹⁾.
3. s is left at 0 unless asked for (``fit_s``, clipped to |s| ≤ 1). Where l fits well, f
   hardly varies over the sample and what varies is l's own estimation error times y,
   so Cov(f⁽¹⁾, f)/Var(f) is the ratio of that error's λ-derivative to itself: noise.
   Measured on the cosine-diagonal Gaussian problem of the tests (4,000 draws, 48 modes,
   worst |variance ratio − 1| per mode; 0.068 is the sampling floor, reached with the
   exact statistics): 5 steps 0.392 with s fitted, 0.068 with s = 0; 10 steps 0.062 and
   0.067; DPM-Solver++(2M) 0.205 and 0.123; the statistics all zero (the plain
   exponential integrator) 0.546 and 0.309.

Cost: 4 denoiser calls per field and level (l: 2, f⁽¹⁾: 2), once per model (``hdm model-stats``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from tqdm.auto import tqdm

from hdm.hilbert.grids import Grid

__all__ = [
    "ModelStatistics",
    "SolverStatisticsError",
    "cosine_forward",
    "cosine_inverse",
    "estimate_model_statistics",
]

S_CLIP = 1.0  # largest |s| kept (module doc)


class SolverStatisticsError(ValueError):
    """Statistics that cannot be used as asked (named in the message)."""


@lru_cache(maxsize=32)
def _dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix (n, n), float64: M[k, j] = √(2/n) c_k cos(πk(2j+1)/2n).

    Kept here because torch has no DCT and scipy.fft.dctn works on NumPy arrays only: as
    a matrix the transform runs on the fields' device inside the sampler (the tests check
    it against scipy.fft.dctn(norm="ortho"))."""
    j = np.arange(n)
    m = np.sqrt(2.0 / n) * np.cos(np.pi * np.outer(j, 2 * j + 1) / (2 * n))
    m[0] /= np.sqrt(2.0)
    return torch.from_numpy(m)


def _transform(u: torch.Tensor, ndim: int, inverse: bool) -> torch.Tensor:
    out = u.to(torch.float64)
    for axis in range(ndim):
        dim = out.ndim - ndim + axis
        m = _dct_matrix(out.shape[dim]).to(out.device)
        # forward: û_k = Σ_j M[k, j] u_j; inverse: u_j = Σ_k M[k, j] û_k
        out = torch.movedim(torch.tensordot(out, m if inverse else m.T, dims=([dim], [0])), -1, dim)
    return out


def cosine_forward(u: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Orthonormal DCT-II coefficients of fields (..., *grid.shape), float64."""
    return _transform(u, grid.ndim, inverse=False)


def cosine_inverse(c: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Fields (..., *grid.shape) from their cosine coefficients, float64."""
    return _transform(c, grid.ndim, inverse=True)


@dataclass
class ModelStatistics:
    """l, s, b of the module doc at levels ``lambdas`` (K,) increasing, each (K, C,
    *grid.shape) float64 cosine coefficients; ``grid`` the grid they belong to."""

    grid: Grid
    lambdas: torch.Tensor
    l: torch.Tensor
    s: torch.Tensor
    b: torch.Tensor
    n_fields: int
    model_sha256: str | None = None

    @property
    def channels(self) -> int:
        return int(self.l.shape[1])

    def check_grid(self, grid: Grid, what: str = "the model statistics") -> None:
        """A :class:`SolverStatisticsError` naming both grids where ``grid`` is another."""
        if grid != self.grid:
            raise SolverStatisticsError(
                f"{what} were computed on {self.grid.describe()} and cannot be transferred "
                f"to {grid.describe()} (they are per cosine coefficient of that grid): "
                "sample on that grid, or use dpm2m/heun on this one"
            )

    def at(self, lam: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
        """l, s, b linearly interpolated at levels ``lam`` (M,), each (M, C, *grid.shape)
        on ``device``; constant beyond the table's ends."""
        table = self.lambdas
        lam = lam.to(torch.float64).cpu().clamp(float(table[0]), float(table[-1]))
        hi = torch.searchsorted(table, lam).clamp(1, len(table) - 1)
        lo = hi - 1
        w = ((lam - table[lo]) / (table[hi] - table[lo])).reshape(-1, *[1] * (self.l.ndim - 1))
        return tuple(((1 - w) * a[lo] + w * a[hi]).to(device) for a in (self.l, self.s, self.b))

    def to_dict(self) -> dict:
        return {
            "kind": "dpm-solver-v3-ems",
            "grid": self.grid.to_dict(),
            "lambdas": self.lambdas,
            "l": self.l.to(torch.float32),
            "s": self.s.to(torch.float32),
            "b": self.b.to(torch.float32),
            "n_fields": self.n_fields,
            "model_sha256": self.model_sha256,
        }

    @staticmethod
    def from_dict(d: dict) -> ModelStatistics:
        if d.get("kind") != "dpm-solver-v3-ems":
            raise SolverStatisticsError("not a file of DPM-Solver-v3 model statistics")
        return ModelStatistics(
            grid=Grid.from_dict(d["grid"]),
            lambdas=d["lambdas"].to(torch.float64),
            l=d["l"].to(torch.float64),
            s=d["s"].to(torch.float64),
            b=d["b"].to(torch.float64),
            n_fields=int(d["n_fields"]),
            model_sha256=d.get("model_sha256"),
        )


def _denoise(denoiser, y: torch.Tensor, lam: float, grid: Grid) -> torch.Tensor:
    """D at y (x = α y) and level λ, float64."""
    schedule = denoiser.process.schedule
    t = schedule.t_from_varsigma(torch.tensor(math.exp(-lam), dtype=torch.float64))
    alpha = schedule.alpha(t)
    times = torch.full((y.shape[0],), float(t), dtype=torch.float64, device=y.device)
    with torch.no_grad():
        return denoiser((alpha * y).to(torch.float32), times, grid).to(torch.float64)


def estimate_model_statistics(
    denoiser,
    fields: torch.Tensor,
    grid: Grid,
    lambdas: np.ndarray,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    progress: bool = False,
    fit_s: bool = False,
) -> ModelStatistics:
    """l, s, b (module doc) of ``denoiser`` at the levels ``lambdas`` (increasing), from
    the training ``fields`` (N, C, *grid.shape) in the model's normalisation."""
    lambdas = torch.as_tensor(np.asarray(lambdas, dtype=np.float64))
    if lambdas.ndim != 1 or len(lambdas) < 2 or not bool((lambdas.diff() > 0).all()):
        raise SolverStatisticsError("the statistics need at least 2 increasing levels λ")
    process = denoiser.process
    x0_all = fields.to(torch.float64)
    n, c = x0_all.shape[:2]

    def draws(lam: float):
        """Batches of (x0, y) with y = x0 + ς ξ at level λ."""
        for first in range(0, n, batch_size):
            x0 = x0_all[first : first + batch_size]
            xi = process.noise(x0.shape[0], c, grid, generator, dtype=torch.float64)
            yield x0, x0 + math.exp(-lam) * xi.cpu()

    def rademacher(shape) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator, dtype=torch.float64) * 2 - 1

    levels = tqdm(range(len(lambdas)), desc="v3 statistics (l)", disable=not progress)
    l_table = []
    for k in levels:
        lam = float(lambdas[k])
        eta = 5e-2 * math.exp(-lam)
        total = torch.zeros(c, *grid.shape, dtype=torch.float64)
        for _, y in draws(lam):
            v_hat = rademacher(y.shape)
            v = cosine_inverse(v_hat, grid)
            plus = _denoise(denoiser, y + eta * v, lam, grid)
            jv = (plus - _denoise(denoiser, y - eta * v, lam, grid)) / (2 * eta)
            total += (v_hat * cosine_forward(jv, grid)).sum(0)
        l_table.append(total / n)
    l_tab = torch.stack(l_table)
    l_slope = torch.gradient(l_tab, spacing=(lambdas,), dim=0)[0]

    delta = 1e-2
    s_table, b_table = [], []
    levels = tqdm(range(len(lambdas)), desc="v3 statistics (s, b)", disable=not progress)
    for k in levels:
        lam = float(lambdas[k])
        sums = dict.fromkeys(("f", "g", "ff", "fg"), 0.0)
        for _, y in draws(lam):
            den = _denoise(denoiser, y, lam, grid)
            y_next = y + delta * (den - y)
            den_next = _denoise(denoiser, y_next, lam + delta, grid)
            y_hat, den_hat = cosine_forward(y, grid), cosine_forward(den, grid)
            f = den_hat - l_tab[k] * y_hat
            # d/dλ of D̂ − l ŷ along the ODE: (D̂⁺ − D̂)/δ − l' ŷ − l (D̂ − ŷ)
            dden = (cosine_forward(den_next, grid) - den_hat) / delta
            f1 = dden - l_slope[k] * y_hat - l_tab[k] * (den_hat - y_hat)
            sums["f"] += f.sum(0)
            sums["g"] += f1.sum(0)
            sums["ff"] += (f * f).sum(0)
            sums["fg"] += (f * f1).sum(0)
        mean_f, mean_g = sums["f"] / n, sums["g"] / n
        var_f = sums["ff"] / n - mean_f**2
        cov = sums["fg"] / n - mean_f * mean_g
        floor = 1e-10 * float(var_f.abs().max()) + 1e-30
        s = torch.where(var_f > floor, cov / var_f.clamp_min(floor), torch.zeros_like(cov))
        s = s.clamp(-S_CLIP, S_CLIP) if fit_s else torch.zeros_like(cov)
        s_table.append(s)
        b_table.append(mean_g - s * mean_f)
    return ModelStatistics(
        grid=grid,
        lambdas=lambdas,
        l=l_tab,
        s=torch.stack(s_table),
        b=torch.stack(b_table),
        n_fields=n,
    )
