"""``python -m benchmarks functional``: the functional benchmark tables in BENCHMARKS.md.

Three tables in section ``functional`` (``functional-quick`` with ``--quick``):

1. Per dataset (Quadratic, Melbourne, ItalyPowerDemand, GRF) and per noise (the shipped
   Q model; a white-noise ablation Q = I trained with the same config and budget):
   training wall time, rigorous power with its null calibration, HDM-compatible power
   beside HDM's published number, MMD², mean and covariance errors beside their
   real-vs-real floors.
2. Sampler efficiency on Quadratic: NFE, wall time per 1,000 curves and the same
   metrics for each sampler, against 1,000-step Euler–Maruyama.
3. Discretisation invariance: the Quadratic model sampled on its 100-point training grid
   and on the 4× refined grid (397 points, every 4th is a training point): mean and
   pointwise variance at the shared points, differences in units of their Monte-Carlo
   standard errors.

The shipped models (:func:`hdm.domains.shipped.shipped_checkpoint`) are used as they are,
with the training time recorded when they were made, unless ``--retrain``; ablations are
trained into the work folder (and reused on a rerun). ``--quick`` trains tiny models for a
smoke run and labels its tables as such.

    python -m benchmarks functional [--quick] [--work DIR] [--retrain]
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from hdm.domains.functional import DATASETS
from hdm.domains.shipped import ShippedDataError, shipped_checkpoint
from hdm.pipelines.config import TrainRunConfig, load_train_config
from hdm.pipelines.evaluate import evaluate_functional
from hdm.pipelines.sample import sample, write_netcdf
from hdm.pipelines.train import run_training

__all__ = ["invariance_statistics", "main", "run_functional_benchmark"]

log = logging.getLogger("hdm")

PUBLISHED_HDM_POWER = {"quadratic": "4.2", "melbourne": "0.2", "italy_power": "3.6 (Gridwatch)"}
QUICK_OVERRIDES = ("optim.steps=20", "optim.checkpoint_every=20", "optim.warmup_steps=5")
NOISES = ("Q", "white")

DATASET_HEADER = [
    "dataset",
    "noise",
    "training (steps)",
    "power rigorous % [95% CI]",
    "null calibration %",
    "power HDM-compatible",
    "MMD² / floor",
    "mean rel. L² / floor",
    "cov rel. HS / floor",
    "HDM published power",
]
SAMPLER_HEADER = [
    "sampler",
    "steps",
    "NFE",
    "wall s / 1,000 curves",
    "power rigorous %",
    "null %",
    "power HDM-compatible",
    "MMD² / floor",
    "mean / floor",
    "cov / floor",
]
INVARIANCE_HEADER = [
    "model",
    "grids",
    "max |Δ mean| / SE",
    "max |Δ var| / SE",
    "mean |Δ var| / var",
    "curves",
]


@dataclass
class Model:
    """A model of the benchmark: its ``model.pt``, training config and summary."""

    path: Path
    cfg: TrainRunConfig
    summary: dict


def _config_path(name: str) -> Path:
    return PROJECT_ROOT / "configs" / "functional" / f"{name}.yaml"


def _shipped(name: str) -> Path | None:
    """The shipped ``model.pt`` of dataset ``name``, None when it is not there."""
    try:
        return shipped_checkpoint(name)
    except ShippedDataError:
        return None


def _train_or_reuse(cfg: TrainRunConfig, out: Path, quick: bool) -> dict:
    log_path = out / "train_log.json"
    if log_path.exists() and (out / "model.pt").exists():
        return json.loads(log_path.read_text())
    return run_training(cfg, out, resume=True, progress=not quick)


def model_for(name: str, noise: str, work: Path, *, quick: bool, retrain: bool) -> Model:
    """The shipped Q model of ``name`` (when it is there and neither ``quick`` nor
    ``retrain``), else one trained into ``work/NAME-NOISE`` (reused when already there)."""
    overrides = list(QUICK_OVERRIDES) if quick else []
    if noise == "white":
        overrides.append("noise.kind=white")
    cfg = load_train_config(_config_path(name), overrides)
    shipped = _shipped(name)
    if noise == "Q" and not quick and not retrain and shipped is not None:
        summary = json.loads((shipped.parent / "train_log.json").read_text())
        return Model(shipped, cfg, summary)
    out = work / f"{name}-{noise}"
    cfg = replace(cfg, name=f"{name}-{noise}")
    return Model(out / "model.pt", cfg, _train_or_reuse(cfg, out, quick))


def _fmt_ci(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_ci"]
    return f"{r[key]:.1f} [{lo:.0f}, {hi:.0f}]"


def _metrics_cells(r: dict) -> list[str]:
    return [
        _fmt_ci(r, "power_rigorous"),
        _fmt_ci(r, "power_null"),
        f"{r['power_hdm']:.1f} ± {r['power_hdm_pm']:.1f}",
        f"{r['mmd2']:.1e} / {r['mmd2_floor']:.1e}",
        f"{r['mean_rel_l2']:.3f} / {r['mean_rel_l2_floor']:.3f}",
        f"{r['cov_rel_hs']:.3f} / {r['cov_rel_hs_floor']:.3f}",
    ]


def _noise_description(model: Model, noise: str) -> str:
    return "Q = I (white)" if noise == "white" else model.cfg.noise.build().describe()


def dataset_rows(
    models: dict[tuple[str, str], Model], work: Path, n: int, quick: bool
) -> tuple[list[list[str]], dict]:
    """Table 1: ``n`` curves of every model (its config's sampler and steps), scored
    against its dataset; returns the rows and the metric reports by (dataset, noise)."""
    rows, reports = [], {}
    for (name, noise), model in models.items():
        ds = sample(
            model.path,
            n=n,
            sampler=model.cfg.sample.sampler,
            steps=model.cfg.sample.steps,
            seed=1,
            progress=False,
        )
        samples = write_netcdf(ds, work / f"{name}-{noise}-samples.nc")
        r = evaluate_functional(name, samples, quick=quick)
        reports[(name, noise)] = r
        rows.append(
            [
                name,
                _noise_description(model, noise),
                f"{model.summary['wall_time_s'] / 60:.1f} min ({model.summary['steps']})",
                *_metrics_cells(r),
                PUBLISHED_HDM_POWER.get(name, "–"),
            ]
        )
        log.info("benchmark %s %s: %s", name, noise, rows[-1])
    return rows, reports


def sampler_rows(model: Model, work: Path, n: int, quick: bool) -> list[list[str]]:
    """Table 2: each sampler on the Quadratic Q model, ``n`` curves."""
    specs = (
        [("em", 50), ("pc", 25), ("heun", 5), ("dpm2m", 5)]
        if quick
        else [("em", 1000), ("pc", 500), ("heun", 25), ("heun", 50), ("dpm2m", 20), ("dpm2m", 49)]
    )
    rows = []
    for sampler, steps in specs:
        t0 = time.perf_counter()
        ds = sample(model.path, n=n, sampler=sampler, steps=steps, seed=2, progress=False)
        wall = time.perf_counter() - t0
        path = write_netcdf(ds, work / f"quadratic-{sampler}-{steps}.nc")
        r = evaluate_functional("quadratic", path, quick=quick)
        row = [sampler, str(steps), str(ds.attrs["nfe"]), f"{wall * 1000 / n:.0f}"]
        rows.append(row + _metrics_cells(r))
    return rows


def invariance_rows(q_model: Model, white: Model, n: int) -> list[list[str]]:
    """Table 3: each Quadratic model on its training grid and on finer grids (the Q model
    also on 400 points, interpolated to the training points), ``n`` + ``n`` curves."""
    rows = []
    labelled = (("Q = " + _noise_description(q_model, "Q"), q_model), ("Q = I (white)", white))
    for label, model in labelled:
        coarse = sample(model.path, n=n, sampler="heun", steps=25, seed=3, progress=False)
        x_train = coarse["x"].values
        cases = [(397, "4× refined, shared points"), (400, "400 points, interpolated")]
        for points, how in cases[:1] if model is white else cases:
            fine_ds = sample(
                model.path, n=n, sampler="heun", steps=25, seed=4, points=points, progress=False
            )
            fine = np.stack(
                [np.interp(x_train, fine_ds["x"].values, row) for row in fine_ds["y"].values]
            )
            inv = invariance_statistics(coarse["y"].values, fine)
            rows.append(
                [
                    label,
                    f"100 vs {points} ({how})",
                    f"{inv['max_mean_z']:.2f}",
                    f"{inv['max_var_z']:.2f}",
                    f"{inv['mean_rel_var']:.3f}",
                    f"{n} + {n}",
                ]
            )
    return rows


def format_functional(
    tables: tuple[str, str, str], *, n: int, n_sampler: int, sampling: str, quick: bool
) -> str:
    """The section: heading, the protocol, the three tables (command, machine and date
    are added by :func:`benchmarks.report.write_section`)."""
    label = " (QUICK smoke run: tiny models, not results)" if quick else ""
    datasets, samplers, invariance = tables
    return f"""## Functional benchmark{label}

Generated: {n} curves per model, {sampling}.
Rigorous power: equal sizes per side, random subsets, seeded permutations, α = 5%; the
null calibration is the same test with real held-out curves (≈ 5% when calibrated).
Floors are the same errors for real held-out curves against the test curves.
HDM-compatible power: 10 vs 10 chunks, 30 repeats (SCIENCE.md §5); lower is better,
but at this size even a poor generator scores low.

{datasets}

### Sampler efficiency (Quadratic, shipped Q model)

{n_sampler} curves per sampler (wall time scaled to 1,000 curves); the same metrics.

{samplers}

### Discretisation invariance (Quadratic)

Mean and pointwise variance of the samples at the 100 training points (the fine samples
at the shared points, or linearly interpolated from 400 points); Δ in units of the
Monte-Carlo standard error of the difference (max |z| ≲ 3.5 expected over 100 points
when the two agree). The white-noise model shows what Q buys: on a finer grid its
noise is a different (rougher) object than the one it was trained on.

{invariance}
"""


def run_functional_benchmark(
    *,
    quick: bool,
    work: Path,
    benchmarks_file: Path,
    retrain: bool = False,
    command: str | None = None,
) -> Path:
    """Train (or reuse) the models, fill the three tables and write section ``functional``
    (``functional-quick`` with ``quick``) of ``benchmarks_file``; the metric reports go to
    ``work/functional_reports.json``. ``command``: the command line to record (default:
    this process's). Returns ``benchmarks_file``."""
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    n = 200 if quick else 1000
    n_sampler = 200 if quick else 500  # 1,000-NFE samplers on 1,000 curves take ~15 min
    n_inv = 400 if quick else 2000
    models = {
        (name, noise): model_for(name, noise, work, quick=quick, retrain=retrain)
        for name in DATASETS
        for noise in NOISES
    }
    rows, reports = dataset_rows(models, work, n, quick)
    q_model = models[("quadratic", "Q")]
    tables = (
        markdown_table(DATASET_HEADER, rows),
        markdown_table(SAMPLER_HEADER, sampler_rows(q_model, work, n_sampler, quick)),
        markdown_table(
            INVARIANCE_HEADER, invariance_rows(q_model, models[("quadratic", "white")], n_inv)
        ),
    )
    settings = sorted({(m.cfg.sample.sampler, m.cfg.sample.steps) for m in models.values()})
    sampling = "; ".join(f"{s} sampler with {k} steps" for s, k in settings)
    body = format_functional(tables, n=n, n_sampler=n_sampler, sampling=sampling, quick=quick)
    reports_path = work / "functional_reports.json"
    reports_path.write_text(json.dumps({f"{k[0]}-{k[1]}": v for k, v in reports.items()}, indent=1))
    section = "functional" + ("-quick" if quick else "")
    return write_section(benchmarks_file, section, body, command=command, machine=machine)


def invariance_statistics(a: np.ndarray, b: np.ndarray) -> dict:
    """Compare mean and pointwise variance of two independent sample sets (n, P)."""
    na, nb = len(a), len(b)
    se_mean = np.sqrt(a.var(0, ddof=1) / na + b.var(0, ddof=1) / nb)
    z_mean = np.abs(a.mean(0) - b.mean(0)) / se_mean

    def var_se(x):
        m4 = ((x - x.mean(0)) ** 4).mean(0)
        v = x.var(0, ddof=1)
        return np.sqrt(np.maximum(m4 - v**2 * (len(x) - 3) / (len(x) - 1), 1e-300) / len(x))

    z_var = np.abs(a.var(0, ddof=1) - b.var(0, ddof=1)) / np.sqrt(var_se(a) ** 2 + var_se(b) ** 2)
    rel = np.abs(a.var(0) - b.var(0)) / a.var(0)
    return {
        "max_mean_z": float(z_mean.max()),
        "max_var_z": float(z_var.max()),
        "mean_rel_var": float(rel.mean()),
    }


def main(argv: Sequence[str] = ()) -> Path:
    """``python -m benchmarks functional [--quick] [--work DIR] [--retrain]``."""
    p = parser("functional", __doc__, quick="tiny models, a smoke run (a few minutes)")
    p.add_argument(
        "--work",
        type=Path,
        default=PROJECT_ROOT / "runs" / "benchmark-functional",
        help="work folder: ablation models, samples, reports (default runs/benchmark-functional)",
    )
    p.add_argument(
        "--retrain", action="store_true", help="retrain the shipped models too, not only ablations"
    )
    args = p.parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    path = run_functional_benchmark(
        quick=args.quick,
        work=args.work,
        benchmarks_file=args.benchmarks_file,
        retrain=args.retrain,
        command=command_line("functional", argv),
    )
    print(f"benchmark tables written to {path}")
    return path
