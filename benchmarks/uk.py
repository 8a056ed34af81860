"""The UK t2m downscaling benchmark (``python -m benchmarks downscale --parts uk``, section
``downscale-uk``; parts ``sampler`` and ``q``: sections ``downscale-sampler`` and
``downscale-q``).

Setting (issue 4, SCIENCE.md §5): ERA5 2 m temperature over the British Isles, the shipped
prior ``data/checkpoints/uk_t2m`` (trained on 2019-03-01..24), the test week
2019-03-25..31 every 6 hours (28 fields), the truth coarse-grained ×4 (to 1°) plus
simulated observations (σ = 0.5 K) at 12 real IGRA2 station coordinates in the domain
(``GRIDDED_DATASETS["uk_t2m"].conditioning_stations``), scored at 4 more held out
(``.heldout_stations``);
16 members, Euler–Maruyama 50 steps (50 NFE). Baselines: bilinear and bicubic interpolation of the
coarse field, and kriging (Matérn-1.5 fitted on the training period) from the coarse
field and the same stations. The same members are also scored with ``inflation="auto"``
(:mod:`hdm.conditioning.inflation`: λ from the station residuals about the coarse field
against the prior's own; the mean is unchanged). Zero-shot super-resolution: the same model and
observations on a grid 2× finer, against the truth interpolated, and the power spectra
of both resolutions at their shared wavenumbers.

The guidance method, the sampler and their settings were chosen on a training-period day
(2019-03-20, 4 fields), never on the test week: there, with the shipped prior,
Euler–Maruyama with 50 steps beat Heun with 25 (49 NFE) on RMSE (0.224 vs 0.264 K), CRPS
(0.110 vs 0.125) and high-wavenumber power (0.82 vs 0.58 of the truth's), with
spread–skill 1.20 vs 1.03 (``--parts sampler``). The prior itself (its Q, size and
training length) was chosen on training data only (``--parts q``, the training day and
``python -m benchmarks uk_validation_split``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from benchmarks.report import PROJECT_ROOT, machine_description, write_section
from hdm.data.coarsen import coarse_grain
from hdm.data.open import open_fields
from hdm.data.regrid import values_at_points
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.shipped import shipped_checkpoint
from hdm.domains.stations import simulate_observations, stations_by_id
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale, inflate_ensemble
from hdm.downscaling.output import attach_inputs, write_output
from hdm.downscaling.prior import Prior, load_prior
from hdm.metrics import probabilistic as pm
from hdm.pipelines.evaluate import evaluate_downscale, realism_scores

log = logging.getLogger("hdm")

#: the dataset: ERA5 t2m over the British Isles, its split and its station sets
UK = GRIDDED_DATASETS["uk_t2m"]
#: the held-out stations as ``hdm evaluate downscale`` takes them (comma-separated ids)
HELDOUT = ",".join(UK.heldout_stations)


def shipped_prior() -> Prior:
    """The shipped UK t2m prior (:func:`hdm.domains.shipped.shipped_checkpoint`)."""
    return load_prior(shipped_checkpoint("uk_t2m"))


def conditioning_stations() -> xr.Dataset:
    """The 12 conditioning stations (IGRA2 list rows): 10 stations active in 2019 inside
    the grid, plus Kinloss and Waddington."""
    return stations_by_id(list(UK.conditioning_stations))


@dataclass(frozen=True)
class UKBenchmarkConfig:
    """Sizes of the UK benchmark; :data:`QUICK` is a smoke run."""

    start: str = "2019-03-25T00"
    end: str = "2019-03-31T18"
    every_hours: int = 6
    members: int = 16
    steps: int = 25
    sampler: str = "heun"
    guidance: str = "mmps"
    factor: int = 4
    station_noise: float = 0.5
    sr_times: int = 2
    seed: int = 0


FULL = UKBenchmarkConfig()
QUICK = UKBenchmarkConfig(end="2019-03-25T06", members=4, steps=6, sr_times=1)


def ensemble_config(cfg: UKBenchmarkConfig, **changes) -> EnsembleConfig:
    """How the benchmark's members are drawn (``changes``: fields of EnsembleConfig)."""
    return EnsembleConfig(
        members=cfg.members,
        guidance=cfg.guidance,
        sampler=cfg.sampler,
        steps=cfg.steps,
        seed=cfg.seed,
        station_noise=cfg.station_noise,
    ).replace(**changes)


def _truth(cfg: UKBenchmarkConfig) -> xr.DataArray:
    ds = open_fields(UK.resolved_path(), "t2m", time=slice(cfg.start, cfg.end))
    t2m = ds["t2m"].load()
    return t2m.isel(time=slice(None, None, cfg.every_hours))


def _inputs(
    cfg: UKBenchmarkConfig, n_times: int | None = None
) -> tuple[Prior, xr.DataArray, xr.DataArray, xr.Dataset]:
    """The shipped prior, the truth of the test times (``n_times`` first ones), its coarse
    field and the simulated observations at the conditioning stations."""
    prior = shipped_prior()
    truth = _truth(cfg)
    if n_times is not None:
        truth = truth.isel(time=slice(0, n_times))
    coarse = coarse_grain(truth, cfg.factor)
    stations = simulate_observations(truth, conditioning_stations(), cfg.station_noise, cfg.seed)
    return prior, truth, coarse, stations


