"""Batch downscaling over a time range: time chunks as Dask tasks, one zarr region each.

The job (``hdm downscale``, a :class:`~hdm.pipelines.config.DownscaleRunConfig`):

1. The driver resolves the times (``times.start``..``times.end``, every ``times.every``
   hours) from the input file's time axis, the station observations (read, or simulated
   from the truth once, so every chunk sees the same values), and splits the times into
   chunks of ``batch.chunk_size`` consecutive times: chunk q holds times
   ``[q·k, (q+1)·k)``.
2. It creates the output store once: every variable's metadata and coordinates, the
   station observations, empty arrays chunked one time per zarr chunk, the resolved
   config and a manifest (``hdm_manifest`` root attribute: the fingerprint of the
   sampling config, the chunk layout, the run ids and the chunks completed).
3. Each chunk is a task (a Dask ``distributed`` cluster: a LocalCluster by default, an
   existing scheduler by address, or a dask-jobqueue SLURM/PBS cluster; or in-process
   with ``synchronous``). A task loads the model (cached per worker), reads and
   coarse-grains its own times from the input file, draws the members
   (:func:`hdm.pipelines.downscale.downscale`; members of a time are seeded by
   (seed, time) only) and writes its region ``time[q·k:(q+1)·k]`` of the store. Only then
   does it write its completion marker, a small group ``hdm_chunks/cNNNNNN`` whose
   attributes name the chunk, its times and the run id. No two tasks write the same
   file: the zarr chunks are one time each and each marker is its own group.
4. A rerun (``--resume``) reads the markers and runs only the chunks without one. A run
   killed at any point (SIGKILL included) therefore loses at most the chunks in flight,
   whose partly written regions are rewritten whole by the rerun: the final store
   equals an uninterrupted run's bit for bit, no chunk is written twice.
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
import shutil
import time as _time
import uuid
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
import yaml
from tqdm.auto import tqdm

import hdm
from hdm.conditioning.inflation import InflationConfig, parse_inflation
from hdm.data.schema import TIME
from hdm.data.stores import read_manifest, write_manifest
from hdm.pipelines.config import DownscaleRunConfig, save_config
from hdm.pipelines.downscale import (
    Prior,
    attach_inputs,
    ensemble_dataset,
    inflation_factor,
    load_prior,
    observation_setup,
    target_grid,
)
from hdm.pipelines.runlog import current_run_id

log = logging.getLogger("hdm")

__all__ = [
    "EXIT_NOTHING_TO_DO",
    "BatchError",
    "SchedulerUnreachable",
    "StoreConflict",
    "plan_chunks",
    "read_markers",
    "run_batch",
]

CONFIG_KEY = "hdm_config"
MARKERS = "hdm_chunks"
EXIT_NOTHING_TO_DO = 3


class BatchError(RuntimeError):
    """A batch run that could not start or finish (the message says which chunk)."""


class SchedulerUnreachable(BatchError):
    """No Dask scheduler answered at the configured address."""


class StoreConflict(FileExistsError):
    """The output store exists and may not be touched without ``--resume``/``--overwrite``."""


# ------------------------------------------------------------------------ inputs


def _resolve(path: str) -> str:
    """An absolute path (workers may start elsewhere); globs and ',' lists kept as such."""
    if not path:
        return ""
    return ",".join(str(Path(p.strip()).expanduser().absolute()) for p in path.split(","))


def resolved_config(cfg: DownscaleRunConfig) -> DownscaleRunConfig:
    """Paths made absolute; the output config saved next to the store."""
    return replace(
        cfg,
        checkpoint=_resolve(cfg.checkpoint),
        inputs=replace(
            cfg.inputs, coarse=_resolve(cfg.inputs.coarse), truth=_resolve(cfg.inputs.truth)
        ),
        stations=replace(cfg.stations, file=_resolve(cfg.stations.file)),
        output=replace(cfg.output, out=_resolve(cfg.output.out)),
    )


def _check_inputs(cfg: DownscaleRunConfig) -> None:
    inp, st = cfg.inputs, cfg.stations
    if not cfg.output.out:
        raise ValueError("no output: give --out OUT.zarr (or output.out in the config)")
    if Path(cfg.output.out).suffix not in (".zarr", ".nc"):
        raise ValueError(f"--out must end in .zarr or .nc, got {Path(cfg.output.out).name}")
    if inp.coarse and inp.truth:
        raise ValueError("give either --coarse or --truth (with --factor), not both")
    if not inp.coarse and not inp.truth:
        raise ValueError("give the input: --coarse FILE, or --truth FILE --factor F")
    if inp.truth and inp.factor < 1:
        raise ValueError("--truth needs --factor (the coarse-graining factor)")
    if st.file and st.simulate:
        raise ValueError("give either --stations or --simulate-stations, not both")
    if st.simulate and not inp.truth:
        raise ValueError("--simulate-stations samples the --truth field; give --truth")
    if cfg.ensemble.members < 1:
        raise ValueError(f"--members must be at least 1, got {cfg.ensemble.members}")
    if cfg.batch.chunk_size < 1:
        raise ValueError(f"batch.chunk_size must be at least 1, got {cfg.batch.chunk_size}")
    if cfg.batch.workers < 1 or cfg.batch.torch_threads < 1:
        raise ValueError("batch.workers and batch.torch_threads must be at least 1")
    if parse_inflation(cfg.ensemble.inflation) == "auto" and not (st.file or st.simulate):
        raise ValueError(
            "--inflation auto estimates λ from the stations: give station observations"
        )


def _input_path(cfg: DownscaleRunConfig) -> str:
    return cfg.inputs.truth or cfg.inputs.coarse


def _input_field(cfg: DownscaleRunConfig, variable: str, times=None) -> xr.DataArray:
    """The input file's variable, lazily, at ``times`` (None: the configured range)."""
    from hdm.data.open import open_fields

    path = _input_path(cfg)
    source = path.split(",") if "," in path else path
    if times is not None:
        return open_fields(source, variable, time=list(pd.to_datetime(list(times))))[variable]
    field = open_fields(source, variable)[variable]
    t = cfg.times
    if t.start or t.end:
        field = field.sel({TIME: slice(t.start or None, t.end or None)})
        if field.sizes[TIME] == 0:
            whole = open_fields(source, variable)[TIME].values
            raise ValueError(
                f"no input data in the time range {t.start or 'start'}..{t.end or 'end'}: "
                f"{path} holds {str(whole[0])[:19]}..{str(whole[-1])[:19]}"
            )
    return field


