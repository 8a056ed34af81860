"""Radiosonde profiles as observations of a multi-level field.

A multi-level prior's channels are (variable, pressure level) pairs, e.g. ``("u", 850.0)``
(levels in hPa, as ERA5's ``pressure_level``). A sounding reports values at its own
pressures; it becomes an observation of the model in two steps:

1. **Vertical: the profile onto the model's levels.** Each variable's usable values
   (finite, and for IGRA2 not flagged) are interpolated linearly in log-pressure,
   v(p) = v_k + (v_{k+1} − v_k) · ln(p / p_k) / ln(p_{k+1} / p_k), to every model level
   between the profile's lowest and highest usable pressure; no level outside that range
   is observed (never extrapolated beyond the profile), and levels above the model's top
   or below its bottom are not represented (a profile whose usable pressures lie wholly
   outside the model's levels is refused). One usable level cannot be interpolated and
   is refused too.
2. **Horizontal: the model at the station.** The level values are point observations
   of their channel at the station's (lat, lon), bilinear in the grid
   (:class:`~hdm.conditioning.observations.PointSample`, one per channel, stacked in a
   :class:`~hdm.conditioning.observations.Composite`); the operator is linear and its
   adjoint is the transposed interpolation. Balloon drift is ignored: the sounding is
   placed at its header position (IGRA2 derived files hold no drift positions either).

Step 1 is applied to the data, not to the model, so the interpolated values share the
errors of the two reported levels around them; the noise given per variable is used for
every level (correlation between neighbouring interpolated values is ignored).

Conversions where the sounding and the model differ (:func:`wind_components`,
:func:`specific_humidity`) follow the standard formulas; each says its reference. They are
written here rather than taken from MetPy, which is not a dependency of hdm: three
one-line formulas do not justify it (the tests check them against tabulated values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hdm.conditioning.observations import Composite, ObservationError, PointSample

__all__ = [
    "EPSILON",
    "Profile",
    "ProfileError",
    "profile_observations",
    "profile_operator",
    "saturation_vapour_pressure",
    "specific_humidity",
    "to_model_levels",
    "wind_components",
]

#: R_d / R_v, the ratio of the gas constants of dry air and water vapour
EPSILON = 0.621957


class ProfileError(ObservationError):
    """A profile that cannot observe the model (the message names the station)."""


def wind_components(speed, direction) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) in the units of ``speed`` from the meteorological direction (degrees,
    clockwise from north, where the wind blows FROM): u = −s sin θ, v = −s cos θ. A
    wind from the north (0° or 360°) blows southwards, v < 0; calm (s = 0) gives 0."""
    s = np.asarray(speed, dtype=np.float64)
    theta = np.deg2rad(np.asarray(direction, dtype=np.float64))
    u, v = -s * np.sin(theta), -s * np.cos(theta)
    calm = s == 0  # a calm report may carry any direction (IGRA2: 0)
    return np.where(calm, 0.0, u), np.where(calm, 0.0, v)


def saturation_vapour_pressure(temperature) -> np.ndarray:
    """e_s(T) over water in Pa for T in K: Bolton (1980, Mon. Wea. Rev. 108, eq. 10),
    e_s = 611.2 exp(17.67 (T − 273.15) / (T − 29.65)); within 0.3 % of the
    Smithsonian tables between −35 and 35 °C."""
    t = np.asarray(temperature, dtype=np.float64)
    return 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))


def specific_humidity(pressure, dewpoint=None, *, temperature=None, relative_humidity=None):
    """q (kg kg⁻¹) from the vapour pressure e and the pressure p (Pa):
    q = ε e / (p − (1 − ε) e). e = e_s(T_d) from the dewpoint (K; from IGRA2's dewpoint
    depression, T_d = T − DPD), or e = RH/100 · e_s(T) from relative humidity (%) and
    temperature (K); e_s from :func:`saturation_vapour_pressure`."""
    p = np.asarray(pressure, dtype=np.float64)
    if dewpoint is not None:
        e = saturation_vapour_pressure(dewpoint)
    elif temperature is not None and relative_humidity is not None:
        e = np.asarray(relative_humidity, dtype=np.float64) / 100.0
        e = e * saturation_vapour_pressure(temperature)
    else:
        raise ValueError("give the dewpoint, or the temperature and the relative humidity")
    return EPSILON * e / (p - (1.0 - EPSILON) * e)


@dataclass(frozen=True)
class Profile:
    """One sounding: ``station`` id, position (``lat``, ``lon`` degrees), ``time``,
    ``pressure`` (n,) in Pa and ``values`` variable → (n,) in the model's units (NaN:
    not reported at that level); ``dropped`` counts values left out on reading (flags,
    missing codes)."""

    station: str
    lat: float
    lon: float
    time: np.datetime64
    pressure: np.ndarray
    values: Mapping[str, np.ndarray]
    dropped: int = 0
    units: Mapping[str, str] = field(default_factory=dict)


