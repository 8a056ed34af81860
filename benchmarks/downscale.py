"""``python -m benchmarks downscale``: the downscaling benchmark tables in BENCHMARKS.md:
conditioning checked where the answer is known (a Gaussian random field), the cost of
sampling on larger grids, and (from :mod:`benchmarks.uk`) the UK t2m test week.

    python -m benchmarks downscale [--quick] [--parts grf,samplers,speed,uk] [--work DIR]
        [--exactness-options JSON] [--trained-options JSON] [--speed-options JSON]
        [--sampler-options JSON] [--priors DIR,...]

``--parts`` (comma-separated; default ``grf,samplers,speed,uk``) chooses the sections:

=========  ========================  ==================================================
part       section                   what
=========  ========================  ==================================================
grf        ``downscale-grf``         GRF exactness: oracle and trained FNO rows
samplers   ``downscale-grf-samplers`` every sampler × guidance, σ_y = 0.1 and 0.01
teleport   ``downscale-grf-teleport`` MMPS from a teleported start, fewer steps
grf64      ``downscale-grf64``       the oracle rows alone at 64 × 64
speed      ``downscale-speed``       one NFE of the UK-architecture FNO on n × n grids
uk         ``downscale-uk``          UK t2m test week, zero-shot 2×, speed of one field
sampler    ``downscale-sampler``     the sampler choice on a training-period day
q          ``downscale-q``           the UK prior's Q against the training spectrum
=========  ========================  ==================================================

The ``--*-options`` are JSON objects of keyword arguments of :func:`grf_exactness`,
:func:`grf_trained` and :func:`sampling_speed` (e.g. ``--speed-options '{"sizes": [64,
128]}'``); ``--quick`` runs smoke sizes (``-quick`` sections for grf, grf64 and speed).

GRF exactness (SCIENCE.md §4, "Exactness check")
------------------------------------------------
On the unit square with an n × n grid, the prior is X ~ N(0, C) with C a unit-variance
squared-exponential kernel (ℓ_C = 0.12) and the diffusion noise is Q = Matérn(ν = 2.5,
ℓ_Q = 0.1), so C ≠ Q and the denoiser is not a trivial rescaling. One truth x* ~ N(0, C)
is observed through y = A x* + η, η ~ N(0, σ_y² I), σ_y = 0.1, with A stacking

- the ×4 coarse-graining of the grid (area means over blocks of 4 × 4 points), and
- 20 stations at uniform random positions in [0.05, 0.95]², bilinear interpolation.

The posterior is Gaussian and known in closed form (:func:`gaussian_posterior`):
m_post = C Aᵀ S⁻¹ y, C_post = C − C Aᵀ S⁻¹ A C, S = A C Aᵀ + σ_y² I. Each guidance
method wraps a denoiser, the Heun sampler draws M members x⁽¹⁾ … x⁽ᴹ⁾, and a row reports
(P grid points, ·̄ the member mean, s² the member variance with ddof = 1, σ_C = 1 the
prior std):

- mean error   RMS_P(x̄ − m_post) / σ_C;  beside it the Monte-Carlo floor
  sqrt(mean_P diag C_post / M) / σ_C, the error an exact sampler would show;
- std ratio    sqrt(mean_P s² / mean_P diag C_post) (1 when the spread is right);
- coverage     the fraction of grid points where a value lies inside the members'
  empirical 5–95 % interval, for exact posterior draws (fresh, seeded draws from
  N(m_post, C_post), averaged over 100 of them: 0.90 when calibrated, slightly less
  for finite M) and for the truth x* (one noisy realisation of the same quantity);
- NFE, wall seconds and the guidance options.

With the exact analytic denoiser (:class:`GaussianDenoiser`, the oracle) MMPS must
reproduce the closed form within Monte-Carlo error (targets: mean error ≤ 0.05, std
ratio in [0.9, 1.1], coverage in [0.85, 0.95]); DPS, the SDA heuristic and replacement
are not exact and show by how much. With an FNO trained on draws of the same prior
(:func:`grf_trained`) the rows show what the network costs (target for the best method:
mean error ≤ 0.15, std ratio in [0.75, 1.25]).

DPS with σ_y = 0.1 and its plain step (ζ = 1) diverges: the step (σ²/α) Q Jᵀ Aᵀ Σ_y⁻¹ r
has a gain of order ‖A C Aᵀ‖/σ_y² ≈ 100 at high noise levels. Its setting is therefore
chosen by a scan (:func:`choose_dps_options`) on a small grid (at most 32 × 32) over plain
and normalised (ζ/‖Σ_y^{-1/2} r‖) steps, ranked by mean error + |log std ratio|; the
scan is reported with the table.

Sampling speed
--------------
:func:`sampling_speed` times one batched denoiser evaluation (NFE) of an untrained
TimeConditionedFNO of the UK architecture on n × n grids, without and with MMPS
guidance. The observation operator is the *same physical operator* at every size (the
×4 coarse cells of the 64 × 64 grid, 16 × 16 = 256 cells, and 20 stations), so the
guided column measures the network and the guidance, not a growing number of
observations.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from hdm.conditioning.ensembles import draw_members
from hdm.conditioning.guidance import gaussian_posterior, make_guidance
from hdm.conditioning.observations import CoarseGrain, Composite, ObservationOperator, PointSample
from hdm.conditioning.teleport import guided_start
from hdm.data.schema import LAT, LON
from hdm.downscaling.config import EnsembleConfig
from hdm.hilbert.covariance import KernelCovariance, SpectralCovariance
from hdm.hilbert.denoisers import Denoiser, GaussianDenoiser, PreconditionedDenoiser
from hdm.hilbert.gaussian import GaussianStatistics
from hdm.hilbert.grids import Grid, RectGrid
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import SAMPLERS, default_steps, make_sampler
from hdm.hilbert.schedules import CosineVP
from hdm.hilbert.solver_statistics import estimate_model_statistics
from hdm.hilbert.training import OptimConfig, train
from hdm.metrics.probabilistic import power_spectrum
from hdm.pipelines.config import load_train_config
from hdm.pipelines.model_stats import statistics_levels

__all__ = [
    "EXACT_TARGETS",
    "PARTS",
    "TRAINED_TARGETS",
    "GRFProblem",
    "choose_dps_options",
    "format_exactness",
    "format_speed",
    "grf_exactness",
    "grf_problem",
    "grf_trained",
    "main",
    "posterior_scores",
    "run_grf",
    "run_grf64",
    "run_speed",
    "sampling_speed",
    "speed_problem",
]

log = logging.getLogger("hdm")

# ----------------------------------------------------------------- the GRF problem

PRIOR_LENGTHSCALE = 0.12  # ℓ_C of the squared-exponential prior covariance
NOISE_LENGTHSCALE = 0.1  # ℓ_Q of the Matérn-5/2 diffusion noise
N_STATIONS = 20
COARSE_FACTOR = 4
OBS_NOISE_STD = 0.1
EXACT_DRAWS = 100  # exact posterior draws averaged in the coverage

METHODS = ("mmps", "sda", "dps", "replacement")
ORACLE_OPTIONS = {"mmps": {"cg_steps": 20}, "sda": {"gamma": 1.0}, "replacement": {}}
TRAINED_OPTIONS = {"mmps": {"cg_steps": 5}, "sda": {"gamma": 1.0}, "replacement": {}}
# DPS candidates of the scan: plain steps (ζ = 1 diverges for σ_y = 0.1, see module
# docstring) and normalised steps; the quick scan keeps one of each.
DPS_CANDIDATES = (
    {"scale": 1.0},
    {"scale": 0.1},
    {"scale": 0.01},
    {"scale": 1.0, "normalise": True},
    {"scale": 3.0, "normalise": True},
    {"scale": 10.0, "normalise": True},
)
DPS_CANDIDATES_QUICK = ({"scale": 0.01}, {"scale": 3.0, "normalise": True})
DPS_FALLBACK = {"scale": 3.0, "normalise": True}  # the scan's choice in a 32 × 32 trial

EXACT_TARGETS = {"mean_error": 0.05, "std_ratio": (0.9, 1.1), "coverage": (0.85, 0.95)}
TRAINED_TARGETS = {"mean_error": 0.15, "std_ratio": (0.75, 1.25)}


class GRFProblem:
    """One GRF conditioning problem with its closed-form answer (see module docstring).

    Attributes (P = grid.size points, K observations): ``grid``; ``prior_cov`` C (P, P);
    ``process`` (CosineVP, Q); ``operator`` A (coarse cells then stations); ``truth`` x*
    (P,); ``y`` (K,) float64; ``post_mean`` (P,), ``post_var`` (P,) the diagonal of
    C_post; ``exact_draws`` (EXACT_DRAWS, P) draws of N(m_post, C_post); ``prior_std``
    σ_C = sqrt(mean diag C).
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        prior_lengthscale: float = PRIOR_LENGTHSCALE,
        noise_lengthscale: float = NOISE_LENGTHSCALE,
        obs_noise: float = OBS_NOISE_STD,
    ) -> None:
        self.n = n
        self.obs_noise = obs_noise
        self.grid = RectGrid((0.0, 1.0), (0.0, 1.0), (n, n))
        self.prior = KernelCovariance("se", prior_lengthscale)
        self.prior_cov = self.prior.dense(self.grid)
        self.process = ForwardProcess(CosineVP(), SpectralCovariance("matern", noise_lengthscale))
        rng = np.random.default_rng(seed)
        stations = tuple(map(tuple, rng.uniform(0.05, 0.95, (N_STATIONS, 2))))
        self.operator: ObservationOperator = Composite(
            (
                CoarseGrain.from_factor(self.grid, COARSE_FACTOR, obs_noise),
                PointSample(stations, obs_noise),
            )
        )
        attach_closed_form(self, seed)

    def describe(self, noise: SpectralCovariance | None = None) -> str:
        """The set-up in one sentence; ``noise``: a network's own Q in place of the
        problem's (the closed form does not depend on Q)."""
        coarse, stations = self.operator.parts
        q = (noise or self.process.covariance).describe()
        return (
            f"{self.n}×{self.n} grid on the unit square; prior N(0, C), "
            f"C = SE(ℓ={self.prior.lengthscale:g}); "
            f"Q = {q}; {coarse.n_obs()} coarse cells "
            f"(×{COARSE_FACTOR}) + {stations.n_obs()} stations, σ_y = {self.obs_noise:g}"
        )


