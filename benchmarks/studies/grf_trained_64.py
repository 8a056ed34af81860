"""GRF exactness at 64 × 64 with an FNO trained on prior draws (SCIENCE.md §4, issue 4).

The oracle rows (`hdm benchmark downscale --parts grf`) check the guidance maths with the
closed-form denoiser; this run replaces it by a TimeConditionedFNO trained on draws of
the same Gaussian prior and scores every guidance method against the closed-form
posterior (mean error in prior stds, std ratio, 90 % coverage):

    python benchmarks/grf_trained_64.py --train-steps 1500 --members 32

It also samples the trained network without guidance: an unconditional std ratio far
from 1 means the network, not the guidance, sets the ensemble's spread. The table goes
into section ``downscale-grf64-trained`` of BENCHMARKS.md. Cost on the 2-core machine:
about 1.06 s per training step at batch 16, then ≈ 6 min of sampling for 32 members.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hdm.data.benchmark import write_section
from hdm.pipelines.benchmark_downscale import format_exactness, grf_trained

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--cg-steps",
        type=int,
        default=0,
        help="MMPS conjugate-gradient steps (0: the preconditioner alone)",
    )
    parser.add_argument(
        "--modes",
        type=int,
        default=16,
        help="FNO Fourier modes per axis (M reaches M/4 cycles per unit)",
    )
    parser.add_argument(
        "--noise",
        choices=("matern", "se"),
        default="matern",
        help="the network's diffusion noise Q (Matérn-5/2 or squared exponential, ℓ = 0.1)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="keep the trained network here and reuse it when it is already trained",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.train_steps < 1 or args.members < 2 or args.cg_steps < 0 or args.modes < 1:
        parser.error("--train-steps and --modes must be ≥ 1, --members ≥ 2, --cg-steps ≥ 0")
    torch.set_num_threads(args.threads)
    kwargs = {
        "n": 64,
        "members": args.members,
        "train_steps": args.train_steps,
        "lr": args.lr,
        "dps_options": {"normalise": True, "scale": 3.0},
        "options": {"mmps": {"cg_steps": args.cg_steps}},
        "checkpoint_dir": args.checkpoint_dir,
        "n_modes": args.modes,
        "noise_kernel": args.noise,
    }
    rows = grf_trained(**kwargs)
    command = "python benchmarks/grf_trained_64.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    body = format_exactness(
        rows,
        command.strip(),
        title="Downscaling: GRF exactness check at 64 × 64, trained FNO (SCIENCE.md §4)",
    )
    write_section(args.out, "downscale-grf64-trained", body)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
