"""Exactness on the sphere: guided sampling with the oracle denoiser against the closed form.

A Gaussian random field on the whole sphere, prior N(0, C) with C the spherical Matérn
(ν = 2.5, ℓ_c = 20°) of :class:`~hdm.hilbert.covariance.SphericalCovariance`, on the
equiangular global grid 33 × 64 (both poles); noise Q the spherical Matérn (ν = 1.5,
ℓ_c = 10°). Observations: ×4 coarse cells (22.5° × 22.5°, area means on the sphere,
:class:`~hdm.conditioning.observations.CoarseGrain`) and 200 stations at real IGRA2
coordinates worldwide (every fifth of the stations active in 2020 in the shipped list,
sorted by id: both polar regions and the date line included; bilinear in latitude and
longitude), noise σ_y = 0.1. The posterior is Gaussian and known in closed form
(:func:`hdm.conditioning.guidance.gaussian_posterior`); the denoiser is the exact one
(:class:`~hdm.hilbert.denoisers.GaussianDenoiser`), so every error is the guidance's and
the sampler's. Scores as in the planar GRF table (benchmarks/downscale.py): mean error /
prior std, std ratio, 90 % coverage of exact posterior draws. Targets: mean error ≤
0.05, std ratio in [0.9, 1.1], coverage in [0.85, 0.95]. Section ``sphere-exactness``.

    python -m benchmarks sphere_exactness [--members 200]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from benchmarks.downscale import (
    EXACT_TARGETS,
    ORACLE_OPTIONS,
    _draw_members,
    attach_closed_form,
    posterior_scores,
)
from benchmarks.report import (
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from hdm.conditioning.guidance import make_guidance
from hdm.conditioning.observations import CoarseGrain, Composite, PointSample
from hdm.domains.stations import igra2_worldwide
from hdm.hilbert.covariance import SphericalCovariance
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.grids import GlobalGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.schedules import CosineVP

SECTION = "sphere-exactness"
OBS_NOISE = 0.1


class SphereGRFProblem:
    """The problem of the module docstring with its closed-form answer; attributes as
    :class:`benchmarks.downscale.GRFProblem` (what :func:`posterior_scores` reads)."""

    def __init__(self, seed: int = 0, stations: int = 200) -> None:
        self.n = 33
        self.obs_noise = OBS_NOISE
        self.grid = GlobalGrid.make(33, 64)
        self.prior = SphericalCovariance("matern", 20.0, 2.5)
        self.prior_cov = self.prior.dense(self.grid)
        self.process = ForwardProcess(CosineVP(), SphericalCovariance("matern", 10.0, 1.5))
        lat_edges = np.linspace(-90.0, 90.0, 9)
        half = 180.0 / self.grid.shape[1]
        lon_edges = np.linspace(-180.0, 180.0, 17) - half  # cells of 4 whole grid columns
        points, ids = igra2_worldwide(stations)
        self.station_points = points
        self.operator = Composite(
            (
                CoarseGrain((tuple(lat_edges), tuple(lon_edges)), OBS_NOISE),
                PointSample(points, OBS_NOISE, ids),
            )
        )
        attach_closed_form(self, seed)

    def polar(self) -> np.ndarray:
        """Mask (P,) of the points poleward of 60°."""
        lat = self.grid.coords()[0]
        return np.repeat(np.abs(lat) > 60, self.grid.shape[1])


def run(members: int, steps: int, seed: int = 0) -> list[dict]:
    problem = SphereGRFProblem(seed)
    oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov)
    rows = []
    for method in ("mmps", "sda"):
        guided = make_guidance(
            method, oracle, problem.operator, problem.y, **ORACLE_OPTIONS[method]
        )
        t0 = time.perf_counter()
        samples, nfe, _ = _draw_members(
            guided, problem.grid, members, steps, members, seed + 2, "heun"
        )
        wall = time.perf_counter() - t0
        scores = posterior_scores(samples, problem)
        polar = problem.polar()
        with np.errstate(invalid="ignore"):
            polar_ratio = float(
                np.sqrt(
                    np.mean(samples[:, polar].var(0, ddof=1)) / np.mean(problem.post_var[polar])
                )
            )
        rows.append(
            {"method": method, "nfe": nfe, "wall_s": wall, "polar_std_ratio": polar_ratio, **scores}
        )
    return rows


def _within(value, target) -> str:
    if value is None:
        return "—"
    lo, hi = target if isinstance(target, tuple) else (0.0, target)
    return "yes" if lo <= value <= hi else "no"


def main(argv: Sequence[str] = ()) -> list[dict]:
    p = parser("sphere_exactness", __doc__)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    rows = run(args.members, args.steps)
    header = [
        "guidance", "NFE", "s", "mean error / prior std", "MC floor", "std ratio",
        "std ratio poleward of 60°", "90 % coverage (exact draws)", "within targets",
    ]  # fmt: skip
    table = [
        [
            r["method"],
            str(r["nfe"]),
            f"{r['wall_s']:.1f}",
            f"{r['mean_error']:.4f}",
            f"{r['mc_floor']:.4f}",
            f"{r['std_ratio']:.3f}",
            f"{r['polar_std_ratio']:.3f}",
            f"{r['coverage_exact']:.3f}",
            "/".join(
                _within(r[k], EXACT_TARGETS[t])
                for k, t in (
                    ("mean_error", "mean_error"),
                    ("std_ratio", "std_ratio"),
                    ("coverage_exact", "coverage"),
                )
            ),
        ]
        for r in rows
    ]
    body = f"""## Exactness on the sphere: the oracle denoiser against the closed-form posterior

Global equiangular grid 33 × 64 (poles included); prior N(0, C), C = spherical
Matérn(ν = 2.5, ℓ = 20°); Q = spherical Matérn(ν = 1.5, ℓ = 10°); 128 coarse cells of
22.5° × 22.5° (×4, area means on the sphere) and 200 stations at IGRA2 coordinates
worldwide, σ_y = {OBS_NOISE}; Heun {args.steps} steps, {args.members} members, guidance
options as the planar oracle table. Targets (as the planar GRF table): mean error ≤
{EXACT_TARGETS["mean_error"]}, std ratio in {list(EXACT_TARGETS["std_ratio"])}, 90 %
coverage in {list(EXACT_TARGETS["coverage"])} (yes/no in that order).

{markdown_table(header, table)}
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_exactness", argv),
        machine=machine,
    )
    for row in table:
        print(" | ".join(row))
    return rows
