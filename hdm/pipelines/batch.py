"""Batch downscaling over a time range: time chunks as Dask tasks, one zarr region each.

The job (``hdm downscale``, a :class:`~hdm.pipelines.config.DownscaleRunConfig`):

1. The driver resolves the times (``times.start``..``times.end``, every ``times.every``
   hours) from the input file's time axis, the station observations (read, or simulated
   from the truth once, so every chunk sees the same values), and splits the times into
   chunks of ``batch.chunk_size`` consecutive times: chunk q holds times
   ``[q·k, (q+1)·k)``.
2. It creates the output store once (:mod:`hdm.pipelines.batch_store`): every variable's
   metadata and coordinates, the station observations, empty arrays chunked one time
   per zarr chunk, the resolved config and a manifest.
3. Each chunk is a task (:mod:`hdm.pipelines.cluster`: a LocalCluster by default, an
   existing scheduler by address, or a dask-jobqueue SLURM/PBS cluster; or in-process
   with ``synchronous``). A task loads the model (cached per worker), reads and
   coarse-grains its own times from the input file, draws the members
   (:func:`hdm.downscaling.core.downscale`; members of a time are seeded by (seed, time)
   only) and writes its region ``time[q·k:(q+1)·k]`` of the store, then its completion
   marker.
4. A rerun (``--resume``) runs only the chunks without a marker. A run killed at any
   point (SIGKILL included) therefore loses at most the chunks in flight, whose partly
   written regions are rewritten whole by the rerun: the final store equals an
   uninterrupted run's bit for bit, no chunk is written twice.
5. At the end the manifest is marked complete; a netCDF ``--out`` is then written from
   the work store (temporary file + rename) and the work store removed.

Tasks run with ``batch.torch_threads`` torch threads, in every scheduler, so the output
does not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time as _time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from hdm.conditioning.inflation import InflationConfig
from hdm.conditioning.observations import ObservationError
from hdm.conditioning.profiles import Profile
from hdm.data.accessor import grid_of
from hdm.data.coarsen import coarse_grain, coarse_grain_sphere
from hdm.data.open import open_fields
from hdm.data.schema import TIME
from hdm.data.stores import read_manifest, write_manifest
from hdm.domains.stations import read_stations, simulate_observations, stations_by_id
from hdm.downscaling.core import (
    check_solver_statistics,
    downscale,
    inflation_factor,
    noise_settings,
    profile_noise_settings,
    read_run_profiles,
    resolve_teleport_level,
    warn_few_steps_from_t_max,
)
from hdm.downscaling.inputs import (
    check_station_overlap,
    crop_to_domain,
    first_time_far_from_training,
    model_fields,
    observation_setup,
    select_values,
)
from hdm.downscaling.output import attach_inputs
from hdm.downscaling.prior import Prior, load_prior, target_grid
from hdm.hilbert.devices import resolve_device
from hdm.hilbert.grids import GlobalGrid
from hdm.pipelines.batch_store import (
    StoreConflict,
    check_writable,
    create_atomically,
    fingerprint,
    finish_store,
    open_for_run,
    read_markers,
    write_marker,
    write_netcdf_output,
)
from hdm.pipelines.cluster import BatchError, BatchInputError, dask_client, task_device
from hdm.pipelines.config import DownscaleRunConfig, save_config
from hdm.pipelines.runlog import current_run_id

log = logging.getLogger("hdm")

__all__ = ["EXIT_NOTHING_TO_DO", "plan_chunks", "run_batch", "run_chunk"]

EXIT_NOTHING_TO_DO = 3


# ------------------------------------------------------------------------ inputs


def _absolute(path: str | list[str] | None) -> str | list[str] | None:
    """Absolute path(s) (workers may start elsewhere); globs kept as such."""
    if path is None:
        return None
    if isinstance(path, list):
        return [str(Path(p).expanduser().absolute()) for p in path]
    return str(Path(path).expanduser().absolute())


def resolved_config(cfg: DownscaleRunConfig) -> DownscaleRunConfig:
    """Paths made absolute (the config saved next to the store says where things were)."""
    return replace(
        cfg,
        checkpoint=_absolute(cfg.checkpoint),
        inputs=replace(
            cfg.inputs,
            coarse=_absolute(cfg.inputs.coarse),
            truth=_absolute(cfg.inputs.truth),
            profiles=_absolute(cfg.inputs.profiles) or [],
        ),
        stations=replace(cfg.stations, file=_absolute(cfg.stations.file) or []),
        output=replace(cfg.output, out=_absolute(cfg.output.out)),
    )


def check_job(cfg: DownscaleRunConfig) -> None:
    """The job's inputs and options fit together (one clear message otherwise)."""
    inp, st = cfg.inputs, cfg.stations
    if not cfg.checkpoint:
        raise ValueError("give the CHECKPOINT (or checkpoint: in the --config)")
    if not cfg.output.out:
        raise ValueError("no output: give --out OUT.zarr (or output.out in the config)")
    if Path(cfg.output.out).suffix not in (".zarr", ".nc"):
        raise ValueError(f"--out must end in .zarr or .nc, got {Path(cfg.output.out).name}")
    if inp.coarse and inp.truth:
        raise ValueError("give either --coarse or --truth (with --factor), not both")
    if not inp.coarse and not inp.truth:
        raise ValueError("give the input: --coarse FILE, or --truth FILE --factor F")
    if inp.truth and not (inp.factor and inp.factor >= 1):
        raise ValueError("--truth needs --factor (the coarse-graining factor)")
    if inp.coarse_sampling not in (None, "mean", "point"):
        raise ValueError(f"--coarse-sampling must be mean or point, got {inp.coarse_sampling!r}")
    if inp.coarse_sampling and not inp.coarse:
        raise ValueError(
            "--coarse-sampling says what the --coarse values are; with --truth the coarse "
            "field is made of cell means"
        )
    if st.file and st.simulate:
        raise ValueError("give either --stations or --simulate-stations, not both")
    if st.simulate and not inp.truth:
        raise ValueError("--simulate-stations samples the --truth field; give --truth")
    if st.units and not st.file:
        raise ValueError("--station-units gives the units of --stations tables; give --stations")
    start, end = cfg.times.start, cfg.times.end
    if start and end and pd.Timestamp(str(start)) > pd.Timestamp(str(end)):
        raise ValueError(f"--times: the start {start} is after the end {end}")
    if cfg.times.every < 1:
        raise ValueError(f"--every must be at least 1 hour, got {cfg.times.every}")
    if cfg.batch.chunk_size < 1:
        raise ValueError(f"batch.chunk_size must be at least 1, got {cfg.batch.chunk_size}")
    if cfg.batch.workers < 1 or cfg.batch.torch_threads < 1:
        raise ValueError("batch.workers and batch.torch_threads must be at least 1")
    if cfg.batch.scheduler in ("local", "synchronous"):
        resolve_device(cfg.ensemble.device)  # a GPU on this machine (a cluster's: its own)
    if cfg.ensemble.inflation == "auto" and not (st.file or st.simulate):
        raise ValueError(
            "--inflation auto estimates λ from the stations: give station observations"
        )


