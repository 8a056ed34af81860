"""The ``hdm downscale`` job: flags and YAML → one config → the batch run → maps.

Every ``hdm downscale`` flag sets one key of the
:class:`~hdm.pipelines.config.DownscaleRunConfig` (:data:`DOWNSCALE_FLAGS`, which also
builds the command line's arguments); the precedence, lowest first, is the YAML file,
the flags, then ``--set key=value``. :func:`run_downscale` is the same job from Python
keyword arguments named like the flags.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hdm.data.open import open_fields
from hdm.data.schema import LEVEL, MEMBER, TIME
from hdm.data.stores import open_store
from hdm.downscaling.inputs import select_values
from hdm.downscaling.soundings import read_profiles
from hdm.pipelines.batch import run_batch
from hdm.pipelines.config import (
    ConfigError,
    DownscaleRunConfig,
    apply_overrides,
    downscale_config_from_dict,
)
from hdm.plotting import plot_downscale_maps

__all__ = ["DOWNSCALE_FLAGS", "Flag", "downscale_config", "run_downscale", "run_downscale_job"]


@dataclass(frozen=True)
class Flag:
    """An ``hdm downscale`` option: its name (``--NAME`` with ``_`` as ``-``; the keyword
    of :func:`run_downscale`), the config key it sets, its type and help. ``listed``:
    comma-separated on the command line, a list in the config; ``nargs``: several
    values after the flag ("+")."""

    name: str
    key: str
    type: type = str
    help: str = ""
    listed: bool = False
    nargs: str | None = None


DOWNSCALE_FLAGS: tuple[Flag, ...] = (
    Flag(
        "coarse",
        "inputs.coarse",
        help="coarse field (netCDF/zarr) on any lat/lon grid over the domain",
    ),
    Flag(
        "coarse_sampling",
        "inputs.coarse_sampling",
        help="what the --coarse values are: mean (of the cell around each value) or "
        "point (grid-point values, e.g. ERA5 on a 1° grid); default: the file's CF "
        "cell_methods, else mean",
    ),
    Flag(
        "select",
        "inputs.select",
        help="DIM=VALUE,...: one value of a dimension of the input files beyond time, "
        "level, lat and lon, by its coordinate (else position), or DIM=mean: number=3 for "
        "member 3 of an ensemble reanalysis",
        listed=True,
    ),
    Flag("truth", "inputs.truth", help="high-res field to coarse-grain by --factor (an OSSE)"),
    Flag("factor", "inputs.factor", int, "coarse-graining factor for --truth"),
    Flag(
        "stations",
        "stations.file",
        help="CSV station tables (id, lat, lon, time, value) or IGRA2 sounding files "
        "(surface temperature), comma-separated",
        listed=True,
    ),
    Flag(
        "profiles",
        "inputs.profiles",
        help="soundings observing a multi-level prior: IGRA2 sounding or derived-parameter "
        "files, or CSV profile tables (id, lat, lon, time, pressure, variable, value, units)",
        listed=True,
        nargs="+",
    ),
    Flag(
        "simulate_stations",
        "stations.simulate",
        help="comma-separated IGRA2 ids; values sampled from --truth with --station-noise",
        listed=True,
    ),
    Flag(
        "station_variables",
        "stations.variables",
        help="comma-separated variables the simulated stations observe (default: every "
        "model variable in --truth)",
        listed=True,
    ),
    Flag(
        "station_units",
        "stations.units",
        help="units of the CSV stations' values, e.g. degC (default: the model's units)",
    ),
    Flag("station_noise", "ensemble.station_noise", float, "station error std, field units"),
    Flag("coarse_noise", "ensemble.coarse_noise", float, "coarse std (default 2%% of std)"),
    Flag(
        "every",
        "times.every",
        int,
        "the times whose hour of day is a multiple of HOURS (default 1: every time)",
    ),
    Flag("members", "ensemble.members", int, "ensemble size (default 16)"),
    Flag("scale", "ensemble.scale", int, "sample at S x the training resolution"),
    Flag("guidance", "ensemble.guidance", help="mmps (default), sda, dps or replacement"),
    Flag("sampler", "ensemble.sampler", help="heun (default), dpm2m, v3, sde2m, em or pc"),
    Flag("steps", "ensemble.steps", int, "sampler steps (default 25; em and pc 50)"),
    Flag("seed", "ensemble.seed", int, "the run's seed (default 0)"),
    Flag(
        "inflation",
        "ensemble.inflation",
        help="none (default), auto (estimated from the stations' residuals about the coarse "
        "field) or a factor >= 1 for the spread the observations do not see",
    ),
    Flag(
        "teleport",
        "ensemble.teleport",
        help="available (default: the ς* measured by hdm gaussian-stats where the model has "
        "it for the grid sampled, else none), auto (the same, required), a level ς*, or "
        "none: start from the exact Gaussian posterior at ς*",
    ),
    Flag(
        "runaway_bound",
        "ensemble.runaway_bound",
        help="refuse members with a |value| beyond this many training stds (default 50; "
        "none: only non-finite members are refused)",
    ),
    Flag(
        "device",
        "ensemble.device",
        help="where to sample: cpu (default), auto (CUDA where torch sees it), cuda or "
        "cuda:K; a batch run gets one worker per GPU",
    ),
    Flag("chunk_size", "batch.chunk_size", int, "times per task (default 4)"),
    Flag(
        "scheduler",
        "batch.scheduler",
        help="local (a LocalCluster, default), synchronous (this process), slurm, pbs, "
        "or the ADDRESS of a running Dask scheduler (tcp://host:8786)",
    ),
    Flag("workers", "batch.workers", int, "LocalCluster worker processes (default 1)"),
    Flag("torch_threads", "batch.torch_threads", int, "torch threads per task (default 2)"),
    Flag("out", "output.out", help="OUT.zarr or OUT.nc"),
)

_FLAGS = {f.name: f for f in DOWNSCALE_FLAGS}
#: keywords of run_downscale that are not flags of their own
_OTHER_KEYS = {"checkpoint": "checkpoint", "plots": "output.plots"}


def _set(raw: dict, key: str, value) -> None:
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value


def _dimension_values(items: list[str]) -> dict:
    """``["number=3", "expt=mean"]`` as ``{"number": 3, "expt": "mean"}`` (values read as
    YAML scalars, so numbers are numbers)."""
    chosen = {}
    for item in items:
        dim, sep, value = item.partition("=")
        if not sep or not dim.strip() or not value.strip():
            raise ConfigError(f"--select {item!r} must look like DIM=VALUE (number=3)")
        chosen[dim.strip()] = yaml.safe_load(value.strip())
    return chosen


def downscale_config(
    base: dict | None = None, overrides: list[str] | None = None, **options
) -> DownscaleRunConfig:
    """A :class:`DownscaleRunConfig` from a config mapping (a YAML file's), options named as
    in :data:`DOWNSCALE_FLAGS` (None: not given; ``times`` a (start, end) pair) and
    ``--set key=value`` overrides, in that order of precedence from lowest to highest."""
    raw = copy.deepcopy(base or {})
    for name, value in options.items():
        if value is None:
            continue
        if name == "times":
            start, end = value
            raw.setdefault("times", {}).update(start=str(start), end=str(end))
            continue
        if name in _OTHER_KEYS:
            _set(raw, _OTHER_KEYS[name], str(value) if isinstance(value, Path) else value)
            continue
        if name not in _FLAGS:
            known = sorted([*_FLAGS, *_OTHER_KEYS, "times"])
            raise TypeError(f"unknown downscale option {name!r}; options: {known}")
        flag = _FLAGS[name]
        if isinstance(value, Path):
            value = str(value)
        if flag.listed and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if name == "select" and isinstance(value, list):
            value = _dimension_values(value)
        _set(raw, flag.key, value)
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
    """The ``hdm downscale`` job from keyword options (see :data:`DOWNSCALE_FLAGS`;
    ``times`` is a (start, end) pair); in this process unless ``scheduler`` says otherwise."""
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
    summary = run_batch(cfg, resume=resume, overwrite=overwrite, progress=progress, run_id=run_id)
    summary["pngs"] = []
    if summary["status"] != "done":
        return summary
    out = Path(summary["out"])
    ds = open_store(out)
    summary.update(grid=ds.attrs.get("grid", ""), members=int(ds.sizes[MEMBER]))
    if not cfg.output.plots:
        return summary
    variables = [n for n in ds.data_vars if MEMBER in ds[n].dims]
    stations = (ds["obs_lat"].values, ds["obs_lon"].values) if "station_obs" in ds else None
    if cfg.inputs.profiles:
        stations = sounding_positions(cfg.inputs.profiles, ds.attrs.get("soundings", ""))
    for variable in variables:
        for level in map_levels(ds[variable]):
            for i in sorted({0, ds.sizes[TIME] - 1}):
                summary["pngs"].append(
                    str(_time_map(cfg, out, ds, variable, i, level, stations, len(variables)))
                )
    return summary


#: the pressure levels mapped for a variable on levels: the nearest to each (hPa)
MAPPED_LEVELS = (850.0, 500.0)


def map_levels(da) -> list[float | None]:
    """[None] for a single-level variable; else its levels nearest to
    :data:`MAPPED_LEVELS` (the lower and middle troposphere), each once."""
    if LEVEL not in da.dims:
        return [None]
    levels = da[LEVEL].values
    return sorted({float(levels[abs(levels - p).argmin()]) for p in MAPPED_LEVELS}, reverse=True)


def sounding_positions(files: list[str], used: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(lat, lon) of the stations whose soundings the run used (``used``: the store's
    ``soundings`` attribute, "STATION@TIME,...")."""
    ids = {item.split("@")[0] for item in used.split(",") if item}
    where = {}
    for path in files:
        for prof in read_profiles(path):
            if prof.station in ids:
                where[prof.station] = (prof.lat, prof.lon)
    if not where:
        return None
    lat, lon = zip(*where.values(), strict=True)
    return np.asarray(lat), np.asarray(lon)


def _time_map(cfg, out: Path, ds, variable: str, i: int, level, stations, n_variables: int):
    """The map of one variable (at one level) and time, next to the output."""
    t = ds[TIME].values[i]
    truth = None
    if cfg.inputs.truth and cfg.ensemble.scale == 1:
        truth = open_fields(cfg.inputs.truth, variable, time=[t], level=level)
        truth = select_values(truth, cfg.inputs.select, f"truth {cfg.inputs.truth}")[variable]
        truth = truth.isel({TIME: 0}).load()  # on its own grid: the map aligns it
    label = str(t)[:13] if n_variables == 1 else f"{variable}_{str(t)[:13]}"
    if level is not None:
        label = f"{variable}{level:g}_{str(t)[:13]}"
    png = out.with_name(f"{out.stem}_{label}.png")
    return plot_downscale_maps(png, ds, variable, i, truth=truth, stations=stations, level=level)
