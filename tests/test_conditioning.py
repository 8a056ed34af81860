"""Observation operators and guidance: adjoints, grid independence, exact posteriors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from hdm.conditioning.ensembles import (
    RUNAWAY_BOUND,
    SamplingDiverged,
    checked_bound,
    draw_members,
    member_seed,
)
from hdm.conditioning.guidance import gaussian_posterior, make_guidance
from hdm.conditioning.observations import (
    CoarseGrain,
    Composite,
    ObservationError,
    PointSample,
    area_scaled_noise,
    subgrid,
)
from hdm.data.coarsen import coarse_grain
from hdm.downscaling.config import EnsembleConfig
from hdm.downscaling.output import summarise
from hdm.hilbert.covariance import KernelCovariance, SpectralCovariance
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.grids import LatLonGrid, RectGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import make_sampler
from hdm.hilbert.schedules import CosineVP

UK = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
#: a 0.7° grid over the UK domain [49.875, 58.125] × [-10.125, 2.125]: offset, of a
#: non-integer ratio to 0.25°, its outer cells cut by the domain's edge
LAT_07, LON_07 = np.arange(49.5, 59.0, 0.7), np.arange(-10.5, 3.0, 0.7)


def _field(grid, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 1, *grid.shape), generator=g, dtype=torch.float64)


def test_coarse_grain_operator_equals_block_means_of_the_data_layer():
    x = _field(UK)
    op = CoarseGrain.from_factor(UK, 4)
    lat, lon = UK.coords()
    da = xr.DataArray(x[:, 0].numpy(), dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    expected = coarse_grain(da, 4)
    y = op.apply(x, UK).reshape(2, *op.cell_shape).numpy()
    assert y.shape == expected.shape == (2, 8, 12)
    np.testing.assert_allclose(y, expected.values, atol=1e-12)
    rebuilt = CoarseGrain.from_coarse_coords((expected.lat.values, expected.lon.values), UK)
    np.testing.assert_allclose(np.array(rebuilt.edges[0]), np.array(op.edges[0]), atol=1e-9)


def test_coarse_cells_on_a_refined_grid_average_the_same_points():
    """A coarse value made as the block mean of 4 × 4 training-grid points is, on the 2×
    grid, the mean of the same points (the midpoint rule), not of the points between."""
    fine = UK.refined(2)
    x = _field(fine)
    op = CoarseGrain.from_factor(UK, 4)
    on_fine = op.apply(x, fine)
    on_shared = op.apply(x[:, :, ::2, ::2].contiguous(), UK)
    assert on_fine.shape == (2, 96)
    torch.testing.assert_close(on_fine, on_shared, rtol=0, atol=1e-12)
    area = CoarseGrain(op.edges, op.noise, samples_per_cell=None)
    for midpoint, exact in zip(op.weights(UK), area.weights(UK)):  # the same on its own grid
        torch.testing.assert_close(midpoint, exact, rtol=0, atol=1e-15)


def test_exact_area_mean_of_an_interpolated_field_is_the_six_point_kernel():
    """The closed form quoted in CoarseGrain's docstring: on a 2× grid, the exact area mean
    of the linear interpolation of a base field u is (1, 7, 8, 8, 7, 1)/32 over u."""
    base = RectGrid((0.0, 1.0), (0.0, 15.0), (2, 16))
    fine = base.refined(2)
    edges = ((-0.5, 1.5), tuple(-0.5 + 4.0 * np.arange(5)))
    area = CoarseGrain(edges, 0.1, samples_per_cell=None)
    u = torch.randn(1, 1, 2, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lin = torch.nn.functional.interpolate(u, size=(3, 31), mode="bilinear", align_corners=True)
    y = area.apply(lin, fine).reshape(1, 4)[0]
    assert fine.shape == (3, 31)
    kernel = torch.tensor([1.0, 7.0, 8.0, 8.0, 7.0, 1.0], dtype=torch.float64) / 32
    row = u[0, 0].mean(0)  # both rows fully inside the one cell along the first axis
    padded = torch.cat([row[:1], row, row[-1:]])  # the outer cells' half points
    inner = [float((kernel * padded[4 * i : 4 * i + 6]).sum()) for i in (1, 2)]
    np.testing.assert_allclose(y[1:3].numpy(), inner, atol=1e-12)
    box = torch.tensor([float(row[4 * i : 4 * i + 4].mean()) for i in (1, 2)])
    assert not np.allclose(inner, box.numpy())


def test_coarse_grain_sample_errors_name_the_problem():
    with pytest.raises(ObservationError, match="samples_per_cell must be a positive integer"):
        CoarseGrain(((0.0, 1.0), (0.0, 1.0)), 0.1, samples_per_cell=(2,))
    with pytest.raises(ObservationError, match="samples_per_cell"):
        CoarseGrain(((0.0, 1.0),), 0.1, samples_per_cell=0)
    wide = CoarseGrain(((49.0, 51.0), (-10.0, -9.0)), 0.1, samples_per_cell=2)
    with pytest.raises(ObservationError, match=r"coarse cell 0 along 'lat'.*sample point at 49\.5"):
        wide.weights(UK)


@pytest.mark.parametrize(
    "op",
    [
        CoarseGrain.from_factor(UK, 4, 0.2),
        CoarseGrain.for_coarse_grid(LAT_07, LON_07, UK, 0.2),
        PointSample(((51.3, -3.2), (55.0, 0.0), (58.0, 2.0)), 0.5, ("a", "b", "c")),
    ],
)
def test_adjoint_is_the_transpose(op):
    x = _field(UK)
    v = torch.randn(2, op.n_obs(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lhs = (op.apply(x, UK) * v).sum()
    rhs = (x * op.adjoint(v, UK)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)
    assert op.matrix(UK).shape == (op.n_obs(), UK.size)


def test_point_sample_is_exact_at_nodes_and_linear_in_between():
    x = _field(UK, batch=1)
    op = PointSample(((55.0, 0.0), (55.125, 0.0)), 0.1)
    y = op.apply(x, UK)[0]
    assert y[0] == x[0, 0, 20, 40]
    assert torch.isclose(y[1], 0.5 * (x[0, 0, 20, 40] + x[0, 0, 21, 40]))


def test_coarse_cells_are_the_same_function_on_a_refined_grid():
    # A smooth field evaluated on two resolutions has the same cell means, up to the
    # quadrature error of the cell average (small for a field that varies on ~3°). Cells
    # on the domain's edge differ more: the edge points of a grid stand for half a
    # spacing outside the domain, which shrinks when the grid is refined.
    def smooth(grid):
        lat, lon = np.meshgrid(*grid.coords(), indexing="ij")
        return torch.as_tensor(np.sin(lat / 2.0) + np.cos(lon / 3.0))[None, None]

    op = CoarseGrain.from_factor(UK, 4)
    fine = UK.refined(2)
    diff = (op.apply(smooth(UK), UK) - op.apply(smooth(fine), fine)).reshape(8, 12)
    assert diff[1:-1, 1:-1].abs().max() < 2e-3
    assert diff.abs().max() < 3e-2


def _smooth(grid):
    lat, lon = np.meshgrid(*grid.coords(), indexing="ij")
    return torch.as_tensor(np.sin(lat / 2.0) + np.cos(lon / 3.0))[None, None]


def test_aligned_cells_of_any_grid_are_todays_block_means():
    """for_coarse_grid on the ×4 cells (coarse_grain's area-weighted centres, or exact CF
    bounds) takes the aligned path: today's numbers on the training grid and on a 2× grid,
    and the area-overlap operator of the same cells is the block mean too."""
    x = _field(UK)
    lat, lon = UK.coords()
    da = xr.DataArray(x[:, 0].numpy(), dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    blocks = coarse_grain(da, 4)
    today = CoarseGrain.from_coarse_coords((blocks.lat.values, blocks.lon.values), UK)
    op = CoarseGrain.for_coarse_grid(blocks.lat.values, blocks.lon.values, UK, 0.1)
    assert op.samples_per_cell == (4, 4) and op.cell_shape == (8, 12)
    y = op.apply(x, UK).numpy()
    np.testing.assert_allclose(y, blocks.values.reshape(2, -1), rtol=0, atol=1e-12)
    fine = UK.refined(2)
    xf = _field(fine)
    torch.testing.assert_close(op.apply(xf, fine), today.apply(xf, fine), rtol=0, atol=0)
    area = CoarseGrain(op.edges, 0.1)  # samples_per_cell=None: the overlap weights
    np.testing.assert_allclose(area.apply(x, UK).numpy(), y, rtol=0, atol=1e-12)
    edges = [np.array(e) for e in today.edges]
    bounds = [np.stack([e[:-1], e[1:]], 1) for e in edges]
    exact = CoarseGrain.for_coarse_grid(
        0.5 * (edges[0][:-1] + edges[0][1:]),
        0.5 * (edges[1][:-1] + edges[1][1:]),
        UK,
        lat_bounds=bounds[0],
        lon_bounds=bounds[1],
    )
    assert exact.samples_per_cell == (4, 4) and exact.edges == today.edges


def test_cells_of_any_grid_map_a_constant_to_itself():
    op = CoarseGrain.for_coarse_grid(LAT_07, LON_07, UK, 0.1)
    assert op.samples_per_cell is None and op.cell_shape == (12, 18)
    for grid in (UK, UK.refined(2)):
        y = op.apply(torch.full((1, 1, *grid.shape), 3.5, dtype=torch.float64), grid)
        np.testing.assert_allclose(y.numpy(), 3.5, rtol=0, atol=1e-13)


def test_offset_cells_are_exact_area_means_of_a_linear_field():
    """On a flat grid with h = 0.25, cells of 1.0 offset by h/2 cut fine cells in half;
    the overlap mean of the piecewise-constant field is still the exact mean of a linear
    field over the cell, a + b ȳ + c x̄ (the half cells at both ends balance)."""
    grid = RectGrid((0.0, 8.0), (0.0, 12.0), (33, 49))
    y, x = np.meshgrid(*grid.coords(), indexing="ij")
    u = torch.as_tensor(1.5 + 0.7 * y - 0.3 * x)[None, None]
    cy, cx = np.arange(0.5, 8.0), np.arange(0.5, 12.0)  # edges on grid points
    op = CoarseGrain.for_coarse_grid(cy, cx, grid, 0.1)
    assert op.samples_per_cell is None and op.cell_shape == (8, 12)
    my, mx = np.meshgrid(cy, cx, indexing="ij")
    np.testing.assert_allclose(
        op.apply(u, grid)[0].numpy(), (1.5 + 0.7 * my - 0.3 * mx).ravel(), rtol=0, atol=1e-12
    )


def test_cells_that_tile_the_domain_conserve_its_area_mean():
    """0.55° × 0.875° cells (ratios 2.2 and 3.5) whose bounds tile the domain's cells
    exactly: Σ A_I U_I / Σ A_I is the fine area mean Σ h² cos φ_i u_ij / Σ h² cos φ_i,
    for any field (A_I: the cells' cos-weighted areas)."""
    lat_e, lon_e = 49.875 + 0.55 * np.arange(16), -10.125 + 0.875 * np.arange(15)
    bounds = [np.stack([e[:-1], e[1:]], 1) for e in (lat_e, lon_e)]
    centres = [b.mean(1) for b in bounds]
    op = CoarseGrain.for_coarse_grid(*centres, UK, 0.1, *bounds)
    assert op.samples_per_cell is None and op.cell_shape == (15, 14)
    x = _field(UK, batch=1)
    lat = UK.coords()[0]
    w = np.cos(np.deg2rad(lat))[:, None] * np.ones(UK.shape)
    fine_mean = float((w * x[0, 0].numpy()).sum() / w.sum())
    # A_I: the lat overlaps of the fine cells [φ_i ± h/2] with the cell, cos-weighted,
    # times the cell's width in lon (every lon cell is whole fine cells and halves)
    cells_lat = np.clip(
        np.minimum(bounds[0][:, 1:], lat + 0.125) - np.maximum(bounds[0][:, :1], lat - 0.125),
        0,
        None,
    )
    row = (cells_lat * np.cos(np.deg2rad(lat))).sum(1)
    area = np.multiply.outer(row, np.full(14, 0.875)).ravel()
    coarse_mean = float((area * op.apply(x, UK)[0].numpy()).sum() / area.sum())
    assert abs(coarse_mean - fine_mean) < 1e-13


def test_cells_of_any_grid_are_the_same_function_on_a_refined_grid():
    """The same smooth field on three resolutions gives the same cell means up to the
    quadrature error of the piecewise-constant field, which falls as h² inside the domain
    (cells cutting fine cells off-centre make it O(h²), not zero); cells cut by the
    domain's edge move more (the domain's cells shrink by h/4 each side when refined)."""
    op = CoarseGrain.for_coarse_grid(LAT_07, LON_07, UK, 0.1)
    y = [op.apply(_smooth(g), g).reshape(op.cell_shape) for g in (UK, UK.refined(2), UK.refined(4))]
    d12, d24 = (y[0] - y[1]).abs(), (y[1] - y[2]).abs()
    assert d12[1:-1, 1:-1].max() < 6e-3
    assert d24[1:-1, 1:-1].max() < d12[1:-1, 1:-1].max() / 3  # second order
    assert d12.max() < 3e-2


def test_cells_cut_by_the_domain_edge_observe_their_inside_part(caplog):
    """1° cells with edges on grid points (not aligned with the 0.25° cells). Along lat,
    [49.5, 50.5] and [57.5, 58.5] are 0.625 inside the domain [49.875, 58.125]: kept, each
    the cos-weighted mean over its inside part; [48.5, 49.5] is outside and left out, and
    so is the column [2, 3] (0.125 inside); both counts are logged once."""
    lat_c, lon_c = np.arange(49.0, 59.0), np.arange(-9.5, 3.0)
    with caplog.at_level("INFO", logger="hdm"):
        op = CoarseGrain.for_coarse_grid(lat_c, lon_c, UK, 0.1, noise_reference_area=1.0)
    assert op.source_shape == (10, 13) and op.source_index == (1, 0)
    assert op.cell_shape == (9, 12) and op.edges[0][:2] == (49.5, 50.5)
    assert "1 of 10 along 'lat', 1 of 13 along 'lon'" in caplog.text
    assert "22 of 130 coarse cells left out" in caplog.text
    x = torch.zeros((1, 1, *UK.shape), dtype=torch.float64)
    x[0, 0, 0] = 1.0  # the row at 50.0, the cell [49.875, 50.125]
    cos = np.cos(np.deg2rad([50.0, 50.25, 50.5]))
    expected = 0.25 * cos[0] / (0.25 * cos[0] + 0.25 * cos[1] + 0.125 * cos[2])
    np.testing.assert_allclose(op.apply(x, UK)[0, :12].numpy(), expected, rtol=1e-12)
    # the values of the kept cells are picked from the source grid
    src = np.arange(130.0).reshape(10, 13)
    np.testing.assert_array_equal(op.source_values(src), src[1:, :12].ravel())
    # the noise of the edge rows grows as their covered area shrinks: sqrt(1 / 0.625)
    std = op.noise_std().reshape(9, 12)
    np.testing.assert_allclose(std[[0, -1]], 0.1 / np.sqrt(0.625), rtol=1e-12)
    np.testing.assert_allclose(std[1:-1], 0.1, rtol=1e-12)


def test_a_corner_cell_is_kept_when_half_inside_along_each_axis():
    """The rule is per axis: a corner cell 0.6 inside along lat and along lon (0.36 of its
    area) is observed, over its inside part, with the std of a 0.36° × 1° cell."""
    lat_e, lon_e = 49.475 + np.arange(9.0), -10.525 + np.arange(13.0)
    bounds = [np.stack([e[:-1], e[1:]], 1) for e in (lat_e, lon_e)]
    op = CoarseGrain.for_coarse_grid(
        *[b.mean(1) for b in bounds], UK, 0.1, *bounds, noise_reference_area=1.0
    )
    assert op.cell_shape == (8, 12) and op.source_index == (0, 0)
    np.testing.assert_allclose(op.covered_area(UK)[0], 0.36, rtol=1e-12)
    np.testing.assert_allclose(op.noise_std()[0], 0.1 / 0.6, rtol=1e-12)


def test_per_cell_noise_grows_as_the_covered_area_shrinks():
    np.testing.assert_allclose(area_scaled_noise(0.2, [1.0, 0.49, 4.0]), [0.2, 0.2 / 0.7, 0.1])
    op = CoarseGrain.for_coarse_grid(LAT_07, LON_07, UK, 0.1, noise_reference_area=1.0)
    area, std = op.covered_area(UK), op.noise_std()
    np.testing.assert_allclose(std, 0.1 / np.sqrt(area), rtol=1e-12)
    assert np.all(np.diff(std[np.argsort(area)]) <= 1e-15)  # smaller area, larger std
    assert std.min() == pytest.approx(0.1 / 0.7) and std.max() > std.min()
    blocks = CoarseGrain.for_coarse_grid(
        50.375 + np.arange(8.0), -9.625 + np.arange(12.0), UK, 0.1, noise_reference_area=1.0
    )
    np.testing.assert_array_equal(blocks.noise_std(), 0.1)  # 1° cells keep the base std


def test_coarse_grid_outside_the_domain_names_both_extents():
    with pytest.raises(
        ObservationError,
        match=r"coarse grid \(lat \[59\.5, 69\.5\], lon \[-10\.5, 1\.5\]\) does not overlap "
        r"the model's domain \(lat \[49\.875, 58\.125\], lon \[-10\.125, 2\.125\]\)",
    ):
        CoarseGrain.for_coarse_grid(np.arange(60.0, 70.0), np.arange(-10.0, 2.0), UK, 0.1)
    with pytest.raises(ObservationError, match=r"no cell of the coarse grid .* at least half"):
        CoarseGrain.for_coarse_grid(np.array([58.5, 60.5]), np.arange(-10.0, 2.0), UK, 0.1)
    with pytest.raises(ObservationError, match="cells of 'lat' must be contiguous"):
        CoarseGrain.for_coarse_grid(
            np.array([50.5, 52.5]),
            np.arange(-10.0, 2.0),
            UK,
            0.1,
            lat_bounds=np.array([[50.0, 51.0], [52.0, 53.0]]),
        )


def test_cells_across_the_longitude_seam_overlap_both_ends():
    """On a periodic longitude circle (0..355, h = 5) the cell [-11, 9] is [349, 369]:
    3.5 of the cell at 350, all of 355, 0 and 5, 1.5 of 10."""
    grid = LatLonGrid.regular((-10.0, 10.0), (0.0, 360.0), (5, 72))
    op = CoarseGrain(((-12.5, 12.5), tuple(-11.0 + 20.0 * np.arange(19))), 0.1)
    x = torch.zeros((1, 1, *grid.shape), dtype=torch.float64)
    x[0, 0, :, 70] = 1.0  # lon 350
    x[0, 0, :, 2] = 2.0  # lon 10
    assert abs(float(op.apply(x, grid)[0, 0]) - (3.5 * 1.0 + 1.5 * 2.0) / 20.0) < 1e-12


def test_composite_stacks_sources_with_their_noise():
    op = Composite((CoarseGrain.from_factor(UK, 4, 0.2), PointSample(((55.0, 0.0),), 0.5, ("X",))))
    assert op.n_obs() == 97
    np.testing.assert_array_equal(op.noise_std()[[0, -1]], [0.2, 0.5])
    assert op.labels()[-1] == "X"
    assert op.slices()["stations"] == slice(96, 97)


def test_subgrid_observes_the_masked_nodes_on_every_resolution():
    mask = np.zeros(UK.shape, bool)
    mask[4, 6] = mask[30, 40] = True
    op = subgrid(UK, mask, 0.1)
    x = _field(UK, batch=1)
    np.testing.assert_array_equal(op.apply(x, UK)[0].numpy(), x[0, 0][mask].numpy())
    fine = UK.refined(2)
    xf = torch.zeros((1, 1, *fine.shape), dtype=torch.float64)
    xf[0, 0, 8, 12] = 1.0  # node (4, 6) of the coarse grid
    assert op.apply(xf, fine)[0, 0] == 1.0


def test_observation_errors_name_the_problem():
    with pytest.raises(ObservationError, match="station XX at lat=60 lies outside"):
        PointSample(((60.0, 0.0),), 0.1, ("XX",)).apply(_field(UK), UK)
    with pytest.raises(ObservationError, match="station YY has a NaN"):
        PointSample(((np.nan, 0.0),), 0.1, ("YY",))
    with pytest.raises(ObservationError, match="noise std must be positive"):
        PointSample(((55.0, 0.0),), 0.0)
    with pytest.raises(ObservationError, match="noise std must be positive"):
        CoarseGrain.from_factor(UK, 4, -1.0)
    lat = np.arange(50.0, 58.0, 0.6)
    with pytest.raises(ObservationError, match="not an integer coarse-graining"):
        CoarseGrain.from_coarse_coords((lat, np.arange(-9.0, 2.0, 1.0)), UK)
    with pytest.raises(ObservationError, match="larger than axis"):
        CoarseGrain.from_factor(UK, 40)


# ------------------------------------------------------------------ guidance

SMALL = RectGrid((0.0, 1.0), (0.0, 1.0), (12, 12))


def _gaussian_setup():
    cov = KernelCovariance("se", 0.2).dense(SMALL)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.15, 2.5))
    denoiser = GaussianDenoiser(process, SMALL, cov)
    rng = np.random.default_rng(0)
    pts = tuple(map(tuple, rng.uniform(0.05, 0.95, (6, 2))))
    op = Composite((CoarseGrain.from_factor(SMALL, 4, 0.1), PointSample(pts, 0.1)))
    truth = np.linalg.cholesky(cov + 1e-8 * np.eye(SMALL.size)) @ rng.standard_normal(SMALL.size)
    y = op.simulate(torch.as_tensor(truth).reshape(1, 1, 12, 12), SMALL)[0]
    mean, post = gaussian_posterior(cov, np.zeros(SMALL.size), op.matrix(SMALL), y.numpy(), 0.01)
    return denoiser, op, y, mean, post


