"""The inputs of a downscaling run: fields, station observations and their operator.

Observations in physical units become one :class:`~hdm.conditioning.observations.Composite`
operator on the target grid: the coarse field's cells
(:class:`~hdm.conditioning.observations.CoarseGrain`, block means) and the stations
(:class:`~hdm.conditioning.observations.PointSample`, bilinear), each with its own
noise std; values are normalised with the model's statistics (the operators average,
so they commute with the affine normalisation).

Station observations are an obs dataset (dim ``obs``; coords ``id``, ``lat``, ``lon``,
``time``; variable ``value``), as read by :func:`hdm.domains.stations.read_stations` or
made by :func:`~hdm.domains.stations.simulate_observations`. Each observation belongs to
the nearest field time within the tolerance (:func:`match_times`); observations outside
the run's times (± the tolerance) are left out (:func:`within_times`). NaN values are
dropped with a warning that counts them (``nan="error"`` raises instead).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from hdm.conditioning.observations import (
    CoarseGrain,
    Composite,
    ObservationError,
    ObservationOperator,
    PointSample,
)
from hdm.data.schema import LAT, LON, TIME
from hdm.domains.stations import first_occurrences
from hdm.downscaling.prior import Prior
from hdm.hilbert.grids import LatLonGrid

__all__ = [
    "ObservationSetup",
    "check_station_overlap",
    "field_of",
    "match_times",
    "observation_setup",
    "select_times",
    "within_times",
]


def field_of(obj: xr.Dataset | xr.DataArray, variable: str, what: str) -> xr.DataArray:
    """The (time, lat, lon) DataArray of ``variable`` in ``obj`` (a Dataset of one variable
    is taken as it is); the error names ``what`` it is and the variables present."""
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


def select_times(coarse: xr.DataArray | None, times: Sequence | slice | None) -> np.ndarray:
    """The field times to downscale: every time of ``coarse`` (None), those in a slice,
    or the times listed (each must be one of the coarse field's; without a coarse field,
    the list itself)."""
    if coarse is None:
        if times is None:
            raise ValueError("without a coarse field, give the times to downscale")
        if isinstance(times, slice):
            raise ValueError("without a coarse field, list the times to downscale")
        chosen = np.asarray(pd.to_datetime(list(times)).values)
    elif times is None:
        chosen = coarse[TIME].values
    elif isinstance(times, slice):
        chosen = coarse.sel({TIME: times})[TIME].values
    else:
        field_times = coarse[TIME].values
        chosen = pd.to_datetime(list(times)).values
        missing = np.setdiff1d(chosen, field_times)
        if missing.size:
            raise ValueError(
                f"time {str(missing[0])[:19]} not in the coarse field (its times run "
                f"{str(field_times[0])[:19]}..{str(field_times[-1])[:19]})"
            )
    if len(chosen) == 0:
        raise ValueError(f"the time selection {times!r} selects no time of the coarse field")
    return chosen


def within_times(obs_times: np.ndarray, times: np.ndarray, tolerance: str) -> np.ndarray:
    """Mask of the observation times within [first − tolerance, last + tolerance]."""
    tol = pd.Timedelta(tolerance).to_timedelta64()
    t = np.asarray(obs_times).astype("datetime64[ns]")
    span = np.asarray(times).astype("datetime64[ns]")
    return (t >= span.min() - tol) & (t <= span.max() + tol)


def check_station_overlap(stations: xr.Dataset, times: np.ndarray, tolerance: str) -> None:
    """Raise unless some station observation falls within the run's times (± tolerance)."""
    if stations.sizes.get("obs", 0) == 0:
        return
    tt = stations["time"].values
    if not within_times(tt, times, tolerance).any():
        raise ObservationError(
            f"no station observation falls within the times {str(times[0])[:19]}.."
            f"{str(times[-1])[:19]} (± {tolerance}; the stations' times run "
            f"{str(tt.min())[:19]}..{str(tt.max())[:19]})"
        )


def match_times(
    obs_times: np.ndarray, field_times: np.ndarray, tolerance: str | pd.Timedelta
) -> np.ndarray:
    """Index of the nearest field time of every observation; −1 outside the field's span
    (± tolerance). An observation inside the span but farther than ``tolerance`` from
    every field time is an error."""
    tolerance = pd.Timedelta(tolerance)
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


@dataclass
class ObservationSetup:
    """The operator on the target grid and the normalised values, (n_time, n_obs)."""

    operator: ObservationOperator
    values: np.ndarray
    times: np.ndarray
    station_ids: tuple[str, ...]
    dropped_nan: int


