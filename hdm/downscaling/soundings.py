"""Soundings from files into :class:`~hdm.conditioning.profiles.Profile` observations.

Two sources:

- **IGRA2 sounding data** (``<ID>-data.txt``, read by
  :func:`hdm.domains.radiosondes.read_igra2_soundings`): per sounding, the pressure
  levels with temperature ``t`` (K), winds ``u``, ``v`` (m s⁻¹) from speed and direction
  and specific humidity ``q`` (kg kg⁻¹) from the dewpoint (T − dewpoint depression) or,
  where only relative humidity is reported, from RH and T
  (:mod:`hdm.conditioning.profiles`). IGRA2's missing (−9999) and QA-removed (−8888)
  values are read as NaN; they are dropped here and counted per profile (``dropped``).
  The time is the nominal one (the release time where it is missing).
- **A profile table** (CSV with columns id, lat, lon, time, pressure, variable, value,
  units; pressure in Pa or hPa as its ``units`` say — a column ``pressure_units``, default
  Pa): one row per value; the units of one variable must agree.

:func:`profiles_in_units` converts the values to the model's units; :func:`profiles_for_times`
keeps the soundings of a run's times and :func:`match_profile_times` assigns each to the
nearest field time within a tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from hdm.conditioning.profiles import (
    EPSILON,
    Profile,
    ProfileError,
    specific_humidity,
    wind_components,
)
from hdm.data.units import affine
from hdm.domains.igra2_derived import read_igra2_derived
from hdm.domains.radiosondes import read_igra2_soundings

__all__ = [
    "derived_profiles",
    "igra2_profiles",
    "match_profile_times",
    "profiles_for_times",
    "profiles_in_units",
    "read_profile_table",
    "read_profiles",
]

PROFILE_UNITS = {"t": "K", "u": "m s-1", "v": "m s-1", "q": "kg kg-1"}
TABLE_COLUMNS = ("id", "lat", "lon", "time", "pressure", "variable", "value", "units")


def _soundings(ds: xr.Dataset, variables: Sequence[str]):
    """(rows, pressure) of each sounding of an IGRA2 obs dataset, once ``variables`` are
    checked to be ones a sounding gives."""
    unknown = sorted(set(variables) - set(PROFILE_UNITS))
    if unknown:
        raise ProfileError(f"IGRA2 soundings give {sorted(PROFILE_UNITS)}, not {unknown}")
    for number in np.unique(ds["sounding"].values):
        s = ds.isel(obs=np.flatnonzero(ds["sounding"].values == number))
        yield s, s["pressure"].values


def igra2_profiles(
    ds: xr.Dataset, variables: Sequence[str] = ("t", "u", "v", "q")
) -> list[Profile]:
    """One :class:`Profile` per sounding of an IGRA2 obs dataset (module doc)."""
    out = []
    for s, p in _soundings(ds, variables):
        t = s["temperature"].values
        u, v = wind_components(s["wind_speed"].values, s["wind_direction"].values)
        missing_wind = ~(
            np.isfinite(s["wind_speed"].values) & np.isfinite(s["wind_direction"].values)
        )
        dewpoint = t - s["dewpoint_depression"].values
        q = np.where(
            np.isfinite(dewpoint),
            specific_humidity(p, dewpoint),
            specific_humidity(p, temperature=t, relative_humidity=s["relative_humidity"].values),
        )
        every = {
            "t": t,
            "u": np.where(missing_wind, np.nan, u),
            "v": np.where(missing_wind, np.nan, v),
            "q": q,
        }
        out.append(_profile(s, p, every, variables))
    return out


def derived_profiles(
    ds: xr.Dataset, variables: Sequence[str] = ("t", "u", "v", "q")
) -> list[Profile]:
    """One :class:`Profile` per sounding of an IGRA2 derived-parameter dataset
    (:func:`hdm.domains.igra2_derived.read_igra2_derived`): u and v as given, q from the
    vapour pressure, t the temperature; missing values dropped and counted."""
    out = []
    for s, p in _soundings(ds, variables):
        e = s["vapour_pressure"].values
        every = {
            "t": s["temperature"].values,
            "u": s["u"].values,
            "v": s["v"].values,
            "q": EPSILON * e / (p - (1.0 - EPSILON) * e),
        }
        out.append(_profile(s, p, every, variables))
    return out


def _profile(s: xr.Dataset, p: np.ndarray, every: dict, variables: Sequence[str]) -> Profile:
    """A Profile of one sounding's rows ``s`` with the candidate values ``every``."""
    values, dropped = {}, 0
    for name in variables:
        ok = np.isfinite(every[name]) & np.isfinite(p)
        dropped += int((~ok).sum())
        if ok.any():
            values[name] = np.where(ok, every[name], np.nan)
    time = s["time"].values[0]
    if np.isnat(time):
        time = s["release_time"].values[0]
    return Profile(
        station=str(s["id"].values[0]),
        lat=float(s["lat"].values[0]),
        lon=float(s["lon"].values[0]),
        time=time,
        pressure=p,
        values=values,
        dropped=dropped,
        units={k: PROFILE_UNITS[k] for k in values},
    )


