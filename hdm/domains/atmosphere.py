"""Gridded reanalysis fields: the named datasets hdm ships, their splits and grids.

A gridded dataset is one or more variables on a regular latitude–longitude grid over
time, opened lazily with :func:`hdm.data.open.open_fields` (so the hdm schema holds:
``time``, ``lat`` ascending, ``lon``). Named datasets fix the file, the variables and the
train/test split once, so configs, benchmarks and the CLI agree:

=========  =====================================================================
name       contents
=========  =====================================================================
``uk_t2m`` ERA5 2 m temperature (K), British Isles, March 2019, hourly,
           33 × 49 at 0.25° (50–58 °N, 10 °W–2 °E); train 03-01..03-24,
           test 03-25..03-31 (``data/atmos/era5_t2m_uk_2019-03``)
``rhine``  ERA5 u10, v10 (m s-1), d2m (K), sp (Pa), W. Europe (45–55 °N, 0–10 °E),
           2020-01-01 hourly, 41 × 41 at 0.25°; train 00–17 UTC, test 18–23 UTC
           (``data/atmos/era5_rhine_2020-01-01``; one day: a capability check)
=========  =====================================================================

Any other netCDF/zarr source works too: give ``path`` and ``variables`` (and a
``train`` time range) in the config instead of a name.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.data.open import open_fields, renamed_from
from hdm.data.schema import LAT, LEVEL, LON, TIME
from hdm.data.units import known, parse_units
from hdm.domains.shipped import shipped_path

__all__ = [
    "FAR_FOR_ONE_VALUE",
    "GRIDDED_DATASETS",
    "GriddedSpec",
    "check_training_units",
    "check_training_values",
    "gridded_spec",
    "open_split",
    "recorded_path",
    "training_spec",
]

#: the largest |value − centre| / std of any one value: beyond it lie missing-value codes
#: (−9999, netCDF's default fill 9.97e36, 0 K), never weather. Training values are
#: measured from their median in robust stds (1.4826 × the median absolute deviation, or
#: 1.2533 × the mean absolute deviation where that is larger: a variable at one value
#: more than half the time), which the codes do not pull as they pull the std; downscaling
#: inputs (:mod:`hdm.downscaling.inputs`) from the model's training mean in training stds
FAR_FOR_ONE_VALUE = 50.0


@dataclass(frozen=True)
class GriddedSpec:
    """Where a gridded dataset lives and how it is split (ISO times, bounds included).

    ``path`` is a file, glob or zarr store; with ``shipped`` it is relative to the shipped
    data folder (:mod:`hdm.domains.shipped`), else to the working directory."""

    name: str
    path: str | tuple[str, ...]
    variables: tuple[str, ...]
    train: tuple[str, str]
    test: tuple[str, str] | None = None
    shipped: bool = False
    #: IGRA2 stations of the domain's observing-system experiments: conditioned on, and
    #: held out for scoring (never conditioned on)
    conditioning_stations: tuple[str, ...] = ()
    heldout_stations: tuple[str, ...] = ()
    #: pressure levels (hPa) of the leveled variables to keep; () keeps every level
    levels: tuple[float, ...] = ()

    def resolved_path(self) -> Path | list[Path]:
        """The file (or files, one per variable) of the dataset."""
        paths = [self.path] if isinstance(self.path, str) else list(self.path)
        if self.shipped:
            found = [shipped_path(p, f"the {self.name} dataset") for p in paths]
        else:
            found = [Path(p) for p in paths]
        return found[0] if isinstance(self.path, str) else found

    def period(self, split: str) -> tuple[str, str] | None:
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        if split == "all":
            return None
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")


_RHINE = "atmos/era5_rhine_2020-01-01/ERA5_2020-01-01_{}.nc"
#: the 14 IGRA2 stations active in 2020 inside the Rhine box (data/atmos/PROVENANCE.md):
#: 10 conditioned on, 4 held out
_RHINE_CONDITIONING = tuple(
    "BEM00006458 FRM00007145 GMM00010035 GMM00010238 GMM00010304 GMM00010410 "
    "GMM00010618 GMM00010739 NLM00006260 SZM00006610".split()
)
_RHINE_HELDOUT = ("GMM00010113", "ITM00016080", "UKM00003693", "UKM00003882")

GRIDDED_DATASETS: dict[str, GriddedSpec] = {
    "uk_t2m": GriddedSpec(
        name="uk_t2m",
        path="atmos/era5_t2m_uk_2019-03/era5_t2m_2019-03_uk.nc",
        variables=("t2m",),
        train=("2019-03-01T00", "2019-03-24T23"),
        test=("2019-03-25T00", "2019-03-31T23"),
        shipped=True,
        # 10 IGRA2 stations active in 2019 inside the grid, plus Kinloss and Waddington
        conditioning_stations=tuple(
            "UKM00003023 UKM00003238 UKM00003354 UKM00003502 UKM00003559 UKM00003693 "
            "UKM00003743 UKM00003808 UKM00003882 UKM00003918 UKM00003066 UKM00003377".split()
        ),
        # Leuchars, Leeming, Brize Norton, Wattisham: real IGRA2 sites
        heldout_stations=("UKM00003171", "UKM00003257", "UKM00003649", "UKM00003590"),
    ),
    # one day of ERA5 surface fields over the Rhine: a capability check of several
    # variables in one prior (18 training fields), not a climatology
    "rhine": GriddedSpec(
        name="rhine",
        path=tuple(_RHINE.format(v) for v in ("u10", "v10", "d2m", "sp")),
        variables=("u10", "v10", "d2m", "sp"),
        train=("2020-01-01T00", "2020-01-01T17"),
        test=("2020-01-01T18", "2020-01-01T23"),
        shipped=True,
        conditioning_stations=_RHINE_CONDITIONING,
        heldout_stations=_RHINE_HELDOUT,
    ),
    # the same day and box on pressure levels: winds and humidity at the mandatory
    # levels a radiosonde reports, for profile observations (a capability check on 18
    # training fields, not a climatology)
    "rhine_levels": GriddedSpec(
        name="rhine_levels",
        path=tuple(_RHINE.format(v) for v in ("pl_u", "pl_v", "pl_q")),
        variables=("u", "v", "q"),
        train=("2020-01-01T00", "2020-01-01T17"),
        test=("2020-01-01T18", "2020-01-01T23"),
        shipped=True,
        conditioning_stations=_RHINE_CONDITIONING,
        heldout_stations=_RHINE_HELDOUT,
        levels=(300.0, 500.0, 700.0, 850.0, 925.0, 1000.0),
    ),
}


def gridded_spec(
    name: str,
    path: str = "",
    variables: Sequence[str] = (),
    train: tuple[str, str] | None = None,
    test: tuple[str, str] | None = None,
    levels: Sequence[float] = (),
) -> GriddedSpec:
    """The named dataset, with any of its fields overridden; or a custom one (``path``)."""
    if name in GRIDDED_DATASETS:
        base = GRIDDED_DATASETS[name]
        return GriddedSpec(
            name=name,
            path=path or base.path,
            variables=tuple(variables) or base.variables,
            train=train or base.train,
            test=test or base.test,
            shipped=base.shipped and not path,
            conditioning_stations=base.conditioning_stations,
            heldout_stations=base.heldout_stations,
            levels=tuple(float(v) for v in levels) or base.levels,
        )
    if not path:
        raise ValueError(
            f"unknown gridded dataset {name!r}: known ones are {sorted(GRIDDED_DATASETS)}; "
            "for another source give data.path (a netCDF/zarr path or glob) and data.variables"
        )
    if train is None:
        raise ValueError(
            f"gridded dataset {name!r} from {path}: give data.train_start and data.train_end"
        )
    return GriddedSpec(name, path, tuple(variables), train, test, levels=tuple(levels))


def training_spec(metadata: dict) -> GriddedSpec:
    """The dataset and training period a gridded model was trained on, from the
    ``metadata`` of its checkpoint (for baselines fitted on the same period)."""
    name, path = str(metadata.get("dataset", "")), str(metadata.get("path", ""))
    named = GRIDDED_DATASETS.get(name)
    # a shipped dataset is found in the shipped data folder, wherever hdm runs (models
    # trained before hdm 0.2 recorded its path relative to the repository as data/...)
    if named is not None and metadata.get("shipped", path in ("", f"data/{named.path}")):
        path = ""
    period = metadata.get("train_period")
    spec = gridded_spec(
        name,
        path,
        list(metadata.get("variables", ())),
        tuple(period) if period else None,
        levels=metadata.get("levels") or (),
    )
    if not spec.shipped and isinstance(spec.path, str) and _matches_nothing(spec.path):
        relative = "" if os.path.isabs(spec.path) else " (relative to where hdm train ran)"
        raise FileNotFoundError(
            f"the training data path recorded in the model, {spec.path}, "
            f"{'matches no file' if _has_wildcards(spec.path) else 'does not exist'}"
            f"{relative}: moved or deleted since training?"
        )
    return spec


def _has_wildcards(path: str) -> bool:
    return any(c in path for c in "*?[")


def _matches_nothing(path: str) -> bool:
    """Whether a file, folder or glob ``path`` names nothing that exists (a real file
    whose name holds glob characters, ``a[1].nc``, exists as itself)."""
    if Path(path).expanduser().exists():
        return False
    return not _has_wildcards(path) or not glob.glob(os.path.expanduser(path))


def recorded_path(spec: GriddedSpec) -> str:
    """The data path a model records: a shipped dataset's path as it is (relative to the
    shipped data folder, found wherever hdm runs), any other absolute (a glob's folder
    made absolute, its pattern kept), so that a model is usable from any folder."""
    if spec.shipped:
        return str(spec.path)
    if isinstance(spec.path, str):
        return os.path.abspath(os.path.expanduser(spec.path))
    return str(tuple(os.path.abspath(os.path.expanduser(p)) for p in spec.path))


def open_split(spec: GriddedSpec, split: str = "train", **kwargs) -> xr.Dataset:
    """The lazy dataset of one split (``"train"``, ``"test"`` or ``"all"``).

    Raises ValueError when the split's period selects no time step (the period and the
    file's time range are named).
    """
    period = spec.period(split)
    if split == "test" and period is None:
        raise ValueError(f"dataset {spec.name!r} has no test period")
    if spec.levels and "level" not in kwargs:
        kwargs["level"] = list(spec.levels)
    ds = open_fields(spec.resolved_path(), list(spec.variables) or None, time=None, **kwargs)
    ds = _without_extra_dims(ds, spec)
    if period is None:
        return ds
    chosen = ds.sel({TIME: slice(*period)})
    if chosen.sizes[TIME] == 0:
        times = ds[TIME].values
        raise ValueError(
            f"the {split} period {period[0]}..{period[1]} selects no time step of "
            f"{spec.resolved_path()} (its times run {str(times[0])[:16]}..{str(times[-1])[:16]})"
        )
    return chosen


def _files(spec: GriddedSpec) -> str:
    """The dataset's file(s) as one string, for messages."""
    path = spec.resolved_path()
    return ", ".join(map(str, path)) if isinstance(path, list) else str(path)


