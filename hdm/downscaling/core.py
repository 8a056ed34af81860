"""``hdm.downscale``: coarse fields + station observations → high-resolution ensembles.

The composition of the main job (ARCHITECTURE.md, "How data flows"):

1. the trained prior (``model.pt``: denoiser, grid, normaliser) is loaded
   (:mod:`hdm.downscaling.prior`);
2. the target grid is the training grid, a refinement of it (zero-shot super-resolution:
   ``scale=2`` samples at twice the resolution) or any lat-lon grid of the same domain;
3. the observations, converted to the model's units, become one operator on that grid
   with normalised values (:mod:`hdm.downscaling.inputs`);
4. for every time, ``members`` posterior samples are drawn with the guided sampler,
   seeded per time (:func:`hdm.conditioning.ensembles.member_seed`), then optionally
   inflated (:mod:`hdm.conditioning.inflation`);
5. the result is an ``xr.Dataset`` in physical units with its summaries, the inputs it
   was conditioned on and provenance, with the CF attributes of every hdm store
   (:mod:`hdm.downscaling.output`): the dataset that ``hdm downscale`` writes, so that
   ``ds.to_netcdf(path)`` is a file ``hdm evaluate downscale`` scores with its baselines.

How the members are drawn is one :class:`~hdm.downscaling.config.EnsembleConfig`: pass it
as ``config=`` or its fields as keyword arguments (``members=16, guidance="mmps"``).
"""

from __future__ import annotations

import json
import logging
import time as _time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from hdm.conditioning.ensembles import draw_members
from hdm.conditioning.guidance import make_guidance
from hdm.conditioning.inflation import (
    InflationConfig,
    estimate_inflation,
    inflate_members,
    parse_inflation,
)
from hdm.conditioning.observations import ObservationError
from hdm.conditioning.profiles import Profile, ProfileError
from hdm.conditioning.teleport import guided_start, observed_basis
from hdm.data.schema import LAT, LON, MEMBER, TIME
from hdm.data.units import to_units
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.inputs import (
    ObservationSetup,
    crop_to_domain,
    model_fields,
    observation_setup,
    select_times,
    station_observations,
)
from hdm.downscaling.output import (
    attach_inputs,
    cf_ensemble,
    ensemble_dataset,
    provenance_attrs,
)
from hdm.downscaling.prior import Prior, channel_name, load_prior, target_grid
from hdm.downscaling.soundings import PROFILE_UNITS, read_profiles
from hdm.hilbert.checkpoints import required_model_statistics
from hdm.hilbert.devices import denoiser_device
from hdm.hilbert.gaussian import GaussianStart, TeleportError, check_varsigma
from hdm.hilbert.grids import Grid, LatLonGrid
from hdm.hilbert.regime import LevelError, spacing_ratio
from hdm.hilbert.sampling import NEEDS_STATISTICS, default_steps, make_sampler

log = logging.getLogger("hdm")

__all__ = [
    "check_solver_statistics",
    "downscale",
    "inflate_ensemble",
    "inflation_factor",
    "noise_settings",
    "profile_noise_settings",
    "read_run_profiles",
    "resolve_teleport_level",
    "small_scale_levels",
    "teleport_level",
]


def inflation_factor(
    prior: Prior,
    grid: LatLonGrid,
    setup: ObservationSetup,
    inflation: float | str | None,
    options: InflationConfig,
) -> tuple[float, dict]:
    """λ for a run: 1 for None, the number given, or for "auto" the estimate from the
    run's observations (:func:`~hdm.conditioning.inflation.estimate_inflation`, made with
    ``options``); and the dataset attributes that record it (``inflation`` and, for
    "auto", the estimate's ``inflation_*`` in physical units).

    Raises:
        ObservationError: "auto" on a prior of several channels (the estimate is made
            from one variable's station residuals and one-channel prior draws), or
            observations it cannot be estimated from; before anything is drawn.
    """
    mode = parse_inflation(inflation)
    if mode != "auto":
        factor = float(mode or 1.0)
        return factor, {"inflation": factor}
    if len(prior.channels) > 1:
        raise ObservationError(
            f"inflation 'auto' is estimated for one-channel priors; the model {prior.path} "
            f"has {len(prior.channels)} channels ({', '.join(prior.channel_names)}): give "
            "a number (the same λ for every channel) or none"
        )
    estimate = estimate_inflation(prior.denoiser, grid, setup.operator, setup.values, options)
    log.info("inflation λ = %.4f (unclipped %.4f)", estimate.factor, estimate.unclipped)
    return estimate.factor, {"inflation": estimate.factor, **estimate.attrs(prior.mean_std[1])}


