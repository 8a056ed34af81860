"""``hdm train CONFIG``: data → normalised tensors → denoiser → checkpoints.

Writes into the output folder: ``checkpoint.pt`` (full training state, resumable),
``model.pt`` (EMA weights + descriptions: what ``hdm sample`` reads and what is
shipped), ``config.yaml`` (the resolved config) and ``train_log.json`` (losses, wall time).
A folder that holds a model already is refused unless ``--resume`` (the checkpoint's config
but for :data:`RESUMABLE_KEYS`) or ``--overwrite``; ``config.yaml`` is written when training
starts, and a run that fails before its first checkpoint leaves nothing behind.
With ``model.ensemble: K`` the K networks are K such runs in ``OUT/networks/k`` (seeds
``optim.seed`` + k), and ``OUT/model.pt`` holds all K (:func:`run_ensemble_training`).

Under ``torchrun --nproc_per_node W`` the W processes train one model data-parallel
(DistributedDataParallel; NCCL with one GPU per process, gloo on CPU), ``optim.batch_size``
per process; only process 0 writes these files and logs. The output folder must be on a
file system every process sees (``--resume`` makes each read the checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from hdm._version import __version__
from hdm.data.accessor import grid_of, to_tensor
from hdm.data.normalization import FieldNormaliser, ScalarNormaliser
from hdm.domains.atmosphere import (
    GRIDDED_DATASETS,
    check_training_units,
    check_training_values,
    gridded_spec,
    open_split,
    recorded_path,
)
from hdm.domains.functional import DATASETS as FUNCTIONAL_DATASETS
from hdm.domains.functional import curves, load_functional, validate_curves
from hdm.domains.statics import static_inputs, static_sources, statics_record
from hdm.downscaling.prior import channel_name
from hdm.hilbert import training
from hdm.hilbert.checkpoints import (
    GAUSSIAN_FILE,
    MODEL_STATS_FILE,
    export_ensemble,
    export_model,
    load_checkpoint,
)
from hdm.hilbert.covariance import SphericalCovariance
from hdm.hilbert.denoisers import PreconditionedDenoiser
from hdm.hilbert.distributed import distributed_session
from hdm.hilbert.grids import GlobalGrid, Grid, IntervalGrid, LatLonGrid
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.regime import SmallScaleLevel
from hdm.hilbert.spherical_network import TimeConditionedSFNO
from hdm.hilbert.statics import StaticInputs
from hdm.pipelines.config import (
    TrainRunConfig,
    load_train_config,
    save_config,
    train_config_from_dict,
)
from hdm.pipelines.runlog import current_run_id

log = logging.getLogger("hdm")


def grid_from_coordinate(x: np.ndarray, name: str = "x") -> Grid:
    """The IntervalGrid of a regular 1-D coordinate; an error names an irregular one."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"coordinate {name!r} must be 1-D with at least 2 points")
    dx = np.diff(x)
    if not np.all(dx > 0):
        raise ValueError(f"coordinate {name!r} must be strictly increasing")
    if not np.allclose(dx, dx[0], rtol=1e-6, atol=1e-9 * abs(x).max()):
        raise ValueError(
            f"coordinate {name!r} is not regularly spaced (spacing {dx.min():g}..{dx.max():g});"
            " interpolate onto a regular grid first"
        )
    return IntervalGrid(x[0], x[-1], len(x), name=name)


@dataclass
class TrainingData:
    """Training samples as a normalised tensor (N, C, *grid.shape) on their grid."""

    dataset: xr.Dataset
    tensor: torch.Tensor
    grid: Grid
    normaliser: ScalarNormaliser | FieldNormaliser
    metadata: dict


def is_gridded(cfg: TrainRunConfig) -> bool:
    """True for gridded (lat-lon) datasets, False for the 1-D functional ones."""
    if cfg.data.dataset in FUNCTIONAL_DATASETS and not cfg.data.path:
        return False
    return cfg.data.dataset in GRIDDED_DATASETS or bool(cfg.data.path)


def vector_normaliser(cfg: TrainRunConfig, normaliser: FieldNormaliser) -> FieldNormaliser:
    """``normaliser`` with the wind pair ``noise.vector`` (if any) scaled alike and unshifted
    (:meth:`~hdm.data.normalization.FieldNormaliser.with_vector`)."""
    if not cfg.noise.vector:
        return normaliser
    cfg.noise.vector_pair(normaliser.names)  # a clear error for a name that is not there
    return normaliser.with_vector(*cfg.noise.vector)