def to_model_levels(
    profile: Profile, variable: str, levels_hpa: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The profile's ``variable`` at the model levels inside its usable range (module doc,
    step 1): (levels in hPa, values), both (m,), levels in the order given.

    Raises:
        ProfileError: the variable is not in the profile, it has fewer than 2 usable
            levels, or its range holds no model level (all above or all below).
    """
    if variable not in profile.values:
        raise ProfileError(
            f"sounding {profile.station} at {profile.time}: no {variable!r} in the profile "
            f"(it has {sorted(profile.values)})"
        )
    p = np.asarray(profile.pressure, dtype=np.float64)
    v = np.asarray(profile.values[variable], dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(v) & (p > 0)
    if ok.sum() < 2:
        raise ProfileError(
            f"sounding {profile.station} at {profile.time}: {variable!r} has "
            f"{int(ok.sum())} usable level(s); interpolating in log-pressure needs 2"
        )
    order = np.argsort(p[ok])
    log_p, vals = np.log(p[ok][order]), v[ok][order]
    levels = np.asarray(levels_hpa, dtype=np.float64)
    log_levels = np.log(levels * 100.0)
    inside = (log_levels >= log_p[0]) & (log_levels <= log_p[-1])
    if not inside.any():
        where = "above" if log_p[-1] < log_levels.min() else "below"
        raise ProfileError(
            f"sounding {profile.station} at {profile.time}: its {variable!r} levels "
            f"({np.exp(log_p[0]) / 100:g}–{np.exp(log_p[-1]) / 100:g} hPa) lie {where} the "
            f"model's levels ({levels.min():g}–{levels.max():g} hPa)"
        )
    return levels[inside], np.interp(log_levels[inside], log_p, vals)


def _noise_of(noise: Mapping, variable: str, level: float, name: str) -> float:
    """The std for (variable, level): the entry ``variable@level`` (hPa), else
    ``variable``'s."""
    for key in (f"{variable}@{level:g}", variable):
        if key in noise:
            return float(noise[key])
    raise ProfileError(f"{name}: no noise std given for {variable!r}")


def profile_observations(
    matched: Sequence[tuple[int | None, Profile]],
    n_times: int,
    channels: Sequence[tuple[str, float | None]],
    noise: Mapping[str, float],
    name: str = "soundings",
    channel_stats: Mapping[tuple[str, float], tuple[float, float]] | None = None,
) -> tuple[Composite, np.ndarray, list[str]]:
    """The observation operator of soundings at several field times, its values
    (n_times, n_obs) and a label per row ("STATION variable@LEVEL").

    ``matched``: (field time index, profile) pairs (e.g. from
    :func:`hdm.downscaling.soundings.match_profile_times`); an index None gives the
    profile's rows without values (a sounding at another time: the operator of a run
    then does not depend on which of its times are drawn together). One
    :class:`PointSample` per (variable, level) observed, one row per station observing
    it, at its header position (the first sounding's); a row without a sounding at a
    time is NaN there (guidance gives it zero weight), so the operator is the same at
    every time.
    ``noise``: std per variable, or per ``variable@level`` (hPa), in the variable's units;
    ``channel_stats``: (mean, std) per (variable, level) of a prior in normalised units,
    the values become (v − mean)/std and the noise σ/std.

    Raises:
        ProfileError: no profiles; a profile variable the model does not have (naming
            the model's); a profile that observes no model level; two soundings of one
            station at the same field time.
    """
    if not matched:
        raise ProfileError(f"{name}: no profiles")
    model_vars = sorted({v for v, lev in channels if lev is not None})
    if not model_vars:
        raise ProfileError(
            f"{name}: the model has no pressure-level channels (its channels are "
            f"{sorted({v for v, _ in channels})}); soundings observe multi-level priors"
        )
    index = {(v, float(lev)): k for k, (v, lev) in enumerate(channels) if lev is not None}
    # channel → station → (profile, {time index: value})
    rows: dict[int, dict[str, tuple[Profile, dict[int, float]]]] = {}
    for when, prof in matched:
        for variable in prof.values:
            if variable not in model_vars:
                raise ProfileError(
                    f"sounding {prof.station} at {prof.time}: the model has no variable "
                    f"{variable!r} on pressure levels (it has {model_vars})"
                )
            levels = [lev for v, lev in channels if v == variable and lev is not None]
            for level, value in zip(*to_model_levels(prof, variable, levels), strict=True):
                station = rows.setdefault(index[(variable, float(level))], {})
                first, by_time = station.setdefault(prof.station, (prof, {}))
                if when is None:
                    continue
                if when in by_time:
                    raise ProfileError(
                        f"sounding {prof.station}: two soundings at field time {when} "
                        f"({first.time} and {prof.time}); give one per station and time"
                    )
                by_time[when] = value
    parts, blocks, labels = [], [], []
    for k in sorted(rows):
        variable, level = channels[k]
        mean, std = (0.0, 1.0) if channel_stats is None else channel_stats[(variable, level)]
        stations = list(rows[k].items())
        parts.append(
            PointSample(
                tuple((prof.lat, prof.lon) for _, (prof, _) in stations),
                _noise_of(noise, variable, level, name) / std,
                tuple(sid for sid, _ in stations),
                name=f"{name} {variable}@{level:g}",
                channel=k,
            )
        )
        block = np.full((n_times, len(stations)), np.nan)
        for j, (_, (_, by_time)) in enumerate(stations):
            for when, value in by_time.items():
                block[when, j] = (value - mean) / std
        blocks.append(block)
        labels.extend(f"{sid} {variable}@{level:g}" for sid, _ in stations)
    return Composite(tuple(parts), name=name), np.concatenate(blocks, axis=1), labels


def profile_operator(
    profiles: Sequence[Profile] | Profile,
    channels: Sequence[tuple[str, float]],
    noise: Mapping[str, float],
    name: str = "soundings",
    channel_stats: Mapping[tuple[str, float], tuple[float, float]] | None = None,
) -> tuple[Composite, np.ndarray, list[str]]:
    """The observation operator of ``profiles`` of one time on a model with ``channels``
    ((variable, level hPa) per channel, in channel order), the observed values (n_obs,)
    and a label per row: :func:`profile_observations` at a single time.

    Raises:
        ProfileError: as :func:`profile_observations`.
    """
    if isinstance(profiles, Profile):
        profiles = [profiles]
    matched = [(0, prof) for prof in profiles]
    op, values, labels = profile_observations(matched, 1, channels, noise, name, channel_stats)
    return op, values[0], labels