def run_case(
    cfg: UKBenchmarkConfig, work: Path, *, scale: int = 1, n_times: int | None = None
) -> tuple[dict, xr.Dataset]:
    """Downscale the test times (``n_times`` first ones) at ``scale`` and score them."""
    prior, truth, coarse, stations = _inputs(cfg, n_times)
    out = work / f"uk_x{scale}_{len(truth.time)}.zarr"
    settings = {
        "members": cfg.members,
        "steps": cfg.steps,
        "sampler": cfg.sampler,
        "guidance": cfg.guidance,
        "seed": cfg.seed,
        "checkpoint_hash": prior.sha256,
    }
    ds = _reusable(out, settings, truth)
    if ds is None:
        t0 = time.perf_counter()
        ds = downscale(
            prior,
            coarse=coarse,
            stations=stations,
            config=ensemble_config(cfg, scale=scale),
            progress=False,
        )
        ds.attrs["wall_time_s"] = time.perf_counter() - t0
        ds = attach_inputs(ds, {prior.variable: coarse}, stations)
        write_output(ds, out, overwrite=True)
    else:
        log.info("reusing %s (same settings and times)", out)
    wall = float(ds.attrs["wall_time_s"])
    report = evaluate_downscale(out, UK.resolved_path(), heldout=HELDOUT, checkpoint=prior.path)
    report["wall_s"] = wall
    report["s_per_field"] = wall / len(truth.time)
    report["nfe"] = int(ds.attrs["nfe_per_member"])
    return report, ds


def inflated_case(cfg: UKBenchmarkConfig, work: Path, raw: xr.Dataset) -> tuple[dict, xr.Dataset]:
    """The main case's ensemble with ``inflation="auto"`` (λ from the stations' residuals
    about the coarse field, :mod:`hdm.conditioning.inflation`), scored like it. Made from
    the stored members by :func:`inflate_ensemble`, which gives the members
    ``downscale(..., inflation="auto")`` would draw; ``inflation_s`` is its extra time."""
    prior, _, coarse, stations = _inputs(cfg, raw.sizes["time"])
    t0 = time.perf_counter()
    ds = inflate_ensemble(raw, prior, coarse, stations, "auto", station_noise=cfg.station_noise)
    extra = time.perf_counter() - t0
    out = write_output(ds, work / f"uk_x1_{raw.sizes['time']}_inflated.zarr", overwrite=True)
    report = evaluate_downscale(out, UK.resolved_path(), heldout=HELDOUT, checkpoint=prior.path)
    report["inflation_s"] = extra
    report.update({k: v for k, v in ds.attrs.items() if k.startswith("inflation")})
    return report, ds


def coarse_interpolated(fields: xr.DataArray, factor: int) -> xr.DataArray:
    """Bilinear interpolation of the ×``factor`` coarse-graining of (…, lat, lon) fields
    back onto their own grid (same coordinates): what a coarse field alone says."""
    from hdm.data.regrid import interpolate_coarse

    smooth = interpolate_coarse(coarse_grain(fields, factor), fields, "bilinear")
    return smooth.assign_coords(lat=fields.lat, lon=fields.lon)


def subcoarse_rms_of(truth: xr.DataArray, factor: int) -> dict:
    """RMS (K) of ``truth`` − bilinear interpolation of its ×``factor`` coarse field: over
    the grid (area-weighted, ``grid``) and at the 12 conditioning stations (``stations``)."""
    smooth = coarse_interpolated(truth, factor)
    stations = conditioning_stations()
    lat, lon = stations["lat"].values, stations["lon"].values
    return {
        "grid": float(pm.rmse(smooth, truth)),
        "stations": float(
            pm.rmse(values_at_points(smooth, lat, lon), values_at_points(truth, lat, lon))
        ),
    }


def subgrid_difficulty(cfg: UKBenchmarkConfig) -> list[dict]:
    """How much of each period's t2m the ×``cfg.factor`` coarse field leaves unexplained.

    For the training period and the test times (both every ``cfg.every_hours`` h): the
    area-weighted RMS (K) of truth − bilinear interpolation of its coarse-graining, over
    all fields and per UTC hour. This is the sub-coarse-cell variability the prior must
    supply; a test week with more of it than the training period had is outside what
    the prior learned, and its ensembles come out too narrow there. A description of the
    data only: nothing is tuned on it.

    The same RMS at the 12 conditioning stations (both fields sampled bilinearly there)
    says how much of that shift the stations could see: an observation-driven
    (adaptive) inflation of the ensemble spread can only learn what the station
    innovations y − bilinear(coarse) show.

    Returns:
        one dict per period: ``period``, ``fields``, ``rms``, ``rms_stations`` and
        ``by_hour`` {hour: rms}.
    """
    path = UK.resolved_path()
    rows = []
    for period, (start, end) in (("training", UK.train), ("test", (cfg.start, cfg.end))):
        truth = open_fields(path, "t2m", time=slice(start, end))["t2m"].load()
        truth = truth.isel(time=slice(None, None, cfg.every_hours))
        smooth = coarse_interpolated(truth, cfg.factor)
        hours = truth["time"].dt.hour.values
        by_hour = {
            int(h): float(pm.rmse(smooth.isel(time=hours == h), truth.isel(time=hours == h)))
            for h in np.unique(hours)
        }
        rms = subcoarse_rms_of(truth, cfg.factor)
        rows.append(
            {
                "period": f"{period} {start[:10]}..{end[:10]}",
                "fields": int(truth.sizes["time"]),
                "rms": rms["grid"],
                "rms_stations": rms["stations"],
                "by_hour": by_hour,
            }
        )
    return rows


