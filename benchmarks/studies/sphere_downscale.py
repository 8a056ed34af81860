"""Downscaling on the sphere: shallow-water states from coarse cells and 200 IGRA2 stations,
the spherical prior against the planar one and against bilinear and kriging baselines.

Truth: held-out shallow-water states (the test trajectories of the store, never seen in
training; states 4 and 14 of each, 10 days apart). Inputs, simulated from the truth:

- ×4 coarse cells (22.5° × 22.5°, area means on the sphere,
  :func:`hdm.data.coarsen.coarse_grain_sphere`), exact (the default 2 % coarse noise is
  assumed by every method);
- h, u and v at 200 IGRA2 stations worldwide (:func:`hdm.domains.stations.igra2_worldwide`:
  both polar regions and the date line included), bilinear in latitude and longitude, plus
  noise of the std ``hdm downscale`` assumes by default (1 m s⁻¹ for u and v, 5 % of the
  training std for h).

Methods, all on the same inputs and noise stds:

- **sphere**: :func:`hdm.downscale` with the shipped spherical prior
  (``data/checkpoints/shallow_water``: SFNO + spherical Q), its defaults (MMPS, Heun 25);
- **planar**: the same call with the planar prior of the same states
  (``configs/sphere/shallow_water_planar.yaml``: FNO + planar Q on the lat-lon box,
  periodic in longitude), the comparison "what the sphere buys";
- **bilinear**: the coarse cell means interpolated bilinearly on the sphere (periodic in
  longitude; beyond the outermost centres the polar caps hold or continue the edge, the
  better of the two on the validation trajectories);
- **kriging**: per variable, a kernel of the chordal distance (positive definite on the
  sphere) fitted by maximum likelihood on 600 pixels × 100 training states — Matérn ν =
  1.5 or 2.5 or the squared exponential, chosen on the validation trajectories —
  conditioned on the same cells and stations with the same operator matrices as the
  diffusion model.

Scores per variable (area-weighted over the globe): RMSE of the ensemble mean (kriging
mean, bilinear field), RMSE poleward of 60° and within 22.5° of the date line, fair CRPS
(Gaussian CRPS for kriging, MAE for bilinear), spread–skill. Realism of the members:
the mean angular power spectrum over the top third of the resolved degrees against the
truth's, and the date-line seam: the mean squared jump between the columns either side
of 180° over the mean squared jump between neighbouring columns elsewhere, members over
truth (1: no seam).

2× zero-shot: the same test trajectories simulated on 65 × 128 (the solver's own
truncation there, ℓ < 22, so the truth holds degrees the prior never saw), coarse-grained
to the same 22.5° cells (×8) and the same stations; the 33 × 64 priors sample on
65 × 128 and the kriging kernel is the one fitted on 33 × 64. Section
``sphere-downscale``, figure ``benchmarks/figures/sphere_downscale.png``.

    hdm shallow-water --out runs/shallow_water.zarr --nlat 33 --nlon 64 --trajectories 120
    hdm train configs/sphere/shallow_water_planar.yaml --out runs/sw_planar
    python -m benchmarks sphere_downscale [--members 16] [--zero-shot-trajectories 4]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import xarray as xr

from benchmarks.report import (
    PROJECT_ROOT,
    command_line,
    machine_description,
    markdown_table,
    name_and_path,
    parser,
    write_section,
)
from benchmarks.studies.sphere_prior import SHIPPED_PRIOR, STORE, angular_spectrum
from hdm.conditioning.observations import CoarseGrain, PointSample
from hdm.data.coarsen import coarse_grain_sphere
from hdm.data.regrid import interpolate_coarse
from hdm.data.schema import LAT, LON, MEMBER, TIME
from hdm.domains.shallow_water import ShallowWaterConfig, open_shallow_water, simulate
from hdm.domains.stations import igra2_worldwide
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.core import downscale, noise_settings
from hdm.downscaling.prior import Prior, load_prior
from hdm.hilbert.grids import GlobalGrid
from hdm.metrics import baselines as bl
from hdm.metrics import probabilistic as pm

SECTION = "sphere-downscale"
FIGURE = PROJECT_ROOT / "benchmarks" / "figures" / "sphere_downscale.png"
VARIABLES = ("h", "u", "v")
UNITS = {"h": "m", "u": "m s-1", "v": "m s-1"}
FACTOR = 4
STEPS = (4, 14)  # the states of each test trajectory
POLAR_LAT = 60.0
DATE_LINE_BAND = 22.5
#: kriging kernels tried on the validation trajectories: (kind, ν)
KERNELS = (("matern", 1.5), ("matern", 2.5), ("se", None))


# ----------------------------------------------------------------------------- inputs


def as_times(states: xr.Dataset) -> xr.Dataset:
    """(sample, lat, lon) states (:func:`~hdm.domains.shallow_water.open_shallow_water`'s
    layout) as (time, lat, lon): each state gets its own time, 6 h apart (a label for
    hdm.downscale; the states are independent draws)."""
    n = states.sizes["sample"]
    times = np.datetime64("2000-01-01T00", "ns") + np.arange(n) * np.timedelta64(6, "h")
    out = states[list(VARIABLES)].drop_vars(["sample", "trajectory", "step"])
    out = out.rename(sample=TIME).drop_vars([c for c in out.coords if c not in (LAT, LON)])
    return out.assign_coords({TIME: times}).transpose(TIME, LAT, LON).load()


def test_states(
    store: Path, split: str, steps: Sequence[int] = STEPS, every: int | None = None
) -> xr.Dataset:
    """The states ``steps`` (or every ``every``-th step) of a split's trajectories."""
    ds = open_shallow_water(store, split)
    step = ds["step"].values
    keep = step % every == 0 if every else np.isin(step, steps)
    return as_times(ds.isel(sample=np.flatnonzero(keep)))


