"""Analytical teleportation: the Gaussian of the data, its posterior, samplers that start at t*."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdm.conditioning.guidance import gaussian_posterior, make_guidance
from hdm.conditioning.observations import CoarseGrain, Composite, PointSample
from hdm.conditioning.teleport import guided_start, posterior_law
from hdm.hilbert.covariance import KernelCovariance, SpectralCovariance
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.gaussian import GaussianStart, GaussianStatistics, TeleportError
from hdm.hilbert.grids import RectGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import make_sampler
from hdm.hilbert.schedules import CosineVP

GRID = RectGrid((0.0, 1.0), (0.0, 1.0), (12, 12))
PROCESS = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.15, 2.5))


def _problem(noise=0.1, seed=0):
    cov = KernelCovariance("se", 0.2).dense(GRID)
    rng = np.random.default_rng(seed)
    pts = tuple(map(tuple, rng.uniform(0.05, 0.95, (6, 2))))
    op = Composite((CoarseGrain.from_factor(GRID, 4, noise), PointSample(pts, noise)))
    truth = np.linalg.cholesky(cov + 1e-8 * np.eye(GRID.size)) @ rng.standard_normal(GRID.size)
    y = op.simulate(torch.as_tensor(truth).reshape(1, 1, 12, 12), GRID)[0]
    return cov, op, y


def test_pca_of_fields_is_their_empirical_covariance_and_mean():
    rng = np.random.default_rng(1)
    fields = torch.as_tensor(rng.standard_normal((30, 1, 12, 12)).cumsum(-1))
    stats = GaussianStatistics.fit(fields, GRID)
    flat = fields.reshape(30, -1).numpy()
    assert stats.rank == 29 and stats.explained == pytest.approx(1.0)
    np.testing.assert_allclose(stats.covariance(), np.cov(flat.T), atol=1e-10)
    np.testing.assert_allclose(stats.mean.reshape(-1).numpy(), flat.mean(0), atol=1e-12)
    top = GaussianStatistics.fit(fields, GRID, rank=5)
    eig = np.linalg.eigvalsh(np.cov(flat.T))[::-1]
    assert top.rank == 5
    assert top.explained == pytest.approx(eig[:5].sum() / eig.sum(), rel=1e-9)


def test_shrinkage_is_the_convex_combination_and_fills_the_directions_the_days_lack():
    rng = np.random.default_rng(2)
    fields = torch.as_tensor(rng.standard_normal((10, 1, 12, 12)).cumsum(-1))
    sample = GaussianStatistics.fit(fields, GRID)
    target = PROCESS.covariance.dense(GRID)
    shrunk = sample.shrunk(target, 0.3, {"target": "Q"})
    np.testing.assert_allclose(
        shrunk.covariance(), 0.7 * sample.covariance() + 0.3 * target, atol=1e-9
    )
    # 9 modes of the days, full rank after: a direction orthogonal to every training
    # anomaly has no variance in the sample Gaussian and 0.3 uᵀQu in the shrunk one
    u = np.linalg.svd(fields.reshape(10, -1).numpy() - fields.reshape(10, -1).numpy().mean(0))[2][
        -1
    ]
    assert sample.rank == 9 and shrunk.rank > 100
    assert u @ sample.covariance() @ u < 1e-10
    assert u @ shrunk.covariance() @ u == pytest.approx(0.3 * u @ target @ u, rel=1e-6)
    assert shrunk.shrinkage == {"weight": 0.3, "sample_rank": 9, "target": "Q"}
    back = GaussianStatistics.from_dict(shrunk.to_dict())
    assert back.shrinkage == shrunk.shrinkage
    with pytest.raises(TeleportError, match=r"weight must lie in \[0, 1\), got 1"):
        sample.shrunk(target, 1.0)


def test_the_posterior_in_the_basis_is_the_closed_form_kriging_posterior():
    cov, op, y = _problem()
    stats = GaussianStatistics.from_covariance(cov, GRID)
    law = posterior_law(stats, op, y)
    basis = stats.basis.reshape(stats.rank, -1)
    mean = (law.mean @ basis).numpy()
    post_cov = (basis.T @ law.factor @ law.factor.T @ basis).numpy()
    exact_mean, exact_cov = gaussian_posterior(
        stats.covariance(), np.zeros(GRID.size), op.matrix(GRID), y.numpy(), op.noise_std() ** 2
    )
    np.testing.assert_allclose(mean, exact_mean, atol=1e-8)
    np.testing.assert_allclose(post_cov, exact_cov, atol=1e-8)


def test_missing_observations_are_left_out_of_the_posterior():
    cov, op, y = _problem()
    stats = GaussianStatistics.from_covariance(cov, GRID)
    y_missing = y.clone()
    y_missing[-1] = float("nan")
    law = posterior_law(stats, op, y_missing)
    a = op.matrix(GRID)[:-1]
    exact_mean, _ = gaussian_posterior(
        stats.covariance(), np.zeros(GRID.size), a, y[:-1].numpy(), op.noise_std()[:-1] ** 2
    )
    mean = (law.mean @ stats.basis.reshape(stats.rank, -1)).numpy()
    assert np.isfinite(mean).all()
    np.testing.assert_allclose(mean, exact_mean, atol=1e-8)


def test_the_unconditional_start_has_the_marginal_covariance_at_t_star():
    cov = KernelCovariance("se", 0.2).dense(GRID)
    stats = GaussianStatistics.from_covariance(cov, GRID)
    start = GaussianStart(stats, PROCESS, varsigma=1.0)
    x = start.draw(4000, 1, GRID, torch.Generator().manual_seed(0)).reshape(4000, -1).double()
    t = PROCESS.schedule.t_from_varsigma(torch.tensor(1.0, dtype=torch.float64))
    alpha, sigma = float(PROCESS.schedule.alpha(t)), float(PROCESS.schedule.sigma(t))
    marginal = alpha**2 * cov + sigma**2 * PROCESS.covariance.dense(GRID)
    assert x.shape == (4000, GRID.size) and torch.isfinite(x).all()
    ratio = x.var(0).mean().item() / np.diag(marginal).mean()
    assert abs(ratio - 1) < 0.05, ratio


@pytest.mark.parametrize("sampler", ["heun", "dpm2m", "sde2m"])
def test_a_teleported_guided_sampler_reproduces_the_closed_form_posterior(sampler):
    """With the exact denoiser and the exact Gaussian, a start at ς* = 0.5 leaves only the
    low-noise steps: 8 of them give the closed-form posterior."""
    cov, op, y = _problem(noise=0.05)
    stats = GaussianStatistics.from_covariance(cov, GRID)
    guided = make_guidance("mmps", GaussianDenoiser(PROCESS, GRID, cov), op, y, cg_steps=20)
    start = guided_start(stats, PROCESS, 0.5, op, y)
    draws = make_sampler(sampler, 8)(
        guided, 400, GRID, generator=torch.Generator().manual_seed(3), start=start
    )
    x = draws.samples.reshape(400, -1).double().numpy()
    mean, post = gaussian_posterior(cov, np.zeros(GRID.size), op.matrix(GRID), y.numpy(), 0.05**2)
    assert np.isfinite(x).all()
    assert np.sqrt(np.mean((x.mean(0) - mean) ** 2)) < 0.05
    ratio = np.sqrt(x.var(0, ddof=1).mean() / np.clip(np.diag(post), 0, None).mean())
    assert 0.9 < ratio < 1.1, ratio


class _Recorder:
    def __init__(self, process):
        self.process = process
        self.times = []

    def __call__(self, x, t, grid):
        self.times.append(float(t[0]))
        return torch.zeros_like(x)


@pytest.mark.parametrize("sampler, nfe", [("heun", 9), ("dpm2m", 6), ("em", 20), ("sde2m", 5)])
def test_a_sampler_given_a_start_integrates_from_t_star(sampler, nfe):
    stats = GaussianStatistics.from_covariance(KernelCovariance("se", 0.2).dense(GRID), GRID)
    recorder = _Recorder(PROCESS)
    steps = 20 if sampler == "em" else 5
    result = make_sampler(sampler, steps)(
        recorder,
        2,
        GRID,
        generator=torch.Generator().manual_seed(0),
        start=GaussianStart(stats, PROCESS, 2.0),
    )
    t_star = float(PROCESS.schedule.t_from_varsigma(torch.tensor(2.0, dtype=torch.float64)))
    assert result.nfe == nfe and result.samples.shape == (2, 1, 12, 12)
    assert recorder.times[0] == pytest.approx(t_star, rel=1e-9)
    assert max(recorder.times) <= t_star * (1 + 1e-9)


def test_teleportation_errors_name_the_problem():
    stats = GaussianStatistics.from_covariance(KernelCovariance("se", 0.2).dense(GRID), GRID)
    with pytest.raises(TeleportError, match=r"ς\* = 500 .*outside.*t in \(1e-05, 0.9946\)"):
        GaussianStart(stats, PROCESS, 500.0)
    with pytest.raises(TeleportError, match=r"ς\* = 0 "):
        GaussianStart(stats, PROCESS, 0.0)
    other = RectGrid((0.0, 1.0), (0.0, 1.0), (24, 24))
    start = GaussianStart(stats, PROCESS, 1.0)
    with pytest.raises(TeleportError, match=r"computed on .*12.*cannot be transferred to .*24"):
        start.draw(1, 1, other)
    with pytest.raises(TeleportError, match="1 channel"):
        start.draw(1, 2, GRID)
