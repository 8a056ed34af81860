"""UK t2m conditioned on a 1° field of grid-point values, read as points and as cell means.

A 1° ERA5 field from the CDS (interpolated from the native grid), or a 0.25° field
subsampled every 4th point, holds the values *at* whole degrees, not the means of the 1°
cells around them. Read as cell means, as ``hdm
downscale`` reads a coarse field that says nothing (no CF ``cell_methods``), a coastal
point's sea value is forced onto the land half of its cell, and the members carry the
cells. Read as points (``cell_methods = "area: point"``, or ``--coarse-sampling point``:
:func:`hdm.downscaling.inputs.point_sampled`), the same values are observed where they
were taken. Rows, all with the shipped prior and its defaults (MMPS, the default sampler,
16 members, the 12 simulated conditioning stations, σ = 0.5 K):

- the truth every 4th point (lat 50, 51, …, 58; lon −10, −9, …, 2), read as points;
- the same values read as 1° cell means (what a file without cell_methods gets);
- the truth's conservative 1° means on the same lattice, read as means (the reference:
  data that are what they are read as).

Coarse noise: the default, 2 % of the training std, for every value. Bilinear and
bicubic: :func:`hdm.data.regrid.interpolate_coarse` of each row's coarse values; kriging
and OI (``hdm evaluate``'s baselines) observe each row's values as that row reads them
(at the points, or as cell means) with the stations. Times:
the test week 2019-03-25..31 every 6 h (nothing is chosen on it: how a file's values are
read follows from what they are, not from these scores).

    python -m benchmarks uk_point_coarse [--quick]

It writes section ``uk-point-coarse`` of BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from benchmarks.studies.uk_coarse_grids import STATION_NOISE, StudyConfig, run_study, scored_run
from hdm.data.coarsen import conservative_regrid
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.prior import Prior
from hdm.metrics import probabilistic as pm
from hdm.pipelines.evaluate import realism_scores

SECTION = "uk-point-coarse"
#: the 1° lattice of whole degrees inside the UK grid
LAT, LON = np.arange(50.0, 58.5, 1.0), np.arange(-10.0, 2.5, 1.0)


def coarse_inputs(truth: xr.DataArray) -> list[tuple[str, xr.DataArray]]:
    """(label, coarse field) of the three rows (module doc)."""
    points = truth.sel(lat=LAT, lon=LON)
    return [
        ("1° points, read as points", points.assign_attrs(cell_methods="area: point")),
        ("1° points, read as cell means", points.assign_attrs(cell_methods="area: mean")),
        ("1° cell means (conservative), read as means", conservative_regrid(truth, LAT, LON)),
    ]


def score_row(
    prior: Prior, truth: xr.DataArray, stations: xr.Dataset, label: str, coarse, cfg
) -> dict:
    """Downscale one coarse input with the stations and score the ensemble."""
    config = EnsembleConfig(
        members=cfg.members, steps=cfg.steps, seed=cfg.seed, station_noise=STATION_NOISE
    )
    scores, ens, target = scored_run(prior, truth, stations, coarse, config)
    return {
        "input": label,
        **scores,
        "spread_skill": float(pm.spread_skill(ens, target)),
        "power": float(pm.spectrum_ratio(ens, target)),
        **realism_scores(ens, target),
    }


def format_section(rows: list[dict], cfg: StudyConfig, quick: bool, wall_s: float) -> str:
    """Section ``uk-point-coarse`` (command, machine and date added by write_section)."""
    fields = "2 fields (quick)" if quick else "the test week 2019-03-25..31 every 6 h"
    lines = [
        "## UK t2m: a 1° field of grid-point values, read as points and as cell means"
        + (" (quick smoke run)" if quick else ""),
        "",
        f"Shipped prior, {fields}, {cfg.members} members, MMPS, the default sampler "
        f"({EnsembleConfig.sampler}) {cfg.steps} steps, the 12 conditioning stations "
        "(simulated, σ = 0.5 K), coarse noise 2 % of the training std. The points are the "
        "truth at whole degrees (9 × 13); the cell means its conservative 1° means on the "
        "same lattice. RMSE (of the ensemble mean) and fair CRPS in K; power: the members' "
        "high-wavenumber power over the truth's; speckle: the members' mean squared "
        "Laplacian over the truth's, over sea and land points. Baselines (RMSE, K): "
        "bilinear and bicubic interpolation of the row's values; kriging (Matérn 3/2 "
        "fitted on the training period) and OI (the training fields' covariance) of the "
        "row's values as the row reads them, and the stations.",
        "",
        "| coarse input | RMSE | CRPS | spread–skill | power ratio | speckle sea | "
        "speckle land | bilinear | bicubic | kriging | OI | s per field |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['rmse']:.3f} | {r['crps']:.3f} | {r['spread_skill']:.3f} | "
            f"{r['power']:.3f} | {r['laplacian_ratio_sea']:.3f} | "
            f"{r['laplacian_ratio_land']:.3f} | {r['bilinear']:.3f} | {r['bicubic']:.3f} | "
            f"{r['kriging']:.3f} | {r['oi']:.3f} | {r['s_per_field']:.1f} |"
        )
    lines += ["", f"Wall time: {wall_s:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_point_coarse [--quick]``."""

    def score_rows(prior, truth, stations, cfg):
        for label, coarse in coarse_inputs(truth):
            yield score_row(prior, truth, stations, label, coarse, cfg)

    return run_study("uk_point_coarse", __doc__, SECTION, score_rows, format_section, argv)