def attach_closed_form(problem, seed: int) -> None:
    """Draw the truth x* ~ N(0, C) (seed), its observations y = A x* + noise (seed + 1),
    and set the problem's closed-form answer: ``truth``, ``y``, ``post_mean``, ``post_var``,
    ``exact_draws`` (seed + 3) and ``prior_std``, from its ``prior`` (a covariance that
    samples), ``prior_cov``, ``grid`` and ``operator``."""
    truth = problem.prior.sample(
        1, problem.grid, torch.Generator().manual_seed(seed), torch.float64
    )
    problem.truth = truth.reshape(-1).numpy()
    problem.y = problem.operator.simulate(
        truth[:, None], problem.grid, torch.Generator().manual_seed(seed + 1)
    )[0]
    mean, cov = gaussian_posterior(
        problem.prior_cov,
        np.zeros(problem.grid.size),
        problem.operator.matrix(problem.grid),
        problem.y.numpy(),
        problem.operator.noise_std() ** 2,
    )
    problem.post_mean = mean
    problem.post_var = np.clip(np.diag(cov), 0.0, None)
    problem.exact_draws = _gaussian_draws(mean, cov, EXACT_DRAWS, seed + 3)
    problem.prior_std = float(np.sqrt(np.mean(np.diag(problem.prior_cov))))


def grf_problem(n: int, seed: int = 0, obs_noise: float = OBS_NOISE_STD) -> GRFProblem:
    """The GRF problem on an n × n grid (all randomness from ``seed``) with observation
    noise std ``obs_noise``."""
    return GRFProblem(n, seed, obs_noise=obs_noise)


