"""Per-NFE time of the UK-architecture FNO with and without CPU member chunks.

On the CPU, :class:`hdm.hilbert.networks.TimeConditionedFNO` runs a batch in chunks
whose hidden activation (chunk × width × mirror-extended points × 4 bytes) fits in
``cpu_chunk_bytes`` (4 MiB by default), so each layer's working set stays in the cache
and its blocks stay below glibc's mmap threshold. This script times one NFE of 16
members, the problem of :func:`benchmarks.downscale.sampling_speed`, on the
UK grid (33 × 49) and on n × n grids:

- plain (the denoiser under no_grad) for budgets 0 (the whole batch at once), 1, 4 and
  16 MiB;
- guided (MMPS, 5 CG steps) for budgets 0 and 4 MiB;
- and one whole UK field with the shipped prior, as ``hdm downscale`` makes it (16
  members, coarse ×4 + 12 stations, MMPS, EM 50 steps; the speed case of section
  downscale-uk), for budgets 0 and 4 MiB (``--field-repeats``, 0 skips it).

The budgets take turns call by call (after one warm-up call each), so a slow spell of a
shared 2-core machine hits every budget alike; the table gives the median and the range
of the timed calls:

    python -m benchmarks fno_chunking [--sizes 64,128,256] [--repeats 5] [--guided-repeats 1]
                                      [--field-repeats 3]

It writes section ``fno-chunking`` of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from statistics import median

import torch

from benchmarks.downscale import speed_problem
from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.uk import UKBenchmarkConfig, speed_field
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.hilbert.grids import RectGrid

MIB = 2**20
PLAIN_BUDGETS = (0, 1 * MIB, 4 * MIB, 16 * MIB)
GUIDED_BUDGETS = (0, 4 * MIB)
UK_SHAPE = (33, 49)
MEMBERS = 16


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--sizes wants integers like 64,128: {text!r}") from err
    if not sizes or min(sizes) < 8:
        raise argparse.ArgumentTypeError(f"--sizes wants grid sizes of at least 8: {text!r}")
    return sizes


def interleaved(calls: dict[int, Callable[[], object]], repeats: int) -> dict[int, list[float]]:
    """Seconds of each call: one warm-up each, then ``repeats`` rounds taking turns."""
    for call in calls.values():
        call()
    times: dict[int, list[float]] = {budget: [] for budget in calls}
    for _ in range(repeats):
        for budget, call in calls.items():
            start = time.perf_counter()
            call()
            times[budget].append(time.perf_counter() - start)
    return times


def budgeted(backbone, budget: int, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with the network's chunk budget set to ``budget`` first."""

    def run():
        backbone.cpu_chunk_bytes = budget
        return call()

    return run


def time_shape(shape: tuple[int, int], repeats: int, guided_repeats: int, seed: int = 0) -> dict:
    """Plain and guided seconds per NFE by chunk budget on one grid, and members per chunk."""
    process, denoiser, guided, t = speed_problem(seed)
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), shape)
    x = process.prior_sample(MEMBERS, 1, grid, torch.Generator().manual_seed(seed + 2))
    times = torch.full((MEMBERS,), float(t), dtype=torch.float64)
    backbone = denoiser.backbone

    def plain():
        with torch.no_grad():
            return denoiser(x, times, grid)

    def guided_call():
        return guided(x, times, grid)

    chunks = {}
    for budget in PLAIN_BUDGETS:
        backbone.cpu_chunk_bytes = budget
        chunks[budget] = backbone.chunk_size(x, grid)
    row = {"shape": shape, "chunk": chunks}
    row["plain"] = interleaved({b: budgeted(backbone, b, plain) for b in PLAIN_BUDGETS}, repeats)
    if guided_repeats > 0:
        calls = {b: budgeted(backbone, b, guided_call) for b in GUIDED_BUDGETS}
        row["guided"] = interleaved(calls, guided_repeats)
    return row


def uk_field_call() -> tuple:
    """(the shipped prior, a call that downscales the speed case's UK field as ``hdm
    downscale`` does: 16 members, coarse ×4 + 12 stations, MMPS, EM 50 steps)."""
    cfg = UKBenchmarkConfig()
    prior, coarse, stations = speed_field(cfg)
    config = EnsembleConfig(members=MEMBERS, guidance="mmps", sampler="em", steps=50, seed=cfg.seed)

    def field():
        return downscale(prior, coarse=coarse, stations=stations, config=config, progress=False)

    return prior, field


def time_uk_field(repeats: int) -> dict[int, list[float]]:
    """Seconds per UK field (16 members, MMPS, EM 50) for budgets 0 and 4 MiB, in turns."""
    prior, field = uk_field_call()
    backbone = prior.denoiser.backbone
    return interleaved({b: budgeted(backbone, b, field) for b in GUIDED_BUDGETS}, repeats)


def cell(seconds: list[float]) -> str:
    ms = [1e3 * s for s in seconds]
    if len(ms) == 1:
        return f"{ms[0]:.0f}"
    return f"{median(ms):.0f} ({min(ms):.0f}–{max(ms):.0f})"


