"""Samplers for Hilbert diffusion: reverse SDE, probability-flow ODE, multistep, PC.

With s(x, t) = Q∇log p_t(x) = (α_t D(x, t) − x)/σ_t² (see ``denoisers``):

- reverse SDE  dX = [−½β X − β s(X, t)] dt + √β dW̄_Q,
- PF-ODE       dX = [−½β X − ½β s(X, t)] dt, equivalently, for y = x/α and
  ς = σ/α, the EDM ODE dy/dς = (y − D(α y, t(ς)))/ς (the drift is scalar, so Q only
  enters through D).

Samplers (every random draw is ξ ~ N(0, Q) from the process, via an injected
``torch.Generator``; each reports its number of denoiser evaluations, NFE):

- :class:`EulerMaruyama` ("em"): Euler–Maruyama on the reverse SDE (HDM's sampler, which
  steps uniformly in t), x ← x + [½βx + βs]Δ + √(βΔ) ξ, here between the N noise levels
  of EDM (:func:`edm_varsigmas`, ρ = 7, down to ς_min = 2·10⁻³), ending with the
  denoiser's output at ς_min (see below). No norm clamping (HDM's crutch is not
  copied). NFE = N.
- :class:`Heun` ("heun"): EDM's second-order Heun on the PF-ODE in (y, ς), with
  ς_i = (ς_max^{1/ρ} + i/(N−1)(ς_min^{1/ρ} − ς_max^{1/ρ}))^ρ, ρ = 7, and a final Euler
  step to ς = 0. NFE = 2N − 1 for N steps.
- :class:`DPMSolver2M` ("dpm2m"): DPM-Solver++(2M) (Lu et al. 2022), the multistep
  exponential integrator in data prediction, steps uniform in λ = log(α/σ):
  x_i = (σ_i/σ_{i−1}) x_{i−1} − α_i (e^{−h_i} − 1) D̃_i, h_i = λ_i − λ_{i−1},
  D̃_i = (1 + 1/(2r_i)) D_{i−1} − 1/(2r_i) D_{i−2}, r_i = h_{i−1}/h_i (first step:
  D̃ = D_0), then a final denoising x ← D(x, t_end). NFE = N + 1.
- :class:`SDEDPMSolver2M` ("sde2m"): SDE-DPM-Solver++(2M) (Lu et al. 2022), the
  reverse SDE by a second-order multistep exponential integrator on EDM's levels. With
  r = ς_{i+1}/ς_i and h = −log r, x_{i+1} = (α_{i+1}/α_i) r² x_i + α_{i+1}(1 − r²) D̃_i
  + σ_{i+1} √(1 − r²) ξ, D̃_i = D_i + (D_i − D_{i−1})/(2 ρ_i), ρ_i = h_{i−1}/h_i (D̃ = D
  on the first step); it ends denoised at ς_min like EM. Its linear part is exact, so no
  step adds more noise than the level it steps to. Per mode of a Gaussian field (the
  32-point SE/Matérn problem of the tests, exact recursion of the variance) its
  draws' variance is 3 % too high at 50 steps where EM's is 6 % too high; at 10 steps
  39 % against EM's 95 %, and at 4–6 steps EM's grows without bound (17–33× the std of
  the UK prior's draws) where sde2m stays within 1.3×. NFE = N.
- :class:`PredictorCorrector` ("pc"): an Euler–Maruyama predictor followed by a
  Langevin corrector in the Q-metric, x ← x + ε s + √(2ε) ξ, which leaves p_t invariant
  as ε → 0, on EDM's levels like EM. The step is ε = 2 (r σ_t)², r = 0.16: Song et al.'s
  (2021) rule ε = 2 (r‖z‖/‖∇log p‖)² assumes white noise; with Q-noise the stiffest
  direction of the Gaussian part of p_t has Q Σ_t⁻¹ ≈ 1/σ_t², so ε σ_t⁻² = 2r² keeps
  every mode stable on any grid. NFE = 2N − 1.

Every sampler ends on a denoised sample. The stochastic samplers (EM, PC) do not add a
last noise draw: a step to t_min adds √(β Δ) ξ, far more noise than σ(t_min), which no
denoiser at t_min can remove (HDM's 50 uniform steps in t left the MMPS posterior 1.3×
too wide at σ_y = 0.05 and 3.5× at σ_y = 0.01 on a 40 × 40 Gaussian problem, where the
deterministic samplers were exact). Their last network evaluation, at ς_min, gives the
sample: the Tweedie estimate E[X_0 | x_t], at no extra NFE. Ending denoised at the last
of HDM's uniform steps instead (t ≈ 0.02 at 50 steps) collapses the posterior spread
that is still unresolved there (std ratio 0.91 and 0.89 with PC at σ_y = 0.01); EDM's
levels end where σ ≪ σ_y (std ratio 1.07 / 1.05 there). Heun and DPM-Solver++ end with
the denoiser's output already (ς = 0, or a final denoising).

All samplers start from the terminal distribution N(0, Q) at ς(t_max), or, given a
``start`` (analytical teleportation, :mod:`hdm.hilbert.gaussian`), from its draws at
ς* with their levels laid out between ς* and the end, and return fields of shape
(n, channels, *grid.shape).
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm.auto import tqdm

from hdm.hilbert.denoisers import Denoiser
from hdm.hilbert.devices import denoiser_device
from hdm.hilbert.grids import Grid
from hdm.hilbert.solver_statistics import (
    SolverStatisticsError,
    cosine_forward,
    cosine_inverse,
)

VARSIGMA_MIN = 2e-3  # EDM's σ_min, the end of the deterministic samplers' noise range


class Start(Protocol):
    """Where a teleported sampler starts (:class:`hdm.hilbert.gaussian.GaussianStart`):
    draws of X_t at ς = ``varsigma``."""

    varsigma: float

    def draw(
        self, n: int, channels: int, grid: Grid, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n draws of X_t, (n, channels, *grid.shape)."""


