"""``hdm.downscale``: coarse fields + station observations → high-resolution ensembles.

The composition of the main job (ARCHITECTURE.md, "How data flows"):

1. the trained prior (``model.pt``: denoiser, grid, normaliser) is loaded;
2. the target grid is the training grid, a refinement of it (zero-shot super-resolution:
   ``grid=2`` samples at twice the resolution) or any lat-lon grid of the same domain;
3. observations, in physical units, become one :class:`Composite` operator on that grid:
   the coarse field's cells (:class:`CoarseGrain`, block means) and the stations
   (:class:`PointSample`, bilinear), each with its own noise std; values are normalised
   with the model's statistics (the operators average, so they commute with the affine
   normalisation);
4. for every time, ``members`` posterior samples are drawn with the guided sampler,
   seeded per time (:func:`hdm.conditioning.ensembles.member_seed`);
5. the result is an ``xr.Dataset``: the variable on (member, time, lat, lon) in physical
   units, its mean, std and quantiles, and provenance attributes.

Station observations are an obs dataset (dim ``obs``; coords ``id``, ``lat``, ``lon``,
``time``; variable ``value``), as read by :func:`hdm.domains.radiosondes.read_station_table`
or made by :func:`~hdm.domains.radiosondes.simulate_observations`. Each observation is
matched to the nearest field time within ``time_tolerance``; NaN values are dropped with
a warning that counts them (``nan="error"`` raises instead).
"""

from __future__ import annotations

import logging
import os
import shutil
import time as _time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dask.array
import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

import hdm
from hdm.conditioning.ensembles import EnsembleConfig, draw_members, summarise
from hdm.conditioning.inflation import (
    InflationConfig,
    estimate_inflation,
    inflate_members,
    parse_inflation,
)
from hdm.conditioning.observations import (
    CoarseGrain,
    Composite,
    ObservationError,
    ObservationOperator,
    PointSample,
)
from hdm.data.accessor import grid_of
from hdm.data.normalization import FieldNormaliser, normaliser_from_dict
from hdm.data.schema import LAT, LON, MEMBER, TIME
from hdm.hilbert.grids import Grid, LatLonGrid
from hdm.hilbert.networks import GridError
from hdm.hilbert.training import denoiser_from_checkpoint, load_checkpoint
from hdm.pipelines.config import DownscaleRunConfig

log = logging.getLogger("hdm")

__all__ = [
    "Prior",
    "downscale",
    "inflate_ensemble",
    "inflation_factor",
    "load_prior",
    "observation_setup",
    "target_grid",
]


@dataclass
class Prior:
    """A trained gridded prior: denoiser, its training grid and normalisation."""

    denoiser: torch.nn.Module
    grid: LatLonGrid
    normaliser: FieldNormaliser
    variable: str
    units: str
    path: str
    sha256: str
    metadata: dict

    @property
    def mean_std(self) -> tuple[float, float]:
        mean, std = self.normaliser.channel_stats([(self.variable, None)])
        return float(mean[0]), float(std[0])


def load_prior(path: str | Path) -> Prior:
    """Load ``model.pt`` (or ``checkpoint.pt``; a folder holding one) of a gridded model."""
    from hdm.pipelines.sample import file_sha256

    path = Path(path)
    if path.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"no model.pt or checkpoint.pt in {path}")
    payload = load_checkpoint(path)
    grid = Grid.from_dict(payload["grid"])
    if not isinstance(grid, LatLonGrid):
        raise GridError(
            f"{path} is a model of {grid.describe()}, not of a lat-lon field; "
            "downscaling needs a gridded model (e.g. hdm train configs/atmos/uk_t2m.yaml)"
        )
    normaliser = normaliser_from_dict(payload["normaliser"])
    meta = payload.get("metadata", {})
    variables = meta.get("variables") or [c[0] for c in normaliser.channels]
    if len(variables) != 1:
        raise NotImplementedError(f"downscaling handles one variable, the model has {variables}")
    variable = variables[0]
    return Prior(
        denoiser=denoiser_from_checkpoint(payload),
        grid=grid,
        normaliser=normaliser,
        variable=variable,
        units=str(meta.get("units", {}).get(variable, "")),
        path=str(path),
        sha256=file_sha256(path),
        metadata=meta,
    )


