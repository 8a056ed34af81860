"""``hdm benchmark functional``: the functional benchmark tables in BENCHMARKS.md.

Three tables, each with the command, the machine and the date:

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

The shipped models (``data/checkpoints/NAME/model.pt``) are used as they are, with the
training time recorded when they were made, unless ``--retrain``; ablations are trained
into the work folder (and reused on a rerun). ``--quick`` trains tiny models for a smoke
run and labels its tables as such.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hdm.data.benchmark import write_section
from hdm.pipelines.config import load_train_config
from hdm.pipelines.evaluate import evaluate_functional
from hdm.pipelines.sample import sample, write_netcdf
from hdm.pipelines.train import run_training

log = logging.getLogger("hdm")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("quadratic", "melbourne", "italy_power", "grf")
PUBLISHED_HDM_POWER = {"quadratic": "4.2", "melbourne": "0.2", "italy_power": "3.6 (Gridwatch)"}


def machine_description() -> str:
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} cores{mem}, {platform.system()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


def _train_or_reuse(cfg, out: Path, quick: bool) -> dict:
    log_path = out / "train_log.json"
    if log_path.exists() and (out / "model.pt").exists():
        return json.loads(log_path.read_text())
    return run_training(cfg, out, resume=True, progress=not quick)


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


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run_functional_benchmark(
    *, quick: bool, work: Path, benchmarks_file: Path, retrain: bool = False
) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    n = 200 if quick else 1000
    overrides_quick = ["optim.steps=20", "optim.checkpoint_every=20", "optim.warmup_steps=5"]
    command = (
        "hdm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if sys.argv[1:]
        else ("hdm benchmark functional" + (" --quick" if quick else ""))
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_description()

    rows, reports = [], {}
    for name in DATASETS:
        config_path = PROJECT_ROOT / "configs" / "functional" / f"{name}.yaml"
        for noise in ("Q", "white"):
            overrides = list(overrides_quick) if quick else []
            if noise == "white":
                overrides.append("noise.kind=white")
            cfg = load_train_config(config_path, overrides)
            shipped = PROJECT_ROOT / "data" / "checkpoints" / name
            if noise == "Q" and not quick and not retrain and (shipped / "model.pt").exists():
                out = shipped
                summary = json.loads((shipped / "train_log.json").read_text())
            else:
                out = work / f"{name}-{noise}"
                cfg = replace(cfg, name=f"{name}-{noise}")
                summary = _train_or_reuse(cfg, out, quick)
            samples = work / f"{name}-{noise}-samples.nc"
            ds = sample(
                out / "model.pt",
                n=n,
                sampler=cfg.sample.sampler,
                steps=cfg.sample.steps,
                seed=1,
                progress=False,
            )
            write_netcdf(ds, samples)
            r = evaluate_functional(name, samples, quick=quick)
            reports[(name, noise)] = r
            q_desc = "Q = I (white)" if noise == "white" else cfg.noise.build().describe()
            rows.append(
                [
                    name,
                    q_desc,
                    f"{summary['wall_time_s'] / 60:.1f} min ({summary['steps']})",
                    *_metrics_cells(r),
                    PUBLISHED_HDM_POWER.get(name, "–"),
                ]
            )
            log.info("benchmark %s %s: %s", name, noise, rows[-1])
    header = [
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
    table1 = _table(header, rows)

    # Sampler efficiency on Quadratic.
    qmodel = work / "quadratic-Q" if quick else PROJECT_ROOT / "data/checkpoints/quadratic"
    qdesc = load_train_config(PROJECT_ROOT / "configs/functional/quadratic.yaml").noise.build()
    qdesc = qdesc.describe()
    if retrain and not quick:
        qmodel = work / "quadratic-Q"
    sampler_specs = (
        [("em", 50), ("pc", 25), ("heun", 5), ("dpm2m", 5)]
        if quick
        else [("em", 1000), ("pc", 500), ("heun", 25), ("heun", 50), ("dpm2m", 20), ("dpm2m", 49)]
    )
    n_sampler = 200 if quick else 500  # 1,000-NFE samplers on 1,000 curves take ~15 min
    srows = []
    for sampler, steps in sampler_specs:
        t0 = time.perf_counter()
        ds = sample(
            qmodel / "model.pt", n=n_sampler, sampler=sampler, steps=steps, seed=2, progress=False
        )
        wall = time.perf_counter() - t0
        path = write_netcdf(ds, work / f"quadratic-{sampler}-{steps}.nc")
        r = evaluate_functional("quadratic", path, quick=quick)
        srows.append(
            [
                sampler,
                str(steps),
                str(ds.attrs["nfe"]),
                f"{wall * 1000 / n_sampler:.0f}",
                *_metrics_cells(r),
            ]
        )
    table2 = _table(
        [
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
        ],
        srows,
    )

    # Discretisation invariance: Q model and white-noise ablation, 4x refined and 400 points.
    n_inv = 400 if quick else 2000
    white = work / "quadratic-white"
    inv_rows = []
    for label_model, folder in (("Q = " + qdesc, qmodel), ("Q = I (white)", white)):
        coarse_ds = sample(
            folder / "model.pt", n=n_inv, sampler="heun", steps=25, seed=3, progress=False
        )
        x_train = coarse_ds["x"].values
        cases = [(397, "4× refined, shared points"), (400, "400 points, interpolated")]
        if folder == white:
            cases = cases[:1]
        for points, how in cases:
            fine_ds = sample(
                folder / "model.pt",
                n=n_inv,
                sampler="heun",
                steps=25,
                seed=4,
                points=points,
                progress=False,
            )
            fine = np.stack(
                [np.interp(x_train, fine_ds["x"].values, row) for row in fine_ds["y"].values]
            )
            inv = invariance_statistics(coarse_ds["y"].values, fine)
            inv_rows.append(
                [
                    label_model,
                    f"100 vs {points} ({how})",
                    f"{inv['max_mean_z']:.2f}",
                    f"{inv['max_var_z']:.2f}",
                    f"{inv['mean_rel_var']:.3f}",
                    f"{n_inv} + {n_inv}",
                ]
            )
    table3 = _table(
        ["model", "grids", "max |Δ mean| / SE", "max |Δ var| / SE", "mean |Δ var| / var", "curves"],
        inv_rows,
    )

    label = " (QUICK smoke run: tiny models, not results)" if quick else ""
    body = f"""## Functional benchmark{label}

