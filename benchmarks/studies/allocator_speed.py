"""NFE and field times under different memory settings (glibc allocator, huge pages).

    python -m benchmarks allocator_speed                       # per-NFE time at 64², 128²
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        python -m benchmarks allocator_speed                   # freed memory kept
    /usr/bin/time -f "%e s wall %S s system %M KB" python -m benchmarks allocator_speed

    THP_MEM_ALLOC_ENABLE=1 python -m benchmarks allocator_speed --guided-calls 512 2
    THP_MEM_ALLOC_ENABLE=0 python -m benchmarks allocator_speed --guided-calls 512 2
        # one guided NFE (MMPS, 5 CG steps, 16 members) on n × n, CALLS times: wall, user
        # and system seconds and minor page faults of each call (resource.getrusage)
    THP_MEM_ALLOC_ENABLE=1 python -m benchmarks allocator_speed --uk-field 4
        # the first UK test field (MMPS, EM 50, 16 members) downscaled REPEATS times

It prints its measurements and writes no section: the numbers are quoted in
BENCHMARKS.md (section downscale-speed) and hdm/allocator.py. Run the settings in
separate processes, taking turns: huge pages and glibc's settings are read when the
process starts.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence

from benchmarks.report import parser


def guided_calls(n: int, calls: int) -> None:
    import torch

    from benchmarks.downscale import speed_problem
    from hdm.hilbert.grids import RectGrid

    torch.set_num_threads(2)
    process, _, guided, t = speed_problem(0)
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (n, n))
    x = process.prior_sample(16, 1, grid, torch.Generator().manual_seed(2))
    times = torch.full((16,), float(t), dtype=torch.float64)
    for k in range(calls):
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        guided(x, times, grid)
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        print(
            f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '')} {n}x{n} "
            f"call {k}: wall {w1 - w0:.1f} s, user {r1.ru_utime - r0.ru_utime:.1f} s, "
            f"system {r1.ru_stime - r0.ru_stime:.1f} s, "
            f"minor page faults {r1.ru_minflt - r0.ru_minflt}",
            flush=True,
        )


def uk_field(repeats: int) -> None:
    import numpy as np
    import torch

    from benchmarks.uk import FULL, speed_field
    from hdm.downscaling.core import downscale

    torch.set_num_threads(2)
    prior, coarse, stations = speed_field(FULL)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        downscale(prior, coarse=coarse, stations=stations, members=16, progress=False)
        seconds.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '')} UK field s: "
        f"{[round(s, 1) for s in seconds]}, median after the first "
        f"{np.median(seconds[1:]):.2f} s, peak RSS {peak:.2f} GB",
        flush=True,
    )


def nfe_times() -> None:
    from benchmarks.downscale import sampling_speed

    for row in sampling_speed(sizes=(64, 128), repeats=1, budget_s=40):
        guided = row.get("guided_ms")
        print(
            f"{row['n']}x{row['n']}: {row['plain_ms']:.0f} ms per plain NFE"
            + (f", {guided:.0f} ms per guided NFE" if guided else "")
        )


def main(argv: Sequence[str] = ()) -> int:
    """``python -m benchmarks allocator_speed [--guided-calls N CALLS | --uk-field R]``."""
    p = parser("allocator_speed", __doc__, writes=False)
    p.add_argument("--guided-calls", nargs=2, type=int, metavar=("N", "CALLS"))
    p.add_argument("--uk-field", type=int, metavar="REPEATS")
    args = p.parse_args(list(argv))
    if args.guided_calls:
        guided_calls(*args.guided_calls)
    elif args.uk_field:
        uk_field(args.uk_field)
    else:
        nfe_times()
    return 0