@dataclass(frozen=True)
class SampleResult:
    """Samples (n, C, *grid.shape) and the number of denoiser evaluations used."""

    samples: torch.Tensor
    nfe: int


class _Counted:
    """Counts denoiser evaluations (one per batched call)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.process = denoiser.process
        self.nfe = 0

    def __call__(self, x, t, grid):
        self.nfe += 1
        with torch.no_grad():
            return self.denoiser(x, t, grid)


class Sampler(ABC):
    """Draws n samples from the model defined by a denoiser."""

    name: str
    steps: int

    def __call__(
        self,
        denoiser: Denoiser,
        n: int,
        grid: Grid,
        channels: int = 1,
        generator: torch.Generator | None = None,
        progress: bool = False,
        start: Start | None = None,
    ) -> SampleResult:
        """``n`` samples; with ``start`` (teleportation) the integration begins at
        ς* = ``start.varsigma`` from ``start.draw`` instead of ς(t_max) from N(0, Q)."""
        if self.steps < 1:
            raise ValueError(f"{self.name}: steps must be at least 1, got {self.steps}")
        counted = _Counted(denoiser)
        if start is None:
            x, top = denoiser.process.prior_sample(n, channels, grid, generator), None
        else:
            x, top = start.draw(n, channels, grid, generator), float(start.varsigma)
        x = x.to(denoiser_device(denoiser))  # drawn on the generator's device (CPU: none)
        x = self.run(counted, x, grid, generator, progress, top)
        return SampleResult(samples=x, nfe=counted.nfe)

    @abstractmethod
    def run(
        self,
        denoiser: _Counted,
        x: torch.Tensor,
        grid: Grid,
        generator: torch.Generator | None,
        progress: bool,
        top: float | None = None,
    ) -> torch.Tensor:
        """Integrate from the draw x at ς = ``top`` (None: ς(t_max)) to t_min (or ς = 0)."""


def edm_varsigmas(
    schedule,
    levels: int,
    rho: float = 7.0,
    varsigma_min: float = VARSIGMA_MIN,
    top: float | None = None,
) -> torch.Tensor:
    """EDM's noise levels: ``levels`` values of ς = σ/α from ς(t_max) (or ``top``, where
    a teleported sampler starts) down to max(ς_min, ς(t_min)), spaced uniformly in
    ς^{1/ρ} (Karras et al. 2022, eq. 5): the steps shrink towards low noise, where the
    fine scales are decided."""
    vs_max = float(schedule.varsigma(torch.tensor(schedule.t_max))) if top is None else top
    vs_min = max(varsigma_min, float(schedule.varsigma(torch.tensor(schedule.t_min))))
    i = torch.linspace(0, 1, levels, dtype=torch.float64)
    return (vs_max ** (1 / rho) + i * (vs_min ** (1 / rho) - vs_max ** (1 / rho))) ** rho


def _times(n: int, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t as a per-sample vector (n,) float64 on the device of the fields ``like``."""
    return torch.full((n,), float(t), dtype=torch.float64, device=like.device)


