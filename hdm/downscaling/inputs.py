"""The inputs of a downscaling run: fields, station observations and their operator.

Observations in physical units become one :class:`~hdm.conditioning.observations.Composite`
operator on the target grid: the coarse field's cells
(:class:`~hdm.conditioning.observations.CoarseGrain`, block means) and the stations
(:class:`~hdm.conditioning.observations.PointSample`, bilinear), each with its own
noise std; values are normalised with the model's statistics (the operators average,
so they commute with the affine normalisation).

Station observations are an obs dataset (dim ``obs``; coords ``id``, ``lat``, ``lon``,
``time``; variable ``value``), as read by :func:`hdm.domains.stations.read_stations` or
made by :func:`~hdm.domains.stations.simulate_observations`; a Dataset on one other
dimension (``DataFrame.to_xarray()``'s ``index``), a DataArray of the values or a pandas
DataFrame of a station table's columns is brought to that form first
(:func:`station_observations`), anything else is an error saying what stations may be.
Each observation belongs to
the nearest field time within the tolerance (:func:`match_times`); observations outside
the run's times (± the tolerance), or between two field times farther than the tolerance
from both (hourly reports with 6-hourly fields), are left out. NaN values are
dropped with a warning that counts them (``nan="error"`` raises instead).

Units. The coarse field and the station values are converted to the model's units
(:func:`in_model_units`, from their ``units`` attributes, or a station table's
``units`` column row by row: a coarse field in °C downscales
as the same field in K would); an input without a ``units`` attribute is taken to be in
the model's units. As a guard against inputs in other units that say nothing of it, the
median distance of each source from the model's training mean, in training stds,

    z = median_i |y_i − μ| / σ,

must stay below :data:`FAR_FROM_TRAINING` (20 σ: a field within its climate lies a few
σ from μ, and a UK summer day about 6 σ from the March-trained UK model's μ, while t2m in
°C given to that model in K lies about 120 σ away, and 25–35 σ for a year-round model of
a continent, whose σ is near 10 K); an input whose ``units`` say one thing while its
values lie that far is told that its units look wrong (°C labelled K), one without
``units`` to give them, each with the units its values would fit, if any. Any one value
must stay below :data:`FAR_FOR_ONE_VALUE` (50 σ, 114 K for the UK t2m model): beyond it
lie missing-value codes (−9999, netCDF's default fill 9.97e36, 0 K), never weather; the
value is named (station and time, or the coarse cell). Such values are named first,
before the median is judged, where they are at most half of the values and the rest lie
near the training range, or are all common codes (:func:`_missing_value_codes`): one
−9999 of two stations moves the median past 20 σ, but is a missing value, not a sign of
other units. A common code 10 σ or more from the mean is named so even nearer than
50 σ (the −9999 of the shallow-water h, 43 σ from its 10000 m), unless the other values
lie as far in other units and it lies among them (:func:`_coded_values`). A station value
must also lie within :data:`FAR_FROM_COARSE` (10 σ) of the coarse value over it at its
time (the cell or point nearest it): a report 30 K from its cell is a gross error, which
the guidance would otherwise draw the members to (a background check, as operational
quality control makes one).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
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
    check_geographic,
    uncovered_strip,
)
from hdm.conditioning.profiles import Profile, ProfileError, profile_observations
from hdm.data.coarsen import cell_bounds, with_cell_bounds
from hdm.data.open import normalise_conventions, pa_level_hint, renamed_from
from hdm.data.schema import ALIASES, LAT, LEVEL, LON, TIME, variable_in
from hdm.data.units import UnitsError, convert_values, known, same_units, to_units
from hdm.domains.atmosphere import FAR_FOR_ONE_VALUE
from hdm.domains.stations import (
    first_occurrences,
    station_field_names,
    station_times,
    stations_from_frame,
)
from hdm.downscaling.prior import Prior, channel_name
from hdm.downscaling.soundings import profiles_for_times, profiles_in_units
from hdm.hilbert.grids import Axis, LatLonGrid
from hdm.hilbert.regime import spacing_ratio

log = logging.getLogger("hdm")

__all__ = [
    "FAR_FOR_ONE_VALUE",
    "FAR_FROM_COARSE",
    "FAR_FROM_TRAINING",
    "ObservationSetup",
    "channel_fields",
    "check_near_training",
    "check_station_overlap",
    "coarse_channel_names",
    "crop_to_domain",
    "in_model_units",
    "match_times",
    "model_fields",
    "observation_setup",
    "point_sampled",
    "select_times",
    "station_observations",
    "stations_by_variable",
    "stations_in_units",
    "within_times",
]


def model_fields(
    obj: xr.Dataset | xr.DataArray, prior: Prior, what: str
) -> dict[str, xr.DataArray]:
    """The (time, lat, lon) fields of the model's variables in ``obj``, by variable.

    A Dataset gives the model's variables it holds; an extra variable is a warning that
    names it; none of them is an error naming the variables present and expected. For a
    one-variable model, a DataArray (or a Dataset of one variable) under another name is
    taken as that variable, as before hdm 0.2. Names, orientation and longitudes are
    normalised as :func:`hdm.data.open.normalise_conventions` does for files; anything
    else (a numpy array has no coordinates to place it) is a TypeError saying what to give."""
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"the {what} must be an xarray DataArray or Dataset with time, lat and lon "
            f"coordinates (a file: hdm.open_fields), got {type(obj).__module__}."
            f"{type(obj).__qualname__}"
        )
    if isinstance(obj, xr.DataArray):
        name = str(obj.name) if obj.name is not None else None
        if name in prior.variables or len(prior.variables) == 1:
            obj = obj.to_dataset(name=name if name in prior.variables else prior.variables[0])
        else:
            raise KeyError(
                f"the {what} is a DataArray named {name!r}; the model's variables are "
                f"{list(prior.variables)}: name it, or pass a Dataset"
            )
    # in-memory inputs get the conventions files get (open_fields): CF/CDS/CMIP names,
    # ascending latitude, longitudes in [-180, 180)
    try:
        obj = normalise_conventions(obj, f"the {what}")
    except ValueError:
        # a global field in [0, 360) short of a strip runs "across the antimeridian";
        # for a global model the strip is what is wrong, and what the error names
        _refuse_uncovered_circle(obj, prior, what)
        raise
    # CF cell bounds (lat_bnds, time_bnds, …) describe coordinates, not fields
    bounds = {str(v.attrs["bounds"]) for v in obj.variables.values() if "bounds" in v.attrs}
    bounds |= {str(v) for v in obj.data_vars if str(v).endswith(("_bnds", "_bounds"))}
    present = [str(v) for v in obj.data_vars if str(v) not in bounds]
    # CMIP / GRIB names of the model's variables (tas for t2m, ua for u, …)
    aliases = {
        found: v
        for v in prior.variables
        if (found := variable_in(present, v)) not in (None, v) and found not in prior.variables
    }
    if aliases:
        log.info("the %s: %s", what, ", ".join(f"{a} taken as {v}" for a, v in aliases.items()))
        obj = obj.rename(aliases)
        present = [aliases.get(v, v) for v in present]
    known = [v for v in prior.variables if v in present]
    if not known and len(prior.variables) == 1 and len(present) == 1:
        obj, known = obj.rename({present[0]: prior.variables[0]}), [prior.variables[0]]
        present = known  # the one variable is the model's: nothing extra to warn of
    if not known:
        raise KeyError(
            f"the {what} has none of the model's variables {list(prior.variables)}; "
            f"present: {present}"
        )
    extra = [v for v in present if v not in prior.variables]
    if extra:
        warnings.warn(
            f"the {what} holds variable(s) {extra} the model was not trained on; ignored",
            stacklevel=3,
        )
    fields = {}
    for name in known:
        da = obj[name]
        levels = prior.levels_of(name)
        dims = (TIME, LEVEL, LAT, LON) if levels else (TIME, LAT, LON)
        if TIME not in da.dims and TIME in da.coords and da[TIME].ndim == 0:
            da = da.expand_dims(TIME)  # one field saved with its time as a scalar
        missing = [d for d in dims if d not in da.dims]
        curvilinear = [c for c in (LAT, LON) if c in missing and c in da.coords]
        if curvilinear:
            raise ValueError(
                f"the {what}'s {name} is on a curvilinear grid (lat and lon are coordinates "
                f"over {tuple(da[curvilinear[0]].dims)}, e.g. a rotated pole): regrid it "
                f"to a regular lat/lon grid first (conservatively, e.g. cdo remapcon)"
            )
        if missing:
            hint = "; give the field its valid time as a time coordinate"
            raise ValueError(
                f"the {what}'s {name} must have dims {dims}; missing {missing}"
                + (f" (the model's {name} is on {len(levels)} pressure levels)" if levels else "")
                + (hint if TIME in missing else "")
            )
        da = _without_extra_dims(da, dims, name, what, renamed_from(obj))
        da = with_cell_bounds(obj, da)  # the file's own cells, where it gives them
        if levels:
            da = _model_levels(da, levels, name, what)
        fields[name] = da.transpose(*dims)
    return fields


#: the value of ``inputs.select`` that averages over a dimension instead of choosing one
SELECT_MEAN = "mean"


def _refuse_uncovered_circle(obj: xr.Dataset, prior: Prior, what: str) -> None:
    """Raise :func:`_uncovered_longitudes`'s error where ``obj``'s longitudes (as given,
    in either convention, before :func:`~hdm.data.open.normalise_conventions`) leave a
    strip of a global model's circle without a value: cells of the median spacing round
    each centre, or the points themselves where CF ``cell_methods`` say points
    (:func:`point_sampled`). Nothing for a regional model or a field without a 1-D
    longitude."""
    circle = _circle_axis(prior.grid)
    by_lower = {str(n).lower(): n for n in obj.coords}
    found = next((by_lower[a] for a in ALIASES[LON] if a in by_lower), None)
    if circle is None or found is None or obj[found].ndim != 1 or obj[found].size < 2:
        return
    centres = np.asarray(obj[found].values, dtype=np.float64)
    width = float(np.nanmedian(np.abs(np.diff(centres))))
    east = bool(np.nanmax(centres) > 180.0)
    if any(point_sampled(obj[v]) for v in obj.data_vars):
        message = _uncovered_longitudes(f"the {what}", "points", centres, width, circle, east)
    else:
        edges = np.concatenate([centres - width / 2, centres + width / 2])
        message = _uncovered_longitudes(f"the {what}", "cells", edges, width, circle, east)
    if message:
        raise ObservationError(message) from None


def select_values(ds: xr.Dataset, select: Mapping[str, object], what: str) -> xr.Dataset:
    """``ds`` with one value chosen (or the mean taken) along each dimension named in
    ``select`` (``{"number": 3}``; the names as the file has them, or as hdm's schema:
    ``number`` and ``member`` alike): by the dimension's coordinate value where it has a
    coordinate, else by position; ``"mean"`` averages over it. For an input with a
    dimension beyond (time, [level,] lat, lon), such as the members of an ensemble
    reanalysis, which :func:`model_fields` refuses to choose among. Errors (ValueError) name
    the input, the dimension and the values it holds."""
    if not select:
        return ds
    schema_names = {old: new for new, old in renamed_from(ds).items()}
    for dim, value in select.items():
        name = schema_names.get(str(dim), str(dim))
        if name in (TIME, LAT, LON):
            raise ValueError(
                f"inputs.select cannot choose along {dim!r} of the {what}: times are chosen "
                "with --times/--every, the domain is the model's"
            )
        if name not in ds.dims:
            extra = [str(d) for d in ds.dims if d not in (TIME, LAT, LON)]
            raise ValueError(
                f"inputs.select names {dim!r}, which is no dimension of the {what} "
                f"(its other dimensions: {extra or 'none'})"
            )
        if value == SELECT_MEAN:
            ds = ds.mean(name, keep_attrs=True)
            continue
        if name in ds.coords:
            held = ds[name].values
            numeric = np.issubdtype(held.dtype, np.number) and isinstance(value, int | float)
            found = np.isclose(held, value) if numeric else held == np.asarray(value, held.dtype)
            if not np.any(found):
                shown = ", ".join(str(v) for v in held[:12]) + (", …" if len(held) > 12 else "")
                raise ValueError(
                    f"inputs.select {dim}={value!r}: the {what}'s {dim!r} holds {shown}; "
                    f"give one of them, or {dim}=mean"
                )
            ds = ds.isel({name: int(np.flatnonzero(found)[0])}, drop=True)
        elif isinstance(value, int) and 0 <= value < ds.sizes[name]:
            ds = ds.isel({name: value}, drop=True)
        else:
            raise ValueError(
                f"inputs.select {dim}={value!r}: the {what}'s {dim!r} has no coordinate, so "
                f"give a position 0..{ds.sizes[name] - 1}, or {dim}=mean"
            )
        log.info("the %s: %s=%s selected", what, dim, value)
    return ds


def _without_extra_dims(
    da: xr.DataArray, dims: Sequence[str], name: str, what: str, original: Mapping[str, str]
) -> xr.DataArray:
    """``da`` without dimensions beyond ``dims``: one of length 1 (an ensemble ``number``
    of one member, a ``height`` of 2 m) is dropped; a longer one (ensemble members,
    several experiments) is an error naming it (as the file calls it, ``original``), as
    which of its values to downscale is the user's choice."""
    extra = [d for d in da.dims if d not in dims]
    longer = [d for d in extra if da.sizes[d] > 1]
    if longer:
        d = longer[0]
        named = original.get(d, d)
        raise ValueError(
            f"the {what}'s {name} has a dimension {named!r} ({da.sizes[d]} values) beyond "
            f"{tuple(dims)}: choose one of its values, or their mean: in Python "
            f".sel({named}=VALUE) or .mean({named!r}) on the input, on the command line "
            f"--select {named}=VALUE (or {named}=mean; the config's inputs.select)"
        )
    return da.isel(dict.fromkeys(extra, 0), drop=True)