def training_period(cfg: TrainRunConfig) -> tuple[str, str] | None:
    """``(data.train_start, data.train_end)``; where one is given alone, the other is the
    named dataset's default (or, for one's own ``data.path``, the data's first or last
    time); None where neither is (a named dataset's default period)."""
    d = cfg.data
    start, end = d.train_start, d.train_end
    if not (start or end) or (start and end):
        return (start, end) if start else None
    given, other = ("data.train_start", "end") if start else ("data.train_end", "start")
    if d.dataset in GRIDDED_DATASETS:
        default = GRIDDED_DATASETS[d.dataset].train
        source = f"the {other} of {d.dataset}'s default training period"
    else:  # the data's own first and last time (opening is lazy: coordinates only)
        spec = gridded_spec(d.dataset, d.path or "", d.variables, ("", ""), levels=d.levels)
        times = open_split(spec, "all")["time"].values
        default = (str(times[0])[:19], str(times[-1])[:19])
        source = f"the data's {'last' if start else 'first'} time"
    period = (start or default[0], end or default[1])
    first, last = (pd.Period(period[0]).start_time, pd.Period(period[1]).end_time)
    if first > last:
        raise ValueError(
            f"{given} {start or end} is {'after' if start else 'before'} {source} "
            f"{default[1] if start else default[0]}: give data.train_{other} too"
        )
    log.info("%s given alone: training period %s..%s (its %s: %s)", given, *period, other, source)
    return period


def _check_test_period(spec, times: np.ndarray) -> None:
    """Refuse a training period that holds times of a named dataset's test period: its
    test scores would then be of fields the model was trained on."""
    if spec.test is None or spec.name not in GRIDDED_DATASETS:
        return
    start = np.datetime64(pd.Period(spec.test[0]).start_time)
    end = np.datetime64(pd.Period(spec.test[1]).end_time)
    inside = (times >= start) & (times <= end)
    if inside.any():
        train = f"{str(times[0])[:16]}..{str(times[-1])[:16]}"
        raise ValueError(
            f"the training period {train} overlaps {spec.name}'s test period "
            f"{spec.test[0]}..{spec.test[1]} ({int(inside.sum())} time steps): its test scores "
            f"would be of fields the model was trained on; let the training period end before "
            f"{spec.test[0]}"
        )


def gridded_training_data(cfg: TrainRunConfig) -> TrainingData:
    """The training period of a gridded dataset, normalised with statistics fitted on it.

    Refused, one line each: a period that overlaps a named dataset's test period; units
    that cannot be read (fields without units are warned about); fields with NaN (a
    mask, the same points at every time, is named as such) or a value
    :data:`~hdm.domains.atmosphere.FAR_FOR_ONE_VALUE` robust stds from its median."""
    d = cfg.data
    spec = gridded_spec(d.dataset, d.path or "", d.variables, training_period(cfg), levels=d.levels)
    ds = open_split(spec, "train")
    _check_test_period(spec, ds.time.values)
    if d.train_days:
        ds = select_days(ds, d.train_days, spec.name)
    names = list(spec.variables) or [str(v) for v in ds.data_vars]
    check_training_units(ds, names, spec)
    normaliser = vector_normaliser(cfg, FieldNormaliser.fit(ds, names))
    normalised = normaliser.normalise(ds[names])
    tensor = to_tensor(normalised, names, dtype=torch.float32)
    mean, std = normaliser.channel_stats()
    check_training_values(
        tensor.numpy(),
        [channel_name(v, lev) for v, lev in normaliser.channels],
        ds,
        mean,
        std,
        [str(ds[v].attrs.get("units", "")) for v, _ in normaliser.channels],
        spec,
    )
    times = ds.time.values
    metadata = {
        "kind": "gridded",
        "dataset": spec.name,
        "path": recorded_path(spec),
        "shipped": spec.shipped,
        "variables": names,
        "levels": list(spec.levels),
        "channels": [[v, lev] for v, lev in normaliser.channels],
        "units": {n: str(ds[n].attrs.get("units", "")) for n in names},
        "train_period": [str(times[0])[:19], str(times[-1])[:19]],
        "test_period": list(spec.test) if spec.test else None,
        "n_train": int(tensor.shape[0]),
    }
    if d.train_days:
        metadata["train_days"] = sorted({str(day) for day in times.astype("datetime64[D]")})
    return TrainingData(ds, tensor, grid_of(ds), normaliser, metadata)


def select_days(ds: xr.Dataset, days: Sequence[str], name: str) -> xr.Dataset:
    """The time steps of ``ds`` on the calendar ``days`` (``YYYY-MM-DD``), in time order;
    a ValueError naming the first day that is not in ``ds``'s period (or not a date)."""
    stamps = ds.time.values.astype("datetime64[D]")
    wanted = []
    for day in days:
        try:
            wanted.append(np.datetime64(str(day), "D"))
        except ValueError:
            raise ValueError(f"data.train_days: {day!r} is not a date (YYYY-MM-DD)") from None
    missing = [str(day) for day in wanted if day not in stamps]
    if missing:
        period = f"{stamps[0]}..{stamps[-1]}"
        raise ValueError(
            f"data.train_days: {missing[0]} is not in the training period of {name!r} ({period})"
        )
    return ds.isel(time=np.flatnonzero(np.isin(stamps, wanted)))


