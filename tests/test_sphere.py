"""The whole sphere: global grids and the spherical-harmonic covariance (issue: the whole
globe, items 1 and 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import eval_legendre

from hdm.hilbert.covariance import (
    SpectralCovariance,
    SphericalCovariance,
    covariance_from_dict,
)
from hdm.hilbert.grids import SPHERE_AREA_DEG2, Axis, GlobalGrid, Grid, LatLonGrid

GRID = GlobalGrid.make(17, 32)
GLOBAL_STORE = "era5_global_1deg_2026-03.zarr"
Q = SphericalCovariance("matern", 30.0, 1.5)


@pytest.mark.parametrize("quadrature", ["equiangular", "legendre-gauss"])
def test_a_global_grid_integrates_over_the_sphere(quadrature):
    """Σ w = 4π sr in square degrees, and Σ w sin²(lat) = 4π/3 (exact for both rules)."""
    grid = GlobalGrid.make(17, 32, quadrature)
    w = grid.weights()
    lat, lon = grid.coords()
    assert w.shape == grid.shape == (17, 32) and (w > 0).sum() >= 16 * 32
    assert math.isclose(w.sum(), SPHERE_AREA_DEG2, rel_tol=1e-12)
    second_moment = (w * np.sin(np.deg2rad(lat))[:, None] ** 2).sum() / SPHERE_AREA_DEG2
    assert math.isclose(second_moment, 1 / 3, rel_tol=1e-10)
    assert (np.diff(lat) > 0).all() and lon[0] == -180.0 and lon[-1] < 180.0
    assert (abs(lat[0]) == 90.0) == (quadrature == "equiangular")
    assert Grid.from_dict(grid.to_dict()) == grid


def test_refining_an_equiangular_grid_keeps_its_points():
    fine = GRID.refined(2)
    assert fine.shape == (33, 64) and fine.same_domain(GRID)
    np.testing.assert_allclose(fine.coords()[0][::2], GRID.coords()[0])
    np.testing.assert_allclose(fine.coords()[1][::2], GRID.coords()[1])
    assert not GRID.same_domain(LatLonGrid.regular((-90, 90), (-180, 180), (17, 33)))


def test_a_global_grid_refuses_a_regional_range_by_name():
    with pytest.raises(ValueError, match=r"spans latitudes −90..90; got -80..80"):
        GlobalGrid((Axis(-80, 80, 17, False, "lat"), Axis(-180, 180, 32, True, "lon")))
    with pytest.raises(ValueError, match=r"go round the circle .* got 0..350 \(closed\)"):
        GlobalGrid((Axis(-90, 90, 17, False, "lat"), Axis(0, 350, 32, False, "lon")))
    with pytest.raises(ValueError, match="unknown quadrature 'gauss'"):
        GlobalGrid.make(17, 32, "gauss")


def test_the_pointwise_variance_is_the_same_at_the_poles_and_the_equator():
    """diag(Q) = Σ_{ℓ<L} (2ℓ+1)/(4π) λ_ℓ at every grid point (the addition theorem), and
    that sum tends to 1 from below as the grid is refined (unit variance, trace-class)."""
    diagonal = np.diag(Q.dense(GRID))
    held = Q.truncated_variance(GRID)
    # torch-harmonics 0.8 tabulates the Legendre functions in single precision
    np.testing.assert_allclose(diagonal, held, rtol=1e-3)
    finer = Q.truncated_variance(GRID.refined(4))
    assert 0.9 < held < finer < 1.0 and 1 - finer < 0.2 * (1 - held)


def test_a_zonal_harmonic_is_an_eigenfunction_of_q():
    """Q (w ⊙ P_ℓ(sin lat)) = λ_ℓ P_ℓ(sin lat) on grid values (w in steradians), on the
    Gauss–Legendre grid, whose quadrature is exact for the products P_ℓ Y_ℓ'm involved."""
    grid = GlobalGrid.make(17, 32, "legendre-gauss")
    lat = np.deg2rad(grid.coords()[0])
    steradians = grid.weights() * (math.pi / 180) ** 2
    lam = Q.degree_eigenvalues(grid.max_degree)
    for ell in (0, 1, 3, 7):
        zonal = np.repeat(eval_legendre(ell, np.sin(lat))[:, None], grid.shape[1], axis=1)
        out = Q.apply(torch.as_tensor(steradians * zonal)[None], grid)[0].numpy()
        np.testing.assert_allclose(out, lam[ell] * zonal, rtol=1e-4, atol=1e-6 * lam[0])