def _gaussian_draws(mean: np.ndarray, cov: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` draws of N(mean, cov), (count, P): Cholesky with the smallest relative
    jitter (1e-10 … 1e-4 of the mean variance) that succeeds (C_post of a smooth prior
    is numerically singular)."""
    scale = max(float(np.mean(np.diag(cov))), 1e-300)
    eye = np.eye(len(mean))
    for jitter in (1e-10, 1e-8, 1e-6, 1e-4):
        try:
            chol = np.linalg.cholesky(cov + jitter * scale * eye)
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise np.linalg.LinAlgError("the posterior covariance is not positive semi-definite")
    z = np.random.default_rng(seed).standard_normal((count, len(mean)))
    return mean[None, :] + z @ chol.T


# ----------------------------------------------------------------- sampling and scores


def _draw_members(
    denoiser: Denoiser,
    grid: Grid,
    members: int,
    steps: int,
    batch: int,
    seed: int,
    sampler: str = "heun",
    start=None,
    statistics=None,
) -> tuple[np.ndarray, int, float]:
    """Members (M, P) float64 drawn with ``sampler`` (default Heun) by
    :func:`hdm.conditioning.ensembles.draw_members`, one call per chunk of ``batch``
    (chunk k under key k, so its seed is ``member_seed(seed, "k/0")``). A chunk that
    fails (non-finite values, or a linear solve on values that blew up) is returned as
    NaN, so divergence is counted by :func:`posterior_scores` rather than raised. Returns
    the members, the NFE per member and the wall seconds. ``start``: a teleported start
    (:mod:`hdm.conditioning.teleport`)."""
    draw = make_sampler(sampler, steps, statistics)
    out, nfe, t0 = [], 0, time.perf_counter()
    for k, first in enumerate(range(0, members, batch)):
        count = min(batch, members - first)
        try:
            x, nfe = draw_members(
                denoiser, draw, grid, count, seed=seed, key=k, batch_size=count, start=start
            )
            out.append(x.reshape(count, -1).to(torch.float64).numpy())
        except (FloatingPointError, torch.linalg.LinAlgError):  # values that blew up
            out.append(np.full((count, grid.size), np.nan))
    return np.concatenate(out), nfe, time.perf_counter() - t0


def posterior_scores(samples: np.ndarray, problem: GRFProblem) -> dict:
    """Mean error, MC floor, std ratio and 90 % coverages of members (M, P) against the
    closed form (module docstring). Non-finite members are left out and counted; the
    status is "ok", "unstable" (finite but std ratio or mean error above 10) or
    "diverged" (fewer than 2 finite members: the scores are None)."""
    finite = np.isfinite(samples).all(1)
    kept = samples[finite]
    scores: dict = {"nonfinite_members": int((~finite).sum())}
    if len(kept) < 2:
        return {
            **scores,
            "status": "diverged",
            **dict.fromkeys(
                ("mean_error", "mc_floor", "std_ratio", "coverage_exact", "coverage_truth")
            ),
        }
    with np.errstate(over="ignore", invalid="ignore"):
        mean = kept.mean(0)
        var = kept.var(0, ddof=1)
        lo, hi = np.quantile(kept, [0.05, 0.95], axis=0)
    inside = (problem.exact_draws >= lo) & (problem.exact_draws <= hi)
    mean_error = float(np.sqrt(np.mean((mean - problem.post_mean) ** 2)) / problem.prior_std)
    std_ratio = float(np.sqrt(np.mean(var) / np.mean(problem.post_var)))
    scores.update(
        mean_error=mean_error,
        mc_floor=float(np.sqrt(np.mean(problem.post_var) / len(kept)) / problem.prior_std),
        std_ratio=std_ratio,
        coverage_exact=float(inside.mean()),
        coverage_truth=float(np.mean((problem.truth >= lo) & (problem.truth <= hi))),
    )
    blown_up = not (np.isfinite(std_ratio) and std_ratio <= 10 and mean_error <= 10)
    if scores["nonfinite_members"]:
        scores["status"] = f"diverged in {scores['nonfinite_members']}/{len(samples)} members"
    else:
        scores["status"] = "unstable" if blown_up else "ok"
    return scores


def band_power(fields: np.ndarray, grid: Grid) -> dict[str, float]:
    """Power of fields (M, P) on the square ``grid`` in bands of the ×4 coarse cells'
    Nyquist k_c = 1/(2 · 4 Δ) (Δ the grid spacing, k in cycles per unit length):
    [0, k_c/2), [k_c/2, k_c), [k_c, 2 k_c) and [2 k_c, 1/(2Δ)]. Each band is the sum of
    the radially averaged, Hann-windowed power spectral density
    (:func:`hdm.metrics.probabilistic.power_spectrum`) over its bins, averaged over the
    M fields; keys ``"0-0.5"``, ``"0.5-1"``, ``"1-2"``, ``"2-"`` (in units of k_c)."""
    lat, lon = grid.coords()
    cube = xr.DataArray(
        fields.reshape(len(fields), len(lat), len(lon)),
        dims=("field", LAT, LON),
        coords={LAT: lat, LON: lon},
    )
    spectrum = power_spectrum(cube)
    k = spectrum["wavenumber"].values / (1.0 / (2 * COARSE_FACTOR * (lat[1] - lat[0])))
    edges = {"0-0.5": (0.0, 0.5), "0.5-1": (0.5, 1.0), "1-2": (1.0, 2.0), "2-": (2.0, np.inf)}
    return {
        name: float(spectrum.values[(k >= lo) & (k < hi)].sum()) for name, (lo, hi) in edges.items()
    }


def spread_by_band(samples: np.ndarray, problem: GRFProblem) -> dict[str, float] | None:
    """Member-deviation power ÷ exact-posterior-deviation power in the bands of
    :func:`band_power` (1 in every band for an exact sampler, up to Monte-Carlo error):
    where an ensemble's excess or missing spread lives. None without 2 finite members;
    a band without exact power (no bins on a small grid) is None."""
    kept = samples[np.isfinite(samples).all(1)]
    if len(kept) < 2:
        return None
    draws = problem.exact_draws
    members = band_power(kept - kept.mean(0), problem.grid)
    exact = band_power(draws - draws.mean(0), problem.grid)
    unbias = (len(kept) / (len(kept) - 1)) / (len(draws) / (len(draws) - 1))
    return {b: unbias * members[b] / exact[b] if exact[b] > 0 else None for b in members}


def _guided_row(
    label: str,
    method: str,
    options: dict,
    denoiser: Denoiser,
    problem: GRFProblem,
    members: int,
    steps: int,
    batch: int,
    seed: int,
    sampler: str = "heun",
    start=None,
    statistics=None,
) -> dict:
    guided = make_guidance(method, denoiser, problem.operator, problem.y, **options)
    samples, nfe, wall = _draw_members(
        guided, problem.grid, members, steps, batch, seed, sampler, start, statistics
    )
    return {
        "teleport": None if start is None else float(start.varsigma),
        "model": label,
        "method": method,
        "sampler": sampler,
        "obs_noise": problem.obs_noise,
        "options": dict(options),
        "n": problem.n,
        "members": members,
        "steps": steps,
        "nfe": nfe,
        "wall_s": wall,
        **posterior_scores(samples, problem),
        "spread_by_band": spread_by_band(samples, problem),
    }


def _badness(row: dict) -> float:
    """mean error + |log std ratio|: 0 for an exact sampler, ∞ when not usable."""
    if row["status"] != "ok":
        return math.inf
    return row["mean_error"] + abs(math.log(max(row["std_ratio"], 1e-300)))


def choose_dps_options(
    n: int = 32,
    members: int = 200,
    steps: int = 25,
    candidates: Sequence[dict] = DPS_CANDIDATES,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """The DPS setting with the smallest mean error + |log std ratio| among the stable
    ``candidates`` on the n × n GRF problem with the oracle; returns it and the scan
    rows (one per candidate). When none is stable, :data:`DPS_FALLBACK` is returned."""
    problem = grf_problem(n, seed)
    oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
    scan = [
        _guided_row("oracle", "dps", opts, oracle, problem, members, steps, members, seed + 2)
        for opts in candidates
    ]
    best = min(scan, key=_badness)
    return (dict(best["options"]) if math.isfinite(_badness(best)) else dict(DPS_FALLBACK)), scan


def grf_exactness(
    n: int = 64,
    members: int = 500,
    steps: int = 25,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    quick: bool = False,
    *,
    dps_options: dict | None = None,
    options: dict[str, dict] | None = None,
) -> list[dict]:
    """Guided posterior sampling with the exact (oracle) denoiser against the closed form.

    One row per method (keys: model, method, options, n, members, steps, nfe, wall_s,
    mean_error, mc_floor, std_ratio, coverage_exact, coverage_truth, nonfinite_members,
    status, setup_s, quick; the DPS row also holds ``dps_scan``, the rows of
    :func:`choose_dps_options`). ``options`` overrides :data:`ORACLE_OPTIONS` per
    method; ``dps_options`` skips the DPS scan. ``quick`` scans two DPS candidates with
    at most 50 members.
    """
    options = {**ORACLE_OPTIONS, **(options or {})}
    start = time.perf_counter()
    problem = grf_problem(n, seed)
    oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
    setup_s = time.perf_counter() - start
    scan: list[dict] = []
    if "dps" in methods and dps_options is None:
        dps_options, scan = choose_dps_options(
            n=min(n, 32),
            members=min(members, 50 if quick else 200),
            steps=steps,
            candidates=DPS_CANDIDATES_QUICK if quick else DPS_CANDIDATES,
            seed=seed,
        )
    rows = []
    for method in methods:
        opts = dps_options if method == "dps" else options.get(method, {})
        row = _guided_row(
            "oracle", method, opts, oracle, problem, members, steps, members, seed + 2
        )
        row.update(setup_s=setup_s, quick=quick, problem=problem.describe())
        if method == "dps" and scan:
            row["dps_scan"] = scan
        rows.append(row)
    return rows


SAMPLER_NOISE = (0.1, 0.01)  # σ_y of the sampler × guidance table
SAMPLER_ORACLE_OPTIONS = {**ORACLE_OPTIONS, "dps": DPS_FALLBACK}


def grf_samplers(
    n: int = 32,
    members: int = 200,
    steps: int | None = None,
    samplers: Sequence[str] = tuple(SAMPLERS),
    methods: Sequence[str] = METHODS,
    noise: Sequence[float] = SAMPLER_NOISE,
    seed: int = 0,
    options: dict[str, dict] | None = None,
) -> list[dict]:
    """Every sampler × guidance pair the CLI can run, with the exact (oracle) denoiser, at
    each observation noise std in ``noise``: one row per (σ_y, sampler, method), with
    ``steps`` steps each (None: each sampler's CLI default, :func:`default_steps`; the NFE
    differ by sampler) and the scores
    of :func:`posterior_scores` against the closed form. ``options`` overrides
    :data:`SAMPLER_ORACLE_OPTIONS` per method (DPS: the scan's choice at σ_y = 0.1)."""
    options = {**SAMPLER_ORACLE_OPTIONS, **(options or {})}
    rows = []
    for obs_noise in noise:
        problem = grf_problem(n, seed, obs_noise)
        oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
        v3_stats = oracle_statistics(problem) if "v3" in samplers else None
        for sampler in samplers:
            for method in methods:
                row = _guided_row(
                    "oracle", method, options.get(method, {}), oracle, problem, members,
                    default_steps(sampler) if steps is None else steps, members, seed + 2,
                    sampler, None, v3_stats,
                )  # fmt: skip
                row["problem"] = problem.describe()
                log.info("σ_y %g %s %s: std ratio %s", obs_noise, sampler, method, row["std_ratio"])
                rows.append(row)
    return rows


def _sampler_cells(rows: Sequence[dict]) -> list[list[str]]:
    default = EnsembleConfig()
    cells = []
    for r in rows:
        is_default = (r["sampler"], r["method"]) == (default.sampler, default.guidance)
        ok = r["status"] == "ok" and (
            r["method"] != "mmps"
            or (_in(r["std_ratio"], EXACT_TARGETS["std_ratio"])
                and r["mean_error"] <= EXACT_TARGETS["mean_error"])
        )  # fmt: skip
        cells.append(
            [
                f"{r['obs_noise']:g}",
                f"{r['sampler']}{' (CLI default)' if is_default else ''}",
                f"{r['method']}{' ' + _options(r['options']) if r['options'] else ''}",
                str(r["nfe"]),
                _num(r["mean_error"]),
                _num(r["mc_floor"]),
                _num(r["std_ratio"]),
                _num(r["coverage_exact"]),
                r["status"] + ("" if r["method"] != "mmps" else f" {_mark(ok)}"),
            ]
        )
    return cells


def _steps_caption(rows: Sequence[dict]) -> str:
    """ "25 steps of every sampler", or the steps each sampler ran with where they differ."""
    by_sampler = {r["sampler"]: r["steps"] for r in rows}
    if len(set(by_sampler.values())) == 1:
        return f"{next(iter(by_sampler.values()))} steps of every sampler"
    return "steps " + ", ".join(f"{k} {v}" for k, v in by_sampler.items())


def format_samplers(rows: Sequence[dict]) -> str:
    """The sampler × guidance table (markdown) of :func:`grf_samplers`."""
    first = rows[0]
    header = [
        "σ_y", "sampler", "guidance", "NFE", "mean err / σ_C", "MC floor", "std ratio",
        "90 % cov. (exact draws)", "status",
    ]  # fmt: skip
    mmps = [r for r in rows if r["method"] == "mmps" and r["std_ratio"] is not None]
    worst = max(mmps, key=lambda r: abs(math.log(r["std_ratio"])), default=None)
    noise = ", ".join(f"{x:g}" for x in sorted({r["obs_noise"] for r in rows}, reverse=True))
    lines = [
        "## Downscaling: every sampler × guidance against the closed-form posterior",
        "",
        f"{first['problem'].split(', σ_y')[0]}; σ_y = {noise}; "
        f"{first['members']} members, {_steps_caption(rows)} (the CLI's "
        "default steps; NFE as each sampler spends them), the exact Gaussian denoiser (the "
        "oracle), so the rows measure the sampler and the guidance alone. Mean error in "
        "units of the prior std σ_C (MC floor: what an exact sampler with as many members "
        "shows); std ratio: the members' mean pointwise variance over the closed form's, "
        "square-rooted (1 = exact). Target for MMPS with every sampler: std ratio in [0.9, "
        "1.1], mean error ≤ 0.05 (✓/✗).",
        "",
        markdown_table(header, _sampler_cells(rows)),
    ]
    if worst is not None:
        lines += [
            "",
            f"Widest MMPS departure: {worst['sampler']} at σ_y = {worst['obs_noise']:g}, std "
            f"ratio {worst['std_ratio']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def run_samplers(
    quick: bool,
    benchmarks_file: Path | str,
    *,
    sampler_options: dict | None = None,
    command: str | None = None,
) -> list[dict]:
    """:func:`grf_samplers` (its defaults updated by ``sampler_options``; quick: 12 × 12,
    50 members), written as section ``downscale-grf-samplers`` (``-quick``)."""
    machine = machine_description()
    quick_kw = {"n": 12, "members": 50} if quick else {}
    rows = grf_samplers(**{**quick_kw, **(sampler_options or {})})
    section = _section("downscale-grf-samplers", quick)
    write_section(benchmarks_file, section, format_samplers(rows), command=command, machine=machine)
    return rows


#: the teleportation level of the GRF rows: the one measured for the UK t2m prior
#: trained on the validation split on days new to it (`hdm gaussian-stats
#: runs/uk_val_statics --heldout 2019-03-22..2019-03-24T23`), which the shipped prior
#: teleports to; for the exact Gaussian every level is exact, so the rows measure what
#: the steps below it cost
TELEPORT_LEVEL = 0.56
TELEPORT_SAMPLERS = ("heun", "dpm2m", "sde2m", "v3")


def oracle_statistics(problem: GRFProblem, fields: int = 128, levels: int = 40, seed: int = 0):
    """The v3 sampler's statistics of the oracle (prior draws as its training fields), as
    ``hdm model-stats`` makes them for a trained model."""
    gen = torch.Generator().manual_seed(seed)
    draws = problem.prior.sample(fields, problem.grid, gen, torch.float64)[:, None]
    oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
    lambdas = statistics_levels(problem.process, levels)
    return estimate_model_statistics(oracle, draws, problem.grid, lambdas, gen)


def grf_teleport(
    n: int = 32,
    members: int = 200,
    samplers: Sequence[str] = TELEPORT_SAMPLERS,
    noise: Sequence[float] = SAMPLER_NOISE,
    level: float = TELEPORT_LEVEL,
    steps: tuple[int, ...] = (EnsembleConfig().steps, 13, 9),
    seed: int = 0,
) -> list[dict]:
    """MMPS with the oracle, each sampler at each of ``steps`` (its default first) both
    from t_max and teleported to ς* = ``level`` from the exact
    Gaussian posterior (:func:`hdm.conditioning.teleport.guided_start` with the prior's
    own statistics), at each σ_y in ``noise``: does the start keep the posterior exact
    with fewer NFE? v3 uses :func:`oracle_statistics`."""
    rows = []
    for obs_noise in noise:
        problem = grf_problem(n, seed, obs_noise)
        oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
        stats = GaussianStatistics.from_covariance(problem.prior_cov, problem.grid)
        start = guided_start(stats, problem.process, level, problem.operator, problem.y)
        options = SAMPLER_ORACLE_OPTIONS["mmps"]
        v3_stats = oracle_statistics(problem) if "v3" in samplers else None
        runs = [(k, t) for k in steps for t in (None, start)]
        for sampler in samplers:
            for count, teleport in runs:
                row = _guided_row(
                    "oracle", "mmps", options, oracle, problem, members, count, members,
                    seed + 2, sampler, teleport, v3_stats,
                )  # fmt: skip
                row["problem"] = problem.describe()
                rows.append(row)
    return rows


def format_teleport(rows: Sequence[dict]) -> str:
    """The teleportation table (markdown) of :func:`grf_teleport`."""
    header = [
        "σ_y", "sampler", "steps", "teleport ς*", "NFE", "mean err / σ_C", "MC floor",
        "std ratio", "status",
    ]  # fmt: skip
    cells = []
    for r in rows:
        ok = r["status"] == "ok" and (
            _in(r["std_ratio"], EXACT_TARGETS["std_ratio"])
            and r["mean_error"] <= EXACT_TARGETS["mean_error"]
        )
        cells.append(
            [
                f"{r['obs_noise']:g}", r["sampler"], str(r["steps"]),
                "–" if r["teleport"] is None else f"{r['teleport']:g}", str(r["nfe"]),
                _num(r["mean_error"]), _num(r["mc_floor"]), _num(r["std_ratio"]),
                f"{r['status']} {_mark(ok)}",
            ]
        )  # fmt: skip
    first = rows[0]
    level = next((r["teleport"] for r in rows if r["teleport"] is not None), TELEPORT_LEVEL)
    return "\n".join(
        [
            "## Downscaling: teleportation against the closed-form posterior",
            "",
            f"{first['problem'].split(', σ_y')[0]}; MMPS with the exact Gaussian denoiser "
            f"(the oracle), {first['members']} members. Each sampler runs its default steps, "
            "then about a half and a third as many, each both from t_max and "
            "teleported (heun 25 teleported: the default of `hdm downscale` where the model "
            "has its Gaussian statistics): started "
            "from the exact Gaussian posterior pushed to ς* (`hdm.conditioning.teleport`; "
            "here the prior's own Gaussian, so the start is exact and the rows measure the "
            f"steps below ς*). ς* = {level:g} is the level `hdm gaussian-stats` "
            "measured for the UK t2m prior of the validation split on days new to it, which "
            "the shipped prior teleports to. Target: std ratio in [0.9, 1.1] and mean "
            "error ≤ 0.05 (✓/✗). v3 uses "
            "the statistics `hdm model-stats` would make for the oracle (128 prior draws, 40 "
            "levels).",
            "",
            markdown_table(header, cells),
            "",
        ]
    )


def run_teleport(quick: bool, benchmarks_file: Path | str, *, command: str | None = None):
    """:func:`grf_teleport` (quick: 12 × 12, 50 members) into section
    ``downscale-grf-teleport`` (``-quick``)."""
    machine = machine_description()
    rows = grf_teleport(**({"n": 12, "members": 50} if quick else {}))
    section = _section("downscale-grf-teleport", quick)
    write_section(benchmarks_file, section, format_teleport(rows), command=command, machine=machine)
    return rows


def _network_process(problem: GRFProblem, noise_kernel: str) -> ForwardProcess:
    """The problem's forward process with the network's diffusion noise ``noise_kernel``
    (same lengthscale) in place of the problem's Matérn-5/2 when they differ."""
    process = problem.process
    if noise_kernel == process.covariance.kernel:
        return process
    noise = SpectralCovariance(noise_kernel, process.covariance.lengthscale)
    return ForwardProcess(process.schedule, noise)


def _train_grf_network(
    problem: GRFProblem,
    data: torch.Tensor,
    process: ForwardProcess,
    optim: OptimConfig,
    n_modes: int,
    checkpoint_dir: Path | None,
):
    """Train the FNO of :func:`grf_trained` on ``data`` (its checkpoint in
    ``checkpoint_dir``, resumed from there; else a temporary folder); returns the result
    of :func:`hdm.hilbert.training.train`."""
    with torch.random.fork_rng():
        torch.manual_seed(optim.seed)
        backbone = TimeConditionedFNO(
            dim=2, channels=1, width=32, n_modes=(n_modes, n_modes), n_layers=4, time_dim=64
        )
    denoiser = PreconditionedDenoiser(backbone, process, "v")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(checkpoint_dir) if checkpoint_dir is not None else Path(tmp)
        # a finished run in checkpoint_dir is reused (resume stops at once at train_steps)
        return train(
            denoiser,
            data,
            problem.grid,
            optim,
            folder / "grf.pt",
            resume=checkpoint_dir is not None,
            progress=False,
        )


def _network_dispersion(
    model: Denoiser,
    problem: GRFProblem,
    data: torch.Tensor,
    members: int,
    steps: int,
    member_batch: int,
    seed: int,
) -> tuple[float, dict[str, float | None]]:
    """Unconditional draws of the trained network against the prior: the std ratio (an
    overdispersed prior makes every guided ensemble overdispersed, whatever the guidance)
    and, by band of :func:`band_power`, the network's power over that of as many training
    draws."""
    with torch.no_grad():
        draws, _, _ = _draw_members(model, problem.grid, members, steps, member_batch, seed + 3)
    std_ratio = float(np.sqrt(np.nanmean(draws.var(0, ddof=1))) / problem.prior_std)
    net_bands = band_power(draws, problem.grid)
    data_bands = band_power(data[:members].reshape(members, -1).double().numpy(), problem.grid)
    bands = {b: net_bands[b] / v if (v := data_bands[b]) > 0 else None for b in net_bands}
    return std_ratio, bands


def grf_trained(
    n: int = 64,
    members: int = 200,
    steps: int = 25,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    quick: bool = False,
    *,
    train_samples: int = 4000,
    train_steps: int = 200,
    batch_size: int = 16,
    lr: float = 2e-3,
    member_batch: int = 16,
    dps_options: dict | None = None,
    options: dict[str, dict] | None = None,
    checkpoint_dir: Path | None = None,
    n_modes: int = 16,
    noise_kernel: str = "matern",
) -> list[dict]:
    """The exactness rows with an FNO trained on draws of the prior in place of the oracle.

    Training data: ``train_samples`` draws of N(0, C) on the n × n grid (Cholesky, seeded
    by ``seed + 10``, a different stream from the truth). Network:
    PreconditionedDenoiser(TimeConditionedFNO(dim=2, width=32, n_modes=(n_modes, n_modes),
    n_layers=4, time_dim=64), process, "v"), initialised from ``seed`` and trained by
    :func:`train` for ``train_steps`` steps of ``batch_size`` (default 200: about 12 min
    on one CPU thread at 64 × 64, 3.5 s per step on a shared 2-core x86_64), warm-up 10 %
    of the steps, peak learning rate ``lr``, EMA weights sampled. The FNO mirror-extends
    the unit square to period 2, so ``n_modes`` = M keeps the Fourier multipliers up to
    M/4 cycles per unit: the default 16 stops at 4, half the ×4 coarse cells' Nyquist (8 at
    n = 64). ``noise_kernel``: the network's diffusion noise Q, "matern" (the problem's
    Matérn-5/2, ℓ_Q = 0.1) or "se" (same ℓ_Q, the prior's own spectral shape); the
    closed-form posterior does not depend on it. ``quick``: at most 100 steps on 400
    draws. Members are drawn in chunks of ``member_batch`` (the memory of the autograd
    graph); one MMPS NFE (cg_steps = 5) of 16 members at 64 × 64 takes ≈ 12 s there, so
    200 members take ≈ 2 h. Rows as :func:`grf_exactness` plus train_steps, train_wall_s,
    train_loss, train_samples, prior_std_ratio and prior_bands (the network's own
    unconditional dispersion, :func:`_network_dispersion`). With ``checkpoint_dir`` the
    checkpoint ``grf.pt`` is kept there; a later call resumes from it (or reuses it)."""
    if quick:
        train_samples, train_steps = min(train_samples, 400), min(train_steps, 100)
    options = {**TRAINED_OPTIONS, **(options or {})}
    problem = grf_problem(n, seed)
    data = problem.prior.sample(
        train_samples, problem.grid, torch.Generator().manual_seed(seed + 10), torch.float32
    )[:, None]
    process = _network_process(problem, noise_kernel)
    optim = OptimConfig(
        steps=train_steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(1, train_steps // 10),
        checkpoint_every=train_steps,
        seed=seed,
    )
    result = _train_grf_network(problem, data, process, optim, n_modes, checkpoint_dir)
    model = result.denoiser
    prior_std_ratio, prior_bands = _network_dispersion(
        model, problem, data, members, steps, member_batch, seed
    )
    rows = []
    for method in methods:
        opts = (dps_options or DPS_FALLBACK) if method == "dps" else options.get(method, {})
        args = (model, problem, members, steps, member_batch, seed + 2)
        row = _guided_row("trained FNO", method, opts, *args)
        row.update(
            quick=quick,
            problem=problem.describe(process.covariance),
            train_steps=result.steps,
            train_wall_s=result.wall_time_s,
            train_loss=result.final_loss,
            train_samples=train_samples,
            prior_std_ratio=prior_std_ratio,
            prior_bands=prior_bands,
            n_modes=n_modes,
            noise=process.covariance.describe(),
        )
        rows.append(row)
    return rows


# ----------------------------------------------------------------- sampling speed

SPEED_BASE_SIZE = 64  # the grid whose ×4 coarse cells are observed at every size


def _uk_architecture() -> dict:
    """The network size of the shipped UK t2m prior, from ``configs/atmos/uk_t2m.yaml``."""
    m = load_train_config(PROJECT_ROOT / "configs" / "atmos" / "uk_t2m.yaml").model
    return {
        "width": m.width,
        "n_modes": (m.n_modes, m.n_modes_2 or m.n_modes),
        "n_layers": m.n_layers,
        "time_dim": m.time_dim,
    }


def _uk_fno(process: ForwardProcess, seed: int) -> PreconditionedDenoiser:
    """Untrained denoiser of the UK t2m architecture (:func:`_uk_architecture`)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = TimeConditionedFNO(dim=2, channels=1, **_uk_architecture())
    return PreconditionedDenoiser(backbone, process, "v").eval()


def _timed(call, args: tuple, repeats: int, warmup: bool = True) -> float:
    """Median wall seconds of ``repeats`` calls ``call(*args)`` after one warm-up call
    (which pays the one-off costs: A Q Aᵀ of the guidance, FFT plans, allocations)."""
    if warmup:
        call(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _no_grad(denoiser: Denoiser):
    """The plain denoiser evaluation, as a sampler makes it (no autograd graph)."""

    def call(x, t, grid):
        with torch.no_grad():
            return denoiser(x, t, grid)

    return call


def _measure_size(
    n: int,
    problem: tuple,
    reports: list[dict],
    last: dict[str, tuple[int, float] | None],
    *,
    members: int,
    repeats: int,
    budget_s: float,
    warmup: bool,
    seed: int,
) -> dict:
    """One row of :func:`sampling_speed`: the plain and guided calls on n × n within the
    budget; ``last`` (the (n, seconds) last measured, "plain" and "guided") is updated;
    ``reports`` is where the guidance's callback puts its diagnostics."""
    process, denoiser, guided, t = problem
    row: dict = {"n": n, "points": n * n, "members": members, "skipped": None}
    row["guided_skipped"] = None
    plain_call = _predicted_call(last["plain"], n)
    plain_repeats = _repeats_within(plain_call, budget_s, repeats, warmup)
    if plain_repeats == 0:
        row["skipped"] = f"predicted {plain_call:.0f} s per plain call, budget {budget_s:.0f} s"
        return row
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (n, n))
    x = process.prior_sample(members, 1, grid, torch.Generator().manual_seed(seed + 2))
    times = torch.full((members,), float(t), dtype=torch.float64)
    args = (x, times, grid)
    row["chunk"] = denoiser.backbone.chunk_size(x, grid)
    start = time.perf_counter()
    row["plain_ms"] = 1e3 * _timed(_no_grad(denoiser), args, plain_repeats, warmup)
    last["plain"] = (n, row["plain_ms"] / 1e3)
    guided_call = _predicted_call(last["guided"], n)
    left = budget_s - (time.perf_counter() - start)
    guided_repeats = _repeats_within(guided_call, left, repeats, warmup)
    if guided_repeats == 0:
        row["guided_skipped"] = f"predicted {guided_call:.0f} s per guided call"
    else:
        reports.clear()
        row["guided_ms"] = 1e3 * _timed(guided, args, guided_repeats, warmup)
        row["cg_iterations"] = max((r["cg_iterations"] for r in reports), default=0)
        last["guided"] = (n, row["guided_ms"] / 1e3)
    row["repeats"] = (plain_repeats, guided_repeats)
    row["total_s"] = time.perf_counter() - start
    return row


def sampling_speed(
    sizes: Sequence[int] = (64, 128, 256, 512),
    members: int = 16,
    quick: bool = False,
    *,
    repeats: int = 3,
    budget_s: float = 60.0,
    seed: int = 0,
    cpu_chunk_bytes: int | None = None,
) -> list[dict]:
    """Wall time of one NFE (a batched call for ``members`` fields) on n × n grids.

    Per size: ms per plain NFE (the denoiser under no_grad) and per guided NFE (MMPS,
    cg_steps = 5, cg_tol = 0 so every call runs the same number of CG iterations unless
    the curvature test stops it; the iterations run, reported by the guidance's callback,
    are given), each the median of up to ``repeats`` calls after a warm-up, at ς = σ/α = 1.

    Budget: a call's time is predicted from the last size measured × the N log N ratio
    (N = n²). A size whose plain calls would not fit in ``budget_s`` is skipped; its
    guided calls are skipped when they would not fit in what is left; fewer repeats are
    made when only some fit. Skips are stated in the rows (``skipped``,
    ``guided_skipped``). ``quick``: sizes (32, 64), 2 members, 1 call and no warm-up
    (a smoke test: its times include the one-off costs). ``cpu_chunk_bytes``: the
    network's chunk budget (:class:`TimeConditionedFNO`; None keeps its default, 0 runs
    the batch whole). Other row keys: n, points, members, chunk (members per chunk),
    plain_ms, guided_ms, cg_iterations, total_s, and the ratios to the 64 × 64 row (or
    the first measured one): plain_ratio, guided_ratio, nlogn_ratio.
    """
    if quick:
        sizes, members, repeats = (32, 64), 2, 1
    reports: list[dict] = []
    problem = speed_problem(seed, callback=reports.append)
    if cpu_chunk_bytes is not None:
        problem[1].backbone.cpu_chunk_bytes = cpu_chunk_bytes
    last: dict[str, tuple[int, float] | None] = {"plain": None, "guided": None}
    architecture = _uk_architecture()
    rows = []
    for n in sizes:
        row = _measure_size(
            n,
            problem,
            reports,
            last,
            members=members,
            repeats=repeats,
            budget_s=budget_s,
            warmup=not quick,
            seed=seed,
        )
        rows.append({**row, "architecture": architecture, "quick": quick})
    measured = [r for r in rows if r["skipped"] is None]
    reference = next((r for r in measured if r["n"] == SPEED_BASE_SIZE), measured[0])
    for r in measured:
        r["reference_n"] = reference["n"]
        r["plain_ratio"] = r["plain_ms"] / reference["plain_ms"]
        r["nlogn_ratio"] = _nlogn(r["n"]) / _nlogn(reference["n"])
        if "guided_ms" in r and "guided_ms" in reference:
            r["guided_ratio"] = r["guided_ms"] / reference["guided_ms"]
    return rows


def speed_problem(seed: int = 0, callback: Callable[[dict], None] | None = None):
    """What :func:`sampling_speed` times: (process, the untrained UK-architecture
    denoiser, MMPS guidance of it with 5 CG steps and cg_tol 0, the diffusion time t at
    ς = 1). The observations are the 16 × 16 coarse cells of a 64 × 64 grid on [0, 1]²
    and 20 stations, defined physically, so the guidance takes fields on any grid.
    ``callback`` receives the guidance's diagnostics (a dict per guided chunk, with
    ``cg_iterations``; :mod:`hdm.conditioning.guidance`)."""
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", NOISE_LENGTHSCALE))
    denoiser = _uk_fno(process, seed)
    base = RectGrid((0.0, 1.0), (0.0, 1.0), (SPEED_BASE_SIZE, SPEED_BASE_SIZE))
    stations = tuple(map(tuple, np.random.default_rng(seed).uniform(0.05, 0.95, (N_STATIONS, 2))))
    operator = Composite(
        (
            CoarseGrain.from_factor(base, COARSE_FACTOR, OBS_NOISE_STD),
            PointSample(stations, OBS_NOISE_STD),
        )
    )
    truth = process.prior_sample(1, 1, base, torch.Generator().manual_seed(seed))
    y = operator.simulate(truth, base, torch.Generator().manual_seed(seed + 1))[0]
    guided = make_guidance("mmps", denoiser, operator, y, callback=callback, cg_steps=5, cg_tol=0.0)
    t = process.schedule.t_from_varsigma(torch.tensor(1.0, dtype=torch.float64))
    return process, denoiser, guided, t


def _predicted_call(last: tuple[int, float] | None, n: int) -> float | None:
    """Seconds per call on n × n from the last measured (size, seconds), N log N scaling."""
    if last is None:
        return None
    return last[1] * _nlogn(n) / _nlogn(last[0])


def _repeats_within(call_s: float | None, budget_s: float, repeats: int, warmup: bool) -> int:
    """Timed calls (≤ ``repeats``) that fit in ``budget_s`` after the warm-up; 0: none."""
    if call_s is None:
        return repeats
    fits = math.floor(budget_s / max(call_s, 1e-9)) - int(warmup)
    return max(0, min(repeats, fits))


def _nlogn(n: int) -> float:
    """N log N for N = n² grid points."""
    return n * n * math.log(n * n)


# ----------------------------------------------------------------- markdown tables


def _num(x, fmt: str = ".3f") -> str:
    """A number for a table: '–' for None; scientific notation when it is huge."""
    if x is None:
        return "–"
    if not math.isfinite(x) or abs(x) >= 1e4:
        return f"{x:.2e}"
    return format(x, fmt)


def _options(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"


def _in(x, bounds: tuple[float, float]) -> bool:
    return x is not None and bounds[0] <= x <= bounds[1]


def meets_target(row: dict) -> bool:
    """The oracle targets (:data:`EXACT_TARGETS`) for an oracle row, the trained ones
    (:data:`TRAINED_TARGETS`) for a trained row."""
    if row["status"] != "ok":
        return False
    if row["model"] == "oracle":
        t = EXACT_TARGETS
        return (
            row["mean_error"] <= t["mean_error"]
            and _in(row["std_ratio"], t["std_ratio"])
            and _in(row["coverage_exact"], t["coverage"])
        )
    t = TRAINED_TARGETS
    return row["mean_error"] <= t["mean_error"] and _in(row["std_ratio"], t["std_ratio"])


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _heading(title: str, quick: bool) -> str:
    label = " (QUICK smoke run: small sizes, not results)" if quick else ""
    return f"## {title}{label}\n"


EXACTNESS_HEADER = [
    "model",
    "method",
    "options",
    "members",
    "NFE",
    "wall s",
    "mean err / σ_C (MC floor)",
    "std ratio",
    "coverage 90 % (exact draws)",
    "coverage 90 % (truth)",
    "status",
    "target",
]
EXACTNESS_TITLE = "Downscaling: GRF exactness check (SCIENCE.md §4)"


def _bands(ratios: dict[str, float | None]) -> str:
    return ", ".join(f"{name} k_c {_num(value)}" for name, value in ratios.items())


def best_trained(rows: Sequence[dict]) -> dict | None:
    """The trained row with the smallest mean error + |log std ratio|; None when there
    is no trained row or none produced a stable ensemble."""
    trained = [r for r in rows if r["model"] != "oracle"]
    best = min(trained, key=_badness) if trained else None
    return best if best is not None and math.isfinite(_badness(best)) else None


def _exactness_cells(rows: Sequence[dict], best: dict | None) -> list[list[str]]:
    return [
        [
            r["model"],
            r["method"] + (" (best)" if r is best else ""),
            _options(r["options"]),
            str(r["members"]),
            str(r["nfe"]),
            f"{r['wall_s']:.1f}",
            f"{_num(r['mean_error'])} ({_num(r['mc_floor'])})",
            _num(r["std_ratio"]),
            _num(r["coverage_exact"]),
            _num(r["coverage_truth"]),
            r["status"],
            _mark(meets_target(r)),
        ]
        for r in rows
    ]


def _exactness_setup(first: dict) -> str:
    """The paragraph that says what the exactness rows measure and their targets."""
    return (
        f"{first['problem']}. Heun with {first['steps']} steps; one truth, its "
        f"observations and the closed-form posterior shared by every row. Mean error: "
        f"RMS over the grid of (member mean − posterior mean) in prior stds σ_C, with "
        f"the error of an exact sampler with as many members (MC floor); std ratio: "
        f"sqrt(mean member variance / mean posterior variance); coverage: fraction of "
        f"grid points inside the members' 5–95 % interval, for {EXACT_DRAWS} exact "
        f"posterior draws (0.90 when calibrated) and for the truth. Targets: oracle "
        f"mean ≤ {EXACT_TARGETS['mean_error']}, std ratio in {EXACT_TARGETS['std_ratio']}, "
        f"coverage in {EXACT_TARGETS['coverage']} (only MMPS is expected to meet them); "
        f"trained mean ≤ {TRAINED_TARGETS['mean_error']}, std ratio in "
        f"{TRAINED_TARGETS['std_ratio']}.\n"
    )


def _best_notes(best: dict) -> list[str]:
    """What the best trained method, its network and its spread say."""
    notes = [
        f"Trained, best method ({best['method']}, by mean error + |log std ratio|) meets "
        f"the trained targets: {_mark(meets_target(best))}. Training: {best['train_steps']} "
        f"steps of batch 16 on {best['train_samples']} prior draws, "
        f"{best['train_wall_s'] / 60:.1f} min, final loss {best['train_loss']:.4f}."
    ]
    if best.get("n_modes") is not None:
        notes.append(
            f"Network: TimeConditionedFNO, width 32, {best['n_modes']} × "
            f"{best['n_modes']} Fourier modes (up to {best['n_modes'] / 4:g} cycles per "
            f"unit on the mirror-extended square), diffusion noise Q = {best['noise']}."
        )
    if best.get("prior_std_ratio") is not None:
        notes.append(
            f"Unconditional draws of the trained network ({best['members']}, Heun "
            f"{best['steps']} steps): std ratio to the prior {best['prior_std_ratio']:.3f} "
            "(1 for a network that has learned N(0, C))."
        )
    if best.get("prior_bands") is not None:
        notes.append(
            f"Power of those draws ÷ power of {best['members']} prior draws, by band of "
            f"the coarse cells' Nyquist k_c: {_bands(best['prior_bands'])} (the prior has "
            "almost no power above k_c, so there any power is the network's)."
        )
    if best.get("spread_by_band") is not None:
        notes.append(
            "Where the best method's spread is: member-deviation power ÷ exact "
            f"posterior-deviation power by band: {_bands(best['spread_by_band'])} "
            "(1 in every band for an exact sampler)."
        )
    if best.get("coverage_truth") is not None and abs(best["coverage_truth"] - 0.9) > 0.05:
        notes.append(
            f"The best method covers the truth at {best['coverage_truth']:.2f} of the "
            "points for a nominal 0.90: its spread is not where the posterior's is."
        )
    return notes


def _exactness_notes(rows: Sequence[dict], best: dict | None) -> str:
    notes = []
    oracle_mmps = [r for r in rows if r["model"] == "oracle" and r["method"] == "mmps"]
    if oracle_mmps:
        notes.append(
            f"Oracle MMPS meets the exactness targets: {_mark(meets_target(oracle_mmps[0]))}."
        )
    if best is None and any(r["model"] != "oracle" for r in rows):
        notes.append("Trained: no method produced a stable ensemble (targets ✗).")
    if best is not None:
        notes += _best_notes(best)
    setup = next((r["setup_s"] for r in rows if "setup_s" in r), None)
    if setup is not None:
        notes.append(f"Oracle set-up (dense C, generalised eigendecomposition): {setup:.1f} s.")
    return "\n" + "\n".join(notes)


def _dps_scan(rows: Sequence[dict]) -> str | None:
    """The DPS settings tried, as a table under its sentence; None without a scan."""
    scan = next((r["dps_scan"] for r in rows if r.get("dps_scan")), None)
    if not scan:
        return None
    chosen = next(r["options"] for r in rows if r["method"] == "dps")
    cells = [
        [
            _options(s["options"]) + (" (chosen)" if s["options"] == chosen else ""),
            _num(s["mean_error"]),
            _num(s["std_ratio"]),
            s["status"],
        ]
        for s in scan
    ]
    return (
        f"\nDPS settings tried (oracle, {scan[0]['n']}×{scan[0]['n']}, "
        f"{scan[0]['members']} members; chosen by mean error + |log std ratio| among the "
        f"stable ones):\n\n"
        + markdown_table(["DPS options", "mean err / σ_C", "std ratio", "status"], cells)
    )


def format_exactness(rows: Sequence[dict], title: str = EXACTNESS_TITLE) -> str:
    """The GRF exactness section under the heading ``title``: the setup, the table
    (oracle and trained rows), the verdicts against :data:`EXACT_TARGETS` (oracle MMPS)
    and :data:`TRAINED_TARGETS` (best trained method) and the DPS scan. The command,
    machine and date are added by :func:`benchmarks.report.write_section`."""
    best = best_trained(rows)
    parts = [_heading(title, any(r.get("quick") for r in rows))]
    if rows:
        parts.append(_exactness_setup(rows[0]))
    parts.append(markdown_table(EXACTNESS_HEADER, _exactness_cells(rows, best)))
    parts.append(_exactness_notes(rows, best))
    scan = _dps_scan(rows)
    if scan:
        parts.append(scan)
    return "\n".join(parts) + "\n"


SPEED_HEADER = [
    "grid",
    "members",
    "per chunk",
    "ms / plain NFE",
    "ms / guided NFE (MMPS)",
    "guided / plain",
    "plain time ÷ ref",
    "N log N ÷ ref",
    "≤ N log N",
    "note",
]
NLOGN_SLACK = 1.25  # a size passes when its plain time ratio is ≤ 1.25 × the N log N ratio


def _scales_within(row: dict) -> bool:
    """The plain time grows from the smaller to the larger of (row, reference) grid no
    faster than N log N × :data:`NLOGN_SLACK`."""
    growth, model = row["plain_ratio"], row["nlogn_ratio"]
    if row["n"] < row["reference_n"]:
        growth, model = 1.0 / growth, 1.0 / model
    return growth <= NLOGN_SLACK * model


def _speed_cells(r: dict) -> list[str]:
    grid = f"{r['n']}×{r['n']}"
    if r["skipped"]:
        return [
            grid,
            str(r["members"]),
            *["–"] * (len(SPEED_HEADER) - 3),
            f"skipped: {r['skipped']}",
        ]
    guided = "guided_ms" in r
    if guided:
        note = f"{r['cg_iterations']} CG iterations; "
    else:
        note = f"guided skipped: {r['guided_skipped']}; "
    note += f"{r['total_s']:.1f} s in all, {r['repeats'][0]}/{r['repeats'][1]} timed calls"
    return [
        grid,
        str(r["members"]),
        str(r.get("chunk", r["members"])),
        f"{r['plain_ms']:.1f}",
        f"{r['guided_ms']:.1f}" if guided else "–",
        f"{r['guided_ms'] / r['plain_ms']:.1f}" if guided else "–",
        f"{r['plain_ratio']:.2f}",
        f"{r['nlogn_ratio']:.2f}",
        "ref" if r["n"] == r["reference_n"] else _mark(_scales_within(r)),
        note,
    ]


def format_speed(rows: Sequence[dict]) -> str:
    """The sampling-speed section (see :func:`sampling_speed`); the command, machine and
    date are added by :func:`benchmarks.report.write_section`."""
    quick = any(r.get("quick") for r in rows)
    reference = next((r.get("reference_n") for r in rows if r.get("reference_n")), None)
    a = (rows[0].get("architecture") if rows else None) or _uk_architecture()
    parts = [
        _heading("Downscaling: sampling speed", quick),
        f"Untrained TimeConditionedFNO of the UK t2m architecture (width {a['width']}, "
        f"{a['n_modes'][0]} × {a['n_modes'][1]} modes, {a['n_layers']} layers, time "
        f"embedding {a['time_dim']}) in a v-preconditioned denoiser, one batched call per "
        "NFE at ς = 1 (run in chunks of 'per chunk' members, the network's CPU cache "
        "budget), median of the timed calls after a warm-up. Guided: MMPS with 5 CG "
        "steps, 20 stations + the 16 × 16 coarse cells of the 64 × 64 grid (the same "
        "physical operator at every size). Ratios are to the "
        f"{reference}×{reference} grid; N log N (N = n²) is the FFT cost model, ✓ where the "
        f"plain time grows between this grid and the reference no faster than it "
        f"({NLOGN_SLACK:g} × slack). A size, or its "
        "guided calls, is skipped when its predicted time (N log N from the last size) "
        "exceeds the budget per size.\n",
        markdown_table(SPEED_HEADER, [_speed_cells(r) for r in rows]),
    ]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------- the downscale benchmark

#: the oracle rows of section downscale-grf64: 64 × 64, 200 members, DPS as the 32 × 32
#: scan chose, MMPS with 10 CG steps
GRF64_OPTIONS = {
    "n": 64,
    "members": 200,
    "dps_options": {"normalise": True, "scale": 3.0},
    "options": {"mmps": {"cg_steps": 10}},
}
GRF64_TITLE = "Downscaling: GRF exactness check at 64 × 64 (oracle) (SCIENCE.md §4)"


def _section(name: str, quick: bool) -> str:
    """A section id; ``-quick`` appended in quick mode, so a smoke run never replaces
    results."""
    return name + ("-quick" if quick else "")


def run_grf(
    quick: bool,
    benchmarks_file: Path | str,
    *,
    exactness_options: dict | None = None,
    trained_options: dict | None = None,
    command: str | None = None,
) -> list[dict]:
    """The oracle and trained exactness rows, written as section ``downscale-grf``
    (``downscale-grf-quick``) of ``benchmarks_file``.

    Full: :func:`grf_exactness` and :func:`grf_trained` with their defaults, updated by
    ``exactness_options`` and ``trained_options`` (e.g. ``{"members": 64}`` to shorten the
    run); the trained rows use the DPS setting the oracle scan chose. Quick: the oracle on
    16 × 16 (200 members), the trained FNO on 16 × 16 (100 training steps on 400 draws, 32
    members). Heun with 25 steps throughout (with 10 steps the oracle MMPS spread is 1.23
    × the exact one: the sampler's discretisation error, not the guidance's; 15 steps:
    1.09, 25: 1.03, 50: 1.01 on 12 × 12). ``command``: the command line to record
    (default: this process's). Returns the rows."""
    machine = machine_description()
    exact_kw = {"n": 16, "members": 200, "quick": True} if quick else {}
    trained_kw = {"n": 16, "members": 32, "quick": True} if quick else {}
    exact = grf_exactness(**{**exact_kw, **(exactness_options or {})})
    dps = next((r["options"] for r in exact if r["method"] == "dps"), None)
    trained = grf_trained(**{"dps_options": dps, **trained_kw, **(trained_options or {})})
    body = format_exactness(exact + trained)
    section = _section("downscale-grf", quick)
    write_section(benchmarks_file, section, body, command=command, machine=machine)
    return exact + trained


def run_grf64(
    quick: bool,
    benchmarks_file: Path | str,
    *,
    exactness_options: dict | None = None,
    command: str | None = None,
) -> list[dict]:
    """The oracle rows alone with :data:`GRF64_OPTIONS` (updated by ``exactness_options``;
    quick: 16 × 16, 50 members), written as section ``downscale-grf64``
    (``downscale-grf64-quick``). Returns the rows."""
    machine = machine_description()
    quick_kw = {"n": 16, "members": 50, "quick": True} if quick else {}
    rows = grf_exactness(**{**GRF64_OPTIONS, **quick_kw, **(exactness_options or {})})
    title = GRF64_TITLE if not quick else EXACTNESS_TITLE
    body = format_exactness(rows, title=title)
    section = _section("downscale-grf64", quick)
    write_section(benchmarks_file, section, body, command=command, machine=machine)
    return rows


def run_speed(
    quick: bool,
    benchmarks_file: Path | str,
    *,
    speed_options: dict | None = None,
    command: str | None = None,
) -> list[dict]:
    """:func:`sampling_speed` (its defaults updated by ``speed_options``), written as
    section ``downscale-speed`` (``downscale-speed-quick``). Returns the rows."""
    machine = machine_description()
    rows = sampling_speed(**{"quick": quick, **(speed_options or {})})
    section = _section("downscale-speed", quick)
    write_section(benchmarks_file, section, format_speed(rows), command=command, machine=machine)
    return rows


#: the parts of ``python -m benchmarks downscale`` in the order they run
PARTS = ("grf", "samplers", "teleport", "grf64", "speed", "q", "sampler", "uk")
DEFAULT_PARTS = "grf,samplers,speed,uk"


def parse_parts(text: str) -> list[str]:
    """The parts named in ``text`` (comma-separated), in the order of :data:`PARTS`."""
    given = {p.strip() for p in text.split(",") if p.strip()}
    unknown = sorted(given - set(PARTS))
    if unknown or not given:
        raise argparse.ArgumentTypeError(
            f"unknown --parts {unknown or text!r}; choose from {', '.join(PARTS)}"
        )
    return [p for p in PARTS if p in given]


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"want a JSON object of keyword arguments: {text!r}")
    return value


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    p = parser("downscale", __doc__, quick="smoke sizes (minutes), '-quick' sections for GRF")
    p.add_argument(
        "--parts",
        type=parse_parts,
        default=parse_parts(DEFAULT_PARTS),
        help=f"comma-separated subset of {', '.join(PARTS)} (default {DEFAULT_PARTS})",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=PROJECT_ROOT / "runs" / "benchmark-downscale",
        help="work folder of the UK stores (default runs/benchmark-downscale)",
    )
    for name, what in (
        ("exactness", "grf_exactness (parts grf, grf64)"),
        ("trained", "grf_trained (part grf)"),
        ("speed", "sampling_speed (part speed)"),
        ("sampler", "grf_samplers (part samplers)"),
    ):
        p.add_argument(
            f"--{name}-options",
            type=_json_object,
            default=None,
            metavar="JSON",
            help=f"keyword arguments of {what}, a JSON object",
        )
    p.add_argument(
        "--priors",
        default="",
        metavar="DIR,...",
        help="part q: more trained UK priors checked after the shipped one",
    )
    return p.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> dict:
    """``python -m benchmarks downscale [--quick] [--parts ...] [...]`` (module doc)."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    command = command_line("downscale", argv)
    out, file, quick = {}, args.benchmarks_file, args.quick
    for part in args.parts:
        log.info("downscale benchmark: part %s", part)
        if part == "grf":
            out[part] = run_grf(
                quick,
                file,
                exactness_options=args.exactness_options,
                trained_options=args.trained_options,
                command=command,
            )
        elif part == "grf64":
            out[part] = run_grf64(
                quick, file, exactness_options=args.exactness_options, command=command
            )
        elif part == "samplers":
            out[part] = run_samplers(
                quick, file, sampler_options=args.sampler_options, command=command
            )
        elif part == "teleport":
            out[part] = run_teleport(quick, file, command=command)
        elif part == "speed":
            out[part] = run_speed(quick, file, speed_options=args.speed_options, command=command)
        else:
            out[part] = _run_uk_part(part, args, command)
    print(f"benchmark tables written to {file}")
    return out


def _run_uk_part(part: str, args: argparse.Namespace, command: str):
    """Parts q, sampler and uk, from :mod:`benchmarks.uk`."""
    from benchmarks import uk

    if part == "q":
        priors = [p.strip() for p in args.priors.split(",") if p.strip()]
        return uk.run_noise_choice(args.quick, args.benchmarks_file, command, priors)
    if part == "sampler":
        return uk.run_sampler_choice(args.quick, args.benchmarks_file, command)
    return uk.run_uk_benchmark(args.quick, args.benchmarks_file, args.work, command)
