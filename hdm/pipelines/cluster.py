"""Dask clusters for batch runs: a LocalCluster, an existing scheduler, or SLURM/PBS.

``batch.scheduler`` picks one: ``local`` (a LocalCluster of ``batch.workers`` processes),
``synchronous`` (no cluster: the tasks run in this process), ``slurm`` / ``pbs`` (a
dask-jobqueue cluster from the ``jobqueue`` section) or the address of a running
scheduler (``tcp://host:8786``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import dask

from hdm.hilbert.devices import resolve_device
from hdm.pipelines.config import DownscaleRunConfig

log = logging.getLogger("hdm")

__all__ = [
    "BatchError",
    "SchedulerUnreachable",
    "dask_client",
    "jobqueue_cluster",
    "task_device",
]


class BatchError(RuntimeError):
    """A batch run that could not start or finish (the message says which chunk)."""


class BatchInputError(BatchError):
    """A chunk that failed on its input (a value, unit, coordinate or file the task read
    was bad): the CLI's bad-input exit code, one line naming the chunk and the input."""


class SchedulerUnreachable(BatchError):
    """No Dask scheduler answered at the configured address."""


def _quiet_distributed() -> None:
    """distributed's connection chatter is for ``--verbose`` only."""
    if not log.isEnabledFor(logging.DEBUG):
        for name in (
            "distributed",
            "distributed.scheduler",
            "distributed.nanny",
            "distributed.core",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)


def _worker_log_level() -> int:
    """The LocalCluster workers' log level: a failed task is reported once, by
    :class:`BatchError`, in one line; the worker's own "Compute Failed" log with its
    traceback is for ``--verbose``."""
    return logging.ERROR if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL


@contextlib.contextmanager
def dask_client(cfg: DownscaleRunConfig) -> Iterator[object]:
    """A ``distributed.Client`` for ``batch.scheduler`` (None for ``synchronous``)."""
    b = cfg.batch
    if b.scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    _quiet_distributed()
    if b.scheduler == "local" and _wants_cuda(cfg.ensemble.device):
        with _local_gpu_cluster(b.torch_threads) as cluster, Client(cluster) as client:
            yield client
        return
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
                silence_logs=_worker_log_level(),
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
        "job_extra_directives": list(q.directives),
        # the nanny's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold (see dask_client);
        # a large explicit one keeps torch's tensors off fresh mmaps
        "job_script_prologue": [*q.prologue, "export MALLOC_MMAP_THRESHOLD_=268435456"],
        "worker_extra_args": ["--nthreads", "1"],
    }
    if q.gpus > 0:  # one worker process per GPU (task_device picks each worker's)
        gres = f"--gres=gpu:{q.gpus}" if cfg.batch.scheduler == "slurm" else f"-l ngpus={q.gpus}"
        kwargs["job_extra_directives"].append(gres)
        kwargs["processes"] = q.gpus
    for key in ("queue", "account", "local_directory"):
        if getattr(q, key):
            kwargs[key] = getattr(q, key)
    return kind(**kwargs)


def _wants_cuda(spec: str) -> bool:
    """Whether ``ensemble.device`` asks for CUDA here ("auto" with a visible GPU)."""
    return resolve_device(spec).type == "cuda"


@contextlib.contextmanager
def _local_gpu_cluster(threads: int) -> Iterator[object]:
    """One worker per visible GPU: dask-cuda's LocalCUDACluster where installed (each
    worker sees its own GPU as cuda:0), else a LocalCluster of as many workers as torch
    sees devices (:func:`task_device` gives worker k the GPU k)."""
    import torch
    from distributed import LocalCluster

    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None
    if LocalCUDACluster is not None:
        cluster = LocalCUDACluster(threads_per_worker=1, dashboard_address=None)
    else:
        environ = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(
                n_workers=torch.cuda.device_count(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=_worker_log_level(),
            )
    log.info("batch: %d GPU worker(s)", len(cluster.workers))
    with cluster:
        yield cluster


def task_device(spec: str) -> str:
    """The device a chunk runs on: ``spec`` itself for "cpu" and "cuda:K"; for "auto" and
    "cuda" on a Dask worker, the GPU of that worker (worker k of a LocalCluster or of a
    jobqueue job — the last number of its name — gets GPU k modulo the devices it sees;
    under dask-cuda each worker sees one); elsewhere ``spec``."""
    if spec not in ("auto", "cuda") or resolve_device(spec).type != "cuda":
        return spec
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):
        return spec
    import torch

    digits = re.search(r"(\d+)$", name)
    index = int(digits.group(1)) if digits else 0
    return f"cuda:{index % torch.cuda.device_count()}"