def select_times(cfg: DownscaleRunConfig, field: xr.DataArray) -> np.ndarray:
    """The times to downscale: the input's times in the range, every ``every`` hours."""
    every = cfg.times.every
    if every < 1:
        raise ValueError(f"--every must be at least 1 hour, got {every}")
    times = field[TIME].values
    if every > 1:
        times = times[pd.DatetimeIndex(times).hour % every == 0]
    if len(times) == 0:
        raise ValueError(
            f"no input data at a multiple of {every} h in {str(field[TIME].values[0])[:19]}.."
            f"{str(field[TIME].values[-1])[:19]} of {_input_path(cfg)}"
        )
    return times


def _coarse(cfg: DownscaleRunConfig, field: xr.DataArray) -> xr.DataArray:
    from hdm.data.coarsen import coarse_grain

    return coarse_grain(field, cfg.inputs.factor) if cfg.inputs.truth else field


def _stations(cfg: DownscaleRunConfig, field: xr.DataArray) -> xr.Dataset | None:
    """Observations for the whole run: read from files, or simulated from the truth once."""
    from hdm.domains.radiosondes import simulate_observations
    from hdm.pipelines.downscale import parse_ids, read_stations, stations_by_id

    if cfg.stations.file:
        return read_stations(cfg.stations.file)
    if cfg.stations.simulate:
        chosen = stations_by_id(parse_ids(cfg.stations.simulate))
        return simulate_observations(field, chosen, cfg.stations.noise, cfg.ensemble.seed)
    return None


