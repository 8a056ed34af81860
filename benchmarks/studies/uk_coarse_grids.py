"""UK t2m downscaled from coarse fields on grids that are not blocks of the model's grid.

The shipped prior (0.25°) is conditioned on coarse fields made from the ERA5 truth by
conservative regridding (:func:`hdm.data.coarsen.conservative_regrid`, the area-overlap
means that :meth:`hdm.conditioning.observations.CoarseGrain.for_coarse_grid` observes)
onto grids that a real product could have:

- the aligned ×4 blocks (1°, :func:`~hdm.data.coarsen.coarse_grain`): the benchmark's
  input and the reference row;
- 1° cells offset by 0.25° from the ×4 blocks: still whole 0.25° cells (blocks that
  start one point later), the cells at the domain's edge cut off;
- 1° cells centred on whole degrees (ERA5's 1° lattice): their edges fall on 0.25° grid
  points and cut the 0.25° cells in half;
- a 0.7° and a 1.1° grid (centres at multiples of the spacing): non-integer ratios.

Cells less than half inside the domain along lat or lon are left out (the operator's
rule). The coarse noise std is the default's rule scaled by the cell's area,
σ = 0.02 · (training std) · sqrt(1°² / (Δφ Δλ)) (:func:`~hdm.conditioning.observations.
area_scaled_noise` for a whole cell; cells cut by the edge get the same here). With the
12 conditioning stations (simulated, σ = 0.5 K), MMPS, the default sampler and 16
members on the test week (2019-03-25..31, every 6 h), each row gives the RMSE of the
ensemble mean and the fair CRPS of the members, the RMSE of bilinear and bicubic
interpolation of the same coarse field, and the RMSE's ratio to the aligned run's
(target at the same 1° cell size: within 10 %).

    python -m benchmarks uk_coarse_grids [--quick]

``--quick`` (2 times, 4 members, 8 steps) is a smoke run of a minute or two. It writes
section ``uk-coarse-grids`` of BENCHMARKS.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.uk import UK, conditioning_stations, shipped_prior
from hdm.data.coarsen import coarse_grain, conservative_regrid
from hdm.data.open import open_fields
from hdm.data.regrid import interpolate_coarse
from hdm.domains.stations import simulate_observations
from hdm.downscaling.config import COARSE_NOISE_FRACTION, EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.downscaling.output import attach_inputs
from hdm.downscaling.prior import Prior
from hdm.metrics import probabilistic as pm
from hdm.pipelines.evaluate import kriging_baseline, read_downscale

STATION_NOISE = 0.5
SECTION = "uk-coarse-grids"


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the study; :data:`QUICK` is the smoke run."""

    start: str = "2019-03-25T00"
    end: str = "2019-03-31T18"
    every_hours: int = 6
    times: int | None = None  # the first ``times`` fields only
    members: int = 16
    steps: int = EnsembleConfig().steps  # the default sampler's default steps
    seed: int = 0


FULL = StudyConfig()
QUICK = StudyConfig(times=2, members=4, steps=8)


@dataclass(frozen=True)
class CoarseGrid:
    """A coarse grid by its spacing (degrees) and the offset of its centres: centres at
    offset + k · spacing; ``factor`` instead marks the aligned ×f blocks."""

    label: str
    spacing: float
    offset: float = 0.0
    factor: int | None = None

    def centres(self, lo: float, hi: float) -> np.ndarray:
        """The centres of the lattice's cells that meet [lo, hi] (degrees)."""
        first = math.floor((lo - self.offset) / self.spacing)
        last = math.ceil((hi - self.offset) / self.spacing)
        return np.round(self.offset + self.spacing * np.arange(first, last + 1), 9)


GRIDS = (
    CoarseGrid("aligned ×4 blocks (reference)", 1.0, factor=4),
    CoarseGrid("1°, offset 0.25° from the ×4 blocks", 1.0, offset=0.625),
    CoarseGrid("1°, centred on whole degrees (cuts 0.25° cells)", 1.0),
    CoarseGrid("0.7°", 0.7),
    CoarseGrid("1.1°", 1.1),
)


def load_truth(cfg: StudyConfig) -> xr.DataArray:
    """The test week's t2m (every ``cfg.every_hours`` h, the first ``cfg.times``)."""
    t2m = open_fields(UK.resolved_path(), "t2m", time=slice(cfg.start, cfg.end))["t2m"].load()
    t2m = t2m.isel(time=slice(None, None, cfg.every_hours))
    return t2m if cfg.times is None else t2m.isel(time=slice(0, cfg.times))


def coarse_field(truth: xr.DataArray, grid: CoarseGrid) -> xr.DataArray:
    """The truth's coarse field on ``grid`` (cells less than half inside dropped)."""
    if grid.factor is not None:
        return coarse_grain(truth, grid.factor)
    lat, lon = truth.lat.values, truth.lon.values
    return conservative_regrid(truth, grid.centres(lat[0], lat[-1]), grid.centres(lon[0], lon[-1]))


def score_grid(
    prior: Prior,
    truth: xr.DataArray,
    stations: xr.Dataset,
    grid: CoarseGrid,
    cfg: StudyConfig,
) -> dict:
    """Downscale the truth's coarse field on ``grid`` with the stations and score it."""
    coarse = coarse_field(truth, grid)
    noise = COARSE_NOISE_FRACTION * prior.mean_std[1] / grid.spacing  # sqrt(1°² / Δ²)
    config = EnsembleConfig(
        members=cfg.members,
        steps=cfg.steps,
        seed=cfg.seed,
        coarse_noise=noise,
        station_noise=STATION_NOISE,
    )
    scores, _, _ = scored_run(prior, truth, stations, coarse, config)
    cells = f"{coarse.sizes['lat']} × {coarse.sizes['lon']}"
    return {"grid": grid.label, "cells": cells, "noise": noise, **scores}