def _input_path(cfg: DownscaleRunConfig) -> str | list[str]:
    return cfg.inputs.truth or cfg.inputs.coarse


def input_fields(cfg: DownscaleRunConfig, prior: Prior, times=None) -> dict[str, xr.DataArray]:
    """The input's fields of the model's variables, lazily, at ``times`` (None: the
    configured range), by variable (an extra variable in the input is a warning)."""
    source = _input_path(cfg)
    what = f"input {source}"
    if times is not None:
        ds = open_fields(source, None, time=list(pd.to_datetime(list(times))))
        return model_fields(select_values(ds, cfg.inputs.select, what), prior, what)
    ds = select_values(open_fields(source, None), cfg.inputs.select, what)
    t = cfg.times
    if t.start or t.end:
        whole = ds[TIME].values
        ds = ds.sel({TIME: slice(t.start, t.end)})
        if ds.sizes[TIME] == 0:
            raise ValueError(
                f"no input data in the time range {t.start or 'start'}..{t.end or 'end'}: "
                f"{source} holds {str(whole[0])[:19]}..{str(whole[-1])[:19]}"
            )
    return model_fields(ds, prior, what)


def run_times(cfg: DownscaleRunConfig, field: xr.DataArray) -> np.ndarray:
    """The times to downscale: the input's times in the range, every ``every`` hours."""
    every = cfg.times.every
    times = field[TIME].values
    if every > 1:
        times = times[pd.DatetimeIndex(times).hour % every == 0]
    if len(times) == 0:
        raise ValueError(
            f"no input data at a multiple of {every} h in {str(field[TIME].values[0])[:19]}.."
            f"{str(field[TIME].values[-1])[:19]} of {_input_path(cfg)}"
        )
    # a range asked for beyond the input's times runs on the times there are: say so
    for key, asked, held, beyond in (
        ("start", cfg.times.start, times[0], lambda a, h: a < h),
        ("end", cfg.times.end, times[-1], lambda a, h: a > h),
    ):
        if asked is not None and beyond(pd.Timestamp(asked), pd.Timestamp(held)):
            log.warning(
                "times.%s %s lies beyond the input's times (%s of %s): the run %ss at %s",
                key, asked, "first" if key == "start" else "last", _input_path(cfg), key,
                str(held)[:16],
            )  # fmt: skip
    return times