def test_moment_matching_with_the_exact_denoiser_is_the_exact_posterior_mean():
    # With the analytic denoiser, D̃(x_t) = E[X0 | x_t, y]; at the largest noise level
    # x_t carries no information, so D̃ is the closed-form posterior mean.
    denoiser, op, y, mean, _ = _gaussian_setup()
    guided = make_guidance("mmps", denoiser, op, y, cg_steps=200, cg_tol=1e-12)
    t = torch.full((1,), float(denoiser.process.schedule.t_max), dtype=torch.float64)
    x = denoiser.process.prior_sample(1, 1, SMALL, torch.Generator().manual_seed(0))
    d = guided(x.double(), t, SMALL)
    prior_std = 1.0
    assert torch.isfinite(d).all()
    assert np.sqrt(np.mean((d.reshape(-1).numpy() - mean) ** 2)) < 0.02 * prior_std


class _NegativeJacobian:
    """D(x, t) = −x: its 'Tweedie covariance' (σ²/α) Q Jᵀ = −(σ²/α) Q is negative definite,
    the worst case of a learned Jacobian."""

    def __init__(self, process):
        self.process = process

    def __call__(self, x, t, grid):
        return -x


def test_conjugate_gradients_stop_where_the_covariance_has_no_positive_curvature():
    denoiser, op, y, _, _ = _gaussian_setup()
    bad = _NegativeJacobian(denoiser.process)
    # at a small noise level Σ_y dominates pᵀAp, so pᵀAp > 0 would not catch the
    # negative covariance term; the floor pᵀΣ_y p does
    t = torch.full((2,), 0.05, dtype=torch.float64)
    x = denoiser.process.prior_sample(2, 1, SMALL, torch.Generator().manual_seed(0)).double()
    plain = make_guidance("mmps", bad, op, y, cg_steps=0)(x, t, SMALL)
    reports = []
    guided = make_guidance("mmps", bad, op, y, cg_steps=5, callback=reports.append)
    out = guided(x, t, SMALL)
    assert torch.isfinite(out).all() and out.shape == x.shape
    assert [r["cg_iterations"] for r in reports] == [0]
    assert torch.equal(out, plain)