def resolve_inflation(
    cfg: DownscaleRunConfig,
    prior: Prior,
    coarse: xr.DataArray,
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
    if parse_inflation(ens.inflation) != "auto":
        return cfg, {}
    recorded = ((manifest or {}).get("fingerprint", {}).get("sampling", {}) or {}).get(
        "ensemble", {}
    )
    if parse_inflation(recorded.get("inflation")) not in (None, "auto"):
        return replace(cfg, ensemble=replace(ens, inflation=str(recorded["inflation"]))), {}
    grid = target_grid(prior, ens.scale if ens.scale != 1 else None)
    std = prior.mean_std[1]
    setup = observation_setup(
        prior,
        grid,
        coarse.load(),
        stations,
        times,
        coarse_noise=ens.coarse_noise or 0.02 * std,
        station_noise=cfg.stations.noise,
        require_station_overlap=False,
    )
    options = InflationConfig(sampler=ens.sampler, steps=ens.steps, seed=ens.seed)
    factor, attrs = inflation_factor(prior, grid, setup, "auto", options)
    return replace(cfg, ensemble=replace(ens, inflation=f"{factor:.6g}")), attrs


# ------------------------------------------------------------------------ the plan


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
    import zarr

    from hdm.pipelines.downscale import downscale

    t0 = _time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    cfg, ens = task.cfg, task.cfg.ensemble
    # The task's own dask reads run in the task: on a distributed worker the default would
    # be the worker's client, which secedes the task and lets the worker start another one
    # (several tasks at once in one worker, each with torch_threads threads).
    with _torch_threads(cfg.batch.torch_threads), dask.config.set(scheduler="synchronous"):
        prior = _prior(cfg.checkpoint)
        field = _input_field(cfg, prior.variable, task.times).load()
        coarse = _coarse(cfg, field)
        ds = downscale(
            prior,
            coarse=coarse,
            stations=task.stations,
            members=ens.members,
            grid=ens.scale if ens.scale != 1 else None,
            guidance=ens.guidance,
            sampler=ens.sampler,
            steps=ens.steps,
            seed=ens.seed,
            coarse_noise=ens.coarse_noise or None,
            station_noise=cfg.stations.noise,
            batch_size=ens.batch_size,
            progress=False,
            require_station_overlap=False,
            inflation=parse_inflation(ens.inflation),
        )
        ds = attach_inputs(ds, prior.variable, coarse, None)
        timed = [n for n, v in ds.data_vars.items() if TIME in v.dims]
        part = ds[timed].drop_vars(list(ds.coords))
        region = slice(task.start, task.start + len(task.times))
        part.to_zarr(task.store, region={TIME: region}, mode="r+", consolidated=False)
    wall = _time.perf_counter() - t0
    zarr.open_group(
        f"{task.store}/{MARKERS}/c{task.index:06d}",
        mode="w",
        attributes={
            "chunk": task.index,
            "times": list(task.times),
            "run_id": task.run_id,
            "started": started,
            "written": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "pid": os.getpid(),
            "wall_time_s": round(wall, 3),
            "nfe_per_member": int(ds.attrs["nfe_per_member"]),
        },
    )
    return {"chunk": task.index, "times": len(task.times), "wall_time_s": wall}


def read_markers(store: str | Path) -> dict[int, dict]:
    """Completion markers of a batch store: chunk index → its attributes. An unreadable
    marker (a task killed while writing it) counts as not done."""
    root = Path(store) / MARKERS
    done = {}
    if not root.is_dir():
        return done
    for child in sorted(root.iterdir()):
        meta = child / "zarr.json"
        if not (child.name.startswith("c") and meta.is_file()):
            continue
        try:
            attrs = json.loads(meta.read_text())["attributes"]
            done[int(attrs["chunk"])] = attrs
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring the unreadable chunk marker %s", child)
    return done


# ------------------------------------------------------------------------ the store


def fingerprint(cfg: DownscaleRunConfig, prior: Prior, times: np.ndarray) -> dict:
    """What decides the store's values and layout: compared before a store is resumed."""
    sampling = cfg.sampling_dict()
    sampling["checkpoint"] = prior.sha256
    return {
        "sampling": sampling,
        "chunk_size": cfg.batch.chunk_size,
        "times": [str(t)[:19] for t in np.asarray(times, dtype="datetime64[s]")],
    }


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, where + ".")
        elif a != b:
            if key == "times":
                a, b = f"{len(a or [])} times", f"{len(b or [])} times"
            out.append(f"{where}: {a!r} -> {b!r}")
    return out