def coarse_input(
    cfg: DownscaleRunConfig, fields: dict[str, xr.DataArray], prior: Prior
) -> dict[str, xr.DataArray]:
    """The coarse fields: the input itself, cut to the cells near a regional model's
    domain (:func:`~hdm.downscaling.inputs.crop_to_domain`), or the truth coarse-grained
    by the factor (block means; on a global grid the sphere's cells of
    :func:`~hdm.data.coarsen.coarse_grain_sphere`)."""
    if not cfg.inputs.truth:
        sampling = cfg.inputs.coarse_sampling
        if sampling:  # CF's words for it (hdm.downscaling.inputs.point_sampled)
            fields = {
                v: f.assign_attrs(cell_methods=f"area: {sampling}") for v, f in fields.items()
            }
        return {v: crop_to_domain(f, prior.grid) for v, f in fields.items()}
    return {
        v: coarse_grain_sphere(f, cfg.inputs.factor)
        if isinstance(grid_of(f), GlobalGrid)
        else coarse_grain(f, cfg.inputs.factor)
        for v, f in fields.items()
    }


def station_input(
    cfg: DownscaleRunConfig, prior: Prior, fields: dict[str, xr.DataArray]
) -> xr.Dataset | None:
    """Observations for the whole run: read from files, or simulated from the truth once,
    for ``stations.variables`` (default: every model variable of the truth); the k-th
    variable's noise is drawn with seed ``ensemble.seed + k``."""
    if cfg.stations.file:
        return read_stations(cfg.stations.file, units=cfg.stations.units)
    if not cfg.stations.simulate:
        return None
    chosen = stations_by_id(cfg.stations.simulate)
    names = cfg.stations.variables or list(fields)
    parts = []
    for k, var in enumerate(names):
        if var not in fields:
            raise ValueError(
                f"stations.variables names {var!r}, which the truth does not hold "
                f"(it holds {list(fields)} of the model's {list(prior.variables)})"
            )
        if prior.levels_of(var):
            raise ValueError(
                f"--simulate-stations: the model's {var} is on pressure levels; surface "
                "stations cannot observe it (give soundings with --profiles, or name "
                "single-level variables with --station-variables)"
            )
        noise = cfg.station_simulation_noise(var, prior.stats(var)[1])
        obs = simulate_observations(fields[var], chosen, noise, cfg.ensemble.seed + k)
        if len(prior.variables) > 1:
            # per-row labels: the rows of several variables share one value column
            n, units = obs.sizes["obs"], str(obs["value"].attrs.get("units", ""))
            obs = obs.assign_coords(
                variable=("obs", np.full(n, var)), units=("obs", np.full(n, units))
            )
        parts.append(obs)
    return parts[0] if len(parts) == 1 else xr.concat(parts, dim="obs")


