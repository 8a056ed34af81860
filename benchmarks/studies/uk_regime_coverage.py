"""Does the spread fall short on rough days because the prior never saw such days?

On the test week (sections uk-evaluation-heun-week, uk-spread-by-time) and on the shifted
validation split the ensemble's spread falls short where the truth's variability below the
coarse cells exceeds that of every training day. Two readings predict the same rows: the
method narrows the posterior on any day (the sampler, the guidance, the teleport
Gaussian), or the prior has learnt the small-scale variability of the days it saw and
nothing rougher. Which one holds decides whether another sampler setting or more data is
the remedy. This study separates them with priors that differ only in the weather of
their training days, scored on the same rough days, never on the test week:

* scored: 2019-03-08 and 03-10, every 3 h (16 fields), the two roughest days of the
  training period (sub-coarse RMS at ×4 0.62 / 0.65 K, against 0.43–0.60 K on every other
  day of 03-01..24); the days beside them (03-07, 03-09, 03-11) are in no prior;
* "rough days" (``data.train_days``): 03-03..06, 03-16..18, 03-23, 03-24, nine of the
  roughest of the rest;
* "calm days": 03-01, 03-02, 03-13..15, 03-19..22, the nine calmest;
* "other days": the 19 days 03-01..06 and 03-12..24 together, the mixture the shipped
  prior's training period holds.

Each is a four-network ensemble of the shipped recipe (``model.ensemble: 4``, r = 2
augmentation, 2,000 steps) with its own normalisation and its own teleport Gaussian (its
training days'), scored at the ``--factors`` with coarse cells + the 12 benchmark
stations (σ = 0.5 K), MMPS, Heun 25 teleported from each of the ``--levels`` (default
0.5604, the shipped level; ``measured``: the level ``hdm gaussian-stats --heldout`` finds
for the prior on 03-08..10, a diagnostic that reads the scored days), 16 members, no
inflation:

    hdm train configs/atmos/uk_t2m.yaml --out runs/rough_days \\
        --set 'data.train_days=[2019-03-03,2019-03-04,...]'     # the days above
    python -m benchmarks uk_regime_coverage --runs runs/rough_days,runs/calm_days,\\
runs/other_days --work runs/regime

If the method were at fault the three would fall short alike; if the data are, the prior
that saw rough days is calibrated on them and the one that saw calm days is not.
``--scored beside`` scores the calmer days beside them instead (03-07, 03-09, 03-11 every
6 h, 12 fields, also in no prior): whether the same priors are too wide there. Sections
``uk-regime-coverage`` and ``uk-regime-coverage-beside`` of BENCHMARKS.md.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.studies.uk_bagged_ensemble import network_runs
from benchmarks.studies.uk_gaussian_shrinkage import SHIPPED_VARSIGMA
from benchmarks.studies.uk_validation_split import band_label, calibration_cells, score
from benchmarks.uk import BANDS, UK, subcoarse_rms_of
from hdm.data.open import open_fields
from hdm.hilbert.checkpoints import export_ensemble, load_checkpoint
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics
from hdm.pipelines.train import ENSEMBLE_DIR

#: the scored fields: the two roughest days of the training period, every 3 h
ROUGH_DAYS = ("2019-03-08", "2019-03-10")
SCORED_TIMES = tuple(f"{day}T{hour:02d}" for day in ROUGH_DAYS for hour in range(0, 24, 3))
#: ``--scored beside``: the calmer days beside them (sub-coarse RMS ×4 0.55 K), every 6 h
BESIDE_DAYS = ("2019-03-07", "2019-03-09", "2019-03-11")
BESIDE_TIMES = tuple(f"{day}T{hour:02d}" for day in BESIDE_DAYS for hour in range(0, 24, 6))
#: what ``--scored`` chooses: (fields, section id, what the section says of them)
SCORED = {
    "roughest": (
        SCORED_TIMES,
        "uk-regime-coverage",
        "the two roughest days of the training period",
    ),
    "beside": (
        BESIDE_TIMES,
        "uk-regime-coverage-beside",
        "the calmer days beside them, 03-07, 03-09 and 03-11",
    ),
}
#: the scored days and the days beside them: in no prior
UNSEEN_DAYS = tuple(f"2019-03-{d:02d}" for d in range(7, 12))
#: the period ``hdm gaussian-stats --heldout`` measures ς* on (03-09 is in no prior either)
HELDOUT = ("2019-03-08", "2019-03-10T23")

#: what each scored row prints as it finishes
SUMMARY = ("prior", "factor", "rmse", "crps", "spread_skill")


def training_days(run: Path) -> list[str]:
    """The calendar days a run's networks trained on (``metadata["train_days"]``); refused
    if they hold a scored day or one beside it (:data:`UNSEEN_DAYS`)."""
    metadata = load_checkpoint(run / ENSEMBLE_DIR / "0" / "model.pt").get("metadata", {})
    days = metadata.get("train_days")
    if not days:
        raise SystemExit(f"{run} was not trained with data.train_days; see the module doc")
    seen = sorted(set(days) & set(UNSEEN_DAYS))
    if seen:
        raise SystemExit(f"{run} trained on {seen[0]}, a scored day or one beside it")
    return list(days)


def roughness(days: Sequence[str] | None = None, times: Sequence[str] = (), factor: int = 4):
    """Grid RMS (K) of truth − bilinear interpolation of its ×``factor`` coarse field: over
    every 6 h of ``days``, or over ``times``."""
    if days is not None:
        times = [f"{day}T{hour:02d}" for day in days for hour in range(0, 24, 6)]
    truth = open_fields(UK.resolved_path(), "t2m", time=list(times))["t2m"].load()
    return subcoarse_rms_of(truth, factor)["grid"]


def ensemble_of(run: Path, work: Path) -> tuple[Path, dict]:
    """The run's networks as one model in ``work/NAME`` with a Gaussian of its own training
    days (``--heldout`` on :data:`HELDOUT`); returns the folder and ``{"measured_varsigma"}``."""
    folders = network_runs(run)
    folder = work / run.name
    folder.mkdir(parents=True, exist_ok=True)
    export_ensemble([f / "model.pt" for f in folders], folder / "model.pt")
    (folder / "config.yaml").write_text((folders[0] / "config.yaml").read_text())
    stats, _ = gaussian_statistics(folder, GaussianStatsConfig(heldout=HELDOUT))
    level = float("nan") if stats.varsigma_star is None else float(stats.varsigma_star)
    return folder, {"measured_varsigma": level, "networks": len(folders)}


HEADER = (
    "| prior | days | sub-coarse RMS ×4 of its days K | ς* measured | ς* used | coarse | RMSE K "
    "| fair CRPS | spread–skill | cov. 50 % | cov. 90 % | power ratio | speckle sea "
    "| speckle land | spread–skill by band |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(rows: list[dict], scored_rms: float, scored: str = "roughest") -> str:
    times, _, what = SCORED[scored]
    table = "\n".join(
        f"| {r['prior']} | {r['n_days']} | {r['train_rms']:.2f} | {r['measured_varsigma']:.2f} "
        f"| {r['level']:.2f} | ×{r['factor']} | {calibration_cells(r)} |"
        for r in rows
    )
    bands = " / ".join(band_label(lo, hi) for lo, hi in itertools.pairwise(BANDS))
    return f"""## UK t2m: priors that saw rough days against priors that saw calm ones

