"""Where the learned denoiser is no better than the Gaussian one: ς* per model.

For each model folder (default: the shipped UK t2m and Quadratic models), ``hdm
gaussian-stats`` (:func:`hdm.pipelines.gaussian_stats.gaussian_statistics`) is run on a
copy of the folder, so nothing shipped is rewritten: PCA of the training fields, the
held-out denoising errors of the network and of the Gaussian against the noise level ς,
and the level ς* from which the Gaussian is within 5 % of the network at every level
above. The curves are copied to ``benchmarks/figures/teleport_curve_NAME.png`` and the
table goes into section ``teleport-levels`` of BENCHMARKS.md.

    python -m benchmarks teleport_levels [MODEL_DIR ...]
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import PROJECT_ROOT, command_line, machine_description, parser, write_section
from hdm.hilbert.checkpoints import load_checkpoint
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import edm_varsigmas
from hdm.pipelines.gaussian_stats import GaussianStatsConfig, gaussian_statistics

SECTION = "teleport-levels"
DEFAULT_MODELS = ("data/checkpoints/uk_t2m", "data/checkpoints/quadratic")
FIGURES = PROJECT_ROOT / "benchmarks" / "figures"


def levels_skipped(model: Path, varsigma: float | None, steps: int = 25) -> int:
    """How many of the default sampler's ``steps`` EDM levels lie above ς*."""
    if varsigma is None:
        return 0
    process = ForwardProcess.from_dict(load_checkpoint(model / "model.pt")["process"])
    return int((edm_varsigmas(process.schedule, steps) > varsigma).sum())


def measure(model: Path, config: GaussianStatsConfig) -> dict:
    """The statistics and curve of one model, measured on a temporary copy."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / model.name
        shutil.copytree(model, copy, ignore=shutil.ignore_patterns("gaussian*"))
        stats, _ = gaussian_statistics(copy, config)
        FIGURES.mkdir(parents=True, exist_ok=True)
        figure = FIGURES / f"teleport_curve_{model.name}.png"
        shutil.copy(copy / "gaussian_curve.png", figure)
    curve = stats.curve
    star = stats.varsigma_star
    at = None if star is None else curve["varsigma"].index(star)
    return {
        "model": str(
            model.relative_to(PROJECT_ROOT) if model.is_relative_to(PROJECT_ROOT) else model
        ),
        "fields": stats.n_fields,
        "modes": stats.rank,
        "explained": stats.explained,
        "varsigma_star": star,
        "network_error": None if at is None else curve["network_error"][at],
        "gaussian_error": None if at is None else curve["gaussian_error"][at],
        "skipped": levels_skipped(model, star),
        "figure": str(figure.relative_to(PROJECT_ROOT)),
        "curve": curve,
    }


def section_body(rows: list[dict], config: GaussianStatsConfig) -> str:
    table = "\n".join(
        f"| `{r['model']}` | {r['fields']} | {r['modes']} | {100 * r['explained']:.1f} % | "
        f"{_cell(r['varsigma_star'], '.3g')} | {_cell(r['network_error'])} | "
        f"{_cell(r['gaussian_error'])} | {r['skipped']} of 25 |"
        for r in rows
    )
    figures = "\n".join(f"![{r['model']}]({r['figure']})" for r in rows)
    return f"""## Teleportation: where the Gaussian denoises as well as the network

`hdm gaussian-stats` on a copy of each model folder: the mean and PCA basis of the model's
training fields; on the last {100 * config.holdout:.0f} % of them in time (not in the PCA
basis; the network saw them in training) the relative denoising errors
e = ‖D(x_t) − x₀‖ / ‖x₀ − m‖ of the network and of the Gaussian at {config.levels} levels
of ς = σ/α; ς* is the lowest level from which e_Gauss ≤ (1 + {config.threshold:g}) e_net at
every level above. "Levels above ς*": how many of the 25 EDM levels of the default sampler
teleportation skips.

| model | fields | modes | variance kept | ς* | e_net at ς* | e_Gauss at ς* | levels above ς* |
|---|---|---|---|---|---|---|---|
{table}

{figures}
"""


def _cell(value, fmt: str = ".3f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def main(argv: Sequence[str] = ()) -> list[dict]:
    p = parser("teleport_levels", __doc__)
    p.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="model folders")
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description()
    config = GaussianStatsConfig()
    rows = [measure((PROJECT_ROOT / m).resolve(), config) for m in args.models]
    write_section(
        args.benchmarks_file,
        SECTION,
        section_body(rows, config),
        command=command_line("teleport_levels", argv),
        machine=machine,
    )
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k != "curve"}))
    return rows