def read_profile_table(path: str | Path) -> list[Profile]:
    """Profiles from a CSV table (module doc): one per (id, time)."""
    path = Path(path)
    table = pd.read_csv(path)
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ProfileError(
            f"{path}: a profile table needs the columns {list(TABLE_COLUMNS)}; missing {missing}"
        )
    for variable, rows in table.groupby("variable"):
        units = sorted(set(rows["units"].astype(str)))
        if len(units) > 1:
            raise ProfileError(f"{path}: variable {variable!r} is given in several units {units}")
    scale = 1.0
    if "pressure_units" in table.columns:
        p_units = sorted(set(table["pressure_units"].astype(str)))
        if len(p_units) > 1 or p_units[0] not in ("Pa", "hPa"):
            raise ProfileError(f"{path}: pressure_units must be one of Pa, hPa, got {p_units}")
        scale = 100.0 if p_units[0] == "hPa" else 1.0
    out = []
    for (station, time), rows in table.groupby(["id", "time"], sort=False):
        pressure = np.unique(rows["pressure"].to_numpy(dtype=np.float64)) * scale
        values = {}
        for variable, part in rows.groupby("variable"):
            column = np.full(pressure.shape, np.nan)
            where = np.searchsorted(pressure, part["pressure"].to_numpy(dtype=np.float64) * scale)
            column[where] = part["value"].to_numpy(dtype=np.float64)
            values[str(variable)] = column
        units = {str(v): str(r["units"].iloc[0]) for v, r in rows.groupby("variable")}
        out.append(
            Profile(
                station=str(station),
                lat=float(rows["lat"].iloc[0]),
                lon=float(rows["lon"].iloc[0]),
                time=np.datetime64(pd.Timestamp(time).tz_localize(None), "ns"),
                pressure=pressure,
                values=values,
                units=units,
            )
        )
    return out


def read_profiles(
    path: str | Path, variables: Sequence[str] = ("t", "u", "v", "q")
) -> list[Profile]:
    """Profiles from an IGRA2 sounding file, an IGRA2 derived-parameter file (``drvd`` in
    its name; both give ``variables``, a subset of t, u, v, q) or a CSV profile table (by
    extension; every variable it holds)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no profile file {path}")
    if path.suffix.lower() == ".csv":
        return read_profile_table(path)
    if "drvd" in path.name:
        return derived_profiles(read_igra2_derived(path), variables)
    return igra2_profiles(read_igra2_soundings(path), variables)


def profiles_in_units(profiles: Sequence[Profile], units: Mapping[str, str]) -> list[Profile]:
    """The profiles with every variable in ``units`` (variable → units; the model's):
    converted where a profile says its units (°C → K, knots → m s⁻¹), as given where it
    says none; a conversion that cannot be made is a UnitsError naming the station."""
    out = []
    for prof in profiles:
        values = dict(prof.values)
        for name, given in prof.units.items():
            if name in values and given and name in units and units[name]:
                where = f"sounding {prof.station} at {prof.time}: {name}"
                a, b = affine(given, units[name], where)
                values[name] = a * np.asarray(values[name], dtype=np.float64) + b
        converted = {k: units.get(k, v) for k, v in prof.units.items()}
        out.append(replace(prof, values=values, units=converted))
    return out


def profiles_for_times(
    profiles: Sequence[Profile], field_times: np.ndarray, tolerance: str
) -> tuple[list[tuple[int, Profile]], int]:
    """The profiles of a run's times: those outside [first − tolerance, last + tolerance]
    are left out (and counted: a file may hold a whole year of soundings); the others are
    matched to the nearest field time (:func:`match_profile_times`, which refuses one
    farther than ``tolerance`` from every field time, naming the station and that time)."""
    times = np.asarray(field_times, dtype="datetime64[ns]")
    limit = pd.Timedelta(tolerance).to_timedelta64()
    inside = [
        p
        for p in profiles
        if times.min() - limit <= np.datetime64(p.time, "ns") <= times.max() + limit
    ]
    return match_profile_times(inside, times, tolerance), len(profiles) - len(inside)


def match_profile_times(
    profiles: Sequence[Profile], field_times: np.ndarray, tolerance: str = "90min"
) -> list[tuple[int, Profile]]:
    """(index of the nearest field time, profile) for every profile.

    Raises:
        ProfileError: a profile farther than ``tolerance`` from every field time, naming
            the station, its time and the nearest field time.
    """
    times = np.asarray(field_times, dtype="datetime64[ns]")
    limit = pd.Timedelta(tolerance).to_timedelta64()
    out = []
    for prof in profiles:
        gap = np.abs(times - np.datetime64(prof.time, "ns"))
        k = int(np.argmin(gap))
        if gap[k] > limit:
            raise ProfileError(
                f"sounding {prof.station} at {prof.time} is {pd.Timedelta(gap[k])} from the "
                f"nearest field time {times[k]} (tolerance {tolerance})"
            )
        out.append((k, prof))
    return out
