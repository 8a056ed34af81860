"""``hdm train CONFIG``: data → normalised tensors → denoiser → checkpoints.

Writes into the output folder: ``checkpoint.pt`` (full training state, resumable),
``model.pt`` (EMA weights + descriptions: what ``hdm sample`` reads and what is
shipped), ``config.yaml`` (the resolved config) and ``train_log.json`` (losses, wall time).
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
import platform
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from hdm._version import __version__
from hdm.data.accessor import grid_of, to_tensor
from hdm.data.normalization import FieldNormaliser, ScalarNormaliser
from hdm.domains.atmosphere import GRIDDED_DATASETS, gridded_spec, open_split
from hdm.domains.functional import DATASETS as FUNCTIONAL_DATASETS
from hdm.domains.functional import curves, load_functional, validate_curves
from hdm.domains.statics import static_inputs, static_sources, statics_record
from hdm.downscaling.prior import channel_name
from hdm.hilbert import training
from hdm.hilbert.checkpoints import export_ensemble, export_model
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


def gridded_training_data(cfg: TrainRunConfig) -> TrainingData:
    """The training period of a gridded dataset, normalised with statistics fitted on it."""
    d = cfg.data
    train = (d.train_start, d.train_end) if d.train_start and d.train_end else None
    spec = gridded_spec(d.dataset, d.path or "", d.variables, train, levels=d.levels)
    ds = open_split(spec, "train")
    if d.train_days:
        ds = select_days(ds, d.train_days, spec.name)
    names = list(spec.variables) or [str(v) for v in ds.data_vars]
    normaliser = vector_normaliser(cfg, FieldNormaliser.fit(ds, names))
    normalised = normaliser.normalise(ds[names])
    tensor = to_tensor(normalised, names, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).flatten(1).any(1).nonzero()[0, 0])
        raise ValueError(
            f"training data of {spec.name!r} contain NaN/inf at time "
            f"{str(ds.time.values[bad])[:16]}; drop or fill those steps first"
        )
    times = ds.time.values
    metadata = {
        "kind": "gridded",
        "dataset": spec.name,
        "path": str(spec.path),
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
        "path": str(cfg.data.path),
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
    progress: bool = True,
) -> dict:
    """Train a model (``hdm.train``): ``config`` is a YAML file, a mapping of its sections or
    a :class:`TrainRunConfig`; ``overrides`` are ``section.key=value`` strings (a file
    only). Writes ``model.pt``, ``checkpoint.pt``, ``config.yaml`` and ``train_log.json``
    into ``out`` and returns the summary of ``train_log.json``."""
    if isinstance(config, str | Path):
        cfg = load_train_config(config, overrides)
    elif isinstance(config, dict):
        cfg = train_config_from_dict(config)
    else:
        cfg = config
    return run_training(cfg, out, resume=resume, progress=progress)


def run_training(
    cfg: TrainRunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    run_id: str | None = None,
) -> dict:
    """Train the model described by ``cfg`` (functional or gridded) into folder ``out``;
    ``run_id`` (default: ``HDM_RUN_ID`` or a new one) goes into the outputs.

    Under torchrun every process runs this; each gets the same summary back, process 0
    alone writes the files (module docstring).
    """
    out = Path(out)
    run_id = run_id or current_run_id()
    if cfg.model.ensemble > 1:
        return run_ensemble_training(cfg, out, resume=resume, progress=progress, run_id=run_id)
    with distributed_session() as ctx:
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.optim.seed)  # network initialisation, the same on every process
        data = training_data(cfg)
        statics, statics_entry = training_statics(cfg, data)
        channels = int(data.tensor.shape[1])
        names = channel_names(data)
        regime = training_regime(cfg, data)
        denoiser = build_model(cfg, data.grid, channels, statics, names, regime).to(ctx.device)
        extra = {
            **statics_entry,
            "config": cfg.to_dict(),
            "normaliser": data.normaliser.to_dict(),
            "metadata": {
                **data.metadata,
                "torch": str(torch.__version__),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                "processes": ctx.world_size,
                "device": str(ctx.device),
                "run_id": run_id,
            },
        }
        if ctx.is_main:
            save_config(cfg, out / "config.yaml")
            _log_start(cfg, data, denoiser, ctx)
        result = training.train(
            denoiser,
            data.tensor,
            data.grid,
            cfg.optim,
            out / "checkpoint.pt",
            resume=resume,
            extra=extra,
            progress=progress,
        )
        model_path = out / "model.pt"
        if ctx.is_main:
            export_model(result.checkpoint, model_path)
        ctx.barrier()  # model.pt is complete before any process reads its size
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
    cfg: TrainRunConfig, out: Path, *, resume: bool, progress: bool, run_id: str
) -> dict:
    """Train the K = ``model.ensemble`` networks of ``cfg`` one after another, network k a
    run of its own into ``OUT/networks/k`` with ``optim.seed`` + k (its checkpoint, model,
    config and log: ``--resume`` continues each, and one that has reached ``optim.steps``
    takes no step), then write ``OUT/model.pt``, one file of all K
    (:func:`~hdm.hilbert.checkpoints.export_ensemble`), ``config.yaml`` and
    ``train_log.json`` (the networks' wall times summed, their final losses averaged)."""
    size = cfg.model.ensemble
    with distributed_session() as ctx:  # the networks' runs join this one group
        summaries = []
        for k in range(size):
            network = replace(
                cfg,
                model=replace(cfg.model, ensemble=1),
                optim=replace(cfg.optim, seed=cfg.optim.seed + k),
            )
            log.info("ensemble: network %d of %d (optim.seed %d)", k + 1, size, network.optim.seed)
            summaries.append(
                run_training(
                    network,
                    out / ENSEMBLE_DIR / str(k),
                    resume=resume,
                    progress=progress,
                    run_id=run_id,
                )
            )
        model_path = out / "model.pt"
        if ctx.is_main:
            save_config(cfg, out / "config.yaml")
            export_ensemble([s["model"] for s in summaries], model_path, cfg.to_dict())
        ctx.barrier()
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
