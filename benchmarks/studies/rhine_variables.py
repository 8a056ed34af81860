"""Several variables and static inputs: a joint u10, v10, d2m, sp prior over western Europe.

A capability check, not a skill claim: the shipped Rhine sample is ONE day of ERA5
(2020-01-01, hourly, 45–55 °N, 0–10 °E at 0.25°, 41 × 41). The prior
(``configs/atmos/rhine.yaml``: the four variables jointly, land fraction, orography and
latitude as static inputs, 3,000 steps) is trained on 00–17 UTC (18 fields) and
downscales the 6 test hours 18–23 UTC from

- ×4 coarse fields of every variable (block means of the truth, 1°), and
- station observations of u10 and d2m at the 10 conditioning IGRA2 sites inside the
  box (simulated from the truth with the default station noise: 1 m s⁻¹, 0.5 K),

with the defaults of ``hdm downscale`` (MMPS; 16 members). The ensemble is written as a
CF zarr store with maps (coastlines, borders) of the first and last hour, and scored per
variable by ``hdm evaluate downscale``: RMSE of the mean, fair CRPS, spread–skill, 90 %
coverage, beside bicubic interpolation of the coarse field and kriging of coarse cells
and stations; for u10 and d2m also at the 4 held-out IGRA2 sites.

    python -m benchmarks rhine_variables [--quick] [--checkpoint DIR]

``--checkpoint`` scores an existing prior instead of training one (into
``runs/rhine``; about 5 minutes on 2 cores). ``--quick`` (a 20-step prior, 2 hours, 4
members, 8 steps) is a smoke run; it writes section ``rhine-variables`` too, labelled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.report import PROJECT_ROOT, command_line, machine_description, parser, write_section
from hdm.domains.atmosphere import GRIDDED_DATASETS
from hdm.downscaling.config import EnsembleConfig
from hdm.pipelines.evaluate import evaluate_downscale
from hdm.pipelines.job import run_downscale
from hdm.pipelines.train import train

SECTION = "rhine-variables"
RHINE = GRIDDED_DATASETS["rhine"]
CONFIG = PROJECT_ROOT / "configs/atmos/rhine.yaml"
STATION_VARIABLES = ("u10", "d2m")
HEADER = (
    "| variable | RMSE | bicubic | kriging | best baseline | CRPS | bicubic | kriging "
    "| spread–skill | cov. 90 % | held-out RMSE | kriging |"
    "\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the study; :data:`QUICK` is the smoke run."""

    train_steps: int | None = None  # None: the config's
    times: tuple[str, str] = ("2020-01-01T18", "2020-01-01T23")
    members: int = 16
    steps: int = EnsembleConfig().steps  # the default sampler's default steps


FULL = StudyConfig()
QUICK = StudyConfig(train_steps=20, times=("2020-01-01T18", "2020-01-01T19"), members=4, steps=8)


def truth_glob() -> str:
    """The shipped Rhine files (one per variable), as one glob."""
    paths = [Path(p) for p in RHINE.resolved_path()]
    return str(paths[0].parent / "ERA5_2020-01-01_*.nc")


def trained_prior(study: StudyConfig, out: Path) -> tuple[Path, float]:
    """Train the Rhine prior into ``out`` (the config's steps unless the study says)."""
    overrides = [] if study.train_steps is None else [f"optim.steps={study.train_steps}"]
    overrides.append(f"optim.checkpoint_every={study.train_steps or 500}")
    t0 = time.perf_counter()
    train(CONFIG, out, overrides=overrides, overwrite=True, progress=False)  # a fresh prior
    return out, time.perf_counter() - t0


