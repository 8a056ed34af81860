"""The spherical Q: uniform variance from the equator to the poles, one function on every
resolution, and what a draw costs.

``SphericalCovariance("matern", 10°, ν = 1.5)`` on equiangular global grids (poles
included, the layout of ERA5's 1° and 0.25° grids):

- pointwise variance over 2,000 draws at 65 × 128 by latitude band, against the held
  variance Σ_{ℓ<L} (2ℓ+1)/(4π) λ_ℓ (the target: |lat| > 80° within 5 % of the equator's);
- one seed on two resolutions (33 × 64 and 65 × 128; 65 × 128 and 129 × 256): the mean
  squared difference at the shared points against the variance of the degrees only the
  finer grid holds (what a spectral truncation leaves out);
- seconds per draw (batches of 100 after one warm-up draw) at 33 × 64 … 257 × 512, and
  the planar FFT Q of the same ℓ on a regional box of as many points, for scale.

A figure (``benchmarks/figures/sphere_covariance.png``): one draw at 129 × 256 on a
global map, and the variance by latitude. Section ``sphere-covariance``.

    python -m benchmarks sphere_covariance
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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
from hdm.hilbert.covariance import SpectralCovariance, SphericalCovariance
from hdm.hilbert.grids import GlobalGrid, LatLonGrid

SECTION = "sphere-covariance"
Q = SphericalCovariance("matern", 10.0, 1.5)
FIGURE = PROJECT_ROOT / "benchmarks" / "figures" / "sphere_covariance.png"
PAIR_HEADER = [
    "grids", "mean sq. difference, same seed", "variance of the extra degrees",
    "mean sq. difference, other seed",
]  # fmt: skip
COST_HEADER = ["grid", "degrees L", "held variance", "sphere ms/draw", "planar box ms/draw"]
BANDS = {"|lat| < 10°": (0, 10), "30–60°": (30, 60), "60–80°": (60, 80), "|lat| > 80°": (80, 91)}


def variance_by_band(draws: torch.Tensor, grid: GlobalGrid) -> dict[str, float]:
    """Area-weighted mean of the pointwise variance in each latitude band."""
    var = draws.var(0).numpy()
    lat = np.abs(grid.coords()[0])
    w = grid.weights()
    out = {}
    for name, (lo, hi) in BANDS.items():
        rows = (lat >= lo) & (lat < hi)
        out[name] = float((var[rows] * w[rows]).sum() / w[rows].sum())
    return out


def per_draw_seconds(cov, grid, n: int = 100) -> float:
    cov.sample(1, grid, torch.Generator().manual_seed(0))  # tables, caches
    t0 = time.perf_counter()
    cov.sample(n, grid, torch.Generator().manual_seed(1))
    return (time.perf_counter() - t0) / n


def main(argv: Sequence[str] = ()) -> list[list[str]]:
    p = parser("sphere_covariance", __doc__)
    args = p.parse_args(list(argv))
    torch.set_num_threads(2)
    machine = machine_description("torch_harmonics")
    grid = GlobalGrid.make(65, 128)
    draws = Q.sample(2000, grid, torch.Generator().manual_seed(0), dtype=torch.float64)
    bands = variance_by_band(draws, grid)
    held = Q.truncated_variance(grid)
    band_rows = [[name, f"{v:.4f}", f"{v / bands['|lat| < 10°']:.3f}"] for name, v in bands.items()]
    pair_rows = []
    for coarse in (GlobalGrid.make(33, 64), grid):
        fine = coarse.refined(2)
        a = Q.sample(200, coarse, torch.Generator().manual_seed(5), dtype=torch.float64)
        b = Q.sample(200, fine, torch.Generator().manual_seed(5), dtype=torch.float64)
        gap = float((b[:, ::2, ::2] - a).pow(2).mean())
        tail = Q.truncated_variance(fine) - Q.truncated_variance(coarse)
        other = Q.sample(200, coarse, torch.Generator().manual_seed(6), dtype=torch.float64)
        pair_rows.append(
            [
                f"{coarse.shape[0]} × {coarse.shape[1]} / {fine.shape[0]} × {fine.shape[1]}",
                f"{gap:.4f}",
                f"{tail:.4f}",
                f"{float((other - a).pow(2).mean()):.3f}",
            ]
        )
    cost_rows = []
    for nlat, nlon in ((33, 64), (65, 128), (129, 256), (257, 512)):
        sphere = GlobalGrid.make(nlat, nlon)
        box = LatLonGrid.regular((-40, 40), (-80, 80), (nlat, nlon))
        planar = SpectralCovariance("matern", 10.0, 1.5)
        cost_rows.append(
            [
                f"{nlat} × {nlon}",
                str(sphere.max_degree),
                f"{Q.truncated_variance(sphere):.4f}",
                f"{per_draw_seconds(Q, sphere) * 1e3:.2f}",
                f"{per_draw_seconds(planar, box) * 1e3:.2f}",
            ]
        )
    fig_grid = GlobalGrid.make(129, 256)
    one = Q.sample(1, fig_grid, torch.Generator().manual_seed(0))[0].numpy()
    _figure_pair(one, fig_grid, draws.var(0).numpy(), grid)
    body = f"""## The spherical Q: variance at the poles, one function on every resolution, cost