def functional_training_data(cfg: TrainRunConfig) -> TrainingData:
    ds = load_functional(cfg.data.dataset, seed=cfg.data.seed)
    train_curves = curves(ds, "train")
    validate_curves(train_curves, what=f"training data of {cfg.data.dataset!r}")
    grid = grid_from_coordinate(ds["x"].values)
    normaliser = ScalarNormaliser.fit(train_curves.values)
    values = normaliser.normalise(train_curves.values)
    tensor = torch.as_tensor(values, dtype=torch.float32).unsqueeze(1)
    metadata = {
        "kind": "functional",
        "dataset": cfg.data.dataset,
        "data_seed": cfg.data.seed,
        "n_train": int(tensor.shape[0]),
        "x_units": str(ds.attrs.get("x_units", "")),
        "y_units": str(ds.attrs.get("y_units", "")),
    }
    return TrainingData(ds, tensor, grid, normaliser, metadata)


#: the datasets on the whole sphere (global grids), by name
GLOBAL_DATASETS = ("shallow_water",)


def global_training_data(cfg: TrainRunConfig) -> TrainingData:
    """The training trajectories of a shallow-water store (``data.path``, made by ``hdm
    shallow-water``), every variable (or ``data.variables``) normalised with its
    area-weighted mean and std, on the store's global grid."""
    from hdm.domains.shallow_water import open_shallow_water

    if not cfg.data.path:
        raise ValueError(
            "dataset shallow_water needs data.path: a store made by hdm shallow-water --out"
        )
    ds = open_shallow_water(cfg.data.path, "train").load()
    ds = ds.drop_vars([c for c in ds.coords if c not in ("lat", "lon")]).rename(sample="time")
    names = list(cfg.data.variables) or ["h", "u", "v"]
    normaliser = vector_normaliser(cfg, FieldNormaliser.fit(ds, names))
    tensor = to_tensor(normaliser.normalise(ds[names]), names, dtype=torch.float32)
    lat, lon = ds["lat"].values, ds["lon"].values
    grid = GlobalGrid.make(len(lat), len(lon))
    if not (np.allclose(grid.coords()[0], lat) and np.allclose(grid.coords()[1], lon)):
        raise ValueError(
            f"{cfg.data.path}: its latitudes and longitudes are not those of "
            f"{grid.describe()} (south to north with both poles, from -180)"
        )
    if cfg.model.kind == "fno":
        # the planar comparison of issue 21: the same points as a lat-lon box (periodic in
        # longitude, mirror-extended in latitude) for the planar FNO and planar Q
        grid = LatLonGrid.regular((-90.0, 90.0), (-180.0, 180.0), grid.shape)
        log.info("model.kind fno on a global store: the planar model on %s", grid.describe())
    metadata = {
        "kind": "global",
        "dataset": cfg.data.dataset,
        "path": _absolute(cfg.data.path),
        "variables": names,
        "levels": [],
        "channels": [[v, lev] for v, lev in normaliser.channels],
        "units": {n: str(ds[n].attrs.get("units", "")) for n in names},
        "n_train": int(tensor.shape[0]),
    }
    return TrainingData(ds, tensor, grid, normaliser, metadata)


def training_data(cfg: TrainRunConfig, *, resample: bool = True) -> TrainingData:
    """Functional curves, gridded fields or global states, as ``cfg.data`` says; with
    ``data.bootstrap_days`` (and ``resample``) the gridded fields of a bootstrap resample
    of the training days (:func:`bootstrap_days`). ``resample=False``: every training
    field once, as the Gaussian statistics of a bagged ensemble use them."""
    regional = cfg.data.dataset not in GLOBAL_DATASETS and is_gridded(cfg)
    for option in ("bootstrap_days", "train_days"):
        if getattr(cfg.data, option) and not regional:
            raise ValueError(
                f"data.{option} selects days of a regional gridded dataset's "
                f"training period; {cfg.data.dataset!r} has no such days"
            )
    if cfg.data.dataset in GLOBAL_DATASETS:
        return global_training_data(cfg)
    if not is_gridded(cfg):
        return functional_training_data(cfg)
    data = gridded_training_data(cfg)
    if cfg.data.bootstrap_days and resample:
        return bootstrap_days(data, cfg.optim.seed)
    return data