def _format_difficulty(rows: list[dict]) -> list[str]:
    hours = sorted({h for r in rows for h in r["by_hour"]})
    lines = [
        "",
        "### How far the test week is from the training period (data only)",
        "",
        "RMS (K) of truth − bilinear interpolation of its ×4 coarse field: the variability "
        "below 1° that the prior has to supply, from the ERA5 fields alone (area-weighted over "
        "the grid, by UTC hour, and at the 12 conditioning stations).",
        "",
        "| period | fields | all | "
        + " | ".join(f"{h:02d} UTC" for h in hours)
        + " | at the 12 stations |",
        "|---|---|---|" + "---|" * len(hours) + "---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r['by_hour'].get(h, float('nan')):.3f}" for h in hours)
        lines.append(
            f"| {r['period']} | {r['fields']} | {r['rms']:.3f} | {cells} | "
            f"{r['rms_stations']:.3f} |"
        )
    if len(rows) == 2:
        grid_ratio = rows[1]["rms"] / rows[0]["rms"]
        station_ratio = rows[1]["rms_stations"] / rows[0]["rms_stations"]
        seen = (
            "the stations see only part of the shift"
            if station_ratio < grid_ratio - 0.05
            else "the stations see the shift"
        )
        lines += [
            "",
            f"Test ÷ training: {grid_ratio:.2f}× over the grid, {station_ratio:.2f}× at the "
            f"conditioning stations: {seen}. `--inflation auto` (column 'hdm, inflation "
            "auto' above) compares the station residuals with the prior's own at the same "
            "stations, not with the training period's, so its λ also makes up for what the "
            "prior itself draws too little below 1° (section uk-inflation).",
        ]
    return lines


def _reusable(store: Path, settings: dict, truth: xr.DataArray) -> xr.Dataset | None:
    """A finished store of an earlier run with the same settings and times, else None."""
    from hdm.data.stores import open_store

    if not store.exists():
        return None
    try:
        ds = open_store(store).load()
    except Exception:
        return None
    same = all(str(ds.attrs.get(k)) == str(v) for k, v in settings.items())
    times_match = len(ds.time) == len(truth.time) and bool(
        (ds.time.values == truth.time.values).all()
    )
    return ds if same and times_match else None


def spectra_at_shared_wavenumbers(fine: xr.Dataset, base: xr.Dataset, variable: str) -> dict:
    """Member power spectra of two resolutions at their shared bins: the largest relative
    difference against the Monte-Carlo standard error of the difference.

    Also split by what carries the power: in the bins where the ensemble mean's power is
    ≥ 90 % of the base members' (``mean_field_bins``, the scales the observations fix),
    ``mean_field_rel_diff`` is the mean signed relative difference of the two ensemble
    means' spectra; in the others, ``deviation_rel_diff`` is that of the member
    deviations from their mean (NaN where there are no such bins).
    """

    # One bin width for both: the extent (n − 1)Δ of the node grid, which refinement keeps
    # (power_spectrum's default n·Δ is the cell-centred convention and changes with n).
    lat, lon = base["lat"].values, base["lon"].values
    bin_width = 1.0 / max(lat[-1] - lat[0], lon[-1] - lon[0])

    def member_spectra(ds):
        return xr.concat(
            [
                pm.power_spectrum(ds[variable].isel(member=m), bin_width=bin_width)
                for m in range(ds.sizes["member"])
            ],
            dim="member",
        )

    def shared(spectrum, k=None):
        spectrum = spectrum.assign_coords(wavenumber=np.round(spectrum.wavenumber.values, 9))
        return spectrum if k is None else spectrum.sel(wavenumber=k)

    sf, sb = shared(member_spectra(fine)), shared(member_spectra(base))
    k = np.intersect1d(sf.wavenumber.values, sb.wavenumber.values)
    sf, sb = sf.sel(wavenumber=k), sb.sel(wavenumber=k)

    def mean_and_deviations(ds):
        """Spectra of the ensemble mean and of the members' deviations from it."""
        mean = ds[variable].mean("member")
        fields = (mean, ds[variable] - mean)
        return tuple(shared(pm.power_spectrum(x, bin_width=bin_width), k) for x in fields)

    (mean_f, dev_f), (mean_b, dev_b) = mean_and_deviations(fine), mean_and_deviations(base)
    held = (mean_b / sb.mean("member")).values >= 0.9
    mean_diff = ((mean_f - mean_b) / mean_b).values
    dev_diff = ((dev_f - dev_b) / dev_b).values
    m = sf.sizes["member"]
    diff = (sf.mean("member") - sb.mean("member")) / sb.mean("member")
    se = np.sqrt(sf.var("member") / m + sb.var("member") / m) / sb.mean("member")
    z = np.abs(diff) / se
    return {
        "shared_bins": len(k),
        "max_rel_diff": float(np.abs(diff).max()),
        "mean_rel_diff": float(np.abs(diff).mean()),
        "max_z": float(z.max()),
        "frac_within_2se": float((z <= 2).mean()),
        "mean_field_bins": int(held.sum()),
        "mean_field_rel_diff": float(mean_diff[held].mean()) if held.any() else float("nan"),
        "deviation_rel_diff": float(dev_diff[~held].mean()) if (~held).any() else float("nan"),
    }


def spectra_at_shared_points(fine: xr.Dataset, base: xr.Dataset, variable: str) -> dict:
    """:func:`spectra_at_shared_wavenumbers` of the fine ensemble restricted to the base
    grid's points (every ``scale``-th node of a ``scale``× refined grid) against the base
    ensemble: both spectra then come from the same points, the same 2-D wavevector lattice
    and the same aliasing, so what differs is the two ensembles' distribution at shared
    points, the discretisation invariance itself.

    Radial bins of the two grids' own spectra are not comparable bin by bin: with a
    different number of points per axis the lattices differ, and a radial bin of the same
    width averages other wavevectors. The key ``lattice_mean_rel_diff`` (and
    ``lattice_max_rel_diff``) measures that: the fine members against their own
    restriction, the same fields seen through the two lattices.

    Raises:
        ValueError: the fine grid does not contain the base grid's points (names the axis).
    """
    restricted = {}
    for axis in ("lat", "lon"):
        nf, nb = fine.sizes[axis], base.sizes[axis]
        if nb < 2 or (nf - 1) % (nb - 1):
            raise ValueError(f"{axis}: {nf} fine points are not a refinement of {nb} base points")
        step = (nf - 1) // (nb - 1)
        coords = fine[axis].values[::step]
        if not np.allclose(coords, base[axis].values, rtol=0, atol=1e-6):
            raise ValueError(
                f"{axis}: the fine points at a stride of {step} are not the base grid's points"
            )
        restricted[axis] = slice(None, None, step)
    sub = fine.isel(restricted)
    out = spectra_at_shared_wavenumbers(sub, base, variable)
    lattice = spectra_at_shared_wavenumbers(fine, sub, variable)
    out["lattice_mean_rel_diff"] = lattice["mean_rel_diff"]
    out["lattice_max_rel_diff"] = lattice["max_rel_diff"]
    return out