{Q.describe()} (`hdm.hilbert.covariance.SphericalCovariance`: λ_ℓ ∝ (2ν/ℓ_c² + ℓ(ℓ+1))^−(ν+1),
normalised to unit pointwise variance over all degrees), equiangular global grids with both
poles. Variance by latitude band over 2,000 draws at 65 × 128 (area-weighted means; held
variance Σ_(ℓ<L) (2ℓ+1)/(4π) λ_ℓ = {held:.4f}; target: |lat| > 80° within 5 % of the equator's):

{markdown_table(["band", "variance", "ratio to the equator band"], band_rows)}

One seed on two resolutions (200 draws each): the mean squared difference at the shared
points against the variance of the degrees only the finer grid holds (a spectral
truncation leaves out exactly that), and two seeds on one grid for scale:

{markdown_table(PAIR_HEADER, pair_rows)}

Milliseconds per draw (100 draws after a warm-up; torch-harmonics 0.8 inverse transform
in float64), beside the planar FFT Q of the same kernel on a regional box of as many points:

{markdown_table(COST_HEADER, cost_rows)}

Figure: `benchmarks/figures/sphere_covariance.png` (one draw at 129 × 256; the variance by
latitude).
"""
    write_section(
        args.benchmarks_file,
        SECTION,
        body,
        command=command_line("sphere_covariance", argv),
        machine=machine,
    )
    for row in band_rows + pair_rows + cost_rows:
        print(" | ".join(row))
    return band_rows + pair_rows + cost_rows


def _figure_pair(draw: np.ndarray, draw_grid: GlobalGrid, variance: np.ndarray, grid) -> None:
    """The figure: ``draw`` on ``draw_grid``, ``variance`` (on ``grid``) by latitude."""
    matplotlib.use("Agg")
    import cartopy.crs as ccrs
    import matplotlib.pyplot as plt

    from hdm.plotting import _offline_natural_earth

    lat, lon = draw_grid.coords()
    fig = plt.figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.add_subplot(1, 2, 1, projection=ccrs.Robinson())
    im = ax.pcolormesh(lon, lat, draw, transform=ccrs.PlateCarree(), cmap="RdBu_r")
    ax.coastlines(linewidth=0.4)
    fig.colorbar(im, ax=ax, shrink=0.7, label="ξ (unit variance)")
    ax.set_title(f"one draw, {draw_grid.shape[0]} × {draw_grid.shape[1]}", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.plot(grid.coords()[0], variance.mean(1), label="2,000 draws, mean over longitude")
    ax2.axhline(Q.truncated_variance(grid), color="k", ls="--", label="held variance")
    ax2.set(xlabel="latitude (°)", ylabel="pointwise variance", ylim=(0.8, 1.1))
    ax2.set_title(f"{Q.describe()}, {grid.shape[0]} × {grid.shape[1]}", fontsize=10)
    ax2.legend(fontsize=8)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    with _offline_natural_earth():
        fig.savefig(FIGURE, dpi=110)
    plt.close(fig)