def bootstrap_days(data: TrainingData, seed: int) -> TrainingData:
    """``data`` with its fields replaced by those of a bootstrap resample of its days.

    The D calendar days of the training period are drawn D times with replacement
    (``numpy.random.default_rng(seed)``); the fields of each drawn day enter once per
    draw, in time order, so a day drawn twice weighs twice and about D/e days are left
    out. Days, not fields, are the unit: fields an hour apart are nearly copies, and a
    resample of fields would leave every day in. The normaliser and grid stay those of
    the whole period, so that networks trained on different resamples form one model.
    The drawn days go into ``metadata["bootstrap_days"]``.
    """
    times = data.dataset.time.values.astype("datetime64[D]")
    days = np.unique(times)
    if len(days) < 2:
        raise ValueError(
            f"data.bootstrap_days needs a training period of at least 2 days; "
            f"{data.metadata.get('dataset')!r} has {len(days)}"
        )
    drawn = np.sort(np.random.default_rng(seed).choice(days, size=len(days), replace=True))
    index = np.concatenate([np.flatnonzero(times == day) for day in drawn])
    metadata = {
        **data.metadata,
        "n_train": len(index),
        "bootstrap_days": {"seed": int(seed), "days": [str(day) for day in drawn]},
    }
    return replace(data, tensor=data.tensor[torch.as_tensor(index)], metadata=metadata)


def channel_names(data: TrainingData) -> list[str]:
    """A name per channel: the variable, or ``variable@level`` (hPa)."""
    return [channel_name(v, lev) for v, lev in getattr(data.normaliser, "channels", ())]


def training_statics(cfg: TrainRunConfig, data: TrainingData) -> tuple[StaticInputs | None, dict]:
    """The static inputs ``cfg.statics`` names, normalised on the training grid, and their
    checkpoint record (None, {} without statics). The fields must cover the grid."""
    if not cfg.statics:
        return None, {}
    if data.metadata["kind"] != "gridded":
        raise ValueError(
            f"statics {cfg.statics} need a gridded (lat-lon) dataset; "
            f"{cfg.data.dataset!r} is a functional one"
        )
    sources = static_sources(cfg.statics)
    inputs = static_inputs(sources).fit(data.grid)
    return inputs, {"statics": statics_record(sources, inputs)}


def training_regime(cfg: TrainRunConfig, data: TrainingData) -> SmallScaleLevel | None:
    """The small-scale level's record fitted on the training fields when
    ``model.small_scale_level`` is set (:mod:`hdm.hilbert.regime`), else None; refused
    (naming why) for anything but one-channel regional lat-lon FNO models."""
    if not cfg.model.small_scale_level:
        return None
    grid = data.grid
    if not isinstance(grid, LatLonGrid) or cfg.model.kind != "fno":
        raise ValueError(
            "model.small_scale_level conditions regional lat/lon FNO models; "
            f"{cfg.data.dataset!r} is on {grid.describe()} with model.kind {cfg.model.kind!r}"
        )
    if data.tensor.shape[1] != 1:
        raise ValueError(
            f"model.small_scale_level conditions one-channel models; {cfg.data.dataset!r} "
            f"has {data.tensor.shape[1]} channels"
        )
    regime = SmallScaleLevel.fit(data.tensor, grid, cfg.optim.small_scale_sigma)
    for e in regime.estimators:
        log.info(
            "small-scale level from coarse ×%d: slope %.3f, correlation %.3f, residual std %.3f",
            e.factor,
            e.slope,
            e.correlation,
            e.residual_std,
        )
    return regime


def build_model(
    cfg: TrainRunConfig,
    grid: Grid | None = None,
    channels: int = 1,
    statics: StaticInputs | None = None,
    variables: Sequence[str] = (),
    regime: SmallScaleLevel | None = None,
) -> PreconditionedDenoiser:
    """The denoiser of ``cfg`` for fields on grids like ``grid`` (default: 1-D), with
    ``statics`` as extra input channels when given; ``variables`` (the channels' names)
    place ``noise.vector``; ``regime``: the small-scale level the network is conditioned
    on (:func:`training_regime`)."""
    process = ForwardProcess(cfg.schedule.build(), cfg.noise.build(variables))
    if isinstance(grid, GlobalGrid) or cfg.model.kind == "sfno":
        if not isinstance(grid, GlobalGrid) or cfg.model.kind != "sfno":
            raise ValueError(
                "a global grid takes model.kind: sfno (and noise.kind: spherical), and an sfno "
                f"a global grid; got model.kind {cfg.model.kind!r} on "
                f"{'a 1-D grid' if grid is None else grid.describe()}"
            )
        if cfg.noise.kind != "spherical":
            raise ValueError(f"a global grid takes noise.kind: spherical, got {cfg.noise.kind!r}")
        backbone = TimeConditionedSFNO(
            channels=channels,
            width=cfg.model.width,
            n_degrees=cfg.model.n_modes,
            n_layers=cfg.model.n_layers,
            time_dim=cfg.model.time_dim,
            static_channels=len(statics) if statics is not None else 0,
            quadrature=grid.quadrature,
            weights=cfg.model.sfno_weights,
        )
        return PreconditionedDenoiser(backbone, process, cfg.model.parameterisation, statics)
    dim = grid.ndim if grid is not None else 1
    modes = cfg.model.n_modes
    if dim == 2:
        modes = (cfg.model.n_modes, cfg.model.n_modes_2 or cfg.model.n_modes)
    backbone = TimeConditionedFNO(
        dim=dim,
        channels=channels,
        width=cfg.model.width,
        n_modes=modes,
        n_layers=cfg.model.n_layers,
        time_dim=cfg.model.time_dim,
        static_channels=len(statics) if statics is not None else 0,
        condition_inputs=0 if regime is None else 1,
    )
    return PreconditionedDenoiser(backbone, process, cfg.model.parameterisation, statics, regime)


