"""Radiosonde profiles fused into a multi-level prior: an observing-system experiment.

W-Europe, 2020-01-01 (ERA5 u, v, q on 300, 500, 700, 850, 925 and 1000 hPa; the prior of
``configs/atmos/rhine_levels.yaml``, trained on 00–17 UTC: 18 fields, a capability check,
not a climatology). Test: 18–23 UTC. Inputs, simulated from ERA5:

- coarse ×4 block means at every level (noise 2 % of each channel's training std);
- soundings at the 10 conditioning IGRA2 stations of the box on the six levels, each the
  field's column at the station (bilinear) plus noise of the std ``hdm downscale``
  assumes by default (:data:`hdm.downscaling.config.DEFAULT_PROFILE_NOISE`: 1.5 m s⁻¹ for
  u and v; for q 10 % of the level's training std);
- 4 other IGRA2 stations held out (their columns are scored, never conditioned on).

Each test field is downscaled by :func:`hdm.downscale` (the path of ``hdm downscale
--profiles``; MMPS, Heun 25, 8 members: about 2,000 observations per field make MMPS's
conjugate gradients the cost) from the coarse fields alone and with the soundings too;
the baseline is kriging per (variable, level) — a Matérn kernel fitted by maximum
likelihood on that channel's training fields, conditioned on the same coarse cells and
soundings. Scores per variable and level band (upper: 300 and
500 hPa, middle: 700, lower: 850–1000): RMSE of the ensemble mean, fair CRPS,
spread–skill, and the RMSE at the held-out stations' columns. Section ``rhine-profiles``.

    python -m benchmarks rhine_profiles [--checkpoint runs/rhine_levels] [--members 16]
"""

from __future__ import annotations

from collections.abc import Sequence
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
from hdm.conditioning.profiles import Profile
from hdm.data.coarsen import coarse_grain
from hdm.data.regrid import values_at_points
from hdm.data.schema import LAT, LEVEL, LON, MEMBER, TIME
from hdm.domains.atmosphere import GRIDDED_DATASETS, open_split
from hdm.domains.stations import stations_by_id
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale, profile_noise_settings
from hdm.downscaling.prior import channel_name, load_prior
from hdm.metrics import baselines as bl
from hdm.metrics import probabilistic as pm

SPEC = GRIDDED_DATASETS["rhine_levels"]
SECTION = "rhine-profiles"
COARSE_FRACTION = 0.02  # the default coarse noise of hdm.downscale
BANDS = {
    "upper (300–500)": (300.0, 500.0),
    "middle (700)": (700.0,),
    "lower (850–1000)": (850.0, 925.0, 1000.0),
}


def _at_stations(fields: xr.DataArray, stations: xr.Dataset) -> np.ndarray:
    """Fields (time, lat, lon) bilinearly at the stations: (time, station)."""
    return values_at_points(fields, stations["lat"].values, stations["lon"].values).values


def _columns(fields: xr.Dataset, stations: xr.Dataset, variables, levels) -> dict:
    """(variable, level) → (time, station) values of the fields at the stations."""
    return {
        (v, lev): _at_stations(fields[v].sel({LEVEL: lev}).transpose(TIME, LAT, LON), stations)
        for v in variables
        for lev in levels
    }


def run(
    checkpoint: Path,
    members: int,
    sampler_name: str,
    steps: int,
    seed: int = 0,
    max_times: int | None = None,
) -> dict:
    """Downscale the test fields with :func:`hdm.downscale` (the path ``hdm downscale
    --profiles`` takes), from the coarse fields alone and with the soundings too."""
    prior = load_prior(checkpoint)
    channels = list(prior.levels)
    variables = list(dict.fromkeys(v for v, _ in channels))
    levels = sorted({lev for _, lev in channels})
    truth = open_split(SPEC, "test").load().isel({TIME: slice(0, max_times)})
    train = open_split(SPEC, "train").load()
    config = EnsembleConfig(members=members, sampler=sampler_name, steps=steps, seed=seed)
    noise = profile_noise_settings(prior, config)
    rng = np.random.default_rng(seed)
    cond = stations_by_id(list(SPEC.conditioning_stations))
    held = stations_by_id(list(SPEC.heldout_stations))
    cond_cols = _columns(truth, cond, variables, levels)
    held_cols = _columns(truth, held, variables, levels)
    noisy = {
        c: cond_cols[c] + rng.normal(0, noise[channel_name(*c)], cond_cols[c].shape)
        for c in channels
    }
    coarse = {v: coarse_grain(truth[v], 4) for v in variables}
    times = truth[TIME].values
    profiles = [
        Profile(
            str(sid),
            float(lat),
            float(lon),
            times[i],
            np.asarray(levels) * 100.0,
            {v: np.array([noisy[(v, lev)][i, s] for lev in levels]) for v in variables},
        )
        for i in range(len(times))
        for s, (sid, lat, lon) in enumerate(
            zip(cond["id"].values, cond["lat"].values, cond["lon"].values, strict=True)
        )
    ]
    out, walls = {}, []
    for label, given in (("without", None), ("with", profiles)):
        ds = downscale(prior, xr.Dataset(coarse), profiles=given, config=config, progress=True)
        walls.append(float(ds.attrs["wall_time_s"]) / len(times))
        out[label] = np.stack(
            [
                ds[v].sel({LEVEL: lev}).transpose(MEMBER, TIME, LAT, LON).values
                for v, lev in channels
            ],
            axis=2,
        )  # (M, T, C, lat, lon)
    return {
        "channels": channels,
        "truth": truth,
        "train": train,
        "coarse": coarse,
        "cond": cond,
        "held": held,
        "noisy": noisy,
        "noise": noise,
        "held_cols": held_cols,
        "members": out,
        "s_per_field": float(np.mean(walls)),
    }


