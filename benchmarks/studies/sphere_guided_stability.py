"""Whether guided sampling stays finite and sane with a spherical prior: members that run
away, by prior and number of sampler steps.

Inputs of ``sphere_downscale`` on validation states (the first state kept of the first
``--states`` validation trajectories; never the test ones): ×4 cells (22.5°) and h, u, v
at 200 IGRA2 stations with the default noise, 8 members, MMPS with EDM's Heun at each of
``--steps``. The members are drawn through ``hdm.downscale``'s own path
(``observation_setup`` and ``_draw_ensemble``) but without its refusal of band-limited
priors, since whether such a prior can be guided is what is measured. A member "runs
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

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from benchmarks.studies.sphere_downscale import (
    STEPS,
    UNITS,
    VARIABLES,
    station_dataset,
    station_values,
    test_states,
)
from hdm.data.coarsen import coarse_grain_sphere
from hdm.data.schema import TIME
from hdm.domains.stations import igra2_worldwide
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import _draw_ensemble, noise_settings
from hdm.downscaling.inputs import model_fields, observation_setup, select_times
from hdm.downscaling.prior import load_prior
from hdm.hilbert.grids import GlobalGrid

SECTION = "sphere-guided-stability"
RUNAWAY_STDS = 10.0
MEMBERS = 8


def draw(prior, truth, steps: int) -> np.ndarray:
    """(members, time, channel, lat, lon) in physical units: MMPS + Heun ``steps``."""
    grid = prior.grid
    cfg = EnsembleConfig(members=MEMBERS, steps=steps)
    coarse_noise, station_noise = noise_settings(prior, cfg)
    points, ids = igra2_worldwide(200)
    values = station_values(truth, grid, points, station_noise, seed=1)
    stations = station_dataset(values, truth[TIME].values, points, ids, UNITS)
    coarse = model_fields(coarse_grain_sphere(truth, 4)[list(VARIABLES)], prior, "coarse")
    setup = observation_setup(
        prior,
        grid,
        coarse,
        stations,
        select_times(coarse, None),
        coarse_noise=coarse_noise,
        station_noise=station_noise,
        time_tolerance=cfg.time_tolerance,
    )
    out, _ = _draw_ensemble(prior, grid, setup, cfg, 1.0, True, None)
    return out


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_guided_stability", __doc__)
    p.add_argument("--store", type=Path, default=PROJECT_ROOT / "runs" / "shallow_water.zarr")
    p.add_argument("--states", type=int, default=2)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50])
    p.add_argument(
        "--prior",
        nargs="+",
        default=[f"shallow_water={PROJECT_ROOT / 'data' / 'checkpoints' / 'shallow_water'}"],
        metavar="NAME=PATH",
    )
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    truth = test_states(args.store, "validation", STEPS[:1]).isel({TIME: slice(0, args.states)})
    grid = GlobalGrid.make(*truth["h"].shape[1:])
    weights = grid.weights() / grid.weights().sum()
    rows = []
    for name, path in (spec.split("=", 1) for spec in args.prior):
        prior = load_prior(Path(path))
        for steps in args.steps:
            members = draw(prior, truth, steps)  # (member, time, channel, lat, lon)
            runaway = np.zeros(members.shape[:2], dtype=bool)
            errors = {}
            for v in VARIABLES:
                error = members[:, :, prior.channel_index(v)] - truth[v].values[None]
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