def _log_start(cfg: TrainRunConfig, data: TrainingData, denoiser, ctx) -> None:
    log.info(
        "training %s on %d samples on %s, Q = %s",
        cfg.name,
        data.tensor.shape[0],
        data.grid.describe(),
        denoiser.process.covariance.describe(),
    )
    drawn = data.metadata.get("bootstrap_days")
    if drawn:
        log.info(
            "bootstrap of the days (seed %d): %d distinct of %d drawn",
            drawn["seed"],
            len(set(drawn["days"])),
            len(drawn["days"]),
        )
    log.info(
        "%d process(es), backend %s, rank 0 on %s: batch %d per process, %d per step%s",
        ctx.world_size,
        ctx.backend or "none",
        ctx.device,
        cfg.optim.batch_size,
        cfg.optim.batch_size * ctx.world_size,
        ", bfloat16 autocast" if cfg.optim.amp and ctx.device.type == "cuda" else "",
    )
    covariance = denoiser.process.covariance
    if isinstance(covariance, SphericalCovariance):
        share = covariance.share_beyond(cfg.model.n_modes, data.grid)
        if share > 1e-3:
            log.warning(
                "Q puts %.1f %% of its variance at degrees ℓ ≥ %d, which the SFNO's spectral "
                "layers do not keep; that noise stays in the samples (noise.band_limit: %d "
                "removes it; BENCHMARKS.md sphere-prior)",
                100 * share,
                cfg.model.n_modes,
                cfg.model.n_modes,
            )


