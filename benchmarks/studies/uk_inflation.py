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

    python benchmarks/uk_inflation.py [--draws 64]

It writes section ``uk-inflation`` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from hdm.conditioning.inflation import InflationConfig, estimate_inflation, prior_draws
from hdm.data.benchmark import machine_description, write_section
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.metrics import probabilistic as pm
from hdm.pipelines.benchmark_uk import (
    CONDITIONING_STATIONS,
    TRAINING_DAY_TIMES,
    VALIDATION_TIMES,
    coarse_interpolated,
)
from hdm.downscaling.inputs import observation_setup
from hdm.downscaling.prior import load_prior

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "data" / "checkpoints" / "uk_t2m"
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
    return pm.rmse(coarse_interpolated(fields, FACTOR), fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    prior = load_prior(CHECKPOINT)
    mean, std = prior.mean_std
    path = GRIDDED_DATASETS["uk_t2m"].resolved_path()
    stations = stations_by_id(CONDITIONING_STATIONS.split(","))
    cfg = InflationConfig(draws=args.draws)
    lat, lon = prior.grid.coords()
    with torch.no_grad():
        draws = prior_draws(prior.denoiser, prior.grid, cfg)[:, 0].numpy() * std + mean
    draws = xr.DataArray(draws, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    prior_rms = subcoarse_rms(draws)
    rows = []
    for label, when in periods():
        t0 = time.perf_counter()
        truth = open_fields(path, "t2m", time=when)["t2m"].load()
        if isinstance(when, slice):
            truth = truth.isel(time=slice(None, None, 6))
        obs = simulate_observations(truth, stations, STATION_NOISE, 0)
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
        truth_rms = subcoarse_rms(truth)
        rows.append(
            {
                "period": label,
                "fields": int(truth.sizes["time"]),
                "lambda": est.factor,
                "unclipped": est.unclipped,
                "obs_rms": float(np.sqrt(max(est.innovation_var - est.noise_var, 0.0))) * std,
                "prior_station_rms": float(np.sqrt(est.prior_var)) * std,
                "truth_rms": truth_rms,
                "prior_rms": prior_rms,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(rows[-1], flush=True)
    lines = [
        "## UK t2m: what the adaptive inflation estimates, by period",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/uk_inflation.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "λ of `hdm downscale --inflation auto` (module `hdm.conditioning.inflation`) with the "
        f"shipped prior: station residuals about the bilinearly interpolated ×{FACTOR} coarse "
        f"field at the 12 conditioning stations (simulated obs, σ = {STATION_NOISE} K; RMS less "
        f"the noise) against the prior's own at the same stations ({args.draws} unconditional "
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
    lines += ["", f"Wall time: {time.perf_counter() - t_start:.0f} s."]
    write_section(Path(args.out), "uk-inflation", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