Command: `{command}` · machine: {machine} · date: {stamp}

Generated: {n} curves per model, {cfg.sample.sampler} sampler with {cfg.sample.steps} steps.
Rigorous power: equal sizes per side, random subsets, seeded permutations, α = 5%; the
null calibration is the same test with real held-out curves (≈ 5% when calibrated).
Floors are the same errors for real held-out curves against the test curves.
HDM-compatible power: 10 vs 10 chunks, 30 repeats (SCIENCE.md §5); lower is better,
but at this size even a poor generator scores low.

{table1}

### Sampler efficiency (Quadratic, shipped Q model)

{n_sampler} curves per sampler (wall time scaled to 1,000 curves); the same metrics.

{table2}

### Discretisation invariance (Quadratic)

Mean and pointwise variance of the samples at the 100 training points (the fine samples
at the shared points, or linearly interpolated from 400 points); Δ in units of the
Monte-Carlo standard error of the difference (max |z| ≲ 3.5 expected over 100 points
when the two agree). The white-noise model shows what Q buys: on a finer grid its
noise is a different (rougher) object than the one it was trained on.

{table3}
"""
    reports_path = work / "functional_reports.json"
    reports_path.write_text(json.dumps({f"{k[0]}-{k[1]}": v for k, v in reports.items()}, indent=1))
    return write_section(benchmarks_file, "functional" + ("-quick" if quick else ""), body)


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
