"""Networks trained on bootstrap resamples of the training days (bagging) against networks
that differ in their seed only, as one ensemble prior, on both UK t2m validation splits.

An ensemble of K networks (``model.ensemble: K``) draws member m with network m mod K
(:class:`hdm.hilbert.networks.NetworkEnsemble`). With seeds alone the networks see the same
days and disagree little about days unlike them (section uk-network-ensemble). With
``data.bootstrap_days`` network k trains on D of the period's D days drawn with
replacement (seed s + k; about D/e days left out), so the networks disagree where the days
do: the spread of the members should then grow on days unlike the training days and stay
on days like them. Compared here, never on the test week:

* calm: priors trained on 2019-03-01..20, scored on 03-22..24 at 00 and 12 UTC (6 fields);
* shifted: priors trained on 03-12..24, scored on the rougher 03-04..10 at 00 and 12 UTC
  (14 fields, section uk-validation-shift).

``--calm`` and ``--shifted`` name the folders of two ``hdm train`` runs each (a bagged
ensemble and, optionally after a comma, a seed ensemble of the same recipe); each is
scored at the ``--factors`` with coarse cells + the 12 benchmark stations (σ = 0.5 K),
MMPS, Heun 25 teleported from each of the ``--levels`` ς* (default 0.5604, the shipped
level), 16 members, no inflation, its Gaussian made with ``hdm gaussian-stats
--heldout`` on the split's validation days (every training field once, whatever the
networks' resamples):

    for split in "calm 2019-03-01T00 2019-03-20T23" "shifted 2019-03-12T00 2019-03-24T23"; do
      set -- $split
      hdm train configs/atmos/uk_t2m.yaml --out runs/${1}_bag --set data.train_start=$2 \\
        --set data.train_end=$3 --set data.bootstrap_days=true
    done
    python -m benchmarks uk_bagged_ensemble --calm runs/calm_bag --shifted runs/shift_bag \\
        --work runs/bagging --levels 0.5604,0.91

Section ``uk-bagged-ensemble`` of BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.uk_gaussian_shrinkage import SHIPPED_VARSIGMA, SPLITS
from benchmarks.studies.uk_network_ensemble import ensemble_of
from benchmarks.studies.uk_validation_split import band_label, calibration_cells, score
from benchmarks.uk import BANDS
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.pipelines.train import ENSEMBLE_DIR

#: what each scored row prints as it finishes
SUMMARY = ("split", "recipe", "level", "factor", "rmse", "crps", "spread_skill")


def network_runs(run: Path) -> list[Path]:
    """The folders of the K networks of an ensemble run (``OUT/networks/k``, in order)."""
    folders = sorted((run / ENSEMBLE_DIR).glob("*"), key=lambda f: int(f.name))
    if len(folders) < 2:
        raise SystemExit(f"{run} holds no ensemble of networks ({run / ENSEMBLE_DIR}/0, 1, ...)")
    return folders


def recipe_of(folders: Sequence[Path]) -> tuple[str, str]:
    """("bagged days" or "seeds", the distinct days each network saw / the period's days)."""
    counts, total = [], None
    for folder in folders:
        metadata = load_checkpoint(folder / "model.pt").get("metadata", {})
        drawn = metadata.get("bootstrap_days")
        if drawn is None:
            return "seeds", "all"
        counts.append(len(set(drawn["days"])))
        total = len(drawn["days"])
    return "bagged days", f"{'/'.join(str(c) for c in counts)} of {total}"


HEADER = (
    "| split | networks | days each network saw | ς* measured | ς* used | coarse | RMSE K "
    "| fair CRPS | spread–skill | cov. 50 % | cov. 90 % | power ratio | speckle sea "
    "| speckle land | spread–skill by band |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(rows: list[dict]) -> str:
    table = "\n".join(
        f"| {r['split']} | {r['networks']} × {r['recipe']} | {r['days']} | "
        f"{r['measured_varsigma']:.2f} | {r['level']} | ×{r['factor']} | {calibration_cells(r)} |"
        for r in rows
    )
    bands = " / ".join(band_label(lo, hi) for lo, hi in itertools.pairwise(BANDS))
    return f"""## UK t2m: networks trained on resampled days (bagging), validation splits

Ensemble priors of the shipped recipe (r = 2 augmentation, 2,000 steps, `model.ensemble`
networks, member m drawn by network m mod K): "seeds", networks that differ in
`optim.seed` only; "bagged days", `data.bootstrap_days: true` (network k trained on the
period's D days drawn D times with replacement, seed k; "days each network saw": the
distinct days of each). Calm: trained on 03-01..20, scored on 03-22..24 00/12 UTC;
shifted: trained on 03-12..24, scored on the rougher 03-04..10 00/12 UTC. Coarse cells + 12
stations (σ = 0.5 K), MMPS, Heun 25 teleported from "ς* used" (the shipped level is
{SHIPPED_VARSIGMA}), 16 members, no inflation. "ς* measured": the level `hdm gaussian-stats
--heldout` finds for the ensemble on the split's validation days. Speckle: the
members' mean squared Laplacian over the truth's, over sea and land. Spread–skill by band
of wavelengths {bands}.

{HEADER}
{table}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_bagged_ensemble --calm RUNS --shifted RUNS --work DIR``."""
    p = parser("uk_bagged_ensemble", __doc__)
    p.add_argument("--calm", required=True, help="ensemble runs trained on 03-01..20")
    p.add_argument("--shifted", required=True, help="ensemble runs trained on 03-12..24")
    p.add_argument("--factors", default="4,8", help="coarse factors (default 4,8)")
    p.add_argument("--work", required=True, help="folder for the ensembles' model folders")
    p.add_argument(
        "--levels", default=str(SHIPPED_VARSIGMA), help="teleport levels ς*, comma-separated"
    )
    args = p.parse_args(list(argv))
    machine = machine_description()
    work = Path(args.work)
    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    levels = [level.strip() for level in args.levels.split(",") if level.strip()]
    rows = []
    for split, listed in (("calm", args.calm), ("shifted", args.shifted)):
        for run in (Path(r.strip()) for r in listed.split(",") if r.strip()):
            folders = network_runs(run)
            recipe, days = recipe_of(folders)
            folder, made = ensemble_of(folders, work / run.name, split)
            for level, factor in itertools.product(levels, factors):
                r = score(str(folder), factor=factor, teleport=level, times=SPLITS[split][0])
                r.update(split=split, recipe=recipe, networks=len(folders), days=days, **made)
                r.update(level=level)
                print(json.dumps({k: r[k] for k in SUMMARY}), flush=True)
                rows.append(r)
            write_section(
                args.benchmarks_file,
                "uk-bagged-ensemble",
                section(rows),
                command=command_line("uk_bagged_ensemble", argv),
                machine=machine,
            )
    return rows