def target_grid(prior: Prior, grid: int | Grid | xr.Dataset | xr.DataArray | None) -> LatLonGrid:
    """The grid to sample on: the training grid (None), a refinement (an int factor), a
    LatLonGrid or the lat/lon of an xarray object; it must cover the training domain."""
    if grid is None:
        return prior.grid
    if isinstance(grid, bool):
        raise GridError(f"grid must be None, an int factor, a grid or a dataset, got {grid!r}")
    if isinstance(grid, int):
        if grid < 1:
            raise GridError(f"the refinement factor must be at least 1, got {grid}")
        return prior.grid.refined(grid)
    if isinstance(grid, xr.Dataset | xr.DataArray):
        grid = grid_of(grid)
    if not isinstance(grid, LatLonGrid):
        raise GridError(f"expected a LatLonGrid, got {type(grid).__name__}")
    if not grid.same_domain(prior.grid):
        raise GridError(
            f"the target grid {grid.describe()} does not span the model's domain "
            f"{prior.grid.describe()}; the model samples on resolutions of its own domain"
        )
    return grid


def _field(obj: xr.Dataset | xr.DataArray, variable: str, what: str) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if variable in obj.data_vars:
            obj = obj[variable]
        elif len(obj.data_vars) == 1:
            obj = next(iter(obj.data_vars.values()))
        else:
            raise KeyError(
                f"the {what} has no variable {variable!r}; present: {list(obj.data_vars)}"
            )
    missing = [d for d in (TIME, LAT, LON) if d not in obj.dims]
    if missing:
        raise ValueError(f"the {what} must have dims (time, lat, lon); missing {missing}")
    return obj.transpose(TIME, LAT, LON)


def _match_times(
    obs_times: np.ndarray, field_times: np.ndarray, tolerance: pd.Timedelta
) -> np.ndarray:
    """Index of the nearest field time of every observation; −1 outside the field's span."""
    ft = field_times.astype("datetime64[ns]").astype(np.int64)
    ot = obs_times.astype("datetime64[ns]").astype(np.int64)
    pos = np.clip(np.searchsorted(ft, ot), 1, len(ft) - 1) if len(ft) > 1 else np.zeros_like(ot)
    if len(ft) > 1:
        left, right = ft[pos - 1], ft[pos]
        nearest = np.where(ot - left <= right - ot, pos - 1, pos)
    else:
        nearest = pos
    dist = np.abs(ot - ft[nearest])
    tol = tolerance.value
    inside = (ot >= ft[0] - tol) & (ot <= ft[-1] + tol)
    bad = np.flatnonzero(inside & (dist > tol))
    if bad.size:
        raise ObservationError(
            f"observation time {str(obs_times[bad[0]])[:19]} matches no field time within "
            f"{tolerance} (nearest {str(field_times[nearest[bad[0]]])[:19]}); "
            f"{bad.size} observation(s) in all. Raise time_tolerance or resample the stations"
        )
    return np.where(inside, nearest, -1)


def first_occurrences(ids: np.ndarray) -> np.ndarray:
    """Indices of the first observation of every station, in order of appearance."""
    _, first = np.unique(np.asarray(ids).astype(str), return_index=True)
    return np.sort(first)


