"""Tests of hdm.hilbert.grids and hdm.hilbert.covariance: quadrature, refinement,
closed-form kernels, sampling statistics and the same-function-at-every-resolution
property of the spectral covariance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hdm.hilbert.covariance import (
    KernelCovariance,
    SpectralCovariance,
    WhiteNoise,
    covariance_from_dict,
)
from hdm.hilbert.grids import Grid, IntervalGrid, LatLonGrid, PeriodicGrid, RectGrid


def distances(grid: Grid) -> np.ndarray:
    """Euclidean distances between all grid points (row-major order), (size, size)."""
    mesh = np.meshgrid(*grid.coords(), indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    return np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))


def se_closed_form(r: np.ndarray, ell: float) -> np.ndarray:
    return np.exp(-(r**2) / (2 * ell**2))


def matern_closed_form(r: np.ndarray, ell: float, nu: float) -> np.ndarray:
    """Matérn-3/2 and -5/2 in elementary functions (no Bessel functions)."""
    if nu == 1.5:
        z = math.sqrt(3) * r / ell
        return (1 + z) * np.exp(-z)
    if nu == 2.5:
        z = math.sqrt(5) * r / ell
        return (1 + z + z**2 / 3) * np.exp(-z)
    raise NotImplementedError(nu)


def mc_rms_error(cov: np.ndarray, n: int) -> float:
    """E‖Ĉ − C‖_F² = ((tr C)² + ‖C‖_F²)/n for Ĉ = XᵀX/n, rows of X ~ N(0, C): its root."""
    return math.sqrt((np.trace(cov) ** 2 + np.linalg.norm(cov) ** 2) / n)


def sample_cov(draws: torch.Tensor) -> np.ndarray:
    x = draws.reshape(draws.shape[0], -1).to(torch.float64).numpy()
    return x.T @ x / x.shape[0]


# ----------------------------------------------------------------------------- grids


@pytest.mark.parametrize(
    ("grid", "volume"),
    [
        (IntervalGrid(-1.0, 2.0, 7), 3.0),
        (PeriodicGrid((2.0,), (10,)), 2.0),
        (PeriodicGrid((1.0, 3.0), (4, 6)), 3.0),
        (RectGrid((0.0, 2.0), (1.0, 4.0), (5, 9)), 6.0),
    ],
)
def test_quadrature_weights_sum_to_domain_size(grid, volume):
    w = grid.weights()
    assert w.shape == grid.shape and np.isfinite(w).all() and (w > 0).all()
    assert w.sum() == pytest.approx(volume, rel=1e-12)
    assert grid.volume == pytest.approx(volume, rel=1e-12)


def test_latlon_weights_integrate_cos_latitude():
    grid = LatLonGrid.regular((-30.0, 60.0), (0.0, 360.0), (91, 72))
    w = grid.weights()
    assert w.shape == (91, 72) and grid.axes[1].periodic and (w >= 0).all()
    # ∫∫ cos(lat) dlat dlon in square degrees = (180/π)(sin 60° − sin(−30°)) · 360
    exact = 180 / math.pi * (math.sin(math.pi / 3) + 0.5) * 360
    assert w.sum() == pytest.approx(exact, rel=1e-4)


@pytest.mark.parametrize(
    ("grid", "factor"),
    [
        (IntervalGrid(0.0, 1.0, 9), 4),
        (PeriodicGrid((2.0,), (8,)), 3),
        (RectGrid((0.0, 1.0), (0.0, 2.0), (5, 7)), 2),
    ],
)
def test_refined_keeps_every_coarse_point(grid, factor):
    fine = grid.refined(factor)
    assert fine.same_domain(grid) and all(nf > nc for nf, nc in zip(fine.shape, grid.shape))
    for coarse_c, fine_c in zip(grid.coords(), fine.coords()):
        np.testing.assert_allclose(fine_c[::factor], coarse_c, rtol=0, atol=1e-12)
    # the coordinate channels the network sees agree at the shared points
    shared = (slice(None), *[slice(None, None, factor)] * grid.ndim)
    coarse_nc = grid.normalised_coords(dtype=torch.float64)
    assert coarse_nc.shape == (grid.ndim, *grid.shape)
    torch.testing.assert_close(fine.normalised_coords(dtype=torch.float64)[shared], coarse_nc)


@pytest.mark.parametrize(
    "grid",
    [
        IntervalGrid(0.0, 24.0, 25, name="hour"),
        PeriodicGrid((1.0, 3.0), (4, 6)),
        RectGrid((0.0, 1.0), (0.0, 2.0), (5, 7)),
        LatLonGrid.regular((30.0, 60.0), (-10.0, 20.0), (7, 13)),
    ],
)
def test_grid_dict_round_trip(grid):
    back = Grid.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert back == grid and type(back) is type(grid)
    np.testing.assert_array_equal(back.weights(), grid.weights())


def test_grid_errors():
    with pytest.raises(ValueError, match=r"-90 <= start < stop <= 90.*-95"):
        LatLonGrid.regular((-95.0, 10.0), (0.0, 20.0), (5, 5))
    with pytest.raises(ValueError, match=r"-90 <= start < stop <= 90.*91"):
        LatLonGrid.regular((0.0, 91.0), (0.0, 20.0), (5, 5))
    with pytest.raises(ValueError, match="unknown grid kind 'Sphere'"):
        Grid.from_dict({"kind": "Sphere", "axes": []})


# ------------------------------------------------------------------ spectral covariance

GRID_1D = IntervalGrid(0.0, 1.0, 33)


def test_spectral_se_dense_is_the_closed_form_kernel():
    cov = SpectralCovariance("se", 0.1)
    dense = cov.dense(GRID_1D)
    assert dense.shape == (33, 33) and np.isfinite(dense).all()
    np.testing.assert_allclose(dense, se_closed_form(distances(GRID_1D), 0.1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("nu", [1.5, 2.5])
def test_spectral_matern_dense_is_the_closed_form_kernel(nu):
    dense = SpectralCovariance("matern", 0.1, nu).dense(GRID_1D)
    assert dense.shape == (33, 33) and np.isfinite(dense).all()
    # Matérn spectra decay algebraically: the grid's spectral truncation costs ~1e-3
    expected = matern_closed_form(distances(GRID_1D), 0.1, nu)
    np.testing.assert_allclose(dense, expected, rtol=0, atol=3e-3)


@pytest.mark.parametrize(
    ("cov", "atol"),
    [
        (SpectralCovariance("se", 0.1), 1e-10),
        (SpectralCovariance("matern", 0.1, 2.5), 1e-3),
    ],
)
def test_spectral_unit_pointwise_variance(cov, atol):
    diag = np.diag(cov.dense(GRID_1D))
    np.testing.assert_allclose(diag, 1.0, rtol=0, atol=atol)
    assert cov.truncated_variance(GRID_1D) == pytest.approx(1.0, abs=atol)
    assert cov.truncated_variance(GRID_1D) <= 1.0 + 1e-12


@pytest.mark.parametrize(
    ("grid", "ell"),
    [(IntervalGrid(0.0, 1.0, 33), 0.1), (RectGrid((0.0, 1.0), (0.0, 1.5), (17, 21)), 0.15)],
)
def test_spectral_apply_is_the_kernel_matrix(grid, ell, seeded):
    # ℓ ≪ |D| so that the images of the periodic embedding (period 2L) are negligible
    g = torch.randn(3, *grid.shape, generator=seeded(0), dtype=torch.float64)
    out = SpectralCovariance("se", ell).apply(g, grid)
    assert out.shape == g.shape and out.dtype == g.dtype and torch.isfinite(out).all()
    k = se_closed_form(distances(grid), ell)
    expected = (g.reshape(3, -1).numpy() @ k.T).reshape(g.shape)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize(
    "cov", [SpectralCovariance("se", 0.1), KernelCovariance("matern", 0.1, 1.5)]
)
def test_sample_covariance_matches_dense(cov, seeded):
    n = 20_000
    draws = cov.sample(n, GRID_1D, generator=seeded(0))
    assert draws.shape == (n, 33) and draws.dtype == torch.float32 and torch.isfinite(draws).all()
    dense = cov.dense(GRID_1D)
    err = np.linalg.norm(sample_cov(draws) - dense)
    # 2.5× the root-mean-square Monte-Carlo error of an exact sampler
    assert err <= 2.5 * mc_rms_error(dense, n)


def test_spectral_draw_is_the_same_function_on_a_refined_interval(seeded):
    coarse = IntervalGrid(0.0, 1.0, 33)
    fine = coarse.refined(4)
    cov = SpectralCovariance("se", 0.1)
    a = cov.sample(4, coarse, generator=seeded(3), dtype=torch.float64)
    b = cov.sample(4, fine, generator=seeded(3), dtype=torch.float64)
    assert a.shape == (4, 33) and b.shape == (4, 129)
    assert a.std() > 0.5  # a real draw, not zeros
    torch.testing.assert_close(b[:, ::4], a, rtol=0, atol=1e-6)


def test_spectral_draw_is_the_same_function_on_a_refined_rectangle(seeded):
    coarse = RectGrid((0.0, 1.0), (0.0, 2.0), (17, 33))
    fine = coarse.refined(2)
    cov = SpectralCovariance("se", 0.2)
    a = cov.sample(2, coarse, generator=seeded(5), dtype=torch.float64)
    b = cov.sample(2, fine, generator=seeded(5), dtype=torch.float64)
    assert a.shape == (2, 17, 33) and b.shape == (2, 33, 65)
    assert a.std() > 0.5
    torch.testing.assert_close(b[:, ::2, ::2], a, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "cov", [SpectralCovariance("matern", 0.2, 1.5), KernelCovariance("se", 0.2), WhiteNoise()]
)
def test_draws_depend_on_the_seed_only(cov, seeded):
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (6, 5))
    a = cov.sample(3, grid, generator=seeded(11))
    assert a.shape == (3, 6, 5) and torch.isfinite(a).all()
    torch.testing.assert_close(cov.sample(3, grid, generator=seeded(11)), a, rtol=0, atol=0)
    assert (cov.sample(3, grid, generator=seeded(12)) - a).abs().max() > 0.1


# ------------------------------------------------------------------- other operators


@pytest.mark.parametrize(("kernel", "nu"), [("se", 2.5), ("matern", 1.5), ("matern", 2.5)])
def test_kernel_covariance_dense_is_the_closed_form_kernel(kernel, nu):
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (4, 5))
    dense = KernelCovariance(kernel, 0.3, nu).dense(grid)
    assert dense.shape == (20, 20) and np.isfinite(dense).all()
    r = distances(grid)
    expected = se_closed_form(r, 0.3) if kernel == "se" else matern_closed_form(r, 0.3, nu)
    np.testing.assert_allclose(dense, expected, rtol=1e-10, atol=1e-12)


def test_white_noise_is_the_identity(seeded):
    grid = RectGrid((0.0, 1.0), (0.0, 1.0), (3, 4))
    white = WhiteNoise()
    np.testing.assert_array_equal(white.dense(grid), np.eye(12))
    # the generic dense (built column by column from apply) agrees
    generic = super(WhiteNoise, white).dense(grid)
    np.testing.assert_array_equal(generic, np.eye(12))


@pytest.mark.parametrize(
    "cov",
    [
        SpectralCovariance("matern", 0.05, 1.5),
        SpectralCovariance("se", 0.2),
        KernelCovariance("se", 0.3, jitter=1e-5),
        WhiteNoise(),
    ],
)
def test_covariance_dict_round_trip(cov):
    d = json.loads(json.dumps(cov.to_dict()))
    back = covariance_from_dict(d)
    assert back == cov and type(back) is type(cov)


def test_covariance_errors():
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        SpectralCovariance("rbf", 0.1)
    for ell in (0.0, -0.1):
        with pytest.raises(ValueError, match="lengthscale must be positive"):
            SpectralCovariance("se", ell)
    with pytest.raises(ValueError, match="nu must be positive"):
        SpectralCovariance("matern", 0.1, 0.0)
    with pytest.raises(ValueError, match="unknown covariance kind 'gp'"):
        covariance_from_dict({"kind": "gp"})


def test_kernel_covariance_rejects_bad_parameters():
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        KernelCovariance("rbf", 0.1)
    for ell in (0.0, -0.1):
        with pytest.raises(ValueError, match="lengthscale must be positive"):
            KernelCovariance("se", ell)


@pytest.mark.parametrize("ell", [0.5, 1.0])
def test_spectral_unit_variance_for_long_lengthscales(ell):
    cov = SpectralCovariance("se", ell)
    assert cov.truncated_variance(GRID_1D) <= 1.0 + 1e-6
    np.testing.assert_allclose(np.diag(cov.dense(GRID_1D)), 1.0, rtol=0, atol=1e-3)


def test_kernel_covariance_on_irregular_points(seeded):
    from hdm.hilbert.grids import PointSet

    pts = PointSet.from_array(np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.3], [1.0, 1.0]]))
    cov = KernelCovariance("se", 0.2)
    k = cov.dense(pts)
    assert k.shape == (4, 4)
    np.testing.assert_allclose(k[0, 1], np.exp(-0.5 * (0.1 / 0.2) ** 2))
    np.testing.assert_allclose(k[0, 3], np.exp(-0.5 * 2 / 0.04))
    draws = cov.sample(20_000, pts, generator=seeded(0), dtype=torch.float64).numpy()
    assert draws.shape == (20_000, 4)
    np.testing.assert_allclose(draws.T @ draws / len(draws), k, atol=0.04)
    with pytest.raises(ValueError, match="point 1 has non-finite coordinates"):
        PointSet.from_array(np.array([[0.0, 0.0], [np.nan, 1.0]]))