def speed_field(cfg: UKBenchmarkConfig) -> tuple[Prior, xr.DataArray, xr.Dataset]:
    """The shipped prior and the inputs of the speed case: the first test field's ×4
    coarse field and its 12 simulated station observations."""
    prior = shipped_prior()
    truth = _truth(cfg).isel(time=[0])
    coarse = coarse_grain(truth, cfg.factor)
    stations = simulate_observations(truth, conditioning_stations(), cfg.station_noise, cfg.seed)
    return prior, coarse, stations


def field_speed(cfg: UKBenchmarkConfig, quick: bool, repeats: int = 3) -> list[dict]:
    """Wall time of one 33 × 49 field with 16 members (coarse + 12 stations), per method:
    the median of ``repeats`` runs (1 in quick mode), with every run's time kept."""
    prior, coarse, stations = speed_field(cfg)
    rows = []
    cases = [("sda", "heun", 25), ("mmps", "heun", 25), ("mmps", "em", 50), ("mmps", "heun", 13)]
    if quick:
        cases = [("sda", "heun", 2)]
    for guidance, sampler, steps in cases:
        times = []
        for _ in range(1 if quick else repeats):
            t0 = time.perf_counter()
            config = EnsembleConfig(
                members=16 if not quick else 2,
                guidance=guidance,
                sampler=sampler,
                steps=steps,
                seed=cfg.seed,
            )
            ds = downscale(prior, coarse=coarse, stations=stations, config=config, progress=False)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "guidance": guidance,
                "sampler": sampler,
                "nfe": int(ds.attrs["nfe_per_member"]),
                "members": int(ds.sizes["member"]),
                "seconds": float(np.median(times)),
                "runs_s": times,
            }
        )
    return rows


def _paired_line(report: dict) -> str:
    """The paired differences against kriging with their block-bootstrap intervals."""

    def interval(ci: list | None) -> str:
        return (
            "no interval (fewer than 4 blocks)"
            if ci is None
            else (f"95 % interval [{ci[0]:.3f}, {ci[1]:.3f}]")
        )

    parts = []
    for key, label in (("rmse_minus_kriging", "RMSE"), ("crps_minus_kriging", "CRPS")):
        if key in report:
            r = report[key]
            parts.append(f"{label} − kriging = {r['diff']:.3f} K, {interval(r['ci95'])}")
    if "spread_skill_ci95" in report:
        ci = report["spread_skill_ci95"]
        parts.append(f"spread–skill {report['spread_skill']:.3f}, {interval(ci)}")
    if not parts or "rmse_minus_kriging" not in report:
        return ""
    block = report["rmse_minus_kriging"]["block"]
    return (
        "Over the test times (moving-block bootstrap, blocks of "
        f"{block} fields = 1 day, 2,000 resamples): " + "; ".join(parts) + ".  "
    )


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _scored_rows(r: dict) -> list[tuple]:
    """(metric, value, bilinear, bicubic, kriging, target, met) of one scored ensemble."""
    # Over 80 lines only because it is a literal table: one 7-tuple per metric row.
    return [
        (
            "RMSE of the mean (K)",
            r["rmse"],
            r.get("rmse_bilinear"),
            r.get("rmse_bicubic"),
            r.get("rmse_kriging"),
            "≤ 0.8 × bicubic and < kriging",
            r["rmse"] <= 0.8 * r["rmse_bicubic"] and r["rmse"] < r["rmse_kriging"],
        ),
        (
            "CRPS (K; fair / Gaussian)",
            r["crps"],
            None,
            None,
            r.get("crps_kriging"),
            "< kriging",
            r["crps"] < r["crps_kriging"],
        ),
        (
            "spread–skill",
            r["spread_skill"],
            None,
            None,
            None,
            "[0.8, 1.2]",
            0.8 <= r["spread_skill"] <= 1.2,
        ),
        (
            "coverage 90 %",
            r["coverage90"],
            None,
            None,
            r.get("coverage90_kriging"),
            "≈ 0.9",
            abs(r["coverage90"] - 0.9) <= 0.05,
        ),
        (
            "coverage 50 %",
            r["coverage50"],
            None,
            None,
            None,
            "≈ 0.5",
            abs(r["coverage50"] - 0.5) <= 0.05,
        ),
        (
            "held-out station RMSE (K)",
            r["heldout_rmse"],
            None,
            None,
            r.get("heldout_rmse_kriging"),
            "< kriging",
            r["heldout_rmse"] < r["heldout_rmse_kriging"],
        ),
        (
            "held-out station CRPS (K)",
            r["heldout_crps"],
            None,
            None,
            r.get("heldout_crps_kriging"),
            "",
            None,
        ),
        (
            "power ratio, high wavenumbers",
            r["spectrum_ratio"],
            None,
            r.get("spectrum_ratio_bicubic"),
            r.get("spectrum_ratio_kriging"),
            "[0.5, 2]",
            0.5 <= r["spectrum_ratio"] <= 2,
        ),
        (
            "coarse consistency (RMS / σ)",
            r.get("coarse_consistency", float("nan")),
            None,
            None,
            None,
            "",
            None,
        ),
    ]


