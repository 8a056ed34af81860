"""Per-NFE time of the UK-architecture FNO: truncated DFT products against full FFTs.

:class:`hdm.hilbert.spectral.TruncatedSpectralConv` computes the kept Fourier modes of
each spectral layer by matrix products with the truncated DFT matrices; with
``use_products = False`` it runs neuraloperator's own forward (full ``rfftn``, mode
slicing, ``irfftn`` of the zero-padded spectrum). Both give the same output to float
rounding (the script checks it on every grid). This script times, taking turns call by
call after one warm-up each (so a slow spell of a shared machine hits both alike):

- one plain NFE (the denoiser under no_grad) of 16 members, the problem of
  :func:`benchmarks.downscale.sampling_speed`, on the UK grid (33 × 49) and
  on n × n grids;
- one guided NFE (MMPS, 5 CG steps) on the UK grid and on the n × n grids of
  ``--guided-sizes``;
- one whole UK field with the shipped prior, as ``hdm downscale`` makes it (16 members,
  coarse ×4 + 12 stations, MMPS, EM 50 steps; ``--field-repeats``, 0 skips it).

    python -m benchmarks spectral_layer [--sizes 64,128,256,512] [--guided-sizes 64,128,256]
                                        [--repeats 5] [--guided-repeats 1] [--field-repeats 3]

It writes section ``spectral-layer`` of BENCHMARKS.md.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from statistics import median

import torch

from benchmarks.downscale import speed_problem
from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.fno_chunking import (
    MEMBERS,
    UK_SHAPE,
    cell,
    interleaved,
    parse_sizes,
    parse_timing_arguments,
    uk_field_call,
)
from hdm.hilbert.grids import RectGrid
from hdm.hilbert.spectral import TruncatedSpectralConv

LAYERS = {"fft": False, "products": True}  # name → TruncatedSpectralConv.use_products


def with_layer(products: bool, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with every spectral layer set to products (True) or full FFTs first."""

    def run():
        TruncatedSpectralConv.use_products = products
        return call()

    return run


def largest_relative_difference(call: Callable[[], torch.Tensor]) -> float:
    """max |products − FFT| / max |FFT| of one call's output."""
    out = {name: with_layer(products, call)().detach() for name, products in LAYERS.items()}
    return float((out["products"] - out["fft"]).abs().max() / out["fft"].abs().max())


def time_shape(shape, repeats: int, guided_repeats: int, seed: int = 0) -> dict:
    """Plain (and guided, if ``guided_repeats``) seconds per NFE of the two layers."""
    process, denoiser, guided, t = speed_problem(seed)
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), shape)
    x = process.prior_sample(MEMBERS, 1, grid, torch.Generator().manual_seed(seed + 2))
    times = torch.full((MEMBERS,), float(t), dtype=torch.float64)

    def plain():
        with torch.no_grad():
            return denoiser(x, times, grid)

    def guided_call():
        return guided(x, times, grid)

    row = {"shape": shape, "plain_difference": largest_relative_difference(plain)}
    row["plain"] = interleaved({n: with_layer(p, plain) for n, p in LAYERS.items()}, repeats)
    if guided_repeats > 0:
        row["guided_difference"] = largest_relative_difference(guided_call)
        calls = {n: with_layer(p, guided_call) for n, p in LAYERS.items()}
        row["guided"] = interleaved(calls, guided_repeats)
    return row


def time_uk_field(repeats: int) -> dict[str, list[float]]:
    """Seconds per UK field (16 members, MMPS, EM 50) with each layer, in turns."""
    _, field = uk_field_call()
    return interleaved({n: with_layer(p, field) for n, p in LAYERS.items()}, repeats)


def _nlogn(shape) -> float:
    n = math.prod(shape)
    return n * math.log(n)