def _without_extra_dims(ds: xr.Dataset, spec: GriddedSpec) -> xr.Dataset:
    """``ds`` without dimensions of its fields beyond (time, [level,] lat, lon): one of
    length 1 (an ensemble ``number`` of one member, a ``height`` of 2 m) is dropped, as
    downscaling drops it from its inputs; a longer one (several members) is a ValueError
    naming it (as the file calls it), as which of its values to train on is the user's
    choice."""
    names = list(spec.variables) or [str(v) for v in ds.data_vars if {LAT, LON} <= set(ds[v].dims)]
    schema = (TIME, LEVEL, LAT, LON)
    extra = {d: ds.sizes[d] for n in names if n in ds for d in ds[n].dims if d not in schema}
    longer = [d for d, size in extra.items() if size > 1]
    if longer:
        d = longer[0]
        named = renamed_from(ds).get(d, d)
        name = next(n for n in names if n in ds and d in ds[n].dims)
        raise ValueError(
            f"{name} of dataset {spec.name!r} ({_files(spec)}) has a dimension {named!r} "
            f"({extra[d]} values) beyond (time, [level,] lat, lon): choose one of its values, "
            f"or their mean, in the file first (xarray .sel({named}=VALUE) or .mean({named!r}))"
        )
    return ds.isel(dict.fromkeys(extra, 0), drop=True) if extra else ds