def _config(config: EnsembleConfig | None, options: dict) -> EnsembleConfig:
    """``config`` (default: the defaults) with the fields in ``options`` replaced."""
    return (config or EnsembleConfig()).replace(**options)


def _draw_ensemble(
    prior: Prior,
    target: LatLonGrid,
    setup: ObservationSetup,
    cfg: EnsembleConfig,
    factor: float,
    progress: bool,
    callback: Callable[[dict], None] | None,
    levels: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The members of every time, (members, time, channel, *grid.shape) float32 in
    physical units, inflated by ``factor``, and the NFE per member. The members of a time
    are seeded by (seed, time) alone; ``levels`` (time,): the small-scale level z bound to
    a conditioned prior at each time (:func:`small_scale_levels`)."""
    sampler = make_sampler(cfg.sampler, cfg.steps, prior.solver_statistics)
    channels = len(prior.channels)
    teleport = _teleport_setup(prior, target, setup, cfg)
    out = np.empty((cfg.members, len(setup.times), channels, *target.shape), dtype=np.float32)
    nfe = 0
    for i in tqdm(range(len(setup.times)), desc="downscale", disable=not progress, unit="time"):
        key = str(np.datetime_as_string(setup.times[i], unit="s"))
        report = None if callback is None else (lambda info, k=key: callback({**info, "time": k}))
        denoiser = prior.denoiser if levels is None else prior.denoiser.at_level(levels[i])
        guided = make_guidance(
            cfg.guidance,
            denoiser,
            setup.operator,
            setup.values[i],
            callback=report,
            **cfg.guidance_options,
        )
        start = None if teleport is None else teleport(setup.values[i])
        x, nfe = draw_members(
            guided,
            sampler,
            target,
            cfg.members,
            seed=cfg.seed,
            key=key,
            batch_size=cfg.batch_size,
            channels=channels,
            start=start,
            bound=cfg.runaway_bound,
        )
        x = inflate_members(x, setup.operator, setup.values[i], target, factor)
        out[:, i] = prior.normaliser.denormalise(x.double().numpy()).astype(np.float32)
    return out, nfe


def small_scale_levels(
    prior: Prior, coarse: dict[str, xr.DataArray] | None, times: np.ndarray
) -> tuple[np.ndarray | None, dict]:
    """For a prior conditioned on its small-scale level (:mod:`hdm.hilbert.regime`): the
    normalised level ẑ of each time, estimated from the coarse field's own finest scales,
    and the attributes that record it; without a coarse field the training fields' mean
    level (z = 0), said in a log line. (None, {}) for any other prior.

    Raises:
        ObservationError: a coarse field the level cannot be estimated from (fewer than
            4 cells per axis, cells outside the factors the model was fitted for).
    """
    regime = getattr(prior.denoiser, "regime", None)
    if regime is None:
        return None, {}
    if not coarse:
        log.info("no coarse field: the small-scale level is the training mean (z = 0)")
        return np.zeros(len(times)), {"small_scale_level_source": "training mean"}
    ((name, field),) = coarse.items()
    lat, lon = field[LAT].values, field[LON].values
    values = prior.normaliser.normalise(field.sel({TIME: times}).to_dataset(name=name))[name]
    ratio = spacing_ratio(lat, lon, prior.grid)
    try:
        levels = regime.estimate(values.values, lat, ratio)
    except LevelError as exc:
        raise ObservationError(f"the coarse field of {name!r}: {exc}") from exc
    fit = regime.estimator_at(ratio)
    log.info(
        "small-scale level from the coarse field (x%.3g, correlation %.2f in training): z = %s",
        ratio,
        fit.correlation,
        " ".join(f"{z:+.2f}" for z in levels),
    )
    attrs = {
        "small_scale_level_source": f"coarse field, x{ratio:.4g}",
        "small_scale_level": json.dumps([round(float(z), 4) for z in levels]),
    }
    return levels, attrs


def teleport_level(prior: Prior, target: LatLonGrid, teleport: float | str) -> float:
    """ς* for ``teleport`` ("auto": the level measured for the model; a number: itself),
    checked: the model has Gaussian statistics, on the grid sampled, and ς* lies in the
    process's range (:class:`~hdm.hilbert.gaussian.TeleportError` naming what is wrong)."""
    gaussian, varsigma = prior.teleport_statistics(teleport)
    gaussian.check_grid(target, f"the Gaussian statistics of {prior.path}")
    return check_varsigma(prior.denoiser.process, varsigma)


def resolve_teleport_level(
    prior: Prior, target: LatLonGrid, teleport: float | str | None
) -> float | None:
    """The ς* the members start from, or None (from N(0, Q) at t_max).

    ``teleport``: None (off); "auto" or a level (required: a
    :class:`~hdm.hilbert.gaussian.TeleportError` names what is missing, as
    :func:`teleport_level`); "available" (the default of
    :class:`~hdm.downscaling.config.EnsembleConfig`): the model's measured ς* where it has
    Gaussian statistics with a measured ς* on the grid sampled, else None, with a log line
    saying why (a model without ``gaussian.pt``, statistics without a ς*, a zero-shot
    grid)."""
    if teleport is None:
        return None
    if teleport != "available":
        return teleport_level(prior, target, teleport)
    try:
        return teleport_level(prior, target, "auto")
    except TeleportError as exc:
        log.info("not teleporting (sampling from t_max): %s", exc)
        return None


def warn_few_steps_from_t_max(ens: EnsembleConfig) -> None:
    """A warning when Heun runs below its default steps without teleportation (from
    t_max: ``teleport`` resolved to None, as at ``--scale 2`` or with ``--teleport
    none``): teleported, 13 steps lose nothing measurable, but from t_max the early
    high-noise steps are too coarse (UK t2m, 4 steps: members 6.6 K from the truth,
    stations 11 K off, with no run-away to stop them)."""
    if ens.teleport is None and ens.sampler == "heun" and ens.steps < default_steps("heun"):
        log.warning(
            "sampler 'heun' with %d steps from t_max (no teleportation): below the %d "
            "that the checks cover without a Gaussian start; expect members far from "
            "the inputs (measured on the shipped UK t2m model: with 4 steps, members "
            "6.6 K from the truth)", ens.steps,
            default_steps("heun"),
        )  # fmt: skip


def check_solver_statistics(prior: Prior, target: LatLonGrid, sampler: str) -> None:
    """For the v3 sampler: the model has its statistics, made on the grid sampled (a
    :class:`~hdm.hilbert.solver_statistics.SolverStatisticsError` saying what to do)."""
    if sampler not in NEEDS_STATISTICS:
        return
    stats = required_model_statistics(prior.solver_statistics, prior.path, sampler)
    stats.check_grid(target, f"the model statistics of {prior.path}")


def _teleport_setup(
    prior: Prior, target: LatLonGrid, setup: ObservationSetup, cfg: EnsembleConfig
) -> Callable[[np.ndarray], GaussianStart] | None:
    """None without teleportation; else values (n_obs,) → the guided start at ς*, with the
    basis seen through the run's operator computed once (:mod:`hdm.conditioning.teleport`)."""
    if cfg.teleport is None:
        return None
    varsigma = teleport_level(prior, target, cfg.teleport)
    gaussian = prior.gaussian
    observed = observed_basis(gaussian, setup.operator)
    process = prior.denoiser.process
    log.info("teleporting to ς* = %.4g (%d modes)", varsigma, gaussian.rank)
    return lambda y: guided_start(gaussian, process, varsigma, setup.operator, y, observed)


def noise_settings(prior: Prior, cfg: EnsembleConfig) -> tuple[dict[str, float], dict[str, float]]:
    """The coarse noise std of every channel (by channel name: ``t2m``, ``u@850``) and the
    station noise std of every single-level variable, in their units: the config's, else
    the defaults (:mod:`hdm.downscaling.config`)."""
    coarse = {
        channel_name(v, lev): cfg.coarse_noise_for(
            channel_name(v, lev), prior.channel_stats(v, lev)[1]
        )
        for v, lev in prior.channels
    }
    station = {
        v: cfg.station_noise_for(v, prior.stats(v)[1])
        for v in prior.variables
        if not prior.levels_of(v)
    }
    return coarse, station


def profile_noise_settings(prior: Prior, cfg: EnsembleConfig) -> dict[str, float]:
    """The soundings' noise std of every pressure-level channel (``u@850``), in its
    units (:meth:`~hdm.downscaling.config.EnsembleConfig.profile_noise_for`)."""
    return {
        channel_name(v, lev): cfg.profile_noise_for(
            channel_name(v, lev), prior.channel_stats(v, lev)[1]
        )
        for v, lev in prior.levels
    }


def read_run_profiles(sources: Sequence[str | Path | Profile], prior: Prior) -> list[Profile]:
    """Profiles from files (IGRA2 sounding or derived files, CSV profile tables;
    :func:`hdm.downscaling.soundings.read_profiles`) or given as :class:`Profile` objects,
    for a prior with pressure levels: IGRA2 files give the variables the model has."""
    if not prior.levels:
        raise ProfileError(
            f"the model {prior.path} has no pressure levels (its channels are "
            f"{list(prior.channel_names)}): soundings observe multi-level priors, e.g. "
            "data/checkpoints/rhine_levels"
        )
    wanted = [v for v in PROFILE_UNITS if v in prior.variables and prior.levels_of(v)]
    out: list[Profile] = []
    for source in sources:
        if isinstance(source, Profile):
            out.append(source)
            continue
        if not wanted and Path(source).suffix.lower() != ".csv":
            raise ProfileError(
                f"{source}: a sounding reports {sorted(PROFILE_UNITS)}; the model's "
                f"pressure-level variables are {sorted({v for v, _ in prior.levels})}"
            )
        out.extend(read_profiles(source, wanted))
    if not out:
        raise ProfileError(f"no soundings in {[str(s) for s in sources]}")
    return out


def downscale(
    model: str | Path | Prior,
    coarse: xr.DataArray | xr.Dataset | None = None,
    stations: xr.Dataset | pd.DataFrame | None = None,
    *,
    profiles: Sequence[str | Path | Profile] | None = None,
    config: EnsembleConfig | None = None,
    grid: int | Grid | xr.Dataset | xr.DataArray | None = None,
    times: Sequence | slice | None = None,
    nan: str = "drop",
    require_station_overlap: bool = True,
    inflation_options: InflationConfig | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    **options,
) -> xr.Dataset:
    """Posterior ensembles of the model's variable given coarse fields and/or stations.

    Args:
        model: a ``model.pt`` path (or its folder), or a :class:`Prior`.
        coarse: the coarse field (time, lat, lon) in physical units on any regular lat/lon
            grid over the domain; each cell (from CF bounds or midpoints) observes the
            area-weighted mean of the fine field over it
            (:meth:`~hdm.conditioning.observations.CoarseGrain.for_coarse_grid`); on a
            global (spherical) prior, cells of the sphere (area means with the grid's
            quadrature, e.g. :func:`~hdm.data.coarsen.coarse_grain_sphere`'s).
            Its ``units`` attribute, if any, is converted to the model's (°C → K).
            For a multi-level prior, each variable is (time, level, lat, lon) at any of
            the model's levels (hPa).
        stations: obs dataset (dim ``obs``: id, lat, lon, time, value) in physical units,
            converted from ``value``'s ``units`` attribute, if any, to the model's; or a
            pandas DataFrame of a station table's columns, or a Dataset on another single
            dimension (:func:`hdm.downscaling.inputs.station_observations`).
        profiles: soundings for a multi-level prior: IGRA2 sounding or derived-parameter
            files, CSV profile tables (id, lat, lon, time, pressure, variable, value,
            units) or :class:`~hdm.conditioning.profiles.Profile` objects; each observes
            the model's levels within its reported range (log-pressure interpolation,
            :mod:`hdm.conditioning.profiles`) at the nearest field time within
            ``time_tolerance``; soundings outside the run's times are left out.
        config: how the members are drawn (:class:`~hdm.downscaling.config.EnsembleConfig`);
            ``**options`` override its fields (``members=16``, ``guidance="mmps"``,
            ``sampler="em"``, ``steps=50``, ``seed=0``, ``coarse_noise``,
            ``station_noise=0.5``, ``inflation``, ``device="auto"``, ...); the prior's
            model is moved to ``device``.
        grid: where to sample, overriding ``config.scale``: an int refinement factor, a
            LatLonGrid or a dataset on a grid of the model's domain.
        times: the times to downscale (default: all times of ``coarse``; needed when there
            is no coarse field), a list or a slice.
        nan: "drop" (warn and count) or "error" for NaN observations.
        require_station_overlap: False lets a batch chunk hold times without any
            station observation (see :func:`~hdm.downscaling.inputs.observation_setup`).
        inflation_options: how λ is estimated for ``inflation="auto"``.
        progress: a progress bar over the times.
        callback: called with a dict of guidance diagnostics after each guided chunk
            (:mod:`hdm.conditioning.guidance`), with the field's ``time`` added.

    Returns:
        xr.Dataset: the layout of an ``hdm downscale`` store:
        ``{var}(member, time, lat, lon)`` (``(member, time, level, lat, lon)`` on pressure
        levels), ``{var}_mean``, ``{var}_std``, ``{var}_quantile``, in the model's units;
        the inputs (:func:`~hdm.downscaling.output.attach_inputs`): ``{var}_coarse(time,
        coarse_lat, coarse_lon)`` with its ``cell_methods`` ("area: mean" or "area:
        point") and ``station_obs(obs)``, the stations within the run's times; the
        provenance attributes; and the CF-1.8 attributes of every hdm store
        (:func:`~hdm.downscaling.output.cf_ensemble`: ``Conventions``, ``member`` as
        ``standard_name: realization``, time/lat/lon axes with cell bounds, ``hdm_*``
        provenance).
    """
    # over 80 lines: the signature and the docstring (every argument) are 44 of them
    cfg = _config(config, options)
    prior = model if isinstance(model, Prior) else load_prior(model)
    prior.to(cfg.device)
    # any form a user has them in (a DataFrame, a Dataset on another dimension) as the
    # obs Dataset the guidance and the attached inputs read
    stations = station_observations(stations, prior.variables)
    target = target_grid(
        prior, grid if grid is not None else (cfg.scale if cfg.scale != 1 else None)
    )
    check_solver_statistics(prior, target, cfg.sampler)
    cfg = cfg.replace(teleport=resolve_teleport_level(prior, target, cfg.teleport))
    warn_few_steps_from_t_max(cfg)
    coarse_noise, station_noise = noise_settings(prior, cfg)
    profile_noise = profile_noise_settings(prior, cfg)
    if coarse is not None:
        coarse = model_fields(coarse, prior, "coarse field")
        coarse = {v: crop_to_domain(f, prior.grid) for v, f in coarse.items()}
    soundings = None if not profiles else read_run_profiles(profiles, prior)
    field_times = select_times(coarse, times)
    setup = observation_setup(
        prior,
        target,
        coarse,
        stations,
        field_times,
        coarse_noise=coarse_noise,
        station_noise=station_noise,
        time_tolerance=cfg.time_tolerance,
        nan=nan,
        require_station_overlap=require_station_overlap,
        profiles=soundings,
        profile_noise=profile_noise,
    )
    t0 = _time.perf_counter()
    options_ = inflation_options or InflationConfig(
        sampler=cfg.sampler, steps=cfg.steps, seed=cfg.seed
    )
    factor, inflation_attrs = inflation_factor(prior, target, setup, cfg.inflation, options_)
    levels, level_attrs = small_scale_levels(prior, coarse, field_times)
    out, nfe = _draw_ensemble(prior, target, setup, cfg, factor, progress, callback, levels)
    wall = _time.perf_counter() - t0
    ds = ensemble_dataset(out, prior, target, field_times, cfg.quantiles)
    ds.attrs.update(
        provenance_attrs(
            prior,
            target,
            cfg,
            coarse_noise={c: coarse_noise[c] for c in setup.coarse_channels},
            station_noise={v: station_noise[v] for v in setup.station_variables},
            station_ids=setup.station_ids,
            profile_noise=profile_noise if setup.soundings else None,
            soundings=setup.soundings,
        ),
        device=str(denoiser_device(prior.denoiser)),
        nfe_per_member=nfe,
        n_observations=int(np.isfinite(setup.values).sum()),
        dropped_nan_observations=setup.dropped_nan,
        wall_time_s=round(wall, 3),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        **inflation_attrs,
        **level_attrs,
    )
    ds = attach_inputs(ds, coarse, stations, cfg.time_tolerance)
    return cf_ensemble(ds, "hdm.downscale")


def inflate_ensemble(
    ds: xr.Dataset,
    model: str | Path | Prior,
    coarse: xr.DataArray | None,
    stations: xr.Dataset | None,
    inflation: float | str = "auto",
    *,
    config: EnsembleConfig | None = None,
    options: InflationConfig | None = None,
    **ensemble_options,
) -> xr.Dataset:
    """An ensemble of :func:`downscale` with the spread its observations do not see
    inflated (:mod:`hdm.conditioning.inflation`), without drawing it again: the same as
    ``downscale(..., inflation=inflation)`` with the same inputs and seeds.

    Args:
        ds: the ensemble (``{var}(member, time, lat, lon)``), e.g. a stored ``OUT.zarr``.
        coarse, stations: the inputs it was conditioned on, as for :func:`downscale`.
        inflation: "auto" or a number ≥ 1.
        config, ensemble_options: the run's ensemble config (its noise stds and quantiles
            are used; the default estimates λ with the sampler, steps and seed recorded
            in ``ds``).
        options: how λ is estimated (default: the run's sampler, steps and seed).

    Returns:
        a new dataset: inflated members, their summaries, the input's stored inputs
        and attributes plus ``inflation`` (and the estimate's ``inflation_*``
        attributes for "auto"), with the CF attributes of :func:`downscale`'s.
    """
    cfg = _config(config, ensemble_options)
    prior = model if isinstance(model, Prior) else load_prior(model)
    mode = parse_inflation(inflation)
    if mode is None:
        return ds
    name = prior.variable  # the estimate of λ is made for one-variable models
    grid = target_grid(prior, ds)
    mean, std = prior.mean_std
    times = ds[TIME].values
    if coarse is not None:
        coarse = {
            v: f.sel({TIME: times}) for v, f in model_fields(coarse, prior, "coarse field").items()
        }
    coarse_noise, station_noise = noise_settings(prior, cfg)
    setup = observation_setup(
        prior,
        grid,
        coarse,
        stations,
        times,
        coarse_noise=coarse_noise,
        station_noise=station_noise,
        time_tolerance=cfg.time_tolerance,
    )
    # the stations must be those the members were conditioned on: λ weighs their
    # residuals, and the inflation keeps the members' values there
    if "stations" in ds.attrs:
        recorded = {s for s in str(ds.attrs["stations"]).split(",") if s}
        if recorded != set(setup.station_ids):
            given, run = ", ".join(sorted(setup.station_ids)), ", ".join(sorted(recorded))
            raise ValueError(
                f"the stations given ({given or 'none'}) are not those the ensemble was "
                f"conditioned on ({run or 'none'}, its 'stations' attribute): give the run's "
                "own stations"
            )
    options = options or InflationConfig(
        sampler=str(ds.attrs.get("sampler", "em")),
        steps=int(ds.attrs.get("steps", 50)),
        seed=int(ds.attrs.get("seed", 0)),
    )
    factor, inflation_attrs = inflation_factor(prior, grid, setup, mode, options)
    members = to_units(ds[name], prior.units[name], f"the ensemble {name}")
    members = members.transpose(MEMBER, TIME, LAT, LON).values.astype(np.float64)
    out = np.empty(members.shape, dtype=np.float32)
    for i in range(len(times)):
        x = torch.as_tensor((members[:, i] - mean) / std)[:, None]
        x = inflate_members(x, setup.operator, setup.values[i], grid, factor)
        out[:, i] = (x[:, 0].numpy() * std + mean).astype(np.float32)
    inflated = ensemble_dataset(out, prior, grid, times, cfg.quantiles)
    for var in ds.data_vars:
        if MEMBER not in ds[var].dims and var not in inflated:
            inflated[var] = ds[var]
    inflated.attrs = {**ds.attrs, **inflation_attrs}
    return cf_ensemble(inflated, "hdm.inflate_ensemble")
