"""Dask clusters for batch runs: a LocalCluster, an existing scheduler, or SLURM/PBS.

``batch.scheduler`` picks one: ``local`` (a LocalCluster of ``batch.workers`` processes),
``synchronous`` (no cluster: the tasks run in this process), ``slurm`` / ``pbs`` (a
dask-jobqueue cluster from the ``jobqueue`` section) or the address of a running
scheduler (``tcp://host:8786``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import dask

from hdm.pipelines.config import DownscaleRunConfig

log = logging.getLogger("hdm")

__all__ = ["BatchError", "SchedulerUnreachable", "dask_client", "jobqueue_cluster"]


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


@contextlib.contextmanager
def dask_client(cfg: DownscaleRunConfig) -> Iterator[object]:
    """A ``distributed.Client`` for ``batch.scheduler`` (None for ``synchronous``)."""
    b = cfg.batch
    if b.scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    _quiet_distributed()
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
        "job_extra_directives": list(q.directives),
        # the nanny's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold (see dask_client);
        # a large explicit one keeps torch's tensors off fresh mmaps
        "job_script_prologue": [*q.prologue, "export MALLOC_MMAP_THRESHOLD_=268435456"],
        "worker_extra_args": ["--nthreads", "1"],
    }
    for key in ("queue", "account", "local_directory"):
        if getattr(q, key):
            kwargs[key] = getattr(q, key)
    return kind(**kwargs)