def _model_levels(da: xr.DataArray, levels: Sequence[float], name: str, what: str) -> xr.DataArray:
    """``da`` at the model's levels it holds (hPa); other levels are left out (logged),
    none of the model's is an error naming both sets."""
    present = np.asarray(da[LEVEL].values, dtype=np.float64)
    keep = [lev for lev in present if np.isclose(levels, lev).any()]
    if not keep:
        raise ValueError(
            f"the {what}'s {name} has levels {[f'{v:g}' for v in present]} hPa, none of the "
            f"model's {[f'{v:g}' for v in levels]}" + pa_level_hint(present, levels)
        )
    extra = [f"{v:g}" for v in present if v not in keep]
    if extra:  # a reanalysis file holds many levels: logged, not a warning
        log.info("the %s's %s: levels %s hPa are not the model's; left out", what, name, extra)
    return da.sel({LEVEL: keep})


#: the largest median |y − μ| / σ of an observation source (module doc)
FAR_FROM_TRAINING = 20.0
#: the largest |y − c| / σ between a station value and the coarse value over it (module
#: doc): beyond it a report is a gross error (a wrong sign, a slipped digit, a value of
#: another station), 23 K for the UK t2m model, far above what a cell hides
FAR_FROM_COARSE = 10.0


def stations_in_units(obs: xr.Dataset, units: str, what: str) -> xr.Dataset:
    """Station ``value`` in ``units``: from a per-row ``units`` column (each group of rows
    converted on its own), else from the ``value`` attribute; unlabelled values as they
    are."""
    if "units" not in obs.variables or obs["units"].dims != ("obs",):
        return obs.assign(value=to_units(obs["value"], units, what))
    labels = obs["units"].values.astype(str)
    value = obs["value"].values.astype(np.float64).copy()
    for label in np.unique(labels):
        rows = labels == label
        part = xr.DataArray(value[rows], dims="obs", attrs={"units": label} if label else {})
        value[rows] = to_units(part, units, f"{what} (rows in {label!r})").values
    converted = obs.drop_vars("units").assign(value=("obs", value))
    converted["value"].attrs["units"] = units
    return converted


