"""``python -m benchmarks gpu_check [--device auto]``: sampling on the user's hardware.

One command (≤ 8 minutes on one GPU; about as long on 2 CPU cores with ``--device cpu``)
that writes section ``gpu-check`` (``gpu-check-cpu`` when it ran on the CPU):

1. GRF exactness on the device: the closed-form Gaussian prior (32 × 32, ×4 coarse cells
   + 20 stations, σ_y = 0.1) with the oracle denoiser, MMPS, Heun 25 from t_max and
   Heun 13 teleported to ς* = ``TELEPORT_LEVEL`` (0.56), 200 members; mean error over the
   prior std and the std ratio against the closed-form posterior (targets ≤ 0.05 and
   [0.9, 1.1]), beside the same rows on the CPU.
2. One UK field (33 × 49, ×4 + 12 stations, 16 members, the shipped prior): wall seconds
   on the device and on the CPU, the default Heun 25 beside Euler–Maruyama 50 and the
   fast setting (DPM-Solver++(2M) 9 steps teleported, section uk-validation-nfe), after one
   warm-up run each (CUDA initialisation and kernel selection are not the user's
   per-field cost).
3. A one-GPU batch run: ``hdm downscale --config configs/downscale/uk_t2m.yaml`` for 8
   times with ``--device`` (one Dask worker per GPU), its wall time and the device its
   chunks recorded.

CUDA and CPU members are different draws (other random streams); both must meet the
exactness targets.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.downscale import (
    SAMPLER_ORACLE_OPTIONS,
    TELEPORT_LEVEL,
    grf_problem,
    posterior_scores,
)
from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from benchmarks.uk import FULL, speed_field
from hdm.conditioning.ensembles import draw_members
from hdm.conditioning.guidance import make_guidance
from hdm.conditioning.teleport import guided_start
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.devices import resolve_device
from hdm.hilbert.gaussian import GaussianStatistics
from hdm.hilbert.sampling import make_sampler
from hdm.pipelines.batch import run_batch
from hdm.pipelines.batch_store import read_markers
from hdm.pipelines.config import DownscaleRunConfig, load_config

__all__ = ["main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grf_rows(device: torch.device, members: int = 200) -> list[list[str]]:
    """Section 1 on ``device``."""
    problem = grf_problem(32, 0, 0.1)
    oracle = GaussianDenoiser(problem.process, problem.grid, problem.prior_cov).to(device)
    stats = GaussianStatistics.from_covariance(problem.prior_cov, problem.grid)
    start = guided_start(stats, problem.process, TELEPORT_LEVEL, problem.operator, problem.y)
    guided = make_guidance(
        "mmps", oracle, problem.operator, problem.y, **SAMPLER_ORACLE_OPTIONS["mmps"]
    )
    rows = []
    for steps, teleport in ((25, None), (13, start)):
        _sync(device)
        t0 = time.perf_counter()
        x, nfe = draw_members(
            guided, make_sampler("heun", steps), problem.grid, members, seed=2,
            batch_size=members, start=teleport,
        )  # fmt: skip
        _sync(device)
        wall = time.perf_counter() - t0
        s = posterior_scores(x.reshape(members, -1).double().numpy(), problem)
        rows.append(
            [
                str(device),
                "heun",
                str(steps),
                "–" if teleport is None else f"{TELEPORT_LEVEL:g}",
                str(nfe),
                f"{s['mean_error']:.3f}",
                f"{s['std_ratio']:.3f}",
                f"{wall:.1f}",
            ]
        )
    return rows


def uk_rows(device: torch.device) -> list[list[str]]:
    """Section 2 on ``device``."""
    prior, coarse, stations = speed_field(FULL)
    rows = []
    for sampler, steps, teleport in (("heun", 25, None), ("em", 50, None), ("dpm2m", 9, "auto")):
        config = EnsembleConfig(sampler=sampler, steps=steps, teleport=teleport, device=str(device))
        times = []
        for _ in range(2):  # a warm-up, then the measured run
            _sync(device)
            t0 = time.perf_counter()
            ds = downscale(prior, coarse=coarse, stations=stations, config=config, progress=False)
            _sync(device)
            times.append(time.perf_counter() - t0)
        spread = float(ds["t2m"].std("member").mean())
        rows.append(
            [
                str(device),
                sampler,
                str(steps),
                "–" if teleport is None else f"{ds.attrs['teleport_varsigma']:.3g}",
                str(ds.attrs["nfe_per_member"]),
                f"{times[1]:.2f}",
                f"{spread:.3f}",
            ]
        )
    prior.to("cpu")
    return rows


def batch_row(device: torch.device, work: Path) -> list[str]:
    """Section 3: 8 times of the UK config in a batch run on ``device``."""
    out = work / "batch.zarr"
    cfg = load_config(
        DownscaleRunConfig,
        PROJECT_ROOT / "configs" / "downscale" / "uk_t2m.yaml",
        [
            f"ensemble.device={device.type}",
            f"output.out={out}",
            "output.plots=false",
            "times.end=2019-03-26T18",
            "checkpoint=" + str(PROJECT_ROOT / "data/checkpoints/uk_t2m/model.pt"),
            "inputs.truth="
            + str(PROJECT_ROOT / "data/atmos/era5_t2m_uk_2019-03/era5_t2m_2019-03_uk.nc"),
        ],
    )
    t0 = time.perf_counter()
    summary = run_batch(cfg, overwrite=True, progress=False)
    wall = time.perf_counter() - t0
    devices = sorted({m.get("device", "?") for m in read_markers(out).values()})
    return [str(device), str(summary.get("status")), f"{wall:.1f}", ", ".join(devices) or "–"]


def main(argv: Sequence[str] = ()) -> dict:
    p = parser("gpu_check", __doc__)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:K")
    p.add_argument("--no-batch", action="store_true", help="skip the batch run")
    args = p.parse_args(list(argv))
    device = resolve_device(args.device)
    torch.set_num_threads(2)
    machine = machine_description()
    if device.type == "cuda":
        machine += f"; {torch.cuda.get_device_name(device)}"
    cpu = torch.device("cpu")
    targets = [device] if device == cpu else [device, cpu]
    grf = [row for d in targets for row in grf_rows(d)]
    uk = [row for d in targets for row in uk_rows(d)]
    batch = []
    if not args.no_batch:
        with tempfile.TemporaryDirectory() as tmp:
            batch = [batch_row(device, Path(tmp))]
    grf_header = ["device", "sampler", "steps", "teleport ς*", "NFE", "mean err / σ_C",
                  "std ratio", "wall s (200 members)"]  # fmt: skip
    uk_header = ["device", "sampler", "steps", "teleport ς*", "NFE", "s / field (16 members)",
                 "mean member std K"]  # fmt: skip
    batch_header = ["device", "status", "wall s (8 times, 2 chunks)", "chunk devices"]
    label = "" if device.type == "cuda" else " (on the CPU: no GPU was used)"
    body = f"""## Sampling on the user's hardware{label}

GRF exactness (oracle, MMPS, closed-form posterior; targets: mean error ≤ 0.05 σ_C,
std ratio in [0.9, 1.1]):

{markdown_table(grf_header, grf)}

One UK field, ×4 + 12 stations, 16 members, after a warm-up run:

{markdown_table(uk_header, uk)}

Batch run (configs/downscale/uk_t2m.yaml, 2019-03-25T00..26T18 every 6 h):

{markdown_table(batch_header, batch) if batch else "not run (--no-batch)"}
"""
    section = "gpu-check" if device.type == "cuda" else "gpu-check-cpu"
    write_section(
        args.benchmarks_file,
        section,
        body,
        command=command_line("gpu_check", argv),
        machine=machine,
    )
    return {"grf": grf, "uk": uk, "batch": batch}
