"""Does MMPS with conjugate-gradient steps help the UK t2m prior? (issue 4, training data)

MMPS solves (Σ_y + A Cov Aᵀ) v = r with the Tweedie covariance Cov = (σ²/α) Q Jᵀ of the
network. ``cg_steps = 0`` (the default of ``hdm downscale``) keeps the preconditioned
solve alone, P = Σ_y + κ A Q Aᵀ; each CG step adds two vector–Jacobian products per
member and stops where the learned covariance has no positive curvature. This script
scores the shipped prior with each setting on the training-period day 2019-03-20
(00/06/12/18 UTC, coarse ×4 + the 12 conditioning stations, EM 50 steps, 16 members),
never on the test week:

    python benchmarks/uk_cg_steps.py [--cg-steps 0,5]

With ``--split validation --checkpoint runs/uk_val_w16m32`` it scores a prior trained on
2019-03-01..20 on the 6 validation fields of ``uk_validation_split.py`` (03-22..24, 00
and 12 UTC) instead: out of sample, and still not the test week.

It writes section ``uk-cg-steps`` (``uk-cg-steps-validation``) of BENCHMARKS.md (RMSE,
fair CRPS, spread–skill, 90 % coverage, power ratio and seconds per field per setting).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from hdm.data.benchmark import machine_description, write_section
from hdm.pipelines.benchmark_uk import (
    TRAINING_DAY_TIMES,
    VALIDATION_TIMES,
    load_prior,
    score_on_fields,
)

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"training-day": TRAINING_DAY_TIMES, "validation": VALIDATION_TIMES}


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cg-steps wants integers like 0,5: {text!r}") from err
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"--cg-steps wants non-negative integers: {text!r}")
    return steps


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cg-steps", type=parse_steps, default=[0, 5])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--split", choices=tuple(SPLITS), default="training-day")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("data/checkpoints/uk_t2m"),
        help="prior folder, relative to the working directory or the repository",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    prior = load_prior(args.checkpoint if args.checkpoint.exists() else ROOT / args.checkpoint)
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
    command = "python benchmarks/uk_cg_steps.py " + " ".join(sys.argv[1:] if argv is None else argv)
    title = {"training-day": "training-period day", "validation": "validation split"}
    lines = [
        f"## UK t2m: MMPS conjugate-gradient steps ({title[args.split]})",
        "",
        f"Command: `{command.strip()}` · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · "
        f"{machine_description()}",
        "",
        f"{', '.join(SPLITS[args.split])} ("
        + (
            "in-sample: these rank settings, they are not the test result"
            if args.split == "training-day"
            else "never seen by a prior trained on 2019-03-01..20; not the test week"
        )
        + f"), coarse ×4 + 12 stations, MMPS, EM 50 steps, {args.members} members, "
        f"prior `{args.checkpoint}`.",
        "",
        "| cg_steps | RMSE K | fair CRPS | spread–skill | cov. 90 % | power ratio | s / field |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['cg_steps']} | {r['rmse']:.3f} | {r['crps']:.3f} | {r['spread_skill']:.3f} | "
        f"{r['coverage90']:.3f} | {r['spectrum_ratio']:.3f} | {r['s_per_field']:.1f} |"
        for r in rows
    ]
    section = "uk-cg-steps" + ("" if args.split == "training-day" else "-validation")
    write_section(args.out, section, "\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