def train(
    config: str | Path | dict | TrainRunConfig,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Train a model (``hdm.train``): ``config`` is a YAML file, a mapping of its sections or
    a :class:`TrainRunConfig`; ``overrides`` are ``section.key=value`` strings (a file
    only). Writes ``model.pt``, ``checkpoint.pt``, ``config.yaml`` and ``train_log.json``
    into ``out`` and returns the summary of ``train_log.json``; ``resume`` and
    ``overwrite`` as in :func:`run_training`."""
    if isinstance(config, str | Path):
        cfg = load_train_config(config, overrides)
    elif isinstance(config, dict):
        cfg = train_config_from_dict(config)
    else:
        cfg = config
    return run_training(cfg, out, resume=resume, overwrite=overwrite, progress=progress)


#: what a run writes into its folder, and what is made for its model there later
#: (``hdm gaussian-stats``, ``hdm model-stats``): what ``--overwrite`` replaces
RUN_FILES = (
    "model.pt",
    "checkpoint.pt",
    "config.yaml",
    "train_log.json",
    GAUSSIAN_FILE,
    MODEL_STATS_FILE,
)

#: the config entries that may differ between a checkpoint and the run that resumes it
#: (``--resume``): the run's name, ``hdm sample``'s defaults, how many steps in all (not
#: fewer than the checkpoint's), the peak learning rate (lowered after a divergence),
#: when checkpoints are written and bfloat16 autocast (the device); and ``optim.batch_size``
#: where the global batch stays (W processes resume as one). Everything else (data, noise,
#: schedule, model, statics, the other optimiser settings) must be the checkpoint's.
RESUMABLE_KEYS = ("name", "sample", *(f"optim.{k}" for k in training.RESUMABLE_OPTIM))

#: the entries of a checkpoint's metadata that describe its training data: a resumed run
#: must read the same (the same file, variables, units, period and fields)
DATA_KEYS = (
    "kind",
    "dataset",
    "path",
    "variables",
    "levels",
    "channels",
    "units",
    "train_period",
    "n_train",
    "train_days",
    "bootstrap_days",
)


def check_output_folder(out: Path, *, resume: bool, overwrite: bool, say: bool = True) -> None:
    """Refuse (one line) an output folder that holds a trained model (``model.pt``, a
    ``checkpoint.pt``, or those of an ensemble's networks) unless ``resume`` or
    ``overwrite``; with ``resume``, a ``model.pt`` without a checkpoint to continue. With
    ``resume`` and nothing to resume, training starts at step 0 (logged when ``say``)."""
    if resume and overwrite:
        raise ValueError(
            "--resume continues the run in --out, --overwrite replaces it: give one of them"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    held = [out / name for name in ("model.pt", "checkpoint.pt") if (out / name).exists()]
    networks = out / ENSEMBLE_DIR
    held += sorted(networks.glob("*/checkpoint.pt")) + sorted(networks.glob("*/model.pt"))
    if held and not (resume or overwrite):
        names = ", ".join(str(p.relative_to(out)) for p in held[:3])
        raise FileExistsError(
            f"{out} holds a trained model already ({names}{', ...' if len(held) > 3 else ''}); "
            "pass --resume to continue its training or --overwrite to train anew"
        )
    if not resume:
        return
    checkpoints = [p for p in held if p.name == "checkpoint.pt"]
    if not checkpoints and (out / "model.pt").exists():
        raise FileExistsError(
            f"{out} holds model.pt but no checkpoint.pt to resume from; pass --overwrite to "
            "train anew"
        )
    if not checkpoints and say:
        log.warning("--resume: %s holds no checkpoint; training starts at step 0", out)


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested mapping as ``{"section.key": value}``."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat(value, name + "."))
        else:
            flat[name] = value
    return flat


def _close(a, b) -> bool:
    """Equal, numbers to a relative 1e-6 (statistics recomputed from the same data)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return bool(np.isclose(a, b, rtol=1e-6, atol=0.0))
    return a == b


def _data_path(metadata: dict) -> str | None:
    """The data path of a checkpoint's metadata, absolute unless shipped (models trained
    before hdm recorded absolute paths: relative to the working directory)."""
    path = metadata.get("path")
    if path is None or metadata.get("shipped") or metadata.get("kind") == "functional":
        return path
    return _absolute(path)


def resume_changes(
    state: dict, cfg: TrainRunConfig, data: TrainingData, path: Path, world_size: int = 1
) -> dict:
    """The entries of :data:`RESUMABLE_KEYS` in which ``cfg`` differs from the checkpoint
    ``state`` at ``path``, ``{key: [old, new]}`` (and ``optim.batch_size`` where the
    global batch over ``world_size`` processes stays that of the checkpoint); a ValueError
    (one line) naming the other entries that differ: config keys, else the training data
    it reads (file, units, period, fields) or their normalisation statistics (the data
    changed)."""
    stored = state.get("config") or {}
    try:  # the checkpoint's config with today's defaults for keys newer than it
        old = _flat(train_config_from_dict(stored).to_dict())
    except (ValueError, KeyError):
        old = _flat(stored)
    if old.get("data.path"):  # recorded as typed before hdm made it absolute
        old["data.path"] = _absolute(old["data.path"])
    new = _flat(cfg.to_dict())
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]

    def resumable(key: str) -> bool:
        if key == "optim.batch_size":  # W processes with batch B resume as 1 with B·W
            was = old.get(key, 0) * int(state.get("world_size", 1))
            return was == new[key] * world_size
        return any(key == r or key.startswith(r + ".") for r in RESUMABLE_KEYS)

    refused = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if not resumable(k)]
    if not refused:
        metadata = state.get("metadata") or {}
        for key in DATA_KEYS:
            was, now = metadata.get(key), data.metadata.get(key)
            if key == "path":
                was, now = _data_path(metadata), _data_path(data.metadata)
            if not _close(was, now):
                refused.append(f"the training data's {key} {was!r} -> {now!r}")
    if not refused and not _close(state.get("normaliser"), data.normaliser.to_dict()):
        refused.append("the training data's normalisation statistics (the data changed)")
    step = int(state.get("step", 0))
    if not refused and cfg.optim.steps < step:
        refused.append(f"optim.steps {cfg.optim.steps} is below the checkpoint's step {step}")
    if refused:
        more = f"; and {len(refused) - 4} more" if len(refused) > 4 else ""
        raise ValueError(
            f"{path} was trained otherwise: {'; '.join(refused[:4])}{more}. --resume continues "
            "a run unchanged but for optim.steps (raised), optim.lr, optim.checkpoint_every, "
            "optim.amp, optim.batch_size (the same global batch), name and sample.*; pass "
            "--overwrite to train anew"
        )
    return {k: [old.get(k), new.get(k)] for k in keys}