def in_model_units(
    prior: Prior, coarse: Mapping[str, xr.DataArray], stations: Mapping[str, xr.Dataset]
) -> tuple[dict[str, xr.DataArray], dict[str, xr.Dataset]]:
    """Each variable's coarse field and station values converted to the model's units
    (``prior.units``), lazily; inputs without units are returned as they are.

    Raises:
        UnitsError: units that cannot be read, or not convertible to the model's (a
            field of wind given to a model of temperature), naming the input.
    """
    converted = {
        v: _stating(to_units(f, prior.units[v], f"the coarse field {v}"), _stated_units(f))
        for v, f in coarse.items()
    }
    by_variable = {}
    for v, obs in stations.items():
        obs_in_units = stations_in_units(obs, prior.units[v], f"the station observations of {v}")
        value = _stating(obs_in_units["value"], _stated_units(obs))
        by_variable[v] = obs_in_units.assign(value=value)
    return converted, by_variable


#: the attribute that carries, through :func:`in_model_units`, what an input said of its
#: units (:func:`_stated_units`) to the messages of :func:`check_near_training`
_STATED_UNITS = "hdm_stated_units"


def _stated_units(source: xr.DataArray | xr.Dataset) -> tuple[str, str] | None:
    """What an input says of its units, before conversion: ("units attribute", "K"), or
    for station rows ("units column", "K") (their labels, joined by ", " where several);
    None when it says nothing."""
    if isinstance(source, xr.Dataset):
        if "units" in source.variables and source["units"].dims == ("obs",):
            labels = [u for u in dict.fromkeys(source["units"].values.astype(str)) if known(u)]
            return ("units column", ", ".join(labels)) if labels else None
        source = source["value"]
    given = source.attrs.get(_STATED_UNITS)
    if given is not None:
        return tuple(given)
    units = source.attrs.get("units")
    return ("units attribute", str(units)) if known(units) else None


def _stating(da: xr.DataArray, stated: tuple[str, str] | None) -> xr.DataArray:
    """``da`` carrying ``stated`` (:data:`_STATED_UNITS`), where there is something."""
    return da if stated is None else da.assign_attrs({_STATED_UNITS: stated})


def _median_distance(values: np.ndarray, mean: float, std: float) -> tuple[float, float]:
    """median |y − μ| / σ over the finite values, and their median (NaN when none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(np.median(np.abs(v - mean))) / std, float(np.median(v))


def check_near_training(
    prior: Prior, coarse: Mapping[str, xr.DataArray], stations: Mapping[str, xr.Dataset]
) -> None:
    """Raise when a channel's coarse values or station values (in the model's units:
    see :func:`in_model_units`) lie :data:`FAR_FROM_TRAINING` training stds or more from
    the model's training mean, in the median (module doc): most likely they are in other
    units than they say (their ``units``, as :func:`in_model_units` passes them on), or
    in other units that nothing says; or when any one value lies
    :data:`FAR_FOR_ONE_VALUE` stds or more from it (a missing-value code). Values that
    look like missing-value codes (:func:`_coded_values`: a −9999 of h at one station
    whatever the others hold; :func:`_missing_value_codes`: one −9999 of two stations)
    are named before the median is judged. The coarse fields are read: pass the times
    to check.

    Raises:
        ObservationError: naming the value (station and time, or coarse cell) where it is
            a missing-value code; else the source, its median, the model's mean and std,
            the units it states (to be corrected) or that it states none (to be given),
            and the units its values would fit, if any.
    """
    hint = "a units attribute (for CSV tables: a units column, --station-units)"
    sources = [
        (v, lev, "coarse field's values", field, "a units attribute")
        for v, f in coarse.items()
        for lev, field in channel_fields(prior, v, f)
    ]
    sources += [(v, None, "station observations", o, hint) for v, o in stations.items()]
    for var, level, what, source, how in sources:
        values = np.asarray(source["value"] if isinstance(source, xr.Dataset) else source)
        mean, std = prior.channel_stats(var, level)
        z, median = _median_distance(values, mean, std)
        units = prior.units[var] or "the model's units"
        name = channel_name(var, level)
        distance = np.where(np.isfinite(values), np.abs(values - mean) / std, 0.0)
        coded = _coded_values(values, distance, mean, std)
        if coded.any():  # before the median, which one −9999 of two stations moves
            raise _far_value_error(
                source, name, values, np.where(coded, distance, 0.0), coded, mean, std, units
            )
        far = distance >= FAR_FOR_ONE_VALUE
        if far.any() and _missing_value_codes(values, far, mean, std):
            raise _far_value_error(source, name, values, distance, far, mean, std, units)
        if z >= FAR_FROM_TRAINING:
            stated = _stated_units(source)
            start = (
                f"the {what} lie {z:.0f} training stds from the model's mean of {name} "
                f"(median {median:.4g}; model: mean {mean:.4g} {units}, std {std:.3g})"
            )
            if stated is None:
                guess = _units_guess(median, prior.units[var], mean, std)
                raise ObservationError(
                    f"{start}: are they in other units? Give them {how} to convert them"
                    + (f" ({guess})" if guess else "")
                )
            # values with units that still lie far: the units they state are wrong
            kind, given = stated
            as_given = _in_units(median, prior.units[var], given)
            shown = as_given is not None and not same_units(given, prior.units[var])
            guess = _units_guess(as_given, given, mean, std, prior.units[var])
            raise ObservationError(
                f"{start}, although their {kind} says {given!r}"
                + (f" (median {as_given:.4g} {given})" if shown else "")
                + f": is the {kind} wrong?"
                + (f" {guess[0].upper()}{guess[1:]}" if guess else "")
            )
        if far.any():
            raise _far_value_error(source, name, values, distance, far, mean, std, units)


#: values that data sets write for "missing" (−9999, −999, 9999, the netCDF/CDO integer
#: fills); values beyond :data:`_HUGE_CODE` (netCDF's default float fill 9.97e36, 1e20)
#: count too
_MISSING_CODES = (-99999.0, -9999.0, -999.0, 999.0, 9999.0, 99999.0, -32767.0, -32768.0,
                  32767.0, 65535.0)  # fmt: skip
_HUGE_CODE = 1e15


def _is_code(values: np.ndarray) -> np.ndarray:
    """Which values are common missing-value codes (:data:`_MISSING_CODES`, or beyond
    ±:data:`_HUGE_CODE`)."""
    return np.isin(values, _MISSING_CODES) | (np.abs(values) >= _HUGE_CODE)


#: the distance from the training mean, in training stds, beyond which a value equal to
#: a common missing-value code (:data:`_MISSING_CODES`) is taken as one: 10 σ, beyond any
#: weather, while a code that could be a value (9999 m of the shallow-water model's h,
#: 0.0 σ; 99999 Pa of surface pressure) is left to the other checks
_CODE_FROM_TRAINING = 10.0


def _coded_values(values: np.ndarray, distance: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Which values to name as missing-value codes whatever the others hold: each a
    common code (:data:`_MISSING_CODES`, or beyond ±1e15) at least
    :data:`_CODE_FROM_TRAINING` training stds (``distance``) from the mean. The −9999 of
    the shallow-water model's h (mean 10000 m, std 465 m) lies 43 σ away, within
    :data:`FAR_FOR_ONE_VALUE`, and beside one station at 10000 m moves the median of
    two past :data:`FAR_FROM_TRAINING`; it is still a code, not a sign of other units.
    Where the other values lie :data:`FAR_FROM_TRAINING` or more from the mean (other
    units), only codes as far from their median are named: 999 among 1013 (hPa given
    to a model in Pa) is a pressure in other units, −9999 among 12.5 (°C given to a
    model in K) a code."""
    finite = np.isfinite(values)
    coded = finite & _is_code(values)
    coded &= distance >= _CODE_FROM_TRAINING
    rest = finite & ~coded
    if coded.any() and rest.any():
        if float(np.median(distance[rest])) >= FAR_FROM_TRAINING:
            others = float(np.median(values[rest]))
            coded &= np.abs(values - others) / std >= FAR_FROM_TRAINING
    return coded