def _count_nan(values: np.ndarray, nan: str, stations: xr.Dataset | None = None) -> int:
    """The number of NaN values of the coarse field (or of ``stations``); an error with
    ``nan="error"`` (naming the first station and its time), else a warning."""
    bad = np.isnan(values)
    n_nan = int(bad.sum())
    if n_nan and nan == "error":
        if stations is None:
            raise ObservationError(f"the coarse field has {n_nan} NaN value(s)")
        first = int(np.flatnonzero(bad)[0])
        raise ObservationError(
            f"{n_nan} station observation(s) are NaN (first: station "
            f"{stations['id'].values[first]} at {str(stations['time'].values[first])[:19]})"
        )
    if n_nan:
        what = "value(s) of the coarse field" if stations is None else "station observation(s)"
        warnings.warn(f"dropping {n_nan} NaN {what}", stacklevel=4)
    return n_nan


def _coarse_rows(
    prior: Prior, grid: LatLonGrid, coarse: xr.DataArray, times: np.ndarray, noise: float
) -> tuple[CoarseGrain, np.ndarray]:
    """The observed coarse cells' operator and their values (n_time, n_obs), physical units."""
    # Imported here so that this function is the whole of this change to the module.
    from hdm.data.coarsen import cell_bounds

    # One constructor for every coarse grid (CoarseGrain.for_coarse_grid): cells that are
    # aligned blocks of the training grid are the mean of their f × f points on every
    # grid (samples_per_cell); any other cells are area-overlap means; cells less than
    # half inside the domain are left out (their values too).
    op = CoarseGrain.for_coarse_grid(
        coarse[LAT].values,
        coarse[LON].values,
        prior.grid,
        noise,
        lat_bounds=cell_bounds(coarse, LAT),
        lon_bounds=cell_bounds(coarse, LON),
    )
    op.weights(grid)  # raises when a cell holds no point of the target grid
    values = coarse.sel({TIME: times}).values.astype(np.float64)
    return op, op.source_values(values)


def _station_rows(
    stations: xr.Dataset,
    grid: LatLonGrid,
    times: np.ndarray,
    noise: float,
    tolerance: str,
    require_overlap: bool,
) -> tuple[PointSample, np.ndarray]:
    """One operator row per station (first appearance order) and the values
    (n_time, n_stations), NaN where a station has no observation at a time."""
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
    pts = tuple((float(stations["lat"].values[i]), float(stations["lon"].values[i])) for i in order)
    op = PointSample(pts, noise, ids, "stations")
    op.stencil(grid)  # raises, naming the station, when one lies outside the grid
    vals = stations["value"].values.astype(np.float64)
    where = match_times(stations["time"].values, times, tolerance)
    keep = (where >= 0) & np.isfinite(vals)
    if require_overlap and not keep.any() and np.isfinite(vals).any():
        check_station_overlap(stations, times, tolerance)
    values = np.full((len(times), len(ids)), np.nan)
    index = {sid: k for k, sid in enumerate(ids)}
    for k in np.flatnonzero(keep):
        values[where[k], index[st_ids[k]]] = vals[k]
    return op, values


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
    ``times`` are an error (a batch chunk passes False: its range is checked once).
    ``coarse_noise`` and ``station_noise`` are stds in physical units."""
    if nan not in ("drop", "error"):
        raise ValueError(f"nan must be 'drop' or 'error', got {nan!r}")
    mean, std = prior.mean_std
    parts: list[ObservationOperator] = []
    blocks: list[np.ndarray] = []
    dropped = 0
    ids: tuple[str, ...] = ()
    if coarse is not None:
        op, values = _coarse_rows(prior, grid, coarse, times, coarse_noise / std)
        dropped += _count_nan(values, nan)
        parts.append(op)
        blocks.append((values - mean) / std)
    if stations is not None and stations.sizes.get("obs", 0) > 0:
        dropped += _count_nan(stations["value"].values.astype(np.float64), nan, stations)
        op, values = _station_rows(
            stations, grid, times, station_noise / std, time_tolerance, require_station_overlap
        )
        ids = op.ids
        parts.append(op)
        blocks.append((values - mean) / std)
    if not parts:
        raise ObservationError("give a coarse field, station observations, or both")
    operator = parts[0] if len(parts) == 1 else Composite(tuple(parts))
    return ObservationSetup(operator, np.concatenate(blocks, axis=1), times, ids, dropped)
