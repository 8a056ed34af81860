"""The output of a downscaling run: the ensemble dataset, its provenance, writing it.

Layout (:func:`ensemble_dataset`): ``{var}(member, time, lat, lon)`` in the model's
units, ``{var}_mean``, ``{var}_std`` (ddof = 1) and ``{var}_quantile`` over members
(:func:`summarise`), and the conditioning inputs next to them (:func:`attach_inputs`):
``{var}_coarse(time, coarse_lat, coarse_lon)`` and ``station_obs(obs)``. The provenance
attributes (model, hash, guidance, sampler, seed, grids, noise stds, stations) are made
in one place, :func:`provenance_attrs`, for :func:`hdm.downscale` and for batch stores.
:func:`cf_ensemble` gives a dataset the CF attributes and ``hdm_*`` provenance of every
hdm store (:func:`hdm.data.stores.cf_output`), so that :func:`hdm.downscale` returns what
``hdm downscale`` writes; :func:`write_output` writes zarr or CF netCDF without ever
leaving a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr

from hdm._version import __version__
from hdm.data.coarsen import cell_bounds
from hdm.data.schema import COORD_ATTRS, KNOWN_VARIABLES, LAT, LEVEL, LON, MEMBER, TIME
from hdm.data.stores import cf_output, write_netcdf_cf, write_zarr_ensemble
from hdm.data.units import to_units
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.inputs import point_sampled, stations_in_units, within_times
from hdm.downscaling.prior import Prior
from hdm.hilbert.denoisers import network_count
from hdm.hilbert.grids import Grid, LatLonGrid

__all__ = [
    "attach_inputs",
    "cf_ensemble",
    "ensemble_dataset",
    "noise_std",
    "output_provenance",
    "provenance_attrs",
    "summarise",
    "training_grid_attrs",
    "write_output",
]


def summarise(
    ensemble: xr.DataArray,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    thresholds: Sequence[float] = (),
) -> xr.Dataset:
    """Mean, std (ddof=1), quantiles and exceedance probabilities over ``member``.

    Returns a Dataset with ``{name}_mean``, ``{name}_std``, ``{name}_quantile``
    (dim ``quantile``) and, for thresholds, ``{name}_exceedance`` (dim ``threshold``).

    CF attributes: the summaries keep the ensemble's ``units`` and ``standard_name`` (a
    mean of temperatures is a temperature) and say how they were made over the members
    (``member`` has ``standard_name: realization``) in ``cell_methods``:
    ``realization: mean``, ``realization: standard_deviation`` and, for the
    exceedance fractions (the mean of the indicator 1{x > threshold}), ``realization:
    mean``. CF has no cell method for a quantile (Appendix E lists none, and its
    conformance rules allow no other), so ``{name}_quantile`` has no ``cell_methods``:
    its ``quantile`` coordinate (``units: 1``) holds the probabilities, and its
    ``long_name`` and ``comment`` say that they are empirical quantiles over the
    realizations.
    """
    if MEMBER not in ensemble.dims:
        raise ValueError(f"the ensemble has no {MEMBER!r} dimension; dims: {ensemble.dims}")
    name = str(ensemble.name or "field")
    units = ensemble.attrs.get("units", "")
    known = KNOWN_VARIABLES.get(name)
    standard_name = ensemble.attrs.get("standard_name") or (known and known.standard_name)
    same = {"units": units, **({"standard_name": standard_name} if standard_name else {})}
    m = ensemble.sizes[MEMBER]
    out = xr.Dataset()
    out[f"{name}_mean"] = ensemble.mean(MEMBER).assign_attrs(
        same, long_name=f"ensemble mean of {name}", cell_methods="realization: mean"
    )
    # One member has no spread: its std and quantiles are undefined (NaN), never 0 and
    # never the member itself, which would read as certainty (the layout stays the same).
    one = {"comment": "undefined for an ensemble of one member"} if m == 1 else {}
    first = ensemble.isel({MEMBER: 0})
    std = ensemble.std(MEMBER, ddof=1) if m > 1 else xr.full_like(first, np.nan)
    out[f"{name}_std"] = std.assign_attrs(
        same,
        long_name=f"ensemble standard deviation of {name} (ddof=1)",
        cell_methods="realization: standard_deviation (sample standard deviation, ddof = 1)",
        **one,
    )
    if quantiles:
        q = ensemble.quantile(list(quantiles), dim=MEMBER)
        if m == 1:
            q = xr.full_like(q, np.nan)
        q["quantile"].attrs = {"long_name": "probability of the quantile", "units": "1"}
        out[f"{name}_quantile"] = q.assign_attrs(
            same,
            long_name=f"empirical quantiles of {name} over members",
            comment=one.get("comment")
            or "quantiles over the realizations, linear between order statistics "
            "(Hyndman and Fan type 7), at the probabilities of the quantile coordinate",
        )
    if thresholds:
        th = xr.DataArray(
            list(thresholds), dims="threshold", attrs={**same, "long_name": f"threshold of {name}"}
        )
        out[f"{name}_exceedance"] = (
            (ensemble > th)
            .mean(MEMBER)
            .assign_attrs(
                units="1",
                long_name=f"fraction of members with {name} above the threshold",
                cell_methods="realization: mean (of the indicator of exceeding the threshold)",
            )
        )
        out = out.assign_coords(threshold=th)
    return out


def ensemble_dataset(
    values: np.ndarray | dask.array.Array,
    prior: Prior,
    grid: LatLonGrid,
    times: np.ndarray,
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> xr.Dataset:
    """The output layout: ``{var}(member, time, lat, lon)`` for every variable of the
    model (``{var}(member, time, level, lat, lon)`` for one on pressure levels, ``level``
    in hPa with CF's ``air_pressure`` attributes), from ``values`` (member, time,
    channel, lat, lon) in physical units (the model's channel order; (member, time, lat,
    lon) for a one-channel model), each with its ``_mean``, ``_std`` and ``_quantile``
    summaries over members. Lazy (dask) values give a lazy dataset: the template of a
    batch store."""
    lat, lon = grid.coords()
    if values.ndim == 4:
        values = values[:, :, None]
    coords = {MEMBER: np.arange(values.shape[0]), TIME: times, LAT: lat, LON: lon}
    parts = []
    for name in prior.variables:
        levels = prior.levels_of(name)
        if levels:
            index = prior.channel_indices(name)
            stacked = (
                dask.array.stack([values[:, :, k] for k in index], axis=2)
                if isinstance(values, dask.array.Array)
                else values[:, :, index]
            )
            level = xr.Variable(LEVEL, np.asarray(levels, dtype=np.float64), COORD_ATTRS[LEVEL])
            ensemble = xr.DataArray(
                stacked,
                dims=(MEMBER, TIME, LEVEL, LAT, LON),
                coords={**coords, LEVEL: level},
                name=name,
            )
        else:
            ensemble = xr.DataArray(
                values[:, :, prior.channel_index(name)],
                dims=(MEMBER, TIME, LAT, LON),
                coords=coords,
                name=name,
            )
        ensemble.attrs = {
            "units": prior.units[name],
            "long_name": f"{name}, posterior ensemble members",
        }
        known = KNOWN_VARIABLES.get(name)
        if known is not None and known.standard_name:
            ensemble.attrs["standard_name"] = known.standard_name
        parts += [ensemble.to_dataset(), summarise(ensemble, quantiles)]
    ds = xr.merge(parts)
    ds[LAT].attrs.update(units="degrees_north", standard_name="latitude")
    ds[LON].attrs.update(units="degrees_east", standard_name="longitude")
    return ds


def _noise_attr(noise: Mapping[str, float] | None) -> float | str:
    """A noise std attribute: the number for one variable, JSON for several, "none"."""
    if not noise:
        return "none"
    if len(noise) == 1:
        return float(next(iter(noise.values())))
    return json.dumps({k: float(v) for k, v in noise.items()}, sort_keys=True)


def noise_std(attrs: Mapping, key: str, variable: str) -> float | None:
    """The noise std of ``variable`` recorded by :func:`provenance_attrs` under ``key``
    (``coarse_noise_std`` or ``station_noise_std``); None where it is "none"."""
    value = attrs.get(key, "none")
    if isinstance(value, int | float | np.number):
        return float(value)
    if value in ("none", ""):
        return None
    return float(json.loads(value)[variable])


def training_grid_attrs(grid: Grid) -> dict[str, str | float]:
    """The attributes of the grid a model was trained on: ``training_grid``, its
    description (:meth:`hdm.hilbert.grids.Grid.describe`, for people), and for each of
    its ``lat`` / ``lon`` axes ``training_grid_lat_spacing_deg`` /
    ``training_grid_lon_spacing_deg``, the spacing of its points in degrees
    (:attr:`hdm.hilbert.grids.Axis.spacing`: L/(n − 1), L/n on a periodic axis) as a
    plain float, for programs (``hdm evaluate`` reads them instead of the text)."""
    spacing = {
        f"training_grid_{a.name}_spacing_deg": float(a.spacing)
        for a in grid.axes
        if a.name in (LAT, LON)
    }
    return {"training_grid": grid.describe(), **spacing}


def provenance_attrs(
    prior: Prior,
    grid: LatLonGrid,
    cfg: EnsembleConfig,
    *,
    coarse_noise: Mapping[str, float] | None,
    station_noise: Mapping[str, float] | None,
    station_ids: Sequence[str],
    profile_noise: Mapping[str, float] | None = None,
    soundings: Sequence[str] = (),
) -> dict:
    """The attributes that say how an ensemble was made (the same for :func:`hdm.downscale`
    and batch stores): the model, its hash and its networks (K of an ensemble prior, member
    m drawn by network m mod K; 1 otherwise), the guidance and its options (JSON), the
    sampler, steps, members, seed, the sampled and training grids, the observation noise
    stds of each observed variable in its units (a number for one variable, JSON for
    several, "none" for an absent source), the stations used, the soundings used
    ("STATION@TIME") and their noise per channel, the inflation factor, the
    teleportation level ς* and the device asked for (:func:`hdm.downscale` records the
    one the members were drawn on; a batch chunk's marker too)."""
    inflation = cfg.inflation
    return {
        "title": f"hdm downscaled {', '.join(prior.variables)} ensemble",
        "hdm_version": __version__,
        "checkpoint": prior.path,
        "checkpoint_hash": prior.sha256,
        "networks": network_count(prior.denoiser),
        "guidance": cfg.guidance,
        "guidance_options": json.dumps(cfg.guidance_options, sort_keys=True),
        "sampler": cfg.sampler,
        "steps": cfg.steps,
        "members": cfg.members,
        "seed": cfg.seed,
        "grid": grid.describe(),
        **training_grid_attrs(prior.grid),
        "coarse_noise_std": _noise_attr(coarse_noise),
        "station_noise_std": _noise_attr(station_noise if station_ids else None),
        "stations": ",".join(station_ids),
        **(
            {
                "soundings": ",".join(soundings),
                "profile_noise_std": _noise_attr(profile_noise),
            }
            if soundings
            else {}
        ),
        "inflation": float(inflation) if isinstance(inflation, float) else 1.0,
        "teleport_varsigma": _teleport_attr(prior, cfg),
        "teleport_gaussian": _gaussian_attr(prior, cfg),
        "device": cfg.device,
    }


def _teleport_attr(prior: Prior, cfg: EnsembleConfig) -> float | str:
    """The ς* the members started from ("none": from N(0, Q) at t_max)."""
    if cfg.teleport is None:
        return "none"
    if cfg.teleport == "auto":
        star = prior.gaussian.varsigma_star if prior.gaussian is not None else None
        return "auto" if star is None else float(star)
    return float(cfg.teleport)


def _gaussian_attr(prior: Prior, cfg: EnsembleConfig) -> str:
    """The Gaussian the members started from (:mod:`hdm.pipelines.gaussian_stats`):
    its modes, fields and shrinkage; "none" without teleportation."""
    if cfg.teleport is None or prior.gaussian is None:
        return "none"
    g = prior.gaussian
    text = f"{g.rank} modes from {g.n_fields} training fields"
    shrink = g.shrinkage
    if shrink:
        text += (
            f", shrunk {1 - shrink['weight']:g} C + {shrink['weight']:g} "
            f"{shrink.get('target', 'T')}, low-pass {shrink.get('lowpass_cells', '?')} cells"
        )
    return text


#: CF attributes of the horizontal axes of the coarse input
_AXIS = {
    LAT: {
        "units": "degrees_north",
        "standard_name": "latitude",
        "axis": "Y",
        "long_name": "latitude of the coarse input grid",
    },
    LON: {
        "units": "degrees_east",
        "standard_name": "longitude",
        "axis": "X",
        "long_name": "longitude of the coarse input grid",
    },
}
#: CF attributes of the stations' auxiliary coordinates
_STATION = {
    LAT: {"units": "degrees_north", "standard_name": "latitude", "long_name": "station latitude"},
    LON: {"units": "degrees_east", "standard_name": "longitude", "long_name": "station longitude"},
    TIME: {"standard_name": "time", "long_name": "observation time"},
}


def attach_inputs(
    ds: xr.Dataset,
    coarse: Mapping[str, xr.DataArray] | None,
    stations: xr.Dataset | None,
    time_tolerance: str = "30min",
) -> xr.Dataset:
    """Store the conditioning inputs next to the ensemble (what ``hdm evaluate`` reads):
    ``{var}_coarse(time, coarse_lat, coarse_lon)`` for every coarse field, and
    ``station_obs(obs)`` (with ``obs_variable`` when the stations say which variable they
    observe), the observations within the ensemble's times (± ``time_tolerance``), in
    the ensemble's units.

    Their attributes are made here, not copied from the inputs (a GRIB input's
    ``GRIB_Nx`` describes its own grid, its time axis is called a forecast reference
    time): ``units``, ``standard_name`` (that of ``{var}``) and ``long_name``; the coarse
    grid's coordinates are latitude and longitude axes of their own, the stations'
    position and time auxiliary coordinates of ``station_obs``.

    Idempotent: inputs already attached (by :func:`hdm.downscale`, which attaches its
    own) are replaced, not added to: a coarse field given drops the ``{var}_coarse`` of
    the same variable first (and the coarse grid's coordinates, where no other coarse
    field is on them), stations given drop ``station_obs`` and its ``obs_*``
    coordinates."""
    if coarse:
        ds = _without(ds, [f"{v}_coarse" for v in coarse], ("coarse_lat", "coarse_lon"))
    if stations is not None:
        ds = _without(ds, ["station_obs"], ("obs",))
    for variable, field in (coarse or {}).items():
        units = ds[variable].attrs.get("units", "")
        same = {k: ds[variable].attrs[k] for k in ("standard_name",) if k in ds[variable].attrs}
        field = to_units(field, units, f"the coarse field {variable}")
        c = field.sel(time=ds.time.values).rename({LAT: "coarse_lat", LON: "coarse_lon"})
        c = c.reset_coords(drop=True)
        axes = {
            TIME: (TIME, c[TIME].values),  # the valid time, whatever the input called it
            "coarse_lat": ("coarse_lat", c["coarse_lat"].values, _AXIS[LAT]),
            "coarse_lon": ("coarse_lon", c["coarse_lon"].values, _AXIS[LON]),
        }
        if "lat_weight" in field.coords:
            weight = {"long_name": "area weight of the coarse row", "units": "1"}
            axes["coarse_lat_weight"] = ("coarse_lat", field["lat_weight"].values, weight)
        own_bounds = {}  # the file's own cells (CF bounds), where it gave them
        for dim in (LAT, LON):
            bounds = cell_bounds(field, dim)
            if bounds is not None:
                name = f"coarse_{dim}"
                own_bounds[f"{name}_bounds"] = ((name, "bounds"), bounds)
                dim_name, values, attrs = axes[name]
                axes[name] = (dim_name, values, {**attrs, "bounds": f"{name}_bounds"})
        c = c.assign_coords(axes).astype(np.float32)
        c.attrs = {
            "units": field.attrs.get("units", units),
            **same,
            "long_name": f"coarse {variable} used as conditioning input",
            # how the values were observed (hdm evaluate builds its baselines the same way)
            "cell_methods": f"area: {'point' if point_sampled(field) else 'mean'}",
        }
        ds[f"{variable}_coarse"] = c
        ds = ds.assign_coords(own_bounds)
    if stations is not None and stations.sizes.get("obs", 0) > 0:
        inside = within_times(stations["time"].values, ds[TIME].values, time_tolerance)
        sel = _stations_in_ensemble_units(ds, stations.isel(obs=np.flatnonzero(inside)))
        coords = {
            "obs_id": ("obs", sel["id"].values.astype(str), {"long_name": "station id"}),
            "obs_lat": ("obs", sel["lat"].values.astype(np.float64), _STATION[LAT]),
            # in [-180, 180), as the grid's and the guidance's (a table may say 358.5)
            "obs_lon": (
                "obs",
                np.mod(sel["lon"].values.astype(np.float64) + 180.0, 360.0) - 180.0,
                _STATION[LON],
            ),
            "obs_time": ("obs", sel["time"].values, _STATION[TIME]),
        }
        if "variable" in sel.variables:
            names = sel["variable"].values.astype(str)
            coords["obs_variable"] = ("obs", names, {"long_name": "variable observed"})
        names = [str(n) for n in ds.data_vars if MEMBER in ds[n].dims]
        observed = sorted(set(coords["obs_variable"][1])) if "obs_variable" in coords else names
        observed = [n for n in observed if n in ds]
        units = {ds[n].attrs.get("units", "") for n in observed}
        attrs = {"long_name": "station observations used as conditioning input"}
        if len(observed) == 1 and "standard_name" in ds[observed[0]].attrs:
            attrs["standard_name"] = ds[observed[0]].attrs["standard_name"]
        if len(units) == 1:
            attrs["units"] = units.pop()
        else:  # several variables: each row in the units of the variable it observes
            attrs["comment"] = "each value in the units of the ensemble variable obs_variable"
        ds["station_obs"] = xr.DataArray(
            sel["value"].values.astype(np.float64), dims="obs", coords=coords, attrs=attrs
        )
    return ds


def _without(ds: xr.Dataset, names: Sequence[str], dims: Sequence[str]) -> xr.Dataset:
    """``ds`` without the variables ``names`` and, where no data variable is left on any
    of ``dims``, without the coordinates on them (an input's axes, bounds, positions)."""
    ds = ds.drop_vars([n for n in names if n in ds.variables])
    if not any(set(dims) & set(v.dims) for v in ds.data_vars.values()):
        ds = ds.drop_vars([str(n) for n, v in ds.coords.items() if set(dims) & set(v.dims)])
    return ds


def _stations_in_ensemble_units(ds: xr.Dataset, obs: xr.Dataset) -> xr.Dataset:
    """Station values in the units of the ensemble variable each row observes."""
    names = [str(n) for n in ds.data_vars if MEMBER in ds[n].dims]
    rows = obs["variable"].values.astype(str) if "variable" in obs.variables else None
    parts = []
    for name in names:
        part = obs if rows is None else obs.isel(obs=np.flatnonzero(rows == name))
        if part.sizes["obs"]:
            units = ds[name].attrs.get("units", "")
            parts.append(stations_in_units(part, units, f"the station observations of {name}"))
        if rows is None:
            break
    if not parts:
        return obs.isel(obs=[])
    return parts[0] if len(parts) == 1 else xr.concat(parts, dim="obs")


#: global attributes that :func:`hdm.data.stores.cf_output` makes (not the run's config)
_CF_GLOBALS = frozenset({"Conventions", "history", "source", "hdm_version"})


def output_provenance(ds: xr.Dataset) -> dict:
    """The provenance of an ensemble for :func:`hdm.data.stores.cf_output`: its
    ``checkpoint_hash`` and ``seed``, and as ``config`` every attribute that says how it
    was made (:func:`provenance_attrs` and the run's own, as text), without those that
    the CF writer makes itself (``Conventions``, ``history``, ``source``, ``hdm_*``), so
    that writing an ensemble again gives the same ``hdm_config``."""
    config = {
        str(k): str(v)
        for k, v in ds.attrs.items()
        if k not in _CF_GLOBALS and not str(k).startswith("hdm_")
    }
    return {
        "checkpoint_hash": ds.attrs["checkpoint_hash"],
        "config": config,
        "seed": ds.attrs["seed"],
    }


def cf_ensemble(ds: xr.Dataset, history: str) -> xr.Dataset:
    """``ds`` (an ensemble with the attributes of :func:`provenance_attrs`) with the CF-1.8
    attributes and ``hdm_*`` provenance that every hdm store carries
    (:func:`hdm.data.stores.cf_output`: ``Conventions``, ``member`` as
    ``standard_name: realization``, the CF attributes of time, lat, lon, level and their
    cell bounds, the coarse grid's too), ``history`` appended to its history. Without
    ``checkpoint_hash`` and ``seed`` attributes (a dataset made by hand) the CF
    attributes only, no ``hdm_*`` provenance."""
    known = all(key in ds.attrs for key in ("checkpoint_hash", "seed"))
    return cf_output(ds, output_provenance(ds) if known else None, history=history)


def write_output(ds: xr.Dataset, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write zarr (``.zarr``) or CF netCDF (``.nc``), never leaving a half-written file;
    both with the CF attributes and provenance of :func:`hdm.data.stores.cf_output`
    (:func:`output_provenance`)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix not in (".nc", ".zarr"):
        raise ValueError(f"--out must end in .zarr or .nc, got {out.name}")
    provenance = output_provenance(ds)
    if out.suffix == ".nc":
        return write_netcdf_cf(ds, out, provenance)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_zarr_ensemble(ds, tmp, mode="w", provenance=provenance)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