def _nlogn(shape: tuple[int, int]) -> float:
    n = shape[0] * shape[1]
    return n * math.log(n)


def format_table(rows: list[dict], repeats: int, guided_repeats: int) -> str:
    """Section ``fno-chunking`` (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    budgets = " | ".join(
        f"plain ms, {b // MIB} MiB" if b else "plain ms, whole" for b in PLAIN_BUDGETS
    )
    lines = [
        "## FNO member chunks on the CPU",
        "",
        f"One NFE of {MEMBERS} members of the untrained UK-architecture FNO (the problem of "
        "section downscale-speed) by the network's CPU chunk budget (hidden activation per "
        "chunk; 0 = the whole batch at once; the default is 4 MiB; 'chunks' gives the "
        f"members per chunk at each budget). Median (range) of {repeats} plain and "
        f"{guided_repeats} guided (MMPS, 5 CG steps) calls per budget, the budgets taking "
        "turns call by call after a warm-up each. Growth: the median plain time at 4 MiB "
        "÷ the first n × n grid's, against N log N (N = points).",
        "",
        f"| grid | chunks (whole / 1 / 4 / 16 MiB) | {budgets} | speed-up at 4 MiB | "
        "guided ms, whole | guided ms, 4 MiB | speed-up | growth at 4 MiB | N log N |",
    ]
    lines.append("|" + "---|" * (lines[-1].count("|") - 1))
    squares = [r for r in rows if r["shape"] != UK_SHAPE]
    first = squares[0] if squares else rows[0]
    for r in rows:
        plain, guided = r["plain"], r.get("guided", {})
        chunks = " / ".join(str(r["chunk"][b]) for b in PLAIN_BUDGETS)
        default = 4 * MIB
        speedup = median(plain[0]) / median(plain[default])
        if guided:
            guided_cells = (
                f"{cell(guided[0])} | {cell(guided[default])} | "
                f"{median(guided[0]) / median(guided[default]):.2f}×"
            )
        else:
            guided_cells = "– | – | –"
        square = r["shape"] != UK_SHAPE
        growth = (
            f"{median(plain[default]) / median(first['plain'][default]):.2f} | "
            f"{_nlogn(r['shape']) / _nlogn(first['shape']):.2f}"
            if square
            else "– | –"
        )
        lines.append(
            f"| {r['shape'][0]}×{r['shape'][1]} | {chunks} | "
            + " | ".join(cell(plain[b]) for b in PLAIN_BUDGETS)
            + f" | {speedup:.2f}× | {guided_cells} | {growth} |"
        )
    return "\n".join(lines) + "\n"


def format_field(field: dict[int, list[float]]) -> str:
    whole, chunked = field[0], field[4 * MIB]
    each = "; ".join(
        f"{name} {', '.join(f'{s:.1f}' for s in v)} s"
        for name, v in (("whole", whole), ("4 MiB", chunked))
    )
    return (
        "\nOne UK field with the shipped prior (16 members, coarse ×4 + 12 stations, MMPS, "
        f"EM 50 steps, 8 members per chunk), in turns: whole batch "
        f"{median(whole):.1f} s, 4 MiB chunks {median(chunked):.1f} s "
        f"per field ({median(whole) / median(chunked):.2f}×; {each}).\n"
    )


def parse_timing_arguments(p: argparse.ArgumentParser, argv: Sequence[str], each: str):
    """Add --repeats, --guided-repeats, --field-repeats (timed calls per ``each``) to the
    parser ``p``, parse ``argv`` and check the counts."""
    p.add_argument("--repeats", type=int, default=5, help=f"timed plain calls per {each}")
    p.add_argument(
        "--guided-repeats", type=int, default=1, help=f"timed guided calls per {each} (0: none)"
    )
    p.add_argument(
        "--field-repeats", type=int, default=3, help=f"timed UK fields per {each} (0: none)"
    )
    args = p.parse_args(list(argv))
    if args.repeats < 1 or min(args.guided_repeats, args.field_repeats) < 0:
        p.error(
            "--repeats must be ≥ 1 and --guided-repeats, --field-repeats ≥ 0, got "
            f"{args.repeats}, {args.guided_repeats}, {args.field_repeats}"
        )
    return args


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks fno_chunking [--sizes ...] [--repeats R] [...]``."""
    p = parser("fno_chunking", __doc__)
    p.add_argument("--sizes", type=parse_sizes, default=[64, 128, 256])
    args = parse_timing_arguments(p, argv, "budget")
    machine = machine_description()
    shapes = [UK_SHAPE, *[(n, n) for n in args.sizes]]
    rows = []
    for shape in shapes:
        rows.append(time_shape(shape, args.repeats, args.guided_repeats))
        print(f"{shape}: done", file=sys.stderr, flush=True)
    table = format_table(rows, args.repeats, args.guided_repeats)
    if args.field_repeats:
        table += format_field(time_uk_field(args.field_repeats))
    command = command_line("fno_chunking", argv)
    write_section(args.benchmarks_file, "fno-chunking", table, command=command, machine=machine)
    print(table)
    return rows
