"""Per-NFE time of the UK-architecture FNO with and without CPU member chunks.

On the CPU, :class:`hdm.hilbert.networks.TimeConditionedFNO` runs a batch in chunks
whose hidden activation (chunk × width × mirror-extended points × 4 bytes) fits in
``cpu_chunk_bytes`` (4 MiB by default), so each layer's working set stays in the
cache. This script times one NFE of 16 members (plain, and guided by MMPS with 5 CG
steps, the setting of :func:`hdm.pipelines.benchmark_downscale.sampling_speed`) on
n × n grids with the whole batch at once (budget 0) and with the default budget:

    python benchmarks/fno_chunking.py [--sizes 64,128,256] [--repeats 1] [--rounds 2]

The two ways alternate ``--rounds`` times (whole, chunked, whole, chunked, ...): on a
shared 2-core machine one run of either moves by tens of per cent. It writes section
``fno-chunking`` of BENCHMARKS.md: per way the median over rounds of ms per NFE (every
round's value in brackets), the members per chunk, the speed-up, and each way's growth
against the N log N cost model.
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from hdm.data.benchmark import machine_description, write_section
from hdm.hilbert.networks import TimeConditionedFNO
from hdm.pipelines.benchmark_downscale import sampling_speed

ROOT = Path(__file__).resolve().parents[1]


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--sizes wants integers like 64,128: {text!r}") from err
    if not sizes or min(sizes) < 8:
        raise argparse.ArgumentTypeError(f"--sizes wants grid sizes of at least 8: {text!r}")
    return sizes


def compare(sizes: list[int], repeats: int, budget_s: float, rounds: int) -> list[dict]:
    """One row per size: per way ("whole", "chunked") every round's sampling_speed row."""
    runs: dict[str, list[list[dict]]] = {"whole": [], "chunked": []}
    for _ in range(rounds):
        runs["whole"].append(
            sampling_speed(sizes, repeats=repeats, budget_s=budget_s, cpu_chunk_bytes=0)
        )
        runs["chunked"].append(sampling_speed(sizes, repeats=repeats, budget_s=budget_s))
    return [
        {"n": n, **{way: [rows[i] for rows in runs[way]] for way in runs}}
        for i, n in enumerate(sizes)
    ]


def _median(rounds: list[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if key in r]
    return statistics.median(values) if values else None


def _cell(rounds: list[dict], key: str) -> str:
    values = [r[key] for r in rounds if key in r]
    if not values:
        return "–"
    each = ", ".join(f"{v:.0f}" for v in values)
    return f"{statistics.median(values):.0f} ({each})"


def _speedup(row: dict, key: str) -> str:
    whole, chunked = _median(row["whole"], key), _median(row["chunked"], key)
    return f"{whole / chunked:.2f}×" if whole and chunked else "–"


def _growth(row: dict, first: dict, way: str) -> str:
    now, ref = _median(row[way], "plain_ms"), _median(first[way], "plain_ms")
    return f"{now / ref:.2f}" if now and ref else "–"


def _nlogn(n: int, ref: int) -> float:
    return (n * n * math.log(n * n)) / (ref * ref * math.log(ref * ref))


def format_table(rows: list[dict], command: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## FNO member chunks on the CPU",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}  ",
        f"Date: {stamp}",
        "",
        "One NFE of 16 members of the untrained UK-architecture FNO (as in section "
        "downscale-speed): the whole batch at once (cpu_chunk_bytes = 0) against chunks "
        f"within the default budget ({TimeConditionedFNO.cpu_chunk_bytes / 2**20:g} MiB "
        "of hidden activation). Guided: MMPS, 5 CG steps. Per way the median over rounds "
        "that alternate the two ways, every round in brackets. Growth: median plain time "
        "÷ the first size's, against N log N (N = n²).",
        "",
        "| grid | members per chunk | plain ms, whole | plain ms, chunked | speed-up | "
        "guided ms, whole | guided ms, chunked | speed-up | growth whole | growth chunked "
        "| N log N |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = rows[0]
    for r in rows:
        chunked = [c for c in r["chunked"] if "plain_ms" in c]
        if not chunked:
            reason = r["chunked"][0].get("skipped") or r["whole"][0].get("skipped")
            lines.append(f"| {r['n']}×{r['n']} | – | skipped: {reason} |")
            continue
        lines.append(
            f"| {r['n']}×{r['n']} | {chunked[0]['chunk']} | {_cell(r['whole'], 'plain_ms')} | "
            f"{_cell(r['chunked'], 'plain_ms')} | {_speedup(r, 'plain_ms')} | "
            f"{_cell(r['whole'], 'guided_ms')} | {_cell(r['chunked'], 'guided_ms')} | "
            f"{_speedup(r, 'guided_ms')} | {_growth(r, first, 'whole')} | "
            f"{_growth(r, first, 'chunked')} | {_nlogn(r['n'], first['n']):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per size and way")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two ways")
    parser.add_argument("--budget-s", type=float, default=250.0, help="seconds per size")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        parser.error(
            f"--repeats and --rounds must be at least 1, got {args.repeats}, {args.rounds}"
        )
    rows = compare(args.sizes, args.repeats, args.budget_s, args.rounds)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/fno_chunking.py", *given])
    table = format_table(rows, command)
    write_section(args.benchmarks, "fno-chunking", table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