def _whitened_misfit(op, y, field, grid):
    """‖y − A field‖² in the Σ_y⁻¹ metric, per row."""
    r = y - op.apply(field.double(), grid)
    return ((r**2) / torch.as_tensor(op.noise_std() ** 2)).sum(-1)


@pytest.mark.parametrize("t", [0.3, 0.7, 0.95])
def test_the_exact_mmps_update_never_overshoots_the_observations(t):
    # For the exact denoiser and the solved system, A D̃ − A D = K r with I − K a
    # contraction in the Σ_y⁻¹ metric: the guided estimate is nearer the observations and
    # the overshoot guard leaves every row as it is (shrink = 1).
    denoiser, op, y, _, _ = _gaussian_setup()
    reports = []
    guided = make_guidance("mmps", denoiser, op, y, cg_steps=200, cg_tol=1e-12,
                           callback=reports.append)  # fmt: skip
    tt = torch.full((3,), t, dtype=torch.float64)
    x = denoiser.process.prior_sample(3, 1, SMALL, torch.Generator().manual_seed(2)).double()
    d, d_guided = denoiser(x, tt, SMALL), guided(x, tt, SMALL)
    assert torch.equal(reports[0]["shrink"], torch.ones(3, dtype=torch.float64))
    assert (_whitened_misfit(op, y, d_guided, SMALL) < _whitened_misfit(op, y, d, SMALL)).all()