def _inflation_note(r: dict) -> str:
    """What the inflated column is, with its λ and what λ was made of."""
    return (
        "hdm, inflation auto: the same members with the part of their spread that the "
        f"observations do not see multiplied by λ = {r['inflation']:.3f} "
        "(`hdm downscale --inflation auto`, `hdm.conditioning.inflation`), estimated from "
        f"the inputs alone: the {r['inflation_innovations']} station residuals about the "
        "bilinearly interpolated coarse field have variance "
        f"{r['inflation_residual_var']:.3f} K², of which {r['inflation_noise_var']:.3f} K² is "
        "station noise; the prior's own residuals at the same stations, over "
        f"{r['inflation_prior_draws']} unconditional draws, {r['inflation_prior_residual_var']:.3f}"
        f" K² (λ before the bounds [1, 2]: {r['inflation_unclipped']:.3f}). The estimate "
        f"took {r['inflation_s']:.0f} s for the run; the ensemble mean, and with it the RMSE, "
        "is unchanged. "
        + _paired_line(r).replace("Over the test times", "Inflated, over the test times")
        + f"Inflated rank histogram: {r['rank_histogram']}."
    )


def _main_table(main: dict, cfg: UKBenchmarkConfig, inflated: dict | None) -> list[str]:
    """The test-week paragraph and table: the ensemble (and, with ``inflated``, the same
    members with inflation auto) against the baselines and the targets."""
    lines = [
        f"{main['times']} fields ({cfg.start}..{cfg.end} every {cfg.every_hours} h), coarse ×"
        f"{cfg.factor} (1°) + 12 IGRA2 station coordinates (simulated obs, σ = "
        f"{cfg.station_noise} K), {main['members']} members, {cfg.guidance} guidance, "
        f"{cfg.sampler} {cfg.steps} steps ({main['nfe']} NFE per member). "
        f"Held out: {HELDOUT}. "
        f"Kriging kernel (fitted on 03-01..24): {main.get('kriging_kernel')}.",
        "",
        "| metric | hdm ensemble | bilinear | bicubic | kriging | target | |"
        + (" hdm, inflation auto | |" if inflated else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if inflated else ""),
    ]
    fmt = lambda v: "" if v is None else f"{v:.3g}"  # noqa: E731
    mark = lambda ok: "" if ok is None else _mark(ok)  # noqa: E731
    theirs = _scored_rows(inflated) if inflated else None
    for k, (name, value, bil, bic, kri, target, ok) in enumerate(_scored_rows(main)):
        line = f"| {name} | {fmt(value)} | {fmt(bil)} | {fmt(bic)} | {fmt(kri)} | {target} | "
        line += f"{mark(ok)} |"
        if theirs:
            line += f" {fmt(theirs[k][1])} | {mark(theirs[k][6])} |"
        lines.append(line)
    if inflated:
        lines += ["", _inflation_note(inflated)]
    return [
        *lines,
        "",
        _paired_line(main),
        f"Rank histogram (counts, {main['members'] + 1} bins): {main['rank_histogram']}  ",
        f"Wall time: {main['wall_s']:.0f} s for {main['times']} fields "
        f"({main['s_per_field']:.1f} s per field of {main['members']} members).",
    ]


def _shared_points_note(points: dict) -> str:
    """The zero-shot spectra compared at the training grid's points (same lattice)."""
    return (
        " Those radial bins average different wavevectors on the two lattices: the 2× "
        "members against their own restriction to the training grid's points (the same "
        f"fields) already differ by {points['lattice_mean_rel_diff']:.3f} on average "
        f"(max {points['lattice_max_rel_diff']:.3f}). Restricted to the training grid's "
        "points (same points, lattice and aliasing), the 2× members against the "
        f"training-grid members: mean |relative difference| {points['mean_rel_diff']:.3f}, "
        f"max {points['max_rel_diff']:.3f}; {100 * points['frac_within_2se']:.0f} % of "
        f"{points['shared_bins']} bins within 2 Monte-Carlo standard errors "
        f"(max z = {points['max_z']:.1f}). In the {points['mean_field_bins']} bins where "
        "the ensemble mean holds ≥ 90 % of the members' power (the scales the "
        "observations fix), the 2× ensemble mean carries "
        f"{100 * points['mean_field_rel_diff']:+.1f} % power against the training grid's; "
        "in the other bins the member deviations from the mean differ by "
        f"{100 * points['deviation_rel_diff']:+.1f} % on average."
    )