def _missing_value_codes(values: np.ndarray, far: np.ndarray, mean: float, std: float) -> bool:
    """Whether the values :data:`FAR_FOR_ONE_VALUE` or more from the mean (``far``) are
    most likely missing-value codes, to be named one by one, rather than values in other
    units: at most as many as the values near the training range, whose median lies
    within :data:`FAR_FROM_TRAINING` (one −9999 of two stations), or every one of them a
    common code (:data:`_MISSING_CODES`, or beyond ±1e15)."""
    good = np.isfinite(values) & ~far
    if good.any() and far.sum() <= good.sum():
        if float(np.median(np.abs(values[good] - mean))) / std < FAR_FROM_TRAINING:
            return True
    wild = values[far]
    return bool(np.all(_is_code(wild)))


def _far_value_error(source, name, values, distance, far, mean, std, units) -> ObservationError:
    """The error naming the value farthest from the training mean (station and time, or
    the coarse cell), as the missing-value code it most likely is."""
    k = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return ObservationError(
        f"{_value_at(source, k)} of {name} is {values[k]:.6g}, "
        f"{distance[k]:.{'0f' if distance[k] < 1e6 else '2g'}} training stds from the "
        f"model's mean ({mean:.6g} {units}, std {std:.3g}; {int(far.sum())} such value(s)): "
        "a missing-value code? Leave missing values empty (NaN) or give the file "
        "its _FillValue"
    )


#: units tried by :func:`_units_guess` (those convertible to the model's)
_GUESSED_UNITS = ("K", "degC", "degF", "Pa", "hPa", "kPa", "m s-1", "km h-1", "knot")


def _in_units(value: float, from_units: str | None, to: str) -> float | None:
    """``value`` converted, None where the units are unknown or do not convert (several
    labels of a units column among them)."""
    if not known(from_units) or not known(to):
        return None
    try:
        return float(convert_values(value, from_units, to))
    except UnitsError:
        return None


def _units_guess(
    median: float | None, written: str | None, mean: float, std: float, model: str | None = None
) -> str:
    """``"in degC they would lie 0.1 training stds from the mean"`` for the units of
    :data:`_GUESSED_UNITS` (other than ``written``, the units the numbers were taken in)
    in which the median number, converted to the model's units (``model``, default
    ``written``), lies nearest the training mean and within :data:`FAR_FROM_TRAINING`;
    "" where none does."""
    model = model if model is not None else written
    if median is None or not known(model) or not np.isfinite(median):
        return ""
    best = None
    for units in _GUESSED_UNITS:
        if known(written) and same_units(units, written):
            continue
        converted = _in_units(median, units, model)
        if converted is None:
            continue
        z = abs(converted - mean) / std
        if z < FAR_FROM_TRAINING and (best is None or z < best[1]):
            best = (units, z)
    if best is None:
        return ""
    return f"in {best[0]} they would lie {best[1]:.1f} training stds from the mean"


def check_stations_against_coarse(
    prior: Prior,
    coarse: Mapping[str, xr.DataArray],
    stations: Mapping[str, xr.Dataset],
    times: np.ndarray,
    tolerance: str | pd.Timedelta,
) -> None:
    """Raise when a station value at one of ``times`` lies :data:`FAR_FROM_COARSE`
    training stds or more from the coarse value of its variable over it (the coarse
    centre nearest the station along lat and along lon, at the field time matched to the
    observation); both in the model's units. Single-level variables only (a multi-level
    field's surface is not a station's level).

    Raises:
        ObservationError: naming the station, its time and value, and the coarse value.
    """
    for var, obs in stations.items():
        field = coarse.get(var)
        if field is None or prior.levels_of(var) or obs.sizes.get("obs", 0) == 0:
            continue
        where = match_times(obs["time"].values, times, tolerance, say=False)  # said later
        rows = np.flatnonzero((where >= 0) & np.isfinite(obs["value"].values))
        if rows.size == 0:
            continue
        used = np.unique(where[rows])
        values = np.asarray(field.sel({TIME: times[used]}).values, dtype=np.float64)
        lat, lon = field[LAT].values, field[LON].values
        i = np.abs(obs["lat"].values[rows, None] - lat[None, :]).argmin(1)
        turn = (obs["lon"].values[rows, None] - lon[None, :] + 180.0) % 360.0 - 180.0
        j = np.abs(turn).argmin(1)
        over = values[np.searchsorted(used, where[rows]), i, j]
        _, std = prior.channel_stats(var, None)
        distance = np.abs(obs["value"].values[rows] - over) / std
        distance = np.where(np.isfinite(distance), distance, 0.0)
        if distance.max() >= FAR_FROM_COARSE:
            k = int(np.argmax(distance))
            r = rows[k]
            units = prior.units[var] or ""
            raise ObservationError(
                f"station {obs['id'].values[r]} at {str(obs['time'].values[r])[:16]}: {var} "
                f"{obs['value'].values[r]:.6g} {units} is {distance[k]:.0f} training stds "
                f"from the coarse value over it ({over[k]:.6g} {units}; "
                f"{int((distance >= FAR_FROM_COARSE).sum())} such report(s)): a gross "
                "error? Correct or remove the row"
            )


def first_time_far_from_training(
    prior: Prior, coarse: Mapping[str, xr.DataArray]
) -> np.datetime64 | None:
    """The first time at which a coarse value lies :data:`FAR_FOR_ONE_VALUE` training stds
    or more from the model's mean (a missing-value code), None if none does. Lazy: one
    max per time and channel is computed, chunk by chunk (a batch driver checks the
    whole run this way before it writes anything; :func:`check_near_training` on that
    time then names the value)."""
    first = None
    for var, field in coarse.items():
        field = to_units(field, prior.units[var], f"the coarse field {var}")
        for level, channel in channel_fields(prior, var, field):
            mean, std = prior.channel_stats(var, level)
            far = (abs(channel - mean) / std >= FAR_FOR_ONE_VALUE).any([LAT, LON]).values
            if far.any():
                t = channel[TIME].values[int(np.argmax(far))]
                first = t if first is None else min(first, t)
    return first


def _value_at(source: xr.Dataset | xr.DataArray, index: tuple) -> str:
    """Where value ``index`` of a station table (obs) or a coarse field lies, in words."""
    if isinstance(source, xr.Dataset):
        (i,) = index
        when = str(source["time"].values[i])[:16] if "time" in source else "?"
        return f"station {source['id'].values[i]} at {when}"
    where = ", ".join(
        f"{d} {str(source[d].values[i])[:16] if d == TIME else f'{source[d].values[i]:g}'}"
        for d, i in zip(source.dims, index)
    )
    return f"the coarse value at {where}"


def select_times(
    coarse: xr.DataArray | Mapping[str, xr.DataArray] | None, times: Sequence | slice | None
) -> np.ndarray:
    """The field times to downscale: every time of ``coarse`` (None), those in a slice,
    or the times listed (each must be one of the coarse field's; without a coarse field,
    the list itself). With several coarse fields, the first one's times count."""
    if isinstance(coarse, Mapping):
        coarse = next(iter(coarse.values()), None)
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


def check_station_overlap(
    stations: xr.Dataset | pd.DataFrame | None, times: np.ndarray, tolerance: str
) -> None:
    """Raise unless some station observation falls within the run's times (± tolerance).
    ``stations``: any form :func:`station_observations` reads."""
    stations = station_observations(stations)
    if stations is None or stations.sizes.get("obs", 0) == 0:
        return
    tt = stations["time"].values
    if not within_times(tt, times, tolerance).any():
        raise ObservationError(
            f"no station observation falls within the times {str(times[0])[:19]}.."
            f"{str(times[-1])[:19]} (± {tolerance}; the stations' times run "
            f"{str(tt.min())[:19]}..{str(tt.max())[:19]})"
        )