def _steps(iterable, progress: bool, desc: str):
    return tqdm(iterable, desc=desc, leave=False, disable=not progress)


@dataclass(frozen=True)
class EulerMaruyama(Sampler):
    steps: int = 1000
    rho: float = 7.0
    name: str = "em"

    def run(self, denoiser, x, grid, generator, progress, top=None):
        schedule = denoiser.process.schedule
        ts = schedule.t_from_varsigma(edm_varsigmas(schedule, self.steps, self.rho, top=top))
        n, c = x.shape[:2]
        for i in _steps(range(self.steps), progress, "em"):
            denoised = denoiser(x, _times(n, ts[i], x), grid)
            if i == self.steps - 1:
                return denoised.to(x.dtype)  # end denoised at ς_min (module doc)
            t, dt = ts[i], ts[i] - ts[i + 1]
            alpha, sigma, beta = schedule.alpha(t), schedule.sigma(t), schedule.beta(t)
            score = (alpha * denoised - x) / sigma**2
            xi = denoiser.process.noise(n, c, grid, generator, dtype=x.dtype)
            x = x + (0.5 * beta * x + beta * score) * dt + torch.sqrt(beta * dt) * xi
            x = x.to(xi.dtype)
        return x


@dataclass(frozen=True)
class SDEDPMSolver2M(Sampler):
    steps: int = 50
    rho: float = 7.0
    name: str = "sde2m"

    def run(self, denoiser, x, grid, generator, progress, top=None):
        schedule = denoiser.process.schedule
        vs = edm_varsigmas(schedule, self.steps, self.rho, top=top)
        ts = schedule.t_from_varsigma(vs)
        n, c = x.shape[:2]
        d_prev, h_prev = None, None
        for i in _steps(range(self.steps), progress, "sde2m"):
            denoised = denoiser(x, _times(n, ts[i], x), grid)
            if i == self.steps - 1:
                return denoised.to(x.dtype)  # end denoised at ς_min (module doc)
            h = torch.log(vs[i] / vs[i + 1])
            d_hat = denoised
            if d_prev is not None:
                d_hat = denoised + (denoised - d_prev) * (h / (2 * h_prev))
            r2 = torch.exp(-2 * h)
            a_ratio = schedule.alpha(ts[i + 1]) / schedule.alpha(ts[i])
            xi = denoiser.process.noise(n, c, grid, generator, dtype=x.dtype)
            x = a_ratio * r2 * x + schedule.alpha(ts[i + 1]) * (1 - r2) * d_hat
            x = (x + schedule.sigma(ts[i + 1]) * torch.sqrt(1 - r2) * xi).to(xi.dtype)
            d_prev, h_prev = denoised, h
        return x


@dataclass(frozen=True)
class Heun(Sampler):
    steps: int = 25
    rho: float = 7.0
    varsigma_min: float = VARSIGMA_MIN
    name: str = "heun"

    def varsigmas(self, schedule, top: float | None = None) -> torch.Tensor:
        vs = edm_varsigmas(schedule, self.steps, self.rho, self.varsigma_min, top)
        return torch.cat([vs, torch.zeros(1, dtype=torch.float64)])

    def run(self, denoiser, x, grid, generator, progress, top=None):
        schedule = denoiser.process.schedule
        vs = self.varsigmas(schedule, top)
        n = x.shape[0]

        def d_edm(y, v):  # D as a function of (y, ς) with x = α y
            t = schedule.t_from_varsigma(v)
            alpha = schedule.alpha(t)
            return denoiser(alpha * y, _times(n, t, x), grid)

        y = x / schedule.alpha(schedule.t_from_varsigma(vs[0]))
        y = y.to(x.dtype)
        for i in _steps(range(self.steps), progress, "heun"):
            v, v_next = vs[i], vs[i + 1]
            d = (y - d_edm(y, v)) / v
            y_next = y + (v_next - v) * d
            if v_next > 0:
                d_next = (y_next - d_edm(y_next, v_next)) / v_next
                y_next = y + (v_next - v) * 0.5 * (d + d_next)
            y = y_next.to(x.dtype)
        return y


