"""A trained spherical prior on the shallow-water testbed: unconditional samples against
held-out states.

The prior of ``configs/sphere/shallow_water.yaml`` (h, u, v jointly; TimeConditionedSFNO,
spherical Matérn Q) trained on the store's training trajectories; scored against the
test trajectories (never seen), with the validation trajectories as the null sample:

- per-variable angular power spectra C_ℓ = Σ_m |a_ℓm|² / (2ℓ + 1) (orthonormal
  harmonics, m > 0 counted twice for a real field), the mean over samples against the
  mean over test states, as a ratio at every degree below the solver's truncation
  (target: within 20 %);
- the rigorous two-sample power of the kernel MMD test (``hdm.metrics.two_sample``) on the
  three normalised variables together, area-weighted, beside its null (validation states
  against test states); target ≤ 10 %;
- a figure (``benchmarks/figures/sphere_prior.png``): three samples and three test states
  of each variable, and the spectra.

Section ``sphere-prior``.

    hdm shallow-water --out runs/shallow_water.zarr --nlat 33 --nlon 64 --trajectories 120
    python -m benchmarks sphere_prior [--checkpoint data/checkpoints/shallow_water]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    parser,
    write_section,
)
from hdm.conditioning.ensembles import draw_members
from hdm.domains.shallow_water import open_shallow_water
from hdm.downscaling.prior import load_prior
from hdm.hilbert.covariance import spherical_transforms
from hdm.hilbert.grids import GlobalGrid
from hdm.hilbert.sampling import make_sampler
from hdm.metrics.two_sample import rigorous_power

SECTION = "sphere-prior"
FIGURE = PROJECT_ROOT / "benchmarks" / "figures" / "sphere_prior.png"
VARIABLES = ("h", "u", "v")


def angular_spectrum(fields: np.ndarray, grid, degrees: int) -> np.ndarray:
    """Mean C_ℓ (ℓ < ``degrees``) of fields (N, nlat, nlon) on an equiangular global grid."""
    forward, _ = spherical_transforms(grid, torch.device("cpu"))
    coeff = forward(torch.as_tensor(fields, dtype=torch.float64).flip(-2))[:, :degrees]
    power = coeff.abs() ** 2
    power[:, :, 1:] *= 2  # m and −m
    return (power.sum(-1) / (2 * torch.arange(degrees) + 1)).mean(0).numpy()


def run(checkpoint: Path, store: Path, n: int, steps: int, seed: int = 0) -> dict:
    prior = load_prior(checkpoint)
    grid = prior.grid
    t0 = time.perf_counter()
    x, nfe = draw_members(
        prior.denoiser, make_sampler("heun", steps), grid, n, seed=seed, key="sphere-prior",
        batch_size=50, channels=len(prior.channels),
    )  # fmt: skip
    wall = time.perf_counter() - t0
    physical = prior.normaliser.denormalise(x.double().numpy())
    samples = {v: physical[:, prior.channel_index(v)] for v in VARIABLES}
    test = open_shallow_water(store, "test").load()
    null = open_shallow_water(store, "validation").load()
    # a planar prior of the same points (configs/sphere/shallow_water_planar.yaml) is
    # scored on the sphere it samples; degrees: the solver's truncation, ℓ < (nlat + 1)/3
    grid = grid if isinstance(grid, GlobalGrid) else GlobalGrid.make(*grid.shape)
    degrees = (grid.shape[0] + 1) // 3
    spectra = {}
    for v in VARIABLES:
        spectra[v] = (
            angular_spectrum(samples[v], grid, degrees),
            angular_spectrum(test[v].values, grid, degrees),
        )

    def flat(values: dict) -> np.ndarray:
        parts = [(values[v] - prior.stats(v)[0]) / prior.stats(v)[1] for v in VARIABLES]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)

    weights = np.tile(grid.weights().ravel(), len(VARIABLES))
    power = rigorous_power(
        flat(samples),
        flat({v: test[v].values for v in VARIABLES}),
        flat({v: null[v].values for v in VARIABLES}),
        weights=weights,
        seed=seed,
    )
    return {
        "samples": samples,
        "test": test,
        "spectra": spectra,
        "power": power,
        "nfe": nfe,
        "s_per_sample": wall / n,
        "grid": grid,
        "n_train": prior.metadata.get("n_train"),
        "degrees": degrees,
    }


def figure(result: dict) -> None:
    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    lat, lon = result["grid"].coords()
    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    rows = len(VARIABLES)
    for r, v in enumerate(VARIABLES):
        test = result["test"][v].values
        lo, hi = np.percentile(test, [1, 99])
        panels = [(f"{v} sample {k}", result["samples"][v][k]) for k in range(3)]
        panels += [(f"{v} test state {k}", test[7 * k]) for k in range(3)]
        for c, (title, values) in enumerate(panels):
            ax = fig.add_subplot(rows, 7, r * 7 + c + 1, projection=ccrs.Robinson())
            ax.pcolormesh(lon, lat, values, transform=ccrs.PlateCarree(), vmin=lo, vmax=hi,
                          cmap="viridis" if v == "h" else "RdBu_r")  # fmt: skip
            ax.set_title(title, fontsize=8)
        ax = fig.add_subplot(rows, 7, r * 7 + 7)
        gen, ref = result["spectra"][v]
        ax.semilogy(gen, label="samples")
        ax.semilogy(ref, label="test states")
        ax.set(xlabel="degree ℓ", title=f"C_ℓ of {v}")
        ax.legend(fontsize=7)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_prior", __doc__)
    p.add_argument(
        "--checkpoint", type=Path, default=PROJECT_ROOT / "data" / "checkpoints" / "shallow_water"
    )
    p.add_argument("--store", type=Path, default=PROJECT_ROOT / "runs" / "shallow_water.zarr")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--steps", type=int, default=50)  # the default of hdm sample
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    result = run(args.checkpoint, args.store, args.n, args.steps)
    figure(result)
    rows = []
    for v in VARIABLES:
        gen, ref = result["spectra"][v]
        ratio = gen / ref
        worst = int(np.argmax(np.abs(np.log(ratio))))
        rows.append(
            [
                v,
                f"{ratio.min():.2f}–{ratio.max():.2f}",
                f"ℓ = {worst}: {ratio[worst]:.2f}",
                "yes" if np.all(np.abs(ratio - 1) <= 0.2) else "no",
            ]
        )
    pw = result["power"]
    body = f"""## A spherical prior on the shallow-water testbed: samples against held-out states