def ensemble_dataset(
    values: np.ndarray | dask.array.Array,
    prior: Prior,
    grid: LatLonGrid,
    times: np.ndarray,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> xr.Dataset:
    """The output layout: ``{var}(member, time, lat, lon)`` from ``values`` (physical
    units) with its ``_mean``, ``_std`` and ``_quantile`` summaries over members. Lazy
    (dask) values give a lazy dataset: the template of a batch store."""
    lat, lon = grid.coords()
    name = prior.variable
    ensemble = xr.DataArray(
        values,
        dims=(MEMBER, TIME, LAT, LON),
        coords={MEMBER: np.arange(values.shape[0]), TIME: times, LAT: lat, LON: lon},
        name=name,
        attrs={"units": prior.units, "long_name": f"{name}, posterior ensemble members"},
    )
    ds = xr.merge([ensemble.to_dataset(), summarise(ensemble, quantiles)])
    ds[LAT].attrs.update(units="degrees_north", standard_name="latitude")
    ds[LON].attrs.update(units="degrees_east", standard_name="longitude")
    return ds


@dataclass
class ObservationSetup:
    """The operator on the target grid and the normalised values, (n_time, n_obs)."""

    operator: ObservationOperator
    values: np.ndarray
    times: np.ndarray
    station_ids: tuple[str, ...]
    dropped_nan: int


def observation_setup(
    prior: Prior,
    grid: LatLonGrid,
    coarse: xr.DataArray | None,
    stations: xr.Dataset | None,
    times: np.ndarray,
    *,
    coarse_noise: float,
    station_noise: float,
    time_tolerance: str = "30min",
    nan: str = "drop",
    require_station_overlap: bool = True,
) -> ObservationSetup:
    """Build the composite operator and the normalised observation values per time.

    Every station of ``stations`` is a row of the operator, whatever ``times`` are (a
    station without an observation at a time has NaN there, which guidance zero-weights),
    so the operator of a time does not depend on which other times are downscaled with
    it. With ``require_station_overlap``, stations none of whose observations fall within
    ``times`` are an error (a batch chunk passes False: its range is checked once)."""
    if nan not in ("drop", "error"):
        raise ValueError(f"nan must be 'drop' or 'error', got {nan!r}")
    mean, std = prior.mean_std
    parts: list[ObservationOperator] = []
    blocks: list[np.ndarray] = []
    dropped = 0
    ids: tuple[str, ...] = ()
    if coarse is not None:
        # The cells are blocks of the training grid, each the mean of its f × f points;
        # on a refined grid the same points are averaged (CoarseGrain.samples_per_cell).
        op = CoarseGrain.from_coarse_coords(
            (coarse[LAT].values, coarse[LON].values), prior.grid, noise=coarse_noise / std
        )
        op.weights(grid)  # raises when a cell holds no point of the target grid
        values = coarse.sel({TIME: times}).values.reshape(len(times), -1).astype(np.float64)
        n_nan = int(np.isnan(values).sum())
        if n_nan:
            if nan == "error":
                raise ObservationError(f"the coarse field has {n_nan} NaN value(s)")
            warnings.warn(f"dropping {n_nan} NaN value(s) of the coarse field", stacklevel=3)
            dropped += n_nan
        parts.append(op)
        blocks.append((values - mean) / std)
    if stations is not None and stations.sizes.get("obs", 0) > 0:
        for name in ("id", "lat", "lon", "time"):
            if name not in stations.coords and name not in stations.data_vars:
                raise ObservationError(f"the station observations have no {name!r}")
        if "value" not in stations.data_vars:
            raise ObservationError(
                f"the station observations have no 'value' variable; present: "
                f"{list(stations.data_vars)}"
            )
        st_ids = stations["id"].values.astype(str)
        order = first_occurrences(st_ids)
        ids = tuple(st_ids[order])
        pts = tuple(
            (float(stations["lat"].values[i]), float(stations["lon"].values[i])) for i in order
        )
        op = PointSample(pts, station_noise / std, ids, "stations")
        op.stencil(grid)  # raises, naming the station, when one lies outside the grid
        index = {sid: k for k, sid in enumerate(ids)}
        values = np.full((len(times), len(ids)), np.nan)
        vals = stations["value"].values.astype(np.float64)
        n_nan = int(np.isnan(vals).sum())
        if n_nan:
            if nan == "error":
                bad = int(np.flatnonzero(np.isnan(vals))[0])
                raise ObservationError(
                    f"{n_nan} station observation(s) are NaN (first: station {st_ids[bad]} at "
                    f"{str(stations['time'].values[bad])[:19]})"
                )
            warnings.warn(f"dropping {n_nan} NaN station observation(s)", stacklevel=3)
            dropped += n_nan
        where = _match_times(stations["time"].values, times, pd.Timedelta(time_tolerance))
        keep = (where >= 0) & np.isfinite(vals)
        if require_station_overlap and not keep.any() and np.isfinite(vals).any():
            raise ObservationError(
                "no station observation falls within the field times "
                f"{str(times[0])[:19]}..{str(times[-1])[:19]}"
            )
        for k in np.flatnonzero(keep):
            values[where[k], index[st_ids[k]]] = (vals[k] - mean) / std
        parts.append(op)
        blocks.append(values)
    if not parts:
        raise ObservationError("give a coarse field, station observations, or both")
    operator = parts[0] if len(parts) == 1 else Composite(tuple(parts))
    return ObservationSetup(operator, np.concatenate(blocks, axis=1), times, ids, dropped)


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
    "auto", the estimate's ``inflation_*`` in physical units)."""
    mode = parse_inflation(inflation)
    if mode != "auto":
        factor = float(mode or 1.0)
        return factor, {"inflation": factor}
    estimate = estimate_inflation(prior.denoiser, grid, setup.operator, setup.values, options)
    log.info("inflation λ = %.4f (unclipped %.4f)", estimate.factor, estimate.unclipped)
    return estimate.factor, {"inflation": estimate.factor, **estimate.attrs(prior.mean_std[1])}


def downscale(
    model: str | Path | Prior,
    coarse: xr.DataArray | xr.Dataset | None = None,
    stations: xr.Dataset | None = None,
    members: int = 16,
    grid: int | Grid | xr.Dataset | xr.DataArray | None = None,
    *,
    times: Sequence | slice | None = None,
    guidance: str = "mmps",
    guidance_options: dict | None = None,
    sampler: str = "em",
    steps: int = 50,
    seed: int = 0,
    coarse_noise: float | None = None,
    station_noise: float = 0.5,
    time_tolerance: str = "30min",
    nan: str = "drop",
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    batch_size: int = 16,
    progress: bool = True,
    require_station_overlap: bool = True,
    inflation: float | str | None = None,
    inflation_options: InflationConfig | None = None,
) -> xr.Dataset:
    """Posterior ensembles of the model's variable given coarse fields and/or stations.

    Args:
        model: a ``model.pt`` path (or its folder), or a :class:`Prior`.
        coarse: the coarse field (time, lat, lon) in physical units, an integer
            coarse-graining of the model's grid (e.g. by :func:`hdm.data.coarsen.coarse_grain`).
        stations: obs dataset (dim ``obs``: id, lat, lon, time, value) in physical units.
        members: ensemble size (≥ 1).
        grid: None (training grid), an int refinement factor, a LatLonGrid or a dataset.
        times: the times to downscale (default: all times of ``coarse``; needed when there
            is no coarse field).
        guidance: "mmps" (default), "sda", "dps" or "replacement"; ``guidance_options``
            its keyword arguments.
        sampler, steps: the sampler (default Euler–Maruyama, 50 steps = 50 NFE: chosen on a
            training-period day over Heun 25, DPM-Solver++ 25 and predictor–corrector 25
            for its RMSE, CRPS and small-scale power; see BENCHMARKS.md).
        seed: the run's seed; members of a time depend only on (seed, time).
        coarse_noise: std of the coarse observations (physical units; default 2 % of the
            training std). station_noise: std of the station observations (default 0.5).
        time_tolerance: pandas offset string, the tolerance of the station time matching.
        nan: "drop" (warn and count) or "error" for NaN observations.
        require_station_overlap: False lets a batch chunk hold times without any
            station observation (see :func:`observation_setup`).
        inflation: None (default) leaves the members as drawn; a number λ ≥ 1 multiplies
            the part of every member's deviation from the ensemble mean that the
            observations do not see; "auto" estimates λ from the stations' residuals
            about the interpolated coarse field against the prior's own
            (:mod:`hdm.conditioning.inflation`, configured by ``inflation_options``).

    Returns:
        xr.Dataset: ``{var}(member, time, lat, lon)``, ``{var}_mean``, ``{var}_std``,
        ``{var}_quantile``, in the model's units, with provenance attributes.
    """
    prior = model if isinstance(model, Prior) else load_prior(model)
    if isinstance(members, bool) or int(members) < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    cfg = EnsembleConfig(
        members=int(members),
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        guidance_options=dict(guidance_options or {}),
        batch_size=batch_size,
        seed=seed,
    )
    target = target_grid(prior, grid)
    mean, std = prior.mean_std
    coarse_noise = 0.02 * std if coarse_noise is None else float(coarse_noise)
    if coarse is not None:
        coarse = _field(coarse, prior.variable, "coarse field")
        field_times = coarse[TIME].values
    elif times is None:
        raise ValueError("without a coarse field, give the times to downscale")
    else:
        field_times = np.asarray(pd.to_datetime(list(times)).values)
    if times is not None and coarse is not None:
        if isinstance(times, slice):
            field_times = coarse.sel({TIME: times})[TIME].values
        else:
            wanted = pd.to_datetime(list(times)).values
            missing = np.setdiff1d(wanted, coarse[TIME].values)
            if missing.size:
                raise ValueError(
                    f"time {str(missing[0])[:19]} not in the coarse field (its times run "
                    f"{str(field_times[0])[:19]}..{str(field_times[-1])[:19]})"
                )
            field_times = wanted
    if len(field_times) == 0:
        raise ValueError(f"the time selection {times!r} selects no time of the coarse field")
    setup = observation_setup(
        prior,
        target,
        coarse,
        stations,
        field_times,
        coarse_noise=coarse_noise,
        station_noise=station_noise,
        time_tolerance=time_tolerance,
        nan=nan,
        require_station_overlap=require_station_overlap,
    )
    t0 = _time.perf_counter()
    options = inflation_options or InflationConfig(sampler=sampler, steps=steps, seed=seed)
    factor, inflation_attrs = inflation_factor(prior, target, setup, inflation, options)
    out = np.empty((cfg.members, len(field_times), *target.shape), dtype=np.float32)
    nfe = 0
    for i in tqdm(range(len(field_times)), desc="downscale", disable=not progress, unit="time"):
        key = str(np.datetime_as_string(field_times[i], unit="s"))
        x, nfe = draw_members(prior.denoiser, target, setup.operator, setup.values[i], cfg, key=key)
        x = inflate_members(x, setup.operator, setup.values[i], target, factor)
        out[:, i] = (x[:, 0].double().numpy() * std + mean).astype(np.float32)
    wall = _time.perf_counter() - t0
    ds = ensemble_dataset(out, prior, target, field_times, quantiles)
    name = prior.variable
    ds.attrs.update(
        {
            "title": f"hdm downscaled {name} ensemble",
            "hdm_version": hdm.__version__,
            "checkpoint": prior.path,
            "checkpoint_hash": prior.sha256,
            "guidance": guidance,
            "guidance_options": repr(cfg.guidance_options),
            "sampler": sampler,
            "steps": steps,
            "nfe_per_member": nfe,
            "members": cfg.members,
            "seed": seed,
            "grid": target.describe(),
            "training_grid": prior.grid.describe(),
            "coarse_noise_std": coarse_noise if coarse is not None else "none",
            "station_noise_std": station_noise if setup.station_ids else "none",
            "stations": ",".join(setup.station_ids),
            "n_observations": int(np.isfinite(setup.values).sum()),
            "dropped_nan_observations": setup.dropped_nan,
            "wall_time_s": round(wall, 3),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **inflation_attrs,
        }
    )
    return ds


def inflate_ensemble(
    ds: xr.Dataset,
    model: str | Path | Prior,
    coarse: xr.DataArray | None,
    stations: xr.Dataset | None,
    inflation: float | str = "auto",
    *,
    station_noise: float = 0.5,
    coarse_noise: float | None = None,
    options: InflationConfig | None = None,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> xr.Dataset:
    """An ensemble of :func:`downscale` with the spread its observations do not see
    inflated (:mod:`hdm.conditioning.inflation`), without drawing it again: the same as
    ``downscale(..., inflation=inflation)`` with the same inputs and seeds.

    Args:
        ds: the ensemble (``{var}(member, time, lat, lon)``), e.g. a stored ``OUT.zarr``.
        coarse, stations: the inputs it was conditioned on, as for :func:`downscale`.
        inflation: "auto" or a number ≥ 1. station_noise, coarse_noise: as the run's.
        options: how λ is estimated (default: the run's sampler, steps and seed).

    Returns:
        a new dataset: inflated members, their summaries, the input's attributes plus
        ``inflation`` (and the estimate's ``inflation_*`` attributes for "auto").
    """
    prior = model if isinstance(model, Prior) else load_prior(model)
    mode = parse_inflation(inflation)
    if mode is None:
        return ds
    name = prior.variable
    grid = target_grid(prior, ds)
    mean, std = prior.mean_std
    times = ds[TIME].values
    if coarse is not None:
        coarse = _field(coarse, name, "coarse field").sel({TIME: times})
    setup = observation_setup(
        prior,
        grid,
        coarse,
        stations,
        times,
        coarse_noise=0.02 * std if coarse_noise is None else float(coarse_noise),
        station_noise=station_noise,
    )
    options = options or InflationConfig(
        sampler=str(ds.attrs.get("sampler", "em")),
        steps=int(ds.attrs.get("steps", 50)),
        seed=int(ds.attrs.get("seed", 0)),
    )
    factor, inflation_attrs = inflation_factor(prior, grid, setup, mode, options)
    members = ds[name].transpose(MEMBER, TIME, LAT, LON).values.astype(np.float64)
    out = np.empty(members.shape, dtype=np.float32)
    for i in range(len(times)):
        x = torch.as_tensor((members[:, i] - mean) / std)[:, None]
        x = inflate_members(x, setup.operator, setup.values[i], grid, factor)
        out[:, i] = (x[:, 0].numpy() * std + mean).astype(np.float32)
    inflated = ensemble_dataset(out, prior, grid, times, quantiles)
    for var in ds.data_vars:
        if MEMBER not in ds[var].dims and var not in inflated:
            inflated[var] = ds[var]
    inflated.attrs = {**ds.attrs, **inflation_attrs}
    return inflated


# ------------------------------------------------------------------ command line job


def shipped_station_list() -> xr.Dataset:
    """The IGRA2 station list shipped in ``data/atmos/igra2``."""
    from hdm.domains.radiosondes import atmos_data_dir, read_igra2_station_list

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two blank records of the shipped list
        return read_igra2_station_list(atmos_data_dir() / "igra2" / "igra2-station-list.txt")


def stations_by_id(ids: Sequence[str], station_list: xr.Dataset | None = None) -> xr.Dataset:
    """The rows of the IGRA2 station list with these ids, in the order given."""
    import difflib

    table = station_list if station_list is not None else shipped_station_list()
    known = table["id"].values.astype(str)
    where = {sid: i for i, sid in enumerate(known)}
    rows = []
    for sid in ids:
        sid = sid.strip()
        if sid not in where:
            close = difflib.get_close_matches(sid, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise KeyError(f"station {sid!r} is not in the IGRA2 station list{hint}")
        rows.append(where[sid])
    return table.isel(station=rows)


def parse_ids(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def read_stations(paths: str | Path | Sequence[str | Path]) -> xr.Dataset:
    """Station observations: CSV tables (id, lat, lon, time, value) or IGRA2 sounding
    files, whose *surface* levels (LVLTYP2 = 1) give the temperature (K), as obs.

    Several paths (a list, or one string with commas) are concatenated along ``obs``.
    """
    from hdm.domains.radiosondes import read_igra2_soundings, read_station_table

    if isinstance(paths, str | Path):
        paths = [p for p in str(paths).split(",") if p.strip()]
    parts = []
    for path in map(Path, paths):
        if path.suffix.lower() == ".csv":
            parts.append(read_station_table(path)[["value"]])
            continue
        soundings = read_igra2_soundings(path)
        surface = soundings.isel(obs=np.flatnonzero(soundings["level_type2"].values == 1))
        if surface.sizes["obs"] == 0:
            raise ObservationError(f"{path}: no surface level (LVLTYP2 = 1) in any sounding")
        obs = surface[["temperature"]].rename({"temperature": "value"})
        obs["value"].attrs["units"] = "K"
        keep = [c for c in ("id", "lat", "lon", "time") if c in obs.coords]
        parts.append(obs.reset_coords([c for c in obs.coords if c not in keep], drop=True))
    if not parts:
        raise ObservationError("no station file given")
    return parts[0] if len(parts) == 1 else xr.concat(parts, dim="obs")


def attach_inputs(
    ds: xr.Dataset, variable: str, coarse: xr.DataArray | None, stations: xr.Dataset | None
) -> xr.Dataset:
    """Store the conditioning inputs next to the ensemble (what ``hdm evaluate`` reads):
    ``{var}_coarse(time, coarse_lat, coarse_lon)`` and ``station_obs(obs)``."""
    if coarse is not None:
        c = coarse.sel(time=ds.time.values).rename({LAT: "coarse_lat", LON: "coarse_lon"})
        c = c.reset_coords(drop=True)
        keep = [k for k in ("lat_weight",) if k in coarse.coords]
        if keep:
            c = c.assign_coords(coarse_lat_weight=("coarse_lat", coarse[keep[0]].values))
        ds[f"{variable}_coarse"] = c.astype(np.float32).assign_attrs(
            units=coarse.attrs.get("units", ds[variable].attrs.get("units", "")),
            long_name=f"coarse {variable} used as conditioning input",
        )
    if stations is not None and stations.sizes.get("obs", 0) > 0:
        t0, t1 = ds.time.values[0], ds.time.values[-1]
        tt = stations["time"].values
        hour = np.timedelta64(1, "h")
        sel = stations.isel(obs=np.flatnonzero((tt >= t0 - hour) & (tt <= t1 + hour)))
        ds["station_obs"] = xr.DataArray(
            sel["value"].values.astype(np.float64),
            dims="obs",
            coords={
                "obs_id": ("obs", sel["id"].values.astype(str)),
                "obs_lat": ("obs", sel["lat"].values.astype(np.float64)),
                "obs_lon": ("obs", sel["lon"].values.astype(np.float64)),
                "obs_time": ("obs", sel["time"].values),
            },
            attrs={"long_name": "station observations used as conditioning input"},
        )
    return ds


def write_output(ds: xr.Dataset, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write zarr (``.zarr``) or CF netCDF (``.nc``), never leaving a half-written file."""
    from hdm.data.stores import write_netcdf_cf, write_zarr_ensemble

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".nc":
        provenance = {
            "checkpoint_hash": ds.attrs["checkpoint_hash"],
            "config": {k: str(v) for k, v in ds.attrs.items() if k not in ("history",)},
            "seed": ds.attrs["seed"],
        }
        return write_netcdf_cf(ds, out, provenance)
    if out.suffix != ".zarr":
        raise ValueError(f"--out must end in .zarr or .nc, got {out.name}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_zarr_ensemble(ds, tmp, mode="w")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


OPTION_KEYS = {
    # ``hdm downscale`` option (argparse dest, run_downscale keyword) -> config key
    "checkpoint": "checkpoint",
    "coarse": "inputs.coarse",
    "truth": "inputs.truth",
    "factor": "inputs.factor",
    "stations": "stations.file",
    "simulate_stations": "stations.simulate",
    "station_noise": "stations.noise",
    "every": "times.every",
    "members": "ensemble.members",
    "scale": "ensemble.scale",
    "guidance": "ensemble.guidance",
    "sampler": "ensemble.sampler",
    "steps": "ensemble.steps",
    "seed": "ensemble.seed",
    "coarse_noise": "ensemble.coarse_noise",
    "inflation": "ensemble.inflation",
    "chunk_size": "batch.chunk_size",
    "scheduler": "batch.scheduler",
    "workers": "batch.workers",
    "torch_threads": "batch.torch_threads",
    "out": "output.out",
    "plots": "output.plots",
}


def downscale_config(
    base: dict | None = None, overrides: list[str] | None = None, **options
) -> DownscaleRunConfig:
    """A :class:`DownscaleRunConfig` from a config mapping (a YAML file's), options named as
    in :data:`OPTION_KEYS` (None: not given) and ``--set key=value`` overrides, in that
    order of precedence from lowest to highest."""
    import copy

    from hdm.pipelines.config import apply_overrides, downscale_config_from_dict

    raw = copy.deepcopy(base or {})
    for name, value in options.items():
        if value is None:
            continue
        if name == "times":
            start, end = value
            raw.setdefault("times", {}).update(start=str(start), end=str(end))
            continue
        if name not in OPTION_KEYS:
            raise TypeError(f"unknown downscale option {name!r}; options: {sorted(OPTION_KEYS)}")
        *sections, key = OPTION_KEYS[name].split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = str(value) if isinstance(value, Path) else value
    return downscale_config_from_dict(apply_overrides(raw, overrides))


def run_downscale(
    checkpoint: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """The ``hdm downscale`` job from keyword options (see :data:`OPTION_KEYS`; ``times``
    is a (start, end) pair); in this process unless ``scheduler`` says otherwise."""
    options.setdefault("scheduler", "synchronous")
    cfg = downscale_config(checkpoint=checkpoint, out=out, **options)
    return run_downscale_job(cfg, resume=resume, overwrite=overwrite, progress=progress)


def run_downscale_job(
    cfg: DownscaleRunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    run_id: str | None = None,
) -> dict:
    """Run the batch job (:func:`hdm.pipelines.batch.run_batch`), then the PNG maps of the
    first and last time (mean, std, members, stations, the truth when given)."""
    from hdm.data.open import open_fields
    from hdm.data.stores import open_store
    from hdm.pipelines.batch import run_batch
    from hdm.plotting import plot_downscale_maps

    summary = run_batch(cfg, resume=resume, overwrite=overwrite, progress=progress, run_id=run_id)
    summary["pngs"] = []
    out = Path(summary["out"])
    if not cfg.output.plots or summary["status"] != "done":
        return summary
    ds = open_store(out)
    variable = next(n for n in ds.data_vars if MEMBER in ds[n].dims)
    summary.update(grid=ds.attrs.get("grid", ""), members=int(ds.sizes[MEMBER]))
    st = None
    if "station_obs" in ds:
        st = (ds["obs_lat"].values, ds["obs_lon"].values)
    for i in sorted({0, ds.sizes[TIME] - 1}):
        t = ds[TIME].values[i]
        truth_i = None
        if cfg.inputs.truth and cfg.ensemble.scale == 1:
            path = cfg.inputs.truth
            truth_i = open_fields(path.split(",") if "," in path else path, variable, time=[t])
            truth_i = truth_i[variable].isel({TIME: 0}).values
        png = out.with_name(f"{out.stem}_{str(t)[:13]}.png")
        summary["pngs"].append(
            str(plot_downscale_maps(png, ds, variable, i, truth=truth_i, stations=st))
        )
    return summary