def run(study: StudyConfig, checkpoint: Path | None, work: Path) -> dict:
    """Train (unless given a prior), downscale the test hours, evaluate: the report."""
    train_s = None
    if checkpoint is None:
        checkpoint, train_s = trained_prior(study, work / "rhine_prior")
    out = work / "rhine_test.zarr"
    summary = run_downscale(
        str(checkpoint),
        out,
        overwrite=True,
        progress=False,
        truth=truth_glob(),
        factor=4,
        simulate_stations=",".join(RHINE.conditioning_stations),
        station_variables=list(STATION_VARIABLES),
        members=study.members,
        steps=study.steps,
        times=study.times,
    )
    report = evaluate_downscale(
        out,
        truth_glob(),
        heldout=",".join(RHINE.heldout_stations),
        plots_prefix=work / "rhine_scores",
    )
    return {
        "checkpoint": str(checkpoint),
        "train_s": train_s,
        "out": str(out),
        "pngs": [str(p) for p in summary["pngs"]],
        "wall_s": summary.get("wall_time_s"),
        "report": report,
    }


def _cell(report: dict, key: str) -> str:
    value = report.get(key)
    return "–" if value is None or not np.isfinite(value) else f"{value:.3g}"


def _best_baseline(report: dict) -> str:
    """The lowest RMSE among the baselines the report holds, and its name."""
    scores = {
        name: report[f"rmse_{name}"]
        for name in ("bilinear", "bicubic", "kriging")
        if report.get(f"rmse_{name}") is not None and np.isfinite(report[f"rmse_{name}"])
    }
    if not scores:
        return "–"
    name = min(scores, key=scores.get)
    return f"{scores[name]:.3g} {name}"


def section_body(result: dict, study: StudyConfig) -> str:
    """Section ``rhine-variables``: one row per variable."""
    rows = []
    for var, rep in result["report"]["variables"].items():
        units = rep.get("units", "")
        rows.append(
            f"| {var} ({units}) | {_cell(rep, 'rmse')} | {_cell(rep, 'rmse_bicubic')} | "
            f"{_cell(rep, 'rmse_kriging')} | {_best_baseline(rep)} | {_cell(rep, 'crps')} | "
            f"{_cell(rep, 'crps_bicubic')} | "
            f"{_cell(rep, 'crps_kriging')} | {_cell(rep, 'spread_skill')} | "
            f"{_cell(rep, 'coverage90')} | {_cell(rep, 'heldout_rmse')} | "
            f"{_cell(rep, 'heldout_rmse_kriging')} |"
        )
    quick = " (QUICK smoke run: sizes below, not a result)" if study != FULL else ""
    trained = (
        f"trained here in {result['train_s']:.0f} s"
        if result["train_s"]
        else f"`{result['checkpoint']}`"
    )
    maps = f"{len(result['pngs'])} maps (`rhine_test_VAR_TIME.png`: mean, std, members)"
    return f"""## Several variables with static inputs: Rhine box, 2020-01-01{quick}

A capability check on ONE day of data (module doc of `benchmarks/studies/rhine_variables.py`):
a joint prior of u10, v10, d2m and sp with land fraction, orography and latitude as static
inputs ({trained}), trained on 00–17 UTC, downscales {study.times[0]}..{study.times[1]} from ×4
coarse fields of every variable plus u10 and d2m at the 10 conditioning IGRA2 sites (MMPS,
{study.members} members, {study.steps} steps of the default sampler). Held-out: the truth
at the 4 other IGRA2 sites. Bicubic's CRPS is its MAE. Kriging (Matérn kernel fitted on the
training hours) starts from the training hours' mean FIELD, so it knows where the Alps are
before it sees an observation; the network has to learn that from the orography input and
18 fields. Output: a CF zarr store with every variable; {maps}.

{HEADER}
{chr(10).join(rows)}
"""


def main(argv: Sequence[str] = ()) -> dict:
    p = parser("rhine_variables", __doc__)
    p.add_argument("--quick", action="store_true", help="a smoke run (minutes)")
    p.add_argument("--checkpoint", type=Path, help="score this prior instead of training one")
    p.add_argument("--work", type=Path, default=PROJECT_ROOT / "runs", help="output folder")
    args = p.parse_args(list(argv))
    study = QUICK if args.quick else FULL
    args.work.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    result = run(study, args.checkpoint, args.work)
    write_section(
        args.benchmarks_file,
        SECTION,
        section_body(result, study),
        command=command_line("rhine_variables", argv),
        machine=machine,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "report"}, default=str))
    return result