@dataclass(frozen=True)
class DPMSolver2M(Sampler):
    steps: int = 25
    varsigma_min: float = VARSIGMA_MIN
    name: str = "dpm2m"

    def run(self, denoiser, x, grid, generator, progress, top=None):
        schedule = denoiser.process.schedule
        lam_start = (
            schedule.log_snr(torch.tensor(schedule.t_max, dtype=torch.float64))
            if top is None
            else -torch.log(torch.tensor(top, dtype=torch.float64))
        )
        lam_end = -torch.log(torch.tensor(self.varsigma_min, dtype=torch.float64))
        lam_end = torch.minimum(
            lam_end, schedule.log_snr(torch.tensor(schedule.t_min, dtype=torch.float64))
        )
        lams = torch.linspace(float(lam_start), float(lam_end), self.steps + 1, dtype=torch.float64)
        ts = schedule.t_from_log_snr(lams)
        n = x.shape[0]
        d_prev, h_prev = None, None
        for i in _steps(range(1, self.steps + 1), progress, "dpm2m"):
            d_cur = denoiser(x, _times(n, ts[i - 1], x), grid)
            h = lams[i] - lams[i - 1]
            if d_prev is None:
                d_hat = d_cur
            else:
                r = h_prev / h
                d_hat = (1 + 1 / (2 * r)) * d_cur - 1 / (2 * r) * d_prev
            sigma_ratio = schedule.sigma(ts[i]) / schedule.sigma(ts[i - 1])
            x = sigma_ratio * x - schedule.alpha(ts[i]) * torch.expm1(-h) * d_hat
            x = x.to(d_cur.dtype)
            d_prev, h_prev = d_cur, h
        return denoiser(x, _times(n, ts[-1], x), grid)


