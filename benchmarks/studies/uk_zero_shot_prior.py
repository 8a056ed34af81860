"""Does the shipped UK prior alone draw more power on a 2× grid? Paired unconditional draws.

The zero-shot benchmark (section downscale-uk) finds the 2× members ≈ 4 % more powerful
than the training-grid members at the training grid's points. This script asks whether
the prior does that without any observations. Both grids draw with the same seeds,
and the noise draws share their coefficients on every Fourier mode the grids have in
common (:mod:`hdm.hilbert.covariance`): the initial noise on the training grid is the
spectral truncation of the one on the 2× grid. With the deterministic Heun sampler,
each 2× draw is then paired with a training-grid draw that starts from the same coarse
noise. Pairs are strongly correlated, so the ratio of their powers is measured far more
precisely than two independent ensembles would allow.

For ``--batches`` × ``--members`` pairs (Heun, ``--steps`` steps, no guidance) it
compares, at the training grid's points (every 2nd node of the 2× grid):

- the variance ratio var(2×) / var(training grid) over all points and draws (each
  grid's variance about its own per-point mean over the draws), its square root being
  the amplitude ratio;
- the power ratio in the wavenumber bands of section "Choosing Q" (0–0.5, 0.5–1,
  1–2 cycles/deg), from radially averaged spectra at the shared points;
- and the correlation of the paired fields.

Each comes with a 95 % paired bootstrap interval over the draw pairs (2,000 resamples).
It also reports how much of Q's variance each grid represents (``truncated_variance``):
the 2× grid's noise carries the modes beyond the training grid's band, which the
network never saw in training.

    python -m benchmarks uk_zero_shot_prior [--batches 16] [--members 16] [--steps 25]

It writes section ``uk-zero-shot-prior`` of BENCHMARKS.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from benchmarks.report import command_line, machine_description, parser, write_section
from benchmarks.uk import Q_BANDS, shipped_prior
from hdm.hilbert.sampling import make_sampler
from hdm.metrics import probabilistic as pm

RESAMPLES = 2000


def paired_draws(prior, factor: int, batches: int, members: int, steps: int, seed: int):
    """(training-grid draws, 2× draws restricted to the training points), each (n, lat, lon)
    as numpy, n = batches × members, batch b drawn on both grids with seed ``seed + b``."""
    base, fine = prior.grid, prior.grid.refined(factor)
    sampler = make_sampler("heun", steps)
    out = {"base": [], "fine": []}
    for b in tqdm(range(batches), desc="draw pairs", unit="batch"):
        for name, grid in (("base", base), ("fine", fine)):
            gen = torch.Generator().manual_seed(seed + b)
            with torch.no_grad():
                x = sampler(prior.denoiser, members, grid, 1, gen).samples[:, 0]
            if name == "fine":
                x = x[:, ::factor, ::factor]
            out[name].append(x.numpy().astype(np.float64))
    return np.concatenate(out["base"]), np.concatenate(out["fine"])


def band_powers(x: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Power in each band of :data:`Q_BANDS` of every draw, shape (n, bands)."""
    rows = []
    for field in x:
        da = xr.DataArray(field, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
        p = pm.power_spectrum(da)
        k = p["wavenumber"].values
        rows.append([float(p.values[(k > lo) & (k <= hi)].sum()) for lo, hi in Q_BANDS])
    return np.asarray(rows)


def compare(base: np.ndarray, fine: np.ndarray, lat, lon, seed: int = 0) -> dict:
    """Ratios fine / base with 95 % paired bootstrap intervals (resampling draw pairs)."""
    n = base.shape[0]
    anomalies = {k: v - v.mean(axis=0) for k, v in (("base", base), ("fine", fine))}
    square = {k: (v**2).mean(axis=(1, 2)) for k, v in anomalies.items()}  # per draw
    cross = (anomalies["base"] * anomalies["fine"]).mean(axis=(1, 2))
    bands = {k: band_powers(v, lat, lon) for k, v in anomalies.items()}

    def statistics(idx):
        var = square["fine"][idx].sum() / square["base"][idx].sum()
        corr = cross[idx].sum() / np.sqrt(square["fine"][idx].sum() * square["base"][idx].sum())
        band = bands["fine"][idx].sum(0) / bands["base"][idx].sum(0)
        return np.concatenate([[var, corr], band])

    estimate = statistics(np.arange(n))
    rng = np.random.default_rng(seed)
    resamples = np.stack([statistics(rng.integers(0, n, n)) for _ in range(RESAMPLES)])
    low, high = np.percentile(resamples, [2.5, 97.5], axis=0)
    names = ["variance_ratio", "correlation", *[f"band_{lo:g}_{hi:g}" for lo, hi in Q_BANDS]]
    return {
        name: (float(e), float(lo), float(hi))
        for name, e, lo, hi in zip(names, estimate, low, high)
    }


def _interval(value: tuple[float, float, float], digits: int = 3) -> str:
    e, lo, hi = value
    return f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_section(result: dict) -> str:
    """Section ``uk-zero-shot-prior`` (the command, machine and date are added by
    :func:`benchmarks.report.write_section`)."""
    r = result["ratios"]
    amplitude = tuple(float(np.sqrt(v)) for v in r["variance_ratio"])
    lines = [
        "## UK t2m: the prior alone at 2× its training grid (paired unconditional draws)",
        "",
        f"{result['pairs']} pairs of unconditional draws of the shipped prior (Heun, "
        f"{result['steps']} steps, no observations) on the training grid "
        f"{result['base_shape'][0]} × {result['base_shape'][1]} and the 2× grid "
        f"{result['fine_shape'][0]} × {result['fine_shape'][1]}, each pair from the same "
        "seed (the same noise on every mode the grids share); the 2× draws at the training "
        "grid's points against the training-grid draws. 2× ÷ training grid, 95 % paired "
        f"bootstrap interval over the pairs ({RESAMPLES} resamples):",
        "",
        "| quantity | 2× ÷ training grid |",
        "|---|---|",
        f"| variance at shared points | {_interval(r['variance_ratio'])} |",
        f"| amplitude (√ variance) | {_interval(amplitude)} |",
    ]
    for lo, hi in Q_BANDS:
        lines.append(f"| power, {lo:g}–{hi:g} cycles/deg | {_interval(r[f'band_{lo:g}_{hi:g}'])} |")
    lines += [
        f"| correlation of the paired fields | {_interval(r['correlation'])} |",
        "",
        f"Q's variance represented on each grid (Σ λ_k, of k(0) = 1): training grid "
        f"{result['q_variance_base']:.4f}, 2× grid {result['q_variance_fine']:.4f} "
        f"({100 * (result['q_variance_fine'] / result['q_variance_base'] - 1):+.2f} %). "
        f"Wall time {result['wall_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] = ()) -> dict:
    """``python -m benchmarks uk_zero_shot_prior [--batches B] [--members M] [--steps S]``."""
    p = parser("uk_zero_shot_prior", __doc__)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--members", type=int, default=16, help="draws per batch")
    p.add_argument("--steps", type=int, default=25, help="Heun steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(list(argv))
    if min(args.batches, args.members, args.steps) < 1:
        p.error(
            f"--batches, --members and --steps must be ≥ 1, got "
            f"{args.batches}, {args.members}, {args.steps}"
        )
    if args.batches * args.members < 2:
        p.error("need at least 2 draw pairs for a variance")
    torch.set_num_threads(2)
    machine = machine_description()
    prior = shipped_prior()
    start = time.perf_counter()
    base, fine = paired_draws(prior, 2, args.batches, args.members, args.steps, args.seed)
    lat, lon = prior.grid.coords()
    covariance = prior.denoiser.process.covariance
    result = {
        "pairs": base.shape[0],
        "steps": args.steps,
        "base_shape": prior.grid.shape,
        "fine_shape": prior.grid.refined(2).shape,
        "ratios": compare(base, fine, lat, lon, args.seed),
        "q_variance_base": covariance.truncated_variance(prior.grid),
        "q_variance_fine": covariance.truncated_variance(prior.grid.refined(2)),
        "wall_s": time.perf_counter() - start,
    }
    text = format_section(result)
    command = command_line("uk_zero_shot_prior", argv)
    write_section(
        args.benchmarks_file, "uk-zero-shot-prior", text, command=command, machine=machine
    )
    print(text)
    return result