def check_training_units(ds: xr.Dataset, names: Sequence[str], spec: GriddedSpec) -> None:
    """Refuse (UnitsError, one line naming the variable, the file and the string) units
    that cannot be read; warn where a variable has none: downscaling inputs are then
    taken to be in the same units, unchecked."""
    for name in names:
        units = ds[name].attrs.get("units")
        where = f"{name} in {_files(spec)}"
        if not known(units):
            warnings.warn(
                f"{where} has no units attribute: downscaling inputs will be taken to be in the "
                "same units, unchecked (give the file's variable a units attribute to have "
                "them converted and checked)",
                UserWarning,
                stacklevel=2,
            )
            continue
        parse_units(str(units), where)


def check_training_values(
    values: np.ndarray,
    channels: Sequence[str],
    ds: xr.Dataset,
    mean: np.ndarray,
    std: np.ndarray,
    units: Sequence[str],
    spec: GriddedSpec,
) -> None:
    """Refuse (ValueError, one line naming the channel) training fields that are not
    full: NaN or infinite values (at the same points at every time: a mask, which
    dropping times cannot remove), or a value :data:`FAR_FOR_ONE_VALUE` robust stds or
    more from the channel's median (a missing-value code; its time, position and value
    are named).

    ``values``: the normalised fields (N, C, lat, lon) of the times of ``ds``, channel c
    normalised with ``mean[c]``, ``std[c]`` (in ``units[c]``), named ``channels[c]``;
    ``spec``: the dataset they are of (named with its files).
    """
    what = f"the training data of {spec.name!r} ({_files(spec)})"
    times = ds[TIME].values
    lat, lon = ds[LAT].values, ds[LON].values
    for c, name in enumerate(channels):
        field = values[:, c]
        bad = ~np.isfinite(field)
        if bad.any():
            anywhere = bad.any(axis=0)
            if len(field) > 1 and np.array_equal(bad.all(axis=0), anywhere):
                raise ValueError(
                    f"{what}: {name} is NaN at the same {int(anywhere.sum())} of "
                    f"{anywhere.size} grid points at every time (a land/sea mask?): the model "
                    "needs values everywhere; fill those points (e.g. from their neighbours) "
                    "or choose another variable"
                )
            at = bad.reshape(len(field), -1).any(axis=1)
            first = int(np.argmax(at))
            raise ValueError(
                f"{what}: {name} is NaN or infinite at {int(bad[first].sum())} grid point(s) at "
                f"{str(times[first])[:16]} ({int(at.sum())} of {len(at)} times hold such "
                "values); drop or fill those times first"
            )
        centre = float(np.median(field))
        deviation = np.abs(field - centre)
        scale = max(1.4826 * float(np.median(deviation)), 1.2533 * float(deviation.mean()))
        if not scale > 0:  # one value everywhere
            continue
        far = deviation >= FAR_FOR_ONE_VALUE * scale
        if far.any():
            k = np.unravel_index(int(np.argmax(deviation)), field.shape)
            value = float(field[k]) * std[c] + mean[c]
            u = f" {units[c]}" if units[c] else ""
            raise ValueError(
                f"{what}: {name} at {str(times[k[0]])[:16]}, lat {lat[k[1]]:g}, lon "
                f"{lon[k[2]]:g} is {value:.6g}{u}, {deviation[k] / scale:.0f} robust stds from "
                f"its median {centre * std[c] + mean[c]:.5g}{u} (robust std "
                f"{scale * std[c]:.3g}{u}; {int(far.sum())} value(s) {FAR_FOR_ONE_VALUE:g} or more "
                "away): a missing-value code? Leave missing values empty (NaN) or give the "
                "file its _FillValue, and drop those times"
            )


