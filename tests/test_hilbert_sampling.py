"""Tests of hdm.hilbert.sampling with the exact Gaussian denoiser as the oracle: every
sampler must reproduce the prior covariance of a Gaussian random field."""

from __future__ import annotations

import difflib
import math

import numpy as np
import pytest
import torch

from hdm.hilbert.covariance import SpectralCovariance
from hdm.hilbert.denoisers import GaussianDenoiser
from hdm.hilbert.grids import IntervalGrid
from hdm.hilbert.process import ForwardProcess
from hdm.hilbert.sampling import MIN_STEPS, NEEDS_STATISTICS, SAMPLERS, make_sampler
from hdm.hilbert.schedules import CosineVP
from hdm.hilbert.solver_statistics import ModelStatistics

GRID = IntervalGrid(0.0, 1.0, 32)
PRIOR = SpectralCovariance("se", 0.4)
PROCESS = ForwardProcess(CosineVP(), SpectralCovariance("matern", 0.1, 1.5))
C = PRIOR.dense(GRID)

# (name, steps, expected NFE)
ACCEPTANCE = [
    ("em", 200, 200),
    ("heun", 50, 99),
    ("dpm2m", 50, 51),
    ("pc", 200, 399),
    ("sde2m", 100, 100),
]


@pytest.fixture(scope="module")
def oracle() -> GaussianDenoiser:
    return GaussianDenoiser(PROCESS, GRID, C)


def relative_hs_error(samples: torch.Tensor) -> float:
    """‖Ĉ − C‖_F/‖C‖_F with Ĉ = XᵀX/n (the prior mean is zero)."""
    x = samples.reshape(samples.shape[0], -1).to(torch.float64).numpy()
    return float(np.linalg.norm(x.T @ x / x.shape[0] - C) / np.linalg.norm(C))


@pytest.mark.parametrize(("name", "steps", "nfe"), ACCEPTANCE)
def test_sampler_reproduces_the_prior_covariance(oracle, seeded, name, steps, nfe):
    n = 2_000
    result = make_sampler(name, steps)(oracle, n, GRID, generator=seeded(0))
    assert result.samples.shape == (n, 1, 32) and torch.isfinite(result.samples).all()
    assert result.nfe == nfe
    # Monte-Carlo floor: even exact samples give an RMS relative error
    # e0 = sqrt((tr C)² + ‖C‖_F²)/(√n ‖C‖_F) ≈ 0.038 here (n = 2,000, ℓ = 0.4), with a
    # heavy right tail (an exact sampler exceeds 0.05 in ~15% of seeds, 0.10 in ~0.1%).
    # The tolerance is 3·e0 ≈ 0.11, so no seed makes this test flaky; the deterministic
    # samplers are checked without Monte-Carlo error below.
    e0 = math.sqrt(np.trace(C) ** 2 + np.linalg.norm(C) ** 2) / (math.sqrt(n) * np.linalg.norm(C))
    err = relative_hs_error(result.samples)
    assert err <= 3 * e0
    # The acceptance bound of the issue (≤ 5% at 2,000 samples) for this fixed seed; the
    # seed makes it deterministic, the 3·e0 bound above is what holds for any seed.
    assert err <= 0.05


@pytest.mark.parametrize(("name", "steps"), [("heun", 50), ("dpm2m", 50)])
def test_ode_sampler_covariance_without_monte_carlo_error(oracle, seeded, name, steps):
    # With a zero-mean Gaussian oracle an ODE sampler is a linear map M of its prior draw
    # x_T ~ N(0, Q); recover M by least squares from 200 draws (regenerated from the same
    # seed) and compare its exact output covariance M Q Mᵀ with C.
    n = 200
    result = make_sampler(name, steps)(oracle, n, GRID, generator=seeded(1))
    x_t = PROCESS.prior_sample(n, 1, GRID, generator=seeded(1)).reshape(n, -1).double().numpy()
    y = result.samples.reshape(n, -1).double().numpy()
    m, *_ = np.linalg.lstsq(x_t, y, rcond=None)
    assert np.abs(x_t @ m - y).max() < 1e-4 * np.abs(y).max()  # it is linear
    exact = m.T @ PROCESS.covariance.dense(GRID) @ m
    assert np.linalg.norm(exact - C) / np.linalg.norm(C) <= 0.02


