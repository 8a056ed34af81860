"""``hdm benchmark batch``: fields per minute of batch downscaling, 1 vs 2 Dask workers.

The job is the shipped UK t2m model on test-week times (coarse ×4 plus the 12
conditioning stations, MMPS, Heun), one time per task, on a LocalCluster with

- 1 worker × 2 torch threads (all the machine's cores to one task at a time),
- 1 worker × 1 torch thread,
- 2 workers × 1 torch thread each (two tasks at a time),

timed end to end (cluster start, model loading in each worker, the store's creation,
every chunk, the manifest) and by the sum of the tasks' own times. The 1×1 and 2×1
stores are compared value by value: the number of workers must not change the output
(the tasks run with the same number of torch threads; a different thread count may
change the last bits of floating-point sums, so the 1×2 store is not compared).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from hdm.data.benchmark import machine_description, write_section
from hdm.pipelines.batch import read_markers
from hdm.pipelines.benchmark import PROJECT_ROOT

__all__ = ["BatchBenchmarkConfig", "run_batch_benchmark"]


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
    from hdm.domains.atmosphere import GRIDDED_DATASETS
    from hdm.pipelines.benchmark_uk import CONDITIONING_STATIONS
    from hdm.pipelines.downscale import run_downscale

    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = run_downscale(
        PROJECT_ROOT / "data" / "checkpoints" / "uk_t2m" / "model.pt",
        out,
        truth=str(GRIDDED_DATASETS["uk_t2m"].resolved_path()),
        factor=4,
        simulate_stations=CONDITIONING_STATIONS,
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


def run_batch_benchmark(quick: bool, benchmarks_file: Path, work: Path) -> dict:
    """Run the three cases one after the other and write the ``batch`` section."""
    cfg = QUICK if quick else FULL
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    results = {}
    for label, workers, threads in CASES:
        results[label] = _run_case(cfg, work / f"w{workers}t{threads}.zarr", workers, threads)
    same = _identical(work / "w1t1.zarr", work / "w2t1.zarr")
    base = results["1 worker x 2 threads"]["fields_per_min"]
    rows = "\n".join(
        f"| {label} | {r['times']} | {r['wall_s']:.1f} | {r['task_s']:.1f} | "
        f"{r['fields_per_min']:.2f} | {r['fields_per_min'] / base:.2f}× |"
        for label, r in results.items()
    )
    command = "hdm benchmark batch" + (" --quick" if quick else "")
    body = f"""## Batch downscaling: fields per minute, 1 vs 2 Dask workers

Command: `{command}` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine}

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
    write_section(benchmarks_file, "batch", body)
    out = {"config": cfg.__dict__, "results": results, "identical_1_vs_2_workers": same}
    (work / "batch_results.json").write_text(json.dumps(out, indent=2))
    return out
