"""A wider teleport Gaussian: the start's prior covariance scaled by s², both validation splits.

Teleported, each member starts at ς* from the exact Gaussian posterior under N(m, C), C the
covariance of the training fields (:mod:`hdm.conditioning.teleport`). The spread that the
coarse cells leave open at the scales of the cells (2–8° at ×8, where the ensemble is too
narrow on days rougher than the training period: section uk-validation-shift) is set
there, not by the networks below ς*. If those days simply hold more variance than C, a
start from N(m, s² C) with s > 1 (x = m + s B z; the kriging answer for a prior with s²
times the variance) would widen that spread where it falls short, and leave to the
networks below ς* the scales they draw well. s is what a case-adaptive estimate (the
stations' innovations about the coarse field, as ``inflation="auto"`` measures them: λ =
1.08–1.09 on the shifted split, 1.32 on the test week) would set; here fixed values bound
what such an estimate could give, on the validation splits only:

* calm: a prior trained on 2019-03-01..20, scored on 03-22..24 at 00 and 12 UTC (6 fields);
* shifted: a prior trained on 03-12..24, scored on the rougher 03-04..10 at 00 and 12 UTC
  (14 fields).

For each s, a copy of each prior (``--work``) gets its ``gaussian.pt`` (made by ``hdm
gaussian-stats --varsigma-star 0.5604`` if it has none) with the basis B multiplied by s,
and is scored at the ``--factors`` with coarse cells + the 12 benchmark stations
(σ = 0.5 K), MMPS, Heun 25 teleported from ς* = 0.5604, 16 members, no inflation.

    python -m benchmarks uk_teleport_scale --calm runs/calm_bag --shifted runs/shift_bag \\
        --scales 1,1.3 --work runs/teleport_scale

Section ``uk-teleport-scale`` of BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import command_line, parser, write_section
from benchmarks.studies.uk_gaussian_shrinkage import (
    SHIPPED_VARSIGMA,
    SPLITS,
    add_split_arguments,
    split_study_setup,
)
from benchmarks.studies.uk_validation_split import band_label, calibration_cells, score
from benchmarks.uk import BANDS
from hdm.hilbert.checkpoints import load_gaussian, save_gaussian
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics

#: what each scored row prints as it finishes
SUMMARY = ("split", "scale", "factor", "rmse", "crps", "spread_skill", "laplacian_ratio_sea")


def scaled_copy(prior: Path, work: Path, split: str, scale: float) -> Path:
    """A copy of the prior folder ``prior`` in ``work`` whose teleport Gaussian has its
    basis multiplied by ``scale`` (covariance × scale²; the mean and ς* kept)."""
    folder = work / f"{split}_s{scale:g}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(prior, folder, ignore=shutil.ignore_patterns("checkpoint.pt"))
    model = folder / "model.pt"
    stats = load_gaussian(model)
    if stats is None:
        stats, _ = gaussian_statistics(folder, GaussianStatsConfig(varsigma_star=SHIPPED_VARSIGMA))
    save_gaussian(model, dataclasses.replace(stats, basis=stats.basis * scale))
    return folder


HEADER = (
    "| split | s | coarse | RMSE K | fair CRPS | spread–skill | cov. 50 % | cov. 90 % "
    "| power ratio | speckle sea | speckle land | spread–skill by band "
    "|\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(rows: list[dict], priors: dict[str, str]) -> str:
    table = "\n".join(
        f"| {r['split']} | {r['scale']:g} | ×{r['factor']} | {calibration_cells(r)} |" for r in rows
    )
    bands = " / ".join(band_label(lo, hi) for lo, hi in itertools.pairwise(BANDS))
    return f"""## UK t2m: a wider teleport Gaussian, N(m, s² C) at the start (validation splits)

Every member starts at ς* = {SHIPPED_VARSIGMA} from the exact Gaussian posterior under
N(m, s² C) (C the PCA covariance of the training fields; s = 1 is the default of
`hdm downscale`). Calm: `{priors["calm"]}` (trained on 03-01..20), scored on 03-22..24
00/12 UTC; shifted: `{priors["shifted"]}` (trained on 03-12..24), scored on the rougher
03-04..10 00/12 UTC. Coarse cells + 12 stations (σ = 0.5 K), MMPS, Heun 25, 16 members, no
inflation. Speckle: the members' mean squared Laplacian over the truth's, over sea and land.
Spread–skill by band of wavelengths {bands}.

{HEADER}
{table}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_teleport_scale --calm DIR --shifted DIR ...``."""
    p = parser("uk_teleport_scale", __doc__)
    add_split_arguments(p, factors="2,4,8")
    p.add_argument("--scales", default="1,1.3", help="values of s (default 1,1.3)")
    args = p.parse_args(list(argv))
    machine, work, factors = split_study_setup(args)
    priors = {"calm": args.calm, "shifted": args.shifted}
    rows = []
    for scale in (float(s) for s in args.scales.split(",") if s.strip()):
        for split, prior in priors.items():
            folder = scaled_copy(Path(prior), work, split, scale)
            for factor in factors:
                r = score(
                    str(folder),
                    factor=factor,
                    teleport=str(SHIPPED_VARSIGMA),
                    times=SPLITS[split][0],
                )
                r.update(split=split, scale=scale)
                print(json.dumps({k: r[k] for k in SUMMARY}), flush=True)
                rows.append(r)
        # after each scale, so that a long run leaves its finished rows
        write_section(
            args.benchmarks_file,
            "uk-teleport-scale",
            section(rows, priors),
            command=command_line("uk_teleport_scale", argv),
            machine=machine,
        )
    return rows