def _check_writable(out: Path) -> None:
    """Fail before any work when the output's directory cannot be written."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".hdm-write-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"cannot write the output {out}: its directory {parent} is not writable "
            f"({exc.strerror or exc})"
        ) from None


def create_store(
    store: Path,
    cfg: DownscaleRunConfig,
    prior: Prior,
    times: np.ndarray,
    coarse: xr.DataArray,
    stations: xr.Dataset | None,
    manifest: dict,
    extra_attrs: dict | None = None,
) -> None:
    """Metadata, coordinates, static variables and the manifest; no time is computed."""
    import dask.array as da
    import zarr

    grid = target_grid(prior, cfg.ensemble.scale if cfg.ensemble.scale != 1 else None)
    shape = (cfg.ensemble.members, len(times), *grid.shape)
    empty = da.zeros(shape, dtype=np.float32, chunks=(shape[0], 1, *grid.shape))
    template = ensemble_dataset(empty, prior, grid, times)
    template = attach_inputs(template, prior.variable, coarse.chunk({TIME: 1}), stations)
    template.attrs.update(
        {
            "title": f"hdm downscaled {prior.variable} ensemble",
            "hdm_version": hdm.__version__,
            "checkpoint": prior.path,
            "checkpoint_hash": prior.sha256,
            "guidance": cfg.ensemble.guidance,
            "guidance_options": "{}",
            "sampler": cfg.ensemble.sampler,
            "steps": cfg.ensemble.steps,
            "members": cfg.ensemble.members,
            "seed": cfg.ensemble.seed,
            "grid": grid.describe(),
            "training_grid": prior.grid.describe(),
            "coarse_noise_std": cfg.ensemble.coarse_noise or 0.02 * prior.mean_std[1],
            "station_noise_std": cfg.stations.noise if stations is not None else "none",
            "stations": ",".join(sorted(set(stations["id"].values.astype(str))))
            if stations is not None
            else "",
            "history": f"hdm downscale ({cfg.name})",
            "inflation": float(parse_inflation(cfg.ensemble.inflation) or 1.0),
            **(extra_attrs or {}),
            CONFIG_KEY: yaml.safe_dump(cfg.to_dict(), sort_keys=False),
        }
    )
    with warnings.catch_warnings():  # the station ids: fixed-length strings, fine in zarr-python
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
        template.to_zarr(store, mode="w", compute=False, consolidated=False)
    zarr.open_group(str(store), mode="r+").create_group(MARKERS)
    write_manifest(store, manifest)


# ------------------------------------------------------------------------ schedulers


@contextlib.contextmanager
def dask_client(cfg: DownscaleRunConfig) -> Iterator[object]:
    """A ``distributed.Client`` for ``batch.scheduler`` (None for ``synchronous``)."""
    b = cfg.batch
    if b.scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # distributed's connection chatter: --verbose only
        for name in (
            "distributed",
            "distributed.scheduler",
            "distributed.nanny",
            "distributed.core",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)
    if b.scheduler == "local":
        # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_ set, which fixes glibc's
        # mmap threshold at 128 KiB: every torch tensor above it is a fresh mmap, and the
        # sampler runs 2-3x slower (measured: 30 s vs 13 s). Threads as the tasks use them.
        threads = str(b.torch_threads)
        environ = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(
                n_workers=b.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        with cluster, Client(cluster) as client:
            yield client
        return
    if b.scheduler in ("slurm", "pbs"):
        cluster = jobqueue_cluster(cfg)
        cluster.scale(jobs=cfg.jobqueue.jobs)
        with cluster, Client(cluster) as client:
            yield client
        return
    address = b.scheduler if "://" in b.scheduler else f"tcp://{b.scheduler}"
    try:
        client = Client(address, timeout=f"{b.connect_timeout}s")
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"no Dask scheduler answered at {address} within {b.connect_timeout:g} s ({exc}); "
            "start one (dask scheduler) or use --scheduler local"
        ) from None
    with client:
        yield client


def jobqueue_cluster(cfg: DownscaleRunConfig):
    """A dask-jobqueue SLURMCluster/PBSCluster from the ``jobqueue`` section (one worker
    process per job by default, ``batch.torch_threads`` threads for torch)."""
    import dask_jobqueue

    q = cfg.jobqueue
    kind = (
        dask_jobqueue.SLURMCluster if cfg.batch.scheduler == "slurm" else dask_jobqueue.PBSCluster
    )
    kwargs = {
        "cores": q.cores,
        "processes": q.processes,
        "memory": q.memory,
        "walltime": q.walltime,
        "job_extra_directives": [d.strip() for d in q.directives.split(";") if d.strip()],
        # the nanny's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold (see dask_client);
        # a large explicit one keeps torch's tensors off fresh mmaps
        "job_script_prologue": [
            *(p.strip() for p in q.prologue.split(";") if p.strip()),
            "export MALLOC_MMAP_THRESHOLD_=268435456",
        ],
        "worker_extra_args": ["--nthreads", "1"],
    }
    if q.queue:
        kwargs["queue"] = q.queue
    if q.account:
        kwargs["account"] = q.account
    if q.local_directory:
        kwargs["local_directory"] = q.local_directory
    return kind(**kwargs)


def _run_tasks(client, tasks: list[ChunkTask], store: Path, manifest: dict, progress: bool):
    """Run the tasks; record each completion in the manifest (the driver is its only writer)."""
    bar = tqdm(total=len(tasks), desc="downscale chunks", unit="chunk", disable=not progress)

    def done(result: dict) -> None:
        manifest["complete"] = sorted({*manifest["complete"], result["chunk"]})
        write_manifest(store, manifest)
        bar.update(1)

    try:
        if client is None:
            for task in tasks:
                try:
                    done(run_chunk(task))
                except Exception as exc:
                    raise BatchError(_failure(task, exc)) from exc
            return
        from distributed import as_completed

        futures = {client.submit(run_chunk, t, pure=False): t for t in tasks}
        for future in as_completed(futures):
            try:
                done(future.result())
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise BatchError(_failure(futures[future], exc)) from exc
    finally:
        bar.close()


def _failure(task: ChunkTask, exc: Exception) -> str:
    return (
        f"chunk {task.index} ({task.times[0]}..{task.times[-1]}) failed: "
        f"{type(exc).__name__}: {exc}. The chunks done so far are kept; rerun with --resume"
    )


# ------------------------------------------------------------------------ the job


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
    _check_inputs(cfg)
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    run_id = run_id or current_run_id()
    out = Path(cfg.output.out)
    store = out if out.suffix == ".zarr" else out.with_name(f".{out.name}.work.zarr")
    t0 = _time.perf_counter()
    prior = load_prior(cfg.checkpoint)
    field = _input_field(cfg, prior.variable)
    times = select_times(cfg, field)
    field = field.sel({TIME: times})
    stations = _stations(cfg, field)
    if stations is not None:
        _check_station_overlap(stations, times)
    coarse = _coarse(cfg, field)
    earlier = None if overwrite or not store.exists() else read_manifest(store)
    cfg, inflation_attrs = resolve_inflation(cfg, prior, coarse, stations, times, earlier)
    chunks = plan_chunks(len(times), cfg.batch.chunk_size)
    fp = fingerprint(cfg, prior, times)
    log.info("run %s: %d times in %d chunks -> %s", run_id, len(times), len(chunks), out)

    if out.suffix == ".nc" and out.exists() and not overwrite:
        if resume:
            return _summary("nothing to do", cfg, out, times, chunks, run_id, t0, [])
        raise StoreConflict(f"{out} exists; pass --overwrite to replace it")
    _check_writable(out)
    if store.exists():
        manifest = read_manifest(store)
        if overwrite:
            shutil.rmtree(store)
        elif manifest is None:
            raise StoreConflict(
                f"{store} exists but is not an hdm batch store (no manifest); pass --overwrite "
                "to replace it"
            )
        elif manifest["fingerprint"] != fp:
            diff = "; ".join(_differences(manifest["fingerprint"], fp)[:6])
            raise StoreConflict(
                f"{store} was written with a different config ({diff}); pass --overwrite to "
                "replace it, or write to another --out"
            )
        elif not resume:
            n_done = len(read_markers(store))
            raise StoreConflict(
                f"{store} exists ({n_done} of {len(chunks)} chunks done, same config); pass "
                "--resume to complete it or --overwrite to replace it"
            )
    if not store.exists():
        manifest = {
            "fingerprint": fp,
            "n_chunks": len(chunks),
            "complete": [],
            "runs": [],
            "status": "running",
        }
        tmp = store.with_name(f".{store.name}.creating-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        create_store(tmp, cfg, prior, times, coarse, stations, manifest, inflation_attrs)
        os.replace(tmp, store)  # a store with a manifest is whole, or absent
    save_config(cfg, out.with_name(f"{out.name}.config.yaml"))
    manifest = read_manifest(store)
    done = read_markers(store)
    pending = [q for q in range(len(chunks)) if q not in done]
    if not pending and manifest.get("status") == "complete":
        log.info("%s is complete (%d chunks): nothing to do", store, len(chunks))
        return _summary("nothing to do", cfg, out, times, chunks, run_id, t0, [])
    manifest["complete"] = sorted(done)
    manifest["runs"].append(run_id)
    manifest["status"] = "running"
    write_manifest(store, manifest)
    tasks = [
        ChunkTask(
            cfg=cfg,
            store=str(store),
            run_id=run_id,
            index=q,
            start=chunks[q].start,
            times=tuple(str(t)[:19] for t in times[chunks[q]]),
            stations=stations,
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
        _run_tasks(client, tasks, store, manifest, progress)
    markers = read_markers(store)
    missing = sorted(set(range(len(chunks))) - set(markers))
    if missing:
        raise BatchError(
            f"chunks {missing} have no completion marker after the run; rerun with --resume"
        )
    manifest["complete"] = sorted(markers)
    manifest["status"] = "complete"
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_manifest(store, manifest)
    _record_provenance(store, markers, manifest)
    if out.suffix == ".nc":
        _write_netcdf(store, out, prior, cfg, overwrite)
    status = "done" if tasks else "nothing to do"
    return _summary(status, cfg, out, times, chunks, run_id, t0, [t.index for t in tasks])


def _record_provenance(store: Path, markers: dict[int, dict], manifest: dict) -> None:
    """Root attributes of a finished store: the runs that wrote it, NFE, task time."""
    import zarr

    attrs = zarr.open_group(str(store), mode="r+").attrs
    attrs.update(
        {
            "run_ids": ",".join(manifest["runs"]),
            "nfe_per_member": int(next(iter(markers.values()))["nfe_per_member"]),
            "task_time_s": round(sum(m["wall_time_s"] for m in markers.values()), 3),
            "created": manifest["finished"],
        }
    )


def _check_station_overlap(stations: xr.Dataset, times: np.ndarray) -> None:
    tt = stations["time"].values
    hour = np.timedelta64(1, "h")
    if (
        stations.sizes.get("obs", 0)
        and not ((tt >= times[0] - hour) & (tt <= times[-1] + hour)).any()
    ):
        raise ValueError(
            f"no station observation falls within the times {str(times[0])[:19]}.."
            f"{str(times[-1])[:19]} (the stations' times run {str(tt.min())[:19]}.."
            f"{str(tt.max())[:19]})"
        )


def _write_netcdf(store: Path, out: Path, prior: Prior, cfg: DownscaleRunConfig, overwrite: bool):
    from hdm.data.stores import open_store, write_netcdf_cf

    ds = open_store(store)
    ds.attrs.pop(CONFIG_KEY, None)
    if out.exists() and overwrite:
        out.unlink()
    provenance = {
        "checkpoint_hash": prior.sha256,
        "config": cfg.to_dict(),
        "seed": cfg.ensemble.seed,
    }
    write_netcdf_cf(ds, out, provenance)
    shutil.rmtree(store)


def _summary(status, cfg, out, times, chunks, run_id, t0, written) -> dict:
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
