"""Whether guided sampling stays finite and sane with a spherical prior: members that run
away, by prior and number of sampler steps.

Inputs of ``sphere_downscale`` on validation states (the first state kept of the first
``--states`` validation trajectories; never the test ones): ×4 cells (22.5°) and h, u, v
at 200 IGRA2 stations with the default noise, 8 members, MMPS with EDM's Heun at each of
``--steps``, drawn by ``hdm.downscale``. A member "runs
away" where any value of any variable lies more than 10 of the truth's standard
deviations from the truth; the RMSE (area-weighted, per variable) is the median over the
members that did not. Section ``sphere-guided-stability``.

    python -m benchmarks sphere_guided_stability [--prior NAME=PATH ...] [--steps 25 50]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from benchmarks.report import (
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
    test_states,
)
from benchmarks.studies.sphere_prior import SHIPPED_PRIOR, STORE
from hdm.data.coarsen import coarse_grain_sphere
from hdm.data.schema import TIME
from hdm.domains.stations import igra2_worldwide
from hdm.downscaling.prior import load_prior
from hdm.hilbert.grids import GlobalGrid

SECTION = "sphere-guided-stability"
RUNAWAY_STDS = 10.0
MEMBERS = 8


def draw(prior, truth, steps: int) -> xr.Dataset:
    """``hdm.downscale`` of the inputs of sphere_downscale: MMPS + Heun ``steps``."""
    points, ids = igra2_worldwide(200)
    stations = prior_stations(prior, truth, prior.grid, points, ids)
    coarse = coarse_grain_sphere(truth, 4)
    out, _ = ensemble(prior, truth, coarse, stations, MEMBERS, None, steps=steps)
    return out


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_guided_stability", __doc__)
    p.add_argument("--store", type=Path, default=STORE)
    p.add_argument("--states", type=int, default=2)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50])
    p.add_argument(
        "--prior",
        nargs="+",
        default=[("shallow_water", SHIPPED_PRIOR)],
        type=name_and_path,
        metavar="NAME=PATH",
    )
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    truth = test_states(args.store, "validation", STEPS[:1]).isel({TIME: slice(0, args.states)})
    grid = GlobalGrid.make(*truth["h"].shape[1:])
    weights = grid.weights() / grid.weights().sum()
    rows = []
    for name, path in args.prior:
        prior = load_prior(path)
        for steps in args.steps:
            members = draw(prior, truth, steps)  # {v}(member, time, lat, lon)
            runaway = np.zeros((MEMBERS, truth.sizes[TIME]), dtype=bool)
            errors = {}
            for v in VARIABLES:
                error = members[v].values - truth[v].values[None]
                scale = float(truth[v].std())
                runaway |= ~np.isfinite(error).all(axis=(-2, -1))
                runaway |= np.nan_to_num(np.abs(error), nan=np.inf).max(axis=(-2, -1)) > (
                    RUNAWAY_STDS * scale
                )
                errors[v] = np.sqrt((weights * np.nan_to_num(error) ** 2).sum(axis=(-2, -1)))
            sane = ~runaway
            rows.append(
                [
                    name,
                    str(steps),
                    f"{int(runaway.sum())} of {runaway.size}",
                    *(
                        f"{np.median(errors[v][sane]):.3g}" if sane.any() else "–"
                        for v in VARIABLES
                    ),
                ]
            )
            print(rows[-1], flush=True)
    header = ["prior", "Heun steps", "members run away", "h RMSE (m)", "u RMSE (m/s)", "v RMSE"]
    body = f"""## Guided sampling on the sphere: members that run away

{truth.sizes[TIME]} validation states (first state kept of the first {args.states} validation
trajectories), ×4 cells + h, u, v at 200 IGRA2 stations (default noise), {MEMBERS} members,
MMPS with Heun at each step count; a member runs away where any value lies more than
{RUNAWAY_STDS:g} truth stds from the truth. RMSE: area-weighted, the median over the members
that did not.

{markdown_table(header, rows)}
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_guided_stability", argv),
        machine=machine,
    )
    print(body)
    return rows