def resolve_teleport(cfg: DownscaleRunConfig, prior: Prior) -> DownscaleRunConfig:
    """``ensemble.teleport`` checked before the store exists (statistics present, on the
    grid sampled, ς* in range), with "auto" written as the model's measured ς*."""
    ens = cfg.ensemble
    if ens.teleport is not None:
        grid = target_grid(prior, ens.scale if ens.scale != 1 else None)
        ens = ens.replace(teleport=resolve_teleport_level(prior, grid, ens.teleport))
    warn_few_steps_from_t_max(ens)
    return replace(cfg, ensemble=ens)


def resolve_inflation(
    cfg: DownscaleRunConfig,
    prior: Prior,
    coarse: dict[str, xr.DataArray],
    stations: xr.Dataset | None,
    times: np.ndarray,
    manifest: dict | None = None,
) -> tuple[DownscaleRunConfig, dict]:
    """``ensemble.inflation: auto`` → the λ estimated once from all the run's times (so
    it does not depend on the chunks), written into the config as a number, and the
    estimate's attributes for the store; any other value is returned unchanged. With
    the ``manifest`` of an existing store (a resume), its recorded λ is taken as it is:
    an estimate made again on other hardware could differ in the last digits."""
    ens = cfg.ensemble
    if ens.inflation != "auto":
        return cfg, {}
    recorded = ((manifest or {}).get("fingerprint", {}).get("sampling", {}) or {}).get(
        "ensemble", {}
    )
    if isinstance(recorded.get("inflation"), float):
        return replace(cfg, ensemble=ens.replace(inflation=recorded["inflation"])), {}
    grid = target_grid(prior, ens.scale if ens.scale != 1 else None)
    coarse_noise, station_noise = noise_settings(prior, ens)
    setup = observation_setup(
        prior,
        grid,
        {v: f.load() for v, f in coarse.items()},
        stations,
        times,
        coarse_noise=coarse_noise,
        station_noise=station_noise,
        time_tolerance=ens.time_tolerance,
        require_station_overlap=False,
    )
    options = InflationConfig(sampler=ens.sampler, steps=ens.steps, seed=ens.seed)
    factor, attrs = inflation_factor(prior, grid, setup, "auto", options)
    return replace(cfg, ensemble=ens.replace(inflation=float(f"{factor:.6g}"))), attrs


# ------------------------------------------------------------------------ the tasks


def plan_chunks(n_times: int, chunk_size: int) -> list[slice]:
    """Chunk q covers time indices ``[q·k, min((q+1)·k, n))``."""
    return [slice(s, min(s + chunk_size, n_times)) for s in range(0, n_times, chunk_size)]


@dataclass(frozen=True)
class ChunkTask:
    """What a worker needs for one chunk (picklable)."""

    cfg: DownscaleRunConfig
    store: str
    run_id: str
    index: int
    start: int
    times: tuple[str, ...]
    stations: xr.Dataset | None
    profiles: tuple[Profile, ...] = ()


_PRIORS: dict[tuple[str, float], Prior] = {}