def match_times(
    obs_times: np.ndarray,
    field_times: np.ndarray,
    tolerance: str | pd.Timedelta,
    *,
    say: bool = True,
) -> np.ndarray:
    """Index of the nearest field time of every observation; −1 where none lies within
    ``tolerance``: outside the field's span, or between field times (hourly station
    reports with 6-hourly fields; those left out are counted in a log line, unless
    ``say`` is False: a check that matches the same reports again)."""
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
    between = inside & (dist > tol)
    if say and between.any():
        log.info(
            "%d station observation(s) lie between the field times (more than %s from "
            "each) and are not used", int(between.sum()), tolerance,
        )  # fmt: skip
    return np.where(inside & ~between, nearest, -1)


@dataclass
class ObservationSetup:
    """The operator on the target grid and the normalised values, (n_time, n_obs)."""

    operator: ObservationOperator
    values: np.ndarray
    times: np.ndarray
    station_ids: tuple[str, ...]
    dropped_nan: int
    #: the variables observed by the coarse fields and by the stations
    coarse_variables: tuple[str, ...] = ()
    station_variables: tuple[str, ...] = ()
    #: the soundings used, "STATION@TIME"
    soundings: tuple[str, ...] = ()
    #: the channels the coarse fields observe (``t2m``, ``u@850``)
    coarse_channels: tuple[str, ...] = ()


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
    prior: Prior,
    grid: LatLonGrid,
    coarse: xr.DataArray,
    times: np.ndarray,
    noise: float,
    name: str = "coarse",
    channel: int = 0,
) -> tuple[CoarseGrain, np.ndarray]:
    """The observed coarse cells' operator and their values (n_time, n_obs), physical units;
    ``noise`` is one std (normalised units) for every cell. A field whose CF
    ``cell_methods`` say its values are points (:func:`point_sampled`) is observed at its
    grid points instead (:func:`_coarse_points`)."""
    points = point_sampled(coarse)
    for axis, dim in zip(grid.axes, (LAT, LON)):
        centres = np.asarray(coarse[dim].values, dtype=np.float64)
        width = float(np.median(np.diff(centres))) if centres.size > 1 else np.inf
        if width < axis.spacing * (1 - 1e-6):
            raise ObservationError(
                f"{name}: the coarse {'points' if points else 'cells'} along {axis.name} "
                f"({width:g} {'apart' if points else 'wide'}) are finer than the grid "
                f"sampled ({axis.spacing:g}): there is nothing to downscale; coarsen the "
                f"field first, give it as --truth with --factor, or sample on a finer grid "
                f"(--scale)"
            )
    _warn_beyond_measured_factors(prior, coarse, name)
    if points:
        return _coarse_points(grid, coarse, times, noise, name, channel)
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
        name=name,
        channel=channel,
    )
    circle = _circle_axis(prior.grid)
    if circle is not None:  # the operator checks bounded axes only: the circle has no edge
        edges = np.asarray(op.edges[1], dtype=np.float64)
        east = bool(np.nanmax(coarse[LON].values) > 180.0)
        width = float(np.median(np.diff(edges)))
        uncovered = _uncovered_longitudes(name, "cells", edges, width, circle, east)
        if uncovered:
            raise ObservationError(uncovered)
    op.weights(grid)  # raises when a cell holds no point of the target grid
    values = coarse.sel({TIME: times}).values.astype(np.float64)
    return op, op.source_values(values)


#: the largest coarse factor (cells per training spacing) at which calibration has been
#: measured (BENCHMARKS.md, the evaluation matrices: ×2, ×4, ×8)
LARGEST_MEASURED_FACTOR = 8


def _warn_beyond_measured_factors(prior: Prior, coarse: xr.DataArray, name: str) -> None:
    """Warn when the coarse cells are coarser than ×:data:`LARGEST_MEASURED_FACTOR` of
    the training spacing (geometric mean over both axes): nothing there has been checked,
    and on the UK prior at ×12 the members' spread was 0.58 K against an RMSE of 1.04 K."""
    if min(coarse.sizes[LAT], coarse.sizes[LON]) < 2:
        return
    ratio = spacing_ratio(coarse[LAT].values, coarse[LON].values, prior.grid)
    if ratio > LARGEST_MEASURED_FACTOR * 1.05:
        warnings.warn(
            f"{name}: cells of x{ratio:.3g} the training spacing, beyond x"
            f"{LARGEST_MEASURED_FACTOR}, the largest factor whose calibration has been "
            f"measured: expect too little spread (UK t2m at x12: spread 0.58 K against "
            f"an RMSE of 1.04 K)",
            stacklevel=2,
        )


_HORIZONTAL = ("area", "lat", "latitude", "lon", "longitude")


def point_sampled(field: xr.DataArray) -> bool:
    """Whether ``field``'s values are point values, by its CF ``cell_methods`` (``"area:
    point"``, ``"lat: lon: point"``): ERA5 on a 1° grid from the CDS, or a field subsampled
    every k-th point, is a point value, not the mean of the cell around it, and read as a
    mean it imprints the cells (a coastal point's sea value forced onto half a cell of
    land). Without ``cell_methods`` the values are taken as cell means (the coarse-grained
    truth, model output); ``hdm downscale --coarse-sampling point`` says otherwise."""
    # CF: "name: [name: ...] method [where type] [over type] [(comment)]", repeated
    methods: dict[str, str] = {}
    names: list[str] = []
    text = str(field.attrs.get("cell_methods", ""))
    for token in re.findall(r"\([^)]*\)|\S+", text):
        if token.endswith(":"):
            names.append(token[:-1])
        elif names:
            methods.update(dict.fromkeys(names, token))
            names = []
    return any(methods.get(name) == "point" for name in _HORIZONTAL)


def _coarse_points(
    grid: LatLonGrid,
    coarse: xr.DataArray,
    times: np.ndarray,
    noise: float,
    name: str,
    channel: int,
) -> tuple[PointSample, np.ndarray]:
    """A point-sampled coarse field as point observations at its grid points inside the
    model's grid (those beyond its outermost points are left out; on a global grid every
    longitude is inside); more than one coarse spacing of the domain without a point is
    an error, as for cells (:func:`~hdm.conditioning.observations.uncovered_strip`, and
    :func:`_uncovered_longitudes` round a global grid's circle)."""
    given = np.asarray(coarse[LON].values, dtype=np.float64)
    lat = np.asarray(coarse[LAT].values, dtype=np.float64)
    lon = lon_in_grid(given, grid)
    keep = []
    for axis, x in zip(grid.axes, (lat, lon)):
        if axis.periodic:  # a circle: no point lies outside it, the gaps lie between
            step = float(np.median(np.abs(np.diff(given)))) if x.size > 1 else axis.length
            east = bool(np.nanmax(given) > 180.0)
            uncovered = _uncovered_longitudes(name, "points", given, step, axis, east)
            if uncovered:
                raise ObservationError(uncovered)
            keep.append(np.flatnonzero(np.isfinite(x)))
            continue
        tol = 1e-6 * axis.spacing
        inside = (x >= axis.coords[0] - tol) & (x <= axis.coords[-1] + tol)
        if not inside.any():
            raise ObservationError(
                f"{name}: no point of the coarse field lies inside the model's grid "
                f"({axis.name} {x.min():g}..{x.max():g}; grid {axis.coords[0]:g}.."
                f"{axis.coords[-1]:g})"
            )
        kept = x[inside]
        step = float(np.median(np.abs(np.diff(x)))) if x.size > 1 else axis.length
        uncovered = uncovered_strip(name, "points", axis, kept.min(), kept.max(), step)
        if uncovered:
            raise ObservationError(uncovered)
        keep.append(np.flatnonzero(inside))
    rows, cols = np.meshgrid(keep[0], keep[1], indexing="ij")
    pts = tuple((float(lat[i]), float(lon[j])) for i, j in zip(rows.ravel(), cols.ravel()))
    ids = tuple(f"{name}({a:g}, {b:g})" for a, b in pts)
    op = PointSample(pts, noise, ids, name, channel)
    op.stencil(grid)
    values = coarse.sel({TIME: times}).values.astype(np.float64)
    return op, values[:, keep[0]][:, :, keep[1]].reshape(len(times), -1)


