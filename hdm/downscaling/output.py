"""The output of a downscaling run: the ensemble dataset, its provenance, writing it.

Layout (:func:`ensemble_dataset`): ``{var}(member, time, lat, lon)`` in the model's
units, ``{var}_mean``, ``{var}_std`` (ddof = 1) and ``{var}_quantile`` over members
(:func:`summarise`), and the conditioning inputs next to them (:func:`attach_inputs`):
``{var}_coarse(time, coarse_lat, coarse_lon)`` and ``station_obs(obs)``. The provenance
attributes (model, hash, guidance, sampler, seed, grids, noise stds, stations) are made
in one place, :func:`provenance_attrs`, for :func:`hdm.downscale` and for batch stores.
:func:`write_output` writes zarr or CF netCDF without ever leaving a half-written file.
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
from hdm.data.schema import LAT, LON, MEMBER, TIME
from hdm.data.stores import write_netcdf_cf, write_zarr_ensemble
from hdm.data.units import to_units
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.inputs import stations_in_units, within_times
from hdm.downscaling.prior import Prior
from hdm.hilbert.grids import LatLonGrid

__all__ = [
    "attach_inputs",
    "ensemble_dataset",
    "noise_std",
    "provenance_attrs",
    "summarise",
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
    """
    if MEMBER not in ensemble.dims:
        raise ValueError(f"the ensemble has no {MEMBER!r} dimension; dims: {ensemble.dims}")
    name = str(ensemble.name or "field")
    units = ensemble.attrs.get("units", "")
    m = ensemble.sizes[MEMBER]
    out = xr.Dataset()
    out[f"{name}_mean"] = ensemble.mean(MEMBER).assign_attrs(
        units=units, long_name=f"ensemble mean of {name}"
    )
    std = ensemble.std(MEMBER, ddof=1) if m > 1 else xr.full_like(ensemble.isel({MEMBER: 0}), 0.0)
    out[f"{name}_std"] = std.assign_attrs(
        units=units, long_name=f"ensemble standard deviation of {name} (ddof=1)"
    )
    if quantiles:
        q = ensemble.quantile(list(quantiles), dim=MEMBER)
        out[f"{name}_quantile"] = q.assign_attrs(
            units=units, long_name=f"empirical quantiles of {name} over members"
        )
    if thresholds:
        th = xr.DataArray(list(thresholds), dims="threshold", attrs={"units": units})
        out[f"{name}_exceedance"] = (
            (ensemble > th)
            .mean(MEMBER)
            .assign_attrs(
                units="1", long_name=f"fraction of members with {name} above the threshold"
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
    model, from ``values`` (member, time, variable, lat, lon) in physical units (the
    model's variable order; (member, time, lat, lon) for a one-variable model), each
    with its ``_mean``, ``_std`` and ``_quantile`` summaries over members. Lazy (dask)
    values give a lazy dataset: the template of a batch store."""
    lat, lon = grid.coords()
    if values.ndim == 4:
        values = values[:, :, None]
    parts = []
    for c, name in enumerate(prior.variables):
        ensemble = xr.DataArray(
            values[:, :, c],
            dims=(MEMBER, TIME, LAT, LON),
            coords={MEMBER: np.arange(values.shape[0]), TIME: times, LAT: lat, LON: lon},
            name=name,
            attrs={
                "units": prior.units[name],
                "long_name": f"{name}, posterior ensemble members",
            },
        )
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


def provenance_attrs(
    prior: Prior,
    grid: LatLonGrid,
    cfg: EnsembleConfig,
    *,
    coarse_noise: Mapping[str, float] | None,
    station_noise: Mapping[str, float] | None,
    station_ids: Sequence[str],
) -> dict:
    """The attributes that say how an ensemble was made (the same for :func:`hdm.downscale`
    and batch stores): the model and its hash, the guidance and its options (JSON), the
    sampler, steps, members, seed, the sampled and training grids, the observation noise
    stds of each observed variable in its units (a number for one variable, JSON for
    several, "none" for an absent source), the stations used and the inflation factor."""
    inflation = cfg.inflation
    return {
        "title": f"hdm downscaled {', '.join(prior.variables)} ensemble",
        "hdm_version": __version__,
        "checkpoint": prior.path,
        "checkpoint_hash": prior.sha256,
        "guidance": cfg.guidance,
        "guidance_options": json.dumps(cfg.guidance_options, sort_keys=True),
        "sampler": cfg.sampler,
        "steps": cfg.steps,
        "members": cfg.members,
        "seed": cfg.seed,
        "grid": grid.describe(),
        "training_grid": prior.grid.describe(),
        "coarse_noise_std": _noise_attr(coarse_noise),
        "station_noise_std": _noise_attr(station_noise if station_ids else None),
        "stations": ",".join(station_ids),
        "inflation": float(inflation) if isinstance(inflation, float) else 1.0,
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
    observe), the observations within the ensemble's times (± ``time_tolerance``)."""
    for variable, field in (coarse or {}).items():
        field = to_units(field, ds[variable].attrs.get("units", ""), f"the coarse field {variable}")
        c = field.sel(time=ds.time.values).rename({LAT: "coarse_lat", LON: "coarse_lon"})
        c = c.reset_coords(drop=True)
        keep = [k for k in ("lat_weight",) if k in field.coords]
        if keep:
            c = c.assign_coords(coarse_lat_weight=("coarse_lat", field[keep[0]].values))
        ds[f"{variable}_coarse"] = c.astype(np.float32).assign_attrs(
            units=field.attrs.get("units", ds[variable].attrs.get("units", "")),
            long_name=f"coarse {variable} used as conditioning input",
        )
    if stations is not None and stations.sizes.get("obs", 0) > 0:
        inside = within_times(stations["time"].values, ds[TIME].values, time_tolerance)
        sel = _stations_in_ensemble_units(ds, stations.isel(obs=np.flatnonzero(inside)))
        coords = {
            "obs_id": ("obs", sel["id"].values.astype(str)),
            "obs_lat": ("obs", sel["lat"].values.astype(np.float64)),
            "obs_lon": ("obs", sel["lon"].values.astype(np.float64)),
            "obs_time": ("obs", sel["time"].values),
        }
        if "variable" in sel.variables:
            coords["obs_variable"] = ("obs", sel["variable"].values.astype(str))
        names = [str(n) for n in ds.data_vars if MEMBER in ds[n].dims]
        observed = sorted(set(coords["obs_variable"][1])) if "obs_variable" in coords else names
        units = {ds[n].attrs.get("units", "") for n in observed if n in ds}
        attrs = {"long_name": "station observations used as conditioning input"}
        if len(units) == 1:
            attrs["units"] = units.pop()
        else:  # several variables: each row in the units of the variable it observes
            attrs["comment"] = "each value in the units of the ensemble variable obs_variable"
        ds["station_obs"] = xr.DataArray(
            sel["value"].values.astype(np.float64), dims="obs", coords=coords, attrs=attrs
        )
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


def write_output(ds: xr.Dataset, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write zarr (``.zarr``) or CF netCDF (``.nc``), never leaving a half-written file."""
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
