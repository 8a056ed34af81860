"""UK t2m: does the prior denoise days it never saw as well as the days it trained on?

A prior that memorises its training fields denoises them better than new ones, and its
posteriors are too narrow: it is sure the field is near one it has seen. This measures
the gap for a prior trained on part of the training period (default
``runs/uk_val_statics``, 2019-03-01..20; the command is in the docstring of
``uk_validation_split``), with the relative denoising errors of ``hdm gaussian-stats``
(:func:`hdm.pipelines.gaussian_stats.denoiser_difference`):

    e(ς) = ‖D(α x_0 + σ ξ) − x_0‖ / ‖x_0 − m‖,

of the network (e_θ) and of the exact denoiser of the Gaussian of the first 80 % of the
training fields (e_G; mean of all of them), on

- **seen**: the last 20 % of the training fields (hourly), which the network was trained
  on and the Gaussian was not;
- **unseen**: a later period neither saw (default 2019-03-22..24 hourly, not the test
  week).

Both sets are new to the Gaussian, so its ratio e_G(unseen) / e_G(seen) says how much
harder the unseen days are; the network's ratio beyond that is what it memorised. Up to
64 fields per set, the same noise draws (seed) for both. Section ``uk-generalisation``.

    python -m benchmarks uk_generalisation [--heldout START..END] [CHECKPOINT_DIR]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import PROJECT_ROOT, command_line, machine_description, parser, write_section
from hdm.pipelines.gaussian_stats import (
    denoiser_difference,
    heldout_fields,
    model_and_training_fields,
    parse_period,
    tail_split,
)

SECTION = "uk-generalisation"
DEFAULT_MODEL = PROJECT_ROOT / "runs" / "uk_val_statics"
DEFAULT_HELDOUT = ("2019-03-22T00", "2019-03-24T23")
#: noise levels ς of the table: the range where the teleportation level is decided
LEVELS = (0.05, 0.1, 0.2, 0.35, 0.56, 0.9, 1.5, 3.0, 6.0)


def generalisation(
    model: str | Path,
    heldout: tuple[str, str] = DEFAULT_HELDOUT,
    holdout: float = 0.2,
    max_fields: int = 64,
    levels: Sequence[float] = LEVELS,
    seed: int = 0,
) -> dict:
    """The errors of the network and of the Gaussian on the seen and the unseen fields
    (module doc), per level."""
    path, denoiser, grid, fields = model_and_training_fields(model)
    gaussian, seen = tail_split(fields, grid, holdout)
    sets = {
        "seen": seen[:max_fields],
        "unseen": heldout_fields(path, heldout, grid)[:max_fields],
    }
    out: dict = {
        "model": str(model),
        "levels": list(levels),
        "heldout": list(heldout),
        "holdout": holdout,
    }
    for name, x0 in sets.items():
        curve = denoiser_difference(denoiser, gaussian, x0, np.asarray(levels), seed)
        out[name] = {
            "fields": int(x0.shape[0]),
            "network": curve["network_error"],
            "gaussian": curve["gaussian_error"],
        }
    return out


HEADER = (
    "| ς | e_θ seen | e_θ unseen | unseen ÷ seen | e_G seen | e_G unseen | unseen ÷ seen "
    "| network ÷ Gaussian ratio |\n|---|---|---|---|---|---|---|---|"
)


def section_body(result: dict) -> str:
    seen, unseen = result["seen"], result["unseen"]
    rows = []
    for i, level in enumerate(result["levels"]):
        net_ratio = unseen["network"][i] / seen["network"][i]
        gauss_ratio = unseen["gaussian"][i] / seen["gaussian"][i]
        rows.append(
            f"| {level:g} | {seen['network'][i]:.3f} | {unseen['network'][i]:.3f} | "
            f"{net_ratio:.2f} | {seen['gaussian'][i]:.3f} | {unseen['gaussian'][i]:.3f} | "
            f"{gauss_ratio:.2f} | {net_ratio / gauss_ratio:.2f} |"
        )
    model = Path(result["model"])
    if model.is_relative_to(PROJECT_ROOT):
        model = model.relative_to(PROJECT_ROOT)
    start, end = result["heldout"]
    return f"""## UK t2m: does the prior generalise? Denoising seen and unseen days

The prior `{model}` and the Gaussian of the first {1 - result["holdout"]:.0%} of its training
fields denoise x_t = α x_0 + σ ξ (ξ ~ N(0, Q), the same draws for both sets) of **seen**
fields (the last {result["holdout"]:.0%} of its training fields, hourly, {seen["fields"]}
fields: the network trained on them, the Gaussian did not) and **unseen** ones
({start}..{end} hourly, {unseen["fields"]} fields: new to both). Errors relative to the
fields' anomalies (`hdm gaussian-stats`'s e_θ and e_G).
The Gaussian's unseen ÷ seen ratio is how much harder the unseen days are; the last column,
the network's ratio over the Gaussian's, is the network's excess error on days it never saw
(1: it generalises like the Gaussian; above 1: it memorised its training days).

{HEADER}
{chr(10).join(rows)}
"""


def main(argv: Sequence[str] = ()) -> dict:
    p = parser("uk_generalisation", __doc__)
    p.add_argument("model", nargs="?", default=str(DEFAULT_MODEL), help="the prior's folder")
    p.add_argument(
        "--heldout",
        default="..".join(DEFAULT_HELDOUT),
        help="the unseen period START..END, outside the training period",
    )
    args = p.parse_args(list(argv))
    machine = machine_description()
    result = generalisation(args.model, parse_period(args.heldout))
    command = command_line("uk_generalisation", argv)
    body = section_body(result)
    write_section(args.benchmarks_file, SECTION, body, command=command, machine=machine)
    print(json.dumps(result))
    return result
