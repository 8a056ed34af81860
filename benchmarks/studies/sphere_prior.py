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
    python -m benchmarks sphere_prior [--checkpoint DIR] [--also NAME=PATH ...]
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
    name_and_path,
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
#: the defaults of every sphere benchmark: the shipped prior and the store it was trained on
SHIPPED_PRIOR = PROJECT_ROOT / "data" / "checkpoints" / "shallow_water"
STORE = PROJECT_ROOT / "runs" / "shallow_water.zarr"
FIGURE = PROJECT_ROOT / "benchmarks" / "figures" / "sphere_prior.png"
VARIABLES = ("h", "u", "v")


def angular_spectrum(fields: np.ndarray, grid, degrees: int) -> np.ndarray:
    """Mean C_ℓ (ℓ < ``degrees``) of fields (N, nlat, nlon) on an equiangular global grid."""
    forward, _ = spherical_transforms(grid, torch.device("cpu"))
    coeff = forward(torch.as_tensor(fields, dtype=torch.float64).flip(-2))[:, :degrees]
    power = coeff.abs() ** 2
    power[:, :, 1:] *= 2  # m and −m
    return (power.sum(-1) / (2 * torch.arange(degrees) + 1)).mean(0).numpy()


def against_test(fields: dict, test, grid) -> tuple[dict, dict]:
    """Per variable: (mean C_ℓ of ``fields``, of the test states) at the degrees below the
    solver's truncation, and (their power Σ (2ℓ+1) C_ℓ beyond it)."""
    degrees = (grid.shape[0] + 1) // 3
    weight = 2 * np.arange(grid.shape[0]) + 1
    spectra, beyond = {}, {}
    for v in VARIABLES:
        full = (
            angular_spectrum(np.asarray(fields[v]), grid, grid.shape[0]),
            angular_spectrum(test[v].values, grid, grid.shape[0]),
        )
        spectra[v] = (full[0][:degrees], full[1][:degrees])
        # power Σ (2ℓ+1) C_ℓ at the degrees the solver does not keep (h holds none)
        beyond[v] = tuple(float((weight * c)[degrees:].sum()) for c in full)
    return spectra, beyond


def split_against_test(store: Path, split: str, grid) -> dict:
    """The states of ``split`` scored as samples are: how far a sample of the same law as
    the test states but of other trajectories lies from them (the spectra's null)."""
    states = open_shallow_water(store, split).load()
    test = open_shallow_water(store, "test").load()
    spectra, beyond = against_test({v: states[v].values for v in VARIABLES}, test, grid)
    return {"spectra": spectra, "beyond": beyond}