def crop_to_domain(field: xr.DataArray, grid) -> xr.DataArray:
    """The coarse cells of ``field`` whose centres lie within 1.5 of its own spacings of a
    regional lat-lon ``grid``'s domain: every cell at least partly inside it, and their
    neighbours, so that edges derived from the centres are the same as on the whole
    file. A global 1° file conditioning a regional model then keeps a few hundred cells
    (read, stored next to the ensemble and mapped), not 65,000. Unchanged on a global
    grid, along an axis of fewer than two cells, and along longitude where the margin
    would cross ±180°."""
    if not isinstance(grid, LatLonGrid):
        return field
    keep = {}
    for axis, dim in zip(grid.axes, (LAT, LON)):
        coords = np.asarray(field[dim].values, dtype=np.float64)
        if coords.size < 2:
            continue
        margin = 1.5 * float(np.median(np.abs(np.diff(coords))))
        lo = axis.coords[0] - axis.spacing / 2 - margin
        hi = axis.coords[-1] + axis.spacing / 2 + margin
        if dim == LON and (lo < -180.0 or hi > 180.0):
            continue
        inside = (coords >= lo) & (coords <= hi)
        if inside.any() and not inside.all():
            keep[dim] = np.flatnonzero(inside)
    return field.isel(keep) if keep else field


def _circle_axis(grid) -> Axis | None:
    """The longitude axis of a grid that goes round the globe (periodic), else None."""
    axes = getattr(grid, "axes", ())
    lon = axes[1] if len(axes) == 2 else None
    return lon if lon is not None and lon.name == LON and lon.periodic else None


def _uncovered_longitudes(
    name: str, what: str, lon: np.ndarray, width: float, axis: Axis, east: bool
) -> str | None:
    """The error for coarse ``what`` ("cells", "points") on a global grid whose longitudes
    ``lon`` (the cells' edges, or the points) leave an arc of the circle wider than one
    coarse ``width`` (and than the grid's spacing) without a coarse value: there the
    members would be the prior alone, with nothing to say so. The arc is the largest step
    between neighbours round the circle (λ mod 360, sorted, the last one back to the
    first), so either convention ([-180, 180) or [0, 360)) and a strip anywhere, at ±180°
    or at 0°, are measured alike; it is named in the [0, 360) convention where ``east``
    (the field's own longitudes go past 180°), else in [-180, 180). None where the
    longitudes go round."""
    turn = axis.length  # 360°
    x = np.sort(np.mod(np.asarray(lon, dtype=np.float64)[np.isfinite(lon)], turn))
    if x.size == 0:
        return None
    arcs = np.diff(np.append(x, x[0] + turn))
    k = int(np.argmax(arcs))
    gap = float(arcs[k])
    if gap <= max(width, axis.spacing) * (1 + 1e-6):
        return None
    start = float(x[k]) if east else float(np.mod(x[k] + turn / 2, turn) - turn / 2)
    end, wrap = start + gap, turn if east else turn / 2
    across = f" (across {wrap % turn:g}°)" if end > wrap + 1e-9 else ""
    end = end - turn if across else end
    return (
        f"{name}: the coarse {what} leave the strip lon {start:g}..{end:g}{across} of the "
        f"whole globe ({gap:g}° wide, more than one coarse {what[:-1]}, {width:g}°) without "
        "a coarse value: its members there would be the prior alone; give a coarse field "
        "round the whole globe"
    )


def lon_in_grid(lon: np.ndarray, grid: LatLonGrid) -> np.ndarray:
    """Longitudes moved by whole turns into the grid's longitude window where that puts
    them inside it (358° → −2° on a −10..2° grid); others are kept as given, so an error
    names the longitude the user gave."""
    axis = grid.axes[1]
    west = axis.coords[0] - axis.spacing / 2
    east = axis.coords[-1] + axis.spacing / 2
    moved = west + np.mod(lon - west, 360.0)
    return np.where(np.isfinite(lon) & (moved <= east), moved, lon)


def _station_rows(
    stations: xr.Dataset,
    grid: LatLonGrid,
    times: np.ndarray,
    noise: float,
    tolerance: str,
    require_overlap: bool,
    name: str = "stations",
    channel: int = 0,
) -> tuple[PointSample, np.ndarray]:
    """One operator row per station (first appearance order) and the values
    (n_time, n_stations), NaN where a station has no observation at a time."""
    for needed in ("id", "lat", "lon", "time"):
        if needed not in stations.coords and needed not in stations.data_vars:
            raise ObservationError(f"the station observations have no {needed!r}")
    if "value" not in stations.data_vars:
        raise ObservationError(
            f"the station observations have no 'value' variable; present: "
            f"{list(stations.data_vars)}"
        )
    st_ids = stations["id"].values.astype(str)
    order = first_occurrences(st_ids)
    ids = tuple(st_ids[order])
    given = np.stack([stations["lat"].values, stations["lon"].values], axis=1).astype(np.float64)
    _check_fixed_positions(st_ids, given, order)
    check_geographic(given[order], ids, name)
    lon = lon_in_grid(given[:, 1], grid)
    pts = tuple((float(given[i, 0]), float(lon[i])) for i in order)
    op = PointSample(pts, noise, ids, name, channel)
    op.stencil(grid)  # raises, naming the station, when one lies outside the grid
    vals = stations["value"].values.astype(np.float64)
    where = match_times(stations["time"].values, times, tolerance)
    keep = (where >= 0) & np.isfinite(vals)
    if require_overlap and not keep.any() and np.isfinite(vals).any():
        check_station_overlap(stations, times, tolerance)
        raise ObservationError(
            f"no station observation lies within {tolerance} of a field time "
            f"({str(times[0])[:19]}..{str(times[-1])[:19]}; the first observation is at "
            f"{str(stations['time'].values[0])[:19]}): raise time_tolerance or give "
            "observations at the field times"
        )
    values = np.full((len(times), len(ids)), np.nan)
    index = {sid: k for k, sid in enumerate(ids)}
    obs_times = np.asarray(stations["time"].values, dtype="datetime64[ns]")
    offset = np.abs(obs_times - np.asarray(times, dtype="datetime64[ns]")[np.maximum(where, 0)])
    chosen: dict[tuple[int, int], int] = {}  # (field time, station) → the row taken
    for k in np.flatnonzero(keep):
        cell = (int(where[k]), index[st_ids[k]])
        j = chosen.get(cell)
        if j is not None and obs_times[j] == obs_times[k] and vals[j] != vals[k]:
            raise ObservationError(
                f"station {st_ids[k]} has two values at {str(obs_times[k])[:19]} "
                f"({vals[j]:g} and {vals[k]:g}): keep one"
            )
        if j is None or offset[k] < offset[j]:  # the observation nearest the field's time
            chosen[cell] = k
    for (t, station), k in chosen.items():
        values[t, station] = vals[k]
    return op, values


def _check_fixed_positions(ids: np.ndarray, latlon: np.ndarray, first: np.ndarray) -> None:
    """Every row of a station at its first row's position (within 0.01°, about a km, far
    below any grid spacing here): a station that moves (a ship, a mobile sounding under
    one id) would be read at one place only."""
    where = {sid: latlon[k] for sid, k in zip(ids[first], first)}
    anchor = np.stack([where[sid] for sid in ids])
    moved = np.flatnonzero(np.any(np.abs(latlon - anchor) > 0.01, axis=1))
    if moved.size:
        k = int(moved[0])
        (lat0, lon0), (lat1, lon1) = where[ids[k]], latlon[k]
        raise ObservationError(
            f"station {ids[k]} is at two positions, ({lat0:g}, {lon0:g}) and ({lat1:g}, "
            f"{lon1:g}): give a moving platform one id per position"
        )


