"""Choosing the shrinkage of the teleport Gaussian on both UK t2m validation splits.

``hdm downscale`` starts each member from the exact Gaussian posterior at ς* under
N(m, C'), C' = (1 − δ) C + δ s L Q Lᵀ with ``hdm gaussian-stats --shrink δ`` (off by
default; :mod:`hdm.pipelines.gaussian_stats` says why). Which δ and low-pass σ is compared
here, never on the test week, on the two validation splits:

* calm: a prior trained on 2019-03-01..20, scored on 03-22..24 at 00 and 12 UTC (6 fields);
* shifted: a prior trained on 03-12..24, scored on the rougher 03-04..10 at 00 and 12 UTC
  (14 fields, section uk-validation-shift).

For each variant δ:σ, a copy of each prior (``--work``) gets ``hdm gaussian-stats
--varsigma-star 0.5604 --shrink δ --shrink-lowpass σ`` (δ = 0: the sample covariance),
and is scored at the ``--factors`` with coarse cells + the 12 benchmark stations
(σ = 0.5 K), MMPS, Heun 25 teleported from ς* = 0.5604, 16 members, no inflation. The level
ς* that ``hdm gaussian-stats --heldout`` would measure for that Gaussian on the split's own
validation days is reported beside (the score keeps 0.5604, the shipped level, so that the
rows differ in the Gaussian only).

    python -m benchmarks uk_gaussian_shrinkage --calm runs/uk_val_2k_a20s4 \\
        --shifted runs/uk_val_shift2k_a20s4 --variants 0:2,0.3:4,0.3:2,0.3:1 --work runs/shrink

Section ``uk-gaussian-shrinkage`` of BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.uk_validation_split import (
    SHIFT_TIMES,
    band_label,
    calibration_cells,
    score,
)
from benchmarks.uk import BANDS, VALIDATION_TIMES
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics

#: the level the shipped prior teleports from (data/checkpoints/PROVENANCE.md)
SHIPPED_VARSIGMA = 0.5604

#: what each scored row prints as it finishes
SUMMARY = ("split", "weight", "sigma", "factor", "rmse", "crps", "spread_skill")

SPLITS = {
    "calm": (tuple(VALIDATION_TIMES), ("2019-03-22", "2019-03-24T23")),
    "shifted": (SHIFT_TIMES, ("2019-03-04", "2019-03-10T23")),
}


def add_split_arguments(p, factors: str = "4,8") -> None:
    """The arguments of a study scored on both splits (:data:`SPLITS`): ``--calm`` and
    ``--shifted`` (the priors trained beside each), ``--factors`` and ``--work`` (a folder
    for the priors' copies)."""
    p.add_argument("--calm", required=True, help="prior trained on 03-01..20")
    p.add_argument("--shifted", required=True, help="prior trained on 03-12..24")
    p.add_argument("--factors", default=factors, help=f"coarse factors (default {factors})")
    p.add_argument("--work", required=True, help="folder for the priors' copies")


def split_study_setup(args) -> tuple[str, Path, list[int]]:
    """(the machine's description, the work folder made, the coarse factors) of a study
    whose arguments :func:`add_split_arguments` added."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    return machine_description(), work, factors


def parse_variants(text: str) -> list[tuple[float, float]]:
    """'δ:σ,δ:σ' → [(δ, σ), ...]; a ValueError naming the bad item."""
    out = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        try:
            weight, sigma = (float(v) for v in item.split(":"))
        except ValueError as exc:
            raise ValueError(f"a variant is WEIGHT:LOWPASS, e.g. 0.3:8, got {item!r}") from exc
        out.append((weight, sigma))
    return out


def variant(prior: Path, work: Path, split: str, weight: float, sigma: float) -> tuple[Path, dict]:
    """A copy of ``prior`` (model, config) in ``work`` with its Gaussian shrunk by (δ, σ),
    made by ``hdm gaussian-stats --heldout`` on the split's validation days: the
    statistics are those of every training field either way; the held-out days give the
    level ς* it would choose. Returns the copy and ``{"modes", "measured_varsigma"}``."""
    folder = work / f"{split}_d{round(weight * 100)}_s{sigma:g}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(prior, folder, ignore=shutil.ignore_patterns("checkpoint.pt", "gaussian*"))
    cfg = GaussianStatsConfig(heldout=SPLITS[split][1], shrink=weight, shrink_lowpass=sigma)
    stats, _ = gaussian_statistics(folder, cfg)
    level = float("nan") if stats.varsigma_star is None else float(stats.varsigma_star)
    return folder, {"modes": stats.rank, "measured_varsigma": level}


HEADER = (
    "| split | δ | σ (cells) | modes | ς* measured | coarse | RMSE K | fair CRPS | spread–skill "
    "| cov. 50 % | cov. 90 % | power ratio | speckle sea | speckle land | spread–skill by band "
    "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(rows: list[dict]) -> str:
    table = "\n".join(
        f"| {r['split']} | {r['weight']:g} | {r['sigma']:g} | {r['modes']} | "
        f"{r['measured_varsigma']:.2f} | ×{r['factor']} | {calibration_cells(r)} |"
        for r in rows
    )
    bands = " / ".join(band_label(lo, hi) for lo, hi in itertools.pairwise(BANDS))
    return f"""## UK t2m: the teleport Gaussian shrunk toward the low-passed Q (validation splits)

The start of every member is the exact Gaussian posterior at ς* = {SHIPPED_VARSIGMA} under
N(m, (1 − δ) C + δ s L Q Lᵀ) (C the PCA covariance of the training fields, s = tr C / tr Q,
L a Gaussian low-pass of σ grid spacings; `hdm gaussian-stats --shrink δ --shrink-lowpass
σ`; δ = 0 is the sample covariance). Calm: prior trained on 03-01..20, scored on 03-22..24
00/12 UTC; shifted: trained on 03-12..24, scored on the rougher 03-04..10 00/12 UTC. Coarse
cells + 12 stations (σ = 0.5 K), MMPS, Heun 25, 16 members, no inflation. "ς* measured":
the level `hdm gaussian-stats --heldout` finds for that Gaussian on the split's validation
days (the scores keep {SHIPPED_VARSIGMA}). Speckle: the members' mean squared Laplacian
over the truth's, over sea and land. Spread–skill by band of wavelengths {bands}.

{HEADER}
{table}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_gaussian_shrinkage --calm DIR --shifted DIR ...``."""
    p = parser("uk_gaussian_shrinkage", __doc__)
    add_split_arguments(p)
    p.add_argument(
        "--variants",
        default="0:2,0.3:4,0.3:2,0.3:1",
        help="δ:σ,... (default 0:2,0.3:4,0.3:2,0.3:1)",
    )
    args = p.parse_args(list(argv))
    machine, work, factors = split_study_setup(args)
    rows = []
    for weight, sigma in parse_variants(args.variants):
        for split, prior in (("calm", args.calm), ("shifted", args.shifted)):
            folder, made = variant(Path(prior), work, split, weight, sigma)
            for factor in factors:
                # the level shipped, not the measured one: the rows differ in C' only
                r = score(
                    str(folder),
                    factor=factor,
                    teleport=str(SHIPPED_VARSIGMA),
                    times=SPLITS[split][0],
                )
                r.update(split=split, weight=weight, sigma=sigma, **made)
                print(json.dumps({k: r[k] for k in SUMMARY}), flush=True)
                rows.append(r)
        # after each variant, so that a long run leaves its finished rows
        write_section(
            args.benchmarks_file,
            "uk-gaussian-shrinkage",
            section(rows),
            command=command_line("uk_gaussian_shrinkage", argv),
            machine=machine,
        )
    return rows