class _SkewedJacobian:
    """D(x, t) = 10⁻³ (low modes of x) + 10³ (high modes of x): a learned Jacobian at its
    worst for the preconditioner, whose scale is fitted along the (smooth) residual of the
    coarse cells, where this Jacobian is nearly zero, and is far too small elsewhere."""

    def __init__(self, process):
        self.process = process

    def __call__(self, x, t, grid):
        spectrum = torch.fft.fft2(x)
        k = torch.fft.fftfreq(x.shape[-1]).abs()
        high = (k[:, None] + k[None, :]) > 0.2
        gain = torch.where(high, 1e3, 1e-3).to(spectrum.dtype)
        return torch.fft.ifft2(spectrum * gain).real.to(x.dtype)


def test_an_overshooting_update_is_shrunk_to_its_least_squares_multiple():
    denoiser, op, y, _, _ = _gaussian_setup()
    skewed = _SkewedJacobian(denoiser.process)
    t = torch.full((2,), 0.6, dtype=torch.float64)
    x = denoiser.process.prior_sample(2, 1, SMALL, torch.Generator().manual_seed(0)).double()
    reports = []
    out = make_guidance("mmps", skewed, op, y, callback=reports.append)(x, t, SMALL)
    d = skewed(x, t, SMALL)
    shrink = reports[0]["shrink"]
    assert torch.isfinite(out).all() and ((shrink > 0) & (shrink < 1)).all()
    # the shrunk update is the best multiple of the raw one: nearer the observations
    # than no update, and than the raw update (s = 1)
    raw = d + (out - d) / shrink[:, None, None, None]
    before, after = _whitened_misfit(op, y, d, SMALL), _whitened_misfit(op, y, out, SMALL)
    assert (after <= before).all() and (_whitened_misfit(op, y, raw, SMALL) > before).all()
    for scale in (0.5, 2.0):  # a local minimum along the update's direction
        nearby = d + scale * (out - d)
        assert (_whitened_misfit(op, y, nearby, SMALL) >= after - 1e-9).all()