def open_unseen_period(
    spec: GriddedSpec,
    period: tuple[str, str],
    what: str,
    trained_days: Sequence[str] | None = None,
) -> xr.Dataset:
    """The fields of ``period`` (START, END; inclusive, as ``.sel`` reads it) of the
    dataset, loaded: a ValueError naming ``what`` (e.g. the model) where the period selects
    no time step, where a selected time lies in the training period (the selected times
    are checked, so a date-only bound covers its whole day) or, for a model trained on
    chosen days (``trained_days``, ``YYYY-MM-DD``), on one of those days, or where a value
    is NaN."""
    ds = open_split(spec, "all")
    chosen = ds.sel({TIME: slice(*period)})
    if chosen.sizes[TIME] == 0:
        raise ValueError(f"the period {period[0]}..{period[1]} selects no time step of {what}")
    times = chosen[TIME].values
    train = spec.period("train")
    if trained_days:
        inside = np.isin(times.astype("datetime64[D]"), np.array(trained_days, "datetime64[D]"))
        seen = f"training days ({len(trained_days)} chosen days)"
    elif train is not None:
        inside = (times >= np.datetime64(train[0])) & (times <= np.datetime64(train[1]))
        seen = f"training period {train[0]}..{train[1]}"
    else:
        inside = np.zeros(len(times), bool)
    if inside.any():
        raise ValueError(
            f"the period {period[0]}..{period[1]} overlaps the {seen} of {what} "
            f"({int(inside.sum())} time steps): it was trained on those fields"
        )
    chosen = chosen.load()
    for name, values in chosen.data_vars.items():
        bad = ~np.isfinite(values.values)
        if bad.any():
            raise ValueError(
                f"{name} of the period {period[0]}..{period[1]} holds {int(bad.sum())} NaN or "
                "infinite values: the curve needs full fields"
            )
    return chosen