#: the fields of station observations, each along their one dimension ``obs``
STATION_FIELDS = ("id", "lat", "lon", "time", "value")

#: the fields said in messages about station observations
_EXPECTED_FIELDS = (
    "they need id, lat, lon, time and value along one dimension, obs (one row per "
    "observation; optional units and variable)"
)


def station_observations(
    stations: xr.Dataset | xr.DataArray | pd.DataFrame | None, variables: Sequence[str] = ()
) -> xr.Dataset | None:
    """Station observations as the obs dataset the run reads (module doc), from any of
    the forms :func:`hdm.downscale` accepts; None stays None.

    Accepted:

    * an ``xr.Dataset`` with ``id``, ``lat``, ``lon``, ``time`` and ``value`` (coordinates
      or data variables) along one dimension: ``obs``, or any other (``index`` of
      ``DataFrame.to_xarray()``, ``station``), which is renamed ``obs``. A field that is
      a scalar (one ``time`` for every row, as ``ds.sel(time=...)`` leaves it) is
      repeated along it. Field names are matched as a station table's columns are (any
      case; ``latitude``, ``station``, ``datetime``: :mod:`hdm.domains.stations`).
    * an ``xr.DataArray`` of the values with those coordinates (``obs["value"]``).
    * a ``pandas.DataFrame`` with those columns, or index levels
      (:func:`~hdm.domains.stations.stations_from_frame`: aliases, any case; optional
      ``units`` and ``variable`` per row).

    Without a ``value``, the one data variable named as one of the model's
    ``variables`` (``t2m``, or its CMIP name ``tas``) is taken as the values (and, for a
    model of several variables, as the ``variable`` of its rows); any other naming is an
    error. Times are datetime64 in UTC: text is read as ISO 8601, timezone-aware times
    are converted to UTC.

    Raises:
        TypeError: anything else (a numpy array, a list), saying what stations may be.
        ObservationError: a missing field (naming it and those present), several
            dimensions (naming them, with how to flatten them), unreadable times or
            non-numeric positions; ValueError from a DataFrame's checks (naming rows).
    """
    if stations is None:
        return None
    if isinstance(stations, pd.DataFrame):
        value = _value_column([str(c) for c in stations.columns], variables)
        if value is not None:
            stations = _as_value(stations, value, variables, frame=True)
        return stations_from_frame(stations, what="the station DataFrame")
    if isinstance(stations, xr.DataArray):
        stations = stations.to_dataset(name=stations.name if stations.name is not None else "value")
    if not isinstance(stations, xr.Dataset):
        raise TypeError(
            "stations must be an xarray Dataset (id, lat, lon, time, value along dim obs), "
            "a DataArray of the values with those coordinates, or a pandas DataFrame with "
            f"those columns; got {type(stations).__module__}.{type(stations).__name__}"
        )
    ds = stations
    where = "the station observations"
    renames = station_field_names(list(ds.variables), where)
    if renames:
        ds = ds.rename_vars(renames)
    if "value" not in ds.data_vars and "value" in ds.coords:
        ds = ds.reset_coords("value")
    if "value" not in ds.data_vars:
        value = _value_column([str(v) for v in ds.data_vars], variables)
        if value is not None:
            ds = _as_value(ds, value, variables, frame=False)
    missing = [f for f in STATION_FIELDS if f not in ds.variables]
    if missing:
        listed = ", ".join(map(repr, missing))
        present = [str(v) for v in ds.variables]
        raise ObservationError(f"{where} have no {listed}; {_EXPECTED_FIELDS}; present: {present}")
    if len(ds.dims) > 1:
        sizes = ", ".join(f"{d} ({n})" for d, n in ds.sizes.items())
        raise ObservationError(
            f"{where} have {len(ds.dims)} dimensions, {sizes}; {_EXPECTED_FIELDS}: "
            f"flatten them, e.g. ds.stack(obs={tuple(map(str, ds.dims))}).reset_index('obs')"
        )
    dim = next(iter(ds.dims), None)
    if dim is None:  # one observation, every field a scalar
        ds = ds.expand_dims("obs")
    elif dim != "obs":
        ds = ds.drop_indexes(list(ds.xindexes)).rename_dims({dim: "obs"})
        log.info("%s: dimension %r taken as obs", where, str(dim))
    for field in (f for f in STATION_FIELDS if ds[f].ndim == 0):  # one time for all rows
        repeated = np.repeat(ds[field].values, ds.sizes["obs"])
        ds = _replaced(ds, field, ("obs", repeated, ds[field].attrs))
    for field in ("lat", "lon", "value"):
        if not np.issubdtype(ds[field].dtype, np.number):
            try:
                ds = _replaced(ds, field, ds[field].astype(np.float64))
            except (TypeError, ValueError):
                raise ObservationError(
                    f"{where}' {field} is not numeric (dtype {ds[field].dtype}; first "
                    f"{ds[field].values.ravel()[:1].tolist()})"
                ) from None
    time = ds["time"]
    if not (isinstance(time.dtype, np.dtype) and time.dtype.kind == "M"):
        # text, or timezone-aware (pandas' dtype): datetime64 in UTC
        utc = station_times(time.variable.to_index(), where)
        ds = _replaced(ds, "time", ("obs", utc, time.attrs))
    return ds


def _replaced(ds: xr.Dataset, name: str, variable) -> xr.Dataset:
    """``ds`` with ``name`` replaced, a coordinate staying one."""
    return ds.assign_coords({name: variable}) if name in ds.coords else ds.assign({name: variable})


def _value_column(names: Sequence[str], variables: Sequence[str]) -> str | None:
    """The name holding the values where none is ``value`` (in any case): the one name
    among ``names`` that is one of the model's ``variables`` (or its CMIP/GRIB alias);
    None where there is ``value``, no such name, or several."""
    if any(n.strip().lower() == "value" for n in names):
        return None
    found = {f for v in variables if (f := variable_in(names, v)) is not None}
    return found.pop() if len(found) == 1 else None


def _as_value(stations, name: str, variables: Sequence[str], *, frame: bool):
    """``stations`` (a Dataset, or a DataFrame for ``frame``) with its column ``name`` as
    ``value``, and a ``variable`` column saying which model variable it is where the
    model has several and the stations say nothing of it."""
    variable = next(v for v in variables if variable_in([name], v) is not None)
    log.info("the station observations: %r taken as the values of %s", name, variable)
    if frame:
        stations = stations.rename(columns={name: "value"})
        if len(variables) > 1 and "variable" not in {str(c).lower() for c in stations.columns}:
            stations = stations.assign(variable=variable)
        return stations
    stations = stations.rename_vars({name: "value"})
    if len(variables) > 1 and "variable" not in stations.variables:
        stations = stations.assign(variable=xr.full_like(stations["value"], variable, dtype=object))
    return stations


def stations_by_variable(
    stations: xr.Dataset | pd.DataFrame | None, prior: Prior
) -> dict[str, xr.Dataset]:
    """The station observations of each of the model's variables: by their ``variable``
    column, or all of them for a one-variable model without one. Rows of a variable the
    model does not know are dropped with a warning naming it. ``stations``: any form
    :func:`station_observations` reads."""
    stations = station_observations(stations, prior.variables)
    if stations is None or stations.sizes.get("obs", 0) == 0:
        return {}
    if "variable" not in stations.variables:
        if len(prior.variables) > 1:
            raise ObservationError(
                f"the station observations have no 'variable' column; the model has "
                f"variables {list(prior.variables)}: say which each row observes"
            )
        return {prior.variables[0]: stations}
    names = stations["variable"].values.astype(str)
    extra = sorted(set(names) - set(prior.variables))
    if extra:
        warnings.warn(
            f"dropping station observations of variable(s) {extra} the model was not "
            f"trained on ({int(np.isin(names, extra).sum())} rows)",
            stacklevel=3,
        )
    return {
        v: stations.isel(obs=np.flatnonzero(names == v))
        for v in prior.variables
        if (names == v).any()
    }