def test_an_overshoot_within_the_tolerance_is_kept_and_beyond_it_shrunk():
    denoiser, op, y, _, _ = _gaussian_setup()
    skewed = _SkewedJacobian(denoiser.process)
    t = torch.full((2,), 0.6, dtype=torch.float64)
    x = denoiser.process.prior_sample(2, 1, SMALL, torch.Generator().manual_seed(0)).double()
    d = skewed(x, t, SMALL)

    def guided(tolerance):
        reports = []
        options = dict(overshoot_tolerance=tolerance, callback=reports.append)
        return make_guidance("mmps", skewed, op, y, **options)(x, t, SMALL), reports[0]["shrink"]

    raw, _ = guided(1e12)  # no row is that far off: the raw update, s = 1
    ratio = torch.sqrt(_whitened_misfit(op, y, raw, SMALL) / _whitened_misfit(op, y, d, SMALL))
    assert (ratio > 1).all()  # the raw update overshoots by this factor
    kept, kept_shrink = guided(float(ratio.max()) * 1.01)
    assert torch.equal(kept_shrink, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(kept, raw)
    cut, cut_shrink = guided(float(ratio.min()) * 0.99)
    assert ((cut_shrink > 0) & (cut_shrink < 1)).all()
    torch.testing.assert_close(cut, guided(1.0)[0])  # shrunk rows get the same multiple
    with pytest.raises(ValueError, match="overshoot_tolerance must be at least 1"):
        make_guidance("mmps", skewed, op, y, overshoot_tolerance=0.5)


def test_first_order_stochastic_samplers_default_to_the_steps_the_closed_form_allows(caplog):
    # em and pc leave the closed-form posterior's std by 12-13 % at 25 steps, so they get
    # 50 unless told otherwise; a sampler change carries a default along, not a choice
    assert EnsembleConfig().steps == 25 and EnsembleConfig(sampler="em").steps == 50
    assert EnsembleConfig().replace(sampler="pc").steps == 50
    assert EnsembleConfig(sampler="em").replace(sampler="dpm2m").steps == 25
    assert EnsembleConfig(steps=30).replace(sampler="em").steps == 30
    caplog.clear()
    with caplog.at_level("WARNING", logger="hdm"):
        EnsembleConfig(sampler="heun", steps=13)  # fewer steps, but no measured loss
        assert caplog.text == ""
        EnsembleConfig(sampler="em", steps=25)
    assert "below its default 50" in caplog.text


def test_few_heun_steps_from_t_max_are_warned_of_but_not_when_teleported(caplog):
    # teleported, 13 Heun steps lose nothing measurable; from t_max 4 gave members 6.6 K
    # from the truth (the early high-noise steps too coarse)
    from hdm.downscaling.core import warn_few_steps_from_t_max

    with caplog.at_level("WARNING", logger="hdm"):
        warn_few_steps_from_t_max(EnsembleConfig(steps=13, teleport=0.56))
        warn_few_steps_from_t_max(EnsembleConfig(steps=25, teleport="none"))
        assert caplog.text == ""
        warn_few_steps_from_t_max(EnsembleConfig(steps=4, teleport="none"))
    assert "'heun' with 4 steps from t_max" in caplog.text


def test_guided_sampler_reproduces_the_closed_form_posterior():
    denoiser, op, y, mean, post = _gaussian_setup()
    guided = make_guidance("mmps", denoiser, op, y, cg_steps=20)  # exact denoiser: full CG
    res = make_sampler("heun", 12)(guided, 300, SMALL, generator=torch.Generator().manual_seed(1))
    x = res.samples.reshape(300, -1).double().numpy()
    sd = np.sqrt(np.diag(post).clip(0))
    assert np.sqrt(np.mean((x.mean(0) - mean) ** 2)) < 0.08
    ratio = np.sqrt(x.var(0, ddof=1).mean() / (sd**2).mean())
    assert 0.85 < ratio < 1.15


def test_replacement_update_is_the_same_function_on_two_resolutions():
    # Q-preconditioning: a station update is k(·, s) · weight, not a grid spike, so the
    # guided estimate agrees at the points shared by a grid and its refinement.
    coarse = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (17, 25))
    fine = coarse.refined(2)

    class Zero:
        process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 1.5, 2.5))

        def __call__(self, x, t, grid):
            return torch.zeros_like(x)

    op = PointSample(((52.0, -4.0), (56.5, 0.5)), 0.1, ("a", "b"))
    y = torch.tensor([1.0, -2.0], dtype=torch.float64)
    t = torch.full((1,), 0.5, dtype=torch.float64)
    out = [
        make_guidance("replacement", Zero(), op, y)(torch.zeros(1, 1, *g.shape), t, g)
        for g in (coarse, fine)
    ]
    shared = out[1][0, 0, ::2, ::2]
    assert out[0].abs().max() > 0.5
    assert (out[0][0, 0] - shared).abs().max() < 3e-3  # spectral truncation only


