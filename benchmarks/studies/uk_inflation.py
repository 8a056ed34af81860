"""What the adaptive inflation estimates for the UK t2m prior, period by period.

``hdm downscale --inflation auto`` (:mod:`hdm.conditioning.inflation`) scales the spread
the observations do not see by λ² = (mean r_obs² − σ_s²) / mean r_prior², where r is a
station's residual about the bilinearly interpolated ×4 coarse field: r_obs from the
station observations (simulated from ERA5 with σ_s = 0.5 K at the 12 conditioning
stations, as in the benchmark), r_prior from unconditional draws of the shipped prior.
This script computes λ for the training period (2019-03-01..24, every 6 h), the
training day that ranks the samplers (03-20), the validation days (03-22..24 at 00/12 UTC)
and the test week (03-25..31, every 6 h), with what it was made of.

Next to it, the grid-wide version of the same ratio, which the stations only sample:
the RMS of truth − bilinear interpolation of its coarse field over the whole grid
(area-weighted; this needs the truth, so it is a check, not an input) against the same
RMS of the prior's draws. Their ratio is the λ an estimator with a station at every grid
point would find.

    python -m benchmarks uk_inflation [--draws 64]

It writes section ``uk-inflation`` of BENCHMARKS.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.uk import (
    TRAINING_DAY_TIMES,
    UK,
    VALIDATION_TIMES,
    coarse_interpolated,
    conditioning_stations,
    shipped_prior,
)
from hdm.conditioning.inflation import InflationConfig, estimate_inflation, prior_draws
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.stations import simulate_observations
from hdm.downscaling.inputs import observation_setup
from hdm.downscaling.prior import Prior
from hdm.metrics import probabilistic as pm

STATION_NOISE = 0.5
FACTOR = 4


def periods() -> list[tuple[str, object]]:
    """(label, time selection) of the four periods."""
    return [
        ("training 2019-03-01..24, every 6 h", slice("2019-03-01T00", "2019-03-24T18")),
        ("training day 2019-03-20 (sampler choice)", TRAINING_DAY_TIMES),
        ("validation days 2019-03-22..24, 00/12 UTC", VALIDATION_TIMES),
        ("test week 2019-03-25..31, every 6 h", slice("2019-03-25T00", "2019-03-31T18")),
    ]


def subcoarse_rms(fields: xr.DataArray) -> float:
    """Area-weighted RMS of fields − bilinear interpolation of their ×4 coarse field."""
    return float(pm.rmse(coarse_interpolated(fields, FACTOR), fields))


def period_row(prior: Prior, label: str, when, cfg: InflationConfig, prior_rms: float) -> dict:
    """λ and what it was made of for one period (``when``: a slice, every 6th hour kept,
    or a list of times), with the grid-wide RMS of the truth and of the prior's draws."""
    t0 = time.perf_counter()
    _, std = prior.mean_std
    truth = open_fields(UK.resolved_path(), "t2m", time=when)["t2m"].load()
    if isinstance(when, slice):
        truth = truth.isel(time=slice(None, None, 6))
    obs = simulate_observations(truth, conditioning_stations(), STATION_NOISE, 0)
    setup = observation_setup(
        prior,
        prior.grid,
        coarse_grain(truth, FACTOR),
        obs,
        truth.time.values,
        coarse_noise=0.02 * std,
        station_noise=STATION_NOISE,
    )
    est = estimate_inflation(prior.denoiser, prior.grid, setup.operator, setup.values, cfg)
    return {
        "period": label,
        "fields": int(truth.sizes["time"]),
        "lambda": est.factor,
        "unclipped": est.unclipped,
        "obs_rms": float(np.sqrt(max(est.innovation_var - est.noise_var, 0.0))) * std,
        "prior_station_rms": float(np.sqrt(est.prior_var)) * std,
        "truth_rms": subcoarse_rms(truth),
        "prior_rms": prior_rms,
        "seconds": time.perf_counter() - t0,
    }


def format_section(rows: list[dict], draws: int, wall_s: float) -> str:
    """Section ``uk-inflation`` (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    lines = [
        "## UK t2m: what the adaptive inflation estimates, by period",
        "",
        "λ of `hdm downscale --inflation auto` (module `hdm.conditioning.inflation`) with the "
        f"shipped prior: station residuals about the bilinearly interpolated ×{FACTOR} coarse "
        f"field at the 12 conditioning stations (simulated obs, σ = {STATION_NOISE} K; RMS less "
        f"the noise) against the prior's own at the same stations ({draws} unconditional "
        "draws, Euler–Maruyama 50 steps, the same draws for every period). Grid-wide: the "
        "area-weighted RMS of field − interpolated coarse field over the whole grid, truth "
        "against the prior's draws: the ratio a station at every grid point would give (a "
        "check that needs the truth; λ never sees it). RMS in K.",
        "",
        "| period | fields | λ (bounds [1, 2]) | λ unclipped | stations: obs RMS | stations: "
        "prior RMS | grid: truth RMS | grid: prior RMS | grid ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['period']} | {r['fields']} | {r['lambda']:.3f} | {r['unclipped']:.3f} | "
            f"{r['obs_rms']:.3f} | {r['prior_station_rms']:.3f} | {r['truth_rms']:.3f} | "
            f"{r['prior_rms']:.3f} | {r['truth_rms'] / r['prior_rms']:.3f} |"
        )
    lines += ["", f"Wall time: {wall_s:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_inflation [--draws 64]``."""
    p = parser("uk_inflation", __doc__)
    p.add_argument("--draws", type=int, default=64, help="unconditional prior draws")
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description()
    t_start = time.perf_counter()
    prior = shipped_prior()
    mean, std = prior.mean_std
    cfg = InflationConfig(draws=args.draws)
    lat, lon = prior.grid.coords()
    with torch.no_grad():
        draws = prior_draws(prior.denoiser, prior.grid, cfg)[:, 0].numpy() * std + mean
    draws = xr.DataArray(draws, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    prior_rms = subcoarse_rms(draws)
    rows = []
    for label, when in periods():
        rows.append(period_row(prior, label, when, cfg, prior_rms))
        print(rows[-1], flush=True)
    text = format_section(rows, args.draws, time.perf_counter() - t_start)
    command = command_line("uk_inflation", argv)
    write_section(args.benchmarks_file, "uk-inflation", text, command=command, machine=machine)
    print(text)
    return rows
