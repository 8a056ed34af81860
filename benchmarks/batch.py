"""``python -m benchmarks batch``: fields per minute of batch downscaling, 1 vs 2 Dask workers.

The job is the shipped UK t2m model on test-week times (coarse ×4 plus the 12
conditioning stations, MMPS, Heun), one time per task, run by
:func:`hdm.pipelines.job.run_downscale` on a LocalCluster with

- 1 worker × 2 torch threads (all the machine's cores to one task at a time),
- 1 worker × 1 torch thread,
- 2 workers × 1 torch thread each (two tasks at a time),

timed end to end (cluster start, model loading in each worker, the store's creation,
every chunk, the manifest) and by the sum of the tasks' own times. The 1×1 and 2×1
stores are compared value by value: the number of workers must not change the output
(the tasks run with the same number of torch threads; a different thread count may
change the last bits of floating-point sums, so the 1×2 store is not compared). Section
``batch``.

    python -m benchmarks batch [--quick] [--work DIR]
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from benchmarks.report import PROJECT_ROOT, command_line, machine_description, parser, write_section
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.domains.shipped import shipped_checkpoint
from hdm.pipelines.batch_store import read_markers
from hdm.pipelines.job import run_downscale

__all__ = ["BatchBenchmarkConfig", "main", "run_batch_benchmark"]


@dataclass(frozen=True)
class BatchBenchmarkConfig:
    start: str
    end: str
    every: int
    members: int
    steps: int
    sampler: str = "heun"


FULL = BatchBenchmarkConfig("2019-03-25T00", "2019-03-26T18", 6, 16, 25)
QUICK = BatchBenchmarkConfig("2019-03-25T00", "2019-03-25T18", 6, 4, 8)
CASES = (
    ("1 worker x 2 threads", 1, 2),
    ("1 worker x 1 thread", 1, 1),
    ("2 workers x 1 thread", 2, 1),
)


def _run_case(cfg: BatchBenchmarkConfig, out: Path, workers: int, threads: int) -> dict:
    uk = GRIDDED_DATASETS["uk_t2m"]
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = run_downscale(
        shipped_checkpoint("uk_t2m"),
        out,
        truth=str(uk.resolved_path()),
        factor=4,
        simulate_stations=list(uk.conditioning_stations),
        members=cfg.members,
        sampler=cfg.sampler,
        steps=cfg.steps,
        times=(cfg.start, cfg.end),
        every=cfg.every,
        chunk_size=1,
        scheduler="local",
        workers=workers,
        torch_threads=threads,
        plots=False,
        progress=False,
    )
    wall = time.perf_counter() - t0
    tasks = sum(m["wall_time_s"] for m in read_markers(out).values())
    return {
        "times": summary["times"],
        "wall_s": wall,
        "task_s": tasks,
        "fields_per_min": summary["times"] / wall * 60,
    }


def _identical(a: Path, b: Path) -> bool:
    with xr.open_zarr(a, consolidated=False) as x, xr.open_zarr(b, consolidated=False) as y:
        return all(np.array_equal(x[n].values, y[n].values, equal_nan=True) for n in x.data_vars)


def format_batch(cfg: BatchBenchmarkConfig, results: dict, same: bool) -> str:
    """The ``batch`` section; the command, machine and date are added by
    :func:`benchmarks.report.write_section`."""
    base = results["1 worker x 2 threads"]["fields_per_min"]
    rows = "\n".join(
        f"| {label} | {r['times']} | {r['wall_s']:.1f} | {r['task_s']:.1f} | "
        f"{r['fields_per_min']:.2f} | {r['fields_per_min'] / base:.2f}× |"
        for label, r in results.items()
    )
    return f"""## Batch downscaling: fields per minute, 1 vs 2 Dask workers

The shipped UK t2m model, {cfg.start}..{cfg.end} every {cfg.every} h, coarse ×4 + 12
stations, {cfg.members} members, MMPS, {cfg.sampler} {cfg.steps} steps,
one time per task, LocalCluster. Wall time is end to end (cluster start, model loading
in every worker, store creation, all tasks); task time is the sum of the tasks' own times.

| workers × torch threads | fields | wall (s) | Σ task time (s) | fields / min | vs 1×2 |
|---|---|---|---|---|---|
{rows}

2 workers × 1 thread and 1 worker × 1 thread wrote identical stores (every variable, bit
for bit): **{"yes" if same else "NO"}**.
"""


def run_batch_benchmark(
    quick: bool, benchmarks_file: Path, work: Path, command: str | None = None
) -> dict:
    """Run the three cases one after the other and write the ``batch`` section;
    ``command``: the command line to record (default: this process's)."""
    cfg = QUICK if quick else FULL
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_description("dask", "xarray", "zarr")
    results = {}
    for label, workers, threads in CASES:
        results[label] = _run_case(cfg, work / f"w{workers}t{threads}.zarr", workers, threads)
    same = _identical(work / "w1t1.zarr", work / "w2t1.zarr")
    body = format_batch(cfg, results, same)
    write_section(benchmarks_file, "batch", body, command=command, machine=machine)
    out = {"config": cfg.__dict__, "results": results, "identical_1_vs_2_workers": same}
    (work / "batch_results.json").write_text(json.dumps(out, indent=2))
    return out


def main(argv: Sequence[str] = ()) -> dict:
    """``python -m benchmarks batch [--quick] [--work DIR]``."""
    p = parser("batch", __doc__, quick="small settings (a few minutes)")
    p.add_argument(
        "--work",
        type=Path,
        default=PROJECT_ROOT / "runs" / "benchmark-batch",
        help="work folder for the stores (default runs/benchmark-batch)",
    )
    args = p.parse_args(list(argv))
    result = run_batch_benchmark(
        args.quick, args.benchmarks_file, args.work, command=command_line("batch", argv)
    )
    for label, r in result["results"].items():
        print(f"{label}: {r['fields_per_min']:.2f} fields/min ({r['wall_s']:.1f} s)")
    print(f"benchmark table written to {args.benchmarks_file}")
    return result