def flat(values, prior) -> np.ndarray:
    """h, u, v (a dict or dataset of (N, nlat, nlon)) normalised with the prior's
    statistics, one row per state."""
    parts = [(np.asarray(values[v]) - prior.stats(v)[0]) / prior.stats(v)[1] for v in VARIABLES]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def training_states_power(store: Path, checkpoint: Path, n: int, grid, seed: int = 0):
    """The same two-sample test with ``n`` training states (drawn at random) in place of
    the samples: how well a prior that reproduced its training law exactly could do."""
    prior = load_prior(checkpoint)
    train = open_shallow_water(store, "train")
    pick = np.sort(np.random.default_rng(seed).choice(train.sizes["sample"], n, replace=False))
    train = train.isel(sample=pick).load()
    test = open_shallow_water(store, "test").load()
    null = open_shallow_water(store, "validation").load()
    return rigorous_power(
        flat(train, prior),
        flat(test, prior),
        flat(null, prior),
        weights=np.tile(grid.weights().ravel(), len(VARIABLES)),
        seed=seed,
    )


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
    spectra, beyond = against_test(samples, test, grid)

    power = rigorous_power(
        flat(samples, prior),
        flat(test, prior),
        flat(null, prior),
        weights=np.tile(grid.weights().ravel(), len(VARIABLES)),
        seed=seed,
    )
    return {
        "samples": samples,
        "test": test,
        "spectra": spectra,
        "beyond": beyond,
        "noise": prior.denoiser.process.covariance.describe(),
        "network_degrees": getattr(prior.denoiser.backbone, "n_degrees", None),
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


def spectrum_rows(name: str, result: dict) -> list[list[str]]:
    """Per variable: the range of the spectral ratio below the solver's truncation, its
    worst degree, whether all are within 20 %, and the power beyond the truncation."""
    rows = []
    for v in VARIABLES:
        gen, ref = result["spectra"][v]
        ratio = gen / ref
        worst = int(np.argmax(np.abs(np.log(ratio))))
        rows.append(
            [
                name,
                v,
                f"{ratio.min():.2f}–{ratio.max():.2f}",
                f"ℓ = {worst}: {ratio[worst]:.2f}",
                "yes" if np.all(np.abs(ratio - 1) <= 0.2) else "no",
                "{:.3g} / {:.3g}".format(*result["beyond"][v]),
            ]
        )
    return rows


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_prior", __doc__)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_PRIOR)
    p.add_argument("--store", type=Path, default=STORE)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--steps", type=int, default=50)  # the default of hdm sample
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        type=name_and_path,
        metavar="NAME=PATH",
        help="more priors scored beside",
    )
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    priors = {args.checkpoint.name: args.checkpoint}
    priors.update(args.also)
    results = {name: run(path, args.store, args.n, args.steps) for name, path in priors.items()}
    result = results[args.checkpoint.name]
    figure(result)
    rows, described, powers = [], [], []
    for name, res in results.items():
        rows += spectrum_rows(name, res)
    for split in ("train", "validation"):
        null = split_against_test(args.store, split, result["grid"])
        rows += spectrum_rows(f"null: the {split} states", null)
    for name, res in results.items():
        modes = res["network_degrees"]
        described.append(
            f"`{name}`: Q = {res['noise']}, "
            + ("planar FNO" if modes is None else f"TimeConditionedSFNO keeping ℓ < {modes}")
        )
        pw = res["power"]
        powers.append(
            f"`{name}` {pw.power:.0f} % (95 % CI {pw.power_ci[0]:.0f}–{pw.power_ci[1]:.0f} %)"
        )
    pw = result["power"]
    trained = training_states_power(args.store, args.checkpoint, args.n, result["grid"])
    header = [
        "prior",
        "variable",
        "ratio range",
        "worst degree",
        "within 20 % everywhere",
        f"power at ℓ ≥ {result['degrees']}: samples / test (m², m² s⁻², m² s⁻²)",
    ]
    nl = "\n"
    body = f"""## A spherical prior on the shallow-water testbed: samples against held-out states

Priors of h, u, v jointly (configs/sphere/shallow_water.yaml and the overrides named),
trained on {result["n_train"]} states of the training trajectories:
{nl.join("- " + d for d in described)}

{args.n} unconditional samples each (Heun {args.steps}, {result["nfe"]} NFE,
{result["s_per_sample"] * 1e3:.0f} ms per sample for `{args.checkpoint.name}`) against the
{result["test"].sizes["sample"]} states of the test trajectories.

Angular power spectra, mean C_ℓ of the samples over that of the test states at every
degree ℓ < {result["degrees"]} (the solver's truncation; target: within 20 %), and the power
Σ (2ℓ+1) C_ℓ beyond it (h holds none there; u and v, vector components, a little). The
null rows score the training and the validation states as if they were samples: the test
set's 12 trajectories are themselves that far from states of the same law, most at the
lowest degrees (a trajectory keeps its angular momentum: u's ℓ = 0).

{markdown_table(header, rows)}

Rigorous two-sample power (kernel MMD, h/u/v normalised and area-weighted,
{pw.n_per_side} per side, {pw.n_subsets} tests), samples vs test states: {"; ".join(powers)};
null (validation vs test states) {pw.power_null:.0f} %
({pw.power_null_ci[0]:.0f}–{pw.power_null_ci[1]:.0f} %); {args.n} training states (drawn at
random) in place of the samples, what a prior that reproduced its training law exactly
would score: {trained.power:.0f} % ({trained.power_ci[0]:.0f}–{trained.power_ci[1]:.0f} %).
Target ≤ 10 %. Figure: `benchmarks/figures/sphere_prior.png` (`{args.checkpoint.name}`).
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