def test_nan_observations_get_zero_weight():
    denoiser, op, y, _, _ = _gaussian_setup()
    t = torch.full((1,), 0.5, dtype=torch.float64)
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    y_nan = y.clone()
    y_nan[-1] = float("nan")
    fewer = Composite((op.parts[0], op.parts[1].subset(np.arange(5))))
    a = make_guidance("sda", denoiser, op, y_nan)(x, t, SMALL)
    b = make_guidance("sda", denoiser, fewer, y[:-1])(x, t, SMALL)
    torch.testing.assert_close(a, b)


def test_unknown_guidance_suggests_a_name():
    denoiser, op, y, _, _ = _gaussian_setup()
    with pytest.raises(ValueError, match="did you mean 'mmps'"):
        make_guidance("mmsp", denoiser, op, y)


# ------------------------------------------------------------------ ensembles


def test_members_depend_only_on_seed_and_time_key():
    denoiser, op, y, _, _ = _gaussian_setup()
    guided = make_guidance("sda", denoiser, op, y)
    sampler = make_sampler("heun", 4)

    def draw(key):
        return draw_members(guided, sampler, SMALL, 4, seed=3, key=key, batch_size=4)

    a, nfe = draw("2019-03-25T00:00:00")
    b, _ = draw("2019-03-25T00:00:00")
    c, _ = draw("2019-03-25T06:00:00")
    assert a.shape == (4, 1, 12, 12) and nfe == 7
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert member_seed(3, "k") == member_seed(3, "k") != member_seed(4, "k")
    with pytest.raises(ValueError, match="members must be at least 1"):
        draw_members(guided, sampler, SMALL, 0, seed=3)
    with pytest.raises(ValueError, match=r"members must be at least 1 \(an integer\)"):
        EnsembleConfig(members=0)