@pytest.mark.parametrize(
    ("name", "steps", "nfe"),
    [
        ("em", 20, 20),
        ("heun", 5, 9),
        ("dpm2m", 5, 6),
        ("pc", 20, 39),
        ("sde2m", 5, 5),
        ("heun", 1, 1),
    ],
)
def test_sampler_reports_nfe(oracle, seeded, name, steps, nfe):
    calls = []

    def counting(x, t, grid):
        calls.append(x.shape[0])
        return oracle(x, t, grid)

    counting.process = PROCESS
    result = make_sampler(name, steps)(counting, 3, GRID, generator=seeded(0))
    assert result.samples.shape == (3, 1, 32) and torch.isfinite(result.samples).all()
    assert result.nfe == len(calls) == nfe


def _zero_statistics() -> ModelStatistics:
    """v3's statistics all zero (its plain exponential integrator) on GRID."""
    zeros = torch.zeros(2, 1, *GRID.shape, dtype=torch.float64)
    lambdas = torch.tensor([-5.0, 7.0], dtype=torch.float64)
    return ModelStatistics(GRID, lambdas, zeros, zeros, zeros, n_fields=0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_seed_same_samples(oracle, seeded, name):
    stats = _zero_statistics() if name in NEEDS_STATISTICS else None
    sampler = make_sampler(name, MIN_STEPS.get(name, 4), stats)
    a = sampler(oracle, 5, GRID, generator=seeded(7)).samples
    assert a.shape == (5, 1, 32) and torch.isfinite(a).all()
    torch.testing.assert_close(sampler(oracle, 5, GRID, generator=seeded(7)).samples, a)
    assert (sampler(oracle, 5, GRID, generator=seeded(8)).samples - a).abs().max() > 1e-2


def test_gaussian_denoiser_end_points(seeded):
    mean = 2.0 + np.sin(2 * np.pi * GRID.coords()[0])
    denoiser = GaussianDenoiser(PROCESS, GRID, C, mean=mean)
    schedule = PROCESS.schedule
    x0 = PRIOR.sample(4, GRID, generator=seeded(0), dtype=torch.float64)[:, None]
    x0 = x0 + torch.from_numpy(mean)
    t_min = torch.full((4,), schedule.t_min, dtype=torch.float64)
    out = denoiser(x0, t_min, GRID)
    assert out.shape == x0.shape and out.dtype == x0.dtype and torch.isfinite(out).all()
    # nearly no noise: E[X_0 | X_t = x] ≈ x
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-3)
    # nearly all noise: E[X_0 | X_t = x] ≈ the prior mean, for a typical x_T
    xi = PROCESS.noise(4, 1, GRID, generator=seeded(1), dtype=torch.float64)
    t_max = torch.full((4,), schedule.t_max, dtype=torch.float64)
    x_t = PROCESS.perturb(x0, t_max, xi)
    expected = torch.from_numpy(mean).expand_as(x_t)
    torch.testing.assert_close(denoiser(x_t, t_max, GRID), expected, rtol=0, atol=0.1)


def test_gaussian_denoiser_rejects_another_grid():
    denoiser = GaussianDenoiser(PROCESS, GRID, C)
    other = IntervalGrid(0.0, 1.0, 33)
    with pytest.raises(ValueError, match="built for x ∈ \\[0, 1\\] \\(closed, 32 points\\)"):
        denoiser(torch.zeros(1, 1, 33), torch.full((1,), 0.5), other)


def test_make_sampler_errors():
    # difflib finds no close match for "eulr" (so no suggestion), but every known name
    # is listed with what it does
    assert difflib.get_close_matches("eulr", SAMPLERS, n=1) == []
    with pytest.raises(ValueError, match="unknown sampler 'eulr'") as info:
        make_sampler("eulr", 10)
    assert "did you mean" not in str(info.value)
    for name in ("em", "heun", "dpm2m", "pc"):
        assert f"{name} (" in str(info.value)
    assert "Euler–Maruyama" in str(info.value)
    with pytest.raises(ValueError, match="did you mean 'heun'"):
        make_sampler("huen", 10)
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        make_sampler("em", 0)
    for name in MIN_STEPS:  # a coarse EM/PC run is refused, naming the stable samplers
        with pytest.raises(ValueError, match=f"sampler '{name}' needs at least 20 steps, got 6"):
            make_sampler(name, 6)
    with pytest.raises(ValueError, match="use sde2m"):
        make_sampler("em", 19)
    assert make_sampler("sde2m", 4).steps == 4


def test_the_cli_help_names_every_sampler(capsys):
    """The CLI keeps torch out of --help, so it spells the samplers out: keep them in step."""
    from hdm.pipelines.cli import main

    for argv in (["downscale", "--help"], ["sample", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in SAMPLERS), (argv, text)