def _zero_shot_table(sr: dict, base4: dict, spectra: dict) -> list[str]:
    """Zero-shot super-resolution: both grids' scores and their spectra compared."""
    lines = [
        "",
        f"### Zero-shot super-resolution (2× the training grid, first {sr['times']} fields)",
        "",
        "| grid | RMSE (K) | CRPS (K) | spread–skill | coverage 90 % | held-out RMSE | "
        "power ratio | s per field |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rr in (("training grid 33 × 49", base4), (f"2× grid {sr['grid']}", sr)):
        lines.append(
            f"| {name} | {rr['rmse']:.3f} | {rr['crps']:.3f} | {rr['spread_skill']:.3f} | "
            f"{rr['coverage90']:.3f} | {rr['heldout_rmse']:.3f} | {rr['spectrum_ratio']:.3f} | "
            f"{rr['s_per_field']:.1f} |"
        )
    note = (
        f"Truth for the 2× grid: ERA5 interpolated bilinearly (so its own high wavenumbers "
        f"are missing; the power ratio there is against a smoothed truth). Member power "
        f"spectra of the two grids at their {spectra['shared_bins']} shared wavenumber bins: "
        f"mean |relative difference| {spectra['mean_rel_diff']:.3f}, max "
        f"{spectra['max_rel_diff']:.3f}; {100 * spectra['frac_within_2se']:.0f} % of bins "
        f"within 2 Monte-Carlo standard errors (max z = {spectra['max_z']:.1f})."
    )
    if spectra.get("shared_points") is not None:
        note += _shared_points_note(spectra["shared_points"])
    return [*lines, "", note]


def _speed_table(speed: list[dict]) -> list[str]:
    lines = [
        "",
        "### Speed: one 33 × 49 field, coarse + 12 stations, torch threads = 2",
        "",
        "| guidance | sampler | members | NFE | wall s (median) | runs (s) "
        "| target ≤ 30 s at ≤ 50 NFE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in speed:
        ok = r["seconds"] <= 30 and r["nfe"] <= 50
        runs = ", ".join(f"{t:.1f}" for t in r.get("runs_s", [r["seconds"]]))
        lines.append(
            f"| {r['guidance']} | {r.get('sampler', 'heun')} | {r['members']} | {r['nfe']} | "
            f"{r['seconds']:.1f} | {runs} | {_mark(ok)} |"
        )
    return lines


def format_uk(
    main: dict,
    sr: dict,
    base4: dict,
    spectra: dict,
    cfg: UKBenchmarkConfig,
    quick: bool,
    speed: list[dict] = (),
    difficulty: list[dict] = (),
    inflated: dict | None = None,
) -> str:
    """Section ``downscale-uk``: the test week, zero-shot 2×, the data's difficulty and
    the speed of one field (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    label = " (--quick: smoke sizes, not the result)" if quick else ""
    lines = [f"## Downscaling UK t2m, test week{label}", ""]
    lines += _main_table(main, cfg, inflated)
    lines += _zero_shot_table(sr, base4, spectra)
    if difficulty:
        lines += _format_difficulty(list(difficulty))
    if speed:
        lines += _speed_table(list(speed))
    return "\n".join(lines)


def run_uk_benchmark(
    quick: bool,
    benchmarks_file: Path,
    work: Path,
    command: str | None = None,
) -> dict:
    """Run the UK cases and write section ``downscale-uk`` of ``benchmarks_file``;
    ``command``: the command line to record (default: this process's)."""
    cfg = QUICK if quick else FULL
    machine = machine_description()
    work.mkdir(parents=True, exist_ok=True)
    log.info("UK benchmark: main case")
    main, main_ds = run_case(cfg, work)
    log.info("UK benchmark: the same ensemble with inflation auto")
    inflated, _ = inflated_case(cfg, work, main_ds)
    log.info("UK benchmark: zero-shot 2x on %d fields", cfg.sr_times)
    base4, base_ds = run_case(cfg, work, n_times=cfg.sr_times)
    sr, sr_ds = run_case(cfg, work, scale=2, n_times=cfg.sr_times)
    spectra = spectra_at_shared_wavenumbers(sr_ds, base_ds, "t2m")
    spectra["shared_points"] = spectra_at_shared_points(sr_ds, base_ds, "t2m")
    log.info("UK benchmark: speed of one field")
    speed = field_speed(cfg, quick)
    difficulty = subgrid_difficulty(cfg)
    body = format_uk(main, sr, base4, spectra, cfg, quick, speed, difficulty, inflated)
    write_section(benchmarks_file, "downscale-uk", body, command=command, machine=machine)
    results = {
        "main": main,
        "inflated": inflated,
        "sr": sr,
        "sr_base": base4,
        "spectra": spectra,
        "speed": speed,
        "difficulty": difficulty,
    }
    (work / "uk_results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


#: A training-period day (the shipped prior saw these fields): ranks settings in-sample.
TRAINING_DAY_TIMES = [f"2019-03-20T{h}" for h in ("00", "06", "12", "18")]
#: The validation split: fields a prior trained on 2019-03-01..20 never saw (03-21 is
#: skipped, so no validation field is an hour from a training field); not the test week.
VALIDATION_TIMES = [f"2019-03-{d}T{h}" for d in ("22", "23", "24") for h in ("00", "12")]

#: The sampler candidates compared on the training-period day (at most 50 NFE each).
SAMPLER_CANDIDATES = (("heun", 25), ("em", 50), ("pc", 25), ("dpm2m", 25), ("sde2m", 50))


#: wavenumber bands (cycles/degree) of the spread–skill by scale: wavelengths > 8°, 4–8°,
#: 2–4°, 1–2° and < 1° (the 0.25° grid resolves down to 0.5°)
BANDS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.5)


def score_on_fields(
    prior,
    times: list[str],
    *,
    sampler: str,
    steps: int,
    members: int,
    seed: int = 0,
    guidance_options: dict | None = None,
    inflation: str | float | None = None,
    factor: int = 4,
    teleport: str | float | None = None,
) -> dict:
    """Downscale the UK t2m fields at ``times`` (coarse ×``factor`` + the 12 conditioning stations,
    simulated obs σ = 0.5 K, MMPS with ``guidance_options``, ``inflation`` as in
    :class:`~hdm.downscaling.config.EnsembleConfig`) with ``prior`` and score the
    ensemble against them: nfe, s_per_field, rmse, crps (fair), spread_skill, coverage50,
    coverage90, spectrum_ratio, the speckle numbers over sea and land
    (``laplacian_ratio_sea``/``_land``), band_spread_skill (:data:`BANDS`), and the
    inflation factor used."""
    truth = open_fields(UK.resolved_path(), "t2m", time=times)["t2m"].load()
    stations = simulate_observations(truth, conditioning_stations(), 0.5, 0)
    config = EnsembleConfig(
        members=members,
        sampler=sampler,
        steps=steps,
        seed=seed,
        guidance_options=guidance_options or {},
        inflation=inflation,
        teleport=teleport,
    )
    t0 = time.perf_counter()
    ds = downscale(
        prior, coarse=coarse_grain(truth, factor), stations=stations, config=config, progress=False
    )
    wall = time.perf_counter() - t0
    ens, mean = ds["t2m"], ds["t2m_mean"]
    truth = truth.assign_coords(lat=ens.lat, lon=ens.lon)
    return {
        "nfe": int(ds.attrs["nfe_per_member"]),
        "s_per_field": wall / len(times),
        "rmse": float(pm.rmse(mean, truth)),
        "crps": float(pm.fair_crps(ens, truth)),
        "spread_skill": float(pm.spread_skill(ens, truth)),
        "coverage50": float(pm.coverage(ens, truth, 0.5)),
        "coverage90": float(pm.coverage(ens, truth, 0.9)),
        "spectrum_ratio": float(pm.spectrum_ratio(ens, truth)),
        **realism_scores(ens, truth),
        "band_spread_skill": pm.spread_skill_by_band(ens, truth, BANDS).values.tolist(),
        "inflation": float(ds.attrs["inflation"]),
        "teleport": ds.attrs["teleport_varsigma"],
    }


def sampler_choice(quick: bool) -> list[dict]:
    """Score the sampler candidates with MMPS on a TRAINING-period day (2019-03-20, 00/06/
    12/18 UTC; the model saw these fields), 16 members, coarse ×4 + the 12 stations: the
    evidence behind the default sampler, never the test week."""
    prior = shipped_prior()
    times = TRAINING_DAY_TIMES[:2] if quick else TRAINING_DAY_TIMES
    rows = []
    for sampler, steps in SAMPLER_CANDIDATES if not quick else (("heun", 6), ("sde2m", 4)):
        scores = score_on_fields(
            prior, times, sampler=sampler, steps=steps, members=16 if not quick else 2
        )
        rows.append({"sampler": sampler, "steps": steps, **scores})
    return rows


def run_sampler_choice(
    quick: bool, benchmarks_file: Path, command: str | None = None
) -> list[dict]:
    """Run :func:`sampler_choice` and write section ``downscale-sampler``; ``command``:
    the command line to record (default: this process's)."""
    machine = machine_description()
    rows = sampler_choice(quick)
    table = "\n".join(
        f"| {r['sampler']} {r['steps']} | {r['nfe']} | {r['rmse']:.3f} | {r['crps']:.3f} | "
        f"{r['spread_skill']:.3f} | {r['coverage90']:.3f} | {r['spectrum_ratio']:.3f} | "
        f"{r['s_per_field']:.1f} |"
        for r in rows
    )
    body = f"""## Choosing the sampler (training-period day, not the test week)

UK t2m, 2019-03-20 00/06/12/18 UTC (inside the training period: the scores are in-sample
and flatter the model; they rank the samplers, they are not the test result), coarse ×4 +
12 stations, MMPS, 16 members. The sampler with the best scores here is the default of
`hdm downscale` and of the test-week benchmark.

| sampler, steps | NFE | RMSE K | fair CRPS | spread–skill | cov. 90 % | power ratio | s / field |
|---|---|---|---|---|---|---|---|
{table}
"""
    write_section(benchmarks_file, "downscale-sampler", body, command=command, machine=machine)
    return rows


#: Q candidates (Matérn ν, ℓ in degrees) compared with the data's spectrum.
Q_CANDIDATES = ((2.5, 1.0), (1.5, 1.0), (1.5, 0.5), (0.5, 1.0), (0.5, 0.5))
#: Wavenumber bands (cycles/degree) of the spectrum comparison: low, mid, high.
Q_BANDS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0))


def _spectrum(x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    """Radial spectrum of fields x (n, lat, lon), averaged over the n fields."""
    da = xr.DataArray(x, dims=("sample", "lat", "lon"), coords={"lat": lat, "lon": lon})
    return pm.power_spectrum(da)


def _band_ratios(p: xr.DataArray, q: xr.DataArray) -> np.ndarray:
    """Geometric mean of p / q over the wavenumber bins of each band of :data:`Q_BANDS`."""
    k = p["wavenumber"].values
    log_ratio = np.log(p.values / q.values)
    return np.exp([log_ratio[(k > lo) & (k <= hi)].mean() for lo, hi in Q_BANDS])


def training_fields(quick: bool):
    """The shipped prior's training data (:func:`hdm.pipelines.train.training_data` of
    ``configs/atmos/uk_t2m.yaml``) and its normalised fields every 4 h (every 24 h when
    ``quick``), (n, lat, lon) as numpy."""
    from hdm.pipelines.config import load_train_config
    from hdm.pipelines.train import training_data

    data = training_data(load_train_config(PROJECT_ROOT / "configs" / "atmos" / "uk_t2m.yaml"))
    return data, data.tensor[:: 24 if quick else 4, 0].numpy()


def noise_choice(quick: bool, draws: int = 64, seed: int = 0) -> dict:
    """How closely the radial spectrum of Q draws follows that of the training data.

    The normalised training fields x₀ (2019-03-01..24, every 4 h; as the model sees them)
    and ``draws`` draws of each candidate Q = Matérn(ν, ℓ) on the same grid get their
    radially averaged spectra P (:func:`hdm.metrics.probabilistic.power_spectrum`). For
    each band b of :data:`Q_BANDS`, r_b = geometric mean of P_data / P_Q over its bins; the
    *tilt* r_high / r_low is 1 when Q has the data's spectral shape, so that the forward
    process drowns every scale at the same diffusion time. A tilt ≫ 1 means Q has too
    little power at high wavenumbers: those scales stay nearly noise-free until the last
    steps, the denoiser learns little about them and the members come out too smooth.

    Returns {"rows": [{"nu", "lengthscale", "ratios", "tilt"}], "n_fields", "bands"}.
    """
    import torch

    from hdm.hilbert.covariance import SpectralCovariance

    data, fields = training_fields(quick)
    lat, lon = data.dataset["lat"].values, data.dataset["lon"].values
    n_draws = 8 if quick else draws
    data_spectrum = _spectrum(fields, lat, lon)
    rows = []
    for nu, ell in Q_CANDIDATES:
        q = SpectralCovariance(kernel="matern", lengthscale=ell, nu=nu)
        gen = torch.Generator().manual_seed(seed)
        x = q.sample(n_draws, data.grid, generator=gen).reshape(n_draws, *fields.shape[1:])
        ratios = _band_ratios(data_spectrum, _spectrum(x.numpy(), lat, lon))
        rows.append(
            {
                "nu": nu,
                "lengthscale": ell,
                "ratios": ratios.tolist(),
                "tilt": float(ratios[-1] / ratios[0]),
            }
        )
    return {"rows": rows, "n_fields": int(fields.shape[0]), "bands": Q_BANDS, "draws": n_draws}


def prior_check(
    checkpoints: list[Path | str], quick: bool, members: int = 32, seed: int = 0
) -> list[dict]:
    """Unconditional draws of each trained prior against its training data.

    ``members`` draws (Euler–Maruyama, 50 steps, no guidance, seed ``seed``) on the
    training grid, compared with the normalised training fields (2019-03-01..24 every
    4 h): the ratio of their standard deviations over all points and draws, and the
    power ratio P_draws / P_data (geometric mean over the bins of each band of
    :data:`Q_BANDS`). A prior that has learned the data has every ratio near 1; the
    conditional members inherit its shortfalls at the scales the observations leave free.
    """
    import torch

    from hdm.hilbert.sampling import make_sampler

    data, fields = training_fields(quick)
    lat, lon = data.dataset["lat"].values, data.dataset["lon"].values
    data_spectrum = _spectrum(fields, lat, lon)
    rows = []
    for path in checkpoints:
        prior = load_prior(path)
        t0 = time.perf_counter()
        with torch.no_grad():
            draws = make_sampler("sde2m", 6 if quick else 50)(
                prior.denoiser,
                4 if quick else members,
                prior.grid,
                1,
                torch.Generator().manual_seed(seed),
            ).samples[:, 0]
        x = draws.numpy()
        meta = load_checkpoint_metadata(prior.path)
        shown = Path(path).resolve()
        if shown.is_relative_to(PROJECT_ROOT.resolve()):
            shown = shown.relative_to(PROJECT_ROOT.resolve())
        rows.append(
            {
                "checkpoint": str(shown),
                "q": prior.denoiser.process.covariance.describe(),
                "train_steps": meta.get("steps"),
                "std_ratio": float(x.std() / fields.std()),
                "ratios": _band_ratios(_spectrum(x, lat, lon), data_spectrum).tolist(),
                "wall_s": time.perf_counter() - t0,
            }
        )
    return rows


def load_checkpoint_metadata(model_path: str) -> dict:
    """The ``train_log.json`` next to a model file ({} when there is none)."""
    log_file = Path(model_path).parent / "train_log.json"
    return json.loads(log_file.read_text()) if log_file.exists() else {}


def _q_section(result: dict, shipped_q) -> str:
    """The heading, the Q candidates' spectra against the data's, and the closest one."""
    best = min(result["rows"], key=lambda r: abs(np.log(r["tilt"])))
    bands = " | ".join(f"data / Q, {lo:g}–{hi:g}" for lo, hi in Q_BANDS)
    shipped = (shipped_q.nu, shipped_q.lengthscale)
    table = "\n".join(
        f"| Matérn ν = {r['nu']:g}, ℓ = {r['lengthscale']:g}° | "
        + " | ".join(f"{v:.3g}" for v in r["ratios"])
        + f" | {r['tilt']:.3g} |"
        + (" ← shipped |" if (r["nu"], r["lengthscale"]) == shipped else " |")
        for r in result["rows"]
    )
    return f"""## Choosing Q for the UK t2m prior (training data only)

Radially averaged power spectra (Hann window) of {result["n_fields"]} normalised training
fields (2019-03-01..24, every 4 h, as the network sees them) and of {result["draws"]} draws
of each candidate Q on the same 33 × 49 grid. Columns: data power / Q power (geometric mean
over the wavenumber bins of each band, cycles/degree); tilt = high band ÷ low band, 1 when Q has the
data's spectral shape (every scale is drowned at the same diffusion time). Closest to 1:
Matérn ν = {best["nu"]:g}, ℓ = {best["lengthscale"]:g}°.

| Q | {bands} | tilt | |
|---|---|---|---|---|---|
{table}
"""


def _prior_section(checks: list[dict], quick: bool) -> str:
    """The trained priors' unconditional draws against the training fields."""
    prior_bands = " | ".join(f"draws / data, {lo:g}–{hi:g}" for lo, hi in Q_BANDS)
    prior_table = "\n".join(
        f"| `{c['checkpoint']}` | {c['q']} | {c['train_steps']} | {c['std_ratio']:.3f} | "
        + " | ".join(f"{v:.3f}" for v in c["ratios"])
        + " |"
        for c in checks
    )
    n_draws = 4 if quick else 32
    return f"""
Unconditional draws of trained priors ({n_draws} members, Euler–Maruyama 50 steps, no
guidance) against the same training fields: standard deviation ratio over all points and
draws, and power ratios by band (1 = the prior reproduces the data). The first row is
the shipped model.

| checkpoint | Q | training steps | std ratio | {prior_bands} |
|---|---|---|---|---|---|---|
{prior_table}
"""


def run_noise_choice(
    quick: bool,
    benchmarks_file: Path,
    command: str | None = None,
    priors: list[Path | str] | None = None,
) -> dict:
    """Run :func:`noise_choice` and :func:`prior_check` (the shipped prior, then
    ``priors``) and write section ``downscale-q``; ``command``: the command line to
    record (default: this process's)."""
    machine = machine_description()
    result = noise_choice(quick)
    shipped = shipped_checkpoint("uk_t2m")
    checks = prior_check([shipped.parent, *(priors or [])], quick)
    result["priors"] = checks
    shipped_q = load_prior(shipped).denoiser.process.covariance
    body = _q_section(result, shipped_q) + _prior_section(checks, quick)
    write_section(benchmarks_file, "downscale-q", body, command=command, machine=machine)
    return result