def _remove_run_files(out: Path) -> None:
    """Remove the files of an earlier run in ``out`` (:data:`RUN_FILES`, its networks)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / ENSEMBLE_DIR).is_dir():
        shutil.rmtree(out / ENSEMBLE_DIR)


def _modified(path: Path) -> int | None:
    """When ``path`` was last written (ns), None where it does not exist."""
    return path.stat().st_mtime_ns if path.exists() else None


def _outermost_missing(out: Path) -> Path | None:
    """The outermost of ``out`` and its parents that does not exist (what ``mkdir
    parents=True`` would create), None when ``out`` exists."""
    missing = None
    for folder in (out, *out.absolute().parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _discard_failed_run(out: Path, created: Path | None, previous: bytes | None = None) -> None:
    """After a run failed: a folder with a checkpoint is kept (``--resume`` continues from
    it); else the ``config.yaml`` the run wrote goes (``previous``: what the file held
    before, put back), and the folders the run made (``created``: the outermost) too."""
    if not out.is_dir() or any(out.rglob("checkpoint.pt")):
        return
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    if previous is not None:
        (out / "config.yaml").write_bytes(previous)
    else:
        (out / "config.yaml").unlink(missing_ok=True)
    networks = out / ENSEMBLE_DIR
    if networks.is_dir() and not any(networks.iterdir()):
        networks.rmdir()


def _absolute(path: str) -> str:
    """A local file, folder or glob as an absolute path (``~`` expanded)."""
    return os.path.abspath(os.path.expanduser(str(path)))


def with_absolute_path(cfg: TrainRunConfig) -> TrainRunConfig:
    """``cfg`` with ``data.path`` absolute (a glob's folder made absolute, its pattern
    kept): the config a model records and ``config.yaml`` holds, which other commands
    (``hdm gaussian-stats``) read the training data through from any folder."""
    if not cfg.data.path:
        return cfg
    return replace(cfg, data=replace(cfg.data, path=_absolute(cfg.data.path)))


def run_training(
    cfg: TrainRunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    run_id: str | None = None,
) -> dict:
    """Train the model described by ``cfg`` (functional or gridded) into folder ``out``;
    ``run_id`` (default: ``HDM_RUN_ID`` or a new one) goes into the outputs.

    A folder that holds a trained model is refused unless ``resume`` (continue from its
    checkpoint; the config must be the checkpoint's but for :data:`RESUMABLE_KEYS`, else
    a ValueError names the keys that differ; without a checkpoint, training starts at
    step 0) or ``overwrite`` (the old run's :data:`RUN_FILES` are removed once the new
    run starts training). ``config.yaml`` is written when training starts; a run that
    fails before its first checkpoint leaves nothing (a folder it made is removed).

    Under torchrun every process runs this; each gets the same summary back, process 0
    alone writes the files (module docstring).
    """
    out = Path(out)
    run_id = run_id or current_run_id()
    cfg = with_absolute_path(cfg)
    if cfg.model.ensemble > 1:
        return run_ensemble_training(
            cfg, out, resume=resume, overwrite=overwrite, progress=progress, run_id=run_id
        )
    return _train_one(
        cfg, out, resume=resume, overwrite=overwrite, progress=progress, run_id=run_id
    )


def _train_one(
    cfg: TrainRunConfig,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    progress: bool,
    run_id: str,
    on_start=None,
) -> dict:
    """One network's run into ``out`` (:func:`run_training`); ``on_start`` (process 0)
    is called once the data and model are ready, before anything is written."""
    with distributed_session() as ctx:
        check_output_folder(out, resume=resume, overwrite=overwrite)
        torch.manual_seed(cfg.optim.seed)  # network initialisation, the same on every process
        data = training_data(cfg)
        statics, statics_entry = training_statics(cfg, data)
        channels = int(data.tensor.shape[1])
        names = channel_names(data)
        regime = training_regime(cfg, data)
        denoiser = build_model(cfg, data.grid, channels, statics, names, regime).to(ctx.device)
        checkpoint = out / "checkpoint.pt"
        history = []
        if resume and checkpoint.exists():
            state = load_checkpoint(checkpoint)
            changes = resume_changes(state, cfg, data, checkpoint, ctx.world_size)
            history = list((state.get("metadata") or {}).get("resumed", []))
            if changes:
                history.append({"step": int(state["step"]), "changed": changes})
                log.info(
                    "resuming with %s",
                    ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()),
                )
            log.info("resuming %s at step %d of %d", checkpoint, state["step"], cfg.optim.steps)
            del state
        extra = {
            **statics_entry,
            "config": cfg.to_dict(),
            "normaliser": data.normaliser.to_dict(),
            "metadata": {
                **data.metadata,
                **({"resumed": history} if history else {}),
                "torch": str(torch.__version__),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                "processes": ctx.world_size,
                "device": str(ctx.device),
                "run_id": run_id,
            },
        }
        created, previous = None, None
        before = _modified(checkpoint)
        try:
            if ctx.is_main:
                if on_start is not None:
                    on_start()
                if overwrite:
                    _remove_run_files(out)
                elif (out / "config.yaml").is_file():  # not a run's (no model): put back
                    previous = (out / "config.yaml").read_bytes()  # should this run fail
                created = _outermost_missing(out)
                out.mkdir(parents=True, exist_ok=True)
                save_config(cfg, out / "config.yaml")
                _log_start(cfg, data, denoiser, ctx)
            result = training.train(
                denoiser,
                data.tensor,
                data.grid,
                cfg.optim,
                checkpoint,
                resume=resume,
                extra=extra,
                progress=progress,
            )
            model_path = out / "model.pt"
            if ctx.is_main:
                export_model(result.checkpoint, model_path)
            ctx.barrier()  # model.pt is complete before any process reads its size
        except BaseException:
            if ctx.is_main and before is not None and _modified(checkpoint) == before:
                if previous is not None:  # resumed, failed before a checkpoint: as it was
                    (out / "config.yaml").write_bytes(previous)
            elif ctx.is_main:
                _discard_failed_run(out, created, previous)
            raise
        summary = {
            "name": cfg.name,
            "run_id": run_id,
            "hdm_version": __version__,
            "steps": result.steps,
            "final_loss": result.final_loss,
            "wall_time_s": result.wall_time_s,
            "checkpoint": str(result.checkpoint),
            "model": str(model_path),
            "model_bytes": model_path.stat().st_size,
            "n_parameters": sum(p.numel() for p in denoiser.parameters()),
        }
        if ctx.is_main:
            (out / "train_log.json").write_text(json.dumps(summary, indent=2))
    return summary


#: where network k of an ensemble is trained: OUT/networks/k (a run of its own)
ENSEMBLE_DIR = "networks"


def run_ensemble_training(
    cfg: TrainRunConfig,
    out: Path,
    *,
    resume: bool,
    progress: bool,
    run_id: str,
    overwrite: bool = False,
) -> dict:
    """Train the K = ``model.ensemble`` networks of ``cfg`` one after another, network k a
    run of its own into ``OUT/networks/k`` with ``optim.seed`` + k (its checkpoint, model,
    config and log: ``--resume`` continues each, and one that has reached ``optim.steps``
    takes no step), then write ``OUT/model.pt``, one file of all K
    (:func:`~hdm.hilbert.checkpoints.export_ensemble`), ``config.yaml`` and
    ``train_log.json`` (the networks' wall times summed, their final losses averaged).
    ``overwrite``: the old run's files and networks go once network 1 starts training."""
    size = cfg.model.ensemble
    with distributed_session() as ctx:  # the networks' runs join this one group
        check_output_folder(out, resume=resume, overwrite=overwrite, say=False)
        created = _outermost_missing(out)
        kept = out / "config.yaml"  # not a run's (no model) unless --overwrite: put back
        previous = kept.read_bytes() if kept.is_file() and not overwrite else None

        def replace_old_run() -> None:
            if overwrite:
                _remove_run_files(out)

        summaries = []
        try:
            for k in range(size):
                network = replace(
                    cfg,
                    model=replace(cfg.model, ensemble=1),
                    optim=replace(cfg.optim, seed=cfg.optim.seed + k),
                )
                log.info(
                    "ensemble: network %d of %d (optim.seed %d)", k + 1, size, network.optim.seed
                )
                summaries.append(
                    _train_one(
                        network,
                        out / ENSEMBLE_DIR / str(k),
                        resume=resume,
                        overwrite=overwrite,
                        progress=progress,
                        run_id=run_id,
                        on_start=replace_old_run if k == 0 else None,
                    )
                )
            model_path = out / "model.pt"
            if ctx.is_main:
                save_config(cfg, out / "config.yaml")
                export_ensemble([s["model"] for s in summaries], model_path, cfg.to_dict())
            ctx.barrier()
        except BaseException:
            if ctx.is_main:
                _discard_failed_run(out, created, previous)
            raise
        summary = {
            "name": cfg.name,
            "run_id": run_id,
            "hdm_version": __version__,
            "steps": summaries[0]["steps"],
            "final_loss": float(np.mean([s["final_loss"] for s in summaries])),
            "wall_time_s": float(sum(s["wall_time_s"] for s in summaries)),
            "checkpoint": str(out / ENSEMBLE_DIR),
            "model": str(model_path),
            "model_bytes": model_path.stat().st_size,
            "n_parameters": sum(s["n_parameters"] for s in summaries),
            "ensemble": [
                {
                    "seed": cfg.optim.seed + k,
                    "final_loss": s["final_loss"],
                    "wall_time_s": s["wall_time_s"],
                }
                for k, s in enumerate(summaries)
            ],
        }
        if ctx.is_main:
            (out / "train_log.json").write_text(json.dumps(summary, indent=2))
    return summary