def _ensemble(arr: np.ndarray, truth: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(arr, dims=(MEMBER, *truth.dims), coords=truth.coords)


def score(result: dict) -> list[list[str]]:
    channels, truth = result["channels"], result["truth"]
    held = result["held"]
    rows = []
    per: dict = {}
    for k, (v, lev) in enumerate(channels):
        t = truth[v].sel({LEVEL: lev}).transpose(TIME, LAT, LON)
        kernel = bl.fit_kernel(result["train"][v].sel({LEVEL: lev}))
        krig = bl.kriging_downscale(
            kernel,
            result["coarse"][v].sel({LEVEL: lev}).transpose(TIME, LAT, LON),
            t[LAT].values,
            t[LON].values,
            4,
            result["cond"]["lat"].values,
            result["cond"]["lon"].values,
            result["noisy"][(v, lev)],
            noise_std_coarse=COARSE_FRACTION * float(result["train"][v].sel({LEVEL: lev}).std()),
            noise_std_station=result["noise"][channel_name(v, lev)],
            prior_mean=float(result["train"][v].sel({LEVEL: lev}).mean()),
        )
        k_mean = krig["mean"].transpose(TIME, LAT, LON)
        k_std = krig["std"].transpose(TIME, LAT, LON)
        cols = {}
        for label in ("with", "without"):
            ens = _ensemble(result["members"][label][:, :, k], t)
            mean = ens.mean(MEMBER)
            held_pred = _at_stations(mean.transpose(TIME, LAT, LON), held)
            cols[label] = {
                "rmse": float(pm.rmse(mean, t)),
                "crps": float(pm.fair_crps(ens, t)),
                "ss": float(pm.spread_skill(ens, t)),
                "held": float(np.sqrt(np.mean((held_pred - result["held_cols"][(v, lev)]) ** 2))),
            }
        k_held = _at_stations(k_mean, held)
        cols["kriging"] = {
            "rmse": float(pm.rmse(k_mean, t)),
            "crps": float(pm.gaussian_crps(k_mean, k_std, t)),
            "held": float(np.sqrt(np.mean((k_held - result["held_cols"][(v, lev)]) ** 2))),
        }
        per[(v, lev)] = cols
    for v in dict.fromkeys(c[0] for c in channels):
        for band, levs in BANDS.items():

            def avg(label, key, levs=levs, v=v):
                values = [per[(v, lev)][label][key] for lev in levs]
                root = key in ("rmse", "held")  # errors: root mean square over levels
                return (
                    float(np.sqrt(np.mean(np.square(values)))) if root else float(np.mean(values))
                )

            fmt = "{:.2e}" if v == "q" else "{:.2f}"
            rows.append(
                [
                    v,
                    band,
                    *(fmt.format(avg(label, "rmse")) for label in ("without", "with", "kriging")),
                    *(fmt.format(avg(label, "crps")) for label in ("without", "with", "kriging")),
                    *(f"{avg(label, 'ss'):.2f}" for label in ("without", "with")),
                    *(fmt.format(avg(label, "held")) for label in ("without", "with", "kriging")),
                ]
            )
    return rows


HEADER = [
    "variable", "levels hPa",
    "RMSE coarse only", "RMSE + soundings", "RMSE kriging",
    "CRPS coarse only", "CRPS + soundings", "CRPS kriging",
    "spread–skill coarse only", "spread–skill + soundings",
    "held-out RMSE coarse only", "held-out RMSE + soundings", "held-out RMSE kriging",
]  # fmt: skip


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("rhine_profiles", __doc__)
    p.add_argument(
        "--checkpoint", type=Path, default=PROJECT_ROOT / "data/checkpoints/rhine_levels"
    )
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--sampler", default="heun")
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description()
    result = run(args.checkpoint, args.members, args.sampler, args.steps)
    rows = score(result)
    body = f"""## Radiosonde profiles in a multi-level prior (W-Europe OSSE, a capability check)

The prior `{args.checkpoint.name}` (u, v, q at 300–1000 hPa, 18 channels) was trained on
18 hourly fields of 2020-01-01 (00–17 UTC): **a capability check, not a climatology**.
Test: the 6 fields of 18–23 UTC. Coarse ×4 at every level (noise 2 % of each channel's
std) with and without soundings at the 10 conditioning IGRA2 stations (their ERA5 column
at 300/500/700/850/925/1000 hPa plus noise: u, v 1.5 m s⁻¹, q 10 % of the level's
training std, the noise `hdm downscale` assumes by default); 4 other
IGRA2 stations held out. MMPS, {args.sampler} {args.steps} steps (the default sampler),
{args.members} members,
{result["s_per_field"]:.1f} s per field (18 channels). Kriging: per (variable, level), a
Matérn kernel fitted on the training fields, the same coarse cells and soundings. RMSE and
held-out RMSE are root means of the levels' values; CRPS and spread–skill their means.
u, v in m s⁻¹, q in kg kg⁻¹.

{markdown_table(HEADER, rows)}
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("rhine_profiles", argv),
        machine=machine,
    )
    for r in rows:
        print(" | ".join(r))
    return rows
