"""Does MMPS with conjugate-gradient steps help the UK t2m prior? (issue 4, training data)

MMPS solves (Σ_y + A Cov Aᵀ) v = r with the Tweedie covariance Cov = (σ²/α) Q Jᵀ of the
network. ``cg_steps = 0`` (the default of ``hdm downscale``) keeps the preconditioned
solve alone, P = Σ_y + κ A Q Aᵀ; each CG step adds two vector–Jacobian products per
member and stops where the learned covariance has no positive curvature. This script
scores the shipped prior with each setting on the training-period day 2019-03-20
(00/06/12/18 UTC, coarse ×4 + the 12 conditioning stations, EM 50 steps, 16 members),
never on the test week:

    python -m benchmarks uk_cg_steps [--cg-steps 0,5]

With ``--split validation --checkpoint runs/uk_val_w16m32`` it scores a prior trained on
2019-03-01..20 on the 6 validation fields of ``uk_validation_split`` (03-22..24, 00
and 12 UTC) instead: out of sample, and still not the test week.

It writes section ``uk-cg-steps`` (``uk-cg-steps-validation``) of BENCHMARKS.md (RMSE,
fair CRPS, spread–skill, 90 % coverage, power ratio and seconds per field per setting).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    parser,
    write_section,
)
from benchmarks.uk import TRAINING_DAY_TIMES, VALIDATION_TIMES, score_on_fields
from hdm.domains.shipped import shipped_checkpoint
from hdm.downscaling.prior import load_prior

SPLITS = {"training-day": TRAINING_DAY_TIMES, "validation": VALIDATION_TIMES}


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cg-steps wants integers like 0,5: {text!r}") from err
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"--cg-steps wants non-negative integers: {text!r}")
    return steps


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    p = parser("uk_cg_steps", __doc__)
    p.add_argument("--cg-steps", type=parse_steps, default=[0, 5])
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--split", choices=tuple(SPLITS), default="training-day")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="prior folder or model.pt, relative to the working directory or the repository "
        "(default: the shipped uk_t2m prior)",
    )
    return p.parse_args(list(argv))


def format_section(rows: list[dict], split: str, members: int, prior: str) -> str:
    """Section ``uk-cg-steps`` (``uk-cg-steps-validation``); the command, machine and date
    are added by :func:`benchmarks.report.write_section`."""
    title = {"training-day": "training-period day", "validation": "validation split"}
    about = (
        "in-sample: these rank settings, they are not the test result"
        if split == "training-day"
        else "never seen by a prior trained on 2019-03-01..20; not the test week"
    )
    lines = [
        f"## UK t2m: MMPS conjugate-gradient steps ({title[split]})",
        "",
        f"{', '.join(SPLITS[split])} ({about}), coarse ×4 + 12 stations, MMPS, EM 50 steps, "
        f"{members} members, prior `{prior}`.",
        "",
        "| cg_steps | RMSE K | fair CRPS | spread–skill | cov. 90 % | power ratio | s / field |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['cg_steps']} | {r['rmse']:.3f} | {r['crps']:.3f} | {r['spread_skill']:.3f} | "
        f"{r['coverage90']:.3f} | {r['spectrum_ratio']:.3f} | {r['s_per_field']:.1f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks uk_cg_steps [--cg-steps 0,5] [--split ...] [--checkpoint DIR]``."""
    args = _arguments(argv)
    torch.set_num_threads(2)
    machine = machine_description()
    if args.checkpoint is None:
        path, shown = shipped_checkpoint("uk_t2m"), "data/checkpoints/uk_t2m"
    else:
        given = args.checkpoint
        path, shown = (given if given.exists() else PROJECT_ROOT / given), str(given)
    prior = load_prior(path)
    rows = []
    for cg in args.cg_steps:
        scores = score_on_fields(
            prior,
            SPLITS[args.split],
            sampler="em",
            steps=50,
            members=args.members,
            guidance_options={"cg_steps": cg},
        )
        rows.append({"cg_steps": cg, **scores})
        print(f"cg_steps={cg}: {scores}", flush=True)
    section = "uk-cg-steps" + ("" if args.split == "training-day" else "-validation")
    write_section(
        args.benchmarks_file,
        section,
        format_section(rows, args.split, args.members, shown),
        command=command_line("uk_cg_steps", argv),
        machine=machine,
    )
    return rows