def test_one_seed_draws_the_same_function_on_two_resolutions():
    """The coarse draw is the spectral truncation of the fine one: at the shared points
    they differ by the degrees only the fine grid holds (variance 1 − held on the coarse
    grid − what the fine grid does not hold either)."""
    fine = GRID.refined(2)
    coarse = Q.sample(64, GRID, torch.Generator().manual_seed(3), dtype=torch.float64)
    detailed = Q.sample(64, fine, torch.Generator().manual_seed(3), dtype=torch.float64)
    gap = float((detailed[:, ::2, ::2] - coarse).pow(2).mean())
    only_fine = Q.truncated_variance(fine) - Q.truncated_variance(GRID)
    assert coarse.shape == (64, 17, 32) and torch.isfinite(detailed).all()
    assert 0.5 * only_fine < gap < 1.6 * only_fine
    other = Q.sample(64, GRID, torch.Generator().manual_seed(4), dtype=torch.float64)
    assert float((other - coarse).pow(2).mean()) > 1.5  # another seed: another function


def test_draws_have_the_covariance_q_applies():
    """The empirical covariance of 4,000 draws against Q's matrix (closed form above)."""
    draws = Q.sample(4000, GRID, torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = draws.reshape(4000, -1).numpy()
    empirical = flat.T @ flat / 4000
    dense = Q.dense(GRID)
    assert np.abs(empirical - dense).max() < 0.1 and np.linalg.eigvalsh(dense).min() > -1e-10


def test_the_spherical_covariance_round_trips_and_refuses_a_regional_grid():
    assert covariance_from_dict(Q.to_dict()) == Q
    box = LatLonGrid.regular((45, 55), (0, 10), (11, 11))
    with pytest.raises(ValueError, match=r"lives on a global grid .* SpectralCovariance"):
        Q.sample(1, box)
    with pytest.raises(ValueError, match="lengthscale must be positive"):
        SphericalCovariance("matern", -1.0)
    assert SpectralCovariance().to_dict()["kind"] == "spectral"


def test_a_band_limited_q_is_the_spectral_truncation_of_the_full_one():
    """band_limit L: the same seed draws the full Q's field with its degrees ℓ ≥ L
    removed; Q g holds no degree ≥ L; the variance lost is the tail's share."""
    from hdm.hilbert.covariance import spherical_transforms

    banded = SphericalCovariance("matern", 30.0, 1.5, band_limit=6)
    forward, inverse = spherical_transforms(GRID, torch.device("cpu"))
    full = Q.sample(8, GRID, torch.Generator().manual_seed(5), dtype=torch.float64)
    cut = banded.sample(8, GRID, torch.Generator().manual_seed(5), dtype=torch.float64)
    low = forward(full.flip(-2))
    low[:, 6:] = 0
    # equiangular quadrature and single-precision Legendre tables: round trip to ~1e-3
    torch.testing.assert_close(cut, inverse(low).flip(-2), rtol=0, atol=3e-3)
    exact = GlobalGrid.make(17, 32, "legendre-gauss")  # its forward transform is exact
    forward = spherical_transforms(exact, torch.device("cpu"))[0]
    g = torch.randn(3, *exact.shape, generator=torch.Generator().manual_seed(1))
    coeff = forward(banded.apply(g.double(), exact).flip(-2))
    assert float(coeff[:, 6:].abs().max()) < 1e-6 * float(coeff[:, :6].abs().max())
    assert coeff[:, :6].abs().amax(dim=(0, 2)).min() > 0
    lam = Q.degree_eigenvalues(GRID.max_degree)
    tail = float(sum((2 * ell + 1) * lam[ell] for ell in range(6, len(lam))) / (4 * math.pi))
    assert math.isclose(banded.truncated_variance(GRID), Q.truncated_variance(GRID) - tail)
    assert 0.05 < tail < 0.5 and (banded.degree_eigenvalues(GRID.max_degree)[6:] == 0).all()
    share = Q.share_beyond(6, GRID)
    assert math.isclose(share, tail / Q.truncated_variance(GRID))
    assert banded.share_beyond(6, GRID) == 0
    assert covariance_from_dict(banded.to_dict()) == banded and "ℓ < 6" in banded.describe()


def test_the_projection_onto_q_s_range_keeps_q_and_is_idempotent():
    """Π (what a band-limited Q sees of a functional): Q Π g = Q g, Π Π = Π, and Π removes
    a point functional's degrees ℓ ≥ L (its norm falls); the identity for a full Q."""
    grid = GlobalGrid.make(17, 32, "legendre-gauss")
    banded = SphericalCovariance("matern", 30.0, 1.5, band_limit=6)
    spike = torch.zeros(2, *grid.shape, dtype=torch.float64)
    spike[0, 8, 3], spike[1, 0, 17] = 1.0, 1.0  # stations' adjoints: point functionals
    projected = banded.project_covector(spike, grid)
    torch.testing.assert_close(banded.apply(projected, grid), banded.apply(spike, grid))
    torch.testing.assert_close(banded.project_covector(projected, grid), projected)
    assert float(projected.norm()) < 0.8 * float(spike.norm())
    assert Q.project_covector(spike, grid) is spike


def test_a_band_limit_that_is_not_a_degree_count_is_refused():
    from hdm.pipelines.config import NoiseConfig

    with pytest.raises(ValueError, match=r"whole number of degrees ≥ 1 .* got 0"):
        SphericalCovariance("matern", 30.0, 1.5, band_limit=0)
    with pytest.raises(ValueError, match=r"whole number of degrees ≥ 1 .* got 2.5"):
        SphericalCovariance("matern", 30.0, 1.5, band_limit=2.5)
    with pytest.raises(ValueError, match=r"noise.band_limit .* not of 'spectral'"):
        NoiseConfig(kind="spectral", band_limit=8).build()


def _sfno(**kw):
    from hdm.hilbert.spherical_network import TimeConditionedSFNO

    torch.manual_seed(0)
    return TimeConditionedSFNO(**{"channels": 2, "width": 8, "n_degrees": 8, "n_layers": 2, **kw})


@pytest.mark.parametrize("weights", ["degree", "degree_order"])
def test_the_spherical_network_commutes_with_rotations_about_the_pole(weights):
    """Shifting the input by k longitudes shifts the output by k (the spherical
    convolutions act per (ℓ, m) or per ℓ and the only coordinate is sin(latitude))."""
    net = _sfno(weights=weights)
    x, tau = torch.randn(3, 2, *GRID.shape), torch.rand(3)
    with torch.no_grad():
        out = net(x, tau, GRID)
        shifted = net(x.roll(5, dims=-1), tau, GRID)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(shifted, out.roll(5, dims=-1), atol=1e-5, rtol=1e-5)
    for layer in net.film:  # the modulation starts as the identity; once trained, τ acts
        torch.nn.init.normal_(layer.weight, std=0.1)
    with torch.no_grad():
        modulated = net(x, tau, GRID)
        assert not torch.allclose(net(x, tau + 1.0, GRID), modulated)
        torch.testing.assert_close(
            net(x.roll(5, dims=-1), tau, GRID), modulated.roll(5, dims=-1), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("weights", ["degree", "degree_order"])
def test_the_spherical_network_gives_one_function_on_two_resolutions(weights):
    """One smooth input at 17 × 32 and at 33 × 64 (one seed of a spherical Q): the
    outputs agree at the shared points to well within the inputs' own difference."""
    net = _sfno(channels=1, weights=weights)
    q = SphericalCovariance("matern", 30.0, 2.5)
    fine = GRID.refined(2)
    coarse_x = q.sample(4, GRID, torch.Generator().manual_seed(0))[:, None]
    fine_x = q.sample(4, fine, torch.Generator().manual_seed(0))[:, None]
    tau = torch.full((4,), 0.3)
    with torch.no_grad():
        coarse_y, fine_y = net(coarse_x, tau, GRID), net(fine_x, tau, fine)
    shared = fine_y[..., ::2, ::2]
    assert fine_y.shape == (4, 1, 33, 64)
    assert float((shared - coarse_y).norm() / coarse_y.norm()) < 0.02


def test_the_spherical_network_refuses_grids_it_cannot_take():
    from hdm.hilbert.networks import GridError

    net = _sfno()
    x, tau = torch.randn(1, 2, 9, 16), torch.rand(1)
    with pytest.raises(GridError, match=r"resolves degrees ℓ < 17; the model keeps ℓ < 20"):
        _sfno(n_degrees=20)(torch.randn(1, 2, *GRID.shape), tau, GRID)
    box = LatLonGrid.regular((45, 55), (0, 10), (9, 16))
    with pytest.raises(GridError, match="takes global grids"):
        net(x, tau, box)
    gauss = GlobalGrid.make(17, 32, "legendre-gauss")
    with pytest.raises(GridError, match="built for equiangular latitudes"):
        net(torch.randn(1, 2, 17, 32), tau, gauss)
    with pytest.raises(ValueError, match="weights must be one of"):
        _sfno(weights="order")


def test_degree_order_weights_hold_the_zonal_derivative():
    """A DegreeOrderConv whose weight is i·m at every (ℓ, m) is ∂/∂λ: on cos φ sin λ it
    gives cos φ cos λ — a map one weight per degree cannot make (it would give the same
    weight to m = 0 and m = 1 of one degree)."""
    from hdm.hilbert.spherical_network import DegreeOrderConv

    conv = DegreeOrderConv(1, 1, 8, "equiangular")
    m = torch.arange(8, dtype=torch.float32)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, :, :, 1] = m[None, :]  # i·m
    lat, lon = (np.deg2rad(c) for c in GRID.coords())
    x = torch.as_tensor(np.cos(lat)[:, None] * np.sin(lon)[None, :], dtype=torch.float32)
    with torch.no_grad():
        y = conv(x[None, None])[0, 0].numpy()
    np.testing.assert_allclose(y, np.cos(lat)[:, None] * np.cos(lon)[None, :], atol=1e-4)


def test_the_gaussian_oracle_on_the_sphere_is_the_per_degree_wiener_filter():
    """X_0 ~ N(0, C) with C and Q both isotropic: the exact denoiser multiplies degree ℓ by
    α c_ℓ / (α² c_ℓ + σ² λ_ℓ). On a Gauss–Legendre grid the transforms are exact."""
    from hdm.hilbert.covariance import spherical_transforms
    from hdm.hilbert.denoisers import GaussianDenoiser
    from hdm.hilbert.process import ForwardProcess
    from hdm.hilbert.schedules import CosineVP

    grid = GlobalGrid.make(17, 32, "legendre-gauss")
    prior = SphericalCovariance("matern", 15.0, 2.5)
    process = ForwardProcess(CosineVP(), Q)
    oracle = GaussianDenoiser(process, grid, prior.dense(grid))
    x = Q.sample(2, grid, torch.Generator().manual_seed(0), dtype=torch.float64)[:, None]
    t = torch.full((2,), 0.5)
    alpha, sigma = process.schedule.alpha(t)[0].item(), process.schedule.sigma(t)[0].item()
    c, lam = prior.degree_eigenvalues(grid.max_degree), Q.degree_eigenvalues(grid.max_degree)
    gain = torch.as_tensor(alpha * c / (alpha**2 * c + sigma**2 * lam))
    forward, inverse = spherical_transforms(grid, torch.device("cpu"))
    expected = inverse(forward(x[:, 0].flip(-2)) * gain[:, None]).flip(-2)
    torch.testing.assert_close(oracle(x, t, grid)[:, 0], expected, rtol=1e-6, atol=1e-8)


def test_coarse_cells_on_the_sphere_are_area_means():
    """Bands of 22.5° over all longitudes: the mean of sin(lat) over [a, b] is
    (sin a + sin b)/2 on the sphere (the polar caps included); constants stay constant;
    the adjoint passes the dot-product test."""
    from hdm.conditioning.observations import CoarseGrain

    grid = GlobalGrid.make(33, 64)
    lat_edges = np.linspace(-90, 90, 9)
    lon_edges = np.linspace(-180, 180, 17) - 180 / 64
    op = CoarseGrain((tuple(lat_edges), tuple(lon_edges)), 0.1)
    lat = np.deg2rad(grid.coords()[0])
    field = torch.as_tensor(np.repeat(np.sin(lat)[:, None], 64, axis=1))[None, None]
    means = op.apply(field, grid).numpy().reshape(8, 16)
    a, b = np.deg2rad(lat_edges[:-1]), np.deg2rad(lat_edges[1:])
    np.testing.assert_allclose(
        means, np.repeat(((np.sin(a) + np.sin(b)) / 2)[:, None], 16, 1), atol=3e-3
    )
    ones = op.apply(torch.ones(1, 1, 33, 64, dtype=torch.float64), grid)
    torch.testing.assert_close(ones, torch.ones_like(ones))
    u = torch.randn(1, 1, 33, 64, dtype=torch.float64)
    v = torch.randn(1, op.n_obs(), dtype=torch.float64)
    lhs = float((op.apply(u, grid) * v).sum())
    rhs = float((u * op.adjoint(v, grid)).sum())
    assert math.isclose(lhs, rhs, rel_tol=1e-10)


def test_stations_on_the_sphere_wrap_the_date_line_and_reach_the_poles():
    """x = cos(lat) cos(lon) read at stations by the date line and next to both poles."""
    from hdm.conditioning.observations import ObservationError, PointSample

    grid = GlobalGrid.make(65, 128)
    points = ((89.0, 170.0), (-89.5, -179.9), (10.0, 179.9), (-33.9, -180.0))
    op = PointSample(points, 0.1, ("N", "S", "DATELINE", "W"))
    lat, lon = (np.deg2rad(c) for c in grid.coords())
    field = np.cos(lat)[:, None] * np.cos(lon)[None, :]
    read = op.apply(torch.as_tensor(field)[None, None], grid).numpy()[0]
    exact = [math.cos(math.radians(p)) * math.cos(math.radians(q)) for p, q in points]
    np.testing.assert_allclose(read, exact, atol=2e-3)
    gauss = GlobalGrid.make(32, 64, "legendre-gauss")
    with pytest.raises(ObservationError, match="not supported; sample on the equiangular"):
        op.apply(torch.zeros(1, 1, 32, 64), gauss)


def _era5_global_config(*overrides: str):
    """configs/sphere/era5_global_t2m.yaml on the shipped ERA5 1° sample, one layer, a
    one-step warm-up, and ``overrides``."""
    from pathlib import Path

    from hdm.pipelines.config import TrainRunConfig, load_config

    root = Path(__file__).resolve().parents[1]
    store = root / "data/atmos/era5_global_1deg_2026-03" / GLOBAL_STORE
    return load_config(
        TrainRunConfig,
        root / "configs" / "sphere" / "era5_global_t2m.yaml",
        [f"data.path={store}", "optim.warmup_steps=1", "model.n_layers=1", *overrides],
    )


def test_global_era5_trains_samples_and_conditions_a_spherical_prior(tmp_path):
    """The shipped ERA5 1° sample opens as a GlobalGrid (both poles, 181 × 360); hdm train
    fits a spherical prior on it (a smoke test: 24 fields, 3 steps; Q band-limited to the
    network's degrees, so guidance goes through Q's range projection), and MMPS conditions
    that prior on 4° cells and 200 IGRA2 stations of a real field: the guided member
    meets the observations far better than the free one."""

    from hdm.conditioning.ensembles import draw_members
    from hdm.conditioning.guidance import make_guidance
    from hdm.conditioning.observations import CoarseGrain, Composite, PointSample
    from hdm.data.accessor import grid_of
    from hdm.data.open import open_fields
    from hdm.domains.stations import igra2_worldwide
    from hdm.downscaling.prior import load_prior
    from hdm.hilbert.sampling import make_sampler
    from hdm.pipelines.train import run_training

    cfg = _era5_global_config(
        "optim.steps=3", "optim.batch_size=2", "optim.checkpoint_every=3", "model.width=8",
        "model.n_modes=16", "noise.band_limit=16",
    )  # fmt: skip
    run_training(cfg, tmp_path, progress=False)
    prior = load_prior(tmp_path / "model.pt")
    field = open_fields(cfg.data.path, "t2m", time=["2026-03-25T00"])["t2m"].isel(time=0)
    assert grid_of(field) == prior.grid == GlobalGrid.make(181, 360)
    mean, std = prior.stats("t2m")
    truth = torch.as_tensor((field.values - mean) / std)[None, None]
    lat_edges = tuple(np.linspace(-90, 90, 46))
    lon_edges = tuple(np.linspace(-180, 180, 91) - 0.5)
    points, ids = igra2_worldwide(200)
    op = Composite((CoarseGrain((lat_edges, lon_edges), 0.02), PointSample(points, 0.05, ids)))
    y = op.apply(truth, prior.grid)[0]
    sampler = make_sampler("dpm2m", 4)
    free, _ = draw_members(prior.denoiser, sampler, prior.grid, 1, seed=0)
    guided, _ = draw_members(
        make_guidance("mmps", prior.denoiser, op, y), sampler, prior.grid, 1, seed=0
    )
    assert guided.shape == (1, 1, 181, 360) and torch.isfinite(guided).all()
    miss = {
        k: float((op.apply(x.double(), prior.grid)[0] - y).abs().mean())
        for k, x in (("free", free), ("guided", guided))
    }
    assert miss["guided"] < 0.3 * miss["free"], miss


def test_training_warns_of_noise_beyond_the_sfno_s_degrees(tmp_path, caplog):
    """Q without a band limit puts variance at degrees the SFNO cannot denoise: hdm train
    says how much, and how to remove it."""

    from hdm.pipelines.train import run_training

    cfg = _era5_global_config(
        "optim.steps=1", "optim.batch_size=1", "optim.checkpoint_every=1", "model.width=4",
        "model.n_modes=8", "noise.band_limit=null",
    )  # fmt: skip
    share = cfg.noise.build().share_beyond(8, GlobalGrid.make(181, 360))
    with caplog.at_level("WARNING", logger="hdm"):
        run_training(cfg, tmp_path, progress=False)
    assert (
        0.01 < share < 1
        and f"Q puts {100 * share:.1f} % of its variance at degrees ℓ ≥ 8" in (caplog.text)
        and "noise.band_limit: 8 removes it" in caplog.text
    )