def scored_run(
    prior: Prior,
    truth: xr.DataArray,
    stations: xr.Dataset,
    coarse: xr.DataArray,
    config: EnsembleConfig,
) -> tuple[dict, xr.DataArray, xr.DataArray]:
    """Downscale ``coarse`` with the stations; the RMSE of the mean, fair CRPS, seconds
    per field and the RMSE of bilinear and bicubic interpolation of ``coarse`` and of
    kriging and OI of ``coarse`` and the stations (``hdm evaluate``'s baselines, which
    observe the cells or points as the model does), with the ensemble and the truth on
    its coordinates (for further scores)."""
    t0 = time.perf_counter()
    ds = downscale(prior, coarse=coarse, stations=stations, config=config, progress=False)
    wall = time.perf_counter() - t0
    ens, mean = ds["t2m"], ds["t2m_mean"]
    target = truth.assign_coords(lat=ens.lat, lon=ens.lon)
    scores = {
        "rmse": float(pm.rmse(mean, target)),
        "crps": float(pm.fair_crps(ens, target)),
        "s_per_field": wall / truth.sizes["time"],
    }
    for method in ("bilinear", "bicubic"):
        smooth = interpolate_coarse(coarse, truth, method).assign_coords(lat=ens.lat, lon=ens.lon)
        scores[method] = float(pm.rmse(smooth, target))
    evaluation = read_downscale(attach_inputs(ds, {"t2m": coarse}, stations), UK.resolved_path())
    gaussian = kriging_baseline(evaluation, prior.path)
    for name, base in (("kriging", gaussian), ("oi", gaussian["oi"])):
        scores[name] = float(pm.rmse(base["mean"].assign_coords(lat=ens.lat, lon=ens.lon), target))
    return scores, ens, target


def format_section(rows: list[dict], cfg: StudyConfig, quick: bool, wall_s: float) -> str:
    """Section ``uk-coarse-grids`` (command, machine and date added by write_section)."""
    ref = rows[0]["rmse"]
    fields = "2 fields (quick)" if quick else "the test week 2019-03-25..31 every 6 h"
    lines = [
        "## UK t2m: coarse fields on grids that are not blocks of the model's"
        + (" (quick smoke run)" if quick else ""),
        "",
        f"Shipped prior, {fields}, {cfg.members} members, MMPS, the default sampler "
        f"({EnsembleConfig.sampler}) {cfg.steps} steps, the 12 conditioning stations "
        "(simulated, σ = 0.5 K). Coarse fields: "
        "conservative regridding of the truth (`hdm.data.coarsen.conservative_regrid`) "
        "onto each grid, cells less than half inside the domain along lat or lon left out; "
        "coarse noise 2 % of the training std × sqrt(1°² / cell area). Bilinear and "
        "bicubic: `hdm.data.regrid.interpolate_coarse` of the same coarse field; kriging "
        "(Matérn 3/2 fitted on the training period) and OI (the training fields' "
        "covariance) of the same cells, observed as the model observes them, and the "
        "stations (`hdm evaluate`'s baselines). RMSE (area-weighted, of the ensemble "
        "mean) and fair CRPS in K.",
        "",
        "| coarse grid | cells | σ coarse (K) | RMSE | CRPS | RMSE / aligned | bilinear | "
        "bicubic | kriging | OI | RMSE / bicubic | s per field |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['grid']} | {r['cells']} | {r['noise']:.3f} | {r['rmse']:.3f} | "
            f"{r['crps']:.3f} | {r['rmse'] / ref:.3f} | {r['bilinear']:.3f} | "
            f"{r['bicubic']:.3f} | {r['kriging']:.3f} | {r['oi']:.3f} | "
            f"{r['rmse'] / r['bicubic']:.3f} | {r['s_per_field']:.1f} |"
        )
    lines += ["", f"Wall time: {wall_s:.0f} s."]
    return "\n".join(lines) + "\n"


def run_study(
    name: str,
    doc: str,
    section: str,
    score_rows: Callable[[Prior, xr.DataArray, xr.Dataset, StudyConfig], Iterator[dict]],
    format_rows: Callable[[list[dict], StudyConfig, bool, float], str],
    argv: Sequence[str],
) -> list[dict]:
    """The command line of a study of coarse inputs on the test week: the shipped prior,
    the truth (:func:`load_truth`), the 12 simulated stations; ``score_rows`` yields the
    rows (each printed as it comes), ``format_rows`` makes section ``section``."""
    p = parser(name, doc, quick="2 times, 4 members, 8 steps")
    args = p.parse_args(list(argv))
    cfg = QUICK if args.quick else FULL
    torch.set_num_threads(2)
    machine = machine_description()
    t_start = time.perf_counter()
    prior = shipped_prior()
    truth = load_truth(cfg)
    stations = simulate_observations(truth, conditioning_stations(), STATION_NOISE, cfg.seed)
    rows = []
    for row in score_rows(prior, truth, stations, cfg):
        rows.append(row)
        print(row, flush=True)
    text = format_rows(rows, cfg, args.quick, time.perf_counter() - t_start)
    command = command_line(name, argv)
    write_section(args.benchmarks_file, section, text, command=command, machine=machine)
    print(text)
    return rows


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_coarse_grids [--quick]``."""

    def score_rows(prior, truth, stations, cfg):
        for grid in GRIDS:
            yield score_grid(prior, truth, stations, grid, cfg)

    return run_study("uk_coarse_grids", __doc__, SECTION, score_rows, format_section, argv)
