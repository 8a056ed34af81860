"""GRF exactness at 64 × 64 with an FNO trained on prior draws (SCIENCE.md §4, issue 4).

The oracle rows (`python -m benchmarks downscale --parts grf64`) check the guidance maths with the
closed-form denoiser; this run replaces it by a TimeConditionedFNO trained on draws of
the same Gaussian prior and scores every guidance method against the closed-form
posterior (mean error in prior stds, std ratio, 90 % coverage):

    python -m benchmarks grf_trained_64 --train-steps 1500 --members 32

It also samples the trained network without guidance: an unconditional std ratio far
from 1 means the network, not the guidance, sets the ensemble's spread. The table goes
into section ``downscale-grf64-trained`` of BENCHMARKS.md. Cost on the 2-core machine:
about 1.06 s per training step at batch 16, then ≈ 6 min of sampling for 32 members.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.downscale import format_exactness, grf_trained
from benchmarks.report import command_line, machine_description, parser, write_section

TITLE = "Downscaling: GRF exactness check at 64 × 64, trained FNO (SCIENCE.md §4)"


def main(argv: Sequence[str] = ()) -> list[dict]:
    """``python -m benchmarks grf_trained_64 [--train-steps S] [--members M] [...]``."""
    p = parser("grf_trained_64", __doc__)
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument(
        "--cg-steps",
        type=int,
        default=0,
        help="MMPS conjugate-gradient steps (0: the preconditioner alone)",
    )
    p.add_argument(
        "--modes",
        type=int,
        default=16,
        help="FNO Fourier modes per axis (M reaches M/4 cycles per unit)",
    )
    p.add_argument(
        "--noise",
        choices=("matern", "se"),
        default="matern",
        help="the network's diffusion noise Q (Matérn-5/2 or squared exponential, ℓ = 0.1)",
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="keep the trained network here and reuse it when it is already trained",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(list(argv))
    if args.train_steps < 1 or args.members < 2 or args.cg_steps < 0 or args.modes < 1:
        p.error("--train-steps and --modes must be ≥ 1, --members ≥ 2, --cg-steps ≥ 0")
    torch.set_num_threads(args.threads)
    machine = machine_description()
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
    write_section(
        args.benchmarks_file,
        "downscale-grf64-trained",
        format_exactness(rows, title=TITLE),
        command=command_line("grf_trained_64", argv),
        machine=machine,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return rows