class _ScaledDenoiser:
    """A denoiser whose estimates are ``scale`` times another's: a sampler that runs away."""

    def __init__(self, inner, scale: float) -> None:
        self.inner, self.scale, self.process = inner, scale, inner.process

    def __call__(self, x, t, grid):
        return self.scale * self.inner(x, t, grid)


def test_a_member_that_runs_away_is_refused_naming_member_and_time():
    denoiser, _, _, _, _ = _gaussian_setup()
    sampler = make_sampler("heun", 4)
    kwargs = dict(seed=3, key="2019-03-29T12:00:00", batch_size=2)
    calm, _ = draw_members(denoiser, sampler, SMALL, 4, **kwargs)  # the bound is the default
    assert float(calm.abs().max()) < RUNAWAY_BOUND  # the prior's own members pass
    wild = _ScaledDenoiser(denoiser, 1e3)
    with pytest.raises(
        SamplingDiverged, match=r"member 0 at 2019-03-29T12:00:00 ran away: .*training stds"
    ):
        draw_members(wild, sampler, SMALL, 4, **kwargs)
    # the bound is the check: without it the same members come back, |values| > bound
    far, _ = draw_members(wild, sampler, SMALL, 4, bound=None, **kwargs)
    assert float(far.abs().max()) > RUNAWAY_BOUND
    with pytest.raises(SamplingDiverged, match=r"member 0 at .* produced non-finite values"):
        draw_members(_ScaledDenoiser(denoiser, float("nan")), sampler, SMALL, 4, bound=None,
                     **kwargs)  # fmt: skip


def test_the_runaway_bound_is_on_by_default_and_reads_none_or_a_positive_number():
    from hdm.downscaling.config import EnsembleConfig

    assert EnsembleConfig().runaway_bound == RUNAWAY_BOUND
    assert EnsembleConfig(runaway_bound="none").runaway_bound is None
    assert EnsembleConfig(runaway_bound="20").runaway_bound == 20.0
    for bad in (0, -1.0, float("inf"), True, "big"):
        with pytest.raises(ValueError, match="runaway_bound must be none or a number"):
            checked_bound(bad)


def test_summarise_mean_std_quantiles():
    values = np.arange(5.0)[:, None] * np.ones((5, 3))
    da = xr.DataArray(values, dims=("member", "lat"), name="t2m", attrs={"units": "K"})
    s = summarise(da, quantiles=(0.5,), thresholds=(2.5,))
    np.testing.assert_allclose(s["t2m_mean"], 2.0)
    np.testing.assert_allclose(s["t2m_std"], np.std(np.arange(5.0), ddof=1))
    np.testing.assert_allclose(s["t2m_quantile"].sel(quantile=0.5), 2.0)
    np.testing.assert_allclose(s["t2m_exceedance"], 0.4)
    assert s["t2m_mean"].attrs["units"] == "K"


def test_summarise_one_member_has_no_spread():
    # One member: its mean is itself, and its std and quantiles are undefined (NaN), not
    # 0 and not the member, which a reader would take for certainty.
    da = xr.DataArray(np.full((1, 3), 280.0), dims=("member", "lat"), name="t2m")
    s = summarise(da, quantiles=(0.05, 0.95))
    np.testing.assert_allclose(s["t2m_mean"], 280.0)
    assert np.isnan(s["t2m_std"]).all() and np.isnan(s["t2m_quantile"]).all()
    assert "one member" in s["t2m_std"].attrs["comment"]


@pytest.mark.parametrize(
    "sampler,steps", [("em", 40), ("heun", 8), ("dpm2m", 10), ("pc", 20), ("sde2m", 10)]
)
@pytest.mark.parametrize("method", ["mmps", "sda", "dps", "replacement"])
def test_every_guidance_works_with_every_sampler(sampler, steps, method):
    # The guided samples fit the observations better than the prior's samples do.
    # DPS with the deterministic samplers and sde2m is the exception (measured: heun 5.7x,
    # dpm2m 1.5x, sde2m 7.4x the prior's misfit: its likelihood ignores Cov[X0|x_t] and
    # overshoots; with EM's and PC's larger noise steps the noise absorbs it), so it is
    # held to finiteness there.
    denoiser, op, y, _, _ = _gaussian_setup()
    options = {"dps": {"normalise": True}}.get(method, {})
    guided = make_guidance(method, denoiser, op, y, **options)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    post = make_sampler(sampler, steps)(guided, 16, SMALL, generator=gen()).samples
    prior = make_sampler(sampler, steps)(denoiser, 16, SMALL, generator=gen()).samples
    assert post.shape == (16, 1, 12, 12) and torch.isfinite(post).all()
    misfit = lambda x: ((op.apply(x.double(), SMALL) - y) ** 2).mean()  # noqa: E731
    if method == "dps" and sampler in ("heun", "dpm2m", "sde2m"):
        return
    assert misfit(post) < 0.5 * misfit(prior)