Four-network ensembles of the shipped recipe (r = 2 augmentation, 2,000 steps), each
trained on its own calendar days only (`data.train_days`, its own normalisation and
teleport Gaussian), all scored on the same {len(times)} fields ({times[0]} … {times[-1]}):
{what} (sub-coarse RMS at ×4 of the scored fields {scored_rms:.2f} K). No prior saw
03-07..11 (the two roughest days of the training period, 03-08 and 03-10, and the days
beside them). Rough days:
03-03..06, 03-16..18, 03-23, 03-24; calm days: 03-01, 03-02, 03-13..15, 03-19..22; other
days: 03-01..06 and 03-12..24 (the mixture of the shipped prior's period). Never the
test week. Coarse cells + 12 stations (σ = 0.5 K), MMPS, Heun 25 teleported from "ς* used"
(the shipped level is {SHIPPED_VARSIGMA}), 16 members, no inflation. "ς* measured": the level
`hdm gaussian-stats --heldout` finds for the prior on 03-08..10. Speckle: the members' mean squared
Laplacian over the truth's, over sea and land. Spread–skill by band of wavelengths {bands}.

{HEADER}
{table}
"""


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_regime_coverage --runs RUN,RUN,... --work DIR``."""
    p = parser("uk_regime_coverage", __doc__)
    p.add_argument("--runs", required=True, help="ensemble runs trained with data.train_days")
    p.add_argument("--factors", default="4,8", help="coarse factors (default 4,8)")
    p.add_argument(
        "--scored",
        choices=sorted(SCORED),
        default="roughest",
        help="the fields scored: 03-08/10 every 3 h, or the calmer 03-07/09/11 every 6 h",
    )
    p.add_argument("--work", required=True, help="folder for the ensembles' model folders")
    p.add_argument(
        "--levels",
        default=str(SHIPPED_VARSIGMA),
        help="teleport levels ς*, comma-separated; 'measured': each prior's own ς*",
    )
    args = p.parse_args(list(argv))
    machine = machine_description()
    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    times, section_id, _ = SCORED[args.scored]
    scored_rms = roughness(times=times)
    levels = [v.strip() for v in args.levels.split(",") if v.strip()]
    rows = []
    for run in (Path(r.strip()) for r in args.runs.split(",") if r.strip()):
        days = training_days(run)
        folder, made = ensemble_of(run, Path(args.work))
        prior, train_rms = run.name.replace("_", " "), roughness(days)
        for level, factor in itertools.product(levels, factors):
            used = f"{made['measured_varsigma']:.4f}" if level == "measured" else level
            r = score(str(folder), factor=factor, teleport=used, times=times)
            r.update(prior=prior, n_days=len(days), train_rms=train_rms, **made)
            r.update(level=float(used))
            print(json.dumps({k: r[k] for k in SUMMARY}), flush=True)
            rows.append(r)
        write_section(
            args.benchmarks_file,
            section_id,
            section(rows, scored_rms, args.scored),
            command=command_line("uk_regime_coverage", argv),
            machine=machine,
        )
    if not rows or not np.isfinite([r["spread_skill"] for r in rows]).all():
        raise SystemExit("uk_regime_coverage: a row has no finite spread-skill")
    return rows