def fine_states(
    store: Path, trajectories: int, nlat: int, nlon: int, steps: Sequence[int] = STEPS
) -> xr.Dataset:
    """The first ``trajectories`` test trajectories of ``store`` simulated again on
    nlat × nlon (same seeds, the solver's own truncation), states ``steps``."""
    ds = xr.open_zarr(store)
    test = np.flatnonzero(ds["split"].values == "test")[:trajectories]
    attrs = ds.attrs
    cfg = ShallowWaterConfig(
        nlat=nlat,
        nlon=nlon,
        trajectories=int(attrs["config_trajectories"]),
        states=max(steps) + 1,
        spin_up_hours=float(attrs["config_spin_up_hours"]),
        every_hours=float(attrs["config_every_hours"]),
        dt_seconds=float(attrs["config_dt_seconds"]) * (int(attrs["config_nlat"]) - 1) / (nlat - 1),
        seed=int(attrs["config_seed"]),
    )
    grid = cfg.grid
    lat, lon = grid.coords()
    data = np.stack([simulate(cfg, int(k))[list(steps)] for k in test])  # (traj, step, 3, ...)
    states = xr.Dataset(
        {
            v: (("trajectory", "step", LAT, LON), data[:, :, c], {"units": UNITS[v]})
            for c, v in enumerate(VARIABLES)
        },
        coords={"trajectory": test, "step": list(steps), LAT: lat, LON: lon},
    )
    return as_times(states.stack(sample=("trajectory", "step")).transpose("sample", LAT, LON))