def _cumtrapz(values: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    """∫ from nodes[0] to each node of ``values`` (M, ...) by the trapezoid rule (signed
    spacing: nodes may decrease), (M, ...) starting at 0."""
    h = (nodes[1:] - nodes[:-1]).reshape(-1, *[1] * (values.ndim - 1))
    steps = 0.5 * h * (values[1:] + values[:-1])
    return torch.cat([torch.zeros_like(values[:1]), torch.cumsum(steps, 0)])


@dataclass(frozen=True)
class DPMSolverV3(Sampler):
    """DPM-Solver-v3 on the PF-ODE with the model's empirical statistics, in cosine
    coefficients (:mod:`hdm.hilbert.solver_statistics`: the ODE, l, s, b, f and g).

    Steps uniform in λ = −log ς from the start to ς_min, like dpm2m. Over a step λ_s → λ_t
    with E(λ) = exp(A(λ) − A(λ_t) + S(λ)), A(λ) = ∫_{λ_s}^{λ} (1 − l):

        ŷ_t = e^{−A(λ_t)} ŷ_s + g_s I₀ + g⁽¹⁾ I₁ + I_B,
        I₀ = ∫ E,  I₁ = ∫ E (λ − λ_s),  I_B = ∫ E B,

    (integrals over [λ_s, λ_t], trapezoid rule on ``quadrature`` nodes, the statistics
    interpolated linearly in λ). g_s = f_s (S = B = 0 at λ_s); g⁽¹⁾ = (g_s − g_p)/(λ_s − λ_p)
    from the previous evaluation, whose g_p = e^{−S(λ_p)} f_p − B(λ_p) is taken back to
    the current step's base (second order, multistep; the first step is first order).
    Then a final denoising at ς_min. NFE = N + 1. With l = s = b = 0 this is the
    exponential integrator of DPM-Solver++ in y (the tests check it)."""

    steps: int = 10
    statistics: object = None  # ModelStatistics
    varsigma_min: float = VARSIGMA_MIN
    quadrature: int = 33
    name: str = "v3"

    def run(self, denoiser, x, grid, generator, progress, top=None):
        stats = self.statistics
        if stats is None:
            raise SolverStatisticsError(
                "the v3 sampler needs the model's empirical statistics: compute them with "
                "`hdm model-stats MODEL_DIR`"
            )
        stats.check_grid(grid)
        if x.shape[1] != stats.channels:
            raise SolverStatisticsError(
                f"the model statistics have {stats.channels} channel(s), the sampler "
                f"asked for {x.shape[1]}"
            )
        schedule = denoiser.process.schedule
        f64 = torch.float64
        lam_start = (
            schedule.log_snr(torch.tensor(schedule.t_max, dtype=f64))
            if top is None
            else -torch.log(torch.tensor(top, dtype=f64))
        )
        lam_end = torch.minimum(
            -torch.log(torch.tensor(self.varsigma_min, dtype=f64)),
            schedule.log_snr(torch.tensor(schedule.t_min, dtype=f64)),
        )
        lams = torch.linspace(float(lam_start), float(lam_end), self.steps + 1, dtype=f64)
        ts = schedule.t_from_log_snr(lams)
        n, device = x.shape[0], x.device
        y_hat = cosine_forward(x / schedule.alpha(ts[0]), grid)
        m = self.quadrature
        prev = None  # (λ_p, f_p)
        for i in _steps(range(1, self.steps + 1), progress, "v3"):
            lam_s, lam_t = lams[i - 1], lams[i]
            alpha_s = schedule.alpha(ts[i - 1])
            x_s = (alpha_s * cosine_inverse(y_hat, grid)).to(x.dtype)
            d_hat = cosine_forward(denoiser(x_s, _times(n, ts[i - 1], x), grid), grid)
            l_s = stats.at(lam_s.reshape(1), device)[0][0]
            f_s = d_hat - l_s * y_hat
            nodes = torch.linspace(float(lam_s), float(lam_t), m, dtype=f64)
            l_q, s_q, b_q = stats.at(nodes, device)
            nodes = nodes.to(device)
            a_q = _cumtrapz(1 - l_q, nodes)
            s_int = _cumtrapz(s_q, nodes)
            b_int = _cumtrapz(torch.exp(-s_int) * b_q, nodes)
            e_q = torch.exp(a_q - a_q[-1] + s_int)
            offset = (nodes - lam_s).reshape(-1, *[1] * (e_q.ndim - 1))
            i0 = _cumtrapz(e_q, nodes)[-1]
            i_b = _cumtrapz(e_q * b_int, nodes)[-1]
            update = torch.exp(-a_q[-1]) * y_hat + f_s * i0 + i_b
            if prev is not None:
                lam_p, f_p = prev
                back = torch.linspace(float(lam_s), float(lam_p), m, dtype=f64)
                _, s_b, b_b = stats.at(back, device)
                back = back.to(device)
                s_back = _cumtrapz(s_b, back)
                b_back = _cumtrapz(torch.exp(-s_back) * b_b, back)
                g_p = torch.exp(-s_back[-1]) * f_p - b_back[-1]
                g1 = (f_s - g_p) / float(lam_s - lam_p)
                update = update + g1 * _cumtrapz(e_q * offset, nodes)[-1]
            y_hat = update
            prev = (lam_s, f_s)
        x_end = (schedule.alpha(ts[-1]) * cosine_inverse(y_hat, grid)).to(x.dtype)
        return denoiser(x_end, _times(n, ts[-1], x), grid)


@dataclass(frozen=True)
class PredictorCorrector(Sampler):
    steps: int = 500
    snr: float = 0.16
    rho: float = 7.0
    name: str = "pc"

    def run(self, denoiser, x, grid, generator, progress, top=None):
        schedule = denoiser.process.schedule
        process = denoiser.process
        ts = schedule.t_from_varsigma(edm_varsigmas(schedule, self.steps, self.rho, top=top))
        n, c = x.shape[:2]
        for i in _steps(range(self.steps), progress, "pc"):
            denoised = denoiser(x, _times(n, ts[i], x), grid)
            if i == self.steps - 1:
                return denoised.to(x.dtype)  # end denoised at ς_min (module doc)
            t, dt = ts[i], ts[i] - ts[i + 1]
            alpha, sigma, beta = schedule.alpha(t), schedule.sigma(t), schedule.beta(t)
            score = (alpha * denoised - x) / sigma**2
            xi = process.noise(n, c, grid, generator, dtype=x.dtype)
            x = (x + (0.5 * beta * x + beta * score) * dt + torch.sqrt(beta * dt) * xi).to(xi.dtype)
            # Langevin corrector at the new time, in the Q-metric.
            t_new = ts[i + 1]
            a_new, s_new = schedule.alpha(t_new), schedule.sigma(t_new)
            score = (a_new * denoiser(x, _times(n, t_new, x), grid) - x) / s_new**2
            xi = process.noise(n, c, grid, generator, dtype=x.dtype)
            eps = 2 * (self.snr * s_new) ** 2
            x = (x + eps * score + torch.sqrt(2 * eps) * xi).to(xi.dtype)
        return x


SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "em": lambda steps: EulerMaruyama(steps=steps),
    "heun": lambda steps: Heun(steps=steps),
    "dpm2m": lambda steps: DPMSolver2M(steps=steps),
    "pc": lambda steps: PredictorCorrector(steps=steps),
    "sde2m": lambda steps: SDEDPMSolver2M(steps=steps),
    "v3": lambda steps, statistics=None: DPMSolverV3(steps=steps, statistics=statistics),
}