def observation_setup(
    prior: Prior,
    grid: LatLonGrid,
    coarse: Mapping[str, xr.DataArray] | xr.DataArray | None,
    stations: xr.Dataset | pd.DataFrame | None,
    times: np.ndarray,
    *,
    coarse_noise: Mapping[str, float] | float,
    station_noise: Mapping[str, float] | float,
    time_tolerance: str = "30min",
    nan: str = "drop",
    require_station_overlap: bool = True,
    profiles: Sequence[Profile] | None = None,
    profile_noise: Mapping[str, float] | None = None,
) -> ObservationSetup:
    """Build the composite operator and the normalised observation values per time.

    ``coarse``: the coarse field of each variable observed (a mapping variable → (time,
    lat, lon) DataArray, (time, level, lat, lon) for a variable on pressure levels; a bare
    DataArray for a one-variable model). ``stations``: obs of any of the model's
    single-level variables (:func:`stations_by_variable`), in any form
    :func:`station_observations` reads (a Dataset on another dimension than ``obs``, a
    DataFrame). ``profiles``: soundings of a
    multi-level prior (:mod:`hdm.downscaling.soundings`), matched to the nearest of
    ``times`` within ``time_tolerance``; those outside the run's times are left out.
    Each channel's coarse cells, stations and soundings read that channel of the fields.
    Every station is a row of the operator, whatever ``times`` are (a station without
    an observation at a time has NaN there, which guidance zero-weights), so the
    operator of a time does not depend on which other times are downscaled with it.
    With ``require_station_overlap``, stations none of whose observations fall within
    ``times`` are an error (a batch chunk passes False: its range is checked once).
    The inputs are converted to the model's units (:func:`in_model_units`) and checked
    to lie near its training values (module doc); ``coarse_noise``, ``station_noise``
    and ``profile_noise`` are stds in the model's units, per channel name (``t2m``,
    ``u@850``, :attr:`Prior.channel_names`) or one number for all."""
    if nan not in ("drop", "error"):
        raise ValueError(f"nan must be 'drop' or 'error', got {nan!r}")
    if isinstance(coarse, xr.DataArray):
        coarse = {prior.variables[0]: coarse}
    coarse, by_variable = in_model_units(
        prior, dict(coarse or {}), stations_by_variable(stations, prior)
    )
    check_near_training(prior, {v: f.sel({TIME: times}) for v, f in coarse.items()}, by_variable)
    check_stations_against_coarse(prior, coarse, by_variable, times, time_tolerance)
    single = len(prior.channels) == 1
    parts: list[ObservationOperator] = []
    blocks: list[np.ndarray] = []
    dropped = 0
    coarse_channels: list[str] = []
    for var in (v for v in prior.variables if v in coarse):
        for level, field in channel_fields(prior, var, coarse[var]):
            mean, std = prior.channel_stats(var, level)
            label = channel_name(var, level)
            coarse_channels.append(label)
            op, values = _coarse_rows(
                prior,
                grid,
                field,
                times,
                _per_variable(coarse_noise, label) / std,
                "coarse" if single else f"coarse {label}",
                prior.channel_index(var, level),
            )
            dropped += _count_nan(values, nan)
            parts.append(op)
            blocks.append((values - mean) / std)
    unobserved = [c for c in prior.channel_names if c not in coarse_channels]
    if coarse and unobserved:
        warnings.warn(
            f"the coarse input holds no {', '.join(unobserved)} (of the model's "
            f"{len(prior.channel_names)} channels): those are drawn from the prior and "
            "whatever stations or soundings observe them",
            stacklevel=2,
        )
    ids: list[str] = []
    for var, obs in by_variable.items():
        if prior.levels_of(var):
            raise ObservationError(
                f"station observations of {var}: the model's {var} is on pressure levels "
                f"({', '.join(f'{lev:g}' for lev in prior.levels_of(var))} hPa); observe "
                "it with soundings (profiles), not surface stations"
            )
        mean, std = prior.stats(var)
        dropped += _count_nan(obs["value"].values.astype(np.float64), nan, obs)
        op, values = _station_rows(
            obs,
            grid,
            times,
            _per_variable(station_noise, var) / std,
            time_tolerance,
            require_station_overlap,
            "stations" if single else f"stations {var}",
            prior.channel(var),
        )
        ids += [i for i in op.ids if i not in ids]
        parts.append(op)
        blocks.append((values - mean) / std)
    soundings: tuple[str, ...] = ()
    if profiles:
        op, values, soundings = _profile_rows(
            prior,
            grid,
            profiles,
            times,
            profile_noise or {},
            time_tolerance,
            require_station_overlap,
        )
        parts.append(op)
        blocks.append(values)
    if not parts:
        raise ObservationError("give a coarse field, station observations, profiles or all")
    operator = parts[0] if len(parts) == 1 else Composite(tuple(parts))
    return ObservationSetup(
        operator,
        np.concatenate(blocks, axis=1),
        times,
        tuple(ids),
        dropped,
        tuple(v for v in prior.variables if v in coarse),
        tuple(by_variable),
        soundings,
        tuple(coarse_channels),
    )


def channel_fields(
    prior: Prior, variable: str, field: xr.DataArray
) -> list[tuple[float | None, xr.DataArray]]:
    """(level, (time, lat, lon) field) of each channel of the model that ``field`` (a
    variable's coarse field) observes: one per level it holds on pressure levels, (None,
    the field) for a single-level variable."""
    if not prior.levels_of(variable):
        return [(None, field)]
    return [(float(lev), field.sel({LEVEL: lev})) for lev in field[LEVEL].values]


def coarse_channel_names(prior: Prior, coarse: Mapping[str, xr.DataArray]) -> list[str]:
    """The channel names (``t2m``, ``u@850``) that the coarse fields observe."""
    return [
        channel_name(v, lev) for v, f in coarse.items() for lev, _ in channel_fields(prior, v, f)
    ]


def _profile_rows(
    prior: Prior,
    grid: LatLonGrid,
    profiles: Sequence[Profile],
    times: np.ndarray,
    noise: Mapping[str, float],
    tolerance: str,
    require_overlap: bool,
) -> tuple[ObservationOperator, np.ndarray, tuple[str, ...]]:
    """The soundings' operator, normalised values (n_time, n_obs) and the soundings used
    ("STATION@TIME"), in the model's units. Every sounding gives its rows (so the
    operator is the same for any selection of the run's times); those outside the run's
    times give no values. With ``require_overlap``, none inside is an error."""
    converted = profiles_in_units(profiles, prior.units)
    matched, outside = profiles_for_times(converted, times, tolerance)
    if not matched and require_overlap:
        first = min(profiles, key=lambda p: np.datetime64(p.time, "ns"))
        raise ProfileError(
            f"none of the {len(profiles)} sounding(s) falls within the run's times "
            f"{str(times[0])[:19]}..{str(times[-1])[:19]} (± {tolerance}); the earliest is "
            f"{first.station} at {str(first.time)[:19]}"
        )
    if outside:
        log.info("%d sounding(s) outside the run's times give no values", outside)
    used = {id(p) for _, p in matched}
    rows: list[tuple[int | None, Profile]] = [*matched]
    rows += [(None, p) for p in converted if id(p) not in used]
    stats = {(v, lev): prior.channel_stats(v, lev) for v, lev in prior.levels}
    op, values, _ = profile_observations(
        rows, len(times), prior.channels, noise, channel_stats=stats
    )
    for part in op.parts:
        part.stencil(grid)  # raises, naming the station, when one lies outside the grid
    return op, values, tuple(f"{p.station}@{str(p.time)[:16]}" for _, p in matched)


def _per_variable(value: Mapping[str, float] | float, variable: str) -> float:
    return float(value[variable] if isinstance(value, Mapping) else value)