def format_table(rows: list[dict], repeats: int, guided_repeats: int) -> str:
    """Section ``spectral-layer`` (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    lines = [
        "## FNO spectral layers: truncated DFT products against full FFTs",
        "",
        f"One NFE of {MEMBERS} members of the untrained UK-architecture FNO (width 16, "
        "32 × 32 modes, 4 layers; the problem of section downscale-speed; CPU chunks of "
        "4 MiB) with the spectral layers as neuraloperator computes them (full FFTs) and "
        "as truncated DFT products (`TruncatedSpectralConv`, the default). Median (range) "
        f"of {repeats} plain and {guided_repeats} guided (MMPS, 5 CG steps) calls each, "
        "the two taking turns call by call after a warm-up each. 'difference': max "
        "|products − FFT| ÷ max |FFT| of the call's output. Growth: the median time ÷ "
        "the first n × n grid's, against N log N (N = points).",
        "",
        "| grid | plain ms, FFT | plain ms, products | speed-up | difference | "
        "guided ms, FFT | guided ms, products | speed-up | difference | "
        "growth plain (products) | growth guided (products) | N log N |",
    ]
    lines.append("|" + "---|" * (lines[-1].count("|") - 1))
    squares = [r for r in rows if r["shape"] != UK_SHAPE]
    first = squares[0] if squares else rows[0]
    for r in rows:
        plain = r["plain"]
        cells = [
            f"{r['shape'][0]}×{r['shape'][1]}",
            cell(plain["fft"]),
            cell(plain["products"]),
            f"{median(plain['fft']) / median(plain['products']):.2f}×",
            f"{r['plain_difference']:.1e}",
        ]
        guided = r.get("guided")
        if guided:
            cells += [
                cell(guided["fft"]),
                cell(guided["products"]),
                f"{median(guided['fft']) / median(guided['products']):.2f}×",
                f"{r['guided_difference']:.1e}",
            ]
        else:
            cells += ["–"] * 4
        if r["shape"] != UK_SHAPE:
            cells.append(f"{median(plain['products']) / median(first['plain']['products']):.2f}")
            if guided and "guided" in first:
                growth = median(guided["products"]) / median(first["guided"]["products"])
                cells.append(f"{growth:.2f}")
            else:
                cells.append("–")
            cells.append(f"{_nlogn(r['shape']) / _nlogn(first['shape']):.2f}")
        else:
            cells += ["–"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_field(field: dict[str, list[float]]) -> str:
    fft, products = field["fft"], field["products"]
    each = "; ".join(f"{name} {', '.join(f'{s:.1f}' for s in v)} s" for name, v in field.items())
    return (
        "\nOne UK field with the shipped prior (16 members, coarse ×4 + 12 stations, MMPS, "
        f"EM 50 steps), in turns: FFT layers {median(fft):.1f} s, products "
        f"{median(products):.1f} s per field ({median(fft) / median(products):.2f}×; "
        f"{each}).\n"
    )


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks spectral_layer [--sizes ...] [--guided-sizes ...] [...]``."""
    p = parser("spectral_layer", __doc__)
    p.add_argument("--sizes", type=parse_sizes, default=[64, 128, 256, 512])
    p.add_argument("--guided-sizes", type=parse_sizes, default=[64, 128, 256])
    args = parse_timing_arguments(p, argv, "layer")
    machine = machine_description()
    shapes = [UK_SHAPE, *[(n, n) for n in args.sizes]]
    rows = []
    try:
        for shape in shapes:
            square = shape != UK_SHAPE
            guided = args.guided_repeats if not square or shape[0] in args.guided_sizes else 0
            rows.append(time_shape(shape, args.repeats, guided))
            print(f"{shape}: done", file=sys.stderr, flush=True)
        field = time_uk_field(args.field_repeats) if args.field_repeats else None
    finally:
        TruncatedSpectralConv.use_products = True
    table = format_table(rows, args.repeats, args.guided_repeats)
    if field is not None:
        table += format_field(field)
    command = command_line("spectral_layer", argv)
    write_section(args.benchmarks_file, "spectral-layer", table, command=command, machine=machine)
    print(table)
    return rows