SAMPLER_DESCRIPTIONS = {
    "em": "Euler–Maruyama on the reverse SDE",
    "heun": "Heun (2nd order) on the probability-flow ODE, EDM time steps",
    "dpm2m": "DPM-Solver++(2M) multistep on the probability-flow ODE",
    "pc": "Euler–Maruyama predictor + Langevin corrector",
    "sde2m": "SDE-DPM-Solver++(2M) multistep on the reverse SDE, EDM noise levels",
    "v3": "DPM-Solver-v3 multistep with the model's empirical statistics (hdm model-stats)",
}

#: samplers that need the model's empirical statistics (``hdm model-stats``)
NEEDS_STATISTICS = ("v3",)


# Fewest steps a sampler is trusted with. Plain Euler–Maruyama overshoots the variance of
# each mode by a factor that grows without bound as the steps get coarse (exact
# recursion on the 32-point Gaussian problem: +20 % at 20 steps, +95 % at 10, ×201 in
# trace at 6 and ×5478 at 4; the UK prior's draws reach 17–33× the data's std at 4–6
# steps), and PC's predictor is the same step. Refusing is better than garbage.
MIN_STEPS = {"em": 20, "pc": 20}

# Steps a sampler gets when none are given. Against the closed-form posterior (MMPS, the
# exact denoiser, BENCHMARKS.md "downscale-grf-samplers") every sampler keeps the
# members' std within 10 % of the exact one at 25 steps except the two first-order
# stochastic ones: Euler–Maruyama and PC overshoot it by 12–13 % at 25 steps and by
# 3–5 % at 50, so they default to 50.
DEFAULT_STEPS = {"em": 50, "pc": 50}
STANDARD_STEPS = 25


def default_steps(name: str) -> int:
    """The steps sampler ``name`` runs with when none are given (:data:`DEFAULT_STEPS`)."""
    return DEFAULT_STEPS.get(name, STANDARD_STEPS)


def make_sampler(name: str, steps: int, statistics=None) -> Sampler:
    """A sampler by name (a key of :data:`SAMPLERS`) with ``steps`` steps; ``statistics``:
    the model's :class:`~hdm.hilbert.solver_statistics.ModelStatistics`, which "v3" needs
    when it runs (the other samplers ignore them).

    Raises ``ValueError`` for an unknown name, ``steps < 1``, or fewer steps than
    :data:`MIN_STEPS` allows for the sampler (naming the samplers that are stable there).
    """
    if name not in SAMPLERS:
        close = difflib.get_close_matches(name, SAMPLERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(f"{k} ({v})" for k, v in SAMPLER_DESCRIPTIONS.items())
        raise ValueError(f"unknown sampler {name!r}{hint or '.'} Known: {known}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps < MIN_STEPS.get(name, 1):
        raise ValueError(
            f"sampler {name!r} needs at least {MIN_STEPS[name]} steps, got {steps}: its "
            "variance grows without bound on coarse steps; use sde2m (stochastic), heun or "
            "dpm2m (deterministic), which stay stable at a few steps"
        )
    if name in NEEDS_STATISTICS:
        return SAMPLERS[name](steps, statistics)
    return SAMPLERS[name](steps)