Prior `{args.checkpoint.name}` (configs/sphere/shallow_water.yaml: h, u, v jointly,
TimeConditionedSFNO keeping degrees ℓ < {result["degrees"]}, spherical Matérn Q) trained on
{result["n_train"]} states of the training trajectories; {args.n} unconditional samples
(Heun {args.steps}, {result["nfe"]} NFE, {result["s_per_sample"] * 1e3:.0f} ms per sample)
against the {result["test"].sizes["sample"]} states of the test trajectories.

Angular power spectra, mean C_ℓ of the samples over that of the test states at every
degree ℓ < {result["degrees"]} (target: within 20 %):

{markdown_table(["variable", "ratio range", "worst degree", "within 20 % everywhere"], rows)}

Rigorous two-sample power (kernel MMD, h/u/v normalised and area-weighted,
{pw.n_per_side} per side, {pw.n_subsets} tests): samples vs test states
{pw.power:.0f} % (95 % CI {pw.power_ci[0]:.0f}–{pw.power_ci[1]:.0f} %); null (validation vs
test states) {pw.power_null:.0f} % ({pw.power_null_ci[0]:.0f}–{pw.power_null_ci[1]:.0f} %).
Target ≤ 10 %. Figure: `benchmarks/figures/sphere_prior.png`.
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_prior", argv),
        machine=machine,
    )
    print(body)
    return rows