@pytest.mark.parametrize("name, options", [("mmps", {"cg_steps": 3}), ("sda", {}), ("dps", {})])
def test_guidance_in_the_networks_chunks_equals_the_whole_batch(name, options):
    """A guided call runs in chunks of its CPU graph budget (one graph at a time); every
    row is independent, so the output and MMPS's diagnostics are the same."""
    from hdm.hilbert.denoisers import PreconditionedDenoiser
    from hdm.hilbert.networks import TimeConditionedFNO

    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (16, 16))
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.2, 1.5))
    torch.manual_seed(0)
    backbone = TimeConditionedFNO(dim=2, channels=1, width=8, n_modes=6, n_layers=2)
    denoiser = PreconditionedDenoiser(backbone, process, "v").eval()
    op = Composite((CoarseGrain.from_factor(grid, 4, 0.1), PointSample(((0.3, 0.6),), 0.1)))
    x = process.prior_sample(5, 1, grid, torch.Generator().manual_seed(1))
    y = op.simulate(x[:1], grid, torch.Generator().manual_seed(2))[0]
    t = torch.full((5,), 0.5, dtype=torch.float64)
    reports = []
    guided = make_guidance(name, denoiser, op, y, **options, callback=reports.append)
    outputs, kappas, sizes = [], [], []
    for budget in (0, 2 * 8 * 30 * 30 * 4):  # whole batch; 2 fields per chunk (2, 2, 1)
        guided.cpu_graph_chunk_bytes = budget
        sizes.append(denoiser.chunk_size(x, grid, budget))
        reports.clear()
        outputs.append(guided(x, t, grid))
        kappas.append(torch.cat([r["kappa"] for r in reports]) if reports else None)
    assert len(reports) == (3 if name == "mmps" else 0)  # one report per chunk
    assert sizes == [5, 2]
    assert outputs[1].shape == x.shape and torch.isfinite(outputs[1]).all()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    if name == "mmps":
        assert kappas[1].shape == (5,)
        torch.testing.assert_close(kappas[1], kappas[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sampler", ["em", "pc", "heun", "dpm2m", "sde2m"])
def test_every_sampler_ends_denoised_and_keeps_the_posterior_width(sampler):
    """MMPS with the exact denoiser at the CLI's 50 steps and σ_y = 0.01: a sampler that
    left its last noise draw in the members was 3.1× (EM) and 3.3× (PC) too wide here."""
    from hdm.hilbert.grids import IntervalGrid

    grid = IntervalGrid(0.0, 1.0, 64)
    cov = SpectralCovariance("se", 0.2).dense(grid)
    process = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.1, 1.5))
    points = tuple((float(p),) for p in np.linspace(0.05, 0.95, 8))
    op = PointSample(points, 0.01)
    rng = np.random.default_rng(0)
    truth = np.linalg.cholesky(cov + 1e-8 * np.eye(grid.size)) @ rng.standard_normal(grid.size)
    y = op.simulate(
        torch.as_tensor(truth).reshape(1, 1, -1), grid, torch.Generator().manual_seed(1)
    )[0]
    _, post = gaussian_posterior(cov, np.zeros(grid.size), op.matrix(grid), y.numpy(), 1e-4)
    guided = make_guidance("mmps", GaussianDenoiser(process, grid, cov), op, y, cg_steps=20)
    draws = make_sampler(sampler, 50)(guided, 300, grid, generator=torch.Generator().manual_seed(2))
    x = draws.samples.reshape(300, -1).double().numpy()
    assert np.isfinite(x).all()
    ratio = np.sqrt(np.mean(x.var(0, ddof=1)) / np.mean(np.clip(np.diag(post), 0, None)))
    assert 0.85 <= ratio <= 1.2, ratio


@pytest.mark.parametrize(
    ("lat", "lon", "match"),
    [
        # 1° cells over lat 49.5..54.5 of a 49.875..58.125 domain: 3.6° of the north open
        (np.arange(50.0, 55.0), np.arange(-10.0, 3.0), r"the 3.625 above lat = 54.5"),
    ],
)
def test_coarse_cells_that_leave_the_domain_open_are_refused(lat, lon, match):
    uk = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
    with pytest.raises(ObservationError, match=match):
        CoarseGrain.for_coarse_grid(lat, lon, uk, 0.1)


def test_coarse_cells_short_of_the_domain_by_less_than_a_grid_cell_are_taken():
    """0.5° cells centred 50.25..57.75 stop 0.125° (half a 0.25° cell) short of the domain's
    edges at 49.875 and 58.125, as ×2 blocks of a 33-point axis do: observed, not refused;
    the ×8 blocks of 33 points leave one row (0.25°, less than a 2° cell) open: taken."""
    uk = LatLonGrid.regular((50.0, 58.0), (-10.0, 2.0), (33, 49))
    half = CoarseGrain.for_coarse_grid(np.arange(50.25, 58.0, 0.5), np.arange(-9.75, 2.0, 0.5), uk)
    assert half.n_obs() == 16 * 24
    blocks = coarse_grain(xr.DataArray(np.zeros((33, 49)), dims=("lat", "lon"), coords={
        "lat": uk.axes[0].coords, "lon": uk.axes[1].coords}), 8)  # fmt: skip
    eight = CoarseGrain.for_coarse_grid(blocks.lat.values, blocks.lon.values, uk)
    assert eight.n_obs() == 4 * 6


def test_a_config_copy_warns_only_of_the_choices_it_changes(caplog):
    with caplog.at_level("WARNING", logger="hdm"):
        one = EnsembleConfig(members=1)
        assert caplog.text.count("one member") == 1
        one.replace(teleport="none", seed=3)  # keeps the one member: no second warning
        assert caplog.text.count("one member") == 1
        EnsembleConfig().replace(members=1)  # changes it: warned
        assert caplog.text.count("one member") == 2
        EnsembleConfig(sampler="em").replace(steps=20)
    assert "below its default 50" in caplog.text


def test_repeated_quantiles_are_refused():
    with pytest.raises(ValueError, match=r"quantiles must differ from each other"):
        EnsembleConfig(quantiles=(0.5, 0.5))
