"""One network against an ensemble of K networks (``model.ensemble``) on both UK t2m
validation splits.

A prior of K networks trained with seeds s, s + 1, ... draws member m of an ensemble with
network m mod K (:class:`hdm.hilbert.networks.NetworkEnsemble`): the spread then holds the
networks' disagreement on days none of them saw, and the ensemble mean averages their
errors. Compared here, never on the test week, on the two validation splits:

* calm: priors trained on 2019-03-01..20, scored on 03-22..24 at 00 and 12 UTC (6 fields);
* shifted: priors trained on 03-12..24, scored on the rougher 03-04..10 at 00 and 12 UTC
  (14 fields, section uk-validation-shift).

``--calm`` and ``--shifted`` each name the K training runs of one recipe (``hdm train
configs/atmos/uk_t2m.yaml --set data.train_start=... --set data.train_end=... --set
optim.seed=k``), the first the single network. The ensemble is written into ``--work``
with :func:`hdm.hilbert.checkpoints.export_ensemble` (what ``model.ensemble: K`` trains),
and gets its Gaussian with ``hdm gaussian-stats --heldout`` on the split's validation days:
the statistics of every training field, and the level ς* it would choose there. Both are
scored at the ``--factors`` with coarse cells + the 12 benchmark stations (σ = 0.5 K),
MMPS, Heun 25 teleported from ς* = 0.5604 (the shipped level, so the rows differ in the
networks only), 16 members, no inflation.

    python -m benchmarks uk_network_ensemble \\
        --calm runs/uk_val_2k_a20s4,runs/uk_val_2k_a20s4_seed1,... \\
        --shifted runs/uk_val_shift2k_a20s4,runs/uk_val_shift2k_a20s4_seed1,... \\
        --work runs/ensemble

Section ``uk-network-ensemble`` of BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.uk_gaussian_shrinkage import SHIPPED_VARSIGMA, SPLITS
from benchmarks.studies.uk_validation_split import band_label, calibration_cells, score
from benchmarks.uk import BANDS
from hdm.hilbert.checkpoints import export_ensemble
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics

#: what each scored row prints as it finishes
SUMMARY = ("split", "networks", "factor", "rmse", "crps", "spread_skill")


def ensemble_of(runs: Sequence[Path], work: Path, split: str) -> tuple[Path, dict]:
    """The K runs as one model in ``work/{split}_ens{K}`` (model.pt, the first run's
    config.yaml, a Gaussian made with ``--heldout`` on the split's validation days);
    returns the folder and ``{"measured_varsigma"}``."""
    folder = work / f"{split}_ens{len(runs)}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    export_ensemble([run / "model.pt" for run in runs], folder / "model.pt")
    shutil.copy(runs[0] / "config.yaml", folder / "config.yaml")
    stats, _ = gaussian_statistics(folder, GaussianStatsConfig(heldout=SPLITS[split][1]))
    level = float("nan") if stats.varsigma_star is None else float(stats.varsigma_star)
    return folder, {"measured_varsigma": level}


def _level(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"


HEADER = (
    "| split | networks | ς* measured | coarse | RMSE K | fair CRPS | spread–skill "
    "| cov. 50 % | cov. 90 % | power ratio | speckle sea | speckle land | spread–skill by band "
    "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(rows: list[dict]) -> str:
    table = "\n".join(
        f"| {r['split']} | {r['networks']} | {_level(r['measured_varsigma'])} | ×{r['factor']} | "
        f"{calibration_cells(r)} |"
        for r in rows
    )
    bands = " / ".join(band_label(lo, hi) for lo, hi in itertools.pairwise(BANDS))
    return f"""## UK t2m: one network against an ensemble of networks (validation splits)

Priors of the shipped recipe (r = 2 augmentation, 2,000 steps) trained with seeds 0, 1, ...;
"1": the seed-0 network alone; "K": the K networks as one model (`model.ensemble: K`,
member m drawn by network m mod K). Calm: trained on 03-01..20, scored on 03-22..24 00/12
UTC; shifted: trained on 03-12..24, scored on the rougher 03-04..10 00/12 UTC. Coarse cells
+ 12 stations (σ = 0.5 K), MMPS, Heun 25 teleported from ς* = {SHIPPED_VARSIGMA}, 16
members, no inflation. "ς* measured": the level `hdm gaussian-stats --heldout` finds for the
model on the split's validation days (the scores keep {SHIPPED_VARSIGMA}; "–": the single
network's Gaussian was made with that level given). Speckle: the members' mean squared
Laplacian over the truth's, over sea and land. Spread–skill by band of wavelengths {bands}.

{HEADER}
{table}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_network_ensemble --calm RUNS --shifted RUNS --work DIR``."""
    p = parser("uk_network_ensemble", __doc__)
    p.add_argument("--calm", required=True, help="runs trained on 03-01..20, comma-separated")
    p.add_argument("--shifted", required=True, help="runs trained on 03-12..24, comma-separated")
    p.add_argument("--factors", default="4,8", help="coarse factors (default 4,8)")
    p.add_argument("--work", required=True, help="folder for the ensembles")
    args = p.parse_args(list(argv))
    machine = machine_description()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    rows = []
    for split, listed in (("calm", args.calm), ("shifted", args.shifted)):
        runs = [Path(r.strip()) for r in listed.split(",") if r.strip()]
        if len(runs) < 2:
            p.error(f"--{split} needs the runs of at least 2 seeds, got {listed!r}")
        folder, made = ensemble_of(runs, work, split)
        for model, networks, extra in (
            (runs[0], 1, {"measured_varsigma": float("nan")}),
            (folder, len(runs), made),
        ):
            for factor in factors:
                r = score(
                    str(model), factor=factor, teleport=str(SHIPPED_VARSIGMA),
                    times=SPLITS[split][0],
                )  # fmt: skip
                r.update(split=split, networks=networks, **extra)
                print(json.dumps({k: r[k] for k in SUMMARY}), flush=True)
                rows.append(r)
        write_section(
            args.benchmarks_file,
            "uk-network-ensemble",
            section(rows),
            command=command_line("uk_network_ensemble", argv),
            machine=machine,
        )
    return rows
