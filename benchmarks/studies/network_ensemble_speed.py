"""Cost of sampling with a prior of K networks, vectorised or one network after the other.

The shipped UK t2m prior is four networks (:class:`hdm.hilbert.networks.NetworkEnsemble`,
row b of a batch through network b mod 4). A batch of a multiple of K rows runs the K
networks as one ``torch.func.vmap`` call over their stacked weights; with
``NetworkEnsemble.vectorised = False`` each network takes its rows in a call of its own.
This script times, with the shipped prior on the UK grid (33 × 49, 16 members):

- one NFE of the denoiser under no_grad, and one with the gradient of its output's
  sum with respect to the input (the vector-Jacobian product guidance takes), at
  diffusion time t = 0.5;
- one whole field as ``hdm downscale`` makes it by default (MMPS, Heun 25, teleported;
  the speed case's inputs: the first test-week time at ×4 with the 12 config stations),

each for the four networks vectorised, the four one after the other, and network 0 alone
(the one-network prior: the same architecture and weights as the shipped prior before it
became four networks). The variants take turns call by call after one warm-up each, so a
slow spell of the shared 2-core machine hits all alike; the table gives the median and
range:

    python -m benchmarks network_ensemble_speed [--repeats 10] [--field-repeats 3]

It writes section ``network-ensemble-speed`` of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from statistics import median

import torch

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.fno_chunking import interleaved
from benchmarks.uk import UKBenchmarkConfig, speed_field
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.hilbert.networks import NetworkEnsemble

MEMBERS = 16
VARIANTS = ("vectorised", "one after the other", "network 0 alone")


@contextmanager
def variant(denoiser, name: str) -> Iterator[None]:
    """The denoiser's backbone set up as ``name`` of :data:`VARIANTS`, restored after."""
    ensemble = denoiser.backbone
    if not isinstance(ensemble, NetworkEnsemble):
        raise SystemExit("network_ensemble_speed: the shipped prior is not a network ensemble")
    try:
        if name == "network 0 alone":
            denoiser.backbone = ensemble.members[0]
        else:
            ensemble.vectorised = name == "vectorised"
        yield
    finally:
        denoiser.backbone = ensemble
        ensemble.vectorised = True


def in_variant(denoiser, name: str, call: Callable[[], object]) -> Callable[[], object]:
    def run():
        with variant(denoiser, name):
            return call()

    return run


def time_calls(repeats: int, field_repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per plain NFE, per NFE with its input gradient and per field, by variant."""
    cfg = UKBenchmarkConfig()
    prior, coarse, stations = speed_field(cfg)
    denoiser, grid = prior.denoiser, prior.grid
    x = torch.randn(MEMBERS, 1, *grid.shape, generator=torch.Generator().manual_seed(0))
    times = torch.full((MEMBERS,), 0.5, dtype=torch.float64)  # diffusion time, mid-trajectory

    def plain():
        with torch.no_grad():
            return denoiser(x, times, grid)

    def with_gradient():
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(denoiser(xg, times, grid).sum(), xg)
        return grad

    config = EnsembleConfig(members=MEMBERS, seed=cfg.seed)

    def field():
        return downscale(prior, coarse=coarse, stations=stations, config=config, progress=False)

    calls = {"plain NFE": (plain, repeats), "NFE with gradient": (with_gradient, repeats)}
    if field_repeats:
        calls["field"] = (field, field_repeats)
    out = {}
    for what, (call, count) in calls.items():
        out[what] = interleaved({v: in_variant(denoiser, v, call) for v in VARIANTS}, count)
        print(f"{what}: done", file=sys.stderr, flush=True)
    return out


def cell(seconds: list[float], unit: float) -> str:
    values = [s / unit for s in seconds]
    digits = 0 if unit < 1 else 1
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def format_table(results: dict[str, dict[str, list[float]]], repeats: int) -> str:
    """Section ``network-ensemble-speed`` (command, machine and date added on writing)."""
    lines = [
        "## Sampling with four networks: vectorised against one network after the other",
        "",
        f"The shipped UK t2m prior (four networks, width 16, 32 × 32 modes, 4 layers), "
        f"{MEMBERS} members on the 33 × 49 grid. NFE: one call of the denoiser at "
        "diffusion time t = 0.5, without and with the gradient of its output's sum with "
        "respect to the input (what guidance takes); field: one field of `hdm downscale`'s "
        "defaults (MMPS, Heun 25, teleported) with the speed case's inputs (×4 coarse "
        f"cells + 12 stations). Median (range) of {repeats} NFE calls and of the field "
        "calls given below, the variants taking turns call by call after a warm-up each. "
        "'Network 0 alone' is the one-network prior (all members through network 0).",
        "",
        "| variant | plain NFE, ms | NFE with gradient, ms | field, s | field ÷ vectorised |",
        "|---|---|---|---|---|",
    ]
    field = results.get("field")
    for name in VARIANTS:
        plain = cell(results["plain NFE"][name], 1e-3)
        grad = cell(results["NFE with gradient"][name], 1e-3)
        if field:
            ratio = median(field[name]) / median(field["vectorised"])
            field_cells = f"{cell(field[name], 1.0)} | {ratio:.2f}"
        else:
            field_cells = "– | –"
        lines.append(f"| {name} | {plain} | {grad} | {field_cells} |")
    if field:
        lines += ["", f"Field calls per variant: {len(field['vectorised'])}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] = ()) -> dict:
    """``python -m benchmarks network_ensemble_speed [--repeats R] [--field-repeats F]``."""
    p = parser("network_ensemble_speed", __doc__)
    p.add_argument("--repeats", type=int, default=10, help="timed NFE calls per variant")
    p.add_argument(
        "--field-repeats", type=int, default=3, help="timed fields per variant (0: none)"
    )
    args = p.parse_args(list(argv))
    if args.repeats < 1 or args.field_repeats < 0:
        p.error(f"--repeats must be ≥ 1 and --field-repeats ≥ 0, got {args}")
    machine = machine_description()
    results = time_calls(args.repeats, args.field_repeats)
    table = format_table(results, args.repeats)
    command = command_line("network_ensemble_speed", argv)
    write_section(
        args.benchmarks_file, "network-ensemble-speed", table, command=command, machine=machine
    )
    print(table)
    return results
