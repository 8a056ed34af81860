"""Where the spread of a downscaled ensemble on the sphere lives, degree by degree.

The solver keeps degrees ℓ < (nlat + 1)/3 of height, vorticity and divergence (ℓ < 11 on
33 × 64): h holds nothing above, u and v (vector components, not band-limited as
scalars) a little. A calibrated ensemble spreads like its error, degree by degree. For each
prior, the inputs of ``sphere_downscale`` (×4 cells + h, u, v at 200 IGRA2 stations, 16
members, the ``hdm.downscale`` defaults) on the first state kept of the first
``--states`` test trajectories; per variable, the share of the members' deviation
variance (from their mean) at ℓ ≥ 11 beside the share of the ensemble mean's error
(truth − mean) there, and the spread–skill ratio of that band alone.
Section ``sphere-spread-degrees``.

    python -m benchmarks sphere_spread_degrees [--states 2] [--prior NAME=PATH ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    name_and_path,
    parser,
    write_section,
)
from benchmarks.studies.sphere_downscale import (
    STEPS,
    VARIABLES,
    ensemble,
    prior_stations,
    solver_degrees,
    test_states,
)
from benchmarks.studies.sphere_prior import STORE, angular_spectrum
from hdm.data.coarsen import coarse_grain_sphere
from hdm.data.schema import TIME
from hdm.domains.stations import igra2_worldwide
from hdm.downscaling.prior import load_prior
from hdm.hilbert.grids import GlobalGrid

SECTION = "sphere-spread-degrees"
PRIORS = ("shallow_water", "shallow_water_planar")


def degree_power(fields: np.ndarray, grid: GlobalGrid) -> np.ndarray:
    """Mean power per degree (Σ_m |a_ℓm|²) of (N, nlat, nlon) fields."""
    degrees = grid.shape[0]
    return angular_spectrum(fields, grid, degrees) * (2 * np.arange(degrees) + 1)


def band_power(fields: np.ndarray, grid: GlobalGrid, first: int) -> float:
    """Mean power of (N, nlat, nlon) fields at degrees ℓ ≥ ``first``."""
    return float(degree_power(fields, grid)[first:].sum())


def variance_share(fields: np.ndarray, grid: GlobalGrid, first: int) -> float:
    """Share of the power of (N, nlat, nlon) fields at degrees ℓ ≥ ``first``."""
    power = degree_power(fields, grid)
    return float(power[first:].sum() / power.sum())


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_spread_degrees", __doc__)
    p.add_argument("--store", type=Path, default=STORE)
    p.add_argument("--states", type=int, default=2)
    p.add_argument(
        "--prior",
        nargs="+",
        default=[(n, PROJECT_ROOT / "data" / "checkpoints" / n) for n in PRIORS],
        type=name_and_path,
        metavar="NAME=PATH",
        help="priors to score (default: the shipped spherical and planar ones)",
    )
    args = p.parse_args(list(argv))
    priors = dict(args.prior)
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    truth = test_states(args.store, "test", STEPS[:1]).isel({TIME: slice(0, args.states)})
    grid = GlobalGrid.make(*truth["h"].shape[1:])
    band = solver_degrees(grid)
    points, ids = igra2_worldwide(200)
    rows = []
    for name, path in priors.items():
        prior = load_prior(path)
        obs = prior_stations(prior, truth, grid, points, ids)
        out, _ = ensemble(prior, truth, coarse_grain_sphere(truth, 4), obs, 16, None)
        for v in VARIABLES:
            members = out[v].values  # (member, time, lat, lon)
            mean = members.mean(0)
            deviations = (members - mean).reshape(-1, *grid.shape)
            error = truth[v].values - mean
            unbiased = len(members) / (len(members) - 1)
            spread_hi = band_power(deviations, grid, band) * unbiased
            spread_lo = (band_power(deviations, grid, 0) * unbiased) - spread_hi
            error_lo = band_power(error, grid, 0) - band_power(error, grid, band)
            rows.append(
                [
                    name,
                    v,
                    f"{100 * variance_share(deviations, grid, band):.0f} %",
                    f"{100 * variance_share(error, grid, band):.0f} %",
                    f"{np.sqrt(spread_hi / band_power(error, grid, band)):.2f}",
                    f"{np.sqrt(spread_lo / error_lo):.2f}",
                ]
            )
    header = [
        "prior",
        "variable",
        f"spread at ℓ ≥ {band}",
        f"error at ℓ ≥ {band}",
        f"spread–skill at ℓ ≥ {band}",
        f"spread–skill at ℓ < {band}",
    ]
    body = f"""## Where the spread lives on the sphere: degrees the truth does not hold

{truth.sizes[TIME]} held-out shallow-water states, the inputs of sphere-downscale, 16 members
per prior (`hdm.downscale` defaults). Share of the members' deviation variance at
degrees ℓ ≥ {band} (the solver keeps ℓ < {band} of h, vorticity and divergence), beside the
share of the ensemble mean's error there, and the spread–skill ratio of each band
(√(band spread variance / band error power)).

{markdown_table(header, rows)}
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_spread_degrees", argv),
        machine=machine,
    )
    print(body)
    return rows
