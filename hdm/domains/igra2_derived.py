"""IGRA2 derived-parameter files (``<ID>-drvd.txt``) into the obs schema.

NCEI's derived files ("igra2-derived-format.txt") hold, per sounding, the levels of the
sounding data file with quantities computed from them, among them the wind components and
the vapour pressure that a profile observation needs. A header line::

    HEADREC 1 '#'   ID 2-12   YEAR 14-17   MONTH 19-20   DAY 22-23   HOUR 25-26
    RELTIME 28-31 (HHMM, 9999 missing)   NUMLEV 33-36   then precipitable water,
    inversion, tropopause and stability indices (not read here)

holds no position: the station's comes from the IGRA2 station list. A level line is 19
integer fields of 7 characters each followed by one blank (field k in columns
8k+1 … 8k+7)::

    PRESS (Pa)  REPGPH (m)  CALCGPH (m)  TEMP (0.1 K)  TEMPGRAD  PTEMP  PTEMPGRAD  VTEMP
    VPTEMP  VAPPRESS (0.001 hPa)  SATVAP (0.001 hPa)  REPRH (0.1 %)  CALCRH (0.1 %)
    RHGRAD  UWND (0.1 m s⁻¹)  UWDGRAD  VWND (0.1 m s⁻¹)  VWNDGRAD  N (refractive index)

−99999 (and −8888, −9999) mean missing and are read as NaN. A sounding with fewer level
lines than NUMLEV is dropped with a :class:`~hdm.domains.radiosondes.TruncatedSoundingWarning`
(the shipped sample ends with one).
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.domains.radiosondes import OBS_DIM, TruncatedSoundingWarning
from hdm.domains.stations import stations_by_id

__all__ = ["read_igra2_derived"]

_MISSING = (-99999, -9999, -8888)
_FIELDS = 19
#: (name, field index, scale, units) of the level fields read
_READ = (
    ("pressure", 0, 1.0, "Pa"),
    ("gph", 1, 1.0, "m"),
    ("temperature", 3, 0.1, "K"),
    ("vapour_pressure", 9, 0.1, "Pa"),  # 0.001 hPa = 0.1 Pa
    ("relative_humidity", 11, 0.1, "%"),
    ("u", 14, 0.1, "m s-1"),
    ("v", 16, 0.1, "m s-1"),
)


def _header(line: str, path: Path, number: int) -> dict:
    try:
        sid = line[1:12].strip()
        year, month, day, hour = (
            int(line[a:b]) for a, b in ((13, 17), (18, 20), (21, 23), (24, 26))
        )
        reltime, numlev = int(line[27:31]), int(line[32:36])
    except ValueError:
        raise ValueError(f"{path}, line {number}: malformed IGRA2 derived header") from None
    time = None if hour == 99 else dt.datetime(year, month, day, hour)
    release = None
    if reltime != 9999 and reltime // 100 != 99 and reltime % 100 != 99:
        release = dt.datetime(year, month, day, reltime // 100, reltime % 100)
    return {"id": sid, "time": time, "release": release, "numlev": numlev, "line": number}


def _level(line: str, path: Path, number: int) -> list[int]:
    try:
        return [int(line[8 * k : 8 * k + 7]) for k in range(_FIELDS)]
    except ValueError:
        raise ValueError(
            f"{path}, line {number}: malformed IGRA2 derived level line (19 fields of 7 "
            "characters expected)"
        ) from None


def read_igra2_derived(path: str | Path) -> xr.Dataset:
    """Read an IGRA2 derived-parameter file (format in the module docstring) into obs:
    dim ``obs`` (one row per level), coordinates ``id``, ``lat``, ``lon`` (from the IGRA2
    station list), ``time`` (nominal), ``release_time``, ``sounding``, ``level``;
    float64 ``pressure`` (Pa), ``gph`` (m, reported), ``temperature`` (K),
    ``vapour_pressure`` (Pa), ``relative_humidity`` (%), ``u``, ``v`` (m s-1), NaN where
    missing.

    Raises:
        FileNotFoundError: no such file. ValueError: a malformed line (file and line
            number) or no header. KeyError: a station not in the station list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IGRA2 derived file {path} not found")
    blocks, current = [], None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            if current is not None:
                blocks.append(current)
            current = {**_header(line, path, number), "levels": []}
        elif current is None:
            raise ValueError(f"{path}, line {number}: a level line before the first header")
        else:
            current["levels"].append(_level(line, path, number))
    if current is None:
        raise ValueError(f"{path}: no IGRA2 header line ('#...') in the file")
    blocks.append(current)
    kept = []
    for b in blocks:
        if len(b["levels"]) < b["numlev"]:
            warnings.warn(
                f"{path.name}: truncated sounding {b['id']} {b['time']} (header on line "
                f"{b['line']}): NUMLEV says {b['numlev']} levels, found {len(b['levels'])}; "
                "dropped",
                TruncatedSoundingWarning,
                stacklevel=2,
            )
        else:
            kept.append(b)
    if not kept:
        raise ValueError(f"{path}: no complete sounding")
    stations = stations_by_id(sorted({b["id"] for b in kept}))
    where = {sid: i for i, sid in enumerate(stations["id"].values.astype(str))}
    raw = np.asarray([lev for b in kept for lev in b["levels"]], dtype=np.int64)
    per = np.concatenate([np.full(len(b["levels"]), k) for k, b in enumerate(kept)])
    data = {}
    for name, k, scale, units in _READ:
        values = raw[:, k] * scale
        values[np.isin(raw[:, k], _MISSING)] = np.nan
        data[name] = (OBS_DIM, values, {"units": units})
    ids = np.asarray([kept[s]["id"] for s in per])
    rows = [where[i] for i in ids]

    def times(key):
        return np.asarray(
            [
                np.datetime64(kept[s][key], "ns") if kept[s][key] else np.datetime64("NaT", "ns")
                for s in per
            ],
            dtype="datetime64[ns]",
        )

    return xr.Dataset(
        data,
        coords={
            "id": (OBS_DIM, ids),
            "lat": (OBS_DIM, stations["lat"].values[rows], {"units": "degrees_north"}),
            "lon": (OBS_DIM, stations["lon"].values[rows], {"units": "degrees_east"}),
            "time": (OBS_DIM, times("time")),
            "release_time": (OBS_DIM, times("release")),
            "sounding": (OBS_DIM, per),
            "level": (OBS_DIM, np.concatenate([np.arange(len(b["levels"])) for b in kept])),
        },
        attrs={
            "source": path.name,
            "format": "IGRA2 derived parameters (v2)",
            "n_soundings": len(kept),
        },
    )