def _prior(path: str) -> Prior:
    """The model, loaded once per process (a worker runs many chunks)."""
    key = (path, Path(path).stat().st_mtime)
    if key not in _PRIORS:
        _PRIORS.clear()
        _PRIORS[key] = load_prior(path)
    return _PRIORS[key]


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_chunk(task: ChunkTask) -> dict:
    """Downscale one chunk, write its region of the store, then its completion marker."""
    t0 = _time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    cfg = task.cfg
    # The task's own dask reads run in the task: on a distributed worker the default would
    # be the worker's client, which secedes the task and lets the worker start another one
    # (several tasks at once in one worker, each with torch_threads threads).
    # Warnings are returned, not printed: on a Dask worker they would reach the worker's
    # stderr in Python's two-line format, once per chunk; the driver shows each once.
    with (
        _torch_threads(cfg.batch.torch_threads),
        dask.config.set(scheduler="synchronous"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        prior = _prior(cfg.checkpoint)
        fields = input_fields(cfg, prior, task.times)
        coarse = {v: f.load() for v, f in coarse_input(cfg, fields, prior).items()}
        ds = downscale(
            prior,
            coarse=xr.Dataset(coarse),
            stations=task.stations,
            profiles=list(task.profiles) or None,
            config=cfg.ensemble.replace(device=task_device(cfg.ensemble.device)),
            progress=False,
            require_station_overlap=False,
        )
        ds = attach_inputs(ds, coarse, None)
        timed = [n for n, v in ds.data_vars.items() if TIME in v.dims]
        part = ds[timed]
        part = part.drop_vars(list(part.coords))
        region = slice(task.start, task.start + len(task.times))
        part.to_zarr(task.store, region={TIME: region}, mode="r+", consolidated=False)
    wall = _time.perf_counter() - t0
    write_marker(
        task.store,
        task.index,
        {
            "chunk": task.index,
            "times": list(task.times),
            "run_id": task.run_id,
            "started": started,
            "written": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "pid": os.getpid(),
            "wall_time_s": round(wall, 3),
            "nfe_per_member": int(ds.attrs["nfe_per_member"]),
            "device": str(ds.attrs["device"]),
        },
    )
    said = list(dict.fromkeys(str(w.message) for w in caught))
    return {"chunk": task.index, "times": len(task.times), "wall_time_s": wall, "warnings": said}


#: Errors a chunk raises on bad input (hdm's own input errors are ValueErrors: units,
#: observations, grids, statics; a missing file or variable): the same set the CLI answers
#: with its bad-input exit code when the driver meets them.
INPUT_ERRORS = (ValueError, KeyError, FileNotFoundError, PermissionError)


def _failure(task: ChunkTask, exc: Exception) -> BatchError:
    """The driver's error for a failed chunk: :class:`BatchInputError` for bad input (the
    input's own message, which names it), :class:`BatchError` otherwise."""
    where = f"chunk {task.index} ({task.times[0]}..{task.times[-1]})"
    kept = "the chunks done so far are kept; rerun with --resume"
    if isinstance(exc, INPUT_ERRORS):
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return BatchInputError(f"{where}: {message} ({kept} once the input is fixed)")
    return BatchError(f"{where} failed: {type(exc).__name__}: {exc}. {kept[0].upper()}{kept[1:]}")


@contextlib.contextmanager
def _noting_warnings(shown: set[str]) -> Iterator[None]:
    """Warnings shown meanwhile are shown as before and their texts added to ``shown``."""
    show = warnings.showwarning

    def note(message, *args, **kwargs):
        shown.add(str(message))
        show(message, *args, **kwargs)

    warnings.showwarning = note
    try:
        yield
    finally:
        warnings.showwarning = show


def _run_tasks(
    client,
    tasks: list[ChunkTask],
    store: Path,
    manifest: dict,
    progress: bool,
    shown: set[str],
) -> None:
    """Run the tasks; record each completion in the manifest (the driver is its only
    writer); show each warning the chunks return once, unless ``shown`` (the texts the
    driver has shown already) holds it."""
    bar = tqdm(total=len(tasks), desc="downscale chunks", unit="chunk", disable=not progress)

    def done(result: dict) -> None:
        for message in result.get("warnings", ()):
            if message not in shown:  # each chunk meets the same input: say it once
                shown.add(message)
                warnings.warn(message, UserWarning, stacklevel=2)
        manifest["complete"] = sorted({*manifest["complete"], result["chunk"]})
        write_manifest(store, manifest)
        bar.update(1)

    try:
        if client is None:
            for task in tasks:
                try:
                    done(run_chunk(task))
                except Exception as exc:
                    raise _failure(task, exc) from exc
            return
        from distributed import as_completed

        futures = {client.submit(run_chunk, t, pure=False): t for t in tasks}
        for future in as_completed(futures):
            try:
                done(future.result())
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise _failure(futures[future], exc) from exc
    finally:
        bar.close()


# ------------------------------------------------------------------------ the job


@dataclass
class _Plan:
    """The driver's view of a run: its config (λ resolved), inputs and chunks."""

    cfg: DownscaleRunConfig
    prior: Prior
    times: np.ndarray
    coarse: dict[str, xr.DataArray]
    stations: xr.Dataset | None
    chunks: list[slice]
    inflation_attrs: dict
    profiles: tuple[Profile, ...] = ()


@contextlib.contextmanager
def _naming_inputs(cfg: DownscaleRunConfig) -> Iterator[None]:
    """An observation error gains the files it came from (the operators know only their
    own names: "coarse", "stations")."""
    try:
        yield
    except ObservationError as exc:
        files = f"input {_input_path(cfg)}"
        if cfg.stations.file:
            named = cfg.stations.file
            files += f", stations {named if isinstance(named, str) else ', '.join(named)}"
        raise ObservationError(f"{exc} ({files})") from None


def _plan(cfg: DownscaleRunConfig, store: Path, overwrite: bool) -> _Plan:
    """Read the inputs once on the driver and resolve what depends on all of them."""
    prior = load_prior(cfg.checkpoint)
    fields = input_fields(cfg, prior)
    times = run_times(cfg, next(iter(fields.values())))
    fields = {v: f.sel({TIME: times}) for v, f in fields.items()}
    stations = station_input(cfg, prior, fields)
    if stations is not None:
        check_station_overlap(stations, times, cfg.ensemble.time_tolerance)
    coarse = coarse_input(cfg, fields, prior)
    # inputs that cannot be used (other units, coarse cells that leave part of the domain
    # open, a station outside it) fail here, before the store exists, not in every chunk:
    # the first time's operator stands for the rest, unless a later time holds a coarse
    # value far from anything the model saw (a fill value), which is then named here
    ens = cfg.ensemble
    target = target_grid(prior, ens.scale if ens.scale != 1 else None)
    coarse_noise, station_noise = noise_settings(prior, ens)
    with warnings.catch_warnings(), _naming_inputs(cfg):
        warnings.simplefilter("ignore")  # NaN cells: each chunk warns of its own
        far = first_time_far_from_training(prior, coarse)
        checked = times[:1] if far is None else np.array([far])
        observation_setup(
            prior,
            target,
            {v: f.sel({TIME: checked}).load() for v, f in coarse.items()},
            stations,
            checked,
            coarse_noise=coarse_noise,
            station_noise=station_noise,
            time_tolerance=ens.time_tolerance,
            require_station_overlap=False,
        )
    profiles, profile_attrs = run_profiles(cfg, prior, times)
    # what the sampler needs (v3's statistics), before a store exists, not in a chunk
    check_solver_statistics(prior, target, ens.sampler)
    cfg = resolve_teleport(cfg, prior)
    earlier = None if overwrite or not store.exists() else read_manifest(store)
    cfg, inflation_attrs = resolve_inflation(cfg, prior, coarse, stations, times, earlier)
    chunks = plan_chunks(len(times), cfg.batch.chunk_size)
    attrs = {**inflation_attrs, **profile_attrs}
    return _Plan(cfg, prior, times, coarse, stations, chunks, attrs, profiles)


def run_profiles(
    cfg: DownscaleRunConfig, prior: Prior, times: np.ndarray
) -> tuple[tuple[Profile, ...], dict]:
    """The soundings of ``inputs.profiles``, read and checked once on the driver against
    the whole run (units, levels, positions in the grid, some sounding within the run's
    times), and the store attributes that record them."""
    if not cfg.inputs.profiles:
        return (), {}
    ens = cfg.ensemble
    profiles = read_run_profiles(cfg.inputs.profiles, prior)
    noise = profile_noise_settings(prior, ens)
    setup = observation_setup(
        prior,
        target_grid(prior, ens.scale if ens.scale != 1 else None),
        None,
        None,
        times,
        coarse_noise={},
        station_noise={},
        time_tolerance=ens.time_tolerance,
        profiles=profiles,
        profile_noise=noise,
    )
    attrs = {"soundings": ",".join(setup.soundings), "profile_noise_std": json.dumps(noise)}
    return tuple(profiles), attrs


def _iso(times: np.ndarray) -> tuple[str, ...]:
    return tuple(str(t)[:19] for t in times)


def run_batch(
    cfg: DownscaleRunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    run_id: str | None = None,
) -> dict:
    """Run the batch job; returns a summary (``status``: "done" or "nothing to do")."""
    cfg = resolved_config(cfg)
    check_job(cfg)
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    run_id = run_id or current_run_id()
    out = Path(cfg.output.out)
    store = out if out.suffix == ".zarr" else out.with_name(f".{out.name}.work.zarr")
    t0 = _time.perf_counter()
    shown: set[str] = set()  # the warnings' texts; a chunk's own are then not repeated
    with _noting_warnings(shown):
        plan = _plan(cfg, store, overwrite)
    cfg, times, chunks = plan.cfg, plan.times, plan.chunks
    fp = fingerprint(cfg, plan.prior, times)
    log.info("run %s: %d times in %d chunks -> %s", run_id, len(times), len(chunks), out)

    def summary(status: str, written: list[int]) -> dict:
        return {
            "status": status,
            "out": str(out),
            "run_id": run_id,
            "times": len(times),
            "chunks": len(chunks),
            "chunks_written": written,
            "members": cfg.ensemble.members,
            "wall_time_s": round(_time.perf_counter() - t0, 3),
        }

    if out.suffix == ".nc" and out.exists() and not overwrite:
        if resume:
            return summary("nothing to do", [])
        raise StoreConflict(f"{out} exists; pass --overwrite to replace it")
    check_writable(out)
    if open_for_run(store, fp, len(chunks), resume=resume, overwrite=overwrite) is None:
        manifest = {"fingerprint": fp, "n_chunks": len(chunks), "complete": [], "runs": []}
        manifest["status"] = "running"
        args = (cfg, plan.prior, times, plan.coarse, plan.stations, manifest)
        create_atomically(store, *args, plan.inflation_attrs)
    save_config(cfg, out.with_name(f"{out.name}.config.yaml"))
    manifest = read_manifest(store)
    done = read_markers(store)
    pending = [q for q in range(len(chunks)) if q not in done]
    if not pending and manifest.get("status") == "complete":
        log.info("%s is complete (%d chunks): nothing to do", store, len(chunks))
        return summary("nothing to do", [])
    manifest.update(complete=sorted(done), status="running")
    manifest["runs"].append(run_id)
    write_manifest(store, manifest)
    tasks = [
        ChunkTask(
            cfg,
            str(store),
            run_id,
            q,
            chunks[q].start,
            _iso(times[chunks[q]]),
            plan.stations,
            plan.profiles,
        )
        for q in pending
    ]
    if done:
        log.info(
            "resuming %s: %d of %d chunks done, %d to run",
            store,
            len(done),
            len(chunks),
            len(tasks),
        )
    with dask_client(cfg) as client:
        _run_tasks(client, tasks, store, manifest, progress, shown)
    markers = read_markers(store)
    missing = sorted(set(range(len(chunks))) - set(markers))
    if missing:
        raise BatchError(
            f"chunks {missing} have no completion marker after the run; rerun with --resume"
        )
    finish_store(store, markers, manifest)
    if out.suffix == ".nc":
        write_netcdf_output(store, out, plan.prior, cfg)
    return summary("done" if tasks else "nothing to do", [t.index for t in tasks])
