"""Few model calls on the functional models: dpm2m and v3, each ± teleportation.

For each shipped functional model (Quadratic, Melbourne, ItalyPowerDemand, GRF), on a copy
of its folder: ``hdm gaussian-stats`` (teleportation's statistics and ς*) and ``hdm
model-stats`` (the v3 sampler's empirical statistics); then ``n`` curves per sampler at
NFE 5, 10 and 20 (dpm2m and v3 spend N + 1 calls on N steps), beside Heun 25 (49 NFE)
Euler–Maruyama 1000, each scored like the functional benchmark
(rigorous power with its null, mean and covariance errors over their floors) with the
wall time per 1,000 curves. Section ``fast-sampling`` of BENCHMARKS.md.

    python -m benchmarks fast_sampling [--n 500] [--datasets quadratic,grf]
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.functional import SAMPLER_HEADER, _metrics_cells
from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from hdm.hilbert.checkpoints import load_gaussian
from hdm.pipelines.evaluate import evaluate_functional
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics
from hdm.pipelines.model_stats import ModelStatsConfig, model_statistics
from hdm.pipelines.sample import sample, write_netcdf

SECTION = "fast-sampling"
DATASETS = ("quadratic", "melbourne", "italy_power", "grf")
HEADER = ["dataset", "sampler", "teleport ς*", *SAMPLER_HEADER[1:]]


def prepared_copy(name: str, work: Path) -> tuple[Path, float | None]:
    """A copy of the shipped model with both statistics; its model.pt and ς*."""
    folder = work / name
    if not (folder / "model_stats.pt").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(PROJECT_ROOT / "data" / "checkpoints" / name, folder)
        gaussian_statistics(folder, GaussianStatsConfig(), plot=False)
        model_statistics(folder, ModelStatsConfig(), progress=False)
    return folder / "model.pt", load_gaussian(folder / "model.pt").varsigma_star


def runs() -> list[tuple[str, int, bool]]:
    """(sampler, steps, teleported) of one dataset's rows."""
    out = [
        (s, nfe - 1, tele) for nfe in (5, 10, 20) for s in ("dpm2m", "v3") for tele in (False, True)
    ]
    return [*out, ("heun", 25, False), ("em", 1000, False)]


def rows_for(name: str, work: Path, n: int) -> list[list[str]]:
    model, star = prepared_copy(name, work)
    rows = []
    for sampler, steps, tele in runs():
        if tele and star is None:
            continue
        t0 = time.perf_counter()
        ds = sample(
            model,
            n=n,
            sampler=sampler,
            steps=steps,
            seed=5,
            progress=False,
            teleport="auto" if tele else None,
        )
        wall = time.perf_counter() - t0
        path = write_netcdf(ds, work / f"{name}-{sampler}-{steps}-{int(tele)}.nc")
        r = evaluate_functional(name, path)
        rows.append(
            [
                name,
                sampler,
                f"{star:.3g}" if tele else "–",
                str(steps),
                str(ds.attrs["nfe"]),
                f"{wall * 1000 / n:.1f}",
                *_metrics_cells(r),
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("fast_sampling", __doc__)
    p.add_argument("--n", type=int, default=500, help="curves per row")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--work", default="runs/fast_sampling")
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description()
    work = PROJECT_ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = [row for name in args.datasets.split(",") for row in rows_for(name, work, args.n)]
    body = f"""## Few model calls: dpm2m and v3, each ± teleportation (functional models)

The shipped models, {args.n} curves per row (wall time scaled to 1,000 curves, sampling
only), scored as in the functional benchmark. Teleportation starts at the ς* that `hdm
gaussian-stats` measured for the model (its default settings); v3 uses the statistics of
`hdm model-stats` (40 levels, 128 training fields, s = 0). The v3 and dpm2m rows at one
NFE spend the same calls (N steps, N + 1 calls). Targets (issue 20): ≤ 10 NFE within 2
power points of EM 1000, and 1,000 Quadratic curves in ≤ 5 s.

{markdown_table(HEADER, rows)}

Reading the table: ς* is chosen by held-out denoising error (section teleport-levels),
which the two-sample test can contradict — compare each teleported row with the row above
it. The GRF data are Gaussian, so its ς* lies at the bottom of the range and its teleported
rows are draws of the fitted Gaussian (PCA of the training curves), not of the network.
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("fast_sampling", argv),
        machine=machine,
    )
    return rows