def station_values(
    truth: xr.Dataset, grid: GlobalGrid, points, noise: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """(time, station) values of every variable: bilinear at the stations plus noise."""
    rng = np.random.default_rng(seed)
    op = PointSample(points, 1.0)
    out = {}
    for v in VARIABLES:
        x = torch.as_tensor(truth[v].values.astype(np.float64))[:, None]
        clean = op.apply(x, grid).numpy()
        out[v] = clean + noise[v] * rng.standard_normal(clean.shape)
    return out


def prior_stations(prior: Prior, truth: xr.Dataset, grid: GlobalGrid, points, ids):
    """The stations' observations of ``truth`` with the noise ``hdm.downscale`` assumes for
    ``prior`` by default (seed 1), in its layout."""
    _, noise = noise_settings(prior, EnsembleConfig())
    values = station_values(truth, grid, points, noise, seed=1)
    return station_dataset(values, truth[TIME].values, points, ids, UNITS)


def station_dataset(
    values: dict[str, np.ndarray], times: np.ndarray, points, ids, units: dict[str, str]
) -> xr.Dataset:
    """The observations in hdm.downscale's layout (dim ``obs``: id, lat, lon, time, value,
    variable, units)."""
    n_t, n_s = values[VARIABLES[0]].shape
    lat = np.array([p[0] for p in points])
    lon = np.array([p[1] for p in points])
    cols: dict[str, list] = {k: [] for k in ("id", "lat", "lon", "time", "value", "variable")}
    for v in VARIABLES:
        cols["id"].append(np.tile(np.asarray(ids), n_t))
        cols["lat"].append(np.tile(lat, n_t))
        cols["lon"].append(np.tile(lon, n_t))
        cols["time"].append(np.repeat(times, n_s))
        cols["value"].append(values[v].ravel())
        cols["variable"].append(np.full(n_t * n_s, v))
    c = {k: np.concatenate(x) for k, x in cols.items()}
    return xr.Dataset(
        {"value": ("obs", c["value"])},
        coords={
            "id": ("obs", c["id"]),
            "lat": ("obs", c["lat"]),
            "lon": ("obs", c["lon"]),
            TIME: ("obs", c["time"]),
            "variable": ("obs", c["variable"]),
            "units": ("obs", np.array([units[v] for v in c["variable"]])),
        },
    )


# ----------------------------------------------------------------------------- baselines


def bilinear(coarse: xr.DataArray, grid: GlobalGrid, edges: str) -> xr.DataArray:
    lat, lon = grid.coords()
    return interpolate_coarse(coarse, (lat, lon), "bilinear", edges=edges)


def operator_matrix(coarse: xr.DataArray, grid: GlobalGrid, points, model_grid) -> np.ndarray:
    """(cells + stations, nlat·nlon): the coarse cells and stations as the diffusion
    model observes them on ``grid``."""
    cells = CoarseGrain.for_coarse_grid(coarse[LAT].values, coarse[LON].values, model_grid)
    return np.vstack([cells.matrix(grid), PointSample(points, 1.0).matrix(grid)])


def kriging(
    kernel: bl.FittedKernel,
    coarse: xr.DataArray,
    stations: np.ndarray,
    grid: GlobalGrid,
    matrix: np.ndarray,
    noise: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Kriging mean and std (time, nlat, nlon) from the cells and the stations."""
    lat, lon = grid.coords()
    y = np.hstack([coarse.values.reshape(coarse.sizes[TIME], -1), stations])
    n_cells = coarse.sizes[LAT] * coarse.sizes[LON]
    var = np.r_[np.full(n_cells, noise[0] ** 2), np.full(stations.shape[1], noise[1] ** 2)]
    mean, variance = bl.gp_posterior(kernel, lat, lon, matrix, y, var)
    return mean, np.sqrt(variance)


def fit_kernels(train: xr.Dataset, validation: dict, seed: int = 0) -> dict:
    """Per variable, the chordal kernel of :data:`KERNELS` with the lowest kriging RMSE on
    the validation states (``validation``: truth, coarse, stations, matrix, noise)."""
    kernels = {}
    for v in VARIABLES:
        best = None
        for kind, nu in KERNELS:
            k = bl.fit_kernel(train[v], kind, nu or 0.5, metric="chordal", seed=seed)
            mean, _ = kriging(
                k,
                validation["coarse"][v],
                validation["stations"][v],
                validation["grid"],
                validation["matrix"],
                validation["noise"][v],
            )
            err = float(np.sqrt(np.mean((mean - validation["truth"][v].values) ** 2)))
            if best is None or err < best[0]:
                best = (err, k)
        kernels[v] = best[1]
    return kernels


# ----------------------------------------------------------------------------- scores


def masks(grid: GlobalGrid) -> dict[str, xr.DataArray]:
    lat, lon = grid.coords()
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    w = grid.weights()
    dims = (LAT, LON)
    coords = {LAT: lat, LON: lon}
    return {
        "global": xr.DataArray(w, dims=dims, coords=coords),
        "polar": xr.DataArray(w * (np.abs(la) >= POLAR_LAT), dims=dims, coords=coords),
        "date line": xr.DataArray(
            w * (np.abs(lo) >= 180.0 - DATE_LINE_BAND), dims=dims, coords=coords
        ),
    }


def solver_degrees(grid: GlobalGrid) -> int:
    """The degrees the shallow-water solver keeps on ``grid`` (ℓ < (nlat + 1)/3)."""
    return (grid.shape[0] + 1) // 3


def seam_ratio(x: np.ndarray) -> float:
    """Mean squared jump across the date line (first and last column) over the mean
    squared jump between neighbouring columns elsewhere, on (..., nlat, nlon)."""
    across = np.mean((x[..., 0] - x[..., -1]) ** 2)
    inside = np.mean(np.diff(x, axis=-1) ** 2)
    return float(across / inside)


def scores(
    truth: xr.DataArray,
    grid: GlobalGrid,
    *,
    members: xr.DataArray | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> dict[str, float]:
    """RMSE (global, polar, date line), CRPS, spread–skill and realism of one method."""
    w = masks(grid)
    if members is not None:
        members = members.transpose(MEMBER, TIME, LAT, LON)
        m = members.mean(MEMBER)
    else:
        m = truth.copy(data=mean)
    out = {f"rmse {k}": float(pm.rmse(m, truth, weights=wk)) for k, wk in w.items()}
    if members is not None:
        out["crps"] = float(pm.fair_crps(members, truth, weights=w["global"]))
        out["spread-skill"] = float(pm.spread_skill(members, truth, weights=w["global"]))
        degrees = solver_degrees(grid)
        top = slice(2 * degrees // 3, degrees)
        ens = members.values.reshape(-1, *grid.shape)
        ratio = angular_spectrum(ens, grid, degrees) / angular_spectrum(truth.values, grid, degrees)
        out["spectrum top third"] = float(np.mean(ratio[top]))
        out["seam"] = seam_ratio(members.values) / seam_ratio(truth.values)
    elif std is not None:
        s = truth.copy(data=std)
        out["crps"] = float(pm.gaussian_crps(m, s, truth, weights=w["global"]))
        spread = np.sqrt(float((s**2).weighted(w["global"]).mean()))
        out["spread-skill"] = spread / out["rmse global"]
    else:
        out["crps"] = float(pm.mae(m, truth, weights=w["global"]))
    return out


# ----------------------------------------------------------------------------- runs


def ensemble(
    prior: Prior,
    truth: xr.Dataset,
    coarse: xr.Dataset,
    stations: xr.Dataset,
    members: int,
    grid: int | None,
    **options,
) -> tuple[xr.Dataset, float]:
    """``hdm.downscale`` of ``coarse`` and ``stations`` (``options``: its other settings),
    and the seconds per state."""
    t0 = time.perf_counter()
    out = downscale(
        prior,
        coarse[list(VARIABLES)],
        stations,
        members=members,
        grid=grid,
        progress=True,
        **options,
    )
    return out, (time.perf_counter() - t0) / truth.sizes[TIME]


def case(
    priors: dict[str, Prior],
    truth: xr.Dataset,
    factor: int,
    points,
    ids,
    kernels: dict,
    bilinear_edges: str,
    members: int,
    noise: dict[str, tuple[float, float]],
    zero_shot: bool,
) -> dict:
    """Every method on one set of states; returns scores[method][variable] and fields
    for the figure."""
    grid = GlobalGrid.make(*[truth.sizes[d] for d in (LAT, LON)])
    coarse = coarse_grain_sphere(truth, factor)
    station_noise = {v: noise[v][1] for v in VARIABLES}
    values = station_values(truth, grid, points, station_noise, seed=1)
    units = {v: priors["sphere"].units[v] for v in VARIABLES}
    obs = station_dataset(values, truth[TIME].values, points, ids, units)
    result: dict = {"scores": {}, "s_per_state": {}, "fields": {}, "grid": grid}
    model_grid = priors["sphere"].grid
    matrix = operator_matrix(coarse[VARIABLES[0]], grid, points, model_grid)
    for name, prior in priors.items():
        out, s = ensemble(prior, truth, coarse, obs, members, 2 if zero_shot else None)
        result["s_per_state"][name] = s
        result["scores"][name] = {
            v: scores(
                truth[v], grid, members=out[v].assign_coords({LAT: truth[LAT], LON: truth[LON]})
            )
            for v in VARIABLES
        }
        result["fields"][name] = out
    result["scores"]["bilinear"] = {
        v: scores(truth[v], grid, mean=bilinear(coarse[v], grid, bilinear_edges).values)
        for v in VARIABLES
    }
    krig = {}
    for v in VARIABLES:
        mean, std = kriging(kernels[v], coarse[v], values[v], grid, matrix, noise[v])
        krig[v] = (mean, std)
    result["scores"]["kriging"] = {
        v: scores(truth[v], grid, mean=krig[v][0], std=krig[v][1]) for v in VARIABLES
    }
    result["kriging"] = krig
    result["truth"] = truth
    return result


def validation_setup(store: Path, prior: Prior, points, noise) -> dict:
    truth = test_states(store, "validation")
    grid = prior.grid
    coarse = coarse_grain_sphere(truth, FACTOR)
    values = station_values(truth, grid, points, {v: noise[v][1] for v in VARIABLES}, seed=2)
    return {
        "truth": truth,
        "coarse": coarse,
        "stations": values,
        "grid": grid,
        "matrix": operator_matrix(coarse["h"], grid, points, grid),
        "noise": noise,
    }


def choose_bilinear_edges(setup: dict) -> str:
    """ "hold" or "linear" at the polar caps: the lower RMSE over the validation states."""
    err = {}
    for edges in ("hold", "linear"):
        err[edges] = sum(
            float(
                np.sqrt(
                    np.mean(
                        (bilinear(setup["coarse"][v], setup["grid"], edges) - setup["truth"][v])
                        ** 2
                    )
                )
                / setup["truth"][v].std()
            )
            for v in VARIABLES
        )
    return min(err, key=err.get)


def run(args) -> dict:
    priors = {"sphere": load_prior(args.checkpoint)}
    if args.planar is not None:
        priors["planar"] = load_prior(args.planar)
    also = dict(args.also)
    sphere = priors["sphere"]
    points, ids = igra2_worldwide(args.stations)
    coarse_noise, station_noise = noise_settings(sphere, EnsembleConfig())
    noise = {v: (coarse_noise[v], station_noise[v]) for v in VARIABLES}
    t0 = time.perf_counter()
    setup = validation_setup(args.store, sphere, points, noise)
    edges = choose_bilinear_edges(setup)
    train = test_states(args.store, "train", every=4)
    kernels = fit_kernels(train, setup)
    print(f"baselines chosen on validation in {time.perf_counter() - t0:.0f} s", flush=True)
    truth = test_states(args.store, "test", args.states)
    native_priors = {**priors, **{name: load_prior(path) for name, path in also.items()}}
    native = case(
        native_priors, truth, FACTOR, points, ids, kernels, edges, args.members, noise, False
    )
    out = {"native": native, "kernels": kernels, "edges": edges}
    if args.zero_shot_trajectories:
        t0 = time.perf_counter()
        nlat, nlon = sphere.grid.shape
        fine = fine_states(
            args.store, args.zero_shot_trajectories, 2 * nlat - 1, 2 * nlon, args.states
        )
        out["simulate_s"] = time.perf_counter() - t0
        out["zero_shot"] = case(
            priors, fine, 2 * FACTOR, points, ids, kernels, edges, args.members, noise, True
        )
    return out


# ----------------------------------------------------------------------------- report


def figure(native: dict) -> None:
    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    grid = native["grid"]
    lat, lon = grid.coords()
    methods = [m for m in ("sphere", "planar") if m in native["fields"]]  # not --also
    t = 0
    fig = plt.figure(figsize=(16, 3.2 * 2), layout="constrained")
    for r, v in enumerate(("h", "u")):
        truth = native["truth"][v].values[t]
        lo, hi = np.percentile(truth, [1, 99])
        panels = [("truth", truth, None)]
        panels.append(("kriging mean", native["kriging"][v][0][t], None))
        for m in methods:
            f = native["fields"][m]
            panels.append((f"{m} member 0", f[v].values[0, t], None))
            panels.append((f"{m} member 1", f[v].values[1, t], None))
            panels.append((f"{m} std", f[f"{v}_std"].values[t], "std"))
        for c, (title, values, kind) in enumerate(panels):
            ax = fig.add_subplot(
                2, len(panels), r * len(panels) + c + 1, projection=ccrs.Robinson()
            )
            opts = {"cmap": "magma", "vmin": 0} if kind else {
                "cmap": "viridis" if v == "h" else "RdBu_r", "vmin": lo, "vmax": hi}  # fmt: skip
            ax.pcolormesh(lon, lat, values, transform=ccrs.PlateCarree(), **opts)
            ax.set_title(f"{v}: {title}", fontsize=8)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=90)
    plt.close(fig)


def table(result: dict) -> str:
    rows = []
    scores = result["scores"]
    for v in VARIABLES:
        best = min(("bilinear", "kriging"), key=lambda m: scores[m][v]["rmse global"])
        for method, s in scores.items():
            rows.append(
                [
                    v,
                    method,
                    f"{s[v]['rmse global']:.3g}",
                    f"{s[v]['rmse polar']:.3g}",
                    f"{s[v]['rmse date line']:.3g}",
                    f"{s[v]['crps']:.3g}",
                    f"{s[v]['spread-skill']:.2f}" if "spread-skill" in s[v] else "–",
                    f"{s[v]['spectrum top third']:.2f}" if "spectrum top third" in s[v] else "–",
                    f"{s[v]['seam']:.2f}" if "seam" in s[v] else "–",
                    f"{s[v]['rmse global'] / scores[best][v]['rmse global']:.2f}",
                ]
            )
    header = [
        "var",
        "method",
        "RMSE",
        f"RMSE |lat| ≥ {POLAR_LAT:g}°",
        "RMSE date line",
        "CRPS",
        "spread–skill",
        "spectrum (top ⅓ of ℓ)",
        "seam",
        "RMSE / best baseline",
    ]
    return markdown_table(header, rows)


def main(argv: Sequence[str] = ()) -> dict:
    p = parser("sphere_downscale", __doc__)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_PRIOR)
    p.add_argument(
        "--planar",
        type=Path,
        default=PROJECT_ROOT / "data" / "checkpoints" / "shallow_water_planar",
        help="the planar prior ('none' to leave it out)",
    )
    p.add_argument("--store", type=Path, default=STORE)
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--stations", type=int, default=200)
    p.add_argument("--zero-shot-trajectories", type=int, default=2)
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        type=name_and_path,
        metavar="NAME=PATH",
        help="more priors scored beside the others at the native resolution",
    )
    p.add_argument(
        "--states", type=int, nargs="+", default=list(STEPS), help="steps of each trajectory"
    )
    args = p.parse_args(list(argv))
    if str(args.planar) == "none":
        args.planar = None
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    result = run(args)
    native = result["native"]
    figure(native)
    kern = "; ".join(
        f"{v}: {k.kind if k.nu is None else f'Matérn ν = {k.nu:g}'}, ℓ = {k.lengthscale:.1f}°, "
        f"nugget/σ² = {k.nugget / k.variance:.2g}"
        for v, k in result["kernels"].items()
    )
    times = ", ".join(f"{m} {s:.1f} s" for m, s in native["s_per_state"].items())
    also = "".join(f"\nAlso scored (native grid only): {n}={p}." for n, p in args.also)
    top = (2 * solver_degrees(native["grid"]) // 3, solver_degrees(native["grid"]) - 1)
    body = f"""## Downscaling on the sphere: shallow water, ×4 cells + 200 IGRA2 stations

{native["truth"].sizes[TIME]} held-out states (12 test trajectories × steps {args.states}) on
{native["grid"].describe()}; ×{FACTOR} cells (22.5°) and h, u, v at {args.stations} IGRA2
stations; {args.members} members, `hdm.downscale` defaults (MMPS, Heun 25) for the
spherical (`{args.checkpoint.name}`) and the planar prior; per state {times}.
Kriging kernels (chordal; chosen on the validation trajectories): {kern}.
Bilinear on the sphere holds `{result["edges"]}` at the polar caps (chosen on validation).{also}
RMSE and CRPS in m (h) and m s⁻¹ (u, v), area-weighted; "spectrum": members' mean angular
power over the truth's, degrees {top[0]}–{top[1]};
"seam": members' squared jump across 180° relative to other columns, over the truth's.

{table(native)}
"""
    if "zero_shot" in result:
        zs = result["zero_shot"]
        ztimes = ", ".join(f"{m} {s:.1f} s" for m, s in zs["s_per_state"].items())
        body += f"""
2× zero-shot: {zs["truth"].sizes[TIME]} states of the first {args.zero_shot_trajectories} test
trajectories simulated again on {zs["grid"].describe()} (solver truncation ℓ <
{(zs["grid"].shape[0] + 1) // 3}: the truth holds degrees the priors never saw;
{result["simulate_s"]:.0f} s), the same 22.5° cells (×{2 * FACTOR}) and stations; priors
and kernels from 33 × 64; per state {ztimes}.

{table(zs)}
"""
    body += "\nFigure: `benchmarks/figures/sphere_downscale.png` (first test state).\n"
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_downscale", argv),
        machine=machine,
    )
    print(body)
    return result
